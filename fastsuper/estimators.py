"""Monte-Carlo estimation of the loss and gain, and the Monte-Carlo check."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from . import _validation as v
from .kernels_cpu import mc_blocks, merge_block_stats
from .model import Model
from .sampling import SparseInputs

#: samples per block: the unit of parallel work and of the fixed reduction order
DEFAULT_BLOCK = 2048
#: largest A = W^T W (bytes) the column path may allocate
MAX_A_BYTES = 1 << 30
PATHS = ("auto", "dense", "columns")
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


def choose_path(model: Model, inputs: SparseInputs, n_samples: int) -> str:
    """Cost model: ``"columns"`` (rows of A = W^T W) or ``"dense"`` (W, then W^T).

    Per sample the dense path costs about ``d (K + n)`` multiply-adds and the
    column path ``n K``, plus ``n^2 d`` once to form A.
    """
    k = inputs.expected_active
    n, d = model.n, model.d
    dense = n_samples * d * (k + n)
    cols = n * n * d + n_samples * n * k
    if n * n * model.dtype.itemsize > MAX_A_BYTES:
        return "dense"
    return "columns" if cols < dense else "dense"


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
    path : {"auto", "dense", "columns"}
        ``"columns"`` adds rows of ``A = W^T W`` (cheap when few features are
        active); ``"dense"`` computes ``W^T (W x)``; ``"auto"`` picks the
        cheaper by a cost model.  Both give the same numbers to round-off.
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
    A = model.A if path == "columns" else np.zeros((1, 1), model.dtype)
    act, a, ia = model._act_args()
    n, kfix, pmax, log1mp, thin, p, code, support, cum = inputs._kernel_params()
    stats, pf1, pf2 = mc_blocks(
        model.W,
        A,
        model.bias,
        inputs.importance,
        act,
        a,
        ia,
        path == "columns",
        bool(per_feature),
        np.uint64(seed & ((1 << 64) - 1)),
        start,
        n_samples,
        block_size,
        n,
        kfix,
        pmax,
        log1mp,
        thin,
        p,
        code,
        support,
        cum,
    )
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
