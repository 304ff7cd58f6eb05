"""Activation functions and their derivatives, computed by jitgrad.

The lecture notes [000] ("Choosing an activation function", "Variants of the
ReLU", Figure 6) compare ReLU with its variants: LeakyReLU, ELU, and the
smooth gates s * psi(s) with psi the Gaussian CDF (GELU) or the sigmoid (SiLU);
softplus is the smooth ReLU log(1 + e^s). The sigmoid is drawn for comparison:
its derivative never exceeds 0.25, the root of vanishing gradients
(see vanishing_gradients.py).

One compiled graph evaluates every function and its elementwise derivative,
the gradient of sum(f(x)) wrt x, on a grid in [-4, 4]. Each derivative is
checked against a central difference of jitgrad's own values,
(f(x + h) - f(x - h)) / 2h. The grid has an even number of points, so it
skips x = 0, where ReLU and LeakyReLU have a kink (jitgrad uses the
subgradient convention ReLU'(0) = 0, as the notes say most frameworks do);
x = 0 is checked separately for the functions that are differentiable there.

    python examples/activations.py [--small] [--out DIR]

Source: /work/shared/seeds/000 (Scardapane, lecture notes).
"""
from __future__ import annotations

import sys

import numpy as np

import _common
import jitgrad as jg

ACTIVATIONS = {
    "ReLU": jg.relu,
    "LeakyReLU(0.01)": jg.leaky_relu,
    "ELU(1)": jg.elu,
    "GELU": jg.gelu,
    "SiLU": jg.silu,
    "softplus": jg.softplus,
    "sigmoid": jg.sigmoid,
}
H = 1e-5                        # central-difference step
TOLERANCE = 1e-8
KINKED = {"ReLU", "LeakyReLU(0.01)"}   # not differentiable at 0


def main(argv=None) -> int:
    args = _common.parser(__doc__.splitlines()[0]).parse_args(argv)
    x = jg.input("x", (None,))
    outputs = []
    for fn in ACTIVATIONS.values():
        y = fn(x)
        outputs += [y] + jg.grad(jg.sum(y), [x])        # elementwise derivative
    f = jg.compile([x], outputs)

    grid = np.linspace(-4, 4, 100 if args.small else 800)

    def run(xs):                # (values, derivatives), one row per function
        out = f(xs)
        return np.array(out[0::2]), np.array(out[1::2])

    values, derivs = run(grid)
    central = (run(grid + H)[0] - run(grid - H)[0]) / (2 * H)
    errors = np.abs(derivs - central).max(axis=1)
    at_zero = run(np.zeros(1))[1][:, 0]
    cd_zero = np.diff(run(np.array([-H, H]))[0], axis=1)[:, 0] / (2 * H)

    print(f"{len(ACTIVATIONS)} activations on {grid.size} points in [-4, 4]: jitgrad's "
          f"derivative (AD) vs the central difference (CD, h = {H:g})")
    print(f"  {'function':<16} {'max |AD - CD|':>13}  {'min f`':>7} {'max f`':>6}"
          f"   at x = 0: {'AD':>5} {'CD':>6}")
    bad_zero = []
    for name, err, d, d0, c0 in zip(ACTIVATIONS, errors, derivs, at_zero, cd_zero):
        if name in KINKED:
            note = "kink: AD gives the subgradient"
        elif abs(d0 - c0) < 10 * H:       # ELU'' jumps at 0: its CD is off by h/4
            note = "ok"
        else:
            note, _ = "DISAGREES", bad_zero.append(name)
        print(f"  {name:<16} {err:13.2e}  {d.min():7.3f} {d.max():6.3f}"
              f"   {d0:15.3f} {c0:6.3f}  {note}")
    worst = float(errors.max())
    print(f"grid: max derivative error {worst:.2e} "
          f"({'ok' if worst < TOLERANCE else 'TOO LARGE'}, tolerance {TOLERANCE:g})")
    print("x = 0: " + (f"jitgrad's derivative of {', '.join(bad_zero)} disagrees with the "
                       "central difference there" if bad_zero else
                       "the differentiable functions agree with the central difference"))
    ok = worst < TOLERANCE and not bad_zero

    plt = _common.pyplot()
    fig, axes = plt.subplots(2, 4, figsize=(13, 6), sharex=True)
    overlay = axes.flat[-1]
    for ax, name, v, d, d0 in zip(axes.flat, ACTIVATIONS, values, derivs, at_zero):
        ax.plot(grid, v, label="f(x)")
        ax.plot(grid, d, "--", label="f'(x) by jitgrad")
        ax.plot([0], [d0], "ko", ms=4, label="f'(0) by jitgrad")
        ax.set_title(name)
        overlay.plot(grid, d, color="gray" if name == "sigmoid" else None, label=name)
    overlay.set_title("all derivatives f'(x)")
    overlay.legend(fontsize=7, loc="lower right")
    axes.flat[0].legend(fontsize=8, loc="upper left")
    for ax in axes.flat:
        ax.axhline(0, color="k", lw=0.5, zorder=0)
        ax.grid(alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("x")
    fig.suptitle("Activation functions and their derivatives (gradient of sum f(x) wrt x), "
                 "on [-4, 4]")
    fig.tight_layout()
    _common.save_figure(fig, args.out, "activations.png")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
