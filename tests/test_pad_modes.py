"""jg.pad's NumPy modes beyond constant/edge/wrap/even reflections: ``reflect_type="odd"``,
``maximum minimum mean median`` with ``stat_length``, ``linear_ramp`` with ``end_values``, and
``empty``.  Sweeps on the reference target against np.pad (ranks 1 to 3, widths from 0 to
several times the axis), one CPU graph holding every mode, derivatives, errors."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import jitgrad as jg

rng = np.random.default_rng(23)
DATA = {1: rng.normal(size=(5,)), 2: rng.normal(size=(3, 4)), 3: rng.normal(size=(2, 3, 4))}
# widths per rank: 0 on some axes, and pads several times wider than the axis
WIDTHS = {1: [0, 1, (2, 3), (0, 12), 23],
          2: [((0, 0), (1, 2)), 2, ((9, 4), (0, 13))],
          3: [1, ((1, 2), (0, 3), (5, 0)), ((7, 0), (2, 2), (0, 9))]}
STAT_LENGTHS = [None, 1, 2, (1, 3), 100, 2.5, 3.5]      # 2.5 and 3.5: NumPy rounds them (half to even)
END_VALUES = [None, 2, (-4, 7), 0.1, (1.5, -2.5)]


def _per_axis(rank, pairs):
    """One (before, after) pair per axis, cycling through ``pairs``."""
    return tuple(pairs[i % len(pairs)] for i in range(rank))


def _calls(rank):
    """(name, mode, kwargs) for one rank, every kwarg form NumPy reads."""
    calls = [(f"{m} odd", m, {"reflect_type": "odd"}) for m in ("reflect", "symmetric")]
    stats = STAT_LENGTHS + [_per_axis(rank, [(2, 1), (3, 100), (1, 1)])]
    calls += [(f"{m} {s}", m, {} if s is None else {"stat_length": s})
              for m in ("maximum", "minimum", "mean", "median") for s in stats]
    ends = END_VALUES + [_per_axis(rank, [(3, -1), (0.25, 8)])]
    calls += [(f"linear_ramp {e}", "linear_ramp", {} if e is None else {"end_values": e}) for e in ends]
    return calls


def _numpy_pad(data, width, mode, kwargs):
    with warnings.catch_warnings():         # NumPy warns for the mean/median of an empty slice
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.pad(data, width, mode, **kwargs)


def _data(rank, dtype):
    d = DATA[rank]
    if np.issubdtype(dtype, np.integer):    # small integers: ties, and means halfway between two
        return np.round(d * 3).astype(dtype)
    return d.astype(dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32", "int64"])
@pytest.mark.parametrize("rank", [1, 2, 3])
def test_modes_equal_numpy(rank, dtype):
    """Bit for bit: the graph does NumPy's arithmetic in NumPy's order and dtypes (float32
    ramps computed in float32 or float64 as NumPy's scalar rules pick; integer means rounded
    half to even, integer ramps floored).  The one exception is a float32 ``mean``: NumPy sums
    float32 pairwise along contiguous rows, the graph row by row, so it agrees to float32's
    rounding only."""
    data = _data(rank, dtype)
    x = jg.input("x", data.shape, dtype)
    cases = [(name, w, mode, kw) for w in WIDTHS[rank] for name, mode, kw in _calls(rank)]
    got = jg.compile([x], [jg.pad(x, w, mode, **kw) for _, w, mode, kw in cases], target="numpy")(data)
    for (name, w, mode, kw), g in zip(cases, got):
        want = _numpy_pad(data, w, mode, kw)
        what = f"{name} width {w} ({dtype})"
        assert g.dtype == want.dtype and g.shape == want.shape, what
        if mode == "mean" and dtype == "float32":
            np.testing.assert_allclose(g, want, rtol=2e-7, atol=0, err_msg=what)
        else:
            np.testing.assert_array_equal(g, want, err_msg=what)


def test_empty_mode_is_zeros():
    """NumPy leaves the padded values undefined: here they are zeros, the array kept as is."""
    data = DATA[2]
    x = jg.input("x", data.shape)
    got = jg.compile([x], [jg.pad(x, ((1, 2), (0, 3)), "empty"), jg.pad(x[:0], 2, "empty")], target="numpy")(data)
    want = np.zeros((6, 7))
    want[1:4, :4] = data
    np.testing.assert_array_equal(got[0], want)
    assert got[1].shape == np.pad(data[:0], 2, "empty").shape == (4, 8)
    np.testing.assert_array_equal(got[1], 0.0)


def test_empty_arrays_and_nan():
    """An empty array pads as NumPy's (no statistic is computed, so stat_length=0 passes); a
    stat_length of 0 gives NaN for mean and median; NaN propagates through maximum and median."""
    data = np.array([[1.0, np.nan, 3.0, 0.5], [2.0, 4.0, -1.0, 7.0]])
    x, e = jg.input("x", data.shape), jg.input("e", (0, 3))
    cases = [("e", ((0, 0), (2, 1)), "maximum", {"stat_length": 0}), ("e", ((0, 0), (3, 0)), "median", {}),
             ("e", ((0, 0), (1, 4)), "linear_ramp", {}), ("e", ((0, 0), (5, 5)), "reflect", {"reflect_type": "odd"}),
             ("x", ((1, 1), (2, 2)), "mean", {"stat_length": ((1, 1), (0, 2))}),
             ("x", ((1, 1), (2, 2)), "median", {"stat_length": (0, 3)}),
             ("x", ((1, 1), (2, 2)), "maximum", {}), ("x", ((2, 1), (1, 3)), "median", {}),
             ("x", 3, "minimum", {"stat_length": 2})]
    args = {"x": (x, data), "e": (e, np.zeros((0, 3)))}
    got = jg.compile([x, e], [jg.pad(args[a][0], w, m, **kw) for a, w, m, kw in cases],
                     target="numpy")(data, np.zeros((0, 3)))
    for (a, w, m, kw), g in zip(cases, got):
        want = _numpy_pad(args[a][1], w, m, kw)
        assert g.shape == want.shape, (a, w, m, kw)
        np.testing.assert_array_equal(g, want, err_msg=str((a, w, m, kw)))


def test_cpu_target_matches_numpy():
    """One compiled graph for the new modes, kept small: each graph costs a Numba compile
    (this one about 15 s without a cache)."""
    X, K = DATA[3], np.round(DATA[2] * 3).astype(np.int64)
    x, k = jg.input("x", X.shape), jg.input("k", K.shape, "int64")
    cases = [(k, K, ((7, 2), (0, 0)), "reflect", {"reflect_type": "odd"}),       # in two rounds
             (x, X, ((1, 2), (0, 0), (2, 1)), "maximum", {"stat_length": 2}),
             (k, K, ((2, 3), (0, 0)), "mean", {"stat_length": 2}),
             (x, X, ((0, 0), (0, 0), (1, 2)), "median", {"stat_length": (2, 3)}),
             (k, K, ((0, 0), (6, 2)), "linear_ramp", {"end_values": ((7, -3), (0, 4))}),
             (x, X, ((0, 0), (3, 1), (0, 0)), "linear_ramp", {"end_values": (1.5, -2.0)}),
             (x, X, 1, "empty", {})]
    got = jg.compile([x, k], [jg.pad(t, w, m, **kw) for t, _, w, m, kw in cases], target="cpu")(X, K)
    for (_, data, w, m, kw), g in zip(cases, got):
        want = _numpy_pad(data, w, m, kw)
        if m == "empty":
            want = np.pad(data, w)
        assert g.dtype == want.dtype and g.shape == want.shape, (m, w)
        np.testing.assert_array_equal(g, want, err_msg=f"{m} {w} {kw}")


def test_call_time_sizes_and_other_dtypes():
    """Axes of a call-time size may be left unpadded (median excepted: it needs fixed sizes);
    bool and small integer inputs follow NumPy's casts (an odd reflection of bools is taken in
    int64 and stored back as bool)."""
    x = jg.input("x", (None, 3))
    data = DATA[2].T.copy()
    calls = [("mean", {}), ("maximum", {"stat_length": 2}), ("linear_ramp", {"end_values": 1}),
             ("symmetric", {"reflect_type": "odd"}), ("empty", {})]
    got = jg.compile([x], [jg.pad(x, ((0, 0), (1, 2)), m, **kw) for m, kw in calls], target="numpy")(data)
    for (m, kw), g in zip(calls, got):
        want = np.pad(data, ((0, 0), (1, 2)), "constant" if m == "empty" else m, **kw)
        np.testing.assert_array_equal(g, want, err_msg=m)
    with pytest.raises(ValueError, match="pad: mode 'median' needs every size fixed"):
        jg.pad(x, ((0, 0), (1, 0)), "median")
    calls = [(((2, 7), (1, 5)), "reflect", {"reflect_type": "odd"}), (2, "mean", {}), (2, "median", {}),
             (((3, 2), (4, 1)), "linear_ramp", {"end_values": (5, -9)})]
    for data in (DATA[2] > 0, np.round(DATA[2] * 3).astype(np.uint8), np.round(DATA[2] * 3).astype(np.int8)):
        x = jg.input("x", data.shape, data.dtype)
        got = jg.compile([x], [jg.pad(x, w, m, **kw) for w, m, kw in calls], target="numpy")(data)
        for (w, m, kw), g in zip(calls, got):
            want = np.pad(data, w, m, **kw)
            assert g.dtype == want.dtype, (m, data.dtype)
            np.testing.assert_array_equal(g, want, err_msg=f"{m} {data.dtype}")


GRADS = [
    lambda x: jg.sum(jg.pad(x, ((2, 9), (5, 1)), "reflect", reflect_type="odd") ** 3)
    + jg.sum(jg.pad(x, ((4, 0), (1, 6)), "symmetric", reflect_type="odd") ** 3),
    lambda x: jg.sum(jg.pad(x, ((2, 1), (3, 2)), "mean", stat_length=((1, 2), (3, 2))) ** 3)
    + jg.sum(jg.pad(x, 2, "maximum") ** 3 * jg.pad(x, 2, "minimum", stat_length=2)),
    lambda x: jg.sum(jg.pad(x, ((3, 1), (0, 2)), "linear_ramp", end_values=(0.5, -1.0)) ** 3)
    + jg.sum(jg.pad(x, ((1, 1), (1, 2)), "median") ** 3),
]


@pytest.mark.parametrize("i", range(len(GRADS)))
def test_derivatives_second_order(i):
    jg.check_grads(GRADS[i], [DATA[2]], order=2)


def test_end_values_may_be_a_tensor():
    x, c = jg.input("x", (5,)), jg.input("c", ())
    y = jg.pad(x, (2, 3), "linear_ramp", end_values=c)
    g = jg.grad(jg.sum(y), [c])
    out = jg.compile([x, c], [y, *g], target="numpy")(DATA[1], np.float64(3.0))
    np.testing.assert_array_equal(out[0], np.pad(DATA[1], (2, 3), "linear_ramp", end_values=3.0))
    assert out[1] == pytest.approx(1.0 + 0.5 + 1.0 + 2 / 3 + 1 / 3)     # 1 - k/width per ramp value


@pytest.mark.parametrize("call, error, message", [
    (lambda x: jg.pad(x, 1, "maximum", stat_length=0), ValueError, "pad: stat_length of 0 yields no value"),
    (lambda x: jg.pad(x, ((1, 1), (0, 0)), "minimum", stat_length=((2, 2), (0, 1))), ValueError,
     "pad: stat_length of 0"),                   # as NumPy: also for an axis padded by 0
    (lambda x: jg.pad(x, 1, "mean", stat_length=-1), ValueError, "pad: index can't contain negative values"),
    (lambda x: jg.pad(x, 1, "median", stat_length=(1, 2, 3)), ValueError, "pad: could not broadcast `stat_length`"),
    (lambda x: jg.pad(x[:0], 1, "median"), ValueError, "pad: can't extend empty axis 0"),
    (lambda x: jg.pad(x[:, :0], ((0, 0), (1, 0)), "linear_ramp"), ValueError, "pad: can't extend empty axis 1"),
    (lambda x: jg.pad(x, 1, "linear_ramp", end_values=((1, 2, 3),)), ValueError,
     "pad: could not broadcast `end_values`"),
    (lambda x: jg.pad(x, 1, "linear_ramp", end_values=jg.constant([1.0, 2.0])), ValueError,
     "pad: end_values must be scalars"),
    (lambda x: jg.pad(x, 1, "linear_ramp", end_values="a"), TypeError, "pad: `end_values` must be numbers"),
    (lambda x: jg.pad(x, 1, "mean", end_values=1), ValueError, "pad: unsupported keyword arguments for mode 'mean'"),
    (lambda x: jg.pad(x, 1, "empty", constant_values=1), ValueError, "pad: unsupported keyword"),
    (lambda x: jg.pad(x, 1, "reflect", reflect_type="odder"), ValueError, "pad: reflect_type must be"),
    (lambda x: jg.pad(x, 1, lambda v, w, i, kw: None), NotImplementedError, "pad: a function as `mode`"),
])
def test_errors(call, error, message):
    with pytest.raises(error, match=message):
        call(jg.input("x", (3, 4)))
