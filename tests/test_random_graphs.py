"""Property tests on random graphs: rewriting and scheduling never change a result.

Each random graph is compiled (rewrites, schedule, buffer freeing) and compared
bit for bit with an eager evaluation of the original, unrewritten graph, for
the values and for the gradients.
"""
from unittest import mock

import numpy as np
from hypothesis import given, settings, strategies as st

import jitgrad as jg
from jitgrad.backends import program_split
from jitgrad.graph import topological_order
from jitgrad.ops import leaf
from jitgrad.ops.window import windows_along
from jitgrad.primitive import resolve_dim
from jitgrad.testing import call_unmutated, check_target

UNARY = [jg.tanh, jg.sin, lambda t: jg.sqrt(jg.abs(t)), lambda t: jg.exp(-t * t), jg.relu,
         lambda t: t[:, ::-1], lambda t: t[::-1], lambda t: (t.T * 1.5).T,
         lambda t: jg.sum(t, axis=1, keepdims=True), lambda t: jg.sum(t, axis=0, keepdims=True),
         lambda t: jg.max(t, axis=0, keepdims=True), lambda t: jg.min(t, axis=1, keepdims=True),
         lambda t: jg.nn.softmax(t, axis=-1), lambda t: jg.nn.log_softmax(t, axis=0),
         lambda t: t.reshape(-1, t.shape[-1]), lambda t: jg.concatenate([t[:, :1], t[:, 1:]], 1),
         lambda t: jg.tanh(t @ np.full((t.shape[-1], t.shape[-1]), 0.3) + 0.5)]
BINARY = [jg.add, jg.subtract, jg.multiply, jg.maximum, lambda a, b: a / (1.0 + b * b),
          lambda a, b: jg.where(a > b, a, b * 2.0), lambda a, b: a * jg.stop_gradient(b)]


def eager(outputs, env):
    """Evaluate the graph as built, node by node, with no rewrites."""
    values, sizes = {}, {}
    for node in topological_order(outputs):
        if node.op is leaf.input_p:
            values[node] = env[node.name]
        elif node.op is leaf.constant_p:
            values[node] = node.const_value
        else:
            attrs = {k: tuple(resolve_dim(d, sizes) for d in v) if k == "shape" else v
                     for k, v in node.attrs.items()}
            with np.errstate(all="ignore"):
                out = node.op.ref(*(values[i] for i in node.inputs), **attrs)
            values[node] = np.asarray(out).astype(node.dtype, copy=False)
    return [values[o] for o in outputs]


@st.composite
def programs(draw):
    steps = draw(st.lists(st.tuples(st.booleans(), st.integers(0, 99), st.integers(0, 99),
                                    st.integers(0, 99)), min_size=1, max_size=12))
    return steps


def _grow(pool, steps, binary=BINARY):
    """Apply a drawn program: each step adds one node made from earlier ones."""
    for unary, op, a, b in steps:
        if unary:
            pool.append(UNARY[op % len(UNARY)](pool[a % len(pool)]))
        else:
            pool.append(binary[op % len(binary)](pool[a % len(pool)], pool[b % len(pool)]))
    return pool


