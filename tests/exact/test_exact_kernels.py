"""The exact-loss CPU kernels against dense NumPy."""

from __future__ import annotations

import numba
import numpy as np
import pytest
from naive import grad_w_numpy, power_sums_numpy

from fastsuper import testing as T

ROWS_PER_ITEM = T.config.EXACT_ROWS_PER_ITEM


def _gamma_problem(n, d, seed, R=7):
    """W, A = W^T W with a zero diagonal, and random coef, c (R + 1 rows), g_diag."""
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(d, n)) / np.sqrt(d)
    A = W.T @ W
    np.fill_diagonal(A, 0.0)
    return W, A, rng.normal(size=(R + 1, n)), rng.normal(size=(R + 1, n)), rng.normal(size=n)


@pytest.mark.parametrize("n", [1, 5, ROWS_PER_ITEM + 3])
def test_power_sums_match_numpy_and_skip_the_diagonal(n):
    rng = np.random.default_rng(n)
    A = rng.normal(size=(n, n))  # not symmetric; diagonal non-zero: it must be skipped
    c = rng.normal(size=(7, n))
    got = T.exact_power_sums(A, c)
    ref = power_sums_numpy(A, c)
    assert got.shape == (7, n)
    np.testing.assert_array_equal(got[0], 0.0)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12 * np.abs(ref).max())


@pytest.mark.parametrize(
    "orders",
    [
        [6, 4, 2],  # symmetric laws: steps of 2, last factor A
        [6, 5, 4, 3, 2, 1],  # steps of 1, no last factor
        [7, 4],  # a step of 3, last factor A**3
        [2],  # one order
        [],  # no non-zero cumulant: Gamma is its diagonal
    ],
)
def test_grad_w_matches_stored_gamma(orders):
    W, A, coef, c, g_diag = _gamma_problem(ROWS_PER_ITEM * 2 + 5, 4, 1)
    got = T.exact_grad_w(A, W, coef, c, np.array(orders, dtype=np.int64), g_diag)
    ref = grad_w_numpy(A, W, coef, c, orders, g_diag)
    np.testing.assert_allclose(got, ref, rtol=1e-11, atol=1e-12 * np.abs(ref).max())


def test_exact_kernels_do_not_depend_on_the_thread_count():
    W, A, coef, c, g_diag = _gamma_problem(3 * ROWS_PER_ITEM + 1, 3, 5, R=6)
    orders = np.array([6, 4, 2], dtype=np.int64)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = (T.exact_power_sums(A, c), T.exact_grad_w(A, W, coef, c, orders, g_diag))
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        two = (T.exact_power_sums(A, c), T.exact_grad_w(A, W, coef, c, orders, g_diag))
    finally:
        numba.set_num_threads(before)
    for x, y in zip(one, two):
        np.testing.assert_array_equal(x, y)
