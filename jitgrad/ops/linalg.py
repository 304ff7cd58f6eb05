"""Linear-algebra primitives: matmul, and the factorizations behind ``jg.linalg``.

Factorizations are computed once and reused.  ``lu`` packs the LU factors and
pivots of a matrix into one array; the primitives that consume it (``lu_solve``,
``lu_det``, ``lu_logabsdet``, ``lu_sign``) also take the matrix itself, as the
input their derivatives flow to.  ``lu`` has no derivative of its own, so a
gradient reaches ``A`` through those consumers only, and their rules solve with
the same factors: value and gradient of ``solve`` cost one factorization.

``eigh`` and ``svd`` also return one packed array (``[w; V]`` and
``[s; U; V]`` along the second-to-last axis) that ``jg.linalg`` slices.  Their
rules read the cotangent block by block and skip blocks that are structurally
zero, so a loss of the eigenvalues or singular values alone never forms the
``1 / (λ_j - λ_i)`` terms, and stays exact at repeated and zero values.

Every matrix primitive takes stacks ``(..., m, n)`` with equal batch dims (the
builder broadcasts); the matrix sizes are known when the graph is built.
"""
from __future__ import annotations

import numpy as np

from ..primitive import Aval, Primitive, on, sum_tangents
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


matmul_p = Primitive(
    "matmul", shape=_matmul_shape, ref=_matmul_ref, nin=2,
    vjp=lambda b, g, y, x1, x2: (b.matmul(g, _mT(b, x2)), b.matmul(_mT(b, x1), g)),
    jvp=lambda b, dots, y, x1, x2: sum_tangents(
        b, on(dots[0], lambda t: b.matmul(t, x2)), on(dots[1], lambda t: b.matmul(x1, t))),
    doc="Batched matrix product.  Ā = Ȳ Bᵀ,  B̄ = Aᵀ Ȳ.",
)


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


def _block(b, g, lo: int, hi: int):
    """Rows ``lo:hi`` of a packed cotangent, or None where they are structurally zero.

    The cotangent of a packed result is a sum of ``unslice`` nodes, one per block
    the loss used; blocks it did not use are known zeros without looking at values.
    """
    if g.op is unslice_p:
        index = g.attrs["index"]
        start, stop, step = index[-2]
        whole_rows = (all(i == (None, None, None) for i in index[:-2] + index[-1:])
                      and isinstance(start, int) and isinstance(stop, int) and step == 1)
        if whole_rows and (start, stop) == (lo, hi):
            return g.inputs[0]
        if whole_rows and (stop <= lo or start >= hi):
            return None
    elif g.op is add_p:
        parts = [_block(b, x, lo, hi) for x in g.inputs]
        return sum_tangents(b, *parts)
    return rows(b, g, lo, hi)


def _inverse_gaps(b, values, squared: bool):
    """F_ij = 1 / (v_j - v_i) (of squares if ``squared``), and 0 where i = j or the two
    values are equal to within rounding (``n * eps * max |v|``).

    Zeroing repeated values keeps every product with F finite; the ``where`` inside
    the division keeps its derivatives finite too.
    """
    v = b.multiply(values, values) if squared else values
    diff = b.subtract(b.expand_dims(v, -2), b.expand_dims(v, -1))        # (i, j) -> v_j - v_i
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
    "lu", shape=_lu_shape, ref=ref.lu_factor, differentiable=False,
    vjp=lambda b, g, y, a: (None,), jvp=lambda b, dots, y, a: None,
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


def _lu_solve_vjp(b, g, x, f, a, rhs, *, trans):
    """X = A⁻¹B:  B̄ = A⁻ᵀ X̄ (a solve with the same factors),  Ā = -B̄ Xᵀ.
    For X = A⁻ᵀB (``trans``):  B̄ = A⁻¹ X̄,  Ā = -X B̄ᵀ.

    Reference: Giles (2008), "An extended collection of matrix derivative results",
    sec. 2.2.3.  Degenerate cases: a singular A raises ``LinAlgError`` in the solve,
    as the forward pass does.
    """
    rhs_bar = b.bind(lu_solve_p, f, a, g, trans=not trans)
    # negate the (n, k) factor, not the (n, n) product: no extra pass over Ā
    a_bar = (b.matmul(rhs_bar, _mT(b, b.negative(x))) if not trans
             else b.matmul(b.negative(x), _mT(b, rhs_bar)))
    return None, a_bar, rhs_bar


def _lu_solve_jvp(b, dots, x, f, a, rhs, *, trans):
    """dX = A⁻¹ (dB - dA X)  (with Aᵀ and dAᵀ for ``trans``): one more solve with the
    same factors.  Reference and degenerate cases as for the VJP."""
    _, da, drhs = dots
    change = on(da, lambda t: b.negative(b.matmul(_mT(b, t) if trans else t, x)))
    total = sum_tangents(b, drhs, change)
    return on(total, lambda t: b.bind(lu_solve_p, f, a, t, trans=trans))


