"""CUDA backend of sampling and Monte-Carlo estimation.

The numbers are the CPU backend's: the kernels (:mod:`fastsuper.mc.kernels_cuda`)
call the same ``@njit`` per-element functions (counter-based RNG, sampler,
activation), samples are keyed by ``(seed, sample index)``, and the
Monte-Carlo statistics are reduced per sample block, in sample order, with the
CPU's Welford recursion.  Launch sizes are tunables of
:mod:`fastsuper.core.config` (``SAMPLE_THREADS``, ``MC_THREADS``,
``GRAM_THREADS``, ``POWER_THREADS``, ``CHUNK_SAMPLES``, ``SCRATCH_BYTES``).
"""

from __future__ import annotations

import math
import time

import numpy as np

from fastsuper.core import config
from fastsuper.core import validation as v
from fastsuper.core.bundles import activation
from fastsuper.core.cuda import launch_grid, next_pow2, quiet_launch, require_cuda, to_device_array
from fastsuper.core.laws import SparseBatch, SparseInputs
from fastsuper.core.model import Model
from fastsuper.mc.common import PATHS, LossEstimate, check_common, finish
from fastsuper.mc.paths import choose_path

__all__ = ["DeviceInputs", "draw_chunk", "chunk_samples", "estimate_loss_cuda", "sample_cuda"]

#: Monte-Carlo paths of the GPU kernel (the CPU's "blocked" paths are CPU-only)
GPU_PATHS = ("auto", "dense", "columns")


def _kernels():
    cuda = require_cuda()
    from fastsuper.mc import kernels_cuda

    return cuda, kernels_cuda


def _mc_threads() -> int:
    t = int(config.MC_THREADS)
    if t < 1 or t & (t - 1) or t > config.CUDA_MAX_THREADS:
        raise ValueError(
            f"config.MC_THREADS must be a power of two in [1, {config.CUDA_MAX_THREADS}], got {t}"
        )
    return t


class DeviceInputs:
    """The :class:`~fastsuper.core.bundles.InputLaw` of a SparseInputs, its arrays on the device."""

    def __init__(self, cuda, inputs: SparseInputs):
        law = inputs._kernel_params()
        arrays = ("p", "support", "cum", "tlo", "thi")
        self.law = law._replace(
            **{f: cuda.to_device(np.ascontiguousarray(getattr(law, f), dtype=np.float64))
               for f in arrays + ("gq", "gval")},
            **{f: cuda.to_device(np.ascontiguousarray(getattr(law, f), dtype=np.int64))
               for f in ("gptr", "gmem", "gkind")},
        )  # fmt: skip
        self.n = n = law.n
        kfix = law.kfix
        self.expected = float(n * law.pmax) if kfix < 0 else float(kfix)
        if kfix >= 0:
            cap = max(kfix, 1)
        elif law.ngrp > 0:  # a group opens all at once: room for its size beyond the spread
            ek = self.expected = inputs.expected_active
            big = int(np.max(np.diff(law.gptr)))
            cap = min(n, max(1, math.ceil(ek + 8.0 * math.sqrt(ek * big) + 16.0 + big)))
        else:
            ek = self.expected
            cap = min(n, max(1, math.ceil(ek + 8.0 * math.sqrt(ek) + 16.0)))
        #: row length of the count kernel's sink (see kernels_cuda.count_kernel)
        self.cap = int(cap)

    def bytes_per_sample(self, itemsize: int) -> int:
        """Device bytes a chunk needs per sample (sink, CSR, results), rounded up."""
        return int(4 * self.cap + 40 + math.ceil(self.expected * (4 + itemsize)) + 8)


