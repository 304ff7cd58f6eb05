"""Control flow in the graph: ``scan``, ``fori_loop``, ``while_loop`` and ``cond``, and
their derivative and batching rules.

``scan(body, init, xs)`` calls ``body`` once, on stand-ins shaped like one
step, and keeps what it built as the loop's :class:`~jitgrad.ops.loop.Body`;
values the body reads from outside (params, constants, other Tensors) become
inputs of the loop, so they get derivatives like any other input, and work
that does not depend on the step is done once, before the loop.  The graph
then holds the body once, whatever the number of steps.

Derivatives of a scan are scans:

- forward mode runs the body's JVP alongside it, carrying (carry, tangent);
- reverse mode runs the body's VJP backwards over the steps, reading the
  carry every step began with (stored by the forward loop, a result of the
  same loop) and carrying the cotangent of the carry and the sums of the
  cotangents of the values read from outside.
"""
from __future__ import annotations

import numpy as np

from . import functions as F, graph
from .graph import Tensor, bind
from .ops import leaf, shape as sh
from .ops.loop import RULES, Body, cond_operands, cond_p, scan_p, static_sizes, while_operands, while_p


# -- bodies ----------------------------------------------------------------------------------

def _stand_in(name: str, like: Tensor) -> Tensor:
    return Tensor(leaf.input_p, (), {}, like.dims, like.dtype, name=name)


def trace_body(fn, carry_like, x_like) -> tuple[Body, list[Tensor]]:
    """Call ``fn(carries, xs) -> (new_carries, ys)`` on stand-ins shaped like ``carry_like``
    and ``x_like`` (lists of Tensors); return the body and the outside Tensors it reads, in
    the order of its remaining stand-ins."""
    start = next(graph._serials)
    carries = [_stand_in(f"carry{k}", c) for k, c in enumerate(carry_like)]
    xs = [_stand_in(f"x{k}", x) for k, x in enumerate(x_like)]
    new_carries, ys = fn(carries, xs)
    outputs = [F.as_tensor(o) for o in list(new_carries) + list(ys)]
    free = _read_from_outside(outputs, carries + xs, start)
    free_in = [_stand_in(f"outside{k}", f) for k, f in enumerate(free)]
    outputs = substitute(outputs, dict(zip(map(id, free), free_in)))
    return Body(tuple(carries + xs + free_in), tuple(outputs), len(carries), len(xs)), free


def _read_from_outside(outputs, stand_ins, start: int) -> list[Tensor]:
    """The Tensors that do not depend on ``stand_ins`` but that nodes depending on them read
    (or that are outputs themselves): what the loop takes from outside.  Only nodes made
    since ``start`` (a serial number) can depend on the stand-ins."""
    made = _made_since(outputs, start)
    depends = {id(s) for s in stand_ins}
    free: dict[int, Tensor] = {}
    for node in made:
        if any(id(i) in depends for i in node.inputs):
            depends.add(id(node))
            for i in node.inputs:
                if id(i) not in depends:
                    free.setdefault(id(i), i)
    for o in outputs:
        if id(o) not in depends:
            free.setdefault(id(o), o)
    return list(free.values())


def _made_since(outputs, start: int) -> list[Tensor]:
    """The nodes behind ``outputs`` made since the serial number ``start``, in creation order
    (so each follows its inputs); older nodes are not walked into."""
    made, seen, stack = [], set(), list(outputs)
    while stack:
        node = stack.pop()
        if id(node) in seen or node.serial < start:
            continue
        seen.add(id(node))
        made.append(node)
        stack.extend(node.inputs)
    return sorted(made, key=lambda n: n.serial)


def substitute(outputs, replace: dict) -> list[Tensor]:
    """``outputs`` rebuilt with the nodes ``replace`` maps (by id) replaced."""
    new = _rebuilt(outputs, replace)
    return [new.get(id(o), o) for o in outputs]


def _rebuilt(outputs, replace: dict) -> dict:
    """id(node) -> the node rebuilt, for every node behind ``outputs`` that reads a replaced one."""
    new = dict(replace)
    for node in graph.topological_order(outputs):
        if id(node) in new or not any(id(i) in new for i in node.inputs):
            continue
        new[id(node)] = bind(node.op, *(new.get(id(i), i) for i in node.inputs), **node.attrs)
    return new


def inline_map(body: Body, args) -> dict:
    """id(body node) -> that node computed from ``args`` (one per stand-in) in the graph
    being built, for every node of the body."""
    return _rebuilt(list(body.outputs), {id(p): a for p, a in zip(body.params, args)})


