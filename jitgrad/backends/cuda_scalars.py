"""Device versions of the helpers that kernel bodies call (``kernel_body.HELPERS``): the
very functions of :mod:`jitgrad.backends.scalars` (the CPU's), compiled for the device,
so one scalar expression means the same on both targets.  Only ``wrap_index`` differs:
a kernel cannot raise on a GPU.

All are ``inline="always"``: numba-cuda compiles a kernel that calls a device
function to PTX without a GPU only when the call is inlined, and inlining costs
nothing at run time.
"""
from numba import cuda

from . import scalars
from .kernel_body import HELPERS

_device = cuda.jit(device=True, inline="always")


@_device
def wrap_index(j, n, error):
    """A gather index, negative ones counted from the end.  An index out of bounds sets
    ``error[0]`` (the host raises IndexError after the call) and reads element 0."""
    k = j + n if j < 0 else j
    if k < 0 or k >= n:
        error[0] = 1
        return 0
    return k


for _name in HELPERS:       # every other helper: the CPU's own function, for the device
    if _name not in globals():
        globals()[_name] = _device(getattr(scalars, _name).py_func)
