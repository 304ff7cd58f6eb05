"""Every math primitive on the CPU target against the ``numpy`` reference, in ulps of the
reference result, over wide domains.

Tolerance: 4 ulps for every function, float64 and float32 (glibc's documented bound for its
vector math, should kernels ever use it). Measured (scalar glibc against NumPy's SIMD math, an
AVX-512 machine): at most 2 ulps in float64 (tanh, sigmoid), 3 in float32 (log, tan, tanh,
sigmoid). Where results differ, neither side is correctly rounded.
"""
import numpy as np
import pytest

import jitgrad as jg

MAX_ULPS = 4
DOMAINS = {"exp": (-700, 700), "log": (1e-300, 1e300), "log1p": (-0.999, 1e300),
           "expm1": (-700, 700), "sqrt": (0, 1e300), "sin": (-1e4, 1e4), "cos": (-1e4, 1e4),
           "tan": (-1e4, 1e4), "tanh": (-30, 30), "sigmoid": (-700, 700), "erf": (-6, 6)}


def _samples(lo, hi, dtype):
    """A linear sweep of the domain, dense values near 0, and a geometric sweep if positive."""
    big = float(np.finfo(dtype).max)
    lo, hi = max(lo, -big), min(hi, big)
    parts = [np.linspace(lo, hi, 20001), np.random.default_rng(0).uniform(-5, 5, 20000)]
    if lo > 0 or hi > 1e30:
        parts.append(np.geomspace(max(lo, float(np.finfo(dtype).tiny)), hi, 20001))
    xs = np.concatenate(parts).astype(dtype)
    return xs[(xs > lo) | (xs == lo)]


def _max_ulps(got, want):
    finite = np.isfinite(want)
    np.testing.assert_array_equal(np.isfinite(got), finite)
    spacing = np.spacing(np.abs(want[finite])).astype(np.float64)
    return float(np.max(np.abs(got[finite].astype(np.float64) - want[finite]) / spacing))


def _compare(fn, dtype, *xs):
    ins = [jg.input(f"x{i}", (None,), dtype) for i in range(len(xs))]
    y = fn(*ins)
    got, = jg.compile(ins, [y])(*xs)
    want, = jg.compile(ins, [y], target="numpy")(*xs)
    return _max_ulps(got, want)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", sorted(DOMAINS))
def test_unary_math_within_4_ulps_of_the_reference(name, dtype):
    ulps = _compare(getattr(jg, name), dtype, _samples(*DOMAINS[name], dtype))
    assert ulps <= MAX_ULPS, (name, dtype, ulps)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_power_within_4_ulps_of_the_reference(dtype):
    rng = np.random.default_rng(1)
    x, y = rng.uniform(1e-3, 1e3, 40000).astype(dtype), rng.uniform(-30, 30, 40000).astype(dtype)
    assert _compare(jg.power, dtype, x, y) <= MAX_ULPS
