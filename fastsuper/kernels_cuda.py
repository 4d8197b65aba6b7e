"""CUDA kernels (numba-cuda) of the sampler, the Monte-Carlo loss and the exact power sums.

Importing this module imports :mod:`numba.cuda`; only
:mod:`fastsuper.backend_cuda` imports it, lazily, so ``import fastsuper``
never does.

The per-element maths is the CPU's: the kernels call the plain ``@njit``
functions of :mod:`fastsuper.rng`, :mod:`fastsuper.sampling` and
:mod:`fastsuper.activations` (numba-cuda compiles a CPU dispatcher called from
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
   per-block statistics, and :func:`fastsuper.kernels_cpu.merge_block_stats`
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
  :func:`fastsuper._jit.njit` functions (``fastmath=False``: the RNG, the
  sampler, :func:`~fastsuper.activations.phi`), never ``kernel_njit`` /
  ``parallel_njit`` code or :func:`~fastsuper.activations.phi_inplace`.
* The results of :func:`~fastsuper.rng.seed_key` and
  :func:`~fastsuper.rng.sample_key` are wrapped in ``np.uint64``: a no-op on
  the device, but on the simulator the CPU dispatchers box a uint64 as a
  Python int, which the next call would type as int64 (and overflow).
* On a GPU, ``math.log``/``math.cos`` come from libdevice rather than libm:
  Gaussian values may differ from the CPU's in the last bit; all other value
  laws, and the active sets, are computed exactly alike.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from .activations import dphi, phi
from .kernels_cpu import (
    N_STATS,
    ST_COUNT,
    ST_FIRST_BAD,
    ST_GAIN_M2,
    ST_GAIN_MEAN,
    ST_LOSS_M2,
    ST_LOSS_MEAN,
    ST_NONFINITE,
)
from .rng import sample_key, seed_key
from .sampling import draw_active, draw_sample

__all__ = [
    "N_STATS",
    "MAX_POWER",
    "MAX_THREADS",
    "SIMULATOR",
    "count_kernel",
    "fill_kernel",
    "grad_kernel",
    "gram_kernel",
    "mc_kernel",
    "power_sums_kernel",
    "welford_kernel",
]


def _simulator_enabled() -> bool:
    try:
        from numba.cuda.core import config
    except ImportError:  # pragma: no cover - older numba-cuda
        from numba.core import config
    return bool(config.ENABLE_CUDASIM)


#: True when the kernels run on the CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``).
SIMULATOR = _simulator_enabled()

#: Largest thread block of :func:`mc_kernel` (size of its shared reduction buffers).
MAX_THREADS = 256
#: Largest order ``R`` of :func:`power_sums_kernel` (size of its per-thread accumulators).
MAX_POWER = 64
_ACC_SIZE = MAX_POWER + 1  # a global constant: local array shapes must be compile-time constants

#: Options of every ``@cuda.jit`` kernel.  fastmath stays off so that the
#: device code rounds like the CPU's exactly rounded per-element maths.
CUDA_JIT_OPTIONS = {"fastmath": False}


def _kernel(func):
    return cuda.jit(**CUDA_JIT_OPTIONS)(func)


def _patch_simulator_shared_arrays() -> None:
    """Make the simulator's ``cuda.shared.array`` allocation atomic.

    The simulator (numba-cuda 0.30.4) runs a thread block as Python threads
    and gives every thread the array first created for the calling source
    line: ``FakeCUDAShared.array`` looks the line up in a dict and, if absent,
    creates and stores a new array -- without a lock.  When the GIL switches
    threads between the look-up and the store, two threads of one block get
    different "shared" arrays and a shared-memory reduction silently loses
    terms (seen as an intermittent mismatch between the simulated and the CPU
    Monte-Carlo loss).  This replacement does the look-up and the store under
    a lock; it keys arrays by (file, line) of the caller as the original does.
    """
    import sys
    import threading

    from numba.cuda.simulator import kernelapi

    numpy_support = kernelapi.numpy_support
    types = kernelapi.types

    shared_cls = kernelapi.FakeCUDAShared
    if getattr(shared_cls, "_fastsuper_locked", False):
        return
    original = shared_cls.array
    lock = threading.Lock()

    def array(self, shape, dtype, alignment=None):
        if alignment is not None or shape == 0:
            return original(self, shape, dtype, alignment)  # no per-line cache on these paths
        frame = sys._getframe(1)
        caller = (frame.f_code.co_filename, frame.f_lineno)
        with lock:
            res = self._allocations.get(caller)
            if res is None:
                if isinstance(dtype, types.Type):
                    dtype = numpy_support.as_dtype(dtype)
                res = np.empty(shape, dtype)
                self._allocations[caller] = res
        return res

    shared_cls.array = array
    shared_cls._fastsuper_locked = True


if SIMULATOR:
    _patch_simulator_shared_arrays()

    def _view(arr):
        """The NumPy array behind a simulated device array.

        The simulator runs kernels as Python and calls the ``@njit`` helpers
        through their CPU dispatchers, which accept NumPy arrays only.
        """
        item = getattr(arr, "_item", None)
        if item is not None:
            arr = item
        return getattr(arr, "_ary", arr)

else:

    @cuda.jit(device=True)
    def _view(arr):
        """Identity on the device (the simulator needs an unwrapping step)."""
        return arr


# --------------------------------------------------------------------------
# sampler


@_kernel
def count_kernel(seed, start, n_samples, n, kfix, pmax, log1mp, thin, p, cap, sink, counts):
    """``counts[s]`` = number of active features of sample ``start + s`` (grid-stride over s).

    ``sink`` is write-only scratch of ``(n_samples - 1) * cap + n`` entries;
    sample ``s`` writes its active indices from offset ``s * cap``.  With
    ``cap >= kfix`` (exactly-k pattern, whose sampler reads back what it
    wrote) the rows are disjoint; in the Bernoulli pattern the sampler only
    writes them, so a sample with more than ``cap`` active features may
    overwrite the next rows without changing any count.
    """
    skey = np.uint64(seed_key(seed))
    for s in range(cuda.grid(1), n_samples, cuda.gridsize(1)):
        key = np.uint64(sample_key(skey, start + s))
        lo = s * cap
        counts[s] = draw_active(
            key, n, kfix, pmax, log1mp, thin, _view(p), _view(sink[lo : lo + n])
        )


@_kernel
def fill_kernel(
    seed,
    start,
    n_samples,
    indptr,
    indices,
    values,
    n,
    kfix,
    pmax,
    log1mp,
    thin,
    p,
    code,
    support,
    cum,
):
    """Active indices and values of sample ``start + s`` into its CSR slice.

    ``values`` may be float32: each float64 draw is rounded once on store,
    like ``fastsuper.sample(..., dtype=np.float32)``.
    """
    skey = np.uint64(seed_key(seed))
    for s in range(cuda.grid(1), n_samples, cuda.gridsize(1)):
        key = np.uint64(sample_key(skey, start + s))
        lo = indptr[s]
        hi = indptr[s + 1]
        draw_sample(
            key,
            n,
            kfix,
            pmax,
            log1mp,
            thin,
            _view(p),
            code,
            _view(support),
            _view(cum),
            _view(indices[lo:hi]),
            _view(values[lo:hi]),
        )


# --------------------------------------------------------------------------
# Monte-Carlo loss


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
    a,
    ia,
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
    act, a, ia
        Activation code, exponent (compute dtype) and integer exponent or -1.
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
    sh_loss = cuda.shared.array(MAX_THREADS, np.float64)
    sh_x2 = cuda.shared.array(MAX_THREADS, np.float64)
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
                # h = W x over the active entries (threads over r)
                for r in range(lane, d, tj):
                    acc = zero
                    for q in range(k):
                        acc += W[r, indices[o + q]] * values[o + q]
                    h[r] = acc
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
                    f = np.float64(phi(z, act, a, ia))
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

    The CPU's recursion (:func:`fastsuper.kernels_cpu.mc_blocks`): non-finite
    losses are counted (with the index of the first one) and left out.
    """
    nb = stats.shape[0]
    for bi in range(cuda.grid(1), nb, cuda.gridsize(1)):
        lo = bi * block
        hi = min(lo + block, n_chunk)
        cnt = 0.0
        lm = 0.0
        l2 = 0.0
        gm = 0.0
        g2 = 0.0
        bad = 0.0
        first_bad = -1.0
        for s in range(lo, hi):
            ls = loss[s]
            if not math.isfinite(ls):
                if bad == 0.0:
                    first_bad = np.float64(first_index + s)
                bad += 1.0
                continue
            gs = gain[s]
            cnt += 1.0
            dl = ls - lm
            lm += dl / cnt
            l2 += dl * (ls - lm)
            dg = gs - gm
            gm += dg / cnt
            g2 += dg * (gs - gm)
        stats[bi, ST_COUNT] = cnt
        stats[bi, ST_LOSS_MEAN] = lm
        stats[bi, ST_LOSS_M2] = l2
        stats[bi, ST_GAIN_MEAN] = gm
        stats[bi, ST_GAIN_M2] = g2
        stats[bi, ST_NONFINITE] = bad
        stats[bi, ST_FIRST_BAD] = first_bad


