"""CUDA kernels of training: the sampled loss gradient, and Adam steps on the device."""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from fastsuper.core.activations import dphi, phi
from fastsuper.core.bundles import instance_law
from fastsuper.core.cuda_jit import CUDA_JIT_OPTIONS
from fastsuper.core.cuda_jit import cuda_kernel as _kernel
from fastsuper.core.cuda_jit import view as _view
from fastsuper.core.laws import draw_active, draw_values
from fastsuper.core.rng import sample_key
from fastsuper.mc.kernels_cuda import hidden

__all__ = ["grad_kernel", "sample_grad", "train_kernel"]

# --------------------------------------------------------------------------
# sampled loss gradient (training)


@cuda.jit(device=True, **CUDA_JIT_OPTIONS)
def sample_grad(W, b, imp, imp2, act, zero, indices, values, o, k, h, g, u, lt, gW, gb, lane, tj):
    """Add one sample's gradient to ``gW`` (d, n) and ``gb`` (n); its loss (thread 0).

    The sample is the ``k`` CSR entries at offset ``o`` of ``indices``
    (ascending) and ``values``.  The threads ``lane = 0 .. tj-1`` of a block
    run, with ``cuda.syncthreads`` between the steps, the CPU's per-sample
    formulas (:func:`fastsuper.train.kernels_cpu.run_grad`) in its order of
    every sum:

    1. ``h = W x`` over the active entries (threads over ``r``, each a
       sequential sum over the active entries);
    2. ``z_j``, ``g_j = 2 I_j (phi(z_j) - x_j) phi'(z_j)``, ``gb[j] += g_j``
       and the decoder term ``gW[:, j] += h g_j`` (threads over ``j``);
    3. ``u = W g`` (threads over ``r``, sequential over ``j``) and the
       sample's loss (thread 0, sequential over ``j``);
    4. the encoder term ``gW[:, i] += u x_i`` for the active ``i``, by the
       thread that owns column ``i`` in step 2 (so each entry of ``gW`` gets
       its terms in the CPU's order).

    ``h``, ``u`` (d) and ``g`` (n) are scratch in the compute dtype, ``lt``
    (n) the per-feature loss terms in float64.  The returned loss is the
    sample's on thread 0 and 0 on the others.
    """
    d = W.shape[0]
    n = W.shape[1]
    hidden(W, indices, values, o, k, h, lane, tj, zero)  # 1. h = W x
    cuda.syncthreads()
    ptr = 0
    for j in range(lane, n, tj):  # 2. z, g, bias and decoder terms
        zj = b[j]
        for r in range(d):
            zj += W[r, j] * h[r]
        xj = zero
        while ptr < k and indices[o + ptr] < j:
            ptr += 1
        if ptr < k and indices[o + ptr] == j:
            xj = values[o + ptr]
        f = phi(zj, act)
        e = f - xj
        e64 = np.float64(f) - np.float64(xj)
        gj = e
        if e != 0:
            gj = imp2[j] * e * dphi(zj, act)
        lt[j] = imp[j] * (e64 * e64)
        g[j] = gj
        g64 = np.float64(gj)
        gb[j] += g64
        for r in range(d):
            gW[r, j] += np.float64(h[r]) * g64
    cuda.syncthreads()
    for r in range(lane, d, tj):  # 3. u = W g
        acc = zero
        for j in range(n):
            acc += W[r, j] * g[j]
        u[r] = acc
    loss = 0.0
    if lane == 0:
        for j in range(n):
            loss += lt[j]
    cuda.syncthreads()
    for q in range(k):  # 4. encoder terms, by the owner of column i
        i = indices[o + q]
        if i % tj == lane:
            x = np.float64(values[o + q])
            for r in range(d):
                gW[r, i] += np.float64(u[r]) * x
    cuda.syncthreads()
    return loss


