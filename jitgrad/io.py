"""``jg.save`` and ``jg.load``: graphs stored as data, never as code.

A saved graph is one ``.npz`` archive.  Its ``graph`` entry is JSON (UTF-8, as
a uint8 array) listing the nodes so that each follows what it needs; constant
and param values are arrays of their own, ``c<i>`` and ``p<i>`` for node ``i``.
Loading rebuilds every node with ``bind``, so the shape rules check the file;
nothing in it is executed, and anything unexpected raises ``ValueError``.

Attribute values are JSON with tags: tuples are arrays, ``{"float": "inf"}``,
``{"dtype": "float32"}``, and ``{"dim": k}`` for a call-time size.  A size id is
defined by the first node whose shape shows it, or, for sizes only attributes
use (the element count of a ``mean``), by its formula in ``dims``: one of the
data-only ``DERIVATIONS`` of jitgrad.primitive.  An input whose size a gradient
uses without its value is saved too, so the loaded graph can be compiled.
"""
from __future__ import annotations

import json
import math
import os
import tempfile

import numpy as np

from .graph import SUPPORTED_DTYPES, Tensor, bind, constant, input, param, topological_order
from .graph import inputs_of  # noqa: F401  (what compile needs after load; re-exported)
from .ops import BY_NAME, control, custom, leaf
from .ops.loop import Body
from .primitive import DERIVATIONS, Dim

FORMAT, VERSION = "jitgrad-graph", 1
_DTYPES = {str(d): d for d in SUPPORTED_DTYPES}
_NAMED = (leaf.input_p, leaf.param_p)


def save(path, outputs) -> None:
    """Store the graph computing ``outputs`` (a Tensor or a list of them), atomically.

    >>> w = param("w", np.ones(3)); save("/tmp/w2.npz", w * 2); load("/tmp/w2.npz").shape
    (3,)
    """
    roots = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    if not all(isinstance(r, Tensor) for r in roots):
        raise TypeError("save: outputs must be a Tensor or a list of Tensors")
    nodes = _save_order(roots)
    index = {id(n): i for i, n in enumerate(nodes)}
    encoder = _Encoder(index)
    records = [encoder.node(i, n, index) for i, n in enumerate(nodes)]
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
    """The outputs saved at ``path``: one Tensor, or a list if a list or tuple was saved."""
    graph, arrays = _read(os.fspath(path))
    return _Loader(graph, arrays).run()


# -- saving --------------------------------------------------------------------

def _attr_dims(value) -> list[Dim]:
    if isinstance(value, tuple):
        return [d for v in value for d in _attr_dims(v)]
    return [value] if isinstance(value, Dim) else []


