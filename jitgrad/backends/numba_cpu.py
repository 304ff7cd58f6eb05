"""The CPU target: fused kernels as generated Python source, compiled by Numba.

Every kernel becomes a small function of explicit loops, and the whole
schedule one ``program`` that allocates buffers, calls the kernels and the
library operations in order, and returns the outputs.  A call is therefore
one Numba dispatch.  Kernels are modules of their own, named by a hash of
their source, so identical kernels of different graphs are compiled once and
shared through the on-disk cache.
"""
from __future__ import annotations

import functools
import re
import threading
import time

import numpy as np

from .. import debug
from ..fusion import Call, Collective, ControlFlow, Kernel, View
from ..lower import Lowered, lower_body
from ..ops import elementwise, linalg, reduce as rd, shape as sh, sort as sort_ops, window
from ..ops.window import AXES
from ..ops import random as random_ops
from ..ops.loop import cond_operands, while_operands
from ..primitive import Dim, resolve_dim
from ..schedule import Schedule, Var
from .cache import call, load_module, module_name
from .kernel_body import COMBINE, HELPERS, KernelBody, affine as _affine, identity, import_helpers, literal, np_type
from .linalg_calls import LINALG
from .program import Program
from .program_split import imported_names, split
from . import vector_abi

PARALLEL_MIN_SIZE = 32768    # elements below which threads cost more than they save
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))

_PRELUDE = """\
import math
import numpy as np
from numba import prange
from jitgrad.backends.numba_cache import jit
from jitgrad.backends.numpy_inline import dot_into, empty, reshape, workspace_view
""" + import_helpers("jitgrad.backends.scalars", HELPERS + ("matmul_floats", "matmul_ints"))


_PRELUDE_NAMES = set(imported_names([_PRELUDE]))

# Functions only the program calls need no entry from Python, and are called by symbol
# (jitgrad.backends.numba_cache._Callee).
_CALLEE = "{}, callee=True)"

_ACCUMULATE = {rd.reduce_sum_p: "{0} += {1}", rd.reduce_prod_p: "{0} *= {1}"}

_VECTOR_IMPORT = "from jitgrad.backends import vector_math as vmath\n"
# a call of a math function or a helper, not a method (``np.tanh(``): group 2 names it
_CALL = re.compile(r"(?<![\w.])(math\.)?(\w+)\(")
_VECTOR_POWER = "vmath.pow({0}, {1})"       # pow's scalar is the operator, not a call
STRIP = 512     # elements a strip-mined loop computes before it accumulates their reductions


def module_source(function: str) -> str:
    """A kernel's module: the prelude, vector math if it calls it, then the function."""
    return _PRELUDE + (_VECTOR_IMPORT if "vmath." in function else "") + "\n\n" + function


# -- kernels -----------------------------------------------------------------

