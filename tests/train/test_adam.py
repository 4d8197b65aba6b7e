"""Training: the sampled gradient (NumPy, finite differences, exact), Adam, fit."""

from __future__ import annotations

import math

import numba
import numpy as np
import pytest
from checks import assert_sampled_gradient
from naive_train import adam_step_numpy, feature_dimensionality, loss_grad_numpy

import fastsuper as fs
from fastsuper import FitResult, exact_loss_grad, fit, loss_grad
from fastsuper import testing as T
from fastsuper.core import config

# every activation family, integer and real exponents
ACTIVATIONS = [
    ("power", 1),
    ("power", 3),
    ("signed_power", 1.5),
    ("signed_power", 2.0),
    ("relu_power", 1),
    ("relu_power", 2),
    ("relu_power", 1.5),
]
# d = 2 and d = 3 take the scalar code paths (padded to 2 and 4), d = 7 the row loops;
# each with another value law and per-feature p (thinned sampler) or not
SHAPES = {
    2: dict(values="gaussian", p=np.linspace(0.05, 0.6, 12)),
    3: dict(values=fs.ValueLaw("discrete", support=[-1.3, 0.4, 2.1], probs=[0.2, 0.5, 0.3]), p=0.3),
    7: dict(values="uniform", p=np.linspace(0.02, 0.4, 12)),
}


def _model(n, d, act, a, dtype=np.float64, seed=0, scale=0.5, bias=True):
    rng = np.random.default_rng([seed, n, d])
    W = (rng.normal(size=(d, n)) * scale).astype(dtype)
    b = (rng.normal(size=n) * 0.2).astype(dtype) if bias else None
    return fs.Model(W, b, activation=act, exponent=a)


# --------------------------------------------------------------------------
# the sampled gradient


