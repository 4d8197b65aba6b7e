"""asv benchmarks of the CUDA backend (skipped without a GPU).

``setup()`` raises ``NotImplementedError``, asv's way of skipping a
benchmark, when there is no usable GPU (or under the simulator, which is not
one).  Otherwise it checks the GPU result against the CPU backend and calls
every kernel once, so compilation is never timed; each timed call ends with
a device-to-host copy, so the GPU work is finished when the timer stops.
``track_*`` benchmarks report samples per second (best of a few repeats).
Same configuration as ``bench_mc.py``: n = 1000, d = 64, p = 0.01, relu^2,
U[0, 1] values.
"""

from __future__ import annotations

import os
import time
import types

import numpy as np

import fastsuper as fs

N, D, P = 1000, 64, 0.01
MC_SAMPLES = 2_000_000
SAMPLE_SAMPLES = 2_000_000
REPEATS = 3


def _backend():
    """The GPU backends when a real GPU is usable; else NotImplementedError (skip)."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0"):
        raise NotImplementedError("the CUDA simulator is not a GPU")
    from fastsuper.core import cuda
    from fastsuper.exact.cuda import exact_power_sums_cuda
    from fastsuper.mc.cuda import estimate_loss_cuda, sample_cuda
    from fastsuper.train.cuda import loss_grad_cuda

    try:
        cuda.require_cuda()
    except RuntimeError as exc:
        raise NotImplementedError(str(exc)) from exc
    return types.SimpleNamespace(
        estimate_loss_cuda=estimate_loss_cuda,
        exact_power_sums_cuda=exact_power_sums_cuda,
        loss_grad_cuda=loss_grad_cuda,
        sample_cuda=sample_cuda,
        to_device_array=cuda.to_device_array,
    )


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


class EstimateLossCUDA:
    """``estimate_loss_cuda`` at n = 1000, d = 64, p = 0.01, relu_power 2, uniform values."""

    params = (["float64", "float32"], ["columns", "dense"])
    param_names = ["dtype", "path"]
    timeout = 600

    def setup(self, dtype, path):
        self.bc = _backend()
        self.model = fs.Model(_frame(N, D, dtype), activation="relu_power", exponent=2)
        self.inputs = fs.SparseInputs(N, p=P, values="uniform")
        cpu = fs.estimate_loss(self.model, self.inputs, 20_000, seed=0, path=path)
        gpu = self.bc.estimate_loss_cuda(self.model, self.inputs, 20_000, 0, path)
        rtol = 1e-10 if dtype == "float64" else 1e-4
        if abs(gpu.mean - cpu.mean) > rtol * abs(cpu.mean):
            raise AssertionError(f"GPU loss {gpu.mean!r} != CPU loss {cpu.mean!r}")

    def _run(self, path):
        return self.bc.estimate_loss_cuda(self.model, self.inputs, MC_SAMPLES, 1, path)

    def time_estimate_loss(self, dtype, path):
        self._run(path)

    def track_samples_per_second(self, dtype, path):
        return _best_rate(lambda: self._run(path), MC_SAMPLES)

    track_samples_per_second.unit = "samples/s"


class SampleCUDA:
    """``sample_cuda``: n = 1000 features, p = 0.01, Gaussian values (copied to the host)."""

    timeout = 300

    def setup(self):
        self.bc = _backend()
        self.inputs = fs.SparseInputs(N, p=P, values="gaussian")
        got = self.bc.sample_cuda(self.inputs, 1000, seed=0)
        ref = fs.sample(self.inputs, 1000, seed=0)
        if not np.array_equal(got.indices, ref.indices):
            raise AssertionError("GPU samples differ from the CPU's")

    def _run(self):
        return self.bc.sample_cuda(self.inputs, SAMPLE_SAMPLES, seed=1)

    def time_sample(self):
        self._run()

    def track_samples_per_second(self):
        return _best_rate(self._run, SAMPLE_SAMPLES)

    track_samples_per_second.unit = "samples/s"


class ExactPowerSumsCUDA:
    """``exact_power_sums_cuda``: n = 6000, R = 2m = 6 (the exact loss's core at the paper's n)."""

    timeout = 300

    def setup(self):
        self.bc = _backend()
        rng = np.random.default_rng(0)
        W = rng.standard_normal((15, 6000)) / np.sqrt(15)
        self.A = W.T @ W
        np.fill_diagonal(self.A, 0.0)
        self.c = rng.standard_normal((7, 6000))
        self.A_d = self.bc.to_device_array(self.A)
        self.c_d = self.bc.to_device_array(self.c)
        got = self.bc.exact_power_sums_cuda(self.A_d, self.c_d)
        ref = (self.A**3) @ self.c[3]
        if not np.allclose(got[3], ref, rtol=1e-10, atol=1e-10):
            raise AssertionError("GPU power sums differ from NumPy's")

    def time_power_sums(self):
        self.bc.exact_power_sums_cuda(self.A_d, self.c_d)


class LossGradCUDA:
    """``loss_grad_cuda`` (training's backward pass) at the same configuration."""

    params = (["float64", "float32"],)
    param_names = ["dtype"]
    timeout = 600
    n_samples = 200_000

    def setup(self, dtype):
        from fastsuper.train.adam import loss_grad

        self.bc = _backend()
        self.model = fs.Model(_frame(N, D, dtype), activation="relu_power", exponent=2)
        self.inputs = fs.SparseInputs(N, p=P, values="uniform")
        cpu = loss_grad(self.model, self.inputs, 8192, 0, block_size=256)
        gpu = self.bc.loss_grad_cuda(self.model, self.inputs, 8192, 0, block_size=256)
        rtol = 1e-10 if dtype == "float64" else 1e-4
        if abs(gpu.loss - cpu.loss) > rtol * abs(cpu.loss):
            raise AssertionError(f"GPU loss {gpu.loss!r} != CPU loss {cpu.loss!r}")

    def _run(self):
        return self.bc.loss_grad_cuda(self.model, self.inputs, self.n_samples, 1, block_size=256)

    def time_loss_grad(self, dtype):
        self._run()

    def track_samples_per_second(self, dtype):
        return _best_rate(self._run, self.n_samples)

    track_samples_per_second.unit = "samples/s"
