"""asv benchmarks of issue 16's W8: one SGD step of a LeNet-style CNN (conv 5x5 x16, pool,
conv 5x5 x32, pool, dense 10, softmax cross-entropy), float32, batch 64, on the CPU.

Targets: jitgrad <= 1.0x the hand-written NumPy im2col step and <= 1.5x PyTorch eager.
``python benchmarks/report.py --only w8`` prints the ratios.

blas_threads: "default" leaves the BLAS pools and PyTorch's intra-op threads as they come;
"1" limits all of them to one thread (jitgrad's own loops are serial either way). Every
setup first checks the implementations it times against each other (``cnn_check``: one step
from the same weights, losses and updated weights within rtol 1e-4).
"""
from . import _cnn_workloads as C


class _CNNStep:
    params = ["default", "1"]
    param_names = ["blas_threads"]
    timeout = 600
    check: tuple = ()

    def _enter(self, threads):
        try:
            self._threads = C.cnn_threads(None if threads == "default" else int(threads))
            self._threads.__enter__()
        except ImportError as error:
            raise NotImplementedError("threadpoolctl is not installed") from error   # asv: skip
        C.cnn_check(self.check)
        self.images, self.labels = C.cnn_data()

    def teardown(self, threads):
        if hasattr(self, "_threads"):
            self._threads.__exit__(None, None, None)


class W8CNNStep(_CNNStep):
    """The jitgrad step (compiled and warmed in setup) and the hand-written NumPy step."""

    check = ("jitgrad",)

    def setup(self, threads):
        self._enter(threads)
        self.step = C.jitgrad_step(C.cnn_weights(), "cpu")
        self.numpy_step = C.numpy_step(C.cnn_weights())
        self.step(self.images, self.labels)
        self.numpy_step(self.images, self.labels)

    def time_jitgrad_cpu(self, threads):
        self.step(self.images, self.labels)

    def time_numpy_im2col(self, threads):
        self.numpy_step(self.images, self.labels)


class W8CNNStepTorch(_CNNStep):
    """PyTorch eager, the same step; skipped where torch is not installed."""

    check = ("torch",)

    def setup(self, threads):
        if not C.has_torch():
            raise NotImplementedError("torch is not installed")                    # asv: skip
        import torch  # noqa: F401   (imported before cnn_threads, so that it limits torch too)
        self._enter(threads)
        self.step = C.torch_step(C.cnn_weights())
        self.step(self.images, self.labels)

    def time_torch_eager(self, threads):
        self.step(self.images, self.labels)