class CpuKernelWriter(KernelBody):
    """Writes one kernel as a function of nested loops (the outer one a ``prange`` when
    ``parallel``), its reductions accumulated as the loops run.

    Math functions glibc also has in vector form are called through ``vmath``
    (``jitgrad.backends.vector_math``), so LLVM may vectorize the loop.  It cannot while the
    loop also adds to a scalar accumulator (floating-point sums keep their order), so such a
    loop is strip-mined: each block of ``STRIP`` elements is computed into small buffers by a
    loop that vectorizes, then accumulated in order by a second loop.  The sums are the same
    as those of the plain loop, bit for bit."""

    def __init__(self, kernel: Kernel, parallel: bool, fastmath: bool, literals: dict,
                 scalar_args: set = frozenset(), returns: bool = False):
        super().__init__(kernel, literals, scalar_args)
        self.parallel, self.fastmath = parallel, fastmath
        self.returns = returns          # returns its values instead of storing them: see returns_values
        self.vectorize = vector_abi.available()
        self.calls_vector_math = False
        self.deferred: list[str] = []     # accumulations a strip-mined loop makes after each block
        self.blocks: list[str] = []       # the buffers that hold a block's values until then

    def element(self, v: Var, idx) -> str:
        return super().element(v, idx) if idx else f"{self.arg[v]}.item()"    # a[()] is 0-d

    @staticmethod
    def returns_values(k: Kernel) -> bool:
        """Whether ``k`` can return its values as numbers rather than store them into 0-d
        arrays: a kernel without loops or reductions. Its caller then allocates no buffers for
        them (three allocations were a twentieth of a tiny graph's call)."""
        return not k.dims and not k.reductions

    def body(self) -> None:
        if not self.returns:
            return super().body()
        for e in self.k.body:
            self.body_line(e)
        self.lines.append("return " + ", ".join(self.local[v] for v in self.k.stores))

    def scalar(self, e) -> str:
        template = e.op.scalar
        dtype = e.out.dtype
        if not self.vectorize or dtype not in _FLOATS or any(v.dtype != dtype for v in e.ins):
            return template
        if e.op is elementwise.pow_p:
            template = _VECTOR_POWER if vector_abi.has("pow") else template
        else:
            template = _CALL.sub(lambda m: f"vmath.{m[2]}(" if vector_abi.has(m[2]) else m[0], template)
        self.calls_vector_math |= "vmath." in template
        return template

    def source(self, name: str) -> str:
        self.body()
        before, after = [], []
        self.opening: dict[int, list[str]] = {}     # lines before the loop at a depth opens
        self.closing: dict[int, list[str]] = {}     # lines after it closes
        for j, e in enumerate(self.k.reductions):
            self.reduce_lines(j, e, before, after)
        extents = [f"n{a}" for a in range(self.rank)]
        params = [self.arg[v] for v in self.reads + ([] if self.returns else self.writes)] + extents
        threads = ", parallel=True" if self.parallel else ""
        out = [_CALLEE.format(f"@jit(error_model='numpy', fastmath={self.fastmath}{threads}"),
               f"def {name}({', '.join(params)}):",
               f'    """fused[{", ".join(e.op.name for e in self.k.body + self.k.reductions)}]"""']
        last = self.rank - 1
        if self.deferred and not self.parallel:
            before += self.blocks                   # one set of buffers
        elif self.deferred and last > 0:
            self.opening.setdefault(1, []).extend(self.blocks)     # a set for each thread
        out += [f"    {line}" for line in before]
        depth = 1
        for a in range(self.rank):
            indent = "    " * depth
            out += [indent + line for line in self.opening.get(a, ())]
            loop = "prange" if self.parallel and a == 0 else "range"
            if a == last and self.deferred:
                out += [f"{indent}for k{a} in {loop}((n{a} + {STRIP - 1}) // {STRIP}):",
                        f"{indent}    s{a} = k{a} * {STRIP}",
                        f"{indent}    e{a} = n{a} if n{a} - s{a} < {STRIP} else s{a} + {STRIP}"]
                depth += 1
                indent = "    " * depth
                out += [indent + line for line in (self.blocks if self.parallel and a == 0 else ())]
                loop, extent = "range", f"s{a}, e{a}"
            else:
                extent = f"n{a}"
            out.append(f"{indent}for i{a} in {loop}({extent}):")
            depth += 1
        indent = "    " * depth
        out += [indent + line for line in self.lines] or [indent + "pass"]
        if self.deferred:
            indent = "    " * (depth - 1)
            out += [f"{indent}for i{last} in range(s{last}, e{last}):"]
            out += [f"{indent}    {line}" for line in self.deferred]
        for a in reversed(range(self.rank)):
            out += ["    " * (a + 1) + line for line in self.closing.get(a, ())]
        out += [f"    {line}" for line in after]
        return "\n".join(out) + "\n"

    def accumulate(self, update: str, value: str, dtype: np.dtype) -> None:
        """Add ``value`` to a scalar accumulator in the innermost loop (``update`` formats it).
        In a loop that calls vector math, the value goes to a block buffer instead, and the
        update to the loop that runs after each block (see the class)."""
        if not (self.calls_vector_math and self.rank):
            self.lines.append(update.format(value))
            return
        block, last = f"b{len(self.blocks)}", self.rank - 1
        self.blocks.append(f"{block} = empty({STRIP}, {np_type(dtype)})")
        self.lines.append(f"{block}[i{last} - s{last}] = {value}")
        self.deferred.append(update.format(f"{block}[i{last} - s{last}]"))

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
        axes = e.attrs["axes"]
        value = self.operand(e.ins[0])
        target = self.arg[e.out]
        combine = COMBINE[e.op]
        dtype = e.ins[0].dtype
        if len(axes) == self.rank:          # a full reduction: a scalar accumulator
            acc = f"acc{j}"
            before.append(f"{acc} = {identity(e.op, e.out.dtype)}")
            if e.op in _ACCUMULATE:         # the form prange recognises as a reduction
                self.accumulate(_ACCUMULATE[e.op].format(acc, "{0}"), value, dtype)
            else:
                self.accumulate(f"{acc} = {combine.format(acc, '{0}')}", value, dtype)
            idx = ["0"] * len(e.out.dims)
            after.append(f"{target}{self.at(idx)} = {acc}")
            return
        before.append(f"{target}[...] = {identity(e.op, e.out.dtype)}")
        slot = f"{target}{self.at(self.out_index(e))}"
        depth = self.rank
        while depth - 1 in axes:            # the innermost loops all reduce: sum them in a local
            depth -= 1
        if depth == self.rank:
            self.lines.append(f"{slot} = {combine.format(slot, value)}")
            return
        acc = f"acc{j}"
        self.opening.setdefault(depth, []).append(f"{acc} = {np_type(e.out.dtype)}({identity(e.op, e.out.dtype)})")
        self.accumulate(f"{acc} = {combine.format(acc, '{0}')}", value, dtype)
        self.closing.setdefault(depth, []).append(f"{slot} = {combine.format(slot, acc)}")


# -- the program -------------------------------------------------------------

