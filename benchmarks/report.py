"""Issue 3's and issue 4's benchmark tables, measured in one process: ``python benchmarks/report.py``.

Each workload runs next to its hand-written baseline (median of several
``timeit`` repeats, after compile and JIT warm-up; W4 and W5, linear algebra,
best of interleaved repeats, see ``best_per_call``); W6 and the memory row run
subprocesses (see ``_workloads.py``). Prints Markdown: the table of issues 3
and 4 (figure, baseline, ratio, target, pass/miss), then the other figures
measured on the way (NumPy eager W2, the @njit W3 step, W6's breakdown, ...).

About 3-4 minutes (W4 and W5: 45 s) on 2 cores once the 64-layer chain of the memory row is in
the jitgrad cache (``JITGRAD_CACHE_DIR``, default ~/.cache/jitgrad); its first
compile takes a minute or more. Options: ``--quick`` (fewer repeats, one cold
W6 run), ``--no-subprocess`` (skip W6, W7, large, jacobian and memory), ``--memory-all`` (also the
chain with the weights' gradients), ``--only w4,w5`` (just those measures, from
w1, w2, w3, w4, w5, w6, w7, w8, large, jacobian, memory, numba_opt). ``numba_opt`` (issue 13)
compiles W3 and W2 cold at each NUMBA_OPT level, 8 new processes (about 2 minutes). W7 (issue 14,
an RNN through ``jg.scan``) takes about 10 minutes, 8 of them compiling the unrolled graph at T = 200 (``--quick``: 2).
W8 (issue 16, an SGD step of a LeNet-style CNN) runs jitgrad, a hand-written NumPy im2col step
and, when torch is importable, PyTorch eager in this process (``_cnn_workloads.py``).
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
import timeit

import numpy as np

try:                                    # imported by asv as benchmarks.report
    from . import _linalg_workloads as L
    from . import _workloads as W
except ImportError:                     # run as a script
    import _linalg_workloads as L
    import _workloads as W

import jitgrad as jg


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------

def per_call(fn, number: int, repeat: int) -> float:
    """Median over `repeat` runs of the mean seconds per call over `number` calls."""
    return statistics.median(timeit.repeat(fn, number=number, repeat=repeat)) / number


def best_per_call(fns: dict, number: dict, repeat: int) -> dict:
    """For each named function, the best over `repeat` rounds of the mean seconds per call
    over `number[name]` calls, the functions taking turns within each round: a burst of load
    from another process then hits every function of a ratio alike, and the best round is the
    one least disturbed."""
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeat):
        for name, fn in fns.items():
            best[name] = min(best[name], timeit.timeit(fn, number=number[name]) / number[name])
    return best


def calls_for(fn, seconds: float) -> int:
    """How many calls of `fn` (already warm) take about `seconds`."""
    return max(1, round(seconds / timeit.timeit(fn, number=1)))


def fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.2f} us"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def fmt_ratio(r: float | None) -> str:
    return "n/a" if r is None else f"{r:.2f}x"


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def verdict(ok) -> str:
    return "n/a" if ok is None else ("pass" if ok else "**miss**")


class Report:
    def __init__(self):
        self.rows: list[tuple] = []          # the table
        self.extra: list[tuple] = []         # other figures
        self.notes: list[str] = []
        self.checked: set[str] = set()       # checks run once per report (see _check_linalg_baselines)

    def row(self, workload, measure, figure, baseline, r, target, ok):
        self.rows.append((workload, measure, figure, baseline, r, target, verdict(ok)))

    def other(self, what, figure, note=""):
        self.extra.append((what, figure, note))

    def note(self, text):
        self.notes.append(text)
        print(f"  note: {text}", file=sys.stderr)


def progress(text):
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def guarded(rep: Report, name: str, fn, *args):
    try:
        return fn(rep, *args)
    except Exception as error:           # one broken workload must not hide the others
        rep.note(f"{name} failed: {type(error).__name__}: {str(error).splitlines()[0][:300]}")
        return None


# ---------------------------------------------------------------------------------------------
# workloads
# ---------------------------------------------------------------------------------------------

# Issue 13's absolute targets were set on the machine of its filing, where these baselines took:
FILING_NJIT_W1 = 0.31e-6     # s per call of W1's njit closed form
FILING_NJIT_W6 = 2.1         # s to the first loss of the @njit W3 step, new process, cold cache


def scaled(rep: Report, what: str, baseline: str, measured: float, at_filing: float, target: float,
           figure: float):
    """Note how fast this machine is against issue 13's filing machine, by a baseline measured in
    this run, and what an absolute target set there comes to here."""
    factor = measured / at_filing
    here = target * factor
    rep.note(f"{baseline} took {fmt_time(measured)} here, {fmt_time(at_filing)} at issue 13's filing "
             f"({factor:.2f}x): scaled alike, {what} target {fmt_time(target)} is {fmt_time(here)} "
             f"here; measured {fmt_time(figure)} ({'within' if figure <= here else 'over'} it)")


def measure_w1(rep: Report, quick: bool):
    progress("W1")
    f, g = W.w1_jitgrad("cpu"), W.w1_njit()
    got, want = f(2.0, 3.0), g(2.0, 3.0)
    if not np.allclose([float(v) for v in got], want, rtol=1e-12):
        rep.note(f"W1: jitgrad {got} != closed form {want}")
    number, repeat = (5_000, 5) if quick else (20_000, 9)
    t_jg = per_call(lambda: f(2.0, 3.0), number, repeat)
    t_nj = per_call(lambda: g(2.0, 3.0), number, repeat)
    r = ratio(t_jg, t_nj)
    rep.row("W1 tiny graph, value + 2 grads", "time per call (Python floats)", fmt_time(t_jg),
            f"njit {fmt_time(t_nj)}", fmt_ratio(r), "<= 1.0 us (issue 13)", t_jg <= 1.0e-6)
    scaled(rep, "W1's", "the njit closed form", t_nj, FILING_NJIT_W1, 1.0e-6, t_jg)


W2_REPEATS = {100_000: (20, 7), 1_000_000: (3, 5), 10_000_000: (1, 3)}


def measure_w2(rep: Report, quick: bool):
    f = W.w2_jitgrad("cpu")
    g = W.w2_njit()
    xs = W.w2_data(1000)
    a, b = f(xs), g(xs)
    if not (np.isclose(float(a[0]), b[0], rtol=1e-12) and np.allclose(a[1], b[1], rtol=1e-12, atol=1e-14)):
        rep.note("W2: jitgrad and the fused loop disagree")
    try:
        fp = W.w2_jitgrad("cpu", parallel=True)
        fp(xs)
        parallel_error = None
    except Exception as error:
        fp, parallel_error = None, f"{type(error).__name__}: {error}"
        rep.note(f"W2 parallel=True raised {parallel_error}")
    for n, (number, repeat) in W2_REPEATS.items():
        progress(f"W2 n={n:.0e}")
        if quick:
            repeat = max(1, repeat - 2)
        x = W.w2_data(n)
        f(x), g(x)
        t_jg = per_call(lambda: f(x), number, repeat)
        t_nj = per_call(lambda: g(x), number, repeat)
        r = ratio(t_jg, t_nj)
        rep.row(f"W2 elementwise chain, n = {n:.0e}", "value + grad, serial", fmt_time(t_jg),
                f"fused njit loop {fmt_time(t_nj)}", fmt_ratio(r), "<= 0.5x (issue 13)", r <= 0.5)
        if fp is not None:
            fp(x)
            t_par = per_call(lambda: fp(x), number, repeat)
            r = ratio(t_par, t_nj)
            rep.row(f"W2 elementwise chain, n = {n:.0e}", "value + grad, `parallel=True`",
                    fmt_time(t_par), f"fused njit loop {fmt_time(t_nj)}", fmt_ratio(r),
                    "<= 0.3x (issue 13)", r <= 0.3)
        else:
            rep.row(f"W2 elementwise chain, n = {n:.0e}", "value + grad, `parallel=True`",
                    "raised", f"fused njit loop {fmt_time(t_nj)}", "n/a", "<= 0.3x (issue 13)", False)
        t_np = per_call(lambda: W.w2_numpy(x), 1, 2 if n >= 10_000_000 else repeat)
        rep.other(f"W2 NumPy eager forward+backward, n = {n:.0e}", fmt_time(t_np),
                  f"{fmt_ratio(ratio(t_np, t_nj))} the fused njit loop")


def measure_w3(rep: Report, quick: bool):
    progress("W3")
    x, labels = W.w3_data()
    step, numpy_step = W.w3_jitgrad("cpu"), W.W3NumpyStep()
    l1, l2 = float(step(x, labels)), float(numpy_step(x, labels))
    if not np.isclose(l1, l2, rtol=1e-5):
        rep.note(f"W3: first-step losses differ: jitgrad {l1}, NumPy {l2}")
    progress("W3 @njit step (compiles on first use, then cached in benchmarks/__pycache__)")
    njit_step = W.load_njit_mlp().NjitStep(W.w3_weights())
    njit_step(x, labels)
    number, repeat = (10, 5) if quick else (30, 9)
    try:
        import threadpoolctl  # noqa: F401
        settings = [None, 1]
    except ImportError:
        settings = [None]
        rep.note("threadpoolctl missing: W3 only with the default BLAS threads")
    for threads in settings:
        with W.blas_threads(threads):
            t_jg = per_call(lambda: step(x, labels), number, repeat)
            t_np = per_call(lambda: numpy_step(x, labels), number, repeat)
            t_nj = per_call(lambda: njit_step(x, labels), number, repeat)
        r = ratio(t_jg, t_np)
        label = "default BLAS threads" if threads is None else f"BLAS limited to {threads} thread"
        if threads is None:
            rep.row("W3 MLP 784-256-256-10 SGD step, f32, batch 128", f"time per step, {label}",
                    fmt_time(t_jg), f"NumPy {fmt_time(t_np)}", fmt_ratio(r), "<= 1.0x", r <= 1.0)
        else:
            rep.other(f"W3 jitgrad step, {label}", fmt_time(t_jg),
                      f"NumPy step {fmt_time(t_np)}: {fmt_ratio(r)}")
        rep.other(f"W3 step hand-written as one @njit, {label}", fmt_time(t_nj),
                  f"{fmt_ratio(ratio(t_nj, t_np))} the NumPy step")


def measure_w6(rep: Report, quick: bool):
    import pathlib
    import tempfile
    cold_runs = 1 if quick else 2
    warm_runs = 2 if quick else 3
    results = {}
    for which in ("jitgrad", "tiered", "njit"):
        progress(f"W6 {which}: {cold_runs} cold + {warm_runs} warm subprocesses")
        cold = [W.w6_cold(which) for _ in range(cold_runs if which != "njit" else 1)]
        with tempfile.TemporaryDirectory(prefix="jg-report-w6-") as d:
            W.w6_first_result(pathlib.Path(d), which)
            warm = [W.w6_first_result(pathlib.Path(d), which) for _ in range(warm_runs)]
        results[which] = cold, warm
        for label, runs in (("cold", cold), ("warm", warm)):
            rep.other(f"W6 {which} {label}: build + compile / first call",
                      " / ".join(fmt_time(statistics.median(r[k] for r in runs))
                                 for k in ("build_compile", "first_call")),
                      f"median of {len(runs)}; each run's total: "
                      + ", ".join(f"{r['total']:.2f} s" for r in runs))
    if results["jitgrad"][0][0].get("numba_imported_by_jitgrad"):
        rep.note("`import jitgrad` imports numba: its import time is outside the W6 figures")
    (jc, jw), (tc, tw), (nc, nw) = results["jitgrad"], results["tiered"], results["njit"]
    cold_jg = statistics.median(r["total"] for r in jc)
    cold_nj = statistics.median(r["total"] for r in nc)
    warm_jg = statistics.median(r["total"] for r in jw)
    warm_nj = statistics.median(r["total"] for r in nw)
    rep.row("W6 compile: W3 step, cold caches", "new process, after `import jitgrad` to first loss",
            fmt_time(cold_jg), f"@njit step {fmt_time(cold_nj)}", fmt_ratio(ratio(cold_jg, cold_nj)),
            "<= 3 s", cold_jg <= 3.0)
    rep.row("W6 compile: W3 step, warm cache", "new process, after `import jitgrad` to first loss",
            fmt_time(warm_jg), f"@njit step {fmt_time(warm_nj)}", fmt_ratio(ratio(warm_jg, warm_nj)),
            "<= 0.3 s", warm_jg <= 0.3)
    first_cold, first_warm = (statistics.median(r["total"] for r in runs) for runs in (tc, tw))
    compiled_cold = statistics.median(r["compiled"] for r in tc)
    rep.row("W6 tiered (the default): W3 step, cold caches", "new process, to the first loss",
            fmt_time(first_cold), f"compiled first {fmt_time(cold_jg)}", fmt_ratio(ratio(first_cold, cold_jg)),
            "<= 1.0 s", first_cold <= 1.0)
    rep.row("W6 tiered (the default): W3 step, warm cache", "new process, to the first loss",
            fmt_time(first_warm), f"compiled first {fmt_time(warm_jg)}", fmt_ratio(ratio(first_warm, warm_jg)),
            "<= 0.3 s", first_warm <= 0.3)
    rep.row("W6 tiered: W3 step, cold caches", "new process, to the compiled tier (stepping meanwhile)",
            fmt_time(compiled_cold), f"compiled first {fmt_time(cold_jg)}", fmt_ratio(ratio(compiled_cold, cold_jg)),
            "<= 5 s", compiled_cold <= 5.0)
    scaled(rep, "the compiled tier's", "the hand-written @njit step's cold compile", cold_nj,
           FILING_NJIT_W6, 5.0, compiled_cold)


def measure_w7(rep: Report, quick: bool):
    """Issue 14's W7: an RNN (hidden 64, batch 32, inputs 16), value + gradient w.r.t. W, U, b
    (``_rnn_workloads.py``). Compile times cold, each in a new process with empty caches: scan at
    T = 20, 200 and 2000, unrolled at T = 20 and, unless quick, 200 (2000 would take hours). Per
    call at T = 200: scan against the hand-written @njit BPTT loop in this process (best of
    interleaved repeats); unrolled against the same loop timed in the unrolled graph's process."""
    try:
        from . import _rnn_workloads as R
    except ImportError:
        import _rnn_workloads as R
    T, runs = R.RNN_T, 1 if quick else 2
    workload = "W7 RNN hidden 64, batch 32, value + gradient"
    cold = {}
    for t in (20, 2000, T):
        progress(f"W7 scan T={t}: {runs if t != T else 1} cold compile(s), new process")
        cold["scan", t] = [R.rnn_cold(t, "scan") for _ in range(runs if t != T else 1)]
    unrolled = (20,) if quick else (20, T)
    for t in unrolled:
        progress(f"W7 unrolled T={t}: cold compile, new process" + (" (about 8 minutes)" if t > 20 else ""))
        cold["unrolled", t] = [R.rnn_cold(t, "unrolled", hand=True)]
    compile_s = {key: statistics.median(r["compile"] for r in rs) for key, rs in cold.items()}
    for (variant, t), rs in cold.items():
        rep.other(f"W7 {variant}, T = {t}, cold: build graph / build + compile + first call / per call",
                  " / ".join(fmt_time(statistics.median(r[k] for r in rs)) for k in ("build", "compile", "per_call")),
                  f"median of {len(rs)} (compiles " + ", ".join(f"{r['compile']:.2f} s" for r in rs)
                  + f"); deviation from the NumPy BPTT {max(r['deviation'] for r in rs):.1e}")

    c20, c2000 = compile_s["scan", 20], compile_s["scan", 2000]
    r = ratio(c2000, c20)
    rep.row(workload, "compile (cold, new process): scan, T = 2000 vs T = 20", fmt_time(c2000),
            f"scan T = 20 {fmt_time(c20)}", fmt_ratio(r), "0.8x - 1.2x", 0.8 <= r <= 1.2)
    steady = {t: statistics.median(r["per_call"] for r in cold["scan", t]) for t in (20, 2000)}
    rep.other("W7 scan compile, T = 2000 vs T = 20, less one steady call each",
              fmt_ratio(ratio(c2000 - steady[2000], c20 - steady[20])),
              f"the first call, part of the row above, runs the T steps ({fmt_time(steady[2000])} at T = 2000)")
    for t in unrolled:
        rep.row(workload, f"compile (cold, new process): unrolled, T = {t}", fmt_time(compile_s["unrolled", t]),
                f"scan T = {t} {fmt_time(compile_s['scan', t])}",
                fmt_ratio(ratio(compile_s["unrolled", t], compile_s["scan", t])), "", None)
    skipped = "T = 200 and 2000 (--quick)" if quick else "T = 2000"
    rep.other(f"W7 unrolled, {skipped}", "not built", "its compile grows with T: far too slow (see T = 20"
              + ("" if quick else ", 200") + ")")

    progress(f"W7 per call T={T}: scan (compiled in this process) and the @njit BPTT loop")
    x, weights = R.rnn_data(T), R.rnn_weights()
    f, hand = R.rnn_jitgrad(T, "scan"), R.rnn_hand()
    try:
        rep.other(f"W7 T = {T}: scan vs the @njit BPTT loop", f"{R.rnn_check(f(x), hand(x, *weights)):.1e}",
                  f"largest deviation relative to each array's scale (asserted rtol {R.RNN_RTOL:g})")
    except AssertionError as error:
        rep.note(f"W7: scan and the hand-written loop disagree: {error}")
    fns = {"scan": lambda: f(x), "hand": lambda: hand(x, *weights), "numpy": lambda: R.bptt(x, *weights)}
    number = {name: calls_for(fn, 0.05 if quick else 0.1) for name, fn in fns.items()}
    t = best_per_call(fns, number, 3 if quick else 7)
    r = ratio(t["scan"], t["hand"])
    rep.row(workload, f"per call, T = {T}: scan vs hand-written @njit BPTT", fmt_time(t["scan"]),
            f"njit {fmt_time(t['hand'])}", fmt_ratio(r), "<= 1.3x", r <= 1.3)
    rep.other(f"W7 T = {T}: the same BPTT loop in NumPy (not compiled)", fmt_time(t["numpy"]),
              f"{fmt_ratio(ratio(t['numpy'], t['hand']))} the @njit loop (NumPy's tanh is vectorised)")
    u = cold["unrolled", unrolled[-1]][0]
    rep.row(workload, f"per call, T = {unrolled[-1]}: unrolled vs hand-written @njit BPTT", fmt_time(u["per_call"]),
            f"njit {fmt_time(u['hand_per_call'])}", fmt_ratio(ratio(u["per_call"], u["hand_per_call"])), "", None)


