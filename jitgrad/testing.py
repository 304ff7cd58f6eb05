"""Check primitives the way jitgrad checks its own: a table of cases, one check per case.

A :class:`Case` names a function that builds a graph, the same computation in
NumPy, and generators for its arguments.  :func:`check_case` runs one case on
a target: values against NumPy, values and derivatives against the reference
target (``"numpy"``), derivatives against central differences
(``jg.check_grads``), and every argument unchanged after every call
(:func:`call_unmutated`).  ``CASES`` is jitgrad's own table: together its
graphs hold every primitive.

Checking a primitive of your own (``scalar`` lets the CPU and CUDA targets
inline it; a primitive without one runs on the reference target only):

>>> import numpy as np
>>> from jitgrad.graph import bind
>>> from jitgrad.primitive import Aval, Primitive
>>> from jitgrad.testing import Case, check_case, uniform
>>> cube_p = Primitive("cube", shape=lambda x: Aval(x.dims, x.dtype), ref=lambda x: x ** 3,
...                    vjp=lambda b, y_bar, y, x: (y_bar * 3.0 * x * x,),
...                    jvp=lambda b, x_dots, y, x: x_dots[0] * 3.0 * x * x,
...                    scalar="({0} * {0} * {0})")
>>> cube = Case("cube", lambda x: bind(cube_p, x), lambda x: x ** 3, (uniform(-2, 2, 3, 4),))
>>> check_case(cube, target="numpy")          # raises AssertionError on the first mismatch

Imports NumPy, SciPy and jitgrad only (no pytest, no hypothesis).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any
from collections.abc import Callable

import numpy as np
import scipy.linalg
import scipy.special

import jitgrad as jg
from jitgrad import functions as F
from jitgrad.graph import bind
from jitgrad.ops import BY_NAME, linalg as la, shape as sh, sort as sort_ops
from jitgrad.ops.random import philox_reference

rng = np.random.default_rng(0)      # the one stream every generator below draws from


def uniform(lo: float, hi: float, *shape: int) -> Callable[[], np.ndarray]:
    """An argument generator: float64 arrays of ``shape`` drawn uniformly from [lo, hi)."""
    return lambda: rng.uniform(lo, hi, shape)


@dataclass(frozen=True)
class Case:
    """One row of a primitive table.

    ``fn`` builds the graph from Tensors, ``ref`` computes the same from NumPy
    arrays, ``args`` are generators of the (float64) arguments, drawn within
    the function's smooth domain.  ``order`` is the derivative order
    ``jg.check_grads`` goes to; ``tol`` its ``eps``/``rtol``/``atol``.
    """

    name: str
    fn: Callable[..., Any]
    ref: Callable[..., Any]
    args: tuple
    differentiable: bool = True
    order: int = 2
    tol: dict = field(default_factory=dict)

    def sample(self, dtype="float64") -> list[np.ndarray]:
        """Fresh arguments, one per generator."""
        return [np.asarray(g(), dtype) for g in self.args]


def build(case: Case, args, dtype="float64"):
    """``(inputs, y)``: the case's graph on inputs ``x0, x1, ...`` shaped like ``args``."""
    xs = [jg.input(f"x{i}", np.shape(a), dtype) for i, a in enumerate(args)]
    return xs, case.fn(*xs)


def with_derivatives(case: Case, args, dtype="float64", modes=("fwd", "rev")):
    """``(inputs, [y, jvp, *vjps])``: the value, the JVP along a fixed tangent (``"fwd"``)
    and the VJP of a fixed cotangent (``"rev"``); the value alone if not differentiable."""
    xs, y = build(case, args, dtype)
    outputs = [y]
    if case.differentiable and "fwd" in modes:
        tangents = [np.sin(np.arange(np.size(a)) + 1.0).reshape(np.shape(a)).astype(dtype) for a in args]
        outputs += jg.jvp([y], xs, tangents)
    if case.differentiable and "rev" in modes:
        ct = jg.constant(np.cos(np.arange(np.prod(y.shape))).reshape(y.shape).astype(dtype))
        outputs += jg.vjp([y], xs, [ct])
    return xs, outputs


def call_unmutated(f: Callable, *args, **kwargs):
    """``f(*args, **kwargs)``, asserting that it left every array argument as it was."""
    before = {k: np.array(v, copy=True) for k, v in [*enumerate(args), *kwargs.items()]
              if isinstance(v, np.ndarray)}
    result = f(*args, **kwargs)
    for k, old in before.items():
        new = args[k] if isinstance(k, int) else kwargs[k]
        if new.shape != old.shape or new.dtype != old.dtype or new.tobytes() != old.tobytes():
            where = f"argument {k}" if isinstance(k, int) else f"argument {k!r}"
            raise AssertionError(f"{getattr(f, '__name__', f)} wrote into its {where}")
    return result


def assert_same(got, want, rtol: float, atol: float, what: str = "") -> None:
    """Equal shape and dtype, values within ``atol + rtol * |want|``."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype}, expected {want.dtype}"
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=what)


def check_target(inputs, outputs, args, target: str, rtol: float = 1e-12, atol: float = 1e-12) -> list:
    """Compile ``outputs`` on ``target`` and on the reference; both must agree and leave
    ``args`` (a sequence, or a dict by input name) unchanged.  Returns the target's results."""
    def run(on):
        f = jg.compile(inputs, outputs, target=on)
        return call_unmutated(f, **args) if isinstance(args, dict) else call_unmutated(f, *args)

    got, want = run(target), run("numpy")
    single = isinstance(outputs, jg.Tensor)
    for i, (g, w) in enumerate(zip([got] if single else got, [want] if single else want, strict=True)):
        assert_same(g, w, rtol, atol, f"{target} vs numpy, output {i}")
    return got


def check_values(case: Case, target: str = "numpy", dtype="float64", rtol: float = 1e-12,
                 atol: float = 1e-12) -> None:
    """The case's value on ``target`` against ``case.ref``, in ``dtype``: shape, dtype
    (NumPy's promotion) and values."""
    args = case.sample(dtype)
    xs, y = build(case, args, dtype)
    got = call_unmutated(jg.compile(xs, y, target=target), *args)
    assert_same(got, case.ref(*args), rtol, atol, f"{case.name} on {target} vs NumPy")


def check_case(case: Case, target: str = "cpu", rtol: float = 1e-12, atol: float = 1e-12) -> None:
    """Every check of one case on ``target``: values vs NumPy, value, JVP and VJP vs the
    reference target, derivatives vs finite differences, arguments never written."""
    check_values(case, target, rtol=rtol, atol=atol)
    args = case.sample()
    if target != "numpy":
        check_target(*with_derivatives(case, args), args, target, rtol, atol)
    if case.differentiable:
        jg.check_grads(case.fn, args, order=case.order, target=target, **case.tol)


