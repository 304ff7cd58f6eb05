"""glibc's vector math (libmvec) in the CPU kernels, so loops over sin, exp, tanh vectorize.

pip's llvmlite has no SVML, and the LLVM it ships (22) no longer reads the
``-vector-library`` option, so a kernel loop that calls ``math.sin`` stays a
loop of scalar glibc calls, 20-40 ns an element.  Each function here calls the
same scalar glibc function, but marks the call with the vector variants glibc's
libmvec provides (the ``vector-function-abi-variant`` attribute, which OpenMP's
``declare simd`` produces).  LLVM's loop vectorizer may then replace 4, 8 or 16
scalar calls by one call of a variant, for the widest instruction set this
machine has (AVX2, AVX-512).  A loop the vectorizer leaves alone, and a loop's
last few elements, still call the scalar function.

libmvec is accurate to 4 ulps (glibc's documented bound; tests/test_math_accuracy.py
measures each function against the reference), so a kernel's result may differ
from ``target="numpy"`` in its last bits, as it may already through BLAS.
``JITGRAD_VECTOR_MATH=0`` turns it off: kernels then call ``math`` (the switch
changes their source, so the disk cache never mixes the two).

Only the variants this machine's glibc exports are named (``vector_abi.VARIANTS``,
which says, without Numba, what code generation may call).
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from .vector_abi import ARITY, VARIANTS

# -- code generation ---------------------------------------------------------------------

def _declare_variants(module: ir.Module) -> None:
    """Declare every vector variant in ``module`` and keep the declarations alive
    (``llvm.compiler.used``): the vectorizer only uses a variant the module declares, and
    Numba's first optimisation, before vectorizing, drops unused declarations."""
    if "llvm.compiler.used" in module.globals:
        return
    declared = []
    for dtype, functions in VARIANTS.items():
        element = ir.DoubleType() if dtype == np.float64 else ir.FloatType()
        for name, found in functions.items():
            for symbol, lanes in found:
                vector = ir.VectorType(element, lanes)
                function = module.globals.get(symbol) or ir.Function(
                    module, ir.FunctionType(vector, [vector] * ARITY[name]), symbol)
                declared.append(function)
    table = ir.ArrayType(ir.PointerType(), len(declared))
    used = ir.GlobalVariable(module, table, "llvm.compiler.used")
    used.linkage, used.section = "appending", "llvm.metadata"
    used.initializer = ir.Constant(table, declared)


def _mark_call(call: ir.CallInstr, scalar: str, found: list, arity: int) -> None:
    """Tell LLVM which vector variants compute ``call``, and that it touches no memory
    (glibc's scalar functions may set errno, which would keep the loop scalar)."""
    shapes = ",".join(f"_ZGV_LLVM_N{lanes}{'v' * arity}_{scalar}({symbol})" for symbol, lanes in found)
    marks = ["memory(none)", "nounwind"] + ([f'"vector-function-abi-variant"="{shapes}"'] if found else [])
    for mark in marks:     # llvmlite checks names against its keyword list: add them as text
        set.add(call.attributes, mark)


def _function(name: str, arity: int):
    """The intrinsic ``vmath.<name>``: a float64 (or float32) scalar call LLVM may vectorize.
    Integer arguments are taken as float64, as ``math.<name>`` takes them."""
    def typed(args):
        if not all(isinstance(a, (types.Float, types.Integer)) for a in args):
            return None
        result = types.float32 if all(a == types.float32 for a in args) else types.float64
        dtype = np.dtype(result.name)
        element = ir.DoubleType() if dtype == np.float64 else ir.FloatType()
        scalar = name + ("f" if dtype == np.float32 else "")

        def codegen(context, builder, signature, values):
            module = builder.module
            _declare_variants(module)
            function = module.globals.get(scalar) or ir.Function(
                module, ir.FunctionType(element, [element] * arity), scalar)
            operands = [context.cast(builder, v, t, result) for v, t in zip(values, signature.args)]
            call = builder.call(function, operands)
            _mark_call(call, scalar, VARIANTS[dtype].get(name, []), arity)
            return call

        return result(*args), codegen

    if arity == 1:
        def vector_function(typingctx, x):
            return typed((x,))
    else:
        def vector_function(typingctx, x, y):
            return typed((x, y))
    vector_function.__name__ = vector_function.__qualname__ = name
    return intrinsic(vector_function)


for _name, _arity in ARITY.items():
    globals()[_name] = _function(_name, _arity)


if "exp" in ARITY:
    @njit(inline="always", cache=True, error_model="numpy")
    def sigmoid(x):
        """``scalars.sigmoid`` without its branch, so a loop of it vectorizes: the same
        formulas, 1 / (1 + e^-x) for x >= 0 and e^x / (1 + e^x) below."""
        e = exp(-abs(x))    # noqa: F821  (defined above, with the other functions)
        return (1.0 if x >= 0 else e) / (1.0 + e)