class _ProgramWriter:
    """Writes the ``program`` function of a schedule.  A loop body's program (``body=True``)
    is only called by another program: no Python wrapper, and its constants are module
    globals (which Numba compiles in) rather than parameters."""

    def __init__(self, schedule: Lowered, dims: list[Dim], parallel: bool, fastmath: bool,
                 body: bool = False, debug_nans: bool = False, profile: bool = False):
        self.s, self.steps, self.plan = schedule, schedule.steps, schedule.plan
        self.parallel, self.fastmath, self.is_body = parallel, fastmath, body
        self.debug_nans, self.profile = debug_nans, profile      # variants: see nan_checks, stamp
        self.loops = 0
        self.dim_names = {d: f"d{k}" for k, d in enumerate(dims)}
        self.lines: list[str] = []
        self.callee_sources: list[str] = []     # kernels and segments, in the order they load
        self.kernel_alias: dict[str, str] = {}
        self.imports: list[str] = []
        self.fresh: set[Var] = set()
        library_inputs = {v for step in self.steps if isinstance(step, Call) for v in step.reads()}
        escaping = set(schedule.results)
        self.literals = {v: literal(value, v.dtype) for v, value in schedule.consts if value.ndim == 0}
        self.inlined = {v for v in self.literals if v not in library_inputs and v not in escaping}
        self.scalar_inputs = {v for v in schedule.inputs if not v.dims}
        self.values_only = schedule.values_only
        self.boxed_inputs = self.scalar_inputs & library_inputs     # a library call needs an array too
        self.numbers = self.kernel_numbers() if not debug_nans else set()
        # the program's parameters, by position (a body takes its constants as globals instead)
        consts = [] if body else [v for v, _ in schedule.consts if v not in self.inlined]
        self.position = {v: k for k, v in enumerate(list(schedule.inputs) + [v for v, _ in schedule.params] + consts)}
        self.viewed: dict[Var, Var] = {}        # a reshape's output -> the array it views
        self.kernel_calls: list[tuple[str, list]] = []     # see argument_kind

    def kernel_numbers(self) -> set[Var]:
        """The 0-d values that kernels return as numbers (``CpuKernelWriter.returns_values``) and
        only kernels read: held in locals, passed to kernels as numbers, returned as they are."""
        needs_array = {v for step in self.steps if not isinstance(step, Kernel) for v in step.reads()}
        return {v for step in self.steps if isinstance(step, Kernel) and CpuKernelWriter.returns_values(step)
                and not needs_array.intersection(step.writes()) for v in step.writes()}

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
        """How a kernel receives ``v``: 0-d inputs and kernel numbers as the number itself."""
        return f"s_{v.name}" if v in self.scalar_inputs else self.name(v)

    def size(self, d) -> str:
        return self.dim_names[d] if isinstance(d, Dim) else str(d)

    def shape(self, dims) -> str:
        return "(" + "".join(f"{self.size(d)}, " for d in dims) + ")"

    def alloc(self, v: Var) -> str:
        """Code that gives ``v`` its buffer: fresh if it leaves the call, else workspace."""
        if v in self.plan.slot_of:
            return f"{self.name(v)} = workspace_view(ws{self.plan.slot_of[v]}, {self.shape(v.dims)})"
        self.fresh.add(v)
        return f"{self.name(v)} = empty({self.shape(v.dims)}, {np_type(v.dtype)})"

    def import_kernel(self, writer: CpuKernelWriter, args: list | None = None) -> str:
        """The name the program calls the kernel by: one per distinct kernel source.  With the
        call's arguments (Vars, then sizes), the call is listed in ``kernel_calls``."""
        function = writer.source("kernel")
        if args is not None and not self.is_body:
            self.kernel_calls.append((module_source(function), [self.argument_kind(a) for a in args]))
        return self.import_source(function)

    def argument_kind(self, a) -> tuple | None:
        """How Numba types a kernel argument, in terms of the program's own parameters, so that
        a worker can compile the kernel ahead of the program (:func:`kernel_signatures`):
        ("size", n) for a fixed size, ("dim",) for a call-time one, ("number", dtype) for a 0-d
        input, ("param", k, ndim) for the program's parameter k (or a reshape of it),
        ("buffer", dtype, ndim) for an array the program allocated; None if unknown here."""
        if not isinstance(a, Var):
            return ("dim",) if isinstance(a, Dim) else ("size", int(a))
        if a in self.scalar_inputs or a in self.numbers:
            return ("number", a.dtype.name)
        base = a
        while base in self.viewed:
            base = self.viewed[base]
        if base is None:
            return None
        if base in self.position:
            return ("param", self.position[base], len(a.dims))
        if base in self.plan.slot_of or base in self.fresh:
            return ("buffer", a.dtype.name, len(a.dims))
        return None

    def import_source(self, function: str) -> str:
        """The name the program calls ``function`` (the source of one ``kernel``) by."""
        source = module_source(function)
        if source not in self.kernel_alias:
            self.callee_sources.append(source)
            self.kernel_alias[source] = f"kernel_{len(self.kernel_alias)}"
            self.imports.append(f"from {module_name(source)} import kernel as {self.kernel_alias[source]}")
        return self.kernel_alias[source]

    def emit_kernel(self, k: Kernel) -> None:
        numbers = self.scalar_inputs | self.numbers
        returns = CpuKernelWriter.returns_values(k) and self.numbers.issuperset(k.writes())
        serial = CpuKernelWriter(k, False, self.fastmath, self.literals, numbers, returns)
        self.lines.append(self.comment(k.describe()))
        if returns:
            alias = self.import_kernel(serial, serial.reads)
            self.lines.append(f"{', '.join(map(self.name, serial.writes))} = "
                              f"{alias}({', '.join(map(self.value, serial.reads))})")
            return
        self.lines.extend(self.alloc(v) for v in serial.writes)
        operands = serial.reads + serial.writes + list(k.dims)
        alias = self.import_kernel(serial, operands)
        args = [self.value(v) for v in serial.reads + serial.writes] + [self.size(d) for d in k.dims]
        call_serial = f"{alias}({', '.join(args)})"
        if not (self.parallel and CpuKernelWriter.parallelizable(k)):
            self.lines.append(call_serial)
            return
        threaded = self.import_kernel(CpuKernelWriter(k, True, self.fastmath, self.literals, numbers), operands)
        total = " * ".join(self.size(d) for d in k.dims)
        self.lines += [f"if {total} >= {PARALLEL_MIN_SIZE}:", f"    {threaded}({', '.join(args)})",
                       "else:", f"    {call_serial}"]

    def emit_call(self, step: Call) -> None:
        e = step.eqn
        emit = _emit_linalg if e.op in LINALG else _LIBRARY.get(e.op)
        if emit is None:
            raise NotImplementedError(f"target 'cpu' cannot emit the primitive {e.op.name!r}")
        self.lines.append(self.comment(str(e)))
        self.lines.append(self.alloc(e.out))
        self.lines.extend(emit(self, e))

    def emit_view(self, step: View) -> None:
        """A reshape, or a transpose BLAS reads as it is: no buffer of its own."""
        e = step.eqn
        self.lines.append(self.comment(str(e)))
        if e.op is sh.reshape_p:
            shape = "(" + "".join(f"{-1 if d == -1 else self.size(d)}, " for d in e.attrs["shape"]) + ")"
            self.lines.append(f"{self.name(e.out)} = reshape({self.name(e.ins[0])}, {shape})")
            self.viewed[e.out] = e.ins[0]
        else:
            self.lines.append(f"{self.name(e.out)} = {self.name(e.ins[0])}.T")
            self.viewed[e.out] = None           # not C-ordered: argument_kind does not tell it

    def import_body(self, body) -> tuple[str, list[str]]:
        """The name the program calls a loop body or branch by (its own ``program``, in a
        module of its own), and the workspace arrays it needs, allocated here."""
        writer = _ProgramWriter(lower_body(body), [], self.parallel, self.fastmath, body=True)
        source = writer.source()
        for callee in writer.callee_sources:
            if callee not in self.callee_sources:
                self.callee_sources.append(callee)
        if source not in self.kernel_alias:
            self.callee_sources.append(source)
            self.kernel_alias[source] = f"body_{len(self.kernel_alias)}"
            self.imports.append(f"from {module_name(source)} import program as {self.kernel_alias[source]}")
        prefix = f"{self.kernel_alias[source]}_ws"
        workspace = [f"{prefix}{k}" for k in range(len(writer.plan.slots))]
        self.lines += [f"{name} = empty({max(1, n)}, {np_type(dtype)})" for name, n, (dtype, _)
                       in zip(workspace, writer.plan.slot_sizes({}), writer.plan.slots)]
        return self.kernel_alias[source], workspace

    def emit_control(self, step: ControlFlow) -> None:
        """A loop or a branch: each body is a program of its own, called from this one."""
        self.lines.append(self.comment(step.describe()))
        self.lines.extend(self.alloc(v) for v in step.writes())
        by_index = {e.attrs["index"]: e.out for e in step.siblings}
        emit = {"scan": self.emit_scan, "while": self.emit_while, "cond": self.emit_cond}[step.eqn.op.name]
        start = len(self.lines)
        emit(step.eqn, by_index)
        if self.debug_nans:             # no loop runs once a check failed: it might never end on NaN
            self.lines[start:] = ["if nan_flag[0] < 0:"] + ["    " + line for line in self.lines[start:]]

    def argument(self, v: Var) -> str:
        """``v`` as a body program takes it: 0-d values as numbers."""
        return self.scalar(v) if not v.dims else self.name(v)

    def carries(self, init) -> list[str]:
        """Local names for a loop's carries, set to their initial values (copies: the loop
        rebinds them, and the program's own buffers must not change)."""
        j = self.loops
        self.loops += 1
        names = [f"loop{j}_c{k}" for k in range(len(init))]
        self.lines += [f"{c} = {self.scalar(v) if not v.dims else self.name(v) + '.copy()'}"
                       for c, v in zip(names, init)]
        return names

    def store_results(self, by_index: dict, values: dict) -> None:
        self.lines += [f"{self.name(by_index[k])}[{'()' if not by_index[k].dims else '...'}] = {values[k]}"
                       for k in sorted(by_index) if k in values]

    def emit_scan(self, e, by_index: dict) -> None:
        """Once per step: the body's program on the carries, this step's slices and what it
        reads from outside; each step's outputs and starting carries go into their rows."""
        body, ins = e.attrs["body"], e.ins
        n_c, n_x, n_y = body.n_carry, body.n_x, body.n_y
        inner = sorted(k for k in by_index if k >= body.first_node_result)   # stacked inner nodes
        alias, workspace = self.import_body(body.reading([body.result_node(k) for k in inner]))
        carries = self.carries(ins[:n_c])
        length = e.attrs["length"]
        steps = f"range({length - 1}, -1, -1)" if e.attrs["reverse"] else f"range({length})"
        args = carries + [f"{self.name(v)}[t]" for v in ins[n_c:n_c + n_x]]
        args += [self.argument(v) for v in ins[n_c + n_x:]] + workspace
        loop = [f"for t in {steps}:"]
        loop += [f"    {self.name(by_index[n_c + n_y + k])}[t] = {c}" for k, c in enumerate(carries)
                 if n_c + n_y + k in by_index]
        loop.append(f"    r = {alias}({', '.join(args)})")
        loop += [f"    {c} = r[{k}]" for k, c in enumerate(carries)]
        loop += [f"    {self.name(by_index[n_c + k])}[t] = r[{n_c + k}]" for k in range(n_y) if n_c + k in by_index]
        loop += [f"    {self.name(by_index[k])}[t] = r[{n_c + n_y + j}]" for j, k in enumerate(inner)]
        self.lines += loop
        self.store_results(by_index, dict(enumerate(carries)))

    def emit_while(self, e, by_index: dict) -> None:
        cond, body = e.attrs["cond"], e.attrs["body"]
        test_free, step_free = while_operands(e.ins, cond, body)[1:]
        test, test_ws = self.import_body(cond)
        step, step_ws = self.import_body(body)
        carries = self.carries(e.ins[:body.n_carry])
        test_args = carries + [self.argument(v) for v in test_free] + test_ws
        step_args = carries + [self.argument(v) for v in step_free] + step_ws
        self.lines += [f"while {test}({', '.join(test_args)})[0]:",
                       f"    r = {step}({', '.join(step_args)})"]
        self.lines += [f"    {c} = r[{k}]" for k, c in enumerate(carries)]
        self.store_results(by_index, dict(enumerate(carries)))

    def emit_cond(self, e, by_index: dict) -> None:
        true, false = e.attrs["true"], e.attrs["false"]
        pred, operands, true_free, false_free = cond_operands(e.ins, true, false)
        when_true, true_ws = self.import_body(true)
        when_false, false_ws = self.import_body(false)
        args = [self.argument(v) for v in operands]
        self.lines += [f"if {self.scalar(pred)}:",
                       f"    r = {when_true}({', '.join(args + [self.argument(v) for v in true_free] + true_ws)})",
                       "else:",
                       f"    r = {when_false}({', '.join(args + [self.argument(v) for v in false_free] + false_ws)})"]
        self.store_results(by_index, {k: f"r[{k}]" for k in range(len(true.outputs))})

    def scalar(self, v: Var) -> str:
        """A 0-d value as a number (a body program takes its 0-d inputs as numbers)."""
        if v in self.scalar_inputs:
            return f"s_{v.name}"
        return self.name(v) if v in self.numbers else f"{self.name(v)}.item()"

    def emit_collectives(self, group: list) -> None:
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
        group: list = []                # consecutive collectives, packed into one all-reduce
        starts = []                     # where each step's block of lines begins
        for step in self.steps:
            if group and not isinstance(step, Collective):
                self.emit_collectives(group)
                group = []
            starts.append(len(self.lines))
            match step:
                case Kernel():
                    self.emit_kernel(step)
                case Collective():
                    group.append(step)
                case View():
                    self.emit_view(step)
                case ControlFlow():
                    self.emit_control(step)
                case Call():
                    self.emit_call(step)
        if group:
            self.emit_collectives(group)
        consts = [(v, value) for v, value in self.s.consts if v not in self.inlined]
        params = ([self.value(v) for v in self.s.inputs] + [self.name(v) for v, _ in self.s.params]
                  + ([] if self.is_body else [self.name(v) for v, _ in consts])
                  + [f"ws{k}" for k in range(len(self.plan.slots))] + (["dims"] if self.dim_names else []))
        results, returned = [], set()
        for v in self.s.results:
            if not v.dims:      # a Python scalar crosses back far faster than a 0-d array
                results.append(self.scalar(v))
                continue
            copy = v not in self.fresh or v in returned
            results.append(self.name(v) + (".copy()" if copy else ""))
            returned.add(v)
        decorator = f"@jit(error_model='numpy', fastmath={self.fastmath})"
        if self.is_body:
            decorator = _CALLEE.format(decorator[:-1])
            self.imports += [f"{self.name(v)} = np.frombuffer(bytes.fromhex({value.tobytes().hex()!r}), "
                             f"{np_type(value.dtype)}).reshape({value.shape!r})" for v, value in consts]
        unpack = [f"{n} = dims[{k}]" for k, n in enumerate(self.dim_names.values())]
        for v in self.s.inputs:
            if v in self.boxed_inputs:      # (np.full would be one more function to compile)
                unpack += [f"{self.name(v)} = empty((), {np_type(v.dtype)})", f"{self.name(v)}[()] = {self.value(v)}"]
        tail = [f"return ({''.join(r + ', ' for r in results)})"]
        blocks = [self.lines[a:b] for a, b in zip(starts, starts[1:] + [len(self.lines)])]
        if self.debug_nans:
            params.append("nan_flag")           # (the failed check, the checks run)
            blocks = self.nan_checks(blocks)
        if self.profile:
            params.append("step_stamps")        # the time before the first step and after each
            unpack += ["prof_at = np.zeros(1, np.int64)", "prof_clock = np.zeros(2, np.int64)"]
            unpack += self.stamp()
            blocks = [block + self.stamp() for block in blocks]
        body = unpack + self.segmented(blocks, tail, decorator) + tail
        return (_PRELUDE + "\n".join(self.imports) + "\n\n\n" + decorator
                + f"\ndef program({', '.join(params)}):\n" + "\n".join("    " + line for line in body) + "\n")

    def nan_checks(self, blocks: list[list[str]]) -> list[list[str]]:
        """debug_nans: ``blocks`` with a test of each float value a step writes after the step,
        in the order of ``jitgrad.debug.checks``, counted in ``nan_flag[1]``; the first value that
        holds NaN/inf writes the number of its check into ``nan_flag[0]``, and the tests after it
        are skipped (as are loops: one might never end on NaN). The program runs on; the caller
        raises. Packed collectives write their values in the group's last block: tested there.
        The lines do not depend on the check's number: a repeated structure stays one segment."""
        checks = debug.checks(self.s)
        if checks:
            self.use("from jitgrad.backends.probes import all_finite")
        out, pending = [], []
        for k, block in enumerate(blocks):
            pending += [v for j, v in checks if j == k]
            grouped = k + 1 < len(self.steps) and isinstance(self.steps[k + 1], Collective)
            if isinstance(self.steps[k], Collective) and grouped:
                out.append(block)
                continue
            lines = list(block)
            for v in pending:
                lines += ["if nan_flag[0] < 0:", f"    if not all_finite({self.name(v)}):",
                          "        nan_flag[0] = nan_flag[1]", "    nan_flag[1] += 1"]
            out.append(lines)
            pending = []
        return out

    def stamp(self) -> list[str]:
        """profile: lines that write the time in seconds into the next entry of ``step_stamps``
        (``jitgrad.backends.probes``; ``time.perf_counter`` in object mode where the C library has
        no ``clock_gettime``). They rebind no name, so program_split may cut anywhere."""
        from .probes import CLOCK     # (imports Numba: only profile variants use it)
        if CLOCK is None:
            self.use("from numba import objmode")
            self.use("import time")
            now = ["with objmode(prof_now='float64'):", "    prof_now = time.perf_counter()"]
        else:
            self.use("from jitgrad.backends.probes import clock_gettime")
            now = [f"clock_gettime({CLOCK}, prof_clock.ctypes.data)", "prof_now = prof_clock[0] + prof_clock[1] * 1e-9"]
        return now + ["step_stamps[prof_at[0]] = prof_now", "prof_at[0] += 1"]

    def segmented(self, blocks: list[list[str]], tail: list[str], decorator: str) -> list[str]:
        """The program's body: the blocks as they are, or, for a long program, calls of segment
        functions in modules of their own, one module per distinct segment (``program_split``)."""
        bound = imported_names(self.imports)
        segments = split(blocks, tail, set(bound) | _PRELUDE_NAMES)
        if segments is None:
            return [line for block in blocks for line in block]
        calls, aliases = [], {}
        for segment in segments:
            imports, function = segment.function(_CALLEE.format(decorator[:-1]), bound)
            source = _PRELUDE + imports + "\n\n\n" + function
            if source not in aliases:
                self.callee_sources.append(source)
                aliases[source] = f"segment_{len(aliases)}"
                self.imports.append(f"from {module_name(source)} import segment as {aliases[source]}")
            calls.append(segment.call(aliases[source]))
        return calls


