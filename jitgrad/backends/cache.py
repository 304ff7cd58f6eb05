"""Content-hashed on-disk cache of generated modules, and a Numba disk cache that cannot break.

Generated source is written to ``<cache_dir>/jg_<hash>.py`` and imported as a real module, so
``@jit()`` functions in it get Numba's ``cache=True`` and a new process that loads the same source
pays no compile time. Every failure of the cache (an unwritable directory or HOME, a truncated
generated file, corrupted or truncated ``.nbi``/``.nbc`` files, a failed save) costs at most a
recompile and one :class:`CacheWarning` per cause per process; results stay correct.

The cache is bounded (:func:`max_bytes`, ``JITGRAD_CACHE_MAX_MB``): after a write takes it over the
cap, the least recently used entries are evicted, under a lock file, down to 80 % of the cap.

>>> import numpy as np
>>> from jitgrad.backends import cache
>>> module = cache.load_module("from jitgrad.backends.numba_cache import jit\\n"
...                            "@jit()\\ndef twice(x):\\n    return 2.0 * x\\n")
>>> cache.call(module.twice, 1.5)
3.0
"""
from __future__ import annotations

import atexit
import contextlib
import functools
import hashlib
import importlib.machinery
import importlib.util
import linecache
import os
import pathlib
import pickle
import re
import shutil
import sys
import tempfile
import threading
import time
import types
import uuid
import warnings

try:
    import fcntl
except ImportError:  # not POSIX: no locking, and so no eviction (see `_flocked`)
    fcntl = None

import numpy as np


class CacheWarning(RuntimeWarning):
    """The on-disk cache could not be used as intended; jitgrad recompiled and carries on."""


# The format of the files written here; part of every module name, so formats never meet.
_MAGIC = b"jitgrad2"
_modules: dict[str, types.ModuleType] = {}  # by module name: same source, same module object
_volatile: set[str] = set()  # modules whose file does not outlive the process: never cache=True
_warned: set[str] = set()  # causes already warned about in this process
_tempdir: pathlib.Path | None = None
_lock = threading.RLock()


def _warn_once(cause: str, message: str) -> None:
    if cause not in _warned:
        _warned.add(cause)
        warnings.warn(message, CacheWarning, stacklevel=2)


# ---------------------------------------------------------------------------------------------
# Where generated modules live
# ---------------------------------------------------------------------------------------------

def _configured_dir() -> pathlib.Path:
    """JITGRAD_CACHE_DIR or ~/.cache/jitgrad; read on every call so the environment can change."""
    configured = os.environ.get("JITGRAD_CACHE_DIR")
    if configured:
        return pathlib.Path(configured).expanduser()
    return pathlib.Path.home() / ".cache" / "jitgrad"


def _unusable(path: pathlib.Path) -> str | None:
    """Why `path` cannot hold the cache (None if it can): created if missing, probed by a write."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()  # os.access ignores ACLs and lies for root
    except OSError as error:
        return f"{type(error).__name__}: {error}"
    return None


def cache_dir() -> pathlib.Path | None:
    """JITGRAD_CACHE_DIR if set, else ~/.cache/jitgrad; None when it cannot be created or written.

    >>> cache_dir() is None or cache_dir().is_dir()
    True
    """
    try:
        path = _configured_dir()
    except RuntimeError:  # no HOME and no passwd entry
        return None
    return None if _unusable(path) else path


def _fallback_dir() -> pathlib.Path | None:
    """A per-process temporary directory, removed at exit; None if none can be made."""
    global _tempdir
    if _tempdir is None:
        try:
            _tempdir = pathlib.Path(tempfile.mkdtemp(prefix="jitgrad-"))
        except OSError as error:
            _warn_once("tempdir", f"no temporary directory ({error}); generated code runs "
                                  "from memory and is recompiled in every process")
            return None
        atexit.register(shutil.rmtree, _tempdir, ignore_errors=True)
    return _tempdir


# ---------------------------------------------------------------------------------------------
# Generated source files
# ---------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def _version_key() -> str:
    """What generated code depends on besides its own text and its helpers: the versions."""
    from .._version import __version__
    return "\0".join((_MAGIC.decode(), __version__, _numba_version(), np.__version__, sys.version))


def _numba_version() -> str:
    """Numba's version, read from its installed metadata: importing Numba to ask takes 0.25 s."""
    import importlib.metadata
    try:
        return importlib.metadata.version("numba")
    except importlib.metadata.PackageNotFoundError:     # not installed as a distribution
        import numba
        return numba.__version__


