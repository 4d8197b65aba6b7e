"""Exact loss, gain and gradient of ``power`` models under grouped input laws (THEORY §8).

Groups (:mod:`fastsuper.core.groups`) are independent of each other and of
the ungrouped features, so for output ``j`` the cumulants of
``z_j = b_j + sum_i A_ji x_i`` add over them::

    kappa_r(z_j) = [r = 1] b_j + sum_{i ungrouped} A_ji**r kappa_r(x_i)
                   + sum_G kappa_r(S_Gj),        S_Gj = sum_{i in G} A_ji x_i.

One group's contribution has moments in closed form (``s >= 1``):

* exclusive (weights ``w_i``): ``E S**s = q_G mu_s sum_{i in G} w_i A_ji**s``;
* partial (in-group probabilities ``r_i``; correlated is ``r_i = 1``): given
  the gate, ``T = sum_{i in G} A_ji eps_i xi_i`` has cumulants
  ``sum_{i in G} A_ji**r kappa_r(eps_i xi_i)``, and ``E S**s = q_G E T**s``;

and its cumulants follow by the moment/cumulant recursions of THEORY §3.  Both
kinds are "power sums" ``P_r(j, G) = sum_{i in G} A_ji**r c_r(i)`` with a
per-feature coefficient ``c_r(i)`` (``q_G w_i mu_r``, or ``kappa_r(eps_i
xi_i)``), followed by a per-(j, G) conversion.  The self term conditions on
feature ``j``'s own group ``G``: with ``R_j = z_j - S_Gj`` (cumulants: the total
minus the group's),

    E[x_j z_j**m] = sum_s C(m, s) E[x_j S_Gj**s] E[R_j**(m - s)],

``E[x_j S**s] = q_G w_j A_jj**s mu_{s+1}`` (exclusive; an ungrouped feature is
a group of one with ``q w = p_j``) or ``q_G r_j sum_t C(s, t) A_jj**t
mu_{t+1} E[U**(s - t)]`` (partial, ``U = T - A_jj eps_j xi_j``).  The gradient
runs the same steps backwards (:func:`_backward`).  Cost: ``O(n**2 m)`` for the
power sums plus ``O(n G m**2)`` for the conversions (``G`` groups); NumPy,
float64.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from fastsuper.core.laws import SparseInputs
from fastsuper.core.model import Model

__all__ = [
    "GroupedForward",
    "check_gradient_finite",
    "grouped_forward",
    "grouped_loss_grad",
    "grouped_terms",
]


# the recursions of THEORY §3 (as in fastsuper.exact.api, which builds on this module)


def binomials(r_max: int) -> np.ndarray:
    """Pascal's triangle ``C[r, k]`` for ``0 <= k <= r <= r_max`` in float64."""
    c = np.zeros((r_max + 1, r_max + 1))
    c[:, 0] = 1.0
    for r in range(1, r_max + 1):
        c[r, 1 : r + 1] = c[r - 1, :r] + c[r - 1, 1 : r + 1]
    return c


def cumulants_from_moments(moments: np.ndarray, binom: np.ndarray) -> np.ndarray:
    """``kappa_r = M_r - sum_{k=1}^{r-1} C(r-1, k-1) kappa_k M_{r-k}`` along axis 0."""
    kappa = np.zeros_like(moments)
    for r in range(1, moments.shape[0]):
        acc = moments[r].copy()
        for k in range(1, r):
            acc -= binom[r - 1, k - 1] * kappa[k] * moments[r - k]
        kappa[r] = acc
    return kappa


def moments_from_cumulants(kappa: np.ndarray, binom: np.ndarray) -> np.ndarray:
    """``M_r = sum_{k=1}^{r} C(r-1, k-1) kappa_k M_{r-k}``, ``M_0 = 1``, along axis 0."""
    moments = np.zeros_like(kappa)
    moments[0] = 1.0
    for r in range(1, kappa.shape[0]):
        acc = np.zeros_like(kappa[0])
        for k in range(1, r + 1):
            acc += binom[r - 1, k - 1] * kappa[k] * moments[r - k]
        moments[r] = acc
    return moments


