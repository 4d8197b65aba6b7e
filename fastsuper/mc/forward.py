"""Forward pass ``x_hat = phi(W.T @ W @ x + b)`` for dense and sparse batches."""

from __future__ import annotations

import numpy as np

from fastsuper.core import validation as v
from fastsuper.core.bundles import activation
from fastsuper.core.laws import SparseBatch
from fastsuper.core.model import Model
from fastsuper.mc.kernels_cpu import apply_phi_rows, forward_csr


def forward(model: Model, X) -> np.ndarray:
    """Reconstruction ``x_hat = phi(W.T @ W @ x + b)`` of each input.

    Parameters
    ----------
    model : Model
        The autoencoder (its dtype is the compute dtype).
    X : array_like of shape (n,) or (N, n), or SparseBatch
        Inputs: one dense vector, a dense batch, or a sparse batch from
        :func:`fastsuper.sample` (only its active entries are touched).

    Returns
    -------
    numpy.ndarray
        ``x_hat`` with the shape of ``X`` ((N, n) for a sparse batch), in the
        model's dtype.

    Examples
    --------
    >>> import numpy as np, fastsuper as fs
    >>> model = fs.Model(np.eye(2), activation="relu_power", exponent=2)
    >>> fs.forward(model, np.array([3.0, -1.0]))
    array([9., 0.])
    """
    if not isinstance(model, Model):
        raise TypeError(f"model must be a fastsuper.Model, got {type(model).__name__}")
    act = activation(model)
    if isinstance(X, SparseBatch):
        if X.n != model.n:
            raise ValueError(f"X has n = {X.n} features but the model has n = {model.n}")
        out = np.empty((X.n_samples, model.n), dtype=model.dtype)
        values = X.values.astype(model.dtype, copy=False)
        forward_csr(model.W, model.bias, act, X.indptr, X.indices, values, out)
        return out
    arr = np.asarray(X)
    if arr.ndim not in (1, 2):
        raise ValueError(f"X must have shape (n,) or (N, n), got shape {arr.shape}")
    X2 = v.as_float_array(
        "X",
        arr.reshape(1, -1) if arr.ndim == 1 else arr,
        ndim=2,
        dtype=model.dtype,
        shape=(None, model.n),
    )
    Z = (X2 @ model.W.T) @ model.W
    if model.b is not None:
        Z += model.b
    Z = np.ascontiguousarray(Z, dtype=model.dtype)
    apply_phi_rows(Z, act)
    return Z[0] if arr.ndim == 1 else Z
