"""Differentiation as graph transforms: the behaviours api.md promises."""
import numpy as np
import pytest

import jitgrad as jg
from jitgrad.testing import call_unmutated

rng = np.random.default_rng(1)


def run(inputs, outputs, *args):
    return jg.compile(inputs, outputs, target="numpy")(*args)


def test_broadcast_gradients_are_summed_back():
    x, b = jg.input("x", (None, 3)), jg.input("b", (3,))
    (gb,) = jg.grad(jg.sum((x + b) ** 2), [b])
    xv, bv = rng.normal(size=(5, 3)), rng.normal(size=3)
    np.testing.assert_allclose(run([x, b], gb, xv, bv), (2 * (xv + bv)).sum(0))


def test_weight_sharing_accumulates():
    w = jg.input("w", (2,))
    (g,) = jg.grad(jg.sum(w * w * w) + jg.sum(jg.sin(w)), [w])
    wv = np.array([0.3, -1.2])
    np.testing.assert_allclose(run([w], g, wv), 3 * wv ** 2 + np.cos(wv))


def test_stop_gradient_blocks_only_its_path():
    x = jg.input("x", ())
    (g,) = jg.grad(x * jg.stop_gradient(x) + x, [x])
    assert run([x], g, 3.0) == 4.0


def test_unused_wrt_gets_zeros():
    x, z = jg.input("x", (2,)), jg.input("z", (None, 3))
    gx, gz = jg.grad(jg.sum(x), [x, z])
    gxv, gzv = run([x, z], [gx, gz], np.ones(2), np.ones((4, 3)))
    np.testing.assert_array_equal(gzv, np.zeros((4, 3)))
    np.testing.assert_array_equal(gxv, np.ones(2))


def test_grad_of_non_scalar_raises():
    x = jg.input("x", (3,))
    with pytest.raises(ValueError, match=r"scalar.*\(3,\)"):
        jg.grad(x * 2, [x])


@pytest.mark.parametrize("build, message", [
    (lambda: jg.input("a", (3,)) + jg.input("b", (4,)), r"add.*\(3,\).*\(4,\)"),
    (lambda: jg.input("a", (2, 3)) @ jg.input("b", (2, 3)), r"matmul.*\(2, 3\).*\(2, 3\)"),
    (lambda: jg.sum(jg.input("a", (2, 3)), axis=2), r"sum.*axis 2"),
    (lambda: jg.input("a", (2, 3)).reshape(4, 2), r"reshape.*\(2, 3\).*\(4, 2\)"),
    (lambda: jg.input("a", (2, 3))[5], r"index 5.*size 2"),
    (lambda: jg.concatenate([jg.input("a", (2, 3)), jg.input("b", (2, 4))], axis=0), "concatenate"),
    (lambda: jg.input("a", (2,), dtype="complex128"), "complex128"),
    (lambda: jg.input("a", (2,), dtype="float33"), "float33"),
])
def test_invalid_graphs_fail_while_building(build, message):
    with pytest.raises((ValueError, TypeError, IndexError), match=message):
        build()


def test_jacobian_modes_agree():
    x = jg.input("x", (3,))
    y = jg.stack([jg.sin(x[0]) * x[1], x[2] ** 3, jg.exp(x[0] * x[2]), x[1]])
    jf, jr, ja = (jg.jacobian(y, x, mode) for mode in ("fwd", "rev", "auto"))
    xv = np.array([0.5, -1.0, 2.0])
    fwd, rev, auto = run([x], [jf, jr, ja], xv)
    np.testing.assert_allclose(fwd, rev, rtol=1e-14)
    np.testing.assert_allclose(fwd, auto, rtol=1e-14)
    assert fwd.shape == (4, 3)
    x0, x1, x2 = xv                   # and both are right, not merely equal: the Jacobian by hand
    e = np.exp(x0 * x2)
    np.testing.assert_allclose(fwd, [[np.cos(x0) * x1, np.sin(x0), 0.0],
                                     [0.0, 0.0, 3 * x2 ** 2],
                                     [x2 * e, 0.0, x0 * e],
                                     [0.0, 1.0, 0.0]], rtol=1e-14, atol=1e-15)


