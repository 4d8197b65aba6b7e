"""fastsuper.loss_bounds: rigorous bounds checked by enumeration and long Monte Carlo."""

import itertools
import math

import numpy as np
import pytest
from naive import enumerate_inputs, loss_numpy

import fastsuper as fs

ACTS = [("relu_power", 1.0), ("relu_power", 2.5), ("signed_power", 1.5), ("power", 3.0)]


def _model(n, d, act, a, bias, seed, scale=0.6):
    rng = np.random.default_rng(seed)
    W = scale * rng.normal(size=(d, n))
    b = 0.3 * rng.normal(size=n) if bias else None
    return fs.Model(W, b, activation=act, exponent=a)


@pytest.mark.parametrize("act, a", ACTS)
def test_bounds_bracket_the_enumerated_loss(act, a):
    n = 5
    model = _model(n, 3, act, a, bias=True, seed=11)
    support, probs = [-1.0, 0.5, 2.0], [0.3, 0.3, 0.4]
    p = np.array([0.1, 0.3, 0.5, 0.2, 0.05])
    imp = np.linspace(0.5, 2, n)
    inputs = fs.SparseInputs(n, p=p, support=support, probs=probs, importance=imp)
    X, w = enumerate_inputs(p, support, probs)
    losses = loss_numpy(model.W, model.b, act, a, X, imp)
    exact = float(w @ losses)
    bounds = fs.loss_bounds(model, inputs)
    assert bounds.lower <= exact <= bounds.upper
    assert bounds.value_bound == 2.0
    # the lower bound is exactly the k <= 1 part
    active = (X != 0).sum(axis=1)
    le1 = float(w[active <= 1] @ losses[active <= 1])
    assert bounds.lower == pytest.approx(le1, rel=1e-12)
    assert bounds.p_ge2 == pytest.approx(float(w[active >= 2].sum()), rel=1e-12)
    # gain bounds are the same statement
    second = float(w @ (X**2 @ imp))
    assert bounds.second_moment == pytest.approx(second, rel=1e-12)
    assert bounds.gain_lower <= second - exact <= bounds.gain_upper


@pytest.mark.parametrize("act, a", ACTS)
@pytest.mark.parametrize("k", [2, 3, 5])
def test_upper_bound_dominates_every_sample_with_k_active(act, a, k):
    # exactly-k pattern: lower = 0 and upper = U_k, which must bound the loss of
    # every input with k active features (enumerated: all k-subsets, all values)
    n = 5
    model = _model(n, 2, act, a, bias=True, seed=5, scale=0.9)
    support = np.array([-1.5, 0.25, 1.0])
    imp = np.array([1.0, 0.5, 2.0, 1.5, 0.7])
    inputs = fs.SparseInputs(n, k=k, support=support, probs=[0.2, 0.5, 0.3], importance=imp)
    bounds = fs.loss_bounds(model, inputs)
    assert bounds.lower == 0.0 and bounds.p_ge2 == 1.0
    worst = 0.0
    for S in itertools.combinations(range(n), k):
        for vals in itertools.product(support, repeat=k):
            x = np.zeros(n)
            x[list(S)] = vals
            worst = max(worst, float(loss_numpy(model.W, model.b, act, a, x[None], imp)[0]))
    assert worst <= bounds.upper
    assert bounds.upper < 50 * worst  # and not absurdly loose on this small case


@pytest.mark.parametrize("values", ["uniform_sym", "gaussian"])
def test_bounds_bracket_the_exact_power_loss_per_feature_p(values):
    n = 40
    W = fs.theory.random_frame_best(n, 6, 3, values, seed=2)
    model = fs.Model(W)
    p = np.linspace(0.001, 0.02, n)
    inputs = fs.SparseInputs(n, p=p, values=values)
    bounds = fs.loss_bounds(model, inputs)
    exact = fs.exact_loss(model, inputs)
    assert bounds.contains(exact) and bounds.lower < exact < bounds.upper
    # the moment bound is within a factor 5 of the true k >= 2 part (measured ~2.5-4)
    assert bounds.upper_ge2 == bounds.upper_ge2_moments
    assert bounds.upper - bounds.lower < 5 * (exact - bounds.lower)
    if values == "gaussian":
        assert math.isinf(bounds.upper_ge2_sup)
    else:
        assert bounds.upper_ge2_sup > bounds.upper_ge2_moments


