"""jitgrad.backends.cuda_linalg in Numba's CUDA simulator, against the NumPy references.

Every launcher is compared with :mod:`jitgrad.ops._linalg_ref` (the CPU kernels' oracle too),
packed layouts, pivots and sign conventions included. Run in a process of its own:

    NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/cuda/test_cuda_linalg.py

The simulator runs kernels in Python, one thread per simulated thread: sizes stay tiny.
"""
import zlib

import numba
import numpy as np
import pytest

if not numba.config.ENABLE_CUDASIM:
    pytest.skip("needs Numba's CUDA simulator: NUMBA_ENABLE_CUDASIM=1 before numba is imported",
                allow_module_level=True)

from numba import cuda  # noqa: E402

from jitgrad.backends import cuda_linalg as cl, cuda_runtime  # noqa: E402
from jitgrad.ops import _linalg_ref as ref  # noqa: E402
from jitgrad.testing import call_unmutated  # noqa: E402

DTYPES = [np.float64, np.float32]
TOL = {np.float64: dict(rtol=1e-10, atol=1e-10), np.float32: dict(rtol=2e-4, atol=2e-4)}
SHAPES = [(3, 1), (1, 2), (3, 4), (0, 4)]      # (batch, n)
ids = lambda v: getattr(v, "__name__", None) or str(v)     # noqa: E731


def _rng(*key):
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def _run(launcher, inputs, out, *flags):
    """Call `launcher` on device copies of `inputs` and of `out` (prefilled: what it does not
    write stays as it was); return the output."""
    d_out = cuda.to_device(out)
    launcher(*(cuda.to_device(np.ascontiguousarray(x)) for x in inputs), d_out, *flags)
    return d_out.copy_to_host()


def _empty(shape, dtype):
    return np.full(shape, np.nan, dtype)


def _check_orthonormal(q, dtype):
    eye = np.broadcast_to(np.eye(q.shape[-1]), q.shape[:-2] + (q.shape[-1],) * 2)
    np.testing.assert_allclose(np.swapaxes(q, -1, -2) @ q, eye, **TOL[dtype])


def _check_gauge(u):
    """The largest-magnitude entry (the first on ties) of every column is positive."""
    largest = np.take_along_axis(u, np.argmax(np.abs(u), axis=-2)[..., None, :], axis=-2)
    assert np.all(largest > 0)


# LU ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=ids)
@pytest.mark.parametrize("batch, n", SHAPES)
def test_lu_factor_matches_getrf_layout_and_pivots(dtype, batch, n):
    a = _rng("lu", batch, n).standard_normal((batch, n, n)).astype(dtype)
    f = _run(cl.lu_factor, [a], _empty((batch, n + 1, n), dtype))
    expected = ref.lu_factor(a)
    np.testing.assert_array_equal(f[:, n], expected[:, n])        # the same pivots, exactly
    np.testing.assert_allclose(f, expected, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES, ids=ids)
@pytest.mark.parametrize("batch, n", SHAPES)
@pytest.mark.parametrize("trans", [False, True])
def test_lu_solve(dtype, batch, n, trans):
    rng = _rng("solve", batch, n, trans)
    f = ref.lu_factor(rng.standard_normal((batch, n, n)).astype(dtype))
    b = rng.standard_normal((batch, n, 2)).astype(dtype)
    x = _run(cl.lu_solve, [f, b], _empty(b.shape, dtype), trans)
    np.testing.assert_allclose(x, ref.lu_solve(f, b, trans), **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES, ids=ids)
@pytest.mark.parametrize("batch, n", SHAPES + [(2, 0)])
def test_determinants(dtype, batch, n):
    f = ref.lu_factor(_rng("det", batch, n).standard_normal((batch, n, n)).astype(dtype))
    for name in ("lu_det", "lu_sign", "lu_logabsdet"):
        out = _run(getattr(cl, name), [f], _empty((batch,), dtype))
        np.testing.assert_allclose(out, getattr(ref, name)(f), **TOL[dtype], err_msg=name)


