"""The workloads of issue 3's benchmark table, and their hand-written baselines.

Shared by the asv suite (``bench_*.py``), ``report.py`` and the subprocesses
that measure compile time and peak memory (which load this file by path, so it
must not import numba at module level: W6 times Numba's import as part of the
first result).

W1  value and both gradients of L(w1, w2) = w2 log w1 + sqrt(w2 log w1)
W2  value and gradient of sum(tanh(sin(x) exp(-x^2/2)) + 0.1 x^2)
W3  MLP 784-256-256-10 training step (ReLU, softmax cross-entropy, SGD), float32
W6  compile time of the W3 step (cold cache / warm cache, new process)
JAC jg.jacobian of tanh(A @ x): one pass mapped with jg.vmap, against one pass per unit vector
MEM 64-layer tanh MLP chain, reverse pass, with and without jg.checkpoint
"""
from __future__ import annotations

import json
import math
import os
import pathlib
import re
import subprocess
import sys
import tempfile

import numpy as np

import jitgrad as jg

# The benchmarks time the compiled tier: every compile here waits for it (jitgrad.tiered).
os.environ.setdefault("JITGRAD_TIERED", "0")

HERE = pathlib.Path(__file__).resolve().parent


# ---------------------------------------------------------------------------------------------
# W1: a tiny scalar graph
# ---------------------------------------------------------------------------------------------

def w1_graph():
    w1, w2 = jg.input("w1", ()), jg.input("w2", ())
    v = w2 * jg.log(w1)
    loss = v + jg.sqrt(v)
    return [w1, w2], [loss, *jg.grad(loss, [w1, w2])]


def w1_jitgrad(target="cpu", **options):
    return jg.compile(*w1_graph(), target=target, **options)


_w1_njit = None


def w1_njit():
    """Hand-written closed form: (L, dL/dw1, dL/dw2), compiled for float arguments."""
    global _w1_njit
    if _w1_njit is None:
        import numba

        @numba.njit
        def value_and_grads(w1, w2):
            lw = math.log(w1)
            v = w2 * lw
            r = math.sqrt(v)
            dv = 1.0 + 0.5 / r          # dL/dv
            return v + r, dv * w2 / w1, dv * lw

        value_and_grads(2.0, 3.0)
        _w1_njit = value_and_grads
    return _w1_njit


W1_ARGS = (2.0, 3.0)


# ---------------------------------------------------------------------------------------------
# W2: an elementwise chain and its reduction
# ---------------------------------------------------------------------------------------------

def w2_graph():
    x = jg.input("x", (None,))
    loss = jg.sum(jg.tanh(jg.sin(x) * jg.exp(-x * x / 2)) + 0.1 * x * x)
    return [x], [loss, *jg.grad(loss, [x])]


def w2_jitgrad(target="cpu", **options):
    return jg.compile(*w2_graph(), target=target, **options)


def w2_data(n: int) -> np.ndarray:
    return np.linspace(-3.0, 3.0, int(n))


_w2_njit = None


def w2_njit():
    """Hand-written single fused serial loop: value and gradient, x read once, grad written once."""
    global _w2_njit
    if _w2_njit is None:
        import numba

        @numba.njit
        def value_and_grad(x):
            n = x.shape[0]
            grad = np.empty(n, np.float64)
            acc = 0.0
            for i in range(n):
                xi = x[i]
                s = math.sin(xi)
                g = math.exp(-xi * xi / 2.0)
                t = math.tanh(s * g)
                acc += t + 0.1 * xi * xi
                # d/dx tanh(s g) = (1 - t^2) (cos(x) g - x s g)
                grad[i] = (1.0 - t * t) * g * (math.cos(xi) - xi * s) + 0.2 * xi
            return acc, grad

        value_and_grad(np.zeros(4))
        _w2_njit = value_and_grad
    return _w2_njit


