"""The API reference, written from the docstrings so that it cannot drift from the code.

    python -m jitgrad.reference docs/reference.md

lists every public function and class of ``jg`` and of its namespaces
(``jg.nn``, ``jg.linalg``, ...) with its signature and docstring, which states
the derivative convention where one is needed.  ``tests/test_reference.py``
fails when a public name has no docstring or when ``docs/reference.md`` is not
what this module writes.
"""
from __future__ import annotations

import inspect
import sys
from pathlib import Path

NAMESPACES = ("", "nn", "linalg", "random", "optim", "data", "distributed")

HEADER = """\
# jitgrad API reference

Generated from the docstrings by `python -m jitgrad.reference docs/reference.md`; do not edit.
Every function builds graph nodes from Tensors, NumPy arrays or Python numbers; "Derivative"
states the convention where a function is not smooth (see also the README).
"""


def _namespace(name: str):
    import jitgrad
    return jitgrad if not name else getattr(jitgrad, name)


def public_names() -> list[tuple[str, object]]:
    """``(qualified name, object)`` for every public function and class, namespace by namespace."""
    found = []
    for space in NAMESPACES:
        module = _namespace(space)
        prefix = "jg." + (f"{space}." if space else "")
        for name in sorted(dir(module)):
            obj = getattr(module, name)
            if name.startswith("_") or inspect.ismodule(obj) or not callable(obj):
                continue
            if not getattr(obj, "__module__", "").startswith("jitgrad"):
                continue            # re-exported from elsewhere (numpy, typing)
            found.append((prefix + name, obj))
    return found


def _signature(obj) -> str:
    try:
        return str(inspect.signature(obj))
    except (TypeError, ValueError):
        return "(...)"


def entry(name: str, obj) -> str:
    doc = inspect.getdoc(obj) or ""
    kind = "class " if inspect.isclass(obj) else ""
    return f"### `{kind}{name}{_signature(obj)}`\n\n{doc}\n"


def render() -> str:
    sections, current = [HEADER], None
    for name, obj in public_names():
        space = name.rsplit(".", 1)[0]
        if space != current:
            sections.append(f"## `{space}`\n")
            current = space
        sections.append(entry(name, obj))
    return "\n".join(sections)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    Path(argv[0]).parent.mkdir(parents=True, exist_ok=True)
    Path(argv[0]).write_text(render(), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
