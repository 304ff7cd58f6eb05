"""The builder API: NumPy-like functions that add nodes to the graph.

These functions make broadcasting and dtype promotion explicit (``broadcast_to``
and ``convert`` nodes), so every primitive sees operands of one shape and one
dtype.  Derivative rules receive these functions, through
:class:`jitgrad.autodiff.Builder`, as their builder ``b``.
"""
from __future__ import annotations

import builtins
import math

import numpy as np

from .graph import Tensor, as_dtype, bind, constant
from .ops import elementwise as ew, linalg as la, mathfuncs as mf, reduce as rd, shape as sh
from .ops._shapes import fmt_shape, normalize_axes, normalize_axis, normalize_axis_tuple
from .primitive import Dim, Primitive

# -- operands, promotion, broadcasting ---------------------------------------

_PY_SCALARS = (bool, int, float)


def _is_weak(x) -> bool:
    """Python numbers adopt the dtype of the Tensors they meet (NumPy 2 promotion)."""
    return isinstance(x, _PY_SCALARS) and not isinstance(x, np.generic)


def as_tensor(x, dtype=None) -> Tensor:
    if isinstance(x, Tensor):
        return x if dtype is None or x.dtype == dtype else astype(x, dtype)
    return constant(x, dtype)


def _promote(name: str, operands, policy: str) -> np.dtype:
    parts = [x.dtype if isinstance(x, Tensor) else (x if _is_weak(x) else np.asarray(x).dtype)
             for x in operands]
    try:
        dt = np.result_type(*parts)
    except (TypeError, OverflowError) as e:
        raise TypeError(f"{name}: cannot combine operands of types {parts}: {e}") from e
    if policy == "float" and not np.issubdtype(dt, np.floating):
        dt = np.dtype(np.float64)
    if dt == np.float16:
        dt = np.dtype(np.float32)
    return as_dtype(dt, name)


def broadcast_dims(name: str, shapes) -> tuple:
    """NumPy broadcasting of shapes that may hold call-time sizes (Dims).

    A call-time size is never treated as 1: it must equal what it meets.
    """
    ndim = builtins.max(len(s) for s in shapes)
    result = []
    for axis in range(ndim):
        sizes = [s[len(s) - ndim + axis] for s in shapes if len(s) - ndim + axis >= 0]
        static = {d for d in sizes if not isinstance(d, Dim) and d != 1}
        if len(static) > 1:
            listed = " ".join(fmt_shape(s) for s in shapes)
            raise ValueError(f"{name}: operands could not be broadcast together with shapes {listed}")
        dims = [d for d in sizes if isinstance(d, Dim)]
        result.append(static.pop() if static else (dims[0] if dims else 1))
    return tuple(result)


def _needs_broadcast(dims, target) -> bool:
    if len(dims) != len(target):
        return True
    return any(isinstance(d, int) and d == 1 and not (isinstance(t, int) and t == 1)
               for d, t in zip(dims, target))


def _apply(op: Primitive, *operands) -> Tensor:
    """Bind an elementwise primitive after promoting and broadcasting its operands."""
    dtype = _promote(op.name, operands, op.promote or "same")
    tensors = [as_tensor(x, dtype) for x in operands]
    target = broadcast_dims(op.name, [t.dims for t in tensors])
    tensors = [broadcast_to(t, target) if _needs_broadcast(t.dims, target) else t for t in tensors]
    return bind(op, *tensors)


# -- elementwise -------------------------------------------------------------

def add(x, y):
    """x + y with NumPy broadcasting.  Derivative: 1 for each operand (summed over broadcast axes)."""
    return _apply(ew.add_p, x, y)


def subtract(x, y):
    """x - y with broadcasting.  Derivatives: 1 and -1."""
    return _apply(ew.sub_p, x, y)


def multiply(x, y):
    """x * y with broadcasting.  Derivatives: y and x."""
    return _apply(ew.mul_p, x, y)


def divide(x, y):
    """x / y (true division; integers give float64), with broadcasting.  Derivatives: 1/y and -x/y²."""
    return _apply(ew.div_p, x, y)


def power(x, y):
    """x ** y, elementwise.  Derivatives: y x^(y-1) (0 where y = 0) and x^y log x (0 where x = 0)."""
    return _apply(ew.pow_p, x, y)


def maximum(x, y):
    """The larger of x and y, elementwise (NaN wins).  Derivative: to the larger; split equally
    where they tie."""
    return _apply(ew.maximum_p, x, y)


