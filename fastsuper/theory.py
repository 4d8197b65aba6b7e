"""Bounds and extremal constructions of the theory (THEORY §5), as functions.

Everything here is about the ``power`` model ``x_hat = (A x)**m`` with
``A = W.T @ W``, no bias, unit importances and independent features with
one probability ``p`` (THEORY §5); gains are sums over features.

Constants and first-order theory (THEORY §5.3; also in :mod:`fastsuper.analysis`)
    :func:`sphere_dimension` ``D(d, m)``, :func:`kappa` ``kappa(mu, m)``,
    :func:`first_order_objective` ``F(A)``, :func:`first_order_cap`
    ``kappa min(n, D)``, :func:`random_frame_value` ``kappa n D/(n+D-1)``,
    :func:`random_frame_norm`.
Exact values at every ``p``
    :func:`unsuperposed_gain` (THEORY §5.1), :func:`linear_optimum` (the
    best gain of the linear model), :func:`best_scale` (the best multiple of
    a given ``W``, closed form).
The paper's Theorem 2.2 (orders only, unit constants)
    :func:`paper_orders`; the rank counts :func:`rank_counts`.
Constructions
    :func:`unsuperposed`, :func:`random_frame_best`,
    :func:`equally_spaced_lines` (``d = 2``), :func:`icosahedron_lines`
    (``d = 3``); the last two attain the first-order cap exactly.
"""

from __future__ import annotations

import math

import numpy as np

from fastsuper.core import arguments
from fastsuper.core import validation as v
from fastsuper.exact.first_order import (
    first_order_cap,
    first_order_objective,
    kappa,
    random_frame,
    random_frame_norm,
    random_frame_value,
    sphere_dimension,
)

__all__ = [
    "best_scale",
    "equally_spaced_lines",
    "first_order_cap",
    "first_order_objective",
    "icosahedron_lines",
    "kappa",
    "linear_optimum",
    "optimal_norm",
    "paper_orders",
    "random_frame",
    "random_frame_best",
    "random_frame_norm",
    "random_frame_value",
    "rank_counts",
    "sphere_dimension",
    "unsuperposed",
    "unsuperposed_gain",
]


# --------------------------------------------------------------------------
# exact values at every p


def unsuperposed_gain(n, d, m, p, law="gaussian") -> float:
    """Best gain without superposition, ``p kappa min(n, d)`` (THEORY §5.1).

    With ``A`` diagonal the outputs do not interact and the gain is exactly
    ``p sum_i (2 mu_{m+1} A_ii**m - mu_{2m} A_ii**(2m))`` at every ``p``,
    largest at ``A_ii**m = mu_{m+1} / mu_{2m}`` on ``min(n, d)`` features.

    Parameters
    ----------
    n, d, m : int
        Features, hidden dimension, exponent (integers ``>= 1``).
    p : float
        Feature probability in ``(0, 1]``.
    law : ValueLaw or str, default "gaussian"
        Value law.

    Returns
    -------
    float

    Examples
    --------
    >>> from fastsuper.theory import unsuperposed_gain
    >>> round(unsuperposed_gain(6000, 10, 3, 0.01), 12)  # 0.01 * 0.6 * 10
    0.06
    """
    func = "unsuperposed_gain"
    n = v.check_int("n", n, minimum=1, func=func)
    d = v.check_int("d", d, minimum=1, func=func)
    p = v.check_probability("p", p, positive=True, func=func)
    return p * kappa(law, m) * min(n, d)


