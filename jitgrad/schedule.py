"""The schedule: a graph linearised into named variables and equations.

It is the contract between the front end and every backend: inputs, params and
constants are bound to variables, then equations run in order.  ``str()``
prints it like a jaxpr, one equation per line.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import provenance
from .graph import Tensor, topological_order
from .ops import leaf
from .primitive import Dim, Primitive

_SHORT = {"float64": "f64", "float32": "f32", "bool": "bool"}


@dataclass(frozen=True, eq=False)
class Var:
    name: str
    dims: tuple
    dtype: np.dtype

    def type_str(self) -> str:
        dt = _SHORT.get(self.dtype.name, self.dtype.name.replace("uint", "u").replace("int", "i"))
        return f"{dt}[{','.join(map(str, self.dims))}]"

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, eq=False)
class Eqn:
    out: Var
    op: Primitive
    ins: tuple[Var, ...]
    attrs: dict = field(default_factory=dict)

    def __str__(self) -> str:
        attrs = "".join(f" {k}={_fmt_attr(v)}" for k, v in self.attrs.items())
        args = " ".join(map(str, self.ins))
        return f"{self.out}:{self.out.type_str()} = {self.op.name}{' ' if args else ''}{args}{attrs}"


def _fmt_attr(v) -> str:
    if isinstance(v, tuple):
        return "(" + ",".join(_fmt_attr(x) for x in v) + ")"
    if isinstance(v, np.dtype):
        return v.name
    return str(v)


@dataclass(frozen=True, eq=False)
class Schedule:
    inputs: tuple[Var, ...]
    params: tuple[tuple[Var, Tensor], ...]
    consts: tuple[tuple[Var, np.ndarray], ...]
    eqns: tuple[Eqn, ...]
    outputs: tuple[Var, ...]
    updates: tuple[tuple[Tensor, Var], ...]

    def __str__(self) -> str:
        def binders(vs):
            return " ".join(f"{v}:{v.type_str()}" for v in vs)
        lines = [f"{{ lambda {binders(self.inputs)} ;"]
        if self.params:
            lines.append(f"  params {binders(v for v, _ in self.params)} ;")
        lines += self._body_lines()
        lines.append(f"  return ({', '.join(map(str, self.outputs))})")
        if self.updates:
            lines.append("  updates " + ", ".join(f"{p.name} <- {v}" for p, v in self.updates))
        return "\n".join(lines) + " }"

    def _body_lines(self) -> list[str]:
        """The constants and the equations, one per line."""
        lines = []
        for v, value in self.consts:
            shown = np.array2string(value, threshold=6, separator=",") if value.size <= 6 else "..."
            lines.append(f"  {v}:{v.type_str()} = const {shown}")
        return lines + [f"  {e}" for e in self.eqns]

    def __len__(self) -> int:
        return len(self.eqns)

    @property
    def results(self) -> tuple[Var, ...]:
        """What a call hands back: the outputs, then the params' new values."""
        return self.outputs + tuple(v for _, v in self.updates)


def _names(reserved: set):
    """a, b, ..., z, ba, bb, ... (autodidax-style variable names), skipping ``reserved``."""
    n = -1
    while True:
        n += 1
        k, s = n, ""
        while True:
            s = chr(ord("a") + k % 26) + s
            k //= 26
            if k == 0:
                break
        if s not in reserved:
            yield s


def linearize(inputs: list[Tensor], outputs: list[Tensor], updates: list[tuple[Tensor, Tensor]]) -> Schedule:
    """Order the nodes the outputs and updates need, and name them."""
    roots = list(outputs) + [value for _, value in updates]
    order = topological_order(roots)
    reserved = {n.name for n in order if n.name} | {x.name for x in inputs} | {p.name for p, _ in updates}
    names, var_of = _names(reserved), {}

    def var(node: Tensor, name=None) -> Var:
        if id(node) not in var_of:
            var_of[id(node)] = Var(name or next(names), node.dims, node.dtype)
        return var_of[id(node)]

    in_vars = tuple(var(x, x.name) for x in inputs)
    params, consts, eqns = [], [], []
    for node in order:
        if node.op is leaf.param_p:
            params.append((var(node, node.name), node))
        elif node.op is leaf.constant_p:
            consts.append((var(node), node.const_value))
        elif node.op is not leaf.input_p:
            ins = tuple(var_of[id(i)] for i in node.inputs)
            eqns.append(Eqn(var(node), node.op, ins, dict(node.attrs)))
            provenance.link(eqns[-1].out, node)     # where the node was built, if recorded
    for p, _ in updates:
        if id(p) not in var_of:
            params.append((var(p, p.name), p))
    return Schedule(in_vars, tuple(params), tuple(consts), tuple(eqns),
                    tuple(var_of[id(o)] for o in outputs),
                    tuple((p, var_of[id(v)]) for p, v in updates))


def dims_in(schedule: Schedule) -> set[Dim]:
    """Every call-time size the schedule mentions (for binding checks)."""
    found = set()
    for v in list(schedule.inputs) + [e.out for e in schedule.eqns]:
        found.update(d for d in v.dims if isinstance(d, Dim))
    return found