# --------------------------------------------------------------------------
# exact loss: row-wise power sums


@_kernel
def power_sums_kernel(A, c, symmetric, out):
    """``out[r, j] = sum_{i != j} A[j, i]**r c[r, i]`` for ``r = 1 .. R`` (a thread per row ``j``).

    ``out`` has shape (R + 1, n); row 0 is set to 0.  With ``symmetric`` the
    kernel reads ``A[i, j]`` (column ``j``: coalesced) instead of ``A[j, i]``.
    Powers are formed by repeated multiplication, ``A**r = A**(r-1) * A``.
    """
    n = out.shape[1]
    R = out.shape[0] - 1
    acc = cuda.local.array(_ACC_SIZE, np.float64)
    for j in range(cuda.grid(1), n, cuda.gridsize(1)):
        for r in range(R + 1):
            acc[r] = 0.0
        for i in range(n):
            if i != j:
                aji = A[i, j] if symmetric else A[j, i]
                pw = 1.0
                for r in range(1, R + 1):
                    pw *= aji
                    acc[r] += pw * c[r, i]
        out[0, j] = 0.0
        for r in range(1, R + 1):
            out[r, j] = acc[r]


# --------------------------------------------------------------------------
# sampled loss gradient (training)


@_kernel
def grad_kernel(
    W,
    b,
    imp,
    imp2,
    act,
    a,
    ia,
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

    The CPU's per-sample formulas (:func:`fastsuper.kernels_cpu_train.run_grad`)
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
    act, a, ia, zero
        Activation code, exponent, integer exponent or -1, and 0 in the
        compute dtype.
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
            for r in range(lane, d, tj):  # 1. h = W x
                acc = zero
                for q in range(k):
                    acc += W[r, indices[o + q]] * values[o + q]
                h[r] = acc
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
                f = phi(zj, act, a, ia)
                e = f - xj
                e64 = np.float64(f) - np.float64(xj)
                gj = e
                if e != 0:
                    gj = imp2[j] * e * dphi(zj, act, a, ia)
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
