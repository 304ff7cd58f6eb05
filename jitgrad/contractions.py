"""Contractions: ``einsum`` and the products NumPy builds from it.

``einsum`` follows numpy.einsum (explicit and implicit output, ``...``
broadcasting, a subscript repeated within one operand takes a diagonal, a
subscript of one operand alone that the output lacks is summed first, 0-d
operands).  Operands are contracted two at a time in an order chosen to
minimise flops (``optimize``: the optimal order for up to 4 operands, a greedy
one beyond, like opt_einsum's), and each pairwise contraction is transposes,
reshapes and one matmul batched over the subscripts both keep, so BLAS does
the work.  Everything is built from :mod:`jitgrad.functions`, so derivatives
of any order, ``vmap`` and every target come with it.

``tensordot``, ``inner``, ``vdot``, ``kron`` and ``cross`` are numpy's.
"""
from __future__ import annotations

import itertools
import math
import string

import numpy as np

from . import functions as F
from .graph import Tensor
from .indexing import index
from .ops._shapes import fmt_shape, normalize_axis, normalize_axis_tuple
from .primitive import Dim

__all__ = ["einsum", "einsum_path", "tensordot", "inner", "vdot", "kron", "cross"]

_LETTERS = string.ascii_letters
CALL_TIME_GUESS = 64        # the size a call-time (None) axis is assumed to have when costing orders


# -- parsing -----------------------------------------------------------------

def _ell(k: int) -> str:
    """The label of the k-th axis from the right that an ellipsis covers."""
    return f".{k}"


def _sublist_to_str(sub) -> str:
    out = []
    for s in sub:
        if s is Ellipsis:
            out.append("...")
        elif isinstance(s, (int, np.integer)) and 0 <= s < len(_LETTERS):
            out.append(_LETTERS[int(s)])
        else:
            raise ValueError(f"einsum: subscript {s!r} in a sublist must be an int in [0, 52) or Ellipsis")
    return "".join(out)


def _split_interleaved(args) -> tuple[str, list]:
    """``einsum(op0, sub0, op1, sub1, ..., [sub_out])`` as a subscripts string and operands."""
    operands, terms = list(args[0::2]), [_sublist_to_str(s) for s in args[1::2]]
    out = None
    if len(args) % 2:
        out = _sublist_to_str(args[-1])
        operands = operands[:-1]
    return ",".join(terms) + ("" if out is None else "->" + out), operands


def _term_labels(subscripts: str, term: str, i: int | None, ndim: int | None, shape) -> list:
    """The labels of one term; ``ndim`` None for the output (its ellipsis is filled in later)."""
    what = "the output" if i is None else f"operand {i}"
    bad = set(term) - set(_LETTERS) - {"."}
    if bad:
        raise ValueError(f"einsum: invalid character {sorted(bad)[0]!r} in subscripts {subscripts!r}")
    if term.count("...") > 1 or term.replace("...", "").count("."):
        raise ValueError(f"einsum: {what} in subscripts {subscripts!r} has a malformed ellipsis (use '...' once)")
    before, sep, after = term.partition("...")
    letters = len(before) + len(after)
    if ndim is None:
        return [*before, *(["..."] if sep else []), *after]
    if not sep and letters != ndim:
        raise ValueError(f"einsum: subscripts {term!r} of operand {i} name {letters} axes, but its shape "
                         f"{fmt_shape(shape)} has {ndim} (subscripts {subscripts!r})")
    if sep and letters > ndim:
        raise ValueError(f"einsum: subscripts {term!r} of operand {i} name {letters} axes besides '...', but "
                         f"its shape {fmt_shape(shape)} has only {ndim} (subscripts {subscripts!r})")
    return [*before, *[_ell(k) for k in range(ndim - letters, 0, -1)], *after]


