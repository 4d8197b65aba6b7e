"""One compiled pass of the exact loss, gain and gradient (THEORY §3) for prepared evaluators.

:mod:`fastsuper.exact.api` evaluates the moment recursions of the closed
form as NumPy expressions over vectors of length ``n``; here the same
expressions, in the same order of operations and exactly rounded (plain
:func:`~fastsuper.core.jit.njit`, no contraction into fused multiply-adds),
run as one compiled function around the row kernels of
:mod:`fastsuper.exact.kernels_cpu` (or, for small problems, the symmetric
kernels of :mod:`fastsuper.exact.kernels_small`), so a small evaluation costs no Python
work beyond one call.  The numbers are those of :func:`fastsuper.exact_loss_grad`
bit for bit.

The row kernels have a serial twin (the same function compiled without
``parallel``, :class:`~fastsuper.core.jit.SerialParallel`) with the same
numbers; :func:`use_parallel` decides between them from the amount of work
(:data:`fastsuper.core.config.EXACT_PARALLEL_FLOPS`).
"""

from __future__ import annotations

import numpy as np

from fastsuper.core import config
from fastsuper.core.jit import SerialParallel, njit
from fastsuper.exact.kernels_cpu import exact_grad_w, exact_power_sums
from fastsuper.exact.kernels_small import small_grad_w, small_gram_sums, use_small

__all__ = [
    "OVERFLOW_FORWARD",
    "OVERFLOW_GRADIENT",
    "MODE_PARALLEL",
    "MODE_SERIAL",
    "MODE_SMALL",
    "exact_flops",
    "grad_w_serial",
    "kernel_mode",
    "pick_kernels",
    "power_sums_serial",
    "prepared_pass",
    "use_parallel",
]

#: status of :func:`prepared_pass`: a forward moment is not finite
OVERFLOW_FORWARD = 1
#: status of :func:`prepared_pass`: a gradient entry is not finite
OVERFLOW_GRADIENT = 2

#: :func:`prepared_pass` mode: the serial symmetric kernels of
#: :mod:`fastsuper.exact.kernels_small`, which form ``A`` themselves
MODE_SMALL = 0
#: :func:`prepared_pass` mode: the serial twins of the row kernels
MODE_SERIAL = 1
#: :func:`prepared_pass` mode: the parallel row kernels
MODE_PARALLEL = 2

#: the serial twins of the row kernels (same source, compiled without ``parallel``)
power_sums_serial = SerialParallel(exact_power_sums.py_func).serial
grad_w_serial = SerialParallel(exact_grad_w.py_func).serial


def exact_flops(n: int, d: int, m: int) -> float:
    """Floating-point operations of one exact loss-and-gradient evaluation, ``n**2 (4d + 4m)``.

    Forming ``A = W^T W`` (``2 n**2 d``), the power sums (``2 n**2 (2m)``,
    counted as ``4 n**2 m`` with the gradient's Horner steps) and the
    gradient's product with ``W`` (``2 n**2 d``).
    """
    return float(n) * float(n) * (4.0 * d + 4.0 * m)


def use_parallel(n: int, d: int, m: int) -> bool:
    """Whether an exact evaluation of this size runs the parallel row kernels.

    ``True`` from :data:`fastsuper.core.config.EXACT_PARALLEL_FLOPS` floating
    point operations on (and with more than one Numba thread), else the
    serial twins, which skip the thread pool's start-up and synchronisation.
    """
    import numba

    return numba.get_num_threads() > 1 and exact_flops(n, d, m) >= config.EXACT_PARALLEL_FLOPS


def kernel_mode(n: int, d: int, m: int, parallel: bool) -> int:
    """The :func:`prepared_pass` mode of an evaluation of this size.

    :data:`MODE_SMALL` below :data:`fastsuper.core.config.EXACT_SMALL_FLOPS`
    (:func:`fastsuper.exact.kernels_small.use_small`, whatever ``parallel``
    says: the size alone picks the numbers), else the row kernels, parallel
    or serial (the same numbers).
    """
    if use_small(exact_flops(n, d, m)):
        return MODE_SMALL
    return MODE_PARALLEL if parallel else MODE_SERIAL


