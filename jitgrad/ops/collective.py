"""Collective primitives: values summed over the ranks of a data-parallel job.

``psum(x)`` is the sum of ``x`` over all ranks of ``jitgrad.distributed``'s
world (itself on a world of one).  Its derivatives are sums over ranks too:
the VJP of a sum over ranks gives each rank the sum of the cotangents, and the
JVP sums the tangents.
"""
from __future__ import annotations

from .._mpi_world import world
from ..primitive import Aval, Primitive, batch_stack, on


def _psum_ref(x):
    return world().allreduce(x)


def _psum_vjp(b, y_bar, y, x):
    """y = Σ_r x_r:  x̄_r = Σ_s ȳ_s (every rank's x feeds every rank's y).  No degenerate cases."""
    return (b.bind(psum_p, y_bar),)


def _psum_jvp(b, x_dots, y, x):
    """dy = Σ_r dx_r.  Reference and degenerate cases as for the VJP."""
    return on(x_dots[0], lambda t: b.bind(psum_p, t))


psum_p = Primitive(
    "psum", shape=lambda x: Aval(x.dims, x.dtype), ref=_psum_ref, vjp=_psum_vjp, jvp=_psum_jvp, batch=batch_stack,
    doc="The sum of x over the ranks of the distributed world.",
)

PRIMITIVES = (psum_p,)
