"""asv benchmarks of issue 3's table: target="cpu" next to a hand-written baseline.

Every class compiles (and JIT-warms) in ``setup``, so ``time_*`` is the steady
state; the baseline of each workload is a method of the same class, so the two
figures come from the same process and the same conditions. Targets (issue 3):

W1   jitgrad <= 1.5 us per call and <= 4x the hand-written njit
W2   jitgrad <= 1.2x the fused serial njit loop; parallel=True <= 0.65x of it
     (issue 13, with glibc's vector math: <= 0.5x serial, <= 0.3x parallel=True)
W3   jitgrad <= 1.0x the hand-written NumPy step
W6   cold compile <= 3 s; warm cache: first result <= 0.3 s after `import jitgrad`
MEM  peak memory with jg.checkpoint every 8 layers <= 0.4x without

``python benchmarks/report.py`` prints the same figures as issue 3's table.
"""
import tempfile
import pathlib

from . import _workloads as W


class W1TinyGraph:
    """Value and both gradients of w2 log w1 + sqrt(w2 log w1), called with Python floats.

    No ``setup``: with one, asv 0.6.6 times every call on its own (number = 1, asv#966), and
    a sub-microsecond call then measures the timer. The functions are compiled on first use
    instead (``__getattr__``), inside asv's warm-up, which is long enough to absorb it; so
    ``--quick`` (one call, no warm-up) shows the compile time, not the call.
    """

    warmup_time = 5.0

    def __getattr__(self, name):       # only for attributes not set yet: discovery stays cheap
        if name == "f":
            self.f = W.w1_jitgrad("cpu")
            return self.f
        if name == "g":
            self.g = W.w1_njit()
            return self.g
        raise AttributeError(name)

    def time_jitgrad_cpu(self):
        self.f(2.0, 3.0)

    def time_njit_closed_form(self):
        self.g(2.0, 3.0)


class W2ElementwiseChain:
    """Value and gradient of sum(tanh(sin(x) exp(-x^2/2)) + 0.1 x^2), float64."""

    params = [100_000, 1_000_000, 10_000_000]
    param_names = ["n"]
    timeout = 300
    options: dict = {}

    def setup(self, n):
        self.x = W.w2_data(n)
        self.f = W.w2_jitgrad("cpu", **self.options)
        self.g = W.w2_njit()
        self.f(self.x)

    def time_jitgrad_cpu(self, n):
        self.f(self.x)

    def time_njit_fused_serial_loop(self, n):
        self.g(self.x)

    def time_numpy_eager(self, n):
        W.w2_numpy(self.x)


class W2ElementwiseChainParallel(W2ElementwiseChain):
    """W2 with compile(..., parallel=True), beside the same serial baselines."""

    options = {"parallel": True}


def _limit_blas(bench, threads):
    """Enter a BLAS thread limit for the benchmark ("default": none); skip without threadpoolctl."""
    try:
        bench._blas = W.blas_threads(None if threads == "default" else int(threads))
    except ImportError as error:
        raise NotImplementedError("threadpoolctl is not installed") from error
    bench._blas.__enter__()


class W3MLPStep:
    """SGD step of a 784-256-256-10 ReLU MLP, softmax cross-entropy, batch 128, float32.

    blas_threads: the OpenBLAS pools as they come (2 threads here) or limited to 1. With their
    default threads, any other busy process on a 2-core machine makes the spinning BLAS threads
    10-40x slower; the 1-thread figures stay comparable on a loaded machine.
    """

    params = ["default", "1"]
    param_names = ["blas_threads"]
    timeout = 300

    def setup(self, threads):
        _limit_blas(self, threads)
        self.x, self.labels = W.w3_data()
        self.step = W.w3_jitgrad("cpu")
        self.numpy_step = W.W3NumpyStep()
        self.step(self.x, self.labels)
        self.numpy_step(self.x, self.labels)

    def teardown(self, threads):
        self._blas.__exit__(None, None, None)

    def time_jitgrad_cpu(self, threads):
        self.step(self.x, self.labels)

    def time_numpy_hand_written(self, threads):
        self.numpy_step(self.x, self.labels)