@pytest.mark.parametrize("dtype", DTYPES, ids=ids)
def test_singular_matrices_factor_and_then_fail_to_solve(dtype):
    a = np.array([[[1, 2, 3], [2, 4, 6], [0, 1, 1]], np.zeros((3, 3)),
                  [[0, 1, 0], [0, 0, 1], [0, 0, 0]]], dtype)
    f = _run(cl.lu_factor, [a], _empty((3, 4, 3), dtype))          # never raises
    np.testing.assert_allclose(f, ref.lu_factor(a), **TOL[dtype])
    assert np.all(_run(cl.lu_det, [f], _empty((3,), dtype)) == 0)
    assert np.all(_run(cl.lu_sign, [f], _empty((3,), dtype)) == 0)
    assert np.all(_run(cl.lu_logabsdet, [f], _empty((3,), dtype)) == -np.inf)
    for trans in (False, True):
        with pytest.raises(np.linalg.LinAlgError, match="Singular matrix"):
            _run(cl.lu_solve, [f, np.ones((3, 3, 1), dtype)], _empty((3, 3, 1), dtype), trans)


def _of_corank(rng, batch, n, corank, dtype):
    """Products of random factors: rank n - corank, exactly singular where corank > 0."""
    r = n - corank
    return (rng.standard_normal((batch, n, r)) @ rng.standard_normal((batch, r, n))).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=ids)
@pytest.mark.parametrize("batch, n", SHAPES + [(2, 0)])
def test_cofactor_matrix(dtype, batch, n):
    rng = _rng("cofactor", batch, n)
    for corank in range(n + 1) if n else [0]:
        f = ref.lu_factor(_of_corank(rng, batch, n, corank, dtype))
        out = _run(cl.lu_cofactor, [f], _empty((batch, n, n), dtype))
        np.testing.assert_allclose(out, ref.lu_cofactor(f), **TOL[dtype], err_msg=f"corank {corank}")


@pytest.mark.parametrize("dtype", DTYPES, ids=ids)
def test_cofactor_matrix_at_exact_zero_pivots(dtype):
    """Zero pivots first, last, two of them, the zero matrix, 1x1 zero: never raises."""
    a = np.array([[[1, 2, 3], [2, 4, 6], [0, 1, 1]], [[0, 1, 2], [0, 3, 4], [0, 5, 7]],
                  [[0, 1, 0], [0, 0, 1], [0, 0, 0]], [[1, 1, 1], [1, 1, 1], [1, 1, 1]],
                  np.zeros((3, 3))], dtype)
    f = ref.lu_factor(a)
    got = _run(cl.lu_cofactor, [f], _empty(a.shape, dtype))
    want = [[[-2, -2, 2], [1, 1, -1], [0, 0, 0]], [[1, 0, 0], [3, 0, 0], [-2, 0, 0]],
            [[0, 0, 0], [0, 0, 0], [1, 0, 0]], np.zeros((3, 3)), np.zeros((3, 3))]
    np.testing.assert_allclose(got, np.array(want, dtype), **TOL[dtype])
    np.testing.assert_allclose(got, ref.lu_cofactor(f), **TOL[dtype])
    one = _run(cl.lu_cofactor, [ref.lu_factor(np.zeros((2, 1, 1), dtype))], _empty((2, 1, 1), dtype))
    np.testing.assert_array_equal(one, 1)


def test_one_singular_matrix_in_a_batch_fails_the_solve():
    f = ref.lu_factor(np.stack([np.eye(2), np.eye(2), [[1.0, 1.0], [1.0, 1.0]]]))
    with pytest.raises(np.linalg.LinAlgError, match="Singular matrix"):
        _run(cl.lu_solve, [f, np.ones((3, 2, 0))], _empty((3, 2, 0), np.float64), False)


