"""Exact population loss of tiny ReLU models: a finite sum over activity patterns.

For ``n <= 3`` features, ReLU output with bias, independent Bernoulli(``p_i``)
activity and U[0,1] values (Elhage et al.'s setting, THEORY §6 and §9), the
loss ``L = E sum_j I_j (x_j - relu((A x)_j + b_j))**2`` is a sum over the
``2**n`` activity patterns ``S`` (weight ``prod_{i in S} p_i prod_{i not in
S} (1 - p_i)``) of integrals over the unit cube ``[0, 1]**|S|`` of the active
values ``t``.  With ``s = c . t + b_j`` (``c_i = A_ji``, ``i in S``) and
target ``y = t_j`` (``j in S``) or 0::

    E (y - relu(s))**2 = E y**2 + E[(s**2 - 2 y s) 1{s > 0}]
    d/dc_i = 2 E[(s - y) t_i 1{s > 0}],   d/db_j = 2 E[(s - y) 1{s > 0}]

so loss and gradient need only the moments of order <= 2 of the uniform law
on the cube cut by the half-space ``s > 0``: ``M0 = E 1{s>0}``, ``M1_i = E
t_i 1{s>0}``, ``M2_il = E t_i t_l 1{s>0}``.  These are computed by exact
piecewise integration: the last coordinate in closed form (an interval), each
outer coordinate by 3-node Gauss-Legendre on the pieces between the points
where the cutting hyperplane passes a vertex of the inner cube.  Between those
points the inner integral is a polynomial of degree <= 4 in the outer
coordinate, which the 3-node rule integrates exactly, so the moments -- and
with them the loss and its gradient -- are exact up to floating-point rounding
(about 1e-15 relative to the loss scale ``sum_j I_j p_j / 3``; the loss is a
difference of such terms, so a loss near 0 has an *absolute* error of that
size).  ``|S| <= 3`` keeps it to at most 5 x 3 x 3 x 3 inner intervals per
pattern and output.

:func:`pattern_loss` and :func:`pattern_loss_grad` take a model and an input
law; :func:`pattern_terms` splits the loss by the number of active features
``k`` (its ``k <= 1`` part is what :func:`fastsuper.low_order_terms`
computes).  The loss is a **sum** over features (divide by ``n`` for Elhage's
mean).

Examples
--------
The antipodal pair of THEORY §9 at ``p = 0.1``, importances 1 and 1/2:
``(1 + r) p**2 / 6``.

>>> import numpy as np, fastsuper as fs
>>> from fastsuper.exact.patterns import pattern_loss
>>> model = fs.Model([[1.0, -1.0]], b=[0.0, 0.0], activation="relu")
>>> inputs = fs.SparseInputs(2, p=0.1, values="uniform", importance=[1.0, 0.5])
>>> float(np.round(pattern_loss(model, inputs) / (1.5 * 0.1**2 / 6), 12))
1.0
"""

from __future__ import annotations

import numpy as np

from fastsuper.core.arguments import check_model_inputs
from fastsuper.core.jit import njit
from fastsuper.core.laws import UNIFORM, SparseInputs
from fastsuper.core.model import Model

__all__ = ["MAX_FEATURES", "cut_moments", "pattern_loss", "pattern_loss_grad", "pattern_terms"]

#: the largest number of features :func:`pattern_loss` handles
MAX_FEATURES = 3

# 3-node Gauss-Legendre on [0, 1] (exact for polynomials of degree <= 5)
_GL_X = np.array([0.5 - 0.5 * np.sqrt(0.6), 0.5, 0.5 + 0.5 * np.sqrt(0.6)])
_GL_W = np.array([5.0 / 18.0, 8.0 / 18.0, 5.0 / 18.0])


# --------------------------------------------------------------------------
# moments of the unit cube cut by a half-space (plain njit, strict IEEE)


@njit
def _interval(c, b):
    """``[lo, hi]`` of ``t in [0, 1]`` with ``c t + b > 0`` (``lo >= hi``: empty)."""
    if c == 0.0:
        return (0.0, 1.0) if b > 0.0 else (0.0, 0.0)
    t0 = -b / c
    if c > 0.0:
        return min(max(t0, 0.0), 1.0), 1.0
    return 0.0, min(max(t0, 0.0), 1.0)


@njit
def _moments1(c, b):
    """``(M0, M1, M2)`` of U[0,1] on ``c t + b > 0``: ``int t**r dt`` over the interval."""
    lo, hi = _interval(c, b)
    if hi <= lo:
        return 0.0, 0.0, 0.0
    return hi - lo, 0.5 * (hi - lo) * (hi + lo), (hi * hi * hi - lo * lo * lo) / 3.0


