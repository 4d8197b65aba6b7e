"""Training in the Gram space (fastsuper.train.kernels_cpu.gram_weights, gram_gradient and
run_grad_blas with ``gram``; the instances fastsuper.train.adam._gram_instances picks)."""

from __future__ import annotations

import numpy as np
import pytest
from checks import assert_fit_same_on_any_thread_count

import fastsuper as fs
from fastsuper.core import config
from fastsuper.core.bundles import activation as activation_bundle
from fastsuper.core.jit import kernel_njit
from fastsuper.core.model import Model
from fastsuper.core.sparse_rows import (
    compact_rows,
    gather_rows,
    gram_relu_rows,
    padded_columns,
    scatter_rows,
)
from fastsuper.train.adam import _gram_instances
from fastsuper.train.kernels_cpu import _blas_scratch, _residual_rows, gram_gradient, gram_weights

# the scratch of _blas_scratch: Mg, Sg, S64 at 23 to 25
MG, SG, S64 = 23, 24, 25


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("d,n", [(20, 100), (7, 13), (30, 64)])
def test_gram_weights_is_w_transpose_w_padded(d, n, dtype):
    """``M = W^T W`` in the compute dtype with zero padding; the sums start at zero (``S64``
    only in float32, where it holds them)."""
    rng = np.random.default_rng([d, n])
    W = rng.normal(size=(d, n)).astype(dtype)
    work = _blas_scratch(W, 16, True)
    work[SG][:] = 5
    work[S64][:] = 5
    gram_weights(W, work)
    Mg = work[MG]
    assert Mg.shape == (n, padded_columns(n, W.itemsize)) and Mg.dtype == dtype
    ref = W.astype(np.float64).T @ W.astype(np.float64)
    tol = 1e-13 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(Mg[:, :n], ref, rtol=0, atol=tol * np.abs(ref).max())
    assert not Mg[:, n:].any()
    assert not work[SG].any()
    if dtype == np.float32:  # the float64 sums of the float32 sub-batch sums
        assert not work[S64].any()
    else:  # unused in float64: left as it was
        assert np.all(work[S64] == 5)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("d,n", [(20, 100), (7, 13)])
def test_gram_gradient_is_w_times_s_plus_s_transpose(d, n, dtype):
    """``gW += W (S + S^T)`` in float64, ``S`` from ``Sg`` (float64) or ``S64`` (float32)."""
    rng = np.random.default_rng([d, n, 1])
    W = rng.normal(size=(d, n)).astype(dtype)
    work = _blas_scratch(W, 16, True)
    gram_weights(W, work)
    S = rng.normal(size=(n, n))
    if dtype == np.float64:
        work[SG][:, :n] = S
    else:
        work[S64][:, :n] = S
    gW0 = rng.normal(size=(d, n))
    gW = gW0.copy()
    gram_gradient(W, work, gW)
    ref = gW0 + W.astype(np.float64) @ (S + S.T)
    np.testing.assert_allclose(gW, ref, rtol=0, atol=1e-13 * np.abs(ref).max())


def test_scratch_without_gram_space_is_empty():
    """Groups without a Gram-space instance allocate no ``n x n`` buffers."""
    W = np.ones((20, 100))
    work = _blas_scratch(W, 16, False)
    assert all(a.size == 0 for a in work[MG:])
    assert all(a.shape[0] == 100 for a in _blas_scratch(W, 16, True)[MG : MG + 5])


def test_gram_instances_rule():
    """Sparse-input BLAS instances with at most TRAIN_GRAM_ACTIVE d active features, where
    the two n x n matrices fit TRAIN_GRAM_BYTES; never on the per-sample code (rows 0)."""
    active = np.array([100.0, 40.0, 15.0, 14.9, 2.0, 15.01])
    dense_x = np.array([True, True, False, False, False, False])
    f64 = np.float64
    assert _gram_instances(100, 20, 128, active, dense_x, f64).tolist() == [
        False, False, True, True, True, False
    ]  # fmt: skip
    assert not _gram_instances(100, 20, 0, active, dense_x, f64).any()
    # n = 200: 640 KiB of float64 matrices (too many), 320 KiB of float32 ones
    assert not _gram_instances(200, 20, 128, active, dense_x, f64).any()
    assert _gram_instances(200, 20, 128, active, dense_x, np.float32)[2:5].all()
    assert not _gram_instances(400, 30, 64, active, dense_x, np.float32).any()


