"""Data-parallel training under MPI: several ranks on this machine, run by mpiexec in a
subprocess with a timeout (tests/mpi/data_parallel.py holds the checks)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

import jitgrad as jg

SCRIPT = Path(__file__).resolve().parent / "mpi" / "data_parallel.py"



def find_mpiexec() -> str | None:
    """The mpiexec of this interpreter's environment, else the one on PATH. pip's mpich puts it
    in the environment's scripts folder (beside the interpreter), which is not on PATH when the
    virtual environment is used without being activated."""
    for folder in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        candidate = Path(folder) / "mpiexec"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which("mpiexec")


def _no_mpi_reason() -> str | None:
    try:
        import mpi4py  # noqa: F401
    except ImportError as e:
        return f"mpi4py cannot be imported ({e}); python -m pip install -e \".[dev]\" brings mpi4py and mpich"
    if find_mpiexec() is None:
        return (f"no mpiexec beside {sys.executable} nor on PATH; "
                "python -m pip install -e \".[dev]\" brings MPICH's wheel, which has one")
    return None


MPIEXEC, NO_MPI = find_mpiexec(), _no_mpi_reason()
needs_mpi = pytest.mark.skipif(NO_MPI is not None, reason=NO_MPI or "")


def mpiexec(n: int, check: str, timeout: float = 240):
    env = dict(os.environ, PATH=os.pathsep.join([str(Path(MPIEXEC).parent), os.environ.get("PATH", "")]))
    return subprocess.run([MPIEXEC, "-n", str(n), sys.executable, str(SCRIPT), check],
                          capture_output=True, text=True, timeout=timeout, env=env)


@needs_mpi
@pytest.mark.parametrize("ranks", [2, 3])
def test_ranks_train_the_same_params_as_one_process(ranks):
    done = mpiexec(ranks, "same_as_one_process")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("ok same_as_one_process") == ranks


@needs_mpi
def test_psum_and_pmean_values_and_derivatives():
    done = mpiexec(3, "collectives")
    assert done.returncode == 0 and done.stdout.count("ok collectives") == 3, done.stdout + done.stderr


@needs_mpi
def test_a_rank_that_raises_ends_the_job_with_its_error():
    done = mpiexec(2, "fails_on_one_rank", timeout=120)     # no rank left hanging: no timeout
    assert done.returncode != 0
    assert "deliberate failure on the last rank" in done.stderr and "[rank 1]" in done.stderr


@needs_mpi
def test_ranks_with_different_graphs_are_reported():
    done = mpiexec(2, "mismatched_graphs", timeout=120)
    assert done.returncode != 0
    assert "ranks [1] compiled a different graph or params than rank 0" in done.stderr
    assert "('w1', (5, 8), 'float64')" in done.stderr


def test_without_mpi_the_world_has_one_rank_and_collectives_are_the_identity():
    world = jg.distributed.init()
    assert (world.rank, world.size) == (0, 1)
    x = jg.input("x", (2,))
    f = jg.compile([x], [jg.distributed.psum(x), jg.distributed.pmean(x)])
    for got in f(np.array([1.0, 2.0])):
        np.testing.assert_array_equal(got, [1.0, 2.0])


def test_collectives_of_a_step_are_packed_into_one_allreduce():
    w1, w2 = jg.param("w1", np.ones(3)), jg.param("w2", np.ones(2))
    x = jg.input("x", (3,))
    loss = jg.sum(x * w1) * jg.sum(w2 * w2)
    f = jg.compile([x], loss, updates=jg.distributed.data_parallel(jg.optim.sgd)(loss, [w1, w2], lr=0.1))
    assert f.source.count("allreduce_pairs(") == 1 and f.source.count("psum") == 2


def test_batches_shard_each_global_batch():
    rows = np.arange(10)
    parts = [[b.tolist() for b in jg.data.batches(rows, 4, shard=(r, 3))] for r in range(3)]
    assert parts == [[[0, 1], [4, 5], [8]], [[2], [6], [9]], [[3], [7], []]]
    with pytest.raises(ValueError, match="shard"):
        jg.data.batches(rows, 4, shard=(3, 3))
    with pytest.raises(ValueError, match="seed"):
        jg.data.batches(rows, 4, shuffle=True, shard=(0, 2))


def test_packed_collectives_on_one_rank_sum_each_their_own_input():
    """Two psums in one all-reduce: each output is its own input's sum (a world of one used to
    copy the last input into every output), and no output takes an input's buffer first."""
    x, w = jg.input("x", (3,)), jg.param("w", np.ones(3))
    y = jg.distributed.psum(x * w) - jg.distributed.psum(x + w)
    for target in ("numpy", "cpu"):
        f = jg.compile([x], y, target=target)
        np.testing.assert_array_equal(f(np.arange(3.0)), [-1.0, -1.0, -1.0])
    step = jg.compile([x], jg.sum(x * w), target="cpu",
                      updates=jg.distributed.data_parallel(jg.optim.sgd)(jg.sum(x * w) * jg.sum(w), [w], lr=0.1))
    step(np.arange(3.0))
    np.testing.assert_allclose(w.value, 1 - 0.1 * (np.arange(3.0) * 3 + np.arange(3.0).sum()))
