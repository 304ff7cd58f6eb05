"""Primitives of gradient checkpointing (rematerialisation).

``checkpoint`` marks an output of a region built by a function: its value is
the forward value, and its reverse rule rebuilds the region from ``barrier``
copies of the region's arguments and differentiates that copy.  The reverse
pass therefore never reads the forward region's intermediates; the memory
plan frees them as soon as the forward pass is done with them.  Rewrites
drop ``checkpoint`` nodes once derivatives are built, and never look through
a ``barrier``, so the recomputation is not merged back into the forward pass.
"""
from __future__ import annotations

from ..primitive import Aval, Primitive, batch_stack


def flatten(outputs) -> list:
    return list(outputs) if isinstance(outputs, (tuple, list)) else [outputs]


def _checkpoint_vjp(b, y_bar, y, value, *xs, fn, index, region, n_args):
    """Recompute the region from barriers, then differentiate the recomputation."""
    args, free = xs[:n_args], xs[n_args:]
    fresh = [b.bind(barrier_p, x, region=region) for x in args]
    again = flatten(fn(*fresh))[index]
    return (None, *b.partial_vjp([again], fresh + list(free), [y_bar]))


def _checkpoint_batch(b, batched, y, value, *xs, fn, index, region, n_args):
    """Under vmap the region is not recomputed: its batched value is kept, and
    derivatives flow through the batched region itself (same values, more memory)."""
    if batched[0]:
        return value
    size = xs[batched.index(True) - 1].dims[0]
    return b.broadcast_to(value, (size,) + value.dims)


barrier_p = Primitive(
    "barrier", shape=lambda x, *, region: Aval(x.dims, x.dtype), ref=lambda x, region: x,
    scalar="{0}", attrs=("region",),
    vjp=lambda b, y_bar, y, x, *, region: (y_bar,), jvp=lambda b, x_dots, y, x, *, region: x_dots[0],
    batch=batch_stack,
    doc="Identity that rewrites never see through.",
)
checkpoint_p = Primitive(
    "checkpoint", nin=None, attrs=("fn", "index", "region", "n_args"),
    shape=lambda y, *xs, fn, index, region, n_args: Aval(y.dims, y.dtype),
    ref=lambda y, *xs, fn, index, region, n_args: y,
    vjp=_checkpoint_vjp,
    jvp=lambda b, x_dots, y, value, *xs, fn, index, region, n_args: x_dots[0], marker=True,
    batch=_checkpoint_batch,
    doc="Output ``index`` of a checkpointed region: (value, region arguments, free variables).",
)

PRIMITIVES = (barrier_p, checkpoint_p)
