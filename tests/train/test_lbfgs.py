"""fit_exact: L-BFGS-B on the exact gain (THEORY §3, §5)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fastsuper import (
    ExactFit,
    Model,
    SparseInputs,
    ValueLaw,
    exact_gain,
    exact_gain_grad,
    exact_loss_and_gain,
    fit_exact,
)
from fastsuper.analysis import (
    first_order_cap,
    first_order_objective,
    kappa,
    random_frame,
    random_frame_norm,
    random_frame_value,
    sphere_dimension,
)

# ------------------------------------------------ (i) superposition reaches the cap


@pytest.mark.parametrize(
    "n,d,ratio_min",
    [
        (20, 3, 0.99),  # n > D(3, 3) = 7: cap kappa D = 4.2
        (60, 4, 0.99),  # THEORY §5.3: within 1% of kappa D(4, 3) = 7.68
    ],
)
def test_superposition_reaches_first_order_cap(n, d, ratio_min):
    """At p = 1e-4 the optimised gain / p is within 1% of kappa min(n, D) and below it.

    The sup of the gain is ``p kappa min(n, D) - c2 p**2 + ...`` with ``c2 > 0``
    (measured: c2 = 29.6 at d = 3, n = 20 and 115.7 at d = 4, n = 60, stable
    over p = 1e-3 .. 1e-5), so gain / p falls short of the cap by about
    ``c2 p / cap`` = 0.07% and 0.15% here, and does not exceed it.
    """
    m, p = 3, 1e-4
    fit = fit_exact(n, d, m=m, p=p, values="gaussian", restarts=1, seed=0, tol=1e-10)
    cap = first_order_cap(d, m, "gaussian", n=n)
    D = sphere_dimension(d, m)
    assert cap == pytest.approx(0.6 * min(n, D))
    ratio = fit.gain / p / cap
    assert ratio_min <= ratio < 1.0
    # far above both the unsuperposed value kappa d and a random frame
    assert fit.gain / p > 1.7 * 0.6 * d
    assert fit.gain / p > 1.15 * random_frame_value(n, d, m, "gaussian")
    assert fit.starts[fit.best].startswith("random")
    # to first order the optimum is an equality case of THEORY §5.3: F(A) = kappa D
    F = first_order_objective(fit.W, "gaussian", m)
    assert F <= cap * (1 + 1e-12)
    assert F == pytest.approx(cap, rel=1e-4)
    # the O(p**2) term of the optimum is negative: (gain/p - cap)/p = -c2
    assert -200 < (fit.gain / p - cap) / p < -10
    # the history is that of a descent method and ends at the reported gain
    assert np.all(np.diff(fit.history) >= -1e-12 * abs(fit.gain))
    assert fit.history[-1] == pytest.approx(fit.gain, rel=1e-12)
    assert fit.history.size in (fit.nit[fit.best] + 1, fit.nit[fit.best] + 2)


def test_superposition_rademacher_never_exceeds_cap():
    """Several starts, another law: every start stays below kappa min(n, D); the best is near it."""
    n, d, m, p = 12, 3, 3, 1e-4
    fit = fit_exact(n, d, m=m, p=p, values="rademacher", restarts=3, seed=5, tol=1e-10)
    cap = first_order_cap(d, m, "rademacher", n=n)  # kappa = 1, D(3, 3) = 7
    assert cap == pytest.approx(7.0)
    assert np.all(fit.gains / p < cap)
    assert fit.gain / p > 0.97 * cap
    assert fit.gain == max(fit.gains)


# ------------------------------------------------ (ii) no room for superposition


@pytest.mark.parametrize("values", ["gaussian", "rademacher", "uniform_sym"])
@pytest.mark.parametrize("n,d", [(3, 3), (2, 4)])
def test_unsuperposed_case_is_exact(values, n, d):
    """n <= d: the optimum is p kappa n at every p (THEORY §5.1), found from random starts too."""
    m = 3
    for p in (1e-3, 0.3):
        fit = fit_exact(n, d, m=m, p=p, values=values, restarts=2, seed=1)
        want = p * kappa(values, m) * n
        assert fit.gain == pytest.approx(want, rel=1e-14)
        assert fit.gains[0] == pytest.approx(want, rel=1e-14)  # the unsuperposed start
        assert fit.nit[0] == 0  # ... is a stationary point
        np.testing.assert_allclose(fit.gains, want, rtol=1e-8)  # random starts reach it
        assert np.all(fit.gains <= want * (1 + 1e-12))
        loss, gain = exact_loss_and_gain(fit.model(), fit.inputs())
        assert loss == pytest.approx(p * n * ValueLaw(values).moment(2) - want, rel=1e-12)
        assert (fit.loss, fit.gain) == (loss, gain)
        law = ValueLaw(values)  # A_ii**m = mu_{m+1} / mu_{2m} at the optimum
        ratio = law.moment(m + 1) / law.moment(2 * m)
        np.testing.assert_allclose(np.diag(fit.W.T @ fit.W) ** m, ratio, rtol=1e-6)


def test_unsuperposed_start_keeps_most_important_features():
    n, d, m, p = 6, 2, 3, 0.01
    importance = np.array([0.5, 2.0, 1.0, 3.0, 0.7, 0.9])
    fit = fit_exact(n, d, m=m, p=p, importance=importance, restarts=0)
    assert fit.starts == ("unsuperposed",)
    kept = np.flatnonzero(np.linalg.norm(fit.W, axis=0) > 0)
    np.testing.assert_array_equal(kept, [1, 3])
    assert fit.gain == pytest.approx(p * 0.6 * (2.0 + 3.0), rel=1e-14)


# ------------------------------------------------ (iii) the linear model


def test_linear_model_closed_form_no_bias():
    """m = 1, centred values, no bias: sup gain = p mu_2 min(n, d) (THEORY §5.1)."""
    for values, mu2 in [("gaussian", 1.0), ("uniform_sym", 1 / 3)]:
        for n, d in [(6, 3), (4, 4)]:
            p = 0.2
            fit = fit_exact(n, d, m=1, p=p, values=values, restarts=2, seed=3)
            assert fit.gain == pytest.approx(p * mu2 * min(n, d), rel=1e-9)
            np.testing.assert_allclose(fit.gains[1:], fit.gain, rtol=1e-7)  # every random start
            # A is a projection of rank min(n, d)
            A = fit.W.T @ fit.W
            np.testing.assert_allclose(A @ A, A, atol=1e-6)


def test_linear_model_with_bias_and_importance():
    """m = 1, U[0, 1] values (Elhage), bias, importances: loss = sum of the dropped I_i Var(x_i)."""
    n, d, p = 5, 2, 0.3
    importance = 0.9 ** np.arange(n)
    fit = fit_exact(n, d, m=1, p=p, values="uniform", importance=importance, bias=True, restarts=3)
    var = p / 3 - p**2 / 4  # Var(x_i) = p mu_2 - p**2 mu_1**2
    want_loss = var * importance[d:].sum()  # keeps the d most important features (§6)
    assert fit.loss == pytest.approx(want_loss, rel=1e-7)
    assert fit.gain == pytest.approx(p / 3 * importance.sum() - want_loss, rel=1e-7)
    # the dropped features output their mean: b_j = E x_j = p mu_1 for j >= d
    np.testing.assert_allclose(fit.b[d:], p / 2, rtol=1e-5)
    assert fit.b.shape == (n,) and fit.model().b is not None


# ------------------------------------------------ (iv) results, files, starts


def test_save_load_round_trip(tmp_path):
    n, d = 7, 2
    law = ValueLaw("discrete", support=[-1.0, 0.5, 2.0], probs=[0.3, 0.3, 0.4])
    p = np.linspace(0.05, 0.2, n)
    importance = np.linspace(1.0, 2.0, n)
    fit = fit_exact(
        n, d, m=3, p=p, values=law, importance=importance, bias=True, restarts=1, maxiter=50
    )
    path = fit.save(tmp_path / "fit")  # .npz is added
    assert path == tmp_path / "fit.npz" and path.exists()
    back = ExactFit.load(path)
    for name in ("W", "b", "gains", "nit", "nfev", "converged", "history", "p", "importance"):
        np.testing.assert_array_equal(getattr(back, name), getattr(fit, name))
    for name in (
        "gain",
        "loss",
        "starts",
        "best",
        "n",
        "d",
        "m",
        "bias",
        "restarts",
        "seed",
        "maxiter",
        "tol",
        "init_norm",
        "scale",
    ):
        assert getattr(back, name) == getattr(fit, name), name
    assert back.settings == fit.settings
    np.testing.assert_array_equal(back.law.support, law.support)
    np.testing.assert_array_equal(back.law.probs, law.probs)
    loss, gain = exact_loss_and_gain(back.model(), back.inputs())
    assert (loss, gain) == (fit.loss, fit.gain)

    # scalar p, no bias, no importance, named law
    fit2 = fit_exact(3, 2, m=1, p=0.5, restarts=0, init_norm=0.7)
    back2 = ExactFit.load(fit2.save(str(tmp_path / "fit2.npz")))
    assert back2.b is None and back2.importance is None and back2.p == 0.5
    assert isinstance(back2.p, float) and back2.law.name == "gaussian"
    assert back2.init_norm == 0.7 and repr(back2) == repr(fit2)

    np.savez(tmp_path / "other.npz", W=np.eye(2))
    with pytest.raises(ValueError, match="not written by ExactFit.save"):
        ExactFit.load(tmp_path / "other.npz")


def test_results_are_deterministic_and_W0_is_a_start():
    kw = dict(m=3, p=1e-3, restarts=2, seed=4, maxiter=100)
    a, b = fit_exact(10, 3, **kw), fit_exact(10, 3, **kw)
    np.testing.assert_array_equal(a.W, b.W)
    assert a.gain == b.gain and a.starts == ("unsuperposed", "random 0", "random 1")
    c = fit_exact(10, 3, **{**kw, "seed": 5})
    assert not np.array_equal(a.gains[1:], c.gains[1:])
    # W0: tried first; starting from the optimum it stays there
    d = fit_exact(10, 3, W0=a.W, **{**kw, "restarts": 0})
    assert d.starts == ("W0", "unsuperposed")
    assert d.gains[0] >= a.gain * (1 - 1e-12)
    # the result is a stationary point of the exact gain (relative to its scale)
    g, dW, _ = exact_gain_grad(a.model(), a.inputs(), wrt_bias=False)
    assert np.max(np.abs(dW)) / a.scale < 1e-5
    assert isinstance(a.model(), Model) and isinstance(a.inputs(), SparseInputs)
    assert g == pytest.approx(a.gain, rel=1e-14)


def test_init_norm_and_objective_scaling():
    """The objective is -gain / L0 with L0 = E sum_j I_j x_j**2; init_norm sets the start."""
    n, d, m, p = 8, 2, 3, 1e-6  # a tiny p still optimises: tolerances act on -gain / L0
    fit = fit_exact(n, d, m=m, p=p, restarts=1, init_norm=0.8, maxiter=500)
    assert fit.scale == pytest.approx(n * p)  # mu_2 sum_j p_j
    assert fit.starts[fit.best] == "random 0"
    start = random_frame(n, d, 0.8, [0, 0])
    np.testing.assert_allclose(np.linalg.norm(start, axis=0), 0.8, rtol=1e-14)
    g0 = exact_gain(Model(start, exponent=m), SparseInputs(n, p=p))
    assert fit.history[0] == pytest.approx(g0, rel=1e-12)
    cap = first_order_cap(d, m, "gaussian", n=n)  # 0.6 * 3.2: lines at pi k / 8 reach it
    assert 0.999 * cap < fit.gain / p < cap
    # default norm of the random starts: THEORY §5.3's best common norm
    fit = fit_exact(n, d, m=m, p=p, restarts=1, maxiter=1)
    start = random_frame(n, d, random_frame_norm(n, d, m, "gaussian"), [0, 0])
    g0 = exact_gain(Model(start, exponent=m), SparseInputs(n, p=p))
    assert fit.history[0] == pytest.approx(g0, rel=1e-12)


# ------------------------------------------------ (v) bad inputs


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(n=0), ValueError, "n must be an integer >= 1"),
        (dict(n=2.5), TypeError, "n must be an integer"),
        (dict(d=0), ValueError, "d must be an integer >= 1"),
        (dict(m=0), ValueError, "m must be an integer >= 1"),
        (dict(m=3.5), TypeError, "m must be an integer >= 1"),
        (dict(m=True), TypeError, "m must be an integer"),
        (dict(p=0.0), ValueError, r"p must lie in \(0, 1\]"),
        (dict(p=1.5), ValueError, r"p must lie in \(0, 1\]"),
        (dict(p=-0.1), ValueError, "p must lie"),
        (dict(p="0.1"), TypeError, "p must be a probability"),
        (dict(p=[0.1, 0.2]), ValueError, r"p must be a scalar or have shape \(4,\)"),
        (dict(p=[0.1, 0.2, 0.0, 0.3]), ValueError, r"p\[2\] = 0.0"),
        (dict(values="cauchy"), ValueError, "values must be one of"),
        (dict(values=3), TypeError, "values must be a value-law name"),
        (dict(values=ValueLaw("discrete", support=[0.0], probs=[1.0])), ValueError, "almost"),
        (dict(importance=[1.0, 1.0]), ValueError, "importance has shape"),
        (dict(importance=[1.0, 0.0, 1.0, 1.0]), ValueError, "importance must be finite and > 0"),
        (dict(bias=1), TypeError, "bias must be True or False"),
        (dict(restarts=-1), ValueError, "restarts must be an integer >= 0"),
        (dict(seed=-3), ValueError, "seed must be an integer >= 0"),
        (dict(maxiter=0), ValueError, "maxiter must be an integer >= 1"),
        (dict(tol=0.0), ValueError, "tol must be > 0"),
        (dict(tol=math.nan), ValueError, "tol must be"),
        (dict(init_norm=-1.0), ValueError, "init_norm must be"),
        (dict(init_norm="big"), TypeError, "init_norm must be"),
        (dict(W0=np.ones((4, 2))), ValueError, r"W0 has shape \(4, 2\); axis 0 must"),
        (dict(W0=np.ones((2, 4), dtype=int)), TypeError, "W0 must have dtype"),
        (dict(W0=np.full((2, 4), np.inf)), ValueError, "W0 must be finite"),
    ],
)
def test_bad_inputs(kwargs, exc, match):
    args = dict(n=4, d=2, p=0.1, restarts=0, maxiter=5)
    args.update(kwargs)
    n, d = args.pop("n"), args.pop("d")
    with pytest.raises(exc, match=match):
        fit_exact(n, d, **args)


def test_p_is_required():
    with pytest.raises(TypeError):
        fit_exact(4, 2)  # p is keyword-only and has no default


def test_overflowing_starts():
    """A W0 whose moments overflow float64 is refused; one that overflows later is survived."""
    with pytest.raises(FloatingPointError, match="W0 cannot be a start.*overflow"):
        fit_exact(5, 2, m=3, p=0.1, W0=np.full((2, 5), 1e40), restarts=0)
    fit = fit_exact(5, 2, m=3, p=0.1, W0=np.full((2, 5), 1e20), restarts=0)
    assert fit.starts == ("W0", "unsuperposed") and fit.best == 1
    assert not fit.converged[0] and fit.gains[0] < 0
    assert fit.gain == pytest.approx(0.1 * 0.6 * 2, rel=1e-14)


def test_fit_dispatches_method_exact():
    import fastsuper as fs

    res = fs.fit(
        4,
        4,
        method="exact",
        activation="power",
        exponent=3,
        values="gaussian",
        p=0.01,
        bias=False,
        steps=200,
    )
    assert isinstance(res, fs.ExactFit)
    assert res.gain == pytest.approx(0.01 * 0.6 * 4, rel=1e-6)  # p kappa n (THEORY §5.1)
    with pytest.raises(ValueError, match="needs activation='power'"):
        fs.fit(4, 2, method="exact", p=0.01)
    with pytest.raises(ValueError, match="method must be one of"):
        fs.fit(4, 2, method="sgd")


def test_exact_fit_says_its_loss_and_gain_are_sums():
    fit = fit_exact(4, 2, m=3, p=0.1, restarts=0, maxiter=5)
    assert f"loss={fit.loss:.10g} (exact, sums over the 4 features)" in repr(fit)
    assert fit.loss_mean_over_features == fit.loss / 4
    assert fit.gain_mean_over_features == fit.gain / 4
    assert fit.gain_history is fit.history
