"""Differentiation as graph transforms: vjp, jvp and what is built from them.

Both modes walk the nodes between the ``wrt`` Tensors and the outputs and call
each primitive's rule, which emits ordinary nodes.  So a derivative is a graph
like any other: it can be compiled, fused, and differentiated again.
Structurally zero derivatives are ``None`` and never become nodes; integer and
boolean nodes carry no derivatives.
"""
from __future__ import annotations

import functools
import itertools

import numpy as np

from . import functions as F, graph
from .batching import vmap
from .graph import Tensor, topological_order
from .ops import control
from .ops.loop import sibling_key, wanted_results
from .primitive import Dim


def _differentiable(t: Tensor) -> bool:
    return np.issubdtype(t.dtype, np.floating)


def _as_list(xs, what: str) -> list[Tensor]:
    if isinstance(xs, Tensor):
        raise TypeError(f"{what} must be a list of Tensors, got a single Tensor (wrap it in a list)")
    xs = list(xs)
    for x in xs:
        if not isinstance(x, Tensor):
            raise TypeError(f"{what} must hold Tensors, got {type(x).__name__}")
    return xs


class Builder:
    """The ``b`` that derivative rules receive: the builder functions of
    :mod:`jitgrad.functions` (``b.multiply``, ``b.bind``, ...), and ``b.partial_vjp``
    for a rule that differentiates a subgraph (checkpoint's).  Handed to the rules
    here, so the builder functions never import autodiff."""

    def __getattr__(self, name: str):
        return getattr(F, name)

    @staticmethod
    def partial_vjp(outputs, wrt, cotangents) -> list[Tensor]:
        """Reverse mode with ``wrt`` as independent variables: nothing propagates past them."""
        return vjp(outputs, wrt, cotangents, partial=True)



BUILDER = Builder()


def _nodes_between(outputs, wrt) -> list[Tensor]:
    """Nodes (in topological order) that depend on some ``wrt`` and feed some output."""
    wrt_ids = {id(w) for w in wrt}
    depends: set[int] = set()
    order = topological_order(outputs)
    for node in order:
        if id(node) in wrt_ids or any(id(i) in depends for i in node.inputs):
            if _differentiable(node):
                depends.add(id(node))
    return [n for n in order if id(n) in depends]


def _siblings(nodes) -> dict:
    """The nodes of multi-output primitives grouped with their siblings, each group in the
    order of ``nodes`` (so its first member is the one a reverse walk meets last)."""
    groups: dict[tuple, list] = {}
    for node in nodes:
        if node.op.multi_output:
            groups.setdefault(sibling_key(node), []).append(node)
    return groups


def _check_like(value: Tensor, like: Tensor, what: str) -> Tensor:
    """``value`` as a derivative seed for ``like``: same shape (call-time sizes unified), same dtype."""
    static_clash = any(isinstance(p, int) and isinstance(q, int) and p != q
                       for p, q in zip(value.dims, like.dims))
    if value.ndim != like.ndim or static_clash:
        raise ValueError(f"{what} has shape {value.shape}, expected {like.shape}")
    if value.dims != like.dims:
        value = F.broadcast_to(value, like.dims)
    return F.astype(value, like.dtype) if value.dtype != like.dtype else value