def _save_order(roots) -> list[Tensor]:
    """A topological order in which a node also follows the nodes whose shape rules made
    the sizes its attributes use, so that loading meets every size before its uses."""
    creators = {}
    for node in topological_order(roots):
        inherited = {id(d) for x in node.inputs for d in x.dims}
        inherited |= {id(d) for v in node.attrs.values() for d in _attr_dims(v)}
        for d in node.dims:
            if isinstance(d, Dim) and id(d) not in inherited:
                creators.setdefault(d, node)

    def needs(node):
        found, dims = list(node.inputs), [d for v in node.attrs.values() for d in _attr_dims(v)]
        for v in node.attrs.values():
            if isinstance(v, Body):         # a loop's body: its nodes are saved before the loop
                found += list(v.params) + list(v.outputs)
        while dims:
            d = dims.pop()
            if d in creators:
                found.append(creators[d])
            elif d.owner is not None:
                found.append(d.owner)
            elif d.derive is not None:
                dims.extend(x for x in d.derive[1] if isinstance(x, Dim))
        return found

    order, seen, stack = [], set(), [(r, False) for r in reversed(roots)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
        elif id(node) not in seen:
            seen.add(id(node))
            stack.append((node, True))
            stack.extend((x, False) for x in reversed(needs(node)) if id(x) not in seen)
    return order


class _Encoder:
    def __init__(self, index: dict):
        self.ids: dict[Dim, int] = {}   # Dim -> id in the file
        self.derived: list = []         # the "dims" table
        self.index = index              # id(node) -> its number in the file

    def attr(self, v):
        if isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, Body):
            return {"body": {"params": [self.index[id(p)] for p in v.params],
                             "outputs": [self.index[id(o)] for o in v.outputs],
                             "n_carry": v.n_carry, "n_x": v.n_x}}
        if v is None or isinstance(v, (bool, int, str)):
            return v
        if isinstance(v, float):
            return v if math.isfinite(v) else {"float": repr(v)}
        if isinstance(v, tuple):
            return [self.attr(x) for x in v]
        if isinstance(v, np.dtype) and v in SUPPORTED_DTYPES:
            return {"dtype": str(v)}
        if not isinstance(v, Dim):
            raise ValueError(f"it has the attribute value {v!r}, which cannot be stored")
        if v not in self.ids:
            if v.derive is None:
                raise ValueError(f"its attributes use the call-time size {v}, which no node of the "
                                 f"saved graph defines (save the input it belongs to as an output too)")
            kind, deps, param = v.derive
            of = [self.attr(x) for x in deps]      # may define ids: before this one's
            self.derived.append({"id": len(self.ids), "formula": kind, "of": of, "param": param})
            self.ids[v] = len(self.ids)
        return {"dim": self.ids[v]}

    def node(self, i: int, n: Tensor, index: dict) -> dict:
        if n.op is control.checkpoint_p:
            raise ValueError(f"save: node {i} is a jg.checkpoint region, whose function is code and "
                             f"cannot be stored; save the graph built without jg.checkpoint")
        if n.op in (custom.custom_vjp_p, custom.custom_jvp_p):
            raise ValueError(f"save: node {i} is jg.{n.op.name} of {n.attrs['rule'].name}, whose rule is "
                             f"Python code and cannot be stored; save the graph built without it")
        try:
            attrs = {k: self.attr(v) for k, v in n.attrs.items()}
        except ValueError as e:
            raise ValueError(f"save: node {i} ({n.op.name}): {e}") from None
        shape = [{"dim": self.ids.setdefault(d, len(self.ids))} if isinstance(d, Dim) else int(d)
                 for d in n.dims]
        rec = {"op": n.op.name, "inputs": [index[id(x)] for x in n.inputs], "attrs": attrs,
               "shape": shape, "dtype": str(n.dtype)}
        return rec | {"name": n.name} if n.op in _NAMED else rec


