"""target="cuda" against the numpy reference, in Numba's CUDA simulator.

Run in its own process (the simulator must be switched on before numba is
imported): ``NUMBA_ENABLE_CUDASIM=1 python -m pytest -q tests/cuda``;
tests/test_cuda.py does that from the main suite.  Every case of the primitive
table (jitgrad.testing.CASES) runs on the device, value, JVP and VJP, and must
match the reference and leave its arguments unchanged.
"""
from __future__ import annotations

import numpy as np
import pytest
from numba import config

if not config.ENABLE_CUDASIM:
    pytest.skip("the CUDA tests run in the simulator: NUMBA_ENABLE_CUDASIM=1", allow_module_level=True)

import jitgrad as jg  # noqa: E402
from jitgrad.testing import CASES, call_unmutated, check_target, with_derivatives  # noqa: E402

LINALG = {"solve", "solve_batched", "inv", "det", "slogdet", "slogdet_sign", "cholesky", "triangular_solve",
          "triangular_solve_upper_t", "eigh_values", "eigh_function", "svd_values", "svd_function",
          "svd_function_tall", "norm_nuclear"}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_every_case_matches_the_reference(case):
    args = case.sample()
    tol = 1e-9 if case.name in LINALG else 1e-12     # Jacobi on the device, LAPACK on the host
    check_target(*with_derivatives(case, args), args, "cuda", rtol=tol, atol=tol)


def test_forward_mode_matches_the_reference():
    x = jg.input("x", (3, 4))
    y = jg.logsumexp(jg.sin(x) * x, axis=1)
    (t,) = jg.jvp([y], [x], [np.ones((3, 4))])
    X = np.random.default_rng(0).normal(size=(3, 4))
    check_target([x], [y, t], [X], "cuda", rtol=1e-12, atol=0)


def _mlp(target):
    rng = np.random.default_rng(5)
    w1, b1 = jg.param("w1", rng.normal(size=(6, 8)) * 0.3), jg.param("b1", np.zeros(8))
    w2, b2 = jg.param("w2", rng.normal(size=(8, 3)) * 0.3), jg.param("b2", np.zeros(3))
    x, labels = jg.input("x", (None, 6)), jg.input("labels", (None,), "int64")
    loss = jg.nn.cross_entropy(jg.nn.dense(jg.relu(jg.nn.dense(x, w1, b1)), w2, b2), labels)
    params = [w1, b1, w2, b2]
    step = jg.compile([x, labels], loss, target=target,
                      updates=jg.optim.sgd(loss, params, lr=0.1, momentum=0.9))
    return step, params


def test_sgd_steps_of_an_mlp_equal_the_reference():
    rng = np.random.default_rng(6)
    X, Y = rng.normal(size=(10, 6)), rng.integers(0, 3, 10)
    (gpu, gpu_params), (ref, ref_params) = _mlp("cuda"), _mlp("numpy")
    for k in range(3):
        rows = slice(4 * k, 4 * k + 4)
        np.testing.assert_allclose(gpu(X[rows], Y[rows]), ref(X[rows], Y[rows]), rtol=1e-12)
    for p, q in zip(gpu_params, ref_params):
        assert p._payload.device is not None            # the newest value lives on the device
        np.testing.assert_allclose(p.value, q.value, rtol=1e-12, atol=1e-14)


def test_an_index_out_of_bounds_raises_and_changes_no_param():
    step, params = _mlp("cuda")
    before = [p.value for p in params]
    with pytest.raises(IndexError, match="out of bounds"):
        step(np.ones((2, 6)), np.array([0, 7]))
    for p, b in zip(params, before):
        np.testing.assert_array_equal(p.value, b)


def test_setting_a_param_on_the_host_reaches_the_device():
    w = jg.param("w", np.ones(3))
    x = jg.input("x", (3,))
    f = jg.compile([x], jg.sum(w * x), target="cuda", updates={w: w * 2})
    assert f(np.ones(3)) == 3.0 and f(np.ones(3)) == 6.0
    w.value = np.full(3, 10.0)
    assert f(np.ones(3)) == 30.0
    np.testing.assert_array_equal(w.value, np.full(3, 20.0))


@pytest.mark.parametrize("build, shape", [(lambda w: jg.sum(w), r"\(\)"), (lambda w: w[:2], r"\(2,\)"),
                                          (lambda w: w.reshape(1, 3), r"\(1, 3\)")],
                         ids=["scalar", "shorter", "higher-rank"])
def test_an_update_of_another_shape_is_refused_at_compile(build, shape):
    w = jg.param("w", np.arange(3.0))
    x = jg.input("x", (3,))
    with pytest.raises(ValueError, match=rf"update of param 'w' has shape {shape}, the param has shape \(3,\)"):
        jg.compile([x], jg.sum(w * x), target="cuda", updates={w: build(w)})
    np.testing.assert_array_equal(w.value, np.arange(3.0))


