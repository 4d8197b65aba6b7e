"""CPU backend of Monte-Carlo estimation: sample blocks through the parallel kernel."""

from __future__ import annotations

import time

import numpy as np

from fastsuper.core.bundles import activation, plain_rule
from fastsuper.core.laws import SparseInputs
from fastsuper.core.model import Model
from fastsuper.mc.common import LossEstimate, finish
from fastsuper.mc.kernels_cpu import PATH_CODES, aligned, mc_blocks
from fastsuper.mc.paths import choose_path, path_operand, path_shape

__all__ = ["estimate_loss_cpu", "run_blocks"]


def run_blocks(
    model: Model,
    inputs: SparseInputs,
    A: np.ndarray,
    path: str,
    per_feature: bool,
    seed: int,
    first: int,
    count: int,
    block_size: int,
):
    """Per-block statistics of samples ``first .. first + count - 1`` on ``path``.

    The one call of :func:`~fastsuper.mc.kernels_cpu.mc_blocks` shared by the
    CPU and Dask backends (``A`` from :func:`path_operand`); blocks start at
    ``first``, so a run cut into chunks of whole blocks gives the same blocks.
    Returns ``(stats, pf1, pf2)``.
    """
    tile, sub = path_shape(path, model.n, model.d, model.dtype.itemsize, inputs.expected_active)
    if path == "columns_blocked":  # panels that travelled (Dask) may have lost their alignment
        A = aligned(A)
    return mc_blocks(
        model.W, A, model.bias, inputs.importance, activation(model), PATH_CODES[path],
        bool(per_feature), np.uint64(seed & ((1 << 64) - 1)), first, count, block_size,
        inputs._kernel_params(), plain_rule(), tile, sub,
    )  # fmt: skip


def estimate_loss_cpu(
    model: Model,
    inputs: SparseInputs,
    n_samples: int,
    seed: int,
    path: str,
    block_size: int,
    start: int,
    per_feature: bool,
) -> LossEstimate:
    """``estimate_loss(..., backend="cpu")`` on checked arguments."""
    if path == "auto":
        path = choose_path(model, inputs, n_samples)
    t0 = time.perf_counter()
    stats, pf1, pf2 = run_blocks(
        model, inputs, path_operand(model, path), path, bool(per_feature), seed, start,
        n_samples, block_size,
    )  # fmt: skip
    return finish(
        stats, pf1, pf2, model, inputs, n_samples, seed, path, per_feature,
        time.perf_counter() - t0, method="naive", backend="cpu",
    )  # fmt: skip
