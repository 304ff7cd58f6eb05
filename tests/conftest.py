"""Shared fixtures."""
import pytest


def _probe(a):
    a[0] = 1.0


@pytest.fixture(scope="session")
def ptx_toolkit():
    """Skip unless a trivial kernel compiles to PTX here (numba-cuda with NVIDIA's NVVM, no
    GPU needed); any other compile error in a test is a failure."""
    from numba import cuda, types
    from numba.cuda.cudadrv import error as cuda_errors
    missing = tuple(getattr(cuda_errors, name) for name in
                    ("NvvmSupportError", "NvrtcSupportError", "CudaSupportError") if hasattr(cuda_errors, name))
    try:
        cuda.compile_ptx(_probe, (types.float64[::1],), cc=(8, 0))
    except missing as e:
        pytest.skip(f"numba.cuda.compile_ptx cannot run: {type(e).__name__}: {str(e).splitlines()[0]}")
    except RuntimeError as e:
        if "libdevice" not in str(e):
            raise
        pytest.skip(f"numba.cuda.compile_ptx cannot run: {str(e).splitlines()[0]}")
