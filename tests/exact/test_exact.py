"""The closed-form population loss of THEORY §3 (exact_loss, exact_gain)."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
from naive import enumerate_inputs, forward_numpy, gain_numpy, loss_numpy

from fastsuper import (
    Model,
    SparseInputs,
    ValueLaw,
    exact_gain,
    exact_loss,
    exact_loss_and_gain,
)
from fastsuper import testing as T

RTOL = 1e-12

# discrete laws: name -> (ValueLaw, n used for enumeration)
LAWS = {
    "rademacher": (ValueLaw("rademacher"), 7),
    "constant": (ValueLaw("constant"), 7),
    "discrete3": (ValueLaw("discrete", support=[-1.3, 0.4, 2.1], probs=[0.2, 0.5, 0.3]), 6),
}


@functools.cache
def _enumeration(law_name: str, seed: int):
    """(p, X, weights) for the law: every input with its probability."""
    law, n = LAWS[law_name]
    p = np.random.default_rng(seed).uniform(0.05, 0.95, n)
    X, weights = enumerate_inputs(p, law.support, law.probs)
    return p, X, weights


def _random_model(rng, n, d, m, bias, dtype=np.float64):
    W = rng.normal(size=(d, n)) / math.sqrt(d)
    b = rng.normal(scale=0.3, size=n) if bias else None
    W = W.astype(dtype)
    return Model(W, None if b is None else b.astype(dtype), activation="power", exponent=m)


def _close(got, want, rtol=RTOL):
    np.testing.assert_allclose(got, want, rtol=rtol, atol=0)


# ----------------------------------------------------------------- (a) enumeration


@pytest.mark.parametrize("law_name", sorted(LAWS))
@pytest.mark.parametrize("m", [1, 2, 3, 5])
@pytest.mark.parametrize("bias", [False, True])
def test_matches_enumeration(law_name, m, bias):
    p, X, weights = _enumeration(law_name, 11)
    law, n = LAWS[law_name]
    rng = np.random.default_rng(1000 * m + 10 * bias + len(law_name))
    model = _random_model(rng, n, d=3, m=m, bias=bias)
    importance = rng.uniform(0.5, 2.0, n)
    inputs = SparseInputs(n, p=p, values=law, importance=importance)

    want_loss = weights @ loss_numpy(model.W, model.b, "power", m, X, importance)
    want_gain = weights @ gain_numpy(model.W, model.b, "power", m, X, importance)
    R = forward_numpy(model.W, model.b, "power", m, X)
    want_per = weights @ ((X - R) ** 2 * importance)

    loss = exact_loss(model, inputs)
    gain = exact_gain(model, inputs)
    assert isinstance(loss, float) and isinstance(gain, float)
    _close(loss, want_loss)
    _close(gain, want_gain)
    per = exact_loss(model, inputs, per_feature=True)
    assert per.dtype == np.float64 and per.shape == (n,)
    _close(per, want_per)
    both = exact_loss_and_gain(model, inputs)
    _close(both, (want_loss, want_gain))


@pytest.mark.parametrize("m", [1, 3])
def test_enumeration_scalar_p_default_importance_wide(m):
    """Scalar p, unit importances, d > n, and features that are never or always on."""
    law, n = LAWS["discrete3"]
    rng = np.random.default_rng(7 + m)
    model = _random_model(rng, n, d=8, m=m, bias=True)
    for p in (0.3, np.array([0.0, 1.0, 0.5, 0.2, 1.0, 0.0])):
        X, weights = enumerate_inputs(np.broadcast_to(p, n), law.support, law.probs)
        inputs = SparseInputs(n, p=p, values=law)
        _close(exact_loss(model, inputs), weights @ loss_numpy(model.W, model.b, "power", m, X))
        _close(exact_gain(model, inputs), weights @ gain_numpy(model.W, model.b, "power", m, X))


# --------------------------------------------------------- (b) unsuperposed, §5.1


@pytest.mark.parametrize("m", [1, 2, 3])
@pytest.mark.parametrize("p", [1e-4, 0.05, 0.5, 1.0])
def test_unsuperposed_closed_form_gaussian(m, p):
    n, d = 5, 7
    rng = np.random.default_rng(3)
    Q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    scale = rng.uniform(0.5, 1.3, n)
    W = Q[:, :n] * scale  # orthogonal columns: A = diag(scale**2) up to round-off
    model = Model(W, exponent=m)
    inputs = SparseInputs(n, p=p, values="gaussian")
    mu = [inputs.moment(r) for r in range(2 * m + 1)]
    a = scale**2
    want = p * (2 * mu[m + 1] * a**m - mu[2 * m] * a ** (2 * m))
    _close(exact_gain(model, inputs, per_feature=True), want)
    _close(exact_gain(model, inputs), want.sum())
    _close(exact_loss(model, inputs), n * p * mu[2] - want.sum())


@pytest.mark.parametrize("p", [0.01, 0.2, 0.9])
def test_unsuperposed_optimum_reaches_p_kappa_min_n_d(p):
    """§5.1: at A_ii = (mu_{m+1} / mu_{2m})**(1/m), d < n, the gain is p kappa d."""
    n, d, m = 6, 4, 3
    inputs = SparseInputs(n, p=p, values="gaussian")
    mu4, mu6 = inputs.moment(4), inputs.moment(6)
    a = (mu4 / mu6) ** (1 / m)
    W = np.zeros((d, n))
    W[np.arange(d), np.arange(d)] = math.sqrt(a)  # d features kept, the rest off
    kappa = mu4**2 / mu6
    _close(exact_gain(Model(W, exponent=m), inputs), p * kappa * d)


# ------------------------------------------------------------- (c) linear model


def test_linear_scaled_identity_with_bias():
    n, c, p = 4, 0.7, 0.3
    law = ValueLaw("uniform")
    b = np.array([0.1, -0.2, 0.0, 0.35])
    importance = np.array([1.0, 0.9, 0.81, 0.729])
    model = Model(math.sqrt(c) * np.eye(n), b, exponent=1)  # x_hat = c x + b
    inputs = SparseInputs(n, p=p, values=law, importance=importance)
    mu1, mu2 = law.moment(1), law.moment(2)
    want = importance * ((1 - c) ** 2 * p * mu2 - 2 * (1 - c) * b * p * mu1 + b**2)
    _close(exact_loss(model, inputs, per_feature=True), want)
    _close(exact_loss(model, inputs), want.sum())


def test_linear_optimum_of_theory_section_6():
    """Keep d features, output the mean elsewhere: loss = sum of dropped I_i Var(x_i)."""
    n, d = 6, 3
    p = np.array([0.5, 0.4, 0.3, 0.2, 0.1, 0.05])
    importance = 0.9 ** np.arange(n)
    law = ValueLaw("uniform")
    W = np.zeros((d, n))
    W[np.arange(d), np.arange(d)] = 1.0
    b = np.where(np.arange(n) < d, 0.0, p * law.moment(1))
    model = Model(W, b, exponent=1)
    inputs = SparseInputs(n, p=p, values=law, importance=importance)
    var = p * law.moment(2) - p**2 * law.moment(1) ** 2
    _close(exact_loss(model, inputs), float(np.sum((importance * var)[d:])))
    assert exact_loss(Model(np.eye(n), exponent=1), inputs) == 0.0


# --------------------------------------------------------------------- (d) float32


@pytest.mark.parametrize("m", [1, 3])
def test_float32_model_same_as_float64(m):
    n, d = 40, 10
    rng = np.random.default_rng(5)
    m64 = _random_model(rng, n, d, m, bias=True)
    m32 = Model(m64.W.astype(np.float32), m64.b.astype(np.float32), exponent=m)
    m32_in_64 = Model(m32.W.astype(np.float64), m32.b.astype(np.float64), exponent=m)
    inputs = SparseInputs(n, p=rng.uniform(0.01, 0.2, n), values="gaussian")
    loss32 = exact_loss(m32, inputs)
    assert isinstance(loss32, float)
    assert loss32 == exact_loss(m32_in_64, inputs)  # computed in float64 either way
    _close(loss32, exact_loss(m64, inputs), rtol=1e-5)  # only the weight cast differs


# ------------------------------------------------------------ (e) consistency


@pytest.mark.parametrize("values", ["gaussian", "uniform", "uniform_sym", "rademacher"])
def test_per_feature_sums_and_gain_plus_loss(values):
    n, d, m = 30, 8, 3
    rng = np.random.default_rng(9)
    model = _random_model(rng, n, d, m, bias=True)
    importance = rng.uniform(0.5, 2.0, n)
    inputs = SparseInputs(n, p=rng.uniform(0.0, 0.3, n), values=values, importance=importance)
    loss, gain = exact_loss(model, inputs), exact_gain(model, inputs)
    loss_j = exact_loss(model, inputs, per_feature=True)
    gain_j = exact_gain(model, inputs, per_feature=True)
    _close(loss_j.sum(), loss)
    _close(gain_j.sum(), gain)
    signal = importance * inputs.feature_moment(2)
    _close(loss_j + gain_j, signal, rtol=1e-10)
    _close(loss + gain, signal.sum(), rtol=1e-10)
    both = exact_loss_and_gain(model, inputs, per_feature=True)
    np.testing.assert_array_equal(both[0], loss_j)
    np.testing.assert_array_equal(both[1], gain_j)


def test_cumulant_moment_recursions_invert():
    binom = T.binomials(8)
    gaussian = np.array([1.0, 0, 1, 0, 3, 0, 15, 0, 105])
    kappa = T.cumulants_from_moments(gaussian, binom)
    np.testing.assert_allclose(kappa[1:], [0, 1, 0, 0, 0, 0, 0, 0], atol=1e-12)
    moments = np.random.default_rng(0).uniform(-1, 1, (9, 4))
    moments[0] = 1.0
    back = T.moments_from_cumulants(T.cumulants_from_moments(moments, binom), binom)
    np.testing.assert_allclose(back, moments, rtol=1e-12)


# --------------------------------------------------------------------- (f) errors


@pytest.fixture
def ok():
    return Model(np.eye(2, 3), exponent=3), SparseInputs(3, p=0.1)


@pytest.mark.parametrize("func", [exact_loss, exact_gain, exact_loss_and_gain])
def test_bad_arguments(func, ok):
    model, inputs = ok
    with pytest.raises(TypeError, match=r"model must be a fastsuper\.Model, got ndarray"):
        func(np.eye(3), inputs)
    with pytest.raises(TypeError, match=r"inputs must be a .*SparseInputs, got float"):
        func(model, 0.1)
    with pytest.raises(ValueError, match=r"inputs\.n = 4 does not match the model's n = 3"):
        func(model, SparseInputs(4, p=0.1))
    with pytest.raises(
        ValueError, match=r"activation = 'relu_power' has no closed form.*estimate_loss.*k <= 1"
    ):
        func(Model(np.eye(2, 3), activation="relu_power", exponent=1), inputs)
    with pytest.raises(ValueError, match=r"signed_power"):
        func(Model(np.eye(2, 3), activation="signed_power", exponent=3), inputs)
    with pytest.raises(ValueError, match=r"inputs\.pattern = 'exactly_k'.*Bernoulli"):
        func(model, SparseInputs(3, k=1))
    with pytest.raises(TypeError, match=r"per_feature must be True or False, got 'yes'"):
        func(model, inputs, per_feature="yes")


@pytest.mark.parametrize("func", [exact_loss, exact_gain, exact_loss_and_gain])
def test_overflow_raises(func):
    model = Model(np.full((2, 3), 1e40), exponent=5)  # A ~ 1e80, z**10 ~ 1e800
    inputs = SparseInputs(3, p=0.5, values="rademacher")
    with pytest.raises(FloatingPointError, match=r"overflow.*feature j = 0.*m = 5"):
        func(model, inputs)
