"""Linear algebra on the device: :mod:`jitgrad.backends.lapack`'s factorizations as CUDA kernels.

Why kernels of our own: numba.cuda has no LAPACK, and a kernel cannot call cuSOLVER. So LU,
Cholesky, the triangular solves, the symmetric eigendecomposition, the SVD and QR are written
here for the sizes a graph typically holds (n up to a few hundred, batched). The contract is
lapack.py's, name for name: the same arguments, device arrays instead of NumPy ones
(C-contiguous, the batch flattened to the leading axis), outputs preallocated by the caller,
and the same packed layouts (those of :mod:`jitgrad.ops._linalg_ref`, the tests' oracle).
float64 and float32 alike: Numba compiles one specialisation per dtype, and each kernel makes
its constants with ``T = a.dtype.type`` (a bare ``0.5`` is a float64 literal and would make a
float32 kernel compute in double).

Launch strategy: one block per matrix. The threads of a block share the work of one
factorization (rows for LU and Cholesky, the (row, right-hand side) pairs of a substitution
step, disjoint column pairs of a Jacobi round) and meet at ``syncthreads``; blocks stride over
the batch. A thread per matrix would leave a GPU all but idle for a batch of one and make
every thread stream its own n² elements; a block keeps neighbouring threads on neighbouring
addresses. The price is idle threads for tiny matrices (a 2x2 still occupies a warp). Blocks
are warp multiples covering the parallel width, at most 128 threads; under the simulator, 4
threads and 2 blocks (the sizes are :mod:`jitgrad.backends.cuda_runtime`'s). The steps that
are independent per column of the result (sorting and signing eigenpairs, singular triplets,
determinants) are flat grid-stride kernels, a thread per item.

Workspace lives in global memory allocated by the launcher (``cuda.local.array`` needs sizes
known when compiling). Shared memory holds only int32 flags and pivot candidates: its dtype is
fixed when compiling, and one kernel serves both float dtypes; the one float reduction (the
scale of eigh/svd inputs) goes through a per-block row of global scratch.

Errors: a kernel cannot raise on a GPU. Each matrix's outcome goes to an int32 ``info`` array of
``cuda_runtime`` error codes (0 where it succeeded), which the later kernels of the call read
to skip a failed matrix and ``cuda_runtime.raise_error`` turns into ``numpy.linalg.LinAlgError``
with the CPU's message.

No device functions: numba 0.68's built-in numba.cuda compiles a called device function for
the current device (``inline="always"`` or not), so ``compile_ptx`` of its caller fails on a
machine without a GPU; numba-cuda manages it for ``inline="always"`` only. To compile to PTX
under both, each kernel writes its steps out, and the two kinds of triangular solve share one
kernel.

Algorithms:

- LU: right-looking elimination with partial pivoting (Golub & Van Loan, *Matrix
  Computations*, 4th ed., Alg. 3.4.1), run on M = aᵀ as LAPACK's getrf sees the C-ordered
  buffer, so the factors, the pivots (first largest magnitude, as idamax) and the layout are
  getrf's.
- Cholesky: outer-product form (GVL §4.2.6), stopping at a pivot that is not > 0 (or NaN) as
  potrf does.
- Substitution: column-oriented forward/back substitution (GVL §3.1), one step per row.
- eigh: cyclic two-sided Jacobi (GVL §8.5, Alg. 8.5.1-8.5.3) with the round-robin ("chess
  tournament") parallel ordering of GVL §8.5.5 / Brent & Luk (1985): a round rotates n/2
  disjoint pairs at once. A pair is rotated unless |a_pq| <= eps·max(sqrt|a_pp a_qq|, ‖A‖_F/n)
  (the relative test of Demmel & Veselić, "Jacobi's method is more accurate than QR", SIAM
  J. Matrix Anal. Appl. 13, 1992, with an absolute floor for zero diagonals); a sweep without
  a rotation ends it, leaving an off-diagonal norm of a few eps·‖A‖_F. (Testing that norm
  against eps·‖A‖_F instead can stall at rounding level on repeated eigenvalues.) SWEEPS
  sweeps without converging, or an inf/NaN input, is an error. The input is scaled by its
  largest entry first. Then sorted ascending.
- svd: one-sided Jacobi (Hestenes, J. SIAM 6, 1958; Demmel & Veselić 1992): rotations from the
  right orthogonalize the columns of a (of aᵀ if m < n), in the same parallel ordering, while
  |g_p·g_q| > sqrt(rows)·eps·‖g_p‖‖g_q‖ (LAPACK gesvj's tolerance). Columns of norm <=
  eps·‖A‖_F are left alone (their rounding noise would otherwise keep shrinking by eps a
  sweep); their norms stand as their singular values, zero to working accuracy. Then
  s_j = ‖g_j‖, u_j = g_j/s_j, v_j from the accumulated rotations, sorted descending. The
  u_j (v_j if m < n) of negligible columns are redone by Gram-Schmidt (twice) against the
  columns before them, starting from their own direction, else from the unit vector those
  cover least, so that U and V are orthonormal whatever the rank. A single thread per matrix
  does this: cheap unless a large matrix has many (near-)zero singular values.
- qr: unblocked Householder QR and backward accumulation of Q (GVL Alg. 5.2.1, 5.1.5; LAPACK
  geqr2/org2r with dlarfg's reflectors), R's diagonal then made non-negative.
"""
from __future__ import annotations

import math

import numpy as np
from numba import cuda, types

from .cuda_runtime import (EIGH_NOT_CONVERGED, MATRIX_THREADS, NOT_POSITIVE_DEFINITE, OK, SINGULAR,
                           SVD_NOT_CONVERGED, error_per_matrix, linalg_item_launch, matrix_launch,
                           raise_error)

__all__ = ["lu_factor", "lu_solve", "lu_det", "lu_sign", "lu_logabsdet", "lu_cofactor", "cholesky",
           "triangular_solve", "eigh", "eigh_values", "svd", "svd_values", "qr", "KERNELS"]

SWEEPS = 60                 # Jacobi sweeps before "did not converge" (about 10 are typical)


