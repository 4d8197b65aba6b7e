"""CUDA backend: the sampler, the Monte-Carlo estimator and the exact power sums on a GPU.

Nothing here imports :mod:`numba.cuda` until a function is called, so
``import fastsuper`` works without numba-cuda or a GPU.  Every public
function starts with :func:`require_cuda`, which raises a clear
``RuntimeError`` when CUDA is unavailable.  Without a GPU, set
``NUMBA_ENABLE_CUDASIM=1`` to run the same kernels on numba-cuda's simulator
(slow; for tests).

The numbers are the CPU backend's: the kernels
(:mod:`fastsuper.kernels_cuda`) call the same ``@njit`` per-element functions
(counter-based RNG, sampler, activation), samples are keyed by
``(seed, sample index)``, and the Monte-Carlo statistics are reduced per
sample block, in sample order, with the CPU's Welford recursion.

Tunables (module constants, read at each call)
----------------------------------------------
SAMPLE_THREADS, MC_THREADS, POWER_THREADS, GRAM_THREADS, GRAD_THREADS
    Threads per block of the kernels (``MC_THREADS`` a power of two at most
    :data:`fastsuper.kernels_cuda.MAX_THREADS`).
CHUNK_SAMPLES, SCRATCH_BYTES
    Samples per chunk (rounded down to whole sample blocks) and the device
    memory a chunk's scratch may use.
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
import warnings

import numpy as np

from . import _validation as v
from .estimators import DEFAULT_BLOCK, PATHS, LossEstimate, _check_common, _finish, choose_path
from .model import Model
from .sampling import SparseBatch, SparseInputs

__all__ = [
    "CUDA_REQUIRED_MESSAGE",
    "estimate_loss_cuda",
    "exact_power_sums_cuda",
    "fit_adam_cuda",
    "loss_grad_cuda",
    "require_cuda",
    "sample_cuda",
    "to_device_array",
    "to_host_array",
]

#: The error raised when CUDA is unavailable (the reason is appended).
CUDA_REQUIRED_MESSAGE = (
    "backend='cuda' needs a CUDA GPU and the `cuda` extra: pip install 'fastsuper[cuda]' "
    "(numba-cuda); without a GPU, set NUMBA_ENABLE_CUDASIM=1 to run the kernels on the CUDA "
    "simulator (slow, for testing)"
)

#: Monte-Carlo paths of the GPU kernel (the CPU's "blocked" paths are CPU-only)
GPU_PATHS = ("auto", "dense", "columns")

#: threads per block of the sampler kernels (one thread per sample)
SAMPLE_THREADS = 128
#: threads per block of the Monte-Carlo kernel (power of two, <= kernels_cuda.MAX_THREADS)
MC_THREADS = 128
#: threads per block of the power-sum and Welford kernels (one thread per row / block)
POWER_THREADS = 128
#: threads per block of the A = W^T W kernel (one thread per entry)
GRAM_THREADS = 128
#: most threads per block of the sampled-gradient kernel (a thread block per sample block)
GRAD_THREADS = 128
#: samples per chunk (whole sample blocks; at least one block)
CHUNK_SAMPLES = 1 << 20
#: device scratch a chunk may use (sampler sink, CSR arrays, per-sample results)
SCRATCH_BYTES = 512 << 20
#: resident threads per multiprocessor assumed when sizing grid-stride grids
THREADS_PER_SM = 2048
#: blocks of a grid-stride grid on the simulator (which runs blocks one by one)
SIMULATOR_MAX_BLOCKS = 2


# --------------------------------------------------------------------------
# availability and device arrays


def _import_cuda():
    from numba import cuda

    return cuda


def require_cuda():
    """Return the :mod:`numba.cuda` module, or raise if CUDA cannot be used.

    Returns
    -------
    module
        :mod:`numba.cuda` (the simulator's under ``NUMBA_ENABLE_CUDASIM=1``).

    Raises
    ------
    RuntimeError
        If numba-cuda is not installed, or no GPU and driver are found and
        the simulator is not enabled; the message says how to fix it.
    """
    try:
        cuda = _import_cuda()
    except Exception as exc:  # ImportError, or the bindings' own errors
        raise RuntimeError(f"{CUDA_REQUIRED_MESSAGE} [importing numba.cuda failed: {exc}]") from exc
    try:
        ok = bool(cuda.is_available())
    except Exception:  # pragma: no cover - is_available() catches driver errors itself
        ok = False
    if not ok:
        raise RuntimeError(
            f"{CUDA_REQUIRED_MESSAGE} [numba.cuda.is_available() is False: no CUDA driver or GPU]"
        )
    return cuda


def _kernels():
    cuda = require_cuda()
    from . import kernels_cuda

    return cuda, kernels_cuda


@contextlib.contextmanager
def _launch_warnings_off(simulator: bool):
    """Silence warnings that launches emit but that say nothing to the user.

    * numba-cuda's low-occupancy warning (grids below 128 blocks): small
      grids are deliberate here (one thread per sample block, small problems);
      numba-cuda's warning class is not numba's, so the usual
      ``NumbaPerformanceWarning`` filters do not catch it.
    * On the simulator, NumPy's ``RuntimeWarning`` for overflow in the
      emulated kernels: a GPU does not warn, and overflow is reported as
      the CPU backend reports it (``FloatingPointError`` from the per-block
      non-finite counts).
    """
    try:
        from numba.cuda.core.errors import NumbaPerformanceWarning
    except Exception:  # pragma: no cover - older numba-cuda
        from numba.core.errors import NumbaPerformanceWarning
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NumbaPerformanceWarning)
        if simulator:
            warnings.simplefilter("ignore", RuntimeWarning)
        yield


def _quiet(func):
    """Check for CUDA, then run ``func`` under :func:`_launch_warnings_off`."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        _, kc = _kernels()
        with _launch_warnings_off(kc.SIMULATOR):
            return func(*args, **kwargs)

    return wrapper


def _is_numba_device_array(x) -> bool:
    # numba-cuda's DeviceNDArray and the simulator's FakeCUDAArray
    return hasattr(x, "copy_to_host") and hasattr(x, "shape") and hasattr(x, "dtype")


class _HostInterface:
    """An ``__array_interface__`` over a ``__cuda_array_interface__`` (simulator only)."""

    def __init__(self, cai):
        self.__array_interface__ = {
            "shape": tuple(cai["shape"]),
            "typestr": cai["typestr"],
            "data": (int(cai["data"][0]), bool(cai["data"][1])),
            "strides": cai.get("strides"),
            "version": 3,
        }


def to_device_array(x, dtype=None, *, name: str = "array"):
    """``x`` as a numba device array, without a copy when it already is on the GPU.

    Parameters
    ----------
    x : array_like or device array
        A NumPy array (or anything :func:`numpy.asarray` accepts), a numba
        device array, or any object exposing ``__cuda_array_interface__``
        (CuPy, PyTorch CUDA tensors, ...), wrapped with
        ``numba.cuda.as_cuda_array``.
    dtype : dtype, optional
        Required dtype.  Host data is converted; device data must already
        have it (a device array is never converted behind your back).
    name : str, default "array"
        Name used in error messages.

    Returns
    -------
    numba device array

    Raises
    ------
    TypeError
        If a device array does not have ``dtype``.
    RuntimeError
        If CUDA is unavailable (see :func:`require_cuda`).
    """
    cuda = require_cuda()
    want = None if dtype is None else np.dtype(dtype)
    if _is_numba_device_array(x):
        arr = x
    elif hasattr(x, "__cuda_array_interface__"):
        if hasattr(cuda, "as_cuda_array"):
            arr = cuda.as_cuda_array(x)
        else:  # the simulator: "device" pointers are host pointers
            arr = cuda.to_device(np.asarray(_HostInterface(x.__cuda_array_interface__)))
    else:
        return cuda.to_device(np.ascontiguousarray(x, dtype=want))
    if want is not None and np.dtype(arr.dtype) != want:
        raise TypeError(
            f"{name} is a device array of dtype {np.dtype(arr.dtype)}, expected {want}; "
            f"convert it on the device first (e.g. .astype({want.name}))"
        )
    return arr


def to_host_array(x, *, name: str = "array") -> np.ndarray:
    """A NumPy copy of a GPU array (numba device array or ``__cuda_array_interface__``).

    Used where fastsuper keeps parameters in host memory (:class:`fastsuper.Model`);
    the GPU kernels copy them back to the device, ``O(d n)`` per call.

    Parameters
    ----------
    x : device array
        A numba device array, or any object exposing ``__cuda_array_interface__``.
    name : str, default "array"
        Name used in error messages.

    Returns
    -------
    ndarray

    Raises
    ------
    RuntimeError
        If CUDA is unavailable (see :func:`require_cuda`).
    """
    cuda = require_cuda()
    if _is_numba_device_array(x):
        return x.copy_to_host()
    if not hasattr(x, "__cuda_array_interface__"):
        raise TypeError(f"{name} is not a GPU array (no __cuda_array_interface__)")
    if hasattr(cuda, "as_cuda_array"):
        return cuda.as_cuda_array(x).copy_to_host()
    return np.array(_HostInterface(x.__cuda_array_interface__))  # simulator: host memory


# --------------------------------------------------------------------------
# launch helpers


def _next_pow2(k: int) -> int:
    return 1 << max(0, int(k) - 1).bit_length()


def _blocks(count: int, threads: int) -> int:
    return max(1, -(-int(count) // threads))


def _sm_count(cuda) -> int:
    try:
        return int(cuda.get_current_device().MULTIPROCESSOR_COUNT)
    except Exception:  # pragma: no cover - the simulator's device has no attributes
        return 1


def _grid(cuda, kc, count: int, threads: int) -> int:
    """Blocks of a grid-stride launch over ``count`` items: enough to fill the GPU."""
    if kc.SIMULATOR:
        limit = int(SIMULATOR_MAX_BLOCKS)
    else:
        limit = _sm_count(cuda) * max(1, int(THREADS_PER_SM) // threads)
    return max(1, min(_blocks(count, threads), limit))


def _mc_threads(kc) -> int:
    t = int(MC_THREADS)
    if t < 1 or t & (t - 1) or t > kc.MAX_THREADS:
        raise ValueError(
            f"backend_cuda.MC_THREADS must be a power of two in [1, {kc.MAX_THREADS}], got {t}"
        )
    return t


class _DeviceInputs:
    """The sampler's parameters of a SparseInputs, with its arrays on the device."""

    def __init__(self, cuda, inputs: SparseInputs):
        n, kfix, pmax, log1mp, thin, p, code, support, cum = inputs._kernel_params()
        self.n, self.kfix, self.pmax, self.log1mp = int(n), int(kfix), float(pmax), float(log1mp)
        self.thin, self.code = bool(thin), int(code)
        self.p = cuda.to_device(np.ascontiguousarray(p, dtype=np.float64))
        self.support = cuda.to_device(np.ascontiguousarray(support, dtype=np.float64))
        self.cum = cuda.to_device(np.ascontiguousarray(cum, dtype=np.float64))
        self.expected = float(n * pmax) if kfix < 0 else float(kfix)
        if kfix >= 0:
            cap = max(kfix, 1)
        else:
            ek = self.expected
            cap = min(self.n, max(1, math.ceil(ek + 8.0 * math.sqrt(ek) + 16.0)))
        #: row length of the count kernel's sink (see kernels_cuda.count_kernel)
        self.cap = int(cap)

    def bytes_per_sample(self, itemsize: int) -> int:
        """Device bytes a chunk needs per sample (sink, CSR, results), rounded up."""
        return int(4 * self.cap + 40 + math.ceil(self.expected * (4 + itemsize)) + 8)


def _chunk_samples(block: int, bytes_per_sample: int) -> int:
    cs = min(int(CHUNK_SAMPLES), int(SCRATCH_BYTES) // max(bytes_per_sample, 1))
    return max(block, (cs // block) * block)


def _draw_chunk(cuda, kc, dev: _DeviceInputs, seed_u64, first: int, ns: int, dtype):
    """CSR samples ``first .. first + ns - 1`` on the device.

    Returns (indptr on the host, indptr, indices (int32), values (dtype)) on the device.
    """
    n = dev.n
    threads = int(SAMPLE_THREADS)
    grid = _grid(cuda, kc, ns, threads)
    counts = cuda.device_array(ns, dtype=np.int32)
    sink = cuda.device_array(max((ns - 1) * dev.cap + n, 1), dtype=np.int32)
    kc.count_kernel[grid, threads](
        seed_u64,
        first,
        ns,
        n,
        dev.kfix,
        dev.pmax,
        dev.log1mp,
        dev.thin,
        dev.p,
        dev.cap,
        sink,
        counts,
    )
    del sink
    indptr = np.zeros(ns + 1, dtype=np.int64)
    np.cumsum(counts.copy_to_host(), out=indptr[1:])
    total = int(indptr[-1])
    indptr_d = cuda.to_device(indptr)
    indices = cuda.device_array(max(total, 1), dtype=np.int32)
    values = cuda.device_array(max(total, 1), dtype=dtype)
    kc.fill_kernel[grid, threads](
        seed_u64,
        first,
        ns,
        indptr_d,
        indices,
        values,
        n,
        dev.kfix,
        dev.pmax,
        dev.log1mp,
        dev.thin,
        dev.p,
        dev.code,
        dev.support,
        dev.cum,
    )
    return indptr, indptr_d, indices, values


class _MCPlan:
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
        self.act, self.a, self.ia = model._act_args()
        self.zero = dtype.type(0)
        self.threads = _mc_threads(kc)
        self.tj = min(self.threads, _next_pow2(n))
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
        grid = _grid(cuda, kc, units, self.slots_per_block)
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
            self.a,
            self.ia,
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
        wt = int(POWER_THREADS)
        kc.welford_kernel[_grid(cuda, kc, nbc, wt), wt](
            loss, gain, ns, self.block, first_index, stats
        )
        return stats.copy_to_host()


# --------------------------------------------------------------------------
# public functions


@_quiet
def sample_cuda(
    inputs: SparseInputs,
    n_samples: int,
    seed: int = 0,
    start: int = 0,
    *,
    dtype=np.float64,
) -> SparseBatch:
    """Draw ``n_samples`` inputs on the GPU: the same samples as :func:`fastsuper.sample`.

    One thread per sample counts its active features, then (after a prefix
    sum) writes them into CSR arrays.  Sample ``s`` is a function of
    ``(seed, s)`` alone.

    Parameters
    ----------
    inputs : SparseInputs
        The input law.
    n_samples : int
        How many samples to draw.
    seed : int, default 0
        Seed (any integer; reduced modulo 2**64).
    start : int, default 0
        Index of the first sample.
    dtype : {numpy.float64, numpy.float32}
        dtype of ``values``.

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
    seed = v.check_int("seed", seed)
    start = v.check_int("start", start, minimum=0)
    dtype = np.dtype(dtype)
    if dtype not in v.FLOAT_DTYPES:
        raise TypeError(f"dtype must be float32 or float64, got {dtype}")
    seed_u64 = np.uint64(seed & ((1 << 64) - 1))
    dev = _DeviceInputs(cuda, inputs)
    chunk = _chunk_samples(1, dev.bytes_per_sample(dtype.itemsize))
    ptrs, idx, vals = [np.zeros(1, dtype=np.int64)], [], []
    offset = 0
    for lo in range(0, n_samples, chunk):
        ns = min(chunk, n_samples - lo)
        indptr, _, indices, values = _draw_chunk(cuda, kc, dev, seed_u64, start + lo, ns, dtype)
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
    threads = int(GRAM_THREADS)
    kc.gram_kernel[_grid(cuda, kc, n * n, threads), threads](W_d, dtype.type(0), A)
    return A


@_quiet
def estimate_loss_cuda(
    model: Model,
    inputs: SparseInputs,
    n_samples: int,
    seed: int = 0,
    path: str = "auto",
    block_size: int = DEFAULT_BLOCK,
    start: int = 0,
    per_feature: bool = False,
    *,
    A=None,
) -> LossEstimate:
    """Monte-Carlo loss and gain on the GPU (``estimate_loss(..., backend="cuda")``).

    Same samples, same per-block Welford statistics and the same
    :class:`~fastsuper.estimators.LossEstimate` as the CPU backend, with
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
    block_size : int, default DEFAULT_BLOCK
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
    n_samples, seed = _check_common(model, inputs, n_samples, seed)
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

    plan = _MCPlan(cuda, kc, model, inputs, use_cols, want_pf, block, A)
    dev = _DeviceInputs(cuda, inputs)
    seed_u64 = np.uint64(seed & ((1 << 64) - 1))
    n = model.n
    nb = -(-n_samples // block)
    stats = np.zeros((nb, kc.N_STATS))
    pf1 = np.zeros((nb if want_pf else 0, n))
    pf2 = np.zeros((nb if want_pf else 0, n))
    chunk = _chunk_samples(block, dev.bytes_per_sample(plan.dtype.itemsize))
    for lo in range(0, n_samples, chunk):
        ns = min(chunk, n_samples - lo)
        b_lo = lo // block
        _, indptr_d, indices_d, values_d = _draw_chunk(
            cuda, kc, dev, seed_u64, start + lo, ns, plan.dtype
        )
        loss_d, gain_d, pf1_d, pf2_d = plan.losses(indptr_d, indices_d, values_d, ns)
        stats_c = plan.block_stats(loss_d, gain_d, ns, start + lo)
        stats[b_lo : b_lo + stats_c.shape[0]] = stats_c
        if want_pf:
            pf1[b_lo : b_lo + stats_c.shape[0]] = pf1_d.copy_to_host()
            pf2[b_lo : b_lo + stats_c.shape[0]] = pf2_d.copy_to_host()

    return _finish(
        stats,
        pf1,
        pf2,
        model,
        inputs,
        n_samples,
        seed,
        path,
        want_pf,
        time.perf_counter() - t0,
        method="naive",
        backend="cuda",
    )


@_quiet
def exact_power_sums_cuda(A, c, *, symmetric: bool = True, to_host: bool = True):
    """Row-wise power sums ``S[r, j] = sum_{i != j} A[j, i]**r c[r, i]`` on the GPU.

    The ``O(n**2 R)`` core of the exact loss (THEORY §3): with ``c[r]`` the
    cumulants ``kappa_r(x)`` and ``A = W^T W``, ``S[r, j]`` is
    ``kappa_r(y_j)`` without the bias.  One thread per row ``j``; the
    diagonal is skipped whatever its value.

    Parameters
    ----------
    A : array_like or device array of shape (n, n), float64
        The matrix.
    c : array_like or device array of shape (R + 1, n), float64
        ``c[r]`` for ``r = 1 .. R`` (row 0 is ignored), ``1 <= R <= 64``.
    symmetric : bool, default True
        ``A`` is symmetric (as ``W^T W`` is): read its columns, which is
        coalesced on a GPU.  Pass False for a general matrix.
    to_host : bool, default True
        Return a NumPy array; False returns the device array.

    Returns
    -------
    ndarray of shape (R + 1, n), float64
        ``S[0] = 0`` and ``S[r]`` for ``r = 1 .. R``.

    Raises
    ------
    ValueError
        If the shapes do not match or ``R`` is out of range.
    TypeError
        If a device array is not float64.
    """
    cuda, kc = _kernels()
    A_d = to_device_array(A, np.float64, name="A")
    c_d = to_device_array(c, np.float64, name="c")
    if len(A_d.shape) != 2 or A_d.shape[0] != A_d.shape[1]:
        raise ValueError(f"A must be a square (n, n) matrix, got shape {tuple(A_d.shape)}")
    n = int(A_d.shape[0])
    if len(c_d.shape) != 2 or c_d.shape[1] != n:
        raise ValueError(f"c must have shape (R + 1, n) with n = {n}, got {tuple(c_d.shape)}")
    R = int(c_d.shape[0]) - 1
    if not 1 <= R <= kc.MAX_POWER:
        raise ValueError(f"c must have R + 1 rows with 1 <= R <= {kc.MAX_POWER}, got R = {R}")
    out = cuda.device_array((R + 1, n), dtype=np.float64)
    threads = int(POWER_THREADS)
    kc.power_sums_kernel[_grid(cuda, kc, n, threads), threads](A_d, c_d, bool(symmetric), out)
    return out.copy_to_host() if to_host else out


@_quiet
def loss_grad_cuda(
    model: Model,
    inputs: SparseInputs,
    n_samples: int = 100_000,
    seed: int = 0,
    *,
    start: int = 0,
    block_size: int | None = None,
):
    """Sampled loss and gradient on the GPU (``loss_grad(..., backend="cuda")``).

    The samples of :func:`fastsuper.optim.loss_grad` (drawn on the device
    by the sampler kernels), the CPU's per-sample formulas and its sum
    order: :func:`kernels_cuda.grad_kernel` runs one CUDA thread block per
    block of ``block_size`` samples (its threads over features and hidden
    units), summing the block's samples in order into its own float64
    partial gradient in device memory; the partial sums are then added on
    the host in block order (:func:`kernels_cpu_train.merge_blocks`), as the
    CPU does.  The result equals the CPU's to float round-off (the
    CPU kernels may fuse multiply-adds, and for ``d > 4`` they add the
    encoder terms in a separate accumulator).

    Parallelism is ``min(GRAD_THREADS, max(n, d))`` threads per sample
    block: for large runs use a ``block_size`` small enough to give the GPU
    many blocks.

    Parameters and result: those of :func:`fastsuper.optim.loss_grad`
    (``block_size=None`` means :data:`fastsuper.optim.DEFAULT_BLOCK`).

    Raises
    ------
    FloatingPointError
        If the loss of a sample, or the gradient, is not finite.
    RuntimeError
        If CUDA is unavailable.
    """
    from . import optim
    from .kernels_cpu_train import merge_blocks

    cuda, kc = _kernels()
    optim._check_model_inputs(model, inputs)
    n_samples = v.check_int("n_samples", n_samples, minimum=1)
    seed = v.check_int("seed", seed)
    start = v.check_int("start", start, minimum=0)
    if block_size is None:
        block_size = optim.DEFAULT_BLOCK
    block = v.check_int("block_size", block_size, minimum=1)
    dtype = np.dtype(model.dtype)
    act, a, ia = model._act_args()
    d, n = model.d, model.n
    W_d = cuda.to_device(np.ascontiguousarray(model.W))
    b_d = cuda.to_device(np.ascontiguousarray(model.bias, dtype=dtype))
    imp = np.ascontiguousarray(inputs.importance, dtype=np.float64)
    imp_d = cuda.to_device(imp)
    imp2_d = cuda.to_device((2.0 * imp).astype(dtype))
    dev = _DeviceInputs(cuda, inputs)
    seed_u64 = np.uint64(seed & ((1 << 64) - 1))
    per_sample = dev.bytes_per_sample(dtype.itemsize)
    per_block = 8 * (d * n + 2 * n + 3) + dtype.itemsize * (2 * d + n)
    chunk = _chunk_samples(block, per_sample + -(-per_block // block))
    threads = max(1, min(int(GRAD_THREADS), max(n, d)))
    tot_gW = np.zeros((d, n))
    tot_gb = np.zeros(n)
    loss_sum = 0.0
    n_bad = 0
    first_bad = -1
    for lo in range(0, n_samples, chunk):
        ns = min(chunk, n_samples - lo)
        nbc = -(-ns // block)
        _, indptr_d, indices_d, values_d = _draw_chunk(
            cuda, kc, dev, seed_u64, start + lo, ns, dtype
        )
        gW = cuda.to_device(np.zeros((nbc, d, n)))
        gb = cuda.to_device(np.zeros((nbc, n)))
        loss = cuda.device_array(nbc, dtype=np.float64)
        bad = cuda.device_array((nbc, 2), dtype=np.float64)
        hbuf = cuda.device_array((nbc, d), dtype=dtype)
        ubuf = cuda.device_array((nbc, d), dtype=dtype)
        gbuf = cuda.device_array((nbc, n), dtype=dtype)
        lbuf = cuda.device_array((nbc, n), dtype=np.float64)
        kc.grad_kernel[_grid(cuda, kc, nbc, 1), threads](
            W_d,
            b_d,
            imp_d,
            imp2_d,
            act,
            a,
            ia,
            dtype.type(0),
            block,
            ns,
            start + lo,
            indptr_d,
            indices_d,
            values_d,
            hbuf,
            gbuf,
            ubuf,
            lbuf,
            loss,
            bad,
            gW,
            gb,
        )
        bad_h = bad.copy_to_host()
        for c in range(nbc):
            if bad_h[c, 0] > 0:
                if n_bad == 0:
                    first_bad = int(bad_h[c, 1])
                n_bad += int(bad_h[c, 0])
        loss_sum += merge_blocks(
            loss.copy_to_host(), gW.copy_to_host(), gb.copy_to_host(), tot_gW, tot_gb
        )
    if n_bad:
        raise FloatingPointError(
            f"the loss overflowed (inf or NaN) in {n_bad} samples, first at sample index "
            f"{first_bad} (seed {seed}); the model's pre-activations are too large for "
            f"{model.dtype} with exponent {model.exponent:g}: scale W down"
            + (" or use float64" if model.dtype == np.float32 else "")
        )
    if not (np.all(np.isfinite(tot_gW)) and np.all(np.isfinite(tot_gb))):
        raise FloatingPointError(
            f"the gradient is not finite (the loss is {loss_sum / n_samples:g}): phi' is "
            f"unbounded where the loss is not differentiable ({model.activation} with exponent "
            f"{model.exponent:g}) or the products overflowed; scale W down or use another "
            "exponent"
        )
    inv = 1.0 / n_samples
    return optim.SampledLossGrad(loss_sum * inv, tot_gW * inv, tot_gb * inv)


def fit_adam_cuda(
    W: np.ndarray,
    B: np.ndarray,
    P: np.ndarray,
    imp: np.ndarray,
    law,
    *,
    activation: str,
    exponent: float,
    bias: bool,
    seed: int,
    steps: int,
    batch_size: int,
    lr: float,
    betas: tuple[float, float],
    eps: float,
    log_every: int,
    progress: bool = False,
):
    """Adam training of ``fit(..., backend="cuda")``: gradients on the GPU, updates on the host.

    Validated arguments come from :func:`fastsuper.fit`, which is the public
    entry point.  Step ``t`` of instance ``k`` draws samples ``t *
    batch_size .. (t + 1) * batch_size - 1`` of seed
    :func:`~fastsuper.optim.instance_seed` ``(seed, k)`` and computes the
    batch's loss and gradient with :func:`loss_grad_cuda` (the CPU's samples
    and per-sample formulas); the float64 Adam update is the CPU kernel's
    (:func:`fastsuper.kernels_cpu_train.adam_update`).  The trajectory
    therefore equals ``fit(..., backend="cpu")``'s up to float round-off in
    the gradient sums.  Instances are trained one after the other, one
    kernel launch per step: a GPU pays off for large ``n``, ``d`` and
    ``batch_size``.

    Parameters
    ----------
    W, B : ndarray
        Initial weights (n_instances, d, n) and bias (n_instances, n) in the
        compute dtype; updated in place.
    P, imp : ndarray of shape (n_instances, n)
        Feature probabilities and importances.
    law : ValueLaw
        Law of an active feature's value.
    activation, exponent, bias, seed, steps, batch_size, lr, betas, eps, log_every, progress
        As in :func:`fastsuper.fit`.

    Returns
    -------
    hist : ndarray of shape (ceil(steps / log_every), n_instances)
        Batch loss (mean over samples and features) every ``log_every`` steps.
    status : ndarray of int64
        ``-1`` per instance, or the step at which its loss or gradient stopped
        being finite (training of that instance stopped there).
    elapsed : float
        Wall time in seconds.
    """
    from . import optim
    from .kernels_cpu_train import OK, adam_update

    require_cuda()
    n_inst, d, n = W.shape
    beta1, beta2 = float(betas[0]), float(betas[1])
    n_log = (steps + log_every - 1) // log_every
    hist = np.full((n_log, n_inst), np.nan)
    status = np.full(n_inst, OK, dtype=np.int64)
    total = steps * n_inst
    t0 = time.perf_counter()
    for k in range(n_inst):
        pk = P[k]
        inputs = SparseInputs(
            n, p=float(pk[0]) if np.all(pk == pk[0]) else pk, values=law, importance=imp[k]
        )
        skey = optim.instance_seed(seed, k)
        mW = np.zeros((d, n))
        vW = np.zeros((d, n))
        mb = np.zeros(n)
        vb = np.zeros(n)
        scale = 1.0 / n  # loss_grad_cuda averages over samples; fit's loss also over features
        for t in range(steps):
            model = Model(W[k], B[k] if bias else None, activation=activation, exponent=exponent)
            try:
                loss, gW, gb = loss_grad_cuda(model, inputs, batch_size, skey, start=t * batch_size)
            except FloatingPointError:
                status[k] = t
                break
            if t % log_every == 0:
                hist[t // log_every, k] = loss * scale
            step = np.float64(t + 1)
            step_size = lr / (1.0 - beta1**step)
            bc2s = math.sqrt(1.0 - beta2**step)
            adam_update(W[k], mW, vW, gW, scale, step_size, bc2s, beta1, beta2, eps)
            if bias:
                adam_update(B[k], mb, vb, gb, scale, step_size, bc2s, beta1, beta2, eps)
            if progress and (t + 1) % max(1, steps // 20) == 0:
                from .optim import _progress_bar

                _progress_bar(k * steps + t + 1, total, hist, log_every, time.perf_counter() - t0)
    return hist, status, time.perf_counter() - t0
