"""Monte-Carlo estimation of the loss and gain, and the Monte-Carlo check."""

from __future__ import annotations

from fastsuper.core import config
from fastsuper.core import validation as v
from fastsuper.core.laws import SparseInputs
from fastsuper.core.model import Model
from fastsuper.mc.common import BACKENDS, METHODS, LossEstimate, check_run
from fastsuper.mc.cpu import estimate_loss_cpu

__all__ = ["LossEstimate", "estimate_loss"]


def estimate_loss(
    model: Model, inputs: SparseInputs, n_samples: int = 100_000, seed: int = 0, *,
    per_feature: bool = False, path: str = "auto", backend: str = "cpu",
    block_size: int = config.DEFAULT_BLOCK, start: int = 0, method: str = "naive", client=None,
    chunk_size: int | None = None,
) -> LossEstimate:  # fmt: skip
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
        How ``z`` is formed (:mod:`fastsuper.mc.paths`); ``"auto"`` picks by a
        cost model.  All give the same numbers to round-off;
        ``method="stratified"`` has all but ``"blocked"``.
    backend : {"cpu", "cuda", "dask"}
        ``"cuda"``: the same samples on a GPU, the same numbers to round-off
        (the ``cuda`` extra and a GPU, or ``NUMBA_ENABLE_CUDASIM=1``).
        ``"dask"``: chunks of blocks as tasks on a ``dask.distributed``
        cluster (:func:`fastsuper.mc.dask.estimate_loss_dask`), the CPU's
        numbers bit for bit.
    block_size : int, default 2048
        Samples per parallel work item and per partial sum; changes only the
        order of float64 additions.
    start : int, default 0
        Index of the first sample (to continue or split a run).
    method : {"naive", "stratified"}, default "naive"
        ``"stratified"`` (THEORY §4): the ``K <= 1`` strata exactly and
        ``n_samples`` samples given ``K >= 2``
        (:func:`fastsuper.mc.stratified.stratified_estimate`); far smaller
        standard errors when ``E K`` is small.
    client : distributed.Client, optional
        ``backend="dask"``: the cluster (default: a local one for this call).
    chunk_size : int, optional
        ``backend="dask"``: samples per task, a multiple of ``block_size``.

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
    >>> model = fs.Model(np.random.default_rng(0).normal(size=(4, 20)) / 2, exponent=3)
    >>> inputs = fs.SparseInputs(20, p=0.05, values="rademacher")
    >>> est = fs.estimate_loss(model, inputs, 200_000, seed=1)
    >>> bool(abs(est.mean - fs.exact_loss(model, inputs)) < 5 * est.stderr)
    True
    """
    _check_method(method, backend, client, chunk_size)
    if method == "stratified":
        from fastsuper.mc.stratified import stratified_estimate

        return stratified_estimate(model, inputs, n_samples, seed, per_feature=per_feature,
                                   path=path, backend=backend, block_size=block_size,
                                   start=start)  # fmt: skip
    return _naive(model, inputs, n_samples, seed, per_feature, path, backend, block_size, start,
                  client, chunk_size)  # fmt: skip


def _naive(
    model, inputs, n_samples, seed, per_feature, path, backend, block_size, start, client,
    chunk_size,
) -> LossEstimate:  # fmt: skip
    """``method="naive"``: check the run and send it to its backend."""
    n_samples, seed, block_size, start = check_run(
        model, inputs, n_samples, seed, block_size=block_size, start=start, path=path
    )
    v.check_choice("backend", backend, BACKENDS)
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


def _check_method(method, backend, client, chunk_size) -> None:
    """The method and the Dask-only arguments, checked before anything else."""
    v.check_choice("method", method, METHODS)
    if backend != "dask" and (client is not None or chunk_size is not None):
        raise ValueError(
            f"client and chunk_size are for backend='dask' only, got backend={backend!r}"
        )
    if method == "stratified" and backend == "dask":
        raise NotImplementedError(
            "method='stratified' has no Dask backend; use method='naive' with backend='dask', "
            "or method='stratified' with backend='cpu'"
        )
