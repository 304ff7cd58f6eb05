"""to_dot and render: DOT text for graphs and compiled schedules, files via Graphviz."""
import re
import shutil

import numpy as np
import pytest

import jitgrad as jg
from jitgrad.viz import render, to_dot

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz `dot` is not installed")


def small_graph():
    x = jg.input("x", (None, 3))
    w = jg.param("w", np.ones(3))
    y = jg.sum(jg.tanh(x * w)) + 0.5 * jg.sum(jg.exp(w))
    return x, w, y


def assert_well_formed(dot: str):
    assert dot.startswith("digraph jitgrad {") and dot.rstrip().endswith("}")
    body = re.sub(r'"(?:[^"\\]|\\.)*"', '""', dot)          # braces inside labels do not count
    assert body.count("{") == body.count("}") == 1


def test_dot_names_every_op_input_and_param():
    x, w, y = small_graph()
    dot = to_dot(y)
    assert_well_formed(dot)
    for name in ("mul", "tanh", "reduce_sum", "exp", "add", "broadcast_to"):
        assert f'label="{name}' in dot
    assert 'label="x\\nf64[None,3]", shape=box' in dot
    assert 'label="w\\nf64[3]"' in dot and 'label="0.5\\nf64[]"' in dot


def test_inputs_params_constants_and_ops_have_distinct_shapes():
    _, _, y = small_graph()
    styles = {re.search(r"shape=\w+(, style=\S+)?", line).group(0)
              for line in to_dot(y).splitlines() if "label=" in line and "->" not in line
              and "output" not in line}
    assert len(styles) == 4


def test_outputs_are_marked_in_order():
    x, _, y = small_graph()
    (g,) = jg.grad(y, [x])
    dot = to_dot([y, g])
    assert 'label="output 0"' in dot and 'label="output 1"' in dot
    assert "output 2" not in dot and dot.count("penwidth=2") == 2


def test_compiled_executable_shows_schedule_and_updates():
    x, w, y = small_graph()
    (gw,) = jg.grad(y, [w])
    f = jg.compile([x], [y, gw], target="numpy", updates={w: w - 0.1 * gw})
    dot = to_dot(f)
    assert_well_formed(dot)
    for e in f.schedule.eqns:
        assert f'label="{e.out.name} = {e.op.name}' in dot
    assert 'label="output 1"' in dot and 'label="update"' in dot
    assert to_dot(f.schedule) == dot


def test_deterministic():
    dots = {to_dot(small_graph()[2]) for _ in range(3)}
    assert len(dots) == 1


def test_labels_are_escaped():
    p = jg.param('odd "name" \\ {x}\nline', np.zeros(2))
    dot = to_dot(jg.sum(p))
    assert 'label="odd \\"name\\" \\\\ {x}\\nline\\nf64[2]"' in dot
    assert_well_formed(dot)


def test_rejects_other_objects():
    with pytest.raises(TypeError, match="to_dot"):
        to_dot(np.ones(3))


def test_render_without_graphviz_raises(monkeypatch, tmp_path):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="apt-get install graphviz"):
        render(small_graph()[2], tmp_path / "g.svg")


def test_render_rejects_unknown_format(tmp_path):
    with pytest.raises(ValueError, match="svg or png"):
        render(small_graph()[2], tmp_path / "g.gif")


@needs_dot
@pytest.mark.parametrize("name, magic", [("g.svg", b"<svg"), ("g.png", b"\x89PNG")])
def test_render_writes_file(tmp_path, name, magic):
    x, w, y = small_graph()
    f = jg.compile([x], y, target="numpy")
    path = render(f, tmp_path / name)
    assert path == tmp_path / name
    assert magic in path.read_bytes()[:400]


@needs_dot
def test_render_format_overrides_suffix(tmp_path):
    path = render(small_graph()[2], str(tmp_path / "graph"), format="png")
    assert open(path, "rb").read(4) == b"\x89PNG"
