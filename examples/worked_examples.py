"""The worked examples of the course notes jitgrad grew from, recomputed by jitgrad.

Each example builds its graph once, differentiates it graph-to-graph (forward
mode with ``jg.jvp``, reverse mode with ``jg.grad``/``jg.vjp``), compiles it on
the NumPy reference target and prints a small table: the number the notes give
("printed"), or the notes' formula evaluated by hand ("formula") where they
only show a figure, next to jitgrad's result.

    python examples/worked_examples.py

Sources (in /work/shared/seeds): [000] Scardapane, lecture notes; [001]
Merkulov, slides; [003] Daniel, tutorial; [004] Andrews, Hu & Ye, paper.
The same examples run as tests in tests/test_course_notes.py.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

try:
    import jitgrad as jg
except ImportError:             # a source checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import jitgrad as jg

TARGET = "numpy"
MISMATCHES = []


def run(inputs, outputs, *args):
    return jg.compile(inputs, outputs, target=TARGET)(*args)


def scalars(*names):
    return [jg.input(n, ()) for n in names]


def fmt(v) -> str:
    v = np.asarray(v)
    if v.dtype == bool:
        return str(bool(v.all()))
    if v.ndim == 0:
        return f"{float(v):.10g}"
    if v.size > 1 and np.all(v == v.flat[0]):
        return f"{float(v.flat[0]):.10g} (all {v.size})"
    if v.size > 4:          # long arrays: the first entries and the shape (all are compared)
        return "[" + ", ".join(f"{float(e):.4g}" for e in v.flat[:3]) + f", ...] {v.shape}"
    return "[" + ", ".join(f"{float(e):.6g}" for e in v.flat) + "]"


def check(what: str, expected, got) -> str:
    ok = np.allclose(got, expected, rtol=1e-9, atol=1e-12)
    if not ok:
        MISMATCHES.append(what)
    return "ok" if ok else "DIFFERS"


def table(title: str, rows, note: str = "") -> None:
    """rows: (quantity, expected, source, jitgrad's value)."""
    print(f"\n{title}")
    cells = [(q, fmt(e), s, fmt(g), check(f"{title}: {q}", e, g)) for q, e, s, g in rows]
    w = [max(len(c[i]) for c in cells + [("quantity", "notes", "source", "jitgrad")]) for i in range(4)]
    print(f"  {'quantity':<{w[0]}}  {'notes':>{w[1]}}  {'source':<{w[2]}}  {'jitgrad':>{w[3]}}")
    print("  " + "-" * (sum(w) + 12))
    for q, e, s, g, ok in cells:
        print(f"  {q:<{w[0]}}  {e:>{w[1]}}  {s:<{w[2]}}  {g:>{w[3]}}  {ok}")
    if note:
        print(f"  note: {note}")


# -- [001] ---------------------------------------------------------------------

def l_both_modes():
    w1, w2 = scalars("w1", "w2")
    v2 = w2 * jg.log(w1)
    L = v2 + jg.sqrt(v2)
    fwd = [jg.jvp([L], [w1, w2], seed)[0] for seed in ([1.0, 0.0], [0.0, 1.0])]
    Lv, f1, f2, r1, r2 = run([w1, w2], [L] + fwd + jg.grad(L, [w1, w2]), 2.0, 3.0)
    s = 1 + 0.5 / math.sqrt(3 * math.log(2))
    table("[001] L(w1, w2) = w2 log w1 + sqrt(w2 log w1) at w1=2, w2=3: forward and reverse mode", [
        ("L", 3 * math.log(2) + math.sqrt(3 * math.log(2)), "formula", Lv),
        ("dL/dw1, forward, seed (1,0)", 1.5 * s, "formula", f1),
        ("dL/dw1, reverse", 1.5 * s, "formula", r1),
        ("dL/dw2, forward, seed (0,1)", math.log(2) * s, "formula", f2),
        ("dL/dw2, reverse", math.log(2) * s, "formula", r2),
    ])


def linear_solve_adjoint():
    rng = np.random.default_rng(1)
    Av, bv, c = rng.normal(size=(3, 3)) + 3 * np.eye(3), rng.normal(size=3), rng.normal(size=3)
    A, b = jg.input("A", (3, 3)), jg.input("b", (3,))
    gA, gb = run([A, b], jg.grad(jg.sum(c * jg.linalg.solve(A, b)), [A, b]), Av, bv)
    xv, lam = np.linalg.solve(Av, bv), np.linalg.solve(Av.T, c)
    table("[001] x = A^-1 b, L = <c, x>: the adjoint of a linear solve (one LU for both)", [
        ("dL/db = A^-T c", lam, "formula", gb),
        ("dL/dA = -A^-T c x^T", -np.outer(lam, xv), "formula", gA)])


def svd_adjoint():
    Wv, c = np.random.default_rng(2).normal(size=(4, 3)), np.array([3.0, 2.0, 1.0])
    W = jg.input("W", (4, 3))
    (gW,) = run([W], jg.grad(jg.sum(c * jg.linalg.svd(W)[1]), [W]), Wv)
    U, _, Vt = np.linalg.svd(Wv, full_matrices=False)
    table("[001] L = <c, s(W)> for the singular values s of a 4x3 W", [
        ("dL/dW = U diag(c) V^T", U @ np.diag(c) @ Vt, "formula", gW)])


# -- [003] ---------------------------------------------------------------------

def d_equals_a_a_plus_b():
    a, b = scalars("a", "b")
    d = a * (a + b)
    da, db = run([a, b], jg.grad(d, [a, b]), 2.0, 3.0)
    table("[003] d = a (a + b) at a=2, b=3: reverse mode through c = a + b", [
        ("dd/da = 2a + b", 7.0, "formula", da), ("dd/db = a", 2.0, "formula", db)])


def mean_of_squares():
    x = jg.input("x", (2, 2))
    o = jg.mean(3 * (x + 2) ** 2)
    ov, gx = run([x], [o] + jg.grad(o, [x]), np.ones((2, 2)))
    table("[003] o = mean(3 (x + 2)^2) with x = ones(2, 2): o.backward()", [
        ("o", 27.0, "printed", ov), ("do/dx_i (every i)", 4.5, "printed", gx)])


def func_derivative():
    x = jg.input("x", ())
    f = 3 * x ** 3 - 5 * x ** 2
    (rev,), (fwd,) = run([x], jg.grad(f, [x]), 1.5), run([x], jg.jvp([f], [x], [1.0]), 1.5)
    func, h = (lambda t: 3 * t ** 3 - 5 * t ** 2), 1e-5
    table("[003] func(x) = 3x^3 - 5x^2 at x=1.5: AD vs the central difference", [
        ("func'(1.5), reverse mode", 5.25, "printed", rev),
        ("func'(1.5), forward mode", 5.25, "printed", fwd),
        ("central difference, h=1e-5", (func(1.5 + h) - func(1.5 - h)) / (2 * h), "numeric", rev)])


def vjp_with_cotangent():
    x = jg.input("x", (3,))
    y = x
    for _ in range(10):                 # the notes double until ||y|| >= 1000: 2^10 = 1024
        y = y * 2
    (gx,) = run([x], jg.vjp([y], [x], [np.array([0.1, 1.0, 0.0001])]), np.ones(3))
    table("[003] y = 1024 x (x doubled 10 times), y.backward(v) with v = [0.1, 1.0, 0.0001]", [
        ("x.grad", np.array([102.4, 1024.0, 0.1024]), "printed", gx)])


def detach():
    x = jg.input("x", (3,))
    y = jg.stop_gradient(x)             # torch: y = x.detach()
    yv, g = run([x], [y] + jg.grad(jg.sum(y ** 2), [x]), np.array([1.0, 2.0, 3.0]))
    table("[003] y = x.detach() is jg.stop_gradient(x): same values, no gradient", [
        ("x.eq(y).all()", True, "printed", np.all(yv == [1.0, 2.0, 3.0])),
        ("d sum(y^2) / dx", np.zeros(3), "stated", g)])


def d_log_det():
    Av = np.random.default_rng(4).normal(size=(3, 3)) + 3 * np.eye(3)
    A = jg.input("A", (3, 3))
    (g,) = run([A], jg.grad(jg.linalg.slogdet(A)[1], [A]), Av)
    table("[003] d log|det A| / dA", [("A^-T", np.linalg.inv(Av).T, "formula", g)])


# -- [004] ---------------------------------------------------------------------

def a_x_plus_b():
    x, a, b = scalars("x", "a", "b")
    f = a * x + b
    seeds = {"x": [1.0, 0, 0], "a": [0, 1.0, 0], "b": [0, 0, 1.0]}
    got = run([x, a, b], [f] + [jg.jvp([f], [x, a, b], s)[0] for s in seeds.values()], 4.0, 2.0, 5.0)
    table("[004] f(x) = a x + b at x=4, a=2, b=5: forward accumulation, one seed per input", [
        ("f = w2", 13.0, "printed", got[0]), ("df/dx (seed x=1)", 2.0, "printed", got[1]),
        ("df/da (seed a=1)", 4.0, "formula", got[2]), ("df/db (seed b=1)", 1.0, "formula", got[3])],
        note="the paper writes dw1/dx = 2*1 + 3*0; the 3 (dw1/da) should be x = 4, harmless under seed 0")


def x_plus_y_pow_z_minus_w():
    x, y, z, w = scalars("x", "y", "z", "w")
    a = (x + y) ** z - w
    got = run([x, y, z, w], [a] + jg.grad(a, [x, y, z, w]), 3.0, 4.0, 2.0, 2.0)
    table("[004] a = (x + y)^z - w at x=3, y=4, z=2, w=2: a.backward() (the paper shows a figure)", [
        ("a", 47.0, "formula", got[0]),
        ("da/dx = z (x+y)^(z-1)", 14.0, "formula", got[1]), ("da/dy", 14.0, "formula", got[2]),
        ("da/dz = (x+y)^z log(x+y)", 49 * math.log(7), "formula", got[3]),
        ("da/dw", -1.0, "formula", got[4])])


def newton_raphson():
    x = jg.input("x", ())
    f = x ** 3 - 2 * x - 5             # Newton's own example; the paper leaves f open
    (df,) = jg.grad(f, [x])
    step = jg.compile([x], [f, df], target=TARGET)
    print("\n[004] Newton-Raphson x_{n+1} = x_n - f(x_n) / f'(x_n), f' by AD: f(x) = x^3 - 2x - 5")
    print("   n                  x_n      f(x_n)       f'(x_n)")
    xv = 2.0
    for n in range(5):
        fv, dv = step(xv)
        print(f"  {n:>2}  {xv:>19.16f}  {float(fv):>10.3e}  {float(dv):>12.8f}")
        xv = xv - float(fv) / float(dv)
    root = 2.0945514815423265
    print(f"  x_5 = {xv!r}, the known root {root!r}: {check('Newton-Raphson root', root, xv)}")


# -- [000] ---------------------------------------------------------------------

def jacobian_shapes():
    x, w = jg.input("x", (3, 4)), jg.input("w", (4, 5))
    J = run([x, w], jg.jacobian(x @ w, w), np.ones((3, 4)), np.ones((4, 5)))
    print("\n[000] jacobian(lambda w: x @ w, w) with x (3, 4), w (4, 5)")
    ok = check("jacobian shape", 1.0, float(J.shape == (3, 5, 4, 5)))
    print(f"  shape      notes torch.Size([3, 5, 4, 5])   jitgrad {J.shape}  {ok}")
    print(f"  flattened  notes torch.Size([15, 20])       jitgrad {J.reshape(15, -1).shape}")


def sigmoid_bound():
    s = jg.input("s", (201,))
    (d,) = run([s], jg.grad(jg.sum(jg.sigmoid(s)), [s]), np.linspace(-10, 10, 201))
    table("[000] the sigmoid's derivative is bounded in [0, 0.25]", [
        ("max sigmoid'(s), s in [-10, 10]", 0.25, "stated", d.max())])


EXAMPLES = [l_both_modes, linear_solve_adjoint, svd_adjoint, d_equals_a_a_plus_b, mean_of_squares,
            func_derivative, vjp_with_cotangent, detach, d_log_det, a_x_plus_b, x_plus_y_pow_z_minus_w, newton_raphson,
            jacobian_shapes, sigmoid_bound]


def main() -> int:
    print("jitgrad recomputes the worked examples of its course notes")
    print(f"(target={TARGET!r}; 'printed': the number appears in the notes, 'formula': "
          "the notes' formula evaluated)")
    for example in EXAMPLES:
        example()
    print(f"\n{len(EXAMPLES)} examples, " + (f"{len(MISMATCHES)} mismatch(es): {MISMATCHES}"
                                             if MISMATCHES else "all numbers agree."))
    return 1 if MISMATCHES else 0


if __name__ == "__main__":
    sys.exit(main())
