"""The exact pattern-sum loss of tiny ReLU models (n <= 3, U[0,1] values) against the
closed forms of THEORY §9, the exact k <= 1 terms, nested adaptive quadrature, Monte Carlo
and finite differences."""

from __future__ import annotations

import numpy as np
import pytest

import fastsuper as fs
from fastsuper.exact.patterns import pattern_loss, pattern_loss_grad, pattern_terms
from tests.naive_patterns import loss_by_k


def _inputs(p, imp):
    return fs.SparseInputs(len(imp), p=p, values="uniform", importance=imp)


@pytest.mark.parametrize("p", [0.01, 0.2, 4 / 7, 0.9, 1.0])
@pytest.mark.parametrize("r", [0.1, 0.5, 1.0, 3.0])
def test_closed_forms_of_the_smallest_phase_diagram(p, r):
    """THEORY §9: dedicated r (p/3 - p**2/4), antipodal (1 + r) p**2 / 6, both ignored
    (1 + r)(p/3 - p**2/4), two dedicated dimensions 0 (d = 2)."""
    inputs = _inputs(p, [1.0, r])
    var = p / 3 - p**2 / 4
    cases = [
        (fs.Model([[1.0, 0.0]], b=[0.0, p / 2], activation="relu"), r * var),
        (fs.Model([[0.0, 1.0]], b=[p / 2, 0.0], activation="relu"), var),
        (fs.Model([[1.0, -1.0]], b=[0.0, 0.0], activation="relu"), (1 + r) * p**2 / 6),
        (fs.Model([[-1.0, 1.0]], b=[0.0, 0.0], activation="relu"), (1 + r) * p**2 / 6),
        (fs.Model([[0.0, 0.0]], b=[p / 2, p / 2], activation="relu"), (1 + r) * var),
        (fs.Model(np.eye(2), b=[0.0, 0.0], activation="relu"), 0.0),
    ]
    for model, want in cases:
        assert pattern_loss(model, inputs) == pytest.approx(want, rel=1e-13, abs=1e-16)


def test_low_order_terms_agree_for_k_le_1():
    rng = np.random.default_rng(0)
    for n, d in [(2, 1), (3, 2), (3, 1), (2, 2)]:
        for _ in range(3):
            W = rng.normal(size=(d, n))
            b = rng.normal(0, 0.4, size=n)
            p = rng.uniform(0.05, 0.95, size=n)
            imp = rng.uniform(0.2, 2, size=n)
            model = fs.Model(W, b, activation="relu")
            terms = pattern_terms(model, _inputs(p, imp))
            lo = fs.low_order_terms(model, _inputs(p, imp))
            assert terms[0] + terms[1] == pytest.approx(lo.lower_bound, rel=1e-13, abs=1e-16)
            assert terms.sum() == pytest.approx(pattern_loss(model, _inputs(p, imp)), rel=1e-14)


@pytest.mark.parametrize(("n", "d", "seed"), [(2, 1, 1), (3, 2, 2), (3, 1, 3)])
def test_against_nested_adaptive_quadrature(n, d, seed):
    """Every stratum P(K = k) L_k, k = 0..n, against nested scipy quad (1e-9 relative)."""
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(d, n))
    b = rng.normal(0, 0.5, size=n)
    p = rng.uniform(0.2, 0.9, size=n)
    imp = rng.uniform(0.5, 1.5, size=n)
    got = pattern_terms(fs.Model(W, b, activation="relu"), _inputs(p, imp))
    np.testing.assert_allclose(got, loss_by_k(W, b, p, imp), rtol=1e-9, atol=1e-14)


def test_degenerate_directions_are_exact():
    """Zero and axis-aligned interference (c_i = 0 cuts), a zero column, exact vertices."""
    p, imp = [0.5, 0.4, 0.3], [1.0, 0.8, 0.6]
    for W, b in [
        (np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), [0.0, 0.0, 0.15]),
        (np.array([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]), [-0.5, -1.0, 0.0]),
        (np.array([[1.0, -1.0, 1.0], [0.0, 0.0, 0.0]]), [0.0, 0.0, 1.0]),
    ]:
        got = pattern_terms(fs.Model(W, b, activation="relu"), _inputs(p, imp))
        np.testing.assert_allclose(got, loss_by_k(W, b, p, imp), rtol=1e-9, atol=1e-14)


