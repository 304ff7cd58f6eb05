"""Linear-algebra primitives.  ``matmul`` here; the decompositions follow in jg.linalg."""
from __future__ import annotations

import numpy as np

from ..primitive import Aval, Primitive, on, sum_tangents
from ._shapes import fmt_shape, unify_dim


def _matmul_shape(a, b):
    """(..., m, k) @ (..., k, n) -> (..., m, n); the builder has aligned the batch dims."""
    if len(a.dims) < 2 or len(a.dims) != len(b.dims):
        raise ValueError(f"matmul: operands have shapes {fmt_shape(a.dims)} and {fmt_shape(b.dims)}")
    msg = f"matmul: shapes {fmt_shape(a.dims)} and {fmt_shape(b.dims)} are not aligned"
    constraints: list = []
    batch = tuple(unify_dim(x, y, constraints, msg) for x, y in zip(a.dims[:-2], b.dims[:-2]))
    unify_dim(a.dims[-1], b.dims[-2], constraints, msg)
    if a.dtype != b.dtype:
        raise TypeError(f"matmul: dtypes {a.dtype} and {b.dtype} differ")
    return Aval(batch + (a.dims[-2], b.dims[-1]), a.dtype, tuple(constraints))


def _swap_last(b, x):
    perm = tuple(range(len(x.dims) - 2)) + (len(x.dims) - 1, len(x.dims) - 2)
    return b.transpose(x, perm)


def _matmul_ref(a, b):
    # BLAS rounds differently for transposed views: multiply C-ordered copies, so the
    # reference's result depends on the values alone, not on which views led to them
    return np.matmul(np.ascontiguousarray(a), np.ascontiguousarray(b))


matmul_p = Primitive(
    "matmul", shape=_matmul_shape, ref=_matmul_ref, nin=2,
    vjp=lambda b, g, y, x1, x2: (b.matmul(g, _swap_last(b, x2)), b.matmul(_swap_last(b, x1), g)),
    jvp=lambda b, dots, y, x1, x2: sum_tangents(
        b, on(dots[0], lambda t: b.matmul(t, x2)), on(dots[1], lambda t: b.matmul(x1, t))),
    doc="Batched matrix product.  Ā = Ȳ Bᵀ,  B̄ = Aᵀ Ȳ.",
)

PRIMITIVES = (matmul_p,)
