"""Data-parallel W3 (MLP 784-256-256-10 float32 SGD step, batch 128 per rank) over MPI.

    python benchmarks/distributed_report.py                 # 1 rank: the weak-scaling baseline
    mpiexec -n 2 python benchmarks/distributed_report.py    # N ranks, global batch 128·N

A plain script, not an asv benchmark (asv runs one process, not an MPI job). Every rank runs
with one BLAS thread (threadpoolctl; N ranks on N cores) and Numba's serial kernels; inputs
differ per rank (``w3_data(seed=1 + rank)``). Three things are timed, taking turns within each
round so that a burst of load from another process hits them alike:

- ``data-parallel step``: ``jg.distributed.data_parallel(jg.optim.sgd)``, i.e. the step with
  its six gradients averaged over the ranks by one packed all-reduce inside the compiled program;
- ``local step``: the same graph with plain ``jg.optim.sgd`` (no collectives), all N ranks
  computing at the same time, so under the same CPU and memory load as the data-parallel run;
- ``all-reduce``: ``jg.distributed.allreduce_pairs`` (what the compiled program calls) on float32
  arrays of exactly the gradients' shapes, back to back, in its own loop.

Each round starts with ``comm.Barrier()``; a round's figure is the slowest rank's mean seconds
per call (a synchronous job steps at the pace of its slowest rank); the table shows the median
over the rounds (and the best). Figures:

1. all-reduce share = all-reduce / data-parallel step (target < 10 %). Cross-check:
   (data-parallel - local) / data-parallel, the communication *and* synchronisation cost inside
   the step (waiting for the slower rank, the objmode hop, packing), which the isolated
   all-reduce loop does not see.
2. weak-scaling efficiency = T(1 rank, batch 128) / T(N ranks, batch 128 each). T(1 rank) must be
   measured without mpiexec on an otherwise idle machine: a rank idling in a barrier while
   another times (MPICH polls) is no 1-rank measurement. So a 1-rank run saves its step time to
   ``--baseline`` (default ``$TMPDIR/jitgrad_distributed_1rank.json``) and an N-rank run reads it
   (or takes ``--one-rank-ms``). Both runs print their load average: on a 2-core machine any
   other load makes the 2-rank figures worse than the machine's. The in-run ratio
   local / data-parallel is the efficiency against the same N-rank load without communication:
   it separates the cost of communicating from the cost of sharing the machine (memory
   bandwidth, caches, turbo), which the true weak-scaling efficiency also includes.

Rank 0 prints a Markdown table; about 15-25 s per run on 2 cores.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
try:                                    # imported as benchmarks.distributed_report
    from . import _workloads as W
except ImportError:                     # run as a script
    import _workloads as W

import jitgrad as jg


def w3_step(distributed: bool):
    """The W3 step with ``jg.optim.sgd``, its gradients averaged over the ranks if ``distributed``."""
    inputs, params, loss = W.w3_graph(0)
    optimizer = jg.distributed.data_parallel(jg.optim.sgd) if distributed else jg.optim.sgd
    step = jg.compile(inputs, loss, updates=optimizer(loss, params, lr=np.float32(W.W3_LR)))
    return step, params


def timed_rounds(comm, fns: dict, number: dict, repeat: int) -> dict:
    """For each name, per round, the slowest rank's mean seconds per call over number[name] calls."""
    out = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            if comm is not None:
                comm.Barrier()
            start = time.perf_counter()
            for _ in range(number[name]):
                fn()
            mine = (time.perf_counter() - start) / number[name]
            out[name].append(comm.allreduce(mine, op=MAX) if comm is not None else mine)
    return out


