"""The loop example script (fitting an ODE through a jg.scan of RK4 steps) runs at its --small
size, writes its figure, and prints what it claims."""
import re
import runpy
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name, tmp_path, capsys):
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))       # the scripts `import _common`
    script = runpy.run_path(str(EXAMPLES / f"{name}.py"), run_name="example")
    assert script["main"](["--small", "--out", str(tmp_path)]) == 0
    png = tmp_path / f"{name}.png"
    assert png.exists() and png.stat().st_size > 0
    return capsys.readouterr().out


def number(pattern, text):
    match = re.search(pattern, text)
    assert match, f"{pattern!r} not in the output:\n{text}"
    return [float(g) for g in match.groups()]


def test_ode_fit_through_scan_recovers_the_parameters(tmp_path, capsys):
    out = run_example("ode_scan", tmp_path, capsys)
    for name, true_value in (("a", 1.0), ("b", 0.5), ("c", 0.5), ("d", 1.0)):
        true, initial, fitted, _ = number(rf"\n  {name}\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\n", out)
        assert true == true_value and abs(initial - true) > 0.1 * true   # it starts off
        assert abs(fitted - true) < 0.03 * true
    max_error, final_loss, noise = number(
        r"max relative parameter error (\S+); final loss (\S+) \(the noise alone gives (\S+)\)", out)
    assert max_error < 0.03 and final_loss <= 1.05 * noise       # the fit is down to the noise
    (fd_error,) = number(r"finite-difference check: relative error (\S+)", out)
    assert fd_error < 1e-6
    sizes = re.findall(r"N = +(\d+): (\d+) equations, (\d+) lines of generated source", out)
    assert [n for n, _, _ in sizes] == ["20", "2000"] and sizes[0][1:] == sizes[1][1:]
    assert "program size independent of the number of steps: True" in out