def _mom_adjoint(kappa, moments, g_moments, binom):
    """Gradient in ``kappa`` of ``sum g_moments * moments_from_cumulants(kappa)``."""
    gm = g_moments.copy()
    gk = np.zeros_like(kappa)
    for r in range(kappa.shape[0] - 1, 0, -1):
        for k in range(1, r + 1):
            c = binom[r - 1, k - 1]
            gk[k] += c * moments[r - k] * gm[r]
            gm[r - k] += c * kappa[k] * gm[r]
    return gk


def _cum_adjoint(kappa, moments, g_kappa, binom):
    """Gradient in ``moments`` of ``sum g_kappa * cumulants_from_moments(moments)``."""
    gk = g_kappa.copy()
    gm = np.zeros_like(moments)
    for r in range(moments.shape[0] - 1, 0, -1):
        gm[r] += gk[r]
        for k in range(1, r):
            c = binom[r - 1, k - 1]
            gk[k] -= c * moments[r - k] * gk[r]
            gm[r - k] -= c * kappa[k] * gk[r]
    return gm


class _Layout(NamedTuple):
    """Per-feature coefficients and the group structure (``R = 2m``)."""

    coef: np.ndarray  # (R + 1, n): c_r(i) of the power sums (kappa_r(x_i) when ungrouped)
    perm: np.ndarray  # grouped features, group by group
    starts: np.ndarray  # start of each group in perm
    free: np.ndarray  # ungrouped features
    label: np.ndarray  # (n,) group of each feature, -1 if ungrouped
    partial: np.ndarray  # (G,) bool: partial (or correlated) group
    q: np.ndarray  # (G,) gate probabilities
    own: np.ndarray  # (n,) q_G r_j, q_G w_j or p_j: P(x_j active)


def _layout(inputs: SparseInputs, mu: np.ndarray, binom: np.ndarray, R: int) -> _Layout:
    spec = inputs.groups
    n = inputs.n
    coef = np.zeros((R + 1, n))
    free = np.flatnonzero(spec.label < 0)
    # ungrouped features: cumulants of x_i (moments p_i mu_r)
    ex = inputs.p[None, free] * mu[: R + 1, None]
    ex[0] = 1.0
    coef[:, free] = cumulants_from_moments(ex, binom)
    partial = np.array([k != "exclusive" for k in spec.kinds])
    for g, mem in enumerate(spec.members):
        if partial[g]:  # cumulants of eps_i xi_i (moments r_i mu_s)
            e = spec.r[None, mem] * mu[: R + 1, None]
            e[0] = 1.0
            coef[:, mem] = cumulants_from_moments(e, binom)
        else:
            coef[:, mem] = spec.q[g] * spec.weights[None, mem] * mu[: R + 1, None]
    coef[0] = 0.0
    perm = np.concatenate(spec.members)
    starts = np.cumsum([0] + [mem.size for mem in spec.members[:-1]])
    return _Layout(coef, perm, starts, free, spec.label, partial, spec.q, inputs.p.copy())


class GroupedForward(NamedTuple):
    """The forward state of the grouped closed form (float64; ``R = 2m``, ``G`` groups)."""

    m: int
    binom: np.ndarray
    mu: np.ndarray  # (R + 2,) value-law moments
    lay: _Layout
    W: np.ndarray
    b: np.ndarray | None
    A: np.ndarray  # (n, n) W.T @ W, diagonal included
    ps: np.ndarray  # (R + 1, n, G) power sums P_r(j, G)
    mt: np.ndarray  # (R + 1, n, G) moments of T given the gate (partial groups)
    ms: np.ndarray  # (R + 1, n, G) moments of S_Gj
    ks: np.ndarray  # (R + 1, n, G) cumulants of S_Gj
    kz: np.ndarray  # (R + 1, n) cumulants of z_j
    mz: np.ndarray  # (R + 1, n) moments of z_j
    kself: np.ndarray  # (R + 1, n) cumulants of j's own group's (or term's) contribution
    kr: np.ndarray  # (R + 1, n) cumulants of R_j = z_j - S_G(j)j
    mr: np.ndarray  # (R + 1, n) moments of R_j
    ku: np.ndarray  # (R + 1, n) cumulants of U (partial groups; 0 elsewhere)
    mu_u: np.ndarray  # (R + 1, n) moments of U
    ad: np.ndarray  # (R + 2, n) A_jj**r
    exs: np.ndarray  # (m + 1, n) E[x_j S**s]
    ex2: np.ndarray
    exzm: np.ndarray
    ez2m: np.ndarray
    imp: np.ndarray


