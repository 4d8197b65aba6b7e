"""asv benchmarks of fixed costs: small problems, repeated calls, the exact kernel at n = 6000.

One benchmark per row of ``scripts/bench_small.py`` (which also measures them
beside busy background processes and side by side with another checkout).
Benchmarks of the prepared evaluator and the fused kernel are skipped on
checkouts without :class:`fastsuper.ExactEvaluator`.
"""

from __future__ import annotations

import numba
import numpy as np

import fastsuper as fs


def _evaluator_or_skip():
    if not hasattr(fs, "ExactEvaluator"):
        raise NotImplementedError("this checkout has no ExactEvaluator")  # asv: skipped
    return fs.ExactEvaluator


def _tensor_or_skip(inputs, d, m):
    try:
        return _evaluator_or_skip()(inputs, d, m, kernel="tensor")
    except ValueError:
        raise NotImplementedError("this checkout has no moment-tensor kernel") from None


class SmallExact:
    """``exact_gain_grad`` at n = 100, d = 5, m = 3: public call and prepared evaluator."""

    def setup(self):
        rng = np.random.default_rng(0)
        self.W = rng.normal(size=(5, 100)) * 0.3
        self.model = fs.Model(self.W, exponent=3)
        self.inputs = fs.SparseInputs(100, p=0.01)
        fs.exact_gain_grad(self.model, self.inputs)

    def time_exact_gain_grad(self):
        fs.exact_gain_grad(self.model, self.inputs)

    def time_prepared_gain_grad(self):
        self.ev.gain_grad(self.W)

    def setup_prepared(self):
        self.ev = _evaluator_or_skip()(self.inputs, 5, 3)
        self.ev.gain_grad(self.W)

    time_prepared_gain_grad.setup = setup_prepared


class FitExactSmall:
    """``fit_exact(100, 5, m=3, p=1e-2)`` with its default starts."""

    timeout = 600
    number = 1
    repeat = (1, 3, 60.0)

    def setup(self):
        fs.fit_exact(4, 2, m=3, p=0.1, restarts=0, progress=False)

    def time_fit_exact(self):
        fs.fit_exact(100, 5, m=3, p=1e-2, progress=False)


@numba.njit(parallel=True)
def _empty(a):
    for i in numba.prange(a.size):
        a[i] += 1.0


class EmptyWork:
    """The fixed cost of parallel work: an empty ``prange`` region, ``estimate_loss`` of
    2 000 samples at n = 20 and of 20 000 samples at n = 50."""

    def setup(self):
        rng = np.random.default_rng(0)
        self.a = np.zeros(numba.get_num_threads())
        _empty(self.a)
        self.m20 = fs.Model(rng.normal(size=(5, 20)) / 2, exponent=3)
        self.i20 = fs.SparseInputs(20, p=0.05)
        self.m50 = fs.Model(rng.normal(size=(10, 50)) / 3, exponent=3)
        self.i50 = fs.SparseInputs(50, p=0.05)
        fs.estimate_loss(self.m20, self.i20, 2000, progress=False)
        fs.estimate_loss(self.m50, self.i50, 20_000, progress=False)

    def time_empty_prange(self):
        _empty(self.a)

    def time_estimate_loss_2000_n20(self):
        fs.estimate_loss(self.m20, self.i20, 2000, progress=False)

    def time_estimate_loss_20000_n50(self):
        fs.estimate_loss(self.m50, self.i50, 20_000, progress=False)


class ExactLarge:
    """``exact_loss_grad`` at n = 6000, d = 10, m = 3 (the kernel the checkout picks from
    ``config.EXACT_FUSED_FROM`` on, else the row kernels), the fused and the moment-tensor
    evaluators; ``track_percent_of_matmul`` (the evaluator) and ``track_public_percent_of_matmul``
    (the public call) are rates as a percentage of the matmul rate measured beside them
    (n**2 (4d + 4m) flops)."""

    timeout = 600
    number = 1
    repeat = (1, 3, 60.0)

    def setup(self):
        n, d, m = 6000, 10, 3
        rng = np.random.default_rng(0)
        self.W = rng.normal(size=(d, n)) / np.sqrt(n)
        self.model = fs.Model(self.W, exponent=m)
        self.inputs = fs.SparseInputs(n, p=0.01)
        self.flops = n * n * (4 * d + 4 * m)
        fs.exact_loss_grad(self.model, self.inputs)

    def time_exact_loss_grad_6000(self):
        fs.exact_loss_grad(self.model, self.inputs)

    def setup_fused(self):
        self.setup()
        self.ev = _evaluator_or_skip()(self.inputs, 10, 3, kernel="fused")
        self.ev.loss_grad(self.W)

    def time_fused_loss_grad_6000(self):
        self.ev.loss_grad(self.W)

    time_fused_loss_grad_6000.setup = setup_fused

    def setup_tensor(self):
        self.setup()
        self.ev = _tensor_or_skip(self.inputs, 10, 3)
        self.ev.loss_grad(self.W)

    def time_tensor_loss_grad_6000(self):
        self.ev.loss_grad(self.W)

    time_tensor_loss_grad_6000.setup = setup_tensor

    def _percent_of_matmul(self, f):
        import time

        A = np.random.default_rng(1).normal(size=(2048, 2048))
        best_mm, best = np.inf, np.inf
        for _ in range(3):
            t0 = time.perf_counter()
            A @ A
            best_mm = min(best_mm, time.perf_counter() - t0)
            t0 = time.perf_counter()
            f()
            best = min(best, time.perf_counter() - t0)
        return 100.0 * (self.flops / best) / (2 * 2048**3 / best_mm)

    def track_percent_of_matmul(self):
        return self._percent_of_matmul(lambda: self.ev.loss_grad(self.W))

    track_percent_of_matmul.setup = setup_fused
    track_percent_of_matmul.unit = "%"

    def track_public_percent_of_matmul(self):
        return self._percent_of_matmul(lambda: fs.exact_loss_grad(self.model, self.inputs))

    track_public_percent_of_matmul.unit = "%"


class ExactTensor:
    """The exact loss and gradient at small ``d`` and large ``n`` (``m = 3``): the moment-tensor
    kernel, whose work grows linearly in ``n``, beside the fused kernel (n**2)."""

    timeout = 600
    number = 1
    repeat = (1, 3, 60.0)
    params = ([6000, 50000], ["tensor", "fused"])
    param_names = ["n", "kernel"]

    def setup(self, n, kernel):
        d = 4
        if kernel == "fused" and n > 6000:
            raise NotImplementedError("minutes per call")  # asv: skipped
        rng = np.random.default_rng(0)
        self.W = rng.normal(size=(d, n)) / np.sqrt(n)
        inputs = fs.SparseInputs(n, p=0.01)
        if kernel == "tensor":
            self.ev = _tensor_or_skip(inputs, d, 3)
        else:
            self.ev = _evaluator_or_skip()(inputs, d, 3, kernel=kernel)
        self.ev.loss_grad(self.W)

    def time_loss_grad(self, n, kernel):
        self.ev.loss_grad(self.W)
