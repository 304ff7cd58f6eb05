"""Philox4x32-10 for the CPU target's programs: the loops of the ``philox`` primitive.

Each function fills a stack of streams, ``out[b]`` from ``key[b]`` and ``tweak[b]``, exactly
as ``jitgrad.ops.random`` defines them (its NumPy reference is the oracle): element n
of uint32 bits is word n mod 4 of counter n div 4; a float64 takes two words, a float32
one.  The 32-bit words are held in uint64 so that a product keeps all 64 bits.
"""
import numpy as np
from numba import njit

_M0, _M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
_W0, _W1 = np.uint64(0x9E3779B9), np.uint64(0xBB67AE85)
_LOW, _32 = np.uint64(0xFFFFFFFF), np.uint64(32)


@njit(inline="always", cache=True)
def philox4x32(c0, c1, c2, c3, k0, k1):
    """Ten rounds on the counter (c0, c1, c2, c3) with the key (k0, k1): four words."""
    for _ in range(10):
        p0, p1 = _M0 * c0, _M1 * c2
        c0, c1, c2, c3 = (p1 >> _32) ^ c1 ^ k0, p1 & _LOW, (p0 >> _32) ^ c3 ^ k1, p0 & _LOW
        k0, k1 = (k0 + _W0) & _LOW, (k1 + _W1) & _LOW
    return c0, c1, c2, c3


@njit(inline="always", cache=True)
def _block(key, tweak, b, c):
    """The four words of counter c of stream b."""
    counter = np.uint64(c)
    return philox4x32(counter & _LOW, counter >> _32, np.uint64(tweak[b, 0]), np.uint64(tweak[b, 1]),
                      np.uint64(key[b, 0]), np.uint64(key[b, 1]))


@njit(cache=True)
def fill_bits(key, tweak, out):
    for b in range(out.shape[0]):
        for c in range((out.shape[1] + 3) // 4):
            w = _block(key, tweak, b, c)
            for j in range(min(4, out.shape[1] - 4 * c)):
                out[b, 4 * c + j] = np.uint32(w[j])


@njit(cache=True)
def fill_float32(key, tweak, out):
    """(w >> 8) 2^-24: 24 random bits, exactly a float32 in [0, 1)."""
    for b in range(out.shape[0]):
        for c in range((out.shape[1] + 3) // 4):
            w = _block(key, tweak, b, c)
            for j in range(min(4, out.shape[1] - 4 * c)):
                out[b, 4 * c + j] = np.float32(np.float64(w[j] >> np.uint64(8)) * 2.0 ** -24)


@njit(cache=True)
def fill_float64(key, tweak, out):
    """((w0 >> 5) 2^26 + (w1 >> 6)) 2^-53: 53 random bits, exactly a float64 in [0, 1)."""
    for b in range(out.shape[0]):
        for c in range((out.shape[1] + 1) // 2):
            w = _block(key, tweak, b, c)
            out[b, 2 * c] = (np.float64(w[0] >> np.uint64(5)) * 67108864.0 + np.float64(w[1] >> np.uint64(6))) \
                * 2.0 ** -53
            if 2 * c + 1 < out.shape[1]:
                out[b, 2 * c + 1] = (np.float64(w[2] >> np.uint64(5)) * 67108864.0
                                     + np.float64(w[3] >> np.uint64(6))) * 2.0 ** -53
