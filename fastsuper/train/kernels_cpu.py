"""CPU training kernels: the sampled gradient and a multi-instance Adam loop.

Per sample (THEORY §1), with the active set ``S`` of ``x``::

    h   = W x                      over i in S only        (d)
    z   = W^T h + b                                         (n)
    e_j = phi(z_j) - x_j,   loss = sum_j I_j e_j^2
    g_j = 2 I_j e_j phi'(z_j)      (dloss/dz_j)
    db += g                        (bias)
    dW += h g^T                    (decoder: W^T in z = W^T h)
    dW[:, i] += (W g) x_i          for i in S only          (encoder: h = W x)

Computation is in the dtype of ``W`` (float32 or float64), every sum over
samples (loss and gradient) in float64, but for the sums within a sub-batch
of the BLAS path, in the compute dtype as its products form them (float32
ReLU sums a sample's loss terms in float32 there too).  Four code paths,
same formulas:

* ``d <= 4`` (:func:`run_grad`): ``h`` and ``W g`` live in scalars (``W^T``
  zero-padded to 2 or 4 columns), one fused loop over features per sample;
* any ``d`` (:func:`run_grad`): loops over rows of ``W``, vectorised over
  features;
* training with ``d > 4`` and small enough ``n d`` (:func:`run_grad_blas`):
  sub-batches of samples, the three dense products ``H W``, ``H^T G`` and
  ``G W^T`` by BLAS (``np.dot``; ``fit`` holds BLAS to one thread around the
  kernel, :func:`fastsuper.core.blas.blas_threads`); or, for sparse enough
  inputs, in the Gram space: ``z = M x + b`` with ``M = W^T W`` and
  ``dW = W (S + S^T)`` with ``S = sum_samples x g^T`` (the two terms above:
  ``h g^T = W x g^T`` and ``(W g) x^T``), ``2 n`` multiply-adds per active
  feature instead of ``3 d n`` per sample;
* training with ``d <= 4``, few features and one ``p`` (:func:`run_grad_dense`):
  sub-batches of samples as dense columns, every step vectorised over the
  samples, the samples without an active feature counted only.

Determinism follows the rule of :mod:`fastsuper.mc.kernels_cpu`: samples are
numbered, a parallel work item is a fixed block of sample numbers (or, for
training, whole instances) with its own buffers, and buffers are merged
serially in block order.  Results are bit-identical for any thread count.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba.core import types
from numba.extending import overload

from fastsuper.core import config
from fastsuper.core.activations import RELU_POWER, dphi, phi
from fastsuper.core.bundles import borrowed_law, instance_law
from fastsuper.core.config import TRAIN_GWT_FROM, TRAIN_GWT_ROWS
from fastsuper.core.jit import borrow, kernel_njit, njit, parallel_njit
from fastsuper.core.laws import (
    GAP_CHUNK,
    UNIFORM,
    VALUE_BASE,
    chunked_bernoulli,
    dense_keys,
    dense_sampling,
    dense_width,
    dense_words,
    draw_active,
    draw_dense,
    draw_sample,
    draw_values,
    estimate_gaps,
    first_active,
    gap_bounds,
    settled_gap,
)
from fastsuper.core.rng import counter_hash, hashed_uniform, sample_key
from fastsuper.core.sparse_rows import (
    compact_rows,
    gather_rows,
    gram_relu_rows,
    padded_columns,
    scatter_rows,
)
from fastsuper.core.vecmath import wide_vectors

#: codes of the per-instance status array of :func:`adam_kernel`
OK = -1


# --------------------------------------------------------------------------
# a run of samples: sampling and gradient in one loop
#
# The sampler is :func:`fastsuper.core.laws.draw_sample`, inlined, so the
# samples are those of :func:`fastsuper.sample` bit for bit (tests/train/test_adam.py
# checks it); training passes laws that carry gap thresholds
# (:func:`fastsuper.core.bundles.gap_tables`), which replace most logarithms
# of the geometric skipping at small ``n`` or large ``p``.


@kernel_njit
def _residual_relu(zj, xj, impj, imp2j):
    """:func:`_residual` for ReLU, without branches (z's sign is unpredictable).

    ``relu(z) = z * [z > 0]``: NaN stays NaN, so an overflow is never hidden.
    """
    on = (zj - zj) + (zj > 0)  # 1 or 0 in the compute dtype (NaN for z = +-inf or NaN)
    f = zj * on
    e = f - xj
    e64 = np.float64(f) - np.float64(xj)
    return impj * (e64 * e64), imp2j * e * on


@kernel_njit
def _residual(zj, xj, impj, imp2j, act):
    """(``I_j e_j^2`` in float64, ``g_j = 2 I_j e_j phi'(z_j)``) with ``e_j = phi(z_j) - x_j``.

    ``g_j = 0`` when ``e_j = 0``, also where ``phi'`` is infinite (``signed_power``
    with an exponent ``a < 1`` at ``z = 0``): the limit of ``d e^2 / dz`` for ``a > 1/2``.
    """
    f = phi(zj, act)
    e = f - xj
    e64 = np.float64(f) - np.float64(xj)
    gj = imp2j * e * dphi(zj, act) if e != 0 else e
    return impj * (e64 * e64), gj


@kernel_njit
def run_grad(W, Wt, b, imp, imp2, act, skey, first, count, law, work, gW, gb):
    """Loss and gradient sums of samples ``first .. first+count-1`` of key ``skey``.

    ``W`` (d, n) and ``Wt`` (n, D) in the compute dtype, where ``Wt`` is
    ``W.T`` zero-padded to ``D = padded_width(d)`` columns; ``b`` (n) the bias,
    ``imp`` (n, float64) the importances and ``imp2 = 2 * imp`` in the compute
    dtype; ``act`` the :class:`~fastsuper.core.bundles.Activation` and
    ``law`` the :class:`~fastsuper.core.bundles.InputLaw`.  Adds the gradient
    of ``sum_s loss_s`` to the float64 accumulators ``gW`` (d, n) and
    ``work``'s ``gWt`` (n, D, transposed; merge with :func:`add_transposed`)
    and to ``gb`` (n).  ``work`` is the scratch of :func:`_scratch`.  Returns
    ``(loss sum, number of non-finite losses, first such sample or -1)``.

    For ``d <= 4`` (``D`` = 2 or 4) the hidden vector lives in scalars (the
    padding columns are zero and contribute nothing); otherwise the loops run
    over rows of ``W`` and vectorise over features.
    """
    idx, val, xv, xd, h, z, g, u, gWt = work
    law, idx, val = borrowed_law(law), borrow(idx), borrow(val)  # no counting per sample
    d, n = W.shape
    D = Wt.shape[1]
    relu = act.code == RELU_POWER and act.ia == 1
    zero = Wt[0, 0] - Wt[0, 0]
    loss_sum = 0.0
    nbad = 0
    first_bad = -1
    for s in range(first, first + count):
        k = draw_sample(sample_key(skey, s), law, idx, val)
        for q in range(k):
            xd[idx[q]] = val[q]  # rounded to the compute dtype
            xv[q] = xd[idx[q]]
        loss = 0.0
        # The d <= 2 and d <= 4 branches are one computation written out for 2 and
        # 4 scalars: the hidden vector stays in registers (deliberately not shared).
        if D == 2:  # ---- d <= 2: h and u in scalars
            h0 = zero
            h1 = zero
            for q in range(k):
                i = idx[q]
                x = xv[q]
                h0 += Wt[i, 0] * x
                h1 += Wt[i, 1] * x
            f0 = np.float64(h0)
            f1 = np.float64(h1)
            u0 = zero
            u1 = zero
            for j in range(n):
                w0 = Wt[j, 0]
                w1 = Wt[j, 1]
                zj = b[j] + w0 * h0 + w1 * h1
                if relu:
                    lj, gj = _residual_relu(zj, xd[j], imp[j], imp2[j])
                else:
                    lj, gj = _residual(zj, xd[j], imp[j], imp2[j], act)
                loss += lj
                g64 = np.float64(gj)
                gb[j] += g64
                gWt[j, 0] += f0 * g64
                gWt[j, 1] += f1 * g64
                u0 += w0 * gj
                u1 += w1 * gj
            v0 = np.float64(u0)
            v1 = np.float64(u1)
            for q in range(k):
                i = idx[q]
                x = np.float64(xv[q])
                gWt[i, 0] += v0 * x
                gWt[i, 1] += v1 * x
        elif D == 4:  # ---- d <= 4: h and u in scalars
            h0 = zero
            h1 = zero
            h2 = zero
            h3 = zero
            for q in range(k):
                i = idx[q]
                x = xv[q]
                h0 += Wt[i, 0] * x
                h1 += Wt[i, 1] * x
                h2 += Wt[i, 2] * x
                h3 += Wt[i, 3] * x
            f0 = np.float64(h0)
            f1 = np.float64(h1)
            f2 = np.float64(h2)
            f3 = np.float64(h3)
            u0 = zero
            u1 = zero
            u2 = zero
            u3 = zero
            for j in range(n):
                w0 = Wt[j, 0]
                w1 = Wt[j, 1]
                w2 = Wt[j, 2]
                w3 = Wt[j, 3]
                zj = b[j] + w0 * h0 + w1 * h1 + w2 * h2 + w3 * h3
                if relu:
                    lj, gj = _residual_relu(zj, xd[j], imp[j], imp2[j])
                else:
                    lj, gj = _residual(zj, xd[j], imp[j], imp2[j], act)
                loss += lj
                g64 = np.float64(gj)
                gb[j] += g64
                gWt[j, 0] += f0 * g64
                gWt[j, 1] += f1 * g64
                gWt[j, 2] += f2 * g64
                gWt[j, 3] += f3 * g64
                u0 += w0 * gj
                u1 += w1 * gj
                u2 += w2 * gj
                u3 += w3 * gj
            v0 = np.float64(u0)
            v1 = np.float64(u1)
            v2 = np.float64(u2)
            v3 = np.float64(u3)
            for q in range(k):
                i = idx[q]
                x = np.float64(xv[q])
                gWt[i, 0] += v0 * x
                gWt[i, 1] += v1 * x
                gWt[i, 2] += v2 * x
                gWt[i, 3] += v3 * x
        else:  # ---- any d: rows of W, vectorised over features
            for r in range(d):
                h[r] = 0
            for q in range(k):  # h = W x over the active entries (rows of W^T)
                i = idx[q]
                x = xv[q]
                for r in range(d):
                    h[r] += Wt[i, r] * x
            for j in range(n):  # z = W^T h + b
                z[j] = b[j]
            for r in range(d):
                hr = h[r]
                for j in range(n):
                    z[j] += W[r, j] * hr
            for j in range(n):
                if relu:
                    lj, gj = _residual_relu(z[j], xd[j], imp[j], imp2[j])
                else:
                    lj, gj = _residual(z[j], xd[j], imp[j], imp2[j], act)
                loss += lj
                g[j] = gj
                gb[j] += gj
            for r in range(d):  # decoder term h g^T, and u = W g
                hr = np.float64(h[r])
                acc = zero
                for j in range(n):
                    gj = g[j]
                    gW[r, j] += hr * gj
                    acc += W[r, j] * gj
                u[r] = acc
            for q in range(k):  # encoder term: dW[:, i] += u x_i over the active entries
                i = idx[q]
                x = np.float64(xv[q])
                for r in range(d):
                    gWt[i, r] += np.float64(u[r]) * x
        for q in range(k):
            xd[idx[q]] = 0
        nbad, first_bad = _tally(loss, s, nbad, first_bad)
        loss_sum += loss
    return loss_sum, nbad, first_bad


# --------------------------------------------------------------------------
# many samples at once, as dense columns (small n and d)
#
# The samples of run_grad (:func:`fastsuper.core.laws.draw_dense`), a
# sub-batch of ``R`` at a time, and every step a loop over the sub-batch that
# the compiler vectorises, the features an outer dense loop (an inactive
# feature is a zero: its terms ``w * 0`` add nothing; its encoder term is
# left out).  Per sample the sums run over features in order, without fused
# multiply-adds (plain ``njit``: the numbers do not depend on the compiler's
# choices).  Over samples, sample ``s`` of the batch is added to slot ``s mod
# R`` of per-slot sums, which are added up in slot order at the end of the
# batch: a fixed order, whatever the threads.


@njit(inline="always")
def _residual_relu_select(zj, xj, impj, imp2j):
    """:func:`_residual_relu` by selects (they vectorise better): the same numbers for finite ``z``.

    ``z = +inf`` gives an infinite loss instead of NaN; ``-inf`` and NaN give NaN.
    """
    pos = zj > 0
    f = zj if pos else zj * 0
    e = f - xj
    e64 = np.float64(f) - np.float64(xj)
    g = imp2j * e
    return impj * (e64 * e64), g if pos else g * 0


@njit(inline="always")
def _weights(Wt, j, D):
    """Row ``j`` of ``Wt`` as four scalars (zero beyond ``D``, a constant 1, 2 or 4)."""
    zero = Wt[j, 0] - Wt[j, 0]
    return (
        Wt[j, 0],
        Wt[j, 1] if D > 1 else zero,
        Wt[j, 2] if D > 2 else zero,
        Wt[j, 3] if D > 2 else zero,
    )


@njit(inline="always")
def _add_columns(M, r, w0, w1, w2, w3, x, D):
    """``M[c, r] += w_c x`` for the ``D`` (a constant: 1, 2 or 4) columns."""
    M[0, r] += w0 * x
    if D > 1:
        M[1, r] += w1 * x
    if D > 2:
        M[2, r] += w2 * x
        M[3, r] += w3 * x


@njit(inline="always")
def _dense_codes(Wt, m, X, H, D):
    """``H = W X`` (``H[c] = 0 + sum_j W[c, j] X[j]`` in feature order), ``D`` a constant."""
    zero = Wt[0, 0] - Wt[0, 0]
    for c in range(D):
        hc = H[c]
        for r in range(m):
            hc[r] = zero
    for j in range(Wt.shape[0]):
        w0, w1, w2, w3 = _weights(Wt, j, D)
        xj = X[j]
        for r in range(m):  # one loop per feature: the columns of H unrolled
            _add_columns(H, r, w0, w1, w2, w3, xj[r], D)


@njit(inline="always")
def _dense_forward_d(Wt, b, imp, imp2, act, m, X, H, G, V, loss, D):
    """:func:`_dense_forward` for ``D`` (a constant) columns of ``Wt``."""
    relu = act.code == RELU_POWER and act.ia == 1
    _dense_codes(Wt, m, X, H, D)
    zero = Wt[0, 0] - Wt[0, 0]
    for r in range(m):
        loss[r] = 0.0
    for c in range(D):
        vc = V[c]
        for r in range(m):
            vc[r] = zero
    for j in range(Wt.shape[0]):
        w0, w1, w2, w3 = _weights(Wt, j, D)
        bj = b[j]
        gj = G[j]
        xj = X[j]
        impj = imp[j]
        imp2j = imp2[j]
        for r in range(m):  # z, the residual and W g: one loop per feature
            z = bj + w0 * H[0, r]
            if D > 1:
                z += w1 * H[1, r]
            if D > 2:
                z += w2 * H[2, r]
                z += w3 * H[3, r]
            if relu:
                lj, g = _residual_relu_select(z, xj[r], impj, imp2j)
            else:
                lj, g = _residual(z, xj[r], impj, imp2j, act)
            loss[r] += lj
            gj[r] = g
            _add_columns(V, r, w0, w1, w2, w3, gj[r], D)  # g in the compute dtype


@njit
def _dense_forward(Wt, b, imp, imp2, act, m, X, H, G, V, loss):
    """``H = W X``, ``G = dloss/dz`` (in place of ``z``), ``V = W G``, ``loss`` per sample.

    ``D = Wt.shape[1]`` is 1, 2 or 4.  Compiled for wide vectors, not inlined
    (:func:`~fastsuper.core.vecmath.wide_vectors`).
    """
    wide_vectors()
    D = Wt.shape[1]
    if D == 1:
        _dense_forward_d(Wt, b, imp, imp2, act, m, X, H, G, V, loss, 1)
    elif D == 2:
        _dense_forward_d(Wt, b, imp, imp2, act, m, X, H, G, V, loss, 2)
    else:
        _dense_forward_d(Wt, b, imp, imp2, act, m, X, H, G, V, loss, 4)


@njit(inline="always")
def _slot_add(s, j, r, h, v, g, x, keep):
    """``s[j, r] += h g`` then ``+= v x`` (``x != 0`` only), where ``keep``."""
    t = s[j, r] + np.float64(h) * g
    t = t + np.float64(v) * x if x != 0.0 else t
    s[j, r] = t if keep else s[j, r]


@njit(inline="always")
def _dense_slots_d(m, mp, X, H, G, V, sW, sb, D):
    """The ``sW``, ``sb`` part of :func:`_dense_slots`, ``D`` (a constant) columns."""
    for j in range(G.shape[0]):
        xj = X[j]
        gj = G[j]
        sbj = sb[j]
        for r in range(mp):  # one loop per feature: the columns unrolled
            keep = r < m
            g = np.float64(gj[r])
            x = np.float64(xj[r])
            t = sbj[r] + g
            sbj[r] = t if keep else sbj[r]
            _slot_add(sW[0], j, r, H[0, r], V[0, r], g, x, keep)
            if D > 1:
                _slot_add(sW[1], j, r, H[1, r], V[1, r], g, x, keep)
            if D > 2:
                _slot_add(sW[2], j, r, H[2, r], V[2, r], g, x, keep)
                _slot_add(sW[3], j, r, H[3, r], V[3, r], g, x, keep)


@njit
def _dense_slots(m, mp, X, H, G, V, loss, sW, sb, sl):
    """Add the sub-batch's terms to the per-slot sums ``sW`` (D, n, R), ``sb`` (n, R), ``sl`` (R).

    Per sample ``r < m``, ``sW[c, j] += h_c g_j`` then ``+= u_c x_j`` (active
    ``j`` only); the loops run over ``mp >= m`` columns, the extra ones left
    as they are.  Returns how many sample losses are not finite.  Compiled
    for wide vectors, not inlined.
    """
    wide_vectors()
    bad = 0
    for r in range(mp):
        lr = loss[r]
        keep = r < m
        sl[r] = sl[r] + lr if keep else sl[r]
        bad += keep and lr - lr != 0.0  # inf or NaN
    D = H.shape[0]
    if D == 1:
        _dense_slots_d(m, mp, X, H, G, V, sW, sb, 1)
    elif D == 2:
        _dense_slots_d(m, mp, X, H, G, V, sW, sb, 2)
    else:
        _dense_slots_d(m, mp, X, H, G, V, sW, sb, 4)
    return bad


@njit(inline="always")
def _dense_empty(Wt, b, imp, imp2, act, X, H, G, V, loss):
    """(loss, ``G[:, 0]``) of a sample without active features (column 0 of the scratch)."""
    for j in range(X.shape[0]):
        X[j, 0] = 0
    _dense_forward(Wt, b, imp, imp2, act, 1, X, H, G, V, loss)
    return loss[0]


@njit(inline="always")
def _dense_batch(Wt, b, imp, imp2, act, law, m, work):
    """Draw the rest of the ``m`` buffered samples, add their terms to the slots.

    Returns (number of non-finite sample losses, first such sample or -1).
    """
    keys, Q, words, P, U, X, H, G, V, loss, sW, sb, sl, idx, ge, bk = work
    mp = dense_width(m)
    draw_dense(bk, m, law, words, P, U, X)
    _dense_forward(Wt, b, imp, imp2, act, mp, X, H, G, V, loss)
    bad = _dense_slots(m, mp, X, H, G, V, loss, sW, sb, sl)
    if bad > 0:
        for r in range(m):
            if not math.isfinite(loss[r]):
                return bad, idx[r]
    return bad, -1


@njit(inline="always")
def _dense_collect(law, q, keys, o, m, bk, idx, s0, fill):
    """Append the samples ``keys[o:o+m]`` (numbers ``s0 ..``) with an active feature to the buffer.

    ``q[o + r]``: 1 where sample ``r`` has one, else 0 (all have: ``p = 1``);
    returns the new fill.
    """
    if law.pmax >= 1.0:
        for r in range(m):
            bk[fill + r] = keys[o + r]
            idx[fill + r] = s0 + r
        return fill + m
    for r in range(m):  # no branch: every sample is written, the kept ones advance
        bk[fill] = keys[o + r]
        idx[fill] = s0 + r
        fill += q[o + r]
    return fill


@njit
def run_grad_dense(Wt, b, imp, imp2, act, skey, first, count, law, work, gWt, gb):
    """:func:`run_grad` for ``d <= 4``, many samples at a time (its samples).

    ``Wt`` must be finite, ``law`` a law of
    :func:`~fastsuper.core.laws.dense_sampling`, ``work`` the scratch of
    :func:`_dense_scratch`; the other arguments as for :func:`run_grad` (the
    gradient is added to ``gWt`` (n, D) and ``gb``).  Returns ``(loss sum,
    number of non-finite losses, first such sample or -1)``.

    Samples without an active feature all have the same loss and gradient
    (``h = 0``, ``z = b``): they are counted, and their terms added once, times
    their number, after the sums of the others.  Keys, and whether a sample
    has an active feature, come ``len(keys)`` samples at a time; the samples with an active
    feature are collected in order, ``R`` samples at a time, into a buffer of
    ``2 R`` samples (``R = len(sl) / 2``), processed when it holds ``R`` or
    more and at the end; its ``r``-th sample goes to slot ``r``.
    """
    work = _borrowed_work(work)
    keys, Q, words, P, U, X, H, G, V, loss, sW, sb, sl, idx, ge, bk = work
    law = borrowed_law(law)
    n, D = Wt.shape
    R = sl.shape[0] // 2
    K = keys.shape[0]
    loss_e = _dense_empty(Wt, b, imp, imp2, act, X, H, G, V, loss)
    for j in range(n):
        ge[j] = np.float64(G[j, 0])
    sW[:] = 0.0
    sb[:] = 0.0
    sl[:] = 0.0
    nbad = 0
    first_bad = -1
    first_empty = -1
    kept = 0
    fill = 0
    end = first + count
    for k0 in range(first, end, K):
        mk = min(K, end - k0)
        if law.pmax < 1.0 and law.pmax > 0.0:
            first_active(skey, k0, mk, law, words, keys, Q)
        elif law.pmax >= 1.0:
            dense_keys(skey, k0, mk, keys)
        for s0 in range(k0, k0 + mk, R):
            m = min(R, end - s0)
            before = fill
            if law.pmax > 0.0:
                fill = _dense_collect(law, Q, keys, s0 - k0, m, bk, idx, s0, fill)
            kept += fill - before
            if first_empty < 0 and not math.isfinite(loss_e) and fill - before < m:
                for r in range(m):
                    if law.pmax <= 0.0 or Q[s0 - k0 + r] == 0:
                        first_empty = s0 + r
                        break
            if fill >= R or s0 + R >= end:
                nb, fb = _dense_batch(Wt, b, imp, imp2, act, law, fill, work)
                if first_bad < 0:
                    first_bad = fb
                nbad += nb
                fill = 0
    empty = count - kept
    if not math.isfinite(loss_e) and empty > 0:
        nbad += empty
        if first_bad < 0 or first_empty < first_bad:
            first_bad = first_empty
    loss_sum = _fold(sl) + empty * loss_e
    for j in range(n):
        gb[j] += _fold(sb[j]) + empty * ge[j]
        for c in range(D):
            gWt[j, c] += _fold(sW[c, j])
    return loss_sum, nbad, first_bad


@njit(inline="always")
def _fold(s):
    """The sum of the slots ``s`` (length a power of 2), halves added element by element."""
    w = s.shape[0]
    while w > 1:
        w //= 2
        for r in range(w):
            s[r] += s[r + w]
    return s[0]


@njit(inline="always")
def _borrowed_work(work):
    """:func:`_dense_scratch` with borrowed views (no reference counting in the loops)."""
    keys, Q, words, P, U, X, H, G, V, loss, sW, sb, sl, idx, ge, bk = work
    return (
        borrow(keys), borrow(Q), borrow(words), borrow(P), borrow(U), borrow(X), borrow(H),
        borrow(G), borrow(V), borrow(loss), borrow(sW), borrow(sb), borrow(sl), borrow(idx),
        borrow(ge), borrow(bk),
    )  # fmt: skip


@kernel_njit
def _dense_scratch(W, D, rows):
    """Scratch of :func:`run_grad_dense`: weights ``W`` (d, n), width ``D``, ``rows = 2**k``.

    Buffers of ``2 rows`` samples (at least :func:`~fastsuper.core.laws.dense_width`
    of it), keys for ``DENSE_KEY_BLOCKS * rows``; the integer arrays start at 0.
    """
    d, n = W.shape
    dt = W.dtype
    rows = max(rows, config.DENSE_PAD // 2)
    b = dense_width(2 * rows)  # the buffer
    k = dense_width(config.DENSE_KEY_BLOCKS * rows)
    return (
        np.zeros(k, dtype=np.uint64),
        np.zeros(k, dtype=np.int64),
        dense_words(n),
        np.zeros((max(n + 1, 3), b), dtype=np.int64),
        np.empty(b),
        np.zeros((n + 1, b), dtype=dt),
        np.empty((D, b), dtype=dt),
        np.empty((n, b), dtype=dt),
        np.empty((D, b), dtype=dt),
        np.empty(b),
        np.empty((D, n, 2 * rows)),
        np.empty((n, 2 * rows)),
        np.empty(2 * rows),
        np.empty(b, dtype=np.int64),
        np.empty(n),
        np.zeros(b, dtype=np.uint64),
    )


@njit(inline="always")
def _tally(row_loss, sample, nbad, first_bad):
    """``(nbad, first_bad)`` after a row (sample number ``sample``) of loss ``row_loss``: the
    rows whose loss is not finite counted, the first one's sample kept."""
    if not math.isfinite(row_loss):
        if nbad == 0:
            first_bad = sample
        nbad += 1
    return nbad, first_bad


@njit(inline="always")
def _residual_rows_single(Zc, Xc, b, imp2, count, gb, first, gbs):
    """:func:`_residual_rows` for ReLU in float32: each row's loss summed in float32.

    ``l_j = (2 I_j e_j) e_j / 2`` and ``g_j`` as :func:`_residual_relu` gives
    them, the row's sum of ``l_j`` in float32 then in float64 across rows,
    and ``G``'s column sums in the float32 ``gbs`` before ``gb`` (a sub-batch's
    sums in the compute dtype, as its products' are).  16 lanes a vector
    without conversions: twice as fast as the float64 loss terms.
    """
    n = Zc.shape[1]
    zero = Zc.dtype.type(0.0)
    for j in range(n):
        gbs[j] = zero
    loss_sum = 0.0
    nbad = 0
    first_bad = -1
    for row in range(count):
        loss = zero
        for j in range(n):
            zj = Zc[row, j] + b[j]
            on = (zj - zj) + (zj > 0)  # as in _residual_relu: NaN for z = +-inf or NaN
            e = zj * on - Xc[row, j]
            ge = imp2[j] * e
            loss += ge * e
            gj = ge * on
            Zc[row, j] = gj
            gbs[j] += gj
        row_loss = 0.5 * np.float64(loss)
        nbad, first_bad = _tally(row_loss, first + row, nbad, first_bad)
        loss_sum += row_loss
    for j in range(n):
        gb[j] += gbs[j]
    return loss_sum, nbad, first_bad


@njit(inline="always")
def _residual_rows(Zc, Xc, b, imp, imp2, act, count, gb, first, gbs):
    """The residual step of :func:`run_grad_blas`: ``Zc`` (``H W``) becomes ``G``.

    Per element :func:`_residual_relu` or :func:`_residual` (float64 losses),
    summed per row; ``gb += G``; ReLU in float32 by :func:`_residual_rows_single`
    (``gbs`` its scratch).  Returns ``(loss sum, number of rows whose loss is
    not finite, first such sample: first + row, or -1)``.
    """
    n = Zc.shape[1]
    relu = act.code == RELU_POWER and act.ia == 1
    if relu and Zc.itemsize == 4:
        return _residual_rows_single(Zc, Xc, b, imp2, count, gb, first, gbs)
    loss_sum = 0.0
    nbad = 0
    first_bad = -1
    for row in range(count):
        loss = 0.0
        for j in range(n):
            if relu:
                lj, gj = _residual_relu(Zc[row, j] + b[j], Xc[row, j], imp[j], imp2[j])
            else:
                lj, gj = _residual(Zc[row, j] + b[j], Xc[row, j], imp[j], imp2[j], act)
            loss += lj
            Zc[row, j] = gj
            gb[j] += gj
        nbad, first_bad = _tally(loss, first + row, nbad, first_bad)
        loss_sum += loss
    return loss_sum, nbad, first_bad


def _bias_sums(gb, gbs):
    """Where a sub-batch sums the bias gradient: ``gb`` (float64) itself, else ``gbs``."""
    return gb if gbs.dtype == np.float64 else gbs


@overload(_bias_sums, inline="always")
def _bias_sums_typed(gb, gbs):
    if gbs.dtype == types.float64:
        return lambda gb, gbs: gb
    return lambda gb, gbs: gbs


@njit(inline="always")
def _gram_relu(ptr, cidx, Xc, Mg, Sg, b, imp2, count, gb, first, work):
    """The Gram-space sub-batch of :func:`run_grad_blas` for ReLU
    (:func:`~fastsuper.core.sparse_rows.gram_relu_rows`): ``S``, ``gb`` and
    the loss, returned as :func:`_residual_rows` returns it.  The bias
    gradient's sums as there (float64 directly, float32 in the sub-batch's
    float32 ``gbs``); each row's loss ``sum_j I_j e_j^2`` in the compute dtype,
    then float64.  The listed entries of ``Xc`` are zero on return.
    """
    gbs, rowloss = work[20], work[30]
    n = Xc.shape[1]
    for row in range(count):
        rowloss[row] = 0.0
    single = Xc.itemsize != 8
    if single:
        for j in range(n):
            gbs[j] = 0
    gram_relu_rows(ptr, cidx, Xc, Mg, Sg, count, n, b, imp2, _bias_sums(gb, gbs), rowloss, True)
    if single:
        for j in range(n):
            gb[j] += gbs[j]
    loss_sum = 0.0
    nbad = 0
    first_bad = -1
    for row in range(count):
        row_loss = 0.5 * rowloss[row]
        nbad, first_bad = _tally(row_loss, first + row, nbad, first_bad)
        loss_sum += row_loss
    return loss_sum, nbad, first_bad


@kernel_njit
def run_grad_blas(
    W, b, imp, imp2, act, skey, first, count, law, dense_x, gram, chunked, work, gW, gWt, gb
):
    """:func:`run_grad` for a sub-batch of ``count <= X.shape[0]`` samples, with BLAS.

    The sub-batch is sampled into the dense ``X`` (rows, n; zeros on entry
    and exit) and the places of its entries in CSR form (``ptr``, ``cidx``; the
    values, ``cval``, are scratch of the sampler).  U[0, 1] values with every
    feature active or independent features drawn a chunk of gaps at a time go
    straight into ``X`` where the rows are wide (:func:`draw_rows_wide`), their
    places then listed by :func:`~fastsuper.core.sparse_rows.compact_rows`
    unless ``dense_x`` (where nothing needs them), or where ``dense_x``
    (:func:`draw_row_hashed`); other rows are drawn as places and values, then
    written into ``X``.  Then ``Z = H W``,
    ``dW += H^T G`` and ``U = G W^T`` are matrix products (``np.dot``, BLAS;
    ``U`` by blocks of rows from :data:`~fastsuper.core.config.TRAIN_GWT_FROM` features).
    ``H = X W^T`` and the encoder term ``dW += U^T X`` are products too when
    ``dense_x``, else the sparse-row loops of :mod:`fastsuper.core.sparse_rows`
    over the CSR copy (:func:`~fastsuper.core.sparse_rows.gather_rows` from the
    padded ``Wg``, :func:`~fastsuper.core.sparse_rows.scatter_rows` into ``Tg``,
    then added to ``gWt``).  Products and sparse loops run in the
    compute dtype, sums over sub-batches in float64 (``gW``, ``gWt``, ``gb``
    as in :func:`run_grad`).  ``work`` is the scratch of :func:`_blas_scratch`
    (``T`` and ``T2`` (D, n) in it are scratch too; the products take the weights
    from its ``Wt`` (n, D) and ``W`` (D, n), :func:`fill_blas_weights` of ``W``, and
    ``H``, ``U`` have ``D = blas_width(d)`` columns, the extra ones zero in ``W``,
    ``Wt`` and ``H``).  With ``chunked`` (a law of
    :func:`~fastsuper.core.laws.chunked_bernoulli`) the active sets are drawn
    by :func:`draw_gaps_hashed`, the sets of
    :func:`~fastsuper.core.laws.draw_bernoulli_chunked`; U[0, 1] values from the
    tabulated counter hashes of ``work`` (:func:`counter_tables`).

    With ``gram`` (and not ``dense_x``) the sub-batch works in the Gram space
    instead, without ``H`` and without products: ``Z = X M``
    (:func:`~fastsuper.core.sparse_rows.gather_rows` from ``M = W^T W``, the
    padded ``Mg`` of :func:`gram_weights`), the residual, then ``S += X^T G``
    (:func:`~fastsuper.core.sparse_rows.scatter_rows`, in the compute dtype;
    float32 sums go into the float64 ``S64`` after each sub-batch);
    :func:`gram_gradient` adds ``W (S + S^T)`` to ``gW`` once the step's
    sub-batches are done.
    """
    ptr, cidx, cval, X, H, Z, U, T, T2, ubuf, gbuf, vbuf, vh, gh = work[:14]
    Xf, wbuf, wgbuf, wvbuf, Wtp, Wp, gbs, Wg, Tg = work[14:23]
    Mg, Sg, S64 = work[23:26]
    blaw, bidx, bval = borrowed_law(law), borrow(cidx), borrow(cval)  # no counting per row
    ubuf, ubits, gbuf = borrow(ubuf), borrow(ubuf.view(np.int64)), borrow(gbuf)
    vh, gh, vbuf, Xb = borrow(vh), borrow(gh), borrow(vbuf), borrow(X)
    chunked = chunked and chunked_bernoulli(blaw)
    every = blaw.ngrp == 0 and blaw.kfix < 0 and not blaw.thin and blaw.pmax >= 1.0
    uniform_values = blaw.code == UNIFORM
    d, n = W.shape
    Xc = X[:count]
    Hc = H[:count]
    Zc = Z[:count]
    Uc = U[:count]
    # ---- sample the rows (the samples of run_grad, bit for bit)
    fast = uniform_values and (every or chunked)
    wide = fast and (every or n * blaw.pmax >= config.TRAIN_WIDE_GAPS_FROM)
    direct = fast and (wide or dense_x)  # U[0, 1] values straight into X
    if wide:
        draw_rows_wide(skey, first, count, law, Xf, wbuf, wgbuf, wvbuf, vh, gh)
        count_draw = 0
    else:
        count_draw = count
    nnz = 0
    for row in range(count_draw):
        key = sample_key(skey, first + row)
        ptr[row] = nnz
        if direct:
            if every:
                for a in range(n):
                    Xb[row, a] = hashed_uniform(key, vh[a])
            else:
                draw_row_hashed(key, blaw, Xb, row, ubuf, ubits, gbuf, vbuf, gh, vh)
            continue
        if every:  # every feature active
            for a in range(n):
                bidx[nnz + a] = a
            k = n
        elif chunked:
            k = draw_gaps_hashed(key, blaw, bidx, nnz, ubuf, ubits, gbuf, gh)
        else:
            k = draw_active(key, blaw, bidx, nnz)
        if uniform_values:  # rounded to the compute dtype
            for a in range(k):
                bval[nnz + a] = hashed_uniform(key, vh[a])
        else:
            draw_values(key, k, blaw, bval, nnz)
        for e in range(nnz, nnz + k):
            Xc[row, bidx[e]] = bval[e]
        nnz += k
    if direct:  # the CSR places from X
        if not dense_x:
            compact_rows(Xc, count, ptr, cidx)
    else:
        ptr[count] = nnz
    if gram and not dense_x:  # z = W^T W x + b, then S += x g^T
        if act.code == RELU_POWER and act.ia == 1:  # a row at a time, without Z; X reset
            loss_sum, nbad, first_bad = _gram_relu(
                ptr, cidx, Xc, Mg, Sg, b, imp2, count, gb, first, work
            )
        else:
            gather_rows(ptr, cidx, Xc, Mg, Zc, count, n)
            loss_sum, nbad, first_bad = _residual_rows(
                Zc, Xc, b, imp, imp2, act, count, gb, first, gbs
            )
            scatter_rows(ptr, cidx, Xc, Zc, Sg, count, n)
            for row in range(count):
                for e in range(ptr[row], ptr[row + 1]):
                    Xc[row, cidx[e]] = 0
        if Sg.itemsize != 8:  # the sub-batch's float32 sums into float64
            for i in range(n):
                for j in range(n):
                    S64[i, j] += Sg[i, j]
                    Sg[i, j] = 0
        return loss_sum, nbad, first_bad
    # ---- h = W x
    if dense_x:
        np.dot(Xc, Wtp, Hc)
    else:
        gather_rows(ptr, cidx, Xc, Wg, Hc, count, d)
    # ---- z = W^T h + b, loss and g (in place of z)
    np.dot(Hc, Wp, Zc)
    loss_sum, nbad, first_bad = _residual_rows(Zc, Xc, b, imp, imp2, act, count, gb, first, gbs)
    # ---- decoder term h g^T; u = W g; encoder term u x^T
    np.dot(Hc.T, Zc, T)
    if n >= TRAIN_GWT_FROM:  # u = W g: rows of G against rows of W, a block at a time
        for lo in range(0, count, TRAIN_GWT_ROWS):
            hi = min(lo + TRAIN_GWT_ROWS, count)
            np.dot(Zc[lo:hi], Wp.T, Uc[lo:hi])
    else:
        np.dot(Zc, Wtp, Uc)
    if dense_x:
        np.dot(Uc.T, Xc, T2)
        add_in_order(gW, T, T2)
    else:
        for r in range(d):
            for j in range(n):
                gW[r, j] += T[r, j]
        scatter_rows(ptr, cidx, Xc, Uc, Tg, count, d)
        for i in range(n):
            for r in range(d):
                gWt[i, r] += Tg[i, r]
            for r in range(Tg.shape[1]):
                Tg[i, r] = 0
    # ---- reset X
    if dense_x:
        for row in range(count):
            for j in range(n):
                Xc[row, j] = 0
    else:
        for row in range(count):
            for e in range(ptr[row], ptr[row + 1]):
                Xc[row, cidx[e]] = 0
    return loss_sum, nbad, first_bad


_MANT = (1 << 52) - 1
_TWO_M52 = 2.0**-52


@njit
def counter_tables(n):
    """Counter hashes (:func:`~fastsuper.core.rng.counter_hash`) of the samples of ``n`` features.

    ``(vh, gh)``: ``vh[a]`` of the value counter ``VALUE_BASE + 2a`` of the
    ``a``-th active feature, ``gh[c]`` of the gap counter ``c``, for every ``a``
    and ``c`` that :func:`draw_gaps_hashed` and :func:`draw_row_hashed` may
    reach (at most ``n + 1`` gaps, drawn :data:`~fastsuper.core.laws.GAP_CHUNK`
    or :data:`WIDE_GAPS` at a time).
    """
    m = (n // WIDE_GAPS + 2) * WIDE_GAPS
    vh = np.empty(m, dtype=np.uint64)
    gh = np.empty(m, dtype=np.uint64)
    for c in range(m):
        vh[c] = counter_hash(VALUE_BASE + 2 * c)
        gh[c] = counter_hash(c)
    return vh, gh


@njit(inline="always")
def draw_gaps_hashed(key, law, out_idx, at, ubuf, ubits, gbuf, gh):
    """:func:`~fastsuper.core.laws.draw_bernoulli_chunked` with the gap counters' hashes ``gh``.

    The same active set bit for bit (``gh`` from :func:`counter_tables`, ``ubuf``
    of length :data:`~fastsuper.core.laws.GAP_CHUNK`): each uniform costs one
    mixing of the key instead of two.
    """
    n = law.n
    log1mp = law.log1mp
    scale, margin, last = gap_bounds(law)
    width = ubuf.shape[0]
    count = at
    pos = -1
    c = 0
    while True:
        for j in range(width):
            ubuf[j] = hashed_uniform(key, gh[c + j])
        estimate_gaps(ubits, gbuf, width, scale, margin, last)
        for j in range(width):
            gap = settled_gap(gbuf[j], ubuf[j], log1mp, n)
            pos += gap + 1
            if pos >= n:
                return count - at
            out_idx[count] = pos
            count += 1
        c += width


@njit(inline="always")
def _gap_chunk(key, c, width, ubuf, ubits, gbuf, vbuf, gh, vh, bounds):
    """Gap counters ``c .. c+width-1``: their uniforms (``ubuf``), first gap estimates
    (``gbuf``) and the U[0, 1] values of the same active features (``vbuf``)."""
    scale, margin, last = bounds
    for j in range(width):
        ubuf[j] = hashed_uniform(key, gh[c + j])
        vbuf[j] = hashed_uniform(key, vh[c + j])
    estimate_gaps(ubits, gbuf, width, scale, margin, last)


@njit(inline="always")
def _row_start(law, ubuf):
    """``(n, log(1 - p), gap_bounds(law), chunk width)``: what the row samplers start from."""
    return law.n, law.log1mp, gap_bounds(law), ubuf.shape[0]


@njit(inline="always")
def draw_row_hashed(key, law, X, row, ubuf, ubits, gbuf, vbuf, gh, vh):
    """:func:`draw_gaps_hashed` with U[0, 1] values, written straight into ``X[row]``.

    The active set of :func:`draw_gaps_hashed` and the values of
    :func:`~fastsuper.core.laws.draw_values` (``vh`` from :func:`counter_tables`;
    ``vbuf`` float64 scratch of length :data:`~fastsuper.core.laws.GAP_CHUNK`),
    each rounded once to the dtype of ``X``; the values of a chunk of gaps are
    drawn with it.  Returns the number of active features.
    """
    n, log1mp, bounds, width = _row_start(law, ubuf)
    pos = -1
    c = 0
    while True:
        _gap_chunk(key, c, width, ubuf, ubits, gbuf, vbuf, gh, vh, bounds)
        for j in range(width):
            gap = settled_gap(gbuf[j], ubuf[j], log1mp, n)
            pos += gap + 1
            if pos >= n:
                return c + j
            X[row, pos] = vbuf[j]
        c += width


#: gaps per chunk of :func:`draw_rows_wide` after a row's first chunk (:func:`wide_first_chunk`)
WIDE_GAPS = 32


@njit
def wide_first_chunk(n, p, room):
    """Gaps in the first chunk of a row of :func:`draw_rows_wide` (``n`` features, each active
    with probability ``p``; at most ``room``, the buffers' length).

    The expected gaps of a row (``n p + 1``, the last one ending it) and half
    their standard deviation, rounded up to a multiple of 8 (one or two
    vectors): most rows take one chunk, and a chunk rarely computes many
    gaps past the row's end.  At least :data:`WIDE_GAPS` // 2, at most ``n +
    1`` rounded up.
    """
    mean = n * p + 1.0
    w = int(math.ceil((mean + 0.5 * math.sqrt(n * p * (1.0 - p))) / 8.0)) * 8
    cap = (n + 1 + 7) // 8 * 8
    return max(WIDE_GAPS // 2, min(w, cap, room))


@njit(inline="always")
def _draw_row_flat(key, law, Xf, at, ubuf, ubits, gbuf, vbuf, gh, vh, first_width):
    """:func:`draw_row_hashed` into ``Xf[at:at + n]``, a chunk of gaps without a branch per gap.

    The first chunk has ``first_width`` gaps, later ones
    :data:`WIDE_GAPS` (``ubuf``, ``gbuf``, ``vbuf`` at least that long).  Every
    gap of a chunk writes its value at its position, clamped to ``at + n``:
    the entry after the row, set back to zero on return (``Xf`` needs it).
    The rare gaps that :func:`~fastsuper.core.laws.settled_gap` must settle by
    the formula are settled first, for the whole chunk, so that the loop
    placing the values has no branch (and an unsigned index, no wraparound).
    """
    n, log1mp, bounds, _ = _row_start(law, ubuf)
    end = at + n
    q = at - 1  # the place of the last value written
    c = 0
    width = first_width
    while q < end:
        _gap_chunk(key, c, width, ubuf, ubits, gbuf, vbuf, gh, vh, bounds)
        unsettled = False
        for j in range(width):
            unsettled |= gbuf[j] < 0
        if unsettled:
            for j in range(width):
                gbuf[j] = settled_gap(gbuf[j], ubuf[j], log1mp, n)
        for j in range(width):
            q += gbuf[j] + 1
            Xf[np.uint64(min(q, end))] = vbuf[j]
        c += width
        width = WIDE_GAPS
    Xf[end] = 0


@kernel_njit
def draw_rows_wide(skey, first, count, law, Xf, ubuf, gbuf, vbuf, vh, gh):
    """Samples ``first .. first+count-1`` of key ``skey``, U[0, 1] values, into the rows of ``Xf``.

    For a law with every feature active or of
    :func:`~fastsuper.core.laws.chunked_bernoulli` with many active features:
    the rows of :func:`draw_row_hashed` (``Xf`` the flat ``X``, zero on entry,
    with one entry more), a row's first chunk of gaps as wide as
    :func:`wide_first_chunk` says (at most the length of ``ubuf``, ``gbuf``
    and ``vbuf``, at least :data:`WIDE_GAPS`), later ones :data:`WIDE_GAPS`,
    and no branch per gap; compiled for wide vectors (the counter hashes are
    64-bit products).  ``vh, gh = counter_tables(n)``.
    """
    wide_vectors()
    blaw = borrowed_law(law)
    ubuf, ubits, gbuf = borrow(ubuf), borrow(ubuf.view(np.int64)), borrow(gbuf)
    vh, gh, vbuf, Xb = borrow(vh), borrow(gh), borrow(vbuf), borrow(Xf)
    n = blaw.n
    w1 = wide_first_chunk(n, blaw.pmax, min(ubuf.shape[0], gbuf.shape[0], vbuf.shape[0]))
    for row in range(count):
        key = sample_key(skey, first + row)
        if blaw.pmax >= 1.0:
            for a in range(n):
                Xb[row * n + a] = hashed_uniform(key, vh[a])
        else:
            _draw_row_flat(key, blaw, Xb, row * n, ubuf, ubits, gbuf, vbuf, gh, vh, w1)


@njit
def add_in_order(gW, T, T2):
    """``gW += T`` then ``gW += T2``, in one pass (no fastmath: the two additions stay in order)."""
    d, n = gW.shape
    for r in range(d):
        for j in range(n):
            gW[r, j] = (gW[r, j] + T[r, j]) + T2[r, j]


@kernel_njit
def add_transposed(gW, gWt):
    """``gW += gWt[:, :d].T`` and zero ``gWt`` (n, D)."""
    d, n = gW.shape
    for i in range(n):
        for r in range(d):
            gW[r, i] += gWt[i, r]
        for r in range(gWt.shape[1]):
            gWt[i, r] = 0.0


@kernel_njit
def all_finite(x):
    """Whether every entry of the array ``x`` is finite.

    Counts the entries outside ``(-inf, inf)`` by an ordered comparison (false
    for NaN): the kernels' fastmath flags let the compiler fold ``v - v`` to 0.
    """
    bad = 0
    for v in x.reshape(-1):
        bad += not abs(v) < math.inf
    return bad == 0


@njit
def padded_width(d):
    """Columns of the transposed weights: 2 or 4 for small ``d`` (scalar code paths), else d."""
    if d <= 2:
        return 2
    if d <= 4:
        return 4
    return d


@kernel_njit
def fill_transposed(W, Wt):
    """``Wt[:, :d] = W.T`` (the padding columns are left as they are: zeros)."""
    d, n = W.shape
    for i in range(n):
        for r in range(d):
            Wt[i, r] = W[r, i]


# --------------------------------------------------------------------------
# sampled loss and gradient of one block of samples
#
# fastsuper.train.adam.loss_grad runs blocks on a pool of threads (the kernels
# release the GIL), each block into its own buffers, merged in block order.
# A ``prange`` kernel would do the same with the same numbers, but Numba
# re-optimises the whole per-sample body inside every parallel kernel, which
# multiplies its compilation time per dtype.


@kernel_njit
def _scratch(W, D):
    """Per-sample scratch of :func:`run_grad` for weights ``W`` (d, n) and width ``D``."""
    d, n = W.shape
    dt = W.dtype
    return (
        np.empty(n, dtype=np.int64),
        np.empty(n, dtype=np.float64),
        np.empty(n, dtype=dt),
        np.zeros(n, dtype=dt),
        np.empty(d, dtype=dt),
        np.empty(n, dtype=dt),
        np.empty(n, dtype=dt),
        np.empty(d, dtype=dt),
        np.zeros((n, D)),
    )


@kernel_njit
def prepare(W, imp):
    """(``Wt``: ``W.T`` zero-padded to :func:`padded_width` columns, ``2 imp`` in W's dtype)."""
    d, n = W.shape
    Wt = np.zeros((n, padded_width(d)), dtype=W.dtype)
    fill_transposed(W, Wt)
    imp2 = np.empty(n, dtype=W.dtype)
    for j in range(n):
        imp2[j] = 2.0 * imp[j]
    return Wt, imp2


@kernel_njit
def grad_block(W, Wt, b, imp, imp2, act, skey, first, count, law, gW, gb):
    """Loss and gradient sums of samples ``first .. first+count-1`` of key ``skey``.

    ``Wt, imp2 = prepare(W, imp)``; ``act`` and ``law`` the bundles of the
    model and the input law (either sparsity pattern); the gradient sums are
    added to the float64 ``gW`` (d, n) and ``gb`` (n).  Returns ``(loss sum,
    number of non-finite sample losses, first such sample index or -1)``.
    """
    work = _scratch(W, Wt.shape[1])
    ls, nb, fb = run_grad(W, Wt, b, imp, imp2, act, skey, first, count, law, work, gW, gb)
    add_transposed(gW, work[-1])
    return ls, nb, fb


@kernel_njit
def grad_block_dense(W, Wt, b, imp, imp2, act, skey, first, count, law, gW, gb):
    """:func:`grad_block` by :func:`run_grad_dense` (``d <= 4``, a law of
    :func:`~fastsuper.core.laws.dense_sampling`, finite ``W``): the same samples, other sums.
    """
    D = Wt.shape[1]
    work = _dense_scratch(W, D, config.DENSE_ROWS)
    gWt = np.zeros((W.shape[1], D))
    ls, nb, fb = run_grad_dense(Wt, b, imp, imp2, act, skey, first, count, law, work, gWt, gb)
    add_transposed(gW, gWt)
    return ls, nb, fb


@kernel_njit
def merge_blocks(loss, gW, gb, tot_gW, tot_gb):
    """Add per-block sums to ``tot_gW``/``tot_gb`` in block order; return the loss sum."""
    s = 0.0
    d, n = tot_gW.shape
    for c in range(loss.shape[0]):
        s += loss[c]
        for r in range(d):
            for j in range(n):
                tot_gW[r, j] += gW[c, r, j]
        for j in range(n):
            tot_gb[j] += gb[c, j]
    return s


# --------------------------------------------------------------------------
# multi-instance Adam


@kernel_njit
def adam_update(param, m, v, grad, scale, step_size, bc2s, beta1, beta2, eps):
    """One Adam update of ``param`` (any shape, flattened) with gradient ``grad * scale``.

    PyTorch's formula: ``m <- beta1 m + (1 - beta1) g``, ``v <- beta2 v + (1 -
    beta2) g^2``, ``param <- param - step_size m / (sqrt(v) / bc2s + eps)``
    with ``step_size = lr / (1 - beta1^t)`` and ``bc2s = sqrt(1 - beta2^t)``.
    """
    pf = param.reshape(-1)
    mf = m.reshape(-1)
    vf = v.reshape(-1)
    gf = grad.reshape(-1)
    for j in range(pf.shape[0]):
        gj = gf[j] * scale
        mj = beta1 * mf[j] + (1.0 - beta1) * gj
        vj = beta2 * vf[j] + (1.0 - beta2) * (gj * gj)
        mf[j] = mj
        vf[j] = vj
        pf[j] = pf[j] - step_size * mj / (math.sqrt(vj) / bc2s + eps)


#: bytes to which :func:`_blas_scratch` aligns its buffers (a cache line, one 512-bit vector)
BLAS_ALIGN = 64


@njit
def blas_width(d, n, itemsize):
    """Columns of the sub-batch weights and codes of :func:`run_grad_blas`.

    ``d``, or from :data:`~fastsuper.core.config.TRAIN_PAD_FROM` features ``d``
    rounded up to whole :data:`BLAS_ALIGN`-byte rows (the extra columns hold
    zeros) where that adds at most ``d / 8`` columns (``d = 30`` to 32 in either
    dtype): the products' rows then start on cache lines.
    """
    lanes = BLAS_ALIGN // itemsize
    D = (d + lanes - 1) // lanes * lanes
    if n < config.TRAIN_PAD_FROM or D - d > d // 8:
        return d
    return D


@njit
def aligned_zeros(size, like):
    """``size`` zeros of ``like``'s dtype starting at a multiple of :data:`BLAS_ALIGN` bytes."""
    extra = BLAS_ALIGN // like.itemsize
    buf = np.zeros(size + extra, dtype=like.dtype)
    addr = np.int64(buf.ctypes.data)
    off = (BLAS_ALIGN - addr % BLAS_ALIGN) % BLAS_ALIGN // like.itemsize
    return buf[off : off + size]


@kernel_njit
def _blas_scratch(W, rows, gram=False):
    """Sub-batch scratch of :func:`run_grad_blas` (``rows`` >= 1 rows).

    Then ``Xf``, the flat buffer of ``X`` with one entry more, and the chunk
    buffers of :func:`draw_rows_wide`; then ``Wt`` (n, D) and ``W`` (D, n):
    the weights with ``D = blas_width(d)`` (filled by :func:`fill_blas_weights`);
    then the bias gradient's sub-batch sums in the compute dtype (n); then
    ``Wg`` and ``Tg`` (n, ``padded_columns(d)``, zero padded): the weights and
    the encoder term of the sparse-row loops.  The CSR places have room for
    the 8 entries past the last that :func:`~fastsuper.core.sparse_rows.compact_rows`
    may write.  Last the buffers of the Gram space (:func:`gram_weights`),
    with ``n`` rows where ``gram``, else none: ``Mg`` and ``Sg`` (n,
    ``padded_columns(n)``, compute dtype, zero padded), ``S64`` (the same,
    float64), ``Mn`` (n, n, compute dtype), ``Ss`` (n, n) and ``W64``, ``GW``
    (d, n), float64, and the float64 row losses of :func:`_gram_relu` (``rows``).
    The products' buffers start at multiples of :data:`BLAS_ALIGN` bytes.
    """
    d, n = W.shape
    dt = W.dtype
    D = blas_width(d, n, W.itemsize)
    Xf = aligned_zeros(rows * n + 1, W)
    wide = max(WIDE_GAPS, (n + 1 + 7) // 8 * 8)  # the chunks of draw_rows_wide
    Dg = padded_columns(d, W.itemsize)
    return (
        (
            np.empty(rows + 1, dtype=np.int64),
            np.empty(rows * n + 8, dtype=np.int64),
            np.empty(rows * n, dtype=dt),
            Xf[: rows * n].reshape(rows, n),
            aligned_zeros(rows * D, W).reshape(rows, D),
            aligned_zeros(rows * n, W).reshape(rows, n),
            aligned_zeros(rows * D, W).reshape(rows, D),
            aligned_zeros(D * n, W).reshape(D, n),
            aligned_zeros(D * n, W).reshape(D, n),
            np.empty(GAP_CHUNK),
            np.empty(GAP_CHUNK, dtype=np.int64),
            np.empty(GAP_CHUNK),
        )
        + counter_tables(n)
        + (
            Xf,
            np.empty(wide),
            np.empty(wide, dtype=np.int64),
            np.empty(wide),
            aligned_zeros(n * D, W).reshape(n, D),
            aligned_zeros(D * n, W).reshape(D, n),
            np.empty(n, dtype=dt),
            aligned_zeros(n * Dg, W).reshape(n, Dg),
            aligned_zeros(n * Dg, W).reshape(n, Dg),
        )
        + _gram_scratch(W, n if gram else 0, rows)
    )


@kernel_njit
def _gram_scratch(W, m, rows):
    """The Gram-space buffers of :func:`_blas_scratch`, with ``m`` (``n`` or 0) rows (and
    ``rows`` row losses, or none)."""
    d, n = W.shape
    w = padded_columns(n, W.itemsize)
    zero64 = np.zeros(1)
    return (
        aligned_zeros(m * w, W).reshape(m, w),
        aligned_zeros(m * w, W).reshape(m, w),
        aligned_zeros(m * w, zero64).reshape(m, w),
        aligned_zeros(m * m, W).reshape(m, m),
        aligned_zeros(m * m, zero64).reshape(m, m),
        np.zeros((d if m else 0, n)),
        np.zeros((d if m else 0, n)),
        np.zeros(rows if m else 0),
    )


@kernel_njit
def gram_weights(W, work):
    """Start a step in the Gram space: ``M = W^T W`` (compute dtype, BLAS) into the padded
    ``Mg`` of the scratch of :func:`_blas_scratch`, its sums ``Sg`` zeroed (and ``S64`` in
    float32, where it sums the float32 sub-batch sums)."""
    Mg, Sg, S64, Mn = work[23], work[24], work[25], work[26]
    n = W.shape[1]
    np.dot(W.T, W, Mn)
    single = Sg.itemsize != 8  # S64 holds the sums only then
    for i in range(n):
        for j in range(n):
            Mg[i, j] = Mn[i, j]
        for j in range(Sg.shape[1]):
            Sg[i, j] = 0
        if single:
            for j in range(Sg.shape[1]):
                S64[i, j] = 0.0


@kernel_njit
def gram_gradient(W, work, gW):
    """End a step in the Gram space: ``gW += W (S + S^T)`` in float64 (BLAS).

    ``S`` is the float64 ``Sg`` of a float64 step, else ``S64`` (the float32
    sub-batch sums added in float64).
    """
    Sg, S64, Ss, W64, GW = work[24], work[25], work[27], work[28], work[29]
    d, n = W.shape
    double = Sg.itemsize == 8
    for i in range(n):
        for j in range(n):
            if double:
                Ss[i, j] = np.float64(Sg[i, j]) + np.float64(Sg[j, i])
            else:
                Ss[i, j] = S64[i, j] + S64[j, i]
    for r in range(d):
        for j in range(n):
            W64[r, j] = W[r, j]
    np.dot(W64, Ss, GW)
    for r in range(d):
        for j in range(n):
            gW[r, j] += GW[r, j]


@kernel_njit
def fill_blas_weights(W, work):
    """``W`` (d, n) into the padded ``Wt`` and ``W`` of the scratch of :func:`_blas_scratch`."""
    Wt8, W8, Wg = work[18], work[19], work[21]
    d, n = W.shape
    for r in range(d):
        for j in range(n):
            W8[r, j] = W[r, j]
    fill_transposed(W, Wt8)
    for i in range(n):
        for r in range(d):
            Wg[i, r] = Wt8[i, r]


@parallel_njit
def adam_kernel(
    W, B, mW, vW, mb, vb, imp, use_bias, act, skeys, laws, t_start, n_steps, batch, adam,
    log_every, hist, status, groups, blas_rows, dense_x, gram, chunked,
):  # fmt: skip
    """Train every instance for steps ``t_start .. t_start+n_steps-1`` with Adam.

    Instance ``k`` has weights ``W[k]`` (d, n) and bias ``B[k]`` (n) in the
    compute dtype, Adam moments ``mW, vW, mb, vb`` (float64), importances
    ``imp[k]`` (n, float64), input law :func:`instance_law` ``(laws, k)``
    (with gap thresholds), and sampler key ``skeys[k]``; ``act`` is the
    :class:`~fastsuper.core.bundles.Activation` and ``adam`` the tuple
    ``(lr, beta1, beta2, eps)``.  Row ``s`` of the batch of step ``t`` is
    sample number ``t * batch + s`` of that key.  The loss is ``mean_s
    mean_j I_j (x_j - x_hat_j)^2``; ``hist[t // log_every, k]`` receives it
    when ``t % log_every == 0``.  An instance whose loss or gradient is not
    finite stops before updating, and ``status[k]`` records the step (``OK``
    = -1 otherwise); stopped instances are skipped.  Adam's step count is
    ``t + 1``.

    ``groups`` (n_groups, width) lists the instances of each parallel work item
    (-1 pads): one work item trains its instances one after the other, each
    for all its steps.  Instances are independent, so the grouping changes
    only the speed.  With ``blas_rows > 0`` the batch is processed in
    sub-batches of that many rows by :func:`run_grad_blas` (``dense_x[k]``:
    dense products for instance ``k``'s ``h`` and encoder term; ``gram[k]``:
    instance ``k`` in the Gram space, between :func:`gram_weights` and
    :func:`gram_gradient`; ``chunked[k]``:
    its active sets drawn by :func:`~fastsuper.core.laws.draw_bernoulli_chunked`),
    else by :func:`run_grad`.
    """
    lr, beta1, beta2, eps = adam
    n_inst, d, n = W.shape
    inv = 1.0 / (batch * n)
    rows = min(max(blas_rows, 1), batch) if blas_rows > 0 else 1
    for gi in numba.prange(groups.shape[0]):
        work = _scratch(W[0], padded_width(d))
        gWt = work[-1]
        in_gram = False  # whether an instance of the group works in the Gram space
        for gk in range(groups.shape[1]):
            k = groups[gi, gk]
            in_gram |= k >= 0 and blas_rows > 0 and gram[k]
        blas_work = _blas_scratch(W[0], rows, in_gram)
        small = blas_rows <= 0 and padded_width(d) <= 4 and n <= config.DENSE_N_MAX
        dense_work = _dense_scratch(
            W[0], min(padded_width(d), 4), config.DENSE_ROWS if small else 1
        )
        gW = np.zeros((d, n))
        gb = np.zeros(n)
        for gk in range(groups.shape[1]):
            k = groups[gi, gk]
            if k < 0 or status[k] != OK:
                continue
            Wk = W[k]
            bk = B[k]
            impk = imp[k]
            law = instance_law(laws, k)
            dense = small and dense_sampling(law)
            Wt, imp2 = prepare(Wk, impk)
            for t in range(t_start, t_start + n_steps):
                if blas_rows <= 0:  # the BLAS path has its own copies
                    fill_transposed(Wk, Wt)
                for r in range(d):
                    for j in range(n):
                        gW[r, j] = 0.0
                for j in range(n):
                    gb[j] = 0.0
                if blas_rows > 0:
                    in_gram = gram[k] and not dense_x[k]
                    if in_gram:
                        gram_weights(Wk, blas_work)
                    else:
                        fill_blas_weights(Wk, blas_work)
                    ls = 0.0
                    nb = 0
                    for lo in range(0, batch, blas_rows):
                        l1, n1, f1 = run_grad_blas(
                            Wk, bk, impk, imp2, act, skeys[k], t * batch + lo,
                            min(blas_rows, batch - lo), law, dense_x[k], in_gram, chunked[k],
                            blas_work, gW, gWt, gb,
                        )  # fmt: skip
                        ls += l1
                        nb += n1
                    if in_gram:
                        gram_gradient(Wk, blas_work, gW)
                elif dense and all_finite(Wt):
                    ls, nb, f1 = run_grad_dense(
                        Wt, bk, impk, imp2, act, skeys[k], t * batch, batch, law, dense_work,
                        gWt, gb,
                    )  # fmt: skip
                else:
                    ls, nb, f1 = run_grad(
                        Wk, Wt, bk, impk, imp2, act, skeys[k], t * batch, batch, law, work, gW, gb
                    )
                if blas_rows <= 0 or not (dense_x[k] or gram[k]):  # else all is in gW
                    add_transposed(gW, gWt)
                loss = ls * inv
                if t % log_every == 0:
                    hist[t // log_every, k] = loss
                if nb > 0 or not math.isfinite(loss) or not all_finite(gW) or not all_finite(gb):
                    status[k] = t
                    break
                step = np.float64(t + 1)
                step_size = lr / (1.0 - beta1**step)
                bc2s = math.sqrt(1.0 - beta2**step)
                adam_update(Wk, mW[k], vW[k], gW, inv, step_size, bc2s, beta1, beta2, eps)
                if use_bias:
                    adam_update(bk, mb[k], vb[k], gb, inv, step_size, bc2s, beta1, beta2, eps)
