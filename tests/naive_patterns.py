"""Plain reference of the exact pattern-sum loss of tiny ReLU models: nested adaptive
quadrature (scipy.integrate.quad) of ``(y - relu(s))**2`` over the active values."""

from __future__ import annotations

import itertools

import numpy as np
from scipy.integrate import quad


def _nested(f, k, coeffs, b, fixed=()):
    """``int_[0,1]**k f(t) dt`` by nested quad, telling each level the kinks of
    ``relu(coeffs . t + b)`` in its variable (the outer levels: every vertex passage)."""
    if k == len(fixed):
        return f(np.array(fixed))
    level = len(fixed)
    c = coeffs[level]
    rest = coeffs[level + 1 :]
    base = b + sum(ci * ti for ci, ti in zip(coeffs, fixed))
    pts = []
    if c != 0:
        for v in itertools.product([0.0, 1.0], repeat=len(rest)):
            t = -(base + sum(ci * vi for ci, vi in zip(rest, v))) / c
            if 0 < t < 1:
                pts.append(t)
    val, _ = quad(
        lambda t: _nested(f, k, coeffs, b, fixed + (t,)),
        0.0, 1.0, points=sorted(pts) or None, epsabs=1e-13, epsrel=1e-12, limit=200,
    )  # fmt: skip
    return val


def loss_by_k(W, b, p, imp):
    """``P(K = k) L_k`` for ``k = 0..n``, by nested quadrature per pattern and output."""
    W = np.asarray(W, float)
    A = W.T @ W
    n = A.shape[0]
    out = np.zeros(n + 1)
    for S in itertools.product([0, 1], repeat=n):
        act = [i for i in range(n) if S[i]]
        prob = np.prod([p[i] if S[i] else 1 - p[i] for i in range(n)])
        for j in range(n):
            c = [A[j, i] for i in act]

            def f(t, j=j, c=c, act=act):
                s = float(np.dot(c, t)) + b[j]
                y = t[act.index(j)] if j in act else 0.0
                return (y - max(s, 0.0)) ** 2

            out[len(act)] += prob * imp[j] * _nested(f, len(act), c, b[j])
    return out