# the helper modules a generated module imports: ``from jitgrad.backends.X import ...`` and
# ``from jitgrad.backends import X``
_HELPER_IMPORT = re.compile(r"^from jitgrad\.backends(?:\.(\w+) import| import (\w+))", re.MULTILINE)


@functools.cache
def _helper_digest(module: str) -> str:
    """A hash of a helper module's source, found through the import system (not run)."""
    name = f"jitgrad.backends.{module}"
    return hashlib.sha256(importlib.util.find_spec(name).loader.get_source(name).encode()).hexdigest()


def _helpers_key(source: str) -> str:
    """The source of the helpers `source` imports (Numba inlines them into the cached machine
    code, and does not notice when they change); the cache's own modules are no helpers."""
    modules = {a or b for a, b in _HELPER_IMPORT.findall(source)} - {"cache", "numba_cache"}
    return "".join(_helper_digest(m) for m in sorted(modules))


@functools.lru_cache(maxsize=4096)
def module_name(source: str) -> str:
    """The module (and file stem) name that :func:`load_module` gives `source`.

    >>> module_name("x = 1") == module_name("x = 1") != module_name("x = 2")
    True
    """
    digest = hashlib.sha256(f"{source}\0{_version_key()}\0{_helpers_key(source)}".encode()).hexdigest()
    return f"jg_{digest[:20]}"


def _write_atomically(path: pathlib.Path, data: bytes) -> None:
    """Readers see either no file or the whole file, never a partial one (same-directory rename).

    No fsync: a file left truncated or zero-filled by a crash is caught by the content check in
    `_materialise` on its next use.
    """
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with open(temporary, "xb") as file:
            file.write(data)
        os.replace(temporary, path)
        _note_written(len(data))
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _discard_corrupted(path: pathlib.Path) -> None:
    """Remove a generated file whose content is not its source, with whatever was derived from it.

    Why deleting and then writing under the same name is safe:
    - the name is a hash of the source, so every correct writer writes exactly the same bytes and
      the fresh file is put in place by an atomic rename, never by rewriting the old inode;
    - a reader never runs the file as found: it compares it with the source string it holds and
      compiles that string (`_VerifiedSourceLoader`), so no `.pyc` is ever read and the mtime/size
      check of Python's bytecode cache cannot make it run stale code;
    - Numba keys its index by a hash of the file's content (older versions: mtime and size), so
      entries compiled from the corrupted text never match the fresh file; they are deleted too,
      together with any `.pyc`, only so that nothing derived from the bad text is left around.
    """
    for derived in path.parent.glob(f"__pycache__/{path.stem}.*"):
        with contextlib.suppress(OSError):
            derived.unlink()
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _materialise(directory: pathlib.Path, name: str, source: str) -> pathlib.Path:
    """Make `<directory>/<name>.py` hold exactly `source`; raise OSError if that is impossible."""
    path = directory / f"{name}.py"
    data = source.encode("utf-8")
    try:
        if path.read_bytes() == data:
            with contextlib.suppress(OSError):
                os.utime(path)  # "used": eviction is least recently used first, by mtime
            return path
        _warn_once("source", f"generated file {path} did not match its source (truncated or "
                             "corrupted); replaced it")
        _discard_corrupted(path)
    except FileNotFoundError:
        pass
    _write_atomically(path, data)
    return path


class _VerifiedSourceLoader(importlib.machinery.SourceFileLoader):
    """Loads a generated file by compiling the source text it was verified to contain.

    Never reads or writes `.pyc` files: their validity check (mtime in seconds and size) is what
    made a same-size rewrite within a second run stale code. Compiling the text costs a few
    milliseconds for a few hundred lines, small beside loading the Numba code it precedes.
    """

    def __init__(self, name: str, path: str, source: str):
        super().__init__(name, path)
        self._source = source

    def get_code(self, fullname: str) -> types.CodeType:
        return compile(self._source, self.path, "exec", dont_inherit=True)


