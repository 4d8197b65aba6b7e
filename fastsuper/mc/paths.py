"""The Monte-Carlo paths of the CPU kernel and the cost model that chooses between them.

A path is how :func:`~fastsuper.mc.kernels_cpu.mc_blocks` forms the
pre-activations ``z = W^T W x + b`` of a sample: ``"dense"`` (``W^T (W x)``),
``"columns"`` (rows of ``A = W^T W``), ``"blocked"`` (matrix products over a
group of samples) and ``"columns_blocked"`` (tiles of rows of ``A`` in SIMD
panels).  :func:`choose_path` picks the cheapest by :func:`path_costs`.
"""

from __future__ import annotations

import numpy as np

from fastsuper.core import config
from fastsuper.core.blas import single_thread_if_small
from fastsuper.core.laws import SparseInputs
from fastsuper.core.model import Model
from fastsuper.mc.kernels_cpu import aligned, column_panels

__all__ = ["choose_path", "gram", "path_costs", "path_operand", "path_shape"]


# Cost model (:func:`choose_path`): nanoseconds per unit of work on one thread,
# fitted (non-negative least squares on relative errors) to timings of the
# paths at many shapes (scripts/cost_model.py, docs/_static/cost_model.json; the fit is
# described in docs/benchmarks.md); only their ratios matter for the choice.
#: per sample (key, loop, statistics) and per active feature (drawing it)
COST_SAMPLE, COST_ACTIVE = 58.0, 17.0
#: per output: activation, loss term, bias
COST_OUTPUT = 0.18
#: per multiply-add of a row of A added to z: rows from L2 (A, or its tile, within
#: :data:`L2_BYTES`), from L3 (A within :data:`L3_BYTES`), from memory
COST_COLUMN_FMA, COST_COLUMN_FMA_L3, COST_COLUMN_FMA_MEM = 0.14, 0.13, 0.23
#: path "columns_blocked": per byte of the panel rows added (the panel within half
#: of :data:`L2_BYTES`, or beyond), and per sample and tile (fitted as 0: the
#: per-tile work is counted in the per-output cost)
COST_PANEL_BYTE, COST_PANEL_BYTE_L3 = 0.0036, 0.0105
COST_TILE = 0.0
#: per multiply-add of the matrix products of "blocked" (and of the per-sample
#: "dense" path, never chosen: not refitted, scaled with the others)
COST_GEMM_FMA, COST_DENSE_FMA = 0.041, 0.18
#: per byte of A = W^T W written once per call (the column paths; twice for
#: "columns_blocked", which also copies it into panels), page faults included
COST_A_BYTE = 0.93
#: cache sizes (per core, and the share of L3 one sample stream can count on)
L2_BYTES, L3_BYTES = 2 << 20, 16 << 20


