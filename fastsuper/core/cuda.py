"""CUDA support shared by every feature's GPU backend.

Nothing here imports :mod:`numba.cuda` until a function is called, so
``import fastsuper`` works without numba-cuda or a GPU.  Every GPU entry point
starts with :func:`require_cuda` (or is wrapped in :func:`quiet_launch`), which
raises a clear ``RuntimeError`` when CUDA is unavailable.  Without a GPU, set
``NUMBA_ENABLE_CUDASIM=1`` to run the kernels on numba-cuda's simulator (slow;
for tests).

The launch geometry reads its tunables from :mod:`fastsuper.core.config` at
each call.
"""

from __future__ import annotations

import contextlib
import functools
import warnings

import numpy as np

from fastsuper.core import config

__all__ = [
    "CUDA_REQUIRED_MESSAGE",
    "blocks",
    "launch_grid",
    "next_pow2",
    "quiet_launch",
    "require_cuda",
    "simulator",
    "to_device_array",
    "to_host_array",
]

#: The error raised when CUDA is unavailable (the reason is appended).
CUDA_REQUIRED_MESSAGE = (
    "backend='cuda' needs a CUDA GPU and the `cuda` extra: pip install 'fastsuper[cuda]' "
    "(numba-cuda); without a GPU, set NUMBA_ENABLE_CUDASIM=1 to run the kernels on the CUDA "
    "simulator (slow, for testing)"
)


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


def simulator() -> bool:
    """True when the kernels run on the CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``)."""
    from fastsuper.core import cuda_jit

    return cuda_jit.SIMULATOR


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


def quiet_launch(func):
    """Check for CUDA, then run ``func`` under :func:`_launch_warnings_off`."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        require_cuda()
        with _launch_warnings_off(simulator()):
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


def next_pow2(k: int) -> int:
    return 1 << max(0, int(k) - 1).bit_length()


def blocks(count: int, threads: int) -> int:
    return max(1, -(-int(count) // threads))


def _sm_count(cuda) -> int:
    try:
        return int(cuda.get_current_device().MULTIPROCESSOR_COUNT)
    except Exception:  # pragma: no cover - the simulator's device has no attributes
        return 1


def launch_grid(cuda, count: int, threads: int) -> int:
    """Blocks of a grid-stride launch over ``count`` items: enough to fill the GPU."""
    if simulator():
        limit = int(config.SIMULATOR_MAX_BLOCKS)
    else:
        limit = _sm_count(cuda) * max(1, int(config.THREADS_PER_SM) // threads)
    return max(1, min(blocks(count, threads), limit))
