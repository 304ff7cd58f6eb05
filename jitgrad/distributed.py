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

import numpy as np

from . import functions as F
from ._mpi_world import World, allreduce_pairs, init, world  # noqa: F401  (compiled code calls it)
from .autodiff import grad
from .graph import bind
from .ops.collective import psum_p
from .params import params_of

__all__ = ["World", "init", "world", "psum", "pmean", "data_parallel", "broadcast_params",
           "check_same_everywhere"]


def psum(x):
    """The sum of ``x`` over all ranks (a graph node)."""
    return bind(psum_p, F.as_tensor(x))


def pmean(x):
    """The mean of ``x`` over all ranks.  The world's size is read when the graph is built,
    so call ``init()`` first."""
    return F.divide(psum(x), float(world().size))


def data_parallel(optimizer):
    """``optimizer`` (e.g. ``jg.optim.adam``) with the gradients averaged over the ranks first:
    every rank then applies the same update to the same params."""
    def averaged(loss, params, *args, **kwargs):
        params = list(params)
        grads = [pmean(g) for g in grad(loss, params)]
        return optimizer(loss, params, *args, grads=grads, **kwargs)
    averaged.__name__ = f"data_parallel_{getattr(optimizer, '__name__', 'optimizer')}"
    return averaged


def _fingerprint(f) -> bytes:
    """What must agree across ranks: the schedule's text and every param's name, shape, dtype."""
    text = str(getattr(f, "schedule", ""))
    text += "".join(f"|{p.name}:{p.dtype}{p.shape}" for p in params_of(f))
    return hashlib.sha256(text.encode()).digest()


def check_same_everywhere(f) -> None:
    """Raise (on every rank) if the ranks disagree on ``f``'s graph structure or params."""
    w = world()
    if w.size == 1:
        return
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
    for p in params_of(f):
        value = np.array(p.value, order="C")        # (ascontiguousarray would make 0-d 1-d)
        w.comm.Bcast(value, root=root)
        p.value = value
