"""Normalization layers: ``jg.nn.batch_norm`` and ``jg.nn.layer_norm``.

jitgrad is functional, so ``batch_norm`` cannot update its running averages in
place as PyTorch's does: it returns them as an ``updates`` dict (param -> new
value) to merge with the optimizer's, and ``jg.compile(..., updates=...)``
applies them after the call, as it applies every parameter update.
"""
from __future__ import annotations

import numpy as np

from . import functions as F
from .graph import Tensor
from .ops._shapes import fmt_shape, normalize_axes

__all__ = ["batch_norm", "layer_norm"]


def _affine(name: str, y: Tensor, scale, shift, expected: tuple, shape: tuple) -> Tensor:
    """``y * scale + shift``: ``scale`` and ``shift`` (when given) have the shape ``expected``
    and broadcast against ``y`` reshaped to ``shape``."""
    for what, value in (("weight", scale), ("bias", shift)):
        if value is None:
            continue
        value = F.as_tensor(value)
        if value.dims != expected:
            raise ValueError(f"{name}: {what} must have shape {fmt_shape(expected)}, got {fmt_shape(value.dims)}")
        value = F.reshape(F.astype(value, y.dtype), shape)
        y = F.multiply(y, value) if what == "weight" else F.add(y, value)
    return y


def _floats(x) -> Tensor:
    x = F.as_tensor(x)
    return x if x.dtype.kind == "f" else F.astype(x, np.float64)


def batch_norm(x, running_mean=None, running_var=None, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5) -> tuple[Tensor, dict]:
    """Batch normalization over axis 1 (channels) of ``x`` (N, C, ...), as PyTorch's
    ``F.batch_norm`` (same arguments, same order); returns ``(y, updates)``.

    Training (or without running statistics): each channel is normalized by the batch's
    mean and biased variance, and ``updates`` maps ``running_mean``/``running_var`` (params
    of shape (C,)) to ``(1 - momentum) * old + momentum * batch``, the variance unbiased as
    PyTorch keeps it.  Inference (``training=False``): the running statistics normalize and
    ``updates`` is empty.  ``weight`` and ``bias`` (C,) scale and shift the result.
    """
    x = _floats(x)
    if x.ndim < 2:
        raise ValueError(f"batch_norm: x must have shape (N, C, ...), got {fmt_shape(x.dims)}")
    channels = x.dims[1]
    stats = [s for s in (running_mean, running_var) if s is not None]
    if len(stats) == 1:
        raise ValueError("batch_norm: give both running_mean and running_var, or neither")
    for what, s in zip(("running_mean", "running_var"), stats):
        if not isinstance(s, Tensor) or not s.is_param:
            raise TypeError(f"batch_norm: {what} must be a jg.param (its new value is an update), got {s!r}")
        if s.dims != (channels,):
            raise ValueError(f"batch_norm: {what} must have shape ({channels},) for {channels} channels, "
                             f"got {fmt_shape(s.dims)}")
    if not 0 <= momentum <= 1:
        raise ValueError(f"batch_norm: momentum must be in [0, 1], got {momentum}")
    shape = (1, channels) + (1,) * (x.ndim - 2)
    axes = (0,) + tuple(range(2, x.ndim))
    updates: dict = {}
    if training or not stats:
        mean = F.mean(x, axis=axes, keepdims=True)
        centred = F.subtract(x, mean)
        var = F.mean(F.square(centred), axis=axes, keepdims=True)
        if stats and training:
            count = F._count(x, axes, x.dtype)
            unbiased = F.multiply(var, F.divide(count, F.maximum(F.subtract(count, 1.0), 1.0)))
            for param, batch in zip(stats, (mean, unbiased)):
                batch = F.astype(F.reshape(F.stop_gradient(batch), (channels,)), param.dtype)
                updates[param] = F.add(F.multiply(1.0 - momentum, param), F.multiply(momentum, batch))
    else:
        mean, var = (F.reshape(F.astype(s, x.dtype), shape) for s in stats)
        centred = F.subtract(x, mean)
    y = F.divide(centred, F.sqrt(F.add(var, eps)))
    return _affine("batch_norm", y, weight, bias, (channels,), shape), updates


def layer_norm(x, axis=-1, eps=1e-5, weight=None, bias=None) -> Tensor:
    """Normalize ``x`` over ``axis`` (an int or a tuple: PyTorch's normalized shape is the
    trailing axes) by its mean and biased variance; ``weight`` and ``bias`` have the shape of
    those axes."""
    x = _floats(x)
    axes = normalize_axes(axis, x.ndim, "layer_norm")
    mean = F.mean(x, axis=axes, keepdims=True)
    centred = F.subtract(x, mean)
    var = F.mean(F.square(centred), axis=axes, keepdims=True)
    y = F.divide(centred, F.sqrt(F.add(var, eps)))
    shape = tuple(d if a in axes else 1 for a, d in enumerate(x.dims))
    return _affine("layer_norm", y, weight, bias, tuple(x.dims[a] for a in axes), shape)
