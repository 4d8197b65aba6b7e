"""What every Monte-Carlo backend shares: the result type, the run's checks, the merge."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from fastsuper.core import arguments
from fastsuper.core import validation as v
from fastsuper.mc.kernels_cpu import merge_block_stats

__all__ = ["BACKENDS", "METHODS", "PATHS", "LossEstimate", "check_common", "check_run", "finish"]

PATHS = ("auto", "dense", "columns", "blocked", "columns_blocked")
BACKENDS = ("cpu", "cuda", "dask")
METHODS = ("naive", "stratified")


@dataclass(frozen=True)
class LossEstimate:
    """Result of :func:`estimate_loss`.

    ``mean``/``stderr`` are for the loss ``L = E sum_j I_j (x_j - x_hat_j)^2``
    (a sum over features, as in the paper); ``gain_mean``/``gain_stderr`` for
    the gain ``E sum_j I_j x_j^2 - L``.  Divide by ``n`` for Elhage et al.'s
    mean over features (:attr:`mean_over_features`).
    """

    mean: float
    stderr: float
    gain_mean: float
    gain_stderr: float
    n_samples: int
    seed: int
    n: int
    path: str
    method: str = "naive"
    backend: str = "cpu"
    elapsed: float = 0.0
    per_feature: np.ndarray | None = field(default=None, repr=False)
    per_feature_stderr: np.ndarray | None = field(default=None, repr=False)

    @property
    def samples_per_second(self) -> float:
        return self.n_samples / self.elapsed if self.elapsed > 0 else math.inf

    @property
    def mean_over_features(self) -> float:
        """Loss as a mean over features (Elhage et al.'s convention): ``mean / n``."""
        return self.mean / self.n

    def __str__(self) -> str:
        return (
            f"loss {self.mean:.6g} ± {self.stderr:.3g}, gain {self.gain_mean:.6g} ± "
            f"{self.gain_stderr:.3g} (sums over the {self.n} features: loss = E sum_j I_j "
            "(x_j - x_hat_j)^2, gain = E sum_j I_j x_j^2 - loss, what the model recovers; "
            f"{self.n_samples} samples, {self.path} path)"
        )

    def __repr__(self) -> str:
        return (
            f"LossEstimate(mean={self.mean:.6g} ± {self.stderr:.3g} (loss, sum over the "
            f"{self.n} features), gain_mean={self.gain_mean:.6g} ± {self.gain_stderr:.3g}, "
            f"n_samples={self.n_samples}, seed={self.seed}, path={self.path!r}, "
            f"method={self.method!r}, backend={self.backend!r})"
        )


def check_common(model, inputs, n_samples, seed) -> tuple[int, int]:
    """``(n_samples, seed)`` of a Monte-Carlo run (at least 2 samples), with the model and law."""
    arguments.check_model_inputs(model, inputs)
    n_samples = v.check_int("n_samples", n_samples, minimum=2)
    seed = v.check_int("seed", seed)
    return n_samples, seed


def check_run(model, inputs, n_samples, seed, *, block_size, start, path) -> tuple:
    """``(n_samples, seed, block_size, start)`` of a Monte-Carlo run, checked with ``path``."""
    n_samples, seed = check_common(model, inputs, n_samples, seed)
    block_size = v.check_int("block_size", block_size, minimum=1)
    start = v.check_int("start", start, minimum=0)
    v.check_choice("path", path, PATHS)
    return n_samples, seed, block_size, start


def finish(
    stats, pf1, pf2, model, inputs, n_samples, seed, path, per_feature, elapsed, *, method, backend
):
    cnt, lm, l2, gm, g2, bad, first = merge_block_stats(stats)
    if bad > 0:
        raise FloatingPointError(
            f"the loss overflowed (inf or NaN) in {int(bad)} of {n_samples} samples, first at "
            f"sample index {int(first)} (seed {seed}); the model's pre-activations are too large "
            f"for {model.dtype} with exponent {model.exponent:g}: scale W down"
            + (" or use float64" if model.dtype == np.float32 else "")
        )
    N = cnt
    se = math.sqrt(l2 / (N - 1) / N)
    gse = math.sqrt(g2 / (N - 1) / N)
    pf = pfse = None
    if per_feature:
        s1 = pf1.sum(axis=0)
        s2 = pf2.sum(axis=0)
        pf = s1 / N
        pfse = np.sqrt(np.maximum(s2 / N - pf**2, 0.0) / (N - 1))
    return LossEstimate(
        float(lm),
        se,
        float(gm),
        gse,
        int(N),
        seed,
        model.n,
        path,
        method,
        backend,
        elapsed,
        pf,
        pfse,
    )
