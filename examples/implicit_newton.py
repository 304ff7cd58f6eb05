"""The derivative of a root without differentiating the solver: jg.custom_vjp and the
implicit function theorem.

Newton's method solves F(x, theta) = x^3 + M x - theta = 0 (cube elementwise, M
symmetric positive definite, so the Jacobian diag(3 x^2) + M is invertible) for
x*(theta), here inside the graph with a ``jg.while_loop`` that stops at
|F| < 1e-12.  How does a loss of the root change with theta?  Reverse mode
cannot go through a while loop (its number of steps is unknown when the graph
is built), and going through a fixed number of iterations (``jg.fori_loop``)
stores every iterate and differentiates every Newton step.  The implicit
function theorem needs neither: F(x*(theta), theta) = 0 for all theta gives

    dx*/dtheta = -(dF/dx)^-1 dF/dtheta = (dF/dx)^-1,    so    theta_bar = (dF/dx)^-T x_bar,

one linear solve at the root.  ``jg.custom_vjp`` attaches that rule to the
solver: the Jacobian dF/dx comes from ``jg.jacobian`` at the root, and the
solve from ``jg.linalg.solve``.  The script checks the gradient against
central finite differences and against reverse mode through 30 unrolled
Newton steps, then fits theta so that the root hits a target, and plots the
loss.

    python examples/implicit_newton.py [--small] [--out DIR]

Source: the course notes' Newton example (/work/shared/seeds/004) and the
implicit function theorem.
"""
from __future__ import annotations

import sys

import numpy as np

import _common
import jitgrad as jg

N = 4
M = np.array([[2.0, 0.3, 0.0, 0.1], [0.3, 1.5, 0.2, 0.0], [0.0, 0.2, 1.8, 0.4], [0.1, 0.0, 0.4, 2.2]])


def residual(x, theta):
    return x ** 3 + jg.constant(M) @ x - theta


def newton_step(x, theta):
    jacobian = jg.jacobian(residual(x, theta), x)            # diag(3 x^2) + M, by forward mode
    return x - jg.linalg.solve(jacobian, residual(x, theta))


def newton_until_converged(theta):
    """Newton from x = 0 until |F(x, theta)| < 1e-12: a while loop in the graph."""
    def keep_going(carry):
        x, steps = carry
        return jg.where(steps < 50, jg.max(jg.abs(residual(x, theta))) > 1e-12, False)

    x, _ = jg.while_loop(keep_going, lambda c: (newton_step(c[0], theta), c[1] + 1),
                         (theta * 0.0, jg.constant(np.int64(0))))
    return x


@jg.custom_vjp
def root(theta):
    return newton_until_converged(theta)


def _root_fwd(theta):
    x = newton_until_converged(theta)
    return x, (x, theta)


def _root_bwd(saved, x_bar):
    """theta_bar = (dF/dx)^-T x_bar at the root (dF/dtheta = -I): one solve, no iterations."""
    x, theta = saved
    jacobian = jg.jacobian(residual(x, theta), x)
    return (jg.linalg.solve(jg.transpose(jacobian), x_bar),)


root.defvjp(_root_fwd, _root_bwd)


def main(argv=None) -> int:
    args = _common.parser(__doc__.splitlines()[0]).parse_args(argv)
    rng = np.random.default_rng(0)
    target = rng.uniform(0.2, 1.0, N)
    theta = jg.input("theta", (N,))

    def loss_of(x):
        return jg.sum((x - target) ** 2)

    loss = loss_of(root(theta))
    (grad,) = jg.grad(loss, [theta])
    unrolled = loss_of(jg.fori_loop(0, 30, lambda i, x: newton_step(x, theta), theta * 0.0))
    (grad_unrolled,) = jg.grad(unrolled, [theta])
    f = jg.compile([theta], [loss, grad, grad_unrolled], wait=True)

    theta0 = rng.uniform(0.5, 2.0, N)
    value, g, g_unrolled = f(theta0)
    h = 1e-6
    fd = np.array([(f(theta0 + h * e)[0] - f(theta0 - h * e)[0]) / (2 * h) for e in np.eye(N)])
    print(f"F(x, theta) = x^3 + M x - theta, n = {N}: root by Newton in a jg.while_loop, "
          f"loss = |x*(theta) - target|^2 = {float(value):.6f}")
    print(f"  implicit gradient (one solve)       {np.array2string(g, precision=8)}")
    print(f"  through 30 unrolled Newton steps    {np.array2string(g_unrolled, precision=8)}")
    print(f"  central differences (h = {h:g})     {np.array2string(fd, precision=8)}")
    fd_error = np.abs(g - fd).max() / np.abs(fd).max()
    unrolled_error = np.abs(g - g_unrolled).max() / np.abs(g_unrolled).max()
    print(f"implicit vs finite differences: relative error {fd_error:.1e}; "
          f"vs unrolled: {unrolled_error:.1e}")

    current, losses = theta0.copy(), []
    for _ in range(20 if args.small else 60):            # plain gradient descent on theta
        value, g, _ = f(current)
        losses.append(float(value))
        current = current - 0.5 * g
    print(f"fitting theta so that the root hits the target: loss {losses[0]:.2e} -> {losses[-1]:.2e} "
          f"in {len(losses)} steps")

    plt = _common.pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.semilogy(losses, marker="o", ms=3)
    ax.set(xlabel="gradient step", ylabel=r"$|x^*(\theta) - x_{target}|^2$",
           title="Gradient descent on theta through the root (implicit derivative)")
    ax.grid(True, which="major", alpha=0.3)
    _common.save_figure(fig, args.out, "implicit_newton.png")
    return 0 if fd_error < 1e-6 and unrolled_error < 1e-9 else 1


if __name__ == "__main__":
    sys.exit(main())
