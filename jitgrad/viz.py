"""Pictures of graphs: Graphviz DOT source for a graph or a compiled schedule.

``to_dot`` only builds text, so it needs nothing installed; ``render`` pipes
that text through Graphviz's ``dot`` program to write an SVG or PNG file.

>>> import jitgrad as jg
>>> w = jg.input("w", (3,))
>>> print(to_dot(jg.sum(w ** 2)).splitlines()[0])
digraph jitgrad {

Inputs are boxes, params rounded filled boxes, constants notes, ops ellipses;
each output gets a bold outline and an ``output k`` tag.  Node ids are numbered
in graph order, so the same graph always gives the same text.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

import numpy as np

from .compile import Executable
from .graph import Tensor, topological_order
from .ops import leaf
from .primitive import Dim
from .schedule import Schedule, Var

FORMATS = ("svg", "png")

_STYLE = {
    "input": 'shape=box, style=filled, fillcolor="#dbe9f6"',
    "param": 'shape=box, style="rounded,filled", fillcolor="#fff2cc"',
    "const": 'shape=note, fontsize=9, fontcolor="#555555"',
    "op": "shape=ellipse",
}
_HEADER = [
    "digraph jitgrad {",
    "  rankdir=TB;",
    '  node [fontname="Helvetica", fontsize=11];',
    '  edge [color="#555555", arrowsize=0.7, fontname="Helvetica", fontsize=9];',
]


@dataclass(frozen=True)
class _Node:
    kind: str          # "input" | "param" | "const" | "op"
    label: str


@dataclass
class _Picture:
    """Nodes in graph order, edges by node index, and which nodes are outputs."""
    nodes: list
    edges: list            # (src, dst)
    outputs: list          # node index of output k
    updates: list          # (src value node, dst param node)


def to_dot(outputs_or_compiled) -> str:
    """Graphviz DOT source for Tensors (one or a list) or a compiled ``Executable``.

    >>> import jitgrad as jg
    >>> x = jg.input("x", (None, 3))
    >>> "tanh" in to_dot(jg.tanh(x))
    True
    """
    if isinstance(outputs_or_compiled, Executable):
        picture = _from_schedule(outputs_or_compiled.schedule)
    elif isinstance(outputs_or_compiled, Schedule):
        picture = _from_schedule(outputs_or_compiled)
    else:
        picture = _from_tensors(_as_tensors(outputs_or_compiled))
    return _emit(picture)


def render(outputs_or_compiled, path, format: str | None = None):  # noqa: A002  (Graphviz's word)
    """Write a picture of the graph to ``path`` (SVG or PNG, from the suffix unless ``format``).

    Needs the Graphviz ``dot`` program.  Returns ``path``.

    >>> import jitgrad as jg
    >>> render(jg.exp(jg.input("x", (2,))), "graph.svg")   # doctest: +SKIP
    'graph.svg'
    """
    fmt = _format_of(path, format)
    dot = shutil.which("dot")
    if dot is None:
        raise RuntimeError(
            "jitgrad.render needs Graphviz's `dot` program, which is not on PATH. Install Graphviz "
            "(Debian/Ubuntu: `apt-get install graphviz`; macOS: `brew install graphviz`; conda: "
            "`conda install graphviz`), or call jitgrad.to_dot(...) and render the text elsewhere.")
    source = to_dot(outputs_or_compiled).encode("utf-8")
    done = subprocess.run([dot, f"-T{fmt}", "-o", os.fspath(path)], input=source,
                          capture_output=True, check=False)
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip()
        raise RuntimeError(f"render: Graphviz `dot` failed (exit code {done.returncode}): {message}")
    return path


def _format_of(path, format: str | None) -> str:  # noqa: A002
    fmt = format if format is not None else os.path.splitext(os.fspath(path))[1].lstrip(".")
    fmt = fmt.lower()
    if fmt not in FORMATS:
        got = f"format {format!r}" if format is not None else f"the suffix of {os.fspath(path)!r}"
        raise ValueError(f"render: can write {' or '.join(FORMATS)}, got {got}")
    return fmt


# -- collecting nodes ---------------------------------------------------------

def _as_tensors(outputs) -> list[Tensor]:
    if isinstance(outputs, Tensor):
        return [outputs]
    if isinstance(outputs, (list, tuple)) and all(isinstance(t, Tensor) for t in outputs):
        return list(outputs)
    raise TypeError("to_dot: expected a Tensor, a list or tuple of Tensors, or a compiled "
                    f"Executable, got {type(outputs).__name__}")


def _from_tensors(outputs: list[Tensor]) -> _Picture:
    order = topological_order(outputs)
    index = {id(t): k for k, t in enumerate(order)}
    nodes = [_tensor_node(t) for t in order]
    edges = [(index[id(i)], k) for k, t in enumerate(order) for i in t.inputs]
    return _Picture(nodes, edges, [index[id(o)] for o in outputs], [])


def _tensor_node(t: Tensor) -> _Node:
    kind = _LEAF_KINDS.get(t.op, "op")
    typ = _type_str(t.dims, t.dtype)
    if kind == "const":
        return _Node(kind, f"{_const_str(t.const_value)}\n{typ}")
    if kind in ("input", "param"):
        return _Node(kind, f"{t.name}\n{typ}")
    return _Node(kind, f"{_op_str(t.op.name, t.attrs)}\n{typ}")


def _from_schedule(s: Schedule) -> _Picture:
    nodes, index = [], {}

    def add(var: Var, node: _Node):
        index[id(var)] = len(nodes)
        nodes.append(node)

    for v in s.inputs:
        add(v, _Node("input", f"{v.name}\n{_type_str(v.dims, v.dtype)}"))
    for v, _ in s.params:
        add(v, _Node("param", f"{v.name}\n{_type_str(v.dims, v.dtype)}"))
    for v, value in s.consts:
        add(v, _Node("const", f"{v.name} = {_const_str(value)}\n{_type_str(v.dims, v.dtype)}"))
    edges = []
    for e in s.eqns:
        add(e.out, _Node("op", f"{e.out.name} = {_op_str(e.op.name, e.attrs)}\n"
                               f"{_type_str(e.out.dims, e.out.dtype)}"))
        edges += [(index[id(i)], index[id(e.out)]) for i in e.ins]
    params = {id(node): index[id(v)] for v, node in s.params}
    updates = [(index[id(v)], params[id(p)]) for p, v in s.updates]
    return _Picture(nodes, edges, [index[id(o)] for o in s.outputs], updates)


_LEAF_KINDS = {leaf.input_p: "input", leaf.param_p: "param", leaf.constant_p: "const"}


# -- labels -------------------------------------------------------------------

def _type_str(dims, dtype) -> str:
    """``f64[None,3]``: the dtype's short name and the shape, None for call-time sizes."""
    dt = np.dtype(dtype).name
    short = {"float64": "f64", "float32": "f32", "bool": "bool"}.get(dt) or \
        dt.replace("uint", "u").replace("int", "i")
    return f"{short}[{','.join('None' if isinstance(d, Dim) else str(d) for d in dims)}]"