# -- jitgrad's own table ------------------------------------------------------------------------
# Each case builds a small graph; together the graphs hold every primitive
# (tests/test_primitives.py asserts it).

X34 = uniform(-2, 2, 3, 4)
POS34 = uniform(0.1, 3, 3, 4)
IDX = np.array([[2, 0], [1, 2]])
X33 = uniform(-2, 2, 3, 3)


def SQUARE3():
    """A well-conditioned 3x3 matrix."""
    return rng.uniform(-1, 1, (3, 3)) + 3 * np.eye(3)


def _matrix_function(w, v):
    """V sin(diag w) Vᵀ: a loss that does not depend on the eigenvectors' signs."""
    return (v * jg.sin(w) if isinstance(w, jg.Tensor) else v * np.sin(w)) @ v.T


def _singular_function(u, s, vt):
    return (u * jg.tanh(s) if isinstance(s, jg.Tensor) else u * np.tanh(s)) @ vt


def _scan_step(h, row):
    h = jg.tanh(h * 0.7 + row * h + 0.1)
    return h, h * row


def _scan(x, h0, reverse=False):
    """A recurrence over the rows of x: the final carry on top of the per-step outputs."""
    h, ys = jg.scan(_scan_step, h0, x, reverse=reverse)
    return jg.concatenate([jg.expand_dims(h, 0), ys])


def _scan_ref(x, h0, reverse=False):
    h, ys = h0, np.empty_like(x)
    for t in (range(len(x) - 1, -1, -1) if reverse else range(len(x))):
        h = np.tanh(h * 0.7 + x[t] * h + 0.1)
        ys[t] = h * x[t]
    return np.concatenate([h[None], ys])


def _halvings(x):
    """How many halvings bring every |x| under 0.1: a while loop with an integer result."""
    _, count = jg.while_loop(lambda c: jg.max(jg.abs(c[0])) > 0.1, lambda c: (c[0] * 0.5, c[1] + 1),
                             (x, F.constant(np.int64(0))))
    return count


def _halvings_ref(x):
    count = 0
    while np.abs(x).max() > 0.1:
        x, count = x * 0.5, count + 1
    return np.int64(count)


@jg.custom_vjp
def _x_sin_x(u):
    """u sin u with its derivative as a reverse rule (the true one: finite differences agree)."""
    return u * jg.sin(u)


_x_sin_x.defvjp(lambda u: (u * jg.sin(u), u), lambda u, g: (g * (jg.sin(u) + u * jg.cos(u)),))


@jg.custom_jvp
def _softplus(u):
    """log(1 + e^u) with its derivative as a forward rule."""
    return jg.log1p(jg.exp(u))


_softplus.defjvp(lambda primals, tangents: (_softplus(primals[0]), tangents[0] * jg.sigmoid(primals[0])))


def _scatter_add(x):
    out = np.zeros((3, 5), x.dtype)
    for i in range(2):
        for j in range(2):
            out[:, IDX[i, j]] += x[:, i, j]
    return out


