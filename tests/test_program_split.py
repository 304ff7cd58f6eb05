"""Long CPU programs are cut into segment functions; a repeated structure compiles once.

The thresholds are patched small here, so that graphs of a few layers are cut as a deep
network's would be.
"""
from unittest import mock

import numpy as np
import pytest

import jitgrad as jg
from jitgrad.backends import program_split
from jitgrad.backends.program_split import split
from jitgrad.testing import check_target


@pytest.fixture
def short_segments():
    with mock.patch.object(program_split, "MIN_LINES", 4), mock.patch.object(program_split, "MAX_LINES", 12):
        yield


def chain(layers: int, width: int = 3):
    """``sum(h_L)`` with ``h_{k+1} = tanh(h_k @ W_k)`` and its gradient w.r.t. x and W_0."""
    rng = np.random.default_rng(layers)
    weights = [jg.param(f"W{k}", rng.standard_normal((width, width)) / 2) for k in range(layers)]
    x = jg.input("x", (2, width))
    h = x
    for w in weights:
        h = jg.tanh(h @ w)
    loss = jg.sum(h)
    return [x], [loss, *jg.grad(loss, [x, weights[0]])]


def segment_modules(f) -> list[str]:
    return [s for s in f._compiled.module_sources if "\ndef segment(" in s]


def test_a_short_program_stays_one_function():
    f = jg.compile(*chain(2), target="cpu")
    assert segment_modules(f) == []
    assert "segment" not in f._compiled.module_sources[-1]


def test_a_long_program_is_cut_and_gives_the_reference_results(short_segments):
    inputs, outputs = chain(12)
    f = jg.compile(inputs, outputs, target="cpu")
    assert len(segment_modules(f)) >= 2
    check_target(inputs, outputs, {"x": np.linspace(-1, 1, 6).reshape(2, 3)}, "cpu", rtol=1e-12, atol=0)


def test_repeated_layers_share_their_segments(short_segments):
    """The number of distinct segments does not grow with the depth: the layers' segments
    are one source, so Numba compiles each once."""
    shallow = jg.compile(*chain(16), target="cpu")
    deep = jg.compile(*chain(48), target="cpu")
    assert len(segment_modules(deep)) == len(segment_modules(shallow))
    program = deep._compiled.module_sources[-1]
    assert program.count("segment_") > 2 * len(segment_modules(deep))     # called far more than defined


def test_segments_take_what_earlier_code_defined_and_return_what_later_code_reads(short_segments):
    blocks = [[f"v_a{k} = np.sin(v_a{k - 1 if k else 'x'})"] for k in range(40)]
    blocks.append(["v_out = v_a3 + v_a39"])
    segments = split(blocks, ["return (v_out, v_a0, )"], {"np"})
    assert segments is not None and len(segments) > 2
    assert segments[0].params == ["v_ax"]
    defined = {"v_ax"}
    for segment in segments:
        assert set(segment.params) <= defined              # nothing read before it exists
        defined |= set(segment.results)
    returned = {name for segment in segments for name in segment.results}
    assert {"v_a0", "v_a3", "v_out"} <= returned
    assert "v_a20" not in returned                         # read only inside its own segment


def test_a_segment_names_its_variables_by_position():
    blocks = [["# b:f64[2] = sin a", "v_b = np.sin(v_a)"], ["v_c = kernel_7(v_b, ws3)"]]
    (segment,) = split(blocks * 200, [], {"np", "kernel_7"})[:1]
    imports, source = segment.function("@jit()", {"kernel_7": "from jg_x import kernel as kernel_7"})
    assert imports == "from jg_x import kernel as kernel_0"
    assert "def segment(v_p0, v_p1):" in source
    assert "# t0:f64[2] = sin p0" in source and "v_t0 = np.sin(v_p0)" in source
    assert "kernel_0(v_t0, v_p1)" in source
