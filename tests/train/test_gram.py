"""Training in the Gram space (fastsuper.train.kernels_cpu.gram_weights, gram_gradient and
run_grad_blas with ``gram``; the instances fastsuper.train.adam._gram_instances picks)."""

from __future__ import annotations

import numpy as np
import pytest
from checks import assert_fit_same_on_any_thread_count

import fastsuper as fs
from fastsuper.core import config
from fastsuper.core.sparse_rows import padded_columns
from fastsuper.train.adam import _gram_instances
from fastsuper.train.kernels_cpu import _blas_scratch, gram_gradient, gram_weights

# the scratch of _blas_scratch: Mg, Sg, S64 at 23 to 25
MG, SG, S64 = 23, 24, 25


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("d,n", [(20, 100), (7, 13), (30, 64)])
def test_gram_weights_is_w_transpose_w_padded(d, n, dtype):
    """``M = W^T W`` in the compute dtype with zero padding; the sums start at zero."""
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
    assert not work[SG].any() and not work[S64].any()


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
