"""LAPACK for generated programs: factorizations and solves that Numba code calls directly.

Why not ``np.linalg`` inside Numba, or ctypes? Numba's ``np.linalg`` covers only part of what
the linear-algebra primitives need (no LU factors to keep, no triangular solve, no batches),
and a ctypes function pointer is a process-specific address baked into the machine code, so a
function holding one cannot be cached. Instead, each routine of SciPy's ``cython_lapack`` /
``cython_blas`` is registered with LLVM under a symbol name (``jitgrad_dgetrf``, ...) when this
module is imported and declared to Numba as an external function of that name: the cached code
refers to the name, and any process that imports this module links it again. It also keeps one
BLAS/LAPACK library per program: Numba's own ``np.dot`` calls SciPy's BLAS too.

Every public function is ``@njit(cache=True)``, takes C-contiguous arrays with the batch
flattened to the leading axis (matrices are ``(batch, m, n)``), writes into a preallocated
output, and works for float64 and float32 alike: Numba compiles one specialisation per dtype,
and `_call` picks the ``d``/``s`` routine while typing it. The layouts are those of the NumPy
references in :mod:`jitgrad.ops._linalg_ref`.

Layout trick used throughout: LAPACK is column-major, so a C-ordered n-by-n buffer holding
``x`` is, to LAPACK, ``xᵀ``. Rather than transposing, each section says which of the two it
works with.
"""
import ctypes

import llvmlite.binding as llvm
import numpy as np
from numba import njit, types
from numba.core import cgutils
from numba.core.errors import TypingError
from numba.extending import intrinsic, overload
from numpy.linalg import LinAlgError
from scipy.linalg import cython_blas, cython_lapack

# ---------------------------------------------------------------------------------------------
# Binding: SciPy's routines as named external symbols
# ---------------------------------------------------------------------------------------------

_capsule_name = ctypes.PYFUNCTYPE(ctypes.c_char_p, ctypes.py_object)(
    ("PyCapsule_GetName", ctypes.pythonapi))
_capsule_pointer = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.py_object, ctypes.c_char_p)(
    ("PyCapsule_GetPointer", ctypes.pythonapi))

# Fortran passes everything by reference; SciPy's capsules name the C prototype, e.g.
# "void (int *, int *, __pyx_t_5scipy_6linalg_13cython_lapack_d *, int *, int *, int *)".
_POINTER_TYPES = {"char": types.CPointer(types.uint8), "int": types.CPointer(types.intc),
                  "d": types.CPointer(types.float64), "s": types.CPointer(types.float32)}


def _bind(module, routine: str) -> types.ExternalFunction:
    """Register `routine` of a SciPy Cython module as symbol ``jitgrad_<routine>`` and declare
    it to Numba with the argument types read off its capsule's C prototype."""
    capsule = module.__pyx_capi__[routine]
    prototype = _capsule_name(capsule)
    text = prototype.decode()
    if not (text.startswith("void (") and text.endswith(")")):
        raise ImportError(f"unexpected prototype of SciPy's {routine}: {text}")
    arguments = []
    for argument in text[len("void ("):-1].split(", "):
        base = argument.removesuffix(" *").rsplit("_", 1)[-1]   # "__pyx_..._d *" -> "d"
        if not argument.endswith(" *") or base not in _POINTER_TYPES:
            raise ImportError(f"unexpected argument {argument!r} of SciPy's {routine}")
        arguments.append(_POINTER_TYPES[base])
    symbol = f"jitgrad_{routine}"
    llvm.add_symbol(symbol, _capsule_pointer(capsule, prototype))
    return types.ExternalFunction(symbol, types.void(*arguments))


_ROUTINES = {prefix + name: _bind(module, prefix + name)
             for module, names in ((cython_lapack, ("getrf", "getrs", "potrf", "syevd", "gesdd", "geqrf", "orgqr")),
                                   (cython_blas, ("trsm",)))
             for name in names for prefix in "ds"}

# Character arguments, passed as a pointer to one byte.
_N, _T, _U, _L, _R, _V, _S = (ord(c) for c in "NTULRVS")


@intrinsic
def _byref(typingctx, value):
    """A pointer to a copy of `value` on the stack, for Fortran's by-reference scalars (and to
    read back an output such as ``info`` with ``ptr[0]``)."""
    def codegen(context, builder, signature, arguments):
        return cgutils.alloca_once_value(builder, arguments[0])
    return types.CPointer(value)(value), codegen


