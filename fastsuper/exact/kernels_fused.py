"""Fused, tiled CPU kernel of the exact loss and gradient (THEORY §3) for large ``n``.

:mod:`fastsuper.exact.kernels_cpu` reads the off-diagonal ``A = W^T W``
(``n x n``, formed beforehand by one matrix product) twice from memory.  Here
``A`` is never formed, and its symmetry is used: the rows are cut into blocks
of :data:`~fastsuper.core.config.EXACT_FUSED_ROWS`, and block ``J`` visits
the columns from its own first row on (``A[J, j0:]``) in tiles of
:data:`~fastsuper.core.config.EXACT_FUSED_COLS`; entries on and below the
diagonal are zeroed, so every pair ``i < j`` is seen once.  One tile of ``A``
is a small matrix product ``W[:, J]^T W[:, I]`` that stays in cache.

1. Sweep 1: the power sums ``S[r, j] = sum_{i != j} A_ji**r kappa_r(x_i)``,
   each power of a tile's entry serving its row (``S[:, J]``) and its column
   (a per-group accumulator of ``S[:, I]``);
2. the per-feature chain rule of :func:`fastsuper.exact.api._backward` gives
   ``coef[r, j]`` once every power sum is complete;
3. sweep 2 forms the tiles again and on them the symmetric
   ``Gamma_ji + Gamma_ij`` (one Horner chain over the orders), and adds
   ``(Gamma + Gamma^T)_JI W[:, I]^T`` to the block's rows of ``(dL/dW)^T`` and
   its transpose times ``W[:, J]^T`` to a per-group accumulator of all rows;
   the diagonal ``2 Gamma_jj W[:, j]`` is added last.

Row blocks are dealt to :data:`~fastsuper.core.config.EXACT_FUSED_GROUPS`
groups (block ``k`` to group ``k mod G``), the parallel work items; each group
has its own accumulators, and they are added in group order, so the result
does not depend on the number of threads.  The tile products are BLAS calls
small enough to run on one BLAS thread inside the parallel loop
(:data:`~fastsuper.core.config.BLAS_SINGLE_THREAD_MNK`).  Memory:
``O(G n (d + m))`` for the accumulators plus two tiles per group.  The sums
run in another order than those of :mod:`fastsuper.exact.kernels_cpu`: the
values agree to round-off, not bit for bit.
"""

from __future__ import annotations

import numba
import numpy as np

from fastsuper.core.jit import kernel_njit, parallel_njit

__all__ = ["fused_loss_grad"]


@kernel_njit
def _row_terms(j, S, b, has_b, diag_j, binom, ex, imp, m, terms, coef, db, g_diag):
    """Per-feature chain rule of row ``j``: forward terms, ``coef[:, j]``, ``db[j]``, ``g_diag[j]``.

    ``S[:, j]`` holds the power sums (the cumulants of ``y_j``, without ``b``).
    """
    R = 2 * m
    ky = np.empty(R + 1)
    ky[0] = 0.0
    for r in range(1, R + 1):
        ky[r] = S[r, j]
    if has_b:
        ky[1] += b[j]
    my = np.empty(R + 1)  # moments of y_j from its cumulants
    my[0] = 1.0
    for r in range(1, R + 1):
        acc = 0.0
        for k in range(1, r + 1):
            acc += binom[r - 1, k - 1] * ky[k] * my[r - k]
        my[r] = acc
    ad = np.empty(R + 1)  # A_jj**r
    ad[0] = 1.0
    for r in range(1, R + 1):
        ad[r] = ad[r - 1] * diag_j
    ez2m = 0.0
    for r in range(R + 1):
        ez2m += binom[R, r] * ad[r] * ex[r, j] * my[R - r]
    exzm = 0.0
    for r in range(m + 1):
        exzm += binom[m, r] * ad[r] * ex[r + 1, j] * my[m - r]
    terms[0, j] = ex[2, j]
    terms[1, j] = exzm
    terms[2, j] = ez2m
    g_mom = np.zeros(R + 1)
    gd = 0.0
    for r in range(R + 1):
        g_mom[R - r] += binom[R, r] * ad[r] * ex[r, j]
        if r >= 1:
            gd += binom[R, r] * r * ad[r - 1] * ex[r, j] * my[R - r]
    for r in range(m + 1):
        g_mom[m - r] -= 2.0 * binom[m, r] * ad[r] * ex[r + 1, j]
        if r >= 1:
            gd -= 2.0 * binom[m, r] * r * ad[r - 1] * ex[r + 1, j] * my[m - r]
    g_diag[j] = gd * imp[j]
    for r in range(1, R + 1):
        acc = 0.0
        for s in range(r, R + 1):
            acc += binom[s, r] * (g_mom[s] * imp[j]) * my[s - r]
        coef[r, j] = r * acc
        if r == 1:
            db[j] = acc


