"""What only a real GPU can measure for target="cuda" (issue 6), printed as a table.

    python benchmarks/gpu_report.py [--n 1e8]

1. W2's fused value-and-gradient kernel at n = 1e8: achieved GB/s (x read once,
   the gradient written once) against the device's measured copy bandwidth
   (target >= 70%).
2. The W3 MLP training step on cuda against the cpu target.
3. Kernel launches per W3 step (target: the fused count, not one per primitive).
4. W7, an RNN through ``jg.scan`` (a host loop over the body's kernels), on cuda against cpu.
5. W8, the LeNet-style CNN's SGD step (issue 16), on cuda against cpu.
6. Philox random numbers: float32 uniform draws per second on the device.

Without a GPU it says so and prints only the launch count, which it takes from the
schedule (the simulator stands in for the device).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def best_of(fn, repeat: int = 5) -> float:
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def copy_bandwidth(cuda, n: int) -> float:
    """Device-to-device copy of n float64: bytes read + written per second."""
    src, dst = cuda.device_array(n), cuda.device_array(n)

    def copy():
        dst.copy_to_device(src)
        cuda.synchronize()
    return 2 * 8 * n / best_of(copy)


def program_inputs(f):
    """The schedule's input variables of a compiled function."""
    return list(f._program._s.inputs)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=float, default=1e8, help="W2 size (elements)")
    args = parser.parse_args(argv)
    from benchmarks import _workloads as W
    from numba import cuda

    gpu = cuda.is_available() and not os.environ.get("NUMBA_ENABLE_CUDASIM")
    step = W.w3_jitgrad(target="cuda") if gpu or os.environ.get("NUMBA_ENABLE_CUDASIM") else None
    if step is not None:
        ops = len(step.schedule)
        print(f"W3 step: {step._program.launches_per_call()} kernel launches per call "
              f"for {ops} primitives in the schedule")
    if not gpu:
        print("no GPU here: GB/s and step times need one (run with NUMBA_ENABLE_CUDASIM=1 for the "
              "launch count)")
        return 0
    n = int(args.n)
    f = W.w2_jitgrad(target="cuda")
    program, (x,) = f._program, program_inputs(f)
    device_x = cuda.to_device(W.w2_data(n))
    sizes = {x.dims[0]: n}
    on_device = best_of(lambda: (program.run_on_device({x: device_x}, sizes), cuda.synchronize()))
    with_transfers = best_of(lambda: f(W.w2_data(n)))
    achieved, peak = 2 * 8 * n / on_device, copy_bandwidth(cuda, n)
    print(f"W2 n = {n:.0e}: value and gradient {achieved / 1e9:.1f} GB/s on the device, copy "
          f"{peak / 1e9:.1f} GB/s: {100 * achieved / peak:.0f}% (target >= 70%); the whole call with "
          f"transfers {with_transfers * 1e3:.1f} ms")
    xb, labels = W.w3_data()
    cpu_step = W.w3_jitgrad(target="cpu")
    t_gpu = best_of(lambda: (step(xb, labels), cuda.synchronize()), 20)
    t_cpu = best_of(lambda: cpu_step(xb, labels), 20)
    print(f"W3 step: cuda {t_gpu * 1e3:.3f} ms, cpu {t_cpu * 1e3:.3f} ms ({t_gpu / t_cpu:.2f}x)")

    from benchmarks import _rnn_workloads as R
    seq = R.rnn_data(R.RNN_T)
    rnn_gpu, rnn_cpu = R.rnn_jitgrad(R.RNN_T, "scan", target="cuda"), R.rnn_jitgrad(R.RNN_T, "scan", target="cpu")
    t_gpu, t_cpu = best_of(lambda: rnn_gpu(seq)), best_of(lambda: rnn_cpu(seq))
    print(f"W7 RNN T = {R.RNN_T} through jg.scan, value + gradient: cuda {t_gpu * 1e3:.2f} ms, "
          f"cpu {t_cpu * 1e3:.2f} ms ({t_gpu / t_cpu:.2f}x)")

    from benchmarks import _cnn_workloads as C
    images, labels = C.cnn_data()
    try:
        cnn_gpu = C.jitgrad_step(C.cnn_weights(), target="cuda")
        t_gpu = best_of(lambda: (cnn_gpu(images, labels), cuda.synchronize()), 20)
    except Exception as error:          # the Philox row below still runs
        print(f"W8 CNN step: cuda raised {type(error).__name__}: {(str(error).splitlines() or [''])[0][:200]}")
    else:
        cnn_cpu = C.jitgrad_step(C.cnn_weights(), target="cpu")
        t_cpu = best_of(lambda: cnn_cpu(images, labels), 20)
        print(f"W8 CNN SGD step (batch {C.CNN_BATCH}, f32): cuda {t_gpu * 1e3:.3f} ms, "
              f"cpu {t_cpu * 1e3:.3f} ms ({t_gpu / t_cpu:.2f}x)")

    import jitgrad as jg
    key = jg.input("key", (2,), "uint32")
    draws = jg.compile([key], jg.random.uniform(key, (n,), "float32"), target="cuda")
    program, (k,) = draws._program, program_inputs(draws)
    device_key = cuda.to_device(np.array([1, 2], np.uint32))
    t = best_of(lambda: (program.run_on_device({k: device_key}, {}), cuda.synchronize()))
    print(f"Philox4x32-10: {n / t / 1e9:.2f} G float32 uniforms per second on the device ({n:.0e} per call)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
