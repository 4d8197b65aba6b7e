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

from fastsuper.core import config
from fastsuper.core.activations import (
    GELU,
    GELU_TANH,
    LEAKY_RELU,
    POWER,
    RELU_POWER,
    SIGMOID,
    SIGNED_POWER,
    SILU,
    SOFTPLUS,
    TANH,
    like,
    phi_inplace,
    relu,
    smooth_phi,
)
from fastsuper.core.bundles import borrowed_law, borrowed_rule
from fastsuper.core.jit import borrow, kernel_njit, njit, parallel_njit
from fastsuper.core.laws import draw_active_by, draw_value, draw_values
from fastsuper.core.rng import sample_key, seed_key
from fastsuper.core.vecmath import AVAILABLE, has_fast_form, phi_fast, vector_domain
from fastsuper.mc.simd import (
    MODE_POW2,
    MODE_POW3,
    MODE_RELU1,
    MODE_RELU2,
    MODE_RELU3,
    MODE_SMOOTH,
    MODE_Z,
    MODE_ZX,
    loss_terms_sum,
    tile_gelu,
    tile_gelu_tanh,
    tile_pow2,
    tile_pow3,
    tile_relu1,
    tile_relu2,
    tile_relu3,
    tile_sigmoid,
    tile_silu,
    tile_softplus,
    tile_softplus_unit,
    tile_tanh,
    tile_z,
    tile_zx,
    tile_zx_split,
)

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
def _z_columns2(A, b, idx, xv, z):
    """``z = b + A[idx[0]] xv[0] + A[idx[1]] xv[1]`` in one pass (the K = 2 case).

    The additions of :func:`_z_columns` in the same order, without its two
    extra passes over ``z``.
    """
    r0 = A[idx[0]]
    r1 = A[idx[1]]
    x0 = xv[0]
    x1 = xv[1]
    for j in range(z.shape[0]):
        z[j] = (b[j] + r0[j] * x0) + r1[j] * x1


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
def _sample_loss(z, imp, act, idx, xv, k, want_pf, pf_loss, pf_loss2):
    """Loss and sum_j I_j x_j^2 of one sample whose pre-activations are z.

    With ``want_pf`` the per-feature terms are added to ``pf_loss`` and their
    squares to ``pf_loss2`` (both float64).
    """
    phi_inplace(z, act)
    if want_pf:
        loss = _phi_loss_pf(z, imp, pf_loss, pf_loss2)
    else:
        loss = _phi_sum(z, imp)
    x2 = 0.0
    bz, bimp, bpf1, bpf2 = borrow(z), borrow(imp), borrow(pf_loss), borrow(pf_loss2)
    for q in range(k):
        i = idx[q]
        x = np.float64(xv[q])
        loss += _correction(bz, 0, i, x, bimp, want_pf, bpf1, bpf2)
        x2 += imp[i] * x * x
    return loss, x2


# --------------------------------------------------------------------------
# Monte-Carlo paths
#
# Every path computes, for each sample, z = A x + b (A = W^T W), phi(z) and
# loss = sum_j I_j (x_j - phi(z_j))^2 as sum_j I_j phi_j^2 plus corrections
# I_i (x_i^2 - 2 x_i phi_i) at the active features; only the order of the
# floating-point additions differs between paths (same numbers to round-off).

#: path codes of :func:`mc_blocks`
PATH_DENSE, PATH_COLUMNS, PATH_BLOCKED, PATH_COLUMNS_BLOCKED = range(4)
PATH_CODES = {
    "dense": PATH_DENSE,
    "columns": PATH_COLUMNS,
    "blocked": PATH_BLOCKED,
    "columns_blocked": PATH_COLUMNS_BLOCKED,
}


@njit(inline="always")
def welford_add(st, loss, gain, index):
    """Add one sample (its loss, gain and index) to the row of statistics ``st``.

    A non-finite loss is counted (the first one's index kept), not added.
    Exactly rounded ``njit`` code: the CUDA kernels call it too.
    """
    if not math.isfinite(loss):
        if st[ST_NONFINITE] == 0.0:
            st[ST_FIRST_BAD] = float(index)
        st[ST_NONFINITE] += 1.0
        return
    cnt = st[ST_COUNT] + 1.0
    st[ST_COUNT] = cnt
    lm = st[ST_LOSS_MEAN]
    dl = loss - lm
    lm += dl / cnt
    st[ST_LOSS_MEAN] = lm
    st[ST_LOSS_M2] += dl * (loss - lm)
    gm = st[ST_GAIN_MEAN]
    dg = gain - gm
    gm += dg / cnt
    st[ST_GAIN_MEAN] = gm
    st[ST_GAIN_M2] += dg * (gain - gm)


