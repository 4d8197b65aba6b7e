"""Exact k = 0 and k = 1 terms of the loss decomposition (THEORY §4).

With ``K`` the number of active features, ``L = sum_k P(K = k) L_k`` where
``L_k = E[loss | K = k]``.  The two lowest strata are one-dimensional:

* ``k = 0``: ``x = 0``; loss ``sum_j I_j phi(b_j)**2``, weight ``prod_j (1 - p_j)``;
* ``k = 1``, only ``i`` active with value ``xi ~ mu``; weight
  ``p_i prod_{j != i} (1 - p_j)`` and conditional loss::

      I_i E(xi - phi(A_ii xi + b_i))**2 + sum_{j != i} I_j E phi(A_ji xi + b_j)**2

Each ``(j, i)`` term is an integral over the value law ``mu`` of a function
of ``c xi + b`` (``c = A_ji``, ``b = b_j``).  Every activation of THEORY §1
can be written ``phi(t) = sigma(t) |t|**a`` with ``sigma = 1`` for ``t > 0``
and ``sigma = -1`` (``signed_power``), ``0`` (``relu_power``) or ``(-1)**m``
(``power``) for ``t < 0``.  With the kink ``t0 = -b / c`` each side of ``t0``
is ``|c|**s |xi - t0|**s`` times a polynomial in ``xi`` (``s`` in ``{a, 2a}``),
which is what makes the integrals exact:

* discrete laws (rademacher, constant, discrete): a finite sum (exact);
* uniform laws, kink inside the support or less than the support's length
  outside it: each piece ``int u**s (t0 + u)**k du`` (``k <= 1``) in closed
  form -- the one-node Gauss-Jacobi rule for the weight ``u**s``, which is
  exact for every real exponent; kink farther out (or any integer exponent
  with the kink outside): Gauss-Legendre on the support evaluating ``phi``
  directly -- ``a + 1`` nodes for an integer exponent (exact), otherwise
  enough nodes for the Bernstein-ellipse bound to reach round-off (<= 24);
* Gaussian values with ``power`` (or ``signed_power`` with an odd integer
  exponent, the same function): the polynomial moments ``E xi**r = (r-1)!!``
  (exact; the terms of ``E phi**2`` are all >= 0, so nothing cancels);
* Gaussian values otherwise (``relu_power``, ``signed_power``; integer or
  real exponent): split at the kink.  Each half-line ``int_t^inf (xi - t)**s
  xi**k phi_N(xi) dxi`` by Gauss-Jacobi with the weight ``(xi - t)**s`` at
  the kink (``max(50, s + 10)`` nodes) on ``[t, t + U]``, ``U`` past the
  integrand's peak by the distance over which it falls by ``e**-50``; for
  ``t > 0`` the density is factored as ``phi_N(t) exp(-t u - u**2/2)`` with
  ``t**2`` split exactly.  When ``|t0| > 9`` the side holding the mass is
  done by 40-node Gauss-Hermite (``phi`` evaluated directly; nodes beyond the
  kink dropped) and the other side as above.  This is a quadrature, not a
  closed form, also for integer exponents: against 30-digit references
  (parabolic-cylinder functions) every half-line is within 1e-14 relative for
  ``s`` in 0.35 ... 80 and ``|t| <= 30`` (beyond, the values approach the
  denormals), and every pair term within 1.2e-14.

``leaky_relu`` is ``sigma(t) |t|`` with ``sigma = -slope`` on the left, so
the rules above are exact for it.  The smooth activations (``gelu``,
``gelu_tanh``, ``tanh``, ``softplus``, ``sigmoid``, ``silu``) have no such
form: for uniform and Gaussian values their integrals are done by adaptive
Gauss-Kronrod (:mod:`fastsuper.exact.quadrature`, whose error estimate is
:attr:`LowOrderTerms.quad_error`); discrete laws are finite sums as above.

``A_ji = 0`` (no dependence on ``xi``) is handled exactly.  The diagonal term
is ``mu_2 - 2 E[xi phi] + E[phi**2]`` wherever ``phi`` has a kink, so when
the reconstruction is good its error is ~1e-16 *absolute* (times ``mu_2``),
not relative.  The ``n**2`` pairs are looped over in a compiled kernel
(``prange`` over ``i``); cost ``O(n**2)`` times the nodes used per pair.

"""

from __future__ import annotations

import functools
import math
from collections import namedtuple
from dataclasses import dataclass, replace

import numba
import numpy as np
from scipy.special import roots_hermitenorm, roots_jacobi, roots_legendre

from fastsuper.core import arguments, config
from fastsuper.core.activations import LEAKY_RELU, POWER, SIGNED_POWER, SMOOTH_CODES, phi
from fastsuper.core.arguments import check_moments
from fastsuper.core.bundles import Activation, activation
from fastsuper.core.jit import njit, serial_and_parallel
from fastsuper.core.laws import GAUSSIAN, UNIFORM, UNIFORM_SYM, SparseInputs
from fastsuper.core.model import Model
from fastsuper.exact.quadrature import smooth_pair

__all__ = ["LowOrderTerms", "k1_conditional_loss", "loss0_terms", "low_order_terms"]

