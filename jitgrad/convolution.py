"""Convolution and pooling over NCHW images (``jg.nn.conv2d`` and its kin).

Each is built from the window primitives of :mod:`jitgrad.ops.window` and the
library's matmul and reductions, so derivatives of any order, ``vmap`` and
every target come with them.  A convolution lays the image's windows out as
the columns of a matrix (im2col, which the fuser computes in one loop) and
multiplies it by the weights in one GEMM: BLAS does the arithmetic on the CPU,
the tiled matmul on CUDA.  Its input gradient is the transposed convolution
(col2im), also public as :func:`conv_transpose2d`; its weight gradient is one
GEMM too, so no reduction depends on the order threads finish in.

Conventions are PyTorch's: weights ``(C_out, C_in / groups, kH, kW)`` (and
``(C_in, C_out / groups, kH, kW)`` for the transposed convolution), output
sizes ``(H + 2 p - d (k - 1) - 1) // s + 1``.  ``max_pool2d``'s derivative
splits equally between tied maxima (the library's rule for ``max``);
``avg_pool2d`` counts padded zeros in its averages (PyTorch's default).
"""
from __future__ import annotations

import numpy as np

from . import functions as F
from .graph import Tensor, bind
from .ops._shapes import fmt_shape
from .ops import shape as sh
from .ops.window import CONV_ORDER, POOL_ORDER, check_windows, patches_p, unpatches_p

__all__ = ["conv2d", "conv1d", "conv_transpose2d", "max_pool2d", "avg_pool2d", "global_avg_pool2d",
           "flatten"]


# -- arguments ---------------------------------------------------------------------------------

def _pair(name: str, what: str, value, least: int = 1) -> tuple[int, int]:
    """An int or a pair of ints (height, width), each at least ``least``."""
    pair = (value, value) if isinstance(value, (int, np.integer)) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) and v >= least for v in pair):
        raise ValueError(f"{name}: {what} must be an int >= {least} or a pair of them, got {value!r}")
    return int(pair[0]), int(pair[1])


