"""NumPy's shape functions, composed from jitgrad's shape primitives.

``pad flip roll tile repeat split array_split diag diagonal trace tril triu moveaxis swapaxes
ravel meshgrid take_along_axis``: NumPy's signatures, negative axes and dtype rules.  Each is
built from ``slice``, ``reshape``, ``transpose``, ``broadcast_to``, ``concatenate``,
``gather`` and ``select`` nodes (constant index arrays and masks computed here, when the graph
is built), so derivatives of any order, ``vmap`` and every target come with them.

Sizes that these functions split or count along must be fixed when the graph is built (an
axis of a call-time size raises a ``ValueError`` naming the function), except where a plain
slice or reshape does the work (``flip``, ``moveaxis``, ``swapaxes``, ``ravel``).
"""
from __future__ import annotations

import builtins
import operator

import numpy as np

from . import functions as F
from .graph import Tensor, bind, constant
from .indexing import wrapped_index
from .loops import scan
from .ops import shape as sh
from .ops._shapes import fmt_shape, normalize_axis, normalize_axis_tuple
from .primitive import Dim

__all__ = ["pad", "flip", "roll", "tile", "repeat", "split", "array_split", "diag", "diagonal",
           "trace", "tril", "triu", "moveaxis", "swapaxes", "ravel", "meshgrid", "take_along_axis"]

_WHOLE = (None, None, None)


def _size(x: Tensor, axis: int, name: str) -> int:
    d = x.dims[axis]
    if isinstance(d, Dim):
        raise ValueError(f"{name}: axis {axis} of shape {fmt_shape(x.dims)} has a call-time size; "
                         f"{name} needs it fixed when the graph is built")
    return d


def _static_shape(x: Tensor, name: str) -> tuple:
    return tuple(_size(x, a, name) for a in range(x.ndim))


def _slice(x: Tensor, axis: int, start, stop, step=1) -> Tensor:
    index = [_WHOLE] * x.ndim
    index[axis] = (start, stop, step)
    return bind(sh.slice_p, x, index=tuple(index))


def _int(v, name: str, what: str) -> int:
    if isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{name}: {what} must be an integer, got {v!r}")
    try:
        return operator.index(v)
    except TypeError:
        raise TypeError(f"{name}: {what} must be an integer, got {v!r}") from None


def _axes_arg(axis, ndim: int, name: str) -> tuple:
    if isinstance(axis, (tuple, list)):
        return normalize_axis_tuple(axis, ndim, name)
    return (normalize_axis(axis, ndim, name),)


# -- reordering ----------------------------------------------------------------------------------

def flip(m, axis=None) -> Tensor:
    """numpy.flip: reverse the order along ``axis`` (an int, a tuple, or ``None`` for all)."""
    m = F.as_tensor(m)
    axes = tuple(range(m.ndim)) if axis is None else _axes_arg(axis, m.ndim, "flip")
    if not axes:
        return m
    index = tuple((None, None, -1) if a in axes else _WHOLE for a in range(m.ndim))
    return bind(sh.slice_p, m, index=index)


def roll(a, shift, axis=None) -> Tensor:
    """numpy.roll: ``shift`` and ``axis`` (ints or tuples) broadcast together; ``axis=None``
    rolls the flattened array and restores the shape."""
    a = F.as_tensor(a)
    if axis is None:
        return F.reshape(roll(ravel(a), shift, 0), a.dims)
    shifts, axes = np.broadcast_arrays(np.asarray(shift), np.asarray(axis))
    if not np.issubdtype(shifts.dtype, np.integer) or not np.issubdtype(axes.dtype, np.integer):
        raise TypeError(f"roll: shift and axis must be integers, got {shift!r} and {axis!r}")
    if shifts.ndim > 1:
        raise ValueError("roll: 'shift' and 'axis' should be scalars or 1D sequences")
    total: dict[int, int] = {}
    for s, ax in zip(shifts.ravel().tolist(), axes.ravel().tolist()):
        ax = normalize_axis(ax, a.ndim, "roll")
        total[ax] = total.get(ax, 0) + s
    for ax, s in total.items():
        n = _size(a, ax, "roll")
        s = s % n if n else 0
        if s:
            a = F.concatenate([_slice(a, ax, n - s, n), _slice(a, ax, 0, n - s)], ax)
    return a