# Cholesky, triangular solve --------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=ids)
@pytest.mark.parametrize("batch, n", SHAPES)
def test_cholesky_of_the_symmetric_part(dtype, batch, n):
    g = _rng("chol", batch, n).standard_normal((batch, n, n))
    a = (g @ np.swapaxes(g, 1, 2) + n * np.eye(n) + np.triu(g, 1)).astype(dtype)   # not symmetric
    l = _run(cl.cholesky, [a], _empty(a.shape, dtype))
    assert np.all(np.triu(l, 1) == 0)
    np.testing.assert_allclose(l, ref.cholesky(a), **TOL[dtype])


@pytest.mark.parametrize("a", [[[1.0, 2.0], [2.0, 1.0]], [[0.0, 0.0], [0.0, 1.0]], [[-1.0]],
                               [[1.0, 0.0], [0.0, np.nan]]],
                         ids=["indefinite", "semidefinite", "negative", "nan"])
def test_cholesky_of_a_matrix_not_positive_definite_raises(a):
    a = np.stack([np.eye(len(a)), np.array(a)])
    with pytest.raises(np.linalg.LinAlgError, match="Matrix is not positive definite"):
        _run(cl.cholesky, [a], _empty(a.shape, np.float64))


@pytest.mark.parametrize("dtype", DTYPES, ids=ids)
@pytest.mark.parametrize("batch, n", [(3, 1), (2, 4)])
@pytest.mark.parametrize("lower", [False, True])
@pytest.mark.parametrize("trans", [False, True])
def test_triangular_solve(dtype, batch, n, lower, trans):
    rng = _rng("tri", batch, n, lower, trans)
    t = (rng.standard_normal((batch, n, n)) + 3 * np.eye(n)).astype(dtype)   # other triangle unused
    b = rng.standard_normal((batch, n, 3)).astype(dtype)
    x = _run(cl.triangular_solve, [t, b], _empty(b.shape, dtype), lower, trans)
    np.testing.assert_allclose(x, ref.triangular_solve(t, b, lower, trans), **TOL[dtype])


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning",
                            "ignore:invalid value:RuntimeWarning")    # in the simulated threads
def test_triangular_solve_with_a_zero_diagonal_gives_inf_or_nan_like_trsm():
    t = np.array([[[2.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 1.0, 1.0]]])
    b = np.array([[[1.0], [1.0], [1.0]]])
    x = _run(cl.triangular_solve, [t, b], _empty(b.shape, np.float64), True, False)
    expected = ref.triangular_solve(t, b, True, False)
    np.testing.assert_array_equal(np.isfinite(x), np.isfinite(expected))
    np.testing.assert_allclose(x[np.isfinite(x)], expected[np.isfinite(expected)])


# eigh ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=ids)
@pytest.mark.parametrize("batch, n", SHAPES)
def test_eigh_packed_values_and_gauged_vectors(dtype, batch, n):
    a = _rng("eigh", batch, n).standard_normal((batch, n, n)).astype(dtype)
    out = _run(cl.eigh, [a], _empty((batch, n + 1, n), dtype))
    np.testing.assert_allclose(out, ref.eigh(a), **TOL[dtype])
    values = _run(cl.eigh_values, [a], _empty((batch, n + 1, n), dtype))
    np.testing.assert_allclose(values[:, 0], out[:, 0], **TOL[dtype])
    assert np.all(np.isnan(values[:, 1:]))                 # only row 0 is written


