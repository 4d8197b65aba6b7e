"""Exact loss and gradient through moment tensors (THEORY §3), for a small hidden dimension.

The power sums ``S[r, j] = sum_{i != j} kappa_r(x_i) (w_j . w_i)**r`` and the
gradient's sums ``sum_i c_i (w_j . w_i)**(r - 1) w_i`` are polynomials in
``w_j`` whose coefficients are moments of the columns: with the monomials
``w**beta`` of degree ``r - 1`` in the ``d`` coordinates and their multinomial
coefficients ``D_beta``, ``(w . v)**(r - 1) = sum_beta D_beta w**beta v**beta``, so

    V_r(w) = sum_i kappa_r(x_i) (w . w_i)**(r - 1) w_i = T_r (D * w**beta),
    T_r[k, beta] = sum_i kappa_r(x_i) w_ik w_i**beta,

and ``S[r, j] = w_j . V_r(w_j) - kappa_r(x_j) |w_j|**(2r)`` (the term ``i = j``
taken out).  The work is ``O(n d C)`` with ``C = binom(d + R - 1, R - 1)``
monomials (``R = 2m``), against ``O(n**2 d)`` for the kernels that visit every
pair (:mod:`fastsuper.exact.kernels_fused`): far less for large ``n`` and
small ``d``.  Every step is a matrix product of the ``C x cols`` monomials of
one block of columns (formed in cache, never all at once):

1. ``T_r`` for every order ``r``: the blocks' products ``M_block (W_block *
   kappa_r)^T``, summed per group;
2. per block: ``V_r`` of its columns, the power sums, the per-feature chain
   rule (:func:`fastsuper.exact.kernels_fused.row_terms`: the forward terms and
   ``coef[r, j] = dL/dS[r, j] * r``), the gradient's first half ``sum_r
   coef[r, j] V_r(w_j)`` and the moments of the second, ``U_r[k, beta] =
   sum_i coef[r, i] w_ik w_i**beta``;
3. per block: the second half ``sum_r kappa_r(x_j) U_r (D * w_j**beta)``.

Blocks are dealt to :data:`~fastsuper.core.config.EXACT_FUSED_GROUPS` groups
(block ``q`` to group ``q mod G``), the parallel work items; each group has its
own moment sums, added in group order, so the result does not depend on the
number of threads.  The products run on one BLAS thread inside the parallel
loop (:class:`fastsuper.ExactEvaluator` limits BLAS around the call).
Memory: ``O(G C d)`` for the moments and ``O(C cols)`` per group.  The values
agree with the pairwise kernels' to round-off, not bit for bit.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from fastsuper.core import config
from fastsuper.core.jit import borrow, kernel_njit, parallel_njit
from fastsuper.core.vecmath import wide_vectors
from fastsuper.exact.kernels_fused import row_terms, squared_norms

__all__ = ["monomial_count", "monomial_tables", "tensor_cost", "tensor_loss_grad"]


def monomial_tables(d: int, degree: int):
    """The monomials of degrees ``0..degree`` in ``d`` coordinates, as slabs of a recurrence.

    Returns ``(start, coef)``.  The monomials of degree ``r`` are sorted by
    their smallest coordinate: those whose smallest coordinate is ``k`` are the
    rows ``start[r, k]:start[r, k + 1]``, and they are ``v[k]`` times the rows
    ``start[r - 1, k]:start[r - 1, d]`` of degree ``r - 1`` (the monomials with
    no coordinate below ``k``), in the same order; ``start[r, d]`` is the
    first row of degree ``r + 1`` (row 0 is the monomial 1).  ``coef[a]`` is
    the multinomial coefficient of monomial ``a``: ``(u . v)**r = sum_a
    coef[a] u**a v**a`` over the monomials of degree ``r``.

    Examples
    --------
    >>> start, coef = monomial_tables(2, 2)
    >>> start.tolist(), coef.tolist()
    ([[0, 0, 1], [1, 2, 3], [3, 5, 6]], [1.0, 1.0, 1.0, 1.0, 2.0, 1.0])
    """
    first, mult, coef = [d], [0], [1.0]
    start = np.zeros((degree + 1, d + 1), dtype=np.int64)
    start[0, d] = 1
    for r in range(1, degree + 1):
        lo, hi = start[r - 1, 0] if r > 1 else 0, start[r - 1, d]
        for k in range(d):
            start[r, k] = len(first)
            for p in range(lo, hi):
                if first[p] >= k:
                    mk = mult[p] + 1 if first[p] == k else 1
                    first.append(k)
                    mult.append(mk)
                    coef.append(coef[p] * r / mk)
        start[r, d] = len(first)
    return start, np.array(coef, dtype=np.float64)


def monomial_count(d: int, m: int) -> float:
    """``binom(d + 2m, 2m)``, the monomials of degree at most ``2m`` in ``d`` coordinates (as a
    float; ``inf`` past ``2**62``)."""
    k = min(d, 2 * m)
    count = 1
    for i in range(1, k + 1):  # exact at every step: binom(d + 2m - k + i, i)
        count = count * (d + 2 * m - k + i) // i
        if count > 2**62:
            return math.inf
    return float(count)


def tensor_cost(n: int, d: int, m: int) -> float:
    """The cost of one evaluation by :func:`tensor_loss_grad` in the units of
    :func:`fastsuper.exact.kernels_prepared.exact_flops`:
    :data:`~fastsuper.core.config.EXACT_TENSOR_COST` per feature and monomial of degree at
    most ``2m``, and :data:`~fastsuper.core.config.EXACT_TENSOR_FEATURE_COST` per
    feature."""
    per_feature = monomial_count(d, m) * config.EXACT_TENSOR_COST
    return float(n) * (per_feature + config.EXACT_TENSOR_FEATURE_COST)


@kernel_njit
def _generate(x, start, top, M):
    """The monomials of ``x`` (length ``d``) of degrees ``0..top`` into ``M``."""
    wide_vectors()
    d = x.shape[0]
    M = borrow(M)
    M[0] = 1.0
    for r in range(1, top + 1):
        pe = start[r - 1, d]
        for k in range(d):
            ps, cs = start[r - 1, k], start[r, k]
            xk = x[k]
            src, dst = M[ps:pe], M[cs : cs + pe - ps]
            for i in range(pe - ps):
                dst[i] = xk * src[i]


@kernel_njit
def _accumulate(x0, x1, start, M0, M1, w0, w1, mask, acc):
    """``acc[a] += w0[r] x0**a + w1[r] x1**a`` for the monomials ``a`` of the degrees ``r``
    with ``mask[r]``, two features at a time (the top degree formed here from the one below
    in ``M0``, ``M1``)."""
    wide_vectors()
    d, R = x0.shape[0], start.shape[0] - 1
    M0, M1, acc = borrow(M0), borrow(M1), borrow(acc)
    for r in range(1, R):
        if mask[r]:
            c0, c1, lo, hi = w0[r], w1[r], start[r, 0], start[r, d]
            dst, s0, s1 = acc[lo:hi], M0[lo:hi], M1[lo:hi]
            for i in range(hi - lo):
                dst[i] += c0 * s0[i] + c1 * s1[i]
    if mask[R]:
        pe = start[R - 1, d]
        for k in range(d):
            ps, cs = start[R - 1, k], start[R, k]
            c0, c1 = w0[R] * x0[k], w1[R] * x1[k]
            dst, s0, s1 = acc[cs : cs + pe - ps], M0[ps:pe], M1[ps:pe]
            for i in range(pe - ps):
                dst[i] += c0 * s0[i] + c1 * s1[i]


@kernel_njit
def _values(x0, x1, start, M0, M1, Dv, mask, out):
    """``out[q, r] = sum_a Dv[a] xq**a`` over the monomials of degree ``r`` (the degrees with
    ``mask[r]``; the top degree formed from the one below), for two features ``x0``,
    ``x1``."""
    wide_vectors()
    d, R = x0.shape[0], start.shape[0] - 1
    M0, M1, Dv = borrow(M0), borrow(M1), borrow(Dv)
    for r in range(1, R + 1):
        out[0, r] = 0.0
        out[1, r] = 0.0
    for r in range(1, R):
        if mask[r]:
            lo, hi = start[r, 0], start[r, d]
            c, v0, v1 = Dv[lo:hi], M0[lo:hi], M1[lo:hi]
            s0 = s1 = 0.0
            for i in range(hi - lo):
                s0 += c[i] * v0[i]
                s1 += c[i] * v1[i]
            out[0, r], out[1, r] = s0, s1
    if mask[R]:
        pe = start[R - 1, d]
        for k in range(d):
            ps, cs = start[R - 1, k], start[R, k]
            c, v0, v1 = Dv[cs : cs + pe - ps], M0[ps:pe], M1[ps:pe]
            s0 = s1 = 0.0
            for i in range(pe - ps):
                s0 += c[i] * v0[i]
                s1 += c[i] * v1[i]
            out[0, R] += x0[k] * s0
            out[1, R] += x1[k] * s1


@kernel_njit(inline="always")
def _slab(jc, dt, du, c, u, jp, mp, xk, m_, mode, assign):
    """One slab of :func:`_reverse`: the children's adjoints ``t`` (``mode`` 0: their own
    terms only, the top degree; 1: children and own terms; 2: children only) into their
    parents' (``jp``, set with ``assign``, else added) and ``sum t * mp`` returned."""
    s = 0.0
    if mode == 0 and assign:
        for i in range(m_):
            t = dt[i] * c + du[i] * u
            jp[i] = t * xk
            s += t * mp[i]
    elif mode == 0:
        for i in range(m_):
            t = dt[i] * c + du[i] * u
            jp[i] += t * xk
            s += t * mp[i]
    elif mode == 1 and assign:
        for i in range(m_):
            t = jc[i] + (dt[i] * c + du[i] * u)
            jp[i] = t * xk
            s += t * mp[i]
    elif mode == 1:
        for i in range(m_):
            t = jc[i] + (dt[i] * c + du[i] * u)
            jp[i] += t * xk
            s += t * mp[i]
    elif assign:
        for i in range(m_):
            t = jc[i]
            jp[i] = t * xk
            s += t * mp[i]
    else:
        for i in range(m_):
            t = jc[i]
            jp[i] += t * xk
            s += t * mp[i]
    return s


