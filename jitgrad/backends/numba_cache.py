"""Numba's disk cache, checksummed and fail-safe, for the functions of generated modules, and
callees that their callers call by symbol.

The part of ``jitgrad.backends.cache`` that needs Numba: generated source imports ``jit`` from
here, so Numba is imported by the first generated module loaded, and generating source needs none.
"""
from __future__ import annotations

import contextlib
import io
import pickle
import sys

import numba
from numba.core.base import OverloadSelector
from numba.core.caching import CompileResultCacheImpl, FunctionCache, IndexDataCacheFile
from numba.core.compiler import Compiler
from numba.core.dispatcher import Dispatcher
from numba.core.imputils import user_function
from numba.core.registry import CPUDispatcher
from numba.core.runtime import rtsys

from .cache import _MAGIC, _digest, _drop, _note_written, _read_verified, _settle, _volatile, _warn_once


class _ChecksummedFile(IndexDataCacheFile):
    """Numba's index (.nbi) and data (.nbc) files, each prefixed with a SHA-256 of its content,
    and each data file holding the index key it was saved under.

    Numba unpickles these files unchecked: truncation shows up as an exception, but a flipped bit
    in the machine code loads fine and then computes garbage or crashes (seen: SIGSEGV). And
    Numba reuses data file names (`.1.nbc` again after an index is flushed) and writes the index
    before the data, so a concurrent reader could load another signature's code for this key.
    """

    def save(self, key, data):
        super().save(key, (key, data))

    def load(self, key):
        entry = super().load(key)
        return entry[1] if entry is not None and entry[0] == key else None

    @contextlib.contextmanager
    def _open_for_write(self, filepath):
        buffer = io.BytesIO()
        yield buffer
        body = buffer.getvalue()
        with super()._open_for_write(filepath) as file:  # Numba's temp file + os.replace
            file.write(_MAGIC + _digest(body) + body)
        _note_written(len(_MAGIC) + 32 + len(body))

    def _load_index(self):
        try:
            stream = io.BytesIO(_read_verified(self._index_path))
        except FileNotFoundError:
            return {}
        if pickle.load(stream) != self._version:
            return {}
        stamp, overloads = pickle.loads(stream.read())
        return overloads if stamp == self._source_stamp else {}

    def _load_data(self, name):
        return pickle.loads(_read_verified(self._data_path(name)))


class _StaleEntry(Exception):
    """A cached caller whose callees are compiled under other symbols here: a miss."""


# The symbol of each callee overload compiled or loaded in this process: (module, function, types)
_callee_symbols: dict[str, tuple[str, str, tuple]] = {}


class _StableSymbols(Compiler):
    """Numba's pipeline, giving a callee the same symbol in every process.

    Numba numbers the functions it compiles in a process and writes the number into each
    symbol.  A callee's module is named by its source's hash and holds one function: its symbol
    needs no number.  With one, a kernel that a worker and this process both compiled (as
    `jitgrad.tiered.compile_kernels_ahead` has them do) had two symbols, and a program compiled
    here named one that the disk cache did not keep.
    """

    def _compile_bytecode(self):
        self.state.func_id.unique_id = 0
        return super()._compile_bytecode()


class _Callee(CPUDispatcher):
    """A generated function that only compiled code calls (a kernel, a segment of a program, a
    loop's body): no Python or C wrappers, and its callers call its symbol.

    Numba links the code of a called function into every caller, where LLVM optimizes and emits
    it again: a W3 step's program took 1.1 s of LLVM work, most of it its 21 kernels once more,
    and takes 0.6 s without them (Numba 0.68).  A callee's callers only declare it, and LLVM's
    JIT resolves the symbol against its code, already in this process: Numba compiles a callee
    while it types the caller, and a caller loaded from the disk cache loads its callees first
    (`_CallerResults`).  The calls are not inlined; each costs nanoseconds, a kernel's loops far
    more.
    """

    def add_overload(self, cres):
        super().add_overload(cres)
        if cres.objectmode:
            return
        call = user_function(cres.fndesc, libs=())     # Numba's call of compiled code, unlinked
        calls = OverloadSelector()
        calls.append(call, call.signature)
        self.targetctx._defns[cres.entry_point] = calls     # in place of the call that links
        _callee_symbols[cres.fndesc.mangled_name] = (self.py_func.__module__, self.py_func.__name__,
                                                     tuple(cres.signature.args))


