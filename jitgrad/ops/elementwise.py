"""Elementwise primitives: unary and binary math, comparisons, select, casts.

The builder broadcasts and casts operands before binding, so every elementwise
primitive sees inputs of one shape and (except ``select``'s condition) one
dtype.  Reverse and forward rules multiply by local derivatives with
``safe_mul``/``safe_div``: a zero cotangent (or tangent) times an infinite or
NaN local derivative is zero, so an untaken ``where`` branch never leaks NaN.
"""
from __future__ import annotations

import math

import numpy as np

from ..primitive import Aval, Primitive, batch_stack, on, sum_tangents
from ._shapes import same_shape

_erf = np.vectorize(math.erf, otypes=[np.float64])


def _elementwise(name, nin, ref, vjp, jvp, scalar, promote="same", out_dtype=None, doc=""):
    return Primitive(
        name,
        shape=lambda *avals: same_shape(name, avals, out_dtype),
        ref=ref, vjp=vjp, jvp=jvp, nin=nin, promote=promote, scalar=scalar, batch=batch_stack, doc=doc,
    )


def _or_zero(dot):
    return 0.0 if dot is None else dot


# -- unary -------------------------------------------------------------------

def _unary(name, ref, scalar, local, promote="float", doc=""):
    """A unary primitive whose derivative is ``y_bar * local(b, y, x)``."""
    return _elementwise(
        name, 1, ref, scalar=scalar,
        vjp=lambda b, y_bar, y, x: (b.safe_mul(y_bar, local(b, y, x)),),
        jvp=lambda b, x_dots, y, x: b.safe_mul(x_dots[0], local(b, y, x)),
        promote=promote, doc=doc,
    )


def _unary_div(name, ref, scalar, denom, doc=""):
    """A unary primitive whose derivative is ``y_bar / denom(b, y, x)``."""
    return _elementwise(
        name, 1, ref, scalar=scalar,
        vjp=lambda b, y_bar, y, x: (b.safe_div(y_bar, denom(b, y, x)),),
        jvp=lambda b, x_dots, y, x: b.safe_div(x_dots[0], denom(b, y, x)),
        promote="float", doc=doc,
    )


def _sigmoid_ref(x):
    # exp of a non-positive number only: no overflow warnings for large |x|.
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


neg_p = _elementwise(
    "neg", 1, np.negative, scalar="(-{0})",
    vjp=lambda b, y_bar, y, x: (b.negative(y_bar),),
    jvp=lambda b, x_dots, y, x: b.negative(x_dots[0]),
)
exp_p = _unary("exp", np.exp, "math.exp({0})", lambda b, y, x: y)
log_p = _unary_div("log", np.log, "math.log({0})", lambda b, y, x: x)
log1p_p = _unary_div("log1p", np.log1p, "math.log1p({0})", lambda b, y, x: b.add(x, 1.0))
expm1_p = _unary("expm1", np.expm1, "math.expm1({0})", lambda b, y, x: b.add(y, 1.0))
sqrt_p = _unary_div("sqrt", np.sqrt, "math.sqrt({0})", lambda b, y, x: b.multiply(y, 2.0))
sin_p = _unary("sin", np.sin, "math.sin({0})", lambda b, y, x: b.cos(x))
cos_p = _unary("cos", np.cos, "math.cos({0})", lambda b, y, x: b.negative(b.sin(x)))
tan_p = _unary("tan", np.tan, "math.tan({0})", lambda b, y, x: b.add(b.multiply(y, y), 1.0))
tanh_p = _unary("tanh", np.tanh, "math.tanh({0})", lambda b, y, x: b.subtract(1.0, b.multiply(y, y)))
sigmoid_p = _unary("sigmoid", _sigmoid_ref, "sigmoid({0})", lambda b, y, x: b.multiply(y, b.subtract(1.0, y)))
erf_p = _unary(
    "erf", lambda x: _erf(x).astype(x.dtype, copy=False), "math.erf({0})",
    lambda b, y, x: b.multiply(2.0 / math.sqrt(math.pi), b.exp(b.negative(b.multiply(x, x)))),
)
abs_p = _unary("abs", np.abs, "abs({0})", lambda b, y, x: b.sign(x), promote="same",
               doc="abs'(0) = 0: the derivative is sign(x).")
sign_p = _elementwise(
    "sign", 1, np.sign, scalar="sign({0})", vjp=lambda b, y_bar, y, x: (None,), jvp=lambda b, x_dots, y, x: None,
    doc="Piecewise constant: its derivative is zero everywhere.",
)

# -- binary ------------------------------------------------------------------


def _tie_split(b, y_bar, wins, ties):
    """``y_bar`` where this argument wins, half of it where the two are tied, else 0."""
    return b.where(wins, y_bar, b.where(ties, b.multiply(y_bar, 0.5), 0.0))