def inline(body: Body, args) -> list[Tensor]:
    """The body's outputs computed from ``args`` (one per stand-in) in the graph being built."""
    copies = inline_map(body, args)
    return [copies.get(id(o), o) for o in body.outputs]


# -- the public loops ----------------------------------------------------------------------

def leaves(tree) -> tuple[list[Tensor], callable]:
    """A Tensor, or a tuple or list of them: the Tensors, and how to rebuild the container."""
    if isinstance(tree, (tuple, list)):
        kind = type(tree)
        leaves = [F.as_tensor(t) for t in tree]
        return leaves, (lambda xs: kind(xs))
    if tree is None:
        return [], (lambda xs: None)
    return [F.as_tensor(tree)], (lambda xs: xs[0])


def scan(body, init, xs=None, length=None, reverse=False, checkpoint=None):
    """Loop ``body(carry, x) -> (carry, y)`` over the leading axis of ``xs``.

    As ``jax.lax.scan``: returns the final carry and the per-step ``y`` stacked
    along a new leading axis (``reverse=True`` runs from the last step to the
    first; ``ys[t]`` still belongs to ``xs[t]``).  ``init``, ``xs`` and what
    ``body`` returns may be a Tensor, or a tuple or list of Tensors; ``y`` may
    be None.  The carry keeps its shapes and dtypes from step to step.  ``length``
    is the number of steps when there are no ``xs``.  Tensors the body reads
    from outside (params, inputs) get their derivatives as usual.  The graph
    holds the body once: compile time does not grow with the number of steps.

    >>> import jitgrad as jg
    >>> x = jg.input("x", (5, 3))
    >>> total, running = jg.scan(lambda c, row: (c + row, c + row), x[0] * 0.0, x)
    >>> running.shape
    (5, 3)
    """
    init_leaves, make_carry = leaves(init)
    x_leaves, make_x = leaves(xs)
    static_sizes("scan", init_leaves + x_leaves)
    length = _trip_count(x_leaves, length)
    if checkpoint is not None:
        if not isinstance(checkpoint, (int, np.integer)) or isinstance(checkpoint, bool) or checkpoint < 1:
            raise ValueError(f"scan: checkpoint must be a positive int (steps per segment), got {checkpoint!r}")
        if checkpoint < length:
            return _segmented(body, init, xs, x_leaves, make_x, length, bool(reverse), int(checkpoint))
    y_maker = []

    def step(carries, x_slices):
        out = body(make_carry(carries), make_x(x_slices) if x_leaves else None)
        if not isinstance(out, tuple) or len(out) != 2:
            raise TypeError("scan: body must return a pair (carry, y)")
        new_carry, y = out
        new_leaves, _ = leaves(new_carry)
        _check_carry(init_leaves, new_leaves)
        y_leaves, make_y = leaves(y)
        y_maker.append(make_y)
        return new_leaves, y_leaves

    one_step = [_slice_like(x) for x in x_leaves]
    loop, free = trace_body(step, init_leaves, one_step)
    static_sizes("scan: the body reads a Tensor that", free)
    results = [bind(scan_p, *init_leaves, *x_leaves, *free, body=loop, length=length, reverse=bool(reverse),
                    index=k) for k in range(loop.n_carry + loop.n_y)]
    return make_carry(results[:loop.n_carry]), y_maker[0](results[loop.n_carry:])


def _segmented(body, init, xs, x_leaves, make_x, length: int, reverse: bool, k: int):
    """``scan(..., checkpoint=k)``: a scan over segments of ``k`` steps whose body scans one
    segment (then the steps left over).  Reverse mode then stores the carry each segment
    began with, and each segment's reverse step recomputes its ``k`` carries: memory
    ~ length / k + k carries instead of length, for one more forward pass.  Same values."""
    whole, rest = divmod(length, k)

    def run(carry, part, steps):
        return scan(body, carry, make_x(part) if x_leaves else None, length=steps, reverse=reverse)

    def segments(carry):
        grouped = [F.reshape(x[:whole * k], (whole, k) + x.shape[1:]) for x in x_leaves]
        carry, ys = scan(lambda c, part: run(c, part, k), carry, grouped or None, length=whole,
                         reverse=reverse)
        flat, make_y = leaves(ys)
        return carry, make_y([F.reshape(y, (whole * k,) + y.shape[2:]) for y in flat])

    def tail(carry):
        return run(carry, [x[whole * k:] for x in x_leaves], rest)

    if not rest:
        return segments(init)
    if reverse:                         # the last steps run first
        carry, ys_tail = tail(init)
        carry, ys_main = segments(carry)
    else:
        carry, ys_main = segments(init)
        carry, ys_tail = tail(carry)
    main, make_y = leaves(ys_main)
    last, _ = leaves(ys_tail)
    return carry, make_y([F.concatenate([a, b], axis=0) for a, b in zip(main, last)])


