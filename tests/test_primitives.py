"""Every primitive, from one table (``jitgrad.testing.CASES``): forward vs NumPy,
derivatives vs finite differences, the CPU target vs the reference.

Each case builds a small graph; together the cases' graphs contain every
primitive (asserted below).  For each differentiable case, ``jg.check_grads``
compares the JVP along a random direction with a central difference and the
VJP with the JVP by the inner-product identity, in float64, to second order.
Every compiled call also asserts that it left its arguments unchanged.
"""
from __future__ import annotations

import numpy as np
import pytest

import jitgrad as jg
from jitgrad import testing as jt
from jitgrad.graph import topological_order
from jitgrad.ops import BY_NAME, leaf
from jitgrad.testing import CASES


def name(case):
    return case.name


@pytest.mark.parametrize("case", CASES, ids=name)
def test_forward_matches_numpy(case):
    jt.check_values(case)


@pytest.mark.parametrize("case", CASES, ids=name)
def test_forward_float32(case):
    jt.check_values(case, dtype="float32", rtol=2e-5, atol=2e-5)   # NumPy's promotion: float32 stays


@pytest.mark.parametrize("case", [c for c in CASES if c.differentiable], ids=name)
def test_derivatives_match_finite_differences(case):
    jg.check_grads(case.fn, case.sample(), order=case.order, **case.tol)


@pytest.mark.parametrize("case", [c for c in CASES if not c.differentiable], ids=name)
def test_zero_derivative_primitives(case):
    args = case.sample()
    xs, y = jt.build(case, args)
    y = jg.sum(jg.astype(y, "float64")) if y.dtype.kind != "f" else jg.sum(y)
    grads = jt.call_unmutated(jg.compile(xs, jg.grad(y, xs), target="numpy"), *args)
    for g, a in zip(grads, args):      # stop_gradient: d(x * sg(x)) = sg(x), not 2x
        np.testing.assert_array_equal(g, args[0] if case.name == "stop_gradient" else np.zeros_like(a))


def test_the_table_covers_every_primitive():
    seen = set()
    for case in CASES:
        _, y = jt.build(case, case.sample())
        seen |= {node.op.name for node in topological_order([y])}
    missing = set(BY_NAME) - seen - {leaf.param_p.name}
    assert not missing, f"no case exercises {sorted(missing)}"


def test_every_primitive_has_its_rules():
    for prim in BY_NAME.values():
        if prim.differentiable:
            assert prim.vjp is not None and prim.jvp is not None, prim
        if prim.nin != 0 or prim.name == "full":
            assert prim.ref is not None and prim.shape is not None, prim


@pytest.mark.parametrize("case", CASES, ids=name)
def test_cpu_matches_the_reference(case):
    """The Numba target against the numpy oracle: values and derivatives in both modes."""
    args = case.sample()
    jt.check_target(*jt.with_derivatives(case, args), args, "cpu")
