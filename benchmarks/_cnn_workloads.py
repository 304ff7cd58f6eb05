"""W8 of issue 16: one SGD step of a LeNet-style CNN, jitgrad against hand-written NumPy (im2col)
and PyTorch eager on the CPU.

images (64, 1, 28, 28) float32 -> conv 5x5, 16 channels, + bias -> relu -> 2x2 max pool (stride 2)
-> conv 5x5, 32 channels, + bias -> relu -> 2x2 max pool -> flatten (32 * 4 * 4 = 512, NCHW order)
-> dense 10 (+ bias) -> softmax cross-entropy, mean over the batch -> SGD (lr 0.01) on all six
params (W1 (16,1,5,5), b1 (16,), W2 (32,16,5,5), b2 (32,), W3 (512,10), b3 (10,)). No padding,
stride 1. Each step returns the loss and updates the weights in place.

- ``jitgrad_step(weights, target)``: the graph through ``jg.nn.conv2d`` / ``max_pool2d`` /
  ``flatten`` and ``jg.optim.sgd``, compiled with ``updates``;
- ``numpy_step(weights)``: written out by hand, NHWC inside: im2col through
  ``sliding_window_view`` and one BLAS product per conv, col2im as 25 slice adds, max pool as
  pairwise maxima over strided views (pooling before the relu: max and relu commute, so relu
  and its mask act on the pooled quarter), the pool's gradient to the first maximum of each
  window in row-major order (PyTorch's rule);
- ``torch_step(weights)``: PyTorch eager (``F.conv2d``, ``F.max_pool2d``, ``F.cross_entropy``,
  ``loss.backward()``, SGD under ``no_grad``), or None without torch.

Threads: ``cnn_threads(n)`` limits the BLAS pools (threadpoolctl, as W3) and PyTorch's intra-op
threads to ``n`` together; None leaves all at their defaults. jitgrad's CPU code itself is
serial (no ``parallel=True``); it and NumPy get their threads from BLAS only.

``cnn_check`` runs one step of each from the same weights and compares the losses and the
updated weights. Numba is not imported at module level (as in ``_workloads.py``).
"""
from __future__ import annotations

import contextlib
import os

import numpy as np

import jitgrad as jg

# The benchmarks time the compiled tier: every compile here waits for it (jitgrad.tiered).
os.environ.setdefault("JITGRAD_TIERED", "0")

CNN_BATCH, CNN_SIDE, CNN_CLASSES = 64, 28, 10
CNN_C1, CNN_C2, CNN_K = 16, 32, 5
CNN_FLAT = CNN_C2 * 4 * 4           # 28 -conv-> 24 -pool-> 12 -conv-> 8 -pool-> 4
CNN_LR = 0.01
CNN_RTOL = 1e-4                     # losses and updated weights, relative to each array's scale
CNN_UPDATE_RTOL = 2e-3              # the updates (old - new weights), relative to their scale
NAMES = ("W1", "b1", "W2", "b2", "W3", "b3")


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------

def cnn_data(batch: int = CNN_BATCH, seed: int = 0):
    """(images (batch, 1, 28, 28) float32 uniform in [0, 1), labels (batch,) int64 in 0..9):
    synthetic and deterministic. Continuous pixels: no two conv outputs of a pooling window
    tie (ties would only test the tie rule)."""
    rng = np.random.default_rng(seed)
    images = rng.random((batch, 1, CNN_SIDE, CNN_SIDE), dtype=np.float32)
    labels = rng.integers(0, CNN_CLASSES, batch).astype(np.int64)
    return images, labels


