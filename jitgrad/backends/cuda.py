"""The CUDA target: the schedule's kernels on an NVIDIA GPU through numba.cuda.

It emits the very steps the CPU target emits (``jitgrad.lower``: fused kernels,
calls, views and collectives, in one order, with one memory plan), dispatching on
the step's class as ``numba_cpu`` does; every kernel becomes a ``@cuda.jit``
function (``cuda_kernels``).  Library operations
(matmul, shape changes, the factorizations) are kernels of their own
(``cuda_library``, ``cuda_linalg``): nothing runs on the host.  A host driver
launches the steps in schedule order, with buffers from the memory plan in a
device workspace kept across calls.

Params live on the device between calls (``ParamState.device``); only the
arguments and the outputs cross the bus, and ``p.value`` copies a param back on
demand.  Kernels cannot raise on a GPU: an index out of bounds or a singular
matrix sets an error code (``cuda_runtime``) that the driver checks before returning, so
an error is raised before any param changes.

On a machine without a GPU, ``NUMBA_ENABLE_CUDASIM=1`` (set before numba is
imported) runs everything in Numba's CUDA simulator.
"""
from __future__ import annotations

import math
import time

import numpy as np

from .. import debug
from ..fusion import INDEX_MAPS, Call, Collective, ControlFlow, Kernel, View
from ..lower import Lowered, lower_body
from ..ops import linalg, shape as sh, sort as sort_ops, window
from ..ops import random as random_ops
from ..ops.loop import cond_operands, while_operands
from ..primitive import Dim, resolve_dim
from ..schedule import Var
from .cache import load_module
from .cuda_kernels import PRELUDE, CudaKernelWriter, Strategy, strategy
from .cuda_debug import StepTimer, check_finite, flag_step, simulated_math_error
from .cuda_runtime import cuda_module, error_flag, fused_kernel_launch, fused_kernel_threads, raise_error
from .kernel_body import literal
from .linalg_calls import LINALG
from .program import Program


def _device_shape(dims, sizes) -> tuple:
    """A buffer's shape on the device: 0-d values are arrays of one element."""
    return tuple(resolve_dim(d, sizes) for d in dims) or (1,)


