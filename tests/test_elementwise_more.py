"""The elementwise functions of jitgrad/ops/mathfuncs.py (and the ones composed in
jitgrad/functions.py) against NumPy at edge values, on the reference and the CPU targets:
signed zeros, infinities, NaN, halves, negative divisors, every integer dtype, booleans,
float32; their dtype rules, errors, broadcasting and 0-d operands; their derivatives where
they are special (origins, kinks, untaken branches); the jg.nn activations against PyTorch's
definitions.  The primitive table (jitgrad.testing.MATH_CASES) checks values and derivatives
inside the smooth domains; here, one graph per dtype and target keeps compiling cheap.
"""
from __future__ import annotations

import warnings

import numba
import numpy as np
import pytest

import jitgrad as jg

TARGETS = ["numpy", "cpu"]
HALVES = [0.5, 1.5, 2.5, 3.5, 0.25, 0.75, 1e-20, 0.49999999999999994, 4503599627370495.5, 2.0 ** 53, 1e300, 7.0]
EDGES = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, 2.0, 0.999, 1.001]
                 + HALVES + [-h for h in HALVES])


def assert_identical(got, want, what=""):
    """Same dtype and shape; equal values, NaN where NaN, and the sign of every zero."""
    got, want = np.asarray(got), np.asarray(want)
    assert (got.dtype, got.shape) == (want.dtype, want.shape), \
        f"{what}: {got.dtype}{got.shape} vs {want.dtype}{want.shape}"
    if want.dtype.kind == "f":
        nan = np.isnan(want)
        np.testing.assert_array_equal(np.isnan(got), nan, err_msg=what)
        np.testing.assert_array_equal(got[~nan], want[~nan], err_msg=what)
        np.testing.assert_array_equal(np.signbit(got[~nan]), np.signbit(want[~nan]), err_msg=f"{what}: signs")
    else:
        np.testing.assert_array_equal(got, want, err_msg=what)


def assert_ulps(got, want, what="", ulps=4):
    """As assert_identical, but finite nonzero values within ``ulps`` units in the last place
    (libm's functions and NumPy's own may differ by such rounding)."""
    got, want = np.asarray(got), np.asarray(want)
    assert (got.dtype, got.shape) == (want.dtype, want.shape), what
    exact = ~np.isfinite(want) | (want == 0)
    assert_identical(np.where(exact, got, 0), np.where(exact, want, 0), what)
    spacing = np.spacing(np.abs(want[~exact])).astype(np.float64)
    error = np.abs(got[~exact].astype(np.float64) - want[~exact]) / spacing
    assert error.size == 0 or error.max() <= ulps, f"{what}: {error.max()} ulps"


def run(fns, args, target, dtypes=None):
    """Compile one graph with an output per function of ``fns`` and run it on ``args``."""
    xs = [jg.input(f"x{i}", np.shape(a), (dtypes or [np.asarray(a).dtype] * len(args))[i])
          for i, a in enumerate(args)]
    outputs = [fn(*xs) for fn in fns]
    return jg.compile(xs, outputs, target=target)(*args)


def numpy(fn, *args):
    with np.errstate(all="ignore"):
        return fn(*args)


# -- floats: unary ---------------------------------------------------------------------------------

TRANSCENDENTAL = {"arcsin": np.arcsin, "arccos": np.arccos, "arctan": np.arctan, "sinh": np.sinh,
                  "cosh": np.cosh, "arcsinh": np.arcsinh, "arccosh": np.arccosh, "arctanh": np.arctanh,
                  "log2": np.log2, "log10": np.log10, "exp2": np.exp2}
EXACT = {"floor": np.floor, "ceil": np.ceil, "trunc": np.trunc, "rint": np.rint, "reciprocal": np.reciprocal,
         "isnan": np.isnan, "isinf": np.isinf, "isfinite": np.isfinite, "logical_not": np.logical_not,
         "round": np.round}
ROUNDINGS = [1, 2, -1, -2, 10, 25]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("target", TARGETS)
def test_unary_functions_at_edge_values(target, dtype):
    x = numpy(EDGES.astype, dtype)          # float32: 1e300 becomes inf
    fns = ([getattr(jg, n) for n in TRANSCENDENTAL] + [getattr(jg, n) for n in EXACT]
           + [lambda x, d=d: jg.round(x, d) for d in ROUNDINGS])
    got = run(fns, [x], target)
    wants = ([numpy(f, x) for f in TRANSCENDENTAL.values()] + [numpy(f, x) for f in EXACT.values()]
             + [numpy(np.round, x, d) for d in ROUNDINGS])
    names = list(TRANSCENDENTAL) + list(EXACT) + [f"round({d})" for d in ROUNDINGS]
    for name, g, w in zip(names, got, wants):
        (assert_ulps if name in TRANSCENDENTAL else assert_identical)(g, w, f"{name} on {target}, {dtype}")


