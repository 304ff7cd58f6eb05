"""``jg.linalg``: NumPy's linear algebra on stacks of matrices, differentiable.

Each function checks its operands, broadcasts batch dimensions as NumPy does
and binds the primitives of ``jitgrad.ops.linalg``.  A factorization is shared
by everything computed from it: ``solve``'s gradient reuses its LU factors.

Matrix sizes (the last two axes) must be known when the graph is built; batch
axes may be call-time sizes.  Singular or non-positive-definite input raises
``numpy.linalg.LinAlgError`` at run time where NumPy does (solve, inv,
cholesky); ``det`` is 0 and ``slogdet`` is (0, -inf) at a singular matrix.
``det`` is differentiable everywhere (its gradient is the cofactor matrix);
the gradient of ``slogdet``'s logabsdet raises ``LinAlgError`` there.
"""
from __future__ import annotations

import numpy as np

from . import functions as F
from .autodiff import jvp
from .graph import Tensor, bind, topological_order
from .ops import linalg as la
from .ops._shapes import fmt_shape, normalize_axis_tuple
from .primitive import Dim

__all__ = ["solve", "inv", "det", "slogdet", "cholesky", "eigh", "svd", "norm",
           "eigh_function", "svd_function", "expm_sym", "logm_sym", "sqrtm_sym",
           "solve_triangular", "cho_factor", "cho_solve", "matrix_power", "pinv", "lstsq",
           "matrix_rank", "cond", "qr", "expm"]


def _float_operand(name: str, x) -> Tensor:
    x = F.as_tensor(x)
    if x.dtype.kind != "f":
        x = F.astype(x, np.float64)
    return x


def _matrices(name: str, arg: str, x, square: bool = True) -> Tensor:
    """``x`` as a float stack of matrices with sizes known now; a clear error otherwise."""
    x = _float_operand(name, x)
    if x.ndim < 2:
        raise ValueError(f"{name}: {arg} must be a stack of matrices (..., m, n), got shape {fmt_shape(x.dims)}")
    m, n = x.dims[-2:]
    if isinstance(m, Dim) or isinstance(n, Dim):
        raise ValueError(f"{name}: the matrix sizes of {arg} must be known when the graph is built, "
                         f"got shape {fmt_shape(x.dims)}")
    if square and m != n:
        raise ValueError(f"{name}: {arg} must be square (..., n, n), got shape {fmt_shape(x.dims)}")
    if m == 0 or n == 0:
        raise ValueError(f"{name}: {arg} has an empty matrix dimension, shape {fmt_shape(x.dims)}")
    return x


def _lu(a: Tensor) -> Tensor:
    return bind(la.lu_p, a)


def solve(a, b) -> Tensor:
    """x with a @ x = b, for ``b`` a vector ``(n,)``, a stack of matrices ``(..., n, k)``
    (as in NumPy 2), or a stack of vectors ``(..., n)`` with one axis fewer than ``a``
    where it cannot be read as matrices."""
    a, b = _matrices("solve", "a", a), F.as_tensor(b)
    dtype = np.result_type(a.dtype, b.dtype if b.dtype.kind == "f" else np.float64)
    a, b = F.astype(a, dtype) if a.dtype != dtype else a, F.astype(b, dtype) if b.dtype != dtype else b
    n = a.dims[-1]
    matrix = b.ndim >= 2 and b.dims[-2] == n
    vector = b.ndim == 1 or (not matrix and b.ndim == a.ndim - 1)
    if not (matrix or vector) or b.dims[-1 if vector else -2] != n:
        raise ValueError(f"solve: b of shape {fmt_shape(b.dims)} does not match a of shape "
                         f"{fmt_shape(a.dims)} (expected (..., {n}) or (..., {n}, k))")
    rhs = F.expand_dims(b, -1) if vector else b
    batch = F.broadcast_dims("solve", [a.dims[:-2], rhs.dims[:-2]])
    a = F.broadcast_to(a, batch + a.dims[-2:]) if a.dims[:-2] != batch else a
    rhs = F.broadcast_to(rhs, batch + rhs.dims[-2:]) if rhs.dims[:-2] != batch else rhs
    x = bind(la.lu_solve_p, _lu(a), a, rhs, trans=False)
    return F.reshape(x, x.dims[:-1]) if vector else x


def inv(a) -> Tensor:
    """The inverse of each matrix: a solve against the identity with one LU."""
    a = _matrices("inv", "a", a)
    eye = F.as_tensor(np.eye(a.dims[-1], dtype=a.dtype))
    eye = F.broadcast_to(eye, a.dims) if a.ndim > 2 else eye
    return bind(la.lu_solve_p, _lu(a), a, eye, trans=False)


def det(a) -> Tensor:
    """The determinant of each matrix, from its LU factors.

    det is a polynomial, and so are its derivatives, at every matrix: the gradient
    is the cofactor matrix adj(a)ᵀ (det(a) a⁻ᵀ where a is invertible, rank one at
    corank 1, zero at corank 2 or more), computed from the same LU factors without
    dividing by the smallest pivot, at the cost of det(a) a⁻ᵀ.  Second derivatives
    (the signed (n-2)-minors) come from an SVD of a, exact at every matrix too;
    third and higher orders go through the SVD's rules (exact where the singular
    values are distinct and not small).
    """
    a = _matrices("det", "a", a)
    return bind(la.lu_det_p, _lu(a), a)


