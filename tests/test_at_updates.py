"""Advanced indexing (several integer arrays, NumPy boolean masks) and functional updates
``x.at[idx].set/add/multiply/min/max`` against NumPy: sweeps on the reference target, one
graph on the CPU target, derivatives against finite differences, repeated indices, errors."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

import jitgrad as jg

rng = np.random.default_rng(3)
X = rng.normal(size=(2, 3, 4, 5))
ENTRIES = [0, -1, slice(None), slice(1, None, -1), None, Ellipsis, [0, 1], np.array([[1], [0]]), [-1],
           np.array(1)]
KEYS = [k for n in (1, 2, 3) for k in itertools.product(ENTRIES, repeat=n)] + [
    (X[0] > 0,), (slice(None), X[0, :, :, 0] > 0), (X[..., 0] > 0,), ([True, False], ..., [0, 1]),
    (X > 0.5,), (np.zeros(3, bool),) * 0 + (slice(None), np.zeros(3, bool)), ([], 1), (np.array([], np.int64),),
]
UFUNCS = {"set": None, "add": np.add, "multiply": np.multiply, "min": np.minimum, "max": np.maximum}


def _numpy_update(data, key, values, op):
    out = data.copy()
    if op == "set":
        out[key] = values                  # NumPy: the last of repeated indices wins
    else:
        UFUNCS[op].at(out, key, values)
    return out


def test_indexing_sweep_equals_numpy():
    """Every key NumPy accepts gives NumPy's shape and values; every key it refuses raises."""
    x = jg.input("x", X.shape)
    outs, wants = [], []
    for key in KEYS:
        try:
            want = X[key]
        except IndexError:
            with pytest.raises(IndexError):
                x[key]
            continue
        y = x[key]
        assert y.shape == want.shape, (key, y.shape, want.shape)
        outs.append(y)
        wants.append(want)
    assert len(outs) > 800
    for g, w in zip(jg.compile([x], outs, target="numpy")(X), wants):
        np.testing.assert_array_equal(g, w)


def test_update_sweep_equals_sequential_numpy_updates():
    """Constant keys, repeated indices included: as NumPy's ``x[k] = v`` and ``ufunc.at``."""
    data = X[0]
    x = jg.input("x", data.shape)
    entries = [0, -1, slice(None), slice(3, None, -2), None, Ellipsis, [0, 1, 0], np.array([[1], [-1]]), [2, 2]]
    triples = list(itertools.product(entries, repeat=3))
    keys = [k for n in (1, 2) for k in itertools.product(entries, repeat=n)] + [(data > 0,), (data[0] > 0,)]
    keys += [triples[i] for i in np.random.default_rng(0).choice(len(triples), 200, replace=False)]
    outs, wants = [], []
    for key in keys:
        try:
            shape = data[key].shape
        except IndexError:
            continue
        values = rng.normal(size=shape)
        for op in UFUNCS:
            outs.append(getattr(x.at[key], op)(values))
            wants.append(_numpy_update(data, key, values, op))
    assert len(outs) > 1000
    for g, w in zip(jg.compile([x], outs, target="numpy")(data), wants):
        np.testing.assert_allclose(g, w, rtol=0, atol=1e-15)


