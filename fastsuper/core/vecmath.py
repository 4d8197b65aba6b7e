"""Vectorisable float64 versions of the smooth activations (CPU loops over arrays).

The accurate per-element functions of :mod:`fastsuper.core.activations`
(``smooth_phi``) call libm (``exp``, ``log1p``, ``erfc``, ``tanh``) once or
twice per element; with no vector math library available to Numba, a loop
over them runs one element at a time.  The functions here compute the same
activations from fused multiply-adds (:func:`fma`, ``llvm.fma``),
multiplications, additions, comparisons with selects and one
integer-to-float bit cast (the ``2**k`` of ``exp``), with no division, so
that LLVM vectorises a loop over them:

* ``exp``/``expm1``: ``x = k ln 2 + r`` (``k`` rounded by the ``1.5 * 2**52``
  trick, ``ln 2`` in two parts, ``|r| <= ln(2) / 2``), ``expm1(r)`` by a
  polynomial of degree 12 (its Taylor coefficients to ``r**6``, the rest
  fitted), ``2**k`` built from the bits of ``k``;
* ``1 / d`` on ``[1, 2]`` (:func:`recip_unit`): a quadratic first guess and
  two third-order refinement steps (a division is the slowest vector
  instruction);
* ``log1p`` on ``[0, 1]``: ``2 atanh(s)``, ``s = v / (2 + v)``, by a
  polynomial to ``s**17`` (the series' first terms, the rest fitted; with
  ``log1p(e) = ln 2 + log1p((e - 1) / 2)`` above ``e = 1/2``);
* sigmoid, silu, tanh (from ``expm1``), the tanh GELU (its argument in
  double-double, as in ``smooth_phi``; the exact products by FMA) and
  softplus from these; ``gelu`` for ``|t| <= 1`` from a polynomial for
  ``erf`` (its Taylor series' first terms, the rest fitted).

Polynomials are evaluated by Estrin's scheme (short dependency chains: the
loops are bound by the latency of a tile's few vectors as much as by their
throughput).  Each activation is accurate to a few float64 ulps of the exact
function on a *domain* (:func:`fast_domain`); elements outside it (the far
tails, huge arguments, infinities, NaN; for ``gelu`` ``|t| > 1``) are
recomputed by the caller with the accurate ``smooth_phi``.  For a float32
array the polynomials are shorter and the double-double steps left out (the
float64 result is within about 1e-8 relative, then rounded to float32:
within 1 float32 ulp).  Compiled with fastmath off (the rounding trick of
``exp`` relies on it; the FMAs are explicit, so the numbers do not depend on
the compiler's contraction); callers that are fastmath kernels call the
array functions here.  The loops over arrays are compiled for
:data:`config.ACTIVATION_VECTOR_BITS`-bit vectors where the CPU has them
(:func:`wide_vectors`) and are not inlined into their callers.
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic, overload

from fastsuper.core import config
from fastsuper.core.activations import (
    GELU,
    GELU_TANH,
    SIGMOID,
    SILU,
    SOFTPLUS,
    TANH,
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
#: ``expm1(r) ~ r + r**2 sum_k c[k] r**(k-2)`` for ``|r| <= ln(2) / 2`` (``c[0]``, ``c[1]``
#: unused): ``c[k] = 1 / k!`` for ``k <= 6``, ``c[7] .. c[12]`` fitted to the
#: rest of the series (weighted least squares towards minimax; polynomial error
#: below 0.01 ulp of ``exp``, against 0.05 for the Taylor polynomial to degree 13)
_EXP_POLY = np.array(
    [1.0 / math.factorial(n) for n in range(7)]
    + [
        1.984126985246758e-04,
        2.480158725223217e-05,
        2.755727973190284e-06,
        2.75574023487217e-07,
        2.5096491831978637e-08,
        2.085521084257127e-09,
    ]
)
#: ``1 / (2 k + 1)``: ``atanh(s) / s = sum_k s**(2 k) / (2 k + 1)``
_ATANH_SERIES = np.array([1.0 / (2 * k + 1) for k in range(11)])
#: ``(atanh(s) / s - 1) / s**2 ~ sum_n c[n] y**n``, ``y = s**2 <= 0.04``: the series'
#: ``1 / (2 n + 3)`` to ``n = 2``, ``c[3] .. c[7]`` fitted to its rest (weighted least squares
#: towards minimax; error below 0.01 ulp of ``log1p``)
_ATANH_POLY = np.array(
    [1.0 / 3.0, 0.2, 1.0 / 7.0, 0.11111111215409142, 0.09090889492936553, 0.07693731143616604,
     0.06616706208663696, 0.06725622402583901]
)  # fmt: skip
#: ``erf(x) / x ~ sum_n c[n] x**(2 n)`` for ``x**2 <= 1/2``: the Taylor coefficients
#: ``2 / sqrt(pi) (-1)**n / (n! (2 n + 1))`` to ``n = 5``, ``c[6] .. c[10]`` fitted to the
#: rest of the series (weighted least squares towards minimax; polynomial error below
#: the rounding of ``c[0]``)
_ERF_POLY = np.array(
    [_TWO_OVER_SQRT_PI * (-1) ** n / (math.factorial(n) * (2 * n + 1)) for n in range(6)]
    + [
        0.00012055333596160772,
        -1.492567785720333e-05,
        1.6461114327125762e-06,
        -1.628421874060676e-07,
        1.3104670967705188e-08,
    ]
)
#: the same to ``x**12`` for a float32 result (``c[3] .. c[6]`` fitted: within 4e-11 relative)
_ERF_POLY_SHORT = np.array(
    [_TWO_OVER_SQRT_PI, -_TWO_OVER_SQRT_PI / 3.0, _TWO_OVER_SQRT_PI / 10.0,
     -0.02686599241010366, 0.0052217442078213595, -0.000844780018756837, 0.0001008872854665739]
)  # fmt: skip
_GELU_K = 0.7978845608028654  # as in activations
_GELU_C = 0.044715
#: ``1 / d ~ c0 + c1 d + c2 d**2``: near-minimax relative error on ``[1, 2]`` (0.0102) and
#: on ``[1.75, 2.5]`` (0.0015), first guesses of :func:`recip_unit` and :func:`log1p_unit`
_RECIP_UNIT = (2.12121, -1.45454, 0.323232)
_RECIP_LOG = (1.43427, -0.680248, 0.106706)


@intrinsic
def fma(typingctx, a, b, c):
    """``a b + c`` rounded once (``llvm.fma``: one instruction where the CPU has FMA).

    The three arguments are float64.  A CPU without FMA gets the same
    numbers from libm's ``fma`` (slowly).
    """

    def codegen(context, builder, signature, args):
        return builder.fma(*args)

    return types.float64(types.float64, types.float64, types.float64), codegen


@intrinsic
def wide_vectors(typingctx):
    """Mark the calling function: vectorise for :data:`config.ACTIVATION_VECTOR_BITS`-bit vectors.

    Sets the LLVM function attribute ``"prefer-vector-width"`` (CPUs with
    AVX-512 otherwise get 256-bit vectors) and ``noinline`` (the attribute
    is the function's own: inlined, its loop would be compiled for the
    caller's width).  For elementwise loops only: their numbers do not
    depend on the vector width (a reduction's would).  CPUs without wider
    vectors ignore it.
    """

    def codegen(context, builder, signature, args):
        attrs = builder.function.attributes
        attrs.add("noinline")
        # llvmlite knows no string attributes by name: add the text as it is printed
        set.add(attrs, f'"prefer-vector-width"="{config.ACTIVATION_VECTOR_BITS}"')
        return context.get_dummy_value()

    return types.none(), codegen


@intrinsic
def float64_to_bits(typingctx, x):
    """The int64 whose bits are those of the float64 ``x`` (a bit cast, vectorisable)."""

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return types.int64(types.float64), codegen


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
def two_prod(a, b):
    """``(p, e)``: ``p = fl(a b)``, ``p + e = a b`` exactly (one FMA; Dekker's pair)."""
    p = a * b
    return p, fma(a, b, -p)


@njit(inline="always")
def _cubic(x, x2, c, i):
    """``c[i] + c[i+1] x + c[i+2] x**2 + c[i+3] x**3`` (``x2 = x**2``; Estrin's scheme)."""
    return fma(fma(c[i + 3], x, c[i + 2]), x2, fma(c[i + 1], x, c[i]))


@njit(inline="always")
def exp_parts(x, short=False):
    """``(s, p)`` with ``exp(x) = s (1 + p)``: ``s = 2**k`` and ``p = expm1(r)``.

    Valid for ``-708 <= x <= 709`` (``2**k`` normal); no branch.  ``short``
    (a compile-time constant): the Taylor polynomial to degree 7, within 1e-8
    relative (enough for a float32 result).
    """
    y = fma(x, _LOG2E, _ROUND)  # _ROUND + k: k in the low bits of its significand
    kf = y - _ROUND
    r = fma(-kf, _LN2_HI, x)  # exact
    r = fma(-kf, _LN2_LO, r)
    # q = (expm1(r) - r) / r**2 by a polynomial of degree 10 (short: the Taylor polynomial
    # of degree 5), by Estrin's scheme
    c = _EXP_POLY
    r2 = r * r
    r4 = r2 * r2
    if short:
        q = fma(fma(1.0 / 5040.0, r, c[6]), r4, _cubic(r, r2, c, 2))
    else:
        hi = fma(c[12], r2, fma(c[11], r, c[10]))
        q = fma(hi, r4 * r4, fma(_cubic(r, r2, c, 6), r4, _cubic(r, r2, c, 2)))
    # 2**k from the bits of y: its low 12 bits are those of k (-1022 <= k <= 1023)
    s = bits_to_float64((float64_to_bits(y) + 1023) << 52)
    return s, fma(r2, q, r)


@njit(inline="always")
def exp_fast(x, short=False):
    """``exp(x)`` for ``-708 <= x <= 709`` (within about 1 ulp; ``short``: :func:`exp_parts`)."""
    s, p = exp_parts(x, short)
    return fma(s, p, s)


@njit(inline="always")
def expm1_fast(x, short=False):
    """``exp(x) - 1`` for ``-708 <= x <= 709`` (within a few ulps, also near 0)."""
    s, p = exp_parts(x, short)
    return fma(s, p, s - 1.0)


@njit(inline="always")
def recip_unit(d, short=False):
    """``1 / d`` for ``1 <= d <= 2`` without a division (within about half an ulp).

    A quadratic first guess (relative error below 0.0102) and two
    third-order steps ``y (1 + r + r**2)``, ``r = 1 - d y`` (each cubes the
    error); ``short``: the second a Newton step (squares it: within 2e-12).
    """
    y = fma(fma(_RECIP_UNIT[2], d, _RECIP_UNIT[1]), d, _RECIP_UNIT[0])
    r = fma(-d, y, 1.0)
    y = fma(y, fma(r, r, r), y)
    r = fma(-d, y, 1.0)
    return fma(y, r, y) if short else fma(y, fma(r, r, r), y)


@njit(inline="always")
def log1p_unit(e, short=False):
    """``log(1 + e)`` for ``0 <= e <= 1`` (within a few ulps; ``short``: 1e-9); no branch."""
    big = e > 0.5
    v = (e - 1.0) * 0.5 if big else e  # 1 + e = 2 (1 + v); e - 1 exact there
    d = 2.0 + v  # 1.75 <= d <= 2.5: 1 / d by a quadratic guess, one third-order step
    y = fma(fma(_RECIP_LOG[2], d, _RECIP_LOG[1]), d, _RECIP_LOG[0])
    r = fma(-d, y, 1.0)
    y = fma(y, fma(r, r, r), y)
    s = v * y
    s = fma(fma(-s, d, v), y, s)  # s = v / (2 + v), the quotient's residual corrected
    # log1p = 2 atanh(s) = 2 s + 2 s y q, y = s**2, q = sum_k y**(k-1) / (2 k + 1)
    # (short: for k = 1 .. 5; |s| <= 0.2: the first term left out, y**6 / 13, is below
    # 4e-10 relative), else the polynomial _ATANH_POLY of degree 7, by Estrin's scheme;
    # the leading 2 s added last, exactly
    y = s * s
    y2 = y * y
    y4 = y2 * y2
    if short:
        c = _ATANH_SERIES
        q = fma(c[5], y4, _cubic(y, y2, c, 1))
    else:
        c = _ATANH_POLY
        q = fma(_cubic(y, y2, c, 4), y4, _cubic(y, y2, c, 0))
    s = 2.0 * s
    r = fma(s * y, q, s)
    return (_LN2 + (_LN2_TAIL + r)) if big else r


@njit(inline="always")
def _sigmoid_fast(uh, ul, short=False):
    """``(sigma(u), sigma(-u))`` of ``u = uh + ul`` (``sigma(-u)`` for ``|uh| <= 708``).

    As ``_sigmoid_dd``; beyond ``|uh| = 708`` the larger of the two is still right (1).
    """
    a = abs(uh)
    e = exp_fast(-(708.0 if a > 708.0 else a), short)
    e = fma(e, -ul if uh >= 0.0 else ul, e)  # exp(-|u|) to first order in ul
    return _sigmoid_pair(e, uh >= 0.0, short)


@njit(inline="always")
def _sigmoid_pair(e, pos, short):
    """``(sigma(u), sigma(-u))`` from ``e = exp(-|u|)`` and ``pos = u >= 0``."""
    big = recip_unit(1.0 + e, short)
    small = e * big
    return (big, small) if pos else (small, big)


@njit(inline="always")
def sigmoid_fast(t, short=False):
    """``sigma(t)`` for ``|t| <= 700`` (``short``: for a float32 result)."""
    return _sigmoid_pair(exp_fast(-abs(t), short), t >= 0.0, short)[0]


@njit(inline="always")
def silu_fast(t, short=False):
    """``t sigma(t)`` for ``|t| <= 700``."""
    return t * sigmoid_fast(t, short)


@njit(inline="always")
def tanh_fast(t, short=False):
    """``tanh(t)`` for ``|t| <= 1e300`` (``-expm1(-2|t|) / (2 + expm1(-2|t|))``)."""
    a = abs(t)
    a = 20.0 if a > 20.0 else a  # tanh(20) is 1 in float64
    m = expm1_fast(-2.0 * a, short)
    d = 2.0 + m  # 1 <= d <= 2
    y = recip_unit(d, short)
    r = -m * y
    r = fma(fma(r, d, m), -y, r)  # the quotient's residual corrected
    return -r if t < 0.0 else r


@njit(inline="always")
def gelu_tanh_u(t):
    """``(uh, ul)``: ``u = k (t + c t**3)`` of the tanh GELU in double-double (``|t| <= 30``).

    The value of ``_gelu_tanh_u`` of :mod:`fastsuper.core.activations` (to
    about ``2**-100`` relative) as ``k t (1 + c t**2)``: ``t**2`` exactly,
    ``1 + c t**2`` with its rounding error by FMA, then two exact products.
    """
    sh, sl = two_prod(t, t)
    v = fma(_GELU_C, sh, 1.0)
    vl = fma(_GELU_C, sl, fma(_GELU_C, sh, 1.0 - v))  # 1 + c t**2 = v + vl (1 - v is exact)
    ph, pl = two_prod(t, v)
    pl = fma(t, vl, pl)  # t (1 + c t**2) = ph + pl
    uh, ul = two_prod(ph, _GELU_K)
    return uh, fma(pl, _GELU_K, ul)


@njit(inline="always")
def gelu_tanh_fast(t, short=False):
    """``t sigma(2 u)`` of the tanh GELU for ``-19.5 <= t`` (``u`` in double-double).

    ``short`` (a float32 result): ``u`` in float64 only, the short ``exp``.
    """
    tc = 30.0 if t > 30.0 else t
    if short:
        uh, ul = _GELU_K * fma(_GELU_C * tc, tc * tc, tc), 0.0
    else:
        uh, ul = gelu_tanh_u(tc)
    s = _sigmoid_fast(2.0 * uh, 2.0 * ul, short)[0]
    return t if t > 30.0 else tc * s


@njit(inline="always")
def softplus_fast(t, c, inv_c, short=False):
    """``log(1 + exp(c t)) / c`` where ``|t| < 1e150`` and ``|c t| <= 600``.

    ``inv_c`` is ``1 / c`` rounded (the division by ``c`` is a product and
    its residual's correction).  ``short`` (a float32 result): ``c t``
    rounded, the short ``exp`` and ``log1p``.
    """
    uh, ul = (c * t, 0.0) if short else two_prod(c, t)
    e = exp_fast(-abs(uh), short)
    pos = uh >= 0.0
    e = fma(e, -ul if pos else ul, e)
    lg = log1p_unit(e, short)
    q = lg * inv_c
    q = fma(fma(-q, c, lg), inv_c, q)  # lg / c
    return t + q if pos else q


@njit(inline="always")
def softplus_unit_fast(t, short=False):
    """:func:`softplus_fast` for ``c = 1`` (the same numbers: its steps by ``c`` are exact)."""
    e = exp_fast(-abs(t), short)
    lg = log1p_unit(e, short)
    return t + lg if t >= 0.0 else lg


@njit(inline="always")
def gelu_fast(t, short=False):
    """``t Phi(t)`` for ``|t| <= 1``: ``Phi = (1 + erf(x)) / 2``, ``x = t / sqrt(2)``.

    ``erf(x) / x`` by a polynomial in ``x**2 <= 1/2`` (to ``x**20``; to
    ``x**12`` with ``short``): its Taylor series' first terms, the rest
    fitted; the rounding error of ``x`` corrected to first order.
    """
    xh, xl = two_prod(t, _SQRT1_2)
    xl = fma(t, _SQRT1_2_LO, xl)  # t / sqrt(2) = xh + xl
    w = xh * xh
    # q = erf(xh) / xh = sum_n c[n] w**n for n = 0 .. 6 (10), by Estrin's scheme
    w2 = w * w
    w4 = w2 * w2
    if short:
        c = _ERF_POLY_SHORT
        q = fma(fma(c[6], w2, fma(c[5], w, c[4])), w4, _cubic(w, w2, c, 0))
    else:
        c = _ERF_POLY
        lo = fma(_cubic(w, w2, c, 4), w4, _cubic(w, w2, c, 0))
        q = fma(fma(c[10], w2, fma(c[9], w, c[8])), w4 * w4, lo)
    erf = fma(xh, q, xl * _TWO_OVER_SQRT_PI * (1.0 - w))  # erf'(x) = 2 exp(-x**2) / sqrt(pi)
    return t * fma(0.5, erf, 0.5)


@njit
def _loop_sigmoid(z, c, lo, hi, out):
    wide_vectors()
    short = single(z)
    bad = 0
    for j in range(z.shape[0]):
        t = np.float64(z[j])
        ok = abs(t) <= hi  # the domain is [-hi, hi]; NaN fails
        bad += not ok
        t = t if ok else 0.0
        out[j] = like(z[j], sigmoid_fast(t, short))
    return bad


@njit
def _loop_silu(z, c, lo, hi, out):
    wide_vectors()
    short = single(z)
    bad = 0
    for j in range(z.shape[0]):
        t = np.float64(z[j])
        ok = abs(t) <= hi  # the domain is [-hi, hi]; NaN fails
        bad += not ok
        t = t if ok else 0.0
        out[j] = like(z[j], silu_fast(t, short))
    return bad


@njit
def _loop_tanh(z, c, lo, hi, out):
    wide_vectors()
    short = single(z)
    bad = 0
    for j in range(z.shape[0]):
        t = np.float64(z[j])
        ok = abs(t) <= hi  # the domain is [-hi, hi]; NaN fails
        bad += not ok
        t = t if ok else 0.0
        out[j] = like(z[j], tanh_fast(t, short))
    return bad


@njit
def _loop_gelu_tanh(z, c, lo, hi, out):
    wide_vectors()
    short = single(z)
    bad = 0
    for j in range(z.shape[0]):
        t = np.float64(z[j])
        ok = t >= lo  # the domain is [lo, inf]; NaN fails
        bad += not ok
        t = t if ok else 0.0
        out[j] = like(z[j], gelu_tanh_fast(t, short))
    return bad


@njit(inline="always")
def _softplus_into(z, c, hi, out, short, unit):
    """The loop of :func:`_loop_softplus`; ``unit`` (a compile-time constant): ``c`` is 1
    (the scaling by ``c`` left out: the same numbers)."""
    inv_c = 1.0 / c
    bad = 0
    for j in range(z.shape[0]):
        t = np.float64(z[j])
        ok = abs(t) <= hi  # the domain is [-hi, hi]; NaN fails
        bad += not ok
        t = t if ok else 0.0
        if unit:
            f = softplus_unit_fast(t, short)
        else:
            f = softplus_fast(t, c, inv_c, short)
        out[j] = like(z[j], f)
    return bad


@njit
def _loop_softplus(z, c, lo, hi, out):
    wide_vectors()
    short = single(z)
    if c == 1.0:
        return _softplus_into(z, 1.0, hi, out, short, True)
    return _softplus_into(z, c, hi, out, short, False)


@njit
def _loop_gelu(z, c, lo, hi, out):
    """As the other loops, but returns the span ``(first, last)`` of the elements outside the
    domain (``(n, -1)`` if none): they are not rare for ``gelu``."""
    wide_vectors()
    short = single(z)
    n = z.shape[0]
    first, last = n, -1
    for j in range(n):
        t = np.float64(z[j])
        ok = abs(t) <= hi  # the domain is [-hi, hi]; NaN fails
        first = min(first, n if ok else j)
        last = max(last, -1 if ok else j)
        t = t if ok else 0.0
        out[j] = like(z[j], gelu_fast(t, short))
    return first, last


@njit
def fast_domain(code, c):
    """``(lo, hi)``: the fast form of activation ``code`` is accurate for ``lo <= t <= hi``.

    ``lo = -hi``, but for the tanh GELU (``hi`` infinite); the loops test just
    the bound that can fail.
    """
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
    first, last = 0, z.shape[0] - 1
    if code == SIGMOID:
        bad = _loop_sigmoid(z, c, lo, hi, out)
    elif code == SILU:
        bad = _loop_silu(z, c, lo, hi, out)
    elif code == TANH:
        bad = _loop_tanh(z, c, lo, hi, out)
    elif code == GELU_TANH:
        bad = _loop_gelu_tanh(z, c, lo, hi, out)
    elif code == GELU:
        first, last = _loop_gelu(z, c, lo, hi, out)
        bad = last >= first
    else:
        bad = _loop_softplus(z, c, lo, hi, out)
    if bad:  # the few elements outside the domain, one at a time
        for j in range(first, last + 1):
            t = np.float64(z[j])
            if not ((t >= lo) & (t <= hi)):
                out[j] = like(z[j], smooth_phi(t, code, c))
