"""Sorting: the ``argsort`` primitive that ``jg.sort``, ``jg.argsort`` and ``jg.top_k`` are built on.

``argsort`` gives, along ``axis``, the indices (int64) that order each row: stably (equal
elements keep their order, NumPy's ``kind="stable"``), NaNs last as NumPy puts them.  With
``descending`` the order is reversed but ties still go by the lower index first, and NaNs come
first (the mirror image: a NaN counts as the largest, as in ``jax.lax.top_k``).

It has no derivative: a sorted array is ``take_along_axis(x, argsort(x))``, a gather, and the
derivative flows through the gather to the positions the values came from.  ``tie_average``
then shares it between tied values, as ``max`` does: along ``axis`` of a sorted array ``s``,
each run of equal values is a group, and ``tie_average(s, v)`` replaces ``v`` on each group by
its mean over the group.  It is linear in ``v`` and its own transpose, so the sort's cotangent
(or tangent) is averaged over each group of ties: the sorted values pass through the marker
``sort_ties``, whose rules apply ``tie_average`` (``jitgrad.sorting``).
"""
from __future__ import annotations

import numpy as np

from ..primitive import Aval, Primitive, broadcast_unbatched, on
from ._shapes import fmt_shape


def _argsort_shape(x, *, axis, descending):
    if not 0 <= axis < len(x.dims):
        raise ValueError(f"argsort: axis {axis} is out of range for shape {fmt_shape(x.dims)}")
    if x.dtype.kind not in "biuf":
        raise TypeError(f"argsort: cannot sort values of dtype {x.dtype}")
    return Aval(x.dims, np.dtype(np.int64))


def argsort_ref(x, axis, descending):
    """The NumPy reference: a stable sort; descending as the reversed stable sort of the
    reversed rows (so ties keep the lower index first and NaNs come first)."""
    if not descending:
        return np.argsort(x, axis=axis, kind="stable").astype(np.int64)
    n = x.shape[axis]
    flipped = np.argsort(np.flip(x, axis), axis=axis, kind="stable")
    return np.ascontiguousarray(np.flip(n - 1 - flipped, axis)).astype(np.int64)


argsort_p = Primitive(
    "argsort", shape=_argsort_shape, ref=argsort_ref, attrs=("axis", "descending"),
    vjp=None, jvp=None, differentiable=False,
    batch=lambda b, batched, y, x, *, axis, descending: b.bind(argsort_p, x, axis=axis + 1,
                                                               descending=descending),
    doc="The indices (int64) that sort ``x`` stably along ``axis`` (NaNs last; with "
        "``descending``, largest first, ties by the lower index, NaNs first).",
)

def _tie_average_shape(s, v, *, axis):
    if s.dims != v.dims:
        raise ValueError(f"tie_average: sorted values {fmt_shape(s.dims)} and values {fmt_shape(v.dims)} differ")
    if not 0 <= axis < len(v.dims):
        raise ValueError(f"tie_average: axis {axis} is out of range for shape {fmt_shape(v.dims)}")
    return Aval(v.dims, v.dtype)


def tie_average_ref(s, v, axis):
    """The NumPy reference, one row at a time: a group whose values are all equal (to its
    first, ``==``) keeps them; else each becomes ``first + sum(v - first) / size``, the sum
    over the values unequal to the first, in order."""
    rows_s, out = np.moveaxis(s, axis, -1), np.moveaxis(np.array(v, copy=True), axis, -1)
    for at in np.ndindex(rows_s.shape[:-1]):
        row_s, row = rows_s[at], out[at]
        start, n = 0, len(row_s)
        while start < n:
            end = start + 1
            while end < n and row_s[end] == row_s[start]:
                end += 1
            first, spread = row[start], None
            for j in range(start + 1, end):
                if row[j] != first:
                    spread = row[j] - first if spread is None else spread + (row[j] - first)
            if spread is not None:
                row[start:end] = first + spread / (end - start)
            start = end
    return np.moveaxis(out, -1, axis)


tie_average_p = Primitive(
    "tie_average", shape=_tie_average_shape, ref=tie_average_ref, attrs=("axis",), nin=2,
    vjp=lambda b, y_bar, y, s, v, *, axis: (None, b.bind(tie_average_p, s, y_bar, axis=axis)),
    jvp=lambda b, x_dots, y, s, v, *, axis: (None if x_dots[1] is None
                                             else b.bind(tie_average_p, s, x_dots[1], axis=axis)),
    batch=lambda b, batched, y, s, v, *, axis: b.bind(
        tie_average_p, *broadcast_unbatched(b, batched, (s, v)), axis=axis + 1),
    doc="``v`` averaged over each run of equal values of the sorted ``s`` along ``axis``: how a "
        "sort's derivative is shared between tied values.",
)

sort_ties_p = Primitive(
    "sort_ties", shape=lambda s, *, axis: _tie_average_shape(s, s, axis=axis), ref=lambda s, axis: s,
    attrs=("axis",), scalar="{0}",
    vjp=lambda b, y_bar, y, s, *, axis: (b.bind(tie_average_p, s, y_bar, axis=axis),),
    jvp=lambda b, x_dots, y, s, *, axis: on(x_dots[0], lambda t: b.bind(tie_average_p, s, t, axis=axis)),
    batch=lambda b, batched, y, s, *, axis: b.bind(sort_ties_p, s, axis=axis + 1),
    marker=True,
    doc="Sorted values ``s`` as they are, whose derivative ``tie_average`` shares between tied "
        "values along ``axis``: a marker, so a sort that is not differentiated costs no pass "
        "over its values.",
)

PRIMITIVES = (argsort_p, tie_average_p, sort_ties_p)
