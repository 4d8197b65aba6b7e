"""The chunked Bernoulli sampler of training draws the samples of ``fastsuper.sample``."""

from __future__ import annotations

import numpy as np
import pytest
from checks import assert_fit_same_on_any_thread_count

import fastsuper as fs
from fastsuper.core.bundles import borrowed_law, input_law
from fastsuper.core.jit import njit
from fastsuper.core.laws import (
    GAP_CHUNK,
    LOG2_POLY,
    LOG2_POLY_ERROR,
    VALUE_BASE,
    chunked_bernoulli,
    draw_active,
    draw_bernoulli_chunked,
)
from fastsuper.core.rng import counter_hash, hashed_uniform, sample_key, seed_key, uniform
from fastsuper.train.kernels_cpu import counter_tables, draw_gaps_hashed


@njit
def _mismatches(law, skey, n_samples, idx, idx2):
    """(samples whose chunked active set, plain or with tabulated counter hashes, differs from
    draw_active's, active features drawn)."""
    blaw = borrowed_law(law)
    gh = counter_tables(law.n)[1]
    ubuf = np.empty(GAP_CHUNK)
    ubits = ubuf.view(np.int64)
    gbuf = np.empty(GAP_CHUNK, dtype=np.int64)
    bad = 0
    total = 0
    for s in range(n_samples):
        key = sample_key(skey, s)
        k = draw_active(key, blaw, idx, 0)
        k2 = draw_bernoulli_chunked(key, blaw, idx2, 0, ubuf, ubits, gbuf)
        same = k == k2
        for q in range(min(k, k2)):
            same = same and idx[q] == idx2[q]
        k3 = draw_gaps_hashed(key, blaw, idx2, 0, ubuf, ubits, gbuf, gh)
        same = same and k == k3
        for q in range(min(k, k3)):
            same = same and idx[q] == idx2[q]
        bad += not same
        total += k
    return bad, total


@pytest.mark.parametrize("n", [1, 5, 100, 401])
@pytest.mark.parametrize("p", [0.999, 0.9, 0.37, 0.02, 1e-4, 1e-9])
def test_chunked_active_sets_are_draw_active_bit_for_bit(n, p):
    inputs = fs.SparseInputs(n, p=p, values="uniform")
    law = input_law(inputs, gaps=True)
    assert chunked_bernoulli(law)
    idx, idx2 = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)
    skey = np.uint64(seed_key(np.uint64(11)))
    bad, total = _mismatches(law, skey, 20_000, idx, idx2)
    assert bad == 0
    assert total == pytest.approx(20_000 * n * p, rel=0.1, abs=10)


@njit
def _hashed_vs_plain(skey, n_samples, n):
    """Draws where the tabulated counter hashes of counter_tables(n) give another uniform."""
    vh, gh = counter_tables(n)
    bad = 0
    for s in range(n_samples):
        key = sample_key(skey, s)
        for a in range(n):
            bad += hashed_uniform(key, vh[a]) != uniform(key, VALUE_BASE + 2 * a)
        for c in range(gh.shape[0]):
            bad += hashed_uniform(key, gh[c]) != uniform(key, c)
            bad += hashed_uniform(key, counter_hash(c)) != uniform(key, c)
    return bad


def test_tabulated_counter_hashes_give_the_same_uniforms():
    assert _hashed_vs_plain(np.uint64(seed_key(np.uint64(5))), 200, 37) == 0


def test_log2_polynomial_error_is_within_its_bound():
    f = np.linspace(0.0, 1.0, 1_000_001)
    err = np.abs(np.polynomial.polynomial.polyval(f, np.array(LOG2_POLY)) - np.log2(1.0 + f))
    assert err.max() < LOG2_POLY_ERROR / 2


def test_chunked_law_conditions():
    assert not chunked_bernoulli(input_law(fs.SparseInputs(10, p=1.0), gaps=True))
    assert not chunked_bernoulli(input_law(fs.SparseInputs(10, p=np.linspace(0.1, 0.5, 10))))
    assert not chunked_bernoulli(input_law(fs.SparseInputs(10, k=3)))


def test_fit_with_chunked_sampler_same_for_any_thread_count(set_numba_threads):
    """BLAS sub-batches with chunked active sets (n p >= 2) and without (n p < 2)."""
    kw = dict(n_instances=3, p=[0.5, 0.1, 0.01], steps=4, batch_size=200, seed=3, log_every=1)
    assert_fit_same_on_any_thread_count(set_numba_threads, 100, 20, **kw)
