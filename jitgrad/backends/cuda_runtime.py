"""What every CUDA launcher shares: numba.cuda itself, whether it is Numba's simulator, the
launch sizes of each kind of kernel, and the device error codes.

Launch sizes.  Every kernel strides over its work (grid-stride loops; blocks over the
matrices of a batch), so any grid covers any size and a launch may ask for few threads.
On a GPU: 256-thread blocks for fused and library kernels, up to ``WAVES`` blocks per
multiprocessor (1024 blocks for fused kernels); block-per-matrix linalg kernels take warp
multiples up to ``MATRIX_THREADS``.  Under the simulator (``NUMBA_ENABLE_CUDASIM=1``, set
before numba is imported), whose cost grows with the number of simulated threads, the
``SIM_*`` sizes: a few blocks of a few threads.

Errors.  A kernel cannot raise on a GPU.  A kernel that can fail writes a code (below) into
an int32 device array (one per program, or per library call: ``error_flag``; or one per
matrix of a batched linalg call: ``error_per_matrix``); the host reads it back with
``raise_error``, which raises what the first code stands for.
"""
from __future__ import annotations

import functools

import numpy as np
from numpy.linalg import LinAlgError

WAVES = 32                  # blocks per multiprocessor a grid-stride launch asks for at most
FUSED_THREADS, FUSED_BLOCKS = 256, 1024
LIBRARY_THREADS = 256
MATRIX_THREADS = 128        # per block of a linalg kernel at most; also its shared arrays' size
LINALG_ITEM_THREADS = 128
SIM_FUSED, SIM_LIBRARY, SIM_LINALG = (2, 32), (4, 32), (2, 4)     # simulator: (blocks at most, threads)


def cuda_module():
    """numba.cuda, or a clear error naming what is missing."""
    try:
        from numba import config, cuda
    except ImportError as e:            # pragma: no cover - numba always has cuda
        raise RuntimeError(f"target 'cuda' needs numba.cuda: {e}") from e
    if not config.ENABLE_CUDASIM and not cuda.is_available():
        raise RuntimeError(
            "target 'cuda' needs an NVIDIA GPU with its driver and numba-cuda "
            "(pip install 'jitgrad[cuda]'); none is usable here. To run CUDA programs without "
            "a GPU, set NUMBA_ENABLE_CUDASIM=1 before numba is imported (Numba's simulator).")
    return cuda


def simulated() -> bool:
    from numba import config
    return bool(config.ENABLE_CUDASIM)


# -- launch sizes: (blocks, threads) --------------------------------------------------------

@functools.cache
def _device_blocks() -> int:
    from numba import cuda
    return WAVES * cuda.get_current_device().MULTIPROCESSOR_COUNT


def _grid(items: int, per_block: int, most: int) -> int:
    """Blocks for ``items`` work items, ``per_block`` per block, at most ``most``."""
    return max(1, min(-(-items // per_block), most))


def fused_kernel_threads() -> int:
    """Threads per block of a fused kernel (and the size of a block reduction's shared arrays)."""
    return SIM_FUSED[1] if simulated() else FUSED_THREADS


def fused_kernel_launch(work: int) -> tuple[int, int]:
    """A fused kernel (or its ``prepare``) striding over ``work`` positions."""
    most, threads = SIM_FUSED if simulated() else (FUSED_BLOCKS, FUSED_THREADS)
    return _grid(work, threads, most), threads


def library_launch(items: int) -> tuple[int, int]:
    """A library kernel (``cuda_library``) striding over ``items`` elements.

    >>> library_launch(10)   # doctest: +SKIP
    (1, 32)
    """
    most, threads = SIM_LIBRARY if simulated() else (_device_blocks(), LIBRARY_THREADS)
    return _grid(items, threads, most), threads


def tiled_matmul_launch(tiles: int, tile: int) -> tuple[int, tuple[int, int]]:
    """The tiled matmul: a block of ``tile`` x ``tile`` threads per output tile, blocks striding."""
    return _grid(tiles, 1, SIM_LIBRARY[0] if simulated() else _device_blocks()), (tile, tile)


def matrix_launch(batch: int, width: int) -> tuple[int, int]:
    """A linalg kernel with a block per matrix, whose steps have ``width`` parallel items."""
    if simulated():
        most, threads = SIM_LINALG[0], max(1, min(SIM_LINALG[1], width))
    else:
        most, threads = _device_blocks(), min(MATRIX_THREADS, 32 * max(1, -(-width // 32)))
    return _grid(batch, 1, most), threads


def linalg_item_launch(items: int) -> tuple[int, int]:
    """A linalg kernel with a thread per item (an eigenpair, a determinant), striding."""
    most, threads = SIM_LINALG if simulated() else (_device_blocks(), LINALG_ITEM_THREADS)
    return _grid(items, threads, most), threads


# -- device errors ----------------------------------------------------------------------------

OK = 0
INDEX_OUT_OF_BOUNDS = 1     # cuda_scalars.wrap_index writes it as a literal: the disk cache
SINGULAR = 2                # hashes that file's own text, not this one's
NOT_POSITIVE_DEFINITE = 3
EIGH_NOT_CONVERGED = 4
SVD_NOT_CONVERGED = 5

_RAISES = {
    INDEX_OUT_OF_BOUNDS: (IndexError, "index out of bounds in take/gather/scatter"),
    SINGULAR: (LinAlgError, "Singular matrix"),
    NOT_POSITIVE_DEFINITE: (LinAlgError, "Matrix is not positive definite"),
    EIGH_NOT_CONVERGED: (LinAlgError, "Eigenvalues did not converge"),
    SVD_NOT_CONVERGED: (LinAlgError, "SVD did not converge"),
}


def error_flag():
    """One error code, ``OK``: for kernels that write a code only where something fails."""
    from numba import cuda
    return cuda.to_device(np.zeros(1, np.int32))


def error_per_matrix(batch: int):
    """An error code per matrix of a batched call, unset: its kernel writes every one (``OK``
    or what failed), so no zeros need copying to the device first."""
    from numba import cuda
    return cuda.device_array(batch, np.int32)


def raise_error(codes) -> None:
    """Read the device array ``codes`` back; if any is set, reset them to ``OK`` and raise what
    the first stands for."""
    host = codes.copy_to_host()
    failed = host[host != OK]
    if failed.size:
        codes.copy_to_device(np.zeros_like(host))
        kind, message = _RAISES[int(failed[0])]
        raise kind(message)
