"""The compile-and-run contract of api.md on the numpy target."""
import sys

import numpy as np
import pytest

import jitgrad as jg


@pytest.fixture(params=["numpy", "cpu"])
def target(request):
    """Every contract holds on the reference and on the compiled target."""
    return request.param


def simple():
    x, w = jg.input("x", (None, 3)), jg.input("w", (3,))
    return x, w, jg.sum(jg.tanh(x * w)) + 0.5 * jg.sum(w ** 2)


def test_positional_keyword_and_mixed_calls_agree(target):
    x, w, y = simple()
    f = jg.compile([x, w], y, target=target)
    xv, wv = np.ones((4, 3)), np.arange(3.0)
    assert f(xv, wv) == f(x=xv, w=wv) == f(xv, w=wv)


def test_single_output_vs_tuple_outputs(target):
    x, w, y = simple()
    assert isinstance(jg.compile([x, w], y, target=target)(np.ones((1, 3)), np.ones(3)), np.ndarray)
    out = jg.compile([x, w], [y], target=target)(np.ones((1, 3)), np.ones(3))
    assert isinstance(out, tuple) and len(out) == 1 and out[0].shape == ()


def test_outputs_are_fresh_arrays(target):
    x = jg.input("x", (3,))
    f = jg.compile([x], [x, x, x.reshape(3, 1)[:, 0]], target=target)
    xv = np.arange(3.0)
    a, b, c = f(xv)
    a[0] = b[1] = c[2] = 100.0
    np.testing.assert_array_equal(xv, np.arange(3.0))
    a2, _, _ = f(np.ones(3))
    assert a[0] == 100.0 and a2[0] == 1.0


@pytest.mark.parametrize("call, error, message", [
    (lambda f: f(np.ones((2, 3))), TypeError, r"missing.*'w'"),
    (lambda f: f(np.ones((2, 3)), np.ones(3), np.ones(3)), TypeError, "positional"),
    (lambda f: f(np.ones((2, 3)), v=np.ones(3)), TypeError, "unexpected argument 'v'"),
    (lambda f: f(np.ones((2, 3)), np.ones(3), w=np.ones(3)), TypeError, "multiple values"),
    (lambda f: f(np.ones((2, 3)), np.ones(4)), ValueError, r"input 'w'.*\(3,\).*\(4,\)"),
    (lambda f: f(np.ones(3), np.ones(3)), ValueError, r"input 'x'.*\(None, 3\).*rank"),
    (lambda f: f(np.ones((2, 3)), np.ones(3, dtype=complex)), TypeError, r"input 'w'.*complex128"),
    (lambda f: f(np.ones((2, 3)), np.array(["a", "b", "c"])), TypeError, r"input 'w'"),
])
def test_argument_errors_name_the_input(target, call, error, message):
    x, w, y = simple()
    with pytest.raises(error, match=message):
        call(jg.compile([x, w], y, target=target))


def fixed():
    """A graph whose inputs all have fixed shapes: calls may take the fast paths."""
    x, w, s = jg.input("x", (3,)), jg.input("w", (2, 3)), jg.input("s", ())
    f = lambda target: jg.compile([x, w, s], w @ x * s, target=target)   # noqa: E731
    return f, (np.arange(3.0), np.ones((2, 3)), 2.0)


FIXED_ERRORS = [       # (argument index, bad value, error, message)
    (0, np.ones(2), ValueError, r"input 'x': expected shape \(3,\), got \(2,\)"),
    (0, np.ones(4), ValueError, r"input 'x': expected shape \(3,\), got \(4,\)"),
    (0, np.ones(1), ValueError, r"input 'x': expected shape \(3,\), got \(1,\)"),       # no broadcasting
    (0, np.array(1.0), ValueError, r"input 'x': expected shape \(3,\), got \(\).*rank 0"),
    (0, np.ones((3, 1)), ValueError, r"input 'x': expected shape \(3,\), got \(3, 1\).*rank 2"),
    (1, np.ones((3, 2)), ValueError, r"input 'w': expected shape \(2, 3\), got \(3, 2\)"),
    (1, np.ones(6), ValueError, r"input 'w': expected shape \(2, 3\), got \(6,\).*rank 1"),
    (2, np.ones(2), ValueError, r"input 's': expected shape \(\), got \(2,\).*rank 1"),
    (0, np.ones(3, complex), TypeError, r"input 'x': expected dtype float64, got complex128"),
    (1, np.array([["a"] * 3] * 2), TypeError, r"input 'w': expected dtype float64"),
    (2, 1j, TypeError, r"input 's': expected dtype float64, got complex128"),
]


