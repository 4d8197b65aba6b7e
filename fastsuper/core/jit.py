"""The one place that sets Numba jit options for fastsuper.

Every compiled function in the package is decorated with one of the
decorators below, so that caching, the fastmath policy and the error model
are chosen here and nowhere else.

Policy
------
* ``cache=True`` everywhere: compiled code is written next to the sources
  and reused by later processes (the test-suite relies on this).
* ``error_model="numpy"``: division by zero gives inf/NaN like NumPy rather
  than raising inside a kernel; kernels count non-finite results and the
  Python layer reports them (overflow is never returned silently).
* fastmath: *off* for per-element maths that must be reproducible bit for
  bit across backends (random numbers, sampling).  Reduction kernels may
  reassociate sums and contract multiply-adds (``KERNEL_FASTMATH``), which
  lets LLVM vectorise them; ``nnan``/``ninf`` are never set, so overflow is
  still detectable.
"""

from __future__ import annotations

import numba

#: fastmath flags for reduction kernels (no ``nnan``/``ninf``: we detect overflow).
KERNEL_FASTMATH = {"reassoc", "contract", "nsz", "arcp"}

_BASE = {"cache": True, "error_model": "numpy", "nogil": True}


def njit(*args, **kwargs):
    """Serial, exactly-rounded ``numba.njit`` (per-element maths, RNG)."""
    opts = dict(_BASE, fastmath=False)
    opts.update(kwargs)
    return numba.njit(*args, **opts)


def kernel_njit(*args, **kwargs):
    """Serial kernel whose reductions may be reassociated and vectorised."""
    opts = dict(_BASE, fastmath=KERNEL_FASTMATH)
    opts.update(kwargs)
    return numba.njit(*args, **opts)


def parallel_njit(*args, **kwargs):
    """``parallel=True`` kernel (``prange`` over blocks of work)."""
    opts = dict(_BASE, fastmath=KERNEL_FASTMATH, parallel=True)
    opts.update(kwargs)
    return numba.njit(*args, **opts)
