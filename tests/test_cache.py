"""The on-disk cache of generated modules: hashed files, Numba cache hits across processes, and
every way the cache can break (corrupted entries, truncated files, unusable directories,
concurrent writers) costing at most a warning and a recompile, never a wrong result."""
import json
import os
import shutil
import subprocess
import sys
import warnings

import numba
import numpy as np
import pytest
from numba.core.caching import NullCache

from jitgrad.backends import cache
from jitgrad.backends.numba_cache import jit

SOURCE = '''
import numpy as np
from jitgrad.backends.numba_cache import jit

@jit()
def kernel(x):
    s = 0.0
    for i in range(x.shape[0]):
        s += x[i] * x[i]
    return s
'''
X, EXPECTED = np.arange(5.0), 30.0

# A new process: load the source given as argv[1], call it, print the result and the cache hits.
SCRIPT = '''
import sys, numpy as np
from jitgrad.backends import cache
module = cache.load_module(sys.argv[1])
print(cache.call(module.kernel, np.arange(5.0)), sum(module.kernel.stats.cache_hits.values()))
'''


def source(marker: str) -> str:
    return f"# {marker}\n{SOURCE}"


def process_env(directory) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")}
    return dict(env, JITGRAD_CACHE_DIR=str(directory), PYTHONWARNINGS="always::RuntimeWarning")


def start(directory, marker: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", SCRIPT, source(marker)], env=process_env(directory),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen) -> tuple[str, str]:
    try:
        out, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert proc.returncode == 0, err
    return out, err


def run(directory, marker: str) -> tuple[float, int, str]:
    """(result, Numba cache hits, stderr) of a new process; fails the test if it fails."""
    out, err = finish(start(directory, marker))
    value, hits = out.split()
    return float(value), int(hits), err


def numba_files(directory, suffix: str) -> list:
    return sorted((directory / "__pycache__").glob(f"*{suffix}"))


@pytest.fixture
def cache_at(tmp_path, monkeypatch):
    """JITGRAD_CACHE_DIR = tmp_path/cache, with this process's warn-once state fresh."""
    monkeypatch.setenv("JITGRAD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(cache, "_warned", set())
    monkeypatch.setattr(cache, "_tempdir", None)
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def populated(tmp_path_factory):
    """A cache directory filled by one process (compiled, so no cache hit)."""
    directory = tmp_path_factory.mktemp("populated")
    value, hits, err = run(directory, "populated")
    assert (value, hits) == (EXPECTED, 0) and "CacheWarning" not in err
    return directory


def cache_warnings(record) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, cache.CacheWarning)]


def test_source_is_written_under_its_hash_and_registered(cache_at, request):
    src = source(request.node.name)
    module = cache.load_module(src)
    path = cache_at / f"{cache.module_name(src)}.py"
    assert path.read_text() == src and module.__file__ == str(path)
    assert sys.modules[module.__name__] is module and cache.cache_dir() == cache_at
    assert cache.call(module.kernel, X) == EXPECTED


def test_same_source_same_module_and_programs_import_kernels_by_name(cache_at, request):
    kernels = cache.load_module(source(request.node.name))
    assert cache.load_module(source(request.node.name)) is kernels
    assert cache.load_module(source(request.node.name + "2")) is not kernels
    program = cache.load_module(f"from {kernels.__name__} import kernel\n"
                                "from jitgrad.backends.numba_cache import jit\n"
                                "@jit()\ndef entry(x):\n    return kernel(x) + 1.0\n")
    assert cache.call(program.entry, X) == EXPECTED + 1.0


def test_a_second_process_loads_from_the_numba_cache(populated, tmp_path):
    shutil.copytree(populated, tmp_path / "cache")
    value, hits, err = run(tmp_path / "cache", "populated")
    assert (value, hits) == (EXPECTED, 1) and "CacheWarning" not in err


