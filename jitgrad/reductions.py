"""NumPy's other reductions and the cumulative ones: ``argmax``, ``argmin``, ``any``, ``all``,
``var``, ``std``, ``cumsum``, ``cumprod``.

Each is built from primitives, so it runs on every target with the derivatives
of its parts.  ``argmax``/``argmin`` return the first extremal index, a NaN
counting as the extremum (as NumPy); they, ``any`` and ``all`` have no
derivative.  ``cumsum`` and ``cumprod`` are a ``jg.scan`` along the axis: the
sums run in NumPy's order (so the values agree to the bit), a zero factor
gets its exact derivative, and the graph holds one step whatever the length.
"""
from __future__ import annotations

import builtins

import numpy as np

from . import functions as F
from .graph import Tensor
from .loops import scan
from .ops._shapes import fmt_shape, normalize_axes, normalize_axis

__all__ = ["argmax", "argmin", "any", "all", "var", "std", "cumsum", "cumprod"]


def _flat_or(x: Tensor, axis, name: str) -> tuple[Tensor, int]:
    """``x`` and one axis of it; ``axis=None`` means the flattened array's axis 0 (NumPy)."""
    if axis is None:
        return F.reshape(x, (-1,) if x.ndim != 1 else x.dims), 0
    return x, normalize_axis(axis, x.ndim, name)


def _arg_extremum(x, axis, keepdims: bool, name: str, extremum) -> Tensor:
    x = F.as_tensor(x)
    flat, a = _flat_or(x, axis, name)
    n = flat.dims[a]
    if isinstance(n, int) and n == 0:
        raise ValueError(f"{name}: attempt to get {name} of an empty sequence")
    best = extremum(flat, a, keepdims=True)
    hit = F.equal(flat, best)
    if flat.dtype.kind == "f":                 # a NaN is the extremum; max already returned it
        hit = F.where(F.not_equal(flat, flat), True, hit)
    positions = F.reshape(F.arange(n, dtype=np.int64), (n,) + (1,) * (flat.ndim - a - 1))
    first = F.min(F.where(hit, positions, np.iinfo(np.int64).max), axis=a, keepdims=keepdims)
    if keepdims and axis is None:
        return F.reshape(first, (1,) * x.ndim)
    return first


def argmax(x, axis=None, keepdims: bool = False) -> Tensor:
    """The index of the first maximum along ``axis`` (of the flattened array if None)."""
    return _arg_extremum(x, axis, keepdims, "argmax", F.max)


def argmin(x, axis=None, keepdims: bool = False) -> Tensor:
    """The index of the first minimum along ``axis`` (of the flattened array if None)."""
    return _arg_extremum(x, axis, keepdims, "argmin", F.min)


def any(x, axis=None, keepdims: bool = False) -> Tensor:  # noqa: A001  (mirrors numpy.any)
    """Whether any element along ``axis`` is non-zero (NaN counts as non-zero)."""
    x = F.as_tensor(x)
    return F.max(F.not_equal(x, False if x.dtype == np.bool_ else 0), axis=axis, keepdims=keepdims)


def all(x, axis=None, keepdims: bool = False) -> Tensor:  # noqa: A001  (mirrors numpy.all)
    """Whether every element along ``axis`` is non-zero."""
    x = F.as_tensor(x)
    return F.min(F.not_equal(x, False if x.dtype == np.bool_ else 0), axis=axis, keepdims=keepdims)


def var(x, axis=None, ddof=0, keepdims: bool = False) -> Tensor:
    """The variance ``mean(|x - mean(x)|^2) * n / (n - ddof)`` along ``axis`` (NaN where
    ``n - ddof <= 0``, as NumPy)."""
    x = F.as_tensor(x)
    if x.dtype.kind != "f":
        x = F.astype(x, np.float64)
    axes = normalize_axes(axis, x.ndim, "var")
    centred = F.subtract(x, F.mean(x, axis=axes, keepdims=True))
    total = F.sum(F.square(centred), axis=axes, keepdims=keepdims)
    count = F._count(x, axes, x.dtype)
    return F.divide(total, F.maximum(F.subtract(count, ddof), 0.0))


def std(x, axis=None, ddof=0, keepdims: bool = False) -> Tensor:
    """The square root of :func:`var`."""
    return F.sqrt(var(x, axis=axis, ddof=ddof, keepdims=keepdims))


def _front_order(ndim: int, axis: int) -> tuple[int, ...]:
    return (axis,) + tuple(k for k in range(ndim) if k != axis)


def _to_front(x: Tensor, axis: int) -> Tensor:
    return F.transpose(x, _front_order(x.ndim, axis)) if axis else x


def _cumulative(x, axis, dtype, name: str, combine) -> Tensor:
    x = F.as_tensor(x)
    if dtype is not None:
        x = F.astype(x, dtype)
    elif x.dtype.kind in "bu" or (x.dtype.kind == "i" and x.dtype.itemsize < 8):
        x = F.astype(x, np.int64)              # NumPy accumulates small integers in the default int
    flat, a = _flat_or(x, axis, name)
    if not builtins.all(isinstance(d, int) for d in flat.dims):
        raise ValueError(f"{name}: needs fixed sizes (it is a jg.scan), got shape {fmt_shape(flat.dims)}")
    moved = _to_front(flat, a)
    if moved.dims[0] == 0:
        return flat

    def step(carry, row):
        total = combine(carry, row)
        return total, total
    first = F.take(moved, 0, axis=0)
    _, rest = scan(step, first, F.take(moved, np.arange(1, moved.dims[0]), axis=0))
    out = F.concatenate([F.expand_dims(first, 0), rest], axis=0)
    return F.transpose(out, tuple(np.argsort(_front_order(out.ndim, a)).tolist())) if a else out


def cumsum(x, axis=None, dtype=None) -> Tensor:
    """Running sums along ``axis`` (of the flattened array if None), in NumPy's order."""
    return _cumulative(x, axis, dtype, "cumsum", F.add)


def cumprod(x, axis=None, dtype=None) -> Tensor:
    """Running products along ``axis``; exact derivatives where factors are zero."""
    return _cumulative(x, axis, dtype, "cumprod", F.multiply)
