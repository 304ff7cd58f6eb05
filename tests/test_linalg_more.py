"""jg.linalg, issue 17: solve_triangular, cho_factor/cho_solve, matrix_power, pinv, lstsq,
matrix_rank, cond, qr, expm and svd(full_matrices=True): values against NumPy/SciPy,
derivatives against finite differences, stacks, tall/square/wide, errors.

The table rows (jitgrad.testing.LINALG_MORE_CASES) run these on cpu and cuda too.
"""
from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg as sl

import jitgrad as jg
from jitgrad import linalg as la
from jitgrad.testing import call_unmutated

rng = np.random.default_rng(17)
SHAPES = [(5, 3), (4, 4), (3, 5)]


def run(f, *args, target="numpy"):
    xs = [jg.input(f"x{i}", np.shape(a)) for i, a in enumerate(args)]
    out = f(*xs)
    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    return call_unmutated(jg.compile(xs, outs, target=target), *args)


def well_conditioned(*shape):
    return rng.normal(size=shape) + shape[-1] * np.eye(shape[-1])


def spd(*shape):
    m = rng.normal(size=shape)
    return m @ np.swapaxes(m, -1, -2) + shape[-1] * np.eye(shape[-1])


# -- triangular and Cholesky solves ---------------------------------------------

@pytest.mark.parametrize("lower", [True, False])
@pytest.mark.parametrize("trans", [0, 1, "T"])
@pytest.mark.parametrize("unit", [False, True])
def test_solve_triangular_matches_scipy(lower, trans, unit):
    a, b = well_conditioned(4, 4), rng.normal(size=(4, 2))
    (got,) = run(lambda t, r: la.solve_triangular(t, r, trans=trans, lower=lower, unit_diagonal=unit), a, b)
    want = sl.solve_triangular(a, b, trans=trans, lower=lower, unit_diagonal=unit)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_solve_triangular_stacks_and_vectors():
    a, b = well_conditioned(2, 3, 3), rng.normal(size=(3,))
    (got,) = run(lambda t, r: la.solve_triangular(t, r, lower=True), a, b)
    want = np.stack([sl.solve_triangular(m, b, lower=True) for m in a])
    np.testing.assert_allclose(got, want, rtol=1e-12)
    jg.check_grads(lambda t, r: la.solve_triangular(t, r, trans=1, unit_diagonal=True), [a, rng.normal(size=(2, 3, 2))],
                   order=2)


