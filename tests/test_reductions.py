"""argmax, argmin, any, all, var, std, cumsum, cumprod against NumPy (values, dtypes, NaN, ties),
and their derivatives against finite differences."""
from __future__ import annotations

import numpy as np
import pytest

import jitgrad as jg

rng = np.random.default_rng(7)
X = rng.normal(size=(3, 4, 5))
WITH_NAN = X.copy()
WITH_NAN[1, 2, 3] = np.nan
TIES = np.array([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, -1.0, -1.0]])

CALLS = [
    ("argmax", {"axis": 1}), ("argmax", {}), ("argmax", {"axis": -1, "keepdims": True}),
    ("argmax", {"keepdims": True}), ("argmin", {"axis": 0}), ("argmin", {}),
    ("var", {}), ("var", {"axis": (0, 2), "ddof": 1}), ("std", {"axis": 1, "keepdims": True}),
    ("cumsum", {}), ("cumsum", {"axis": 1}), ("cumprod", {"axis": -1}), ("cumprod", {"axis": 0}),
]


@pytest.mark.parametrize("target", ["numpy", "cpu"])
@pytest.mark.parametrize("data", [X, WITH_NAN, TIES[:, :, None]], ids=["plain", "nan", "ties"])
def test_values_and_dtypes_equal_numpy(target, data):
    x = jg.input("x", data.shape)
    outs = [getattr(jg, name)(x, **kw) for name, kw in CALLS]
    outs += [jg.any(x > 1, axis=0), jg.all(x > -3, axis=(0, 2)), jg.any(x), jg.all(jg.astype(x, "int64"))]
    with np.errstate(invalid="ignore"):
        want = [getattr(np, name)(data, **kw) for name, kw in CALLS]
        want += [np.any(data > 1, axis=0), np.all(data > -3, axis=(0, 2)), np.any(data),
                 np.all(data.astype(np.int64))]
        got = jg.compile([x], outs, target=target)(data)
    for (name, kw), g, w in zip(CALLS + [("any/all", {})] * 4, got, want):
        assert g.shape == w.shape and g.dtype == w.dtype, (name, kw, g.shape, w.shape, g.dtype, w.dtype)
        if name in ("var", "std"):          # NumPy sums pairwise, the compiled loop in order
            np.testing.assert_allclose(g, w, rtol=1e-13, err_msg=f"{name} {kw}")
        else:                               # bit for bit: the running sums in NumPy's order
            np.testing.assert_array_equal(g, w, err_msg=f"{name} {kw}")


def test_integer_and_boolean_accumulations_widen_as_numpy():
    values = np.array([[1, 2, 3], [4, 5, 6]], np.int32)
    got = jg.compile([], [jg.cumsum(values, axis=1), jg.cumprod(values), jg.cumsum(values > 2, axis=0),
                          jg.cumsum(values, dtype="float32")], target="numpy")()
    for g, w in zip(got, [np.cumsum(values, 1), np.cumprod(values), np.cumsum(values > 2, 0),
                          np.cumsum(values, dtype=np.float32)]):
        assert g.dtype == w.dtype
        np.testing.assert_array_equal(g, w)


def test_one_element_and_errors():
    got = jg.compile([], [jg.cumsum(np.array([2.5])), jg.argmax(np.array([4.0]))], target="numpy")()
    np.testing.assert_array_equal(got[0], [2.5])
    assert got[1] == 0
    with pytest.raises(ValueError, match="argmax: attempt to get argmax of an empty sequence"):
        jg.argmax(np.zeros((2, 0)), axis=1)
    with pytest.raises(np.exceptions.AxisError, match="argmin"):
        jg.argmin(np.zeros((2, 3)), axis=2)
    with pytest.raises(ValueError, match="cumsum: needs fixed sizes"):
        jg.cumsum(jg.input("x", (None, 3)), axis=1)


def test_derivatives_match_finite_differences_with_a_zero_factor():
    y = rng.normal(size=(3, 4))
    y[0, 1] = 0.0                  # cumprod's derivative through a zero factor is exact
    jg.check_grads(lambda t: jg.sum(jg.sin(jg.cumprod(t, axis=0)) + jg.cumsum(t, axis=1) * jg.std(t, axis=0, ddof=1))
                   + jg.var(t), [y], order=2)


@pytest.mark.parametrize("target", ["numpy", "cpu"])
def test_median_quantile_and_logcumsumexp_equal_numpy(target):
    data = rng.normal(size=(4, 5))
    data[1, 1] = data[1, 3]                                   # a tie
    x = jg.input("x", data.shape)
    outs = [jg.median(x), jg.median(x, 1), jg.median(x, 0, keepdims=True), jg.quantile(x, 0.3),
            jg.quantile(x, [0.1, 0.5, 0.99], axis=1), jg.quantile(x, 0.75, axis=0, keepdims=True),
            jg.quantile(x, [0.2, 1.0], keepdims=True), jg.logcumsumexp(x, 1)]
    want = [np.median(data), np.median(data, 1), np.median(data, 0, keepdims=True), np.quantile(data, 0.3),
            np.quantile(data, [0.1, 0.5, 0.99], axis=1), np.quantile(data, 0.75, axis=0, keepdims=True),
            np.quantile(data, [0.2, 1.0], keepdims=True), np.logaddexp.accumulate(data, 1)]
    for g, w in zip(jg.compile([x], outs, target=target)(data), want):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=1e-15, atol=1e-15)


def test_median_and_quantile_of_a_row_with_nan_are_nan():
    data = np.array([[1.0, np.nan, 2.0], [3.0, 1.0, 2.0]])
    got = jg.compile([], [jg.median(data, 1), jg.quantile(data, 0.5, axis=1)], target="numpy")()
    for g in got:
        np.testing.assert_array_equal(g, [np.nan, 2.0])
    with pytest.raises(ValueError, match=r"quantile: q must be a number or a 1-d list in \[0, 1\]"):
        jg.quantile(data, 1.5)


def test_median_quantile_and_logcumsumexp_derivatives():
    jg.check_grads(lambda t: jg.median(t, 1) * jg.sum(jg.quantile(t, [0.3], axis=0))
                   + jg.sum(jg.logcumsumexp(t, 0)), [rng.normal(size=(3, 4))], order=2)