@kernel_njit(inline="always")
def _phi_loss(z, it, act):
    """``z = phi(z)`` in place; returns ``sum_j it[j] z[j]^2`` in float64.

    The activation and the sum in one pass, the family dispatched outside
    the loop and small integer exponents in straight-line code (the values
    of :func:`fastsuper.core.activations.phi`).
    """
    acc = 0.0
    w = z.shape[0]
    code, ia = act.code, act.ia
    if code == RELU_POWER and ia == 2:
        for j in range(w):
            u = relu(z[j])
            u = u * u
            z[j] = u
            f = np.float64(u)
            acc += it[j] * (f * f)
    elif code == RELU_POWER and ia == 1:
        for j in range(w):
            u = relu(z[j])
            z[j] = u
            f = np.float64(u)
            acc += it[j] * (f * f)
    elif (code == POWER or code == SIGNED_POWER) and ia == 3:
        for j in range(w):
            u = z[j] * z[j] * z[j]
            z[j] = u
            f = np.float64(u)
            acc += it[j] * (f * f)
    elif code == LEAKY_RELU:
        c = z.dtype.type(act.c)
        for j in range(w):
            u = z[j]
            u = u if u > 0 else c * u
            z[j] = u
            f = np.float64(u)
            acc += it[j] * (f * f)
    elif code >= GELU:  # a scalar call per element (no array passed per tile)
        cc = act.c
        for j in range(w):
            u = like(z[j], smooth_phi(np.float64(z[j]), code, cc))
            z[j] = u
            f = np.float64(u)
            acc += it[j] * (f * f)
    else:
        phi_inplace(z, act)
        acc = _phi_sum(z, it)
    return acc


@kernel_njit(inline="always")
def _phi_sum(z, it):
    """``sum_j it[j] z[j]^2`` in float64, in index order."""
    acc = 0.0
    for j in range(z.shape[0]):
        f = np.float64(z[j])
        acc += it[j] * (f * f)
    return acc


@kernel_njit(inline="always")
def _phi_loss_pf(z, it, p1, p2):
    """:func:`_phi_loss`, also adding each term to ``p1`` and its square to ``p2``."""
    acc = 0.0
    for j in range(z.shape[0]):
        f = np.float64(z[j])
        t = it[j] * (f * f)
        acc += t
        p1[j] += t
        p2[j] += t * t
    return acc


@kernel_njit(inline="always")
def _correction(z, j0, i, x, imp, want_pf, pf1, pf2):
    """The loss correction ``I_i (x^2 - 2 x phi_i)`` of the active feature ``i`` of value ``x``.

    ``z`` holds phi of outputs ``j0 ..``; with ``want_pf`` the feature's
    per-feature sums ``pf1``, ``pf2`` change from ``I_i phi_i^2`` to
    ``I_i (x - phi_i)^2``.  Callers in a loop pass borrowed arrays
    (:func:`~fastsuper.core.jit.borrow`): an inlined function counts a
    reference to each array it receives, which costs more than its arithmetic.
    """
    f = np.float64(z[i - j0])
    corr = imp[i] * (x * x - 2.0 * x * f)
    if want_pf:
        old = imp[i] * f * f
        new = imp[i] * (x - f) * (x - f)
        pf1[i] += corr
        pf2[i] += new * new - old * old
    return corr


@kernel_njit(inline="always")
def _corrections(z, j0, j1, imp, cidx, cval, e, e1, want_pf, pf1, pf2):
    """Corrections (:func:`_correction`) of the active ``i`` in ``[j0, j1)``.

    Entries ``e ..`` of the sorted CSR row are consumed while their index is
    below ``j1``.  Returns ``(sum, e)``.
    """
    acc = 0.0
    bz, bimp, bpf1, bpf2 = borrow(z), borrow(imp), borrow(pf1), borrow(pf2)
    while e < e1 and cidx[e] < j1:
        acc += _correction(bz, j0, cidx[e], np.float64(cval[e]), bimp, want_pf, bpf1, bpf2)
        e += 1
    return acc, e


