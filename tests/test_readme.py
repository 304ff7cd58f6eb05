"""The README's set-up commands stay true: CI runs the same test command."""
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ci_runs_the_readme_test_command():
    readme, ci = (ROOT / "README.md").read_text(), (ROOT / ".ci" / "run").read_text()
    command = next(line for line in readme.splitlines() if "pytest" in line and "pip install" in line)
    assert command in ci.splitlines()


def test_the_readme_main_job_exists():
    readme = (ROOT / "README.md").read_text()
    line = next(line for line in readme.splitlines() if "examples/" in line and "pip install" in line)
    script = line.split("python ")[-1].strip()
    assert (ROOT / script).is_file()
