"""Convolutional graphs on target="cuda" against the numpy reference, in Numba's CUDA simulator.

Run in its own process: ``NUMBA_ENABLE_CUDASIM=1 python -m pytest -q tests/cuda`` (tests/test_cuda.py
does that from the main suite).  The primitive table's conv cases run here already
(test_cuda_target.py); these are whole training steps and the geometries the table lacks.
Kept small: the simulator runs every thread in Python.
"""
from __future__ import annotations

import numpy as np
import pytest
from numba import config

if not config.ENABLE_CUDASIM:
    pytest.skip("the CUDA tests run in the simulator: NUMBA_ENABLE_CUDASIM=1", allow_module_level=True)

import jitgrad as jg  # noqa: E402
from jitgrad.testing import call_unmutated, check_target  # noqa: E402


def _lenet(target):
    """conv, relu, max pool, conv, pool, flatten, dense, cross-entropy; SGD with momentum."""
    rng = np.random.default_rng(11)
    w1, b1 = jg.param("w1", rng.normal(size=(3, 1, 3, 3)) * 0.5), jg.param("b1", np.zeros(3))
    w2, b2 = jg.param("w2", rng.normal(size=(4, 3, 3, 3)) * 0.3), jg.param("b2", np.full(4, 0.1))
    w3, b3 = jg.param("w3", rng.normal(size=(16, 3)) * 0.3), jg.param("b3", np.zeros(3))
    x, labels = jg.input("x", (None, 1, 10, 10)), jg.input("labels", (None,), "int64")
    h = jg.nn.max_pool2d(jg.relu(jg.nn.conv2d(x, w1, b1)), 2)                       # (N, 3, 4, 4)
    h = jg.nn.max_pool2d(jg.relu(jg.nn.conv2d(h, w2, b2, padding=1)), 3, stride=2, padding=1)   # (N, 4, 2, 2)
    loss = jg.nn.cross_entropy(jg.nn.dense(jg.nn.flatten(h), w3, b3), labels)
    params = [w1, b1, w2, b2, w3, b3]
    step = jg.compile([x, labels], loss, target=target, updates=jg.optim.sgd(loss, params, lr=0.1, momentum=0.9))
    return step, params


def test_two_sgd_steps_of_a_small_cnn_equal_the_reference():
    rng = np.random.default_rng(12)
    X, Y = rng.normal(size=(6, 1, 10, 10)), rng.integers(0, 3, 6)
    (gpu, gpu_params), (ref, ref_params) = _lenet("cuda"), _lenet("numpy")
    before = [p.value for p in ref_params]
    for rows in (slice(0, 4), slice(4, 6)):                 # call-time batches 4 and 2
        np.testing.assert_allclose(call_unmutated(gpu, X[rows], Y[rows]), ref(X[rows], Y[rows]), rtol=1e-12)
    for p, q, old in zip(gpu_params, ref_params, before, strict=True):
        assert not np.array_equal(q.value, old)              # every param moved
        np.testing.assert_allclose(p.value, q.value, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("layer, x_shape, w_shape", [
    (lambda x, w: jg.nn.conv2d(x, w, stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2),
     (2, 4, 7, 6), (4, 2, 3, 2)),
    (lambda x, w: jg.nn.conv2d(x, w, stride=2, padding=1, groups=3), (1, 3, 6, 5), (3, 1, 3, 3)),   # depthwise
    (lambda x, w: jg.nn.conv_transpose2d(x, w, stride=2, padding=(0, 1), output_padding=(1, 0), groups=2,
                                         dilation=(1, 2)), (2, 4, 3, 3), (4, 1, 2, 3)),
    (lambda x, w: jg.nn.avg_pool2d(jg.nn.conv1d(x[:, :, 0], w[:, :, 0], padding="same", dilation=2)[:, :, None],
                                   (1, 3), stride=(1, 2), padding=(0, 1)), (2, 2, 1, 8), (3, 2, 1, 3)),
], ids=["strided-dilated-grouped", "depthwise", "conv_transpose2d", "conv1d-avg_pool"])
def test_conv_gradients_match_the_reference(layer, x_shape, w_shape):
    rng = np.random.default_rng(13)
    x, w = jg.input("x", x_shape), jg.input("w", w_shape)
    y = layer(x, w)
    loss = jg.sum(jg.tanh(y) * np.cos(np.arange(np.prod(y.shape))).reshape(y.shape))
    gx, gw = jg.grad(loss, [x, w])
    (tangent,) = jg.jvp([y], [x, w], [np.ones(x_shape), np.zeros(w_shape)])
    check_target([x, w], [y, gx, gw, tangent], [rng.normal(size=x_shape), rng.normal(size=w_shape)], "cuda",
                 rtol=1e-12, atol=1e-13)


def test_col2im_is_bit_identical_across_runs():
    """The device's unpatches sums each pixel's windows in a fixed order: no atomics."""
    rng = np.random.default_rng(14)
    x = jg.input("x", (2, 3, 4, 4))
    w = rng.normal(size=(3, 2, 3, 3))
    y = jg.nn.conv_transpose2d(x, w, stride=1, padding=1) + jg.nn.conv_transpose2d(x, w, stride=2, dilation=2)[
        :, :, :4, :4]
    f = jg.compile([x], y, target="cuda")
    assert "unpatches" in str(f.schedule)
    x_np = rng.normal(size=(2, 3, 4, 4))
    first, second = f(x_np), f(x_np)
    assert first.tobytes() == second.tobytes()
    np.testing.assert_allclose(first, jg.compile([x], y, target="numpy")(x_np), rtol=1e-12, atol=1e-13)
