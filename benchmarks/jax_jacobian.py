"""JAX's side of the Jacobian benchmark: ``jit(jacfwd)`` and ``jit(jacrev)`` of tanh(A @ x).

Run with a Python that has JAX (it is not a dependency of jitgrad; a separate environment
keeps it from changing jitgrad's NumPy):

    python -m venv /tmp/jaxenv && /tmp/jaxenv/bin/pip install jax
    /tmp/jaxenv/bin/python benchmarks/jax_jacobian.py

Prints, for n = 100 and 1000, the seconds from building the function to its first result
(tracing and XLA compilation, in this process) and the median seconds per call after that,
with the same A and x as ``report.py --only jacobian`` (``_workloads.jacobian_data``).
"""
from __future__ import annotations

import statistics
import sys
import time
import timeit

import numpy as np


def data(n: int):
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, n)) / np.sqrt(n), np.linspace(-1, 1, n)


def main() -> int:
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        print("JAX is not installed in this Python; see this file's docstring")
        return 0
    jax.config.update("jax_enable_x64", True)
    print(f"JAX {jax.__version__}, {jax.devices()[0].platform}")
    print(f"{'n':>5} {'mode':>5} {'first result':>13} {'per call':>11}")
    for n in (100, 1000):
        a, x = data(n)
        matrix = jnp.asarray(a)
        for mode, transform in (("fwd", jax.jacfwd), ("rev", jax.jacrev)):
            start = time.perf_counter()
            f = jax.jit(transform(lambda v, m=matrix: jnp.tanh(m @ v)))
            f(x).block_until_ready()
            first = time.perf_counter() - start
            number = max(1, int(0.2 / max(timeit.timeit(lambda: f(x).block_until_ready(), number=1), 1e-6)))
            per_call = statistics.median(timeit.repeat(lambda: f(x).block_until_ready(), number=number,
                                                       repeat=5)) / number
            print(f"{n:>5} {mode:>5} {first:>11.3f} s {per_call * 1e6:>8.1f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
