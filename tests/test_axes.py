"""Axes as NumPy takes them, and reductions of 0-d tensors on every target.

Every function with an axis argument takes any axis in ``[-ndim, ndim)`` and rejects
the others, and repeated ones, with NumPy's kind of error naming the axis and the
rank.  The property tests draw random ranks (0 to 4) and random axis tuples, negative
and positive, and use NumPy as the oracle for both the values and the errors, so
NumPy's quirks (``np.sum(np.float64(1), axis=0)`` is allowed, ``np.mean`` of it is not)
are mirrored too.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pytest
import scipy.special
from hypothesis import given, settings, strategies as st
from numpy.exceptions import AxisError

import jitgrad as jg
from jitgrad.testing import call_unmutated

# -- drawing arrays and axes ---------------------------------------------------


@st.composite
def arrays(draw, min_rank=0, max_rank=4):
    """A float64 array of rank min_rank..max_rank with sizes 1..3 (1s so that squeeze has axes)."""
    shape = tuple(draw(st.lists(st.integers(1, 3), min_size=min_rank, max_size=max_rank)))
    return np.random.default_rng(draw(st.integers(0, 2**16))).uniform(-2, 2, shape)


def signed(draw, axes, rank: int) -> tuple:
    """Each axis as itself or as its negative twin, as drawn."""
    return tuple(a - rank if draw(st.booleans()) else a for a in axes)


def axis_tuple(draw, rank: int, min_size=0, max_size=None, among=None) -> tuple:
    """Distinct axes of a rank-``rank`` array, in drawn order, each positive or negative."""
    among = list(range(rank)) if among is None else among
    chosen = draw(st.permutations(among))[:draw(st.integers(min_size, len(among) if max_size is None
                                                             else min(max_size, len(among))))]
    return signed(draw, chosen, rank)


def reduction_axis(draw, rank: int, int_axis_of_0d=True):
    """None, one int (0 or -1 for a 0-d array too, which NumPy's ufunc reductions allow, unlike
    np.mean) or a tuple."""
    kind = draw(st.sampled_from(["none", "int", "tuple"]))
    if kind == "none" or (kind == "int" and rank == 0 and not int_axis_of_0d):
        return None
    if kind == "int":
        return draw(st.integers(-max(rank, 1), max(rank, 1) - 1))
    return axis_tuple(draw, rank)


# -- the functions, each beside its NumPy twin ---------------------------------


def _np_logsumexp(a, axis=None, keepdims=False):
    return np.log(np.sum(np.exp(a), axis=axis, keepdims=keepdims))


def _np_softmax(a, axis=-1):
    e = np.exp(a - np.max(a, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def _np_log_softmax(a, axis=-1):
    return a - _np_logsumexp(a, axis=axis, keepdims=True)


@dataclass
class Spec:
    name: str
    ours: object            # (Tensor, **kwargs) -> Tensor
    numpy: object           # (array, **kwargs) -> array
    draw_kwargs: object     # (draw, array) -> kwargs with valid axes
    min_rank: int = 0       # NumPy's least rank for the function


def _reduction(name, ours, numpy):
    def draw_kwargs(draw, x):
        return dict(axis=reduction_axis(draw, x.ndim, name != "mean"), keepdims=draw(st.booleans()))
    return Spec(name, ours, numpy, draw_kwargs)


def _transpose_kwargs(draw, x):
    return dict(axes=None if draw(st.booleans()) and x.ndim else axis_tuple(draw, x.ndim, x.ndim))


def _expand_dims_kwargs(draw, x):
    new = draw(st.integers(1, 3))
    axes = axis_tuple(draw, x.ndim + new, new, new)
    return dict(axis=axes[0] if new == 1 and draw(st.booleans()) else axes)


def _squeeze_kwargs(draw, x):
    if x.ndim == 0:
        return dict(axis=draw(st.sampled_from([None, (), 0, -1])))
    ones = [i for i, n in enumerate(x.shape) if n == 1]
    return dict(axis=None if draw(st.booleans()) else axis_tuple(draw, x.ndim, among=ones))


def _one_axis(extra=0):
    def draw_kwargs(draw, x):
        rank = x.ndim + extra
        return dict(axis=draw(st.integers(-rank, rank - 1)) if rank else 0)
    return draw_kwargs


def _take_kwargs(draw, x):
    axis = None if x.ndim == 0 or draw(st.booleans()) else draw(st.integers(-x.ndim, x.ndim - 1))
    size = x.size if axis is None else x.shape[axis]
    shape = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    indices = np.random.default_rng(draw(st.integers(0, 99))).integers(0, size, shape)
    if x.ndim == 0 and draw(st.booleans()):
        axis = draw(st.sampled_from([0, -1]))      # NumPy takes from a 0-d array as from its 1-d view
    return dict(indices=indices, axis=axis)


def _norm_kwargs(draw, x):
    if x.ndim == 0 or draw(st.integers(0, 3)) == 0:
        return dict(axis=None, keepdims=draw(st.booleans()))
    axes = axis_tuple(draw, x.ndim, 1, 2)
    ords = [None, 1, 2, np.inf, -np.inf, 3] if len(axes) == 1 else [None, "fro", 1, 2, np.inf, "nuc"]
    axis = axes[0] if len(axes) == 1 and draw(st.booleans()) else axes
    return dict(ord=draw(st.sampled_from(ords)), axis=axis, keepdims=draw(st.booleans()))


SPECS = [
    _reduction("sum", jg.sum, np.sum),
    _reduction("prod", jg.prod, np.prod),
    _reduction("max", jg.max, np.max),
    _reduction("min", jg.min, np.min),
    _reduction("mean", jg.mean, np.mean),
    _reduction("logsumexp", jg.logsumexp, _np_logsumexp),
    Spec("transpose", lambda t, axes: t.transpose(*axes) if axes is not None else jg.transpose(t),
         lambda a, axes: np.transpose(a, axes), _transpose_kwargs),
    Spec("expand_dims", jg.expand_dims, np.expand_dims, _expand_dims_kwargs),
    Spec("squeeze", jg.squeeze, np.squeeze, _squeeze_kwargs),
    Spec("concatenate", lambda t, axis: jg.concatenate([t, t * 2.0, -t], axis=axis),
         lambda a, axis: np.concatenate([a, a * 2.0, -a], axis=axis), _one_axis(), min_rank=1),
    Spec("stack", lambda t, axis: jg.stack([t, t * 2.0], axis=axis),
         lambda a, axis: np.stack([a, a * 2.0], axis=axis), _one_axis(extra=1)),
    Spec("take", lambda t, indices, axis: jg.take(t, indices, axis=axis), np.take, _take_kwargs),
    Spec("softmax", jg.nn.softmax, _np_softmax, _one_axis()),
    Spec("log_softmax", jg.nn.log_softmax, _np_log_softmax, _one_axis()),
    Spec("norm", jg.linalg.norm, np.linalg.norm, _norm_kwargs),
]
BY_NAME = {s.name: s for s in SPECS}


def _run(spec: Spec, x: np.ndarray, kwargs: dict, target="numpy"):
    t = jg.input("x", x.shape)
    return call_unmutated(jg.compile([t], spec.ours(t, **kwargs), target=target), x)


def _numpy_or_error(spec: Spec, x, kwargs):
    try:
        return np.asarray(spec.numpy(x, **kwargs))
    except (ValueError, TypeError) as error:          # AxisError is a ValueError
        return error


def _assert_same(got, expected, what):
    assert np.shape(got) == expected.shape, f"{what}: shape {np.shape(got)}, NumPy {expected.shape}"
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12, err_msg=what)


def _assert_like_numpys_error(spec: Spec, x, kwargs, numpy_error: Exception):
    """The same kind of error as NumPy's, naming the function, the axis and the rank."""
    kind = AxisError if isinstance(numpy_error, AxisError) else type(numpy_error)
    with pytest.raises(kind) as raised:
        spec.ours(jg.input("x", x.shape), **kwargs)
    message = str(raised.value)
    assert spec.name in message, message
    out_of_bounds = re.search(r"axis (-?\d+) is out of bounds for array of dimension (\d+)", str(numpy_error))
    if out_of_bounds:
        axis, rank = out_of_bounds.groups()
        assert f"axis {axis} " in message and f"rank {rank}" in message, message
    elif "repeat" in str(numpy_error) or "uplicate" in str(numpy_error):
        assert "repeated axis" in message and "rank" in message, message


