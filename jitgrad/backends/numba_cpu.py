"""The CPU target: fused kernels as generated Python source, compiled by Numba.

Every kernel becomes a small function of explicit loops, and the whole
schedule one ``program`` that allocates buffers, calls the kernels and the
library operations in order, and returns the outputs.  A call is therefore
one Numba dispatch.  Kernels are modules of their own, named by a hash of
their source, so identical kernels of different graphs are compiled once and
shared through the on-disk cache.
"""
from __future__ import annotations

import re
import threading

import numpy as np

from ..fusion import INDEX_MAPS, Call, FusedSchedule, Kernel, defer_collectives, fuse, is_collective, is_view
from ..memory import MemoryPlan, plan_memory
from ..ops import linalg, reduce as rd, shape as sh
from ..primitive import Dim, resolve_dim
from ..schedule import Schedule, Var
from .cache import call, load_module, module_name

PARALLEL_MIN_SIZE = 32768    # elements below which threads cost more than they save

_PRELUDE = """\
import math
import numpy as np
from numba import prange
from jitgrad.backends.cache import jit
from jitgrad.backends.scalars import (
    matmul_floats, matmul_ints, maximum, minimum, safe_div, safe_mul, sigmoid, sign,
    slice_first, wrap_index)
"""


def _np_type(dtype: np.dtype) -> str:
    return "np.bool_" if dtype == np.bool_ else f"np.{dtype.name}"


def _literal(value, dtype: np.dtype) -> str:
    """A Python literal of ``value`` as the given dtype (inf and NaN included)."""
    value = np.asarray(value, dtype).item()
    if isinstance(value, float) and not np.isfinite(value):
        return "np.nan" if np.isnan(value) else ("np.inf" if value > 0 else "-np.inf")
    return repr(value)


_IDENTITY = {rd.reduce_sum_p: 0, rd.reduce_prod_p: 1}
_ACCUMULATE = {rd.reduce_sum_p: "{0} += {1}", rd.reduce_prod_p: "{0} *= {1}"}
_COMBINE = {rd.reduce_sum_p: "{0} + {1}", rd.reduce_prod_p: "{0} * {1}",
            rd.reduce_max_p: "maximum({0}, {1})", rd.reduce_min_p: "minimum({0}, {1})"}


def _identity(op, dtype: np.dtype) -> str:
    if op in _IDENTITY:
        return _literal(_IDENTITY[op], dtype)
    lowest = op is rd.reduce_max_p
    if dtype.kind == "f":
        return "-np.inf" if lowest else "np.inf"
    if dtype.kind == "b":
        return repr(not lowest)
    info = np.iinfo(dtype)
    return repr(int(info.min if lowest else info.max))


# -- kernels -----------------------------------------------------------------

