"""jg.nn's losses and layers of issue 17 against NumPy transcriptions of PyTorch's formulas:
binary_cross_entropy_with_logits, cross_entropy's weight / ignore_index / label_smoothing /
reduction, embedding, scaled_dot_product_attention, one_hot with a call-time length."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.special import log_softmax as np_log_softmax, softmax as np_softmax

import jitgrad as jg

rng = np.random.default_rng(117)
nn = jg.nn


def run(inputs, outputs, *args, target="numpy"):
    return jg.compile(inputs, outputs, target=target)(*args)


def value(fn, *args):
    xs = [jg.input(f"a{i}", np.shape(a), np.asarray(a).dtype) for i, a in enumerate(args)]
    return run(xs, fn(*xs), *args)


# -- binary_cross_entropy_with_logits -----------------------------------------------------------

def _bce_ref(x, y, weight=None, pos_weight=None, reduction="mean"):
    log_sig, log_one_minus = -np.logaddexp(0, -x), -np.logaddexp(0, x)
    p = 1.0 if pos_weight is None else pos_weight
    loss = -(p * y * log_sig + (1 - y) * log_one_minus)
    loss = loss * (1.0 if weight is None else weight)
    return {"mean": np.mean, "sum": np.sum, "none": lambda a: a}[reduction](loss)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
def test_bce_with_logits(reduction, weighted):
    x, y = rng.normal(size=(4, 3)) * 3, rng.uniform(0, 1, (4, 3))
    w, pw = (rng.uniform(0.5, 2, 3), rng.uniform(0.5, 3, 3)) if weighted else (None, None)
    got = value(lambda a, b: nn.binary_cross_entropy_with_logits(a, b, w, pw, reduction), x, y)
    np.testing.assert_allclose(got, _bce_ref(x, y, w, pw, reduction), rtol=1e-12, atol=1e-14)


def test_bce_with_logits_is_stable_and_differentiable():
    x = np.array([-800.0, -40.0, 0.0, 40.0, 800.0])
    y = np.array([1.0, 0.0, 0.5, 1.0, 0.0])
    got = value(lambda a, b: nn.binary_cross_entropy_with_logits(a, b, reduction="none"), x, y)
    np.testing.assert_allclose(got, [800.0, np.log1p(np.exp(-40)), np.log(2), np.log1p(np.exp(-40)), 800.0])
    jg.check_grads(lambda a, b: nn.binary_cross_entropy_with_logits(a, b, pos_weight=jg.constant(np.array(
        [2.0, 0.5, 1.0])), weight=jg.constant(np.array([1.0, 2.0, 3.0]))), [rng.normal(size=(2, 3)),
                   rng.uniform(0, 1, (2, 3))], order=2)


# -- cross_entropy --------------------------------------------------------------------------------

def _ce_ref(logits, labels, weight=None, ignore_index=None, label_smoothing=0.0, reduction="mean"):
    """PyTorch's cross_entropy (classes on the last axis), transcribed."""
    c = logits.shape[-1]
    log_p = np_log_softmax(logits, axis=-1)
    kept = np.ones(labels.shape, bool) if ignore_index is None else labels != ignore_index
    safe = np.where(kept, labels, 0)
    w = np.ones(c) if weight is None else weight
    w_y = np.where(kept, w[safe], 0.0)
    nll = -np.take_along_axis(log_p, safe[..., None], -1)[..., 0] * w_y
    smooth = np.where(kept, -(log_p * w).sum(-1), 0.0)
    if reduction == "none":
        return (1 - label_smoothing) * nll + label_smoothing / c * smooth
    if reduction == "sum":
        return (1 - label_smoothing) * nll.sum() + label_smoothing / c * smooth.sum()
    return ((1 - label_smoothing) * nll.sum() + label_smoothing / c * smooth.sum()) / w_y.sum()


def test_cross_entropy_keeps_its_behaviour():
    logits, labels = rng.normal(size=(5, 4)), np.array([0, 3, -1, 2, 1])
    got = value(nn.cross_entropy, logits, labels)
    want = -np.mean(np_log_softmax(logits, -1)[np.arange(5), labels])
    np.testing.assert_allclose(got, want, rtol=1e-13)
    with pytest.raises(IndexError):
        value(nn.cross_entropy, logits, np.array([0, 4, 0, 0, 0]))


@pytest.mark.parametrize("options", [
    dict(weight=np.array([0.2, 1.0, 3.0, 0.5])),
    dict(ignore_index=-100),
    dict(ignore_index=2, weight=np.array([0.2, 1.0, 3.0, 0.5])),
    dict(label_smoothing=0.1),
    dict(label_smoothing=0.2, weight=np.array([0.2, 1.0, 3.0, 0.5]), ignore_index=-100),
    dict(label_smoothing=0.3, ignore_index=-100, reduction="sum"),
    dict(weight=np.array([0.2, 1.0, 3.0, 0.5]), ignore_index=-100, reduction="none"),
    dict(reduction="sum"),
], ids=lambda o: "-".join(f"{k}" for k in o) + "-" + o.get("reduction", "mean"))
def test_cross_entropy_options(options):
    logits = rng.normal(size=(2, 3, 4))
    labels = np.array([[0, 3, -100], [2, 1, 2]])
    if options.get("ignore_index") != -100:
        labels = np.where(labels == -100, 1, labels)
    kw = {k: (jg.constant(v) if isinstance(v, np.ndarray) else v) for k, v in options.items()}
    got = value(lambda a, b: nn.cross_entropy(a, b, **kw), logits, labels)
    np.testing.assert_allclose(got, _ce_ref(logits, labels, **options), rtol=1e-12, atol=1e-14)