def test_a_fixed_shape_input_of_another_shape_is_refused():
    x = jg.input("x", (3,))
    f = jg.compile([x], jg.sum(x * 2.0), target="cuda")
    assert f(np.ones(3)) == 6.0
    for bad, message in [(np.ones(2), r"\(3,\), got \(2,\)"), (np.ones((3, 1)), r"\(3,\), got \(3, 1\)")]:
        with pytest.raises(ValueError, match=rf"input 'x': expected shape {message}"):
            f(bad)
    with pytest.raises(TypeError, match="input 'x'.*complex128"):
        f(np.ones(3, complex))


def test_the_generated_source_is_kept():
    x = jg.input("x", (4,))
    f = jg.compile([x], [jg.sum(jg.exp(x))], target="cuda")
    assert "@cuda.jit" in f.source and "cuda.syncthreads()" in f.source


import test_training as training  # noqa: E402  (the optimizers' NumPy references)


@pytest.mark.parametrize("kind, kw", training.CONFIGS, ids=[f"{k}-{i}" for i, (k, _) in enumerate(training.CONFIGS)])
def test_optimizers_on_the_device_match_numpy(kind, kw):
    step, w, b = training.model("cuda", getattr(jg.optim, kind), **kw)
    for _ in range(5):
        step(training.X, training.Y)
    want_w, want_b = training.reference(kind, 5, **kw)
    np.testing.assert_allclose(w.value, want_w, rtol=1e-12)
    np.testing.assert_allclose(b.value, want_b, rtol=1e-12)


def test_sgd_updates_are_written_in_place_on_the_device():
    step, params = _mlp("cuda")
    buffers = [None] * len(params)
    X, Y = np.ones((4, 6)), np.array([0, 1, 2, 0])
    step(X, Y)
    buffers = [p._payload.device for p in params]
    step(X, Y)
    assert len(step._program._in_place) == 2 * len(params)     # params and velocities
    assert all(p._payload.device is b for p, b in zip(params, buffers))   # same device buffers


def test_reductions_of_a_0d_tensor_and_their_derivatives():
    """Every reduction of a 0-d tensor, each axis NumPy accepts, keepdims or not: values and
    first and second derivatives in both modes, all 0-d, equal to the reference."""
    import test_axes
    inputs, outputs = test_axes.zero_d_reduction_graph()
    x, t = np.array(0.4), np.array(1.3)
    got = call_unmutated(jg.compile(inputs, outputs, target="cuda"), x, t)
    for g, e in zip(got, test_axes.zero_d_reduction_expected(x, t), strict=True):
        assert g.shape == () and g.dtype == np.float64
        np.testing.assert_allclose(g, e, rtol=1e-13)
    jg.check_grads(test_axes.all_0d_reductions, [np.array(0.8)], order=2, target="cuda")


def test_batched_graphs_match_the_reference():
    """jg.vmap builds ordinary graph: per-example gradients (mapped matmul, reductions, a
    mapped gather) and a Jacobian mapped over unit vectors run on the device as on the host."""
    rng = np.random.default_rng(7)
    w = jg.param("w", rng.normal(size=(4, 3)))
    xs, labels, v = jg.input("xs", (5, 4)), jg.input("labels", (5,), "int64"), jg.input("v", (3,))

    def loss(x, label):
        return -jg.nn.log_softmax(x @ w)[label]
    per_example = jg.vmap(lambda x, label: jg.grad(loss(x, label), [w])[0])(xs, labels)
    jac = jg.jacobian(jg.tanh(w @ v), v, mode="rev")
    args = [rng.normal(size=(5, 4)), rng.integers(0, 3, 5), rng.normal(size=3)]
    check_target([xs, labels, v], [per_example, jac], args, "cuda", rtol=1e-12, atol=1e-14)


def test_loops_and_branches_match_the_reference():
    """scan (tuple carry with a 0-d part, reverse mode), while_loop (forward mode) and cond
    run as host loops over the bodies' kernels."""
    from jitgrad import functions as F
    x, a = jg.input("x", (5, 3)), jg.input("a", ())
    w = jg.param("w", np.full(3, 0.5))

    def step(carry, row):
        h, s = carry
        h = jg.tanh(h * w + row)
        return (h, s + jg.sum(h)), jg.sum(h * h)
    (h, s), ys = jg.scan(step, (F.zeros_like(x[0]), a), x)
    loss = jg.sum(h) + jg.sum(ys) + s
    root = jg.while_loop(lambda c: jg.abs(c * c - a) > 1e-12, lambda c: (c + a / c) * 0.5, F.constant(1.0))
    branch = jg.cond(a > 2.0, lambda u: jg.sin(u) * 2.0, lambda u: jg.cos(u), root)
    outputs = [h, s, ys, loss, *jg.grad(loss, [x, w]), root, *jg.jvp([root], [a], [1.0]), branch,
               *jg.jvp([branch], [a], [1.0])]
    for value in (3.0, 1.5):
        check_target([x, a], outputs, [np.random.default_rng(8).normal(size=(5, 3)), np.array(value)], "cuda",
                     rtol=1e-12, atol=1e-14)


