"""What the example scripts share: their command line and headless plotting.

Every script takes ``--small`` (a quick run at a small size: the test suite
uses it, as does ``JITGRAD_EXAMPLES_SMALL=1``) and ``--out DIR`` (where its
PNG goes, ``examples/out`` by default).
"""
from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

try:
    import jitgrad  # noqa: F401
except ImportError:             # a source checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

OUT = Path(__file__).resolve().parent / "out"


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--small", action="store_true",
                   default=os.environ.get("JITGRAD_EXAMPLES_SMALL") == "1",
                   help="run a small, quick version (as the test suite does)")
    p.add_argument("--out", type=Path, default=OUT, help="directory for the figures")
    return p


def training_parser(description: str, params_file: str, figure_file: str) -> argparse.ArgumentParser:
    """The parser of a training script, which writes its params beside its figure."""
    p = parser(description)
    p.epilog = (f"Writes {params_file} (the trained params) and {figure_file} (loss and "
                f"accuracy per epoch) into --out, and prints one summary line.")
    for action in p._actions:
        if "--out" in action.option_strings:
            action.help = f"directory for {params_file} and {figure_file}"
    return p


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def training_figure(result: dict, target: float, out: Path, name: str, title: str) -> Path:
    """The training scripts' figure: the loss per epoch (training, and held out when
    ``result`` has ``test_losses``) and the held-out accuracy against ``target``; ``result``
    holds ``losses``, ``accuracies``, ``accuracy`` and ``n_test``.  Returns the PNG's path."""
    import numpy as np
    from matplotlib.ticker import MaxNLocator

    epochs = np.arange(1, len(result["losses"]) + 1)
    fig, (left, right) = pyplot().subplots(1, 2, figsize=(10, 4))
    left.plot(epochs, result["losses"], marker=".", color="C0", label="training (mean over the epoch)")
    if "test_losses" in result:
        left.plot(epochs, result["test_losses"], marker=".", color="C2", label="held out (end of epoch)")
    left.set_yscale("log")
    left.set(xlabel="epoch", ylabel="cross-entropy (log scale)", title="loss")
    left.legend(loc="upper right")
    accuracies = 100 * np.asarray(result["accuracies"])
    right.plot(epochs, accuracies, marker=".", color="C1", label="held-out accuracy")
    right.axhline(100 * target, color="k", linestyle="--", linewidth=1, label=f"target {target:.1%}")
    right.set_ylim(min(90.0, float(np.min(accuracies)) - 1), 100.5)
    right.set(xlabel="epoch", ylabel="accuracy (%)", title=f"held-out accuracy ({result['n_test']} images)")
    right.legend(loc="lower right")
    for ax in (left, right):
        ax.grid(True, alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(f"{title}: final held-out accuracy {result['accuracy']:.2%}")
    fig.tight_layout()
    return save_figure(fig, out, name)


def save_figure(fig, out: Path, name: str) -> Path:
    """Write ``fig`` to ``out/name`` and close it; prints where it went."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / name
    fig.savefig(path, dpi=120, bbox_inches="tight")
    pyplot().close(fig)
    print(f"wrote {path}")
    return path
