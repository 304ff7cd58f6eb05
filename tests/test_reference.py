"""docs/reference.md is the reference jitgrad.reference writes from the docstrings, and every
public name has a docstring: so the reference covers the whole API and cannot drift."""
from __future__ import annotations

from pathlib import Path

from jitgrad import reference

REFERENCE = Path(__file__).resolve().parent.parent / "docs" / "reference.md"


def test_every_public_name_has_a_docstring():
    missing = [name for name, obj in reference.public_names() if not (obj.__doc__ or "").strip()]
    assert not missing, f"public names without a docstring: {missing}"


def test_the_committed_reference_is_up_to_date():
    assert REFERENCE.read_text(encoding="utf-8") == reference.render(), (
        "docs/reference.md is stale: run `python -m jitgrad.reference docs/reference.md`")


def test_every_public_name_has_an_entry():
    text = REFERENCE.read_text(encoding="utf-8")
    absent = [name for name, _ in reference.public_names() if f"{name}(" not in text]
    assert not absent, f"no entry in docs/reference.md: {absent}"
