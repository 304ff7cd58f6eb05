"""Shared fixtures."""
import pytest


def _missing_library_errors() -> tuple:
    """What compile_ptx raises when NVVM, NVRTC or the CUDA libraries are missing: numba's own
    numba.cuda raises NvvmSupportError & co. (ImportError subclasses); numba-cuda finds them
    with cuda.pathfinder, whose DynamicLibNotFoundError is a RuntimeError."""
    from numba.cuda.cudadrv import error as cuda_errors
    errors = [getattr(cuda_errors, name) for name in ("NvvmSupportError", "NvrtcSupportError", "CudaSupportError")
              if hasattr(cuda_errors, name)]
    try:
        import cuda.pathfinder as pathfinder
    except ImportError:
        pass
    else:
        errors += [getattr(pathfinder, name) for name in
                   ("DynamicLibNotFoundError", "DynamicLibNotAvailableError", "BitcodeLibNotFoundError")
                   if hasattr(pathfinder, name)]
    return tuple(errors)


def _probe(a):
    a[0] = 1.0


@pytest.fixture(scope="session")
def ptx_toolkit():
    """Skip unless a trivial kernel compiles to PTX here (numba-cuda with NVIDIA's NVVM, no GPU
    needed). Only a missing library skips; any error compiling our own kernels is a failure."""
    try:
        from numba import cuda, types
        cuda.compile_ptx(_probe, (types.float64[::1],), cc=(8, 0))
    except (ImportError, *_missing_library_errors()) as e:
        pytest.skip(f"numba.cuda.compile_ptx cannot run: {type(e).__name__}: {str(e).splitlines()[0]}")
    except RuntimeError as e:           # "Missing libdevice file." (both numba.cuda flavours)
        if "libdevice" not in str(e):
            raise
        pytest.skip(f"numba.cuda.compile_ptx cannot run: {str(e).splitlines()[0]}")
