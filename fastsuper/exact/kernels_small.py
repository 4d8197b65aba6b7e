"""Serial kernels of the exact loss and gradient for small problems (THEORY §3).

Below :data:`fastsuper.core.config.EXACT_SMALL_FLOPS` floating-point
operations an exact evaluation runs these instead of the row kernels of
:mod:`fastsuper.exact.kernels_cpu`.  They use the symmetry of
``A = W^T W``: every unordered pair ``i < j`` is visited once, from the
lower triangle of ``A``,

* :func:`small_gram_sums` forms row ``j`` of the lower triangle from ``W``
  (no separate matrix product) and adds ``A_ji**r c[r, i]`` to the power sum
  of ``j`` and ``A_ji**r c[r, j]`` to that of ``i``;
* :func:`small_grad_w` forms ``Gamma_ji + Gamma_ij`` (symmetric) by one
  Horner chain and adds ``W[:, i]`` times it to ``dW[:, j]`` and ``W[:, j]``
  times it to ``dW[:, i]``.

Half the powers and a quarter of the Horner steps of the row kernels; the
sums run in another order, so the values agree with the row kernels to
round-off.  Always serial, so the numbers depend on the problem's size only,
never on the thread count.  Orders ``r`` whose cumulants vanish for every
feature (the odd ones of a symmetric value law) are skipped.
"""

from __future__ import annotations

import numpy as np

from fastsuper.core import config
from fastsuper.core.jit import kernel_njit
from fastsuper.exact.kernels_cpu import ipow

__all__ = ["small_grad_w", "small_gram_sums", "use_small"]

#: the vector loops' lengths are padded to multiples of this (LLVM's vector width times its
#: interleave for float64)
_PAD = 16


def use_small(flops: float) -> bool:
    """Whether an exact evaluation of ``flops`` operations runs the kernels of this module."""
    return flops < config.EXACT_SMALL_FLOPS


@kernel_njit(inline="always")
def _padded(j, n):
    """``j`` rounded up to a multiple of :data:`_PAD` (at most ``n``): the vector loops then
    run without a scalar remainder; the entries ``j .. pad - 1`` of a row are set to zero."""
    return min(n, (j + _PAD - 1) // _PAD * _PAD)


@kernel_njit(inline="always")
def _gram_row(W, A, j, jp):
    """``A[j, i] = sum_k W[k, j] W[k, i]`` for ``i < jp``, two rows of ``W`` per pass.

    (Two-dimensional indexing throughout: a row view costs a reference count.)
    """
    d = W.shape[0]
    a = W[0, j]
    for i in range(jp):
        A[j, i] = a * W[0, i]
    for k in range(1, d - 1, 2):
        a = W[k, j]
        b = W[k + 1, j]
        for i in range(jp):
            A[j, i] += a * W[k, i] + b * W[k + 1, i]
    if d % 2 == 0:
        a = W[d - 1, j]
        for i in range(jp):
            A[j, i] += a * W[d - 1, i]


@kernel_njit(inline="always")
def _power_step(pw, A, j, jp, step, first):
    """``pw[i] = A[j, i]**step`` (``first``) or ``pw[i] *= A[j, i]**step``, for ``i < jp``."""
    if first and step == 1:
        for i in range(jp):
            pw[i] = A[j, i]
    elif first and step == 2:
        for i in range(jp):
            pw[i] = A[j, i] * A[j, i]
    elif first:
        for i in range(jp):
            pw[i] = ipow(A[j, i], step)
    elif step == 1:
        for i in range(jp):
            pw[i] *= A[j, i]
    elif step == 2:
        for i in range(jp):
            pw[i] *= A[j, i] * A[j, i]
    else:
        for i in range(jp):
            pw[i] *= ipow(A[j, i], step)


@kernel_njit
def small_gram_sums(W, A, c, diag):
    """Lower triangle of ``A = W^T W`` into ``A``, its diagonal into ``diag``, and the power
    sums of its off-diagonal part.

    Fills ``A[j, i]`` for ``i < j`` and ``diag`` (n,); ``A[j, i]`` for
    ``j <= i`` up to the next multiple of :data:`_PAD` are set to zero, the
    rest of ``A`` is not touched.  Returns ``S`` of shape ``(R + 1, n)``,
    ``S[r, j] = sum_{i != j} A_ji**r c[r, i]`` (``S[0] = 0``; rows ``r``
    with ``c[r] = 0`` everywhere are 0).
    """
    n = W.shape[1]
    R = c.shape[0] - 1
    S = np.zeros((R + 1, n))
    used = np.zeros(R + 1, dtype=np.int64)
    nu = 0
    for r in range(1, R + 1):
        for i in range(n):
            if c[r, i] != 0.0:
                used[nu] = r
                nu += 1
                break
    pw = np.empty(n)
    for j in range(n):
        jp = _padded(j + 1, n)
        _gram_row(W, A, j, jp)
        diag[j] = A[j, j]
        for i in range(j, jp):
            A[j, i] = 0.0
        prev = 0
        for q in range(nu):
            r = used[q]
            _power_step(pw, A, j, jp, r - prev, q == 0)
            prev = r
            cj = c[r, j]
            s = 0.0
            for i in range(jp):
                t = pw[i]
                s += t * c[r, i]
                S[r, i] += t * cj
            S[r, j] += s
    return S


@kernel_njit
def small_grad_w(A, W, coef, c, orders, g_diag, dW):
    """``dW = W (Gamma + Gamma^T)`` from the lower triangle of ``A`` (see the module docstring).

    ``Gamma_ji = sum_{r in orders} coef[r, j] c[r, i] A_ji**(r - 1)`` for
    ``i != j`` and ``Gamma_jj = g_diag[j]``; ``orders`` descending.  Reads
    ``A[j, i]`` for ``i`` below the multiple of :data:`_PAD` at or above
    ``j`` (only ``i < j`` matters).  Fills ``dW`` (d x n).
    """
    d, n = W.shape
    no = orders.shape[0]
    g = np.empty(n)
    for k in range(d):
        for j in range(n):
            dW[k, j] = 2.0 * g_diag[j] * W[k, j]
    if no == 0:
        return
    last = orders[no - 1] - 1  # the final factor A_ji**(r_min - 1)
    for j in range(1, n):
        jp = _padded(j, n)
        o = orders[0]
        a_j = coef[o, j]
        b_j = c[o, j]
        for i in range(jp):
            g[i] = a_j * c[o, i] + b_j * coef[o, i]
        for q in range(1, no):
            r = orders[q]
            step = orders[q - 1] - r
            a_j = coef[r, j]
            b_j = c[r, j]
            if step == 1:
                for i in range(jp):
                    g[i] = g[i] * A[j, i] + (a_j * c[r, i] + b_j * coef[r, i])
            elif step == 2:
                for i in range(jp):
                    t = A[j, i]
                    g[i] = g[i] * (t * t) + (a_j * c[r, i] + b_j * coef[r, i])
            else:
                for i in range(jp):
                    g[i] = g[i] * ipow(A[j, i], step) + (a_j * c[r, i] + b_j * coef[r, i])
        if last == 1:
            for i in range(jp):
                g[i] *= A[j, i]
        elif last > 1:
            for i in range(jp):
                g[i] *= ipow(A[j, i], last)
        for i in range(j, jp):
            g[i] = 0.0
        for k in range(d):
            wkj = W[k, j]
            s = 0.0
            for i in range(jp):
                gi = g[i]
                s += W[k, i] * gi
                dW[k, i] += wkj * gi
            dW[k, j] += s
