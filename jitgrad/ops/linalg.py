"""Linear-algebra primitives: matmul, and the factorizations behind ``jg.linalg``.

Factorizations are computed once and reused.  ``lu`` packs the LU factors and
pivots of a matrix into one array; the primitives that consume it (``lu_solve``,
``lu_det``, ``lu_logabsdet``, ``lu_sign``) also take the matrix itself, as the
input their derivatives flow to.  ``lu`` has no derivative of its own, so a
gradient reaches ``A`` through those consumers only, and their rules solve with
the same factors: value and gradient of ``solve`` cost one factorization.

``eigh``, ``svd`` and ``qr`` also return one packed array (``[w; V]``,
``[s; U; V]`` and ``[Q; R]`` along the second-to-last axis) that ``jg.linalg`` slices.  Their
rules read the cotangent block by block and skip blocks that are structurally
zero, so a loss of the eigenvalues or singular values alone never forms the
``1 / (λ_j - λ_i)`` terms, and stays exact at repeated and zero values.

Every matrix primitive takes stacks ``(..., m, n)`` with equal batch dims (the
builder broadcasts); the matrix sizes are known when the graph is built.
"""
from __future__ import annotations

import numpy as np

from ..primitive import Aval, Primitive, batch_stack, on, sum_tangents
from . import _linalg_ref as ref
from ._shapes import fmt_shape, unify_dim
from .elementwise import add_p
from .shape import slice_p, unslice_p


# -- matmul ------------------------------------------------------------------

def _matmul_shape(a, b):
    """(..., m, k) @ (..., k, n) -> (..., m, n); the builder has aligned the batch dims."""
    if len(a.dims) < 2 or len(a.dims) != len(b.dims):
        raise ValueError(f"matmul: operands have shapes {fmt_shape(a.dims)} and {fmt_shape(b.dims)}")
    msg = f"matmul: shapes {fmt_shape(a.dims)} and {fmt_shape(b.dims)} are not aligned"
    constraints: list = []
    batch = tuple(unify_dim(x, y, constraints, msg) for x, y in zip(a.dims[:-2], b.dims[:-2]))
    unify_dim(a.dims[-1], b.dims[-2], constraints, msg)
    if a.dtype != b.dtype:
        raise TypeError(f"matmul: dtypes {a.dtype} and {b.dtype} differ")
    return Aval(batch + (a.dims[-2], b.dims[-1]), a.dtype, tuple(constraints))


def _matmul_ref(a, b):
    # BLAS rounds differently for transposed views: multiply C-ordered copies, so the
    # reference's result depends on the values alone, not on which views led to them
    return np.matmul(np.ascontiguousarray(a), np.ascontiguousarray(b))


def _matmul_batch(b, batched, y, x1, x2):
    """Examples times one matrix is one product with the examples' rows stacked, not a
    stack of products with the matrix repeated:  (E, m, k) @ (k, n) as (E m, k) @ (k, n), and
    (m, k) @ (E, k, n) as ((E, n, k) @ (k, m))ᵀ."""
    if batched == (True, False) and len(x1.dims) == 3 and len(x2.dims) == 2:
        rows = b.bind(matmul_p, b.reshape(x1, (-1, x1.dims[-1])), x2)
        return b.reshape(rows, x1.dims[:2] + x2.dims[-1:])
    if batched == (False, True) and len(x1.dims) == 2 and len(x2.dims) == 3:
        rows = b.bind(matmul_p, b.reshape(_mT(b, x2), (-1, x2.dims[-2])), _mT(b, x1))
        return _mT(b, b.reshape(rows, x2.dims[:1] + x2.dims[-1:] + x1.dims[:1]))
    return batch_stack(b, batched, y, x1, x2)


matmul_p = Primitive(
    "matmul", shape=_matmul_shape, ref=_matmul_ref, nin=2, batch=_matmul_batch,
    vjp=lambda b, y_bar, y, x1, x2: (b.matmul(y_bar, _mT(b, x2)), b.matmul(_mT(b, x1), y_bar)),
    jvp=lambda b, x_dots, y, x1, x2: sum_tangents(
        b, on(x_dots[0], lambda t: b.matmul(t, x2)), on(x_dots[1], lambda t: b.matmul(x1, t))),
    doc="Batched matrix product.  Ā = Ȳ Bᵀ,  B̄ = Aᵀ Ȳ.",
)


def _batch_right_hand_sides(b, batched, y, *xs, **attrs):
    """The batching rule of a solve (the right-hand side is the last input).  Examples of the
    right-hand side alone are solved as one, with their columns side by side, so the
    matrix is factorized (or its factors read) once: (E, n, k) -> (n, E k) -> (E, n, k)."""
    *matrices, rhs = xs
    if any(batched[:-1]) or len(rhs.dims) != 3:
        return batch_stack(b, batched, y, *xs, **attrs)
    examples, n, k = rhs.dims
    columns = b.reshape(b.transpose(rhs, (1, 0, 2)), (n, -1))
    solved = b.bind(y.op, *matrices, columns, **attrs)
    return b.transpose(b.reshape(solved, (n, examples, k)), (1, 0, 2))


# -- graph helpers the rules share -------------------------------------------

def _mT(b, x):
    """Swap the last two axes."""
    perm = tuple(range(len(x.dims) - 2)) + (len(x.dims) - 1, len(x.dims) - 2)
    return b.transpose(x, perm)


def _sym(b, x):
    return b.multiply(b.add(x, _mT(b, x)), 0.5)


def _eye(b, n: int, dtype, dims=None):
    eye = b.as_tensor(np.eye(n, dtype=dtype))
    return b.broadcast_to(eye, dims) if dims is not None and len(dims) > 2 else eye


def _diagonal(b, x):
    """The diagonals of a stack of square matrices, (..., n, n) -> (..., n)."""
    return b.sum(b.multiply(x, _eye(b, x.dims[-1], x.dtype)), axis=-1)


def _diag_embed(b, v):
    """Diagonal matrices from a stack of vectors, (..., n) -> (..., n, n)."""
    return b.multiply(b.expand_dims(v, -2), _eye(b, v.dims[-1], v.dtype))


def _trace(b, x):
    return b.sum(_diagonal(b, x), axis=-1)


