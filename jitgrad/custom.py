"""Derivatives of your own: ``custom_vjp`` and ``custom_jvp``, in the spirit of JAX's.

A function given its own derivative rule is still graph: its value is the
function's graph (it fuses with what surrounds it), and its rule is traced into
graph the first time a derivative needs it.  Nothing runs Python at run time,
and derivatives of the rule are ordinary derivatives, so second order works
where the rule is differentiable graph.  A rule is Python, so a graph holding a
custom function cannot be saved with ``jg.save`` (it says so, naming the
function); its derivatives, once built, can.

Tensors the function reads from outside (params, inputs it closes over) get
their derivatives as usual, through the function's own graph: the rule replaces
the derivative with respect to the *arguments* only.  (In JAX a custom_vjp
function must not close over values that need gradients; here it may.)
"""
from __future__ import annotations

import functools

import numpy as np

from . import functions as F
from .autodiff import jvp as forward, vjp as reverse
from .batching import vmap
from .graph import bind
from .loops import inline, leaves, may_vary, trace_body
from .ops.custom import RULES, custom_jvp_p, custom_operands, custom_vjp_p


class Rule:
    """A user's derivative rule, traced into graph when a derivative first needs it (a rule
    may call the very function it belongs to: tracing it eagerly would never end).
    ``name`` names the function, for messages."""

    def __init__(self, name: str, trace):
        self.name, self._trace, self._traced = name, trace, None

    def traced(self):
        if self._traced is None:
            self._traced = self._trace()
        return self._traced

    def __repr__(self) -> str:
        return f"rule of {self.name}"


class custom_vjp:  # noqa: N801  (used as a function and as a decorator, like jax.custom_vjp)
    """``fn`` with the reverse-mode rule ``fwd``/``bwd``.

    ``fwd(*args) -> (out, residuals)`` computes the value and what the reverse
    pass keeps (a Tensor, a tuple or list of Tensors, or None); ``bwd(residuals,
    out_bar) -> args_bar`` returns one cotangent per argument (None for zero),
    shaped like the argument.  ``fwd`` and ``bwd`` build graph like ``fn``.
    Forward mode differentiates ``fn`` itself.  As a decorator::

        @jg.custom_vjp
        def clip_gradient(x):
            return x
        clip_gradient.defvjp(lambda x: (x, None), lambda _, g: (jg.clip(g, -1.0, 1.0),))
    """

    def __init__(self, fn, fwd=None, bwd=None):
        self.fn, self.fwd, self.bwd = fn, fwd, bwd
        functools.update_wrapper(self, fn)

    def defvjp(self, fwd, bwd):
        self.fwd, self.bwd = fwd, bwd
        return self

    def __call__(self, *args):
        if self.fwd is None or self.bwd is None:
            raise TypeError(f"custom_vjp: {_name(self.fn)} has no rule yet; call .defvjp(fwd, bwd)")
        args = [F.as_tensor(a) for a in args]
        fn_body, fn_free, make_out = _trace_function(self.fn, args)
        rule = Rule(_name(self.fn), lambda: self._trace_rule(args, fn_body, make_out))
        return make_out([bind(custom_vjp_p, *inline(fn_body, args + fn_free), *args, *fn_free, fn=fn_body,
                              rule=rule, n_out=len(fn_body.outputs), index=k)
                         for k in range(len(fn_body.outputs))])

    def _trace_rule(self, args, fn_body, make_out):
        """(fwd's body, what it reads from outside, bwd's body, what it reads from outside)."""
        name, n_out, residual_tree = _name(self.fn), len(fn_body.outputs), []

        def forward_pass(_, xs):
            result = self.fwd(*xs)
            if not isinstance(result, tuple) or len(result) != 2:
                raise TypeError(f"custom_vjp: fwd of {name} must return a pair (out, residuals)")
            out = leaves(result[0])[0]
            res, make_res = leaves(result[1])
            _check_like(out, fn_body.outputs, f"custom_vjp: fwd of {name} returns", "fn's")
            residual_tree.append(make_res)
            return [], out + res

        fwd_body, fwd_free = trace_body(forward_pass, [], args)
        residuals = list(fwd_body.outputs[n_out:])

        def backward_pass(_, xs):
            res, out_bar = xs[:len(residuals)], xs[len(residuals):]
            bars = self.bwd(residual_tree[0](res), make_out(out_bar))
            bars = list(bars) if isinstance(bars, (tuple, list)) else [bars]
            if len(bars) != len(args):
                raise ValueError(f"custom_vjp: bwd of {name} returns {len(bars)} cotangents for "
                                 f"{len(args)} arguments")
            filled = [F.zeros_like(a) if g is None else F.as_tensor(g) for g, a in zip(bars, args)]
            _check_like(filled, args, f"custom_vjp: bwd of {name} returns", "the arguments'")
            return [], [F.astype(g, a.dtype) for g, a in zip(filled, args)]

        bwd_body, bwd_free = trace_body(backward_pass, [], residuals + list(fn_body.outputs))
        return fwd_body, fwd_free, bwd_body, bwd_free


