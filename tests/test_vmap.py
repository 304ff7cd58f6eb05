"""jg.vmap: every primitive's batching rule against a loop over the examples, derivatives
of and inside batched graphs, Jacobians built with it, and the errors it raises.

The reference for a batched graph is the same function compiled for one example and
called once per example; on the numpy target both sides run the same NumPy
functions, so most cases agree to rounding of the matrix products.
"""
from __future__ import annotations

import numpy as np
import pytest

import jitgrad as jg
from jitgrad import testing as jt
from jitgrad.graph import topological_order
from jitgrad.ops import BY_NAME, leaf
from jitgrad.testing import CASES

EXAMPLES = 3
TOL = dict(rtol=1e-12, atol=1e-12)


def _with_derivatives(case):
    """The case's value, its JVP along fixed tangents and its VJP of a fixed cotangent, as
    one function of the arguments (so vmap maps the derivative graphs too)."""
    def fn(*xs):
        y = case.fn(*xs)
        if not case.differentiable:
            return [y]
        tangents = [np.sin(np.arange(np.prod(x.shape)) + 1.0).reshape(x.shape) for x in xs]
        ct = np.cos(np.arange(np.prod(y.shape))).reshape(y.shape)
        return [y, *jg.jvp([y], list(xs), tangents), *jg.vjp([y], list(xs), [ct])]
    return fn


def _looped(fn, args, in_axes, target="numpy"):
    """``vmap(fn, in_axes)(*args)`` computed the slow way: one example at a time."""
    mapped = [i for i, a in enumerate(in_axes) if a is not None]
    size = np.shape(args[mapped[0]])[in_axes[mapped[0]]]
    one = [np.take(a, 0, axis=ax) if ax is not None else a for a, ax in zip(args, in_axes)]
    xs = [jg.input(f"x{i}", np.shape(a), np.asarray(a).dtype) for i, a in enumerate(one)]
    outputs = fn(*xs)
    single = isinstance(outputs, jg.Tensor)
    f = jg.compile(xs, [outputs] if single else list(outputs), target=target)
    per_example = [f(*[np.take(a, e, axis=ax) if ax is not None else a for a, ax in zip(args, in_axes)])
                   for e in range(size)]
    stacked = [np.stack(outs) for outs in zip(*per_example)]
    return stacked[0] if single else stacked


def _batched(fn, args, in_axes, target="numpy"):
    xs = [jg.input(f"x{i}", np.shape(a), np.asarray(a).dtype) for i, a in enumerate(args)]
    outputs = jg.vmap(fn, in_axes=tuple(in_axes))(*xs)
    single = isinstance(outputs, jg.Tensor)
    result = jt.call_unmutated(jg.compile(xs, [outputs] if single else list(outputs), target=target), *args)
    return result[0] if single else result


def _stacked_args(case, in_axes):
    """Arguments with ``EXAMPLES`` examples along each mapped axis (the case's own generators)."""
    args = []
    for k, axis in enumerate(in_axes):
        draws = [case.sample()[k] for _ in range(EXAMPLES)]
        args.append(draws[0] if axis is None else np.stack(draws, axis=axis))
    return args


def _layouts(case):
    """All arguments mapped on axis 0; the first alone, on its last axis; the last alone."""
    n = len(case.args)
    layouts = [[0] * n]
    if n > 1:
        layouts += [[-1] + [None] * (n - 1), [None] * (n - 1) + [0]]
    else:
        layouts += [[-1]]
    return layouts


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_every_case_and_its_derivatives_batch_like_a_loop(case):
    fn = _with_derivatives(case)
    for in_axes in _layouts(case):
        args = _stacked_args(case, in_axes)
        want = _looped(fn, args, [a % np.ndim(x) if a is not None else None for a, x in zip(in_axes, args)])
        got = _batched(fn, args, in_axes)
        for k, (g, w) in enumerate(zip(got, want, strict=True)):
            jt.assert_same(g, w, what=f"{case.name}, in_axes {in_axes}, output {k}", **TOL)


def test_the_batching_rules_cover_every_primitive_with_inputs():
    missing = [p.name for p in BY_NAME.values() if p.batch is None and p.nin != 0
               and p not in (leaf.input_p, leaf.param_p, leaf.constant_p)]
    assert not missing, f"no batching rule: {missing}"


