"""``Tensor.__getitem__``: NumPy basic indexing plus one integer-array index.

Basic indexing lowers to one ``slice`` (ints become length-1 slices) and one
``reshape`` (dropping int axes, inserting ``None`` axes); an integer array
becomes a ``gather`` on the resulting axis.
"""
from __future__ import annotations

import operator

import numpy as np

from . import functions as F
from .graph import Tensor
from .ops import shape as sh
from .graph import bind
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
    if isinstance(entry, (Tensor, np.ndarray, list, tuple)):
        return "array"
    raise IndexError(f"only integers, slices, ..., None and integer arrays are valid indices, "
                     f"got {entry!r}")


def _expand(x: Tensor, key: tuple) -> list:
    kinds = [_classify(k) for k in key]
    if kinds.count("ellipsis") > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    consumed = sum(k not in ("none", "ellipsis") for k in kinds)
    if consumed > x.ndim:
        raise IndexError(f"too many indices for a Tensor of shape {fmt_shape(x.dims)}: "
                         f"{consumed} were indexed")
    fill = [slice(None)] * (x.ndim - consumed)
    if "ellipsis" in kinds:
        at = kinds.index("ellipsis")
        return list(key[:at]) + fill + list(key[at + 1:])
    return list(key) + fill


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


def _index_array(entry) -> Tensor:
    idx = entry if isinstance(entry, Tensor) else np.asarray(entry)
    if not np.issubdtype(idx.dtype, np.integer):
        raise IndexError(f"arrays used as indices must be of integer type, got {idx.dtype}")
    return F.astype(idx, np.int64)


def index(x: Tensor, key) -> Tensor:
    key = _expand(x, key if isinstance(key, tuple) else (key,))
    kinds = [_classify(k) for k in key]
    arrays = [i for i, k in enumerate(kinds) if k == "array"]
    if len(arrays) > 1:
        raise IndexError("only one integer-array index per indexing expression is supported")
    ints = [i for i, k in enumerate(kinds) if k == "int"]
    def apart(i):      # an int index separated from the first array index by a slice or None
        lo, hi = min(i, arrays[0]), max(i, arrays[0])
        return abs(i - arrays[0]) > 1 and any(kinds[j] not in ("int", "array") for j in range(lo, hi))
    if arrays and ints and any(apart(i) for i in ints):
        raise IndexError("an integer index separated from an integer-array index by a slice "
                         "is not supported (NumPy would move the result axes to the front)")
    index_attr, new_dims, gather_axis, axis = [], [], None, 0
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
            gather_axis = len(new_dims)
            new_dims.append(axis)
        axis += 1
    full = all(t == (None, None, None) for t in index_attr)
    y = x if full else bind(sh.slice_p, x, index=tuple(index_attr))
    y = F.reshape(y, tuple(1 if a is None else y.dims[a] for a in new_dims))
    if gather_axis is not None:
        y = bind(sh.gather_p, y, _index_array(key[arrays[0]]), axis=gather_axis)
    return y
