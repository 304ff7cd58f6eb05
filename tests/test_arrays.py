"""jitgrad.arrays (pad flip roll tile repeat split array_split diag diagonal trace tril triu
moveaxis swapaxes ravel meshgrid take_along_axis) against NumPy: values, shapes and dtypes over
sweeps on the reference target, a few graphs on the CPU target, derivatives against finite
differences, errors."""
from __future__ import annotations

import numpy as np
import pytest
from numpy.exceptions import AxisError

import jitgrad as jg

rng = np.random.default_rng(17)
X = rng.normal(size=(3, 4, 5))
M = rng.normal(size=(4, 6))
V = rng.normal(size=(5,))
IDX = rng.integers(-5, 5, size=(3, 4, 7))

# (name, call) pairs: call(module, array) with module jg or np
SWEEP = [
    *[(f"flip {a}", lambda m, x, a=a: m.flip(x, a)) for a in (None, 0, -1, (0, 2), ())],
    *[(f"roll {s} {a}", lambda m, x, s=s, a=a: m.roll(x, s, a))
      for s, a in [(2, None), (-7, None), (1, 0), (-1, -1), (6, 1), ((1, 2), (0, -1)), ((1, 1), 2),
                   (2, (0, 1)), (0, 1), (5, 2)]],
    *[(f"tile {r}", lambda m, x, r=r: m.tile(x, r)) for r in (2, (2, 1, 1), (1, 2, 1, 2), (2, 1), (0, 1), ())],
    *[(f"repeat {r} {a}", lambda m, x, r=r, a=a: m.repeat(x, r, a))
      for r, a in [(2, None), (3, 0), (2, -1), ([1, 0, 2], 0), ([2, 0, 1, 3], 1), (np.array([2]), 2), (0, 1)]],
    *[(f"diagonal {o} {a} {b}", lambda m, x, o=o, a=a, b=b: m.diagonal(x, o, a, b))
      for o, a, b in [(0, 0, 1), (1, 0, 1), (-2, 0, 1), (2, -1, 0), (0, 1, 2), (-1, 2, 1), (7, 0, 2), (-3, 0, 1)]],
    *[(f"trace {o} {a} {b}", lambda m, x, o=o, a=a, b=b: m.trace(x, o, a, b))
      for o, a, b in [(0, 0, 1), (1, 1, 2), (-1, -1, 0), (9, 0, 1)]],
    *[(f"{f} {k}", lambda m, x, f=f, k=k: getattr(m, f)(x, k))
      for f in ("tril", "triu") for k in (0, 1, -2, 9, -9)],
    *[(f"moveaxis {s} {d}", lambda m, x, s=s, d=d: m.moveaxis(x, s, d))
      for s, d in [(0, -1), (-1, 0), ((0, 1), (2, 0)), ([2, 0], [0, 1]), ((), ())]],
    *[(f"swapaxes {a} {b}", lambda m, x, a=a, b=b: m.swapaxes(x, a, b)) for a, b in [(0, 2), (-1, 1), (1, 1)]],
    *[(f"ravel {o}", lambda m, x, o=o: m.ravel(x, o)) for o in ("C", "F")],
    *[(f"pad {w}", lambda m, x, w=w: m.pad(x, w)) for w in (1, (1, 2), ((1, 0), (0, 2), (3, 1)), ((2,),), [[0, 1]])],
    ("pad constant values", lambda m, x: m.pad(x, ((1, 2), (0, 1), (2, 0)), constant_values=((1, 2), (3, 4), (5, 6)))),
    ("pad constant scalar", lambda m, x: m.pad(x, 2, "constant", constant_values=-1.5)),
    *[(f"pad {mode} {w}", lambda m, x, mode=mode, w=w: m.pad(x, w, mode))
      for mode in ("edge", "reflect", "symmetric", "wrap") for w in (1, ((2, 3), (0, 1), (4, 0)), ((9, 7),))],
    ("take_along_axis 0", lambda m, x: m.take_along_axis(x, IDX[:, :1, :5] % 3, 0)),
    ("take_along_axis -1", lambda m, x: m.take_along_axis(x, IDX, -1)),
    ("take_along_axis bcast", lambda m, x: m.take_along_axis(x, IDX[:1, :, :1], 2)),
    ("take_along_axis None", lambda m, x: m.take_along_axis(x, IDX.ravel(), None)),
]


