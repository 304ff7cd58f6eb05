"""jg.linalg: values against NumPy, derivatives against finite differences,
the degenerate cases the anchors get wrong, and errors for bad input.

Every rule is also in the primitive table, jitgrad.testing.CASES, which
tests/test_primitives.py runs (forward, float32, FD to second order, cpu against
numpy); here are the cases that need more than one call: batches, broadcasting,
the textbook formulas, repeated and zero singular values, singular and
indefinite matrices, and the one-factorization promise.
"""
from __future__ import annotations

import numpy as np
import pytest

import jitgrad as jg
from jitgrad import linalg as la
from jitgrad.testing import call_unmutated

TARGETS = ["numpy", "cpu"]
rng = np.random.default_rng(7)


def well_conditioned(*shape):
    n = shape[-1]
    return rng.normal(size=shape) + n * np.eye(n)


def spd(*shape):
    m = rng.normal(size=shape)
    return m @ np.swapaxes(m, -1, -2) + shape[-1] * np.eye(shape[-1])


def run(inputs, outputs, *args, target="numpy"):
    return call_unmutated(jg.compile(inputs, outputs, target=target), *args)


def rotated(values, seed=0):
    """Q diag(values) Qᵀ for a random orthogonal Q: repeated values, not a diagonal matrix."""
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(len(values),) * 2))
    return q @ np.diag(values) @ q.T


# -- values --------------------------------------------------------------------

