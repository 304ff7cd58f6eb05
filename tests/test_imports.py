"""The import graph of jitgrad has no cycle, counting imports inside functions too.

Run alone with ``python -m pytest -q tests/test_imports.py``.
"""
from __future__ import annotations

import ast
import pathlib

import jitgrad

PACKAGE = pathlib.Path(jitgrad.__file__).parent


def module_name(path: pathlib.Path, package: pathlib.Path) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules(package: pathlib.Path) -> dict[str, pathlib.Path]:
    return {module_name(p, package): p for p in sorted(package.rglob("*.py"))}


def imported(node: ast.ImportFrom | ast.Import, here: str, is_package: bool, modules) -> list[str]:
    """The modules one import statement reads: in ``from pkg import name`` that is ``pkg.name``
    when it is a module, else ``pkg`` itself (``from jitgrad import __version__`` reads
    ``jitgrad/__init__.py``).  The parent packages Python imports first are left out: every
    module would otherwise import ``jitgrad/__init__.py``, which imports them all."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        parent = here.split(".")
        parent = parent[:len(parent) - node.level + (1 if is_package else 0)]
        base = ".".join(parent + ([node.module] if node.module else []))
    names = [f"{base}.{alias.name}" for alias in node.names]
    return [n if n in modules else base for n in names]


def import_graph(package: pathlib.Path = PACKAGE) -> dict[str, set[str]]:
    """Module -> the package's modules it imports anywhere in its body, functions included."""
    modules = package_modules(package)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        is_package = path.name == "__init__.py"
        graph[name] = {target for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                       for target in imported(node, name, is_package, modules)
                       if target in modules and target != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path ``[a, b, ..., a]``, or None (iterative DFS, three colours)."""
    state: dict[str, int] = {}                    # 1: on the current path, 2: done
    for root in sorted(graph):
        if root in state:
            continue
        path, stack = [root], [iter(sorted(graph[root]))]
        state[root] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph[nxt])))
    return None


def _package(root: pathlib.Path, files: dict[str, str]) -> pathlib.Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root / "pkg"


def test_the_checker_sees_imports_inside_functions(tmp_path):
    package = _package(tmp_path, {
        "pkg/__init__.py": "", "pkg/a.py": "from . import b\n",
        "pkg/b.py": "def f():\n    from .sub import c\n",
        "pkg/sub/__init__.py": "", "pkg/sub/c.py": "def g():\n    from ..a import x\n"})
    assert find_cycle(import_graph(package)) == ["pkg.a", "pkg.b", "pkg.sub.c", "pkg.a"]


def test_the_checker_sees_names_read_from_a_package(tmp_path):
    package = _package(tmp_path, {
        "pkg/__init__.py": "from .a import f\nVERSION = 1\n",
        "pkg/a.py": "def f():\n    from pkg import VERSION\n"})
    assert find_cycle(import_graph(package)) == ["pkg", "pkg.a", "pkg"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


# The backends, by target; what they share (the generated-module cache, the kernel-body
# writer, the linalg call contract, the Program protocol, the scalar helpers) is neutral.
TARGET_OF = {
    "numpy_ref": "numpy",
    "numba_cpu": "cpu", "lapack": "cpu", "probes": "cpu", "philox": "cpu", "sorting": "cpu",
    "vector_math": "cpu", "vector_abi": "cpu", "numpy_inline": "cpu",
    "cuda": "cuda", "cuda_kernels": "cuda", "cuda_library": "cuda", "cuda_linalg": "cuda",
    "cuda_runtime": "cuda", "cuda_scalars": "cuda", "cuda_debug": "cuda",
}
NEUTRAL = {"__init__", "cache", "numba_cache", "kernel_body", "linalg_calls", "program", "program_split", "scalars"}


def test_no_backend_imports_another():
    backends = {name: deps for name, deps in import_graph().items() if name.startswith("jitgrad.backends.")}
    short = {name: name.rsplit(".", 1)[1] for name in backends}
    unknown = set(short.values()) - set(TARGET_OF) - NEUTRAL
    assert not unknown, f"say which target {sorted(unknown)} belong to (or that they are neutral)"
    crossing = [(short[a], short[b]) for a, deps in backends.items() for b in deps if b in short
                and TARGET_OF.get(short[b]) not in (None, TARGET_OF.get(short[a]))]
    assert not crossing, f"backends import each other: {crossing}"
