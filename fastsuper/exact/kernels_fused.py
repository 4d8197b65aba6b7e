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

__all__ = ["fused_loss_grad", "row_terms", "squared_norms"]


@kernel_njit
def row_terms(j, S, b, has_b, diag_j, binom, ex, imp, work, terms, coef, db, g_diag):
    """Per-feature chain rule of row ``j``: forward terms, ``coef[:, j]``, ``db[j]``, ``g_diag[j]``.

    ``S[:, j]`` holds the power sums (the cumulants of ``y_j``, without ``b``); ``binom``
    is Pascal's triangle to ``R = 2m``; ``work`` is (4, R + 1) scratch.
    """
    R = binom.shape[0] - 1
    m = R // 2
    ky, my, ad, g_mom = work[0], work[1], work[2], work[3]
    ky[0] = 0.0
    for r in range(1, R + 1):
        ky[r] = S[r, j]
    if has_b:
        ky[1] += b[j]
    # my: the moments of y_j from its cumulants
    my[0] = 1.0
    for r in range(1, R + 1):
        acc = 0.0
        for k in range(1, r + 1):
            acc += binom[r - 1, k - 1] * ky[k] * my[r - k]
        my[r] = acc
    # ad: A_jj**r
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
    g_mom[:] = 0.0
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


@kernel_njit
def squared_norms(W):
    """``|W[:, j]|**2`` for every column ``j`` (the diagonal of ``A = W^T W``), summed over
    the rows in order."""
    d, n = W.shape
    out = np.zeros(n)
    for k in range(d):
        for j in range(n):
            out[j] += W[k, j] * W[k, j]
    return out


#: the row stride of the kernel's tile buffers (flat, row ``jj`` at ``jj * _CB``): a
#: compile-time constant, so the vectorised loops over two rows of a tile and over the
#: columns' cumulants need no run-time checks of overlap between their rows; column
#: tiles are at most this wide
_CB = 512


@kernel_njit(inline="always")
def _tile2d(buf, rows, w):
    """The ``rows x w`` tile in the flat buffer ``buf`` (row stride :data:`_CB`)."""
    return buf[: rows * _CB].reshape((rows, _CB))[:, :w]


@kernel_njit
def _tile_product(WJ, Wc, i0, i1, buf, scratch):
    """The tile ``A[J, i0:i1] = WJ W[:, i0:i1]`` into ``buf`` (row stride :data:`_CB`), and
    a zero row after its last (the partner of an odd last row in the two-row loops).

    ``WJ`` is ``W[:, J]^T`` (rows x d); the columns of ``Wc`` (= ``W``, d x n) are
    copied to ``scratch`` first (a product with contiguous operands, no transposition).
    Returns that copy (d x w).
    """
    rows, d = WJ.shape
    w = i1 - i0
    WI = scratch[: d * w].reshape((d, w))
    for k in range(d):
        for ii in range(w):
            WI[k, ii] = Wc[k, i0 + ii]
    if w == _CB:
        np.dot(WJ, WI, buf[: rows * _CB].reshape((rows, _CB)))
    else:
        tmp = scratch[d * w : d * w + rows * w].reshape((rows, w))
        np.dot(WJ, WI, tmp)
        for jj in range(rows):
            for ii in range(w):
                buf[jj * _CB + ii] = tmp[jj, ii]
    for ii in range(w):
        buf[rows * _CB + ii] = 0.0
    return WI


@kernel_njit(inline="always")
def _zero_lower(buf, rows, w, j0, i0):
    """Zero the entries ``(jj, ii)`` of the tile ``A[j0:, i0:]`` (flat, row stride
    :data:`_CB`) with ``i0 + ii <= j0 + jj``: every pair ``i < j`` then counts once."""
    if i0 - j0 >= rows:
        return
    for jj in range(rows):
        for ii in range(min(w, j0 + jj - i0 + 1)):
            buf[jj * _CB + ii] = 0.0


