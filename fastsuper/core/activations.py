"""Activation functions phi and their derivatives (THEORY §1).

Per-element maths shared by every kernel (CPU and CUDA): plain ``@njit``
functions that keep the dtype of their argument (float32 stays float32).
The activation enters as one :class:`~fastsuper.core.bundles.Activation`
bundle ``act``: its family ``act.code``, exponent ``act.a`` and ``act.ia``.

Families (``a > 0`` the exponent; ``ia`` is ``a`` as an integer when ``a`` is
integral, else ``-1``; integer exponents use repeated multiplication):

=================  =========================  ==============================
name               phi(t)                      phi'(t)
=================  =========================  ==============================
``power``          t**m (integer m >= 1)       m t**(m-1)
``signed_power``   sign(t) |t|**a              a |t|**(a-1)
``relu_power``     max(t, 0)**a                a max(t, 0)**(a-1)
``relu``           max(t, 0)                   1 for t > 0, else 0
=================  =========================  ==============================

Smooth and piecewise-linear activations (exponent fixed at 1; ``beta`` and
``slope`` are the bundle's parameter ``act.c``, :data:`DEFAULT_PARAMS`):

=================  ==================================  ===============================
name               phi(t)                               phi'(t)
=================  ==================================  ===============================
``gelu``           t Phi(t) (Phi the normal CDF)        Phi(t) + t phi_N(t)
``gelu_tanh``      t sigma(2 u), u = k (t + 0.044715    sigma(2u) + 2 t u' sigma(2u)
                   t**3), k = sqrt(2 / pi)              sigma(-2u)
``tanh``           tanh(t)                              1 / cosh(t)**2
``softplus``       log(1 + exp(beta t)) / beta          sigma(beta t)
``sigmoid``        sigma(t) = 1 / (1 + exp(-t))         sigma(t) sigma(-t)
``silu``           t sigma(t)                           sigma(t) (1 + t sigma(-t))
``leaky_relu``     t for t > 0, else slope t            1 for t > 0, else slope
``identity``       t                                    1
=================  ==================================  ===============================

``gelu_tanh`` (``0.5 t (1 + tanh(u))``, the same function) is the tanh
approximation of ``gelu``.  They are computed in float64 whatever the dtype of
``t`` and rounded once at the end (float32 results are within about one
ulp); in float64 the arguments ``t / sqrt(2)``, ``beta t`` and ``u`` are
carried with their rounding errors (double-double) where the result is
ill-conditioned in them, so the results stay within a few ulps of the exact
function over the whole float range, without overflow.

``relu`` is ``relu_power`` with its exponent fixed at 1 (the same kernel code);
``identity`` is ``power`` with exponent 1.
An exponent left out (``None`` in :class:`~fastsuper.core.model.Model`,
:func:`fastsuper.fit`, the sweeps and the command line) is the activation's
own default, :data:`DEFAULT_EXPONENTS`: 3 for ``power`` and ``signed_power``
(the paper's cubic model), 1 for ``relu_power`` and ``relu`` (Elhage et al.'s
ReLU).
"""

from __future__ import annotations

import math

import numpy as np
from numba import types
from numba.extending import overload

from fastsuper.core.jit import njit

POWER = 0
SIGNED_POWER = 1
RELU_POWER = 2
GELU = 3
GELU_TANH = 4
TANH = 5
SOFTPLUS = 6
SIGMOID = 7
SILU = 8
LEAKY_RELU = 9

#: Public activation names and their kernel codes (``"relu"`` is ``"relu_power"`` with exponent 1).
ACTIVATIONS = {
    "power": POWER,
    "signed_power": SIGNED_POWER,
    "relu_power": RELU_POWER,
    "relu": RELU_POWER,
    "gelu": GELU,
    "gelu_tanh": GELU_TANH,
    "tanh": TANH,
    "softplus": SOFTPLUS,
    "sigmoid": SIGMOID,
    "silu": SILU,
    "leaky_relu": LEAKY_RELU,
    "identity": POWER,
}

#: Activations with no exponent (fixed at 1): the smooth and piecewise-linear ones.
PARAMETRIC = ("gelu", "gelu_tanh", "tanh", "softplus", "sigmoid", "silu", "leaky_relu", "identity")

#: The exponent of each activation when none is given (one default per activation, everywhere).
DEFAULT_EXPONENTS = {"power": 3, "signed_power": 3, "relu_power": 1, "relu": 1}
DEFAULT_EXPONENTS.update(dict.fromkeys(PARAMETRIC, 1))

#: Activations whose exponent is fixed (a different one is an error).
FIXED_EXPONENTS = {"relu": 1}
FIXED_EXPONENTS.update(dict.fromkeys(PARAMETRIC, 1))

