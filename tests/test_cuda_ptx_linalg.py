"""Every kernel of jitgrad.backends.cuda_linalg compiles to PTX for sm_80 and sm_90, no GPU needed.

Compiling needs NVVM and libdevice: numba-cuda with NVIDIA's pip packages (nvidia-nvvm,
nvidia-cuda-nvrtc, nvidia-cuda-runtime) or a CUDA toolkit numba finds. Whether they are here
is decided once, by compiling a trivial kernel that calls a device function (tests/conftest.py):
only an error saying that a library is missing skips; any error compiling one of our kernels is a
failure. The simulator cannot compile PTX, so this file runs with it off (the normal suite).
"""
import re

import pytest
from conftest import skip_module_without_numba_cuda

skip_module_without_numba_cuda()           # only a missing package or library skips

from numba import cuda, types  # noqa: E402

from jitgrad.backends import cuda_linalg  # noqa: E402

CCS = [(8, 0), (9, 0)]


def test_kernels_lists_every_kernel_for_both_dtypes():
    names = [name for name, _, _ in cuda_linalg.KERNELS]
    assert len(names) == len(set(names))
    listed = {id(kernel) for _, kernel, _ in cuda_linalg.KERNELS}
    defined = [name for name in vars(cuda_linalg) if name.endswith("_kernel")]
    assert defined and all(id(getattr(cuda_linalg, name)) in listed for name in defined)
    for name, _, signatures in cuda_linalg.KERNELS:
        assert [sig[0].dtype for sig in signatures] == [types.float64, types.float32], name


# Each kernel for both architectures and in both dtypes, pairing float64 with sm_80 and float32
# with sm_90: what the architecture changes does not depend on the dtype, and each compilation
# takes one to three seconds (all four pairs: about a minute in all).
CASES = [pytest.param(name, kernel, sig, cc, id=f"{name}-{sig[0].dtype}-sm_{cc[0]}{cc[1]}")
         for name, kernel, signatures in cuda_linalg.KERNELS
         for sig, cc in zip(signatures, CCS)]
_F64 = re.compile(r"^\s*[a-z][\w.]*\.f64\b", re.MULTILINE)    # an instruction on doubles
_BLOCK_PER_MATRIX = {"lu_factor", "solve", "cholesky", "prepare", "jacobi", "hestenes", "qr"}


@pytest.mark.parametrize("name, kernel, sig, cc", CASES)
def test_kernel_compiles_to_ptx(ptx_toolkit, name, kernel, sig, cc):
    ptx, result = cuda.compile_ptx(kernel.py_func, sig, cc=cc)
    assert f".target sm_{cc[0]}{cc[1]}" in ptx
    assert result == types.void
    if sig[0].dtype == types.float32:    # constants typed as the data: no double arithmetic
        assert not _F64.search(ptx), _F64.search(ptx).group(0)
    if name in _BLOCK_PER_MATRIX:       # the threads of a block share one matrix
        assert "bar.sync" in ptx
