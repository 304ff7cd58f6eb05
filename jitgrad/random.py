"""Random numbers inside compiled graphs: counter-based, so the same bits on every target.

A key is a uint32 Tensor of shape (2,), a value in the graph like any other: a
constant (``key(seed)``), an input, or a param advanced through ``updates``
(``{k: split(k)[0]}``) so that each call draws a new stream.  Draws are pure
functions of the key (Philox4x32-10, ``jitgrad.ops.random``): they fuse into the
program, run in parallel, and give bit-identical streams on ``numpy``, ``cpu``
and ``cuda``.  As in JAX, a key used for a draw should not be used again:
``split`` it first.

``categorical`` (Gumbel-max: ``argmax`` of the logits plus Gumbel noise) and
``permutation`` (``argsort`` of uniform draws) follow ``jax.random``'s semantics.
"""
from __future__ import annotations

import numpy as np

from . import functions as F
from .graph import Tensor, as_dtype, bind, constant
from .ops.random import philox_p
from .ops._shapes import normalize_axis
from .primitive import Dim

_DRAW, _SPLIT, _FOLD_IN = 0, 1, 2          # the tweak's second word: keeps the three apart


def key(seed: int) -> Tensor:
    """The key of an integer seed (0 <= seed < 2^64): its low and high 32 bits."""
    seed = int(seed)
    if not 0 <= seed < 2 ** 64:
        raise ValueError(f"random.key: seed must be in [0, 2^64), got {seed}")
    return constant(np.array([seed & 0xFFFFFFFF, seed >> 32], np.uint32))


def split(key: Tensor, num: int = 2) -> Tensor:
    """``num`` new keys, shape (num, 2): ``k1, k2 = split(key)``."""
    key = _key(key, "split")
    if not isinstance(num, (int, np.integer)) or num < 1:
        raise ValueError(f"random.split: num must be a positive int, got {num!r}")
    return bind(philox_p, key, _tweak(0, _SPLIT), shape=(int(num), 2), dtype=np.dtype(np.uint32))


def fold_in(key: Tensor, data) -> Tensor:
    """A new key from ``key`` and an integer (a Python int or an integer Tensor, e.g. a step or
    a rank), taken modulo 2^32: different data, independent streams."""
    key = _key(key, "fold_in")
    if isinstance(data, Tensor):
        if not np.issubdtype(data.dtype, np.integer) or data.ndim:
            raise TypeError(f"random.fold_in: data must be an integer scalar, got {data.dtype}{list(data.shape)}")
        word = F.astype(data, "uint32")
        tweak = F.concatenate([F.reshape(word, (1,)), constant(np.array([_FOLD_IN], np.uint32))], axis=0)
    else:
        tweak = _tweak(int(data) % 2 ** 32, _FOLD_IN)
    return bind(philox_p, key, tweak, shape=(2,), dtype=np.dtype(np.uint32))


def bits(key: Tensor, shape=()) -> Tensor:
    """Random uint32 bits of ``shape``."""
    return _draw(key, shape, np.uint32, "bits")


def uniform(key: Tensor, shape=(), dtype="float64", minval=0.0, maxval=1.0) -> Tensor:
    """Uniform numbers in [minval, maxval): 53 random bits per float64, 24 per float32."""
    dtype = _float(dtype, "uniform")
    u = _draw(key, shape, dtype, "uniform")
    if (minval, maxval) == (0.0, 1.0):
        return u
    return F.add(F.multiply(u, F.subtract(maxval, minval)), minval)


def normal(key: Tensor, shape=(), dtype="float64") -> Tensor:
    """Standard normal numbers (Box-Muller on two uniform draws)."""
    dtype = _float(dtype, "normal")
    shape = _shape(shape, "normal")
    u = _draw(key, (2,) + shape, dtype, "normal")
    radius = F.sqrt(F.multiply(F.log(F.subtract(1.0, u[0])), -2.0))      # 1 - u is in (0, 1]
    return F.multiply(radius, F.cos(F.multiply(u[1], 2 * np.pi)))


def bernoulli(key: Tensor, p=0.5, shape=None) -> Tensor:
    """Booleans, true with probability ``p`` (a number or a Tensor, broadcast against ``shape``)."""
    p = F.as_tensor(p)
    shape = tuple(p.shape) if shape is None else _shape(shape, "bernoulli")
    return F.less(uniform(key, shape, p.dtype if np.issubdtype(p.dtype, np.floating) else "float64"), p)


