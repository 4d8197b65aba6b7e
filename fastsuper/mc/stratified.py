"""The stratified Monte-Carlo estimator (THEORY §4): exact k <= 1, sampled K >= 2.

With ``K`` the number of active features,

    L = P(K=0) L_0 + sum_i P(only i) L_{1,i} + P(K>=2) E[loss | K>=2].

The first two terms are exact (:func:`fastsuper.low_order_terms`); only the
last is sampled, from the input law conditioned on ``K >= 2``
(:mod:`fastsuper.mc.kernels_stratified` describes the three sampling rules).
The estimate is ``exact + P(K>=2) * (sample mean)`` with standard error
``P(K>=2) * (sample standard error)``; the same for the gain and for each
feature's loss term.  docs/benchmarks.md gives the measured gain in standard
error at equal wall time (``scripts/stratified_gain.py``).
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from fastsuper.core import arguments, config
from fastsuper.core import validation as v
from fastsuper.core.bundles import activation
from fastsuper.core.laws import (
    SparseBatch,
    SparseInputs,
    draw_batch,
)
from fastsuper.core.model import Model
from fastsuper.exact.low_order import (
    LowOrderTerms,
    k1_conditional_loss,
    loss0_terms,
    low_order_terms,
)
from fastsuper.mc.common import BACKENDS, LossEstimate, check_run, finish
from fastsuper.mc.paths import gram, path_costs, path_operand, path_shape

__all__ = ["StratifiedSampler", "sample_ge2", "stratified_estimate"]
from fastsuper.mc.kernels_cpu import PATH_CODES, mc_blocks
from fastsuper.mc.kernels_stratified import (
    K_TAIL,
    MODE_BINOM,
    MODE_PLAIN,
    MODE_SEQ,
    SampleRule,
    binom_ge2_cdf,
    seq_tables,
)

# --------------------------------------------------------------------------
# Python layer


class StratifiedSampler:
    """The law of the inputs conditioned on ``K >= 2``, ready for the kernels.

    Parameters
    ----------
    inputs : SparseInputs
        The input law.

    Attributes
    ----------
    mode : int
        ``MODE_BINOM`` (one ``p``), ``MODE_SEQ`` (per-feature ``p``),
        ``MODE_PLAIN`` (exactly ``k >= 2``, or ``p = 1``), or -1 when
        ``P(K >= 2) = 0``.
    p_ge2 : float
        ``P(K >= 2)``, without cancellation.
    expected_active : float
        ``E[K | K >= 2]`` (an upper estimate for per-feature ``p``).
    """

    def __init__(self, inputs: SparseInputs):
        arguments.check_inputs(inputs)
        arguments.refuse_groups(
            inputs, "stratified sampling (K >= 2 of independent features)",
            hint="use method='naive' (plain Monte Carlo)",
        )  # fmt: skip
        n, kfix, pmax, log1mp, thin, p, *_ = inputs._kernel_params()
        self.n = n
        self.params = (n, kfix, pmax, log1mp, thin, np.ascontiguousarray(p, dtype=np.float64))
        empty = np.zeros(1)
        self.kcdf, self.h1, self.h2 = empty, empty, empty
        self.ones = np.zeros(1, dtype=np.int64)
        if inputs.pattern == "exactly_k":
            self.p_ge2 = 1.0 if kfix >= 2 else 0.0
            self.mode = MODE_PLAIN if kfix >= 2 else -1
            self.expected_active = float(kfix)
        elif inputs.p_is_scalar:
            p0 = float(p[0])
            if n < 2 or p0 <= 0.0:
                self.mode, self.p_ge2, self.expected_active = -1, 0.0, 0.0
            elif p0 >= 1.0:  # every feature active: every sample has K = n >= 2
                self.mode, self.p_ge2, self.expected_active = MODE_PLAIN, 1.0, float(n)
            else:
                self.mode = MODE_BINOM
                self.kcdf = binom_ge2_cdf(n, p0, K_TAIL)
                pmf = np.diff(self.kcdf, prepend=0.0)
                self.expected_active = float(np.dot(pmf, 2.0 + np.arange(pmf.size)))
                h1 = np.empty(n + 1)
                h2 = np.empty(n + 1)
                ones = np.empty(n + 1, dtype=np.int64)
                self.p_ge2 = float(seq_tables(self.params[5], h1, h2, ones))
        else:
            self.h1 = np.empty(n + 1)
            self.h2 = np.empty(n + 1)
            self.ones = np.empty(n + 1, dtype=np.int64)
            self.p_ge2 = float(seq_tables(self.params[5], self.h1, self.h2, self.ones))
            self.mode = MODE_SEQ if self.p_ge2 > 0.0 else -1
            self.expected_active = 2.0 + float(np.sum(p))

    def kernel_args(self):
        """The :class:`~fastsuper.core.bundles.SampleRule` of the kernels."""
        return SampleRule(self.mode, self.kcdf, self.h1, self.h2, self.ones)


def sample_ge2(
    inputs: SparseInputs, n_samples: int, seed: int = 0, *, start: int = 0, chunk_size: int = 4096
) -> SparseBatch:
    """Draw ``n_samples`` inputs from the input law conditioned on ``K >= 2``.

    The samples of :func:`stratified_estimate` (sample ``s`` is a function of
    ``(seed, start + s)`` alone), for tests and inspection.

    Parameters
    ----------
    inputs : SparseInputs
        The input law; ``P(K >= 2)`` must be positive.
    n_samples, seed, start, chunk_size
        As for :func:`fastsuper.sample`.

    Returns
    -------
    SparseBatch
        CSR batch (float64 values); every sample has at least two active features.

    Examples
    --------
    >>> import fastsuper as fs
    >>> from fastsuper.mc.stratified import sample_ge2
    >>> batch = sample_ge2(fs.SparseInputs(30, p=0.01), 1000, seed=1)
    >>> int(batch.counts().min())
    2
    """
    arguments.check_inputs(inputs)
    n_samples = v.check_int("n_samples", n_samples, minimum=0)
    seed = v.check_seed("seed", seed)
    start = v.check_int("start", start, minimum=0)
    chunk_size = v.check_int("chunk_size", chunk_size, minimum=1)
    smp = StratifiedSampler(inputs)
    if smp.mode < 0:
        raise ValueError(
            f"P(K >= 2) = 0 for {inputs!r}: no input has two active features, "
            "there is nothing to sample"
        )
    return draw_batch(
        inputs._kernel_params(), smp.kernel_args(), n_samples, seed, start, chunk_size
    )


def _choose_path(model: Model, k: float, n_samples: int) -> str:
    """The cost model of :func:`fastsuper.mc.paths.choose_path` with ``k = E[K | K>=2]``,
    over the paths of the stratified sampler ("columns_blocked", "columns", "dense")."""
    n, d, itemsize = model.n, model.d, model.dtype.itemsize
    if n * n * itemsize > config.MAX_A_BYTES:
        return "dense"
    costs = path_costs(n, d, k, itemsize, n_samples)
    del costs["blocked"]
    return min(costs, key=costs.get)


def _check_terms(terms, smp: StratifiedSampler, inputs: SparseInputs) -> None:
    if not isinstance(terms, LowOrderTerms):
        raise TypeError(
            f"terms must be the LowOrderTerms of low_order_terms(model, inputs), "
            f"got {type(terms).__name__}"
        )
    if terms.n != inputs.n:
        raise ValueError(f"terms are for n = {terms.n} features, the inputs have n = {inputs.n}")
    tol = 1e-8  # both are accurate to ~n eps relative; another law differs far more
    if abs(terms.p_ge2 - smp.p_ge2) > tol * smp.p_ge2 + 1e-300:
        raise ValueError(
            f"terms.p_ge2 = {terms.p_ge2!r} but these inputs have P(K >= 2) = {smp.p_ge2!r}: "
            "the terms were computed for another input law"
        )


def stratified_estimate(
    model: Model, inputs: SparseInputs, n_samples: int = 100_000, seed: int = 0, *,
    per_feature: bool = False, path: str = "auto", backend: str = "cpu",
    block_size: int = config.DEFAULT_BLOCK, start: int = 0, terms: LowOrderTerms | None = None,
) -> LossEstimate:  # fmt: skip
    """Stratified estimate of the loss and gain: exact ``K <= 1``, sampled ``K >= 2``.

    The same as ``estimate_loss(..., method="stratified")`` (see
    :func:`fastsuper.estimate_loss` for the shared parameters), plus:

    Parameters
    ----------
    n_samples : int
        Samples of the ``K >= 2`` stratum (>= 2).  ``LossEstimate.n_samples``
        is 0 when ``P(K >= 2) = 0`` (exactly ``k <= 1`` active, ``n = 1`` or
        ``p = 0``): the loss is then exact and its stderr 0.
    terms : LowOrderTerms, optional
        ``low_order_terms(model, inputs)`` computed beforehand (it costs
        ``O(n**2)`` quadrature nodes, once per model and law): it must belong
        to the same model and inputs (the input law is checked, not the model).

    Returns
    -------
    LossEstimate
        ``method="stratified"``; ``mean = k<=1 part + P(K>=2) * sample mean``,
        ``stderr = P(K>=2) * sample stderr``, the same for the gain and
        (``per_feature=True``) for each feature's loss term.  ``elapsed``
        includes the exact terms.

    Examples
    --------
    >>> import numpy as np, fastsuper as fs
    >>> W = np.random.default_rng(0).normal(size=(4, 40)) / 2
    >>> model, inputs = fs.Model(W, exponent=3), fs.SparseInputs(40, p=1e-3)
    >>> est = fs.estimate_loss(model, inputs, 20_000, seed=1, method="stratified")
    >>> bool(abs(est.mean - fs.exact_loss(model, inputs)) < 5 * est.stderr)
    True
    """
    t0 = time.perf_counter()
    n_samples, seed, block_size, start = check_run(
        model, inputs, n_samples, seed, block_size=block_size, start=start, path=path,
        per_feature=per_feature,
    )  # fmt: skip
    v.check_choice("backend", backend, BACKENDS)
    if backend != "cpu":
        raise NotImplementedError(
            f"method='stratified' runs on the CPU only (backend={backend!r} was asked for); "
            "use backend='cpu', or method='naive' on the GPU"
        )
    smp = StratifiedSampler(inputs)
    if terms is None:
        terms = low_order_terms(model, inputs)
    else:
        _check_terms(terms, smp, inputs)
    p_ge2 = terms.p_ge2 if smp.mode >= 0 else 0.0
    pf_le1 = None
    if per_feature:
        act = activation(model, np.float64)
        bias = np.ascontiguousarray(model.bias, dtype=np.float64)
        imp = np.ascontiguousarray(inputs.importance, dtype=np.float64)
        M = k1_conditional_loss(model, inputs, per_output=True)
        pf_le1 = terms.p0 * loss0_terms(bias, imp, act) + M @ terms.p1
    if smp.mode < 0 or p_ge2 == 0.0:
        return _exact_estimate(model, terms, seed, "columns" if path == "auto" else path,
                               pf_le1, time.perf_counter() - t0)  # fmt: skip
    path = _ge2_path(model, smp, path, n_samples)
    est = _estimate_ge2(model, inputs, smp, n_samples, seed, start, block_size, path, per_feature)
    return _combine(est, terms, p_ge2, pf_le1, time.perf_counter() - t0)


def _exact_estimate(model: Model, terms: LowOrderTerms, seed, path, pf_le1, elapsed):
    """The estimate when ``P(K >= 2) = 0``: the ``K <= 1`` part, exact."""
    return LossEstimate(
        mean=terms.lower_bound,
        stderr=0.0,
        gain_mean=terms.gain_le1,
        gain_stderr=0.0,
        n_samples=0,
        seed=seed,
        n=model.n,
        path=path,
        method="stratified",
        backend="cpu",
        elapsed=elapsed,
        per_feature=pf_le1,
        per_feature_stderr=None if pf_le1 is None else np.zeros(model.n),
    )


def _ge2_path(model: Model, smp: StratifiedSampler, path: str, n_samples: int) -> str:
    """The path of the ``K >= 2`` samples (``"auto"``: by the cost model)."""
    if path == "auto":
        path = _choose_path(model, smp.expected_active, n_samples)
    if path == "blocked":
        raise ValueError(
            "path='blocked' is not available with method='stratified' (its samples have "
            "K >= 2 active features, few for matrix products); use 'auto', 'columns', "
            "'columns_blocked' or 'dense'"
        )
    return path


def _estimate_ge2(model, inputs, smp, n_samples, seed, start, block_size, path, per_feature):
    """Monte Carlo of the ``K >= 2`` stratum: a :class:`LossEstimate` of the conditional law."""
    backend = "cpu"
    if path in ("columns", "columns_blocked"):
        A = path_operand(model, path, gram(model))
    else:
        A = np.zeros((1, 1), model.dtype)
    sub = 0
    if path == "columns_blocked":
        _, sub = path_shape(path, model.n, model.d, model.dtype.itemsize, smp.expected_active)
    stats, pf1, pf2 = mc_blocks(
        model.W, A, model.bias, inputs.importance, activation(model), PATH_CODES[path],
        bool(per_feature), np.uint64(seed & ((1 << 64) - 1)), start, n_samples, block_size,
        inputs._kernel_params(), smp.kernel_args(), 0, sub,
    )  # fmt: skip
    est = finish(
        stats,
        pf1,
        pf2,
        model,
        inputs,
        n_samples,
        seed,
        path,
        per_feature,
        0.0,
        method="stratified",
        backend=backend,
    )
    return est


def _combine(est: LossEstimate, terms: LowOrderTerms, p_ge2: float, pf_le1, elapsed: float):
    """The stratified estimate: the exact ``K <= 1`` part plus ``P(K >= 2)`` times ``est``."""
    pf = pfse = None
    if pf_le1 is not None:
        pf = pf_le1 + p_ge2 * est.per_feature
        pfse = p_ge2 * est.per_feature_stderr
    return replace(
        est,
        mean=terms.lower_bound + p_ge2 * est.mean,
        stderr=p_ge2 * est.stderr,
        gain_mean=terms.gain_le1 + p_ge2 * est.gain_mean,
        gain_stderr=p_ge2 * est.gain_stderr,
        elapsed=elapsed,
        per_feature=pf,
        per_feature_stderr=pfse,
    )