def _parse(subscripts: str, shapes) -> tuple[list, list]:
    """Per-operand label lists and the output's, ellipses expanded to labels '.k'."""
    if not isinstance(subscripts, str):
        raise TypeError(f"einsum: subscripts must be a string, got {type(subscripts).__name__}")
    s = subscripts.replace(" ", "")
    if s.count("->") > 1 or s.replace("->", "").count("-") or s.replace("->", "").count(">"):
        raise ValueError(f"einsum: subscripts {subscripts!r} must hold at most one '->' and no other '-' or '>'")
    inp, arrow, out = s.partition("->")
    terms = inp.split(",")
    if len(terms) != len(shapes):
        raise ValueError(f"einsum: subscripts {subscripts!r} name {len(terms)} operands, "
                         f"but {len(shapes)} were given")
    labels = [_term_labels(subscripts, t, i, len(sh), sh) for i, (t, sh) in enumerate(zip(terms, shapes))]
    rank = max([int(lab[1:]) for ls in labels for lab in ls if lab.startswith(".")], default=0)
    ellipsis = [_ell(k) for k in range(rank, 0, -1)]
    if not arrow:
        counts: dict = {}
        for ls in labels:
            for lab in ls:
                if not lab.startswith("."):
                    counts[lab] = counts.get(lab, 0) + 1
        return labels, ellipsis + sorted(lab for lab, c in counts.items() if c == 1)
    out_terms = _term_labels(subscripts, out, None, None, None)
    if "..." not in out_terms and rank:
        raise ValueError(f"einsum: operands in {subscripts!r} have axes under '...', but the output names "
                         f"no '...' to put them in")
    known = {lab for ls in labels for lab in ls}
    output = []
    for lab in out_terms:
        if lab == "...":
            output += ellipsis
            continue
        if lab in output:
            raise ValueError(f"einsum: output subscript {lab!r} appears more than once in {subscripts!r}")
        if lab not in known:
            raise ValueError(f"einsum: output subscript {lab!r} appears in no operand of {subscripts!r}")
        output.append(lab)
    return labels, output


def _show(lab) -> str:
    return "'...'" if isinstance(lab, str) and lab.startswith(".") else repr(lab)


# -- sizes -------------------------------------------------------------------

def _label_sizes(name: str, labels, tensors, what: str) -> dict:
    """One size per label: its static size other than 1, else a call-time Dim, else 1.

    Static sizes must agree (a size 1 broadcasts, as NumPy's einsum allows).
    """
    seen: dict = {}
    for i, (ls, t) in enumerate(zip(labels, tensors)):
        for lab, d in zip(ls, t.dims):
            seen.setdefault(lab, []).append((i, d))
    sizes = {}
    for lab, entries in seen.items():
        static = {d for _, d in entries if isinstance(d, int) and d != 1}
        if len(static) > 1:
            listed = ", ".join(f"{fmt_shape(t.dims)}" for t in tensors)
            raise ValueError(f"{name}: subscript {_show(lab)} has sizes {sorted(static)} in operands of shapes "
                             f"{listed} ({what})")
        dims = [d for _, d in entries if isinstance(d, Dim)]
        sizes[lab] = static.pop() if static else (dims[0] if dims else 1)
    return sizes


def _cost_size(d) -> int:
    return d if isinstance(d, int) else CALL_TIME_GUESS


class _Merger:
    """Sizes of merged axes (a product of call-time sizes is one derived Dim per group)."""

    def __init__(self):
        self.cache: dict = {}

    def __call__(self, dims) -> int | Dim:
        dims = tuple(d for d in dims if not (isinstance(d, int) and d == 1))
        if all(isinstance(d, int) for d in dims):
            return math.prod(dims)
        if len(dims) == 1:
            return dims[0]
        key = tuple((id(d), d) if isinstance(d, Dim) else d for d in dims)
        if key not in self.cache:
            self.cache[key] = Dim(derive=("prod", dims, None))
        return self.cache[key]


# -- preparing one operand ---------------------------------------------------