class _KernelWriter:
    """Writes one kernel function with canonical names, so equal kernels have equal source."""

    def __init__(self, kernel: Kernel, parallel: bool, fastmath: bool, literals: dict,
                 scalar_args: set = frozenset()):
        self.k, self.parallel, self.fastmath = kernel, parallel, fastmath
        self.literals = literals                # scalar constants, written into the source
        self.scalar_args = scalar_args          # 0-d inputs, passed as plain numbers
        self.reads = [v for v in kernel.reads() if v not in literals]
        self.writes = list(kernel.stores) + [e.out for e in kernel.reductions]
        self.arg = {v: f"r{j}" for j, v in enumerate(self.reads)}
        self.arg.update({v: f"w{j}" for j, v in enumerate(self.writes)})
        self.rank = len(kernel.dims)
        self.index = [f"i{a}" for a in range(self.rank)]
        self.local: dict[Var, str] = {}
        self.loaded: dict[str, str] = {}
        self.lines: list[str] = []

    def at(self, idx) -> str:
        return "[" + (", ".join(idx) if idx else "()") + "]"

    def load(self, v: Var, idx) -> str:
        """A value of a buffer at an index, loaded once per loop iteration."""
        if v in self.literals:
            return self.literals[v]
        if v in self.scalar_args:
            return self.arg[v]
        expr = f"{self.arg[v]}{self.at(idx)}" if idx else f"{self.arg[v]}.item()"   # a[()] is 0-d
        if expr not in self.loaded:
            self.loaded[expr] = f"x{len(self.loaded)}"
            self.lines.append(f"{self.loaded[expr]} = {expr}")
        return self.loaded[expr]

    def operand(self, v: Var) -> str:
        return self.local[v] if v in self.local else self.load(v, self.index)

    def body_line(self, e) -> None:
        name = f"t{len(self.local)}"
        if e.op in INDEX_MAPS:
            value = self.index_map(e)
        else:
            dtype = _np_type(e.attrs["dtype"]) if "dtype" in e.attrs else ""
            value = e.op.scalar.format(*(self.operand(v) for v in e.ins), dtype=dtype)
        self.lines.append(f"{name} = {_np_type(e.out.dtype)}({value})")
        self.local[e.out] = name

    def index_map(self, e) -> str:
        src = e.ins[0]
        if e.op is sh.broadcast_to_p:
            lead = self.rank - len(src.dims)
            idx = ["0" if d == 1 and e.out.dims[lead + a] != 1 else self.index[lead + a]
                   for a, d in enumerate(src.dims)]
        elif e.op is sh.transpose_p:
            perm = e.attrs["perm"]
            idx = [self.index[perm.index(a)] for a in range(len(perm))]
        elif e.op is sh.slice_p:
            idx = [self.sliced(a, bounds, src) for a, bounds in enumerate(e.attrs["index"])]
        else:   # gather
            axis, positions = e.attrs["axis"], e.ins[1]
            inner = self.load(positions, self.index[axis:axis + len(positions.dims)])
            where = f"wrap_index({inner}, {self.arg[src]}.shape[{axis}])"
            idx = self.index[:axis] + [where] + self.index[axis + len(positions.dims):]
        return self.load(src, idx)

    def sliced(self, axis: int, bounds, src: Var) -> str:
        start, stop, step = bounds
        step = 1 if step is None else step
        if isinstance(start, Dim) or isinstance(stop, Dim) or isinstance(src.dims[axis], Dim):
            if isinstance(start, Dim):
                raise NotImplementedError("slice starts given by call-time sizes")
            has = start is not None
            first = f"slice_first({self.arg[src]}.shape[{axis}], {start if has else 0}, {has}, {step})"
        else:
            first = str(range(src.dims[axis])[slice(start, stop, step)].start
                        if len(range(src.dims[axis])[slice(start, stop, step)]) else 0)
        i = self.index[axis]
        return i if (first == "0" and step == 1) else f"{first} + {i} * {step}"

    def source(self, name: str) -> str:
        for e in self.k.body:
            self.body_line(e)
        for v in self.k.stores:
            self.lines.append(f"{self.arg[v]}{self.at(self.index)} = {self.local[v]}")
        before, after = [], []
        for j, e in enumerate(self.k.reductions):
            self.reduce_lines(j, e, before, after)
        extents = [f"n{a}" for a in range(self.rank)]
        params = [self.arg[v] for v in self.reads + self.writes] + extents
        threads = ", parallel=True" if self.parallel else ""
        out = [f"@jit(error_model='numpy', fastmath={self.fastmath}{threads})",
               f"def {name}({', '.join(params)}):",
               f'    """fused[{", ".join(e.op.name for e in self.k.body + self.k.reductions)}]"""']
        out += [f"    {line}" for line in before]
        indent = "    "
        for a in range(self.rank):
            loop = "prange" if self.parallel and a == 0 else "range"
            out.append(f"{indent}for i{a} in {loop}(n{a}):")
            indent += "    "
        out += [indent + line for line in self.lines] or [indent + "pass"]
        out += [f"    {line}" for line in after]
        return "\n".join(out) + "\n"

    @staticmethod
    def parallelizable(k: Kernel) -> bool:
        """Threads may split the outer loop if no two of them update the same memory."""
        if not k.dims:
            return False
        for e in k.reductions:
            full = len(e.attrs["axes"]) == len(k.dims)
            if (full and e.op not in _ACCUMULATE) or (not full and 0 in e.attrs["axes"]):
                return False
        return True

    def reduce_lines(self, j, e, before, after) -> None:
        axes, keep = e.attrs["axes"], e.attrs["keepdims"]
        value = self.operand(e.ins[0])
        target = self.arg[e.out]
        combine = _COMBINE[e.op]
        if len(axes) == self.rank:          # a full reduction: a scalar accumulator
            acc = f"acc{j}"
            before.append(f"{acc} = {_identity(e.op, e.out.dtype)}")
            if e.op in _ACCUMULATE:         # the form prange recognises as a reduction
                self.lines.append(_ACCUMULATE[e.op].format(acc, value))
            else:
                self.lines.append(f"{acc} = {combine.format(acc, value)}")
            idx = ["0"] * len(e.out.dims)
            after.append(f"{target}{self.at(idx)} = {acc}")
            return
        before.append(f"{target}.fill({_identity(e.op, e.out.dtype)})")
        idx = [("0" if a in axes else i) for a, i in enumerate(self.index) if keep or a not in axes]
        slot = f"{target}{self.at(idx)}"
        self.lines.append(f"{slot} = {combine.format(slot, value)}")


