"""Grouped input laws in every sampling consumer: Monte Carlo, training, the @njit API, Dask."""

import numpy as np
import pytest
from naive_train import loss_grad_numpy

import fastsuper as fs
from fastsuper import kernels as K
from fastsuper import testing as T


def grouped_law(n=24, values="rademacher", importance=None):
    """Interleaved groups of every kind, and a few ungrouped features."""
    return fs.SparseInputs(
        n, p=0.08, values=values, importance=importance,
        groups=np.arange(n) % 7 - 1,
        kind=["correlated", "exclusive", "partial", "correlated", "exclusive", "partial"],
        q=np.linspace(0.1, 0.35, 6), r=0.6,
    )  # fmt: skip


def _model(n, d, m=3, seed=0, bias=True):
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(d, n)) * 0.45
    return fs.Model(W, b=rng.normal(size=n) * 0.1 if bias else None, exponent=m)


@pytest.mark.parametrize("path", ["auto", "columns", "dense", "blocked", "columns_blocked"])
def test_estimate_is_within_five_standard_errors_of_exact(path):
    n = 24
    inputs = grouped_law(n, importance=np.linspace(0.5, 1.5, n))
    model = _model(n, 5, seed=1)
    exact = fs.exact_loss(model, inputs)
    gain = fs.exact_gain(model, inputs)
    est = fs.estimate_loss(model, inputs, 60_000, seed=4, path=path)
    assert abs(est.mean - exact) < 5 * est.stderr
    assert abs(est.gain_mean - gain) < 5 * est.gain_stderr
    ref = fs.estimate_loss(model, inputs, 60_000, seed=4, path="dense")
    assert est.mean == pytest.approx(ref.mean, rel=1e-12)


def test_estimate_is_the_loss_of_the_sampled_batch():
    n = 24
    inputs = grouped_law(n, values="gaussian")
    model = _model(n, 4, m=1, seed=2)
    est = fs.estimate_loss(model, inputs, 5000, seed=8, start=100)
    X = fs.sample(inputs, 5000, seed=8, start=100).to_dense()
    loss, _, _ = loss_grad_numpy(model.W, model.b, "power", 1, X)
    assert est.mean == pytest.approx(loss, rel=1e-12)