@pytest.mark.parametrize("act,a", ACTIVATIONS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("d", sorted(SHAPES))
def test_loss_grad_matches_numpy_on_same_samples(act, a, dtype, d):
    """Same samples (fastsuper.sample) through the NumPy reference: equal to round-off."""
    n, N = 12, 3000
    model = _model(n, d, act, a, dtype)
    imp = 0.9 ** np.arange(n)
    inputs = fs.SparseInputs(n, importance=imp, **SHAPES[d])
    got = loss_grad(model, inputs, N, seed=4, block_size=700)
    X = fs.sample(inputs, N, seed=4, dtype=dtype).to_dense()
    loss, dW, db = loss_grad_numpy(model.W, model.b, act, a, X, imp)
    rtol = 1e-10 if dtype == np.float64 else 1e-4
    assert got.loss == pytest.approx(loss, rel=rtol)
    np.testing.assert_allclose(got.dW, dW, rtol=rtol, atol=rtol * np.abs(dW).max())
    np.testing.assert_allclose(got.db, db, rtol=rtol, atol=rtol * np.abs(db).max())
    assert got.dW.dtype == np.float64 and got.dW.shape == (d, n) and got.db.shape == (n,)


@pytest.mark.parametrize("d", [2, 7])
def test_loss_grad_exactly_k_and_no_bias(d):
    """The "exactly k active" pattern; a model without bias gets db at b = 0."""
    n, N = 10, 2000
    model = _model(n, d, "relu_power", 2, bias=False)
    inputs = fs.SparseInputs(n, k=3, values="rademacher")
    got = loss_grad(model, inputs, N, seed=9, start=50)
    X = fs.sample(inputs, N, seed=9, start=50).to_dense()
    loss, dW, db = loss_grad_numpy(model.W, None, "relu_power", 2, X)
    assert got.loss == pytest.approx(loss, rel=1e-10)
    np.testing.assert_allclose(got.dW, dW, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got.db, db, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("values", ["rademacher", "constant", "uniform_sym"])
@pytest.mark.parametrize("d", [2, 7])
def test_loss_grad_other_value_laws(values, d):
    """The value laws not in SHAPES, on the same samples as fastsuper.sample."""
    n, N = 9, 1500
    model = _model(n, d, "relu_power", 1)
    inputs = fs.SparseInputs(n, p=0.3, values=values, importance=0.9 ** np.arange(n))
    got = loss_grad(model, inputs, N, seed=8)
    X = fs.sample(inputs, N, seed=8).to_dense()
    loss, dW, db = loss_grad_numpy(model.W, model.b, "relu_power", 1, X, inputs.importance)
    assert got.loss == pytest.approx(loss, rel=1e-10)
    np.testing.assert_allclose(got.dW, dW, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got.db, db, rtol=1e-10, atol=1e-12)


def test_loss_grad_loss_is_estimate_loss():
    """Same seed, same samples: the loss is estimate_loss's mean (sum over features)."""
    model = _model(30, 4, "relu_power", 1)
    inputs = fs.SparseInputs(30, p=0.1, values="uniform", importance=1.0 + np.arange(30) % 3)
    est = fs.estimate_loss(model, inputs, 10_000, seed=2)
    assert loss_grad(model, inputs, 10_000, seed=2).loss == pytest.approx(est.mean, rel=1e-12)


@pytest.mark.parametrize(
    "act,a,d,values",
    [
        ("power", 3, 3, "gaussian"),
        ("relu_power", 2, 7, "uniform"),
        ("signed_power", 1.5, 2, "uniform_sym"),
    ],
)
def test_loss_grad_matches_finite_differences(act, a, d, values):
    """Central differences of the sampled mean loss (same samples) in every W and b entry."""
    n, N = 8, 400
    model = _model(n, d, act, a, scale=0.6)
    inputs = fs.SparseInputs(n, p=0.4, values=values, importance=0.9 ** np.arange(n))
    assert_sampled_gradient(model, inputs, N, block_size=150)


@pytest.mark.parametrize(
    "m,values,p", [(3, "rademacher", 0.15), (1, "uniform", 0.3), (3, "gaussian", 0.05)]
)
def test_loss_grad_agrees_with_exact_gradient(m, values, p):
    """power activation: 2e5 samples in 20 runs of 1e4; every entry of the mean gradient
    is within 5 standard errors (estimated from the spread of the 20 runs) of
    exact_loss_grad, and so is the loss."""
    n, d, runs, per = 8, 3, 20, 10_000
    model = _model(n, d, "power", m, scale=0.5)
    inputs = fs.SparseInputs(n, p=p, values=values, importance=1.0 + np.arange(n) % 3)
    parts = [loss_grad(model, inputs, per, seed=11, start=r * per) for r in range(runs)]
    flat = np.array([np.r_[q.loss, q.dW.ravel(), q.db] for q in parts])
    mean = flat.mean(axis=0)
    se = flat.std(axis=0, ddof=1) / math.sqrt(runs)
    loss, dW, db = exact_loss_grad(model, inputs)
    exact = np.r_[loss, dW.ravel(), db]
    z = np.abs(mean - exact) / np.maximum(se, 1e-300)
    assert np.all(z < 5), f"largest |z| = {z.max():.2f} at entry {int(z.argmax())}"
    # and the whole sample at once equals the mean of the runs (same samples)
    whole = loss_grad(model, inputs, runs * per, seed=11, block_size=per)
    np.testing.assert_allclose(
        np.r_[whole.loss, whole.dW.ravel(), whole.db], mean, rtol=1e-10, atol=1e-13
    )


def test_loss_grad_same_for_any_thread_count(set_numba_threads):
    model = _model(40, 6, "relu_power", 1)
    inputs = fs.SparseInputs(40, p=0.1, values="uniform")
    set_numba_threads(1)
    one = loss_grad(model, inputs, 20_000, seed=3, block_size=1000)
    set_numba_threads(min(2, numba.config.NUMBA_NUM_THREADS))
    two = loss_grad(model, inputs, 20_000, seed=3, block_size=1000)
    assert one.loss == two.loss
    assert np.array_equal(one.dW, two.dW) and np.array_equal(one.db, two.db)


# --------------------------------------------------------------------------
# Adam


def _adam_reference(res: FitResult, steps: int, lr: float):
    """The fit of ``res`` redone in NumPy: same samples, same initial weights, Adam."""
    s = res.settings
    n, B = s["n"], s["batch_size"]
    W_all, b_all, hist = [], [], []
    for k in range(res.n_instances):
        inputs = res.inputs(k)
        W, b = res.W0[k].astype(np.float64), np.zeros(n)
        mW, vW, mb, vb = np.zeros_like(W), np.zeros_like(W), np.zeros(n), np.zeros(n)
        losses = []
        for t in range(steps):
            X = fs.sample(inputs, B, T.instance_seed(s["seed"], k), start=t * B).to_dense()
            loss, dW, db = loss_grad_numpy(
                W, b, s["activation"], s["exponent"], X, inputs.importance
            )
            losses.append(loss / n)  # fit's loss: a mean over features
            W, mW, vW = adam_step_numpy(W, dW / n, mW, vW, t + 1, lr)
            b, mb, vb = adam_step_numpy(b, db / n, mb, vb, t + 1, lr)
        W_all.append(W)
        b_all.append(b)
        hist.append(losses)
    return np.array(W_all), np.array(b_all), np.array(hist).T


@pytest.mark.parametrize(
    "n,d,p,act,a,values",
    [
        (5, 2, [1.0, 0.2], "relu_power", 1, "uniform"),  # scalar path, d <= 2
        (6, 3, [0.5, 0.05], "power", 3, "gaussian"),  # scalar path, d <= 4
        # BLAS sub-batches (40 rows), dense and sparse x
        (100, 60, [0.5, 0.02], "relu_power", 1, "rademacher"),
        # BLAS sub-batches, every feature active: U[0, 1] values straight into x, other values
        (40, 6, [1.0, 0.3], "relu_power", 1, "uniform"),
        (30, 5, [1.0, 0.05], "relu_power", 1, "rademacher"),
        # BLAS sub-batches with W g by blocks of rows (n >= config.TRAIN_GWT_FROM)
        (260, 6, [0.3, 0.02], "relu_power", 1, "uniform"),
        # the same with d = 30 padded to 32 columns (n >= config.TRAIN_PAD_FROM)
        (260, 30, [0.3, 0.02], "relu_power", 1, "uniform"),
        # per-sample row loops (n d too large for BLAS)
        (200, 90, [0.05], "signed_power", 1.5, "uniform_sym"),
        # BLAS sub-batches in the Gram space (few active features; wide and narrow rows),
        # also with another activation and value law
        (100, 30, [0.17, 0.02], "relu_power", 1, "uniform"),
        (64, 30, [0.25, 0.05], "power", 2, "gaussian"),
    ],
)
def test_adam_steps_match_numpy(n, d, p, act, a, values):
    """Three Adam steps against NumPy on the same batches: equal to 1e-12 relative."""
    steps, lr = 3, 1e-2
    res = fit(n, d, n_instances=len(p), p=p, importance=0.9 ** np.arange(n), activation=act,
              exponent=a, values=values, steps=steps, batch_size=96, lr=lr, seed=5,
              log_every=1)  # fmt: skip
    W, b, hist = _adam_reference(res, steps, lr)
    np.testing.assert_allclose(res.W, W, rtol=1e-12, atol=1e-12 * np.abs(W).max())
    np.testing.assert_allclose(res.b, b, rtol=1e-12, atol=1e-12 * np.abs(b).max())
    # the reference records Elhage et al.'s mean over features; fit reports the sum
    np.testing.assert_allclose(res.loss_history, n * hist, rtol=1e-12)
    np.testing.assert_allclose(res.loss_history_mean_over_features, hist, rtol=1e-12)
    assert np.array_equal(res.W0, T.initial_weights(n, d, len(p), seed=5))


@pytest.mark.parametrize(
    "n,d,p,act,a,values",
    [
        (100, 30, [0.17, 0.02], "relu_power", 1, "uniform"),
        (64, 30, [0.25, 0.05], "power", 2, "gaussian"),
    ],
)
def test_adam_steps_match_numpy_outside_the_gram_space(n, d, p, act, a, values, monkeypatch):
    """The configurations above that train in the Gram space, with it turned off (the
    sparse-row loops and BLAS products instead): NumPy's numbers to 1e-12 again."""
    from fastsuper.train.adam import _gram_instances

    active = np.asarray(p) * n
    assert _gram_instances(n, d, 64, active, np.zeros(len(p), dtype=bool), np.float64).all()
    monkeypatch.setattr(config, "TRAIN_GRAM_ACTIVE", 0.0)
    assert not _gram_instances(n, d, 64, active, np.zeros(len(p), dtype=bool), np.float64).any()
    test_adam_steps_match_numpy(n, d, p, act, a, values)


def test_fit_same_for_any_thread_count_and_instance_count(set_numba_threads):
    kw = dict(importance=0.9 ** np.arange(5), steps=200, seed=7, log_every=10)
    set_numba_threads(1)
    one = fit(5, 2, n_instances=3, p=[1.0, 0.3, 0.05], **kw)
    set_numba_threads(min(2, numba.config.NUMBA_NUM_THREADS))
    two = fit(5, 2, n_instances=3, p=[1.0, 0.3, 0.05], **kw)
    fewer = fit(5, 2, n_instances=2, p=[1.0, 0.3], **kw)
    for x, y in [(one.W, two.W), (one.b, two.b), (one.loss_history, two.loss_history)]:
        assert np.array_equal(x, y)
    assert np.array_equal(one.W[:2], fewer.W) and np.array_equal(one.b[:2], fewer.b)


@pytest.mark.slow  # compiles the training kernel a second time (float32): ~20 s
def test_fit_float32_close_to_float64():
    kw = dict(n_instances=2, p=[0.5, 0.05], importance=0.9 ** np.arange(20), steps=50, seed=1)
    r64 = fit(20, 3, **kw)
    r32 = fit(20, 3, dtype=np.float32, **kw)
    assert r32.W.dtype == np.float32 and r32.b.dtype == np.float32
    np.testing.assert_allclose(r32.W, r64.W, atol=1e-4)
    np.testing.assert_allclose(r32.loss_history, r64.loss_history, rtol=1e-4)


# --------------------------------------------------------------------------
# reproductions (THEORY §6)


def test_linear_model_reaches_closed_form_optimum():
    """Linear model with bias: the loss of the trained weights (exact, THEORY §3) is within
    1% of sum over the dropped features of I_i Var(x_i), and the kept features are the d
    with the largest I_i Var(x_i)."""
    n, d = 6, 3
    imp = 0.9 ** np.arange(n)
    p = np.array([0.3, 1.0])
    res = fit(n, d, n_instances=2, p=p, importance=imp, activation="power", exponent=1,
              steps=2000, lr=1e-2, seed=1)  # fmt: skip
    mu1, mu2 = 0.5, 1.0 / 3.0  # U[0, 1]
    for k in range(2):
        var = p[k] * mu2 - p[k] ** 2 * mu1**2
        kept = np.argsort(-imp * var, kind="stable")[:d]
        optimum = np.delete(imp * np.full(n, var), kept).sum()  # a sum over features
        loss = fs.exact_loss(res.model(k), res.inputs(k))
        assert optimum * (1 - 1e-9) <= loss <= optimum * 1.01
        # fit reports a sum over features, as exact_loss: the batch loss is near the optimum
        assert res.loss_history[-5:, k].mean() == pytest.approx(optimum, rel=0.2)
        assert res.final_loss_mean_over_features[k] == res.final_loss[k] / n
        assert np.allclose(np.diag(res.model(k).A), np.isin(np.arange(n), kept), atol=0.05)


def test_elhage_dense_features_and_pentagon():
    """n = 5, d = 2, importance 0.9**i.  Dense inputs (p = 1): the two most important
    features have norm 1 (+-0.05) and are orthogonal (|cos| < 0.05), the others have
    norm < 0.1.  Sparse inputs (p = 0.02): a pentagon, every feature of norm within 5%
    of the mean norm, neighbouring directions 72 +- 5 degrees apart, feature
    dimensionality 2/5 +- 0.03.  Asserted on every instance."""
    n, d = 5, 2
    res = fit(n, d, n_instances=4, p=[1.0, 1.0, 0.02, 0.02], importance=0.9 ** np.arange(n),
              steps=3000, lr=1e-2, seed=0)  # fmt: skip
    for k in (0, 1):
        W = res.W[k]
        norms = np.linalg.norm(W, axis=0)
        assert np.all(np.abs(norms[:2] - 1) < 0.05) and np.all(norms[2:] < 0.1)
        assert abs(W[:, 0] @ W[:, 1]) / (norms[0] * norms[1]) < 0.05
    for k in (2, 3):
        W = res.W[k]
        norms = np.linalg.norm(W, axis=0)
        assert np.all(np.abs(norms / norms.mean() - 1) < 0.05)
        angles = np.sort(np.degrees(np.arctan2(W[1], W[0])) % 360)
        gaps = np.diff(np.r_[angles, angles[0] + 360])
        assert np.all(np.abs(gaps - 72) < 5), gaps
        np.testing.assert_allclose(feature_dimensionality(W), 0.4, atol=0.03)


# --------------------------------------------------------------------------
# the loss convention and the default exponents


def test_fit_reports_the_loss_as_a_sum_over_features():
    """loss_history[0] is the loss of the initial weights on step 0's batch, summed over
    features as estimate_loss and loss_grad report it; the mean over features by name."""
    n, B, seed = 6, 256, 4
    res = fit(n, 3, n_instances=2, p=[0.5, 0.1], importance=0.8 ** np.arange(n), steps=1,
              batch_size=B, log_every=1, seed=seed)  # fmt: skip
    for k in range(2):
        start = fs.Model(res.W0[k], np.zeros(n), activation="relu_power", exponent=1)
        ref = loss_grad(start, res.inputs(k), B, T.instance_seed(seed, k)).loss
        assert res.loss_history[0, k] == pytest.approx(ref, rel=1e-12)
        assert res.final_loss[k] == res.loss_history[0, k]
        assert res.loss_history_mean_over_features[0, k] == pytest.approx(ref / n, rel=1e-12)
        assert res.final_loss_mean_over_features[k] == pytest.approx(ref / n, rel=1e-12)
    assert "(batch loss, sum over the 6 features)" in repr(res)


def test_fit_result_load_reads_mean_over_features_files_as_sums(tmp_path):
    """A file without ``loss_convention`` holds the mean over features: read as the sum."""
    res = fit(4, 2, n_instances=2, p=[0.5, 0.1], steps=20, log_every=5, seed=2)
    res.save(tmp_path / "new.npz")
    with np.load(tmp_path / "new.npz") as f:
        assert str(f["loss_convention"]) == "sum over features"
        old = {k: f[k] for k in f.files if k != "loss_convention"}
    old["loss_history"] = old["loss_history"] / 4
    np.savez(tmp_path / "old.npz", **old)
    np.testing.assert_allclose(
        FitResult.load(tmp_path / "old.npz").loss_history, res.loss_history, rtol=1e-15
    )
    assert np.array_equal(FitResult.load(tmp_path / "new.npz").loss_history, res.loss_history)


@pytest.mark.parametrize(
    "activation,exponent", [("power", 3), ("signed_power", 3), ("relu_power", 1), ("relu", 1)]
)
def test_fit_and_model_share_one_default_exponent_per_activation(activation, exponent):
    res = fit(4, 2, p=0.5, activation=activation, steps=2, log_every=1, seed=1, lr=1e-4)
    assert res.settings["exponent"] == exponent
    assert res.model().exponent == exponent == fs.Model(res.W[0], activation=activation).exponent
    explicit = fit(4, 2, p=0.5, activation=activation, exponent=exponent, steps=2, log_every=1,
                   seed=1, lr=1e-4)  # fmt: skip
    assert np.array_equal(res.W, explicit.W)
    assert np.array_equal(res.loss_history, explicit.loss_history)


def test_fit_relu_is_relu_power_with_exponent_1():
    kw = dict(n_instances=2, p=[0.5, 0.1], steps=30, log_every=10, seed=5)
    relu = fit(5, 2, activation="relu", **kw)
    relu_power = fit(5, 2, activation="relu_power", exponent=1, **kw)
    assert np.array_equal(relu.W, relu_power.W)
    assert np.array_equal(relu.loss_history, relu_power.loss_history)
    assert relu.model(1).activation == "relu"
    with pytest.raises(ValueError, match="activation='relu' has exponent 1, got exponent=2"):
        fit(5, 2, activation="relu", exponent=2, **kw)


# --------------------------------------------------------------------------
# results, progress, errors


def test_fit_result_save_load_model_inputs(tmp_path):
    values = fs.ValueLaw("discrete", support=[0.5, 1.0], probs=[0.5, 0.5])
    res = fit(4, 2, n_instances=2, p=[[0.1, 0.2, 0.3, 0.4], [0.5] * 4], values=values,
              bias=False, steps=20, log_every=7, seed=3)  # fmt: skip
    assert res.loss_history.shape == (3, 2) and list(res.log_steps) == [0, 7, 14]
    assert np.all(res.b == 0) and res.model(1).b is None
    res.save(tmp_path / "fit.npz")
    back = FitResult.load(tmp_path / "fit.npz")
    for name in ("W", "b", "loss_history", "W0"):
        assert np.array_equal(getattr(back, name), getattr(res, name))
    assert back.settings == res.settings and back.method == "adam"
    m = back.model(0)
    assert np.array_equal(m.W, res.W[0]) and m.activation == "relu_power" and m.exponent == 1
    inp = back.inputs(0)
    assert np.array_equal(inp.p, [0.1, 0.2, 0.3, 0.4]) and inp.law.is_discrete
    assert "n_instances=2" in repr(res)
    with pytest.raises(IndexError, match=r"k must be in \[0, 2\)"):
        res.model(2)


def test_fit_defaults_and_progress(capsys):
    res = fit(3, 1, n_instances=3, steps=40, log_every=10, progress=True)
    np.testing.assert_allclose(
        res.settings["p"], np.repeat(50.0 ** -np.linspace(0, 1, 3)[:, None], 3, 1)
    )
    assert res.settings["activation"] == "relu_power" and res.settings["values"] == "uniform"
    assert res.W.shape == (3, 1, 3) and res.b.shape == (3, 3) and np.all(np.isfinite(res.W))
    err = capsys.readouterr().err
    assert "40/40 steps" in err and "mean batch loss" in err


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(n=0), ValueError, "n must be an integer >= 1"),
        (dict(d=1.5), TypeError, "d must be an integer"),
        (dict(n_instances=0), ValueError, "n_instances must be an integer >= 1"),
        (dict(p=1.5), ValueError, r"p must lie in \[0, 1\]"),
        (dict(p=[0.1, 0.2, 0.3]), ValueError, r"p must be a scalar or have shape \(2,\)"),
        (dict(p="dense"), TypeError, "p must be a number"),
        (dict(importance=[1.0, -1.0, 1.0]), ValueError, "importance must be finite and > 0"),
        (
            dict(importance=[1.0, 1.0]),
            ValueError,
            r"importance must be a scalar or have shape \(3,\)",
        ),
        (dict(activation="swish"), ValueError, "activation must be one of"),
        (dict(activation="power", exponent=1.5), ValueError, "exponent must be an integer"),
        (dict(exponent=0), ValueError, "exponent must be > 0"),
        (dict(values="cauchy"), ValueError, "values must be one of"),
        (dict(values=3), TypeError, "values must be a value-law name"),
        (dict(bias="yes"), TypeError, "bias must be True or False"),
        (dict(method="sgd"), ValueError, r"method must be one of \['adam', 'exact'\], got 'sgd'"),
        (dict(steps=-1), ValueError, "steps must be an integer >= 1"),
        (dict(batch_size=0), ValueError, "batch_size must be an integer >= 1"),
        (dict(lr=0.0), ValueError, "lr must be > 0"),
        (dict(lr=float("nan")), ValueError, "lr must be finite"),
        (dict(betas=(0.9, 1.0)), ValueError, r"betas must be two numbers in \[0, 1\)"),
        (dict(eps=-1.0), ValueError, "eps must be > 0"),
        (dict(seed="a"), TypeError, "seed must be an integer"),
        (dict(dtype=np.int32), TypeError, "dtype must be numpy.float32 or numpy.float64"),
        (dict(log_every=0), ValueError, "log_every must be an integer >= 1"),
        (dict(W0=np.ones((3, 2))), ValueError, r"W0 must have shape \(2, 3\)"),
        (dict(W0=np.full((2, 3), np.nan)), ValueError, "W0 must be finite"),
        (dict(W0=np.ones((2, 3), dtype=int)), TypeError, "W0 must have dtype float32 or float64"),
        (dict(b0=np.ones(3), bias=False), ValueError, "b0 was given but bias=False"),
        (dict(b0=np.ones(4)), ValueError, r"b0 must have shape \(3,\)"),
        (dict(progress=1), TypeError, "progress must be True or False"),
    ],
)
def test_fit_bad_arguments(kwargs, exc, match):
    args = dict(n=3, d=2, n_instances=2, steps=1)
    args.update(kwargs)
    n, d = args.pop("n"), args.pop("d")
    with pytest.raises(exc, match=match):
        fit(n, d, **args)