@kernel_njit(inline="always")
def _sums6_pair(t0, t1, two, j, kx, k1, k2, k3, k4, k5, k6, c1, c2, c3, c4, c5, c6, Srow):
    """:func:`_sums_tile` for ``R = 6`` on the two rows ``t0``, ``t1`` (features ``j``,
    ``j + 1``; without ``two``, ``t1`` is ``t0`` again and only row ``j`` counts).

    Every power of an entry is formed in registers once and serves both its
    row (``k*``: the columns' cumulants) and its column (``c*``: the columns'
    running sums, ``+= power * cumulant of the row``).
    """
    p1, p2, p3, p4, p5, p6 = kx[1, j], kx[2, j], kx[3, j], kx[4, j], kx[5, j], kx[6, j]
    q1 = q2 = q3 = q4 = q5 = q6 = 0.0
    if two:
        q1, q2, q3 = kx[1, j + 1], kx[2, j + 1], kx[3, j + 1]
        q4, q5, q6 = kx[4, j + 1], kx[5, j + 1], kx[6, j + 1]
    a1 = a2 = a3 = a4 = a5 = a6 = 0.0
    b1 = b2 = b3 = b4 = b5 = b6 = 0.0
    for ii in range(t0.shape[0]):
        x = t0[ii]
        x2 = x * x
        x3 = x2 * x
        x4 = x2 * x2
        x5 = x2 * x3
        x6 = x3 * x3
        y = t1[ii]
        y2 = y * y
        y3 = y2 * y
        y4 = y2 * y2
        y5 = y2 * y3
        y6 = y3 * y3
        a1 += x * k1[ii]
        a2 += x2 * k2[ii]
        a3 += x3 * k3[ii]
        a4 += x4 * k4[ii]
        a5 += x5 * k5[ii]
        a6 += x6 * k6[ii]
        b1 += y * k1[ii]
        b2 += y2 * k2[ii]
        b3 += y3 * k3[ii]
        b4 += y4 * k4[ii]
        b5 += y5 * k5[ii]
        b6 += y6 * k6[ii]
        c1[ii] += x * p1 + y * q1
        c2[ii] += x2 * p2 + y2 * q2
        c3[ii] += x3 * p3 + y3 * q3
        c4[ii] += x4 * p4 + y4 * q4
        c5[ii] += x5 * p5 + y5 * q5
        c6[ii] += x6 * p6 + y6 * q6
    Srow[1, j] += a1
    Srow[2, j] += a2
    Srow[3, j] += a3
    Srow[4, j] += a4
    Srow[5, j] += a5
    Srow[6, j] += a6
    if two:
        Srow[1, j + 1] += b1
        Srow[2, j + 1] += b2
        Srow[3, j + 1] += b3
        Srow[4, j + 1] += b4
        Srow[5, j + 1] += b5
        Srow[6, j + 1] += b6


@kernel_njit(inline="always")
def _sums6_even_pair(t0, t1, two, j, kx, k2, k4, k6, c2, c4, c6, Srow):
    """:func:`_sums6_pair` when the odd cumulants vanish everywhere (a symmetric value law)."""
    p2, p4, p6 = kx[2, j], kx[4, j], kx[6, j]
    q2 = q4 = q6 = 0.0
    if two:
        q2, q4, q6 = kx[2, j + 1], kx[4, j + 1], kx[6, j + 1]
    a2 = a4 = a6 = 0.0
    b2 = b4 = b6 = 0.0
    for ii in range(t0.shape[0]):
        x = t0[ii]
        x2 = x * x
        x4 = x2 * x2
        x6 = x4 * x2
        y = t1[ii]
        y2 = y * y
        y4 = y2 * y2
        y6 = y4 * y2
        a2 += x2 * k2[ii]
        a4 += x4 * k4[ii]
        a6 += x6 * k6[ii]
        b2 += y2 * k2[ii]
        b4 += y4 * k4[ii]
        b6 += y6 * k6[ii]
        c2[ii] += x2 * p2 + y2 * q2
        c4[ii] += x4 * p4 + y4 * q4
        c6[ii] += x6 * p6 + y6 * q6
    Srow[2, j] += a2
    Srow[4, j] += a4
    Srow[6, j] += a6
    if two:
        Srow[2, j + 1] += b2
        Srow[4, j + 1] += b4
        Srow[6, j + 1] += b6