@kernel_njit
def _reverse(x, start, M, Dt, Du, cr, kr, J, g):
    """``g = grad Q(x)`` for ``Q(v) = sum_a (Dt[a] cr[r] + Du[a] kr[r]) v**a`` (``r`` the
    degree of ``a``), by reverse accumulation over the recurrence of the monomials ``M``
    (degrees below the top); ``J`` holds the adjoints.  The first slab of each degree
    (smallest coordinate 0) has every monomial of the degree below as a parent: it sets
    their adjoints."""
    wide_vectors()
    d, R = x.shape[0], start.shape[0] - 1
    M, Dt, Du, J = borrow(M), borrow(Dt), borrow(Du), borrow(J)
    for k in range(d):
        g[k] = 0.0
    for r in range(R, 1, -1):
        c, u = cr[r], kr[r]
        mode = 0 if r == R else (1 if c != 0.0 or u != 0.0 else 2)
        pe = start[r - 1, d]
        for k in range(d):
            ps, cs = start[r - 1, k], start[r, k]
            m_ = pe - ps
            jc, dt, du = J[cs : cs + m_], Dt[cs : cs + m_], Du[cs : cs + m_]
            g[k] += _slab(jc, dt, du, c, u, J[ps:pe], M[ps:pe], x[k], m_, mode, k == 0)
    c, u = cr[1], kr[1]
    for k in range(d):  # degree 1: the parent is the monomial 1
        a = start[1, k]
        g[k] += J[a] + (Dt[a] * c + Du[a] * u)


