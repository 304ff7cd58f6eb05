"""Tiered execution: the reference tier runs at once, the compiled tier is built by workers.

``jg.compile(..., target="cpu")`` (unless ``wait=True``) generates the CPU program's source
(no Numba yet: not even its import) and runs the first calls on the reference interpreter
(``NumpyProgram`` over the same lowered schedule). The first call also hands a worker process
the program's generated module sources and a description of its arguments' types
(:func:`describe`); the worker imports the modules through ``jitgrad.backends.cache`` and
compiles the program for those types, which fills the disk cache. Meanwhile, from the second
call on, a thread of the user's process imports Numba and the program's modules, and once the
worker is done loads the machine code from the disk cache (:class:`CompiledTier`). The call after that
switches the function to the CPU program; the switch happens between calls, under a lock. When
the disk cache holds the program already, no worker is asked: the thread loads it.

While a worker compiles, reference-tier calls run BLAS on the cores the workers leave free.
Where the program compiles in the user's process (``wait=True``), or on machines with more than
two cores, a worker also compiles the program's kernels from the last call backwards
(``compile_kernels_ahead``): the program's compile finds them in the disk cache.

Workers: at most two fresh Python processes (``JITGRAD_COMPILE_WORKERS``), the first started
when a tiered function not in the disk cache is compiled (it imports Numba while the first call
runs), started with ``subprocess`` (never forked: Numba/LLVM state; not multiprocessing's spawn,
which would run the user's unguarded ``__main__`` script again), fed pickled jobs through their
stdin by one daemon thread each. They run at a lower priority (``WORKER_NICENESS``), ignore
SIGINT (Ctrl-C belongs to the user's process), exit at EOF or when their parent is gone, and are
terminated and reaped at interpreter exit.
"""
from __future__ import annotations

import atexit
import contextlib
import os
import signal
import threading
import time
import warnings
from concurrent.futures import Future

import numpy as np


class TieredWarning(RuntimeWarning):
    """The compiled tier could not be built in the background; the reference tier keeps running."""


def enabled(wait) -> bool:
    """Whether a compile with this ``wait`` runs tiered: ``wait=None`` (the default) asks
    ``JITGRAD_TIERED``, which is on unless set to 0."""
    if wait is None:
        return os.environ.get("JITGRAD_TIERED", "1").lower() not in ("0", "false", "no", "off")
    return not wait


# Workers run at this lower priority, so that on a busy machine the user's process keeps its core:
# the main job (examples/train_mlp.py) trains on the reference tier while two workers compile, and
# on 2 cores its 690 steps took 2.1-2.4 s beside workers at the same priority, 1.0-1.4 s beside
# workers at 5.  Where a core is idle, a worker gets all of it whatever its niceness.
WORKER_NICENESS = 5


def max_workers() -> int:
    configured = os.environ.get("JITGRAD_COMPILE_WORKERS")
    if configured:
        return max(1, int(configured))
    return max(1, min(2, os.cpu_count() or 1))


# ---------------------------------------------------------------------------------------------
# The worker side
# ---------------------------------------------------------------------------------------------

def _serve() -> None:
    """A worker's main loop: read pickled jobs from stdin, write pickled results to its own
    copy of stdout (fd 1 itself goes to stderr, so nothing a compiler prints can corrupt the
    stream). Ends at EOF on stdin, or when its parent is gone."""
    import pickle
    import sys
    import traceback
    signal.signal(signal.SIGINT, signal.SIG_IGN)     # Ctrl-C is for the user's process
    with contextlib.suppress(AttributeError, OSError):     # os.nice: POSIX only
        os.nice(WORKER_NICENESS)
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    parent = os.getppid()

    def orphaned():                                  # never outlive the parent, even mid-compile
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)
    threading.Thread(target=orphaned, daemon=True, name="jitgrad-parent-watch").start()
    import numba  # noqa: F401  (imported while the parent builds its graph: off the first job's path)
    from .backends import cache  # noqa: F401
    jobs = sys.stdin.buffer
    while True:
        try:
            function, args = pickle.load(jobs)
        except EOFError:
            return
        try:
            reply = (True, function(*args))
        except Exception as error:
            text = traceback.format_exc()
            try:
                pickle.dumps(error)
            except Exception:
                error = RuntimeError(f"{type(error).__name__}: {error}")
            reply = (False, (error, text))
        pickle.dump(reply, replies)
        replies.flush()


