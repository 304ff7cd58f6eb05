"""``jg.save`` and ``jg.load``: graphs stored as data, never as code.

A saved graph is one ``.npz`` archive.  Its ``graph`` entry is UTF-8 JSON (as a
uint8 array) listing the nodes in dependency order; every constant and param
value is an array of its own (``c<i>``, ``p<i>`` for node ``i``).  Loading
rebuilds each node with ``bind``, so the shape rules check the file; nothing in
it is ever executed, and anything unexpected raises ``ValueError``.

Attribute values are JSON with tags: tuples are arrays, ``{"float": "inf"}``,
``{"dtype": "float32"}`` and ``{"dim": k}``, a call-time size.  Sizes get ids:
a node's shape defines the ids it shows first (inputs, a reshape's ``-1``, ...);
``dims`` lists the sizes that only attributes use (the element count of a
``mean``) as a named formula over other sizes.
"""
from __future__ import annotations

import json
import math
import os
import tempfile

import numpy as np

from .graph import SUPPORTED_DTYPES, Tensor, bind, constant, input, param, topological_order
from .ops import BY_NAME, leaf
from .primitive import Dim

FORMAT, VERSION = "jitgrad-graph", 1
_DTYPES = {str(d): d for d in SUPPORTED_DTYPES}
_FORMULAS = {"sum": lambda *n: sum(n), "prod": lambda *n: math.prod(n)}
_NODE_FIELDS = {"op", "inputs", "attrs", "shape", "dtype"}
_TOP_FIELDS = {"format", "version", "dims", "nodes", "outputs"}


def save(path, outputs) -> None:
    """Store the graph computing ``outputs`` (a Tensor or a list of them), atomically.

    >>> w = param("w", np.ones(3)); save("/tmp/g.npz", w * 2); load("/tmp/g.npz").shape
    (3,)
    """
    roots = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    if not all(isinstance(r, Tensor) for r in roots):
        raise TypeError("save: outputs must be a Tensor or a list of Tensors")
    nodes = _save_order(roots)
    index = {id(n): i for i, n in enumerate(nodes)}
    encoder = _Encoder(_creators(nodes))
    records = [encoder.node(n, index) for n in nodes]
    outs = [index[id(r)] for r in roots]
    graph = {"format": FORMAT, "version": VERSION, "dims": encoder.derived, "nodes": records,
             "outputs": outs[0] if isinstance(outputs, Tensor) else outs}
    text = json.dumps(graph, allow_nan=False, separators=(",", ":"))
    arrays = {"graph": np.frombuffer(text.encode("utf-8"), np.uint8)}
    for i, n in enumerate(nodes):
        if n.op is leaf.constant_p:
            arrays[f"c{i}"] = n.const_value
        elif n.op is leaf.param_p:
            arrays[f"p{i}"] = n.value
    _write_atomically(os.fspath(path), arrays)


def load(path):
    """The outputs saved at ``path``: one Tensor, or a list if a list was saved."""
    graph, arrays = _read(os.fspath(path))
    return _Loader(graph, arrays).run()


def inputs_of(outputs) -> list[Tensor]:
    """The input nodes a graph reads, in dependency order: what ``compile`` needs after ``load``."""
    roots = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    return [n for n in topological_order(roots) if n.op is leaf.input_p]


# -- saving --------------------------------------------------------------------

def _attr_dims(value):
    if isinstance(value, tuple):
        return [d for v in value for d in _attr_dims(v)]
    return [value] if isinstance(value, Dim) else []


def _creators(nodes) -> dict:
    """Dim -> the node whose shape rule made it (it is in neither its inputs nor its attrs)."""
    made = {}
    for node in nodes:
        inherited = {id(d) for x in node.inputs for d in x.dims}
        inherited |= {id(d) for v in node.attrs.values() for d in _attr_dims(v)}
        for d in node.dims:
            if isinstance(d, Dim) and id(d) not in inherited:
                made.setdefault(d, node)
    return made


