"""The serial symmetric kernels of small exact evaluations against dense NumPy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from naive import grad_w_numpy, power_sums_numpy

import fastsuper as fs
from fastsuper import ExactEvaluator, Model, SparseInputs, ValueLaw
from fastsuper.core import config
from fastsuper.exact import kernels_prepared as kp
from fastsuper.exact.kernels_small import small_grad_w, small_gram_sums, use_small


@pytest.mark.parametrize("n", [1, 2, 15, 16, 17, 40])
@pytest.mark.parametrize("d", [1, 2, 5])
def test_gram_and_power_sums_match_numpy(n, d):
    rng = np.random.default_rng([n, d])
    W = rng.normal(size=(d, n)) / math.sqrt(d)
    c = rng.normal(size=(7, n))
    c[3] = 0.0  # an order with no cumulant anywhere: skipped, its sums 0
    A = np.full((n, n), np.nan)  # the kernel must not read what it has not written
    diag = np.empty(n)
    got = small_gram_sums(W, A, c, diag)
    full = W.T @ W
    np.testing.assert_allclose(diag, np.diagonal(full), rtol=1e-14)
    low = np.tril_indices(n, -1)
    np.testing.assert_allclose(A[low], full[low], rtol=1e-13, atol=1e-15)
    off = full.copy()
    np.fill_diagonal(off, 0.0)
    ref = power_sums_numpy(off, c)
    assert got.shape == (7, n)
    np.testing.assert_array_equal(got[0], 0.0)
    np.testing.assert_array_equal(got[3], 0.0)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12 * max(np.abs(ref).max(), 1e-300))


@pytest.mark.parametrize("orders", [[6, 4, 2], [6, 5, 4, 3, 2, 1], [7, 4], [2], [1], []])
@pytest.mark.parametrize("n", [3, 16, 37])
def test_grad_w_matches_stored_gamma(orders, n):
    rng = np.random.default_rng([n, len(orders)])
    d = 4
    W = rng.normal(size=(d, n)) / math.sqrt(d)
    c, coef, g_diag = rng.normal(size=(8, n)), rng.normal(size=(8, n)), rng.normal(size=n)
    A = np.full((n, n), np.nan)
    small_gram_sums(W, A, c, np.empty(n))
    dW = np.full((d, n), np.nan)
    small_grad_w(A, W, coef, c, np.array(orders, dtype=np.int64), g_diag, dW)
    off = W.T @ W
    np.fill_diagonal(off, 0.0)
    ref = grad_w_numpy(off, W, coef, c, orders, g_diag)
    np.testing.assert_allclose(dW, ref, rtol=1e-11, atol=1e-12 * np.abs(ref).max())


@pytest.mark.parametrize("law", ["gaussian", "discrete"])
@pytest.mark.parametrize("bias", [False, True])
def test_small_kernels_agree_with_the_row_kernels(monkeypatch, law, bias):
    n, d, m = 45, 4, 3
    rng = np.random.default_rng(5)
    W = 0.8 * rng.normal(size=(d, n)) / math.sqrt(d)
    b = rng.normal(scale=0.3, size=n) if bias else None
    values = ValueLaw("discrete", support=[-1.3, 0.4, 2.1], probs=[0.2, 0.5, 0.3]) if (
        law == "discrete") else ValueLaw(law)  # fmt: skip
    inputs = SparseInputs(n, p=rng.uniform(0.05, 0.9, n), values=values,
                          importance=rng.uniform(0.5, 2.0, n))  # fmt: skip
    assert use_small(kp.exact_flops(n, d, m))
    small = ExactEvaluator(inputs, d, m, bias=bias)
    got = small.loss_grad(W, b)
    public = fs.exact_loss_grad(Model(W, b, exponent=m), inputs, wrt_bias=bias)
    assert got[0] == public[0] and np.array_equal(got[1], public[1])
    monkeypatch.setattr(config, "EXACT_SMALL_FLOPS", 0.0)
    rows = ExactEvaluator(inputs, d, m, bias=bias)
    ref = rows.loss_grad(W, b)
    assert got[0] == pytest.approx(ref[0], rel=1e-12)
    np.testing.assert_allclose(got[1], ref[1], rtol=0, atol=1e-12 * np.abs(ref[1]).max())
    if bias:
        np.testing.assert_allclose(got[2], ref[2], rtol=0, atol=1e-12 * np.abs(ref[2]).max())
    assert small.loss_and_gain(W, b) == pytest.approx(rows.loss_and_gain(W, b), rel=1e-12)
