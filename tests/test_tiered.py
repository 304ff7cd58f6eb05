"""Tiered execution (jg.compile(..., wait=False)): the reference tier first, the compiled tier
after a worker process has filled the disk cache; the switch, failures, and clean exits."""
import os
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest

import jitgrad as jg
from jitgrad import tiered
from jitgrad.backends.numba_cpu import kernel_signatures

TIMEOUT = 120     # seconds for a worker to compile a small graph on a loaded 2-core machine


@pytest.fixture(autouse=True)
def cache_dir(tmp_path_factory, monkeypatch):
    """One cache directory for the module: the graphs here compile once."""
    path = tmp_path_factory.getbasetemp() / "tiered-cache"
    monkeypatch.setenv("JITGRAD_CACHE_DIR", str(path))
    return path


def _model(seed=0):
    x = jg.input("x", (None,))
    w = jg.param("w", np.random.default_rng(seed).uniform(0.1, 1.0, 7))
    # ops on which the reference and the CPU program agree bit for bit (the gradients of tanh
    # and exp may differ in the last bit: see README)
    loss = jg.sum(jg.sin(x * w) * w + 0.5 * w * w * x)
    (g,) = jg.grad(loss, [w])
    return x, w, loss, g


def _until_switch(f, *args, timeout=TIMEOUT):
    results = []
    deadline = time.monotonic() + timeout
    while not f.ready:
        assert time.monotonic() < deadline, "the compiled tier never took over"
        results.append((f.tier, f(*args)))
        time.sleep(0.02)
    return results


def test_first_call_runs_on_the_reference_tier_then_switches_with_the_same_results():
    x, w, loss, g = _model()
    f = jg.compile([x], [loss, g], wait=False)
    xs = np.linspace(-2.0, 2.0, 7)
    first = f(xs)
    assert f.tier == "reference" or f.ready      # returned before compilation could finish
    before = _until_switch(f, xs)
    assert f.tier == "cpu" and f.ready
    after = f(xs)
    for _tier, got in [("reference", first)] + before:
        for a, b in zip(got, after):
            np.testing.assert_array_equal(a, b)
    assert "def program" in f.source


def test_sgd_steps_through_the_switch_equal_the_same_steps_compiled():
    def steps(wait, n=40):
        x, w, loss, g = _model(seed=1)
        f = jg.compile([x], loss, updates={w: w - 0.05 * g}, wait=wait)
        xs = np.linspace(-1.0, 1.5, 7)
        losses, tiers = [], []
        for _ in range(n):
            losses.append(f(xs))
            tiers.append(f.tier)
            if not wait and len(losses) == n // 2:
                f.wait()                  # the second half surely compiled
        return np.array(losses), w.value, tiers

    tiered_losses, tiered_w, tiers = steps(False)
    compiled_losses, compiled_w, _ = steps(True)
    assert tiers[0] == "reference" and tiers[-1] == "cpu"
    np.testing.assert_array_equal(tiered_losses, compiled_losses)
    np.testing.assert_array_equal(tiered_w, compiled_w)


def test_a_failing_background_compile_warns_and_wait_raises(monkeypatch):
    import numba
    monkeypatch.setattr(tiered, "describe", lambda values: (("value", "not an array"),) * len(values))
    x, w, loss, g = _model()
    f = jg.compile([x], loss, wait=False)
    xs = np.ones(7)
    want = jg.compile([x], loss, target="numpy")(xs)
    deadline = time.monotonic() + TIMEOUT
    with pytest.warns(tiered.TieredWarning, match="failed"):
        while f._pending is not None:
            assert time.monotonic() < deadline
            np.testing.assert_array_equal(f(xs), want)
            time.sleep(0.02)
    assert f.tier == "reference" and not f.ready
    np.testing.assert_array_equal(f(xs), want)
    with pytest.raises(numba.core.errors.TypingError) as raised:
        f.wait()
    assert "compile worker" in "".join(getattr(raised.value, "__notes__", []))