def fori_loop(lower: int, upper: int, body, init):
    """``carry = body(i, carry)`` for ``i`` from ``lower`` to ``upper - 1`` (fixed bounds), as
    ``jax.lax.fori_loop``: a scan over the index, so reverse mode works too."""
    if not all(isinstance(v, (int, np.integer)) for v in (lower, upper)):
        raise TypeError(f"fori_loop: bounds must be ints (fixed when the graph is built), got "
                        f"{lower!r} and {upper!r}")
    if upper <= lower:
        return init
    steps = F.constant(np.arange(lower, upper, dtype=np.int64))
    carry, _ = scan(lambda c, i: (body(i, c), None), init, steps)
    return carry


def while_loop(cond, body, init):
    """``while cond(carry): carry = body(carry)``, as ``jax.lax.while_loop``: the number of
    steps is decided when it runs.  ``cond`` returns a boolean scalar Tensor; ``body`` returns
    a carry of the same shapes and dtypes.  Forward mode (``jg.jvp``) differentiates through
    it; reverse mode raises (there is no fixed number of steps to store): use
    ``jg.fori_loop`` or ``jg.scan``."""
    init_leaves, make_carry = leaves(init)
    static_sizes("while_loop", init_leaves)

    def test(_, carries):
        pred = F.as_tensor(cond(make_carry(carries)))
        if pred.shape != () or pred.dtype != np.bool_:
            raise TypeError(f"while_loop: cond must return a boolean scalar, got {pred.dtype}{list(pred.shape)}")
        return [], [pred]

    def step(carries, _):
        new_leaves, _ = leaves(body(make_carry(carries)))
        _check_carry(init_leaves, new_leaves, "while_loop")
        return new_leaves, []

    test_body, test_free = trace_body(test, [], init_leaves)
    step_body, step_free = trace_body(step, init_leaves, [])
    static_sizes("while_loop: cond or body reads a Tensor that", test_free + step_free)
    return make_carry(_while_results(init_leaves, test_free, step_free, test_body, step_body))


def _while_results(init, test_free, step_free, test_body, step_body) -> list[Tensor]:
    return [bind(while_p, *init, *test_free, *step_free, cond=test_body, body=step_body, index=k)
            for k in range(len(init))]


def cond(pred, true_fn, false_fn, *operands):
    """``true_fn(*operands)`` if ``pred`` else ``false_fn(*operands)``, as ``jax.lax.cond``:
    only the branch taken runs.  Both return the same structure (a Tensor, or a tuple or
    list of them) with the same shapes and dtypes.  Derivatives are those of the branch
    taken; the other branch contributes nothing, not even NaN."""
    pred = F.as_tensor(pred)
    if pred.shape != () or pred.dtype != np.bool_:
        raise TypeError(f"cond: pred must be a boolean scalar Tensor, got {pred.dtype}{list(pred.shape)}")
    operands = [F.as_tensor(x) for x in operands]
    static_sizes("cond", operands)
    makers = []

    def branch(fn):
        def traced(_, xs):
            results, make = leaves(fn(*xs))
            makers.append(make)
            return [], results
        return traced

    true, true_free = trace_body(branch(true_fn), [], operands)
    false, false_free = trace_body(branch(false_fn), [], operands)
    if len(true.outputs) != len(false.outputs):
        raise ValueError(f"cond: true_fn returns {len(true.outputs)} values, false_fn {len(false.outputs)}")
    for k, (x, y) in enumerate(zip(true.outputs, false.outputs)):
        if x.dims != y.dims or x.dtype != y.dtype:
            raise ValueError(f"cond: result {k} is {x.dtype}{list(x.shape)} from true_fn but "
                             f"{y.dtype}{list(y.shape)} from false_fn")
    static_sizes("cond: a branch reads a Tensor that", true_free + false_free)
    results = _cond_results(pred, operands, true_free, false_free, true, false)
    return makers[0](results)


def _cond_results(pred, operands, true_free, false_free, true, false) -> list[Tensor]:
    return [bind(cond_p, pred, *operands, *true_free, *false_free, true=true, false=false, index=k)
            for k in range(len(true.outputs))]


