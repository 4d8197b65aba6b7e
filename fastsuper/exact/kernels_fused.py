"""Fused, tiled CPU kernel of the exact loss and gradient (THEORY §3) for large ``n``.

:mod:`fastsuper.exact.kernels_cpu` reads the off-diagonal ``A = W^T W``
(``n x n``, formed beforehand by one matrix product) twice from memory.  Here
``A`` is never formed: the rows are cut into blocks of
:data:`~fastsuper.core.config.EXACT_FUSED_ROWS` and the columns into tiles of
:data:`~fastsuper.core.config.EXACT_FUSED_COLS`; one tile of ``A`` is a small
matrix product ``W[:, J]^T W[:, I]`` that stays in cache, and from it

1. the power sums ``S[r, j] = sum_{i != j} A_ji**r kappa_r(x_i)`` of the rows ``j`` in
   ``J`` (a sweep over every column tile ``I``);
2. then, the block's rows complete, the per-feature chain rule of
   :func:`fastsuper.exact.api._backward` gives ``coef[r, j]``, and a second sweep
   over the same tiles (kept from the first: ``rows x n`` values per thread) forms
   ``Gamma_JI`` (Horner's rule over the orders,
   ``Gamma_jj = dL/dA_jj``), and adds ``Gamma_JI W[:, I]^T`` to the block's rows of
   ``(dL/dW)^T`` and ``Gamma_JI^T W[:, J]^T`` to a per-group accumulator of all
   rows (the ``Gamma^T`` half of ``dL/dW = W (Gamma + Gamma^T)``).

Row blocks are dealt to :data:`~fastsuper.core.config.EXACT_FUSED_GROUPS`
groups (block ``k`` to group ``k mod G``), the parallel work items; each group
has its own accumulator, and the accumulators are added in group order, so
the result does not depend on the number of threads.  The tile products are
BLAS calls small enough to run on one BLAS thread inside the parallel loop
(:data:`~fastsuper.core.config.BLAS_SINGLE_THREAD_MNK`).  Memory: ``O(G n d)``
for the accumulators plus ``rows x n`` values of ``A`` per thread.  The sums run in another
order than those of :mod:`fastsuper.exact.kernels_cpu`: the values agree to
round-off, not bit for bit.
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
def _power_sums_quad(T, jj, j0, k1, k2, k3, k4, k5, k6, S):
    """:func:`_power_sums_tile` for ``R = 6`` on the four rows ``jj .. jj + 3`` of ``T`` at
    once: each column's cumulants are loaded once for the four rows (24 running sums)."""
    t0, t1, t2, t3 = T[jj], T[jj + 1], T[jj + 2], T[jj + 3]
    a1 = a2 = a3 = a4 = a5 = a6 = 0.0
    b1 = b2 = b3 = b4 = b5 = b6 = 0.0
    c1 = c2 = c3 = c4 = c5 = c6 = 0.0
    e1 = e2 = e3 = e4 = e5 = e6 = 0.0
    for ii in range(t0.shape[0]):
        q1, q2, q3, q4, q5, q6 = k1[ii], k2[ii], k3[ii], k4[ii], k5[ii], k6[ii]
        x = t0[ii]
        x2 = x * x
        x3 = x2 * x
        a1 += x * q1
        a2 += x2 * q2
        a3 += x3 * q3
        a4 += x2 * x2 * q4
        a5 += x2 * x3 * q5
        a6 += x3 * x3 * q6
        x = t1[ii]
        x2 = x * x
        x3 = x2 * x
        b1 += x * q1
        b2 += x2 * q2
        b3 += x3 * q3
        b4 += x2 * x2 * q4
        b5 += x2 * x3 * q5
        b6 += x3 * x3 * q6
        x = t2[ii]
        x2 = x * x
        x3 = x2 * x
        c1 += x * q1
        c2 += x2 * q2
        c3 += x3 * q3
        c4 += x2 * x2 * q4
        c5 += x2 * x3 * q5
        c6 += x3 * x3 * q6
        x = t3[ii]
        x2 = x * x
        x3 = x2 * x
        e1 += x * q1
        e2 += x2 * q2
        e3 += x3 * q3
        e4 += x2 * x2 * q4
        e5 += x2 * x3 * q5
        e6 += x3 * x3 * q6
    j = j0 + jj
    S[1, j] += a1
    S[2, j] += a2
    S[3, j] += a3
    S[4, j] += a4
    S[5, j] += a5
    S[6, j] += a6
    S[1, j + 1] += b1
    S[2, j + 1] += b2
    S[3, j + 1] += b3
    S[4, j + 1] += b4
    S[5, j + 1] += b5
    S[6, j + 1] += b6
    S[1, j + 2] += c1
    S[2, j + 2] += c2
    S[3, j + 2] += c3
    S[4, j + 2] += c4
    S[5, j + 2] += c5
    S[6, j + 2] += c6
    S[1, j + 3] += e1
    S[2, j + 3] += e2
    S[3, j + 3] += e3
    S[4, j + 3] += e4
    S[5, j + 3] += e5
    S[6, j + 3] += e6