@pytest.mark.parametrize("dtype", DTYPES, ids=ids)
def test_eigh_of_repeated_eigenvalues_is_still_a_decomposition(dtype):
    q, _ = np.linalg.qr(_rng("rep").standard_normal((3, 3)))
    huge = 1e300 if dtype == np.float64 else 1e30       # its squares overflow unless scaled first
    a = np.stack([np.diag([1.0, 1.0, 2.0]), q @ np.diag([1.0, 1.0, 2.0]) @ q.T, np.ones((3, 3)),
                  np.eye(3), np.zeros((3, 3)), huge * np.eye(3)[::-1]]).astype(dtype)
    out = _run(cl.eigh, [a], _empty((6, 4, 3), dtype))
    w, v = out[:, 0], out[:, 1:]
    expected = ref.eigh(a)[:, 0]
    size = np.maximum(np.abs(expected).max(axis=1, keepdims=True), 1)
    np.testing.assert_allclose(w / size, expected / size, **TOL[dtype])
    _check_orthonormal(v.astype(np.float64), dtype)
    s = (a.astype(np.float64) + np.swapaxes(a, 1, 2)) / 2
    scale = np.abs(s).max(axis=(1, 2), keepdims=True) + 1
    np.testing.assert_allclose(s @ v / scale, v * w[:, None, :] / scale, **TOL[dtype])
    _check_gauge(v)


# SVD -------------------------------------------------------------------------------------------

SVD_SHAPES = [(3, 1, 1), (1, 2, 2), (2, 4, 4), (2, 4, 2), (2, 2, 4), (1, 1, 3), (0, 3, 2),
              (2, 0, 3)]      # (batch, m, n): square, tall, wide, empty


@pytest.mark.parametrize("dtype", DTYPES, ids=ids)
@pytest.mark.parametrize("batch, m, n", SVD_SHAPES)
def test_svd_packed_values_and_gauged_vectors(dtype, batch, m, n):
    a = _rng("svd", batch, m, n).standard_normal((batch, m, n)).astype(dtype)
    k = min(m, n)
    out = _run(cl.svd, [a], _empty((batch, 1 + m + n, k), dtype))
    np.testing.assert_allclose(out, ref.svd(a), **TOL[dtype])
    values = _run(cl.svd_values, [a], _empty((batch, 1 + m + n, k), dtype))
    np.testing.assert_allclose(values[:, 0], out[:, 0], **TOL[dtype])
    assert np.all(np.isnan(values[:, 1:]))


@pytest.mark.parametrize("dtype", DTYPES, ids=ids)
@pytest.mark.parametrize("a", [np.zeros((3, 2)), np.ones((3, 3)), np.ones((2, 4)),
                               np.outer([1.0, -2.0, 3.0, 0.5], [2.0, 1.0, -1.0]),
                               np.diag([3.0, 0.0, 1.0]), np.eye(3)],
                         ids=["zeros", "ones", "ones-wide", "rank-1", "diag-0", "identity"])
def test_svd_of_rank_deficient_matrices_has_orthonormal_u_and_v(dtype, a):
    a = a[None].astype(dtype)
    m, n = a.shape[1:]
    k = min(m, n)
    out = _run(cl.svd, [a], _empty((1, 1 + m + n, k), dtype))
    s, u, v = out[:, 0], out[:, 1:1 + m], out[:, 1 + m:]
    np.testing.assert_allclose(s, ref.svd(a)[:, 0], **TOL[dtype])
    _check_orthonormal(u.astype(np.float64), dtype)
    _check_orthonormal(v.astype(np.float64), dtype)
    np.testing.assert_allclose((u * s[:, None, :]) @ np.swapaxes(v, 1, 2), a, **TOL[dtype])
    _check_gauge(u)


# QR ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=ids)
@pytest.mark.parametrize("batch, m, n", [(3, 4, 2), (2, 3, 3), (1, 5, 1), (2, 1, 1), (0, 3, 2), (2, 3, 0)])
def test_qr_packed_and_signed(dtype, batch, m, n):
    a = _rng("qr", batch, m, n).standard_normal((batch, m, n)).astype(dtype)
    out = _run(cl.qr, [a], np.zeros((batch, m + n, n), dtype))
    np.testing.assert_allclose(out, ref.qr(a), **TOL[dtype])
    r = out[:, m:]
    assert np.all(np.tril(r, -1) == 0) and np.all(np.diagonal(r, axis1=1, axis2=2) >= 0)