def vjp(outputs, wrt, cotangents, *, partial: bool = False) -> list[Tensor]:
    """Reverse mode: ``sum_k cotangents[k] . d outputs[k] / d wrt`` for each ``wrt``.

    Cotangents of a node used several times accumulate; a ``wrt`` entry the
    outputs do not depend on gets zeros.  With ``partial=True`` the ``wrt``
    entries are treated as independent variables: nothing propagates past them.
    """
    outputs, wrt = _as_list(outputs, "outputs"), _as_list(wrt, "wrt")
    cotangents = [F.as_tensor(c) for c in cotangents]
    if len(cotangents) != len(outputs):
        raise ValueError(f"vjp: {len(outputs)} outputs but {len(cotangents)} cotangents")
    contributions: dict[int, list[Tensor]] = {}
    for out, ct in zip(outputs, cotangents):
        contributions.setdefault(id(out), []).append(_check_like(ct, out, "vjp: cotangent"))
    totals: dict[int, Tensor] = {}
    stop = {id(w) for w in wrt}
    nodes = _nodes_between(outputs, wrt)
    siblings = _siblings(nodes)
    for node in reversed(nodes):
        parts = contributions.pop(id(node), None)
        if parts:
            y_bar = parts[0]
            for p in parts[1:]:
                y_bar = F.add(y_bar, p)
            totals[id(node)] = y_bar
        if not node.inputs or (partial and id(node) in stop):
            continue
        if node.op.multi_output:
            # the last sibling the reverse walk meets: every sibling's cotangent is complete
            group = siblings[sibling_key(node)]
            if group[0] is not node:
                continue
            y_bars = {m.attrs["index"]: totals.get(id(m)) for m in group}
            if all(v is None for v in y_bars.values()):
                continue
            x_bars = node.op.vjp(BUILDER, y_bars, node, *node.inputs, **node.attrs)
        elif not parts:
            continue
        else:
            x_bars = node.op.vjp(BUILDER, y_bar, node, *node.inputs, **node.attrs)
        for x, x_bar in zip(node.inputs, x_bars):
            if x_bar is not None and _differentiable(x):
                contributions.setdefault(id(x), []).append(x_bar)
    return [totals.get(id(w)) if id(w) in totals else F.zeros_like(w) for w in wrt]


def jvp(outputs, wrt, tangents) -> list[Tensor]:
    """Forward mode: the directional derivative of each output along ``tangents``."""
    outputs, wrt = _as_list(outputs, "outputs"), _as_list(wrt, "wrt")
    tangents = [F.as_tensor(t) for t in tangents]
    if len(tangents) != len(wrt):
        raise ValueError(f"jvp: {len(wrt)} wrt entries but {len(tangents)} tangents")
    dots: dict[int, Tensor] = {}
    for w, t in zip(wrt, tangents):
        dots[id(w)] = _check_like(t, w, "jvp: tangent")
    group_dots: dict[tuple, dict] = {}       # siblings' tangents, from one rule call
    nodes = _nodes_between(outputs, wrt)
    wanted = wanted_results(nodes)
    for node in nodes:
        if id(node) in dots or not node.inputs:
            continue
        x_dots = tuple(dots.get(id(x)) for x in node.inputs)
        if all(d is None for d in x_dots):
            continue
        if node.op.multi_output:
            key = sibling_key(node)
            if key not in group_dots:
                group_dots[key] = node.op.jvp(BUILDER, x_dots, node, *node.inputs, wanted=wanted[key],
                                              **node.attrs)
            y_dot = group_dots[key].get(node.attrs["index"])
        else:
            y_dot = node.op.jvp(BUILDER, x_dots, node, *node.inputs, **node.attrs)
        if y_dot is not None:
            dots[id(node)] = y_dot
    return [dots[id(o)] if id(o) in dots else F.zeros_like(o) for o in outputs]


def grad(y: Tensor, wrt) -> list[Tensor]:
    """Gradients of the scalar ``y`` with respect to each Tensor in ``wrt``.

    >>> import jitgrad as jg
    >>> w = jg.input("w", (3,))
    >>> (g,) = jg.grad(jg.sum(w ** 2), [w])      # g = 2 w
    """
    if not isinstance(y, Tensor) or y.ndim != 0:
        shape = y.shape if isinstance(y, Tensor) else type(y).__name__
        raise ValueError(f"grad: y must be a scalar Tensor (shape ()), got shape {shape}; "
                         f"use jg.vjp for non-scalar outputs")
    return vjp([y], wrt, [F.ones_like(y)])


