"""More elementwise primitives: inverse trigonometric and hyperbolic functions, base-2 and
base-10 logarithms, rounding, remainders, hypot, logaddexp, copysign and the bitwise ops.

Each mirrors the NumPy ufunc of its name (``rint`` is np.rint, ``mod`` np.remainder).  The
builder functions in :mod:`jitgrad.functions` choose the dtypes (integers keep theirs through
``floor``/``ceil``/``trunc``; ``fmod`` of integers and the logical functions are composed
there), so the primitives here see the operands NumPy's loops would.  Scalar expressions use
``math`` and the helpers of :mod:`jitgrad.backends.scalars` only: numba.cuda has no
``np.floor`` and friends, Numba's CPU target no ``math.fmod``.

Derivatives, as ``elementwise`` does, scale by local derivatives with ``safe_mul``/``safe_div``.
Rounding functions and ``floor_divide`` are piecewise constant: their derivatives are zero.
The bitwise primitives take integers (and booleans) only and have no derivative.
"""
from __future__ import annotations

import math

import numpy as np

from ..primitive import Primitive, batch_stack, on, sum_tangents
from ._shapes import same_shape
from .elementwise import _elementwise, _unary, _unary_div

LN2, LN10 = math.log(2.0), math.log(10.0)


def _sqrt_one_minus_square(b, x):
    """sqrt(1 - x²) as sqrt((1 - x)(1 + x)): no cancellation near |x| = 1."""
    return b.sqrt(b.multiply(b.subtract(1.0, x), b.add(1.0, x)))


# -- unary, float -------------------------------------------------------------------------------

arcsin_p = _unary_div("arcsin", np.arcsin, "math.asin({0})", lambda b, y, x: _sqrt_one_minus_square(b, x))
arccos_p = _unary_div("arccos", np.arccos, "math.acos({0})",
                      lambda b, y, x: b.negative(_sqrt_one_minus_square(b, x)))
arctan_p = _unary_div("arctan", np.arctan, "math.atan({0})", lambda b, y, x: b.add(1.0, b.multiply(x, x)))
sinh_p = _unary("sinh", np.sinh, "math.sinh({0})", lambda b, y, x: b.cosh(x))
cosh_p = _unary("cosh", np.cosh, "math.cosh({0})", lambda b, y, x: b.sinh(x))
arcsinh_p = _unary_div("arcsinh", np.arcsinh, "math.asinh({0})", lambda b, y, x: b.hypot(x, 1.0),
                       doc="The derivative is 1 / hypot(x, 1): no overflow of x² for large |x|.")
arccosh_p = _unary_div("arccosh", np.arccosh, "math.acosh({0})",
                       lambda b, y, x: b.multiply(b.sqrt(b.subtract(x, 1.0)), b.sqrt(b.add(x, 1.0))))
arctanh_p = _unary_div("arctanh", np.arctanh, "math.atanh({0})",
                       lambda b, y, x: b.multiply(b.subtract(1.0, x), b.add(1.0, x)))
log2_p = _unary_div("log2", np.log2, "math.log2({0})", lambda b, y, x: b.multiply(x, LN2))
log10_p = _unary_div("log10", np.log10, "math.log10({0})", lambda b, y, x: b.multiply(x, LN10))


def _piecewise_constant(name, ref, scalar, promote="same", doc=""):
    return _elementwise(name, 1, ref, scalar=scalar, promote=promote,
                        vjp=lambda b, y_bar, y, x: (None,), jvp=lambda b, x_dots, y, x: None,
                        doc=doc or "Piecewise constant: its derivative is zero everywhere.")


# floats only: the builder returns integer (and boolean) operands of floor, ceil and trunc as they are
floor_p = _piecewise_constant("floor", np.floor, "floor({0})")
ceil_p = _piecewise_constant("ceil", np.ceil, "ceil({0})")
trunc_p = _piecewise_constant("trunc", np.trunc, "trunc({0})")
rint_p = _piecewise_constant("rint", np.rint, "rint({0})", promote="float",
                             doc="Round half to even (np.rint); piecewise constant, so its derivative is zero.")

# -- binary -------------------------------------------------------------------------------------


_ONE = "one"
"""A local derivative that is exactly 1: the cotangent or tangent passes unscaled."""


def _scale(b, t, d):
    return t if d is _ONE else b.safe_mul(t, d)


