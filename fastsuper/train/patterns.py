"""The exact optimum of a tiny ReLU model: L-BFGS with restarts on the pattern-sum loss.

:func:`fit_pattern_exact` minimises the exact population loss of
:func:`fastsuper.exact.patterns.pattern_loss` (``n <= 3`` features, ReLU with
bias, U[0,1] values, Elhage et al.'s setting) over ``(W, b)`` with SciPy's
L-BFGS-B and the exact gradient, from

* the starts given (``starts``: e.g. trained weights, or constructions such as
  THEORY §9's dedicated and antipodal solutions);
* the *unsuperposed* start: the ``min(n, d)`` features of largest ``I_i p_i``
  on their own unit dimension, the others off with their output at the mean
  ``b_i = p_i / 2``;
* with ``constructions`` (default), every tegum product of dedicated features and
  antipodal pairs on the coordinate axes (:func:`tegum_starts`; and for ``n = 3``,
  ``d >= 2`` the triangle), the features left out at their mean;
* ``restarts`` random starts: Xavier-normal weights (as :func:`fastsuper.fit`
  draws them, seeded by ``[seed, k]``) and a bias ``U(0, 0.1)`` (a start with
  every output dead is a flat region of the loss, which no local method leaves);

and keeps the best.  The loss is a sum over features.

Examples
--------
Two features, one dimension, rare features: superposition (an antipodal-like pair) wins.

>>> import numpy as np
>>> from fastsuper.train.patterns import fit_pattern_exact
>>> res = fit_pattern_exact(2, 1, p=0.05, importance=[1.0, 1.0], restarts=4)
>>> bool(res.W[0, 0] * res.W[0, 1] < 0), bool(res.loss < 2 * 0.05**2 / 6)
(True, True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize

from fastsuper.core import validation as v
from fastsuper.exact.patterns import MAX_FEATURES, pattern_kernel

__all__ = ["PatternFit", "fit_pattern_exact", "tegum_starts", "unsuperposed_start"]

_FUNC = "fit_pattern_exact"


@dataclass
class PatternFit:
    """The best ``(W, b)`` :func:`fit_pattern_exact` found.

    Attributes
    ----------
    W : ndarray of shape (d, n)
    b : ndarray of shape (n,)
    loss : float
        Its exact loss (a sum over features).
    losses : ndarray
        The final loss of every start, in the order run (given starts, the
        unsuperposed start, the constructions, then the random ones).
    labels : list of str
        What each start was.
    settings : dict
    """

    W: np.ndarray
    b: np.ndarray
    loss: float
    losses: np.ndarray
    labels: list
    settings: dict = field(default_factory=dict)


class _Objective:
    """``x = (W.ravel(), b) -> (loss, gradient)`` through the compiled pattern sum."""

    def __init__(self, n: int, d: int, p: np.ndarray, imp: np.ndarray):
        self.n, self.d, self.p, self.imp = n, d, p, imp
        self.G = np.empty((n, n))
        self.gb = np.empty(n)
        self.by_k = np.empty(n + 1)

    def unpack(self, x):
        nd = self.n * self.d
        return x[:nd].reshape(self.d, self.n), x[nd:]

    def __call__(self, x):
        W, b = self.unpack(x)
        A = np.ascontiguousarray(W.T @ W)
        loss = pattern_kernel(A, np.ascontiguousarray(b), self.p, self.imp, self.G, self.gb,
                              self.by_k)  # fmt: skip
        gW = W @ (self.G + self.G.T)
        return loss, np.concatenate([gW.ravel(), self.gb])


def unsuperposed_start(n: int, d: int, p, importance) -> tuple[np.ndarray, np.ndarray]:
    """The ``min(n, d)`` features of largest ``I_i p_i`` kept on unit dimensions, the others
    off with output ``b_i = p_i / 2`` (their mean).

    Parameters
    ----------
    n, d : int
    p, importance : array_like of shape (n,)

    Returns
    -------
    W : ndarray of shape (d, n)
    b : ndarray of shape (n,)

    Examples
    --------
    >>> from fastsuper.train.patterns import unsuperposed_start
    >>> unsuperposed_start(2, 1, [0.1, 0.1], [1.0, 0.5])
    (array([[1., 0.]]), array([0.  , 0.05]))
    """
    p = np.asarray(p, dtype=np.float64)
    keep = np.argsort(-(np.asarray(importance, dtype=np.float64) * p), kind="stable")[: min(n, d)]
    W = np.zeros((d, n))
    W[np.arange(keep.size), keep] = 1.0
    b = p / 2.0
    b[keep] = 0.0
    return W, b


def _assignments(n: int, d: int):
    """Each feature on an axis (0..d-1) or off (-1); at most two per axis; axes used in
    order of first use (so that axis permutations are not repeated)."""
    if n == 0:
        yield ()
        return
    for rest in _assignments(n - 1, d):
        used = max(rest, default=-1)
        for a in range(-1, min(used + 2, d)):
            if a < 0 or rest.count(a) < 2:
                yield (*rest, a)


def tegum_starts(n: int, d: int, p) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Constructions to start from: dedicated features and antipodal pairs on the axes.

    Every way to put each feature on a coordinate axis or leave it out, at most two
    per axis (a pair is antipodal, ``+e`` and ``-e``), up to a permutation of the axes;
    a feature left out outputs its mean ``b_i = p_i / 2``.  For ``n = 3``, ``d >= 2``
    also the triangle.  The all-off start is omitted.

    Parameters
    ----------
    n, d : int
    p : array_like of shape (n,)

    Returns
    -------
    list of (label, W, b)

    Examples
    --------
    >>> from fastsuper.train.patterns import tegum_starts
    >>> [label for label, W, b in tegum_starts(2, 1, [0.1, 0.1])]
    ['axes (-1, 0)', 'axes (0, -1)', 'axes (0, 0)']
    """
    p = np.asarray(p, dtype=np.float64)
    out = []
    for assign in _assignments(n, d):
        if max(assign) < 0:
            continue
        W = np.zeros((d, n))
        b = p / 2.0
        for i, a in enumerate(assign):
            if a >= 0:
                W[a, i] = 1.0 if assign[:i].count(a) == 0 else -1.0
                b[i] = 0.0
        out.append((f"axes {assign}", W, b))
    if n == 3 and d >= 2:
        t = 2 * np.pi * np.arange(3) / 3
        W = np.zeros((d, 3))
        W[:2] = np.cos(t), np.sin(t)
        out.append(("triangle", W, np.zeros(3)))
    return out