def pick_kernels(n: int, d: int, m: int):
    """``(power_sums, grad_w)``: the row kernels for an evaluation of this size."""
    if use_parallel(n, d, m):
        return exact_power_sums, exact_grad_w
    return power_sums_serial, grad_w_serial


@njit
def _moments_from_cumulants(kappa, binom):
    """:func:`fastsuper.exact.api.moments_from_cumulants`, the same operations in the same order."""
    R1, n = kappa.shape
    moments = np.zeros((R1, n))
    for j in range(n):
        moments[0, j] = 1.0
    for r in range(1, R1):
        for j in range(n):
            acc = 0.0
            for k in range(1, r + 1):
                acc += binom[r - 1, k - 1] * kappa[k, j] * moments[r - k, j]
            moments[r, j] = acc
    return moments


@njit
def _forward(A, W, b, has_b, binom, ex, kx, m, mode, terms):
    """Forward moments into ``terms`` (rows ``ex2, exzm, ez2m``); returns ``(ad, my)``.

    ``A`` holds ``W^T W`` on entry, except in :data:`MODE_SMALL`, where the
    power-sum kernel forms it; it loses its diagonal, which goes into ``ad[1]``.
    """
    n = A.shape[0]
    R = 2 * m
    diag = np.empty(n)
    if mode == MODE_SMALL:
        ky = small_gram_sums(W, A, kx, diag)
    else:
        for j in range(n):
            diag[j] = A[j, j]
            A[j, j] = 0.0
    if mode == MODE_PARALLEL:
        ky = exact_power_sums(A, kx)
    elif mode == MODE_SERIAL:
        ky = power_sums_serial(A, kx)
    if has_b:
        for j in range(n):
            ky[1, j] += b[j]
    my = _moments_from_cumulants(ky, binom)
    ad = np.empty((R + 1, n))
    for j in range(n):
        ad[0, j] = 1.0
    for r in range(1, R + 1):
        for j in range(n):
            ad[r, j] = ad[r - 1, j] * diag[j]
    for j in range(n):
        ez2m = 0.0
        for r in range(R + 1):
            ez2m += binom[R, r] * ad[r, j] * ex[r, j] * my[R - r, j]
        exzm = 0.0
        for r in range(m + 1):
            exzm += binom[m, r] * ad[r, j] * ex[r + 1, j] * my[m - r, j]
        terms[0, j] = ex[2, j]
        terms[1, j] = exzm
        terms[2, j] = ez2m
    return ad, my


@njit
def _backward(A, W, binom, ex, kx, imp, orders, m, mode, ad, my, dW, db):
    """The gradient of the loss (:func:`fastsuper.exact.api._backward`'s operations) into
    ``dW`` and ``db``."""
    n = A.shape[0]
    R = 2 * m
    g_mom = np.zeros((R + 1, n))
    g_diag = np.zeros(n)
    for r in range(R + 1):
        for j in range(n):
            g_mom[R - r, j] += binom[R, r] * ad[r, j] * ex[r, j]
        if r >= 1:
            f = binom[R, r] * r
            for j in range(n):
                g_diag[j] += f * ad[r - 1, j] * ex[r, j] * my[R - r, j]
    for r in range(m + 1):
        for j in range(n):
            g_mom[m - r, j] -= 2.0 * binom[m, r] * ad[r, j] * ex[r + 1, j]
        if r >= 1:
            f = 2.0 * binom[m, r] * r
            for j in range(n):
                g_diag[j] -= f * ad[r - 1, j] * ex[r + 1, j] * my[m - r, j]
    for r in range(R + 1):
        for j in range(n):
            g_mom[r, j] *= imp[j]
    for j in range(n):
        g_diag[j] *= imp[j]
    coef = np.zeros((R + 1, n))
    for r in range(1, R + 1):
        for j in range(n):
            acc = 0.0
            for s in range(r, R + 1):
                acc += binom[s, r] * g_mom[s, j] * my[s - r, j]
            coef[r, j] = r * acc
            if r == 1:
                db[j] = acc
    if mode == MODE_SMALL:
        small_grad_w(A, W, coef, kx, orders, g_diag, dW)
    elif mode == MODE_PARALLEL:
        dW[:, :] = exact_grad_w(A, W, coef, kx, orders, g_diag)
    else:
        dW[:, :] = grad_w_serial(A, W, coef, kx, orders, g_diag)