def slogdet(a) -> tuple[Tensor, Tensor]:
    """``(sign, logabsdet)`` of each matrix, sharing one LU; sign has no derivative.

    At a singular matrix sign is 0 and logabsdet -inf, which has no derivative:
    its gradient (a⁻ᵀ elsewhere) raises ``LinAlgError("Singular matrix")`` there,
    never a finite number.  Differentiate ``det`` for a derivative that exists
    at every matrix.
    """
    a = _matrices("slogdet", "a", a)
    factors = _lu(a)
    return bind(la.lu_sign_p, factors), bind(la.lu_logabsdet_p, factors, a)


def cholesky(a) -> Tensor:
    """The lower Cholesky factor L of (a + aᵀ)/2, with L Lᵀ = (a + aᵀ)/2.

    Symmetrizing makes the function, and so its gradient, well defined for any
    input; for symmetric ``a`` it is numpy.linalg.cholesky.  Raises
    ``LinAlgError`` at run time unless the matrix is positive definite.
    """
    return bind(la.cholesky_p, _matrices("cholesky", "a", a))


def eigh(a) -> tuple[Tensor, Tensor]:
    """``(w, V)`` of the symmetric part of ``a``: eigenvalues ascending, ``V[..., :, j]``
    the eigenvector of ``w[..., j]``, each with its largest-magnitude entry positive.

    Derivatives at repeated eigenvalues (equal to rounding): exact for losses of
    ``w`` alone, and for losses of ``V`` unchanged by a rotation of the basis inside
    each eigenspace (a projector onto a whole eigenspace).  For other losses of ``V``
    the gradient there is finite but is not the derivative: a general loss of ``V``
    has none, and for a loss smooth in ``a`` (such as ``(V * g(w)) @ V.T``) the
    limit is not recoverable from the cotangent of ``V``.  Use :func:`eigh_function`
    for ``V diag(g(w)) Vᵀ``: its gradient is exact there.  Near-degenerate, gradients
    through ``V`` lose accuracy like ``eps / gap``: relative errors of about 5e-13,
    7e-9 and 7e-5 at relative gaps 1e-4, 1e-8 and 1e-12 (tests/test_spectral.py).
    """
    a = _matrices("eigh", "a", a)
    packed = bind(la.eigh_p, a)
    n = a.dims[-1]
    return la.row(F, packed, 0), la.rows(F, packed, 1, n + 1)


def svd(a, full_matrices: bool = False, compute_uv: bool = True):
    """Thin SVD ``(U, s, Vt)`` with ``a = U @ (s[..., None] * Vt)``, s descending, as
    ``numpy.linalg.svd(a, full_matrices=False)``; each ``U[..., :, j]`` has its
    largest-magnitude entry positive.  ``full_matrices=True`` completes U (m > n)
    or Vt (n > m) with an orthonormal basis of the complement (see
    :func:`_complement`: it is not numpy's basis, which is arbitrary too);
    ``compute_uv=False`` returns ``s`` alone.  Derivatives flow through the thin
    part; the complement's basis is not unique, so only losses unchanged by a
    rotation of the complement's basis (e.g. of its projector ``Uc Ucᵀ``) are
    differentiable, and for those the gradient is exact.

    Derivatives at repeated singular values (equal to rounding): exact for losses of
    ``s`` alone (zero singular values included), and for losses of ``U``, ``Vt``
    unchanged by a rotation of the basis inside each singular subspace.  For other
    losses of ``U``, ``Vt`` the gradient there is finite but is not the derivative:
    a general loss has none, and for a loss smooth in ``a`` (such as
    ``(U * g(s)) @ Vt``) the limit is not recoverable from the cotangents.  Use
    :func:`svd_function` for ``U diag(g(s)) Vᵀ``: its gradient is exact there.
    Near-degenerate, gradients through ``U``, ``Vt`` lose accuracy like
    ``eps / gap``: relative errors of about 4e-13, 4e-9 and 3e-5 at relative gaps
    1e-4, 1e-8 and 1e-12 (tests/test_spectral.py).
    """
    a = _matrices("svd", "a", a, square=False)
    m, n = a.dims[-2:]
    packed = bind(la.svd_p, a)
    s = la.row(F, packed, 0)
    if not compute_uv:
        return s
    u, v = la.rows(F, packed, 1, 1 + m), la.rows(F, packed, 1 + m, 1 + m + n)
    if full_matrices and m > n:
        u = F.concatenate([u, _complement(u)], axis=-1)
    elif full_matrices and n > m:
        v = F.concatenate([v, _complement(v)], axis=-1)
    return u, s, la._mT(F, v)


# -- spectral functions ----------------------------------------------------------

def _elementwise(name: str, g, x: Tensor) -> tuple[Tensor, Tensor]:
    """``g(x)`` and ``g'(x)``, the derivative from jitgrad's own forward mode (along ones,
    which is g' for an elementwise g)."""
    y = g(x)
    if not isinstance(y, Tensor):
        y = F.as_tensor(y)
    if y.dtype.kind != "f":
        raise TypeError(f"{name}: g must return floats, got dtype {y.dtype}")
    constant = y.ndim == 0 and all(node is not x for node in topological_order([y]))
    if constant or (y.dims != x.dims and y.shape == x.shape):
        y = F.broadcast_to(y, x.dims)
    if y.shape != x.shape:
        raise ValueError(f"{name}: g must be elementwise, but it maps an array of shape "
                         f"{fmt_shape(x.dims)} to one of shape {fmt_shape(y.dims)}")
    y = F.astype(y, x.dtype) if y.dtype != x.dtype else y
    (dy,) = jvp([y], [x], [F.ones_like(x)])
    return y, dy


