"""``Tensor.__getitem__`` and ``Tensor.at``: NumPy indexing and JAX's functional updates.

Basic indexing lowers to one ``slice`` (ints become length-1 slices) and one ``reshape``
(dropping int axes, inserting ``None`` axes).  Integer arrays (any number of them, with
NumPy's broadcasting and result-axis placement) become one ``gather``: several arrays are
combined into one index into their axes merged by a ``transpose`` and ``reshape``.  When the
advanced indices (arrays, and ints among them) are separated by a slice, ``None`` or
ellipsis, the broadcast index axes go first, as in NumPy.  A NumPy boolean array is its
``nonzero()`` positions; a boolean *Tensor* is refused (the result's shape would depend on its
values).

Every step has a transpose (``unslice``, ``reshape``, ``transpose``, ``scatter_add``):
:class:`_Plan` applies them backwards to scatter a value of the indexed shape into the
array's shape.  ``x.at[idx].set(v)`` and its siblings are built from that scatter.
"""
from __future__ import annotations

import operator

import numpy as np

from . import functions as F
from .graph import Tensor, bind, constant
from .ops import shape as sh, sort as sort_ops
from .ops._shapes import fmt_shape
from .primitive import Dim


def _classify(entry):
    if entry is None or entry is Ellipsis:
        return "none" if entry is None else "ellipsis"
    if isinstance(entry, slice):
        return "slice"
    if isinstance(entry, (bool, np.bool_)):
        raise IndexError("boolean scalars are not supported as indices")
    if isinstance(entry, (int, np.integer)):
        return "int"
    if isinstance(entry, Tensor):
        if entry.dtype == np.bool_:
            raise IndexError("a boolean Tensor cannot be used as a mask: the result's shape would "
                             "depend on its values; use jg.where(mask, x, 0), or a NumPy boolean array "
                             "(fixed when the graph is built)")
        return "array"
    if isinstance(entry, (np.ndarray, list, tuple)):
        arr = np.asarray(entry)
        return "bool" if arr.dtype == np.bool_ else "array"
    raise IndexError(f"only integers, slices, ..., None, integer arrays and NumPy boolean arrays "
                     f"are valid indices, got {entry!r}")


def _consumes(entry, kind) -> int:
    if kind in ("none", "ellipsis"):
        return 0
    return np.ndim(entry) if kind == "bool" else 1


def _expand(x: Tensor, key: tuple):
    """The key with its ellipsis expanded and boolean arrays replaced by integer arrays."""
    kinds = [_classify(k) for k in key]
    if kinds.count("ellipsis") > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    consumed = sum(_consumes(k, c) for k, c in zip(key, kinds))
    if consumed > x.ndim:
        raise IndexError(f"too many indices for a Tensor of shape {fmt_shape(x.dims)}: "
                         f"{consumed} were indexed")
    fill = [slice(None)] * (x.ndim - consumed)
    if "ellipsis" in kinds:
        at = kinds.index("ellipsis")
        key = list(key[:at]) + fill + list(key[at + 1:])
    else:
        key = list(key) + fill
    out, axis = [], 0
    for entry in key:
        kind = _classify(entry)
        if kind != "bool":
            out.append(entry)
            axis += _consumes(entry, kind)
            continue
        mask = np.asarray(entry)
        sizes = x.dims[axis:axis + mask.ndim]
        for i, (d, m) in enumerate(zip(sizes, mask.shape)):
            if isinstance(d, Dim) or d != m:
                size = "a call-time size" if isinstance(d, Dim) else f"size {d}"
                raise IndexError(f"boolean index did not match indexed array along axis {axis + i}; "
                                 f"the axis has {size} but the boolean index has size {m}")
        out.extend(np.nonzero(mask) if mask.ndim else [np.nonzero(mask)[0]])
        axis += mask.ndim
    return out


def _slice_bound(v):
    try:
        return None if v is None else operator.index(v)
    except TypeError:
        raise TypeError(f"slice indices must be integers or None, got {v!r}") from None


def _int_slice(k: int, size):
    if isinstance(size, Dim):
        return (k, None if k == -1 else k + 1, 1)
    if not -size <= k < size:
        raise IndexError(f"index {k} is out of bounds for an axis of size {size}")
    k %= size
    return (k, k + 1, 1)


def _index_array(entry):
    """An integer index array: a Tensor (int64) or a NumPy int64 array."""
    if isinstance(entry, Tensor):
        if not np.issubdtype(entry.dtype, np.integer):
            raise IndexError(f"arrays used as indices must be of integer type, got {entry.dtype}")
        return F.astype(entry, np.int64)
    idx = np.asarray(entry)
    if idx.size == 0 and idx.dtype == np.float64:      # [] indexes nothing, as in NumPy
        idx = idx.astype(np.int64)
    if not np.issubdtype(idx.dtype, np.integer):
        raise IndexError(f"arrays used as indices must be of integer type, got {idx.dtype}")
    return idx.astype(np.int64)


