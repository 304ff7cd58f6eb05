"""The helpers kernel bodies call by name come from one list (``kernel_body.HELPERS``),
and every target defines and imports all of them."""
from __future__ import annotations

import builtins
import importlib
import math
import re

import pytest

from jitgrad.backends import kernel_body
from jitgrad.ops import PRIMITIVES

_CALL = re.compile(r"(?<![.\w])([A-Za-z_]\w*)\(")       # name(...), not module.name(...)
_MATH = re.compile(r"\bmath\.(\w+)\(")
SCALARS = [p.scalar for p in PRIMITIVES if p.scalar] + list(kernel_body.COMBINE.values())


def _called(text: str) -> set[str]:
    return set(_CALL.findall(text)) - set(dir(builtins))


def test_every_name_a_scalar_string_calls_is_a_helper():
    used = set().union(*map(_called, SCALARS))
    assert used <= set(kernel_body.HELPERS), sorted(used - set(kernel_body.HELPERS))
    assert all(hasattr(math, name) for text in SCALARS for name in _MATH.findall(text))


@pytest.mark.parametrize("target, prelude", [("scalars", "numba_cpu._PRELUDE"),
                                             ("cuda_scalars", "cuda_kernels.PRELUDE")])
def test_every_helper_exists_on_both_targets_and_their_preludes_import_it(target, prelude):
    module = importlib.import_module(f"jitgrad.backends.{target}")
    assert all(callable(getattr(module, name, None)) for name in kernel_body.HELPERS)
    owner, attribute = prelude.split(".")
    scope: dict = {}
    exec(getattr(importlib.import_module(f"jitgrad.backends.{owner}"), attribute), scope)
    assert all(scope[name] is getattr(module, name) for name in kernel_body.HELPERS)
