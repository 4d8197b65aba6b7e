"""Plain NumPy references of every kernel (slow, obviously correct).

Nothing here imports fastsuper's compiled code: these are the independent
references the tests compare against.
"""

from __future__ import annotations

import itertools

import numpy as np


def phi_numpy(t, activation, a):
    """Activation of THEORY §1 applied entrywise with NumPy."""
    t = np.asarray(t)
    if activation == "power":
        return t ** int(a)
    if activation == "signed_power":
        return np.sign(t) * np.abs(t) ** a
    if activation in ("relu_power", "relu"):  # "relu": exponent 1
        return np.where(t > 0, np.abs(t) ** a, 0.0).astype(t.dtype)
    raise ValueError(activation)


def dphi_numpy(t, activation, a):
    t = np.asarray(t)
    if activation == "power":
        return a * t ** (int(a) - 1)
    if activation == "signed_power":
        return a * np.abs(t) ** (a - 1)
    if activation in ("relu_power", "relu"):  # "relu": exponent 1
        return np.where(t > 0, a * np.abs(t) ** (a - 1), 0.0)
    raise ValueError(activation)


def forward_numpy(W, b, activation, a, X):
    """x_hat = phi(X W^T W + b) for a dense batch X of shape (N, n)."""
    W = np.asarray(W, dtype=np.float64)
    Z = (np.asarray(X, dtype=np.float64) @ W.T) @ W
    if b is not None:
        Z = Z + np.asarray(b, dtype=np.float64)
    return phi_numpy(Z, activation, a)


def loss_numpy(W, b, activation, a, X, importance=None):
    """Per-sample loss sum_j I_j (x_j - x_hat_j)^2 (float64)."""
    X = np.asarray(X, dtype=np.float64)
    I = np.ones(X.shape[1]) if importance is None else np.asarray(importance)
    R = forward_numpy(W, b, activation, a, X)
    return ((X - R) ** 2 * I).sum(axis=1)


def gain_numpy(W, b, activation, a, X, importance=None):
    X = np.asarray(X, dtype=np.float64)
    I = np.ones(X.shape[1]) if importance is None else np.asarray(importance)
    return (X**2 * I).sum(axis=1) - loss_numpy(W, b, activation, a, X, importance)


def enumerate_inputs(p, support, probs, max_active=None):
    """Every input vector of a discrete law with its probability.

    ``p`` per feature (length n), values from ``support`` with ``probs``.
    Returns (X of shape (M, n), weights of shape (M,)), weights summing to 1
    (or to P(K <= max_active) when ``max_active`` is given).
    """
    p = np.asarray(p, dtype=np.float64)
    n = p.size
    support = np.asarray(support, dtype=np.float64)
    probs = np.asarray(probs, dtype=np.float64)
    choices = [(0.0, None)] + list(zip(support, probs))
    rows, weights = [], []
    for combo in itertools.product(range(len(choices)), repeat=n):
        active = sum(1 for c in combo if c)
        if max_active is not None and active > max_active:
            continue
        w = 1.0
        x = np.zeros(n)
        for i, c in enumerate(combo):
            if c == 0:
                w *= 1.0 - p[i]
            else:
                x[i] = choices[c][0]
                w *= p[i] * choices[c][1]
        rows.append(x)
        weights.append(w)
    return np.array(rows), np.array(weights)


def grouped_patterns(inputs):
    """Exact probability of every activity pattern (tuple of 0/1 per feature) of a grouped law.

    Enumerates each group's outcomes from its definition (THEORY §8): gate
    closed; correlated/partial: every subset of members with its in-group
    probabilities; exclusive: one member with its weight.
    """
    n, spec = inputs.n, inputs.groups
    units = [(mem, spec.kinds[g], spec.q[g]) for g, mem in enumerate(spec.members)]
    units += [(np.array([i]), "correlated", inputs.p[i]) for i in np.flatnonzero(spec.label < 0)]
    probs = {(0,) * n: 1.0}
    for mem, kind, q in units:
        options = [((), 1.0 - q)]
        if kind == "exclusive":
            options += [((i,), q * spec.weights[i]) for i in mem]
        else:
            for bits in itertools.product([0, 1], repeat=mem.size):
                r = spec.r[mem]
                pr = q * np.prod(np.where(bits, r, 1.0 - r))
                options.append((tuple(mem[np.array(bits, bool)]), pr))
        new = {}
        for pat, pr in probs.items():
            for act, po in options:
                if po == 0.0:
                    continue
                key = list(pat)
                for i in act:
                    key[i] = 1
                new[tuple(key)] = new.get(tuple(key), 0.0) + pr * po
        probs = new
    return probs


def enumerate_grouped_inputs(inputs):
    """Every input vector of a grouped law with discrete values, with its probability.

    Returns (X of shape (M, n), weights of shape (M,)), weights summing to 1.
    """
    support, probs = inputs.law.support, inputs.law.probs
    rows, weights = [], []
    for pat, pp in grouped_patterns(inputs).items():
        act = [i for i, on in enumerate(pat) if on]
        for vals in itertools.product(range(support.size), repeat=len(act)):
            x = np.zeros(inputs.n)
            w = pp
            for i, t in zip(act, vals, strict=True):
                x[i] = support[t]
                w *= probs[t]
            rows.append(x)
            weights.append(w)
    return np.array(rows), np.array(weights)


def power_sums_numpy(A, c):
    """``S[r, j] = sum_{i != j} A[j, i]**r c[r, i]`` (row 0 zero), dense NumPy."""
    A = np.array(A, dtype=np.float64)
    np.fill_diagonal(A, 0.0)
    R = c.shape[0] - 1
    S = np.zeros((R + 1, A.shape[0]))
    for r in range(1, R + 1):
        S[r] = (A**r) @ c[r]
    return S


def grad_w_numpy(A, W, coef, c, orders, g_diag):
    """``W (Gamma + Gamma^T)`` with ``Gamma`` stored: ``Gamma_ji = sum_r coef[r, j]
    c[r, i] A_ji**(r-1)`` off the diagonal, ``Gamma_jj = g_diag[j]``."""
    n = A.shape[0]
    G = np.zeros((n, n))
    for r in orders:
        G += coef[r][:, None] * c[r][None, :] * A ** (r - 1)
    G[np.arange(n), np.arange(n)] = g_diag
    return W @ (G + G.T)