CASES: list[Case] = [
    Case("neg", lambda x: -x, np.negative, (X34,)),
    Case("exp", jg.exp, np.exp, (X34,)),
    Case("log", jg.log, np.log, (POS34,)),
    Case("log1p", jg.log1p, np.log1p, (POS34,)),
    Case("expm1", jg.expm1, np.expm1, (X34,)),
    Case("sqrt", jg.sqrt, np.sqrt, (POS34,)),
    Case("sin", jg.sin, np.sin, (X34,)),
    Case("cos", jg.cos, np.cos, (X34,)),
    Case("tan", jg.tan, np.tan, (uniform(-1, 1, 3, 4),)),
    Case("tanh", jg.tanh, np.tanh, (X34,)),
    Case("sigmoid", jg.sigmoid, scipy.special.expit, (X34,)),
    Case("erf", jg.erf, scipy.special.erf, (X34,)),
    Case("abs", jg.abs, np.abs, (POS34,)),
    Case("sign", jg.sign, np.sign, (X34,), differentiable=False),
    Case("add", jg.add, np.add, (X34, uniform(-2, 2, 4))),
    Case("sub", jg.subtract, np.subtract, (uniform(-2, 2, 4), X34)),
    Case("mul", jg.multiply, np.multiply, (X34, uniform(-2, 2, 3, 1))),
    Case("div", jg.divide, np.divide, (X34, POS34)),
    Case("pow", jg.power, np.power, (POS34, uniform(-2, 2, 3, 4))),
    Case("maximum", jg.maximum, np.maximum, (X34, X34)),
    Case("minimum", jg.minimum, np.minimum, (X34, X34)),
    Case("safe_mul", F.safe_mul, np.multiply, (X34, X34)),
    Case("safe_div", F.safe_div, np.divide, (X34, POS34)),
    Case("lt", lambda x, y: x < y, np.less, (X34, X34), differentiable=False),
    Case("le", lambda x, y: x <= y, np.less_equal, (X34, X34), differentiable=False),
    Case("gt", lambda x, y: x > y, np.greater, (X34, X34), differentiable=False),
    Case("ge", lambda x, y: x >= y, np.greater_equal, (X34, X34), differentiable=False),
    Case("eq", lambda x, y: x == y, np.equal, (X34, X34), differentiable=False),
    Case("ne", lambda x, y: x != y, np.not_equal, (X34, X34), differentiable=False),
    Case("select", lambda c, x, y: jg.where(c > 0, x, y), lambda c, x, y: np.where(c > 0, x, y),
         (X34, X34, uniform(-2, 2, 4))),
    Case("convert", lambda x: jg.astype(jg.astype(x, "float32"), "float64") * x,
         lambda x: x.astype(np.float32).astype(np.float64) * x, (X34,),
         tol=dict(eps=1e-2, rtol=1e-4, atol=1e-4)),   # float32 rounding inside: coarser differences
    Case("convert_int", lambda x: jg.astype(x * 3, "int64"), lambda x: (x * 3).astype(np.int64),
         (X34,), differentiable=False),
    Case("stop_gradient", lambda x: x * jg.stop_gradient(x), lambda x: x * x, (X34,), differentiable=False),
    Case("reduce_sum", lambda x: jg.sum(x, axis=0), lambda x: x.sum(0), (X34,)),
    Case("reduce_sum_keep", lambda x: x.sum(axis=(0, 1), keepdims=True),
         lambda x: x.sum((0, 1), keepdims=True), (X34,)),
    Case("reduce_max", lambda x: jg.max(x, axis=1), lambda x: x.max(1), (X34,)),
    Case("reduce_min", lambda x: jg.min(x, axis=-1, keepdims=True),
         lambda x: x.min(-1, keepdims=True), (X34,)),
    Case("reduce_prod", lambda x: jg.prod(x, axis=0), lambda x: x.prod(0), (X34,)),
    Case("mean", lambda x: x.mean(axis=1), lambda x: x.mean(1), (X34,)),
    Case("logsumexp", lambda x: jg.logsumexp(x, axis=1), lambda x: scipy.special.logsumexp(x, 1), (X34,)),
    Case("reshape", lambda x: x.reshape(2, -1), lambda x: x.reshape(2, -1), (X34,)),
    Case("transpose", lambda x: x.T * 1.0, lambda x: x.T, (X34,)),
    Case("broadcast_to", lambda x: jg.broadcast_to(x, (2, 3, 4)), lambda x: np.broadcast_to(x, (2, 3, 4)),
         (X34,)),
    Case("slice", lambda x: x[1:, ::-2], lambda x: x[1:, ::-2], (X34,)),
    Case("index", lambda x: x[None, -1, ..., 1:3], lambda x: x[None, -1, ..., 1:3], (X34,)),
    Case("unslice", lambda x: bind(sh.unslice_p, x, shape=(5, 4), index=((1, 4, 1), (None, None, None))),
         lambda x: np.pad(x, ((1, 1), (0, 0))), (X34,)),
    Case("gather", lambda x: x[:, IDX], lambda x: x[:, IDX], (X34,)),
    Case("take", lambda x: jg.take(x, IDX), lambda x: np.take(x, IDX), (X34,)),
    Case("scatter_add", lambda x: bind(sh.scatter_add_p, x, F.as_tensor(IDX), shape=(3, 5), axis=1),
         lambda x: _scatter_add(x), (uniform(-2, 2, 3, 2, 2),)),
    Case("concatenate", lambda x, y: jg.concatenate([x, y], axis=1), lambda x, y: np.concatenate([x, y], 1),
         (X34, uniform(-2, 2, 3, 2))),
    Case("stack", lambda x, y: jg.stack([x, y], axis=-1), lambda x, y: np.stack([x, y], -1), (X34, X34)),
    Case("full", lambda x: x + jg.functions.full((3, 4), 2.5), lambda x: x + np.full((3, 4), 2.5), (X34,)),
    Case("full_like", lambda x: x * bind(sh.full_like_p, x, value=2.0), lambda x: x * 2.0, (X34,)),
    Case("checkpoint", jg.checkpoint(lambda x, y: jg.sin(x) * y), lambda x, y: np.sin(x) * y, (X34, X34)),
    Case("barrier", lambda x: bind(BY_NAME["barrier"], x, region=0) * 2.0, lambda x: x * 2.0, (X34,)),
    Case("matmul", jg.matmul, np.matmul, (uniform(-1, 1, 2, 3, 4), uniform(-1, 1, 4, 5))),
    Case("matmul_vec", lambda a, v: a @ v, np.matmul, (X34, uniform(-1, 1, 4))),
    Case("dot", jg.dot, np.dot, (uniform(-1, 1, 2, 3), uniform(-1, 1, 4, 3, 2))),
    Case("outer", jg.outer, np.outer, (uniform(-1, 1, 3), uniform(-1, 1, 4))),
    Case("solve", jg.linalg.solve, np.linalg.solve, (SQUARE3, uniform(-1, 1, 3, 2))),
    Case("solve_batched", jg.linalg.solve, lambda a, b: np.linalg.solve(a, b[..., None])[..., 0],
         (lambda: SQUARE3() + np.zeros((2, 1, 1)), uniform(-1, 1, 2, 3))),
    Case("inv", jg.linalg.inv, np.linalg.inv, (SQUARE3,)),
    Case("det", jg.linalg.det, np.linalg.det, (SQUARE3,)),
    Case("lu_cofactor", lambda a: bind(la.lu_cofactor_p, bind(la.lu_p, a), a),
         lambda a: np.linalg.det(a) * np.linalg.inv(a).T, (SQUARE3,)),
    Case("slogdet", lambda a: jg.linalg.slogdet(a)[1], lambda a: np.linalg.slogdet(a)[1], (SQUARE3,)),
    Case("slogdet_sign", lambda a: jg.linalg.slogdet(a)[0], lambda a: np.linalg.slogdet(a)[0],
         (lambda: SQUARE3() * np.array([[-1.0], [1], [1]]),), differentiable=False),
    Case("cholesky", lambda m: jg.linalg.cholesky(m @ m.T + 3 * np.eye(3)),
         lambda m: np.linalg.cholesky(m @ m.T + 3 * np.eye(3)), (uniform(-1, 1, 3, 3),)),
    Case("triangular_solve", lambda t, b: bind(la.triangular_solve_p, t, b, lower=True, trans=False),
         lambda t, b: scipy.linalg.solve_triangular(t, b, lower=True), (SQUARE3, uniform(-1, 1, 3, 2))),
    Case("triangular_solve_upper_t", lambda t, b: bind(la.triangular_solve_p, t, b, lower=False, trans=True),
         lambda t, b: scipy.linalg.solve_triangular(t, b, lower=False, trans=1), (SQUARE3, uniform(-1, 1, 3, 2))),
    Case("eigh_values", lambda a: jg.linalg.eigh(a)[0], lambda a: np.linalg.eigvalsh((a + a.T) / 2), (X33,)),
    Case("eigh_function", lambda a: _matrix_function(*jg.linalg.eigh(a)),
         lambda a: _matrix_function(*np.linalg.eigh((a + a.T) / 2)), (X33,)),
    Case("svd_values", lambda a: jg.linalg.svd(a)[1], lambda a: np.linalg.svd(a, compute_uv=False), (X34,)),
    Case("svd_function", lambda a: _singular_function(*jg.linalg.svd(a)),
         lambda a: _singular_function(*np.linalg.svd(a, full_matrices=False)), (X34,)),
    Case("svd_function_tall", lambda a: _singular_function(*jg.linalg.svd(a)),
         lambda a: _singular_function(*np.linalg.svd(a, full_matrices=False)), (uniform(-2, 2, 4, 3),)),
    Case("eigh_function_exact", lambda a: jg.linalg.eigh_function(a, jg.sin),
         lambda a: _matrix_function(*np.linalg.eigh((a + a.T) / 2)), (X33,)),
    Case("svd_function_exact", lambda a: jg.linalg.svd_function(a, jg.tanh),
         lambda a: _singular_function(*np.linalg.svd(a, full_matrices=False)), (uniform(-2, 2, 4, 3),)),
    Case("norm_nuclear", lambda a: jg.linalg.norm(a, "nuc"), lambda a: np.linalg.norm(a, "nuc"), (X34,)),
    Case("norm", jg.linalg.norm, np.linalg.norm, (X34,)),
    Case("psum", lambda x: jg.distributed.psum(x) * 2.0, lambda x: x * 2.0, (X34,)),   # a world of one
    Case("relu", jg.relu, lambda x: np.maximum(x, 0), (X34,)),
    Case("leaky_relu", lambda x: jg.leaky_relu(x, 0.1), lambda x: np.where(x > 0, x, 0.1 * x), (X34,)),
    Case("elu", jg.elu, lambda x: np.where(x > 0, x, np.expm1(x)), (X34,)),
    Case("gelu", jg.gelu, lambda x: 0.5 * x * (1 + scipy.special.erf(x / math.sqrt(2))), (X34,)),
    Case("gelu_tanh", lambda x: jg.gelu(x, approximate=True),
         lambda x: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3))), (X34,)),
    Case("silu", jg.silu, lambda x: x * scipy.special.expit(x), (X34,)),
    Case("softplus", jg.softplus, lambda x: np.logaddexp(0, x), (X34,)),
    Case("square", jg.square, np.square, (X34,)),
    Case("clip", lambda x: jg.clip(x, -1, 1), lambda x: np.clip(x, -1, 1), (X34,)),
    Case("softmax", lambda x: jg.nn.softmax(x, axis=0), lambda x: scipy.special.softmax(x, 0), (X34,)),
    Case("log_softmax", jg.nn.log_softmax, lambda x: scipy.special.log_softmax(x, -1), (X34,)),
    Case("cross_entropy", lambda x: jg.nn.cross_entropy(x, np.array([0, 3, 1])),
         lambda x: -scipy.special.log_softmax(x, -1)[np.arange(3), [0, 3, 1]].mean(), (X34,)),
    Case("mse", jg.nn.mse, lambda p, t: ((p - t) ** 2).mean(), (X34, X34)),
    Case("dense", jg.nn.dense, lambda x, w, b: x @ w + b, (X34, uniform(-1, 1, 4, 2), uniform(-1, 1, 2))),
    Case("scan", _scan, _scan_ref, (X34, uniform(-1, 1, 4))),
    Case("scan_reverse", lambda x, h: _scan(x, h, reverse=True), lambda x, h: _scan_ref(x, h, reverse=True),
         (X34, uniform(-1, 1, 4))),
    Case("while", _halvings, _halvings_ref, (X34,), differentiable=False),
    Case("philox", lambda x: x * jg.random.uniform(jg.random.key(7), (3, 4)),
         lambda x: x * philox_reference(np.array([7, 0], np.uint32), np.zeros(2, np.uint32), shape=(3, 4),
                                   dtype=np.float64), (X34,)),
    Case("custom_vjp", lambda x: _x_sin_x(x) * x, lambda x: x * np.sin(x) * x, (X34,)),
    Case("custom_jvp", lambda x: _softplus(x) * x, lambda x: np.logaddexp(0, x) * x, (X34,)),
    Case("cond", lambda x, y: jg.cond(jg.sum(y) > 0, lambda u: jg.sin(u) * u, jg.exp, x),
         lambda x, y: np.sin(x) * x if y.sum() > 0 else np.exp(x), (X34, uniform(-1, 1, 2))),
]