@kernel_njit
def _diag_power(x, e):
    """``x**e`` for an integer ``e >= 0`` by repeated products."""
    y = 1.0
    for _ in range(e):
        y *= x
    return y


@kernel_njit
def _scaled(t, mcoef, start, over_r):
    """``t[a] * mcoef[a]`` (divided by the degree of ``a`` with ``over_r``)."""
    out = np.zeros(t.shape[0])
    d = start.shape[1] - 1
    for r in range(1, start.shape[0]):
        for a in range(start[r, 0], start[r, d]):
            out[a] = t[a] * mcoef[a] / r if over_r else t[a] * mcoef[a]
    return out


@kernel_njit
def _sum_groups(parts):
    """``sum_g parts[g]``, in group order."""
    out = np.zeros(parts.shape[1])
    for g in range(parts.shape[0]):
        out += parts[g]
    return out


@kernel_njit
def _column(W, j, x):
    """``x = W[:, j]``."""
    for k in range(W.shape[0]):
        x[k] = W[k, j]


@kernel_njit
def _pair(W, j, two, start, xs, Ms):
    """Features ``j`` and ``j + 1`` (a zero feature without ``two``) into ``xs`` and their
    monomials below the top degree into ``Ms``."""
    top = start.shape[0] - 2
    _column(W, j, xs[0])
    if two:
        _column(W, j + 1, xs[1])
    else:
        xs[1][:] = 0.0
    _generate(xs[0], start, top, Ms[0])
    _generate(xs[1], start, top, Ms[1])