def _padding(name: str, padding, window, stride, dilation) -> tuple:
    """((top, bottom), (left, right)) from an int, a pair, "valid" or "same"."""
    if padding == "valid":
        return (0, 0), (0, 0)
    if padding == "same":
        if stride != (1, 1):
            raise ValueError(f"{name}: padding='same' needs stride 1, got stride {stride}")
        totals = [d * (k - 1) for k, d in zip(window, dilation)]
        return tuple((t // 2, t - t // 2) for t in totals)
    if isinstance(padding, str):
        raise ValueError(f"{name}: padding must be an int, a pair, 'valid' or 'same', got {padding!r}")
    top, left = _pair(name, "padding", padding, least=0)
    return (top, top), (left, left)


def _float_operands(name: str, *operands) -> list[Tensor]:
    """The operands as Tensors of one float dtype (NumPy's promotion, at least float32)."""
    tensors = [F.as_tensor(x) for x in operands]
    dtype = np.result_type(*(t.dtype for t in tensors))
    if dtype.kind != "f":
        dtype = np.dtype(np.float64)
    return [F.astype(t, dtype) if t.dtype != dtype else t for t in tensors]


def _check_rank(name: str, what: str, x: Tensor, layout: str) -> None:
    if x.ndim != len(layout.split(",")):
        raise ValueError(f"{name}: {what} must have shape ({layout}), got {fmt_shape(x.dims)}")


def _add_bias(name: str, y: Tensor, b, channels: int) -> Tensor:
    if b is None:
        return y
    (b,) = _float_operands(name, b)
    if b.dims != (channels,):
        raise ValueError(f"{name}: bias must have shape ({channels},) for {channels} output channels, "
                         f"got {fmt_shape(b.dims)}")
    return F.add(y, F.reshape(F.astype(b, y.dtype), (channels,) + (1,) * (y.ndim - 2)))


# -- convolution -------------------------------------------------------------------------------

def _convolve(name: str, x: Tensor, w: Tensor, stride, padding, dilation, groups: int) -> Tensor:
    """The 2-d convolution of ``x`` (N, C, H, W) with ``w`` (C_out, C / groups, kH, kW)."""
    (n, channels), (c_out, c_group, k_h, k_w) = x.dims[:2], w.dims
    if not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError(f"{name}: groups must be a positive int, got {groups!r}")
    if isinstance(channels, int) and (channels % groups or c_out % groups):
        raise ValueError(f"{name}: {groups} group(s) must divide both the input's {channels} channels and "
                         f"the {c_out} output channels (weights {fmt_shape(w.dims)})")
    if isinstance(channels, int) and c_group != channels // groups:
        raise ValueError(f"{name}: an input with {channels} channels in {groups} group(s) needs weights of "
                         f"shape ({c_out}, {channels // groups}, kH, kW), got {fmt_shape(w.dims)}")
    check_windows(name, x.dims[2:], (k_h, k_w), stride, padding, dilation)
    cols = bind(patches_p, x, window=(k_h, k_w), stride=stride, padding=padding, dilation=dilation,
                order=CONV_ORDER, pad_value=0)
    rows_h, rows_w = cols.dims[4:]
    depth = c_group * k_h * k_w
    if groups == 1:
        y = F.matmul(F.reshape(w, (c_out, depth)), F.reshape(cols, (depth, -1)))
    else:
        y = F.matmul(F.reshape(w, (groups, c_out // groups, depth)), F.reshape(cols, (groups, depth, -1)))
    return F.transpose(F.reshape(y, (c_out, n, rows_h, rows_w)), (1, 0, 2, 3))


def conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1) -> Tensor:
    """2-d convolution (cross-correlation, as PyTorch's ``conv2d``) of ``x`` (N, C_in, H, W)
    with ``w`` (C_out, C_in / groups, kH, kW), plus the bias ``b`` (C_out,).  ``padding`` is
    an int, a pair, ``"valid"`` or ``"same"`` (stride 1; the odd pixel goes after)."""
    x, w = _float_operands("conv2d", x, w)
    _check_rank("conv2d", "x", x, "N, C_in, H, W")
    _check_rank("conv2d", "w", w, "C_out, C_in / groups, kH, kW")
    window = w.dims[2:]
    stride, dilation = _pair("conv2d", "stride", stride), _pair("conv2d", "dilation", dilation)
    pads = _padding("conv2d", padding, window, stride, dilation)
    return _add_bias("conv2d", _convolve("conv2d", x, w, stride, pads, dilation, groups), b, w.dims[0])


def _single(name: str, what: str, value, least: int = 1) -> int:
    if isinstance(value, (tuple, list)) and len(value) == 1:
        value = value[0]
    if not isinstance(value, (int, np.integer)) or value < least:
        raise ValueError(f"{name}: {what} must be an int >= {least}, got {value!r}")
    return int(value)


def conv1d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1) -> Tensor:
    """1-d convolution of ``x`` (N, C_in, L) with ``w`` (C_out, C_in / groups, k): a 2-d one
    over images of height 1."""
    x, w = _float_operands("conv1d", x, w)
    _check_rank("conv1d", "x", x, "N, C_in, L")
    _check_rank("conv1d", "w", w, "C_out, C_in / groups, k")
    stride, dilation = (1, _single("conv1d", "stride", stride)), (1, _single("conv1d", "dilation", dilation))
    if not isinstance(padding, str):
        padding = (0, _single("conv1d", "padding", padding, least=0))
    pads = _padding("conv1d", padding, (1, w.dims[2]), stride, dilation)
    image = F.reshape(x, x.dims[:2] + (1, x.dims[2]))
    y = _convolve("conv1d", image, F.reshape(w, w.dims[:2] + (1, w.dims[2])), stride, pads, dilation, groups)
    return _add_bias("conv1d", F.reshape(y, y.dims[:2] + y.dims[3:]), b, w.dims[0])


def conv_transpose2d(x, w, b=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1) -> Tensor:
    """The transposed convolution (PyTorch's ``conv_transpose2d``): the input gradient of
    ``conv2d``, as a layer.  ``x`` (N, C_in, H, W), ``w`` (C_in, C_out / groups, kH, kW);
    the output is (N, C_out, (H - 1) s - 2 p + d (k - 1) + output_padding + 1, ...)."""
    name = "conv_transpose2d"
    x, w = _float_operands(name, x, w)
    _check_rank(name, "x", x, "N, C_in, H, W")
    _check_rank(name, "w", w, "C_in, C_out / groups, kH, kW")
    (n, c_in, height, width), (w_in, c_group, k_h, k_w) = x.dims, w.dims
    if not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError(f"{name}: groups must be a positive int, got {groups!r}")
    if w_in != c_in or c_in % groups:
        raise ValueError(f"{name}: an input with {c_in} channels in {groups} group(s) needs weights of shape "
                         f"({c_in}, C_out / groups, kH, kW), got {fmt_shape(w.dims)}")
    stride, dilation = _pair(name, "stride", stride), _pair(name, "dilation", dilation)
    pad = _pair(name, "padding", padding, least=0)
    extra = _pair(name, "output_padding", output_padding, least=0)
    if any(e >= max(s, d) for e, s, d in zip(extra, stride, dilation)):
        raise ValueError(f"{name}: output_padding {extra} must be smaller than the stride {stride} "
                         f"or the dilation {dilation}")
    # rows past the windows' reach (output_padding >= stride, allowed with a larger dilation) are zeros
    reach = [e if e < s else s - 1 for e, s in zip(extra, stride)]
    size = tuple((i - 1) * s - 2 * p + d * (k - 1) + e + 1
                 for i, s, p, d, k, e in zip((height, width), stride, pad, dilation, (k_h, k_w), reach))
    if min(size) < 1:
        raise ValueError(f"{name}: an input of {height}x{width} with kernel {(k_h, k_w)}, stride {stride}, "
                         f"padding {pad}, dilation {dilation} gives an output of {size[0]}x{size[1]}: too small")
    depth, c_out = c_group * k_h * k_w, c_group * groups
    images = F.transpose(x, (1, 0, 2, 3))                          # (C_in, N, H, W)
    if groups == 1:
        cols = F.matmul(F.transpose(F.reshape(w, (c_in, depth))), F.reshape(images, (c_in, -1)))
    else:
        per = c_in // groups
        cols = F.matmul(F.transpose(F.reshape(w, (groups, per, depth)), (0, 2, 1)),
                        F.reshape(images, (groups, per, -1)))
    cols = F.reshape(cols, (c_out, k_h, k_w, n, height, width))
    y = bind(unpatches_p, cols, size=size, window=(k_h, k_w), stride=stride, padding=((pad[0],) * 2, (pad[1],) * 2),
             dilation=dilation, order=CONV_ORDER)
    if reach != list(extra):
        full = (n, c_out) + tuple(z + e - r for z, e, r in zip(size, extra, reach))
        y = bind(sh.unslice_p, y, shape=full, index=((None, None, None),) * 2 + tuple((0, z, 1) for z in size))
    return _add_bias(name, y, b, c_out)


# -- pooling -----------------------------------------------------------------------------------

def _windows(name: str, x, kernel, stride, padding, dilation, pad_value) -> Tensor:
    """Every pooling window of ``x`` (N, C, H, W), as (N, C, OH, OW, kH, kW)."""
    x = F.as_tensor(x)
    _check_rank(name, "x", x, "N, C, H, W")
    window = _pair(name, "kernel", kernel)
    stride = window if stride is None else _pair(name, "stride", stride)
    dilation = _pair(name, "dilation", dilation)
    pad = _pair(name, "padding", padding, least=0)
    if any(2 * p > k for p, k in zip(pad, window)):
        raise ValueError(f"{name}: padding {pad} must be at most half the kernel {window}")
    if callable(pad_value):
        pad_value = pad_value(x.dtype)
    check_windows(name, x.dims[2:], window, stride, ((pad[0],) * 2, (pad[1],) * 2), dilation)
    return bind(patches_p, x, window=window, stride=stride, padding=((pad[0],) * 2, (pad[1],) * 2),
                dilation=dilation, order=POOL_ORDER, pad_value=pad_value)


def _lowest(dtype: np.dtype):
    return -np.inf if dtype.kind == "f" else (False if dtype.kind == "b" else int(np.iinfo(dtype).min))


def max_pool2d(x, kernel, stride=None, padding=0, dilation=1) -> Tensor:
    """The maximum of each window of ``x`` (N, C, H, W); ``stride`` defaults to ``kernel``.
    Padding never wins (it is -inf); tied maxima share the derivative equally."""
    return F.max(_windows("max_pool2d", x, kernel, stride, padding, dilation, _lowest), axis=(4, 5))


def avg_pool2d(x, kernel, stride=None, padding=0) -> Tensor:
    """The mean of each window of ``x`` (N, C, H, W), padded zeros counted (PyTorch's default)."""
    return F.mean(_windows("avg_pool2d", x, kernel, stride, padding, 1, 0), axis=(4, 5))


def global_avg_pool2d(x) -> Tensor:
    """The mean over each channel's image: (N, C, H, W) -> (N, C)."""
    x = F.as_tensor(x)
    _check_rank("global_avg_pool2d", "x", x, "N, C, H, W")
    return F.mean(x, axis=(2, 3))


def flatten(x, start_axis: int = 1, end_axis: int = -1) -> Tensor:
    """``x`` with the axes ``start_axis..end_axis`` (inclusive) merged into one (as
    ``torch.flatten``; the default keeps the batch axis)."""
    x = F.as_tensor(x)
    ndim = max(x.ndim, 1)
    first, last = (a + ndim if a < 0 else a for a in (start_axis, end_axis))
    if not (0 <= first < ndim and 0 <= last < ndim) or first > last:
        raise ValueError(f"flatten: axes {start_axis}..{end_axis} do not fit a shape {fmt_shape(x.dims)}")
    merged = x.dims[first:last + 1]
    size = int(np.prod(merged, dtype=np.int64)) if all(isinstance(d, int) for d in merged) else -1
    return F.reshape(x, x.dims[:first] + (size,) + x.dims[last + 1:])