def minimum(x, y):
    """The smaller of x and y, elementwise (NaN wins).  Derivative: to the smaller; split equally
    where they tie."""
    return _apply(ew.minimum_p, x, y)


def safe_mul(a, x): return _apply(ew.safe_mul_p, a, x)
def safe_div(a, x): return _apply(ew.safe_div_p, a, x)
def less(x, y):
    """x < y, elementwise, as booleans.  No derivative."""
    return _apply(ew.lt_p, x, y)


def less_equal(x, y):
    """x <= y, elementwise, as booleans.  No derivative."""
    return _apply(ew.le_p, x, y)


def greater(x, y):
    """x > y, elementwise, as booleans.  No derivative."""
    return _apply(ew.gt_p, x, y)


def greater_equal(x, y):
    """x >= y, elementwise, as booleans.  No derivative."""
    return _apply(ew.ge_p, x, y)


def equal(x, y):
    """x == y, elementwise, as booleans.  No derivative."""
    return _apply(ew.eq_p, x, y)


def not_equal(x, y):
    """x != y, elementwise, as booleans.  No derivative."""
    return _apply(ew.ne_p, x, y)


def negative(x):
    """-x, elementwise.  Derivative: -1."""
    return _apply(ew.neg_p, x)


def exp(x):
    """e^x, elementwise.  Derivative: e^x."""
    return _apply(ew.exp_p, x)


def log(x):
    """Natural logarithm, elementwise.  Derivative: 1/x."""
    return _apply(ew.log_p, x)


def log1p(x):
    """log(1 + x), accurate near 0, elementwise.  Derivative: 1/(1 + x)."""
    return _apply(ew.log1p_p, x)


def expm1(x):
    """e^x - 1, accurate near 0, elementwise.  Derivative: e^x."""
    return _apply(ew.expm1_p, x)


def sqrt(x):
    """Square root, elementwise.  Derivative: 1/(2 sqrt(x)) (infinite at 0)."""
    return _apply(ew.sqrt_p, x)


def sin(x):
    """Sine, elementwise.  Derivative: cos(x)."""
    return _apply(ew.sin_p, x)


def cos(x):
    """Cosine, elementwise.  Derivative: -sin(x)."""
    return _apply(ew.cos_p, x)


def tan(x):
    """Tangent, elementwise.  Derivative: 1 + tan²(x)."""
    return _apply(ew.tan_p, x)


def tanh(x):
    """Hyperbolic tangent, elementwise.  Derivative: 1 - tanh²(x)."""
    return _apply(ew.tanh_p, x)


def abs(x):  # noqa: A001  (mirrors numpy.abs)
    """|x|, elementwise.  Derivative: sign(x) (0 at 0)."""
    return _apply(ew.abs_p, x)


def sign(x):
    """-1, 0 or 1 by the sign of x (NaN stays NaN), elementwise.  Derivative: 0."""
    return _apply(ew.sign_p, x)


def sigmoid(x):
    """1 / (1 + e^-x), elementwise, without overflow.  Derivative: y (1 - y)."""
    return _apply(ew.sigmoid_p, x)


def erf(x):
    """The error function, elementwise.  Derivative: 2/sqrt(pi) e^(-x²)."""
    return _apply(ew.erf_p, x)


def square(x):
    """x * x, elementwise.  Derivative: 2x."""
    return multiply(x, x)


# -- more elementwise math (NumPy's ufuncs of the same names) ---------------------------------

def arcsin(x):
    """Inverse sine, elementwise (NaN outside [-1, 1]).  Derivative: 1/sqrt(1 - x²) (infinite at
    ±1)."""
    return _apply(mf.arcsin_p, x)


def arccos(x):
    """Inverse cosine, elementwise (NaN outside [-1, 1]).  Derivative: -1/sqrt(1 - x²) (infinite at
    ±1)."""
    return _apply(mf.arccos_p, x)


def arctan(x):
    """Inverse tangent, elementwise.  Derivative: 1/(1 + x²)."""
    return _apply(mf.arctan_p, x)


def sinh(x):
    """Hyperbolic sine, elementwise.  Derivative: cosh(x)."""
    return _apply(mf.sinh_p, x)


def cosh(x):
    """Hyperbolic cosine, elementwise.  Derivative: sinh(x)."""
    return _apply(mf.cosh_p, x)


def arcsinh(x):
    """Inverse hyperbolic sine, elementwise.  Derivative: 1/sqrt(x² + 1)."""
    return _apply(mf.arcsinh_p, x)


