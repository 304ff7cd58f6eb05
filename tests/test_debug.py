"""jg.compile(..., debug_nans=True) and f.profile on the numpy and cpu targets (cuda: in
tests/cuda/test_cuda_target.py): the first NaN names its step, primitive, equation and the
line of code that built it; param updates are not applied; profiles time every step."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import jitgrad as jg
from jitgrad import debug, provenance

TARGETS = ["numpy", "cpu"]
HERE = Path(__file__).resolve()


def _line_of(marker: str) -> int:
    """The line of this file that holds ``marker`` (in a comment)."""
    (line,) = [k for k, text in enumerate(HERE.read_text().splitlines(), 1) if text.rstrip().endswith(marker)]
    return line


def _ten_ops():
    """A 10-op graph whose log reads 0 where x <= 1 (its result reaches the output)."""
    x = jg.input("x", (4,))
    a = x * 2.0
    b = a - 2.0
    c = jg.maximum(b, 0.0)
    d = jg.log(c)                       # planted: log(0)
    e = d * x
    f = jg.exp(-x)
    g = e + f
    h = g * g
    return x, jg.sum(h)


FINE, PLANTED = np.array([1.5, 2.0, 3.0, 4.0]), np.array([0.5, 2.0, 3.0, 4.0])


@pytest.mark.parametrize("target", TARGETS)
def test_a_planted_log_of_zero_is_named_with_the_line_that_built_it(target):
    with jg.debug_nans():
        x, y = _ten_ops()
    f = jg.compile([x], y, target=target, debug_nans=True)
    assert np.isfinite(f(FINE))
    with pytest.raises(FloatingPointError) as caught:
        f(PLANTED)
    error, line = caught.value, _line_of("# planted: log(0)")
    assert error.finding.origin.op.name == "log" and not error.finding.poisoned
    assert error.site.frames[0][:2] == (str(HERE), line)
    message = str(error)
    assert f"target {target!r}" in message and "produced inf" in message
    assert "made by log, from finite operands" in message and str(error.finding.origin) in message
    assert f'File "{HERE}", line {line}, in _ten_ops' in message and "d = jg.log(c)" in message


@pytest.mark.parametrize("target", TARGETS)
def test_without_recorded_lines_the_report_names_the_primitive_and_its_equation(target):
    x, y = _ten_ops()
    f = jg.compile([x], y, target=target, debug_nans=True)
    with pytest.raises(FloatingPointError, match=r"made by log.*\n    \w+:f64\[4\] = log \w+\n.*JITGRAD_DEBUG_NANS=1"):
        f(PLANTED)


@pytest.mark.parametrize("target", TARGETS)
def test_inputs_that_already_hold_nan_are_named(target):
    x = jg.input("x", (3,))
    f = jg.compile([x], jg.sum(jg.exp(x) * 2.0), target=target, debug_nans=True)
    with pytest.raises(FloatingPointError, match=r"appears in exp, whose operand\(s\) already held NaN/inf: "
                                                 r"x \(input 'x'\)"):
        f(np.array([1.0, np.nan, 2.0]))


@pytest.mark.parametrize("target", TARGETS)
def test_no_param_changes_when_a_check_fails(target):
    w = jg.param("w", np.array([1.0, 2.0, 3.0]))
    x = jg.input("x", (3,))
    loss = jg.sum(jg.sqrt(x * w))
    f = jg.compile([x], loss, target=target, debug_nans=True, updates=jg.optim.sgd(loss, [w], lr=0.1))
    f(np.ones(3))
    before = w.value
    with pytest.raises(FloatingPointError, match="sqrt"):
        f(np.array([1.0, -1.0, 1.0]))
    np.testing.assert_array_equal(w.value, before)


def test_the_checks_are_another_program_and_change_no_result():
    x, y = _ten_ops()
    plain, checked = jg.compile([x], y), jg.compile([x], y, debug_nans=True)
    assert not plain.debug_nans and "nan_flag" not in plain.source and "isfinite" not in plain.source
    assert "nan_flag" in checked.source
    assert plain(FINE) == checked(FINE)
    assert np.isinf(plain(PLANTED))           # no checks: the inf is the result


def test_checks_with_call_time_sizes_views_and_library_calls():
    with jg.debug_nans():
        x = jg.input("x", (None, 3))
        w = jg.param("w", np.arange(12.0).reshape(3, 4) - 5.0)
        h = jg.tanh(x @ w)
        z = jg.sqrt(h)                      # planted: sqrt of a negative
        y = jg.mean(z ** 2) + jg.sum(x)
    f = jg.compile([x], [y, h.T], debug_nans=True)
    f(np.zeros((2, 3)))
    with pytest.raises(FloatingPointError, match=r"made by sqrt.*\n.*= sqrt ") as caught:
        f(np.ones((5, 3)))
    assert caught.value.site.frames[0][1] == _line_of("# planted: sqrt of a negative")


def test_a_node_that_a_rewrite_rebuilds_keeps_its_line():
    with jg.debug_nans():
        x = jg.input("x", (3,))
        y = jg.sum(jg.log(x * 1.0))         # planted: rebuilt as log(x)
    f = jg.compile([x], y, target="numpy", debug_nans=True)
    with pytest.raises(FloatingPointError) as caught:
        f(np.zeros(3))
    assert caught.value.finding.origin.ins[0].name == "x"       # the rewrite dropped the * 1.0
    assert caught.value.site.frames[0][1] == _line_of("# planted: rebuilt as log(x)")


@pytest.mark.parametrize("target", TARGETS)
def test_a_loop_that_makes_nan_is_the_step_named(target):
    with jg.debug_nans():
        x = jg.input("x", (3,))
        _, ys = jg.scan(lambda c, xi: (c * xi, jg.sqrt(c - 2.0)), jg.sum(x), x)    # planted: in a loop
    f = jg.compile([x], jg.sum(ys), target=target, debug_nans=True)
    with pytest.raises(FloatingPointError, match=r"(?s)debug_nans: scan .*made by scan") as caught:
        f(np.array([0.5, 0.3, 0.4]))
    assert caught.value.site.frames[0][1] == _line_of("# planted: in a loop")


def test_compile_checks_by_default_in_debug_mode():
    x = jg.input("x", (3,))
    assert not jg.compile([x], x * 2, target="numpy").debug_nans
    with jg.debug_nans():
        assert jg.compile([x], x * 2, target="numpy").debug_nans
        assert not jg.compile([x], x * 2, target="numpy", debug_nans=False).debug_nans
    assert not provenance.recording


def test_the_environment_turns_debug_mode_on():
    script = textwrap.dedent("""
        import numpy as np, jitgrad as jg
        x = jg.input("x", (2,))
        f = jg.compile([x], jg.log(x), target="numpy")
        try:
            f(np.zeros(2))
        except FloatingPointError as error:
            print(error)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, JITGRAD_DEBUG_NANS="1"))
    assert done.returncode == 0, done.stderr
    assert 'File "<string>", line 4, in <module>' in done.stdout