def _rows_index(y, lo: int, hi: int):
    full = (None, None, None)
    return tuple(full for _ in y.dims[:-2]) + ((lo, hi, 1), full)


def rows(b, y, lo: int, hi: int):
    """Rows ``lo:hi`` of the matrices in ``y`` (a block of a packed result)."""
    return b.bind(slice_p, y, index=_rows_index(y, lo, hi))


def row(b, y, i: int):
    """Row ``i`` of the matrices in ``y``, as a stack of vectors."""
    return b.reshape(rows(b, y, i, i + 1), y.dims[:-2] + (y.dims[-1],))


def _block(b, y_bar, lo: int, hi: int):
    """Rows ``lo:hi`` of a packed cotangent, or None where they are structurally zero.

    The cotangent of a packed result is a sum of ``unslice`` nodes, one per block
    the loss used; blocks it did not use are known zeros without looking at values.
    """
    if y_bar.op is unslice_p:
        index = y_bar.attrs["index"]
        start, stop, step = index[-2]
        whole_rows = (all(i == (None, None, None) for i in index[:-2] + index[-1:])
                      and isinstance(start, int) and isinstance(stop, int) and step == 1)
        if whole_rows and (start, stop) == (lo, hi):
            return y_bar.inputs[0]
        if whole_rows and (stop <= lo or start >= hi):
            return None
    elif y_bar.op is add_p:
        parts = [_block(b, x, lo, hi) for x in y_bar.inputs]
        return sum_tangents(b, *parts)
    return rows(b, y_bar, lo, hi)


def _inverse_gaps(b, values, plus: bool = False):
    """E_ij = 1 / (v_j - v_i) (1 / (v_j + v_i) if ``plus``), and 0 where the denominator
    is zero to within rounding (``n * eps * max |v|``): i = j, repeated values, or (for
    ``plus``) two zero values.

    Zeroing repeated values keeps every product with E finite; the ``where`` inside
    the division keeps its derivatives finite too.  The SVD rules use the two kinds
    instead of ``1 / (s_j² - s_i²)``, which loses ``eps s² / (s_j² - s_i²)`` to
    cancellation when s_i ≈ s_j: ``s_j / (s_j² - s_i²) = (E⁻ + E⁺) / 2`` and
    ``s_i / (s_j² - s_i²) = (E⁻ - E⁺) / 2``, where ``s_j - s_i`` is exact.
    """
    v = values
    pair = b.add if plus else b.subtract
    diff = pair(b.expand_dims(v, -2), b.expand_dims(v, -1))        # (i, j) -> v_j ∓ v_i
    scale = b.max(b.abs(v), axis=-1, keepdims=True)
    tol = b.multiply(b.expand_dims(scale, -1), float(v.dims[-1] * np.finfo(v.dtype).eps))
    distinct = b.greater(b.abs(diff), tol)
    return b.where(distinct, b.divide(1.0, b.where(distinct, diff, 1.0)), 0.0)


# -- LU and what is computed from it ------------------------------------------

def _square(name, a):
    if len(a.dims) < 2 or a.dims[-1] != a.dims[-2]:
        raise ValueError(f"{name}: expected a stack of square matrices (..., n, n), got {fmt_shape(a.dims)}")
    return a.dims[-1]


def _same_batch(name, *avals):
    constraints: list = []
    first = avals[0]
    for other in avals[1:]:
        msg = f"{name}: batch shapes {fmt_shape(first.dims[:-2])} and {fmt_shape(other.dims[:-2])} differ"
        if len(other.dims) != len(first.dims):
            raise ValueError(msg)
        for x, y in zip(first.dims[:-2], other.dims[:-2]):
            unify_dim(x, y, constraints, msg)
        if other.dtype != first.dtype:
            raise TypeError(f"{name}: dtypes {first.dtype} and {other.dtype} differ")
    return constraints


def _lu_shape(a):
    n = _square("lu", a)
    return Aval(a.dims[:-2] + (n + 1, n), a.dtype)


lu_p = Primitive(
    "lu", batch=batch_stack, shape=_lu_shape, ref=ref.lu_factor, differentiable=False,
    vjp=lambda b, y_bar, y, a: (None,), jvp=lambda b, x_dots, y, a: None,
    doc="LU factors with partial pivoting, packed: rows :n the factors, row n the pivots.  "
        "No derivative: its consumers differentiate with respect to A directly.",
)


def _factors_and_matrix(name, f, a):
    n = _square(name, a)
    if f.dims[-2:] != (n + 1, n):
        raise ValueError(f"{name}: LU factors of shape {fmt_shape(f.dims)} do not match A {fmt_shape(a.dims)}")
    return n, _same_batch(name, f, a)


def _lu_solve_shape(f, a, rhs, *, trans):
    n, constraints = _factors_and_matrix("lu_solve", f, a)
    if len(rhs.dims) != len(a.dims) or rhs.dims[-2] != n:
        raise ValueError(f"lu_solve: right-hand side of shape {fmt_shape(rhs.dims)} does not match "
                         f"A of shape {fmt_shape(a.dims)}")
    constraints += _same_batch("lu_solve", a, rhs)
    return Aval(rhs.dims, rhs.dtype, tuple(constraints))


def _lu_solve_vjp(b, y_bar, y, f, a, rhs, *, trans):
    """X = A⁻¹B:  B̄ = A⁻ᵀ X̄ (a solve with the same factors),  Ā = -B̄ Xᵀ.
    For X = A⁻ᵀB (``trans``):  B̄ = A⁻¹ X̄,  Ā = -X B̄ᵀ.

    Reference: Giles (2008), "An extended collection of matrix derivative results",
    sec. 2.2.3.  Degenerate cases: a singular A raises ``LinAlgError`` in the solve,
    as the forward pass does.
    """
    rhs_bar = b.bind(lu_solve_p, f, a, y_bar, trans=not trans)
    # negate the (n, k) factor, not the (n, n) product: no extra pass over Ā
    a_bar = (b.matmul(rhs_bar, _mT(b, b.negative(y))) if not trans
             else b.matmul(b.negative(y), _mT(b, rhs_bar)))
    return None, a_bar, rhs_bar


