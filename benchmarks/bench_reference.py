"""asv benchmarks of the numpy reference target: build, differentiate, compile, call.

The interpreter every compiled target is checked against; its figures show what
compilation buys. The workloads are those of ``_workloads.py`` (issue 3's table).
"""
from . import _workloads as W


class ReferenceW1:
    """Per-call cost of a tiny scalar graph on the interpreter."""

    def setup(self):
        self.f = W.w1_jitgrad(target="numpy")

    def time_call(self):
        self.f(*W.W1_ARGS)

    def time_build_and_compile(self):
        W.w1_jitgrad(target="numpy")


class ReferenceW2:
    params = [1_000, 1_000_000]
    param_names = ["n"]

    def setup(self, n):
        self.f = W.w2_jitgrad(target="numpy")
        self.x = W.w2_data(n)

    def time_call(self, n):
        self.f(self.x)
