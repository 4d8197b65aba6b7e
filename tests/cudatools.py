"""Helpers of the CUDA tests (on a GPU, or on the simulator: NUMBA_ENABLE_CUDASIM=1).

The simulator runs every CUDA thread as a Python thread, so the CUDA tests
use tiny sizes and the ``small_cuda_launches`` fixture of ``conftest.py``.
Run them with::

    NUMBA_ENABLE_CUDASIM=1 pytest -m cudasim tests
"""

from __future__ import annotations

import numpy as np
import pytest

from fastsuper import testing as T


def cuda_or_skip():
    """:mod:`numba.cuda`; skips the calling test module when CUDA cannot be used."""
    try:
        from numba import cuda

        available = bool(cuda.is_available())
    except Exception:  # numba-cuda missing or broken
        available = False
    if not available:
        pytest.skip(
            "CUDA unavailable: needs a GPU with numba-cuda, or NUMBA_ENABLE_CUDASIM=1",
            allow_module_level=True,
        )
    return cuda


class ForeignDeviceArray:
    """A foreign object exposing ``__cuda_array_interface__`` (e.g. CuPy or PyTorch)."""

    def __init__(self, dev):
        self.dev = dev  # keep the memory alive
        if T.simulator():  # simulated device memory is host memory
            host = dev.copy_to_host()
            self.host = host
            iface = host.__array_interface__
            self.__cuda_array_interface__ = {
                "shape": host.shape,
                "typestr": host.dtype.str,
                "data": iface["data"],
                "strides": None,
                "version": 3,
            }
        else:
            self.__cuda_array_interface__ = dev.__cuda_array_interface__


def assert_close(got, ref, rtol=1e-12):
    """``max |got - ref| <= rtol * max |ref|`` (arrays or scalars)."""
    got, ref = np.asarray(got, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    scale = max(float(np.max(np.abs(ref))), 1e-300)
    assert float(np.max(np.abs(got - ref))) <= rtol * scale, (got, ref)