def _lu_solve_jvp(b, x_dots, y, f, a, rhs, *, trans):
    """dX = A⁻¹ (dB - dA X)  (with Aᵀ and dAᵀ for ``trans``): one more solve with the
    same factors.  Reference and degenerate cases as for the VJP."""
    _, a_dot, rhs_dot = x_dots
    change = on(a_dot, lambda t: b.negative(b.matmul(_mT(b, t) if trans else t, y)))
    total = sum_tangents(b, rhs_dot, change)
    return on(total, lambda t: b.bind(lu_solve_p, f, a, t, trans=trans))


lu_solve_p = Primitive(
    "lu_solve", batch=_batch_right_hand_sides, shape=_lu_solve_shape, nin=3, attrs=("trans",),
    ref=lambda f, a, rhs, trans: ref.lu_solve(f, rhs, trans),
    vjp=_lu_solve_vjp, jvp=_lu_solve_jvp,
    doc="Solve A X = B (Aᵀ X = B if ``trans``) with A's LU factors.",
)


def _inverse_transpose(b, f, a):
    """A⁻ᵀ from the factors already computed."""
    return b.bind(lu_solve_p, f, a, _eye(b, a.dims[-1], a.dtype, a.dims), trans=True)


def _scalar_per_matrix(name):
    def shape(f, a):
        _, constraints = _factors_and_matrix(name, f, a)
        return Aval(a.dims[:-2], a.dtype, tuple(constraints))
    return shape


def _per_matrix(b, x):
    """(...) -> (..., 1, 1), to scale a stack of matrices."""
    return b.expand_dims(b.expand_dims(x, -1), -1)


def _lu_det_vjp(b, y_bar, y, f, a):
    """d = det A:  Ā = d̄ C,  C = adj(A)ᵀ the cofactor matrix (Jacobi's formula; d A⁻ᵀ
    where A is invertible).

    Reference: Giles (2008), sec. 2.2.4.  Degenerate cases: none.  det is a polynomial,
    and ``lu_cofactor`` forms C from the factors without dividing by the smallest pivot,
    so it is exact at singular A: rank-one at corank 1, zero at corank 2 or more.
    """
    return None, b.multiply(_per_matrix(b, y_bar), b.bind(lu_cofactor_p, f, a))


def _lu_det_jvp(b, x_dots, y, f, a):
    """dd = tr(adj(A) dA) = <C, dA>.  Reference and degenerate cases as for the VJP."""
    return on(x_dots[1], lambda t: b.sum(b.multiply(b.bind(lu_cofactor_p, f, a), t), axis=(-2, -1)))


lu_det_p = Primitive(
    "lu_det", batch=batch_stack, shape=_scalar_per_matrix("lu_det"), nin=2,
    ref=lambda f, a: ref.lu_det(f), vjp=_lu_det_vjp, jvp=_lu_det_jvp,
    doc="det A from its LU factors: the product of U's diagonal times the pivots' parity.",
)


def _cofactor_shape(f, a):
    _, constraints = _factors_and_matrix("lu_cofactor", f, a)
    return Aval(a.dims, a.dtype, tuple(constraints))


def _pair_products(b, s):
    """P_ij = prod_{l != i, j} s_l for i != j, 0 on the diagonal, for a stack of vectors s.

    prod / (s_i s_j) where no s_l is 0; with zeros, only the pairs that cover every zero
    get the product of the others (as reduce_prod's rule does for one factor out).
    """
    n = s.dims[-1]
    zero = b.equal(s, 0.0)
    nonzero = b.where(zero, 1.0, s)
    zeros = b.astype(zero, s.dtype)
    total = b.expand_dims(b.prod(nonzero, axis=-1, keepdims=True), -1)          # (..., 1, 1)
    count = b.expand_dims(b.sum(zeros, axis=-1, keepdims=True), -1)
    quotient = b.divide(total, b.multiply(b.expand_dims(nonzero, -1), b.expand_dims(nonzero, -2)))
    left = b.subtract(b.subtract(count, b.expand_dims(zeros, -1)), b.expand_dims(zeros, -2))
    off_diagonal = b.as_tensor((1 - np.eye(n)).astype(s.dtype))
    return b.multiply(b.where(b.equal(left, 0.0), quotient, 0.0), off_diagonal)


def _det_hessian(b, a, e):
    """H[E] = D²det(A)[E, ·] as a matrix: the derivative of the cofactor matrix C(A) in the
    direction E, and (the form being symmetric) C's VJP of the cotangent E.

    With A = U S Vᵀ and Ẽ = Uᵀ E V, det(A + E) = σ det(S + Ẽ), σ = det U det V = ±1, so

        H[E] = σ U K Vᵀ,   K_ii = Σ_{j≠i} P_ij Ẽ_jj,   K_ij = -P_ij Ẽ_ji (i ≠ j),

    P_ij = prod_{l≠i,j} s_l: products of singular values, no division by a small one,
    so it is exact at every A (nonzero up to corank 2).  Reference: the second derivative
    of det is the signed (n-2)-minors (Magnus & Neudecker, "Matrix Differential Calculus",
    ch. 8); in the SVD basis only the diagonal minors of S survive.  The SVD and the LUs
    of U and V are nodes of the graph, shared by every H of the same A.
    """
    n = a.dims[-1]
    y = b.bind(svd_p, a)
    s, u, v = _svd_parts(b, y, n, n)
    sigma = b.multiply(b.bind(lu_sign_p, b.bind(lu_p, u)), b.bind(lu_sign_p, b.bind(lu_p, v)))
    et = b.matmul(b.matmul(_mT(b, u), e), v)
    pairs = _pair_products(b, s)
    diagonal = b.sum(b.multiply(pairs, b.expand_dims(_diagonal(b, et), -2)), axis=-1)
    k = b.subtract(_diag_embed(b, diagonal), b.multiply(_mT(b, et), pairs))
    return b.multiply(_per_matrix(b, sigma), b.matmul(b.matmul(u, k), _mT(b, v)))


def _lu_cofactor_vjp(b, y_bar, y, f, a):
    """C = adj(A)ᵀ = ∇det(A):  Ā = H[C̄], H = D²det(A) (symmetric, so VJP and JVP are the
    same map; see ``_det_hessian``).

    Degenerate cases: none at second order of det.  The SVD's rules and the divisions
    of ``_pair_products`` carry the third and higher orders: exact where the singular
    values are distinct and not small, finite but inexact at (near) singular A.
    """
    return None, _det_hessian(b, a, y_bar)