def _check(n, d, p, importance, restarts, seed, maxiter, starts):
    n = v.check_int("n", n, minimum=1, func=_FUNC)
    if n > MAX_FEATURES:
        raise ValueError(f"{_FUNC}: n = {n}; the exact pattern sum handles n <= {MAX_FEATURES}")
    d = v.check_int("d", d, minimum=1, func=_FUNC)
    p = v.check_probabilities("p", p, n, func=_FUNC)
    imp = np.ones(n) if importance is None else importance
    imp = v.as_float_array("importance", imp, ndim=1, dtype=np.float64, shape=(n,), func=_FUNC)
    imp = v.check_positive_entries("importance", imp, func=_FUNC)
    restarts = v.check_int("restarts", restarts, minimum=0, func=_FUNC)
    seed = v.check_seed("seed", seed, minimum=0, func=_FUNC)
    maxiter = v.check_int("maxiter", maxiter, minimum=1, func=_FUNC)
    given = []
    for k, (W0, b0) in enumerate(starts or ()):
        W0 = v.check_weights(f"starts[{k}][0]", W0, shape=(d, n), func=_FUNC)
        b0 = v.as_float_array(f"starts[{k}][1]", b0, ndim=1, dtype=np.float64, shape=(n,),
                              func=_FUNC)  # fmt: skip
        given.append((W0, b0))
    return n, d, np.ascontiguousarray(p, np.float64), np.ascontiguousarray(imp), restarts, \
        seed, maxiter, given  # fmt: skip


def fit_pattern_exact(
    n: int, d: int, *, p, importance=None, restarts: int = 8, seed: int = 0,
    maxiter: int = 500, starts=None, constructions: bool = True,
) -> PatternFit:  # fmt: skip
    """Minimise the exact loss of a ReLU model with bias (``n <= 3``, U[0,1] values).

    Parameters
    ----------
    n, d : int
        Features (at most 3) and hidden dimension.
    p : float or array_like of shape (n,)
        Feature probabilities.
    importance : array_like of shape (n,), optional
        ``I_j > 0`` (default 1).
    restarts : int, default 8
        Random starts (besides the given and the unsuperposed one).
    seed : int, default 0
        Seed of the random starts.
    maxiter : int, default 500
        L-BFGS-B iterations per start.
    starts : list of (W, b), optional
        Further starts, run first.
    constructions : bool, default True
        Also start from every :func:`tegum_starts` construction (after the
        unsuperposed start, before the random ones).

    Returns
    -------
    PatternFit
        The best start's ``W``, ``b`` and exact ``loss``, and every start's loss.

    Examples
    --------
    Dense features (p = 1), importances 1 and 0.5: the more important feature keeps
    the dimension, the other outputs its mean 1/2, so ``L = 0.5 (1/3 - 1/4)``.

    >>> from fastsuper.train.patterns import fit_pattern_exact
    >>> res = fit_pattern_exact(2, 1, p=1.0, importance=[1.0, 0.5], restarts=2)
    >>> round(res.loss, 10), abs(res.W).round(6).tolist()
    (0.0416666667, [[1.0, 0.0]])
    """
    n, d, p, imp, restarts, seed, maxiter, given = _check(
        n, d, p, importance, restarts, seed, maxiter, starts
    )
    labels = [f"given {k}" for k in range(len(given))] + ["unsuperposed"]
    runs = list(given) + [unsuperposed_start(n, d, p, imp)]
    if v.check_bool("constructions", constructions, func=_FUNC):
        for label, W0, b0 in tegum_starts(n, d, p):
            labels.append(label)
            runs.append((W0, b0))
    std = math.sqrt(2.0 / (n + d))
    for k in range(restarts):
        rng = np.random.default_rng([seed, k])
        runs.append((rng.normal(0.0, std, size=(d, n)), rng.uniform(0.0, 0.1, size=n)))
        labels.append(f"random {k}")
    obj = _Objective(n, d, p, imp)
    best, losses = None, []
    for W0, b0 in runs:
        x0 = np.concatenate([np.asarray(W0, np.float64).ravel(), np.asarray(b0, np.float64)])
        r = minimize(obj, x0, jac=True, method="L-BFGS-B",
                     options={"maxiter": maxiter, "ftol": 1e-15, "gtol": 1e-10})  # fmt: skip
        loss = float(obj(r.x)[0])
        losses.append(loss)
        if best is None or loss < best[0]:
            best = (loss, r.x.copy())
    W, b = obj.unpack(best[1])
    settings = {"n": n, "d": d, "p": p.tolist(), "importance": imp.tolist(),
                "restarts": restarts, "seed": seed, "maxiter": maxiter}  # fmt: skip
    return PatternFit(W.copy(), b.copy(), best[0], np.array(losses), labels, settings)