def _call(routine, *arguments):
    """``_call("getrf", ...)`` calls dgetrf or sgetrf, after the first floating-point argument."""
    raise NotImplementedError("only callable from Numba code")


@overload(_call, prefer_literal=True)
def _call_typed(routine, *arguments):
    if not isinstance(routine, types.StringLiteral):
        raise TypingError("_call needs the routine's name as a constant string")
    floats = [a.dtype for a in arguments if getattr(a, "dtype", None) in (types.float64, types.float32)]
    if not floats:
        raise TypingError(f"{routine.literal_value}: no floating-point argument")
    function = _ROUTINES[("d" if floats[0] == types.float64 else "s") + routine.literal_value]

    def call(routine, *arguments):
        function(*arguments)
    return call


def _contiguous(*arrays):
    """Check, while compiling, that the arrays handed to LAPACK are C-contiguous: it gets their
    data pointers only, so any other layout would be read wrongly."""
    raise NotImplementedError("only callable from Numba code")


@overload(_contiguous)
def _contiguous_typed(*arrays):
    for array in arrays:
        if array.layout != "C":
            raise TypingError(f"LAPACK kernels need C-contiguous arrays, got {array}")
    return lambda *arrays: None


@njit(cache=True)
def _lwork(queried, minimum):
    """A workspace size from a size query (returned as a float), never below the documented minimum."""
    return max(int(queried), minimum)


# ---------------------------------------------------------------------------------------------
# Thin wrappers: arrays and Python integers in, LAPACK's ``info`` out
# ---------------------------------------------------------------------------------------------

@njit(cache=True)
def _getrf(n, a, ipiv):
    """LU-factor the n-by-n column-major matrix at `a` in place (pivots to `ipiv`, 1-based)."""
    _contiguous(a, ipiv)
    info = _byref(np.intc(0))
    _call("getrf", _byref(np.intc(n)), _byref(np.intc(n)), a.ctypes, _byref(np.intc(n)),
          ipiv.ctypes, info)
    return info[0]


@njit(cache=True)
def _getrs(trans, n, nrhs, lu, ipiv, b):
    """Solve op(M) X = B in place of the column-major n-by-nrhs `b`, `lu` and `ipiv` from getrf."""
    _contiguous(lu, ipiv, b)
    info = _byref(np.intc(0))
    _call("getrs", _byref(np.uint8(trans)), _byref(np.intc(n)), _byref(np.intc(nrhs)), lu.ctypes,
          _byref(np.intc(n)), ipiv.ctypes, b.ctypes, _byref(np.intc(n)), info)
    return info[0]


@njit(cache=True)
def _potrf(uplo, n, a):
    """Cholesky-factor the `uplo` triangle of the column-major n-by-n `a` in place."""
    _contiguous(a)
    info = _byref(np.intc(0))
    _call("potrf", _byref(np.uint8(uplo)), _byref(np.intc(n)), a.ctypes, _byref(np.intc(n)), info)
    return info[0]


@njit(cache=True)
def _syevd(jobz, n, a, w, work, lwork, iwork, liwork):
    """Eigenvalues (to `w`, ascending) and, if jobz is 'V', eigenvectors (columns of `a`, in
    place) of the symmetric n-by-n `a`, from its lower triangle. lwork = liwork = -1 only
    queries sizes."""
    _contiguous(a, w, work, iwork)
    info = _byref(np.intc(0))
    _call("syevd", _byref(np.uint8(jobz)), _byref(np.uint8(_L)), _byref(np.intc(n)), a.ctypes,
          _byref(np.intc(n)), w.ctypes, work.ctypes, _byref(np.intc(lwork)), iwork.ctypes,
          _byref(np.intc(liwork)), info)
    return info[0]


@njit(cache=True)
def _gesdd(jobz, m, n, a, s, u, ldu, vt, ldvt, work, lwork, iwork):
    """Thin SVD of the column-major m-by-n `a` (destroyed): a = U diag(s) VT, with U m-by-k at
    `u` and VT k-by-n at `vt`, k = min(m, n) (jobz 'S'), or the singular values alone (jobz
    'N'). lwork = -1 only queries the size."""
    _contiguous(a, s, u, vt, work, iwork)
    info = _byref(np.intc(0))
    _call("gesdd", _byref(np.uint8(jobz)), _byref(np.intc(m)), _byref(np.intc(n)), a.ctypes,
          _byref(np.intc(m)), s.ctypes, u.ctypes, _byref(np.intc(ldu)), vt.ctypes,
          _byref(np.intc(ldvt)), work.ctypes, _byref(np.intc(lwork)), iwork.ctypes, info)
    return info[0]


