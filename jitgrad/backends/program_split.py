"""Long CPU programs cut into segment functions of bounded length, repeated ones compiled once.

LLVM's scalar replacement of aggregates and its memcpy optimisation take time superlinear in
the length of one function, and Numba gives every statement of the glue program array structs
of its own: a 64-layer chain with its gradient (3,800 lines) took 32 s to compile where 16
layers took 4.6 s. Cut into functions of bounded length, each optimised on its own, a program
compiles in time proportional to its length; short programs stay whole, so the call overhead
of small graphs does not change.

A segment takes as parameters the names it reads that earlier code defined, and returns, as a
tuple, the names it defines that later code reads. Its source names them by position
(``v_p0`` for the first parameter, ``v_t0`` for the first name it defines, ``kernel_0`` for
the first kernel it calls), so the segments of a repeated structure (the layers of a deep
chain, the passes of a jacobian) are the same source, the same module and one compilation.
For that the cuts fall where the content says, not every so many lines: once a segment has
``MIN_LINES``, it ends before the next block (the lines of one step) of the same shape as its
first, so that it spans whole periods of a repeated structure and the next one starts in
the same place of the period.
"""
from __future__ import annotations

import ast
import builtins
import re
import textwrap
import zlib
from dataclasses import dataclass

MIN_LINES = 60          # a segment's least length: below it, calls cost more than they save
_BUILTINS = set(dir(builtins))
MAX_LINES = 240         # ... and its greatest, where no block's content asks for a cut


def _names(lines: list[str]) -> tuple[list[str], list[str]]:
    """The names ``lines`` read (builtins aside) and the names they assign, each in a fixed
    order (ast.walk's) that is the same for the same code."""
    tree = ast.parse(textwrap.dedent("\n".join(lines)) or "pass")
    loads: dict[str, None] = {}
    stores: dict[str, None] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (loads if isinstance(node.ctx, ast.Load) else stores).setdefault(node.id)
    return [name for name in loads if name not in _BUILTINS], list(stores)


def names_read(lines: list[str]) -> list[str]:
    """The names ``lines`` read, in order of first reading."""
    return _names(lines)[0]


_IDENTIFIER = re.compile(r"(?<![.\w])([A-Za-z_]\w*)")
_PROGRAM_NAME = re.compile(r"(?<![.\w])((?:v|s)_\w+|ws\d+)(?!\w)")     # the program's own variables


def _rename(lines: list[str], renames: dict[str, str]) -> list[str]:
    """``lines`` with the names in ``renames`` replaced: as identifiers in code (not attributes),
    and, in comments, the graph names (``v_a`` appears as ``a`` there)."""
    graph = {old[2:]: new[2:] for old, new in renames.items() if old.startswith("v_")}
    out = []
    for line in lines:
        if line.lstrip().startswith("#"):
            out.append(_IDENTIFIER.sub(lambda m: graph.get(m.group(1), m.group(1)), line))
        else:
            out.append(_IDENTIFIER.sub(lambda m: renames.get(m.group(1), m.group(1)), line))
    return out


@dataclass
class Segment:
    """One cut of the program body: its lines as the program names things, what it takes and
    what it returns."""
    lines: list[str]
    params: list[str]
    results: list[str]

    def call(self, alias: str) -> str:
        """The program's line that runs this segment under its imported name ``alias``."""
        invocation = f"{alias}({', '.join(self.params)})"
        if not self.results:
            return invocation
        return f"({''.join(r + ', ' for r in self.results)}) = {invocation}"

    loads: list[str]
    stores: list[str]

    def function(self, decorator: str, imports: dict[str, str]) -> tuple[str, str]:
        """The segment as a function named ``segment`` in position-named terms, and the import
        lines it needs: (imports, function source). ``imports`` maps each module-level name
        to the statement that binds it."""
        loads, stores = self.loads, self.stores
        renames = {name: f"v_p{k}" for k, name in enumerate(self.params)}
        local = [name for name in stores if name not in renames]
        renames.update({name: f"v_t{k}" for k, name in enumerate(local)})
        needed = []
        kernels = [name for name in loads if name in imports and name.startswith("kernel_")]
        for k, name in enumerate(kernels):
            renames[name] = f"kernel_{k}"
            needed.append(re.sub(rf"\bas {re.escape(name)}$", f"as kernel_{k}", imports[name]))
        needed += [imports[name] for name in loads if name in imports and name not in kernels]
        body = _rename(self.lines, renames)
        if self.results:
            body.append(f"return ({''.join(renames[r] + ', ' for r in self.results)})")
        params = ", ".join(renames[p] for p in self.params)
        source = "\n".join([decorator, f"def segment({params}):"] + ["    " + line for line in body]) + "\n"
        return "\n".join(dict.fromkeys(needed)), source


def _shape_hash(block: list[str]) -> int:
    """A hash of a block's code with the program's variables by position: equal for the same
    step in every repetition of a structure."""
    positions: dict[str, str] = {}
    code = "\n".join(line for line in block if not line.lstrip().startswith("#"))
    code = _PROGRAM_NAME.sub(lambda m: positions.setdefault(m.group(1), f"n{len(positions)}"), code)
    return zlib.crc32(code.encode())


def split(blocks: list[list[str]], tail: list[str], global_names: set[str]) -> list[Segment] | None:
    """Cut the program body ``blocks`` (one list of lines per step) into segments, or None when
    it is short enough to stay one function. ``tail`` is what follows the body (the return
    statement); ``global_names`` are the module's names (imports), never parameters."""
    if sum(map(len, blocks)) <= 2 * MAX_LINES:
        return None
    groups: list[list[str]] = []
    first = None                      # the shape of the current segment's first block
    for block in blocks:
        shape = _shape_hash(block)
        if not groups or len(groups[-1]) >= MAX_LINES or (len(groups[-1]) >= MIN_LINES and shape == first):
            groups.append([])
            first = shape
        groups[-1].extend(block)
    segments = []
    for group in groups:
        loads, stores = _names(group)
        params = [name for name in loads if name not in stores and name not in global_names]
        segments.append(Segment(group, params, list(stores), loads, stores))
    later = set(_names(tail)[0])      # what the tail and the segments after each one read
    for segment in reversed(segments):
        segment.results = [name for name in segment.results if name in later]
        later |= set(segment.params)
    return segments


def imported_names(statements: list[str]) -> dict[str, str]:
    """Each name that the import ``statements`` bind, with the statement that binds it."""
    bound = {}
    for statement in statements:
        for node in ast.parse(statement).body:
            for alias in getattr(node, "names", ()):
                bound[(alias.asname or alias.name).split(".")[0]] = statement
    return bound