def measure_w8(rep: Report, quick: bool):
    """Issue 16's W8: one SGD step of a LeNet-style CNN, float32, batch 64 (``_cnn_workloads.py``),
    jitgrad against the hand-written NumPy im2col step and PyTorch eager (when importable), best
    of interleaved repeats, at the default threads and with the BLAS pools and PyTorch's
    intra-op threads limited to 1. First one step of each from the same weights, checked
    against the NumPy step."""
    try:
        from . import _cnn_workloads as C
    except ImportError:
        import _cnn_workloads as C
    workload = "W8 CNN conv5x5x16-pool-conv5x5x32-pool-dense10 SGD step, f32, batch 64"
    try:
        import torch  # noqa: F401   (imported before cnn_threads, so that it limits torch too)
    except ImportError:
        rep.note("W8: torch is not installed: no PyTorch rows (it stays out of jitgrad's dependencies; "
                 "install it beside jitgrad to measure them)")
    progress("W8: one step of jitgrad (compiles) and PyTorch against the NumPy step")
    try:
        dev = C.cnn_check()
        rep.other("W8 one step from the same weights, vs the NumPy step",
                  ", ".join(f"{name} {d:.1e}" for name, d in dev.items()),
                  f"largest deviation of the loss and updated weights relative to each array's scale "
                  f"(asserted rtol {C.CNN_RTOL:g}), \"update\": of old - new weights ({C.CNN_UPDATE_RTOL:g})")
    except AssertionError as error:
        rep.note(str(error)[:500])
    x, labels = C.cnn_data()
    t0 = time.perf_counter()
    steps = {"jitgrad": C.jitgrad_step(C.cnn_weights(), "cpu")}
    steps["jitgrad"](x, labels)
    rep.other("W8 jitgrad step: build + compile + first call", fmt_time(time.perf_counter() - t0),
              "the second compile of this graph in the process (cnn_check compiled it first)")
    steps["numpy"] = C.numpy_step(C.cnn_weights())
    torch_step = C.torch_step(C.cnn_weights())
    if torch_step is not None:
        steps["torch"] = torch_step
    try:
        import threadpoolctl  # noqa: F401
        settings = [None, 1]
    except ImportError:
        settings = [None]
        rep.note("threadpoolctl missing: W8 only with the default threads")
    fns = {name: (lambda step=step: step(x, labels)) for name, step in steps.items()}
    for threads in settings:
        label = ("default threads" if threads is None
                 else f"BLAS and PyTorch limited to {threads} thread")
        progress(f"W8 per step, {label}")
        with C.cnn_threads(threads):
            for fn in fns.values():
                fn()
            number = {name: calls_for(fn, 0.1 if quick else 0.25) for name, fn in fns.items()}
            t = best_per_call(fns, number, 3 if quick else 7)
        r = ratio(t["jitgrad"], t["numpy"])
        rep.row(workload, f"time per step vs hand-written NumPy im2col, {label}", fmt_time(t["jitgrad"]),
                f"NumPy {fmt_time(t['numpy'])}", fmt_ratio(r), "<= 1.0x", r <= 1.0)
        if "torch" in t:
            r = ratio(t["jitgrad"], t["torch"])
            rep.row(workload, f"time per step vs PyTorch eager, {label}", fmt_time(t["jitgrad"]),
                    f"PyTorch {fmt_time(t['torch'])}", fmt_ratio(r), "<= 1.5x", r <= 1.5)
            rep.other(f"W8 NumPy step vs PyTorch eager, {label}", fmt_ratio(ratio(t["numpy"], t["torch"])),
                      f"NumPy {fmt_time(t['numpy'])}, PyTorch {fmt_time(t['torch'])}")
        else:
            rep.row(workload, f"time per step vs PyTorch eager, {label}", fmt_time(t["jitgrad"]),
                    "no torch", "n/a", "<= 1.5x", None)
    losses = {name: float(fn()) for name, fn in fns.items()}
    if not all(np.isfinite(v) for v in losses.values()):
        rep.note(f"W8: a loss is not finite after the timed steps: {losses}")


