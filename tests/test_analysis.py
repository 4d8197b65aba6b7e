"""Tests of fastsuper.analysis: feature dimensionality (THEORY §6) and the
first-order theory of THEORY §5.3 (F(A), its cap kappa D(d, m) and equality cases)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from fastsuper import Model, SparseInputs, ValueLaw, exact_gain
from fastsuper import testing as T
from fastsuper.analysis import (
    feature_dimensionality,
    first_order_cap,
    first_order_objective,
    kappa,
    plot_features,
    plot_gram,
    plot_loss_history,
    random_frame_norm,
    random_frame_value,
    sphere_dimension,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

LAWS = {
    "gaussian": ValueLaw("gaussian"),
    "rademacher": ValueLaw("rademacher"),
    "uniform": ValueLaw("uniform"),
    "constant": ValueLaw("constant"),
    "discrete": ValueLaw("discrete", support=[-1.3, 0.4, 2.1], probs=[0.2, 0.5, 0.3]),
}


def _lines_2d(n: int) -> np.ndarray:
    """Unit vectors at angles pi k / n, k = 0 .. n-1 (n lines through the origin)."""
    t = np.pi * np.arange(n) / n
    return np.stack([np.cos(t), np.sin(t)])


def _icosahedron_lines() -> np.ndarray:
    """The 6 lines through the 12 vertices of a regular icosahedron (unit vectors)."""
    g = (1 + math.sqrt(5)) / 2
    U = np.array(
        [[0, 1, g], [0, 1, -g], [1, g, 0], [1, -g, 0], [g, 0, 1], [-g, 0, 1]], dtype=float
    ).T
    return U / np.linalg.norm(U, axis=0)


def _best_scale(U: np.ndarray, law: ValueLaw, m: int) -> np.ndarray:
    """``sqrt(c) U`` with the common ``c`` maximising F: ``c**m = mu_{m+1} n / (mu_{2m} S)``."""
    n = U.shape[1]
    S = float(np.sum((U.T @ U) ** (2 * m)))
    c = (law.moment(m + 1) * n / (law.moment(2 * m) * S)) ** (1 / m)
    return math.sqrt(c) * U


def _F_direct(W, law, m):
    """F(A) straight from its definition, with A formed whole."""
    A = W.T @ W
    return 2 * law.moment(m + 1) * np.trace(A**m) - law.moment(2 * m) * np.sum(A ** (2 * m))


# ----------------------------------------------------------- feature dimensionality


def test_dimensionality_pentagon():
    t = 2 * np.pi * np.arange(5) / 5
    D = feature_dimensionality(np.stack([np.cos(t), np.sin(t)]))
    np.testing.assert_allclose(D, 0.4, rtol=1e-14)


def test_dimensionality_antipodal_orthogonal_zero():
    np.testing.assert_allclose(feature_dimensionality([[1.0, -1.0]]), [0.5, 0.5], rtol=1e-15)
    np.testing.assert_array_equal(feature_dimensionality(np.eye(4)), np.ones(4))
    # orthogonal features of different lengths still have dimensionality 1; zero column 0
    W = np.array([[2.0, 0.0, 0.0], [0.0, 0.0, 0.5]])
    np.testing.assert_array_equal(feature_dimensionality(W), [1.0, 0.0, 1.0])


@pytest.mark.parametrize("n,d", [(7, 3), (12, 4)])
def test_dimensionality_tight_frame_and_scale_invariance(n, d):
    # a harmonic frame: equal-norm and tight, so D_i = d / n for every feature
    k = np.arange(n)
    rows = []
    for f in range(1, d // 2 + 1):
        rows += [np.cos(2 * np.pi * f * k / n), np.sin(2 * np.pi * f * k / n)]
    if d % 2:
        rows.append(np.full(n, 1 / math.sqrt(2)))
    U = np.array(rows)
    U /= np.linalg.norm(U, axis=0)
    np.testing.assert_allclose(feature_dimensionality(U), d / n, rtol=1e-12)
    # general W: 0 < D_i <= 1, invariant under a common scale, sum_i D_i <= d
    W = np.random.default_rng(0).normal(size=(d, n))
    D = feature_dimensionality(W)
    assert np.all((D > 0) & (D <= 1 + 1e-12))
    np.testing.assert_allclose(feature_dimensionality(3.7 * W), D, rtol=1e-13)
    assert D.sum() <= d + 1e-12


def test_dimensionality_blocks_match_whole(monkeypatch):

    W = np.random.default_rng(1).normal(size=(3, 50))
    W[:, 7] = 0.0
    whole = feature_dimensionality(W)
    monkeypatch.setattr(T.config, "GEOMETRY_BLOCK_ELEMS", 120)  # blocks of 2 rows
    np.testing.assert_allclose(feature_dimensionality(W), whole, rtol=1e-14)
    assert whole[7] == 0.0
    A = W.T @ W
    ref = np.where(np.diag(A) > 0, np.diag(A) ** 2 / np.maximum(np.sum(A**2, 1), 1e-300), 0)
    np.testing.assert_allclose(whole, ref, rtol=1e-13)


# ----------------------------------------------------------- first-order objective


@pytest.mark.parametrize("law_name", sorted(LAWS))
@pytest.mark.parametrize("m", [1, 2, 3])
def test_first_order_objective_is_the_p_coefficient_of_the_exact_gain(law_name, m):
    """(gain at p) / p -> F(A) as p -> 0: Richardson extrapolation from two small p."""
    law = LAWS[law_name]
    n, d = 9, 3
    W = np.random.default_rng([m, len(law_name)]).normal(size=(d, n))
    W *= random_frame_norm(n, d, m, law) / np.linalg.norm(W, axis=0)  # F of order 1
    W[:, 0] *= 1.1  # not all norms equal
    model = Model(W, exponent=m)
    p1, p2 = 4e-6, 2e-6
    g1 = exact_gain(model, SparseInputs(n, p=p1, values=law)) / p1
    g2 = exact_gain(model, SparseInputs(n, p=p2, values=law)) / p2
    extrapolated = 2 * g2 - g1  # gain / p = F + c p + O(p**2)
    F = first_order_objective(W, law, m)
    assert F == pytest.approx(_F_direct(W, law, m), rel=1e-12)
    assert extrapolated == pytest.approx(F, rel=1e-6, abs=1e-9 * abs(g1))
    if law_name != "discrete":  # the law may also be given by name
        assert first_order_objective(W, law_name, m) == F


def test_first_order_objective_blocks_match_whole(monkeypatch):

    W = np.random.default_rng(3).normal(size=(4, 33)) * 0.7
    whole = first_order_objective(W, "gaussian", 3)
    monkeypatch.setattr(T.config, "GEOMETRY_BLOCK_ELEMS", 100)
    assert first_order_objective(W, "gaussian", 3) == pytest.approx(whole, rel=1e-13)


@pytest.mark.parametrize("m", [1, 2, 3, 4, 5])
def test_sphere_dimension(m):
    # D(2, m) = 2 * 4 * ... * (2m) / (2m-1)!!, D(d, 1) = d, D(1, m) = 1, D <= d**m
    num = math.prod(range(2, 2 * m + 1, 2))
    assert sphere_dimension(2, m) == pytest.approx(num / math.prod(range(2 * m - 1, 0, -2)))
    assert sphere_dimension(1, m) == 1.0
    assert sphere_dimension(7, 1) == 7.0
    for d in (2, 3, 10):
        assert sphere_dimension(d, m) <= d**m
    assert (sphere_dimension(10, 3), sphere_dimension(15, 3)) == (112.0, 323.0)


def test_sphere_dimension_is_inverse_mean_of_u1_power():
    """1 / D(d, m) = E u_1**(2m) over the unit sphere (Monte Carlo, 5 standard errors)."""
    rng = np.random.default_rng(7)
    for d, m in [(3, 2), (4, 3)]:
        g = rng.normal(size=(200_000, d))
        u1 = (g[:, 0] / np.linalg.norm(g, axis=1)) ** (2 * m)
        assert abs(u1.mean() - 1 / sphere_dimension(d, m)) < 5 * u1.std() / math.sqrt(u1.size)


@pytest.mark.parametrize("law_name", ["gaussian", "rademacher", "uniform", "constant"])
@pytest.mark.parametrize("m", [1, 3, 5])
def test_equality_case_lines_in_the_plane(law_name, m):
    """d = 2, n >= m + 1 lines at angles pi k / n with the best common norm: F = kappa D(2, m)."""
    law = LAWS[law_name]
    cap = kappa(law, m) * sphere_dimension(2, m)
    assert first_order_cap(2, m, law) == pytest.approx(cap, rel=1e-15)
    for n in (m + 1, m + 2, 2 * m + 3):
        W = _best_scale(_lines_2d(n), law, m)
        assert first_order_objective(W, law, m) == pytest.approx(cap, rel=1e-12)
    # fewer lines fall short (only m + 1 or more lines form a 2m-design)
    if m > 1:
        W = _best_scale(_lines_2d(m), law, m)
        assert first_order_objective(W, law, m) < cap * (1 - 1e-6)


@pytest.mark.parametrize("law_name", ["uniform", "constant", "discrete"])
def test_equality_case_icosahedron(law_name):
    """d = 3, m = 2: the 6 lines through an icosahedron's vertices reach kappa D(3, 2) = 5 kappa."""
    law = LAWS[law_name]
    W = _best_scale(_icosahedron_lines(), law, 2)
    cap = first_order_cap(3, 2, law)
    assert cap == pytest.approx(5 * kappa(law, 2), rel=1e-15)
    assert first_order_objective(W, law, 2) == pytest.approx(cap, rel=1e-13)


