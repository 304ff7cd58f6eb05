"""target="cuda" from the main suite: the simulator suite in its own process, and the
error a machine without a GPU gives."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from numba import config

import jitgrad as jg

TESTS = Path(__file__).resolve().parent


@pytest.mark.skipif(config.ENABLE_CUDASIM, reason="already inside the simulator")
def test_the_cuda_suite_passes_in_the_simulator():
    """NUMBA_ENABLE_CUDASIM must be set before numba is imported: a process of its own."""
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(TESTS / "cuda")],
                          env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]


@pytest.mark.skipif(config.ENABLE_CUDASIM, reason="the simulator stands in for a GPU")
def test_compiling_for_cuda_without_a_gpu_says_what_is_missing():
    from numba import cuda
    if cuda.is_available():
        pytest.skip("a GPU is present")
    x = jg.input("x", (3,))
    with pytest.raises(RuntimeError, match="NVIDIA GPU.*NUMBA_ENABLE_CUDASIM=1"):
        jg.compile([x], jg.sum(x), target="cuda")
    np.testing.assert_array_equal(jg.compile([x], x * 2, target="numpy")(np.ones(3)), 2.0)