def _divided_differences(x, y, gx, gy, dgx, dgy, dg_mid) -> Tensor:
    """``(g(x) - g(y)) / (x - y)`` elementwise, accurate when x ≈ y, from the values and
    derivatives of g at x, y and the midpoint (the operands broadcast).

    The quotient loses about ``eps (|g(x)| + |g(y)|) / |x - y|`` to cancellation.  The
    divided difference is the mean of g' over [y, x], which Simpson's rule
    ``(g'(x) + 4 g'(mid) + g'(y)) / 6`` gives with error ``g⁽⁵⁾ h⁴ / 2880``: exact at
    x = y (the limit g'(x)) and for polynomials g of degree <= 4.  That error is
    estimated from the spread Δ between the trapezoid and midpoint rules
    (``Δ ≈ g‴ h² / 8``) as ``Δ² / (45 |g'|)`` (exact for exponentials), and the
    quotient is used where it is the more accurate by a margin of 10, or where
    Simpson's rule is not finite (an infinite g' at an end point, as sqrt at 0).
    For g smooth on a scale ρ the switch is at ``|x - y| ≈ 3e-3 ρ`` in float64,
    where both are accurate to about 1e-13 relative.
    """
    eps = float(np.finfo(x.dtype).eps)
    h = F.subtract(x, y)
    simpson = F.divide(F.add(F.add(dgx, dgy), F.multiply(dg_mid, 4.0)), 6.0)
    spread = F.subtract(F.multiply(F.add(dgx, dgy), 0.5), dg_mid)
    slope = F.maximum(F.maximum(F.abs(dgx), F.abs(dgy)), F.abs(dg_mid))
    simpson_error = F.multiply(F.multiply(spread, spread), F.abs(h))               # x 45 |g'| |h|
    quotient_error = F.multiply(F.multiply(slope, F.add(F.abs(gx), F.abs(gy))), 45 * eps / 10)
    finite = F.less_equal(F.abs(simpson), float(np.finfo(x.dtype).max))
    use_quotient = F.where(finite, F.greater(simpson_error, quotient_error), F.not_equal(h, 0.0))
    quotient = F.divide(F.subtract(gx, gy), F.where(use_quotient, h, 1.0))
    return F.where(use_quotient, quotient, simpson)


def _off_diagonal(n: int, dtype) -> Tensor:
    return F.as_tensor((1 - np.eye(n)).astype(dtype))


def _eigh_function(name: str, a, g) -> Tensor:
    a = _matrices(name, "a", a)
    n = a.dims[-1]
    packed = bind(la.eigh_p, a)
    w, v = la.row(F, packed, 0), la.rows(F, packed, 1, n + 1)
    gw, dgw = _elementwise(name, g, w)
    value = F.matmul(F.multiply(v, F.expand_dims(gw, -2)), la._mT(F, v))
    wi, wj = F.expand_dims(w, -1), F.expand_dims(w, -2)
    _, dg_mid = _elementwise(name, g, F.multiply(F.add(wi, wj), 0.5))
    d = _divided_differences(wi, wj, F.expand_dims(gw, -1), F.expand_dims(gw, -2),
                             F.expand_dims(dgw, -1), F.expand_dims(dgw, -2), dg_mid)
    d = F.multiply(d, _off_diagonal(n, a.dtype))
    return bind(la.eigh_function_p, value, a, v, d, F.broadcast_to(F.expand_dims(gw, -2), a.dims))


def eigh_function(a, g) -> Tensor:
    """``V diag(g(w)) Vᵀ`` for ``w, V = eigh(a)``: the matrix function g of the symmetric
    part of ``a``, with derivatives exact at repeated eigenvalues.

    ``g`` builds graph elementwise (``jg.exp``, ``lambda x: jg.maximum(x, 0)``, ...);
    it may read other Tensors (params), which get their gradients too.  The
    gradient is the Daleckii–Krein one, ``V (D ∘ Vᵀ sym(Ḡ) V) Vᵀ`` with
    ``D_ij = (g(w_i) - g(w_j)) / (w_i - w_j)`` and ``D_ii = g'(w_i)`` (g' from
    jitgrad's own derivative of g), the divided differences computed without
    cancellation when ``w_i ≈ w_j``, so it is exact at repeated eigenvalues too:
    ``eigh_function(a, lambda x: x)`` has gradient ``(Ḡ + Ḡᵀ) / 2`` everywhere.
    Second derivatives are exact at distinct eigenvalues, finite at repeated ones.
    The graph saves and loads with ``jg.save``/``jg.load`` (g's ops are stored, not g).

    >>> import jitgrad as jg
    >>> a = jg.input("a", (3, 3))
    >>> root = jg.linalg.eigh_function(a, jg.sqrt)        # sqrtm of an SPD matrix
    """
    return _eigh_function("eigh_function", a, g)


def expm_sym(a) -> Tensor:
    """``expm`` of the symmetric part of ``a`` (``eigh_function(a, jg.exp)``)."""
    return _eigh_function("expm_sym", a, F.exp)


