"""``jg.check_grads``: derivatives against central finite differences.

The method of autograd's ``check_grads``: the JVP along a random direction is
compared with a central difference along that direction, and the VJP with the
JVP by the inner-product identity ``<u, J v> = <J^T u, v>``.  With
``order=2`` the check is repeated on the derivative graphs themselves.
"""
from __future__ import annotations

import numpy as np

from . import functions as F
from .autodiff import jvp, vjp
from .compile import compile
from .graph import Tensor, input

# Defaults, in float64.  A central difference with step ``eps`` is off by about
# ``eps**2 |f3| / 6`` (truncation; f3 the third derivative) plus
# ``1e-16 |f| / eps`` (rounding).  At ``eps = 3e-6`` both are near 1e-11
# relative for O(1) arguments: every primitive in tests/test_primitives.py
# passes at order 2 with a margin of about 25x under ``rtol = 1e-7,
# atol = 1e-8``, while a derivative rule wrong by a relative 1.5e-6 still
# fails.  Pass coarser tolerances where ``f`` computes in float32 inside or the
# point is ill-conditioned.
DEFAULT_EPS = 3e-6
DEFAULT_RTOL = 1e-7
DEFAULT_ATOL = 1e-8


def _evaluate(fn, args, target="numpy"):
    xs = [input(f"x{i}", a.shape, "float64") for i, a in enumerate(args)]
    y = fn(*xs)
    if not isinstance(y, Tensor):
        raise TypeError(f"check_grads: f must return a Tensor, got {type(y).__name__}")
    return compile(xs, y, target=target)(*args)


def _compare(what: str, analytic, numeric, rtol: float, atol: float) -> None:
    analytic, numeric = np.asarray(analytic, np.float64), np.asarray(numeric, np.float64)
    err = np.abs(analytic - numeric)
    bound = atol + rtol * np.abs(numeric)
    if not np.all(err <= bound):   # also fails on NaN
        worst = np.unravel_index(np.nanargmax(np.where(np.isnan(err), np.inf, err - bound)), err.shape)
        raise AssertionError(f"check_grads: {what} mismatch: jitgrad gives {analytic[worst]!r}, "
                             f"expected {numeric[worst]!r} (at index {tuple(map(int, worst))}, "
                             f"|diff| {err[worst]:.3g}, tolerance {bound[worst]:.3g})")


def _check_once(f, args, modes, eps, rtol, atol, rng, order, stage, target):
    y0 = np.asarray(_evaluate(f, args, target))
    vs = [rng.standard_normal(a.shape) for a in args]
    plus = _evaluate(f, [a + eps * v for a, v in zip(args, vs)], target)
    minus = _evaluate(f, [a - eps * v for a, v in zip(args, vs)], target)
    numeric_jv = (np.asarray(plus) - np.asarray(minus)) / (2 * eps)

    def f_jvp(*xs):
        return jvp([f(*xs)], list(xs), [F.as_tensor(v) for v in vs])[0]

    if "fwd" in modes:
        _compare(f"JVP ({stage})", _evaluate(f_jvp, args, target), numeric_jv, rtol, atol)
    u = rng.standard_normal(y0.shape)

    def f_vjp(*xs):
        cts = vjp([f(*xs)], list(xs), [F.as_tensor(u)])
        return F.sum(F.stack([F.sum(F.multiply(ct, v)) for ct, v in zip(cts, vs)]))

    if "rev" in modes:
        reference = _evaluate(f_jvp, args, target) if "fwd" in modes else numeric_jv
        _compare(f"VJP ({stage}, <J^T u, v> vs <u, J v>)", _evaluate(f_vjp, args, target),
                 np.sum(u * np.asarray(reference)), rtol, atol)
    if order > 1:
        for mode, g in (("fwd", f_jvp), ("rev", f_vjp)):
            if mode in modes:
                _check_once(g, args, modes, eps, rtol, atol, rng, order - 1,
                            f"{stage}, then derivative of the {mode} derivative", target)


def check_grads(f, args, order: int = 1, modes=("fwd", "rev"), eps=None, rtol=None, atol=None,
                seed: int = 0, target: str = "numpy") -> None:
    """Check the derivatives of ``f`` at ``args`` against central differences, in float64.

    ``f`` builds a graph from Tensors (one per array in ``args``) to a Tensor.
    Every graph runs on ``target`` (the reference by default).  Raises
    AssertionError describing the worst mismatch.  An element passes when
    ``|analytic - numeric| <= atol + rtol * |numeric|``; ``eps``, ``rtol`` and
    ``atol`` default to ``DEFAULT_EPS`` (3e-6), ``DEFAULT_RTOL`` (1e-7) and
    ``DEFAULT_ATOL`` (1e-8).

    >>> import jitgrad as jg, numpy as np
    >>> jg.check_grads(lambda x: jg.sum(jg.sin(x) * x), [np.linspace(0.1, 1, 4)], order=2)
    """
    if isinstance(args, np.ndarray) or np.isscalar(args):
        args = [args]
    args = [np.array(a, dtype=np.float64) for a in args]
    unknown = set(modes) - {"fwd", "rev"}
    if unknown or not modes:
        raise ValueError(f"check_grads: modes must be a subset of ('fwd', 'rev'), got {modes}")
    if order < 1:
        raise ValueError(f"check_grads: order must be at least 1, got {order}")
    _check_once(f, args, tuple(modes), DEFAULT_EPS if eps is None else eps,
                DEFAULT_RTOL if rtol is None else rtol, DEFAULT_ATOL if atol is None else atol,
                np.random.default_rng(seed), order, "order 1", target)