@pytest.mark.parametrize("keywords", [False, True], ids=["positional", "keywords"])
@pytest.mark.parametrize("k, bad, error, message", FIXED_ERRORS, ids=[
    "x-short", "x-long", "x-one", "x-0d", "x-rank2", "w-transposed", "w-flat", "s-vector",
    "x-complex", "w-strings", "s-complex"])
def test_fixed_shape_inputs_check_every_call(target, keywords, k, bad, error, message):
    """With every shape fixed, exact arguments skip the general checks (CPU: a generated
    entry for positional calls, else a fast path); anything else must still be checked."""
    make, args = fixed()
    f = make(target)
    want = np.ones((2, 3)) @ np.arange(3.0) * 2.0
    np.testing.assert_array_equal(f(*args), want)      # the fast path is taken, and works
    args = list(args)
    args[k] = bad
    with pytest.raises(error, match=message):
        f(**dict(zip("xws", args))) if keywords else f(*args)
    np.testing.assert_array_equal(f(*fixed()[1]), want)


@pytest.mark.parametrize("names", [("self", "a0"), ("more", "named")])
def test_inputs_named_like_the_entrys_parameters_bind_by_name(target, names):
    """The CPU entry's parameters (self, a0, ..., more, named) never capture an input's keyword."""
    first, second = (jg.input(n, ()) for n in names)
    f = jg.compile([first, second], first - 2.0 * second, target=target)
    assert f(5.0, 1.0) == f(**{names[0]: 5.0, names[1]: 1.0}) == f(5.0, **{names[1]: 1.0}) == 3.0
    with pytest.raises(TypeError, match=f"multiple values for argument '{names[0]}'"):
        f(5.0, 1.0, **{names[0]: 5.0})
    with pytest.raises(TypeError, match=r"takes 2 positional arguments .* but 3 were given"):
        f(5.0, 1.0, 2.0)
    with pytest.raises(TypeError, match=rf"missing argument\(s\) \['{names[1]}'\]"):
        f(5.0)


def test_python_numbers_take_the_fast_entry_and_ints_out_of_range_are_refused(target):
    """float, int and bool arguments go straight to the compiled code (CPU); others convert."""
    i, b, x = jg.input("i", (), "int64"), jg.input("b", (), "bool"), jg.input("x", ())
    f = jg.compile([i, b, x], jg.where(b, x * 2.0, x) + i, target=target)
    assert f(3, True, 1.5) == 6.0 and f(3, False, 1.5) == 4.5
    assert f(np.int64(3), np.array(True), 1) == 5.0        # numpy scalars, a 0-d array, an int
    with pytest.raises(TypeError, match="input 'x'"):
        f(3, True, 1.5j)
    for big in (2**63, 2**64 - 1):      # numpy makes these uint64, which casts to int64 by wrapping
        with pytest.raises(OverflowError, match=rf"input 'i': values from {big} to {big} do not fit dtype int64"):
            f(big, True, 1.5)
    v = jg.input("v", (2,), "int64")
    total = jg.compile([v], jg.sum(v), target=target)
    assert total(np.array([1, 2], np.uint64)) == 3
    with pytest.raises(OverflowError, match=r"input 'v': values from 0 to 9223372036854775808 do not fit"):
        total(np.array([0, 2**63], np.uint64))


def test_same_entries_keep_their_own_programs_and_params(target):
    """Functions with the same argument types share their entry's code, never its state."""
    x = jg.input("x", (3,))
    w = jg.param("w", np.ones(3))
    doubled, tripled = (jg.compile([x], jg.sum(x * w) * k, updates={w: w * k}, target=target)
                        for k in (2.0, 3.0))
    assert doubled(np.ones(3)) == 6.0 and tripled(np.ones(3)) == 18.0     # w: 1 -> 2 -> 6
    np.testing.assert_array_equal(w.value, np.full(3, 6.0))


def test_a_call_while_another_thread_runs_still_gets_its_results(target):
    """With the workspace in use (its lock held), a call takes the checked path and its own
    buffers."""
    make, args = fixed()
    f = make(target)
    want = f(*args)
    state = getattr(f, "_entry_state", None)
    if state is None:
        pytest.skip(f"no generated entry on {target}")
    with state.lock:
        np.testing.assert_array_equal(f(*args), want)


def test_dropping_a_compiled_function_frees_its_program_at_once(target):
    """The entry holds no reference cycle: the program (and its workspace) goes with the
    function's last reference, not at the next garbage collection."""
    import gc
    import weakref
    make, args = fixed()
    f = make(target)
    f(*args)
    program = weakref.ref(f._program)
    gc.disable()
    try:
        del f
        assert program() is None
    finally:
        gc.enable()