def _diagonals(name: str, x: Tensor, labels: list, what: str) -> tuple[Tensor, list]:
    """Take the diagonal of every subscript repeated within the operand."""
    for lab in dict.fromkeys(labels):
        pos = [i for i, lb in enumerate(labels) if lb == lab]
        if len(pos) < 2:
            continue
        dims = {x.dims[i] for i in pos}
        if len(dims) > 1 or not all(isinstance(d, int) for d in dims):
            raise ValueError(f"{name}: repeated subscript {_show(lab)} needs one fixed size for its axes, "
                             f"got shape {fmt_shape(x.dims)} ({what})")
        n, k = dims.pop(), len(pos)
        rest = [i for i in range(len(labels)) if i not in pos]
        x = F.transpose(x, rest + pos)
        x = F.reshape(x, tuple(x.dims[:len(rest)]) + (n ** k,))
        stride = sum(n ** j for j in range(k))
        x = F.take(x, np.arange(n, dtype=np.int64) * stride, axis=-1)
        labels = [labels[i] for i in rest] + [lab]
    return x, labels


def _align(x: Tensor, labels: list, sizes: dict) -> tuple[Tensor, list]:
    """Drop size-1 axes that broadcast; give every axis its label's size (call-time sizes
    of other operands become checks at call time)."""
    keep = [i for i, (lab, d) in enumerate(zip(labels, x.dims))
            if not (isinstance(d, int) and d == 1 and sizes[lab] != 1)]
    if len(keep) < len(labels):
        x, labels = F.reshape(x, tuple(x.dims[i] for i in keep)), [labels[i] for i in keep]
    target = tuple(sizes[lab] for lab in labels)
    if any(d is not t for d, t in zip(x.dims, target) if isinstance(d, Dim) or isinstance(t, Dim)):
        x = F.broadcast_to(x, target)
    return x, labels


def _sum_out(x: Tensor, labels: list, needed) -> tuple[Tensor, list]:
    axes = tuple(i for i, lab in enumerate(labels) if lab not in needed)
    if not axes:
        return x, labels
    return F.sum(x, axis=axes), [lab for lab in labels if lab in needed]


# -- one pairwise contraction ------------------------------------------------

def _is_identity(perm) -> bool:
    return list(perm) == list(range(len(perm)))


def _contract(a: Tensor, la: list, b: Tensor, lb: list, keep, merge: _Merger) -> tuple[Tensor, list]:
    """``a`` and ``b`` contracted over the subscripts they share that ``keep`` lacks."""
    a, la = _sum_out(a, la, set(lb) | set(keep))
    b, lb = _sum_out(b, lb, set(la) | set(keep))
    shared = [lab for lab in la if lab in lb]
    summed = [lab for lab in shared if lab not in keep]
    if not summed:                  # nothing summed: a broadcasting product
        out_labels = la + [lab for lab in lb if lab not in la]
        a2 = F.reshape(a, a.dims + (1,) * (len(out_labels) - len(la)))
        b2 = F.transpose(b, [lb.index(lab) for lab in out_labels if lab in lb])
        size = dict(zip(lb, b.dims))
        b2 = F.reshape(b2, tuple(size[lab] if lab in lb else 1 for lab in out_labels))
        return F.multiply(a2, b2), out_labels
    # orient the product so that fewer operands need a transpose
    def perms(la, lb):
        batch = [lab for lab in la if lab in lb and lab in keep]
        free_a, free_b = [lab for lab in la if lab not in lb], [lab for lab in lb if lab not in la]
        pa = [la.index(lab) for lab in batch + free_a + summed]
        pb = [lb.index(lab) for lab in batch + summed + free_b]
        return batch, free_a, free_b, pa, pb
    if sum(not _is_identity(p) for p in perms(lb, la)[3:]) < sum(not _is_identity(p) for p in perms(la, lb)[3:]):
        a, la, b, lb = b, lb, a, la
    batch, free_a, free_b, pa, pb = perms(la, lb)
    size = dict(zip(la, a.dims)) | dict(zip(lb, b.dims))
    bd = tuple(size[lab] for lab in batch)
    m, k, n = (merge([size[lab] for lab in g]) for g in (free_a, summed, free_b))
    a2 = F.reshape(F.transpose(a, pa), bd + (m, k))
    b2 = F.reshape(F.transpose(b, pb), bd + (k, n))
    out = F.matmul(a2, b2)
    out = F.reshape(out, bd + tuple(size[lab] for lab in free_a + free_b))
    return out, batch + free_a + free_b


