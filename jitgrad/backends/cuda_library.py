"""The CUDA target's library operations: what a fused elementwise/reduction loop cannot do.

A fused kernel reads each input element where its own output element is, or reduces along
axes. The operations here break that pattern: a matrix product (every output reads a row
and a column, best served from shared memory), a transpose made real, and the writes of
``unslice``, ``scatter_add`` and ``concatenate``, whose output positions are not the
loop's. Each is a host-side launcher mirroring an ``_emit_*`` of the CPU target
(:mod:`jitgrad.backends.numba_cpu`): it takes numba.cuda device arrays (C-contiguous
unless stated), writes into a preallocated output and launches one or a few kernels.

Every kernel walks its work with a grid-stride loop, so any grid covers any size; the
launch sizes (few threads under the simulator) and the error codes are
:mod:`jitgrad.backends.cuda_runtime`'s. The simulator also runs matmul without
shared-memory tiles (see `_matmul_rows`).

Kernels take shapes and strides as tuples of ints (one specialisation per rank) and
address flat views of their arrays, so one kernel serves every rank. They call no device
functions: the index arithmetic is written out in each kernel, because numba 0.68's own
numba.cuda compiles a called device function for the current device's compute capability
(inline="always" or not), so ``compile_ptx`` of the caller fails on a machine without a GPU.
``KERNELS`` lists each kernel with the signatures it is compiled for, for the PTX test.
"""
from __future__ import annotations

import functools
import math

import numpy as np
from numba import cuda, types

from .cuda_runtime import (INDEX_OUT_OF_BOUNDS, error_flag, library_launch, raise_error, simulated,
                           tiled_matmul_launch)

__all__ = ["matmul", "transpose", "unslice", "scatter_add", "unpatches", "concatenate", "fill", "reshape",
           "philox", "argsort", "tie_average",
           "KERNELS"]


# ---------------------------------------------------------------------------------------------
# Array views
# ---------------------------------------------------------------------------------------------

def _contiguous(x) -> bool:
    return x.size == 0 or x.is_c_contiguous()


def _flat(x):
    """A 1-d view of a C-contiguous device array (0-d arrays included)."""
    if not _contiguous(x):
        raise ValueError(f"expected a C-contiguous device array, got strides {x.strides}")
    return x.reshape(x.size)


def _c_strides(shape) -> tuple[int, ...]:
    """Element strides of a C-ordered array of ``shape``."""
    strides, step = [], 1
    for n in reversed(shape):
        strides.append(step)
        step *= n
    return tuple(reversed(strides))


# ---------------------------------------------------------------------------------------------
# fill: full, full_like, and the zeros scatter_add starts from
# ---------------------------------------------------------------------------------------------

@cuda.jit
def _fill(out, value):
    for i in range(cuda.grid(1), out.shape[0], cuda.gridsize(1)):
        out[i] = value


def fill(out, value) -> None:
    """out[...] = value."""
    if out.size:
        flat = _flat(out)
        blocks, threads = library_launch(flat.size)
        _fill[blocks, threads](flat, out.dtype.type(value))


# ---------------------------------------------------------------------------------------------
# reshape: a view, no kernel
# ---------------------------------------------------------------------------------------------

