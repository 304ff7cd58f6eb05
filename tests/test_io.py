"""jg.save / jg.load: graphs round-trip as data, and hostile or broken files raise ValueError."""
import builtins
import json
import os
import pickle

import numpy as np
import pytest

import jitgrad as jg
from jitgrad.functions import full
from jitgrad.io import inputs_of, load, save


# -- helpers -----------------------------------------------------------------

def model():
    """Inputs and outputs of a graph touching most attribute kinds: slices, reshape(-1),
    Dims in broadcast/reshape/full attributes (from grad and mean), where, astype, concatenate."""
    x = jg.input("x", (None, 3))
    W = jg.param("W", np.arange(6.0).reshape(3, 2) / 10)
    h = jg.tanh(x @ W + np.array([0.5, -1.0]))
    y = jg.where(h > 0, h, 0.1 * h)[:, 1:].reshape(-1)
    z = jg.concatenate([h, h * 2], 0).astype("float32")
    loss = jg.mean(y ** 2) + jg.sum(jg.exp(z)) + jg.nn.cross_entropy(h, jg.input("k", (None,), "int64"))
    return [loss, *jg.grad(loss, [W, x]), y]


def run(outputs, x, k):
    inputs = {t.name: t for t in inputs_of(outputs)}
    return jg.compile([inputs["x"], inputs["k"]], outputs, target="numpy")(x, k)


def saved(tmp_path, outputs=None):
    path = tmp_path / "g.npz"
    a = jg.input("a", (3,))
    save(path, outputs if outputs is not None else jg.sum(a + jg.input("b", (3,))))
    return path


def edit(path, change):
    """Apply ``change`` to the archive's JSON dict, as a hand-edited or malicious file would."""
    with np.load(path) as z:
        arrays = dict(z)
    graph = json.loads(arrays.pop("graph").tobytes())
    change(graph)
    arrays["graph"] = np.frombuffer(json.dumps(graph).encode(), np.uint8)
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


def node(graph, op):
    return next(n for n in graph["nodes"] if n["op"] == op)


