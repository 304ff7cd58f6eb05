"""Every kernel of jitgrad.backends.cuda_library compiles to PTX for sm_80 and sm_90.

No GPU is needed, only the CUDA toolkit's NVVM and libdevice (or numba-cuda with NVIDIA's
pip packages). The tests skip when those are missing, and only then: any other error in
compiling a kernel is a failure. The simulator cannot compile PTX, so this file runs
with it off (the normal suite).
"""
import pytest
from conftest import skip_module_without_numba_cuda

skip_module_without_numba_cuda()           # only a missing package or library skips

from numba import cuda, types  # noqa: E402

from jitgrad.backends import cuda_library  # noqa: E402

CCS = [(8, 0), (9, 0)]

def test_kernels_lists_every_kernel_with_signatures():
    names = [name for name, _, _ in cuda_library.KERNELS]
    assert len(names) == len(set(names))
    assert {"fill", "copy_strided", "unslice", "scatter_add"} <= set(names)
    assert {"matmul_rows", "matmul_float64", "matmul_float32", "matmul_int64"} <= set(names)
    assert all(sigs for _, _, sigs in cuda_library.KERNELS)


@pytest.mark.parametrize("cc", CCS, ids=lambda cc: f"sm_{cc[0]}{cc[1]}")
@pytest.mark.parametrize("name, kernel, signatures", cuda_library.KERNELS,
                         ids=[name for name, _, _ in cuda_library.KERNELS])
def test_kernel_compiles_to_ptx(ptx_toolkit, name, kernel, signatures, cc):
    """Every signature for sm_80; the first only for sm_90 (the dtype does not change what
    depends on the architecture, and each compilation takes most of a second)."""
    for sig in signatures if cc == CCS[0] else signatures[:1]:
        ptx, result = cuda.compile_ptx(kernel.py_func, sig, cc=cc)
        assert f".target sm_{cc[0]}{cc[1]}" in ptx
        assert result == types.void
        if name.startswith("matmul") and name != "matmul_rows":
            assert ".shared" in ptx and "bar.sync" in ptx      # tiles staged in shared memory
        if name == "scatter_add":
            assert "atom.global" in ptx or "red.global" in ptx