def fmt_ms(seconds) -> str:
    return "n/a" if seconds is None else f"{seconds * 1e3:.3f} ms"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15, help="rounds (default 15)")
    parser.add_argument("--seconds", type=float, default=0.25, help="per timing (default 0.25)")
    parser.add_argument("--baseline", default=os.path.join(tempfile.gettempdir(),
                                                          "jitgrad_distributed_1rank.json"),
                        help="file the 1-rank run writes and N-rank runs read")
    parser.add_argument("--one-rank-ms", type=float, help="1-rank step time to use instead")
    args = parser.parse_args(argv)

    world = jg.distributed.init()
    comm, rank, size = world.comm, world.rank, world.size
    if comm is not None:
        global MAX
        from mpi4py import MPI
        MAX = MPI.MAX
    load_start = os.getloadavg()
    blas = W.blas_threads(1)
    blas.__enter__()

    parallel, params = w3_step(distributed=True)
    jg.distributed.broadcast_params(parallel)
    local, _ = w3_step(distributed=False)
    x, labels = W.w3_data(seed=1 + rank)
    grads = [np.ones(p.value.shape, np.float32) for p in params]
    sums = [np.empty_like(g) for g in grads]
    pairs = [a for g, s in zip(grads, sums) for a in (g, s)]
    fns = {"data-parallel step": lambda: parallel(x, labels),
           "local step": lambda: local(x, labels),
           "all-reduce": lambda: jg.distributed.allreduce_pairs(*pairs)}

    for fn in fns.values():                 # compile and warm up
        for _ in range(3):
            fn()
    number = {}
    for name, fn in fns.items():            # calls per timing: rank 0 decides for everyone
        start = time.perf_counter()
        for _ in range(5):
            fn()
        number[name] = max(1, round(args.seconds / ((time.perf_counter() - start) / 5)))
    if comm is not None:
        number = comm.bcast(number, root=0)
    t = timed_rounds(comm, fns, number, args.repeat)
    blas.__exit__(None, None, None)
    load_end = os.getloadavg()

    # the data-parallel step must have kept the ranks' params identical
    digest = b"".join(np.ascontiguousarray(p.value).tobytes()[:4096] for p in params)
    same = comm is None or len(set(comm.allgather(hashlib.sha256(digest).hexdigest()))) == 1
    if rank != 0:
        return 0

    med = {k: statistics.median(v) for k, v in t.items()}
    best = {k: min(v) for k, v in t.items()}
    step, alone, reduce = med["data-parallel step"], med["local step"], med["all-reduce"]
    one_rank, source = None, ""
    if size == 1:
        one_rank, source = step, "this run"
        with open(args.baseline, "w") as f:
            json.dump({"step_s": step, "local_s": alone, "load": load_start[0],
                       "time": time.strftime("%Y-%m-%d %H:%M:%S")}, f)
    elif args.one_rank_ms is not None:
        one_rank, source = args.one_rank_ms / 1e3, "--one-rank-ms"
    elif os.path.exists(args.baseline):
        with open(args.baseline) as f:
            saved = json.load(f)
        one_rank = saved["step_s"]
        source = f"{args.baseline}, {saved['time']}, load {saved['load']:.2f}"

    n_grad = sum(g.size for g in grads)
    out = [f"Command: `{'mpiexec -n ' + str(size) + ' ' if size > 1 else ''}python "
           f"benchmarks/distributed_report.py`: {size} rank(s), batch {W.W3_BATCH} per rank "
           f"(global {W.W3_BATCH * size}), 1 BLAS thread per rank, {os.cpu_count()} CPUs; "
           f"1-min load average {load_start[0]:.2f} at start, {load_end[0]:.2f} at end; "
           f"{args.repeat} rounds of {number}.", "",
           "| measure | median | best | note |", "|---|---|---|---|"]
    for name in fns:
        note = {"data-parallel step": "`data_parallel(jg.optim.sgd)`, one packed all-reduce",
                "local step": "plain `jg.optim.sgd`, all ranks computing at once",
                "all-reduce": f"`allreduce_pairs`, 6 float32 arrays, {n_grad} values "
                              f"({n_grad * 4 / 1e6:.2f} MB)"}[name]
        out.append(f"| {name} | {fmt_ms(med[name])} | {fmt_ms(best[name])} | {note} |")
    share = reduce / step
    out.append(f"| all-reduce / step | {share:.1%} | | target < 10 %: "
               f"{'pass' if share < 0.10 else 'miss'}{' (1 rank: identity copies)' if size == 1 else ''} |")
    out.append(f"| (step - local) / step | {(step - alone) / step:.1%} | | communication + "
               f"synchronisation inside the step |")
    out.append(f"| local / data-parallel | {alone / step:.1%} | | efficiency against the same "
               f"{size}-rank load without collectives |")
    if one_rank is not None:
        out.append(f"| 1-rank step | {fmt_ms(one_rank)} | | {source} |")
        out.append(f"| weak-scaling efficiency | {one_rank / step:.1%} | | T(1 rank) / "
                   f"T({size} ranks), batch {W.W3_BATCH} per rank |")
    else:
        out.append("| weak-scaling efficiency | n/a | | run `python benchmarks/distributed_report.py` "
                   "first (or pass --one-rank-ms) |")
    if not same:
        out.append("")
        out.append("- WARNING: the ranks' params differ after the data-parallel steps")
    if load_start[0] > 0.7:
        out.append("")
        out.append(f"- the machine was busy before this job started (1-min load {load_start[0]:.2f} on "
                   f"{os.cpu_count()} CPUs; the end figure includes this job's {size} rank(s)): the "
                   "figures are noisier and slower than an idle machine's")
    print("\n".join(out), flush=True)
    return 0


MAX = None

if __name__ == "__main__":
    sys.exit(main())
