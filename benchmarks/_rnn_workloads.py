"""W7 of issue 14: an RNN's value and gradient, ``jg.scan`` against the unrolled graph and a
hand-written ``@njit`` loop.

h_t = tanh(x_t @ U + h_{t-1} @ W + b), h_0 = 0, for t = 1 .. T; loss = sum_t sum(h_t^2) / (T B),
the mean over steps and batch of the squared norm of the hidden state; outputs: the loss and
its gradients w.r.t. W (H x H), U (D x H) and b (H), float64. Sizes: batch B = 32, hidden
H = 64 (the issue's), inputs D = 16 wide (our choice: a small input projection, so that the
recurrent H x H product dominates as in a typical RNN cell).

- ``rnn_graph(T, "scan")``: the step as the body of ``jg.scan`` (the graph holds it once);
- ``rnn_graph(T, "unrolled")``: the same step in a Python loop, T copies in the graph, the
  hidden states stacked so that the loss is computed from the same (T, B, H) array;
- ``rnn_hand()``: backpropagation through time written out as one ``@njit`` function
  (``bptt``: forward storing every h_t, backward in reverse, ``np.dot`` for the products);
  ``bptt`` itself, uncompiled, is the NumPy reference the subprocesses check against.

``rnn_cold(T, variant)`` builds and compiles in a new process with empty caches (see
``_RNN_CHILD``). Loaded by path in those subprocesses: numba must not be imported at module
level (as in ``_workloads.py``).
"""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import tempfile

import numpy as np

import jitgrad as jg

# The benchmarks time the compiled tier: every compile here waits for it (jitgrad.tiered).
os.environ.setdefault("JITGRAD_TIERED", "0")

HERE = pathlib.Path(__file__).resolve().parent

RNN_BATCH, RNN_HIDDEN, RNN_INPUT = 32, 64, 16
RNN_T = 200                        # the sequence length
RNN_RTOL = 1e-10                   # agreement asked of every pair of implementations


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------

def rnn_weights(seed: int = 7) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(W, U, b): W scaled to spectral radius about 0.9 so that h neither dies nor saturates
    over thousands of steps; U, b small Gaussians."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((RNN_HIDDEN, RNN_HIDDEN)) * (0.9 / np.sqrt(RNN_HIDDEN))
    u = rng.standard_normal((RNN_INPUT, RNN_HIDDEN)) / np.sqrt(RNN_INPUT)
    b = 0.1 * rng.standard_normal(RNN_HIDDEN)
    return w, u, b


def rnn_data(T: int, seed: int = 8) -> np.ndarray:
    """The input sequence, (T, B, D)."""
    return np.random.default_rng(seed).standard_normal((T, RNN_BATCH, RNN_INPUT))


# ---------------------------------------------------------------------------------------------
# jitgrad: scan and unrolled
# ---------------------------------------------------------------------------------------------

def rnn_graph(T: int, variant: str = "scan"):
    """([x], [loss, dW, dU, db]) with ``variant`` "scan" (jg.scan, the body once) or "unrolled"
    (a Python loop: T copies of the step)."""
    w, u, b = rnn_weights()
    W, U, bias = jg.param("W", w), jg.param("U", u), jg.param("b", b)
    x = jg.input("x", (T, RNN_BATCH, RNN_INPUT))
    h0 = jg.constant(np.zeros((RNN_BATCH, RNN_HIDDEN)))

    def step(h, x_t):
        h = jg.tanh(x_t @ U + h @ W + bias)
        return h, h

    if variant == "scan":
        _, hs = jg.scan(step, h0, x)
    elif variant == "unrolled":
        h, states = h0, []
        for t in range(T):
            h, _ = step(h, x[t])
            states.append(h)
        hs = jg.stack(states)
    else:
        raise ValueError(f"variant: 'scan' or 'unrolled', not {variant!r}")
    loss = jg.sum(hs ** 2) / (T * RNN_BATCH)
    return [x], [loss, *jg.grad(loss, [W, U, bias])]


def rnn_jitgrad(T: int, variant: str = "scan", target: str = "cpu", **options):
    """The compiled ``rnn_graph``: f(x) -> (loss, dW, dU, db)."""
    return jg.compile(*rnn_graph(T, variant), target=target, **options)


# ---------------------------------------------------------------------------------------------
# hand-written backpropagation through time
# ---------------------------------------------------------------------------------------------