def test_fit_divergence_is_reported():
    W0 = np.full((2, 3), 1e30)  # (w w x)^3 overflows float64
    with pytest.raises(FloatingPointError, match="of instance 0 became inf or NaN at step 0"):
        fit(3, 2, p=1.0, activation="power", exponent=3, W0=W0, steps=5)
    assert np.all(W0 == 1e30)  # the caller's W0 is copied, never trained in place


def test_exponent_below_one_at_zero():
    """signed_power with a < 1: phi' is infinite at z = 0.  Where e = 0 too (no active
    feature, b = 0) the gradient of e^2 is 0 and training goes on; where x != 0 it is
    infinite, and loss_grad says so."""
    model = fs.Model(np.ones((2, 4)), activation="signed_power", exponent=0.7)
    quiet = loss_grad(model, fs.SparseInputs(4, p=0.0), 10)
    assert quiet.loss == 0 and np.all(quiet.dW == 0) and np.all(quiet.db == 0)
    res = fit(4, 5, p=0.5, values="gaussian", activation="signed_power", exponent=0.7, steps=20)
    assert np.all(np.isfinite(res.W)) and np.all(np.isfinite(res.loss_history))
    flat = fs.Model(np.zeros((2, 4)), activation="signed_power", exponent=0.7)
    with pytest.raises(FloatingPointError, match="gradient is not finite.*exponent 0.7 < 1"):
        loss_grad(flat, fs.SparseInputs(4, p=1.0, values="constant"), 10)


