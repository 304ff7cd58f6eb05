"""What the example scripts share: their command line and headless plotting.

Every script takes ``--small`` (a quick run at a small size: the test suite
uses it, as does ``JITGRAD_EXAMPLES_SMALL=1``) and ``--out DIR`` (where its
PNG goes, ``examples/out`` by default).
"""
from __future__ import annotations

import argparse
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
