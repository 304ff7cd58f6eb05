"""The training stack: optimizers against hand-written NumPy, mini-batches, checkpoints."""
from __future__ import annotations

import os

import numpy as np
import pytest

import jitgrad as jg
from jitgrad.testing import call_unmutated

rng = np.random.default_rng(11)
X, Y = rng.normal(size=(8, 3)), rng.normal(size=8)
W0, B0 = rng.normal(size=3), np.array(0.3)


def model(target="cpu", optimizer=None, **kw):
    """Linear least squares: returns (step, w, b); step(x, y) -> loss, updating w and b."""
    w, b = jg.param("w", W0), jg.param("b", B0)
    x, y = jg.input("x", (None, 3)), jg.input("y", (None,))
    loss = jg.mean((x @ w + b - y) ** 2)
    updates = optimizer(loss, [w, b], **kw)
    return jg.compile([x, y], loss, updates=updates, target=target), w, b


def numpy_grads(w, b):
    r = X @ w + b - Y
    return 2 * X.T @ r / len(Y), 2 * r.mean()


def reference(kind, steps, lr, momentum=0.0, nesterov=False, weight_decay=0.0, b1=0.9, b2=0.999, eps=1e-8):
    """The same updates written out in NumPy, as PyTorch documents them."""
    params, state = [W0.copy(), B0.copy()], {}
    for t in range(1, steps + 1):
        grads = numpy_grads(*params)
        for i, (p, g) in enumerate(zip(params, grads)):
            if kind == "sgd":
                g = g + weight_decay * p
                if momentum:
                    state[i] = momentum * state.get(i, 0) + g
                    g = g + momentum * state[i] if nesterov else state[i]
                params[i] = p - lr * g
            else:
                m = state[i, "m"] = b1 * state.get((i, "m"), 0) + (1 - b1) * g
                v = state[i, "v"] = b2 * state.get((i, "v"), 0) + (1 - b2) * g * g
                step = (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
                decay = weight_decay * p if kind == "adamw" else 0
                params[i] = p - lr * (step + decay)
    return params


CONFIGS = [("sgd", dict(lr=0.1)), ("sgd", dict(lr=0.1, momentum=0.9)),
           ("sgd", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)),
           ("adam", dict(lr=0.01)), ("adamw", dict(lr=0.01, weight_decay=0.1))]


@pytest.mark.parametrize("target", ["numpy", "cpu"])
@pytest.mark.parametrize("kind, kw", CONFIGS, ids=[f"{k}-{i}" for i, (k, _) in enumerate(CONFIGS)])
def test_optimizers_match_numpy_over_several_steps(target, kind, kw):
    step, w, b = model(target, getattr(jg.optim, kind), **kw)
    for _ in range(5):
        call_unmutated(step, X, Y)
    want_w, want_b = reference(kind, 5, **kw)
    np.testing.assert_allclose(w.value, want_w, rtol=1e-12)
    np.testing.assert_allclose(b.value, want_b, rtol=1e-12)


def test_learning_rate_as_an_input_and_float32_params_stay_float32():
    w = jg.param("w", W0.astype(np.float32))
    x, y, lr = jg.input("x", (None, 3), "float32"), jg.input("y", (None,), "float32"), jg.input("lr", ())
    loss = jg.mean((x @ w - y) ** 2)
    step = jg.compile([x, y, lr], loss, updates=jg.optim.adam(loss, [w], lr=lr))
    before = w.value
    step(X.astype(np.float32), Y.astype(np.float32), 0.0)
    np.testing.assert_array_equal(w.value, before)             # lr 0: no change
    step(X.astype(np.float32), Y.astype(np.float32), 0.1)
    assert w.value.dtype == np.float32 and not np.array_equal(w.value, before)


def test_optimizer_errors_name_the_problem():
    w = jg.param("w", W0)
    loss = jg.sum(w * w)
    with pytest.raises(TypeError, match="jg.param"):
        jg.optim.sgd(loss, [jg.input("x", (3,))], lr=0.1)
    with pytest.raises(ValueError, match="lr"):
        jg.optim.sgd(loss, [w], lr=-1.0)
    with pytest.raises(ValueError, match="b1"):
        jg.optim.adam(loss, [w], b1=1.0)
    with pytest.raises(ValueError, match="nesterov"):
        jg.optim.sgd(loss, [w], lr=0.1, nesterov=True)


# -- batches ------------------------------------------------------------------------