def _trip_count(x_leaves, length) -> int:
    sizes = {x.shape[0] if x.ndim else None for x in x_leaves}
    if None in sizes:
        raise ValueError("scan: every xs needs a leading axis to scan over, got a 0-d Tensor")
    if len(sizes) > 1:
        raise ValueError(f"scan: the xs have different leading sizes {sorted(sizes)}")
    if sizes:
        (n,) = sizes
        if length is not None and length != n:
            raise ValueError(f"scan: length={length} but the xs have {n} steps")
        return n
    if length is None:
        raise ValueError("scan: give xs or length")
    if not isinstance(length, (int, np.integer)) or length < 0:
        raise ValueError(f"scan: length must be a non-negative int, got {length!r}")
    return int(length)


def _slice_like(x: Tensor) -> Tensor:
    """A stand-in-shaped Tensor for one step of ``x`` (its shape and dtype are what matter)."""
    return Tensor(leaf.input_p, (), {}, x.dims[1:], x.dtype, name="step")


def _check_carry(before: list[Tensor], after: list[Tensor], what: str = "scan") -> None:
    if len(after) != len(before):
        raise ValueError(f"{what}: the body returns {len(after)} carry values for {len(before)} in init")
    for k, (a, b) in enumerate(zip(before, after)):
        if a.dims != b.dims or a.dtype != b.dtype:
            raise ValueError(f"{what}: carry[{k}] goes into the body as {a.dtype}{list(a.shape)} but comes "
                             f"out as {b.dtype}{list(b.shape)}; a carry keeps its shape and dtype")


# -- derivatives (the rules of scan_p, through the builder) --------------------------------

def _float(t: Tensor) -> bool:
    return np.issubdtype(t.dtype, np.floating)


def may_vary(t: Tensor) -> bool:
    """Whether a cotangent of ``t`` can matter: a float computed from some input or param
    (a constant's, such as a number in the body, never does)."""
    if not _float(t):
        return False
    seen, stack = set(), [t]
    while stack:
        node = stack.pop()
        if node.op in (leaf.input_p, leaf.param_p):
            return True
        if id(node) not in seen:
            seen.add(id(node))
            stack.extend(node.inputs)
    return False


def _split(values, body: Body):
    n_c, n_x = body.n_carry, body.n_x
    return list(values[:n_c]), list(values[n_c:n_c + n_x]), list(values[n_c + n_x:])


def scan_jvp(x_dots, xs, body: Body, length: int, reverse: bool, wanted) -> dict:
    """The tangents of a scan's ``wanted`` results: a scan of (carry, carry tangent)."""
    from .autodiff import jvp
    init, seq, free = _split(xs, body)
    init_dot, seq_dot, free_dot = _split(x_dots, body)
    tangent_carries = [k for k, c in enumerate(init) if _float(c)]
    moving_x = [k for k, d in enumerate(seq_dot) if d is not None]
    moving_free = [k for k, d in enumerate(free_dot) if d is not None]
    inner = sorted(k for k in wanted if k >= body.first_node_result)     # stacked body nodes

    def step(carries, x_slices):
        c, c_dot = carries[:len(init)], carries[len(init):]
        x, x_dot = x_slices[:len(seq)], x_slices[len(seq):]
        copies = inline_map(body, c + x + free)
        outs = [copies.get(id(o), o) for o in body.outputs] + [copies[id(body.result_node(k))] for k in inner]
        wrt = [c[k] for k in tangent_carries] + [x[k] for k in moving_x] + [free[k] for k in moving_free]
        dots = list(c_dot) + list(x_dot) + [free_dot[k] for k in moving_free]
        tangents = jvp(outs, wrt, dots) if wrt else [F.zeros_like(o) for o in outs]
        n_c = body.n_carry
        return outs[:n_c] + [tangents[k] for k in tangent_carries], outs[n_c:len(body.outputs)] + tangents[n_c:]

    dot_init = [init_dot[k] if init_dot[k] is not None else F.zeros_like(init[k]) for k in tangent_carries]
    loop, outside = trace_body(step, init + dot_init, [_slice_like(s) for s in seq]
                               + [_slice_like(seq[k]) for k in moving_x])
    operands = init + dot_init + seq + [seq_dot[k] for k in moving_x] + outside

    def result(k):
        return bind(scan_p, *operands, body=loop, length=length, reverse=reverse, index=k)

    # the loop's results: its carries (n_c primal, then the tangents); ys (n_y primal, then the
    # tangents of the n_y ys and of the inner nodes); the history of its carries
    n_c, n_y = body.n_carry, body.n_y
    carries = n_c + len(tangent_carries)
    tangents: dict = {}
    for j, k in enumerate(tangent_carries):
        tangents[k] = result(n_c + j)
        tangents[n_c + n_y + k] = result(carries + 2 * n_y + len(inner) + n_c + j)
    for j in range(n_y):
        tangents[n_c + j] = result(carries + n_y + j)
    for j, k in enumerate(inner):
        tangents[k] = result(carries + 2 * n_y + j)
    return tangents


