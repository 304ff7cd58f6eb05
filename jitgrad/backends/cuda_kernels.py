"""Fused kernels for the CUDA target, written from the same ``Kernel`` steps as the CPU's.

The body of a kernel (scalar expressions, index maps, stores) is generated
exactly as for the CPU (``kernel_body.KernelBody``); what differs is how the
iteration space is spread over threads (the ``Strategy``):

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

from enum import Enum

import numpy as np

from ..fusion import Kernel
from ..ops import reduce as rd, shape as sh
from .kernel_body import COMBINE, KernelBody, identity, import_helpers

PRELUDE = """\
import math
import numpy as np
import numba
from numba import cuda
""" + import_helpers("jitgrad.backends.cuda_scalars")

_ATOMIC = {rd.reduce_sum_p: "add", rd.reduce_max_p: "max", rd.reduce_min_p: "min"}
_NUMBA_TYPE = {"bool": "numba.boolean"}


def _numba_type(dtype: np.dtype) -> str:
    return _NUMBA_TYPE.get(dtype.name, f"numba.{dtype.name}")


class Strategy(Enum):
    """How a kernel's reductions are spread over threads (see the module docstring)."""
    ELEMENTWISE = "elementwise"
    BLOCK = "block"
    ROWS = "rows"
    ATOMIC = "atomic"


def strategy(k: Kernel) -> Strategy:
    if not k.reductions:
        return Strategy.ELEMENTWISE
    axes = {tuple(e.attrs["axes"]) for e in k.reductions}
    if len(axes) == 1:
        (only,) = axes
        return Strategy.BLOCK if len(only) == len(k.dims) else Strategy.ROWS
    return Strategy.ATOMIC


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


class CudaKernelWriter(KernelBody):
    """Writes one fused kernel as a ``@cuda.jit`` function named ``kernel`` (plus ``finish``
    or ``prepare`` for the block and atomic strategies)."""

    empty_index = "0"           # a 0-d buffer is an array of one element on the device

    def __init__(self, kernel: Kernel, literals: dict, scalar_args: set, threads: int):
        super().__init__(kernel, literals, scalar_args)
        self.threads = threads
        self.strategy = strategy(kernel)
        self.checks_indices = any(e.op is sh.gather_p for e in kernel.body)
        if self.strategy is Strategy.ATOMIC and any(e.op not in _ATOMIC for e in kernel.reductions):
            names = sorted({e.op.name for e in kernel.reductions if e.op not in _ATOMIC})
            raise NotImplementedError(f"target 'cuda': {', '.join(names)} fused with reductions over "
                                      f"other axes has no atomic form")

    def checked_index(self, inner: str, src, axis: int) -> str:
        return f"wrap_index({inner}, {self.arg[src]}.shape[{axis}], error)"     # sets error[0]

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
        kernel += [array(v.dtype) for v in reds] if self.strategy is Strategy.BLOCK else []
        kernel += [array(np.dtype(np.int32))] if self.checks_indices else []
        found = {"kernel": tuple(kernel + [types.int64] * self.rank)}
        if self.strategy is Strategy.BLOCK:
            found["finish"] = tuple([array(v.dtype) for v in reds] + [buffer(v) for v in reds] + [types.int64])
        if self.strategy is Strategy.ATOMIC:
            found["prepare"] = tuple(array(v.dtype) for v in reds)
        return found

    # -- the kernel -----------------------------------------------------------

    def parameters(self) -> list[str]:
        names = [self.arg[v] for v in self.reads + self.writes]
        if self.strategy is Strategy.BLOCK:
            names += [f"partial{j}" for j in range(len(self.k.reductions))]
        if self.checks_indices:
            names.append("error")
        return names + [f"n{a}" for a in range(self.rank)]

    def source(self, name: str = "kernel") -> str:
        self.body()
        values = [self.operand(e.ins[0]) for e in self.k.reductions]
        extents = [f"n{a}" for a in range(self.rank)]
        head = ["@cuda.jit", f"def {name}({', '.join(self.parameters())}):",
                f'    """fused[{", ".join(e.op.name for e in self.k.body + self.k.reductions)}], '
                f'{self.strategy.value}"""']
        match self.strategy:
            case Strategy.ELEMENTWISE:
                body, extra = self._elementwise(extents), []
            case Strategy.BLOCK:
                body, extra = self._block(values, extents), self._finish()
            case Strategy.ROWS:
                body, extra = self._rows(values, extents), []
            case Strategy.ATOMIC:
                body, extra = self._atomic(values, extents), self._prepare()
        return "\n".join(head + ["    " + line for line in body] + extra) + "\n"

    def _grid_loop(self, total: str) -> list[str]:
        return [f"for flat in range(cuda.grid(1), {total}, cuda.gridsize(1)):"]

    def _elementwise(self, extents) -> list[str]:
        inner = _decompose("flat", self.index, extents) + self.lines
        return self._grid_loop(_product(extents)) + ["    " + line for line in inner or ["pass"]]

    def _block(self, values, extents) -> list[str]:
        reds = self.k.reductions
        lines = [f"shared{j} = cuda.shared.array({self.threads}, {_numba_type(e.out.dtype)})"
                 for j, e in enumerate(reds)]
        lines += [f"acc{j} = {identity(e.op, e.out.dtype)}" for j, e in enumerate(reds)]
        step = [f"acc{j} = {COMBINE[e.op].format(f'acc{j}', values[j])}" for j, e in enumerate(reds)]
        inner = _decompose("flat", self.index, extents) + self.lines + step
        lines += self._grid_loop(_product(extents)) + ["    " + line for line in inner]
        lines += ["tid = cuda.threadIdx.x"] + [f"shared{j}[tid] = acc{j}" for j in range(len(reds))]
        lines += ["cuda.syncthreads()", f"half = {self.threads // 2}", "while half > 0:",
                  "    if tid < half:"]
        lines += [f"        shared{j}[tid] = {COMBINE[e.op].format(f'shared{j}[tid]', f'shared{j}[tid + half]')}"
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
            lines += [f"    acc = {identity(e.op, e.out.dtype)}", "    for b in range(blocks):",
                      f"        acc = {COMBINE[e.op].format('acc', f'partial{j}[b]')}",
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
        inner += [f"acc{j} = {identity(e.op, e.out.dtype)}" for j, e in enumerate(reds)]
        inner += [f"for reduced in range({_product(red_n)}):"]
        step = [f"acc{j} = {COMBINE[e.op].format(f'acc{j}', values[j])}" for j, e in enumerate(reds)]
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
                      f"        {out}[i] = {identity(e.op, e.out.dtype)}"]
        return lines