def _save_order(roots) -> list[Tensor]:
    """Topological order where, also, a node comes after the nodes making the sizes its
    attributes use, so that on loading every size is known before it is referred to."""
    creators = _creators(topological_order(roots))

    def needs(node):
        found, dims = list(node.inputs), [d for v in node.attrs.values() for d in _attr_dims(v)]
        while dims:
            d = dims.pop()
            if d in creators:
                found.append(creators[d])
            elif d.derive is not None:
                dims.extend(x for x in d.derive[1] if isinstance(x, Dim))
        return found

    order, seen = [], set()
    for root in roots:
        stack = [(root, False)]
        while stack:
            node, expanded = stack.pop()
            if expanded:
                order.append(node)
            elif id(node) not in seen:
                seen.add(id(node))
                stack.append((node, True))
                stack.extend((x, False) for x in reversed(needs(node)) if id(x) not in seen)
    return order


def _formula(d: Dim) -> str:
    """The name in ``_FORMULAS`` of what a derived size computes.  A Dim holds its formula
    as a Python function, which a data file cannot; evaluating it on two probes tells
    the sums (offsets of concatenate's parts) from the products (counts of ``mean``)."""
    fn, deps = d.derive
    probes = [[7 + 4 * j for j in range(len(deps))], [3 + 2 * j for j in range(len(deps))]]
    for name, known in _FORMULAS.items():
        try:
            if all(fn(*p) == known(*p) for p in probes):
                return name
        except Exception:
            break
    raise ValueError(f"save: the call-time size {d} is computed by a formula that cannot be saved")


class _Encoder:
    def __init__(self, creators: dict):
        self.creators = creators
        self.ids: dict = {}        # Dim -> id in the file
        self.derived: list = []    # the "dims" table: sizes defined by a formula

    def size(self, d, defining: bool = False):
        if not isinstance(d, Dim):
            return int(d)
        if d not in self.ids:
            if not defining and (d in self.creators or d.derive is None):
                raise ValueError(f"save: the call-time size {d} is used by an attribute, "
                                 f"but no node of the saved graph defines it")
            if not defining:
                name, of = _formula(d), [self.size(x) for x in d.derive[1]]
                self.derived.append({"id": len(self.ids), "formula": name, "of": of})
            self.ids[d] = len(self.ids)
        return {"dim": self.ids[d]}

    def attr(self, v):
        if isinstance(v, np.generic):
            v = v.item()
        if v is None or isinstance(v, (bool, int, str)):
            return v
        if isinstance(v, float):
            return v if math.isfinite(v) else {"float": repr(v)}
        if isinstance(v, tuple):
            return [self.attr(x) for x in v]
        if isinstance(v, np.dtype) and v in SUPPORTED_DTYPES:
            return {"dtype": str(v)}
        if isinstance(v, Dim):
            return self.size(v)
        raise ValueError(f"save: cannot store the attribute value {v!r}")

    def node(self, n: Tensor, index: dict) -> dict:
        rec = {"op": n.op.name, "inputs": [index[id(x)] for x in n.inputs],
               "attrs": {k: self.attr(v) for k, v in n.attrs.items()}}
        rec.update(shape=[self.size(d, defining=True) for d in n.dims], dtype=str(n.dtype))
        if n.op in (leaf.input_p, leaf.param_p):
            rec["name"] = n.name
        return rec