def path_shape(path: str, n: int, d: int, itemsize: int, expected_k: float) -> tuple[int, int]:
    """``(tile, sub)`` of :func:`fastsuper.mc.kernels_cpu.mc_blocks` for ``path``.

    * ``"columns_blocked"``: ``tile`` outputs per tile, 512 bytes of them
      (:data:`fastsuper.mc.simd.TILE_BYTES`: 64 float64 or 128 float32) when
      the ``n x tile`` panel of ``A`` fits :data:`config.COLUMN_TILE_BYTES`, else
      128 bytes; ``sub`` samples drawn at once (about
      :data:`config.COLUMN_SUB_ENTRIES` active entries);
    * ``"blocked"``: ``sub = config.GEMM_ROWS`` samples per matrix product, ``tile``
      outputs per product with ``sub * tile * d <=`` :data:`config.BLAS_SINGLE_THREAD_MNK`.

    These shapes fix the order of a sample's float additions; they depend on
    the sizes only, never on the thread count.
    """
    if path == "columns_blocked":
        wide = n * config.TILE_BYTES <= config.COLUMN_TILE_BYTES
        tile = (config.TILE_BYTES if wide else config.NARROW_TILE_BYTES) // itemsize
        sub = int(min(4096, max(16, config.COLUMN_SUB_ENTRIES // max(1.0, expected_k))))
        return tile, sub
    if path == "blocked":
        tile = config.BLAS_SINGLE_THREAD_MNK // (config.GEMM_ROWS * max(1, d)) // 16 * 16
        return max(16, min(tile, n)), config.GEMM_ROWS
    return 0, 0


def path_costs(n: int, d: int, expected_k: float, itemsize: int, n_samples: int) -> dict:
    """Modelled time per sample (ns, one thread) of each path; see :func:`choose_path`."""
    k = expected_k
    base = COST_SAMPLE + COST_ACTIVE * k + COST_OUTPUT * n
    a_bytes = n * n * itemsize
    if a_bytes <= L2_BYTES:
        col_fma = COST_COLUMN_FMA
    elif a_bytes <= L3_BYTES:
        col_fma = COST_COLUMN_FMA_L3
    else:
        col_fma = COST_COLUMN_FMA_MEM
    tile = path_shape("columns_blocked", n, d, itemsize, k)[0]
    # the panel shares L2 with the CSR rows and the other thread's work: half of it counts
    panel_byte = COST_PANEL_BYTE if n * tile * itemsize <= L2_BYTES // 2 else COST_PANEL_BYTE_L3
    form_a = (COST_GEMM_FMA * n * n * d + COST_A_BYTE * a_bytes) / max(1, n_samples)
    return {
        "columns": base + col_fma * n * k + form_a,
        "columns_blocked": base
        + panel_byte * itemsize * n * k
        + COST_TILE * -(-n // tile)
        + form_a
        + COST_A_BYTE * a_bytes / max(1, n_samples),
        "dense": base + COST_DENSE_FMA * d * (k + n),
        "blocked": base + COST_COLUMN_FMA * d * k + COST_GEMM_FMA * n * d,
    }


def choose_path(model: Model, inputs: SparseInputs, n_samples: int) -> str:
    """Cost model: the path of least modelled time per sample (:func:`path_costs`).

    Per sample, with ``K`` the expected number of active features: the
    column paths add ``K`` rows of ``A = W^T W`` (``n K`` multiply-adds,
    plus ``n^2 d`` once to form ``A`` and writing its bytes, twice for the
    panels of "columns_blocked"), at a cost per multiply-add that
    depends on where the rows come from (L2, L3 or memory; "columns_blocked"
    reads them from panels of 512-byte rows, in vector registers, per byte
    and per tile); "blocked" computes ``h = W x``
    (``d K``) and ``W^T h`` inside a matrix product over a group of samples
    (``n d``, at matrix-product speed); "dense" does the same one sample at a
    time.  All pay for drawing the sample and for the activation and loss
    over ``n`` outputs.  Measured constants are the ``COST_*`` of this
    module.  The column paths are ruled out when ``A`` would exceed
    :data:`config.MAX_A_BYTES`.  "dense" (one sample at a time) is never chosen:
    "blocked" does the same work faster.
    """
    n, d = model.n, model.d
    costs = path_costs(n, d, inputs.expected_active, model.dtype.itemsize, n_samples)
    del costs["dense"]
    if n * n * model.dtype.itemsize > config.MAX_A_BYTES:
        return "blocked"
    return min(costs, key=costs.get)


def gram(model: Model) -> np.ndarray:
    """``A = W^T W`` for the Monte-Carlo kernels (:attr:`Model.A`, from an aligned ``W``).

    Formed on one BLAS thread when small (:func:`fastsuper.core.blas.single_thread_if_small`):
    BLAS threads left spinning slow down the kernel that follows (docs/benchmarks.md).
    """
    # NumPy multiplies arrays that are not aligned to their itemsize (as W can be after
    # unpickling on a Dask worker) with its own loops, not BLAS: other round-off.  An
    # aligned copy gives every process the same A, bit for bit.
    W = aligned(model.W)
    with single_thread_if_small(float(model.n) * model.n * model.d):
        return W.T @ W


def path_operand(model: Model, path: str, A: np.ndarray | None = None) -> np.ndarray:
    """The second matrix :func:`~fastsuper.mc.kernels_cpu.mc_blocks` reads on ``path``.

    ``A = W^T W`` on ``"columns"`` and, as tile panels
    (:func:`~fastsuper.mc.kernels_cpu.column_panels`), on ``"columns_blocked"``;
    ``W^T`` (contiguous) on ``"blocked"``; a dummy on ``"dense"``.  ``A``: an
    already computed ``W^T W`` to use.
    """
    if path in ("columns", "columns_blocked"):
        if A is None:
            A = gram(model)
        if path == "columns":
            return A
        tile = path_shape(path, model.n, model.d, model.dtype.itemsize, 1.0)[0]
        return column_panels(A, tile)
    if path == "blocked":
        return np.ascontiguousarray(model.W.T)
    return np.zeros((1, 1), model.dtype)
