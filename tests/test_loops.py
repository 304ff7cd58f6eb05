"""Control flow in the graph: jg.scan, jg.fori_loop, jg.while_loop and jg.cond.

Loops are checked against the same computation unrolled by a Python loop: values
bit for bit on the reference target (the same NumPy operations run in both),
derivatives to rounding (a loop sums the cotangents of what it reads from
outside step by step, in another order than the unrolled graph), and the CPU
target against the reference.
"""
from __future__ import annotations

import numpy as np
import pytest

import jitgrad as jg
from jitgrad import functions as F
from jitgrad.fusion import ControlFlow
from jitgrad.lower import lower_body
from jitgrad.testing import check_target

RNG = np.random.default_rng(0)
X = RNG.normal(size=(6, 3))
W0 = np.array([0.5, -0.3, 0.8])


def _step(w):
    def step(h, row):
        h = jg.tanh(h * w + row)
        return h, jg.sum(h * row)
    return step


def _unrolled(x, h, w, reverse=False):
    ys = [None] * x.shape[0]
    for t in (range(x.shape[0] - 1, -1, -1) if reverse else range(x.shape[0])):
        h, ys[t] = _step(w)(h, x[t])
    return h, jg.stack(ys)


def _graphs(reverse=False, checkpoint=None, x=None, w=None):
    """Value, gradients and a Hessian-vector product of a recurrence, scanned and unrolled."""
    w = jg.param("w", W0) if w is None else w
    x = jg.input("x", (6, 3)) if x is None else x
    built = []
    for run in (lambda: jg.scan(_step(w), F.zeros_like(x[0]), x, reverse=reverse, checkpoint=checkpoint),
                lambda: _unrolled(x, F.zeros_like(x[0]), w, reverse)):
        h, ys = run()
        loss = jg.sum(h * h) + jg.sum(jg.sin(ys))
        gx, gw = jg.grad(loss, [x, w])
        (hvp,) = jg.jvp([gw], [w], [np.array([1.0, 2.0, -1.0])])
        built.append([h, ys, loss, gx, gw, hvp])
    return x, built


@pytest.mark.parametrize("reverse", [False, True])
def test_scan_equals_the_unrolled_loop_with_its_derivatives(reverse):
    x, (scanned, unrolled) = _graphs(reverse)
    got = jg.compile([x], scanned, target="numpy")(X)
    want = jg.compile([x], unrolled, target="numpy")(X)
    for k, (g, u) in enumerate(zip(got, want)):
        if k < 3:
            np.testing.assert_array_equal(g, u, err_msg=f"value {k}")
        else:
            np.testing.assert_allclose(g, u, rtol=1e-13, atol=1e-15, err_msg=f"derivative {k}")
    check_target([x], scanned, [X], "cpu")


@pytest.mark.parametrize("checkpoint, reverse", [(1, False), (2, False), (4, True), (6, False), (9, False)])
def test_a_checkpointed_scan_equals_the_stored_one(checkpoint, reverse):
    w = jg.param("w", W0)
    x, (stored, _) = _graphs(reverse, w=w)
    _, (segmented, _) = _graphs(reverse, checkpoint, x=x, w=w)
    f = jg.compile([x], stored + segmented, target="numpy")
    got = f(X)
    for k, (a, b) in enumerate(zip(got[:6], got[6:])):
        np.testing.assert_allclose(b, a, rtol=1e-13, atol=1e-15, err_msg=f"output {k}")


def _history_rows(schedule) -> int:
    """Rows a schedule stores for reverse mode: its loops' results stacked per step past the
    per-step outputs (the carries each step began with, the inner values the backward steps
    read), in the loops' bodies too."""
    rows = 0
    for step in schedule.steps:
        if isinstance(step, ControlFlow) and step.eqn.op.name == "scan":
            body = step.eqn.attrs["body"]
            first = body.n_carry + body.n_y
            rows += sum(e.out.dims[0] for e in step.siblings if e.attrs["index"] >= first)
            rows += _history_rows(lower_body(body))
    return rows


def test_checkpointing_stores_fewer_carries():
    w = jg.param("w", W0)
    x = jg.input("x", (64, 3))

    def loss(checkpoint):
        h, ys = jg.scan(_step(w), F.zeros_like(x[0]), x, checkpoint=checkpoint)
        return jg.grad(jg.sum(h) + jg.sum(ys), [w])

    stored = jg.compile([x], loss(None), target="numpy")
    segmented = jg.compile([x], loss(8), target="numpy")
    assert _history_rows(stored.schedule) == 64 + 64        # each step's carry and its tanh
    assert _history_rows(segmented.schedule) == 8 + 8 + 8   # 8 segment starts; inside one segment, both
    data = RNG.normal(size=(64, 3))
    np.testing.assert_allclose(segmented(data)[0], stored(data)[0], rtol=1e-13)


