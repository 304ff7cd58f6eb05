"""What the debug and profile variants of a CPU program call (``jitgrad.debug``).

``all_finite``: the NaN test after a step, a function of its own (compiled once per array type;
called, not inlined, so that a program with many checks compiles in about the time it would
without them).

``clock_gettime`` of the C library, declared by name (a program calling it stays cacheable, as
the LAPACK bindings do): about 30 ns a reading, where a timer in Numba's object mode costs
microseconds, as much as a small kernel. POSIX only: elsewhere ``CLOCK`` is None and programs
read ``time.perf_counter`` in object mode.
"""
import time

import numpy as np
from numba import njit, types

CLOCK = getattr(time, "CLOCK_MONOTONIC", None)      # the clock's id, as this platform numbers it
clock_gettime = types.ExternalFunction("clock_gettime", types.int32(types.int32, types.intp))


@njit(cache=True, error_model="numpy")
def all_finite(a) -> bool:
    """Whether every element of the array ``a`` (any layout, 0-d included) is finite."""
    for x in a.flat:
        if not np.isfinite(x):
            return False
    return True
