"""Lagrange multipliers: Newton's method on the stationarity of the Lagrangian.

The tutorial notes [003] ("Lagrange Multipliers") minimize f(x) subject to
g(x) = 0 by making the Lagrangian L(x, lam) = f(x) - lam g(x) stationary:
grad_x f = lam grad_x g and g(x) = 0, d + m equations in d + m unknowns.  Here
that system is solved by Newton's method, the root finder of [004] (section VI,
"Newton-Raphson with AD"), with every derivative from jitgrad:

    z = (x, y, lam),  r(z) = grad_z L(z) = (grad f - lam grad g, -g),
    J(z) = hessian(L, z) = [[H_f - lam H_g, -grad g], [-grad g^T, 0]]   (the KKT matrix),
    z <- z - solve(J, r)                                                (jg.linalg.solve)

for f(x, y) = (x - 2)^2 + 4 (y - 1)^2 on the unit circle g = x^2 + y^2 - 1 = 0,
where grad f = lam grad g gives x = 2/(1 - lam), y = 4/(4 - lam), and g = 0 a
quartic in lam whose real roots (np.roots) are the reference KKT points;
SciPy's SLSQP is a second reference.  One graph computes r, f, g
and the Newton step; it is compiled once and called per iteration.  Newton
finds any KKT point: from a second start it converges to the constrained
maximum, which the curvature of L along the circle tells apart.

    python examples/lagrange.py [--small] [--out DIR]     # writes lagrange.png
"""
from __future__ import annotations

import sys

import _common
import numpy as np
from scipy.optimize import minimize

import jitgrad as jg


def objective(x, y):
    return (x - 2.0) ** 2 + 4.0 * (y - 1.0) ** 2


def constraint(x, y):
    return x ** 2 + y ** 2 - 1.0


def newton_step_function():
    z = jg.input("z", (3,))                          # (x, y, lam)
    x, y, lam = z[0], z[1], z[2]
    f, g = objective(x, y), constraint(x, y)
    L = f - lam * g                                  # the notes' sign convention
    (r,) = jg.grad(L, [z])                           # (grad_x L, -g): zero at a KKT point
    kkt = jg.hessian(L, z)                           # the Jacobian of r, 3 x 3
    step = jg.linalg.solve(kkt, r)
    return jg.compile([z], [r, f, g, step, kkt])


def newton(step_fn, z0, tol=1e-13, max_iter=30):
    z, rows = np.array(z0, dtype=float), []
    for k in range(max_iter + 1):
        r, f, g, step, kkt = step_fn(z)
        rows.append((k, z.copy(), float(np.linalg.norm(r)), float(f), abs(float(g))))
        if rows[-1][2] < tol:
            break
        z = z - step
    return z, rows, kkt


def kkt_points():
    """All real KKT points: g(2/(1-lam), 4/(4-lam)) = 0 times (1-lam)^2 (4-lam)^2."""
    a, b = np.poly1d([-1.0, 1.0]), np.poly1d([-1.0, 4.0])           # 1 - lam, 4 - lam
    roots = (a * a * b * b - 4 * b * b - 16 * a * a).roots
    return [np.array([2 / (1 - lam), 4 / (4 - lam), lam]) for lam in roots.real[abs(roots.imag) < 1e-9]]