def test_derivatives_of_a_scan_match_finite_differences():
    def fn(x, h0):
        h, ys = jg.scan(lambda h, row: (jg.tanh(h * row + 0.3), h * jg.sin(row)), h0, x)
        return jg.sum(h) + jg.sum(ys * ys)
    jg.check_grads(fn, [X, RNG.normal(size=3)], order=2)


def test_tuple_carries_of_several_dtypes_and_no_per_step_output():
    x = jg.input("x", (5, 2), "float32")
    scale = jg.param("scale", np.float32(0.5))

    def step(carry, row):
        h, count, total = carry
        h = h * scale + row
        return (h, count + 1, total + F.astype(jg.sum(h), "float64")), None

    (h, count, total), ys = jg.scan(step, (F.zeros_like(x[0]), F.constant(np.int64(0)), F.constant(0.0)), x)
    assert ys is None and h.dtype == np.float32 and count.dtype == np.int64
    (g,) = jg.grad(total, [scale])
    data = RNG.normal(size=(5, 2)).astype(np.float32)
    got = check_target([x], [h, count, total, g], [data], "cpu", rtol=1e-6, atol=1e-6)
    want_h, want_total = np.zeros(2, np.float32), 0.0
    for row in data:
        want_h = want_h * np.float32(0.5) + row
        want_total += float(want_h.sum())
    np.testing.assert_allclose(got[0], want_h, rtol=1e-6)
    assert got[1] == 5 and got[2] == pytest.approx(want_total, rel=1e-6)


def test_zero_steps_give_the_initial_carry_and_empty_outputs():
    h0 = jg.input("h0", (3,))
    h, ys = jg.scan(lambda h, _: (h * 2.0, jg.sum(h)), h0, length=0)
    (g,) = jg.grad(jg.sum(h) + jg.sum(ys), [h0])
    got = check_target([h0], [h, ys, g], [np.arange(3.0)], "cpu")
    np.testing.assert_array_equal(got[0], np.arange(3.0))
    assert got[1].shape == (0,)
    np.testing.assert_array_equal(got[2], np.ones(3))
    assert jg.fori_loop(3, 3, lambda i, c: c * 2.0, h0) is h0


def test_fori_loop_reads_the_index_and_trains_through_updates():
    w = jg.param("w", np.array(0.5))
    x = jg.input("x", ())

    def body(i, c):
        return c * w + F.astype(i, "float64") * x
    y = jg.fori_loop(1, 5, body, F.constant(1.0))
    loss = (y - 3.0) ** 2
    step = jg.compile([x], loss, target="cpu", updates=jg.optim.sgd(loss, [w], lr=1e-3))
    want = 1.0
    for i in range(1, 5):
        want = want * 0.5 + i * 0.25
    assert step(np.array(0.25)) == pytest.approx((want - 3.0) ** 2, rel=1e-14)
    assert w.value != 0.5


def test_a_scan_inside_a_scan_and_under_vmap():
    w = jg.param("w", W0)
    xs = jg.input("xs", (4, 6, 3))

    def inner_sum(x):                      # a scan over rows, each step scanning the row's entries
        def row_step(c, row):
            s, _ = jg.scan(lambda a, v: (a * 0.5 + v, None), c, row)
            return jg.tanh(s * w), s
        h, ys = jg.scan(row_step, F.zeros_like(x[0]), x)
        return jg.sum(h) + jg.sum(ys)

    batched = jg.vmap(inner_sum)(xs)
    grads = jg.vmap(lambda x: jg.grad(inner_sum(x), [w])[0])(xs)
    data = RNG.normal(size=(4, 6, 3))
    got = check_target([xs], [batched, grads], [data], "cpu")
    x1 = jg.input("x1", (6, 3))
    one = jg.compile([x1], [inner_sum(x1), jg.grad(inner_sum(x1), [w])[0]], target="numpy")
    for e in range(4):
        value, grad = one(data[e])
        np.testing.assert_allclose(got[0][e], value, rtol=1e-13)
        np.testing.assert_allclose(got[1][e], grad, rtol=1e-12, atol=1e-14)


