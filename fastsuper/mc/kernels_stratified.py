"""The stratified Monte-Carlo estimator (THEORY §4): exact k <= 1, sampled K >= 2.

With ``K`` the number of active features,

    L = P(K=0) L_0 + sum_i P(only i) L_{1,i} + P(K>=2) E[loss | K>=2].

The first two terms are exact (:func:`fastsuper.low_order_terms`); only the
last is sampled, from the input law conditioned on ``K >= 2``.  The estimate
is ``exact + P(K>=2) * (sample mean)`` with standard error
``P(K>=2) * (sample standard error)``; the same for the gain and for each
feature's loss term.  When ``E K`` is small almost every plain Monte-Carlo
sample has ``K <= 1``, and this removes their variance (THEORY §4); a
``K >= 2`` sample costs about twice a plain one (two random rows of
``A = W^T W`` to read).  docs/benchmarks.md ("Stratified estimator against
the naive one", ``scripts/stratified_gain.py``) has the standard errors the
two estimators reach in equal wall time.

Sampling given ``K >= 2`` is a pure function of ``(seed, sample index)`` (the
counter-based generator of :mod:`fastsuper.core.rng`), by one of three rules
(a :class:`~fastsuper.core.bundles.SampleRule`, drawn by
:func:`fastsuper.core.laws.draw_active_by`; this module builds its tables):

* independent features, one ``p`` for all (``MODE_BINOM``): ``K`` by inverse
  CDF on a table of the law of ``Binomial(n, p)`` conditioned on ``K >= 2``
  (counter ``K_COUNTER``), then a uniform ``K``-subset by Robert Floyd's
  algorithm (:func:`fastsuper.core.laws.draw_subset`, counters ``0 .. K-1``).
  The table is the whole law when it fits; otherwise it stops at the first
  ``kmax`` past the mode whose conditional tail ``P(K > kmax | K >= 2)`` is
  below ``1e-17`` (less than the ``2**-53`` resolution of a uniform), and that
  tail is given to ``kmax``;
* independent features, one ``p_i`` each (``MODE_SEQ``): exact sequential
  conditional sampling.  With ``s`` the number of actives still required and
  ``T(j, s) = P(at least s actives among j .. n-1)``, the next active feature
  after ``i`` has survival function
  ``P(next >= j | s, i) = prod_{i<=l<j} (1 - p_l) T(j, s) / T(i, s)``, drawn by
  inverse CDF with a binary search on ``H_s(j) = sum_{l<j} log1p(-p_l) +
  log T(j, s)`` (prefix sums of logs: no cancellation for tiny or large
  ``p``).  Two such draws (``s = 2`` then ``s = 1``, counters 0 and 1) give
  the first two actives; the features after the second are independent
  Bernoulli, by geometric skipping with thinning (counters 2, 3, ...) as in
  :func:`fastsuper.core.laws.draw_active`;
* exactly ``k`` active with ``k >= 2``, or ``p = 1`` (``MODE_PLAIN``): every
  sample has ``K >= 2``; the samples are the plain estimator's, so both
  estimators give the same numbers bit for bit.  With ``k <= 1`` (or whenever
  ``P(K >= 2) = 0``) the loss is exact and nothing is sampled.

Values are drawn as in :func:`fastsuper.core.laws.draw_sample` (counters
``VALUE_BASE + 2a``).  The Monte-Carlo kernel is the plain estimator's,
:func:`fastsuper.mc.kernels_cpu.mc_blocks`, given the rule.
"""

from __future__ import annotations

import math

import numpy as np

from fastsuper.core.bundles import MODE_BINOM, MODE_PLAIN, MODE_SEQ, SampleRule
from fastsuper.core.jit import njit
from fastsuper.core.laws import K_COUNTER

__all__ = [
    "K_COUNTER",
    "K_TAIL",
    "MODE_BINOM",
    "MODE_PLAIN",
    "MODE_SEQ",
    "SampleRule",
    "binom_ge2_cdf",
    "seq_tables",
]

#: the K table stops where the conditional tail mass is below this
K_TAIL = 1e-17


# --------------------------------------------------------------------------
# tables (once per law)


@njit
def binom_ge2_cdf(n, p, tail):
    """CDF of ``K ~ Binomial(n, p)`` given ``K >= 2``, for ``K = 2, 3, ...``.

    Entry ``t`` is ``P(K <= 2 + t | K >= 2)``; the last entry is 1.  Log
    weights relative to ``K = 2`` by the ratio recursion, normalised by their
    maximum; the table stops at ``K = n`` or at the first ``kmax`` past the
    mode where the geometric bound of the tail, ``w_kmax rho / (1 - rho)``
    (``rho`` the next ratio), is below ``tail`` times the mass so far.
    Needs ``n >= 2`` and ``0 < p < 1``.
    """
    lw = np.empty(n - 1)
    lodds = math.log(p) - math.log1p(-p)
    lw[0] = 0.0
    m = 0.0  # running maximum of lw
    s = 1.0  # sum of exp(lw - m)
    t = 0
    while 2 + t < n:
        k = 2 + t
        r = math.log((n - k) / (k + 1.0)) + lodds  # log w_{k+1} / w_k
        if r < 0.0:
            rho = math.exp(r)
            bound = math.exp(lw[t] - m) * rho / (1.0 - rho)
            if bound < tail * s:
                break
        lw[t + 1] = lw[t] + r
        t += 1
        if lw[t] > m:
            s = s * math.exp(m - lw[t]) + 1.0
            m = lw[t]
        else:
            s += math.exp(lw[t] - m)
    L = t + 1
    cdf = np.empty(L)
    acc = 0.0
    for q in range(L):
        acc += math.exp(lw[q] - m)
        cdf[q] = acc / s
    cdf[L - 1] = 1.0
    return cdf


@njit
def seq_tables(p, h1, h2, ones):
    """Tables of the sequential sampler (``h1, h2, ones`` of length ``n + 1``).

    ``T(j, 1) = 1 - prod_{l>=j}(1 - p_l)`` (by ``expm1`` of a sum of
    ``log1p``), ``T(j, 2) = p_j T(j+1, 1) + (1 - p_j) T(j+1, 2)`` (non-negative
    terms only).  ``h_s[j] = sum_{l<j, p_l<1} log1p(-p_l) + log T(j, s)``
    (``-inf`` where ``T = 0``) and ``ones[j]`` counts the ``l < j`` with
    ``p_l = 1`` (which make ``prod (1 - p_l)`` exactly 0).  Returns ``T(0, 2)``.
    """
    n = p.shape[0]
    t1 = 0.0
    t2 = 0.0
    q = 0.0
    any1 = False
    h1[n] = -math.inf
    h2[n] = -math.inf
    for j in range(n - 1, -1, -1):  # store T(j, s) for now
        pj = p[j]
        t2 = pj * t1 + (1.0 - pj) * t2
        if pj >= 1.0:
            any1 = True
        else:
            q += math.log1p(-pj)
        t1 = 1.0 if any1 else -math.expm1(q)
        h1[j] = t1
        h2[j] = t2
    t02 = h2[0]
    lq = 0.0
    cnt = 0
    for j in range(n):
        ones[j] = cnt
        h1[j] = lq + math.log(h1[j]) if h1[j] > 0.0 else -math.inf
        h2[j] = lq + math.log(h2[j]) if h2[j] > 0.0 else -math.inf
        if p[j] >= 1.0:
            cnt += 1
        else:
            lq += math.log1p(-p[j])
    ones[n] = cnt
    return t02
