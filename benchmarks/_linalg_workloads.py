"""The linear-algebra workloads of issue 4's benchmark table, and their hand-written baselines.

Shared by ``bench_linalg.py`` and ``report.py``. Like ``_workloads.py`` it does not import numba
at module level (loading this file must not pay for it).

W4  L = sum(solve(A, B)^2), A n-by-n (R + n I: well conditioned), B n-by-k
W5  L = sum(c * s) and L = sum(M * ((U * s) @ Vt)) with (U, s, Vt) = svd(A) thin, A random normal
    (distinct singular values with probability 1); c and M are fixed (not differentiated)

Targets (issue 4): value+gradient / value-only <= 1.3 at n = 512 (W4) and 512x512 (W5), and
jitgrad's value+gradient <= 1.1x a hand-written SciPy value+gradient that reuses the factorization.

The hand-written baselines stay on SciPy's BLAS/LAPACK, which is also what jitgrad's kernels
call: NumPy and SciPy ship different OpenBLAS builds with separate thread pools, and handing
work back and forth between the two was measured to cost up to 24x on this 2-core machine. So
no ``@`` and no ``np.linalg`` below: products go through ``scipy.linalg.blas.dgemm``.
``verify()`` checks every baseline's gradient against jitgrad's.
"""
from __future__ import annotations

import os

import numpy as np
import scipy.linalg
from scipy.linalg import blas

import jitgrad as jg

# The benchmarks time the compiled tier: every compile here waits for it (jitgrad.tiered).
os.environ.setdefault("JITGRAD_TIERED", "0")

W4_SIZES = (64, 256, 512)
W4_RHS = (1, 32)
W5_SIZES = ("64x64", "256x128", "512x512")
W5_LOSSES = ("values", "reconstruction")


def keep_freed_heap() -> bool:
    """Have glibc's malloc keep freed memory instead of giving it back to the OS, process-wide
    and for good (a no-op returning False off glibc).

    By default a free that leaves more than the trim threshold (dynamically twice the largest
    freed mmap-ed block: 4 MiB after a 2 MiB array) at the top of the heap returns it, and the
    next call faults those pages in again. The hand-written W4 value+gradient at n = 512 frees
    its 2 MiB LU copy and its 2 MiB gradient on every call: ~1000 page faults per call, 1.6x
    its time, a cost of the allocator's policy rather than of the code (jitgrad's executables
    keep their workspace and took none). Set before timing, so both sides compute from warm
    memory.
    """
    import ctypes
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_trim_threshold, 1 << 30) and libc.mallopt(m_mmap_threshold, 1 << 29))
    except (OSError, AttributeError):
        return False


def _mm(a: np.ndarray, b: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """alpha a @ b by SciPy's dgemm, without copies: a C-ordered operand is passed as its
    (Fortran-ordered) transpose with the trans flag set. The result is Fortran-ordered."""
    ta, tb = not a.flags.f_contiguous, not b.flags.f_contiguous
    return blas.dgemm(alpha, a.T if ta else a, b.T if tb else b, trans_a=ta, trans_b=tb)


# ---------------------------------------------------------------------------------------------
# W4: sum(solve(A, B)^2)
# ---------------------------------------------------------------------------------------------

def w4_data(n: int, k: int, seed: int = 4):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, n)) + n * np.eye(n), rng.standard_normal((n, k))


def w4_graph(n: int, k: int, gradient: bool = True):
    """([A, B], [L] or [L, dL/dA, dL/dB])."""
    a, b = jg.input("A", (n, n)), jg.input("B", (n, k))
    x = jg.linalg.solve(a, b)
    loss = jg.sum(x * x)
    return [a, b], [loss, *jg.grad(loss, [a, b])] if gradient else [loss]


def w4_jitgrad(n: int, k: int, gradient: bool = True, target: str = "cpu"):
    return jg.compile(*w4_graph(n, k, gradient), target=target)