def test_against_monte_carlo_within_five_standard_errors():
    rng = np.random.default_rng(4)
    for n, d in [(3, 2), (2, 1), (3, 1)]:
        W = rng.normal(size=(d, n))
        b = rng.normal(0, 0.3, size=n)
        inputs = _inputs(rng.uniform(0.3, 0.9, size=n), rng.uniform(0.5, 1.5, size=n))
        model = fs.Model(W, b, activation="relu")
        est = fs.estimate_loss(model, inputs, n_samples=2_000_000, seed=7)
        assert abs(est.mean - pattern_loss(model, inputs)) < 5 * est.stderr


def test_gradient_matches_finite_differences():
    rng = np.random.default_rng(5)
    h = 1e-6
    for n, d in [(2, 1), (3, 2), (3, 3)]:
        W = rng.normal(size=(d, n))
        b = rng.normal(0, 0.3, size=n)
        inputs = _inputs(rng.uniform(0.2, 0.9, size=n), rng.uniform(0.5, 1.5, size=n))
        _, gW, gb = pattern_loss_grad(fs.Model(W, b, activation="relu"), inputs)

        def f(W, b, inputs=inputs):
            return pattern_loss(fs.Model(W, b, activation="relu"), inputs)

        for idx in np.ndindex(W.shape):
            E = np.zeros_like(W)
            E[idx] = h
            fd = (f(W + E, b) - f(W - E, b)) / (2 * h)
            assert fd == pytest.approx(gW[idx], rel=1e-6, abs=1e-9)
        for i in range(n):
            e = np.zeros(n)
            e[i] = h
            fd = (f(W, b + e) - f(W, b - e)) / (2 * h)
            assert fd == pytest.approx(gb[i], rel=1e-6, abs=1e-9)


def test_refuses_what_it_does_not_cover():
    inputs = _inputs(0.5, [1.0, 1.0])
    with pytest.raises(ValueError, match="ReLU"):
        pattern_loss(fs.Model([[1.0, 0.0]], activation="power", exponent=1), inputs)
    with pytest.raises(ValueError, match="uniform"):
        pattern_loss(fs.Model([[1.0, 0.0]], activation="relu"), fs.SparseInputs(2, p=0.5))
    with pytest.raises(ValueError, match="n <= 3"):
        pattern_loss(fs.Model(np.eye(4), activation="relu"), _inputs(0.5, [1.0] * 4))
    with pytest.raises(ValueError, match="exactly k"):
        pattern_loss(
            fs.Model([[1.0, 0.0]], activation="relu"), fs.SparseInputs(2, k=1, values="uniform")
        )
    with pytest.raises(ValueError, match="does not match"):
        pattern_loss(fs.Model([[1.0, 0.0, 0.0]], activation="relu"), inputs)


hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=40, derandomize=True, deadline=None)
@given(
    st.integers(1, 3),
    st.integers(1, 3),
    st.lists(st.floats(-2, 2), min_size=12, max_size=12),
    st.lists(st.sampled_from([0.0, 0.3, 0.7, 1.0]), min_size=3, max_size=3),
)
def test_any_small_model(n, d, vals, ps):
    """Any weights, bias and p (0 and 1 included): a finite loss >= 0 whose k <= 1 part is
    low_order_terms' and whose gradient is finite."""
    W = np.array(vals[: d * n]).reshape(d, n)
    b = np.array(vals[9 : 9 + n])
    inputs = _inputs(ps[:n], [1.0] * n)
    model = fs.Model(W, b, activation="relu")
    loss, gW, gb = pattern_loss_grad(model, inputs)
    terms = pattern_terms(model, inputs)
    assert loss >= -1e-15 and np.all(terms >= -1e-15)
    assert np.all(np.isfinite(gW)) and np.all(np.isfinite(gb))
    lo = fs.low_order_terms(model, inputs).lower_bound
    assert terms[0] + terms[1] == pytest.approx(lo, rel=1e-12, abs=1e-15)