#: The parameter of each activation that has one and its default: softplus's
#: sharpness ``beta > 0``, leaky_relu's negative ``slope`` in ``[0, 1]``.
DEFAULT_PARAMS = {"softplus": 1.0, "leaky_relu": 0.01}

#: The name of each activation's parameter (messages, the command line).
PARAM_NAMES = {"softplus": "beta", "leaky_relu": "slope"}

#: Codes of the activations that are neither powers nor piecewise linear (no closed forms).
SMOOTH_CODES = (GELU, GELU_TANH, TANH, SOFTPLUS, SIGMOID, SILU)


@njit
def ipow(t, k):
    """``t**k`` for an integer ``k >= 1`` by repeated squaring (dtype of ``t``)."""
    r = t
    have = False
    base = t
    while k > 0:
        if k & 1:
            r = r * base if have else base
            have = True
        k >>= 1
        if k > 0:
            base = base * base
    return r


@njit
def _abspow(t, a, ia):
    """``|t|**a`` in the dtype of ``t`` (``ia >= 1`` selects the integer path)."""
    u = abs(t)
    if ia >= 1:
        return ipow(u, ia)
    if u == 0:
        return u
    return u**a


def like(t, r):
    """``r`` (a float64) rounded to the dtype of ``t`` (compiled: float32 or float64)."""
    return type(t)(r)


@overload(like)
def _like_impl(t, r):
    if isinstance(t, types.Float) and t.bitwidth == 32:
        return lambda t, r: np.float32(r)
    return lambda t, r: np.float64(r)


_SPLIT = 134217729.0  # 2**27 + 1, Dekker's splitter
_SQRT1_2 = 0.7071067811865476
_SQRT1_2_LO = -4.833646656726457e-17  # sqrt(1/2) - _SQRT1_2
_INV_SQRT_PI = 0.5641895835477563
_INV_SQRT_2PI = 0.3989422804014327
_GELU_K = 0.7978845608028654  # sqrt(2 / pi) as used by the tanh approximation
_GELU_C = 0.044715
_BIG = 1e150  # beyond this, products are not split (Dekker's split would overflow)
_SHIFT = 600.0  # tiny results: exp(v + _SHIFT) * _EXP_SHIFT keeps intermediates normal
_EXP_SHIFT = math.exp(-_SHIFT)


@njit(inline="always")
def _two_prod(a, b):
    """``(p, e)``: ``p = fl(a b)``, ``p + e = a b`` exactly (Dekker; ``|a|, |b| < 1e150``)."""
    p = a * b
    c = _SPLIT * a
    ah = c - (c - a)
    al = a - ah
    c = _SPLIT * b
    bh = c - (c - b)
    bl = b - bh
    e = ((ah * bh - p) + ah * bl + al * bh) + al * bl
    return p, e


@njit(inline="always")
def _sigmoid_dd(uh, ul):
    """``(sigma(u), sigma(-u))`` for ``u = uh + ul`` (``|ul| <= ulp(uh)``), without overflow."""
    e = math.exp(-abs(uh))
    e = e - e * ul if uh >= 0.0 else e + e * ul  # exp(-|u|) to first order in ul
    big = 1.0 / (1.0 + e)
    small = e * big
    return (big, small) if uh >= 0.0 else (small, big)


@njit(inline="always")
def _gauss_pdf(t):
    """Standard normal density, ``t * t`` split exactly (float64; 0 for ``|t| > 40``)."""
    if not abs(t) < 40.0:
        return 0.0
    hi, lo = _two_prod(t, t)
    return math.exp(-0.5 * hi) * math.exp(-0.5 * lo) * _INV_SQRT_2PI


@njit(inline="always")
def _normal_cdf(t):
    """``Phi(t)`` in float64, with ``t / sqrt(2)`` carried in double-double for ``t < -1``."""
    if not t < -1.0:
        return 0.5 * math.erfc(-t * _SQRT1_2)
    if t < -40.0:
        return 0.0
    xh, xl = _two_prod(t, _SQRT1_2)
    xl += t * _SQRT1_2_LO  # x = t / sqrt(2) = xh + xl to ~1e-32 relative
    # erfc(-(xh + xl)) = erfc(-xh) + xl (2 / sqrt(pi)) exp(-xh**2) + O(xl**2)
    hi, lo = _two_prod(xh, xh)
    return 0.5 * math.erfc(-xh) + xl * _INV_SQRT_PI * math.exp(-hi) * math.exp(-lo)


