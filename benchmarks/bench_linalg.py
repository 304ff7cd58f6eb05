"""asv benchmarks of issue 4's table: jg.linalg on target="cpu" next to hand-written SciPy.

Every class compiles (and JIT-warms) both executables, value-only and value+gradient, in
``setup``, so ``time_*`` is the steady state; the hand-written value+gradient, which reuses the
factorization, is a method of the same class. Targets (issue 4):

W4  sum(solve(A, B)^2):                      value+gradient <= 1.3x value-only at n = 512
W5  sum(c * s), sum(M * ((U * s) @ Vt)):     value+gradient <= 1.3x value-only at 512x512
W4/W5                                        jitgrad value+gradient <= 1.1x the hand-written one

blas_threads as in bench_cpu.W3MLPStep: the OpenBLAS pool as it comes (2 threads here) or
limited to 1. With another busy process on this 2-core machine, the default threads spin and
an LU at n = 512 was measured 30x slower (110 ms instead of 3.5 ms); the 1-thread figures
stay comparable. Every ``setup`` calls ``keep_freed_heap()``: glibc otherwise returns the
hand-written code's freed 2 MiB arrays to the OS on every call (see its docstring).
``python benchmarks/report.py --only w4,w5`` prints the table's ratios.
"""
from . import _linalg_workloads as L
from .bench_cpu import _limit_blas


class _ValueAndGradient:
    """The three timings shared by W4 and W5; subclasses set ``f_value``, ``f_grad``,
    ``hand`` (a callable) and ``args`` in ``setup``."""

    timeout = 300

    def _warm(self):
        for f in (self.f_value, self.f_grad, self.hand):
            f(*self.args)

    def teardown(self, *params):
        self._blas.__exit__(None, None, None)

    def time_value_cpu(self, *params):
        self.f_value(*self.args)

    def time_value_and_gradient_cpu(self, *params):
        self.f_grad(*self.args)

    def time_hand_value_and_gradient(self, *params):
        self.hand(*self.args)


class W4Solve(_ValueAndGradient):
    """sum(solve(A, B)^2) with A = R + n I (n-by-n), B n-by-k; gradient w.r.t. A and B.

    The hand-written value+gradient: one LU (scipy.linalg.lu_factor), two solves with it
    (x, then the adjoint λ = A⁻ᵀ 2x), and Ā = -λxᵀ by dgemm.
    """

    params = (list(L.W4_SIZES), list(L.W4_RHS), ["default", "1"])
    param_names = ["n", "k", "blas_threads"]

    def setup(self, n, k, threads):
        _limit_blas(self, threads)
        L.keep_freed_heap()
        self.args = L.w4_data(n, k)
        self.f_value, self.f_grad = L.w4_jitgrad(n, k, False), L.w4_jitgrad(n, k, True)
        self.hand = L.w4_hand_value_and_gradient
        self._warm()


class W5SVD(_ValueAndGradient):
    """Losses of the thin SVD of a random normal m-by-n A, gradient w.r.t. A.

    loss "values": sum(c * s), c fixed; "reconstruction": sum(M * ((U * s) @ Vt)), M fixed,
    which is sum(M * A) but differentiated through the full SVD adjoint (the gradient is M).
    The hand-written value+gradient: one SciPy gesdd, then the adjoint by hand (dgemm).
    """

    params = (list(L.W5_SIZES), list(L.W5_LOSSES), ["default", "1"])
    param_names = ["size", "loss", "blas_threads"]

    def setup(self, size, loss, threads):
        _limit_blas(self, threads)
        L.keep_freed_heap()
        self.args = L.w5_data(size, loss)
        self.f_value, self.f_grad = L.w5_jitgrad(size, loss, False), L.w5_jitgrad(size, loss, True)
        self.hand = lambda a, fixed: L.w5_hand_value_and_gradient(a, fixed, loss)
        self._warm()


class LinalgHandBaselines:
    """The hand-written baselines above agree with jitgrad: ``setup`` runs ``verify()`` (asserts
    rtol 1e-8 at small sizes, compiling a few small graphs), the figure is the largest deviation
    relative to each array's scale. A failing setup marks the W4/W5 hand timings as unchecked."""

    unit = "relative error"
    timeout = 300

    def setup(self):
        self.worst = L.verify()

    def track_max_deviation(self):
        return self.worst