def _write_atomically(path: str, arrays: dict) -> None:
    """Write a temporary file next to ``path``, then rename it: no reader sees half a file."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:     # a file object, so numpy appends no ".npz"
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
            raise ValueError("it holds one array, not an .npz archive")
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
            raise ValueError(f"load: entry {k!r} is not an array of a supported dtype")
    try:
        return json.loads(text.tobytes().decode("utf-8")), arrays
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise ValueError(f"load: the graph in {path} is not valid JSON: {e}") from e


def _fields(rec, want: set, where: str) -> dict:
    if not isinstance(rec, dict):
        raise ValueError(f"load: {where} must be a JSON object, got {rec!r}")
    if set(rec) != want:
        unknown, missing = sorted(set(rec) - want), sorted(want - set(rec))
        raise ValueError(f"load: {where} has " + (f"unknown fields {unknown}" if unknown
                                                  else f"no field {missing}"))
    return rec


def _index(v, below: int, what: str) -> int:
    if type(v) is not int or not 0 <= v < below:
        raise ValueError(f"load: {what} must be an int in [0, {below}), got {v!r}")
    return v


def _list(v, what: str) -> list:
    if not isinstance(v, list):
        raise ValueError(f"load: {what} must be a list, got {v!r}")
    return v


def _formula_param(rec: dict, n_deps: int):
    """The static parameter of a size formula, checked against what the formula takes."""
    kind, param = rec["formula"], rec["param"]
    ok = {"sum": param is None, "prod": param is None,
          "quotient": type(param) is int and 0 <= param <= n_deps,
          "slice": (param is None or (type(param) is int and param != 0)) and n_deps == 3}[kind]
    if not ok:
        raise ValueError(f"load: dims entry {rec['id']} has a bad parameter {param!r} for {kind}")
    return param


class _Loader:
    def __init__(self, graph, arrays: dict):
        if not isinstance(graph, dict) or graph.get("format") != FORMAT:
            raise ValueError(f"load: the file's format is not {FORMAT!r}")
        if type(graph.get("version")) is not int or graph["version"] != VERSION:
            raise ValueError(f"load: {FORMAT} version {graph.get('version')!r} is not supported "
                             f"(only {VERSION})")
        self.graph = _fields(graph, {"format", "version", "dims", "nodes", "outputs"}, "the graph")
        self.arrays, self.unused, self.nodes = arrays, set(arrays), []
        self.bodies: dict[tuple, Body] = {}     # one Body per saved body: siblings share it
        self.dims: dict[int, Dim] = {}      # id in the file -> Dim of the loaded graph
        self.owner: dict[int, int] = {}     # id(loaded Dim) -> id in the file
        self.formulas: dict[int, tuple] = {}
        for rec in _list(graph["dims"], "dims"):
            k = _index(_fields(rec, {"id", "formula", "of", "param"}, "a dims entry")["id"], 2**31,
                       "a dims id")
            if rec["formula"] not in DERIVATIONS or k in self.formulas:
                raise ValueError(f"load: dims entry {rec} has an unknown formula or a repeated id")
            of = [self.size(x, f"dims entry {k}", below=k) if x is not None else None
                  for x in _list(rec["of"], "of")]
            self.formulas[k] = (rec["formula"], of, _formula_param(rec, len(of)))

    def run(self):
        for i, rec in enumerate(_list(self.graph["nodes"], "nodes")):
            self.nodes.append(self.node(i, rec))
        if self.unused:
            raise ValueError(f"load: no node uses the arrays {sorted(self.unused)}")
        outs, n = self.graph["outputs"], len(self.nodes)
        if type(outs) is int:
            return self.nodes[_index(outs, n, "outputs")]
        return [self.nodes[_index(o, n, "an output")] for o in _list(outs, "outputs")]

    def size(self, v, where: str, below: int = 2**31):
        """A saved size: an int, or a size id kept as the 1-tuple ``(k,)``."""
        if type(v) is int and v >= 0:
            return v
        if isinstance(v, dict) and set(v) == {"dim"}:
            return (_index(v["dim"], below, f"{where}: a size id"),)
        raise ValueError(f"load: {where}: {v!r} is not a size (an int >= 0 or {{\"dim\": id}})")

    def dim(self, k: int, where: str) -> Dim:
        if k not in self.dims and k in self.formulas:
            kind, of, param = self.formulas[k]
            deps = tuple(self.dim(x[0], where) if isinstance(x, tuple) else x for x in of)
            self.dims[k] = Dim(derive=(kind, deps, param))
            self.owner[id(self.dims[k])] = k
        if k not in self.dims:
            raise ValueError(f"load: {where} uses the call-time size {k}, which no earlier node defines")
        return self.dims[k]

    def claim(self, k: int, d: Dim, where: str) -> bool:
        """Make ``d`` the loaded Dim of size id ``k``, or check that it already is."""
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
                return self.dim(self.size(v, where)[0], where)
            if tag == "body":
                return self.body(x, where)
        raise ValueError(f"load: {where}: unknown attribute value {v!r}")

    def body(self, rec, where: str) -> Body:
        """A loop body: its stand-ins (input nodes) and outputs, all saved earlier."""
        rec = _fields(rec, {"params", "outputs", "n_carry", "n_x"}, f"{where}: body")
        below = len(self.nodes)
        params = tuple(self.nodes[_index(k, below, f"{where}: a body input")] for k in _list(rec["params"], "params"))
        outputs = tuple(self.nodes[_index(k, below, f"{where}: a body output")]
                        for k in _list(rec["outputs"], "outputs"))
        n_carry, n_x = (_index(rec[k], len(params) + 1, f"{where}: {k}") for k in ("n_carry", "n_x"))
        if any(p.op is not leaf.input_p for p in params) or n_carry + n_x > len(params):
            raise ValueError(f"load: {where}: a body's inputs must be input nodes, carries and "
                             f"slices among them")
        key = (params, outputs, n_carry, n_x)
        if key not in self.bodies:
            self.bodies[key] = Body(params, outputs, n_carry, n_x)
        return self.bodies[key]

    def node(self, i: int, rec) -> Tensor:
        name = rec.get("op") if isinstance(rec, dict) else None
        op = BY_NAME.get(name) if isinstance(name, str) else None
        if op is None:
            raise ValueError(f"load: node {i} has an unknown op {name!r}")
        where = f"node {i} ({op.name})"
        _fields(rec, {"op", "inputs", "attrs", "shape", "dtype"} | ({"name"} if op in _NAMED else set()), where)
        inputs = [self.nodes[_index(j, i, f"{where}: an input")] for j in _list(rec["inputs"], "inputs")]
        if op.nin is not None and len(inputs) != op.nin:
            raise ValueError(f"load: {where} has {len(inputs)} inputs, {op.name} takes {op.nin}")
        attrs = {k: self.attr(v, f"{where}: attr {k!r}")
                 for k, v in _fields(rec["attrs"], set(op.attrs), f"{where}: attrs").items()}
        shape = [self.size(v, f"{where}: shape") for v in _list(rec["shape"], f"{where}: shape")]
        if rec["dtype"] not in _DTYPES:
            raise ValueError(f"load: {where} has the unsupported dtype {rec['dtype']!r}")
        try:
            node = self.make(op, i, rec, inputs, attrs, shape)
        except Exception as e:      # a shape rule's complaint, or bad attribute types
            raise ValueError(f"load: {where} cannot be rebuilt: {e}") from e
        self.check(node, shape, _DTYPES[rec["dtype"]], where)
        return node

    def make(self, op, i, rec, inputs, attrs, shape) -> Tensor:
        if op is leaf.input_p:
            return input(rec["name"], [None if isinstance(d, tuple) else d for d in shape], rec["dtype"])
        if op in (leaf.constant_p, leaf.param_p):
            key = f"{'c' if op is leaf.constant_p else 'p'}{i}"
            if key not in self.unused:
                raise ValueError(f"the archive has no array {key!r}")
            self.unused.discard(key)
            return constant(self.arrays[key]) if op is leaf.constant_p else param(rec["name"], self.arrays[key])
        return bind(op, *inputs, **attrs)

    def check(self, node: Tensor, shape: list, dtype: np.dtype, where: str) -> None:
        """The rebuilt node must have the saved dtype and shape; its new Dims get their ids."""
        ok = node.dtype == dtype and len(node.dims) == len(shape)
        for saved, d in zip(shape, node.dims) if ok else ():
            if isinstance(saved, tuple):
                ok = ok and isinstance(d, Dim) and self.claim(saved[0], d, where)
            else:
                ok = ok and isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d == saved
        if not ok:
            shown = [f"n{s[0]}" if isinstance(s, tuple) else s for s in shape]
            raise ValueError(f"load: {where} was saved as {dtype}{shown} "
                             f"but rebuilds as {node.dtype}{list(node.shape)}")