@kernel_njit(inline="always")
def _sums6_even(tb, rows, w, j0, kx, kb, cb, Srow):
    """:func:`_sums_tile` for ``R = 6`` when the odd cumulants vanish everywhere, two rows
    at a time: every power of an entry is formed once in registers and serves its row
    (``kb``: the columns' cumulants) and its column (``cb``: the columns' running sums)."""
    for jj in range(0, rows, 2):
        j = j0 + jj
        two = jj + 1 < rows
        p2, p4, p6 = kx[2, j], kx[4, j], kx[6, j]
        q2 = q4 = q6 = 0.0
        if two:
            q2, q4, q6 = kx[2, j + 1], kx[4, j + 1], kx[6, j + 1]
        a2 = a4 = a6 = 0.0
        b2 = b4 = b6 = 0.0
        o = jj * _CB
        t = tb[o : o + 2 * _CB]  # a view: indices from 0, known non-negative
        for ii in range(w):
            x = t[ii]
            y = t[_CB + ii]
            x2 = x * x
            x4 = x2 * x2
            x6 = x4 * x2
            y2 = y * y
            y4 = y2 * y2
            y6 = y4 * y2
            k2, k4, k6 = kb[ii], kb[_CB + ii], kb[2 * _CB + ii]
            a2 += x2 * k2
            a4 += x4 * k4
            a6 += x6 * k6
            b2 += y2 * k2
            b4 += y4 * k4
            b6 += y6 * k6
            cb[ii] += x2 * p2 + y2 * q2
            cb[_CB + ii] += x4 * p4 + y4 * q4
            cb[2 * _CB + ii] += x6 * p6 + y6 * q6
        Srow[2, j] += a2
        Srow[4, j] += a4
        Srow[6, j] += a6
        if two:
            Srow[2, j + 1] += b2
            Srow[4, j + 1] += b4
            Srow[6, j + 1] += b6


@kernel_njit(inline="always")
def _sums6(tb, rows, w, j0, kx, kb, cb, Srow):
    """:func:`_sums6_even` for every order ``r = 1 .. 6``."""
    for jj in range(0, rows, 2):
        j = j0 + jj
        two = jj + 1 < rows
        p1, p2, p3, p4, p5, p6 = kx[1, j], kx[2, j], kx[3, j], kx[4, j], kx[5, j], kx[6, j]
        q1 = q2 = q3 = q4 = q5 = q6 = 0.0
        if two:
            q1, q2, q3 = kx[1, j + 1], kx[2, j + 1], kx[3, j + 1]
            q4, q5, q6 = kx[4, j + 1], kx[5, j + 1], kx[6, j + 1]
        a1 = a2 = a3 = a4 = a5 = a6 = 0.0
        b1 = b2 = b3 = b4 = b5 = b6 = 0.0
        o = jj * _CB
        t = tb[o : o + 2 * _CB]  # a view: indices from 0, known non-negative
        for ii in range(w):
            x = t[ii]
            y = t[_CB + ii]
            x2 = x * x
            x3 = x2 * x
            x4 = x2 * x2
            x5 = x2 * x3
            x6 = x3 * x3
            y2 = y * y
            y3 = y2 * y
            y4 = y2 * y2
            y5 = y2 * y3
            y6 = y3 * y3
            k1, k2, k3 = kb[ii], kb[_CB + ii], kb[2 * _CB + ii]
            k4, k5, k6 = kb[3 * _CB + ii], kb[4 * _CB + ii], kb[5 * _CB + ii]
            a1 += x * k1
            a2 += x2 * k2
            a3 += x3 * k3
            a4 += x4 * k4
            a5 += x5 * k5
            a6 += x6 * k6
            b1 += y * k1
            b2 += y2 * k2
            b3 += y3 * k3
            b4 += y4 * k4
            b5 += y5 * k5
            b6 += y6 * k6
            cb[ii] += x * p1 + y * q1
            cb[_CB + ii] += x2 * p2 + y2 * q2
            cb[2 * _CB + ii] += x3 * p3 + y3 * q3
            cb[3 * _CB + ii] += x4 * p4 + y4 * q4
            cb[4 * _CB + ii] += x5 * p5 + y5 * q5
            cb[5 * _CB + ii] += x6 * p6 + y6 * q6
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


