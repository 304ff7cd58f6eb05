"""Tensor's NumPy-like operators and methods (``x + y``, ``x[1:]``, ``x.T``, ``x.sum()``).

They are the builder functions and indexing, which import the graph; so they are
attached to :class:`~jitgrad.graph.Tensor` from here, above all three:
``jitgrad/__init__.py`` calls ``install_operators(Tensor)`` once.
"""
from __future__ import annotations

from . import functions as F
from .indexing import at, index


def _swap(fn):
    return lambda self, other: fn(other, self)


def install_operators(cls: type) -> None:
    """Give Tensor its NumPy-like operators and methods."""
    ops = {
        "__add__": F.add, "__radd__": _swap(F.add), "__sub__": F.subtract, "__rsub__": _swap(F.subtract),
        "__mul__": F.multiply, "__rmul__": _swap(F.multiply), "__truediv__": F.divide,
        "__rtruediv__": _swap(F.divide), "__pow__": F.power, "__rpow__": _swap(F.power),
        "__matmul__": F.matmul, "__rmatmul__": _swap(F.matmul), "__neg__": F.negative,
        "__pos__": lambda self: self, "__abs__": F.abs,
        "__mod__": F.mod, "__rmod__": _swap(F.mod), "__floordiv__": F.floor_divide,
        "__rfloordiv__": _swap(F.floor_divide), "__and__": F.bitwise_and, "__rand__": _swap(F.bitwise_and),
        "__or__": F.bitwise_or, "__ror__": _swap(F.bitwise_or), "__xor__": F.bitwise_xor,
        "__rxor__": _swap(F.bitwise_xor), "__lshift__": F.left_shift, "__rlshift__": _swap(F.left_shift),
        "__rshift__": F.right_shift, "__rrshift__": _swap(F.right_shift), "__invert__": F.invert,
        "__lt__": F.less, "__le__": F.less_equal, "__gt__": F.greater, "__ge__": F.greater_equal,
        "__eq__": F.equal, "__ne__": F.not_equal, "__getitem__": index,
        "sum": F.sum, "mean": F.mean, "max": F.max, "min": F.min, "prod": F.prod,
        "reshape": F.reshape, "transpose": F.transpose, "astype": F.astype,
        "T": property(lambda self: F.transpose(self)),
        "at": property(at),
    }
    for name, fn in ops.items():
        setattr(cls, name, fn)