@njit
def _breaks(c0, b, cr, k_rest, out):
    """Sorted cut points in (0, 1) of the outer coordinate: where ``c0 t + b + cr . v = 0``
    for a vertex ``v`` of the inner cube ``{0, 1}**k_rest``; ``out[0] = 0``, then the
    points, then 1.  Returns the number of pieces."""
    m = 1
    out[0] = 0.0
    if c0 != 0.0:
        for mask in range(1 << k_rest):
            s = b
            for q in range(k_rest):
                if (mask >> q) & 1:
                    s += cr[q]
            t = -s / c0
            if 0.0 < t < 1.0:
                out[m] = t
                m += 1
    out[m] = 1.0
    out[: m + 1].sort()
    return m


@njit
def cut_moments(c, b, M1, M2):
    """Moments of order <= 2 of the uniform law on ``[0, 1]**k`` cut by ``c . t + b > 0``.

    ``k = len(c) <= 3``.  Writes ``M1[i] = E t_i 1{s > 0}`` and ``M2[i, l] = E t_i
    t_l 1{s > 0}`` (the leading ``k`` entries) and returns ``M0 = P(s > 0)``; see the
    module docstring for why the piecewise Gauss-Legendre rule is exact.
    """
    k = c.shape[0]
    if k == 0:
        return 1.0 if b > 0.0 else 0.0
    if k == 1:
        m0, m1, m2 = _moments1(c[0], b)
        M1[0] = m1
        M2[0, 0] = m2
        return m0
    inner1 = np.zeros(k - 1)
    inner2 = np.zeros((k - 1, k - 1))
    cuts = np.empty((1 << (k - 1)) + 2)
    pieces = _breaks(c[0], b, c[1:], k - 1, cuts)
    M0 = 0.0
    M1[:k] = 0.0
    M2[:k, :k] = 0.0
    for q in range(pieces):
        a, h = cuts[q], cuts[q + 1] - cuts[q]
        if h <= 0.0:
            continue
        for g in range(3):
            t = a + h * _GL_X[g]
            w = h * _GL_W[g]
            m0 = cut_moments(c[1:], b + c[0] * t, inner1, inner2)
            M0 += w * m0
            M1[0] += w * t * m0
            M2[0, 0] += w * t * t * m0
            for i in range(k - 1):
                M1[i + 1] += w * inner1[i]
                M2[0, i + 1] += w * t * inner1[i]
                for j in range(k - 1):
                    M2[i + 1, j + 1] += w * inner2[i, j]
    for i in range(1, k):
        M2[i, 0] = M2[0, i]
    return M0


# --------------------------------------------------------------------------
# the sum over patterns


@njit
def _output_term(c, b, loc, M1, M2, grad):
    """Loss of one output given one pattern, and (into ``grad``) its gradient in ``(c, b)``.

    ``loc``: the output's position among the active features, or -1 (target 0).
    """
    k = c.shape[0]
    M0 = cut_moments(c, b, M1, M2)
    s2 = b * b * M0
    sy = 0.0
    for i in range(k):
        s2 += 2.0 * b * c[i] * M1[i]
        for q in range(k):
            s2 += c[i] * c[q] * M2[i, q]
    gb = 2.0 * b * M0
    for i in range(k):
        gb += 2.0 * c[i] * M1[i]
        g = 2.0 * b * M1[i]
        for q in range(k):
            g += 2.0 * c[q] * M2[i, q]
        grad[i] = g
    loss = s2
    if loc >= 0:
        sy = b * M1[loc]
        for i in range(k):
            sy += c[i] * M2[i, loc]
            grad[i] -= 2.0 * M2[i, loc]
        gb -= 2.0 * M1[loc]
        loss += 1.0 / 3.0 - 2.0 * sy
    grad[k] = gb
    return loss


@njit
def pattern_kernel(A, bias, p, imp, G, gb, by_k):
    """Loss ``sum_S P(S) sum_j I_j E[...]``, with ``dL/dA`` into ``G`` and ``dL/db`` into
    ``gb`` (both overwritten) and the loss split by ``k = |S|`` into ``by_k`` (n + 1)."""
    n = A.shape[0]
    G[:, :] = 0.0
    gb[:] = 0.0
    by_k[:] = 0.0
    M1 = np.zeros(n)
    M2 = np.zeros((n, n))
    grad = np.zeros(n + 1)
    idx = np.zeros(n, np.int64)
    for mask in range(1 << n):
        prob = 1.0
        k = 0
        for i in range(n):
            if (mask >> i) & 1:
                prob *= p[i]
                idx[k] = i
                k += 1
            else:
                prob *= 1.0 - p[i]
        if prob == 0.0:
            continue
        c = np.empty(k)
        for j in range(n):
            loc = -1
            for q in range(k):
                c[q] = A[j, idx[q]]
                if idx[q] == j:
                    loc = q
            term = _output_term(c, bias[j], loc, M1, M2, grad)
            wt = prob * imp[j]
            by_k[k] += wt * term
            for q in range(k):
                G[j, idx[q]] += wt * grad[q]
            gb[j] += wt * grad[k]
    total = 0.0
    for k in range(n + 1):
        total += by_k[k]
    return total


# --------------------------------------------------------------------------
# Python layer


