"""The exact gradient of THEORY §3 (exact_loss_grad, exact_gain_grad)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from naive import enumerate_inputs

from fastsuper import (
    Model,
    SparseInputs,
    ValueLaw,
    exact_gain,
    exact_gain_grad,
    exact_loss,
    exact_loss_grad,
)
from fastsuper import testing as T

# value laws: symmetric and not, continuous and discrete
LAWS = {
    "gaussian": ValueLaw("gaussian"),
    "rademacher": ValueLaw("rademacher"),
    "uniform": ValueLaw("uniform"),
    "discrete": ValueLaw("discrete", support=[-1.3, 0.4, 2.1], probs=[0.2, 0.5, 0.3]),
}


def _setup(law_name, m, bias, n=6, d=3, seed=0):
    """A random model and inputs with per-feature p and importances."""
    rng = np.random.default_rng([seed, m, bias, len(law_name), n, d])
    W = 0.8 * rng.normal(size=(d, n)) / math.sqrt(d)
    b = rng.normal(scale=0.3, size=n) if bias else None
    p = rng.uniform(0.05, 0.9, n)
    importance = rng.uniform(0.5, 2.0, n)
    inputs = SparseInputs(n, p=p, values=LAWS[law_name], importance=importance)
    return Model(W, b, exponent=m), inputs


def _fd(f, x, h):
    """Fourth-order central differences of the scalar f at every entry of x."""
    out = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        vals = []
        for s in (-2, -1, 1, 2):
            y = x.copy()
            y[idx] += s * h
            vals.append(f(y))
        out[idx] = (8.0 * (vals[2] - vals[1]) - (vals[3] - vals[0])) / (12.0 * h)
    return out


def _assert_grad_close(got, want, scale, rtol):
    err = np.max(np.abs(got - want)) / scale
    assert err <= rtol, f"max |grad - reference| / max |grad| = {err:.3g} > {rtol:g}"


# ------------------------------------------------------ (a) finite differences


@pytest.mark.parametrize("law_name", sorted(LAWS))
@pytest.mark.parametrize("m", [1, 2, 3, 5])
@pytest.mark.parametrize("bias", [True, False])
def test_matches_finite_differences(law_name, m, bias):
    n, d = (7, 3) if bias else (5, 2)
    model, inputs = _setup(law_name, m, bias, n=n, d=d)
    loss, dW, db = exact_loss_grad(model, inputs)
    assert dW.shape == (d, n) and dW.dtype == np.float64
    assert db.shape == (n,) and db.dtype == np.float64

    b0 = model.bias.astype(np.float64)
    h = 1e-3 * max(1.0, float(np.max(np.abs(model.W))))
    fd_W = _fd(lambda W: exact_loss(Model(W, model.b, exponent=m), inputs), model.W, h)
    # without bias: the gradient at b = 0 (a model with b = 0 has the same loss)
    fd_b = _fd(lambda b: exact_loss(Model(model.W, b, exponent=m), inputs), b0, h)
    scale = max(np.max(np.abs(dW)), np.max(np.abs(db)))
    _assert_grad_close(dW, fd_W, scale, 1e-7)
    _assert_grad_close(db, fd_b, scale, 1e-7)


# ---------------------------------------------- (b) enumeration of every input


@pytest.mark.parametrize("law_name", ["rademacher", "discrete"])
@pytest.mark.parametrize("m", [1, 2, 3])
def test_matches_enumeration(law_name, m):
    """E of the per-sample gradient, summed over every input of a discrete law."""
    n, d = 5, 3
    model, inputs = _setup(law_name, m, True, n=n, d=d, seed=3)
    law = LAWS[law_name]
    X, weights = enumerate_inputs(inputs.p, law.support, law.probs)
    W, b, I = model.W, model.b, inputs.importance
    Z = X @ (W.T @ W) + b
    delta = 2.0 * I * (Z**m - X) * m * Z ** (m - 1)  # d(loss)/dz_j per sample
    gamma = (delta * weights[:, None]).T @ X  # Gamma_ji = E[delta_j x_i]
    want_W = W @ (gamma + gamma.T)
    want_b = weights @ delta

    loss, dW, db = exact_loss_grad(model, inputs)
    scale = max(np.max(np.abs(want_W)), np.max(np.abs(want_b)))
    _assert_grad_close(dW, want_W, scale, 1e-12)
    _assert_grad_close(db, want_b, scale, 1e-12)


def test_moment_cumulant_derivative():
    """dM_s/dkappa_r = C(s, r) M_{s-r}, the total derivative through the recursion."""
    R = 8
    binom = T.binomials(R)
    kappa = np.array([0.0, 0.3, 1.2, -0.4, 2.0, 0.7, -1.1, 0.5, 0.9])
    M = T.moments_from_cumulants(kappa, binom)
    h = 1e-4
    for r in range(1, R + 1):

        def moments(t, r=r):
            k = kappa.copy()
            k[r] = t[0]
            return T.moments_from_cumulants(k, binom)

        for s in range(1, R + 1):
            fd = _fd(lambda t, s=s, moments=moments: moments(t)[s], kappa[r : r + 1], h)[0]
            want = binom[s, r] * M[s - r] if s >= r else 0.0
            assert abs(fd - want) <= 1e-8 * max(1.0, abs(want)), (s, r, fd, want)


# ------------------------------------------------------------- (c) the value


@pytest.mark.parametrize("law_name", sorted(LAWS))
@pytest.mark.parametrize("m", [1, 3, 5])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_loss_equals_exact_loss(law_name, m, dtype):
    model, inputs = _setup(law_name, m, True, n=8, d=3, seed=5)
    model = Model(model.W.astype(dtype), model.b.astype(dtype), exponent=m)
    loss, dW, db = exact_loss_grad(model, inputs)
    want = exact_loss(model, inputs)
    assert isinstance(loss, float)
    assert abs(loss - want) <= 1e-14 * abs(want)
    assert dW.dtype == np.float64 and db.dtype == np.float64

    gain, gW, gb = exact_gain_grad(model, inputs)
    want_gain = exact_gain(model, inputs)
    assert isinstance(gain, float)
    assert abs(gain - want_gain) <= 1e-14 * abs(want_gain)
    np.testing.assert_array_equal(gW, -dW)
    np.testing.assert_array_equal(gb, -db)


def test_no_bias_gives_gradient_at_zero():
    model, inputs = _setup("uniform", 3, False, n=6, d=3, seed=7)
    assert model.b is None
    loss, dW, db = exact_loss_grad(model, inputs)
    loss0, dW0, db0 = exact_loss_grad(Model(model.W, np.zeros(6), exponent=3), inputs)
    assert loss == loss0
    np.testing.assert_array_equal(dW, dW0)
    np.testing.assert_array_equal(db, db0)
    assert np.any(db != 0.0)  # uniform values have a mean: b = 0 is not stationary

    loss1, dW1, db1 = exact_loss_grad(model, inputs, wrt_bias=False)
    assert db1 is None and loss1 == loss
    np.testing.assert_array_equal(dW1, dW)
    assert exact_gain_grad(model, inputs, wrt_bias=False)[2] is None


# ------------------------------------------------------ (d) stationary points


@pytest.mark.parametrize("p", [1e-3, 0.3])
@pytest.mark.parametrize("d", [5, 3])
def test_unsuperposed_optimum_is_stationary(p, d):
    """THEORY §5.1 for m = 3, Gaussian values, no bias, I = 1.

    A = diag(a) with a_j**m = mu_{m+1} / mu_{2m} for d kept features, 0 for
    the others.  Off the diagonal, dL/dA_ji = sum_r g_r r A_ji**(r-1)
    kappa_r(x_i) vanishes at A_ji = 0 (r = 1 has kappa_1 = p mu_1 = 0); on it,
    L_j = p (mu_2 - 2 mu_{m+1} a**m + mu_{2m} a**(2m)) is stationary at the
    optimum a, and at a = 0 for m >= 2; db_j = dL/dM_1(y_j) involves only odd
    moments of x_j, which vanish.  So the gradient is 0 at every p.
    """
    n, m = 5, 3
    inputs = SparseInputs(n, p=p, values="gaussian")
    a = (inputs.moment(m + 1) / inputs.moment(2 * m)) ** (1.0 / m)  # (3 / 15)**(1/3)
    Q, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(d, d)))
    W = np.zeros((d, n))
    W[:, :d] = math.sqrt(a) * Q  # A = W.T W = diag(a, .., a, 0, .., 0)
    model = Model(W, np.zeros(n), exponent=m)
    gain, dW, db = exact_gain_grad(model, inputs)
    kappa = inputs.moment(m + 1) ** 2 / inputs.moment(2 * m)
    assert abs(gain - p * kappa * min(n, d)) <= 1e-13 * p
    assert np.max(np.abs(dW)) <= 1e-10 * p
    assert np.max(np.abs(db)) <= 1e-10 * p
    # a generic nearby point is not stationary (the test has teeth)
    model2 = Model(W * 1.01, np.zeros(n), exponent=m)
    assert np.max(np.abs(exact_loss_grad(model2, inputs)[1])) > 1e-3 * p


def test_linear_optimum_is_stationary():
    """m = 1, zero-mean values, no bias: W = Q [I_d 0] projects onto d features."""
    n, d = 6, 4
    inputs = SparseInputs(n, p=0.2, values="gaussian")
    Q, _ = np.linalg.qr(np.random.default_rng(2).normal(size=(d, d)))
    W = Q @ np.eye(d, n)
    loss, dW, db = exact_loss_grad(Model(W, exponent=1), inputs)
    assert abs(loss - (n - d) * 0.2) <= 1e-14
    assert np.max(np.abs(dW)) <= 1e-14
    assert np.max(np.abs(db)) <= 1e-14


# ------------------------------------------------------------ (e) size, errors


def test_large_runs():
    n, d, m = 2000, 10, 3
    rng = np.random.default_rng(4)
    model = Model(rng.normal(size=(d, n)) / math.sqrt(d), rng.normal(scale=0.1, size=n), exponent=m)
    inputs = SparseInputs(n, p=rng.uniform(1e-4, 1e-2, n), values="gaussian")
    loss, dW, db = exact_loss_grad(model, inputs)
    assert math.isfinite(loss) and loss == exact_loss(model, inputs)
    assert dW.shape == (d, n) and db.shape == (n,)
    assert np.all(np.isfinite(dW)) and np.all(np.isfinite(db))


def test_no_active_features():
    """p = 0: x = 0, L = sum_j I_j b_j**(2m), dL/dW = 0, dL/db = 2m I b**(2m-1)."""
    n, m = 4, 3
    b = np.array([0.5, -1.0, 0.0, 2.0])
    importance = np.array([1.0, 2.0, 0.5, 1.5])
    inputs = SparseInputs(n, p=0.0, importance=importance)
    W = np.random.default_rng(6).normal(size=(2, n))
    loss, dW, db = exact_loss_grad(Model(W, b, exponent=m), inputs)
    assert loss == pytest.approx(float(importance @ b ** (2 * m)), rel=1e-15)
    np.testing.assert_array_equal(dW, 0.0)
    np.testing.assert_allclose(db, 2 * m * importance * b ** (2 * m - 1), rtol=1e-15)


def test_errors():
    inputs = SparseInputs(3, p=0.5)
    model = Model(np.eye(2, 3), exponent=3)
    with pytest.raises(TypeError, match="exact_loss_grad: model"):
        exact_loss_grad(np.eye(3), inputs)
    with pytest.raises(TypeError, match="exact_loss_grad: inputs"):
        exact_loss_grad(model, 0.5)
    with pytest.raises(TypeError, match="wrt_bias must be True or False"):
        exact_loss_grad(model, inputs, wrt_bias=1)
    with pytest.raises(ValueError, match="does not match the model's n"):
        exact_loss_grad(model, SparseInputs(4, p=0.5))
    with pytest.raises(ValueError, match="activation='power'"):
        exact_loss_grad(Model(np.eye(2, 3), activation="relu_power", exponent=1), inputs)
    with pytest.raises(ValueError, match="closed form"):
        exact_gain_grad(model, SparseInputs(3, k=1))
    with pytest.raises(FloatingPointError, match="exact_loss_grad: float64 overflow"):
        exact_loss_grad(Model(1e30 * np.eye(2, 3), exponent=5), inputs)