# -- floats: binary --------------------------------------------------------------------------------

BINARY = {"mod": np.remainder, "fmod": np.fmod, "floor_divide": np.floor_divide, "copysign": np.copysign,
          "logaddexp": np.logaddexp, "hypot": np.hypot, "arctan2": np.arctan2,
          "logical_and": np.logical_and, "logical_or": np.logical_or, "logical_xor": np.logical_xor}
DIVISORS = np.array([0.0, -0.0, 2.0, -2.0, 0.3, -0.3, 1.0, -1.0, 1e-300, np.inf, -np.inf, np.nan, 7.0])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("target", TARGETS)
def test_binary_functions_on_a_grid_of_edge_values(target, dtype):
    a, b = (numpy(v.ravel().astype, dtype) for v in np.meshgrid(EDGES, DIVISORS))
    got = run([getattr(jg, n) for n in BINARY], [a, b], target)
    for (name, f), g in zip(BINARY.items(), got):
        check = assert_ulps if name in ("logaddexp", "hypot", "arctan2") else assert_identical
        check(g, numpy(f, a, b), f"{name} on {target}, {dtype}")


def test_remainder_is_mod_and_functions_take_python_numbers():
    assert jg.remainder is jg.mod and jg.bitwise_not is jg.invert
    x = jg.input("x", (4,))
    f = jg.compile([x], [jg.mod(x, -3), jg.fmod(7, x), jg.floor_divide(-7.5, x), jg.arctan2(x, 1),
                         jg.hypot(3.0, 4.0), jg.logaddexp(x, -np.inf)], target="numpy")
    v = np.array([-4.0, -1.5, 2.0, 5.5])
    wants = [np.mod(v, -3), np.fmod(7, v), np.floor_divide(-7.5, v), np.arctan2(v, 1), np.hypot(3.0, 4.0),
             np.logaddexp(v, -np.inf)]
    for g, w in zip(f(v), wants):
        assert_identical(g, w)


# -- integers and booleans -------------------------------------------------------------------------

BINARY_INT = {"mod": np.remainder, "fmod": np.fmod, "floor_divide": np.floor_divide, "bitwise_and": np.bitwise_and,
              "bitwise_or": np.bitwise_or, "bitwise_xor": np.bitwise_xor, "left_shift": np.left_shift,
              "right_shift": np.right_shift, "logical_and": np.logical_and, "logical_xor": np.logical_xor}
UNARY_INT = {"invert": np.invert, "floor": np.floor, "ceil": np.ceil, "trunc": np.trunc, "round": np.round,
             "round(-1)": lambda s: np.round(s, -1), "isnan": np.isnan, "isinf": np.isinf, "isfinite": np.isfinite,
             "logical_not": np.logical_not, "exp2": lambda s: np.exp2(s.astype(np.float64)),   # NumPy: float16 for int8
             "reciprocal": lambda s: np.where(s == 0, 0, np.reciprocal(np.where(s == 0, 1, s)))}  # 1/0: see below


def _unary_int(name):
    return (lambda a, b, s: jg.round(s, -1)) if name == "round(-1)" else (lambda a, b, s: getattr(jg, name)(s))