# -- contraction order -------------------------------------------------------

def _pair_cost(sets, i, j, rest_needed, size) -> tuple[frozenset, int]:
    union = sets[i] | sets[j]
    result = frozenset(lab for lab in union if lab in rest_needed)
    flops = math.prod(size[lab] for lab in union)
    return result, flops


def _needed(sets, skip, output) -> set:
    need = set(output)
    for k, s in enumerate(sets):
        if k not in skip:
            need |= s
    return need


def _greedy_path(sets, output, size) -> list:
    """opt_einsum's greedy: contract the pair that shrinks the sizes most (the result's
    size minus its operands'), among pairs that share a subscript when any do."""
    sets, path = list(sets), []
    while len(sets) > 1:
        best = None
        pairs = list(itertools.combinations(range(len(sets)), 2))
        sharing = [(i, j) for i, j in pairs if sets[i] & sets[j]]
        for i, j in sharing or pairs:
            result, flops = _pair_cost(sets, i, j, _needed(sets, {i, j}, output), size)
            rsize = math.prod(size[lab] for lab in result)
            removed = rsize - math.prod(size[lab] for lab in sets[i]) - math.prod(size[lab] for lab in sets[j])
            key = (removed, flops, i, j) if sharing else (rsize, flops, i, j)
            if best is None or key < best[0]:
                best = (key, i, j, result)
        _, i, j, result = best
        path.append((i, j))
        sets = [s for k, s in enumerate(sets) if k not in (i, j)] + [result]
    return path


def _optimal_path(sets, output, size) -> list:
    """Every order of pairwise contractions, the one of fewest flops (for a few operands)."""
    def search(sets):
        if len(sets) == 1:
            return 0, []
        best = None
        for i, j in itertools.combinations(range(len(sets)), 2):
            result, flops = _pair_cost(sets, i, j, _needed(sets, {i, j}, output), size)
            rest = [s for k, s in enumerate(sets) if k not in (i, j)] + [result]
            cost, path = search(rest)
            if best is None or flops + cost < best[0]:
                best = (flops + cost, [(i, j)] + path)
        return best
    return search(list(sets))[1]


def _path_flops(sets, output, size, path) -> int:
    sets, total = list(sets), 0
    for i, j in path:
        result, flops = _pair_cost(sets, i, j, _needed(sets, {i, j}, output), size)
        total += flops
        sets = [s for k, s in enumerate(sets) if k not in (i, j)] + [result]
    return total


def _choose_path(optimize, sets, output, size, what: str) -> list:
    """The path as NumPy writes it: steps of positions in the list of operands left, whose
    result goes to the end of the list."""
    n = len(sets)
    if isinstance(optimize, (list, tuple)):
        steps = list(optimize[1:] if optimize and optimize[0] == "einsum_path" else optimize)
        try:
            steps = [tuple(int(s) for s in step) for step in steps]
        except (TypeError, ValueError):
            raise ValueError(f"einsum: a path is a list of tuples of operand positions, got {optimize!r}") from None
        return steps
    if optimize is False or optimize is None:
        return [(0, 1)] * (n - 1)
    if optimize is True or optimize == "auto":
        optimize = "optimal" if n <= 4 else "greedy"
    if optimize == "optimal":
        return _optimal_path(sets, output, size)
    if optimize == "greedy":
        return _greedy_path(sets, output, size)
    raise ValueError(f"einsum: optimize must be a bool, 'greedy', 'optimal', 'auto' or a path, got {optimize!r}")


