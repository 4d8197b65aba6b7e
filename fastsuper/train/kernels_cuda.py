"""CUDA kernel of training: the sampled loss gradient of a block of samples."""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from fastsuper.core.activations import dphi, phi
from fastsuper.core.cuda_jit import cuda_kernel as _kernel
from fastsuper.mc.kernels_cuda import hidden

__all__ = ["grad_kernel"]

# --------------------------------------------------------------------------
# sampled loss gradient (training)


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

    The CPU's per-sample formulas (:func:`fastsuper.train.kernels_cpu.run_grad`)
    and its order of every sum: the threads of CUDA block ``c`` run the
    samples of sample block ``c`` one after the other; per sample

    1. ``h = W x`` over the active entries (threads over ``r``, each a
       sequential sum over the active entries);
    2. ``z_j``, ``g_j = 2 I_j (phi(z_j) - x_j) phi'(z_j)``, ``gb[c, j] += g_j``
       and the decoder term ``gW[c, :, j] += h g_j`` (threads over ``j``);
    3. ``u = W g`` (threads over ``r``, sequential over ``j``) and the
       sample's loss (thread 0, sequential over ``j``);
    4. the encoder term ``gW[c, :, i] += u x_i`` for the active ``i``, by
       the thread that owns column ``i`` in step 2 (so each entry of
       ``gW[c]`` gets its terms in the CPU's order).

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
    d = W.shape[0]
    n = W.shape[1]
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
            k = indptr[s + 1] - o
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
                gb[c, j] += g64
                for r in range(d):
                    gW[c, r, j] += np.float64(h[r]) * g64
            cuda.syncthreads()
            for r in range(lane, d, tj):  # 3. u = W g
                acc = zero
                for j in range(n):
                    acc += W[r, j] * g[j]
                u[r] = acc
            if lane == 0:
                loss = 0.0
                for j in range(n):
                    loss += lt[j]
                if not math.isfinite(loss):
                    if nbad == 0.0:
                        first_bad = np.float64(first_index + s)
                    nbad += 1.0
                loss_sum += loss
            cuda.syncthreads()
            for q in range(k):  # 4. encoder terms, by the owner of column i
                i = indices[o + q]
                if i % tj == lane:
                    x = np.float64(values[o + q])
                    for r in range(d):
                        gW[c, r, i] += np.float64(u[r]) * x
            cuda.syncthreads()
        if lane == 0:
            loss_out[c] = loss_sum
            bad_out[c, 0] = nbad
            bad_out[c, 1] = first_bad
