"""CUDA kernel of the exact loss: row-wise power sums ``sum_i A[j, i]**r c[r, i]``."""

from __future__ import annotations

import numpy as np
from numba import cuda

from fastsuper.core import config
from fastsuper.core.cuda_jit import cuda_kernel as _kernel

__all__ = ["power_sums_kernel"]

# a global constant: local array shapes must be compile-time constants
_ACC_SIZE = config.CUDA_MAX_POWER + 1


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
