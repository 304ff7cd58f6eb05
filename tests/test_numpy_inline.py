"""The intrinsics the CPU program calls instead of Numba's overloads (jitgrad/backends/numpy_inline.py):
each does what the NumPy call it replaces does."""
import numpy as np
import pytest
from numba import njit

from jitgrad.backends.numpy_inline import dot_into, empty, reshape, workspace_view


@njit
def _empties(n):
    return empty(n, np.float32), empty((2, n), np.int64), empty((), np.bool_), empty((n, 0, 2), np.float64)


def test_empty_makes_c_ordered_arrays_of_the_shape_and_dtype():
    a, b, c, d = _empties(3)
    assert (a.shape, a.dtype) == ((3,), np.float32)
    assert (b.shape, b.dtype, b.flags.c_contiguous) == ((2, 3), np.int64, True)
    assert (c.shape, c.dtype) == ((), np.bool_)
    assert (d.shape, d.dtype) == ((3, 0, 2), np.float64)


def test_empty_refuses_a_negative_size():
    with pytest.raises(ValueError, match="negative dimensions"):
        _empties(-1)


@njit
def _dot(a, b, out):
    dot_into(a, b, out)
    return out


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_dot_into_matches_numpy_for_every_layout(dtype):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 4)).astype(dtype), rng.normal(size=(4, 3)).astype(dtype)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    for left in (a, np.asfortranarray(a), np.repeat(a, 2, axis=1)[:, ::2]):
        for right in (b, b.T.copy().T, np.repeat(b, 2, axis=0)[::2]):
            got = _dot(left, right, np.empty((5, 3), dtype))
            np.testing.assert_allclose(got, a @ b, rtol=tol, atol=tol)
    np.testing.assert_allclose(_dot(a[0], b, np.empty(3, dtype)), a[0] @ b, rtol=tol)
    np.testing.assert_allclose(_dot(a, b[:, 0].copy(), np.empty(5, dtype)), a @ b[:, 0], rtol=tol)


@pytest.mark.parametrize("a, b, out, message", [
    ((2, 3), (4, 2), (2, 2), r"incompatible array sizes for np.dot\(a, b\) \(matrix \* matrix\)"),
    ((2, 3), (3, 2), (3, 2), r"incompatible output array size for np.dot\(a, b, out\) \(matrix \* matrix\)"),
    ((3,), (4, 2), (2,), r"incompatible array sizes .* \(vector \* matrix\)"),
    ((3,), (3, 2), (3,), r"incompatible output array size .* \(vector \* matrix\)"),
    ((2, 3), (4,), (2,), r"incompatible array sizes .* \(matrix \* vector\)"),
    ((2, 3), (3,), (3,), r"incompatible output array size .* \(matrix \* vector\)"),
])
def test_dot_into_checks_the_sizes(a, b, out, message):
    with pytest.raises(ValueError, match=message):
        _dot(np.ones(a), np.ones(b), np.empty(out))


def test_dot_into_with_an_empty_operand_fills_zeros():
    for a, b, out in [((2, 0), (0, 3), (2, 3)), ((0,), (0, 3), (3,)), ((2, 0), (0,), (2,)), ((0, 3), (3, 2), (0, 2))]:
        got = _dot(np.ones(a), np.ones(b), np.full(out, np.nan))
        np.testing.assert_array_equal(got, np.zeros(out))


@njit
def _reshape(array, shape):
    return reshape(array, shape)


def test_reshape_is_numpys_reshape_as_a_view():
    a = np.arange(12.0)
    for shape in [(3, 4), (2, -1, 3), (-1,), (12, 1), (1, 12), 12, -1]:
        got = _reshape(a, shape)
        np.testing.assert_array_equal(got, a.reshape(shape))
    _reshape(a, (2, 6))[0, 5] = -1.0
    assert a[5] == -1.0                                     # a view, not a copy
    f = np.asfortranarray(np.arange(6.0).reshape(2, 3))
    np.testing.assert_array_equal(_reshape(f, (2, 1, 3)), f.reshape(2, 1, 3))
    with pytest.raises(NotImplementedError, match="incompatible shape for array"):
        _reshape(f, (6,))                  # as Numba's reshape: a view or nothing, never a copy
    assert _reshape(np.zeros(0), (3, -1)).shape == (3, 0)
    assert _reshape(np.array([7.0]), ()).shape == ()


@pytest.mark.parametrize("shape, message", [
    ((5, 2), "total size of new array must be unchanged"),
    ((5, -1), "total size of new array must be unchanged"),
    ((-1, -1), "multiple negative shape values"),
    ((0, -1), "total size of new array must be unchanged"),
])
def test_reshape_refuses_what_numpy_refuses(shape, message):
    with pytest.raises(ValueError, match=message):
        _reshape(np.arange(12.0), shape)


@njit
def _views(buffer, rows, cols):
    return workspace_view(buffer, (rows, cols)), workspace_view(buffer, ()), workspace_view(buffer, (rows * cols,))


def test_workspace_view_is_a_view_of_the_first_elements():
    buffer = np.arange(10.0)
    matrix, scalar, flat = _views(buffer, 2, 3)
    np.testing.assert_array_equal(matrix, np.arange(6.0).reshape(2, 3))
    assert matrix.flags.c_contiguous and scalar.shape == () and scalar[()] == 0.0
    matrix[1, 2] = -1.0
    assert buffer[5] == -1.0 and flat[5] == -1.0          # the buffer's memory, not a copy


def test_workspace_view_refuses_a_buffer_too_small():
    with pytest.raises(ValueError, match="workspace buffer too small"):
        _views(np.zeros(5), 2, 3)
