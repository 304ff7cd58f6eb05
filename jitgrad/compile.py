"""``jg.compile`` and the Executable: argument checks, params, updates, targets.

Compilation lowers the graph once (``jitgrad.lower``) and hands the lowered
schedule to one backend's ``Program``; a call checks its arguments against the
graph, runs the program, returns fresh arrays and then applies the param
updates, all computed from the old values.
"""
from __future__ import annotations

import threading

import numpy as np

from . import provenance, tiered
from .debug import CheckFailed, Profile, compiled_report
from .entry import ABSENT, entry_class
from .functions import as_tensor, astype
from .graph import Tensor, check_array
from .lower import Lowered, lower
from .ops import leaf
from .primitive import Dim, resolve_dim
from .backends.numpy_ref import NumpyProgram
from .backends.program import Program

def _cpu_program(schedule: Lowered, **options) -> Program:
    from .backends.numba_cpu import CpuProgram     # imports numba only when asked for
    return CpuProgram(schedule, **options)


def _cuda_program(schedule: Lowered, **options) -> Program:
    from .backends.cuda import CudaProgram
    return CudaProgram(schedule, **options)


TARGETS = {"numpy": lambda schedule, debug_nans=False, **options: NumpyProgram(schedule, debug_nans),
           "cpu": _cpu_program, "cuda": _cuda_program}
OPTIONS = {"parallel": False, "fastmath": False}


class _Sizes:
    """Union-find over call-time sizes: which Dims the graph says are equal."""

    def __init__(self):
        self.parent: dict = {}

    def find(self, d):
        while isinstance(d, Dim) and self.parent.get(d, d) is not d:
            d = self.parent[d]
        return d

    def union(self, a, b, where: str):
        ra, rb = self.find(a), self.find(b)
        if ra is rb or ra == rb:
            return
        if not isinstance(ra, Dim) and not isinstance(rb, Dim):
            raise ValueError(f"{where}: the graph needs sizes {ra} and {rb} to be equal")
        if isinstance(ra, Dim):
            self.parent[ra] = rb
        else:
            self.parent[rb] = ra


def _as_outputs(outputs):
    if isinstance(outputs, Tensor):
        return [outputs], True
    if isinstance(outputs, (list, tuple)):
        for o in outputs:
            if not isinstance(o, Tensor):
                raise TypeError(f"compile: outputs must be Tensors, got {type(o).__name__}")
        return list(outputs), False
    raise TypeError(f"compile: outputs must be a Tensor or a list of Tensors, got {type(outputs).__name__}")


def _check_inputs(inputs) -> list[Tensor]:
    if isinstance(inputs, Tensor):
        inputs = [inputs]
    inputs = list(inputs)
    names = set()
    for x in inputs:
        if not isinstance(x, Tensor) or x.op is not leaf.input_p:
            raise TypeError(f"compile: inputs must be Tensors made by jg.input, got {x!r}")
        if x.name in names:
            raise ValueError(f"compile: two inputs are named {x.name!r}")
        names.add(x.name)
    return inputs


def _check_updates(updates) -> list[tuple[Tensor, Tensor]]:
    pairs = []
    for p, value in (updates or {}).items():
        if not isinstance(p, Tensor) or not p.is_param:
            raise TypeError(f"compile: update keys must be params, got {p!r}")
        value = as_tensor(value)
        if value.shape != p.shape:
            raise ValueError(f"compile: the update of param {p.name!r} has shape {value.shape}, "
                             f"the param has shape {p.shape}")
        if value.dtype != p.dtype:
            if not np.can_cast(value.dtype, p.dtype, casting="same_kind"):
                raise TypeError(f"compile: the update of param {p.name!r} has dtype {value.dtype}, "
                                f"not convertible to the param's {p.dtype}")
            value = astype(value, p.dtype)
        pairs.append((p, value))
    return pairs