@kernel_njit
def _power_sums_tile(T, j0, i0, kx, R, S):
    """Add the tile ``T = A[j0:, i0:]``'s power sums to ``S[:, j0 + jj]``.

    The tile's diagonal entries (``A_jj``) are set to 0 in ``T`` first: they
    take no part in the sums, and :func:`_gamma_tile` overrides them.  For
    ``R = 2m <= 6`` every power of an entry is formed in registers in one
    pass over the row; beyond, two orders per pass.
    """
    rows, cols = T.shape
    for jj in range(rows):
        diag = j0 + jj - i0
        if 0 <= diag < cols:
            T[jj, diag] = 0.0
    if R == 6:
        k1, k2, k3 = kx[1, i0 : i0 + cols], kx[2, i0 : i0 + cols], kx[3, i0 : i0 + cols]
        k4, k5, k6 = kx[4, i0 : i0 + cols], kx[5, i0 : i0 + cols], kx[6, i0 : i0 + cols]
        quads = rows // 4
        for q in range(quads):
            _power_sums_quad(T, 4 * q, j0, k1, k2, k3, k4, k5, k6, S)
        for jj in range(4 * quads, rows):
            t = T[jj]
            s1 = s2 = s3 = s4 = s5 = s6 = 0.0
            for ii in range(cols):
                a = t[ii]
                a2 = a * a
                a3 = a2 * a
                s1 += a * k1[ii]
                s2 += a2 * k2[ii]
                s3 += a3 * k3[ii]
                s4 += a2 * a2 * k4[ii]
                s5 += a2 * a3 * k5[ii]
                s6 += a3 * a3 * k6[ii]
            j = j0 + jj
            S[1, j] += s1
            S[2, j] += s2
            S[3, j] += s3
            S[4, j] += s4
            S[5, j] += s5
            S[6, j] += s6
        return
    pw = np.empty(cols)
    for jj in range(rows):
        t = T[jj]
        for ii in range(cols):
            pw[ii] = t[ii]
        for r in range(1, R + 1, 2):
            s1 = 0.0
            s2 = 0.0
            k1 = kx[r, i0 : i0 + cols]
            k2 = kx[r + 1, i0 : i0 + cols]
            for ii in range(cols):
                u = pw[ii]
                v = u * t[ii]
                s1 += u * k1[ii]
                s2 += v * k2[ii]
                pw[ii] = v * t[ii]
            S[r, j0 + jj] += s1
            S[r + 1, j0 + jj] += s2


@kernel_njit
def _horner_step(g, t, a, kr, step):
    """``g = g * t**step + a * kr`` elementwise (one vectorised pass)."""
    if step == 1:
        for ii in range(g.shape[0]):
            g[ii] = g[ii] * t[ii] + a * kr[ii]
    elif step == 2:
        for ii in range(g.shape[0]):
            u = t[ii]
            g[ii] = g[ii] * (u * u) + a * kr[ii]
    else:
        for ii in range(g.shape[0]):
            u = t[ii]
            v = u
            for _ in range(step - 1):
                v *= u
            g[ii] = g[ii] * v + a * kr[ii]


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
    """Row ``j`` of ``Gamma`` in one pass: every Horner step in registers (see
    :func:`_uniform_step` for the orders it covers)."""
    no = orders.shape[0]
    cols = g.shape[0]
    last = orders[no - 1] - 1  # 0 or 1
    r0 = orders[0]
    a0 = coef[r0, j]
    k0 = kx[r0, i0 : i0 + cols]
    r1 = orders[min(1, no - 1)]
    a1 = coef[r1, j] if no > 1 else 0.0
    k1 = kx[r1, i0 : i0 + cols]
    r2 = orders[min(2, no - 1)]
    a2 = coef[r2, j] if no > 2 else 0.0
    k2 = kx[r2, i0 : i0 + cols]
    r3 = orders[min(3, no - 1)]
    a3 = coef[r3, j] if no > 3 else 0.0
    k3 = kx[r3, i0 : i0 + cols]
    for ii in range(cols):
        u = t[ii]
        v = u * u if step == 2 else u
        h = a0 * k0[ii]
        if no > 1:
            h = h * v + a1 * k1[ii]
        if no > 2:
            h = h * v + a2 * k2[ii]
        if no > 3:
            h = h * v + a3 * k3[ii]
        g[ii] = h * u if last == 1 else h