@pytest.mark.parametrize("lower", [True, False])
def test_cho_solve_matches_scipy_and_differentiates(lower):
    a, b = spd(4, 4), rng.normal(size=(4, 3))
    got_c, got_x = run(lambda m, r: (la.cho_factor(m, lower)[0], la.cho_solve(la.cho_factor(m, lower), r)), a, b)
    c, _ = sl.cho_factor(a, lower=lower)
    np.testing.assert_allclose(got_c, np.tril(c) if lower else np.triu(c), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(got_x, sl.cho_solve((c, lower), b), rtol=1e-12)
    jg.check_grads(lambda m, r: la.cho_solve(la.cho_factor(m @ jg.swapaxes(m, -1, -2), lower), r),
                   [well_conditioned(3, 3), rng.normal(size=(3,))], order=2)


def test_cho_solve_reuses_the_factor():
    a = jg.input("a", (3, 3))
    b = jg.input("b", (3, 2))
    x = la.cho_solve(la.cho_factor(a, True), b)
    from jitgrad.graph import topological_order
    ops = [n.op.name for n in topological_order([x, *jg.vjp([x], [a, b], [jg.constant(np.ones((3, 2)))])])]
    assert ops.count("cholesky") == 1


# -- products and the SVD --------------------------------------------------------

@pytest.mark.parametrize("n", [-3, -1, 0, 1, 2, 5, 8])
def test_matrix_power_matches_numpy(n):
    a = well_conditioned(2, 3, 3) / 3
    (got,) = run(lambda m: la.matrix_power(m, n), a)
    np.testing.assert_allclose(got, np.linalg.matrix_power(a, n), rtol=1e-11, atol=1e-12)


def test_matrix_power_derivatives():
    jg.check_grads(lambda m: la.matrix_power(m, 5), [rng.normal(size=(3, 3)) / 2], order=2)
    jg.check_grads(lambda m: la.matrix_power(m, -2), [well_conditioned(3, 3)], order=2)


@pytest.mark.parametrize("shape", SHAPES + [(2, 4, 3)])
def test_pinv_lstsq_rank_cond_match_numpy(shape):
    a = rng.normal(size=shape)
    got_p, got_r, got_c = run(lambda m: (la.pinv(m), la.matrix_rank(m), la.cond(m)), a)
    np.testing.assert_allclose(got_p, np.linalg.pinv(a, rtol=None), rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(got_r, np.linalg.matrix_rank(a))
    np.testing.assert_allclose(got_c, np.linalg.cond(a), rtol=1e-10)
    if len(shape) == 2:
        b = rng.normal(size=shape[0])
        got = run(lambda m, v: la.lstsq(m, v), a, b)
        want = np.linalg.lstsq(a, b)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)


def test_rank_deficient_pinv_lstsq_and_rank():
    a = rng.normal(size=(5, 2)) @ rng.normal(size=(2, 4))
    b = rng.normal(size=(5, 3))
    x, res, rank, s = run(lambda m, r: la.lstsq(m, r), a, b)
    want = np.linalg.lstsq(a, b)
    np.testing.assert_allclose(x, want[0], rtol=1e-9, atol=1e-12)
    assert rank == want[2] == 2
    np.testing.assert_allclose(s, want[3], atol=1e-12)
    assert res.shape == (3,)                # numpy's are empty when rank deficient (see lstsq)
    np.testing.assert_allclose(run(la.pinv, a)[0], np.linalg.pinv(a, rtol=None), atol=1e-12)
    assert run(lambda m: la.matrix_rank(m, tol=1e-3), a)[0] == 2


@pytest.mark.parametrize("p", [None, 2, -2, 1, -1, np.inf, -np.inf, "fro", "nuc"])
def test_cond_orders(p):
    a = well_conditioned(2, 3, 3)
    np.testing.assert_allclose(run(lambda m: la.cond(m, p), a)[0], np.linalg.cond(a, p), rtol=1e-12)


@pytest.mark.parametrize("shape", SHAPES)
def test_pinv_and_lstsq_derivatives_at_full_rank(shape):
    a = rng.normal(size=shape) + np.eye(*shape) * 2
    jg.check_grads(la.pinv, [a], order=2)
    jg.check_grads(lambda m, v: la.lstsq(m, v)[0], [a, rng.normal(size=shape[0])], order=1)
    jg.check_grads(lambda m: la.cond(m), [a], order=1)


def test_pinv_derivative_at_constant_rank():
    """A = B C of rank 2 stays rank 2 along every path of B, C: the constant-rank formula."""
    b, c = rng.normal(size=(4, 2)), rng.normal(size=(2, 3))
    jg.check_grads(lambda u, v: la.pinv(u @ v), [b, c], order=1)


# -- QR ----------------------------------------------------------------------

def _signs(r):
    return np.sign(np.diagonal(r, axis1=-2, axis2=-1))


def _check_qr_values(a, target, atol=1e-12):
    q, r = run(la.qr, a, target=target)
    qn, rn = np.linalg.qr(a)
    d = np.where(_signs(rn) < 0, -1.0, 1.0)
    np.testing.assert_allclose(q, qn * d[..., None, :], atol=atol)
    np.testing.assert_allclose(r, rn * d[..., :, None], atol=atol)
    k = min(a.shape[-2:])
    assert np.all(np.diagonal(r, axis1=-2, axis2=-1) >= 0) and np.all(np.tril(r[..., :k], -1) == 0)
    return q, r


@pytest.mark.parametrize("target", ["numpy", "cpu"])
@pytest.mark.parametrize("shape", SHAPES + [(2, 5, 3), (2, 3, 4), (2, 3, 3)])
def test_qr_matches_numpy_up_to_signs(shape, target):
    a = rng.normal(size=shape)
    _, r = _check_qr_values(a, target)
    (rr,) = run(lambda m: la.qr(m, "r"), a, target=target)
    np.testing.assert_allclose(rr, r, atol=1e-14)
    qc, rc = run(lambda m: la.qr(m, "complete"), a, target=target)
    m = shape[-2]
    assert qc.shape == shape[:-2] + (m, m) and rc.shape == shape[:-2] + (m, shape[-1])
    np.testing.assert_allclose(qc @ rc, a, atol=1e-12)
    np.testing.assert_allclose(np.swapaxes(qc, -1, -2) @ qc, np.broadcast_to(np.eye(m), qc.shape), atol=1e-12)


@pytest.mark.parametrize("target", ["numpy", "cpu"])
def test_qr_of_an_ill_conditioned_matrix(target):
    """cond ~1e12: Householder stays orthogonal to rounding (CholeskyQR2 used to raise)."""
    u, _ = np.linalg.qr(rng.normal(size=(6, 4)))
    v, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    a = (u * np.logspace(0, -12, 4)) @ v.T
    q, r = run(la.qr, a, target=target)
    np.testing.assert_allclose(q.T @ q, np.eye(4), atol=1e-14)
    np.testing.assert_allclose(q @ r, a, atol=1e-15)
    assert np.all(np.diagonal(r) >= 0)


@pytest.mark.parametrize("target", ["numpy", "cpu"])
@pytest.mark.parametrize("a", [np.zeros((3, 2)), np.ones((4, 3)), np.ones((3, 5)),
                               np.outer([1.0, -2.0, 3.0, 0.5], [2.0, 1.0, -1.0]),
                               np.diag([3.0, 0.0, 1.0]), -np.eye(3)],
                         ids=["zeros", "ones", "ones-wide", "rank-1", "diag-0", "minus-identity"])
def test_qr_of_rank_deficient_matrices(a, target):
    """No error where NumPy has none: Q orthonormal, Q R = A, |R_jj| as NumPy's (the rest of
    R and Q is not unique there).  Derivatives do not exist there (inf/NaN)."""
    q, r = run(la.qr, a, target=target)
    k = min(a.shape)
    np.testing.assert_allclose(q.T @ q, np.eye(k), atol=1e-14)
    np.testing.assert_allclose(q @ r, a, atol=1e-14)
    np.testing.assert_allclose(np.abs(np.diagonal(r)), np.abs(np.diagonal(np.linalg.qr(a)[1])), atol=1e-14)
    assert np.all(np.diagonal(r) >= 0) and np.all(np.tril(r[:, :k], -1) == 0)


@pytest.mark.parametrize("shape", SHAPES)
def test_qr_derivatives(shape):
    a = rng.normal(size=shape)
    jg.check_grads(lambda m: la.qr(m)[0], [a], order=2)
    jg.check_grads(lambda m: la.qr(m)[1], [a], order=2)
    w = rng.normal(size=(shape[0], min(shape)))
    jg.check_grads(lambda m: jg.sum(la.qr(m)[0] * jg.constant(w)), [a], order=2, target="cpu")


def test_qr_derivatives_of_stacks_and_of_one_factor():
    a = rng.normal(size=(2, 4, 3))
    jg.check_grads(lambda m: la.qr(m, "r"), [a], order=2)           # R̄ alone (Q̄ structurally zero)
    jg.check_grads(lambda m: la.qr(m)[0][..., :, :2], [a], order=2)  # Q̄ alone
    jg.check_grads(lambda m: jg.sum(la.qr(m)[0] * la.qr(m)[1][..., :1, :]), [a], order=1)


def test_qr_under_vmap():
    a = rng.normal(size=(3, 4, 3))
    x = jg.input("x", a.shape)
    q, r = jg.vmap(la.qr)(x)
    g = jg.vmap(lambda m: jg.grad(jg.sum(la.qr(m)[0] ** 3), [m])[0])(x)
    for target in ("numpy", "cpu"):
        got_q, got_r, got_g = call_unmutated(jg.compile([x], [q, r, g], target=target), a)
        want_q, want_r = run(la.qr, a)
        np.testing.assert_allclose(got_q, want_q, atol=1e-12)
        np.testing.assert_allclose(got_r, want_r, atol=1e-12)
        for i in range(3):
            (want_g,) = run(lambda m: jg.grad(jg.sum(la.qr(m)[0] ** 3), [m])[0], a[i])
            np.testing.assert_allclose(got_g[i], want_g, atol=1e-12)


def test_qr_on_cpu():
    a = rng.normal(size=(2, 5, 3))
    q, r = run(la.qr, a, target="cpu")
    np.testing.assert_allclose(q @ r, a, atol=1e-12)


# -- expm ----------------------------------------------------------------------

@pytest.mark.parametrize("scale", [0.0, 1e-3, 0.5, 3.0, 30.0, 100.0])
def test_expm_matches_scipy(scale):
    a = rng.normal(size=(2, 4, 4)) * scale
    (got,) = run(la.expm, a)
    want = sl.expm(a)
    assert np.isfinite(want).all()            # a finite comparison: exp(400) would overflow
    np.testing.assert_allclose(got, want, rtol=1e-11 * max(1.0, scale), atol=1e-14 * np.abs(want).max())


def test_expm_derivatives_any_order():
    a = rng.normal(size=(3, 3))
    jg.check_grads(la.expm, [a], order=2)
    jg.check_grads(la.expm, [a * 4], order=1)        # squarings on the way
    jg.check_grads(lambda m: jg.sum(la.expm(m) * m), [a], order=3, modes=("rev",))
    jg.check_grads(lambda m: jg.sum(la.expm(m) * m), [a], order=3, modes=("fwd",))


def test_expm_jvp_is_the_frechet_derivative():
    a, e = rng.normal(size=(3, 3)), rng.normal(size=(3, 3))
    x = jg.input("x", (3, 3))
    (dot,) = jg.jvp([la.expm(x)], [x], [jg.constant(e)])
    (got,) = call_unmutated(jg.compile([x], [dot], target="numpy"), a)
    np.testing.assert_allclose(got, sl.expm_frechet(a, e, compute_expm=False), rtol=1e-11)


def test_expm_vjp_is_the_frechet_derivative():
    a, g = rng.normal(size=(3, 3)), rng.normal(size=(3, 3))
    x = jg.input("x", (3, 3))
    (bar,) = jg.vjp([la.expm(x)], [x], [jg.constant(g)])
    (got,) = call_unmutated(jg.compile([x], [bar], target="numpy"), a)
    want = sl.expm_frechet(a.T, g, compute_expm=False)
    np.testing.assert_allclose(got, want, rtol=1e-11)


def test_expm_and_its_gradient_save_and_load(tmp_path):
    a = rng.normal(size=(2, 3, 3))
    x = jg.input("x", (2, 3, 3))
    y = la.expm(x)
    (bar,) = jg.vjp([y], [x], [jg.constant(np.ones((2, 3, 3)))])
    jg.save(tmp_path / "expm.npz", [y, bar])
    ly, lbar = jg.load(tmp_path / "expm.npz")
    (lx,) = [n for n in jg.graph.topological_order([ly, lbar]) if n.op.name == "input"]
    want = call_unmutated(jg.compile([x], [y, bar], target="numpy"), a)
    got = call_unmutated(jg.compile([lx], [ly, lbar], target="numpy"), a)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def test_expm_vmap():
    a = rng.normal(size=(4, 3, 3))
    x = jg.input("x", (4, 3, 3))
    (got,) = call_unmutated(jg.compile([x], [jg.vmap(la.expm)(x)], target="numpy"), a)
    np.testing.assert_allclose(got, sl.expm(a), rtol=1e-11)


def test_expm_on_cpu():
    a = rng.normal(size=(2, 3, 3)) * 2
    (got,) = run(la.expm, a, target="cpu")
    np.testing.assert_allclose(got, sl.expm(a), rtol=1e-11)


# -- svd(full_matrices=True) -------------------------------------------------------

@pytest.mark.parametrize("shape", SHAPES + [(2, 5, 3)])
def test_full_svd(shape):
    a = rng.normal(size=shape)
    u, s, vt = run(lambda m: la.svd(m, full_matrices=True), a)
    un, sn, vtn = np.linalg.svd(a, full_matrices=True)
    assert u.shape == un.shape and vt.shape == vtn.shape
    k = s.shape[-1]
    np.testing.assert_allclose(s, sn, rtol=1e-12)
    np.testing.assert_allclose((u[..., :, :k] * s[..., None, :]) @ vt[..., :k, :], a, atol=1e-12)
    for x in (u, vt):
        np.testing.assert_allclose(np.swapaxes(x, -1, -2) @ x, np.broadcast_to(np.eye(x.shape[-1]), x.shape),
                                   atol=1e-12)


@pytest.mark.parametrize("shape", [(5, 3), (3, 5)])
def test_full_svd_complement_projector_is_differentiable(shape):
    """The complement's basis is not unique; its projector is, and differentiates exactly."""
    k = min(shape)

    def projector(m):
        u, _, vt = la.svd(m, full_matrices=True)
        c = u[:, k:] if shape[0] > shape[1] else jg.swapaxes(vt[k:, :], -1, -2)
        return c @ jg.swapaxes(c, -1, -2)
    jg.check_grads(projector, [rng.normal(size=shape)], order=1)


# -- errors ----------------------------------------------------------------------

def test_errors_name_the_function_and_shapes():
    sq, rect, vec = jg.input("a", (3, 3)), jg.input("r", (3, 4)), jg.input("v", (4,))
    with pytest.raises(ValueError, match=r"solve_triangular: a must be square.*\(3, 4\)"):
        la.solve_triangular(rect, vec)
    with pytest.raises(ValueError, match=r"solve_triangular: b of shape \(4,\)"):
        la.solve_triangular(sq, vec)
    with pytest.raises(ValueError, match="solve_triangular: trans"):
        la.solve_triangular(sq, jg.input("b", (3,)), trans=3)
    with pytest.raises(TypeError, match="cho_solve"):
        la.cho_solve(sq, vec)
    with pytest.raises(TypeError, match="matrix_power: exponent"):
        la.matrix_power(sq, 1.5)
    with pytest.raises(ValueError, match=r"matrix_power: a must be square"):
        la.matrix_power(rect, 2)
    with pytest.raises(ValueError, match=r"lstsq: b of shape \(4,\)"):
        la.lstsq(rect, vec)
    with pytest.raises(ValueError, match="qr: mode"):
        la.qr(rect, "raw")
    with pytest.raises(ValueError, match=r"expm: a must be square.*\(3, 4\)"):
        la.expm(rect)
    with pytest.raises(ValueError, match="cond: invalid"):
        la.cond(sq, 3)
    with pytest.raises(ValueError, match=r"pinv: a must be a stack of matrices"):
        la.pinv(vec)