def _lu_of_transpose(a):
    """LU factors of aᵀ. A C-ordered ``a`` is a Fortran-ordered aᵀ, so f2py copies it as is;
    ``lu_factor(a)`` would make a transposing copy first, measured at 25% of the whole LU at
    n = 512 (jitgrad's kernel factors aᵀ for the same reason). A solve with ``a`` is then
    the trans=1 solve, one with aᵀ the trans=0 one."""
    return scipy.linalg.lu_factor(a.T, check_finite=False)


def w4_hand_value(a, b):
    """One LU, one solve."""
    x = scipy.linalg.lu_solve(_lu_of_transpose(a), b, trans=1, check_finite=False)
    return np.sum(x * x)


def w4_hand_value_and_gradient(a, b):
    """x = A⁻¹B;  x̄ = 2x,  B̄ = λ = A⁻ᵀx̄ (the transposed solve with the same LU),  Ā = -λxᵀ."""
    lu = _lu_of_transpose(a)
    x = scipy.linalg.lu_solve(lu, b, trans=1, check_finite=False)
    lam = scipy.linalg.lu_solve(lu, 2.0 * x, trans=0, check_finite=False)
    return np.sum(x * x), _mm(lam, x.T, alpha=-1.0), lam


# ---------------------------------------------------------------------------------------------
# W5: losses of the thin SVD
# ---------------------------------------------------------------------------------------------

def w5_shape(size: str) -> tuple[int, int]:
    m, n = size.split("x")
    return int(m), int(n)


def w5_data(size: str, loss: str, seed: int = 5):
    """(A, c) for loss "values", (A, M) for "reconstruction"."""
    m, n = w5_shape(size)
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((m, n))
    fixed = rng.standard_normal(min(m, n)) if loss == "values" else rng.standard_normal((m, n))
    return a, fixed


def w5_graph(size: str, loss: str, gradient: bool = True):
    """([A, c or M], [L] or [L, dL/dA]).

    c and M are inputs that get no gradient rather than constants: the executable stays
    independent of the data (no 2 MiB constant in the graph and its cache key), and the hand
    baseline takes the same arguments.
    """
    m, n = w5_shape(size)
    a = jg.input("A", (m, n))
    u, s, vt = jg.linalg.svd(a)
    if loss == "values":
        fixed = jg.input("c", (min(m, n),))
        value = jg.sum(fixed * s)
    else:
        fixed = jg.input("M", (m, n))
        value = jg.sum(fixed * jg.matmul(u * s, vt))
    return [a, fixed], [value, *jg.grad(value, [a])] if gradient else [value]


def w5_jitgrad(size: str, loss: str, gradient: bool = True, target: str = "cpu"):
    return jg.compile(*w5_graph(size, loss, gradient), target=target)


def _svd(a):
    """SciPy's gesdd, the driver (and library) jitgrad's svd kernel calls: the baseline then
    measures what jitgrad adds around it. np.linalg.svd is gesdd too, but from NumPy's
    OpenBLAS build, whose thread pool would then compete with SciPy's for the products."""
    return scipy.linalg.svd(a, full_matrices=False, lapack_driver="gesdd", check_finite=False)


def w5_hand_value(a, fixed, loss: str):
    """The value alone: singular values only for "values" (what one would write by hand)."""
    if loss == "values":
        return np.sum(fixed * scipy.linalg.svd(a, compute_uv=False, lapack_driver="gesdd",
                                               check_finite=False))
    u, s, vt = _svd(a)
    return np.sum(fixed * _mm(u * s, vt))