def logm_sym(a) -> Tensor:
    """The principal ``logm`` of the symmetric part of ``a``, which must be positive
    definite (``eigh_function(a, jg.log)``; -inf/NaN otherwise, as ``np.log``)."""
    return _eigh_function("logm_sym", a, F.log)


def sqrtm_sym(a) -> Tensor:
    """The positive semidefinite square root of the symmetric part of ``a``, which must
    be positive semidefinite; eigenvalues below 0 (rounding in a singular matrix) are
    taken as 0.  The derivative is infinite at a singular matrix."""
    return _eigh_function("sqrtm_sym", a, lambda w: F.sqrt(F.maximum(w, 0.0)))


def svd_function(a, g) -> Tensor:
    """``U diag(g(s)) Vᵀ`` for the thin SVD ``U, s, Vt = svd(a)``, with derivatives exact at
    repeated singular values (singular-value thresholding, polar factors, ...).

    ``g`` builds graph elementwise, as for :func:`eigh_function`.  The gradient is
    ``U (D⁻ ∘ sym(P) + D⁺ ∘ skew(P)) Vᵀ`` (+ a term for the rectangular part), with
    P = Uᵀ Ḡ V and the divided differences ``D⁻_ij = (g(s_i) - g(s_j)) / (s_i - s_j)``
    (``g'(s_i)`` on the diagonal), ``D⁺_ij = (g(s_i) + g(s_j)) / (s_i + s_j)``, computed
    without cancellation.  At zero singular values (a rank-deficient ``a``) the result
    is continuous only if ``g(0) = 0``, and the derivative uses that limit, ``g'(0)``.
    ``svd_function(a, lambda s: s)`` is ``a``, with gradient ``Ḡ`` everywhere.

    >>> import jitgrad as jg
    >>> a = jg.input("a", (4, 3))
    >>> shrunk = jg.linalg.svd_function(a, lambda s: jg.maximum(s - 0.5, 0.0))
    """
    a = _matrices("svd_function", "a", a, square=False)
    m, n = a.dims[-2:]
    if m < n:
        return la._mT(F, svd_function(la._mT(F, a), g))
    packed = bind(la.svd_p, a)
    s, u, v = la.row(F, packed, 0), la.rows(F, packed, 1, 1 + m), la.rows(F, packed, 1 + m, 1 + m + n)
    gs, dgs = _elementwise("svd_function", g, s)
    value = F.matmul(F.multiply(u, F.expand_dims(gs, -2)), la._mT(F, v))
    si, sj = F.expand_dims(s, -1), F.expand_dims(s, -2)
    gi, gj = F.expand_dims(gs, -1), F.expand_dims(gs, -2)
    dgi, dgj = F.expand_dims(dgs, -1), F.expand_dims(dgs, -2)
    _, dg_minus = _elementwise("svd_function", g, F.multiply(F.add(si, sj), 0.5))
    _, dg_plus = _elementwise("svd_function", g, F.multiply(F.abs(F.subtract(si, sj)), 0.5))
    d_minus = _divided_differences(si, sj, gi, gj, dgi, dgj, dg_minus)
    d_minus = F.multiply(d_minus, _off_diagonal(n, a.dtype))
    d_plus = _divided_differences(si, F.negative(sj), gi, F.negative(gj), dgi, dgj, dg_plus)
    v, d_minus, d_plus = (la._pad_rows(F, t, m) for t in (v, d_minus, d_plus))
    gs_rows = F.broadcast_to(F.expand_dims(gs, -2), a.dims)
    return bind(la.svd_function_p, value, a, u, v, d_minus, d_plus, gs_rows)


def _safe_sqrt(total: Tensor) -> Tensor:
    """sqrt with derivative 0 at 0 (the subgradient), finite at every order."""
    positive = F.greater(total, 0)
    return F.where(positive, F.sqrt(F.where(positive, total, 1.0)), 0.0)


def _vector_norm(x: Tensor, ord, axis, keepdims) -> Tensor:
    if ord is None or ord == 2:
        return _safe_sqrt(F.sum(F.multiply(x, x), axis=axis, keepdims=keepdims))
    if ord == np.inf:
        return F.max(F.abs(x), axis=axis, keepdims=keepdims)
    if ord == -np.inf:
        return F.min(F.abs(x), axis=axis, keepdims=keepdims)
    if ord == 1:
        return F.sum(F.abs(x), axis=axis, keepdims=keepdims)
    if isinstance(ord, (int, float)) and not isinstance(ord, bool) and ord > 0:
        return F.power(F.sum(F.power(F.abs(x), float(ord)), axis=axis, keepdims=keepdims), 1.0 / ord)
    raise ValueError(f"norm: invalid order {ord!r} for vectors (use None, 1, 2, inf, -inf or p > 0)")


