"""Leaves of a graph: call-time inputs, constants and trainable params.

They have no reference and no derivative rules: the runtime supplies their
values, and autodiff starts or stops at them.
"""
from __future__ import annotations

from ..primitive import Primitive

_NO_RULE = dict(ref=None, vjp=None, jvp=None, nin=0, differentiable=False)

input_p = Primitive("input", shape=None, doc="A value passed at call time.", **_NO_RULE)
constant_p = Primitive("constant", shape=None, doc="A value baked into the graph.", **_NO_RULE)
param_p = Primitive("param", shape=None, doc="A stateful, trainable value.", **_NO_RULE)

PRIMITIVES = (input_p, constant_p, param_p)
