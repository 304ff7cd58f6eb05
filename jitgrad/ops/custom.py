"""Primitives of user-defined derivatives: ``custom_vjp`` and ``custom_jvp``.

Both are markers over the function's own graph: result ``index`` of a node is
its input ``index``, the function's value computed as ordinary graph (so it
fuses like any other), and once derivatives are built ``rewrite`` drops the
marker.  The other inputs are the function's arguments and the values it reads
from outside.  The function is kept as a graph (``fn``, a ``Body``); the user's
rule (``rule``) is Python, traced into graph the first time a derivative needs
it (a rule may call the function it belongs to), so a graph holding one cannot
be saved (``jg.save`` says so, naming the function).

The rules that apply them trace new graph, so they live in :mod:`jitgrad.custom`,
which fills ``RULES`` when imported (as ``import jitgrad`` does).
"""
from __future__ import annotations

from ..primitive import Aval, Primitive

RULES: dict = {}        # name -> rule, filled by jitgrad.custom


def custom_operands(xs, n_out: int, fn):
    """The values (the function's results), the arguments, and what the function reads from
    outside."""
    n_args = fn.n_x
    return list(xs[:n_out]), list(xs[n_out:n_out + n_args]), list(xs[n_out + n_args:])


def _value_shape(*xs, index, **attrs):
    return Aval(xs[index].dims, xs[index].dtype)


def _primitive(name: str, doc: str) -> Primitive:
    return Primitive(
        name, shape=_value_shape, nin=None, attrs=("fn", "rule", "n_out", "index"),
        ref=lambda *xs, fn, rule, n_out, index, wanted=None: list(xs[:n_out]),
        vjp=lambda b, y_bars, y, *xs, fn, rule, n_out, index: RULES[f"{name}_vjp"](y_bars, xs, fn, rule, n_out),
        jvp=lambda b, x_dots, y, *xs, fn, rule, n_out, index, wanted: RULES[f"{name}_jvp"](
            x_dots, xs, fn, rule, n_out),
        batch=lambda b, batched, y, *xs, fn, rule, n_out, index, wanted: RULES[f"{name}_batch"](
            batched, xs, fn, rule, n_out),
        marker=True, multi_output=True, doc=doc)


custom_vjp_p = _primitive("custom_vjp", "Result ``index`` of a function with a user-given reverse "
                                        "rule: (values, arguments, what fn reads from outside).")
custom_jvp_p = _primitive("custom_jvp", "Result ``index`` of a function with a user-given forward "
                                        "rule: (values, arguments, what fn reads from outside).")

PRIMITIVES = (custom_vjp_p, custom_jvp_p)