# how the 1-D integrals are done (internal codes); the last two: smooth activations
# by adaptive Gauss-Kronrod (:mod:`fastsuper.exact.quadrature`)
_DISCRETE, _UNIFORM, _GAUSS_QUAD, _GAUSS_POLY, _SMOOTH_UNIFORM, _SMOOTH_GAUSS = range(6)

_N_GJ = 50  # Gauss-Jacobi nodes per Gaussian half-line (more for exponents > 20)
_N_GH = 40  # Gauss-Hermite nodes (Gaussian, kink far out)
_N_GL = 24  # most Gauss-Legendre nodes (uniform, kink outside the support, real exponent)
_R_FAR = 9.0  # |t0| beyond which the Gaussian kink counts as far
_DROP = 50.0  # truncate a half-line where the integrand fell by e**-_DROP
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SPLIT = 134217729.0  # 2**27 + 1, Dekker's splitter

#: Everything the kernels need to know about the activation and the value law:
#: the law's kind, the activation's fields (:func:`_activation` makes the
#: bundle; a bundle inside this one would not pass into a ``prange`` kernel),
#: constants, then the quadrature rules and moment tables (unused ones are
#: length-1 placeholders).
_LawPack = namedtuple(
    "_LawPack",
    "kind code a ia sneg mu1 mu2 lo hi sup prb ga_v ga_w gb_v gb_w gh_x gh_w gl_v gl_w "
    "binom2m binomm mom c qtol qseg",
)


# --------------------------------------------------------------------------
# per-pair maths (strict IEEE: plain ``njit``)


@njit(inline="always")
def _activation(P):
    """The :class:`~fastsuper.core.bundles.Activation` of a ``_LawPack`` (exponent in float64)."""
    return Activation(P.code, P.a, P.ia, P.c)


@njit
def _gauss_pdf_accurate(t):
    """Standard normal density with ``t*t`` split exactly (no ``t**2 eps`` error)."""
    c = _SPLIT * t
    th = c - (c - t)
    tl = t - th
    hi = t * t
    lo = ((th * th - hi) + 2.0 * th * tl) + tl * tl
    return math.exp(-0.5 * hi) * math.exp(-0.5 * lo) * _INV_SQRT_2PI


@njit
def _gauss_side(t, s, k, v, w):
    """``int_t^inf (xi - t)**s xi**k phi_N(xi) dxi`` for ``s > 0``, ``k`` in {0, 1}.

    Gauss-Jacobi rule ``(v, w)`` for the weight ``u**s`` on [0, 1], scaled to
    ``[0, U]`` where ``U`` is past the peak of ``u**s phi_N(t + u)`` by the
    distance over which the integrand falls by ``e**-_DROP``.
    """
    if t > 38.5:  # phi_N(t) underflows: the side is 0 to double precision
        return 0.0
    root = math.sqrt(t * t + 4.0 * s)
    if t > 0.0:
        up = 2.0 * s / (t + root)
    else:
        up = 0.5 * (root - t)
    g = up + t  # = s / up, the slope scale at the peak
    d = math.sqrt(2.0 * _DROP)  # D(d) >= d**2/2 - DROP >= 0 here
    for _ in range(60):  # Newton from above on the convex increasing D
        dd = (g * d + 0.5 * d * d - s * math.log1p(d / up) - _DROP) / (g + d - s / (up + d))
        d -= dd
        if dd < 1e-6 * d:
            break
    U = up + d
    acc = 0.0
    if t > 0.0:  # phi_N(t + u) = phi_N(t) exp(-t u - u**2 / 2): accurate in the tail
        for q in range(v.shape[0]):
            u = U * v[q]
            f = math.exp(-t * u - 0.5 * u * u)
            if k == 1:
                f *= t + u
            acc += w[q] * f
        return _gauss_pdf_accurate(t) * U ** (s + 1.0) * acc
    for q in range(v.shape[0]):
        xi = t + U * v[q]
        f = math.exp(-0.5 * xi * xi) * _INV_SQRT_2PI
        if k == 1:
            f *= xi
        acc += w[q] * f
    return U ** (s + 1.0) * acc


@njit
def _unif_piece(length, t0, s, k, right):
    """``int_0^length u**s xi**k du`` with ``xi = t0 + u`` (right) or ``t0 - u`` (left).

    The one-node Gauss-Jacobi rule for the weight ``u**s``: exact for ``k <= 1``.
    """
    p0 = length ** (s + 1.0) / (s + 1.0)
    if k == 0:
        return p0
    p1 = length ** (s + 2.0) / (s + 2.0)
    return t0 * p0 + p1 if right else t0 * p0 - p1


@njit
def _sides(c, sneg):
    """Signs of phi on the right (xi > t0) and left (xi < t0) of the kink."""
    if c > 0.0:
        return 1.0, sneg
    return sneg, 1.0


@njit
def _pair_discrete(c, b, want1, act, sup, prb):
    """``(E phi(c xi + b)**2, E xi phi(c xi + b))`` for a finite law: a finite sum."""
    e2 = 0.0
    e1 = 0.0
    for q in range(sup.shape[0]):
        f = phi(c * sup[q] + b, act)
        e2 += prb[q] * f * f
        if want1:
            e1 += prb[q] * sup[q] * f
    return e2, e1


