"""Lowering runs once: every target gets the same frozen, printable schedule and emits from it."""
from __future__ import annotations

import dataclasses

import numba
import numpy as np
import pytest

import jitgrad as jg
from jitgrad.backends.program import Program
from jitgrad.lower import Lowered

TARGETS = ["numpy", "cpu"] + (["cuda"] if numba.config.ENABLE_CUDASIM else [])


def _step():
    x, w = jg.input("x", (None, 3)), jg.param("w", np.ones(3))
    loss = jg.sum(jg.tanh(x * w))
    (g,) = jg.grad(loss, [w])
    return [x], [loss, g], {w: w - 0.1 * g}


def test_every_target_prints_the_same_lowered_schedule():
    texts = set()
    for target in TARGETS:
        inputs, outputs, updates = _step()
        f = jg.compile(inputs, outputs, updates=updates, target=target)
        assert isinstance(f.schedule, Lowered) and isinstance(f._program, Program)
        texts.add(str(f.schedule))
    assert len(texts) == 1 and "kernel 0  fused[" in texts.pop()


def test_the_lowered_schedule_is_frozen_and_knows_its_results():
    inputs, outputs, updates = _step()
    s = jg.compile(inputs, outputs, updates=updates, target="numpy").schedule
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.steps = ()
    assert s.results == s.outputs + tuple(v for _, v in s.updates)
    written = [v for step in s.steps for v in step.writes()]
    assert set(s.results) <= set(written) and len(written) == len(set(written))
