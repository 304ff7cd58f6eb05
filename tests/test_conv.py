"""Convolution, pooling and normalization layers (jg.nn.conv2d & co.) beyond the primitive table.

jitgrad.testing.CONV_CASES already checks one case of each layer on every target and its
derivatives to order 2.  Here: wide sweeps of forward values against the direct NumPy
references on the reference target (cheap to compile), a few representative graphs on the
cpu target (each costs a Numba compilation), tie and padding rules, running statistics,
error messages, determinism with threads, save/load and vmap.
"""
from __future__ import annotations

import numpy as np
import pytest

import jitgrad as jg
from jitgrad.io import inputs_of
from jitgrad.testing import _conv_ref, _conv_transpose_ref, _pool_ref

RNG = np.random.default_rng(1234)


def _normal(*shape, dtype=np.float64):
    return RNG.normal(size=shape).astype(dtype)


def _pads(padding, window, dilation):
    """jitgrad's/PyTorch's padding argument as ((top, bottom), (left, right))."""
    if padding == "valid":
        return (0, 0), (0, 0)
    if padding == "same":
        totals = [d * (k - 1) for k, d in zip(window, dilation)]
        return tuple((t // 2, t - t // 2) for t in totals)
    top, left = (padding, padding) if isinstance(padding, int) else padding
    return (top, top), (left, left)


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _conv_transpose_direct(x, w, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """PyTorch's conv_transpose2d, directly: each input pixel adds its weighted (dilated)
    kernel onto an uncropped output, which loses ``padding`` on each side; output_padding
    extends the bottom/right."""
    stride, padding, output_padding, dilation = map(_pair, (stride, padding, output_padding, dilation))
    (n, c_in, h, wd), (_, c_group, k_h, k_w) = x.shape, w.shape
    per = c_in // groups
    full = [(m - 1) * s + d * (k - 1) + 1 + e
            for m, s, d, k, e in zip((h, wd), stride, dilation, (k_h, k_w), output_padding)]
    out = np.zeros((n, c_group * groups, *full), np.result_type(x, w))
    for g in range(groups):
        images, weights = x[:, g * per:(g + 1) * per], w[g * per:(g + 1) * per]
        for i in range(k_h):
            for j in range(k_w):
                rows = slice(i * dilation[0], i * dilation[0] + stride[0] * (h - 1) + 1, stride[0])
                cols = slice(j * dilation[1], j * dilation[1] + stride[1] * (wd - 1) + 1, stride[1])
                out[:, g * c_group:(g + 1) * c_group, rows, cols] += np.einsum(
                    "nchw,co->nohw", images, weights[:, :, i, j])
    (p_h, p_w) = padding
    return out[:, :, p_h:full[0] - p_h, p_w:full[1] - p_w]


def test_the_direct_transposed_reference_agrees_with_the_library_one():
    x, w = _normal(2, 2, 3, 4), _normal(2, 3, 3, 2)
    np.testing.assert_allclose(_conv_transpose_direct(x, w, 2, 1, 1),
                               _conv_transpose_ref(x, w, (2, 2), (1, 1), (1, 1)), rtol=1e-13, atol=1e-13)


def _run(fn, args, target="numpy", dtype="float64"):
    xs = [jg.input(f"x{i}", np.shape(a), dtype) for i, a in enumerate(args)]
    return jg.compile(xs, fn(*xs), target=target)(*args)


# -- conv2d forward sweep (reference target) ----------------------------------------------------

CONV_SWEEP = [
    # x shape, w shape, stride, padding, dilation, groups
    ((2, 3, 7, 6), (4, 3, 3, 3), 1, 0, 1, 1),
    ((1, 3, 7, 6), (4, 3, 3, 3), 2, 1, 1, 1),              # batch 1
    ((2, 2, 9, 8), (3, 2, 3, 2), (2, 3), (1, 2), 1, 1),    # non-square kernel, stride and padding pairs
    ((2, 2, 9, 7), (2, 2, 3, 3), 1, 2, 2, 1),              # dilation
    ((1, 2, 11, 9), (3, 2, 2, 3), (3, 1), (0, 1), (2, 3), 1),
    ((2, 4, 5, 5), (6, 2, 3, 3), 1, 1, 1, 2),              # groups
    ((2, 4, 6, 5), (4, 1, 3, 3), 1, 1, 1, 4),              # depthwise: groups == C_in
    ((1, 3, 6, 7), (6, 1, 2, 2), 2, 0, 1, 3),              # depthwise, channel multiplier 2
    ((2, 3, 5, 7), (5, 3, 1, 1), 1, 0, 1, 1),              # 1x1
    ((2, 3, 5, 7), (5, 3, 1, 1), 2, 0, 1, 1),              # strided 1x1
    ((2, 3, 5, 7), (2, 3, 3, 3), 1, "same", 1, 1),         # "same", odd kernel
    ((2, 3, 5, 7), (2, 3, 2, 4), 1, "same", 1, 1),         # "same", even kernels: the odd pixel after
    ((1, 2, 6, 6), (2, 2, 2, 3), 1, "same", (2, 1), 1),    # "same" with dilation
    ((2, 3, 5, 7), (2, 3, 3, 2), 1, "valid", 1, 1),
    ((1, 1, 3, 3), (1, 1, 3, 3), 1, 0, 1, 1),              # one window
    ((3, 1, 1, 9), (2, 1, 1, 4), (1, 2), (0, 3), 1, 1),    # height 1
]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("x_shape, w_shape, stride, padding, dilation, groups", CONV_SWEEP)
def test_conv2d_matches_the_direct_reference(x_shape, w_shape, stride, padding, dilation, groups, dtype):
    x, w, b = _normal(*x_shape, dtype=dtype), _normal(*w_shape, dtype=dtype), _normal(w_shape[0], dtype=dtype)
    got = _run(lambda x, w, b: jg.nn.conv2d(x, w, b, stride, padding, dilation, groups), [x, w, b],
               dtype=dtype)
    want = _conv_ref(x.astype(np.float64), w.astype(np.float64), _pair(stride),
                     _pads(padding, w_shape[2:], _pair(dilation)), _pair(dilation), groups) + b[:, None, None]
    assert got.dtype == np.dtype(dtype)
    if padding == "same":
        assert got.shape[2:] == x_shape[2:]
    tol = 1e-12 if dtype == "float64" else 2e-5
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


def test_conv2d_promotes_mixed_and_integer_operands():
    x32, w64 = _normal(1, 2, 4, 4, dtype=np.float32), _normal(3, 2, 2, 2)
    xs = [jg.input("x", x32.shape, "float32"), jg.input("w", w64.shape)]
    y = jg.nn.conv2d(*xs)
    assert y.dtype == np.float64
    np.testing.assert_allclose(jg.compile(xs, y, target="numpy")(x32, w64), _conv_ref(x32.astype(float), w64),
                               rtol=1e-12)
    xi = jg.input("xi", (1, 2, 4, 4), "int64")
    assert jg.nn.conv2d(xi, np.ones((1, 2, 2, 2), np.int64)).dtype == np.float64


@pytest.mark.parametrize("dtype, stride, padding, dilation, groups", [
    ("float32", 1, "same", 1, 1),
    ("float64", 2, (0, 2), 2, 4),
])
def test_conv2d_on_the_cpu_matches_the_reference_and_the_adjoint(dtype, stride, padding, dilation, groups):
    """Values against the direct reference; gradients by the adjoint identity
    <dL/dx, dx> = <ct, conv(dx, w)> (the convolution is linear in each operand)."""
    x_np, w_np = _normal(2, 4, 9, 8, dtype=dtype), _normal(4, 4 // groups, 3, 2, dtype=dtype)
    x, w = jg.input("x", x_np.shape, dtype), jg.input("w", w_np.shape, dtype)
    y = jg.nn.conv2d(x, w, stride=stride, padding=padding, dilation=dilation, groups=groups)
    ct_np = _normal(*y.shape, dtype=dtype)
    gx, gw = jg.grad(jg.sum(y * ct_np), [x, w])
    got, got_gx, got_gw = jg.compile([x, w], [y, gx, gw], target="cpu")(x_np, w_np)

    geometry = dict(stride=_pair(stride), padding=_pads(padding, (3, 2), _pair(dilation)),
                    dilation=_pair(dilation), groups=groups)
    x64, w64, ct = (a.astype(np.float64) for a in (x_np, w_np, ct_np))
    tol = 1e-12 if dtype == "float64" else 1e-4
    assert got.dtype == got_gx.dtype == got_gw.dtype == np.dtype(dtype)
    np.testing.assert_allclose(got, _conv_ref(x64, w64, **geometry), rtol=tol, atol=tol)
    for _ in range(2):
        dx, dw = RNG.normal(size=x_np.shape), RNG.normal(size=w_np.shape)
        for got_g, want in [(np.sum(got_gx * dx), np.sum(ct * _conv_ref(dx, w64, **geometry))),
                            (np.sum(got_gw * dw), np.sum(ct * _conv_ref(x64, dw, **geometry)))]:
            np.testing.assert_allclose(got_g, want, rtol=tol * 10, atol=tol * 10)


def test_a_call_time_batch_size_on_the_cpu():
    """The same compiled function called with batches 1, 5, 3: values and both gradients."""
    w_np = _normal(3, 2, 3, 3)
    x, w = jg.input("x", (None, 2, 7, 6)), jg.input("w", w_np.shape)
    y = jg.nn.max_pool2d(jg.nn.conv2d(x, w, stride=(1, 2), padding=1), 2, stride=1)
    assert y.dims[1:] == (3, 6, 2)
    conv = jg.nn.conv2d(x, w, stride=(1, 2), padding=1)
    ct = jg.input("ct", (None, 3, 7, 3))
    gx, gw = jg.grad(jg.sum(conv * ct), [x, w])
    f = jg.compile([x, w, ct], [conv, gx, gw, y], target="cpu")
    geometry = dict(stride=(1, 2), padding=((1, 1), (1, 1)))
    for n in (1, 5, 3):
        x_np, ct_np = _normal(n, 2, 7, 6), _normal(n, 3, 7, 3)
        got, got_gx, got_gw, pooled = f(x_np, w_np, ct_np)
        want = _conv_ref(x_np, w_np, **geometry)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(pooled, _pool_ref(want, 2, 1, 0, np.max, -np.inf), rtol=1e-12, atol=1e-12)
        dx, dw = RNG.normal(size=x_np.shape), RNG.normal(size=w_np.shape)
        assert got_gx.shape == x_np.shape and got_gw.shape == w_np.shape
        np.testing.assert_allclose(np.sum(got_gx * dx), np.sum(ct_np * _conv_ref(dx, w_np, **geometry)), rtol=1e-11)
        np.testing.assert_allclose(np.sum(got_gw * dw), np.sum(ct_np * _conv_ref(x_np, dw, **geometry)), rtol=1e-11)


# -- conv1d and conv_transpose2d ----------------------------------------------------------------

@pytest.mark.parametrize("x_shape, w_shape, stride, padding, dilation, groups", [
    ((2, 3, 9), (4, 3, 3), 1, 0, 1, 1),
    ((1, 3, 10), (2, 3, 2), 2, 1, 1, 1),
    ((2, 2, 11), (2, 2, 3), 3, 2, 2, 1),
    ((2, 4, 8), (6, 2, 3), 1, "same", 1, 2),
    ((2, 4, 8), (4, 1, 4), 1, "same", 2, 4),
    ((1, 2, 7), (3, 2, 5), 1, "valid", 1, 1),
    ((2, 3, 6), (2, 3, 1), 2, (1,), (1,), 1),
])
def test_conv1d_matches_the_direct_reference(x_shape, w_shape, stride, padding, dilation, groups):
    x, w, b = _normal(*x_shape), _normal(*w_shape), _normal(w_shape[0])
    got = _run(lambda x, w, b: jg.nn.conv1d(x, w, b, stride, padding, dilation, groups), [x, w, b])
    single = [v[0] if isinstance(v, tuple) else v for v in (stride, padding, dilation)]
    pads = _pads(single[1] if isinstance(single[1], str) else (0, single[1]), (1, w_shape[2]), (1, single[2]))
    want = _conv_ref(x[:, :, None], w[:, :, None], (1, single[0]), pads, (1, single[2]), groups)[:, :, 0]
    np.testing.assert_allclose(got, want + b[:, None], rtol=1e-12, atol=1e-12)


TRANSPOSED = [
    # x shape, w shape, stride, padding, output_padding, groups, dilation
    ((2, 3, 4, 3), (3, 2, 3, 3), 1, 0, 0, 1, 1),
    ((1, 2, 3, 4), (2, 3, 3, 2), 2, 1, 1, 1, 1),
    ((2, 2, 3, 3), (2, 2, 2, 2), 2, 0, 0, 1, 1),
    ((2, 4, 3, 4), (4, 3, 3, 3), (2, 3), (1, 0), (1, 2), 2, 1),     # groups, pairs
    ((1, 4, 4, 3), (4, 1, 3, 2), 1, 1, 0, 4, (2, 1)),               # depthwise, dilation
    ((2, 2, 3, 3), (2, 3, 3, 3), 3, 2, (2, 1), 1, 2),               # stride 3, dilation 2
    ((2, 3, 2, 5), (3, 2, 1, 1), 2, 0, 1, 1, 1),                    # 1x1
]


@pytest.mark.parametrize("x_shape, w_shape, stride, padding, output_padding, groups, dilation", TRANSPOSED)
def test_conv_transpose2d_matches_the_direct_reference(x_shape, w_shape, stride, padding, output_padding,
                                                      groups, dilation):
    x, w, b = _normal(*x_shape), _normal(*w_shape), _normal(w_shape[1] * groups)
    got = _run(lambda x, w, b: jg.nn.conv_transpose2d(x, w, b, stride, padding, output_padding, groups, dilation),
               [x, w, b])
    want = _conv_transpose_direct(x, w, stride, padding, output_padding, groups, dilation) + b[:, None, None]
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("x_shape, w_shape, stride, padding, output_padding, groups, dilation",
                         [t for t in TRANSPOSED if all(e < s for e, s in zip(_pair(t[4]), _pair(t[2])))])
def test_conv_transpose2d_is_the_vjp_of_conv2d(x_shape, w_shape, stride, padding, output_padding, groups,
                                               dilation):
    x_np, w_np = _normal(*x_shape), _normal(*w_shape)
    x, w = jg.input("x", x_shape), jg.input("w", w_shape)
    y = jg.nn.conv_transpose2d(x, w, None, stride, padding, output_padding, groups, dilation)
    image = jg.input("image", y.shape)
    conv = jg.nn.conv2d(image, w, stride=stride, padding=padding, dilation=dilation, groups=groups)
    assert conv.shape == x_shape
    (pulled,) = jg.vjp([conv], [image], [x])
    got, want = jg.compile([x, w, image], [y, pulled], target="numpy")(x_np, w_np, np.zeros(y.shape))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_conv_transpose2d_output_padding_below_the_dilation():
    x, w = _normal(1, 2, 3, 4), _normal(2, 3, 3, 2)
    got = _run(lambda x, w: jg.nn.conv_transpose2d(x, w, stride=1, output_padding=1, dilation=2), [x, w])
    np.testing.assert_allclose(got, _conv_transpose_direct(x, w, 1, 0, 1, 1, 2), rtol=1e-12, atol=1e-12)


def test_conv_transpose2d_refuses_a_padding_that_leaves_no_output():
    x = jg.input("x", (1, 1, 1, 1))
    with pytest.raises(ValueError, match="conv_transpose2d"):
        y = jg.nn.conv_transpose2d(x, np.ones((1, 1, 1, 1)), padding=1)     # size 0 * 1 - 2 + 0 + 1 = -1
        jg.compile([x], y, target="numpy")(np.ones((1, 1, 1, 1)))


# -- pooling ------------------------------------------------------------------------------------

@pytest.mark.parametrize("kernel, stride, padding", [(2, None, 0), (3, 2, 1), (3, 1, 1), (2, 1, 1), (1, 2, 0),
                                                     (5, 3, 2)])
def test_pooling_matches_the_direct_reference(kernel, stride, padding):
    x = _normal(2, 3, 8, 7)
    step = kernel if stride is None else stride
    got_max, got_avg = _run(lambda x: [jg.nn.max_pool2d(x, kernel, stride, padding),
                                       jg.nn.avg_pool2d(x, kernel, stride, padding)], [x])
    np.testing.assert_allclose(got_max, _pool_ref(x, kernel, step, padding, np.max, -np.inf), rtol=1e-14)
    np.testing.assert_allclose(got_avg, _pool_ref(x, kernel, step, padding, np.mean, 0), rtol=1e-12, atol=1e-14)


def test_max_pool2d_with_dilation_and_non_square_windows():
    x = _normal(1, 2, 9, 8)
    got = _run(lambda x: jg.nn.max_pool2d(x, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(2, 3)), [x])
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (0, 0)), constant_values=-np.inf)
    want = np.full((1, 2, 4, 5), -np.inf)
    for i in range(3):
        for j in range(2):
            want = np.maximum(want, padded[:, :, 2 * i:2 * i + 7:2, 3 * j:3 * j + 5])
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("target, dtype", [("numpy", "float64"), ("cpu", "float32")])
def test_max_pool2d_ties_share_the_gradient_and_padding_never_wins(target, dtype):
    """An all-equal image: each element of a non-overlapping 2x2 window gets 1/4 of its
    cotangent.  An all-negative image with padding: the maximum is a pixel (not the pad), and
    the whole cotangent lands on pixels."""
    x = jg.input("x", (1, 2, 4, 6), dtype)
    ct = np.arange(1.0, 13.0).reshape(1, 2, 2, 3).astype(dtype)
    tied = jg.nn.max_pool2d(x, 2)
    (g_tied,) = jg.grad(jg.sum(tied * ct), [x])
    padded = jg.nn.max_pool2d(x, 3, stride=2, padding=1)
    ct_pad = (np.arange(1.0, 7.0).reshape(1, 2, 1, 3) ** 2 * np.ones((1, 1, 2, 1))).astype(dtype)
    (g_pad,) = jg.grad(jg.sum(padded * ct_pad), [x])
    f = jg.compile([x], [tied, g_tied, padded, g_pad], target=target)

    got_tied, got_g, _, _ = f(np.full((1, 2, 4, 6), 0.5, dtype))
    assert got_tied.dtype == got_g.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(got_tied, np.full((1, 2, 2, 3), 0.5))
    np.testing.assert_array_equal(got_g, np.repeat(np.repeat(ct, 2, axis=2), 2, axis=3) / 4)

    image = (-1.0 - RNG.uniform(size=(1, 2, 4, 6))).astype(dtype)
    _, _, got_pad, got_g_pad = f(image)
    np.testing.assert_array_equal(got_pad, _pool_ref(image, 3, 2, 1, np.max, -np.inf))
    assert np.all(got_pad < -1.0)
    np.testing.assert_allclose(got_g_pad.sum(axis=(2, 3)), ct_pad.sum(axis=(2, 3)), rtol=1e-6)
    # each window's cotangent on its arg max
    want = np.zeros_like(image)
    for c in range(2):
        for oh in range(2):
            for ow in range(3):
                rows, cols = slice(max(2 * oh - 1, 0), 2 * oh + 2), slice(max(2 * ow - 1, 0), 2 * ow + 2)
                window = image[0, c, rows, cols]
                i, j = np.unravel_index(np.argmax(window), window.shape)
                want[0, c, rows.start + i, cols.start + j] += ct_pad[0, c, oh, ow]
    np.testing.assert_array_equal(got_g_pad, want)


def test_max_pool2d_overlapping_ties_accumulate():
    """Overlapping windows (stride 1) over an all-equal image: a pixel gets 1/k^2 from each
    window that sees it."""
    x = jg.input("x", (1, 1, 4, 4))
    (g,) = jg.grad(jg.sum(jg.nn.max_pool2d(x, 2, stride=1)), [x])
    got = jg.compile([x], g, target="numpy")(np.zeros((1, 1, 4, 4)))
    windows = np.array([1, 2, 2, 1])
    np.testing.assert_allclose(got[0, 0], np.outer(windows, windows) / 4, rtol=1e-15)


def test_max_pool2d_of_integers_pads_with_the_lowest_integer():
    x = np.array([[-7, -3, -5], [-9, -2, -8], [-4, -6, -1]], np.int64).reshape(1, 1, 3, 3)
    got = _run(lambda x: jg.nn.max_pool2d(x, 3, stride=1, padding=1), [x], dtype="int64")
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, _pool_ref(x, 3, 1, 1, np.max, np.iinfo(np.int64).min))


def test_avg_pool2d_counts_padded_zeros():
    x = jg.input("x", (1, 1, 4, 4))
    y = jg.nn.avg_pool2d(x, 3, stride=1, padding=1)
    (g,) = jg.grad(jg.sum(y), [x])
    got, got_g = jg.compile([x], [y, g], target="numpy")(np.ones((1, 1, 4, 4)))
    edge = np.array([2, 3, 3, 2]) / 3
    np.testing.assert_allclose(got[0, 0], np.outer(edge, edge), rtol=1e-15)   # corner 4/9, edge 6/9
    np.testing.assert_allclose(got_g[0, 0], np.outer(edge, edge), rtol=1e-15)   # and its transpose


def test_global_avg_pool2d_and_flatten():
    x = _normal(2, 3, 4, 5)
    got_pool, got_flat, got_mid = _run(lambda x: [jg.nn.global_avg_pool2d(x), jg.nn.flatten(x),
                                                  jg.nn.flatten(x, 1, 2)], [x])
    np.testing.assert_allclose(got_pool, x.mean(axis=(2, 3)), rtol=1e-14)
    np.testing.assert_array_equal(got_flat, x.reshape(2, 60))
    np.testing.assert_array_equal(got_mid, x.reshape(2, 12, 5))
    assert jg.nn.flatten(jg.input("z", (None, 3, 4, 5))).dims[1:] == (60,)


# -- batch_norm and layer_norm ------------------------------------------------------------------

def test_batch_norm_training_updates_the_running_statistics_as_pytorch():
    momentum, eps = 0.2, 1e-3
    mean0, var0 = np.array([0.1, -0.2, 0.3]), np.array([1.5, 0.5, 2.0])
    rm, rv = jg.param("running_mean", mean0), jg.param("running_var", var0)
    weight, bias = np.array([1.0, 2.0, 0.5]), np.array([0.0, -1.0, 0.25])
    x = jg.input("x", (None, 3, 2, 3))
    y, updates = jg.nn.batch_norm(x, rm, rv, weight, bias, training=True, momentum=momentum, eps=eps)
    assert set(updates) == {rm, rv}
    f = jg.compile([x], y, target="numpy", updates=updates)

    want_mean, want_var = mean0.copy(), var0.copy()
    for n in (4, 2):
        batch = _normal(n, 3, 2, 3) * 2 + 1
        got = f(batch)
        mean, var = batch.mean(axis=(0, 2, 3)), batch.var(axis=(0, 2, 3))
        count = n * 2 * 3
        normalized = (batch - mean[:, None, None]) / np.sqrt(var[:, None, None] + eps)
        np.testing.assert_allclose(got, normalized * weight[:, None, None] + bias[:, None, None], rtol=1e-12,
                                   atol=1e-12)
        want_mean = (1 - momentum) * want_mean + momentum * mean
        want_var = (1 - momentum) * want_var + momentum * var * count / (count - 1)    # unbiased
        np.testing.assert_allclose(rm.value, want_mean, rtol=1e-13)
        np.testing.assert_allclose(rv.value, want_var, rtol=1e-13)


def test_batch_norm_inference_uses_the_running_statistics():
    rm, rv = jg.param("rm", np.array([0.5, -1.0])), jg.param("rv", np.array([4.0, 0.25]))
    x = jg.input("x", (3, 2))                              # (N, C): no spatial axes
    y, updates = jg.nn.batch_norm(x, rm, rv, bias=np.array([1.0, 2.0]))
    assert updates == {}
    x_np = _normal(3, 2)
    got = jg.compile([x], y, target="numpy")(x_np)
    np.testing.assert_allclose(got, (x_np - rm.value) / np.sqrt(rv.value + 1e-5) + [1.0, 2.0], rtol=1e-13)
    np.testing.assert_array_equal(rm.value, [0.5, -1.0])


def test_batch_norm_without_running_statistics_normalizes_by_the_batch():
    x_np = _normal(4, 2, 3)
    (y, updates) = jg.nn.batch_norm(jg.constant(x_np))
    assert updates == {}
    got = jg.compile([], y, target="numpy")()
    want = (x_np - x_np.mean(axis=(0, 2), keepdims=True)) / np.sqrt(x_np.var(axis=(0, 2), keepdims=True) + 1e-5)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_batch_norm_running_statistics_in_float32_on_the_cpu():
    """float32 images and float32 running statistics: updates keep the params' dtype."""
    rm, rv = jg.param("rm32", np.zeros(2, np.float32)), jg.param("rv32", np.ones(2, np.float32))
    x = jg.input("x", (4, 2, 3, 3), "float32")
    y, updates = jg.nn.batch_norm(x, rm, rv, training=True)
    f = jg.compile([x], y, target="cpu", updates=updates)
    batch = _normal(4, 2, 3, 3, dtype=np.float32)
    got = f(batch)
    assert got.dtype == np.float32 and rm.value.dtype == rv.value.dtype == np.float32
    b64 = batch.astype(np.float64)
    np.testing.assert_allclose(rm.value, 0.1 * b64.mean(axis=(0, 2, 3)), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(rv.value, 0.9 + 0.1 * b64.var(axis=(0, 2, 3), ddof=1), rtol=1e-5)


def test_batch_norm_training_gradients():
    def f(x, w, b):
        y, _ = jg.nn.batch_norm(x, weight=w, bias=b, training=True)
        return jg.sum(jg.tanh(y) * np.linspace(-1, 1, 24).reshape(2, 3, 2, 2))
    jg.check_grads(f, [_normal(2, 3, 2, 2), RNG.uniform(0.5, 2, 3), _normal(3)], order=2, rtol=1e-5, atol=1e-6)


def test_batch_norm_gradients_do_not_flow_into_the_running_statistics():
    rm, rv = jg.param("rm_g", np.zeros(2)), jg.param("rv_g", np.ones(2))
    x = jg.input("x", (3, 2, 2))
    y, updates = jg.nn.batch_norm(x, rm, rv, training=True)
    grads = jg.grad(jg.sum(y * y), [rm, rv])
    got = jg.compile([x], grads, target="numpy")(_normal(3, 2, 2))
    for g in got:
        np.testing.assert_array_equal(g, 0.0)


def test_batch_norm_errors():
    x = jg.input("x", (2, 3, 4, 4))
    rm, rv = jg.param("m", np.zeros(3)), jg.param("v", np.ones(3))
    with pytest.raises(TypeError, match=r"batch_norm: running_mean must be a jg.param"):
        jg.nn.batch_norm(x, jg.input("m_in", (3,)), rv, training=True)
    with pytest.raises(TypeError, match=r"batch_norm: running_var must be a jg.param"):
        jg.nn.batch_norm(x, rm, np.ones(3))
    with pytest.raises(ValueError, match=r"batch_norm: running_mean must have shape \(3,\) for 3 channels, "
                                         r"got \(4,\)"):
        jg.nn.batch_norm(x, jg.param("m4", np.zeros(4)), jg.param("v4", np.ones(4)))
    with pytest.raises(ValueError, match=r"batch_norm: running_var must have shape \(3,\).*got \(3, 1\)"):
        jg.nn.batch_norm(x, rm, jg.param("v31", np.ones((3, 1))))
    for only in ((rm, None), (None, rv)):
        with pytest.raises(ValueError, match="batch_norm: give both running_mean and running_var, or neither"):
            jg.nn.batch_norm(x, *only, training=True)
    with pytest.raises(ValueError, match=r"batch_norm: weight must have shape \(3,\), got \(4,\)"):
        jg.nn.batch_norm(x, rm, rv, weight=np.ones(4))
    with pytest.raises(ValueError, match=r"batch_norm: bias must have shape \(3,\), got \(1, 3\)"):
        jg.nn.batch_norm(x, rm, rv, bias=np.ones((1, 3)))
    with pytest.raises(ValueError, match=r"batch_norm: x must have shape \(N, C, \.\.\.\), got \(3,\)"):
        jg.nn.batch_norm(jg.input("v1", (3,)))
    with pytest.raises(ValueError, match="batch_norm: momentum must be in"):
        jg.nn.batch_norm(x, rm, rv, training=True, momentum=-0.1)


def test_layer_norm_over_a_tuple_of_axes():
    x_np, w_np, b_np = _normal(2, 3, 4, 5), RNG.uniform(0.5, 2, (3, 5)), _normal(3, 5)
    got_mid, got_last = _run(lambda x, w, b: [jg.nn.layer_norm(x, axis=(1, 3), weight=w, bias=b),
                                              jg.nn.layer_norm(x, axis=(-2, -1), eps=1e-3)], [x_np, w_np, b_np])
    mean, var = x_np.mean(axis=(1, 3), keepdims=True), x_np.var(axis=(1, 3), keepdims=True)
    want = (x_np - mean) / np.sqrt(var + 1e-5) * w_np[None, :, None, :] + b_np[None, :, None, :]
    np.testing.assert_allclose(got_mid, want, rtol=1e-12, atol=1e-12)
    mean, var = x_np.mean(axis=(2, 3), keepdims=True), x_np.var(axis=(2, 3), keepdims=True)
    np.testing.assert_allclose(got_last, (x_np - mean) / np.sqrt(var + 1e-3), rtol=1e-12, atol=1e-12)
    jg.check_grads(lambda x, w: jg.sum(jg.sin(jg.nn.layer_norm(x, axis=(0, 2), weight=w))),
                   [_normal(2, 3, 4), RNG.uniform(0.5, 2, (2, 4))], rtol=1e-5, atol=1e-6)


def test_layer_norm_errors():
    x = jg.input("x", (2, 3, 4, 5))
    with pytest.raises(ValueError, match=r"layer_norm: weight must have shape \(3, 5\), got \(5, 3\)"):
        jg.nn.layer_norm(x, axis=(1, 3), weight=np.ones((5, 3)))
    with pytest.raises(ValueError, match=r"layer_norm: bias must have shape \(5,\), got \(4,\)"):
        jg.nn.layer_norm(x, bias=np.ones(4))
    with pytest.raises(ValueError, match=r"layer_norm: weight must have shape \(4, 5\), got \(20,\)"):
        jg.nn.layer_norm(x, axis=(-2, -1), weight=np.ones(20))
    with pytest.raises(np.exceptions.AxisError, match="layer_norm"):
        jg.nn.layer_norm(x, axis=(1, 4))


# -- errors -------------------------------------------------------------------------------------

X = (2, 3, 5, 5)


@pytest.mark.parametrize("build, message", [
    (lambda x: jg.nn.conv2d(jg.input("x3", (3, 5, 5)), np.ones((4, 3, 3, 3))),
     r"conv2d: x must have shape \(N, C_in, H, W\), got \(3, 5, 5\)"),
    (lambda x: jg.nn.conv2d(x, np.ones((4, 3, 3))), r"conv2d: w must have shape \(C_out, C_in / groups, kH, kW\), "
                                                      r"got \(4, 3, 3\)"),
    (lambda x: jg.nn.conv2d(x, np.ones((4, 2, 3, 3))),
     r"conv2d: an input with 3 channels in 1 group\(s\) needs weights of shape \(4, 3, kH, kW\), "
     r"got \(4, 2, 3, 3\)"),
    (lambda x: jg.nn.conv2d(x, np.ones((4, 3, 3, 3)), groups=2),
     r"conv2d: 2 group\(s\) must divide both the input's 3 channels and the 4 output channels"),
    (lambda x: jg.nn.conv2d(jg.input("x4", (2, 4, 5, 5)), np.ones((3, 2, 3, 3)), groups=2),
     r"conv2d: 2 group\(s\) must divide .* the 3 output channels \(weights \(3, 2, 3, 3\)\)"),
    (lambda x: jg.nn.conv2d(x, np.ones((4, 3, 3, 3)), groups=0), "conv2d: groups must be a positive int"),
    (lambda x: jg.nn.conv2d(x, np.ones((4, 3, 6, 3))),
     r"window of 6 .* does not fit along H = 5 with padding \(0, 0\)"),
    (lambda x: jg.nn.conv2d(x, np.ones((4, 3, 3, 4)), padding=(1, 0), dilation=2),
     r"window of 4 \(dilation 2\) does not fit along W = 5"),
    (lambda x: jg.nn.conv2d(x, np.ones((4, 3, 3, 3)), stride=0), "conv2d: stride must be an int >= 1"),
    (lambda x: jg.nn.conv2d(x, np.ones((4, 3, 3, 3)), stride=(1, 0)), "conv2d: stride must be an int >= 1"),
    (lambda x: jg.nn.conv2d(x, np.ones((4, 3, 3, 3)), dilation=0), "conv2d: dilation must be an int >= 1"),
    (lambda x: jg.nn.conv2d(x, np.ones((4, 3, 3, 3)), padding="same", stride=2),
     r"conv2d: padding='same' needs stride 1, got stride \(2, 2\)"),
    (lambda x: jg.nn.conv2d(x, np.ones((4, 3, 3, 3)), padding="full"),
     "conv2d: padding must be an int, a pair, 'valid' or 'same', got 'full'"),
    (lambda x: jg.nn.conv2d(x, np.ones((4, 3, 3, 3)), padding=-1), "conv2d: padding must be an int >= 0"),
    (lambda x: jg.nn.conv2d(x, np.ones((4, 3, 3, 3)), b=np.ones(3)),
     r"conv2d: bias must have shape \(4,\) for 4 output channels, got \(3,\)"),
    (lambda x: jg.nn.conv1d(x, np.ones((4, 3, 3))), r"conv1d: x must have shape \(N, C_in, L\), got \(2, 3, 5, 5\)"),
    (lambda x: jg.nn.conv1d(x[:, :, 0], np.ones((4, 3, 3)), stride=(1, 2)), "conv1d: stride must be an int >= 1"),
    (lambda x: jg.nn.conv1d(x[:, :, 0], np.ones((4, 3, 3)), padding="same", stride=2),
     "conv1d: padding='same' needs stride 1"),
    (lambda x: jg.nn.conv_transpose2d(x, np.ones((3, 2, 3, 3)), stride=2, output_padding=2),
     r"conv_transpose2d: output_padding \(2, 2\) must be smaller than the stride \(2, 2\) or the dilation"),
    (lambda x: jg.nn.conv_transpose2d(x, np.ones((3, 2, 3, 3)), output_padding=1),
     r"conv_transpose2d: output_padding \(1, 1\) must be smaller"),
    (lambda x: jg.nn.conv_transpose2d(x, np.ones((4, 2, 3, 3))),
     r"conv_transpose2d: an input with 3 channels .* got \(4, 2, 3, 3\)"),
    (lambda x: jg.nn.conv_transpose2d(x, np.ones((3, 2, 3, 3)), groups=2),
     r"conv_transpose2d: an input with 3 channels in 2 group"),
    (lambda x: jg.nn.conv_transpose2d(jg.input("x3", (3, 5, 5)), np.ones((3, 2, 3, 3))),
     r"conv_transpose2d: x must have shape \(N, C_in, H, W\)"),
    (lambda x: jg.nn.max_pool2d(x, 2, padding=2), r"max_pool2d: padding \(2, 2\) must be at most half the kernel"),
    (lambda x: jg.nn.avg_pool2d(x, 3, padding=(1, 2)), r"avg_pool2d: padding \(1, 2\) must be at most half the kernel"),
    (lambda x: jg.nn.max_pool2d(x, 2, stride=0), "max_pool2d: stride must be an int >= 1"),
    (lambda x: jg.nn.max_pool2d(x, 0), "max_pool2d: kernel must be an int >= 1"),
    (lambda x: jg.nn.avg_pool2d(x, 6), r"window of 6 .* does not fit along H = 5"),
    (lambda x: jg.nn.max_pool2d(x[0], 2), r"max_pool2d: x must have shape \(N, C, H, W\), got \(3, 5, 5\)"),
    (lambda x: jg.nn.global_avg_pool2d(x[0]), r"global_avg_pool2d: x must have shape \(N, C, H, W\)"),
    (lambda x: jg.nn.flatten(x, 3, 1), r"flatten: axes 3..1 do not fit a shape \(2, 3, 5, 5\)"),
], ids=lambda v: "" if callable(v) else v[:40])
def test_errors_name_the_op_and_the_shapes(build, message):
    with pytest.raises(ValueError, match=message):
        build(jg.input("x", X))


@pytest.mark.parametrize("shape, axis", [((2, 3, None, 5), "H"), ((2, 3, 5, None), "W"), ((None, 3, None, 5), "H")])
@pytest.mark.parametrize("layer", [lambda x: jg.nn.conv2d(x, np.ones((2, 3, 2, 2))),
                                   lambda x: jg.nn.max_pool2d(x, 2), lambda x: jg.nn.avg_pool2d(x, 2)],
                         ids=["conv2d", "max_pool2d", "avg_pool2d"])
def test_a_call_time_height_or_width_is_refused(layer, shape, axis):
    with pytest.raises(ValueError, match=f"height and width must be fixed sizes, got a call-time {axis}"):
        layer(jg.input("x", shape))


def test_call_time_channels_are_refused():
    with pytest.raises(ValueError, match="number of channels must be a fixed size"):
        jg.nn.max_pool2d(jg.input("x", (2, None, 5, 5)), 2)


@pytest.mark.parametrize("layer, name", [(lambda x: jg.nn.conv2d(x, np.ones((4, 3, 6, 3))), "conv2d"),
                                         (lambda x: jg.nn.max_pool2d(x, 6), "max_pool2d"),
                                         (lambda x: jg.nn.conv2d(jg.input("h", (2, 3, None, 5)),
                                                                 np.ones((4, 3, 3, 3))), "conv2d")],
                         ids=["conv2d-window", "max_pool2d-window", "conv2d-call-time-H"])
def test_window_errors_name_the_layer(layer, name):
    with pytest.raises(ValueError, match=f"^{name}:"):
        layer(jg.input("x", X))


# -- threads, save/load, vmap -------------------------------------------------------------------

def test_threaded_gradients_are_bit_identical_to_serial():
    """Batch 16 x 8 channels x 16 x 16: the kernels over the image take the threaded path
    (>= PARALLEL_MIN_SIZE elements) and col2im splits its channels between threads; no sum
    may depend on the threads."""
    rng = np.random.default_rng(3)
    x_np, w_np = rng.normal(size=(16, 8, 16, 16)), rng.normal(size=(8, 4, 3, 3))
    x, w = jg.input("x", x_np.shape), jg.input("w", w_np.shape)
    y = jg.nn.conv2d(x, w, stride=1, padding=1, groups=2)
    outputs = jg.grad(jg.sum(y * y), [x, w])
    serial = jg.compile([x, w], outputs, target="cpu")
    threaded = jg.compile([x, w], outputs, target="cpu", parallel=True)
    want = serial(x_np, w_np)
    for _ in range(3):
        for got, expected in zip(threaded(x_np, w_np), want, strict=True):
            assert got.tobytes() == expected.tobytes()
    assert "unpatches" in threaded.source and "for i0 in prange(r0.shape[0])" in threaded.source


def test_save_and_load_a_conv_and_pool_graph(tmp_path):
    rng = np.random.default_rng(4)
    w = jg.param("w", rng.normal(size=(3, 2, 3, 3)))
    x = jg.input("x", (None, 2, 6, 6))
    h = jg.nn.max_pool2d(jg.relu(jg.nn.conv2d(x, w, np.array([0.1, -0.2, 0.3]), padding=1)), 3, stride=2, padding=1)
    y = jg.nn.avg_pool2d(jg.nn.conv_transpose2d(h, np.ones((3, 1, 2, 2)), stride=2), 2, stride=1, padding=1)
    (gx,) = jg.grad(jg.sum(y * y), [x])
    jg.save(tmp_path / "cnn.npz", [y, gx])
    loaded = jg.load(tmp_path / "cnn.npz")
    inputs = inputs_of(loaded)
    assert [i.name for i in inputs] == ["x"] and inputs[0].dims[1:] == (2, 6, 6)
    x_np = -1.0 - rng.uniform(size=(3, 2, 6, 6))                   # negative: a pad value of 0 would win
    got = jg.compile(inputs, loaded, target="numpy")(x_np)
    want = jg.compile([x], [y, gx], target="numpy")(x_np)
    for g, e in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, e)
    pools = [n for n in jg.graph.topological_order(loaded) if n.op.name == "patches" and n.attrs["pad_value"] != 0]
    assert pools and all(n.attrs["pad_value"] == -np.inf for n in pools)


def test_vmap_over_per_example_weights_matches_a_loop():
    rng = np.random.default_rng(5)
    xs_np, ws_np = rng.normal(size=(3, 2, 2, 5, 6)), rng.normal(size=(3, 4, 1, 3, 2))
    x_np = rng.normal(size=(2, 2, 5, 6))
    xs, ws, x = jg.input("xs", xs_np.shape), jg.input("ws", ws_np.shape), jg.input("x", x_np.shape)

    def layer(image, weight):
        return jg.nn.max_pool2d(jg.nn.conv2d(image, weight, stride=(1, 2), padding=1, groups=2), 2, padding=1)
    shared = jg.vmap(lambda wi: layer(x, wi))(ws)                  # only the weights mapped
    both = jg.vmap(layer)(xs, ws)                                  # images and weights mapped
    (g_shared,) = jg.grad(jg.sum(jg.sin(shared)), [ws])
    g_both = jg.grad(jg.sum(jg.sin(both)), [xs, ws])
    loop = [layer(x, ws[e]) for e in range(3)], [layer(xs[e], ws[e]) for e in range(3)]
    loss_shared = sum(jg.sum(jg.sin(t)) for t in loop[0])
    loss_both = sum(jg.sum(jg.sin(t)) for t in loop[1])
    want_outputs = [jg.stack(loop[0]), jg.stack(loop[1]), *jg.grad(loss_shared, [ws]), *jg.grad(loss_both, [xs, ws])]
    f = jg.compile([xs, ws, x], [shared, both, g_shared, *g_both] + want_outputs, target="numpy")
    results = f(xs_np, ws_np, x_np)
    got, want = results[:5], results[5:]
    for g, e in zip(got, want, strict=True):
        assert g.shape == e.shape
        np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-12)


def test_vmap_of_per_example_gradients_through_col2im_matches_a_loop():
    """Gradients inside vmap: col2im (conv_transpose2d, max-pool's derivative) batched by its rule."""
    rng = np.random.default_rng(6)
    xs_np, ws_np = rng.normal(size=(3, 2, 2, 5, 6)), rng.normal(size=(3, 2, 2, 3, 2))
    xs, ws = jg.input("xs", xs_np.shape), jg.input("ws", ws_np.shape)

    def per_example(image, weight):
        y = jg.nn.conv_transpose2d(jg.nn.max_pool2d(image, 2, stride=1, padding=1), weight, stride=2, padding=1,
                                   output_padding=1)
        return jg.grad(jg.sum(jg.sin(y)), [image, weight])
    got = jg.vmap(per_example)(xs, ws)
    want = [jg.stack([per_example(xs[e], ws[e])[k] for e in range(3)]) for k in range(2)]
    results = jg.compile([xs, ws], [*got, *want], target="numpy")(xs_np, ws_np)
    for g, e in zip(results[:2], results[2:], strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-12)