@kernel_njit(inline="always")
def _tile_loss(z, it, act, j0, j1, imp, cidx, cval, cur, s, e1, want_pf, row1, row2):
    """Loss terms of outputs ``j0 .. j1 - 1`` of sample ``s`` from its pre-activations ``z``.

    The activation and ``sum_j I_j phi(z_j)**2`` (per-feature sums into
    ``row1``/``row2`` with ``want_pf``), plus the corrections of the sample's
    active entries in the tile; ``cur[s]`` advances past them.  Shared by the
    tiled paths ("columns_blocked" and "blocked").
    """
    if want_pf:
        phi_inplace(z, act)
        acc = _phi_loss_pf(z, it, row1[j0:j1], row2[j0:j1])
    else:
        acc = _phi_loss(z, it, act)
    corr, e = _corrections(z, j0, j1, imp, cidx, cval, cur[s], e1, want_pf, row1, row2)
    cur[s] = e
    return acc + corr


@njit
def _grown(arr, used, cap):
    """A copy of ``arr`` with room for ``cap`` entries (the first ``used`` kept)."""
    out = np.empty(cap, dtype=arr.dtype)
    for i in range(used):
        out[i] = arr[i]
    return out


@kernel_njit
def _draw_csr(skey, first, m, imp, law, rule, ptr, cidx, cval, x2):
    """Samples ``first .. first+m-1`` as CSR rows (``ptr``, ``cidx``, ``cval``).

    The samples of :func:`fastsuper.core.laws.draw_active_by` (``rule``: the
    plain sampler, or the law given ``K >= 2``), drawn straight into the CSR
    arrays.  ``x2[s] = sum_i I_i x_i^2`` (values rounded to the compute dtype
    of ``cval`` first, as in :func:`_sample_loss`).  Returns ``(cidx, cval)``:
    new, larger arrays when the given ones were too small.
    """
    law, rule = borrowed_law(law), borrowed_rule(rule)  # no counting per sample
    n = law.n
    e = 0
    ptr[0] = 0
    for s in range(m):
        key = sample_key(skey, first + s)
        if e + n > cidx.shape[0]:  # room for a whole row
            cap = max(2 * cidx.shape[0], e + n)
            cidx = _grown(cidx, e, cap)
            cval = _grown(cval, e, cap)
        k = draw_active_by(key, law, rule, borrow(cidx), e)
        t = 0.0
        for q in range(k):
            cval[e] = draw_value(key, q, law)
            x = np.float64(cval[e])
            t += imp[cidx[e]] * x * x
            e += 1
        x2[s] = t
        ptr[s + 1] = e
    return cidx, cval


@kernel_njit
def _block_per_sample(
    W, A, b, imp, act, use_cols, want_pf, skey, start, lo, hi, law, rule, st, row1, row2
):
    """Paths "dense" and "columns": samples ``lo .. hi-1`` one at a time into ``st``."""
    n = law.n
    idx = np.empty(n, dtype=np.int64)
    xv = np.empty(n, dtype=W.dtype)
    z = np.empty(n, dtype=W.dtype)
    h = np.empty(W.shape[0], dtype=W.dtype)
    blaw, brule, bidx, bxv = borrowed_law(law), borrowed_rule(rule), borrow(idx), borrow(xv)
    for s in range(lo, hi):
        key = sample_key(skey, start + s)
        k = draw_active_by(key, blaw, brule, bidx, 0)
        draw_values(key, k, blaw, bxv, 0)
        if not use_cols:
            _z_dense(W, b, idx, xv, k, h, z)
        elif k == 2:  # most samples given K >= 2 when E K is small
            _z_columns2(A, b, idx, xv, z)
        else:
            _z_columns(A, b, idx, xv, k, z)
        loss, x2 = _sample_loss(z, imp, act, idx, xv, k, want_pf, row1, row2)
        welford_add(st, loss, x2 - loss, start + s)


@kernel_njit(inline="always")
def _tile_call(mode, P, poff, b, j0, cidx, cval, e0, e1, z, imp):
    """One sample's tile through the :mod:`fastsuper.mc.simd` kernel for ``mode``.

    ``z`` receives ``z`` (``MODE_Z``) or ``phi(z)`` of the tile; the return is
    ``sum_j imp_j phi_j^2`` over the tile (0 for ``MODE_Z``).
    """
    if mode == MODE_RELU2:
        return tile_relu2(P, poff, b, j0, cidx, cval, e0, e1, z, imp)
    if mode == MODE_RELU1:
        return tile_relu1(P, poff, b, j0, cidx, cval, e0, e1, z, imp)
    if mode == MODE_RELU3:
        return tile_relu3(P, poff, b, j0, cidx, cval, e0, e1, z, imp)
    if mode == MODE_POW2:
        return tile_pow2(P, poff, b, j0, cidx, cval, e0, e1, z, imp)
    if mode == MODE_POW3:
        return tile_pow3(P, poff, b, j0, cidx, cval, e0, e1, z, imp)
    if mode == MODE_ZX:
        return tile_zx(P, poff, b, j0, cidx, cval, e0, e1, z, imp)
    return tile_z(P, poff, b, j0, cidx, cval, e0, e1, z, imp)


