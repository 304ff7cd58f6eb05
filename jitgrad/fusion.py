"""Fusion: partition a schedule into kernels and library calls.

A kernel is one loop nest over an iteration space.  It computes elementwise
equations as scalars, reads operands in place through index maps
(``broadcast_to``, ``transpose``, ``slice``, ``gather``, ``patches`` read their input
at a computed index instead of materialising it), and ends in reductions that
accumulate as the loop runs.  Forward and reverse equations over the same
space share one loop.  Everything else (matmul, reshape, concatenate, ...) is
a library call and a kernel boundary.

Equations are reordered (keeping dependencies) so that a kernel takes every
ready equation that fits before it closes.
"""
from __future__ import annotations

from dataclasses import dataclass

from .ops import collective, linalg, reduce as rd, shape as sh, window
from .ops.loop import Body, sibling_key
from .schedule import Eqn, Schedule, Var

INDEX_MAPS = (sh.broadcast_to_p, sh.transpose_p, sh.slice_p, sh.gather_p, window.patches_p)
REDUCTIONS = (rd.reduce_sum_p, rd.reduce_max_p, rd.reduce_min_p, rd.reduce_prod_p)


@dataclass(frozen=True, eq=False)
class Kernel:
    """One loop nest over ``dims``: ``body`` (elementwise and index-map equations, as
    scalars), ``reductions`` accumulated in the loop, and ``stores``: the body values
    needed after the kernel."""

    dims: tuple
    body: tuple[Eqn, ...]
    reductions: tuple[Eqn, ...]
    stores: tuple[Var, ...]

    def reads(self) -> tuple[Var, ...]:
        """Buffers the kernel reads (computed before it), in first-use order."""
        inside = {e.out for e in self.body}
        seen: dict[Var, None] = {}
        for e in self.body + self.reductions:
            for v in e.ins:
                if v not in inside:
                    seen.setdefault(v)
        return tuple(seen)

    def writes(self) -> tuple[Var, ...]:
        """Buffers the kernel fills: its stores, then its reductions' results."""
        return self.stores + tuple(e.out for e in self.reductions)

    def describe(self) -> str:
        ops = ", ".join(e.op.name for e in self.body + self.reductions)
        outs = ", ".join(f"{v}:{v.type_str()}" for v in self.stores + tuple(e.out for e in self.reductions))
        ins = ", ".join(f"{v}:{v.type_str()}" for v in self.reads())
        return f"fused[{ops}]  {ins} -> {outs}"


@dataclass(frozen=True, eq=False)
class Call:
    """A library operation that runs on its own (a kernel boundary)."""

    eqn: Eqn

    def reads(self) -> tuple[Var, ...]:
        return self.eqn.ins

    def writes(self) -> tuple[Var, ...]:
        return (self.eqn.out,)

    def describe(self) -> str:
        return f"call {self.eqn}"


class View(Call):
    """A reshape, or a transpose that only matmuls read: a new look at its operand's
    memory, with no buffer of its own."""


class Collective(Call):
    """A sum over ranks (``psum``): communication, grouped by ``defer_collectives``."""


@dataclass(frozen=True, eq=False)
class ControlFlow(Call):
    """A loop (``scan``, ``while``) or a branch (``cond``) with all its sibling results, run
    as one step.  ``eqn`` is the first sibling; ``siblings`` all of them, each with its
    ``index``; ``bodies`` the graphs it runs (a :class:`~jitgrad.ops.loop.Body` each)."""

    siblings: tuple = ()

    @property
    def bodies(self) -> dict:
        return {k: v for k, v in self.eqn.attrs.items() if isinstance(v, Body)}

    def writes(self) -> tuple[Var, ...]:
        return tuple(e.out for e in self.siblings)

    def describe(self) -> str:
        a = self.eqn.attrs
        outs = ", ".join(f"{e.out}:{e.out.type_str()}[{e.attrs['index']}]" for e in self.siblings)
        ins = " ".join(map(str, self.eqn.ins))
        if self.eqn.op.name == "scan":
            head = f"loop {a['length']} steps{' reverse' if a['reverse'] else ''} of {a['body']}"
        elif self.eqn.op.name == "while":
            head = f"loop of {a['body']} while {a['cond']}"
        else:
            head = f"{a['true']} if {self.eqn.ins[0]} else {a['false']}"
        return f"{head}  {ins} -> {outs}"


