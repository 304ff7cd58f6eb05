"""The model example scripts (Lagrange/KKT Newton, ADVI, low-rank completion, the
least-squares solve layer, per-example gradients with vmap, an ODE fitted through a
scan, the implicit derivative of a Newton root) run at their --small size, write their
figure, and print what they claim."""
import re
import runpy
import sys
from pathlib import Path

import pytest

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


def test_lagrange_newton_converges_to_the_constrained_minimum(tmp_path, capsys):
    out = run_example("lagrange", tmp_path, capsys)
    (residual,) = number(r"final residual \|grad L\| = (\S+)", out)
    assert residual < 1e-10
    newton, quartic = number(r"\|Newton - quartic\| = (\S+) \(in x, y, lam\), \|SLSQP - quartic\| = (\S+) ", out)
    assert newton < 1e-10 and quartic < 1e-6
    assert "a constrained minimum" in out


def test_advi_elbo_and_posterior(tmp_path, capsys):
    out = run_example("advi", tmp_path, capsys)
    elbo, log_evidence = number(r"20000 samples: (\S+); the Laplace approximation of log p\(y\) is (\S+) ", out)
    assert abs(elbo - log_evidence) < 2.0         # a tight bound: the posterior is near Gaussian
    for name in ("w_1", "w_2", "bias"):           # VI means near the MAP, within a posterior std
        true, mean, std, w_map, lap_std = number(rf"  {name}\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)", out)
        assert abs(mean - w_map) < std and 0 < std <= lap_std * 1.05


def test_low_rank_completion_reaches_the_svt_minimizer(tmp_path, capsys):
    out = run_example("low_rank", tmp_path, capsys)
    (_, err) = number(r"  final\s+(\S+)\s+(\S+)", out)
    obj_ref, err_ref, gap = number(r"objective (\S+), rel\. error (\S+); \|X - X\*\|_F / \|X\*\|_F = (\S+)", out)
    assert err < 0.1 and err < 1.5 * err_ref and gap < 0.05


def test_least_squares_layer_learns_the_closed_form(tmp_path, capsys):
    out = run_example("least_squares", tmp_path, capsys)
    assert "jg.check_grads (central differences, fwd and rev): ok" in out
    first, last, best = number(r"loss (\S+) -> (\S+) \(closed-form minimum (\S+)\)", out)
    assert last < 1e-3 * first and last == pytest.approx(best, rel=1e-6)
    (dist,) = number(r"\|A_learned - A\*\|_F = (\S+);", out)
    assert dist < 1e-5


def test_per_example_gradients_equal_the_loop(tmp_path, capsys):
    out = run_example("per_example_gradients", tmp_path, capsys)
    assert "they equal the loop's: True; they average to the batch gradient: True" in out


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


def test_implicit_newton_gradient_matches_differences_and_unrolling(tmp_path, capsys):
    out = run_example("implicit_newton", tmp_path, capsys)
    fd, unrolled = number(r"finite differences: relative error (\S+); vs unrolled: (\S+)", out)
    assert fd < 1e-6 and unrolled < 1e-9
    first, last = number(r"loss (\S+) -> (\S+) in", out)
    assert last < 0.01 * first