def wrapped_index(idx: Tensor, n: int) -> tuple[Tensor, Tensor]:
    """A Tensor index into an axis of ``n`` with negative entries wrapped, and where it lies
    outside the axis.  Whoever merges axes into one flat index must send those entries out of
    the flat range too (so its gather raises), or they would read a neighbouring row."""
    idx = F.where(F.less(idx, 0), F.add(idx, n), idx)
    return idx, F.logical_or(F.less(idx, 0), F.greater_equal(idx, n))


def _checked(idx: np.ndarray, size, axis: int) -> np.ndarray:
    """A constant index, bounds-checked and with negative entries wrapped (if the size is fixed)."""
    if isinstance(size, Dim) or idx.size == 0:
        return idx
    bad = (idx < -size) | (idx >= size)
    if bad.any():
        raise IndexError(f"index {idx[bad].flat[0]} is out of bounds for axis {axis} with size {size}")
    return np.where(idx < 0, idx + size, idx)


class _Plan:
    """The steps an index lowers to, each with its transpose."""

    def __init__(self, x: Tensor):
        self.steps: list = []
        self.y = x

    def _add(self, step, y):
        self.steps.append(step)
        self.y = y

    def slice(self, index):
        dims = self.y.dims
        self._add(("slice", index, dims), bind(sh.slice_p, self.y, index=index))

    def reshape(self, shape):
        dims = self.y.dims
        if tuple(shape) != tuple(dims):
            self._add(("reshape", dims), F.reshape(self.y, tuple(shape)))

    def transpose(self, perm):
        if tuple(perm) != tuple(range(len(perm))):
            self._add(("transpose", tuple(perm)), F.transpose(self.y, tuple(perm)))

    def gather(self, idx, axis):
        dims, idx = self.y.dims, F.as_tensor(idx)
        self._add(("gather", idx, axis, dims), bind(sh.gather_p, self.y, idx, axis=axis))

    def scatter(self, v: Tensor, merge: str | None = None) -> Tensor:
        """``v`` (of the indexed shape) written into zeros of the array's shape.  The values of
        repeated indices add up, or with ``merge`` (an update's op) are first merged into one
        value per position, as :func:`_merge_repeats` says."""
        for step in reversed(self.steps):
            if step[0] == "slice":
                v = bind(sh.unslice_p, v, shape=step[2], index=step[1])
            elif step[0] == "reshape":
                v = F.reshape(v, step[1])
            elif step[0] == "transpose":
                v = F.transpose(v, tuple(np.argsort(step[1]).tolist()))
            else:
                _, idx, axis, dims = step
                if merge is not None:
                    v, idx = _merge_repeats(v, idx, axis, dims[axis], merge)
                v = bind(sh.scatter_add_p, v, idx, shape=dims, axis=axis)
        return v


_MERGE = {"multiply": F.multiply, "min": F.minimum, "max": F.maximum}


def _merge_repeats(v: Tensor, idx: Tensor, axis: int, n, op: str) -> tuple[Tensor, Tensor]:
    """Values ``v`` bound for ``scatter_add`` at ``idx`` along ``axis`` (of size ``n``), with the
    values of each repeated index merged into its last occurrence and the others zero, so the
    scatter applies the updates as sequential NumPy updates would: ``set`` keeps the last value,
    ``multiply`` the product of all, ``min``/``max`` the extreme of all.  The entries are sorted
    by index (stably, so "last" keeps its meaning) and merged within runs of equal indices by a
    segmented scan of log2(len(idx)) steps.  Returns the values and the index, both sorted."""
    if idx.ndim == 0:
        return v, idx
    length = int(np.prod(idx.dims)) if not any(isinstance(d, Dim) for d in idx.dims) else None
    if length is None and op != "set":
        raise ValueError(f"at[...].{op}: an index Tensor of call-time shape {fmt_shape(idx.dims)} needs a "
                         "fixed shape here (repeated indices are merged in log2(length) fixed steps)")
    if idx.ndim != 1:
        v = F.reshape(v, v.dims[:axis] + (-1,) + v.dims[axis + idx.ndim:])
        idx = F.reshape(idx, (-1,))
    size = n if isinstance(n, int) else F.full((), n, np.int64)
    idx = wrapped_index(idx, size)[0]          # -1 and n - 1 are the same position
    order = bind(sort_ops.argsort_p, idx, axis=0, descending=False)
    idx = F.take(idx, order, axis=0)
    v = bind(sh.gather_p, v, order, axis=axis)
    trailing = (1,) * (v.ndim - axis - 1)

    def along(t: Tensor, start=None, stop=None) -> Tensor:
        return t[(slice(None),) * axis + (slice(start, stop),)]

    if op != "set":
        step = 1
        while step < length:        # after it, entry j merges its run up to j (Hillis & Steele)
            same = F.reshape(F.equal(idx[step:], idx[:-step]), (length - step,) + trailing)
            later, earlier = along(v, step), along(v, None, -step)
            v = F.concatenate([along(v, None, step), F.where(same, _MERGE[op](later, earlier), later)], axis=axis)
            step *= 2
    last = F.concatenate([F.not_equal(idx[:-1], idx[1:]), F.constant(np.ones(1, bool))], axis=0)
    last = F.reshape(last, (-1,) + trailing) if trailing else last
    return F.where(last, v, F.constant(np.zeros((), v.dtype))), idx