def arccosh(x):
    """Inverse hyperbolic cosine, elementwise (x >= 1).  Derivative: 1/sqrt(x² - 1)."""
    return _apply(mf.arccosh_p, x)


def arctanh(x):
    """Inverse hyperbolic tangent, elementwise (|x| < 1).  Derivative: 1/(1 - x²)."""
    return _apply(mf.arctanh_p, x)


def log2(x):
    """Base-2 logarithm, elementwise.  Derivative: 1/(x ln 2)."""
    return _apply(mf.log2_p, x)


def log10(x):
    """Base-10 logarithm, elementwise.  Derivative: 1/(x ln 10)."""
    return _apply(mf.log10_p, x)


def arctan2(x1, x2):
    """The angle of the point (x2, x1), elementwise, as numpy.arctan2.  Derivatives: x2/(x1² + x2²)
    and -x1/(x1² + x2²), 0 at the origin."""
    return _apply(mf.arctan2_p, x1, x2)


def hypot(x1, x2):
    """sqrt(x1² + x2²) without overflow, elementwise.  Derivatives: x1/h and x2/h, 0 at the origin."""
    return _apply(mf.hypot_p, x1, x2)


def logaddexp(x1, x2):
    """log(e^x1 + e^x2) without overflow, elementwise.  Derivatives: sigmoid(x1 - x2) and sigmoid(x2
    - x1)."""
    return _apply(mf.logaddexp_p, x1, x2)


def copysign(x1, x2):
    """|x1| with the sign of x2, elementwise.  Derivatives: sign(x1) sign(x2) (1 where they agree,
    -1 where not) for x1, 0 for x2."""
    return _apply(mf.copysign_p, x1, x2)


def rint(x):
    """x rounded to the nearest integer, halves to even, elementwise.  Derivative: 0."""
    return _apply(mf.rint_p, x)


def exp2(x) -> Tensor:
    """2**x (``power(2, x)``, for a float ``x``: integers become float64, as in NumPy)."""
    x = as_tensor(x)
    return power(2.0, x if _is_float_dtype(x.dtype) else astype(x, np.float64))


def reciprocal(x) -> Tensor:
    """1/x.  For integers, as NumPy: the truncated quotient of 1 by x, which is x for ±1 and
    otherwise 0 (also for x = 0, where NumPy's is whatever the platform's 1/0 gives); booleans
    become int8 first."""
    x = as_tensor(x)
    if _is_float_dtype(x.dtype):
        return divide(1.0, x)
    if x.dtype == np.bool_:
        x = astype(x, np.int8)
    one = equal(x, 1) if x.dtype.kind == "u" else equal(abs(x), 1)
    return where(one, x, 0)


def _rounding(op, x) -> Tensor:
    """floor, ceil, trunc: integers and booleans are returned as they are (NumPy keeps them)."""
    x = as_tensor(x)
    return bind(op, x) if _is_float_dtype(x.dtype) else x


def floor(x):
    """The largest integer <= x, elementwise (integers are returned as they are).  Derivative: 0."""
    return _rounding(mf.floor_p, x)


def ceil(x):
    """The smallest integer >= x, elementwise (integers are returned as they are).  Derivative: 0."""
    return _rounding(mf.ceil_p, x)


def trunc(x):
    """x rounded toward zero, elementwise (integers are returned as they are).  Derivative: 0."""
    return _rounding(mf.trunc_p, x)


def _power_of_ten(n: int) -> float:
    """10**n as NumPy's round computes it (exact table to 1e8, then repeated multiplication)."""
    if n < 9:
        return float(10 ** n)
    value = 1e9
    for _ in range(n - 9):
        value *= 10.0
    return value


def round(x, decimals=0) -> Tensor:  # noqa: A001  (mirrors numpy.round)
    """numpy.round: half to even, at ``decimals`` digits (negative: left of the point).

    As NumPy computes it: ``rint(x * 10**d) / 10**d`` (``rint(x / 10**-d) * 10**-d`` for
    negative ``d``), so results carry the same rounding.  Integers are returned as they are for
    ``decimals >= 0`` and rounded through float64 otherwise; booleans round as floats.
    Piecewise constant: its derivative is zero.
    """
    if isinstance(decimals, bool) or not isinstance(decimals, (int, np.integer)):
        raise TypeError(f"round: decimals must be an integer, got {decimals!r}")
    x, decimals = as_tensor(x), int(decimals)
    integer = x.dtype.kind in "iu"
    if integer and decimals >= 0:
        return x
    if decimals == 0:
        return rint(x)
    scale = _power_of_ten(builtins.abs(decimals))
    if decimals > 0:
        y = divide(rint(multiply(x, scale)), scale)
    else:
        y = multiply(rint(divide(x, scale)), scale)
    return astype(y, x.dtype) if integer else y


