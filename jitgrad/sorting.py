"""Sorting: ``sort``, ``argsort`` (NumPy's, stable) and ``top_k`` (``jax.lax.top_k``).

One primitive does the work: ``argsort`` (``jitgrad.ops.sort``), which has no derivative.
A sorted array is the input gathered at those indices along the axis (``take_along_axis``),
so the derivatives of ``sort`` and ``top_k`` flow, through that gather, to the positions each
output came from; tied values share them equally (``tie_average``), as ``max``'s tied elements
do (JAX and PyTorch send each to the one element the sort picked).

Order: stable (equal elements keep their order, NumPy's ``kind="stable"``), NaNs last as
NumPy sorts them; ``top_k`` takes the largest first, ties by the lower index, a NaN counting
as the largest (JAX's).
"""
from __future__ import annotations

import numpy as np

from . import functions as F
from .arrays import moveaxis
from .graph import Tensor, bind
from .ops._shapes import fmt_shape, normalize_axis
from .ops.sort import argsort_p, sort_ties_p

__all__ = ["sort", "argsort", "top_k"]


def _axis_of(x: Tensor, axis, name: str) -> tuple[Tensor, int]:
    """``x`` and the axis to sort along; ``axis=None`` sorts the flattened array (NumPy)."""
    if axis is None:
        return F.reshape(x, (-1,)), 0
    if x.ndim == 0:
        raise ValueError(f"{name}: cannot sort a 0-d array along axis {axis} (use axis=None)")
    return x, normalize_axis(axis, x.ndim, name)


def _argsort(x: Tensor, axis: int, descending: bool) -> Tensor:
    return bind(argsort_p, x, axis=axis, descending=bool(descending))


def _row_starts(lead: tuple, n) -> Tensor:
    """The flat position of each row's first element, shape ``lead + (1,)``, rows of ``n``."""
    if all(isinstance(d, int) for d in lead) and isinstance(n, int):
        return F.constant(np.arange(int(np.prod(lead, dtype=np.int64)), dtype=np.int64).reshape(lead + (1,)) * n)
    # call-time sizes: the row numbers are the stable argsort of equal keys, 0, 1, 2, ...
    rows = _argsort(F.reshape(F.zeros(lead, np.int64), (-1,)), 0, False)
    width = F.full((), n, np.int64) if not isinstance(n, int) else n
    return F.multiply(F.reshape(rows, lead + (1,)), width)


def _take_along_last(x: Tensor, idx: Tensor) -> Tensor:
    """``np.take_along_axis(x, idx, -1)`` for valid non-negative ``idx`` with ``x``'s leading
    shape: one gather from the flattened array (so its derivative is a scatter-add)."""
    lead, n = x.dims[:-1], x.dims[-1]
    flat = F.reshape(x, (-1,))
    if not lead:
        return F.take(flat, idx, axis=0)
    return F.take(flat, F.add(idx, _row_starts(lead, n)), axis=0)


def _sorted(x: Tensor, descending: bool) -> Tensor:
    """``x`` sorted along its last axis, the derivative shared equally between tied values."""
    values = _take_along_last(x, _argsort(x, x.ndim - 1, descending))
    if x.dtype.kind != "f":
        return values
    return bind(sort_ties_p, values, axis=x.ndim - 1)


def argsort(x, axis=-1, *, descending: bool = False) -> Tensor:
    """The int64 indices that sort ``x`` along ``axis`` (the flattened array if None): stable,
    NaNs last, as ``np.argsort(x, axis, kind="stable")``.  ``descending`` (as jnp.argsort's)
    gives the largest first, ties still by the lower index, NaNs first.  No derivative."""
    x, a = _axis_of(F.as_tensor(x), axis, "argsort")
    return _argsort(x, a, descending)


def sort(x, axis=-1, *, descending: bool = False) -> Tensor:
    """``x`` sorted along ``axis`` (the flattened array if None), as ``np.sort`` (NaNs last);
    ``descending`` reverses the order.  Its derivative goes to the positions the values came from,
    shared equally between tied values (as for ``max``)."""
    x, a = _axis_of(F.as_tensor(x), axis, "sort")
    return moveaxis(_sorted(moveaxis(x, a, -1), descending), -1, a)


def top_k(x, k: int) -> tuple[Tensor, Tensor]:
    """``(values, indices)`` of the ``k`` largest entries along the last axis, largest first,
    ties by the lower index (``jax.lax.top_k``; a NaN counts as the largest).  The indices are
    int64; the values' derivative goes to the positions they came from, shared equally between
    tied values (those left out of the k too, as ``max`` shares it)."""
    x = F.as_tensor(x)
    if x.ndim == 0:
        raise ValueError("top_k: x must have at least one axis, got a 0-d array")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
        raise ValueError(f"top_k: k must be a non-negative int, got {k!r}")
    n = x.dims[-1]
    if isinstance(n, int) and k > n:
        raise ValueError(f"top_k: k = {k} is larger than the last axis of shape {fmt_shape(x.dims)}")
    order = _argsort(x, x.ndim - 1, True)
    whole = isinstance(n, int) and k == n
    indices = order if whole else order[..., :int(k)]
    values = _sorted(x, True)
    return (values if whole else values[..., :int(k)]), indices
