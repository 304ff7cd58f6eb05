"""asv benchmarks of target="cuda" (issue 6); skipped where no GPU is present.

``python benchmarks/gpu_report.py`` prints the issue's figures (GB/s against the
copy bandwidth, the MLP step against the CPU, launches per step).
"""
from . import _workloads as W


def _require_gpu():
    import os
    from numba import cuda
    if os.environ.get("NUMBA_ENABLE_CUDASIM") or not cuda.is_available():
        raise NotImplementedError("no GPU: the CUDA benchmarks are skipped")   # asv: skip
    return cuda


class W2ElementwiseChainCUDA:
    """W2's fused value and gradient with x already on the device (the kernel's own time)."""

    params = [10 ** 6, 10 ** 7, 10 ** 8]
    param_names = ["n"]
    timeout = 300

    def setup(self, n):
        self.cuda = _require_gpu()
        f = W.w2_jitgrad(target="cuda")
        self.program = f._program
        x = self.program._s.inputs[0]
        self.env = {x: self.cuda.to_device(W.w2_data(n))}
        self.sizes = {x.dims[0]: n}
        self.time_value_and_gradient_on_device(n)

    def time_value_and_gradient_on_device(self, n):
        self.program.run_on_device(dict(self.env), self.sizes)
        self.cuda.synchronize()


class W3MLPStepCUDA:
    """The W3 SGD step with its params resident on the device."""

    timeout = 300

    def setup(self):
        self.cuda = _require_gpu()
        self.step, self.args = W.w3_jitgrad(target="cuda"), W.w3_data()
        self.step(*self.args)

    def time_step(self):
        self.step(*self.args)
        self.cuda.synchronize()

    def track_launches_per_step(self):
        return self.step._program.launches_per_call()