def w2_numpy(x: np.ndarray):
    """NumPy eager forward then backward, every intermediate a fresh array."""
    s = np.sin(x)
    g = np.exp(-x * x / 2)
    h = s * g
    t = np.tanh(h)
    value = np.sum(t + 0.1 * x * x)
    dh = 1.0 - t * t
    grad = dh * (np.cos(x) * g - x * h) + 0.2 * x
    return value, grad


# ---------------------------------------------------------------------------------------------
# W3: MLP training step
# ---------------------------------------------------------------------------------------------

W3_SIZES = (784, 256, 256, 10)
W3_BATCH = 128
W3_LR = 0.01


def w3_weights(seed: int = 0) -> list[np.ndarray]:
    """[W0, b0, W1, b1, W2, b2] float32, He-initialised."""
    rng = np.random.default_rng(seed)
    out = []
    for a, b in zip(W3_SIZES[:-1], W3_SIZES[1:]):
        out.append((rng.standard_normal((a, b)) * np.sqrt(2.0 / a)).astype(np.float32))
        out.append(np.zeros(b, np.float32))
    return out


def w3_data(seed: int = 1):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((W3_BATCH, W3_SIZES[0])).astype(np.float32)
    labels = rng.integers(0, W3_SIZES[-1], W3_BATCH).astype(np.int64)
    return x, labels


def w3_graph(seed: int = 0):
    """The MLP's inputs, params and loss: ([x, labels], params, loss)."""
    names = ["W0", "b0", "W1", "b1", "W2", "b2"]
    params = [jg.param(n, w) for n, w in zip(names, w3_weights(seed))]
    x = jg.input("x", (W3_BATCH, W3_SIZES[0]), "float32")
    labels = jg.input("labels", (W3_BATCH,), "int64")
    h = x
    for layer in range(3):
        h = jg.matmul(h, params[2 * layer]) + params[2 * layer + 1]
        if layer < 2:
            h = jg.relu(h)
    return [x, labels], params, jg.nn.cross_entropy(h, labels)


def w3_jitgrad(target="cpu", seed: int = 0, **options):
    """The SGD step as one compiled function: returns the loss, updates the params."""
    (x, labels), params, loss = w3_graph(seed)
    grads = jg.grad(loss, params)
    lr = np.float32(W3_LR)
    updates = {p: p - lr * g for p, g in zip(params, grads)}
    step = jg.compile([x, labels], loss, updates=updates, target=target, **options)
    step.param_nodes = params
    return step


def blas_threads(n):
    """Limit the BLAS thread pools (NumPy's and SciPy's OpenBLAS, the latter used by Numba's np.dot)
    to `n` threads from now until the returned context manager exits; None: leave them alone.
    Needs threadpoolctl."""
    import contextlib
    if n is None:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits     # ImportError when not installed
    return threadpool_limits(limits=int(n), user_api="blas")


class W3NumpyStep:
    """Hand-written NumPy step: forward, backward, in-place SGD update."""

    def __init__(self, seed: int = 0):
        self.W0, self.b0, self.W1, self.b1, self.W2, self.b2 = w3_weights(seed)
        self.lr = np.float32(W3_LR)

    def __call__(self, x, labels):
        W0, b0, W1, b1, W2, b2 = self.W0, self.b0, self.W1, self.b1, self.W2, self.b2
        h1 = x @ W0 + b0
        a1 = np.maximum(h1, 0)
        h2 = a1 @ W1 + b1
        a2 = np.maximum(h2, 0)
        z = a2 @ W2 + b2
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        se = e.sum(axis=1, keepdims=True)
        rows = np.arange(x.shape[0])
        loss = np.mean(np.log(se[:, 0]) - z[rows, labels])
        dz = e / se
        dz[rows, labels] -= 1
        dz /= np.float32(x.shape[0])
        gW2, gb2 = a2.T @ dz, dz.sum(axis=0)
        da2 = dz @ W2.T
        da2 *= h2 > 0
        gW1, gb1 = a1.T @ da2, da2.sum(axis=0)
        da1 = da2 @ W1.T
        da1 *= h1 > 0
        gW0, gb0 = x.T @ da1, da1.sum(axis=0)
        lr = self.lr
        W0 -= lr * gW0
        b0 -= lr * gb0
        W1 -= lr * gW1
        b1 -= lr * gb1
        W2 -= lr * gW2
        b2 -= lr * gb2
        return loss


