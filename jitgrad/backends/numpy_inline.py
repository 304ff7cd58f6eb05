"""``np.empty``, ``np.dot(a, b, out)``, ``a.reshape(shape)`` and workspace views for the
generated CPU code, lowered in place.

Numba implements the first two as overloads: each signature is a function of its
own that goes through Numba's whole pipeline (typing, lowering, an LLVM module
optimised and compiled to machine code), in every new process.  A W3 step's
program spent 0.5 s of its cold compile on them (4 ``np.empty`` and 3 ``np.dot``
signatures).  These intrinsics emit the same code (Numba's own lowering helpers)
straight into the calling function, so they cost only their few instructions
there.  Numba's own lowering of ``np.empty``, ``np.dot`` and ``reshape`` also
compiles small Python functions (its allocator's trampoline, the size checks, the
reshape's size inference) through that pipeline, once per process and signature:
six of them took 0.55 s of W3's program.  Here those steps are written as IR.
A workspace view (``ws[:n].reshape(shape)``, 35 of them in that program) lowered
as a slice and a general reshape is a few dozen instructions and a loop each;
``workspace_view`` is a handful.

They use helpers private to Numba; where those are missing (another Numba), the
names fall back to small jitted functions that call NumPy's, as before.
"""
from __future__ import annotations

import functools

import numpy as np
from numba import njit, types
from numba.extending import intrinsic

try:
    from llvmlite import ir
    from numba.core import cgutils
    from numba.core.imputils import impl_ret_borrowed, impl_ret_new_ref
    from numba.np.arrayobj import _attempt_nocopy_reshape, _parse_shape, make_array, populate_array
    from numba.np.linalg import call_xxgemm, call_xxgemv, ensure_blas, make_contiguous
except ImportError:         # pragma: no cover  (a Numba without these helpers)
    make_array = None


def _element_type(dtype):
    """The Numba type of an element, from what ``np.float32`` (or a dtype) types as."""
    if isinstance(dtype, (types.NumberClass, types.DType)):
        return dtype.dtype
    return None


_C_INT_MAX = 2**31 - 1      # BLAS takes sizes as C ints


def _raise_unless(context, builder, ok, error: type, message: str) -> None:
    with builder.if_then(builder.not_(ok), likely=False):
        context.call_conv.return_user_exc(builder, error, (message,))


def _c_strides(builder, dims: list, itemsize) -> list:
    """The strides of a C-ordered array with sizes ``dims`` (intp values)."""
    strides, step = [], itemsize
    for dim in reversed(dims):
        strides.insert(0, step)
        step = builder.mul(step, dim)
    return strides