def _exec_module(name: str, source: str, path: pathlib.Path | None) -> types.ModuleType:
    """Import `source` as module `name` from `path` (or from memory when None)."""
    if path is None:
        filename = f"<jitgrad {name}>"
        module = types.ModuleType(name)
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    else:
        loader = _VerifiedSourceLoader(name, str(path), source)
        module = importlib.util.module_from_spec(
            importlib.util.spec_from_file_location(name, path, loader=loader))
    # Registered before it runs, so that modules importing it by name (`from jg_... import
    # kernel_0`) find it without the cache directory being on sys.path.
    sys.modules[name] = module
    try:
        if path is None:
            exec(compile(source, filename, "exec", dont_inherit=True), module.__dict__)
        else:
            module.__spec__.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def _locate(name: str, source: str) -> tuple[pathlib.Path | None, bool]:
    """The file holding `source` and whether it persists; (None, False) means run from memory."""
    try:
        directory = _configured_dir()
        reason = _unusable(directory)
    except RuntimeError as error:
        directory, reason = None, str(error)
    if reason is None:
        try:
            return _materialise(directory, name, source), True
        except OSError as error:
            reason = f"{type(error).__name__}: {error}"
    _warn_once("directory", f"jitgrad cache directory {directory} is unusable ({reason}); "
                            "compiling into a temporary directory instead (set JITGRAD_CACHE_DIR "
                            "to a writable directory to keep compiled code across processes)")
    fallback = _fallback_dir()
    if fallback is not None:
        try:
            return _materialise(fallback, name, source), False
        except OSError as error:
            _warn_once("tempdir", f"cannot write to {fallback} ({error}); generated code runs "
                                  "from memory and is recompiled in every process")
    return None, False


def load_module(source: str) -> types.ModuleType:
    """Import generated `source` as the real module :func:`module_name` names, and return it.

    The same source gives the same module object for the life of the process. A program's
    source may import the kernels of modules loaded before it by name.

    >>> m = load_module("value = 42\\n")
    >>> m.value, m is load_module("value = 42\\n"), m.__name__ == module_name("value = 42\\n")
    (42, True, True)
    """
    name = module_name(source)
    module = _modules.get(name)
    if module is not None:
        return module
    with _lock:
        if name not in _modules:
            with _loading():
                path, persistent = _locate(name, source)
                if not persistent:
                    _volatile.add(name)
                _modules[name] = _exec_module(name, source, path)
        module = _modules[name]
    _settle(wait_s=10.0)
    return module


# ---------------------------------------------------------------------------------------------
# Numba's disk cache, checksummed and fail-safe: the file format here; Numba's classes and the
# `jit` decorator of generated source in `numba_cache` (imported by the first generated module)
# ---------------------------------------------------------------------------------------------

class CorruptCacheEntry(Exception):
    """A Numba cache file whose checksum does not match its content."""


def _read_verified(path: str) -> bytes:
    with open(path, "rb") as file:
        blob = file.read()
    body = blob[len(_MAGIC) + 32:]
    if blob[:len(_MAGIC)] != _MAGIC or blob[len(_MAGIC):len(_MAGIC) + 32] != _digest(body):
        raise CorruptCacheEntry(f"checksum mismatch in {path}")
    return body


def _digest(body: bytes) -> bytes:
    return hashlib.sha256(body).digest()


def _drop(cache) -> None:
    try:
        cache.flush()  # an empty index: the stale data files are overwritten by the next save
    except Exception:
        cache.disable()


# ---------------------------------------------------------------------------------------------
# Calling compiled entry points
# ---------------------------------------------------------------------------------------------

# What a damaged cache entry raises out of a dispatcher whose cache is not a `_GuardedCache`
# (functions decorated by `numba.njit(cache=True)` directly); `jit` catches every error earlier.
# TypeError and RuntimeError, also seen, are not caught here: a user's call raises them too.
CACHE_ERRORS = (pickle.UnpicklingError, EOFError, UnicodeDecodeError)


def _involved(dispatcher) -> list:
    """`dispatcher` and every dispatcher reachable through the module globals of their functions."""
    from numba.core.dispatcher import Dispatcher
    found, todo = {}, [dispatcher]
    while todo:
        current = todo.pop()
        if isinstance(current, Dispatcher) and id(current) not in found:
            found[id(current)] = current
            todo.extend(current.py_func.__globals__.values())
    return list(found.values())


def call(dispatcher, *args):
    """Call a compiled entry point; a damaged disk-cache entry costs a warning and a recompile.

    The hot path is the call inside a ``try``. See the module's example.
    """
    try:
        return dispatcher(*args)
    except CACHE_ERRORS as error:
        _warn_once("entry", f"unreadable Numba cache entry while calling {dispatcher} "
                            f"({type(error).__name__}: {error}); dropped it and recompiling")
        for involved in _involved(dispatcher):
            _drop(involved._cache)
    return dispatcher(*args)


