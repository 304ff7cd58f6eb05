"""Vanishing gradients: the gradient norm per layer with sigmoid vs ReLU.

The lecture notes [000] ("Vanishing and exploding gradients", Figure 5):
backpropagation multiplies by phi'(s) at every layer, and the sigmoid's
derivative is at most 0.25, so with many layers the gradient shrinks
exponentially toward the input; ReLU's derivative is 0 or 1 and does not. As in
the notes' figure, the network has 5 hidden layers with weights sampled
uniformly from [-0.5, 0.5], and the loss is the cross-entropy on a few examples
(random inputs and random class labels here; no biases).

One compiled graph gives the gradient of the loss wrt every weight matrix,
dL/dW_l by ``jg.grad``. It serves both activations: a boolean input selects
sigmoid or ReLU with ``jg.where`` (whose untaken branch gets exactly zero
gradient), so Numba compiles one network instead of two. It is run for
several random initializations (seeds 0, 1, ...); the script prints the median
of ||dL/dW_l|| per layer and plots the median with the min-max range over
the seeds.

    python examples/vanishing_gradients.py [--small] [--out DIR]

Source: /work/shared/seeds/000 (Scardapane, lecture notes).
"""
from __future__ import annotations

import sys

import numpy as np

import _common
import jitgrad as jg

SIZES = [32, 32, 32, 32, 32, 32, 10]    # input, 5 hidden layers, 10 classes
BATCH = 16                              # "a few examples"


def layer_grads(x, labels, weights, activation):
    h = x
    for W in weights[:-1]:
        h = activation(h @ W)
    loss = jg.nn.cross_entropy(h @ weights[-1], labels)
    return jg.grad(loss, weights)


def main(argv=None) -> int:
    args = _common.parser(__doc__.splitlines()[0]).parse_args(argv)
    seeds = 5 if args.small else 30
    x = jg.input("x", (None, SIZES[0]))
    labels = jg.input("labels", (None,), "int64")
    weights = [jg.input(f"W{l + 1}", (a, b)) for l, (a, b) in enumerate(zip(SIZES, SIZES[1:]))]
    use_sigmoid = jg.input("use_sigmoid", (), "bool")    # one graph for both activations

    def activation(s):          # the branch jg.where does not take gets exactly zero gradient
        return jg.where(use_sigmoid, jg.sigmoid(s), jg.relu(s))

    f = jg.compile([use_sigmoid, x, labels] + weights,
                   layer_grads(x, labels, weights, activation))

    L = len(weights)
    norms = np.empty((seeds, 2, L))          # seed, (sigmoid, relu), layer
    for s in range(seeds):
        rng = np.random.default_rng(s)
        Ws = [rng.uniform(-0.5, 0.5, size=(a, b)) for a, b in zip(SIZES, SIZES[1:])]
        data = rng.normal(size=(BATCH, SIZES[0])), rng.integers(0, SIZES[-1], BATCH)
        for k, use in enumerate([True, False]):
            norms[s, k] = [np.linalg.norm(g) for g in f(use, *data, *Ws)]
    median = np.median(norms, axis=0)

    print(f"||dL/dW_l|| for a {len(SIZES) - 2}-hidden-layer network, widths {SIZES}, "
          f"W ~ U[-0.5, 0.5], cross-entropy on {BATCH} examples; median of {seeds} seeds")
    print(f"  {'layer':<12} {'sigmoid':>10} {'ReLU':>10} {'sigmoid/ReLU':>13}")
    for l in range(L):
        name = f"W{l + 1}" + (" (input)" if l == 0 else " (output)" if l == L - 1 else "")
        print(f"  {name:<12} {median[0, l]:10.2e} {median[1, l]:10.2e} "
              f"{median[0, l] / median[1, l]:13.2e}")
    for k, act in enumerate(["sigmoid", "ReLU"]):
        print(f"{act}: the input layer's gradient is {median[k, 0] / median[k, -1]:.1e} times "
              "the output layer's")

    plt = _common.pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    layers = np.arange(1, L + 1)
    for k, (act, marker) in enumerate([("sigmoid", "o"), ("ReLU", "s")]):
        line, = ax.semilogy(layers, median[k], marker=marker, label=f"{act} (median)")
        ax.fill_between(layers, norms[:, k].min(axis=0), norms[:, k].max(axis=0),
                        color=line.get_color(), alpha=0.2, label=f"{act} (min-max, {seeds} seeds)")
    ax.set_xticks(layers, [f"W{l}" for l in layers[:-1]] + [f"W{L}\n(output)"])
    ax.set(xlabel="layer (input side on the left)", ylabel=r"$\|\partial L / \partial W_l\|$",
           title="Gradient norm per layer: sigmoid vanishes toward the input, ReLU does not")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend()
    _common.save_figure(fig, args.out, "vanishing_gradients.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
