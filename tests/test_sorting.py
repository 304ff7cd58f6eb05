"""jg.sort, jg.argsort, jg.top_k and the random functions built on them (issue 17): values
against NumPy (stable order, ties, NaNs), derivatives, vmap, errors, and one CPU graph."""
from __future__ import annotations

import numpy as np
import pytest

import jitgrad as jg
from jitgrad.ops.sort import argsort_ref

rng = np.random.default_rng(17)


def run(inputs, outputs, *args, target="numpy"):
    return jg.compile(inputs, outputs, target=target)(*args)


def _top_k_ref(x, k):
    """Largest first, ties by the lower index, NaNs first (jax.lax.top_k)."""
    order = argsort_ref(x, x.ndim - 1, True)[..., :k]
    return np.take_along_axis(x, order, axis=-1), order


def _ties(shape, dtype="float64", nans=True):
    x = rng.integers(-3, 3, shape).astype(dtype)
    if nans and np.dtype(dtype).kind == "f" and x.size > 2:
        x.flat[rng.choice(x.size, 2, replace=False)] = [np.nan, np.inf]
    return x


@pytest.mark.parametrize("shape, axis", [((7,), -1), ((4, 5), 0), ((4, 5), 1), ((2, 3, 4), 1), ((2, 3, 4), None),
                                         ((3, 0), 1), ((0, 3), 0), ((1, 6), -1)])
@pytest.mark.parametrize("dtype", ["float64", "float32", "int64"])
def test_sort_and_argsort_match_numpy(shape, axis, dtype):
    X = _ties(shape, dtype)
    x = jg.input("x", shape, dtype)
    s, i = run([x], [jg.sort(x, axis=axis), jg.argsort(x, axis=axis)], X)
    np.testing.assert_array_equal(s, np.sort(X, axis=axis))
    np.testing.assert_array_equal(i, np.argsort(X, axis=axis, kind="stable"))
    assert i.dtype == np.int64 and s.dtype == X.dtype


def test_nans_go_last_and_ties_keep_their_order():
    X = np.array([2.0, np.nan, 1.0, 2.0, -np.inf, np.nan, 1.0, -0.0, 0.0])
    x = jg.input("x", X.shape)
    i, d, s = run([x], [jg.argsort(x), jg.argsort(x, descending=True), jg.sort(x, descending=True)], X)
    assert i.tolist() == [4, 7, 8, 2, 6, 0, 3, 1, 5]
    assert d.tolist() == [1, 5, 0, 3, 2, 6, 7, 8, 4]            # NaNs first, then largest, ties by index
    np.testing.assert_array_equal(s, X[d])


@pytest.mark.parametrize("shape, k", [((6,), 3), ((3, 5), 5), ((2, 3, 4), 1), ((3, 4), 0)])
def test_top_k_matches_jax_semantics(shape, k):
    X = _ties(shape)
    x = jg.input("x", shape)
    values, indices = run([x], list(jg.top_k(x, k)), X)
    want_values, want_indices = _top_k_ref(X, k)
    np.testing.assert_array_equal(indices, want_indices)
    np.testing.assert_array_equal(values, want_values)
    finite = np.nan_to_num(X, nan=0.0, posinf=9.0, neginf=-9.0)   # ties by the lower index: sort -x stably
    np.testing.assert_array_equal(run([x], jg.top_k(x, k)[1], finite),
                                  np.argsort(-finite, axis=-1, kind="stable")[..., :k])


def test_cpu_matches_the_reference_with_call_time_sizes():
    X = _ties((3, 7, 2))
    x = jg.input("x", (None, 7, None))
    v, i = jg.top_k(x, 2)
    outs = [jg.sort(x, axis=1), jg.argsort(x, axis=0), jg.argsort(x, axis=1, descending=True), v, i,
            jg.sort(jg.astype(x[:, :, 0], "float32"))]
    want = run([x], outs, X)
    got = run([x], outs, X, target="cpu")
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    np.testing.assert_array_equal(want[0], np.sort(X, axis=1))
    np.testing.assert_array_equal(want[1], np.argsort(X, axis=0, kind="stable"))


def test_derivatives_flow_to_the_selected_positions_shared_between_ties():
    """As max's: tied values share the derivative equally (also with tied values top_k left out)."""
    X = np.array([[1.0, 3.0, 3.0, -2.0], [0.5, 0.5, 0.5, 4.0]])
    x = jg.input("x", X.shape)
    values, _ = jg.top_k(x, 2)
    weights = jg.constant(np.array([10.0, 1.0]))
    (g_top,) = jg.grad(jg.sum(values * weights), [x])
    (g_sort,) = jg.grad(jg.sum(jg.sort(x) * jg.constant(np.arange(4.0))), [x])
    (t_sort,) = jg.jvp([jg.sort(x)], [x], [np.array([[0.0, 2.0, 4.0, 1.0], [3.0, 0.0, 0.0, 1.0]])])
    g_top, g_sort, t_sort = run([x], [g_top, g_sort, t_sort], X)
    np.testing.assert_allclose(g_top, [[0, 5.5, 5.5, 0], [1 / 3, 1 / 3, 1 / 3, 10]], rtol=1e-15)
    np.testing.assert_array_equal(g_sort, [[1, 2.5, 2.5, 0], [1, 1, 1, 3]])
    np.testing.assert_array_equal(t_sort, [[1, 0, 3, 3], [1, 1, 1, 1]])     # tied tangents averaged


