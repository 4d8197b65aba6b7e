"""Forward pass against the NumPy reference, every activation and dtype."""

import numpy as np
import pytest
from naive import dphi_numpy, forward_numpy, phi_numpy

import fastsuper as fs
from fastsuper.core.activations import ACTIVATIONS, dphi, phi
from fastsuper.core.bundles import Activation

CASES = [
    ("power", 1),
    ("power", 2),
    ("power", 3),
    ("power", 5),
    ("signed_power", 1.5),
    ("signed_power", 2),
    ("signed_power", 0.7),
    ("relu_power", 1),
    ("relu_power", 2),
    ("relu_power", 3),
    ("relu_power", 2.5),
    ("relu_power", 4),
]
TOL = {np.float64: 1e-12, np.float32: 2e-5}


@pytest.mark.parametrize("act,a", CASES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_forward_dense_and_sparse(act, a, dtype):
    rng = np.random.default_rng(1)
    n, d = 23, 6
    W = (rng.normal(size=(d, n)) / 2).astype(dtype)
    b = (rng.normal(size=n) / 4).astype(dtype)
    model = fs.Model(W, b, activation=act, exponent=a)
    batch = fs.sample(fs.SparseInputs(n, p=0.2, values="gaussian"), 300, seed=7, dtype=dtype)
    X = batch.to_dense()
    ref = forward_numpy(W, b, act, a, X)
    scale = np.abs(ref).max()
    for got in (fs.forward(model, X), fs.forward(model, batch)):
        assert got.dtype == dtype and got.shape == X.shape
        np.testing.assert_allclose(got, ref, rtol=TOL[dtype], atol=TOL[dtype] * scale)
    one = fs.forward(model, X[3])
    np.testing.assert_allclose(one, ref[3], rtol=TOL[dtype], atol=TOL[dtype] * scale)


@pytest.mark.parametrize("act,a", CASES)
def test_phi_dphi_per_element(act, a):
    import numba

    t = np.linspace(-2.5, 2.5, 41)
    code = ACTIVATIONS[act]
    ia = int(a) if float(a).is_integer() else -1

    @numba.njit
    def both(t, act):
        f = np.empty_like(t)
        g = np.empty_like(t)
        for i in range(t.size):
            f[i] = phi(t[i], act)
            g[i] = dphi(t[i], act)
        return f, g

    f, g = both(t, Activation(code, float(a), ia))
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
        fs.Model(W, activation="tanh")
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
