"""The compiled LAPACK kernels (jitgrad.backends.lapack) against their NumPy references
(jitgrad.ops._linalg_ref), and the references against NumPy/SciPy themselves."""
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import scipy.linalg
from numba.core.errors import TypingError

from jitgrad.backends import lapack
from jitgrad.ops import _linalg_ref as ref

DTYPES = [np.float64, np.float32]
BATCHES = [0, 1, 3]
SIZES = [1, 2, 5]


def close(actual, expected, dtype=None):
    dtype = dtype or expected.dtype
    rtol, atol = (1e-10, 1e-12) if dtype == np.float64 else (2e-4, 2e-5)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)


def orthogonal(rng, batch, n):
    return np.linalg.qr(rng.standard_normal((batch, n, n)))[0]


def matrix(rng, batch, m, n, dtype):
    """Random (batch, m, n), singular values spread over [1, 3]: well conditioned, distinct."""
    k = min(m, n)
    u, v = orthogonal(rng, batch, m)[..., :k], orthogonal(rng, batch, n)[..., :k]
    return ((u * np.linspace(3, 1, k)) @ v.mT).astype(dtype)


def symmetric(rng, batch, n, dtype, spectrum):
    """Q diag(spectrum) Qᵀ plus an antisymmetric part, which the kernels must ignore."""
    q = orthogonal(rng, batch, n)
    noise = rng.standard_normal((batch, n, n))
    return ((q * spectrum) @ q.mT + noise - noise.mT).astype(dtype)


def sym(a):
    return (a + a.mT) / 2


# Callers allocating the outputs of the compiled kernels -------------------------------------

def lu_factor(a):
    n = a.shape[-1]
    f = np.empty((a.shape[0], n + 1, n), a.dtype)
    lapack.lu_factor(a, f)
    return f


def per_matrix(kernel, f):
    out = np.empty(f.shape[0], f.dtype)
    kernel(f, out)
    return out


def lu_solve(f, b, trans):
    x = np.empty_like(b)
    lapack.lu_solve(f, b, x, trans)
    return x


def cholesky(a):
    l = np.empty_like(a)
    lapack.cholesky(a, l)
    return l


def triangular_solve(t, b, lower, trans):
    x = np.empty_like(b)
    lapack.triangular_solve(t, b, x, lower, trans)
    return x


def eigh(a):
    out = np.empty((a.shape[0], a.shape[1] + 1, a.shape[1]), a.dtype)
    lapack.eigh(a, out)
    return out


def svd(a):
    m, n = a.shape[1:]
    out = np.empty((a.shape[0], 1 + m + n, min(m, n)), a.dtype)
    lapack.svd(a, out)
    return out


def assert_gauge(u):
    """Each column's first largest-magnitude entry is positive."""
    if u.size:
        largest = np.take_along_axis(u, np.argmax(np.abs(u), axis=-2)[..., None, :], axis=-2)
        assert np.all(largest > 0)


# LU ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("n", SIZES)
def test_lu_factor_determinants_and_solves_match_the_reference(dtype, batch, n):
    rng = np.random.default_rng(n + 10 * batch)
    a = matrix(rng, batch, n, n, dtype)
    f = lu_factor(a)
    assert f.dtype == ref.lu_factor(a).dtype == dtype
    close(f, ref.lu_factor(a))
    for name in ("lu_det", "lu_sign", "lu_logabsdet"):
        expected = getattr(ref, name)(f)
        assert expected.dtype == dtype
        close(per_matrix(getattr(lapack, name), f), expected)
    if batch:
        sign, logabsdet = np.linalg.slogdet(a)
        close(per_matrix(lapack.lu_det, f), np.linalg.det(a))
        close(per_matrix(lapack.lu_sign, f), sign)
        close(per_matrix(lapack.lu_logabsdet, f), logabsdet)
    for k in (1, 4):
        b = rng.standard_normal((batch, n, k)).astype(dtype)
        before = b.copy()
        for trans in (False, True):
            x = lu_solve(f, b, trans)
            expected = ref.lu_solve(f, b, trans)
            assert expected.dtype == dtype
            close(x, expected)
            if batch:
                close(x, np.linalg.solve(a.mT if trans else a, b).astype(dtype), dtype)
        np.testing.assert_array_equal(b, before)


def test_references_agree_with_numpy_with_any_batch_dims():
    rng = np.random.default_rng(0)
    a = matrix(rng, 6, 4, 4, np.float64).reshape(2, 3, 4, 4)
    b = rng.standard_normal((2, 3, 4, 2))
    f = ref.lu_factor(a)
    sign, logabsdet = np.linalg.slogdet(a)
    close(ref.lu_det(f), np.linalg.det(a))
    close(ref.lu_sign(f), sign)
    close(ref.lu_logabsdet(f), logabsdet)
    close(ref.lu_solve(f, b, False), np.linalg.solve(a, b))
    close(ref.lu_solve(f, b, True), np.linalg.solve(a.mT, b))
    identity = np.broadcast_to(np.eye(4), a.shape)
    close(ref.lu_solve(f, identity, False), np.linalg.inv(a))
    # the compiled kernels take the batch flattened: same numbers
    close(lu_factor(a.reshape(6, 4, 4)).reshape(f.shape), f)


