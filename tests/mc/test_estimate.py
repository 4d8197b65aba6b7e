"""Monte-Carlo loss: the NumPy reference, exact values, determinism, errors."""

import numba
import numpy as np
import pytest
from builders import random_model
from checks import assert_same_estimate
from naive import enumerate_inputs, gain_numpy, loss_numpy

import fastsuper as fs


@pytest.mark.parametrize(
    "act,a", [("power", 3), ("relu_power", 2), ("signed_power", 1.5), ("relu_power", 1)]
)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("path", ["dense", "columns"])
def test_matches_numpy_reference_on_same_samples(act, a, dtype, path):
    """Same samples through the NumPy reference: equal to round-off."""
    n, N = 25, 6000
    model = random_model(n, 5, act, a, dtype=dtype)
    imp = 0.9 ** np.arange(n)
    inputs = fs.SparseInputs(n, p=np.linspace(0.02, 0.3, n), values="gaussian", importance=imp)
    est = fs.estimate_loss(model, inputs, N, seed=4, path=path, per_feature=True, block_size=500)
    X = fs.sample(inputs, N, seed=4, dtype=dtype).to_dense()
    loss = loss_numpy(model.W, model.b, act, a, X, imp)
    gain = gain_numpy(model.W, model.b, act, a, X, imp)
    rtol = 1e-10 if dtype == np.float64 else 1e-4
    assert est.mean == pytest.approx(loss.mean(), rel=rtol)
    assert est.gain_mean == pytest.approx(gain.mean(), rel=rtol, abs=rtol * abs(loss.mean()))
    assert est.stderr == pytest.approx(
        loss.std(ddof=1) / np.sqrt(N), rel=1e-3 if dtype == np.float32 else 1e-9
    )
    assert est.gain_stderr == pytest.approx(
        gain.std(ddof=1) / np.sqrt(N), rel=1e-3 if dtype == np.float32 else 1e-9
    )
    R = fs.forward(model.with_params(model.W.astype(np.float64), model.b.astype(np.float64)), X)
    per = ((X - R) ** 2 * imp).mean(axis=0)
    np.testing.assert_allclose(est.per_feature, per, rtol=rtol * 10, atol=rtol * per.max())
    assert est.per_feature.sum() == pytest.approx(est.mean, rel=1e-9)
    assert est.n_samples == N and est.path == path


SETTINGS = [
    dict(n=12, d=3, a=3, values="rademacher", p=0.1, bias=False),
    dict(n=12, d=3, a=3, values="gaussian", p=0.05, bias=True),
    dict(n=30, d=6, a=1, values="uniform", p=0.2, bias=True),
    dict(n=16, d=4, a=3, values="uniform_sym", p=np.linspace(0.01, 0.5, 16), bias=True),
    dict(n=8, d=8, a=5, values="constant", p=0.3, bias=False),
    dict(n=200, d=10, a=3, values="gaussian", p=2e-3, bias=False),
]


