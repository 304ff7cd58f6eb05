"""jitgrad.backends.cuda_runtime in the simulator: one error-code scheme for every kernel, and
the simulator's small launch sizes."""
import numba
import numpy as np
import pytest

if not numba.config.ENABLE_CUDASIM:
    pytest.skip("needs the CUDA simulator: set NUMBA_ENABLE_CUDASIM=1 before numba is imported",
                allow_module_level=True)

from numba import cuda  # noqa: E402

from jitgrad.backends import cuda_runtime as rt, cuda_scalars  # noqa: E402

RAISES = [(rt.INDEX_OUT_OF_BOUNDS, IndexError, "index out of bounds in take/gather/scatter"),
          (rt.SINGULAR, np.linalg.LinAlgError, "Singular matrix"),
          (rt.NOT_POSITIVE_DEFINITE, np.linalg.LinAlgError, "Matrix is not positive definite"),
          (rt.EIGH_NOT_CONVERGED, np.linalg.LinAlgError, "Eigenvalues did not converge"),
          (rt.SVD_NOT_CONVERGED, np.linalg.LinAlgError, "SVD did not converge")]


@pytest.mark.parametrize("code, kind, message", RAISES)
def test_a_code_raises_its_error_and_is_reset(code, kind, message):
    codes = cuda.to_device(np.array([rt.OK, code, rt.OK], np.int32))
    with pytest.raises(kind, match=f"^{message}$"):
        rt.raise_error(codes)
    assert not codes.copy_to_host().any()
    rt.raise_error(codes)       # reset: nothing to raise


def test_every_code_has_its_error():
    assert {code for code, _, _ in RAISES} == set(rt._RAISES)


def test_wrap_index_writes_the_index_code():
    """cuda_scalars writes the code as a literal (the disk cache hashes that file's text)."""
    error = np.zeros(1, np.int32)
    assert cuda_scalars.wrap_index(-1, 3, error) == 2 and error[0] == rt.OK
    assert cuda_scalars.wrap_index(3, 3, error) == 0 and error[0] == rt.INDEX_OUT_OF_BOUNDS


def test_launches_are_small_in_the_simulator():
    assert rt.fused_kernel_launch(10**6) == (2, 32) and rt.library_launch(10**6) == (4, 32)
    assert rt.matrix_launch(10, 100) == (2, 4) and rt.linalg_item_launch(10**6) == (2, 4)
    assert rt.tiled_matmul_launch(10**6, 16) == (4, (16, 16))