def test_kappa_values():
    assert kappa("gaussian", 3) == pytest.approx(0.6, rel=1e-15)  # 3**2 / 15
    assert kappa("rademacher", 3) == 1.0 and kappa("constant", 4) == 1.0
    assert kappa("gaussian", 2) == 0.0  # symmetric law, even m: mu_3 = 0
    assert kappa("uniform", 2) == pytest.approx((1 / 4) ** 2 * 5)
    assert kappa(ValueLaw("discrete", support=[0.0], probs=[1.0]), 3) == 0.0


@pytest.mark.parametrize("m", [1, 3])
def test_random_frames_respect_the_cap(m):
    """F <= kappa min(n, D) for any W; random frames near kappa n D / (n + D - 1)."""
    law = LAWS["gaussian"]
    rng = np.random.default_rng(11)
    for d in (2, 3, 5):
        D = sphere_dimension(d, m)
        for n in (1, 3, 10, 40):
            cap = first_order_cap(d, m, law, n=n)
            assert cap == pytest.approx(kappa(law, m) * min(n, D), rel=1e-15)
            for _ in range(5):
                U = rng.normal(size=(d, n))
                U /= np.linalg.norm(U, axis=0)
                # any norms, the best common norm, and the random-frame norm of THEORY §5.3
                for W in (
                    U * rng.uniform(0.2, 1.5, size=n),
                    _best_scale(U, law, m),
                    U * random_frame_norm(n, d, m, law),
                ):
                    assert first_order_objective(W, law, m) <= cap * (1 + 1e-12)
    # the expected value of random frames: mean over many frames with the common norm
    d, n = 3, 30
    vals = []
    for _ in range(400):
        U = rng.normal(size=(d, n))
        U /= np.linalg.norm(U, axis=0)
        vals.append(first_order_objective(U * random_frame_norm(n, d, m, law), law, m))
    vals = np.array(vals)
    want = random_frame_value(n, d, m, law)
    assert abs(vals.mean() - want) < 5 * vals.std() / math.sqrt(vals.size)