def test_cross_entropy_derivatives():
    labels = jg.constant(np.array([1, -100, 0, 2]))
    weight = jg.constant(np.array([1.0, 2.0, 0.5]))
    jg.check_grads(lambda a: nn.cross_entropy(a, labels, weight=weight, ignore_index=-100, label_smoothing=0.1),
                   [rng.normal(size=(4, 3))], order=2)


def test_cross_entropy_errors():
    x, y = jg.input("x", (3, 4)), jg.input("y", (3,), "int64")
    with pytest.raises(ValueError, match="reduction"):
        nn.cross_entropy(x, y, reduction="avg")
    with pytest.raises(ValueError, match="label_smoothing"):
        nn.cross_entropy(x, y, label_smoothing=1.5)
    with pytest.raises(ValueError, match="weight"):
        nn.cross_entropy(x, y, weight=np.ones((2, 2)))


# -- embedding ------------------------------------------------------------------------------------

def test_embedding_gathers_rows_and_accumulates_their_gradient():
    table, idx = rng.normal(size=(5, 3)), np.array([[1, 4, 1], [0, 1, 4]])
    t, i = jg.input("t", table.shape), jg.input("i", idx.shape, "int64")
    e = nn.embedding(i, t)
    (g,) = jg.grad(jg.sum(e * 2.0), [t])
    got, grad = run([t, i], [e, g], table, idx)
    np.testing.assert_array_equal(got, table[idx])
    np.testing.assert_array_equal(grad, 2.0 * np.array([1, 3, 0, 0, 2])[:, None] * np.ones(3))
    with pytest.raises(ValueError, match="2-d"):
        nn.embedding(i, jg.input("bad", (5,)))


# -- scaled_dot_product_attention ----------------------------------------------------------------

def _sdpa_ref(q, k, v, mask=None, is_causal=False, scale=None):
    scale = 1 / np.sqrt(q.shape[-1]) if scale is None else scale
    s = q @ np.swapaxes(k, -1, -2) * scale
    if is_causal:
        mask = np.tril(np.ones(s.shape[-2:], bool))
    if mask is not None:
        s = np.where(mask, s, -np.inf) if mask.dtype == bool else s + mask
    return np_softmax(s, axis=-1) @ v


@pytest.mark.parametrize("kind", ["plain", "bool", "float", "causal", "scale"])
def test_attention(kind):
    q, k, v = rng.normal(size=(2, 4, 3)), rng.normal(size=(2, 5, 3)), rng.normal(size=(2, 5, 6))
    kw = {"bool": dict(mask=rng.uniform(size=(4, 5)) > 0.3), "float": dict(mask=rng.normal(size=(2, 4, 5))),
          "causal": dict(is_causal=True), "scale": dict(scale=0.7), "plain": {}}[kind]
    if kind == "bool":
        kw["mask"][:, 0] = True                              # every query attends to some key
    got = value(lambda a, b, c: nn.scaled_dot_product_attention(a, b, c, **kw), q, k, v)
    np.testing.assert_allclose(got, _sdpa_ref(q, k, v, **kw), rtol=1e-12, atol=1e-13)


def test_attention_derivatives_and_errors():
    mask = jg.constant(np.tril(np.ones((3, 3), bool)))
    jg.check_grads(lambda a, b, c: nn.scaled_dot_product_attention(a, b, c, mask=mask),
                   [rng.normal(size=(3, 2)), rng.normal(size=(3, 2)), rng.normal(size=(3, 2))], order=2)
    q = jg.input("q", (3, 2))
    with pytest.raises(ValueError, match="not both"):
        nn.scaled_dot_product_attention(q, q, q, mask=mask, is_causal=True)
    with pytest.raises(ValueError, match="2 axes"):
        nn.scaled_dot_product_attention(jg.input("q1", (3,)), q, q)


def test_a_fully_masked_query_gives_nan_as_pytorch():
    q = rng.normal(size=(2, 2))
    mask = np.array([[True, True], [False, False]])
    got = value(lambda a: nn.scaled_dot_product_attention(a, a, a, mask=jg.constant(mask)), q)
    assert np.isfinite(got[0]).all() and np.isnan(got[1]).all()


# -- one_hot and the CPU --------------------------------------------------------------------------

def test_one_hot_with_a_call_time_length_and_the_cpu():
    labels = jg.input("labels", (None,), "int64")
    logits = jg.input("logits", (None, 3))
    loss = nn.cross_entropy(logits, labels, weight=jg.constant(np.array([1.0, 2.0, 3.0])), ignore_index=1,
                            label_smoothing=0.1)
    outs = [nn.one_hot(labels, 3), loss, *jg.grad(loss, [logits])]
    args = (np.array([0, 2, 1, 2]), rng.normal(size=(4, 3)))
    want = run([labels, logits], outs, *args)
    np.testing.assert_array_equal(want[0], np.eye(3)[args[0]])
    np.testing.assert_allclose(want[1], _ce_ref(args[1], args[0], np.array([1.0, 2.0, 3.0]), 1, 0.1))
    for got, ref in zip(run([labels, logits], outs, *args, target="cpu"), want):
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-13)
