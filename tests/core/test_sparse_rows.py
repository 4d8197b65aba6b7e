"""The sparse-row loops of training (fastsuper.core.sparse_rows) against plain NumPy."""

from __future__ import annotations

import numpy as np
import pytest

from fastsuper.core import sparse_rows
from fastsuper.core.sparse_rows import (
    BLOCK_VECTORS,
    SCATTER_VECTORS,
    compact_rows,
    gather_rows,
    lanes,
    padded_columns,
    scatter_rows,
)

DTYPES = [np.float64, np.float32]
#: relative tolerance of a sum of products against the float64 reference
RTOL = {np.float64: 1e-13, np.float32: 2e-6}


def _sparse_rows(rng, rows, n, p, dtype):
    """Dense rows with about ``p n`` nonzero U(0, 1] entries each (some rows empty)."""
    X = np.where(rng.random((rows, n)) < p, 1.0 - rng.random((rows, n)), 0.0).astype(dtype)
    X[rows // 3] = 0.0  # an empty row
    return X


def _csr_places(X):
    """``(ptr, idx)`` of the nonzero entries of ``X``'s rows, by np.nonzero."""
    ptr = np.zeros(X.shape[0] + 1, dtype=np.int64)
    idx = []
    for row in range(X.shape[0]):
        nz = np.nonzero(X[row])[0]
        idx.extend(nz)
        ptr[row + 1] = len(idx)
    return ptr, np.asarray(idx, dtype=np.int64)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 7, 8, 20, 100, 131])
def test_compact_rows_lists_the_nonzero_places(dtype, n):
    rng = np.random.default_rng(n)
    X = _sparse_rows(rng, 37, n, 0.3, dtype)
    X[5, n // 2] = np.nan  # counts as nonzero
    X[6] = 1.0  # a full row
    count = 31  # rows after it are not listed
    ptr_ref, idx_ref = _csr_places(X[:count])
    for form in (sparse_rows._compact_serial, sparse_rows._compact_compressed):
        if form is sparse_rows._compact_compressed and not sparse_rows.COMPRESS:
            continue  # AVX-512 only
        ptr = np.full(40, -7, dtype=np.int64)
        idx = np.full(37 * n + 8, -7, dtype=np.int64)
        form(X, count, ptr, idx)
        assert np.array_equal(ptr[: count + 1], ptr_ref)
        assert np.array_equal(idx[: ptr_ref[-1]], idx_ref)
        assert np.all(ptr[count + 1 :] == -7)
    assert compact_rows is (
        sparse_rows._compact_compressed if sparse_rows.COMPRESS else sparse_rows._compact_serial
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("d", [1, 3, 4, 5, 8, 9, 20, 33, 70, 150])
def test_gather_rows_is_x_times_m(dtype, d):
    """``H[:count, :d] = X M`` in every block of columns, the rest of ``H`` untouched."""
    rng = np.random.default_rng(d)
    n, rows, count = 45, 29, 26
    X = _sparse_rows(rng, rows, n, 0.35, dtype)
    ptr, idx = _csr_places(X)
    M = rng.standard_normal((n, d))
    Mp = np.zeros((n, padded_columns(d, np.dtype(dtype).itemsize)), dtype=dtype)
    Mp[:, :d] = M
    H = np.full((rows, d + 2), 5.0, dtype=dtype)  # wider than d: columns d, d+1 untouched
    gather_rows(ptr, idx, X, Mp, H, count, d)
    ref = X[:count].astype(np.float64) @ Mp[:, :d].astype(np.float64)
    scale = np.abs(X[:count]).astype(np.float64) @ np.abs(Mp[:, :d]).astype(np.float64)
    assert np.all(np.abs(H[:count, :d] - ref) <= RTOL[dtype] * scale + 1e-300)
    assert np.all(H[:count, d:] == 5.0) and np.all(H[count:] == 5.0)
    assert np.all(H[rows // 3, :d] == 0.0)  # the empty row


def test_gather_rows_sums_even_and_odd_places_in_order():
    """The two chains of a row, each in the order of its entries, then their sum (float64:
    each fused multiply-add rounded once, as the exact rational result rounded)."""
    dtype = np.float64
    rng = np.random.default_rng(3)
    n, d = 12, 5
    X = np.zeros((1, n), dtype=dtype)
    X[0, [0, 2, 3, 7, 8, 11]] = rng.random(6)
    ptr, idx = _csr_places(X)
    M = np.zeros((n, padded_columns(d, np.dtype(dtype).itemsize)), dtype=dtype)
    M[:, :d] = rng.standard_normal((n, d))
    H = np.empty((1, d), dtype=dtype)
    gather_rows(ptr, idx, X, M, H, 1, d)
    even = np.zeros(d, dtype=dtype)
    odd = np.zeros(d, dtype=dtype)
    for e, i in enumerate(idx):
        if e % 2 == 0:
            even = _fma(X[0, i], M[i, :d], even)
        else:
            odd = _fma(X[0, i], M[i, :d], odd)
    assert np.array_equal(H[0], even + odd)


def _fma(x, m, acc):
    """``x m + acc`` (float64) rounded once, by exact rational arithmetic."""
    from fractions import Fraction

    fx = Fraction(float(x))
    return np.array([float(fx * Fraction(float(mi)) + Fraction(float(a))) for mi, a in zip(m, acc)])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("d", [1, 3, 8, 20, 33, 70, 150, 300])
def test_scatter_rows_adds_x_transposed_times_u(dtype, d):
    """``T += X^T U`` on the first ``d`` columns; the padding columns stay zero."""
    rng = np.random.default_rng(100 + d)
    n, rows, count = 45, 29, 26
    X = _sparse_rows(rng, rows, n, 0.35, dtype)
    ptr, idx = _csr_places(X)
    U = rng.standard_normal((rows, d)).astype(dtype)
    width = padded_columns(d, np.dtype(dtype).itemsize)
    T0 = np.zeros((n, width), dtype=dtype)
    T0[:, :d] = rng.standard_normal((n, d))
    T = T0.copy()
    scatter_rows(ptr, idx, X, U, T, count, d)
    X64, U64 = X[:count].astype(np.float64), U[:count].astype(np.float64)
    ref = T0[:, :d].astype(np.float64) + X64.T @ U64
    scale = np.abs(T0[:, :d]).astype(np.float64) + np.abs(X64).T @ np.abs(U64)
    assert np.all(np.abs(T[:, :d] - ref) <= RTOL[dtype] * scale)
    assert np.all(T[:, d:] == 0.0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_padded_columns_and_lanes(dtype):
    size = np.dtype(dtype).itemsize
    w = lanes(size)
    assert w * size == 32
    for d in range(1, 80):
        D = padded_columns(d, size)
        assert D % w == 0 and d <= D < d + w
    assert BLOCK_VECTORS * w >= 32 and SCATTER_VECTORS * w >= 128
