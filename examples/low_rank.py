"""Low-rank matrix completion with the nuclear norm, its gradient through the SVD.

The slides [001] ("Gradient propagation through the SVD") derive
dL/dW = U (dL/dSigma) V^T for a loss of the singular values, noting that such
losses "arise in ML problems, where we need to restrict the matrix rank".  The
nuclear norm ||X||_* = sum of the singular values is the convex one: its
gradient is U V^T, and jitgrad gets it from ``jg.linalg.norm(X, "nuc")``
through ``jg.linalg.svd``.  Here a rank-3 50 x 50 matrix M is observed on a
random half of its entries (Omega), and

    X* = argmin_X 0.5 ||P_Omega(X - M)||^2 + lam ||X||_*

is found by subgradient descent (``jg.optim.sgd`` with a decaying step, one
compiled call per step).  The result is compared with the truth on the
entries never observed and with the exact minimizer of the same objective,
computed in NumPy by accelerated proximal gradient (singular value
thresholding), which does not differentiate the nuclear norm at all.

    python examples/low_rank.py [--small] [--out DIR]     # writes low_rank.png
"""
from __future__ import annotations

import sys

import _common
import numpy as np

import jitgrad as jg

LAM = 0.3


def objective(X, M, mask):
    return 0.5 * np.sum(mask * (X - M) ** 2) + LAM * np.linalg.svd(X, compute_uv=False).sum()


def svt_reference(M, mask, iters):
    """FISTA with singular value thresholding: the exact minimizer, NumPy only."""
    X = Y = mask * M
    t = 1.0
    for _ in range(iters):
        U, s, Vt = np.linalg.svd(Y - mask * (Y - M), full_matrices=False)
        X_new = (U * np.maximum(s - LAM, 0.0)) @ Vt
        t_new = (1 + np.sqrt(1 + 4 * t * t)) / 2
        X, Y, t = X_new, X_new + (t - 1) / t_new * (X_new - X), t_new
    return X


def main(argv=None) -> int:
    args = _common.parser(__doc__.splitlines()[0]).parse_args(argv)
    n, r, frac, steps = (30, 2, 0.5, 400) if args.small else (50, 3, 0.5, 1500)
    rng = np.random.default_rng(0)
    M_true = rng.normal(size=(n, r)) @ rng.normal(size=(r, n))
    mask = (rng.random((n, n)) < frac).astype(float)
    hidden = 1.0 - mask

    X = jg.param("X", mask * M_true)                       # start from the zero-filled data
    M, W, lr = jg.input("M", (n, n)), jg.input("W", (n, n)), jg.input("lr", ())
    fit = 0.5 * jg.sum(W * (X - M) ** 2)
    loss = fit + LAM * jg.linalg.norm(X, "nuc")
    step = jg.compile([M, W, lr], [loss, fit], updates=jg.optim.sgd(loss, [X], lr=lr))

    def rel_err(Xv):
        return np.linalg.norm(hidden * (Xv - M_true)) / np.linalg.norm(hidden * M_true)

    print(f"rank-{r} {n} x {n} matrix, {int(mask.sum())} of {n * n} entries observed; lam = {LAM}")
    print("   step   objective   0.5|P(X-M)|^2   rel. error on unobserved entries")
    history = []
    for k in range(steps):
        obj, f = step(M_true, mask, 0.997 ** k)             # step size 1, 0.74 at 100, 0.05 at 1000
        history.append((float(obj), rel_err(X.value)))      # (obj: X before this step)
        if k % (steps // 6) == 0:
            print(f"  {k:>5}  {float(obj):>10.4f}  {float(f):>14.4f}  {history[-1][1]:>10.4f}")
    Xv = X.value
    X_ref = svt_reference(M_true, mask, 300 if args.small else 1000)
    print(f"  final  {objective(Xv, M_true, mask):>10.4f}  {'':>14}  {rel_err(Xv):>10.4f}")
    print(f"  exact minimizer (NumPy SVT): objective {objective(X_ref, M_true, mask):.4f}, "
          f"rel. error {rel_err(X_ref):.4f}; |X - X*|_F / |X*|_F = "
          f"{np.linalg.norm(Xv - X_ref) / np.linalg.norm(X_ref):.1e}")
    spectra = {"truth M": np.linalg.svd(M_true, compute_uv=False),
               "observed, zeros elsewhere": np.linalg.svd(mask * M_true, compute_uv=False),
               "recovered X (jitgrad)": np.linalg.svd(Xv, compute_uv=False),
               "exact minimizer X* (SVT)": np.linalg.svd(X_ref, compute_uv=False)}
    print("\n  singular values          " + "".join(f"  s_{i + 1:<5}" for i in range(r + 2)))
    for name, s in spectra.items():
        print(f"  {name:<25}" + "".join(f"{v:>9.3f}" for v in s[:r + 2]))
    plot(spectra, np.array(history), objective(X_ref, M_true, mask), rel_err(X_ref), r, args.out)
    return 0


def plot(spectra, history, obj_ref, err_ref, r, out):
    plt = _common.pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.4))
    for (name, s), style in zip(spectra.items(), ["ko-", "s--", "o-", "x:"]):
        a.semilogy(np.arange(1, len(s) + 1), np.maximum(s, 1e-4), style, ms=4, label=name)
    a.axvline(r + 0.5, color="gray", lw=0.8)
    a.set(xlabel="index i", ylabel="singular value s_i", ylim=(5e-5, None),
          title=f"singular values (rank-{r} truth; values < 1e-4 drawn at 1e-4)")
    a.legend(fontsize=8)
    steps = np.arange(len(history))
    b.semilogy(steps, history[:, 0] - obj_ref, label="objective - optimum")
    b.semilogy(steps, history[:, 1], label="rel. error on unobserved entries")
    b.axhline(err_ref, color="tab:orange", ls=":", label="rel. error of the exact minimizer")
    b.set(xlabel="subgradient step", ylabel="log scale", title="subgradient descent on 0.5|P(X - M)|² + λ|X|_*")
    b.legend(fontsize=8)
    _common.save_figure(fig, out, "low_rank.png")


if __name__ == "__main__":
    sys.exit(main())
