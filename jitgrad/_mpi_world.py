"""The MPI world of a data-parallel job: its ranks and its all-reduces.

Imports nothing of jitgrad, so the ``psum`` primitive's reference and the compiled
programs' collectives (``allreduce_pairs``) read the world without importing
:mod:`jitgrad.distributed`, whose graph-building helpers sit above the builder and
autodiff.  mpi4py is imported only when the job has more than one rank.
"""
from __future__ import annotations

import sys
import time
import traceback

import numpy as np


class World:
    """The ranks of the job: ``rank``, ``size`` and the MPI communicator (None alone)."""

    def __init__(self, comm=None):
        self.comm = comm
        self.rank = comm.Get_rank() if comm is not None else 0
        self.size = comm.Get_size() if comm is not None else 1

    def allreduce(self, x) -> np.ndarray:
        """The sum of ``x`` over the ranks (a new array)."""
        out = np.array(x, copy=True)
        if self.size > 1:
            from mpi4py import MPI
            self.comm.Allreduce(MPI.IN_PLACE, out, op=MPI.SUM)
        return out

    def allreduce_bucket(self, pairs) -> None:
        """``dst = Σ_ranks src`` for each (src, dst) pair, in one all-reduce of one packed buffer
        per dtype."""
        by_dtype: dict = {}
        for src, dst in pairs:
            by_dtype.setdefault(np.dtype(dst.dtype), []).append((src, dst))
        for dtype, group in by_dtype.items():
            if self.size == 1:
                for src, dst in group:
                    dst[...] = src
                continue
            from mpi4py import MPI
            packed = np.concatenate([np.ravel(src) for src, _ in group]).astype(dtype, copy=False)
            self.comm.Allreduce(MPI.IN_PLACE, packed, op=MPI.SUM)
            at = 0
            for _, dst in group:
                dst.reshape(-1)[...] = packed[at:at + dst.size]
                at += dst.size

    def __repr__(self) -> str:
        return f"<jitgrad World rank {self.rank} of {self.size}>"


_WORLD = World()


def world() -> World:
    """The current world (one rank until ``init`` finds more)."""
    return _WORLD


def allreduce_pairs(*arrays) -> None:
    """``dst = Σ_ranks src`` for arrays given as src0, dst0, src1, dst1, ...: what compiled
    programs call between their kernels, one packed all-reduce for all of them."""
    _WORLD.allreduce_bucket(list(zip(arrays[0::2], arrays[1::2])))


_FORWARDING_GRACE_S = 0.5      # once, on a rank that is about to abort the job


def _abort_on_exception(comm):
    """An uncaught exception on one rank prints it and aborts every rank: no rank is left
    waiting in a collective for one that died."""
    previous = sys.excepthook

    def hook(kind, value, tb):
        sys.stderr.write(f"[rank {comm.Get_rank()}] " + "".join(traceback.format_exception(kind, value, tb)))
        sys.stderr.flush()
        # The process manager forwards the ranks' output over pipes and may kill every rank and
        # exit before it has read them (a whole job's stderr has come back empty): give it time
        # to pass the message on.
        time.sleep(_FORWARDING_GRACE_S)
        comm.Abort(1)
        previous(kind, value, tb)
    sys.excepthook = hook


def init() -> World:
    """Join the MPI job this process belongs to (a world of one without mpi4py or mpiexec)."""
    global _WORLD
    try:
        from mpi4py import MPI
    except ImportError:
        _WORLD = World()
        return _WORLD
    comm = MPI.COMM_WORLD
    _WORLD = World(comm if comm.Get_size() > 1 else None)
    if _WORLD.size > 1:
        _abort_on_exception(comm)
    return _WORLD
