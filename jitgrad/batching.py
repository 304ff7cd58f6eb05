"""``vmap``: a function of one example turned into a function of a stack of examples.

``vmap`` is a graph transform, as differentiation is.  It calls the user's
function once, on stand-in leaves shaped like one example, then rebuilds the
nodes that depend on those leaves with each primitive's batching rule
(``Primitive.batch``), which carries the examples on a new leading axis.  Nodes
that do not depend on the examples (params, constants, closed-over Tensors) are
shared, not repeated.  So the batched graph is ordinary graph: it compiles on
every target, fuses, and differentiates like any other, and its size does not
grow with the number of examples.
"""
from __future__ import annotations

import functools

from . import functions as F
from .graph import Tensor, topological_order
from .ops import control, leaf
from .ops.loop import sibling_key, wanted_results
from .ops._shapes import fmt_shape


def vmap(fn, in_axes=0, out_axes=0):
    """Map ``fn``, which builds graph for one example, over an axis of its arguments.

    ``in_axes`` is one axis for every argument or a tuple with one entry per
    argument; ``None`` passes that argument whole to every example.  ``out_axes``
    says where the examples axis goes in each output (``None``: an output that
    does not depend on the examples, returned once).  Nested ``vmap`` and
    derivatives inside and outside work, so per-example gradients are one line:

    >>> import jitgrad as jg
    >>> w = jg.param("w", [1.0, 2.0])
    >>> xs = jg.input("xs", (8, 2))
    >>> per_example = jg.vmap(lambda x: jg.grad(jg.sum(jg.tanh(x * w)), [w])[0])(xs)
    >>> per_example.shape
    (8, 2)

    A ``jg.checkpoint`` region inside ``fn`` keeps its values and derivatives
    but is not recomputed in the reverse pass of the batched graph.
    """
    @functools.wraps(fn)
    def batched(*args):
        args = [F.as_tensor(a) for a in args]
        axes = _normalized_in_axes(in_axes, args)
        size = _batch_size(args, axes)
        stand_ins, examples = [], {}
        for i, (arg, axis) in enumerate(zip(args, axes)):
            if axis is None:
                stand_ins.append(arg)
                continue
            one = Tensor(leaf.input_p, (), {}, arg.dims[:axis] + arg.dims[axis + 1:], arg.dtype,
                         name=f"vmap_example_{i}")
            stand_ins.append(one)
            examples[id(one)] = _axis_to(arg, axis, 0)
        outputs = fn(*stand_ins)
        flat = [F.as_tensor(o) for o in control.flatten(outputs)]
        mapped = batch_graph(flat, examples)
        results = [_place_output(k, o, mapped.get(id(o)), axis, size)
                   for k, (o, axis) in enumerate(zip(flat, _per_output(out_axes, len(flat))))]
        return type(outputs)(results) if isinstance(outputs, (tuple, list)) else results[0]
    return batched


def batch_graph(outputs, examples: dict) -> dict:
    """The batched version of every node behind ``outputs`` that depends on a stand-in.

    ``examples`` maps ``id(stand_in)`` to its batched Tensor (examples on axis 0);
    the result maps ``id(node)`` to the node's batched Tensor, for those nodes only.
    """
    batched, siblings = dict(examples), {}
    order = topological_order(outputs)
    wanted = wanted_results(order)
    for node in order:
        if id(node) in batched:
            continue
        flags = tuple(id(x) in batched for x in node.inputs)
        if not any(flags):
            continue
        if node.op.batch is None:
            raise NotImplementedError(f"vmap: the primitive {node.op.name!r} has no batching rule")
        xs = [batched.get(id(x), x) for x in node.inputs]
        if node.op.multi_output:        # one rule call batches every sibling
            key = sibling_key(node)
            if key not in siblings:
                siblings[key] = node.op.batch(F, flags, node, *xs, wanted=wanted[key], **node.attrs)
            out = siblings[key][node.attrs["index"]]
        else:
            out = node.op.batch(F, flags, node, *xs, **node.attrs)
        assert out.ndim == node.ndim + 1 and out.dtype == node.dtype, (
            f"vmap: the batching rule of {node.op.name!r} made {out.dtype}{fmt_shape(out.dims)} "
            f"from one example's {node.dtype}{fmt_shape(node.dims)}")
        batched[id(node)] = out
    return batched


def _normalized_in_axes(in_axes, args) -> list:
    if isinstance(in_axes, (tuple, list)):
        if len(in_axes) != len(args):
            raise ValueError(f"vmap: in_axes has {len(in_axes)} entries for {len(args)} arguments")
        axes = list(in_axes)
    else:
        axes = [in_axes] * len(args)
    for i, (axis, arg) in enumerate(zip(axes, args)):
        if axis is None:
            continue
        if not isinstance(axis, int) or isinstance(axis, bool):
            raise TypeError(f"vmap: in_axes[{i}] must be an int or None, got {axis!r}")
        if not -arg.ndim <= axis < arg.ndim:
            raise ValueError(f"vmap: in_axes[{i}] = {axis} is out of range for argument {i} "
                             f"of shape {fmt_shape(arg.dims)}")
        axes[i] = axis % arg.ndim
    if all(axis is None for axis in axes):
        raise ValueError("vmap: no argument is mapped (every in_axes entry is None)")
    return axes


def _batch_size(args, axes):
    """The number of examples, the same for every mapped argument."""
    sizes = [(i, arg.dims[axis]) for i, (arg, axis) in enumerate(zip(args, axes)) if axis is not None]
    first, size = sizes[0]
    for i, other in sizes[1:]:
        if isinstance(size, int) and isinstance(other, int) and other != size:
            raise ValueError(f"vmap: argument {first} has {size} examples along axis {axes[first]} "
                             f"but argument {i} has {other} along axis {axes[i]}")
    return size


def _per_output(out_axes, n: int) -> list:
    if isinstance(out_axes, (tuple, list)):
        if len(out_axes) != n:
            raise ValueError(f"vmap: out_axes has {len(out_axes)} entries for {n} outputs")
        return list(out_axes)
    return [out_axes] * n


def _place_output(k: int, one: Tensor, batched: Tensor | None, axis, size) -> Tensor:
    """Output ``k`` with its examples axis at ``axis`` (``one`` is its value for one example)."""
    if axis is None:
        if batched is not None:
            raise ValueError(f"vmap: out_axes[{k}] is None, but output {k} depends on the mapped "
                             f"arguments")
        return one
    if not isinstance(axis, int) or isinstance(axis, bool):
        raise TypeError(f"vmap: out_axes[{k}] must be an int or None, got {axis!r}")
    if not -(one.ndim + 1) <= axis <= one.ndim:
        raise ValueError(f"vmap: out_axes[{k}] = {axis} does not fit output {k}, whose examples "
                         f"have shape {fmt_shape(one.dims)} (rank {one.ndim + 1} with the examples axis)")
    if batched is None:
        batched = F.broadcast_to(one, (size,) + one.dims)
    return _axis_to(batched, 0, axis % (one.ndim + 1))


def _axis_to(x: Tensor, source: int, dest: int) -> Tensor:
    """``x`` with its axis ``source`` moved to position ``dest``."""
    if source == dest:
        return x
    order = [a for a in range(x.ndim) if a != source]
    order.insert(dest, source)
    return F.transpose(x, tuple(order))