def measure_large(rep: Report, quick: bool):
    """First result and compiled tier of graphs whose glue program is long (tiered, cold)."""
    caps = {"chain": 60, "jacobian": 120, "jacobian3": 120 if quick else 600}
    targets = {"chain": 10.0, "jacobian": None, "jacobian3": 60.0}
    for which, title in W.LARGE_GRAPHS.items():
        progress(f"large graphs: {which} (compiled tier awaited up to {caps[which]} s)")
        r = W.large_first_result(which, caps[which])
        compiled = f"{r['compiled']:.1f} s" if r["compiled"] is not None else f"> {caps[which]} s"
        rep.row(f"Large graph: {title}", "new process, cold, tiered: first result",
                fmt_time(r["first"]), f"compiled tier at {compiled}", "", "<= 1 s", r["first"] <= 1.0)
        if targets[which] is not None:
            rep.row(f"Large graph: {title}", "new process, cold: compiled tier reached", compiled, "", "",
                    f"<= {targets[which]:.0f} s", r["compiled"] is not None and r["compiled"] <= targets[which])


def measure_jacobian(rep: Report, quick: bool):
    """jg.jacobian of tanh(A @ x), one pass mapped with jg.vmap, against the unrolled graph of one
    pass per unit vector (n = 100 only: at n = 1000 it would be 1000 passes), new processes, cold."""
    for n in (100,) if quick else (100, 1000):
        for mode in ("fwd", "rev"):
            progress(f"jacobian n={n} {mode}: jg.vmap")
            mapped = W.jacobian_cold(n, mode, "vmap")
            workload = f"Jacobian of tanh(A @ x), n = {n}, {mode}"
            rep.other(f"{workload}: NumPy closed form diag(1 - t^2) A", fmt_time(mapped["closed_form"]))
            if n > 100:
                rep.row(workload, "compile (cold, new process)", fmt_time(mapped["compile"]),
                        "unrolled: not built (1000 passes)", "", "", None)
                rep.row(workload, "per call", fmt_time(mapped["per_call"]),
                        f"closed form {fmt_time(mapped['closed_form'])}",
                        fmt_ratio(ratio(mapped["per_call"], mapped["closed_form"])), "", None)
                continue
            progress(f"jacobian n={n} {mode}: unrolled, one pass per unit vector (about a minute)")
            unrolled = W.jacobian_cold(n, mode, "unrolled")
            rep.row(workload, "compile (cold, new process)", fmt_time(mapped["compile"]),
                    f"unrolled {fmt_time(unrolled['compile'])}",
                    fmt_ratio(ratio(mapped["compile"], unrolled["compile"])), "", None)
            rep.row(workload, "per call", fmt_time(mapped["per_call"]), f"unrolled {fmt_time(unrolled['per_call'])}",
                    fmt_ratio(ratio(mapped["per_call"], unrolled["per_call"])), "", None)