def test_sorted_values_keep_their_bits_through_the_tie_rule():
    """-0.0 and 0.0 tie (==) but keep their signs; inf and a lone NaN stay as they are."""
    X = np.array([0.0, -0.0, np.inf, np.nan, -np.inf, 0.0, np.inf])
    x = jg.input("x", X.shape)
    for target in ("numpy", "cpu"):
        (got,) = run([x], [jg.sort(x)], X, target=target)
        want = np.sort(X, kind="stable")
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(np.signbit(got), np.signbit(want))


@pytest.mark.parametrize("fn", [lambda x: jg.sort(x, axis=0) * jg.sin(x), lambda x: jg.top_k(x * x, 2)[0],
                                lambda x: jg.sort(x, axis=None, descending=True)], ids=["sort", "top_k", "flat"])
def test_check_grads(fn):
    jg.check_grads(fn, [rng.normal(size=(3, 4))], order=2)


def test_no_derivative_through_argsort():
    x = jg.input("x", (5,))
    y = jg.sum(jg.astype(jg.argsort(x), "float64") * x)
    (g,) = jg.grad(y, [x])
    X = rng.normal(size=5)
    np.testing.assert_array_equal(run([x], g, X), np.argsort(X).astype(float))


def test_vmap_sorts_each_example():
    X = rng.normal(size=(3, 4, 5))
    xb = jg.input("xb", X.shape)
    sort0 = jg.vmap(lambda x: jg.sort(x, axis=0))(xb)
    order = jg.vmap(lambda x: jg.argsort(x, axis=-1, descending=True))(xb)
    top = jg.vmap(lambda x: jg.top_k(x, 2)[1])(xb)
    s, o, t = run([xb], [sort0, order, top], X)
    np.testing.assert_array_equal(s, np.sort(X, axis=1))
    np.testing.assert_array_equal(o, np.argsort(-X, axis=-1, kind="stable"))
    np.testing.assert_array_equal(t, np.argsort(-X, axis=-1, kind="stable")[..., :2])


def test_errors():
    x = jg.input("x", (3, 4))
    with pytest.raises(ValueError, match="0-d"):
        jg.sort(jg.constant(1.0))
    with pytest.raises(ValueError, match="0-d"):
        jg.top_k(jg.constant(1.0), 1)
    with pytest.raises(ValueError, match="larger"):
        jg.top_k(x, 5)
    with pytest.raises(ValueError, match="non-negative"):
        jg.top_k(x, -1)
    with pytest.raises(Exception, match="axis"):
        jg.argsort(x, axis=2)
    with pytest.raises(TypeError, match="dtype"):
        jg.argsort(jg.constant(np.array([1 + 1j])))


# -- random.categorical and random.permutation -------------------------------------------------

def test_categorical_draws_by_the_softmax():
    p = np.array([[0.1, 0.2, 0.7], [0.5, 0.5, 0.0]])
    with np.errstate(divide="ignore"):
        logits = np.log(p) + 3.0
    draws = run([], jg.random.categorical(jg.random.key(3), logits, shape=(20000, 2)))
    assert draws.dtype == np.int64 and draws.shape == (20000, 2)
    for row in range(2):
        freq = np.bincount(draws[:, row], minlength=3) / len(draws)
        np.testing.assert_allclose(freq, p[row], atol=0.015)
    assert not (draws[:, 1] == 2).any()                     # a logit of -inf is never drawn


def test_categorical_shapes_and_axis():
    logits = jg.constant(rng.normal(size=(4, 3, 2)))
    k = jg.random.key(0)
    assert jg.random.categorical(k, logits).shape == (4, 3)
    assert jg.random.categorical(k, logits, axis=0).shape == (3, 2)
    assert jg.random.categorical(k, logits, axis=1, shape=(5, 4, 2)).shape == (5, 4, 2)
    draws = run([], jg.random.categorical(k, logits, axis=0, shape=(100, 3, 2)))
    assert draws.min() >= 0 and draws.max() < 4
    with pytest.raises(ValueError, match="must end in"):
        jg.random.categorical(k, logits, shape=(4, 2))


def test_permutation():
    key = jg.random.key(5)
    X = np.arange(24.0).reshape(4, 6)
    x = jg.input("x", X.shape)
    outs = [jg.random.permutation(key, 10), jg.random.permutation(key, x), jg.random.permutation(key, x, axis=1),
            jg.random.permutation(key, x, axis=1, independent=True)]
    perm, rows, cols, each = run([x], outs, X)
    assert perm.dtype == np.int64 and sorted(perm) == list(range(10)) and list(perm) != list(range(10))
    assert sorted(map(tuple, rows)) == sorted(map(tuple, X))
    assert sorted(map(tuple, cols.T)) == sorted(map(tuple, X.T))
    np.testing.assert_array_equal(np.sort(each, axis=1), X)
    assert len({tuple(np.argsort(r)) for r in each}) > 1     # the rows are shuffled independently
    for got, want in zip(run([x], outs, X, target="cpu"), (perm, rows, cols, each)):
        np.testing.assert_array_equal(got, want)           # the same bits on the CPU
    with pytest.raises(ValueError):
        jg.random.permutation(key, -1)
