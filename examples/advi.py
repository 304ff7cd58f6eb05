"""Automatic differentiation variational inference (ADVI) for Bayesian logistic regression.

The paper [004] (section V, "Applications to variational inference") fits an
approximate posterior by stochastic gradient ascent on the ELBO, with the
gradients from AD.  Here: 200 synthetic points in 2-D plus a bias, a prior
w ~ N(0, 3^2 I), and a mean-field Gaussian q(w) = N(mu, diag(sigma^2)) with
sigma = softplus(rho).  The reparameterization w = mu + sigma * eps, eps ~ N(0, I)
drawn fresh each step inside the graph (K samples, ``jg.random.normal`` from a key
param that the step advances with ``jg.random.split``), makes

    ELBO = E_q[log p(y | X, w) + log p(w)] + H[q],   H[q] = sum log sigma + const

a differentiable function of (mu, rho); Adam on -ELBO (``jg.optim.adam``) is one
compiled call per step.  The result is compared with the true weights and with
a Laplace approximation computed in NumPy (the MAP by Newton's method, the
covariance H^-1 from the Hessian of -log p(y, w) there).

    python examples/advi.py [--small] [--out DIR]     # writes advi.png
"""
from __future__ import annotations

import math
import sys

import _common
import numpy as np

import jitgrad as jg

W_TRUE, PRIOR_STD, K = np.array([2.0, -1.5, 0.5]), 3.0, 16      # (w_1, w_2, bias)


def make_data(n, rng):
    X = np.column_stack([rng.normal(size=(n, 2)), np.ones(n)])
    y = (rng.random(n) < 1 / (1 + np.exp(-X @ W_TRUE))).astype(float)
    return X, y


def log_joint(X, y, w):
    """log p(y | X, w) + log p(w), one per row of the weights w (K, 3): shape (K,)."""
    z = X @ w.T                                                    # logits, (N, K)
    loglik = jg.sum(y[:, None] * z - jg.softplus(z), axis=0)      # log sigmoid(+-z), summed
    logprior = jg.sum(-0.5 * (w / PRIOR_STD) ** 2, axis=-1) - 1.5 * math.log(2 * math.pi * PRIOR_STD ** 2)
    return loglik + logprior


