"""Newton-Raphson with the derivatives computed by jitgrad.

The paper [004] (section VI, "Newton-Raphson method with automatic
differentiation") points out that AD removes the need to derive f' by hand and,
applied again to the derivative graph, gives the full n x n Hessian for Newton's
method in n dimensions. This script does both:

(a) a 1-D root of f(x) = x^3 - 2x - 5 (Newton's own example, from x0 = 2)
    with x <- x - f(x)/f'(x), f' from ``jg.grad``;
(b) the minimum of the n-dimensional Rosenbrock function (n = 10; 3 with
    ``--small``) with x <- x - H^-1 g: one compiled graph gives f, its
    gradient g (``jg.grad``) and its full n x n Hessian H (``jg.hessian``,
    forward mode over the reverse-mode gradient); NumPy solves H s = g;
(c) the root of (a) again, but the whole iteration inside the graph: a
    ``jg.while_loop`` runs Newton steps until |f(x)| < 1e-13, so one call
    returns the root and the number of steps, and forward mode (``jg.jvp``)
    through the loop gives how the root moves with the constant of
    x^3 - 2x - p, which the implicit function theorem says is 1 / f'(x*).

It prints the error per iteration with the number of correct digits, which
roughly doubles per step once the iterate is close (quadratic convergence),
and plots the errors on a log scale.

    python examples/newton.py [--small] [--out DIR]

Source: /work/shared/seeds/004 (Andrews, Hu & Ye, "Automatic Differentiation").
"""
from __future__ import annotations

import math
import sys

import numpy as np

import _common
import jitgrad as jg

ROOT = 2.0945514815423265      # the real root of x^3 - 2x - 5 (to double precision)


def digits(err: float) -> str:
    return "exact" if err == 0 else "    -" if err >= 1 else f"{-math.log10(err):5.1f}"


def newton_1d(x0: float, max_steps: int = 10) -> list[float]:
    x = jg.input("x", ())
    f = x ** 3 - 2 * x - 5
    fdf = jg.compile([x], [f] + jg.grad(f, [x]))
    print("(a) root of f(x) = x^3 - 2x - 5, x <- x - f(x)/f'(x), f' by jg.grad")
    print(f"  {'k':>2}  {'x_k':>20}  {'|x_k - root|':>12}  digits")
    xk, errors = x0, []
    for k in range(max_steps + 1):
        errors.append(abs(xk - ROOT))
        print(f"  {k:>2}  {xk:20.16f}  {errors[-1]:12.3e}  {digits(errors[-1])}")
        fv, dfv = fdf(xk)
        step = float(fv) / float(dfv)
        if errors[-1] == 0 or xk - step == xk:          # converged to the last bit
            break
        xk -= step
    return errors


def rosenbrock(x):
    return jg.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)


def newton_rosenbrock(n: int, max_steps: int = 50) -> list[float]:
    x = jg.input("x", (n,))
    f = rosenbrock(x)
    fgh = jg.compile([x], [f] + jg.grad(f, [x]) + [jg.hessian(f, x)])
    print(f"\n(b) minimum of the {n}-dimensional Rosenbrock function (at x = 1), "
          "x <- x - H^-1 g, H by jg.hessian")
    print(f"  {'k':>2}  {'f(x_k)':>10}  {'|grad f|':>10}  {'|x_k - 1|':>10}  digits")
    xk, errors = np.zeros(n), []                        # pure Newton steps from x0 = 0
    for k in range(max_steps + 1):
        fv, gv, hv = fgh(xk)
        errors.append(float(np.linalg.norm(xk - 1)))
        print(f"  {k:>2}  {float(fv):10.3e}  {np.linalg.norm(gv):10.3e}  {errors[-1]:10.3e}"
              f"  {digits(errors[-1])}")
        if errors[-1] == 0 or np.linalg.norm(gv) < 1e-14:
            break
        xk = xk - np.linalg.solve(hv, gv)
    print("  pure Newton steps (no line search): far from the minimum f goes up and down;"
          " close to it the digits double")
    return errors


def newton_in_the_graph(p: float = 5.0, tol: float = 1e-13) -> float:
    """(c): the iteration as a jg.while_loop; returns the root's error."""
    constant = jg.input("p", ())

    def f(x):
        return x ** 3 - 2 * x - constant

    def keep_going(carry):
        x, k = carry
        return jg.abs(f(x)) > tol

    def newton_step(carry):
        x, k = carry
        (slope,) = jg.grad(f(x), [x])
        return x - f(x) / slope, k + 1

    root, steps = jg.while_loop(keep_going, newton_step, (jg.constant(2.0), jg.constant(np.int64(0))))
    (droot,) = jg.jvp([root], [constant], [1.0])          # forward mode through every step
    solve = jg.compile([constant], [root, steps, droot], wait=True)
    x, k, dx = solve(p)
    implicit = 1 / (3 * float(x) ** 2 - 2)
    print(f"\n(c) the same root with the loop in the graph: jg.while_loop until |f(x)| < {tol:g}")
    print(f"  root {float(x):.16f} after {int(k)} steps, |x - root| = {abs(float(x) - ROOT):.1e}")
    print(f"  d root / d p by jg.jvp through the loop {float(dx):.15f}, "
          f"1 / f'(root) {implicit:.15f}, difference {abs(float(dx) - implicit):.1e}")
    return abs(float(x) - ROOT)


def main(argv=None) -> int:
    args = _common.parser(__doc__.splitlines()[0]).parse_args(argv)
    n = 3 if args.small else 10
    err_1d = newton_1d(2.0)
    err_nd = newton_rosenbrock(n)
    err_loop = newton_in_the_graph()
    print(f"\nfinal errors: 1-D {err_1d[-1]:.1e} after {len(err_1d) - 1} steps, "
          f"Rosenbrock n={n} {err_nd[-1]:.1e} after {len(err_nd) - 1} steps, "
          f"while_loop {err_loop:.1e}")

    plt = _common.pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for errs, label, marker in [(err_1d, "1-D root of $x^3 - 2x - 5$", "o"),
                                (err_nd, f"Rosenbrock minimum, n = {n}", "s")]:
        ks = [k for k, e in enumerate(errs) if e > 0]   # an exact 0 has no place on a log axis
        if len(ks) < len(errs):
            label += f" (error exactly 0 at k = {len(errs) - 1})"
        ax.semilogy(ks, [errs[k] for k in ks], marker=marker, label=label)
    ax.axhline(np.finfo(float).eps, color="gray", ls=":", lw=1, label="machine epsilon")
    ax.set(xlabel="Newton iteration k", ylabel=r"error  $\|x_k - x^*\|$",
           title="Newton-Raphson with jitgrad derivatives: quadratic convergence")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 0.06), fontsize=9)
    _common.save_figure(fig, args.out, "newton.png")
    return 0 if max(err_1d[-1], err_nd[-1], err_loop) < 1e-10 else 1


if __name__ == "__main__":
    sys.exit(main())
