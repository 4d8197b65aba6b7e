"""CUDA kernels (numba-cuda) of the sampler, the Monte-Carlo loss and the exact power sums.

Importing this module imports :mod:`numba.cuda`; only
:mod:`fastsuper.mc.cuda` imports it, lazily, so ``import fastsuper``
never does.

The per-element maths is the CPU's: the kernels call the plain ``@njit``
functions of :mod:`fastsuper.core.rng`, :mod:`fastsuper.core.laws` and
:mod:`fastsuper.core.activations` (numba-cuda compiles a CPU dispatcher called from
a ``@cuda.jit`` kernel as a device function, reusing its Python source).
Sample ``s`` is therefore the same function of ``(seed, s)`` as on the CPU.

Layout of the Monte-Carlo computation (per chunk of whole sample blocks):

1. :func:`count_kernel` / :func:`fill_kernel` (one thread per sample) draw the
   chunk's samples into CSR arrays in device memory (counts, host prefix sum,
   fill), values already in the compute dtype;
2. :func:`mc_kernel`: a thread block holds ``G`` *slots* of ``tj`` threads;
   a slot processes one sample at a time, its threads stride over the output
   features ``j`` (coalesced reads of the rows of ``A = W^T W``, or of ``W``),
   apply the activation and reduce the per-sample loss over the slot in a
   fixed tree order in shared memory; the loss and gain of every sample go
   to per-sample arrays.  With per-feature output a slot owns a whole sample
   block and adds each feature's terms in sample order, as the CPU does;
3. :func:`welford_kernel` (one thread per sample block) runs the CPU's
   Welford recursion over the block's samples in sample order, so the
   per-block statistics, and :func:`fastsuper.mc.kernels_cpu.merge_block_stats`
   of them, equal the CPU's up to the round-off of each sample's loss.

Only ``cuda.syncthreads`` and shared memory are used for cooperation (no
warp shuffles: the simulator does not implement them), so every kernel also
runs on the CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``).

Notes
-----
* numba-cuda (checked with 0.30.4) turns a CPU dispatcher called from a
  kernel into a device function that inherits its jit options: ``cache`` is
  ignored (the device copy is not cached), ``nogil`` and ``error_model`` are
  unused (device code never raises on division by zero), but *any* truthy
  ``fastmath`` -- even ``{"contract"}`` -- becomes full fast-math on the
  device (approximate division and square root, flush to zero, LLVM ``fast``
  with ``nnan``/``ninf``).  Kernels must therefore only call exactly rounded
  :func:`fastsuper.core.jit.njit` functions (``fastmath=False``: the RNG, the
  sampler, :func:`~fastsuper.core.activations.phi`), never ``kernel_njit`` /
  ``parallel_njit`` code or :func:`~fastsuper.core.activations.phi_inplace`.
* The results of :func:`~fastsuper.core.rng.seed_key` and
  :func:`~fastsuper.core.rng.sample_key` are wrapped in ``np.uint64``: a no-op on
  the device, but on the simulator the CPU dispatchers box a uint64 as a
  Python int, which the next call would type as int64 (and overflow).
* On a GPU, ``math.log``/``math.cos`` come from libdevice rather than libm:
  Gaussian values may differ from the CPU's in the last bit; all other value
  laws, and the active sets, are computed exactly alike.
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from fastsuper.core.activations import phi
from fastsuper.core.laws import draw_active, draw_values
from fastsuper.core.rng import sample_key, seed_key
from fastsuper.mc.kernels_cpu import N_STATS, ST_FIRST_BAD, welford_add

__all__ = [
    "N_STATS",
    "count_kernel",
    "fill_kernel",
    "gram_kernel",
    "hidden",
    "mc_kernel",
    "welford_kernel",
]


from fastsuper.core import config
from fastsuper.core.cuda_jit import CUDA_JIT_OPTIONS
from fastsuper.core.cuda_jit import cuda_kernel as _kernel
from fastsuper.core.cuda_jit import view as _view

# a global constant: shared array shapes must be compile-time constants (an
# attribute of a module global is typed as a plain integer)
_SHARED_SIZE = config.CUDA_MAX_THREADS

# --------------------------------------------------------------------------
# sampler


@_kernel
def count_kernel(seed, start, n_samples, law, cap, sink, counts):
    """``counts[s]`` = number of active features of sample ``start + s`` (grid-stride over s).

    ``law`` is the :class:`~fastsuper.core.bundles.InputLaw` with device
    arrays.  ``sink`` is write-only scratch of ``(n_samples - 1) * cap + n``
    entries; sample ``s`` writes its active indices from offset ``s * cap``.
    With ``cap >= kfix`` (exactly-k pattern, whose sampler reads back what it
    wrote) the rows are disjoint; in the Bernoulli pattern the sampler only
    writes them, so a sample with more than ``cap`` active features may
    overwrite the next rows without changing any count.
    """
    law = _view(law)
    sink = _view(sink)
    skey = np.uint64(seed_key(seed))
    for s in range(cuda.grid(1), n_samples, cuda.gridsize(1)):
        key = np.uint64(sample_key(skey, start + s))
        counts[s] = draw_active(key, law, sink, s * cap)


@_kernel
def fill_kernel(seed, start, n_samples, law, indptr, indices, values):
    """Active indices and values of sample ``start + s`` into its CSR slice.

    ``values`` may be float32: each float64 draw is rounded once on store,
    like ``fastsuper.sample(..., dtype=np.float32)``.
    """
    law = _view(law)
    indices = _view(indices)
    values = _view(values)
    skey = np.uint64(seed_key(seed))
    for s in range(cuda.grid(1), n_samples, cuda.gridsize(1)):
        key = np.uint64(sample_key(skey, start + s))
        lo = indptr[s]
        k = draw_active(key, law, indices, lo)
        draw_values(key, k, law, values, lo)


# --------------------------------------------------------------------------
# Monte-Carlo loss


@cuda.jit(device=True, **CUDA_JIT_OPTIONS)
def hidden(W, indices, values, o, k, h, lane, tj, zero):
    """``h = W x`` for the CSR sample of ``k`` entries at offset ``o``.

    The threads ``lane = 0 .. tj-1`` of a group take the rows ``r = lane,
    lane + tj, ...``, each a sequential sum over the active entries.
    """
    for r in range(lane, W.shape[0], tj):
        acc = zero
        for q in range(k):
            acc += W[r, indices[o + q]] * values[o + q]
        h[r] = acc


@_kernel
def gram_kernel(W, zero, A):
    """``A = W^T W`` (a thread per entry, grid-stride; sums over ``r`` in order, compute dtype)."""
    d = W.shape[0]
    n = W.shape[1]
    for e in range(cuda.grid(1), n * n, cuda.gridsize(1)):
        i = e // n
        j = e - i * n
        acc = zero
        for r in range(d):
            acc += W[r, i] * W[r, j]
        A[i, j] = acc


@_kernel
def mc_kernel(
    W,
    A,
    b,
    imp,
    act,
    zero,
    use_cols,
    want_pf,
    span,
    n_units,
    n_chunk,
    tj,
    n_rounds,
    indptr,
    indices,
    values,
    hbuf,
    loss_out,
    gain_out,
    pf1,
    pf2,
):
    """Per-sample loss and gain of one chunk of CSR samples.

    Parameters
    ----------
    W, A, b, imp
        Weights (d, n), ``A = W^T W`` (columns path; else a dummy), bias and
        importances (float64).
    act
        The :class:`~fastsuper.core.bundles.Activation` (exponent in the
        compute dtype).
    zero
        0 in the compute dtype.
    use_cols, want_pf
        Columns path (rows of ``A``) or dense path (``W``, then ``W^T``);
        per-feature sums wanted.
    span, n_units, n_chunk
        Samples per unit (1, or the sample block with ``want_pf``), number of
        units and of samples in the chunk.  A slot processes the samples of
        its units in order.
    tj, n_rounds
        Threads per slot (a power of two dividing the block size) and rounds
        of the grid-stride loop over units (the same for every slot, so
        that all threads reach every ``syncthreads``).
    indptr, indices, values
        The chunk's samples in CSR form (values in the compute dtype).
    hbuf
        Scratch ``h = W x`` of each slot (dense path), shape (slots, d).
    loss_out, gain_out
        Per-sample loss and gain (float64), shape (n_chunk,).
    pf1, pf2
        Per-unit sums of each feature's loss term and of its square
        (``want_pf``), shape (n_units, n).
    """
    sh_loss = cuda.shared.array(_SHARED_SIZE, np.float64)
    sh_x2 = cuda.shared.array(_SHARED_SIZE, np.float64)
    t = cuda.threadIdx.x
    g = t // tj
    lane = t - g * tj
    slots = cuda.blockDim.x // tj
    gslot = cuda.blockIdx.x * slots + g
    n_slots = cuda.gridDim.x * slots
    n = b.shape[0]
    d = W.shape[0]
    h = hbuf[min(gslot, hbuf.shape[0] - 1)]  # (1, d) dummy on the columns path
    for rnd in range(n_rounds):
        u = rnd * n_slots + gslot
        ulo = u * span
        uhi = min(ulo + span, n_chunk)
        for st in range(span):
            s = ulo + st
            valid = u < n_units and s < uhi
            o = 0
            k = 0
            if valid:
                o = indptr[s]
                k = indptr[s + 1] - o
            if not use_cols:
                hidden(W, indices, values, o, k, h, lane, tj, zero)
                cuda.syncthreads()
            lsum = 0.0
            x2 = 0.0
            if valid:
                ptr = 0
                for j in range(lane, n, tj):
                    z = b[j]
                    if use_cols:
                        for q in range(k):
                            z += A[indices[o + q], j] * values[o + q]
                    else:
                        for r in range(d):
                            z += W[r, j] * h[r]
                    f = np.float64(phi(z, act))
                    tt = imp[j] * (f * f)
                    lsum += tt
                    if want_pf:
                        pf1[u, j] += tt
                        pf2[u, j] += tt * tt
                    while ptr < k and indices[o + ptr] < j:
                        ptr += 1
                    if ptr < k and indices[o + ptr] == j:
                        x = np.float64(values[o + ptr])
                        x2 += imp[j] * x * x
                        corr = imp[j] * (x * x - 2.0 * x * f)
                        lsum += corr
                        if want_pf:
                            old = imp[j] * f * f
                            new = imp[j] * (x - f) * (x - f)
                            pf1[u, j] += corr
                            pf2[u, j] += new * new - old * old
            # fixed-order tree reduction over the slot's threads
            sh_loss[t] = lsum
            sh_x2[t] = x2
            cuda.syncthreads()
            w = tj // 2
            while w > 0:
                if lane < w:
                    sh_loss[t] += sh_loss[t + w]
                    sh_x2[t] += sh_x2[t + w]
                cuda.syncthreads()
                w //= 2
            if valid and lane == 0:
                loss_out[s] = sh_loss[t]
                gain_out[s] = sh_x2[t] - sh_loss[t]


@_kernel
def welford_kernel(loss, gain, n_chunk, block, first_index, stats):
    """Per-block Welford statistics of the per-sample loss and gain, in sample order.

    The CPU's recursion (:func:`fastsuper.mc.kernels_cpu.welford_add`, one
    thread per block): non-finite losses are counted (with the index of the
    first one) and left out.
    """
    stats = _view(stats)
    nb = stats.shape[0]
    for bi in range(cuda.grid(1), nb, cuda.gridsize(1)):
        st = stats[bi]
        for c in range(N_STATS):
            st[c] = 0.0
        st[ST_FIRST_BAD] = -1.0
        lo = bi * block
        for s in range(lo, min(lo + block, n_chunk)):
            welford_add(st, loss[s], gain[s], first_index + s)
