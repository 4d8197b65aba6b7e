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
  softplus from these; ``gelu`` for ``-1 <= t <= 2`` as ``t / 2 + t**2 E(t**2)``,
  ``E`` a polynomial of ``erf(t / sqrt(2)) / (2 t)``, with the steps where
  the two terms cancel (``t`` near -1) carried with their rounding errors.

Polynomials are evaluated by Estrin's scheme (short dependency chains: the
loops are bound by the latency of a tile's few vectors as much as by their
throughput).  Each activation is accurate to a few float64 ulps of the exact
function on a *domain* (:func:`fast_domain`); elements outside it (the far
tails, huge arguments, infinities, NaN; for ``gelu`` ``t < -1`` and ``t > 2``) are
recomputed by the caller with the accurate ``smooth_phi``.  For a float32
array the polynomials are shorter and the double-double steps left out (the
float64 result is within about 1e-8 relative, then rounded to float32:
within 1 float32 ulp).  Compiled with fastmath off (the rounding trick of
``exp`` relies on it; the FMAs are explicit, so the numbers do not depend on
the compiler's contraction); callers that are fastmath kernels call the
array functions here.  The loops over arrays are compiled for
:data:`config.ACTIVATION_VECTOR_BITS`-bit vectors where the CPU has them
(:func:`wide_vectors`) and are not inlined into their callers.

Where the CPU Numba compiles for has AVX-512 (:data:`AVAILABLE`: the host,
or ``NUMBA_CPU_FEATURES`` where set), :func:`phi_fast` runs explicit
vector loops instead, emitted as LLVM IR (:class:`_Vec`), for the whole
vectors of an array (the loops above take the remainder):

* ``exp`` by a table, ``x = (16 k + j) ln(2) / 16 + r``, ``|r| <= ln(2) / 32``:
  the sixteen ``2**(j/16)`` (and their relative rounding errors) in two
  registers, picked per lane by ``vpermi2pd`` (``vpermps`` for float32: one
  register) from the low bits of the rounding sum, ``expm1(r)`` by a
  polynomial of degree 7 (4 in float32), ``2**k`` by ``vscalefpd``;
* quotients by division (the divider runs beside the multiply-add units
  these loops are bound by);
* a vector whose every lane has ``|t| <= 1`` (nearly all of them in a sparse
  model) takes a polynomial in ``t**2`` instead (sigmoid, silu, tanh,
  softplus with ``c = 1``, both GELUs; no exp, log or division), evaluated by
  Horner's scheme in ``t**4`` on its even and odd coefficients
  (:meth:`_Vec.poly2`: fewer operations than Estrin's scheme, and the
  operation count is what these forms are bound by);
* float64 arrays: the forms above, eight lanes a vector; float32 arrays:
  sigmoid, silu, tanh, softplus (``c = 1``) and the tanh GELU in sixteen
  float32 lanes, with ``exp`` and the sums that lose precision (``1 +- e``,
  ``t + log1p``, the GELU's ``2 u``) in two float32 parts and each quotient's
  residual corrected (within 0.7 ulp of the exact value, for ``|t| <= 64``;
  ``t >= -9`` for the GELU), gelu and softplus (``c != 1``) in two float64
  halves.

Each vector loop returns the span of the vectors holding an element outside
its domain; :func:`phi_fast` recomputes those elements with ``smooth_phi``.
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_EVEN, Decimal, localcontext

import numpy as np
from llvmlite import binding as llvm_binding
from llvmlite import ir
from numba.core import cgutils, types
from numba.core import config as numba_config
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
def _horner(c, y):
    """``sum_k c[k] y**k`` (an array ``c``) by Horner's scheme."""
    acc = c[c.shape[0] - 1]
    for k in range(c.shape[0] - 2, -1, -1):
        acc = fma(acc, y, c[k])
    return acc


@njit(inline="always")
def _half_t_plus_even(t, c0, c0_lo, even, odd):
    """``t / 2 + t**2 (c0 + s R(s))``, ``s = t**2``, ``R``'s coefficients split into ``even``
    and ``odd`` (:func:`_v_half_t_plus_even`, the same operations)."""
    sh, sl = two_prod(t, t)
    y = sh * sh
    r = fma(_horner(odd, y), sh, _horner(even, y))
    q = fma(sh, r, c0)
    qerr = fma(sh, r, c0 - q) + c0_lo  # c0 + sh r = q + qerr
    h = fma(sh, q, t * 0.5)
    return h + fma(sh, qerr, sl * q)


@njit(inline="always")
def gelu_fast(t, short=False):
    """``t Phi(t)`` for ``-1 <= t <= 2``: ``t / 2 + t**2 E(t**2)``, ``E(s)`` a polynomial of
    ``erf(t / sqrt(2)) / (2 t)`` (a short one for ``t**2 <= 1``, a longer one beyond),
    evaluated as by the vector form (``s`` exact as ``sh + sl``, ``E``'s last step and the
    sum with their rounding errors: within about an ulp where ``t / 2`` and ``t**2 E``
    cancel); with ``short`` (a float32 result) shorter polynomials, rounded as they come.
    """
    s = t * t
    if short:
        q = _horner(_GELU_F32_COEFS if s <= 1.0 else _GELU_MID_F32_COEFS, s)
        return fma(s, q, t * 0.5)
    if s <= 1.0:
        return _half_t_plus_even(t, _GELU_POLY[0], _GELU_POLY_LO, _GELU_EVEN, _GELU_ODD)
    return _half_t_plus_even(t, _GELU_MID_POLY[0], _GELU_MID_POLY_LO, _GELU_MID_EVEN, _GELU_MID_ODD)


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
        ok = (t >= lo) & (t <= hi)  # NaN fails
        first = min(first, n if ok else j)
        last = max(last, -1 if ok else j)
        t = t if ok else 0.0
        out[j] = like(z[j], gelu_fast(t, short))
    return first, last


# --------------------------------------------------------------------------
# explicit 512-bit vector loops (AVX-512)


def target_has(feature: str) -> bool:
    """Whether the code Numba emits may use the CPU ``feature`` (e.g. ``"avx512f"``).

    The host's features, or those of ``NUMBA_CPU_FEATURES`` where it is set
    (a comma-separated list of ``+name`` and ``-name``; the last mention
    counts): a cache built for other machines must not hold instructions
    they lack, and LLVM aborts the process on an intrinsic its target does
    not have.
    """
    wanted = numba_config.CPU_FEATURES
    if wanted is None:
        return bool(llvm_binding.get_host_cpu_features().get(feature, False))
    state = False
    for flag in str(wanted).split(","):
        flag = flag.strip()
        if flag[1:] == feature and flag[:1] in "+-":
            state = flag[0] == "+"
    return state


#: whether the target has the AVX-512 instructions the loops use (``vpermi2pd`` on zmm)
AVAILABLE = target_has("avx512f")

LANES = 8
_F64 = ir.DoubleType()
_I64 = ir.IntType(64)
_I32 = ir.IntType(32)
_VF = ir.VectorType(_F64, LANES)
_VI = ir.VectorType(_I64, LANES)

_LOG2E_16 = 16.0 / math.log(2.0)
_LN2_16_HI = 6.93147180369123816490e-01 / 16.0  # exact multiples for |16 k + j| < 2**21
_LN2_16_LO = 1.90821492927058770002e-10 / 16.0


def _exp2_table(bits):
    """``(table, tail)``: ``2**(j/16)``, ``j = 0 .. 15``, rounded to nearest with a
    ``bits``-bit significand (53: float64, 24: float32), and each entry's relative
    rounding error ``(2**(j/16) - table[j]) / table[j]`` as a float64, both from 60-digit
    decimal arithmetic (``float`` of a decimal rounds correctly)."""
    with localcontext() as ctx:
        ctx.prec = 60
        scale = Decimal(2) ** (bits - 1)  # 2**(j/16) lies in [1, 2)
        exact = [Decimal(2) ** (Decimal(j) / 16) for j in range(16)]
        rounded = [(x * scale).to_integral_value(ROUND_HALF_EVEN) / scale for x in exact]
        return (
            tuple(float(q) for q in rounded),
            tuple(float((x - q) / q) for x, q in zip(exact, rounded)),
        )


#: ``2**(j/16)`` rounded to float64, ``j = 0 .. 15``, and the table's relative rounding errors
_EXP2_TABLE, _EXP2_TAIL = _exp2_table(53)
#: ``(expm1(r) - r) / r**2 ~ sum_k c[k] r**k`` for ``|r| <= ln(2) / 32``: the Taylor
#: coefficients ``1 / (k + 2)!`` to ``k = 2``, ``c[3] .. c[5]`` fitted to the rest of the
#: series (least squares on Chebyshev nodes; error below 0.001 ulp of ``exp``)
_EXPM1_POLY = (
    0.5, 1.0 / 6.0, 1.0 / 24.0, 0.008333333332929184, 0.001388899694643114,
    0.00019841470158079872,
)  # fmt: skip
#: the Taylor coefficients to ``k = 2`` (``r**5 / 5!``: within 4e-11 of ``exp``, float32)
_EXPM1_SHORT = (0.5, 1.0 / 6.0, 1.0 / 24.0)


class _Vec:
    """Emits vector arithmetic with an IR builder: ``<8 x double>``, or ``<16 x float>`` with
    ``single``; the arithmetic and comparisons carry the fast-math ``flags`` (none by
    default)."""

    def __init__(self, builder, single=False, flags=()):
        self.b, self.single, self.flags = builder, single, tuple(flags)
        self.lanes = 16 if single else LANES
        self.el = ir.FloatType() if single else _F64
        self.ity = ir.IntType(32 if single else 64)
        self.vf = ir.VectorType(self.el, self.lanes)
        self.vi = ir.VectorType(self.ity, self.lanes)
        self.tag = f"v{self.lanes}f{32 if single else 64}"
        self.suffix = "ps" if single else "pd"

    def const(self, x):
        return ir.Constant(self.vf, [ir.Constant(self.el, float(x))] * self.lanes)

    def vec(self, x):
        return self.const(x) if isinstance(x, (int, float)) else x

    def call(self, name, ret, *args):
        fn = cgutils.get_or_insert_function(
            self.b.module, ir.FunctionType(ret, [a.type for a in args]), name
        )
        return self.b.call(fn, list(args))

    def fma(self, a, b, c):
        """``a b + c`` rounded once."""
        a, b, c = self.vec(a), self.vec(b), self.vec(c)
        return self.call(f"llvm.fma.{self.tag}", self.vf, a, b, c)

    def add(self, a, b):
        return self.b.fadd(self.vec(a), self.vec(b), flags=self.flags)

    def sub(self, a, b):
        return self.b.fsub(self.vec(a), self.vec(b), flags=self.flags)

    def mul(self, a, b):
        return self.b.fmul(self.vec(a), self.vec(b), flags=self.flags)

    def div(self, a, b):
        return self.b.fdiv(self.vec(a), self.vec(b), flags=self.flags)

    def neg(self, a):
        return self.b.fneg(a)

    def abs(self, a):
        return self.call(f"llvm.fabs.{self.tag}", self.vf, a)

    def cmp(self, op, a, b):
        """``a op b`` lanewise (ordered: false where either is NaN)."""
        return self.b.fcmp_ordered(op, self.vec(a), self.vec(b), flags=self.flags)

    def sel(self, m, a, b):
        return self.b.select(m, self.vec(a), self.vec(b))

    def min(self, a, b):
        """``b if a > b else a``."""
        return self.sel(self.cmp(">", a, b), b, a)

    def bits(self, a):
        return self.b.bitcast(a, self.vi)

    def table(self, index_bits, values):
        """``values[index_bits & 15]`` per lane (16 constants: one permute)."""
        if self.single:
            tab = ir.Constant(self.vf, [ir.Constant(self.el, v) for v in values])
            return self.call("llvm.x86.avx512.permvar.sf.512", self.vf, tab, index_bits)
        lo = ir.Constant(self.vf, [ir.Constant(self.el, v) for v in values[:8]])
        hi = ir.Constant(self.vf, [ir.Constant(self.el, v) for v in values[8:]])
        return self.call("llvm.x86.avx512.vpermi2var.pd.512", self.vf, lo, index_bits, hi)

    def scale(self, a, e):
        """``a 2**floor(e)`` (``vscalefpd``; exact where the result is normal)."""
        mask = ir.Constant(ir.IntType(self.lanes), -1)
        args = (a, e, a, mask, ir.Constant(_I32, 4))
        return self.call(f"llvm.x86.avx512.mask.scalef.{self.suffix}.512", self.vf, *args)

    def rcp(self, a):
        """``1 / a`` to 14 bits (``vrcp14ps``; for corrections only)."""
        mask = ir.Constant(ir.IntType(self.lanes), -1)
        return self.call(f"llvm.x86.avx512.rcp14.{self.suffix}.512", self.vf, a, a, mask)

    def two_prod(self, a, b):
        """``(p, e)``: ``p = fl(a b)``, ``p + e = a b`` exactly."""
        p = self.mul(a, b)
        return p, self.fma(a, b, self.neg(p))

    def poly2(self, x, x2, c):
        """``sum_k c[k] x**k`` by Horner's scheme in ``x2 = x**2`` on the even and the odd
        coefficients, joined by one fused multiply-add: ``len(c) - 1`` operations after
        ``x2`` (Estrin's scheme takes about ``log2(len(c))`` more), two chains of half the
        length for the processor to overlap."""

        def horner(cs):
            acc = self.const(cs[-1])
            for ck in cs[-2::-1]:
                acc = self.fma(acc, x2, ck)
            return acc

        if len(c) == 1:
            return self.const(c[0])
        return self.fma(horner(c[1::2]), x, horner(c[0::2]))

    def poly(self, x, x2, c):
        """``sum_k c[k] x**k`` by Estrin's scheme (``x2 = x**2``)."""
        pairs = [
            self.fma(c[i + 1], x, c[i]) if i + 1 < len(c) else self.const(c[i])
            for i in range(0, len(c), 2)
        ]
        p = x2
        while len(pairs) > 1:
            pairs = [
                self.fma(pairs[i + 1], p, pairs[i]) if i + 1 < len(pairs) else pairs[i]
                for i in range(0, len(pairs), 2)
            ]
            p = self.mul(p, p) if len(pairs) > 1 else p
        return pairs[0]


def _v_exp_parts(v, x, short):
    """``(t, p, e)`` with ``exp(x) = t (1 + p) 2**floor(e)`` for ``-708 <= x <= 709`` (``t``
    a table value; ``p`` also carries its rounding error unless ``short``)."""
    y = v.fma(x, _LOG2E_16, _ROUND)  # _ROUND + 16 k + j: 16 k + j in the low bits
    n = v.sub(y, _ROUND)
    r = v.fma(v.neg(n), _LN2_16_HI, x)  # exact
    r = v.fma(v.neg(n), _LN2_16_LO, r)
    r2 = v.mul(r, r)
    q = v.poly(r, r2, _EXPM1_SHORT if short else _EXPM1_POLY)
    p = v.fma(r2, q, r)
    yb = v.bits(y)
    t = v.table(yb, _EXP2_TABLE)
    if not short:
        p = v.add(p, v.table(yb, _EXP2_TAIL))
    return t, p, v.mul(n, 0.0625)  # floor((16 k + j) / 16) = k


def _v_exp(v, x, short):
    """``exp(x)`` for ``-708 <= x <= 709``."""
    t, p, e = _v_exp_parts(v, x, short)
    return v.scale(v.fma(t, p, t), e)


def _v_sigmoid_of(v, e, pos):
    """``sigma(u)`` from ``e = exp(-|u|)`` and ``pos = u >= 0``: ``(1 or e) / (1 + e)``."""
    return v.div(v.sel(pos, 1.0, e), v.add(1.0, e))


def _v_sigmoid_far(v, t, short):
    return _v_sigmoid_of(v, _v_exp(v, v.neg(v.abs(t)), short), v.cmp(">=", t, 0.0))


def _v_sigmoid(v, t, short):
    """``sigma(t)``; in float64 lanes by :func:`_v_sigmoid_near` where every lane has
    ``|t| <= 1``."""
    if short:
        return _v_sigmoid_far(v, t, short)
    return _v_near_or_far(v, t, _v_sigmoid_near, lambda v, t: _v_sigmoid_far(v, t, False))


def _v_silu(v, t, short):
    """``t sigma(t)``; in float64 lanes by :func:`_v_sigmoid_near` where every lane has
    ``|t| <= 1``."""
    if short:
        return v.mul(t, _v_sigmoid_far(v, t, short))
    return _v_near_or_far(
        v,
        t,
        lambda v, t: v.mul(t, _v_sigmoid_near(v, t)),
        lambda v, t: v.mul(t, _v_sigmoid_far(v, t, False)),
    )


#: ``(sigma(t) - 1/2) / t = tanh(t / 2) / (2 t) ~ sum_j c[j] s**j``, ``s = t**2 <= 1``:
#: interpolation at the 11 Chebyshev nodes of ``[0, 1]`` in 50-digit arithmetic, rounded
#: (error below 1e-18 of ``sigma``)
_SIGMOID_POLY = (
    0.25, -0.020833333333333176, 0.0020833333333270024, -0.00021081349196433718,
    2.135692160043526e-05, -2.1638721030885017e-06, 2.192350159920079e-07,
    -2.2193159753943712e-08, 2.2246522522001487e-09, -2.075332847254026e-10,
    1.3502838411119418e-11,
)  # fmt: skip
#: ``(tanh(t) / t - 1) / s ~ sum_j c[j] s**j``, ``s = t**2 <= 1``: as :data:`_SIGMOID_POLY`,
#: 15 nodes (``1 + s R(s)`` within 7e-17 of ``tanh(t) / t``, relative)
_TANH_R_POLY = (
    -0.33333333333333326, 0.13333333333330813, -0.05396825396636394, 0.02186948847999737,
    -0.00886323465252544, 0.0035921197425441464, -0.0014557829138450453,
    0.0005898067307783174, -0.00023845344045191568, 9.540778823530722e-05,
    -3.679721325874468e-05, 1.2889423623414145e-05, -3.6986096809521603e-06,
    7.386981472384082e-07, -7.41114097654018e-08,
)  # fmt: skip


def _v_half_t_plus_even(v, t, c, c0_lo=0.0):
    """``t / 2 + t**2 Q(t**2)`` for ``|t| <= 1`` with ``|t**2 Q| <= |t| / 2`` (float64 lanes;
    ``Q`` the polynomial ``c``): ``s = t**2`` exact as ``sh + sl``, ``Q``'s last step with its
    rounding error ``qerr`` (``c[0] - q`` is exact, ``Q`` being within a factor 2 of
    ``c[0]``); ``h = fl(sh q + t / 2)`` rounded once, then ``sh qerr + sl q`` added: within
    about an ulp where the sum cancels.  ``c0_lo``: the rounding error of ``c[0]``, added
    to ``qerr``."""
    sh, sl = v.two_prod(t, t)
    r = v.poly2(sh, v.mul(sh, sh), c[1:])
    q = v.fma(sh, r, c[0])
    qerr = v.fma(sh, r, v.sub(c[0], q))  # c[0] + sh r = q + qerr
    if c0_lo:
        qerr = v.add(qerr, c0_lo)
    h = v.fma(sh, q, v.mul(t, 0.5))
    return v.add(h, v.fma(sh, qerr, v.mul(sl, q)))


def _v_sigmoid_near(v, t):
    """``1/2 + t Q(t**2)`` for ``|t| <= 1`` (:data:`_SIGMOID_POLY`; ``|t Q| <= 0.24``): no
    exp or division; within 1.4 ulp (silu, ``t`` times it, within 2.1)."""
    s = v.mul(t, t)
    return v.fma(t, v.poly2(s, v.mul(s, s), _SIGMOID_POLY), 0.5)


def _v_tanh_near(v, t):
    """``t + t s R(s)`` for ``|t| <= 1``, ``s = t**2`` (:data:`_TANH_R_POLY`; the leading
    ``t`` exact, added by the last fused multiply-add): within 1.8 ulp."""
    s = v.mul(t, t)
    return v.fma(v.mul(t, s), v.poly2(s, v.mul(s, s), _TANH_R_POLY), t)


def _v_tanh(v, t, short):
    """``tanh(t)``; in float64 lanes by :func:`_v_tanh_near` where every lane has
    ``|t| <= 1``."""
    if short:
        return _v_tanh_far(v, t, short)
    return _v_near_or_far(v, t, _v_tanh_near, lambda v, t: _v_tanh_far(v, t, False))


def _v_tanh_far(v, t, short):
    """``-expm1(-2|t|) / (2 + expm1(-2|t|))`` with the sign of ``t``."""
    a = v.min(v.abs(t), 20.0)
    t2, p, e = _v_exp_parts(v, v.mul(-2.0, a), short)
    s = v.scale(t2, e)
    m = v.fma(s, p, v.sub(s, 1.0))  # s - 1 exact (s in [1/2, 1] or m = -1 to rounding)
    r = v.div(v.neg(m), v.add(2.0, m))
    return v.sel(v.cmp("<", t, 0.0), v.neg(r), r)


def _v_log1p_unit(v, e, short):
    """``log(1 + e)`` for ``0 <= e <= 1`` (:func:`fastsuper.core.vecmath.log1p_unit`)."""
    big = v.cmp(">", e, 0.5)
    w = v.sel(big, v.mul(v.sub(e, 1.0), 0.5), e)  # 1 + e = 2 (1 + w)
    s = v.div(w, v.add(2.0, w))
    y = v.mul(s, s)
    y2 = v.mul(y, y)
    c = tuple(float(x) for x in (_ATANH_SERIES[1:6] if short else _ATANH_POLY))
    q = v.poly(y, y2, c)
    s = v.mul(2.0, s)
    r = v.fma(v.mul(s, y), q, s)
    return v.sel(big, v.add(_LN2, v.add(_LN2_TAIL, r)), r)


def _v_softplus(v, t, c, short):
    """``log(1 + exp(c t)) / c`` (``c`` a vector; :func:`fastsuper.core.vecmath.softplus_fast`)."""
    if short:
        uh, ul = v.mul(c, t), v.const(0.0)
    else:
        uh, ul = v.two_prod(c, t)
    pos = v.cmp(">=", uh, 0.0)
    e = _v_exp(v, v.neg(v.abs(uh)), short)
    e = v.fma(e, v.sel(pos, v.neg(ul), ul), e)
    q = v.div(_v_log1p_unit(v, e, short), c)
    return v.sel(pos, v.add(t, q), q)


def _v_near_or_far(v, t, near, far):
    """``near(v, t)`` if every lane has ``|t| <= 1``, else ``far(v, t)``: a branch on the
    whole vector (at the sizes of superposition models nearly every vector is near).  In
    float64 lanes the test is ``t**2 <= 1`` (the same lanes, NaN failing): the near forms
    start with that product, which LLVM then computes once."""
    near_lanes = v.cmp("<=", v.abs(t) if v.single else v.mul(t, t), 1.0)
    every = v.b.bitcast(near_lanes, ir.IntType(v.lanes))
    every = v.b.icmp_unsigned("==", every, ir.Constant(every.type, -1))
    with v.b.if_else(every, likely=True) as (then, otherwise):
        with then:
            f_near = near(v, t)
            b_near = v.b.block
        with otherwise:
            f_far = far(v, t)
            b_far = v.b.block
    f = v.b.phi(v.vf)
    f.add_incoming(f_near, b_near)
    f.add_incoming(f_far, b_far)
    return f


def _v_softplus_unit(v, t, short):
    """:func:`_v_softplus` for ``c = 1``; in float64 lanes by :func:`_v_softplus_near` where
    every lane has ``|t| <= 1``."""
    if short:
        return _v_softplus_far(v, t, short)
    return _v_near_or_far(v, t, _v_softplus_near, lambda v, t: _v_softplus_far(v, t, False))


def _v_softplus_far(v, t, short):
    """``max(t, 0) + log1p(exp(-|t|))``."""
    lg = _v_log1p_unit(v, _v_exp(v, v.neg(v.abs(t)), short), short)
    return v.sel(v.cmp(">=", t, 0.0), v.add(t, lg), lg)


#: ``log(cosh(sqrt(s) / 2)) / s ~ sum_k c[k] s**k`` for ``0 <= s <= 1``: interpolation at
#: the 11 Chebyshev nodes of ``[0, 1]`` in 50-digit arithmetic, rounded (error below
#: 5e-19 of ``log cosh``, without the rounding of the evaluation)
_LOGCOSH_POLY = (
    0.125, -0.005208333333333326, 0.0003472222222219475, -2.6351686503635357e-05,
    2.1356922052535417e-06, -1.8032282563560412e-07, 1.5659955891010334e-08,
    -1.3874796729991838e-09, 1.239170676784353e-10, -1.0521892302005291e-11,
    6.415276865839106e-13,
)  # fmt: skip


def _v_softplus_near(v, t):
    """``log(1 + exp(t)) = ln 2 + t / 2 + log cosh(t / 2)`` for ``|t| <= 1`` (float64 lanes):
    ``log cosh`` by a polynomial in ``t**2`` (no exp, log or division); ``ln 2 + t / 2`` by
    Fast2Sum (``|t / 2| <= ln 2``), its error and ln 2's tail added to ``log cosh``: within
    about 1.2 ulp."""
    s = v.mul(t, t)
    s2 = v.mul(s, s)
    g = v.mul(s, v.poly2(s, s2, _LOGCOSH_POLY))
    a = v.mul(t, 0.5)
    h = v.add(_LN2, a)
    err = v.sub(a, v.sub(h, _LN2))  # exact
    return v.add(h, v.add(err, v.add(_LN2_TAIL, g)))


def _v_gelu_tanh(v, t, short):
    """:func:`_v_gelu_tanh_far`; in float64 lanes by :func:`_v_gelu_tanh_near` where every
    lane has ``|t| <= 1``."""
    if short:
        return _v_gelu_tanh_far(v, t, short)
    return _v_near_or_far(v, t, _v_gelu_tanh_near, lambda v, t: _v_gelu_tanh_far(v, t, False))


#: ``tanh(k (t + c t**3)) / (2 t) ~ sum_j c[j] s**j``, ``s = t**2 <= 1`` (``k``, ``c`` the
#: tanh GELU's float64 constants): interpolation at the 12 Chebyshev nodes of ``[0, 1]`` in
#: 50-digit arithmetic, rounded (error below 3e-18 of the even part ``t tanh(u) / 2``)
_GELU_TANH_POLY = (
    0.3989422804014327, -0.06681947717750468, 0.010201557106271401, -0.001243028954404641,
    0.0001177832560924082, -6.998011870182965e-06, -2.6578700003049914e-07,
    1.6924223841910586e-07, -3.387724222667951e-08, 4.916591973140873e-09,
    -5.423257056705699e-10, 3.599728256433719e-11,
)  # fmt: skip


def _v_gelu_tanh_near(v, t):
    """``t sigma(2 u) = t / 2 + s Q(s)`` for ``|t| <= 1`` (float64 lanes, ``s = t**2``, ``Q``
    the polynomial :data:`_GELU_TANH_POLY`, :func:`_v_half_t_plus_even`): no exp or
    division."""
    return _v_half_t_plus_even(v, t, _GELU_TANH_POLY)


def _v_gelu_tanh_far(v, t, short):
    """``t sigma(2 u)``, ``2 u = 2 k (t + c t**3)`` in double-double (float64 lanes; ``t``
    itself above 10, where ``sigma(2 u)`` rounds to 1)."""
    big = v.cmp(">", t, 10.0)
    tc = v.sel(big, 10.0, t)
    sh, sl = v.two_prod(tc, tc)
    w = v.fma(_GELU_C, sh, 1.0)
    wl = v.fma(_GELU_C, sl, v.fma(_GELU_C, sh, v.sub(1.0, w)))
    ph, pl = v.two_prod(tc, w)
    pl = v.fma(tc, wl, pl)
    uh, ul = v.two_prod(ph, 2.0 * _GELU_K)  # 2 k exact
    ul = v.fma(pl, 2.0 * _GELU_K, ul)
    pos = v.cmp(">=", uh, 0.0)
    e = _v_exp(v, v.neg(v.abs(uh)), short)
    e = v.fma(e, v.sel(pos, v.neg(ul), ul), e)
    s = _v_sigmoid_of(v, e, pos)
    return v.sel(big, t, v.mul(tc, s))


#: ``erf(t / sqrt(2)) / (2 t) ~ sum_j c[j] s**j``, ``s = t**2 <= 1``: interpolation at the
#: 11 Chebyshev nodes of ``[0, 1]`` in 50-digit arithmetic, rounded; ``c[0]``'s rounding
#: error beside it (together within 6e-19 of the function)
_GELU_POLY = (
    0.3989422804014327, -0.06649038006690543, 0.009973557010035022, -0.0011873282154680343,
    0.00011543468751655941, -9.444655793103845e-06, 6.659679879655231e-07,
    -4.1224107514160815e-08, 2.2704137585676e-09, -1.106432828275589e-10,
    4.0743269774266276e-12,
)  # fmt: skip
_GELU_POLY_LO = -2.500531462550642e-17


def _horner_chains(c):
    """``(even, odd)``: the Horner chains of ``c[1:]`` as :meth:`_Vec.poly2` splits them, as
    arrays (the scalar form, :func:`gelu_fast`)."""
    return np.array(c[1::2]), np.array(c[2::2])


_GELU_EVEN, _GELU_ODD = _horner_chains(_GELU_POLY)
#: the same on ``s <= 4`` (``-1 <= t <= 2``, the vectors with a lane beyond ``|t| = 1``), 16
#: nodes (within 5e-18 of the function; float64 coefficients of ``s**k`` up to ``4**k`` limit it)
_GELU_MID_POLY = (
    0.3989422804014327, -0.06649038006690544, 0.009973557010035796, -0.0011873282154802856,
    0.00011543468761540825, -9.444656257502906e-06, 6.659693481103106e-07,
    -4.122666986007059e-08, 2.273526089241941e-09, -1.1300934258260476e-10,
    5.111322682005792e-12, -2.117916682024901e-13, 8.03614914914401e-15,
    -2.72000576988937e-16, 7.415327339933253e-18, -1.1911630837040208e-19,
)  # fmt: skip
_GELU_MID_POLY_LO = -2.4930636217624244e-17
_GELU_MID_EVEN, _GELU_MID_ODD = _horner_chains(_GELU_MID_POLY)
#: ``erf(t / sqrt(2)) / (2 t) ~ sum_j c[j] s**j``, ``s = t**2 <= 1``, for float32 results
#: (interpolation at 7 Chebyshev nodes in 40-digit arithmetic; error below 3e-11 of gelu)
_GELU_POLY_F32 = (
    0.3989422803972762, -0.06649037965933821, 0.009973550469794461, -0.0011872887440360373,
    0.0001153207457264319, -9.274401262223465e-06, 5.372643164691128e-07,
)  # fmt: skip
_GELU_F32_COEFS = np.array(_GELU_POLY_F32)
#: the float32 results' polynomial on ``s <= 4`` (10 nodes in 50-digit arithmetic: within
#: 5e-12 of the function)
_GELU_MID_POLY_F32 = (
    0.3989422803968788, -0.06649037983901085, 0.009973555121502185, -0.001187322121019266,
    0.0001154246507701276, -9.435097239107229e-06, 6.603689224690475e-07,
    -3.915946119217738e-08, 1.796143752590289e-09, -4.676366091420556e-11,
)  # fmt: skip
_GELU_MID_F32_COEFS = np.array(_GELU_MID_POLY_F32)


def _v_gelu_near_short(v, t):
    """``t / 2 + t**2 E(t**2)`` for a float32 result, ``t**2 <= 1`` (:data:`_GELU_POLY_F32`)."""
    return v.fma(*_even_poly(v, t, _GELU_POLY_F32), v.mul(t, 0.5))


def _v_gelu(v, t, short):
    """``t Phi(t)`` for ``-1 <= t <= 2`` (:func:`fastsuper.core.vecmath.gelu_fast`):
    ``t / 2 + t**2 E(t**2)`` by :func:`_v_half_t_plus_even`, ``E`` the polynomial
    :data:`_GELU_POLY` where every lane has ``|t| <= 1``, else :data:`_GELU_MID_POLY`; with
    ``short`` (float32 results) the shorter :data:`_GELU_POLY_F32` and
    :data:`_GELU_MID_POLY_F32`, rounded as they come."""
    if short:
        return _v_near_or_far(
            v,
            t,
            _v_gelu_near_short,
            lambda v, t: v.fma(*_even_poly(v, t, _GELU_MID_POLY_F32), v.mul(t, 0.5)),
        )
    return _v_near_or_far(v, t, _v_gelu_near, _v_gelu_mid)


def _v_gelu_near(v, t):
    return _v_half_t_plus_even(v, t, _GELU_POLY, _GELU_POLY_LO)


def _v_gelu_mid(v, t):
    return _v_half_t_plus_even(v, t, _GELU_MID_POLY, _GELU_MID_POLY_LO)


#: float32 lanes (:func:`_w_exp_parts`): ``ln(2) / 16`` in two parts (``16 k + j`` times
#: the first exact for ``|16 k + j| < 2**11``), the table and its relative rounding errors
_LN2_16_HI_F32 = 0.0433197021484375
_LN2_16_LO_F32 = 1.9966364561696537e-06
_EXP2_TABLE_F32, _EXP2_TAIL_F32 = _exp2_table(24)
_ROUND_F32 = 12582912.0  # 1.5 * 2**23
#: the float32 forms' domain ``|t| <= 64``: the residuals of their quotients normal float32
_HI_F32 = 64.0


def _w_exp_pair(v, x, xl=0.0):
    """``(eh, el)``, ``exp(x + xl) = eh + el`` to about ``2**-24`` ulps of ``eh`` in float32
    lanes for ``-87 <= x <= 0`` (``xl`` a low part, ``|xl| <= ulp(x)``): as
    :func:`_v_exp_parts` (the polynomial of degree 4, the table's rounding errors beside it),
    ``exp(x + xl) = s (1 + rh + pl)`` with ``rh`` the exact first part of ``r`` and ``pl``
    the rest, then ``eh = fl(s (1 + rh + pl))`` and its error."""
    y = v.fma(x, _LOG2E_16, _ROUND_F32)
    n = v.sub(y, _ROUND_F32)
    rh = v.fma(v.neg(n), _LN2_16_HI_F32, x)  # exact
    rl = v.fma(n, -_LN2_16_LO_F32, xl)
    r = v.add(rh, rl)
    r2 = v.mul(r, r)
    yb = v.bits(y)
    pl = v.fma(r2, v.poly(r, r2, _EXPM1_SHORT), v.add(rl, v.table(yb, _EXP2_TAIL_F32)))
    s = v.scale(v.table(yb, _EXP2_TABLE_F32), v.mul(n, 0.0625))
    eh = v.fma(s, v.add(rh, pl), s)
    # s - eh exact (eh within 3% of s); s rh + s - eh rounded once is about s pl
    return eh, v.fma(s, pl, v.fma(s, rh, v.sub(s, eh)))


def _w_sigmoid_parts(v, t, tl=None):
    """``(q, d)``: ``sigma(t + tl) = q + d`` to about ``2**-30`` relative, ``|d|`` about an
    ulp of ``q`` (float32 lanes, ``|t| <= 64``; ``tl`` a low part or None): ``(1 or e) /
    (1 + e)``, ``e = exp(-|t + tl|)`` in two parts, the quotient by a division and its
    residual's correction."""
    pos = v.cmp(">=", t, 0.0)
    xl = 0.0 if tl is None else v.sel(pos, v.neg(tl), tl)
    eh, el = _w_exp_pair(v, v.neg(v.abs(t)), xl)
    dh = v.add(1.0, eh)
    dl = v.add(v.sub(eh, v.sub(dh, 1.0)), el)  # 1 + e = dh + dl (eh <= 1: exact error)
    nh = v.sel(pos, 1.0, eh)
    q = v.div(nh, dh)
    r = v.add(v.fma(v.neg(q), dh, nh), v.sel(pos, 0.0, el))  # the first term exact
    r = v.fma(v.neg(q), dl, r)
    return q, v.mul(r, v.rcp(dh))


def _w_sigmoid(v, t):
    q, d = _w_sigmoid_parts(v, t)
    return v.add(q, d)


def _w_silu(v, t):
    q, d = _w_sigmoid_parts(v, t)
    return v.fma(t, q, v.mul(t, d))


def _w_tanh(v, t):
    """``tanh(t)`` in float32 lanes (``|t| <= 64``): ``(1 - e) / (1 + e)``, ``e = exp(-2|t|)``
    (``|t|`` at most 10: ``tanh(10)`` is 1 in float32), numerator and denominator in two parts
    each (the numerator's renormalised: its first part is 0 for small ``t``), the quotient
    corrected as in :func:`_w_sigmoid_parts`."""
    eh, el = _w_exp_pair(v, v.mul(-2.0, v.min(v.abs(t), 10.0)))
    nh = v.sub(1.0, eh)
    nl = v.sub(v.sub(v.sub(1.0, nh), eh), el)  # 1 - e = nh + nl (eh <= 1: exact error)
    n1 = v.add(nh, nl)
    nl = v.sub(nl, v.sub(n1, nh))  # exact: nh is 0 or at least the size of nl
    dh = v.add(1.0, eh)
    dl = v.add(v.sub(eh, v.sub(dh, 1.0)), el)  # 1 + e = dh + dl
    q = v.div(n1, dh)
    r = v.add(v.fma(v.neg(q), dh, n1), nl)
    r = v.fma(v.neg(q), dl, r)
    f = v.fma(r, v.rcp(dh), q)
    return v.sel(v.cmp("<", t, 0.0), v.neg(f), f)


def _w_softplus_unit(v, t):
    """``log(1 + exp(t))`` in float32 lanes (``|t| <= 64``): ``max(t, 0) + log1p(e)``,
    ``e = exp(-|t|)`` in two parts, ``log1p(e) = 2 (s + s y Q(y))``, ``s = e / (2 + e)``
    (``y = s**2 <= 1/9``; ``Q`` the series to ``y**6``) with the quotient corrected as in
    :func:`_w_sigmoid_parts`; for ``t >= 0`` the sum with ``t`` and its rounding error."""
    eh, el = _w_exp_pair(v, v.neg(v.abs(t)))
    dh = v.add(2.0, eh)
    dl = v.add(v.sub(eh, v.sub(dh, 2.0)), el)  # 2 + e = dh + dl (eh <= 2: exact error)
    q = v.div(eh, dh)
    r = v.add(v.fma(v.neg(q), dh, eh), el)  # the first term exact
    sl = v.mul(v.fma(v.neg(q), dl, r), v.rcp(dh))  # s = q + sl
    y = v.fma(v.add(q, q), sl, v.mul(q, q))  # s**2
    tail = v.fma(v.mul(q, y), v.poly(y, v.mul(y, y), _ATANH_SERIES_F32), sl)
    lg = v.mul(2.0, v.add(q, tail))  # log1p(e), for t < 0
    # t >= 0: t + 2 q + 2 tail, the first sum's rounding error by Knuth's two-sum
    a = v.mul(2.0, q)
    h = v.add(t, a)
    ta = v.sub(h, a)
    err = v.add(v.sub(t, ta), v.sub(a, v.sub(h, ta)))
    return v.sel(v.cmp(">=", t, 0.0), v.add(h, v.fma(2.0, tail, err)), lg)


#: ``1 / (2 k + 3)``, ``k = 0 .. 6``: ``(atanh(s) / s - 1) / s**2`` for ``s**2 <= 1/9`` to
#: about ``2**-29`` relative in ``log1p``
_ATANH_SERIES_F32 = tuple(1.0 / (2 * k + 3) for k in range(7))


def _w_gelu_tanh(v, t):
    """``t sigma(2 u)`` of the tanh GELU in float32 lanes (``t >= -9``; ``t`` itself above
    10): ``2 u = 2 k t (1 + c t**2)`` in two parts (``k``, ``c`` the float64 constants, each
    in two float32 parts; the products exact by FMA), :func:`_w_sigmoid_parts` of it, then
    ``t (q + d)`` rounded once."""
    big = v.cmp(">", t, 10.0)
    tc = v.sel(big, 10.0, t)
    sh, sl = v.two_prod(tc, tc)
    wh = v.fma(_GELU_C_HI_F32, sh, 1.0)
    wl = v.fma(_GELU_C_HI_F32, sl, v.fma(_GELU_C_HI_F32, sh, v.sub(1.0, wh)))  # 1 - wh exact
    wl = v.fma(_GELU_C_LO_F32, sh, wl)  # 1 + c t**2 = wh + wl
    ph, pl = v.two_prod(tc, wh)
    pl = v.fma(tc, wl, pl)
    uh, ul = v.two_prod(ph, _GELU_2K_HI_F32)
    ul = v.fma(ph, _GELU_2K_LO_F32, v.fma(pl, _GELU_2K_HI_F32, ul))
    q, d = _w_sigmoid_parts(v, uh, ul)
    return v.sel(big, t, v.fma(tc, q, v.mul(tc, d)))


#: ``2 k`` and ``c`` of the tanh GELU (the float64 constants) in two float32 parts each
_GELU_2K_HI_F32, _GELU_2K_LO_F32 = 1.5957691669464111, -4.534068054340423e-08
_GELU_C_HI_F32, _GELU_C_LO_F32 = 0.044714998453855515, 1.5461444347053543e-09

#: the float32 forms (16 lanes, domain ``|t| <= _HI_F32``, ``t >= _LO_GELU_TANH_F32`` for the
#: tanh GELU) where there is one
_EMITTERS_F32 = {
    SIGMOID: _w_sigmoid,
    SILU: _w_silu,
    TANH: _w_tanh,
    -SOFTPLUS: _w_softplus_unit,
    GELU_TANH: _w_gelu_tanh,
}
_LO_GELU_TANH_F32 = -9.0


#: the emitter of each activation's vector form (``c`` passed to softplus only)
_EMITTERS = {
    SIGMOID: lambda v, t, c, short: _v_sigmoid(v, t, short),
    SILU: lambda v, t, c, short: _v_silu(v, t, short),
    TANH: lambda v, t, c, short: _v_tanh(v, t, short),
    GELU_TANH: lambda v, t, c, short: _v_gelu_tanh(v, t, short),
    GELU: lambda v, t, c, short: _v_gelu(v, t, short),
    SOFTPLUS: lambda v, t, c, short: _v_softplus(v, t, c, short),
    -SOFTPLUS: lambda v, t, c, short: _v_softplus_unit(v, t, short),  # c = 1
}


def _phi_lanes(key, v, x, c, lo, hi, short):
    """``(ok, phi(x))`` of 8 float64 lanes: ``ok`` the lanes in the domain ``[lo, hi]``
    (``lo = -hi`` but for the GELUs; NaN fails); the others give any
    number (the caller recomputes them)."""
    if key == GELU_TANH:
        ok = v.cmp(">=", x, lo)
    elif key == GELU:
        ok = v.b.and_(v.cmp(">=", x, lo), v.cmp("<=", x, hi))
    else:
        ok = v.cmp("<=", v.abs(x), hi)
    return ok, _EMITTERS[key](v, x, c, short)


def _in_halves(v, x, fn):
    """``fn`` (float64 lanes, :class:`_Vec` ``v``) of the two halves of the ``<16 x float>``
    ``x``, rounded back to float32."""
    b = v.b
    halves = [list(range(LANES)), list(range(LANES, 2 * LANES))]
    fs = []
    for h in halves:
        xh = b.fpext(b.shuffle_vector(x, x, ir.Constant(ir.VectorType(_I32, LANES), h)), _VF)
        fs.append(b.fptrunc(fn(v, xh), ir.VectorType(ir.FloatType(), LANES)))
    return b.shuffle_vector(*fs, ir.Constant(ir.VectorType(_I32, 2 * LANES), halves[0] + halves[1]))


#: shorter polynomials of the near forms for float32 results (interpolation at Chebyshev
#: nodes of ``s = t**2`` in ``[0, 1]`` in 40-digit arithmetic, as the float64 ones): errors
#: below 5e-9 of the result, a small part of a float32 ulp
_SIGMOID_POLY_F32 = (
    0.24999999992013744, -0.020833327575137825, 0.002083265665362624, -0.00021052040847993974,
    2.0775216870703985e-05, -1.6142612633580005e-06,
)  # fmt: skip
_TANH_POLY_F32 = (
    0.9999999996302252, -0.3333332732799648, 0.1333317115678341, -0.053951196443121074,
    0.021778231247328757, -0.008582589511472276, 0.0030649014406912275,
    -0.0008332162391078529, 0.00011958780648308118,
)  # fmt: skip
_LOGCOSH_POLY_F32 = (
    0.12499999999408574, -0.005208332906984596, 0.00034721721660063915,
    -2.633004778118186e-05, 2.0929016400285267e-06, -1.4020471813776828e-07,
)  # fmt: skip
_GELU_TANH_POLY_F32 = (
    0.39894228041133645, -0.0668194781505441, 0.010201572878039756, -0.0012431260449200425,
    0.00011807336305247744, -7.45876924337894e-06, 1.2691276949397381e-07,
)  # fmt: skip


def _even_poly(v, t, c):
    """``(s, Q(s))``, ``s = t**2``, ``Q`` the polynomial ``c`` (float64 lanes)."""
    s = v.mul(t, t)
    return s, v.poly2(s, v.mul(s, s), c)


#: the near forms of the float32 results (``|t| <= 1``, float64 lanes, rounded once to
#: float32 by the caller: within 0.51 ulp of the exact value)
_NEAR_F32 = {
    SIGMOID: lambda v, t: v.fma(t, _even_poly(v, t, _SIGMOID_POLY_F32)[1], 0.5),
    SILU: lambda v, t: v.mul(t, v.fma(t, _even_poly(v, t, _SIGMOID_POLY_F32)[1], 0.5)),
    TANH: lambda v, t: v.mul(t, _even_poly(v, t, _TANH_POLY_F32)[1]),
    -SOFTPLUS: lambda v, t: v.add(_LN2, v.fma(*_even_poly(v, t, _LOGCOSH_POLY_F32), v.mul(t, 0.5))),
    GELU_TANH: lambda v, t: v.fma(*_even_poly(v, t, _GELU_TANH_POLY_F32), v.mul(t, 0.5)),
    GELU: _v_gelu_near_short,
}


def emit_vector(key, builder, x, c, lo, hi, flags=()):
    """``(ok, phi(x))`` of one vector of ``z`` (``<8 x double>`` or ``<16 x float>``).

    The IR of activation ``key`` (a code, ``-SOFTPLUS`` for softplus with ``c = 1``)
    emitted with ``builder``; ``c``, ``lo``, ``hi`` are ``<8 x double>`` splats of the
    parameter and of the domain (:func:`vector_domain`).  ``ok`` (``<8 x i1>`` or
    ``<16 x i1>``) marks the lanes in the domain; the others hold any number.  AVX-512
    only (:data:`AVAILABLE`); the function must allow 512-bit vectors
    (``"min-legal-vector-width"="512"``).  ``flags``: fast-math flags of the arithmetic
    (:class:`_Vec`); Numba's fast-math pass leaves instructions that have flags alone,
    so ``("nsz",)`` (the sign of a zero result may differ, nothing else) keeps the
    arithmetic exact as written inside a fast-math kernel.
    """
    v = _Vec(builder, flags=flags)
    if x.type.element == _F64:
        return _phi_lanes(key, v, x, c, lo, hi, False)
    if key in _EMITTERS_F32:  # float32 lanes
        w = _Vec(builder, True, flags)
        if key == GELU_TANH:
            ok = w.cmp(">=", x, _LO_GELU_TANH_F32)
        else:
            ok = w.cmp("<=", w.abs(x), _HI_F32)
        near = _NEAR_F32[key]
        return ok, _v_near_or_far(
            w, x, lambda w, x: _in_halves(v, x, near), lambda w, x: _EMITTERS_F32[key](w, x)
        )
    # the two halves in float64, rounded back
    halves = [list(range(LANES)), list(range(LANES, 2 * LANES))]
    oks, fs = [], []
    for h in halves:
        xh = builder.fpext(
            builder.shuffle_vector(x, x, ir.Constant(ir.VectorType(_I32, LANES), h)), _VF
        )
        ok, f = _phi_lanes(key, v, xh, c, lo, hi, True)
        oks.append(ok)
        fs.append(builder.fptrunc(f, ir.VectorType(ir.FloatType(), LANES)))
    both = ir.Constant(ir.VectorType(_I32, 2 * LANES), halves[0] + halves[1])
    return builder.shuffle_vector(*oks, both), builder.shuffle_vector(*fs, both)


#: the float64 near forms (every lane ``|t| <= 1``) of the keys that have one
_NEAR_F64 = {
    SIGMOID: _v_sigmoid_near,
    SILU: lambda v, t: v.mul(t, _v_sigmoid_near(v, t)),
    TANH: _v_tanh_near,
    GELU_TANH: _v_gelu_tanh_near,
    GELU: _v_gelu_near,
    -SOFTPLUS: _v_softplus_near,
}


def emit_vectors(key, builder, xs, c, lo, hi, flags=()):
    """``(ok, [phi(x) for x in xs])`` of a tile's vectors, ``ok`` an ``i1``: every lane of
    every vector in the domain.

    As :func:`emit_vector` on each vector, with one branch for the whole tile: where every
    lane of every vector has ``|t| <= 1`` (the common case), the near forms of all the
    vectors in one block, straight-line (their coefficients loaded once, the vectors'
    chains interleaved); else each vector by :func:`emit_vector`.  The numbers are those of
    :func:`emit_vector`, whichever way a tile goes.
    """
    single = xs[0].type.element != _F64
    near = (_NEAR_F32 if single else _NEAR_F64).get(key)

    def general():
        every = None
        fs = []
        for x in xs:
            ok, f = emit_vector(key, builder, x, c, lo, hi, flags)
            fs.append(f)
            bits = builder.bitcast(ok, ir.IntType(ok.type.count))
            every = bits if every is None else builder.and_(every, bits)
        return builder.icmp_unsigned("==", every, ir.Constant(every.type, -1)), fs

    if near is None:
        return general()
    w = _Vec(builder, single, flags)
    v = _Vec(builder, False, flags)
    every = None
    for x in xs:
        lanes = w.cmp("<=", w.abs(x) if single else w.mul(x, x), 1.0)
        bits = builder.bitcast(lanes, ir.IntType(w.lanes))
        every = bits if every is None else builder.and_(every, bits)
    all_near = builder.icmp_unsigned("==", every, ir.Constant(every.type, -1))
    with builder.if_else(all_near, likely=True) as (then, otherwise):
        with then:
            f_near = [_in_halves(v, x, near) if single else near(v, x) for x in xs]
            b_near = builder.block
        with otherwise:
            ok_gen, f_gen = general()
            b_gen = builder.block
    ok = builder.phi(ir.IntType(1))
    ok.add_incoming(ir.Constant(ir.IntType(1), 1), b_near)
    ok.add_incoming(ok_gen, b_gen)
    fs = []
    for fn, fg in zip(f_near, f_gen):
        f = builder.phi(fn.type)
        f.add_incoming(fn, b_near)
        f.add_incoming(fg, b_gen)
        fs.append(f)
    return ok, fs


def _emit_loop(key, context, builder, signature, args):
    """The IR of a vector loop (:func:`_make_vector_loop`); returns its ``(first, last)``."""
    zty = signature.args[0]
    za, oa = (context.make_array(zty)(context, builder, a) for a in args[:2])
    width = 16 if zty.dtype == types.float32 else LANES
    vty = ir.VectorType(context.get_value_type(zty.dtype), width)
    zeros = ir.Constant(ir.VectorType(_I32, LANES), [0] * LANES)
    c, lo, hi = (
        builder.shuffle_vector(
            builder.insert_element(ir.Constant(_VF, ir.Undefined), a, ir.Constant(_I32, 0)),
            ir.Constant(_VF, ir.Undefined),
            zeros,
        )
        for a in args[2:5]
    )
    n = cgutils.unpack_tuple(builder, za.shape, 1)[0]
    first = cgutils.alloca_once_value(builder, n)
    last = cgutils.alloca_once_value(builder, ir.Constant(_I64, -1))
    with cgutils.for_range(builder, builder.sdiv(n, ir.Constant(_I64, width))) as loop:
        off = builder.mul(loop.index, ir.Constant(_I64, width))
        zp = builder.bitcast(builder.gep(za.data, [off]), vty.as_pointer())
        op = builder.bitcast(builder.gep(oa.data, [off]), vty.as_pointer())
        ok, f = emit_vector(key, builder, builder.load(zp, align=64 // width), c, lo, hi)
        builder.store(f, op, align=64 // width)
        okbits = builder.bitcast(ok, ir.IntType(width))
        with cgutils.if_unlikely(builder, builder.icmp_unsigned("!=", okbits, okbits.type(-1))):
            old = builder.load(first)
            builder.store(builder.select(builder.icmp_signed("<", off, old), off, old), first)
            builder.store(builder.add(off, ir.Constant(_I64, width - 1)), last)
    return context.make_tuple(
        builder, signature.return_type, [builder.load(first), builder.load(last)]
    )


#: the keys of the vector forms, in this order: the activation codes, ``-SOFTPLUS`` for
#: softplus with ``c = 1``
VECTOR_KEYS = (SIGMOID, SILU, TANH, GELU_TANH, GELU, SOFTPLUS, -SOFTPLUS)


def allow_512(builder):
    """Let the function being built hold 512-bit vectors (``"min-legal-vector-width"``):
    the x86 intrinsics of the vector forms need it."""
    set.add(builder.function.attributes, '"min-legal-vector-width"="512"')


def _make_vector_loop(key):
    """The intrinsic ``loop(z, out, c, lo, hi) -> (first, last)`` of activation ``key``.

    ``out[j] = phi(z[j])`` for ``j < w (len(z) // w)``, ``w`` 8 for float64, 16 for
    float32 (``z`` and ``out`` arrays of one dtype, contiguous; ``key`` an activation
    code, ``-SOFTPLUS`` for softplus with ``c = 1``), where ``z[j]`` is in the domain
    (``[lo, hi]``, or the float32 form's); ``(first, last)`` spans the vectors with an
    element outside (``(len(z), -1)`` if none), whose ``out`` the caller recomputes.
    """

    @intrinsic
    def loop(typingctx, z, out, c, lo, hi):
        sig = types.UniTuple(types.int64, 2)(z, out, types.float64, types.float64, types.float64)

        def codegen(context, builder, signature, args):
            allow_512(builder)
            return _emit_loop(key, context, builder, signature, args)

        return sig, codegen

    return loop


(_vloop_sigmoid, _vloop_silu, _vloop_tanh, _vloop_gelu_tanh, _vloop_gelu, _vloop_softplus,
 _vloop_softplus_unit) = (_make_vector_loop(key) for key in VECTOR_KEYS)  # fmt: skip


@njit
def _vector_phi(z, code, c, lo, hi, out):
    """The vector loops of :func:`phi_fast` (the whole vectors of ``z``); ``(first, last)``."""
    wide_vectors()
    if code == SIGMOID:
        return _vloop_sigmoid(z, out, c, lo, hi)
    if code == SILU:
        return _vloop_silu(z, out, c, lo, hi)
    if code == TANH:
        return _vloop_tanh(z, out, c, lo, hi)
    if code == GELU_TANH:
        return _vloop_gelu_tanh(z, out, c, lo, hi)
    if code == GELU:
        return _vloop_gelu(z, out, c, lo, hi)
    if c == 1.0:
        return _vloop_softplus_unit(z, out, c, lo, hi)
    return _vloop_softplus(z, out, c, lo, hi)


@njit
def fast_domain(code, c):
    """``(lo, hi)``: the fast form of activation ``code`` is accurate for ``lo <= t <= hi``.

    ``lo = -hi``, but for the GELUs (the tanh GELU's ``hi`` infinite, gelu's
    ``[-1, 2]``: below -1 its two terms cancel, and above 2 the polynomial
    would need more terms).
    """
    if code == SOFTPLUS:  # |c t| <= 600 and |t| < 1e150
        hi = min(600.0 / c, 1e149)
        return -hi, hi
    if code == SIGMOID or code == SILU:
        return -700.0, 700.0
    if code == TANH:
        return -1e300, 1e300
    if code == GELU:
        return -1.0, 2.0
    return -19.5, np.inf  # GELU_TANH


@njit
def has_fast_form(code):
    """Whether :func:`phi_fast` has a vectorised loop for activation ``code``."""
    return code >= GELU and code <= SILU


@njit
def vector_domain(z, code, c):
    """``(lo, hi)``: the domain of :func:`phi_fast`'s fast forms for arrays like ``z``.

    :func:`fast_domain`, or the float32 forms' where the vector loops have them.
    """
    lo, hi = fast_domain(code, c)
    if AVAILABLE and single(z):  # the domains of the float32 forms
        if code == SIGMOID or code == SILU or code == TANH or (code == SOFTPLUS and c == 1.0):
            lo, hi = -_HI_F32, _HI_F32
        elif code == GELU_TANH:
            lo = _LO_GELU_TANH_F32
    return lo, hi


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
    lo, hi = vector_domain(z, code, c)
    n = z.shape[0]
    m, first, last = 0, n, -1
    if AVAILABLE:  # the whole vectors by the explicit vector loops
        m = n - n % (16 if single(z) else LANES)
        first, last = _vector_phi(z, code, c, lo, hi, out)
    if m < n:
        f, g = _scalar_phi(z[m:], code, c, lo, hi, out[m:])
        if g >= f:
            first, last = min(first, m + f), m + g
    for j in range(first, last + 1):  # the few elements outside the domain, one at a time
        t = np.float64(z[j])
        if not ((t >= lo) & (t <= hi)):
            out[j] = like(z[j], smooth_phi(t, code, c))


@njit
def _scalar_phi(z, code, c, lo, hi, out):
    """The loops vectorised by LLVM (:func:`phi_fast`); ``(first, last)`` spans the
    elements outside the domain (``(len(z), -1)`` if none)."""
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
    return (first, last) if bad else (z.shape[0], -1)