# Body values a backward step recomputes rather than reads from the forward loop: views, cheaper
# to redo than to store, and the results of a loop inside the body, whose steps the backward
# step runs again (which is how scan(..., checkpoint=k) keeps memory ~ length / k + k).
_RECOMPUTED = (sh.reshape_p, sh.transpose_p, sh.broadcast_to_p, sh.slice_p, scan_p)


def scan_vjp(y_bars: dict, xs, body: Body, length: int, reverse: bool) -> tuple:
    """The cotangents of a scan's operands: a scan of the body's VJP over the steps in the
    other direction.  It reads each step's carry from the forward loop's history and the
    body values its VJP needs (a tanh's output, say) from the forward loop too, as stacked
    results of the same loop, so that the backward steps recompute nothing the forward
    steps computed."""
    from .autodiff import vjp
    init, seq, free = _split(xs, body)
    n_c, n_y = body.n_carry, body.n_y

    def forward(k):
        return bind(scan_p, *xs, body=body, length=length, reverse=reverse, index=k)

    history = [forward(n_c + n_y + k) for k in range(n_c)]
    moving_c = [k for k, c in enumerate(init) if _float(c)]
    moving_x = [k for k, x in enumerate(seq) if _float(x)]
    moving_free = [k for k, f in enumerate(free) if may_vary(f)]
    seeded_y = [j for j in range(n_y) if y_bars.get(n_c + j) is not None and _float(body.outputs[n_c + j])]
    seeded_h = [j for j, k in enumerate(moving_c) if y_bars.get(n_c + n_y + k) is not None]
    seeded_nodes = [k for k in sorted(y_bars) if k >= body.first_node_result and y_bars[k] is not None
                    and _float(body.result_node(k))]
    c_bar0 = [y_bars.get(k) if y_bars.get(k) is not None else F.zeros_like(init[k]) for k in moving_c]
    acc0 = [F.zeros_like(free[k]) for k in moving_free]
    bars = ([y_bars[n_c + j] for j in seeded_y] + [y_bars[n_c + n_y + moving_c[j]] for j in seeded_h]
            + [y_bars[k] for k in seeded_nodes])
    n_mc, n_mx, n_s = len(moving_c), len(moving_x), len(seq)
    stored: list = []

    def step(carries, x_slices, residuals=None):
        start = next(graph._serials)
        c_bar, acc = carries[:n_mc], carries[n_mc:]
        c, x = x_slices[:n_c], x_slices[n_c:n_c + n_s]
        y_bar = x_slices[n_c + n_s:n_c + n_s + len(seeded_y)]
        h_bar = x_slices[n_c + n_s + len(seeded_y):n_c + n_s + len(seeded_y) + len(seeded_h)]
        node_bar = x_slices[n_c + n_s + len(seeded_y) + len(seeded_h):n_c + n_s + len(bars)]
        copies = inline_map(body, c + x + free)
        chosen = ([copies.get(id(body.outputs[k])) for k in moving_c]
                  + [copies.get(id(body.outputs[n_c + j])) for j in seeded_y]
                  + [copies[id(body.result_node(k))] for k in seeded_nodes])
        wrt = [c[k] for k in moving_c] + [x[k] for k in moving_x] + [free[k] for k in moving_free]
        grads = vjp(chosen, wrt, list(c_bar) + list(y_bar) + list(node_bar), partial=True) if chosen and wrt \
            else [F.zeros_like(w) for w in wrt]
        new_c_bar = grads[:n_mc]
        for j, h in zip(seeded_h, h_bar):           # the history's c_t is the carry step t read
            new_c_bar[j] = F.add(new_c_bar[j], h)
        new_acc = [F.add(a, g) for a, g in zip(acc, grads[n_mc + n_mx:])]
        flat = new_c_bar + new_acc + grads[n_mc:n_mc + n_mx]
        if residuals is None:
            cotangents = list(carries) + list(y_bar) + list(h_bar) + list(node_bar)
            stored.extend(_forward_values_read(flat, copies, body, start, cotangents))
        else:
            flat = substitute(flat, {id(copies[id(node)]): r for node, r in zip(stored, residuals)})
        return flat[:n_mc + len(moving_free)], flat[n_mc + len(moving_free):]

    x_like = [_slice_like(t) for t in history + seq + bars]
    trace_body(step, c_bar0 + acc0, x_like)              # a first trace finds what to store
    residuals = [forward(body.first_node_result + body.node_index[id(node)]) for node in stored]
    loop, outside = trace_body(lambda c, x: step(c, x[:len(x_like)], x[len(x_like):]), c_bar0 + acc0,
                               x_like + [_slice_like(r) for r in residuals])
    operands = c_bar0 + acc0 + history + seq + bars + residuals + outside

    def result(k):
        return bind(scan_p, *operands, body=loop, length=length, reverse=not reverse, index=k)
    n_carry_r = n_mc + len(moving_free)
    cotangents: list = [None] * len(xs)
    for j, k in enumerate(moving_c):
        cotangents[k] = result(j)
    for j, k in enumerate(moving_free):
        cotangents[n_c + n_s + k] = result(n_mc + j)
    for j, k in enumerate(moving_x):
        cotangents[n_c + k] = result(n_carry_r + j)
    return tuple(cotangents)


