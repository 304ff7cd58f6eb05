"""The graph IR: immutable Tensor nodes, the leaves, and ``bind``.

A Tensor is one node: the primitive that made it, its inputs, its static
attributes, and its inferred shape and dtype.  Shapes are inferred when a node
is built, so an invalid graph fails at the user's line.  Operators on Tensors
are installed by :mod:`jitgrad.operators`; this module only knows how to make nodes.
"""
from __future__ import annotations

import itertools
from types import MappingProxyType

import numpy as np

from . import provenance
from .ops import leaf
from .primitive import Dim, Primitive, dims_under
from .ops._shapes import fmt_shape

SUPPORTED_DTYPES = tuple(np.dtype(t) for t in (
    "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float32", "float64"))


def as_dtype(dtype, what: str = "dtype") -> np.dtype:
    """A supported NumPy dtype, or a TypeError naming what was asked for."""
    try:
        dt = np.dtype(dtype)
    except TypeError as e:
        raise TypeError(f"{what}: unknown dtype {dtype!r}") from e
    if dt not in SUPPORTED_DTYPES:
        raise TypeError(f"{what}: dtype {dt} is not supported "
                        f"(supported: {', '.join(map(str, SUPPORTED_DTYPES))})")
    return dt


_serials = itertools.count()    # creation order: tells a checkpointed region's own nodes apart


class ParamState:
    """The mutable value behind a param node; nodes themselves never change.

    On the CUDA target the newest value lives on the device (``device``); the
    host copy is then refreshed on first read, so ``p.value`` and the CPU
    targets always see the newest value, and setting it on the host drops the
    stale device copy.
    """

    __slots__ = ("_host", "device", "shape")

    def __init__(self, array: np.ndarray):
        self._host, self.device, self.shape = array, None, array.shape

    @property
    def array(self) -> np.ndarray:
        if self._host is None:
            self._host = self.device.copy_to_host().reshape(self.shape)
        return self._host

    @array.setter
    def array(self, value: np.ndarray) -> None:
        self._host, self.device = value, None

    def assign(self, value) -> None:
        """Take a new value computed by a program: a host array, or a device array."""
        if isinstance(value, np.ndarray):
            self.array = value
        else:
            self._host, self.device = None, value


class Tensor:
    """A node of the graph and the handle users build with.

    Attributes: ``shape`` (``None`` for sizes given at call time), ``dtype``,
    ``ndim``, ``name`` (inputs and params), ``T``.  Nodes are immutable; only a
    param's ``value`` can be set.
    """

    __slots__ = ("op", "inputs", "attrs", "dims", "dtype", "constraints", "name", "_payload", "serial")
    __array_ufunc__ = None   # np_array * t calls t.__rmul__ instead of building an object array

    def __init__(self, op: Primitive, inputs: tuple, attrs: dict, dims: tuple, dtype,
                 constraints: tuple = (), name: str | None = None, payload=None):
        for slot, value in (("op", op), ("inputs", tuple(inputs)),
                            ("attrs", MappingProxyType(dict(attrs))), ("dims", tuple(dims)),
                            ("dtype", np.dtype(dtype)), ("constraints", tuple(constraints)),
                            ("name", name), ("_payload", payload), ("serial", next(_serials))):
            object.__setattr__(self, slot, value)

    def __setattr__(self, key, value):
        if key == "value":
            return Tensor.value.fset(self, value)
        raise AttributeError(f"Tensor is immutable: cannot set {key!r}")

    __hash__ = object.__hash__

    @property
    def shape(self) -> tuple:
        return tuple(None if isinstance(d, Dim) else d for d in self.dims)

    @property
    def ndim(self) -> int:
        return len(self.dims)

    @property
    def is_param(self) -> bool:
        return self.op is leaf.param_p

    @property
    def const_value(self) -> np.ndarray:
        """The array of a constant node (read-only)."""
        assert self.op is leaf.constant_p, "only constants have a const_value"
        return self._payload

    @property
    def value(self) -> np.ndarray:
        """A param's current value (a copy)."""
        if not self.is_param:
            raise AttributeError("only params have a value; inputs get theirs at call time")
        return self._payload.array.copy()

    @value.setter
    def value(self, new) -> None:
        if not self.is_param:
            raise AttributeError("only params have a value")
        self._payload.array = check_array(new, self.name, self.dims, self.dtype, {}, f"param {self.name!r}")

    def __bool__(self):
        raise TypeError("a Tensor has no truth value while the graph is being built; "
                        "use jg.where for data-dependent choices")

    def __iter__(self):
        if not self.dims or isinstance(self.dims[0], Dim):
            raise TypeError("iteration over a Tensor needs a fixed-size first axis")
        return (self[i] for i in range(self.dims[0]))

    def __len__(self):
        if not self.dims or isinstance(self.dims[0], Dim):
            raise TypeError("len() of a Tensor needs a fixed-size first axis")
        return self.dims[0]

    def __repr__(self) -> str:
        kind = self.op.name if self.name is None else f"{self.op.name} {self.name!r}"
        return f"Tensor<{kind}: {self.dtype}{fmt_shape(self.dims)}>"