def test_loss_grad_matches_numpy_on_the_same_samples_and_exact_on_average():
    n, d, N = 24, 4, 40_000
    inputs = grouped_law(n)
    model = _model(n, d, m=2, seed=3)
    loss, dW, db = fs.loss_grad(model, inputs, N, seed=6)
    X = fs.sample(inputs, N, seed=6).to_dense()
    ref_loss, ref_W, ref_b = loss_grad_numpy(model.W, model.b, "power", 2, X)
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    np.testing.assert_allclose(dW, ref_W, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(db, ref_b, rtol=1e-10, atol=1e-12)
    # the sampled gradient against the exact one: five standard errors per entry
    _, eW, eb = fs.exact_loss_grad(model, inputs)
    parts = [loss_grad_numpy(model.W, model.b, "power", 2, X[s::40]) for s in range(40)]
    gW = np.array([p[1] for p in parts])
    gb = np.array([p[2] for p in parts])
    se_W = gW.std(axis=0, ddof=1) / np.sqrt(40)
    se_b = gb.std(axis=0, ddof=1) / np.sqrt(40)
    assert np.all(np.abs(dW - eW) < 5 * se_W + 1e-12)
    assert np.all(np.abs(db - eb) < 5 * se_b + 1e-12)


def test_stratified_refuses_grouped_laws():
    inputs = grouped_law()
    with pytest.raises(ValueError, match="stratified sampling .* grouped input laws"):
        fs.estimate_loss(_model(24, 3), inputs, 1000, method="stratified")


def test_njit_api_samples_the_grouped_law():
    inputs = grouped_law(values="gaussian")
    law = K.law_params(inputs)

    X = np.zeros((400, 24))
    idx = np.empty(24, np.int64)
    val = np.empty(24)
    for s in range(400):
        k = K.sample_one(law, 5, 30 + s, idx, val)
        X[s, idx[:k]] = val[:k]
    ref = fs.sample(inputs, 400, seed=5, start=30).to_dense()
    np.testing.assert_array_equal(X, ref)


def test_fit_trains_on_the_grouped_samples():
    """fit's batch of step 0 is sample() of the instance seed; the fit lowers the loss."""
    g = dict(groups=[[0, 1], [2, 3]], kind=["correlated", "exclusive"])
    res = fs.fit(4, 2, n_instances=2, p=0.05, groups=g, steps=1, log_every=1, seed=3)
    inputs = res.inputs(1)
    assert inputs.pattern == "grouped" and np.allclose(inputs.p, [0.05, 0.05, 0.025, 0.025])
    X = fs.sample(inputs, 1024, T.instance_seed(3, 1)).to_dense()
    ref, _, _ = loss_grad_numpy(res.W0[1], None, "relu_power", 1, X)
    assert res.loss_history[0, 1] == pytest.approx(ref, rel=1e-12)
    with pytest.raises(ValueError, match="same input law"):
        fs.fit(4, 2, n_instances=2, p=[0.1, 0.2], groups=g, steps=1)
    with pytest.raises(ValueError, match="unknown keys"):
        fs.fit(4, 2, p=0.1, groups=dict(groups=[[0, 1]], qq=1), steps=1)
    with pytest.raises(ValueError, match=r"fit: feature 1 appears twice"):
        fs.fit(4, 2, p=0.1, groups=dict(groups=[[0, 1], [1, 2]]), steps=1)


def test_fit_exact_with_groups_round_trips(tmp_path):
    g = dict(groups=[[0, 1], [2, 3]], kind=["correlated", "exclusive"])
    fit = fs.fit_exact(4, 2, m=1, p=0.3, values="constant", groups=g, restarts=1, bias=True)
    inputs = fit.inputs()
    assert inputs.pattern == "grouped"
    assert fit.loss == pytest.approx(fs.exact_loss(fit.model(), inputs), rel=1e-14)
    # the linear optimum: the correlated pair shares a direction, the exclusive pair is antipodal
    W = fit.W
    u = W / np.linalg.norm(W, axis=0)
    assert u[:, 0] @ u[:, 1] == pytest.approx(1.0, abs=1e-6)
    assert u[:, 2] @ u[:, 3] == pytest.approx(-1.0, abs=1e-6)
    back = fs.ExactFit.load(fit.save(tmp_path / "fit"))
    assert back.groups == fit.groups and "groups=[correlated [0, 1]" in repr(back)
    assert fs.exact_loss(back.model(), back.inputs()) == fit.loss


def test_dask_is_bit_identical_to_cpu(dask_client):
    inputs = grouped_law(values="gaussian")
    model = _model(24, 4, seed=5)
    cpu = fs.estimate_loss(model, inputs, 20_000, seed=9, per_feature=True)
    dk = fs.estimate_loss(model, inputs, 20_000, seed=9, per_feature=True, backend="dask",
                          client=dask_client, chunk_size=4096)  # fmt: skip
    assert dk.mean == cpu.mean and dk.stderr == cpu.stderr
    np.testing.assert_array_equal(dk.per_feature, cpu.per_feature)


def test_check_compares_grouped_laws_with_the_exact_loss():
    inputs = grouped_law()
    report = fs.check(_model(24, 4, seed=7), inputs, 40_000, seed=3)
    assert report.kind == "exact" and report.passed
    assert report.reference == pytest.approx(fs.exact_loss(_model(24, 4, seed=7), inputs))
    relu = fs.Model(_model(24, 4, seed=7).W, activation="relu")
    report = fs.check(relu, inputs, 20_000, seed=3)
    assert report.kind == "lower_bound" and report.lower_bound == 0.0 and report.passed