def _forward_values_read(outputs, copies: dict, body: Body, start: int, cotangents) -> list:
    """The body nodes whose values (as ``copies``, recomputed in a backward step built since
    the serial number ``start``, whose stand-ins ``cotangents`` carry cotangents) the step's
    cotangent computations read: what the forward loop should store.  Values made from
    those alone, and views, are recomputed."""
    copy_of = {id(copies[id(n)]): n for n in body.nodes if id(n) in copies}
    made = _made_since(outputs, start)
    cotangent_ids = {id(c) for c in cotangents}
    primal = {id(n) for n in made if id(n) in copy_of}        # the recomputed forward values
    for n in made:                                           # and what is made from them alone
        known = all(id(i) in primal or (i.serial < start and id(i) not in cotangent_ids) for i in n.inputs)
        if id(n) not in primal and known and any(id(i) in primal for i in n.inputs):
            primal.add(id(n))
    found: dict = {}

    def read(node):
        if id(node) not in primal:
            return
        if id(node) in copy_of and copy_of[id(node)].op not in _RECOMPUTED:
            found.setdefault(id(node), copy_of[id(node)])
            return
        for i in node.inputs:
            read(i)

    for n in made:
        if id(n) not in primal:
            for i in n.inputs:
                read(i)
    return sorted(found.values(), key=lambda n: body.node_index[id(n)])


def scan_batch(batched, xs, body: Body, length: int, reverse: bool, wanted) -> dict:
    """The ``wanted`` results of a scan for a stack of examples (``jg.vmap``): one scan whose
    body is the batched body.  A carry is batched if its initial value is, or if the body
    makes it depend on something batched; scanned operands carry the examples on axis 1
    inside the loop, (steps, examples, ...), and every result has them on axis 0."""
    from .batching import vmap
    n_c, n_x, n_y = body.n_carry, body.n_x, body.n_y
    flags = list(batched)
    while True:                      # the carries a batched value reaches, step after step
        reached = _reaches(body, [p for p, f in zip(body.params, flags) if f])
        grown = [k for k in range(n_c) if not flags[k] and id(body.outputs[k]) in reached]
        if not grown:
            break
        for k in grown:
            flags[k] = True
    size = next(x.dims[0] for x, f in zip(xs, batched) if f)
    init = [F.broadcast_to(x, (size,) + x.dims) if flags[k] and not batched[k] else x
            for k, x in enumerate(xs[:n_c])]
    seq = [F.transpose(x, (1, 0) + tuple(range(2, x.ndim))) if flags[n_c + j] else x
           for j, x in enumerate(xs[n_c:n_c + n_x])]
    free = list(xs[n_c + n_x:])
    inner = sorted(k for k in wanted if k >= body.first_node_result)     # stacked body nodes
    in_axes = tuple(0 if f else None for f in flags)
    out_axes = tuple(0 if f else None for f in flags[:n_c]) + (0,) * (n_y + len(inner))

    def one_example(*args):
        copies = inline_map(body, args)
        return [copies.get(id(o), o) for o in body.outputs] + [copies[id(body.result_node(k))] for k in inner]

    def step(carries, x_slices):
        outs = vmap(one_example, in_axes=in_axes, out_axes=out_axes)(*carries, *x_slices, *free)
        return outs[:n_c], outs[n_c:]

    loop, outside = trace_body(step, init, [_slice_like(x) for x in seq])
    operands = init + seq + outside

    def stacked(k):              # (steps, examples, ...) -> (examples, steps, ...)
        r = bind(scan_p, *operands, body=loop, length=length, reverse=reverse, index=k)
        return F.transpose(r, (1, 0) + tuple(range(2, r.ndim)))

    def unbatched(r):
        return F.broadcast_to(r, (size,) + r.dims)

    results = {}
    for k in wanted:
        if k < n_c:
            r = bind(scan_p, *operands, body=loop, length=length, reverse=reverse, index=k)
            results[k] = r if flags[k] else unbatched(r)
        elif k < n_c + n_y:
            results[k] = stacked(k)
        elif k < 2 * n_c + n_y:
            carry, at = k - n_c - n_y, n_c + n_y + len(inner) + k - n_c - n_y
            results[k] = stacked(at) if flags[carry] else unbatched(
                bind(scan_p, *operands, body=loop, length=length, reverse=reverse, index=at))
        else:
            results[k] = stacked(n_c + n_y + inner.index(k))
    return results