def _integer_operands(name: str, operands, shift: bool = False) -> np.dtype:
    """The promoted dtype of integer (or boolean) operands; floats are a TypeError, as in NumPy."""
    dtype = _promote(name, operands, "same")
    if dtype.kind not in "biu":
        raise TypeError(f"{name}: only integer and boolean operands are supported, got {dtype}")
    return np.dtype(np.int8) if shift and dtype == np.bool_ else dtype


def _apply_as(op: Primitive, dtype, *operands) -> Tensor:
    """``_apply`` with the operands' dtype chosen by the caller."""
    tensors = [as_tensor(x, dtype) for x in operands]
    target = broadcast_dims(op.name, [t.dims for t in tensors])
    tensors = [broadcast_to(t, target) if _needs_broadcast(t.dims, target) else t for t in tensors]
    return bind(op, *tensors)


def _numeric(name: str, operands) -> np.dtype:
    """NumPy's dtype for arithmetic: booleans count as int8."""
    dtype = _promote(name, operands, "same")
    return np.dtype(np.int8) if dtype == np.bool_ else dtype


def mod(x1, x2) -> Tensor:
    """numpy.remainder (``%``): the remainder with the divisor's sign; x % 0 is NaN for floats,
    0 for integers.  d/dx1 = 1, d/dx2 = -floor_divide(x1, x2)."""
    return _apply_as(mf.mod_p, _numeric("mod", (x1, x2)), x1, x2)


remainder = mod


def floor_divide(x1, x2) -> Tensor:
    """numpy.floor_divide (``//``): x1 / x2 rounded down; x // 0 is ±inf or NaN for floats,
    0 for integers.  Piecewise constant: its derivative is zero."""
    return _apply_as(mf.floor_divide_p, _numeric("floor_divide", (x1, x2)), x1, x2)


def fmod(x1, x2) -> Tensor:
    """numpy.fmod: the remainder with the dividend's sign (C's fmod); x % 0 is NaN for floats,
    0 for integers.  d/dx1 = 1, d/dx2 = -trunc(x1 / x2)."""
    dtype = _numeric("fmod", (x1, x2))
    if _is_float_dtype(dtype):
        return _apply_as(mf.fmod_p, dtype, x1, x2)
    x1, x2 = as_tensor(x1, dtype), as_tensor(x2, dtype)
    r = mod(x1, x2)                # integers: the floored remainder, moved to the dividend's sign
    if dtype.kind == "u":
        return r
    moved = logical_and(not_equal(r, 0), not_equal(less(r, 0), less(x1, 0)))
    return where(moved, subtract(r, x2), r)


def bitwise_and(x1, x2):
    """Bitwise and of integers and booleans (``&``); floats raise TypeError.  No derivative."""
    return _apply_as(mf.bitwise_and_p, _integer_operands("bitwise_and", (x1, x2)), x1, x2)


def bitwise_or(x1, x2):
    """Bitwise or of integers and booleans (``|``); floats raise TypeError.  No derivative."""
    return _apply_as(mf.bitwise_or_p, _integer_operands("bitwise_or", (x1, x2)), x1, x2)


def bitwise_xor(x1, x2):
    """Bitwise exclusive or of integers and booleans (``^``); floats raise TypeError.  No
    derivative."""
    return _apply_as(mf.bitwise_xor_p, _integer_operands("bitwise_xor", (x1, x2)), x1, x2)


def left_shift(x1, x2):
    """numpy.left_shift: shifts by the width or more (or by a negative count) give 0."""
    return _apply_as(mf.left_shift_p, _integer_operands("left_shift", (x1, x2), shift=True), x1, x2)


def right_shift(x1, x2):
    """numpy.right_shift (arithmetic for signed integers): shifts by the width or more (or by a
    negative count) give 0, or -1 for negative x1."""
    return _apply_as(mf.right_shift_p, _integer_operands("right_shift", (x1, x2), shift=True), x1, x2)


def invert(x) -> Tensor:
    """numpy.invert (``~``): bitwise not of integers, logical not of booleans."""
    dtype = _integer_operands("invert", (x,))
    x = as_tensor(x, dtype)
    return equal(x, False) if dtype == np.bool_ else bind(mf.invert_p, x)


bitwise_not = invert