def cnn_weights(seed: int = 0) -> dict:
    """float32 W1, b1, W2, b2, W3, b3: He-initialised weights (std sqrt(2 / fan_in)), small
    non-zero biases (0.01 N(0, 1)) so that the first step checks the bias adds too."""
    rng = np.random.default_rng(seed + 100)

    def he(shape, fan_in):
        return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)

    def bias(n):
        return (0.01 * rng.standard_normal(n)).astype(np.float32)

    return {"W1": he((CNN_C1, 1, CNN_K, CNN_K), CNN_K * CNN_K), "b1": bias(CNN_C1),
            "W2": he((CNN_C2, CNN_C1, CNN_K, CNN_K), CNN_C1 * CNN_K * CNN_K), "b2": bias(CNN_C2),
            "W3": he((CNN_FLAT, CNN_CLASSES), CNN_FLAT), "b3": bias(CNN_CLASSES)}


@contextlib.contextmanager
def cnn_threads(n):
    """BLAS pools (NumPy's and SciPy's OpenBLAS, the latter Numba's np.dot; needs threadpoolctl)
    and, when torch has been imported, PyTorch's intra-op threads limited to ``n`` inside the
    block; None: everything at its default."""
    if n is None:
        yield
        return
    import sys
    from threadpoolctl import threadpool_limits     # ImportError when not installed
    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    with threadpool_limits(limits=int(n), user_api="blas"):
        if torch is not None:
            torch.set_num_threads(int(n))
        try:
            yield
        finally:
            if torch is not None:
                torch.set_num_threads(before)


# ---------------------------------------------------------------------------------------------
# jitgrad
# ---------------------------------------------------------------------------------------------

def cnn_graph(weights: dict, batch: int = CNN_BATCH):
    """([images, labels], params, loss) of the CNN."""
    params = [jg.param(name, weights[name]) for name in NAMES]
    W1, b1, W2, b2, W3, b3 = params
    x = jg.input("images", (batch, 1, CNN_SIDE, CNN_SIDE), "float32")
    labels = jg.input("labels", (batch,), "int64")
    h = jg.nn.max_pool2d(jg.relu(jg.nn.conv2d(x, W1, b1)), 2)
    h = jg.nn.max_pool2d(jg.relu(jg.nn.conv2d(h, W2, b2)), 2)
    logits = jg.nn.dense(jg.nn.flatten(h), W3, b3)
    return [x, labels], params, jg.nn.cross_entropy(logits, labels)


def jitgrad_step(weights: dict, target: str = "cpu", **options):
    """The SGD step compiled: step(images, labels) -> loss, params updated (``jg.optim.sgd``).
    ``step.weights()``: the current values as a dict of NumPy arrays."""
    inputs, params, loss = cnn_graph(weights)
    step = jg.compile(inputs, loss, updates=jg.optim.sgd(loss, params, CNN_LR), target=target,
                      **options)
    step.param_nodes = params
    step.weights = lambda: {p.name: np.array(p.value) for p in params}
    return step


# ---------------------------------------------------------------------------------------------
# NumPy, by hand
# ---------------------------------------------------------------------------------------------