# ---------------------------------------------------------------------------------------------
# A bounded cache: a size cap, least-recently-used eviction, clearing
# ---------------------------------------------------------------------------------------------
#
# An entry is one generated module and everything derived from it, all named after it:
#   <dir>/jg_<hash>.py                          the source (its mtime: when it was last used)
#   <dir>/__pycache__/jg_<hash>.<fn>-<line>.pyXY.nbi / .<n>.nbc   Numba's index and code per function
#   <dir>/.jg_<hash>.py.<uid>.tmp, <dir>/__pycache__/jg_<hash>.*.tmp.<uid>   writes in flight
# (no .pyc: `_VerifiedSourceLoader` never writes one). An entry is used when it is loaded (the
# .py is touched) or written; its age is that of its newest file.
#
# Safety under concurrency. Loading a module (checking or writing its .py, then executing it,
# which is when Numba's locator stats and hashes the file) holds a shared flock on
# <dir>/.jitgrad.lock; eviction holds it exclusively, so no load sees a half-deleted entry. Numba
# reads .nbi/.nbc later, unlocked, at the first call of each signature: a file evicted meanwhile
# is a miss (Numba ignores a missing index or data file) and the function is recompiled; files a
# process saves after its .py was evicted are still valid (the stamp is a hash of the source) and
# are evicted with their entry's name like any other. Modules already imported stay usable.
#
# The size is not recounted after every write: the lock file's text is the size at the last
# count, to which every writer adds what it wrote (under the lock); only when that passes the cap
# is the directory scanned (~50 ms per 10,000 files) and the oldest entries deleted.

DEFAULT_MAX_MB = 1024.0
_LOCK_NAME = ".jitgrad.lock"
_ENTRY_FILE = re.compile(r"^\.?(jg_[0-9a-f]{20})\.")
_LOW_WATER = 0.8  # evict down to this fraction of the cap, so that the next writes do not evict
_IN_FLIGHT_S = 600.0  # a temporary file younger than this may still be renamed into place
_local = threading.local()  # .loading: how deep this thread is in `_loading`
_settling = threading.Lock()
_unaccounted = 0  # bytes this process wrote that the lock file does not count yet


def max_bytes() -> int | None:
    """The cache's size cap in bytes, from ``JITGRAD_CACHE_MAX_MB`` (default 1024 MB); None: none.

    Unset or empty means the default; ``0`` (or a negative number) means no cap; fractions are fine.

    >>> cap = max_bytes()  # with JITGRAD_CACHE_MAX_MB=0.5: 524288; with 0: None
    >>> cap is None or cap > 0
    True
    """
    text = os.environ.get("JITGRAD_CACHE_MAX_MB", "").strip()
    try:
        megabytes = float(text) if text else DEFAULT_MAX_MB
    except ValueError:
        _warn_once("max_mb", f"JITGRAD_CACHE_MAX_MB={text!r} is not a number; using {DEFAULT_MAX_MB:g}")
        megabytes = DEFAULT_MAX_MB
    return None if megabytes <= 0 else int(megabytes * 2**20)


