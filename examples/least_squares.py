"""A linear-solve layer trained by gradient descent: learn A from pairs (b, x = A^-1 b).

The slides [001] ("Gradient propagation through the linear least squares")
treat x = A^-1 b as a layer and derive its adjoint,

    dL/dA = -A^-T (dL/dx) x^T,    dL/db = A^-T (dL/dx),

noting that the backward pass costs about as much as the forward one (it reuses
the factorization).  Here that layer is ``jg.linalg.solve(A, B)`` on a batch of
right-hand sides, inside the loss

    L(A) = mean((solve(A, B) - X)^2)

for N pairs (b_i, x_i), x_i = A_true^-1 b_i + noise (std 0.01); the parameter A
starts at the identity and is trained with Adam (``jg.optim.adam``).  L depends
on A only through C = A^-1, and min_C mean((C B - X)^2) is a linear least-squares
problem, so the minimizer has a closed form to compare with: A* = (X B^+)^-1.
Before training, jitgrad's gradient is checked against central differences
(``jg.check_grads``) and against the slides' formulas.

    python examples/least_squares.py [--small] [--out DIR]     # writes least_squares.png
"""
from __future__ import annotations

import sys

import _common
import numpy as np

import jitgrad as jg


def main(argv=None) -> int:
    args = _common.parser(__doc__.splitlines()[0]).parse_args(argv)
    n, N, steps = (4, 20, 300) if args.small else (6, 50, 1000)
    rng = np.random.default_rng(0)
    A_true = np.eye(n) + 0.5 * rng.normal(size=(n, n)) / np.sqrt(n)
    Bv = rng.normal(size=(n, N))
    Xv = np.linalg.solve(A_true, Bv) + 0.01 * rng.normal(size=(n, N))   # targets x_i, as columns
    A_star = np.linalg.inv(Xv @ np.linalg.pinv(Bv))         # the exact minimizer of L
    loss_star = np.mean((np.linalg.solve(A_star, Bv) - Xv) ** 2)
    print(f"learn A ({n} x {n}, condition number {np.linalg.cond(A_true):.2f}) from {N} pairs "
          f"(b, x = A^-1 b + noise)")

    # 1. the gradient, checked on 3 pairs at a random non-symmetric A (NumPy reference target)
    A0, B3, X3 = np.eye(n) + 0.3 * rng.normal(size=(n, n)) / np.sqrt(n), Bv[:, :3], Xv[:, :3]
    jg.check_grads(lambda A, B: jg.mean((jg.linalg.solve(A, B) - X3) ** 2), [A0, B3])
    Ai, Bi = jg.input("A", (n, n)), jg.input("B", (n, 3))
    gA, gB = jg.compile([Ai, Bi], jg.grad(jg.mean((jg.linalg.solve(Ai, Bi) - X3) ** 2), [Ai, Bi]),
                        target="numpy")(A0, B3)
    x = np.linalg.solve(A0, B3)
    dL_dx = 2 * (x - X3) / x.size
    lam = np.linalg.solve(A0.T, dL_dx)                      # A^-T dL/dx
    print("gradient at a random A: jg.check_grads (central differences, fwd and rev): ok")
    print(f"  vs the slides: |dL/dA + A^-T (dL/dx) x^T| = {np.abs(gA + lam @ x.T).max():.1e}, "
          f"|dL/db - A^-T dL/dx| = {np.abs(gB - lam).max():.1e}")

    # 2. training: one compiled graph (loss + Adam update), called once per step
    A = jg.param("A", np.eye(n))
    B, X = jg.input("B", (n, N)), jg.input("X", (n, N))
    loss = jg.mean((jg.linalg.solve(A, B) - X) ** 2)
    step = jg.compile([B, X], loss, updates=jg.optim.adam(loss, [A], lr=0.01))
    print(f"\n   step        loss   loss - L(A*)   |A - A*|_F / |A*|_F     (L(A*) = {loss_star:.6e})")
    history = []
    for k in range(steps):
        err = np.linalg.norm(A.value - A_star) / np.linalg.norm(A_star)
        history.append((float(step(Bv, Xv)), err))          # both at A before this step
        if k % (steps // 10) == 0:
            print(f"  {k:>5}  {history[-1][0]:>10.6e}  {history[-1][0] - loss_star:>10.2e}  {err:>13.2e}")
    A_fit = A.value
    history.append((np.mean((np.linalg.solve(A_fit, Bv) - Xv) ** 2),
                    np.linalg.norm(A_fit - A_star) / np.linalg.norm(A_star)))
    print(f"  {steps:>5}  {history[-1][0]:>10.6e}  {history[-1][0] - loss_star:>10.2e}  {history[-1][1]:>13.2e}")
    print(f"\nloss {history[0][0]:.4e} -> {history[-1][0]:.6e} (closed-form minimum {loss_star:.6e})")
    print(f"|A_learned - A*|_F = {np.linalg.norm(A_fit - A_star):.2e}; the noise puts A* at "
          f"|A* - A_true|_F = {np.linalg.norm(A_star - A_true):.2e} from the truth")
    for name, M in [("learned A", A_fit), ("closed form A*", A_star), ("A_true", A_true)]:
        print(f"  first row, {name:<15}" + "".join(f"{v:>10.6f}" for v in M[0]))
    plot(np.array(history), loss_star, A_fit, A_star, A_true, args.out)
    return 0


def plot(history, loss_star, A_fit, A_star, A_true, out):
    plt = _common.pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(11.5, 4.3))
    a.semilogy(history[:, 0], label="loss L(A) = mean((solve(A, B) - X)²)")
    a.semilogy(abs(history[:, 0] - loss_star), label="|L(A) - L(A*)|, A* the closed-form minimizer")
    a.semilogy(history[:, 1], label="|A - A*|_F / |A*|_F")
    a.set(xlabel="Adam step", ylabel="log scale", title="training the solve layer (A starts at I)")
    a.legend(fontsize=8)
    d_fit, d_star = (A_fit - A_true).ravel(), (A_star - A_true).ravel()
    b.plot(d_star, d_fit, "o", ms=5, label="entries (i, j)")
    lim = [min(d_star.min(), d_fit.min()) * 1.1, max(d_star.max(), d_fit.max()) * 1.1]
    b.plot(lim, lim, "k--", lw=0.8, label="y = x")
    b.set(xlabel="A*[i, j] - A_true[i, j]  (closed form)", ylabel="A[i, j] - A_true[i, j]  (learned)",
          title="both miss A_true by the same noise-induced error", aspect="equal")
    b.legend(fontsize=8)
    _common.save_figure(fig, out, "least_squares.png")


if __name__ == "__main__":
    sys.exit(main())
