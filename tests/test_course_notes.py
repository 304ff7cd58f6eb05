"""Every worked example of the course notes in /work/shared/seeds, with the notes' numbers.

000: lecture notes (Scardapane), 001: slides (Merkulov), 003: tutorial (Daniel),
004: paper (Andrews, Hu, Ye).  Each test names its source; numbers quoted from
the notes are written as literals, the rest are the notes' formulas.
"""
import math

import numpy as np
import pytest

import jitgrad as jg

linalg = getattr(jg, "linalg", None)
needs_linalg = pytest.mark.skipif(linalg is None, reason="jg.linalg is not built yet")


def run(inputs, outputs, *args):
    """Compile on the numpy reference target and call once."""
    return jg.compile(inputs, outputs, target="numpy")(*args)


def scalars(*names):
    return [jg.input(n, ()) for n in names]


# -- 001: L(w1, w2) = w2 log w1 + sqrt(w2 log w1), forward and reverse mode -------

def _L(w1, w2):
    v2 = w2 * jg.log(w1)
    return v2 + jg.sqrt(v2)


@pytest.mark.parametrize("w1v, w2v", [(2.0, 3.0), (5.0, 0.5), (math.e, 4.0)])
def test_001_L_forward_and_reverse_mode(w1v, w2v):
    w1, w2 = scalars("w1", "w2")
    L = _L(w1, w2)
    fwd = [jg.jvp([L], [w1, w2], seed)[0] for seed in ([1.0, 0.0], [0.0, 1.0])]
    got = run([w1, w2], fwd + jg.grad(L, [w1, w2]), w1v, w2v)
    v2 = w2v * math.log(w1v)
    want = [w2v / w1v * (1 + 0.5 / math.sqrt(v2)), math.log(w1v) * (1 + 0.5 / math.sqrt(v2))]
    np.testing.assert_allclose(got, want + want, rtol=1e-12)


@pytest.mark.parametrize("mode", ["fwd", "rev"])
def test_001_jacobian_of_Ax_in_either_mode(mode):
    A = np.random.default_rng(0).normal(size=(4, 6))
    x = jg.input("x", (6,))
    np.testing.assert_allclose(run([x], jg.jacobian(A @ x, x, mode=mode), np.ones(6)), A)


@needs_linalg
def test_001_linear_solve_adjoint():
    """x = A^-1 b:  dL/dA = -A^-T dL/dx x^T,  dL/db = A^-T dL/dx  (here L = <c, x>)."""
    rng = np.random.default_rng(1)
    Av, bv, c = rng.normal(size=(3, 3)) + 3 * np.eye(3), rng.normal(size=3), rng.normal(size=3)
    A, b = jg.input("A", (3, 3)), jg.input("b", (3,))
    gA, gb = run([A, b], jg.grad(jg.sum(c * linalg.solve(A, b)), [A, b]), Av, bv)
    xv, lam = np.linalg.solve(Av, bv), np.linalg.solve(Av.T, c)
    np.testing.assert_allclose(gA, -np.outer(lam, xv), rtol=1e-10)
    np.testing.assert_allclose(gb, lam, rtol=1e-10)


@needs_linalg
def test_001_svd_adjoint():
    """dL/dW = U dL/dSigma V^T for L depending on the singular values only."""
    Wv, c = np.random.default_rng(2).normal(size=(4, 3)), np.array([3.0, 2.0, 1.0])
    W = jg.input("W", (4, 3))
    (gW,) = run([W], jg.grad(jg.sum(c * linalg.svd(W)[1]), [W]), Wv)
    U, _, Vt = np.linalg.svd(Wv, full_matrices=False)
    np.testing.assert_allclose(gW, U @ np.diag(c) @ Vt, rtol=1e-10, atol=1e-12)


# -- 003: tutorial ---------------------------------------------------------------

@pytest.mark.parametrize("av, bv", [(2.0, 3.0), (-1.5, 0.25)])
def test_003_d_equals_a_times_a_plus_b(av, bv):
    a, b = scalars("a", "b")
    c = a + b
    d = a * c
    np.testing.assert_allclose(run([a, b], jg.grad(d, [a, b]), av, bv), [2 * av + bv, av])


def test_003_mean_of_3_x_plus_2_squared():
    x = jg.input("x", (2, 2))
    o = jg.mean(3 * (x + 2) ** 2)
    ov, gx = run([x], [o] + jg.grad(o, [x]), np.ones((2, 2)))
    assert ov == 27.0 and np.all(gx == 4.5)


def test_003_func_derivative_at_1_5():
    x = jg.input("x", ())
    f = 3 * x ** 3 - 5 * x ** 2
    fv, dv = run([x], [f] + jg.grad(f, [x]), 1.5)
    h, func = 1e-5, lambda t: 3 * t ** 3 - 5 * t ** 2
    assert dv == pytest.approx(5.25, rel=1e-14)
    assert (func(1.5 + h) - func(1.5 - h)) / (2 * h) == pytest.approx(float(dv), rel=1e-9)