if make_array is not None:
    def _allocate(context, builder, array_type, dims: list):
        """A new C-ordered ``array_type`` with sizes ``dims`` (non-negative intp values), in
        memory from Numba's runtime aligned as Numba aligns arrays: what Numba's allocation
        does, without its allocator trampoline (a function compiled once per process)."""
        element = context.get_data_type(array_type.dtype)
        itemsize = context.get_constant(types.intp, context.get_abi_sizeof(element))
        count, overflow = context.get_constant(types.intp, 1), cgutils.false_bit
        for dim in [*dims, itemsize]:
            product = builder.smul_with_overflow(count, dim)
            count = builder.extract_value(product, 0)
            overflow = builder.or_(overflow, builder.extract_value(product, 1))
        _raise_unless(context, builder, builder.not_(overflow), ValueError,
                      "array is too big; `arr.size * arr.dtype.itemsize` is larger than the maximum possible size.")
        align = context.get_preferred_array_alignment(array_type.dtype)
        meminfo = context.nrt.meminfo_alloc_aligned(builder, count, align)     # MemoryError if NULL
        data = builder.bitcast(context.nrt.meminfo_data(builder, meminfo), element.as_pointer())
        array = make_array(array_type)(context, builder)
        populate_array(array, data=data, shape=dims, strides=_c_strides(builder, dims, itemsize),
                       itemsize=itemsize, meminfo=meminfo)
        return array

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
            dims = _parse_shape(context, builder, signature.args[0], args[0])    # refuses negatives
            value = _allocate(context, builder, array, dims)._getvalue()
            return impl_ret_new_ref(context, builder, array, value)

        return array(shape, dtype), codegen

    def _dot(context, builder, signature, args):
        """``out = a @ b`` through BLAS for C- or F-ordered operands, 2-d times 2-d or a vector
        and a matrix; its checks raise what ``np.dot(a, b, out)`` raises in Numba."""
        kinds = {(2, 2): "matrix * matrix", (1, 2): "vector * matrix", (2, 1): "matrix * vector"}
        a_type, b_type, out_type = signature.args
        kind = kinds[a_type.ndim, b_type.ndim]
        a, b, out = (make_array(t)(context, builder, v) for t, v in zip(signature.args, args))
        a_dims, b_dims, out_dims = (cgutils.unpack_tuple(builder, x.shape) for x in (a, b, out))
        equal = lambda x, y: builder.icmp_signed("==", x, y)      # noqa: E731
        want = a_dims[:-1] + b_dims[1:]           # the product's sizes
        _raise_unless(context, builder, equal(a_dims[-1], b_dims[0]), ValueError,
                      f"incompatible array sizes for np.dot(a, b) ({kind})")
        _raise_unless(context, builder, functools.reduce(builder.and_, [equal(o, w) for o, w in zip(out_dims, want)]),
                      ValueError, f"incompatible output array size for np.dot(a, b, out) ({kind})")
        sizes = a_dims + b_dims[1:]
        for size in sizes:
            _raise_unless(context, builder, builder.icmp_signed("<=", size, size.type(_C_INT_MAX)),
                          OverflowError, "array size too large to fit in C int")
        nothing = functools.reduce(builder.or_, [equal(size, size.type(0)) for size in sizes])
        with builder.if_else(nothing, likely=False) as (zeros, product):
            with zeros:        # an empty operand: out is all zeros (or empty itself)
                cgutils.memset(builder, out.data, builder.mul(out.itemsize, out.nitems), 0)
            with product:
                if kind == "matrix * matrix":
                    call_xxgemm(context, builder, a_type, a_dims, a.data, b_type, b_dims, b.data,
                                out_type, out_dims, out.data)
                elif kind == "vector * matrix":      # out = b.T @ a
                    call_xxgemv(context, builder, b_type.layout == "F", b_type, b_dims, b.data, a.data, out.data)
                else:
                    call_xxgemv(context, builder, a_type.layout == "C", a_type, a_dims, a.data, b.data, out.data)
        return impl_ret_borrowed(context, builder, out_type, out._getvalue())

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
                return _dot(context, builder, signature, args)

        return out(a, b, out), codegen

    def _infer_size(context, builder, dims: list, size) -> list:
        """``dims`` (intp values) with a negative one replaced by what makes their product
        ``size``; raises as NumPy's reshape does when they cannot have that product."""
        zero, one = context.get_constant(types.intp, 0), context.get_constant(types.intp, 1)
        negative = [builder.icmp_signed("<", d, zero) for d in dims]
        known, unknowns = one, zero
        for dim, is_negative in zip(dims, negative):
            known = builder.mul(known, builder.select(is_negative, one, dim))
            unknowns = builder.add(unknowns, builder.zext(is_negative, unknowns.type))
        _raise_unless(context, builder, builder.icmp_signed("<=", unknowns, one), ValueError,
                      "multiple negative shape values")
        no_known = builder.icmp_signed("==", known, zero)
        divisor = builder.select(no_known, one, known)
        inferred = builder.select(no_known, zero, builder.sdiv(size, divisor))
        fits = builder.select(builder.icmp_signed("==", unknowns, zero), builder.icmp_signed("==", size, known),
                              builder.select(no_known, builder.icmp_signed("==", size, zero),
                                             builder.icmp_signed("==", builder.srem(size, divisor), zero)))
        _raise_unless(context, builder, fits, ValueError, "total size of new array must be unchanged")
        return [builder.select(is_negative, inferred, dim) for dim, is_negative in zip(dims, negative)]

    @intrinsic
    def reshape(typingctx, array, shape):
        """``array.reshape(shape)`` for a C- or F-ordered array and an integer or a tuple of
        integers (one may be -1): a view, as Numba's reshape is, with the same errors."""
        if not (isinstance(array, types.Array) and array.layout in "CF"):
            return None
        if isinstance(shape, types.Integer):
            kinds = (shape,)
        elif isinstance(shape, types.BaseTuple) and all(isinstance(s, types.Integer) for s in shape):
            kinds = tuple(shape)
        else:
            return None
        view = array.copy(ndim=len(kinds))

        def codegen(context, builder, signature, args):
            source = make_array(array)(context, builder, args[0])
            integer = isinstance(shape, types.Integer)
            values = [args[1]] if integer else cgutils.unpack_tuple(builder, args[1], len(kinds))
            dims = [context.cast(builder, value, kind, types.intp) for value, kind in zip(values, kinds)]
            dims = _infer_size(context, builder, dims, source.nitems)
            intp = context.get_value_type(types.intp)
            new_shape = cgutils.alloca_once(builder, ir.ArrayType(intp, len(dims)))
            for k, dim in enumerate(dims):
                builder.store(dim, cgutils.gep_inbounds(builder, new_shape, 0, k))
            new_strides = cgutils.alloca_once(builder, ir.ArrayType(intp, len(dims)))
            copied = _attempt_nocopy_reshape(context, builder, array, source, len(dims), new_shape, new_strides)
            _raise_unless(context, builder, builder.icmp_unsigned("!=", copied, copied.type(0)),
                          NotImplementedError, "incompatible shape for array")
            result = make_array(view)(context, builder)
            populate_array(result, data=source.data, shape=builder.load(new_shape),
                           strides=builder.load(new_strides), itemsize=source.itemsize,
                           meminfo=source.meminfo, parent=source.parent)
            return impl_ret_borrowed(context, builder, view, result._getvalue())

        return view(array, shape), codegen

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
            strides = _c_strides(builder, dims, source.itemsize)
            count = context.get_constant(types.intp, 1)
            for dim in dims:
                count = builder.mul(count, dim)
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
    def reshape(array, shape):
        return array.reshape(shape)

    @njit(inline="always")
    def workspace_view(buffer, shape):
        n = 1
        for dim in shape:
            n *= dim
        return buffer[:n].reshape(shape)