@kernel_njit
def _sums_tile(tb, rows, w, j0, i0, kx, R, even, Srow, Scol, kb, cb):
    """Add the power sums of the tile ``A[j0:j0 + rows, i0:i0 + w]`` (``tb``, flat, row
    stride :data:`_CB`, zero on and below the diagonal) to its rows and its columns.

    ``Srow[r, j] += sum_i A_ji**r kx[r, i]`` for its rows ``j`` and
    ``Scol[r, i] += sum_j A_ji**r kx[r, j]`` for its columns ``i``.
    ``even``: the odd cumulants vanish everywhere.  ``kb``, ``cb``: scratch
    (``R * _CB`` each) for the columns' cumulants and running sums.
    """
    if R == 6:
        first, step = (2, 2) if even else (1, 1)
        nr = 0
        for r in range(first, 7, step):
            for ii in range(w):
                kb[nr * _CB + ii] = kx[r, i0 + ii]
                cb[nr * _CB + ii] = 0.0
            nr += 1
        if even:
            _sums6_even(tb, rows, w, j0, kx, kb, cb, Srow)
        else:
            _sums6(tb, rows, w, j0, kx, kb, cb, Srow)
        nr = 0
        for r in range(first, 7, step):
            for ii in range(w):
                Scol[r, i0 + ii] += cb[nr * _CB + ii]
            nr += 1
        return
    T = _tile2d(tb, rows, w)
    pw = np.empty(w)
    for jj in range(rows):
        t = T[jj]
        j = j0 + jj
        for ii in range(w):
            pw[ii] = t[ii]
        for r in range(1, R + 1):
            if r > 1:
                for ii in range(w):
                    pw[ii] *= t[ii]
            kr = kx[r, i0 : i0 + w]
            cr = Scol[r, i0 : i0 + w]
            kj = kx[r, j]
            s = 0.0
            for ii in range(w):
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
    most 4 orders ending at 1 or 2 (one pass per two rows: :func:`_gamma_pairs`); else 0."""
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


@kernel_njit(inline="always")
def _gamma_pairs(tb, gb, rows, w, kb, coef, kx, orders, j0, step):
    """Rows of ``G`` two at a time (flat buffers ``tb`` -> ``gb``, row stride :data:`_CB`),
    every Horner step in registers (the orders of :func:`_uniform_step`); ``kb`` holds
    the columns' ``kx[r]`` and ``coef[r]`` of every order (rows ``2q`` and ``2q + 1``),
    loaded once for both rows."""
    no = orders.shape[0]
    last = orders[no - 1] - 1  # 0 or 1
    for jj in range(0, rows, 2):
        j = j0 + jj
        j1 = j + 1 if jj + 1 < rows else j
        r = orders[0]
        a0, b0, c0, d0 = coef[r, j], kx[r, j], coef[r, j1], kx[r, j1]
        r = orders[min(1, no - 1)]
        a1, b1, c1, d1 = coef[r, j], kx[r, j], coef[r, j1], kx[r, j1]
        r = orders[min(2, no - 1)]
        a2, b2, c2, d2 = coef[r, j], kx[r, j], coef[r, j1], kx[r, j1]
        r = orders[min(3, no - 1)]
        a3, b3, c3, d3 = coef[r, j], kx[r, j], coef[r, j1], kx[r, j1]
        o = jj * _CB
        t = tb[o : o + 2 * _CB]  # a view: indices from 0, known non-negative
        g = gb[o : o + 2 * _CB]
        for ii in range(w):
            u = t[ii]
            x = t[_CB + ii]
            v = u * u if step == 2 else u
            z = x * x if step == 2 else x
            k, e = kb[ii], kb[_CB + ii]
            h = a0 * k + b0 * e
            f = c0 * k + d0 * e
            if no > 1:
                k, e = kb[2 * _CB + ii], kb[3 * _CB + ii]
                h = h * v + (a1 * k + b1 * e)
                f = f * z + (c1 * k + d1 * e)
            if no > 2:
                k, e = kb[4 * _CB + ii], kb[5 * _CB + ii]
                h = h * v + (a2 * k + b2 * e)
                f = f * z + (c2 * k + d2 * e)
            if no > 3:
                k, e = kb[6 * _CB + ii], kb[7 * _CB + ii]
                h = h * v + (a3 * k + b3 * e)
                f = f * z + (c3 * k + d3 * e)
            g[ii] = h * u if last == 1 else h
            g[_CB + ii] = f * x if last == 1 else f


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
def _gamma_tile(tb, gb, rows, w, j0, i0, kx, coef, orders, kb):
    """``G = (Gamma + Gamma^T)[j0:, i0:]`` into ``gb`` from the tile of ``A`` in ``tb`` (both
    flat, row stride :data:`_CB`; Horner's rule over ``orders``); 0 on and below the
    diagonal (``i <= j``)."""
    step = _uniform_step(orders)
    if step > 0:
        no = orders.shape[0]
        for q in range(no):
            r = orders[q]
            for ii in range(w):
                kb[2 * q * _CB + ii] = kx[r, i0 + ii]
                kb[(2 * q + 1) * _CB + ii] = coef[r, i0 + ii]
        _gamma_pairs(tb, gb, rows, w, kb, coef, kx, orders, j0, step)
    else:
        T = _tile2d(tb, rows, w)
        G = _tile2d(gb, rows, w)
        for jj in range(rows):
            _gamma_row(G[jj], T[jj], i0, kx, coef, orders, j0 + jj)
    _zero_lower(gb, rows, w, j0, i0)


@kernel_njit
def _block_sums(W, WT, j0, j1, kx, R, even, Srow, Scol, cols, tb, kb, cb, scratch):
    """Sweep 1 of the rows ``j0:j1``: the tiles of ``A[j0:j1, j0:]`` (into ``tb``) and
    their power sums, into ``Srow`` (these rows) and ``Scol`` (the tiles' columns)."""
    n = W.shape[1]
    WJ = WT[j0:j1]
    rows = j1 - j0
    for i0 in range(j0, n, cols):
        i1 = min(n, i0 + cols)
        _tile_product(WJ, W, i0, i1, tb, scratch)
        _zero_lower(tb, rows, i1 - i0, j0, i0)
        _sums_tile(tb, rows, i1 - i0, j0, i0, kx, R, even, Srow, Scol, kb, cb)


@kernel_njit
def _block_grad(W, WT, j0, j1, kx, coef, orders, dW, acc, cols, tb, gb, kb, scratch):
    """Sweep 2 of the rows ``j0:j1``: the tiles of ``A[j0:j1, j0:]`` again, ``G = Gamma +
    Gamma^T`` on them, ``W[:, I] G^T`` into ``dW[:, j0:j1]`` (the rows) and ``W[:, J] G``
    into ``acc`` (d x n: the tiles' columns)."""
    d, n = W.shape
    WJ = WT[j0:j1]
    rows = j1 - j0
    WJc = np.ascontiguousarray(W[:, j0:j1])
    part = np.empty((d, rows))
    back = np.empty(d * cols)
    own = np.zeros((d, rows))
    gcopy = np.empty(rows * cols)
    for i0 in range(j0, n, cols):
        i1 = min(n, i0 + cols)
        w = i1 - i0
        WI = _tile_product(WJ, W, i0, i1, tb, scratch)
        _gamma_tile(tb, gb, rows, w, j0, i0, kx, coef, orders, kb)
        if w == _CB:
            Gv = gb[: rows * _CB].reshape((rows, _CB))
        else:  # a contiguous copy for the products
            Gv = gcopy[: rows * w].reshape((rows, w))
            Gv[:, :] = _tile2d(gb, rows, w)
        np.dot(WI, Gv.T, part)  # sum_i W_i G_ji for the block's rows j
        for k in range(d):
            for jj in range(rows):
                own[k, jj] += part[k, jj]
        bv = back[: d * w].reshape((d, w))
        np.dot(WJc, Gv, bv)  # sum_{j in J} W_j G_ji for every column i of the tile
        for k in range(d):
            for ii in range(w):
                acc[k, i0 + ii] += bv[k, ii]
    for k in range(d):
        for jj in range(rows):
            dW[k, j0 + jj] = own[k, jj]


@kernel_njit
def _even(kx, R):
    """Whether every odd cumulant ``kx[r]`` (``r <= R``) vanishes for every feature."""
    for r in range(1, R + 1, 2):
        for i in range(kx.shape[1]):
            if kx[r, i] != 0.0:
                return False
    return True


@kernel_njit(inline="always")
def _block_of(q, groups, nblocks):
    """The ``q``-th row block in the order the groups take them: group ``g`` takes the
    ``q`` with ``q mod groups = g``, and every other round runs backwards, so each group's
    blocks are as many near the top (long rows of the triangle) as near the bottom."""
    r = q // groups
    if r % 2 == 0 or (r + 1) * groups > nblocks:  # the last, partial round forwards
        return q
    return r * groups + (groups - 1 - (q - r * groups))


@parallel_njit
def _add_groups(out, parts):
    """``out += parts[0] + parts[1] + ...`` elementwise, in this order (columns in parallel)."""
    n = out.shape[1]
    step = 1024
    for c in numba.prange((n + step - 1) // step):
        for g in range(parts.shape[0]):
            p = parts[g]
            for r in range(out.shape[0]):
                for i in range(c * step, min(n, (c + 1) * step)):
                    out[r, i] += p[r, i]


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
    W = np.ascontiguousarray(W)
    WT = np.ascontiguousarray(W.T)
    diag = squared_norms(W)
    nblocks = (n + rows - 1) // rows
    S = np.zeros((R + 1, n))  # the rows' halves, then the power sums
    Scol = np.zeros((groups, R + 1, n))  # the columns' halves, one per group
    cols = min(cols, _CB)
    size = (rows + 1) * _CB
    for g in numba.prange(groups):
        tb, kb, cb = np.empty(size), np.empty(8 * _CB), np.empty(6 * _CB)
        scratch = np.empty((rows + d) * cols)
        for q in range(g, nblocks, groups):
            j0 = _block_of(q, groups, nblocks) * rows
            j1 = min(n, j0 + rows)
            _block_sums(W, WT, j0, j1, kx, R, even, S, Scol[g], cols, tb, kb, cb, scratch)
    _add_groups(S, Scol)  # in group order: the sums do not depend on the thread count
    coef = np.zeros((R + 1, n))
    g_diag = np.zeros(n)
    for blk in numba.prange(nblocks):
        work = np.empty((4, R + 1))
        for j in range(blk * rows, min(n, (blk + 1) * rows)):
            row_terms(j, S, b, has_b, diag[j], binom, ex, imp, work, terms, coef, db, g_diag)
    if not want_grad:
        return
    acc = np.zeros((groups, d, n))
    for g in numba.prange(groups):
        tb, gb, kb = np.empty(size), np.empty(size), np.empty(8 * _CB)
        scratch = np.empty((rows + d) * cols)
        for q in range(g, nblocks, groups):
            j0 = _block_of(q, groups, nblocks) * rows
            j1 = min(n, j0 + rows)
            _block_grad(W, WT, j0, j1, kx, coef, orders, dW, acc[g], cols, tb, gb, kb, scratch)
    _add_groups(dW, acc)
    for k in range(d):
        for j in range(n):
            dW[k, j] += 2.0 * g_diag[j] * W[k, j]
