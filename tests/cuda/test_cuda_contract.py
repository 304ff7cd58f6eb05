"""The compile contract (tests/test_compile.py) on target="cuda", in the simulator: every
test there that takes the ``target`` fixture runs here with "cuda"."""
from __future__ import annotations

import inspect
import sys
from pathlib import Path

import pytest
from numba import config

if not config.ENABLE_CUDASIM:
    pytest.skip("the CUDA tests run in the simulator: NUMBA_ENABLE_CUDASIM=1", allow_module_level=True)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import test_compile as contract  # noqa: E402

for _name, _test in vars(contract).items():
    if _name.startswith("test_") and "target" in inspect.signature(_test).parameters:
        globals()[_name] = _test


@pytest.fixture
def target():
    return "cuda"