@kernel_njit
def _pair_weights(src, j, two, out):
    """``out[0] = src[:, j]``, ``out[1] = src[:, j + 1]`` (zeros without ``two``)."""
    for r in range(src.shape[0]):
        out[0, r] = src[r, j]
        out[1, r] = src[r, j + 1] if two else 0.0


@kernel_njit
def _grad_column(x, j, start, M, Dt, Du, kx, coef, g_diag, diag, orders, bufs, dW):
    """Column ``j`` of the gradient: the gradient of the moment polynomials at ``x = w_j``
    and the diagonal terms ``2 (g_diag[j] - sum_r coef[r, j] kappa_r(x_j) |w_j|**(2r - 2))
    w_j``."""
    J, gr, cr, kr = bufs
    for r in range(cr.shape[0]):
        cr[r], kr[r] = coef[r, j], kx[r, j]
    _reverse(x, start, M, Dt, Du, cr, kr, J, gr)
    e = 0.0
    for r in orders:
        e += coef[r, j] * kx[r, j] * _diag_power(diag[j], r - 1)
    e = 2.0 * (g_diag[j] - e)
    for k in range(x.shape[0]):
        dW[k, j] = gr[k] + e * x[k]


@kernel_njit
def _block_moments(W, lo, hi, start, weights, mask, bufs, acc):
    """``acc[a] += sum_j weights[r, j] w_j**a`` over the features ``lo:hi`` (two at a time)."""
    W, start, weights, mask, acc = (
        borrow(W),
        borrow(start),
        borrow(weights),
        borrow(mask),
        borrow(acc),
    )
    Ms, xs, wts = borrow(bufs[0]), borrow(bufs[1]), borrow(bufs[2])  # no counting per feature
    for j in range(lo, hi, 2):
        _pair(W, j, j + 1 < hi, start, xs, Ms)
        _pair_weights(weights, j, j + 1 < hi, wts)
        _accumulate(xs[0], xs[1], start, Ms[0], Ms[1], wts[0], wts[1], mask, acc)


@kernel_njit
def _block_forward(W, lo, hi, start, Dv, mask, orders, kx, diag, rows, S, bufs, out):
    """The power sums ``S[:, lo:hi]`` from the moments ``Dv``, the per-feature chain rule
    (``rows``: the arguments of :func:`fastsuper.exact.kernels_fused.row_terms` after ``S``;
    ``out``: its outputs ``terms``, ``coef``, ``db``, ``g_diag``) and, where ``out`` has
    room for a gradient (``want_grad``), the moments of ``coef`` into ``out[4]``."""
    b, has_b, binom, ex, imp, want_grad = rows
    b, binom, ex, imp = borrow(b), borrow(binom), borrow(ex), borrow(imp)
    terms, coef, db, g_diag, acc = out
    terms, coef, db, g_diag, acc = (
        borrow(terms),
        borrow(coef),
        borrow(db),
        borrow(g_diag),
        borrow(acc),
    )
    W, start, Dv, mask = borrow(W), borrow(start), borrow(Dv), borrow(mask)
    kx, diag, S, orders = borrow(kx), borrow(diag), borrow(S), borrow(orders)
    Ms, xs, wts, vals, work = bufs
    Ms, xs, wts, vals, work = borrow(Ms), borrow(xs), borrow(wts), borrow(vals), borrow(work)
    for j in range(lo, hi, 2):
        two = j + 1 < hi
        _pair(W, j, two, start, xs, Ms)
        _values(xs[0], xs[1], start, Ms[0], Ms[1], Dv, mask, vals)
        for jj in range(j, j + 2 if two else j + 1):
            for r in orders:
                S[r, jj] = vals[jj - j, r] - kx[r, jj] * _diag_power(diag[jj], r)
            row_terms(jj, S, b, has_b, diag[jj], binom, ex, imp, work, terms, coef, db, g_diag)
        if want_grad:
            _pair_weights(coef, j, two, wts)
            _accumulate(xs[0], xs[1], start, Ms[0], Ms[1], wts[0], wts[1], mask, acc)