def _binary(name, ref, scalar, locals_, promote="float", doc=""):
    """A binary primitive whose partial derivatives are ``locals_(b, y, x1, x2)``: a pair of
    Tensors, each possibly ``_ONE`` or None (zero)."""
    def vjp(b, y_bar, y, x1, x2):
        return tuple(None if d is None else _scale(b, y_bar, d) for d in locals_(b, y, x1, x2))

    def jvp(b, x_dots, y, x1, x2):
        d1, d2 = locals_(b, y, x1, x2)
        return sum_tangents(b, *(on(t, lambda t, d=d: _scale(b, t, d)) for t, d in zip(x_dots, (d1, d2))
                                 if d is not None))

    return _elementwise(name, 2, ref, vjp=vjp, jvp=jvp, scalar=scalar, promote=promote, doc=doc)


def _arctan2_locals(b, y, x1, x2):
    r2 = b.add(b.multiply(x1, x1), b.multiply(x2, x2))
    return b.safe_div(x2, r2), b.negative(b.safe_div(x1, r2))


arctan2_p = _binary("arctan2", np.arctan2, "math.atan2({0}, {1})", _arctan2_locals,
                    doc="d/dx1 = x2 / (x1² + x2²), d/dx2 = -x1 / (x1² + x2²); both 0 at the origin.")
hypot_p = _binary("hypot", np.hypot, "math.hypot({0}, {1})",
                  lambda b, y, x1, x2: (b.safe_div(x1, y), b.safe_div(x2, y)),
                  doc="d/dx1 = x1 / hypot, d/dx2 = x2 / hypot; both 0 at the origin.")
logaddexp_p = _binary("logaddexp", np.logaddexp, "logaddexp({0}, {1})",
                      lambda b, y, x1, x2: (b.sigmoid(b.subtract(x1, x2)), b.sigmoid(b.subtract(x2, x1))),
                      doc="d/dx1 = sigmoid(x1 - x2), d/dx2 = sigmoid(x2 - x1) (NaN where both are the "
                          "same infinity).")
copysign_p = _binary("copysign", np.copysign, "math.copysign({0}, {1})",
                     lambda b, y, x1, x2: (b.multiply(b.copysign(1.0, x1), b.copysign(1.0, x2)), None),
                     doc="d/dx1 is +1 where x1 and x2 have the same sign bit, else -1 (so at x1 = ±0 it "
                         "is that of the side the zero's sign names); d/dx2 is 0.")
mod_p = _binary("mod", np.remainder, "({0} % {1})",
                lambda b, y, x1, x2: (_ONE, b.negative(b.floor_divide(x1, x2))), promote="same",
                doc="np.remainder: the sign of the divisor.  d/dx1 = 1, d/dx2 = -floor_divide(x1, x2).")
fmod_p = _binary("fmod", np.fmod, "fmod({0}, {1})",
                 lambda b, y, x1, x2: (_ONE, b.negative(b.rint(b.divide(b.subtract(x1, y), x2)))),
                 doc="np.fmod of floats: the sign of the dividend.  d/dx1 = 1, d/dx2 = -trunc(x1 / x2) "
                     "(computed as the integer (x1 - fmod) / x2).")
floor_divide_p = _binary("floor_divide", np.floor_divide, "floor_divide({0}, {1})",
                         lambda b, y, x1, x2: (None, None), promote="same",
                         doc="Piecewise constant: its derivatives are zero everywhere.")

# -- bitwise: integers and booleans, no derivative ---------------------------------------------


def _bitwise(name, nin, ref, scalar):
    return Primitive(name, shape=lambda *avals: same_shape(name, avals), ref=ref, vjp=None, jvp=None,
                     nin=nin, scalar=scalar, differentiable=False, promote="same", batch=batch_stack,
                     doc="Integers and booleans only; no derivative.")


bitwise_and_p = _bitwise("bitwise_and", 2, np.bitwise_and, "({0} & {1})")
bitwise_or_p = _bitwise("bitwise_or", 2, np.bitwise_or, "({0} | {1})")
bitwise_xor_p = _bitwise("bitwise_xor", 2, np.bitwise_xor, "({0} ^ {1})")
invert_p = _bitwise("invert", 1, np.invert, "(~{0})")          # integers: the builder inverts booleans
left_shift_p = _bitwise("left_shift", 2, np.left_shift, "left_shift({0}, {1})")
right_shift_p = _bitwise("right_shift", 2, np.right_shift, "right_shift({0}, {1})")

PRIMITIVES = (
    arcsin_p, arccos_p, arctan_p, sinh_p, cosh_p, arcsinh_p, arccosh_p, arctanh_p, log2_p, log10_p,
    floor_p, ceil_p, trunc_p, rint_p, arctan2_p, hypot_p, logaddexp_p, copysign_p, mod_p, fmod_p,
    floor_divide_p, bitwise_and_p, bitwise_or_p, bitwise_xor_p, invert_p, left_shift_p, right_shift_p,
)