def moveaxis(a, source, destination) -> Tensor:
    """numpy.moveaxis: the axes ``source`` go to the positions ``destination``."""
    a = F.as_tensor(a)
    src = normalize_axis_tuple(np.atleast_1d(source).tolist() if not isinstance(source, int) else (source,),
                               a.ndim, "moveaxis")
    dst = normalize_axis_tuple(np.atleast_1d(destination).tolist() if not isinstance(destination, int)
                               else (destination,), a.ndim, "moveaxis")
    if len(src) != len(dst):
        raise ValueError("moveaxis: `source` and `destination` arguments must have the same number "
                         f"of elements, got {len(src)} and {len(dst)}")
    order = [n for n in range(a.ndim) if n not in src]
    for d, s in sorted(zip(dst, src)):
        order.insert(d, s)
    return F.transpose(a, tuple(order))


def swapaxes(a, axis1, axis2) -> Tensor:
    """numpy.swapaxes."""
    a = F.as_tensor(a)
    i, j = normalize_axis(axis1, a.ndim, "swapaxes"), normalize_axis(axis2, a.ndim, "swapaxes")
    perm = list(range(a.ndim))
    perm[i], perm[j] = j, i
    return F.transpose(a, tuple(perm))


def ravel(a, order="C") -> Tensor:
    """numpy.ravel: the flattened array, in C order (``"F"`` reads it column-major; ``"A"`` and
    ``"K"`` read it as ``"C"``, the only layout a Tensor has)."""
    a = F.as_tensor(a)
    if order not in ("C", "F", "A", "K"):
        raise ValueError(f"ravel: order must be one of 'C', 'F', 'A', or 'K' (got {order!r})")
    if order == "F":
        a = F.transpose(a)
    return F.reshape(a, (-1,))


# -- repetition ----------------------------------------------------------------------------------

def tile(A, reps) -> Tensor:
    """numpy.tile: ``A`` repeated ``reps`` times per axis (one broadcast and one reshape)."""
    A = F.as_tensor(A)
    reps = (reps,) if np.ndim(reps) == 0 else tuple(np.asarray(reps).ravel().tolist())
    reps = tuple(_int(r, "tile", "reps") for r in reps)
    if any(r < 0 for r in reps):
        raise ValueError(f"tile: negative dimensions are not allowed, got reps {reps}")
    ndim = builtins.max(len(reps), A.ndim)
    reps = (1,) * (ndim - len(reps)) + reps
    dims = (1,) * (ndim - A.ndim) + tuple(A.dims)
    if all(r == 1 for r in reps):
        return F.reshape(A, dims)
    if any(isinstance(d, Dim) for d in dims):
        raise ValueError(f"tile: shape {fmt_shape(A.dims)} has a call-time size; tile needs fixed sizes")
    sizes = dims
    inter = tuple(v for s in sizes for v in (1, s))
    wide = tuple(v for r, s in zip(reps, sizes) for v in (r, s))
    y = F.broadcast_to(F.reshape(A, inter), wide)
    return F.reshape(y, tuple(r * s for r, s in zip(reps, sizes)))