@kernel_njit
def _gamma_row(g, t, i0, kx, coef, orders, j):
    """Row ``j`` of ``Gamma`` over the tile's columns, one pass per order (any orders)."""
    no = orders.shape[0]
    cols = g.shape[0]
    if no == 0:
        g[:] = 0.0
        return
    o = orders[0]
    a = coef[o, j]
    ko = kx[o, i0 : i0 + cols]
    for ii in range(cols):
        g[ii] = a * ko[ii]
    for q in range(1, no):
        r = orders[q]
        _horner_step(g, t, coef[r, j], kx[r, i0 : i0 + cols], orders[q - 1] - r)
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
def _gamma_tile(T, j0, i0, kx, coef, orders, g_diag, G):
    """``G = Gamma[j0:, i0:]`` from the tile ``T`` of ``A`` (Horner's rule over ``orders``)."""
    rows, cols = T.shape
    step = _uniform_step(orders)
    for jj in range(rows):
        j = j0 + jj
        if step > 0:
            _gamma_row_one_pass(G[jj], T[jj], i0, kx, coef, orders, j, step)
        else:
            _gamma_row(G[jj], T[jj], i0, kx, coef, orders, j)
        diag = j - i0
        if 0 <= diag < cols:
            G[jj, diag] = g_diag[j]


@kernel_njit
def _block_sums(WT, j0, j1, kx, R, S, cols, tiles):
    """Sweep 1 of the rows ``j0:j1``: their tiles of ``A`` into ``tiles`` and their power sums.

    Tile ``[i0, i1)`` is ``tiles[rows * i0 : rows * i1]`` as a C-contiguous
    ``(rows, i1 - i0)`` matrix, read again by :func:`_block_grad`.
    """
    n = WT.shape[0]
    WJ = WT[j0:j1]
    rows = j1 - j0
    for i0 in range(0, n, cols):
        i1 = min(n, i0 + cols)
        Tv = tiles[rows * i0 : rows * i1].reshape((rows, i1 - i0))
        np.dot(WJ, WT[i0:i1].T, Tv)
        _power_sums_tile(Tv, j0, i0, kx, R, S)


@kernel_njit
def _block_grad(WT, j0, j1, kx, coef, orders, g_diag, dWT, acc, cols, tiles):
    """Sweep 2 of the rows ``j0:j1``: ``Gamma`` tile by tile into ``dWT[j0:j1]`` and ``acc``."""
    n, d = WT.shape
    WJ = WT[j0:j1]
    rows = j1 - j0
    G = np.empty(rows * cols)
    part = np.empty((rows, d))
    back = np.empty((cols, d))
    own = np.zeros((rows, d))
    for i0 in range(0, n, cols):
        i1 = min(n, i0 + cols)
        w = i1 - i0
        Tv = tiles[rows * i0 : rows * i1].reshape((rows, w))
        Gv = G[: rows * w].reshape((rows, w))
        _gamma_tile(Tv, j0, i0, kx, coef, orders, g_diag, Gv)
        np.dot(Gv, WT[i0:i1], part)  # sum_i Gamma_ji W_i for the block's rows j
        for jj in range(rows):
            for k in range(d):
                own[jj, k] += part[jj, k]
        bv = back[:w]
        np.dot(Gv.T, WJ, bv)  # sum_{j in J} Gamma_ji W_j for every column i of the tile
        for ii in range(w):
            for k in range(d):
                acc[i0 + ii, k] += bv[ii, k]
    for jj in range(rows):
        for k in range(d):
            dWT[j0 + jj, k] = own[jj, k]


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
    WT = np.ascontiguousarray(W.T)
    diag = np.empty(n)
    for j in range(n):
        s = 0.0
        for k in range(d):
            s += WT[j, k] * WT[j, k]
        diag[j] = s
    S = np.zeros((R + 1, n))
    coef = np.zeros((R + 1, n))
    g_diag = np.zeros(n)
    nblocks = (n + rows - 1) // rows
    dWT = np.zeros((n, d))
    acc = np.zeros((groups if want_grad else 0, n, d))
    for g in numba.prange(groups):
        tiles = np.empty(rows * n)  # the block's rows of A, tile by tile
        for blk in range(g, nblocks, groups):
            j0 = blk * rows
            j1 = min(n, j0 + rows)
            _block_sums(WT, j0, j1, kx, R, S, cols, tiles)
            for j in range(j0, j1):
                _row_terms(j, S, b, has_b, diag[j], binom, ex, imp, m, terms, coef, db, g_diag)
            if want_grad:
                _block_grad(WT, j0, j1, kx, coef, orders, g_diag, dWT, acc[g], cols, tiles)
    if want_grad:
        for g in range(groups):
            dWT += acc[g]
        dW[:, :] = dWT.T