def test_loss_grad_bad_arguments():
    model = _model(5, 2, "relu_power", 1)
    inputs = fs.SparseInputs(5, p=0.1)
    with pytest.raises(TypeError, match="model must be a fastsuper.Model"):
        loss_grad(model.W, inputs, 10)
    with pytest.raises(TypeError, match="inputs must be a fastsuper.SparseInputs"):
        loss_grad(model, 0.1, 10)
    with pytest.raises(ValueError, match="inputs.n = 6 does not match the model's n = 5"):
        loss_grad(model, fs.SparseInputs(6, p=0.1), 10)
    with pytest.raises(ValueError, match="n_samples must be an integer >= 1"):
        loss_grad(model, inputs, 0)
    with pytest.raises(ValueError, match="block_size must be an integer >= 1"):
        loss_grad(model, inputs, 10, block_size=0)
    big = fs.Model(np.full((2, 5), 1e80), activation="power", exponent=3)
    with pytest.raises(FloatingPointError, match="overflowed"):
        loss_grad(big, fs.SparseInputs(5, p=1.0, values="constant"), 10)


def test_fit_needs_at_least_one_step():
    """No step means no recorded loss: refused instead of a final loss of NaN."""
    with pytest.raises(ValueError, match="steps must be an integer >= 1, got 0"):
        fs.fit(5, 2, steps=0)


def test_fit_warns_when_the_loss_blows_up():
    """A learning rate that makes the loss explode (to ~1e17 here) gets a RuntimeWarning
    naming lr; a sane one trains without a warning (warnings are errors in the tests)."""
    with pytest.warns(RuntimeWarning, match=r"blew up to .* lr = 1e\+06 is too large"):
        res = fs.fit(5, 2, lr=1e6, steps=300, log_every=10)
    assert res.final_loss[0] > 1e10
    fs.fit(5, 2, lr=1e-2, steps=300, log_every=10)


def test_fit_too_large_for_memory_is_refused_up_front():
    with pytest.raises(MemoryError, match=r"fit: fit of 1 instances with n = 5, d = 2 and "
                       r"10000000000000 steps needs about .* TiB"):  # fmt: skip
        fs.fit(5, 2, steps=10**13, log_every=1)
