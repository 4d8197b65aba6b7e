"""The dense training gradient (small n and d): run_grad's samples and sums, to round-off."""

from __future__ import annotations

import numpy as np
import pytest

import fastsuper as fs
from fastsuper.core.bundles import activation, input_law
from fastsuper.core.rng import seed_key
from fastsuper.train.kernels_cpu import grad_block, grad_block_dense, prepare


def _both(W, b, imp, act, law, first, count, seed=3):
    Wt, imp2 = prepare(W, imp)
    skey = np.uint64(seed_key(np.uint64(seed)))
    out = []
    for block in (grad_block, grad_block_dense):
        gW = np.zeros(W.shape)
        gb = np.zeros(W.shape[1])
        ls, nb, fb = block(W, Wt, b, imp, imp2, act, skey, first, count, law, gW, gb)
        out.append((ls, nb, fb, gW, gb))
    return out


def _problem(n, d, dtype, activation_name="relu", exponent=None, seed=0):
    rng = np.random.default_rng(seed)
    W = (rng.normal(size=(d, n)) / np.sqrt(d)).astype(dtype)
    b = (0.1 * rng.normal(size=n)).astype(dtype)
    model = fs.Model(W, b, activation=activation_name, exponent=exponent)
    return W, b, 0.9 ** np.arange(n), activation(model)


@pytest.mark.parametrize("d", [1, 2, 3, 4])
@pytest.mark.parametrize("p", [0.0, 0.03, 0.4, 1.0])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_dense_gradient_is_the_per_sample_gradient(d, p, dtype):
    n = 4 + d  # at most DENSE_N_MAX features
    W, b, imp, act = _problem(n, d, dtype)
    law = input_law(fs.SparseInputs(n, p=p, values="uniform"), gaps=True)
    (l1, n1, f1, gW1, gb1), (l2, n2, f2, gW2, gb2) = _both(W, b, imp, act, law, 1000, 1500)
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    assert (n1, f1) == (n2, f2) == (0, -1)
    assert l2 == pytest.approx(l1, rel=rtol)
    np.testing.assert_allclose(gW2, gW1, rtol=rtol, atol=rtol * max(np.abs(gW1).max(), 1e-300))
    np.testing.assert_allclose(gb2, gb1, rtol=rtol, atol=rtol * max(np.abs(gb1).max(), 1e-300))


@pytest.mark.parametrize(
    "act_name, exponent, values",
    [("gelu", None, "uniform"), ("power", 3.0, "gaussian"), ("relu", None, "rademacher")],
)
def test_dense_gradient_other_activations_and_values(act_name, exponent, values):
    W, b, imp, act = _problem(6, 2, np.float64, act_name, exponent)
    law = input_law(fs.SparseInputs(6, p=0.3, values=values), gaps=True)
    (l1, _, _, gW1, gb1), (l2, _, _, gW2, gb2) = _both(W, b, imp, act, law, 0, 3000)
    assert l2 == pytest.approx(l1, rel=1e-12)
    np.testing.assert_allclose(gW2, gW1, rtol=1e-12, atol=1e-12 * np.abs(gW1).max())
    np.testing.assert_allclose(gb2, gb1, rtol=1e-12, atol=1e-12 * np.abs(gb1).max())


def test_dense_gradient_reports_the_same_non_finite_samples():
    W, b, imp, act = _problem(5, 2, np.float64)
    law = input_law(fs.SparseInputs(5, p=0.1), gaps=True)
    # huge weights: the samples with an active feature overflow, the empty ones do not
    big = W * 1e200
    (_, n1, f1, _, _), (_, n2, f2, _, _) = _both(big, np.zeros(5), imp, act, law, 17, 900)
    assert 0 < n1 < 900 and (n1, f1) == (n2, f2)
    # a huge bias: every sample overflows, the empty ones included
    (_, n1, f1, _, _), (_, n2, f2, _, _) = _both(W, np.full(5, 1e200), imp, act, law, 17, 900)
    assert (n1, f1) == (n2, f2) == (900, 17)
