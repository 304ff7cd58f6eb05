"""The derivatives of det at every matrix, singular ones included (issue 11, part 3).

det is a polynomial in the entries: its gradient is the cofactor matrix adj(A)ᵀ (rank one
at corank 1, zero at corank 2 or more), its second derivative the signed (n-2)-minors
(nonzero up to corank 2). Both are compared here with references computed independently,
by cofactor expansion with NumPy, on random matrices of random size 1..5 and random corank
0..n built as products of random factors (float and small-integer ones: the latter give
exact zero pivots), in reverse and forward mode, first and second order, on the numpy and
cpu targets. Plus JAX's own cases (testDetGrad, ...Corank1, ...Corank2), the zero matrix,
1x1 zero, stacks, and slogdet, whose logabsdet has no derivative at a singular matrix.
"""
from __future__ import annotations

import functools
import itertools

import numpy as np
import pytest

import jitgrad as jg
from jitgrad import linalg as la
from jitgrad.testing import call_unmutated

TARGETS = ["numpy", "cpu"]


# -- independent references: cofactor expansion ------------------------------------------------

def _minor(a, rows, cols):
    keep_r = [r for r in range(a.shape[0]) if r not in rows]
    keep_c = [c for c in range(a.shape[1]) if c not in cols]
    return np.linalg.det(a[np.ix_(keep_r, keep_c)]) if keep_r else 1.0


def cofactors(a):
    """C_ij = (-1)^(i+j) det(A without row i and column j) = ∂det/∂a_ij, for a stack."""
    a = np.asarray(a, np.float64)
    out = np.empty_like(a)
    for idx in np.ndindex(a.shape[:-2]):
        n = a.shape[-1]
        for i, j in itertools.product(range(n), repeat=2):
            out[idx][i, j] = (-1) ** (i + j) * _minor(a[idx], (i,), (j,))
    return out


def det_hessian(a, e):
    """H[E]_ij = Σ_kl ∂²det/∂a_ij∂a_kl E_kl, the second derivatives as signed (n-2)-minors."""
    n = a.shape[-1]
    h = np.zeros((n, n))
    for i, j, k, l in itertools.product(range(n), repeat=4):
        if i != k and j != l:
            sign = (-1) ** (i + j + k + l) * (1 if (i < k) == (j < l) else -1)
            h[i, j] += sign * _minor(a, (i, k), (j, l)) * e[k, l]
    return h


def of_corank(rng, n, corank, integer=False, batch=()):
    """A random n x n matrix of rank n - corank: a product of random factors."""
    r = n - corank
    draw = (lambda *s: rng.integers(-2, 3, s).astype(np.float64)) if integer else (lambda *s: rng.standard_normal(s))
    return draw(*batch, n, r) @ draw(*batch, r, n)


def scale(a, power):
    """The size of a degree-`power` polynomial of a's entries: the tolerances' unit."""
    return max(1.0, np.linalg.norm(a, 2)) ** max(power, 0)


def random_cases(seed, count):
    rng = np.random.default_rng(seed)
    for t in range(count):
        n = int(rng.integers(1, 6))
        corank = int(rng.integers(0, n + 1))
        yield n, corank, of_corank(rng, n, corank, integer=bool(t % 2))


@pytest.fixture(scope="module")
def compiled():
    """Per target and size, over stacks: ``first(a, e) -> (∇det, D det[E])`` and
    ``second(a, e) -> (forward over reverse H[E], reverse over reverse ∇<∇det, E> = H[E])``."""
    cache = {}

    def get(order, target, n):
        key = order, target, n
        if key not in cache:
            a = jg.input("a", (None, n, n))
            e = jg.input("e", (None, n, n))
            d = la.det(a)
            (g,) = jg.grad(jg.sum(d), [a])
            outputs = ([g] + jg.jvp([d], [a], [e]) if order == "first"
                       else jg.jvp([g], [a], [e]) + jg.grad(jg.sum(g * e), [a]))
            cache[key] = functools.partial(call_unmutated, jg.compile([a, e], outputs, target=target))
        return cache[key]
    return get


# -- the property tests --------------------------------------------------------------------------

