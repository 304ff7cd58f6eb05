"""Device versions of the helpers that primitives' scalar expressions name
(see :mod:`jitgrad.backends.scalars`, the CPU ones): same names, same NaN
handling, so one scalar expression serves both targets.

All are ``inline="always"``: device functions must be inlined into a kernel
to compile to PTX without a GPU, and inlining costs nothing at run time.
"""
import math

from numba import cuda

_device = cuda.jit(device=True, inline="always")


@_device
def sigmoid(x):
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


@_device
def sign(x):
    if x > 0:
        return 1
    if x < 0:
        return -1
    return x            # 0, -0.0 and NaN are their own sign


@_device
def maximum(a, b):
    return a if (a > b or a != a) else b     # NaN wins, as in np.maximum


@_device
def minimum(a, b):
    return a if (a < b or a != a) else b


@_device
def safe_mul(a, x):
    p = a * x
    return 0.0 if (p != p and (a == 0 or x == 0)) else p     # 0 * inf, 0 * NaN -> 0


@_device
def safe_div(a, x):
    q = a / x
    return 0.0 if (q != q and a == 0) else q                  # 0/0, 0/NaN -> 0


@_device
def slice_first(n, start, has_start, step):
    """The first index a slice ``start::step`` reads on an axis of size n (as range() does)."""
    if not has_start:
        return 0 if step > 0 else n - 1
    s = start + n if start < 0 else start
    if step > 0:
        return min(max(s, 0), n)
    return min(max(s, -1), n - 1)


@_device
def wrap_index(j, n, error):
    """A gather index, negative ones counted from the end.  A kernel cannot raise on a GPU:
    an index out of bounds sets ``error[0]`` (the host raises IndexError after the call)
    and reads element 0 instead."""
    k = j + n if j < 0 else j
    if k < 0 or k >= n:
        error[0] = 1
        return 0
    return k
