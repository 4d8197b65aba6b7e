"""Pieces of the BLAS sub-batch path of training (fastsuper.train.kernels_cpu.run_grad_blas)."""

from __future__ import annotations

import numpy as np
import pytest
from checks import assert_fit_same_on_any_thread_count

import fastsuper as fs
from fastsuper.core import config
from fastsuper.core.bundles import borrowed_law, input_law
from fastsuper.core.jit import njit
from fastsuper.core.laws import GAP_CHUNK
from fastsuper.core.rng import hashed_uniform, sample_key, seed_key
from fastsuper.train.kernels_cpu import (
    BLAS_ALIGN,
    WIDE_GAPS,
    aligned_zeros,
    all_finite,
    blas_width,
    counter_tables,
    draw_row_hashed,
    draw_rows_wide,
    wide_first_chunk,
)


@njit
def _rows_one_by_one(law, skey, first, count, X):
    """The rows of draw_row_hashed, one at a time (every feature active: the value uniforms)."""
    blaw = borrowed_law(law)
    vh, gh = counter_tables(law.n)
    ubuf = np.empty(GAP_CHUNK)
    ubits = ubuf.view(np.int64)
    gbuf = np.empty(GAP_CHUNK, dtype=np.int64)
    vbuf = np.empty(GAP_CHUNK)
    for row in range(count):
        key = sample_key(skey, first + row)
        if law.pmax >= 1.0:
            for a in range(law.n):
                X[row, a] = hashed_uniform(key, vh[a])
        else:
            draw_row_hashed(key, blaw, X, row, ubuf, ubits, gbuf, vbuf, gh, vh)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("room", ["wide_gaps", "row"])
@pytest.mark.parametrize(
    "n,p",
    [(5, 1.0), (100, 1.0), (100, 0.9), (100, 0.6), (401, 0.3), (64, 0.99), (100, 0.12),
     (40, 0.5), (7, 0.3)],
)  # fmt: skip
def test_wide_rows_are_the_samples_of_fastsuper_sample(n, p, dtype, room):
    """draw_rows_wide: the rows of draw_row_hashed and of fastsuper.sample, bit for bit.

    With chunk buffers of :data:`WIDE_GAPS` (the first chunk no wider) and of
    the row's length rounded up (what training allocates: the first chunk as
    :func:`wide_first_chunk` says, up to every counter of the tables).
    """
    inputs = fs.SparseInputs(n, p=p, values="uniform")
    law = input_law(inputs, gaps=True)
    seed, first, count = 7, 300, 37
    skey = np.uint64(seed_key(np.uint64(seed)))
    vh, gh = counter_tables(n)
    m = WIDE_GAPS if room == "wide_gaps" else max(WIDE_GAPS, (n + 1 + 7) // 8 * 8)
    Xf = np.zeros(count * n + 1, dtype=dtype)
    draw_rows_wide(skey, first, count, law, Xf, np.empty(m),
                   np.empty(m, dtype=np.int64), np.empty(m), vh, gh)  # fmt: skip
    assert Xf[-1] == 0  # the spill entry is left zero
    X = Xf[:-1].reshape(count, n)
    ref = np.zeros((count, n), dtype=dtype)
    _rows_one_by_one(law, skey, first, count, ref)
    assert np.array_equal(X, ref)
    dense = fs.sample(inputs, count, seed, start=first).to_dense()
    assert np.array_equal(X, dense.astype(dtype))


@pytest.mark.parametrize(
    "n,p,room,width",
    [
        (100, 0.647, 104, 72),  # 65.7 gaps expected, sd/2 = 2.4: 68.1 -> 72
        (100, 0.419, 104, 48),  # 42.9 + 2.5
        (100, 0.271, 104, 32),  # 28.1 + 2.2
        (100, 0.113, 104, 16),  # 12.3 + 1.6
        (100, 0.01, 104, 16),  # never under WIDE_GAPS // 2
        (100, 0.999, 104, 104),  # at most n + 1, rounded up: every counter is in the tables
        (100, 0.647, 32, 32),  # at most the buffers' length
        (1000, 0.5, 2000, 512),  # 501 + 7.9
    ],
)
def test_wide_first_chunk(n, p, room, width):
    """The expected gaps of a row plus half their sd, up to a multiple of 8, within bounds."""
    assert wide_first_chunk(n, p, room) == width


def test_float32_fit_same_for_any_thread_count(set_numba_threads):
    """float32 fit with wide rows (p = 1, 0.6) and chunked and sparse ones: any thread count."""
    kw = dict(n_instances=4, p=[1.0, 0.6, 0.1, 0.02], steps=3, batch_size=300, seed=3,
              log_every=1, dtype=np.float32)  # fmt: skip
    assert_fit_same_on_any_thread_count(set_numba_threads, 100, 20, **kw)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_all_finite_sees_inf_and_nan(dtype):
    """The divergence checks of the Adam kernel (gradient sums, the dense path's guard)."""
    x = np.ones((3, 5), dtype=dtype)
    assert all_finite(x)
    x[1, 2] = np.finfo(dtype).max
    assert all_finite(x)
    for bad in (np.inf, -np.inf, np.nan):
        y = x.copy()
        y[2, 4] = bad
        assert not all_finite(y)


@pytest.mark.parametrize(
    "d,n,itemsize,width",
    [
        (30, 400, 8, 32),  # two zero columns: rows of 256 bytes
        (30, 400, 4, 32),
        (62, 256, 8, 64),
        (15, 512, 8, 16),
        (20, 400, 8, 20),  # four more columns would be more than d / 8
        (12, 300, 4, 12),
        (32, 400, 8, 32),
        (30, config.TRAIN_PAD_FROM - 1, 8, 30),  # fewer features: never padded
    ],
)
def test_blas_width(d, n, itemsize, width):
    assert blas_width(d, n, itemsize) == width


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("size", [1, 7, 1000])
def test_aligned_zeros(dtype, size):
    for _ in range(5):
        a = aligned_zeros(size, np.empty(1, dtype=dtype))
        assert a.shape == (size,) and a.dtype == dtype and a.flags.c_contiguous
        assert a.ctypes.data % BLAS_ALIGN == 0
        assert not a.any()