def _truth(x) -> Tensor:
    """The booleans NumPy's logical functions see: x != 0 (NaN is true)."""
    x = as_tensor(x)
    return x if x.dtype == np.bool_ else not_equal(x, 0)


def logical_and(x1, x2):
    """x1 and x2 as truth values (non-zero is true, NaN too), elementwise.  No derivative."""
    return bitwise_and(_truth(x1), _truth(x2))


def logical_or(x1, x2):
    """x1 or x2 as truth values, elementwise.  No derivative."""
    return bitwise_or(_truth(x1), _truth(x2))


def logical_xor(x1, x2):
    """x1 xor x2 as truth values, elementwise.  No derivative."""
    return not_equal(_truth(x1), _truth(x2))


def logical_not(x) -> Tensor:
    """not x as a truth value, elementwise.  No derivative."""
    x = as_tensor(x)
    return equal(x, False) if x.dtype == np.bool_ else equal(x, 0)


def isnan(x) -> Tensor:
    """x != x: true only for NaN (always false for integers and booleans)."""
    x = as_tensor(x)
    return not_equal(x, x) if _is_float_dtype(x.dtype) else full_like(x, False, np.bool_)


def isinf(x) -> Tensor:
    """Whether x is +inf or -inf, elementwise (always false for integers).  No derivative."""
    x = as_tensor(x)
    return equal(abs(x), np.inf) if _is_float_dtype(x.dtype) else full_like(x, False, np.bool_)


def isfinite(x) -> Tensor:
    """|x| < inf: false for ±inf and NaN (always true for integers and booleans)."""
    x = as_tensor(x)
    return less(abs(x), np.inf) if _is_float_dtype(x.dtype) else full_like(x, True, np.bool_)


def _is_float_dtype(dtype) -> bool:
    return np.issubdtype(dtype, np.floating)


def where(condition, x, y) -> Tensor:
    """``x`` where ``condition`` holds, else ``y``; the untaken side's derivative is exactly 0."""
    dtype = _promote("where", (x, y), "same")
    cond = as_tensor(condition)
    if cond.dtype != np.bool_:
        cond = not_equal(cond, 0)
    operands = [cond, as_tensor(x, dtype), as_tensor(y, dtype)]
    target = broadcast_dims("where", [t.dims for t in operands])
    operands = [broadcast_to(t, target) if _needs_broadcast(t.dims, target) else t for t in operands]
    return bind(ew.select_p, *operands)


def clip(x, a_min, a_max) -> Tensor:
    """Limit values to [a_min, a_max]; the derivative is 1 inside, boundaries included."""
    x = as_tensor(x)
    if a_min is not None:
        x = where(less(x, a_min), a_min, x)
    if a_max is not None:
        x = where(greater(x, a_max), a_max, x)
    return x


def astype(x, dtype) -> Tensor:
    """``x`` converted to ``dtype``.  Derivatives pass between float dtypes; integer and bool
    results have none."""
    x, dt = as_tensor(x), as_dtype(dtype, "astype")
    return x if x.dtype == dt else bind(ew.convert_p, x, dtype=dt)


def stop_gradient(x) -> Tensor:
    """Identity whose derivative is zero."""
    return bind(ew.stop_gradient_p, as_tensor(x))


# -- activations -------------------------------------------------------------

def relu(x):          # relu'(0) = 0
    """max(x, 0), elementwise.  Derivative: 1 for x > 0, else 0 (relu'(0) = 0)."""
    return where(greater(x, 0), x, 0)


def leaky_relu(x, alpha=0.01):
    """x for x > 0, alpha x otherwise.  Derivative at 0: alpha."""
    return where(greater(x, 0), x, multiply(alpha, x))


def elu(x, alpha=1.0):
    """x for x > 0, alpha (e^x - 1) otherwise.  Derivative at 0: alpha (the left side)."""
    return where(greater(x, 0), x, multiply(alpha, expm1(x)))


def silu(x):
    """x sigmoid(x), elementwise (also called swish).  Derivative: sigmoid(x) (1 + x (1 -
    sigmoid(x)))."""
    return multiply(x, sigmoid(x))


def softplus(x) -> Tensor:
    """log(1 + e^x), without overflow: x + log1p(e^-x) for x > 0, else log1p(e^x).

    (Not max(x, 0) + log1p(e^-|x|): the subgradient conventions of max and abs
    at 0 would make its derivative there 0 instead of 1/2.)
    """
    x = as_tensor(x)
    return where(greater(x, 0), add(x, log1p(exp(negative(x)))), log1p(exp(x)))


