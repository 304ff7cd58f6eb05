"""Device versions of the helpers that primitives' scalar expressions name: the very
functions of :mod:`jitgrad.backends.scalars` (the CPU's), compiled for the device, so
one scalar expression means the same on both targets.  Only ``wrap_index`` differs:
a kernel cannot raise on a GPU.

All are ``inline="always"``: numba-cuda compiles a kernel that calls a device
function to PTX without a GPU only when the call is inlined, and inlining costs
nothing at run time.
"""
from numba import cuda

from . import scalars

_device = cuda.jit(device=True, inline="always")

sigmoid = _device(scalars.sigmoid.py_func)
sign = _device(scalars.sign.py_func)
maximum = _device(scalars.maximum.py_func)
minimum = _device(scalars.minimum.py_func)
safe_mul = _device(scalars.safe_mul.py_func)
safe_div = _device(scalars.safe_div.py_func)
slice_first = _device(scalars.slice_first.py_func)


@_device
def wrap_index(j, n, error):
    """A gather index, negative ones counted from the end.  An index out of bounds sets
    ``error[0]`` (the host raises IndexError after the call) and reads element 0."""
    k = j + n if j < 0 else j
    if k < 0 or k >= n:
        error[0] = 1
        return 0
    return k
