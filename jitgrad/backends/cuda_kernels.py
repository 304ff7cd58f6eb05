"""Fused kernels for the CUDA target, written from the same ``Kernel`` steps as the CPU's.

The body of a kernel (scalar expressions, index maps, stores) is generated
exactly as for the CPU (``numba_cpu._KernelWriter``); what differs is how the
iteration space is spread over threads:

* no reductions: a grid-stride loop over the flattened space;
* every reduction over all axes: each thread accumulates its share, a block
  combines the shares in shared memory and writes one partial per block, and
  a second kernel (``finish``) combines the partials: deterministic, no atomics;
* every reduction over the same subset of axes: one thread per kept position
  loops over the reduced axes (a row of a softmax, a column of a bias gradient);
* anything else: reductions by atomics into outputs that ``prepare`` first fills
  with the identity (sums, maxima, minima; a product raises NotImplementedError).

0-d buffers live on the device as arrays of one element, indexed ``[0]``.
"""
from __future__ import annotations

import numpy as np

from ..fusion import Kernel
from ..ops import reduce as rd, shape as sh
from .numba_cpu import _COMBINE, _identity, _KernelWriter

PRELUDE = """\
import math
import numpy as np
import numba
from numba import cuda
from jitgrad.backends.cuda_scalars import (
    maximum, minimum, safe_div, safe_mul, sigmoid, sign, slice_first, wrap_index)
"""

_ATOMIC = {rd.reduce_sum_p: "add", rd.reduce_max_p: "max", rd.reduce_min_p: "min"}
_NUMBA_TYPE = {"bool": "numba.boolean"}


def _numba_type(dtype: np.dtype) -> str:
    return _NUMBA_TYPE.get(dtype.name, f"numba.{dtype.name}")


def strategy(k: Kernel) -> str:
    """How the kernel's reductions are spread over threads (see the module docstring)."""
    if not k.reductions:
        return "elementwise"
    axes = {tuple(e.attrs["axes"]) for e in k.reductions}
    if len(axes) == 1:
        (only,) = axes
        return "block" if len(only) == len(k.dims) else "rows"
    return "atomic"


def _decompose(flat: str, names: list, extents: list) -> list[str]:
    """Lines that split a flat position into the indices ``names`` (C order)."""
    if not names:
        return []
    lines = [f"rest = {flat}"]
    for name, n in zip(reversed(names[1:]), reversed(extents[1:])):
        lines += [f"{name} = rest % {n}", f"rest //= {n}"]
    return lines + [f"{names[0]} = rest"]


def _product(extents: list) -> str:
    return " * ".join(extents) or "1"