def _random_graph(steps, rows=None):
    x, y, z = jg.input("x", (rows, 4)), jg.input("y", (4,)), jg.input("z", (rows, 1))
    pool = _grow([x, y + 0.0 * x, z * x], steps)
    loss = jg.sum(pool[-1] * pool[-1]) + jg.mean(pool[len(pool) // 2])
    second = jg.hvp(loss, y, np.linspace(-1, 1, 4))          # a chain of derivatives
    return [x, y, z], [loss, pool[-1], *jg.grad(loss, [x, y, z]), second]


@settings(max_examples=200, deadline=None)
@given(programs(), st.integers(0, 2 ** 31 - 1))
def test_compiled_graph_equals_eager_evaluation(steps, seed):
    inputs, outputs = _random_graph(steps, rows=3)
    rng = np.random.default_rng(seed)
    env = {"x": rng.normal(size=(3, 4)), "y": rng.normal(size=4), "z": rng.normal(size=(3, 1))}
    compiled = call_unmutated(jg.compile(inputs, outputs, target="numpy"), **env)
    for got, want in zip(compiled, eager(outputs, env)):
        np.testing.assert_array_equal(got, want)
        signed = ~np.isnan(want)               # -0.0 and 0.0 must not swap either
        np.testing.assert_array_equal(np.signbit(got)[signed], np.signbit(want)[signed])


@settings(max_examples=20, deadline=None)
@given(programs(), st.integers(0, 2 ** 31 - 1), st.integers(1, 5))
def test_cpu_target_matches_the_reference(steps, seed, batch):
    """Differential fuzzing: fused Numba kernels against the numpy oracle, call-time sizes included."""
    inputs, outputs = _random_graph(steps)
    rng = np.random.default_rng(seed)
    env = {"x": rng.normal(size=(batch, 4)), "y": rng.normal(size=4), "z": rng.normal(size=(batch, 1))}
    check_target(inputs, outputs, env, "cpu", rtol=1e-9, atol=1e-12)


@settings(max_examples=8, deadline=None)
@given(programs(), st.integers(0, 2 ** 31 - 1))
def test_cpu_programs_cut_into_segments_match_the_reference(steps, seed):
    """Every program cut after every few lines: what a segment takes and returns is right."""
    inputs, outputs = _random_graph(steps)
    rng = np.random.default_rng(seed)
    env = {"x": rng.normal(size=(2, 4)), "y": rng.normal(size=4), "z": rng.normal(size=(2, 1))}
    with mock.patch.object(program_split, "MIN_LINES", 1), mock.patch.object(program_split, "MAX_LINES", 3):
        check_target(inputs, outputs, env, "cpu", rtol=1e-9, atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(programs())
def test_random_graph_gradients_match_finite_differences(steps):
    def f(x, y, z):       # stop_gradient is not the derivative finite differences see
        return jg.sum(jg.tanh(_grow([x, y + 0.0 * x, z * x], steps, BINARY[:-1])[-1]))
    rng = np.random.default_rng(0)
    jg.check_grads(f, [rng.normal(size=(3, 4)), rng.normal(size=4), rng.normal(size=(3, 1))],
                   rtol=1e-4, atol=1e-5)


def _scanned(steps, x, h0, unrolled: bool):
    """A random body (drawn like the graphs above) run over the rows of ``x``: scanned, or
    unrolled by a Python loop."""
    def body(h, row):
        pool = _grow([h, row + 0.0 * h, h * row], steps)
        return 0.5 * h + 0.5 * jg.tanh(pool[-1]), jg.sum(pool[len(pool) // 2])
    if not unrolled:
        return jg.scan(body, h0, x)
    h, ys = h0, []
    for t in range(x.shape[0]):
        h, y = body(h, x[t])
        ys.append(y)
    return h, jg.stack(ys)


def _loop_graphs(steps):
    x, h0 = jg.input("x", (3, 3, 4)), jg.input("h0", (3, 4))
    built = []
    for unrolled in (False, True):
        h, ys = _scanned(steps, x, h0, unrolled)
        loss = jg.sum(h * h) + jg.sum(jg.sin(ys))
        built.append([h, ys, loss, *jg.grad(loss, [x, h0])])
    return [x, h0], built


@settings(max_examples=25, deadline=None)
@given(programs(), st.integers(0, 2 ** 31 - 1))
def test_scanned_random_bodies_equal_the_unrolled_loop(steps, seed):
    inputs, (scanned, unrolled) = _loop_graphs(steps)
    rng = np.random.default_rng(seed)
    args = [rng.normal(size=(3, 3, 4)), rng.normal(size=(3, 4))]
    got = jg.compile(inputs, scanned, target="numpy")(*args)
    want = jg.compile(inputs, unrolled, target="numpy")(*args)
    for k, (g, w) in enumerate(zip(got, want)):
        if k < 3:
            np.testing.assert_array_equal(g, w)
        else:
            np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-12)


@settings(max_examples=5, deadline=None)
@given(programs(), st.integers(0, 2 ** 31 - 1))
def test_scanned_random_bodies_on_the_cpu_match_the_reference(steps, seed):
    inputs, (scanned, _) = _loop_graphs(steps)
    rng = np.random.default_rng(seed)
    check_target(inputs, scanned, [rng.normal(size=(3, 3, 4)), rng.normal(size=(3, 4))], "cpu",
                 rtol=1e-10, atol=1e-12)


def _scalar_graph(steps):
    """A graph of 0-d values: kernels without loops return them as numbers, unless a view
    reads one (the reshapes), which needs it in an array; kernels with loops read them."""
    a, b, v = jg.input("a", ()), jg.input("b", ()), jg.input("v", (3,))
    unary = [jg.tanh, jg.sin, lambda t: jg.exp(-t * t), lambda t: jg.sum(v * t),
             lambda t: jg.reshape(jg.reshape(t, (1,)) * 2.0, ()), lambda t: jg.sqrt(jg.abs(t) + 1.0)]
    pool = [a, b, jg.sum(v * v)]
    for is_unary, op, i, j in steps:
        pool.append(unary[op % len(unary)](pool[i % len(pool)]) if is_unary
                    else BINARY[op % len(BINARY)](pool[i % len(pool)], pool[j % len(pool)]))
    loss = pool[-1] * pool[len(pool) // 2] + a
    return [a, b, v], [loss, pool[-1], a > b, *jg.grad(loss, [a, b, v])]


@settings(max_examples=10, deadline=None)
@given(programs(), st.floats(-2, 2), st.floats(-2, 2))
def test_cpu_scalar_graphs_match_the_reference(steps, a, b):
    """Python floats through the generated entry, 0-d values through kernels that return them."""
    inputs, outputs = _scalar_graph(steps)
    check_target(inputs, outputs, {"a": a, "b": b, "v": np.array([0.5, -1.0, 2.0])}, "cpu",
                 rtol=1e-9, atol=1e-12)


# -- convolution and pooling in random graphs ------------------------------------------------------
# Images (N, 2, 7, 6) through random window layers (conv2d, max_pool2d, avg_pool2d with drawn
# kernel, stride, padding, dilation and groups) between elementwise ops.  The conv weights are
# slices of one input ``w`` (2, 2, 3, 3) and the bias the input ``b`` (2,), so gradients reach
# every operand.  A drawn window that does not fit the image it meets becomes an elementwise op.

WINDOW_UNARY = [jg.tanh, jg.sin, jg.relu, lambda t: jg.exp(-t * t), lambda t: t[:, ::-1],
                lambda t: jg.sum(t, axis=1, keepdims=True) + t, lambda t: jg.nn.softmax(t, axis=-1)]


@st.composite
def window_programs(draw, max_size=5):
    step = st.tuples(st.sampled_from(["conv", "max", "avg", "elementwise"]),
                     st.integers(1, 3), st.integers(1, 3),          # kernel height, width
                     st.integers(1, 2), st.integers(1, 2),          # strides
                     st.sampled_from([0, 1, 2, "same"]),            # padding
                     st.integers(1, 2), st.integers(1, 2),          # dilation, groups
                     st.integers(0, 99), st.integers(0, 99))        # elementwise op, operand
    return draw(st.lists(step, min_size=1, max_size=max_size))


def _window(t, w, b, kind, k_h, k_w, s_h, s_w, padding, dilation, groups):
    """The drawn window layer on ``t``, or None if it does not fit ``t``."""
    if padding == "same" and (kind != "conv" or (s_h, s_w) != (1, 1)):
        padding = 1
    if kind == "conv":
        pads = [(d * (k - 1) // 2, d * (k - 1) - d * (k - 1) // 2) for k, d in ((k_h, dilation), (k_w, dilation))] \
            if padding == "same" else [(padding, padding)] * 2
    else:
        dilation = 1 if kind == "avg" else dilation
        padding = (min(padding, k_h // 2), min(padding, k_w // 2))
        pads = [(p, p) for p in padding]
    for n, k, s, p in zip(t.shape[2:], (k_h, k_w), (s_h, s_w), pads):
        count = windows_along(n, k, s, p, dilation)
        if count < 1 or (kind == "max" and any(all(not 0 <= o * s + i * dilation - p[0] < n for i in range(k))
                                               for o in range(count))):
            return None            # no window, or one of only padding (a maximum of -inf)
    if kind == "conv":
        return jg.nn.conv2d(t, w[:, :2 // groups, :k_h, :k_w], b, (s_h, s_w), padding, dilation, groups)
    if kind == "max":
        return jg.nn.max_pool2d(t, (k_h, k_w), (s_h, s_w), padding, dilation)
    return jg.nn.avg_pool2d(t, (k_h, k_w), (s_h, s_w), padding)


def _grow_windows(pool, steps, w, b, binary=BINARY):
    for kind, *geometry, op, a in steps:
        t = pool[-1]
        out = None if kind == "elementwise" else _window(t, w, b, kind, *geometry)
        if out is None:
            other = pool[a % len(pool)]
            out = binary[op % len(binary)](t, other) if other.shape == t.shape and op % 2 else \
                WINDOW_UNARY[op % len(WINDOW_UNARY)](t)
        pool.append(out)
    return pool


def _window_graph(steps, batch=None, second_order=True):
    x, w, b = jg.input("x", (batch, 2, 7, 6)), jg.input("w", (2, 2, 3, 3)), jg.input("b", (2,))
    pool = _grow_windows([x], steps, w, b)
    loss = jg.sum(pool[-1] * pool[-1]) + jg.mean(pool[len(pool) // 2])
    outputs = [loss, pool[-1], *jg.grad(loss, [x, w, b])]
    if second_order:                                  # a chain of derivatives
        outputs.append(jg.hvp(loss, b, np.array([0.5, -1.0])))
    return [x, w, b], outputs


def _window_env(rng, batch):
    return {"x": rng.normal(size=(batch, 2, 7, 6)), "w": rng.normal(size=(2, 2, 3, 3)) * 0.5,
            "b": rng.normal(size=2)}


@settings(max_examples=60, deadline=None)
@given(window_programs(), st.integers(0, 2 ** 31 - 1))
def test_compiled_window_graph_equals_eager_evaluation(steps, seed):
    inputs, outputs = _window_graph(steps, batch=2)
    env = _window_env(np.random.default_rng(seed), 2)
    compiled = call_unmutated(jg.compile(inputs, outputs, target="numpy"), **env)
    for got, want in zip(compiled, eager(outputs, env)):
        np.testing.assert_array_equal(got, want)


@settings(max_examples=4, deadline=None)          # ~0.7 s of Numba compilation per kernel
@given(window_programs(max_size=3), st.integers(0, 2 ** 31 - 1), st.integers(1, 3))
def test_cpu_window_graphs_match_the_reference(steps, seed, batch):
    """Differential fuzzing of the window primitives (patches fused into kernels, col2im as a
    kernel of its own) against the numpy oracle, with a call-time batch; first derivatives
    only, to bound the compile time (second ones run on the reference above)."""
    inputs, outputs = _window_graph(steps, second_order=False)
    check_target(inputs, outputs, _window_env(np.random.default_rng(seed), batch), "cpu", rtol=1e-9, atol=1e-12)


@settings(max_examples=15, deadline=None)
@given(window_programs())
def test_random_window_graph_gradients_match_finite_differences(steps):
    def f(x, w, b):
        return jg.sum(jg.tanh(_grow_windows([x], steps, w, b, BINARY[:-1])[-1]))
    jg.check_grads(f, list(_window_env(np.random.default_rng(0), 2).values()), order=2, rtol=1e-4, atol=1e-5)


# -- issue 17's functions in random graphs -----------------------------------------------------

SMOOTH_MORE = [jg.arctan, jg.arcsinh, lambda t: jg.sinh(jg.tanh(t)), lambda t: jg.cosh(jg.tanh(t)),
               lambda t: jg.log2(1.0 + t * t), lambda t: jg.log10(2.0 + jg.sin(t)), lambda t: jg.exp2(jg.tanh(t)),
               lambda t: jg.arcsin(0.5 * jg.tanh(t)), lambda t: jg.arctanh(0.5 * jg.tanh(t)),
               lambda t: jg.sort(t, axis=-1), lambda t: jg.flip(jg.roll(t, 1, axis=-1), axis=0),
               lambda t: jg.einsum("ij,kj,kl->il", t, t, t) * 0.1, lambda t: jg.nn.mish(t), jg.nn.selu,
               lambda t: t - jg.var(t, axis=-1, keepdims=True),
               lambda t: jg.tril(jg.pad(t, 1, mode="reflect"))[1:4, 1:5]]
LOOPED_MORE = [lambda t: jg.cumsum(t, axis=-1), lambda t: jg.cumprod(0.5 + 0.1 * t, axis=0)]   # scans: the
# eager evaluator above runs single-output nodes only
SMOOTH_MORE_BINARY = [jg.logaddexp, lambda a, b: jg.arctan2(a, 1.0 + b * b),
                      lambda a, b: jg.hypot(a, 1.0 + b * b), lambda a, b: a.at[0].add(b[0])]
PIECEWISE_MORE = [jg.floor, lambda t: jg.round(t, 1), jg.trunc, lambda t: jg.mod(t, 0.7),
                  lambda t: jg.fmod(t, -0.6), lambda t: jg.copysign(t, jg.sin(t)),
                  lambda t: jg.where(jg.isfinite(t) & (t > 0), t, -t),
                  lambda t: jg.astype(jg.argmax(t, axis=-1, keepdims=True), t.dtype) * t]


def _grow_more(pool, steps, unary, binary):
    """As ``_grow``, over issue 17's functions; every node keeps the input's shape."""
    for is_unary, op, a, b in steps:
        if is_unary:
            out = unary[op % len(unary)](pool[a % len(pool)])
        else:
            out = binary[op % len(binary)](pool[a % len(pool)], pool[b % len(pool)])
        pool.append(out)
    return pool


def _more_graph(steps, with_loops: bool):
    x, y = jg.input("x", (3, 4)), jg.input("y", (3, 4))
    unary = SMOOTH_MORE + PIECEWISE_MORE + (LOOPED_MORE if with_loops else [])
    pool = _grow_more([x, y], steps, unary, SMOOTH_MORE_BINARY)
    loss = jg.sum(jg.tanh(pool[-1])) + jg.mean(pool[len(pool) // 2] ** 2)
    return [x, y], [loss, pool[-1], *jg.grad(loss, [x, y])]


@settings(max_examples=60, deadline=None)
@given(programs(), st.integers(0, 2 ** 31 - 1))
def test_graphs_of_the_numpy_surface_equal_eager_evaluation(steps, seed):
    inputs, outputs = _more_graph(steps, with_loops=False)
    rng = np.random.default_rng(seed)
    env = {"x": rng.normal(size=(3, 4)), "y": rng.normal(size=(3, 4))}
    compiled = call_unmutated(jg.compile(inputs, outputs, target="numpy"), **env)
    for got, want in zip(compiled, eager(outputs, env)):
        np.testing.assert_array_equal(got, want)


@settings(max_examples=4, deadline=None)
@given(programs(), st.integers(0, 2 ** 31 - 1))
def test_graphs_of_the_numpy_surface_on_the_cpu_match_the_reference(steps, seed):
    inputs, outputs = _more_graph(steps[:4], with_loops=True)
    rng = np.random.default_rng(seed)
    check_target(inputs, outputs, {"x": rng.normal(size=(3, 4)), "y": rng.normal(size=(3, 4))}, "cpu",
                 rtol=1e-9, atol=1e-12)


@settings(max_examples=15, deadline=None)
@given(programs())
def test_graphs_of_the_numpy_surface_have_the_derivatives_of_finite_differences(steps):
    def f(x, y):
        return jg.sum(jg.tanh(_grow_more([x, y], steps, SMOOTH_MORE + LOOPED_MORE, SMOOTH_MORE_BINARY)[-1]))
    rng = np.random.default_rng(1)
    jg.check_grads(f, [rng.normal(size=(3, 4)), rng.normal(size=(3, 4))], rtol=1e-4, atol=1e-5)