# -- the program -------------------------------------------------------------

class _ProgramWriter:
    def __init__(self, schedule: Schedule, steps, plan: MemoryPlan, dims: list[Dim],
                 parallel: bool, fastmath: bool):
        self.s, self.steps, self.plan = schedule, steps, plan
        self.parallel, self.fastmath = parallel, fastmath
        self.dim_names = {d: f"d{k}" for k, d in enumerate(dims)}
        self.lines: list[str] = []
        self.kernel_sources: list[str] = []
        self.imports: list[str] = []
        self.fresh: set[Var] = set()
        library_inputs = {v for step in steps if isinstance(step, Call) for v in step.eqn.ins}
        escaping = set(schedule.outputs) | {v for _, v in schedule.updates}
        self.literals = {v: _literal(value, v.dtype) for v, value in schedule.consts if value.ndim == 0}
        self.inlined = {v for v in self.literals if v not in library_inputs and v not in escaping}
        self.scalar_inputs = {v for v in schedule.inputs if not v.dims}
        self.values_only = _values_only(schedule)
        self.boxed_inputs = self.scalar_inputs & (library_inputs | escaping)   # need an array too

    def name(self, v: Var) -> str:
        return f"v_{v.name}"

    def comment(self, text: str) -> str:
        """A comment line, with call-time sizes under their program names (``d0``): a Dim's
        own label counts Dims made in the process, and the source must not depend on it, or
        an identical graph built again would miss the cache."""
        for d, name in self.dim_names.items():
            text = re.sub(rf"\b{re.escape(d.label)}\b", name, text)
        return "# " + text

    def use(self, statement: str) -> None:
        """Import a library module into the program (once)."""
        if statement not in self.imports:
            self.imports.append(statement)

    def value(self, v: Var) -> str:
        """How a kernel receives ``v``: 0-d inputs as the number itself."""
        return f"s_{v.name}" if v in self.scalar_inputs else self.name(v)

    def size(self, d) -> str:
        return self.dim_names[d] if isinstance(d, Dim) else str(d)

    def shape(self, dims) -> str:
        return "(" + "".join(f"{self.size(d)}, " for d in dims) + ")"

    def alloc(self, v: Var) -> str:
        """Code that gives ``v`` its buffer: fresh if it leaves the call, else workspace."""
        if v in self.plan.slot_of:
            numel = " * ".join(self.size(d) for d in v.dims) or "1"
            return f"{self.name(v)} = ws{self.plan.slot_of[v]}[:{numel}].reshape({self.shape(v.dims)})"
        self.fresh.add(v)
        return f"{self.name(v)} = np.empty({self.shape(v.dims)}, {_np_type(v.dtype)})"

    def import_kernel(self, writer: _KernelWriter) -> str:
        source = _PRELUDE + "\n\n" + writer.source("kernel")
        self.kernel_sources.append(source)
        alias = f"kernel_{len(self.kernel_sources) - 1}"
        self.imports.append(f"from {module_name(source)} import kernel as {alias}")
        return alias

    def kernel(self, k: Kernel) -> None:
        serial = _KernelWriter(k, False, self.fastmath, self.literals, self.scalar_inputs)
        alias = self.import_kernel(serial)
        self.lines.append(self.comment(k.describe()))
        self.lines.extend(self.alloc(v) for v in serial.writes)
        args = [self.value(v) for v in serial.reads + serial.writes] + [self.size(d) for d in k.dims]
        call_serial = f"{alias}({', '.join(args)})"
        if not (self.parallel and _KernelWriter.parallelizable(k)):
            self.lines.append(call_serial)
            return
        threaded = self.import_kernel(_KernelWriter(k, True, self.fastmath, self.literals, self.scalar_inputs))
        total = " * ".join(self.size(d) for d in k.dims)
        self.lines += [f"if {total} >= {PARALLEL_MIN_SIZE}:", f"    {threaded}({', '.join(args)})",
                       "else:", f"    {call_serial}"]

    def library(self, step: Call) -> None:
        e = step.eqn
        emit = _LIBRARY.get(e.op)
        if emit is None:
            raise NotImplementedError(f"target 'cpu' cannot emit the primitive {e.op.name!r}")
        self.lines.append(self.comment(str(e)))
        if not is_view(step):
            self.lines.append(self.alloc(e.out))
        self.lines.extend(emit(self, e))

    def collectives(self, group: list) -> None:
        """Consecutive collectives: one all-reduce of their packed buffers, run by Python
        (mpi4py) between the kernels, on the program's own arrays."""
        self.use("from numba import objmode")
        self.use("from jitgrad.distributed import allreduce_pairs")
        pairs = []
        for step in group:
            e = step.eqn
            self.lines.append(self.comment(str(e)))
            self.lines.append(self.alloc(e.out))
            pairs += [self.name(e.ins[0]), self.name(e.out)]
        self.lines += ["with objmode():", f"    allreduce_pairs({', '.join(pairs)})"]

    def source(self) -> str:
        group: list = []
        for step in self.steps:
            if is_collective(step):
                group.append(step)
                continue
            if group:
                self.collectives(group)
                group = []
            self.kernel(step) if isinstance(step, Kernel) else self.library(step)
        if group:
            self.collectives(group)
        params = ([self.value(v) for v in self.s.inputs] + [self.name(v) for v, _ in self.s.params]
                  + [self.name(v) for v, _ in self.s.consts if v not in self.inlined]
                  + [f"ws{k}" for k in range(len(self.plan.slots))] + (["dims"] if self.dim_names else []))
        results, returned = [], set()
        for v in list(self.s.outputs) + [v for _, v in self.s.updates]:
            if not v.dims:      # a Python scalar crosses back far faster than a 0-d array
                results.append(f"{self.name(v)}.item()")
                continue
            copy = v not in self.fresh or v in returned
            results.append(self.name(v) + (".copy()" if copy else ""))
            returned.add(v)
        head = [f"@jit(error_model='numpy', fastmath={self.fastmath})",
                f"def program({', '.join(params)}):"]
        unpack = [f"{n} = dims[{k}]" for k, n in enumerate(self.dim_names.values())]
        unpack += [f"{self.name(v)} = np.full((), {self.value(v)}, {_np_type(v.dtype)})"
                   for v in self.s.inputs if v in self.boxed_inputs]
        body = unpack + self.lines + [f"return ({''.join(r + ', ' for r in results)})"]
        return (_PRELUDE + "\n".join(self.imports) + "\n\n\n" + "\n".join(head)
                + "\n" + "\n".join("    " + line for line in body) + "\n")