class CudaProgram(Program):
    """A schedule compiled for CUDA: call it like the numpy reference program.  The params'
    values stay on the device between calls (their states' ``device`` arrays)."""

    takes_scalars = True

    def __init__(self, schedule: Lowered, *, parallel: bool = False, fastmath: bool = False,
                 debug_nans: bool = False):
        self.cuda = cuda_module()
        steps = schedule.steps
        self._s = schedule
        self._plan = schedule.plan
        self._workspace = (None, None)
        self.literals = {v: literal(value, v.dtype) for v, value in schedule.consts if value.ndim == 0}
        self.scalar_inputs = {v for v in schedule.inputs if not v.dims}
        self._consts = {v: self.cuda.to_device(np.ascontiguousarray(value).reshape(value.shape or (1,)))
                        for v, value in schedule.consts}
        self._transposed = {}           # a transpose only matmuls read -> the matrix it transposes
        self._values_only = schedule.values_only
        self.kernel_sources: list[str] = []
        # debug_nans reads its flag after the call: no param may be overwritten before then
        self._in_place = {} if debug_nans else _in_place_updates(schedule, steps)
        self._first_in_place = next((i for i, step in enumerate(steps) if isinstance(step, Kernel)
                                     and set(step.stores) & set(self._in_place)), None)
        # Each step is a function of (program, env, sizes): it gets the program when it runs
        # rather than closing over it, so the program holds no reference cycle, and a dropped
        # function frees its device arrays at once, without waiting for a collection.
        self._steps = self._plain_steps = [self._step(step) for step in steps]
        self.source = "\n\n".join(self.kernel_sources)
        self._error = error_flag()
        self._nan = None                # debug_nans: the device flag of the first failed check
        if debug_nans:
            self._nan, self._checks = error_flag(), debug.checks(schedule)
            self._steps = [self._checking(k, run) for k, run in enumerate(self._plain_steps)]

    def _checking(self, k: int, run):
        """debug_nans: step ``k`` followed by a check of each float value it writes."""
        checks = [(code + 1, v) for code, (j, v) in enumerate(self._checks) if j == k]
        if not checks:
            return run

        def checked(program, env, sizes):
            try:
                run(program, env, sizes)
            except (ValueError, ArithmeticError) as error:
                if not simulated_math_error(error):
                    raise
                flag_step(program._nan, checks[0][0])      # what the GPU's NaN/inf would have set
                raise _StepFailed from error
            for code, v in checks:
                check_finite(env[v], program._nan, code)
        return checked

    # -- building ------------------------------------------------------------

    def _step(self, step):
        match step:
            case Kernel():
                return self.emit_kernel(step)
            case Collective():
                return self.emit_collective(step)
            case View():
                return self.emit_view(step)
            case ControlFlow():
                return self.emit_control(step)
            case Call():
                return self.emit_call(step)

    def emit_kernel(self, k: Kernel):
        writer = CudaKernelWriter(k, self.literals, self.scalar_inputs, fused_kernel_threads())
        source = PRELUDE + "\n\n" + writer.source()
        self.kernel_sources.append(source)
        module = load_module(source)
        reads, writes, reductions = writer.reads, writer.writes, [e.out for e in k.reductions]
        kind = writer.strategy
        partials_for: dict = {}             # blocks -> the block strategy's partials, kept

        def run(program, env, sizes):
            extents = [resolve_dim(d, sizes) for d in k.dims]
            for v in writes:
                env[v] = env[program._in_place[v]] if v in program._in_place else program._alloc(v, sizes)
            args = [env[v] for v in reads + writes]
            if kind is Strategy.ROWS:
                axes = k.reductions[0].attrs["axes"]
                work = math.prod(n for a, n in enumerate(extents) if a not in axes)
            else:
                work = math.prod(extents)
            blocks, threads = fused_kernel_launch(work)
            if kind is Strategy.BLOCK:
                if blocks not in partials_for:
                    partials_for[blocks] = [program.cuda.device_array(blocks, v.dtype) for v in reductions]
                partials = partials_for[blocks]
                args += partials
            if kind is Strategy.ATOMIC:
                flats = [env[v].reshape(env[v].size) for v in reductions]
                module.prepare[fused_kernel_launch(max(f.size for f in flats))](*flats)
            if writer.checks_indices:
                args.append(program._error)
            module.kernel[blocks, threads](*args, *extents)
            if kind is Strategy.BLOCK:
                module.finish[1, 1](*partials, *(env[v] for v in reductions), blocks)
        return run

    def emit_view(self, step: View):
        """A reshape; or a transpose that matmuls read transposed in place, unless the caller
        gets it too (then it is materialised like any other call)."""
        e = step.eqn
        if e.op is sh.reshape_p:
            def run(program, env, sizes):
                env[e.out] = program._array(env, e.ins[0]).reshape(_device_shape(e.out.dims, sizes))
            return run
        if e.out in self._s.results:
            return self.emit_call(step)
        self._transposed[e.out] = e.ins[0]
        return lambda program, env, sizes: None

    def emit_call(self, step: Call):
        e, op = step.eqn, step.eqn.op
        if op is linalg.matmul_p:
            return self._matmul(e)
        if op in LINALG:
            return self._linalg(e)

        launch = _LIBRARY.get(op)
        if launch is None:
            raise NotImplementedError(f"target 'cuda' cannot run the primitive {op.name!r}")

        def run(program, env, sizes):
            from . import cuda_library
            out = env[e.out] = program._alloc(e.out, sizes)
            ins = [program._array(env, v) for v in e.ins]
            attrs = {k: _resolved(v, sizes) for k, v in e.attrs.items()}
            launch(cuda_library, ins, out, _one_element_attrs(op, attrs) if not e.out.dims else attrs)
        return run

    def emit_control(self, step: ControlFlow):
        """A loop or a branch, driven from the host: each body is a program of its own (its
        kernels, its workspace) that runs on device arrays; carries pass from step to step
        on the device."""
        by_index = {e.attrs["index"]: e.out for e in step.siblings}
        bodies = dict(step.bodies)
        if step.eqn.op.name == "scan":      # results that stack inner nodes: the body returns them too
            body = bodies["body"]
            bodies["body"] = body.reading([body.result_node(k) for k in sorted(by_index)
                                           if k >= body.first_node_result])
        bodies = {name: CudaProgram(lower_body(body)) for name, body in bodies.items()}
        for body in bodies.values():
            self.kernel_sources += body.kernel_sources
        run_control = {"scan": _run_scan, "while": _run_while, "cond": _run_cond}[step.eqn.op.name]

        def run(program, env, sizes):
            out = {i: program._alloc(v, sizes) for i, v in by_index.items()}
            env.update((by_index[i], array) for i, array in out.items())
            results = run_control(program.cuda, step.eqn, bodies, [env[v] for v in step.eqn.ins], out)
            for k, value in results.items():
                if k in out:
                    _store(program.cuda, out[k], value, by_index[k])
        return run

    def emit_collective(self, step: Collective):
        """psum, staged through the host: MPI gets host buffers (a CUDA-aware MPI could take
        device pointers instead)."""
        from .._mpi_world import world
        e = step.eqn

        def run(program, env, sizes):
            summed = world().allreduce(program._array(env, e.ins[0]).copy_to_host())
            env[e.out] = program._alloc(e.out, sizes)
            env[e.out].copy_to_device(summed)
        return run

    def _matmul(self, e):
        from . import cuda_library as lib
        a, b = e.ins

        def run(program, env, sizes):
            out = env[e.out] = program._alloc(e.out, sizes)
            shape = tuple(out.shape)     # (the simulator's shapes take no negative indices)
            batch = math.prod(shape[:-2])
            k = resolve_dim(a.dims[-1], sizes)
            sources = []
            for v in (a, b):
                src = program._transposed.get(v)
                sources.append((program._array(env, src), True) if src is not None else (program._array(env, v), False))
            (xa, ta), (xb, tb) = sources
            m, n = shape[-2], shape[-1]
            xa = xa.reshape((batch,) + ((k, m) if ta else (m, k)))
            xb = xb.reshape((batch,) + ((n, k) if tb else (k, n)))
            lib.matmul(xa, xb, out.reshape((batch, m, n)), trans_a=ta, trans_b=tb)
        return run

    def _linalg(self, e):
        from . import cuda_linalg as la
        call = LINALG[e.op]
        routine = getattr(la, call.routine_for(e.out, self._values_only))

        def run(program, env, sizes):
            out = env[e.out] = program._alloc(e.out, sizes)
            stacked = [_stacked(program._array(env, e.ins[i]), e.ins[i].dims, 2, sizes) for i in call.operands]
            flags = [bool(e.attrs[name]) for name in call.flags]
            routine(*stacked, _stacked(out, e.out.dims, call.out_core, sizes), *flags)
        return run

    def launches_per_call(self) -> int:
        """Kernel launches one call makes: a fused kernel is one (two with a second pass or
        an identity fill); views are none; a library operation is one (a few for scatter_add
        and concatenate), counted as one here."""
        count = 0
        for step in self._s.steps:
            if isinstance(step, Kernel):
                count += 2 if strategy(step) in (Strategy.BLOCK, Strategy.ATOMIC) else 1
            elif step.eqn.op is not sh.reshape_p and step.eqn.out not in self._transposed:
                count += 1
        return count

    # -- buffers ---------------------------------------------------------------

    def _array(self, env, v: Var):
        """``v`` as a device array (0-d inputs arrive as numbers).  The number stays in ``env``:
        the kernels that read ``v`` take it as a scalar argument."""
        value = env[v]
        return self.cuda.to_device(np.array([value], v.dtype)) if _number(value) else value

    def _alloc(self, v: Var, sizes):
        shape = _device_shape(v.dims, sizes)
        slot = self._plan.slot_of.get(v)
        if slot is None:
            return self.cuda.device_array(shape, v.dtype)
        return self._workspace[1][slot][:math.prod(shape)].reshape(shape)

    def _prepare_workspace(self, sizes):
        needed = tuple(self._plan.slot_sizes(sizes))
        if self._workspace[0] != needed:
            self._workspace = (needed, [self.cuda.device_array(max(n, 1), dtype)
                                        for n, (dtype, _) in zip(needed, self._plan.slots)])

    # -- running ---------------------------------------------------------------

    def entry(self, fixed: list, single: bool) -> None:
        return None

    def __call__(self, args: list, sizes: dict) -> list:
        """Run on checked arguments; returns the outputs (host arrays), then the new param
        values (device arrays, which become the params' states)."""
        s = self._s
        env = self._env(args)
        try:
            self.run_on_device(env, sizes)
        except _StepFailed:                     # (the simulator's math raised: the flag is set)
            pass
        if self._nan is not None:
            self._raise_nan()
        outputs = [self._to_host(env, v, sizes) for v in s.outputs]
        updates = [self._owned(env, v) for _, v in s.updates]
        return outputs + updates

    def _raise_nan(self) -> None:
        """debug_nans: read the flag back (once per call); raise if a check failed."""
        code = int(self._nan.copy_to_host()[0])
        if code:
            self._nan.copy_to_device(np.zeros(1, np.int32))
            raise debug.CheckFailed(self._checks[code - 1], "cuda")

    def profile(self, args: list, sizes: dict, repeat: int) -> debug.Profile:
        """``repeat`` calls (after one untimed call, which compiles the kernels), each step timed
        with CUDA events. The params the program updates in place are copies: none changes."""
        s, timer = self._s, StepTimer()
        timed = [timer.wrap(k, run) for k, run in enumerate(self._plain_steps)]
        env = self._env(args)
        copies = {}
        for v in set(self._in_place.values()):
            copies[v] = self.cuda.device_array(env[v].shape, env[v].dtype)
            copies[v].copy_to_device(env[v])
        wall = 0.0
        for k in range(repeat + 1):
            env = {**self._env(args), **copies}
            start = time.perf_counter()
            self.run_on_device(env, sizes, timed if k else self._plain_steps)
            for v in s.outputs:
                self._to_host(env, v, sizes)
            wall += (time.perf_counter() - start) if k else 0.0
        return debug.step_profile(s.steps, timer.seconds(len(s.steps)), repeat, wall, "cuda")

    def _env(self, args: list) -> dict:
        """The inputs' and params' device arrays, by Var (0-d inputs as numbers)."""
        s = self._s
        env: dict = {}
        for v, a in zip(s.inputs, args):
            if v in self.scalar_inputs:
                env[v] = np.asarray(a).item()
            else:
                env[v] = self.cuda.to_device(np.ascontiguousarray(a))
        for (v, _), state in zip(s.params, s.states):
            if state.device is None:
                state.device = self.cuda.to_device(state.array.reshape(state.array.shape or (1,)))
            env[v] = state.device
        return env

    def run_on_device(self, env: dict, sizes: dict, steps=None) -> dict:
        """Run every step (``steps``: step functions, else the program's own) on ``env`` (each
        input and param Var -> its device array); the results stay on the device.  Raises what a
        kernel flagged."""
        self._prepare_workspace(sizes)
        env.update(self._consts)
        for i, run in enumerate(self._steps if steps is None else steps):
            if i == self._first_in_place:
                raise_error(self._error)     # before any param is overwritten
            run(self, env, sizes)
        raise_error(self._error)
        return env

    def _to_host(self, env, v: Var, sizes) -> np.ndarray:
        value = env[v]
        if _number(value):
            return np.array(value, v.dtype)
        return value.copy_to_host().reshape(tuple(resolve_dim(d, sizes) for d in v.dims))

    def _owned(self, env, v: Var):
        """A device array the param can keep: a copy unless the plan made it fresh."""
        value = self._array(env, v)
        if v in self._plan.fresh:
            return value
        copy = self.cuda.device_array(value.shape, value.dtype)
        copy.copy_to_device(value)
        return copy