def test_fixed_shape_inputs_convert_like_the_general_path(target):
    make, (xv, wv, sv) = fixed()
    f = make(target)
    want = wv @ xv * sv
    for call in (lambda: f(xv.astype(np.float32), wv, sv),           # same_kind dtype
                 lambda: f(np.arange(3), wv.astype(int), 2),          # ints, a Python int
                 lambda: f((np.arange(6.0) / 2)[::2], np.ones((3, 2)).T, np.array(2.0)),   # strided, 0-d
                 lambda: f([0.0, 1.0, 2.0], wv.tolist(), sv)):        # lists
        np.testing.assert_array_equal(call(), want)


def test_call_time_sizes_are_checked_across_inputs(target):
    x, y = jg.input("x", (None, 3)), jg.input("y", (None,))
    f = jg.compile([x, y], jg.sum(x[:, 0] * y), target=target)
    assert f(np.ones((4, 3)), np.ones(4)) == 4.0
    with pytest.raises(ValueError, match=r"input 'y'.*\(5,\).*'x'"):
        f(np.ones((4, 3)), np.ones(5))


def test_same_kind_conversion(target):
    x = jg.input("x", (2,), "float32")
    f = jg.compile([x], x * 2, target=target)
    out = f(np.array([1, 2]))                 # int64 -> float32 is same_kind
    assert out.dtype == np.float32 and list(out) == [2.0, 4.0]
    i = jg.input("i", (2,), "int32")
    with pytest.raises(TypeError, match=r"input 'i'.*int32.*float64"):
        jg.compile([i], i + 1, target=target)(np.array([1.5, 2.0]))


def test_unknown_options_and_targets(target):
    x, w, y = simple()
    with pytest.raises(TypeError, match="unroll"):
        jg.compile([x, w], y, target=target, unroll=True)
    with pytest.raises(ValueError, match="tpu"):
        jg.compile([x, w], y, target="tpu")


def test_missing_input_is_a_compile_error(target):
    x, w, y = simple()
    with pytest.raises(ValueError, match="input 'w'"):
        jg.compile([x], y, target=target)


def test_params_are_implicit_inputs_and_updates_read_old_values(target):
    p = jg.param("p", np.array([1.0, 2.0]))
    q = jg.param("q", np.array(10.0))
    x = jg.input("x", (2,))
    loss = jg.sum(p * x) + q
    f = jg.compile([x], loss, updates={p: p + q, q: q + jg.sum(p)}, target=target)
    assert f(np.ones(2)) == 13.0
    np.testing.assert_array_equal(p.value, [11.0, 12.0])
    assert q.value == 13.0
    assert f(np.ones(2)) == 36.0


def test_param_value_get_and_set(target):
    p = jg.param("p", np.zeros((2, 2), np.float32))
    v = p.value
    v[0, 0] = 5
    assert p.value[0, 0] == 0            # a copy
    p.value = np.ones((2, 2))            # float64 -> float32: same_kind
    assert p.value.dtype == np.float32
    with pytest.raises(ValueError, match=r"param 'p'.*\(2, 2\).*\(3,\)"):
        p.value = np.ones(3)
    with pytest.raises(TypeError, match="param 'p'"):
        p.value = np.ones((2, 2), complex)
    np.testing.assert_array_equal(p.value, np.ones((2, 2)))


BAD_UPDATES = {        # the update of a (3,) param, and the shape the error must name
    "scalar": (lambda p, x: jg.sum(p), r"\(\)"),
    "number": (lambda p, x: 1.0, r"\(\)"),
    "shorter": (lambda p, x: p[:2], r"\(2,\)"),
    "broadcastable": (lambda p, x: jg.sum(p, keepdims=True), r"\(1,\)"),
    "higher rank": (lambda p, x: p.reshape(3, 1), r"\(3, 1\)"),
    "call-time size": (lambda p, x: x * 2.0, r"\(None,\)"),
}