@pytest.mark.parametrize("name", ["matmul", "gather", "solve", "reduce_max", "broadcast_to", "scatter_add",
                                  "concatenate", "svd_function", "conv2d", "max_pool2d"])
def test_batched_graphs_on_the_cpu_match_the_reference(name):
    case = next(c for c in CASES if c.name == name)
    fn = _with_derivatives(case)
    for in_axes in _layouts(case):
        args = _stacked_args(case, in_axes)
        for k, (g, w) in enumerate(zip(_batched(fn, args, in_axes, "cpu"), _batched(fn, args, in_axes))):
            jt.assert_same(g, w, what=f"{name}, in_axes {in_axes}, output {k}", rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", ["tanh", "matmul_vec", "take", "solve", "reduce_prod", "eigh_function_exact",
                                  "conv_transpose2d"])
def test_derivatives_of_batched_graphs_match_finite_differences(name):
    case = next(c for c in CASES if c.name == name)
    in_axes = [0] + [None] * (len(case.args) - 1)
    jg.check_grads(jg.vmap(case.fn, in_axes=tuple(in_axes)), _stacked_args(case, in_axes), order=2, **case.tol)


def _pick_and_put_back(x, i):
    picked = jg.take(x, i, axis=1)                                       # (4, 2, 3)
    back = jg.graph.bind(BY_NAME["scatter_add"], picked, i, shape=(4, 5), axis=1)
    return [picked, back, *jg.vjp([picked * picked], [x], [jg.sin(picked)])]


def _indexing_args(mapped):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(EXAMPLES, 4, 5)) if mapped[0] else rng.normal(size=(4, 5))
    idx = rng.integers(-5, 5, (EXAMPLES, 2, 3)) if mapped[1] else rng.integers(-5, 5, (2, 3))
    return [x, idx], [0 if m else None for m in mapped]


@pytest.mark.parametrize("mapped", [(True, False), (False, True), (True, True)])
def test_indexing_with_mapped_indices(mapped):
    args, in_axes = _indexing_args(mapped)
    got, want = _batched(_pick_and_put_back, args, in_axes), _looped(_pick_and_put_back, args, in_axes)
    for k, (g, w) in enumerate(zip(got, want)):
        jt.assert_same(g, w, what=f"output {k}", **TOL)


@pytest.mark.parametrize("target", ["numpy", "cpu"])
def test_indexing_with_a_call_time_number_of_examples(target):
    """Array and indices both mapped, examples counted at call time: a one-hot selection
    instead of offset indices, with the same values."""
    args, in_axes = _indexing_args((True, True))
    x, i = jg.input("x", (None, 4, 5)), jg.input("i", (None, 2, 3), "int64")
    outputs = jg.vmap(_pick_and_put_back)(x, i)
    got = jg.compile([x, i], outputs, target=target)(*args)
    for k, (g, w) in enumerate(zip(got, _looped(_pick_and_put_back, args, in_axes))):
        jt.assert_same(g, w, what=f"output {k}", **TOL)


