"""examples/train_cnn.py: it runs, writes what it says, counts correctly in the graph, reaches its
target, and runs on the cuda target (in the simulator) as on the reference."""
from __future__ import annotations

import os
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from numba import config

import jitgrad as jg

SCRIPT = Path(__file__).resolve().parent.parent / "examples" / "train_cnn.py"
FLAGS = ["--epochs", "--batch-size", "--lr", "--channels", "--shift", "--target", "--seed", "--limit",
         "--small", "--out"]
PNG = b"\x89PNG\r\n\x1a\n"
# A handful of images through a narrow model, one step of 4: what the CUDA simulator can run quickly.
TINY = ["--epochs", "1", "--limit", "4", "--batch-size", "4", "--channels", "4", "8"]


@pytest.fixture(scope="module")
def script():
    """The script's functions (its module globals), without running main."""
    return runpy.run_path(str(SCRIPT))


def summary_of(out: str) -> str:
    return out.strip().splitlines()[-1]


def test_small_run_writes_params_and_figure_that_load_back(script, tmp_path, capsys):
    # On the NumPy reference target: no compile time here (the next test pays it for the
    # cpu target); the script and its checkpoint do not depend on the target.
    argv = ["--small", "--target", "numpy", "--out", str(tmp_path)]
    assert script["main"](argv) == 0
    summary = summary_of(capsys.readouterr().out)
    params_path, figure_path = tmp_path / "cnn_params.npz", tmp_path / "train_cnn.png"
    assert params_path.stat().st_size > 0
    assert figure_path.read_bytes()[:8] == PNG
    assert summary.startswith("held-out accuracy ") and "98.5% target" in summary
    assert "after 2 epochs" in summary and str(params_path) in summary and str(figure_path) in summary

    # A fresh model of the same shape takes the checkpoint (names, shapes and dtypes must all
    # match: optimizer state and batch-norm running averages included) and then classifies as
    # the trained one did.
    args = script["parse_args"](argv)
    step, evaluate, model = script["build"](args)
    before = {name: p.value for name, p in model.items()}
    jg.load_params(params_path, step)
    with np.load(params_path) as saved:
        assert {p.name for p in step.params} == set(saved.files)
        assert {"bn1_mean", "bn1_var", "bn2_mean", "bn2_var", "conv1__adam_m"} <= set(saved.files)
        for name, p in model.items():
            np.testing.assert_array_equal(p.value, saved[name])
            assert not np.array_equal(p.value, before[name]), name     # all trained or updated
    _, _, X_test, y_test = script["load_data"](args.seed)
    correct, loss = evaluate(X_test, y_test)
    assert f"held-out accuracy {int(correct) / len(y_test):.2%}" in summary
    assert np.isfinite(loss)

    # The count in the graph is the host's argmax count, on the running averages (training=False).
    x = jg.input("x", (None, 1, 8, 8), "float32")
    logits = jg.compile([x], script["forward"](x, model, training=False)[0], target="numpy")(X_test)
    assert int(correct) == int(np.sum(np.argmax(logits, axis=1) == y_test))


def test_count_correct_counts_rows_whose_largest_logit_is_the_label(script):
    logits = jg.input("logits", (None, 10), "float32")
    labels = jg.input("labels", (None,), "int64")
    count = jg.compile([logits, labels], script["count_correct"](logits, labels), target="numpy")
    rng = np.random.default_rng(0)
    values = rng.normal(size=(50, 10)).astype(np.float32)
    truth = rng.integers(0, 10, 50)
    assert int(count(values, truth)) == int(np.sum(np.argmax(values, axis=1) == truth))
    assert int(count(values, np.argmax(values, axis=1))) == 50


def test_shifts_move_each_image_by_at_most_the_shift_with_zeros_in(script):
    rng = np.random.default_rng(0)
    images = rng.random((20, 2, 8, 8)).astype(np.float32) + 1.0       # no zero pixel
    assert script["shift_images"](images, rng, 0) is images
    shifted = script["shift_images"](images, rng, 1)
    assert shifted.shape == images.shape and shifted.dtype == images.dtype
    moves = set()
    for image, moved in zip(images, shifted):
        found = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)
                 if np.array_equal(moved, np.roll(image, (dy, dx), axis=(1, 2)) * _kept(dy, dx))]
        assert len(found) == 1
        moves.add(found[0])
    assert len(moves) > 3           # each image draws its own shift


def _kept(dy, dx):
    """1 where np.roll by (dy, dx) brings a pixel from inside the image, 0 where it wraps."""
    mask = np.ones((8, 8), np.float32)
    if dy:
        mask[0 if dy > 0 else -1, :] = 0
    if dx:
        mask[:, 0 if dx > 0 else -1] = 0
    return mask


def test_default_run_reaches_98_5_percent_held_out(script, tmp_path):
    result = script["train"](script["parse_args"](["--out", str(tmp_path)]))
    assert result["accuracy"] >= 0.985, result["accuracies"]
    assert result["reached"] and result["epochs"] == 40
    assert len(result["losses"]) == len(result["test_losses"]) == len(result["accuracies"]) == 40
    assert result["losses"][-1] < 0.2 * result["losses"][0]
    assert result["params_path"].exists() and result["figure_path"].exists()


def test_help_explains_every_flag(script, capsys):
    with pytest.raises(SystemExit) as exit_:
        script["main"](["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for flag in FLAGS:
        assert flag in text, flag


@pytest.mark.parametrize("argv", [["--epochs", "0"], ["--lr", "-1"], ["--channels", "16"], ["--shift", "-1"],
                                  ["--target", "gpu"], ["--seed", "-1"], ["--limit", "0"]])
def test_bad_flags_are_rejected_by_name(script, argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        script["parse_args"](argv)
    assert exit_.value.code == 2
    assert argv[0] in capsys.readouterr().err


@pytest.mark.skipif(config.ENABLE_CUDASIM, reason="already inside the simulator")
def test_cuda_target_in_the_simulator_trains_as_the_reference(script, tmp_path, capsys):
    """NUMBA_ENABLE_CUDASIM must be set before numba is imported: a process of its own."""
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", PYTHONPATH=os.pathsep.join(
        [str(SCRIPT.parent.parent), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, str(SCRIPT), *TINY, "--target", "cuda", "--out", str(tmp_path / "cuda")],
                          capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "100%" in done.stderr                    # the progress bar, on stderr
    cuda = tmp_path / "cuda"
    assert sorted(f.name for f in cuda.iterdir()) == ["cnn_params.npz", "train_cnn.png"]
    assert (cuda / "train_cnn.png").read_bytes()[:8] == PNG

    assert script["main"]([*TINY, "--target", "numpy", "--out", str(tmp_path / "numpy")]) == 0
    reference = summary_of(capsys.readouterr().out)
    accuracy = reference.split("held-out accuracy ")[1].split()[0]
    assert summary_of(done.stdout).startswith(f"held-out accuracy {accuracy} "), (reference, done.stdout)
    with np.load(tmp_path / "numpy" / "cnn_params.npz") as a, np.load(cuda / "cnn_params.npz") as b:
        assert sorted(a.files) == sorted(b.files)
        for name in a.files:
            scale = max(float(np.max(np.abs(a[name]))), 1e-30)
            assert np.max(np.abs(a[name] - b[name])) <= 1e-4 * scale, name