def _self_terms(lay, m, R, binom, mu, A, ks, ps):
    """Cumulants of j's own contribution, of U, and ``E[x_j S**s]`` (THEORY §8, self term)."""
    n = A.shape[0]
    j = np.arange(n)
    g = lay.label
    grouped = g >= 0
    a = np.diagonal(A).copy()
    ad = np.empty((R + 2, n))
    ad[0] = 1.0
    for r in range(1, R + 2):
        ad[r] = ad[r - 1] * a
    kself = ad[: R + 1] * lay.coef  # ungrouped j: A_jj**r kappa_r(x_j)
    kself[:, grouped] = ks[:, j[grouped], g[grouped]]
    part = grouped & lay.partial[np.maximum(g, 0)]
    ku = np.zeros((R + 1, n))
    ku[:, part] = ps[:, j[part], g[part]] - ad[: R + 1, part] * lay.coef[:, part]
    ku[0] = 0.0
    mu_u = moments_from_cumulants(ku, binom)
    exs = np.empty((m + 1, n))
    for s in range(m + 1):
        exs[s] = lay.own * ad[s] * mu[s + 1]  # exclusive and ungrouped
        if part.any():
            qr = lay.own[part]  # q_G r_j
            acc = np.zeros(part.sum())
            for t in range(s + 1):
                acc += binom[s, t] * ad[t, part] * mu[t + 1] * mu_u[s - t, part]
            exs[s, part] = qr * acc
    return ad, kself, ku, mu_u, exs


def grouped_forward(model: Model, inputs: SparseInputs, m: int) -> GroupedForward:
    """The forward moments of the grouped closed form (arguments already checked)."""
    R = 2 * m
    binom = binomials(R)
    mu = np.array([inputs.law.moment(r) for r in range(R + 2)], dtype=np.float64)
    W = np.ascontiguousarray(model.W, dtype=np.float64)
    n = W.shape[1]
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        lay = _layout(inputs, mu, binom, R)
        A = W.T @ W
        Ap = A[:, lay.perm]
        Af = A[:, lay.free]
        G = lay.q.shape[0]
        ps = np.zeros((R + 1, n, G))
        kz = np.zeros((R + 1, n))
        for r in range(1, R + 1):
            ps[r] = np.add.reduceat(Ap**r * lay.coef[r, lay.perm], lay.starts, axis=1)
            kz[r] = (Af**r) @ lay.coef[r, lay.free]
        mt = moments_from_cumulants(ps, binom)
        ms = np.where(lay.partial[None, None, :], mt, ps)
        ms[1:] *= np.where(lay.partial, lay.q, 1.0)
        ms[0] = 1.0
        ks = cumulants_from_moments(ms, binom)
        kz += ks.sum(axis=2)
        if model.b is not None:
            kz[1] += np.asarray(model.b, dtype=np.float64)
        mz = moments_from_cumulants(kz, binom)
        ad, kself, ku, mu_u, exs = _self_terms(lay, m, R, binom, mu, A, ks, ps)
        kr = kz - kself
        mr = moments_from_cumulants(kr, binom)
        exzm = np.zeros(n)
        for s in range(m + 1):
            exzm += binom[m, s] * exs[s] * mr[m - s]
        ez2m = mz[R].copy()
        ex2 = lay.own * mu[2]
    imp = np.asarray(inputs.importance, dtype=np.float64)
    return GroupedForward(
        m, binom, mu, lay, W, model.b, A, ps, mt, ms, ks, kz, mz, kself, kr, mr, ku, mu_u, ad, exs,
        ex2, exzm, ez2m, imp,
    )  # fmt: skip


def grouped_terms(model: Model, inputs: SparseInputs, m: int):
    """``(ex2, exzm, ez2m, importance)`` of the grouped closed form (see ``moment_terms``)."""
    fw = grouped_forward(model, inputs, m)
    return fw, (fw.ex2, fw.exzm, fw.ez2m, fw.imp)


