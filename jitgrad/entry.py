"""A generated Python entry for calls that need no checking beyond types.

When every input has a fixed shape, a call whose arguments already have the
exact type, dtype and shape can skip the general machinery: this module writes
a small ``__call__`` for the compiled graph that tests exactly that and goes
straight to the program, handing anything else to the full checks.

Python looks ``__call__`` up on the class, so the entry is the method of a
subclass of ``Executable`` (``entry_class``), and the compiled function becomes
an instance of it (``Executable._use``): one Python frame per call instead of
two, about 0.2 us of a tiny graph's 1.2 us call. The method reads the program and its
state from the instance, so functions with the same entry source share one
class, and dropping the function frees its program at once. The source is kept
beside the kernels' (``CpuProgram.entry_source``).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np


_SCALAR_TYPES = {np.dtype(np.float64): "float", np.dtype(np.int64): "int", np.dtype(np.bool_): "bool"}


@dataclass(frozen=True, slots=True)
class EntryState:
    """What an entry's call reads from its compiled function (``Executable._entry_state``).
    Slots, like that attribute: CPython reads a slot in a few instructions, where a named
    tuple's field, or an attribute of an instance whose class changed, takes a lookup each time
    (about 300 of the 8,600 instructions W1's call took)."""
    program: object        # the compiled code, called with the arguments, params, consts, workspace
    params: list           # the param states, read as ``.array``
    consts: list
    workspace: list
    lock: object           # held while the workspace is in use
    updated: list          # the param states the call updates, in result order


class Entry(NamedTuple):
    """A program's entry: its ``__call__``'s source and the state that call reads."""
    source: str
    state: EntryState


def python_scalars(fixed) -> bool:
    """Whether every argument reaches the entry as a Python number it tests by type (float,
    int or bool): the compiled code for exactly those types can then be called without the
    dispatcher typing each argument again."""
    return all(not shape and dtype in _SCALAR_TYPES for dtype, shape in fixed)


def _test(name: str, dtype: np.dtype, shape: tuple) -> str:
    """The condition under which argument ``name`` can go to the program as it is.  The program
    takes a 0-d input as a number, so a 0-d array always takes the checked path."""
    if not shape:
        python_type = _SCALAR_TYPES.get(dtype)
        if python_type == "int":      # a Python int may not fit: the checked path says so
            return f"(type({name}) is int and {-2**63} <= {name} < {2**63})"
        return f"type({name}) is {python_type}" if python_type else "False"
    return (f"(type({name}) is ndarray and {name}.dtype == {dtype.name!r} "
            f"and {name}.shape == {shape!r} and {name}.flags.c_contiguous)")


def write_entry(fixed, n_params: int, n_consts: int, n_slots: int,
                scalar_outputs, n_results: int, n_out: int, single: bool) -> str:
    """Source of ``__call__(self, a0, a1, ...)``: a call with argument checks reduced to type
    tests, returning what the compiled function's call returns (its one output, or the tuple of
    its ``n_out`` outputs) after giving the params their updated values (the results past
    ``n_out``, in ``updated`` order).

    Any other call (an argument not exactly as compiled, too few or too many, keywords) and a
    call while another thread holds the workspace go to ``self._checked_call``, the full checks.
    The parameters are positional-only, so keywords of any input's name reach ``named``.
    """
    names = [f"a{k}" for k in range(len(fixed))]     # input names may be any identifier
    tests = " and ".join(_test(n, dt, sh) for n, (dt, sh) in zip(names, fixed)) or "True"
    given = "".join(f"{n}, " for n in names)
    parameters = "".join(f"{n}=ABSENT, " for n in names)
    fallback = f"return self._checked_call({given}*more, **named)"
    args = list(names) + [f"params[{k}].array" for k in range(n_params)]
    args += [f"consts[{k}]" for k in range(n_consts)] + [f"workspace[{k}]" for k in range(n_slots)]
    boxed = [f"r[{i}]" if dt is None else f"asarray(r[{i}])" if dt == np.float64
             else f"asarray(r[{i}], {dt.name!r})"
             for i, dt in ((i, scalar_outputs.get(i)) for i in range(n_results))]
    read = [field for field, used in [("params", n_params), ("consts", n_consts), ("workspace", n_slots),
                                      ("updated", n_results > n_out)] if used]
    call = ["    state = self._entry_state", *(f"    {field} = state.{field}" for field in read),
            f"    r = state.program({', '.join(args)})"]
    if n_slots:      # the workspace is shared between calls: one thread at a time
        call[-1:] = ["    if not state.lock.acquire(False):", f"        {fallback}", "    try:",
                     "    " + call[-1], "    finally:", "        state.lock.release()"]
    updates = [f"    updated[{k}].assign({value})" for k, value in enumerate(boxed[n_out:])]
    outputs = boxed[0] if single else f"({''.join(b + ', ' for b in boxed[:n_out])})"
    return "\n".join([f"def __call__(self, {parameters}/, *more, **named):",
                      f"    if more or named or not ({tests}):", f"        {fallback}",
                      *call, *updates, f"    return {outputs}"]) + "\n"


class _Absent:
    """The default of an entry's parameter that the call did not pass."""

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT = _Absent()


@functools.lru_cache(maxsize=256)
def entry_class(base: type, source: str) -> type:
    """The subclass of ``base`` whose ``__call__`` is the entry ``source`` (one per source)."""
    scope = {"ndarray": np.ndarray, "asarray": np.asarray, "ABSENT": ABSENT}
    exec(compile(source, "<jitgrad entry>", "exec"), scope)
    return type(base.__name__, (base,), {"__call__": scope["__call__"], "__module__": base.__module__,
                                         "__doc__": base.__doc__, "__slots__": ()})