def _extremum_jvp(b, x_dots, y, x1, x2, first_wins):
    x1_dot, x2_dot = _or_zero(x_dots[0]), _or_zero(x_dots[1])
    tied = b.equal(x1, x2)
    average = b.multiply(b.add(x1_dot, x2_dot), 0.5)
    return b.where(first_wins, x1_dot, b.where(tied, average, x2_dot))


def _pow_locals(b, y, x, p):
    """y = x^p.  dy/dx = p x^(p-1) (0 where p = 0);  dy/dp = y log x (0 where x = 0)."""
    dx = b.where(b.equal(p, 0.0), 0.0, b.multiply(p, b.power(x, b.subtract(p, 1.0))))
    dp = b.where(b.equal(x, 0.0), 0.0, b.multiply(y, b.log(x)))
    return dx, dp


def _pow_vjp(b, y_bar, y, x, p):
    dx, dp = _pow_locals(b, y, x, p)
    return b.safe_mul(y_bar, dx), b.safe_mul(y_bar, dp)


def _pow_jvp(b, x_dots, y, x, p):
    dx, dp = _pow_locals(b, y, x, p)
    return sum_tangents(b, on(x_dots[0], lambda t: b.safe_mul(t, dx)),
                        on(x_dots[1], lambda t: b.safe_mul(t, dp)))


add_p = _elementwise(
    "add", 2, np.add, scalar="({0} + {1})",
    vjp=lambda b, y_bar, y, x1, x2: (y_bar, y_bar),
    jvp=lambda b, x_dots, y, x1, x2: sum_tangents(b, *x_dots),
)
sub_p = _elementwise(
    "sub", 2, np.subtract, scalar="({0} - {1})",
    vjp=lambda b, y_bar, y, x1, x2: (y_bar, b.negative(y_bar)),
    jvp=lambda b, x_dots, y, x1, x2: sum_tangents(b, x_dots[0], on(x_dots[1], b.negative)),
)
mul_p = _elementwise(
    "mul", 2, np.multiply, scalar="({0} * {1})",
    vjp=lambda b, y_bar, y, x1, x2: (b.safe_mul(y_bar, x2), b.safe_mul(y_bar, x1)),
    jvp=lambda b, x_dots, y, x1, x2: sum_tangents(
        b, on(x_dots[0], lambda t: b.safe_mul(t, x2)), on(x_dots[1], lambda t: b.safe_mul(t, x1))),
)
div_p = _elementwise(
    "div", 2, np.true_divide, scalar="({0} / {1})", promote="float",
    vjp=lambda b, y_bar, y, x1, x2: (b.safe_div(y_bar, x2), b.negative(b.safe_mul(y_bar, b.divide(y, x2)))),
    jvp=lambda b, x_dots, y, x1, x2: sum_tangents(
        b, on(x_dots[0], lambda t: b.safe_div(t, x2)),
        on(x_dots[1], lambda t: b.negative(b.safe_mul(t, b.divide(y, x2))))),
)
def _pow_ref(x, p):
    """np.power on C-ordered operands: NumPy's vectorized power (not correctly rounded) runs on
    contiguous arrays and a scalar loop on broadcast ones, so the same values could round
    differently by layout; a contiguous copy makes the reference depend on the values alone."""
    return np.power(np.asarray(x, order="C"), np.asarray(p, order="C"))


pow_p = _elementwise("pow", 2, _pow_ref, vjp=_pow_vjp, jvp=_pow_jvp, scalar="({0} ** {1})")


def _extremum(name, ref, beats):
    """maximum/minimum; ``beats(b, u, v)`` is where u is chosen over v."""
    return _elementwise(
        name, 2, ref, scalar=name + "({0}, {1})",
        vjp=lambda b, y_bar, y, x1, x2: (_tie_split(b, y_bar, beats(b, x1, x2), b.equal(x1, x2)),
                                     _tie_split(b, y_bar, beats(b, x2, x1), b.equal(x1, x2))),
        jvp=lambda b, x_dots, y, x1, x2: _extremum_jvp(b, x_dots, y, x1, x2, beats(b, x1, x2)),
        doc="Tied arguments share the derivative equally.",
    )


maximum_p = _extremum("maximum", np.maximum, lambda b, u, v: b.greater(u, v))
minimum_p = _extremum("minimum", np.minimum, lambda b, u, v: b.less(u, v))


def _safe_mul_ref(a, x):
    out = np.multiply(a, x)
    if np.isfinite(out).all():     # only 0 * inf and 0 * NaN need mending
        return out
    zero_times_nonfinite = ((a == 0) & ~np.isfinite(x)) | ((x == 0) & ~np.isfinite(a))
    return np.where(zero_times_nonfinite, np.zeros((), out.dtype), out)


