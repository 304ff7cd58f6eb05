"""Forward vs reverse mode: the time to build a full Jacobian as the outputs grow.

The slides [001] ("Choose your fighter") time the Jacobian of f(x) = A x with
n = 100 inputs fixed and m outputs growing: forward mode needs one pass (a JVP)
per input, reverse mode one pass (a VJP) per output, so reverse wins for
m < n and forward for m > n. Here ``jg.jacobian(A @ x, x, mode="fwd"|"rev")``
builds the Jacobian graph (n JVPs or m VJPs, stacked), which is compiled once
per m and timed as the best of repeated calls; the script counts the passes in
the schedule, checks both Jacobians equal A, prints the table and where the
curves cross, and plots time vs m.

A is an input of the compiled function: as a constant, jitgrad's constant
folding would compute the whole Jacobian at compile time. The default target
is "numpy", the reference interpreter, which runs the schedule op by op with
no compile step. On "cpu" (``--target cpu``) the unrolled graph costs about
0.5 s of Numba compile per pass: a minute (measured) for a forward-mode graph
at n = 100, some 8 minutes (extrapolated) for reverse mode at m = 1000.

The passes are not equally dear: on "numpy" each reverse pass also copies A^T
into C order (the reference multiplies C-ordered copies, so its rounding does
not depend on views), which moves the measured crossing below m = n. Timings
on a busy machine are noisy; the crossing moves a little from run to run.

    python examples/forward_vs_reverse.py [--small] [--out DIR] [--target cpu]

Source: /work/shared/seeds/001 (Merkulov, slides).
"""
from __future__ import annotations

import math
import sys
import time

import numpy as np

import _common
import jitgrad as jg

N = 100


def jacobian_time(Av: np.ndarray, mode: str, target: str, budget: float):
    A, x = jg.input("A", Av.shape), jg.input("x", (N,))
    f = jg.compile([A, x], jg.jacobian(A @ x, x, mode=mode), target=target)
    passes = str(f.schedule).count("= matmul")
    xv = np.ones(N)
    J = f(Av, xv)                                       # the first call compiles on "cpu"
    best, spent, calls = math.inf, 0.0, 0
    while calls < 5 or (spent < budget and calls < 1000):     # best of >= 5 calls
        t0 = time.perf_counter()
        f(Av, xv)
        elapsed = time.perf_counter() - t0
        best, spent, calls = min(best, elapsed), spent + elapsed, calls + 1
    return best, passes, float(np.abs(J - Av).max())


def crossing(ms, t_fwd, t_rev):
    """m where forward and reverse take equal time (log-log interpolation), or None."""
    r = np.log(np.array(t_fwd) / np.array(t_rev))
    for i in range(len(ms) - 1):
        if r[i] > 0 >= r[i + 1]:
            w = r[i] / (r[i] - r[i + 1])
            return float(np.exp((1 - w) * np.log(ms[i]) + w * np.log(ms[i + 1]))), i
    return None, None


def main(argv=None) -> int:
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("--target", choices=["numpy", "cpu"], default="numpy",
                   help="where to run the Jacobian graphs ('cpu' compiles each one with Numba)")
    args = p.parse_args(argv)
    ms = [1, 10, 100, 300] if args.small else [1, 3, 10, 30, 100, 300, 1000]
    budget = 0.05 if args.small else 0.5            # seconds of calls per measurement
    rng = np.random.default_rng(0)

    print(f"Jacobian of f(x) = A x, n = {N} inputs, m outputs; target={args.target!r}, "
          f"best of >= 5 calls ({budget:g} s of calls each)")
    print(f"  {'m':>5}  {'fwd passes':>10} {'rev passes':>10}  {'fwd time':>9} {'rev time':>9}"
          f"  {'faster':>7}  {'max |J - A|':>11}")
    t_fwd, t_rev, worst = [], [], 0.0
    for m in ms:
        Av = rng.normal(size=(m, N))
        (tf, pf, ef), (tr, pr, er) = (jacobian_time(Av, mode, args.target, budget)
                                      for mode in ("fwd", "rev"))
        t_fwd.append(tf), t_rev.append(tr)
        worst = max(worst, ef, er)
        print(f"  {m:>5}  {pf:>10} {pr:>10}  {tf * 1e3:7.3f}ms {tr * 1e3:7.3f}ms"
              f"  {'fwd' if tf < tr else 'rev':>7}  {max(ef, er):11.1e}")
    print(f"both Jacobians equal A: {worst == 0} (max |J - A| = {worst:.1e})")

    m_star, i = crossing(ms, t_fwd, t_rev)
    print(f"theory: forward costs n = {N} passes, reverse m passes: they cross at m = n = {N}")
    if m_star is None:
        print("measured: the curves do not cross in this range of m")
    else:
        a, b = t_fwd[i + 1] / N, t_rev[i + 1] / ms[i + 1]     # seconds per pass near m*
        why = (" (the numpy target multiplies C-ordered copies, so each reverse pass first "
               "copies A^T)" if args.target == "numpy" else "")
        print(f"measured: they cross at m ~ {m_star:.0f}. At m = {ms[i + 1]} a forward pass "
              f"(A @ e_k) took {a * 1e6:.1f} us and a reverse pass (A^T @ e_k) {b * 1e6:.1f} us"
              f"{why}; n forward passes cost as much as m reverse ones at m ~ n a/b = "
              f"{N * a / b:.0f}")

    plt = _common.pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.loglog(ms, t_fwd, "o-", label=f"forward mode ({N} JVPs)")
    ax.loglog(ms, t_rev, "s-", label="reverse mode (m VJPs)")
    ax.axvline(N, color="gray", ls=":", label=f"theory: m = n = {N}")
    if m_star is not None:
        ax.axvline(m_star, color="red", ls="--", label=f"measured crossing: m ~ {m_star:.0f}")
    ax.set(xlabel="number of outputs m", ylabel="time per Jacobian (s)",
           title=f"Jacobian of f(x) = Ax, n = {N} inputs (target={args.target!r})")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    _common.save_figure(fig, args.out, "forward_vs_reverse.png")
    return 0 if worst == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