@njit(inline="always")
def _gelu_far(t, deriv):
    """``gelu(t)`` or ``gelu'(t)`` for ``-40 <= t < -37`` (tiny results, no subnormal steps).

    ``Phi(t) = phi_N(t) R / |t|`` with the asymptotic series ``R = 1 - 1/t**2 +
    3/t**4 - ...`` (12 terms: converged to round-off here); ``phi_N(t)`` is
    computed scaled by ``exp(_SHIFT)``, ``t * t`` split exactly.
    """
    hi, lo = _two_prod(t, t)
    pdf = math.exp(_SHIFT - 0.5 * hi) * math.exp(-0.5 * lo) * _INV_SQRT_2PI
    r = 1.0
    term = 1.0
    inv = 1.0 / (t * t)
    for k in range(1, 13):
        term *= -(2.0 * k - 1.0) * inv
        r += term
    if deriv:  # Phi + t phi_N = phi_N (R / |t| - |t|)
        return pdf * (r / -t + t) * _EXP_SHIFT
    return -pdf * r * _EXP_SHIFT  # t Phi(t) = -phi_N(t) R


@njit(inline="always")
def _gelu_tanh_u(t):
    """``(uh, ul)``: ``u = k (t + c t**3)`` of the tanh GELU in double-double (``|t| <= 30``)."""
    sh, sl = _two_prod(t, t)
    ch, cl = _two_prod(sh, t)
    cl += sl * t  # t**3 = ch + cl
    qh, ql = _two_prod(ch, _GELU_C)
    ql += cl * _GELU_C  # c t**3
    rh = t + qh  # + t, with the rounding error of the sum (Knuth's two-sum)
    bb = rh - t
    rl = (t - (rh - bb)) + (qh - bb) + ql
    uh, ul = _two_prod(rh, _GELU_K)
    return uh, ul + rl * _GELU_K


@njit
def smooth_phi(t, code, c):
    """``phi(t)`` of the smooth and piecewise-linear activations in float64 (``t`` a float64)."""
    if t != t:
        return t
    if code == TANH:
        return math.tanh(t)
    if code == LEAKY_RELU:
        if t > 0.0:
            return t
        return c * t if c > 0.0 else 0.0
    if code == SIGMOID:
        return _sigmoid_dd(t, 0.0)[0]
    if code == SILU:
        if t < -_SHIFT:  # t exp(t), scaled (t + _SHIFT is exact)
            return t * math.exp(t + _SHIFT) * _EXP_SHIFT if t > -800.0 else -0.0
        return t * _sigmoid_dd(t, 0.0)[0]
    if code == SOFTPLUS:
        uh, ul = _two_prod(c, t) if abs(t) < _BIG else (c * t, 0.0)
        e = math.exp(-abs(uh))
        if uh >= 0.0:  # log(1 + e**u) / beta = t + log1p(e**-u) / beta
            return t + math.log1p(e - e * ul) / c
        if uh < -_SHIFT:  # log1p(e**u) = e**u, scaled
            return math.exp(uh + _SHIFT) * (1.0 + ul) / c * _EXP_SHIFT
        return math.log1p(e + e * ul) / c
    if code == GELU:
        if t < -37.0:
            return _gelu_far(t, False) if t > -40.0 else -0.0  # t Phi(t) underflows
        return t * _normal_cdf(t)
    # GELU_TANH: t sigma(2 u)
    if t > 30.0:
        return t
    if t < -30.0:
        return -0.0  # t sigma(2u) underflows
    uh, ul = _gelu_tanh_u(t)
    if 2.0 * uh < -_SHIFT:  # t exp(2u), scaled
        return t * math.exp(2.0 * uh + _SHIFT) * (1.0 + 2.0 * ul) * _EXP_SHIFT
    return t * _sigmoid_dd(2.0 * uh, 2.0 * ul)[0]