def test_random_streams_are_bitwise_the_reference():
    """Philox on the device: the same bits, uniform numbers and keys as the NumPy reference."""
    key = jg.input("key", (2,), "uint32")
    k1, k2 = jg.random.split(key)
    draws = [jg.random.uniform(k1, (7, 3)), jg.random.bits(key, (9,)), jg.random.uniform(key, (), "float32"),
             jg.random.split(key, 3), jg.random.fold_in(key, 12345), jg.random.bernoulli(k2, 0.4, (6,)),
             jg.vmap(lambda k: jg.random.uniform(k, (5,), "float32"))(jg.random.split(key, 4))]
    check_target([key], draws, [np.array([7, 9], np.uint32)], "cuda", rtol=0, atol=0)


def _ten_ops():
    """A 10-op graph whose log reads 0 where x <= 1 (as tests/test_debug.py's)."""
    x = jg.input("x", (4,))
    a = x * 2.0
    b = a - 2.0
    c = jg.maximum(b, 0.0)
    d = jg.log(c)                       # planted: log(0) on the device
    e = d * x
    f = jg.exp(-x)
    g = e + f
    h = g * g
    return x, jg.sum(h)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")     # 0/0, in simulated threads
def test_debug_nans_names_the_primitive_and_line_and_changes_no_param():
    """The device flag of the first failed check; the simulator's math raises where a GPU makes
    NaN/inf (log(0)), which counts as the step's NaN; a 0/0 reaches the flag as on a GPU."""
    from pathlib import Path
    source = Path(__file__).read_text().splitlines()
    line = next(k for k, text in enumerate(source, 1) if text.rstrip().endswith("# planted: log(0) on the device"))
    with jg.debug_nans():
        x, y = _ten_ops()
    f = jg.compile([x], y, target="cuda", debug_nans=True)
    assert np.isfinite(f(np.array([1.5, 2.0, 3.0, 4.0])))
    with pytest.raises(FloatingPointError, match=r"(?s)target 'cuda'.*made by log, from finite operands") as caught:
        f(np.array([0.5, 2.0, 3.0, 4.0]))
    assert caught.value.finding.origin.op.name == "log"
    assert caught.value.site.frames[0][:2] == (__file__, line) and "d = jg.log(c)" in str(caught.value)
    assert np.isfinite(f(np.array([1.5, 2.0, 3.0, 4.0])))      # the flag is reset

    w = jg.param("w", np.array([1.0, 0.0, 2.0]))
    u = jg.input("u", (3,))
    loss = jg.sum(u / w)
    step = jg.compile([u], loss, target="cuda", debug_nans=True, updates={w: w * 2.0})
    with pytest.raises(FloatingPointError, match=r"(?s)produced nan.*made by div"):
        step(np.zeros(3))                # 0/0: NaN on the device, no exception in the simulator
    np.testing.assert_array_equal(w.value, [1.0, 0.0, 2.0])


def test_profile_times_each_step_and_changes_no_param():
    w = jg.param("w", np.ones((4, 3)))
    x = jg.input("x", (None, 4))
    loss = jg.sum(jg.tanh(x @ w) ** 2)
    f = jg.compile([x], loss, target="cuda", updates={w: w - 0.1 * jg.grad(loss, [w])[0]})
    profile = f.profile(np.ones((2, 4)), repeat=2)
    assert [row.step for row in profile.rows][:2] == ["call matmul", "kernel 0"]
    assert profile.target == "cuda" and all(row.calls == 2 for row in profile.rows)
    assert str(profile).startswith("profile of 2 calls on target 'cuda'")
    np.testing.assert_array_equal(w.value, np.ones((4, 3)))


def test_the_gradient_of_taking_one_column_runs_on_the_device():
    """A 0-d index lives on the device as one element: scatter_add must accept it."""
    x = jg.input("x", (3, 3))
    (g,) = jg.grad(jg.sum(jg.sin(jg.take(x, np.array(1), axis=1))), [x])
    value = np.arange(9.0).reshape(3, 3)
    check_target([x], [g], [value], "cuda")