def _int_operands(dtype):
    """Every pair of edge values of ``dtype`` (extremes, 0, ±1, small values, shift counts past the
    width), and values a tenth of theirs, for rounding to tens in float64 without overflow."""
    info = np.iinfo(dtype)
    values = [info.min, info.max, 0, 1, 7, 8, 13, 63, 64, 100] + ([-1, -7, -8, -13, -64, -100] if info.min else [])
    values = np.array(sorted({v for v in values if info.min <= v <= info.max}), dtype)
    a, b = (v.ravel() for v in np.meshgrid(values, values))
    return a, b, (b // 10).astype(dtype)


@pytest.mark.parametrize("target, dtype", [("numpy", d) for d in ["int8", "uint8", "int16", "uint16", "int32",
                                                                   "uint32", "int64", "uint64"]]
                         + [("cpu", d) for d in ["int8", "uint16", "int64", "uint64"]])
def test_integer_functions_match_numpy(target, dtype):
    """Integer reciprocal of 0 is 0 here (NumPy's is whatever the platform's 1/0 gives)."""
    a, b, s = _int_operands(dtype)
    fns = [lambda a, b, s, n=n: getattr(jg, n)(a, b) for n in BINARY_INT] + [_unary_int(n) for n in UNARY_INT]
    got = run(fns, [a, b, s], target)
    wants = [numpy(f, a, b) for f in BINARY_INT.values()] + [numpy(f, s) for f in UNARY_INT.values()]
    for name, g, w in zip(list(BINARY_INT) + list(UNARY_INT), got, wants):
        assert_identical(g, w, f"{name} on {target}, {dtype}")


def test_integer_floor_and_friends_return_their_operand():
    x = jg.input("x", (3,), "int16")
    assert jg.floor(x) is x and jg.ceil(x) is x and jg.trunc(x) is x and jg.round(x, 2) is x
    b = jg.input("b", (3,), "bool")
    assert jg.floor(b) is b


@pytest.mark.parametrize("target", TARGETS)
def test_boolean_operands(target):
    p, q = (v.ravel() for v in np.meshgrid([False, True], [False, True]))
    fns = {"bitwise_and": np.bitwise_and, "bitwise_or": np.bitwise_or, "bitwise_xor": np.bitwise_xor,
           "logical_and": np.logical_and, "logical_or": np.logical_or, "logical_xor": np.logical_xor,
           "left_shift": np.left_shift, "right_shift": np.right_shift, "mod": np.remainder,
           "floor_divide": np.floor_divide, "fmod": np.fmod}
    unary = {"invert": np.invert, "logical_not": np.logical_not, "floor": np.floor, "isnan": np.isnan,
             "isfinite": np.isfinite, "reciprocal": np.reciprocal}
    got = run([getattr(jg, n) for n in fns] + [lambda x, y, n=n: getattr(jg, n)(x) for n in unary], [p, q], target)
    wants = [numpy(f, p, q) for f in fns.values()] + [numpy(f, p) for f in unary.values()]
    for name, g, w in zip(list(fns) + list(unary), got, wants):
        assert_identical(g, w, f"{name} of booleans on {target}")


def test_the_most_negative_integer_divided_by_minus_one_wraps_as_in_numpy():
    a, b = np.array([np.iinfo(np.int64).min, 7]), np.array([-1, -1])
    for target in TARGETS:
        got = run([jg.floor_divide, jg.mod, jg.fmod], [a, b], target)
        for g, f in zip(got, (np.floor_divide, np.remainder, np.fmod)):
            assert_identical(g, numpy(f, a, b), target)


# -- dtype rules, errors, broadcasting, 0-d -----------------------------------------------------

@pytest.mark.parametrize("name", ["arcsin", "sinh", "arccosh", "log2", "log10", "exp2", "rint", "reciprocal"])
@pytest.mark.parametrize("dtype", ["int32", "int64", "uint8", "bool", "float32", "float64"])
def test_float_functions_promote_integers_to_float64(name, dtype):
    """As NumPy for 32- and 64-bit integers; NumPy gives float16 for 8-bit ones and booleans
    (jitgrad has no float16).  reciprocal keeps integer dtypes, as NumPy's."""
    y = getattr(jg, name)(jg.input("x", (2,), dtype))
    if name == "reciprocal" and dtype not in ("float32", "float64"):
        assert y.dtype == np.reciprocal(np.ones(2, dtype)).dtype      # booleans: int8
    else:
        assert y.dtype == (np.float32 if dtype == "float32" else np.float64)


@pytest.mark.parametrize("pair", [("int8", "uint8"), ("int16", "int64"), ("uint32", "bool"), ("bool", "bool"),
                                  ("float32", "float32"), ("float32", "float64"), ("int32", "float32")])
def test_binary_dtypes_follow_numpy(pair):
    a, b = (jg.input(f"x{i}", (2,), d) for i, d in enumerate(pair))
    ones = [np.ones(2, d) for d in pair]
    for name in ("mod", "fmod", "floor_divide", "hypot", "arctan2", "copysign", "logaddexp", "logical_or"):
        want = getattr(np, name)(*ones).dtype
        assert getattr(jg, name)(a, b).dtype == (np.float64 if want == np.float16 else want), name
    if all(np.dtype(d).kind in "biu" for d in pair):
        for name in ("bitwise_and", "bitwise_or", "bitwise_xor", "left_shift", "right_shift"):
            assert getattr(jg, name)(a, b).dtype == getattr(np, name)(*ones).dtype, name


def test_weak_python_numbers_keep_the_tensor_dtype():
    x = jg.input("x", (2,), "int8")
    assert jg.mod(x, 3).dtype == jg.bitwise_and(x, 3).dtype == jg.left_shift(x, 2).dtype == np.int8
    f = jg.input("f", (2,), "float32")
    assert jg.round(f, 2).dtype == jg.mod(f, 2.5).dtype == jg.hypot(f, 1.0).dtype == jg.exp2(f).dtype == np.float32


@pytest.mark.parametrize("name", ["bitwise_and", "bitwise_or", "bitwise_xor", "left_shift", "right_shift", "invert"])
def test_bitwise_functions_reject_floats_naming_themselves(name):
    x = jg.input("x", (2,), "float64")
    n = jg.input("n", (2,), "int64")
    fn = getattr(jg, name)
    with pytest.raises(TypeError, match=name):
        fn(x) if name == "invert" else fn(x, n)
    with pytest.raises(TypeError):           # NumPy refuses them too
        getattr(np, name)(np.ones(2)) if name == "invert" else getattr(np, name)(np.ones(2), np.ones(2, int))


def test_other_errors():
    x = jg.input("x", (3,))
    with pytest.raises(TypeError, match="decimals"):
        jg.round(x, 1.5)
    with pytest.raises(ValueError, match="arctan2"):
        jg.arctan2(x, jg.input("y", (4,)))
    with pytest.raises(ValueError, match="alpha"):
        jg.nn.celu(x, 0.0)


@pytest.mark.parametrize("target", TARGETS)
def test_broadcasting_and_0d_operands(target):
    rng = np.random.default_rng(3)
    col, row, scalar = rng.uniform(-3, 3, (3, 1)), rng.uniform(0.5, 2, 4), np.array(1.25)
    fns = [lambda c, r, s: jg.arctan2(c, r), lambda c, r, s: jg.mod(c, r), lambda c, r, s: jg.hypot(c, r),
           lambda c, r, s: jg.logaddexp(s, c), lambda c, r, s: jg.fmod(s, r), lambda c, r, s: jg.copysign(s, c),
           lambda c, r, s: jg.floor(s) + jg.arcsinh(s), lambda c, r, s: jg.left_shift(jg.astype(s * 4, "int32"), 3)]
    got = run(fns, [col, row, scalar], target)
    wants = [np.arctan2(col, row), np.mod(col, row), np.hypot(col, row), np.logaddexp(scalar, col),
             np.fmod(scalar, row), np.copysign(scalar, col), np.floor(scalar) + np.arcsinh(scalar),
             np.left_shift((scalar * 4).astype(np.int32), 3)]
    for i, (g, w) in enumerate(zip(got, wants)):
        assert_ulps(g, np.asarray(w), f"output {i} on {target}")


def test_vmap_of_the_new_primitives():
    xs = jg.input("xs", (5, 3))
    y = jg.vmap(lambda x: jg.mod(x, 0.7) + jg.hypot(x, 2.0) + jg.floor(x))(xs)
    v = np.random.default_rng(4).uniform(-2, 2, (5, 3))
    assert_ulps(jg.compile([xs], y, target="numpy")(v), np.mod(v, 0.7) + np.hypot(v, 2.0) + np.floor(v))


# -- derivatives where they are special --------------------------------------------------------

def grads(fn, *args):
    xs = [jg.input(f"x{i}", np.shape(a)) for i, a in enumerate(args)]
    return jg.compile(xs, jg.grad(jg.sum(fn(*xs)), xs), target="numpy")(*args)


def test_derivatives_at_the_origin_are_zero_not_nan():
    zero = np.zeros(2)
    for fn in (jg.hypot, jg.arctan2):
        for g in grads(fn, zero, zero):
            np.testing.assert_array_equal(g, zero)


def test_copysign_derivative_is_the_sign_agreement():
    x1, x2 = np.array([-2.0, 2.0, -2.0, 2.0, 0.0, -0.0]), np.array([-1.0, -1.0, 1.0, 1.0, -3.0, -3.0])
    g1, g2 = grads(jg.copysign, x1, x2)
    assert_identical(g1, np.array([1.0, -1.0, -1.0, 1.0, -1.0, 1.0]))
    assert_identical(g2, np.zeros(6))


def test_remainder_derivatives():
    x1, x2 = np.array([7.5, -7.5, 7.5, -7.5]), np.array([2.0, 2.0, -2.0, -2.0])
    g1, g2 = grads(jg.mod, x1, x2)
    assert_identical(g1, np.ones(4))
    assert_identical(g2, -np.floor_divide(x1, x2))
    g1, g2 = grads(jg.fmod, x1, x2)
    assert_identical(g1, np.ones(4))
    assert_identical(g2, -np.trunc(x1 / x2))
    for fn in (jg.floor_divide, lambda a, b: jg.floor(a) + jg.ceil(b) + jg.round(a * b, 1) + jg.trunc(a)):
        for g in grads(fn, x1, x2):
            assert_identical(g, np.zeros(4))


def test_an_untaken_branch_leaks_no_nan():
    x = np.array([-5.0, 0.0, 0.5, 5.0])
    fns = [lambda x: jg.where(jg.abs(x) < 1, jg.arcsin(x) + jg.arccos(x) + jg.arctanh(x), 0.0),
           lambda x: jg.where(x > 1, jg.arccosh(x), 0.0),
           lambda x: jg.where(x > 0, jg.log2(x) + jg.log10(x), 0.0)]
    for fn in fns:
        (g,) = grads(fn, x)
        assert np.isfinite(g).all(), g


def test_third_order_derivatives_match_finite_differences():
    rng = np.random.default_rng(5)
    x, y = rng.uniform(-0.8, 0.8, 5), rng.uniform(0.5, 2, 5)
    jg.check_grads(lambda x, y: jg.arcsin(x) * jg.arctan2(x, y) + jg.hypot(x, y) * jg.logaddexp(x, y)
                   + jg.sinh(x) * jg.arccosh(y + 1) + jg.log2(y) * jg.mod(x, y), [x, y], order=3)


# -- activations --------------------------------------------------------------------------------

def _softplus(x):
    return np.logaddexp(0, x)


PYTORCH = {   # torch.nn.functional's definitions, in NumPy
    "selu": lambda x: 1.0507009873554804934193349852946 * np.where(
        x > 0, x, 1.6732632423543772848170429916717 * np.expm1(x)),
    "celu": lambda x: np.maximum(0, x) + np.minimum(0, 0.7 * np.expm1(x / 0.7)),
    "softsign": lambda x: x / (1 + np.abs(x)),
    "log_sigmoid": lambda x: -_softplus(-x),
    "hard_sigmoid": lambda x: np.clip(x + 3, 0, 6) / 6,
    "hard_swish": lambda x: x * np.clip(x + 3, 0, 6) / 6,
    "mish": lambda x: x * np.tanh(_softplus(x)),
    "relu6": lambda x: np.clip(x, 0, 6),
}


def _activation(name):
    return (lambda x: jg.nn.celu(x, 0.7)) if name == "celu" else getattr(jg.nn, name)


@pytest.mark.parametrize("target", TARGETS)
def test_activations_match_pytorch_definitions(target):
    x = np.array([-1000.0, -40.0, -7.0, -3.0, -2.9, -1.0, -0.0, 0.0, 0.3, 2.9, 3.0, 6.0, 6.5, 40.0, 1000.0])
    got = run([_activation(n) for n in PYTORCH], [x], target)
    for (name, ref), g in zip(PYTORCH.items(), got):
        np.testing.assert_allclose(g, numpy(ref, x), rtol=1e-14, atol=1e-300, err_msg=name)
        assert np.isfinite(g).all(), name


def test_activation_derivatives_at_kinks_and_far_out_are_pytorch_s():
    x = np.array([-1000.0, -3.0, 0.0, 3.0, 6.0, 1000.0])
    want = {"hard_sigmoid": [0, 0, 1 / 6, 0, 0, 0], "hard_swish": [0, -0.5, 0.5, 1.5, 1, 1],
            "relu6": [0, 0, 0, 1, 0, 0], "log_sigmoid": 1 / (1 + np.exp(np.minimum(x, 700))),
            "softsign": 1 / (1 + np.abs(x)) ** 2}
    for name, w in want.items():
        (g,) = grads(_activation(name), x)
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-300, err_msg=name)
    for name in ("selu", "celu", "mish"):
        (g,) = grads(_activation(name), x)
        assert np.isfinite(g).all(), name


