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

``relu`` is ``relu_power`` with its exponent fixed at 1 (the same kernel code).
An exponent left out (``None`` in :class:`~fastsuper.core.model.Model`,
:func:`fastsuper.fit`, the sweeps and the command line) is the activation's
own default, :data:`DEFAULT_EXPONENTS`: 3 for ``power`` and ``signed_power``
(the paper's cubic model), 1 for ``relu_power`` and ``relu`` (Elhage et al.'s
ReLU).
"""

from __future__ import annotations

from fastsuper.core.jit import njit

POWER = 0
SIGNED_POWER = 1
RELU_POWER = 2

#: Public activation names and their kernel codes (``"relu"`` is ``"relu_power"`` with exponent 1).
ACTIVATIONS = {
    "power": POWER,
    "signed_power": SIGNED_POWER,
    "relu_power": RELU_POWER,
    "relu": RELU_POWER,
}

#: The exponent of each activation when none is given (one default per activation, everywhere).
DEFAULT_EXPONENTS = {"power": 3, "signed_power": 3, "relu_power": 1, "relu": 1}

#: Activations whose exponent is fixed (a different one is an error).
FIXED_EXPONENTS = {"relu": 1}


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


@njit
def phi(t, act):
    """The activation ``act`` (an :class:`~fastsuper.core.bundles.Activation`) at ``t``.

    Same dtype as ``t``.
    """
    code, a, ia = act
    if code == POWER:
        return ipow(t, ia)
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
    code, a, ia = act
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
