"""Plain NumPy / Python references of the feature geometry (loops, no vectorised tricks)."""

from __future__ import annotations

import itertools

import numpy as np


def dimensionality(W):
    """``D_i = |w_i|**2 / sum_j (w_i_hat . w_j)**2`` by explicit loops (0 for a zero column)."""
    W = np.asarray(W, float)
    n = W.shape[1]
    out = np.zeros(n)
    for i in range(n):
        ni = np.sqrt(sum(W[k, i] ** 2 for k in range(W.shape[0])))
        if ni == 0:
            continue
        den = 0.0
        for j in range(n):
            den += (sum(W[k, i] * W[k, j] for k in range(W.shape[0])) / ni) ** 2
        out[i] = ni**2 / den
    return out


def components(W, eps, norm_min):
    """Connected components by repeated merging of labels (union until nothing changes)."""
    W = np.asarray(W, float)
    keep = [i for i in range(W.shape[1]) if np.linalg.norm(W[:, i]) >= norm_min]
    label = {i: i for i in keep}
    changed = True
    while changed:
        changed = False
        for i, j in itertools.combinations(keep, 2):
            a = abs(W[:, i] @ W[:, j]) / np.linalg.norm(W[:, i])
            b = abs(W[:, i] @ W[:, j]) / np.linalg.norm(W[:, j])
            if max(a, b) > eps and label[i] != label[j]:
                lo = min(label[i], label[j])
                label[i] = label[j] = lo
                changed = True
    groups = {}
    for i in keep:
        groups.setdefault(label[i], []).append(i)
    return sorted(groups.values())


def same_shape(Wf, P, tol):
    """Whether some permutation of the columns of ``P`` matches the cosines of ``Wf`` to ``tol``."""
    U = Wf / np.linalg.norm(Wf, axis=0)
    C = U.T @ U
    Q = P.T @ P
    k = C.shape[0]
    if Q.shape[0] != k:
        return False
    for perm in itertools.permutations(range(k)):
        if np.max(np.abs(C - Q[np.ix_(perm, perm)])) <= tol:
            return True
    return False
