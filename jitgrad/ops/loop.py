"""Control flow primitives: ``scan`` (a body graph run a fixed number of times),
``while`` (run while a condition graph holds) and ``cond`` (one of two graphs).

A loop's body is graph too, kept as data in the node's ``body`` attribute (a
:class:`Body`): stand-in inputs for the carries, for one step's slices of the
scanned arrays and for the values the body reads from outside, and the
body's outputs, the new carries and one step's outputs.  Nothing in it is
Python code, so it lowers, prints and saves like any graph, once, whatever the
trip count.

``scan`` has several results (final carries, stacked per-step outputs, and the
stacked carries each step started from, which reverse mode reads), and a
jitgrad node has one.  So each result is a node of its own, ``index`` naming
which; nodes that differ only in ``index`` are *siblings* (:func:`sibling_key`)
and are computed together: the backends run one loop for all of them, and the
derivative rules take or give all their cotangents or tangents at once.  Such a
primitive says ``multi_output=True``.

The derivative and batching rules trace new bodies, so they live in
:mod:`jitgrad.loops`, above autodiff and vmap; that module fills ``RULES`` when it
is imported (as ``import jitgrad`` does), and the primitives here call them
from it.  The NumPy references run a body node by node (:func:`run_body`);
the backends run it lowered (``jitgrad.lower.lower_body``).
"""
from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass

import numpy as np

from ..primitive import Aval, Dim, Primitive
from . import leaf
from ._shapes import fmt_shape

_bodies = itertools.count()
RULES: dict = {}        # name -> rule, filled by jitgrad.loops (scan_jvp, scan_vjp, scan_batch, ...)


@dataclass(frozen=True, eq=False)
class Body:
    """A loop body: ``params`` are stand-in input nodes (``n_carry`` carries, then ``n_x``
    per-step slices, then the values read from outside), ``outputs`` the new carries, then
    one step's outputs.  Compared by identity."""

    params: tuple
    outputs: tuple
    n_carry: int
    n_x: int
    number: int = 0

    def __post_init__(self):
        object.__setattr__(self, "number", next(_bodies))

    def __str__(self) -> str:
        return f"body{self.number}"

    @property
    def n_y(self) -> int:
        return len(self.outputs) - self.n_carry

    @functools.cached_property
    def nodes(self) -> tuple:
        """The body's nodes but its stand-ins, each after its inputs: what a scan's results
        past the carry history stack, step by step (reverse mode reads them)."""
        params = {id(p) for p in self.params}
        return tuple(n for n in _in_order(self.outputs) if id(n) not in params)

    def reading(self, nodes) -> Body:
        """This body returning also the values of ``nodes`` (some of its ``nodes``) after its
        outputs: what a scan runs when its results stack inner nodes (one body per choice)."""
        if not nodes:
            return self
        variants = self.__dict__.setdefault("_variants", {})
        key = tuple(id(n) for n in nodes)
        if key not in variants:
            variants[key] = Body(self.params, self.outputs + tuple(nodes), self.n_carry, self.n_x)
        return variants[key]

    @functools.cached_property
    def node_index(self) -> dict:
        """id(node) -> its position in ``nodes``."""
        return {id(n): i for i, n in enumerate(self.nodes)}

    def result_node(self, index: int):
        """The body node whose value (per step, stacked) is result ``index``, or None for a
        final carry.  The results: final carries, the stacked per-step outputs, the stacked
        carries each step began with, then every node of ``nodes`` stacked."""
        n_c, n_y = self.n_carry, self.n_y
        if index < n_c:
            return None
        if index < n_c + n_y:
            return self.outputs[index]
        if index < 2 * n_c + n_y:
            return self.params[index - n_c - n_y]
        return self.nodes[index - 2 * n_c - n_y]

    def result_aval(self, index: int, length: int) -> Aval:
        if index < self.n_carry:
            node = self.outputs[index]
            return Aval(node.dims, node.dtype)
        node = self.result_node(index)
        return Aval((length,) + node.dims, node.dtype)

    @property
    def first_node_result(self) -> int:
        return 2 * self.n_carry + self.n_y

    def n_results(self) -> int:
        return self.first_node_result + len(self.nodes)


def run_body(body: Body, args, extra=()) -> list[np.ndarray]:
    """The body's outputs for ``args`` (one array per stand-in), then the values of the body
    nodes ``extra``, node by node with each primitive's NumPy reference: what the
    references of the control flow primitives run."""
    values = {id(p): np.asarray(a) for p, a in zip(body.params, args)}
    order = _in_order(list(body.outputs) + list(extra))
    wanted = wanted_results(order)
    results: dict = {}                  # a multi-output node's siblings, computed once
    for node in order:
        if id(node) in values:
            continue
        if node.op is leaf.constant_p:
            values[id(node)] = node.const_value
            continue
        ins = [values[id(i)] for i in node.inputs]
        with np.errstate(all="ignore"):
            if node.op.multi_output:
                key = sibling_key(node)
                if key not in results:
                    results[key] = node.op.ref(*ins, wanted=wanted[key], **node.attrs)
                out = results[key][node.attrs["index"]]
            else:
                out = node.op.ref(*ins, **node.attrs)
        values[id(node)] = np.asarray(out).astype(node.dtype, copy=False)
    return [values[id(o)] for o in list(body.outputs) + list(extra)]


