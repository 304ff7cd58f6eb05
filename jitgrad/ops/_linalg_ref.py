"""NumPy/SciPy references of the linear-algebra kernels in :mod:`jitgrad.backends.lapack`.

Same semantics and output layouts, any leading batch dimensions, a new array returned in the
input's dtype. They are what the compiled kernels are tested against, so they are written for
plainness, one matrix at a time where the library call does not batch:

- ``lu_factor(a) -> f (..., n+1, n)``: f[:n] the getrf factors of aᵀ (read in column-major
  order), f[n] the 1-based pivots as floats.
- ``lu_cofactor(f) -> (..., n, n)``: the cofactor matrix adj(a)ᵀ, finite at singular a.
- ``eigh(a) -> (..., n+1, n)``: eigenvalues ascending in row 0, eigenvectors V below.
- ``svd(a) -> (..., 1+m+n, k)``: singular values descending in row 0, then U (m rows), V (n rows).
- ``qr(a) -> (..., m+n, n)`` for m >= n: the reduced Q (m rows), then R (n rows, zero below the
  diagonal), signed so that R's diagonal is >= 0 (Q's columns and R's rows flipped together).

Eigenvectors and singular-vector pairs are signed so that the entry of largest magnitude (the
first on ties) of each eigenvector, or of each u_j, is positive.
"""
import warnings

import numpy as np


def _scipy():
    """scipy.linalg, imported at first use: it was more than half of ``import jitgrad``."""
    import scipy.linalg
    return scipy.linalg


def _batch(a):
    """Indices of the matrices of a (..., m, n) array."""
    return np.ndindex(a.shape[:-2])


def _symmetric(a):
    return (a + np.swapaxes(a, -1, -2)) / 2


def _gauge(u, *others):
    """Flip columns of u (and the same columns of `others`) so that each column's largest-magnitude
    entry, the first on ties, is positive. In place."""
    largest = np.take_along_axis(u, np.argmax(np.abs(u), axis=-2)[..., None, :], axis=-2)
    flip = np.where(largest < 0, -1, 1).astype(u.dtype)
    for x in (u, *others):
        x *= flip


# LU --------------------------------------------------------------------------------------------

def lu_factor(a):
    n = a.shape[-1]
    f = np.empty(a.shape[:-2] + (n + 1, n), a.dtype)
    for i in _batch(a):
        if n == 0:
            continue
        with warnings.catch_warnings():   # a singular matrix is not an error here
            warnings.simplefilter("ignore", _scipy().LinAlgWarning)
            lu, piv = _scipy().lu_factor(a[i].T, check_finite=False)
        f[i][:n] = lu.T
        f[i][n] = piv + 1
    return f


def _factors(f):
    """(diagonal of U, parity of the pivots) of a stack of factorizations."""
    n = f.shape[-1]
    diagonal = np.diagonal(f[..., :n, :], axis1=-2, axis2=-1)
    swaps = np.count_nonzero(f[..., n, :] != np.arange(1, n + 1), axis=-1)
    return diagonal, np.where(swaps % 2, -1, 1).astype(f.dtype)


def lu_solve(f, b, trans=False):
    """x = a⁻¹ b (a⁻ᵀ b if trans); LinAlgError on an exact zero pivot. The factors are of aᵀ,
    hence SciPy's trans flag inverted."""
    n = f.shape[-1]
    diagonal, _ = _factors(f)
    x = np.empty(b.shape, np.result_type(f, b))
    for i in _batch(f):
        if np.any(diagonal[i] == 0):
            raise np.linalg.LinAlgError("Singular matrix")
        if x[i].size:
            factors = (f[i][:n].T, f[i][n].astype(np.intc) - 1)
            x[i] = _scipy().lu_solve(factors, b[i], trans=0 if trans else 1, check_finite=False)
    return x


def lu_det(f):
    diagonal, parity = _factors(f)
    return np.prod(diagonal, axis=-1) * parity


def lu_sign(f):
    diagonal, parity = _factors(f)
    return np.prod(np.sign(diagonal), axis=-1) * parity


def lu_logabsdet(f):
    diagonal, _ = _factors(f)
    with np.errstate(divide="ignore"):
        return np.sum(np.log(np.abs(diagonal)), axis=-1)


