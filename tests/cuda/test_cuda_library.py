"""The CUDA library operations against NumPy, in the CUDA simulator.

Run on its own: ``NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/cuda``.
"""
import numba
import numpy as np
import pytest

if not numba.config.ENABLE_CUDASIM:
    pytest.skip("needs the CUDA simulator: set NUMBA_ENABLE_CUDASIM=1 before numba is imported",
                allow_module_level=True)

from numba import cuda  # noqa: E402

from jitgrad.backends import cuda_library as cl  # noqa: E402
from jitgrad.backends.cuda_runtime import library_launch  # noqa: E402

rng = np.random.default_rng(0)


def _data(shape, dtype):
    if np.dtype(dtype).kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    return rng.integers(-5, 6, size=shape).astype(dtype)


def _out(shape, dtype):
    """A device output holding garbage, so a launcher that skips an element is caught."""
    return cuda.to_device(np.full(shape, 7, dtype))


# -- launch configuration -----------------------------------------------------------------

def test_launch_config_is_small_in_the_simulator():
    assert library_launch(1) == (1, 32)
    assert library_launch(10**6) == (4, 32)
    assert library_launch(0)[0] >= 1


# -- matmul -------------------------------------------------------------------------------

@pytest.fixture(params=[False, True], ids=["rows", "tiled"])
def tiled(request, monkeypatch):
    """Both matmul kernels; the tiled one with 4 x 4 tiles, so that small matrices span
    several tiles and the simulator (which pays per thread and per syncthreads) stays fast."""
    monkeypatch.setattr(cl, "TILE", 4)
    return request.param


@pytest.mark.parametrize("batch, m, k, n", [(1, 5, 7, 3), (3, 11, 9, 13), (2, 1, 6, 1)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int64])
def test_matmul(batch, m, k, n, dtype, tiled):
    a, b = _data((batch, m, k), dtype), _data((batch, k, n), dtype)
    out = _out((batch, m, n), dtype)
    cl.matmul(cuda.to_device(a), cuda.to_device(b), out, tiled=tiled)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out.copy_to_host(), a @ b, rtol=tol, atol=tol)


@pytest.mark.parametrize("trans_a, trans_b", [(True, False), (False, True), (True, True)])
@pytest.mark.parametrize("dtype", [np.float64, np.int64])
def test_matmul_transposed_operands(trans_a, trans_b, dtype, tiled):
    batch, m, k, n = 2, 10, 9, 11
    a, b = _data((batch, m, k), dtype), _data((batch, k, n), dtype)
    a_buf = np.ascontiguousarray(a.transpose(0, 2, 1)) if trans_a else a
    b_buf = np.ascontiguousarray(b.transpose(0, 2, 1)) if trans_b else b
    out = _out((batch, m, n), dtype)
    cl.matmul(cuda.to_device(a_buf), cuda.to_device(b_buf), out, trans_a=trans_a,
              trans_b=trans_b, tiled=tiled)
    np.testing.assert_allclose(out.copy_to_host(), a @ b, rtol=1e-12, atol=1e-12)


def test_matmul_with_the_gpu_tile():
    """The tiled kernel exactly as a GPU runs it: 16 x 16 tiles, boundaries on every side."""
    assert cl.TILE == 16
    a, b = _data((2, 18, 17), np.float64), _data((2, 17, 20), np.float64)
    a_buf = np.ascontiguousarray(a.transpose(0, 2, 1))
    out = _out((2, 18, 20), np.float64)
    cl.matmul(cuda.to_device(a_buf), cuda.to_device(b), out, trans_a=True, tiled=True)
    np.testing.assert_allclose(out.copy_to_host(), a @ b, rtol=1e-12, atol=1e-12)


def test_matmul_in_the_simulator_uses_no_tiles(monkeypatch):
    monkeypatch.setattr(cl, "_matmul_kernel", None)       # calling it would raise
    a = _data((1, 3, 4), np.float64)
    out = _out((1, 3, 3), np.float64)
    cl.matmul(cuda.to_device(a), cuda.to_device(a), out, trans_b=True)
    np.testing.assert_allclose(out.copy_to_host(), a @ a.transpose(0, 2, 1), rtol=1e-12)


def test_matmul_empty_inner_axis_gives_zeros():
    out = _out((1, 2, 3), np.float64)
    cl.matmul(cuda.to_device(np.zeros((1, 2, 0))), cuda.to_device(np.zeros((1, 0, 3))), out)
    np.testing.assert_array_equal(out.copy_to_host(), np.zeros((1, 2, 3)))


def test_matmul_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="matmul"):
        cl.matmul(cuda.to_device(np.zeros((1, 2, 3))), cuda.to_device(np.zeros((1, 4, 5))),
                  cuda.to_device(np.zeros((1, 2, 5))))


# -- transpose ----------------------------------------------------------------------------

@pytest.mark.parametrize("shape, perm", [((4, 5), (1, 0)), ((2, 3, 4), (2, 0, 1)),
                                         ((2, 3, 4, 5), (3, 1, 0, 2)), ((3, 4), (0, 1))])