def _matrix_norm(x: Tensor, ord, axes, keepdims) -> Tensor:
    rows_axis, cols_axis = axes
    if ord in (None, "fro"):
        return _safe_sqrt(F.sum(F.multiply(x, x), axis=axes, keepdims=keepdims))
    if ord == 1:
        return F.max(F.sum(F.abs(x), axis=rows_axis, keepdims=True), axis=cols_axis, keepdims=True) \
            if keepdims else F.max(F.sum(F.abs(x), axis=rows_axis), axis=cols_axis - (cols_axis > rows_axis))
    if ord == np.inf:
        return F.max(F.sum(F.abs(x), axis=cols_axis, keepdims=True), axis=rows_axis, keepdims=True) \
            if keepdims else F.max(F.sum(F.abs(x), axis=cols_axis), axis=rows_axis - (rows_axis > cols_axis))
    if ord in ("nuc", 2):
        perm = [i for i in range(x.ndim) if i not in axes] + [rows_axis, cols_axis]
        s = svd(F.transpose(x, tuple(perm)), full_matrices=False, compute_uv=False)
        value = F.sum(s, axis=-1) if ord == "nuc" else s[..., 0]
        if keepdims:
            for axis in sorted(axes):
                value = F.expand_dims(value, axis)
        return value
    raise ValueError(f"norm: invalid order {ord!r} for matrices (use None, 'fro', 'nuc', 1, 2 or inf)")


def norm(x, ord=None, axis=None, keepdims: bool = False) -> Tensor:
    """numpy.linalg.norm: vector norms over one axis, matrix norms over two.

    With ``axis=None`` a 1-D ``x`` gets a vector norm, a 2-D one a matrix norm,
    and ``ord=None`` the 2-norm of all entries.  The 2-norm and the Frobenius norm
    have gradient 0 at 0 (a subgradient); the nuclear and spectral norms go
    through ``svd``, whose gradient is exact at repeated singular values.
    """
    x = _float_operand("norm", x)
    if axis is None:
        if ord is None:
            return _safe_sqrt(F.sum(F.multiply(x, x), axis=None, keepdims=keepdims))
        axis = tuple(range(x.ndim))
        if x.ndim not in (1, 2):
            raise ValueError(f"norm: ord={ord!r} needs axis for an array of shape {fmt_shape(x.dims)}")
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    if len(axes) not in (1, 2):
        raise ValueError(f"norm: axis must be one axis or two distinct axes, got {axis!r}")
    axes = normalize_axis_tuple(axes, x.ndim, "norm")     # ordered: rows then columns
    return _vector_norm(x, ord, axes[0], keepdims) if len(axes) == 1 else _matrix_norm(x, ord, axes, keepdims)



# -- triangular and Cholesky solves -----------------------------------------------

def _right_hand_side(name: str, a: Tensor, b) -> tuple[Tensor, Tensor, bool]:
    """``a`` and ``b`` as stacks with equal batch dims, ``b`` as matrices (..., n, k); and whether
    ``b`` was a stack of vectors (read as in :func:`solve`)."""
    b = F.as_tensor(b)
    dtype = np.result_type(a.dtype, b.dtype if b.dtype.kind == "f" else np.float64)
    a, b = F.astype(a, dtype) if a.dtype != dtype else a, F.astype(b, dtype) if b.dtype != dtype else b
    n = a.dims[-1]
    matrix = b.ndim >= 2 and b.dims[-2] == n
    vector = b.ndim == 1 or (not matrix and b.ndim == a.ndim - 1)
    if b.ndim == 0 or not (matrix or vector) or b.dims[-1 if vector else -2] != n:
        raise ValueError(f"{name}: b of shape {fmt_shape(b.dims)} does not match a of shape "
                         f"{fmt_shape(a.dims)} (expected (..., {n}) or (..., {n}, k))")
    rhs = F.expand_dims(b, -1) if vector else b
    batch = F.broadcast_dims(name, [a.dims[:-2], rhs.dims[:-2]])
    a = F.broadcast_to(a, batch + a.dims[-2:]) if a.dims[:-2] != batch else a
    rhs = F.broadcast_to(rhs, batch + rhs.dims[-2:]) if rhs.dims[:-2] != batch else rhs
    return a, rhs, vector


def _unvector(x: Tensor, vector: bool) -> Tensor:
    return F.reshape(x, x.dims[:-1]) if vector else x


def _trans_flag(name: str, trans) -> bool:
    if trans in (0, "N", "n"):
        return False
    if trans in (1, 2, "T", "t", "C", "c"):        # real matrices: the conjugate transpose is the transpose
        return True
    raise ValueError(f"{name}: trans must be 0, 1, 2, 'N', 'T' or 'C', got {trans!r}")


def solve_triangular(a, b, trans=0, lower: bool = False, unit_diagonal: bool = False) -> Tensor:
    """scipy.linalg.solve_triangular: x with ``op(a) x = b``, ``op`` the transpose for ``trans``
    1 ('T') or 2 ('C'), reading only the lower (``lower``) or upper triangle of ``a`` (and
    taking its diagonal as ones if ``unit_diagonal``).  ``b`` as in :func:`solve`; stacks of
    matrices broadcast.  Differentiable to any order (the derivative with respect to ``a``
    lives on the triangle read); a zero on the diagonal gives inf/NaN, as LAPACK's trsm."""
    a = _matrices("solve_triangular", "a", a)
    flag = _trans_flag("solve_triangular", trans)
    a, rhs, vector = _right_hand_side("solve_triangular", a, b)
    if unit_diagonal:
        n = a.dims[-1]
        a = F.add(F.multiply(a, _off_diagonal(n, a.dtype)), F.as_tensor(np.eye(n, dtype=a.dtype)))
    x = bind(la.triangular_solve_p, a, rhs, lower=bool(lower), trans=flag)
    return _unvector(x, vector)