@_kernel
def grad_kernel(
    W,
    b,
    imp,
    imp2,
    act,
    zero,
    block,
    n_chunk,
    first_index,
    indptr,
    indices,
    values,
    hbuf,
    gbuf,
    ubuf,
    lbuf,
    loss_out,
    bad_out,
    gW,
    gb,
):
    """Loss and gradient sums of each sample block of a chunk (a thread block per sample block).

    The threads of CUDA block ``c`` run the samples of sample block ``c`` one
    after the other, each by :func:`sample_grad` (the CPU's per-sample
    formulas and order of every sum).

    Only ``cuda.syncthreads`` between the steps (every thread of a block
    runs the same loops).  The partial sums ``gW[c]``, ``gb[c]`` (float64,
    zero on entry) are merged in block order by the caller.

    Parameters
    ----------
    W, b, imp, imp2
        Weights (d, n) and bias in the compute dtype, importances (float64)
        and ``2 imp`` in the compute dtype.
    act, zero
        The :class:`~fastsuper.core.bundles.Activation` (exponent in the
        compute dtype) and 0 in the compute dtype.
    block, n_chunk, first_index
        Samples per block, samples in the chunk and index of its first sample.
    indptr, indices, values
        The chunk's samples in CSR form (values in the compute dtype).
    hbuf, ubuf, gbuf, lbuf
        Per-block scratch ``h = W x``, ``u = W g`` (n_blocks, d) and ``g``
        (n_blocks, n) in the compute dtype; per-feature loss terms
        (n_blocks, n) in float64.
    loss_out, bad_out
        Per-block loss sum (float64), and (count of non-finite sample losses,
        first such sample index or -1) as float64, shape (n_blocks, 2).
    gW, gb
        Per-block gradient sums (n_blocks, d, n) and (n_blocks, n), float64.
    """
    nb = loss_out.shape[0]
    lane = cuda.threadIdx.x
    tj = cuda.blockDim.x
    for c in range(cuda.blockIdx.x, nb, cuda.gridDim.x):
        h = hbuf[c]
        u = ubuf[c]
        g = gbuf[c]
        lt = lbuf[c]
        lo = c * block
        hi = min(lo + block, n_chunk)
        loss_sum = 0.0
        nbad = 0.0
        first_bad = -1.0
        for s in range(lo, hi):
            o = indptr[s]
            loss = sample_grad(
                W, b, imp, imp2, act, zero, indices, values, o, indptr[s + 1] - o,
                h, g, u, lt, gW[c], gb[c], lane, tj,
            )  # fmt: skip
            if lane == 0:
                if not math.isfinite(loss):
                    if nbad == 0.0:
                        first_bad = np.float64(first_index + s)
                    nbad += 1.0
                loss_sum += loss
        if lane == 0:
            loss_out[c] = loss_sum
            bad_out[c, 0] = nbad
            bad_out[c, 1] = first_bad


# --------------------------------------------------------------------------
# Adam steps on the device


@cuda.jit(device=True, **CUDA_JIT_OPTIONS)
def _adam(param, m, v, grad, lane, tj, scale, step_size, bc2s, beta1, beta2, eps):
    """One Adam update of the 2-d ``param`` (threads over its entries in row-major order).

    The formula of :func:`fastsuper.train.kernels_cpu.adam_update`; the
    moments ``m``, ``v`` and the gradient sums ``grad`` are float64.
    """
    cols = param.shape[1]
    for e in range(lane, param.size, tj):
        r = e // cols
        c = e % cols
        ge = grad[r, c] * scale
        me = beta1 * m[r, c] + (1.0 - beta1) * ge
        ve = beta2 * v[r, c] + (1.0 - beta2) * (ge * ge)
        m[r, c] = me
        v[r, c] = ve
        param[r, c] = param[r, c] - step_size * me / (math.sqrt(ve) / bc2s + eps)


