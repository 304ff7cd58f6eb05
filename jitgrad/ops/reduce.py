"""Reductions over a set of axes: sum, max, min, prod.

``mean`` and ``logsumexp`` are built from these by the builder.  Every
reduction stores its axes as a sorted tuple and whether it keeps them.
"""
from __future__ import annotations

import numpy as np

from ..primitive import Aval, Primitive, on


def _reduce_shape(name):
    def rule(x, *, axes, keepdims):
        for a in axes:
            if not 0 <= a < len(x.dims):
                raise ValueError(f"{name}: axis {a} is out of range for shape of rank {len(x.dims)}")
        if keepdims:
            dims = tuple(1 if i in axes else d for i, d in enumerate(x.dims))
        else:
            dims = tuple(d for i, d in enumerate(x.dims) if i not in axes)
        return Aval(dims, x.dtype)
    return rule


def _expand_back(b, y, x, axes, keepdims):
    """Broadcast a reduction's output (or cotangent) back to the input's shape."""
    if not keepdims:
        kept = tuple(1 if i in axes else d for i, d in enumerate(x.dims))
        y = b.reshape(y, kept)
    return b.broadcast_to(y, x.dims)


def _sum_vjp(b, y_bar, y, x, *, axes, keepdims):
    return (_expand_back(b, y_bar, x, axes, keepdims),)


def _extremum_share(b, y, x, axes, keepdims):
    """Each element's share of the derivative: 1/k for the k tied extremal elements."""
    winners = b.equal(x, _expand_back(b, y, x, axes, keepdims))
    as_float = b.astype(winners, x.dtype)
    return b.divide(as_float, b.broadcast_to(b.sum(as_float, axes, keepdims=True), x.dims))


def _extremum_vjp(b, y_bar, y, x, *, axes, keepdims):
    share = _extremum_share(b, y, x, axes, keepdims)
    return (b.safe_mul(_expand_back(b, y_bar, x, axes, keepdims), share),)


def _extremum_jvp(b, x_dots, y, x, *, axes, keepdims):
    share = _extremum_share(b, y, x, axes, keepdims)
    return b.sum(b.safe_mul(x_dots[0], share), axes, keepdims=keepdims)


def _prod_of_others(b, x, axes):
    """For every element, the product of the other elements of its reduction.

    Exact with zeros: with no zero it is prod/x; with one zero only that element
    gets the product of the non-zeros; with two or more every element gets 0.
    """
    is_zero = b.equal(x, 0.0)
    nonzero = b.where(is_zero, 1.0, x)
    prod_nonzero = b.broadcast_to(b.prod(nonzero, axes, keepdims=True), x.dims)
    zeros = b.broadcast_to(b.sum(b.astype(is_zero, x.dtype), axes, keepdims=True), x.dims)
    lone_zero = b.where(is_zero, prod_nonzero, 0.0)
    return b.where(b.equal(zeros, 0.0), b.divide(prod_nonzero, nonzero),
                   b.where(b.equal(zeros, 1.0), lone_zero, 0.0))


def _prod_vjp(b, y_bar, y, x, *, axes, keepdims):
    return (b.safe_mul(_expand_back(b, y_bar, x, axes, keepdims), _prod_of_others(b, x, axes)),)


def _prod_jvp(b, x_dots, y, x, *, axes, keepdims):
    return b.sum(b.safe_mul(x_dots[0], _prod_of_others(b, x, axes)), axes, keepdims=keepdims)


def _batch(b, batched, y, x, *, axes, keepdims):
    return b.bind(y.op, x, axes=tuple(a + 1 for a in axes), keepdims=keepdims)


def _reduction(name, ref, vjp, jvp, doc=""):
    return Primitive(name, shape=_reduce_shape(name), ref=ref, vjp=vjp, jvp=jvp,
                     attrs=("axes", "keepdims"), batch=_batch, doc=doc)


def _in_order(reduce):
    """NumPy sums in an order that depends on memory layout; reduce a C-ordered copy so the
    reference's rounding depends on the values alone, not on which views led to them.
    (``np.asarray(order="C")``, not ``np.ascontiguousarray``: the latter makes a 0-d array 1-d.)"""
    return lambda x, axes, keepdims: reduce(np.asarray(x, order="C"), axis=axes, keepdims=keepdims)


reduce_sum_p = _reduction(
    "reduce_sum", _in_order(np.sum), _sum_vjp,
    lambda b, x_dots, y, x, *, axes, keepdims: on(x_dots[0], lambda t: b.sum(t, axes, keepdims)),
)
reduce_max_p = _reduction(
    "reduce_max", lambda x, axes, keepdims: x.max(axis=axes, keepdims=keepdims),
    _extremum_vjp, _extremum_jvp, doc="Tied maxima share the derivative equally.",
)
reduce_min_p = _reduction(
    "reduce_min", lambda x, axes, keepdims: x.min(axis=axes, keepdims=keepdims),
    _extremum_vjp, _extremum_jvp, doc="Tied minima share the derivative equally.",
)
reduce_prod_p = _reduction(
    "reduce_prod", _in_order(np.prod),
    _prod_vjp, _prod_jvp, doc="Exact derivatives with zeros among the factors.",
)

PRIMITIVES = (reduce_sum_p, reduce_max_p, reduce_min_p, reduce_prod_p)
