"""Shape primitives: reshape, transpose, broadcast_to, slicing, gather, concatenation.

Shapes in attributes may hold call-time sizes (``Dim``); the runtime resolves
them from its bindings before calling the reference.  ``broadcast_to``'s VJP is
the one place that undoes broadcasting.
"""
from __future__ import annotations

import numpy as np

from ..primitive import Aval, Dim, Primitive, batch_stack, broadcast_unbatched, on
from ._shapes import fmt_shape, is_static, unify_dim


# -- reshape -----------------------------------------------------------------

def _reshape_shape(x, *, shape):
    if sum(1 for d in shape if isinstance(d, int) and d == -1) > 1:
        raise ValueError(f"reshape: can only specify one unknown dimension in {shape}")
    static_in = int(np.prod([d for d in x.dims if not isinstance(d, Dim)], dtype=np.int64))
    static_out = int(np.prod([d for d in shape if not isinstance(d, Dim) and d != -1], dtype=np.int64))
    in_dims = [d for d in x.dims if isinstance(d, Dim)]
    out_dims = [d for d in shape if isinstance(d, Dim)]
    bad = f"reshape: cannot reshape an array of shape {fmt_shape(x.dims)} into shape {fmt_shape(shape)}"
    if -1 not in shape:
        if not in_dims and not out_dims and static_in != static_out:
            raise ValueError(bad)
        return Aval(tuple(shape), x.dtype)
    if not in_dims and not out_dims:
        if static_out == 0 or static_in % static_out:
            raise ValueError(bad)
        unknown = static_in // static_out
    elif len(in_dims) == 1 and not out_dims and static_in == static_out:
        unknown = in_dims[0]          # e.g. (None, 3) -> (-1, 3) keeps the call-time size
    else:
        known = [d for d in shape if not (isinstance(d, int) and d == -1)]
        unknown = Dim(derive=("quotient", tuple(x.dims) + tuple(known), len(x.dims)))
    return Aval(tuple(unknown if (isinstance(d, int) and d == -1) else d for d in shape), x.dtype)


reshape_p = Primitive(
    "reshape", shape=_reshape_shape, attrs=("shape",),
    ref=lambda x, shape: np.reshape(x, shape),
    vjp=lambda b, y_bar, y, x, *, shape: (b.reshape(y_bar, x.dims),),
    jvp=lambda b, x_dots, y, x, *, shape: b.reshape(x_dots[0], y.dims),
    batch=lambda b, batched, y, x, *, shape: b.reshape(x, x.dims[:1] + y.dims),
)


# -- transpose ---------------------------------------------------------------

def _transpose_shape(x, *, perm):
    if sorted(perm) != list(range(len(x.dims))):
        raise ValueError(f"transpose: axes {perm} are not a permutation for shape {fmt_shape(x.dims)}")
    return Aval(tuple(x.dims[p] for p in perm), x.dtype)


transpose_p = Primitive(
    "transpose", shape=_transpose_shape, attrs=("perm",),
    ref=lambda x, perm: np.transpose(x, perm),
    vjp=lambda b, y_bar, y, x, *, perm: (b.transpose(y_bar, tuple(np.argsort(perm).tolist())),),
    jvp=lambda b, x_dots, y, x, *, perm: b.transpose(x_dots[0], perm),
    batch=lambda b, batched, y, x, *, perm: b.transpose(x, (0,) + tuple(p + 1 for p in perm)),
)


# -- broadcast_to ------------------------------------------------------------

def _broadcast_shape(x, *, shape):
    lead = len(shape) - len(x.dims)
    msg = f"broadcast_to: cannot broadcast shape {fmt_shape(x.dims)} to {fmt_shape(shape)}"
    if lead < 0:
        raise ValueError(msg)
    constraints: list = []
    for d_in, d_out in zip(x.dims, shape[lead:]):
        if not (isinstance(d_in, int) and d_in == 1):
            unify_dim(d_in, d_out, constraints, msg)
    return Aval(tuple(shape), x.dtype, tuple(constraints))


def _unbroadcast(b, y_bar, x):
    """Sum a cotangent over the axes broadcasting added, back to ``x``'s shape."""
    lead = len(y_bar.dims) - len(x.dims)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, (d_in, d_out) in enumerate(zip(x.dims, y_bar.dims[lead:]))
        if isinstance(d_in, int) and d_in == 1 and not (isinstance(d_out, int) and d_out == 1))
    if axes:
        y_bar = b.sum(y_bar, axes, keepdims=False)
    return b.reshape(y_bar, x.dims) if y_bar.dims != x.dims else y_bar


