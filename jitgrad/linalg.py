"""``jg.linalg``: NumPy's linear algebra on stacks of matrices, differentiable.

Each function checks its operands, broadcasts batch dimensions as NumPy does
and binds the primitives of ``jitgrad.ops.linalg``.  A factorization is shared
by everything computed from it: ``solve``'s gradient reuses its LU factors.

Matrix sizes (the last two axes) must be known when the graph is built; batch
axes may be call-time sizes.  Singular or non-positive-definite input raises
``numpy.linalg.LinAlgError`` at run time where NumPy does (solve, inv,
cholesky); ``det`` is 0 and ``slogdet`` is (0, -inf) at a singular matrix, and
their gradients there raise ``LinAlgError`` (the adjugate is not formed).
"""
from __future__ import annotations

import numpy as np

from . import functions as F
from .graph import Tensor, bind
from .ops import linalg as la
from .ops._shapes import fmt_shape
from .primitive import Dim

__all__ = ["solve", "inv", "det", "slogdet", "cholesky", "eigh", "svd", "norm"]


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
    """The determinant of each matrix, from its LU factors."""
    a = _matrices("det", "a", a)
    return bind(la.lu_det_p, _lu(a), a)


def slogdet(a) -> tuple[Tensor, Tensor]:
    """``(sign, logabsdet)`` of each matrix, sharing one LU; sign has no derivative."""
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
    the eigenvector of ``w[..., j]``, each with its largest-magnitude entry positive."""
    a = _matrices("eigh", "a", a)
    packed = bind(la.eigh_p, a)
    n = a.dims[-1]
    return la.row(F, packed, 0), la.rows(F, packed, 1, n + 1)


def svd(a, full_matrices: bool = False, compute_uv: bool = True):
    """Thin SVD ``(U, s, Vt)`` with ``a = U @ (s[..., None] * Vt)``, s descending, as
    ``numpy.linalg.svd(a, full_matrices=False)``; each ``U[..., :, j]`` has its
    largest-magnitude entry positive.  ``full_matrices=True`` (the extra
    orthonormal columns of a rectangular matrix) is not provided and raises
    ``NotImplementedError``.  ``compute_uv=False`` returns ``s`` alone.
    """
    a = _matrices("svd", "a", a, square=False)
    if full_matrices and min(a.dims[-2:]) != max(a.dims[-2:]):
        raise NotImplementedError("svd: full_matrices=True is not supported; pass full_matrices=False "
                                  "for the thin SVD")
    m, n = a.dims[-2:]
    packed = bind(la.svd_p, a)
    s = la.row(F, packed, 0)
    if not compute_uv:
        return s
    u, v = la.rows(F, packed, 1, 1 + m), la.rows(F, packed, 1 + m, 1 + m + n)
    return u, s, la._mT(F, v)


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
    axes = tuple(int(a) % x.ndim if -x.ndim <= a < x.ndim else _bad_axis(a, x) for a in axes)
    if len(axes) == 1:
        return _vector_norm(x, ord, axes[0], keepdims)
    if len(axes) == 2 and axes[0] != axes[1]:
        return _matrix_norm(x, ord, axes, keepdims)
    raise ValueError(f"norm: axis must be one axis or two distinct axes, got {axis!r}")


def _bad_axis(a, x):
    raise ValueError(f"norm: axis {a} is out of range for an array of shape {fmt_shape(x.dims)}")