# -- 0-d operands: every primitive that takes one, once ---------------------
# Elementwise primitives share a case per family, so the table stays cheap to compile.

X0, POS0, SMALL0 = uniform(-2, 2), uniform(0.5, 2), uniform(0.2, 0.9)   # no kink of relu, abs, clip


def _unary_0d(x, m=None):
    m = m or jg
    return (-x + m.exp(x) + m.log(x) + m.log1p(x) + m.expm1(x) + m.sqrt(x) + m.sin(x) + m.cos(x)
            + m.tan(x) + m.tanh(x) + m.abs(x) + m.sign(x) * x)


def _binary_0d(x, y, m=None):
    m = m or jg
    return x + y - y * x + y / x + x ** y + m.maximum(x, y) * m.minimum(x, y)


ZERO_D_CASES: list[Case] = [
    Case("unary_0d", lambda x: _unary_0d(x) + jg.sigmoid(x) + jg.erf(x),
         lambda x: _unary_0d(x, np) + scipy.special.expit(x) + scipy.special.erf(x), (SMALL0,)),
    Case("binary_0d", _binary_0d, lambda x, y: _binary_0d(x, y, np), (POS0, X0)),
    Case("safe_0d", lambda x, y: F.safe_mul(x, y) + F.safe_div(y, x), lambda x, y: x * y + y / x, (POS0, X0)),
    Case("compare_0d", lambda x, y: jg.stack([x < y, x <= y, x > y, x >= y, x == y, x != y]),
         lambda x, y: np.stack([x < y, x <= y, x > y, x >= y, x == y, x != y]), (X0, X0),
         differentiable=False),
    Case("select_0d", lambda c, x, y: jg.where(c > 0, x, y), lambda c, x, y: np.where(c > 0, x, y),
         (X0, X0, X0)),
    Case("broadcast_0d", lambda x, y: x * y + jg.broadcast_to(x, (2, 3)),
         lambda x, y: x * y + np.broadcast_to(x, (2, 3)), (X0, uniform(-2, 2, 3))),
    Case("convert_0d", lambda x: jg.astype(jg.astype(x, "float32"), "float64") * x,
         lambda x: x.astype(np.float32).astype(np.float64) * x, (X0,),
         tol=dict(eps=1e-2, rtol=1e-4, atol=1e-4)),
    Case("convert_int_0d", lambda x: jg.astype(x * 3, "int64"), lambda x: (x * 3).astype(np.int64),
         (X0,), differentiable=False),
    Case("stop_gradient_0d", jg.stop_gradient, lambda x: x, (X0,), differentiable=False),
    Case("reduce_sum_0d", jg.sum, np.sum, (X0,)),
    Case("reduce_prod_0d", lambda x: jg.prod(x, axis=()), lambda x: np.prod(x, axis=()), (X0,)),
    Case("reduce_max_0d", lambda x: jg.max(x, axis=0) * x, lambda x: np.max(x, axis=0) * x, (X0,)),
    Case("reduce_min_0d", lambda x: jg.min(x, axis=-1, keepdims=True) * x,
         lambda x: np.min(x, axis=-1, keepdims=True) * x, (X0,)),
    Case("mean_0d", lambda x: jg.mean(x * x), lambda x: np.mean(x * x), (X0,)),
    Case("logsumexp_0d", lambda x: jg.logsumexp(jg.sin(x), axis=0), lambda x: np.sin(x), (X0,)),
    Case("reshape_0d", lambda x: jg.reshape(x, (1, 1)) * x, lambda x: np.reshape(x, (1, 1)) * x, (X0,)),
    Case("transpose_0d", lambda x: bind(sh.transpose_p, x, perm=()) * x, lambda x: x * x, (X0,)),
    Case("slice_0d", lambda x: bind(sh.slice_p, x, index=()) * x, lambda x: x * x, (X0,)),
    Case("unslice_0d", lambda x: bind(sh.unslice_p, x, shape=(), index=()) * x, lambda x: x * x, (X0,)),
    Case("gather_0d", lambda x: jg.take(x, np.array([0, 0]), axis=-1) * jg.take(x * x, 0),
         lambda x: np.take(x, np.array([0, 0]), axis=-1) * np.take(x * x, 0), (X0,)),
    Case("gather_0d_index", lambda v: jg.take(v, np.array(2)), lambda v: np.take(v, np.array(2)),
         (uniform(-2, 2, 4),)),
    Case("scatter_add_0d", lambda x: bind(sh.scatter_add_p, x, F.as_tensor(np.array(2)), shape=(4,), axis=0),
         lambda x: np.eye(4, dtype=x.dtype)[2] * x, (X0,)),
    Case("full_0d", lambda x: x + jg.functions.full((), 2.5) + bind(sh.full_like_p, x, value=2.0) * x,
         lambda x: x + np.full((), 2.5) + 2.0 * x, (X0,)),
    Case("dot_0d", jg.dot, np.dot, (X0, uniform(-2, 2, 3))),
    Case("checkpoint_0d", jg.checkpoint(lambda x, y: jg.sin(x) * y), lambda x, y: np.sin(x) * y, (X0, X0)),
    Case("barrier_0d", lambda x: bind(BY_NAME["barrier"], x, region=0) * x, lambda x: x * x, (X0,)),
    Case("psum_0d", lambda x: jg.distributed.psum(x) * x, lambda x: x * x, (X0,)),
    Case("activations_0d", lambda x: jg.relu(x) + jg.leaky_relu(-x, 0.1) + jg.elu(-x) + jg.gelu(x)
         + jg.gelu(x, approximate=True) + jg.silu(x) + jg.softplus(x) + jg.square(x) + jg.clip(x, -1, 1),
         lambda x: x - 0.1 * x + np.expm1(-x) + 0.5 * x * (1 + scipy.special.erf(x / math.sqrt(2)))
         + 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
         + x * scipy.special.expit(x) + np.logaddexp(0, x) + x * x + x, (SMALL0,)),
    Case("softmax_0d", lambda x: jg.nn.softmax(x) * x, lambda x: x, (X0,)),
    Case("log_softmax_0d", lambda x: jg.nn.log_softmax(x) + x, lambda x: x, (X0,)),
    Case("mse_0d", jg.nn.mse, lambda p, t: (p - t) ** 2, (X0, X0)),
    Case("norm_0d", jg.linalg.norm, np.linalg.norm, (POS0,)),
]
CASES += ZERO_D_CASES


