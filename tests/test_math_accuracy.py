"""Every math primitive on the CPU target, in ulps of the true result, over wide domains.

The CPU kernels call glibc's vector math (libmvec, ``jitgrad.backends.vector_math``) where
glibc has it, and its scalar math elsewhere; glibc documents 4 ulps for its vector functions.
Tolerance: 4 ulps for every function.  float32 results are measured against the float64
result (its error is far below a float32 ulp), so the bound is the kernel's own; float64
results against NumPy's (``target="numpy"``), whose own error is under an ulp here.

Measured, an AVX-512 machine: float32 at most 2.3 ulps from the truth (log), where NumPy's
own float32 log is 2.3 ulps off too, in the other direction; float64 at most 2 ulps from
NumPy (tanh, sigmoid).  ``JITGRAD_VECTOR_MATH=0`` turns libmvec off (tested at the end).
"""
import os
import subprocess
import sys

import numpy as np
import pytest

import jitgrad as jg

MAX_ULPS = 4
DOMAINS = {"exp": (-700, 700), "log": (1e-300, 1e300), "log1p": (-0.999, 1e300),
           "expm1": (-700, 700), "sqrt": (0, 1e300), "sin": (-1e4, 1e4), "cos": (-1e4, 1e4),
           "tan": (-1e4, 1e4), "tanh": (-30, 30), "sigmoid": (-700, 700), "erf": (-6, 6),
           "exp2": (-1000, 1000), "log2": (1e-300, 1e300), "log10": (1e-300, 1e300),
           "sinh": (-700, 700), "cosh": (-700, 700), "arcsin": (-1, 1), "arccos": (-1, 1),
           "arctan": (-1e4, 1e4), "arcsinh": (-1e300, 1e300), "arccosh": (1, 1e300),
           "arctanh": (-1, 1)}


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
    """The largest distance from ``want`` in ulps of ``got``'s dtype; both must agree on
    which results are finite."""
    with np.errstate(over="ignore"):        # a float64 truth beyond float32's range
        finite = np.isfinite(want.astype(got.dtype))
    np.testing.assert_array_equal(np.isfinite(got), finite)
    spacing = np.spacing(np.abs(want[finite]).astype(got.dtype)).astype(np.float64)
    return float(np.max(np.abs(got[finite].astype(np.float64) - want[finite]) / spacing))


def _compare(fn, dtype, *xs):
    ins = [jg.input(f"x{i}", (None,), dtype) for i in range(len(xs))]
    got, = jg.compile(ins, [fn(*ins)])(*xs)
    if np.dtype(dtype) == np.float32:       # the truth, to far below a float32 ulp
        wide = [jg.input(f"x{i}", (None,), "float64") for i in range(len(xs))]
        want, = jg.compile(wide, [fn(*wide)], target="numpy")(*(x.astype(np.float64) for x in xs))
    else:
        want, = jg.compile(ins, [fn(*ins)], target="numpy")(*xs)
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


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", ["arctan2", "hypot"])
def test_binary_math_within_4_ulps_of_the_reference(name, dtype):
    rng = np.random.default_rng(2)
    x, y = (rng.uniform(-1e3, 1e3, 40000).astype(dtype) for _ in range(2))
    assert _compare(getattr(jg, name), dtype, x, y) <= MAX_ULPS


def test_vector_math_can_be_turned_off():
    """``JITGRAD_VECTOR_MATH=0``: kernels call ``math`` and no kernel imports ``vmath``;
    the default calls ``vmath`` where this machine has libmvec."""
    script = ("import jitgrad as jg\n"
              "from jitgrad.backends import vector_abi\n"
              "x = jg.input('x', (None,))\n"
              "f = jg.compile([x], [jg.sum(jg.sin(x))], wait=True)\n"
              "print(vector_abi.available(), 'vmath.sin(' in f.source, 'math.sin(' in f.source)\n")
    for setting, expect in (("0", "False False True"), ("1", None)):
        env = dict(os.environ, JITGRAD_VECTOR_MATH=setting)
        out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                             check=True).stdout.split()
        if expect is not None:
            assert " ".join(out) == expect
        else:
            assert out[0] == out[1]         # vmath exactly where available