def _values_equal(got, want, what):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape and got.dtype == want.dtype, (what, got.shape, want.shape, got.dtype, want.dtype)
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13, err_msg=what)


@pytest.mark.parametrize("dtype", ["float64", "float32", "int32", "bool"])
def test_sweep_equals_numpy(dtype):
    data = (X * 3).astype(dtype) if dtype != "bool" else X > 0
    x = jg.input("x", data.shape, dtype)
    outs, wants, names = [], [], []
    for name, call in SWEEP:
        if name.startswith("pad constant") and dtype == "bool":
            continue
        outs.append(call(jg, x))
        wants.append(call(np, data))
        names.append(name)
    got = jg.compile([x], outs, target="numpy")(data)
    for name, g, w in zip(names, got, wants):
        _values_equal(g, w, f"{name} ({dtype})")


def test_matrix_and_vector_functions_equal_numpy():
    m, v = jg.input("m", M.shape), jg.input("v", V.shape)
    calls = [
        lambda n, m, v: n.diag(m), lambda n, m, v: n.diag(m, 2), lambda n, m, v: n.diag(m, -3),
        lambda n, m, v: n.diag(v), lambda n, m, v: n.diag(v, 2), lambda n, m, v: n.diag(v, -1),
        lambda n, m, v: n.tril(v), lambda n, m, v: n.triu(v, 1), lambda n, m, v: n.trace(m, 1),
        lambda n, m, v: n.pad(v, (2, 3), "reflect"), lambda n, m, v: n.pad(v, 12, "reflect"),
        lambda n, m, v: n.roll(m, (1, -2), (0, 1)), lambda n, m, v: n.repeat(v, [0, 1, 2, 0, 3]),
        *[lambda n, m, v, i=i: n.meshgrid(v, m[:3, 0], v[:2], indexing="ij")[i] for i in range(3)],
        *[lambda n, m, v, i=i: n.meshgrid(v, m[:, 0], sparse=True)[i] for i in range(2)],
        *[lambda n, m, v, i=i: n.meshgrid(v, m[0], m[:, 1])[i] for i in range(3)],
        lambda n, m, v: n.meshgrid(v)[0],
        *[lambda n, m, v, i=i: n.split(m, 3, axis=1)[i] for i in range(3)],
        *[lambda n, m, v, i=i: n.split(v, [-2, 1, 9])[i] for i in range(4)],
        *[lambda n, m, v, i=i: n.array_split(m, 3)[i] for i in range(3)],
        *[lambda n, m, v, i=i: n.array_split(v, 7)[i] for i in range(7)],
        *[lambda n, m, v, i=i: n.array_split(m, [2], axis=-1)[i] for i in range(2)],
    ]
    got = jg.compile([m, v], [c(jg, m, v) for c in calls], target="numpy")(M, V)
    for i, (c, g) in enumerate(zip(calls, got)):
        _values_equal(g, c(np, M, V), f"call {i}")
    assert isinstance(jg.meshgrid(v, v), tuple) and len(jg.split(v, 5)) == 5


def test_zero_d_and_empty():
    s, e = jg.input("s", ()), jg.input("e", (0, 3))
    S, E = np.float64(1.5), np.zeros((0, 3))
    calls = [lambda n, s, e: n.flip(s), lambda n, s, e: n.roll(s, 3), lambda n, s, e: n.tile(s, (2, 2)),
             lambda n, s, e: n.repeat(s, 3), lambda n, s, e: n.ravel(s), lambda n, s, e: n.pad(s, 3),
             lambda n, s, e: n.flip(e, 0), lambda n, s, e: n.roll(e, 1, 0), lambda n, s, e: n.tile(e, 2),
             lambda n, s, e: n.repeat(e, 2, 1), lambda n, s, e: n.pad(e, 1), lambda n, s, e: n.diagonal(e),
             lambda n, s, e: n.trace(e), lambda n, s, e: n.tril(e), lambda n, s, e: n.pad(e, ((0, 0), (1, 1)), "edge"),
             lambda n, s, e: n.array_split(e, 2, 1)[1], lambda n, s, e: n.swapaxes(e, 0, 1)]
    got = jg.compile([s, e], [c(jg, s, e) for c in calls], target="numpy")(S, E)
    for i, (c, g) in enumerate(zip(calls, got)):
        _values_equal(g, c(np, S, E), f"call {i}")


