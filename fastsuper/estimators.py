"""Monte-Carlo estimation of the loss and gain, and the Monte-Carlo check."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from . import _validation as v
from ._blas import single_thread_if_small
from ._simd import NARROW_TILE_BYTES, TILE_BYTES
from .kernels_cpu import PATH_CODES, aligned, column_panels, mc_blocks, merge_block_stats
from .model import Model
from .sampling import SparseInputs

#: samples per block: the unit of parallel work and of the fixed reduction order
DEFAULT_BLOCK = 2048
#: largest A = W^T W (bytes) the column path may allocate
MAX_A_BYTES = 1 << 30
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
        """Loss as a mean over features (Elhage et al.'s convention)."""
        return self.mean / self.n

    def __str__(self) -> str:
        return (
            f"loss {self.mean:.6g} ± {self.stderr:.3g}, gain {self.gain_mean:.6g} ± "
            f"{self.gain_stderr:.3g} ({self.n_samples} samples, {self.path} path)"
        )


#: largest ``n x tile`` panel of A for which path "columns_blocked" uses its wide
#: tiles (512-byte rows; narrower tiles measured slower even past L2's size)
COLUMN_TILE_BYTES = 1 << 22
#: CSR entries (about) that path "columns_blocked" draws at once
COLUMN_SUB_ENTRIES = 1 << 15
#: samples per matrix product of path "blocked"
GEMM_ROWS = 32
#: OpenBLAS multiplies on one thread when m*n*k is at most this
#: (``SMP_THRESHOLD_MIN * GEMM_MULTITHREAD_THRESHOLD`` in its interface/gemm.c): the
#: blocked path's products stay below it, so BLAS never starts threads of its own
#: inside the parallel kernel (whatever OPENBLAS_NUM_THREADS says)
BLAS_SINGLE_THREAD_MNK = 65536 * 4

# Cost model (:func:`choose_path`): nanoseconds per unit of work on one thread,
# fitted (non-negative least squares on relative errors) to 162 timings of the
# three paths at 54 shapes (benchmarks/cost_model.py, docs/_static/cost_model.json) on the
# project's 2-core VM, 2026-12-06; only their ratios matter for the choice.
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
    """``(tile, sub)`` of :func:`fastsuper.kernels_cpu.mc_blocks` for ``path``.

    * ``"columns_blocked"``: ``tile`` outputs per tile, 512 bytes of them
      (:data:`fastsuper._simd.TILE_BYTES`: 64 float64 or 128 float32) when
      the ``n x tile`` panel of ``A`` fits :data:`COLUMN_TILE_BYTES`, else
      128 bytes; ``sub`` samples drawn at once (about
      :data:`COLUMN_SUB_ENTRIES` active entries);
    * ``"blocked"``: ``sub = GEMM_ROWS`` samples per matrix product, ``tile``
      outputs per product with ``sub * tile * d <=`` :data:`BLAS_SINGLE_THREAD_MNK`.

    These shapes fix the order of a sample's float additions; they depend on
    the sizes only, never on the thread count.
    """
    if path == "columns_blocked":
        wide = n * TILE_BYTES <= COLUMN_TILE_BYTES
        tile = (TILE_BYTES if wide else NARROW_TILE_BYTES) // itemsize
        sub = int(min(4096, max(16, COLUMN_SUB_ENTRIES // max(1.0, expected_k))))
        return tile, sub
    if path == "blocked":
        tile = BLAS_SINGLE_THREAD_MNK // (GEMM_ROWS * max(1, d)) // 16 * 16
        return max(16, min(tile, n)), GEMM_ROWS
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
    :data:`MAX_A_BYTES`.  "dense" (one sample at a time) is never chosen:
    "blocked" does the same work faster.
    """
    n, d = model.n, model.d
    costs = path_costs(n, d, inputs.expected_active, model.dtype.itemsize, n_samples)
    del costs["dense"]
    if n * n * model.dtype.itemsize > MAX_A_BYTES:
        return "blocked"
    return min(costs, key=costs.get)


def gram(model: Model) -> np.ndarray:
    """``A = W^T W`` for the Monte-Carlo kernels (:attr:`Model.A`, from an aligned ``W``).

    Formed on one BLAS thread when small (:func:`fastsuper._blas.single_thread_if_small`:
    spinning BLAS threads measured 2.48e6 instead of 2.98e6 samples/s of the
    kernel that follows, n = 1000, d = 64, float32, 2 threads, 400000 samples;
    on one thread A took 2.0-2.8 ms, as on two).
    """
    # NumPy multiplies arrays that are not aligned to their itemsize (as W can be after
    # unpickling on a Dask worker) with its own loops, not BLAS: other round-off.  An
    # aligned copy gives every process the same A, bit for bit.
    W = aligned(model.W)
    with single_thread_if_small(float(model.n) * model.n * model.d):
        return W.T @ W


def path_operand(model: Model, path: str, A: np.ndarray | None = None) -> np.ndarray:
    """The second matrix :func:`~fastsuper.kernels_cpu.mc_blocks` reads on ``path``.

    ``A = W^T W`` on ``"columns"`` and, as tile panels
    (:func:`~fastsuper.kernels_cpu.column_panels`), on ``"columns_blocked"``;
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

    The one call of :func:`~fastsuper.kernels_cpu.mc_blocks` shared by the
    CPU and Dask backends (``A`` from :func:`path_operand`); blocks start at
    ``first``, so a run cut into chunks of whole blocks gives the same blocks.
    Returns ``(stats, pf1, pf2)``.
    """
    tile, sub = path_shape(path, model.n, model.d, model.dtype.itemsize, inputs.expected_active)
    if path == "columns_blocked":  # panels that travelled (Dask) may have lost their alignment
        A = aligned(A)
    act, a, ia = model._act_args()
    n, kfix, pmax, log1mp, thin, p, code, support, cum = inputs._kernel_params()
    return mc_blocks(
        model.W, A, model.bias, inputs.importance, act, a, ia, PATH_CODES[path],
        bool(per_feature), np.uint64(seed & ((1 << 64) - 1)), first, count, block_size, n,
        kfix, pmax, log1mp, thin, p, code, support, cum, tile, sub,
    )  # fmt: skip


def _check_common(model, inputs, n_samples, seed):
    if not isinstance(model, Model):
        raise TypeError(f"model must be a fastsuper.Model, got {type(model).__name__}")
    if not isinstance(inputs, SparseInputs):
        raise TypeError(f"inputs must be a fastsuper.SparseInputs, got {type(inputs).__name__}")
    if inputs.n != model.n:
        raise ValueError(
            f"inputs.n = {inputs.n} does not match the model's n = {model.n} (W has shape "
            f"{model.W.shape})"
        )
    n_samples = v.check_int("n_samples", n_samples, minimum=2)
    seed = v.check_int("seed", seed)
    return n_samples, seed


def estimate_loss(
    model: Model,
    inputs: SparseInputs,
    n_samples: int = 100_000,
    seed: int = 0,
    *,
    per_feature: bool = False,
    path: str = "auto",
    backend: str = "cpu",
    block_size: int = DEFAULT_BLOCK,
    start: int = 0,
    method: str = "naive",
    client=None,
    chunk_size: int | None = None,
) -> LossEstimate:
    """Monte-Carlo estimate of the loss and gain of ``model`` on ``inputs``.

    One fused kernel per block of samples: sample (counter-based, keyed by
    ``(seed, sample index)``) -> ``h = W x`` over the active entries only ->
    ``z = W^T h + b`` -> activation -> loss, never forming dense inputs.
    Computation is in the model's dtype, accumulation in float64.

    Parameters
    ----------
    model : Model
        The autoencoder; its dtype (float32 or float64) is the compute dtype.
    inputs : SparseInputs
        Input law (sparsity, values, importance).
    n_samples : int, default 100000
        Number of samples (>= 2).
    seed : int, default 0
        Seed; the same seed gives the same numbers for any thread count.
    per_feature : bool, default False
        Also return each feature's loss term ``E I_j (x_j - x_hat_j)^2``.
    path : {"auto", "columns", "columns_blocked", "blocked", "dense"}
        ``"columns"`` adds rows of ``A = W^T W`` per sample (cheap when few
        features are active); ``"columns_blocked"`` does so for a block of
        samples one tile of outputs at a time (the tile of ``A`` stays in
        cache); ``"blocked"`` computes ``W x`` and then ``W^T h`` for a group
        of samples as one matrix product (BLAS); ``"dense"`` computes
        ``W^T (W x)`` one sample at a time; ``"auto"`` picks by a cost model
        (:func:`choose_path`).  All give the same numbers to round-off.
        ``method="stratified"`` has all but ``"blocked"``.
    backend : {"cpu", "cuda"}
        Where to run.  ``"cuda"`` needs the ``cuda`` extra (numba-cuda) and a
        GPU, or ``NUMBA_ENABLE_CUDASIM=1`` (the simulator); it draws the same
        samples and gives the same numbers to round-off.  ``"dask"`` runs
        chunks of blocks as tasks on a ``dask.distributed`` cluster
        (:func:`fastsuper.backend_dask.estimate_loss_dask`; needs the
        ``distributed`` extra) and gives the CPU's numbers bit for bit.
    block_size : int, default 2048
        Samples per parallel work item and per partial sum.  Results are
        identical for any thread count; changing ``block_size`` changes only
        the order of float64 additions.
    start : int, default 0
        Index of the first sample (to continue or split a run).
    method : {"naive", "stratified"}, default "naive"
        ``"naive"``: plain Monte Carlo over the input law.  ``"stratified"``
        (THEORY §4): the ``K <= 1`` strata exactly (:func:`low_order_terms`)
        and only ``K >= 2`` sampled, ``n_samples`` samples drawn given
        ``K >= 2`` (see :func:`fastsuper.stratified.stratified_estimate`); far
        smaller standard errors when ``E K`` is small.
    client : distributed.Client, optional
        ``backend="dask"`` only: the cluster (default: a local cluster started
        and closed for this call, which costs seconds).
    chunk_size : int, optional
        ``backend="dask"`` only: samples per task, a multiple of
        ``block_size``; never changes the result.

    Returns
    -------
    LossEstimate
        ``mean``, ``stderr``, ``gain_mean``, ``gain_stderr`` and, with
        ``per_feature=True``, ``per_feature`` and ``per_feature_stderr``.

    Raises
    ------
    FloatingPointError
        If the loss of any sample overflows (is not finite).

    Examples
    --------
    >>> import numpy as np, fastsuper as fs
    >>> rng = np.random.default_rng(0)
    >>> model = fs.Model(rng.normal(size=(4, 20)) / 2, exponent=3)
    >>> inputs = fs.SparseInputs(20, p=0.05, values="rademacher")
    >>> est = fs.estimate_loss(model, inputs, 200_000, seed=1)
    >>> exact = fs.exact_loss(model, inputs)
    >>> bool(abs(est.mean - exact) < 5 * est.stderr)
    True
    """
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if backend != "dask" and (client is not None or chunk_size is not None):
        raise ValueError(
            f"client and chunk_size are for backend='dask' only, got backend={backend!r}"
        )
    if method == "stratified" and backend == "dask":
        raise NotImplementedError(
            "method='stratified' has no Dask backend; use method='naive' with backend='dask', "
            "or method='stratified' with backend='cpu'"
        )
    if method == "stratified":
        from .stratified import stratified_estimate  # lazy: that module imports this one

        return stratified_estimate(
            model,
            inputs,
            n_samples,
            seed,
            per_feature=per_feature,
            path=path,
            backend=backend,
            block_size=block_size,
            start=start,
        )
    n_samples, seed = _check_common(model, inputs, n_samples, seed)
    block_size = v.check_int("block_size", block_size, minimum=1)
    start = v.check_int("start", start, minimum=0)
    if path not in PATHS:
        raise ValueError(f"path must be one of {PATHS}, got {path!r}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "cuda":
        from .backend_cuda import estimate_loss_cuda  # lazy: needs numba-cuda

        return estimate_loss_cuda(
            model, inputs, n_samples, seed, path, block_size, start, per_feature
        )
    if backend == "dask":
        from .backend_dask import estimate_loss_dask  # lazy: needs dask.distributed

        return estimate_loss_dask(
            model, inputs, n_samples, seed, path, block_size, start, per_feature,
            client=client, chunk_size=chunk_size,
        )  # fmt: skip
    if path == "auto":
        path = choose_path(model, inputs, n_samples)
    t0 = time.perf_counter()
    stats, pf1, pf2 = run_blocks(
        model, inputs, path_operand(model, path), path, bool(per_feature), seed, start,
        n_samples, block_size,
    )  # fmt: skip
    return _finish(
        stats,
        pf1,
        pf2,
        model,
        inputs,
        n_samples,
        seed,
        path,
        per_feature,
        time.perf_counter() - t0,
        method="naive",
        backend=backend,
    )


def _finish(
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