def _broadcast_batch(b, batched, y, x, *, shape):
    """The axes broadcasting adds go after the examples axis, not before it."""
    lead = len(shape) - (len(x.dims) - 1)
    if lead:
        x = b.reshape(x, x.dims[:1] + (1,) * lead + x.dims[1:])
    return b.bind(broadcast_to_p, x, shape=x.dims[:1] + tuple(shape))


broadcast_to_p = Primitive(
    "broadcast_to", shape=_broadcast_shape, attrs=("shape",),
    ref=lambda x, shape: np.broadcast_to(x, shape),
    vjp=lambda b, y_bar, y, x, *, shape: (_unbroadcast(b, y_bar, x),),
    jvp=lambda b, x_dots, y, x, *, shape: b.broadcast_to(x_dots[0], y.dims),
    batch=_broadcast_batch,
)


# -- basic slicing -----------------------------------------------------------

_WHOLE = (None, None, None)     # the slice of a whole axis


def _slices(index):
    return tuple(slice(*t) for t in index)


def _slice_shape(x, *, index):
    if len(index) != len(x.dims):
        raise ValueError(f"slice: {len(index)} slices for shape {fmt_shape(x.dims)}")
    dims = []
    for d, (start, stop, step) in zip(x.dims, index):
        if step == 0:
            raise ValueError("slice: slice step cannot be zero")
        if not any(isinstance(v, Dim) for v in (d, start, stop)):
            dims.append(len(range(d)[slice(start, stop, step)]))
        elif (start, stop, step) in ((None, None, None), (None, None, 1)):
            dims.append(d)
        else:
            dims.append(Dim(derive=("slice", (d, start, stop), step)))
    return Aval(tuple(dims), x.dtype)


def _unslice_ref(g, shape, index):
    out = np.zeros(shape, g.dtype)
    out[_slices(index)] = g
    return out


def _unslice_shape(g, *, shape, index):
    return Aval(tuple(shape), g.dtype)


slice_p = Primitive(
    "slice", shape=_slice_shape, attrs=("index",),
    ref=lambda x, index: x[_slices(index)],
    vjp=lambda b, y_bar, y, x, *, index: (b.bind(unslice_p, y_bar, shape=x.dims, index=index),),
    jvp=lambda b, x_dots, y, x, *, index: b.bind(slice_p, x_dots[0], index=index),
    batch=lambda b, batched, y, x, *, index: b.bind(slice_p, x, index=(_WHOLE,) + tuple(index)),
    doc="Basic slicing; ``index`` holds one (start, stop, step) per axis.",
)
unslice_p = Primitive(
    "unslice", shape=_unslice_shape, attrs=("shape", "index"), ref=_unslice_ref,
    vjp=lambda b, y_bar, y, x, *, shape, index: (b.bind(slice_p, y_bar, index=index),),
    jvp=lambda b, x_dots, y, x, *, shape, index: b.bind(unslice_p, x_dots[0], shape=shape, index=index),
    batch=lambda b, batched, y, x, *, shape, index: b.bind(
        unslice_p, x, shape=x.dims[:1] + tuple(shape), index=(_WHOLE,) + tuple(index)),
    doc="Zeros of ``shape`` with ``x`` written into the slice: the transpose of slice.",
)


# -- gather / scatter_add ----------------------------------------------------

def _gather_shape(x, idx, *, axis):
    if not np.issubdtype(idx.dtype, np.integer):
        raise TypeError(f"take: indices must be integers, got {idx.dtype}")
    if not 0 <= axis < len(x.dims):
        raise ValueError(f"take: axis {axis} is out of range for shape {fmt_shape(x.dims)}")
    return Aval(x.dims[:axis] + idx.dims + x.dims[axis + 1:], x.dtype)


def _scatter_add_ref(g, idx, shape, axis):
    out = np.zeros(shape, g.dtype)
    moved = np.moveaxis(out, axis, 0)
    g_moved = np.moveaxis(g, tuple(range(axis, axis + idx.ndim)), tuple(range(idx.ndim)))
    np.add.at(moved, idx, g_moved)
    return out


def _scatter_add_shape(g, idx, *, shape, axis):
    return Aval(tuple(shape), g.dtype)


def _move_axes(b, x, order):
    """``x`` with its axes in ``order`` (a list of axis numbers), unless that is no change."""
    order = tuple(order)
    return x if order == tuple(range(len(x.dims))) else b.transpose(x, order)