def cho_factor(a, lower: bool = False) -> tuple[Tensor, bool]:
    """scipy.linalg.cho_factor: ``(c, lower)`` with ``c`` the Cholesky factor of (the symmetric
    part of) ``a``, lower (``c cᵀ = a``) or upper (``cᵀ c = a``).  Unlike SciPy the other
    triangle of ``c`` is 0, not left over from ``a``.  Pass the pair to :func:`cho_solve`."""
    c = cholesky(a)
    return (c if lower else la._mT(F, c)), bool(lower)


def cho_solve(c_and_lower, b) -> Tensor:
    """scipy.linalg.cho_solve: x with ``a x = b`` from ``(c, lower) = cho_factor(a)``: two
    triangular solves with the same factor, no new factorization.  Differentiable in ``c``
    (and so in ``a`` through :func:`cho_factor`) and ``b``."""
    if not (isinstance(c_and_lower, (tuple, list)) and len(c_and_lower) == 2):
        raise TypeError("cho_solve: expected the pair (c, lower) that cho_factor returns")
    c, lower = c_and_lower
    c = _matrices("cho_solve", "c", c)
    c, rhs, vector = _right_hand_side("cho_solve", c, b)
    lower = bool(lower)
    y = bind(la.triangular_solve_p, c, rhs, lower=lower, trans=not lower)       # L y = b, or Uᵀ y = b
    x = bind(la.triangular_solve_p, c, y, lower=lower, trans=lower)             # Lᵀ x = y, or U x = y
    return _unvector(x, vector)


# -- built from products and the SVD -----------------------------------------------

def matrix_power(a, n: int) -> Tensor:
    """numpy.linalg.matrix_power: ``a`` to the integer power ``n`` by repeated squaring
    (about 2 log2 |n| products); ``n < 0`` raises the inverse.  ``n = 0`` gives identities."""
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool):
        raise TypeError(f"matrix_power: exponent must be an integer, got {n!r}")
    a = _matrices("matrix_power", "a", a)
    n = int(n)
    if n == 0:
        eye = F.as_tensor(np.eye(a.dims[-1], dtype=a.dtype))
        return F.broadcast_to(eye, a.dims) if a.ndim > 2 else eye
    if n < 0:
        a, n = inv(a), -n
    result, base = None, a
    while n:
        if n & 1:
            result = base if result is None else F.matmul(result, base)
        n >>= 1
        if n:
            base = F.matmul(base, base)
    return result


def _per_matrix_cut(s: Tensor, rtol) -> Tensor:
    """The cut ``rtol * max(s)`` of each matrix, (...,), with no derivative."""
    return F.stop_gradient(F.multiply(s[..., 0], F.as_tensor(rtol) if isinstance(rtol, Tensor) else float(rtol)))


def _default_rtol(a: Tensor) -> float:
    return max(a.dims[-2:]) * float(np.finfo(a.dtype).eps)


def pinv(a, rtol=None, *, rcond=None) -> Tensor:
    """numpy.linalg.pinv: ``V diag(1/s) Uᵀ`` with the singular values ``s <= rtol * max(s)`` cut
    (their 1/s taken as 0).  ``rtol=None`` is ``max(m, n) * eps`` (numpy's ``rtol=None``);
    ``rcond`` is numpy's older name (numpy's default, with neither given, is 1e-15).

    Derivatives are those of the pseudo-inverse at constant rank (the rank the cut gives):
    ``dA⁺ = -A⁺ dA A⁺ + A⁺A⁺ᵀ dAᵀ (I - AA⁺) + (I - A⁺A) dAᵀ A⁺ᵀA⁺`` (Golub & Pereyra 1973),
    exact for full-rank ``a`` and along paths that keep the rank; the rank itself changing
    is a discontinuity.  It is :func:`svd_function` with ``g(s) = 1/s`` above the cut, so
    repeated singular values are exact too.
    """
    a = _matrices("pinv", "a", a, square=False)
    if rcond is not None and rtol is not None:
        raise ValueError("pinv: rtol and rcond can't both be set")
    rtol = rcond if rcond is not None else (_default_rtol(a) if rtol is None else rtol)
    s = svd(a, compute_uv=False)
    cut = _per_matrix_cut(s, rtol)

    def reciprocal(x):
        c = cut
        while c.ndim < x.ndim:
            c = F.expand_dims(c, -1)
        kept = F.greater(x, c)
        return F.where(kept, F.divide(1.0, F.where(kept, x, 1.0)), 0.0)

    return la._mT(F, svd_function(a, reciprocal))


def matrix_rank(a, tol=None, *, rtol=None) -> Tensor:
    """numpy.linalg.matrix_rank: the number of singular values above ``tol`` (absolute) or
    ``rtol * max(s)`` (default ``max(m, n) * eps``), as int64; piecewise constant, no
    derivative."""
    a = _matrices("matrix_rank", "a", a, square=False)
    s = F.stop_gradient(svd(a, compute_uv=False))
    if tol is None:
        cut = _per_matrix_cut(s, _default_rtol(a) if rtol is None else rtol)
    else:
        cut = F.stop_gradient(F.as_tensor(tol))
        cut = F.astype(cut, s.dtype) if cut.dtype != s.dtype else cut
    return F.sum(F.astype(F.greater(s, F.expand_dims(cut, -1)), np.int64), axis=-1)


