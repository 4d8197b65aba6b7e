"""Compiled kernel of the grouped closed form (THEORY §8), one output row per work item.

:func:`grouped_rows` computes, for every output ``j``, the moments
``E[x_j z_j**m]`` and ``E z_j**(2m)`` of :mod:`fastsuper.exact.grouped` and,
optionally, row ``j`` of ``Gamma = dL/dA`` and ``dL/db_j``: the power sums of
the row by group, the per-group moment/cumulant conversions, the self term,
and the same steps in reverse.  Scratch memory is ``O(groups * m)`` per
thread; the rows are independent, so the result does not depend on threads.
"""

from __future__ import annotations

import numba
import numpy as np

from fastsuper.core.jit import njit, parallel_njit

__all__ = ["cum_adjoint", "cumulants", "grouped_rows", "mom_adjoint", "moments"]


@njit
def moments(kappa, binom, out):
    """``out[r] = M_r = sum_{k=1}^{r} C(r-1, k-1) kappa_k M_{r-k}``, ``M_0 = 1``."""
    out[0] = 1.0
    for r in range(1, kappa.shape[0]):
        acc = 0.0
        for k in range(1, r + 1):
            acc += binom[r - 1, k - 1] * kappa[k] * out[r - k]
        out[r] = acc


@njit
def cumulants(mom, binom, out):
    """``out[r] = kappa_r = M_r - sum_{k=1}^{r-1} C(r-1, k-1) kappa_k M_{r-k}``."""
    out[0] = 0.0
    for r in range(1, mom.shape[0]):
        acc = mom[r]
        for k in range(1, r):
            acc -= binom[r - 1, k - 1] * out[k] * mom[r - k]
        out[r] = acc


@njit
def mom_adjoint(kappa, mom, g_mom, binom, out, work):
    """``out``: gradient in ``kappa`` of ``sum g_mom * moments(kappa)`` (``work``: scratch)."""
    R = kappa.shape[0] - 1
    for r in range(R + 1):
        work[r] = g_mom[r]
        out[r] = 0.0
    for r in range(R, 0, -1):
        for k in range(1, r + 1):
            c = binom[r - 1, k - 1]
            out[k] += c * mom[r - k] * work[r]
            work[r - k] += c * kappa[k] * work[r]


@njit
def cum_adjoint(kappa, mom, g_kappa, binom, out, work):
    """``out``: gradient in the moments of ``sum g_kappa * cumulants(mom)``."""
    R = kappa.shape[0] - 1
    for r in range(R + 1):
        work[r] = g_kappa[r]
        out[r] = 0.0
    for r in range(R, 0, -1):
        out[r] += work[r]
        for k in range(1, r):
            c = binom[r - 1, k - 1]
            work[k] -= c * mom[r - k] * work[r]
            out[r - k] -= c * kappa[k] * work[r]