# -- valid axes: values equal NumPy's ------------------------------------------


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_valid_axes_give_numpys_values(spec, data):
    x = data.draw(arrays(min_rank=spec.min_rank), "x")
    kwargs = spec.draw_kwargs(data.draw, x)
    expected = _numpy_or_error(spec, x, kwargs)
    assert not isinstance(expected, Exception), f"the test drew axes NumPy rejects: {expected}"
    _assert_same(_run(spec, x, kwargs), expected, f"{spec.name}{kwargs}")


# -- any axes: NumPy decides what is valid, and the error must look like NumPy's --


def _perturbed_axis(draw, axis, rank: int):
    """Axes that may be out of range or repeated: one entry shifted by a drawn amount, or (in a
    tuple) one entry spelled again, as itself or as its negative or positive twin."""
    if axis is None:
        return draw(st.integers(-rank - 3, rank + 3))
    if isinstance(axis, (int, np.integer)):
        return axis + draw(st.integers(-3, 3).filter(bool)) * (rank + 1 if draw(st.booleans()) else 1)
    axes = list(axis)
    if axes and draw(st.booleans()):
        i, j = draw(st.integers(0, len(axes) - 1)), draw(st.integers(0, len(axes)))
        a = axes[i]
        again = a if draw(st.booleans()) else (a - rank if a >= 0 else a + rank)
        axes[j:j + (j != i and j < len(axes))] = [again]      # replace another entry, or append
        return tuple(axes)
    if not axes:
        return (draw(st.integers(-rank - 3, rank + 3)),)
    i = draw(st.integers(0, len(axes) - 1))
    axes[i] = _perturbed_axis(draw, axes[i], rank)
    return tuple(axes)