@pytest.mark.parametrize("dtype", DTYPES)
def test_singular_matrices(dtype):
    a = np.array([[[1, 2], [2, 4]], [[0, 0], [0, 0]]], dtype)    # U gets an exact zero pivot
    f = lu_factor(a)
    close(f, ref.lu_factor(a))
    for name in ("lu_det", "lu_sign"):
        np.testing.assert_array_equal(per_matrix(getattr(lapack, name), f), 0)
        np.testing.assert_array_equal(getattr(ref, name)(f), 0)
    for logabsdet in (per_matrix(lapack.lu_logabsdet, f), ref.lu_logabsdet(f)):
        np.testing.assert_array_equal(logabsdet, -np.inf)
    b = np.ones((2, 2, 1), dtype)
    for trans in (False, True):
        with pytest.raises(np.linalg.LinAlgError, match="Singular matrix"):
            lu_solve(f, b, trans)
        with pytest.raises(np.linalg.LinAlgError, match="Singular matrix"):
            ref.lu_solve(f, b, trans)


def lu_cofactor(f):
    out = np.full(f.shape[:-2] + (f.shape[-1],) * 2, np.nan, f.dtype)
    lapack.lu_cofactor(f, out)
    return out


def cofactor_expansion(a):
    """C_ij = (-1)^(i+j) M_ij by NumPy determinants of the minors: the independent oracle."""
    n = a.shape[-1]
    out = np.empty(a.shape, np.float64)
    for i in range(n):
        for j in range(n):
            minor = np.delete(np.delete(a.astype(np.float64), i, -2), j, -1)
            out[..., i, j] = (-1) ** (i + j) * (np.linalg.det(minor) if n > 1 else 1.0)
    return out


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("n", SIZES + [4])
def test_lu_cofactor_matches_the_reference_and_cofactor_expansion_at_every_corank(dtype, batch, n):
    rng = np.random.default_rng(n + 10 * batch)
    for corank in range(n + 1):
        r = n - corank      # a product of random factors: rank r exactly (up to rounding)
        a = (rng.standard_normal((batch, n, r)) @ rng.standard_normal((batch, r, n))).astype(dtype)
        f = lu_factor(a)
        got, expected = lu_cofactor(f), ref.lu_cofactor(f)
        assert expected.dtype == dtype
        unit = max(1.0, np.abs(a).max(initial=0) * n) ** (n - 1)
        np.testing.assert_allclose(got, expected, rtol=0, atol=(1e-13 if dtype == np.float64 else 1e-5) * unit)
        np.testing.assert_allclose(got, cofactor_expansion(a), rtol=0,
                                   atol=(1e-13 if dtype == np.float64 else 1e-5) * unit, err_msg=f"corank {corank}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_lu_cofactor_at_exact_zero_pivots(dtype):
    """A zero pivot first, last, two of them, the zero matrix: exact, never raises; and the
    well-conditioned case is det(a) a⁻ᵀ."""
    a = np.array([[[1, 2, 3], [2, 4, 6], [0, 1, 1]], [[0, 1, 2], [0, 3, 4], [0, 5, 7]],
                  [[0, 1, 0], [0, 0, 1], [0, 0, 0]], [[1, 1, 1], [1, 1, 1], [1, 1, 1]],
                  np.zeros((3, 3))], dtype)
    f = lu_factor(a)
    assert np.count_nonzero(np.diagonal(f[:, :3], axis1=1, axis2=2) == 0) >= 6
    for got in (lu_cofactor(f), ref.lu_cofactor(f)):
        np.testing.assert_allclose(got, cofactor_expansion(a), rtol=0, atol=1e-6)
        np.testing.assert_array_equal(got[3:], 0)
    for z in (lu_cofactor(lu_factor(np.zeros((2, 1, 1), dtype))), ref.lu_cofactor(ref.lu_factor(np.zeros((1, 1))))):
        np.testing.assert_array_equal(z, 1)
    w = matrix(np.random.default_rng(1), 3, 4, 4, dtype)
    close(lu_cofactor(lu_factor(w)), (np.linalg.det(w)[:, None, None] * np.linalg.inv(w).mT).astype(dtype))


# Cholesky, triangular solve ------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("n", SIZES)
def test_cholesky_factors_the_symmetric_part(dtype, batch, n):
    a = symmetric(np.random.default_rng(n + 10 * batch), batch, n, dtype, np.linspace(1, 3, n))
    l = cholesky(a)
    expected = ref.cholesky(a)
    assert expected.dtype == dtype
    close(l, expected)
    assert np.all(np.triu(l, 1) == 0)
    close(l @ l.mT, sym(a))


@pytest.mark.parametrize("dtype", DTYPES)
def test_cholesky_of_a_matrix_that_is_not_positive_definite_raises(dtype):
    a = symmetric(np.random.default_rng(1), 2, 3, dtype, np.array([1.0, -1.0, 2.0]))
    with pytest.raises(np.linalg.LinAlgError, match="not positive definite"):
        cholesky(a)
    with pytest.raises(np.linalg.LinAlgError):
        ref.cholesky(a)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lower", [True, False])
@pytest.mark.parametrize("trans", [False, True])
def test_triangular_solve_reads_one_triangle(dtype, lower, trans):
    rng = np.random.default_rng(2)
    for batch in BATCHES:
        for n in SIZES:
            for k in (1, 4):
                t = (rng.standard_normal((batch, n, n)) / n + 2 * np.eye(n)).astype(dtype)
                b = rng.standard_normal((batch, n, k)).astype(dtype)
                x = triangular_solve(t, b, lower, trans)
                expected = ref.triangular_solve(t, b, lower, trans)
                assert expected.dtype == dtype
                close(x, expected)
                for i in range(batch):
                    expected = scipy.linalg.solve_triangular(t[i], b[i], trans=int(trans), lower=lower)
                    close(x[i], expected)


@pytest.mark.parametrize("lower", [True, False])
def test_triangular_solve_with_a_zero_diagonal_gives_inf_or_nan(lower):
    t = np.array([[[1.0, 2.0], [3.0, 0.0]]])
    b = np.ones((1, 2, 1))
    for x in (triangular_solve(t, b, lower, False), ref.triangular_solve(t, b, lower, False)):
        assert not np.all(np.isfinite(x))


# Eigendecomposition, SVD ---------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("n", SIZES)
def test_eigh_decomposes_the_symmetric_part(dtype, batch, n):
    a = symmetric(np.random.default_rng(n + 10 * batch), batch, n, dtype, np.linspace(-2, 3, n))
    out = eigh(a)
    expected = ref.eigh(a)
    assert expected.dtype == dtype
    close(out, expected)
    w, v = out[:, 0], out[:, 1:]
    assert np.all(np.diff(w, axis=-1) > 0)
    close(v * w[:, None, :] @ v.mT, sym(a))
    close(v.mT @ v, np.broadcast_to(np.eye(n, dtype=dtype), v.shape))
    assert_gauge(v)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("shape", [(1, 1), (2, 2), (5, 5), (5, 3), (3, 5)])
def test_svd_square_tall_and_wide(dtype, batch, shape):
    m, n = shape
    a = matrix(np.random.default_rng(m + 10 * n + 100 * batch), batch, m, n, dtype)
    out = svd(a)
    expected = ref.svd(a)
    assert expected.dtype == dtype
    close(out, expected)
    s, u, v = out[:, 0], out[:, 1:1 + m], out[:, 1 + m:]
    assert np.all(np.diff(s, axis=-1) < 0)
    close(u * s[:, None, :] @ v.mT, a)
    assert_gauge(u)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(5, 5), (5, 3), (3, 5)])
