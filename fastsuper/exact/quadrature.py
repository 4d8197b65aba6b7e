"""Adaptive Gauss-Kronrod quadrature of the k = 1 terms for smooth activations (THEORY §4).

The k = 1 stratum needs, for every pair ``(j, i)``, one-dimensional integrals
over the value law ``mu`` of ``phi(c xi + b)**2`` and ``xi phi(c xi + b)``
(``c = A_ji``, ``b = b_j``), and on the diagonal of ``(xi - phi)**2`` and
``phi (2 xi - phi)``.  For the smooth activations (gelu, gelu_tanh, tanh,
softplus, sigmoid, silu) these have no closed form; they are integrated here
by adaptive bisection with the 15-point Gauss-Kronrod rule and its embedded
7-point Gauss rule (QUADPACK's ``qk15``):

* uniform laws: on the support, split at the activation's centre
  ``t0 = -b / c`` when it lies inside;
* Gaussian values: on ``[-38.5, 38.5]`` (the density beyond is below
  ``1e-322`` and every integrand grows at most like ``xi**2``, so the
  truncation error is below ``1e-300``), split at ``0``, ``+-8`` and ``t0``.

A segment is accepted when ``|K15 - G7|`` of every component is at most
``rtol * S * (its length / the total length)``, with ``S`` the integral of the
component's absolute value (:data:`fastsuper.core.config.LOW_ORDER_QUAD_RTOL`)
or when the segment budget (:data:`fastsuper.core.config.LOW_ORDER_QUAD_SEGMENTS`)
is spent.  The sum of ``|K15 - G7|`` over the accepted segments is returned as
the error estimate.  It is QUADPACK's raw estimate without its heuristic
rescaling: for these analytic integrands the 15-point result is far more
accurate than the 7-point one, so the true error is typically many orders of
magnitude below the estimate.  Discrete laws need no quadrature (finite sums).
"""

from __future__ import annotations

import math

import numpy as np

from fastsuper.core.activations import phi
from fastsuper.core.jit import njit

__all__ = ["GAUSS_HALF_WIDTH", "smooth_pair"]

#: half-width of the truncated Gaussian range (the density beyond it is below 1e-322)
GAUSS_HALF_WIDTH = 38.5

# 15-point Kronrod nodes on [-1, 1] and weights; the 7-point Gauss weights on
# the odd positions (QUADPACK qk15)
_XK = np.array(
    [
        0.991455371120812639206854697526329,
        0.949107912342758524526189684047851,
        0.864864423359769072789712788640926,
        0.741531185599394439863864773280788,
        0.586087235467691130294144845693013,
        0.405845151377397166906606412076961,
        0.207784955007898467600689403773245,
        0.0,
    ]
)
_WK = np.array(
    [
        0.022935322010529224963732008058970,
        0.063092092629978553290700663189204,
        0.104790010322250183839876322541518,
        0.140653259715525918745189590510238,
        0.169004726639267902826583426598550,
        0.190350578064785409913256402421014,
        0.204432940075298892414161999234649,
        0.209482141084727828012999174891714,
    ]
)
_WG = np.array(
    [
        0.0,
        0.129484966168869693270611432679082,
        0.0,
        0.279705391489276667901467771423780,
        0.0,
        0.381830050505118944950369775488975,
        0.0,
        0.417959183673469387755102040816327,
    ]
)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SPLIT = 134217729.0  # 2**27 + 1


@njit
def _density(x, gauss, dens):
    """The value law's density at ``x``: standard normal (``t*t`` split exactly) or ``dens``."""
    if not gauss:
        return dens
    c = _SPLIT * x
    xh = c - (c - x)
    xl = x - xh
    hi = x * x
    lo = ((xh * xh - hi) + 2.0 * xh * xl) + xl * xl
    return math.exp(-0.5 * hi) * math.exp(-0.5 * lo) * _INV_SQRT_2PI


@njit
def _values(x, c, b, act, diag, want1, gauss, dens):
    """The two integrands at ``x``, times the density (see :func:`smooth_pair`)."""
    w = _density(x, gauss, dens)
    f = phi(c * x + b, act)
    if diag:
        r = x - f
        return r * r * w, f * (2.0 * x - f) * w
    return f * f * w, (x * f * w if want1 else 0.0)