# A new process building, compiling and calling whole graphs: one with a call-time size (the
# program is called directly) and one with fixed shapes, params and updates (called through
# jitgrad.entry). Prints the results, which functions Numba compiled (numba:compile events,
# which Numba fires only when it compiles, not when it loads from its disk cache) and the
# programs' disk-cache hits.
GRAPH_SCRIPT = """
import json, os, numba, numpy as np
from numba.core import event
import jitgrad as jg

for shift in range(int(os.environ.get("SHIFT_SYMBOLS", "0"))):   # Numba numbers what it compiles
    numba.njit(lambda: shift)()
if os.environ.get("MISNAME_CALLEES"):       # cache entries naming callee symbols no process has
    from jitgrad.backends import numba_cache
    reduce = numba_cache._CallerResults.reduce
    def misnamed(self, cres):
        callees, payload = reduce(self, cres)
        return {symbol + "_elsewhere": callee for symbol, callee in callees.items()}, payload
    numba_cache._CallerResults.reduce = misnamed
with event.install_recorder("numba:compile") as recorder:
    x = jg.input("x", (None, 3))
    y = jg.sum(jg.tanh(x * np.arange(3.0))) + jg.mean(jg.exp(-x) @ np.ones((3, 2)))
    f = jg.compile([x], [y, *jg.grad(y, [x])])
    w = jg.param("w", np.arange(3.0))
    z = jg.input("z", (4, 3))
    loss = jg.sum(jg.sin(z * w) ** 2)
    (gw,) = jg.grad(loss, [w])
    g = jg.compile([z], [loss, gw], updates={w: w - 0.1 * gw})
    values = [float(f(np.ones((5, 3)))[0]), float(g(np.ones((4, 3)))[0]), float(g(np.ones((4, 3)))[0])]
compiled = sorted({e.data["dispatcher"].py_func.__qualname__ for _, e in recorder.buffer if e.is_start})
hits = [sum(h._program._entry.stats.cache_hits.values()) for h in (f, g)]
print(json.dumps(dict(values=values, compiled=compiled, program_hits=hits)))
"""