@kernel_njit(inline="always")
def _zero_lower(T, j0, i0):
    """Zero the entries ``T[jj, ii]`` of the tile ``A[j0:, i0:]`` with ``i0 + ii <= j0 + jj``."""
    rows, cols = T.shape
    if i0 - j0 >= rows:
        return
    for jj in range(rows):
        for ii in range(min(cols, j0 + jj - i0 + 1)):
            T[jj, ii] = 0.0


@kernel_njit
def _sums_tile(T, j0, i0, kx, R, even, Srow, Scol):
    """Add the power sums of the tile ``T = A[j0:, i0:]`` to its rows and its columns.

    ``Srow[r, j] += sum_i T_ji**r kx[r, i]`` for its rows ``j`` and
    ``Scol[r, i] += sum_j T_ji**r kx[r, j]`` for its columns ``i``.  The
    tile's entries on and below the diagonal (``i <= j``) are zeroed first
    (:func:`_zero_lower`), so that every pair ``i < j`` counts once.
    ``even``: the odd cumulants vanish everywhere.
    """
    rows, cols = T.shape
    _zero_lower(T, j0, i0)
    if R == 6:
        i1 = i0 + cols
        k2, k4, k6 = kx[2, i0:i1], kx[4, i0:i1], kx[6, i0:i1]
        c2, c4, c6 = Scol[2, i0:i1], Scol[4, i0:i1], Scol[6, i0:i1]
        if even:
            for jj in range(0, rows, 2):
                two = jj + 1 < rows
                t1 = T[jj + 1] if two else T[jj]
                _sums6_even_pair(T[jj], t1, two, j0 + jj, kx, k2, k4, k6, c2, c4, c6, Srow)
            return
        k1, k3, k5 = kx[1, i0:i1], kx[3, i0:i1], kx[5, i0:i1]
        c1, c3, c5 = Scol[1, i0:i1], Scol[3, i0:i1], Scol[5, i0:i1]
        for jj in range(0, rows, 2):
            two = jj + 1 < rows
            t1 = T[jj + 1] if two else T[jj]
            _sums6_pair(T[jj], t1, two, j0 + jj, kx, k1, k2, k3, k4, k5, k6, c1, c2, c3, c4, c5,
                        c6, Srow)  # fmt: skip
        return
    pw = np.empty(cols)
    for jj in range(rows):
        t = T[jj]
        j = j0 + jj
        for ii in range(cols):
            pw[ii] = t[ii]
        for r in range(1, R + 1):
            if r > 1:
                for ii in range(cols):
                    pw[ii] *= t[ii]
            kr = kx[r, i0 : i0 + cols]
            cr = Scol[r, i0 : i0 + cols]
            kj = kx[r, j]
            s = 0.0
            for ii in range(cols):
                u = pw[ii]
                s += u * kr[ii]
                cr[ii] += u * kj
            Srow[r, j] += s


@kernel_njit
def _horner_step(g, t, a, kr, b, er, step):
    """``g = g * t**step + (a * kr + b * er)`` elementwise (one vectorised pass)."""
    if step == 1:
        for ii in range(g.shape[0]):
            g[ii] = g[ii] * t[ii] + (a * kr[ii] + b * er[ii])
    elif step == 2:
        for ii in range(g.shape[0]):
            u = t[ii]
            g[ii] = g[ii] * (u * u) + (a * kr[ii] + b * er[ii])
    else:
        for ii in range(g.shape[0]):
            u = t[ii]
            v = u
            for _ in range(step - 1):
                v *= u
            g[ii] = g[ii] * v + (a * kr[ii] + b * er[ii])


@kernel_njit
def _uniform_step(orders):
    """The common step of ``orders`` when every step is 1 or every step is 2 and there are at
    most 4 orders ending at 1 or 2 (one pass per row: :func:`_gamma_row_one_pass`); else 0."""
    no = orders.shape[0]
    if no < 1 or no > 4 or orders[no - 1] > 2:
        return 0
    step = orders[0] - orders[1] if no > 1 else 1
    if step != 1 and step != 2:
        return 0
    for q in range(1, no):
        if orders[q - 1] - orders[q] != step:
            return 0
    return step


