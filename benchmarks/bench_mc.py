"""asv benchmarks: sampling, forward, backward, Monte-Carlo loss (every path) and exact loss.

Every ``setup()`` calls the kernel once, so compilation (or loading Numba's
cache) is never timed.  ``track_*`` benchmarks report throughput in samples
per second (best of a few repeats).  The parameter grids are small on
purpose (``make bench`` runs them with ``--quick``); ``scripts/scaling.py``
is the wider scaling study.
"""

from __future__ import annotations

import time

import numpy as np

import fastsuper as fs

# The comparison configuration (docs/benchmarks.md, scripts/compare_torch.py):
# Elhage et al.'s U[0, 1] values, relu(.)^2 output, n = 1000 features in d = 64.
N, D, P = 1000, 64, 0.01
MC_SAMPLES = 50_000
SAMPLE_SAMPLES = 200_000
BATCH = 4096
REPEATS = 3
DTYPES = ["float64", "float32"]
MC_PATHS = ["columns", "dense", "blocked", "columns_blocked"]
# (n, d, p): the comparison configuration, very sparse, small and dense-ish
SHAPES = ["1000,64,0.01", "1000,10,0.001", "100,20,0.1", "200,64,0.5"]


def _frame(n, d, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((d, n)) / np.sqrt(d)).astype(dtype)


def _shape(shape):
    n, d, p = shape.split(",")
    return int(n), int(d), float(p)


def _best_rate(func, n_samples, repeats=REPEATS):
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        func()
        best = min(best, time.perf_counter() - t0)
    return n_samples / best


class EstimateLoss:
    """``estimate_loss`` (naive Monte Carlo) on every path, relu_power 2, uniform values."""

    params = (SHAPES, DTYPES, MC_PATHS + ["auto"])
    param_names = ["n,d,p", "dtype", "path"]
    timeout = 300

    def setup(self, shape, dtype, path):
        n, d, p = _shape(shape)
        self.model = fs.Model(_frame(n, d, dtype), activation="relu_power", exponent=2)
        self.inputs = fs.SparseInputs(n, p=p, values="uniform")
        self.samples = MC_SAMPLES if n * p < 50 else MC_SAMPLES // 5
        fs.estimate_loss(self.model, self.inputs, 1000, seed=0, path=path)

    def _run(self, path):
        return fs.estimate_loss(self.model, self.inputs, self.samples, seed=1, path=path)

    def time_estimate_loss(self, shape, dtype, path):
        self._run(path)

    def track_samples_per_second(self, shape, dtype, path):
        return _best_rate(lambda: self._run(path), self.samples)

    track_samples_per_second.unit = "samples/s"


#: every activation against ``relu_power`` 1 (the reference of the activation comparison)
ACT_NAMES = ["relu_power", "leaky_relu", "identity", "gelu", "gelu_tanh", "silu", "sigmoid",
             "tanh", "softplus"]  # fmt: skip


