"""jitgrad.testing, the checks users run on their own primitives: its example runs, it needs
neither pytest nor hypothesis, and each check fails on the fault it is there to catch."""
import dataclasses
import doctest
import subprocess
import sys

import numpy as np
import pytest

import jitgrad as jg
from jitgrad import testing as jt
from jitgrad.graph import bind
from jitgrad.primitive import Aval, Primitive


def cube(vjp_factor=3.0, ref=lambda x: x ** 3):
    cube_p = Primitive("cube", shape=lambda x: Aval(x.dims, x.dtype), ref=ref,
                       vjp=lambda b, y_bar, y, x: (y_bar * vjp_factor * x * x,),
                       jvp=lambda b, x_dots, y, x: x_dots[0] * 3.0 * x * x, scalar="({0} * {0} * {0})")
    return jt.Case("cube", lambda x: bind(cube_p, x), lambda x: x ** 3, (jt.uniform(-2, 2, 3),))


def test_the_module_example_runs():
    result = doctest.testmod(jt)
    assert result.attempted > 0 and result.failed == 0


def test_importing_it_needs_neither_pytest_nor_hypothesis():
    code = "import sys, jitgrad.testing; print(sorted({'pytest', 'hypothesis'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr


def test_a_user_primitive_passes_on_the_cpu_target():
    jt.check_case(cube(), target="cpu")


FAULTS = {"wrong_vjp": (dict(vjp_factor=2.0), "VJP"), "wrong_ref": (dict(ref=np.sin), "cube on numpy")}


@pytest.mark.parametrize("fault, message", FAULTS.values(), ids=FAULTS.keys())
def test_a_wrong_rule_or_reference_fails(fault, message):
    with pytest.raises(AssertionError, match=message):
        jt.check_case(cube(**fault), target="numpy")


def test_a_function_that_writes_into_its_argument_fails():
    def scale(x, *, out):
        x *= 2.0
        return x + out
    with pytest.raises(AssertionError, match="argument 0"):
        jt.call_unmutated(scale, np.ones(3), out=np.zeros(3))
    with pytest.raises(AssertionError, match="argument 'out'"):
        jt.call_unmutated(lambda x, *, out: out.fill(1.0), np.ones(3), out=np.zeros(3))
    assert jt.call_unmutated(lambda x: x + 1, np.ones(3)).sum() == 6.0


def test_a_value_that_disagrees_with_numpy_fails():
    case = jt.Case("sin", jg.sin, np.cos, (jt.uniform(-1, 1, 3),))
    with pytest.raises(AssertionError, match="sin on numpy vs NumPy"):
        jt.check_values(case)
    with pytest.raises(AssertionError, match=r"shape \(3,\), expected \(1, 3\)"):
        jt.check_values(dataclasses.replace(case, ref=lambda v: np.sin(v)[None]))
