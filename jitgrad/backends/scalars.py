"""Helpers the generated CPU code calls: scalar functions named by primitives'
``scalar`` expressions, and the loops of a few library operations.

Each mirrors the NumPy reference of its primitive element by element, NaN
handling included, and is inlined into the kernels that call it.
"""
import math

import numpy as np
from numba import njit

_inline = njit(inline="always", cache=True, error_model="numpy")


@_inline
def sigmoid(x):
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


@_inline
def sign(x):
    if x > 0:
        return 1
    if x < 0:
        return -1
    return x            # 0, -0.0 and NaN are their own sign


@_inline
def maximum(a, b):
    return a if (a > b or a != a) else b     # NaN wins, as in np.maximum


@_inline
def minimum(a, b):
    return a if (a < b or a != a) else b


@_inline
def safe_mul(a, x):
    p = a * x
    # 0 * inf and 0 * NaN are the only NaNs to mend; a NaN is rare, so the branch is cheap
    return 0.0 if (p != p and (a == 0 or x == 0)) else p


@_inline
def safe_div(a, x):
    q = a / x
    return 0.0 if (q != q and a == 0) else q    # 0/0 and 0/NaN


@_inline
def slice_first(n, start, has_start, step):
    """The first index a slice ``start::step`` reads on an axis of size n (as range() does)."""
    if not has_start:
        return 0 if step > 0 else n - 1
    s = start + n if start < 0 else start
    if step > 0:
        return min(max(s, 0), n)
    return min(max(s, -1), n - 1)


@_inline
def wrap_index(j, n):
    """An index of a gather or scatter, negative ones counted from the end, checked."""
    k = j + n if j < 0 else j
    if k < 0 or k >= n:
        raise IndexError("index out of bounds in take/gather/scatter")
    return k


@njit(cache=True)
def matmul_floats(a, b, out):
    """A stack of matrix products through BLAS: out[i] = a[i] @ b[i]."""
    for i in range(a.shape[0]):
        out[i] = np.dot(a[i], b[i])


@njit(cache=True)
def matmul_ints(a, b, out):
    """Integer matrix products (BLAS has none), one stack entry at a time."""
    for i in range(a.shape[0]):
        for r in range(a.shape[1]):
            for c in range(b.shape[2]):
                acc = 0
                for k in range(a.shape[2]):
                    acc += a[i, r, k] * b[i, k, c]
                out[i, r, c] = acc