@pytest.mark.parametrize("kind", BAD_UPDATES)
def test_an_update_of_another_shape_is_a_compile_error(target, kind, monkeypatch):
    """Refused by jg.compile, before anything runs, naming the param and both shapes."""
    build, shape = BAD_UPDATES[kind]
    p, x = jg.param("p", np.arange(3.0)), jg.input("x", (None,))
    targets, ran = sys.modules["jitgrad.compile"].TARGETS, []
    build_program = targets[target]
    monkeypatch.setitem(targets, target, lambda *a, **k: ran.append(1) or build_program(*a, **k))
    with pytest.raises(ValueError, match=rf"update of param 'p' has shape {shape}, the param has shape \(3,\)"):
        jg.compile([x], jg.sum(x), updates={p: build(p, x)}, target=target)
    assert not ran                                   # no program was even built
    np.testing.assert_array_equal(p.value, np.arange(3.0))
    f = jg.compile([x], jg.sum(x), updates={p: p * 2.0}, target=target)   # the right shape works
    f(np.ones(2))
    np.testing.assert_array_equal(p.value, [0.0, 2.0, 4.0])
    assert p.value.shape == (3,)


def test_a_failing_call_leaves_params_untouched(target):
    p = jg.param("p", np.array([1.0, 2.0]))
    idx = jg.input("idx", (1,), "int64")
    f = jg.compile([idx], jg.sum(p[idx]), updates={p: p * 0}, target=target)
    with pytest.raises(IndexError):
        f(np.array([7]))
    np.testing.assert_array_equal(p.value, [1.0, 2.0])


def test_nodes_are_immutable(target):
    x = jg.input("x", (2,))
    with pytest.raises(AttributeError):
        x.dims = (3,)
    with pytest.raises(TypeError, match="truth value"):
        bool(x > 0)


def test_numpy_arrays_on_either_side_of_an_operator(target):
    x = jg.input("x", (3,))
    y = np.arange(3.0) * x + np.ones(3)
    assert isinstance(y, jg.Tensor)
    np.testing.assert_array_equal(jg.compile([x], y, target=target)(np.ones(3)), [1.0, 2.0, 3.0])


def test_dtype_promotion_follows_numpy(target):
    f32, i64 = jg.input("a", (2,), "float32"), jg.input("b", (2,), "int64")
    assert (f32 * 2.0).dtype == np.float32
    assert (f32 + i64).dtype == np.result_type(np.float32, np.int64)
    assert (i64 / i64).dtype == np.float64
    assert (i64 * 2).dtype == np.int64
    assert jg.exp(i64).dtype == np.float64


def test_schedule_prints_one_line_per_equation(target):
    x, w, y = simple()
    f = jg.compile([x, w], [y, *jg.grad(y, [w])], target=target)
    text = str(f.schedule)
    assert text.startswith("{ lambda x:f64[x0,3] w:f64[3]")
    assert "tanh x" not in text and "= tanh" in text
    assert len(text.splitlines()) > len(f.schedule.eqns)


def test_rewrites_share_common_subexpressions_and_fold_constants(target):
    x = jg.input("x", (3,))
    y = jg.sin(x) * jg.sin(x) + jg.constant(2.0) * 3.0
    schedule = jg.compile([x], y, target=target).schedule
    eqns = schedule.eqns
    assert [e.op.name for e in eqns] == ["sin", "mul", "add"]       # sin(x) once; 2 * 3 not computed
    consts = {id(v): value for v, value in schedule.consts}
    assert not [str(e) for e in eqns if all(id(v) in consts for v in e.ins)]   # nothing left to fold
    (folded,) = [consts[id(v)] for e in eqns for v in e.ins if id(v) in consts]
    np.testing.assert_array_equal(folded, 6.0)                      # the add reads the folded 2 * 3
    np.testing.assert_allclose(jg.compile([x], y, target=target)(np.ones(3)), np.sin(1.0) ** 2 + 6)


def test_rewrites_never_drop_inf_times_zero(target):
    x = jg.input("x", (2,))
    f = jg.compile([x], x * 0.0 + x * 1.0, target=target)
    out = f(np.array([np.inf, 2.0]))
    assert np.isnan(out[0]) and out[1] == 2.0


def test_common_subexpressions_differ_by_attributes(target):
    x = jg.input("x", (2, 3))
    f = jg.compile([x], [jg.sum(x, axis=0), jg.sum(x, axis=1)], target=target)
    a, b = f(np.arange(6.0).reshape(2, 3))
    assert list(a) == [3, 5, 7] and list(b) == [3, 12]


def test_an_input_used_only_through_its_size_must_be_given(target):
    x = jg.input("x", (None, 3))
    (g,) = jg.grad(jg.mean(x.reshape(-1)), [x])
    with pytest.raises(ValueError, match="input 'x'"):
        jg.compile([], g, target=target)
    np.testing.assert_allclose(jg.compile([x], g, target=target)(np.ones((2, 3))), np.full((2, 3), 1 / 6))
