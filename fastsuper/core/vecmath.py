"""Vectorisable float64 versions of the smooth activations (CPU loops over arrays).

The accurate per-element functions of :mod:`fastsuper.core.activations`
(``smooth_phi``) call libm (``exp``, ``log1p``, ``erfc``, ``tanh``) once or
twice per element; with no vector math library available to Numba, a loop
over them runs one element at a time.  The functions here compute the same
activations from multiplications, additions, divisions, comparisons with
selects and one integer-to-float bit cast (the ``2**k`` of ``exp``), so that
LLVM vectorises a loop over them:

* ``exp``/``expm1``: ``x = k ln 2 + r`` (``k`` rounded by the ``1.5 * 2**52``
  trick, ``ln 2`` in two parts, ``|r| <= ln(2) / 2``), ``expm1(r)`` by its
  Taylor polynomial to degree 13, ``2**k`` built from its bits;
* ``log1p`` on ``[0, 1]``: ``2 atanh(s)``, ``s = v / (2 + v)``, its series to
  ``s**25`` (with ``log1p(e) = ln 2 + log1p((e - 1) / 2)`` above ``e = 1/2``);
* sigmoid, silu, tanh (from ``expm1``), the tanh GELU (its argument in
  double-double, as in ``smooth_phi``) and softplus from these.

``gelu`` (``erfc``) has no fast form yet.

Each activation is accurate to a few float64 ulps of the exact function on a
*domain* (:func:`fast_domain`); elements outside it (the far tails, huge
arguments, infinities, NaN) are recomputed by the caller with the accurate
``smooth_phi``.  For a float32 array the polynomials are shorter and the
double-double steps left out (the float64 result is within about 1e-8
relative, then rounded to float32: within 1 float32 ulp).  Compiled with
fastmath off (the rounding trick of ``exp`` relies on it): callers that are
fastmath kernels call the array functions here, which LLVM may inline
without changing their floating-point flags.
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic, overload

from fastsuper.core.activations import (
    GELU,
    GELU_TANH,
    SIGMOID,
    SILU,
    SOFTPLUS,
    TANH,
    _gelu_tanh_u,
    _two_prod,
    like,
    smooth_phi,
)
from fastsuper.core.jit import njit

_LOG2E = 1.4426950408889634
_ROUND = 6755399441055744.0  # 1.5 * 2**52: x + _ROUND - _ROUND rounds x to an integer
_LN2_HI = 6.93147180369123816490e-01  # ln 2 to 32 bits (k * _LN2_HI is exact for |k| < 2**21)
_LN2_LO = 1.90821492927058770002e-10
_LN2 = 0.6931471805599453
_LN2_TAIL = 2.3190468138462996e-17  # ln 2 - _LN2
_SQRT1_2 = 0.7071067811865476
_SQRT1_2_LO = -4.833646656726457e-17  # sqrt(1/2) - _SQRT1_2
_TWO_OVER_SQRT_PI = 1.1283791670955126
#: ``erf(x) / x = sum_n _ERF_TAYLOR[n] x**(2 n)``: ``2 / sqrt(pi) (-1)**n / (n! (2 n + 1))``
_ERF_TAYLOR = np.array(
    [_TWO_OVER_SQRT_PI * (-1) ** n / (math.factorial(n) * (2 * n + 1)) for n in range(15)]
)
_GELU_K = 0.7978845608028654  # as in activations
_GELU_C = 0.044715


@intrinsic
def bits_to_float64(typingctx, i):
    """The float64 whose bits are the int64 ``i`` (a bit cast, vectorisable)."""

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.int64), codegen


def single(z):
    """Whether the array ``z`` is float32 (compiled: a constant of its type)."""
    return z.dtype == np.float32


@overload(single)
def _single_impl(z):
    if isinstance(z.dtype, types.Float) and z.dtype.bitwidth == 32:
        return lambda z: True
    return lambda z: False


@njit(inline="always")
def exp_parts(x, short=False):
    """``(s, p)`` with ``exp(x) = s (1 + p)``: ``s = 2**k`` and ``p = expm1(r)``.

    Valid for ``-708 <= x <= 709`` (``2**k`` normal); no branch.  ``short``
    (a compile-time constant): the polynomial to degree 7, within 1e-8
    relative (enough for a float32 result).
    """
    kf = (x * _LOG2E + _ROUND) - _ROUND
    r = (x - kf * _LN2_HI) - kf * _LN2_LO
    if short:
        q = 1.0 / 5040.0
        q = q * r + 1.0 / 720.0
        q = q * r + 1.0 / 120.0
        q = q * r + 1.0 / 24.0
        q = q * r + 1.0 / 6.0
        q = q * r + 0.5
        s = bits_to_float64((np.int64(kf) + 1023) << 52)
        return s, r + (r * r) * q
    q = 1.0 / 6227020800.0
    q = q * r + 1.0 / 479001600.0
    q = q * r + 1.0 / 39916800.0
    q = q * r + 1.0 / 3628800.0
    q = q * r + 1.0 / 362880.0
    q = q * r + 1.0 / 40320.0
    q = q * r + 1.0 / 5040.0
    q = q * r + 1.0 / 720.0
    q = q * r + 1.0 / 120.0
    q = q * r + 1.0 / 24.0
    q = q * r + 1.0 / 6.0
    q = q * r + 0.5
    p = r + (r * r) * q
    s = bits_to_float64((np.int64(kf) + 1023) << 52)
    return s, p


@njit(inline="always")
def exp_fast(x, short=False):
    """``exp(x)`` for ``-708 <= x <= 709`` (within about 1 ulp; ``short``: :func:`exp_parts`)."""
    s, p = exp_parts(x, short)
    return s + s * p


@njit(inline="always")
def expm1_fast(x, short=False):
    """``exp(x) - 1`` for ``-708 <= x <= 709`` (within a few ulps, also near 0)."""
    s, p = exp_parts(x, short)
    return (s - 1.0) + s * p


@njit(inline="always")
def log1p_unit(e, short=False):
    """``log(1 + e)`` for ``0 <= e <= 1`` (within a few ulps; ``short``: 1e-9); no branch."""
    big = e > 0.5
    v = (e - 1.0) * 0.5 if big else e  # 1 + e = 2 (1 + v); e - 1 exact there
    s = v / (2.0 + v)
    s2 = s * s
    q = 1.0 / 13.0 if short else 1.0 / 25.0
    for k in range(5 if short else 11, -1, -1):
        q = q * s2 + 1.0 / (2 * k + 1)
    r = 2.0 * s * q
    return (_LN2 + (_LN2_TAIL + r)) if big else r


@njit(inline="always")
def _sigmoid_fast(uh, ul, short=False):
    """``(sigma(u), sigma(-u))`` of ``u = uh + ul`` (``sigma(-u)`` for ``|uh| <= 708``).

    As ``_sigmoid_dd``; beyond ``|uh| = 708`` the larger of the two is still right (1).
    """
    a = abs(uh)
    e = exp_fast(-(708.0 if a > 708.0 else a), short)
    e = e - e * ul if uh >= 0.0 else e + e * ul
    big = 1.0 / (1.0 + e)
    small = e * big
    return (big, small) if uh >= 0.0 else (small, big)


@njit(inline="always")
def sigmoid_fast(t, short=False):
    """``sigma(t)`` for ``|t| <= 700`` (``short``: for a float32 result)."""
    return _sigmoid_fast(t, 0.0, short)[0]


@njit(inline="always")
def silu_fast(t, short=False):
    """``t sigma(t)`` for ``|t| <= 700``."""
    return t * _sigmoid_fast(t, 0.0, short)[0]


@njit(inline="always")
def tanh_fast(t, short=False):
    """``tanh(t)`` for ``|t| <= 1e300`` (``-expm1(-2|t|) / (2 + expm1(-2|t|))``)."""
    a = abs(t)
    a = 20.0 if a > 20.0 else a  # tanh(20) is 1 in float64
    m = expm1_fast(-2.0 * a, short)
    r = -m / (2.0 + m)
    return -r if t < 0.0 else r


@njit(inline="always")
def gelu_tanh_fast(t, short=False):
    """``t sigma(2 u)`` of the tanh GELU for ``-19.5 <= t`` (``u`` in double-double).

    ``short`` (a float32 result): ``u`` in float64 only, the short ``exp``.
    """
    tc = 30.0 if t > 30.0 else t
    if short:
        uh, ul = _GELU_K * (tc + _GELU_C * (tc * tc * tc)), 0.0
    else:
        uh, ul = _gelu_tanh_u(tc)
    s = _sigmoid_fast(2.0 * uh, 2.0 * ul, short)[0]
    return t if t > 30.0 else tc * s


@njit(inline="always")
def softplus_fast(t, c, short=False):
    """``log(1 + exp(c t)) / c`` where ``|t| < 1e150`` and ``|c t| <= 600``.

    ``short`` (a float32 result): ``c t`` rounded, the short ``exp`` and ``log1p``.
    """
    uh, ul = (c * t, 0.0) if short else _two_prod(c, t)
    e = exp_fast(-abs(uh), short)
    pos = uh >= 0.0
    e = e - e * ul if pos else e + e * ul
    lg = log1p_unit(e, short) / c
    return t + lg if pos else lg


@njit(inline="always")
def gelu_fast(t, short=False):
    """``t Phi(t)`` for ``|t| <= 1``: ``Phi = (1 + erf(x)) / 2``, ``x = t / sqrt(2)``.

    ``erf(x) / x`` by its Taylor series in ``x**2 <= 1/2`` (to ``x**28``; to
    ``x**16`` with ``short``), with the rounding error of ``x`` corrected to
    first order.
    """
    xh, xl = _two_prod(t, _SQRT1_2)
    xl += t * _SQRT1_2_LO  # t / sqrt(2) = xh + xl
    w = xh * xh
    q = _ERF_TAYLOR[8] if short else _ERF_TAYLOR[14]
    for k in range(7 if short else 13, -1, -1):
        q = q * w + _ERF_TAYLOR[k]
    erf = xh * q + xl * _TWO_OVER_SQRT_PI * (1.0 - w)  # erf'(x) = 2 exp(-x**2) / sqrt(pi)
    return t * (0.5 + 0.5 * erf)


@njit
def _loop_sigmoid(z, c, lo, hi, out):
    short = single(z)
    for j in range(z.shape[0]):
        t = np.float64(z[j])
        t = t if (t >= lo) & (t <= hi) else 0.0
        out[j] = like(z[j], sigmoid_fast(t, short))


@njit
def _loop_silu(z, c, lo, hi, out):
    short = single(z)
    for j in range(z.shape[0]):
        t = np.float64(z[j])
        t = t if (t >= lo) & (t <= hi) else 0.0
        out[j] = like(z[j], silu_fast(t, short))


@njit
def _loop_tanh(z, c, lo, hi, out):
    short = single(z)
    for j in range(z.shape[0]):
        t = np.float64(z[j])
        t = t if (t >= lo) & (t <= hi) else 0.0
        out[j] = like(z[j], tanh_fast(t, short))


@njit
def _loop_gelu_tanh(z, c, lo, hi, out):
    short = single(z)
    for j in range(z.shape[0]):
        t = np.float64(z[j])
        t = t if (t >= lo) & (t <= hi) else 0.0
        out[j] = like(z[j], gelu_tanh_fast(t, short))


@njit
def _loop_softplus(z, c, lo, hi, out):
    short = single(z)
    for j in range(z.shape[0]):
        t = np.float64(z[j])
        t = t if (t >= lo) & (t <= hi) else 0.0
        out[j] = like(z[j], softplus_fast(t, c, short))


@njit
def _loop_gelu(z, c, lo, hi, out):
    short = single(z)
    for j in range(z.shape[0]):
        t = np.float64(z[j])
        t = t if (t >= lo) & (t <= hi) else 0.0
        out[j] = like(z[j], gelu_fast(t, short))


@njit
def fast_domain(code, c):
    """``(lo, hi)``: the fast form of activation ``code`` is accurate for ``lo <= t <= hi``."""
    if code == SOFTPLUS:  # |c t| <= 600 and |t| < 1e150
        hi = min(600.0 / c, 1e149)
        return -hi, hi
    if code == SIGMOID or code == SILU:
        return -700.0, 700.0
    if code == TANH:
        return -1e300, 1e300
    if code == GELU:
        return -1.0, 1.0
    return -19.5, np.inf  # GELU_TANH


@njit
def has_fast_form(code):
    """Whether :func:`phi_fast` has a vectorised loop for activation ``code``."""
    return code >= GELU and code <= SILU


@njit
def phi_fast(z, code, c, out):
    """``out = phi(z)`` elementwise, vectorised (CPU).

    ``z`` and ``out`` 1-D arrays of one dtype (float32 or float64); the loop
    is vectorised only when they do not overlap.  ``code`` an activation
    with a fast form (:func:`has_fast_form`), ``c`` its parameter.  ``phi``
    is the fast form where it is accurate (:func:`fast_domain`),
    ``smooth_phi`` elsewhere (NaN, infinities, the far tails), rounded to
    the dtype of ``z``; the fast forms are within a few float64 ulps of the
    exact function.
    """
    lo, hi = fast_domain(code, c)
    bad = 0
    for j in range(z.shape[0]):
        t = np.float64(z[j])
        bad += not ((t >= lo) & (t <= hi))
    if code == SIGMOID:
        _loop_sigmoid(z, c, lo, hi, out)
    elif code == SILU:
        _loop_silu(z, c, lo, hi, out)
    elif code == TANH:
        _loop_tanh(z, c, lo, hi, out)
    elif code == GELU_TANH:
        _loop_gelu_tanh(z, c, lo, hi, out)
    elif code == GELU:
        _loop_gelu(z, c, lo, hi, out)
    else:
        _loop_softplus(z, c, lo, hi, out)
    if bad:  # the few elements outside the domain, one at a time
        for j in range(z.shape[0]):
            t = np.float64(z[j])
            if not ((t >= lo) & (t <= hi)):
                out[j] = like(z[j], smooth_phi(t, code, c))
