"""``jg.check_grads`` itself: it must fail on deliberately wrong derivative rules.

Each test builds a primitive from a correct one (``dataclasses.replace`` gives a
new, unregistered object, so the real primitives are never touched) with one
rule wrong, and asserts that the checker notices, and notices for the right
reason: the same checker passes the correct rule, and passes the wrong one in
the mode or order that does not use the wrong rule.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

import jitgrad as jg
from jitgrad import check
from jitgrad.graph import bind
from jitgrad.ops import elementwise as ew

X = np.random.default_rng(3).uniform(-2, 2, (3, 4))
TWO_OVER_SQRT_PI = 2 / math.sqrt(math.pi)


def _sin_like(name, jvp_local=None, vjp_local=None):
    """A copy of ``sin`` whose JVP and VJP multiply by ``*_local(b, x)`` (default cos x)."""
    jl = jvp_local or (lambda b, x: b.cos(x))
    vl = vjp_local or (lambda b, x: b.cos(x))
    prim = dataclasses.replace(
        ew.sin_p, name=name,
        jvp=lambda b, x_dots, y, x: b.safe_mul(x_dots[0], jl(b, x)),
        vjp=lambda b, y_bar, y, x: (b.safe_mul(y_bar, vl(b, x)),))
    return lambda x: jg.sum(bind(prim, x) * x)


def _erf_scaled(factor):
    """``erf`` with both derivative rules multiplied by ``factor``."""
    def local(b, x):
        return b.multiply(TWO_OVER_SQRT_PI * factor, b.exp(b.negative(b.multiply(x, x))))
    prim = dataclasses.replace(
        ew.erf_p, name="erf_scaled",
        jvp=lambda b, x_dots, y, x: b.safe_mul(x_dots[0], local(b, x)),
        vjp=lambda b, y_bar, y, x: (b.safe_mul(y_bar, local(b, x)),))
    return lambda x: bind(prim, x)


# ``cos`` with the right value and the wrong derivative (+sin instead of -sin): a
# sin whose local derivative is this one has right first derivatives and a wrong
# second derivative.
_cos_wrong_p = dataclasses.replace(
    ew.cos_p, name="cos_wrong_derivative",
    jvp=lambda b, x_dots, y, x: b.safe_mul(x_dots[0], b.sin(x)),
    vjp=lambda b, y_bar, y, x: (b.safe_mul(y_bar, b.sin(x)),))


def test_the_copies_of_correct_rules_pass():
    """The constructions below differ from these only in the one wrong rule."""
    jg.check_grads(_sin_like("sin_copy"), [X], order=2)
    jg.check_grads(_erf_scaled(1.0), [X], order=2)


def test_a_wrong_vjp_alone_fails():
    f = _sin_like("sin_bad_vjp", vjp_local=lambda b, x: b.multiply(b.cos(x), 1.01))
    with pytest.raises(AssertionError, match="VJP"):
        jg.check_grads(f, [X])
    with pytest.raises(AssertionError, match="VJP"):       # against finite differences directly
        jg.check_grads(f, [X], modes=("rev",))
    jg.check_grads(f, [X], modes=("fwd",))                 # the JVP rule is right


def test_a_wrong_jvp_alone_fails():
    f = _sin_like("sin_bad_jvp", jvp_local=lambda b, x: b.multiply(b.cos(x), 1.01))
    with pytest.raises(AssertionError, match="JVP"):
        jg.check_grads(f, [X])
    with pytest.raises(AssertionError, match="JVP"):
        jg.check_grads(f, [X], modes=("fwd",))
    jg.check_grads(f, [X], modes=("rev",))                 # the VJP rule is right


@pytest.mark.parametrize("factor", [1 + 1.5e-6, 1 - 1.5e-6])
def test_a_tiny_relative_error_fails_with_the_default_tolerances(factor):
    """erf's derivative off by a relative 1.5e-6: passed under the old rtol 1e-5, atol 1e-6."""
    with pytest.raises(AssertionError, match="JVP"):
        jg.check_grads(_erf_scaled(factor), [X])
    with pytest.raises(AssertionError, match="VJP"):
        jg.check_grads(_erf_scaled(factor), [X], modes=("rev",))


def test_the_default_tolerances_are_tight():
    assert check.DEFAULT_RTOL <= 1e-7 and check.DEFAULT_ATOL <= 1e-8


def test_a_wrong_second_derivative_fails_at_order_two_only():
    f = _sin_like("sin_bad_second", jvp_local=lambda b, x: bind(_cos_wrong_p, x),
                  vjp_local=lambda b, x: bind(_cos_wrong_p, x))
    jg.check_grads(f, [X], order=1)                        # first derivatives are right
    with pytest.raises(AssertionError, match="derivative of the"):
        jg.check_grads(f, [X], order=2)
    for mode in ("fwd", "rev"):
        with pytest.raises(AssertionError, match="derivative of the"):
            jg.check_grads(f, [X], order=2, modes=(mode,))


@pytest.mark.parametrize("mode", ["fwd", "rev"])
def test_nan_in_a_derivative_fails(mode):
    """A rule that gives NaN at some elements (here where x > 1) must not pass."""
    def nan_where_large(b, x):
        return b.where(b.greater(x, 1.0), float("nan"), b.cos(x))
    kw = {"jvp_local": nan_where_large} if mode == "fwd" else {"vjp_local": nan_where_large}
    f = _sin_like(f"sin_nan_{mode}", **kw)
    assert np.any(X > 1)
    with pytest.raises(AssertionError, match="nan"):
        jg.check_grads(f, [X], modes=(mode,))
    with pytest.raises(AssertionError):
        jg.check_grads(f, [X])


def test_every_output_element_is_compared():
    """A JVP wrong in one element of a non-scalar output fails (no sum hides it)."""
    prim = dataclasses.replace(
        ew.sin_p, name="sin_bad_one_element",
        jvp=lambda b, x_dots, y, x: b.safe_mul(
            x_dots[0], b.cos(x) * jg.constant(np.where(np.arange(12).reshape(3, 4) == 5, 1.001, 1.0))),
        vjp=ew.sin_p.vjp)
    with pytest.raises(AssertionError, match=r"index \(1, 1\)"):
        jg.check_grads(lambda x: bind(prim, x), [X], modes=("fwd",))
