"""Reductions over all axes on target="cuda" across several blocks, in Numba's CUDA simulator.

Such a reduction writes one partial per block and a second kernel (``finish``) combines them
(jitgrad/backends/cuda_kernels.py). The sizes here span several blocks and wrap the grid-stride
loop, and the extreme of a max/min is put in every block in turn: a ``finish`` that combined
only block 0's partial (``sum`` of 33 ones giving 32) fails here. Run as the rest of tests/cuda:
``NUMBA_ENABLE_CUDASIM=1 python -m pytest -q tests/cuda``.
"""
from __future__ import annotations

import numpy as np
import pytest
from numba import config

if not config.ENABLE_CUDASIM:
    pytest.skip("the CUDA tests run in the simulator: NUMBA_ENABLE_CUDASIM=1", allow_module_level=True)

import jitgrad as jg  # noqa: E402
from jitgrad.backends.cuda_runtime import fused_kernel_launch, fused_kernel_threads  # noqa: E402
from jitgrad.testing import call_unmutated  # noqa: E402

T = fused_kernel_threads()
SIZES = [1, T - 1, T, T + 1, 2 * T + 1, 3 * T + 1, 5 * T + 3]
REDUCTIONS = {"sum": (jg.sum, np.sum), "max": (jg.max, np.max), "min": (jg.min, np.min),
              "mean": (jg.mean, np.mean)}


def test_the_sizes_span_several_blocks_and_wrap_the_grid():
    blocks, threads = fused_kernel_launch(SIZES[-1])
    assert threads == T and blocks >= 2 and SIZES[-1] > blocks * threads


def _positions(n: int) -> list[int]:
    """Where to put the extreme: the first and last element of each block's first stride, and
    past the grid (the second round of the grid-stride loop), as far as `n` reaches."""
    blocks, threads = fused_kernel_launch(n)
    grid = blocks * threads
    found = {0, n - 1}
    for b in range(blocks):
        found |= {b * threads, (b + 1) * threads - 1, grid + b * threads}
    return sorted(p for p in found if p < n)


def _block_program(fn, x):
    f = jg.compile([x], fn(x), target="cuda")
    assert "partial0[cuda.blockIdx.x]" in f.source and "def finish(" in f.source   # the block strategy
    return lambda *args: call_unmutated(f, *args)


# Each simulated call costs a few tenths of a second: every reduction in float64, and each in
# one other dtype whose identity and combine differ (integers, float32 accumulation).
CASES = [("sum", "float64"), ("sum", "float32"), ("sum", "int64"), ("mean", "float64"),
         ("mean", "float32"), ("max", "float64"), ("max", "int64"), ("min", "float64"),
         ("min", "float32")]


@pytest.mark.parametrize("name, dtype", CASES, ids=[f"{n}-{d}" for n, d in CASES])
def test_a_full_reduction_combines_every_block(name, dtype):
    ours, numpys = REDUCTIONS[name]
    f = _block_program(ours, jg.input("x", (None,), dtype))
    rng = np.random.default_rng(0)
    for n in SIZES:
        if name in ("sum", "mean"):
            assert f(np.ones(n, dtype)) == (n if name == "sum" else 1), (name, n)
            x = rng.integers(-8, 9, n).astype(dtype)            # exact sums in every dtype
            np.testing.assert_allclose(f(x), numpys(x), rtol=1e-6 if dtype == "float32" else 1e-12)
            continue
        extreme = 100 if name == "max" else -100
        for p in _positions(n) if n == SIZES[-1] else [n - 1]:
            x = rng.integers(-8, 9, n).astype(dtype)
            x[p] = extreme
            assert f(x) == extreme, (name, n, p)
            assert f(x).dtype == np.dtype(dtype)


def test_two_reductions_of_one_kernel_combine_every_block():
    x = jg.input("x", (None, 7))
    f = jg.compile([x], [jg.sum(x), jg.max(x), jg.min(x * 2.0)], target="cuda")
    assert "partial2[cuda.blockIdx.x]" in f.source                # one kernel, three partials
    rng = np.random.default_rng(1)
    for rows in (1, 5, 14, 46):
        data = rng.integers(-8, 9, (rows, 7)).astype(float)
        data[-1, -1] = 50.0
        data[rows // 2, 3] = -50.0
        s, hi, lo = call_unmutated(f, data)
        assert (s, hi, lo) == (data.sum(), 50.0, -100.0), rows


def test_the_gradient_of_a_full_sum_over_several_blocks():
    x = jg.input("x", (None,))
    y = jg.sum(x * x)
    f = jg.compile([x], [y, *jg.grad(y, [x])], target="cuda")
    data = np.arange(3 * T + 1, dtype=float)
    value, grad = call_unmutated(f, data)
    assert value == np.sum(data * data)
    np.testing.assert_array_equal(grad, 2 * data)