@njit
def _gk15(x0, x1, c, b, act, diag, want1, gauss, dens):
    """``(K1, K2, |K1 - G1|, |K2 - G2|, |f1|, |f2|)`` on ``[x0, x1]`` (the last two: K15 of
    the absolute values)."""
    half = 0.5 * (x1 - x0)
    mid = 0.5 * (x0 + x1)
    k1 = k2 = g1 = g2 = a1 = a2 = 0.0
    for q in range(8):
        for sgn in (-1.0, 1.0):
            if q == 7 and sgn > 0.0:
                continue  # the centre once
            v1, v2 = _values(mid + sgn * half * _XK[q], c, b, act, diag, want1, gauss, dens)
            k1 += _WK[q] * v1
            k2 += _WK[q] * v2
            g1 += _WG[q] * v1
            g2 += _WG[q] * v2
            a1 += _WK[q] * abs(v1)
            a2 += _WK[q] * abs(v2)
    return k1 * half, k2 * half, abs(k1 - g1) * half, abs(k2 - g2) * half, a1 * half, a2 * half


@njit
def _breakpoints(c, b, gauss, lo, hi):
    """Sorted initial breakpoints: the range's ends, ``t0 = -b / c`` inside it, and for
    Gaussian values ``0`` and ``+-8``."""
    pts = np.empty(6)
    m = 0
    if gauss:
        lo, hi = -GAUSS_HALF_WIDTH, GAUSS_HALF_WIDTH
        pts[0], pts[1], pts[2] = -8.0, 0.0, 8.0
        m = 3
    t0 = -b / c
    if lo < t0 < hi:
        pts[m] = t0
        m += 1
    pts[m] = lo
    pts[m + 1] = hi
    out = np.sort(pts[: m + 2])
    return out


@njit
def smooth_pair(c, b, diag, want1, act, gauss, lo, hi, rtol, max_seg):
    """Integrals of one pair over the value law, by adaptive Gauss-Kronrod.

    Parameters
    ----------
    c, b : float
        The pre-activation is ``c xi + b`` (``c != 0``).
    diag : bool
        Integrate ``(xi - phi)**2`` and ``phi (2 xi - phi)`` (the diagonal term's
        loss and gain) instead of ``phi**2`` and ``xi phi``.
    want1 : bool
        Whether the second integral is wanted (off the diagonal).
    act : Activation
        The activation bundle, exponent in float64.
    gauss : bool
        Standard normal values (else uniform on ``[lo, hi]``).
    lo, hi : float
        The uniform law's support.
    rtol : float
        Relative tolerance of each component (against the integral of its absolute value).
    max_seg : int
        Most segments (accepted and pending) per pair.

    Returns
    -------
    (float, float, float)
        The two integrals and the sum of the two error estimates.
    """
    dens = 0.0 if gauss else 1.0 / (hi - lo)
    pts = _breakpoints(c, b, gauss, lo, hi)
    total = pts[-1] - pts[0]
    stack = np.empty((max_seg, 8))  # x0, x1, k1, k2, e1, e2, a1, a2
    top = 0
    s1 = s2 = 0.0
    for q in range(pts.shape[0] - 1):
        if pts[q + 1] > pts[q]:
            r = _gk15(pts[q], pts[q + 1], c, b, act, diag, want1, gauss, dens)
            stack[top, 0] = pts[q]
            stack[top, 1] = pts[q + 1]
            for k in range(6):
                stack[top, 2 + k] = r[k]
            s1 += r[4]
            s2 += r[5]
            top += 1
    tol1 = rtol * s1
    tol2 = rtol * s2
    i1 = i2 = err = 0.0
    used = top
    while top > 0:
        top -= 1
        x0, x1 = stack[top, 0], stack[top, 1]
        k1, k2, e1, e2 = stack[top, 2], stack[top, 3], stack[top, 4], stack[top, 5]
        share = (x1 - x0) / total
        if (e1 <= tol1 * share and e2 <= tol2 * share) or used + 2 > max_seg:
            i1 += k1
            i2 += k2
            err += e1 + e2
            continue
        xm = 0.5 * (x0 + x1)
        for lo_, hi_ in ((x0, xm), (xm, x1)):
            r = _gk15(lo_, hi_, c, b, act, diag, want1, gauss, dens)
            stack[top, 0] = lo_
            stack[top, 1] = hi_
            for k in range(6):
                stack[top, 2 + k] = r[k]
            top += 1
        used += 2
    return i1, i2, err