@njit
def smooth_dphi(t, code, c):
    """``phi'(t)`` of the smooth and piecewise-linear activations in float64."""
    if t != t:
        return t
    if code == TANH:  # 1 / cosh**2 = 4 e / (1 + e)**2, e = exp(-2 |t|)
        e = math.exp(-2.0 * abs(t))
        r = 1.0 / (1.0 + e)
        return 4.0 * e * r * r
    if code == LEAKY_RELU:
        return 1.0 if t > 0.0 else c
    if code == SIGMOID:
        s, sm = _sigmoid_dd(t, 0.0)
        return s * sm
    if code == SILU:
        if t < -_SHIFT:  # exp(t) (1 + t), scaled
            return math.exp(t + _SHIFT) * (1.0 + t) * _EXP_SHIFT if t > -800.0 else -0.0
        s, sm = _sigmoid_dd(t, 0.0)
        return s + t * s * sm if t < 800.0 else s
    if code == SOFTPLUS:
        if abs(t) < _BIG:
            uh, ul = _two_prod(c, t)
            return _sigmoid_dd(uh, ul)[0]
        return 1.0 if t > 0.0 else 0.0
    if code == GELU:
        if t > 40.0:
            return 1.0
        if t < -37.0:
            return _gelu_far(t, True) if t > -40.0 else -0.0
        return _normal_cdf(t) + t * _gauss_pdf(t)
    # GELU_TANH: sigma(2u) + 2 t u' sigma(2u) sigma(-2u)
    if t > 30.0:
        return 1.0
    if t < -30.0:
        return 0.0
    uh, ul = _gelu_tanh_u(t)
    du = _GELU_K * (1.0 + 3.0 * _GELU_C * t * t)
    if 2.0 * uh < -_SHIFT:  # exp(2u) (1 + 2 t u'), scaled
        e = math.exp(2.0 * uh + _SHIFT) * (1.0 + 2.0 * ul)
        return e * (1.0 + 2.0 * t * du) * _EXP_SHIFT
    s, sm = _sigmoid_dd(2.0 * uh, 2.0 * ul)
    return s + 2.0 * t * du * s * sm


@njit
def phi(t, act):
    """The activation ``act`` (an :class:`~fastsuper.core.bundles.Activation`) at ``t``.

    Same dtype as ``t``.
    """
    code, a, ia = act.code, act.a, act.ia
    if code == POWER:
        return ipow(t, ia)
    if code >= GELU:
        return like(t, smooth_phi(np.float64(t), code, act.c))
    if code == RELU_POWER:
        if t > 0:
            return _abspow(t, a, ia)
        if t <= 0:
            return t - t  # zero of t's dtype
        return t  # NaN propagates
    r = _abspow(t, a, ia)  # signed power
    return -r if t < 0 else r


@njit
def dphi(t, act):
    """Derivative of :func:`phi` with respect to ``t`` (same dtype as ``t``)."""
    code, a, ia = act.code, act.a, act.ia
    if code >= GELU:
        return like(t, smooth_dphi(np.float64(t), code, act.c))
    one = a / a
    if code == POWER:
        if ia == 1:
            return one + (t - t)
        return ipow(t, ia - 1) * a
    if code == RELU_POWER:
        if t > 0:
            if ia == 1:
                return one + (t - t)
            if ia >= 2:
                return ipow(t, ia - 1) * a
            return t ** (a - one) * a
        if t <= 0:
            return t - t
        return t
    u = abs(t)  # signed power: a |t|^(a-1), an even function
    if ia == 1:
        return one + (u - u)
    if ia >= 2:
        return ipow(u, ia - 1) * a
    if u == 0:
        return u if a > one else one / u  # a < 1: unbounded at 0 (inf)
    return u ** (a - one) * a


@njit
def relu(t):
    """``max(t, 0)`` in the dtype of ``t``; NaN stays NaN."""
    return t if t > 0 else t - t  # select, no branch


@njit(fastmath={"contract"})
def phi_inplace(z, act):
    """Overwrite the 1-D array ``z`` with ``phi(z)``, elementwise.

    The same values as :func:`phi`; the family and exponent are dispatched once
    outside the loop, and small integer exponents use straight-line code, so
    that LLVM can vectorise the loop.
    """
    n = z.shape[0]
    code, ia = act.code, act.ia
    if code == LEAKY_RELU:  # straight-line select: vectorised
        c = z.dtype.type(act.c)
        for j in range(n):
            u = z[j]
            z[j] = u if u > 0 else c * u
        return
    if code >= GELU:  # the per-element maths without the dispatch of phi
        cc = act.c
        for j in range(n):
            z[j] = like(z[j], smooth_phi(np.float64(z[j]), code, cc))
        return
    if code == POWER or (code == SIGNED_POWER and ia >= 1 and ia % 2 == 1):
        if ia == 1:
            return
        if ia == 2:
            for j in range(n):
                z[j] = z[j] * z[j]
        elif ia == 3:
            for j in range(n):
                z[j] = z[j] * z[j] * z[j]
        else:
            for j in range(n):
                z[j] = ipow(z[j], ia)
    elif code == RELU_POWER:
        if ia == 1:
            for j in range(n):
                z[j] = relu(z[j])
        elif ia == 2:
            for j in range(n):
                u = relu(z[j])
                z[j] = u * u
        elif ia == 3:
            for j in range(n):
                u = relu(z[j])
                z[j] = u * u * u
        else:
            for j in range(n):
                z[j] = phi(z[j], act)
    else:  # signed power, even or non-integer exponent
        if ia == 2:
            for j in range(n):
                z[j] = z[j] * abs(z[j])
        else:
            for j in range(n):
                z[j] = phi(z[j], act)