def linear_optimum(n, d, p, law="gaussian") -> float:
    """Best gain of the linear model ``x_hat = W.T W x`` (``m = 1``, no bias).

    The gain is ``tr(2 A M - A M A)`` with ``M = E x x.T``; over PSD ``A``
    of rank ``<= d`` it is largest for the projection on the top ``d``
    eigenvectors of ``M``, with value the sum of the ``min(n, d)`` largest
    eigenvalues.  ``M = (p mu_2 - p**2 mu_1**2) I + p**2 mu_1**2 11.T``, so
    the value is ``min(n, d) (p mu_2 - p**2 mu_1**2) + n p**2 mu_1**2``
    (``p mu_2 min(n, d)`` for centred laws, THEORY §5.1).

    Parameters
    ----------
    n, d : int
        Features and hidden dimension.
    p : float
        Feature probability in ``(0, 1]``.
    law : ValueLaw or str, default "gaussian"
        Value law.

    Returns
    -------
    float

    Examples
    --------
    >>> from fastsuper.theory import linear_optimum
    >>> linear_optimum(5, 2, 0.5, "gaussian")  # p mu_2 d
    1.0
    >>> round(linear_optimum(5, 2, 0.5, "constant"), 12)  # 2 * 0.25 + 5 * 0.25
    1.75
    """
    func = "linear_optimum"
    n = v.check_int("n", n, minimum=1, func=func)
    d = v.check_int("d", d, minimum=1, func=func)
    p = v.check_probability("p", p, positive=True, func=func)
    law = arguments.check_law("law", law, func=func)
    mu1, mu2 = law.moment(1), law.moment(2)
    var = p * mu2 - p * p * mu1 * mu1
    return min(n, d) * var + n * p * p * mu1 * mu1


def best_scale(W, p, *, m=3, values="gaussian"):
    """The best multiple ``s W`` of a weight matrix, and its exact gain (closed form).

    Without bias, replacing ``A`` by ``t A`` (``W`` by ``sqrt(t) W``) turns
    the exact gain into ``alpha t**m - beta t**(2m)`` with
    ``alpha = 2 sum_j E[x_j (A x)_j**m]`` and ``beta = sum_j E (A x)_j**(2m)``
    (THEORY §3), largest at ``t**m = alpha / (2 beta)`` with value
    ``alpha**2 / (4 beta)``; one exact evaluation gives both.

    Parameters
    ----------
    W : array_like of shape (d, n)
        Weights (only their directions and relative sizes matter).
    p : float
        Feature probability in ``(0, 1]`` (independent features, unit importances).
    m : int, default 3
        Exponent of the ``power`` activation.
    values : str or ValueLaw, default "gaussian"
        Value law.

    Returns
    -------
    W_best : ndarray of shape (d, n)
        ``sqrt(t) W`` at the best ``t`` (``0 * W`` when ``alpha <= 0``).
    gain : float
        Its exact gain ``alpha**2 / (4 beta)`` (0 when ``alpha <= 0``).

    Examples
    --------
    >>> import numpy as np
    >>> from fastsuper.theory import best_scale
    >>> W, g = best_scale(np.eye(3), 0.01, m=3)  # the unsuperposed optimum
    >>> round(g, 12), round(float(W[0, 0]) ** 6, 12)  # p kappa d; A_ii**3 = mu_4 / mu_6
    (0.018, 0.2)
    """
    from fastsuper.core.laws import SparseInputs
    from fastsuper.core.model import Model
    from fastsuper.exact.api import moment_terms

    func = "best_scale"
    W = v.check_weights("W", W, func=func)
    m = v.check_int("m", m, minimum=1, func=func)
    p = v.check_probability("p", p, positive=True, func=func)
    law = arguments.check_law("values", values, func=func)
    inputs = SparseInputs(W.shape[1], p=p, values=law)
    terms = moment_terms(Model(W, exponent=m), inputs)
    exzm, ez2m = terms.exzm, terms.ez2m
    alpha = 2.0 * math.fsum(exzm.tolist())
    beta = math.fsum(ez2m.tolist())
    if not (alpha > 0 and beta > 0):
        return 0.0 * W, 0.0
    t = (alpha / (2.0 * beta)) ** (1.0 / m)
    return math.sqrt(t) * W, alpha * alpha / (4.0 * beta)


# --------------------------------------------------------------------------
# the paper's orders and the rank counts


