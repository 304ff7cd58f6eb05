"""Run under mpiexec by tests/test_distributed.py: ``mpiexec -n N python data_parallel.py CHECK``.

Each check prints ``ok <check> rank <r>`` on success; anything else is a failure.
"""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import jitgrad as jg  # noqa: E402

world = jg.distributed.init()
rng = np.random.default_rng(0)
X, Y = rng.normal(size=(48, 5)), rng.integers(0, 3, 48)
BATCH = 12


def model(optimizer, hidden=7, seed=1, **kw):
    init = np.random.default_rng(seed)
    w1, b1 = jg.param("w1", init.normal(size=(5, hidden)) * 0.5), jg.param("b1", np.zeros(hidden))
    w2, b2 = jg.param("w2", init.normal(size=(hidden, 3)) * 0.5), jg.param("b2", np.zeros(3))
    x, y = jg.input("x", (None, 5)), jg.input("y", (None,), "int64")
    loss = jg.nn.cross_entropy(jg.nn.dense(jg.tanh(jg.nn.dense(x, w1, b1)), w2, b2), y)
    params = [w1, b1, w2, b2]
    return jg.compile([x, y], loss, updates=optimizer(loss, params, **kw)), params


def same_as_one_process(kind, kw):
    """N ranks with global batch B give the params of one process with batch B.

    Each rank initialises its params from its own seed, so only broadcast_params makes them
    rank 0's (the reference's): a broadcast that sent nothing would leave ranks apart."""
    optimizer = getattr(jg.optim, kind)
    parallel, params = model(jg.distributed.data_parallel(optimizer), seed=1 + world.rank, **kw)
    alone, reference = model(optimizer, seed=1, **kw)
    if world.rank != 0:
        assert not np.allclose(params[0].value, reference[0].value), "ranks must start apart"
    jg.distributed.broadcast_params(parallel)
    for p, q in zip(params, reference):
        np.testing.assert_array_equal(p.value, q.value, err_msg=f"{p.name} after broadcast_params")
    mine = jg.data.batches((X, Y), BATCH, shuffle=True, seed=3, shard=(world.rank, world.size))
    everything = jg.data.batches((X, Y), BATCH, shuffle=True, seed=3)
    for _ in range(2):                                   # two epochs, 8 steps
        for (xb, yb), (xa, ya) in zip(mine, everything):
            parallel(xb, yb)
            alone(xa, ya)
    for p, q in zip(params, reference):
        np.testing.assert_allclose(p.value, q.value, rtol=1e-12, atol=1e-15)


def collectives():
    """psum/pmean values and derivatives against what one process computes by hand."""
    n, r = world.size, world.rank
    x = jg.input("x", (3,))
    c = np.array([1.0, -2.0, 0.5])
    mine = np.arange(3.0) + r
    total = sum(np.arange(3.0) + k for k in range(n))
    s, m = jg.distributed.psum(x), jg.distributed.pmean(x)
    loss = jg.sum(c * s * s)
    for target in ("numpy", "cpu"):
        f = jg.compile([x], [s, m, *jg.grad(loss, [x]), *jg.jvp([loss], [x], [np.ones(3)])], target=target)
        got_s, got_m, g, t = f(mine)
        np.testing.assert_allclose(got_s, total, rtol=1e-15)
        np.testing.assert_allclose(got_m, total / n, rtol=1e-15)
        # d/dx_r of Σ_i c_i (Σ_k x_k,i)² is 2 c s on every rank, summed over the ranks' cotangents
        np.testing.assert_allclose(g, n * 2 * c * total, rtol=1e-14)
        np.testing.assert_allclose(t, np.sum(2 * c * total * n), rtol=1e-14)   # tangent 1 on every rank


def fails_on_one_rank():
    step, _ = model(jg.distributed.data_parallel(jg.optim.sgd), lr=0.1)
    for k, (xb, yb) in enumerate(jg.data.batches((X, Y), BATCH, seed=0, shard=(world.rank, world.size))):
        if k == 2 and world.rank == world.size - 1:
            raise RuntimeError("deliberate failure on the last rank")
        step(xb, yb)


def mismatched_graphs():
    step, _ = model(jg.distributed.data_parallel(jg.optim.sgd), hidden=7 + (world.rank == 1), lr=0.1)
    jg.distributed.broadcast_params(step)


if __name__ == "__main__":
    check = sys.argv[1]
    if check == "same_as_one_process":
        for kind, kw in [("sgd", dict(lr=0.1, momentum=0.9)), ("adam", dict(lr=0.01))]:
            same_as_one_process(kind, kw)
    else:
        globals()[check]()
    print(f"ok {check} rank {world.rank}", flush=True)