@pytest.mark.parametrize("dtype", DTYPES, ids=ids)
@pytest.mark.parametrize("a", [np.zeros((3, 2)), np.ones((3, 3)), np.ones((4, 2)),
                               np.outer([1.0, -2.0, 3.0, 0.5], [2.0, 1.0, -1.0]),
                               np.diag([3.0, 0.0, 1.0]), -np.eye(3)],
                         ids=["zeros", "ones", "ones-tall", "rank-1", "diag-0", "minus-identity"])
def test_qr_of_rank_deficient_matrices_is_still_a_factorization(dtype, a):
    a = a[None].astype(dtype)
    m, n = a.shape[1:]
    out = _run(cl.qr, [a], _empty((1, m + n, n), dtype))
    q, r = out[:, :m], out[:, m:]
    _check_orthonormal(q.astype(np.float64), dtype)
    np.testing.assert_allclose(q @ r, a, **TOL[dtype])
    np.testing.assert_allclose(np.abs(np.diagonal(r, axis1=1, axis2=2)),
                               np.abs(np.diagonal(ref.qr(a)[:, m:], axis1=1, axis2=2)), **TOL[dtype])
    assert np.all(np.tril(r, -1) == 0) and np.all(np.diagonal(r, axis1=1, axis2=2) >= 0)


# Errors, launch shapes -------------------------------------------------------------------------

@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")     # inf * 0 in the simulator
@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("routine, message", [("eigh", "Eigenvalues did not converge"),
                                              ("eigh_values", "Eigenvalues did not converge"),
                                              ("svd", "SVD did not converge"),
                                              ("svd_values", "SVD did not converge")])
def test_nonfinite_input_does_not_converge(routine, message, bad):
    a = np.stack([np.eye(2), [[1.0, bad], [0.0, 1.0]]])
    rows = 3 if routine.startswith("eigh") else 5
    with pytest.raises(np.linalg.LinAlgError, match=message):
        _run(getattr(cl, routine), [a], _empty((2, rows, 2), np.float64))


def test_shapes_and_dtypes_are_checked():
    a = cuda.to_device(np.eye(3)[None])
    with pytest.raises(ValueError, match=r"shape \(1, 4, 3\), got \(1, 3, 3\)"):
        cl.lu_factor(a, cuda.device_array((1, 3, 3)))
    with pytest.raises(ValueError, match="stack of matrices"):
        cl.eigh(cuda.to_device(np.eye(3)), cuda.device_array((4, 3)))
    with pytest.raises(TypeError, match="dtypes"):
        cl.cholesky(a, cuda.device_array((1, 3, 3), np.float32))
    with pytest.raises(ValueError, match="m >= n"):
        cl.qr(cuda.to_device(np.ones((1, 2, 3))), cuda.device_array((1, 5, 3)))


@pytest.mark.parametrize("blocks, threads", [(1, 1), (3, 3)])
def test_any_launch_shape_gives_the_same_results(monkeypatch, blocks, threads):
    """Fewer blocks than matrices, threads not dividing the work, an odd n (a Jacobi dummy)."""
    monkeypatch.setattr(cuda_runtime, "SIM_LINALG", (blocks, threads))
    rng = _rng("launch", blocks, threads)
    a = rng.standard_normal((4, 5, 5))
    f = _run(cl.lu_factor, [a], _empty(a.shape[:1] + (6, 5), np.float64))
    np.testing.assert_allclose(f, ref.lu_factor(a), **TOL[np.float64])
    b = rng.standard_normal((4, 5, 2))
    np.testing.assert_allclose(_run(cl.lu_solve, [f, b], _empty(b.shape, np.float64), True),
                               ref.lu_solve(f, b, True), **TOL[np.float64])
    spd = a @ np.swapaxes(a, 1, 2) + np.eye(5)
    np.testing.assert_allclose(_run(cl.cholesky, [spd], _empty(a.shape, np.float64)),
                               ref.cholesky(spd), **TOL[np.float64])
    np.testing.assert_allclose(_run(cl.eigh, [a], _empty((4, 6, 5), np.float64)), ref.eigh(a),
                               **TOL[np.float64])
    g = a[:, :, :3]
    np.testing.assert_allclose(_run(cl.svd, [g], _empty((4, 9, 3), np.float64)), ref.svd(g),
                               **TOL[np.float64])
    np.testing.assert_allclose(_run(cl.qr, [g], _empty((4, 8, 3), np.float64)), ref.qr(g),
                               **TOL[np.float64])
    f[1, 2, 2] = 0      # a zero pivot: the rank-one case
    np.testing.assert_allclose(_run(cl.lu_cofactor, [f], _empty(a.shape, np.float64)),
                               ref.lu_cofactor(f), **TOL[np.float64])