class _CallerResults(CompileResultCacheImpl):
    """Cached compile results that list the callees their code calls by symbol (`_Callee`).

    Machine code that calls a symbol this process has not loaded crashes it (seen: SIGSEGV), so
    loading an entry first compiles or loads each callee for its types.  Where one comes out
    under another symbol than the entry names, the entry is stale and Numba compiles the caller
    afresh (a safeguard: a callee has the same symbol in every process, `_StableSymbols`).
    """

    def reduce(self, cres):
        declared = {f.name for f in cres.library._final_module.functions if f.is_declaration}
        callees = {symbol: _callee_symbols[symbol] for symbol in declared & _callee_symbols.keys()}
        return callees, super().reduce(cres)

    def rebuild(self, target_context, payload):
        callees, payload = payload
        for symbol, (module, name, types) in callees.items():
            callee = getattr(sys.modules.get(module), name, None)     # the caller's module imports it
            if not isinstance(callee, _Callee):
                raise _StaleEntry(f"{module}.{name} is not loaded")
            callee.compile(types)
            if callee.overloads[types].fndesc.mangled_name != symbol:
                raise _StaleEntry(f"{module}.{name} is compiled under another symbol")
        return super().rebuild(target_context, payload)


class _GuardedCache(FunctionCache):
    """Numba's per-function disk cache where an unreadable entry is a miss, not an error.

    Observed with numba 0.68 on damaged files: UnpicklingError (garbage, zero bytes, truncation),
    EOFError (empty file), UnicodeDecodeError and TypeError (bytes flipped inside the pickle),
    RuntimeError "LLVM bitcode parsing error" (flipped machine code), and some flipped bits load
    silently (caught by `_ChecksummedFile`); Numba never recovers by itself. Any exception while
    loading therefore drops the entry (the next save rewrites it) and Numba compiles afresh; a
    save that fails only turns caching off for the function.
    """

    _impl_class = _CallerResults

    def __init__(self, py_func):
        super().__init__(py_func)
        self._cache_file = _ChecksummedFile(self._cache_path, self._impl.filename_base,
                                            self._impl.locator.get_source_stamp())

    def load_overload(self, sig, target_context):
        # Numba refreshes its target context first: 0.35 s in a new process for its lowering
        # registries, which only compiling needs; machine code needs the NRT's symbols.
        rtsys.initialize(target_context)
        try:
            with self._guard_against_spurious_io_errors():
                return self._load_overload(sig, target_context)
        except _StaleEntry:
            return None         # compiled afresh; its save replaces the entry
        except Exception as error:
            _warn_once("entry", f"unreadable Numba cache entry for {self._name} in "
                                f"{self._cache_path} ({type(error).__name__}: {error}); "
                                "dropped it and recompiling")
            _drop(self)
            return None

    def save_overload(self, sig, data):
        try:
            super().save_overload(sig, data)
        except Exception as error:
            _warn_once("save", f"cannot save Numba cache entry for {self._name} in "
                               f"{self._cache_path} ({type(error).__name__}: {error}); "
                               "it will be recompiled in the next process")
            self.disable()
        # Called inside Numba's compiler lock: wait briefly, never block (see `_settle`)
        _settle(wait_s=2.0)


def jit(**options):
    """Decorator for functions in generated source: ``numba.njit`` with the disk cache when it works.

    ``callee=True``: a function only compiled code calls (see :class:`_Callee`).  Caching is off
    for modules that live only as long as the process (temporary or in-memory fallback), and when
    Numba cannot cache at all (e.g. ``no locator available`` when neither the cache directory nor
    HOME is writable): then the function is compiled in every process, with one
    :class:`~jitgrad.backends.cache.CacheWarning`. Used inside generated source, as in ``cache``'s example::

        @jit(fastmath=False, callee=True)
        def kernel_0(x, out): ...
    """
    cache = options.pop("cache", True)
    callee = options.pop("callee", False)
    if callee:
        options.update(no_cpython_wrapper=True, no_cfunc_wrapper=True)

    def decorate(fn):
        dispatcher = numba.njit(cache=False, **options)(fn)
        if not isinstance(dispatcher, Dispatcher):
            return dispatcher  # (not a Dispatcher under NUMBA_DISABLE_JIT)
        if callee:             # njit's options, checked and completed, for a dispatcher of our class
            dispatcher = _Callee(py_func=fn, locals={}, targetoptions=dispatcher.targetoptions,
                                 pipeline_class=_StableSymbols)
        if not cache or fn.__module__ in _volatile:
            return dispatcher
        try:
            dispatcher._cache = _GuardedCache(dispatcher.py_func)  # what enable_caching() does
        except (RuntimeError, OSError, TypeError) as error:  # TypeError: no source file at all
            _warn_once("locator", f"Numba cannot cache {fn.__qualname__} ({error}); compiling "
                                  "in every process")
        return dispatcher

    return decorate
