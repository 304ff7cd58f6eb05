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


def save_figure(fig, out: Path, name: str) -> Path:
    """Write ``fig`` to ``out/name`` and close it; prints where it went."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / name
    fig.savefig(path, dpi=120, bbox_inches="tight")
    pyplot().close(fig)
    print(f"wrote {path}")
    return path