def test_trace_dtypes_follow_numpy():
    for dt in ("int32", "int64", "uint8", "bool", "float32"):
        a = jg.input("a", (3, 3), dt)
        assert jg.trace(a).dtype == np.trace(np.ones((3, 3), dt)).dtype, dt
    assert jg.trace(jg.input("a", (3, 3)), dtype="float32").dtype == np.float32


def test_cpu_target_matches_numpy():
    """One compiled graph holding every function (each graph costs a Numba compile)."""
    x, v = jg.input("x", X.shape), jg.input("v", V.shape)
    outs = [jg.flip(x, (0, 2)), jg.roll(x, (1, -2), (0, 2)), jg.tile(v, (2, 2)), jg.repeat(x, [1, 0, 2], 0),
            jg.repeat(v, 2), jg.diagonal(x, 1, 1, 2), jg.trace(x, -1), jg.tril(x, 1), jg.triu(x),
            jg.moveaxis(x, 0, -1), jg.swapaxes(x, 0, 1), jg.ravel(x, "F"), jg.diag(v, -1),
            jg.pad(x, ((1, 0), (0, 2), (3, 1)), constant_values=2.5), jg.pad(x, ((0, 4), (2, 1), (0, 0)), "reflect"),
            jg.pad(x, 2, "edge"), jg.take_along_axis(x, IDX, -1), *jg.split(x, [1, -1], axis=1),
            jg.meshgrid(v, v[:2])[1]]
    wants = [np.flip(X, (0, 2)), np.roll(X, (1, -2), (0, 2)), np.tile(V, (2, 2)), np.repeat(X, [1, 0, 2], 0),
             np.repeat(V, 2), np.diagonal(X, 1, 1, 2), np.trace(X, -1), np.tril(X, 1), np.triu(X),
             np.moveaxis(X, 0, -1), np.swapaxes(X, 0, 1), np.ravel(X, "F"), np.diag(V, -1),
             np.pad(X, ((1, 0), (0, 2), (3, 1)), constant_values=2.5), np.pad(X, ((0, 4), (2, 1), (0, 0)), "reflect"),
             np.pad(X, 2, "edge"), np.take_along_axis(X, IDX, -1), *np.split(X, [1, -1], axis=1),
             np.meshgrid(V, V[:2])[1]]
    got = jg.compile([x, v], outs, target="cpu")(X, V)
    for i, (g, w) in enumerate(zip(got, wants)):
        _values_equal(g, w, f"output {i}")


GRADS = [
    lambda x: jg.sum(jg.sin(jg.flip(x, 1)) * jg.roll(x, 2, -1) * jg.tile(x[0], (3, 1, 1))),
    lambda x: jg.sum(jg.repeat(x, [2, 0, 1], 0) ** 2) + jg.sum(jg.repeat(x, 2) ** 3),
    lambda x: jg.trace(x, 1) ** 2 + jg.sum(jg.diagonal(x, -1, 2, 0) ** 3) + jg.sum(jg.tril(x) * jg.triu(x, -1)),
    lambda x: jg.sum(jg.pad(x, ((1, 2), (0, 3), (2, 0)), "reflect") ** 3) + jg.sum(jg.pad(x, (0, 4), "wrap") ** 3)
    + jg.sum(jg.pad(x, 1, constant_values=2.0) ** 2 * jg.pad(x, 1, "symmetric") * jg.pad(x, 1, "edge")),
    lambda x: jg.sum(jg.take_along_axis(x, IDX, -1) ** 3)
    + jg.sum(jg.moveaxis(x, 0, 2) * jg.swapaxes(x, 0, 1).reshape(4, 5, 3)),
    lambda x: jg.sum(jg.split(x, [1], 0)[1] ** 2 * jg.array_split(x, 3, 1)[0][1:, :1])
    + jg.sum(jg.diag(x[0, 0], 1) ** 3),
]


@pytest.mark.parametrize("i", range(len(GRADS)))
def test_derivatives_second_order(i):
    jg.check_grads(GRADS[i], [X], order=2)


