"""Kernels that call glibc's vector math (``jitgrad.backends.vector_math``).

A kernel whose loop both calls vector math and accumulates into a scalar is strip-mined
(``CpuKernelWriter``): blocks of ``STRIP`` elements, their reduction operands kept in small
buffers, then accumulated in order.  These tests cross block boundaries with every kind of
scalar accumulation (full and innermost-axis reductions, sum, max, min, prod), serial and
threaded, and check that a sum keeps the plain loop's order bit for bit.
"""
import numpy as np
import pytest

import jitgrad as jg
from jitgrad.backends import vector_abi
from jitgrad.backends.numba_cpu import PARALLEL_MIN_SIZE, STRIP
from jitgrad.testing import check_target

needs_vector_math = pytest.mark.skipif(not vector_abi.available(),
                                       reason="no libmvec (or no AVX2) on this machine")

REDUCTIONS = {"sum": jg.sum, "max": jg.max, "min": jg.min, "prod": lambda t, axis=None: jg.prod(
    1.0 + 0.001 * t, axis=axis), "mean": jg.mean}


@needs_vector_math
@pytest.mark.parametrize("reduce", sorted(REDUCTIONS))
def test_full_reductions_across_blocks(reduce):
    x = jg.input("x", (None,))
    y = REDUCTIONS[reduce](jg.sin(x) * jg.exp(-x * x / 8))
    rng = np.random.default_rng(0)
    for n in (1, 7, STRIP - 1, STRIP, STRIP + 1, 3 * STRIP + 5):
        check_target([x], [y], [rng.uniform(-4, 4, n)], "cpu")


@needs_vector_math
@pytest.mark.parametrize("axes", [(1,), (2,), (1, 2), (0,), (0, 2)])
@pytest.mark.parametrize("parallel", [False, True])
def test_partial_reductions_across_blocks(axes, parallel):
    x = jg.input("x", (None, None, None))
    t = jg.tanh(x) + jg.log1p(x * x)
    outputs = [jg.sum(t, axis=axes), jg.max(t, axis=axes), t]
    f, ref = jg.compile([x], outputs, parallel=parallel), jg.compile([x], outputs, target="numpy")
    rng = np.random.default_rng(1)
    for shape in [(2, 3, STRIP + 3), (3, 1, 2 * STRIP), (65, 2, STRIP + 1)]:
        xs = rng.normal(size=shape)
        for got, want in zip(f(xs), ref(xs)):
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@needs_vector_math
def test_threaded_full_reduction():
    x = jg.input("x", (None,))
    loss = jg.sum(jg.tanh(jg.sin(x) * jg.exp(-x * x / 2)) + 0.1 * x * x)
    n = PARALLEL_MIN_SIZE + 3 * STRIP + 17
    xs = np.random.default_rng(2).uniform(-3, 3, n)
    got = jg.compile([x], [loss, *jg.grad(loss, [x])], parallel=True)(xs)
    want = jg.compile([x], [loss, *jg.grad(loss, [x])], target="numpy")(xs)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-12)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-12, atol=1e-15)


@needs_vector_math
def test_strip_mined_sum_keeps_the_loop_order():
    """One kernel computes sin(x) and sum(x * x): the sum is the plain loop's, in order."""
    x = jg.input("x", (None,))
    f = jg.compile([x], [jg.sin(x), jg.sum(x * x)])
    assert "vmath.sin(" in f.source and f"for k0 in range((n0 + {STRIP - 1}) // {STRIP}):" in f.source
    rng = np.random.default_rng(3)
    n = 5 * STRIP + 11
    xs = rng.normal(size=n) * 10.0 ** rng.integers(-6, 7, n)     # the order of the sum matters
    _, total = f(xs)
    acc = 0.0
    for v in xs * xs:
        acc += v
    assert total == acc


@needs_vector_math
def test_float32_kernels_call_the_float32_variants():
    x = jg.input("x", (None,), "float32")
    f = jg.compile([x], [jg.exp(x), jg.sum(jg.cos(x))])
    xs = np.linspace(-5, 5, 2 * STRIP + 3, dtype=np.float32)
    y, s = f(xs)
    assert y.dtype == np.float32 and s.dtype == np.float32
    np.testing.assert_allclose(y, np.exp(xs), rtol=4 * np.finfo(np.float32).eps)
    np.testing.assert_allclose(s, np.sum(np.cos(xs.astype(np.float64))), rtol=1e-5)


def test_integer_power_keeps_integer_arithmetic():
    """Vector pow is for floats only: an integer power stays exact."""
    x = jg.input("x", (None,), "int64")
    y, = jg.compile([x], [x ** 3])(np.arange(-5, 6))
    np.testing.assert_array_equal(y, np.arange(-5, 6) ** 3)
    assert y.dtype == np.int64
