"""The disk cache's size cap: least-recently-used eviction of whole entries, safe while several
processes compile, load and evict at once; clearing it; a half-deleted entry is only a miss.

One entry of these tests (a tiny kernel: .py, .nbi, .nbc) takes about 24 KB on disk."""
import os
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest

from jitgrad.backends import cache

SOURCE = '''# {marker}
from jitgrad.backends.numba_cache import jit

@jit()
def kernel(x):
    s = 0.0
    for i in range(x.shape[0]):
        s += x[i] * x[i]
    return s
'''
X, EXPECTED = np.arange(5.0), 30.0
CAP_MB = "0.1"  # 102 KB: four entries; eviction goes down to 80 %, three entries

# A new process: load and call the sources named by the markers in argv, print the results.
SCRIPT = '''
import sys, warnings, numpy as np
warnings.simplefilter("error")
from jitgrad.backends import cache
for _ in range(int(sys.argv[1])):
    for marker in sys.argv[2:]:
        module = cache.load_module(SOURCE.format(marker=marker))
        print(cache.call(module.kernel, np.arange(5.0)), cache.call(module.kernel, np.arange(5)))
'''


def source(marker: str) -> str:
    return SOURCE.format(marker=marker)


def files_of(directory, marker: str) -> list:
    name = cache.module_name(source(marker))
    return sorted(directory.glob(f"{name}.py")) + sorted(directory.glob(f"__pycache__/{name}.*"))


def start(directory, markers, rounds: int = 1, cap: str = CAP_MB) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")}
    env.update(JITGRAD_CACHE_DIR=str(directory), JITGRAD_CACHE_MAX_MB=cap)
    script = f"SOURCE = {SOURCE!r}\n{SCRIPT}"
    return subprocess.Popen([sys.executable, "-c", script, str(rounds), *markers], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen) -> list[str]:
    """The lines a process printed; fails on any error or warning (warnings are errors there)."""
    try:
        out, err = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert proc.returncode == 0 and not err, err
    return out.split("\n")[:-1]


def load_and_call(marker: str) -> float:
    return cache.call(cache.load_module(source(marker)).kernel, X)


@pytest.fixture
def capped(tmp_path, monkeypatch):
    """A fresh cache directory capped at CAP_MB."""
    directory = tmp_path / "cache"
    monkeypatch.setenv("JITGRAD_CACHE_DIR", str(directory))
    monkeypatch.setenv("JITGRAD_CACHE_MAX_MB", CAP_MB)
    monkeypatch.setattr(cache, "_warned", set())
    return directory


@pytest.mark.parametrize("value, expected", [(None, 1024 * 2**20), ("", 1024 * 2**20), ("0", None),
                                             ("-1", None), ("0.5", 2**19), ("64", 64 * 2**20)])
def test_the_cap_comes_from_the_environment(monkeypatch, value, expected):
    if value is None:
        monkeypatch.delenv("JITGRAD_CACHE_MAX_MB", raising=False)
    else:
        monkeypatch.setenv("JITGRAD_CACHE_MAX_MB", value)
    assert cache.max_bytes() == expected


def test_a_cap_that_is_no_number_warns_and_is_the_default(monkeypatch):
    monkeypatch.setenv("JITGRAD_CACHE_MAX_MB", "lots")
    monkeypatch.setattr(cache, "_warned", set())
    with pytest.warns(cache.CacheWarning, match="not a number"):
        assert cache.max_bytes() == cache.DEFAULT_MAX_MB * 2**20


def test_the_cap_holds_after_many_small_modules(capped, request):
    cap = cache.max_bytes()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for i in range(10):
            assert load_and_call(f"{request.node.name} {i}") == EXPECTED
            assert cache.cache_info()["bytes"] <= cap
    assert 2 <= cache.cache_info()["entries"] < 10
    assert files_of(capped, f"{request.node.name} 9")  # the newest survives


def test_eviction_takes_whole_entries_least_recently_used_first(capped, request):
    markers = [f"{request.node.name} {i}" for i in range(3)]
    for age, marker in enumerate(markers):  # 0 oldest ... 2 newest
        load_and_call(marker)
        for path in files_of(capped, marker):
            os.utime(path, (1e9 + age, 1e9 + age))
    finish(start(capped, markers[:1]))  # loading the oldest in a new process makes it the newest
    load_and_call(f"{request.node.name} new")
    load_and_call(f"{request.node.name} newer")  # over the cap: evicts down to 80 %
    assert files_of(capped, markers[0]) and not files_of(capped, markers[1])
    for marker in markers:  # an entry goes or stays whole: .py, .nbi, .nbc (one per signature)
        kept = [path.suffix for path in files_of(capped, marker)]
        assert kept in ([], [".py", ".nbc", ".nbi"], [".py", ".nbc", ".nbc", ".nbi"])


def test_processes_compiling_and_evicting_at_once_all_succeed(tmp_path):
    shared = [f"shared {i}" for i in range(4)]
    procs = [start(tmp_path, shared + [f"own {p} {i}" for i in range(4)], rounds=2) for p in range(3)]
    for proc in procs:
        assert finish(proc) == [f"{EXPECTED} {EXPECTED}"] * 16
    state = cache.cache_info(tmp_path)
    assert state["bytes"] <= float(CAP_MB) * 2**20 and state["entries"] >= 1


def test_clear_empties_the_cache_and_loaded_modules_keep_working(capped, request):
    module = cache.load_module(source(request.node.name))
    assert cache.call(module.kernel, X) == EXPECTED
    entries, removed = cache.clear_cache()
    assert entries == 1 and removed > 0 and cache.cache_info() | {"max_bytes": 0} == {
        "directory": str(capped), "entries": 0, "bytes": 0, "max_bytes": 0}
    assert cache.call(module.kernel, np.arange(5, dtype=np.int32)) == EXPECTED  # a new compile
    out = subprocess.run([sys.executable, "-m", "jitgrad.cache", "clear"], env=dict(os.environ),
                         capture_output=True, text=True, check=True).stdout
    assert out.startswith("removed 1 entries") and cache.cache_info()["entries"] == 0


def test_the_cli_prints_the_state_of_the_cache(capped):
    out = subprocess.run([sys.executable, "-m", "jitgrad.cache", "info"], env=dict(os.environ),
                         capture_output=True, text=True, check=True).stdout
    assert f"directory: {capped}" in out and "entries:   0" in out and "cap:       0.1 MB" in out


@pytest.fixture(scope="module")
def populated(tmp_path_factory):
    """A cache holding the entry of source("half"), compiled for float and int arrays."""
    directory = tmp_path_factory.mktemp("populated")
    finish(start(directory, ["half"]))
    return directory


@pytest.mark.parametrize("remove", [".nbc", ".nbi", ".py", ".nb"])
def test_a_half_deleted_entry_is_a_miss(populated, tmp_path, remove):
    directory = tmp_path / "cache"
    shutil.copytree(populated, directory)
    for path in files_of(directory, "half"):
        if path.suffix.startswith(remove):
            path.unlink()
    assert finish(start(directory, ["half"])) == [f"{EXPECTED} {EXPECTED}"]


def test_writes_in_flight_are_never_deleted(capped, request):
    capped.mkdir()
    in_flight = capped / f".{cache.module_name(source('x'))}.py.0123456789ab.tmp"
    in_flight.write_text("partial")
    for i in range(6):
        load_and_call(f"{request.node.name} {i}")
    cache.clear_cache()
    assert in_flight.exists()