def test_vmap_of_shape_functions():
    x = jg.input("x", (2,) + X.shape)
    f = lambda t: jg.trace(jg.pad(jg.roll(t, 1, -1), 1, "reflect"), 1) + jg.sum(jg.tril(t))  # noqa: E731
    y = jg.vmap(f)(x)
    data = rng.normal(size=(2,) + X.shape)
    want = [np.trace(np.pad(np.roll(d, 1, -1), 1, "reflect"), 1) + np.sum(np.tril(d)) for d in data]
    _values_equal(jg.compile([x], y, target="numpy")(data), np.stack(want), "vmap")


def _jax_repeat(data, counts, axis, total):
    """jnp.repeat with total_repeat_length: past the counts' sum the last element repeats."""
    index = np.repeat(np.arange(data.shape[axis]), counts)
    index = np.concatenate([index, np.full(max(0, total - index.size), data.shape[axis] - 1)])[:total]
    return np.take(data, index, axis)


@pytest.mark.parametrize("target", ["numpy", "cpu"])
def test_repeat_with_counts_known_at_run_time(target):
    x, r, r0 = jg.input("x", X.shape), jg.input("r", (4,), "int64"), jg.input("r0", (), "int64")
    counts = np.array([2, 0, 3, 2])
    totals = [0, 3, 7, 11] if target == "numpy" else [7, 9]
    outs = [jg.repeat(x, r, axis=1, total_repeat_length=t) for t in totals]
    wants = [_jax_repeat(X, counts, 1, t) for t in totals]
    outs += [jg.repeat(x, r0, axis=0, total_repeat_length=5), jg.repeat(x, [1, 0, 2, 0], -2, total_repeat_length=2)]
    wants += [_jax_repeat(X, [2, 2, 2], 0, 5), _jax_repeat(X, [1, 0, 2, 0], 1, 2)]
    got = jg.compile([x, r, r0], outs, target=target)(X, counts, np.array(2))
    for k, (g, w) in enumerate(zip(got, wants)):
        _values_equal(g, w, f"repeat {k}")
    y = jg.repeat(x, jg.constant(counts), axis=1, total_repeat_length=9)
    jg.check_grads(lambda t: jg.sum(jg.repeat(t, jg.constant(counts), axis=1, total_repeat_length=9) ** 3), [X],
                   order=2)
    assert jg.repeat(x, 2, total_repeat_length=7).shape == (7,) and y.shape == (3, 9, 5)


def test_constant_values_may_be_a_tensor():
    x, c = jg.input("x", V.shape), jg.input("c", ())
    y = jg.pad(x, 2, constant_values=c)
    g = jg.grad(jg.sum(y), [c])
    out = jg.compile([x, c], [y, *g], target="numpy")(V, np.float64(3.0))
    _values_equal(out[0], np.pad(V, 2, constant_values=3.0), "pad")
    assert out[1] == 4.0