def test_hvp_matches_hessian():
    x, v = jg.input("x", (4,)), jg.input("v", (4,))
    y = jg.sum(jg.exp(x) * jg.sin(x)) + jg.sum(x) ** 3
    xv = rng.normal(size=4)
    h, hv = run([x, v], [jg.hessian(y, x), jg.hvp(y, x, v)], xv, np.arange(4.0))
    np.testing.assert_allclose(hv, h @ np.arange(4.0), rtol=1e-12)
    np.testing.assert_allclose(h, h.T, rtol=1e-12)
    # and both are right: (e^x sin x)'' = 2 e^x cos x on the diagonal, (sum x)^3 gives 6 sum(x)
    want = np.diag(2 * np.exp(xv) * np.cos(xv)) + 6 * xv.sum()
    np.testing.assert_allclose(h, want, rtol=1e-12, atol=1e-12)


def test_derivatives_of_any_order():
    x = jg.input("x", ())
    y = jg.sin(x)
    for _ in range(4):
        (y,) = jg.grad(y, [x])
    assert run([x], y, 0.7) == pytest.approx(np.sin(0.7), rel=1e-14)


@pytest.mark.parametrize("f", [
    lambda x: jg.where(x > 0, jg.sqrt(x), 0.0),
    lambda x: jg.where(x != 0, jg.sin(x) / x, 1.0),
    lambda x: jg.where(x > 0, jg.log(x), x),
])
def test_untaken_branches_never_leak_nan(f):
    x = jg.input("x", (3,))
    xv = np.array([-1.0, 0.0, 2.0])
    (g,) = jg.grad(jg.sum(f(x)), [x])
    rev, fwd, h = run([x], [g, jg.jvp([f(x)], [x], [np.ones(3)])[0], jg.hessian(jg.sum(f(x)), x)], xv)
    assert np.isfinite(rev).all() and np.isfinite(fwd).all() and np.isfinite(h).all()
    np.testing.assert_allclose(rev, fwd)


def test_the_api_examples_of_nan_safety():
    x = jg.input("x", ())
    g1 = jg.grad(jg.where(x > 0, jg.sqrt(x), 0.0), [x])[0]
    g2 = jg.grad(jg.where(x != 0, jg.sin(x) / x, 1.0), [x])[0]
    assert run([x], g1, -1.0) == 0.0
    assert run([x], g2, 0.0) == 0.0


def test_a_genuine_nan_still_propagates():
    x = jg.input("x", (2,))
    (g,) = jg.grad(jg.sum(jg.sqrt(x) * 2), [x])
    out = run([x], g, np.array([np.nan, 4.0]))
    assert np.isnan(out[0]) and out[1] == 0.5


def test_subgradient_conventions():
    x, y = jg.input("x", (3,)), jg.input("y", (3,))
    xv = np.array([0.0, 1.0, 2.0])
    grads = jg.grad(jg.sum(jg.relu(x)) + jg.sum(jg.abs(x)) + jg.sum(jg.maximum(x, y)), [x, y])
    gx, gy = run([x, y], grads, xv, np.array([0.0, 1.0, 3.0]))
    np.testing.assert_array_equal(gx, [0 + 0 + 0.5, 1 + 1 + 0.5, 1 + 1 + 0])
    np.testing.assert_array_equal(gy, [0.5, 0.5, 1.0])


def test_tied_max_splits_equally_in_both_modes():
    x = jg.input("x", (4,))
    xv = np.array([3.0, 1.0, 3.0, 3.0])
    (g,) = jg.grad(jg.max(x), [x])
    (t,) = jg.jvp([jg.max(x)], [x], [np.array([3.0, 100.0, 6.0, 0.0])])
    gv, tv = run([x], [g, t], xv)
    np.testing.assert_allclose(gv, [1 / 3, 0, 1 / 3, 1 / 3])
    assert tv == pytest.approx(3.0)            # the average of the tied tangents


