"""Sorting: the ``argsort`` primitive that ``jg.sort``, ``jg.argsort`` and ``jg.top_k`` are built on.

``argsort`` gives, along ``axis``, the indices (int64) that order each row: stably (equal
elements keep their order, NumPy's ``kind="stable"``), NaNs last as NumPy puts them.  With
``descending`` the order is reversed but ties still go by the lower index first, and NaNs come
first (the mirror image: a NaN counts as the largest, as in ``jax.lax.top_k``).

It has no derivative: a sorted array is ``take_along_axis(x, argsort(x))``, a gather, and the
derivative flows through the gather to the selected positions (``jitgrad.sorting``).
"""
from __future__ import annotations

import numpy as np

from ..primitive import Aval, Primitive
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

PRIMITIVES = (argsort_p,)
