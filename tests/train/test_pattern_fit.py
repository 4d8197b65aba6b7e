"""L-BFGS with restarts on the exact pattern-sum loss: the optimum is never worse than the
closed-form branches of THEORY §9, is a stationary point, and reports its own exact loss."""

from __future__ import annotations

import numpy as np
import pytest

import fastsuper as fs
from fastsuper.exact.patterns import pattern_loss, pattern_loss_grad
from fastsuper.train.patterns import fit_pattern_exact, tegum_starts, unsuperposed_start


@pytest.mark.parametrize(("p", "r"), [(0.02, 0.5), (0.2, 0.2), (0.5, 0.3), (0.9, 0.5), (0.3, 3.0)])
def test_optimum_beats_both_closed_form_branches(p, r):
    res = fit_pattern_exact(2, 1, p=p, importance=[1.0, r], restarts=4, seed=1)
    big = max(1.0, r)
    dedicated = (1 + r - big) * (p / 3 - p**2 / 4)
    antipodal = (1 + r) * p**2 / 6
    assert res.loss <= min(dedicated, antipodal) * (1 + 1e-9)
    inputs = fs.SparseInputs(2, p=p, values="uniform", importance=[1.0, r])
    model = fs.Model(res.W, res.b, activation="relu")
    assert res.loss == pytest.approx(pattern_loss(model, inputs), rel=1e-14)
    _, gW, gb = pattern_loss_grad(model, inputs)
    assert np.max(np.abs(np.r_[gW.ravel(), gb])) < 1e-6
    # unsuperposed, the three axis constructions, four random starts
    assert len(res.losses) == 8 and res.labels[0] == "unsuperposed"
    assert res.labels[1:4] == ["axes (-1, 0)", "axes (0, -1)", "axes (0, 0)"]
    assert res.loss == res.losses.min()


def test_dense_features_keep_the_most_important_exactly():
    """p = 1, importances 1, 0.9, 0.3 in d = 2: the two largest kept, the third at its
    mean 1/2: L = 0.3 (1/3 - 1/4)."""
    res = fit_pattern_exact(3, 2, p=1.0, importance=[1.0, 0.9, 0.3], restarts=3)
    assert res.loss == pytest.approx(0.3 / 12, rel=1e-8)
    assert np.linalg.norm(res.W[:, 2]) < 1e-4 and res.b[2] == pytest.approx(0.5, abs=1e-6)


def test_sparse_superposition_and_given_starts():
    """p = 0.01 in 2 -> 1: a superposed pair with loss below the antipodal closed form;
    a given start runs first and is labelled."""
    start = (np.array([[1.0, -1.0]]), np.zeros(2))
    res = fit_pattern_exact(2, 1, p=0.01, importance=[1.0, 0.8], restarts=2, starts=[start])
    assert res.labels[:2] == ["given 0", "unsuperposed"]
    assert res.W[0, 0] * res.W[0, 1] < 0 and res.loss <= 1.8 * 0.01**2 / 6
    labels = [lab for lab, _, _ in tegum_starts(3, 2, [0.1, 0.2, 0.3])]
    # 3 features on 2 axes (or off), at most 2 per axis, up to swapping the axes
    assert len(labels) == len(set(labels)) == 13 and labels[-1] == "triangle"
    for _, W, _ in tegum_starts(3, 2, [0.1, 0.2, 0.3]):
        assert np.all(np.abs(W.sum(axis=1)) <= 1.0 + 1e-12)  # at most one pair per axis
    W, b = unsuperposed_start(3, 2, [0.1, 0.2, 0.3], [1.0, 1.0, 1.0])
    np.testing.assert_array_equal(W, [[0, 0, 1], [0, 1, 0]])
    np.testing.assert_array_equal(b, [0.05, 0, 0])


def test_argument_errors():
    with pytest.raises(ValueError, match="n <= 3"):
        fit_pattern_exact(4, 2, p=0.5)
    with pytest.raises(ValueError, match="importance"):
        fit_pattern_exact(2, 1, p=0.5, importance=[1.0, -1.0])
    with pytest.raises(ValueError, match="starts"):
        fit_pattern_exact(2, 1, p=0.5, starts=[(np.ones((2, 2)), np.zeros(2))])