def reshape(x, shape):
    """``x`` viewed with ``shape`` (one entry may be -1); ``x`` must be C-contiguous."""
    if not _contiguous(x):
        raise ValueError(f"reshape: a device array with strides {x.strides} is not C-contiguous")
    shape = tuple(int(n) for n in shape)
    if -1 in shape:
        known = math.prod(n for n in shape if n != -1)
        shape = tuple(x.size // known if known and n == -1 else n for n in shape)
    if -1 in shape or math.prod(shape) != x.size:
        raise ValueError(f"reshape: cannot reshape a device array of shape {x.shape} into {shape}")
    return x.reshape(shape)


# ---------------------------------------------------------------------------------------------
# Strided copy: transpose, and the parts of concatenate
# ---------------------------------------------------------------------------------------------

@cuda.jit
def _copy_strided(src, dst, shape, src_strides, dst_strides, dst_start):
    """dst[dst_start + p · dst_strides] = src[p · src_strides] for every index p of ``shape``.

    Both arrays are flat; strides are in elements.
    """
    n = 1
    for d in range(len(shape)):
        n *= shape[d]
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        rest, src_at, dst_at = i, 0, dst_start
        for d in range(len(shape) - 1, -1, -1):
            p = rest % shape[d]
            rest //= shape[d]
            src_at += p * src_strides[d]
            dst_at += p * dst_strides[d]
        dst[dst_at] = src[src_at]


def _launch_copy(src, dst, shape, src_strides, dst_strides, dst_start=0) -> None:
    n = math.prod(shape)
    if n:
        blocks, threads = library_launch(n)
        _copy_strided[blocks, threads](_flat(src), _flat(dst), tuple(shape), tuple(src_strides),
                                       tuple(dst_strides), dst_start)


def transpose(x, out, perm) -> None:
    """out = np.transpose(x, perm), materialized (a matmul operand needs none: see trans_a)."""
    perm = tuple(int(p) for p in perm)
    if sorted(perm) != list(range(x.ndim)) or out.shape != tuple(x.shape[p] for p in perm):
        raise ValueError(f"transpose: perm {perm} does not take shape {x.shape} to {out.shape}")
    x_strides = _c_strides(x.shape)
    # walk out in C order (coalesced writes); read x where each element comes from
    _launch_copy(x, out, out.shape, [x_strides[p] for p in perm], _c_strides(out.shape))


# ---------------------------------------------------------------------------------------------
# concatenate
# ---------------------------------------------------------------------------------------------

def concatenate(parts, out, axis: int) -> None:
    """out = np.concatenate(parts, axis): one strided copy per (non-empty) part."""
    out_strides, start = _c_strides(out.shape), 0
    for part in parts:
        if part.ndim != out.ndim or any(part.shape[d] != out.shape[d]
                                        for d in range(out.ndim) if d != axis):
            raise ValueError(f"concatenate: part {part.shape} does not fit {out.shape} "
                             f"off axis {axis}")
        _launch_copy(part, out, part.shape, _c_strides(part.shape), out_strides,
                     start * out_strides[axis])
        start += part.shape[axis]
    if start != out.shape[axis]:
        raise ValueError(f"concatenate: parts sum to {start} along axis {axis}, "
                         f"out has {out.shape[axis]}")


# ---------------------------------------------------------------------------------------------
# unslice: zeros with g written into a slice
# ---------------------------------------------------------------------------------------------

@cuda.jit
def _unslice(g, out, shape, first, step, count):
    """Every element of out (flat, C order over ``shape``): its g element, or zero.

    Along axis d the slice is first[d] + j * step[d] for j < count[d]: position p is in it
    when its distance from first[d] is a whole, in-range number of steps j.
    """
    for i in range(cuda.grid(1), out.shape[0], cuda.gridsize(1)):
        rest, g_at, g_stride, inside = i, 0, 1, True
        for d in range(len(shape) - 1, -1, -1):
            distance, stride = rest % shape[d] - first[d], step[d]
            rest //= shape[d]
            if stride < 0:
                distance, stride = -distance, -stride
            j = distance // stride
            inside = inside and distance >= 0 and distance == j * stride and j < count[d]
            g_at += j * g_stride
            g_stride *= count[d]
        if inside:
            out[i] = g[g_at]
        else:
            out[i] = 0


def unslice(g, out, index) -> None:
    """out = zeros; out[slices] = g, with ``index`` one (start, stop, step) per axis.

    One pass over out: every element is written once, no separate zeroing.
    """
    if len(index) != out.ndim:
        raise ValueError(f"unslice: {len(index)} slices for shape {out.shape}")
    ranges = [range(n)[slice(*bounds)] for n, bounds in zip(out.shape, index)]
    if tuple(len(r) for r in ranges) != tuple(g.shape):
        raise ValueError(f"unslice: slices {index} of {out.shape} do not have shape {g.shape}")
    if out.size == 0:
        return
    if out.ndim == 0:               # a 0-d out is its one element
        ranges, shape = [range(1)], (1,)
    else:
        shape = tuple(out.shape)
    blocks, threads = library_launch(out.size)
    _unslice[blocks, threads](_flat(g), _flat(out), shape, tuple(r.start for r in ranges),
                              tuple(r.step for r in ranges), tuple(len(r) for r in ranges))


# ---------------------------------------------------------------------------------------------
# unpatches (col2im): every pixel gathers the window elements read from it
# ---------------------------------------------------------------------------------------------

@cuda.jit
def _unpatches(cols, out, image, windows, geometry, strides, zero):
    """out[n, c, h, w] (flat, C order over ``image`` = (N, C, H, W)) = the sum of the window
    elements read from that pixel, in a fixed order: no atomics, the same bits every run.

    Window (oh, ow) reads row oh * sh + kh * dh - top at offset kh, so pixel row h is read at
    offset kh by the window oh = (h + top - kh * dh) / sh, when that is a whole number in
    range.  ``windows`` = (kH, kW, OH, OW), ``geometry`` = (sh, sw, dh, dw, top, left) and
    ``strides`` are cols' element strides for the axes (n, c, kh, kw, oh, ow).
    """
    for i in range(cuda.grid(1), out.shape[0], cuda.gridsize(1)):
        w, rest = i % image[3], i // image[3]
        h, rest = rest % image[2], rest // image[2]
        c, n = rest % image[1], rest // image[1]
        base = n * strides[0] + c * strides[1]
        total = zero
        for kh in range(windows[0]):
            row = h + geometry[4] - kh * geometry[2]
            oh = row // geometry[0]
            if row >= 0 and oh * geometry[0] == row and oh < windows[2]:
                for kw in range(windows[1]):
                    col = w + geometry[5] - kw * geometry[3]
                    ow = col // geometry[1]
                    if col >= 0 and ow * geometry[1] == col and ow < windows[3]:
                        total += cols[base + kh * strides[2] + kw * strides[3] + oh * strides[4]
                                      + ow * strides[5]]
        out[i] = total


def unpatches(cols, out, attrs: dict) -> None:
    """out = col2im(cols): the windows (axes in ``attrs["order"]``) added onto the image."""
    order = attrs["order"]
    held = _c_strides(cols.shape)
    strides = tuple(held[order.index(axis)] for axis in range(6))
    canonical = tuple(cols.shape[order.index(axis)] for axis in range(6))
    if canonical[:2] != tuple(out.shape[:2]):
        raise ValueError(f"unpatches: windows {cols.shape} (order {order}) do not fit an image {out.shape}")
    if not out.size:
        return
    (sh_, sw), (dh, dw), ((top, _), (left, _)) = attrs["stride"], attrs["dilation"], attrs["padding"]
    blocks, threads = library_launch(out.size)
    _unpatches[blocks, threads](_flat(cols), _flat(out), tuple(int(n) for n in out.shape), canonical[2:],
                                (sh_, sw, dh, dw, top, left), strides, out.dtype.type(0))


# ---------------------------------------------------------------------------------------------
# argsort: one thread per row, a stable insertion sort of the row's indices
# ---------------------------------------------------------------------------------------------

@cuda.jit
def _argsort(x, out, n, inner, descending):
    """out[o, :, q] = the indices that sort x[o, :, q] (x, out flat over (outer, n, inner)),
    stably: an element moves before another only if it is strictly before it, NaNs last
    (first when ``descending``, which also reverses the order but keeps ties by index)."""
    rows = x.shape[0] // n
    for r in range(cuda.grid(1), rows, cuda.gridsize(1)):
        base = (r // inner) * n * inner + r % inner
        for i in range(n):
            key = i
            v = x[base + i * inner]
            j = i - 1
            while j >= 0:
                w = x[base + out[base + j * inner] * inner]
                if descending:
                    before = v > w or (v != v and w == w)
                else:
                    before = v < w or (w != w and v == v)
                if not before:
                    break
                out[base + (j + 1) * inner] = out[base + j * inner]
                j -= 1
            out[base + (j + 1) * inner] = key


def argsort(x, out, axis: int, descending: bool) -> None:
    """out (int64, x's shape) = the stable argsort of x along ``axis``."""
    n = int(x.shape[axis])
    if not x.size or n == 0:
        return
    inner = math.prod(x.shape[axis + 1:])
    blocks, threads = library_launch(x.size // n)
    _argsort[blocks, threads](_flat(x), _flat(out), n, inner, bool(descending))


@cuda.jit
def _tie_average(s, v, out, n, inner):
    """out[o, :, q] = v[o, :, q] with each run of equal s[o, :, q] averaged (flat over (outer, n,
    inner)), one thread per row, in the reference's order (``tie_average_ref``)."""
    rows = s.shape[0] // n
    for r in range(cuda.grid(1), rows, cuda.gridsize(1)):
        base = (r // inner) * n * inner + r % inner
        start = 0
        while start < n:
            end = start + 1
            while end < n and s[base + end * inner] == s[base + start * inner]:
                end += 1
            first = v[base + start * inner]
            spread, unequal = first - first, False      # the value is unused until unequal
            for j in range(start + 1, end):
                if v[base + j * inner] != first:
                    d = v[base + j * inner] - first
                    spread = d if not unequal else spread + d
                    unequal = True
            for j in range(start, end):
                out[base + j * inner] = first + spread / (end - start) if unequal else v[base + j * inner]
            start = end


def tie_average(s, v, out, axis: int) -> None:
    """out = v averaged over each run of equal values of the sorted s along ``axis``."""
    n = int(v.shape[axis])
    if not v.size or n == 0:
        return
    inner = math.prod(v.shape[axis + 1:])
    blocks, threads = library_launch(v.size // n)
    _tie_average[blocks, threads](_flat(s), _flat(v), _flat(out), n, inner)


# ---------------------------------------------------------------------------------------------
# scatter_add
# ---------------------------------------------------------------------------------------------

@cuda.jit
def _scatter_add(g, idx, out, n, inner, error):
    """out[p, wrap(idx[j]), q] += g[p, j, q] with g, out flat, ``n`` the size of out's axis
    and ``inner`` the product of the sizes after it; an index out of range sets error[0]."""
    per_outer = idx.shape[0] * inner
    for i in range(cuda.grid(1), g.shape[0], cuda.gridsize(1)):
        p, r = i // per_outer, i % per_outer
        j, q = r // inner, r % inner
        k = idx[j]
        if k < 0:
            k += n
        if k < 0 or k >= n:
            error[0] = INDEX_OUT_OF_BOUNDS      # every thread that sees one writes the same
        else:
            cuda.atomic.add(out, (p * n + k) * inner + q, g[i])


def scatter_add(g, idx, out, axis: int) -> None:
    """out = zeros; out[..., wrap(idx[j...]), ...] += g, repeated indices accumulating.

    ``g`` has shape out.shape[:axis] + idx.shape + out.shape[axis + 1:]. Negative indices
    count from the end; an index out of range raises IndexError after the kernel (which
    waits for it: the check reads a flag back from the device).
    """
    expected = tuple(out.shape[:axis]) + tuple(idx.shape) + tuple(out.shape[axis + 1:])
    if g.size != math.prod(expected):       # by size: a 0-d index is one element on the device
        raise ValueError(f"scatter_add: g has shape {g.shape}, expected {expected}")
    if idx.dtype.kind not in "iu":
        raise TypeError(f"scatter_add: indices must be integers, got {idx.dtype}")
    fill(out, 0)
    if g.size == 0:
        return
    error = error_flag()
    inner = math.prod(out.shape[axis + 1:])
    blocks, threads = library_launch(g.size)
    _scatter_add[blocks, threads](_flat(g), _flat(idx), _flat(out), out.shape[axis], inner, error)
    raise_error(error)


# ---------------------------------------------------------------------------------------------
# matmul: shared-memory tiles
# ---------------------------------------------------------------------------------------------

TILE = 16                          # a block is TILE x TILE threads


@cuda.jit
def _matmul_rows(a, b, out, trans_a, trans_b):
    """One output element per thread, no shared memory: the simulator's matmul.

    The simulator busy-polls every thread of a block at each ``syncthreads``, so the tiled
    kernel runs 10-20x slower there than this one (a 64^3 product: ~30 s with 8 x 8 tiles,
    ~1.5 s here).
    """
    batch, m, n = out.shape
    k = a.shape[1] if trans_a else a.shape[2]
    for i in range(cuda.grid(1), batch * m * n, cuda.gridsize(1)):
        s, r, c = i // (m * n), (i // n) % m, i % n
        acc = (a[s, 0, r] if trans_a else a[s, r, 0]) * (b[s, c, 0] if trans_b else b[s, 0, c])
        for t in range(1, k):
            acc += (a[s, t, r] if trans_a else a[s, r, t]) * (b[s, c, t] if trans_b else b[s, t, c])
        out[s, r, c] = acc


@functools.cache
def _matmul_kernel(dtype: np.dtype, tile: int):
    """The tiled kernel for one dtype and tile size (shared arrays need both as constants).

    A block of (tile, tile) threads computes one tile of out at a time, striding over the
    tiles of all batch entries; along k it stages one tile of each operand in shared memory.
    ``trans_a``/``trans_b`` say the buffer holds the operand's transpose, (B, k, m) or
    (B, n, k): the load then swaps thread roles so that reads stay coalesced.
    """
    scalar = np.dtype(dtype).type
    pad = tile + 1                  # a padded row: column accesses of a tile avoid bank conflicts

    @cuda.jit
    def matmul_tiles(a, b, out, trans_a, trans_b):
        a_tile = cuda.shared.array((tile, pad), scalar)     # a_tile[r, t] = A[r0 + r, k0 + t]
        b_tile = cuda.shared.array((tile, pad), scalar)     # b_tile[t, c] = B[k0 + t, c0 + c]
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        batch, m, n = out.shape
        k = a.shape[1] if trans_a else a.shape[2]
        rows, cols = (m + tile - 1) // tile, (n + tile - 1) // tile
        for job in range(cuda.blockIdx.x, batch * rows * cols, cuda.gridDim.x):
            s = job // (rows * cols)
            r0, c0 = (job // cols) % rows * tile, job % cols * tile
            acc = scalar(0)
            for k0 in range(0, k, tile):
                if trans_a:         # A[r, t] = a[s, t, r]: consecutive tx read consecutive r
                    r, t = r0 + tx, k0 + ty
                    a_tile[tx, ty] = a[s, t, r] if r < m and t < k else scalar(0)
                else:
                    r, t = r0 + ty, k0 + tx
                    a_tile[ty, tx] = a[s, r, t] if r < m and t < k else scalar(0)
                if trans_b:         # B[t, c] = b[s, c, t]
                    t, c = k0 + tx, c0 + ty
                    b_tile[tx, ty] = b[s, c, t] if t < k and c < n else scalar(0)
                else:
                    t, c = k0 + ty, c0 + tx
                    b_tile[ty, tx] = b[s, t, c] if t < k and c < n else scalar(0)
                cuda.syncthreads()
                for t in range(tile):
                    acc += a_tile[ty, t] * b_tile[t, tx]
                cuda.syncthreads()
            if r0 + ty < m and c0 + tx < n:
                out[s, r0 + ty, c0 + tx] = acc

    return matmul_tiles


def matmul(a, b, out, trans_a: bool = False, trans_b: bool = False,
           tiled: bool | None = None) -> None:
    """out[s] = A[s] @ B[s] for stacks a (B, m, k), b (B, k, n), out (B, m, n).

    With ``trans_a`` the buffer ``a`` holds Aᵀ, shape (B, k, m); with ``trans_b``, ``b``
    holds Bᵀ, (B, n, k); so a transpose feeding a matmul need not be materialized.
    ``tiled`` picks the kernel: by default the tiled one on a GPU, `_matmul_rows` in the
    simulator.
    """
    if a.ndim != 3 or b.ndim != 3 or out.ndim != 3:
        raise ValueError(f"matmul: expected stacks of matrices, got {a.shape}, {b.shape}, "
                         f"{out.shape}")
    batch, m, n = out.shape
    k = a.shape[1] if trans_a else a.shape[2]
    a_want = (batch, k, m) if trans_a else (batch, m, k)
    b_want = (batch, n, k) if trans_b else (batch, k, n)
    if tuple(a.shape) != a_want or tuple(b.shape) != b_want:
        raise ValueError(f"matmul: shapes {a.shape} (trans_a={trans_a}) and {b.shape} "
                         f"(trans_b={trans_b}) do not give {out.shape}")
    if not (a.dtype == b.dtype == out.dtype):
        raise TypeError(f"matmul: dtypes {a.dtype}, {b.dtype}, {out.dtype} differ")
    if out.size == 0:
        return
    if k == 0:
        fill(out, 0)
        return
    flags = bool(trans_a), bool(trans_b)
    if tiled is None:
        tiled = not simulated()
    if tiled:
        blocks, threads = tiled_matmul_launch(batch * -(-m // TILE) * -(-n // TILE), TILE)
        _matmul_kernel(out.dtype, TILE)[blocks, threads](a, b, out, *flags)
    else:
        blocks, threads = library_launch(out.size)
        _matmul_rows[blocks, threads](a, b, out, *flags)


# ---------------------------------------------------------------------------------------------
# philox: counter-based random numbers (jitgrad.ops.random defines the streams)
# ---------------------------------------------------------------------------------------------

@cuda.jit
def _philox_words(key, tweak, words, counters):
    """Words of ``counters`` Philox4x32-10 blocks per stream: thread i makes block i."""
    low = np.uint64(0xFFFFFFFF)
    for i in range(cuda.grid(1), key.shape[0] // 2 * counters, cuda.gridsize(1)):
        b, c = i // counters, np.uint64(i % counters)
        c0, c1 = c & low, c >> np.uint64(32)
        c2, c3 = np.uint64(tweak[2 * b]), np.uint64(tweak[2 * b + 1])
        k0, k1 = np.uint64(key[2 * b]), np.uint64(key[2 * b + 1])
        for _ in range(10):
            p0, p1 = np.uint64(0xD2511F53) * c0, np.uint64(0xCD9E8D57) * c2
            c0, c1, c2, c3 = (p1 >> np.uint64(32)) ^ c1 ^ k0, p1 & low, (p0 >> np.uint64(32)) ^ c3 ^ k1, p0 & low
            k0, k1 = (k0 + np.uint64(0x9E3779B9)) & low, (k1 + np.uint64(0xBB67AE85)) & low
        words[4 * i], words[4 * i + 1], words[4 * i + 2], words[4 * i + 3] = c0, c1, c2, c3


@cuda.jit
def _words_as_bits(words, out, m, per_stream):
    for i in range(cuda.grid(1), out.shape[0], cuda.gridsize(1)):
        out[i] = words[i // m * per_stream + i % m]


@cuda.jit
def _words_as_float32(words, out, m, per_stream):
    for i in range(cuda.grid(1), out.shape[0], cuda.gridsize(1)):
        w = words[i // m * per_stream + i % m]
        out[i] = np.float32(np.float64(w >> np.uint32(8)) * 5.9604644775390625e-08)       # 2^-24


@cuda.jit
def _words_as_float64(words, out, m, per_stream):
    for i in range(cuda.grid(1), out.shape[0], cuda.gridsize(1)):
        at = i // m * per_stream + 2 * (i % m)
        hi, lo = words[at] >> np.uint32(5), words[at + 1] >> np.uint32(6)
        out[i] = (np.float64(hi) * 67108864.0 + np.float64(lo)) * 1.1102230246251565e-16    # 2^-53


_CONVERT = {np.dtype(np.uint32): _words_as_bits, np.dtype(np.float32): _words_as_float32,
            np.dtype(np.float64): _words_as_float64}


def philox(key, tweak, out) -> None:
    """out (streams x elements, any shape) from the streams of ``key`` and ``tweak`` (..., 2)."""
    streams = key.size // 2
    if not out.size:
        return
    m = out.size // streams
    per_element = 2 if out.dtype == np.float64 else 1
    counters = -(-m * per_element // 4)
    words = cuda.device_array(streams * counters * 4, np.uint32)
    blocks, threads = library_launch(streams * counters)
    _philox_words[blocks, threads](_flat(key), _flat(tweak), words, counters)
    blocks, threads = library_launch(out.size)
    _CONVERT[np.dtype(out.dtype)][blocks, threads](words, _flat(out), m, counters * 4)


# ---------------------------------------------------------------------------------------------
# Every kernel and the signatures it is compiled for (the PTX test)
# ---------------------------------------------------------------------------------------------

def _signatures(make, dtypes=(types.float64, types.float32, types.int64)):
    return [make(t) for t in dtypes]


_RANK = 3                                   # a representative rank for the tuple arguments
_ints = types.UniTuple(types.int64, _RANK)
_quad, _six = types.UniTuple(types.int64, 4), types.UniTuple(types.int64, 6)
_stack = lambda t: t[:, :, ::1]             # noqa: E731



def _matmul_args(t):
    return _stack(t), _stack(t), _stack(t), types.boolean, types.boolean


KERNELS = [
    ("fill", _fill, _signatures(lambda t: (t[::1], t))),
    ("copy_strided", _copy_strided,
     _signatures(lambda t: (t[::1], t[::1], _ints, _ints, _ints, types.int64))),
    ("unslice", _unslice, _signatures(lambda t: (t[::1], t[::1], _ints, _ints, _ints, _ints))),
    ("scatter_add", _scatter_add,
     _signatures(lambda t: (t[::1], types.int64[::1], t[::1], types.int64, types.int64,
                            types.int32[::1]))),
    ("unpatches", _unpatches, _signatures(lambda t: (t[::1], t[::1], _quad, _quad, _six, _six, t))),
    ("argsort", _argsort, _signatures(lambda t: (t[::1], types.int64[::1], types.int64, types.int64,
                                                 types.boolean))),
    ("tie_average", _tie_average, _signatures(lambda t: (t[::1], t[::1], t[::1], types.int64, types.int64),
                                              (types.float64, types.float32))),
    ("matmul_rows", _matmul_rows, _signatures(_matmul_args)),
    ("philox_words", _philox_words, [(types.uint32[::1], types.uint32[::1], types.uint32[::1], types.int64)]),
] + [
    (f"words_as_{name}", kernel, [(types.uint32[::1], t[::1], types.int64, types.int64)])
    for name, kernel, t in (("bits", _words_as_bits, types.uint32), ("float32", _words_as_float32, types.float32),
                            ("float64", _words_as_float64, types.float64))
] + [
    (f"matmul_{np.dtype(dt).name}", _matmul_kernel(np.dtype(dt), TILE), [_matmul_args(t)])
    for dt, t in ((np.float64, types.float64), (np.float32, types.float32), (np.int64, types.int64))
]