def bptt(x, w, u, b):
    """(loss, dW, dU, db) of the RNN, forward then backward over the stored states. Plain
    NumPy as it stands (the reference); ``rnn_hand`` compiles this very function with @njit."""
    T, batch, _ = x.shape
    hidden = w.shape[0]
    hs = np.zeros((T + 1, batch, hidden))          # hs[0] = h_0 = 0, hs[t] = h_t
    loss = 0.0
    for t in range(T):
        h = np.tanh(np.dot(x[t], u) + np.dot(hs[t], w) + b)
        hs[t + 1] = h
        loss += np.sum(h * h)
    scale = 1.0 / (T * batch)
    wt = np.ascontiguousarray(w.T)
    dw = np.zeros_like(w)
    du = np.zeros_like(u)
    db = np.zeros_like(b)
    dh = np.zeros((batch, hidden))                  # dloss/dh_t from the steps after t
    for t in range(T - 1, -1, -1):
        h = hs[t + 1]
        da = (dh + (2.0 * scale) * h) * (1.0 - h * h)   # through tanh
        dw += np.dot(hs[t].T, da)
        du += np.dot(x[t].T, da)
        db += da.sum(axis=0)
        dh = np.dot(da, wt)
    return loss * scale, dw, du, db


_rnn_hand = None


def rnn_hand():
    """``bptt`` compiled with @njit (and JIT-warmed): f(x, W, U, b) -> (loss, dW, dU, db)."""
    global _rnn_hand
    if _rnn_hand is None:
        import numba
        hand = numba.njit(bptt)
        w, u, b = rnn_weights()
        hand(rnn_data(2), w, u, b)
        _rnn_hand = hand
    return _rnn_hand


def rnn_check(got, want, rtol: float = RNN_RTOL) -> float:
    """Largest deviation of (loss, dW, dU, db) ``got`` from ``want``, each relative to the largest
    magnitude of its array; AssertionError above ``rtol``."""
    worst = 0.0
    for name, g, w in zip(("loss", "dW", "dU", "db"), got, want):
        g, w = np.asarray(g, np.float64), np.asarray(w, np.float64)
        dev = float(np.max(np.abs(g - w)) / max(np.max(np.abs(w)), 1e-300))
        if not dev <= rtol:
            raise AssertionError(f"W7 {name}: deviation {dev:.2e} relative to its scale > {rtol:g}")
        worst = max(worst, dev)
    return worst


# ---------------------------------------------------------------------------------------------
# cold compile in a new process
# ---------------------------------------------------------------------------------------------

# Run as `python -c _RNN_CHILD <this file> <T> <variant> <hand: 0/1>`; prints one JSON line.
_RNN_CHILD = r"""
import sys, time, json, timeit
import importlib.util
spec = importlib.util.spec_from_file_location("jg_bench_rnn_workloads", sys.argv[1])
R = importlib.util.module_from_spec(spec); spec.loader.exec_module(R)
import jitgrad as jg
T, variant, hand = int(sys.argv[2]), sys.argv[3], sys.argv[4] == "1"
x = R.rnn_data(T)
t0 = time.perf_counter()
inputs, outputs = R.rnn_graph(T, variant)
t1 = time.perf_counter()
f = jg.compile(inputs, outputs, target="cpu", wait=True)
got = f(x)
t2 = time.perf_counter()
weights = R.rnn_weights()
dev = R.rnn_check(got, R.bptt(x, *weights))

def best(fn):
    number = max(1, int(0.05 / max(timeit.timeit(fn, number=1), 1e-7)))
    return min(timeit.repeat(fn, number=number, repeat=7)) / number

fns = {"per_call": lambda: f(x)}
if hand:
    g = R.rnn_hand()
    R.rnn_check(g(x, *weights), got)
    fns["hand_per_call"] = lambda: g(x, *weights)
times = {k: best(fn) for k, fn in fns.items()}
print(json.dumps({"build": t1 - t0, "compile": t2 - t0, "deviation": dev, **times}))
"""


def rnn_cold(T: int, variant: str = "scan", hand: bool = False, timeout_s: float = 1800) -> dict:
    """Build, compile (empty JITGRAD_CACHE_DIR and NUMBA_CACHE_DIR) and time ``rnn_graph(T,
    variant)`` in a new process: {"build": s to build the graph and its gradient, "compile": s
    from building to the first compiled result (build included), "per_call": s (best of 7),
    "deviation": from ``bptt`` in NumPy (asserted <= RNN_RTOL)}, with ``hand``
    "hand_per_call" too: the @njit loop timed in the same process."""
    try:                                    # benchmarks._workloads (asv) or _workloads (script)
        from . import _workloads as W
    except ImportError:
        import _workloads as W
    with tempfile.TemporaryDirectory(prefix="jg-bench-rnn-") as d:
        out = subprocess.run([sys.executable, "-c", _RNN_CHILD, str(HERE / "_rnn_workloads.py"), str(T),
                              variant, "1" if hand else "0"], env=W._child_env(pathlib.Path(d)),
                             capture_output=True, text=True, timeout=timeout_s)
    if out.returncode != 0:
        raise RuntimeError(f"W7 child ({T}, {variant}) failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])