def gelu(x, approximate: bool = False) -> Tensor:
    """x Φ(x) with the exact erf form, or the tanh approximation if asked."""
    if approximate:
        inner = multiply(math.sqrt(2 / math.pi), add(x, multiply(0.044715, power(x, 3))))
        return multiply(multiply(0.5, x), add(1.0, tanh(inner)))
    return multiply(multiply(0.5, x), add(1.0, erf(multiply(x, 1 / math.sqrt(2)))))


# -- reductions --------------------------------------------------------------

def _reduce(op: Primitive, name: str, x, axis, keepdims) -> Tensor:
    """A ufunc-style reduction: like NumPy's, it takes axis 0 or -1 of a 0-d array."""
    x = as_tensor(x)
    return bind(op, x, axes=normalize_axes(axis, x.ndim, name, int_axis_of_0d=True), keepdims=bool(keepdims))


def sum(x, axis=None, keepdims=False):  # noqa: A001
    """The sum over ``axis`` (all axes if None), as numpy.sum.  Derivative: 1 for every element."""
    return _reduce(rd.reduce_sum_p, "sum", x, axis, keepdims)


def max(x, axis=None, keepdims=False):  # noqa: A001
    """The maximum over ``axis`` (all axes if None), as numpy.max.  Derivative: split equally
    between tied maxima."""
    return _reduce(rd.reduce_max_p, "max", x, axis, keepdims)


def min(x, axis=None, keepdims=False):  # noqa: A001
    """The minimum over ``axis`` (all axes if None), as numpy.min.  Derivative: split equally
    between tied minima."""
    return _reduce(rd.reduce_min_p, "min", x, axis, keepdims)


def prod(x, axis=None, keepdims=False):
    """The product over ``axis`` (all axes if None).  Derivative: the product of the other elements,
    exact where some are zero."""
    return _reduce(rd.reduce_prod_p, "prod", x, axis, keepdims)


def _count(x: Tensor, axes, dtype) -> Tensor | float:
    """How many elements a reduction over ``axes`` combines (a node if sizes are call-time)."""
    dims = [x.dims[a] for a in axes]
    if not any(isinstance(d, Dim) for d in dims):
        return float(np.prod(dims, dtype=np.int64))
    count = Dim(derive=("prod", dims, None))
    return bind(sh.full_p, shape=(), value=count, dtype=dtype)


def mean(x, axis=None, keepdims=False) -> Tensor:
    """The mean over ``axis`` (all axes if None); integers average as float64.  Derivative: 1/n for
    every element."""
    x = as_tensor(x)
    if not np.issubdtype(x.dtype, np.floating):
        x = astype(x, np.float64)
    axes = normalize_axes(axis, x.ndim, "mean")
    return divide(sum(x, axes, keepdims), _count(x, axes, x.dtype))


def logsumexp(x, axis=None, keepdims=False) -> Tensor:
    """log(sum(exp(x))) without overflow: the max is factored out (and is stop-gradient,
    since the result does not depend on it)."""
    x = as_tensor(x)
    axes = normalize_axes(axis, x.ndim, "logsumexp", int_axis_of_0d=True)    # as scipy's
    peak = stop_gradient(max(x, axes, keepdims=True))
    peak = where(equal(abs(peak), np.inf), 0.0, peak)
    out = add(log(sum(exp(subtract(x, peak)), axes, keepdims=True)), peak)
    return out if keepdims else reshape(out, tuple(d for i, d in enumerate(out.dims) if i not in axes))


# -- shapes ------------------------------------------------------------------

def _shape_arg(shape) -> tuple:
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    out = []
    for d in shape:
        if isinstance(d, Dim):
            out.append(d)
        elif isinstance(d, (int, np.integer)) and d >= -1:
            out.append(int(d))
        else:
            raise ValueError(f"invalid size {d!r} in shape {shape}")
    return tuple(out)


def reshape(x, *shape) -> Tensor:
    """``x`` with a new shape of the same size (one entry may be -1; call-time sizes allowed)."""
    x, shape = as_tensor(x), _shape_arg(shape)
    return x if shape == x.dims else bind(sh.reshape_p, x, shape=shape)