def _slice_text(pw: _ProgramWriter, index) -> str:
    parts = []
    for start, stop, step in index:
        bounds = ["" if b is None else pw.size(b) for b in (start, stop)]
        parts.append(":".join(bounds) + ("" if step is None else f":{step}"))
    return ", ".join(parts) if parts else "()"


def _emit_reshape(pw, e):
    shape = "(" + "".join(f"{-1 if d == -1 else pw.size(d)}, " for d in e.attrs["shape"]) + ")"
    return [f"{pw.name(e.out)} = np.reshape({pw.name(e.ins[0])}, {shape})"]


def _emit_matmul(pw, e):
    a, b, out = (pw.name(v) for v in (*e.ins, e.out))
    if len(e.out.dims) == 2 and e.out.dtype.kind == "f":
        return [f"np.dot({a}, {b}, {out})"]
    m, k, n = (pw.size(d) for d in (e.ins[0].dims[-2], e.ins[0].dims[-1], e.ins[1].dims[-1]))
    helper = "matmul_floats" if e.out.dtype.kind == "f" else "matmul_ints"
    return [f"{helper}(np.reshape({a}, (-1, {m}, {k})), np.reshape({b}, (-1, {k}, {n})), "
            f"np.reshape({out}, (-1, {m}, {n})))"]


def _fill(pw, v: Var, text: str) -> str:
    return f"{pw.name(v)}[()] = {text}" if not v.dims else f"{pw.name(v)}.fill({text})"   # 0-d: no fill