def test_003_vjp_with_explicit_cotangent():
    """y = x doubled 10 times (the notes double until ||y|| >= 1000); v = [0.1, 1, 1e-4]."""
    x = jg.input("x", (3,))
    y = x
    for _ in range(10):
        y = y * 2
    (gx,) = run([x], jg.vjp([y], [x], [np.array([0.1, 1.0, 0.0001])]), np.ones(3))
    np.testing.assert_allclose(gx, [102.4, 1024.0, 0.1024], rtol=1e-14)


def test_003_detach_is_stop_gradient():
    x = jg.input("x", (3,))
    y = jg.stop_gradient(x)
    yv, g_detached, g_half = run([x], [y] + jg.grad(jg.sum(y ** 2), [x]) + jg.grad(jg.sum(x * y), [x]),
                                 np.array([1.0, -2.0, 3.0]))
    np.testing.assert_array_equal(yv, [1.0, -2.0, 3.0])        # x.eq(y).all() -> True
    np.testing.assert_array_equal(g_detached, 0.0)
    np.testing.assert_array_equal(g_half, yv)                  # d(x * const)/dx, not 2x


def test_003_dual_numbers_product_rule():
    """(x + eps x')(y + eps y') = xy + eps (x'y + xy')."""
    x, y = scalars("x", "y")
    np.testing.assert_allclose(run([x, y], jg.jvp([x * y], [x, y], [0.5, -2.0]), 3.0, 7.0),
                               [0.5 * 7.0 + 3.0 * -2.0])


def test_003_matrix_calculus_identities():
    rng = np.random.default_rng(3)
    av, Av, Bv, xv, sv = (rng.normal(size=s) for s in [(4,), (4, 4), (4, 4), (4,), (4,)])
    Wv = Av @ Av.T + np.eye(4)                                           # symmetric
    x, s, A = jg.input("x", (4,)), jg.input("s", (4,)), jg.input("A", (4, 4))
    r = x - jg.matmul(Av, s)
    outs = (jg.grad(jg.sum(x * av), [x]) + jg.grad(x @ (Av @ x), [x])
            + jg.grad(r @ (Wv @ r), [s, x]) + jg.grad(jg.sum((A @ Bv) * np.eye(4)), [A]))
    g_ax, g_xAx, g_s, g_x, g_trAB = run([x, s, A], outs, xv, sv, Av)
    rv = xv - Av @ sv
    np.testing.assert_allclose(g_ax, av)                                  # d x^T a / dx = a
    np.testing.assert_allclose(g_xAx, (Av + Av.T) @ xv)                   # (A + A^T) x
    np.testing.assert_allclose(g_s, -2 * Av.T @ Wv @ rv)                  # -2 A^T W (x - As)
    np.testing.assert_allclose(g_x, 2 * Wv @ rv)                          # 2 W (x - As)
    np.testing.assert_allclose(g_trAB, Bv.T)                              # d tr(AB)/dA = B^T


@needs_linalg
def test_003_d_log_det_A():
    Av = np.random.default_rng(4).normal(size=(3, 3)) + 3 * np.eye(3)
    A = jg.input("A", (3, 3))
    (g,) = run([A], jg.grad(linalg.slogdet(A)[1], [A]), Av)
    np.testing.assert_allclose(g, np.linalg.inv(Av).T, rtol=1e-10)       # A^-T


# -- 004: paper --------------------------------------------------------------------

def test_004_forward_accumulation_of_ax_plus_b():
    x, a, b = scalars("x", "a", "b")
    f = a * x + b
    seeds = ([1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0])
    got = run([x, a, b], [f] + [jg.jvp([f], [x, a, b], s)[0] for s in seeds], 4.0, 2.0, 5.0)
    np.testing.assert_array_equal(got, [13.0, 2.0, 4.0, 1.0])           # f, df/dx, df/da, df/db


def test_004_reverse_accumulation_of_x_plus_y_pow_z_minus_w():
    x, y, z, w = scalars("x", "y", "z", "w")
    a = (x + y) ** z - w
    fwd = [jg.jvp([a], [x, y, z, w], np.eye(4)[k])[0] for k in range(4)]
    got = run([x, y, z, w], [a] + jg.grad(a, [x, y, z, w]) + fwd, 3.0, 4.0, 2.0, 2.0)
    want = [14.0, 14.0, 49 * math.log(7), -1.0]             # z (x+y)^(z-1), (x+y)^z log(x+y), -1
    np.testing.assert_allclose(got, [47.0] + want + want, rtol=1e-14)


def test_004_sigmoid_backward_is_b_times_1_minus_b():
    s = jg.input("s", (5,))
    sv = np.linspace(-3, 3, 5)
    (g,) = run([s], jg.grad(jg.sum(jg.sigmoid(s)), [s]), sv)
    bv = 1 / (1 + np.exp(-sv))
    np.testing.assert_allclose(g, bv * (1 - bv), rtol=1e-14)


