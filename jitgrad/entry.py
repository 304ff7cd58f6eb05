"""A generated Python entry for calls that need no checking beyond types.

When every input has a fixed shape, a call whose arguments already have the
exact type, dtype and shape can skip the general machinery: this module writes
a small function for the compiled graph that tests exactly that and goes
straight to the program, falling back to the full checks for anything else.
Its source is kept beside the kernels' (``CpuProgram.entry_source``).
"""
from __future__ import annotations

import numpy as np


_SCALAR_TYPES = {np.dtype(np.float64): "float", np.dtype(np.int64): "int", np.dtype(np.bool_): "bool"}


def _test(name: str, dtype: np.dtype, shape: tuple) -> str:
    """The condition under which argument ``name`` can go to the program as it is.  The program
    takes a 0-d input as a number, so a 0-d array always takes the checked path."""
    if not shape:
        python_type = _SCALAR_TYPES.get(dtype)
        return f"type({name}) is {python_type}" if python_type else "False"
    return (f"(type({name}) is ndarray and {name}.dtype == {dtype.name!r} "
            f"and {name}.shape == {shape!r} and {name}.flags.c_contiguous)")


def write_entry(fixed, n_params: int, n_consts: int, n_slots: int,
                scalar_outputs, n_results: int, n_out: int, single: bool) -> str:
    """Source of ``entry(a0, a1, ...)``: a call with argument checks reduced to type tests,
    returning what the compiled function's call returns (its one output, or the tuple of its
    ``n_out`` outputs) after giving the params their updated values (the results past
    ``n_out``, in ``updated`` order).

    It returns None (and the caller runs the full checks) when an argument is not
    exactly as compiled, or when another thread holds the workspace.
    """
    names = [f"a{k}" for k in range(len(fixed))]     # input names may be any identifier
    tests = " and ".join(_test(n, dt, sh) for n, (dt, sh) in zip(names, fixed)) or "True"
    args = list(names) + [f"params[{k}].array" for k in range(n_params)]
    args += [f"consts[{k}]" for k in range(n_consts)] + [f"workspace[{k}]" for k in range(n_slots)]
    boxed = [f"r[{i}]" if dt is None else f"asarray(r[{i}])" if dt == np.float64
             else f"asarray(r[{i}], {dt.name!r})"
             for i, dt in ((i, scalar_outputs.get(i)) for i in range(n_results))]
    call = [f"    r = program({', '.join(args)})"]
    if n_slots:      # the workspace is shared between calls: one thread at a time
        call = ["    if not lock.acquire(False):", "        return None", "    try:",
                "    " + call[0], "    finally:", "        lock.release()"]
    updates = [f"    updated[{k}].assign({value})" for k, value in enumerate(boxed[n_out:])]
    outputs = boxed[0] if single else f"({''.join(b + ', ' for b in boxed[:n_out])})"
    return "\n".join([f"def entry({', '.join(names)}):", f"    if not ({tests}):", "        return None",
                      *call, *updates, f"    return {outputs}"]) + "\n"


def make_entry(source: str, program, params, consts, workspace, lock, updated):
    """Compile the entry's source into a function bound to the program and its state."""
    scope = {"ndarray": np.ndarray, "asarray": np.asarray, "program": program, "lock": lock,
             "params": params, "consts": consts, "workspace": workspace, "updated": updated}
    exec(compile(source, "<jitgrad entry>", "exec"), scope)
    return scope["entry"]