def _emit_unslice(pw, e):
    out = pw.name(e.out)
    return [_fill(pw, e.out, "0"), f"{out}[{_slice_text(pw, e.attrs['index'])}] = {pw.name(e.ins[0])}"]


def _emit_scatter_add(pw, e):
    g, idx = e.ins
    axis, out = e.attrs["axis"], pw.name(e.out)
    loops = [f"j{a}" for a in range(len(g.dims))]
    inner = loops[axis:axis + len(idx.dims)]
    target = loops[:axis] + [f"wrap_index({pw.name(idx)}[{', '.join(inner) or '()'}], {out}.shape[{axis}])"] \
        + loops[axis + len(idx.dims):]
    lines, indent = [_fill(pw, e.out, "0")], ""
    for a, j in enumerate(loops):
        lines.append(f"{indent}for {j} in range({pw.size(g.dims[a])}):")
        indent += "    "
    lines.append(f"{indent}{out}[{', '.join(target)}] += {pw.name(g)}[{', '.join(loops) or '()'}]")
    return lines


def _emit_concatenate(pw, e):
    axis, out, lines, offset = e.attrs["axis"], pw.name(e.out), [], "0"
    for v in e.ins:
        end = f"{offset} + {pw.size(v.dims[axis])}" if offset != "0" else pw.size(v.dims[axis])
        index = ", ".join(f"{offset}:{end}" if a == axis else ":" for a in range(len(v.dims)))
        lines.append(f"{out}[{index}] = {pw.name(v)}")
        offset = end
    return lines


def _emit_full(pw, e):
    value = e.attrs["value"]
    text = pw.size(value) if isinstance(value, Dim) else _literal(value, e.out.dtype)
    return [_fill(pw, e.out, text)]


def _emit_full_like(pw, e):
    return [_fill(pw, e.out, _literal(e.attrs["value"], e.out.dtype))]


def _stack(pw, v: Var, core: int) -> str:
    """``v`` as a stack with its batch axes flattened into one: the LAPACK helpers' layout."""
    batch = " * ".join(pw.size(d) for d in v.dims[:len(v.dims) - core]) or "1"
    tail = "".join(f", {pw.size(d)}" for d in v.dims[len(v.dims) - core:])
    return f"np.reshape({pw.name(v)}, ({batch}{tail}))"


def _lapack(routine: str, operands: tuple, out_core: int = 2, attrs: tuple = ()):
    """Emit a call of ``jitgrad.backends.lapack.<routine>`` on the stacked operands
    (inputs at the positions ``operands``), writing the output in place."""
    def emit(pw, e):
        pw.use("from jitgrad.backends import lapack")
        args = [_stack(pw, e.ins[i], 2) for i in operands] + [_stack(pw, e.out, out_core)]
        args += [repr(bool(e.attrs[name])) for name in attrs]
        return [f"lapack.{routine}({', '.join(args)})"]
    return emit


def _decomposition(routine: str):
    """eigh/svd, or their values-only variants where the program reads row 0 alone."""
    full, values = _lapack(routine, (0,)), _lapack(f"{routine}_values", (0,))
    return lambda pw, e: (values if e.out in pw.values_only else full)(pw, e)


def _values_only(schedule: Schedule) -> set:
    """Packed eigh/svd results read only through slices of row 0: the values, no vectors
    (a value-only nuclear norm, say; a gradient reads the vectors too)."""
    found = {e.out for e in schedule.eqns if e.op in (linalg.eigh_p, linalg.svd_p)}
    found -= set(schedule.outputs) | {v for _, v in schedule.updates}
    for e in schedule.eqns:
        reads_row_0 = e.op is sh.slice_p and len(e.ins[0].dims) >= 2 and e.attrs["index"][-2] == (0, 1, 1)
        if not reads_row_0:
            found -= set(e.ins)
    return found


def _emit_transpose(pw, e):
    return [f"{pw.name(e.out)} = {pw.name(e.ins[0])}.T"]     # a matmul operand: BLAS reads it as is


