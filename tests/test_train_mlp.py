"""examples/train_mlp.py, the main job: it runs, writes what it says, and reaches its target."""
from __future__ import annotations

import os
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import jitgrad as jg

SCRIPT = Path(__file__).resolve().parent.parent / "examples" / "train_mlp.py"
FLAGS = ["--epochs", "--batch-size", "--lr", "--optimizer", "--target", "--seed", "--hidden",
         "--small", "--out", "--distributed"]


@pytest.fixture(scope="module")
def script():
    """The script's functions (its module globals), without running main."""
    return runpy.run_path(str(SCRIPT))


def test_small_run_writes_params_and_figure_that_load_back(script, tmp_path, capsys):
    # On the NumPy reference target: no compile time here (the next test pays it for the
    # cpu target); the script and its checkpoint do not depend on the target.
    argv = ["--small", "--target", "numpy", "--out", str(tmp_path)]
    assert script["main"](argv) == 0
    out = capsys.readouterr().out
    params_path, figure_path = tmp_path / "mlp_params.npz", tmp_path / "train_mlp.png"
    assert params_path.stat().st_size > 0
    assert figure_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = out.strip().splitlines()[-1]
    assert "held-out accuracy" in summary and str(params_path) in summary and str(figure_path) in summary

    # A fresh model of the same shape takes the checkpoint (names, shapes and dtypes must all
    # match, optimizer state included) and then classifies as the trained one did.
    args = script["parse_args"](argv)
    step, evaluate, params = script["build"](args)
    before = [p.value for p in params]
    jg.load_params(params_path, step)
    assert not all(np.array_equal(b, p.value) for b, p in zip(before, params))
    with np.load(params_path) as saved:
        assert {p.name for p in step.params} == set(saved.files)
        for p in params:
            np.testing.assert_array_equal(p.value, saved[p.name])
    _, _, X_test, y_test = script["load_data"](args.seed)
    acc = float(evaluate(X_test, y_test))
    assert f"held-out accuracy {acc:.2%}" in summary


def test_default_run_reaches_97_percent_held_out(script, tmp_path):
    result = script["train"](script["parse_args"](["--out", str(tmp_path)]))
    assert result["accuracy"] >= 0.97, result["accuracies"]
    assert result["reached"] and result["epochs"] == len(result["losses"]) == len(result["accuracies"])
    assert result["losses"][-1] < 0.2 * result["losses"][0]
    assert result["params_path"].exists() and result["figure_path"].exists()


def test_the_digits_are_scikit_learns_split_by_digit_and_seed(script):
    from sklearn.datasets import load_digits
    digits = load_digits()
    table = script["digits_table"]()
    np.testing.assert_array_equal(table[:, :-1], digits.data)
    np.testing.assert_array_equal(table[:, -1], digits.target)

    X_train, y_train, X_test, y_test = script["load_data"](3)
    assert X_train.dtype == X_test.dtype == np.float32 and y_train.dtype == y_test.dtype == np.int64
    assert len(y_train) + len(y_test) == len(digits.target)
    rows = {row.tobytes() for row in (digits.data / 16.0).astype(np.float32)}
    assert {row.tobytes() for row in np.concatenate([X_train, X_test])} == rows   # every image once...
    assert not {row.tobytes() for row in X_train} & {row.tobytes() for row in X_test}  # ...on one side
    for digit in range(10):                     # stratified: a fifth of each digit held out
        assert len(y_test[y_test == digit]) == round(0.2 * np.count_nonzero(digits.target == digit))
    again, other = script["load_data"](3), script["load_data"](4)
    np.testing.assert_array_equal(again[3], y_test)
    assert not np.array_equal(other[2], X_test)


def test_help_explains_every_flag(script, capsys):
    with pytest.raises(SystemExit) as exit_:
        script["main"](["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for flag in FLAGS:
        assert flag in text, flag


@pytest.mark.parametrize("argv", [["--epochs", "0"], ["--optimizer", "rmsprop"], ["--lr", "-1"],
                                  ["--hidden"], ["--target", "gpu"], ["--seed", "-1"]])
def test_bad_flags_are_rejected_by_name(script, argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        script["parse_args"](argv)
    assert exit_.value.code == 2
    assert argv[0] in capsys.readouterr().err


def _mpi_missing():
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return "needs mpi4py (pip install mpi4py mpich)"
    return None if shutil.which("mpiexec") else "needs mpiexec on the PATH (pip install mpich)"


@pytest.mark.skipif(_mpi_missing() is not None, reason=str(_mpi_missing()))
def test_distributed_run_on_two_ranks_matches_one_process(script, tmp_path, capsys):
    # One process first (in this process; its compiled step is usually in the disk cache).
    flags = ["--small", "--batch-size", "64"]       # 1437 images: the last batch splits 15/14
    assert script["main"]([*flags, "--out", str(tmp_path / "one")]) == 0
    alone = capsys.readouterr().out.strip().splitlines()[-1]

    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(SCRIPT.parent.parent), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run(["mpiexec", "-n", "2", sys.executable, str(SCRIPT), *flags, "--distributed",
                           "--out", str(tmp_path / "two")],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    # rank 0 alone prints (one summary, one progress bar) and writes the files
    assert done.stdout.count("held-out accuracy") == 1 and done.stdout.count("wrote ") == 1, done.stdout
    two = tmp_path / "two"
    assert sorted(f.name for f in two.iterdir()) == ["mlp_params.npz", "train_mlp.png"]
    assert (two / "train_mlp.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = done.stdout.strip().splitlines()[-1]
    accuracy = alone.split("held-out accuracy ")[1].split()[0]
    assert summary.startswith(f"held-out accuracy {accuracy} "), (alone, summary)

    # Same global batches, gradients averaged over the ranks: the one-process params (and
    # Adam's state) up to float32 rounding, accumulated over 46 steps.
    with np.load(tmp_path / "one" / "mlp_params.npz") as a, np.load(two / "mlp_params.npz") as b:
        assert sorted(a.files) == sorted(b.files)
        for name in a.files:
            scale = max(float(np.max(np.abs(a[name]))), 1e-30)
            assert np.max(np.abs(a[name] - b[name])) <= 1e-5 * scale, name