def _slice_text(pw: _ProgramWriter, index) -> str:
    parts = []
    for start, stop, step in index:
        bounds = ["" if b is None else pw.size(b) for b in (start, stop)]
        parts.append(":".join(bounds) + ("" if step is None else f":{step}"))
    return ", ".join(parts) if parts else "()"


def _emit_matmul(pw, e):
    a, b, out = (pw.name(v) for v in (*e.ins, e.out))
    if len(e.out.dims) == 2 and e.out.dtype.kind == "f":
        return [f"dot_into({a}, {b}, {out})"]
    m, k, n = (pw.size(d) for d in (e.ins[0].dims[-2], e.ins[0].dims[-1], e.ins[1].dims[-1]))
    helper = "matmul_floats" if e.out.dtype.kind == "f" else "matmul_ints"
    return [f"{helper}(reshape({a}, (-1, {m}, {k})), reshape({b}, (-1, {k}, {n})), "
            f"reshape({out}, (-1, {m}, {n})))"]


def _fill(pw, v: Var, text: str) -> str:
    return f"{pw.name(v)}[{'()' if not v.dims else '...'}] = {text}"


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
    text = pw.size(value) if isinstance(value, Dim) else literal(value, e.out.dtype)
    return [_fill(pw, e.out, text)]


def _emit_full_like(pw, e):
    return [_fill(pw, e.out, literal(e.attrs["value"], e.out.dtype))]