@njit
def prepared_pass(A, W, b, has_b, binom, ex, kx, imp, orders, m, mode, want_grad,
                  terms, dW, db):  # fmt: skip
    """One exact evaluation on a prepared law; returns a status (0, or an ``OVERFLOW_*`` code).

    ``mode`` (:func:`kernel_mode`) picks the kernels.  ``A`` (n x n) holds
    ``W^T W`` on entry (its diagonal is zeroed), or in :data:`MODE_SMALL`
    is scratch for its lower triangle, formed here; ``binom``,
    ``ex``, ``kx``, ``imp`` and ``orders`` are the law's tables (see
    :class:`fastsuper.exact.prepared.ExactEvaluator`).  Fills ``terms``
    (3, n) with ``E x_j**2``, ``E[x_j z_j**m]``, ``E z_j**(2m)`` and, with
    ``want_grad``, ``dW`` (d, n) and ``db`` (n,) with the gradient of the loss.
    """
    ad, my = _forward(A, W, b, has_b, binom, ex, kx, m, mode, terms)
    for j in range(terms.shape[1]):
        if not (np.isfinite(terms[1, j]) and np.isfinite(terms[2, j])):
            return OVERFLOW_FORWARD
    if not want_grad:
        return 0
    _backward(A, W, binom, ex, kx, imp, orders, m, mode, ad, my, dW, db)
    for j in range(db.shape[0]):
        if not np.isfinite(db[j]):
            return OVERFLOW_GRADIENT
    for k in range(dW.shape[0]):
        for j in range(dW.shape[1]):
            if not np.isfinite(dW[k, j]):
                return OVERFLOW_GRADIENT
    return 0


@njit
def exact_fsum(x):
    """``math.fsum(x)`` of a 1-d float64 array: the correctly rounded sum.

    The algorithm of CPython's ``math.fsum`` (Shewchuk's exact partials, then
    the half-even correction across partials), so the value is Python's bit
    for bit.  Returns NaN where Python raises or a value is not finite (an
    intermediate overflow, an infinity or a NaN among the values): the caller
    then takes the general path.
    """
    partials = np.empty(x.shape[0] + 1)
    n = 0
    lo = 0.0
    for k in range(x.shape[0]):
        v = x[k]
        if not np.isfinite(v):
            return np.nan
        i = 0
        for j in range(n):
            y = partials[j]
            if abs(v) < abs(y):
                v, y = y, v
            hi = v + y
            yr = hi - v
            lo = y - yr
            if lo != 0.0:
                partials[i] = lo
                i += 1
            v = hi
        n = i
        if v != 0.0:
            if not np.isfinite(v):
                return np.nan
            partials[n] = v
            n += 1
    hi = 0.0
    if n > 0:
        n -= 1
        hi = partials[n]
        while n > 0:
            v = hi
            n -= 1
            y = partials[n]
            hi = v + y
            yr = hi - v
            lo = y - yr
            if lo != 0.0:
                break
        if n > 0 and ((lo < 0.0 and partials[n - 1] < 0.0) or (lo > 0.0 and partials[n - 1] > 0.0)):
            y = lo * 2.0
            v = hi + y
            yr = v - hi
            if y == yr:
                hi = v
    return hi


@njit
def feature_sums(terms, imp, per):
    """``(loss, gain)``: the correctly rounded sums over features of the per-feature loss
    ``imp (ex2 - 2 exzm + ez2m)`` and gain ``imp (2 exzm - ez2m)`` of ``terms`` (NumPy's
    operations in NumPy's order, then :func:`exact_fsum`); ``per`` is (n,) scratch."""
    n = terms.shape[1]
    for j in range(n):
        per[j] = imp[j] * (terms[0, j] - 2.0 * terms[1, j] + terms[2, j])
    loss = exact_fsum(per)
    for j in range(n):
        per[j] = imp[j] * (2.0 * terms[1, j] - terms[2, j])
    return loss, exact_fsum(per)