# -- accuracy over wide domains, and PTX for the integer kernels ----------------------------------

DOMAINS = {"arcsin": (-1, 1), "arccos": (-1, 1), "arctan": (-1e6, 1e6), "sinh": (-700, 700), "cosh": (-700, 700),
           "arcsinh": (-1e300, 1e300), "arccosh": (1, 1e300), "arctanh": (-1, 1), "log2": (1e-300, 1e300),
           "log10": (1e-300, 1e300), "exp2": (-1000, 1000)}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_cpu_math_within_4_ulps_of_the_reference(dtype):
    """As tests/test_math_accuracy.py: libm's functions on the CPU target against NumPy's."""
    big = float(np.finfo(dtype).max)
    samples = []
    for lo, hi in DOMAINS.values():
        lo, hi = max(lo, -big), min(hi, big)
        parts = [np.linspace(lo, hi, 4001), np.random.default_rng(0).uniform(max(lo, -5), min(hi, 5), 4000)]
        if lo > 0:
            parts.append(np.geomspace(max(lo, float(np.finfo(dtype).tiny)), hi, 4001))
        samples.append(np.concatenate(parts).astype(dtype))
    xs = [jg.input(f"x{i}", (None,), dtype) for i in range(len(DOMAINS))]
    ys = [getattr(jg, name)(x) for name, x in zip(DOMAINS, xs)]
    got = jg.compile(xs, ys)(*samples)
    want = jg.compile(xs, ys, target="numpy")(*samples)
    for name, g, w in zip(DOMAINS, got, want):
        assert_ulps(g, w, f"{name}, {dtype}")


