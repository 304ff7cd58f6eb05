"""The example scripts run, and agree with what they print about themselves."""
import runpy
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_worked_examples_all_agree(capsys):
    script = runpy.run_path(str(EXAMPLES / "worked_examples.py"))
    assert script["main"]() == 0
    assert "all numbers agree" in capsys.readouterr().out