def _write_atomically(path: str, arrays: dict) -> None:
    """Write to a temporary file next to ``path``, then rename: readers never see half a file."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:     # a file object: numpy appends no ".npz"
            np.savez(f, allow_pickle=False, **arrays)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


# -- loading -------------------------------------------------------------------

def _read(path: str):
    """The JSON graph and the arrays of an archive, all checked to be plain data."""
    try:
        npz = np.load(path, allow_pickle=False)    # refuses pickles and object arrays
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise ValueError("it holds a single array, not an .npz archive")
        with npz:
            arrays = {k: npz[k] for k in npz.files}
    except OSError:
        raise
    except Exception as e:      # numpy and zipfile raise many kinds for a damaged file
        raise ValueError(f"load: {path} is not a jitgrad archive: {e}") from e
    text = arrays.pop("graph", None)
    if not isinstance(text, np.ndarray) or text.dtype != np.uint8 or text.ndim != 1:
        raise ValueError(f"load: {path} has no 'graph' entry of JSON bytes")
    for k, a in arrays.items():
        if not isinstance(a, np.ndarray) or a.dtype not in SUPPORTED_DTYPES:
            raise ValueError(f"load: array {k!r} is not a plain array of a supported dtype")
    try:
        graph = json.loads(text.tobytes().decode("utf-8"), parse_constant=_no_constant,
                           object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"load: the graph of {path} is not valid JSON: {e}") from e
    return graph, arrays


def _no_constant(name):
    raise ValueError(f"load: bare {name} in the graph JSON (non-finite floats are tagged)")


def _no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"load: repeated field in {keys}")
    return dict(pairs)


def _fields(rec, want: set, where: str) -> None:
    if not isinstance(rec, dict):
        raise ValueError(f"load: {where} must be a JSON object, got {rec!r}")
    if set(rec) - want:
        raise ValueError(f"load: {where} has unknown fields {sorted(set(rec) - want)}")
    if want - set(rec):
        raise ValueError(f"load: {where} lacks the fields {sorted(want - set(rec))}")


def _index(v, below: int, what: str) -> int:
    if type(v) is not int or not 0 <= v < below:
        raise ValueError(f"load: {what} must be an int in [0, {below}), got {v!r}")
    return v


def _list(v, what: str) -> list:
    if not isinstance(v, list):
        raise ValueError(f"load: {what} must be a list, got {v!r}")
    return v


class _Loader:
    def __init__(self, graph, arrays: dict):
        if not isinstance(graph, dict) or graph.get("format") != FORMAT:
            raise ValueError(f"load: the graph's format is not {FORMAT!r}")
        if type(graph.get("version")) is not int or graph["version"] != VERSION:
            raise ValueError(f"load: version {graph.get('version')!r} of {FORMAT!r} is not "
                             f"supported (only {VERSION})")
        _fields(graph, _TOP_FIELDS, "the graph")
        self.graph, self.arrays, self.nodes = graph, arrays, []
        self.unused = set(arrays)             # arrays no constant or param has claimed
        self.dims: dict[int, Dim] = {}      # id in the file -> Dim of the loaded graph
        self.owner: dict[int, int] = {}     # id(Dim) -> id in the file
        self.formulas = {}
        for rec in _list(graph["dims"], "dims"):
            _fields(rec, {"id", "formula", "of"}, "a dims entry")
            k = _index(rec["id"], 2**31, "a dims id")
            if rec["formula"] not in _FORMULAS or k in self.formulas:
                raise ValueError(f"load: dims entry {rec} has an unknown formula or a repeated id")
            of = [self.size(x, "dims", bound=k) for x in _list(rec["of"], "a formula's sizes")]
            self.formulas[k] = (rec["formula"], of)

    def run(self):
        for i, rec in enumerate(_list(self.graph["nodes"], "nodes")):
            self.nodes.append(self.node(i, rec))
        if self.unused:
            raise ValueError(f"load: unknown arrays {sorted(self.unused)}")
        outs = self.graph["outputs"]
        if type(outs) is int:
            return self.nodes[_index(outs, len(self.nodes), "outputs")]
        return [self.nodes[_index(o, len(self.nodes), "an output")] for o in _list(outs, "outputs")]

    def size(self, v, where: str, bound: int | None = None):
        """A saved size: an int, or an id kept as ``("dim", k)`` (below ``bound`` if given)."""
        if type(v) is int and v >= 0:
            return v
        if isinstance(v, dict) and set(v) == {"dim"}:
            return ("dim", _index(v["dim"], 2**31 if bound is None else bound, f"{where}: a dim id"))
        raise ValueError(f"load: {where}: {v!r} is not a size (an int >= 0 or {{\"dim\": id}})")

    def dim(self, k: int, where: str) -> Dim:
        if k not in self.dims and k in self.formulas:
            name, of = self.formulas[k]
            deps = tuple(self.dim(x[1], where) if isinstance(x, tuple) else x for x in of)
            self.dims[k] = Dim(derive=(_FORMULAS[name], deps))
            self.owner[id(self.dims[k])] = k
        if k not in self.dims:
            raise ValueError(f"load: {where} refers to call-time size {k}, which no earlier node defines")
        return self.dims[k]

    def claim(self, k: int, d: Dim, where: str) -> bool:
        """Make ``d`` the loaded Dim of id ``k``, or check that it already is."""
        if k in self.dims or k in self.formulas:
            return self.dim(k, where) is d
        if id(d) in self.owner:
            return False
        self.dims[k], self.owner[id(d)] = d, k
        return True

    def attr(self, v, where: str):
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        if isinstance(v, list):
            return tuple(self.attr(x, where) for x in v)
        if isinstance(v, dict) and len(v) == 1:
            (tag, x), = v.items()
            if tag == "float" and x in ("inf", "-inf", "nan"):
                return float(x)
            if tag == "dtype" and x in _DTYPES:
                return _DTYPES[x]
            if tag == "dim":
                return self.dim(self.size(v, where)[1], where)
        raise ValueError(f"load: {where}: unknown attribute value {v!r}")

    def node(self, i: int, rec) -> Tensor:
        name = rec.get("op") if isinstance(rec, dict) else None
        op = BY_NAME.get(name) if isinstance(name, str) else None
        if op is None:
            raise ValueError(f"load: node {i} has an unknown op {name!r}")
        where = f"node {i} ({op.name})"
        _fields(rec, _NODE_FIELDS | ({"name"} if op in (leaf.input_p, leaf.param_p) else set()), where)
        inputs = [self.nodes[_index(j, i, f"{where}: an input")] for j in _list(rec["inputs"], "inputs")]
        if op.nin is not None and len(inputs) != op.nin:
            raise ValueError(f"load: {where} has {len(inputs)} inputs, {op.name} takes {op.nin}")
        _fields(rec["attrs"], set(op.attrs), f"{where}: attrs")
        attrs = {k: self.attr(v, f"{where}: attr {k!r}") for k, v in rec["attrs"].items()}
        shape = [self.size(v, f"{where}: shape") for v in _list(rec["shape"], f"{where}: shape")]
        if rec["dtype"] not in _DTYPES:
            raise ValueError(f"load: {where} has an unsupported dtype {rec['dtype']!r}")
        try:
            node = self.make(op, i, rec, inputs, attrs, shape)
        except Exception as e:
            raise ValueError(f"load: {where} cannot be rebuilt: {e}") from e
        self.check(node, shape, _DTYPES[rec["dtype"]], where)
        return node

    def make(self, op, i, rec, inputs, attrs, shape) -> Tensor:
        if op is leaf.input_p:
            return input(rec["name"], [None if isinstance(d, tuple) else d for d in shape], rec["dtype"])
        if op is leaf.constant_p:
            return constant(self.array(f"c{i}"))
        if op is leaf.param_p:
            return param(rec["name"], self.array(f"p{i}"))
        return bind(op, *inputs, **attrs)

    def array(self, key: str) -> np.ndarray:
        if key not in self.unused:
            raise ValueError(f"the archive has no array {key!r}")
        self.unused.discard(key)
        return self.arrays[key]

    def check(self, node: Tensor, shape: list, dtype: np.dtype, where: str) -> None:
        """The rebuilt node must have the saved dtype and shape; its new Dims get their ids."""
        ok = node.dtype == dtype and len(node.dims) == len(shape)
        for saved, d in zip(shape, node.dims) if ok else ():
            if isinstance(saved, tuple):
                ok = ok and isinstance(d, Dim) and self.claim(saved[1], d, where)
            else:
                ok = ok and isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d == saved
        if not ok:
            raise ValueError(f"load: {where} was saved as {dtype}{[_show(s) for s in shape]} "
                             f"but rebuilds as {node.dtype}{list(node.shape)}")


def _show(size) -> str:
    return f"n{size[1]}" if isinstance(size, tuple) else str(size)
