"""CUDA backend of the exact loss: the row-wise power sums on a GPU."""

from __future__ import annotations

import numpy as np

from fastsuper.core import config
from fastsuper.core.cuda import launch_grid, quiet_launch, require_cuda, to_device_array

__all__ = ["exact_power_sums_cuda"]


def _kernels():
    cuda = require_cuda()
    from fastsuper.exact import kernels_cuda

    return cuda, kernels_cuda


@quiet_launch
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
    if not 1 <= R <= config.CUDA_MAX_POWER:
        raise ValueError(
            f"c must have R + 1 rows with 1 <= R <= {config.CUDA_MAX_POWER}, got R = {R}"
        )
    out = cuda.device_array((R + 1, n), dtype=np.float64)
    threads = int(config.POWER_THREADS)
    kc.power_sums_kernel[launch_grid(cuda, n, threads), threads](A_d, c_d, bool(symmetric), out)
    return out.copy_to_host() if to_host else out
