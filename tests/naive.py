"""Plain NumPy references of every kernel (slow, obviously correct).

Nothing here imports fastsuper's compiled code: these are the independent
references the tests compare against.
"""

from __future__ import annotations

import itertools

import numpy as np

#: the activations without an exponent, with the parameter each takes by default
SMOOTH_PARAMS = {
    "gelu": None,
    "gelu_tanh": None,
    "tanh": None,
    "softplus": 1.0,
    "sigmoid": None,
    "silu": None,
    "leaky_relu": 0.01,
    "identity": None,
}

_PI_LD = np.longdouble("3.14159265358979323846264338327950288")
_GELU_K = 0.7978845608028654
_GELU_C = 0.044715


def _sigmoid_ld(u):
    """sigma(u) and sigma(-u) in long double, without overflow."""
    e = np.exp(-np.abs(u))
    big = 1 / (1 + e)
    small = e * big
    return np.where(u >= 0, big, small), np.where(u >= 0, small, big)


def _normal_cdf_pdf_ld(t):
    """(Phi(t), phi_N(t)) in long double: the series of erf for ``|t| / sqrt(2) < 0.8``,
    else the continued fraction of erfc (converged there with 400 terms)."""
    t = np.asarray(t, dtype=np.longdouble)
    pdf = np.exp(-(t * t) / 2) / np.sqrt(2 * _PI_LD)
    x = np.abs(t) / np.sqrt(np.longdouble(2))
    # erf(x) = 2/sqrt(pi) sum_n (-1)^n x^(2n+1) / (n! (2n+1))
    xs = np.minimum(x, 0.8)
    term = xs.copy()
    erf = xs.copy()
    for n in range(1, 60):
        term = -term * xs * xs / n
        erf = erf + term / (2 * n + 1)
    erf = erf * 2 / np.sqrt(_PI_LD)
    # erfc(x) = exp(-x^2) / sqrt(pi) / (x + (1/2) / (x + 1 / (x + (3/2) / (x + ...))))
    xl = np.maximum(x, 0.8)
    k = xl.copy()
    for j in range(400, 0, -1):
        k = xl + (np.longdouble(j) / 2) / k
    tail = np.where(x < 0.8, (1 - erf) / 2, np.exp(-xl * xl) / np.sqrt(_PI_LD) / k / 2)
    return np.where(t < 0, tail, 1 - tail), pdf


def smooth_ref(t, activation, param=None):
    """``(phi, dphi, dscale)`` of the smooth activations in long double precision.

    ``t`` float64; ``phi`` and ``dphi`` are long double arrays (about 11 bits
    beyond float64); ``dscale`` is the sum of the absolute values of the terms
    of ``phi'`` (the size its rounding errors scale with, near a zero of ``phi'``).
    """
    if param is None:
        param = SMOOTH_PARAMS[activation]
    t = np.asarray(t, dtype=np.longdouble)
    with np.errstate(all="ignore"):
        if activation == "tanh":
            f = np.tanh(t)
            d = 1 / np.cosh(t) ** 2
            return f, d, np.abs(d)
        if activation == "sigmoid":
            s, sm = _sigmoid_ld(t)
            return s, s * sm, s * sm
        if activation == "silu":
            s, sm = _sigmoid_ld(t)
            f = np.where(np.isinf(t) & (t < 0), 0.0, t * s)
            g = np.where(np.abs(t) < 1e4, t * s * sm, 0.0)
            return f, s + g, s + np.abs(g)
        if activation == "softplus":
            beta = np.longdouble(param)
            u = beta * t
            f = np.where(u > 0, t + np.log1p(np.exp(-u)) / beta, np.log1p(np.exp(u)) / beta)
            s, _ = _sigmoid_ld(u)
            return f, s, s
        if activation == "leaky_relu":
            f = np.where(t > 0, t, np.longdouble(param) * t if param > 0 else 0.0)
            d = np.where(t > 0, 1.0, param).astype(np.longdouble)
            return f, d, d
        if activation == "identity":
            return t, np.ones_like(t), np.ones_like(t)
        if activation == "gelu":
            cdf, pdf = _normal_cdf_pdf_ld(t)
            f = np.where(np.isinf(t) & (t < 0), 0.0, t * cdf)
            g = np.where(np.isinf(t), 0.0, t * pdf)
            return f, cdf + g, cdf + np.abs(g)
        if activation == "gelu_tanh":
            tc = np.clip(t, -30, 30)
            u = _GELU_K * (tc + _GELU_C * tc**3)
            s, sm = _sigmoid_ld(2 * u)
            f = np.where(t > 30, t, np.where(t < -30, 0.0, t * s))
            g = 2 * tc * _GELU_K * (1 + 3 * _GELU_C * tc * tc) * s * sm
            return f, s + g, s + np.abs(g)
    raise ValueError(activation)


def phi_numpy(t, activation, a, param=None):
    """Activation of THEORY §1 applied entrywise with NumPy (``param``: beta or slope)."""
    t = np.asarray(t)
    if activation in SMOOTH_PARAMS:
        return smooth_ref(np.asarray(t, np.float64), activation, param)[0].astype(t.dtype)
    if activation == "power":
        return t ** int(a)
    if activation == "signed_power":
        return np.sign(t) * np.abs(t) ** a
    if activation in ("relu_power", "relu"):  # "relu": exponent 1
        return np.where(t > 0, np.abs(t) ** a, 0.0).astype(t.dtype)
    raise ValueError(activation)


def dphi_numpy(t, activation, a, param=None):
    t = np.asarray(t)
    if activation in SMOOTH_PARAMS:
        return smooth_ref(np.asarray(t, np.float64), activation, param)[1].astype(np.float64)
    if activation == "power":
        return a * t ** (int(a) - 1)
    if activation == "signed_power":
        return a * np.abs(t) ** (a - 1)
    if activation in ("relu_power", "relu"):  # "relu": exponent 1
        return np.where(t > 0, a * np.abs(t) ** (a - 1), 0.0)
    raise ValueError(activation)


def forward_numpy(W, b, activation, a, X, param=None):
    """x_hat = phi(X W^T W + b) for a dense batch X of shape (N, n)."""
    W = np.asarray(W, dtype=np.float64)
    Z = (np.asarray(X, dtype=np.float64) @ W.T) @ W
    if b is not None:
        Z = Z + np.asarray(b, dtype=np.float64)
    return phi_numpy(Z, activation, a, param)


def loss_numpy(W, b, activation, a, X, importance=None, param=None):
    """Per-sample loss sum_j I_j (x_j - x_hat_j)^2 (float64)."""
    X = np.asarray(X, dtype=np.float64)
    I = np.ones(X.shape[1]) if importance is None else np.asarray(importance)
    R = forward_numpy(W, b, activation, a, X, param)
    return ((X - R) ** 2 * I).sum(axis=1)


def gain_numpy(W, b, activation, a, X, importance=None, param=None):
    X = np.asarray(X, dtype=np.float64)
    I = np.ones(X.shape[1]) if importance is None else np.asarray(importance)
    return (X**2 * I).sum(axis=1) - loss_numpy(W, b, activation, a, X, importance, param)


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
