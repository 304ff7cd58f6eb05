"""Lowering: the graph becomes the one value that every backend emits from.

``lower`` runs the compiler's target-independent stages once, each a pure
function from one value to the next::

    rewrite        graph -> graph              (CSE, DCE, folding; jitgrad.rewrite)
    check_leaves   graph -> graph              (every input given, names unique)
    linearize      graph -> Schedule           (named variables, equations in order)
    fuse           Schedule -> steps           (kernels, calls, views, collectives)
    defer_collectives  steps -> steps          (collectives packed into few rounds)
    plan_memory    steps -> MemoryPlan         (workspace slots by liveness)

and returns a frozen ``Lowered`` schedule: the schedule itself, its steps and
their memory plan, printed one kernel per line.  ``f.schedule`` is this value
on every target.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass, fields

from .fusion import Collective, ControlFlow, Kernel, defer_collectives, fuse
from .graph import Tensor, inputs_of, topological_order
from .memory import MemoryPlan, plan_memory
from .ops import leaf, linalg, shape as sh
from .ops.loop import Body
from .rewrite import rewrite
from .schedule import Schedule, linearize


@dataclass(frozen=True, eq=False)
class Lowered(Schedule):
    """A schedule with everything a backend needs to emit it: the steps in the order they
    run, their memory plan, the decompositions whose vectors nothing reads, each param's
    state (the values a call reads, aligned with ``params``) and the graph's size
    constraints (``(a, b, op)``: sizes ``a`` and ``b`` must be equal)."""

    steps: tuple
    plan: MemoryPlan
    values_only: frozenset
    states: tuple
    constraints: tuple

    @property
    def has_collectives(self) -> bool:
        """Whether a call takes part in collectives (every rank must run the same tier)."""
        return any(isinstance(step, Collective) for step in self.steps)

    @property
    def update_states(self) -> tuple:
        """The states the param updates write, in ``updates`` order."""
        index = {id(node): k for k, (_, node) in enumerate(self.params)}
        return tuple(self.states[index[id(p)]] for p, _ in self.updates)

    def _body_lines(self) -> list[str]:
        """The constants (names only), then the steps: each kernel with the equations it fused."""
        lines = [f"  {v}:{v.type_str()} = const" for v, _ in self.consts]
        number = 0
        for step in self.steps:
            if isinstance(step, Kernel):
                lines.append(f"  kernel {number}  {step.describe()}")
                lines += [f"      {e}" for e in step.body + step.reductions]
                number += 1
            elif isinstance(step, ControlFlow):
                lines.append(f"  {step.describe()}")
                for name, body in step.bodies.items():
                    body = lower_body(body)
                    lines.append(f"      {name} {{ lambda {' '.join(f'{v}:{v.type_str()}' for v in body.inputs)} ;")
                    lines += ["    " + line for line in body._body_lines()]
                    lines.append(f"        return ({', '.join(map(str, body.outputs))}) }}")
            else:
                lines.append(f"  {step.eqn}")
        return lines


def lower(inputs: list[Tensor], outputs: list[Tensor], updates: list[tuple[Tensor, Tensor]]) -> Lowered:
    """Run every stage between the graph and a backend (see the module docstring)."""
    roots = rewrite(outputs + [v for _, v in updates])
    outputs, updates = roots[:len(outputs)], [(p, v) for (p, _), v in zip(updates, roots[len(outputs):])]
    check_leaves(inputs, roots, [p for p, _ in updates])
    schedule = linearize(inputs, outputs, updates)
    steps = defer_collectives(fuse(schedule))
    return Lowered(**{f.name: getattr(schedule, f.name) for f in fields(Schedule)},
                   steps=steps, plan=plan_memory(steps, schedule), values_only=values_only(schedule),
                   states=tuple(node._payload for _, node in schedule.params),
                   constraints=size_constraints(roots))


_lowered_bodies: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def lower_body(body: Body) -> Lowered:
    """A loop body or branch lowered on its own (once per body): what backends run per step."""
    if body not in _lowered_bodies:
        _lowered_bodies[body] = lower(list(body.params), list(body.outputs), [])
    return _lowered_bodies[body]


def check_leaves(inputs: list[Tensor], roots: list[Tensor], updated: list[Tensor]) -> None:
    """Every input the graph reads is given, and no two inputs or params share a name."""
    given = {id(x) for x in inputs}
    names = {x.name: x for x in inputs}
    for node in inputs_of(roots):
        if id(node) not in given:
            raise ValueError(f"compile: the outputs depend on input {node.name!r}, "
                             f"which is not in inputs {[x.name for x in inputs]}")
    for node in topological_order(roots) + updated:
        if node.op is leaf.param_p:
            other = names.setdefault(node.name, node)
            if other is not node:
                raise ValueError(f"compile: two different inputs/params are named {node.name!r}")


def size_constraints(roots: list[Tensor]) -> tuple:
    """The sizes the graph's shape rules said must be equal: ``(a, b, op name)``."""
    return tuple((a, b, node.op.name) for node in topological_order(roots) for a, b in node.constraints)


def values_only(schedule: Schedule) -> frozenset:
    """Packed eigh/svd results read only through slices of row 0: the values, no vectors
    (a value-only nuclear norm, say; a gradient reads the vectors too)."""
    found = {e.out for e in schedule.eqns if e.op in (linalg.eigh_p, linalg.svd_p)}
    found -= set(schedule.results)
    for e in schedule.eqns:
        reads_row_0 = e.op is sh.slice_p and len(e.ins[0].dims) >= 2 and e.attrs["index"][-2] == (0, 1, 1)
        if not reads_row_0:
            found -= set(e.ins)
    return frozenset(found)