@njit
def _fused_mode(act, want_pf):
    """The :mod:`fastsuper.mc.simd` mode of an activation (``MODE_Z``: activation applied after)."""
    code, ia = act.code, act.ia
    if want_pf:
        return MODE_Z
    if code == RELU_POWER and ia >= 1 and ia <= 3:
        return MODE_RELU1 + ia - 1
    if (code == POWER or (code == SIGNED_POWER and ia % 2 == 1)) and (ia == 2 or ia == 3):
        return MODE_POW2 if ia == 2 else MODE_POW3
    if has_fast_form(code):
        return MODE_SMOOTH if AVAILABLE else MODE_ZX
    if (code == POWER and ia == 1) or code == LEAKY_RELU:
        return MODE_ZX
    return MODE_Z


@kernel_njit(inline="always")
def _tile_smooth(code, c, lo, hi, P, poff, b, j0, cidx, cval, e0, e1, zb, ip):
    """One sample's tile through the :data:`fastsuper.mc.simd.MODE_SMOOTH` kernel of
    activation ``code`` (parameter ``c``, vector domain ``[lo, hi]``): its loss, or -1
    with ``z`` and ``x`` left in ``zb`` as by ``MODE_ZX``."""
    if code == SIGMOID:
        return tile_sigmoid(P, poff, b, j0, cidx, cval, e0, e1, zb, ip, c, lo, hi)
    if code == SILU:
        return tile_silu(P, poff, b, j0, cidx, cval, e0, e1, zb, ip, c, lo, hi)
    if code == TANH:
        return tile_tanh(P, poff, b, j0, cidx, cval, e0, e1, zb, ip, c, lo, hi)
    if code == GELU_TANH:
        return tile_gelu_tanh(P, poff, b, j0, cidx, cval, e0, e1, zb, ip, c, lo, hi)
    if code == GELU:
        return tile_gelu(P, poff, b, j0, cidx, cval, e0, e1, zb, ip, c, lo, hi)
    if code == SOFTPLUS and c == 1.0:
        return tile_softplus_unit(P, poff, b, j0, cidx, cval, e0, e1, zb, ip, c, lo, hi)
    return tile_softplus(P, poff, b, j0, cidx, cval, e0, e1, zb, ip, c, lo, hi)


@kernel_njit(inline="always")
def _phi_zx(z, act, f):
    """``phi(z)`` for an activation of ``MODE_ZX``: ``f`` filled, or ``z`` itself (identity).

    The smooth activations by a vectorised loop
    (:func:`fastsuper.core.vecmath.phi_fast`; ``f`` must not overlap ``z``,
    or the loop is not vectorised); leaky_relu here.
    """
    code = act.code
    if code == LEAKY_RELU:
        c = z.dtype.type(act.c)
        for j in range(z.shape[0]):
            u = z[j]
            f[j] = u if u > 0 else c * u
    elif code == POWER:
        return z
    else:
        phi_fast(z, code, act.c, f)
    return f


@kernel_njit(inline="always")
def _zx_loss(zb, width, ip, j0, act, fb):
    """``sum_j imp_j (phi_j - x_j)^2`` of a tile stored by ``MODE_ZX``; the ``x`` part left zero.

    ``zb[:width]`` holds ``z``, ``zb[width : 2 width]`` the dense ``x``,
    ``ip`` the zero-padded importances; the activation by :func:`_phi_zx`
    (into ``fb``), then the terms in float64, summed in a fixed order
    (:func:`fastsuper.mc.simd.loss_terms_sum`).
    """
    w = ip[j0 : j0 + width]
    f = _phi_zx(zb[:width], act, fb[:width])
    return loss_terms_sum(f, zb[width : 2 * width], w)


