"""Shared fixtures, and the probe that decides whether the PTX tests can run here."""
import functools
import os

import pytest

# The suite tests each target itself: compiled functions run compiled from their first call
# (tests/test_tiered.py asks for tiered execution with wait=False). Set before any compile, and
# inherited by the subprocesses tests start (examples, mpiexec).
os.environ["JITGRAD_TIERED"] = "0"

# What a missing NVVM, NVRTC, libdevice or CUDA driver library raises. numba's own numba.cuda
# raises NvvmSupportError, CudaSupportError & co. (ImportError subclasses); numba-cuda finds
# the libraries with cuda.pathfinder, whose errors are RuntimeErrors.
_MISSING_LIBRARY = {"NvvmSupportError", "NvrtcSupportError", "CudaSupportError", "DynamicLibNotFoundError",
                    "DynamicLibNotAvailableError", "BitcodeLibNotFoundError"}
INSTALL = 'python -m pip install -e ".[dev]" brings numba-cuda with NVIDIA\'s NVVM and NVRTC wheels'


def _is_missing_library(error: BaseException) -> bool:
    return (isinstance(error, ImportError) or type(error).__name__ in _MISSING_LIBRARY
            or "libdevice" in str(error))      # "Missing libdevice file." (both numba.cuda flavours)


def _reason(what: str, error: BaseException) -> str:
    message = " ".join(str(error).split())
    message = message if len(message) <= 120 else message[:117] + "..."
    return f"{what}: {type(error).__name__}: {message} ({INSTALL})"


@functools.cache
def numba_cuda_missing():
    """Why ``numba.cuda`` cannot be imported here (None if it can): only a missing package or
    library is a reason; any other error importing it is raised."""
    try:
        from numba import cuda  # noqa: F401
    except Exception as error:
        if _is_missing_library(error):
            return _reason("numba.cuda cannot be imported", error)
        raise
    return None


def skip_module_without_numba_cuda():
    """For a PTX test module: skip it under the simulator (which cannot compile PTX) or where
    numba.cuda is missing; any other error importing numba.cuda fails the module."""
    import numba
    if numba.config.ENABLE_CUDASIM:
        pytest.skip("PTX compilation cannot run under the CUDA simulator (NUMBA_ENABLE_CUDASIM=1)",
                    allow_module_level=True)
    if numba_cuda_missing():
        pytest.skip(numba_cuda_missing(), allow_module_level=True)


def _probe_device(x):
    return x + 1.0


def _probe_kernel(a):
    a[0] = _probe_device_jit(a[0])


_probe_device_jit = None


@functools.cache
def ptx_unavailable():
    """Why a kernel calling a device function cannot be compiled to PTX here (None if it can).

    What the PTX tests need, probed by doing it: the libraries (NVVM, libdevice) and a compiler
    that needs no GPU for a kernel calling an inlined device function, as jitgrad's kernels do
    (jitgrad/backends/cuda_scalars.py). Numba's built-in numba.cuda finds a system NVVM and
    compiles a lone kernel, but asks the driver for the current device as soon as a kernel
    calls a device function (CudaSupportError without a driver); numba-cuda does not when the
    call is inlined. Only such a missing library is a reason to skip; any other error is
    raised, so the tests fail."""
    global _probe_device_jit
    missing = numba_cuda_missing()
    if missing:
        return missing
    from numba import cuda, types
    try:
        _probe_device_jit = cuda.jit(device=True, inline="always")(_probe_device)
        cuda.compile_ptx(_probe_kernel, (types.float64[::1],), cc=(8, 0))
    except Exception as error:
        if _is_missing_library(error):
            return _reason("a kernel calling a device function cannot be compiled to PTX here", error)
        raise
    return None


@pytest.fixture(scope="session")
def ptx_toolkit():
    """Skip unless a kernel calling a device function compiles to PTX here (no GPU needed)."""
    reason = ptx_unavailable()
    if reason:
        pytest.skip(reason)