def _fit_kw(dtype):
    return dict(n_instances=3, p=[0.6, 0.1, 0.02], importance=0.9 ** np.arange(100), steps=4,
                batch_size=300, seed=11, log_every=1, dtype=dtype)  # fmt: skip


def test_gram_space_fit_same_for_any_thread_count(set_numba_threads):
    """Instances in the Gram space beside a dense one: the same numbers on 1 and 2 threads."""
    assert_fit_same_on_any_thread_count(set_numba_threads, 100, 20, **_fit_kw(np.float64))


def test_float32_gram_space_close_to_sparse_rows(monkeypatch):
    """float32 in the Gram space against float32 with products and sparse-row loops: the
    same trajectory to float32 round-off (relative 1e-5 over four steps)."""
    kw = _fit_kw(np.float32)
    with_gram = fs.fit(100, 20, **kw)
    monkeypatch.setattr(config, "TRAIN_GRAM_ACTIVE", 0.0)
    without = fs.fit(100, 20, **kw)
    np.testing.assert_array_equal(with_gram.W[0], without.W[0])  # p = 0.6: no Gram space
    for k in (1, 2):
        np.testing.assert_allclose(with_gram.W[k], without.W[k], rtol=0, atol=1e-5)
        np.testing.assert_allclose(with_gram.b[k], without.b[k], rtol=0, atol=1e-5)
        np.testing.assert_allclose(
            with_gram.loss_history[:, k], without.loss_history[:, k], rtol=1e-5
        )
    assert not np.array_equal(with_gram.W[1], without.W[1])  # the other path ran