@_kernel
def train_kernel(
    W, B, mW, vW, mb, vb, imp, imp2, use_bias, act, zero, skeys, laws, t_start, n_steps, batch,
    adam, log_every, hist, status, idx, val, hbuf, gbuf, ubuf, lbuf, gWbuf, gbbuf, kbuf,
):  # fmt: skip
    """Steps ``t_start .. t_start+n_steps-1`` of Adam for every instance (a thread block each).

    The device version of :func:`fastsuper.train.kernels_cpu.adam_kernel`,
    whose arguments it shares (``imp2 = 2 imp`` in the compute dtype, one row
    per instance; ``skeys`` the sampler keys; ``laws`` the stacked
    :class:`~fastsuper.core.bundles.InputLaw` with device arrays): per step,
    thread 0 draws each sample of the batch (sample ``t * batch + s`` of the
    instance's key, the CPU's) into the instance's scratch row ``idx[k]``,
    ``val[k]`` (``kbuf[k]`` its size), :func:`sample_grad` adds its
    gradient to ``gWbuf[k]``, ``gbbuf[k]`` (float64, summed over the batch
    in sample order), and the block applies the Adam update; ``hist`` and
    ``status`` are the CPU kernel's.  Scratch per instance: ``hbuf``,
    ``ubuf`` (d), ``gbuf`` (n) in the compute dtype and ``lbuf`` (n) float64.
    One launch runs many steps, so a GPU is not bound by launches.
    """
    laws = _view(laws)
    lr, beta1, beta2, eps = adam
    n_inst = W.shape[0]
    n = W.shape[2]
    inv = 1.0 / (batch * n)
    lane = cuda.threadIdx.x
    tj = cuda.blockDim.x
    for k in range(cuda.blockIdx.x, n_inst, cuda.gridDim.x):
        if status[k] >= 0:  # stopped (status -1: training)
            continue
        law = instance_law(laws, k)
        skey = np.uint64(skeys[k])
        Wk = W[k]
        bk = B[k]
        gW = gWbuf[k]
        gb = gbbuf[k]
        ik = _view(idx[k])
        vk = _view(val[k])
        for t in range(t_start, t_start + n_steps):
            for e in range(lane, gW.size, tj):
                gW[e // n, e % n] = 0.0
            for j in range(lane, n, tj):
                gb[j] = 0.0
            loss_sum = 0.0
            nbad = 0
            for s in range(batch):
                cuda.syncthreads()  # the previous sample's entries are read
                if lane == 0:
                    key = np.uint64(sample_key(skey, t * batch + s))
                    kk = draw_active(key, law, ik, 0)
                    draw_values(key, kk, law, vk, 0)
                    kbuf[k] = kk
                cuda.syncthreads()
                loss = sample_grad(
                    Wk, bk, imp[k], imp2[k], act, zero, idx[k], val[k], 0, kbuf[k],
                    hbuf[k], gbuf[k], ubuf[k], lbuf[k], gW, gb, lane, tj,
                )  # fmt: skip
                if lane == 0:
                    if not math.isfinite(loss):
                        nbad += 1
                    loss_sum += loss
            if lane == 0:
                loss = loss_sum * inv
                if t % log_every == 0:
                    hist[t // log_every, k] = loss
                bad = nbad > 0 or not math.isfinite(loss)
                for e in range(gW.size):
                    bad = bad or not math.isfinite(gW[e // n, e % n])
                for j in range(n):
                    bad = bad or not math.isfinite(gb[j])
                if bad:
                    status[k] = t
            cuda.syncthreads()
            if status[k] >= 0:
                break
            step = np.float64(t + 1)
            step_size = lr / (1.0 - beta1**step)
            bc2s = math.sqrt(1.0 - beta2**step)
            _adam(Wk, mW[k], vW[k], gW, lane, tj, inv, step_size, bc2s, beta1, beta2, eps)
            if use_bias:  # the bias as a row: B[k : k + 1] (1, n)
                _adam(B[k : k + 1], mb[k : k + 1], vb[k : k + 1], gbbuf[k : k + 1], lane, tj,
                      inv, step_size, bc2s, beta1, beta2, eps)  # fmt: skip
            cuda.syncthreads()