def repeat(a, repeats, axis=None, *, total_repeat_length=None) -> Tensor:
    """numpy.repeat: each element ``repeats`` times along ``axis`` (``None``: flattened).

    One count: a broadcast and a reshape.  A count per element: a gather with a constant
    index.  ``repeats`` may be a Tensor (counts known at run time) when
    ``total_repeat_length`` fixes the result's length, as ``jnp.repeat``: past the counts'
    sum the last element repeats, and counts beyond the length are cut off.  No derivative
    in ``repeats``.
    """
    a = F.as_tensor(a)
    if total_repeat_length is not None:
        total_repeat_length = _int(total_repeat_length, "repeat", "total_repeat_length")
        if total_repeat_length < 0:
            raise ValueError(f"repeat: total_repeat_length must be >= 0, got {total_repeat_length}")
    if isinstance(repeats, Tensor):
        if total_repeat_length is None:
            raise TypeError("repeat: repeats is a Tensor, so the result's length is known only at run "
                            "time; give total_repeat_length (as jnp.repeat)")
        if not np.issubdtype(repeats.dtype, np.integer) or repeats.ndim > 1:
            raise TypeError(f"repeat: repeats must be integers of at most one axis, got a Tensor of "
                            f"{repeats.dtype} and shape {fmt_shape(repeats.dims)}")
    else:
        repeats = np.asarray(repeats)
        if repeats.dtype == np.bool_ or not (np.issubdtype(repeats.dtype, np.integer) or repeats.size == 0):
            raise TypeError(f"repeat: repeats must be integers, got {repeats!r}")
        repeats = repeats.astype(np.int64)
        if (repeats < 0).any():
            raise ValueError("repeat: negative dimensions are not allowed")
        if repeats.ndim > 1:
            raise ValueError(f"repeat: repeats must be an integer or a 1-D array, got shape {repeats.shape}")
    if axis is None:
        a, axis = ravel(a), 0
    else:
        axis = normalize_axis(axis, a.ndim, "repeat")
    n = _size(a, axis, "repeat")
    count_dims = tuple(repeats.dims) if isinstance(repeats, Tensor) else repeats.shape
    if count_dims not in ((), (1,), (n,)):
        raise ValueError(f"repeat: operands could not be broadcast together with shape ({n},) (axis {axis} of "
                         f"{fmt_shape(a.dims)}) and repeats of shape {fmt_shape(count_dims)}")
    if n == 0 and total_repeat_length:
        raise ValueError(f"repeat: cannot fill total_repeat_length={total_repeat_length} from an empty axis "
                         f"(axis {axis} of {fmt_shape(a.dims)})")
    if isinstance(repeats, Tensor):
        return bind(sh.gather_p, a, _repeat_index(repeats, n, total_repeat_length), axis=axis)
    if repeats.size == 1 and total_repeat_length is None:
        r = int(repeats.reshape(()))
        dims = tuple(a.dims)
        y = F.broadcast_to(F.reshape(a, dims[:axis + 1] + (1,) + dims[axis + 1:]),
                           dims[:axis + 1] + (r,) + dims[axis + 1:])
        return F.reshape(y, dims[:axis] + (n * r,) + dims[axis + 1:])
    index = np.repeat(np.arange(n, dtype=np.int64), np.broadcast_to(repeats, (n,)))
    if total_repeat_length is not None:
        index = np.concatenate([index, np.full(max(0, total_repeat_length - index.size), n - 1)])
        index = index[:total_repeat_length]
    return bind(sh.gather_p, a, constant(index), axis=axis)


def _repeat_index(counts: Tensor, n, total: int) -> Tensor:
    """Which element each of the ``total`` result positions reads, for counts known at run time:
    a mark at each element's first position (several at once where counts are zero), summed
    up.  Negative counts count as zero."""
    if total == 0:
        return constant(np.zeros(0, np.int64))
    counts = F.maximum(F.broadcast_to(F.reshape(F.astype(counts, np.int64), (-1,)) if counts.ndim else
                                      F.astype(counts, np.int64), (n,)), 0)
    starts = F.subtract(_running_sum(counts), counts)
    marks = F.zeros((total + 1,), np.int64).at[F.minimum(starts, total)].add(1)[:total]
    return F.subtract(_running_sum(marks), 1)


def _running_sum(v: Tensor) -> Tensor:
    """The running sums of a 1-D Tensor of fixed length (a ``jg.scan``, like ``jg.cumsum``)."""
    _, sums = scan(lambda total, x: (F.add(total, x), F.add(total, x)), F.zeros((), v.dtype), v)
    return sums


# -- splitting -----------------------------------------------------------------------------------

def _split_at(ary: Tensor, bounds, axis: int) -> list:
    n = _size(ary, axis, "split")
    out = []
    for start, stop in zip(bounds[:-1], bounds[1:]):
        lo, hi, _ = slice(start, stop).indices(n)
        hi = builtins.max(lo, hi)
        out.append(ary if (lo, hi) == (0, n) else _slice(ary, axis, lo, hi))
    return out


def array_split(ary, indices_or_sections, axis=0) -> list:
    """numpy.array_split: ``N`` sections (the first ``n % N`` one longer) or the split points
    (as Python slices read them: negative, past-the-end and decreasing points allowed)."""
    ary = F.as_tensor(ary)
    axis = normalize_axis(axis, ary.ndim, "array_split")
    n = _size(ary, axis, "array_split")
    if np.ndim(indices_or_sections) == 0:
        sections = _int(indices_or_sections, "array_split", "the number of sections")
        if sections <= 0:
            raise ValueError("array_split: number sections must be larger than 0.")
        each, extras = divmod(n, sections)
        sizes = [0] + extras * [each + 1] + (sections - extras) * [each]
        bounds = np.cumsum(sizes).tolist()
    else:
        points = [_int(p, "array_split", "a split point") for p in np.asarray(indices_or_sections).ravel()]
        bounds = [0] + points + [n]
    return _split_at(ary, bounds, axis)