def test_moment_bound_is_exact_for_the_identity_linear_model():
    # A = I, phi(t) = t, no bias: V_j = |x_j| so the bound is E[1{K>=2} 4 x_j^2] per output,
    # i.e. 4 mu_2 sum_j p_j P(some other feature active); the true k >= 2 part is 0
    n, p = 6, 0.2
    model = fs.Model(np.eye(n), exponent=1)
    inputs = fs.SparseInputs(n, p=p, values="rademacher")
    bounds = fs.loss_bounds(model, inputs)
    assert bounds.lower == 0.0
    expected = 4 * n * p * (1 - (1 - p) ** (n - 1))
    assert bounds.upper_ge2_moments == pytest.approx(expected, rel=1e-13)


@pytest.mark.parametrize(
    "act, a, values", [("relu_power", 1.0, "uniform"), ("signed_power", 1.5, "uniform_sym")]
)
def test_bounds_bracket_a_long_monte_carlo_run(act, a, values):
    # 4e5 samples, seed fixed; the MC mean must lie within 5 standard errors of [lower, upper]
    n = 200
    model = _model(n, 16, act, a, bias=True, seed=9, scale=0.3)
    inputs = fs.SparseInputs(n, p=0.002, values=values, importance=0.9 ** np.arange(n) + 0.1)
    bounds = fs.loss_bounds(model, inputs)
    est = fs.estimate_loss(model, inputs, 400_000, seed=4)
    assert bounds.lower - 5 * est.stderr <= est.mean <= bounds.upper + 5 * est.stderr
    # sparse enough that the bracket is informative (P(K >= 2) ~ 0.06)
    assert bounds.width < 0.5 * bounds.upper
    report = fs.check(model, inputs, 200_000, seed=1)
    assert report.kind == "bounds" and report.passed
    assert report.lower_bound == bounds.lower and report.upper_bound == bounds.upper
    assert "upper bound" in str(report)


def test_check_with_a_deterministic_zero_loss():
    # x_hat = relu(x) = x for constant values: the loss is 0 for every sample
    model = fs.Model(np.eye(3), activation="relu_power", exponent=1)
    inputs = fs.SparseInputs(3, p=0.5, values="constant")
    bounds = fs.loss_bounds(model, inputs)
    assert bounds.lower == 0.0
    # moment bound: 4 per output with another feature active, 3 * 0.5 * 0.75 * 4
    assert bounds.upper == pytest.approx(4.5, rel=1e-14)
    report = fs.check(model, inputs, 10_000, seed=0)
    assert report.kind == "bounds" and report.passed and report.z == 0.0


def test_gaussian_values_bounds():
    # independent features: the moment bound is finite and brackets a long MC run
    model = _model(30, 3, "relu_power", 1.5, bias=True, seed=1, scale=0.4)
    inputs = fs.SparseInputs(30, p=0.01, values="gaussian")
    bounds = fs.loss_bounds(model, inputs)
    assert math.isinf(bounds.value_bound) and math.isinf(bounds.upper_ge2_sup)
    assert bounds.lower == fs.low_order_terms(model, inputs).lower_bound
    est = fs.estimate_loss(model, inputs, 300_000, seed=3)
    assert bounds.lower - 5 * est.stderr <= est.mean <= bounds.upper + 5 * est.stderr
    assert fs.check(model, inputs, 20_000, seed=0).kind == "bounds"
    # exactly k active with Gaussian values: no finite upper bound
    exact_k = fs.SparseInputs(30, k=2, values="gaussian")
    assert math.isinf(fs.loss_bounds(model, exact_k).upper)
    assert fs.check(model, exact_k, 20_000, seed=0).kind == "lower_bound"


def test_tail_term_keeps_the_bound_rigorous_at_dense_p():
    # p = 0.9, n = 60: K is large; the bound still holds against a long MC run
    n = 60
    model = _model(n, 4, "relu_power", 2.0, bias=True, seed=3, scale=0.2)
    inputs = fs.SparseInputs(n, p=0.9, values="rademacher")
    bounds = fs.loss_bounds(model, inputs)
    est = fs.estimate_loss(model, inputs, 200_000, seed=2)
    assert bounds.lower <= est.mean <= bounds.upper
    assert bounds.k_max == n and bounds.tail == 0.0


def test_bad_input_is_a_clear_error():
    model = fs.Model(np.eye(3))
    with pytest.raises(TypeError, match="inputs must be a fastsuper SparseInputs"):
        fs.loss_bounds(model, 0.5)
    with pytest.raises(TypeError, match="model must be a fastsuper Model"):
        fs.loss_bounds(np.eye(3), fs.SparseInputs(3, p=0.1))
    with pytest.raises(ValueError, match="model.n = 3"):
        fs.loss_bounds(model, fs.SparseInputs(4, p=0.1))