def test_a_killed_worker_leaves_the_reference_tier_running():
    x, w, loss, g = _model(seed=3)
    x2 = jg.input("x2", (None, 2))                 # a graph no other test compiled: a longer job
    f = jg.compile([x, x2], loss + jg.sum(jg.sin(x2) * jg.max(x2, axis=1, keepdims=True)), wait=False)
    xs, x2s = np.ones(7), np.arange(6.0).reshape(3, 2)
    want = f(xs, x2s)
    pids = tiered.worker_pids()
    assert pids
    for pid in pids:
        os.kill(pid, 9)
    with pytest.warns(tiered.TieredWarning, match="could not be delivered"):
        deadline = time.monotonic() + TIMEOUT
        while f._pending is not None:
            assert time.monotonic() < deadline
            assert f(xs, x2s) == want
            time.sleep(0.02)
    assert f.tier == "reference"
    assert f.wait().tier == "cpu"                  # compiled in this process
    assert f(xs, x2s) == want
    g2 = jg.compile([x], 2 * loss, wait=False)     # a new worker serves the next function
    g2(xs)
    assert g2.wait().tier == "cpu"


SCRIPT = """
import sys, time, numpy as np, jitgrad as jg
from jitgrad import tiered
x = jg.input("x", (None,))
f = jg.compile([x], jg.sum(jg.cos(x) * {k}), wait=False)   # no __main__ guard: workers must not rerun this
print(float(f(np.ones(3))), f.tier, flush=True)
print(*tiered.worker_pids(), flush=True)
if {wait}:
    f.wait()
    print(f.tier, flush=True)
import gc
tiered._shutdown()     # what exit does; a collection then finds no pipe left open
gc.collect()
"""


@pytest.mark.parametrize("wait", [False, True], ids=["exit-mid-compile", "exit-after-switch"])
def test_no_worker_outlives_the_script(tmp_path, wait):
    script = tmp_path / "script.py"
    script.write_text(SCRIPT.format(k=3.0 + wait + time.time() % 1, wait=wait))   # a fresh graph each run
    start = time.monotonic()
    out = subprocess.run([sys.executable, "-W", "always::ResourceWarning", str(script)], capture_output=True,
                         text=True, timeout=TIMEOUT, env={**os.environ, "JITGRAD_CACHE_DIR": str(tmp_path / "cache")})
    assert out.returncode == 0, out.stderr
    assert "ResourceWarning" not in out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].endswith("reference")
    pids = [int(p) for p in lines[1].split()]
    assert pids
    if wait:
        assert lines[2] == "cpu"
    else:
        assert time.monotonic() - start < 30       # exit does not wait for the compile
    time.sleep(0.5)
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_wait_true_and_the_default_run_compiled():
    x, w, loss, g = _model()
    f = jg.compile([x], loss, wait=True)
    assert f.ready and f.tier == "cpu" and f.wait() is f
    assert jg.compile([x], loss, target="numpy").tier == "numpy"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        f(np.ones(7))


def test_wait_with_a_timeout_raises_timeout_error_and_then_still_switches():
    x = jg.input("x", (None, 3))
    f = jg.compile([x], jg.sum(jg.arctan(x) * jg.max(x, axis=1, keepdims=True)), wait=False)
    xs = np.arange(6.0).reshape(2, 3)
    want = f(xs)                                   # the first call hands the worker its job
    with pytest.raises(TimeoutError):
        f.wait(timeout=0.001)                      # a compile takes far longer than a millisecond
    assert f.tier == "reference" and f(xs) == want
    assert f.wait(timeout=TIMEOUT).tier == "cpu"
    np.testing.assert_allclose(f(xs), want, rtol=1e-12)


def test_a_tiered_compile_starts_a_worker_before_the_first_call():
    x = jg.input("x", (3,))
    jg.compile([x], jg.sum(jg.tan(x)), wait=False)
    assert tiered.worker_pids()


