"""The backend-neutral part of writing a fused kernel: the body of its loop.

The CPU and CUDA emitters wrap the same body in different loops (nested
``range``/``prange`` loops; a grid-stride loop over threads).  The body is
written here, once: loads of buffers at the loop's indices (through the index
maps ``broadcast_to``, ``transpose``, ``slice``, ``gather`` and ``patches``), each
elementwise equation as its primitive's scalar expression, the stores, and the
reductions' identities and combiners.  A target says only how it indexes a 0-d
buffer and how a gather's index is checked.

Names are canonical (``r0`` for the first buffer read, ``w0`` for the first
written, ``t0`` for the first value computed), so equal kernels have equal
source and share one module in the cache.
"""
from __future__ import annotations

import textwrap

import numpy as np

from ..fusion import INDEX_MAPS, Kernel
from ..ops import reduce as rd, shape as sh, window
from ..primitive import Dim
from ..schedule import Var


HELPERS = ("maximum", "minimum", "safe_div", "safe_mul", "sigmoid", "sign", "slice_first", "wrap_index",
           "trunc", "floor", "ceil", "rint", "fmod", "floor_divide", "left_shift", "right_shift", "logaddexp")
"""Every function a kernel body calls by name: in primitives' scalar strings, reductions'
combiners and index maps.  Each target's helper module (``scalars``, ``cuda_scalars``)
defines all of them, and its kernels' prelude imports them (``import_helpers``)."""


def import_helpers(module: str, names=HELPERS) -> str:
    """The prelude's import of the helpers ``names`` from ``module``, one wrapped statement."""
    listed = textwrap.wrap(", ".join(sorted(names)) + ")", width=88, initial_indent="    ",
                           subsequent_indent="    ")
    return f"from {module} import (\n" + "\n".join(listed) + "\n"


def np_type(dtype: np.dtype) -> str:
    return "np.bool_" if dtype == np.bool_ else f"np.{dtype.name}"


def literal(value, dtype: np.dtype) -> str:
    """A Python literal of ``value`` as the given dtype (inf and NaN included)."""
    value = np.asarray(value, dtype).item()
    if isinstance(value, float) and not np.isfinite(value):
        return "np.nan" if np.isnan(value) else ("np.inf" if value > 0 else "-np.inf")
    return repr(value)


_IDENTITY = {rd.reduce_sum_p: 0, rd.reduce_prod_p: 1}
COMBINE = {rd.reduce_sum_p: "{0} + {1}", rd.reduce_prod_p: "{0} * {1}",
           rd.reduce_max_p: "maximum({0}, {1})", rd.reduce_min_p: "minimum({0}, {1})"}


def identity(op, dtype: np.dtype) -> str:
    """The value a reduction starts from."""
    if op in _IDENTITY:
        return literal(_IDENTITY[op], dtype)
    lowest = op is rd.reduce_max_p
    if dtype.kind == "f":
        return "-np.inf" if lowest else "np.inf"
    if dtype.kind == "b":
        return repr(not lowest)
    info = np.iinfo(dtype)
    return repr(int(info.min if lowest else info.max))


def affine(window: str, stride: int, offset: str, dilation: int, before: int) -> str:
    """The pixel row (or column) of window ``window`` at ``offset``: ``window*stride +
    offset*dilation - before``, without the factors of one and the zero."""
    terms = [window if stride == 1 else f"{window} * {stride}",
             offset if dilation == 1 else f"{offset} * {dilation}"]
    return " + ".join(terms) + (f" - {before}" if before else "")


