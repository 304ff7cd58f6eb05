"""jg.custom_vjp and jg.custom_jvp: the user's rules replace the derivative with respect to
the arguments, on every target, to second order, under vmap and inside loops."""
from __future__ import annotations

import numpy as np
import pytest

import jitgrad as jg
from jitgrad.testing import check_target

X = np.array([1.0, -2.0, 0.5])
W0 = np.array([0.5, -2.0, 3.0])


@jg.custom_vjp
def straight_through(x):
    """sign(x) forward, identity backward."""
    return jg.sign(x)


straight_through.defvjp(lambda x: (jg.sign(x), None), lambda _, g: (g,))


@jg.custom_jvp
def log1pexp(x):
    """log(1 + e^x), whose derivative is computed as sigmoid(x): no inf / inf at large x."""
    return jg.log1p(jg.exp(x))


@log1pexp.defjvp
def _log1pexp_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    return log1pexp(x), t * jg.sigmoid(x)


def clip_gradient(lo, hi):
    fn = jg.custom_vjp(lambda x: x * 1.0, lambda x: (x * 1.0, None), lambda _, g: (jg.clip(g, lo, hi),))
    return fn


@pytest.mark.parametrize("target", ["numpy", "cpu"])
def test_a_straight_through_estimator_passes_the_gradient_through(target):
    w = jg.param("w", W0)
    x = jg.input("x", (3,))
    y = jg.sum(straight_through(x * w) * x)
    gx, gw = jg.grad(y, [x, w])
    got = check_target([x], [y, gx, gw], [X], target)
    np.testing.assert_allclose(got[1], W0 * X + np.sign(X * W0))     # d/dx: identity through sign
    np.testing.assert_allclose(got[2], X * X)


@pytest.mark.parametrize("target", ["numpy", "cpu"])
def test_a_custom_jvp_is_used_by_both_modes_and_stays_finite(target):
    x = jg.input("x", (3,))
    y = jg.sum(log1pexp(x * 400.0))
    (g,) = jg.grad(y, [x])
    (t,) = jg.jvp([y], [x], [np.ones(3)])
    got = check_target([x], [g, t], [X], target)
    sig = 0.5 * (1 + np.tanh(200 * X))                   # sigmoid(400 x), without overflow
    np.testing.assert_allclose(got[0], 400 * sig)                    # log1p(exp(400)) alone: inf / inf
    np.testing.assert_allclose(got[1], (400 * sig).sum())


def test_custom_rules_to_second_order_match_finite_differences():
    jg.check_grads(lambda v: jg.sum(log1pexp(v * 3.0) * jg.sin(v)), [X], order=2)

    def smooth(x):             # a custom_vjp whose rule is the true derivative: FD must agree
        f = jg.custom_vjp(lambda u: jg.sin(u) * u, lambda u: (jg.sin(u) * u, u),
                          lambda u, g: (g * (jg.cos(u) * u + jg.sin(u)),))
        return jg.sum(f(x) ** 2)
    jg.check_grads(smooth, [X], order=2, modes=("rev",))


def test_closed_over_params_get_their_derivatives_through_the_function():
    w = jg.param("w", W0)
    x = jg.input("x", (3,))
    clipped = clip_gradient(-0.1, 0.1)
    y = jg.sum(clipped(x * w) * 5.0)                       # d/d(xw) = 5, clipped to 0.1
    scaled = jg.custom_vjp(lambda u: u * w, lambda u: (u * w, None), lambda _, g: (g * 0.0,))
    z = jg.sum(scaled(x))                                  # the rule zeroes d/dx; d/dw stays u
    gx, gw = jg.grad(y, [x, w])
    zx, zw = jg.grad(z, [x, w])
    got = check_target([x], [gx, gw, zx, zw], [X], "cpu")
    np.testing.assert_allclose(got[0], 0.1 * W0)
    np.testing.assert_allclose(got[1], 0.1 * X)           # w reached only through x * w here
    np.testing.assert_array_equal(got[2], np.zeros(3))
    np.testing.assert_allclose(got[3], X)


def test_custom_functions_under_vmap_and_in_a_scan():
    xs = jg.input("xs", (4, 3))
    grads = jg.vmap(lambda r: jg.grad(jg.sum(straight_through(r) * r), [r])[0])(xs)
    h, _ = jg.scan(lambda c, r: (log1pexp(c + r), None), jg.constant(np.zeros(3)), xs)
    (gh,) = jg.grad(jg.sum(h), [xs])
    data = np.random.default_rng(0).normal(size=(4, 3))
    got = check_target([xs], [grads, gh], [data], "cpu")
    np.testing.assert_allclose(got[0], data + np.sign(data))
    jg.check_grads(lambda v: jg.sum(jg.scan(lambda c, r: (log1pexp(c + r), None), jg.constant(np.zeros(3)),
                                            v)[0]), [data], order=1)


def test_errors_name_the_function(tmp_path):
    x = jg.input("x", (3,))
    bad = jg.custom_vjp(lambda u: u * 2.0, lambda u: (u * 2.0, None), lambda _, g: (g, g))
    with pytest.raises(ValueError, match="bwd of .*lambda.* returns 2 cotangents for 1 arguments"):
        jg.grad(jg.sum(bad(x)), [x])
    wrong_shape = jg.custom_vjp(lambda u: u * 2.0, lambda u: (u * 2.0, None), lambda _, g: (jg.sum(g),))
    with pytest.raises(ValueError, match=r"value 0 of shape \(\), the arguments' has shape \(3,\)"):
        jg.grad(jg.sum(wrong_shape(x)), [x])
    with pytest.raises(TypeError, match="has no rule yet"):
        jg.custom_vjp(lambda u: u)(x)
    with pytest.raises(ValueError, match="save: node .* is jg.custom_jvp of log1pexp, whose rule is Python"):
        jg.save(tmp_path / "g.npz", log1pexp(x))
