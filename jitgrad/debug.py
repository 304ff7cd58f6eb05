"""Finding the first NaN (``jg.compile(..., debug_nans=True)``) and seeing where a call's time
goes (``f.profile``), on every target.

NaN checks.  With ``debug_nans`` each target runs a *different* program, with a check after
every step (fused kernel, library call, loop) of each float value the step writes
(``checks``); the normal program has none. The NumPy reference checks as it goes and raises;
the CPU program records the first failing check in a flag array (and skips the checks and the
loops after it); on CUDA a small kernel after each step sets a device flag that is read back
once per call. A compiled program then raises ``CheckFailed``, and the Executable runs the same
call on the reference interpreter, which keeps every value, to pin the NaN down to the equation
of the step that made it (a fused kernel computes many values, storing few). The error is
raised before the call's param updates are applied.

The report names the step, the primitive, its schedule line (``str(eqn)``), the inputs that
already held NaN/inf and, if the graph was built in debug mode (``jitgrad.provenance``), the
user's lines that built the value.

Profiles.  ``f.profile(*args, repeat=10)`` runs the call ``repeat`` times, timing each step
(each equation on ``numpy``), and returns a :class:`Profile`, whose printout is a table sorted
by time.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import provenance
from .fusion import Call, ControlFlow, Kernel, View
from .schedule import Eqn, Var


# -- what is checked ---------------------------------------------------------------------------

def checked_writes(step, values_only=frozenset()) -> tuple[Var, ...]:
    """The values a NaN check reads after ``step``: the float values it writes. Views make no
    values; a decomposition computing only its values leaves the vectors' part unwritten."""
    if isinstance(step, View):
        return ()
    return tuple(v for v in step.writes() if v.dtype.kind == "f" and v not in values_only)


def checks(schedule) -> list[tuple[int, Var]]:
    """Every check of a lowered schedule, in the order they run: (step index, value). A
    compiled program reports a failed check by its position in this list."""
    return [(k, v) for k, step in enumerate(schedule.steps)
            for v in checked_writes(step, schedule.values_only)]


def step_names(steps) -> list[str]:
    """How reports and profiles call each step: kernels numbered as ``str(f.schedule)`` prints
    them (``kernel 3``), else ``call matmul``, ``view reshape``, ``scan``..."""
    names, kernels = [], 0
    for step in steps:
        if isinstance(step, Kernel):
            names.append(f"kernel {kernels}")
            kernels += 1
        elif isinstance(step, ControlFlow):
            names.append(step.eqn.op.name)
        elif isinstance(step, View):
            names.append(f"view {step.eqn.op.name}")
        else:
            names.append(f"call {step.eqn.op.name}")
    return names


def step_eqns(step) -> tuple[Eqn, ...]:
    """The equations a step computes, in order."""
    if isinstance(step, Kernel):
        return step.body + step.reductions
    if isinstance(step, ControlFlow):
        return step.siblings
    return (step.eqn,)


def _ops(step) -> str:
    if isinstance(step, Kernel):
        return "fused[" + ", ".join(e.op.name for e in step_eqns(step)) + "]"
    return step.eqn.op.name


# -- the report ---------------------------------------------------------------------------------

def _finite(value) -> bool:
    if value is None:
        return True
    a = np.asarray(value)
    return a.dtype.kind != "f" or bool(np.isfinite(a).all())


def _kind(value) -> str:
    a = np.asarray(value)
    nan, inf = bool(np.isnan(a).any()), bool(np.isinf(a).any())
    return "nan and inf" if nan and inf else "nan" if nan else "inf"


@dataclass(frozen=True)
class Finding:
    """The first check that failed: ``index`` of the step in the schedule, the value ``bad``
    it wrote, and, where the reference's values pinned it down, the equation ``origin`` of the
    step that made the first NaN/inf on the way to ``bad`` and the values ``poisoned`` it (or
    the step) read that already held NaN/inf. ``kind``: "nan", "inf" or "nan and inf"."""

    index: int
    bad: Var
    kind: str = "nan or inf"
    origin: Eqn | None = None
    poisoned: tuple = ()