def test_integer_kernels_compile_to_ptx(ptx_toolkit):
    if numba.config.ENABLE_CUDASIM:
        pytest.skip("PTX compilation cannot run under the CUDA simulator")
    from numba import cuda

    from jitgrad.backends.cache import load_module
    from jitgrad.backends.cuda_kernels import PRELUDE, CudaKernelWriter
    from jitgrad.fusion import Kernel, fuse

    for dtype in ("uint8", "int32", "uint64", "bool"):
        a, b = jg.input("a", (None,), dtype), jg.input("b", (None,), dtype)
        outputs = [jg.mod(a, b), jg.floor_divide(a, b), jg.fmod(a, b), jg.bitwise_xor(a, b), jg.invert(a),
                   jg.left_shift(a, b), jg.right_shift(a, b), jg.logical_or(a, b), jg.reciprocal(a)]
        for step in fuse(jg.compile([a, b], outputs, target="numpy").schedule):
            if isinstance(step, Kernel):
                writer = CudaKernelWriter(step, {}, set(), threads=256)
                module = load_module(PRELUDE + "\n\n" + writer.source())
                for name, signature in writer.signatures().items():
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        ptx, _ = cuda.compile_ptx(getattr(module, name).py_func, signature, cc=(8, 0))
                    assert ".target sm_80" in ptx


