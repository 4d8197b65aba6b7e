"""The model: per-element activations against NumPy, and the validation of its arguments."""

import numpy as np
import pytest
from builders import ACTIVATION_CASES as CASES
from checks import phi_dphi
from naive import dphi_numpy, phi_numpy

import fastsuper as fs
from fastsuper import testing as T


@pytest.mark.parametrize("act,a", CASES)
def test_phi_dphi_per_element(act, a):
    t = np.linspace(-2.5, 2.5, 41)
    code = T.ACTIVATIONS[act]
    ia = int(a) if float(a).is_integer() else -1
    f, g = phi_dphi(t, T.Activation(code, float(a), ia))
    np.testing.assert_allclose(f, phi_numpy(t, act, a), rtol=1e-14, atol=1e-300)
    nz = t != 0
    np.testing.assert_allclose(g[nz], dphi_numpy(t[nz], act, a), rtol=1e-13)
    h = 1e-6  # central differences away from the kink
    away = np.abs(t) > 1e-3
    fd = (phi_numpy(t + h, act, a) - phi_numpy(t - h, act, a)) / (2 * h)
    np.testing.assert_allclose(g[away], fd[away], rtol=1e-6, atol=1e-8)


def test_model_validation():
    W = np.ones((2, 3))
    with pytest.raises(ValueError, match="W must be 2-dimensional"):
        fs.Model(np.ones(3))
    with pytest.raises(TypeError, match="W must have dtype float32 or float64, got int64"):
        fs.Model(np.ones((2, 3), dtype=np.int64))
    with pytest.raises(ValueError, match=r"W must be finite; W\[0, 1\] = nan"):
        fs.Model(np.array([[1.0, np.nan, 0.0]]))
    with pytest.raises(ValueError, match=r"b has shape \(2,\); axis 0 must have length 3"):
        fs.Model(W, b=np.ones(2))
    with pytest.raises(ValueError, match="activation must be one of"):
        fs.Model(W, activation="swish")
    with pytest.raises(ValueError, match="exponent must be > 0, got 0.0"):
        fs.Model(W, exponent=0)
    with pytest.raises(ValueError, match="exponent must be > 0, got -1.0"):
        fs.Model(W, activation="relu_power", exponent=-1)
    with pytest.raises(ValueError, match="exponent must be an integer >= 1 for activation='power'"):
        fs.Model(W, activation="power", exponent=2.5)
    with pytest.raises(ValueError, match="exponent must be finite"):
        fs.Model(W, activation="relu_power", exponent=float("inf"))
    model = fs.Model(W)
    with pytest.raises(ValueError, match=r"X has shape \(4, 2\); axis 1 must have length 3"):
        fs.forward(model, np.ones((4, 2)))
    with pytest.raises(ValueError, match="X must be finite"):
        fs.forward(model, np.array([1.0, np.inf, 0.0]))
    batch = fs.sample(fs.SparseInputs(4, p=0.5), 3)
    with pytest.raises(ValueError, match="X has n = 4 features but the model has n = 3"):
        fs.forward(model, batch)


@pytest.mark.parametrize(
    "activation,exponent", [("power", 3), ("signed_power", 3), ("relu_power", 1), ("relu", 1)]
)
def test_one_default_exponent_per_activation(activation, exponent):
    """No exponent: the activation's own default (relu_power is ReLU, not ReLU^3)."""
    model = fs.Model(np.eye(2, 3), activation=activation)
    assert model.exponent == exponent and model.activation == activation
    assert f"exponent={exponent}" in repr(model)


def test_relu_is_relu_power_with_exponent_1():
    rng = np.random.default_rng(3)
    W, b = rng.normal(size=(3, 9)) * 0.6, rng.normal(size=9) * 0.2
    relu = fs.Model(W, b, activation="relu")
    same = fs.Model(W, b, activation="relu_power", exponent=1)
    assert (relu.act_code, relu.exponent, relu.int_exponent) == (same.act_code, 1, 1)
    inputs = fs.SparseInputs(9, p=0.3, values="gaussian")
    a, c = fs.estimate_loss(relu, inputs, 4096, seed=3), fs.estimate_loss(same, inputs, 4096, 3)
    assert (a.mean, a.gain_mean, a.stderr) == (c.mean, c.gain_mean, c.stderr)
    assert fs.Model(W, activation="relu", exponent=1.0).exponent == 1
    with pytest.raises(ValueError, match="activation='relu' has exponent 1, got exponent=3"):
        fs.Model(W, activation="relu", exponent=3)