def _kib_as_mib(kib) -> str:
    return "n/a" if kib is None else format(kib / 1024, ".1f")


def measure_memory(rep: Report, quick: bool, wrts=("x",)):
    def mib(run, key="total_bytes"):
        return run[key] / 2**20

    for wrt in wrts:
        progress(f"memory, grad w.r.t. {wrt}: jitgrad (the first run compiles the chain)")
        none = W.chain_peak("none", wrt)
        numpy_ = W.chain_peak("numpy", wrt)
        if not np.isclose(none["loss"], numpy_["loss"], rtol=1e-10):
            rep.note(f"memory: losses differ: jitgrad {none['loss']}, NumPy {numpy_['loss']}")
        what = "x" if wrt == "x" else "x and all 64 W"
        runs = [("without checkpointing", none)]
        if W.has_checkpoint():
            progress(f"memory, grad w.r.t. {wrt}: jitgrad with jg.checkpoint")
            runs.append(("with jg.checkpoint every 8 layers", W.chain_peak("checkpoint", wrt)))
        for label, run in runs + [("NumPy keeping every activation", numpy_)]:
            rep.other(f"Memory chain, grad w.r.t. {what}: {label}", f"{mib(run):.2f} MiB",
                      f"kept by the executable {mib(run, 'held_bytes'):.2f} + first call "
                      f"{mib(run, 'call_bytes'):.2f}; next call {mib(run, 'steady_bytes'):.2f}; "
                      f"RSS growth {_kib_as_mib(run['rss_kib'])}; first build+compile+call "
                      f"{run['compile_s']:.1f} s")
        measure = f"peak memory of a reverse pass, grad w.r.t. {what}"
        if len(runs) == 2:
            r = ratio(mib(runs[1][1]), mib(none))
            rep.row("Memory: 64-layer tanh chain 256 wide, batch 64", measure,
                    f"checkpoint {mib(runs[1][1]):.2f} MiB", f"none {mib(none):.2f} MiB",
                    fmt_ratio(r), "<= 0.4x", r is not None and r <= 0.4)
        else:
            rep.row("Memory: 64-layer tanh chain 256 wide, batch 64", measure,
                    "no `jg.checkpoint`", f"none {mib(none):.2f} MiB", "n/a", "<= 0.4x", None)


