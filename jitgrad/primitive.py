"""The primitive: one object that says everything jitgrad knows about an op.

A primitive carries its name, its shape/dtype rule, its NumPy reference
implementation and its two derivative rules.  Elementwise primitives also carry
a scalar expression that a fusing backend inlines into its loops.  Nothing here
imports the graph: derivative rules receive the builder namespace ``b`` as their
first argument and call it, so the primitive modules sit below the graph module.
The rules' signatures and their naming convention are in :class:`Primitive`'s
docstring.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class Dim:
    """A dimension whose size is known only at call time (``None`` in a shape).

    Dims are symbols compared by identity.  A root Dim belongs to an input
    (its ``owner``) and is bound from the argument's shape.  A derived Dim (the
    ``-1`` of a reshape, a slice of a call-time axis, an element count) carries
    ``derive = (kind, deps, param)``: plain data naming a formula of
    ``DERIVATIONS`` over the sizes ``deps``.  So every size in a graph is known
    as soon as the arguments are checked, before anything runs, and a saved
    graph can store its sizes without code.
    """

    __slots__ = ("label", "derive", "owner")
    _count = 0

    def __init__(self, label: str | None = None, derive: tuple | None = None):
        Dim._count += 1
        if derive is not None:
            kind, deps, _ = derive
            if kind not in DERIVATIONS:
                raise ValueError(f"unknown size formula {kind!r}")
            derive = (kind, tuple(deps), derive[2])
        self.label = label or f"n{Dim._count}"
        self.derive = derive
        self.owner = None          # the input Tensor a root Dim belongs to

    def __repr__(self) -> str:
        return self.label


def _quotient(sizes, split):
    total = int(np.prod(sizes[:split], dtype=np.int64))
    part = int(np.prod(sizes[split:], dtype=np.int64))
    if part == 0 or total % part:
        raise ValueError(f"reshape: cannot reshape an array of {total} elements into a shape "
                         f"whose known sizes multiply to {part}")
    return total // part


DERIVATIONS = {
    "sum": lambda sizes, _: sum(sizes),
    "prod": lambda sizes, _: int(np.prod(sizes, dtype=np.int64)),
    "quotient": _quotient,                        # prod(deps[:param]) / prod(deps[param:])
    "slice": lambda sizes, step: len(range(sizes[0])[slice(sizes[1], sizes[2], step)]),
}


def resolve_dim(d, sizes: dict) -> int:
    """The size of ``d`` (an int or a Dim) under the call-time ``sizes``."""
    if not isinstance(d, Dim):
        return d
    if d not in sizes:
        if d.derive is None:
            raise ValueError(f"the call-time size {d} is not bound by any argument")
        kind, deps, param = d.derive
        sizes[d] = int(DERIVATIONS[kind]([resolve_dim(x, sizes) for x in deps], param))
    return sizes[d]


def dims_under(values) -> set:
    """Every Dim in ``values`` (nested tuples), with the Dims their formulas use."""
    found, stack = set(), list(values)
    while stack:
        v = stack.pop()
        if isinstance(v, tuple):
            stack.extend(v)
        elif isinstance(v, Dim) and v not in found:
            found.add(v)
            if v.derive is not None:
                stack.extend(v.derive[1])
    return found


DimLike = "int | Dim"


@dataclass(frozen=True)
class Aval:
    """Abstract value: what a node's shape rule infers before anything runs.

    ``constraints`` are pairs of sizes the rule found must be equal at call time
    (two call-time Dims, or a Dim and an int); the compiler checks them against
    the arguments before running anything.
    """

    dims: tuple
    dtype: np.dtype
    constraints: tuple = ()


@dataclass(frozen=True, eq=False)
class Primitive:
    """A named operation with its shape rule, reference and derivative rules.

    The rules (``y`` is the primitive's output, ``xs`` its inputs)::

        shape(*avals, **attrs)           -> Aval of the output; raises on invalid input
        ref(*arrays, **attrs)            -> ndarray, the NumPy reference
        vjp(b, y_bar, y, *xs, **attrs)   -> one input cotangent (or None) per input
        jvp(b, x_dots, y, *xs, **attrs)  -> the output tangent (or None)
        batch(b, batched, y, *xs, **attrs) -> the output for a stack of examples (vmap)

    Every derivative rule uses the same names.  ``b`` is the builder (``b.multiply``,
    ``b.bind``, ...).  ``y_bar`` is the output's cotangent: there is always one, as
    every primitive has one output (``eigh`` and ``svd`` pack theirs into one array,
    and their rules name the blocks ``w_bar``, ``v_bar``, ...).  ``x_dots`` is the tuple
    of input tangents, None where structurally zero.  Inside a rule, an input's
    cotangent is its name plus ``_bar`` (``x_bar``, ``a_bar``, ``rhs_bar``), an
    unpacked tangent its name plus ``_dot`` (``x1_dot, x2_dot = x_dots``), and the
    output's tangent ``y_dot``.  The parameters keep these names where a rule's
    formula calls the output by its own letter (``X = A⁻¹B``, ``L``).  Rules return
    None for a zero derivative; the autodiff pass handles zeros.  For ``y = sin x``::

        vjp=lambda b, y_bar, y, x: (b.multiply(y_bar, b.cos(x)),),     # (x_bar,)
        jvp=lambda b, x_dots, y, x: b.multiply(x_dots[0], b.cos(x)),   # y_dot

    ``batch`` is the rule ``jg.vmap`` applies: ``batched`` holds one flag per
    input, and each batched input carries the examples on a new axis 0 in front
    of the shape ``y``'s input had; the rule returns ``y`` for every example,
    with the examples on axis 0 too.  Primitives that map over leading axes
    (elementwise and matrix primitives) use :func:`batch_stack`.

    ``multi_output``: the primitive has several results, each a node of its own with an
    ``index`` attribute (siblings: same inputs and attributes otherwise, see
    ``jitgrad.ops.loop``).  One rule call serves all siblings: ``ref`` and ``jvp`` take
    ``wanted``, the indices of the siblings present, and return their results (tangents)
    indexed by index; ``vjp`` takes ``y_bars``, a dict from index to cotangent (None for
    none) instead of ``y_bar``; ``batch`` takes ``wanted`` and returns a dict by index.

    ``attrs`` names the static parameters the primitive accepts (saved graphs are
    checked against it).  ``scalar`` is a format string over the inputs for
    elementwise primitives, e.g. ``"math.exp({0})"``.  ``vjp``/``jvp`` set to
    ``None`` together with ``differentiable=False`` declare "no derivative".
    ``promote`` is the dtype policy the builder applies to an elementwise
    primitive's operands: ``"same"`` (NumPy promotion), ``"float"`` (then at
    least float64 for integers) or ``"compare"`` (promote, output bool).
    ``marker``: the value is input 0 (input ``index`` for a multi-output marker) and the op
    exists only for its derivative rules
    (stop_gradient, checkpoint, the spectral functions); once derivatives are built,
    ``rewrite`` replaces it by input 0, so what only the rules read is never computed.
    """

    name: str
    shape: Callable[..., Aval]
    ref: Callable[..., Any]
    vjp: Callable[..., tuple] | None
    jvp: Callable[..., Any] | None
    nin: int | None = 1
    attrs: tuple[str, ...] = ()
    scalar: str | None = None
    differentiable: bool = True
    promote: str | None = None
    marker: bool = False
    batch: Callable[..., Any] | None = None
    multi_output: bool = False
    doc: str = field(default="", compare=False)

    def __repr__(self) -> str:
        return f"{self.name}_p"


def sum_tangents(b, *terms):
    """Add the tangent contributions that are not structurally zero."""
    present = [t for t in terms if t is not None]
    if not present:
        return None
    total = present[0]
    for t in present[1:]:
        total = b.add(total, t)
    return total


def on(dot, fn):
    """Apply a linear map to a tangent, keeping structural zeros (None) as they are."""
    return None if dot is None else fn(dot)


def broadcast_unbatched(b, batched, xs) -> list:
    """``xs`` with the inputs that lack the examples axis broadcast along it."""
    size = next(x.dims[0] for x, mapped in zip(xs, batched) if mapped)
    return [x if mapped else b.broadcast_to(x, (size,) + x.dims) for x, mapped in zip(xs, batched)]


def batch_stack(b, batched, y, *xs, **attrs):
    """The batching rule of a primitive that maps over leading axes (elementwise and
    matrix primitives): the primitive applies as it is, once every input has the examples axis."""
    return b.bind(y.op, *broadcast_unbatched(b, batched, xs), **attrs)