def transpose(x, *axes) -> Tensor:
    """numpy.transpose: ``transpose(x)``, ``transpose(x, axes)`` or ``transpose(x, *axes)``;
    axes are axes (any in ``[-ndim, ndim)``), not sizes, so they skip the shape parser."""
    x = as_tensor(x)
    if len(axes) == 1 and isinstance(axes[0], (tuple, list, np.ndarray)):
        axes = tuple(axes[0])
    if not axes or axes == (None,):
        return x if x.ndim < 2 else bind(sh.transpose_p, x, perm=tuple(reversed(range(x.ndim))))
    if len(axes) != x.ndim:
        raise ValueError(f"transpose: axes {axes} don't match an array of shape {fmt_shape(x.dims)}")
    perm = normalize_axis_tuple(axes, x.ndim, "transpose")
    return x if perm == tuple(range(x.ndim)) else bind(sh.transpose_p, x, perm=perm)


def broadcast_to(x, shape) -> Tensor:
    """``x`` broadcast to ``shape`` (NumPy's rules; a call-time size must equal what it meets).  Its
    VJP sums over the broadcast axes."""
    x, shape = as_tensor(x), _shape_arg((shape,) if not isinstance(shape, tuple) else shape)
    return x if shape == x.dims else bind(sh.broadcast_to_p, x, shape=shape)


def expand_dims(x, axis) -> Tensor:
    """``x`` with a new axis of size 1 at ``axis`` (an int or a tuple, negative counted from the
    end)."""
    x = as_tensor(x)
    if isinstance(axis, (int, np.integer)) and not isinstance(axis, bool):
        axis = (axis,)
    axes = normalize_axes(axis, x.ndim + len(axis), "expand_dims")
    dims = list(x.dims)
    for a in axes:
        dims.insert(a, 1)
    return reshape(x, tuple(dims))


def squeeze(x, axis=None) -> Tensor:
    """``x`` without the axes of size 1 named by ``axis`` (all of them if None)."""
    x = as_tensor(x)
    if axis is None:
        axes = tuple(i for i, d in enumerate(x.dims) if isinstance(d, int) and d == 1)
    else:
        axes = normalize_axes(axis, x.ndim, "squeeze", int_axis_of_0d=True)     # as NumPy's
        for a in axes:
            if x.dims[a] != 1:
                raise ValueError(f"squeeze: cannot select axis {a} of shape {fmt_shape(x.dims)}: "
                                 f"its size is not 1")
    return reshape(x, tuple(d for i, d in enumerate(x.dims) if i not in axes))


def concatenate(tensors, axis=0) -> Tensor:
    """numpy.concatenate; ``axis=None`` joins the flattened arrays."""
    if not tensors:
        raise ValueError("concatenate: need at least one array")
    dtype = _promote("concatenate", tensors, "same")
    tensors = [as_tensor(t, dtype) for t in tensors]
    if axis is None:
        tensors, axis = [reshape(t, (-1,)) for t in tensors], 0
    if builtins.any(t.ndim == 0 for t in tensors):
        raise ValueError("concatenate: zero-dimensional arrays cannot be concatenated")
    axis = normalize_axis(axis, tensors[0].ndim, "concatenate")
    return tensors[0] if len(tensors) == 1 else bind(sh.concatenate_p, *tensors, axis=axis)


def stack(tensors, axis=0) -> Tensor:
    """The tensors (of one shape) joined along a new axis ``axis``."""
    if not tensors:
        raise ValueError("stack: need at least one array")
    tensors = [as_tensor(t) for t in tensors]
    axis = normalize_axis(axis, tensors[0].ndim + 1, "stack")
    return concatenate([expand_dims(t, axis) for t in tensors], axis)


def take(x, indices, axis=None) -> Tensor:
    """Gather along ``axis`` like numpy.take (``axis=None`` indexes the flattened array)."""
    x = as_tensor(x)
    idx = as_tensor(indices)
    if not np.issubdtype(idx.dtype, np.integer):
        raise TypeError(f"take: indices must be integers, got dtype {idx.dtype}")
    if axis is None or x.ndim == 0:      # NumPy takes from a 0-d array as from its 1-d view
        x, axis = reshape(x, (-1,)), 0 if axis is None else axis
    axis = normalize_axis(axis, x.ndim, "take")
    return bind(sh.gather_p, x, astype(idx, np.int64), axis=axis)


def full(shape, value, dtype="float64") -> Tensor:
    """numpy.full: ``shape`` may hold a Tensor's call-time sizes (its ``dims``)."""
    shape = _shape_arg((shape,) if isinstance(shape, (int, np.integer)) else tuple(shape))
    if any(isinstance(d, int) and d < 0 for d in shape):
        raise ValueError(f"full: negative size in shape {shape}")
    return bind(sh.full_p, shape=shape, value=value, dtype=as_dtype(dtype, "full"))