def _lu_cofactor_jvp(b, x_dots, y, f, a):
    """dC = H[dA].  Reference and degenerate cases as for the VJP."""
    return on(x_dots[1], lambda t: _det_hessian(b, a, t))


lu_cofactor_p = Primitive(
    "lu_cofactor", batch=batch_stack, shape=_cofactor_shape, nin=2,
    ref=lambda f, a: ref.lu_cofactor(f), vjp=_lu_cofactor_vjp, jvp=_lu_cofactor_jvp,
    doc="The cofactor matrix adj(A)ᵀ = ∂det A/∂A from A's LU factors, exact at singular A: "
        "d A⁻ᵀ's cost, without dividing by the smallest pivot.",
)


def _lu_logabsdet_vjp(b, y_bar, y, f, a):
    """l = log|det A|:  Ā = l̄ A⁻ᵀ.

    Reference: Giles (2008), sec. 2.2.4.  Degenerate cases: at a singular A (l = -inf)
    the solve raises ``LinAlgError``.
    """
    return None, b.multiply(_per_matrix(b, y_bar), _inverse_transpose(b, f, a))


def _lu_logabsdet_jvp(b, x_dots, y, f, a):
    """dl = tr(A⁻¹ dA).  Reference and degenerate cases as for the VJP."""
    return on(x_dots[1], lambda t: _trace(b, b.bind(lu_solve_p, f, a, t, trans=False)))


lu_logabsdet_p = Primitive(
    "lu_logabsdet", batch=batch_stack, shape=_scalar_per_matrix("lu_logabsdet"), nin=2,
    ref=lambda f, a: ref.lu_logabsdet(f), vjp=_lu_logabsdet_vjp, jvp=_lu_logabsdet_jvp,
    doc="log|det A| from its LU factors: the sum of log|U_jj|.",
)


def _lu_sign_shape(f):
    n = f.dims[-1]
    if len(f.dims) < 2 or f.dims[-2] != n + 1:
        raise ValueError(f"lu_sign: expected packed LU factors (..., n + 1, n), got {fmt_shape(f.dims)}")
    return Aval(f.dims[:-2], f.dtype)


lu_sign_p = Primitive(
    "lu_sign", batch=batch_stack, shape=_lu_sign_shape, ref=ref.lu_sign, differentiable=False,
    vjp=lambda b, y_bar, y, f: (None,), jvp=lambda b, x_dots, y, f: None,
    doc="The sign of det A (+1, -1, or 0 when singular): piecewise constant.",
)


# -- Cholesky and triangular solves -------------------------------------------

def _lower_half(b, x):
    """Φ(X): the lower triangle of X with its diagonal halved."""
    n = x.dims[-1]
    mask = np.tril(np.ones((n, n)), -1) + 0.5 * np.eye(n)
    return b.multiply(x, b.as_tensor(mask.astype(x.dtype)))


def _cholesky_shape(a):
    _square("cholesky", a)
    return Aval(a.dims, a.dtype)


def _cholesky_vjp(b, y_bar, y, a):
    """A = L Lᵀ:  Ā = sym(L⁻ᵀ Φ(Lᵀ L̄) L⁻¹), Φ taking the lower triangle with the diagonal
    halved, sym(X) = (X + Xᵀ)/2 (the primitive factors sym(A), so Ā is symmetric).

    Reference: I. Murray (2016), "Differentiation of the Cholesky decomposition",
    eq. 10.  Degenerate cases: none for SPD input; the forward pass raises
    ``LinAlgError`` otherwise.  The two triangular solves replace L⁻¹ products.
    """
    p = _lower_half(b, b.matmul(_mT(b, y), y_bar))
    half = b.bind(triangular_solve_p, y, _mT(b, p), lower=True, trans=True)        # L⁻ᵀ Pᵀ
    full = b.bind(triangular_solve_p, y, _mT(b, half), lower=True, trans=True)     # L⁻ᵀ P L⁻¹
    return (_sym(b, full),)


def _cholesky_jvp(b, x_dots, y, a):
    """dL = L Φ(L⁻¹ sym(dA) L⁻ᵀ).  Reference and degenerate cases as for the VJP."""
    def tangent(a_dot):
        left = b.bind(triangular_solve_p, y, _sym(b, a_dot), lower=True, trans=False)   # L⁻¹ dA
        both = b.bind(triangular_solve_p, y, _mT(b, left), lower=True, trans=False)     # L⁻¹ dA L⁻ᵀ
        return b.matmul(y, _lower_half(b, both))
    return on(x_dots[0], tangent)


cholesky_p = Primitive(
    "cholesky", batch=batch_stack, shape=_cholesky_shape, ref=ref.cholesky, vjp=_cholesky_vjp, jvp=_cholesky_jvp,
    doc="Lower Cholesky factor of sym(A) = (A + Aᵀ)/2; LinAlgError unless positive definite.",
)


def _triangle(b, x, lower: bool):
    n = x.dims[-1]
    mask = np.tril(np.ones((n, n))) if lower else np.triu(np.ones((n, n)))
    return b.multiply(x, b.as_tensor(mask.astype(x.dtype)))


def _triangular_solve_shape(t, rhs, *, lower, trans):
    n = _square("triangular_solve", t)
    if len(rhs.dims) != len(t.dims) or rhs.dims[-2] != n:
        raise ValueError(f"triangular_solve: right-hand side of shape {fmt_shape(rhs.dims)} does not "
                         f"match the matrix of shape {fmt_shape(t.dims)}")
    return Aval(rhs.dims, rhs.dtype, tuple(_same_batch("triangular_solve", t, rhs)))


def _triangular_solve_vjp(b, y_bar, y, t, rhs, *, lower, trans):
    """X = op(T)⁻¹ B, T triangular:  B̄ = op(T)⁻ᵀ X̄;  T̄ = -B̄ Xᵀ (or -X B̄ᵀ when op
    transposes), restricted to T's triangle, as the other one is never read.

    Reference: Giles (2008), sec. 2.2.3.  Degenerate cases: a zero on the diagonal
    gives inf/NaN, as the forward pass does.
    """
    rhs_bar = b.bind(triangular_solve_p, t, y_bar, lower=lower, trans=not trans)
    t_bar = b.matmul(y, _mT(b, rhs_bar)) if trans else b.matmul(rhs_bar, _mT(b, y))
    return b.negative(_triangle(b, t_bar, lower)), rhs_bar


