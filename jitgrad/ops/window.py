"""Sliding windows over NCHW images: the two primitives convolution and pooling are built from.

``patches`` (im2col) lays out every window of an image as its own axes: element
``(n, c, kh, kw, oh, ow)`` is the pixel that window ``(oh, ow)`` sees at its
offset ``(kh, kw)``, or ``pad_value`` where the window hangs over the border.
A convolution is then one matmul of the weights with the patches, and a
pooling a reduction over the window axes.  ``unpatches`` (col2im) is its
transpose: it adds every window's values back onto the pixels they were read
from, so it is ``patches``' VJP and the input gradient of a convolution (a
transposed convolution).  Both are linear; their derivative rules are each
other, to any order.

The axes come out in ``order``, a permutation of the six named above, so that
each user gets the layout it reads fastest: a convolution wants
``(c, kh, kw, n, oh, ow)`` (a matrix of window columns, one GEMM), a pooling
``(n, c, oh, ow, kh, kw)`` (the reduced axes innermost).  The batch may be a
call-time size; channels and the image's height and width are fixed.

Windows are static attributes: ``window`` (kH, kW), ``stride``, ``dilation``,
and ``padding`` ((top, bottom), (left, right)); ``unpatches`` also takes the
image ``size`` (H, W), as a transposed convolution's output is not fixed by
its input's (PyTorch's ``output_padding``).
"""
from __future__ import annotations

import numpy as np

from ..primitive import Aval, Dim, Primitive, on
from ._shapes import fmt_shape

AXES = ("n", "c", "kh", "kw", "oh", "ow")
CONV_ORDER = (1, 2, 3, 0, 4, 5)     # (c, kh, kw, n, oh, ow): window columns for a GEMM
POOL_ORDER = (0, 1, 4, 5, 2, 3)     # (n, c, oh, ow, kh, kw): window axes innermost


def windows_along(size: int, k: int, stride: int, pads, dilation: int) -> int:
    """How many windows fit along an axis of ``size`` (PyTorch's output-size formula)."""
    return (size + pads[0] + pads[1] - dilation * (k - 1) - 1) // stride + 1


def check_windows(name: str, image_dims, window, stride, padding, dilation) -> tuple[int, int]:
    """The number of windows along (H, W); raises naming the op and the sizes."""
    counts = []
    for axis, size, k, s, pads, d in zip("HW", image_dims, window, stride, padding, dilation):
        if isinstance(size, Dim):
            raise ValueError(f"{name}: the image's height and width must be fixed sizes, "
                             f"got a call-time {axis}")
        if min(k, s, d) < 1 or min(pads) < 0:
            raise ValueError(f"{name}: window {window}, stride {stride} and dilation {dilation} must be "
                             f"positive and padding {padding} non-negative")
        count = windows_along(size, k, s, pads, d)
        if count < 1:
            raise ValueError(f"{name}: a window of {k} (dilation {d}) does not fit along {axis} = {size} "
                             f"with padding {pads}")
        counts.append(count)
    return tuple(counts)


def _patches_shape(x, *, window, stride, padding, dilation, order, pad_value):
    if len(x.dims) != 4:
        raise ValueError(f"patches: expected an image batch (N, C, H, W), got shape {fmt_shape(x.dims)}")
    if isinstance(x.dims[1], Dim):
        raise ValueError("patches: the number of channels must be a fixed size")
    oh, ow = check_windows("patches", x.dims[2:], window, stride, padding, dilation)
    canonical = (x.dims[0], x.dims[1], window[0], window[1], oh, ow)
    return Aval(tuple(canonical[a] for a in order), x.dtype)


def _unpatches_shape(cols, *, size, window, stride, padding, dilation, order):
    if len(cols.dims) != 6:
        raise ValueError(f"unpatches: expected six window axes, got shape {fmt_shape(cols.dims)}")
    canonical = [None] * 6
    for position, axis in enumerate(order):
        canonical[axis] = cols.dims[position]
    n, c, kh, kw, oh, ow = canonical
    counts = check_windows("unpatches", size, window, stride, padding, dilation)
    if (kh, kw) != tuple(window) or (oh, ow) != counts:
        raise ValueError(f"unpatches: windows of shape {fmt_shape(cols.dims)} (order {order}) do not come "
                         f"from a {size[0]}x{size[1]} image with window {window}, stride {stride}, "
                         f"padding {padding}, dilation {dilation}")
    return Aval((n, c) + tuple(size), cols.dtype)