def split(ary, indices_or_sections, axis=0) -> list:
    """numpy.split: like array_split, but ``N`` sections must divide the axis equally."""
    ary = F.as_tensor(ary)
    if np.ndim(indices_or_sections) == 0:
        sections = _int(indices_or_sections, "split", "the number of sections")
        n = _size(ary, normalize_axis(axis, ary.ndim, "split"), "split")
        if sections <= 0 or n % sections:
            raise ValueError(f"split: array split does not result in an equal division "
                             f"({n} into {sections} sections)")
    return array_split(ary, indices_or_sections, axis)


# -- diagonals and triangles ---------------------------------------------------------------------

def diagonal(a, offset=0, axis1=0, axis2=1) -> Tensor:
    """numpy.diagonal: the ``offset`` diagonal of the (axis1, axis2) planes, on a new last axis
    (a slice to the diagonal's square, a reshape, and a strided slice)."""
    a = F.as_tensor(a)
    if a.ndim < 2:
        raise ValueError(f"diagonal: array must be at least 2-d, got shape {fmt_shape(a.dims)}")
    offset = _int(offset, "diagonal", "offset")
    i, j = normalize_axis(axis1, a.ndim, "diagonal"), normalize_axis(axis2, a.ndim, "diagonal")
    if i == j:
        raise ValueError("diagonal: axis1 and axis2 cannot be the same")
    n1, n2 = _size(a, i, "diagonal"), _size(a, j, "diagonal")
    a = F.transpose(a, tuple(k for k in range(a.ndim) if k not in (i, j)) + (i, j))
    r0, c0 = (0, offset) if offset >= 0 else (-offset, 0)
    size = builtins.max(0, builtins.min(n1 - r0, n2 - c0))
    index = [_WHOLE] * (a.ndim - 2) + [(r0, r0 + size, 1), (c0, c0 + size, 1)]
    square = bind(sh.slice_p, a, index=tuple(index)) if (r0, c0, size, size) != (0, 0, n1, n2) else a
    flat = F.reshape(square, tuple(a.dims[:-2]) + (size * size,))
    return _slice(flat, flat.ndim - 1, 0, size * size, size + 1) if size > 1 else \
        F.reshape(flat, tuple(a.dims[:-2]) + (size,))


def trace(a, offset=0, axis1=0, axis2=1, dtype=None) -> Tensor:
    """numpy.trace: the sum along a diagonal; booleans and narrower integers sum as 64-bit
    integers, as NumPy's sum does."""
    d = diagonal(a, offset, axis1, axis2)
    if dtype is not None:
        d = F.astype(d, dtype)
    elif d.dtype == np.bool_ or (d.dtype.kind == "i" and d.dtype.itemsize < 8):
        d = F.astype(d, np.int64)
    elif d.dtype.kind == "u" and d.dtype.itemsize < 8:
        d = F.astype(d, np.uint64)
    return F.sum(d, axis=-1)


def diag(v, k=0) -> Tensor:
    """numpy.diag: of a 1-D array, the 2-D array with ``v`` on its ``k``-th diagonal (a select
    under a constant mask); of a 2-D array, its ``k``-th diagonal."""
    v = F.as_tensor(v)
    k = _int(k, "diag", "k")
    if v.ndim == 2:
        return diagonal(v, k)
    if v.ndim != 1:
        raise ValueError(f"diag: input must be 1- or 2-d, got shape {fmt_shape(v.dims)}")
    m = _size(v, 0, "diag")
    n = m + builtins.abs(k)
    if builtins.abs(k):
        v = F.concatenate([v, F.zeros((builtins.abs(k),), v.dtype)])
    line = F.reshape(v, (n, 1) if k >= 0 else (1, n))   # by row above the diagonal, by column below
    return F.where(constant(np.eye(n, k=k, dtype=bool)), F.broadcast_to(line, (n, n)),
                   constant(np.zeros((), v.dtype)))


def _triangle(name: str, m, k, lower: bool) -> Tensor:
    m = F.as_tensor(m)
    k = _int(k, name, "k")
    if m.ndim == 0:
        raise ValueError(f"{name}: input must be at least 1-d, got a 0-d array")
    rows, cols = (_size(m, -1, name),) * 2 if m.ndim == 1 else (_size(m, m.ndim - 2, name),
                                                                   _size(m, m.ndim - 1, name))
    mask = np.tri(rows, cols, k if lower else k - 1, dtype=bool)
    return F.where(constant(mask if lower else ~mask), m, constant(np.zeros((), m.dtype)))