def test_comparisons_and_sign_have_zero_derivatives():
    x = jg.input("x", (2,))
    y = jg.sum(jg.astype(x > 0, "float64") * 5 + jg.sign(x))
    (g,) = jg.grad(y, [x])
    np.testing.assert_array_equal(run([x], g, np.array([-1.0, 2.0])), [0.0, 0.0])


def test_vjp_and_jvp_take_several_outputs_and_inputs():
    a, b = jg.input("a", (2,)), jg.input("b", (2,))
    outs = [a * b, jg.sum(a)]
    ga, gb = jg.vjp(outs, [a, b], [np.array([1.0, 2.0]), 3.0])
    ta, tb = jg.jvp(outs, [a, b], [np.ones(2), np.zeros(2)])
    av, bv = np.array([1.0, 2.0]), np.array([5.0, 7.0])
    res = run([a, b], [ga, gb, ta, tb], av, bv)
    np.testing.assert_allclose(res[0], [1 * 5 + 3, 2 * 7 + 3])
    np.testing.assert_allclose(res[1], [1.0, 4.0])
    np.testing.assert_allclose(res[2], bv)
    assert res[3] == 2.0


def test_derivatives_through_integer_indexing_and_reductions_with_call_time_sizes():
    x = jg.input("x", (None, 3))
    y = jg.sum(jg.mean(x[:, [0, 2]] ** 2, axis=0)) + jg.sum(x.reshape(-1)[1:])
    jg.check_grads(lambda v: jg.sum(jg.mean(v[:, [0, 2]] ** 2, axis=0)), [rng.normal(size=(4, 3))])
    (g,) = jg.grad(y, [x])
    xv = rng.normal(size=(5, 3))
    expected = np.zeros((5, 3))
    expected[:, [0, 2]] = 2 * xv[:, [0, 2]] / 5
    expected.reshape(-1)[1:] += 1
    np.testing.assert_allclose(run([x], g, xv), expected)


@pytest.mark.parametrize("target", ["numpy", "cpu"])
def test_checkpoint_changes_no_value_or_derivative(target):
    W = jg.param("W", np.random.default_rng(0).normal(size=(3, 3)) * 0.7)
    layer = lambda h: jg.tanh(h @ W + 0.5)            # noqa: E731  (closes over the param W)
    results = []
    for wrap in (lambda fn: fn, jg.checkpoint):
        x = jg.input("x", (None, 3))
        h = x
        for _ in range(3):
            h = wrap(layer)(h)
        loss = jg.sum(h * h)
        outs = [loss, *jg.grad(loss, [x, W]), jg.hvp(loss, x, np.ones((2, 3)))]
        results.append(call_unmutated(jg.compile([x], outs, target=target), np.full((2, 3), 0.3)))
    for plain, checkpointed in zip(*results):
        np.testing.assert_allclose(checkpointed, plain, rtol=1e-13, atol=1e-15)


def test_checkpointed_reverse_pass_recomputes_instead_of_reading_forward_values():
    x = jg.input("x", (4,))
    y = jg.checkpoint(lambda h: jg.sin(jg.exp(h)))(x)
    (g,) = jg.grad(jg.sum(y), [x])
    names = [e.op.name for e in jg.compile([x], [y, g], target="numpy").schedule.eqns]
    assert names.count("exp") == 2 and "barrier" in names


def test_softplus_derivative_is_one_half_at_zero_and_exact_far_out():
    x = jg.input("x", (5,))
    (g,) = jg.grad(jg.sum(jg.softplus(x)), [x])
    (t,) = jg.jvp([jg.softplus(x)], [x], [np.ones(5)])
    points = np.array([-800.0, -1.0, 0.0, 1.0, 800.0])
    want = np.array([0.0, 1 / (1 + np.e), 0.5, 1 / (1 + np.exp(-1.0)), 1.0])
    for target in ("numpy", "cpu"):
        for got in call_unmutated(jg.compile([x], [g, t], target=target), points):
            np.testing.assert_allclose(got, want, rtol=1e-15)