def wanted_results(nodes) -> dict:
    """For each group of siblings among ``nodes`` (nodes or equations), the indices present."""
    wanted: dict = {}
    for node in nodes:
        if node.op.multi_output:
            wanted.setdefault(sibling_key(node), set()).add(node.attrs["index"])
    return {k: frozenset(v) for k, v in wanted.items()}


def _in_order(outputs) -> list:
    """The nodes ``outputs`` depend on, each after its inputs (``graph.topological_order``'s
    walk: the primitives sit below the graph module and cannot import it)."""
    order, seen, stack = [], set(), [(o, False) for o in reversed(outputs)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
        elif id(node) not in seen:
            seen.add(id(node))
            stack.append((node, True))
            stack.extend((i, False) for i in reversed(node.inputs) if id(i) not in seen)
    return order


def sibling_key(node) -> tuple:
    """What siblings share (a node or a schedule equation): the primitive, the inputs and
    every attribute but ``index``."""
    ins = node.inputs if hasattr(node, "inputs") else node.ins
    attrs = tuple(sorted((k, v) for k, v in node.attrs.items() if k != "index"))
    return (node.op, tuple(id(x) for x in ins), attrs)


def _scan_shape(*xs, body, length, reverse, index):
    n_c, n_x = body.n_carry, body.n_x
    if len(xs) != len(body.params):
        raise ValueError(f"scan: {len(xs)} operands for a body of {len(body.params)} inputs")
    for k, (x, p) in enumerate(zip(xs, body.params)):
        want = p.dims if not n_c <= k < n_c + n_x else (length,) + p.dims
        if tuple(x.dims) != tuple(want) or x.dtype != p.dtype:
            raise ValueError(f"scan: operand {k} is {x.dtype}{fmt_shape(x.dims)}, the body expects "
                             f"{p.dtype}{fmt_shape(want)}")
    if not 0 <= index < body.n_results():
        raise ValueError(f"scan: result {index} of {body.n_results()}")
    return body.result_aval(index, length)


def _scan_ref(*arrays, body, length, reverse, index, wanted):
    """The ``wanted`` results of the loop (a dict by index), run step by step."""
    n_c, n_x, n_y = body.n_carry, body.n_x, body.n_y
    carries, xs, free = list(arrays[:n_c]), arrays[n_c:n_c + n_x], list(arrays[n_c + n_x:])
    stacked = {k: np.empty((length,) + tuple(body.result_node(k).dims), body.result_node(k).dtype)
               for k in wanted if k >= n_c}
    extra = [body.result_node(k) for k in sorted(stacked) if k >= body.first_node_result]
    for t in (range(length - 1, -1, -1) if reverse else range(length)):
        for k, c in enumerate(carries):
            if n_c + n_y + k in stacked:
                stacked[n_c + n_y + k][t] = c
        results = run_body(body, [*carries, *(x[t] for x in xs), *free], extra)
        carries = results[:n_c]
        for k in range(n_c, n_c + n_y):
            if k in stacked:
                stacked[k][t] = results[k]
        for k, r in zip(sorted(k for k in stacked if k >= body.first_node_result), results[n_c + n_y:]):
            stacked[k][t] = r
    return {**{k: np.array(c, copy=True) for k, c in enumerate(carries)}, **stacked}


def _scan_jvp(b, x_dots, y, *xs, body, length, reverse, index, wanted):
    return RULES["scan_jvp"](x_dots, xs, body, length, reverse, wanted)


def _scan_vjp(b, y_bars, y, *xs, body, length, reverse, index):
    return RULES["scan_vjp"](y_bars, xs, body, length, reverse)


def _scan_batch(b, batched, y, *xs, body, length, reverse, index, wanted):
    return RULES["scan_batch"](batched, xs, body, length, reverse, wanted)


scan_p = Primitive(
    "scan", shape=_scan_shape, ref=_scan_ref, vjp=_scan_vjp, jvp=_scan_jvp, batch=_scan_batch, nin=None,
    attrs=("body", "length", "reverse", "index"), multi_output=True,
    doc="Result ``index`` of running ``body`` ``length`` times over (carries, per-step slices "
        "of the scanned operands, values read from outside): the final carries, the stacked "
        "per-step outputs, then the stacked carries each step began with.",
)


def _while_shape(*xs, cond, body, index):
    n_c = body.n_carry
    _check_operands("while_loop", xs[:n_c] + xs[len(xs) - (len(body.params) - n_c):], body.params)
    _check_operands("while_loop", xs[:len(cond.params)], cond.params)
    (pred,) = cond.outputs
    if pred.dims or pred.dtype != np.bool_:
        raise TypeError(f"while_loop: cond must return a boolean scalar, got {pred.dtype}{fmt_shape(pred.dims)}")
    if not 0 <= index < n_c:
        raise ValueError(f"while_loop: result {index} of {n_c}")
    return Aval(xs[index].dims, xs[index].dtype)


def _check_operands(what: str, xs, params) -> None:
    if len(xs) != len(params):
        raise ValueError(f"{what}: {len(xs)} operands for a body of {len(params)} inputs")
    for k, (x, p) in enumerate(zip(xs, params)):
        if tuple(x.dims) != tuple(p.dims) or x.dtype != p.dtype:
            raise ValueError(f"{what}: operand {k} is {x.dtype}{fmt_shape(x.dims)}, the body expects "
                             f"{p.dtype}{fmt_shape(p.dims)}")


def while_operands(xs, cond: Body, body: Body):
    """The carries, what ``cond`` reads from outside, what ``body`` reads from outside."""
    n_c = body.n_carry
    n_cond = len(cond.params) - n_c
    return list(xs[:n_c]), list(xs[n_c:n_c + n_cond]), list(xs[n_c + n_cond:])


def _while_ref(*arrays, cond, body, index, wanted=None):
    carries, cond_free, body_free = while_operands(arrays, cond, body)
    while run_body(cond, [*carries, *cond_free])[0]:
        carries = run_body(body, [*carries, *body_free])
    return [np.array(c, copy=True) for c in carries]


def _while_vjp(b, y_bars, y, *xs, cond, body, index):
    raise NotImplementedError("while_loop: reverse-mode differentiation is not supported: the number "
                              "of steps is known only when it runs, so there is nothing to store the "
                              "carries in.  Use jg.fori_loop or jg.scan with a fixed number of steps "
                              "(forward mode, jg.jvp, works through while_loop)")


while_p = Primitive(
    "while", shape=_while_shape, ref=_while_ref, vjp=_while_vjp,
    jvp=lambda b, x_dots, y, *xs, cond, body, index, wanted: RULES["while_jvp"](x_dots, xs, cond, body),
    batch=lambda b, batched, y, *xs, cond, body, index, wanted: RULES["while_batch"](batched, xs, cond, body),
    nin=None, attrs=("cond", "body", "index"), multi_output=True,
    doc="Final carry ``index`` of running ``body`` while ``cond`` holds, from (carries, what "
        "cond reads from outside, what body reads from outside).  Forward mode only.",
)


def cond_operands(xs, true: Body, false: Body):
    """The predicate, the operands, what each branch reads from outside."""
    n = true.n_x
    n_true = len(true.params) - n
    return xs[0], list(xs[1:1 + n]), list(xs[1 + n:1 + n + n_true]), list(xs[1 + n + n_true:])


def _cond_shape(*xs, true, false, index):
    pred, operands, true_free, false_free = cond_operands(xs, true, false)
    if pred.dims or pred.dtype != np.bool_:
        raise TypeError(f"cond: pred must be a boolean scalar, got {pred.dtype}{fmt_shape(pred.dims)}")
    _check_operands("cond", operands + true_free, true.params)
    _check_operands("cond", operands + false_free, false.params)
    if not 0 <= index < len(true.outputs):
        raise ValueError(f"cond: result {index} of {len(true.outputs)}")
    out = true.outputs[index]
    return Aval(out.dims, out.dtype)


def _cond_ref(*arrays, true, false, index, wanted=None):
    pred, operands, true_free, false_free = cond_operands(arrays, true, false)
    if pred:
        return run_body(true, [*operands, *true_free])
    return run_body(false, [*operands, *false_free])


cond_p = Primitive(
    "cond", shape=_cond_shape, ref=_cond_ref,
    vjp=lambda b, y_bars, y, *xs, true, false, index: RULES["cond_vjp"](y_bars, xs, true, false),
    jvp=lambda b, x_dots, y, *xs, true, false, index, wanted: RULES["cond_jvp"](x_dots, xs, true, false),
    batch=lambda b, batched, y, *xs, true, false, index, wanted: RULES["cond_batch"](batched, xs, true, false),
    nin=None, attrs=("true", "false", "index"), multi_output=True,
    doc="Result ``index`` of the ``true`` or the ``false`` body, whichever ``pred`` (input 0) "
        "selects, on (operands, what each branch reads from outside).  Only that branch runs.",
)


def static_sizes(what: str, tensors) -> None:
    """Loop bodies are compiled for fixed shapes: a clear error for a call-time size."""
    for t in tensors:
        if any(isinstance(d, Dim) for d in t.dims):
            raise NotImplementedError(f"{what}: a loop's operands need fixed shapes; got one of "
                                      f"shape {t.shape} (None: a size given at call time)")


PRIMITIVES = (scan_p, while_p, cond_p)