def test_tensor_indices_and_values():
    x, i, j, v = jg.input("x", (4, 5)), jg.input("i", (3,), "int64"), jg.input("j", (3,), "int64"), jg.input("v", (3,))
    data, I, J, vals = rng.normal(size=(4, 5)), np.array([3, -4, 1]), np.array([0, 4, -1]), rng.normal(size=3)
    outs = [x[i, j], x[:, i], x[i, :, None][:, None], x[i, 2], x[1:, j[:2]], x.at[i, j].set(v), x.at[i].add(v[:, None]),
            x.at[i, j].multiply(v), x.at[:, j].min(0.0), x.at[i, 1:3].max(v[:, None]), x.at[i].get()]
    wants = [data[I, J], data[:, I], data[I, :, None][:, None], data[I, 2], data[1:, J[:2]],
             _numpy_update(data, (I, J), vals, "set"), _numpy_update(data, I, vals[:, None], "add"),
             _numpy_update(data, (I, J), vals, "multiply"), _numpy_update(data, (slice(None), J), 0.0, "min"),
             _numpy_update(data, (I, slice(1, 3)), vals[:, None], "max"), data[I]]
    got = jg.compile([x, i, j, v], outs, target="numpy")(data, I, J, vals)
    for k, (g, w) in enumerate(zip(got, wants)):
        np.testing.assert_allclose(g, w, rtol=0, atol=1e-15, err_msg=f"output {k}")
    on_cpu = [0, 5, 6, 8]           # each output compiles on the CPU target: a few
    got = jg.compile([x, i, j, v], [outs[k] for k in on_cpu], target="cpu")(data, I, J, vals)
    for k, g in zip(on_cpu, got):
        np.testing.assert_allclose(g, wants[k], rtol=0, atol=1e-15, err_msg=f"cpu output {k}")


def test_cpu_target_matches_numpy():
    data = X
    x = jg.input("x", data.shape)
    mask = data[0, 0] > 0
    keys = [(0, [1, 2], slice(None), [3, -1]), (Ellipsis, mask), (slice(None), [1, 1], 0)]
    outs, wants = [], []
    for key, ops in zip(keys, [("set",), ("max",), ("multiply",)]):
        outs.append(x[key])
        wants.append(data[key])
        values = rng.normal(size=data[key].shape)
        for op in ops:
            outs.append(getattr(x.at[key], op)(values))
            wants.append(_numpy_update(data, key, values, op))
    for g, w in zip(jg.compile([x], outs, target="cpu")(data), wants):
        np.testing.assert_allclose(g, w, rtol=0, atol=1e-15)


W = rng.normal(size=(3, 4))
GRADS = [   # (f, args): second-order checks in x and the values
    (lambda x: jg.sum(jg.sin(x[[0, 2, 0], [1, -1, 1]]) * x[:, [[3], [0]], None][..., 0]), [W]),
    (lambda x: jg.sum(x[W > 0] ** 3) + jg.sum(x[1:, W[0] > 0] ** 2), [W]),
    (lambda x, v: jg.sum(jg.sin(x.at[[0, 2, 0], 1:3].set(v * x[0, :2]))), [W, rng.normal(size=(3, 2))]),
    (lambda x, v: jg.sum(x.at[:, [1, 1]].add(v) ** 3), [W, rng.normal(size=(3, 2))]),
    (lambda x, v: jg.sum(x.at[[0, 1], [2, 3]].multiply(v) ** 2), [W, rng.normal(size=(2,))]),
    (lambda x, v: jg.sum(x.at[[0, 1, 0], 2].min(v) ** 3 + x.at[2, [0, 1, 0]].max(v) ** 3),
     [W, np.array([0.3, -0.7, 1.9])]),
]


@pytest.mark.parametrize("i", range(len(GRADS)))
def test_derivatives_second_order(i):
    f, args = GRADS[i]
    jg.check_grads(f, args, order=2)


def test_repeated_indices_semantics():
    x = jg.input("x", (3,))
    data = np.array([1.0, 2.0, 3.0])
    idx = [0, 2, 0]
    outs = [x.at[idx].set(np.array([5.0, 6.0, 7.0])), x.at[idx].add(1.0), x.at[idx].multiply(np.array([2.0, 3.0, 4.0])),
            x.at[idx].min(np.array([0.5, 9.0, -1.0])), x.at[idx].max(np.array([0.5, 9.0, 4.0]))]
    got = jg.compile([x], outs, target="numpy")(data)
    wants = [[7.0, 2.0, 6.0], [3.0, 2.0, 4.0], [8.0, 2.0, 9.0], [-1.0, 2.0, 3.0], [4.0, 2.0, 9.0]]
    for g, w in zip(got, wants):
        np.testing.assert_array_equal(g, w)
    # a derivative through set reaches only the value that wins
    v = jg.input("v", (3,))
    (gv,) = jg.grad(jg.sum(x.at[idx].set(v) * np.array([1.0, 10.0, 100.0])), [v])
    np.testing.assert_array_equal(jg.compile([x, v], gv, target="numpy")(data, data), [0.0, 100.0, 1.0])


