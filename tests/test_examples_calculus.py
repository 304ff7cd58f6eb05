"""The calculus example scripts run at --small size, write their figure, and agree
with what they print about themselves (newton, forward_vs_reverse,
vanishing_gradients, activations)."""
import re
import runpy
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name, tmp_path, monkeypatch, capsys) -> str:
    """Run examples/<name>.py's main(["--small", "--out", tmp_path]); return what it printed."""
    monkeypatch.syspath_prepend(str(EXAMPLES))          # the scripts `import _common`
    script = runpy.run_path(str(EXAMPLES / f"{name}.py"), run_name="example")
    rc = script["main"](["--small", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0, out
    png = tmp_path / f"{name}.png"
    assert png.is_file() and png.stat().st_size > 0, f"{png} missing or empty"
    return out


def number(pattern: str, text: str) -> float:
    match = re.search(pattern, text)
    assert match, f"{pattern!r} not in the output:\n{text}"
    return float(match.group(1))


def test_newton_converges(tmp_path, monkeypatch, capsys):
    out = run_example("newton", tmp_path, monkeypatch, capsys)
    assert number(r"1-D (\S+) after", out) < 1e-10
    assert number(r"Rosenbrock n=\d+ (\S+) after", out) < 1e-10
    assert number(r"while_loop (\S+)$", out.strip().splitlines()[-2]) < 1e-10
    assert number(r"difference (\S+)\n", out) < 1e-12          # jvp through the loop = 1 / f'(root)


def test_forward_vs_reverse_jacobians_equal_a(tmp_path, monkeypatch, capsys):
    out = run_example("forward_vs_reverse", tmp_path, monkeypatch, capsys)
    assert "both Jacobians equal A: True" in out


def test_vanishing_gradients_sigmoid_shrinks(tmp_path, monkeypatch, capsys):
    out = run_example("vanishing_gradients", tmp_path, monkeypatch, capsys)
    sigmoid = number(r"sigmoid: the input layer's gradient is (\S+) times", out)
    relu = number(r"ReLU: the input layer's gradient is (\S+) times", out)
    assert sigmoid < 0.05 < relu


def test_activation_derivatives_match_central_differences(tmp_path, monkeypatch, capsys):
    out = run_example("activations", tmp_path, monkeypatch, capsys)
    assert number(r"grid: max derivative error (\S+)", out) < 1e-8
    assert "DISAGREES" not in out