def _triangular_solve_jvp(b, x_dots, y, t, rhs, *, lower, trans):
    """dX = op(T)⁻¹ (dB - op(dT) X), dT restricted to T's triangle.  Reference and
    degenerate cases as for the VJP."""
    t_dot, rhs_dot = x_dots

    def change(d):
        d = _triangle(b, d, lower)
        return b.negative(b.matmul(_mT(b, d) if trans else d, y))
    total = sum_tangents(b, rhs_dot, on(t_dot, change))
    return on(total, lambda v: b.bind(triangular_solve_p, t, v, lower=lower, trans=trans))


triangular_solve_p = Primitive(
    "triangular_solve", batch=_batch_right_hand_sides, shape=_triangular_solve_shape, nin=2, attrs=("lower", "trans"),
    ref=ref.triangular_solve, vjp=_triangular_solve_vjp, jvp=_triangular_solve_jvp,
    doc="Solve op(T) X = B with T the lower (or upper) triangle of t, op = transpose if ``trans``.",
)


# -- symmetric eigendecomposition ---------------------------------------------

def _eigh_shape(a):
    n = _square("eigh", a)
    return Aval(a.dims[:-2] + (n + 1, n), a.dtype)


def _eigh_vjp(b, y_bar, y, a):
    """A = V diag(w) Vᵀ:  Ā = sym(V (diag(w̄) + F ∘ (Vᵀ V̄)) Vᵀ),  F_ij = 1/(w_j - w_i).

    Reference: M. Giles (2008), sec. 3.1; the symmetric part because the primitive
    decomposes sym(A).  Degenerate cases: the F term is formed only when V̄ is
    not structurally zero, so a loss of the eigenvalues alone is exact at repeated
    eigenvalues.  Where V̄ is present, F_ij is 0 for equal (to rounding) eigenvalues.
    That is exact for losses of V unchanged by a rotation of the basis inside each
    eigenspace (a projector onto a whole eigenspace); for other losses of V it is
    finite but not the derivative: none exists for a general loss of V there, and
    for a loss smooth in A (``V diag(g(w)) Vᵀ``) the limit of F_ij (Vᵀ V̄)_ij is not
    determined by V̄ at the degenerate point.  ``eigh_function_p`` has the exact
    rule for that case.  Near-degenerate, the error grows like eps / (w_j - w_i).
    """
    n = a.dims[-1]
    w, v = row(b, y, 0), rows(b, y, 1, n + 1)
    w_bar, v_bar = _block(b, y_bar, 0, 1), _block(b, y_bar, 1, n + 1)
    w_bar = on(w_bar, lambda t: b.reshape(t, w.dims))
    if v_bar is None:       # V diag(w̄) Vᵀ, symmetric already: one product
        return (on(w_bar, lambda t: b.matmul(b.multiply(v, b.expand_dims(t, -2)), _mT(b, v))),)
    inner = b.multiply(_inverse_gaps(b, w), b.matmul(_mT(b, v), v_bar))
    inner = sum_tangents(b, on(w_bar, lambda t: _diag_embed(b, t)), inner)
    return (_sym(b, b.matmul(b.matmul(v, inner), _mT(b, v))),)


def _eigh_jvp(b, x_dots, y, a):
    """K = Vᵀ sym(dA) V:  dw = diag(K),  dV = V (F ∘ K).  Reference and degenerate
    cases as for the VJP (F_ij = 0 at repeated eigenvalues)."""
    def tangent(a_dot):
        n = a.dims[-1]
        w, v = row(b, y, 0), rows(b, y, 1, n + 1)
        k = b.matmul(b.matmul(_mT(b, v), _sym(b, a_dot)), v)
        w_dot = b.expand_dims(_diagonal(b, k), -2)
        v_dot = b.matmul(v, b.multiply(_inverse_gaps(b, w), k))
        return b.concatenate([w_dot, v_dot], axis=-2)
    return on(x_dots[0], tangent)


eigh_p = Primitive(
    "eigh", batch=batch_stack, shape=_eigh_shape, ref=ref.eigh, vjp=_eigh_vjp, jvp=_eigh_jvp,
    doc="Eigendecomposition of sym(A), packed [w; V]: w ascending, V's columns the "
        "eigenvectors, each with its largest entry positive.",
)


# -- singular value decomposition ---------------------------------------------

def _svd_shape(a):
    if len(a.dims) < 2:
        raise ValueError(f"svd: expected a stack of matrices (..., m, n), got {fmt_shape(a.dims)}")
    m, n = a.dims[-2:]
    return Aval(a.dims[:-2] + (1 + m + n, min(m, n)), a.dtype)


def _svd_parts(b, y, m, n):
    return row(b, y, 0), rows(b, y, 1, 1 + m), rows(b, y, 1 + m, 1 + m + n)