@njit(cache=True)
def _geqrf(m, n, a, tau, work, lwork):
    """Householder QR of the column-major m-by-n `a` in place: R in its upper triangle, the
    reflectors below it and in `tau`. lwork = -1 only queries the size."""
    _contiguous(a, tau, work)
    info = _byref(np.intc(0))
    _call("geqrf", _byref(np.intc(m)), _byref(np.intc(n)), a.ctypes, _byref(np.intc(m)),
          tau.ctypes, work.ctypes, _byref(np.intc(lwork)), info)
    return info[0]


@njit(cache=True)
def _orgqr(m, n, a, tau, work, lwork):
    """The m-by-n Q of geqrf's reflectors (in the column-major `a`, overwritten by Q)."""
    _contiguous(a, tau, work)
    info = _byref(np.intc(0))
    _call("orgqr", _byref(np.intc(m)), _byref(np.intc(n)), _byref(np.intc(n)), a.ctypes,
          _byref(np.intc(m)), tau.ctypes, work.ctypes, _byref(np.intc(lwork)), info)
    return info[0]


@njit(cache=True)
def _trsm(side, uplo, transa, m, n, a, lda, b, ldb):
    """BLAS trsm, non-unit diagonal, alpha 1: B := op(A)⁻¹ B (side L) or B op(A)⁻¹ (side R),
    B m-by-n. Unlike LAPACK's trtrs it does not stop at a zero diagonal: that gives inf/nan."""
    _contiguous(a, b)
    _call("trsm", _byref(np.uint8(side)), _byref(np.uint8(uplo)), _byref(np.uint8(transa)),
          _byref(np.uint8(_N)), _byref(np.intc(m)), _byref(np.intc(n)), _byref(a.dtype.type(1)),
          a.ctypes, _byref(np.intc(lda)), b.ctypes, _byref(np.intc(ldb)))


@njit(cache=True)
def _copy(source, target):
    """target[:] = source for 2-D arrays, as a loop (which Numba compiles faster)."""
    for r in range(source.shape[0]):
        for c in range(source.shape[1]):
            target[r, c] = source[r, c]


@njit(cache=True)
def _negate_column(v, j):
    for r in range(v.shape[0]):
        v[r, j] = -v[r, j]


@njit(cache=True)
def _largest_is_negative(v, j):
    """Whether column j's entry of largest magnitude (the first one on ties) is negative: the
    sign convention that makes eigenvectors and singular vectors unique."""
    best = 0
    for r in range(1, v.shape[0]):
        if abs(v[r, j]) > abs(v[best, j]):
            best = r
    return v[best, j] < 0


# ---------------------------------------------------------------------------------------------
# LU: f[i, :n] holds getrf's factors of a[i]ᵀ (what LAPACK sees in a[i]'s C-ordered copy),
# f[i, n] the 1-based pivots as floats
# ---------------------------------------------------------------------------------------------

@njit(cache=True)
def lu_factor(a, f):
    """a (b, n, n) -> f (b, n+1, n). Never raises: a singular matrix leaves a zero on U's
    diagonal, which lu_solve reports and the determinants turn into 0."""
    n = a.shape[1]
    ipiv = np.empty(n, np.intc)
    for i in range(a.shape[0]):
        _copy(a[i], f[i])
        if n > 0:
            _getrf(n, f[i], ipiv)       # info > 0 only flags the zero pivot
        for j in range(n):
            f[i, n, j] = ipiv[j]


@njit(cache=True)
def lu_solve(f, b, x, trans):
    """x[i] = a[i]⁻¹ b[i], or a[i]⁻ᵀ b[i] if `trans`; b, x (batch, n, k). Raises LinAlgError on
    an exact zero pivot. The factors are of aᵀ, so solving with a is getrs's 'T'."""
    n, k = b.shape[1], b.shape[2]
    ipiv = np.empty(n, np.intc)
    work = np.empty((k, n), f.dtype)    # C-ordered (k, n) = column-major n-by-k right-hand sides
    op = _N if trans else _T
    for i in range(f.shape[0]):
        for j in range(n):
            if f[i, j, j] == 0:
                raise LinAlgError("Singular matrix")
            ipiv[j] = np.intc(f[i, n, j])
        if n == 0 or k == 0:
            continue
        _copy(b[i], work.T)
        _getrs(op, n, k, f[i], ipiv, work)
        _copy(work.T, x[i])


