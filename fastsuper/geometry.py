"""Feature geometry of learned weights: Elhage et al.'s dimensionalities and polytopes.

For weights ``W`` (d, n), column ``w_i`` feature ``i``'s direction (THEORY §6):

* :func:`feature_dimensionality` -- ``D_i = |w_i|**2 / sum_j (w_i_hat . w_j)**2``,
  the share of a dimension feature ``i`` gets (1 alone, ``d/n`` in a tight
  frame of ``n`` unit vectors in ``R^d``, 0 for a dropped feature);
* :func:`dimensions_per_feature` -- ``d / |W|_F**2``, the sweep statistic whose
  plateau at 1/2 is the antipodal pairs;
* :func:`nearest_sticky` -- the nearest of the fractions ``D_i`` sticks at in
  trained models (:data:`STICKY_FRACTIONS`: 1, 3/4, 2/3, 1/2, 2/5, 3/8, 0);
* :func:`tegum_factors` -- the connected components of the interference graph,
  an edge between represented features ``i`` and ``j`` where
  ``max(|w_i_hat . w_j|, |w_j_hat . w_i|) > eps``: the factors of a tegum
  product live in mutually orthogonal subspaces;
* :func:`recognise_polytope` -- the standard shape of one factor from its Gram
  matrix (:data:`POLYTOPES`: digon, triangle, tetrahedron, pentagon, square
  antiprism; a lone feature is ``"dedicated"``);
* :func:`feature_geometry` -- all of it for one ``W`` (a :class:`FeatureGeometry`).

A shape is recognised from its cosine matrix ``C_ij = w_i_hat . w_j_hat``,
which does not depend on the factor's rotation or on the order of its
features: the sorted off-diagonal cosines must be within ``tol`` of the
polytope's (every vertex of each of these polytopes sees the same cosines),
and the norms within the factor must agree to ``norm_spread`` (relative).
The polytopes are the tight frames of unit vectors (``D_i = d/k``): digon
(antipodal pair, ``d = 1``), triangle and pentagon (``d = 2``), tetrahedron and
the square antiprism whose vertices sit at height ``z**2 = 1/3`` (``d = 3``;
the height at which every ``D_i`` equals 3/8).

Examples
--------
>>> import numpy as np
>>> from fastsuper.geometry import feature_geometry
>>> t = 2 * np.pi * np.arange(5) / 5
>>> W = np.zeros((3, 7))
>>> W[:2, :5] = np.cos(t), np.sin(t)  # a pentagon in the first two dimensions
>>> W[2, 5:] = 1.0, -1.0  # an antipodal pair in the third
>>> g = feature_geometry(W)
>>> g.shapes
['pentagon', 'digon']
>>> g.sticky
['2/5', '2/5', '2/5', '2/5', '2/5', '1/2', '1/2']
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fastsuper.core import validation as v
from fastsuper.exact.first_order import gram_blocks

__all__ = [
    "POLYTOPES",
    "STICKY_FRACTIONS",
    "STICKY_LABELS",
    "FeatureGeometry",
    "dimensions_per_feature",
    "feature_dimensionality",
    "feature_geometry",
    "nearest_sticky",
    "polytope",
    "recognise_polytope",
    "tegum_factors",
]

#: the fractions feature dimensionalities stick at in trained models (Elhage et al.)
STICKY_FRACTIONS = (1.0, 3 / 4, 2 / 3, 1 / 2, 2 / 5, 3 / 8, 0.0)
#: their labels, in the same order
STICKY_LABELS = ("1", "3/4", "2/3", "1/2", "2/5", "3/8", "0")

#: recognised shapes: name -> (number of vertices, dimension spanned)
POLYTOPES = {
    "digon": (2, 1),
    "triangle": (3, 2),
    "tetrahedron": (4, 3),
    "pentagon": (5, 2),
    "square antiprism": (8, 3),
}

#: defaults of the thresholds (see :func:`feature_geometry`)
EPS = 0.1
NORM_MIN = 0.3
TOL = 0.15
NORM_SPREAD = 0.3


# --------------------------------------------------------------------------
# per-feature measures


def feature_dimensionality(W) -> np.ndarray:
    """Feature dimensionality ``D_i = |w_i|**2 / sum_j (w_i_hat @ w_j)**2`` (THEORY §6).

    Elhage et al.'s measure of the share of a dimension that feature ``i``
    gets: 1 for a feature orthogonal to all others, ``d/n`` for every
    feature of a tight frame of ``n`` unit vectors in ``R^d`` (pentagon 2/5,
    antipodal pair 1/2), and 0 for a zero column (a dropped feature).

    Parameters
    ----------
    W : array_like of shape (d, n)
        Weights; column ``i`` is feature ``i``'s direction ``w_i``.

    Returns
    -------
    ndarray of shape (n,), float64
        ``D_i = |w_i|**4 / sum_j (w_i . w_j)**2`` (the sum includes
        ``j = i``), 0 where ``w_i = 0``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastsuper.geometry import feature_dimensionality
    >>> feature_dimensionality([[1.0, -1.0, 0.0], [0.0, 0.0, 0.0]])  # antipodal pair, zero
    array([0.5, 0.5, 0. ])
    >>> t = 2 * np.pi * np.arange(5) / 5  # pentagon
    >>> np.round(feature_dimensionality(np.stack([np.cos(t), np.sin(t)])), 12)
    array([0.4, 0.4, 0.4, 0.4, 0.4])
    """
    W = v.check_weights("W", W, func="feature_dimensionality")
    n = W.shape[1]
    sq = np.einsum("ij,ij->j", W, W)  # |w_i|**2
    out = np.zeros(n)
    for lo, hi, G in gram_blocks(W):
        denom = np.einsum("ij,ij->i", G, G)  # sum_j (w_i . w_j)**2 >= |w_i|**4
        nz = sq[lo:hi] > 0
        out[lo:hi][nz] = sq[lo:hi][nz] ** 2 / denom[nz]
    return out


def dimensions_per_feature(W) -> float:
    """``d / |W|_F**2``: Elhage et al.'s "dimensions per feature" of a model.

    1 when ``d`` unit features are kept and the rest dropped, 1/2 for
    antipodal pairs of unit features, ``d/n`` for a tight frame of ``n`` unit
    vectors; ``inf`` for ``W = 0``.

    Parameters
    ----------
    W : array_like of shape (d, n)
        Weights.

    Returns
    -------
    float

    Examples
    --------
    >>> from fastsuper.geometry import dimensions_per_feature
    >>> dimensions_per_feature([[1.0, -1.0, 0.0], [0.0, 0.0, 1.0]])
    0.6666666666666666
    """
    W = v.check_weights("W", W, func="dimensions_per_feature")
    total = float(np.einsum("ij,ij->", W, W))
    return W.shape[0] / total if total > 0 else float("inf")


def nearest_sticky(D) -> tuple[np.ndarray, list[str]]:
    """The sticky fraction nearest to each dimensionality, and its label.

    Parameters
    ----------
    D : array_like of float
        Feature dimensionalities (:func:`feature_dimensionality`).

    Returns
    -------
    values : ndarray of float64, the shape of ``D``
        The nearest of :data:`STICKY_FRACTIONS` (ties go to the larger fraction).
    labels : list of str
        Their labels (:data:`STICKY_LABELS`), flattened in C order.

    Examples
    --------
    >>> from fastsuper.geometry import nearest_sticky
    >>> nearest_sticky([0.98, 0.41, 0.52, 0.01])
    (array([1. , 0.4, 0.5, 0. ]), ['1', '2/5', '1/2', '0'])
    """
    D = np.asarray(D, dtype=np.float64)
    if not np.all(np.isfinite(D)):
        raise ValueError("nearest_sticky: D must be finite")
    fr = np.asarray(STICKY_FRACTIONS)
    idx = np.argmin(np.abs(D[..., None] - fr), axis=-1)
    return fr[idx], [STICKY_LABELS[i] for i in idx.ravel()]


# --------------------------------------------------------------------------
# tegum factors and polytopes


def _unit(W: np.ndarray, norms: np.ndarray) -> np.ndarray:
    out = np.zeros_like(W)
    nz = norms > 0
    out[:, nz] = W[:, nz] / norms[nz]
    return out


def tegum_factors(W, *, eps: float = EPS, norm_min: float = NORM_MIN) -> list[np.ndarray]:
    """Tegum factors: connected components of the interference graph of represented features.

    Parameters
    ----------
    W : array_like of shape (d, n)
        Weights.
    eps : float, default 0.1
        Edge ``i -- j`` where ``max(|w_i_hat . w_j|, |w_j_hat . w_i|) > eps``.
    norm_min : float, default 0.3
        Features with ``|w_i| < norm_min`` are not represented and belong to no factor.

    Returns
    -------
    list of ndarray of int
        The factors, each sorted, ordered by their smallest feature index.

    Examples
    --------
    >>> import numpy as np
    >>> from fastsuper.geometry import tegum_factors
    >>> W = np.array([[1.0, -1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.01]])
    >>> [f.tolist() for f in tegum_factors(W)]
    [[0, 1], [2]]
    """
    W = v.check_weights("W", W, func="tegum_factors")
    eps = v.check_real("eps", eps, positive=True, func="tegum_factors")
    norm_min = v.check_real("norm_min", norm_min, positive=True, func="tegum_factors")
    norms = np.linalg.norm(W, axis=0)
    keep = np.flatnonzero(norms >= norm_min)
    if keep.size == 0:
        return []
    Wk = W[:, keep]
    proj = np.abs(_unit(Wk, norms[keep]).T @ Wk)  # |w_i_hat . w_j|
    adj = np.maximum(proj, proj.T) > eps
    label = np.full(keep.size, -1)
    for start in range(keep.size):
        if label[start] >= 0:
            continue
        label[start] = start
        stack = [start]
        while stack:
            i = stack.pop()
            for j in np.flatnonzero(adj[i] & (label < 0)):
                label[j] = start
                stack.append(j)
    return [keep[label == s] for s in np.unique(label)]


def polytope(name: str) -> np.ndarray:
    """Unit vertices of a standard polytope, as the columns of a (dim, k) array.

    Parameters
    ----------
    name : {"digon", "triangle", "tetrahedron", "pentagon", "square antiprism"}
        See :data:`POLYTOPES`.

    Returns
    -------
    ndarray of shape (dim, k)
        A tight frame of ``k`` unit vectors in ``R^dim`` (each ``D_i = dim/k``).

    Examples
    --------
    >>> import numpy as np
    >>> from fastsuper.geometry import polytope
    >>> np.round(polytope("tetrahedron").T @ polytope("tetrahedron"), 12)[0]
    array([ 1.        , -0.33333333, -0.33333333, -0.33333333])
    """
    v.check_choice("name", name, sorted(POLYTOPES), func="polytope")
    if name == "digon":
        return np.array([[1.0, -1.0]])
    if name in ("triangle", "pentagon"):
        k = POLYTOPES[name][0]
        t = 2 * np.pi * np.arange(k) / k
        return np.stack([np.cos(t), np.sin(t)])
    if name == "tetrahedron":
        return np.array([[1, 1, -1, -1], [1, -1, 1, -1], [1, -1, -1, 1]], float) / np.sqrt(3)
    t = np.pi / 4 * np.arange(8)  # square antiprism: two squares turned by 45 degrees
    rho, z = np.sqrt(2 / 3), np.sqrt(1 / 3)
    return np.stack([rho * np.cos(t), rho * np.sin(t), z * (-1.0) ** np.arange(8)])


def _signature(C: np.ndarray) -> np.ndarray:
    k = C.shape[0]
    return np.sort(C[~np.eye(k, dtype=bool)])


def recognise_polytope(G, *, tol: float = TOL, norm_spread: float = NORM_SPREAD) -> str:
    """The standard shape whose Gram matrix ``G`` (of one tegum factor) is.

    Parameters
    ----------
    G : array_like of shape (k, k)
        Gram matrix ``W_f.T @ W_f`` of the factor's features (positive diagonal).
    tol : float, default 0.15
        Largest difference allowed between the sorted off-diagonal cosines and
        the polytope's.
    norm_spread : float, default 0.3
        Largest ``(max |w_i| - min |w_i|) / max |w_i|`` within the factor.

    Returns
    -------
    str
        ``"dedicated"`` for ``k = 1``, a name of :data:`POLYTOPES`, or ``"other"``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastsuper.geometry import recognise_polytope
    >>> recognise_polytope([[1.0, -0.98], [-0.98, 1.0]])
    'digon'
    >>> recognise_polytope(np.eye(3))
    'other'
    """
    G = v.as_float_array("G", G, ndim=2, dtype=np.float64)
    k = G.shape[0]
    if G.shape != (k, k) or k == 0:
        raise ValueError(f"recognise_polytope: G must be square and non-empty, got {G.shape}")
    diag = np.diag(G)
    if np.any(diag <= 0):
        raise ValueError("recognise_polytope: the diagonal of G must be > 0")
    if k == 1:
        return "dedicated"
    norms = np.sqrt(diag)
    if (norms.max() - norms.min()) > norm_spread * norms.max():
        return "other"
    sig = _signature(G / np.outer(norms, norms))
    for name, (size, _) in POLYTOPES.items():
        if size == k:
            P = polytope(name)
            if np.max(np.abs(sig - _signature(P.T @ P))) <= tol:
                return name
    return "other"


# --------------------------------------------------------------------------
# everything at once


@dataclass
class FeatureGeometry:
    """The geometry of one weight matrix (:func:`feature_geometry`).

    Attributes
    ----------
    D : ndarray of shape (n,)
        Feature dimensionalities.
    sticky : list of str
        The nearest sticky fraction of each ``D_i`` (:data:`STICKY_LABELS`).
    factors : list of ndarray of int
        Tegum factors (represented features only).
    shapes : list of str
        The shape of each factor (:func:`recognise_polytope`).
    feature_shape : list of str
        Per feature: its factor's shape, ``"not represented"`` for a feature
        below ``norm_min``.
    dimensions_per_feature : float
        ``d / |W|_F**2``.
    settings : dict
        The thresholds used.
    """

    D: np.ndarray
    sticky: list
    factors: list
    shapes: list
    feature_shape: list
    dimensions_per_feature: float
    settings: dict = field(default_factory=dict)

    def shape_counts(self) -> dict:
        """Number of factors of each shape."""
        out: dict = {}
        for s in self.shapes:
            out[s] = out.get(s, 0) + 1
        return out


def feature_geometry(
    W, *, eps: float = EPS, norm_min: float = NORM_MIN, tol: float = TOL,
    norm_spread: float = NORM_SPREAD,
) -> FeatureGeometry:  # fmt: skip
    """Dimensionalities, sticky fractions, tegum factors and their shapes of ``W``.

    Parameters
    ----------
    W : array_like of shape (d, n)
        Weights.
    eps, norm_min : float, default 0.1, 0.3
        The interference graph's thresholds (:func:`tegum_factors`).
    tol, norm_spread : float, default 0.15, 0.3
        The shape test's tolerances (:func:`recognise_polytope`).

    Returns
    -------
    FeatureGeometry

    Examples
    --------
    >>> import numpy as np
    >>> from fastsuper.geometry import feature_geometry, polytope
    >>> g = feature_geometry(np.hstack([polytope("triangle"), [[0.0], [0.01]]]))
    >>> g.shapes, g.feature_shape[-1], g.sticky
    (['triangle'], 'not represented', ['2/3', '2/3', '2/3', '0'])
    """
    W = v.check_weights("W", W, func="feature_geometry")
    D = feature_dimensionality(W)
    factors = tegum_factors(W, eps=eps, norm_min=norm_min)
    shapes = []
    per = ["not represented"] * W.shape[1]
    for f in factors:
        Wf = W[:, f]
        s = recognise_polytope(Wf.T @ Wf, tol=tol, norm_spread=norm_spread)
        shapes.append(s)
        for i in f:
            per[i] = s
    settings = {"eps": eps, "norm_min": norm_min, "tol": tol, "norm_spread": norm_spread}
    return FeatureGeometry(D, nearest_sticky(D)[1], factors, shapes, per,
                           dimensions_per_feature(W), settings)  # fmt: skip
