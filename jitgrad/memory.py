"""The memory plan: which buffers share storage, and which are fresh every call.

Outputs (and the new values of params) are fresh arrays each call.  Every
other buffer lives in a workspace of a few flat arrays, one per slot, that a
compiled function keeps across calls with the same shapes: a training loop
allocates no intermediates in steady state.  Slots are assigned by liveness:
a buffer takes a slot whose previous tenant is dead, so intermediates of the
forward pass are reused by the reverse pass once nothing reads them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .fusion import Collective, View
from .primitive import Dim, resolve_dim
from .schedule import Schedule, Var


@dataclass(frozen=True, eq=False)
class MemoryPlan:
    fresh: frozenset            # buffers allocated anew each call (what the caller gets)
    slot_of: dict               # other buffers -> workspace slot
    slots: tuple                # per slot: (dtype, the shapes it must hold)

    def slot_sizes(self, sizes: dict) -> list[int]:
        """Elements each slot needs under the call-time ``sizes``."""
        return [max(_numel(dims, sizes) for dims in shapes) for _, shapes in self.slots]

    def is_static(self) -> bool:
        return all(not isinstance(d, Dim) for _, shapes in self.slots for dims in shapes for d in dims)

    def allocate(self, sizes: dict) -> list[np.ndarray]:
        return [np.empty(n, dtype) for n, (dtype, _) in zip(self.slot_sizes(sizes), self.slots)]


def _numel(dims, sizes) -> int:
    return int(np.prod([resolve_dim(d, sizes) for d in dims], dtype=np.int64))


def _collective_runs(steps) -> dict:
    """Step index -> when its reads really happen, for collectives: consecutive collectives
    are packed into one all-reduce that runs after the last of them has its output buffer,
    so each one's input must outlive the whole run (else a later output could take its slot)."""
    read_at, i = {}, 0
    while i < len(steps):
        j = i
        while isinstance(steps[j], Collective) and j + 1 < len(steps) and isinstance(steps[j + 1], Collective):
            j += 1
        for k in range(i, j + 1):
            if isinstance(steps[k], Collective):
                read_at[k] = j
        i = j + 1
    return read_at


def plan_memory(steps, schedule: Schedule) -> MemoryPlan:
    """Assign every intermediate buffer a workspace slot by liveness (linear scan)."""
    escaping = set(schedule.results)
    owner: dict[Var, Var] = {}          # a reshape's result -> the buffer it views
    last_use: dict[Var, int] = {}
    read_at = _collective_runs(steps)
    for i, step in enumerate(steps):
        for v in step.reads():
            last_use[owner.get(v, v)] = read_at.get(i, i)
        if isinstance(step, View):
            src = step.eqn.ins[0]
            owner[step.eqn.out] = owner.get(src, src)
    for v in escaping & set(owner):       # returned views are copied at the very end
        last_use[owner[v]] = len(steps)
    fresh, slot_of, slots, tenants = set(), {}, [], {}
    for i, step in enumerate(steps):
        free = [s for s, v in tenants.items() if last_use.get(v, -1) < i]
        for v in () if isinstance(step, View) else step.writes():     # a view has no buffer
            assert v not in slot_of and v not in fresh, f"jitgrad internal error: {v} written twice"
            if v in escaping:
                fresh.add(v)
                continue
            slot = next((s for s in free if slots[s][0] == v.dtype), None)
            if slot is None:
                slot = len(slots)
                slots.append((v.dtype, []))
            else:
                free.remove(slot)
            slots[slot][1].append(v.dims)
            slot_of[v], tenants[slot] = slot, v
    return MemoryPlan(frozenset(fresh), slot_of, tuple((dt, tuple(shapes)) for dt, shapes in slots))