def paper_orders(d, m, p) -> dict:
    """The orders of the paper's Theorem 2.2, with unit constants (THEORY §5.2).

    ``C1 min(p d**m, d p**(1/m)) <= sup_W L~ <= C2 p d**m`` (and
    ``<= C3 d`` for strongly log-concave laws) for ``d > d0``, ``n > d**m``;
    the constants are unknown, so these are orders, not bounds.

    Parameters
    ----------
    d, m : int
        Hidden dimension and exponent.
    p : float or array_like
        Feature probabilities in ``(0, 1]``.

    Returns
    -------
    dict
        ``"sparse"``: ``p d**m``; ``"dense"``: ``d p**(1/m)``;
        ``"lower"``: their minimum; ``"saturation"``: ``d`` (arrays when
        ``p`` is one).

    Examples
    --------
    >>> from fastsuper.theory import paper_orders
    >>> o = paper_orders(10, 3, 1e-3)
    >>> round(o["sparse"], 9), round(o["dense"], 9), round(o["lower"], 9), o["saturation"]
    (1.0, 1.0, 1.0, 10.0)
    """
    func = "paper_orders"
    d = v.check_int("d", d, minimum=1, func=func)
    m = v.check_int("m", m, minimum=1, func=func)
    arr = v.check_probabilities("p", p, positive=True, func=func)
    if arr.size == 0:
        raise ValueError(f"{func}: p must hold at least one probability in (0, 1], got {p!r}")
    sparse = arr * float(d) ** m
    dense = d * arr ** (1.0 / m)
    out = {"sparse": sparse, "dense": dense, "lower": np.minimum(sparse, dense)}
    if arr.ndim == 0:
        out = {k: float(val) for k, val in out.items()}
    out["saturation"] = float(d)
    return out


def rank_counts(d, m) -> dict:
    """Dimension counts beside ``D(d, m)``: ``d**m`` and ``C(d + m - 1, m)``.

    ``d**m`` is the paper's rank bound on ``A^∘m``; ``C(d + m - 1, m)`` the
    dimension of the symmetric ``m``-tensors (homogeneous polynomials of
    degree ``m``), a sharper rank bound; ``D(d, m)`` (THEORY §5.3) is
    smaller than both.

    Examples
    --------
    >>> from fastsuper.theory import rank_counts
    >>> rank_counts(10, 3)
    {'d^m': 1000, 'symmetric': 220, 'D': 112.0}
    """
    func = "rank_counts"
    d = v.check_int("d", d, minimum=1, func=func)
    m = v.check_int("m", m, minimum=1, func=func)
    return {"d^m": d**m, "symmetric": math.comb(d + m - 1, m), "D": sphere_dimension(d, m)}


# --------------------------------------------------------------------------
# constructions


def optimal_norm(W, m, law="gaussian"):
    """Common column norm maximising the first-order objective ``F`` of unit directions.

    For unit columns ``u_i`` and ``A = c U``, ``F = 2 mu_{m+1} c**m n -
    mu_{2m} c**(2m) S`` with ``S = sum_{i,j} (u_i . u_j)**(2m)``; the best
    ``c**m = mu_{m+1} n / (mu_{2m} S)`` gives ``F = kappa n**2 / S``.
    Returns the column norm ``sqrt(c)``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastsuper.theory import optimal_norm
    >>> round(optimal_norm(np.eye(2), 3) ** 6, 12)  # mu_4 / mu_6
    0.2
    """
    func = "optimal_norm"
    W = v.check_weights("W", W, func=func)
    m = v.check_int("m", m, minimum=1, func=func)
    law = arguments.check_law("law", law, func=func)
    U = W / np.linalg.norm(W, axis=0)
    S = float(np.sum((U.T @ U) ** (2 * m)))
    num, den = law.moment(m + 1), law.moment(2 * m)
    if num <= 0 or den <= 0:
        raise ValueError(
            f"{func}: no positive optimum for law {law!r} and m = {m}: "
            f"mu_{{m+1}} = {num} and mu_{{2m}} = {den} must both be > 0"
        )
    c_m = num * W.shape[1] / (den * S)
    return float(c_m ** (1.0 / (2 * m)))


def _scaled(U, m, law, norm):
    if norm is None:
        norm = optimal_norm(U, m, law)
    return norm * U


