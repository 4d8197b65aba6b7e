"""The first-order constants of THEORY §5.3 and random frames.

For the ``power`` model without bias, unit importances and one feature
probability ``p``, the exact gain is ``p F(A) + O(p**2)``;
:func:`first_order_objective` computes ``F``.  This module also
holds the constants that bound and attain it: :func:`kappa`,
:func:`sphere_dimension` ``D(d, m)``, :func:`first_order_cap`,
:func:`random_frame_value`, :func:`random_frame_norm`, and
:func:`random_frame` (the random starts of :func:`fastsuper.fit_exact`).
They are public in :mod:`fastsuper.analysis` and :mod:`fastsuper.theory`.
"""

from __future__ import annotations

import math

import numpy as np

from fastsuper.core import arguments, config
from fastsuper.core import validation as v

__all__ = [
    "first_order_cap",
    "first_order_objective",
    "gram_blocks",
    "kappa",
    "random_frame",
    "random_frame_norm",
    "random_frame_value",
    "sphere_dimension",
]


def kappa(law, m) -> float:
    """``kappa = mu_{m+1}**2 / mu_{2m}``, the best first-order gain per feature.

    Without superposition a feature contributes at most ``p kappa`` to the
    gain (THEORY §5.1).

    Parameters
    ----------
    law : ValueLaw or str
        Value law.
    m : int
        The exponent, an integer ``>= 1``.

    Returns
    -------
    float
        ``mu_{m+1}**2 / mu_{2m}`` (0 when ``mu_{2m} = 0``).

    Examples
    --------
    >>> from fastsuper.analysis import kappa
    >>> kappa("gaussian", 3), kappa("rademacher", 3), kappa("gaussian", 1)
    (0.6, 1.0, 1.0)
    """
    func = "kappa"
    law = arguments.check_law("law", law, func=func)
    m = v.check_int("m", m, minimum=1, func=func)
    arguments.check_moments(law, m, func=func, odd=False)
    mu_b = law.moment(2 * m)
    return law.moment(m + 1) ** 2 / mu_b if mu_b > 0 else 0.0


def sphere_dimension(d, m) -> float:
    """``D(d, m) = d (d+2) (d+4) ··· (d+2m-2) / (2m-1)!!`` (THEORY §5.3).

    ``1 / D(d, m)`` is the mean of ``u_1**(2m)`` over the unit sphere of
    ``R^d``; ``D(d, 1) = d``, ``D(1, m) = 1`` and ``D(d, m) <= d**m``.

    Parameters
    ----------
    d, m : int
        Dimension and exponent, integers ``>= 1``.

    Returns
    -------
    float

    Examples
    --------
    >>> from fastsuper.analysis import sphere_dimension
    >>> sphere_dimension(10, 3), sphere_dimension(15, 3), sphere_dimension(2, 3)
    (112.0, 323.0, 3.2)
    """
    func = "sphere_dimension"
    d = v.check_int("d", d, minimum=1, func=func)
    m = v.check_int("m", m, minimum=1, func=func)
    num = math.prod(d + 2 * i for i in range(m))
    return num / math.prod(range(2 * m - 1, 0, -2))


def first_order_cap(d, m, law, n=None) -> float:
    """Upper bound ``kappa D(d, m)`` on ``F`` (THEORY §5.3); ``kappa min(n, D)`` with ``n``.

    So the exact gain of any ``W`` (no bias, unit importances) is at most
    ``p kappa min(n, D(d, m)) + O(p**2)``.

    Parameters
    ----------
    d, m : int
        Hidden dimension and exponent (integers ``>= 1``).
    law : ValueLaw or str
        Value law.
    n : int, optional
        Number of features; the cap is then ``kappa min(n, D(d, m))``.

    Returns
    -------
    float

    Examples
    --------
    >>> from fastsuper.analysis import first_order_cap
    >>> round(first_order_cap(10, 3, "gaussian"), 12)  # 0.6 * 112
    67.2
    >>> first_order_cap(10, 3, "rademacher", n=50)
    50.0
    """
    cap = kappa(law, m) * sphere_dimension(d, m)
    if n is not None:
        n = v.check_int("n", n, minimum=1, func="first_order_cap")
        cap = min(cap, kappa(law, m) * n)
    return cap


def random_frame_value(n, d, m, law) -> float:
    """Expected ``F`` of a random frame: ``kappa n D / (n + D - 1)`` (THEORY §5.3).

    The lower bound of THEORY §5.3: ``n`` independent uniform unit directions
    ``u_i`` have ``E sum_{i,j} (u_i . u_j)**(2m) = n + n (n-1) / D(d, m)``, so
    with the common norm of :func:`random_frame_norm` the expectation of
    ``F`` is exactly this value, and ``sup_W F`` is at least it.

    Parameters
    ----------
    n, d, m : int
        Features, hidden dimension and exponent (integers ``>= 1``).
    law : ValueLaw or str
        Value law.

    Returns
    -------
    float
        The expected ``F`` of random unit directions at their best common norm.

    Examples
    --------
    >>> from fastsuper.analysis import random_frame_value
    >>> round(random_frame_value(60, 4, 3, "gaussian"), 6)  # 0.6 * 60 * 12.8 / 71.8
    6.417827
    """
    n = v.check_int("n", n, minimum=1, func="random_frame_value")
    D = sphere_dimension(d, m)
    return kappa(law, m) * n * D / (n + D - 1.0)