@pytest.mark.parametrize("target", TARGETS)
def test_first_derivatives_are_the_cofactors_at_every_corank(compiled, target):
    """Random size 1..5 and corank 0..n, as stacks: grad det = the cofactor matrix by
    expansion, and forward mode D det[E] = tr(adj(A) E)."""
    rng = np.random.default_rng(12)
    by_size = {}
    for n, corank, a in random_cases(11, 60):
        by_size.setdefault(n, []).append((corank, a))
    for n, cases in by_size.items():
        stack = np.stack([a for _, a in cases])
        e = rng.standard_normal(stack.shape)
        grads, tangents = compiled("first", target, n)(stack, e)
        want = cofactors(stack)
        for (corank, a), g, t, w, ei in zip(cases, grads, tangents, want, e):
            atol = 1e-12 * scale(a, n - 1)
            np.testing.assert_allclose(g, w, rtol=0, atol=atol, err_msg=f"n={n} corank={corank}\n{a!r}")
            if corank >= 2:
                np.testing.assert_allclose(g, 0, atol=atol)
            np.testing.assert_allclose(t, np.trace(w.T @ ei), rtol=0, atol=atol * np.abs(ei).sum(),
                                       err_msg=f"forward mode, n={n} corank={corank}")


@pytest.mark.parametrize("target", TARGETS)
def test_second_derivatives_are_the_signed_minors_at_every_corank(compiled, target):
    """Forward over reverse and reverse over reverse against the (n-2)-minors (on the cpu
    for two sizes: each compiled program of second derivatives takes a while to build)."""
    rng = np.random.default_rng(14)
    by_size = {}
    for n, corank, a in random_cases(15, 40):
        if target == "numpy" or n in (2, 4):
            by_size.setdefault(n, []).append((corank, a))
    for n, cases in by_size.items():
        stack = np.stack([a for _, a in cases])
        e = rng.standard_normal(stack.shape)
        for mode, got in zip(("fwd_rev", "rev_rev"), compiled("second", target, n)(stack, e)):
            for (corank, a), h, ei in zip(cases, got, e):
                np.testing.assert_allclose(h, det_hessian(a, ei), rtol=0,
                                           atol=1e-11 * scale(a, n - 2) * np.abs(ei).sum(),
                                           err_msg=f"{mode} n={n} corank={corank}\n{a!r}")


@pytest.mark.parametrize("n, corank, integer", [(1, 0, False), (1, 1, False), (2, 1, True), (3, 1, False),
                                                (3, 2, False), (4, 2, True), (4, 3, False), (5, 5, False)])
def test_first_and_second_order_match_finite_differences(n, corank, integer):
    """det is a polynomial: central differences are good everywhere, singular or not."""
    a = of_corank(np.random.default_rng(16 + n + corank), n, corank, integer)
    jg.check_grads(la.det, [a], order=2, atol=1e-7 * scale(a, n - 1))


def test_first_and_second_order_match_finite_differences_on_the_cpu():
    jg.check_grads(la.det, [of_corank(np.random.default_rng(17), 4, 2)], order=2, target="cpu")


# -- JAX's cases (tests/linalg_test.py: testDetGrad, testDetGradOfSingularMatrixCorank1/2) ------

@pytest.mark.parametrize("target", TARGETS)
def test_det_grad_of_a_nonsingular_matrix_is_det_times_inverse_transpose(target):
    A = np.random.default_rng(18).standard_normal((3, 4, 4))
    a = jg.input("a", A.shape)
    (g,) = jg.compile([a], jg.grad(jg.sum(la.det(a)), [a]), target=target)(A)
    np.testing.assert_allclose(g, np.linalg.det(A)[:, None, None] * np.linalg.inv(A).mT, rtol=1e-10)


@pytest.mark.parametrize("target", TARGETS)
def test_det_grad_at_corank_1_is_the_nonzero_cofactor_matrix(target):
    A = np.array([[50.0, -30.0, 45.0], [-30.0, 90.0, -81.0], [45.0, -81.0, 81.0]])   # JAX's
    assert np.linalg.matrix_rank(A) == 2
    a = jg.input("a", (3, 3))
    (g,) = jg.compile([a], jg.grad(la.det(a), [a]), target=target)(A)
    want = cofactors(A)
    assert np.abs(want).max() > 100
    np.testing.assert_allclose(g, want, rtol=1e-12, atol=1e-9)
    jg.check_grads(la.det, [A], order=2, target=target, atol=1e-4, rtol=1e-6)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("A", [np.full((3, 3), 50.0), np.zeros((3, 3)),
                               np.array([[1.0, 2, 3], [2, 4, 6], [3, 6, 9]])], ids=["ones", "zero", "rank1"])