@njit
def _gl_order(dist, length, a, ia, nmax):
    """Gauss-Legendre nodes for ``phi(c xi + b)`` on a support of ``length``.

    Integer exponent: ``a + 1`` nodes integrate the polynomials ``phi**2``,
    ``xi phi`` and ``(xi - phi)**2`` exactly.  Real exponent: the kink is
    ``dist >= length`` outside the support, the integrand is analytic inside
    the Bernstein ellipse of parameter ``rho`` and ``N ln(rho) >= 20 + a``
    nodes give round-off accuracy (checked against 30-digit quadrature).
    """
    if ia >= 1:
        return ia + 1
    d = 1.0 + 2.0 * dist / length
    lr = math.log(2.0 * d) if d > 1e8 else math.log(d + math.sqrt((d - 1.0) * (d + 1.0)))
    nq = int(math.ceil((20.0 + a) / lr)) + 1
    return max(3, min(nq, nmax))


@njit
def _pair_uniform(c, b, want1, act, sneg, mu1, lo, hi, gl_v, gl_w):
    """``(E phi**2, E xi phi)`` for ``xi ~ U[lo, hi]``, split at the kink."""
    if c == 0.0:
        f = phi(b, act)
        return f * f, mu1 * f
    a, ia = act.a, act.ia
    e2 = 0.0
    e1 = 0.0
    t0 = -b / c
    sr, sl = _sides(c, sneg)
    two_a = 2.0 * a
    length = hi - lo
    dens = 1.0 / length
    ca = abs(c) ** a
    if lo < t0 < hi:  # kink inside: two exact pieces
        e2 = sr * sr * _unif_piece(hi - t0, t0, two_a, 0, True)
        e2 += sl * sl * _unif_piece(t0 - lo, t0, two_a, 0, False)
        e2 *= dens * ca * ca
        if want1:
            e1 = sr * _unif_piece(hi - t0, t0, a, 1, True)
            e1 += sl * _unif_piece(t0 - lo, t0, a, 1, False)
            e1 *= dens * ca
        return e2, e1
    dist = lo - t0 if t0 <= lo else t0 - hi
    if dist >= length or ia >= 1:  # phi smooth on the support: Gauss-Legendre
        nq = _gl_order(dist, length, a, ia, gl_v.shape[1])
        for q in range(nq):
            x = lo + length * gl_v[nq, q]
            f = phi(c * x + b, act)
            e2 += gl_w[nq, q] * f * f
            if want1:
                e1 += gl_w[nq, q] * x * f
        return e2, e1
    if t0 <= lo:  # near kink on the left: [lo, hi] = [t0, hi] minus [t0, lo]
        e2 = _unif_piece(hi - t0, t0, two_a, 0, True) - _unif_piece(lo - t0, t0, two_a, 0, True)
        e2 *= dens * ca * ca * sr * sr
        if want1:
            e1 = _unif_piece(hi - t0, t0, a, 1, True) - _unif_piece(lo - t0, t0, a, 1, True)
            e1 *= dens * ca * sr
    else:  # near kink on the right: [lo, hi] = [lo, t0] minus [hi, t0]
        e2 = _unif_piece(t0 - lo, t0, two_a, 0, False) - _unif_piece(t0 - hi, t0, two_a, 0, False)
        e2 *= dens * ca * ca * sl * sl
        if want1:
            e1 = _unif_piece(t0 - lo, t0, a, 1, False) - _unif_piece(t0 - hi, t0, a, 1, False)
            e1 *= dens * ca * sl
    return e2, e1


@njit
def _pair_gauss_poly(c, b, want1, m, binom2m, binomm, mom):
    """``(E (c xi + b)**(2m), E xi (c xi + b)**m)`` for ``xi ~ N(0, 1)`` from moments.

    ``mom[r] = (r - 1)!!`` (0 for odd ``r``), so every non-zero term of the
    first sum is >= 0 and every non-zero term of the second has one sign.
    """
    acc = 0.0
    cr = 1.0
    for r in range(2 * m + 1):  # Horner in b: sum_r C(2m, r) c**r b**(2m-r) mu_r
        acc = acc * b + binom2m[r] * cr * mom[r]
        cr *= c
    e2 = acc
    e1 = 0.0
    if want1:
        acc = 0.0
        cr = 1.0
        for r in range(m + 1):  # sum_r C(m, r) c**r b**(m-r) mu_{r+1}
            acc = acc * b + binomm[r] * cr * mom[r + 1]
            cr *= c
        e1 = acc
    return e2, e1


