"""Sampled gradients and Adam with the smooth and piecewise-linear activations."""

import numpy as np
import pytest
from builders import random_model
from checks import assert_sampled_gradient

import fastsuper as fs

CASES = [
    ("gelu", None, "gaussian"),
    ("gelu_tanh", None, "uniform"),
    ("tanh", None, "uniform_sym"),
    ("softplus", 2.0, "gaussian"),
    ("sigmoid", None, "uniform"),
    ("silu", None, "gaussian"),
    ("leaky_relu", 0.1, "uniform_sym"),
    ("identity", None, "gaussian"),
]


@pytest.mark.parametrize("act,param,values", CASES)
@pytest.mark.parametrize("dtype", [np.float64])
def test_loss_grad_matches_finite_differences(act, param, values, dtype):
    """Central differences of the sampled mean loss (same samples) in every W and b entry."""
    n, d, N = 6, 3, 300
    model = random_model(n, d, act, None, scale=0.6, param=param, dtype=dtype)
    inputs = fs.SparseInputs(n, p=0.4, values=values, importance=0.9 ** np.arange(n))
    got = assert_sampled_gradient(model, inputs, N, block_size=100)
    assert got.loss == pytest.approx(fs.estimate_loss(model, inputs, N, seed=1).mean, rel=1e-12)


@pytest.mark.parametrize("act,param", [("gelu", None), ("softplus", 3.0), ("leaky_relu", 0.2)])
def test_fit_lowers_the_loss_and_keeps_the_parameter(act, param, tmp_path):
    res = fs.fit(8, 3, n_instances=2, p=0.1, activation=act, param=param, steps=300, lr=1e-2,
                 batch_size=256, seed=2, log_every=50)  # fmt: skip
    assert (res.loss_history[-1] < res.loss_history[0]).all()
    model = res.model(1)
    assert model.activation == act and model.param_or_none == param
    path = tmp_path / "fit.npz"
    res.save(path)
    assert fs.FitResult.load(path).model(1).param_or_none == param
    est = fs.estimate_loss(model, res.inputs(1), 20_000, seed=3)
    assert np.isfinite(est.mean)


def test_fit_refuses_a_bad_parameter():
    with pytest.raises(ValueError, match="0 < beta <= 1e6"):
        fs.fit(4, 2, activation="softplus", param=-1.0, steps=1)
    with pytest.raises(ValueError, match="takes no parameter"):
        fs.fit(4, 2, activation="gelu", param=1.0, steps=1)
