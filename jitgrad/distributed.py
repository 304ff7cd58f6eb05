"""Data-parallel training over MPI (through mpi4py): ``jg.distributed``.

Every rank runs the same graph on its own slice of each global batch; the
gradients are averaged across ranks (``pmean``) before the updates, so every
rank keeps the same params.  ``psum``/``pmean`` are graph primitives with
their own derivative rules, so data-parallel losses can be written and
differentiated in the graph.  A compiled CPU program runs its collectives
between its kernels on the schedule's own buffers, all of a step's
collectives packed into one all-reduce (bucketing, as Horovod's tensor
fusion); on CUDA they are staged through the host.

Without MPI (or outside ``mpiexec``) the world has one rank and every
collective is the identity, so the same script runs anywhere.

    world = jg.distributed.init()
    step = jg.compile([x, y], loss, updates=jg.distributed.data_parallel(jg.optim.adam)(loss, params))
    jg.distributed.broadcast_params(step)                 # rank 0's initial values everywhere
    for xb, yb in jg.data.batches((X, Y), 128, shuffle=True, seed=0, shard=(world.rank, world.size)):
        step(xb, yb)
"""
from __future__ import annotations

import hashlib
import sys
import traceback

import numpy as np

__all__ = ["World", "init", "world", "psum", "pmean", "data_parallel", "broadcast_params",
           "check_same_everywhere"]


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
            for src, dst in group:
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


def _abort_on_exception(comm):
    """An uncaught exception on one rank prints it and aborts every rank: no rank is left
    waiting in a collective for one that died."""
    previous = sys.excepthook

    def hook(kind, value, tb):
        sys.stderr.write(f"[rank {comm.Get_rank()}] " + "".join(traceback.format_exception(kind, value, tb)))
        sys.stderr.flush()
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


def psum(x):
    """The sum of ``x`` over all ranks (a graph node)."""
    from . import functions as F
    from .graph import bind
    from .ops.collective import psum_p
    return bind(psum_p, F.as_tensor(x))


def pmean(x):
    """The mean of ``x`` over all ranks.  The world's size is read when the graph is built,
    so call ``init()`` first."""
    from . import functions as F
    return F.divide(psum(x), float(world().size))


def data_parallel(optimizer):
    """``optimizer`` (e.g. ``jg.optim.adam``) with the gradients averaged over the ranks first:
    every rank then applies the same update to the same params."""
    from .autodiff import grad

    def averaged(loss, params, *args, **kwargs):
        params = list(params)
        grads = [pmean(g) for g in grad(loss, params)]
        return optimizer(loss, params, *args, grads=grads, **kwargs)
    averaged.__name__ = f"data_parallel_{getattr(optimizer, '__name__', 'optimizer')}"
    return averaged


def _fingerprint(f) -> bytes:
    """What must agree across ranks: the schedule's text and every param's name, shape, dtype."""
    from .params import params_of
    text = str(getattr(f, "schedule", ""))
    text += "".join(f"|{p.name}:{p.dtype}{p.shape}" for p in params_of(f))
    return hashlib.sha256(text.encode()).digest()


def check_same_everywhere(f) -> None:
    """Raise (on every rank) if the ranks disagree on ``f``'s graph structure or params."""
    w = world()
    if w.size == 1:
        return
    from .params import params_of
    mine = _fingerprint(f)
    everyone = w.comm.allgather((mine, [(p.name, p.shape, str(p.dtype)) for p in params_of(f)]))
    odd = [r for r, (digest, _) in enumerate(everyone) if digest != everyone[0][0]]
    if odd:
        detail = "; ".join(f"rank {r} params {everyone[r][1]}" for r in [0] + odd)
        raise ValueError(f"ranks {odd} compiled a different graph or params than rank 0: {detail}")


def broadcast_params(f, root: int = 0) -> None:
    """Give every rank ``root``'s param values (after checking that the ranks agree)."""
    w = world()
    check_same_everywhere(f)
    if w.size == 1:
        return
    from .params import params_of
    for p in params_of(f):
        value = np.array(p.value, order="C")        # (ascontiguousarray would make 0-d 1-d)
        w.comm.Bcast(value, root=root)
        p.value = value