@kernel_njit(inline="always")
def _zx_group_loss(grp, gm, width, ip, j0, act, lsum):
    """The loss terms of ``gm`` tiles stored by :func:`fastsuper.mc.simd.tile_zx_split`.

    ``grp = (gz, gx, gf)`` (:func:`_group_buffers`) holds the ``z`` and the
    dense ``x`` of the tile ``j0 ..`` of ``gm`` samples side by side; the
    activation is applied to the ``gm`` tiles at once (one long vectorised
    loop is cheaper per element than one loop a tile), then each sample's
    ``sum_j imp_j (phi_j - x_j)^2`` in float64, in a fixed order
    (:func:`fastsuper.mc.simd.loss_terms_sum`), is added to ``lsum[g]``; the
    ``x`` parts are left zero.
    """
    gz, gx, gf = grp
    size = gm * width
    gf = _phi_zx(gz[:size], act, gf[:size])
    w = ip[j0 : j0 + width]
    for g in range(gm):
        lo, hi = g * width, (g + 1) * width
        lsum[g] += loss_terms_sum(gf[lo:hi], gx[lo:hi], w)


@njit
def _group_buffers(width, dt):
    """``(gz, gx, gf)``: buffers of :func:`_zx_group_loss` for :data:`config.PHI_GROUP_ELEMENTS`.

    ``z``, dense ``x`` (plus the guard slot, zeros) and ``phi`` of up to
    ``max(1, PHI_GROUP_ELEMENTS // width)`` tiles of ``width`` outputs, in
    one allocation, each aligned to :data:`config.VECTOR_ALIGN` bytes and
    offset from the others by a few cache lines more than their size (no
    two of them a multiple of 4 KiB apart: loads would wait on unrelated
    stores to the same page offset).
    """
    size = max(1, config.PHI_GROUP_ELEMENTS // width) * width
    line = config.VECTOR_ALIGN // np.zeros(1, dt).itemsize  # elements per cache line
    pad = 5 * line
    buf = _aligned_buffer(3 * size + 2 * pad + line, dt)
    gz = buf[:size]
    gx = buf[size + pad : 2 * size + pad + 1]
    f0 = 2 * size + 2 * pad + line
    return gz, gx, buf[f0 : f0 + size]


@njit
def _aligned_buffer(size, dt):
    """Zeros of dtype ``dt`` whose data starts on a :data:`config.VECTOR_ALIGN`-byte boundary."""
    buf = np.zeros(size + config.VECTOR_ALIGN, dtype=dt)
    off = (-buf.ctypes.data % config.VECTOR_ALIGN) // buf.itemsize
    return buf[off : off + size]


@kernel_njit(inline="always")
def tile_workspace(P, b, imp, n, m_max):
    """Buffers of :func:`tile_stats` for blocks of up to ``m_max`` samples.

    ``(bp, ip, zb, ptr, cidx, cval, x2, lsum, cur, grp)``: bias and importances
    zero-padded to whole tiles in the compute dtype, and the tile buffer
    (``z`` of a tile, its dense ``x`` plus a guard slot, or both: ``2 width
    + 1`` elements), aligned to :data:`config.VECTOR_ALIGN` bytes; CSR rows
    (grown by :func:`csr_room`) with each sample's ``sum_i I_i x_i^2``;
    per-sample loss sums and cursors; the buffers of :func:`_zx_group_loss`.
    """
    dt = P.dtype
    width = P.shape[1]
    npad = (P.shape[0] // n) * width
    bp = _aligned_buffer(npad, dt)
    ip = _aligned_buffer(npad, dt)
    for j in range(n):
        bp[j] = b[j]
        ip[j] = imp[j]
    zb = _aligned_buffer(2 * width + 1, dt)
    ptr = np.empty(m_max + 1, dtype=np.int64)
    cidx = np.empty(4 * m_max + n, dtype=np.int64)
    cval = np.empty(4 * m_max + n, dtype=dt)
    grp = _group_buffers(width, dt)
    x2, lsum = np.empty(m_max), np.empty(m_max)
    return bp, ip, zb, ptr, cidx, cval, x2, lsum, np.empty(m_max, np.int64), grp


@kernel_njit(inline="always")
def tile_stats(
    P, bp, ip, zb, act, want_pf, imp, n, m, ptr, cidx, cval, x2, lsum, cur, grp, first, st,
    row1, row2,
):  # fmt: skip
    """Losses of the CSR samples ``s < m`` (sample indices ``first + s``) into ``st``.

    ``lsum[s]``, the loss of sample ``s``, is computed from the panels, tile by tile.

    Each sample's pre-activations over a tile are accumulated in vector
    registers (:mod:`fastsuper.mc.simd`); for the common activations
    (:func:`_fused_mode`) the tile's loss
    ``sum_j I_j (phi_j - x_j)^2`` is formed there, the sample's ``x``
    scattered into the dense tile buffer ``zb`` on the way; other activations
    store ``z`` and are finished by :func:`_tile_loss` (activation,
    ``sum_j I_j phi_j^2``, the corrections of the active features in the
    tile; per-feature sums into ``row1``/``row2``).  A sample's loss is the
    sum of its tiles' terms.  The smooth activations are applied in registers
    too where the CPU has AVX-512 (``MODE_SMOOTH``; a tile outside the vector
    form's domain is finished by :func:`_zx_loss`); without it they go through
    the tile a group of samples at a time (``MODE_ZX``, :func:`_zx_group_loss`).
    """
    mode = _fused_mode(act, want_pf)
    width = P.shape[1]
    nt = P.shape[0] // n
    # borrowed views: the inlined per-sample calls below count no references
    P, bp, ip, zb, imp, cidx, cval, cur = (
        borrow(P), borrow(bp), borrow(ip), borrow(zb), borrow(imp), borrow(cidx), borrow(cval),
        borrow(cur),
    )  # fmt: skip
    row1, row2 = borrow(row1), borrow(row2)
    grp = (borrow(grp[0]), borrow(grp[1]), borrow(grp[2]))
    # samples a group (MODE_ZX); leaky_relu and the identity (cheap loops) a tile at a time
    gs = max(1, grp[0].shape[0] // width) if has_fast_form(act.code) else 1
    code, c = act.code, act.c
    lo, hi = vector_domain(zb, code, c)
    for s in range(m):
        lsum[s] = 0.0
        cur[s] = ptr[s]
    for t in range(nt):
        j0 = t * width
        j1 = min(j0 + width, n)
        poff = t * n * width
        z = zb[: j1 - j0]
        it = imp[j0:j1]
        if mode == MODE_SMOOTH:  # the activation in registers; a tile outside its domain after
            for s in range(m):
                e0, e1 = ptr[s], ptr[s + 1]
                acc = _tile_smooth(code, c, lo, hi, P, poff, bp, j0, cidx, cval, e0, e1, zb, ip)
                if not acc >= 0.0:
                    acc = _zx_loss(zb, width, ip, j0, act, grp[2])
                lsum[s] += acc
            continue
        if mode == MODE_ZX and gs == 1:  # leaky_relu, the identity: z and x side by side
            for s in range(m):
                tile_zx(P, poff, bp, j0, cidx, cval, ptr[s], ptr[s + 1], zb, ip)
                lsum[s] += _zx_loss(zb, width, ip, j0, act, grp[2])
            continue
        if mode == MODE_ZX:
            s0 = 0
            for s in range(m):
                lo = (s - s0) * width
                e0, e1 = ptr[s], ptr[s + 1]
                tile_zx_split(P, poff, bp, j0, cidx, cval, e0, e1, grp[0][lo:], grp[1][lo:], ip)
                if s - s0 == gs - 1 or s == m - 1:
                    _zx_group_loss(grp, s - s0 + 1, width, ip, j0, act, lsum[s0:])
                    s0 = s + 1
            continue
        for s in range(m):
            e1 = ptr[s + 1]
            acc = _tile_call(mode, P, poff, bp, j0, cidx, cval, ptr[s], e1, zb, ip)
            if mode == MODE_Z:
                lsum[s] += _tile_loss(
                    z, it, act, j0, j1, imp, cidx, cval, cur, s, e1, want_pf, row1, row2
                )
            else:  # the tile's whole loss, corrections included
                lsum[s] += acc
    for s in range(m):
        welford_add(st, lsum[s], x2[s] - lsum[s], first + s)


@kernel_njit
def _block_columns_tiled(
    P, b, imp, act, want_pf, skey, start, lo, hi, sub, law, rule, st, row1, row2
):
    """Path "columns_blocked": samples ``lo .. hi-1`` into ``st``.

    ``P`` holds ``A = W^T W`` as panels (:func:`column_panels`): rows
    ``t n .. t n + n - 1`` are the ``width = P.shape[1]`` columns of tile
    ``t``, zero-padded.  ``sub`` samples at a time are drawn into CSR rows,
    then their losses computed one tile at a time (:func:`tile_stats`): the
    ``n x width`` panel is read from L3 or memory once per ``sub`` samples
    and then from L2.  Statistics run over the samples in index order.
    """
    n = law.n
    m_max = max(1, min(sub, hi - lo))
    bp, ip, zb, ptr, cidx, cval, x2, lsum, cur, grp = tile_workspace(P, b, imp, n, m_max)
    for s0 in range(lo, hi, m_max):
        m = min(m_max, hi - s0)
        cidx, cval = _draw_csr(skey, start + s0, m, imp, law, rule, ptr, cidx, cval, x2)
        tile_stats(
            P, bp, ip, zb, act, want_pf, imp, n, m, ptr, cidx, cval, x2, lsum, cur, grp,
            start + s0, st, row1, row2,
        )  # fmt: skip


def aligned_zeros(shape, dtype, align: int = config.VECTOR_ALIGN) -> np.ndarray:
    """A zero-filled C-contiguous array whose data starts on an ``align``-byte boundary."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    buf = np.zeros(nbytes + align, dtype=np.uint8)
    off = -buf.ctypes.data % align
    return buf[off : off + nbytes].view(dtype).reshape(shape)


def aligned(P: np.ndarray, align: int = config.VECTOR_ALIGN) -> np.ndarray:
    """``P`` itself when C-contiguous and ``align``-byte aligned, else an aligned copy."""
    if P.flags.c_contiguous and P.ctypes.data % align == 0:
        return P
    out = aligned_zeros(P.shape, P.dtype, align)
    out[...] = P
    return out


def column_panels(A: np.ndarray, width: int) -> np.ndarray:
    """``A`` (n x n) as the panels of path "columns_blocked": shape ``(n_tiles * n, width)``.

    Rows ``t n + i`` hold ``A[i, t width : (t + 1) width]``, zero-padded past
    column ``n``; the values are those of ``A``, bit for bit.  The data is
    aligned to :data:`config.VECTOR_ALIGN` bytes (each row starts a cache line).
    """
    n = A.shape[0]
    nt = -(-n // width)
    P = aligned_zeros((nt, n, width), A.dtype)
    for t in range(nt):
        j0 = t * width
        j1 = min(j0 + width, n)
        P[t, :, : j1 - j0] = A[:, j0:j1]
    return P.reshape(nt * n, width)


@kernel_njit
def _block_gemm(
    WT, b, imp, act, want_pf, skey, start, lo, hi, chunk, rows, law, rule, st, row1, row2
):
    """Path "blocked": samples ``lo .. hi-1`` into ``st``, ``rows`` samples per matrix product.

    ``WT`` is ``W^T`` (n x d, C-contiguous).  For a group of ``rows``
    samples: ``H = X W^T`` over the active entries (rows of ``W^T``), then
    ``Z = H W`` (rows x n) as matrix products (BLAS gemm through ``np.dot``)
    of ``chunk`` outputs each, each followed, while in cache, by the bias,
    the activation, the loss terms and the corrections of the active
    features (the smooth activations by their vector forms over each row of
    the product, :func:`fastsuper.core.vecmath.phi_fast`).  Statistics run
    over the samples in index order.
    """
    dt = WT.dtype
    n, d = WT.shape
    m_max = max(1, min(rows, hi - lo))
    ptr = np.empty(m_max + 1, dtype=np.int64)
    cidx = np.empty(4 * m_max + n, dtype=np.int64)
    cval = np.empty(4 * m_max + n, dtype=dt)
    x2 = np.empty(m_max)
    lsum = np.empty(m_max)
    cur = np.empty(m_max, dtype=np.int64)
    H = np.empty((m_max, d), dtype=dt)
    zbuf = np.empty(m_max * chunk, dtype=dt)
    # the smooth activations with a vector form: phi of each row of the product by the
    # vector loops (phi_fast), instead of an accurate scalar call per element
    fast = has_fast_form(act.code) and not want_pf
    fbuf = np.empty(m_max * chunk if fast else 0, dtype=dt)
    for s0 in range(lo, hi, m_max):
        m = min(m_max, hi - s0)
        cidx, cval = _draw_csr(skey, start + s0, m, imp, law, rule, ptr, cidx, cval, x2)
        for s in range(m):
            hs = H[s]
            for r in range(d):
                hs[r] = 0
            for e in range(ptr[s], ptr[s + 1]):
                wr = WT[cidx[e]]
                x = cval[e]
                for r in range(d):
                    hs[r] += wr[r] * x
            lsum[s] = 0.0
            cur[s] = ptr[s]
        Hm = H[:m]
        for j0 in range(0, n, chunk):
            j1 = min(j0 + chunk, n)
            w = j1 - j0
            Z = zbuf[: m * w].reshape((m, w))
            np.dot(Hm, WT[j0:j1].T, Z)
            bt = b[j0:j1]
            it = borrow(imp[j0:j1])
            bi, bc, bv, bcur, br1, br2 = (
                borrow(imp),
                borrow(cidx),
                borrow(cval),
                borrow(cur),
                borrow(row1),
                borrow(row2),
            )
            if fast:
                for s in range(m):
                    z = borrow(Z[s])
                    for j in range(w):
                        z[j] += bt[j]
                F = fbuf[: m * w].reshape((m, w))
                for s in range(m):
                    f = borrow(F[s])
                    # a row at a time: which elements take the vector loop does not depend
                    # on the number of samples in the group (the same numbers for any
                    # chunking of the samples)
                    phi_fast(Z[s], act.code, act.c, f)
                    corr, e = _corrections(
                        f, j0, j1, bi, bc, bv, bcur[s], ptr[s + 1], False, br1, br2
                    )
                    bcur[s] = e
                    lsum[s] += _phi_sum(f, it) + corr
                continue
            for s in range(m):
                z = borrow(Z[s])
                for j in range(w):
                    z[j] += bt[j]
                lsum[s] += _tile_loss(
                    z, it, act, j0, j1, bi, bc, bv, bcur, s, ptr[s + 1], want_pf, br1, br2
                )
        for s in range(m):
            welford_add(st, lsum[s], x2[s] - lsum[s], start + s0 + s)


@parallel_njit
def mc_blocks(
    W, A, b, imp, act, path, want_pf, seed, start, n_samples, block, law, rule, tile=0, sub=0
):
    """Monte-Carlo loss statistics of samples ``start .. start+n_samples-1``.

    ``act`` is the :class:`~fastsuper.core.bundles.Activation`, ``law`` the
    :class:`~fastsuper.core.bundles.InputLaw` and ``rule`` the
    :class:`~fastsuper.core.bundles.SampleRule`: the plain sampler
    (:func:`~fastsuper.core.bundles.plain_rule`), or the law given ``K >= 2``
    of the stratified estimator.  ``path`` is a code of :data:`PATH_CODES`.
    ``A`` is ``W^T W`` for "columns", its tile panels (:func:`column_panels`)
    for "columns_blocked", ``W^T`` (n x d, C-contiguous) for "blocked",
    unused for "dense".  ``sub``: samples drawn at once ("columns_blocked"),
    samples per matrix product ("blocked"); ``tile``: outputs per matrix
    product ("blocked"; a "columns_blocked" tile is the panel width); 0
    means all outputs and 256 samples.  Blocks of ``block`` samples are the
    parallel work items.

    Returns ``stats`` of shape (n_blocks, N_STATS) (Welford count/mean/M2 of
    loss and gain per block, non-finite count, first bad sample index) and,
    with ``want_pf``, per-block sums of each feature's loss term and of its
    square, shape (n_blocks, n) each.
    """
    n = law.n
    nb = (n_samples + block - 1) // block
    stats = np.zeros((nb, N_STATS))
    for bi in range(nb):
        stats[bi, ST_FIRST_BAD] = -1.0
    npf = nb if want_pf else 0
    pf1 = np.zeros((npf, n))
    pf2 = np.zeros((npf, n))
    skey = seed_key(seed)
    tl = n if tile <= 0 else min(tile, n)
    sb = 256 if sub <= 0 else sub
    for bi in numba.prange(nb):
        row1 = pf1[bi] if want_pf else pf1.reshape(-1)
        row2 = pf2[bi] if want_pf else pf2.reshape(-1)
        lo = bi * block
        hi = min(lo + block, n_samples)
        st = stats[bi]
        if path == PATH_COLUMNS_BLOCKED:
            _block_columns_tiled(
                A, b, imp, act, want_pf, skey, start, lo, hi, sb, law, rule, st, row1, row2
            )
        elif path == PATH_BLOCKED:
            _block_gemm(
                A, b, imp, act, want_pf, skey, start, lo, hi, tl, sb, law, rule, st, row1, row2
            )
        else:
            _block_per_sample(
                W, A, b, imp, act, path == PATH_COLUMNS, want_pf, skey, start, lo, hi, law, rule,
                st, row1, row2,
            )  # fmt: skip
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
def apply_phi_rows(Z, act):
    """Apply the activation ``act`` to a 2-D array in place, parallel over rows."""
    for r in numba.prange(Z.shape[0]):
        phi_inplace(Z[r], act)


@parallel_njit
def forward_csr(W, b, act, indptr, indices, values, out):
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
        phi_inplace(z, act)