def _lower(x: Tensor, key) -> _Plan:
    key = _expand(x, key if isinstance(key, tuple) else (key,))
    kinds = [_classify(k) for k in key]
    plan = _Plan(x)
    index_attr, new_dims, array_axes, axis = [], [], [], 0
    for entry, kind in zip(key, kinds):
        if kind == "none":
            new_dims.append(None)
            continue
        size = x.dims[axis]
        if kind == "int":
            index_attr.append(_int_slice(int(entry), size))
        elif kind == "slice":
            index_attr.append(tuple(_slice_bound(v) for v in (entry.start, entry.stop, entry.step)))
            new_dims.append(axis)
        else:
            index_attr.append((None, None, None))
            array_axes.append((len(new_dims), axis, _index_array(entry)))
            new_dims.append(axis)
        axis += 1
    if not all(t == (None, None, None) for t in index_attr):
        plan.slice(tuple(index_attr))
    plan.reshape(tuple(1 if a is None else plan.y.dims[a] for a in new_dims))
    if not array_axes:
        return plan
    advanced = [i for i, k in enumerate(kinds) if k in ("int", "array")]
    adjacent = advanced[-1] - advanced[0] + 1 == len(advanced)
    z = plan.y
    positions = [q for q, _, _ in array_axes]
    pos = positions[0]                    # the first array's axis; the others move next to it
    others = [a for a in range(z.ndim) if a not in positions]
    plan.transpose(others[:pos] + positions + others[pos:])
    sizes = [z.dims[q] for q in positions]
    idxs = [_checked(idx, n, x_axis) if isinstance(idx, np.ndarray) else idx
            for (_, x_axis, idx), n in zip(array_axes, sizes)]
    shapes = [tuple(i.dims) if isinstance(i, Tensor) else i.shape for i in idxs]
    if len(idxs) == 1:
        flat = idxs[0]
    else:
        if any(isinstance(d, Dim) for s in shapes for d in s):
            raise IndexError("several integer-array indices need index arrays of fixed shapes")
        try:
            common = np.broadcast_shapes(*shapes)
        except ValueError:
            raise IndexError("shape mismatch: indexing arrays could not be broadcast together with "
                             "shapes " + " ".join(fmt_shape(s) for s in shapes)) from None
        if any(isinstance(n, Dim) for n in sizes):
            raise IndexError("several integer-array indices need the indexed axes' sizes fixed; "
                             f"got shape {fmt_shape(x.dims)}")
        strides = np.cumprod([1] + sizes[:0:-1])[::-1].tolist()
        if all(isinstance(i, np.ndarray) for i in idxs):
            flat = sum(np.broadcast_to(i, common) * s for i, s in zip(idxs, strides))
        else:
            flat, outside = None, None
            for i, s, n in zip(idxs, strides, sizes):
                if isinstance(i, Tensor):
                    i, off = wrapped_index(i, n)
                    outside = off if outside is None else F.logical_or(outside, off)
                term = F.broadcast_to(F.multiply(i, s) if s != 1 else F.as_tensor(i), common)
                flat = term if flat is None else F.add(flat, term)
            if outside is not None:     # one index out of its axis: out of the merged one too, so
                flat = F.where(F.broadcast_to(outside, common), int(np.prod(sizes)), flat)  # the gather raises
        merged = plan.y.dims[:pos] + (int(np.prod(sizes)),) + plan.y.dims[pos + len(sizes):]
        plan.reshape(merged)
    plan.gather(constant(flat) if isinstance(flat, np.ndarray) else flat, pos)
    if not adjacent and pos:
        k = plan.y.ndim - (z.ndim - len(positions))
        plan.transpose(list(range(pos, pos + k)) + list(range(pos)) + list(range(pos + k, plan.y.ndim)))
    return plan


