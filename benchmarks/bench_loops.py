"""asv benchmarks of issue 14's loops: W7, an RNN through ``jg.scan``, next to a hand-written loop.

W7  h_t = tanh(x_t @ U + h_{t-1} @ W + b), hidden 64, batch 32, inputs 16, float64; value and
    gradient w.r.t. W, U and b of the mean over steps and batch of sum(h_t^2)
    (``_rnn_workloads.py``). Target: jg.scan per call <= 1.3x the hand-written @njit
    forward/backward (BPTT) loop.

Every class compiles (and JIT-warms) in ``setup``, so ``time_*`` is the steady state. The
compile-time targets (scan's compile independent of T, against the unrolled graph) are measured
cold in new processes by ``python benchmarks/report.py --only w7``.
"""
from . import _rnn_workloads as R


class W7RNN:
    """Value and gradient of the W7 RNN over T steps, per call."""

    params = [20, 200]
    param_names = ["T"]
    timeout = 300

    def setup(self, T):
        self.x = R.rnn_data(T)
        self.weights = R.rnn_weights()
        self.f = R.rnn_jitgrad(T, "scan")
        self.hand = R.rnn_hand()
        R.rnn_check(self.f(self.x), self.hand(self.x, *self.weights))

    def time_jitgrad_scan(self, T):
        self.f(self.x)

    def time_njit_hand_written(self, T):
        self.hand(self.x, *self.weights)
