"""Monte-Carlo estimation of the loss and gain, and the Monte-Carlo check."""

from __future__ import annotations

from fastsuper.core import config
from fastsuper.core import validation as v
from fastsuper.core.laws import SparseInputs
from fastsuper.core.model import Model
from fastsuper.mc.common import BACKENDS, METHODS, PATHS, LossEstimate, check_common
from fastsuper.mc.cpu import estimate_loss_cpu

__all__ = ["LossEstimate", "estimate_loss"]


def estimate_loss(
    model: Model,
    inputs: SparseInputs,
    n_samples: int = 100_000,
    seed: int = 0,
    *,
    per_feature: bool = False,
    path: str = "auto",
    backend: str = "cpu",
    block_size: int = config.DEFAULT_BLOCK,
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
        (:func:`fastsuper.mc.dask.estimate_loss_dask`; needs the
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
        ``K >= 2`` (see :func:`fastsuper.mc.stratified.stratified_estimate`); far
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
        from fastsuper.mc.stratified import stratified_estimate

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
    n_samples, seed = check_common(model, inputs, n_samples, seed)
    block_size = v.check_int("block_size", block_size, minimum=1)
    start = v.check_int("start", start, minimum=0)
    if path not in PATHS:
        raise ValueError(f"path must be one of {PATHS}, got {path!r}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "cuda":
        from fastsuper.mc.cuda import estimate_loss_cuda  # lazy: needs numba-cuda

        return estimate_loss_cuda(
            model, inputs, n_samples, seed, path, block_size, start, per_feature
        )
    if backend == "dask":
        from fastsuper.mc.dask import estimate_loss_dask  # lazy: needs dask.distributed

        return estimate_loss_dask(
            model, inputs, n_samples, seed, path, block_size, start, per_feature,
            client=client, chunk_size=chunk_size,
        )  # fmt: skip
    return estimate_loss_cpu(model, inputs, n_samples, seed, path, block_size, start, per_feature)