def _pool2(h):
    """2x2 max pool, stride 2, of NHWC ``h``: (pooled, the six-axis view (N, H/2, 2, W/2, 2, C))."""
    n, height, width, c = h.shape
    h6 = h.reshape(n, height // 2, 2, width // 2, 2, c)
    top = np.maximum(h6[:, :, 0, :, 0], h6[:, :, 0, :, 1])
    bottom = np.maximum(h6[:, :, 1, :, 0], h6[:, :, 1, :, 1])
    return np.maximum(top, bottom, out=top), h6


def _pool2_backward(h6, pooled, dpooled):
    """The gradient w.r.t. the pool's input, (N, H, W, C): ``dpooled`` routed to the first
    maximum of each window (row-major), zero elsewhere."""
    n, ho, _, wo, _, c = h6.shape
    dh = np.empty((n, ho, 2, wo, 2, c), h6.dtype)
    free = np.ones(pooled.shape, bool)           # windows whose maximum is not placed yet
    for i, j in ((0, 0), (0, 1), (1, 0)):
        hit = np.equal(h6[:, :, i, :, j], pooled)
        hit &= free
        np.multiply(hit, dpooled, out=dh[:, :, i, :, j])
        free ^= hit
    np.multiply(free, dpooled, out=dh[:, :, 1, :, 1])
    return dh.reshape(n, 2 * ho, 2 * wo, c)


def numpy_step(weights: dict):
    """Hand-written step(images, labels) -> loss, with its own copy of ``weights`` updated in
    place; ``step.weights()`` returns them. NHWC inside (the BLAS products then give NHWC rows
    directly); the weights keep PyTorch's layout and are reordered each step (cheap)."""
    w = {k: np.array(v, np.float32) for k, v in weights.items()}
    lr = np.float32(CNN_LR)
    k = CNN_K
    window = np.lib.stride_tricks.sliding_window_view

    def step(images, labels):
        W1, b1, W2, b2, W3, b3 = (w[name] for name in NAMES)
        n = images.shape[0]
        # conv 1: im2col with C_in = 1, built transposed, (25, n * 24 * 24) (one contiguous
        # slice copy per kernel offset: 4x faster than copying the sliding window view); BLAS
        # takes it transposed, (n * 24 * 24, 25) @ (25, 16)
        side1 = images.shape[2] - k + 1
        cols1t = np.empty((k * k, n, side1, side1), np.float32)
        for i in range(k):
            for j in range(k):
                cols1t[i * k + j] = images[:, 0, i:i + side1, j:j + side1]
        cols1 = cols1t.reshape(k * k, n * side1 * side1).T
        W1m = W1.reshape(CNN_C1, k * k)
        h1 = cols1 @ W1m.T
        h1 += b1
        m1, h1_6 = _pool2(h1.reshape(n, side1, side1, CNN_C1))
        a1 = np.maximum(m1, 0)                                   # relu after the pool: same value
        # conv 2: im2col with the window (kh, kw, C) innermost-channel: (n * 8 * 8, 400)
        side2 = a1.shape[1] - k + 1
        cols2 = window(a1, (k, k), axis=(1, 2)).transpose(0, 1, 2, 4, 5, 3)
        cols2 = cols2.reshape(n * side2 * side2, k * k * CNN_C1)
        W2m = W2.transpose(0, 2, 3, 1).reshape(CNN_C2, k * k * CNN_C1)
        h2 = cols2 @ W2m.T
        h2 += b2
        m2, h2_6 = _pool2(h2.reshape(n, side2, side2, CNN_C2))
        a2 = np.maximum(m2, 0)
        flat = a2.transpose(0, 3, 1, 2).reshape(n, CNN_FLAT)      # flatten in NCHW order
        z = flat @ W3
        z += b3
        # softmax cross-entropy, mean over the batch
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        se = e.sum(axis=1, keepdims=True)
        rows = np.arange(n)
        loss = np.mean(np.log(se[:, 0]) - z[rows, labels])
        dz = e / se
        dz[rows, labels] -= 1
        dz /= np.float32(n)
        # backward
        gW3, gb3 = flat.T @ dz, dz.sum(axis=0)
        da2 = (dz @ W3.T).reshape(n, CNN_C2, 4, 4).transpose(0, 2, 3, 1)
        dm2 = da2 * (m2 > 0)                                     # relu, on the pooled quarter
        dh2 = _pool2_backward(h2_6, m2, dm2).reshape(n * side2 * side2, CNN_C2)
        # the bias gradients as products with ones: NumPy's sum over axis 0 of a (rows, 16) array
        # is 15x slower than BLAS's
        ones2, ones1 = np.ones(n * side2 * side2, np.float32), np.ones(n * side1 * side1, np.float32)
        gW2m, gb2 = dh2.T @ cols2, ones2 @ dh2
        dcols2 = (dh2 @ W2m).reshape(n, side2, side2, k, k, CNN_C1)
        da1 = np.zeros_like(a1)                                  # col2im: 25 slice adds
        for i in range(k):
            for j in range(k):
                da1[:, i:i + side2, j:j + side2] += dcols2[:, :, :, i, j]
        dm1 = da1
        dm1 *= m1 > 0
        dh1 = _pool2_backward(h1_6, m1, dm1).reshape(n * side1 * side1, CNN_C1)
        gW1m, gb1 = dh1.T @ cols1, ones1 @ dh1
        # SGD, in place
        W1 -= lr * gW1m.reshape(W1.shape)
        b1 -= lr * gb1
        W2 -= lr * gW2m.reshape(CNN_C2, k, k, CNN_C1).transpose(0, 3, 1, 2)
        b2 -= lr * gb2
        W3 -= lr * gW3
        b3 -= lr * gb3
        return loss

    step.weights = lambda: {name: w[name].copy() for name in NAMES}
    return step


# ---------------------------------------------------------------------------------------------
# PyTorch eager
# ---------------------------------------------------------------------------------------------

def has_torch() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def torch_step(weights: dict):
    """The step in PyTorch eager on the CPU: step(images, labels) -> loss (a 0-d tensor), with
    NumPy inputs (``torch.from_numpy``: no copy); ``step.weights()``; None without torch."""
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return None
    params = {name: torch.tensor(np.array(weights[name], np.float32), requires_grad=True)
              for name in NAMES}
    W1, b1, W2, b2, W3, b3 = (params[name] for name in NAMES)
    lr = CNN_LR

    def step(images, labels):
        x, y = torch.from_numpy(images), torch.from_numpy(labels)
        h = F.max_pool2d(F.relu(F.conv2d(x, W1, b1)), 2)
        h = F.max_pool2d(F.relu(F.conv2d(h, W2, b2)), 2)
        logits = torch.flatten(h, 1) @ W3 + b3
        loss = F.cross_entropy(logits, y)
        loss.backward()
        with torch.no_grad():
            for p in params.values():
                p.sub_(p.grad, alpha=lr)
                p.grad = None
        return loss.detach()

    step.weights = lambda: {name: p.detach().numpy().copy() for name, p in params.items()}
    return step


# ---------------------------------------------------------------------------------------------
# agreement
# ---------------------------------------------------------------------------------------------

def _deviation(got, want) -> float:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-30))