class EstimateLossActivations:
    """``estimate_loss`` per activation at n = 1000, d = 64, p = 0.01, uniform values (auto path).

    ``relu_power`` runs with exponent 1; the others with their defaults.
    ``track_time_over_relu`` is the side-by-side number: each activation timed
    between two runs of relu_power 1 in the same process, the median of the
    ratios (as ``scripts/bench_activations.py``), so that the machine's drift
    hits both sides alike.
    """

    params = (ACT_NAMES, DTYPES)
    param_names = ["activation", "dtype"]
    timeout = 300

    def setup(self, activation, dtype):
        W = _frame(N, D, dtype)
        exponent = 1 if activation == "relu_power" else None
        self.model = fs.Model(W, activation=activation, exponent=exponent)
        self.inputs = fs.SparseInputs(N, p=P, values="uniform")
        self.samples = MC_SAMPLES // 2
        self.relu = fs.Model(W, activation="relu_power", exponent=1)
        for model in (self.model, self.relu):
            fs.estimate_loss(model, self.inputs, 1000, seed=0)
            fs.estimate_loss(model, self.inputs, self.samples, seed=0)

    def _run(self):
        return fs.estimate_loss(self.model, self.inputs, self.samples, seed=1)

    def time_estimate_loss(self, activation, dtype):
        self._run()

    def track_samples_per_second(self, activation, dtype):
        return _best_rate(self._run, self.samples)

    track_samples_per_second.unit = "samples/s"

    def track_time_over_relu(self, activation, dtype):
        def seconds(model):
            t0 = time.process_time()
            fs.estimate_loss(model, self.inputs, self.samples // 5, seed=1)
            return time.process_time() - t0

        ratios = []
        for _ in range(5):
            before, t, after = seconds(self.relu), seconds(self.model), seconds(self.relu)
            ratios.append(2.0 * t / (before + after))
        return float(np.median(ratios))

    track_time_over_relu.unit = "ratio"


class Sample:
    """``sample``: CSR batches of n = 1000 features, Gaussian values."""

    params = (DTYPES, [1e-3, 1e-2, 1e-1])
    param_names = ["dtype", "p"]

    def setup(self, dtype, p):
        self.inputs = fs.SparseInputs(N, p=p, values="gaussian")
        self.dtype = np.dtype(dtype)
        self.samples = SAMPLE_SAMPLES if p < 0.05 else SAMPLE_SAMPLES // 10
        fs.sample(self.inputs, 1000, seed=0, dtype=self.dtype)

    def _run(self):
        return fs.sample(self.inputs, self.samples, seed=1, dtype=self.dtype)

    def time_sample(self, dtype, p):
        self._run()

    def track_samples_per_second(self, dtype, p):
        return _best_rate(self._run, self.samples)

    track_samples_per_second.unit = "samples/s"


class Forward:
    """``forward`` on a sparse batch (``SparseBatch`` from ``sample``) of 4096 inputs."""

    params = (DTYPES, ["1000,64,0.01", "200,64,0.5"])
    param_names = ["dtype", "n,d,p"]

    def setup(self, dtype, shape):
        n, d, p = _shape(shape)
        self.model = fs.Model(_frame(n, d, dtype), activation="relu_power", exponent=2)
        self.batch = fs.sample(fs.SparseInputs(n, p=p, values="uniform"), BATCH, seed=1)
        fs.forward(self.model, self.batch)

    def time_forward(self, dtype, shape):
        fs.forward(self.model, self.batch)

    def track_samples_per_second(self, dtype, shape):
        return _best_rate(lambda: fs.forward(self.model, self.batch), BATCH)

    track_samples_per_second.unit = "samples/s"


class Backward:
    """``fastsuper.loss_grad``: sampled loss and gradient in W and b."""

    params = (DTYPES, ["1000,64,0.01", "100,20,0.1"])
    param_names = ["dtype", "n,d,p"]
    timeout = 300

    def setup(self, dtype, shape):
        loss_grad = fs.loss_grad
        n, d, p = _shape(shape)
        W = _frame(n, d, dtype)
        self.model = fs.Model(W, np.zeros(n, dtype), activation="relu_power", exponent=2)
        self.inputs = fs.SparseInputs(n, p=p, values="uniform")
        self.loss_grad = loss_grad
        self.samples = 20_000
        loss_grad(self.model, self.inputs, 1000, seed=0)

    def _run(self):
        return self.loss_grad(self.model, self.inputs, self.samples, seed=1)

    def time_loss_grad(self, dtype, shape):
        self._run()

    def track_samples_per_second(self, dtype, shape):
        return _best_rate(self._run, self.samples)

    track_samples_per_second.unit = "samples/s"


class ExactLoss:
    """``exact_loss``: power activation m = 3, Gaussian values."""

    params = [1000, 3000]
    param_names = ["n"]

    def setup(self, n):
        self.model = fs.Model(_frame(n, 10, np.float64), activation="power", exponent=3)
        self.inputs = fs.SparseInputs(n, p=P, values="gaussian")
        fs.exact_loss(self.model, self.inputs)

    def time_exact_loss(self, n):
        fs.exact_loss(self.model, self.inputs)


class ExactLossGrad:
    """``exact_loss_grad``: power activation m = 3, d = 10, Gaussian values, with bias."""

    params = [200, 1000]
    param_names = ["n"]

    def setup(self, n):
        W = _frame(n, 10, np.float64)
        self.model = fs.Model(W, np.zeros(n), activation="power", exponent=3)
        self.inputs = fs.SparseInputs(n, p=P, values="gaussian")
        fs.exact_loss_grad(self.model, self.inputs)

    def time_exact_loss_grad(self, n):
        fs.exact_loss_grad(self.model, self.inputs)