def chunk_samples(block: int, bytes_per_sample: int) -> int:
    cs = min(int(config.CHUNK_SAMPLES), int(config.SCRATCH_BYTES) // max(bytes_per_sample, 1))
    return max(block, (cs // block) * block)


def draw_chunk(cuda, dev: DeviceInputs, seed_u64, first: int, ns: int, dtype):
    """CSR samples ``first .. first + ns - 1`` on the device.

    Returns (indptr on the host, indptr, indices (int32), values (dtype)) on the device.
    """
    _, kc = _kernels()
    n = dev.n
    threads = int(config.SAMPLE_THREADS)
    grid = launch_grid(cuda, ns, threads)
    counts = cuda.device_array(ns, dtype=np.int32)
    sink = cuda.device_array(max((ns - 1) * dev.cap + n, 1), dtype=np.int32)
    kc.count_kernel[grid, threads](seed_u64, first, ns, dev.law, dev.cap, sink, counts)
    del sink
    indptr = np.zeros(ns + 1, dtype=np.int64)
    np.cumsum(counts.copy_to_host(), out=indptr[1:])
    total = int(indptr[-1])
    indptr_d = cuda.to_device(indptr)
    indices = cuda.device_array(max(total, 1), dtype=np.int32)
    values = cuda.device_array(max(total, 1), dtype=dtype)
    kc.fill_kernel[grid, threads](seed_u64, first, ns, dev.law, indptr_d, indices, values)
    return indptr, indptr_d, indices, values


class MCPlan:
    """The model on the device and the launch geometry of :func:`kernels_cuda.mc_kernel`."""

    def __init__(self, cuda, kc, model: Model, inputs: SparseInputs, use_cols, want_pf, block, A):
        self.cuda, self.kc = cuda, kc
        self.dtype = dtype = np.dtype(model.dtype)
        n = model.n
        self.n, self.d = n, model.d
        self.use_cols, self.want_pf, self.block = bool(use_cols), bool(want_pf), int(block)
        self.W = cuda.to_device(np.ascontiguousarray(model.W))
        self.b = cuda.to_device(np.ascontiguousarray(model.bias, dtype=dtype))
        self.imp = cuda.to_device(np.ascontiguousarray(inputs.importance, dtype=np.float64))
        if not use_cols:
            self.A = cuda.device_array((1, 1), dtype=dtype)
        elif A is None:
            self.A = _gram(cuda, kc, self.W, dtype)
        else:
            self.A = to_device_array(A, dtype, name="A")
            if tuple(self.A.shape) != (n, n):
                raise ValueError(
                    f"A must have shape (n, n) = ({n}, {n}), got {tuple(self.A.shape)}"
                )
        self.act = activation(model)
        self.zero = dtype.type(0)
        self.threads = _mc_threads()
        self.tj = min(self.threads, next_pow2(n))
        self.slots_per_block = self.threads // self.tj
        self.dummy = cuda.device_array((1, 1), dtype=np.float64)

    def losses(self, indptr, indices, values, ns: int):
        """Launch the Monte-Carlo kernel on ``ns`` CSR samples (whole blocks from a block start).

        Returns the per-sample loss and gain and the per-block per-feature
        sums (dummies without per-feature output), all on the device.
        """
        cuda, kc = self.cuda, self.kc
        nbc = -(-ns // self.block)
        span = self.block if self.want_pf else 1
        units = nbc if self.want_pf else ns
        grid = launch_grid(cuda, units, self.slots_per_block)
        n_slots = grid * self.slots_per_block
        n_rounds = -(-units // n_slots)
        hshape = (1, 1) if self.use_cols else (n_slots, self.d)
        hbuf = cuda.device_array(hshape, dtype=self.dtype)
        loss = cuda.device_array(ns, dtype=np.float64)
        gain = cuda.device_array(ns, dtype=np.float64)
        if self.want_pf:
            pf1 = cuda.to_device(np.zeros((nbc, self.n)))
            pf2 = cuda.to_device(np.zeros((nbc, self.n)))
        else:
            pf1 = pf2 = self.dummy
        kc.mc_kernel[grid, self.threads](
            self.W,
            self.A,
            self.b,
            self.imp,
            self.act,
            self.zero,
            self.use_cols,
            self.want_pf,
            span,
            units,
            ns,
            self.tj,
            n_rounds,
            indptr,
            indices,
            values,
            hbuf,
            loss,
            gain,
            pf1,
            pf2,
        )
        return loss, gain, pf1, pf2

    def block_stats(self, loss, gain, ns: int, first_index: int) -> np.ndarray:
        """Per-block Welford statistics (the CPU's columns), copied to the host."""
        cuda, kc = self.cuda, self.kc
        nbc = -(-ns // self.block)
        stats = cuda.device_array((nbc, kc.N_STATS), dtype=np.float64)
        wt = int(config.POWER_THREADS)
        kc.welford_kernel[launch_grid(cuda, nbc, wt), wt](
            loss, gain, ns, self.block, first_index, stats
        )
        return stats.copy_to_host()


# --------------------------------------------------------------------------
# public functions


@quiet_launch
def sample_cuda(
    inputs: SparseInputs, n_samples: int, seed: int = 0, start: int = 0, *, dtype=np.float64
) -> SparseBatch:
    """Draw ``n_samples`` inputs on the GPU: the same samples as :func:`fastsuper.sample`.

    One thread per sample counts its active features, then (after a prefix
    sum) writes them into CSR arrays.  Sample ``s`` is a function of
    ``(seed, s)`` alone.

    Parameters
    ----------
    inputs, n_samples, seed, start, dtype
        As in :func:`fastsuper.sample` (which also takes ``chunk_size``).

    Returns
    -------
    SparseBatch
        The batch, copied to host memory (``indices`` as int64).

    Notes
    -----
    On the simulator the samples equal :func:`fastsuper.sample`'s bit for
    bit.  On a GPU, ``uniform``, ``uniform_sym``, ``rademacher``,
    ``constant`` and ``discrete`` values are exact too; ``gaussian`` values
    use the device's ``log``/``cos`` (libdevice), which may differ from the
    CPU's libm in the last bit.
    """
    cuda, kc = _kernels()
    if not isinstance(inputs, SparseInputs):
        raise TypeError(f"inputs must be a SparseInputs, got {type(inputs).__name__}")
    n_samples = v.check_int("n_samples", n_samples, minimum=0)
    seed = v.check_seed("seed", seed)
    start = v.check_int("start", start, minimum=0)
    dtype = np.dtype(dtype)
    if dtype not in v.FLOAT_DTYPES:
        raise TypeError(f"dtype must be float32 or float64, got {dtype}")
    seed_u64 = np.uint64(seed & ((1 << 64) - 1))
    dev = DeviceInputs(cuda, inputs)
    chunk = chunk_samples(1, dev.bytes_per_sample(dtype.itemsize))
    ptrs, idx, vals = [np.zeros(1, dtype=np.int64)], [], []
    offset = 0
    for lo in range(0, n_samples, chunk):
        ns = min(chunk, n_samples - lo)
        indptr, _, indices, values = draw_chunk(cuda, dev, seed_u64, start + lo, ns, dtype)
        total = int(indptr[-1])
        ptrs.append(indptr[1:] + offset)
        idx.append(indices.copy_to_host()[:total].astype(np.int64))
        vals.append(values.copy_to_host()[:total])
        offset += total
    indptr = np.concatenate(ptrs)
    indices = np.concatenate(idx) if idx else np.zeros(0, dtype=np.int64)
    values = np.concatenate(vals) if vals else np.zeros(0, dtype=dtype)
    return SparseBatch(indptr, indices, values, inputs.n)


def _gram(cuda, kc, W_d, dtype):
    n = W_d.shape[1]
    A = cuda.device_array((n, n), dtype=dtype)
    threads = int(config.GRAM_THREADS)
    kc.gram_kernel[launch_grid(cuda, n * n, threads), threads](W_d, dtype.type(0), A)
    return A


@quiet_launch
def estimate_loss_cuda(
    model: Model, inputs: SparseInputs, n_samples: int, seed: int = 0, path: str = "auto",
    block_size: int = config.DEFAULT_BLOCK, start: int = 0, per_feature: bool = False, *, A=None,
) -> LossEstimate:  # fmt: skip
    """Monte-Carlo loss and gain on the GPU (``estimate_loss(..., backend="cuda")``).

    Same samples, same per-block Welford statistics and the same
    :class:`~fastsuper.mc.api.LossEstimate` as the CPU backend, with
    ``backend="cuda"``: loss and gain agree with
    ``estimate_loss(..., backend="cpu")`` to float round-off (the sums over
    features are taken in another order).

    Parameters
    ----------
    model : Model
        The autoencoder; its dtype is the compute dtype (accumulation in float64).
    inputs : SparseInputs
        Input law.
    n_samples : int
        Number of samples (>= 2).
    seed : int, default 0
        Seed.
    path : {"auto", "dense", "columns"}
        As in :func:`fastsuper.estimate_loss`; ``"auto"`` takes ``"columns"``
        where the CPU cost model picks a column path, else ``"dense"``.  The
        CPU's ``"blocked"`` and ``"columns_blocked"`` do not exist on the GPU.
    block_size : int, default config.DEFAULT_BLOCK
        Samples per block of statistics (the CPU's unit; same block size,
        same numbers).
    start : int, default 0
        Index of the first sample.
    per_feature : bool, default False
        Also return each feature's loss term.  A group of threads then owns
        a whole sample block (less parallelism for small runs).
    A : array_like or device array of shape (n, n), optional
        ``W^T W`` in the model's dtype for the columns path, e.g. kept on the
        device between calls; by default it is formed on the GPU.

    Returns
    -------
    LossEstimate

    Raises
    ------
    FloatingPointError
        If the loss of any sample overflows.
    RuntimeError
        If CUDA is unavailable.
    """
    cuda, kc = _kernels()
    n_samples, seed = check_common(model, inputs, n_samples, seed)
    block = v.check_int("block_size", block_size, minimum=1)
    start = v.check_int("start", start, minimum=0)
    if path not in GPU_PATHS:
        raise ValueError(
            f"path must be one of {GPU_PATHS} on the CUDA backend, got {path!r}"
            + (" (a CPU-only path)" if path in PATHS else "")
        )
    if not isinstance(per_feature, (bool, np.bool_)):
        raise TypeError(f"per_feature must be True or False, got {per_feature!r}")
    want_pf = bool(per_feature)
    if path == "auto":  # the CPU cost model's family: rows of A, or W then W^T
        cpu_path = choose_path(model, inputs, n_samples)
        path = "columns" if cpu_path in ("columns", "columns_blocked") else "dense"
    use_cols = path == "columns"
    t0 = time.perf_counter()

    plan = MCPlan(cuda, kc, model, inputs, use_cols, want_pf, block, A)
    dev = DeviceInputs(cuda, inputs)
    seed_u64 = np.uint64(seed & ((1 << 64) - 1))
    n = model.n
    nb = -(-n_samples // block)
    stats = np.zeros((nb, kc.N_STATS))
    pf1 = np.zeros((nb if want_pf else 0, n))
    pf2 = np.zeros((nb if want_pf else 0, n))
    chunk = chunk_samples(block, dev.bytes_per_sample(plan.dtype.itemsize))
    for lo in range(0, n_samples, chunk):
        ns = min(chunk, n_samples - lo)
        b_lo = lo // block
        _, indptr_d, indices_d, values_d = draw_chunk(
            cuda, dev, seed_u64, start + lo, ns, plan.dtype
        )
        loss_d, gain_d, pf1_d, pf2_d = plan.losses(indptr_d, indices_d, values_d, ns)
        stats_c = plan.block_stats(loss_d, gain_d, ns, start + lo)
        stats[b_lo : b_lo + stats_c.shape[0]] = stats_c
        if want_pf:
            pf1[b_lo : b_lo + stats_c.shape[0]] = pf1_d.copy_to_host()
            pf2[b_lo : b_lo + stats_c.shape[0]] = pf2_d.copy_to_host()

    elapsed = time.perf_counter() - t0
    return finish(
        stats, pf1, pf2, model, inputs, n_samples, seed, path, want_pf, elapsed,
        method="naive", backend="cuda",
    )  # fmt: skip