# -- convolution and pooling: direct NumPy references ---------------------------------------------

def _offsets(k_h, k_w, out_h, out_w, stride, dilation):
    """For each kernel offset (i, j): the strided slices of the (padded) image it meets."""
    for i in range(k_h):
        for j in range(k_w):
            yield i, j, (slice(i * dilation[0], i * dilation[0] + stride[0] * (out_h - 1) + 1, stride[0]),
                         slice(j * dilation[1], j * dilation[1] + stride[1] * (out_w - 1) + 1, stride[1]))


def _out_size(size, k, stride, pads, dilation):
    return (size + sum(pads) - dilation * (k - 1) - 1) // stride + 1


def _conv_ref(x, w, stride=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1), groups=1):
    """conv2d as a sum over kernel offsets of shifted, strided images times weight matrices."""
    x = np.pad(x, ((0, 0), (0, 0), *padding))
    (c_out, c_group, k_h, k_w), per = w.shape, w.shape[0] // groups
    out_h, out_w = (_out_size(n, k, s, (0, 0), d) for n, k, s, d in zip(x.shape[2:], (k_h, k_w), stride, dilation))
    out = np.zeros((x.shape[0], c_out, out_h, out_w), x.dtype)
    for g in range(groups):
        images, weights = x[:, g * c_group:(g + 1) * c_group], w[g * per:(g + 1) * per]
        for i, j, (rows, cols) in _offsets(k_h, k_w, out_h, out_w, stride, dilation):
            out[:, g * per:(g + 1) * per] += np.einsum("nchw,oc->nohw", images[:, :, rows, cols], weights[:, :, i, j])
    return out


def _conv_transpose_ref(x, w, stride, pad, output_padding):
    """Each input pixel adds its weighted kernel onto the output, which is then cropped."""
    (n, _, h, wd), (_, c_out, k_h, k_w) = x.shape, w.shape
    size = [(m - 1) * s - 2 * p + (k - 1) + e + 1 for m, s, p, k, e in zip((h, wd), stride, pad, (k_h, k_w),
                                                                         output_padding)]
    full = np.zeros((n, c_out, size[0] + 2 * pad[0] + k_h, size[1] + 2 * pad[1] + k_w), x.dtype)
    for i, j, (rows, cols) in _offsets(k_h, k_w, h, wd, stride, (1, 1)):
        full[:, :, rows, cols] += np.einsum("nchw,co->nohw", x, w[:, :, i, j])
    return full[:, :, pad[0]:pad[0] + size[0], pad[1]:pad[1] + size[1]]


def _pool_ref(x, kernel, stride, pad, reduce, fill):
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), constant_values=fill)
    out_h, out_w = (_out_size(n, kernel, stride, (0, 0), 1) for n in x.shape[2:])
    windows = [x[:, :, rows, cols] for _, _, (rows, cols) in _offsets(kernel, kernel, out_h, out_w,
                                                                      (stride, stride), (1, 1))]
    return reduce(np.stack(windows), axis=0)


def _batch_norm_ref(x, w, b):
    mean, var = x.mean(axis=(0, 2, 3), keepdims=True), x.var(axis=(0, 2, 3), keepdims=True)
    return (x - mean) / np.sqrt(var + 1e-5) * w[:, None, None] + b[:, None, None]


def _layer_norm_ref(x, w):
    mean, var = x.mean(axis=(-2, -1), keepdims=True), x.var(axis=(-2, -1), keepdims=True)
    return (x - mean) / np.sqrt(var + 1e-5) * w


