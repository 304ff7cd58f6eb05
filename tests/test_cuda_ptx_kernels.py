"""Every fused kernel the CUDA target generates for the primitive table (values and
reverse mode, float64) and for an MLP and a CNN training step (float32) compiles to
PTX for sm_80 and sm_90.

Needs numba-cuda with NVIDIA's NVVM (``pip install numba-cuda nvidia-nvvm
nvidia-cuda-nvrtc nvidia-cuda-runtime``), no GPU; skips where they are missing.
"""
from __future__ import annotations

import numba
import numpy as np
import pytest

if numba.config.ENABLE_CUDASIM:
    pytest.skip("PTX compilation cannot run under the CUDA simulator", allow_module_level=True)

import jitgrad as jg  # noqa: E402
from jitgrad.backends.cache import load_module  # noqa: E402
from jitgrad.backends.cuda_kernels import PRELUDE, CudaKernelWriter  # noqa: E402
from jitgrad.backends.kernel_body import literal  # noqa: E402
from jitgrad.fusion import Kernel, fuse  # noqa: E402
from jitgrad.testing import CASES, with_derivatives  # noqa: E402

CCS = [(8, 0), (9, 0)]


def _mlp_step():
    w1, b1 = jg.param("w1", np.zeros((6, 8), np.float32)), jg.param("b1", np.zeros(8, np.float32))
    w2, b2 = jg.param("w2", np.zeros((8, 3), np.float32)), jg.param("b2", np.zeros(3, np.float32))
    x, labels = jg.input("x", (None, 6), "float32"), jg.input("labels", (None,), "int64")
    loss = jg.nn.cross_entropy(jg.nn.dense(jg.relu(jg.nn.dense(x, w1, b1)), w2, b2), labels)
    f = jg.compile([x, labels], loss, target="numpy", updates=jg.optim.adam(loss, [w1, b1, w2, b2]))
    return f.schedule


def _cnn_step():
    """conv (padded), relu, max pool, conv (strided), avg pool, dense: the window kernels in float32."""
    w1, w2 = jg.param("w1", np.zeros((4, 2, 3, 3), np.float32)), jg.param("w2", np.zeros((4, 4, 2, 2), np.float32))
    w3 = jg.param("w3", np.zeros((4, 3), np.float32))
    x, labels = jg.input("x", (None, 2, 8, 8), "float32"), jg.input("labels", (None,), "int64")
    h = jg.nn.max_pool2d(jg.relu(jg.nn.conv2d(x, w1, padding=1)), 2, padding=1)
    h = jg.nn.avg_pool2d(jg.nn.conv2d(h, w2, stride=2), 2)
    loss = jg.nn.cross_entropy(jg.nn.flatten(h) @ w3, labels)
    f = jg.compile([x, labels], loss, target="numpy", updates=jg.optim.sgd(loss, [w1, w2, w3], 0.1))
    return f.schedule


def _schedules():
    for case in CASES:
        args = case.sample()
        xs, outputs = with_derivatives(case, args, modes=("rev",))
        yield jg.compile(xs, outputs, target="numpy").schedule
    yield _mlp_step()
    yield _cnn_step()


def _kernels():
    """Every distinct generated kernel module with its functions' signatures."""
    seen = {}
    for schedule in _schedules():
        literals = {v: literal(value, v.dtype) for v, value in schedule.consts if value.ndim == 0}
        scalars = {v for v in schedule.inputs if not v.dims}
        for step in fuse(schedule):
            if isinstance(step, Kernel):
                writer = CudaKernelWriter(step, literals, scalars, threads=256)
                source = PRELUDE + "\n\n" + writer.source()
                seen.setdefault(source, writer.signatures())
    return list(seen.items())


KERNELS = _kernels()


@pytest.mark.parametrize("cc", CCS, ids=lambda cc: f"sm_{cc[0]}{cc[1]}")
def test_every_fused_kernel_compiles_to_ptx(ptx_toolkit, cc):
    from numba import cuda
    for source, signatures in KERNELS:
        module = load_module(source)
        for name, signature in signatures.items():
            ptx, _ = cuda.compile_ptx(getattr(module, name).py_func, signature, cc=cc)
            assert f".target sm_{cc[0]}{cc[1]}" in ptx
