"""Shape helpers shared by the primitive families: unification and formatting."""
from __future__ import annotations

import numpy as np
from numpy.exceptions import AxisError

from ..primitive import Aval, Dim


def fmt_shape(dims) -> str:
    """Render a shape for error messages, ``None`` standing for call-time sizes."""
    inner = ", ".join("None" if isinstance(d, Dim) else str(d) for d in dims)
    return f"({inner},)" if len(dims) == 1 else f"({inner})"


def unify_dim(a, b, constraints: list, what: str):
    """The size two equal-by-construction axes share; records call-time checks."""
    if isinstance(a, Dim) or isinstance(b, Dim):
        if a is not b:
            constraints.append((a, b))
        return a if isinstance(b, Dim) else b
    if a != b:
        raise ValueError(what)
    return a


def same_shape(name: str, avals, out_dtype=None) -> Aval:
    """Shape rule of elementwise primitives: inputs already broadcast and cast."""
    first = avals[0]
    constraints: list = []
    dims = first.dims
    for other in avals[1:]:
        if len(other.dims) != len(dims):
            raise ValueError(f"{name}: operands have shapes {fmt_shape(dims)} and {fmt_shape(other.dims)}")
        msg = f"{name}: operands have shapes {fmt_shape(dims)} and {fmt_shape(other.dims)}"
        dims = tuple(unify_dim(a, b, constraints, msg) for a, b in zip(dims, other.dims))
    return Aval(dims, np.dtype(out_dtype or first.dtype), tuple(constraints))


def _axis_error(name: str, axis, ndim: int) -> AxisError:
    """NumPy's own AxisError (a ValueError and an IndexError), naming the op, axis and rank."""
    return AxisError(f"{name}: axis {axis} is out of bounds for an array of rank {ndim}")


def normalize_axis(axis, ndim: int, name: str) -> int:
    """One axis in ``[-ndim, ndim)`` as a non-negative int, as numpy.normalize_axis_index."""
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"{name}: axis must be an integer, got {axis!r}")
    if not -ndim <= axis < ndim:
        raise _axis_error(name, axis, ndim)
    return int(axis) % ndim


def normalize_axis_tuple(axes, ndim: int, name: str) -> tuple[int, ...]:
    """Distinct axes, non-negative, in the order given (a permutation keeps its order)."""
    out = tuple(normalize_axis(a, ndim, name) for a in axes)
    for i, a in enumerate(out):
        if a in out[:i]:
            raise ValueError(f"{name}: repeated axis {a} in {tuple(axes)} for an array of rank {ndim}")
    return out


def normalize_axes(axis, ndim: int, name: str, *, int_axis_of_0d: bool = False) -> tuple[int, ...]:
    """Axes as a sorted tuple of non-negative ints; ``None`` means all.

    ``int_axis_of_0d``: a lone int axis 0 or -1 of a 0-d array selects no axis, as NumPy's
    ufunc reductions allow (``np.sum(np.float64(1), axis=0)``; ``np.mean`` does not).
    """
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, (int, np.integer)) and not isinstance(axis, bool):
        if int_axis_of_0d and ndim == 0 and axis in (0, -1):
            return ()
        axis = (axis,)
    return tuple(sorted(normalize_axis_tuple(_as_axis_tuple(axis, name), ndim, name)))


def _as_axis_tuple(axis, name: str) -> tuple:
    try:
        return tuple(axis)
    except TypeError:
        raise TypeError(f"{name}: axis must be an integer or a tuple of integers, got {axis!r}") from None


def is_static(dims) -> bool:
    return all(not isinstance(d, Dim) for d in dims)


def numel(dims):
    """Number of elements, or None when a call-time size is involved."""
    return int(np.prod(dims, dtype=np.int64)) if is_static(dims) else None