def test_described_arguments_have_the_types_numba_gives_the_values():
    import numba
    base = np.arange(24.0).reshape(2, 3, 4)
    frozen = np.ones(3, np.float32)
    frozen.flags.writeable = False
    values = [base, base.T, base[:, ::2], base[0, 0, 0:1], np.zeros((0, 3)), np.array(2.5), frozen,
              np.arange(3, dtype=np.int8), np.array([True]), np.ones(2, np.complex64), 3, 2.5, True,
              np.float32(1.5), np.int64(4)]
    assert tiered.numba_signature(tiered.describe(values)) == tuple(numba.typeof(v) for v in values)


_NO_NUMBA_FIRST = """
import sys, threading, numpy as np, jitgrad as jg

class NotInTheMainThread:          # the first call may not import Numba; a thread may, after it
    blocked = True
    def find_spec(self, name, path=None, target=None):
        if self.blocked and name == "numba" and threading.current_thread() is threading.main_thread():
            raise ImportError("Numba imported on the way to the first result")
guard = NotInTheMainThread()
sys.meta_path.insert(0, guard)
x = jg.input("x", (None,))
f = jg.compile([x], jg.sum(jg.tanh(x) * 3.0))
first = float(f(np.ones(4)))
print(first, f.tier, flush=True)
guard.blocked = False
f.wait()
print(float(f(np.ones(4))), f.tier, flush=True)
"""


def test_the_first_result_needs_no_numba(tmp_path):
    env = dict(os.environ, JITGRAD_CACHE_DIR=str(tmp_path), JITGRAD_TIERED="1")
    for run in ("cold", "warm"):
        out = subprocess.run([sys.executable, "-c", _NO_NUMBA_FIRST], env=env, capture_output=True,
                             text=True, timeout=TIMEOUT)
        assert out.returncode == 0, (run, out.stderr[-2000:])
        first, then = (line.split() for line in out.stdout.splitlines())
        assert first[1] == "reference" and then == [first[0], "cpu"], (run, first, then)


@pytest.mark.skipif(not hasattr(os, "getpriority"), reason="POSIX priorities")
def test_workers_run_at_a_lower_priority_than_the_user_process():
    x = jg.input("x", (3,))
    jg.compile([x], jg.sum(jg.sinh(x)), wait=False)
    mine = os.getpriority(os.PRIO_PROCESS, 0)
    deadline = time.monotonic() + TIMEOUT
    for pid in tiered.worker_pids():
        while os.getpriority(os.PRIO_PROCESS, pid) == mine:      # set as the worker starts
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert os.getpriority(os.PRIO_PROCESS, pid) == min(19, mine + tiered.WORKER_NICENESS)


def test_reference_calls_leave_the_busy_workers_their_cores(monkeypatch):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    before = [lib.num_threads for lib in tiered._blas_libraries()]
    if not before:
        pytest.skip("no BLAS library that threadpoolctl can control")

    class Busy:
        busy = 1

    monkeypatch.setattr(tiered, "_pool", Busy())
    with tiered.cores_left_by_workers():
        inside = [info["num_threads"] for info in threadpoolctl.threadpool_info() if info["user_api"] == "blas"]
    assert max(inside) <= max(1, (os.cpu_count() or 1) - 1)
    assert [lib.num_threads for lib in tiered._blas_libraries()] == before
    Busy.busy = 0
    with tiered.cores_left_by_workers():
        assert [lib.num_threads for lib in tiered._blas_libraries()] == before


def _mlp_step(seed: int):
    """A graph of several kernels: enough for a worker to compile some ahead.  Its batch size
    is the seed, and its sizes are odd ones: kernels compiled for its sizes elsewhere in the
    process (another test's, bound to another cache directory) are not reused."""
    rng = np.random.default_rng(seed)
    x = jg.input("x", (seed, 13))
    w1, w2 = jg.param("w1", rng.normal(size=(13, 11))), jg.param("w2", rng.normal(size=(11, 3)))
    loss = jg.mean(jg.logsumexp(jg.tanh(x @ w1) @ w2, axis=1) - jg.sin(jg.sum(x, axis=1)))
    grads = jg.grad(loss, [w1, w2])
    return x, rng.normal(size=(seed, 13)), [loss, *grads]


def _signature(program, data):
    """The Numba types of what the program is called with for input ``data``."""
    return tiered.numba_signature(tiered.describe(program.arguments([data], {})))