@njit(cache=True)
def _parity(f, i):
    """(-1) ** (number of row swaps) of factorization i, in f's dtype."""
    n = f.shape[2]
    p = f.dtype.type(1)
    for j in range(n):
        if f[i, n, j] != j + 1:
            p = -p
    return p


@njit(cache=True)
def lu_det(f, out):
    """out (b,) = det a[i] = parity of the pivots times the product of U's diagonal."""
    for i in range(f.shape[0]):
        d = _parity(f, i)
        for j in range(f.shape[2]):
            d *= f[i, j, j]
        out[i] = d


@njit(cache=True)
def lu_sign(f, out):
    """out (b,) = sign of det a[i]: +1, -1, 0 if singular (NaN if a pivot is NaN)."""
    for i in range(f.shape[0]):
        s = _parity(f, i)
        for j in range(f.shape[2]):
            d = f[i, j, j]
            if d < 0:
                s = -s
            elif not d > 0:
                s *= d                  # a zero pivot gives 0, a NaN one NaN
        out[i] = s


@njit(cache=True)
def lu_logabsdet(f, out):
    """out (b,) = log |det a[i]| = sum of log |U_jj| (-inf if singular)."""
    for i in range(f.shape[0]):
        total = f.dtype.type(0)
        for j in range(f.shape[2]):
            total += np.log(np.abs(f[i, j, j]))
        out[i] = total


@njit(cache=True)
def lu_cofactor(f, out):
    """out (b, n, n) = the cofactor matrix adj(a[i])ᵀ = ∂det(a[i])/∂a[i], finite and exact at
    singular matrices too (the formula is the reference's): the factors are copied with the
    smallest pivot u_kk replaced by s = max |u_jj|, one getrs against the identity gives W =
    M'⁻¹ (M = aᵀ), and out = c (u_kk W + (1 - u_kk/s) x rᵀ), x = s U'⁻¹ e_k by back
    substitution, r = s W[k]. As costly as det(a) a⁻ᵀ, never divides by u_kk. Never raises."""
    n = f.shape[2]
    ipiv = np.empty(n, np.intc)
    g = np.empty((n, n), f.dtype)
    x = np.empty(n, f.dtype)
    row = np.empty(n, f.dtype)
    for i in range(f.shape[0]):
        if n == 0:
            continue
        k, smallest, s = 0, np.abs(f[i, 0, 0]), np.abs(f[i, 0, 0])
        for j in range(1, n):
            if np.abs(f[i, j, j]) < smallest:
                k, smallest = j, np.abs(f[i, j, j])
            if np.abs(f[i, j, j]) > s:
                s = np.abs(f[i, j, j])
        if s == 0:
            s = f.dtype.type(1)
        c = _parity(f, i)
        for j in range(n):
            if j != k:
                c *= f[i, j, j]
        if c == 0:      # two zero pivots: rank n - 2 at most, adj = 0
            out[i] = 0
            continue
        u = f[i, k, k]
        _copy(f[i, :n], g)
        g[k, k] = s
        for j in range(n):
            ipiv[j] = np.intc(f[i, n, j])
        for r in range(n):      # getrs 'T' on the C-ordered identity: M'⁻ᵀ, read in C order M'⁻¹
            for q in range(n):
                out[i, r, q] = 1 if r == q else 0
        _getrs(_T, n, n, g, ipiv, out[i])
        # x = s U'⁻¹ e_k (U'[r, c] = g[c, r] for r <= c): x_k = 1, x_r = 0 below k
        for r in range(n):
            x[r] = 0
        x[k] = 1
        for r in range(k - 1, -1, -1):
            total = f.dtype.type(0)
            for q in range(r + 1, k + 1):
                total += g[q, r] * x[q]
            x[r] = -total / g[r, r]
        weight = (1 - u / s) * s
        for q in range(n):
            row[q] = weight * out[i, k, q]
        for r in range(n):
            for q in range(n):
                out[i, r, q] = c * (u * out[i, r, q] + x[r] * row[q])