def _window_slices(k_h, k_w, counts, stride, dilation):
    """For each window offset: the slices of the padded image its windows read."""
    for i in range(k_h):
        for j in range(k_w):
            rows = slice(i * dilation[0], i * dilation[0] + stride[0] * (counts[0] - 1) + 1, stride[0])
            cols = slice(j * dilation[1], j * dilation[1] + stride[1] * (counts[1] - 1) + 1, stride[1])
            yield i, j, rows, cols


def _patches_ref(x, window, stride, padding, dilation, order, pad_value):
    padded = np.pad(x, ((0, 0), (0, 0), *padding), constant_values=pad_value)
    counts = check_windows("patches", x.shape[2:], window, stride, padding, dilation)
    out = np.empty(x.shape[:2] + tuple(window) + counts, x.dtype)
    for i, j, rows, cols in _window_slices(*window, counts, stride, dilation):
        out[:, :, i, j] = padded[:, :, rows, cols]
    return np.ascontiguousarray(np.transpose(out, order))


def _unpatches_ref(cols, size, window, stride, padding, dilation, order):
    canonical = np.transpose(cols, np.argsort(order))
    (top, bottom), (left, right) = padding
    n, c = canonical.shape[:2]
    padded = np.zeros((n, c, size[0] + top + bottom, size[1] + left + right), cols.dtype)
    for i, j, rows, cols_ in _window_slices(*window, canonical.shape[4:], stride, dilation):
        padded[:, :, rows, cols_] += canonical[:, :, i, j]
    return padded[:, :, top:top + size[0], left:left + size[1]].copy()


def _geometry(attrs: dict) -> dict:
    """The attributes both primitives share (``patches``' pad value aside)."""
    return {k: attrs[k] for k in ("window", "stride", "padding", "dilation", "order")}


def _merge_examples(b, x, at: int):
    """``x`` with its axis 0 (vmap's examples) merged into the batch axis at ``at`` (> 0)."""
    perm = tuple(range(1, at)) + (0,) + tuple(range(at, len(x.dims)))
    moved = b.transpose(x, perm) if perm != tuple(range(len(x.dims))) else x
    merged = moved.dims[at - 1] * moved.dims[at] if all(isinstance(d, int) for d in moved.dims[at - 1:at + 1]) \
        else -1
    return b.reshape(moved, moved.dims[:at - 1] + (merged,) + moved.dims[at + 1:])


def _split_examples(b, y, at: int, examples, batch):
    """The inverse of ``_merge_examples``: the batch axis at ``at`` split, examples to axis 0."""
    y = b.reshape(y, y.dims[:at] + (examples, batch) + y.dims[at + 1:])
    perm = (at,) + tuple(a for a in range(len(y.dims)) if a != at)
    return b.transpose(y, perm) if perm != tuple(range(len(y.dims))) else y


def _patches_batch(b, batched, y, x, **attrs):
    merged = _merge_examples(b, x, 1)
    out = b.bind(patches_p, merged, **attrs)
    return _split_examples(b, out, attrs["order"].index(0), x.dims[0], x.dims[1])


def _unpatches_batch(b, batched, y, cols, **attrs):
    merged = _merge_examples(b, cols, attrs["order"].index(0) + 1)
    out = b.bind(unpatches_p, merged, **attrs)
    return _split_examples(b, out, 0, cols.dims[0], y.dims[0])


patches_p = Primitive(
    "patches", shape=_patches_shape, ref=_patches_ref,
    attrs=("window", "stride", "padding", "dilation", "order", "pad_value"),
    vjp=lambda b, y_bar, y, x, **a: (b.bind(unpatches_p, y_bar, size=tuple(x.dims[2:]), **_geometry(a)),),
    jvp=lambda b, x_dots, y, x, **a: on(x_dots[0], lambda t: b.bind(patches_p, t, **_geometry(a), pad_value=0)),
    batch=_patches_batch,
    doc="im2col: every window of an NCHW image on axes of its own, in ``order``; the pad value "
        "off the border (its derivative is zero there).",
)
unpatches_p = Primitive(
    "unpatches", shape=_unpatches_shape, ref=_unpatches_ref,
    attrs=("size", "window", "stride", "padding", "dilation", "order"),
    vjp=lambda b, y_bar, y, cols, **a: (b.bind(patches_p, y_bar, **_geometry(a), pad_value=0),),
    jvp=lambda b, x_dots, y, cols, **a: on(x_dots[0], lambda t: b.bind(unpatches_p, t, **a)),
    batch=_unpatches_batch,
    doc="col2im, the transpose of patches: each window's values added back onto the pixels "
        "they came from.",
)

PRIMITIVES = (patches_p, unpatches_p)