def random_frame_norm(n, d, m, law) -> float:
    """Best common column norm of ``n`` random unit directions (THEORY §5.3).

    With ``A_ii = c`` and ``E (u_i . u_j)**(2m) = 1/D`` the expected ``F`` is
    ``n (2 mu_{m+1} c**m - mu_{2m} c**(2m) (1 + (n-1)/D))``, largest at
    ``c**m = mu_{m+1} / (mu_{2m} (1 + (n-1)/D(d, m)))``; the column norm is
    ``sqrt(c)``.

    Parameters
    ----------
    n, d, m, law
        As in :func:`random_frame_value`.

    Returns
    -------
    float
        ``sqrt(c)``; 1.0 where ``mu_{m+1} <= 0`` or ``mu_{2m} = 0`` (no
        positive optimum: nothing is reconstructed to first order).

    Examples
    --------
    >>> from fastsuper.analysis import random_frame_norm
    >>> round(random_frame_norm(1, 4, 3, "gaussian") ** 6, 12)  # one feature: mu_4 / mu_6
    0.2
    """
    func = "random_frame_norm"
    n = v.check_int("n", n, minimum=1, func=func)
    d = v.check_int("d", d, minimum=1, func=func)
    m = v.check_int("m", m, minimum=1, func=func, what=" (the exponent)")
    law = arguments.check_law("law", law, func=func)
    D = sphere_dimension(d, m)
    arguments.check_moments(law, m, func=func, odd=False)
    num, den = law.moment(m + 1), law.moment(2 * m)
    if num <= 0 or den <= 0:
        return 1.0
    c_m = num / (den * (1.0 + (n - 1) / D))
    return float(c_m ** (1.0 / (2 * m)))


def random_frame(n: int, d: int, norm: float, seed=0, dtype=np.float64) -> np.ndarray:
    """``W`` (d, n) with independent uniformly random column directions of length ``norm``.

    ``seed`` is anything :func:`numpy.random.default_rng` takes (an int or a
    list of ints).

    Examples
    --------
    >>> import numpy as np
    >>> from fastsuper.analysis import random_frame
    >>> W = random_frame(5, 3, 2.0, seed=1)
    >>> W.shape, np.allclose(np.linalg.norm(W, axis=0), 2.0)
    ((3, 5), True)
    """
    func = "random_frame"
    n = v.check_int("n", n, minimum=1, func=func)
    d = v.check_int("d", d, minimum=1, func=func)
    norm = v.check_real("norm", norm, func=func)
    if norm < 0:
        raise ValueError(f"{func}: norm must be >= 0 (a column length), got {norm}")
    dtype = v.check_float_dtype("dtype", dtype, func=func)
    v.check_memory(f"a ({d}, {n}) frame", 24.0 * d * n, func=func)  # W, its scaled copy
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((d, n))
    nrm = np.linalg.norm(W, axis=0)
    nrm[nrm == 0] = 1.0
    return (W * (norm / nrm)).astype(dtype)


def gram_blocks(W: np.ndarray):
    """Yield ``(lo, hi, G)`` with ``G = W[:, lo:hi].T @ W`` for row blocks of ``A``."""
    n = W.shape[1]
    block = max(1, config.GEOMETRY_BLOCK_ELEMS // n)
    for lo in range(0, n, block):
        hi = min(lo + block, n)
        yield lo, hi, W[:, lo:hi].T @ W


def first_order_objective(W, law, m) -> float:
    """First-order coefficient ``F(A)`` of the exact gain in ``p`` (THEORY §5.3).

    For the ``power`` model ``x_hat = (A x)**m`` without bias, unit
    importances and independent features with one probability ``p``, the
    exact gain is ``p F(A) + O(p**2)`` with::

        F(A) = 2 mu_{m+1} tr(A^∘m) - mu_{2m} |A^∘m|_F**2,

    ``A = W.T @ W`` and ``A^∘m`` its entrywise power (only one feature is
    active at first order).  ``sup_W F = kappa min(n, D(d, m))`` where equality
    holds (see :func:`first_order_cap`).

    Parameters
    ----------
    W : array_like of shape (d, n)
        Weights.
    law : ValueLaw or str
        Value law of the active features (``mu_r`` its raw moments).
    m : int
        The exponent, an integer ``>= 1``.

    Returns
    -------
    float
        ``F(A)``, computed in float64 by row blocks of ``A`` (``O(n**2 d)``
        time, ``O(n)`` extra memory per block row).

    Examples
    --------
    Unsuperposed optimum (``A_ii**m = mu_{m+1} / mu_{2m}`` = 1/5 for Gaussian
    values and ``m = 3``) on two features: ``F = 2 kappa = 2 * 0.6``.

    >>> import numpy as np
    >>> from fastsuper.theory import first_order_objective
    >>> round(first_order_objective(0.2 ** (1 / 6) * np.eye(2), "gaussian", 3), 12)
    1.2
    """
    func = "first_order_objective"
    W = v.check_weights("W", W, func=func)
    law = arguments.check_law("law", law, func=func)
    m = v.check_int("m", m, minimum=1, func=func)
    arguments.check_moments(law, m, func=func, odd=False)
    mu_a, mu_b = law.moment(m + 1), law.moment(2 * m)
    sq = np.einsum("ij,ij->j", W, W)
    trace = math.fsum((sq**m).tolist())
    frob = 0.0
    for _, _, G in gram_blocks(W):
        frob += float(np.sum(G ** (2 * m)))
    return 2.0 * mu_a * trace - mu_b * frob