class _StepFailed(Exception):
    """debug_nans under the simulator: a step's math raised where a GPU computes NaN/inf."""


def _number(value) -> bool:
    return isinstance(value, (int, float, bool, np.generic))


def _as_input(value, v: Var):
    """How a body takes ``v``: a number if 0-d (a program's 0-d inputs are), else the array."""
    if v.dims or _number(value):
        return value
    return value.copy_to_host().reshape(-1)[0]


def _call_body(program: CudaProgram, args: list) -> list:
    """Run a body's program on ``args`` (one per input); its results, owned by the caller."""
    lowered = program._s
    env = dict(zip(lowered.inputs, (_as_input(a, v) for a, v in zip(args, lowered.inputs))))
    program.run_on_device(env, {})
    return [program._owned(env, v) for v in lowered.outputs]


def _store(cuda, target, value, v: Var) -> None:
    """Copy ``value`` (a device array, or a number for a 0-d ``v``) into the device array ``target``."""
    if _number(value):
        value = cuda.to_device(np.array([value], v.dtype))
    target.copy_to_device(value.reshape(target.shape))


def _row(stacked, t: int):
    """Row ``t`` of a stacked device array, as an array (a one-element one for a vector)."""
    return stacked[t:t + 1] if len(stacked.shape) == 1 else stacked[t]