def _svd_vjp(b, y_bar, y, a):
    """A = U S Vᵀ (thin, k = min(m, n)):

        Ā = U [diag(s̄) + (F ∘ J) S + S (F ∘ K)] Vᵀ
            + (I - UUᵀ) Ū S⁻¹ Vᵀ        (m > k only)
            + U S⁻¹ V̄ᵀ (I - VVᵀ)        (n > k only)

    with J = UᵀŪ - ŪᵀU, K = VᵀV̄ - V̄ᵀV and F_ij = 1/(s_j² - s_i²).  Reference:
    J. Townsend (2016), "Differentiating the singular value decomposition",
    eq. (30) and the rectangular terms.  The F terms are formed as
    ``(E⁻ ∘ (J + K) + E⁺ ∘ (J - K)) / 2`` with E⁻_ij = 1/(s_j - s_i) and
    E⁺_ij = 1/(s_j + s_i) (see ``_inverse_gaps``): no cancellation in s_j² - s_i².

    Degenerate cases: terms are formed only for the blocks of the cotangent that
    are not structurally zero, so a loss of s alone is exact at repeated and zero
    singular values.  E⁻_ij is 0 for equal (to rounding) singular values (E⁺_ij
    only where both are zero): exact for losses of U, V unchanged by a rotation of
    the basis inside a singular subspace; for other losses of U, V finite but not
    the derivative (none exists for a general loss, and for a loss smooth in A the
    limit of the E⁻ part is not determined by Ū, V̄ at the degenerate point; see
    ``svd_function_p``).  Near-degenerate, the error grows like eps / (s_j - s_i).
    The S⁻¹ divisions are 0/0 = 0 where a column of Ū (V̄) is zero, so a loss that
    ignores the null-space vectors of a rank-deficient A has finite gradients.
    """
    m, n = a.dims[-2:]
    k = min(m, n)
    s, u, v = _svd_parts(b, y, m, n)
    s_bar, u_bar, v_bar = _block(b, y_bar, 0, 1), _block(b, y_bar, 1, 1 + m), _block(b, y_bar, 1 + m, 1 + m + n)
    s_row = b.expand_dims(s, -2)
    s_bar = on(s_bar, lambda t: b.reshape(t, s.dims))
    if u_bar is None and v_bar is None:     # U diag(s̄) Vᵀ: one product
        return (on(s_bar, lambda t: b.matmul(b.multiply(u, b.expand_dims(t, -2)), _mT(b, v))),)
    j_part = k_part = None
    terms = []
    if u_bar is not None:
        utu = b.matmul(_mT(b, u), u_bar)
        j_part = b.subtract(utu, _mT(b, utu))
        if m > k:
            rest = b.subtract(u_bar, b.matmul(u, utu))
            terms.append(b.matmul(b.safe_div(rest, s_row), _mT(b, v)))
    if v_bar is not None:
        vtv = b.matmul(_mT(b, v), v_bar)
        k_part = b.subtract(vtv, _mT(b, vtv))
        if n > k:
            rest = b.subtract(v_bar, b.matmul(v, vtv))
            terms.append(b.matmul(u, _mT(b, b.safe_div(rest, s_row))))
    both = sum_tangents(b, j_part, k_part)                              # J + K
    apart = sum_tangents(b, j_part, on(k_part, b.negative))            # J - K
    coupled = b.multiply(b.add(b.multiply(_inverse_gaps(b, s), both),
                               b.multiply(_inverse_gaps(b, s, plus=True), apart)), 0.5)
    inner = sum_tangents(b, on(s_bar, lambda t: _diag_embed(b, t)), coupled)
    terms.insert(0, b.matmul(b.matmul(u, inner), _mT(b, v)))
    return (sum_tangents(b, *terms),)


def _svd_jvp(b, x_dots, y, a):
    """K = Uᵀ dA V:  ds = diag(K),
    dU = U (F ∘ (K S + S Kᵀ)) + (I - UUᵀ) dA V S⁻¹  (second term for m > k only),
    dV = V (F ∘ (S K + Kᵀ S)) + (I - VVᵀ) dAᵀ U S⁻¹  (second term for n > k only),
    the F terms formed as E⁻ ∘ sym(K) ± E⁺ ∘ skew(K).  Reference and degenerate
    cases as for the VJP."""
    m, n = a.dims[-2:]
    k = min(m, n)

    def tangent(a_dot):
        s, u, v = _svd_parts(b, y, m, n)
        s_row = b.expand_dims(s, -2)
        a_dot_v = b.matmul(a_dot, v)
        kk = b.matmul(_mT(b, u), a_dot_v)
        sym = b.multiply(_inverse_gaps(b, s), _sym(b, kk))
        skew = b.multiply(_inverse_gaps(b, s, plus=True), b.multiply(b.subtract(kk, _mT(b, kk)), 0.5))
        u_dot = b.matmul(u, b.add(sym, skew))
        v_dot = b.matmul(v, b.subtract(sym, skew))
        if m > k:
            u_dot = b.add(u_dot, b.safe_div(b.subtract(a_dot_v, b.matmul(u, kk)), s_row))
        if n > k:
            a_dot_t_u = b.matmul(_mT(b, a_dot), u)
            v_dot = b.add(v_dot, b.safe_div(b.subtract(a_dot_t_u, b.matmul(v, _mT(b, kk))), s_row))
        return b.concatenate([b.expand_dims(_diagonal(b, kk), -2), u_dot, v_dot], axis=-2)
    return on(x_dots[0], tangent)


svd_p = Primitive(
    "svd", batch=batch_stack, shape=_svd_shape, ref=ref.svd, vjp=_svd_vjp, jvp=_svd_jvp,
    doc="Thin SVD packed [s; U; V]: s descending, V (not Vᵀ), each u_j with its largest "
        "entry positive.",
)


# -- QR ----------------------------------------------------------------------------

def _qr_shape(a):
    if len(a.dims) < 2:
        raise ValueError(f"qr: expected a stack of matrices (..., m, n), got {fmt_shape(a.dims)}")
    m, n = a.dims[-2:]
    if isinstance(m, int) and isinstance(n, int) and m < n:
        raise ValueError(f"qr: the primitive takes m >= n, got {fmt_shape(a.dims)} (jg.linalg.qr "
                         "handles wide matrices)")
    return Aval(a.dims[:-2] + (m + n, n), a.dtype)


def _qr_parts(b, y, m, n):
    return rows(b, y, 0, m), rows(b, y, m, m + n)


def _strict_lower(b, x):
    n = x.dims[-1]
    return b.multiply(x, b.as_tensor(np.tril(np.ones((n, n)), -1).astype(x.dtype)))


