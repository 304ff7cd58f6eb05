"""Which of glibc's vector math functions (libmvec) this machine's CPU kernels may call.

What code generation asks (``available``, ``has``, ``NAMES``), answered without importing
Numba, so that a tiered compile generates its source before Numba is loaded; the Numba
intrinsics that make the calls are in ``vector_math``.  ``available()`` is false off Linux,
without AVX2, when ``JITGRAD_VECTOR_MATH=0``, or when Numba compiles for a CPU other than this
one (``NUMBA_CPU_NAME``, ``NUMBA_CPU_FEATURES``).
"""
from __future__ import annotations

import ctypes
import os
import sys

import numpy as np
from llvmlite import binding as llvm

LIBRARY = "libmvec.so.1"

# glibc's vector-ABI prefixes, narrowest first: AVX2 (d) and AVX-512 (e), and how many
# float64 lanes each holds (float32: twice as many).
_ISAS = (("_ZGVd", "avx2", 4), ("_ZGVe", "avx512f", 8))

_UNARY = ("sin", "cos", "tan", "exp", "exp2", "expm1", "log", "log2", "log10", "log1p",
          "sinh", "cosh", "tanh", "asin", "acos", "atan", "asinh", "acosh", "atanh", "erf", "cbrt")
_BINARY = ("atan2", "hypot", "pow")


def _enabled_by_environment() -> bool:
    return os.environ.get("JITGRAD_VECTOR_MATH", "1").strip().lower() not in ("0", "false", "no", "off")


def _host_isas() -> list[tuple[str, int]]:
    """The vector ISAs this process's kernels may use: ``(prefix, float64 lanes)``."""
    if sys.platform != "linux" or os.environ.get("NUMBA_CPU_NAME") or os.environ.get("NUMBA_CPU_FEATURES"):
        return []       # Numba compiles for another CPU (a portable cache): no host features
    try:
        features = llvm.get_host_cpu_features()
    except RuntimeError:
        return []
    return [(prefix, lanes) for prefix, feature, lanes in _ISAS if features.get(feature)]


def _load() -> tuple[dict, dict]:
    """``{dtype: {name: [(vector symbol, lanes), ...]}}`` for the functions libmvec has here,
    and each function's number of arguments; both empty where libmvec cannot be used."""
    isas = _host_isas() if _enabled_by_environment() else []
    if not isas:
        return {}, {}
    try:
        library = ctypes.CDLL(LIBRARY)
    except OSError:
        return {}, {}
    llvm.load_library_permanently(LIBRARY)   # the JIT resolves the variants' symbols
    variants = {np.dtype(np.float64): {}, np.dtype(np.float32): {}}
    for name in _UNARY + _BINARY:
        args = "vv" if name in _BINARY else "v"
        for dtype, suffix, widen in ((np.dtype(np.float64), "", 1), (np.dtype(np.float32), "f", 2)):
            found = [(f"{prefix}N{lanes * widen}{args}_{name}{suffix}", lanes * widen)
                     for prefix, lanes in isas]
            found = [(symbol, lanes) for symbol, lanes in found if hasattr(library, symbol)]
            if found:
                variants[dtype][name] = found
    return variants, {name: 2 if name in _BINARY else 1 for name in _UNARY + _BINARY}


VARIANTS, ARITY = _load()


def available() -> bool:
    """Whether kernels use vector math in this process."""
    return bool(VARIANTS and VARIANTS[np.dtype(np.float64)])


def has(name: str) -> bool:
    """Whether ``vmath.<name>`` exists here: ``name`` as in Python's ``math``, or ``sigmoid``
    (the helper of ``jitgrad.backends.scalars``)."""
    return available() and name in NAMES


NAMES = frozenset(name for name in ARITY if name in VARIANTS.get(np.dtype(np.float64), {})) | (
    {"sigmoid"} if "exp" in ARITY else set())
"""What kernels may call as ``vmath.<name>`` (each also takes float32)."""