@parallel_njit
def grouped_rows(
    A, coef, perm, gid, free, partial, q, label, own, bias, mu, binom, m, grad,
    exzm, ez2m, gamma, db,
):  # fmt: skip
    """Moments (and gradient rows) of every output row of the grouped closed form.

    ``A`` (n, n) is ``W.T @ W``; ``coef[r, i]`` the power-sum coefficient of
    feature ``i`` (``kappa_r(x_i)`` when ungrouped); ``perm`` the grouped
    features group by group, ``gid`` their groups, ``free`` the ungrouped
    features; ``partial``, ``q``
    per group; ``label``, ``own`` (``P(x_j active)``), ``bias`` per feature;
    ``mu`` the value-law moments.  Writes ``exzm``, ``ez2m`` and, with
    ``grad``, ``gamma[j] = dL/dA_j.`` (importance 1: the caller scales) and
    ``db[j]``.
    """
    n = A.shape[0]
    G = q.shape[0]
    R = 2 * m
    for j in numba.prange(n):
        ps = np.zeros((G, R + 1))
        mt = np.empty((G, R + 1))
        ms = np.empty((G, R + 1))
        ks = np.empty((G, R + 1))
        kz = np.zeros(R + 1)
        for t in range(perm.shape[0]):  # power sums by group
            i = perm[t]
            a = A[j, i]
            ap = 1.0
            for r in range(1, R + 1):
                ap *= a
                ps[gid[t], r] += ap * coef[r, i]
        for t in range(free.shape[0]):
            i = free[t]
            a = A[j, i]
            ap = 1.0
            for r in range(1, R + 1):
                ap *= a
                kz[r] += ap * coef[r, i]
        for g in range(G):  # moments and cumulants of each group's contribution
            if partial[g]:
                moments(ps[g], binom, mt[g])
                for s in range(1, R + 1):
                    ms[g, s] = q[g] * mt[g, s]
            else:
                for s in range(1, R + 1):
                    ms[g, s] = ps[g, s]
            ms[g, 0] = 1.0
            cumulants(ms[g], binom, ks[g])
            for r in range(1, R + 1):
                kz[r] += ks[g, r]
        kz[1] += bias[j]
        mz = np.empty(R + 1)
        moments(kz, binom, mz)
        # self term: j's own group g0 (or its own term when ungrouped)
        g0 = label[j]
        a = A[j, j]
        ad = np.empty(R + 2)
        ad[0] = 1.0
        for r in range(1, R + 2):
            ad[r] = ad[r - 1] * a
        kr = np.empty(R + 1)
        ku = np.zeros(R + 1)
        is_part = g0 >= 0 and partial[g0]
        for r in range(R + 1):
            kself = ad[r] * coef[r, j] if g0 < 0 else ks[g0, r]
            kr[r] = kz[r] - kself
            if is_part and r > 0:
                ku[r] = ps[g0, r] - ad[r] * coef[r, j]
        kr[0] = 0.0
        mr = np.empty(R + 1)
        moments(kr, binom, mr)
        mu_u = np.empty(R + 1)
        moments(ku, binom, mu_u)
        exs = np.empty(m + 1)
        acc_m = 0.0
        for s in range(m + 1):
            if is_part:
                acc = 0.0
                for t in range(s + 1):
                    acc += binom[s, t] * ad[t] * mu[t + 1] * mu_u[s - t]
                exs[s] = own[j] * acc
            else:
                exs[s] = own[j] * ad[s] * mu[s + 1]
            acc_m += binom[m, s] * exs[s] * mr[m - s]
        exzm[j] = acc_m
        ez2m[j] = mz[R]
        if not grad:
            continue
        # backward (importance 1)
        work = np.empty(R + 1)
        gmz = np.zeros(R + 1)
        gmz[R] = 1.0
        gmr = np.zeros(R + 1)
        gexs = np.empty(m + 1)
        for s in range(m + 1):
            gexs[s] = -2.0 * binom[m, s] * mr[m - s]
            gmr[m - s] += -2.0 * binom[m, s] * exs[s]
        gkr = np.empty(R + 1)
        mom_adjoint(kr, mr, gmr, binom, gkr, work)
        gkz = np.empty(R + 1)
        mom_adjoint(kz, mz, gmz, binom, gkz, work)
        for r in range(R + 1):
            gkz[r] += gkr[r]
        gdiag = 0.0
        gku = np.zeros(R + 1)
        if is_part:
            gmu = np.zeros(R + 1)
            for s in range(m + 1):
                for t in range(s + 1):
                    base = gexs[s] * own[j] * binom[s, t] * mu[t + 1]
                    if t > 0:
                        gdiag += base * t * ad[t - 1] * mu_u[s - t]
                    gmu[s - t] += base * ad[t]
            mom_adjoint(ku, mu_u, gmu, binom, gku, work)
            for r in range(1, R + 1):
                gdiag -= gku[r] * r * ad[r - 1] * coef[r, j]
        else:
            for s in range(1, m + 1):
                gdiag += gexs[s] * own[j] * s * ad[s - 1] * mu[s + 1]
            if g0 < 0:
                for r in range(1, R + 1):
                    gdiag -= gkr[r] * r * ad[r - 1] * coef[r, j]
        gps = np.empty((G, R + 1))
        gks = np.empty(R + 1)
        gms = np.empty(R + 1)
        for g in range(G):
            for r in range(R + 1):
                gks[r] = gkz[r] - (gkr[r] if g == g0 else 0.0)
            cum_adjoint(ks[g], ms[g], gks, binom, gms, work)
            gms[0] = 0.0
            if partial[g]:
                for r in range(R + 1):
                    gms[r] *= q[g]
                mom_adjoint(ps[g], mt[g], gms, binom, gps[g], work)
            else:
                for r in range(R + 1):
                    gps[g, r] = gms[r]
        if is_part:
            for r in range(R + 1):
                gps[g0, r] += gku[r]
        for t in range(perm.shape[0]):  # Gamma_ji = sum_r g_r r A_ji**(r-1) c_r(i), Horner
            i = perm[t]
            g = gid[t]
            a = A[j, i]
            acc = 0.0
            for r in range(R, 0, -1):
                acc = acc * a + r * gps[g, r] * coef[r, i]
            gamma[j, i] = acc
        for t in range(free.shape[0]):
            i = free[t]
            a = A[j, i]
            acc = 0.0
            for r in range(R, 0, -1):
                acc = acc * a + r * gkz[r] * coef[r, i]
            gamma[j, i] = acc
        gamma[j, j] += gdiag
        db[j] = gkz[1]