def _wrapped(b, idx, n):
    """Indices with the negative ones wrapped, as NumPy reads them."""
    return b.where(b.less(idx, 0), b.add(idx, n), idx)


def _rows_of_all_examples(b, idx, n):
    """Indices into the rows of every example's array stacked into one axis: example
    ``e``'s rows ``0..n-1`` become ``e n .. e n + n - 1``.  Needs a fixed number of examples."""
    size = idx.dims[0]
    offsets = np.arange(size, dtype=idx.dtype).reshape((size,) + (1,) * (len(idx.dims) - 1)) * n
    return b.add(_wrapped(b, idx, n), offsets)


def _one_hot(b, idx, n, trailing: int):
    """``idx[..., None] == arange(n)``, with ``trailing`` unit axes after the new one."""
    if not isinstance(n, int):
        raise NotImplementedError(f"vmap: indexing with both the array and the indices mapped needs "
                                  f"a fixed size of the indexed axis, got {n}")
    hot = b.equal(b.expand_dims(_wrapped(b, idx, n), -1), np.arange(n, dtype=idx.dtype))
    return b.reshape(hot, hot.dims + (1,) * trailing)


def _gather_batch(b, batched, y, x, idx, *, axis):
    if not batched[1]:
        return b.bind(gather_p, x, idx, axis=axis + 1)
    k = len(idx.dims) - 1                              # axes of one example's indices
    if not batched[0]:                                 # x[pre, (examples, *I), post]
        out = b.bind(gather_p, x, idx, axis=axis)
        return _move_axes(b, out, [axis, *range(axis), *range(axis + 1, len(out.dims))])
    ndim, n = len(x.dims), x.dims[axis + 1]            # x: (examples, pre, n, post)
    rows = _move_axes(b, x, [0, axis + 1, *range(1, axis + 1), *range(axis + 2, ndim)])
    if isinstance(idx.dims[0], int) and isinstance(n, int):
        rows = b.reshape(rows, (-1,) + rows.dims[2:])  # (examples * n, pre, post)
        out = b.bind(gather_p, rows, _rows_of_all_examples(b, idx, n), axis=0)
    else:   # a call-time number of examples: select each example's rows with a one-hot mask
        rows = b.reshape(rows, rows.dims[:1] + (1,) * k + rows.dims[1:])
        picked = b.where(_one_hot(b, idx, n, ndim - 2), rows, b.zeros_like(rows))
        out = b.sum(picked, axis=k + 1)
    # out: (examples, I, pre, post)
    return _move_axes(b, out, [0, *range(k + 1, k + 1 + axis), *range(1, k + 1),
                               *range(k + 1 + axis, len(out.dims))])


def _scatter_add_batch(b, batched, y, g, idx, *, shape, axis):
    if not batched[1]:
        return b.bind(scatter_add_p, g, idx, shape=g.dims[:1] + tuple(shape), axis=axis + 1)
    size, k, n = idx.dims[0], len(idx.dims) - 1, shape[axis]
    if not batched[0]:
        g = b.broadcast_to(g, (size,) + g.dims)
    ndim = len(g.dims)                                 # g: (examples, pre, I, post)
    g = _move_axes(b, g, [0, *range(axis + 1, axis + 1 + k), *range(1, axis + 1),
                          *range(axis + 1 + k, ndim)])
    rest = tuple(shape[:axis]) + tuple(shape[axis + 1:])
    if isinstance(size, int) and isinstance(n, int):
        flat = b.bind(scatter_add_p, g, _rows_of_all_examples(b, idx, n), shape=(size * n,) + rest, axis=0)
        out = b.reshape(flat, (size, n) + rest)       # (examples, n, pre, post)
    else:   # a call-time number of examples: add each example's rows through a one-hot mask
        spread = b.expand_dims(g, k + 1)               # (examples, I, 1, pre, post)
        out = b.where(_one_hot(b, idx, n, len(rest)), spread, b.zeros_like(spread))
        out = b.sum(out, axis=tuple(range(1, k + 1))) if k else out
    return _move_axes(b, out, [0, *range(2, 2 + axis), 1, *range(2 + axis, len(out.dims))])