class Executable:
    """A compiled function: call it with arrays; it returns fresh arrays.

    ``schedule`` is the linear op schedule that runs; ``inputs`` and ``params``
    list what it reads.
    """

    __slots__ = ("_entry_state", "__dict__", "__weakref__")     # _entry_state: see jitgrad.entry

    def __init__(self, inputs, outputs, *, target="cpu", updates=None, wait=None, debug_nans=None, **options):
        unknown = set(options) - set(OPTIONS)
        if unknown:
            raise TypeError(f"compile: unknown option(s) {sorted(unknown)}; known: {sorted(OPTIONS)}")
        if target not in TARGETS:
            raise ValueError(f"compile: unknown target {target!r}; available: {sorted(TARGETS)}")
        self.inputs = _check_inputs(inputs)
        outs, self._single = _as_outputs(outputs)
        self.schedule = lower(self.inputs, outs, _check_updates(updates))
        self.params = [node for _, node in self.schedule.params]
        self.target, self.options = target, {**OPTIONS, **options}
        self.debug_nans = provenance.active() if debug_nans is None else bool(debug_nans)
        self._program: Program = TARGETS[target](self.schedule, **self.options, debug_nans=self.debug_nans)
        self._switch = threading.Lock()        # the tier changes between calls, under this lock
        self._pending: tiered.CompiledTier | None = None    # the compiled tier, while being built
        self._failure: tuple | None = None     # (kind, error) of a background build that failed
        self._compiled = self._program
        self._ahead = None                     # a program whose first call compiles it here
        if target == "cpu" and tiered.enabled(wait) and not self.schedule.has_collectives:
            self._pending = tiered.CompiledTier(self._program)     # a worker starts up meanwhile
            self._program = NumpyProgram(self.schedule, self.debug_nans)
        elif target == "cpu" and not self.debug_nans:
            self._ahead = self._program         # a worker compiles kernels meanwhile (jitgrad.tiered)

        self._sizes = self._size_classes()
        self._names = [x.name for x in self.inputs]
        self._fixed = [(x.dtype, x.shape) for x in self.inputs]     # shapes for the fast path
        self._all_fixed = not self._sizes and all(None not in x.shape for x in self.inputs)
        self._n_out = len(outs)
        self._updated = self.schedule.update_states
        if self._ahead is None:
            self._use(self._program)

    def _size_classes(self) -> tuple:
        """Union the sizes the graph's shape rules said must be equal."""
        sizes = _Sizes()
        for a, b, op in self.schedule.constraints:
            sizes.union(a, b, f"compile: {op}")
        self._rep_dims = [tuple(sizes.find(d) for d in x.dims) for x in self.inputs]
        self._find = sizes.find
        return self.schedule.constraints

    # -- calling -------------------------------------------------------------

    def _arguments(self, args, kwargs) -> list:
        if len(args) > len(self._names):
            raise TypeError(f"compiled function takes {len(self._names)} positional arguments "
                            f"({', '.join(self._names)}) but {len(args)} were given")
        values = dict(zip(self._names, args))
        for name, value in kwargs.items():
            if name not in self._names:
                raise TypeError(f"compiled function got an unexpected argument {name!r}; "
                                f"its inputs are {self._names}")
            if name in values:
                raise TypeError(f"compiled function got multiple values for argument {name!r}")
            values[name] = value
        missing = [n for n in self._names if n not in values]
        if missing:
            raise TypeError(f"compiled function is missing argument(s) {missing}")
        return [values[n] for n in self._names]

    def _check(self, arrays) -> tuple[list, dict]:
        """Converted arguments and the call-time sizes, or the error naming the input."""
        bound: dict = {}
        checked = []
        for x, rep_dims, value in zip(self.inputs, self._rep_dims, arrays):
            checked.append(check_array(value, x.name, rep_dims, x.dtype, bound, f"input {x.name!r}"))
        sizes = {d: n for d, (n, _) in bound.items()}
        for x in self.inputs:
            for d in x.dims:
                if isinstance(d, Dim):
                    sizes[d] = resolve_dim(self._find(d), sizes)
        for a, b, op in self._sizes:
            na, nb = resolve_dim(a, sizes), resolve_dim(b, sizes)
            if na != nb:
                raise ValueError(f"the arguments' shapes {[np.shape(v) for v in checked]} contradict the "
                                 f"graph: {op} needs sizes {na} and {nb} to be equal")
        return checked, sizes

    def _fast_check(self, arrays) -> list | None:
        """The arguments as they are, if every one already has its exact dtype, fixed shape
        and C order (the common case in a loop); else None and the full check runs."""
        checked = []
        for value, (dtype, shape) in zip(arrays, self._fixed):
            if type(value) is not np.ndarray:
                if type(value) is not float or shape or dtype != np.float64:
                    return None
                value = value if self._program.takes_scalars else np.array(value)
            elif value.dtype != dtype or value.shape != shape or not value.flags.c_contiguous:
                return None
            checked.append(value)
        return checked

    def __call__(self, /, *args, **kwargs):
        if self._pending is not None and self._pending.done():
            self._take_compiled_tier()
        arrays = args if not kwargs and len(args) == len(self._names) else self._arguments(args, kwargs)
        checked = self._fast_check(arrays) if self._all_fixed else None
        if checked is None:
            checked, sizes = self._check(arrays)
        else:
            sizes = {}
        if self._ahead is not None:            # the first call of an in-process compile
            program, self._ahead = self._ahead, None
            if program is not None:            # (unless another thread's call took it)
                tiered.compile_kernels_ahead(program, tiered.describe(program.arguments(checked, sizes)))
                self._use(program)
        pending, first = self._pending, False
        if pending is not None and pending.future is None:
            with self._switch:
                if pending.future is None:
                    pending.start(checked, sizes)
                    first = True
            # Even when the disk cache holds the program, this first call runs on the reference
            # tier: loading the machine code takes longer (0.3-0.4 s for W3, and Numba's import
            # 0.25 s) than the call itself. From the next call on, a thread loads it
            # (CompiledTier): a function called once never waits for Numba, not even at exit.
        try:
            if pending is not None and self._program is not self._compiled:    # the reference tier
                with tiered.cores_left_by_workers():
                    results = self._program(checked, sizes)
                if not first:
                    pending.load_in_background()
            else:
                results = self._program(checked, sizes)
        except CheckFailed as failed:       # debug_nans on a compiled target: the reference finds it
            reference = NumpyProgram(self.schedule, debug_nans=True)
            raise compiled_report(self.schedule, failed, reference, checked, sizes) from None
        for state, value in zip(self._updated, results[self._n_out:]):
            state.assign(value)            # a fresh array of the param's dtype and shape
        return results[0] if self._single else tuple(results[:self._n_out])

    def _checked_call(self, /, *args, **kwargs):
        """The call with every check, for the calls a generated entry hands over; it passes
        ``ABSENT`` for the arguments the call left out."""
        return Executable.__call__(self, *[a for a in args if a is not ABSENT], **kwargs)

    def profile(self, *args, repeat: int = 10, **kwargs) -> Profile:
        """Run the call ``repeat`` times (after one untimed call), timing each step: each fused
        kernel and library call (on ``cuda`` with CUDA events; on ``numpy`` each equation).
        Returns a :class:`~jitgrad.debug.Profile`, whose printout is a table sorted by time: the
        step, what it fused, ms per call, its share of the call. Param updates are not applied.
        On ``cpu`` the steps run in a variant of the program that reads a clock after each (tens
        of nanoseconds), compiled on the first profile; the compiled tier is profiled even while
        the reference tier runs (``wait=False``)."""
        if not isinstance(repeat, int) or repeat < 1:
            raise ValueError(f"profile: repeat must be a positive int, got {repeat!r}")
        checked, sizes = self._check(self._arguments(args, kwargs))
        return self._compiled.profile(checked, sizes, repeat)

    # -- tiers -------------------------------------------------------------------

    @property
    def tier(self) -> str:
        """Which tier runs now: "reference" until the compiled program takes over, then the
        target's name."""
        return "reference" if self._program is not self._compiled else self.target

    @property
    def ready(self) -> bool:
        """Whether the compiled tier runs (always, unless compiled with ``wait=False``)."""
        return self._program is self._compiled

    def _use(self, program: Program) -> None:
        """Run ``program`` from now on. Where it has a generated entry (fixed shapes, jitgrad.entry),
        this function becomes an instance of the subclass whose ``__call__`` is that entry: it
        takes exact arguments straight to the program and hands every other call to
        ``_checked_call``."""
        entry = program.entry(self._fixed, self._single) if self._all_fixed else None
        self._program = program
        if entry is None:
            self.__class__ = Executable
        else:
            self._entry_state = entry.state
            self.__class__ = entry_class(Executable, entry.source)

    def _take_compiled_tier(self) -> None:
        """Switch to the compiled program if its worker delivered it; warn if it cannot."""
        with self._switch:
            pending = self._pending
            if pending is None or not pending.done():
                return
            self._pending = None
            kind, error = pending.outcome()
            if kind == "ready":
                self._use(pending.program)
                return
            self._failure = (kind, error, pending)
        what = "failed" if kind == "failed" else "could not be delivered by its worker process"
        then = "f.wait() raises the error" if kind == "failed" else "f.wait() compiles it in this process"
        tiered.warn(f"the background compilation of {self!r} {what} ({type(error).__name__}: {error}); "
                    f"the reference tier keeps running; {then}")

    def wait(self, timeout: float | None = None) -> Executable:
        """Block until the compiled tier runs (a no-op unless compiled with ``wait=False``).

        Raises the error of a background compilation that failed. When a worker could not
        deliver the program (it was killed, or the disk cache could not hold it), compiles it
        in this process. Before the first call there is nothing to compile ahead: the compiled
        program takes over and compiles at the next call, as with ``wait=True``.
        """
        if self._failure is not None:
            kind, error, pending = self._failure
            if kind == "failed":
                raise error
            with self._switch:
                pending.compile_here()
                self._use(pending.program)
                self._failure = None
            return self
        pending = self._pending
        if pending is None:
            return self
        if pending.future is not None:
            pending.outcome(timeout)          # blocks; a TimeoutError propagates
            self._take_compiled_tier()
            return self.wait()
        with self._switch:
            if self._pending is pending and pending.future is None:
                self._use(pending.program)
                self._pending = None
        return self.wait()

    @property
    def source(self) -> str:
        """The generated source of the compiled program (compiled targets only)."""
        if self._compiled.source is None:
            raise AttributeError(f"target {self.target!r} runs no generated source")
        return self._compiled.source

    def __repr__(self) -> str:
        return (f"<jitgrad Executable target={self.target!r} inputs={self._names} "
                f"{len(self.schedule)} equations>")