def unsuperposed(n, d, m, law="gaussian") -> np.ndarray:
    """THEORY §5.1's optimum: ``min(n, d)`` orthogonal columns with ``A_ii**m = mu_{m+1}/mu_{2m}``.

    Returns ``W`` of shape ``(d, n)``; the other columns are zero.

    Examples
    --------
    >>> from fastsuper.theory import unsuperposed
    >>> W = unsuperposed(4, 2, 3)
    >>> W.shape, round(float(W[0, 0]) ** 6, 12), float(abs(W[:, 2:]).sum())
    ((2, 4), 0.2, 0.0)
    """
    func = "unsuperposed"
    n = v.check_int("n", n, minimum=1, func=func)
    d = v.check_int("d", d, minimum=1, func=func)
    m = v.check_int("m", m, minimum=1, func=func)
    law = arguments.check_law("law", law, func=func)
    ratio = law.moment(m + 1) / law.moment(2 * m) if law.moment(2 * m) > 0 else 0.0
    W = np.zeros((d, n))
    k = min(n, d)
    W[np.arange(k), np.arange(k)] = math.sqrt(max(ratio, 0.0) ** (1.0 / m))
    return W


def random_frame_best(n, d, m, law="gaussian", seed=0) -> np.ndarray:
    """``n`` uniformly random directions with THEORY §5.3's best common norm.

    Its expected first-order objective is :func:`random_frame_value`.

    Examples
    --------
    >>> import numpy as np
    >>> from fastsuper.theory import random_frame_best, random_frame_norm
    >>> W = random_frame_best(50, 4, 3, seed=1)
    >>> bool(np.allclose(np.linalg.norm(W, axis=0), random_frame_norm(50, 4, 3, "gaussian")))
    True
    """
    return random_frame(n, d, random_frame_norm(n, d, m, law), seed)


def equally_spaced_lines(n, m=3, law="gaussian", *, norm=None) -> np.ndarray:
    """``n`` lines in the plane at angles ``pi k / n``, at the best common norm (``d = 2``).

    For ``n >= m + 1`` they satisfy ``sum_{i,j} (u_i . u_j)**(2m) = n**2 /
    D(2, m)`` (the mean of ``cos**(2m)`` over the angles is exact), the
    equality case of THEORY §5.3: at the best norm ``F = kappa D(2, m)``,
    the first-order cap.

    Parameters
    ----------
    n : int
        Number of lines (``>= 1``).
    m : int, default 3
        Exponent (for the norm).
    law : ValueLaw or str, default "gaussian"
        Value law (for the norm).
    norm : float, optional
        Common column norm (default :func:`optimal_norm`).

    Returns
    -------
    ndarray of shape (2, n)

    Examples
    --------
    >>> from fastsuper.theory import equally_spaced_lines, first_order_objective
    >>> W = equally_spaced_lines(5, 3)
    >>> round(first_order_objective(W, "gaussian", 3), 12)  # kappa D(2, 3) = 0.6 * 3.2
    1.92
    """
    func = "equally_spaced_lines"
    n = v.check_int("n", n, minimum=1, func=func)
    t = math.pi * np.arange(n) / n
    return _scaled(np.stack([np.cos(t), np.sin(t)]), m, law, norm)


def icosahedron_lines(m=2, law="constant", *, norm=None) -> np.ndarray:
    """The 6 lines through antipodal vertices of a regular icosahedron (``d = 3``).

    Any two make the angle with ``|cos| = 1/sqrt(5)``, so ``sum_{i,j}
    (u_i . u_j)**4 = 6 + 30/25 = 36/5 = n**2 / D(3, 2)``: the equality case of
    THEORY §5.3 for ``m = 2`` (``F = kappa D(3, 2) = 5 kappa`` at the best
    norm).  ``m = 2`` needs a law with ``mu_3 > 0`` (e.g. ``"constant"`` or
    ``"uniform"``) for ``kappa > 0``.

    Parameters
    ----------
    m : int, default 2
        Exponent (for the norm).
    law : ValueLaw or str, default "constant"
        Value law (for the norm).
    norm : float, optional
        Common column norm (default :func:`optimal_norm`).

    Returns
    -------
    ndarray of shape (3, 6)

    Examples
    --------
    >>> from fastsuper.theory import icosahedron_lines, first_order_objective
    >>> round(first_order_objective(icosahedron_lines(), "constant", 2), 12)  # kappa D(3, 2)
    5.0
    """
    phi = (1.0 + math.sqrt(5.0)) / 2.0
    V = np.array(
        [[0, 1, phi], [0, 1, -phi], [1, phi, 0], [1, -phi, 0], [phi, 0, 1], [-phi, 0, 1]],
        dtype=np.float64,
    ).T
    V /= np.linalg.norm(V, axis=0)
    return _scaled(V, m, law, norm)