def test_the_program_does_not_grow_with_the_number_of_steps():
    def source(steps):
        x = jg.input("x", (steps, 8))
        w = jg.param("w", np.eye(8) * 0.5)
        h, _ = jg.scan(lambda h, row: (jg.tanh(h @ w + row), None), F.zeros_like(x[0]), x)
        f = jg.compile([x], jg.grad(jg.sum(h), [w]), target="numpy")
        return str(f.schedule)
    short, long = source(10), source(1000)
    assert len(short.splitlines()) == len(long.splitlines())
    assert short.count("tanh") == long.count("tanh") > 0          # the body is printed once, indented
    assert "      body {" in short


def test_while_loop_runs_newton_to_a_tolerance_and_differentiates_forward():
    a = jg.input("a", ())
    root, steps = jg.while_loop(lambda c: jg.abs(c[0] * c[0] - a) > 1e-12,
                                lambda c: ((c[0] + a / c[0]) * 0.5, c[1] + 1),
                                (F.constant(1.0), F.constant(np.int64(0))))
    (droot,) = jg.jvp([root], [a], [1.0])
    for target in ("numpy", "cpu"):
        got = jg.compile([a], [root, steps, droot], target=target)(np.array(2.0))
        assert got[0] == pytest.approx(np.sqrt(2.0), abs=1e-12) and 3 <= got[1] <= 8
        assert got[2] == pytest.approx(0.5 / np.sqrt(2.0), rel=1e-10)
    with pytest.raises(NotImplementedError, match="while_loop: reverse-mode.*jg.fori_loop or jg.scan"):
        jg.grad(root, [a])


def test_a_batched_while_loop_stops_each_example_on_its_own():
    v = jg.input("v", (4,))
    doubled = jg.vmap(lambda u: jg.while_loop(lambda c: c < u, lambda c: c * 2.0, F.ones_like(u)))(v)
    got = check_target([v], doubled, [np.array([0.5, 4.0, 5.0, 9.0])], "cpu")
    np.testing.assert_array_equal(got, [1.0, 4.0, 8.0, 16.0])


def test_cond_runs_the_branch_taken_and_differentiates_it():
    z = jg.input("z", ())
    y = jg.cond(z > 0, lambda u: jg.sqrt(u) * 3.0, lambda u: -u * u, z)
    (g,) = jg.grad(y, [z])
    (t,) = jg.jvp([y], [z], [1.0])
    f = jg.compile([z], [y, g, t], target="cpu")
    np.testing.assert_allclose(f(np.array(4.0)), [6.0, 0.75, 0.75])
    np.testing.assert_allclose(f(np.array(-2.0)), [-4.0, 4.0, 4.0])     # sqrt(-2) never runs: no NaN
    for z0 in (1.3, -0.7):
        jg.check_grads(lambda u: jg.cond(u > 0, lambda v: jg.sin(v) * v, lambda v: jg.exp(v), u),
                       [np.array(z0)], order=2)


def test_cond_with_a_per_example_predicate_selects_like_where():
    xs = jg.input("xs", (4,))
    ys = jg.vmap(lambda u: jg.cond(u > 0, lambda v: jg.log(v), lambda v: v * 2.0, u))(xs)
    (g,) = jg.grad(jg.sum(ys), [xs])
    got = jg.compile([xs], [ys, g], target="numpy")(np.array([-1.0, 1.0, 2.0, -3.0]))
    np.testing.assert_allclose(got[0], [-2.0, 0.0, np.log(2.0), -6.0])
    np.testing.assert_allclose(got[1], [2.0, 1.0, 0.5, 2.0])      # finite, though log(-1) ran


@pytest.mark.parametrize("target", ["numpy", "cpu"])
def test_loops_save_and_load_as_data(tmp_path, target):
    x, (scanned, _) = _graphs(checkpoint=4)
    a = jg.input("a", ())
    root = jg.while_loop(lambda c: jg.abs(c * c - a) > 1e-12, lambda c: (c + a / c) * 0.5, F.constant(1.0))
    branch = jg.cond(a > 1.0, lambda u: u * 2.0, lambda u: u - 1.0, root)
    outputs = scanned + [root, branch]
    jg.save(tmp_path / "loops.npz", outputs)
    loaded = jg.load(tmp_path / "loops.npz")
    by_name = {t.name: t for t in jg.inputs_of(loaded)}
    assert sorted(by_name) == ["a", "x"]
    got = jg.compile([by_name["x"], by_name["a"]], loaded, target=target)(X, np.array(3.0))
    want = jg.compile([x, a], outputs, target="numpy")(X, np.array(3.0))
    for k, (g, w) in enumerate(zip(got, want)):
        np.testing.assert_allclose(g, w, rtol=1e-13, atol=1e-15, err_msg=f"output {k}")