def _const_str(value: np.ndarray) -> str:
    value = np.asarray(value)
    if value.size > 6:
        return "const"
    if value.ndim == 0:
        item = value.item()
        return f"{item:.6g}" if isinstance(item, float) else str(item)
    return np.array2string(value, precision=4, separator=",")


def _op_str(name: str, attrs) -> str:
    shown = " ".join(f"{k}={_attr_str(v)}" for k, v in attrs.items())
    if len(shown) > 40:
        shown = shown[:37] + "..."
    return f"{name} {shown}" if shown else name


def _attr_str(v) -> str:
    if isinstance(v, tuple):
        return "(" + ",".join(_attr_str(x) for x in v) + ")"
    if isinstance(v, Dim):
        return "None"
    if isinstance(v, np.dtype):
        return v.name
    return str(v)


def _quote(text: str) -> str:
    """A DOT string literal; newlines become Graphviz's centred line breaks."""
    text = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + text.replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\n") + '"'


# -- emitting -----------------------------------------------------------------

def _emit(p: _Picture) -> str:
    lines = list(_HEADER)
    marked = set(p.outputs)
    for k, node in enumerate(p.nodes):
        bold = ", penwidth=2" if k in marked else ""
        lines.append(f"  n{k} [label={_quote(node.label)}, {_STYLE[node.kind]}{bold}];")
    lines += [f"  n{src} -> n{dst};" for src, dst in p.edges]
    for j, k in enumerate(p.outputs):
        lines.append(f'  out{j} [label="output {j}", shape=plaintext, fontcolor="#b03a2e"];')
        lines.append(f'  n{k} -> out{j} [color="#b03a2e"];')
    for src, dst in p.updates:
        lines.append(f'  n{src} -> n{dst} [style=dashed, color="#1f6f43", label="update", '
                     f"constraint=false];")
    lines.append("}")
    return "\n".join(lines) + "\n"