def test_random_frame_value_and_norm():
    law = ValueLaw("gaussian")
    assert random_frame_value(1, 4, 3, law) == pytest.approx(kappa(law, 3))
    assert random_frame_value(60, 4, 3, law) == pytest.approx(0.6 * 60 * 12.8 / 71.8)
    assert random_frame_value(10**9, 4, 3, law) == pytest.approx(0.6 * 12.8, rel=1e-7)
    # the command line's default norm of random starting weights (same formula, THEORY §5.3)
    for n, d in [(5, 2), (100, 10), (6000, 15)]:
        assert random_frame_norm(n, d, 3, law) == pytest.approx(T.cli_default_norm(law, 3, n, d))
    assert random_frame_norm(5, 2, 2, law) == 1.0  # mu_3 = 0: no positive optimum


@pytest.mark.parametrize(
    "call,exc,match",
    [
        (lambda: feature_dimensionality(np.ones(3)), ValueError, "2-dimensional"),
        (lambda: feature_dimensionality(np.ones((2, 0))), ValueError, "d, n >= 1"),
        (lambda: feature_dimensionality([[np.nan]]), ValueError, "finite"),
        (lambda: first_order_objective(np.eye(2), "cauchy", 3), ValueError, "values must be"),
        (lambda: first_order_objective(np.eye(2), 3, 3), TypeError, "law must be"),
        (lambda: first_order_objective(np.eye(2), "gaussian", 0), ValueError, "m must be"),
        (lambda: first_order_objective(np.eye(2), "gaussian", 2.5), TypeError, "m must be"),
        (lambda: sphere_dimension(0, 3), ValueError, "d must be"),
        (lambda: first_order_cap(3, 3, "gaussian", n=0), ValueError, "n must be"),
        (lambda: random_frame_value(True, 3, 3, "gaussian"), TypeError, "n must be"),
        (lambda: plot_gram(np.eye(2), 3), TypeError, "path must be"),
        (lambda: plot_loss_history([], "x.png"), ValueError, "history"),
    ],
)
def test_bad_inputs(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


# ----------------------------------------------------------- plots


def _is_png(path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(8) == PNG_MAGIC


def test_plots_write_png(tmp_path):
    pytest.importorskip("matplotlib")
    t = 2 * np.pi * np.arange(5) / 5
    pentagon = np.stack([np.cos(t), np.sin(t)])
    W3 = np.random.default_rng(0).normal(size=(3, 12))
    W1 = np.array([[1.0, -0.5, 0.0]])
    calls = [
        (plot_gram, pentagon, tmp_path / "gram.png", {}),
        (plot_gram, W3, str(tmp_path / "gram3.png"), {"title": "random"}),
        (plot_features, pentagon, tmp_path / "pentagon.png", {}),
        (plot_features, W3, tmp_path / "features3.png", {"title": "d = 3"}),
        (plot_features, W1, tmp_path / "features1.png", {}),
        (plot_features, np.zeros((3, 4)), tmp_path / "zeros.png", {}),
        (plot_loss_history, np.geomspace(1.0, 1e-3, 50), tmp_path / "hist.png", {}),
        (plot_loss_history, {"a": [3.0, 2.0, 1.5], "b": [1.0, 0.9]}, tmp_path / "h2.png", {}),
        (plot_loss_history, [[1.0, 0.5], [2.0, 0.1]], tmp_path / "h3.png", {"ylabel": "gain"}),
        (plot_loss_history, [[1.0, 0.5, 0.2], [2.0]], tmp_path / "h4.png", {}),
    ]
    for plot, data, path, kw in calls:
        plot(data, path, **kw)
        assert Path(path).exists() and Path(path).stat().st_size > 1000
        assert _is_png(path)

    class Fit:  # anything with a .history attribute
        history = np.array([0.0, 1.0, 1.5])

    plot_loss_history(Fit(), tmp_path / "fit.png")
    assert _is_png(tmp_path / "fit.png")


@pytest.fixture
def agg():
    """pyplot on the Agg backend; every figure closed afterwards."""
    mpl = pytest.importorskip("matplotlib")
    mpl.use("Agg", force=True)
    import matplotlib.pyplot as plt

    yield plt
    plt.close("all")


@pytest.fixture(scope="module")
def small_fit():
    import fastsuper as fs

    return fs.fit(5, 2, n_instances=3, p=[1.0, 0.2, 0.02], steps=60, log_every=10, seed=3)


def test_plot_loss_history_of_a_fit_draws_one_curve_per_instance(agg, small_fit, tmp_path):
    """A FitResult is accepted: one curve per instance over the logged steps (not one per
    logged step), a legend for few curves, an Axes returned, no layout warning."""
    import warnings

    res = small_fit
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ax = plot_loss_history(res, tmp_path / "loss.png")
        ax.figure.canvas.draw()
    assert _is_png(tmp_path / "loss.png")
    assert len(ax.lines) == res.n_instances
    for k, line in enumerate(ax.lines):
        np.testing.assert_array_equal(line.get_xdata(), res.log_steps)
        np.testing.assert_array_equal(line.get_ydata(), res.loss_history[:, k])
    assert "sum over features" in ax.get_ylabel() and ax.get_xlabel() == "step"
    assert len(ax.get_legend().get_texts()) == res.n_instances
    # on a given Axes, without a file
    fig, given = agg.subplots()
    assert plot_loss_history(res, ax=given) is given and len(given.lines) == res.n_instances


def test_plot_loss_history_many_curves_has_no_legend(agg):
    import warnings

    hist = np.geomspace(1.0, 1e-2, 40)[None, :] * np.linspace(1.0, 2.0, 30)[:, None]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ax = plot_loss_history(hist)
        ax.figure.canvas.draw()
    assert len(ax.lines) == 30 and ax.get_legend() is None
    np.testing.assert_array_equal(ax.lines[7].get_ydata(), hist[7])


def test_plot_exact_fit_history_is_the_gain(agg):
    import fastsuper as fs

    fit = fs.fit_exact(6, 2, m=3, p=0.1, restarts=0, maxiter=10)
    ax = plot_loss_history(fit)
    (line,) = ax.lines
    np.testing.assert_array_equal(line.get_ydata(), fit.history)
    assert "gain" in ax.get_ylabel() and "loss" not in ax.get_ylabel()


def test_plot_gram_draws_wtw_of_a_result(agg, small_fit, tmp_path):
    res = small_fit
    ax = plot_gram(res, instance=1)
    np.testing.assert_array_equal(ax.images[0].get_array(), res.W[1].T @ res.W[1])
    fig, given = agg.subplots()
    assert plot_gram(res.model(2), tmp_path / "g.png", ax=given) is given
    np.testing.assert_array_equal(given.images[0].get_array(), res.W[2].T @ res.W[2])
    assert _is_png(tmp_path / "g.png")
    with pytest.raises(ValueError, match="instance must be < 3"):
        plot_gram(res, instance=3)


def test_plot_features_draws_the_columns(agg, small_fit):
    from matplotlib.text import Annotation

    res = small_fit
    ax = plot_features(res, instance=2)  # d = 2: the columns themselves
    arrows = [a for a in ax.texts if isinstance(a, Annotation)]
    np.testing.assert_array_equal(np.array([a.xy for a in arrows]).T, res.W[2])
    W3 = np.random.default_rng(1).normal(size=(3, 7))
    norms_ax, proj_ax = plot_features(W3)
    heights = [patch.get_height() for patch in norms_ax.patches]
    np.testing.assert_allclose(heights, np.linalg.norm(W3, axis=0), rtol=1e-15)
    P = np.array([a.xy for a in proj_ax.texts if isinstance(a, Annotation)]).T
    # the projection keeps the Gram matrix of the top two singular directions
    U, s, Vt = np.linalg.svd(W3, full_matrices=False)
    np.testing.assert_allclose(P.T @ P, (U[:, :2].T @ W3).T @ (U[:, :2].T @ W3), atol=1e-12)
    fig, one = agg.subplots()
    assert plot_features(W3, ax=one) is one  # one Axes given: the projection only