def test_recording_stops_after_the_block_and_costs_nothing_outside_it():
    with jg.debug_nans():
        x = jg.input("x", (3,))
        inside = jg.sin(x)
    outside = jg.sin(x)
    assert provenance.site_of(inside) is not None and provenance.site_of(outside) is None


# -- profiles ------------------------------------------------------------------------------------

def _mlp():
    rng = np.random.default_rng(0)
    w1, w2 = jg.param("w1", rng.normal(size=(8, 16))), jg.param("w2", rng.normal(size=(16, 2)))
    x = jg.input("x", (None, 8))
    loss = jg.mean(jg.tanh(jg.relu(x @ w1) @ w2) ** 2)
    return x, loss, [w1, w2]


@pytest.mark.parametrize("target", TARGETS)
def test_profile_times_every_step_and_prints_a_sorted_table(target):
    x, loss, params = _mlp()
    f = jg.compile([x], loss, target=target, updates=jg.optim.sgd(loss, params, lr=0.1))
    before = [p.value for p in params]
    profile = f.profile(np.ones((32, 8)), repeat=3)
    for p, b in zip(params, before):
        np.testing.assert_array_equal(p.value, b)          # a profile applies no update
    assert profile.target == target and profile.calls == 3 and profile.seconds > 0
    assert all(row.calls == 3 and row.seconds >= 0 for row in profile.rows)
    if target == "numpy":
        assert [row.what for row in profile.rows] == [str(e) for e in f.schedule.eqns]
    else:
        assert [row.step for row in profile.rows] == debug.step_names(f.schedule.steps)
        assert any(row.step == "call matmul" for row in profile.rows)
        assert any(row.step.startswith("kernel ") and "fused[" in row.what for row in profile.rows)
    table = str(profile)
    assert repr(profile) == table and table.startswith(f"profile of 3 calls on target {target!r}")
    times = [float(line.split()[0]) for line in table.splitlines()[2:] if "(the rest)" not in line]
    assert times == sorted(times, reverse=True) and len(times) == len(profile.rows)


def test_profile_takes_arguments_by_name_and_checks_them():
    x, loss, _ = _mlp()
    f = jg.compile([x], loss)
    assert len(f.profile(x=np.ones((4, 8)), repeat=1).rows) == len(f.schedule.steps)
    with pytest.raises(ValueError, match="input 'x'"):
        f.profile(np.ones((4, 7)))
    with pytest.raises(ValueError, match="repeat"):
        f.profile(np.ones((4, 8)), repeat=0)
