"""What ``debug_nans`` and ``f.profile`` add on the CUDA target (see ``jitgrad.debug``).

NaN checks: after each step of a ``debug_nans`` program, :func:`check_finite` launches a kernel
over each float value the step wrote; the first value holding NaN/inf writes its check's number
(plus one) into one int32 device flag, which later launches leave alone (launches on a stream
run in order, so the first failing check wins; threads of one launch write the same number).
The host reads the flag back once per call. Under the simulator, kernels run Python's ``math``,
which raises where a GPU returns NaN or inf (``log(0)``, ``sqrt(-1)``, ``exp(1000)``): with
``debug_nans`` such an error sets the flag for the step that raised (``simulated_math_error``).

Timing: :class:`StepTimer` brackets each step with CUDA events; the simulator, whose events
measure nothing, with the host clock (it runs every launch synchronously).
"""
from __future__ import annotations

import math
import time

import numpy as np
from numba import cuda

from .cuda_runtime import library_launch, simulated


@cuda.jit
def _check_finite(x, flag, code):
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        if not math.isfinite(x[i]) and flag[0] == 0:
            flag[0] = code


def check_finite(array, flag, code: int) -> None:
    """flag[0] = code if ``array`` (a C-contiguous float device array) holds NaN/inf and the
    flag is still 0."""
    if array.size:
        flat = array.reshape(array.size)
        blocks, threads = library_launch(flat.size)
        _check_finite[blocks, threads](flat, flag, code)


def simulated_math_error(error: BaseException) -> bool:
    """Whether ``error``, raised by a kernel launch, is the simulator's stand-in for a NaN or inf
    (Python's math raising where the device computes one)."""
    if not simulated():
        return False
    if isinstance(error, (ZeroDivisionError, OverflowError)):
        return True
    return isinstance(error, ValueError) and "math domain error" in str(error)


def flag_step(flag, code: int) -> None:
    """flag[0] = code, from the host, unless an earlier check has set it."""
    if not flag.copy_to_host()[0]:
        flag.copy_to_device(np.full(1, code, np.int32))


class StepTimer:
    """Times of the steps of the calls being profiled: ``wrap(k, run)`` times step ``k``;
    ``seconds(n)`` sums them per step, waiting for the device first."""

    def __init__(self):
        self.host = simulated()
        self.marks: list = []           # (step, start, end): events, or host times

    def wrap(self, k: int, run):
        def timed(program, env, sizes):
            if self.host:
                start = time.perf_counter()
                run(program, env, sizes)
                self.marks.append((k, start, time.perf_counter()))
                return
            start, end = cuda.event(), cuda.event()
            start.record()
            run(program, env, sizes)
            end.record()
            self.marks.append((k, start, end))
        return timed

    def seconds(self, n_steps: int) -> list[float]:
        totals = [0.0] * n_steps
        if not self.host:
            cuda.synchronize()
        for k, start, end in self.marks:
            totals[k] += end - start if self.host else start.elapsed_time(end) / 1e3    # events: ms
        return totals