CONV_CASES: list[Case] = [
    Case("conv2d", lambda x, w, b: jg.nn.conv2d(x, w, b, padding=1),
         lambda x, w, b: _conv_ref(x, w, padding=((1, 1), (1, 1))) + b[:, None, None],
         (uniform(-1, 1, 2, 3, 5, 4), uniform(-1, 1, 4, 3, 3, 2), uniform(-1, 1, 4))),
    Case("conv2d_strided_grouped",
         lambda x, w: jg.nn.conv2d(x, w, stride=(2, 1), padding=(0, 1), dilation=(1, 2), groups=2),
         lambda x, w: _conv_ref(x, w, (2, 1), ((0, 0), (1, 1)), (1, 2), groups=2),
         (uniform(-1, 1, 1, 4, 7, 6), uniform(-1, 1, 4, 2, 2, 3))),
    Case("conv1d", lambda x, w: jg.nn.conv1d(x, w, padding="same", dilation=2),
         lambda x, w: _conv_ref(x[:, :, None], w[:, :, None], padding=((0, 0), (2, 2)), dilation=(1, 2))[:, :, 0],
         (uniform(-1, 1, 2, 2, 7), uniform(-1, 1, 3, 2, 3))),
    Case("conv_transpose2d", lambda x, w: jg.nn.conv_transpose2d(x, w, stride=2, padding=1, output_padding=1),
         lambda x, w: _conv_transpose_ref(x, w, (2, 2), (1, 1), (1, 1)),
         (uniform(-1, 1, 1, 2, 3, 3), uniform(-1, 1, 2, 3, 3, 3))),
    Case("max_pool2d", lambda x: jg.nn.max_pool2d(x, 3, stride=2, padding=1),
         lambda x: _pool_ref(x, 3, 2, 1, np.max, -np.inf), (uniform(-1, 1, 2, 2, 5, 5),)),
    Case("avg_pool2d",
         lambda x: jg.nn.avg_pool2d(x, 2, stride=1) * jg.nn.flatten(jg.nn.global_avg_pool2d(x))[:, :, None, None],
         lambda x: _pool_ref(x, 2, 1, 0, np.mean, 0) * x.mean(axis=(2, 3))[:, :, None, None],
         (uniform(-1, 1, 1, 2, 5, 4),)),
    Case("batch_norm", lambda x, w, b: jg.nn.batch_norm(x, weight=w, bias=b, training=True)[0], _batch_norm_ref,
         (uniform(-1, 1, 3, 2, 2, 3), uniform(0.5, 2, 2), uniform(-1, 1, 2))),
    Case("layer_norm", lambda x, w: jg.nn.layer_norm(x, axis=(-2, -1), weight=w), _layer_norm_ref,
         (uniform(-1, 1, 2, 3, 4), uniform(0.5, 2, 3, 4))),
]
CASES += CONV_CASES


# -- more elementwise math (jitgrad/ops/mathfuncs.py) and activations -----------------------------
# Several functions share a case, inside their smooth domains (away from the steps of the
# rounding functions, as the finite differences need), so the table stays cheap to compile.

def _signed(lo: float, hi: float, *shape: int) -> Callable[[], np.ndarray]:
    """Magnitudes in [lo, hi) with random signs: divisors kept away from 0."""
    return lambda: rng.uniform(lo, hi, shape) * rng.choice([-1.0, 1.0], shape)


INSIDE34 = uniform(-0.9, 0.9, 3, 4)      # |x| < 1: arcsin, arccos, arctanh


def _inverse_trig(x, m=None):
    m = m or jg
    return m.arcsin(x) + m.arccos(x) * x + m.arctan(x * 3)


def _hyperbolic(x, p, m=None):
    m = m or jg
    return m.sinh(x) + m.cosh(x) * x + m.arcsinh(x * 3) + m.arctanh(x) + m.arccosh(p) * x


def _logs(x, p, m=None):
    m = m or jg
    return m.log2(p) + m.log10(p) * x + m.exp2(x) + m.reciprocal(p) * x


def _remainders(x, y, m=None):
    m = m or jg
    return m.mod(x, y) + m.fmod(x, y) * x + m.floor_divide(x, y) * y


def _rounding(x, m=None):
    m = m or jg
    return x * m.floor(x) + m.ceil(x) + m.trunc(x) * x + m.round(x, 1) + m.rint(x * 3) * x


def _bitwise(x, y, m=None):
    """Integer ops on int64 values in [-20, 20), shift counts in [0, 5)."""
    m = m or jg
    a, b = (x * 10).astype(np.int64), (y * 10).astype(np.int64)
    counts = m.mod(b, 5)
    return m.stack([m.bitwise_and(a, b), m.bitwise_or(a, b), m.bitwise_xor(a, b), m.invert(a),
                    m.left_shift(a, counts), m.right_shift(a, counts), m.mod(a, b), m.fmod(a, b),
                    m.floor_divide(a, b), m.trunc(a) + m.round(a, -1)])


def _logical(x, y, m=None):
    m = m or jg
    inf = m.where(x > 1.5, np.inf, m.where(x < -1.5, np.nan, x))
    p, q = x > 0, y > 0
    return m.stack([m.isnan(inf), m.isinf(inf), m.isfinite(inf), m.logical_and(p, q), m.logical_or(p, y),
                    m.logical_xor(x, q), m.logical_not(p), m.logical_not(x), m.invert(q)])


def _activations_ref(x):
    sp = np.logaddexp(0, x)
    selu = 1.0507009873554804934193349852946 * np.where(x > 0, x, 1.6732632423543772848170429916717 * np.expm1(x))
    celu = np.where(x > 0, x, 0.5 * np.expm1(x / 0.5))
    return (selu + celu + x / (1 + np.abs(x)) - np.logaddexp(0, -x) + np.clip(x / 6 + 0.5, 0, 1)
            + x * np.clip(x + 3, 0, 6) / 6 + x * np.tanh(sp) + np.clip(x, 0, 6))


def _activations(x):
    n = jg.nn
    return (n.selu(x) + n.celu(x, 0.5) + n.softsign(x) + n.log_sigmoid(x) + n.hard_sigmoid(x) + n.hard_swish(x)
            + n.mish(x) + n.relu6(x))