def test_det_grad_at_corank_2_or_more_is_zero(target, A):
    a = jg.input("a", (3, 3))
    d, g = jg.compile([a], [la.det(a)] + jg.grad(la.det(a), [a]), target=target)(A)
    assert d == 0
    np.testing.assert_array_equal(g, np.zeros((3, 3)))


@pytest.mark.parametrize("target", TARGETS)
def test_one_by_one(target):
    """det [x] = x: gradient 1 at 0 too, second derivative 0."""
    a = jg.input("a", (1, 1))
    (g,) = jg.grad(la.det(a), [a])
    got = jg.compile([a], [g] + jg.grad(jg.sum(g), [a]), target=target)(np.zeros((1, 1)))
    np.testing.assert_array_equal(got[0], [[1.0]])
    np.testing.assert_array_equal(got[1], [[0.0]])


@pytest.mark.parametrize("target", TARGETS)
def test_stacks_mix_singular_and_nonsingular_matrices(target):
    rng = np.random.default_rng(19)
    A = np.stack([of_corank(rng, 4, c) for c in (0, 1, 2, 4, 0, 1)]).reshape(2, 3, 4, 4)
    a = jg.input("a", A.shape)
    d = la.det(a)
    w = np.arange(1.0, 7.0).reshape(2, 3)
    (g,) = jg.compile([a], jg.grad(jg.sum(d * w), [a]), target=target)(A)
    np.testing.assert_allclose(g, w[..., None, None] * cofactors(A), rtol=0, atol=1e-11 * scale(A[0, 0], 3))


def test_float32():
    rng = np.random.default_rng(20)
    A = np.stack([of_corank(rng, 4, c) for c in (0, 1, 2)]).astype(np.float32)
    a = jg.input("a", A.shape, "float32")
    for target in TARGETS:
        (g,) = jg.compile([a], jg.grad(jg.sum(la.det(a)), [a]), target=target)(A)
        assert g.dtype == np.float32
        np.testing.assert_allclose(g, cofactors(A.astype(np.float64)), rtol=0, atol=1e-4 * scale(A[0], 3))


def test_the_gradient_costs_one_lu_and_forms_no_svd():
    """First order reuses the forward pass's LU (one lu_cofactor, d A⁻ᵀ's cost); only the
    second order forms an SVD, once per matrix however many directions."""
    a = jg.input("a", (4, 4))
    d = la.det(a)
    (g,) = jg.grad(d, [a])
    first = str(jg.compile([a], [d, g], target="numpy").schedule)
    assert first.count("= lu ") == 1 and first.count("= lu_cofactor ") == 1 and "svd" not in first
    e1, e2 = jg.input("e1", (4, 4)), jg.input("e2", (4, 4))
    second = str(jg.compile([a, e1, e2], jg.jvp([g], [a], [e1]) + jg.jvp([g], [a], [e2]),
                            target="numpy").schedule)
    assert second.count("= svd ") == 1


# -- slogdet: log|det| has no derivative at a singular matrix ----------------------------------

@pytest.mark.parametrize("target", TARGETS)
def test_slogdet_at_a_singular_matrix_is_minus_inf_and_its_gradient_raises(target):
    A = np.array([[1.0, 2.0], [2.0, 4.0]])
    a = jg.input("a", (2, 2))
    sign, logdet = jg.compile([a], list(la.slogdet(a)), target=target)(A)
    assert sign == 0 and logdet == -np.inf
    with pytest.raises(np.linalg.LinAlgError, match="Singular matrix"):
        jg.compile([a], jg.grad(la.slogdet(a)[1], [a]), target=target)(A)
    # near (not at) a singular matrix the gradient is A⁻ᵀ, large and right
    B = A + np.array([[1e-9, 0], [0, 0]])
    (g,) = jg.compile([a], jg.grad(la.slogdet(a)[1], [a]), target=target)(B)
    np.testing.assert_allclose(g, np.linalg.inv(B).T, rtol=1e-6)