def _reaches(body: Body, sources) -> set:
    """Ids of the body's nodes that depend on ``sources``."""
    reached = {id(s) for s in sources}
    for node in graph.topological_order(list(body.outputs)):
        if any(id(i) in reached for i in node.inputs):
            reached.add(id(node))
    return reached


# -- while_loop and cond: derivative and batching rules -------------------------------------

def while_jvp(x_dots, xs, cond_body: Body, body: Body) -> dict:
    """Tangents of a while loop's final carries: the loop run on (carry, tangent), stopping
    when the carry alone says so."""
    from .autodiff import jvp
    init, test_free, step_free = while_operands(xs, cond_body, body)
    init_dot, _, step_free_dot = while_operands(x_dots, cond_body, body)
    moving = [k for k, c in enumerate(init) if _float(c)]
    moving_free = [k for k, d in enumerate(step_free_dot) if d is not None]
    n = len(init)

    def test(_, carries):
        return [], inline(cond_body, carries[:n] + test_free)

    def step(carries, _):
        c, c_dot = carries[:n], carries[n:]
        outs = inline(body, c + step_free)
        wrt = [c[k] for k in moving] + [step_free[k] for k in moving_free]
        tangents = jvp(outs, wrt, list(c_dot) + [step_free_dot[k] for k in moving_free])
        return outs + [tangents[k] for k in moving], []

    dot_init = [init_dot[k] if init_dot[k] is not None else F.zeros_like(init[k]) for k in moving]
    carry_like = init + dot_init
    test_body, t_free = trace_body(test, [], carry_like)
    step_body, s_free = trace_body(step, carry_like, [])
    results = _while_results(carry_like, t_free, s_free, test_body, step_body)
    return {k: results[n + j] for j, k in enumerate(moving)}


def while_batch(batched, xs, cond_body: Body, body: Body) -> dict:
    """A while loop for a stack of examples: it runs while any example's condition holds,
    and an example whose condition is false keeps its carry (a masked step)."""
    from .batching import vmap
    init, test_free, step_free = while_operands(xs, cond_body, body)
    n, size = len(init), next(x.dims[0] for x, f in zip(xs, batched) if f)
    flags_init, flags_test, flags_step = while_operands(list(batched), cond_body, body)
    init = [x if f else F.broadcast_to(x, (size,) + x.dims) for x, f in zip(init, flags_init)]
    carry_axes = (0,) * n
    test_axes = carry_axes + tuple(0 if f else None for f in flags_test)
    step_axes = carry_axes + tuple(0 if f else None for f in flags_step)

    def each_pred(carries):
        return vmap(lambda *a: inline(cond_body, a)[0], in_axes=test_axes)(*carries, *test_free)

    def test(_, carries):
        return [], [F.max(each_pred(carries))]         # any example still running

    def step(carries, _):
        running = each_pred(carries)
        new = vmap(lambda *a: inline(body, a), in_axes=step_axes)(*carries, *step_free)
        return [F.where(F.reshape(running, (size,) + (1,) * (c.ndim - 1)), m, c)
                for m, c in zip(new, carries)], []

    test_body, t_free = trace_body(test, [], init)
    step_body, s_free = trace_body(step, init, [])
    return dict(enumerate(_while_results(init, t_free, s_free, test_body, step_body)))


