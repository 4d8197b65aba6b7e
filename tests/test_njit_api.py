"""fastsuper.kernels called from a user's own ``@numba.njit`` code.

Each user-style function below loops over samples calling the public
kernels, and its numbers are checked against the package's vectorised API
(same samples) and the plain NumPy references of tests/naive*.py.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest
from naive import forward_numpy, loss_numpy
from naive_train import loss_grad_numpy

import fastsuper as fs
from fastsuper import kernels as K


@numba.njit(cache=True)  # as a user would: compiled once, cached
def user_sample(law, seed, start, n_samples, X):
    """Dense batch of samples start .. start + n_samples - 1."""
    n = law[0]
    idx = np.empty(n, np.int64)
    val = np.empty(n)
    for s in range(n_samples):
        k = K.sample_one(law, seed, start + s, idx, val)
        for q in range(k):
            X[s, idx[q]] = val[q]


@numba.njit(cache=True)
def user_forward(model, law, seed, n_samples, out):
    n = law[0]
    idx = np.empty(n, np.int64)
    val = np.empty(n)
    for s in range(n_samples):
        k = K.sample_one(law, seed, s, idx, val)
        K.forward_one(model, idx, val, k, out[s])


@numba.njit(cache=True)
def user_losses(model, imp, law, seed, n_samples):
    n = law[0]
    idx = np.empty(n, np.int64)
    val = np.empty(n)
    xhat = np.empty(n)
    out = np.empty(n_samples)
    for s in range(n_samples):
        k = K.sample_one(law, seed, s, idx, val)
        out[s] = K.loss_one(model, imp, idx, val, k, xhat)
    return out


@numba.njit(cache=True)
def user_grad(model, imp, law, seed, n_samples, gW, gb):
    """Mean loss and mean gradient over samples 0 .. n_samples - 1."""
    n = law[0]
    idx = np.empty(n, np.int64)
    val = np.empty(n)
    xhat = np.empty(n)
    total = 0.0
    for s in range(n_samples):
        k = K.sample_one(law, seed, s, idx, val)
        total += K.grad_one(model, imp, idx, val, k, xhat, gW, gb)
    gW /= n_samples
    gb /= n_samples
    return total / n_samples


def _problem(activation="power", exponent=3, dtype=np.float64, n=30, d=4):
    rng = np.random.default_rng(5)
    W = (rng.normal(size=(d, n)) / 2).astype(dtype)
    model = fs.Model(W, b=rng.normal(size=n) * 0.1, activation=activation, exponent=exponent)
    inputs = fs.SparseInputs(n, p=0.1, values="gaussian", importance=rng.uniform(0.5, 2, n))
    return model, inputs


LAWS = [{"p": 0.1}, {"k": 4, "values": "uniform"},
        {"p": 0.2, "support": [-1.0, 3.0], "probs": [0.3, 0.7]}]  # fmt: skip


@pytest.mark.parametrize("law", LAWS)
def test_sample_one_is_fastsuper_sample(law):
    inputs = fs.SparseInputs(30, **law)
    X = np.zeros((500, 30))
    user_sample(K.law_params(inputs), 7, 100, 500, X)
    ref = fs.sample(inputs, 500, seed=7, start=100).to_dense()
    np.testing.assert_array_equal(X, ref)
    assert np.count_nonzero(X) > 0


@pytest.mark.parametrize("activation, exponent", [("power", 3), ("relu_power", 1.5),
                                                  ("signed_power", 0.7)])  # fmt: skip
def test_forward_and_loss_match_api_and_numpy(activation, exponent):
    model, inputs = _problem(activation, exponent)
    mp, law, imp = K.model_params(model), K.law_params(inputs), inputs.importance
    N = 400
    X = fs.sample(inputs, N, seed=3).to_dense()
    out = np.empty((N, model.n))
    user_forward(mp, law, 3, N, out)
    np.testing.assert_allclose(out, fs.forward(model, X), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(out, forward_numpy(model.W, model.b, activation, exponent, X),
                               rtol=1e-12, atol=1e-12)  # fmt: skip
    losses = user_losses(mp, imp, law, 3, N)
    np.testing.assert_allclose(
        losses, loss_numpy(model.W, model.b, activation, exponent, X, imp), rtol=1e-11, atol=1e-12
    )
    est = fs.estimate_loss(model, inputs, N, seed=3)
    assert losses.mean() == pytest.approx(est.mean, rel=1e-12)


def test_loss_of_float32_model_close_to_float32_kernels():
    model, inputs = _problem(dtype=np.float32)
    losses = user_losses(K.model_params(model), inputs.importance, K.law_params(inputs), 1, 2000)
    est = fs.estimate_loss(model, inputs, 2000, seed=1)
    assert losses.mean() == pytest.approx(est.mean, rel=1e-5)


@pytest.mark.parametrize("activation, exponent", [("power", 3), ("relu_power", 1),
                                                  ("signed_power", 2.5)])  # fmt: skip
def test_grad_one_matches_loss_grad_numpy_and_differences(activation, exponent):
    model, inputs = _problem(activation, exponent, n=12, d=3)
    mp, law, imp = K.model_params(model), K.law_params(inputs), inputs.importance
    N = 300
    gW, gb = np.zeros((model.d, model.n)), np.zeros(model.n)
    loss = user_grad(mp, imp, law, 4, N, gW, gb)
    X = fs.sample(inputs, N, seed=4).to_dense()
    rl, rW, rb = loss_grad_numpy(model.W, model.b, activation, exponent, X, imp)
    assert loss == pytest.approx(rl, rel=1e-12)
    np.testing.assert_allclose(gW, rW, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(gb, rb, rtol=1e-10, atol=1e-12)
    api = fs.loss_grad(model, inputs, N, seed=4)
    assert loss == pytest.approx(api.loss, rel=1e-12)
    np.testing.assert_allclose(gW, api.dW, rtol=1e-10, atol=1e-12)
    # central differences of the user's own mean loss
    h = 1e-6
    for r, j in [(0, 0), (1, 5), (2, 11)]:
        Wp, Wm = model.W.copy(), model.W.copy()
        Wp[r, j] += h
        Wm[r, j] -= h
        lp = user_losses(K.model_params(model.with_params(W=Wp)), imp, law, 4, N).mean()
        lm = user_losses(K.model_params(model.with_params(W=Wm)), imp, law, 4, N).mean()
        assert gW[r, j] == pytest.approx((lp - lm) / (2 * h), rel=1e-5, abs=1e-7)


def test_params_helpers_reject_other_objects():
    with pytest.raises(TypeError, match="model must be a fastsuper.Model"):
        K.model_params(np.eye(2))
    with pytest.raises(TypeError, match="inputs must be a fastsuper.SparseInputs"):
        K.law_params({"p": 0.1})


def test_kernels_show_their_public_names_only():
    """``dir(fastsuper.kernels)`` (tab completion) holds the API, not ``np``, ``njit`` or
    ``annotations``; ``__all__`` is the same list."""
    assert dir(K) == sorted(K.__all__)
    assert not {"np", "njit", "annotations"} & set(dir(K))
    assert all(callable(getattr(K, name)) for name in K.__all__)


@pytest.mark.parametrize("activation, param", [("gelu", None), ("softplus", 2.5),
                                               ("leaky_relu", 0.2), ("sigmoid", None)])  # fmt: skip
def test_smooth_activations_and_their_parameter(activation, param):
    """``model_params`` carries softplus's beta and leaky_relu's slope in place of the exponent."""
    model, inputs = _problem("relu", 1)
    model = fs.Model(model.W, model.b, activation=activation, param=param)
    mp, law, imp = K.model_params(model), K.law_params(inputs), inputs.importance
    assert mp[3] == (param if param is not None else 1.0)
    N = 300
    X = fs.sample(inputs, N, seed=3).to_dense()
    losses = user_losses(mp, imp, law, 3, N)
    ref = loss_numpy(model.W, model.b, activation, 1, X, imp, param=param)
    np.testing.assert_allclose(losses, ref, rtol=1e-11, atol=1e-12)
    gW, gb = np.zeros((model.d, model.n)), np.zeros(model.n)
    loss = user_grad(mp, imp, law, 3, N, gW, gb)
    api = fs.loss_grad(model, inputs, N, seed=3)
    assert loss == pytest.approx(api.loss, rel=1e-12)
    np.testing.assert_allclose(gW, api.dW, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(gb, api.db, rtol=1e-10, atol=1e-12)
