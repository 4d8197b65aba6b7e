"""CPU kernels: ``parallel=True`` Numba code over blocks of samples.

Reductions follow one rule: each parallel work item (a *block* of samples)
writes its own row of a results array, and rows are merged serially in block
order afterwards.  There is no shared accumulator, and the blocks are fixed by
sample index, so results are bit-identical for any number of threads.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from ._jit import kernel_njit, njit, parallel_njit
from .activations import phi_inplace
from .rng import sample_key, seed_key
from .sampling import draw_sample

#: columns of the per-block statistics array
ST_COUNT, ST_LOSS_MEAN, ST_LOSS_M2, ST_GAIN_MEAN, ST_GAIN_M2, ST_NONFINITE, ST_FIRST_BAD = range(7)
N_STATS = 7


@kernel_njit
def _z_columns(A, b, idx, xv, k, z):
    """z = b + sum_q A[idx[q], :] * xv[q]  (A = W^T W is symmetric)."""
    n = z.shape[0]
    for j in range(n):
        z[j] = b[j]
    for q in range(k):
        row = A[idx[q]]
        x = xv[q]
        for j in range(n):
            z[j] += row[j] * x


@kernel_njit
def _z_dense(W, b, idx, xv, k, h, z):
    """h = W x over active entries, then z = W^T h + b."""
    d, n = W.shape
    for r in range(d):
        h[r] = 0
    for q in range(k):
        i = idx[q]
        x = xv[q]
        for r in range(d):
            h[r] += W[r, i] * x
    for j in range(n):
        z[j] = b[j]
    for r in range(d):
        wr = W[r]
        hr = h[r]
        for j in range(n):
            z[j] += wr[j] * hr


@kernel_njit
def _sample_loss(z, imp, act, a, ia, idx, xv, k, want_pf, pf_loss, pf_loss2):
    """Loss and sum_j I_j x_j^2 of one sample whose pre-activations are z.

    With ``want_pf`` the per-feature terms are added to ``pf_loss`` and their
    squares to ``pf_loss2`` (both float64).
    """
    n = z.shape[0]
    phi_inplace(z, act, a, ia)
    loss = 0.0
    if want_pf:
        for j in range(n):
            f = np.float64(z[j])
            t = imp[j] * (f * f)
            loss += t
            pf_loss[j] += t
            pf_loss2[j] += t * t
    else:
        for j in range(n):
            f = np.float64(z[j])
            loss += imp[j] * (f * f)
    x2 = 0.0
    for q in range(k):
        i = idx[q]
        x = np.float64(xv[q])
        f = np.float64(z[i])
        sq = imp[i] * x * x
        x2 += sq
        corr = imp[i] * (x * x - 2.0 * x * f)
        loss += corr
        if want_pf:
            old = imp[i] * f * f
            new = imp[i] * (x - f) * (x - f)
            pf_loss[i] += corr
            pf_loss2[i] += new * new - old * old
    return loss, x2


@parallel_njit
def mc_blocks(
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
    n,
    kfix,
    pmax,
    log1mp,
    thin,
    p,
    code,
    support,
    cum,
):
    """Monte-Carlo loss statistics of samples ``start .. start+n_samples-1``.

    Returns ``stats`` of shape (n_blocks, N_STATS) (Welford count/mean/M2 of
    loss and gain per block, non-finite count, first bad sample index) and,
    with ``want_pf``, per-block sums of each feature's loss term and of its
    square, shape (n_blocks, n) each.
    """
    d = W.shape[0]
    nb = (n_samples + block - 1) // block
    stats = np.zeros((nb, N_STATS))
    npf = nb if want_pf else 0
    pf1 = np.zeros((npf, n))
    pf2 = np.zeros((npf, n))
    skey = seed_key(seed)
    for bi in numba.prange(nb):
        idx = np.empty(n, dtype=np.int64)
        val = np.empty(n, dtype=np.float64)
        xv = np.empty(n, dtype=W.dtype)
        z = np.empty(n, dtype=W.dtype)
        h = np.empty(d, dtype=W.dtype)
        row1 = pf1[bi] if want_pf else pf1.reshape(-1)
        row2 = pf2[bi] if want_pf else pf2.reshape(-1)
        lo = bi * block
        hi = min(lo + block, n_samples)
        cnt = 0.0
        lm = 0.0
        l2 = 0.0
        gm = 0.0
        g2 = 0.0
        bad = 0.0
        first_bad = -1.0
        for s in range(lo, hi):
            key = sample_key(skey, start + s)
            k = draw_sample(key, n, kfix, pmax, log1mp, thin, p, code, support, cum, idx, val)
            for q in range(k):
                xv[q] = val[q]
            if use_cols:
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
        stats[bi, ST_COUNT] = cnt
        stats[bi, ST_LOSS_MEAN] = lm
        stats[bi, ST_LOSS_M2] = l2
        stats[bi, ST_GAIN_MEAN] = gm
        stats[bi, ST_GAIN_M2] = g2
        stats[bi, ST_NONFINITE] = bad
        stats[bi, ST_FIRST_BAD] = first_bad
    return stats, pf1, pf2


@njit
def merge_block_stats(stats):
    """Merge per-block Welford statistics serially (Chan et al.), in block order.

    Returns (count, loss mean, loss M2, gain mean, gain M2, non-finite count,
    first bad sample index or -1).
    """
    cnt = 0.0
    lm = 0.0
    l2 = 0.0
    gm = 0.0
    g2 = 0.0
    bad = 0.0
    first = -1.0
    for r in range(stats.shape[0]):
        nb = stats[r, ST_COUNT]
        if stats[r, ST_NONFINITE] > 0:
            if first < 0:
                first = stats[r, ST_FIRST_BAD]
            bad += stats[r, ST_NONFINITE]
        if nb == 0:
            continue
        tot = cnt + nb
        dl = stats[r, ST_LOSS_MEAN] - lm
        lm += dl * nb / tot
        l2 += stats[r, ST_LOSS_M2] + dl * dl * cnt * nb / tot
        dg = stats[r, ST_GAIN_MEAN] - gm
        gm += dg * nb / tot
        g2 += stats[r, ST_GAIN_M2] + dg * dg * cnt * nb / tot
        cnt = tot
    return cnt, lm, l2, gm, g2, bad, first


# --------------------------------------------------------------------------
# forward pass


@parallel_njit
def apply_phi_rows(Z, act, a, ia):
    """Apply the activation to a 2-D array in place, parallel over rows."""
    for r in numba.prange(Z.shape[0]):
        phi_inplace(Z[r], act, a, ia)


@parallel_njit
def forward_csr(W, b, act, a, ia, indptr, indices, values, out):
    """x_hat of every sample of a CSR batch into ``out`` (N, n)."""
    d = W.shape[0]
    n_samples = indptr.shape[0] - 1
    for s in numba.prange(n_samples):
        h = np.zeros(d, dtype=W.dtype)
        lo = indptr[s]
        k = indptr[s + 1] - lo
        idx = indices[lo : lo + k]
        xv = values[lo : lo + k]
        z = out[s]
        _z_dense(W, b, idx, xv, k, h, z)
        phi_inplace(z, act, a, ia)