@njit
def _pair_gauss_quad(c, b, want1, act, sneg, ga_v, ga_w, gb_v, gb_w, gh_x, gh_w):
    """``(E phi**2, E xi phi)`` for ``xi ~ N(0, 1)``: half-lines split at the kink."""
    if c == 0.0:
        f = phi(b, act)
        return f * f, 0.0
    a = act.a
    e2 = 0.0
    e1 = 0.0
    t0 = -b / c
    sr, sl = _sides(c, sneg)
    two_a = 2.0 * a
    ca = abs(c) ** a
    if abs(t0) <= _R_FAR:
        if sr != 0.0:
            e2 += sr * sr * _gauss_side(t0, two_a, 0, gb_v, gb_w)
            if want1:
                e1 += sr * _gauss_side(t0, a, 1, ga_v, ga_w)
        if sl != 0.0:
            e2 += sl * sl * _gauss_side(-t0, two_a, 0, gb_v, gb_w)
            if want1:
                e1 -= sl * _gauss_side(-t0, a, 1, ga_v, ga_w)
        return e2 * ca * ca, e1 * ca
    # far kink: Gauss-Hermite on the side holding the mass (phi evaluated directly,
    # nodes beyond the kink dropped), Gauss-Jacobi on the other side
    right_main = t0 < 0.0
    for q in range(gh_x.shape[0]):
        x = gh_x[q]
        if (x > t0) == right_main:
            f = phi(c * x + b, act)
            e2 += gh_w[q] * f * f
            if want1:
                e1 += gh_w[q] * x * f
    so = sl if right_main else sr
    if so != 0.0:
        tt = -t0 if right_main else t0
        e2 += so * so * ca * ca * _gauss_side(tt, two_a, 0, gb_v, gb_w)
        if want1:
            side1 = _gauss_side(tt, a, 1, ga_v, ga_w)
            e1 += so * ca * (-side1 if right_main else side1)
    return e2, e1


@njit
def _e2_e1(c, b, P):
    """``(E phi(c xi + b)**2, E xi phi(c xi + b))`` for any law kind (``P``: a ``_LawPack``)."""
    kind, act, sneg = P.kind, _activation(P), P.sneg
    if kind == _DISCRETE:
        return _pair_discrete(c, b, True, act, P.sup, P.prb)
    if kind == _UNIFORM:
        return _pair_uniform(c, b, True, act, sneg, P.mu1, P.lo, P.hi, P.gl_v, P.gl_w)
    if kind == _GAUSS_POLY:
        return _pair_gauss_poly(c, b, True, act.ia, P.binom2m, P.binomm, P.mom)
    return _pair_gauss_quad(c, b, True, act, sneg, P.ga_v, P.ga_w, P.gb_v, P.gb_w, P.gh_x, P.gh_w)


@njit
def _diag(c, b, P):
    """``(E(xi - phi)**2, E(xi**2 - (xi - phi)**2))`` with ``phi = phi(c xi + b)``."""
    kind, act, mu2, lo, hi = P.kind, _activation(P), P.mu2, P.lo, P.hi
    a, ia = act.a, act.ia
    sup, prb, gl_v, gl_w, binomm, mom = P.sup, P.prb, P.gl_v, P.gl_w, P.binomm, P.mom
    if kind == _DISCRETE:
        loss = 0.0
        gain = 0.0
        for q in range(sup.shape[0]):
            x = sup[q]
            f = phi(c * x + b, act)
            loss += prb[q] * (x - f) * (x - f)
            gain += prb[q] * f * (2.0 * x - f)
        return loss, gain
    if kind == _GAUSS_POLY:
        m = ia
        pc = np.empty(m + 1)  # coefficients C(m, r) c**r b**(m-r) of P = (c xi + b)**m
        cr = 1.0
        for r in range(m + 1):
            pc[r] = binomm[r] * cr
            cr *= c
        br = 1.0
        for r in range(m, -1, -1):
            pc[r] *= br
            br *= b
        pp = 0.0  # E P**2
        xp = 0.0  # E xi P
        loss = 0.0  # E (xi - P)**2, the xi coefficient combined first (less cancellation)
        q1 = 1.0 - pc[1]
        for r in range(m + 1):
            xp += pc[r] * mom[r + 1]
            cr = q1 if r == 1 else -pc[r]
            for q in range(m + 1):
                pp += pc[r] * pc[q] * mom[r + q]
                loss += cr * (q1 if q == 1 else -pc[q]) * mom[r + q]
        return loss, 2.0 * xp - pp
    if kind == _UNIFORM and c != 0.0:
        t0 = -b / c
        if not (lo < t0 < hi):
            length = hi - lo
            dist = lo - t0 if t0 <= lo else t0 - hi
            if dist >= length or ia >= 1:  # direct Gauss-Legendre, no cancellation
                nq = _gl_order(dist, length, a, ia, gl_v.shape[1])
                loss = 0.0
                gain = 0.0
                for q in range(nq):
                    x = lo + length * gl_v[nq, q]
                    f = phi(c * x + b, act)
                    loss += gl_w[nq, q] * (x - f) * (x - f)
                    gain += gl_w[nq, q] * f * (2.0 * x - f)
                return loss, gain
    e2, e1 = _e2_e1(c, b, P)
    return mu2 - 2.0 * e1 + e2, 2.0 * e1 - e2


@njit
def _smooth(c, b, diag, P, act):
    """``smooth_pair`` of a ``_LawPack`` with a smooth activation; a constant when ``c == 0``."""
    if c == 0.0:
        f = phi(b, act)
        if diag:
            return P.mu2 - 2.0 * P.mu1 * f + f * f, f * (2.0 * P.mu1 - f), 0.0
        return f * f, P.mu1 * f, 0.0
    gauss = P.kind == _SMOOTH_GAUSS
    return smooth_pair(c, b, diag, False, act, gauss, P.lo, P.hi, P.qtol, P.qseg)


