"""Counter-based random numbers: the ``philox`` primitive (Philox4x32-10).

Philox4x32-10 (Salmon, Moraes, Dror & Shaw, "Parallel random numbers: as easy as
1, 2, 3", SC 2011; the generator of cuRAND and of JAX's ``rbg`` keys) maps a
128-bit counter and a 64-bit key to 128 random bits with ten rounds of
multiplications and xors.  Being a pure function of (key, counter), it needs no
state: element ``n`` of a draw is a function of the key and ``n`` alone, so every
target computes the same bits, in any order, in parallel.

``philox(key, tweak, shape, dtype)``: ``key`` and ``tweak`` are uint32 arrays of
shape ``(..., 2)`` (leading axes: one stream per key, for ``vmap``).  Element
``n`` (in C order) of a stream takes word ``n mod 4`` of Philox4x32-10 with key
``(k0, k1)`` and counter ``(c mod 2^32, c div 2^32, t0, t1)``, ``c = n div 4``;
``tweak = (t0, t1)`` keeps draws, splits and fold-ins apart.  ``dtype`` uint32
gives the bits; float64 gives uniform numbers in [0, 1) from 53 bits of two
words (``(w0 >> 5) 2^26 + (w1 >> 6)) 2^-53``, the pair at element n taken from
``2 n`` and ``2 n + 1``); float32 from 24 bits of one word (``(w >> 8) 2^-24``).
These conversions are exact, so the numbers are the same on every target.
"""
from __future__ import annotations

import numpy as np

from ..primitive import Aval, Primitive
from ._shapes import fmt_shape

PHILOX_M = (0xD2511F53, 0xCD9E8D57)      # multipliers
PHILOX_W = (0x9E3779B9, 0xBB67AE85)      # key increments (Weyl sequence)
ROUNDS = 10


def philox4x32(counter, key):
    """Philox4x32-10 on arrays: ``counter`` is four uint32 arrays, ``key`` two (broadcast);
    returns the four uint32 words."""
    c0, c1, c2, c3 = (np.asarray(c, np.uint64) for c in counter)
    k0, k1 = (np.asarray(k, np.uint64) for k in key)
    mask = np.uint64(0xFFFFFFFF)
    for _ in range(ROUNDS):
        p0, p1 = np.uint64(PHILOX_M[0]) * c0, np.uint64(PHILOX_M[1]) * c2
        c0, c1, c2, c3 = ((p1 >> np.uint64(32)) ^ c1 ^ k0, p1 & mask, (p0 >> np.uint64(32)) ^ c3 ^ k1, p0 & mask)
        k0, k1 = (k0 + np.uint64(PHILOX_W[0])) & mask, (k1 + np.uint64(PHILOX_W[1])) & mask
    return tuple(c.astype(np.uint32) for c in (c0, c1, c2, c3))


def words_per_element(dtype) -> int:
    """32-bit words one element takes: two for float64, one otherwise."""
    return 2 if np.dtype(dtype) == np.float64 else 1


def _stream(key, tweak, n_words: int):
    """Words 0 .. n_words - 1 of the stream of every key: shape (..., n_words), uint32."""
    c = np.arange(-(-n_words // 4), dtype=np.uint64)
    key, tweak = np.asarray(key, np.uint32)[..., None, :], np.asarray(tweak, np.uint32)[..., None, :]
    words = philox4x32((c & np.uint64(0xFFFFFFFF), c >> np.uint64(32), tweak[..., 0], tweak[..., 1]),
                       (key[..., 0], key[..., 1]))
    stacked = np.stack(np.broadcast_arrays(*words), axis=-1)          # (..., counters, 4)
    return stacked.reshape(stacked.shape[:-2] + (-1,))[..., :n_words]


def from_words(words: np.ndarray, dtype) -> np.ndarray:
    """Bits as ``dtype``: uint32 as they are, float32 / float64 uniform in [0, 1)."""
    dtype = np.dtype(dtype)
    if dtype == np.uint32:
        return words
    if dtype == np.float32:
        return (words >> np.uint32(8)).astype(np.float32) * np.float32(2.0 ** -24)
    hi, lo = words[..., 0::2] >> np.uint32(5), words[..., 1::2] >> np.uint32(6)
    return (hi.astype(np.float64) * 67108864.0 + lo.astype(np.float64)) * 2.0 ** -53


def philox_reference(key, tweak, *, shape, dtype):
    batch = np.broadcast_shapes(key.shape[:-1], tweak.shape[:-1])
    size = int(np.prod(shape, dtype=np.int64))
    words = _stream(np.broadcast_to(key, batch + (2,)), np.broadcast_to(tweak, batch + (2,)),
                    size * words_per_element(dtype))
    return from_words(words, dtype).reshape(batch + tuple(shape))


def _philox_shape(key, tweak, *, shape, dtype):
    for name, x in (("key", key), ("tweak", tweak)):
        if x.dtype != np.uint32 or not x.dims or x.dims[-1] != 2:
            raise TypeError(f"random: a {name} is a uint32 array of shape (..., 2), got "
                            f"{x.dtype}{fmt_shape(x.dims)}")
    if key.dims[:-1] != tweak.dims[:-1]:
        raise ValueError(f"random: key of shape {fmt_shape(key.dims)} and tweak of shape "
                         f"{fmt_shape(tweak.dims)} differ")
    if np.dtype(dtype) not in (np.dtype(np.uint32), np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"random: draws are uint32, float32 or float64, not {np.dtype(dtype)}")
    return Aval(tuple(key.dims[:-1]) + tuple(shape), np.dtype(dtype))


def _philox_batch(b, batched, y, key, tweak, *, shape, dtype):
    size = next(x.dims[0] for x, f in zip((key, tweak), batched) if f)
    key, tweak = (x if f else b.broadcast_to(x, (size,) + x.dims) for x, f in zip((key, tweak), batched))
    return b.bind(philox_p, key, tweak, shape=shape, dtype=dtype)


philox_p = Primitive(
    "philox", shape=_philox_shape, ref=philox_reference, nin=2, attrs=("shape", "dtype"),
    vjp=None, jvp=None, differentiable=False, batch=_philox_batch,
    doc="Counter-based random numbers (Philox4x32-10): a stream per key (..., 2), element n "
        "from counter (n div 4, tweak), as uint32 bits or uniform floats in [0, 1).",
)

PRIMITIVES = (philox_p,)
