"""Neural-network helpers built from the primitives (``jg.nn``)."""
from __future__ import annotations

import numpy as np

from . import functions as F, random
from .convolution import (avg_pool2d, conv1d, conv2d, conv_transpose2d, flatten,  # noqa: F401  (jg.nn's)
                          global_avg_pool2d, max_pool2d)
from .normalization import batch_norm, layer_norm  # noqa: F401
from .graph import Tensor
from .ops._shapes import normalize_axes


def _softmax_axes(x: Tensor, axis, name: str) -> tuple:
    """Checked here so that errors name the function called; a 0-d ``x`` takes the
    default ``axis=-1`` as scipy.special.softmax does."""
    return normalize_axes(axis, x.ndim, name, int_axis_of_0d=True)


def softmax(x, axis=-1) -> Tensor:
    """exp(x) / sum(exp(x)) along ``axis``, with the max subtracted first."""
    x = F.as_tensor(x)
    axes = _softmax_axes(x, axis, "softmax")
    e = F.exp(F.subtract(x, F.stop_gradient(F.max(x, axes, keepdims=True))))
    return F.divide(e, F.sum(e, axes, keepdims=True))


def log_softmax(x, axis=-1) -> Tensor:
    """log(softmax(x)) along ``axis``, computed stably (x - logsumexp(x))."""
    x = F.as_tensor(x)
    return F.subtract(x, F.logsumexp(x, _softmax_axes(x, axis, "log_softmax"), keepdims=True))


# -- activations (PyTorch's definitions; derivatives at the kinks as PyTorch's) ------------------

_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def selu(x) -> Tensor:
    """scale * (x if x > 0 else alpha * (e^x - 1)), with PyTorch's alpha and scale."""
    return F.multiply(_SELU_SCALE, F.elu(x, _SELU_ALPHA))


def celu(x, alpha: float = 1.0) -> Tensor:
    """x if x > 0 else alpha * (e^(x/alpha) - 1)."""
    if alpha == 0:
        raise ValueError("celu: alpha must not be 0")
    x = F.as_tensor(x)
    return F.where(F.greater(x, 0), x, F.multiply(alpha, F.expm1(F.divide(x, alpha))))


def softsign(x) -> Tensor:
    """x / (1 + |x|)."""
    return F.divide(x, F.add(1.0, F.abs(x)))


def log_sigmoid(x) -> Tensor:
    """log(sigmoid(x)) = -softplus(-x): no overflow or log(0) for large |x|."""
    return F.negative(F.softplus(F.negative(x)))


def relu6(x) -> Tensor:
    """min(max(x, 0), 6); the derivative is 1 strictly inside (0, 6), else 0."""
    x = F.as_tensor(x)
    return F.where(F.greater(x, 0), F.where(F.less(x, 6), x, 6.0), 0.0)


def hard_sigmoid(x) -> Tensor:
    """relu6(x + 3) / 6: 0 for x <= -3, 1 for x >= 3; the derivative is 1/6 strictly between."""
    x = F.as_tensor(x)
    inside = F.logical_and(F.greater(x, -3), F.less(x, 3))
    return F.where(F.greater_equal(x, 3), 1.0, F.where(inside, F.add(F.divide(x, 6.0), 0.5), 0.0))


def hard_swish(x) -> Tensor:
    """x * relu6(x + 3) / 6: 0 for x < -3, x for x > 3, x (x + 3) / 6 between (ends included,
    so its derivative at -3 and 3 is PyTorch's: x/3 + 1/2)."""
    x = F.as_tensor(x)
    middle = F.divide(F.multiply(x, F.add(x, 3.0)), 6.0)
    return F.where(F.less(x, -3), 0.0, F.where(F.greater(x, 3), x, middle))


def mish(x) -> Tensor:
    """x * tanh(softplus(x))."""
    x = F.as_tensor(x)
    return F.multiply(x, F.tanh(F.softplus(x)))


def one_hot(labels, n: int, dtype="float64") -> Tensor:
    """``(..., n)`` array with 1 at each label's index."""
    labels = F.as_tensor(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"one_hot: labels must be integers, got dtype {labels.dtype}")
    classes = F.as_tensor(np.arange(n, dtype=labels.dtype))
    return F.astype(F.equal(F.expand_dims(labels, -1), classes), dtype)


def cross_entropy(logits, labels) -> Tensor:
    """Mean over the batch of -log softmax(logits)[label]; ``labels`` are class indices
    (negative ones count from the end, as in NumPy indexing; others out of range raise
    IndexError when the function runs)."""
    logits, labels = F.as_tensor(logits), F.as_tensor(labels)
    if logits.ndim != labels.ndim + 1:
        raise ValueError(f"cross_entropy: logits of shape {logits.shape} need labels of rank "
                         f"{logits.ndim - 1}, got shape {labels.shape}")
    # rows of the identity picked by a gather, which raises IndexError for a label out of range
    # (an equality test against arange would silently give a wrong loss)
    picked = F.greater(F.take(np.eye(logits.shape[-1], dtype=logits.dtype), labels, axis=0), 0)
    log_p = log_softmax(logits, axis=-1)
    return F.negative(F.mean(F.sum(F.where(picked, log_p, 0.0), axis=-1)))


def mse(pred, target) -> Tensor:
    """Mean over all elements of (pred - target)^2."""
    return F.mean(F.square(F.subtract(pred, target)))


def dense(x, W, b) -> Tensor:
    """x @ W + b, with ``W`` of shape (in, out)."""
    return F.add(F.matmul(x, W), b)


def dropout(x, rate: float, key, training: bool = True) -> Tensor:
    """Inverted dropout: each element is kept with probability ``1 - rate`` and scaled by
    ``1 / (1 - rate)`` (so its expectation is ``x``), or zeroed; ``x`` itself when not
    ``training`` or when ``rate`` is 0.  ``key`` is a ``jg.random`` key: advance it between
    steps (a key param updated with ``jg.random.split``) for new masks."""
    x = F.as_tensor(x)
    if not 0 <= rate < 1:
        raise ValueError(f"dropout: rate must be in [0, 1), got {rate}")
    if not training or rate == 0:
        return x
    dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.dtype(np.float64)
    keep = F.greater_equal(random.uniform(key, x.dims, dtype), rate)
    return F.where(keep, F.multiply(x, 1.0 / (1.0 - rate)), 0.0)