# The derivatives of det on target="cuda" ---------------------------------------------------------

def test_det_derivatives_on_the_device_at_singular_matrices():
    """Cofactors (first order, reverse and forward) and the second derivatives, at coranks
    0..3 of a stack, as the numpy target computes them: finite, rank-one, zero."""
    import jitgrad as jg
    from jitgrad import linalg as la
    rng = _rng("det target")
    stack = np.stack([_of_corank(rng, 1, 3, c, np.float64)[0] for c in range(4)])
    stack[3] = 0
    e = rng.standard_normal(stack.shape)
    a, t = jg.input("a", stack.shape), jg.input("t", stack.shape)
    d = la.det(a)
    (g,) = jg.grad(jg.sum(d), [a])
    outputs = [d, g] + jg.jvp([d], [a], [t]) + jg.jvp([g], [a], [t]) + jg.grad(jg.sum(g * t), [a])
    want = call_unmutated(jg.compile([a, t], outputs, target="numpy"), stack, e)
    got = call_unmutated(jg.compile([a, t], outputs, target="cuda"), stack, e)
    for name, x, y in zip(["det", "grad", "jvp", "fwd_rev", "rev_rev"], got, want):
        np.testing.assert_allclose(x, y, rtol=1e-9, atol=1e-9, err_msg=name)
    assert np.abs(want[1][1]).max() > 0.1 and np.abs(want[1][2:]).max() < 1e-12


# Spectral functions on target="cuda": derivatives exact at repeated values ------------------------

def test_spectral_functions_on_the_device():
    """eigh_function / svd_function (values, gradients forward and reverse, second order) at
    repeated, distinct and zero values, as the numpy target computes them."""
    import jitgrad as jg
    rng = _rng("spectral target")
    m = rng.standard_normal((3, 3))
    stack = np.stack([2 * np.eye(3), np.diag([1.0, 1.0, 2.0]), (m + m.T) / 2])
    tall = np.stack([np.eye(4, 3) * 1.5, rng.standard_normal((4, 3))])
    a, b = jg.input("a", stack.shape), jg.input("b", tall.shape)
    y = jg.linalg.eigh_function(a, jg.exp)
    z = jg.linalg.svd_function(b, jg.tanh)
    loss = jg.sum(m * y)
    (ga,) = jg.grad(loss, [a])
    (gb,) = jg.grad(jg.sum(z * z), [b])
    outputs = [y, ga, jg.hvp(loss, a, a * 0.0 + 1.0), z, gb] + jg.jvp([y], [a], [stack * 0.5])
    want = call_unmutated(jg.compile([a, b], outputs, target="numpy"), stack, tall)
    got = call_unmutated(jg.compile([a, b], outputs, target="cuda"), stack, tall)
    for name, x, w in zip(["eigh_function", "grad", "hvp", "svd_function", "svd grad", "jvp"], got, want):
        np.testing.assert_allclose(x, w, rtol=1e-9, atol=1e-9, err_msg=name)
    np.testing.assert_allclose(got[1][0], np.exp(2) * (m + m.T) / 2, rtol=1e-9)   # exact at 2 I