def main(argv=None) -> int:
    args = _common.parser(__doc__.splitlines()[0]).parse_args(argv)
    rng = np.random.default_rng(0)
    Xv, yv = make_data(200, rng)
    steps = 400 if args.small else 2000
    X, y = jg.input("X", (None, 3)), jg.input("y", (None,))
    lr = jg.input("lr", ())
    key = jg.param("key", np.array([0, 0], np.uint32))                  # jg.random.key(0)
    draw, next_key = jg.random.split(key)
    eps = jg.random.normal(draw, (K, 3))
    mu = jg.param("mu", np.zeros(3))
    rho = jg.param("rho", np.full(3, math.log(math.expm1(1.0))))       # sigma = 1 at the start
    sigma = jg.softplus(rho)
    entropy = jg.sum(jg.log(sigma)) + 1.5 * (1 + math.log(2 * math.pi))
    elbo = jg.mean(log_joint(X, y, mu + sigma * eps)) + entropy           # w: (K, 3)
    updates = {**jg.optim.adam(-elbo, [mu, rho], lr=lr), key: next_key}    # a new stream every step
    step = jg.compile([X, y, lr], elbo, updates=updates)

    print(f"ADVI, Bayesian logistic regression: {len(yv)} points, {K} samples of eps per step")
    trace = np.empty(steps)
    for t in range(steps):
        rate = 0.05 * (0.1 ** (t / steps))                  # decays from 0.05 to 0.005
        trace[t] = step(Xv, yv, rate)
        if (t + 1) % (steps // 5) == 0:
            print(f"  step {t + 1:>5}  ELBO (mean of the last {steps // 5} estimates) "
                  f"{trace[t + 1 - steps // 5:t + 1].mean():9.3f}")
    m, s = mu.value, np.log1p(np.exp(rho.value))

    # the Laplace approximation, in NumPy: MAP by Newton, covariance H^-1 at the MAP
    w_map = np.zeros(3)
    for _ in range(25):
        p = 1 / (1 + np.exp(-Xv @ w_map))
        gv = Xv.T @ (p - yv) + w_map / PRIOR_STD ** 2                 # gradient of -log p(y, w)
        H = Xv.T @ (Xv * (p * (1 - p))[:, None]) + np.eye(3) / PRIOR_STD ** 2
        newton_step = np.linalg.solve(H, gv)
        w_map = w_map - newton_step
    lap_std = np.sqrt(np.diag(np.linalg.inv(H)))
    z = Xv @ w_map
    log_joint_map = np.sum(yv * z - np.logaddexp(0, z)) - 0.5 * np.sum((w_map / PRIOR_STD) ** 2) \
        - 1.5 * math.log(2 * math.pi * PRIOR_STD ** 2)
    log_evidence = log_joint_map + 1.5 * math.log(2 * math.pi) - 0.5 * np.linalg.slogdet(H)[1]

    # an independent NumPy check of the final ELBO, with many samples
    ws = m + s * rng.normal(size=(20000, 3))
    zs = Xv @ ws.T
    ll = (yv[:, None] * zs - np.logaddexp(0, zs)).sum(0)
    lp = -0.5 * ((ws / PRIOR_STD) ** 2).sum(1) - 1.5 * math.log(2 * math.pi * PRIOR_STD ** 2)
    elbo_np = (ll + lp).mean() + np.log(s).sum() + 1.5 * (1 + math.log(2 * math.pi))
    print(f"\nfinal ELBO, NumPy Monte Carlo with 20000 samples: {elbo_np:.3f}; the Laplace "
          f"approximation of log p(y) is {log_evidence:.3f} "
          f"(last Newton step {np.linalg.norm(newton_step):.0e})")
    print("\n  weight    true   VI mean  VI std   MAP     Laplace std")
    for i, name in enumerate(["w_1", "w_2", "bias"]):
        print(f"  {name:<6} {W_TRUE[i]:>6.2f}  {m[i]:>7.3f}  {s[i]:>6.3f}  {w_map[i]:>7.3f}  {lap_std[i]:>7.3f}")
    plot(trace, Xv, yv, m, s, w_map, lap_std, log_evidence, rng, args.out)
    return 0


def plot(trace, X, y, m, s, w_map, lap_std, log_evidence, rng, out):
    plt = _common.pyplot()
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(15, 4.4))
    a.plot(np.arange(1, len(trace) + 1), trace, color="tab:blue", lw=0.7,
           label=f"per-step Monte Carlo estimate (K = {K})")
    a.axhline(log_evidence, color="k", ls="--", lw=1, label="log p(y), Laplace approximation")
    a.set(xlabel="step", ylabel="ELBO", xscale="log", title="ELBO during stochastic gradient ascent")
    a.legend(fontsize=8, loc="lower right")
    for cls, mk, col in [(0, "o", "tab:orange"), (1, "^", "tab:green")]:
        b.scatter(*X[y == cls, :2].T, s=12, marker=mk, color=col, label=f"y = {cls}")
    xs = np.linspace(-3, 3, 2)
    for i, w in enumerate(m + s * rng.normal(size=(20, 3))):
        b.plot(xs, -(w[0] * xs + w[2]) / w[1], color="gray", alpha=0.3, lw=0.8,
               label="20 draws w ~ q" if i == 0 else None)
    b.plot(xs, -(m[0] * xs + m[2]) / m[1], color="tab:blue", lw=2, label="posterior mean (VI)")
    b.plot(xs, -(W_TRUE[0] * xs + W_TRUE[2]) / W_TRUE[1], "k--", lw=1.2, label="true boundary")
    b.set(xlim=(-3, 3), ylim=(-3, 3), xlabel="x_1", ylabel="x_2", title="data; decision boundaries x·w = 0")
    b.legend(fontsize=8, loc="upper left")
    grid = np.linspace(-3.0, 3.5, 500)
    for i, (name, col) in enumerate(zip(["w_1", "w_2", "bias"], ["tab:red", "tab:purple", "tab:cyan"])):
        for mean, std, ls, src in [(m[i], s[i], "-", "VI"), (w_map[i], lap_std[i], ":", "Laplace")]:
            pdf = np.exp(-0.5 * ((grid - mean) / std) ** 2) / (std * math.sqrt(2 * math.pi))
            c.plot(grid, pdf, ls, color=col, label=f"{name} {src}")
        c.axvline(W_TRUE[i], color=col, lw=1, alpha=0.6)
    c.set_ylim(0, 1.3 * c.get_ylim()[1])
    c.set(xlabel="weight (vertical lines: true values)", ylabel="density",
          title="posterior marginals: mean-field VI vs Laplace")
    c.legend(fontsize=7, ncol=3, loc="upper right")
    _common.save_figure(fig, out, "advi.png")


if __name__ == "__main__":
    sys.exit(main())
