"""``@njit`` building blocks to call from your own Numba code.

The per-sample maths of fastsuper with stable signatures: draw one input,
run one sample through the model, its loss, its gradient.  They are plain
``numba.njit`` functions (``cache=True``), so a user's ``@numba.njit``
function can call them in its own loops, for estimators or training schemes
the package does not have::

    import numba, numpy as np
    import fastsuper as fs
    from fastsuper import kernels as K

    @numba.njit
    def mean_loss(model, imp, law, seed, n_samples):
        n = law[0]
        idx = np.empty(n, np.int64)
        val = np.empty(n)
        xhat = np.empty(n)
        total = 0.0
        for s in range(n_samples):
            k = K.sample_one(law, seed, s, idx, val)
            total += K.loss_one(model, imp, idx, val, k, xhat)
        return total / n_samples

    mean_loss(K.model_params(model), inputs.importance, K.law_params(inputs), 0, 10_000)

A model and an input law enter as tuples made once, outside compiled code,
by :func:`model_params` and :func:`law_params` (the latter is the package's
:class:`~fastsuper.core.bundles.InputLaw` bundle); a sample is its sorted
active indices ``idx[:k]`` and their values ``val[:k]`` (float64).

Conventions (the same as the rest of the package):

* sample ``index`` of ``seed`` is the sample of :func:`fastsuper.sample`,
  :func:`fastsuper.estimate_loss` and :func:`fastsuper.loss_grad` with that
  seed and index, bit for bit;
* the loss of a sample is ``sum_j I_j (x_j - x_hat_j)^2`` (a sum over
  features, like :attr:`fastsuper.LossEstimate.mean`);
* these functions compute in float64 whatever the dtype of ``W`` (the
  package's own float32 kernels round to float32 on the way, so compare
  their numbers with a tolerance).

Signatures (stable: new functionality gets new functions)
----------------------------------------------------------
``sample_one(law, seed, index, idx, val) -> k``
``forward_one(model, idx, val, k, xhat) -> None``
``loss_one(model, imp, idx, val, k, xhat) -> float``
``grad_one(model, imp, idx, val, k, xhat, gW, gb) -> float``
"""

from __future__ import annotations

import numpy as np

from fastsuper.core.activations import dphi, phi
from fastsuper.core.bundles import Activation, InputLaw, activation, borrowed_law
from fastsuper.core.jit import borrow, njit
from fastsuper.core.laws import SparseInputs, draw_sample
from fastsuper.core.model import Model
from fastsuper.core.rng import sample_key, seed_key

__all__ = [
    "forward_one",
    "grad_one",
    "law_params",
    "loss_one",
    "model_params",
    "sample_one",
]


def __dir__() -> list[str]:
    """The public names only (``dir(fastsuper.kernels)``, tab completion)."""
    return sorted(__all__)


def model_params(model: Model) -> tuple:
    """The tuple ``(W, b, act, a, ia)`` that the kernels take for ``model``.

    ``W`` (d, n) in the model's dtype, ``b`` (n) the bias (zeros without
    one), ``act`` the activation code, ``a`` the exponent (float64) -- for
    ``"softplus"`` and ``"leaky_relu"`` their parameter (``beta``, ``slope``)
    instead, their exponent being fixed at 1 -- and ``ia`` the exponent as an
    integer (-1 when it is not one).

    Examples
    --------
    >>> import numpy as np, fastsuper as fs
    >>> W, b, act, a, ia = fs.kernels.model_params(fs.Model(np.eye(2, 3), exponent=3))
    >>> W.shape, b.shape, a, ia
    ((2, 3), (3,), 3.0, 3)
    """
    if not isinstance(model, Model):
        raise TypeError(f"model must be a fastsuper.Model, got {type(model).__name__}")
    act = activation(model)
    a = model.param if model.param_or_none is not None else float(model.exponent)
    return (model.W, model.bias, act.code, a, act.ia)


def law_params(inputs: SparseInputs) -> InputLaw:
    """The tuple that :func:`sample_one` takes for the input law ``inputs``.

    The :class:`~fastsuper.core.bundles.InputLaw` of the package's kernels.
    Its first entry is ``n``, the number of features (the length the
    ``idx``/``val`` buffers need).  The importances are not in it: pass
    ``inputs.importance`` to :func:`loss_one` and :func:`grad_one`.

    Examples
    --------
    >>> import fastsuper as fs
    >>> fs.kernels.law_params(fs.SparseInputs(50, p=0.1))[0]
    50
    """
    if not isinstance(inputs, SparseInputs):
        raise TypeError(f"inputs must be a fastsuper.SparseInputs, got {type(inputs).__name__}")
    return inputs._kernel_params()