@kernel_njit
def _gamma_row_one_pass(g, t, i0, kx, coef, orders, j, step):
    """Row ``j`` of ``Gamma + Gamma^T`` in one pass: every Horner step in registers (see
    :func:`_uniform_step` for the orders it covers)."""
    no = orders.shape[0]
    cols = g.shape[0]
    i1 = i0 + cols
    last = orders[no - 1] - 1  # 0 or 1
    r0 = orders[0]
    a0, b0 = coef[r0, j], kx[r0, j]
    k0, e0 = kx[r0, i0:i1], coef[r0, i0:i1]
    r1 = orders[min(1, no - 1)]
    a1, b1 = (coef[r1, j], kx[r1, j]) if no > 1 else (0.0, 0.0)
    k1, e1 = kx[r1, i0:i1], coef[r1, i0:i1]
    r2 = orders[min(2, no - 1)]
    a2, b2 = (coef[r2, j], kx[r2, j]) if no > 2 else (0.0, 0.0)
    k2, e2 = kx[r2, i0:i1], coef[r2, i0:i1]
    r3 = orders[min(3, no - 1)]
    a3, b3 = (coef[r3, j], kx[r3, j]) if no > 3 else (0.0, 0.0)
    k3, e3 = kx[r3, i0:i1], coef[r3, i0:i1]
    for ii in range(cols):
        u = t[ii]
        v = u * u if step == 2 else u
        h = a0 * k0[ii] + b0 * e0[ii]
        if no > 1:
            h = h * v + (a1 * k1[ii] + b1 * e1[ii])
        if no > 2:
            h = h * v + (a2 * k2[ii] + b2 * e2[ii])
        if no > 3:
            h = h * v + (a3 * k3[ii] + b3 * e3[ii])
        g[ii] = h * u if last == 1 else h


@kernel_njit
def _gamma_row(g, t, i0, kx, coef, orders, j):
    """Row ``j`` of ``Gamma + Gamma^T`` over the tile's columns, one pass per order (any
    orders)."""
    no = orders.shape[0]
    cols = g.shape[0]
    i1 = i0 + cols
    if no == 0:
        g[:] = 0.0
        return
    o = orders[0]
    a, b = coef[o, j], kx[o, j]
    ko, eo = kx[o, i0:i1], coef[o, i0:i1]
    for ii in range(cols):
        g[ii] = a * ko[ii] + b * eo[ii]
    for q in range(1, no):
        r = orders[q]
        _horner_step(g, t, coef[r, j], kx[r, i0:i1], kx[r, j], coef[r, i0:i1],
                     orders[q - 1] - r)  # fmt: skip
    last = orders[no - 1] - 1
    if last == 1:
        for ii in range(cols):
            g[ii] *= t[ii]
    elif last > 1:
        for ii in range(cols):
            u = t[ii]
            v = u
            for _ in range(last - 1):
                v *= u
            g[ii] *= v


@kernel_njit
def _gamma_tile(T, j0, i0, kx, coef, orders, G):
    """``G = (Gamma + Gamma^T)[j0:, i0:]`` from the tile ``T`` of ``A`` (Horner's rule over
    ``orders``); 0 on and below the diagonal (``i <= j``)."""
    rows, cols = T.shape
    step = _uniform_step(orders)
    for jj in range(rows):
        j = j0 + jj
        if step > 0:
            _gamma_row_one_pass(G[jj], T[jj], i0, kx, coef, orders, j, step)
        else:
            _gamma_row(G[jj], T[jj], i0, kx, coef, orders, j)
    _zero_lower(G, j0, i0)


@kernel_njit
def _block_sums(WT, j0, j1, kx, R, even, Srow, Scol, cols, buf):
    """Sweep 1 of the rows ``j0:j1``: the tiles of ``A[j0:j1, j0:]`` (``buf`` holds one)
    and their power sums, into ``Srow`` (these rows) and ``Scol`` (the tiles' columns)."""
    n = WT.shape[0]
    WJ = WT[j0:j1]
    rows = j1 - j0
    for i0 in range(j0, n, cols):
        i1 = min(n, i0 + cols)
        Tv = buf[: rows * (i1 - i0)].reshape((rows, i1 - i0))
        np.dot(WJ, WT[i0:i1].T, Tv)
        _sums_tile(Tv, j0, i0, kx, R, even, Srow, Scol)