class custom_jvp:  # noqa: N801  (used as a function and as a decorator, like jax.custom_jvp)
    """``fn`` with the forward-mode rule ``jvp(primals, tangents) -> (out, out_dot)``.

    ``primals`` and ``tangents`` are tuples with one Tensor per argument; ``out_dot``
    must be linear in the tangents: reverse mode is its transpose (the VJP of
    ``out_dot`` with respect to the tangents), as in JAX.  As a decorator::

        @jg.custom_jvp
        def log1pexp(x):
            return jg.log1p(jg.exp(x))

        @log1pexp.defjvp
        def _(primals, tangents):
            (x,), (t,) = primals, tangents
            return log1pexp(x), t * jg.sigmoid(x)
    """

    def __init__(self, fn, jvp=None):
        self.fn, self.jvp = fn, jvp
        functools.update_wrapper(self, fn)

    def defjvp(self, jvp):
        self.jvp = jvp
        return jvp

    def __call__(self, *args):
        if self.jvp is None:
            raise TypeError(f"custom_jvp: {_name(self.fn)} has no rule yet; call .defjvp(jvp)")
        args = [F.as_tensor(a) for a in args]
        fn_body, fn_free, make_out = _trace_function(self.fn, args)
        rule = Rule(_name(self.fn), lambda: self._trace_rule(args, fn_body))
        return make_out([bind(custom_jvp_p, *inline(fn_body, args + fn_free), *args, *fn_free, fn=fn_body,
                              rule=rule, n_out=len(fn_body.outputs), index=k)
                         for k in range(len(fn_body.outputs))])

    def _trace_rule(self, args, fn_body):
        """(the jvp's body on (primals, tangents), what it reads from outside)."""
        name, n = _name(self.fn), len(args)

        def tangent_pass(_, xs):
            result = self.jvp(tuple(xs[:n]), tuple(xs[n:]))
            if not isinstance(result, tuple) or len(result) != 2:
                raise TypeError(f"custom_jvp: jvp of {name} must return a pair (out, out_dot)")
            out, out_dot = leaves(result[0])[0], leaves(result[1])[0]
            _check_like(out, fn_body.outputs, f"custom_jvp: jvp of {name} returns out with", "fn's")
            _check_like(out_dot, fn_body.outputs, f"custom_jvp: jvp of {name} returns out_dot with", "fn's")
            return [], out + [F.astype(d, o.dtype) for d, o in zip(out_dot, fn_body.outputs)]

        return trace_body(tangent_pass, [], args + args)


def _name(fn) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


def _trace_function(fn, args):
    """``fn`` traced on stand-ins for ``args``: its body, what it reads from outside, and how
    to rebuild its output's structure."""
    maker = []

    def traced(_, xs):
        results, make = leaves(fn(*xs))
        maker.append(make)
        return [], results

    body, free = trace_body(traced, [], args)
    return body, free, maker[0]


def _check_like(got, want, what: str, whose: str) -> None:
    if len(got) != len(want):
        raise ValueError(f"{what} {len(got)} values, {whose} {len(want)}")
    for k, (g, w) in enumerate(zip(got, want)):
        if g.shape != w.shape:
            raise ValueError(f"{what} value {k} of shape {g.shape}, {whose} has shape {w.shape}")


# -- the rules --------------------------------------------------------------------------------

def _through_fn(fn, args, fn_free, seeds, mode):
    """Derivatives through the function's own graph, for what it reads from outside:
    ``seeds`` are the tangents of ``fn_free`` (forward: returns the outputs' tangents, or
    None) or the outputs' cotangents (reverse: returns one cotangent per ``fn_free``)."""
    outs = inline(fn, list(args) + list(fn_free))
    if mode == "fwd":
        pairs = [(f, d) for f, d in zip(fn_free, seeds) if d is not None]
        return forward(outs, [f for f, _ in pairs], [d for _, d in pairs]) if pairs else None
    moving = [f for f in fn_free if may_vary(f)]
    seeded = [(o, c) for o, c in zip(outs, seeds) if c is not None]
    if not moving or not seeded:
        return [None] * len(fn_free)
    found = dict(zip(map(id, moving), reverse([o for o, _ in seeded], moving, [c for _, c in seeded],
                                              partial=True)))
    return [found.get(id(f)) for f in fn_free]


def custom_vjp_vjp(y_bars, xs, fn, rule, n_out):
    values, args, fn_free = custom_operands(xs, n_out, fn)
    fwd, fwd_free, bwd, bwd_free = rule.traced()
    residuals = inline(fwd, args + fwd_free)[n_out:]
    out_bars = [y_bars.get(k) if y_bars.get(k) is not None else F.zeros_like(v) for k, v in enumerate(values)]
    args_bar = inline(bwd, residuals + out_bars + bwd_free)
    free_bars = _through_fn(fn, args, fn_free, [y_bars.get(k) for k in range(n_out)], "rev")
    return (None,) * n_out + tuple(args_bar) + tuple(free_bars)