def test_batches_cover_every_row_once_per_epoch_and_reshuffle():
    rows = np.arange(10)
    data = jg.data.batches((rows, rows * 2), batch_size=3, shuffle=True, seed=4)
    assert len(data) == 4
    epochs = []
    for _ in range(3):
        seen = [(a, b) for a, b in data]
        assert all(np.array_equal(b, 2 * a) for a, b in seen)        # aligned
        epochs.append(np.concatenate([a for a, _ in seen]))
        assert sorted(epochs[-1]) == list(range(10))                 # every row exactly once
    assert not np.array_equal(epochs[0], epochs[1])                   # reshuffled per epoch
    again = jg.data.batches((rows, rows * 2), batch_size=3, shuffle=True, seed=4)
    for epoch in epochs:                                             # same seed, same epochs
        np.testing.assert_array_equal(np.concatenate([a for a, _ in again]), epoch)


def test_batches_in_order_drop_last_and_single_arrays():
    assert [b.tolist() for b in jg.data.batches(np.arange(5), 2)] == [[0, 1], [2, 3], [4]]
    assert [b.tolist() for b in jg.data.batches(np.arange(5), 2, drop_last=True)] == [[0, 1], [2, 3]]


def test_batches_reject_misaligned_arrays_and_bad_sizes():
    with pytest.raises(ValueError, match=r"not aligned.*\[3, 4\]"):
        jg.data.batches((np.zeros(3), np.zeros(4)), 2)
    with pytest.raises(ValueError, match="batch_size"):
        jg.data.batches(np.zeros(3), 0)


# -- checkpoints ----------------------------------------------------------------------

def test_a_checkpoint_resumes_training_exactly(tmp_path):
    step, w, b = model("cpu", jg.optim.adam, lr=0.01)
    for _ in range(3):
        step(X, Y)
    jg.save_params(tmp_path / "ckpt.npz", step)                     # params and Adam's state
    for _ in range(2):
        step(X, Y)
    resumed, w2, b2 = model("cpu", jg.optim.adam, lr=0.01)           # a fresh graph, same names
    jg.load_params(tmp_path / "ckpt.npz", resumed)
    for _ in range(2):
        resumed(X, Y)
    np.testing.assert_array_equal(w2.value, w.value)
    np.testing.assert_array_equal(b2.value, b.value)


def test_a_crash_mid_save_leaves_the_old_checkpoint(tmp_path, monkeypatch):
    w = jg.param("w", np.ones(3))
    path = tmp_path / "ckpt.npz"
    jg.save_params(path, [w])
    w.value = np.full(3, 2.0)

    def crash(file, **arrays):
        file.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt
    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(KeyboardInterrupt):
        jg.save_params(path, [w])
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["ckpt.npz"]                      # no temporary file left
    jg.load_params(path, [w])
    np.testing.assert_array_equal(w.value, np.ones(3))


def test_a_mismatched_checkpoint_raises_before_changing_anything(tmp_path):
    a, b = jg.param("a", np.ones(2)), jg.param("b", np.ones(3))
    jg.save_params(tmp_path / "ckpt.npz", [a, b])
    a2, b2 = jg.param("a", np.zeros(2)), jg.param("b", np.zeros(4))
    with pytest.raises(ValueError, match=r"'b' is float64\[3\] in the file, float64\[4\] in the graph"):
        jg.load_params(tmp_path / "ckpt.npz", [a2, b2])
    np.testing.assert_array_equal(a2.value, np.zeros(2))             # a was fine but is untouched
    with pytest.raises(ValueError, match="'c' is missing"):
        jg.load_params(tmp_path / "ckpt.npz", [jg.param("c", np.ones(1))], strict=False)
    with pytest.raises(ValueError, match="'b' is in the file but not among the params"):
        jg.load_params(tmp_path / "ckpt.npz", [a2])
    with pytest.raises(ValueError, match="dtype|float32"):
        jg.load_params(tmp_path / "ckpt.npz", [jg.param("a", np.ones(2, np.float32)), b])
    (tmp_path / "bad.npz").write_bytes(b"not a zip at all")
    with pytest.raises(ValueError, match="not a readable params checkpoint"):
        jg.load_params(tmp_path / "bad.npz", [a2, b2])


def test_params_with_the_same_name_cannot_be_saved(tmp_path):
    with pytest.raises(ValueError, match="named"):
        jg.save_params(tmp_path / "x.npz", [jg.param("w", 1.0), jg.param("w", 2.0)])
