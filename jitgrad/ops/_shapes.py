"""Shape helpers shared by the primitive families: unification and formatting."""
from __future__ import annotations

import numpy as np

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


def normalize_axes(axis, ndim: int, name: str) -> tuple[int, ...]:
    """Axes as a sorted tuple of non-negative ints; ``None`` means all."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    out = []
    for a in axes:
        if not isinstance(a, (int, np.integer)) or not -ndim <= a < ndim:
            raise ValueError(f"{name}: axis {a} is out of range for an array of rank {ndim}")
        out.append(int(a) % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"{name}: repeated axis in {axis}")
    return tuple(sorted(out))


def is_static(dims) -> bool:
    return all(not isinstance(d, Dim) for d in dims)


def numel(dims):
    """Number of elements, or None when a call-time size is involved."""
    return int(np.prod(dims, dtype=np.int64)) if is_static(dims) else None