def svd_adjoint(u, s, vt, s_bar, u_bar=None, v_bar=None):
    """Ā of a = U S Vᵀ (thin, k = min(m, n)), Townsend (2016):

        Ā = U [diag(s̄) + (F ∘ (UᵀŪ - ŪᵀU)) S + S (F ∘ (VᵀV̄ - V̄ᵀV))] Vᵀ
            + (I - UUᵀ) Ū S⁻¹ Vᵀ  (m > k)  +  U S⁻¹ V̄ᵀ (I - VVᵀ)  (n > k),

    F_ij = 1/(s_j² - s_i²) off the diagonal. (I - UUᵀ)Ū is formed as Ū - U(UᵀŪ): no m-by-m
    matrix."""
    (m, k), n = u.shape, vt.shape[1]
    if u_bar is None and v_bar is None:
        return _mm(u * s_bar, vt)
    s2 = s * s
    gaps = s2[None, :] - s2[:, None]
    np.fill_diagonal(gaps, 1.0)
    f = 1.0 / gaps
    np.fill_diagonal(f, 0.0)
    utu, vtv = _mm(u.T, u_bar), _mm(vt, v_bar)
    inner = np.diag(s_bar) + (f * (utu - utu.T)) * s[None, :] + s[:, None] * (f * (vtv - vtv.T))
    a_bar = _mm(_mm(u, inner), vt)
    if m > k:
        a_bar += _mm((u_bar - _mm(u, utu)) / s, vt)
    if n > k:
        a_bar += _mm(u, ((v_bar - _mm(vt.T, vtv)) / s).T)
    return a_bar


def w5_hand_value_and_gradient(a, fixed, loss: str):
    """One SVD, then the adjoint by hand.

    "values": s̄ = c, Ā = U diag(c) Vᵀ. "reconstruction": L = sum(M ∘ P Vᵀ), P = U S, so
    P̄ = M V, Ū = P̄ S, s̄ = diag(Uᵀ P̄), V̄ = Mᵀ P, through the full adjoint (which gives M).
    """
    u, s, vt = _svd(a)
    if loss == "values":
        return np.sum(fixed * s), svd_adjoint(u, s, vt, fixed)
    p = u * s
    p_bar = _mm(fixed, vt.T)
    a_bar = svd_adjoint(u, s, vt, np.sum(p_bar * u, axis=0), p_bar * s, _mm(fixed.T, p))
    return np.sum(fixed * _mm(p, vt)), a_bar


# ---------------------------------------------------------------------------------------------
# The baselines' check
# ---------------------------------------------------------------------------------------------

def _close(what, got, want, rtol=1e-8, atol=0.0) -> float:
    """Assert got == want (rtol, atol); return the largest error relative to max|want|."""
    got, want = np.asarray(got), np.asarray(want)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=what)
    return float(np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-300))


def verify() -> float:
    """Assert that every hand-written value and gradient equals jitgrad's (target "cpu") at
    small sizes, rtol 1e-8; returns the largest deviation relative to each array's scale.

    W4 at n = 8, k = 1 and 3; W5 at 7x4 (the m > k term), 4x7 (n > k) and 5x5, both losses.
    The reconstruction gradient is also checked against M itself (exact: (U*s)@Vt = A), with an
    absolute tolerance of 1e-10 max|M|, as its entries near zero carry rounding of the SVD.
    """
    worst = 0.0
    for k in (1, 3):
        a, b = w4_data(8, k)
        want = jg.compile(*w4_graph(8, k))(a, b)
        for got, ref, name in zip(w4_hand_value_and_gradient(a, b), want, ("L", "dA", "dB")):
            worst = max(worst, _close(f"W4 k={k} {name}", got, ref))
    for size in ("7x4", "4x7", "5x5"):
        for loss in W5_LOSSES:
            a, fixed = w5_data(size, loss)
            atol = 1e-10 * np.max(np.abs(fixed)) if loss == "reconstruction" else 0.0
            want = jg.compile(*w5_graph(size, loss))(a, fixed)
            for got, ref, name in zip(w5_hand_value_and_gradient(a, fixed, loss), want, ("L", "dA")):
                worst = max(worst, _close(f"W5 {size} {loss} {name}", got, ref, atol=atol))
            if loss == "reconstruction":
                _close(f"W5 {size} dA = M", want[1], fixed, atol=atol)
            _close(f"W5 {size} {loss} hand value", w5_hand_value(a, fixed, loss), want[0])
    return worst
