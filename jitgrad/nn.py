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


def cross_entropy(logits, labels, *, label_smoothing: float = 0.0, weight=None, ignore_index=None,
                  reduction: str = "mean") -> Tensor:
    """Mean over the batch of -log softmax(logits)[label]; ``labels`` are class indices
    (negative ones count from the end, as in NumPy indexing; others out of range raise
    IndexError when the function runs).  The classes are the last axis of ``logits``.

    As PyTorch's: ``weight`` (one per class) scales each example's loss by its label's weight,
    and the mean is then the weighted mean (divided by the sum of those weights); examples whose
    label is ``ignore_index`` count for nothing (nor in the mean's denominator; compared before
    negative labels are wrapped); ``label_smoothing`` ε mixes in the loss against the uniform
    distribution: (1 - ε) nll + ε/C Σ_c w_c (-log p_c), its mean taken with the same divisor;
    ``reduction`` is "mean", "sum" or "none" (the loss of each example, 0 where ignored)."""
    logits, labels = F.as_tensor(logits), F.as_tensor(labels)
    if logits.ndim != labels.ndim + 1:
        raise ValueError(f"cross_entropy: logits of shape {logits.shape} need labels of rank "
                         f"{logits.ndim - 1}, got shape {labels.shape}")
    if reduction not in _REDUCTIONS:
        raise ValueError(f"cross_entropy: reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    plain = label_smoothing == 0 and weight is None and ignore_index is None and reduction == "mean"
    kept = None
    if ignore_index is not None:
        kept = F.not_equal(labels, ignore_index)
        labels = F.where(kept, labels, F.zeros_like(labels))     # a safe index for the gather
    # rows of the identity picked by a gather, which raises IndexError for a label out of range
    # (an equality test against arange would silently give a wrong loss)
    picked = F.greater(F.take(np.eye(logits.shape[-1], dtype=logits.dtype), labels, axis=0), 0)
    log_p = log_softmax(logits, axis=-1)
    if plain:
        return F.negative(F.mean(F.sum(F.where(picked, log_p, 0.0), axis=-1)))
    w = None if weight is None else F.astype(F.as_tensor(weight), log_p.dtype)
    if w is not None and w.ndim != 1:
        raise ValueError(f"cross_entropy: weight must be 1-d (one per class), got shape {w.shape}")
    weighted = log_p if w is None else F.multiply(log_p, w)
    nll = F.negative(F.sum(F.where(picked, weighted, 0.0), axis=-1))
    example_weight = F.ones_like(nll) if w is None else F.sum(F.where(picked, w, 0.0), axis=-1)
    if kept is not None:
        nll = F.where(kept, nll, 0.0)
        example_weight = F.where(kept, example_weight, 0.0)
    loss = nll
    if label_smoothing:
        smooth = F.where(kept, F.negative(F.sum(weighted, axis=-1)), 0.0) if kept is not None \
            else F.negative(F.sum(weighted, axis=-1))
        loss = F.add(F.multiply(1.0 - label_smoothing, nll),
                     F.multiply(label_smoothing / logits.shape[-1], smooth))
    if reduction == "none":
        return loss
    if reduction == "sum":
        return F.sum(loss)
    return F.divide(F.sum(loss), F.sum(example_weight))


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


# -- more losses and layers (PyTorch's semantics) -------------------------------------------------

_REDUCTIONS = ("mean", "sum", "none")


def _reduce(loss: Tensor, reduction: str, name: str) -> Tensor:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{name}: reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    return F.mean(loss) if reduction == "mean" else F.sum(loss) if reduction == "sum" else loss


def binary_cross_entropy_with_logits(logits, targets, weight=None, pos_weight=None,
                                     reduction: str = "mean") -> Tensor:
    """-w [p y log sigmoid(x) + (1 - y) log(1 - sigmoid(x))] with ``p = pos_weight`` (broadcast
    along the last axis, one per class) and ``w = weight``, as PyTorch's; computed as
    p y softplus(-x) + (1 - y) softplus(x), which neither overflows, takes log(0) nor cancels."""
    x = F.as_tensor(logits)
    if x.dtype.kind != "f":
        x = F.astype(x, np.float64)
    y = F.astype(F.as_tensor(targets), x.dtype)
    positive = F.multiply(y, F.softplus(F.negative(x)))    # -y log sigmoid(x)
    if pos_weight is not None:
        positive = F.multiply(pos_weight, positive)
    loss = F.add(positive, F.multiply(F.subtract(1.0, y), F.softplus(x)))   # -(1 - y) log(1 - sigmoid(x))
    if weight is not None:
        loss = F.multiply(loss, weight)
    return _reduce(loss, reduction, "binary_cross_entropy_with_logits")


def embedding(indices, table) -> Tensor:
    """Rows of ``table`` (num, dim) picked by integer ``indices`` (any shape): shape
    ``indices.shape + (dim,)``; the gradient adds up over repeated indices."""
    table = F.as_tensor(table)
    if table.ndim != 2:
        raise ValueError(f"embedding: the table must be 2-d (num, dim), got shape {table.shape}")
    return F.take(table, indices, axis=0)


def scaled_dot_product_attention(q, k, v, mask=None, is_causal: bool = False, scale=None) -> Tensor:
    """softmax(q kᵀ scale + mask) v over the last two axes, as PyTorch's: q (..., L, E), k (..., S, E),
    v (..., S, Ev); ``scale`` defaults to 1/sqrt(E).  A boolean ``mask`` (broadcast to (L, S)) marks
    the keys each query may attend to, a float one is added to the scores; ``is_causal`` lets query
    i attend to keys j <= i.  A query that may attend to no key gets NaN, as in PyTorch's formula."""
    q, k, v = F.as_tensor(q), F.as_tensor(k), F.as_tensor(v)
    if min(q.ndim, k.ndim, v.ndim) < 2:
        raise ValueError(f"scaled_dot_product_attention: q, k and v need at least 2 axes, got shapes "
                         f"{q.shape}, {k.shape}, {v.shape}")
    if is_causal and mask is not None:
        raise ValueError("scaled_dot_product_attention: give either mask or is_causal, not both")
    e = q.dims[-1]
    if scale is None:
        if not isinstance(e, int):
            raise ValueError("scaled_dot_product_attention: the default scale needs a fixed size of q's last axis")
        scale = 1.0 / np.sqrt(e)
    k_t = F.transpose(k, tuple(range(k.ndim - 2)) + (k.ndim - 1, k.ndim - 2))
    scores = F.multiply(F.matmul(q, k_t), scale)
    if is_causal:
        length, source = q.dims[-2], k.dims[-2]
        if not (isinstance(length, int) and isinstance(source, int)):
            raise ValueError("scaled_dot_product_attention: is_causal needs fixed query and key lengths")
        mask = np.tril(np.ones((length, source), bool))
    if mask is not None:
        mask = F.as_tensor(mask)
        scores = F.where(mask, scores, -np.inf) if mask.dtype == np.bool_ else F.add(scores, mask)
    return F.matmul(softmax(scores, axis=-1), v)