def main(argv=None) -> int:
    args = _common.parser(__doc__.splitlines()[0]).parse_args(argv)
    step_fn = newton_step_function()
    starts = [(1.5, 1.5, 0.0)] if args.small else [(1.5, 1.5, 0.0), (-0.5, -1.5, 0.0)]
    ref = minimize(lambda v: objective(*v), [0.0, 0.0], method="SLSQP", tol=1e-14,
                   constraints={"type": "eq", "fun": lambda v: constraint(*v)})
    print("minimize f(x, y) = (x-2)^2 + 4(y-1)^2  subject to  g(x, y) = x^2 + y^2 - 1 = 0")
    print("Newton on grad L(x, y, lam) = 0, L = f - lam g; Jacobian = jg.hessian(L, z)")
    paths = []
    for z0 in starts:
        z, rows, kkt = newton(step_fn, z0)
        print(f"\nstart (x, y, lam) = {z0}")
        print("   k           x           y         lam    |r|_2       f(x, y)     |g(x, y)|")
        for k, zk, rn, f, g in rows:
            print(f"  {k:>2}  {zk[0]:>10.6f}  {zk[1]:>10.6f}  {zk[2]:>10.6f}  {rn:>8.2e}  {f:>12.9f}  {g:>9.2e}")
        # second-order check: the Hessian of L along the constraint's tangent
        tangent = np.array([-z[1], z[0]])
        curv = float(tangent @ kkt[:2, :2] @ tangent)
        kind = "a constrained minimum" if curv > 0 else "a constrained maximum"
        print(f"  KKT point after {rows[-1][0]} steps; t^T H_xx L t = {curv:.4f} along the "
              f"circle's tangent t: {kind}")
        if not paths:
            final_residual = rows[-1][2]                # at the minimum, the first start
        paths.append(np.array([row[1] for row in rows]))
    z_min = paths[0][-1]
    exact = min(kkt_points(), key=lambda z: np.linalg.norm(z - z_min))
    print("\n                       x                y                lam             f")
    for name, z in [("Newton (jitgrad)", z_min), ("quartic root", exact), ("SciPy SLSQP", ref.x)]:
        lam = f"{z[2]:>15.12f}" if len(z) == 3 else " " * 15
        print(f"  {name:<17} {z[0]:.12f}  {z[1]:.12f}  {lam}  {objective(*z[:2]):.12f}")
    print(f"  |Newton - quartic| = {np.linalg.norm(z_min - exact):.1e} (in x, y, lam), "
          f"|SLSQP - quartic| = {np.linalg.norm(ref.x - exact[:2]):.1e} (in x, y)")
    print(f"final residual |grad L| = {final_residual:.3e}")
    plot(paths, ref.x, args.out)
    return 0


def plot(paths, ref, out):
    plt = _common.pyplot()
    fig, ax = plt.subplots(figsize=(6.6, 5.6))
    gx, gy = np.meshgrid(np.linspace(-2.2, 2.6, 300), np.linspace(-2.0, 2.0, 300))
    cs = ax.contour(gx, gy, objective(gx, gy), levels=[0.5, 1, 2, 4, 8, 14, 22, 32],
                    colors="tab:red", linewidths=0.8, alpha=0.7)
    ax.clabel(cs, fontsize=7)
    t = np.linspace(0, 2 * np.pi, 400)
    ax.plot(np.cos(t), np.sin(t), color="tab:blue", lw=2, label="constraint g(x, y) = 0")
    for i, (path, color) in enumerate(zip(paths, ["black", "tab:purple"])):
        kind = "minimum" if i == 0 else "maximum"
        ax.plot(path[:, 0], path[:, 1], "o-", color=color, ms=4, lw=1,
                label=f"Newton iterates -> constrained {kind} ({len(path) - 1} steps)")
        ax.plot(*path[0, :2], "s", color=color, ms=7, label="start" if i == 0 else None)
    xs, lam = paths[0][-1, :2], paths[0][-1, 2]
    grad_f, grad_g = np.array([2 * (xs[0] - 2), 8 * (xs[1] - 1)]), 2 * xs
    for v, c, name, dx in [(grad_f, "tab:red", "∇f", 0.12), (grad_g, "tab:blue", "∇g", -0.25)]:
        v = 0.7 * v / np.linalg.norm(v)
        ax.annotate("", xy=xs + v, xytext=xs, arrowprops=dict(arrowstyle="->", color=c, lw=2))
        ax.text(xs[0] + v[0] + dx, xs[1] + v[1], name, color=c, fontsize=11)
    ax.text(1.15, -0.15, f"at the minimum\n∇f = λ∇g, λ = {lam:.3f}", fontsize=9,
            bbox=dict(facecolor="white", edgecolor="none", alpha=0.85))
    ax.plot(*ref, "*", color="gold", mec="k", ms=14, label="SciPy SLSQP solution")
    ax.set(xlabel="x", ylabel="y", aspect="equal", xlim=(-2.2, 2.6), ylim=(-2.0, 2.0),
           title="min f = (x-2)² + 4(y-1)² s.t. x² + y² = 1\n"
                 "Newton on ∇L(x, y, λ) = 0, red: contours of f")
    ax.legend(loc="upper left", fontsize=7.5, framealpha=0.95)
    _common.save_figure(fig, out, "lagrange.png")


if __name__ == "__main__":
    sys.exit(main())