def cond(a, p=None) -> Tensor:
    """numpy.linalg.cond: ``s_max / s_min`` for ``p`` None or 2 (``s_min / s_max`` for -2), from
    the singular values alone (so the gradient is exact at repeated ones); other ``p``
    (1, -1, inf, -inf, 'fro', 'nuc') as ``norm(a, p) * norm(inv(a), p)``.  inf for a
    singular matrix with p None or 2, as numpy."""
    if p is None or p in (2, -2):
        a = _matrices("cond", "a", a, square=False)
        s = svd(a, compute_uv=False)
        top, bottom = s[..., 0], s[..., -1]
        return F.divide(bottom, top) if p == -2 else F.divide(top, bottom)
    a = _matrices("cond", "a", a)
    if p in (1, -1, np.inf, -np.inf):
        col = F.sum(F.abs(a), axis=-2 if abs(p) == 1 else -1)
        icol = F.sum(F.abs(inv(a)), axis=-2 if abs(p) == 1 else -1)
        pick = F.max if p > 0 else F.min
        return F.multiply(pick(col, axis=-1), pick(icol, axis=-1))
    if p in ("fro", "nuc"):
        return F.multiply(norm(a, p, axis=(-2, -1)), norm(inv(a), p, axis=(-2, -1)))
    raise ValueError(f"cond: invalid norm order {p!r} (use None, 1, -1, 2, -2, inf, -inf, 'fro' or 'nuc')")


def lstsq(a, b, rcond=None):
    """numpy.linalg.lstsq: ``(x, residuals, rank, s)`` with x minimizing ``|b - a x|`` (the
    minimum-norm one), through the SVD: ``x = pinv(a, rcond) @ b``, singular values
    ``<= rcond * max(s)`` (default ``max(m, n) * eps``) cut.  Derivatives of x are exact
    for full-rank ``a`` (and at constant rank, see :func:`pinv`); rank is int64 without
    derivative; residuals (``|b - a x|²`` per column, shape (k,), or (1,) for a vector b)
    are returned when m > n, and are empty (shape (0,)) otherwise — numpy also returns
    them empty when a is rank deficient, which a graph built before the values are known
    cannot: here they are the sums of squares then too.  Stacks are accepted (numpy's
    lstsq takes one matrix)."""
    a = _matrices("lstsq", "a", a, square=False)
    m, n = a.dims[-2:]
    b = F.as_tensor(b)
    vector = b.ndim == a.ndim - 1
    if b.ndim == 0 or b.dims[-1 if vector else -2] != m:
        raise ValueError(f"lstsq: b of shape {fmt_shape(b.dims)} does not match a of shape "
                         f"{fmt_shape(a.dims)} (expected (..., {m}) or (..., {m}, k))")
    rtol = _default_rtol(a) if rcond is None else rcond
    rhs = F.expand_dims(b, -1) if vector else b
    rhs = F.astype(rhs, a.dtype) if rhs.dtype != a.dtype else rhs
    x = F.matmul(pinv(a, rtol), rhs)
    s = svd(a, compute_uv=False)
    rank = matrix_rank(a, rtol=rtol)
    if m > n:
        r = F.subtract(F.matmul(a, x), rhs)
        residuals = F.sum(F.multiply(r, r), axis=-2)
    else:
        residuals = F.as_tensor(np.zeros((0,), dtype=a.dtype))
    return _unvector(x, vector), residuals, rank, s


# -- QR --------------------------------------------------------------------------

def _complement(u: Tensor) -> Tensor:
    """An orthonormal basis (..., m, m - k) of the complement of the orthonormal columns of
    ``u`` (..., m, k): the eigenvectors of the projector ``I - u uᵀ`` for eigenvalue 1.
    The basis is not unique; derivatives are exact for what is unchanged by rotating it
    (the eigenvalue 1 is repeated, see :func:`eigh`)."""
    m, k = u.dims[-2:]
    projector = F.subtract(F.as_tensor(np.eye(m, dtype=u.dtype)), F.matmul(u, la._mT(F, u)))
    _, v = eigh(projector)
    return v[..., :, k:]


def _qr_tall(a: Tensor) -> tuple[Tensor, Tensor]:
    """Householder QR of (..., m, n), m >= n: the ``qr`` primitive, unpacked."""
    m, n = a.dims[-2:]
    packed = bind(la.qr_p, a)
    return la.rows(F, packed, 0, m), la.rows(F, packed, m, m + n)