def cond_jvp(x_dots, xs, true: Body, false: Body) -> dict:
    """Tangents of a cond's results: a cond of the two branches' JVPs."""
    from .autodiff import jvp
    pred, operands, true_free, false_free = cond_operands(xs, true, false)
    _, operand_dots, true_free_dots, false_free_dots = cond_operands(x_dots, true, false)

    def branch(body, free, free_dots):
        def traced(_, args):
            outs = inline(body, list(args) + free)
            pairs = [(w, d) for w, d in zip(list(args) + free, list(operand_dots) + list(free_dots))
                     if d is not None]
            return [], jvp(outs, [w for w, _ in pairs], [d for _, d in pairs])
        return traced

    tangents = _traced_cond(pred, operands, branch(true, true_free, true_free_dots),
                            branch(false, false_free, false_free_dots))
    return dict(enumerate(tangents))


def cond_vjp(y_bars: dict, xs, true: Body, false: Body) -> tuple:
    """Cotangents of a cond's operands: a cond of the two branches' VJPs (each recomputes its
    branch's values; what the other branch reads from outside gets zeros)."""
    from .autodiff import vjp
    pred, operands, true_free, false_free = cond_operands(xs, true, false)
    n = len(true.outputs)
    seeded = [k for k in range(n) if y_bars.get(k) is not None]
    cts = [y_bars[k] for k in seeded]
    moving = [k for k, x in enumerate(operands) if _float(x)]
    moving_true = [k for k, f in enumerate(true_free) if may_vary(f)]
    moving_false = [k for k, f in enumerate(false_free) if may_vary(f)]

    def branch(taken: bool):
        body, own, mine = (true, true_free, moving_true) if taken else (false, false_free, moving_false)

        def traced(_, args):
            outs = inline(body, list(args) + own)
            wrt = [args[k] for k in moving] + [own[k] for k in mine]
            grads = vjp([outs[k] for k in seeded], wrt, cts, partial=True)
            operand_bars, own_bars = grads[:len(moving)], grads[len(moving):]
            true_bars = own_bars if taken else [F.zeros_like(true_free[k]) for k in moving_true]
            false_bars = [F.zeros_like(false_free[k]) for k in moving_false] if taken else own_bars
            return [], operand_bars + true_bars + false_bars
        return traced

    results = _traced_cond(pred, operands, branch(True), branch(False))
    cotangents: list = [None] * len(xs)
    for j, k in enumerate(moving):
        cotangents[1 + k] = results[j]
    offset = 1 + len(operands)
    for j, k in enumerate(moving_true):
        cotangents[offset + k] = results[len(moving) + j]
    for j, k in enumerate(moving_false):
        cotangents[offset + len(true_free) + k] = results[len(moving) + len(moving_true) + j]
    return tuple(cotangents)


def cond_batch(batched, xs, true: Body, false: Body) -> dict:
    """A cond for a stack of examples.  With one predicate for all, a cond of the batched
    branches; with a predicate per example, both branches run and each example takes its
    own (as ``where`` does: derivatives stay NaN-free)."""
    from .batching import vmap
    pred, operands, true_free, false_free = cond_operands(xs, true, false)
    flag_pred, flag_ops, flag_true, flag_false = cond_operands(list(batched), true, false)
    size = next(x.dims[0] for x, f in zip(xs, batched) if f)
    n = len(true.outputs)

    def mapped(body, free, flags):
        axes = tuple(0 if f else None for f in list(flag_ops) + list(flags))
        if not any(f is not None for f in axes):        # only the predicate is per example
            return lambda *args: [F.broadcast_to(o, (size,) + o.dims) for o in inline(body, list(args) + free)]
        return lambda *args: vmap(lambda *a: inline(body, a), in_axes=axes, out_axes=(0,) * n)(*args, *free)

    run_true, run_false = mapped(true, true_free, flag_true), mapped(false, false_free, flag_false)
    if not flag_pred:
        return dict(enumerate(_traced_cond(pred, operands, lambda _, args: ([], list(run_true(*args))),
                                           lambda _, args: ([], list(run_false(*args))))))
    a, b = run_true(*operands), run_false(*operands)
    return {k: F.where(F.reshape(pred, (size,) + (1,) * (x.ndim - 1)), x, y) for k, (x, y) in enumerate(zip(a, b))}


def _traced_cond(pred, operands, true_fn, false_fn) -> list[Tensor]:
    """A cond of two branch functions ``fn(_, operands) -> ([], results)`` (as ``trace_body``
    calls them), without the public cond's checks."""
    true, true_free = trace_body(true_fn, [], operands)
    false, false_free = trace_body(false_fn, [], operands)
    return _cond_results(pred, operands, true_free, false_free, true, false)


RULES.update(scan_jvp=scan_jvp, scan_vjp=scan_vjp, scan_batch=scan_batch, while_jvp=while_jvp,
             while_batch=while_batch, cond_jvp=cond_jvp, cond_vjp=cond_vjp, cond_batch=cond_batch)