def gumbel(key: Tensor, shape=(), dtype="float64") -> Tensor:
    """Standard Gumbel numbers, -log(-log(u)) of uniform draws u."""
    dtype = _float(dtype, "gumbel")
    return F.negative(F.log(F.negative(F.log(_draw(key, shape, dtype, "gumbel")))))


def categorical(key: Tensor, logits, axis: int = -1, shape=None) -> Tensor:
    """Class indices (int64) drawn with probabilities softmax(logits) along ``axis``, by the
    Gumbel-max trick, as ``jax.random.categorical``: the result has the logits' shape without
    ``axis``, or ``shape``, which must end in that shape (its leading sizes are independent
    draws).  A logit of -inf is never drawn."""
    from .reductions import argmax
    logits = F.as_tensor(logits)
    if logits.dtype.kind != "f":
        logits = F.astype(logits, np.float64)
    if logits.ndim == 0:
        raise ValueError("random.categorical: logits must have at least one axis")
    axis = normalize_axis(axis, logits.ndim, "random.categorical") - logits.ndim      # negative
    batch = logits.dims[:logits.ndim + axis] + (logits.dims[axis + 1:] if axis != -1 else ())
    shape = batch if shape is None else _shape(shape, "categorical")
    if len(shape) < len(batch) or tuple(shape[len(shape) - len(batch):]) != tuple(batch):
        raise ValueError(f"random.categorical: shape {shape} must end in the logits' shape without "
                         f"axis {axis}, {batch}")
    prefix = tuple(shape[:len(shape) - len(batch)])
    noise_shape = list(shape[len(prefix):])
    noise_shape.insert(len(noise_shape) + axis + 1, logits.dims[axis])
    noise = gumbel(key, prefix + tuple(noise_shape), logits.dtype)
    return argmax(F.add(noise, F.stop_gradient(logits)), axis=axis)


def permutation(key: Tensor, x, axis: int = 0, independent: bool = False) -> Tensor:
    """A random permutation, as ``jax.random.permutation``: of ``arange(x)`` (int64) for an
    int ``x``, else of ``x``'s slices along ``axis`` (each 1-d slice on its own if
    ``independent``).  The argsort of uniform draws: every order equally likely."""
    from .arrays import moveaxis
    from .sorting import _take_along_last, argsort
    if isinstance(x, (int, np.integer)) and not isinstance(x, bool):
        if x < 0:
            raise ValueError(f"random.permutation: n must be non-negative, got {x}")
        return argsort(uniform(key, (int(x),)))
    x = F.as_tensor(x)
    if x.ndim == 0:
        raise TypeError("random.permutation: x must be an int or an array with at least one axis")
    axis = normalize_axis(axis, x.ndim, "random.permutation")
    if not independent or x.ndim == 1:
        return F.take(x, argsort(uniform(key, (x.dims[axis],))), axis=axis)
    moved = moveaxis(x, axis, -1)
    return moveaxis(_take_along_last(moved, argsort(uniform(key, moved.dims), axis=-1)), -1, axis)


def _key(key, what: str) -> Tensor:
    key = F.as_tensor(key)
    if key.dtype != np.uint32 or key.shape != (2,):
        raise TypeError(f"random.{what}: a key is a uint32 Tensor of shape (2,) (jg.random.key(seed)), "
                        f"got {key.dtype}{list(key.shape)}; for many keys, use jg.vmap")
    return key


def _tweak(data: int, domain: int) -> Tensor:
    return constant(np.array([data, domain], np.uint32))


def _shape(shape, what: str) -> tuple:
    """A draw's shape: ints, or the call-time sizes of a Tensor's ``dims``."""
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    if not all(isinstance(d, Dim) or (isinstance(d, (int, np.integer)) and d >= 0) for d in shape):
        raise ValueError(f"random.{what}: shape must hold non-negative ints (or a Tensor's dims), got {shape}")
    return tuple(d if isinstance(d, Dim) else int(d) for d in shape)


def _float(dtype, what: str) -> np.dtype:
    dtype = as_dtype(dtype, f"random.{what}")
    if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"random.{what}: dtype must be float32 or float64, got {dtype}")
    return dtype


def _draw(key, shape, dtype, what: str) -> Tensor:
    return bind(philox_p, _key(key, what), _tweak(0, _DRAW), shape=_shape(shape, what), dtype=np.dtype(dtype))