def index(x: Tensor, key) -> Tensor:
    """``x[key]`` with NumPy's semantics (see the module docstring)."""
    return _lower(x, key).y


# -- functional updates: x.at[idx].set(v) --------------------------------------------------------

def _has_tensor(key) -> bool:
    return any(isinstance(k, Tensor) for k in (key if isinstance(key, tuple) else (key,)))


def _update(x: Tensor, key, values, op: str) -> Tensor:
    name = f"at[...].{op}"
    plan = _lower(x, key)
    y = plan.y
    v = F.astype(F.as_tensor(values), x.dtype)
    try:
        target = F.broadcast_dims(name, [v.dims, y.dims])
    except ValueError:
        target = None
    if target is None or tuple(target) != tuple(y.dims):
        raise ValueError(f"{name}: values of shape {fmt_shape(v.dims)} cannot be broadcast to the "
                         f"indexed shape {fmt_shape(y.dims)}")
    v = F.broadcast_to(v, y.dims)
    if op == "add":
        return F.add(x, plan.scatter(v))
    static = not any(isinstance(d, Dim) for d in x.dims)
    if static and not _has_tensor(key):
        # positions known now: apply repeated indices in rounds of distinct targets
        size = int(np.prod(x.dims, dtype=np.int64))
        pos = np.arange(size).reshape(x.dims)[key].ravel()
        order = np.argsort(pos, kind="stable")
        ranked = pos[order]
        first = np.r_[True, ranked[1:] != ranked[:-1]] if ranked.size else np.zeros(0, bool)
        starts = np.maximum.accumulate(np.where(first, np.arange(ranked.size), 0))
        occurrence = np.empty(pos.size, np.int64)
        occurrence[order] = np.arange(ranked.size) - starts
        rounds = int(occurrence.max()) + 1 if occurrence.size else 0
        for r in range(rounds):
            keep = occurrence == r
            touched = np.zeros(size, bool)
            touched[pos[keep]] = True
            part = v if keep.all() else F.where(constant(keep.reshape(y.dims)), v,
                                                constant(np.zeros((), v.dtype)))
            x = _combine(op, x, plan.scatter(part), constant(touched.reshape(x.dims)))
        return x
    mask = F.greater(plan.scatter(F.ones(y.dims, np.float64)), 0.0)
    return _combine(op, x, plan.scatter(v, merge=op), mask)


def _combine(op: str, x: Tensor, scattered: Tensor, mask: Tensor) -> Tensor:
    if op == "set":
        return F.where(mask, scattered, x)
    if op == "multiply":
        return F.where(mask, F.multiply(x, scattered), x)
    if op == "min":
        return F.where(mask, F.minimum(x, scattered), x)
    return F.where(mask, F.maximum(x, scattered), x)


class _IndexUpdateRef:
    """``x.at[idx]``: functional updates of the elements ``x[idx]``, as in JAX.

    ``set``, ``add``, ``multiply``, ``min``, ``max`` return a new Tensor shaped like ``x``
    (``values`` broadcast to ``x[idx]``'s shape and cast to ``x``'s dtype), with derivatives
    in ``x`` and ``values``.  Repeated indices: ``add`` accumulates; the others apply the
    repeats in order, as sequential NumPy updates would: ``set`` keeps
    the last value (JAX leaves that unspecified), ``multiply`` multiplies by all,
    ``min``/``max`` take the extreme of all.  Indices fixed when the graph is built apply in
    rounds of distinct positions; Tensor indices are sorted at run time and their repeats
    merged before one scatter (``multiply``/``min``/``max`` need the index Tensor's shape fixed).
    """

    __slots__ = ("x", "key")

    def __init__(self, x: Tensor, key):
        self.x, self.key = x, key

    def get(self) -> Tensor:
        return index(self.x, self.key)

    def set(self, values) -> Tensor:  # noqa: A003
        return _update(self.x, self.key, values, "set")

    def add(self, values) -> Tensor:
        return _update(self.x, self.key, values, "add")

    def multiply(self, values) -> Tensor:
        return _update(self.x, self.key, values, "multiply")

    def min(self, values) -> Tensor:  # noqa: A003
        return _update(self.x, self.key, values, "min")

    def max(self, values) -> Tensor:  # noqa: A003
        return _update(self.x, self.key, values, "max")


class _IndexUpdateHelper:
    """``x.at``: index it (``x.at[idx]``) to get the update methods."""

    __slots__ = ("x",)

    def __init__(self, x: Tensor):
        self.x = x

    def __getitem__(self, key) -> _IndexUpdateRef:
        return _IndexUpdateRef(self.x, key)


def at(x: Tensor) -> _IndexUpdateHelper:
    return _IndexUpdateHelper(x)