def merge_siblings(eqns) -> tuple[list, dict]:
    """The equations with each group of sibling results (``multi_output``) reduced to its
    first, and that first equation's id -> the whole group."""
    kept, groups = [], {}
    first: dict[tuple, Eqn] = {}
    for e in eqns:
        if e.op.multi_output:
            key = sibling_key(e)
            if key in first:
                groups[id(first[key])].append(e)
                continue
            first[key] = e
            groups[id(e)] = [e]
        kept.append(e)
    return kept, {k: tuple(v) for k, v in groups.items()}


def _call(e: Eqn, siblings=None) -> Call:
    if siblings is not None:
        return ControlFlow(e, siblings)
    if e.op is collective.psum_p:
        return Collective(e)
    return View(e) if e.op in (sh.reshape_p, sh.transpose_p) else Call(e)


def _is_elementwise(e: Eqn) -> bool:
    return e.op.scalar is not None


class _Open:
    """The kernel being filled."""

    def __init__(self, dims):
        self.dims, self.body, self.reductions = dims, [], []
        self.scalars: set[Var] = set()      # values the loop computes
        self.pending: set[Var] = set()      # reduction results: ready only after the loop

    def accepts(self, e: Eqn) -> bool:
        if any(v in self.pending for v in e.ins):
            return False
        if e.op in REDUCTIONS:
            return e.ins[0].dims == self.dims
        if e.out.dims != self.dims:
            return False
        if e.op in INDEX_MAPS:                # reads its operand at other indices: a buffer
            return e.ins[0] not in self.scalars and all(v not in self.scalars for v in e.ins)
        return _is_elementwise(e)

    def add(self, e: Eqn) -> None:
        if e.op in REDUCTIONS:
            self.reductions.append(e)
            self.pending.add(e.out)
        else:
            self.body.append(e)
            self.scalars.add(e.out)


def _fusible(e: Eqn) -> bool:
    return _is_elementwise(e) or e.op in INDEX_MAPS or e.op in REDUCTIONS


def _matmul_operand_transposes(eqns, users) -> set[int]:
    """Transposed matrices that only feed matmuls stay views: BLAS reads them transposed."""
    return {i for i, e in enumerate(eqns)
            if e.op is sh.transpose_p and len(e.out.dims) == 2 and e.out.dtype.kind == "f"
            and users.get(i) and all(eqns[j].op is linalg.matmul_p for j in users[i])}


def _space(e: Eqn) -> tuple:
    return e.ins[0].dims if e.op in REDUCTIONS else e.out.dims


def fuse(schedule: Schedule) -> tuple:
    """Kernels and calls, in an order that respects every dependency."""
    eqns, groups = merge_siblings(schedule.eqns)
    producer = {v: i for i, e in enumerate(eqns) for v in (s.out for s in groups.get(id(e), (e,)))}
    waiting = [sum(1 for v in set(e.ins) if v in producer) for e in eqns]
    users: dict[int, list[int]] = {}
    for i, e in enumerate(eqns):
        for v in set(e.ins):
            if v in producer:
                users.setdefault(producer[v], []).append(i)
    ready = sorted(i for i, w in enumerate(waiting) if w == 0)
    views = _matmul_operand_transposes(eqns, users)
    steps: list = []
    current: _Open | None = None
    while ready:
        pick = next((i for i in ready
                     if current is not None and i not in views and current.accepts(eqns[i])), None)
        if pick is None:
            steps.append(current)
            pick = ready[0]
            current = _Open(_space(eqns[pick])) if _fusible(eqns[pick]) and pick not in views else None
        ready.remove(pick)
        if current is None:
            steps.append(_call(eqns[pick], groups.get(id(eqns[pick]))))
        else:
            if not current.accepts(eqns[pick]):     # a fusible op that must start a kernel
                steps.append(current)
                current = _Open(_space(eqns[pick]))
            current.add(eqns[pick])
        for j in users.get(pick, ()):
            waiting[j] -= 1
            if waiting[j] == 0:
                ready.append(j)
                ready.sort()
    steps.append(current)
    return _with_stores(_pull_index_maps([g for g in steps if g is not None]), schedule)