def _math_0d(x, y, m=None):
    m = m or jg
    return (m.arcsin(x) + m.arccos(x) + m.arctan(x) + m.sinh(x) + m.cosh(x) + m.arcsinh(x) + m.arctanh(x)
            + m.arccosh(y + 1) + m.log2(y) + m.log10(y) + m.exp2(x) + m.arctan2(x, y) + m.hypot(x, y)
            + m.logaddexp(x, y) + m.copysign(x, y) + m.mod(x, y) + m.fmod(x, y) + m.floor_divide(x, y)
            + m.floor(x) + m.ceil(x) + m.trunc(x) + m.rint(x))


MATH_CASES: list[Case] = [
    Case("inverse_trig", _inverse_trig, lambda x: _inverse_trig(x, np), (INSIDE34,)),
    Case("hyperbolic", _hyperbolic, lambda x, p: _hyperbolic(x, p, np), (INSIDE34, uniform(1.2, 3, 3, 4))),
    Case("log2_log10_exp2", _logs, lambda x, p: _logs(x, p, np), (X34, POS34)),
    Case("arctan2_hypot", lambda y, x: jg.arctan2(y, x) + jg.hypot(y, x) * y,
         lambda y, x: np.arctan2(y, x) + np.hypot(y, x) * y, (X34, _signed(0.5, 2, 3, 4))),
    Case("logaddexp_copysign", lambda x, y: jg.logaddexp(x, y) + jg.copysign(x, y) * y,
         lambda x, y: np.logaddexp(x, y) + np.copysign(x, y) * y, (X34, _signed(0.2, 2, 3, 4))),
    Case("remainders", _remainders, lambda x, y: _remainders(x, y, np), (uniform(-5, 5, 3, 4), _signed(0.5, 2, 3, 4))),
    Case("rounding", _rounding, lambda x: _rounding(x, np), (uniform(-3, 3, 3, 4),)),
    Case("bitwise", _bitwise, lambda x, y: _bitwise(x, y, np),
         (X34, _signed(0.1, 2, 3, 4)), differentiable=False),
    Case("logical", _logical, lambda x, y: _logical(x, y, np), (X34, X34), differentiable=False),
    Case("activations_more", _activations, _activations_ref, (uniform(-7, 7, 3, 4),)),
    Case("math_0d", _math_0d, lambda x, y: _math_0d(x, y, np), (SMALL0, POS0)),
]
CASES += MATH_CASES


# -- sorting (issue 17) -------------------------------------------------------------------------

def _sorted_values(x):
    values, _ = jg.top_k(x, 3)
    return jg.concatenate([jg.sort(x, axis=0), jg.sort(x), values, jg.sort(x, descending=True)], axis=1)


def _sorted_values_ref(x):
    top = np.take_along_axis(x, np.argsort(-x, axis=1, kind="stable")[:, :3], axis=1)
    return np.concatenate([np.sort(x, axis=0), np.sort(x, axis=1), top, np.sort(x, axis=1)[:, ::-1]], axis=1)


def _with_ties(x, m=None):
    """Rounded (many ties), with a NaN and infinities where |x| > 1.6."""
    m = m or jg
    return m.where(x > 1.6, np.nan, m.where(x < -1.6, -np.inf, m.round(x * 2)))


def _sort_orders(x):
    t = _with_ties(x)
    _, top = jg.top_k(t, 3)
    return jg.concatenate([jg.argsort(t, axis=0), jg.argsort(t), top, jg.argsort(t, descending=True)], axis=1)


def _sort_orders_ref(x):
    t = _with_ties(x, np)
    down = sort_ops.argsort_ref(t, 1, True)
    return np.concatenate([np.argsort(t, axis=0, kind="stable"), np.argsort(t, axis=1, kind="stable"),
                           down[:, :3], down], axis=1)


_SORTED_TIES = np.array([[0.0, 0.0, 1.0, 2.0, 2.0], [1.0, 1.0, 1.0, 1.0, 1.0], [-1.0, 0.0, 0.5, 0.7, 3.0]])


SORT_CASES: list[Case] = [
    Case("sort_top_k", _sorted_values, _sorted_values_ref, (uniform(-2, 2, 3, 5),)),
    Case("argsort", _sort_orders, _sort_orders_ref, (uniform(-2, 2, 4, 6),), differentiable=False),
    Case("sort_flat_ties", lambda x: jg.sort(jg.where(x > 1, 1.0, x), axis=None) * jg.sort(x, axis=None),
         lambda x: np.sort(np.where(x > 1, 1.0, x), axis=None) * np.sort(x, axis=None), (uniform(-2, 2, 2, 3, 2),)),
    Case("tie_average", lambda v: bind(sort_ops.tie_average_p, jg.constant(_SORTED_TIES), v, axis=1),
         lambda v: sort_ops.tie_average_ref(_SORTED_TIES, v, 1), (uniform(-2, 2, 3, 5),)),
]
CASES += SORT_CASES


# -- contractions (issue 17): einsum's diagonals, transposes, reshapes and batched matmuls ---------

def _einsums(a, b, c, m=None):
    m = m or jg
    return m.einsum("bii,ij,jk->bk", a, b, c) + m.einsum("...ij,...jk->...ik", a[:, :, :2], b[:2, :2])[:, 0, :2]


def _tensor_products(a, b, v, m=None):
    m = m or jg
    return (m.tensordot(a, b, ([2, 0], [0, 1])) + m.inner(m.cross(a[0], v), v)[:, None]
            + m.vdot(a[0, :, :2], b[:, 0]) + m.kron(a[0, :, :1], v[:2]))


CONTRACTION_CASES: list[Case] = [
    Case("einsum_diagonal_chain", _einsums, lambda a, b, c: _einsums(a, b, c, np),
         (uniform(-1, 1, 2, 3, 3), uniform(-1, 1, 3, 4), uniform(-1, 1, 4, 2))),
    Case("tensordot_cross_kron", _tensor_products, lambda a, b, v: _tensor_products(a, b, v, np),
         (uniform(-1, 1, 2, 3, 3), uniform(-1, 1, 3, 2, 2), uniform(-1, 1, 3))),
]
CASES += CONTRACTION_CASES


def _full_svd_projector(a, m=None):
    """The projector onto the complement of the thin U of a tall ``a``: unique, so differentiable."""
    if m is None:
        u = jg.linalg.svd(a, full_matrices=True)[0][:, 3:]
        return u @ jg.swapaxes(u, -1, -2)
    u = np.linalg.svd(a, full_matrices=True)[0][:, 3:]
    return u @ u.T


