"""numba-cuda compilation shared by the CUDA kernel modules.

Importing this module imports :mod:`numba.cuda`; only the ``kernels_cuda``
modules import it, and they are imported lazily by the GPU backends, so
``import fastsuper`` never does.
"""

from __future__ import annotations

import numpy as np
from numba import cuda

__all__ = ["CUDA_JIT_OPTIONS", "SIMULATOR", "cuda_kernel", "view"]


def _simulator_enabled() -> bool:
    try:
        from numba.cuda.core import config
    except ImportError:  # pragma: no cover - older numba-cuda
        from numba.core import config
    return bool(config.ENABLE_CUDASIM)


#: True when the kernels run on the CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``).
SIMULATOR = _simulator_enabled()

#: Options of every ``@cuda.jit`` kernel.  fastmath stays off so that the
#: device code rounds like the CPU's exactly rounded per-element maths.
CUDA_JIT_OPTIONS = {"fastmath": False}


def cuda_kernel(func):
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

    def view(arr):
        """The NumPy array behind a simulated device array (each array of a bundle).

        The simulator runs kernels as Python and calls the ``@njit`` helpers
        through their CPU dispatchers, which accept NumPy arrays only.
        """
        if isinstance(arr, tuple):  # a bundle: a NamedTuple of scalars and arrays
            items = [view(x) for x in arr]
            return type(arr)._make(items) if hasattr(arr, "_fields") else tuple(items)
        item = getattr(arr, "_item", None)
        if item is not None:
            arr = item
        return getattr(arr, "_ary", arr)

else:

    @cuda.jit(device=True)
    def view(arr):
        """Identity on the device (the simulator needs an unwrapping step)."""
        return arr