@njit
def _column(i, AT, bias, imp, P, mat, store):
    """``(loss1[i], gain1[i], quadrature error of loss1[i])``, writing ``mat[:, i]`` if ``store``.

    ``AT[i, j] = A_ji`` (row ``i`` of ``A.T`` is column ``i`` of ``A``); ``P``
    is a ``_LawPack``.  Each branch on the (loop invariant) law kind calls one
    small, inlinable function.
    """
    kind, act, sneg = P.kind, _activation(P), P.sneg
    off = 0.0  # sum_{j != i} I_j E phi(A_ji xi + b_j)**2
    qerr = 0.0
    for j in range(AT.shape[0]):
        if j == i:
            continue
        c = AT[i, j]
        if kind == _DISCRETE:
            e2, _ = _pair_discrete(c, bias[j], False, act, P.sup, P.prb)
        elif kind == _UNIFORM:
            e2, _ = _pair_uniform(c, bias[j], False, act, sneg, P.mu1, P.lo, P.hi, P.gl_v, P.gl_w)
        elif kind == _GAUSS_POLY:
            e2, _ = _pair_gauss_poly(c, bias[j], False, act.ia, P.binom2m, P.binomm, P.mom)
        elif kind >= _SMOOTH_UNIFORM:
            e2, _, er = _smooth(c, bias[j], False, P, act)
            qerr += imp[j] * er
        else:
            e2, _ = _pair_gauss_quad(
                c, bias[j], False, act, sneg, P.ga_v, P.ga_w, P.gb_v, P.gb_w, P.gh_x, P.gh_w
            )
        e2 *= imp[j]
        off += e2
        if store:
            mat[j, i] = e2
    if kind >= _SMOOTH_UNIFORM:
        ld, gd, er = _smooth(AT[i, i], bias[i], True, P, act)
        qerr += imp[i] * er
    else:
        ld, gd = _diag(AT[i, i], bias[i], P)
    ld *= imp[i]
    gd *= imp[i]
    if store:
        mat[i, i] = ld
    return ld + off, gd - off, qerr


@serial_and_parallel
def _k1_columns(AT, bias, imp, P, loss1, gain1, qerr, mat, store):
    """``loss1[i]``, ``gain1[i]``, ``qerr[i]`` for every ``i`` (``prange``; nothing shared)."""
    for i in numba.prange(AT.shape[0]):
        li, gi, ei = _column(i, AT, bias, imp, P, mat, store)
        loss1[i] = li
        gain1[i] = gi
        qerr[i] = ei


@njit
def _strata_probs(p):
    """``(P(K=0), P(only i active) for each i, P(K>=2))`` for independent features.

    Prefix/suffix sums of ``log1p(-p_j)`` (``-inf`` where ``p_j = 1``, which
    gives exact zeros without any ``inf - inf``); ``P(K >= 2)`` by the
    three-state recursion over features, whose terms are all non-negative.
    """
    n = p.shape[0]
    lg = np.empty(n)
    for j in range(n):
        lg[j] = math.log1p(-p[j]) if p[j] < 1.0 else -math.inf
    pre = np.empty(n + 1)
    pre[0] = 0.0
    for j in range(n):
        pre[j + 1] = pre[j] + lg[j]
    suf = np.empty(n + 1)
    suf[n] = 0.0
    for j in range(n - 1, -1, -1):
        suf[j] = suf[j + 1] + lg[j]
    p1 = np.empty(n)
    for i in range(n):
        p1[i] = p[i] * math.exp(pre[i] + suf[i + 1]) if p[i] > 0.0 else 0.0
    r0 = 1.0
    r1 = 0.0
    r2 = 0.0
    for j in range(n):
        r2 += r1 * p[j]
        r1 = r1 * (1.0 - p[j]) + r0 * p[j]
        r0 *= 1.0 - p[j]
    return math.exp(pre[n]), p1, r2


# --------------------------------------------------------------------------
# Python layer