def _check_linalg_baselines(rep: Report) -> None:
    """L.verify() once per report: the hand-written W4/W5 gradients equal jitgrad's (rtol 1e-8)."""
    if "linalg" in rep.checked:
        return
    rep.checked.add("linalg")
    progress("W4/W5: checking the hand-written gradients against jitgrad's (small sizes)")
    try:
        rep.other("W4/W5 hand-written gradients vs jitgrad's, small sizes", f"{L.verify():.1e}",
                  "largest deviation relative to the array's scale (asserted rtol 1e-8)")
    except AssertionError as error:
        rep.note(f"W4/W5: a hand-written baseline disagrees with jitgrad: {str(error).strip()[:300]}")


def _linalg_times(fns: dict, quick: bool) -> dict:
    """best_per_call of warm functions, about 20 ms (quick) or 50 ms per sample. Malloc keeps
    freed memory from here on (L.keep_freed_heap: W1-W3 ran before, W6 and memory run in
    subprocesses), or the hand-written W4 pays ~1000 page faults a call."""
    L.keep_freed_heap()
    for fn in fns.values():
        fn()
    number = {name: calls_for(fn, 0.02 if quick else 0.05) for name, fn in fns.items()}
    return best_per_call(fns, number, 3 if quick else 7)


def _linalg_figures(rep: Report, workload: str, t: dict, label: str, in_table: bool):
    """The two ratios of issue 4 from one set of interleaved times: rows of the table or one
    "other" line. t: jitgrad "value" and "grad" (value+gradient), "hand" and "hand_value"."""
    r_grad, r_hand = ratio(t["grad"], t["value"]), ratio(t["grad"], t["hand"])
    if in_table:
        rep.row(workload, f"value+gradient / value-only, {label}", fmt_time(t["grad"]),
                f"value-only {fmt_time(t['value'])}", fmt_ratio(r_grad), "<= 1.3x", r_grad <= 1.3)
        rep.row(workload, f"value+gradient vs hand-written SciPy, {label}", fmt_time(t["grad"]),
                f"hand {fmt_time(t['hand'])}", fmt_ratio(r_hand), "<= 1.1x", r_hand <= 1.1)
    else:
        rep.other(f"{workload}, {label}: value+gradient", fmt_time(t["grad"]),
                  f"{fmt_ratio(r_grad)} value-only ({fmt_time(t['value'])}); "
                  f"{fmt_ratio(r_hand)} hand-written ({fmt_time(t['hand'])})")
    rep.other(f"{workload}, {label}: value-only", fmt_time(t["value"]),
              f"{fmt_ratio(ratio(t['value'], t['hand_value']))} the hand-written value-only "
              f"({fmt_time(t['hand_value'])})")