def _qr_vjp(b, y_bar, y, a):
    """A = QR (m >= n, R's diagonal positive):  with M = R R̄ᵀ - Q̄ᵀ Q,

        Ā = (Q̄ + Q copyltu(M)) R⁻ᵀ,   copyltu(M) = tril(M) + tril(M, -1)ᵀ.

    Reference: H.-J. Liao, J.-G. Liu, L. Wang, T. Xiang (2019), "Differentiable programming
    tensor networks", eq. (S12) (also Walter & Lehmann 2018; Seeger et al. 2017).  Only the
    upper triangle of R̄ counts (R's lower one is constant): R R̄ᵀ's lower triangle ignores
    the rest.  Blocks of the cotangent that are structurally zero are skipped.  The R⁻ᵀ
    is a triangular solve.  Degenerate cases: rank-deficient A (a zero on R's diagonal) has
    no derivative; the solve gives inf/NaN there.
    """
    m, n = a.dims[-2:]
    q, r = _qr_parts(b, y, m, n)
    q_bar, r_bar = _block(b, y_bar, 0, m), _block(b, y_bar, m, m + n)
    if q_bar is None and r_bar is None:
        return (None,)
    mm = sum_tangents(b, on(r_bar, lambda t: b.matmul(r, _mT(b, t))),
                      on(q_bar, lambda t: b.negative(b.matmul(_mT(b, t), q))))
    copyltu = b.add(_triangle(b, mm, lower=True), _mT(b, _strict_lower(b, mm)))
    inner = sum_tangents(b, q_bar, b.matmul(q, copyltu))
    # Ā = inner R⁻ᵀ, i.e. Āᵀ = R⁻¹ innerᵀ
    return (_mT(b, b.bind(triangular_solve_p, r, _mT(b, inner), lower=False, trans=False)),)


def _qr_jvp(b, x_dots, y, a):
    """X = dA R⁻¹, C = Qᵀ X, L = tril(C, -1), Ω = L - Lᵀ (= Qᵀ dQ, antisymmetric):

        dR = (C - Ω) R   (C - Ω = triu(C) + Lᵀ is upper triangular),
        dQ = X - Q (C - Ω).

    Derivation: dA R⁻¹ = dQ + Q dR R⁻¹; Qᵀ dQ is antisymmetric and dR R⁻¹ upper
    triangular, which splits C.  Degenerate cases as for the VJP."""
    m, n = a.dims[-2:]

    def tangent(a_dot):
        q, r = _qr_parts(b, y, m, n)
        x = _mT(b, b.bind(triangular_solve_p, r, _mT(b, a_dot), lower=False, trans=True))   # dA R⁻¹
        c = b.matmul(_mT(b, q), x)
        low = _strict_lower(b, c)
        upper = b.add(_triangle(b, c, lower=False), _mT(b, low))                           # C - Ω
        return b.concatenate([b.subtract(x, b.matmul(q, upper)), b.matmul(upper, r)], axis=-2)
    return on(x_dots[0], tangent)


qr_p = Primitive(
    "qr", batch=batch_stack, shape=_qr_shape, ref=ref.qr, vjp=_qr_vjp, jvp=_qr_jvp,
    doc="Householder QR of tall or square A (m >= n), packed [Q; R]: the reduced Q (m, n), "
        "then R (n, n) upper triangular with a non-negative diagonal.",
)


# -- spectral functions: derivatives exact at repeated values -------------------
#
# ``jg.linalg.eigh_function(A, g) = V diag(g(w)) Vᵀ`` is built from ordinary ops
# (eigh, g applied to w, matmuls) and then passed through ``eigh_function``: a
# primitive whose value is its first input unchanged and whose derivative with
# respect to A is the Daleckii–Krein one.  Its other inputs are graph nodes the
# rule needs: V, the divided differences D of g (computed in the graph from g, g'
# and the eigenvalues, see jg.linalg), and g(w).  So no code is stored: the node
# saves and loads like any other, and a rule's output is ordinary graph that
# differentiates again.  ``svd_function`` is the same for ``U diag(g(s)) Vᵀ``.
# Both are elementwise copies of input 0 to the backends (``scalar="{0}"``).

def _top(b, x, n: int):
    """The first ``n`` rows of ``x`` (the rule's inputs are padded to the output's rows)."""
    return x if x.dims[-2] == n else rows(b, x, 0, n)


def _pad_rows(b, x, m: int):
    """``x`` with zero rows appended up to ``m`` rows."""
    if x.dims[-2] == m:
        return x
    full = (None, None, None)
    index = tuple(full for _ in x.dims[:-2]) + ((0, x.dims[-2], 1), full)
    return b.bind(unslice_p, x, shape=x.dims[:-2] + (m, x.dims[-1]), index=index)


def _spectral_shape(name: str):
    def shape(y, *rest):
        for x in rest:
            if len(x.dims) != len(y.dims) or x.dims[-2:] != y.dims[-2:]:
                raise ValueError(f"{name}: operands of shapes {fmt_shape(y.dims)} and "
                                 f"{fmt_shape(x.dims)} differ")
        return Aval(y.dims, y.dtype, tuple(_same_batch(name, y, *rest)))
    return shape


def _eigh_function_vjp(b, y_bar, y, value, a, v, d, gw):
    """Y = V diag(g(w)) Vᵀ, P = sym(Vᵀ Ȳ V):  Ā = V (D ∘ P) Vᵀ + (the diag(P) part below),
    ḡ(w) = diag(P), with D_ij = (g(w_i) - g(w_j)) / (w_i - w_j) off the diagonal (0 on it).

    Reference: Daleckii & Krein (1965); N. J. Higham, "Functions of Matrices" (2008),
    thm. 3.11.  The diagonal of the derivative, g'(w_i) P_ii, reaches A through ḡ(w):
    jitgrad's own derivative of g, then eigh's rule for a loss of w alone (exact at
    repeated eigenvalues).  That path also reaches whatever g reads besides w.
    Degenerate cases: none at first order; D has the limit g'(w_i) at w_i = w_j (the
    divided differences are computed without cancellation there, see jg.linalg), so
    the gradient is exact at repeated eigenvalues.  Second derivatives go through
    eigh's rule for V: exact at distinct eigenvalues.  Y, V and D get no cotangent:
    ``gw`` holds g(w) on its diagonal, and only its diagonal is read.
    """
    n = a.dims[-1]
    p = _sym(b, b.matmul(b.matmul(_mT(b, v), y_bar), v))
    a_bar = b.matmul(b.matmul(v, b.multiply(d, p)), _mT(b, v))
    return None, a_bar, None, None, b.multiply(p, _eye(b, n, p.dtype))


def _eigh_function_jvp(b, x_dots, y, value, a, v, d, gw):
    """dY = V (D ∘ sym(Vᵀ dA V) + diag(d g(w))) Vᵀ.  Reference and degenerate cases as for
    the VJP."""
    n = a.dims[-1]
    _, a_dot, _, _, gw_dot = x_dots
    inner = sum_tangents(
        b, on(a_dot, lambda t: b.multiply(d, _sym(b, b.matmul(b.matmul(_mT(b, v), t), v)))),
        on(gw_dot, lambda t: b.multiply(t, _eye(b, n, t.dtype))))
    return on(inner, lambda t: b.matmul(b.matmul(v, t), _mT(b, v)))