@dataclass(frozen=True, eq=False)
class LowOrderTerms:
    """The k = 0 and k = 1 strata of the loss and gain (THEORY §4).

    Losses and gains are **sums** over output features weighted by the
    importances (``sum_j I_j (...)``); Elhage et al.'s mean over features is
    :meth:`mean_over_features`.

    Attributes
    ----------
    p0 : float
        ``P(K = 0)``: ``prod_j (1 - p_j)`` (independent features) or
        ``[k == 0]`` (exactly ``k`` active).
    loss0 : float
        Loss given no active feature, ``sum_j I_j phi(b_j)**2``.
    gain0 : float
        Gain given no active feature, ``-loss0``.
    p1 : numpy.ndarray of shape (n,)
        ``P(only i active)``: ``p_i prod_{j != i} (1 - p_j)`` or ``[k == 1] / n``.
    loss1 : numpy.ndarray of shape (n,)
        ``E[loss | only i active]``.
    gain1 : numpy.ndarray of shape (n,)
        ``E[gain | only i active] = I_i mu_2 - loss1[i]`` (computed directly as
        ``I_i E phi (2 xi - phi) - sum_{j != i} ...``, not by that subtraction).
    p_ge2 : float
        ``P(K >= 2)``, computed without cancellation.
    quad_error : float
        Error estimate of :attr:`lower_bound` and :attr:`gain_le1` from the adaptive
        quadrature of smooth activations (:mod:`fastsuper.exact.quadrature`); 0 for
        the exact rules of the other activations.
    """

    p0: float
    loss0: float
    gain0: float
    p1: np.ndarray
    loss1: np.ndarray
    gain1: np.ndarray
    p_ge2: float
    quad_error: float = 0.0

    def __post_init__(self):
        for name in ("p1", "loss1", "gain1"):  # frozen: read-only float64 copies
            arr = np.array(getattr(self, name), dtype=np.float64)
            arr.flags.writeable = False
            object.__setattr__(self, name, arr)

    @property
    def n(self) -> int:
        """Number of features."""
        return int(self.p1.shape[0])

    @property
    def p_le1(self) -> float:
        """``P(K <= 1) = p0 + sum_i p1[i]``."""
        return float(self.p0 + self.p1.sum())

    @property
    def lower_bound(self) -> float:
        """``p0 loss0 + sum_i p1[i] loss1[i]``: the k <= 1 part of the loss.

        A rigorous lower bound of the population loss ``L`` (the loss is >= 0).
        """
        return float(self.p0 * self.loss0 + np.dot(self.p1, self.loss1))

    @property
    def loss_le1(self) -> float:
        """Alias of :attr:`lower_bound`."""
        return self.lower_bound

    @property
    def gain_le1(self) -> float:
        """``p0 gain0 + sum_i p1[i] gain1[i]``: the k <= 1 part of the gain."""
        return float(self.p0 * self.gain0 + np.dot(self.p1, self.gain1))

    def mean_over_features(self) -> LowOrderTerms:
        """The same terms with losses and gains divided by ``n`` (Elhage's convention)."""
        n = self.n
        return replace(
            self,
            loss0=self.loss0 / n,
            gain0=self.gain0 / n,
            loss1=self.loss1 / n,
            gain1=self.gain1 / n,
        )


def _check(model, inputs) -> None:
    if not isinstance(model, Model):
        raise TypeError(f"model must be a fastsuper Model, got {type(model).__name__}")
    if not isinstance(inputs, SparseInputs):
        raise TypeError(f"inputs must be a fastsuper SparseInputs, got {type(inputs).__name__}")
    if model.n != inputs.n:
        raise ValueError(
            f"model and inputs disagree on the number of features: model.n = {model.n} "
            f"(W has shape {model.W.shape}) but inputs.n = {inputs.n}"
        )
    arguments.refuse_groups(
        inputs, "the k <= 1 terms (and the bounds built on them)",
        hint="for power activations use exact_loss, else estimate_loss",
    )  # fmt: skip
    ia = model.int_exponent
    if inputs.law.code == GAUSSIAN and (
        model.act_code == POWER or (model.act_code == SIGNED_POWER and ia >= 1 and ia % 2 == 1)
    ):  # the polynomial moments of _kernel_args
        check_moments(inputs.law, ia, func="low_order_terms")


def _jacobi_pn(n: int, beta: float, x: np.ndarray):
    """``(P_n, P_{n-1})`` of the Jacobi polynomials ``P^(0, beta)`` at ``x`` (recurrence)."""
    p_prev = np.ones_like(x)
    p = 1.0 + (beta + 2.0) * (x - 1.0) / 2.0
    for k in range(2, n + 1):
        c = 2 * k + beta
        a1 = 2 * k * (k + beta) * (c - 2)
        p_prev, p = (
            p,
            (
                (c - 1) * (-beta * beta + (c - 2) * c * x) * p
                - 2 * (k - 1) * (k + beta - 1) * c * p_prev
            )
            / a1,
        )
    return p, p_prev


@functools.lru_cache(maxsize=64)
def _jacobi01(n_nodes: int, s: float):
    """Gauss-Jacobi rule ``(v, w)`` for ``int_0^1 u**s f(u) du ~ sum_k w_k f(v_k)``.

    SciPy's nodes polished by Newton steps on the three-term recurrence and
    weights from ``1 / ((1 - x**2) P_n'(x)**2)``, normalised to the exact
    total ``1 / (s + 1)``: about 10x more accurate than ``roots_jacobi``'s own
    weights (~1e-15 instead of ~1e-14 on the Gaussian half-line integrals).
    """
    n = n_nodes
    x, _ = roots_jacobi(n, 0.0, s)
    c = 2 * n + s
    for _ in range(3):
        p, p_prev = _jacobi_pn(n, s, x)
        dp = (n * (-s - c * x) * p + 2 * n * (n + s) * p_prev) / (c * (1.0 - x * x))
        x = x - p / dp
    p, p_prev = _jacobi_pn(n, s, x)
    dp = (n * (-s - c * x) * p + 2 * n * (n + s) * p_prev) / (c * (1.0 - x * x))
    w = 1.0 / ((1.0 - x * x) * dp * dp)
    w = w / math.fsum(w) / (s + 1.0)
    return np.ascontiguousarray((1.0 + x) / 2.0), np.ascontiguousarray(w)


@functools.lru_cache(maxsize=8)
def _legendre_table(nmax: int):
    """Row ``nq`` (1 <= nq <= nmax): the ``nq``-node Gauss-Legendre rule on [0, 1]."""
    gl_v = np.zeros((nmax + 1, nmax))
    gl_w = np.zeros((nmax + 1, nmax))
    for nq in range(1, nmax + 1):
        x, w = roots_legendre(nq)
        gl_v[nq, :nq] = (1.0 + x) / 2.0
        gl_w[nq, :nq] = w / 2.0
    return gl_v, gl_w