@njit
def sample_one(law, seed, index, idx, val):
    """Draw sample ``index`` of ``seed``: active indices into ``idx``, values into ``val``.

    Parameters
    ----------
    law : tuple
        :func:`law_params` of the input law.
    seed : int
        Seed, an integer in ``[0, 2**64)`` (a negative int64 is taken modulo
        ``2**64``, like :func:`fastsuper.sample` does).
    index : int
        Sample index (>= 0).
    idx : int64 array of length >= n
        Receives the sorted active indices in ``idx[:k]``.
    val : float64 array of length >= n
        Receives their values in ``val[:k]``.

    Returns
    -------
    int
        ``k``, the number of active features.
    """
    key = sample_key(seed_key(np.uint64(seed)), index)
    return draw_sample(key, borrowed_law(law), borrow(idx), borrow(val))


@njit
def _preact(W, b, idx, val, k, z):
    """``z = W^T (W x) + b`` in float64 over the active entries of ``x``."""
    d, n = W.shape
    for j in range(n):
        z[j] = b[j]
    for r in range(d):
        hr = 0.0
        for q in range(k):
            hr += np.float64(W[r, idx[q]]) * val[q]
        for j in range(n):
            z[j] += np.float64(W[r, j]) * hr


@njit
def forward_one(model, idx, val, k, xhat):
    """``x_hat = phi(W^T W x + b)`` of one sample, written into ``xhat`` (float64, length n).

    Parameters
    ----------
    model : tuple
        :func:`model_params` of the model.
    idx, val : arrays
        The sample (``idx[:k]`` sorted active indices, ``val[:k]`` values).
    k : int
        Number of active features.
    xhat : float64 array of length n
        Receives the reconstruction.
    """
    W, b, code, a, ia = model
    act = Activation(code, a, ia, np.float64(a))
    _preact(W, b, idx, val, k, xhat)
    for j in range(xhat.shape[0]):
        xhat[j] = phi(xhat[j], act)


@njit
def loss_one(model, imp, idx, val, k, xhat):
    """Loss ``sum_j I_j (x_j - x_hat_j)^2`` of one sample (float64).

    Parameters
    ----------
    model : tuple
        :func:`model_params` of the model.
    imp : float64 array of length n
        Importances ``I_j`` (``inputs.importance``).
    idx, val, k
        The sample, as from :func:`sample_one`.
    xhat : float64 array of length n
        Receives ``x_hat`` (scratch the caller owns, so nothing is allocated).

    Returns
    -------
    float
        The loss.  Not finite when the sample overflows (check with
        ``math.isfinite``).
    """
    forward_one(model, idx, val, k, xhat)
    loss = 0.0
    for j in range(xhat.shape[0]):
        loss += imp[j] * xhat[j] * xhat[j]
    for q in range(k):
        i = idx[q]
        e = val[q] - xhat[i]
        loss += imp[i] * (e * e - xhat[i] * xhat[i])
    return loss


@njit
def grad_one(model, imp, idx, val, k, xhat, gW, gb):
    """Loss of one sample, and its gradient in ``W`` and ``b`` added to ``gW`` and ``gb``.

    With ``h = W x``, ``z = W^T h + b``, ``e_j = phi(z_j) - x_j`` and
    ``g_j = 2 I_j e_j phi'(z_j)``: ``gb += g``, ``gW += h g^T + (W g) x^T``
    (THEORY §1), the latter over the active entries of ``x`` only.

    Parameters
    ----------
    model : tuple
        :func:`model_params` of the model.
    imp : float64 array of length n
        Importances.
    idx, val, k
        The sample, as from :func:`sample_one`.
    xhat : float64 array of length n
        Receives ``x_hat``.
    gW : float64 array of shape (d, n)
        The gradient of the loss in ``W`` is added to it.
    gb : float64 array of length n
        The gradient in ``b`` is added to it.

    Returns
    -------
    float
        The loss of the sample.
    """
    W, b, code, a, ia = model
    act = Activation(code, a, ia, np.float64(a))
    d, n = W.shape
    h = np.zeros(d)
    for r in range(d):
        for q in range(k):
            h[r] += np.float64(W[r, idx[q]]) * val[q]
    _preact(W, b, idx, val, k, xhat)  # z, replaced by phi(z) below
    x = np.zeros(n)
    for q in range(k):
        x[idx[q]] = val[q]
    g = np.empty(n)
    loss = 0.0
    for j in range(n):
        z = xhat[j]
        f = phi(z, act)
        e = f - x[j]
        loss += imp[j] * e * e
        g[j] = 2.0 * imp[j] * e * dphi(z, act) if e != 0 else 0.0
        gb[j] += g[j]
        xhat[j] = f
    for r in range(d):
        u = 0.0
        for j in range(n):
            gW[r, j] += h[r] * g[j]
            u += np.float64(W[r, j]) * g[j]
        for q in range(k):
            gW[r, idx[q]] += u * val[q]
    return loss