def cnn_check(which=("jitgrad", "torch"), weights: dict | None = None, data=None,
              rtol: float = CNN_RTOL, update_rtol: float = CNN_UPDATE_RTOL) -> dict:
    """One step of the NumPy step and of each of ``which`` ("jitgrad", "torch"; torch left out
    when not importable) from the same weights on the same batch: their losses and updated
    weights must agree with NumPy's within ``rtol`` and their updates (old - new) within
    ``update_rtol``, each relative to the largest magnitude of its array (AssertionError
    otherwise). Returns {name: worst deviation of the losses and weights, name + " update":
    worst deviation of the updates}."""
    weights = cnn_weights() if weights is None else weights
    images, labels = cnn_data() if data is None else data
    makers = {"jitgrad": jitgrad_step, "torch": torch_step}
    ref = numpy_step(weights)
    want_loss = float(ref(images, labels))
    want = ref.weights()
    out = {}
    for name in which:
        step = makers[name](weights)
        if step is None:
            continue
        loss = float(step(images, labels))
        got = step.weights()
        dev = [_deviation(loss, want_loss)] + [_deviation(got[p], want[p]) for p in NAMES]
        upd = [_deviation(weights[p] - got[p], weights[p] - want[p]) for p in NAMES]
        if max(dev) > rtol or max(upd) > update_rtol:
            raise AssertionError(
                f"W8: {name} and the NumPy step disagree: loss {loss} vs {want_loss}; deviations "
                + ", ".join(f"{p} {d:.1e} (update {u:.1e})" for p, d, u in zip(NAMES, dev[1:], upd))
                + f" (rtol {rtol:g}, updates {update_rtol:g})")
        out[name], out[name + " update"] = max(dev), max(upd)
    return out