def _compile_job(cache_dir: str, sources: list, arguments: tuple) -> dict:
    """In a worker: import the generated modules (kernels first, the program last) and compile
    the program for the Numba types of ``arguments`` (see :func:`describe`), which writes its
    machine code into the disk cache. Returns the seconds taken and why the main process could
    not load it from the cache (if so)."""
    os.environ["JITGRAD_CACHE_DIR"] = cache_dir
    from .backends import cache
    start = time.perf_counter()
    modules = [cache.load_module(source) for source in sources]
    program = modules[-1].program
    program.compile(numba_signature(arguments))
    return {"seconds": time.perf_counter() - start, "problem": _not_cached(cache, sources[-1], program)}


def _kernels_job(cache_dir: str, kernel_calls: list, arguments: tuple) -> dict:
    """In a second worker, beside the one compiling the program: compile the program's kernels
    (``CpuProgram.kernel_calls``, typed for the program's ``arguments``), from its last call
    backwards, into the disk cache, where the program's compile finds them.  Stops at the first
    kernel already there: the two have met."""
    os.environ["JITGRAD_CACHE_DIR"] = cache_dir
    from .backends import cache
    from .backends.numba_cpu import kernel_signatures
    start, compiled = time.perf_counter(), 0
    for source, signature in kernel_signatures(kernel_calls, numba_signature(arguments))[::-1]:
        kernel = cache.load_module(source).kernel
        if _in_index(kernel, signature):
            break
        kernel.compile(signature)
        compiled += 1
    return {"seconds": time.perf_counter() - start, "kernels": compiled}


def _in_index(dispatcher, signature) -> bool:
    """Whether the disk cache holds ``dispatcher`` compiled for ``signature`` (best effort:
    Numba's private structures)."""
    try:
        store = dispatcher._cache
        return store._index_key(signature, dispatcher.targetctx.codegen()) in store._cache_file._load_index()
    except Exception:
        return False


def _not_cached(cache, source: str, program) -> str | None:
    """Why the program compiled for its signature is not in the disk cache, or None if it is."""
    if cache.module_name(source) in cache._volatile:
        return "the cache directory is unusable (the worker compiled into a temporary directory)"
    store = getattr(program, "_cache", None)
    if store is None or not getattr(store, "_enabled", True):
        return "the compiled program could not be saved to the disk cache (see the CacheWarning)"
    try:
        index = store._cache_file._load_index()
        codegen = program.targetctx.codegen()
        if not any(store._index_key(sig, codegen) in index for sig in program.overloads):
            return "the compiled program is missing from the disk cache (disk full or unwritable?)"
    except Exception as error:     # the check itself is best effort: numba's private structures
        return f"the disk cache could not be read back ({type(error).__name__}: {error})"
    return None


# ---------------------------------------------------------------------------------------------
# The pool: plain subprocesses (multiprocessing's spawn and forkserver would import the user's
# __main__ script again in the worker; fork would copy Numba's and LLVM's state)
# ---------------------------------------------------------------------------------------------

class WorkerLost(RuntimeError):
    """A compile worker process ended before it answered (killed, or out of memory)."""