# ---------------------------------------------------------------------------------------------
# Argument checks
# ---------------------------------------------------------------------------------------------

def _stack(name: str, x) -> tuple[int, int, int]:
    """The shape of a stack of matrices (batch, rows, columns)."""
    if len(x.shape) != 3:
        raise ValueError(f"{name}: expected a stack of matrices (batch, m, n), "
                         f"got shape {tuple(x.shape)}")
    return tuple(x.shape)


def _check(name: str, *arrays_and_shapes) -> None:
    """Raise unless each array has its expected shape and all share one float dtype."""
    dtype = arrays_and_shapes[0].dtype
    if dtype not in (np.float64, np.float32):
        raise TypeError(f"{name}: expected float64 or float32 arrays, got {dtype}")
    for x, shape in zip(arrays_and_shapes[::2], arrays_and_shapes[1::2]):
        if len(x.shape) != len(shape) or tuple(x.shape) != tuple(shape):
            raise ValueError(f"{name}: expected an array of shape {tuple(shape)}, "
                             f"got {tuple(x.shape)}")
        if x.dtype != dtype:
            raise TypeError(f"{name}: dtypes {dtype} and {x.dtype} differ")


def _eps(dtype):
    return np.dtype(dtype).type(np.finfo(dtype).eps)


# ---------------------------------------------------------------------------------------------
# LU: f[i, :n] holds getrf's factors of M = a[i]ᵀ (what LAPACK sees in a[i]'s C-ordered
# buffer): M[r, c] is f[i, c, r]. f[i, n] the 1-based pivots as floats.
# ---------------------------------------------------------------------------------------------