def zeros(shape, dtype="float64") -> Tensor:
    """An array of zeros of ``shape`` and ``dtype``."""
    return full(shape, 0, dtype)


def ones(shape, dtype="float64") -> Tensor:
    """An array of ones of ``shape`` (a ``None``-free tuple, or Dims of a call-time size) and
    ``dtype``."""
    return full(shape, 1, dtype)


def full_like(x, value, dtype=None) -> Tensor:
    """An array of ``x``'s shape (call-time sizes included) filled with ``value``."""
    x = as_tensor(x)
    return full(x.dims, value, x.dtype if dtype is None else dtype)


def zeros_like(x, dtype=None) -> Tensor:
    """Zeros of ``x``'s shape (call-time sizes included) and dtype, or ``dtype``."""
    return full_like(x, 0, dtype)


def ones_like(x, dtype=None) -> Tensor:
    """Ones of ``x``'s shape (call-time sizes included) and dtype, or ``dtype``."""
    return full_like(x, 1, dtype)


def eye(n: int, m: int | None = None, k: int = 0, dtype="float64") -> Tensor:
    """numpy.eye, as a constant (its sizes are fixed when the graph is built)."""
    return constant(np.eye(n, m, k, dtype=as_dtype(dtype, "eye")))


def identity(n: int, dtype="float64") -> Tensor:
    """The n x n identity matrix."""
    return eye(n, dtype=dtype)


def arange(start, stop=None, step=1, dtype=None) -> Tensor:
    """numpy.arange with fixed bounds, as a constant."""
    values = np.arange(start, stop, step) if stop is not None else np.arange(start, step=step)
    return constant(values.astype(as_dtype(dtype, "arange")) if dtype is not None else values)


def linspace(start, stop, num: int = 50, endpoint: bool = True, dtype=None) -> Tensor:
    """numpy.linspace with fixed bounds, as a constant."""
    values = np.linspace(start, stop, num, endpoint=endpoint)
    return constant(values.astype(as_dtype(dtype, "linspace")) if dtype is not None else values)


# -- linear algebra ----------------------------------------------------------

def matmul(a, b) -> Tensor:
    """Matrix product with NumPy's rules: 1-D operands are promoted, batch dims broadcast."""
    dtype = _promote("matmul", (a, b), "same")
    a, b = as_tensor(a, dtype), as_tensor(b, dtype)
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul: operands must not be scalars, got shapes "
                         f"{fmt_shape(a.dims)} and {fmt_shape(b.dims)}")
    a2 = reshape(a, (1,) + a.dims) if a.ndim == 1 else a
    b2 = reshape(b, b.dims + (1,)) if b.ndim == 1 else b
    if isinstance(a2.dims[-1], int) and isinstance(b2.dims[-2], int) and a2.dims[-1] != b2.dims[-2]:
        raise ValueError(f"matmul: shapes {fmt_shape(a.dims)} and {fmt_shape(b.dims)} are not aligned "
                         f"({a2.dims[-1]} != {b2.dims[-2]})")
    batch = broadcast_dims("matmul", [a2.dims[:-2], b2.dims[:-2]])
    a2 = broadcast_to(a2, batch + a2.dims[-2:]) if a2.dims[:-2] != batch else a2
    b2 = broadcast_to(b2, batch + b2.dims[-2:]) if b2.dims[:-2] != batch else b2
    out = bind(la.matmul_p, a2, b2)
    keep = batch + ((out.dims[-2],) if a.ndim > 1 else ()) + ((out.dims[-1],) if b.ndim > 1 else ())
    return reshape(out, keep)


def dot(a, b) -> Tensor:
    """numpy.dot: products for scalars, matmul for 1-D/2-D, last-by-second-to-last otherwise."""
    a, b = as_tensor(a), as_tensor(b)
    if a.ndim == 0 or b.ndim == 0:
        return multiply(a, b)
    if b.ndim <= 2:
        return matmul(a, b)
    # move b's contracted axis (second to last) to the front, then one matmul
    perm = (b.ndim - 2,) + tuple(range(b.ndim - 2)) + (b.ndim - 1,)
    b2 = reshape(transpose(b, perm), (b.dims[-2], -1))
    out = matmul(reshape(a, (-1, a.dims[-1])), b2)
    return reshape(out, a.dims[:-1] + b.dims[:-2] + b.dims[-1:])


def outer(a, b) -> Tensor:
    """The outer product of two vectors (flattened first, as numpy.outer)."""
    a, b = reshape(as_tensor(a), (-1, 1)), reshape(as_tensor(b), (1, -1))
    return multiply(a, b)