class _Worker:
    """One worker process and the daemon thread that feeds it jobs from the pool's queue."""

    def __init__(self, pool: _Pool):
        import pathlib
        import subprocess
        import sys
        env = dict(os.environ)
        root = str(pathlib.Path(__file__).resolve().parent.parent)     # where jitgrad is imported from
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
        self.process = subprocess.Popen([sys.executable, "-c", "from jitgrad.tiered import _serve; _serve()"],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        self.pool = pool
        self.thread = threading.Thread(target=self._feed, daemon=True, name="jitgrad-compile-feeder")
        self.thread.start()

    def _feed(self) -> None:
        import pickle
        while True:
            item = self.pool.jobs.get()
            if item is None:
                return
            future, function, args = item
            if future.cancelled():
                continue
            try:
                if self.process.poll() is not None:
                    raise BrokenPipeError("the worker is gone")
                pickle.dump((function, args), self.process.stdin)
                self.process.stdin.flush()
            except (OSError, ValueError):      # it died idle: the job never ran, another worker runs it
                self.pool.jobs.put(item)
                self.pool.retire(self, replace=True)
                return
            self.pool.running(+1)
            try:
                ok, value = pickle.load(self.process.stdout)
            except (OSError, EOFError, pickle.UnpicklingError, ValueError) as error:
                self.pool.running(-1)
                code = self.process.poll()
                future.set_exception(WorkerLost(f"compile worker {self.process.pid} ended "
                                                f"(exit status {code}; {type(error).__name__})"))
                self.pool.retire(self)
                return
            self.pool.running(-1)
            if ok:
                future.set_result(value)
            else:
                error, text = value
                error.add_note(f"raised in compile worker {self.process.pid}:\n{text}")
                future.set_exception(error)

    def stop(self) -> None:
        """End the process, reap it (no zombie) and close our ends of its pipes."""
        try:
            self.process.terminate()
        except OSError:
            pass
        try:
            self.process.wait(timeout=5)
        except Exception:
            self.process.kill()
            self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout):
            try:
                pipe.close()
            except (OSError, ValueError):      # unsent bytes to a process that is gone
                pass


class _Pool:
    def __init__(self, size: int):
        import queue
        self.size = size
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.workers: list[_Worker] = []
        self.lock = threading.Lock()
        self.busy = 0                  # jobs a worker is compiling now

    def running(self, change: int) -> None:
        with self.lock:
            self.busy += change

    def start_worker(self, jobs: int = 1) -> None:
        """One more worker if ``jobs`` more than the running and queued ones would find none idle
        and the pool has room: it starts importing Numba now."""
        with self.lock:
            self.workers = [w for w in self.workers if w.process.poll() is None or w.thread.is_alive()]
            wanted = self.busy + self.jobs.qsize() + jobs
            if len(self.workers) < min(wanted, self.size):
                self.workers.append(_Worker(self))

    def submit(self, function, *args) -> Future:
        future: Future = Future()
        self.start_worker()
        self.jobs.put((future, function, args))
        return future

    def retire(self, worker: _Worker, replace: bool = False) -> None:
        with self.lock:
            if worker in self.workers:
                self.workers.remove(worker)
            if replace and not _exiting:
                self.workers.append(_Worker(self))
        worker.stop()                  # reaped: no zombie

    def shutdown(self) -> None:
        with self.lock:
            workers, self.workers = self.workers, []
        for worker in workers:
            worker.stop()


_pool: _Pool | None = None
_pool_lock = threading.Lock()
_exiting = False


def _shutdown() -> None:
    """At interpreter exit: end the workers now (an unfinished compile is only lost time)."""
    global _exiting, _pool
    _exiting = True
    if _loading_lock.acquire(timeout=60):      # a compiled tier's loading step finishes first
        _loading_lock.release()
    with _pool_lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.shutdown()


atexit.register(_shutdown)


def _executor() -> _Pool:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = _Pool(max_workers())
        return _pool


def prepare(program) -> bool:
    """Start a worker ahead of the first job, unless the disk cache holds ``program`` (for some
    signature: its first call will likely load it, and a worker starting up beside it would
    only slow it down): its Python and Numba start-up then overlap the first call.  Returns
    whether the disk cache holds it (a glob: no Numba)."""
    import glob
    from .backends.cache import _configured_dir, module_name
    # Numba keeps its index beside the module, or under NUMBA_CACHE_DIR in a folder per directory
    places = [glob.escape(str(_configured_dir() / "__pycache__"))]
    if os.environ.get("NUMBA_CACHE_DIR"):
        places.append(glob.escape(os.environ["NUMBA_CACHE_DIR"]) + "/*")
    name = module_name(program.module_sources[-1]) + ".program-*.nbi"
    if any(next(glob.iglob(f"{place}/{name}"), None) is not None for place in places):
        return True
    _executor().start_worker()
    return False


_blas = (-1, [])   # (len(sys.modules) when looked up, threadpoolctl's handles on the BLAS libraries)


