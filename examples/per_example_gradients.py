"""Per-example gradient norms with jg.vmap: which training examples pull hardest?

A training step averages the gradients of its examples, so one number per
example, the norm of its own gradient, is lost.  It says which examples the
model is still learning from (large norm) and which it has learned (small);
differentially private SGD clips each of them before averaging.  Written as a
loop, it costs one backward pass per example; ``jg.vmap(grad)`` maps one
backward pass over the examples instead, as one graph whose matrix products
see the whole batch.

The script trains softmax regression on scikit-learn's digits (8x8 images, no
download) for a few epochs, then computes every training example's gradient
norm in one call, checks that the per-example gradients average to the batch
gradient, prints the norms of correctly and wrongly classified examples, and
plots their distribution and the images with the largest norms.

    python examples/per_example_gradients.py [--small] [--out DIR]
"""
from __future__ import annotations

import sys
import time

import numpy as np

import _common
import jitgrad as jg


def load_digits(n: int | None):
    from sklearn.datasets import load_digits
    digits = load_digits()
    x, y = digits.data / 16.0, digits.target.astype(np.int64)
    return (x[:n], y[:n]) if n else (x, y)


def main(argv=None) -> int:
    args = _common.parser(__doc__.splitlines()[0]).parse_args(argv)
    X, Y = load_digits(400 if args.small else None)
    n, features = X.shape
    w = jg.param("w", np.zeros((features, 10)))
    b = jg.param("b", np.zeros(10))

    def loss(x, label):          # one example: x (64,), label ()
        return -jg.nn.log_softmax(x @ w + b)[label]

    xs, labels = jg.input("xs", (None, features)), jg.input("labels", (None,), "int64")
    batch_loss = jg.mean(jg.vmap(loss)(xs, labels))
    train = jg.compile([xs, labels], batch_loss, updates=jg.optim.sgd(batch_loss, [w, b], lr=0.5),
                       wait=True)
    for epoch in range(5 if args.small else 20):
        for rows in np.array_split(np.random.default_rng(epoch).permutation(n), max(1, n // 64)):
            train(X[rows], Y[rows])

    # every example's own gradient, in one graph: vmap of grad
    per_example = jg.vmap(lambda x, label: jg.grad(loss(x, label), [w, b]))(xs, labels)
    norms = jg.sqrt(jg.sum(per_example[0] ** 2, axis=(1, 2)) + jg.sum(per_example[1] ** 2, axis=1))
    batch_grads = jg.grad(batch_loss, [w, b])
    logits = xs @ w + b
    inspect = jg.compile([xs, labels], [norms, per_example[0], *batch_grads, logits], wait=True)

    norm, grads_w, batch_w, _, logits = inspect(X, Y)
    start = time.perf_counter()
    inspect(X, Y)
    mapped_s = time.perf_counter() - start

    x1, label1 = jg.input("x", (features,)), jg.input("label", (), "int64")     # the loop, to compare
    one = jg.compile([x1, label1], jg.grad(loss(x1, label1), [w, b]), wait=True)
    one(X[0], Y[0])
    start = time.perf_counter()
    looped = np.stack([one(X[i], Y[i])[0] for i in range(n)])
    loop_s = time.perf_counter() - start
    correct = logits.argmax(1) == Y
    print(f"softmax regression on {n} digits: training accuracy {correct.mean():.3f}")
    print(f"per-example gradients of all {n} examples: vmap in one call {mapped_s * 1e3:.2f} ms, "
          f"a loop of {n} calls {loop_s * 1e3:.1f} ms")
    print(f"they equal the loop's: {np.allclose(grads_w, looped, rtol=1e-12, atol=1e-14)}; "
          f"they average to the batch gradient: {np.allclose(grads_w.mean(0), batch_w, atol=1e-12)}")
    print(f"gradient norm, median: correct {np.median(norm[correct]):.3g}, "
          f"wrong {np.median(norm[~correct]) if (~correct).any() else float('nan'):.3g} "
          f"({(~correct).sum()} wrong)")
    top = np.argsort(norm)[::-1][:8]
    print("largest norms: " + ", ".join(f"#{i} label {Y[i]} ({norm[i]:.2f})" for i in top))

    plt = _common.pyplot()
    fig = plt.figure(figsize=(9, 4.5))
    ax = fig.add_subplot(1, 2, 1)
    ax.hist([norm[correct], norm[~correct]], bins=30, stacked=True, label=["classified right", "wrong"])
    ax.set(xlabel="per-example gradient norm", ylabel="examples",
           title="Learned examples pull little; wrong ones most")
    ax.legend()
    for k, i in enumerate(top[:8]):
        sub = fig.add_subplot(4, 4, 4 * (k // 2) + 3 + k % 2)
        sub.imshow(X[i].reshape(8, 8), cmap="gray_r")
        sub.set_title(f"label {Y[i]}, |g| {norm[i]:.2f}", fontsize=7)
        sub.axis("off")
    _common.save_figure(fig, args.out, "per_example_gradients.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