def bind(op: Primitive, *inputs: Tensor, **attrs) -> Tensor:
    """Apply a primitive to Tensors: infer the result's shape and dtype, make the node."""
    aval = op.shape(*inputs, **attrs)
    node = Tensor(op, inputs, attrs, aval.dims, aval.dtype, aval.constraints)
    if provenance.recording:        # debug mode: note the user's line that built the node
        provenance.record(node)
    return node


def input(name: str, shape, dtype="float64") -> Tensor:
    """A symbolic input; ``None`` in ``shape`` is a size given at call time.

    >>> x = input("x", (None, 3))
    >>> x.shape
    (None, 3)
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"input: name must be a Python identifier, got {name!r}")
    if isinstance(shape, (int, np.integer)) or shape is None:
        shape = (shape,)
    dims = []
    for i, d in enumerate(shape):
        if d is None:
            dims.append(Dim(f"{name}{i}"))
        elif isinstance(d, (int, np.integer)) and d >= 0:
            dims.append(int(d))
        else:
            raise ValueError(f"input {name!r}: shape entries must be non-negative ints or None, got {shape}")
    node = Tensor(leaf.input_p, (), {}, tuple(dims), as_dtype(dtype, f"input {name!r}"), name=name)
    for d in dims:
        if isinstance(d, Dim):
            d.owner = node
    return node


def constant(value, dtype=None) -> Tensor:
    """A constant array baked into the graph."""
    if isinstance(value, Tensor):
        raise TypeError("constant: value is already a Tensor")
    array = np.array(value, dtype=None if dtype is None else as_dtype(dtype, "constant"))
    if array.dtype == object or array.dtype.kind in "USVOcM":
        raise TypeError(f"constant: cannot make a constant of dtype {array.dtype}")
    if array.dtype not in SUPPORTED_DTYPES:
        array = array.astype(_nearest_supported(array.dtype))
    array.setflags(write=False)
    return Tensor(leaf.constant_p, (), {}, array.shape, array.dtype, payload=array)


def _nearest_supported(dtype: np.dtype) -> np.dtype:
    if dtype == np.float16:
        return np.dtype(np.float32)
    raise TypeError(f"dtype {dtype} is not supported")


def param(name: str, value) -> Tensor:
    """A trainable, stateful array: an implicit input of every function that uses it."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"param: name must be a non-empty string, got {name!r}")
    array = np.array(value)
    dtype = as_dtype(array.dtype, f"param {name!r}")
    return Tensor(leaf.param_p, (), {}, array.shape, dtype, name=name, payload=ParamState(array.copy()))


def check_array(value, name: str, dims: tuple, dtype: np.dtype, sizes: dict, what: str) -> np.ndarray:
    """Convert one argument to the expected dtype and check its shape against ``dims``.

    ``sizes`` collects call-time sizes bound so far (Dim -> (size, who bound it)).
    """
    array = np.require(value, requirements="C")    # compiled kernels index C-ordered memory
    if array.dtype != dtype:
        if not np.can_cast(array.dtype, dtype, casting="same_kind"):
            raise TypeError(f"{what}: expected dtype {dtype}, got {array.dtype} "
                            f"(not convertible with casting='same_kind')")
        converted = array.astype(dtype, casting="same_kind")
        if array.dtype.kind in "iu" and dtype.kind in "iu" and array.size \
                and not np.can_cast(array.dtype, dtype, casting="safe"):    # e.g. uint64 -> int64 wraps
            low, high, fits = array.min(), array.max(), np.iinfo(dtype)
            if low < fits.min or high > fits.max:
                raise OverflowError(f"{what}: values from {low} to {high} do not fit dtype {dtype} "
                                    f"({fits.min} to {fits.max})")
        array = converted
    expected = fmt_shape(dims)
    if array.ndim != len(dims):
        raise ValueError(f"{what}: expected shape {expected}, got {array.shape} "
                         f"(rank {array.ndim} instead of {len(dims)})")
    for d, n in zip(dims, array.shape):
        if isinstance(d, Dim):
            bound = sizes.setdefault(d, (n, name))
            if bound[0] != n:
                raise ValueError(f"{what}: expected shape {expected}, got {array.shape}: its size {n} "
                                 f"contradicts size {bound[0]} of the same dimension in {bound[1]!r}")
        elif d != n:
            raise ValueError(f"{what}: expected shape {expected}, got {array.shape}")
    return array


def topological_order(outputs) -> list[Tensor]:
    """All nodes the outputs depend on, each after its inputs (iterative DFS)."""
    order, seen = [], set()
    for root in outputs:
        stack = [(root, False)]
        while stack:
            node, expanded = stack.pop()
            if expanded:
                order.append(node)
                continue
            if id(node) in seen:
                continue
            seen.add(id(node))
            stack.append((node, True))
            stack.extend((i, False) for i in reversed(node.inputs) if id(i) not in seen)
    return order


def inputs_of(outputs) -> list[Tensor]:
    """The inputs a graph reads, as nodes or through their call-time sizes.

    A derivative can use an input's size without its value (the gradient of a
    mean), so inputs are found through the owners of the graph's Dims too.
    What ``compile`` needs after ``load``.
    """
    roots = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    found: dict[int, Tensor] = {}
    for node in topological_order(roots):
        if node.op is leaf.input_p:
            found.setdefault(id(node), node)
        for d in dims_under(tuple(node.attrs.values()) + node.dims):
            if d.owner is not None:
                found.setdefault(id(d.owner), d.owner)
    return list(found.values())
