"""Optimizers as graph transforms: each returns the ``updates`` dict of ``jg.compile``.

An optimizer differentiates the loss, builds the new values of the params from
the gradients, and creates its state (velocities, moments, the step count) as
params of its own.  So the state lives wherever the params live, is updated in
the same compiled call, and is saved with them (``jg.save_params``).  State
params are named after the param they belong to (``W__adam_m``), so a
checkpoint written by one process loads in another.

``lr`` is a Python number or a scalar Tensor (an input, for schedules).
"""
from __future__ import annotations

import numpy as np

from . import functions as F
from .autodiff import grad
from .graph import Tensor, param

__all__ = ["sgd", "adam", "adamw"]


def _params(name: str, params) -> list[Tensor]:
    params = [params] if isinstance(params, Tensor) else list(params)
    if not params:
        raise ValueError(f"{name}: no params to optimize")
    for p in params:
        if not isinstance(p, Tensor) or not p.is_param:
            raise TypeError(f"{name}: params must be jg.param Tensors, got {p!r}")
        if p.dtype.kind != "f":
            raise TypeError(f"{name}: param {p.name!r} has dtype {p.dtype}; only float params train")
    if len({p.name for p in params}) != len(params):
        raise ValueError(f"{name}: params must have distinct names, got {[p.name for p in params]}")
    return params


def _rate(name: str, lr):
    if isinstance(lr, Tensor):
        if lr.ndim != 0:
            raise ValueError(f"{name}: lr must be a scalar, got a Tensor of shape {lr.shape}")
        return lr
    lr = float(lr)
    if not lr >= 0:
        raise ValueError(f"{name}: lr must be a non-negative number, got {lr}")
    return lr


def _state(p: Tensor, kind: str) -> Tensor:
    return param(f"{p.name}__{kind}", np.zeros(p.shape, p.dtype))


def _like(value, p: Tensor):
    """``value`` in the param's dtype (a float64 learning rate must not promote float32 params)."""
    return F.astype(value, p.dtype) if value.dtype != p.dtype else value


def sgd(loss, params, lr, momentum: float = 0.0, nesterov: bool = False,
        weight_decay: float = 0.0, grads=None) -> dict:
    """Stochastic gradient descent, as PyTorch's ``torch.optim.SGD`` (no dampening):

        g = dL/dp + weight_decay p;  v = momentum v + g;
        p -= lr (g + momentum v) if nesterov else lr v      (v = g without momentum)

    ``grads``: the gradients to use instead of dL/dp (``jg.distributed.data_parallel``
    passes them averaged over the ranks).
    """
    params, lr = _params("sgd", params), _rate("sgd", lr)
    if nesterov and momentum <= 0:
        raise ValueError("sgd: nesterov momentum needs momentum > 0")
    updates = {}
    for p, g in zip(params, _gradients(loss, params, grads)):
        if weight_decay:
            g = g + weight_decay * p
        step = g
        if momentum:
            v = _state(p, "sgd_velocity")
            v_new = momentum * v + g
            updates[v] = v_new
            step = g + momentum * v_new if nesterov else v_new
        updates[p] = _like(p - lr * step, p)
    return updates


def _gradients(loss, params, grads):
    if grads is None:
        return grad(loss, params)
    grads = list(grads)
    if len(grads) != len(params):
        raise ValueError(f"{len(grads)} gradients for {len(params)} params")
    return grads


def _adam(name, loss, params, lr, b1, b2, eps, weight_decay, grads=None) -> dict:
    params, lr = _params(name, params), _rate(name, lr)
    for what, value in (("b1", b1), ("b2", b2)):
        if not 0 <= value < 1:
            raise ValueError(f"{name}: {what} must be in [0, 1), got {value}")
    count = param(f"{params[0].name}__{name}_step", np.zeros((), np.float64))
    t = count + 1.0
    updates = {count: t}
    first_fix, second_fix = 1.0 - F.power(b1, t), 1.0 - F.power(b2, t)     # bias corrections
    for p, g in zip(params, _gradients(loss, params, grads)):
        m, v = _state(p, f"{name}_m"), _state(p, f"{name}_v")
        m_new, v_new = b1 * m + (1.0 - b1) * g, b2 * v + (1.0 - b2) * (g * g)
        m_hat, v_hat = m_new / _like(first_fix, p), v_new / _like(second_fix, p)
        step = m_hat / (F.sqrt(v_hat) + eps)
        if weight_decay:
            step = step + weight_decay * p
        updates.update({m: m_new, v: v_new, p: _like(p - lr * step, p)})
    return updates


def adam(loss, params, lr=1e-3, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, grads=None) -> dict:
    """Adam (Kingma & Ba, 2015), bias-corrected, ``eps`` added to ``sqrt(v_hat)``:

        m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g²;  t += 1
        p -= lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
    """
    return _adam("adam", loss, params, lr, b1, b2, eps, 0.0, grads)


def adamw(loss, params, lr=1e-3, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
          weight_decay: float = 1e-2, grads=None) -> dict:
    """AdamW (Loshchilov & Hutter, 2019), as ``torch.optim.AdamW``: Adam with the weight
    decay applied to the param directly, not through the moments:

        p -= lr (m_hat / (sqrt(v_hat) + eps) + weight_decay p)
    """
    return _adam("adamw", loss, params, lr, b1, b2, eps, weight_decay, grads)