_LIBRARY = {sh.reshape_p: _emit_reshape, sh.transpose_p: _emit_transpose, sh.unslice_p: _emit_unslice,
            sh.scatter_add_p: _emit_scatter_add, sh.concatenate_p: _emit_concatenate,
            sh.full_p: _emit_full, sh.full_like_p: _emit_full_like, linalg.matmul_p: _emit_matmul,
            linalg.lu_p: _lapack("lu_factor", (0,)),
            linalg.lu_solve_p: _lapack("lu_solve", (0, 2), attrs=("trans",)),
            linalg.lu_det_p: _lapack("lu_det", (0,), out_core=0),
            linalg.lu_cofactor_p: _lapack("lu_cofactor", (0,)),
            linalg.lu_logabsdet_p: _lapack("lu_logabsdet", (0,), out_core=0),
            linalg.lu_sign_p: _lapack("lu_sign", (0,), out_core=0),
            linalg.cholesky_p: _lapack("cholesky", (0,)),
            linalg.triangular_solve_p: _lapack("triangular_solve", (0, 1), attrs=("lower", "trans")),
            linalg.eigh_p: _decomposition("eigh"),
            linalg.svd_p: _decomposition("svd")}


def _all_dims(schedule: Schedule) -> list[Dim]:
    found: dict[Dim, None] = {}

    def visit(value):
        if isinstance(value, tuple):
            for x in value:
                visit(x)
        elif isinstance(value, Dim):
            found.setdefault(value)

    for v in schedule.inputs:
        visit(v.dims)
    for e in schedule.eqns:
        visit(e.out.dims)
        visit(tuple(e.attrs.values()))
    return list(found)


class CpuProgram:
    """A schedule compiled for the CPU: call it like the numpy reference program."""

    def __init__(self, schedule: Schedule, *, parallel: bool = False, fastmath: bool = False):
        steps = defer_collectives(fuse(schedule))
        self.schedule = FusedSchedule(schedule, steps)
        self._dims = _all_dims(schedule)
        self._plan = plan_memory(steps, schedule)
        self._workspace = (None, None)        # (the sizes it was made for, its arrays)
        self._lock = threading.Lock()
        writer = _ProgramWriter(schedule, steps, self._plan, self._dims, parallel, fastmath)
        program = writer.source()
        for source in writer.kernel_sources:
            load_module(source)
        self.source = "\n\n".join(writer.kernel_sources + [program])
        self._entry = load_module(program).program
        self._consts = [np.ascontiguousarray(value) for v, value in schedule.consts
                        if v not in writer.inlined]
        returned = list(schedule.outputs) + [v for _, v in schedule.updates]
        self._scalars = [(i, v.dtype) for i, v in enumerate(returned) if not v.dims]
        self._n_results = returned
        self._scalar_inputs = [i for i, v in enumerate(schedule.inputs) if not v.dims]

    takes_scalars = True      # 0-d arguments may arrive as Python numbers

    def entry(self, fixed, params):
        """A type-tests-only entry for calls with fixed shapes (see jitgrad.entry), or None
        when the program needs call-time sizes."""
        if self._dims or not self._plan.is_static():
            return None
        from ..entry import make_entry, write_entry
        workspace = self._plan.allocate({})
        returned = len(self._n_results)
        self.entry_source = write_entry(fixed, len(params), len(self._consts), len(workspace),
                                        dict(self._scalars), returned)
        return make_entry(self.entry_source, self._entry, [p._payload for p in params],
                          self._consts, workspace, self._lock)

    def __call__(self, args: list, params: list, sizes: dict) -> list:
        """Run on checked arguments; returns the outputs, then the new param values."""
        if self._scalar_inputs:
            args = [a.item() if i in self._scalar_inputs and type(a) is np.ndarray else a
                    for i, a in enumerate(args)]
        if not self._dims and not self._plan.slots:     # nothing to size, nothing to share
            return self._box(self._entry(*args, *params, *self._consts))
        dims = np.array([resolve_dim(d, sizes) for d in self._dims], np.int64)
        if not self._lock.acquire(blocking=False):      # another thread is using the workspace
            return self._run(args, params, dims, self._plan.allocate(sizes))
        try:
            key = dims.tobytes()
            if self._workspace[0] != key:
                self._workspace = (key, self._plan.allocate(sizes))
            return self._run(args, params, dims, self._workspace[1])
        finally:
            self._lock.release()

    def _run(self, args, params, dims, workspace) -> list:
        extra = (dims,) if self._dims else ()
        return self._box(call(self._entry, *args, *params, *self._consts, *workspace, *extra))

    def _box(self, results) -> list:
        results = list(results)
        for i, dtype in self._scalars:      # the program returns 0-d results as Python scalars
            results[i] = np.array(results[i], dtype)
        return results