def _blas_libraries() -> list:
    """The BLAS libraries loaded, looked up again only after more modules were imported (one
    may have loaded another BLAS, as SciPy does): a lookup costs milliseconds."""
    global _blas
    import sys
    if _blas[0] != len(sys.modules):
        try:
            from threadpoolctl import ThreadpoolController
            libraries = ThreadpoolController().select(user_api="blas").lib_controllers
        except Exception:             # threadpoolctl missing or failing: leave BLAS as it is
            libraries = []
        _blas = (len(sys.modules), libraries)
    return _blas[1]


@contextlib.contextmanager
def cores_left_by_workers():
    """Run a reference-tier call with BLAS on the cores the busy compile workers leave free.

    On two cores a two-thread matrix product fights the compiling worker and slows both: the
    W3 step's compiled tier came 1.3-1.6 s later, with half as many steps done meanwhile
    (``benchmarks/report.py --only w6``).  BLAS's own setting is restored after the call, so the
    user's code outside it is unaffected."""
    pool = _pool
    busy = pool.busy if pool is not None else 0
    if not busy:
        yield
        return
    threads = max(1, (os.cpu_count() or 1) - busy)
    lowered = []
    for library in _blas_libraries():
        n = library.num_threads
        if n > threads:
            library.set_num_threads(threads)
            lowered.append((library, n))
    try:
        yield
    finally:
        for library, n in lowered:
            library.set_num_threads(n)


def worker_pids() -> list[int]:
    """The process ids of the compile workers now running (for tests and diagnostics)."""
    pool = _pool
    return [w.process.pid for w in list(pool.workers) if w.process.poll() is None] if pool else []


def describe(values) -> tuple:
    """What Numba's type of each of ``values`` depends on, found without Numba, and small to send
    to a worker: an array's dtype, rank, layout and flags (not its data), anything else itself."""
    out = []
    for value in values:
        if isinstance(value, np.ndarray):
            flags = value.flags
            layout = "C" if flags.c_contiguous else "F" if flags.f_contiguous else "A"
            out.append(("array", value.dtype, value.ndim, layout, not flags.writeable))
        else:
            out.append(("value", value))
    return tuple(out)


def numba_signature(arguments: tuple) -> tuple:
    """The Numba types of described ``arguments`` (:func:`describe`): ``numba.typeof`` of the
    values themselves."""
    import numba
    from numba.np.numpy_support import from_dtype
    return tuple(numba.types.Array(from_dtype(a[1]), a[2], a[3], readonly=a[4])
                 if a[0] == "array" else numba.typeof(a[1]) for a in arguments)


# ---------------------------------------------------------------------------------------------
# One function's compiled tier
# ---------------------------------------------------------------------------------------------