TENSOR_KEYS = [   # (key with index Tensors named "i", "j", the NumPy index values)
    (lambda i, j: i, {"i": np.array([0, 2, 0, -3, 1, 2, 0])}),
    (lambda i, j: (slice(None), i), {"i": np.array([[1, -4], [1, 3]])}),
    (lambda i, j: (i, j), {"i": np.array([0, 2, 0, -3, 2]), "j": np.array([1, 1, 1, 1, -4])}),
    (lambda i, j: (i, 1, j), {"i": np.array([2, 2, 2]), "j": np.array([3, 3, 0])}),
    (lambda i, j: (0, i), {"i": np.array(2)}),
]


@pytest.mark.parametrize("k", range(len(TENSOR_KEYS)))
@pytest.mark.parametrize("target", ["numpy", "cpu"])
def test_repeated_tensor_indices_apply_as_sequential_updates(k, target):
    if target == "cpu" and k not in (0, 2):
        pytest.skip("two keys compile on the CPU target: enough for the kernels, cheap for CI")
    key_of, index = TENSOR_KEYS[k]
    data = rng.normal(size=(3, 4, 5))
    names = sorted(index)
    idx = {n: jg.input(n, index[n].shape, "int64") for n in names}
    key = key_of(idx.get("i"), idx.get("j"))
    np_key = key_of(index.get("i"), index.get("j"))
    x = jg.input("x", data.shape)
    values = rng.normal(size=data[np_key].shape)
    values[..., 0] = values[..., -1]              # tied values where repeats meet too
    outs = [getattr(x.at[key], op)(values) for op in UFUNCS]
    got = jg.compile([x] + [idx[n] for n in names], outs, target=target)(data, *[index[n] for n in names])
    for g, op in zip(got, UFUNCS):
        np.testing.assert_allclose(g, _numpy_update(data, np_key, values, op), rtol=0, atol=1e-15, err_msg=op)


@pytest.mark.parametrize("op", ["set", "multiply", "min", "max"])
def test_repeated_tensor_indices_derivatives(op):
    index = jg.constant(np.array([0, 2, 0, -1, 1]))       # a constant node: a Tensor index all the same
    f = lambda x, v: jg.sum(jg.sin(getattr(x.at[index], op)(v * x[0])))  # noqa: E731
    jg.check_grads(f, [rng.normal(size=(3, 2)) + 1.5, rng.normal(size=(5, 2))], order=2)


def test_repeated_tensor_indices_of_call_time_length():
    x, i = jg.input("x", (4,)), jg.input("i", (None,), "int64")
    f = jg.compile([x, i], [x.at[i].set(jg.arange(3.0)[:1] + 5.0), x.at[i].add(1.0)], target="numpy")
    got = f(np.zeros(4), np.array([1, -3, 2]))
    np.testing.assert_array_equal(got[0], [0.0, 5.0, 5.0, 0.0])
    np.testing.assert_array_equal(got[1], [0.0, 2.0, 1.0, 0.0])
    with pytest.raises(ValueError, match=r"at\[\.\.\.\]\.max: an index Tensor of call-time shape \(None,\)"):
        x.at[i].max(1.0)