def _safe_div_ref(a, x):
    out = np.true_divide(a, x)
    if np.isfinite(out).all():
        return out
    return np.where((a == 0) & ((x == 0) | np.isnan(x)), np.zeros((), out.dtype), out)


safe_mul_p = _elementwise(
    "safe_mul", 2, _safe_mul_ref, scalar="safe_mul({0}, {1})",
    vjp=lambda b, y_bar, y, a, x: (b.safe_mul(y_bar, x), b.safe_mul(y_bar, a)),
    jvp=lambda b, x_dots, y, a, x: sum_tangents(
        b, on(x_dots[0], lambda t: b.safe_mul(t, x)), on(x_dots[1], lambda t: b.safe_mul(a, t))),
    doc="a * x, except that 0 times inf or NaN (either way round) is 0: how derivative "
        "rules scale a cotangent or tangent by a local derivative.  Otherwise exactly a * x, "
        "signed zeros included, so safe_mul(1, x) is x.",
)
safe_div_p = _elementwise(
    "safe_div", 2, _safe_div_ref, scalar="safe_div({0}, {1})", promote="float",
    vjp=lambda b, y_bar, y, a, x: (b.safe_div(y_bar, x), b.negative(b.safe_mul(b.safe_div(y, x), y_bar))),
    jvp=lambda b, x_dots, y, a, x: sum_tangents(
        b, on(x_dots[0], lambda t: b.safe_div(t, x)),
        on(x_dots[1], lambda t: b.negative(b.safe_mul(t, b.safe_div(y, x))))),
    doc="a / x, except that 0 / 0 and 0 / NaN are 0.  Otherwise exactly a / x.",
)


def _comparison(name, ref, symbol):
    return _elementwise(
        name, 2, ref, scalar=f"({{0}} {symbol} {{1}})", promote="compare", out_dtype=np.bool_,
        vjp=lambda b, y_bar, y, x1, x2: (None, None), jvp=lambda b, x_dots, y, x1, x2: None,
        doc="Boolean result: derivatives through it are zero.",
    )


lt_p = _comparison("lt", np.less, "<")
le_p = _comparison("le", np.less_equal, "<=")
gt_p = _comparison("gt", np.greater, ">")
ge_p = _comparison("ge", np.greater_equal, ">=")
eq_p = _comparison("eq", np.equal, "==")
ne_p = _comparison("ne", np.not_equal, "!=")


def _select_shape(cond, x1, x2):
    aval = same_shape("where", (x1, x2))
    both = same_shape("where", (aval, cond))
    return Aval(aval.dims, aval.dtype, aval.constraints + both.constraints)


select_p = Primitive(
    "select", shape=_select_shape, ref=np.where, nin=3, scalar="({1} if {0} else {2})",
    vjp=lambda b, y_bar, y, c, x1, x2: (None, b.where(c, y_bar, 0.0), b.where(c, 0.0, y_bar)),
    jvp=lambda b, x_dots, y, c, x1, x2: b.where(c, _or_zero(x_dots[1]), _or_zero(x_dots[2])),
    batch=batch_stack,
    doc="where(c, x1, x2).  Forward mode selects tangents; it never multiplies by masks.",
)


def _is_float(dtype) -> bool:
    return np.issubdtype(dtype, np.floating)


def _convert_shape(x, *, dtype):
    return Aval(x.dims, np.dtype(dtype))


convert_p = Primitive(
    "convert", shape=_convert_shape, ref=lambda x, dtype: x.astype(dtype), attrs=("dtype",),
    scalar="{dtype}({0})",
    vjp=lambda b, y_bar, y, x, dtype: (b.astype(y_bar, x.dtype) if _is_float(x.dtype) else None,),
    jvp=lambda b, x_dots, y, x, dtype: b.astype(x_dots[0], dtype) if _is_float(dtype) else None,
    batch=batch_stack,
    doc="astype.  Derivatives pass between float dtypes; integer results have none.",
)
stop_gradient_p = Primitive(
    "stop_gradient", shape=lambda x: Aval(x.dims, x.dtype), ref=lambda x: x, scalar="{0}",
    vjp=lambda b, y_bar, y, x: (None,), jvp=lambda b, x_dots, y, x: None,
    marker=True, batch=batch_stack, doc="Identity whose derivative is zero.",
)

PRIMITIVES = (
    neg_p, exp_p, log_p, log1p_p, expm1_p, sqrt_p, sin_p, cos_p, tan_p, tanh_p, sigmoid_p,
    erf_p, abs_p, sign_p, add_p, sub_p, mul_p, div_p, pow_p, maximum_p, minimum_p,
    safe_mul_p, safe_div_p, lt_p, le_p, gt_p, ge_p, eq_p, ne_p, select_p, convert_p,
    stop_gradient_p,
)