def tril(m, k=0) -> Tensor:
    """numpy.tril: zeros above the ``k``-th diagonal of the last two axes (a 1-D ``m`` is
    broadcast to a square, as NumPy does)."""
    return _triangle("tril", m, k, lower=True)


def triu(m, k=0) -> Tensor:
    """numpy.triu: zeros below the ``k``-th diagonal of the last two axes."""
    return _triangle("triu", m, k, lower=False)


# -- grids and gathers ---------------------------------------------------------------------------

def meshgrid(*xi, copy=True, sparse=False, indexing="xy") -> tuple:
    """numpy.meshgrid: a tuple of coordinate arrays (``copy`` is accepted and ignored: a
    Tensor is never a view)."""
    if indexing not in ("xy", "ij"):
        raise ValueError("meshgrid: Valid values for `indexing` are 'xy' and 'ij'.")
    xs = [ravel(x) for x in xi]
    ndim = len(xs)
    out = []
    for i, x in enumerate(xs):
        shape = [1] * ndim
        shape[i] = x.dims[0]
        if indexing == "xy" and ndim > 1 and i < 2:
            shape[0], shape[1] = shape[1], shape[0]
        out.append(F.reshape(x, tuple(shape)))
    if not sparse and ndim:
        full = F.broadcast_dims("meshgrid", [o.dims for o in out])
        out = [F.broadcast_to(o, full) for o in out]
    return tuple(out)


def take_along_axis(arr, indices, axis=-1) -> Tensor:
    """numpy.take_along_axis: one gather on the flattened array with offsets per row.

    ``arr`` and ``indices`` broadcast against each other off ``axis``.  Negative indices count
    from the end; constant indices are bounds-checked when the graph is built, Tensor indices
    when it runs.
    """
    arr = F.as_tensor(arr)
    idx = indices if isinstance(indices, Tensor) else np.asarray(indices)
    if not np.issubdtype(idx.dtype, np.integer):
        raise IndexError(f"take_along_axis: `indices` must be an integer array, got dtype {idx.dtype}")
    if axis is None:
        if idx.ndim != 1:
            raise ValueError(f"take_along_axis: when axis=None, `indices` must have a single "
                             f"dimension, got shape {fmt_shape(idx.shape)}")
        arr, axis = ravel(arr), 0
    if idx.ndim != arr.ndim:
        raise ValueError(f"take_along_axis: `indices` and `arr` must have the same number of "
                         f"dimensions, got shapes {fmt_shape(tuple(idx.shape))} and {fmt_shape(arr.dims)}")
    axis = normalize_axis(axis, arr.ndim, "take_along_axis")
    shape = _static_shape(arr, "take_along_axis")
    ishape = tuple(idx.dims) if isinstance(idx, Tensor) else idx.shape
    if any(isinstance(d, Dim) for d in ishape):
        raise ValueError("take_along_axis: indices of a call-time shape are not supported")
    n = shape[axis]
    try:
        rest = np.broadcast_shapes(shape[:axis] + shape[axis + 1:], ishape[:axis] + ishape[axis + 1:])
    except ValueError:
        raise ValueError(f"take_along_axis: shapes {fmt_shape(shape)} (arr) and {fmt_shape(ishape)} "
                         f"(indices) could not be broadcast off axis {axis}") from None
    m = ishape[axis]
    arr = moveaxis(F.broadcast_to(arr, rest[:axis] + (n,) + rest[axis:]), axis, -1)
    rows = int(np.prod(rest, dtype=np.int64))
    offsets = (np.arange(rows, dtype=np.int64) * n).reshape(rest + (1,))
    if isinstance(idx, Tensor):
        idx = moveaxis(F.broadcast_to(F.astype(idx, np.int64), rest[:axis] + (m,) + rest[axis:]), axis, -1)
        wrapped, outside = wrapped_index(idx, n)        # outside its row: past the flat end, so it raises
        flat_idx = F.where(outside, rows * n, F.add(wrapped, constant(offsets)))
    else:
        idx = np.moveaxis(np.broadcast_to(idx.astype(np.int64), rest[:axis] + (m,) + rest[axis:]), axis, -1)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            bad = idx[(idx < -n) | (idx >= n)].flat[0]
            raise IndexError(f"take_along_axis: index {bad} is out of bounds for axis {axis} with size {n}")
        flat_idx = constant(np.where(idx < 0, idx + n, idx) + offsets)
    y = bind(sh.gather_p, F.reshape(arr, (rows * n,)), flat_idx, axis=0)
    return moveaxis(y, -1, axis)