def test_dtype_and_vmap():
    x = jg.input("x", (4,), "int32")
    assert x.at[1].set(2.7).dtype == np.int32 and x[np.array([True, False, True, True])].dtype == np.int32
    np.testing.assert_array_equal(jg.compile([x], x.at[[1, 3]].add(2.7), target="numpy")(np.arange(4, dtype=np.int32)),
                                  [0, 3, 2, 5])
    xs = jg.input("xs", (2, 3, 4))
    y = jg.vmap(lambda t: t.at[[0, 2], [1, 1]].set(t[1, :2]) + t[[2, 0], [[3], [0]]].sum())(xs)
    data = rng.normal(size=(2, 3, 4))
    want = []
    for d in data:
        e = d.copy()
        e[[0, 2], [1, 1]] = d[1, :2]
        want.append(e + d[[2, 0], [[3], [0]]].sum())
    np.testing.assert_allclose(jg.compile([xs], y, target="numpy")(data), np.stack(want), rtol=1e-14)


@pytest.mark.parametrize("call, error, message", [
    (lambda x: x[jg.input("m", (3, 4), "bool")], IndexError, "boolean Tensor cannot be used as a mask"),
    (lambda x: x[np.ones(4, bool)], IndexError, "boolean index did not match indexed array along axis 0"),
    (lambda x: x[:, np.ones((4, 4), bool)], IndexError, "along axis 2.*has size 5 but the boolean index has size 4"),
    (lambda x: x[[0, 1], [0, 1, 2]], IndexError, r"shape mismatch: .*\(2,\) \(3,\)"),
    (lambda x: x[[0, 3]], IndexError, "index 3 is out of bounds for axis 0 with size 3"),
    (lambda x: x[:, :, [-6]], IndexError, "index -6 is out of bounds for axis 2 with size 5"),
    (lambda x: x[[0.5]], IndexError, "integer type"),
    (lambda x: x[True], IndexError, "boolean scalars"),
    (lambda x: x[0, 0, 0, 0], IndexError, "too many indices"),
    (lambda x: x[..., 0, ...], IndexError, "single ellipsis"),
    (lambda x: x.at[[0, 1]].set(np.ones(3)), ValueError, r"at\[...\].set: values of shape \(3,\) .* \(2, 4, 5\)"),
    (lambda x: x.at[0].add(np.ones((2, 4, 5))), ValueError, r"at\[...\].add: values of shape \(2, 4, 5\)"),
])
def test_errors(call, error, message):
    with pytest.raises(error, match=message):
        call(jg.input("x", (3, 4, 5)))


@pytest.mark.parametrize("target", ["numpy", "cpu"])
def test_an_index_out_of_its_axis_raises_even_when_the_merged_index_fits(target):
    """x[i, j] merges the two axes: j = 5 on an axis of 4 must not read row i + 1."""
    x, i, j = jg.input("x", (3, 4)), jg.input("i", (2,), "int64"), jg.input("j", (2,), "int64")
    f = jg.compile([x, i, j], [x[i, j], x.at[i, j].add(1.0)], target=target)
    with pytest.raises(IndexError):
        f(np.zeros((3, 4)), np.array([0, 1]), np.array([1, 5]))


def test_repeated_tensor_indices_under_vmap():
    data, index, values = rng.normal(size=(3, 4)), np.array([[0, 2, 0], [1, 1, -1], [3, 3, 3]]), rng.normal(size=(3, 3))
    x, i, v = jg.input("x", (3, 4)), jg.input("i", (3, 3), "int64"), jg.input("v", (3, 3))
    outs = [jg.vmap(lambda a, b, c, op=op: getattr(a.at[b], op)(c))(x, i, v) for op in UFUNCS]
    got = jg.compile([x, i, v], outs, target="numpy")(data, index, values)
    for g, op in zip(got, UFUNCS):
        want = [_numpy_update(a, b, c, op) for a, b, c in zip(data, index, values)]
        np.testing.assert_allclose(g, np.stack(want), rtol=0, atol=1e-15, err_msg=op)   # add: summation order