def _blas_settings(rep: Report) -> list:
    try:
        import threadpoolctl  # noqa: F401
        return [None, 1]
    except ImportError:
        rep.note("threadpoolctl missing: W4/W5 only with the default BLAS threads")
        return [None]


def _blas_label(threads) -> str:
    return "default BLAS threads" if threads is None else f"BLAS limited to {threads} thread"


def measure_w4(rep: Report, quick: bool):
    """Issue 4's rows at n = 512 (k = 1, 32) with the default BLAS threads; everything else
    (smaller n, one BLAS thread, value-only vs the hand-written value-only) as other figures."""
    _check_linalg_baselines(rep)
    for threads in _blas_settings(rep):
        for n in L.W4_SIZES:
            for k in L.W4_RHS:
                progress(f"W4 n={n} k={k}, {_blas_label(threads)}")
                a, b = L.w4_data(n, k)
                fv, fg = L.w4_jitgrad(n, k, False), L.w4_jitgrad(n, k, True)
                with W.blas_threads(threads):
                    t = _linalg_times({"value": lambda: fv(a, b), "grad": lambda: fg(a, b),
                                       "hand": lambda: L.w4_hand_value_and_gradient(a, b),
                                       "hand_value": lambda: L.w4_hand_value(a, b)}, quick)
                _linalg_figures(rep, f"W4 sum(solve(A, B)^2), n = {n}, k = {k}", t,
                                _blas_label(threads), threads is None and n == L.W4_SIZES[-1])


