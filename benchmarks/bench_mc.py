"""asv benchmarks of the Monte-Carlo estimator, the sampler and the exact loss.

Every ``setup()`` calls the kernel once, so compilation (or loading Numba's
cache) is never timed.  ``track_*`` benchmarks report throughput in
samples per second (best of a few repeats).
"""

from __future__ import annotations

import time

import numpy as np

import fastsuper as fs

# The comparison configuration (docs/benchmarks.md, benchmarks/compare_torch.py):
# Elhage et al.'s U[0, 1] values, relu(.)^2 output, n = 1000 features in d = 64.
N, D, P = 1000, 64, 0.01
MC_SAMPLES = 50_000
SAMPLE_SAMPLES = 200_000
REPEATS = 3


def _frame(n, d, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((d, n)) / np.sqrt(d)).astype(dtype)


def _best_rate(func, n_samples, repeats=REPEATS):
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        func()
        best = min(best, time.perf_counter() - t0)
    return n_samples / best


class EstimateLoss:
    """``estimate_loss`` at n = 1000, d = 64, p = 0.01, relu_power 2, uniform values."""

    params = (["float64", "float32"], ["columns", "dense"])
    param_names = ["dtype", "path"]
    timeout = 300

    def setup(self, dtype, path):
        self.model = fs.Model(_frame(N, D, dtype), activation="relu_power", exponent=2)
        self.inputs = fs.SparseInputs(N, p=P, values="uniform")
        fs.estimate_loss(self.model, self.inputs, 1000, seed=0, path=path)

    def _run(self, path):
        return fs.estimate_loss(self.model, self.inputs, MC_SAMPLES, seed=1, path=path)

    def time_estimate_loss(self, dtype, path):
        self._run(path)

    def track_samples_per_second(self, dtype, path):
        return _best_rate(lambda: self._run(path), MC_SAMPLES)

    track_samples_per_second.unit = "samples/s"


class Sample:
    """``sample``: CSR batches of n = 1000 features, p = 0.01, Gaussian values."""

    params = ["float64", "float32"]
    param_names = ["dtype"]

    def setup(self, dtype):
        self.inputs = fs.SparseInputs(N, p=P, values="gaussian")
        self.dtype = np.dtype(dtype)
        fs.sample(self.inputs, 1000, seed=0, dtype=self.dtype)

    def _run(self):
        return fs.sample(self.inputs, SAMPLE_SAMPLES, seed=1, dtype=self.dtype)

    def time_sample(self, dtype):
        self._run()

    def track_samples_per_second(self, dtype):
        return _best_rate(self._run, SAMPLE_SAMPLES)

    track_samples_per_second.unit = "samples/s"


class ExactLoss:
    """``exact_loss``: power activation m = 3, n = 1000, d = 10, Gaussian values."""

    def setup(self):
        self.model = fs.Model(_frame(1000, 10, np.float64), activation="power", exponent=3)
        self.inputs = fs.SparseInputs(1000, p=P, values="gaussian")
        fs.exact_loss(self.model, self.inputs)

    def time_exact_loss(self):
        fs.exact_loss(self.model, self.inputs)