class W3MLPStepNjit:
    """The W3 step hand-written as one @njit (a second baseline; its compile is W6's)."""

    params = ["default", "1"]
    param_names = ["blas_threads"]
    timeout = 300

    def setup(self, threads):
        _limit_blas(self, threads)
        self.x, self.labels = W.w3_data()
        self.step = W.load_njit_mlp().NjitStep(W.w3_weights())
        self.step(self.x, self.labels)

    def teardown(self, threads):
        self._blas.__exit__(None, None, None)

    def time_njit_hand_written(self, threads):
        self.step(self.x, self.labels)


class W6FirstResult:
    """Seconds to the W3 step's first loss in a new process (caches in a temp directory).

    cold: empty JITGRAD_CACHE_DIR and NUMBA_CACHE_DIR; warm: both filled by a previous process.
    Timed from after `import jitgrad` for both steps; numba's import is inside the timed part
    (jitgrad imports it when compiling for "cpu"). Lower is better.
    """

    params = ["jitgrad", "njit"]
    param_names = ["step"]
    unit = "seconds"
    timeout = 900

    def setup(self, step):
        self._tmp = tempfile.TemporaryDirectory(prefix="jg-bench-w6-")
        self.cache = pathlib.Path(self._tmp.name)

    def teardown(self, step):
        self._tmp.cleanup()

    def track_cold(self, step):
        return W.w6_first_result(self.cache / "cold", step)["total"]

    def track_warm(self, step):
        W.w6_first_result(self.cache / "warm", step)
        return W.w6_first_result(self.cache / "warm", step)["total"]


class MemoryChain:
    """Peak memory (MiB) of a reverse pass of a 64-layer tanh chain: the arrays a compiled
    executable keeps (jitgrad's workspace) plus the peak of what its first call allocates.

    Width 256, batch 64, float64; gradient w.r.t. x ("x") or x and all 64 weights ("all").
    variant: jitgrad without checkpointing, jitgrad with jg.checkpoint every 8 layers (skipped
    while jg.checkpoint does not exist), hand-written NumPy keeping every activation.
    Measured with tracemalloc in a subprocess (it sees NumPy's arrays and, with numba 0.68,
    Numba's allocations); see _workloads.chain_peak, which also gives an RSS cross-check.
    Compiled code is kept in the usual jitgrad cache between runs: the first run compiles the
    64-layer graph, which takes a minute or more.
    """

    params = (["none", "checkpoint", "numpy"], ["x", "all"])
    param_names = ["variant", "wrt"]
    unit = "MiB"
    timeout = 900

    def setup(self, variant, wrt):
        if variant == "checkpoint" and not W.has_checkpoint():
            raise NotImplementedError("jg.checkpoint does not exist yet")

    def track_peak(self, variant, wrt):
        return W.chain_peak(variant, wrt)["total_bytes"] / 2**20


class JacobianMapped:
    """jg.jacobian of tanh(A @ x): one JVP (fwd) or VJP (rev) mapped over the unit vectors with
    jg.vmap, per call, next to NumPy's closed form diag(1 - tanh(A x)^2) A. Compile times, and
    the unrolled graph of one pass per unit vector, are in ``report.py --only jacobian``."""

    params = ([100, 1000], ["fwd", "rev"])
    param_names = ["n", "mode"]
    timeout = 300

    def setup(self, n, mode):
        self.f = W.jacobian_jitgrad(n, mode)
        self.a, self.x = W.jacobian_data(n)
        self.f(self.x)

    def time_jitgrad_cpu(self, n, mode):
        self.f(self.x)

    def time_numpy_closed_form(self, n, mode):
        W.jacobian_closed_form(self.a, self.x)
