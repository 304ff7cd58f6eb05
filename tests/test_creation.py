"""The creation functions (issue 17's first row): zeros, ones, full and their _like forms
(call-time sizes included), eye, identity, arange, linspace, against NumPy."""
from __future__ import annotations

import numpy as np
import pytest

import jitgrad as jg


@pytest.mark.parametrize("target", ["numpy", "cpu"])
def test_fixed_shapes_match_numpy(target):
    made = [jg.zeros((2, 3)), jg.ones(4, "float32"), jg.full((2,), 7, "int64"), jg.eye(3, 4, k=1),
            jg.identity(2, "float32"), jg.arange(5), jg.arange(1.0, 2.0, 0.25), jg.linspace(0, 1, 5),
            jg.linspace(0, 1, 4, endpoint=False, dtype="float32")]
    want = [np.zeros((2, 3)), np.ones(4, np.float32), np.full((2,), 7, np.int64), np.eye(3, 4, k=1),
            np.identity(2, np.float32), np.arange(5), np.arange(1.0, 2.0, 0.25), np.linspace(0, 1, 5),
            np.linspace(0, 1, 4, endpoint=False).astype(np.float32)]
    got = jg.compile([], made, target=target)()
    for g, w in zip(got, want):
        assert g.dtype == w.dtype
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("target", ["numpy", "cpu"])
def test_like_forms_take_call_time_sizes_and_have_no_derivative(target):
    x = jg.input("x", (None, 3))
    made = [jg.zeros_like(x), jg.ones_like(x, "int32"), jg.full_like(x, 2.5)]
    (g,) = jg.grad(jg.sum(made[2] * x) + jg.sum(made[0]), [x])
    got = jg.compile([x], made + [g], target=target)(np.ones((5, 3)))
    np.testing.assert_array_equal(got[0], np.zeros((5, 3)))
    assert got[1].dtype == np.int32 and (got[1] == 1).all()
    np.testing.assert_array_equal(got[2], np.full((5, 3), 2.5))
    np.testing.assert_array_equal(got[3], np.full((5, 3), 2.5))     # d(2.5 x)/dx; zeros_like adds 0


def test_bad_sizes_are_named():
    with pytest.raises(ValueError, match="negative size"):
        jg.full((2, -1), 0.0)
    with pytest.raises(TypeError, match="unknown dtype"):
        jg.zeros(3, "float128x")