@functools.lru_cache(maxsize=1)
def _hermite_rule():
    """Gauss-Hermite rule for ``int f(x) phi_N(x) dx`` (standard normal density)."""
    x, w = roots_hermitenorm(_N_GH)
    return np.ascontiguousarray(x), np.ascontiguousarray(w * _INV_SQRT_2PI)


def _kernel_args(model: Model, inputs: SparseInputs):
    """Everything the kernel needs besides ``A``: law kind, constants, rules."""
    law = inputs.law
    act = model.act_code
    a = float(model.exponent)
    ia = int(model.int_exponent)
    if act == POWER:
        sneg = -1.0 if ia % 2 else 1.0
    elif act == SIGNED_POWER:
        sneg = -1.0
    elif act == LEAKY_RELU:  # -slope |t| on the left of the kink
        sneg = -float(model.param)
    else:
        sneg = 0.0
    mu1, mu2 = law.moment(1), law.moment(2)
    lo, hi = law.bounds
    one = np.zeros(1)
    sup = prb = ga_v = ga_w = gb_v = gb_w = gh_x = gh_w = binom2m = binomm = mom = one
    gl_v = gl_w = np.zeros((1, 1))
    if law.is_discrete:
        kind = _DISCRETE
        sup, prb = law.support, law.probs
        lo = hi = 0.0
    elif act in SMOOTH_CODES:
        kind = _SMOOTH_GAUSS if law.code == GAUSSIAN else _SMOOTH_UNIFORM
        if law.code == GAUSSIAN:
            lo = hi = 0.0
    elif law.code in (UNIFORM, UNIFORM_SYM):
        kind = _UNIFORM
        gl_v, gl_w = _legendre_table(max(_N_GL, ia + 1))
    elif law.code == GAUSSIAN:
        lo = hi = 0.0
        if act == POWER or (act == SIGNED_POWER and ia >= 1 and ia % 2 == 1):
            kind = _GAUSS_POLY  # phi(t) = t**m: exact polynomial moments
            binom2m = np.array([float(math.comb(2 * ia, r)) for r in range(2 * ia + 1)])
            binomm = np.array([float(math.comb(ia, r)) for r in range(ia + 1)])
            mom = np.array([law.moment(r) for r in range(2 * ia + 2)])
        else:
            kind = _GAUSS_QUAD
            ga_v, ga_w = _jacobi01(max(_N_GJ, math.ceil(a) + 10), a)
            gb_v, gb_w = _jacobi01(max(_N_GJ, math.ceil(2.0 * a) + 10), 2.0 * a)
            gh_x, gh_w = _hermite_rule()
    else:  # pragma: no cover - every ValueLaw is one of the above
        raise ValueError(f"unsupported value law {law!r}")
    arrs = [
        np.ascontiguousarray(z, dtype=np.float64)
        for z in (sup, prb, ga_v, ga_w, gb_v, gb_w, gh_x, gh_w, gl_v, gl_w, binom2m, binomm, mom)
    ]
    quad = (float(model.param), config.LOW_ORDER_QUAD_RTOL, config.LOW_ORDER_QUAD_SEGMENTS)
    return _LawPack(
        kind, act, a, ia, sneg, float(mu1), float(mu2), float(lo), float(hi), *arrs, *quad
    )


@njit
def loss0_terms(bias, imp, act):
    """``I_j phi(b_j)**2`` for every output ``j``: the loss at ``x = 0``, per feature.

    ``act`` is an :class:`~fastsuper.core.bundles.Activation`; the loss at
    ``x = 0`` is the sum of the terms in index order.
    """
    out = np.empty(bias.shape[0])
    for j in range(bias.shape[0]):
        f = phi(bias[j], act)
        out[j] = imp[j] * f * f
    return out


def _run_k1(model: Model, inputs: SparseInputs, store: bool):
    W = np.asarray(model.W, dtype=np.float64)
    AT = np.ascontiguousarray((W.T @ W).T)
    bias = np.ascontiguousarray(model.bias, dtype=np.float64)
    imp = np.ascontiguousarray(inputs.importance, dtype=np.float64)
    n = model.n
    loss1 = np.empty(n)
    gain1 = np.empty(n)
    qerr = np.empty(n)
    mat = np.zeros((n, n) if store else (1, 1))
    kernel = _k1_columns.pick(n, config.LOW_ORDER_SERIAL_BELOW)
    kernel(AT, bias, imp, _kernel_args(model, inputs), loss1, gain1, qerr, mat, store)
    bad = ~(np.isfinite(loss1) & np.isfinite(gain1))
    if bad.any():
        i = int(np.argmax(bad))
        raise FloatingPointError(
            f"the k = 1 loss overflowed for feature {i} (loss1[{i}] = {loss1[i]}); "
            "the weights, bias or exponent are too large for float64"
        )
    return loss1, gain1, (mat if store else None), qerr