def _check(model, inputs, func: str) -> None:
    check_model_inputs(model, inputs, func=func)
    pre = f"{func}: "
    if model.n > MAX_FEATURES:
        raise ValueError(f"{pre}n = {model.n} features; the sum over patterns handles n <= 3")
    if model.activation not in ("relu", "relu_power") or model.exponent != 1:
        raise ValueError(
            f"{pre}needs the ReLU (activation='relu'), got activation={model.activation!r}, "
            f"exponent={model.exponent:g}"
        )
    if inputs.law.code != UNIFORM:
        raise ValueError(f"{pre}needs values='uniform' (U[0,1]), got {inputs.law.name!r}")
    if inputs.pattern != "bernoulli":
        raise ValueError(f"{pre}needs independent features (p), not exactly k active")


def _run(model: Model, inputs: SparseInputs):
    W = np.asarray(model.W, dtype=np.float64)
    A = W.T @ W
    n = model.n
    G = np.empty((n, n))
    gb = np.empty(n)
    by_k = np.empty(n + 1)
    bias = np.ascontiguousarray(model.bias, dtype=np.float64)
    p = np.ascontiguousarray(inputs.p, dtype=np.float64)
    imp = np.ascontiguousarray(inputs.importance, dtype=np.float64)
    loss = pattern_kernel(np.ascontiguousarray(A), bias, p, imp, G, gb, by_k)
    return loss, W @ (G + G.T), gb, by_k


def pattern_loss(model: Model, inputs: SparseInputs) -> float:
    """Exact population loss of a ReLU model with ``n <= 3`` features and U[0,1] values.

    Parameters
    ----------
    model : Model
        ``activation="relu"`` (or ``"relu_power"`` with exponent 1), any ``d``, with or
        without bias; computed in float64.
    inputs : SparseInputs
        ``n <= 3`` independent features (``p``, per feature allowed), ``values="uniform"``,
        any importances.

    Returns
    -------
    float
        ``L = E sum_j I_j (x_j - x_hat_j)**2`` (a sum over features), exact up to
        rounding (module docstring).

    Examples
    --------
    One feature kept on its own dimension, the other output at its mean (THEORY §9):
    ``r (p/3 - p**2/4)``.

    >>> import fastsuper as fs
    >>> from fastsuper.exact.patterns import pattern_loss
    >>> p, r = 0.3, 0.5
    >>> model = fs.Model([[1.0, 0.0]], b=[0.0, p / 2], activation="relu")
    >>> inputs = fs.SparseInputs(2, p=p, values="uniform", importance=[1.0, r])
    >>> abs(pattern_loss(model, inputs) - r * (p / 3 - p**2 / 4)) < 1e-15
    True
    """
    _check(model, inputs, "pattern_loss")
    return float(_run(model, inputs)[0])


def pattern_loss_grad(model: Model, inputs: SparseInputs) -> tuple[float, np.ndarray, np.ndarray]:
    """:func:`pattern_loss` and its exact gradient in ``W`` and ``b``.

    Parameters
    ----------
    model, inputs
        As for :func:`pattern_loss`.

    Returns
    -------
    loss : float
    grad_W : ndarray of shape (d, n)
        ``dL/dW = W (G + G.T)`` with ``G = dL/dA``.
    grad_b : ndarray of shape (n,)
        ``dL/db`` (returned also for a model without bias).

    Examples
    --------
    >>> import fastsuper as fs
    >>> from fastsuper.exact.patterns import pattern_loss_grad
    >>> model = fs.Model([[1.0, -1.0]], b=[0.0, 0.0], activation="relu")
    >>> loss, gW, gb = pattern_loss_grad(model, fs.SparseInputs(2, p=0.5, values="uniform"))
    >>> bool(gb[0] < 0)  # a small positive bias lowers the antipodal pair's loss
    True
    """
    _check(model, inputs, "pattern_loss_grad")
    loss, gW, gb, _ = _run(model, inputs)
    return float(loss), gW, gb


def pattern_terms(model: Model, inputs: SparseInputs) -> np.ndarray:
    """The loss split by the number ``k`` of active features: ``P(K = k) L_k``, ``k = 0..n``.

    Parameters
    ----------
    model, inputs
        As for :func:`pattern_loss`.

    Returns
    -------
    ndarray of shape (n + 1,)
        Entry ``k`` is the sum over the patterns with ``k`` active features of their
        weight times their loss; the entries add up to :func:`pattern_loss`.

    Examples
    --------
    >>> import fastsuper as fs
    >>> from fastsuper.exact.patterns import pattern_terms
    >>> model = fs.Model([[1.0, -1.0]], b=[0.0, 0.0], activation="relu")
    >>> terms = pattern_terms(model, fs.SparseInputs(2, p=0.5, values="uniform"))
    >>> terms.round(12).tolist()  # only both active costs: 2 * 0.25 / 6
    [0.0, 0.0, 0.083333333333]
    """
    _check(model, inputs, "pattern_terms")
    return _run(model, inputs)[3]