def compile_graphs_in_a_new_process(directory, **env) -> dict:
    done = subprocess.run([sys.executable, "-c", GRAPH_SCRIPT], env={**process_env(directory), **env},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_a_new_process_compiling_the_same_graphs_compiles_nothing(tmp_path):
    """End to end: the second process loads every program and kernel from disk, and Numba
    compiles no function at all (not the programs, not a kernel, not a helper)."""
    first = compile_graphs_in_a_new_process(tmp_path / "cache")
    assert "program" in first["compiled"] and first["program_hits"] == [0, 0]
    second = compile_graphs_in_a_new_process(tmp_path / "cache")
    assert second["compiled"] == [] and second["program_hits"] == [1, 1]
    assert second["values"] == first["values"]


def test_kernels_compiled_afresh_keep_their_symbols_and_the_programs_still_load(tmp_path):
    """A program's machine code calls its kernels by symbol.  A kernel compiled afresh (its
    entry evicted), in a process that numbers its functions differently, keeps its symbol, so
    the cached programs still load, and compute the same values."""
    first = compile_graphs_in_a_new_process(tmp_path / "cache")
    kernel_entries = list((tmp_path / "cache").rglob("*.kernel-*.nb*"))
    assert kernel_entries
    for path in kernel_entries:
        path.unlink()
    second = compile_graphs_in_a_new_process(tmp_path / "cache", SHIFT_SYMBOLS="3")
    assert "kernel" in second["compiled"] and "program" not in second["compiled"]
    assert second["program_hits"] == [1, 1] and second["values"] == first["values"]


def test_a_cached_program_naming_symbols_not_loaded_is_compiled_again_not_called(tmp_path):
    """Machine code calling a symbol this process lacks would crash it (seen: SIGSEGV, with
    symbols that Numba numbered per process).  An entry whose callees are loaded here under other
    symbols than it names is a miss: compiled afresh and rewritten, with the same values."""
    first = compile_graphs_in_a_new_process(tmp_path / "cache", MISNAME_CALLEES="1")
    second = compile_graphs_in_a_new_process(tmp_path / "cache")
    assert "program" in second["compiled"] and "kernel" not in second["compiled"]
    assert second["program_hits"] == [0, 0] and second["values"] == first["values"]
    third = compile_graphs_in_a_new_process(tmp_path / "cache")
    assert third["compiled"] == [] and third["program_hits"] == [1, 1]


def _flip_a_bit(path):
    """Without a checksum Numba loads this silently (numba 0.68: a flip near 15% crashed with SIGSEGV)."""
    data = bytearray(path.read_bytes())
    data[len(data) // 20] ^= 1
    path.write_bytes(bytes(data))


GARBAGE = bytes(range(256)) * 8
CORRUPTIONS = {
    "garbage index": lambda nbi, nbc: nbi.write_bytes(GARBAGE),
    "truncated data": lambda nbi, nbc: nbc.write_bytes(nbc.read_bytes()[: nbc.stat().st_size // 2]),
    "garbage in both": lambda nbi, nbc: (nbi.write_bytes(GARBAGE), nbc.write_bytes(GARBAGE)),
    "one bit flipped in the data": lambda nbi, nbc: _flip_a_bit(nbc),
}


@pytest.mark.parametrize("corruption", CORRUPTIONS)
def test_a_corrupted_numba_cache_is_dropped_and_recompiled_in_a_new_process(
        populated, tmp_path, corruption):
    directory = shutil.copytree(populated, tmp_path / "cache")
    (nbi,), (nbc,) = numba_files(directory, ".nbi"), numba_files(directory, ".nbc")
    CORRUPTIONS[corruption](nbi, nbc)
    value, hits, err = run(directory, "populated")
    assert (value, hits) == (EXPECTED, 0) and "CacheWarning" in err
    if corruption == "garbage in both":  # the entry was rewritten: the next process hits again
        value, hits, err = run(directory, "populated")
        assert (value, hits) == (EXPECTED, 1) and "CacheWarning" not in err


@pytest.mark.parametrize("damage", ["truncated", "same-size garbage"])
def test_a_damaged_generated_file_is_replaced_not_rewritten(cache_at, request, damage):
    src = source(request.node.name)
    path = cache_at / f"{cache.module_name(src)}.py"
    derived = [cache_at / "__pycache__" / f"{path.stem}{suffix}"
               for suffix in (".cpython-311.pyc", ".kernel-6.py311.nbi", ".kernel-6.py311.1.nbc")]
    derived[0].parent.mkdir(parents=True)
    for file in [path, *derived]:
        file.write_text(src[:40] if damage == "truncated" else src.swapcase())
    with pytest.warns(cache.CacheWarning, match="did not match its source"):
        module = cache.load_module(src)
    assert path.read_text() == src and not any(file.exists() for file in derived)
    assert cache.call(module.kernel, X) == EXPECTED


def _under_a_file(tmp_path):
    (tmp_path / "afile").write_text("")
    return tmp_path / "afile" / "cache"


def _read_only(tmp_path):
    directory = tmp_path / "read-only"
    directory.mkdir(mode=0o500)
    if os.access(directory, os.W_OK):
        pytest.skip("permissions do not apply (running as root)")
    return directory


@pytest.mark.parametrize("unusable", [_under_a_file, _read_only])
def test_an_unusable_cache_dir_falls_back_to_a_temporary_directory(
        cache_at, tmp_path, monkeypatch, request, unusable):
    monkeypatch.setenv("JITGRAD_CACHE_DIR", str(unusable(tmp_path)))
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        modules = [cache.load_module(source(request.node.name + str(i))) for i in range(2)]
    assert len(cache_warnings(record)) == 1 and cache.cache_dir() is None
    for module in modules:
        assert os.path.dirname(module.__file__) == str(cache._tempdir)
        assert isinstance(module.kernel._cache, NullCache)  # nothing written for nobody to read
        assert cache.call(module.kernel, X) == EXPECTED


@pytest.mark.parametrize("temporary", ["works", "fails"])
def test_no_cache_dir_and_no_home_still_compute(cache_at, tmp_path, monkeypatch, request, temporary):
    monkeypatch.delenv("JITGRAD_CACHE_DIR")
    monkeypatch.setenv("HOME", str(_under_a_file(tmp_path)))
    if temporary == "fails":
        monkeypatch.setattr(cache.tempfile, "mkdtemp", _raise_oserror)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        module = cache.load_module(source(request.node.name))
    assert cache.cache_dir() is None and len(cache_warnings(record)) == (1 if temporary == "works" else 2)
    assert hasattr(module, "__file__") == (temporary == "works")  # else run from memory
    assert cache.call(module.kernel, X) == EXPECTED


def _raise_oserror(*args, **kwargs):
    raise OSError("no temporary directory either")


def test_numba_without_any_cache_locator_compiles_uncached(cache_at, tmp_path, monkeypatch, request):
    cache_at.mkdir()
    (cache_at / "__pycache__").write_text("")  # Numba's in-tree cache directory cannot exist
    monkeypatch.setenv("HOME", str(_under_a_file(tmp_path)))  # nor its ~/.cache/numba
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setattr(numba.config, "CACHE_DIR", "")
    with pytest.warns(cache.CacheWarning, match="no locator available"):
        module = cache.load_module(source(request.node.name))
    assert isinstance(module.kernel._cache, NullCache)
    assert cache.call(module.kernel, X) == EXPECTED


def test_a_failed_save_only_disables_caching(cache_at, request):
    module = cache.load_module(source(request.node.name))
    shutil.rmtree(cache_at / "__pycache__")  # replaced, after the module loaded, by a link to
    (cache_at / "__pycache__").symlink_to(cache_at / "nowhere")  # nowhere: reads miss, saves fail
    with pytest.warns(cache.CacheWarning, match="cannot save"):
        assert cache.call(module.kernel, X) == EXPECTED


@pytest.mark.parametrize("content, error", [(GARBAGE, "UnpicklingError"), (b"", "EOFError")],
                         ids=["garbage", "empty"])
def test_call_recovers_plain_numba_dispatchers_from_a_corrupted_index(cache_at, request, content, error):
    src = source(request.node.name).replace("@jit()", "@numba.njit(cache=True)")
    module = cache.load_module("import numba\n" + src)
    index = module.kernel._cache._cache_file._index_path  # not a _GuardedCache: Numba's own files
    os.makedirs(os.path.dirname(index), exist_ok=True)
    with open(index, "wb") as file:
        file.write(content)
    with pytest.raises(Exception) as raised:
        module.kernel(X)
    assert type(raised.value).__name__ == error
    with pytest.warns(cache.CacheWarning, match=error):
        assert cache.call(module.kernel, X) == EXPECTED
    assert module.kernel._cache._cache_file._load_index()  # dropped, then saved afresh


def test_two_processes_compiling_the_same_source_at_once(tmp_path):
    procs = [start(tmp_path / "cache", "concurrent") for _ in range(2)]
    for out, err in [finish(proc) for proc in procs]:
        assert float(out.split()[0]) == EXPECTED, err
    assert [p.name for p in (tmp_path / "cache").glob("*.py")] == \
        [f"{cache.module_name(source('concurrent'))}.py"]
    assert not list((tmp_path / "cache").rglob("*.tmp*"))


def test_a_data_file_holding_another_signature_is_a_miss(cache_at, request):
    module = cache.load_module(source(request.node.name))
    assert cache.call(module.kernel, X) == EXPECTED and cache.call(module.kernel, np.arange(5)) == 30
    first, second = numba_files(cache_at, ".nbc")
    first.rename(cache_at / "swap")
    second.rename(first)
    (cache_at / "swap").rename(second)
    fresh = jit()(module.kernel.py_func)  # a new dispatcher: it can only load from disk
    assert cache.call(fresh, X) == EXPECTED and sum(fresh.stats.cache_misses.values()) == 1


def test_the_same_graph_built_twice_has_the_same_program_source():
    """Dims are numbered per process; the generated source must not show it."""
    import jitgrad as jg

    def build():
        x = jg.input("x", (None, 3))
        y = jg.mean(x.reshape(-1) * 2.0)
        return jg.compile([x], [y] + jg.grad(y, [x]))
    assert build().source == build().source


def test_the_program_calls_its_kernels_by_symbol_without_their_code(cache_at):
    """Numba would link each kernel's code into the program and optimise and compile it there
    once more; the program only declares its kernels (jitgrad.backends.numba_cache._Callee)."""
    import jitgrad as jg
    x = jg.input("x", (4,))
    f = jg.compile([x], [jg.sum(jg.tanh(x) * x), jg.exp(x) + 1.0], wait=True)
    f(np.linspace(-1.0, 1.0, 4))
    (program,) = f._program._entry.overloads.values()
    text = program.library.get_llvm_str()
    kernels = [cache.load_module(source).kernel for source, _ in f._program.kernel_calls]
    symbols = {overload.fndesc.mangled_name for kernel in kernels for overload in kernel.overloads.values()}
    named = {kind: {line.split("@", 1)[1].split("(", 1)[0] for line in text.splitlines()
                    if line.startswith(kind) and "@" in line} for kind in ("declare", "define")}
    assert symbols and symbols <= named["declare"] and not symbols & named["define"]
