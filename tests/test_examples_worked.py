"""examples/worked_examples.py runs, and agrees with what it prints about itself (the same
examples as tests/test_course_notes.py, as a script)."""
import runpy
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_worked_examples_all_agree(capsys):
    script = runpy.run_path(str(EXAMPLES / "worked_examples.py"))
    assert script["main"]() == 0
    assert "all numbers agree" in capsys.readouterr().out
