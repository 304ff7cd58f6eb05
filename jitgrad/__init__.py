"""jitgrad: define a graph, differentiate it graph-to-graph, compile it, run it.

>>> import numpy as np, jitgrad as jg
>>> w = jg.input("w", (3,))
>>> y = jg.sum(w ** 2)
>>> (g,) = jg.grad(y, [w])
>>> f = jg.compile([w], [y, g], target="numpy")
>>> f(np.arange(3.0))
(array(5.), array([0., 2., 4.]))
"""
from . import data, distributed, linalg, nn, operators, optim, random
from ._version import __version__
from .batching import vmap
from .autodiff import checkpoint, grad, hessian, hvp, jacobian, jvp, stop_gradient, vjp
from .compile import Executable, compile
from .functions import (
    abs, add, arange, arccos, arccosh, arcsin, arcsinh, arctan, arctan2, arctanh, astype, bitwise_and,
    bitwise_not, bitwise_or, bitwise_xor, broadcast_to, ceil, clip, concatenate, copysign, cos, cosh,
    divide, dot, elu, equal, erf, exp, exp2, expand_dims, expm1, eye, floor, floor_divide, fmod, full,
    full_like, gelu, greater, greater_equal, hypot, identity, invert, isfinite, isinf, isnan,
    leaky_relu, left_shift, less, less_equal, linspace, log, log10, log1p, log2, logaddexp, logical_and,
    logical_not, logical_or, logical_xor, logsumexp, matmul, max, maximum, mean, min, minimum, mod,
    multiply, negative, not_equal, ones, ones_like, outer, power, prod, reciprocal, relu, remainder,
    reshape, right_shift, rint, round, sigmoid, sign, silu, sin, sinh, softplus, sqrt, square, squeeze,
    stack, subtract, sum, take, tan, tanh, transpose, trunc, where, zeros, zeros_like,
)
from .check import check_grads
from .contractions import cross, einsum, einsum_path, inner, kron, tensordot, vdot
from .custom import custom_jvp, custom_vjp
from .graph import Tensor, constant, input, inputs_of, param
from .io import load, save
from .loops import cond, fori_loop, scan, while_loop
from .params import load_params, save_params
from .provenance import debug_nans
from .reductions import (  # noqa: A004
    all, any, argmax, argmin, cumprod, cumsum, logcumsumexp, median, quantile, std, var,
)
from .arrays import (
    array_split, diag, diagonal, flip, meshgrid, moveaxis, pad, ravel, repeat, roll, split, swapaxes,
    take_along_axis, tile, trace, tril, triu,
)
from .sorting import argsort, sort, top_k
from .viz import render, to_dot

operators.install_operators(Tensor)