def test_kernel_signatures_are_the_ones_numba_compiles(tmp_path, monkeypatch):
    from jitgrad.backends.cache import load_module
    monkeypatch.setenv("JITGRAD_CACHE_DIR", str(tmp_path))       # the program is not cached
    x, data, outs = _mlp_step(29)
    f = jg.compile([x], outs, wait=True)
    program = f._compiled
    calls = kernel_signatures(program.kernel_calls, _signature(program, data))
    assert len(calls) >= tiered.MIN_KERNELS_AHEAD
    f(data)
    for source, signature in calls:
        assert signature in load_module(source).kernel.signatures


_KERNELS_JOB = """
import pickle, sys
from jitgrad import tiered
print(tiered._kernels_job(sys.argv[1], *pickle.load(sys.stdin.buffer))["kernels"])
"""


def test_a_worker_compiles_the_kernels_ahead_and_stops_where_they_are_cached(tmp_path, monkeypatch):
    import pickle
    monkeypatch.setenv("JITGRAD_CACHE_DIR", str(tmp_path))
    x, data, outs = _mlp_step(31)
    f = jg.compile([x], outs, wait=True)
    program = f._compiled
    calls = kernel_signatures(program.kernel_calls, _signature(program, data))
    job_input = pickle.dumps((program.kernel_calls, tiered.describe(program.arguments([data], {}))))

    def job():      # in a new process, as in a worker: this one's kernel modules may be bound elsewhere
        out = subprocess.run([sys.executable, "-c", _KERNELS_JOB, str(tmp_path)], input=job_input,
                             capture_output=True, timeout=TIMEOUT)
        assert out.returncode == 0, out.stderr.decode()[-2000:]
        return int(out.stdout.split()[-1])
    assert job() == len(calls)
    assert job() == 0                                             # stops at the first one cached
    want = jg.compile([x], outs, target="numpy")(data)
    for got, w in zip(f(data), want):
        np.testing.assert_allclose(got, w, rtol=1e-12)


def test_an_in_process_compile_hands_a_worker_its_kernels(tmp_path, monkeypatch):
    monkeypatch.setenv("JITGRAD_CACHE_DIR", str(tmp_path))
    asked = []
    real = tiered.compile_kernels_ahead
    monkeypatch.setattr(tiered, "compile_kernels_ahead", lambda *a: asked.append(real(*a)) or asked[-1])
    x, data, outs = _mlp_step(37)
    f = jg.compile([x], outs, wait=True)
    want = jg.compile([x], outs, target="numpy")(data)
    for _ in range(2):
        for got, w in zip(f(data), want):
            np.testing.assert_allclose(got, w, rtol=1e-12)
    assert asked == [True] and f.tier == "cpu"
    g = jg.compile([x], outs, wait=True)                          # cached now: no worker needed
    g(data)
    assert asked == [True, False]


@pytest.mark.parametrize("numba_cache_dir", [False, True], ids=["beside-the-module", "NUMBA_CACHE_DIR"])
def test_no_worker_starts_for_a_program_the_disk_cache_holds(tmp_path, monkeypatch, numba_cache_dir):
    from jitgrad.backends.cache import module_name
    started = []

    class Pool:
        def start_worker(self):
            started.append(True)

    monkeypatch.setattr(tiered, "_executor", Pool)
    monkeypatch.setenv("JITGRAD_CACHE_DIR", str(tmp_path / "jitgrad"))
    x = jg.input("x", (3,))
    program = jg.compile([x], jg.sum(jg.sin(x)), wait=True)._compiled
    tiered.prepare(program)
    assert started == [True]                                  # nothing cached: a worker starts
    folder = tmp_path / "jitgrad" / "__pycache__"
    if numba_cache_dir:                                       # Numba's folder per cached directory
        monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "numba"))
        folder = tmp_path / "numba" / "jitgrad_0123abcd"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{module_name(program.module_sources[-1])}.program-30.py311.nbi").write_bytes(b"")
    tiered.prepare(program)
    assert started == [True]