def _run_scan(cuda, eqn, bodies, ins, out) -> dict:
    body = eqn.attrs["body"]
    program, (n_c, n_x, n_y) = bodies["body"], (body.n_carry, body.n_x, body.n_y)
    inner = sorted(k for k in out if k >= body.first_node_result)
    carries, outside = ins[:n_c], ins[n_c + n_x:]
    length = eqn.attrs["length"]
    for t in range(length - 1, -1, -1) if eqn.attrs["reverse"] else range(length):
        for k, c in enumerate(carries):
            if n_c + n_y + k in out:
                _store(cuda, _row(out[n_c + n_y + k], t), c, body.params[k])
        results = _call_body(program, carries + [x[t] for x in ins[n_c:n_c + n_x]] + outside)
        carries = results[:n_c]
        for k in range(n_y):
            if n_c + k in out:
                _store(cuda, _row(out[n_c + k], t), results[n_c + k], body.outputs[n_c + k])
        for j, k in enumerate(inner):
            _store(cuda, _row(out[k], t), results[n_c + n_y + j], body.result_node(k))
    return dict(enumerate(carries))


def _run_while(cuda, eqn, bodies, ins, out) -> dict:
    carries, test_free, step_free = while_operands(ins, eqn.attrs["cond"], eqn.attrs["body"])
    while _as_input(_call_body(bodies["cond"], carries + test_free)[0], eqn.attrs["cond"].outputs[0]):
        carries = _call_body(bodies["body"], carries + step_free)
    return dict(enumerate(carries))