class Payload:
    """Unpickling this creates ``path``: proof that code from the file ran."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return builtins.open, (self.path, "w")


# -- round trips -------------------------------------------------------------

@pytest.mark.parametrize("n", [5, 2])
def test_round_trip_computes_the_same(tmp_path, n):
    outputs = model()
    save(tmp_path / "m.npz", outputs)
    x, k = np.random.default_rng(n).normal(size=(n, 3)), np.arange(n) % 2
    for want, got in zip(run(outputs, x, k), run(load(tmp_path / "m.npz"), x, k)):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("build", [
    lambda x: jg.grad(jg.mean(jg.sin(x) * 3), [x]),                   # a count formula, x read late
    lambda x: jg.grad(jg.sum(jg.concatenate([x, x ** 2], 0) ** 2), [x]),  # offset formulas
    lambda x: [x[1:][::2] * 1, *jg.grad(jg.sum(jg.tanh(x[2:]) ** 3), [x])],    # slice lengths
])
def test_call_time_sizes_in_attributes_round_trip(tmp_path, build):
    x, v = jg.input("x", (None,)), np.linspace(-1, 1, 7)
    outputs, loaded = build(x), load(saved(tmp_path, build(x)))
    for want, got in zip(jg.compile([x], outputs, target="numpy")(v),
                         jg.compile(inputs_of(loaded), loaded, target="numpy")(v)):
        np.testing.assert_array_equal(got, want)


def test_names_values_and_dtypes_round_trip(tmp_path):
    loaded = load(saved(tmp_path, model()))
    params = [t for t in jg.graph.topological_order(loaded) if t.is_param]
    assert [p.name for p in params] == ["W"] and np.array_equal(params[0].value, np.arange(6.0).reshape(3, 2) / 10)
    assert sorted(t.name for t in inputs_of(loaded)) == ["k", "x"]
    assert [(t.shape, t.dtype) for t in loaded] == [(t.shape, t.dtype) for t in model()]


@pytest.mark.parametrize("outputs, kind", [(lambda a: a * 2, jg.Tensor), (lambda a: [a * 2, a], list),
                                           (lambda a: (a * 2, a), list)])
def test_single_tensor_or_list(tmp_path, outputs, kind):
    out = outputs(jg.input("a", (2,)))
    loaded = load(saved(tmp_path, out))
    assert type(loaded) is kind and (kind is jg.Tensor or len(loaded) == len(out))


def test_path_is_used_as_given_and_no_temporary_is_left(tmp_path):
    save(tmp_path / "graph.bin", jg.input("a", (2,)) + 1.0)
    assert os.listdir(tmp_path) == ["graph.bin"]
    assert load(tmp_path / "graph.bin").shape == (2,)


@pytest.mark.parametrize("value", [np.inf, -np.inf, np.nan, -0.0, 1e-300, np.float32(0.1), 3, True])
def test_fill_values_round_trip_exactly(tmp_path, value):
    (loaded,) = load(saved(tmp_path, [full((2,), value, "float32")]))
    assert repr(loaded.attrs["value"]) == repr(np.asarray(value).item())


@pytest.mark.parametrize("loss", [lambda x: jg.mean(x.reshape(-1)), lambda x: jg.mean(jg.tanh(x)[1:])])
def test_gradients_that_use_only_an_inputs_size_round_trip(tmp_path, loss):
    x = jg.input("x", (None, 3))                     # the gradient of a mean never reads x itself
    (g,) = jg.grad(loss(x), [x])
    loaded = load(saved(tmp_path, g))
    assert [t.name for t in inputs_of(loaded)] == ["x"]
    v = np.linspace(0, 1, 15).reshape(5, 3)
    np.testing.assert_array_equal(jg.compile([x], g, target="numpy")(v),
                                  jg.compile(inputs_of(loaded), loaded, target="numpy")(v))


# -- rejections --------------------------------------------------------------

def test_pickle_file_is_refused_without_running_it(tmp_path):
    path, sentinel = tmp_path / "g.npz", tmp_path / "pwned"
    path.write_bytes(pickle.dumps(Payload(sentinel)))
    with pytest.raises(ValueError, match="not a jitgrad archive"):
        load(path)
    assert not sentinel.exists()


def test_object_array_is_refused_without_running_it(tmp_path):
    path, sentinel = saved(tmp_path), tmp_path / "pwned"
    with np.load(path) as z:
        arrays = dict(z)
    np.savez(path, **arrays, c0=np.array([Payload(sentinel)], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="not a jitgrad archive"):
        load(path)
    assert not sentinel.exists()


def _pickle_checkpoints(tmp_path, sentinel):
    """Params checkpoints that carry a pickle: raw, as a pickled .npy, and as an object array."""
    raw = tmp_path / "raw.npz"
    raw.write_bytes(pickle.dumps({"w": Payload(sentinel)}))
    npy = tmp_path / "npy.npz"
    with open(npy, "wb") as f:
        np.save(f, np.array([Payload(sentinel)], dtype=object), allow_pickle=True)
    member = tmp_path / "member.npz"
    with open(member, "wb") as f:
        np.savez(f, w=np.array([Payload(sentinel)], dtype=object), allow_pickle=True)
    return {"raw pickle": raw, "pickled .npy": npy, "object array in the archive": member}


@pytest.mark.parametrize("kind", ["raw pickle", "pickled .npy", "object array in the archive"])
def test_load_params_refuses_a_pickle_payload_without_running_it(tmp_path, kind):
    sentinel = tmp_path / "pwned"
    path = _pickle_checkpoints(tmp_path, sentinel)[kind]
    assert not sentinel.exists()                  # writing the file ran nothing
    w = jg.param("w", np.arange(3.0))
    with pytest.raises(ValueError, match="not a readable params checkpoint"):
        jg.load_params(path, [w])
    assert not sentinel.exists()
    np.testing.assert_array_equal(w.value, np.arange(3.0))


def test_load_params_refuses_a_single_array_file(tmp_path):
    path = tmp_path / "one.npz"
    with open(path, "wb") as f:
        np.save(f, np.ones(3))
    with pytest.raises(ValueError, match="not a readable params checkpoint"):
        jg.load_params(path, [jg.param("w", np.zeros(3))])


BAD_EDITS = {
    "unknown op": (lambda g: node(g, "add").update(op="system"), "unknown op 'system'"),
    "unknown node field": (lambda g: node(g, "add").update(code="rm -rf"), r"unknown fields \['code'\]"),
    "unknown top-level field": (lambda g: g.update(extra=1), r"unknown fields \['extra'\]"),
    "missing field": (lambda g: node(g, "add").pop("dtype"), r"no field \['dtype'\]"),
    "unknown attr": (lambda g: node(g, "reduce_sum")["attrs"].update(where=1), r"unknown fields \['where'\]"),
    "unknown tag": (lambda g: node(g, "reduce_sum")["attrs"].update(axes={"eval": "1"}), "unknown attribute value"),
    "negative size": (lambda g: node(g, "input").update(shape=[-3]), "is not a size"),
    "string shape": (lambda g: node(g, "input").update(shape="abc"), "shape must be a list"),
    "bool size": (lambda g: node(g, "input").update(shape=[True]), "is not a size"),
    "undefined dim": (lambda g: node(g, "reduce_sum")["attrs"].update(axes=[{"dim": 7}]),
                      "size 7, which no earlier node defines"),
    "inconsistent shapes": (lambda g: g["nodes"][1].update(shape=[4]),
                            r"cannot be rebuilt: add: operands have shapes \(3,\) and \(4,\)"),
    "saved shape differs": (lambda g: node(g, "add").update(shape=[5]), r"saved as float64\[5\]"),
    "bad dtype": (lambda g: node(g, "input").update(dtype="object"), "unsupported dtype 'object'"),
    "wrong format": (lambda g: g.update(format="other"), "format is not 'jitgrad-graph'"),
    "wrong version": (lambda g: g.update(version=2), "version 2 is not supported"),
    "forward input": (lambda g: node(g, "add").update(inputs=[0, 3]), r"an input must be an int in \[0, 2\)"),
    "wrong arity": (lambda g: node(g, "add").update(inputs=[0]), "has 1 inputs, add takes 2"),
    "bad output": (lambda g: g.update(outputs=9), r"outputs must be an int in \[0, 4\)"),
}


@pytest.mark.parametrize("case", BAD_EDITS)
def test_broken_file_is_refused(tmp_path, case):
    change, message = BAD_EDITS[case]
    with pytest.raises(ValueError, match=message):
        load(edit(saved(tmp_path), change))


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(of=[{"dim": 5}]), r"a size id must be an int in \[0, 1\)"),  # only earlier sizes
    (lambda d: d.update(formula="__import__"), "unknown formula"),
])
def test_broken_size_formula_is_refused(tmp_path, change, message):
    x = jg.input("x", (None, 3))
    path = edit(saved(tmp_path, jg.grad(jg.mean(jg.tanh(x)), [x])), lambda g: change(g["dims"][0]))
    with pytest.raises(ValueError, match=message):
        load(path)


def test_two_inputs_cannot_share_a_call_time_size(tmp_path):
    path = saved(tmp_path, jg.input("a", (None,)) * jg.input("b", (None,)))
    with pytest.raises(ValueError, match=r"node 1 \(input\) was saved as float64\['n0'\]"):
        load(edit(path, lambda g: g["nodes"][1].update(shape=[{"dim": 0}])))


def test_stray_array_is_refused(tmp_path):
    path = saved(tmp_path)
    with np.load(path) as z:
        arrays = dict(z)
    np.savez(path, **arrays, p9=np.zeros(2))
    with pytest.raises(ValueError, match=r"no node uses the arrays \['p9'\]"):
        load(path)


def test_checkpoint_regions_are_refused_with_a_reason(tmp_path):
    y = jg.checkpoint(lambda h: jg.sin(h))(jg.input("x", (3,)))
    with pytest.raises(ValueError, match="jg.checkpoint region"):
        save(tmp_path / "g.npz", y)
