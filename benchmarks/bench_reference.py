"""asv benchmarks of the numpy reference target: build, differentiate, compile, call.

These set the baseline the compiled targets are measured against.  W1 and W2
are the workloads of ../shared/design/performance.md.
"""
import numpy as np

import jitgrad as jg


def _w1():
    w1, w2 = jg.input("w1", ()), jg.input("w2", ())
    v = w2 * jg.log(w1)
    loss = v + jg.sqrt(v)
    return [w1, w2], [loss, *jg.grad(loss, [w1, w2])]


def _w2():
    x = jg.input("x", (None,))
    loss = jg.sum(jg.tanh(jg.sin(x) * jg.exp(-x * x / 2)) + 0.1 * x * x)
    return [x], [loss, *jg.grad(loss, [x])]


class W1ValueAndGrad:
    """Per-call cost of a tiny scalar graph: argument checks plus dispatch."""

    def setup(self):
        self.f = jg.compile(*_w1(), target="numpy")

    def time_call(self):
        self.f(2.0, 3.0)

    def time_build_and_compile(self):
        jg.compile(*_w1(), target="numpy")


class W2ValueAndGrad:
    params = [1_000, 1_000_000]
    param_names = ["n"]

    def setup(self, n):
        self.f = jg.compile(*_w2(), target="numpy")
        self.x = np.linspace(-3, 3, n)

    def time_call(self, n):
        self.f(self.x)