def _pairs(steps, n: int, what: str) -> list:
    """A path as pairs of operand ids (operands 0..n-1, then each result the next id)."""
    ids, new, pairs = list(range(n)), n, []
    for step in steps:
        if not step or len(set(step)) < len(step) or any(not 0 <= s < len(ids) for s in step):
            raise ValueError(f"einsum: invalid step {step} in the path for {what} "
                             f"({len(ids)} operands left at that step)")
        chosen = [ids[s] for s in step]
        ids = [x for k, x in enumerate(ids) if k not in step]
        current = chosen[0]
        for other in chosen[1:]:
            pairs.append((current, other))
            current, new = new, new + 1
        ids.append(current)
    if len(ids) != 1:
        raise ValueError(f"einsum: the path leaves {len(ids)} operands of {what}, not 1")
    return pairs


# -- einsum ------------------------------------------------------------------

def _prepare(name: str, tensors, labels, output, what: str):
    """Diagonals taken, broadcast axes dropped, lone subscripts summed."""
    pairs = [_diagonals(name, t, list(ls), what) for t, ls in zip(tensors, labels)]
    sizes = _label_sizes(name, [ls for _, ls in pairs], [t for t, _ in pairs], what)
    pairs = [_align(t, ls, sizes) for t, ls in pairs]
    prepared = []
    for i, (t, ls) in enumerate(pairs):
        others = set(output)
        for k, (_, other) in enumerate(pairs):
            if k != i:
                others |= set(other)
        prepared.append(_sum_out(t, ls, others))
    return prepared, sizes


def _contract_all(name: str, tensors, labels, output, optimize, what: str) -> Tensor:
    merge = _Merger()
    ops, sizes = _prepare(name, tensors, labels, output, what)
    sets = [frozenset(ls) for _, ls in ops]
    path = _choose_path(optimize, sets, output, {k: _cost_size(v) for k, v in sizes.items()}, what)
    ops = dict(enumerate(ops))
    for new, (i, j) in enumerate(_pairs(path, len(sets), what), start=len(sets)):
        (a, la), (b, lb) = ops.pop(i), ops.pop(j)
        keep = set(output).union(*[set(ls) for _, ls in ops.values()])
        ops[new] = _contract(a, la, b, lb, keep, merge)
    (x, ls), = ops.values()
    x, ls = _sum_out(x, ls, set(output))
    return F.transpose(x, [ls.index(lab) for lab in output]) if ls else x


def _operands(name: str, operands) -> list[Tensor]:
    dtype = F._promote(name, operands, "same")
    return [F.as_tensor(x, dtype) for x in operands]


def einsum(subscripts, *operands, optimize=True) -> Tensor:
    """numpy.einsum: ``einsum("ij,jk->ik", a, b)``, implicit output (``"ij,jk"``), ``...``,
    diagonals (``"ii->i"``), traces, sums and the interleaved form ``einsum(a, [0, 1], b, [1, 2])``.

    ``optimize``: ``True``/``"auto"`` (default: the order of fewest flops for up to 4
    operands, the greedy one beyond), ``"optimal"``, ``"greedy"``, ``False`` (left to
    right) or a path as :func:`einsum_path` gives.  Call-time (None) sizes are costed as
    ``CALL_TIME_GUESS``.  A repeated subscript within one operand needs a fixed size.
    """
    if not isinstance(subscripts, str):
        subscripts, operands = _split_interleaved((subscripts,) + operands)
    if not operands:
        raise ValueError("einsum: at least one operand is needed")
    tensors = _operands("einsum", operands)
    labels, output = _parse(subscripts, [t.dims for t in tensors])
    return _contract_all("einsum", tensors, labels, output, optimize, f"subscripts {subscripts!r}")