@pytest.mark.parametrize("cfg", SETTINGS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_monte_carlo_agrees_with_exact(cfg, dtype):
    """|MC - exact| < 5 standard errors (fixed seeds), loss and gain."""
    cfg = dict(cfg)
    n = cfg.pop("n")
    model = random_model(n, cfg.pop("d"), "power", cfg.pop("a"), cfg.pop("bias"), dtype)
    inputs = fs.SparseInputs(n, importance=1.0 + np.arange(n) % 3, **cfg)
    if dtype == np.float32:  # exact value of the float32 weights, computed in float64
        ref_model = model.with_params(
            model.W.astype(np.float64), None if model.b is None else model.b.astype(np.float64)
        )
    else:
        ref_model = model
    exact_l, exact_g = fs.exact_loss_and_gain(ref_model, inputs)
    est = fs.estimate_loss(model, inputs, 100_000, seed=17)
    assert abs(est.mean - exact_l) < 5 * est.stderr
    assert abs(est.gain_mean - exact_g) < 5 * est.gain_stderr
    report = fs.check(model, inputs, 100_000, seed=17)
    assert report.kind == "exact" and report.passed


@pytest.mark.parametrize(
    "act,a", [("relu_power", 1), ("relu_power", 2), ("signed_power", 1.5), ("signed_power", 2)]
)
def test_monte_carlo_agrees_with_enumeration_any_activation(act, a):
    """Discrete law, n = 6: the exact expectation by enumeration of all inputs."""
    n = 6
    model = random_model(n, 3, act, a, bias=True, seed=3)
    support, probs = [-1.0, 0.5, 2.0], [0.3, 0.3, 0.4]
    p = np.array([0.1, 0.3, 0.5, 0.2, 0.05, 0.6])
    imp = np.linspace(0.5, 2, n)
    inputs = fs.SparseInputs(n, p=p, support=support, probs=probs, importance=imp)
    X, w = enumerate_inputs(p, support, probs)
    exact = float(w @ loss_numpy(model.W, model.b, act, a, X, imp))
    est = fs.estimate_loss(model, inputs, 100_000, seed=8)
    assert abs(est.mean - exact) < 5 * est.stderr
    report = fs.check(model, inputs, 100_000, seed=8)
    assert report.kind == "bounds" and report.passed  # bounded law: two-sided bounds
    assert report.lower_bound <= exact <= report.upper_bound


def test_exactly_k_pattern_against_enumeration():
    n, k = 6, 2
    model = random_model(n, 3, "relu_power", 2, bias=True, seed=5)
    inputs = fs.SparseInputs(n, k=k, values="rademacher")
    X, w = enumerate_inputs(np.full(n, 0.5), [-1.0, 1.0], [0.5, 0.5])
    keep = (X != 0).sum(axis=1) == k
    exact = float(w[keep] @ loss_numpy(model.W, model.b, "relu_power", 2, X[keep])) / w[keep].sum()
    est = fs.estimate_loss(model, inputs, 100_000, seed=1)
    assert abs(est.mean - exact) < 5 * est.stderr


def test_bitwise_identical_for_thread_counts(set_numba_threads):
    model = random_model(60, 8, "relu_power", 2)
    inputs = fs.SparseInputs(60, p=0.05, values="uniform")
    res = []
    for t in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
        set_numba_threads(t)
        res.append(
            fs.estimate_loss(model, inputs, 30_000, seed=9, per_feature=True, block_size=1000)
        )
    a, b = res
    assert_same_estimate(a, b)


def test_paths_and_blocks_agree_to_roundoff():
    model = random_model(80, 6, "signed_power", 3)
    inputs = fs.SparseInputs(80, p=0.03, values="gaussian")
    ests = [
        fs.estimate_loss(model, inputs, 20_000, seed=2, path=path, block_size=bs)
        for path in ("dense", "columns")
        for bs in (64, 2048)
    ]
    for e in ests[1:]:
        assert e.mean == pytest.approx(ests[0].mean, rel=1e-12)
        assert e.stderr == pytest.approx(ests[0].stderr, rel=1e-9)
    # a continuation (start) reproduces the second half of a run exactly
    whole = fs.estimate_loss(model, inputs, 4096, seed=2, block_size=2048)
    first = fs.estimate_loss(model, inputs, 2048, seed=2, block_size=2048)
    second = fs.estimate_loss(model, inputs, 2048, seed=2, block_size=2048, start=2048)
    assert whole.mean == pytest.approx((first.mean + second.mean) / 2, rel=1e-14)


def test_overflow_is_reported():
    model = fs.Model(np.full((2, 4), 1e30), activation="power", exponent=5)
    inputs = fs.SparseInputs(4, p=0.5, values="gaussian")
    with pytest.raises(FloatingPointError, match="overflowed"):
        fs.estimate_loss(model, inputs, 1000)
    model32 = fs.Model(np.full((2, 4), 1e6, dtype=np.float32), activation="power", exponent=3)
    with pytest.raises(FloatingPointError, match="float32"):
        fs.estimate_loss(model32, inputs, 1000)


def test_bad_arguments():
    model = random_model(5, 2)
    inputs = fs.SparseInputs(5, p=0.1)
    with pytest.raises(ValueError, match="inputs.n = 6 does not match the model's n = 5"):
        fs.estimate_loss(model, fs.SparseInputs(6, p=0.1), 100)
    with pytest.raises(ValueError, match="n_samples must be an integer >= 2, got 1"):
        fs.estimate_loss(model, inputs, 1)
    with pytest.raises(TypeError, match="n_samples must be an integer"):
        fs.estimate_loss(model, inputs, "many")
    with pytest.raises(ValueError, match="path must be one of"):
        fs.estimate_loss(model, inputs, 100, path="magic")
    with pytest.raises(ValueError, match="backend must be one of"):
        fs.estimate_loss(model, inputs, 100, backend="tpu")
    with pytest.raises(TypeError, match="model must be a fastsuper.Model"):
        fs.estimate_loss(np.ones((2, 5)), inputs, 100)
    with pytest.raises(ValueError, match="block_size must be an integer >= 1"):
        fs.estimate_loss(model, inputs, 100, block_size=0)


def test_estimate_says_what_loss_and_gain_are():
    """str and repr say the loss and the gain are sums over the features."""
    model = random_model(10, 3)
    inputs = fs.SparseInputs(10, p=0.2, values="gaussian")
    est = fs.estimate_loss(model, inputs, 5000, seed=1)
    assert str(est).startswith(
        f"loss {est.mean:.6g} ± {est.stderr:.3g}, gain {est.gain_mean:.6g} ± "
        f"{est.gain_stderr:.3g} (sums over the 10 features: loss = E sum_j I_j (x_j - "
        "x_hat_j)^2, gain = E sum_j I_j x_j^2 - loss"
    )
    assert f"mean={est.mean:.6g} ± {est.stderr:.3g} (loss, sum over the 10 features)" in repr(est)
    assert est.mean_over_features == est.mean / 10