def _backward_self(fw: GroupedForward, gexs, gks_self):
    """Gradient of the self terms in ``A_jj`` (returned) and in the partial power sums."""
    lay, m, binom, mu, ad = fw.lay, fw.m, fw.binom, fw.mu, fw.ad
    R = 2 * m
    n = ad.shape[1]
    g = lay.label
    grouped = g >= 0
    part = grouped & lay.partial[np.maximum(g, 0)]
    gdiag = np.zeros(n)
    for s in range(1, m + 1):  # exclusive and ungrouped: own * A_jj**s * mu_{s+1}
        gdiag += np.where(part, 0.0, gexs[s] * lay.own * s * ad[s - 1] * mu[s + 1])
    free = ~grouped  # ungrouped j: kself = A_jj**r kappa_r(x_j)
    for r in range(1, R + 1):
        gdiag[free] += gks_self[r, free] * r * ad[r - 1, free] * lay.coef[r, free]
    gku = np.zeros((R + 1, n))
    if part.any():
        gmu = np.zeros((R + 1, part.sum()))
        own = lay.own[part]
        for s in range(m + 1):
            for t in range(s + 1):
                base = gexs[s, part] * own * binom[s, t] * mu[t + 1]
                if t > 0:
                    gdiag[part] += base * t * ad[t - 1, part] * fw.mu_u[s - t, part]
                gmu[s - t] += base * ad[t, part]
        gku[:, part] = _mom_adjoint(fw.ku[:, part], fw.mu_u[:, part], gmu, binom)
        for r in range(1, R + 1):  # ku = ps - A_jj**r c_r(j)
            gdiag[part] -= gku[r, part] * r * ad[r - 1, part] * lay.coef[r, part]
    return gdiag, gku, part


def _backward(fw: GroupedForward):
    """Exact ``(dL/dW, dL/db)`` of the grouped loss: the forward steps in reverse."""
    m, binom, lay, A = fw.m, fw.binom, fw.lay, fw.A
    R = 2 * m
    n = A.shape[0]
    imp = fw.imp
    gmz = np.zeros((R + 1, n))
    gmz[R] = imp
    gexs = np.empty((m + 1, n))
    gmr = np.zeros((R + 1, n))
    for s in range(m + 1):
        gexs[s] = -2.0 * imp * binom[m, s] * fw.mr[m - s]
        gmr[m - s] += -2.0 * imp * binom[m, s] * fw.exs[s]
    gkr = _mom_adjoint(fw.kr, fw.mr, gmr, binom)
    gkz = _mom_adjoint(fw.kz, fw.mz, gmz, binom) + gkr
    gks_self = -gkr
    gdiag, gku, part = _backward_self(fw, gexs, gks_self)
    # every group of row j gets gkz; j's own group also its self-term share
    G = lay.q.shape[0]
    j = np.arange(n)
    g = lay.label
    grouped = g >= 0
    gks = np.repeat(gkz[:, :, None], G, axis=2)
    gks[:, j[grouped], g[grouped]] += gks_self[:, grouped]
    gms = _cum_adjoint(fw.ks, fw.ms, gks, binom)
    qfac = np.where(lay.partial, lay.q, 1.0)
    gms[1:] *= qfac
    gms[0] = 0.0
    gps = np.where(lay.partial[None, None, :], _mom_adjoint(fw.ps, fw.mt, gms, binom), gms)
    gps[:, j[part], g[part]] += gku[:, part]
    # Gamma_ji = sum_r g_r(j, col i) r A_ji**(r-1) c_r(i)
    gamma = np.zeros((n, n))
    apow = np.ones((n, n))
    gcol = np.empty((n, n))
    for r in range(1, R + 1):
        gcol[:, lay.free] = gkz[r][:, None]
        gcol[:, lay.perm] = gps[r][:, g[lay.perm]]
        gamma += gcol * (r * apow) * lay.coef[r][None, :]
        apow = apow * A
    gamma[j, j] += gdiag
    dW = fw.W @ (gamma + gamma.T)
    return dW, gkz[1].copy()


def grouped_loss_grad(model: Model, inputs: SparseInputs, m: int):
    """``(forward state, dL/dW, dL/db)`` of the grouped closed form (arguments checked)."""
    fw = grouped_forward(model, inputs, m)
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        dW, db = _backward(fw)
    return fw, dW, db


def check_gradient_finite(func: str, dW: np.ndarray, db: np.ndarray) -> None:
    """Raise FloatingPointError if an entry of the exact gradient overflowed float64."""
    for name, arr in (("dL/dW", dW), ("dL/db", db)):
        if not np.all(np.isfinite(arr)):
            raise FloatingPointError(
                f"{func}: float64 overflow in the gradient {name}; rescale W or b"
            )