def _run_cond(cuda, eqn, bodies, ins, out) -> dict:
    pred, operands, true_free, false_free = cond_operands(ins, eqn.attrs["true"], eqn.attrs["false"])
    taken = _as_input(pred, eqn.ins[0])
    results = _call_body(bodies["true"], operands + true_free) if taken else \
        _call_body(bodies["false"], operands + false_free)
    return dict(enumerate(results))


def _in_place_updates(schedule: Lowered, steps) -> dict:
    """New param values a kernel can write straight into the param's own device buffer
    (update value -> param Var): the kernel stores the value elementwise, is the last step to
    read the param, reads it only at the loop's own index (no index map) and checks no
    indices (so nothing can fail once it has run); the param is not also an output."""
    param_var = {id(node): v for v, node in schedule.params}
    found: dict = {}
    for node, value in schedule.updates:
        pv = param_var.get(id(node))
        at = next((i for i, step in enumerate(steps) if isinstance(step, Kernel) and value in step.stores), None)
        if pv is None or at is None or value in found or pv in schedule.outputs or value in schedule.outputs:
            continue
        k = steps[at]
        if any(pv in step.reads() for step in steps[at + 1:]):
            continue
        if any(e.op in INDEX_MAPS and pv in e.ins for e in k.body) or any(e.op is sh.gather_p for e in k.body):
            continue
        if value.dims == pv.dims and value.dtype == pv.dtype:
            found[value] = pv
    return found


def _resolved(value, sizes):
    if isinstance(value, tuple):
        return tuple(_resolved(x, sizes) for x in value)
    return resolve_dim(value, sizes) if isinstance(value, Dim) else value


def _one_element_attrs(op, attrs: dict) -> dict:
    """A 0-d value is a one-element array on the device (``_device_shape``): an index or a
    permutation over its no axes becomes one over that single axis."""
    if op is sh.unslice_p:
        return {**attrs, "index": ((None, None, None),)}
    if op is sh.transpose_p:
        return {**attrs, "perm": (0,)}
    return attrs


def _stacked(array, dims, core: int, sizes):
    """``array`` with its batch axes flattened into one: the linalg kernels' layout."""
    shape = tuple(resolve_dim(d, sizes) for d in dims)
    batch = math.prod(shape[:len(shape) - core])
    return array.reshape((batch,) + shape[len(shape) - core:])


_LIBRARY = {  # primitive -> its launch, given cuda_library, the input arrays, the output, the attrs
    sh.transpose_p: lambda lib, ins, out, attrs: lib.transpose(ins[0], out, attrs["perm"]),
    sh.unslice_p: lambda lib, ins, out, attrs: lib.unslice(ins[0], out, attrs["index"]),
    sh.scatter_add_p: lambda lib, ins, out, attrs: lib.scatter_add(ins[0], ins[1], out, attrs["axis"]),
    sh.concatenate_p: lambda lib, ins, out, attrs: lib.concatenate(ins, out, attrs["axis"]),
    sh.full_p: lambda lib, ins, out, attrs: lib.fill(out, attrs["value"]),
    sh.full_like_p: lambda lib, ins, out, attrs: lib.fill(out, attrs["value"]),
    random_ops.philox_p: lambda lib, ins, out, attrs: lib.philox(ins[0], ins[1], out),
    window.unpatches_p: lambda lib, ins, out, attrs: lib.unpatches(ins[0], out, attrs),
    sort_ops.argsort_p: lambda lib, ins, out, attrs: lib.argsort(ins[0], out, attrs["axis"], attrs["descending"]),
    sort_ops.tie_average_p: lambda lib, ins, out, attrs: lib.tie_average(ins[0], ins[1], out, attrs["axis"]),
}