def k1_conditional_loss(
    model: Model, inputs: SparseInputs, *, per_output: bool = False
) -> np.ndarray:
    """Conditional loss given that exactly one feature is active.

    Parameters
    ----------
    model : Model
        The autoencoder (any activation, with or without bias).
    inputs : SparseInputs
        The input law; only its value law and importances matter here.
    per_output : bool, default False
        Return the ``(n, n)`` matrix ``M`` with ``M[j, i]`` the contribution of
        output ``j`` when only ``i`` is active (``I_i E(xi - phi(A_ii xi + b_i))**2``
        on the diagonal, ``I_j E phi(A_ji xi + b_j)**2`` off it) instead of its
        column sums.

    Returns
    -------
    numpy.ndarray
        ``loss1`` of shape (n,), ``loss1[i] = E[loss | only i active]``
        (a sum over outputs), or the matrix ``M`` (``M.sum(axis=0) == loss1``).

    Examples
    --------
    >>> import numpy as np, fastsuper as fs
    >>> from fastsuper.exact.low_order import k1_conditional_loss
    >>> model = fs.Model(np.eye(2), activation="relu_power", exponent=1)
    >>> k1_conditional_loss(model, fs.SparseInputs(2, p=0.1, values="uniform_sym"))
    array([0.16666667, 0.16666667])
    """
    _check(model, inputs)
    loss1, _, mat, _ = _run_k1(model, inputs, per_output)
    return mat if per_output else loss1


def low_order_terms(model: Model, inputs: SparseInputs) -> LowOrderTerms:
    """Exact k = 0 and k = 1 terms of the loss decomposition (THEORY §4).

    Parameters
    ----------
    model : Model
        The autoencoder: any activation (``power``, ``signed_power``,
        ``relu_power``, integer or real exponent; the smooth and
        piecewise-linear ones, ``gelu`` ... ``identity``), with or without bias.
        Computed in float64 whatever the dtype of ``W``.
    inputs : SparseInputs
        Input law: any value law, per-feature ``p`` and importances; the
        "exactly k" pattern gives ``P(K=0) = [k == 0]``, ``P(only i) = [k == 1] / n``.

    Returns
    -------
    LowOrderTerms
        ``p0, loss0, gain0, p1, loss1, gain1, p_ge2`` and the k <= 1 parts
        ``lower_bound`` (a rigorous lower bound of the loss) and ``gain_le1``.
        Losses and gains are sums over features (``mean_over_features()``
        divides by ``n``).

    Notes
    -----
    Exact (finite sums, closed forms or exact Gauss rules) for discrete
    laws, for uniform laws and for Gaussian values with ``power``
    activations -- except that a uniform law with a real exponent and the
    kink at least the support's length outside the support uses
    Gauss-Legendre converged to round-off.  Gaussian values with
    ``signed_power``/``relu_power`` (integer exponents included) use
    truncated Gauss-Jacobi and Gauss-Hermite rules, measured within 1.2e-14
    relative of 30-digit references (see the module docstring).  Cost
    ``O(n**2)`` times at most ~100 quadrature nodes per pair, compiled and
    parallel over features (timings in docs/benchmarks.md).

    Examples
    --------
    >>> import numpy as np
    >>> from fastsuper.core.model import Model
    >>> from fastsuper.core.laws import SparseInputs
    >>> model = Model(np.eye(2), activation="power", exponent=1)
    >>> terms = low_order_terms(model, SparseInputs(2, p=0.5, values="rademacher"))
    >>> terms.p0, terms.p1.tolist(), terms.lower_bound
    (0.25, [0.25, 0.25], 0.0)
    >>> model = Model(np.eye(2), b=[0.5, 0.5], activation="relu_power", exponent=1)
    >>> terms = low_order_terms(model, SparseInputs(2, p=0.5, values="constant"))
    >>> terms.loss0, terms.loss1.tolist(), terms.lower_bound
    (0.5, [0.5, 0.5], 0.375)
    """
    _check(model, inputs)
    bias = np.ascontiguousarray(model.bias, dtype=np.float64)
    imp = np.ascontiguousarray(inputs.importance, dtype=np.float64)
    terms0 = loss0_terms(bias, imp, activation(model, np.float64))
    loss0 = float(np.cumsum(terms0)[-1])  # in index order
    if not math.isfinite(loss0):
        raise FloatingPointError(
            f"the k = 0 loss sum_j I_j phi(b_j)**2 overflowed ({loss0}); the bias or exponent "
            "is too large for float64"
        )
    loss1, gain1, _, qerr = _run_k1(model, inputs, False)
    n = model.n
    if inputs.pattern == "exactly_k":
        k = inputs.k
        p0 = 1.0 if k == 0 else 0.0
        p1 = np.full(n, 1.0 / n) if k == 1 else np.zeros(n)
        p_ge2 = 1.0 if k >= 2 else 0.0
    else:
        p0, p1, p_ge2 = _strata_probs(np.ascontiguousarray(inputs.p, dtype=np.float64))
        p0, p_ge2 = float(p0), float(p_ge2)
    return LowOrderTerms(
        p0=p0,
        loss0=loss0,
        gain0=0.0 - loss0,
        p1=p1,
        loss1=loss1,
        gain1=gain1,
        p_ge2=p_ge2,
        quad_error=float(np.dot(p1, qerr)),
    )