def _rank_of_axis(spec: Spec, x, axis) -> int:
    """The rank the axes refer to: the result's for the functions that add axes."""
    if spec.name == "expand_dims":
        return x.ndim + (1 if isinstance(axis, (int, np.integer)) else len(axis))
    return x.ndim + (1 if spec.name == "stack" else 0)


AXIS_KEY = {"transpose": "axes"}


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_invalid_axes_raise_numpys_kind_of_error(spec, data):
    x = data.draw(arrays(min_rank=spec.min_rank), "x")
    kwargs = spec.draw_kwargs(data.draw, x)
    key = AXIS_KEY.get(spec.name, "axis")
    if spec.name == "transpose" and kwargs[key] is None:
        kwargs[key] = tuple(reversed(range(x.ndim)))
    kwargs[key] = _perturbed_axis(data.draw, kwargs[key], _rank_of_axis(spec, x, kwargs[key]))
    if spec.name == "take" and kwargs["axis"] is not None:      # indices that fit any axis
        kwargs["indices"] = np.zeros_like(kwargs["indices"])
    expected = _numpy_or_error(spec, x, kwargs)
    if isinstance(expected, Exception):
        _assert_like_numpys_error(spec, x, kwargs, expected)
    else:                       # a perturbation NumPy still accepts (e.g. axis -1 of a 0-d sum)
        _assert_same(_run(spec, x, kwargs), expected, f"{spec.name}{kwargs}")


@pytest.mark.parametrize("build, message", [
    (lambda: jg.transpose(jg.input("x", (3, 4, 5, 6)), (-2, -1, 1, 0)), None),
    (lambda: jg.transpose(jg.input("x", (3, 4)), (0, -2)), r"transpose: repeated axis 0 .* rank 2"),
    (lambda: jg.transpose(jg.input("x", (3, 4)), (0, 2)), r"transpose: axis 2 .* rank 2"),
    (lambda: jg.sum(jg.input("x", (3, 4)), axis=(1, -1)), r"sum: repeated axis 1 .* rank 2"),
    (lambda: jg.mean(jg.input("x", ()), axis=0), r"mean: axis 0 .* rank 0"),
    (lambda: jg.sum(jg.input("x", ()), axis=(0,)), r"sum: axis 0 .* rank 0"),
    (lambda: jg.linalg.norm(jg.input("x", (3, 4)), axis=(0, -2)), r"norm: repeated axis 0 .* rank 2"),
    (lambda: jg.nn.softmax(jg.input("x", (3, 4)), axis=2), r"softmax: axis 2 .* rank 2"),
])
def test_the_issues_examples(build, message):
    if message is None:
        assert build().shape == (5, 6, 4, 3)
        return
    with pytest.raises(ValueError, match=message):
        build()


def test_out_of_range_axes_raise_numpys_axis_error():
    """AxisError is both a ValueError and an IndexError, as NumPy's own."""
    with pytest.raises(AxisError):
        jg.expand_dims(jg.input("x", (2,)), 3)
    with pytest.raises(TypeError, match="sum: axis"):
        jg.sum(jg.input("x", (2,)), axis=1.0)


# -- the CPU target: a few drawn graphs, each holding every function -----------


@settings(max_examples=2, deadline=None)
@given(data=st.data())
def test_cpu_agrees_with_the_reference_on_drawn_axes(data):
    """One compiled graph per example (Numba compiles are slow): every function at once."""
    x = data.draw(arrays(max_rank=3), "x")
    t = jg.input("x", x.shape)
    outputs, expected = [], []
    specs = [spec for spec in SPECS if x.ndim >= spec.min_rank]
    for spec in specs:
        kwargs = spec.draw_kwargs(data.draw, x)
        outputs.append(spec.ours(t, **kwargs))
        expected.append(np.asarray(spec.numpy(x, **kwargs)))
    got = call_unmutated(jg.compile([t], outputs, target="cpu"), x)
    for spec, g, e in zip(specs, got, expected, strict=True):
        _assert_same(g, e, spec.name)


