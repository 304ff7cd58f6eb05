"""Graph rewrites applied before scheduling: CSE, constant folding, identities.

One bottom-up pass rebuilds the graph.  Each node, once its inputs are
rewritten, is (1) replaced by a simpler equivalent if an identity applies,
(2) folded to a constant if all its inputs are small constants, and (3) merged
with a structurally equal node already seen (common-subexpression
elimination).  Dead code never enters: only what the outputs need is visited.
No rewrite changes a result, signed zeros included: there is no ``x * 0 -> 0``
(x may be inf or NaN, or negative), and no ``x + 0 -> x`` (it would turn -0.0
into 0.0).
"""
from __future__ import annotations

import math

import numpy as np

from . import provenance
from .graph import Tensor, bind, constant, topological_order
from .ops import elementwise as ew, leaf, shape as sh
from .primitive import Dim

FOLD_LIMIT = 4096   # largest constant (in elements) that folding may create


class _Rebuilder:
    def __init__(self):
        self.new: dict[int, Tensor] = {}     # id(old node) -> rewritten node
        self.dims: dict[Dim, object] = {}    # old Dim -> Dim/int of the rewritten graph
        self.seen: dict[tuple, Tensor] = {}  # structural key -> canonical node

    def map_dim(self, d):
        return self.dims.get(d, d) if isinstance(d, Dim) else d

    def map_attr(self, v):
        if isinstance(v, tuple):
            return tuple(self.map_attr(x) for x in v)
        return self.map_dim(v)

    def visit(self, node: Tensor) -> Tensor:
        if not node.inputs and node.op is not sh.full_p:
            out = self.canonical(node)
        else:
            inputs = tuple(self.new[id(i)] for i in node.inputs)
            attrs = {k: self.map_attr(v) for k, v in node.attrs.items()}
            same = all(a is b for a, b in zip(inputs, node.inputs)) and attrs == dict(node.attrs)
            out = node if same else bind(node.op, *inputs, **attrs)
            for rule in (_simplify, _fold):
                better = rule(out)
                if better is not None:
                    out = better
                    break
            if out is not node:
                provenance.inherit(out, node)       # a rebuilt node keeps the user's line
            out = self.canonical(out)
        for old, new in zip(node.dims, out.dims):
            if isinstance(old, Dim) and old is not new:
                self.dims[old] = new
        self.new[id(node)] = out
        return out

    def canonical(self, node: Tensor) -> Tensor:
        key = _key(node)
        if key is None:
            return node
        return self.seen.setdefault(key, node)


def _attr_key(v):
    if isinstance(v, tuple):
        return tuple(_attr_key(x) for x in v)
    if isinstance(v, float):
        return ("float", v.hex())        # keeps 0.0 and -0.0 apart
    if isinstance(v, Dim):
        return ("dim", id(v))
    return (type(v).__name__, v)


def _key(node: Tensor):
    if node.op is leaf.constant_p:
        value = node.const_value
        if value.size > FOLD_LIMIT:
            return None
        return ("constant", value.dtype.str, value.shape, value.tobytes())
    if not node.inputs and node.op is not sh.full_p:
        return None                       # inputs and params are themselves
    attrs = tuple(sorted((k, _attr_key(v)) for k, v in node.attrs.items()))
    return (node.op.name, tuple(id(i) for i in node.inputs), attrs)


def _fill_value(node: Tensor):
    """The single value filling a constant (possibly broadcast) node, else None."""
    while node.op is sh.broadcast_to_p:
        node = node.inputs[0]
    if node.op is sh.full_p:
        return node.attrs["value"] if not isinstance(node.attrs["value"], Dim) else None
    if node.op is leaf.constant_p:
        v = node.const_value
        if v.size and (v == v.flat[0]).all():
            return v.flat[0].item()
    return None


def _is_fill(node: Tensor, value) -> bool:
    fill = _fill_value(node)
    return fill is not None and fill == value