def _pull_index_maps(groups: list) -> list:
    """Recompute broadcasts, transposes, slices and gathers where they are consumed.

    An index map only reads memory; copying it into each kernel that needs its
    result (over the same space) is free, while storing it costs a buffer and a
    pass.  The kernel that made it then stores it only if something else reads it.
    A copy is not made where its input is computed in the loop, or where another
    index map of the kernel must read its result from memory.
    """
    made_by: dict[Var, Eqn] = {}
    for g in groups:
        if isinstance(g, Call):
            continue
        for e in list(g.body):
            for v in e.ins:
                p = made_by.get(v)
                if (v not in g.scalars and p is not None and p.out.dims == g.dims
                        and e.op not in INDEX_MAPS and not any(u in g.scalars for u in p.ins)
                        and not any(m.op in INDEX_MAPS and v in m.ins for m in g.body)):
                    g.body.insert(0, p)
                    g.scalars.add(p.out)
        made_by.update((e.out, e) for e in g.body if e.op in INDEX_MAPS)
    return groups


def _buffer_reads(g) -> list[Var]:
    if isinstance(g, Call):
        return list(g.reads())
    return [v for e in g.body + g.reductions for v in e.ins if v not in g.scalars]


def _with_stores(groups: list, schedule: Schedule) -> tuple:
    """Freeze open kernels, storing each value that a later step reads from memory (or
    that the caller gets) once, in the first kernel that computes it."""
    last_read: dict[Var, int] = {}
    for k, g in enumerate(groups):
        for v in _buffer_reads(g):
            last_read[v] = k
    final = set(schedule.results)
    steps, stored = [], set()
    for k, g in enumerate(groups):
        if isinstance(g, Call):
            steps.append(g)
            continue
        stores = tuple(e.out for e in g.body if e.out not in stored
                       and (last_read.get(e.out, -1) > k or e.out in final))
        stored.update(stores)
        if stores or g.reductions:             # else everything it made was pulled elsewhere
            steps.append(Kernel(tuple(g.dims), tuple(g.body), tuple(g.reductions), stores))
    return tuple(steps)


def defer_collectives(steps) -> tuple:
    """Order the steps so that collectives run in as few groups as possible.

    Everything that does not wait for a collective runs first; then every collective
    whose input is ready runs, side by side, so that a backend packs them into one
    all-reduce (the gradients of a training step become one bucket); and so on.
    """
    if not any(isinstance(step, Collective) for step in steps):
        return tuple(steps)
    produced = {v for step in steps for v in step.writes()}
    ready: set = set()
    remaining, ordered = list(steps), []

    def runnable(step):
        return all(v in ready or v not in produced for v in step.reads())
    while remaining:
        progress = True
        while progress:                         # all the computation that can run now
            progress = False
            for step in list(remaining):
                if not isinstance(step, Collective) and runnable(step):
                    ordered.append(step)
                    ready.update(step.writes())
                    remaining.remove(step)
                    progress = True
        group = [step for step in remaining if isinstance(step, Collective) and runnable(step)]
        if not group and remaining:
            raise AssertionError("jitgrad internal error: steps wait for each other")
        for step in group:                      # then one round of communication
            ordered.append(step)
            ready.update(step.writes())
            remaining.remove(step)
    return tuple(ordered)