# -- reductions of a 0-d tensor: values and derivatives on every target --------

REDUCTIONS = {"sum": jg.sum, "prod": jg.prod, "mean": jg.mean, "max": jg.max, "min": jg.min,
              "logsumexp": jg.logsumexp}


def _zero_d_axes(name):
    """Every axis NumPy accepts for a reduction of a 0-d array (np.mean takes no int)."""
    return (None, ()) if name == "mean" else (None, (), 0, -1)


def zero_d_reduction_graph():
    """y = reduce(sin(x) x) for every reduction, axis and keepdims, with its first and second
    derivatives in reverse and forward mode (the latter also along a constant tangent, which
    constant folding evaluates with the reference)."""
    x, t = jg.input("x", ()), jg.input("t", ())
    outputs = []
    for name, reduce in REDUCTIONS.items():
        for axis in _zero_d_axes(name):
            for keepdims in (False, True):
                y = reduce(jg.sin(x) * x, axis=axis, keepdims=keepdims)
                (g,) = jg.grad(y, [x])
                (gg,) = jg.grad(g, [x])
                (j,) = jg.jvp([y], [x], [t])
                (jj,) = jg.jvp([j], [x], [t])
                (jc,) = jg.jvp([y], [x], [np.array(0.7)])
                outputs += [y, g, gg, j, jj, jc]
    return [x, t], outputs


def zero_d_reduction_expected(x, t):
    """What every reduction of the one element sin(x) x gives, and its derivatives."""
    d1, d2 = np.cos(x) * x + np.sin(x), 2 * np.cos(x) - np.sin(x) * x
    one = [np.sin(x) * x, d1, d2, d1 * t, d2 * t * t, d1 * 0.7]
    count = sum(2 * len(_zero_d_axes(name)) for name in REDUCTIONS)
    return one * count


@pytest.mark.parametrize("target", ["numpy", "cpu"])
def test_reductions_of_a_0d_tensor(target):
    inputs, outputs = zero_d_reduction_graph()
    x, t = np.array(0.4), np.array(1.3)
    got = call_unmutated(jg.compile(inputs, outputs, target=target), x, t)
    for g, e in zip(got, zero_d_reduction_expected(x, t), strict=True):
        assert np.shape(g) == () and np.asarray(g).dtype == np.float64
        np.testing.assert_allclose(g, e, rtol=1e-13)


@pytest.mark.parametrize("name", REDUCTIONS)
def test_reductions_of_a_0d_tensor_match_numpy(name):
    reference = BY_NAME[name].numpy
    a = np.float64(1.5)
    for axis in (None, (), 0, -1, (0,), 1, -2):
        for keepdims in (False, True):
            expected = _numpy_or_error(BY_NAME[name], a, dict(axis=axis, keepdims=keepdims))
            x = jg.input("x", ())
            if isinstance(expected, Exception):
                with pytest.raises(AxisError, match=f"{name}: axis -?[0-9] .* rank 0"):
                    REDUCTIONS[name](x, axis=axis, keepdims=keepdims)
                continue
            got = jg.compile([x], REDUCTIONS[name](x, axis=axis, keepdims=keepdims), target="numpy")(a)
            _assert_same(got, np.asarray(reference(a, axis=axis, keepdims=keepdims)), f"{name} {axis}")


def all_0d_reductions(x):
    return (jg.sum(x) * jg.prod(x, axis=0) + jg.mean(x, axis=()) ** 3
            + jg.sin(jg.max(x, axis=-1, keepdims=True)) * jg.min(x, axis=()) + jg.logsumexp(x * x, axis=0))


@pytest.mark.parametrize("target", ["numpy", "cpu"])
def test_derivatives_of_0d_reductions_to_second_order(target):
    jg.check_grads(all_0d_reductions, [np.array(0.8)], order=2, target=target)


def test_softmax_of_a_0d_tensor_is_one():
    x = jg.input("x", ())
    got = jg.compile([x], [jg.nn.softmax(x), jg.nn.log_softmax(x)], target="numpy")(np.float64(3.0))
    assert [np.shape(v) for v in got] == [(), ()]
    np.testing.assert_allclose(got, [scipy.special.softmax(3.0), scipy.special.log_softmax(3.0)])