def qr(a, mode: str = "reduced"):
    """numpy.linalg.qr for tall, square and wide stacks: ``(Q, R)`` for ``mode`` 'reduced'
    (Q (..., m, k), R (..., k, n), k = min(m, n)) or 'complete' (Q (..., m, m), R (..., m, n)),
    R alone for 'r'.  The factorization is normalized so that R's diagonal is non-negative
    (numpy's signs are LAPACK's; the factors agree up to the signs of Q's columns and R's
    rows), which makes it unique, and so differentiable, for ``a`` of full rank k (for wide
    ``a``: its first m columns of full rank).

    Implementation: the ``qr`` primitive (Householder: LAPACK geqrf/orgqr on the CPU, a kernel
    of jitgrad's own on CUDA, ``numpy.linalg.qr`` for the reference) for m >= n, backward
    stable at any condition number.  Rank-deficient ``a`` factors as NumPy's does (a zero on
    R's diagonal, Q still orthonormal), but its derivatives are inf/NaN (they do not exist).
    Wide ``a = [X | Y]``: ``X = Q R_X`` and ``R = [R_X | Qᵀ Y]`` (composed, so derivatives
    follow).  Derivatives of any order: the primitive's rules (Ā = (Q̄ + Q copyltu(M)) R⁻ᵀ,
    M = R R̄ᵀ - Q̄ᵀ Q, and its JVP).  'complete' adds an orthonormal complement to a tall Q
    (not unique: only losses unchanged by rotating it are differentiable, see :func:`svd`)."""
    if mode not in ("reduced", "complete", "r"):
        raise ValueError(f"qr: mode must be 'reduced', 'complete' or 'r', got {mode!r}")
    a = _matrices("qr", "a", a, square=False)
    m, n = a.dims[-2:]
    if m >= n:
        q, r = _qr_tall(a)
        if mode == "complete" and m > n:
            q = F.concatenate([q, _complement(q)], axis=-1)
            r = F.concatenate([r, F.as_tensor(np.zeros(r.dims[:-2] + (m - n, n), dtype=r.dtype))], axis=-2)
    else:
        q, rx = _qr_tall(a[..., :, :m])
        r = F.concatenate([rx, F.matmul(la._mT(F, q), a[..., :, m:])], axis=-1)
    return r if mode == "r" else (q, r)


# -- the matrix exponential ----------------------------------------------------------

_PADE13 = (64764752532480000., 32382376266240000., 7771770303897600., 1187353796428800.,
           129060195264000., 10559470521600., 670442572800., 33522128640., 1323241920.,
           40840800., 960960., 16380., 182., 1.)
_THETA13 = 5.371920351148152
_MAX_SQUARINGS = 64           # enough for ‖A‖₁ up to θ₁₃ 2⁶⁴ ≈ 1e20 (beyond, expm overflows but for rare A)


def _expm_pade(a: Tensor) -> Tensor:
    """The [13/13] Padé approximant with scaling and squaring (Higham 2005, alg. 2.3 with
    degree 13 throughout): s = max(0, ⌈log2(‖A‖₁ / θ₁₃)⌉) per matrix, r₁₃(A / 2^s)^(2^s)."""
    n = a.dims[-1]
    b = _PADE13
    norm1 = F.max(F.sum(F.abs(a), axis=-2), axis=-1)
    ratio = F.divide(norm1, _THETA13)
    s = F.where(F.greater(ratio, 1.0), F.ceil(F.log2(F.where(F.greater(ratio, 1.0), ratio, 1.0))), 0.0)
    a = F.divide(a, F.expand_dims(F.expand_dims(F.exp2(s), -1), -1))
    eye = F.as_tensor(np.eye(n, dtype=a.dtype))
    a2 = F.matmul(a, a)
    a4 = F.matmul(a2, a2)
    a6 = F.matmul(a4, a2)

    def comb(c6, c4, c2, c0=None):
        t = F.add(F.add(F.multiply(a6, c6), F.multiply(a4, c4)), F.multiply(a2, c2))
        return t if c0 is None else F.add(t, F.multiply(eye, c0))

    u = F.matmul(a, F.add(F.matmul(a6, comb(b[13], b[11], b[9])), comb(b[7], b[5], b[3], b[1])))
    v = F.add(F.matmul(a6, comb(b[12], b[10], b[8])), comb(b[6], b[4], b[2], b[0]))
    x = solve(F.subtract(v, u), F.add(v, u))
    from .loops import fori_loop
    s = F.minimum(s, float(_MAX_SQUARINGS))
    more_dims = (lambda t: F.expand_dims(F.expand_dims(t, -1), -1)) if a.ndim > 2 else (lambda t: t)

    def square(i, y):       # a fixed number of steps (reverse mode needs it), idle ones select
        more = more_dims(F.less(F.astype(i, y.dtype), s))
        safe = F.where(more, y, 0.0)                # no overflow in the steps not taken
        return F.where(more, F.matmul(safe, safe), y)

    return fori_loop(0, _MAX_SQUARINGS, square, x)


def _frechet(a: Tensor, e: Tensor) -> Tensor:
    """L(A, E), the Fréchet derivative of expm at A in the direction E: the top right block of
    expm([[A, E], [0, A]]) (Higham, "Functions of Matrices", thm. 3.6)."""
    n = a.dims[-1]
    top = F.concatenate([a, e], axis=-1)
    bottom = F.concatenate([F.zeros_like(a), a], axis=-1)
    return expm(F.concatenate([top, bottom], axis=-2))[..., :n, n:]


def expm(a) -> Tensor:
    """scipy.linalg.expm of each matrix: the [13/13] Padé approximant with scaling and squaring
    (Higham 2005; scipy also uses lower degrees for small norms: the values agree to
    rounding), composed from products, one ``solve`` and a fixed loop of squarings.

    Derivatives by the block-triangular Fréchet method in both modes: the JVP of Ȧ is
    L(A, Ȧ) and the VJP of Ḡ is L(Aᵀ, Ḡ), where L(A, E) is the top right block of
    expm([[A, E], [0, A]]), computed by ``expm`` itself, so every order of either mode
    recurses (the matrices double in size per order)."""
    a = _matrices("expm", "a", a)
    return bind(la.expm_p, _expm_pade(a), a)


la.RULES["frechet"] = _frechet