@pytest.mark.parametrize("dtype", [np.float32, np.int64])
def test_transpose(shape, perm, dtype):
    x = _data(shape, dtype)
    out = _out(tuple(shape[p] for p in perm), dtype)
    cl.transpose(cuda.to_device(x), out, perm)
    np.testing.assert_array_equal(out.copy_to_host(), np.transpose(x, perm))


# -- unslice ------------------------------------------------------------------------------

@pytest.mark.parametrize("shape, index", [
    ((10,), ((2, 9, 3),)),
    ((10,), ((None, None, -2),)),
    ((10,), ((-2, 1, -3),)),
    ((6, 7), ((None, None, -1), (1, -1, 2))),
    ((4, 5, 6), ((1, 3, None), (None, None, -2), (-1, None, -4))),
    ((5, 4), ((3, 3, 1), (None, None, None))),           # an empty slice: all zeros
])
def test_unslice(shape, index):
    slices = tuple(slice(*t) for t in index)
    g = _data(np.zeros(shape)[slices].shape, np.float64)
    expected = np.zeros(shape)
    expected[slices] = g
    out = _out(shape, np.float64)
    cl.unslice(cuda.to_device(g), out, index)
    np.testing.assert_array_equal(out.copy_to_host(), expected)


def test_unslice_rejects_a_g_of_the_wrong_shape():
    with pytest.raises(ValueError, match="unslice"):
        cl.unslice(cuda.to_device(np.zeros(3)), _out((10,), np.float64), ((None, None, 2),))


# -- scatter_add --------------------------------------------------------------------------

def _scatter_ref(g, idx, shape, axis):
    out = np.zeros(shape, g.dtype)
    g_moved = np.moveaxis(g, tuple(range(axis, axis + idx.ndim)), tuple(range(idx.ndim)))
    np.add.at(np.moveaxis(out, axis, 0), idx, g_moved)
    return out


@pytest.mark.parametrize("shape, idx, axis", [
    ((5,), [0, 3, 3, -1, 0, -5], 0),                       # repeats and negatives
    ((4, 6), [[1, -1], [1, 2]], 1),                        # 2-d indices in the middle
    ((3, 4, 2), [2, 2, -3], 0),
    ((3, 4, 2), [-1, 0, 3, 3], 1),
])
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int64])
def test_scatter_add(shape, idx, axis, dtype):
    idx = np.array(idx, np.int64)
    g = _data(shape[:axis] + idx.shape + shape[axis + 1:], dtype)
    out = _out(shape, dtype)
    cl.scatter_add(cuda.to_device(g), cuda.to_device(idx), out, axis)
    np.testing.assert_allclose(out.copy_to_host(), _scatter_ref(g, idx, shape, axis), rtol=1e-6)


def test_scatter_add_int32_indices():
    idx = np.array([1, -1, 1], np.int32)
    out = _out((3,), np.float64)
    cl.scatter_add(cuda.to_device(np.ones(3)), cuda.to_device(idx), out, 0)
    np.testing.assert_array_equal(out.copy_to_host(), [0.0, 2.0, 1.0])


@pytest.mark.parametrize("bad", [5, -6])
def test_scatter_add_out_of_bounds_raises(bad):
    idx = np.array([0, bad, 1], np.int64)
    with pytest.raises(IndexError, match="index out of bounds in take/gather/scatter"):
        cl.scatter_add(cuda.to_device(np.ones(3)), cuda.to_device(idx), _out((5,), np.float64), 0)


# -- concatenate --------------------------------------------------------------------------

@pytest.mark.parametrize("axis", [0, 1, 2])
def test_concatenate(axis):
    shapes = [tuple(size if d == axis else n for d, n in enumerate((2, 3, 4)))
              for size in (1, 0, 3)]               # parts differ along the axis; one is empty
    parts = [_data(s, np.float64) for s in shapes]
    expected = np.concatenate(parts, axis)
    out = _out(expected.shape, np.float64)
    cl.concatenate([cuda.to_device(p) for p in parts], out, axis)
    np.testing.assert_array_equal(out.copy_to_host(), expected)


def test_concatenate_rejects_parts_that_do_not_fill_out():
    with pytest.raises(ValueError, match="concatenate"):
        cl.concatenate([cuda.to_device(np.zeros((2, 3)))], _out((3, 3), np.float64), 0)


# -- fill and reshape ---------------------------------------------------------------------

@pytest.mark.parametrize("shape, value, dtype", [((3, 4), 2.5, np.float64), ((), -1.0, np.float32),
                                                 ((7,), 3, np.int64), ((2, 0), 1.0, np.float64),
                                                 ((5,), np.inf, np.float64)])
def test_fill(shape, value, dtype):
    out = _out(shape, dtype)
    cl.fill(out, value)
    np.testing.assert_array_equal(out.copy_to_host(), np.full(shape, value, dtype))


def test_reshape_is_a_view():
    x = cuda.to_device(np.arange(12.0))
    y = cl.reshape(x, (3, -1))
    assert y.shape == (3, 4)
    cl.fill(y, 1.0)
    np.testing.assert_array_equal(x.copy_to_host(), np.ones(12))


def test_reshape_rejects_a_strided_array():
    x = cuda.to_device(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="contiguous"):
        cl.reshape(x.T, (12,))