def _is_power_of_two(value) -> bool:
    """Dividing by 2^k and multiplying by 2^-k round the same way: the swap is exact."""
    if value is None or isinstance(value, bool) or not np.isfinite(value) or value == 0:
        return False
    return abs(math.frexp(value)[0]) == 0.5 and abs(math.frexp(1 / value)[0]) == 0.5


def _replacement(node: Tensor, by: Tensor):
    """``by`` if it can stand for ``node`` unchanged (same shape and dtype)."""
    return by if by.shape == node.shape and by.dtype == node.dtype else None


def _simplify(node: Tensor):
    """An equivalent, simpler node, or None.  Every rule is exact for all inputs."""
    op, ins = node.op, node.inputs
    if op in (ew.mul_p, ew.safe_mul_p):
        if _is_fill(ins[1], 1):
            return _replacement(node, ins[0])
        if _is_fill(ins[0], 1):
            return _replacement(node, ins[1])
    if op in (ew.div_p, ew.safe_div_p, ew.pow_p) and _is_fill(ins[1], 1):
        return _replacement(node, ins[0])
    if op in (ew.div_p, ew.safe_div_p) and _is_power_of_two(_fill_value(ins[1])):
        inverse = bind(sh.broadcast_to_p, constant(np.array(1 / _fill_value(ins[1]), node.dtype)),
                       shape=ins[1].dims) if ins[1].dims else constant(np.array(1 / _fill_value(ins[1]), node.dtype))
        return bind(ew.mul_p if op is ew.div_p else ew.safe_mul_p, ins[0], inverse)
    if op is ew.sub_p and _is_fill(ins[1], 0):
        return _replacement(node, ins[0])
    if op is ew.neg_p and ins[0].op is ew.neg_p:
        return _replacement(node, ins[0].inputs[0])
    if op is ew.select_p and ins[1] is ins[2]:
        return _replacement(node, ins[1])
    if op is ew.select_p and _fill_value(ins[0]) is not None:
        return _replacement(node, ins[1] if _fill_value(ins[0]) else ins[2])
    if op.marker:                   # derivatives are built by now: only its value is left
        return ins[node.attrs["index"]] if op.multi_output else ins[0]
    if op is sh.reshape_p and ins[0].op is sh.reshape_p:
        return bind(sh.reshape_p, ins[0].inputs[0], shape=node.attrs["shape"])
    if op is sh.transpose_p and ins[0].op is sh.transpose_p:
        inner = ins[0].attrs["perm"]
        perm = tuple(inner[p] for p in node.attrs["perm"])
        x = ins[0].inputs[0]
        return x if perm == tuple(range(len(perm))) else bind(sh.transpose_p, x, perm=perm)
    if op in (sh.reshape_p, sh.broadcast_to_p) and ins[0].dims == node.dims:
        return ins[0]
    return None


def _static(v) -> bool:
    if isinstance(v, tuple):
        return all(_static(x) for x in v)
    return not isinstance(v, Dim)


def _fold(node: Tensor):
    """A constant with the node's value, if all inputs are constants and it is small."""
    if node.op.ref is None or node.op.multi_output or (not node.inputs and node.op is not sh.full_p):
        return None
    if not all(i.op is leaf.constant_p for i in node.inputs) or not _static(tuple(node.attrs.values())):
        return None
    if any(isinstance(d, Dim) for d in node.dims) or int(np.prod(node.dims)) > FOLD_LIMIT:
        return None
    try:
        with np.errstate(all="ignore"):
            value = node.op.ref(*(i.const_value for i in node.inputs), **node.attrs)
    except Exception:        # leave it for run time, where the error names the call
        return None
    value = np.asarray(value)
    if value.shape != tuple(node.dims):
        raise RuntimeError(f"jitgrad internal error: folding {node.op.name} gave shape "
                           f"{value.shape}, its shape rule said {tuple(node.dims)}")
    return constant(value.astype(node.dtype, copy=False))


def rewrite(roots: list[Tensor]) -> list[Tensor]:
    """The simplified graph of ``roots`` (same values, usually fewer nodes)."""
    rebuilder = _Rebuilder()
    for node in topological_order(roots):
        rebuilder.visit(node)
    return [rebuilder.new[id(r)] for r in roots]