def test_values_only_variants_write_row_0_as_the_full_ones_do(dtype, shape):
    a = matrix(np.random.default_rng(7), 3, *shape, dtype)
    k = min(shape)
    out = np.full((3, 1 + sum(shape), k), np.nan, dtype)
    lapack.svd_values(a, out)
    close(out[:, 0], ref.svd(a)[:, 0])
    square = a[:, :k, :k].copy()
    out = np.full((3, k + 1, k), np.nan, dtype)
    lapack.eigh_values(square, out)
    close(out[:, 0], ref.eigh(square)[:, 0])


def test_arrays_handed_to_lapack_must_be_c_contiguous():
    f = np.empty((1, 3, 4)).transpose(0, 2, 1)       # (1, 4, 3) in the wrong order
    with pytest.raises(TypingError, match="C-contiguous"):
        lapack.lu_factor(np.eye(3)[None], f)


# Cached code in a new process ----------------------------------------------------------------

CALLER = '''
import numpy as np
from numba import njit
from jitgrad.backends.lapack import lu_det, lu_factor

@njit(cache=True)
def det(a):
    f = np.empty((a.shape[0], a.shape[1] + 1, a.shape[1]), a.dtype)
    lu_factor(a, f)
    out = np.empty(a.shape[0], a.dtype)
    lu_det(f, out)
    return out
'''
SCRIPT = ("import caller, numpy as np; "
          "print(caller.det(np.array([[[0.0, 2.0], [3.0, 1.0]]]))[0], "
          "sum(caller.det.stats.cache_hits.values()))")


def test_a_caller_cached_with_its_lapack_calls_loads_in_a_new_process(tmp_path):
    (tmp_path / "caller.py").write_text(CALLER)
    root = pathlib.Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(root)])
    results = []
    for _ in range(2):
        run = subprocess.run([sys.executable, "-c", SCRIPT], env=env, cwd=tmp_path,
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        results.append(run.stdout.split())
    assert results == [["-6.0", "0"], ["-6.0", "1"]]
