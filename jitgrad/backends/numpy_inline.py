"""``np.empty``, ``np.dot(a, b, out)`` and workspace views for the generated CPU code,
lowered in place.

Numba implements the first two as overloads: each signature is a function of its
own that goes through Numba's whole pipeline (typing, lowering, an LLVM module
optimised and compiled to machine code), in every new process.  A W3 step's
program spent 0.5 s of its cold compile on them (4 ``np.empty`` and 3 ``np.dot``
signatures).  These intrinsics emit the same code (Numba's own lowering helpers)
straight into the calling function, so they cost only their few instructions
there.  A workspace view (``ws[:n].reshape(shape)``, 35 of them in that program)
lowered as a slice and a general reshape is a few dozen instructions and a loop
each; ``workspace_view`` is a handful.

They use helpers private to Numba; where those are missing (another Numba), the
names fall back to small jitted functions that call NumPy's, as before.
"""
from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.extending import intrinsic

try:
    from numba.core import cgutils
    from numba.core.imputils import impl_ret_borrowed
    from numba.np.arrayobj import _empty_nd_impl, _parse_shape, make_array, populate_array
    from numba.np.linalg import dot_3_mm, dot_3_vm, ensure_blas, make_contiguous
except ImportError:         # pragma: no cover  (a Numba without these helpers)
    _empty_nd_impl = None


def _element_type(dtype):
    """The Numba type of an element, from what ``np.float32`` (or a dtype) types as."""
    if isinstance(dtype, (types.NumberClass, types.DType)):
        return dtype.dtype
    return None


if _empty_nd_impl is not None:
    @intrinsic
    def empty(typingctx, shape, dtype):
        """``np.empty(shape, dtype)``: a C-ordered array; ``shape`` an integer or a tuple."""
        element = _element_type(dtype)
        if element is None:
            return None
        if isinstance(shape, types.Integer):
            ndim = 1
        elif isinstance(shape, types.BaseTuple) and all(isinstance(s, types.Integer) for s in shape):
            ndim = len(shape)
        else:
            return None
        array = types.Array(element, ndim, "C")

        def codegen(context, builder, signature, args):
            shapes = _parse_shape(context, builder, signature.args[0], args[0])
            return _empty_nd_impl(context, builder, array, shapes)._getvalue()

        return array(shape, dtype), codegen

    @intrinsic
    def dot_into(typingctx, a, b, out):
        """``np.dot(a, b, out)`` for 2-d ``out`` (matrix times matrix) or 1-d (a vector and a
        matrix), through BLAS as Numba's ``np.dot`` does; returns ``out``."""
        arrays = (a, b, out)
        if not all(isinstance(x, types.Array) for x in arrays) or len({x.dtype for x in arrays}) != 1:
            return None
        if out.layout != "C" or {a.ndim, b.ndim} not in ({2}, {1, 2}):
            return None

        def codegen(context, builder, signature, args):
            ensure_blas()
            with make_contiguous(context, builder, signature, args) as (signature, args):
                if {x.ndim for x in signature.args[:2]} == {2}:
                    return dot_3_mm(context, builder, signature, args)
                return dot_3_vm(context, builder, signature, args)

        return out(a, b, out), codegen

    @intrinsic
    def workspace_view(typingctx, buffer, shape):
        """``buffer[:n].reshape(shape)`` for a 1-d C-ordered ``buffer`` and ``n`` the size of
        ``shape`` (a tuple of integers): a C-ordered view of its first ``n`` elements.  Raises
        if ``buffer`` holds fewer (the memory plan sizes it: never, unless a plan is wrong)."""
        if not (isinstance(buffer, types.Array) and buffer.ndim == 1 and buffer.layout == "C"):
            return None
        if not (isinstance(shape, types.BaseTuple) and all(isinstance(s, types.Integer) for s in shape)):
            return None
        view = types.Array(buffer.dtype, len(shape), "C")

        def codegen(context, builder, signature, args):
            source = make_array(buffer)(context, builder, args[0])
            dims = [context.cast(builder, value, kind, types.intp)
                    for value, kind in zip(cgutils.unpack_tuple(builder, args[1], len(shape)), shape)]
            strides, step = [], source.itemsize
            for dim in reversed(dims):
                strides.insert(0, step)
                step = builder.mul(step, dim)
            count = builder.udiv(step, source.itemsize)
            with builder.if_then(builder.icmp_signed(">", count, source.nitems), likely=False):
                context.call_conv.return_user_exc(builder, ValueError, ("workspace buffer too small",))
            result = make_array(view)(context, builder)
            populate_array(result, data=source.data, shape=dims, strides=strides,
                           itemsize=source.itemsize, meminfo=source.meminfo, parent=source.parent)
            return impl_ret_borrowed(context, builder, view, result._getvalue())

        return view(buffer, shape), codegen
else:       # pragma: no cover
    @njit(inline="always")
    def empty(shape, dtype):
        return np.empty(shape, dtype)

    @njit(inline="always")
    def dot_into(a, b, out):
        return np.dot(a, b, out)

    @njit(inline="always")
    def workspace_view(buffer, shape):
        n = 1
        for dim in shape:
            n *= dim
        return buffer[:n].reshape(shape)