def _stack(pw, v: Var, core: int) -> str:
    """``v`` as a stack with its batch axes flattened into one: the LAPACK helpers' layout."""
    batch = " * ".join(pw.size(d) for d in v.dims[:len(v.dims) - core]) or "1"
    tail = "".join(f", {pw.size(d)}" for d in v.dims[len(v.dims) - core:])
    return f"reshape({pw.name(v)}, ({batch}{tail}))"


def _emit_linalg(pw, e):
    """A call of ``jitgrad.backends.lapack`` on the stacked operands (see ``linalg_calls``),
    writing the output in place."""
    call = LINALG[e.op]
    pw.use("from jitgrad.backends import lapack")
    args = [_stack(pw, e.ins[i], 2) for i in call.operands] + [_stack(pw, e.out, call.out_core)]
    args += [repr(bool(e.attrs[name])) for name in call.flags]
    return [f"lapack.{call.routine_for(e.out, pw.values_only)}({', '.join(args)})"]


def _emit_philox(pw, e):
    """A call of ``jitgrad.backends.philox``: streams stacked as (keys, elements per key)."""
    pw.use("from jitgrad.backends import philox")
    key, tweak = e.ins
    streams = " * ".join(pw.size(d) for d in key.dims[:-1]) or "1"
    return [f"philox.fill_{np.dtype(e.attrs['dtype']).name.replace('uint32', 'bits')}("
            f"reshape({pw.name(key)}, ({streams}, 2)), reshape({pw.name(tweak)}, ({streams}, 2)), "
            f"reshape({pw.name(e.out)}, ({streams}, -1)))"]