@pytest.mark.parametrize("call, error, message", [
    (lambda x: jg.flip(x, 3), AxisError, "flip: axis 3"),
    (lambda x: jg.roll(x, (1, 2, 3), (0, 1)), ValueError, "shape mismatch|broadcast"),
    (lambda x: jg.roll(x, 1.5, 0), TypeError, "roll"),
    (lambda x: jg.tile(x, -1), ValueError, "tile: negative"),
    (lambda x: jg.repeat(x, -1), ValueError, "repeat: negative"),
    (lambda x: jg.repeat(x, [1, 2], 0), ValueError, r"repeat: .*\(3,\)"),
    (lambda x: jg.repeat(x, jg.constant(2)), TypeError, "repeat: repeats is a Tensor.*total_repeat_length"),
    (lambda x: jg.repeat(x, jg.constant(2.0), total_repeat_length=3), TypeError, "repeat: repeats must be integers"),
    (lambda x: jg.repeat(x, jg.constant([1, 2]), 0, total_repeat_length=3), ValueError, r"repeat: .*\(2,\)"),
    (lambda x: jg.repeat(x, 2, total_repeat_length=-1), ValueError, "repeat: total_repeat_length must be >= 0"),
    (lambda x: jg.repeat(x[:0], 2, 0, total_repeat_length=1), ValueError, "repeat: cannot fill"),
    (lambda x: jg.split(x, 3, 1), ValueError, "split: array split does not result in an equal division"),
    (lambda x: jg.array_split(x, 0), ValueError, "array_split: number sections"),
    (lambda x: jg.diagonal(x[0, 0]), ValueError, "diagonal: array must be at least 2-d"),
    (lambda x: jg.diagonal(x, 0, 1, -2), ValueError, "diagonal: axis1 and axis2 cannot be the same"),
    (lambda x: jg.diag(x), ValueError, r"diag: input must be 1- or 2-d, got shape \(3, 4, 5\)"),
    (lambda x: jg.tril(x[0, 0, 0]), ValueError, "tril: input must be at least 1-d"),
    (lambda x: jg.moveaxis(x, (0, 1), 2), ValueError, "moveaxis: `source` and `destination`"),
    (lambda x: jg.moveaxis(x, 0, 5), AxisError, "moveaxis: axis 5"),
    (lambda x: jg.swapaxes(x, 0, -4), AxisError, "swapaxes"),
    (lambda x: jg.ravel(x, "Z"), ValueError, "ravel: order"),
    (lambda x: jg.meshgrid(x, indexing="yx"), ValueError, "meshgrid: Valid values"),
    (lambda x: jg.take_along_axis(x, IDX[0], 0), ValueError, "take_along_axis: `indices` and `arr` must have"),
    (lambda x: jg.take_along_axis(x, IDX * 1.0, 0), IndexError, "take_along_axis: `indices` must be an integer"),
    (lambda x: jg.take_along_axis(x, IDX[:, :, :5], 0), IndexError,
     "take_along_axis: index .* out of bounds for axis 0 with size 3"),
    (lambda x: jg.take_along_axis(x, IDX[:, :, :2], 1), ValueError, r"take_along_axis: shapes \(3, 4, 5\)"),
    (lambda x: jg.take_along_axis(x, IDX, None), ValueError, "take_along_axis: when axis=None"),
    (lambda x: jg.pad(x, -1), ValueError, "pad: index can't contain negative values"),
    (lambda x: jg.pad(x, ((1, 2), (3, 4))), ValueError, r"pad: could not broadcast `pad_width`"),
    (lambda x: jg.pad(x, 1.5), TypeError, "pad: `pad_width` must be of integral type"),
    (lambda x: jg.pad(x, 1, lambda *a: None), NotImplementedError, "pad: a function as `mode`"),
    (lambda x: jg.pad(x, 1, "nonsense"), ValueError, "pad: mode 'nonsense'"),
    (lambda x: jg.pad(x, 1, "reflect", reflect_type="odds"), ValueError, "pad: reflect_type must be"),
    (lambda x: jg.pad(x, 1, "edge", constant_values=1), ValueError, "pad: unsupported keyword"),
    (lambda x: jg.pad(x[:0], 1, "reflect"), ValueError, "pad: can't extend empty axis 0"),
])
def test_errors_name_the_function(call, error, message):
    with pytest.raises(error, match=message):
        call(jg.input("x", X.shape))


def test_call_time_sizes():
    x = jg.input("x", (None, 3))
    data = rng.normal(size=(4, 3))
    outs = [jg.flip(x, 0), jg.ravel(x), jg.swapaxes(x, 0, 1), jg.roll(x, 1, 1), jg.pad(x, ((0, 0), (1, 2)))]
    got = jg.compile([x], outs, target="numpy")(data)
    wants = [np.flip(data, 0), np.ravel(data), data.T, np.roll(data, 1, 1), np.pad(data, ((0, 0), (1, 2)))]
    for i, (g, w) in enumerate(zip(got, wants)):
        _values_equal(g, w, f"output {i}")
    with pytest.raises(ValueError, match="roll: axis 0 of shape \\(None, 3\\) has a call-time size"):
        jg.roll(x, 1, 0)


@pytest.mark.parametrize("target", ["numpy", "cpu"])
def test_take_along_axis_raises_for_a_tensor_index_outside_its_row(target):
    """Rows are flattened into one gather: index 4 of a row of 4 must not read the next row."""
    x, i = jg.input("x", (3, 4)), jg.input("i", (3, 1), "int64")
    f = jg.compile([x, i], [jg.take_along_axis(x, i, axis=1)], target=target)
    np.testing.assert_array_equal(f(np.arange(12.0).reshape(3, 4), np.array([[0], [-1], [2]]))[0],
                                  [[0.0], [7.0], [10.0]])
    with pytest.raises(IndexError):
        f(np.zeros((3, 4)), np.array([[0], [4], [1]]))