NJIT_MLP_MODULE = "jg_bench_njit_mlp"


def load_njit_mlp():
    """``_njit_mlp.py`` imported under one fixed module name in every process: Numba's cache
    records the module name, and an entry saved under another name fails to load."""
    import importlib.util
    module = sys.modules.get(NJIT_MLP_MODULE)
    if module is None:
        spec = importlib.util.spec_from_file_location(NJIT_MLP_MODULE, HERE / "_njit_mlp.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[NJIT_MLP_MODULE] = module
        spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------------------------
# W6: first result in a new process (subprocesses)
# ---------------------------------------------------------------------------------------------

# Run as `python -c _W6_CHILD <this file> <which>`; prints one JSON line of seconds.
_W6_CHILD = r"""
import sys, time
import importlib.util
import jitgrad                      # numpy comes with it; numba does not (compile imports it)
spec = importlib.util.spec_from_file_location("jg_bench_workloads", sys.argv[1])
W = importlib.util.module_from_spec(spec); spec.loader.exec_module(W)
numba_at_import = "numba" in sys.modules
t0 = time.perf_counter()
x, labels = W.w3_data()
if sys.argv[2] in ("jitgrad", "tiered"):
    step = W.w3_jitgrad("cpu", wait=sys.argv[2] == "jitgrad")
else:                               # the hand-written @njit step: numba's import is timed too
    step = W.load_njit_mlp().NjitStep(W.w3_weights())
t1 = time.perf_counter()
loss = float(step(x, labels))
t2 = time.perf_counter()
while not getattr(step, "ready", True):    # tiered: steps on the reference tier until compiled
    step(x, labels)
t3 = time.perf_counter()
import json
print(json.dumps({"build_compile": t1 - t0, "first_call": t2 - t1, "total": t2 - t0, "loss": loss,
                  "compiled": t3 - t0, "numba_imported_by_jitgrad": numba_at_import}))
"""


def _child_env(cache: pathlib.Path) -> dict:
    env = dict(os.environ)
    env["JITGRAD_CACHE_DIR"] = str(cache / "jitgrad")
    env["NUMBA_CACHE_DIR"] = str(cache / "numba")   # Numba's own cache fresh as well: truly cold
    return env


def w6_first_result(cache: pathlib.Path, which: str = "jitgrad") -> dict:
    """Seconds from after `import jitgrad` to the W3 step's first loss, in a new process whose
    caches live under `cache` (empty: cold; populated: warm). `which` is "jitgrad" (compiled
    before the first call), "tiered" (the default: reference tier first; "compiled" is when the
    compiled tier took over) or "njit" (the hand-written step; numba's import is inside the timed
    part for all)."""
    out = subprocess.run([sys.executable, "-c", _W6_CHILD, str(HERE / "_workloads.py"), which],
                         env=_child_env(cache), capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"W6 child ({which}) failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def w6_cold(which: str = "jitgrad") -> dict:
    with tempfile.TemporaryDirectory(prefix="jg-bench-cold-") as d:
        return w6_first_result(pathlib.Path(d), which)


def w6_warm(which: str = "jitgrad") -> dict:
    with tempfile.TemporaryDirectory(prefix="jg-bench-warm-") as d:
        w6_first_result(pathlib.Path(d), which)          # populate the caches
        return w6_first_result(pathlib.Path(d), which)


# ---------------------------------------------------------------------------------------------
# Large graphs: first result and compiled tier of deep and jacobian graphs (subprocesses)
# ---------------------------------------------------------------------------------------------

# Run as `python -c _LARGE_CHILD <this file> <which> <wait cap, s>`; prints one JSON line.
_LARGE_CHILD = r"""
import sys, time, json
import importlib.util
import jitgrad as jg
spec = importlib.util.spec_from_file_location("jg_bench_workloads", sys.argv[1])
W = importlib.util.module_from_spec(spec); spec.loader.exec_module(W)
import os
os.environ.pop("JITGRAD_TIERED")    # the benchmarks' module turns tiering off; here it is the subject
t0 = time.perf_counter()
inputs, outputs, args = W.large_graph(sys.argv[2])
f = jg.compile(inputs, outputs)
f(*args)
t1 = time.perf_counter()
cap = float(sys.argv[3])
while not f.ready and time.perf_counter() - t0 < cap:
    time.sleep(0.05)
    f(*args)
print(json.dumps({"first": t1 - t0, "compiled": time.perf_counter() - t0 if f.ready else None}))
"""

LARGE_GRAPHS = {"chain": "64-layer tanh chain 256 wide, batch 64, with the gradient",
                "jacobian": "`jg.jacobian(tanh(A @ x), x)`, n = 100, forward mode",
                "jacobian3": "third-order forward Jacobian of `V @ A @ V.T`, `(w, V) = eigh(A)`, 2x2"}


def large_graph(which: str):
    """(inputs, outputs, call arguments) of one of LARGE_GRAPHS."""
    if which == "chain":
        inputs, outputs = chain_graph(False, "x")
        return inputs, outputs, [chain_data()]
    if which == "jacobian":
        x = jg.input("x", (100,))
        a = np.random.default_rng(0).standard_normal((100, 100)) / 10
        return [x], [jg.jacobian(jg.tanh(a @ x), x, mode="fwd")], [np.linspace(-1, 1, 100)]
    a = jg.input("A", (2, 2))
    _, v = jg.linalg.eigh(a)
    j = v @ a @ v.T
    for _ in range(3):       # JAX's regression test for its issue 1383
        j = jg.jacobian(j, a, mode="fwd")
    return [a], [j], [np.array([[2.0, 0.5], [0.5, 1.0]])]


def large_first_result(which: str, cap_s: float) -> dict:
    """Seconds from building ``which`` (after `import jitgrad`, empty caches, tiered) to its first
    result, and to the compiled tier (None if not within ``cap_s``)."""
    with tempfile.TemporaryDirectory(prefix="jg-bench-large-") as d:
        env = _child_env(pathlib.Path(d))
        out = subprocess.run([sys.executable, "-c", _LARGE_CHILD, str(HERE / "_workloads.py"), which,
                              str(cap_s)], env=env, capture_output=True, text=True, timeout=cap_s + 300)
    if out.returncode != 0:
        raise RuntimeError(f"large-graph child ({which}) failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------
# Numba's optimisation level: compile time against kernel speed (subprocesses)
# ---------------------------------------------------------------------------------------------

# Run as `python -c _OPT_CHILD <this file>` with NUMBA_OPT set; prints one JSON line of seconds.
_OPT_CHILD = r"""
import sys, time, timeit, statistics
import importlib.util
import jitgrad as jg
from threadpoolctl import threadpool_limits
spec = importlib.util.spec_from_file_location("jg_bench_workloads", sys.argv[1])
W = importlib.util.module_from_spec(spec); spec.loader.exec_module(W)
def per_call(fn, number, repeat):
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number
out = {}
x, labels = W.w3_data()
t = time.perf_counter()
step = W.w3_jitgrad("cpu", wait=True)
step(x, labels)
out["w3_compile"] = time.perf_counter() - t
with threadpool_limits(1, user_api="blas"):
    out["w3_step"] = per_call(lambda: step(x, labels), 200, 7)
t = time.perf_counter()
f = W.w2_jitgrad("cpu")
xs = W.w2_data(1_000_000)
f(xs)
out["w2_compile"] = time.perf_counter() - t
out["w2_call"] = per_call(lambda: f(xs), 5, 7)
import json
print(json.dumps(out))
"""


def numba_opt_run(level: int) -> dict:
    """Cold compile of W3 and W2 and their per-call times, in a new process with NUMBA_OPT=level
    and empty caches (the disk cache does not record the level it was compiled at)."""
    with tempfile.TemporaryDirectory(prefix="jg-bench-opt-") as d:
        env = {**_child_env(pathlib.Path(d)), "NUMBA_OPT": str(level)}
        out = subprocess.run([sys.executable, "-c", _OPT_CHILD, str(HERE / "_workloads.py")], env=env,
                             capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"NUMBA_OPT={level} child failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------
# Jacobians: jg.vmap over the unit vectors against one pass per unit vector (subprocesses)
# ---------------------------------------------------------------------------------------------

def jacobian_data(n: int):
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, n)) / np.sqrt(n), np.linspace(-1, 1, n)


def unrolled_jacobian(y, x, mode: str):
    """The Jacobian as jitgrad built it before jg.vmap: one JVP (or VJP) per unit vector,
    stacked, so the graph grows with the number of elements."""
    n_out, n_in = y.shape[0], x.shape[0]
    if mode == "fwd":
        columns = [jg.jvp([y], [x], [np.eye(n_in)[k]])[0] for k in range(n_in)]
        return jg.stack(columns, axis=1)
    return jg.stack([jg.vjp([y], [x], [np.eye(n_out)[k]])[0] for k in range(n_out)], axis=0)


def jacobian_graph(n: int, mode: str, variant: str):
    """([x], J) for f(x) = tanh(A x), A fixed, with ``variant`` "vmap" (jg.jacobian) or "unrolled"."""
    a, _ = jacobian_data(n)
    x = jg.input("x", (n,))
    y = jg.tanh(jg.constant(a) @ x)
    return [x], (jg.jacobian(y, x, mode) if variant == "vmap" else unrolled_jacobian(y, x, mode))


def jacobian_jitgrad(n: int, mode: str):
    return jg.compile(*jacobian_graph(n, mode, "vmap"))


def jacobian_closed_form(a, x):
    """NumPy's J = diag(1 - tanh(A x)^2) A: the per-call baseline."""
    t = np.tanh(a @ x)
    return (1 - t * t)[:, None] * a


# Run as `python -c _JACOBIAN_CHILD <this file> <n> <mode> <variant>`; prints one JSON line.
_JACOBIAN_CHILD = r"""
import sys, time, json, timeit, statistics
import importlib.util
spec = importlib.util.spec_from_file_location("jg_bench_workloads", sys.argv[1])
W = importlib.util.module_from_spec(spec); spec.loader.exec_module(W)
import jitgrad as jg
import numpy as np
n, mode, variant = int(sys.argv[2]), sys.argv[3], sys.argv[4]
t0 = time.perf_counter()
inputs, j = W.jacobian_graph(n, mode, variant)
f = jg.compile(inputs, j, wait=True)
a, x = W.jacobian_data(n)
got = f(x)
compile_s = time.perf_counter() - t0
assert np.allclose(got, W.jacobian_closed_form(a, x), rtol=1e-10, atol=1e-12)
number = max(1, int(0.2 / max(timeit.timeit(lambda: f(x), number=1), 1e-6)))
per_call = statistics.median(timeit.repeat(lambda: f(x), number=number, repeat=5)) / number
hand = statistics.median(timeit.repeat(lambda: W.jacobian_closed_form(a, x), number=number, repeat=5)) / number
print(json.dumps({"compile": compile_s, "per_call": per_call, "closed_form": hand}))
"""


def jacobian_cold(n: int, mode: str, variant: str, timeout_s: float = 900) -> dict:
    """Build, compile (empty caches) and time ``jacobian_graph(n, mode, variant)`` in a new process:
    {"compile": s from building the graph to its first compiled result, "per_call": s,
    "closed_form": s of the NumPy formula}."""
    with tempfile.TemporaryDirectory(prefix="jg-bench-jacobian-") as d:
        out = subprocess.run([sys.executable, "-c", _JACOBIAN_CHILD, str(HERE / "_workloads.py"), str(n),
                              mode, variant], env=_child_env(pathlib.Path(d)), capture_output=True,
                             text=True, timeout=timeout_s)
    if out.returncode != 0:
        raise RuntimeError(f"jacobian child ({n}, {mode}, {variant}) failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------
# Memory: 64-layer tanh chain, reverse pass
# ---------------------------------------------------------------------------------------------

CHAIN_LAYERS, CHAIN_WIDTH, CHAIN_BATCH, CHAIN_SEGMENT = 64, 256, 64, 8


def chain_weights(seed: int = 2) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((CHAIN_WIDTH, CHAIN_WIDTH)) / np.sqrt(CHAIN_WIDTH)
            for _ in range(CHAIN_LAYERS)]


def chain_data(seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((CHAIN_BATCH, CHAIN_WIDTH))


def has_checkpoint() -> bool:
    return callable(getattr(jg, "checkpoint", None))


def chain_graph(checkpoint: bool, wrt: str = "x"):
    """loss = sum(h_64), h_{k+1} = tanh(h_k @ W_k); ([x], [loss, grads]) w.r.t. x (wrt="x") or x
    and all W (wrt="all").

    The weights are params; with wrt="x" the saved activations are what dominates memory,
    with wrt="all" the 64 weight gradients (32 MiB, float64) are outputs too.
    """
    weights = [jg.param(f"W{k}", w) for k, w in enumerate(chain_weights())]
    x = jg.input("x", (CHAIN_BATCH, CHAIN_WIDTH))

    def segment(first):
        def run(h):
            for W in weights[first:first + CHAIN_SEGMENT]:
                h = jg.tanh(jg.matmul(h, W))
            return h
        return run

    h = x
    for first in range(0, CHAIN_LAYERS, CHAIN_SEGMENT):
        run = segment(first)
        h = jg.checkpoint(run)(h) if checkpoint else run(h)
    loss = jg.sum(h)
    wrt_list = [x] + (weights if wrt == "all" else [])
    return [x], [loss, *jg.grad(loss, wrt_list)]


def chain_jitgrad(checkpoint: bool, wrt: str = "x", target="cpu"):
    return jg.compile(*chain_graph(checkpoint, wrt), target=target)


def chain_numpy(x, weights, wrt="x"):
    """Hand-written reverse pass keeping every activation (no checkpointing)."""
    acts = [x]
    for W in weights:
        acts.append(np.tanh(acts[-1] @ W))
    loss = acts[-1].sum()
    g = np.ones_like(acts[-1])
    grads_w = []
    for k in range(len(weights) - 1, -1, -1):
        g = g * (1.0 - acts[k + 1] ** 2)
        if wrt == "all":
            grads_w.append(acts[k].T @ g)
        g = g @ weights[k].T
    return (loss, g, *grads_w[::-1])


_CHAIN_CHILD = r"""
import gc, json, sys, time, tracemalloc
import importlib.util
spec = importlib.util.spec_from_file_location("jg_bench_workloads", sys.argv[1])
W = importlib.util.module_from_spec(spec); spec.loader.exec_module(W)
import jitgrad as jg
variant, wrt = sys.argv[2], sys.argv[3]
x = W.chain_data()
t0 = time.perf_counter()
if variant == "numpy":
    weights = W.chain_weights()
    compile_ = lambda graph: (lambda: W.chain_numpy(x, weights, wrt))
    graph = lambda: None
else:
    graph = lambda: W.chain_graph(variant == "checkpoint", wrt)
    compile_ = lambda g: (lambda f: (lambda: f(x)))(jg.compile(*g, target="cpu"))
compile_(graph())()                # compile and JIT (or load from the cache)
t1 = time.perf_counter()
g = graph()                        # the same graph again, params included: its code is loaded ...
gc.collect()
W.release_free_memory()
rss0 = W.rss_kib()
rss_ok = W.reset_peak()
tracemalloc.start()
before = W.numpy_bytes(tracemalloc.take_snapshot())
run = compile_(g)                  # ... its workspace is not: what compiling keeps is counted
gc.collect()
held = W.numpy_bytes(tracemalloc.take_snapshot()) - before
current, _ = tracemalloc.get_traced_memory()
tracemalloc.reset_peak()
result = run()                     # the first call
_, peak = tracemalloc.get_traced_memory()
rss_first = W.peak_kib() - rss0 if rss_ok else None
del result
current2, _ = tracemalloc.get_traced_memory()
tracemalloc.reset_peak()
result = run()                     # a steady-state call
_, peak2 = tracemalloc.get_traced_memory()
tracemalloc.stop()
print(json.dumps({"held_bytes": held, "call_bytes": peak - current, "steady_bytes": peak2 - current2,
                  "total_bytes": held + peak - current, "rss_kib": rss_first,
                  "loss": float(result[0]), "compile_s": t1 - t0}))
"""


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return int(re.search(field + r":\s+(\d+)", f.read()).group(1))


def rss_kib() -> int:
    return _status_kib("VmRSS")


def peak_kib() -> int:
    return _status_kib("VmHWM")


def reset_peak() -> bool:
    """Reset the peak RSS (VmHWM) to the current RSS (Linux >= 4.0); False if that is impossible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def release_free_memory() -> None:
    """Give free heap memory back to the OS (glibc's malloc_trim), so that an allocation served
    from it later faults its pages in again and shows in the RSS. Without this, arrays above the
    mmap threshold are still carved out of free heap chunks (left by compiling) unseen."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def numpy_bytes(snapshot) -> int:
    """Bytes of live NumPy array data in a tracemalloc snapshot (NumPy's tracemalloc domain)."""
    import tracemalloc
    return sum(t.size for t in snapshot.filter_traces([tracemalloc.DomainFilter(True, 389047)]).traces)


def chain_peak(variant: str, wrt: str = "x", cache: str | None = None) -> dict:
    """Peak memory of a reverse pass of the chain, measured in a fresh process.

    variant: "none" (jitgrad, no checkpointing), "checkpoint" (jitgrad, jg.checkpoint every 8
    layers) or "numpy" (hand-written, every activation kept).

    After a first compile and call (JIT), the graph is built again (params included) and then
    compiled again (no JIT: same code) and called, with tracemalloc on, which sees NumPy's
    arrays and Numba's allocations (numba 0.68 allocates through Python's raw allocator):
    - "held_bytes": array data that compiling allocated and keeps (jitgrad's workspace, kept
      across calls, and constants);
    - "call_bytes": the peak of allocations during the first call (outputs and temporaries);
    - "total_bytes" = held + call: the figure to compare; "steady_bytes": call_bytes of the next
      call (what a training loop allocates on top of the workspace).
    "rss_kib" is the growth of the peak RSS over compile + first call, a cross-check that
    depends on where glibc places the arrays (it undercounts when they land on heap pages that
    were already resident). "compile_s": the first build + compile + call.
    """
    env = dict(os.environ)
    env["MALLOC_MMAP_THRESHOLD_"] = "65536"     # large arrays mapped and unmapped: RSS follows them
    if cache is not None:
        env["JITGRAD_CACHE_DIR"] = cache
    out = subprocess.run([sys.executable, "-c", _CHAIN_CHILD, str(HERE / "_workloads.py"), variant, wrt],
                         env=env, capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise RuntimeError(f"memory child ({variant}, {wrt}) failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])
