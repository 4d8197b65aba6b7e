"""The moment <-> cumulant recursions of THEORY §3, vectorised over the trailing axes.

Shared by the independent closed form (:mod:`fastsuper.exact.api`) and the
grouped one (:mod:`fastsuper.exact.grouped`).
"""

from __future__ import annotations

import numpy as np

__all__ = ["binomials", "cumulants_from_moments", "moments_from_cumulants"]


def binomials(r_max: int) -> np.ndarray:
    """Pascal's triangle ``C[r, k] = C(r, k)`` for ``0 <= k <= r <= r_max`` in float64."""
    c = np.zeros((r_max + 1, r_max + 1))
    c[:, 0] = 1.0
    for r in range(1, r_max + 1):
        c[r, 1 : r + 1] = c[r - 1, :r] + c[r - 1, 1 : r + 1]
    return c


def cumulants_from_moments(moments: np.ndarray, binom: np.ndarray) -> np.ndarray:
    """Cumulants ``kappa_1 .. kappa_R`` from raw moments ``M_0 = 1, M_1 .. M_R``.

    Parameters
    ----------
    moments : ndarray of shape (R + 1, ...)
        Raw moments, ``moments[0]`` being 1.
    binom : ndarray
        Pascal's triangle with at least ``R`` rows (see :func:`binomials`).

    Returns
    -------
    ndarray of shape (R + 1, ...)
        ``kappa[r]`` for ``r >= 1``; ``kappa[0]`` is 0 (unused).

    Notes
    -----
    Inverse of :func:`moments_from_cumulants`:
    ``kappa_r = M_r - sum_{k=1}^{r-1} C(r-1, k-1) kappa_k M_{r-k}``.
    """
    kappa = np.zeros_like(moments)
    for r in range(1, moments.shape[0]):
        acc = moments[r].copy()
        for k in range(1, r):
            acc -= binom[r - 1, k - 1] * kappa[k] * moments[r - k]
        kappa[r] = acc
    return kappa


def moments_from_cumulants(kappa: np.ndarray, binom: np.ndarray) -> np.ndarray:
    """Raw moments ``M_0 = 1, M_1 .. M_R`` from cumulants ``kappa_1 .. kappa_R``.

    Parameters
    ----------
    kappa : ndarray of shape (R + 1, ...)
        Cumulants, ``kappa[r]`` for ``r >= 1`` (``kappa[0]`` is ignored).
    binom : ndarray
        Pascal's triangle with at least ``R`` rows (see :func:`binomials`).

    Returns
    -------
    ndarray of shape (R + 1, ...)
        ``M_r = sum_{k=1}^{r} C(r-1, k-1) kappa_k M_{r-k}``, ``M_0 = 1``.
    """
    moments = np.zeros_like(kappa)
    moments[0] = 1.0
    for r in range(1, kappa.shape[0]):
        acc = np.zeros_like(kappa[0])
        for k in range(1, r + 1):
            acc += binom[r - 1, k - 1] * kappa[k] * moments[r - k]
        moments[r] = acc
    return moments