gather_p = Primitive(
    "gather", shape=_gather_shape, attrs=("axis",), nin=2,
    ref=lambda x, idx, axis: np.take(x, idx, axis=axis),
    vjp=lambda b, y_bar, y, x, idx, *, axis: (
        b.bind(scatter_add_p, y_bar, idx, shape=x.dims, axis=axis), None),
    jvp=lambda b, x_dots, y, x, idx, *, axis: on(x_dots[0], lambda t: b.bind(gather_p, t, idx, axis=axis)),
    batch=_gather_batch,
    doc="np.take(x, idx, axis): integer-array indexing along one axis.",
)
scatter_add_p = Primitive(
    "scatter_add", shape=_scatter_add_shape, attrs=("shape", "axis"), nin=2,
    ref=_scatter_add_ref,
    vjp=lambda b, y_bar, y, x, idx, *, shape, axis: (b.bind(gather_p, y_bar, idx, axis=axis), None),
    jvp=lambda b, x_dots, y, x, idx, *, shape, axis: on(
        x_dots[0], lambda t: b.bind(scatter_add_p, t, idx, shape=shape, axis=axis)),
    batch=_scatter_add_batch,
    doc="Zeros of ``shape`` with ``x`` added at ``idx`` along ``axis`` (repeats accumulate).",
)


# -- concatenate -------------------------------------------------------------

def _concat_shape(*xs, axis):
    first = xs[0]
    if not 0 <= axis < len(first.dims):
        raise ValueError(f"concatenate: axis {axis} is out of range for shape {fmt_shape(first.dims)}")
    constraints: list = []
    dims = list(first.dims)
    for x in xs[1:]:
        msg = (f"concatenate: shapes {fmt_shape(first.dims)} and {fmt_shape(x.dims)} "
               f"differ off axis {axis}")
        if len(x.dims) != len(dims):
            raise ValueError(msg)
        if x.dtype != first.dtype:
            raise TypeError(f"concatenate: dtypes {first.dtype} and {x.dtype} differ")
        for i, d in enumerate(x.dims):
            if i != axis:
                dims[i] = unify_dim(dims[i], d, constraints, msg)
    sizes = [x.dims[axis] for x in xs]
    dims[axis] = sum(sizes) if is_static(sizes) else Dim(derive=("sum", sizes, None))
    return Aval(tuple(dims), first.dtype, tuple(constraints))


def _offset(sizes):
    """Where a part starts along the concatenation axis (a Dim if call-time sizes precede it)."""
    return sum(sizes) if is_static(sizes) else Dim(derive=("sum", sizes, None))


def _concat_vjp(b, y_bar, y, *xs, axis):
    sizes = [x.dims[axis] for x in xs]
    parts = []
    for i in range(len(xs)):
        index = [(None, None, None)] * len(y_bar.dims)
        index[axis] = (_offset(sizes[:i]), _offset(sizes[:i + 1]), 1)
        parts.append(b.bind(slice_p, y_bar, index=tuple(index)))
    return tuple(parts)


def _concat_jvp(b, x_dots, y, *xs, axis):
    filled = [b.zeros_like(x) if x_dot is None else x_dot for x_dot, x in zip(x_dots, xs)]
    return b.bind(concatenate_p, *filled, axis=axis)


def _concat_batch(b, batched, y, *xs, axis):
    return b.bind(concatenate_p, *broadcast_unbatched(b, batched, xs), axis=axis + 1)


concatenate_p = Primitive(
    "concatenate", shape=_concat_shape, attrs=("axis",), nin=None,
    ref=lambda *xs, axis: np.concatenate(xs, axis=axis), vjp=_concat_vjp, jvp=_concat_jvp,
    batch=_concat_batch,
)


# -- constant fills ----------------------------------------------------------

full_p = Primitive(
    "full", shape=lambda *, shape, value, dtype: Aval(tuple(shape), np.dtype(dtype)),
    attrs=("shape", "value", "dtype"), nin=0,
    ref=lambda shape, value, dtype: np.full(shape, value, dtype),
    vjp=None, jvp=None, differentiable=False,
    doc="An array filled with one value (zeros for unused gradients).",
)
full_like_p = Primitive(
    "full_like", shape=lambda x, *, value: Aval(x.dims, x.dtype), attrs=("value",),
    ref=lambda x, value: np.full(x.shape, value, x.dtype),
    vjp=lambda b, y_bar, y, x, *, value: (None,), jvp=lambda b, x_dots, y, x, *, value: None,
    batch=batch_stack, doc="Like full, for an array whose shape is known only at call time.",
)

PRIMITIVES = (reshape_p, transpose_p, broadcast_to_p, slice_p, unslice_p, gather_p,
              scatter_add_p, concatenate_p, full_p, full_like_p)
