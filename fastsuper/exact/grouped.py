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
runs the same steps backwards.  Cost: ``O(n**2 m)`` for the power sums plus
``O(n G m**2)`` for the conversions (``G`` groups), float64.  The compiled
kernel :func:`fastsuper.exact.kernels_grouped.grouped_rows` does both per
output row, in parallel, with ``O(G m)`` scratch per thread;
:func:`grouped_reference` is the same in NumPy over blocks of output rows
(``config.GROUPED_BLOCK_ELEMS``), written out in :func:`_backward`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from fastsuper.core import config
from fastsuper.core.blas import single_thread_if_small
from fastsuper.core.laws import SparseInputs
from fastsuper.core.model import Model
from fastsuper.exact.kernels_grouped import grouped_rows

__all__ = [
    "GroupedTerms",
    "check_gradient_finite",
    "grouped_loss_grad",
    "grouped_reference",
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
    partial = np.array([k != "exclusive" for k in spec.kinds], dtype=np.bool_)
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


class _Block(NamedTuple):
    """The forward state of rows ``lo .. hi - 1`` (``B`` outputs; ``R = 2m``, ``G`` groups)."""

    lo: int
    hi: int
    A: np.ndarray  # (B, n) rows of W.T @ W, diagonal included
    ps: np.ndarray  # (R + 1, B, G) power sums P_r(j, G)
    mt: np.ndarray  # (R + 1, B, G) moments of T given the gate (partial groups)
    ms: np.ndarray  # (R + 1, B, G) moments of S_Gj
    ks: np.ndarray  # (R + 1, B, G) cumulants of S_Gj
    kz: np.ndarray  # (R + 1, B) cumulants of z_j
    mz: np.ndarray  # (R + 1, B) moments of z_j
    kr: np.ndarray  # (R + 1, B) cumulants of R_j = z_j - S_G(j)j
    mr: np.ndarray  # (R + 1, B) moments of R_j
    ku: np.ndarray  # (R + 1, B) cumulants of U (partial groups; 0 elsewhere)
    mu_u: np.ndarray  # (R + 1, B) moments of U
    ad: np.ndarray  # (R + 2, B) A_jj**r
    exs: np.ndarray  # (m + 1, B) E[x_j S**s]
    exzm: np.ndarray  # (B,)
    ez2m: np.ndarray  # (B,)


class GroupedTerms(NamedTuple):
    """Per-feature moments of the grouped closed form (float64 arrays of shape (n,))."""

    W: np.ndarray
    b: np.ndarray | None
    ex2: np.ndarray  # E x_j**2
    exzm: np.ndarray  # E[x_j z_j**m]
    ez2m: np.ndarray  # E z_j**(2m)
    imp: np.ndarray  # I_j


class _Setup(NamedTuple):
    m: int
    binom: np.ndarray
    mu: np.ndarray  # (R + 2,) value-law moments
    lay: _Layout
    W: np.ndarray
    b: np.ndarray | None


def _setup(model: Model, inputs: SparseInputs, m: int) -> _Setup:
    R = 2 * m
    binom = binomials(R)
    mu = np.array([inputs.law.moment(r) for r in range(R + 2)], dtype=np.float64)
    W = np.ascontiguousarray(model.W, dtype=np.float64)
    b = None if model.b is None else np.asarray(model.b, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        lay = _layout(inputs, mu, binom, R)
    return _Setup(m, binom, mu, lay, W, b)


def _row_blocks(n: int, n_groups: int, m: int):
    """``(lo, hi)`` of the row blocks (``config.GROUPED_BLOCK_ELEMS`` entries each, about)."""
    rows = max(1, int(config.GROUPED_BLOCK_ELEMS) // ((2 * m + 1) * (n_groups + n)))
    return [(lo, min(lo + rows, n)) for lo in range(0, n, rows)]


def _self_terms(st: _Setup, lo, hi, a, ks, ps):
    """Cumulants of j's own contribution, of U, and ``E[x_j S**s]`` (THEORY §8, self term)."""
    lay, m, binom, mu = st.lay, st.m, st.binom, st.mu
    R = 2 * m
    B = hi - lo
    j = np.arange(B)
    g = lay.label[lo:hi]
    coef, own = lay.coef[:, lo:hi], lay.own[lo:hi]
    grouped = g >= 0
    ad = np.empty((R + 2, B))
    ad[0] = 1.0
    for r in range(1, R + 2):
        ad[r] = ad[r - 1] * a
    kself = ad[: R + 1] * coef  # ungrouped j: A_jj**r kappa_r(x_j)
    kself[:, grouped] = ks[:, j[grouped], g[grouped]]
    part = grouped & lay.partial[np.maximum(g, 0)]
    ku = np.zeros((R + 1, B))
    ku[:, part] = ps[:, j[part], g[part]] - ad[: R + 1, part] * coef[:, part]
    ku[0] = 0.0
    mu_u = moments_from_cumulants(ku, binom)
    exs = np.empty((m + 1, B))
    for s in range(m + 1):
        exs[s] = own * ad[s] * mu[s + 1]  # exclusive and ungrouped
        if part.any():
            acc = np.zeros(part.sum())
            for t in range(s + 1):
                acc += binom[s, t] * ad[t, part] * mu[t + 1] * mu_u[s - t, part]
            exs[s, part] = own[part] * acc  # own = q_G r_j
    return ad, kself, ku, mu_u, exs


def _forward_block(st: _Setup, A: np.ndarray, lo: int, hi: int) -> _Block:
    """The forward moments of output rows ``lo .. hi - 1``; ``A`` is ``W.T @ W``."""
    lay, m, binom = st.lay, st.m, st.binom
    R = 2 * m
    Ab = A[lo:hi]
    Ap = Ab[:, lay.perm]
    Af = Ab[:, lay.free]
    ps = np.zeros((R + 1, hi - lo, lay.q.shape[0]))
    kz = np.zeros((R + 1, hi - lo))
    for r in range(1, R + 1):
        ps[r] = np.add.reduceat(Ap**r * lay.coef[r, lay.perm], lay.starts, axis=1)
        kz[r] = (Af**r) @ lay.coef[r, lay.free]
    mt = moments_from_cumulants(ps, binom)
    ms = np.where(lay.partial[None, None, :], mt, ps)
    ms[1:] *= np.where(lay.partial, lay.q, 1.0)
    ms[0] = 1.0
    ks = cumulants_from_moments(ms, binom)
    kz += ks.sum(axis=2)
    if st.b is not None:
        kz[1] += st.b[lo:hi]
    mz = moments_from_cumulants(kz, binom)
    a = A[np.arange(lo, hi), np.arange(lo, hi)]
    ad, kself, ku, mu_u, exs = _self_terms(st, lo, hi, a, ks, ps)
    kr = kz - kself
    mr = moments_from_cumulants(kr, binom)
    exzm = np.zeros(hi - lo)
    for s in range(m + 1):
        exzm += binom[m, s] * exs[s] * mr[m - s]
    return _Block(lo, hi, Ab, ps, mt, ms, ks, kz, mz, kr, mr, ku, mu_u, ad, exs, exzm,
                  mz[R].copy())  # fmt: skip


def _run(model: Model, inputs: SparseInputs, m: int, grad: bool):
    """Forward (and backward) over row blocks: ``(GroupedTerms, dL/dW, dL/db)``."""
    st = _setup(model, inputs, m)
    n = inputs.n
    exzm, ez2m = np.zeros(n), np.zeros(n)
    imp = np.asarray(inputs.importance, dtype=np.float64)
    dW = np.zeros_like(st.W) if grad else None
    db = np.zeros(n) if grad else None
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        A = st.W.T @ st.W
        for lo, hi in _row_blocks(n, st.lay.q.shape[0], m):
            blk = _forward_block(st, A, lo, hi)
            exzm[lo:hi], ez2m[lo:hi] = blk.exzm, blk.ez2m
            if grad:
                gamma, db[lo:hi] = _backward(st, blk, imp[lo:hi])
                dW += st.W[:, lo:hi] @ gamma  # W (Gamma + Gamma.T), one row block of Gamma
                dW[:, lo:hi] += st.W @ gamma.T
        ex2 = st.lay.own * st.mu[2]
    return GroupedTerms(st.W, st.b, ex2, exzm, ez2m, imp), dW, db


def grouped_reference(model: Model, inputs: SparseInputs, m: int, grad: bool = True):
    """``(GroupedTerms, dL/dW, dL/db)`` by NumPy over row blocks (the kernel's reference).

    The same mathematics as :func:`grouped_loss_grad`, vectorised over blocks
    of outputs instead of compiled per output; ``dL/dW`` and ``dL/db`` are
    ``None`` without ``grad``.  Arguments are not checked.
    """
    return _run(model, inputs, m, grad)


def _kernel(model: Model, inputs: SparseInputs, m: int, grad: bool):
    """``(GroupedTerms, dL/dW, dL/db)`` by :func:`fastsuper.exact.kernels_grouped.grouped_rows`."""
    st = _setup(model, inputs, m)
    lay = st.lay
    n = inputs.n
    imp = np.asarray(inputs.importance, dtype=np.float64)
    gid = lay.label[lay.perm]
    bias = np.zeros(n) if st.b is None else st.b
    exzm, ez2m, db = np.zeros(n), np.zeros(n), np.zeros(n)
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        with single_thread_if_small(float(n) * n * st.W.shape[0]):
            A = st.W.T @ st.W
        gamma = np.empty((n, n)) if grad else np.zeros((1, 1))
        grouped_rows(
            A, np.ascontiguousarray(lay.coef), lay.perm, gid, lay.free, lay.partial, lay.q,
            lay.label, lay.own, bias, st.mu, st.binom, m, grad, exzm, ez2m, gamma, db,
        )  # fmt: skip
        terms = GroupedTerms(st.W, st.b, lay.own * st.mu[2], exzm, ez2m, imp)
        if not grad:
            return terms, None, None
        gamma *= imp[:, None]
        with single_thread_if_small(float(n) * n * st.W.shape[0]):
            dW = st.W @ (gamma + gamma.T)
    return terms, dW, db * imp


def grouped_terms(model: Model, inputs: SparseInputs, m: int):
    """``(state, (ex2, exzm, ez2m, importance))`` of the grouped closed form (checked args)."""
    fw, _, _ = _kernel(model, inputs, m, grad=False)
    return fw, (fw.ex2, fw.exzm, fw.ez2m, fw.imp)


def _backward_self(st: _Setup, blk: _Block, gexs, gks_self):
    """Gradient of the self terms in ``A_jj`` (returned) and in the partial power sums."""
    lay, m, binom, mu, ad = st.lay, st.m, st.binom, st.mu, blk.ad
    R = 2 * m
    lo, hi = blk.lo, blk.hi
    g = lay.label[lo:hi]
    coef, own = lay.coef[:, lo:hi], lay.own[lo:hi]
    grouped = g >= 0
    part = grouped & lay.partial[np.maximum(g, 0)]
    gdiag = np.zeros(hi - lo)
    for s in range(1, m + 1):  # exclusive and ungrouped: own * A_jj**s * mu_{s+1}
        gdiag += np.where(part, 0.0, gexs[s] * own * s * ad[s - 1] * mu[s + 1])
    free = ~grouped  # ungrouped j: kself = A_jj**r kappa_r(x_j)
    for r in range(1, R + 1):
        gdiag[free] += gks_self[r, free] * r * ad[r - 1, free] * coef[r, free]
    gku = np.zeros((R + 1, hi - lo))
    if part.any():
        gmu = np.zeros((R + 1, part.sum()))
        for s in range(m + 1):
            for t in range(s + 1):
                base = gexs[s, part] * own[part] * binom[s, t] * mu[t + 1]
                if t > 0:
                    gdiag[part] += base * t * ad[t - 1, part] * blk.mu_u[s - t, part]
                gmu[s - t] += base * ad[t, part]
        gku[:, part] = _mom_adjoint(blk.ku[:, part], blk.mu_u[:, part], gmu, binom)
        for r in range(1, R + 1):  # ku = ps - A_jj**r c_r(j)
            gdiag[part] -= gku[r, part] * r * ad[r - 1, part] * coef[r, part]
    return gdiag, gku, part


def _backward(st: _Setup, blk: _Block, imp: np.ndarray):
    """``(Gamma rows, dL/db rows)`` of a row block: the forward steps in reverse."""
    m, binom, lay = st.m, st.binom, st.lay
    R = 2 * m
    B = blk.hi - blk.lo
    gmz = np.zeros((R + 1, B))
    gmz[R] = imp
    gexs = np.empty((m + 1, B))
    gmr = np.zeros((R + 1, B))
    for s in range(m + 1):
        gexs[s] = -2.0 * imp * binom[m, s] * blk.mr[m - s]
        gmr[m - s] += -2.0 * imp * binom[m, s] * blk.exs[s]
    gkr = _mom_adjoint(blk.kr, blk.mr, gmr, binom)
    gkz = _mom_adjoint(blk.kz, blk.mz, gmz, binom) + gkr
    gdiag, gku, part = _backward_self(st, blk, gexs, -gkr)
    # every group of row j gets gkz; j's own group also its self-term share -gkr
    j = np.arange(B)
    g = lay.label[blk.lo : blk.hi]
    grouped = g >= 0
    gks = np.repeat(gkz[:, :, None], lay.q.shape[0], axis=2)
    gks[:, j[grouped], g[grouped]] -= gkr[:, grouped]
    gms = _cum_adjoint(blk.ks, blk.ms, gks, binom)
    gms[1:] *= np.where(lay.partial, lay.q, 1.0)
    gms[0] = 0.0
    gps = np.where(lay.partial[None, None, :], _mom_adjoint(blk.ps, blk.mt, gms, binom), gms)
    gps[:, j[part], g[part]] += gku[:, part]
    # Gamma_ji = sum_r g_r(j, column i) r A_ji**(r-1) c_r(i)
    cols = lay.label[lay.perm]
    gamma = np.zeros_like(blk.A)
    apow = np.ones_like(blk.A)
    gcol = np.empty_like(blk.A)
    for r in range(1, R + 1):
        gcol[:, lay.free] = gkz[r][:, None]
        gcol[:, lay.perm] = gps[r][:, cols]
        gamma += gcol * (r * apow) * lay.coef[r][None, :]
        apow = apow * blk.A
    gamma[j, blk.lo + j] += gdiag
    return gamma, gkz[1].copy()


def grouped_loss_grad(model: Model, inputs: SparseInputs, m: int):
    """``(state, dL/dW, dL/db)`` of the grouped closed form (arguments checked)."""
    return _kernel(model, inputs, m, grad=True)


def check_gradient_finite(func: str, dW: np.ndarray, db: np.ndarray) -> None:
    """Raise FloatingPointError if an entry of the exact gradient overflowed float64."""
    for name, arr in (("dL/dW", dW), ("dL/db", db)):
        if not np.all(np.isfinite(arr)):
            raise FloatingPointError(
                f"{func}: float64 overflow in the gradient {name}; rescale W or b"
            )
