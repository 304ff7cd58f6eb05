"""The reference target: run a schedule equation by equation with NumPy.

Unfused and unoptimised on purpose: it is the oracle every other backend is
tested against.  Each result is checked against the shape the graph inferred,
so a wrong shape rule fails loudly here instead of producing wrong numbers.
"""
from __future__ import annotations

import time

import numpy as np

from .. import debug
from ..lower import Lowered
from ..ops.loop import sibling_key, wanted_results
from ..primitive import Dim, resolve_dim
from ..schedule import Schedule
from .program import Program


def _resolve(value, sizes):
    if isinstance(value, tuple):
        return tuple(_resolve(v, sizes) for v in value)
    return resolve_dim(value, sizes) if isinstance(value, Dim) else value


def _last_uses(schedule: Schedule) -> dict:
    last = {}
    for i, eqn in enumerate(schedule.eqns):
        for v in eqn.ins:
            last[v] = i
    for v in schedule.results:
        last[v] = len(schedule.eqns)
    return last


class NumpyProgram(Program):
    """A schedule ready to run with NumPy, equation by equation (its steps unused)."""

    takes_scalars = False
    source = None

    def __init__(self, schedule: Lowered, debug_nans: bool = False):
        self.schedule = schedule
        self._last = _last_uses(schedule)
        self._frees = [[v for v in eqn.ins if self._last.get(v) == i]
                       for i, eqn in enumerate(schedule.eqns)]
        # debug_nans: the step that writes each checked value (jitgrad.debug); values are all
        # kept, for the report to find the equation that made a NaN
        self._checks = {v: k for k, v in debug.checks(schedule)} if debug_nans else {}
        if debug_nans:
            self._frees = [[] for _ in schedule.eqns]
        self._siblings: dict = {}       # a multi-output equation's key -> its siblings
        for eqn in schedule.eqns:
            if eqn.op.multi_output:
                self._siblings.setdefault(sibling_key(eqn), []).append(eqn)
        self._wanted = wanted_results(schedule.eqns)

    def entry(self, fixed: list, single: bool) -> None:
        return None

    def __call__(self, args: list, sizes: dict) -> list:
        """Run on checked arguments; returns the outputs, then the new param values."""
        return self._run(args, sizes, None)

    def profile(self, args: list, sizes: dict, repeat: int) -> debug.Profile:
        """``repeat`` calls, each equation timed (the reference has no fused steps)."""
        times = np.zeros(len(self.schedule.eqns))
        start = time.perf_counter()
        for _ in range(repeat):
            self._run(args, sizes, times)
        wall = time.perf_counter() - start
        rows = tuple(debug.ProfileRow(f"eqn {i}", str(eqn), float(t), repeat)
                     for i, (eqn, t) in enumerate(zip(self.schedule.eqns, times)))
        return debug.Profile("numpy", rows, repeat, wall)

    def _run(self, args: list, sizes: dict, times) -> list:
        """A call; with ``times`` (an array, one entry per equation), each equation's seconds
        are added to it."""
        s = self.schedule
        env = dict(zip(s.inputs, args))
        env.update(zip((v for v, _ in s.params), (state.array for state in s.states)))
        env.update(s.consts)
        with np.errstate(all="ignore"):
            for i, (eqn, frees) in enumerate(zip(s.eqns, self._frees)):
                if eqn.out not in env:          # (else a sibling computed it)
                    if times is not None:
                        started = time.perf_counter()
                    ins = [env[v] for v in eqn.ins]
                    attrs = {k: _resolve(v, sizes) for k, v in eqn.attrs.items()}
                    if eqn.op.multi_output:
                        key = sibling_key(eqn)
                        out = eqn.op.ref(*ins, wanted=self._wanted[key], **attrs)
                        for sibling in self._siblings[key]:
                            env[sibling.out] = self._checked(out[sibling.attrs["index"]], sibling, sizes)
                    else:
                        out = eqn.op.ref(*ins, **attrs)
                        env[eqn.out] = self._checked(out, eqn, sizes)
                    if times is not None:
                        times[i] += time.perf_counter() - started
                    if self._checks:
                        self._check_finite(eqn, env)
                for v in frees:
                    if v not in s.outputs:
                        env.pop(v, None)
        return [np.array(env[v], copy=True) for v in s.results]

    def _check_finite(self, eqn, env) -> None:
        """debug_nans: raise if a value a step writes holds NaN/inf (``jitgrad.debug``)."""
        made = self._siblings[sibling_key(eqn)] if eqn.op.multi_output else (eqn,)
        for e in made:
            k = self._checks.get(e.out)
            if k is not None and not np.isfinite(env[e.out]).all():
                raise debug.report(self.schedule, debug.find(self.schedule, k, e.out, env), "numpy")

    @staticmethod
    def _checked(out, eqn, sizes) -> np.ndarray:
        """``out`` in the dtype the graph inferred, after checking its shape."""
        out = np.asarray(out)
        if out.dtype != eqn.out.dtype:
            out = out.astype(eqn.out.dtype)
        expected = tuple(resolve_dim(d, sizes) for d in eqn.out.dims)
        if out.shape != expected:
            raise RuntimeError(f"jitgrad internal error: {eqn.op.name} produced shape "
                               f"{out.shape}, its shape rule said {expected}\n  {eqn}")
        return out