def _emit_unpatches(pw, e):
    """col2im as a kernel of its own, its loops in the order of the windows' memory; threads
    split the outer loop when it runs over images or channels (each writes its own pixels),
    so the order of the sums, and so the result, does not depend on the threads."""
    a, order = e.attrs, e.attrs["order"]
    at = [f"i{order.index(axis)}" for axis in range(6)]          # n, c, kh, kw, oh, ow
    threaded = pw.parallel and order[0] in (0, 1)
    inside = []
    for pixel, (before, after), extent in zip("hw", a["padding"], ("w0.shape[2]", "w0.shape[3]")):
        inside += ([f"{pixel} >= 0"] if before else []) + ([f"{pixel} < {extent}"] if after else [])
    add = f"w0[{at[0]}, {at[1]}, h, w] += r0[i0, i1, i2, i3, i4, i5]"
    body = [f"h = {_affine(at[4], a['stride'][0], at[2], a['dilation'][0], a['padding'][0][0])}",
            f"w = {_affine(at[5], a['stride'][1], at[3], a['dilation'][1], a['padding'][1][0])}",
            *([f"if {' and '.join(inside)}:", f"    {add}"] if inside else [add])]
    lines = [_CALLEE.format(f"@jit(error_model='numpy'{', parallel=True' if threaded else ''}"),
             "def kernel(r0, w0):",
             f'    """unpatches: windows ({", ".join(AXES[p] for p in order)}) added onto the image"""']
    for p in range(6):
        loop = "prange" if threaded and p == 0 else "range"
        lines.append(" " * (4 + 4 * p) + f"for i{p} in {loop}(r0.shape[{p}]):")
    lines += [" " * 28 + line for line in body]
    kernel = pw.import_source("\n".join(lines) + "\n")
    return [_fill(pw, e.out, "0"), f"{kernel}({pw.name(e.ins[0])}, {pw.name(e.out)})"]