def _note_written(nbytes: int) -> None:
    """Count a written file as the disk space it takes (whole 4 KiB blocks), as a scan does."""
    global _unaccounted
    _unaccounted += -(-nbytes // 4096) * 4096


def _acquire(fd: int, mode: int, wait_s: float) -> bool:
    """flock `fd` in `mode`, polling until `wait_s` has passed (a blocking flock could deadlock
    against another thread of this process that holds the shared lock and waits for Numba)."""
    deadline, pause = time.monotonic() + wait_s, 0.002
    while True:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(pause)
            pause = min(2 * pause, 0.05)


@contextlib.contextmanager
def _flocked(directory: pathlib.Path, exclusive: bool, wait_s: float):
    """Yield the lock file's descriptor while holding its flock, or None if that was not possible
    (no such directory, no fcntl, or still held by others after `wait_s`)."""
    if fcntl is None:
        yield None
        return
    try:
        fd = os.open(directory / _LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError:
        yield None
        return
    try:
        locked = _acquire(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH, wait_s)
        yield fd if locked else None
    finally:
        os.close(fd)  # releases the lock


@contextlib.contextmanager
def _loading():
    """Hold the shared lock of the configured cache directory (if any) while a module loads."""
    try:
        directory = _configured_dir()
        directory.mkdir(parents=True, exist_ok=True)
    except (RuntimeError, OSError):
        yield
        return
    _local.loading = getattr(_local, "loading", 0) + 1
    try:
        with _flocked(directory, exclusive=False, wait_s=30.0):
            yield
    finally:
        _local.loading -= 1


def _entries(directory: pathlib.Path) -> dict[str, list[tuple[str, int, float, bool]]]:
    """Entry name -> its files as (path, bytes on disk, mtime, write in flight)."""
    entries: dict[str, list[tuple[str, int, float, bool]]] = {}
    now = time.time()
    for folder in (directory, directory / "__pycache__"):
        try:
            scan = os.scandir(folder)
        except OSError:
            continue
        with scan:
            for item in scan:
                match = _ENTRY_FILE.match(item.name)
                try:
                    stat = item.stat(follow_symlinks=False) if match else None
                except OSError:  # deleted meanwhile
                    continue
                if stat is None:
                    continue
                temporary = item.name.endswith(".tmp") or ".tmp." in item.name
                size = max(stat.st_size, getattr(stat, "st_blocks", 0) * 512)
                entries.setdefault(match.group(1), []).append(
                    (item.path, size, stat.st_mtime, temporary and now - stat.st_mtime < _IN_FLIGHT_S))
    return entries


def _remove(files: list[tuple[str, int, float, bool]]) -> int:
    """Delete an entry's files (not writes in flight), Numba's first; the bytes left."""
    left = 0
    for path, size, _, in_flight in sorted(files, key=lambda f: f[0].endswith(".py")):
        try:
            if in_flight:
                raise OSError
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError:
            left += size
    return left


def _evict(directory: pathlib.Path, cap: int) -> int:
    """Count the cache; if it is over `cap`, delete least recently used entries down to
    `_LOW_WATER * cap`. Returns the size left. Call with the exclusive lock held."""
    entries = _entries(directory)
    sizes = {name: sum(f[1] for f in files) for name, files in entries.items()}
    total = sum(sizes.values())
    if total > cap:
        for name in sorted(entries, key=lambda n: max(f[2] for f in entries[n])):
            if total <= _LOW_WATER * cap:
                break
            total -= sizes[name] - _remove(entries[name])
    return total


def _read_count(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0))
    except ValueError:  # a new lock file, or a count cut short
        return None


def _write_count(fd: int, total: int) -> None:
    os.pwrite(fd, b"%020d\n" % total, 0)


def _settle(wait_s: float) -> None:
    """Add what this process wrote to the cache's count, and evict if that passes the cap.

    Skipped inside a load of this thread (it holds the shared lock; the load settles after it)
    and while another thread settles; bytes not yet counted wait for the next call or exit.
    """
    global _unaccounted
    if not _unaccounted or getattr(_local, "loading", 0) or not _settling.acquire(blocking=False):
        return
    try:
        cap = max_bytes()
        if cap is None:
            _unaccounted = 0
            return
        with _flocked(_configured_dir(), exclusive=True, wait_s=wait_s) as fd:
            if fd is None:
                return
            pending, _unaccounted = _unaccounted, 0
            count = _read_count(fd)
            total = None if count is None else count + pending
            if total is None or total > cap:
                total = _evict(_configured_dir(), cap)
            _write_count(fd, total)
    except (OSError, RuntimeError):  # RuntimeError: no HOME; an unusable cache is warned about elsewhere
        pass
    finally:
        _settling.release()


atexit.register(_settle, wait_s=5.0)


def cache_info(directory: pathlib.Path | None = None) -> dict:
    """The cache directory, its entries, its size in bytes (on disk) and its cap (None: none).

    >>> sorted(cache_info())
    ['bytes', 'directory', 'entries', 'max_bytes']
    """
    directory = _configured_dir() if directory is None else pathlib.Path(directory)
    entries = _entries(directory)
    return {"directory": str(directory), "entries": len(entries),
            "bytes": sum(f[1] for files in entries.values() for f in files), "max_bytes": max_bytes()}


def clear_cache(directory: pathlib.Path | None = None) -> tuple[int, int]:
    """Delete every entry of the disk cache; returns (entries, bytes) deleted.

    Safe while other processes use the cache: they recompile what they load next; modules they
    already imported keep working. Writes in flight are left alone.
    """
    directory = _configured_dir() if directory is None else pathlib.Path(directory)
    with _flocked(directory, exclusive=True, wait_s=30.0) as fd:
        if fd is None and fcntl is not None and (directory / _LOCK_NAME).exists():
            raise TimeoutError(f"the jitgrad cache {directory} stayed locked for 30 s")
        entries = _entries(directory)
        removed = sum(sum(f[1] for f in files) - _remove(files) for files in entries.values())
        if fd is not None:
            _write_count(fd, sum(f[1] for files in entries.values() for f in files) - removed)
    return len(entries), removed