def _static_size(t: Tensor, what: str) -> int:
    if any(isinstance(d, Dim) for d in t.dims):
        raise ValueError(f"{what} needs fixed sizes, got shape {t.shape}")
    return int(np.prod(t.dims, dtype=np.int64))


def _basis(t: Tensor, n: int) -> Tensor:
    """The ``n`` unit vectors of ``t``'s space, stacked: shape ``(n,) + t.shape``."""
    return F.constant(np.eye(n, dtype=t.dtype).reshape((n,) + t.dims))


def jacobian(y: Tensor, x: Tensor, mode: str = "auto") -> Tensor:
    """The Jacobian of ``y`` wrt ``x``, of shape ``y.shape + x.shape``.

    ``mode="fwd"`` maps one JVP over the unit vectors of ``x`` (``jg.vmap``), ``"rev"``
    one VJP over those of ``y``; ``"auto"`` picks forward when ``x`` has fewer
    elements.  Either way the graph holds one pass, whatever the sizes.
    """
    n_out, n_in = _static_size(y, "jacobian: y"), _static_size(x, "jacobian: x")
    if mode == "auto":
        mode = "fwd" if n_in < n_out else "rev"
    if mode not in ("fwd", "rev"):
        raise ValueError(f"jacobian: mode must be 'fwd', 'rev' or 'auto', got {mode!r}")
    if n_in == 0 or n_out == 0:
        return F.full(y.dims + x.dims, 0, y.dtype)
    if mode == "fwd":          # columns: the examples axis goes last
        columns = vmap(lambda v: jvp([y], [x], [v])[0], out_axes=-1)(_basis(x, n_in))
        return F.reshape(columns, y.dims + x.dims)
    rows = vmap(lambda u: vjp([y], [x], [u])[0])(_basis(y, n_out))
    return F.reshape(rows, y.dims + x.dims)


def hessian(y: Tensor, x: Tensor) -> Tensor:
    """The Hessian of the scalar ``y`` wrt ``x`` (forward over reverse)."""
    (g,) = grad(y, [x])
    return jacobian(g, x, mode="fwd")


def hvp(y: Tensor, x: Tensor, v) -> Tensor:
    """Hessian-vector product ``H v`` without forming ``H``: forward mode over the gradient."""
    (g,) = grad(y, [x])
    return jvp([g], [x], [v])[0]


stop_gradient = F.stop_gradient
_regions = itertools.count()


def checkpoint(fn):
    """Wrap a graph-building function so the reverse pass recomputes its internals.

    The values are unchanged; derivatives through the wrapped region rebuild it
    from its arguments instead of keeping its intermediates alive, trading
    compute for memory.  Tensors the function closes over (params) get their
    gradients as usual.

    >>> import jitgrad as jg
    >>> layer = jg.checkpoint(lambda h: jg.tanh(h * 2.0))
    """
    @functools.wraps(fn)
    def wrapped(*args):
        args = [F.as_tensor(a) for a in args]
        start = next(graph._serials)
        outputs = fn(*args)
        flat = control.flatten(outputs)
        if not all(isinstance(o, Tensor) for o in flat):
            raise TypeError("checkpoint: the wrapped function must return Tensors")
        region, free = next(_regions), _free_variables(flat, args, start)
        marked = [F.bind(control.checkpoint_p, y, *args, *free, fn=fn, index=k, region=region,
                         n_args=len(args)) for k, y in enumerate(flat)]
        return type(outputs)(marked) if isinstance(outputs, (tuple, list)) else marked[0]
    return wrapped


def _free_variables(outputs, args, start: int) -> list[Tensor]:
    """Tensors made before the region (other than its arguments) that the region reads."""
    arg_ids, free, seen, stack = {id(a) for a in args}, {}, set(), list(outputs)
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if node.serial < start:
            if id(node) not in arg_ids and _differentiable(node) and node.inputs or node.is_param:
                free.setdefault(id(node), node)
            continue
        stack.extend(node.inputs)
    return list(free.values())
