"""The fused kernel (each pair of tiles once) against the row kernels, at sizes where it runs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from checks import assert_same_on_any_thread_count

from fastsuper import ExactEvaluator, SparseInputs, ValueLaw
from fastsuper.core import config

LAWS = {
    "gaussian": ValueLaw("gaussian"),  # odd cumulants vanish: the even power sums only
    "discrete": ValueLaw("discrete", support=[-1.3, 0.4, 2.1], probs=[0.2, 0.5, 0.3]),
}


def _problem(law, n, d, seed=0):
    rng = np.random.default_rng([seed, n, d])
    W = 0.8 * rng.normal(size=(d, n)) / math.sqrt(d)
    b = rng.normal(scale=0.3, size=n)
    inputs = SparseInputs(n, p=rng.uniform(0.05, 0.9, n), values=LAWS[law],
                          importance=rng.uniform(0.5, 2.0, n))  # fmt: skip
    return W, b, inputs


def _agree(got, ref):
    assert got[0] == pytest.approx(ref[0], rel=1e-12)
    for x, y in zip(got[1:], ref[1:], strict=True):
        np.testing.assert_allclose(x, y, rtol=0, atol=1e-12 * np.abs(y).max())


@pytest.mark.parametrize("law", sorted(LAWS))
@pytest.mark.parametrize("m", [2, 3])
@pytest.mark.parametrize(("rows", "cols", "groups"), [(64, 512, 8), (8, 3, 2), (7, 16, 5)])
def test_fused_agrees_with_the_rows(monkeypatch, law, m, rows, cols, groups):
    """The default tiles (full-width tiles and a last narrower one), and tiles narrower than
    the row blocks (the diagonal block over several tiles), where the fused kernel is forced."""
    monkeypatch.setattr(config, "EXACT_FUSED_ROWS", rows)
    monkeypatch.setattr(config, "EXACT_FUSED_COLS", cols)
    monkeypatch.setattr(config, "EXACT_FUSED_GROUPS", groups)
    n, d = (600, 3) if rows == 64 else (61, 3)
    W, b, inputs = _problem(law, n, d)
    rows_ev = ExactEvaluator(inputs, d, m, bias=True, kernel="rows")
    fused = ExactEvaluator(inputs, d, m, bias=True, kernel="fused")
    _agree(fused.loss_grad(W, b), rows_ev.loss_grad(W, b))
    _agree(fused.gain_grad(W, b), rows_ev.gain_grad(W, b))
    assert fused.loss_and_gain(W, b) == pytest.approx(rows_ev.loss_and_gain(W, b), rel=1e-12)


def test_fused_does_not_depend_on_the_thread_count(monkeypatch):
    monkeypatch.setattr(config, "EXACT_FUSED_ROWS", 8)
    monkeypatch.setattr(config, "EXACT_FUSED_COLS", 24)
    W, b, inputs = _problem("discrete", 150, 4)
    ev = ExactEvaluator(inputs, 4, 3, bias=True, kernel="fused")
    assert_same_on_any_thread_count(lambda: ev.loss_grad(W, b))