# ---------------------------------------------------------------------------------------------
# Cholesky: s = (a + aᵀ)/2 = l lᵀ. l's C-ordered lower triangle is LAPACK's upper one, so
# potrf('U') factors s = UᵀU in place, and U read in C order is l.
# ---------------------------------------------------------------------------------------------

@njit(cache=True)
def cholesky(a, l):
    """a, l (b, n, n): l[i] lower triangular (strict upper exactly 0) with l lᵀ = (a + aᵀ)/2.
    Raises LinAlgError if that is not positive definite."""
    n = a.shape[1]
    for i in range(a.shape[0]):
        for r in range(n):
            for c in range(n):
                l[i, r, c] = 0.5 * (a[i, r, c] + a[i, c, r]) if c <= r else 0
        if n > 0 and _potrf(_U, n, l[i]) > 0:
            raise LinAlgError("Matrix is not positive definite")


# ---------------------------------------------------------------------------------------------
# Triangular solve: op(T) X = B is Xᵀ op(T)ᵀ = Bᵀ, and Xᵀ, Bᵀ, tᵀ are what LAPACK sees in the
# C-ordered x, b, t. So it is one right-side trsm on x, no transposed copies; t's lower
# triangle is the upper one of tᵀ.
# ---------------------------------------------------------------------------------------------

@njit(cache=True)
def triangular_solve(t, b, x, lower, trans):
    """x[i] = op(T)⁻¹ b[i], T the lower (or upper) triangle of t[i] with its diagonal, op(T) =
    Tᵀ if `trans`; t (batch, n, n), b, x (batch, n, k). A zero diagonal gives inf/nan."""
    n, k = b.shape[1], b.shape[2]
    uplo = _U if lower else _L
    op = _T if trans else _N
    for i in range(t.shape[0]):
        _copy(b[i], x[i])
        if n > 0 and k > 0:
            _trsm(_R, uplo, op, k, n, t[i], n, x[i], k)


# ---------------------------------------------------------------------------------------------
# Symmetric eigendecomposition: syevd leaves the eigenvectors in the columns of its
# column-major matrix, i.e. the rows of the C-ordered buffer, transposed into out[i, 1:].
# ---------------------------------------------------------------------------------------------

@njit(cache=True)
def _eigh(a, out, vectors):
    """`eigh`, or with `vectors` False only its row 0 (syevd skips the vectors: about half
    the work)."""
    n = a.shape[1]
    if a.shape[0] == 0 or n == 0:
        return
    jobz = _V if vectors else _N
    s = np.empty((n, n), a.dtype)
    work, iwork = np.empty(1, a.dtype), np.empty(1, np.intc)
    _syevd(jobz, n, s, out[0, 0], work, -1, iwork, -1)
    work = np.empty(_lwork(work[0], 1 + 6 * n + 2 * n * n if vectors else 2 * n + 1), a.dtype)
    iwork = np.empty(_lwork(iwork[0], 3 + 5 * n if vectors else 1), np.intc)
    for i in range(a.shape[0]):
        for r in range(n):
            for c in range(r + 1):
                s[r, c] = s[c, r] = 0.5 * (a[i, r, c] + a[i, c, r])
        if _syevd(jobz, n, s, out[i, 0], work, work.size, iwork, iwork.size) != 0:
            raise LinAlgError("Eigenvalues did not converge")
        if vectors:
            v = out[i, 1:]
            _copy(s.T, v)
            for j in range(n):
                if _largest_is_negative(v, j):
                    _negate_column(v, j)


@njit(cache=True)
def eigh(a, out):
    """a (b, n, n) -> out (b, n+1, n): out[i, 0] the eigenvalues of s = (a + aᵀ)/2, ascending;
    out[i, 1:] = V, column j the unit eigenvector of eigenvalue j, its largest entry positive.
    Raises LinAlgError if LAPACK does not converge."""
    _eigh(a, out, True)


@njit(cache=True)
def eigh_values(a, out):
    """Row 0 of what `eigh` writes, the eigenvalues; the rest of `out` is left unwritten (for
    a program that reads nothing else)."""
    _eigh(a, out, False)


