"""CPU backend of Monte-Carlo estimation: sample blocks through the parallel kernel."""

from __future__ import annotations

import time

import numba
import numpy as np

from fastsuper.core.bundles import activation, plain_rule
from fastsuper.core.laws import SparseInputs
from fastsuper.core.model import Model
from fastsuper.core.progress import progress_bar
from fastsuper.mc.common import LossEstimate, finish
from fastsuper.mc.kernels_cpu import PATH_CODES, aligned, mc_blocks
from fastsuper.mc.paths import choose_path, path_operand, path_shape

__all__ = ["estimate_loss_cpu", "run_blocks", "run_chunks"]


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
    progress: bool = False,
) -> LossEstimate:
    """``estimate_loss(..., backend="cpu")`` on checked arguments.

    With ``progress``, the blocks run in chunks (:func:`run_chunks`) under a
    progress bar: the same blocks, so the same numbers bit for bit.
    """
    if path == "auto":
        path = choose_path(model, inputs, n_samples)
    t0 = time.perf_counter()
    A = path_operand(model, path)
    if progress:
        stats, pf1, pf2 = run_chunks(
            model, inputs, A, path, bool(per_feature), seed, start, n_samples, block_size
        )
    else:
        stats, pf1, pf2 = run_blocks(
            model, inputs, A, path, bool(per_feature), seed, start, n_samples, block_size
        )
    return finish(
        stats, pf1, pf2, model, inputs, n_samples, seed, path, per_feature,
        time.perf_counter() - t0, method="naive", backend="cpu",
    )  # fmt: skip


def run_chunks(model, inputs, A, path, per_feature, seed, first, count, block_size):
    """:func:`run_blocks` in chunks of whole blocks, under a progress bar on stderr.

    A chunk holds enough blocks to keep every thread busy (and at most about
    a hundredth of the run); its blocks are those of one :func:`run_blocks`
    call over the whole range, so the statistics are the same bit for bit.
    """
    n_blocks = -(-count // block_size)
    per_chunk = max(4 * numba.get_num_threads(), -(-n_blocks // 100))
    chunk = per_chunk * block_size
    parts = []
    with progress_bar(count, "estimate_loss", unit="samples", scale=True) as bar:
        for lo in range(0, count, chunk):
            size = min(chunk, count - lo)
            parts.append(
                run_blocks(model, inputs, A, path, per_feature, seed, first + lo, size, block_size)
            )
            bar.update(size)
    return tuple(np.concatenate([part[i] for part in parts]) for i in range(3))