def _gram_problem(dtype, n, rows=40, p=0.15, seed=0):
    """Sparse rows (one empty, one full), a padded ``M``, bias and ``2 I`` in ``dtype``."""
    rng = np.random.default_rng([n, rows, seed])
    X = np.where(rng.random((rows, n)) < p, 1.0 - rng.random((rows, n)), 0.0).astype(dtype)
    X[rows // 3] = 0.0
    X[rows // 2] = 1.0 - rng.random(n)
    ptr = np.zeros(rows + 1, dtype=np.int64)
    idx = np.zeros(rows * n + 8, dtype=np.int64)
    compact_rows(X, rows, ptr, idx)
    M = np.zeros((n, padded_columns(n, np.dtype(dtype).itemsize)), dtype=dtype)
    M[:, :n] = rng.normal(size=(n, n)) * 0.3
    b = (rng.normal(size=n) * 0.2).astype(dtype)
    imp2 = (2 * 0.9 ** np.arange(n)).astype(dtype)
    return X, ptr, idx, M, b, imp2


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n", [1, 7, 20, 100, 131])
def test_gram_relu_rows_against_numpy(dtype, n):
    """``S += X^T G``, ``gsum += sum_rows G`` and the row losses ``sum_j 2 I_j e_j^2``
    with ``z = X M + b`` (from :func:`gather_rows`), ``e = relu(z) - x``, ``G = 2 I e [z > 0]``;
    the padding columns of ``S`` stay zero."""
    X, ptr, idx, M, b, imp2 = _gram_problem(dtype, n)
    count = X.shape[0] - 3  # later rows untouched
    Z = np.zeros((count, n), dtype=dtype)
    gather_rows(ptr, idx, X, M, Z, count, n)
    z = Z.astype(np.float64) + b
    x = X[:count].astype(np.float64)
    e = np.maximum(z, 0.0) - x
    G = imp2 * e * (z > 0)
    rng = np.random.default_rng(n)
    S0 = np.zeros_like(M)
    S0[:, :n] = rng.normal(size=(n, n))
    gs0 = rng.normal(size=n).astype(dtype)
    S, gsum = S0.copy(), gs0.copy()
    rowloss = np.full(X.shape[0], 0.5)
    gram_relu_rows(ptr, idx, X, M, S, count, n, b, imp2, gsum, rowloss)
    tol = 1e-13 if dtype == np.float64 else 2e-6
    ref = S0[:, :n] + x.T @ G
    scale = np.abs(S0[:, :n]) + np.abs(x).T @ np.abs(G) + 1.0
    assert np.all(np.abs(S[:, :n] - ref) <= tol * scale)
    assert not S[:, n:].any()
    np.testing.assert_allclose(gsum, gs0 + G.sum(axis=0), rtol=0, atol=tol * (np.abs(G).sum() + 1))
    loss = (imp2 * e * e).sum(axis=1)
    np.testing.assert_allclose(rowloss[:count], 0.5 + loss, rtol=tol * 10)
    assert np.all(rowloss[count:] == 0.5)


@kernel_njit
def _gram_in_three_passes(ptr, idx, X, M, Z, S, b, imp, imp2, act, gb, gbs, count, n):
    gather_rows(ptr, idx, X, M, Z, count, n)
    loss = _residual_rows(Z, X, b, imp, imp2, act, count, gb, 0, gbs)[0]
    scatter_rows(ptr, idx, X, Z, S, count, n)
    return loss


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n", [20, 100, 131])
def test_gram_relu_rows_same_as_gather_residual_scatter(dtype, n):
    """The fused rows give the gradient sums of :func:`gather_rows`, the training kernels'
    ReLU residual and :func:`scatter_rows` bit for bit (only the loss is summed in
    another order)."""
    X, ptr, idx, M, b, imp2 = _gram_problem(dtype, n, rows=64, seed=1)
    count = 64
    imp = 0.9 ** np.arange(n)
    act = activation_bundle(Model(np.ones((2, n), dtype), np.zeros(n, dtype), activation="relu"))
    Z = np.zeros((count, n), dtype=dtype)
    S1, gb1, gbs = np.zeros_like(M), np.zeros(n), np.zeros(n, dtype=dtype)
    loss1 = _gram_in_three_passes(ptr, idx, X, M, Z, S1, b, imp, imp2, act, gb1, gbs, count, n)
    S2, rowloss = np.zeros_like(M), np.zeros(count)
    gsum = np.zeros(n, dtype=dtype)
    gram_relu_rows(ptr, idx, X, M, S2, count, n, b, imp2, gsum, rowloss)
    np.testing.assert_array_equal(S2, S1)
    if dtype == np.float64:
        np.testing.assert_array_equal(gsum, gb1)
    else:  # the sub-batch's float32 sums, as the residual keeps them before adding to gb
        np.testing.assert_array_equal(gsum, gbs)
    np.testing.assert_allclose(
        0.5 * rowloss.sum(), loss1, rtol=1e-12 if dtype == np.float64 else 1e-6
    )


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n", [20, 100, 131])
def test_gram_relu_rows_clear_zeroes_the_listed_entries_only(dtype, n):
    """With ``clear`` the sums are those without it, bit for bit (the entries are zeroed
    only in a row's last pass over the column blocks), the first ``count`` rows of ``X``
    are zero on return and the rows after them untouched."""
    X, ptr, idx, M, b, imp2 = _gram_problem(dtype, n, rows=40, p=0.3, seed=3)
    count = 37
    out = {}
    for clear in (False, True):
        Xc = X.copy()
        S, gsum, rowloss = np.zeros_like(M), np.zeros(n, dtype=dtype), np.zeros(count)
        gram_relu_rows(ptr, idx, Xc, M, S, count, n, b, imp2, gsum, rowloss, clear)
        out[clear] = (S, gsum, rowloss, Xc)
    for a, c in zip(out[False][:3], out[True][:3]):
        np.testing.assert_array_equal(a, c)
    np.testing.assert_array_equal(out[False][3], X)
    assert X[:count].any()
    assert not out[True][3][:count].any()
    np.testing.assert_array_equal(out[True][3][count:], X[count:])


def test_gram_relu_rows_non_finite_z_gives_a_non_finite_row_loss():
    """A row whose ``z`` overflows (an infinite entry of ``M``) has a non-finite loss; the
    other rows' losses stay finite."""
    X, ptr, idx, M, b, imp2 = _gram_problem(np.float64, 20, rows=8, p=0.5, seed=2)
    row = 5
    i = idx[ptr[row]]
    M[i, 3] = np.inf
    hit = [r for r in range(8) if i in idx[ptr[r] : ptr[r + 1]]]
    S, gsum, rowloss = np.zeros_like(M), np.zeros(20), np.zeros(8)
    gram_relu_rows(ptr, idx, X, M, S, 8, 20, b, imp2, gsum, rowloss)
    assert not np.isfinite(rowloss[hit]).any()
    assert np.isfinite(np.delete(rowloss, hit)).all()


def test_gram_relu_rows_rejects_mixed_dtypes():
    """The arrays must share one float dtype (the row losses float64): a typing error, not
    a reinterpretation of the bytes."""
    X, ptr, idx, M, b, imp2 = _gram_problem(np.float32, 20, rows=4)
    with pytest.raises(Exception, match="gram_relu"):
        gram_relu_rows(ptr, idx, X, M, np.zeros_like(M), 4, 20, b.astype(np.float64), imp2,
                       np.zeros(20, np.float32), np.zeros(4))  # fmt: skip