class KernelBody:
    """Writes the loop body of one kernel into ``lines``; a target's kernel writer
    subclasses it and writes the loops around it."""

    empty_index = "()"          # how a 0-d buffer is indexed

    def __init__(self, kernel: Kernel, literals: dict, scalar_args: set = frozenset()):
        self.k = kernel
        self.literals = literals                # scalar constants, written into the source
        self.scalar_args = scalar_args          # 0-d inputs, passed as plain numbers
        self.reads = [v for v in kernel.reads() if v not in literals]
        self.writes = list(kernel.writes())
        self.arg = {v: f"r{j}" for j, v in enumerate(self.reads)}
        self.arg.update({v: f"w{j}" for j, v in enumerate(self.writes)})
        self.rank = len(kernel.dims)
        self.index = [f"i{a}" for a in range(self.rank)]
        self.local: dict[Var, str] = {}
        self.loaded: dict[str, str] = {}
        self.lines: list[str] = []

    def at(self, idx) -> str:
        return "[" + (", ".join(idx) if idx else self.empty_index) + "]"

    def element(self, v: Var, idx) -> str:
        """The expression that reads ``v`` at ``idx``."""
        return f"{self.arg[v]}{self.at(idx)}"

    def checked_index(self, inner: str, src: Var, axis: int) -> str:
        """A gather's index into ``src`` along ``axis``, wrapped and bounds-checked."""
        return f"wrap_index({inner}, {self.arg[src]}.shape[{axis}])"

    def load(self, v: Var, idx) -> str:
        """A value of a buffer at an index, loaded once per loop iteration."""
        if v in self.literals:
            return self.literals[v]
        if v in self.scalar_args:
            return self.arg[v]
        return self.once(self.element(v, idx))

    def once(self, expr: str) -> str:
        """A local holding ``expr``, computed at its first use in the iteration."""
        if expr not in self.loaded:
            self.loaded[expr] = f"x{len(self.loaded)}"
            self.lines.append(f"{self.loaded[expr]} = {expr}")
        return self.loaded[expr]

    def operand(self, v: Var) -> str:
        return self.local[v] if v in self.local else self.load(v, self.index)

    def body(self) -> None:
        """The equations of the body, then the stores."""
        for e in self.k.body:
            self.body_line(e)
        for v in self.k.stores:
            self.lines.append(f"{self.arg[v]}{self.at(self.index)} = {self.local[v]}")

    def body_line(self, e) -> None:
        name = f"t{len(self.local)}"
        if e.op in INDEX_MAPS:
            value = self.index_map(e)
        else:
            dtype = np_type(e.attrs["dtype"]) if "dtype" in e.attrs else ""
            value = self.scalar(e).format(*(self.operand(v) for v in e.ins), dtype=dtype)
        self.lines.append(f"{name} = {np_type(e.out.dtype)}({value})")
        self.local[e.out] = name

    def scalar(self, e) -> str:
        """The template of ``e``'s scalar expression, ``{0}``, ``{1}`` for its operands."""
        return e.op.scalar

    def index_map(self, e) -> str:
        src = e.ins[0]
        if e.op is sh.broadcast_to_p:
            lead = self.rank - len(src.dims)
            idx = ["0" if d == 1 and e.out.dims[lead + a] != 1 else self.index[lead + a]
                   for a, d in enumerate(src.dims)]
        elif e.op is sh.transpose_p:
            perm = e.attrs["perm"]
            idx = [self.index[perm.index(a)] for a in range(len(perm))]
        elif e.op is sh.slice_p:
            idx = [self.sliced(a, bounds, src) for a, bounds in enumerate(e.attrs["index"])]
        elif e.op is window.patches_p:
            return self.window_read(e)
        else:   # gather
            axis, positions = e.attrs["axis"], e.ins[1]
            inner = self.load(positions, self.index[axis:axis + len(positions.dims)])
            where = self.checked_index(inner, src, axis)
            idx = self.index[:axis] + [where] + self.index[axis + len(positions.dims):]
        return self.load(src, idx)

    def window_read(self, e) -> str:
        """``patches``: the pixel a window sees at its offset, or the pad value off the image."""
        a, src = e.attrs, e.ins[0]
        n, c, kh, kw, oh, ow = (self.index[a["order"].index(axis)] for axis in range(6))
        pixel, inside = [], []
        for at, offset, stride, dilation, (before, after), size in zip(
                (oh, ow), (kh, kw), a["stride"], a["dilation"], a["padding"], src.dims[2:]):
            where = self.once(affine(at, stride, offset, dilation, before))
            pixel.append(where)
            inside += ([f"{where} >= 0"] if before else []) + ([f"{where} < {size}"] if after else [])
        read = self.element(src, [n, c, *pixel])
        if not inside:
            return self.once(read)
        return self.once(f"{read} if {' and '.join(inside)} else {literal(a['pad_value'], src.dtype)}")

    def sliced(self, axis: int, bounds, src: Var) -> str:
        start, stop, step = bounds
        step = 1 if step is None else step
        if isinstance(start, Dim) or isinstance(stop, Dim) or isinstance(src.dims[axis], Dim):
            if isinstance(start, Dim):
                raise NotImplementedError("slice starts given by call-time sizes")
            has = start is not None
            first = f"slice_first({self.arg[src]}.shape[{axis}], {start if has else 0}, {has}, {step})"
        else:
            first = str(range(src.dims[axis])[slice(start, stop, step)].start
                        if len(range(src.dims[axis])[slice(start, stop, step)]) else 0)
        i = self.index[axis]
        return i if (first == "0" and step == 1) else f"{first} + {i} * {step}"

    def out_index(self, e) -> list[str]:
        """Where a partial reduction ``e`` accumulates the loop's position."""
        axes, keep = e.attrs["axes"], e.attrs["keepdims"]
        return [("0" if a in axes else i) for a, i in enumerate(self.index) if keep or a not in axes]