LINALG_MORE_CASES: list[Case] = [
    Case("solve_triangular_unit", lambda t, b: jg.linalg.solve_triangular(t, b, trans=1, unit_diagonal=True),
         lambda t, b: scipy.linalg.solve_triangular(t, b, trans=1, unit_diagonal=True), (SQUARE3, uniform(-1, 1, 3))),
    Case("cho_solve", lambda m, b: jg.linalg.cho_solve(jg.linalg.cho_factor(m @ m.T + 3 * np.eye(3)), b),
         lambda m, b: scipy.linalg.cho_solve(scipy.linalg.cho_factor(m @ m.T + 3 * np.eye(3)), b),
         (uniform(-1, 1, 3, 3), uniform(-1, 1, 3, 2))),
    Case("matrix_power", lambda a: jg.linalg.matrix_power(a, 5) + jg.linalg.matrix_power(a, -2),
         lambda a: np.linalg.matrix_power(a, 5) + np.linalg.matrix_power(a, -2), (SQUARE3,)),
    Case("pinv", jg.linalg.pinv, lambda a: np.linalg.pinv(a, rtol=None), (uniform(-2, 2, 4, 3),)),
    Case("lstsq", lambda a, b: jg.linalg.lstsq(a, b)[0], lambda a, b: np.linalg.lstsq(a, b)[0],
         (uniform(-2, 2, 4, 3), uniform(-1, 1, 4, 2))),
    Case("qr_tall", lambda a: jg.linalg.qr(a)[0] * 2 + jg.linalg.qr(a)[1].sum(),
         lambda a: (lambda q, r: q * np.sign(np.diag(r)) * 2 + (np.sign(np.diag(r))[:, None] * r).sum())(
             *np.linalg.qr(a)), (uniform(-2, 2, 4, 3),)),
    Case("qr_wide", lambda a: jg.linalg.qr(a, "r"),
         lambda a: np.sign(np.diag(np.linalg.qr(a)[1]))[:, None] * np.linalg.qr(a, "r"), (X34,)),
    Case("expm", jg.linalg.expm, scipy.linalg.expm, (uniform(-1.5, 1.5, 3, 3),), order=1),
    Case("svd_full_projector", _full_svd_projector, lambda a: _full_svd_projector(a, np), (uniform(-2, 2, 5, 3),),
         order=1),
]
CASES += LINALG_MORE_CASES


# -- shape functions, advanced indexing and .at updates (jitgrad.arrays, jitgrad.indexing) ------

_TAKE = np.array([[3, 0], [-1, 1], [2, 2]])
_MASK = np.array([[True, False, True, False], [False, False, True, True], [True, True, False, False]])


def _reorder(x, m=None):
    m = m or jg
    return (m.flip(x, 0) * m.roll(x, (1, -1), (0, 1)) + m.tile(x[:1], (3, 1)) + m.repeat(x[:, ::2], 2, axis=1)
            + m.swapaxes(m.moveaxis(x.reshape(3, 2, 2), 0, -1), 0, 1).reshape(3, 4))


def _triangles(x, m=None):
    m = m or jg
    return m.tril(x, -1) + m.triu(x, 1) * m.diag(m.diagonal(x)) + m.trace(x, 1) + m.diag(x[0], 0)


def _pads(x, m=None):
    m = m or jg
    w = ((1, 2), (2, 1))
    return m.pad(x, w, "reflect") + m.pad(x, w, "edge") * m.pad(x, w, constant_values=0.5) + m.pad(x, w, "wrap")


def _split_take(x, m=None):
    m = m or jg
    left, right = m.split(x, 2, axis=1)
    a, b = m.array_split(x, [1], axis=0)
    grid = m.meshgrid(a[0, :2], b[:, 0], indexing="ij")[1]
    return m.take_along_axis(x, _TAKE, 1) * left + right + m.ravel(grid)[:3, None] + m.ravel(x)[:6].reshape(3, 2)


def _advanced_index(x):
    return x[[[0], [2]], [1, -1, 3]].sum(0) * x[_MASK][:3] + x[1:, [0, 0, 2]][:, [1, 0, 2]].sum(0)


def _at_updates(x):
    return (x.at[[0, 2, 0], 1:3].set(x[1, :2] * 2.0) * x.at[:, [1, 1]].add(x[:, :2] ** 2)
            + x.at[_MASK].multiply(x[_MASK] + 1.5) + x.at[[0, 1], [2, 2]].min(0.25) + x.at[2].max(x[0] * 0.5))


def _at_updates_ref(x):
    def upd(key, v, ufunc=None):
        out = x.copy()
        if ufunc is None:
            out[key] = v
        else:
            ufunc.at(out, key, v)
        return out
    return (upd(([0, 2, 0], slice(1, 3)), x[1, :2] * 2.0) * upd((slice(None), [1, 1]), x[:, :2] ** 2, np.add)
            + upd(_MASK, x[_MASK] + 1.5, np.multiply) + upd(([0, 1], [2, 2]), 0.25, np.minimum)
            + upd(2, x[0] * 0.5, np.maximum))


def _rows_of(x, m):
    """Row indices with repeats that depend on the data: 0 or 1 by the sign of each entry of x's
    first row, then -2 or -1 (rows 1 or 2, from the end): a Tensor index known at run time."""
    sign = m.greater(x[0], 0.0)
    return m.concatenate([m.astype(sign, np.int64), m.astype(sign[:1], np.int64) - 2], axis=0)


def _at_updates_repeated(x):
    rows = _rows_of(x, jg)
    v = jg.concatenate([x[:, ::-1], x[:2]], axis=0) * 0.5 - 0.2
    return (x.at[rows].set(v) + x.at[rows].multiply(v + 1.0) * x.at[rows].min(v)
            + x.at[rows, 1].max(v[:, 0]))


def _at_updates_repeated_ref(x):
    rows = _rows_of(x, np)
    v = np.concatenate([x[:, ::-1], x[:2]], axis=0) * 0.5 - 0.2
    out = [x.copy() for _ in range(4)]
    out[0][rows] = v
    np.multiply.at(out[1], rows, v + 1.0)
    np.minimum.at(out[2], rows, v)
    np.maximum.at(out[3], (rows, 1), v[:, 0])
    return out[0] + out[1] * out[2] + out[3]


ARRAY_CASES: list[Case] = [
    Case("arrays_reorder", _reorder, lambda x: _reorder(x, np), (X34,)),
    Case("arrays_triangles", _triangles, lambda x: _triangles(x, np), (X33,)),
    Case("arrays_pad", _pads, lambda x: _pads(x, np), (X34,)),
    Case("arrays_split_take", _split_take, lambda x: _split_take(x, np), (X34,)),
    Case("index_advanced", _advanced_index, _advanced_index, (X34,)),
    Case("at_updates", _at_updates, _at_updates_ref, (X34,)),
    Case("at_updates_repeated_tensor_index", _at_updates_repeated, _at_updates_repeated_ref, (X34,)),
]
CASES += ARRAY_CASES
