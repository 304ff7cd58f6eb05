"""NumPy's other reductions and the cumulative ones: ``argmax``, ``argmin``, ``any``, ``all``,
``var``, ``std``, ``median``, ``quantile``, ``cumsum``, ``cumprod``, ``logcumsumexp``.

Each is built from primitives, so it runs on every target with the derivatives
of its parts.  ``argmax``/``argmin`` return the first extremal index, a NaN
counting as the extremum (as NumPy); they, ``any`` and ``all`` have no
derivative.  ``cumsum`` and ``cumprod`` are a ``jg.scan`` along the axis: the
sums run in NumPy's order (so the values agree to the bit), a zero factor
gets its exact derivative, and the graph holds one step whatever the length.
``median`` and ``quantile`` read the sorted array (``jg.sort``), so their derivatives go to the
elements they pick or interpolate between, shared equally between ties.
"""
from __future__ import annotations

import builtins

import numpy as np

from . import functions as F
from .arrays import moveaxis
from .graph import Tensor
from .loops import scan
from .sorting import sort
from .ops._shapes import fmt_shape, normalize_axes, normalize_axis

__all__ = ["argmax", "argmin", "any", "all", "var", "std", "median", "quantile", "cumsum", "cumprod",
           "logcumsumexp"]


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


def _cumulative(x, axis, dtype, name: str, combine) -> Tensor:
    x = F.as_tensor(x)
    if dtype is not None:
        x = F.astype(x, dtype)
    elif x.dtype.kind in "bu" or (x.dtype.kind == "i" and x.dtype.itemsize < 8):
        x = F.astype(x, np.int64)              # NumPy accumulates small integers in the default int
    flat, a = _flat_or(x, axis, name)
    if not builtins.all(isinstance(d, int) for d in flat.dims):
        raise ValueError(f"{name}: needs fixed sizes (it is a jg.scan), got shape {fmt_shape(flat.dims)}")
    moved = moveaxis(flat, a, 0)
    if moved.dims[0] == 0:
        return flat

    def step(carry, row):
        total = combine(carry, row)
        return total, total
    first = F.take(moved, 0, axis=0)
    _, rest = scan(step, first, F.take(moved, np.arange(1, moved.dims[0]), axis=0))
    out = F.concatenate([F.expand_dims(first, 0), rest], axis=0)
    return moveaxis(out, 0, a)


def cumsum(x, axis=None, dtype=None) -> Tensor:
    """Running sums along ``axis`` (of the flattened array if None), in NumPy's order."""
    return _cumulative(x, axis, dtype, "cumsum", F.add)


def cumprod(x, axis=None, dtype=None) -> Tensor:
    """Running products along ``axis``; exact derivatives where factors are zero."""
    return _cumulative(x, axis, dtype, "cumprod", F.multiply)


def logcumsumexp(x, axis=None) -> Tensor:
    """Running ``log(sum(exp(x)))`` along ``axis``, each step a ``logaddexp`` (no overflow)."""
    x = F.as_tensor(x)
    if x.dtype.kind != "f":
        x = F.astype(x, np.float64)
    return _cumulative(x, axis, None, "logcumsumexp", F.logaddexp)


def _sorted_along(x, axis, name: str) -> tuple[Tensor, int, bool]:
    """``x`` sorted along one axis (the flattened array if None), that axis, and whether the
    result keeps a flattened shape."""
    x = F.as_tensor(x)
    if x.dtype.kind != "f":
        x = F.astype(x, np.float64)
    flat, a = _flat_or(x, axis, name)
    n = flat.dims[a]
    if not isinstance(n, int):
        raise ValueError(f"{name}: needs a fixed size along the axis, got shape {fmt_shape(flat.dims)}")
    if n == 0:
        raise ValueError(f"{name}: the axis is empty (shape {fmt_shape(flat.dims)})")
    return sort(flat, axis=a), a, axis is None


def _keep(result: Tensor, x, a: int, flattened: bool, keepdims: bool, lead: tuple = ()) -> Tensor:
    """``keepdims``: the reduced axis back as size 1 (every axis, for the flattened array),
    after the ``lead`` axes a quantile list puts in front."""
    if not keepdims:
        return result
    if flattened:
        return F.reshape(result, lead + (1,) * F.as_tensor(x).ndim)
    return F.expand_dims(result, a + len(lead))


def _nan_if_any(result: Tensor, ordered: Tensor, a: int) -> Tensor:
    """NaN where the sorted row holds a NaN (sorted last), as NumPy's median and quantile."""
    last = F.take(ordered, ordered.dims[a] - 1, axis=a)
    if result.ndim > last.ndim:                    # a quantile axis in front
        last = F.broadcast_to(last, result.dims)
    return F.where(F.isnan(last), np.nan, result)


def median(x, axis=None, keepdims: bool = False) -> Tensor:
    """The median along ``axis`` (NumPy's: the mean of the two middle values of an even count;
    NaN if the row holds one)."""
    ordered, a, flattened = _sorted_along(x, axis, "median")
    n = ordered.dims[a]
    if n % 2:
        result = F.take(ordered, n // 2, axis=a)
    else:
        result = F.divide(F.add(F.take(ordered, n // 2 - 1, axis=a), F.take(ordered, n // 2, axis=a)), 2.0)
    return _keep(_nan_if_any(result, ordered, a), x, a, flattened, keepdims)


def quantile(x, q, axis=None, keepdims: bool = False) -> Tensor:
    """NumPy's quantile with its default ``method="linear"``: ``q`` (a number or a 1-d list in
    [0, 1], fixed when the graph is built) puts an axis of its own in front, as NumPy does; the
    interpolation is NumPy's formula (values agree to an ulp); NaN if the row holds one."""
    qs = np.asarray(q, dtype=np.float64)
    if qs.ndim > 1 or not np.all((qs >= 0) & (qs <= 1)):
        raise ValueError(f"quantile: q must be a number or a 1-d list in [0, 1], got {q!r}")
    ordered, a, flattened = _sorted_along(x, axis, "quantile")
    n = ordered.dims[a]
    parts = []
    for t in np.atleast_1d(qs):
        virtual = n * t + (1 + t * (1 - 1 - 1)) - 1     # numpy's virtual index (alpha = beta = 1)
        lo = int(np.clip(np.floor(virtual), 0, n - 1))
        hi = min(lo + 1, n - 1)
        frac = float(virtual - np.floor(virtual))
        below, above = F.take(ordered, lo, axis=a), F.take(ordered, hi, axis=a)
        gap = F.subtract(above, below)          # numpy's _lerp, which is exact at both ends
        parts.append(F.add(below, F.multiply(gap, frac)) if frac < 0.5
                     else F.subtract(above, F.multiply(gap, 1.0 - frac)))
    result = parts[0] if qs.ndim == 0 else F.stack(parts)
    return _keep(_nan_if_any(result, ordered, a), x, a, flattened, keepdims, tuple(result.dims[:qs.ndim]))