lu_solve_p = Primitive(
    "lu_solve", shape=_lu_solve_shape, nin=3, attrs=("trans",),
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


def _lu_det_vjp(b, g, y, f, a):
    """d = det A:  Ā = d̄ d A⁻ᵀ  (Jacobi's formula).

    Reference: Giles (2008), sec. 2.2.4.  Degenerate cases: at a singular A the
    solve for A⁻ᵀ raises ``LinAlgError`` (the adjugate is not formed).
    """
    return None, b.multiply(_per_matrix(b, b.multiply(g, y)), _inverse_transpose(b, f, a))


def _lu_det_jvp(b, dots, y, f, a):
    """dd = d tr(A⁻¹ dA).  Reference and degenerate cases as for the VJP."""
    return on(dots[1], lambda t: b.multiply(y, _trace(b, b.bind(lu_solve_p, f, a, t, trans=False))))


lu_det_p = Primitive(
    "lu_det", shape=_scalar_per_matrix("lu_det"), nin=2,
    ref=lambda f, a: ref.lu_det(f), vjp=_lu_det_vjp, jvp=_lu_det_jvp,
    doc="det A from its LU factors: the product of U's diagonal times the pivots' parity.",
)


def _lu_logabsdet_vjp(b, g, y, f, a):
    """l = log|det A|:  Ā = l̄ A⁻ᵀ.

    Reference: Giles (2008), sec. 2.2.4.  Degenerate cases: at a singular A (l = -inf)
    the solve raises ``LinAlgError``.
    """
    return None, b.multiply(_per_matrix(b, g), _inverse_transpose(b, f, a))


def _lu_logabsdet_jvp(b, dots, y, f, a):
    """dl = tr(A⁻¹ dA).  Reference and degenerate cases as for the VJP."""
    return on(dots[1], lambda t: _trace(b, b.bind(lu_solve_p, f, a, t, trans=False)))


lu_logabsdet_p = Primitive(
    "lu_logabsdet", shape=_scalar_per_matrix("lu_logabsdet"), nin=2,
    ref=lambda f, a: ref.lu_logabsdet(f), vjp=_lu_logabsdet_vjp, jvp=_lu_logabsdet_jvp,
    doc="log|det A| from its LU factors: the sum of log|U_jj|.",
)


def _lu_sign_shape(f):
    n = f.dims[-1]
    if len(f.dims) < 2 or f.dims[-2] != n + 1:
        raise ValueError(f"lu_sign: expected packed LU factors (..., n + 1, n), got {fmt_shape(f.dims)}")
    return Aval(f.dims[:-2], f.dtype)


lu_sign_p = Primitive(
    "lu_sign", shape=_lu_sign_shape, ref=ref.lu_sign, differentiable=False,
    vjp=lambda b, g, y, f: (None,), jvp=lambda b, dots, y, f: None,
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


def _cholesky_vjp(b, g, l, a):
    """A = L Lᵀ:  Ā = sym(L⁻ᵀ Φ(Lᵀ L̄) L⁻¹), Φ taking the lower triangle with the diagonal
    halved, sym(X) = (X + Xᵀ)/2 (the primitive factors sym(A), so Ā is symmetric).

    Reference: I. Murray (2016), "Differentiation of the Cholesky decomposition",
    eq. 10.  Degenerate cases: none for SPD input; the forward pass raises
    ``LinAlgError`` otherwise.  The two triangular solves replace L⁻¹ products.
    """
    p = _lower_half(b, b.matmul(_mT(b, l), g))
    half = b.bind(triangular_solve_p, l, _mT(b, p), lower=True, trans=True)        # L⁻ᵀ Pᵀ
    full = b.bind(triangular_solve_p, l, _mT(b, half), lower=True, trans=True)     # L⁻ᵀ P L⁻¹
    return (_sym(b, full),)


def _cholesky_jvp(b, dots, l, a):
    """dL = L Φ(L⁻¹ sym(dA) L⁻ᵀ).  Reference and degenerate cases as for the VJP."""
    def tangent(da):
        left = b.bind(triangular_solve_p, l, _sym(b, da), lower=True, trans=False)      # L⁻¹ dA
        both = b.bind(triangular_solve_p, l, _mT(b, left), lower=True, trans=False)     # L⁻¹ dA L⁻ᵀ
        return b.matmul(l, _lower_half(b, both))
    return on(dots[0], tangent)


cholesky_p = Primitive(
    "cholesky", shape=_cholesky_shape, ref=ref.cholesky, vjp=_cholesky_vjp, jvp=_cholesky_jvp,
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


def _triangular_solve_vjp(b, g, x, t, rhs, *, lower, trans):
    """X = op(T)⁻¹ B, T triangular:  B̄ = op(T)⁻ᵀ X̄;  T̄ = -B̄ Xᵀ (or -X B̄ᵀ when op
    transposes), restricted to T's triangle, as the other one is never read.

    Reference: Giles (2008), sec. 2.2.3.  Degenerate cases: a zero on the diagonal
    gives inf/NaN, as the forward pass does.
    """
    rhs_bar = b.bind(triangular_solve_p, t, g, lower=lower, trans=not trans)
    t_bar = b.matmul(x, _mT(b, rhs_bar)) if trans else b.matmul(rhs_bar, _mT(b, x))
    return b.negative(_triangle(b, t_bar, lower)), rhs_bar


def _triangular_solve_jvp(b, dots, x, t, rhs, *, lower, trans):
    """dX = op(T)⁻¹ (dB - op(dT) X), dT restricted to T's triangle.  Reference and
    degenerate cases as for the VJP."""
    dt, drhs = dots

    def change(d):
        d = _triangle(b, d, lower)
        return b.negative(b.matmul(_mT(b, d) if trans else d, x))
    total = sum_tangents(b, drhs, on(dt, change))
    return on(total, lambda v: b.bind(triangular_solve_p, t, v, lower=lower, trans=trans))


triangular_solve_p = Primitive(
    "triangular_solve", shape=_triangular_solve_shape, nin=2, attrs=("lower", "trans"),
    ref=ref.triangular_solve, vjp=_triangular_solve_vjp, jvp=_triangular_solve_jvp,
    doc="Solve op(T) X = B with T the lower (or upper) triangle of t, op = transpose if ``trans``.",
)


# -- symmetric eigendecomposition ---------------------------------------------

def _eigh_shape(a):
    n = _square("eigh", a)
    return Aval(a.dims[:-2] + (n + 1, n), a.dtype)


def _eigh_vjp(b, g, y, a):
    """A = V diag(w) Vᵀ:  Ā = sym(V (diag(w̄) + F ∘ (Vᵀ V̄)) Vᵀ),  F_ij = 1/(w_j - w_i).

    Reference: M. Giles (2008), sec. 3.1; the symmetric part because the primitive
    decomposes sym(A).  Degenerate cases: the F term is formed only when V̄ is
    not structurally zero, so a loss of the eigenvalues alone is exact at repeated
    eigenvalues.  Where V̄ is present, F_ij is 0 for equal (to rounding) eigenvalues:
    exact for losses invariant to the basis chosen inside an eigenspace, finite
    otherwise (the true derivative does not exist there).
    """
    n = a.dims[-1]
    w, v = row(b, y, 0), rows(b, y, 1, n + 1)
    w_bar, v_bar = _block(b, g, 0, 1), _block(b, g, 1, n + 1)
    w_bar = on(w_bar, lambda t: b.reshape(t, w.dims))
    if v_bar is None:       # V diag(w̄) Vᵀ, symmetric already: one product
        return (on(w_bar, lambda t: b.matmul(b.multiply(v, b.expand_dims(t, -2)), _mT(b, v))),)
    inner = b.multiply(_inverse_gaps(b, w, squared=False), b.matmul(_mT(b, v), v_bar))
    inner = sum_tangents(b, on(w_bar, lambda t: _diag_embed(b, t)), inner)
    return (_sym(b, b.matmul(b.matmul(v, inner), _mT(b, v))),)


def _eigh_jvp(b, dots, y, a):
    """K = Vᵀ sym(dA) V:  dw = diag(K),  dV = V (F ∘ K).  Reference and degenerate
    cases as for the VJP (F_ij = 0 at repeated eigenvalues)."""
    def tangent(da):
        n = a.dims[-1]
        w, v = row(b, y, 0), rows(b, y, 1, n + 1)
        k = b.matmul(b.matmul(_mT(b, v), _sym(b, da)), v)
        dw = b.expand_dims(_diagonal(b, k), -2)
        dv = b.matmul(v, b.multiply(_inverse_gaps(b, w, squared=False), k))
        return b.concatenate([dw, dv], axis=-2)
    return on(dots[0], tangent)


eigh_p = Primitive(
    "eigh", shape=_eigh_shape, ref=ref.eigh, vjp=_eigh_vjp, jvp=_eigh_jvp,
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


def _svd_vjp(b, g, y, a):
    """A = U S Vᵀ (thin, k = min(m, n)):

        Ā = U [diag(s̄) + (F ∘ (UᵀŪ - ŪᵀU)) S + S (F ∘ (VᵀV̄ - V̄ᵀV))] Vᵀ
            + (I - UUᵀ) Ū S⁻¹ Vᵀ        (m > k only)
            + U S⁻¹ V̄ᵀ (I - VVᵀ)        (n > k only)

    with F_ij = 1/(s_j² - s_i²).  Reference: J. Townsend (2016), "Differentiating
    the singular value decomposition", eq. (30) and the rectangular terms.

    Degenerate cases: terms are formed only for the blocks of the cotangent that
    are not structurally zero, so a loss of s alone is exact at repeated and zero
    singular values.  F_ij is 0 for equal (to rounding) singular values: exact for
    losses invariant to the basis inside a singular subspace, finite otherwise.
    The S⁻¹ divisions are 0/0 = 0 where a column of Ū (V̄) is zero, so a loss that
    ignores the null-space vectors of a rank-deficient A has finite gradients.
    """
    m, n = a.dims[-2:]
    k = min(m, n)
    s, u, v = _svd_parts(b, y, m, n)
    s_bar, u_bar, v_bar = _block(b, g, 0, 1), _block(b, g, 1, 1 + m), _block(b, g, 1 + m, 1 + m + n)
    s_row, s_col = b.expand_dims(s, -2), b.expand_dims(s, -1)
    s_bar = on(s_bar, lambda t: b.reshape(t, s.dims))
    if u_bar is None and v_bar is None:     # U diag(s̄) Vᵀ: one product
        return (on(s_bar, lambda t: b.matmul(b.multiply(u, b.expand_dims(t, -2)), _mT(b, v))),)
    gaps = _inverse_gaps(b, s, squared=True)
    inner = on(s_bar, lambda t: _diag_embed(b, t))
    terms = []
    if u_bar is not None:
        utu = b.matmul(_mT(b, u), u_bar)
        inner = sum_tangents(b, inner, b.multiply(b.multiply(gaps, b.subtract(utu, _mT(b, utu))), s_row))
        if m > k:
            rest = b.subtract(u_bar, b.matmul(u, utu))
            terms.append(b.matmul(b.safe_div(rest, s_row), _mT(b, v)))
    if v_bar is not None:
        vtv = b.matmul(_mT(b, v), v_bar)
        inner = sum_tangents(b, inner, b.multiply(s_col, b.multiply(gaps, b.subtract(vtv, _mT(b, vtv)))))
        if n > k:
            rest = b.subtract(v_bar, b.matmul(v, vtv))
            terms.append(b.matmul(u, _mT(b, b.safe_div(rest, s_row))))
    if inner is not None:
        terms.insert(0, b.matmul(b.matmul(u, inner), _mT(b, v)))
    return (sum_tangents(b, *terms),)


def _svd_jvp(b, dots, y, a):
    """K = Uᵀ dA V:  ds = diag(K),
    dU = U (F ∘ (K S + S Kᵀ)) + (I - UUᵀ) dA V S⁻¹  (second term for m > k only),
    dV = V (F ∘ (S K + Kᵀ S)) + (I - VVᵀ) dAᵀ U S⁻¹  (second term for n > k only).
    Reference and degenerate cases as for the VJP."""
    m, n = a.dims[-2:]
    k = min(m, n)

    def tangent(da):
        s, u, v = _svd_parts(b, y, m, n)
        s_row, s_col = b.expand_dims(s, -2), b.expand_dims(s, -1)
        gaps = _inverse_gaps(b, s, squared=True)
        da_v = b.matmul(da, v)
        kk = b.matmul(_mT(b, u), da_v)
        ks = b.multiply(kk, s_row)
        sk = b.multiply(s_col, kk)
        du = b.matmul(u, b.multiply(gaps, b.add(ks, _mT(b, ks))))
        dv = b.matmul(v, b.multiply(gaps, b.add(sk, _mT(b, sk))))
        if m > k:
            du = b.add(du, b.safe_div(b.subtract(da_v, b.matmul(u, kk)), s_row))
        if n > k:
            dat_u = b.matmul(_mT(b, da), u)
            dv = b.add(dv, b.safe_div(b.subtract(dat_u, b.matmul(v, _mT(b, kk))), s_row))
        return b.concatenate([b.expand_dims(_diagonal(b, kk), -2), du, dv], axis=-2)
    return on(dots[0], tangent)


svd_p = Primitive(
    "svd", shape=_svd_shape, ref=ref.svd, vjp=_svd_vjp, jvp=_svd_jvp,
    doc="Thin SVD packed [s; U; V]: s descending, V (not Vᵀ), each u_j with its largest "
        "entry positive.",
)


PRIMITIVES = (matmul_p, lu_p, lu_solve_p, lu_det_p, lu_logabsdet_p, lu_sign_p, cholesky_p,
              triangular_solve_p, eigh_p, svd_p)
