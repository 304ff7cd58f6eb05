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


# Rounding, remainders and shifts.  numba.cuda has no np.floor (np.rint, ...) and Numba's CPU
# target no math.fmod, so these use arithmetic both have: for a, b >= 0, ``a % b`` is fmod's exact
# remainder.  Above 2**52 every float is an integer; inf and NaN are their own roundings.

_BIG = 4503599627370496.0      # 2**52


@_inline
def trunc(x):
    a = abs(x)
    if a < _BIG:
        return math.copysign(a - a % 1.0, x)      # the sign of x: trunc(-0.5) is -0.0
    return x


@_inline
def floor(x):
    a = abs(x)
    if a < _BIG:
        t = math.copysign(a - a % 1.0, x)
        return t - 1.0 if x < t else t
    return x


@_inline
def ceil(x):
    a = abs(x)
    if a < _BIG:
        t = math.copysign(a - a % 1.0, x)
        return t + 1.0 if x > t else t          # ceil(-0.5) is -0.0, as in NumPy
    return x


@_inline
def rint(x):
    """Round half to even, keeping the sign (rint(-0.25) is -0.0), as np.rint."""
    a = abs(x)
    if a < _BIG:
        frac = a % 1.0
        whole = a - frac
        if frac > 0.5 or (frac == 0.5 and whole % 2.0 == 1.0):
            whole += 1.0
        return math.copysign(whole, x)
    return x


@_inline
def fmod(a, b):
    """np.fmod of floats: the remainder with the dividend's sign (NaN for b = 0 or a = ±inf)."""
    return math.copysign(abs(a) % abs(b), a)


@_inline
def floor_divide(a, b):
    """np.floor_divide: Python's ``//`` (which Numba computes as NumPy does, b = 0 included),
    except that the most negative integer divided by -1 is itself (NumPy wraps around)."""
    if b == -1 and a != 0 and a == -a:
        return a
    return a // b


@_inline
def left_shift(a, b):
    """np.left_shift: shifting by the width or more, or by a negative count, gives 0.
    (Numba shifts integers as 64-bit ones and the kernel casts the result back.)"""
    return a << b if 0 <= b < 64 else a - a


@_inline
def right_shift(a, b):
    """np.right_shift: shifting by the width or more, or by a negative count, gives -1 for a
    negative ``a``, else 0."""
    if 0 <= b < 64:
        return a >> b
    return ~(a - a) if a < 0 else a - a


@_inline
def logaddexp(a, b):
    """log(e^a + e^b) as np.logaddexp: equal arguments (same-signed infinities) give a + log 2."""
    if a == b:
        return a + 0.6931471805599453
    d = a - b
    if d > 0:
        return a + math.log1p(math.exp(-d))
    if d <= 0:
        return b + math.log1p(math.exp(d))
    return d        # NaN


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