def compile(inputs, outputs, *, target: str = "cpu", updates=None, wait: bool | None = None,  # noqa: A001
            debug_nans: bool | None = None, **options) -> Executable:
    """Compile the graph from ``inputs`` to ``outputs`` into a callable.

    ``target="cpu"`` (the default) fuses the graph into Numba kernels and runs
    it as one compiled program; ``"numpy"`` is the unfused reference.  Options:
    ``parallel`` (threads for large kernels) and ``fastmath`` (Numba's flag).

    ``wait=False`` (tiered execution, ``target="cpu"`` only): calls run on the reference
    interpreter at once while a worker process compiles the program into the disk cache, and
    switch to it when it is ready (``f.tier``, ``f.ready``; ``f.wait()`` blocks until then).
    ``wait=True``: the first call compiles in this process. ``None`` (the default) is
    ``wait=False`` unless the environment sets ``JITGRAD_TIERED=0`` (see ``jitgrad.tiered``).
    A graph with collectives (``jg.distributed``) always compiles in this process: every rank
    runs the same tier.

    ``debug_nans=True`` checks the float values of every kernel and library call as the call
    runs, and raises ``FloatingPointError`` at the first NaN or inf, naming the step, the
    primitive, its schedule line, the inputs that already held NaN and, for graphs built in
    debug mode (``JITGRAD_DEBUG_NANS=1`` or ``with jg.debug_nans():``), the line of code that
    built the value; param updates are not applied. It runs another program (the normal one
    has no checks). ``None`` (the default): on in debug mode. See :mod:`jitgrad.debug`.

    >>> import jitgrad as jg, numpy as np
    >>> x = jg.input("x", (None,))
    >>> f = jg.compile([x], jg.sum(x ** 2))
    >>> float(f(np.arange(3.0)))
    5.0
    """
    return Executable(inputs, outputs, target=target, updates=updates, wait=wait, debug_nans=debug_nans,
                      **options)