@kernel_njit
def _block_grad(WT, j0, j1, kx, coef, orders, dWT, acc, cols, buf, G):
    """Sweep 2 of the rows ``j0:j1``: the tiles of ``A[j0:j1, j0:]`` again, ``Gamma +
    Gamma^T`` on them, into ``dWT[j0:j1]`` (the rows) and ``acc`` (the tiles' columns)."""
    n, d = WT.shape
    WJ = WT[j0:j1]
    rows = j1 - j0
    part = np.empty((rows, d))
    back = np.empty((cols, d))
    own = np.zeros((rows, d))
    for i0 in range(j0, n, cols):
        i1 = min(n, i0 + cols)
        w = i1 - i0
        Tv = buf[: rows * w].reshape((rows, w))
        np.dot(WJ, WT[i0:i1].T, Tv)
        _zero_lower(Tv, j0, i0)  # as in sweep 1
        Gv = G[: rows * w].reshape((rows, w))
        _gamma_tile(Tv, j0, i0, kx, coef, orders, Gv)
        np.dot(Gv, WT[i0:i1], part)  # sum_i G_ji W_i for the block's rows j
        for jj in range(rows):
            for k in range(d):
                own[jj, k] += part[jj, k]
        bv = back[:w]
        np.dot(Gv.T, WJ, bv)  # sum_{j in J} G_ji W_j for every column i of the tile
        for ii in range(w):
            for k in range(d):
                acc[i0 + ii, k] += bv[ii, k]
    for jj in range(rows):
        for k in range(d):
            dWT[j0 + jj, k] = own[jj, k]


@kernel_njit
def _even(kx, R):
    """Whether every odd cumulant ``kx[r]`` (``r <= R``) vanishes for every feature."""
    for r in range(1, R + 1, 2):
        for i in range(kx.shape[1]):
            if kx[r, i] != 0.0:
                return False
    return True


@parallel_njit
def fused_loss_grad(W, b, has_b, binom, ex, kx, imp, orders, m, want_grad, terms, dW, db,
                    rows, cols, groups):  # fmt: skip
    """Exact forward terms and gradient of the loss without forming ``A = W^T W``.

    Arguments as :func:`fastsuper.exact.kernels_prepared.prepared_pass`
    without ``A``: fills ``terms`` (3, n) with ``E x_j**2``,
    ``E[x_j z_j**m]`` and ``E z_j**(2m)`` and, with ``want_grad``, ``dW``
    (d, n) and ``db`` (n,) with the gradient of the loss.  Values agree
    with the row kernels' to round-off.  ``rows``, ``cols``, ``groups``: the
    row block, the column tile and the number of groups (in
    :mod:`fastsuper.core.config`: ``EXACT_FUSED_ROWS``, ``EXACT_FUSED_COLS``,
    ``EXACT_FUSED_GROUPS``).
    """
    d, n = W.shape
    R = 2 * m
    even = _even(kx, R)
    WT = np.ascontiguousarray(W.T)
    diag = np.empty(n)
    for j in range(n):
        s = 0.0
        for k in range(d):
            s += WT[j, k] * WT[j, k]
        diag[j] = s
    nblocks = (n + rows - 1) // rows
    S = np.zeros((R + 1, n))  # the rows' halves, then the power sums
    Scol = np.zeros((groups, R + 1, n))  # the columns' halves, one per group
    for g in numba.prange(groups):
        buf = np.empty(rows * cols)
        for blk in range(g, nblocks, groups):
            j0 = blk * rows
            _block_sums(WT, j0, min(n, j0 + rows), kx, R, even, S, Scol[g], cols, buf)
    for g in range(groups):  # in group order: the sums do not depend on the thread count
        S += Scol[g]
    coef = np.zeros((R + 1, n))
    g_diag = np.zeros(n)
    for blk in numba.prange(nblocks):
        for j in range(blk * rows, min(n, (blk + 1) * rows)):
            _row_terms(j, S, b, has_b, diag[j], binom, ex, imp, m, terms, coef, db, g_diag)
    if not want_grad:
        return
    dWT = np.zeros((n, d))
    acc = np.zeros((groups, n, d))
    for g in numba.prange(groups):
        buf = np.empty(rows * cols)
        G = np.empty(rows * cols)
        for blk in range(g, nblocks, groups):
            j0 = blk * rows
            _block_grad(WT, j0, min(n, j0 + rows), kx, coef, orders, dWT, acc[g], cols, buf, G)
    for g in range(groups):
        dWT += acc[g]
    for j in range(n):
        for k in range(d):
            dWT[j, k] += 2.0 * g_diag[j] * WT[j, k]
    dW[:, :] = dWT.T