def find(schedule, index: int, bad: Var, values: dict) -> Finding:
    """Pin down, from every value of the call (Var -> array), where ``bad`` (written by step
    ``index``) first went non-finite: the earliest equation of the step on the way to ``bad``
    whose result is non-finite from finite operands; else the earliest non-finite one."""
    step = schedule.steps[index]
    eqns = step_eqns(step)
    made = {e.out: e for e in eqns}
    needed, stack = set(), [bad]
    while stack:
        v = stack.pop()
        if v in made and v not in needed:
            needed.add(v)
            stack.extend(made[v].ins)
    chain = [e for e in eqns if e.out in needed]

    def poisoned(vs):
        return tuple(v for v in vs if not _finite(values.get(v)))

    broken = [e for e in chain if not _finite(values.get(e.out))]
    origin = next((e for e in broken if not poisoned(e.ins)), broken[0] if broken else None)
    inputs = poisoned(origin.ins) if origin is not None else poisoned(step.reads())
    return Finding(index, bad, _kind(values[bad]), origin, inputs)


class NonFiniteError(FloatingPointError):
    """What ``debug_nans`` raises: ``finding`` says where (a :class:`Finding`), ``site`` which
    line of user code built the value (None unless the graph was built in debug mode)."""

    def __init__(self, message: str, finding: Finding, site):
        super().__init__(message)
        self.finding, self.site = finding, site


_HOW_TO_RECORD = ("(to see the line of code that built each value, build the graph with "
                  "JITGRAD_DEBUG_NANS=1 in the environment, or inside `with jg.debug_nans():`)")


def _leaf_name(schedule, v: Var) -> str:
    if v in schedule.inputs:
        return f"{v} (input {v.name!r})"
    if any(v is p for p, _ in schedule.params):
        return f"{v} (param {v.name!r})"
    if any(v is c for c, _ in schedule.consts):
        return f"{v} (a constant)"
    return f"{v}:{v.type_str()}"


def report(schedule, finding: Finding, target: str, note: str = "") -> NonFiniteError:
    """The error for ``finding``, its message naming step, primitive, equation, poisoned inputs
    and (when recorded) the user's lines."""
    step, index, bad = schedule.steps[finding.index], finding.index, finding.bad
    name = step_names(schedule.steps)[index]
    fused = f"{_ops(step)}; " if isinstance(step, Kernel) else ""
    lines = [f"debug_nans: {name} ({fused}step {index + 1} of {len(schedule.steps)}) produced "
             f"{finding.kind} in {bad}:{bad.type_str()} on target {target!r}"]
    if note:
        lines.append(f"  ({note})")
    origin, poisoned = finding.origin, ", ".join(_leaf_name(schedule, v) for v in finding.poisoned)
    if origin is None:                  # only the step is known
        lines.append(f"    {step.describe()}")
        if poisoned:
            lines.append(f"  its inputs already held NaN/inf: {poisoned}")
    elif poisoned:
        lines += [f"  the first NaN/inf appears in {origin.op.name}, whose operand(s) already held NaN/inf: "
                  f"{poisoned}:", f"    {origin}"]
    else:
        lines += [f"  the first NaN/inf is made by {origin.op.name}, from finite operands:", f"    {origin}"]
    culprit = bad if origin is None else origin.out
    site, built = provenance.site_of_var(culprit), culprit
    if site is None and culprit is not bad:
        site, built = provenance.site_of_var(bad), bad
    if site is not None:
        lines += [f"  {built} was built at (most recent call last):", site.format("    ")]
    else:
        lines.append(f"  {_HOW_TO_RECORD}")
    return NonFiniteError("\n".join(lines), finding, site)