def test_a_malformed_body_record_is_refused(tmp_path):
    import json
    x = jg.input("x", (3, 2))
    h, _ = jg.scan(lambda h, row: (h + row, None), F.zeros_like(x[0]), x)
    jg.save(tmp_path / "g.npz", h)
    with np.load(tmp_path / "g.npz") as z:
        arrays = dict(z)
    graph = json.loads(arrays["graph"].tobytes())
    loop = next(rec for rec in graph["nodes"] if rec["op"] == "scan")
    loop["attrs"]["body"]["body"]["params"][0] = len(graph["nodes"]) + 5       # points past the end
    arrays["graph"] = np.frombuffer(json.dumps(graph).encode(), np.uint8)
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match="body input"):
        jg.load(tmp_path / "bad.npz")


def test_errors_name_what_is_wrong():
    x = jg.input("x", (4, 3))
    with pytest.raises(ValueError, match=r"carry\[1\] goes into the body as float64\[3\] but comes out as "
                                         r"float64\[1, 3\]"):
        jg.scan(lambda c, row: ((c[0], c[1][None]), None), (F.zeros_like(x[0]), F.zeros_like(x[0])), x)
    with pytest.raises(ValueError, match="different leading sizes"):
        jg.scan(lambda c, r: (c, None), F.zeros_like(x[0]), (x, x[:2]))
    with pytest.raises(ValueError, match="length=5 but the xs have 4 steps"):
        jg.scan(lambda c, r: (c, None), F.zeros_like(x[0]), x, length=5)
    with pytest.raises(ValueError, match="checkpoint must be a positive int"):
        jg.scan(lambda c, r: (c, None), F.zeros_like(x[0]), x, checkpoint=0)
    with pytest.raises(NotImplementedError, match=r"fixed shapes.*\(None, 3\)"):
        jg.scan(lambda c, r: (c, None), F.zeros_like(x[0]), jg.input("seq", (None, 3)))
    with pytest.raises(TypeError, match="body must return a pair"):
        jg.scan(lambda c, r: c, F.zeros_like(x[0]), x)
    with pytest.raises(TypeError, match="while_loop: cond must return a boolean scalar"):
        jg.while_loop(lambda c: c, lambda c: c, F.zeros_like(x[0]))
    with pytest.raises(ValueError, match=r"cond: result 0 is float64\[3\] from true_fn but float64\[\] from false_fn"):
        jg.cond(x[0, 0] > 0, lambda u: u, lambda u: jg.sum(u), x[0])
    with pytest.raises(TypeError, match="fori_loop: bounds must be ints"):
        jg.fori_loop(0, 2.5, lambda i, c: c, x)


def test_tuples_of_scanned_operands_and_of_per_step_outputs():
    x, u = jg.input("x", (4, 3)), jg.input("u", (4,))

    def step(c, xs):
        row, scale = xs
        c = c + row * scale
        return c, (jg.sum(c), c * 2.0)

    c, (totals, doubled) = jg.scan(step, F.zeros_like(x[0]), (x, u))
    X, U = RNG.normal(size=(4, 3)), RNG.normal(size=4)
    got = check_target([x, u], [c, totals, doubled], [X, U], "cpu")
    running = np.cumsum(X * U[:, None], axis=0)
    np.testing.assert_allclose(got[0], running[-1], rtol=1e-14)
    np.testing.assert_allclose(got[1], running.sum(1), rtol=1e-14)
    np.testing.assert_allclose(got[2], running * 2, rtol=1e-14)


def test_one_predicate_for_every_example_keeps_cond_a_branch():
    a, xs = jg.input("a", ()), jg.input("xs", (3,))
    ys = jg.vmap(lambda v: jg.cond(a > 0, lambda t: jg.sqrt(t), lambda t: t * t, v))(xs)
    assert any(n.op.name == "cond" for n in jg.graph.topological_order([ys]))
    f = jg.compile([a, xs], ys, target="cpu")
    np.testing.assert_allclose(f(np.array(1.0), np.array([1.0, 4.0, 9.0])), [1.0, 2.0, 3.0])
    np.testing.assert_allclose(f(np.array(-1.0), np.array([1.0, 4.0, -9.0])), [1.0, 16.0, 81.0])