def test_python_operators_follow_numpy():
    """``%``, ``//``, ``&``, ``|``, ``^``, ``<<``, ``>>`` and ``~`` on Tensors, either side."""
    x, y = jg.input("x", (4,), "int64"), jg.input("y", (4,))
    xs, ys = np.array([1, 2, 3, 4]), np.array([1.5, -2.0, 3.0, 0.7])
    got = jg.compile([x, y], [x % 3, 7 // x, x & 6, 5 | x, x ^ 1, x << 1, 8 >> x, ~x, y % 2.0, -7.5 // y,
                              ~(y > 0)], target="numpy")(xs, ys)
    want = [xs % 3, 7 // xs, xs & 6, 5 | xs, xs ^ 1, xs << 1, 8 >> xs, ~xs, ys % 2.0, -7.5 // ys, ~(ys > 0)]
    for g, w in zip(got, want):
        assert g.dtype == w.dtype
        np.testing.assert_array_equal(g, w)


def test_the_power_reference_rounds_the_same_whatever_the_layout():
    """NumPy's vectorized power differs by an ulp from its scalar loop on some values: the
    reference must not depend on whether the exponent arrives broadcast or materialized."""
    from jitgrad.ops.elementwise import pow_p
    base = np.random.default_rng(0).normal(size=1000) * 3
    broadcast = pow_p.ref(base, np.broadcast_to(2.0, base.shape))
    np.testing.assert_array_equal(broadcast, pow_p.ref(base, np.full(base.shape, 2.0)))
    assert np.asarray(pow_p.ref(np.array(1.5), np.array(2.0))).shape == ()        # 0-d stays 0-d