def measure_w5(rep: Report, quick: bool):
    """Issue 4's rows at 512x512 (both losses) with the default BLAS threads; the rest as other
    figures. The hand-written value-only of sum(c * s) computes no singular vectors."""
    _check_linalg_baselines(rep)
    names = {"values": "sum(c * s)", "reconstruction": "sum(M * ((U * s) @ Vt))"}
    for threads in _blas_settings(rep):
        for size in L.W5_SIZES:
            for loss in L.W5_LOSSES:
                progress(f"W5 {size} {loss}, {_blas_label(threads)}")
                a, fixed = L.w5_data(size, loss)
                fv, fg = L.w5_jitgrad(size, loss, False), L.w5_jitgrad(size, loss, True)
                with W.blas_threads(threads):
                    t = _linalg_times({"value": lambda: fv(a, fixed), "grad": lambda: fg(a, fixed),
                                       "hand": lambda: L.w5_hand_value_and_gradient(a, fixed, loss),
                                       "hand_value": lambda: L.w5_hand_value(a, fixed, loss)}, quick)
                _linalg_figures(rep, f"W5 {names[loss]}, {size}", t, _blas_label(threads),
                                threads is None and size == L.W5_SIZES[-1])


# ---------------------------------------------------------------------------------------------

def measure_numba_opt(rep: Report, quick: bool):
    """Numba's optimisation level (NUMBA_OPT, 3 by default): cold compile time against the speed
    of what it compiles, each level in new processes, the levels taking turns."""
    levels, rounds = (3, 2, 1, 0), 1 if quick else 2
    runs = {level: [] for level in levels}
    for r in range(rounds):
        for level in levels:
            progress(f"NUMBA_OPT={level} (round {r + 1} of {rounds})")
            runs[level].append(W.numba_opt_run(level))
    best = {level: {k: min(run[k] for run in rs) for k in rs[0]} for level, rs in runs.items()}
    base = best[3]
    for level in levels[1:]:
        b = best[level]
        for what, compile_key, call_key, call_what in (
                ("W3 SGD step", "w3_compile", "w3_step", "step, 1 BLAS thread"),
                ("W2 n = 1e6", "w2_compile", "w2_call", "value + grad, serial")):
            rep.row(f"NUMBA_OPT={level} vs 3: {what}", f"cold compile; {call_what}",
                    f"{b[compile_key]:.2f} s; {fmt_time(b[call_key])}",
                    f"{base[compile_key]:.2f} s; {fmt_time(base[call_key])}",
                    f"{ratio(b[compile_key], base[compile_key]):.2f}x; {fmt_ratio(ratio(b[call_key], base[call_key]))}",
                    "", None)


