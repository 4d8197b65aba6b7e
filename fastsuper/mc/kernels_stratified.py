"""The stratified Monte-Carlo estimator (THEORY §4): exact k <= 1, sampled K >= 2.

With ``K`` the number of active features,

    L = P(K=0) L_0 + sum_i P(only i) L_{1,i} + P(K>=2) E[loss | K>=2].

The first two terms are exact (:func:`fastsuper.low_order_terms`); only the
last is sampled, from the input law conditioned on ``K >= 2``.  The estimate
is ``exact + P(K>=2) * (sample mean)`` with standard error
``P(K>=2) * (sample standard error)``; the same for the gain and for each
feature's loss term.  When ``E K`` is small almost every plain Monte-Carlo
sample has ``K <= 1``, and this removes their variance.  At n = 1000, d = 64,
``relu_power`` 2, U[0, 1] values the per-sample variance is 1.5e3 times
smaller at ``E K = 0.1`` and 1.2e6 times at ``E K = 0.01`` (THEORY §4); a
``K >= 2`` sample costs about twice a plain one (two random rows of
``A = W^T W`` to read), so at equal wall time, ``low_order_terms`` included,
the standard error is about 28x and 750x smaller
(``benchmarks/stratified_gain.py``).

Sampling given ``K >= 2`` is a pure function of ``(seed, sample index)`` (the
counter-based generator of :mod:`fastsuper.core.rng`), by one of three rules:

* independent features, one ``p`` for all (``MODE_BINOM``): ``K`` by inverse
  CDF on a table of the law of ``Binomial(n, p)`` conditioned on ``K >= 2``
  (counter ``K_COUNTER``), then a uniform ``K``-subset by Robert Floyd's
  algorithm (:func:`fastsuper.core.laws.draw_active`, counters ``0 .. K-1``).
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
``VALUE_BASE + 2a``).  The per-sample functions are plain ``@njit`` code with
no allocation, so a CUDA kernel can call them.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from fastsuper.core.activations import phi
from fastsuper.core.jit import kernel_njit, njit, parallel_njit
from fastsuper.core.laws import (
    VALUE_BASE,
    draw_active,
    draw_bernoulli_tail,
    draw_value,
)
from fastsuper.core.rng import sample_key, seed_key, uniform
from fastsuper.mc.kernels_cpu import (
    N_STATS,
    ST_COUNT,
    ST_FIRST_BAD,
    ST_GAIN_M2,
    ST_GAIN_MEAN,
    ST_LOSS_M2,
    ST_LOSS_MEAN,
    ST_NONFINITE,
    _sample_loss,
    _z_columns,
    _z_dense,
    csr_room,
    csr_values,
    tile_stats,
    tile_workspace,
)

__all__ = [
    "MODE_BINOM",
    "MODE_PLAIN",
    "MODE_SEQ",
    "binom_ge2_cdf",
    "draw_active_ge2",
    "draw_sample_ge2",
    "stratified_blocks",
]

# sampler modes
MODE_BINOM, MODE_SEQ, MODE_PLAIN = range(3)
#: counter of the uniform that draws K (MODE_BINOM); below every value counter
K_COUNTER = VALUE_BASE - 1
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


# --------------------------------------------------------------------------
# per-sample sampling maths (plain njit: callable from CUDA kernels)


@njit
def _search_cdf(cdf, u):
    """Smallest ``t`` with ``u < cdf[t]`` (``cdf`` non-decreasing, last entry 1)."""
    lo = 0
    hi = cdf.shape[0] - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if u < cdf[mid]:
            hi = mid
        else:
            lo = mid + 1
    return lo


@njit
def _next_active(h, ones, i, n, u):
    """Position of the next active feature at or after ``i`` (inverse survival).

    The largest ``j`` in ``[i, n)`` with ``P(next >= j) > u``, where
    ``P(next >= j) = [ones[j] == ones[i]] exp(h[j] - h[i])``; that survival is
    1 at ``j = i`` and non-increasing, so a binary search finds ``j``.
    """
    thr = h[i] + math.log(u)
    oi = ones[i]
    lo = i  # predicate true
    hi = n  # predicate false (survival 0 past the last feature)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ones[mid] == oi and h[mid] > thr:
            lo = mid
        else:
            hi = mid
    return lo


@njit
def draw_active_ge2(key, mode, n, kfix, pmax, log1mp, thin, p, kcdf, h1, h2, ones, out_idx):
    """Sorted active set of one sample drawn given ``K >= 2``; returns its size.

    ``mode`` is ``MODE_BINOM`` (one ``p``: ``kcdf`` from :func:`binom_ge2_cdf`),
    ``MODE_SEQ`` (one ``p_i`` per feature: ``h1, h2, ones`` from
    :func:`seq_tables`) or ``MODE_PLAIN`` (the plain sampler of
    :func:`fastsuper.core.laws.draw_active`, for laws where every sample has
    ``K >= 2``: exactly ``kfix >= 2`` active, or ``p = 1``).
    """
    if mode == MODE_PLAIN:
        return draw_active(key, n, kfix, pmax, log1mp, thin, p, out_idx)
    if mode == MODE_BINOM:
        k = 2 + _search_cdf(kcdf, uniform(key, K_COUNTER))
        return draw_active(key, n, k, pmax, log1mp, thin, p, out_idx)
    j = _next_active(h2, ones, 0, n, uniform(key, 0))
    out_idx[0] = j
    j = _next_active(h1, ones, j + 1, n, uniform(key, 1))
    out_idx[1] = j
    return draw_bernoulli_tail(key, 2, j, n, pmax, log1mp, thin, p, out_idx, 2)


@njit
def draw_sample_ge2(
    key, mode, n, kfix, pmax, log1mp, thin, p, kcdf, h1, h2, ones, code, support, cum, idx, val
):
    """Active indices (sorted) and values of one sample given ``K >= 2``."""
    count = draw_active_ge2(key, mode, n, kfix, pmax, log1mp, thin, p, kcdf, h1, h2, ones, idx)
    for a in range(count):
        val[a] = draw_value(key, a, code, support, cum)
    return count


# --------------------------------------------------------------------------
# kernels


@kernel_njit
def _z_columns2(A, b, idx, xv, z):
    """``z = b + A[idx[0]] xv[0] + A[idx[1]] xv[1]`` in one pass (the K = 2 case).

    The additions of :func:`fastsuper.mc.kernels_cpu._z_columns` in the same
    order, without its two extra passes over ``z``.
    """
    r0 = A[idx[0]]
    r1 = A[idx[1]]
    x0 = xv[0]
    x1 = xv[1]
    for j in range(z.shape[0]):
        z[j] = (b[j] + r0[j] * x0) + r1[j] * x1


@kernel_njit
def _ge2_block(
    W,
    A,
    b,
    imp,
    act,
    a,
    ia,
    use_cols,
    want_pf,
    skey,
    start,
    lo,
    hi,
    mode,
    n,
    kfix,
    pmax,
    log1mp,
    thin,
    p,
    kcdf,
    h1,
    h2,
    ones,
    code,
    support,
    cum,
    stats,
    row1,
    row2,
):
    """Samples ``lo .. hi-1`` of one block: Welford statistics into ``stats`` (one row).

    A serial function called once per block by :func:`stratified_blocks`
    (compiled on its own, it vectorises better than the body of a ``prange``).
    """
    d = W.shape[0]
    idx = np.empty(n, dtype=np.int64)
    val = np.empty(n, dtype=np.float64)
    xv = np.empty(n, dtype=W.dtype)
    z = np.empty(n, dtype=W.dtype)
    h = np.empty(d, dtype=W.dtype)
    cnt = 0.0
    lm = 0.0
    l2 = 0.0
    gm = 0.0
    g2 = 0.0
    bad = 0.0
    first_bad = -1.0
    for s in range(lo, hi):
        key = sample_key(skey, start + s)
        k = draw_sample_ge2(
            key, mode, n, kfix, pmax, log1mp, thin, p, kcdf, h1, h2, ones, code, support, cum,
            idx, val,
        )  # fmt: skip
        for q in range(k):
            xv[q] = val[q]
        if use_cols:
            if k == 2:  # most samples when E K is small
                _z_columns2(A, b, idx, xv, z)
            else:
                _z_columns(A, b, idx, xv, k, z)
        else:
            _z_dense(W, b, idx, xv, k, h, z)
        loss, x2 = _sample_loss(z, imp, act, a, ia, idx, xv, k, want_pf, row1, row2)
        if not math.isfinite(loss):
            if bad == 0.0:
                first_bad = float(start + s)
            bad += 1.0
            continue
        gain = x2 - loss
        cnt += 1.0
        dl = loss - lm
        lm += dl / cnt
        l2 += dl * (loss - lm)
        dg = gain - gm
        gm += dg / cnt
        g2 += dg * (gain - gm)
    stats[ST_COUNT] = cnt
    stats[ST_LOSS_MEAN] = lm
    stats[ST_LOSS_M2] = l2
    stats[ST_GAIN_MEAN] = gm
    stats[ST_GAIN_M2] = g2
    stats[ST_NONFINITE] = bad
    stats[ST_FIRST_BAD] = first_bad


@kernel_njit
def _ge2_block_tiled(
    P, b, imp, act, a, ia, want_pf, skey, start, lo, hi, sub, mode, n, kfix, pmax, log1mp,
    thin, p, kcdf, h1, h2, ones, code, support, cum, st, row1, row2,
):  # fmt: skip
    """Path "columns_blocked" of :func:`_ge2_block`: ``sub`` samples at a time drawn
    given ``K >= 2`` into CSR rows, their losses from the panels ``P`` of ``A``
    (:func:`fastsuper.mc.kernels_cpu.tile_stats`), statistics into ``st``."""
    m_max = max(1, min(sub, hi - lo))
    bp, ip, zb, ptr, cidx, cval, x2, lsum, cur = tile_workspace(P, b, imp, n, m_max)
    for s0 in range(lo, hi, m_max):
        m = min(m_max, hi - s0)
        e = 0
        ptr[0] = 0
        for s in range(m):
            key = sample_key(skey, start + s0 + s)
            cidx, cval = csr_room(cidx, cval, e, n)
            k = draw_active_ge2(
                key, mode, n, kfix, pmax, log1mp, thin, p, kcdf, h1, h2, ones, cidx[e:]
            )
            e = csr_values(key, k, e, code, support, cum, imp, cidx, cval, x2, s, ptr)
        tile_stats(
            P, bp, ip, zb, act, a, ia, want_pf, imp, n, m, ptr, cidx, cval, x2, lsum, cur,
            start + s0, st, row1, row2,
        )  # fmt: skip


@parallel_njit
def stratified_blocks(
    W,
    A,
    b,
    imp,
    act,
    a,
    ia,
    use_cols,
    want_pf,
    seed,
    start,
    n_samples,
    block,
    sub,
    mode,
    n,
    kfix,
    pmax,
    log1mp,
    thin,
    p,
    kcdf,
    h1,
    h2,
    ones,
    code,
    support,
    cum,
):
    """Per-block loss statistics of samples drawn given ``K >= 2``.

    The layout of :func:`fastsuper.mc.kernels_cpu.mc_blocks` (``stats`` of shape
    (n_blocks, N_STATS), per-feature block sums ``pf1``, ``pf2``), merged by
    :func:`fastsuper.mc.kernels_cpu.merge_block_stats`: each block writes its own
    rows, the blocks are fixed by sample index, so the result is bit-identical
    for any number of threads.  ``sub > 0`` selects path "columns_blocked"
    (``A`` its panels, ``sub`` samples drawn at once); else ``use_cols``
    chooses "columns" (``A = W^T W``) or "dense".
    """
    nb = (n_samples + block - 1) // block
    stats = np.zeros((nb, N_STATS))
    npf = nb if want_pf else 0
    pf1 = np.zeros((npf, n))
    pf2 = np.zeros((npf, n))
    skey = seed_key(seed)
    for bi in numba.prange(nb):
        row1 = pf1[bi] if want_pf else pf1.reshape(-1)
        row2 = pf2[bi] if want_pf else pf2.reshape(-1)
        lo = bi * block
        hi = min(lo + block, n_samples)
        if sub > 0:  # path "columns_blocked": A holds the panels
            stats[bi, ST_FIRST_BAD] = -1.0
            _ge2_block_tiled(
                A, b, imp, act, a, ia, want_pf, skey, start, lo, hi, sub, mode, n, kfix, pmax,
                log1mp, thin, p, kcdf, h1, h2, ones, code, support, cum, stats[bi], row1, row2,
            )  # fmt: skip
        else:
            _ge2_block(
                W, A, b, imp, act, a, ia, use_cols, want_pf, skey, start, lo, hi, mode, n, kfix,
                pmax, log1mp, thin, p, kcdf, h1, h2, ones, code, support, cum, stats[bi], row1,
                row2,
            )  # fmt: skip
    return stats, pf1, pf2


@parallel_njit
def ge2_count_kernel(
    seed, start, n_samples, chunk, counts, mode, n, kfix, pmax, log1mp, thin, p, kcdf, h1, h2, ones
):
    skey = seed_key(seed)
    n_chunks = (n_samples + chunk - 1) // chunk
    for ci in numba.prange(n_chunks):
        idx = np.empty(n, dtype=np.int64)
        lo = ci * chunk
        hi = min(lo + chunk, n_samples)
        for s in range(lo, hi):
            key = sample_key(skey, start + s)
            counts[s] = draw_active_ge2(
                key, mode, n, kfix, pmax, log1mp, thin, p, kcdf, h1, h2, ones, idx
            )


@parallel_njit
def ge2_fill_kernel(
    seed,
    start,
    n_samples,
    chunk,
    indptr,
    indices,
    values,
    mode,
    n,
    kfix,
    pmax,
    log1mp,
    thin,
    p,
    kcdf,
    h1,
    h2,
    ones,
    code,
    support,
    cum,
):
    skey = seed_key(seed)
    n_chunks = (n_samples + chunk - 1) // chunk
    for ci in numba.prange(n_chunks):
        idx = np.empty(n, dtype=np.int64)
        val = np.empty(n, dtype=np.float64)
        lo = ci * chunk
        hi = min(lo + chunk, n_samples)
        for s in range(lo, hi):
            key = sample_key(skey, start + s)
            cnt = draw_sample_ge2(
                key,
                mode,
                n,
                kfix,
                pmax,
                log1mp,
                thin,
                p,
                kcdf,
                h1,
                h2,
                ones,
                code,
                support,
                cum,
                idx,
                val,
            )
            o = indptr[s]
            for q in range(cnt):
                indices[o + q] = idx[q]
                values[o + q] = val[q]


@njit
def loss0_terms(bias, imp, act, a, ia):
    """``I_j phi(b_j)**2`` for every output ``j`` (the k = 0 loss, per feature)."""
    out = np.empty(bias.shape[0])
    for j in range(bias.shape[0]):
        f = phi(bias[j], act, a, ia)
        out[j] = imp[j] * f * f
    return out