def custom_vjp_jvp(x_dots, xs, fn, rule, n_out):
    """Forward mode differentiates the function itself: its values' tangents, as autodiff
    computed them through the function's graph."""
    return {k: x_dots[k] for k in range(n_out)}


def custom_jvp_jvp(x_dots, xs, fn, rule, n_out):
    values, args, fn_free = custom_operands(xs, n_out, fn)
    _, arg_dots, free_dots = custom_operands(x_dots, n_out, fn)
    tangents = [None] * n_out
    if any(d is not None for d in arg_dots):
        jvp_body, jvp_free = rule.traced()
        filled = [F.zeros_like(a) if d is None else d for d, a in zip(arg_dots, args)]
        tangents = inline(jvp_body, args + filled + jvp_free)[n_out:]
    through = _through_fn(fn, args, fn_free, free_dots, "fwd")
    if through is not None:
        tangents = [u if t is None else F.add(t, u) for t, u in zip(tangents, through)]
    return {k: t for k, t in enumerate(tangents) if t is not None}


def custom_jvp_vjp(y_bars, xs, fn, rule, n_out):
    """Reverse mode is the transpose of the user's (linear) tangent map: the VJP of out_dot
    with respect to the tangents, taken at zero tangents."""
    values, args, fn_free = custom_operands(xs, n_out, fn)
    jvp_body, jvp_free = rule.traced()
    seeded = [k for k in range(n_out) if y_bars.get(k) is not None]
    moving = [k for k, a in enumerate(args) if np.issubdtype(a.dtype, np.floating)]
    zero_tangents = [F.zeros_like(a) for a in args]
    out_dots = inline(jvp_body, args + zero_tangents + jvp_free)[n_out:]
    args_bar = [None] * len(args)
    if moving and seeded:
        bars = reverse([out_dots[k] for k in seeded], [zero_tangents[k] for k in moving],
                       [y_bars[k] for k in seeded], partial=True)
        for k, bar in zip(moving, bars):
            args_bar[k] = bar
    free_bars = _through_fn(fn, args, fn_free, [y_bars.get(k) for k in range(n_out)], "rev")
    return (None,) * n_out + tuple(args_bar) + tuple(free_bars)


def _batched_args(batched, xs, n_out, fn) -> list:
    """The arguments of the batched custom function, each with the examples axis (one without
    it is broadcast: the broadcast's own VJP then sums its cotangent over the examples)."""
    size = next(x.dims[0] for x, f in zip(xs, batched) if f)
    _, args, _ = custom_operands(xs, n_out, fn)
    _, flags, _ = custom_operands(list(batched), n_out, fn)
    return [a if f else F.broadcast_to(a, (size,) + a.dims) for a, f in zip(args, flags)]


def _mapped(body, outside, flags_outside=None):
    """``body`` as a function of stand-ins with the examples axis, reading ``outside``
    (with the axis where ``flags_outside`` says so)."""
    flags_outside = flags_outside or [False] * len(outside)

    def run(*args):
        axes = (0,) * len(args) + tuple(0 if f else None for f in flags_outside)
        return vmap(lambda *a: inline(body, a), in_axes=axes, out_axes=(0,) * len(body.outputs))(*args, *outside)
    return run


def custom_vjp_batch(batched, xs, fn, rule, n_out):
    """The custom function of a stack of examples: the function and its rule, batched."""
    _, _, fn_free = custom_operands(xs, n_out, fn)
    _, _, fn_flags = custom_operands(list(batched), n_out, fn)
    run_fn = _mapped(fn, fn_free, fn_flags)

    def batched_fwd(*args):
        fwd, fwd_free, _, _ = rule.traced()
        outs = _mapped(fwd, fwd_free)(*args)
        return list(outs[:n_out]), list(outs[n_out:])

    def batched_bwd(res, out_bar):
        _, _, bwd, bwd_free = rule.traced()
        return tuple(_mapped(bwd, bwd_free)(*res, *leaves(out_bar)[0]))

    run = custom_vjp(lambda *a: list(run_fn(*a)), batched_fwd, batched_bwd)
    return dict(enumerate(run(*_batched_args(batched, xs, n_out, fn))))


def custom_jvp_batch(batched, xs, fn, rule, n_out):
    _, _, fn_free = custom_operands(xs, n_out, fn)
    _, _, fn_flags = custom_operands(list(batched), n_out, fn)
    run_fn = _mapped(fn, fn_free, fn_flags)

    def batched_jvp(primals, tangents):
        jvp_body, jvp_free = rule.traced()
        outs = _mapped(jvp_body, jvp_free)(*primals, *tangents)
        return list(outs[:n_out]), list(outs[n_out:])

    run = custom_jvp(lambda *a: list(run_fn(*a)), batched_jvp)
    return dict(enumerate(run(*_batched_args(batched, xs, n_out, fn))))


RULES.update(custom_vjp_vjp=custom_vjp_vjp, custom_vjp_jvp=custom_vjp_jvp, custom_vjp_batch=custom_vjp_batch,
             custom_jvp_vjp=custom_jvp_vjp, custom_jvp_jvp=custom_jvp_jvp, custom_jvp_batch=custom_jvp_batch)