class CompiledTier:
    """The CPU program of one compiled function (source generated, nothing compiled yet), the
    worker's job that compiles it, and the thread that makes it runnable in this process.

    Nothing on the way to the first result imports Numba (0.25 s): the first call describes its
    arguments' types (:func:`describe`) and hands them with the program's source to a worker,
    unless the disk cache holds the program, and runs on the reference tier.  From the next call
    on, a thread of this process imports Numba and loads the program's modules while the worker
    compiles, then loads the machine code from the disk cache; the switch, between two calls,
    only takes the loaded program.  A function called once never imports Numba."""

    def __init__(self, program):
        self.program = program
        self.cached = prepare(program)        # in the disk cache, for some argument types
        self.future: Future | None = None     # done when the program is loaded here (or cannot be)
        self.job: Future | None = None        # the worker's compile
        self.arguments: tuple | None = None   # the first call's, described
        self.signature: tuple | None = None   # their Numba types, once Numba is imported
        self.submitted_at = None
        self._loader: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self, args: list, sizes: dict) -> None:
        """At the first call: hand the program's source and its arguments' types to a worker,
        unless the disk cache may hold it already (then loading it here is faster than any
        worker)."""
        self.arguments = describe(self.program.arguments(args, sizes))
        self.submitted_at = time.perf_counter()
        self.future = Future()
        if not self.cached:
            self._submit()

    def _submit(self) -> None:
        from .backends.cache import _configured_dir
        self.job = _executor().submit(_compile_job, str(_configured_dir()),
                                      list(self.program.module_sources), self.arguments)
        if (os.cpu_count() or 1) > 2 and _kernels_worth_a_worker(self.program):
            _submit_kernels(self.program, self.arguments)    # a core for each worker

    def load_in_background(self) -> None:
        """From the second call on (or at ``wait``): start loading the program into this
        process, once (every reference-tier call asks: the lock only until it has started)."""
        if self._loader is not None:
            return
        with self._lock:
            if self._loader is None and self.future is not None:
                self._loader = threading.Thread(target=self._load, daemon=True,
                                                name="jitgrad-compiled-tier")
                self._loader.start()

    def _load(self) -> None:
        report = {"seconds": 0.0, "problem": None}
        try:
            with _loading_step():
                entry = self.program._entry                  # imports Numba, loads the modules
                self.signature = numba_signature(self.arguments)
                if self.job is None and not _in_index(entry, self.signature):
                    self._submit()                           # cached, but for other argument types
            if self.job is not None:
                report = self.job.result()
            if not report["problem"]:
                with _loading_step():
                    entry.compile(self.signature)            # loaded from the disk cache
        except _Exiting:
            return
        except BaseException as error:
            self.future.set_exception(error)
            return
        self.future.set_result(report)

    def done(self) -> bool:
        return self.future is not None and self.future.done()

    def outcome(self, timeout=None) -> tuple[str, BaseException | None]:
        """("ready", None), ("failed", error: the compile itself failed) or ("lost", error: the
        worker died or the cache could not carry the code over). Waits up to ``timeout``
        seconds (TimeoutError)."""
        self.load_in_background()
        try:
            report = self.future.result(timeout)
        except TimeoutError:
            raise
        except WorkerLost as error:
            return "lost", error
        except Exception as error:
            return "failed", error
        if report["problem"]:
            return "lost", OSError(report["problem"])
        return "ready", None

    def compile_here(self) -> None:
        """Compile the program in this process for the first call's argument types (what
        ``wait`` does when a worker could not deliver it)."""
        if self.arguments is not None:
            self.program._entry.compile(self.signature or numba_signature(self.arguments))


class _Exiting(Exception):
    """The interpreter is exiting: a compiled tier's loading stops."""


_loading_lock = threading.Lock()


@contextlib.contextmanager
def _loading_step():
    """One step of loading a compiled tier in a thread of this process: at exit the interpreter
    waits for the step under way (Numba's and LLVM's work), and no other starts."""
    with _loading_lock:
        if _exiting:
            raise _Exiting
        yield


MIN_KERNELS_AHEAD = 4      # fewer kernels compile in less time than a worker takes to start


def _kernels_worth_a_worker(program) -> bool:
    typed = {(source, tuple(kinds)) for source, kinds in program.kernel_calls if None not in kinds}
    return len(typed) >= MIN_KERNELS_AHEAD


def _submit_kernels(program, arguments: tuple) -> None:
    from .backends.cache import _configured_dir
    _executor().submit(_kernels_job, str(_configured_dir()), program.kernel_calls, arguments)


def compile_kernels_ahead(program, arguments: tuple) -> bool:
    """While the program compiles in this process, have a worker compile its kernels from the
    last call backwards into the disk cache, where the program's compile finds them as it
    reaches them: the two meet in the middle.  Not for small programs, nor when the disk cache
    holds the program already.  ``arguments`` are the program's, described (:func:`describe`).
    Returns whether a worker was asked.  (A tiered compile on more than two cores does the same
    beside its worker.)

    Numba compiles a program's kernels one after another as it types the program; a W3 SGD step
    (20 kernels) compiled in 2.5 s of its own plus 1.8 s of kernels (the kernels alone)."""
    if (os.cpu_count() or 1) < 2:             # one core: a second process only competes
        return False
    try:        # only a head start: whatever goes wrong here, the program compiles as it would
        if not _kernels_worth_a_worker(program) or _in_index(program._entry, numba_signature(arguments)):
            return False
    except Exception:
        return False
    _submit_kernels(program, arguments)
    return True


def warn(message: str) -> None:
    if not _exiting:
        warnings.warn(message, TieredWarning, stacklevel=4)
