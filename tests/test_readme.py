"""The README's set-up commands stay true: CI runs exactly them, read from the README."""
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def setup_commands() -> list[str]:
    """The commands of the README's first ```bash block: the set-up a newcomer runs."""
    block = re.search(r"^```bash\n(.*?)^```", (ROOT / "README.md").read_text(), re.S | re.M)
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_the_readme_sets_up_then_runs_the_main_job_then_the_tests():
    install_examples, install_dev = setup_commands()
    assert install_examples.startswith('python -m pip install -e ".[examples]" && python examples/')
    assert install_dev == 'python -m pip install -e ".[dev]" && python -m pytest -q'


def test_ci_runs_the_readme_commands_as_written():
    done = subprocess.run(["bash", str(ROOT / ".ci" / "run"), "--print-commands"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == setup_commands()


def test_ci_runs_them_in_a_fresh_virtual_environment_before_installing_anything_else():
    ci = (ROOT / ".ci" / "run").read_text()
    body = ci[ci.index('if [ "${1:-}" = "--print-commands" ]'):]
    venv, readme = body.index("python -m venv"), body.index('eval "${commands[i]}"')
    assert venv < readme
    before = body[:readme]
    assert "pip install" not in before.replace("python -m pip --version", "")
    assert "apt-get" not in before and "asv" not in before
    assert ".ci-venv/" in (ROOT / ".gitignore").read_text().splitlines()


def test_the_readme_main_job_exists():
    line = setup_commands()[0]
    script = line.split("python ")[-1].strip()
    assert (ROOT / script).is_file()