@cuda.jit
def _lu_factor_kernel(a, f):
    T = a.dtype.type
    tid, nt = cuda.threadIdx.x, cuda.blockDim.x
    n = a.shape[1]
    candidate = cuda.shared.array(MATRIX_THREADS, types.int32)    # each thread's pivot row
    for i in range(cuda.blockIdx.x, a.shape[0], cuda.gridDim.x):
        for e in range(tid, n * n, nt):
            f[i, e // n, e % n] = a[i, e // n, e % n]
        cuda.syncthreads()
        for j in range(n):
            # Pivot: the first row r >= j of largest |M[r, j]| (idamax), M[r, j] = f[i, j, r].
            mine, big = -1, T(-1)
            for r in range(j + tid, n, nt):
                if abs(f[i, j, r]) > big:
                    mine, big = r, abs(f[i, j, r])
            candidate[tid] = mine
            cuda.syncthreads()
            p, big = j, T(-1)
            for t in range(nt):
                r = candidate[t]
                if r >= 0 and (abs(f[i, j, r]) > big or (abs(f[i, j, r]) == big and r < p)):
                    p, big = r, abs(f[i, j, r])
            cuda.syncthreads()
            if tid == 0:
                f[i, n, j] = p + 1
            if p != j:      # swap rows j and p of M, all n columns (laswp)
                for c in range(tid, n, nt):
                    f[i, c, j], f[i, c, p] = f[i, c, p], f[i, c, j]
            cuda.syncthreads()
            # Eliminate below the pivot, a thread per row r: scale M[r, j], then update the row.
            pivot = f[i, j, j]
            for r in range(j + 1 + tid, n, nt):
                m = f[i, j, r]
                if pivot != 0:          # a zero pivot leaves its (zero) column as it is
                    m = m / pivot
                    f[i, j, r] = m
                for c in range(j + 1, n):
                    f[i, c, r] -= m * f[i, c, j]
            cuda.syncthreads()


def lu_factor(a, f) -> None:
    """a (b, n, n) -> f (b, n+1, n), as lapack.lu_factor. Never raises: a singular matrix
    leaves a zero on U's diagonal."""
    batch, _, n = _stack("lu_factor", a)
    _check("lu_factor", a, (batch, n, n), f, (batch, n + 1, n))
    if batch and n:
        blocks, threads = matrix_launch(batch, n)
        _lu_factor_kernel[blocks, threads](a, f)


# ---------------------------------------------------------------------------------------------
# Triangular solves, with the LU factors or with a triangle of t: one kernel.
#
# With the factors (lu): P M = L U, M = aᵀ, so a = Uᵀ Lᵀ P. Uᵀ is the lower triangle of f[i]
# and Lᵀ its unit upper one, read in C order:
#   a x = b:  Uᵀ y = b (forward), Lᵀ z = y (backward, unit), x = Pᵀ z (swaps in reverse);
#   aᵀ x = b: y = P b (swaps in order), L z = y (forward, unit), U x = z (backward),
# where L and U are the transposes of those triangles.
# ---------------------------------------------------------------------------------------------

@cuda.jit
def _solve_kernel(t, b, x, lu, lower, trans, info):
    tid, nt = cuda.threadIdx.x, cuda.blockDim.x
    n, k = b.shape[1], b.shape[2]
    singular = cuda.shared.array(1, types.int32)
    for i in range(cuda.blockIdx.x, b.shape[0], cuda.gridDim.x):
        if lu:      # an exact zero on U's diagonal: report it, solve nothing
            if tid == 0:
                singular[0] = 0
            cuda.syncthreads()
            for j in range(tid, n, nt):
                if t[i, j, j] == 0:
                    singular[0] = SINGULAR
            cuda.syncthreads()
            if tid == 0:
                info[i] = singular[0]
            if singular[0] != 0:
                cuda.syncthreads()
                continue
        for e in range(tid, n * k, nt):
            x[i, e // k, e % k] = b[i, e // k, e % k]
        cuda.syncthreads()
        if lu and trans:        # y = P b: a thread per right-hand side, swaps in order
            for q in range(tid, k, nt):
                for j in range(n):
                    p = int(t[i, n, j]) - 1
                    x[i, j, q], x[i, p, q] = x[i, p, q], x[i, j, q]
            cuda.syncthreads()
        for phase in range(2 if lu else 1):
            # This phase solves op(T) x = x with op(T)[r, c] = t[c, r] if `transposed` else t[r, c].
            if lu:
                forward, transposed, unit = phase == 0, trans, (phase == 1) != trans
            else:
                forward, transposed, unit = lower != trans, trans, False
            if n > 0:
                first = 0 if forward else n - 1
                if not unit:
                    for q in range(tid, k, nt):
                        x[i, first, q] = x[i, first, q] / t[i, first, first]
                cuda.syncthreads()
                for step in range(n - 1):   # x[j] is final: eliminate it from the rows after it
                    j = step if forward else n - 1 - step
                    for e in range(tid, (n - 1 - step) * k, nt):
                        r = j + 1 + e // k if forward else j - 1 - e // k
                        q = e % k
                        v = x[i, r, q] - (t[i, j, r] if transposed else t[i, r, j]) * x[i, j, q]
                        if e < k and not unit:      # the next row is final now too
                            v = v / t[i, r, r]
                        x[i, r, q] = v
                    cuda.syncthreads()
        if lu and not trans:    # x = Pᵀ z: swaps in reverse order
            for q in range(tid, k, nt):
                for j in range(n - 1, -1, -1):
                    p = int(t[i, n, j]) - 1
                    x[i, j, q], x[i, p, q] = x[i, p, q], x[i, j, q]
        cuda.syncthreads()


def _solve(name, t, b, x, lu, lower, trans):
    batch, n, k = _stack(name, b)
    _check(name, t, (batch, n + 1 if lu else n, n), b, (batch, n, k), x, (batch, n, k))
    info = error_per_matrix(batch if lu else 1)
    if batch:
        blocks, threads = matrix_launch(batch, max(n, n * k))
        _solve_kernel[blocks, threads](t, b, x, bool(lu), bool(lower), bool(trans), info)
        if lu:
            raise_error(info)


def lu_solve(f, b, x, trans) -> None:
    """x[i] = a[i]⁻¹ b[i], or a[i]⁻ᵀ b[i] if `trans`; f from lu_factor, b, x (batch, n, k).
    Raises LinAlgError("Singular matrix") on an exact zero pivot."""
    _solve("lu_solve", f, b, x, True, False, trans)


def triangular_solve(t, b, x, lower, trans) -> None:
    """x[i] = op(T)⁻¹ b[i], T the lower (or upper) triangle of t[i] with its diagonal, op(T) =
    Tᵀ if `trans`; t (batch, n, n), b, x (batch, n, k). A zero diagonal gives inf/nan."""
    _solve("triangular_solve", t, b, x, False, lower, trans)


# ---------------------------------------------------------------------------------------------
# Determinants from the factors: parity of the pivots times the product of U's diagonal.
# ---------------------------------------------------------------------------------------------

_DET, _SIGN, _LOGABSDET = 0, 1, 2


@cuda.jit
def _lu_scalar_kernel(f, out, what):
    T = f.dtype.type
    n = f.shape[2]
    for i in range(cuda.grid(1), f.shape[0], cuda.gridsize(1)):
        odd = False
        for j in range(n):
            if f[i, n, j] != T(j + 1):
                odd = not odd
        value, zero_seen = T(-1) if odd else T(1), False
        if what == _LOGABSDET:
            value = T(0)
        for j in range(n):
            d = f[i, j, j]
            if what == _DET:
                value *= d
            elif what == _SIGN:
                if d < 0:
                    value = -value
                elif not d > 0:
                    value *= d          # a zero pivot gives 0, a NaN one NaN
            elif d == 0:
                zero_seen = True        # log 0 = -inf (math.log would raise in the simulator)
            else:
                value += math.log(abs(d))
        if zero_seen:
            out[i] = -math.inf if value < T(math.inf) else math.nan   # -inf + inf or NaN: NaN
        else:
            out[i] = value


def _lu_scalar(name, f, out, what):
    batch, _, n = _stack(name, f)
    _check(name, f, (batch, n + 1, n), out, (batch,))
    if batch:
        blocks, threads = linalg_item_launch(batch)
        _lu_scalar_kernel[blocks, threads](f, out, what)


def lu_det(f, out) -> None:
    """out (b,) = det a[i]."""
    _lu_scalar("lu_det", f, out, _DET)


def lu_sign(f, out) -> None:
    """out (b,) = sign of det a[i]: +1, -1, 0 if singular (NaN if a pivot is NaN)."""
    _lu_scalar("lu_sign", f, out, _SIGN)


def lu_logabsdet(f, out) -> None:
    """out (b,) = log |det a[i]| (-inf if singular)."""
    _lu_scalar("lu_logabsdet", f, out, _LOGABSDET)


# ---------------------------------------------------------------------------------------------
# The cofactor matrix from the factors (lapack.lu_cofactor's formula): g = f with the smallest
# pivot u_kk replaced by s = max |u_jj| and out = I (a block per matrix, thread 0 picks k);
# the solve kernel turns out into W = M'⁻¹ in place; then out = c (u_kk W + (1 - u_kk/s) x rᵀ),
# x = s U'⁻¹ e_k by thread 0's back substitution, r = s W[k], a thread per column. Where c = 0
# (two zero pivots) the solve is skipped (its info is ignored) and out = 0.
# aux[i] = (k, s, c, u_kk).
# ---------------------------------------------------------------------------------------------

@cuda.jit
def _cofactor_prepare_kernel(f, g, out, aux):
    T = f.dtype.type
    tid, nt = cuda.threadIdx.x, cuda.blockDim.x
    n = f.shape[2]
    for i in range(cuda.blockIdx.x, f.shape[0], cuda.gridDim.x):
        for e in range(tid, (n + 1) * n, nt):
            g[i, e // n, e % n] = f[i, e // n, e % n]
        for e in range(tid, n * n, nt):
            out[i, e // n, e % n] = T(1) if e // n == e % n else T(0)
        if tid == 0:
            k, smallest, s = 0, abs(f[i, 0, 0]), abs(f[i, 0, 0])
            c = T(1)
            for j in range(n):
                if f[i, n, j] != T(j + 1):
                    c = -c
                if abs(f[i, j, j]) < smallest:
                    k, smallest = j, abs(f[i, j, j])
                if abs(f[i, j, j]) > s:
                    s = abs(f[i, j, j])
            if s == 0:
                s = T(1)
            for j in range(n):
                if j != k:
                    c *= f[i, j, j]
            aux[i, 0], aux[i, 1], aux[i, 2], aux[i, 3] = T(k), s, c, f[i, k, k]
        cuda.syncthreads()
        if tid == 0:
            g[i, int(aux[i, 0]), int(aux[i, 0])] = aux[i, 1]
        cuda.syncthreads()


@cuda.jit
def _cofactor_finish_kernel(g, out, aux, x):
    T = g.dtype.type
    tid, nt = cuda.threadIdx.x, cuda.blockDim.x
    n = g.shape[2]
    for i in range(cuda.blockIdx.x, g.shape[0], cuda.gridDim.x):
        k, s, c, u = int(aux[i, 0]), aux[i, 1], aux[i, 2], aux[i, 3]
        if tid == 0 and c != 0:     # x = s U'⁻¹ e_k, U'[r, q] = g[q, r] for r <= q
            for r in range(n):
                x[i, r] = T(0)
            x[i, k] = T(1)
            for r in range(k - 1, -1, -1):
                total = T(0)
                for q in range(r + 1, k + 1):
                    total += g[i, q, r] * x[i, q]
                x[i, r] = -total / g[i, r, r]
        cuda.syncthreads()
        weight = (T(1) - u / s) * s
        for q in range(tid, n, nt):
            if c == 0:
                for r in range(n):
                    out[i, r, q] = T(0)
            else:
                w = weight * out[i, k, q]
                for r in range(n):
                    out[i, r, q] = c * (u * out[i, r, q] + x[i, r] * w)
        cuda.syncthreads()


def lu_cofactor(f, out) -> None:
    """out (b, n, n) = the cofactor matrix adj(a[i])ᵀ, exact at singular matrices too, as
    lapack.lu_cofactor. Never raises."""
    batch, _, n = _stack("lu_cofactor", f)
    _check("lu_cofactor", f, (batch, n + 1, n), out, (batch, n, n))
    if batch == 0 or n == 0:
        return
    g = cuda.device_array(f.shape, f.dtype)
    aux = cuda.device_array((batch, 4), f.dtype)
    x = cuda.device_array((batch, n), f.dtype)
    info = error_per_matrix(batch)
    blocks, threads = matrix_launch(batch, n)
    _cofactor_prepare_kernel[blocks, threads](f, g, out, aux)
    blocks, threads = matrix_launch(batch, n * n)
    _solve_kernel[blocks, threads](g, out, out, True, False, True, info)     # info: see above
    blocks, threads = matrix_launch(batch, n)
    _cofactor_finish_kernel[blocks, threads](g, out, aux, x)


# ---------------------------------------------------------------------------------------------
# Cholesky of s = (a + aᵀ)/2, outer-product form on the lower triangle of l.
# ---------------------------------------------------------------------------------------------

@cuda.jit
def _cholesky_kernel(a, l, info):
    T = a.dtype.type
    tid, nt = cuda.threadIdx.x, cuda.blockDim.x
    n = a.shape[1]
    for i in range(cuda.blockIdx.x, a.shape[0], cuda.gridDim.x):
        for e in range(tid, n * n, nt):
            r, c = e // n, e % n
            l[i, r, c] = T(0.5) * (a[i, r, c] + a[i, c, r]) if c <= r else T(0)
        cuda.syncthreads()
        failed = 0
        for j in range(n):
            d = l[i, j, j]          # every thread reads it before thread 0 replaces it
            if not d > 0:           # potrf's test: not positive, or NaN
                failed = NOT_POSITIVE_DEFINITE
                break
            root = math.sqrt(d)
            for r in range(j + 1 + tid, n, nt):
                l[i, r, j] = l[i, r, j] / root
            cuda.syncthreads()
            if tid == 0:
                l[i, j, j] = root
            w = n - 1 - j           # trailing update of the lower triangle below j
            for e in range(tid, w * w, nt):
                r, c = j + 1 + e // w, j + 1 + e % w
                if c <= r:
                    l[i, r, c] -= l[i, r, j] * l[i, c, j]
            cuda.syncthreads()
        if tid == 0:
            info[i] = failed
        cuda.syncthreads()


def cholesky(a, l) -> None:
    """a, l (b, n, n): l[i] lower triangular (strict upper exactly 0) with l lᵀ = (a + aᵀ)/2.
    Raises LinAlgError("Matrix is not positive definite")."""
    batch, _, n = _stack("cholesky", a)
    _check("cholesky", a, (batch, n, n), l, (batch, n, n))
    if batch and n:
        info = error_per_matrix(batch)
        blocks, threads = matrix_launch(batch, n * n)
        _cholesky_kernel[blocks, threads](a, l, info)
        raise_error(info)


# ---------------------------------------------------------------------------------------------
# Jacobi methods, shared first step: the matrix to work on, scaled by the input's largest
# entry (so sums of squares neither overflow nor underflow), and its Frobenius norm.
# ---------------------------------------------------------------------------------------------

_SYMMETRIC, _AS_IS, _TRANSPOSED = 0, 1, 2


@cuda.jit
def _prepare_kernel(a, work, vecs, scale, red, layout, vectors):
    """work[i] = (a + aᵀ)/2, a or aᵀ (by `layout`) divided by s = max |a[i]| (by 1 if a[i] = 0);
    vecs[i] = I if `vectors`; scale[i] = (s, ‖work[i]‖_F). `red` is a row per block."""
    T = a.dtype.type
    tid, nt, blk = cuda.threadIdx.x, cuda.blockDim.x, cuda.blockIdx.x
    rows, cols, width = work.shape[1], work.shape[2], a.shape[2]
    for i in range(blk, a.shape[0], cuda.gridDim.x):
        big = T(0)
        for e in range(tid, rows * cols, nt):
            if not abs(a[i, e // width, e % width]) <= big:      # NaN wins
                big = abs(a[i, e // width, e % width])
        red[blk, tid] = big
        cuda.syncthreads()
        for t in range(nt):
            if not red[blk, t] <= big:
                big = red[blk, t]
        cuda.syncthreads()
        divisor = big if big != 0 else T(1)    # dividing: 1/big may overflow
        squares = T(0)
        for e in range(tid, rows * cols, nt):
            r, c = e // cols, e % cols
            if layout == _SYMMETRIC:     # scaled before adding: a_rc + a_cr may overflow
                v = T(0.5) * (a[i, r, c] / divisor + a[i, c, r] / divisor)
            elif layout == _AS_IS:
                v = a[i, r, c] / divisor
            else:
                v = a[i, c, r] / divisor
            work[i, r, c] = v
            squares += v * v
        if vectors:
            for e in range(tid, vecs.shape[1] * vecs.shape[1], nt):
                r, c = e // vecs.shape[1], e % vecs.shape[1]
                vecs[i, r, c] = T(1) if r == c else T(0)
        red[blk, tid] = squares
        cuda.syncthreads()
        if tid == 0:
            squares = T(0)
            for t in range(nt):
                squares += red[blk, t]
            scale[i, 0], scale[i, 1] = big, math.sqrt(squares)
        cuda.syncthreads()


def _prepare(a, layout, rows, cols, vectors):
    """Launch _prepare_kernel; returns (work, vecs, scale)."""
    batch = a.shape[0]
    k = cols if vectors else 1
    work = cuda.device_array((batch, rows, cols), a.dtype)
    vecs = cuda.device_array((batch, k, k), a.dtype)
    scale = cuda.device_array((batch, 2), a.dtype)
    blocks, threads = matrix_launch(batch, rows * cols)
    red = cuda.device_array((blocks, threads), a.dtype)
    _prepare_kernel[blocks, threads](a, work, vecs, scale, red, layout, bool(vectors))
    return work, vecs, scale


# ---------------------------------------------------------------------------------------------
# eigh: cyclic Jacobi in the round-robin ordering. Round `rnd` of a sweep pairs positions kp
# and m-1-kp of a circle of m = n (+1 if odd: a dummy) players, player 0 fixed, the others
# shifted by rnd; over the m-1 rounds every pair meets once.
# ---------------------------------------------------------------------------------------------

@cuda.jit
def _jacobi_kernel(work, vecs, rot, scale, eps, vectors, info):
    """Diagonalize work[i] in place, V in vecs[i] (if `vectors`). Each round: a thread per pair
    computes its rotation (GVL Alg. 8.5.1) and rotates rows p, q (A <- JᵀA); then, after a
    barrier, columns p, q of A and V (A <- AJ, V <- VJ). The pairs are disjoint, so the
    threads never touch the same entries within a phase. rot[blk] keeps (c, s, new a_pp,
    new a_qq) per pair between the phases; c = 0 marks a pair left alone."""
    T = work.dtype.type
    tid, nt, blk = cuda.threadIdx.x, cuda.blockDim.x, cuda.blockIdx.x
    n = work.shape[1]
    m = n + n % 2
    rotated = cuda.shared.array(1, types.int32)
    for i in range(blk, work.shape[0], cuda.gridDim.x):
        a, v, r = work[i], vecs[i], rot[blk]
        if not scale[i, 1] - scale[i, 1] == 0:     # inf or NaN input
            if tid == 0:
                info[i] = EIGH_NOT_CONVERGED
            continue
        floor = scale[i, 1] / T(n)     # ‖A‖_F / n: a_pq below eps times this is left alone
        sweeps, busy = 0, 1
        while busy != 0 and sweeps < SWEEPS:
            if tid == 0:
                rotated[0] = 0
            cuda.syncthreads()
            for rnd in range(m - 1):
                for kp in range(tid, m // 2, nt):
                    p = 0 if kp == 0 else (kp - 1 + rnd) % (m - 1) + 1
                    q = (m - 2 - kp + rnd) % (m - 1) + 1
                    p, q = min(p, q), max(p, q)
                    r[0, kp] = T(0)
                    if q < n and abs(a[p, q]) > eps * max(
                            math.sqrt(abs(a[p, p])) * math.sqrt(abs(a[q, q])), floor):
                        rotated[0] = 1
                        apq, app, aqq = a[p, q], a[p, p], a[q, q]
                        tau = (aqq - app) / (apq + apq)
                        t = T(1) / (abs(tau) + math.sqrt(T(1) + tau * tau))
                        t = -t if tau < 0 else t
                        c = T(1) / math.sqrt(T(1) + t * t)
                        s = t * c
                        r[0, kp], r[1, kp], r[2, kp], r[3, kp] = c, s, app - t * apq, aqq + t * apq
                        for col in range(n):
                            x, y = a[p, col], a[q, col]
                            a[p, col], a[q, col] = c * x - s * y, s * x + c * y
                cuda.syncthreads()
                for kp in range(tid, m // 2, nt):
                    c, s = r[0, kp], r[1, kp]
                    if c != 0:
                        p = 0 if kp == 0 else (kp - 1 + rnd) % (m - 1) + 1
                        q = (m - 2 - kp + rnd) % (m - 1) + 1
                        p, q = min(p, q), max(p, q)
                        for row in range(n):
                            x, y = a[row, p], a[row, q]
                            a[row, p], a[row, q] = c * x - s * y, s * x + c * y
                            if vectors:
                                x, y = v[row, p], v[row, q]
                                v[row, p], v[row, q] = c * x - s * y, s * x + c * y
                        a[p, q], a[q, p], a[p, p], a[q, q] = T(0), T(0), r[2, kp], r[3, kp]
                cuda.syncthreads()
            sweeps += 1
            busy = rotated[0]
            cuda.syncthreads()
        if tid == 0:
            info[i] = EIGH_NOT_CONVERGED if busy != 0 else OK     # still rotating after SWEEPS sweeps


@cuda.jit
def _eigh_finish_kernel(work, vecs, scale, out, vectors, info):
    """A thread per eigenpair j: its place in ascending order (ties by index), the value scaled
    back, the vector signed so that its largest-magnitude entry (the first) is positive."""
    T = work.dtype.type
    n = work.shape[1]
    for item in range(cuda.grid(1), work.shape[0] * n, cuda.gridsize(1)):
        i, j = item // n, item % n
        if info[i] != 0:
            continue
        w = work[i, j, j]
        rank = 0
        for o in range(n):
            if work[i, o, o] < w or (work[i, o, o] == w and o < j):
                rank += 1
        out[i, 0, rank] = w * scale[i, 0]
        if vectors:
            largest = T(0)
            for r in range(n):
                if abs(vecs[i, r, j]) > abs(largest):
                    largest = vecs[i, r, j]
            sign = T(-1) if largest < 0 else T(1)
            for r in range(n):
                out[i, 1 + r, rank] = sign * vecs[i, r, j]


def _eigh(a, out, vectors):
    batch, _, n = _stack("eigh", a)
    _check("eigh", a, (batch, n, n), out, (batch, n + 1, n))
    if batch == 0 or n == 0:
        return
    work, vecs, scale = _prepare(a, _SYMMETRIC, n, n, vectors)
    info = error_per_matrix(batch)
    blocks, threads = matrix_launch(batch, (n + 1) // 2)
    rot = cuda.device_array((blocks, 4, (n + 1) // 2), a.dtype)
    _jacobi_kernel[blocks, threads](work, vecs, rot, scale, _eps(a.dtype), bool(vectors), info)
    blocks, threads = linalg_item_launch(batch * n)
    _eigh_finish_kernel[blocks, threads](work, vecs, scale, out, bool(vectors), info)
    raise_error(info)


def eigh(a, out) -> None:
    """a (b, n, n) -> out (b, n+1, n): out[i, 0] the eigenvalues of (a + aᵀ)/2, ascending;
    out[i, 1:] = V, column j the unit eigenvector of eigenvalue j, its largest entry positive.
    Raises LinAlgError("Eigenvalues did not converge") (inf/NaN input included)."""
    _eigh(a, out, True)


def eigh_values(a, out) -> None:
    """Row 0 of what `eigh` writes: the eigenvalues, ascending. The rest of out is untouched."""
    _eigh(a, out, False)


# ---------------------------------------------------------------------------------------------
# svd: one-sided Jacobi on G, the m-by-n a if m >= n, else its transpose (rows = max(m, n),
# k = min(m, n) columns). G W = Q diag(s) with W orthogonal (k-by-k); then for m >= n,
# a = Q S Wᵀ: U = Q, V = W; for m < n, aᵀ = Q S Wᵀ: U = W, V = Q.
# ---------------------------------------------------------------------------------------------

@cuda.jit
def _hestenes_kernel(work, vecs, norms, scale, eps, vectors, info):
    """Orthogonalize the columns of G = work[i] by rotations from the right (accumulated in
    W = vecs[i] if `vectors`), a thread per column pair of a round; then norms[i] = the
    column norms."""
    T = work.dtype.type
    tid, nt, blk = cuda.threadIdx.x, cuda.blockDim.x, cuda.blockIdx.x
    rows, k = work.shape[1], work.shape[2]
    m = k + k % 2
    rotated = cuda.shared.array(1, types.int32)
    for i in range(blk, work.shape[0], cuda.gridDim.x):
        g, w = work[i], vecs[i]
        if not scale[i, 1] - scale[i, 1] == 0:     # inf or NaN input
            if tid == 0:
                info[i] = SVD_NOT_CONVERGED
            continue
        negligible = (eps * scale[i, 1]) * (eps * scale[i, 1])
        tol = eps * math.sqrt(T(rows))
        sweeps, busy = 0, 1
        while busy != 0 and sweeps < SWEEPS:
            if tid == 0:
                rotated[0] = 0
            cuda.syncthreads()
            for rnd in range(m - 1):
                for kp in range(tid, m // 2, nt):
                    p = 0 if kp == 0 else (kp - 1 + rnd) % (m - 1) + 1
                    q = (m - 2 - kp + rnd) % (m - 1) + 1
                    if max(p, q) >= k:
                        continue
                    alpha, beta, gamma = T(0), T(0), T(0)
                    for row in range(rows):
                        x, y = g[row, p], g[row, q]
                        alpha, beta, gamma = alpha + x * x, beta + y * y, gamma + x * y
                    if (alpha > negligible and beta > negligible
                            and abs(gamma) > tol * math.sqrt(alpha) * math.sqrt(beta)):
                        rotated[0] = 1
                        zeta = (beta - alpha) / (gamma + gamma)
                        t = T(1) / (abs(zeta) + math.sqrt(T(1) + zeta * zeta))
                        t = -t if zeta < 0 else t
                        c = T(1) / math.sqrt(T(1) + t * t)
                        s = c * t
                        for row in range(rows):
                            x, y = g[row, p], g[row, q]
                            g[row, p], g[row, q] = c * x - s * y, s * x + c * y
                        if vectors:
                            for row in range(k):
                                x, y = w[row, p], w[row, q]
                                w[row, p], w[row, q] = c * x - s * y, s * x + c * y
                cuda.syncthreads()
            sweeps += 1
            busy = rotated[0]
            cuda.syncthreads()
        if tid == 0:
            info[i] = SVD_NOT_CONVERGED if busy != 0 else OK      # still rotating after SWEEPS sweeps
        for j in range(tid, k, nt):
            total = T(0)
            for row in range(rows):
                total += g[row, j] * g[row, j]
            norms[i, j] = math.sqrt(total)


@cuda.jit
def _svd_finish_kernel(work, vecs, norms, scale, out, eps, tall, vectors, info):
    """A thread per singular triplet j: its place in descending order (ties by index), s_j
    scaled back, u_j = g_j/s_j and v_j, signed so that u_j's largest entry is positive. A
    negligible column of Q keeps its direction, unsigned, for _svd_complete_kernel."""
    T = work.dtype.type
    rows, k = work.shape[1], work.shape[2]
    q_at, w_at = (1, 1 + rows) if tall else (1 + k, 1)      # first rows of Q and W in out
    for item in range(cuda.grid(1), work.shape[0] * k, cuda.gridsize(1)):
        i, j = item // k, item % k
        if info[i] != 0:
            continue
        s = norms[i, j]
        rank = 0
        for o in range(k):
            if norms[i, o] > s or (norms[i, o] == s and o < j):
                rank += 1
        out[i, 0, rank] = s * scale[i, 0]
        if vectors:
            inverse = T(1) / s if s > 0 else T(0)
            largest = T(0)          # of u_j: a column of Q if tall, else of W
            for r in range(rows if tall else k):
                u = work[i, r, j] * inverse if tall else vecs[i, r, j]
                if abs(u) > abs(largest):
                    largest = u
            negligible = s * s <= T(2) * (eps * scale[i, 1]) * (eps * scale[i, 1])
            sign = T(-1) if largest < 0 and not (tall and negligible) else T(1)
            for r in range(rows):
                out[i, q_at + r, rank] = sign * (work[i, r, j] * inverse)
            for r in range(k):
                out[i, w_at + r, rank] = sign * vecs[i, r, j]


@cuda.jit
def _svd_complete_kernel(out, norms, scale, eps, tall, info):
    """A thread per matrix: replace the columns of Q whose singular value is negligible (the
    last ones) by Gram-Schmidt (twice) of their direction against all columns before them,
    or, if that leaves less than half of it, of the unit vector e_r whose row r the earlier
    columns cover least (its residual is at least sqrt(1/rows)); then sign u_j if tall."""
    T = out.dtype.type
    k = out.shape[2]
    rows = out.shape[1] - 1 - k
    q_at, w_at = (1, 1 + rows) if tall else (1 + k, 1)
    for i in range(cuda.grid(1), out.shape[0], cuda.gridsize(1)):
        if info[i] != 0:
            continue
        # Twice the sweeps' threshold: a column they left alone must never count as good.
        negligible = T(2) * (eps * scale[i, 1]) * (eps * scale[i, 1])
        good = 0
        for j in range(k):
            if norms[i, j] * norms[i, j] > negligible:
                good += 1
        for c in range(good, k):
            length = T(0)
            for attempt in range(2):
                if attempt == 1:
                    best, least = 0, T(2)
                    for r in range(rows):
                        covered = T(0)
                        for o in range(c):
                            covered += out[i, q_at + r, o] * out[i, q_at + r, o]
                        if covered < least:
                            best, least = r, covered
                    for r in range(rows):
                        out[i, q_at + r, c] = T(1) if r == best else T(0)
                for _ in range(2):
                    for o in range(c):
                        d = T(0)
                        for r in range(rows):
                            d += out[i, q_at + r, o] * out[i, q_at + r, c]
                        for r in range(rows):
                            out[i, q_at + r, c] -= d * out[i, q_at + r, o]
                length = T(0)
                for r in range(rows):
                    length += out[i, q_at + r, c] * out[i, q_at + r, c]
                length = math.sqrt(length)
                if length > T(0.5):
                    break
            largest = T(0)
            for r in range(rows):
                out[i, q_at + r, c] = out[i, q_at + r, c] / length
                if abs(out[i, q_at + r, c]) > abs(largest):
                    largest = out[i, q_at + r, c]
            if tall and largest < 0:
                for r in range(rows):
                    out[i, q_at + r, c] = -out[i, q_at + r, c]
                for r in range(k):
                    out[i, w_at + r, c] = -out[i, w_at + r, c]


def _svd(a, out, vectors):
    batch, m, n = _stack("svd", a)
    k = min(m, n)
    _check("svd", a, (batch, m, n), out, (batch, 1 + m + n, k))
    if batch == 0 or k == 0:
        return
    tall, rows = m >= n, max(m, n)
    work, vecs, scale = _prepare(a, _AS_IS if tall else _TRANSPOSED, rows, k, vectors)
    norms = cuda.device_array((batch, k), a.dtype)
    info = error_per_matrix(batch)
    eps = _eps(a.dtype)
    blocks, threads = matrix_launch(batch, (k + 1) // 2)
    _hestenes_kernel[blocks, threads](work, vecs, norms, scale, eps, bool(vectors), info)
    blocks, threads = linalg_item_launch(batch * k)
    _svd_finish_kernel[blocks, threads](work, vecs, norms, scale, out, eps, tall, bool(vectors),
                                        info)
    if vectors:
        blocks, threads = linalg_item_launch(batch)
        _svd_complete_kernel[blocks, threads](out, norms, scale, eps, tall, info)
    raise_error(info)


def svd(a, out) -> None:
    """a (b, m, n) -> out (b, 1+m+n, k), k = min(m, n): out[i, 0] the singular values,
    descending; out[i, 1:1+m] = U, out[i, 1+m:] = V with a[i] = U diag(s) Vᵀ, each pair of
    columns signed so that u_j's largest entry is positive. Raises LinAlgError("SVD did not
    converge") (inf/NaN input included)."""
    _svd(a, out, True)


def svd_values(a, out) -> None:
    """Row 0 of what `svd` writes: the singular values, descending. The rest of out is untouched."""
    _svd(a, out, False)


# ---------------------------------------------------------------------------------------------
# QR: Householder, as LAPACK's geqr2/org2r (unblocked), one block per matrix. For column j,
# thread 0 forms the reflector H_j = I - tau_j v_j v_jᵀ (dlarfg: v_j[j] = 1, beta = -sign(alpha)
# ‖x‖, tau = 0 where x is already a multiple of e_j) and the threads apply it to the trailing
# columns, a column each; then Q = H_0 ... H_{n-1} I[:, :n] by backward accumulation, a column
# each again. Sums run in a fixed order: deterministic.
# ---------------------------------------------------------------------------------------------

@cuda.jit
def _qr_kernel(a, work, tau, out):
    T = a.dtype.type
    tid, nt = cuda.threadIdx.x, cuda.blockDim.x
    m, n = a.shape[1], a.shape[2]
    for i in range(cuda.blockIdx.x, a.shape[0], cuda.gridDim.x):
        for e in range(tid, m * n, nt):
            work[i, e // n, e % n] = a[i, e // n, e % n]
        cuda.syncthreads()
        for j in range(n):
            if tid == 0:
                alpha = work[i, j, j]
                scale = T(0)                  # the largest |x_r| below the diagonal
                for r in range(j + 1, m):
                    if abs(work[i, r, j]) > scale or work[i, r, j] != work[i, r, j]:
                        scale = abs(work[i, r, j])
                t = T(0)
                if not scale == 0:            # (NaN goes on, and spreads)
                    sigma = T(0)
                    for r in range(j + 1, m):
                        x = work[i, r, j] / scale
                        sigma += x * x
                    big = max(scale, abs(alpha))
                    x, y = alpha / big, scale / big
                    norm = big * math.sqrt(x * x + sigma * y * y)
                    beta = -norm if alpha >= 0 else norm
                    t = (beta - alpha) / beta
                    factor = T(1) / (alpha - beta)
                    for r in range(j + 1, m):
                        work[i, r, j] = work[i, r, j] * factor
                    work[i, j, j] = beta
                tau[i, j] = t
            cuda.syncthreads()
            t = tau[i, j]
            for c in range(j + 1 + tid, n, nt):
                d = work[i, j, c]
                for r in range(j + 1, m):
                    d += work[i, r, j] * work[i, r, c]
                d *= t
                work[i, j, c] -= d
                for r in range(j + 1, m):
                    work[i, r, c] -= d * work[i, r, j]
            cuda.syncthreads()
        # Q, column c of I[:, :n] to start; H_j touches rows >= j of columns >= j only
        for e in range(tid, m * n, nt):
            r, c = e // n, e % n
            out[i, r, c] = T(1) if r == c else T(0)
        cuda.syncthreads()
        for j in range(n - 1, -1, -1):
            t = tau[i, j]
            for c in range(j + tid, n, nt):
                d = out[i, j, c]
                for r in range(j + 1, m):
                    d += work[i, r, j] * out[i, r, c]
                d *= t
                out[i, j, c] -= d
                for r in range(j + 1, m):
                    out[i, r, c] -= d * work[i, r, j]
            cuda.syncthreads()
        # R's rows and Q's columns, signed so that R's diagonal is >= 0
        for c in range(tid, n, nt):
            negative = work[i, c, c] < 0
            for k in range(n):
                value = -work[i, c, k] if negative else work[i, c, k]
                out[i, m + c, k] = value if k >= c else T(0)
            if negative:
                for r in range(m):
                    out[i, r, c] = -out[i, r, c]
        cuda.syncthreads()


def qr(a, out) -> None:
    """a (b, m, n), m >= n -> out (b, m+n, n): out[i, :m] = Q (orthonormal columns), out[i, m:]
    = R (upper triangular, exact zeros below), a[i] = Q R, R's diagonal >= 0. Householder:
    never raises; rank-deficient a gives a zero on R's diagonal and an orthonormal Q."""
    batch, m, n = _stack("qr", a)
    if m < n:
        raise ValueError(f"qr: expected m >= n, got matrices of shape {(m, n)}")
    _check("qr", a, (batch, m, n), out, (batch, m + n, n))
    if batch == 0 or n == 0:
        return
    work = cuda.device_array((batch, m, n), a.dtype)
    tau = cuda.device_array((batch, n), a.dtype)
    blocks, threads = matrix_launch(batch, n)
    _qr_kernel[blocks, threads](a, work, tau, out)


# ---------------------------------------------------------------------------------------------
# Every kernel and the signatures it is compiled for (the PTX test)
# ---------------------------------------------------------------------------------------------

def _signatures(make):
    return [make(t) for t in (types.float64, types.float32)]


_b, _i32 = types.boolean, types.int32[::1]
_3d = lambda t: t[:, :, ::1]        # noqa: E731
_2d = lambda t: t[:, ::1]           # noqa: E731

KERNELS = [
    ("lu_factor", _lu_factor_kernel, _signatures(lambda t: (_3d(t), _3d(t)))),
    ("solve", _solve_kernel, _signatures(lambda t: (_3d(t), _3d(t), _3d(t), _b, _b, _b, _i32))),
    ("lu_scalar", _lu_scalar_kernel, _signatures(lambda t: (_3d(t), t[::1], types.int64))),
    ("cofactor_prepare", _cofactor_prepare_kernel,
     _signatures(lambda t: (_3d(t), _3d(t), _3d(t), _2d(t)))),
    ("cofactor_finish", _cofactor_finish_kernel,
     _signatures(lambda t: (_3d(t), _3d(t), _2d(t), _2d(t)))),
    ("cholesky", _cholesky_kernel, _signatures(lambda t: (_3d(t), _3d(t), _i32))),
    ("prepare", _prepare_kernel,
     _signatures(lambda t: (_3d(t), _3d(t), _3d(t), _2d(t), _2d(t), types.int64, _b))),
    ("jacobi", _jacobi_kernel,
     _signatures(lambda t: (_3d(t), _3d(t), _3d(t), _2d(t), t, _b, _i32))),
    ("eigh_finish", _eigh_finish_kernel,
     _signatures(lambda t: (_3d(t), _3d(t), _2d(t), _3d(t), _b, _i32))),
    ("hestenes", _hestenes_kernel,
     _signatures(lambda t: (_3d(t), _3d(t), _2d(t), _2d(t), t, _b, _i32))),
    ("svd_finish", _svd_finish_kernel,
     _signatures(lambda t: (_3d(t), _3d(t), _2d(t), _2d(t), _3d(t), t, _b, _b, _i32))),
    ("svd_complete", _svd_complete_kernel,
     _signatures(lambda t: (_3d(t), _2d(t), _2d(t), t, _b, _i32))),
    ("qr", _qr_kernel, _signatures(lambda t: (_3d(t), _3d(t), _2d(t), _3d(t)))),
]