# -- padding -------------------------------------------------------------------------------------

def _pairs(value, ndim: int, name: str, what: str, as_index: bool):
    """NumPy's ``_as_pairs``: a scalar, ``(v,)``, ``(before, after)`` or one pair per axis."""
    arr = np.asarray(value, dtype=object if not as_index else None)
    if as_index:
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            if np.issubdtype(arr.dtype, np.floating) and np.all(arr == np.round(arr)):
                arr = arr.astype(np.int64)
            else:
                raise TypeError(f"{name}: `{what}` must be of integral type, got {value!r}")
    try:
        pairs = np.broadcast_to(arr, (ndim, 2))
    except ValueError:
        raise ValueError(f"{name}: could not broadcast `{what}` of shape {arr.shape} to ({ndim}, 2) "
                         f"for an array of rank {ndim}") from None
    if as_index and pairs.size and pairs.min() < 0:
        raise ValueError(f"{name}: index can't contain negative values ({what} = {value!r})")
    return [(pairs[i, 0].item() if as_index else pairs[i, 0],
             pairs[i, 1].item() if as_index else pairs[i, 1]) for i in range(ndim)]


def _reflect_index(n: int, before: int, after: int, mode: str) -> np.ndarray:
    """Where each position of the padded axis reads from, for edge, reflect, symmetric, wrap."""
    p = np.arange(-before, n + after)
    if mode == "edge" or (mode == "reflect" and n == 1):
        return np.clip(p, 0, n - 1)
    if mode == "wrap":
        return p % n
    if mode == "reflect":
        p = p % (2 * n - 2)
        return np.where(p < n, p, 2 * n - 2 - p)
    p = p % (2 * n)                                      # symmetric
    return np.where(p < n, p, 2 * n - 1 - p)


def _reflect_odd(x: Tensor, axis: int, before: int, after: int, include_edge: bool) -> Tensor:
    """NumPy's ``_set_reflect_both`` with ``reflect_type="odd"``: rounds of chunks of what is
    padded so far, each ``2 * edge - chunk`` about the current edge, until the widths are filled
    (so odd reflections of pads wider than the axis compound, as in NumPy)."""
    n, skip = x.dims[axis], 0 if include_edge else 1     # reflect leaves the edge out of a chunk

    def about(edge, chunk):                               # NumPy's 2 * edge - chunk (int64 for bool)
        if edge.dtype == np.bool_:
            return F.astype(about(F.astype(edge, np.int64), F.astype(chunk, np.int64)), np.bool_)
        return F.subtract(F.add(edge, edge), chunk)
    while before or after:
        size = x.dims[axis]
        period = size // n * n if include_edge else (size - 1) // (n - 1) * (n - 1)
        parts = [x]
        if before:
            width = builtins.min(period, before)
            edge = _slice(x, axis, 0, 1)
            chunk = bind(sh.gather_p, x, constant(np.arange(width - 1 + skip, skip - 1, -1)), axis=axis)
            parts.insert(0, about(edge, chunk))
            before -= width
        if after:
            width = builtins.min(period, after)
            edge = _slice(x, axis, size - 1, size)
            last = size - 1 - skip
            chunk = bind(sh.gather_p, x, constant(np.arange(last, last - width, -1)), axis=axis)
            parts.append(about(edge, chunk))
            after -= width
        x = F.concatenate(parts, axis)
    return x