@pytest.mark.parametrize("target", TARGETS)
def test_batched_values_match_numpy(target):
    A, B, S = well_conditioned(2, 3, 4, 4), rng.normal(size=(2, 3, 4, 2)), spd(2, 4, 4)
    W = rng.normal(size=(2, 5, 3))
    a, b, s, w = (jg.input(n, v.shape) for n, v in zip("absw", (A, B, S, W)))
    sign, logdet = la.slogdet(a)
    evals, evecs = la.eigh(s)
    u, sv, vt = la.svd(w)
    outs = [la.solve(a, b), la.inv(a), la.det(a), sign, logdet, la.cholesky(s), evals,
            evecs @ (evals[..., None] * jg.transpose(evecs, (0, 2, 1))), u @ (sv[..., None] * vt), sv]
    got = run([a, b, s, w], outs, A, B, S, W, target=target)
    want = [np.linalg.solve(A, B), np.linalg.inv(A), np.linalg.det(A), *np.linalg.slogdet(A),
            np.linalg.cholesky(S), np.linalg.eigvalsh(S), S, W, np.linalg.svd(W, compute_uv=False)]
    for g, e in zip(got, want):
        np.testing.assert_allclose(g, e, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("target", TARGETS)
def test_solve_broadcasts_like_numpy(target):
    A, bvec, Bmat = well_conditioned(3, 4, 4), rng.normal(size=4), rng.normal(size=(4, 2))
    a, b1, b2 = jg.input("a", A.shape), jg.input("b1", (4,)), jg.input("b2", (4, 2))
    x1, x2 = run([a, b1, b2], [la.solve(a, b1), la.solve(a, b2)], A, bvec, Bmat, target=target)
    np.testing.assert_allclose(x1, np.linalg.solve(A, bvec), rtol=1e-12)
    np.testing.assert_allclose(x2, np.linalg.solve(A, Bmat), rtol=1e-12)
    stack = jg.input("stack", (3, 4))                   # one vector per matrix: (..., n)
    (x3,) = run([a, stack], [la.solve(a, stack)], A, Bmat.T[:1].repeat(3, 0), target=target)
    np.testing.assert_allclose(x3, np.linalg.solve(A, Bmat.T[:1].repeat(3, 0)[..., None])[..., 0], rtol=1e-12)


def test_call_time_batch_sizes():
    A = well_conditioned(5, 3, 3)
    a = jg.input("a", (None, 3, 3))
    (got,) = run([a], [la.det(a)], A, target="cpu")
    np.testing.assert_allclose(got, np.linalg.det(A), rtol=1e-12)


@pytest.mark.parametrize("target", TARGETS)
def test_norms_match_numpy(target):
    v, M = rng.normal(size=5), rng.normal(size=(4, 3))
    x, m = jg.input("x", (5,)), jg.input("m", (4, 3))
    cases = [(x, v, None), (x, v, 1), (x, v, np.inf), (x, v, -np.inf), (x, v, 3),
             (m, M, None), (m, M, "fro"), (m, M, "nuc"), (m, M, 2), (m, M, 1), (m, M, np.inf)]
    got = run([x, m], [la.norm(t, o) for t, _, o in cases], v, M, target=target)
    for g, (_, value, o) in zip(got, cases):
        np.testing.assert_allclose(g, np.linalg.norm(value, o), rtol=1e-12)
    (rows,) = run([m], [la.norm(m, axis=1, keepdims=True)], M, target=target)
    np.testing.assert_allclose(rows, np.linalg.norm(M, axis=1, keepdims=True), rtol=1e-12)


# -- derivatives -----------------------------------------------------------------

@pytest.mark.parametrize("target", TARGETS)
def test_solve_gradient_is_the_textbook_adjoint(target):
    """L = <c, x>, x = A⁻¹ b:  dL/db = A⁻ᵀ c,  dL/dA = -A⁻ᵀ c xᵀ."""
    A, bv, c = well_conditioned(4, 4), rng.normal(size=4), rng.normal(size=4)
    a, b = jg.input("a", (4, 4)), jg.input("b", (4,))
    gA, gb = run([a, b], jg.grad(jg.sum(c * la.solve(a, b)), [a, b]), A, bv, target=target)
    lam = np.linalg.solve(A.T, c)
    np.testing.assert_allclose(gb, lam, rtol=1e-12)
    np.testing.assert_allclose(gA, -np.outer(lam, np.linalg.solve(A, bv)), rtol=1e-12)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("shape", [(4, 4), (5, 3), (3, 5)])
def test_svd_gradient_of_a_singular_value_loss(target, shape):
    """L = <c, s>:  dL/dW = U diag(c) Vᵀ."""
    W = rng.normal(size=shape)
    c = np.arange(1.0, min(shape) + 1)
    w = jg.input("w", shape)
    (g,) = run([w], jg.grad(jg.sum(c * la.svd(w)[1]), [w]), W, target=target)
    U, _, Vt = np.linalg.svd(W, full_matrices=False)
    np.testing.assert_allclose(g, U @ np.diag(c) @ Vt, rtol=1e-10, atol=1e-12)


def test_batched_derivatives_match_finite_differences():
    A, M = well_conditioned(2, 3, 3), rng.normal(size=(2, 3, 3))
    jg.check_grads(lambda a, b: la.solve(a, b), [A, rng.normal(size=(2, 3, 2))], order=2)
    jg.check_grads(lambda a: la.slogdet(a)[1], [A], order=2)
    jg.check_grads(lambda m: la.cholesky(m @ jg.transpose(m, (0, 2, 1)) + 3 * np.eye(3)), [M])
    jg.check_grads(lambda m: la.eigh(m)[0], [M])
    jg.check_grads(lambda m: la.svd(m)[1], [M])


@pytest.mark.parametrize("shape", [(4, 4), (5, 3), (3, 5)])
def test_gauge_invariant_svd_losses_match_finite_differences(shape):
    W, C = rng.normal(size=shape), rng.normal(size=shape)

    def loss(w):
        u, s, vt = la.svd(w)
        return jg.sum(C * ((u * jg.tanh(s)) @ vt))
    jg.check_grads(loss, [W], order=2)


def test_gauge_invariant_eigh_loss_matches_finite_differences():
    S, C = rng.normal(size=(4, 4)), rng.normal(size=(4, 4))

    def loss(a):
        w, v = la.eigh(a)
        return jg.sum(C * ((v * jg.sin(w)) @ v.T))
    jg.check_grads(loss, [S], order=2)


def test_derivatives_on_the_cpu_target_match_finite_differences():
    A, W = well_conditioned(3, 3), rng.normal(size=(4, 3))
    jg.check_grads(lambda a, b: la.solve(a, b), [A, rng.normal(size=(3, 2))], target="cpu")
    jg.check_grads(lambda w: la.svd(w)[0] * la.svd(w)[1], [W], target="cpu")
    jg.check_grads(lambda m: la.cholesky(m @ m.T + 3 * np.eye(3)), [A], target="cpu")
    jg.check_grads(lambda m: la.eigh(m)[0], [A], target="cpu")
    jg.check_grads(lambda a: la.inv(a) * la.det(a) + la.slogdet(a)[1], [A], target="cpu")


@pytest.mark.parametrize("target", TARGETS)
def test_value_and_gradient_of_solve_factorize_once(target):
    a, b = jg.input("a", (4, 4)), jg.input("b", (4, 3))
    x = la.solve(a, b)
    f = jg.compile([a, b], [jg.sum(x * x)] + jg.grad(jg.sum(x * x), [a, b]), target=target)
    assert str(f.schedule).count("= lu ") == 1
    assert str(f.schedule).count("= lu_solve ") == 2       # the value, and Aᵀ for the gradient


# -- degenerate cases ----------------------------------------------------------

DEGENERATE = {
    "repeated": np.diag([1.0, 1.0, 2.0, 3.0]),
    "repeated_rotated": rotated([1.0, 1.0, 2.0, 3.0]),
    "zeros": np.diag([0.0, 0.0, 1.0, 2.0]),
}


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("name", sorted(DEGENERATE))
def test_singular_value_losses_are_exact_at_repeated_and_zero_values(target, name):
    """Symmetric functions of s are differentiable; their gradient is U h'(S) Vᵀ.  Second
    derivatives there are finite (JAX gives NaN) but not exact: the F terms of
    equal values are dropped, and the exact limit would need h''."""
    A = DEGENERATE[name]
    w = jg.input("w", A.shape)
    loss = jg.sum(jg.square(la.svd(w)[1]))                 # ||A||_F², gradient 2A
    grads = run([w], jg.grad(loss, [w]) + [jg.hvp(loss, w, np.ones_like(A))], A, target=target)
    np.testing.assert_allclose(grads[0], 2 * A, atol=1e-12)
    assert np.all(np.isfinite(grads[1]))
    if name == "zeros":         # the vectors of zero singular values pair up arbitrarily
        return
    c = np.array([4.0, 3.0, 2.0, 2.0])      # weights equal on equal values: a symmetric function
    (g,) = run([w], jg.grad(jg.sum(c * la.svd(w)[1]), [w]), A, target=target)
    U, _, Vt = np.linalg.svd(A)
    np.testing.assert_allclose(g, U @ np.diag(c) @ Vt, atol=1e-12)


@pytest.mark.parametrize("name", ["repeated", "repeated_rotated"])
def test_singular_value_losses_match_finite_differences_at_repeated_values(name):
    jg.check_grads(lambda w: jg.sum(jg.exp(la.svd(w)[1])), [DEGENERATE[name]])


@pytest.mark.parametrize("name", ["repeated", "repeated_rotated"])
def test_eigenvalue_losses_match_finite_differences_at_repeated_values(name):
    jg.check_grads(lambda a: jg.sum(jg.exp(la.eigh(a)[0])), [DEGENERATE[name]])


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("decomposition", ["svd", "eigh"])
def test_vector_losses_at_repeated_values_are_finite(target, decomposition):
    """Where the vectors are not unique, gradients of vector losses are finite, never NaN."""
    A, C = DEGENERATE["repeated_rotated"], rng.normal(size=(4, 4))
    x = jg.input("x", (4, 4))
    if decomposition == "svd":
        u, s, vt = la.svd(x)
        loss = jg.sum(C * ((u * jg.tanh(s)) @ vt)) + jg.sum(C[0] * u[:, 0])
    else:
        w, v = la.eigh(x)
        loss = jg.sum(C * ((v * jg.sin(w)) @ v.T)) + jg.sum(C[0] * v[:, 0])
    (g,) = run([x], jg.grad(loss, [x]), A, target=target)
    assert np.all(np.isfinite(g))


def test_rank_deficient_svd_with_a_loss_blind_to_the_null_space():
    """A 5x3 matrix of rank 2: a loss of the leading two singular triplets is smooth."""
    W = rng.normal(size=(5, 2)) @ rng.normal(size=(2, 3))
    C = rng.normal(size=(5, 3))

    def loss(w):
        u, s, vt = la.svd(w)
        return jg.sum(C * ((u[:, :2] * s[:2]) @ vt[:2]))
    jg.check_grads(loss, [W])
    w = jg.input("w", W.shape)
    for target in TARGETS:
        (g,) = run([w], jg.grad(loss(w), [w]), W, target=target)
        assert np.all(np.isfinite(g))


# -- bad input ----------------------------------------------------------------------

@pytest.mark.parametrize("target", TARGETS)
def test_singular_matrices(target):
    A = np.array([[1.0, 2.0], [2.0, 4.0]])
    a, b = jg.input("a", (2, 2)), jg.input("b", (2,))
    with pytest.raises(np.linalg.LinAlgError, match="Singular"):
        run([a, b], [la.solve(a, b)], A, np.ones(2), target=target)
    with pytest.raises(np.linalg.LinAlgError, match="Singular"):
        run([a], [la.inv(a)], A, target=target)
    d, (sign, logdet) = run([a], [la.det(a), *la.slogdet(a)], A, target=target)[0], \
        run([a], list(la.slogdet(a)), A, target=target)
    assert d == 0 and sign == 0 and logdet == -np.inf
    # det is a polynomial: its gradient at a singular A is the cofactor matrix.
    np.testing.assert_allclose(run([a], jg.grad(la.det(a), [a]), A, target=target)[0],
                               [[4.0, -2.0], [-2.0, 1.0]], atol=1e-12)
    # log|det| is not differentiable there.
    with pytest.raises(np.linalg.LinAlgError, match="Singular"):
        run([a], jg.grad(la.slogdet(a)[1], [a]), A, target=target)


@pytest.mark.parametrize("target", TARGETS)
def test_cholesky_of_an_indefinite_matrix_raises(target):
    a = jg.input("a", (2, 2))
    with pytest.raises(np.linalg.LinAlgError, match="positive definite"):
        run([a], [la.cholesky(a)], np.array([[1.0, 2.0], [2.0, 1.0]]), target=target)


def test_shape_errors_name_the_operand():
    with pytest.raises(ValueError, match=r"solve: a must be square .*\(3, 4\)"):
        la.solve(jg.input("a", (3, 4)), jg.input("b", (3,)))
    with pytest.raises(ValueError, match=r"solve: b of shape \(4,\) does not match a of shape \(3, 3\)"):
        la.solve(jg.input("a", (3, 3)), jg.input("b", (4,)))
    with pytest.raises(ValueError, match="known when the graph is built"):
        la.det(jg.input("a", (None, None)))
    with pytest.raises(ValueError, match="stack of matrices"):
        la.inv(jg.input("v", (3,)))
    with pytest.raises(ValueError, match="invalid order"):
        la.norm(jg.input("v", (3,)), "fro")


def test_saved_graphs_round_trip(tmp_path):
    a, b = jg.input("a", (3, 3)), jg.input("b", (3,))
    u, s, vt = la.svd(a)
    outs = [la.solve(a, b), la.slogdet(a)[1], u @ vt, *la.eigh(a)] + jg.grad(jg.sum(la.solve(a, b)), [a, b])
    jg.save(tmp_path / "linalg.npz", outs)
    loaded = jg.load(tmp_path / "linalg.npz")
    A, B = well_conditioned(3, 3), rng.normal(size=3)
    got = run(sorted(jg.inputs_of(loaded), key=lambda t: t.name), loaded, A, B)
    for g, w in zip(got, run([a, b], outs, A, B)):
        np.testing.assert_array_equal(g, w)


def test_norm_gradient_at_zero_is_zero():
    x, m = jg.input("x", (3,)), jg.input("m", (2, 2))
    g = run([x, m], jg.grad(la.norm(x), [x]) + jg.grad(la.norm(m, "fro"), [m]), np.zeros(3), np.zeros((2, 2)))
    for part in g:
        np.testing.assert_array_equal(part, 0.0)


def test_nuclear_norm_gradient_is_u_vt():
    W = rng.normal(size=(4, 3))
    w = jg.input("w", W.shape)
    (g,) = run([w], jg.grad(la.norm(w, "nuc"), [w]), W)
    U, _, Vt = np.linalg.svd(W, full_matrices=False)
    np.testing.assert_allclose(g, U @ Vt, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("shape", [(4, 4), (5, 3), (3, 5)])
def test_a_program_that_reads_only_the_values_skips_the_vectors(shape):
    A = rng.normal(size=shape)
    a = jg.input("a", shape)
    f = jg.compile([a], [la.norm(a, "nuc"), la.eigh(a[:3, :3])[0]])
    assert "lapack.svd_values(" in f.source and "lapack.eigh_values(" in f.source
    nuc, w = f(A)
    np.testing.assert_allclose(nuc, np.linalg.norm(A, "nuc"), rtol=1e-12)
    np.testing.assert_allclose(w, np.linalg.eigvalsh((A[:3, :3] + A[:3, :3].T) / 2), rtol=1e-12)
    g = jg.compile([a], [la.norm(a, "nuc")] + jg.grad(la.norm(a, "nuc"), [a]))   # needs U and V
    assert "lapack.svd_values(" not in g.source


def test_slices_of_vectors_compile_beside_the_values_only_check():
    x = jg.input("x", (5,))
    np.testing.assert_array_equal(jg.compile([x], [jg.sum(x[1:])])(np.arange(5.0)), [10.0])