def einsum_path(subscripts, *operands, optimize="greedy") -> tuple[list, str]:
    """numpy.einsum_path: ``(["einsum_path", (i, j), ...], report)`` for the order ``einsum``
    would contract in (operands may be arrays, Tensors or shapes as tuples)."""
    shapes = [tuple(o) if isinstance(o, tuple) else (o.dims if isinstance(o, Tensor) else np.shape(o))
              for o in operands]
    labels, output = _parse(subscripts, shapes)
    # costs from the label sizes alone (diagonals and lone subscripts removed)
    sets, size = [], {}
    for ls, sh in zip(labels, shapes):
        for lab, d in zip(ls, sh):
            if not (isinstance(d, int) and d == 1):
                size[lab] = d
            else:
                size.setdefault(lab, 1)
    needed_by = [set(output).union(*[set(o) for k, o in enumerate(labels) if k != i]) for i in range(len(labels))]
    for i, ls in enumerate(labels):
        sets.append(frozenset(lab for lab, d in zip(ls, shapes[i])
                              if lab in needed_by[i] and not (d == 1 and size[lab] != 1)))
    cost = {k: _cost_size(v) for k, v in size.items()}
    path = _choose_path(optimize, sets, output, cost, subscripts)
    naive = math.prod(cost[lab] for lab in set().union(*sets)) if sets else 1
    flops = _path_flops(sets, output, cost, path)
    report = (f"  Complete contraction:  {subscripts}\n  Naive FLOP count:  {naive:.4g}\n"
              f"  Optimized FLOP count:  {flops:.4g}\n  Path:  {path}")
    return ["einsum_path", *path], report


# -- the NumPy products built on it --------------------------------------------

def _check_sizes(name: str, a: Tensor, b: Tensor, axes_a, axes_b) -> None:
    for i, j in zip(axes_a, axes_b):
        da, db = a.dims[i], b.dims[j]
        if isinstance(da, int) and isinstance(db, int) and da != db:
            raise ValueError(f"{name}: shape mismatch: axis {i} of shape {fmt_shape(a.dims)} has size {da}, "
                             f"axis {j} of shape {fmt_shape(b.dims)} has size {db}")


def _axes_list(name: str, axes, ndim: int) -> tuple:
    axes = (axes,) if isinstance(axes, (int, np.integer)) else tuple(axes)
    return normalize_axis_tuple(axes, ndim, name)


def tensordot(a, b, axes=2) -> Tensor:
    """numpy.tensordot: sum over ``axes`` (``N``: the last N of ``a`` with the first N of ``b``;
    or a pair of axis lists), the free axes of ``a`` then those of ``b``."""
    a, b = _operands("tensordot", (a, b))
    if isinstance(axes, (int, np.integer)) and not isinstance(axes, bool):
        n = int(axes)
        if not 0 <= n <= min(a.ndim, b.ndim):
            raise ValueError(f"tensordot: axes={n} for shapes {fmt_shape(a.dims)} and {fmt_shape(b.dims)}")
        axes_a, axes_b = tuple(range(a.ndim - n, a.ndim)), tuple(range(n))
    else:
        try:
            xa, xb = axes
        except (TypeError, ValueError):
            raise ValueError(f"tensordot: axes must be an int or a pair of axis lists, got {axes!r}") from None
        axes_a, axes_b = _axes_list("tensordot", xa, a.ndim), _axes_list("tensordot", xb, b.ndim)
        if len(axes_a) != len(axes_b):
            raise ValueError(f"tensordot: axes {axes!r} pair {len(axes_a)} axes of shape {fmt_shape(a.dims)} "
                             f"with {len(axes_b)} of shape {fmt_shape(b.dims)}")
    _check_sizes("tensordot", a, b, axes_a, axes_b)
    la = [("c", axes_a.index(i)) if i in axes_a else ("a", i) for i in range(a.ndim)]
    lb = [("c", axes_b.index(j)) if j in axes_b else ("b", j) for j in range(b.ndim)]
    out = [lab for lab in la + lb if lab[0] != "c"]
    return _contract_all("tensordot", [a, b], [la, lb], out, False,
                         f"shapes {fmt_shape(a.dims)} and {fmt_shape(b.dims)}")


