"""Tiered execution: the reference tier runs at once, the compiled tier is built by workers.

``jg.compile(..., target="cpu")`` (unless ``wait=True``) generates the CPU program's source
(no Numba compilation yet) and runs the first calls on the reference interpreter
(``NumpyProgram`` over the same lowered schedule). The first call also hands a worker process
the program's generated module sources and the Numba signature of its arguments; the worker
imports the modules through ``jitgrad.backends.cache`` and compiles the program for that
signature, which fills the disk cache. The call after the worker finishes switches the
function to the CPU program, whose first call then loads the machine code from the disk cache
instead of compiling it. The switch happens between calls, under a lock.

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


def _compile_job(cache_dir: str, sources: list, signature: tuple) -> dict:
    """In a worker: import the generated modules (kernels first, the program last) and compile
    the program for ``signature``, which writes its machine code into the disk cache. Returns
    the seconds taken and why the main process could not load it from the cache (if so)."""
    os.environ["JITGRAD_CACHE_DIR"] = cache_dir
    from .backends import cache
    start = time.perf_counter()
    modules = [cache.load_module(source) for source in sources]
    program = modules[-1].program
    program.compile(signature)
    return {"seconds": time.perf_counter() - start, "problem": _not_cached(cache, sources[-1], program)}


def _kernels_job(cache_dir: str, calls: list) -> dict:
    """In a second worker, beside the one compiling the program: compile the program's kernels
    for their signatures, from its last call backwards, into the disk cache, where the program's
    compile finds them.  Stops at the first kernel already there: the two have met."""
    os.environ["JITGRAD_CACHE_DIR"] = cache_dir
    from .backends import cache
    start, compiled = time.perf_counter(), 0
    for source, signature in calls:
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
        try:
            self.process.terminate()
        except OSError:
            pass
        try:
            self.process.wait(timeout=5)
        except Exception:
            self.process.kill()
            self.process.wait()


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


def prepare(program) -> None:
    """Start a worker ahead of the first job, unless the disk cache holds ``program`` (for some
    signature: its first call will likely load it, and a worker starting up beside it would
    only slow it down): its Python and Numba start-up then overlap the first call."""
    import glob
    from .backends.cache import _configured_dir, module_name
    # Numba keeps its index beside the module, or under NUMBA_CACHE_DIR in a folder per directory
    places = [glob.escape(str(_configured_dir() / "__pycache__"))]
    if os.environ.get("NUMBA_CACHE_DIR"):
        places.append(glob.escape(os.environ["NUMBA_CACHE_DIR"]) + "/*")
    name = module_name(program.module_sources[-1]) + ".program-*.nbi"
    if any(next(glob.iglob(f"{place}/{name}"), None) is not None for place in places):
        return
    _executor().start_worker()


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


def signature_of(program, args: list, sizes: dict) -> tuple:
    """The Numba types of what a call on checked ``args`` passes to the CPU program, exactly
    (constants are read-only arrays: their types say so)."""
    import numba
    return tuple(numba.typeof(value) for value in program.arguments(args, sizes))


# ---------------------------------------------------------------------------------------------
# One function's compiled tier
# ---------------------------------------------------------------------------------------------

class CompiledTier:
    """The CPU program of one compiled function (source generated, nothing compiled yet) and
    the worker's job that compiles it."""

    def __init__(self, program):
        self.program = program
        self.future: Future | None = None
        self.signature: tuple | None = None
        self.submitted_at = None

    def start(self, args: list, sizes: dict) -> None:
        """Hand the program's source and its arguments' types to a worker; or, when the disk
        cache holds the program already, nothing: loading it here is faster than any worker."""
        from .backends.cache import _configured_dir
        self.signature = signature_of(self.program, args, sizes)
        self.submitted_at = time.perf_counter()
        if self._in_disk_cache():
            self.future = Future()
            self.future.set_result({"seconds": 0.0, "problem": None})
            return
        self.future = _executor().submit(_compile_job, str(_configured_dir()),
                                         list(self.program.module_sources), self.signature)
        if (os.cpu_count() or 1) > 2:          # a core for each worker beside the user's process
            compile_kernels_ahead(self.program, self.signature)

    def _in_disk_cache(self) -> bool:
        from .backends import cache
        return _in_index(cache.load_module(self.program.module_sources[-1]).program, self.signature)

    def done(self) -> bool:
        return self.future is not None and self.future.done()

    def outcome(self, timeout=None) -> tuple[str, BaseException | None]:
        """("ready", None), ("failed", error: the compile itself failed) or ("lost", error: the
        worker died or the cache could not carry the code over)."""
        try:
            report = self.future.result(timeout)
        except WorkerLost as error:
            return "lost", error
        except Exception as error:
            return "failed", error
        if report["problem"]:
            return "lost", OSError(report["problem"])
        return "ready", None

    def compile_here(self) -> None:
        """Compile the program in this process for the job's signature (what ``wait`` does
        when a worker could not deliver it)."""
        from .backends.cache import load_module
        if self.signature is not None:
            load_module(self.program.module_sources[-1]).program.compile(self.signature)


MIN_KERNELS_AHEAD = 4      # fewer kernels compile in less time than a worker takes to start


def compile_kernels_ahead(program, signature: tuple) -> bool:
    """While the program compiles elsewhere (in this process, or a worker), have a worker compile
    its kernels from the last call backwards into the disk cache, where the program's compile
    finds them as it reaches them: the two meet in the middle.  Not for small programs, nor
    when the disk cache holds the program already.  Returns whether a worker was asked.

    Numba compiles a program's kernels one after another as it types the program; a W3 SGD step
    (20 kernels) compiled in 2.5 s of its own plus 1.8 s of kernels (the kernels alone)."""
    from .backends import cache
    from .backends.cache import _configured_dir
    if (os.cpu_count() or 1) < 2:             # one core: a second process only competes
        return False
    try:        # only a head start: whatever goes wrong here, the program compiles as it would
        calls = program.kernel_signatures(signature)
        if len(calls) < MIN_KERNELS_AHEAD or _in_index(cache.load_module(program.module_sources[-1]).program,
                                                       signature):
            return False
    except Exception:
        return False
    _executor().submit(_kernels_job, str(_configured_dir()), calls[::-1])
    return True


def warn(message: str) -> None:
    if not _exiting:
        warnings.warn(message, TieredWarning, stacklevel=4)