class CheckFailed(Exception):
    """What a compiled program raises when its NaN check ``check`` (step index, value) failed;
    the Executable makes the report (``compiled_report``)."""

    def __init__(self, check: tuple[int, Var], target: str):
        super().__init__(check, target)
        self.check, self.target = check, target


def compiled_report(schedule, failed: CheckFailed, reference, args: list, sizes: dict) -> NonFiniteError:
    """The error for a compiled program whose check failed: the call runs again on
    ``reference`` (the reference interpreter with ``debug_nans``, which keeps every value) to
    find the equation; where it does not reproduce the NaN (rounding, fastmath), or cannot run
    alone (collectives wait for the other ranks), the report names the step."""
    (index, bad), target = failed.check, failed.target
    if not schedule.has_collectives:
        args = [np.asarray(a, v.dtype) for a, v in zip(args, schedule.inputs)]    # (0-d: numbers)
        try:
            reference(args, dict(sizes))
        except NonFiniteError as error:
            note = "located by running the call again on the reference interpreter"
            if error.finding.index != index:
                note += f"; the compiled program first saw it in {bad}, written by step {index + 1}"
            return report(schedule, error.finding, target, note)
        except Exception:              # the reference fails otherwise: the step is all we know
            pass
        note = "the reference interpreter computes finite values here: rounding or fastmath differ"
    else:
        note = "the call holds collectives: it cannot run again on one rank to find the equation"
    return report(schedule, Finding(index, bad), target, note)


# -- profiles ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ProfileRow:
    step: str           # "kernel 3", "call matmul", or, on numpy, "eqn 12"
    what: str           # what the step computes: the ops it fused, or its equation
    seconds: float      # total over all calls
    calls: int          # how often it ran


@dataclass(frozen=True)
class Profile:
    """Per-step timings of ``calls`` calls on ``target``; ``seconds``: their wall time in all.
    Its printout is a table sorted by time (``print(f.profile(x))``, or its repr in a REPL)."""

    target: str
    rows: tuple
    calls: int
    seconds: float
    note: str = ""      # how the steps were timed, if it matters for reading them

    def sorted(self) -> list[ProfileRow]:
        return sorted(self.rows, key=lambda r: -r.seconds)

    def __str__(self) -> str:
        per_call = self.seconds / self.calls
        note = f" ({self.note})" if self.note else ""
        out = [f"profile of {self.calls} calls on target {self.target!r}: {per_call * 1e3:.4f} ms per call{note}",
               f"{'ms/call':>10} {'% call':>7} {'calls':>6}  {'step':<14} what"]
        timed = 0.0
        for row in self.sorted():
            timed += row.seconds
            share = 100 * row.seconds / self.seconds if self.seconds else 0.0
            ms = row.seconds / self.calls * 1e3
            out.append(f"{ms:10.4f} {share:6.1f}% {row.calls:6d}  {row.step:<14} {row.what}")
        rest = self.seconds - timed
        if rest > 0:
            share = 100 * rest / self.seconds
            out.append(f"{rest / self.calls * 1e3:10.4f} {share:6.1f}% {self.calls:6d}  {'(the rest)':<14} "
                       "outside the steps: dispatch, timers, transfers")
        return "\n".join(out)

    __repr__ = __str__


def step_profile(steps, seconds, calls: int, wall: float, target: str, note: str = "") -> Profile:
    """A profile of ``steps`` from their total ``seconds`` each (aligned with ``steps``)."""
    rows = tuple(ProfileRow(name, _describe(step), float(t), calls)
                 for name, step, t in zip(step_names(steps), steps, seconds))
    return Profile(target, rows, calls, wall, note)


def _describe(step) -> str:
    if isinstance(step, Kernel):
        outs = ", ".join(f"{v}:{v.type_str()}" for v in step.writes())
        return f"{_ops(step)} -> {outs}"
    if isinstance(step, ControlFlow):
        return step.describe()
    assert isinstance(step, Call)
    return str(step.eqn)