# ---------------------------------------------------------------------------------------------
# SVD: gesdd of what LAPACK sees in a C-ordered copy of a (aᵀ = U' S VT') gives a = VT'ᵀ S U'ᵀ.
# VT' (column-major k-by-m) read in C order is the m-by-k U of a, so it goes straight into
# out[i, 1:1+m]; U' (column-major n-by-k) is Vᵀ in C order, transposed into place.
# ---------------------------------------------------------------------------------------------

@njit(cache=True)
def _svd(a, out, vectors):
    """`svd`, or with `vectors` False only its row 0 (gesdd with jobz 'N')."""
    m, n = a.shape[1], a.shape[2]
    k = min(m, n)
    if a.shape[0] == 0 or k == 0:
        return
    copy = np.empty((m, n), a.dtype)          # gesdd destroys its input
    unused = np.empty((1, 1), a.dtype)        # u and vt are not referenced with jobz 'N'
    v_t = np.empty((k, n), a.dtype) if vectors else unused
    jobz, ldu, ldvt = (_S, k, n) if vectors else (_N, 1, 1)
    work, iwork = np.empty(1, a.dtype), np.empty(8 * k, np.intc)
    _gesdd(jobz, n, m, copy, out[0, 0], v_t, ldvt, out[0, 1:1 + m] if vectors else unused, ldu,
           work, -1, iwork)
    minimum = 4 * k * k + 6 * k + max(m, n) if vectors else 3 * k + max(max(m, n), 7 * k)
    work = np.empty(_lwork(work[0], minimum), a.dtype)
    for i in range(a.shape[0]):
        _copy(a[i], copy)
        u = out[i, 1:1 + m] if vectors else unused
        if _gesdd(jobz, n, m, copy, out[i, 0], v_t, ldvt, u, ldu, work, work.size, iwork) != 0:
            raise LinAlgError("SVD did not converge")
        if vectors:
            v = out[i, 1 + m:]
            _copy(v_t.T, v)
            for j in range(k):
                if _largest_is_negative(u, j):
                    _negate_column(u, j)
                    _negate_column(v, j)


@njit(cache=True)
def svd(a, out):
    """a (b, m, n) -> out (b, 1+m+n, k), k = min(m, n): out[i, 0] the singular values,
    descending; out[i, 1:1+m] = U, out[i, 1+m:] = V with a[i] = U diag(s) Vᵀ, each pair of
    columns signed so that u_j's largest entry is positive. Raises LinAlgError if LAPACK does
    not converge (NaN input included)."""
    _svd(a, out, True)


@njit(cache=True)
def svd_values(a, out):
    """Row 0 of what `svd` writes, the singular values; the rest of `out` is left unwritten."""
    _svd(a, out, False)


# ---------------------------------------------------------------------------------------------
# QR: a C-ordered (n, m) buffer holding aᵀ is, to LAPACK, the column-major m-by-n a. geqrf
# leaves R[r, c] = buffer[c, r] (r <= c); orgqr then turns the buffer into Q the same way.
# ---------------------------------------------------------------------------------------------

@njit(cache=True)
def qr(a, out):
    """a (b, m, n), m >= n -> out (b, m+n, n): out[i, :m] = Q (orthonormal columns),
    out[i, m:] = R (upper triangular, exact zeros below), a[i] = Q R, each column of Q and row
    of R signed so that R's diagonal is >= 0. Householder (geqrf, orgqr): never raises; a
    rank-deficient a gives a zero on R's diagonal and an orthonormal Q all the same."""
    m, n = a.shape[1], a.shape[2]
    if a.shape[0] == 0 or n == 0:
        return
    buf = np.empty((n, m), a.dtype)
    tau = np.empty(n, a.dtype)
    work = np.empty(1, a.dtype)
    _geqrf(m, n, buf, tau, work, -1)
    size = _lwork(work[0], n)
    _orgqr(m, n, buf, tau, work, -1)
    work = np.empty(max(size, _lwork(work[0], n)), a.dtype)
    negative = np.empty(n, np.bool_)
    for i in range(a.shape[0]):
        _copy(a[i], buf.T)
        _geqrf(m, n, buf, tau, work, work.size)
        for r in range(n):
            negative[r] = buf[r, r] < 0
            for c in range(n):
                value = -buf[c, r] if negative[r] else buf[c, r]
                out[i, m + r, c] = value if c >= r else a.dtype.type(0)
        _orgqr(m, n, buf, tau, work, work.size)
        for c in range(n):
            for r in range(m):
                out[i, r, c] = -buf[c, r] if negative[c] else buf[c, r]