def inner(a, b) -> Tensor:
    """numpy.inner: products summed over the last axes (a product for a 0-d operand)."""
    a, b = _operands("inner", (a, b))
    if a.ndim == 0 or b.ndim == 0:
        return F.multiply(a, b)
    _check_sizes("inner", a, b, (a.ndim - 1,), (b.ndim - 1,))
    return tensordot(a, b, ((a.ndim - 1,), (b.ndim - 1,)))


def vdot(a, b) -> Tensor:
    """numpy.vdot: the dot product of the flattened operands (real: nothing to conjugate)."""
    a, b = _operands("vdot", (a, b))
    a1, b1 = F.reshape(a, (-1,)), F.reshape(b, (-1,))
    if isinstance(a1.dims[0], int) and isinstance(b1.dims[0], int) and a1.dims[0] != b1.dims[0]:
        raise ValueError(f"vdot: operands of shapes {fmt_shape(a.dims)} and {fmt_shape(b.dims)} have "
                         f"{a1.dims[0]} and {b1.dims[0]} elements")
    return F.matmul(a1, b1)


def kron(a, b) -> Tensor:
    """numpy.kron: block ``a[i] * b`` at ``i * b.shape``; the shorter shape gets leading 1s."""
    a, b = _operands("kron", (a, b))
    nd = max(a.ndim, b.ndim)
    a = F.reshape(a, (1,) * (nd - a.ndim) + a.dims)
    b = F.reshape(b, (1,) * (nd - b.ndim) + b.dims)
    a2 = F.reshape(a, tuple(d for x in a.dims for d in (x, 1)))
    b2 = F.reshape(b, tuple(d for x in b.dims for d in (1, x)))
    merge = _Merger()
    return F.reshape(F.multiply(a2, b2), tuple(merge((x, y)) for x, y in zip(a.dims, b.dims)))


def cross(a, b, axisa=-1, axisb=-1, axisc=-1, axis=None) -> Tensor:
    """numpy.cross of 3-vectors along ``axisa``/``axisb`` (``axis`` sets all three), the
    other axes broadcast; the result's vectors lie along ``axisc``.  2-vectors (deprecated
    in NumPy 2) are not supported."""
    a, b = _operands("cross", (a, b))
    if axis is not None:
        axisa = axisb = axisc = axis
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"cross: operands must have a vector axis, got shapes {fmt_shape(a.dims)} "
                         f"and {fmt_shape(b.dims)}")
    axisa, axisb = normalize_axis(axisa, a.ndim, "cross"), normalize_axis(axisb, b.ndim, "cross")
    if a.dims[axisa] != 3 or b.dims[axisb] != 3:
        raise ValueError(f"cross: both vectors must have 3 components (2-vectors are not supported), got "
                         f"shapes {fmt_shape(a.dims)} (axis {axisa}) and {fmt_shape(b.dims)} (axis {axisb})")
    a = F.transpose(a, [i for i in range(a.ndim) if i != axisa] + [axisa])
    b = F.transpose(b, [i for i in range(b.ndim) if i != axisb] + [axisb])
    a0, a1, a2 = (index(a, (Ellipsis, i)) for i in range(3))
    b0, b1, b2 = (index(b, (Ellipsis, i)) for i in range(3))
    parts = [F.subtract(F.multiply(a1, b2), F.multiply(a2, b1)),
             F.subtract(F.multiply(a2, b0), F.multiply(a0, b2)),
             F.subtract(F.multiply(a0, b1), F.multiply(a1, b0))]
    ndim = parts[0].ndim + 1
    return F.stack(parts, axis=normalize_axis(axisc, ndim, "cross"))