def test_per_example_gradients_equal_a_loop_and_sum_to_the_batch_gradient():
    rng = np.random.default_rng(2)
    w = jg.param("w", rng.normal(size=(3, 2)))
    xs, ys = jg.input("xs", (6, 3)), jg.input("ys", (6, 2))

    def loss(x, y):
        return jg.sum((jg.tanh(x @ w) - y) ** 2)

    per_example = jg.vmap(lambda x, y: jg.grad(loss(x, y), [w])[0])(xs, ys)          # (6, 3, 2)
    (total,) = jg.grad(jg.sum(jg.vmap(loss)(xs, ys)), [w])
    X, Y = rng.normal(size=(6, 3)), rng.normal(size=(6, 2))
    got, whole = jg.compile([xs, ys], [per_example, total], target="cpu")(X, Y)
    x1, y1 = jg.input("x1", (3,)), jg.input("y1", (2,))
    one = jg.compile([x1, y1], jg.grad(loss(x1, y1), [w])[0], target="numpy")
    np.testing.assert_allclose(got, np.stack([one(X[e], Y[e]) for e in range(6)]), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(got.sum(0), whole, rtol=1e-12, atol=1e-14)


def test_nested_vmap_is_an_outer_product_of_maps():
    a, b = jg.input("a", (3, 2)), jg.input("b", (4, 2))
    pairs = jg.vmap(lambda u: jg.vmap(lambda v: jg.sum(u * v))(b))(a)                # (3, 4)
    A, B = np.arange(6.0).reshape(3, 2), np.arange(8.0).reshape(4, 2)
    np.testing.assert_allclose(jg.compile([a, b], pairs, target="numpy")(A, B), A @ B.T)


def test_out_axes_place_the_examples_axis_and_unmapped_values_broadcast():
    x, c = jg.input("x", (2, 5)), jg.input("c", (3,))

    def fn(row, c):
        return row * 2.0, c + 1.0
    moved, same = jg.vmap(fn, in_axes=(1, None), out_axes=(-1, 0))(x, c)
    assert moved.shape == (2, 5) and same.shape == (5, 3)
    X, C = np.arange(10.0).reshape(2, 5), np.ones(3)
    got = jg.compile([x, c], [moved, same], target="numpy")(X, C)
    np.testing.assert_array_equal(got[0], X * 2)
    np.testing.assert_array_equal(got[1], np.broadcast_to(C + 1, (5, 3)))
    (once,) = [jg.vmap(fn, in_axes=(0, None), out_axes=(0, None))(x, c)[1]]
    assert once.shape == (3,)


def test_a_call_time_number_of_examples():
    x = jg.input("x", (None, 3))
    y = jg.vmap(lambda r: jg.sum(jg.sin(r)) * r)(x)
    assert y.shape == (None, 3)
    X = np.random.default_rng(3).normal(size=(7, 3))
    np.testing.assert_allclose(jg.compile([x], y, target="cpu")(X), np.sin(X).sum(1, keepdims=True) * X)


def test_jacobians_hold_one_pass_whatever_the_size():
    def nodes(n, mode):
        a = jg.constant(np.random.default_rng(n).normal(size=(n, n)))
        x = jg.input("x", (n,))
        return len(topological_order([jg.jacobian(jg.tanh(a @ x), x, mode)]))
    for mode in ("fwd", "rev"):
        assert nodes(4, mode) == nodes(40, mode) < 30


@pytest.mark.parametrize("mode", ["fwd", "rev"])
def test_jacobians_and_hessians_match_the_closed_forms(mode):
    rng = np.random.default_rng(4)
    A, X = rng.normal(size=(4, 3)), rng.normal(size=3)
    x = jg.input("x", (3,))
    y = jg.tanh(jg.constant(A) @ x)
    J, H = jg.jacobian(y, x, mode), jg.hessian(jg.sum(y ** 3), x)
    got_j, got_h = jg.compile([x], [J, H], target="cpu")(X)
    t = np.tanh(A @ X)
    np.testing.assert_allclose(got_j, (1 - t ** 2)[:, None] * A, rtol=1e-12, atol=1e-14)
    d2 = 6 * t * (1 - t ** 2) ** 2 + 3 * t ** 2 * (-2 * t) * (1 - t ** 2)     # d²(tanh³)/du²
    np.testing.assert_allclose(got_h, A.T @ (d2[:, None] * A), rtol=1e-11, atol=1e-13)


def test_bad_axes_and_sizes_are_named():
    x, y = jg.input("x", (3, 4)), jg.input("y", (5, 4))
    with pytest.raises(ValueError, match=r"in_axes\[0\] = 2 is out of range for argument 0 of shape \(3, 4\)"):
        jg.vmap(lambda a: a, in_axes=2)(x)
    with pytest.raises(ValueError, match="argument 0 has 3 examples along axis 0 but argument 1 has 5"):
        jg.vmap(lambda a, b: a + b)(x, y)
    with pytest.raises(ValueError, match=r"out_axes\[0\] = 3 does not fit output 0"):
        jg.vmap(lambda a: a, out_axes=3)(x)
    with pytest.raises(ValueError, match=r"out_axes\[0\] is None, but output 0 depends"):
        jg.vmap(lambda a: a * 2.0, out_axes=None)(x)
    with pytest.raises(ValueError, match="no argument is mapped"):
        jg.vmap(lambda a: a, in_axes=None)(x)
    with pytest.raises(ValueError, match="in_axes has 1 entries for 2 arguments"):
        jg.vmap(lambda a, b: a, in_axes=(0,))(x, y)
    with pytest.raises(TypeError, match=r"in_axes\[0\] must be an int or None"):
        jg.vmap(lambda a: a, in_axes="0")(x)
