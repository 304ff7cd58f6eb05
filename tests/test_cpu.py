"""What the compiled CPU target adds: fusion, one program, the memory plan."""
import re

import numpy as np
import pytest

import jitgrad as jg
from jitgrad.fusion import Kernel
from jitgrad.graph import bind
from jitgrad.primitive import Aval, Primitive
from jitgrad.testing import call_unmutated


def w2():
    x = jg.input("x", (None,))
    loss = jg.sum(jg.tanh(jg.sin(x) * jg.exp(-x * x / 2)) + 0.1 * x * x)
    return [x], [loss, *jg.grad(loss, [x])]


def test_value_and_gradient_of_an_elementwise_chain_are_one_loop():
    f = jg.compile(*w2(), target="cpu")
    kernels = [s for s in f.schedule.steps if isinstance(s, Kernel)]
    assert len(f.schedule.steps) == len(kernels) == 1
    assert [v.name for v in kernels[0].reads()][0] == "x"       # reads x once, writes dy/dx once
    assert "kernel 0  fused[sin" in str(f.schedule)
    xv = np.linspace(-2, 2, 101)
    wants = call_unmutated(jg.compile(*w2(), target="numpy"), xv)
    for got, want in zip(call_unmutated(f, xv), wants):
        np.testing.assert_allclose(got, want, rtol=1e-13)


def test_generated_source_is_kept_and_readable():
    f = jg.compile(*w2(), target="cpu")
    assert "def program(" in f.source and "for i0 in range(" in f.source
    assert "math.tanh(" in f.source          # vmath.tanh( where glibc's vector math is used


def test_intermediates_share_the_workspace_and_it_is_reused():
    x = jg.input("x", (None, 8))
    h = x
    for _ in range(10):
        h = jg.tanh(h @ np.eye(8) + 1.0)
    loss = jg.sum(h)
    f = jg.compile([x], [loss, *jg.grad(loss, [x])], target="cpu")
    plan = f._program._plan
    assert len(plan.slots) < len(plan.slot_of) / 3
    f(np.ones((4, 8)))
    first = f._program._workspace[1]
    out1 = f(np.ones((4, 8)))
    assert all(a is b for a, b in zip(first, f._program._workspace[1]))
    out2 = f(np.zeros((4, 8)))
    assert not np.array_equal(out1[1], out2[1])          # outputs are fresh, not workspace views
    f(np.ones((5, 8)))                                   # new shapes: a new workspace
    assert f._program._workspace[1][0] is not first[0]


def test_a_primitive_the_backend_cannot_emit_fails_at_compile_time():
    odd_p = Primitive("odd", shape=lambda x: Aval(x.dims, x.dtype), ref=lambda x: x,
                      vjp=None, jvp=None, differentiable=False)
    x = jg.input("x", (2,))
    with pytest.raises(NotImplementedError, match="'odd'"):
        jg.compile([x], bind(odd_p, x), target="cpu")


def test_out_of_range_gather_raises_instead_of_reading_memory():
    x, i = jg.input("x", (3,)), jg.input("i", (2,), "int64")
    f = jg.compile([x, i], jg.take(x, i), target="cpu")
    np.testing.assert_array_equal(f(np.arange(3.0), np.array([2, -1])), [2.0, 2.0])
    with pytest.raises(IndexError):
        f(np.arange(3.0), np.array([0, 3]))


@pytest.mark.parametrize("view", [False, True])
def test_a_kernel_without_loops_returns_its_values_as_numbers(view):
    """Its caller allocates no 0-d arrays for them, and a later kernel reads them as numbers;
    where a view reads one (``view``), the kernel stores into 0-d arrays as before."""
    a, b, x = jg.input("a", ()), jg.input("b", ()), jg.input("x", (3,))
    s = jg.log(a) * b
    t = jg.sqrt(s) + jg.astype(b > 1.0, "float64")
    outputs = [s, jg.sum(x * t), jg.reshape(t, (1,)) if view else t * x, b > 1.0]
    f = jg.compile([a, b, x], outputs, target="cpu")
    program = f.source.split("def program(")[1]
    assert bool(re.search(r"\n    v_\w+, v_\w+, v_\w+ = kernel_0\(s_a, s_b\)\n", program)) is not view
    assert ("kernel_0(s_a, s_b, v_" in program) is view          # the 0-d arrays it stores into
    args = (2.0, 3.0, np.arange(3.0))
    got, want = f(*args), jg.compile([a, b, x], outputs, target="numpy")(*args)
    for g, w in zip(got, want):
        assert type(g) is np.ndarray and g.dtype == w.dtype
        np.testing.assert_array_equal(g, w)


def test_float32_stays_float32():
    x = jg.input("x", (None,), "float32")
    f = jg.compile([x], [jg.sum(jg.sigmoid(x) * 2.0), jg.exp(x)], target="cpu")
    s, e = f(np.linspace(-1, 1, 7, dtype=np.float32))
    assert s.dtype == e.dtype == np.float32


@pytest.mark.parametrize("dtype, number", [("int64", 2), ("bool", True), ("float32", 0.5), ("int32", 1)])
def test_a_0d_input_may_be_a_0d_array_or_a_number(dtype, number):
    """The program takes 0-d inputs as numbers; a 0-d array goes through the checked path
    (the fast entry used to hand it over as an array, which Numba could not type)."""
    x, s = jg.input("x", (3,)), jg.input("s", (), dtype)
    y = jg.take(x, jg.astype(s, "int64")) + jg.sum(x * jg.astype(s, "float64"))
    f = jg.compile([x, s], y, target="cpu")
    X = np.arange(3.0)
    want = X[int(number)] + X.sum() * float(number)
    for value in (np.array(number, dtype), number, np.array(number, dtype)):
        assert f(X, value) == want


def test_a_0d_constant_read_by_a_library_call_stays_0d():
    """Constants the program receives are passed C-ordered with their shape: a 0-d one
    used to arrive 1-d (np.ascontiguousarray's habit) and fail to type in scatter_add."""
    from jitgrad.ops import shape as sh
    label = jg.input("label", (), "int64")
    y = bind(sh.scatter_add_p, jg.constant(2.5), label, shape=(4,), axis=0)
    f = jg.compile([label], y, target="cpu")
    np.testing.assert_array_equal(f(np.array(1)), [0, 2.5, 0, 0])