def _rows(pw, v: Var, axis: int) -> str:
    """``v`` as the (outer, n, inner) stack of its rows along ``axis`` (jitgrad.backends.sorting's layout)."""
    outer = " * ".join(pw.size(d) for d in v.dims[:axis]) or "1"
    inner = " * ".join(pw.size(d) for d in v.dims[axis + 1:]) or "1"
    return f"reshape({pw.name(v)}, ({outer}, {pw.size(v.dims[axis])}, {inner}))"


def _emit_argsort(pw, e):
    """A call of ``jitgrad.backends.sorting``: stable sorts of the rows along the axis."""
    pw.use("from jitgrad.backends import sorting")
    axis = e.attrs["axis"]
    return [f"sorting.argsort_rows({_rows(pw, e.ins[0], axis)}, {_rows(pw, e.out, axis)}, "
            f"{bool(e.attrs['descending'])!r})"]


def _emit_tie_average(pw, e):
    pw.use("from jitgrad.backends import sorting")
    axis = e.attrs["axis"]
    return [f"sorting.tie_average_rows({', '.join(_rows(pw, v, axis) for v in (*e.ins, e.out))})"]


_LIBRARY = {window.unpatches_p: _emit_unpatches, random_ops.philox_p: _emit_philox,
            sh.unslice_p: _emit_unslice, sh.scatter_add_p: _emit_scatter_add,
            sh.concatenate_p: _emit_concatenate, sh.full_p: _emit_full, sh.full_like_p: _emit_full_like,
            linalg.matmul_p: _emit_matmul, sort_ops.argsort_p: _emit_argsort,
            sort_ops.tie_average_p: _emit_tie_average}


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