class CudaKernelWriter(_KernelWriter):
    """Writes one fused kernel as a ``@cuda.jit`` function named ``kernel`` (plus ``finish``
    or ``prepare`` for the block and atomic strategies)."""

    def __init__(self, kernel: Kernel, literals: dict, scalar_args: set, threads: int):
        super().__init__(kernel, False, False, literals, scalar_args)
        self.threads = threads
        self.strategy = strategy(kernel)
        self.checks_indices = any(e.op is sh.gather_p for e in kernel.body)
        if self.strategy == "atomic" and any(e.op not in _ATOMIC for e in kernel.reductions):
            names = sorted({e.op.name for e in kernel.reductions if e.op not in _ATOMIC})
            raise NotImplementedError(f"target 'cuda': {', '.join(names)} fused with reductions over "
                                      f"other axes has no atomic form")

    def at(self, idx) -> str:
        return "[" + (", ".join(idx) if idx else "0") + "]"

    def load(self, v, idx) -> str:
        if v in self.literals:
            return self.literals[v]
        if v in self.scalar_args:
            return self.arg[v]
        expr = f"{self.arg[v]}{self.at(idx)}"
        if expr not in self.loaded:
            self.loaded[expr] = f"x{len(self.loaded)}"
            self.lines.append(f"{self.loaded[expr]} = {expr}")
        return self.loaded[expr]

    def index_map(self, e) -> str:
        if e.op is not sh.gather_p:
            return super().index_map(e)
        src, positions = e.ins
        axis = e.attrs["axis"]
        inner = self.load(positions, self.index[axis:axis + len(positions.dims)])
        where = f"wrap_index({inner}, {self.arg[src]}.shape[{axis}], error)"
        return self.load(src, self.index[:axis] + [where] + self.index[axis + len(positions.dims):])

    def out_index(self, e) -> list[str]:
        axes, keep = e.attrs["axes"], e.attrs["keepdims"]
        return [("0" if a in axes else i) for a, i in enumerate(self.index) if keep or a not in axes]

    # -- signatures, for compiling to PTX without a GPU ---------------------------

    def signatures(self) -> dict:
        """The Numba argument types of each function of the module, as the driver calls them."""
        from numba import types
        from numba.np.numpy_support import from_dtype

        def array(dtype, ndim=1):
            return types.Array(from_dtype(dtype), max(ndim, 1), "C")

        def buffer(v):
            return from_dtype(v.dtype) if v in self.scalar_args else array(v.dtype, len(v.dims))
        reds = [e.out for e in self.k.reductions]
        kernel = [buffer(v) for v in self.reads + self.writes]
        kernel += [array(v.dtype) for v in reds] if self.strategy == "block" else []
        kernel += [array(np.dtype(np.int32))] if self.checks_indices else []
        found = {"kernel": tuple(kernel + [types.int64] * self.rank)}
        if self.strategy == "block":
            found["finish"] = tuple([array(v.dtype) for v in reds] + [buffer(v) for v in reds] + [types.int64])
        if self.strategy == "atomic":
            found["prepare"] = tuple(array(v.dtype) for v in reds)
        return found

    # -- the kernel -----------------------------------------------------------

    def parameters(self) -> list[str]:
        names = [self.arg[v] for v in self.reads + self.writes]
        if self.strategy == "block":
            names += [f"partial{j}" for j in range(len(self.k.reductions))]
        if self.checks_indices:
            names.append("error")
        return names + [f"n{a}" for a in range(self.rank)]

    def source(self, name: str = "kernel") -> str:
        for e in self.k.body:
            self.body_line(e)
        for v in self.k.stores:
            self.lines.append(f"{self.arg[v]}{self.at(self.index)} = {self.local[v]}")
        values = [self.operand(e.ins[0]) for e in self.k.reductions]
        extents = [f"n{a}" for a in range(self.rank)]
        head = [f"@cuda.jit", f"def {name}({', '.join(self.parameters())}):",
                f'    """fused[{", ".join(e.op.name for e in self.k.body + self.k.reductions)}], '
                f'{self.strategy}"""']
        body = getattr(self, f"_{self.strategy}")(values, extents)
        out = head + ["    " + line for line in body]
        extra = {"block": self._finish, "atomic": self._prepare}.get(self.strategy)
        return "\n".join(out + (extra() if extra else [])) + "\n"

    def _grid_loop(self, total: str) -> list[str]:
        return [f"for flat in range(cuda.grid(1), {total}, cuda.gridsize(1)):"]

    def _elementwise(self, values, extents) -> list[str]:
        inner = _decompose("flat", self.index, extents) + self.lines
        return self._grid_loop(_product(extents)) + ["    " + line for line in inner or ["pass"]]

    def _block(self, values, extents) -> list[str]:
        reds = self.k.reductions
        lines = [f"shared{j} = cuda.shared.array({self.threads}, {_numba_type(e.out.dtype)})"
                 for j, e in enumerate(reds)]
        lines += [f"acc{j} = {_identity(e.op, e.out.dtype)}" for j, e in enumerate(reds)]
        step = [f"acc{j} = {_COMBINE[e.op].format(f'acc{j}', values[j])}" for j, e in enumerate(reds)]
        inner = _decompose("flat", self.index, extents) + self.lines + step
        lines += self._grid_loop(_product(extents)) + ["    " + line for line in inner]
        lines += ["tid = cuda.threadIdx.x"] + [f"shared{j}[tid] = acc{j}" for j in range(len(reds))]
        lines += ["cuda.syncthreads()", f"half = {self.threads // 2}", "while half > 0:",
                  "    if tid < half:"]
        lines += [f"        shared{j}[tid] = {_COMBINE[e.op].format(f'shared{j}[tid]', f'shared{j}[tid + half]')}"
                  for j, e in enumerate(reds)]
        lines += ["    cuda.syncthreads()", "    half //= 2", "if tid == 0:"]
        lines += [f"    partial{j}[cuda.blockIdx.x] = shared{j}[0]" for j in range(len(reds))]
        return lines

    def _finish(self) -> list[str]:
        """One thread combines the blocks' partials: few of them, and always in one order."""
        reds = self.k.reductions
        outs = [self.arg[e.out] for e in reds]
        lines = ["", "", "@cuda.jit",
                 f"def finish({', '.join(f'partial{j}' for j in range(len(reds)))}, {', '.join(outs)}, blocks):",
                 "    if cuda.grid(1) != 0:", "        return"]
        for j, e in enumerate(reds):
            lines += [f"    acc = {_identity(e.op, e.out.dtype)}", "    for b in range(blocks):",
                      f"        acc = {_COMBINE[e.op].format('acc', f'partial{j}[b]')}",
                      f"    {outs[j]}{self.at(['0'] * len(e.out.dims))} = acc"]
        return lines

    def _rows(self, values, extents) -> list[str]:
        reds = self.k.reductions
        axes = reds[0].attrs["axes"]
        kept = [a for a in range(self.rank) if a not in axes]
        kept_names, red_names = [self.index[a] for a in kept], [self.index[a] for a in axes]
        kept_n, red_n = [extents[a] for a in kept], [extents[a] for a in axes]
        lines = [f"for position in range(cuda.grid(1), {_product(kept_n)}, cuda.gridsize(1)):"]
        inner = _decompose("position", kept_names, kept_n)
        inner += [f"acc{j} = {_identity(e.op, e.out.dtype)}" for j, e in enumerate(reds)]
        inner += [f"for reduced in range({_product(red_n)}):"]
        step = [f"acc{j} = {_COMBINE[e.op].format(f'acc{j}', values[j])}" for j, e in enumerate(reds)]
        inner += ["    " + line for line in _decompose("reduced", red_names, red_n) + self.lines + step]
        inner += [f"{self.arg[e.out]}{self.at(self.out_index(e))} = acc{j}" for j, e in enumerate(reds)]
        return lines + ["    " + line for line in inner]

    def _atomic(self, values, extents) -> list[str]:
        def where(e):       # a plain index for one axis, a tuple for more
            idx = self.out_index(e) or ["0"]
            return idx[0] if len(idx) == 1 else f"({', '.join(idx)})"
        step = [f"cuda.atomic.{_ATOMIC[e.op]}({self.arg[e.out]}, {where(e)}, {values[j]})"
                for j, e in enumerate(self.k.reductions)]
        inner = _decompose("flat", self.index, extents) + self.lines + step
        return self._grid_loop(_product(extents)) + ["    " + line for line in inner]

    def _prepare(self) -> list[str]:
        """Fill the atomic reductions' outputs (passed flat) with their identities, before
        ``kernel`` runs."""
        reds = self.k.reductions
        outs = [f"flat{j}" for j in range(len(reds))]
        lines = ["", "", "@cuda.jit", f"def prepare({', '.join(outs)}):"]
        for e, out in zip(reds, outs):
            lines += [f"    for i in range(cuda.grid(1), {out}.size, cuda.gridsize(1)):",
                      f"        {out}[i] = {_identity(e.op, e.out.dtype)}"]
        return lines
