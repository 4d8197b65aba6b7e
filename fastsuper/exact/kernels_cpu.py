"""CPU kernels of the exact loss and gradient of power activations (THEORY §3).

The closed forms of :mod:`fastsuper.exact.api` spend their ``O(n**2)`` time in
two places, both done here as one parallel pass over the rows of
``A = W^T W`` (off-diagonal part) with scratch memory of a few rows per
thread:

* :func:`exact_power_sums`: the cumulants of ``y_j = sum_{i != j} A_ji x_i``,
  ``S[r, j] = sum_{i != j} A_ji**r c[r, i]`` for ``r = 1 .. R``;
* :func:`exact_grad_w`: ``dL/dW = W (Gamma + Gamma^T)`` with
  ``Gamma_ji = sum_r coef[r, j] c[r, i] A_ji**(r-1)`` off the diagonal, its
  entries formed on the fly (Horner's rule over the orders with a non-zero
  cumulant) and never stored.

Written as NumPy passes over row blocks (single-threaded elementwise work,
twenty-odd passes over ``n**2`` values) the two took most of the time of
``exact_loss_grad``; docs/benchmarks.md has its timings.
Sums run over ``i`` in index order within a row (vectorised, reassociated),
so results agree with a NumPy evaluation to round-off and do not depend on
the thread count.
"""

from __future__ import annotations

import numba
import numpy as np

from fastsuper.core import config
from fastsuper.core.jit import njit, parallel_njit


@njit(inline="always")
def ipow(t, k):
    """``t**k`` for an integer ``k >= 1``, by repeated multiplication."""
    u = t
    for _ in range(k - 1):
        u *= t
    return u


@parallel_njit
def exact_power_sums(A, c):
    """Row-wise power sums ``S[r, j] = sum_{i != j} A[j, i]**r c[r, i]``.

    ``A`` (n x n, float64) need not be symmetric; its diagonal is skipped
    whatever its value.  ``c`` has shape ``(R + 1, n)`` (row 0 ignored).
    Returns ``S`` of shape ``(R + 1, n)`` with ``S[0] = 0``: the CPU twin of
    :func:`fastsuper.mc.cuda.exact_power_sums_cuda`.
    """
    n = A.shape[0]
    R = c.shape[0] - 1
    S = np.zeros((R + 1, n))
    items = (n + config.EXACT_ROWS_PER_ITEM - 1) // config.EXACT_ROWS_PER_ITEM
    for it in numba.prange(items):
        pw = np.empty(n)  # A[j]**r, with a zero on the diagonal
        for j in range(
            it * config.EXACT_ROWS_PER_ITEM, min(n, (it + 1) * config.EXACT_ROWS_PER_ITEM)
        ):
            row = A[j]
            s = 0.0
            for i in range(n):
                pw[i] = row[i]
            pw[j] = 0.0
            for i in range(n):
                s += pw[i] * c[1, i]
            S[1, j] = s
            for r in range(2, R + 1):
                s = 0.0
                for i in range(n):
                    t = pw[i] * row[i]
                    pw[i] = t
                    s += t * c[r, i]
                S[r, j] = s
    return S


@parallel_njit
def exact_grad_w(A, W, coef, c, orders, g_diag):
    """``dL/dW = W (Gamma + Gamma^T)`` without storing ``Gamma`` (n x n).

    ``Gamma_ji = sum_{r in orders} coef[r, j] c[r, i] A[j, i]**(r - 1)`` for
    ``i != j`` and ``Gamma_jj = g_diag[j]``.  ``A`` is symmetric (``W^T W``),
    so column ``j`` of ``Gamma`` is row ``j`` with the roles of ``coef`` and
    ``c`` exchanged: row ``j`` of ``Gamma`` and of ``Gamma^T`` are formed in
    two buffers by Horner's rule (``orders`` descending, each step one
    vectorised pass) and ``dW[:, j] = sum_i W[:, i] (Gamma_ji + Gamma_ij)``.
    Returns ``dW`` (d x n, float64).
    """
    d, n = W.shape
    no = orders.shape[0]
    dW = np.zeros((d, n))
    items = (n + config.EXACT_ROWS_PER_ITEM - 1) // config.EXACT_ROWS_PER_ITEM
    for it in numba.prange(items):
        g = np.empty(n)  # Gamma_ji + Gamma_ij over i, for the current j
        h = np.empty(n)  # Gamma_ij over i
        for j in range(
            it * config.EXACT_ROWS_PER_ITEM, min(n, (it + 1) * config.EXACT_ROWS_PER_ITEM)
        ):
            row = A[j]
            if no == 0:
                for i in range(n):
                    g[i] = 0.0
            else:
                o = orders[0]
                a_j = coef[o, j]
                b_j = c[o, j]
                for i in range(n):
                    g[i] = a_j * c[o, i]
                    h[i] = b_j * coef[o, i]
                for q in range(1, no):
                    r = orders[q]
                    step = orders[q - 1] - r
                    a_j = coef[r, j]
                    b_j = c[r, j]
                    if step == 1:
                        for i in range(n):
                            t = row[i]
                            g[i] = g[i] * t + a_j * c[r, i]
                            h[i] = h[i] * t + b_j * coef[r, i]
                    elif step == 2:
                        for i in range(n):
                            t = row[i] * row[i]
                            g[i] = g[i] * t + a_j * c[r, i]
                            h[i] = h[i] * t + b_j * coef[r, i]
                    else:
                        for i in range(n):
                            u = ipow(row[i], step)
                            g[i] = g[i] * u + a_j * c[r, i]
                            h[i] = h[i] * u + b_j * coef[r, i]
                last = orders[no - 1] - 1  # the final factor A_ji**(r_min - 1)
                if last == 0:
                    for i in range(n):
                        g[i] += h[i]
                elif last == 1:
                    for i in range(n):
                        g[i] = (g[i] + h[i]) * row[i]
                else:
                    for i in range(n):
                        g[i] = (g[i] + h[i]) * ipow(row[i], last)
            g[j] = 2.0 * g_diag[j]
            for k in range(d):
                wk = W[k]
                s = 0.0
                for i in range(n):
                    s += wk[i] * g[i]
                dW[k, j] = s
    return dW