class CpuProgram(Program):
    """A schedule compiled for the CPU: call it like the numpy reference program.

    Variants (other programs, other sources): ``debug_nans`` tests the values of each step and
    raises at the first NaN/inf (``jitgrad.debug``); ``profile`` times each step (``profile()``
    builds and runs it)."""

    def __init__(self, schedule: Lowered, *, parallel: bool = False, fastmath: bool = False,
                 debug_nans: bool = False, profile: bool = False):
        self._schedule, self._options = schedule, {"parallel": parallel, "fastmath": fastmath}
        self.debug_nans, self._timed = debug_nans and not profile, profile
        self._checks = debug.checks(schedule) if self.debug_nans else None
        self._profiler: CpuProgram | None = None      # the profile variant, made when first asked for
        self._dims = _all_dims(schedule)
        self._plan = schedule.plan
        self._states = schedule.states
        self._workspace = (None, None)        # (the sizes it was made for, its arrays)
        self._lock = threading.Lock()
        writer = _ProgramWriter(schedule, self._dims, parallel, fastmath,
                                debug_nans=self.debug_nans, profile=profile)
        program = writer.source()
        self.source = "\n\n".join(writer.callee_sources + [program])
        self.module_sources = [*writer.callee_sources, program]    # in load order; the program last
        self.kernel_calls = writer.kernel_calls     # (kernel source, its arguments' kinds)
        # np.asarray(order="C"), not np.ascontiguousarray: the latter makes a 0-d constant 1-d
        self._consts = [np.asarray(value, order="C") for v, value in schedule.consts
                        if v not in writer.inlined]
        self._scalars = [(i, v.dtype) for i, v in enumerate(schedule.results) if not v.dims]
        self._n_results = len(schedule.results)
        self._scalar_inputs = [i for i, v in enumerate(schedule.inputs) if not v.dims]
        # a call straight to the program: nothing to size or share, no variant's extra arguments
        self._direct = not self._dims and not self._plan.slots and not (self.debug_nans or self._timed)

    takes_scalars = True      # 0-d arguments may arrive as Python numbers

    @functools.cached_property
    def _entry(self):
        """The program's dispatcher, its modules loaded (and Numba imported) when first asked for:
        the reference tier runs the first calls of a tiered compile without either."""
        for source in self.module_sources:
            entry = load_module(source)
        return entry.program

    def entry(self, fixed, single: bool):
        """A type-tests-only entry for calls with fixed shapes (a jitgrad.entry.Entry), or None
        when the program needs call-time sizes."""
        if self._dims or not self._plan.is_static() or self.debug_nans or self._timed:
            return None
        from ..entry import Entry, EntryState, python_scalars, write_entry
        workspace = self._plan.allocate({})
        updated = self._schedule.update_states
        self.entry_source = write_entry(fixed, len(self._states), len(self._consts), len(workspace),
                                        dict(self._scalars), self._n_results,
                                        self._n_results - len(updated), single)
        program = self._entry
        if python_scalars(fixed) and not (self._states or self._consts or workspace):
            # The entry's type tests fix the signature: call its machine code's wrapper, not the
            # dispatcher, which would type each argument again (0.1 us of a 1 us call).
            from numba import from_dtype
            program = program.compile(tuple(from_dtype(dtype) for dtype, _ in fixed))
        state = EntryState(program, self._states, self._consts, workspace, self._lock, updated)
        return Entry(self.entry_source, state)

    def __call__(self, args: list, sizes: dict) -> list:
        """Run on checked arguments; returns the outputs, then the new param values."""
        params = [state.array for state in self._states]
        args = self._as_compiled(args)
        if self._direct:
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

    def _as_compiled(self, args: list) -> list:
        """0-d inputs as Python numbers, as the program is compiled for them."""
        if not self._scalar_inputs:
            return args
        return [a.item() if i in self._scalar_inputs and type(a) is np.ndarray else a
                for i, a in enumerate(args)]

    def _program_args(self, args, params, dims, workspace) -> tuple:
        values = (*args, *params, *self._consts, *workspace, *((dims,) if self._dims else ()))
        if self.debug_nans:
            return (*values, np.array([-1, 0]))                        # (the failed check, checks run)
        if self._timed:
            return (*values, np.zeros(len(self._schedule.steps) + 1))  # times around the steps
        return values

    def arguments(self, args: list, sizes: dict) -> tuple:
        """What a call on checked ``args`` passes to the compiled ``program``: the values whose
        Numba types it is compiled for, ahead of the call (jitgrad.tiered does, in a worker)."""
        dims = np.array([resolve_dim(d, sizes) for d in self._dims], np.int64)
        return self._program_args(self._as_compiled(args), [state.array for state in self._states],
                                  dims, self._plan.allocate(sizes) if self._plan.slots else ())

    def _run(self, args, params, dims, workspace) -> list:
        values = self._program_args(args, params, dims, workspace)
        if not self.debug_nans:
            return self._box(call(self._entry, *values))
        flag = values[-1]
        try:
            results = call(self._entry, *values)
        except Exception as error:      # a NaN index, a NaN matrix: the NaN is what to report
            if flag[0] < 0:
                raise
            raise debug.CheckFailed(self._checks[flag[0]], "cpu") from error
        if flag[0] >= 0:                # a check failed: raise before any update
            raise debug.CheckFailed(self._checks[flag[0]], "cpu")
        return self._box(results)

    def profile(self, args: list, sizes: dict, repeat: int) -> debug.Profile:
        """``repeat`` calls of the profile variant of this program (after one untimed call,
        which compiles it), each step timed."""
        if self._profiler is None:
            self._profiler = CpuProgram(self._schedule, **self._options, profile=True)
        timed = self._profiler
        args = timed._as_compiled(args)
        dims = np.array([resolve_dim(d, sizes) for d in timed._dims], np.int64)
        values = timed._program_args(args, [state.array for state in timed._states], dims,
                                     timed._plan.allocate(sizes) if timed._plan.slots else ())
        call(timed._entry, *values)
        stamps, seconds, wall = values[-1], np.zeros(len(self._schedule.steps)), 0.0
        for _ in range(repeat):
            start = time.perf_counter()
            timed._entry(*values)
            wall += time.perf_counter() - start
            seconds += np.diff(stamps)
        return debug.step_profile(self._schedule.steps, seconds, repeat, wall, "cpu")

    def _box(self, results) -> list:
        results = list(results)
        for i, dtype in self._scalars:      # the program returns 0-d results as Python scalars
            results[i] = np.array(results[i], dtype)
        return results


def kernel_signatures(kernel_calls: list, signature: tuple) -> list[tuple[str, tuple]]:
    """(kernel module source, Numba signature) of the kernels a program calls (its
    ``kernel_calls``), in the order it calls them, typed as Numba will type them when it
    compiles the program for ``signature`` (fixed sizes as literals): what a worker can compile
    ahead, in parallel with the program's compile (jitgrad.tiered).  Calls whose types are
    unknown are left out."""
    from numba import from_dtype, types

    def numba_type(kind):
        match kind:
            case ("size", n):
                return types.literal(n)
            case ("dim",):
                return types.int64
            case ("number", dtype):
                return from_dtype(np.dtype(dtype))
            case ("buffer", dtype, ndim):
                return types.Array(from_dtype(np.dtype(dtype)), ndim, "C")
            case ("param", k, ndim):
                t = signature[k]
                if isinstance(t, types.Array) and t.ndim != ndim:
                    t = types.Array(t.dtype, ndim, "C", readonly=not t.mutable)
                return t
    seen, out = set(), []
    for source, kinds in kernel_calls:
        if None in kinds:
            continue
        call = (source, tuple(numba_type(kind) for kind in kinds))
        if call not in seen:
            seen.add(call)
            out.append(call)
    return out
