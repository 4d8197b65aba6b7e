"""Plain NumPy references for the training code (slow, obviously correct).

Nothing here imports fastsuper's compiled code.  Formulas (THEORY §1), for a
dense batch X of shape (N, n) and W of shape (d, n)::

    H = X W^T,  Z = H W + b,  E = phi(Z) - X
    per-sample loss = sum_j I_j E_j^2
    G = 2 I E phi'(Z)                  (dloss/dZ)
    dW = H^T G + (G W^T)^T X,  db = sum over samples of G
"""

from __future__ import annotations

import math

import numpy as np


def phi_np(t, activation, a):
    if activation == "power":
        return t ** int(a)
    if activation == "signed_power":
        return np.sign(t) * np.abs(t) ** a
    if activation in ("relu_power", "relu"):  # "relu": exponent 1
        return np.where(t > 0, np.abs(t) ** a, 0.0)
    raise ValueError(activation)


def dphi_np(t, activation, a):
    if activation == "power":
        return a * t ** (int(a) - 1)
    if activation == "signed_power":
        return a * np.abs(t) ** (a - 1)
    if activation in ("relu_power", "relu"):  # "relu": exponent 1
        return np.where(t > 0, a * np.abs(np.where(t > 0, t, 1.0)) ** (a - 1), 0.0)
    raise ValueError(activation)


def loss_grad_numpy(W, b, activation, a, X, importance=None):
    """Mean over samples of ``sum_j I_j (x_j - x_hat_j)^2`` and its gradient (float64)."""
    W = np.asarray(W, dtype=np.float64)
    X = np.asarray(X, dtype=np.float64)
    n = W.shape[1]
    b = np.zeros(n) if b is None else np.asarray(b, dtype=np.float64)
    I = np.ones(n) if importance is None else np.asarray(importance, dtype=np.float64)
    N = X.shape[0]
    H = X @ W.T
    Z = H @ W + b
    E = phi_np(Z, activation, a) - X
    loss = float((I * E**2).sum()) / N
    G = 2.0 * I * E * dphi_np(Z, activation, a)
    dW = (H.T @ G + (G @ W.T).T @ X) / N
    db = G.sum(axis=0) / N
    return loss, dW, db


def adam_step_numpy(param, grad, m, v, step, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
    """PyTorch's Adam update (``step`` counts from 1); returns new (param, m, v)."""
    beta1, beta2 = betas
    m = beta1 * m + (1.0 - beta1) * grad
    v = beta2 * v + (1.0 - beta2) * grad * grad
    step_size = lr / (1.0 - beta1 ** float(step))
    bc2s = math.sqrt(1.0 - beta2 ** float(step))
    return param - step_size * m / (np.sqrt(v) / bc2s + eps), m, v


def feature_dimensionality(W):
    """``D_i = |w_i|^2 / sum_j (w_i_hat . w_j)^2`` for the columns of W (THEORY §6)."""
    W = np.asarray(W, dtype=np.float64)
    norms = np.linalg.norm(W, axis=0)
    unit = W / np.where(norms > 0, norms, 1.0)
    overlaps = (unit.T @ W) ** 2
    return norms**2 / overlaps.sum(axis=1)