def lu_cofactor(f):
    """The cofactor matrix adj(a)ᵀ = ∂det(a)/∂a, from the factors, at singular a too.

    f holds P L U = M = aᵀ, and adj(aᵀ) = adj(a)ᵀ, so this is adj(M) = adj(U) L⁻¹ det(P) Pᵀ.
    With k the smallest pivot (first on ties), c = det(P) ∏_{j≠k} u_jj, s = max |u_jj| (1 if
    all are 0) and M' the factors with u_kk replaced by s (adj is affine in u_kk):

        adj(M) = c [u_kk M'⁻¹ + (1 - u_kk/s) x rᵀ],   x = s U'⁻¹ e_k,   rᵀ = s e_kᵀ M'⁻¹,

    which never divides by u_kk; c = 0 (two zero pivots) gives 0.
    """
    n = f.shape[-1]
    out = np.empty(f.shape[:-2] + (n, n), f.dtype)
    diagonal, parity = _factors(f)
    for i in _batch(f):
        if n == 0:
            continue
        d = diagonal[i]
        k = int(np.argmin(np.abs(d)))
        s = np.max(np.abs(d)) or f.dtype.type(1)
        c = parity[i] * np.prod(np.delete(d, k))
        if c == 0:
            out[i] = 0
            continue
        lu = f[i][:n].T.copy()
        lu[k, k] = s
        piv = f[i][n].astype(np.intc) - 1
        w = _scipy().lu_solve((lu, piv), np.eye(n, dtype=f.dtype), check_finite=False)
        x = s * _scipy().solve_triangular(np.triu(lu), np.eye(n, dtype=f.dtype)[:, k],
                                              check_finite=False)
        out[i] = c * (d[k] * w + (1 - d[k] / s) * np.outer(x, s * w[k]))
    return out


# Cholesky, triangular solve --------------------------------------------------------------------

def cholesky(a):
    """Lower l with l lᵀ = (a + aᵀ)/2; LinAlgError if that is not positive definite."""
    return np.linalg.cholesky(_symmetric(a))


def triangular_solve(t, b, lower, trans):
    """x = op(T)⁻¹ b, T the lower (or upper) triangle of t, op(T) = Tᵀ if trans.

    SciPy's solve_triangular (LAPACK trtrs) refuses a zero diagonal; for those matrices this falls
    back to BLAS trsm, which lets inf/nan through as the compiled kernel does."""
    x = np.empty(b.shape, np.result_type(t, b))
    for i in _batch(t):
        if x[i].size == 0:
            continue
        try:
            x[i] = _scipy().solve_triangular(t[i], b[i], trans=int(trans), lower=lower,
                                                 check_finite=False)
        except np.linalg.LinAlgError:
            trsm, = _scipy().get_blas_funcs(("trsm",), (t[i], b[i]))
            x[i] = trsm(1.0, t[i], b[i], lower=lower, trans_a=int(trans))
    return x


# Eigendecomposition, SVD -----------------------------------------------------------------------

def eigh(a):
    n = a.shape[-1]
    out = np.empty(a.shape[:-2] + (n + 1, n), a.dtype)
    if out.size:
        w, v = np.linalg.eigh(_symmetric(a))
        _gauge(v)
        out[..., 0, :], out[..., 1:, :] = w, v
    return out


def svd(a):
    m, n = a.shape[-2:]
    k = min(m, n)
    out = np.empty(a.shape[:-2] + (1 + m + n, k), a.dtype)
    if out.size:
        u, s, vh = np.linalg.svd(a, full_matrices=False)
        v = np.swapaxes(vh, -1, -2).copy()
        _gauge(u, v)
        out[..., 0, :], out[..., 1:1 + m, :], out[..., 1 + m:, :] = s, u, v
    return out


# QR --------------------------------------------------------------------------------------------

def qr(a):
    """Householder QR (LAPACK geqrf/orgqr through NumPy) of tall or square a, m >= n, packed
    [Q; R] with R's diagonal made non-negative. Never raises: rank-deficient a gives a zero on
    R's diagonal and still an orthonormal Q."""
    m, n = a.shape[-2:]
    if m < n:
        raise ValueError(f"qr: expected m >= n, got a matrix of shape {(m, n)}")
    out = np.zeros(a.shape[:-2] + (m + n, n), a.dtype)
    if out.size and n:
        q, r = np.linalg.qr(a)
        flip = np.where(np.diagonal(r, axis1=-2, axis2=-1) < 0, -1, 1).astype(a.dtype)
        out[..., :m, :] = q * flip[..., None, :]
        out[..., m:, :] = np.triu(r) * flip[..., :, None]
    return out