def test_004_newton_raphson_with_ad():
    """x_{n+1} = x_n - f(x_n) / f'(x_n) with f' from jg.grad; Newton's own x^3 - 2x - 5."""
    x = jg.input("x", ())
    f = x ** 3 - 2 * x - 5
    step = jg.compile([x], x - f / jg.grad(f, [x])[0], target="numpy")
    xv = 2.0
    for _ in range(6):
        xv = float(step(xv))
    assert xv == pytest.approx(2.0945514815423265, rel=1e-15)


# -- 000: lecture notes --------------------------------------------------------------

def test_000_jacobian_of_x_at_w_has_four_indices():
    """torch.autograd.functional.jacobian(lambda w: x @ w, w).shape -> (3, 5, 4, 5)."""
    xv = np.random.default_rng(5).normal(size=(3, 4))
    x, w = jg.input("x", (3, 4)), jg.input("w", (4, 5))
    J = run([x, w], jg.jacobian(x @ w, w), xv, np.ones((4, 5)))
    assert J.shape == (3, 5, 4, 5) and J.reshape(15, 20).shape == (15, 20)
    np.testing.assert_allclose(J, np.einsum("ik,jl->ijkl", xv, np.eye(5)))


def test_000_vjps_of_a_linear_projection():
    """f = W x: vjp_x = W^T v, vjp_W = v x^T (the notes write x v^T, in their layout)."""
    rng = np.random.default_rng(6)
    Wv, xv, v = rng.normal(size=(2, 3)), rng.normal(size=3), rng.normal(size=2)
    W, x = jg.input("W", (2, 3)), jg.input("x", (3,))
    gW, gx = run([W, x], jg.vjp([W @ x], [W, x], [v]), Wv, xv)
    np.testing.assert_allclose(gx, Wv.T @ v)
    np.testing.assert_allclose(gW, np.outer(v, xv))


def test_000_elementwise_vjp_is_phi_prime_times_v():
    xv, v = np.linspace(-2, 2, 7), np.arange(7.0)
    x = jg.input("x", (7,))
    (g,) = run([x], jg.vjp([jg.tanh(x)], [x], [v]), xv)
    np.testing.assert_allclose(g, (1 - np.tanh(xv) ** 2) * v)


def test_000_sigmoid_derivative_bounded_by_quarter_and_relu_derivative():
    s = jg.input("s", (9,))
    sv = np.array([-50.0, -3, -1, -1e-3, 0, 1e-3, 1, 3, 50])
    d_sig, d_relu = run([s], jg.grad(jg.sum(jg.sigmoid(s)), [s]) + jg.grad(jg.sum(jg.relu(s)), [s]), sv)
    assert d_sig.max() == 0.25 and d_sig[4] == 0.25 and np.all(d_sig >= 0)
    np.testing.assert_array_equal(d_relu, sv > 0)                        # 1 if s > 0 else 0


def test_000_relu_variants_follow_their_definitions():
    s = jg.input("s", (7,))
    sv = np.linspace(-3, 3, 7)
    phi = np.array([0.5 * (1 + math.erf(t / math.sqrt(2))) for t in sv])    # Gaussian CDF
    got = run([s], [jg.leaky_relu(s, 0.01), jg.elu(s), jg.gelu(s), jg.silu(s)], sv)
    want = [np.where(sv > 0, sv, 0.01 * sv), np.where(sv > 0, sv, np.expm1(sv)),
            sv * phi, sv / (1 + np.exp(-sv))]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


def test_000_forward_tangents_and_reverse_mode_agree_on_three_layers():
    """h_i = tanh(W_i h_{i-1}), y = <h_3, 1>: forward-mode tangent matrices vs backprop."""
    rng = np.random.default_rng(7)
    Wv = [rng.normal(size=s) for s in [(4, 3), (5, 4), (2, 5)]]
    W = [jg.input(f"W{i}", w.shape) for i, w in enumerate(Wv)]
    h = rng.normal(size=3)
    for Wi in W:
        h = jg.tanh(Wi @ h)
    y = jg.sum(h)
    got = run(W, jg.grad(y, W) + [jg.jacobian(y, Wi, mode="fwd") for Wi in W], *Wv)
    for rev, fwd in zip(got[:3], got[3:]):
        np.testing.assert_allclose(fwd, rev, rtol=1e-12)


def test_000_shared_weight_gets_the_sum_of_both_gradients():
    rng = np.random.default_rng(8)
    Wv, xv = rng.normal(size=(3, 3)), rng.normal(size=3)
    W, W1, W2 = (jg.input(n, (3, 3)) for n in ("W", "W1", "W2"))
    shared, split = jg.sum(W @ jg.tanh(W @ xv)), jg.sum(W2 @ jg.tanh(W1 @ xv))
    g, g1, g2 = run([W, W1, W2], jg.grad(shared, [W]) + jg.grad(split, [W1, W2]), Wv, Wv, Wv)
    np.testing.assert_allclose(g, g1 + g2, rtol=1e-12)