eigh_function_p = Primitive(
    "eigh_function", batch=batch_stack, shape=_spectral_shape("eigh_function"), nin=5,
    ref=lambda y, a, v, d, gw: y, scalar="{0}",
    vjp=_eigh_function_vjp, jvp=_eigh_function_jvp, marker=True,
    doc="V diag(g(w)) Vᵀ (input 0, as computed) with the Daleckii–Krein derivative in A "
        "(input 1), from V (2), the divided differences of g (3) and g(w) (4, diagonal).",
)


def _svd_function_parts(b, a, u, v, dm, dp):
    n = a.dims[-1]
    v, dm, dp = _top(b, v, n), _top(b, dm, n), _top(b, dp, n)
    return n, v, dm, dp, b.expand_dims(_diagonal(b, dp), -2)


def _svd_function_vjp(b, y_bar, y, value, a, u, v, dm, dp, gs):
    """Y = U diag(g(s)) Vᵀ (thin, m >= n), P = Uᵀ Ȳ V:

        Ā = U (D⁻ ∘ sym(P) + D⁺ ∘ skew(P)) Vᵀ + (Ȳ V - U P) diag(g(s) / s) Vᵀ,
        ḡ(s) = diag(P),

    D⁻_ij = (g(s_i) - g(s_j)) / (s_i - s_j) off the diagonal (0 on it), D⁺_ij =
    (g(s_i) + g(s_j)) / (s_i + s_j) (so diag(D⁺) = g(s) / s), the second term for m > n
    only.  Reference: the Daleckii–Krein theorem for generalized matrix functions,
    V. Noferini (2017), "A formula for the Fréchet derivative of a generalized matrix
    function", thm. 3.  Degenerate cases: exact at repeated singular values; at zero
    ones D⁺ has the limit g'(0), which is the derivative when g(0) = 0 (otherwise
    U diag(g(s)) Vᵀ is not even continuous there).  Inputs v, dm, dp, gs are padded
    with zero rows to m rows; gs holds g(s) on the diagonal of its top n rows.
    """
    n, v, dm, dp, ratio = _svd_function_parts(b, a, u, v, dm, dp)
    m = a.dims[-2]
    p = b.matmul(b.matmul(_mT(b, u), y_bar), v)
    skew = b.multiply(b.subtract(p, _mT(b, p)), 0.5)
    inner = b.add(b.multiply(dm, _sym(b, p)), b.multiply(dp, skew))
    a_bar = b.matmul(b.matmul(u, inner), _mT(b, v))
    if m > n:
        rest = b.subtract(b.matmul(y_bar, v), b.matmul(u, p))
        a_bar = b.add(a_bar, b.matmul(b.multiply(rest, ratio), _mT(b, v)))
    gs_bar = _pad_rows(b, b.multiply(p, _eye(b, n, p.dtype)), m)
    return None, a_bar, None, None, None, None, gs_bar


def _svd_function_jvp(b, x_dots, y, value, a, u, v, dm, dp, gs):
    """K = Uᵀ dA V:  dY = U (D⁻ ∘ sym(K) + D⁺ ∘ skew(K) + diag(d g(s))) Vᵀ
    + (dA V - U K) diag(g(s) / s) Vᵀ.  Reference and degenerate cases as for the VJP."""
    n, v, dm, dp, ratio = _svd_function_parts(b, a, u, v, dm, dp)
    m = a.dims[-2]
    _, a_dot, _, _, _, _, gs_dot = x_dots
    terms = [on(gs_dot, lambda t: b.multiply(_top(b, t, n), _eye(b, n, t.dtype)))]
    rest = None
    if a_dot is not None:
        a_dot_v = b.matmul(a_dot, v)
        k = b.matmul(_mT(b, u), a_dot_v)
        skew = b.multiply(b.subtract(k, _mT(b, k)), 0.5)
        terms.append(b.add(b.multiply(dm, _sym(b, k)), b.multiply(dp, skew)))
        if m > n:
            rest = b.multiply(b.subtract(a_dot_v, b.matmul(u, k)), ratio)
    inner = sum_tangents(b, *terms)
    y_dot = on(inner, lambda t: b.matmul(u, t))
    y_dot = sum_tangents(b, y_dot, rest)
    return on(y_dot, lambda t: b.matmul(t, _mT(b, v)))


svd_function_p = Primitive(
    "svd_function", batch=batch_stack, shape=_spectral_shape("svd_function"), nin=7,
    ref=lambda y, a, u, v, dm, dp, gs: y, scalar="{0}",
    vjp=_svd_function_vjp, jvp=_svd_function_jvp, marker=True,
    doc="U diag(g(s)) Vᵀ (input 0, as computed, m >= n) with the exact derivative in A "
        "(input 1), from U, V, the divided differences D⁻, D⁺ of g and g(s) (inputs 2-6; "
        "all but U padded with zero rows to m rows).",
)


RULES: dict = {}        # "frechet" -> L(A, E) of expm, filled by jitgrad.linalg (it builds expm's graph)


expm_p = Primitive(
    "expm", batch=batch_stack, shape=_spectral_shape("expm"), nin=2,
    ref=lambda y, a: y, scalar="{0}",
    vjp=lambda b, y_bar, y, value, a: (None, RULES["frechet"](_mT(b, a), y_bar)),
    jvp=lambda b, x_dots, y, value, a: on(x_dots[1], lambda t: RULES["frechet"](a, t)),
    marker=True,
    doc="expm(A) (input 0, the Padé graph as computed) with the Fréchet derivative in A "
        "(input 1): dY = L(A, dA), Ā = L(Aᵀ, Ȳ), each the top right block of expm of "
        "[[A, E], [0, A]] (Higham, \"Functions of Matrices\", thm. 3.6), through expm "
        "itself, so every order recurses.",
)


PRIMITIVES = (matmul_p, lu_p, lu_solve_p, lu_det_p, lu_cofactor_p, lu_logabsdet_p, lu_sign_p,
              cholesky_p, triangular_solve_p, eigh_p, svd_p, eigh_function_p, svd_function_p, expm_p)