@kernel_njit
def _block_grad(W, lo, hi, start, Dt, Du, kx, coef, g_diag, diag, orders, bufs, dW):
    """The gradient's columns ``lo:hi`` (:func:`_grad_column`)."""
    W, start, Dt, Du, kx = borrow(W), borrow(start), borrow(Dt), borrow(Du), borrow(kx)
    coef, g_diag, diag, dW = borrow(coef), borrow(g_diag), borrow(diag), borrow(dW)
    orders = borrow(orders)
    M, x, J, gr, cr, kr = bufs
    M, x = borrow(M), borrow(x)
    inner = (borrow(J), borrow(gr), borrow(cr), borrow(kr))
    top = start.shape[0] - 2
    for j in range(lo, hi):
        _column(W, j, x)
        _generate(x, start, top, M)
        _grad_column(x, j, start, M, Dt, Du, kx, coef, g_diag, diag, orders, inner, dW)


@parallel_njit
def tensor_loss_grad(W, b, has_b, binom, ex, kx, imp, orders, m, want_grad, terms, dW, db,
                     tables, cols, groups):  # fmt: skip
    """Exact forward terms and gradient of the loss through moment tensors.

    Arguments as :func:`fastsuper.exact.kernels_fused.fused_loss_grad`, with
    ``tables`` the ``(start, coef)`` of :func:`monomial_tables` ``(d, 2m)``
    and ``cols`` the columns per block
    (:data:`~fastsuper.core.config.EXACT_TENSOR_COLS`).
    """
    d, n = W.shape
    R = 2 * m
    start, mcoef = tables
    C = start[R, d]
    mask = np.zeros(R + 1, dtype=np.bool_)
    for r in orders:
        mask[r] = True
    diag = squared_norms(W)
    nblocks = (n + cols - 1) // cols
    parts = np.zeros((groups, C))
    for g in numba.prange(groups):  # the moments of the kappa_r(x_i)
        bufs = (np.empty((2, C)), np.empty((2, d)), np.empty((2, R + 1)))
        for q in range(g, nblocks, groups):
            _block_moments(W, q * cols, min(n, (q + 1) * cols), start, kx, mask, bufs, parts[g])
    Dv = _scaled(_sum_groups(parts), mcoef, start, False)
    parts[:, :] = 0.0
    S = np.zeros((R + 1, n))
    coef = np.zeros((R + 1, n))
    g_diag = np.zeros(n)
    rows = (b, has_b, binom, ex, imp, want_grad)
    for g in numba.prange(groups):
        bufs = (np.empty((2, C)), np.empty((2, d)), np.empty((2, R + 1)), np.empty((2, R + 1)),
                np.empty((4, R + 1)))  # fmt: skip
        out = (terms, coef, db, g_diag, parts[g])
        for q in range(g, nblocks, groups):
            lo, hi = q * cols, min(n, (q + 1) * cols)
            _block_forward(W, lo, hi, start, Dv, mask, orders, kx, diag, rows, S, bufs, out)
    if not want_grad:
        return
    Dt = _scaled(Dv, np.ones(C), start, True)
    Du = _scaled(_sum_groups(parts), mcoef, start, True)
    for g in numba.prange(groups):
        bufs = (np.empty(C), np.empty(d), np.empty(C), np.empty(d), np.empty(R + 1),
                np.empty(R + 1))  # fmt: skip
        for q in range(g, nblocks, groups):
            lo, hi = q * cols, min(n, (q + 1) * cols)
            _block_grad(W, lo, hi, start, Dt, Du, kx, coef, g_diag, diag, orders, bufs, dW)