def _median(x: Tensor, axis: int) -> Tensor:
    """``np.median(x, axis, keepdims=True)`` for a float ``x`` with a fixed, non-empty axis: the
    middle of the sorted values (the mean of the two middle ones), NaN where a NaN is."""
    from .ops.sort import argsort_p, sort_ties_p        # not .sorting/.reductions: they import this module
    if any(isinstance(d, Dim) for d in x.dims):
        raise ValueError(f"pad: mode 'median' needs every size fixed when the graph is built, got shape "
                         f"{fmt_shape(x.dims)}")
    s = take_along_axis(x, bind(argsort_p, x, axis=axis, descending=False), axis)
    s = bind(sort_ties_p, s, axis=axis)                 # tied values share the derivative, as sort's
    n = s.dims[axis]
    mid = _slice(s, axis, (n - 1) // 2, n // 2 + 1)
    if n % 2 == 0:
        mid = F.divide(F.add(_slice(mid, axis, 0, 1), _slice(mid, axis, 1, 2)), 2)
    return F.where(F.isnan(_slice(s, axis, n - 1, n)), np.nan, mid)


_STATS = ("maximum", "minimum", "mean", "median")


def _stat(chunk: Tensor, axis: int, mode: str, dtype) -> Tensor:
    """NumPy's ``_get_stats``: the statistic along ``axis`` (kept, size 1) in ``dtype``; means and
    medians of integers in float64, rounded half to even for an integer ``dtype``."""
    if mode in ("maximum", "minimum"):
        return (F.max if mode == "maximum" else F.min)(chunk, axis, keepdims=True)
    if not np.issubdtype(chunk.dtype, np.inexact):
        chunk = F.astype(chunk, np.float64)
    if mode == "mean" or chunk.dims[axis] == 0:          # an empty chunk: NaN (0 / 0), as NumPy's
        s = F.mean(chunk, axis, keepdims=True)
    else:
        s = _median(chunk, axis)
    if np.issubdtype(dtype, np.integer):
        s = F.rint(s)
    return F.astype(s, dtype)


def _value_pairs(value, ndim: int, what: str) -> list:
    """NumPy's ``_as_pairs`` for ``end_values``, keeping the scalar types it hands on: NumPy
    scalars from a scalar or one pair, Python numbers (weak in NumPy's dtype rules) from pairs
    per axis; a Tensor scalar for every side."""
    if isinstance(value, Tensor):
        if value.ndim:
            raise ValueError(f"pad: {what} must be scalars, got shape {fmt_shape(value.dims)}")
        return [(value, value)] * ndim
    x = np.array(value)
    if x.dtype == object or x.dtype.kind not in "biuf":
        raise TypeError(f"pad: `{what}` must be numbers, got {value!r}")
    if x.ndim < 3 and x.size == 1:
        return [(x.ravel()[0],) * 2] * ndim
    if x.ndim < 3 and x.size == 2 and x.shape != (2, 1):
        return [tuple(x.ravel())] * ndim
    try:
        return [tuple(p) for p in np.broadcast_to(x, (ndim, 2)).tolist()]
    except ValueError:
        raise ValueError(f"pad: could not broadcast `{what}` of shape {x.shape} to ({ndim}, 2) "
                         f"for an array of rank {ndim}") from None


def _ramp(edge: Tensor, end, width: int, axis: int) -> Tensor:
    """NumPy's ``linspace(end, edge, width, endpoint=False, dtype=edge.dtype, axis=axis)``, as it
    computes it: in the dtype NumPy's rules give ``end`` and ``edge`` (float64 for integers),
    ``start + k * step``, or ``start + k / width * delta`` if any step is 0; floored for integers."""
    dt = np.result_type(edge.dtype, end.dtype if isinstance(end, Tensor) else end)
    dt = dt if np.issubdtype(dt, np.inexact) else np.dtype(np.float64)
    start = F.astype(end, dt) if isinstance(end, Tensor) else constant(np.asarray(end, dt))
    delta = F.subtract(F.astype(edge, dt), start)
    k = np.arange(width, dtype=dt).reshape((1,) * axis + (width,) + (1,) * (edge.ndim - axis - 1))
    step = F.divide(delta, constant(np.asarray(width, dt)))
    some_zero = F.greater(F.sum(F.astype(F.equal(step, 0), np.int64)), 0)
    y = F.where(some_zero, F.multiply(constant(k / dt.type(width)), delta), F.multiply(constant(k), step))
    y = F.add(y, start)
    if np.issubdtype(edge.dtype, np.integer):
        y = F.floor(y)
    return F.astype(y, edge.dtype)


_MODES = ("constant", "edge", "reflect", "symmetric", "wrap", "linear_ramp", *_STATS, "empty")


def pad(array, pad_width, mode="constant", **kwargs) -> Tensor:
    """numpy.pad for every mode but a function: ``constant`` (``constant_values``: a scalar, a
    Tensor scalar, or pairs as NumPy accepts), ``edge``, ``reflect`` and ``symmetric``
    (``reflect_type`` ``"even"`` or ``"odd"``), ``wrap``, ``linear_ramp`` (``end_values``, also a
    Tensor scalar), ``maximum``, ``minimum``, ``mean`` and ``median`` (``stat_length``), and
    ``empty``, whose values NumPy leaves undefined (here zeros).  ``pad_width`` is read as NumPy
    reads it.  Axes are padded one after another, so later axes' statistics, ramps and
    reflections see earlier axes' padding, as in NumPy.  The result keeps ``array``'s dtype;
    integer means and medians round half to even and integer ramps floor, as NumPy's do.
    """
    x = F.as_tensor(array)
    if mode not in _MODES:
        if callable(mode):
            raise NotImplementedError("pad: a function as `mode` is not supported (use a mode name: "
                                      f"{', '.join(_MODES)})")
        raise ValueError(f"pad: mode {mode!r} is not supported")
    allowed = {"constant": {"constant_values"}, "reflect": {"reflect_type"}, "symmetric": {"reflect_type"},
               "linear_ramp": {"end_values"}, **dict.fromkeys(_STATS, {"stat_length"})}.get(mode, set())
    unexpected = set(kwargs) - allowed
    if unexpected:
        raise ValueError(f"pad: unsupported keyword arguments for mode '{mode}': {sorted(unexpected)}")
    odd = kwargs.get("reflect_type", "even")
    if odd not in ("even", "odd"):
        raise ValueError(f"pad: reflect_type must be 'even' or 'odd', got {odd!r}")
    odd = odd == "odd"
    widths = _pairs(pad_width, x.ndim, "pad", "pad_width", as_index=True)
    if mode in ("constant", "empty"):
        cv = kwargs.get("constant_values", 0)
        values = (_pairs(cv, x.ndim, "pad", "constant_values", as_index=False)
                  if not isinstance(cv, Tensor) else [(cv, cv)] * x.ndim)
    elif builtins.any(d == 0 for d in x.dims if isinstance(d, int)):
        mode, odd = "edge", False      # NumPy: an empty array, padded only on its non-empty axes
    elif mode == "linear_ramp":
        ends = _value_pairs(kwargs.get("end_values", 0), x.ndim, "end_values")
    elif mode in _STATS:
        lengths = kwargs.get("stat_length")
        if lengths is None:
            lengths = [(None, None)] * x.ndim
        else:
            lengths = np.asarray(lengths)
            if lengths.dtype.kind == "f":           # NumPy rounds stat_length (half to even)
                lengths = np.round(lengths)
            lengths = _pairs(lengths, x.ndim, "pad", "stat_length", as_index=True)
            if mode in ("maximum", "minimum") and builtins.any(0 in p for p in lengths):
                raise ValueError("pad: stat_length of 0 yields no value for padding")
    for axis, (before, after) in enumerate(widths):
        if not before and not after:
            continue
        n = _size(x, axis, "pad")
        if mode in ("constant", "empty"):
            parts = []
            for width, value in zip((before, after), values[axis]):
                if width:
                    value = F.astype(F.as_tensor(value), x.dtype)
                    if value.ndim:
                        raise ValueError(f"pad: constant_values must be scalars, got shape "
                                         f"{fmt_shape(value.dims)}")
                    parts.append(F.broadcast_to(value, x.dims[:axis] + (width,) + x.dims[axis + 1:]))
                else:
                    parts.append(None)
            x = F.concatenate([p for p in (parts[0], x, parts[1]) if p is not None], axis)
            continue
        if n == 0:
            raise ValueError(f"pad: can't extend empty axis {axis} using modes other than 'constant' "
                             f"or 'empty'")
        if mode in _STATS or mode == "linear_ramp":
            if mode == "linear_ramp":
                sides = [_ramp(_slice(x, axis, 0, 1), ends[axis][0], before, axis) if before else None,
                         flip(_ramp(_slice(x, axis, n - 1, n), ends[axis][1], after, axis), axis)
                         if after else None]
            else:
                lo, hi = (n if s is None else builtins.min(s, n) for s in lengths[axis])
                left = _stat(_slice(x, axis, 0, lo), axis, mode, x.dtype)
                right = left if lo == hi == n else _stat(_slice(x, axis, n - hi, n), axis, mode, x.dtype)
                sides = [F.broadcast_to(s, x.dims[:axis] + (w,) + x.dims[axis + 1:]) if w else None
                         for s, w in ((left, before), (right, after))]
            x = F.concatenate([p for p in (sides[0], x, sides[1]) if p is not None], axis)
        elif odd and n > 1:
            x = _reflect_odd(x, axis, before, after, mode == "symmetric")
        else:
            x = bind(sh.gather_p, x, constant(_reflect_index(n, before, after, mode)), axis=axis)
    return x