MEASURES = {"w1": measure_w1, "w2": measure_w2, "w3": measure_w3, "w4": measure_w4,
            "w5": measure_w5, "w6": measure_w6, "w7": measure_w7, "w8": measure_w8, "large": measure_large,
            "jacobian": measure_jacobian, "memory": measure_memory, "numba_opt": measure_numba_opt}


def header() -> list[str]:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=W.HERE).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, cwd=W.HERE).stdout.strip()
        rev += " + uncommitted changes" if dirty else ""
    except OSError:
        rev = "?"
    import numba
    return [f"jitgrad {jg.__version__} at {rev}; numba {numba.__version__}, numpy {np.__version__}, "
            f"Python {platform.python_version()}; {os.cpu_count()} CPUs; "
            f"load average at start {os.getloadavg()[0]:.2f}"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--no-subprocess", action="store_true", help="skip W6, W7, large, jacobian and memory")
    parser.add_argument("--memory-all", action="store_true",
                        help="also the chain with the gradients of all 64 weights")
    parser.add_argument("--only", metavar="W4,W5",
                        help=f"comma-separated measures to run, of {','.join(MEASURES)} (default: all)")
    args = parser.parse_args(argv)
    only = set(MEASURES if args.only is None else args.only.lower().split(","))
    if only - set(MEASURES):
        parser.error(f"--only: unknown {','.join(sorted(only - set(MEASURES)))}; "
                     f"choose from {','.join(MEASURES)}")
    if args.no_subprocess:
        only -= {"w6", "w7", "large", "jacobian", "memory", "numba_opt"}
    command = "python benchmarks/report.py" + "".join(f" {a}" for a in (argv or sys.argv[1:]))
    start = time.perf_counter()
    load_start = os.getloadavg()[0]
    head = header()
    rep = Report()
    extra = {"memory": (("x", "all") if args.memory_all else ("x",),)}
    for name, measure in MEASURES.items():
        if name in only:
            guarded(rep, name.upper() if name.startswith("w") else name, measure, args.quick,
                    *extra.get(name, ()))
    elapsed = time.perf_counter() - start

    load_end = os.getloadavg()[0]
    if max(load_start, load_end) > 0.7:
        rep.note(f"the machine was busy (1-min load average {load_start:.2f} at start, {load_end:.2f} "
                 "at end, 2 cores would be free at 0): with other processes on the cores, "
                 "OpenBLAS's spinning threads make W3, W4 and W5 at the default BLAS threads "
                 "10-40x slower, and every figure is noisier")
    out = [f"Command: `{command}` ({elapsed:.0f} s). " + head[0]
           + f", at end {load_end:.2f}.", "",
           "| workload | measure | jitgrad | baseline | ratio | target | result |",
           "|---|---|---|---|---|---|---|"]
    out += ["| " + " | ".join(r) + " |" for r in rep.rows]
    if rep.extra:
        out += ["", "| other figures | value | note |", "|---|---|---|"]
        out += ["| " + " | ".join(r) + " |" for r in rep.extra]
    if rep.notes:
        out += [""] + [f"- {n}" for n in rep.notes]
    out += ["", "Times are medians of `timeit` repeats in one process after warm-up (W4, W5, W7's "
                "per call, W8: the best of interleaved repeats); ratios are jitgrad / baseline. W6 runs subprocesses "
                "with fresh (cold) or previously filled "
                "(warm) JITGRAD_CACHE_DIR and NUMBA_CACHE_DIR. Memory (tracemalloc, in a subprocess) is "
                "what compiling an already JIT-compiled graph keeps (jitgrad's workspace) plus the "
                "peak allocated during its first call; RSS growth is a cross-check."]
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
