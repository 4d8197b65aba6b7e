"""The dense sampler (many samples at once, counter by counter): fastsuper.sample's numbers."""

from __future__ import annotations

import numpy as np
import pytest

import fastsuper as fs
from fastsuper.core import config
from fastsuper.core.bundles import input_law
from fastsuper.core.jit import njit
from fastsuper.core.laws import dense_sampling, sample_dense
from fastsuper.core.rng import counter_hash, hashed_uniform, seed_key, uniform

VALUES = {
    "uniform": "uniform",
    "gaussian": "gaussian",
    "constant": "constant",
    "rademacher": "rademacher",
    "uniform_sym": "uniform_sym",
    "discrete": fs.ValueLaw("discrete", support=[-1.0, 0.5, 2.0], probs=[0.2, 0.3, 0.5]),
}


def _reference(inputs, n_samples, seed, start):
    return fs.sample(inputs, n_samples, seed=seed, start=start).to_dense()


def _same_bits(a, b):
    return a.shape == b.shape and np.array_equal(a.view(np.int64), b.view(np.int64))


@pytest.mark.parametrize("n", [1, 2, 5, 8])
@pytest.mark.parametrize("p", [0.0, 0.02, 0.3, 0.9, 1.0])
@pytest.mark.parametrize("nonempty", [False, True])
def test_dense_samples_are_the_samples_of_sample(n, p, nonempty):
    inputs = fs.SparseInputs(n, p=p, values="uniform")
    law = input_law(inputs, gaps=True)
    ref = _reference(inputs, 1500, 7, 11)
    for width in (64, 13, 1):
        assert _same_bits(sample_dense(7, 11, 1500, law, width, nonempty), ref)


@pytest.mark.parametrize("p", [1e-12, 0.999999])
def test_dense_samples_at_extreme_p(p):
    # thresholds all near 1 (bands that overlap) or falling fast to 0; the samples with an
    # active feature, drawn further only while they have not ended
    inputs = fs.SparseInputs(5, p=p, values="uniform")
    law = input_law(inputs, gaps=True)
    ref = _reference(inputs, 3000, 2, 5)
    for nonempty in (False, True):
        assert _same_bits(sample_dense(2, 5, 3000, law, 64, nonempty), ref)


@pytest.mark.parametrize("values", list(VALUES))
@pytest.mark.parametrize("nonempty", [False, True])
def test_dense_samples_of_every_value_law(values, nonempty):
    for p in (0.2, 1.0):
        inputs = fs.SparseInputs(6, p=p, values=VALUES[values])
        law = input_law(inputs, gaps=True)
        got = sample_dense(3, 0, 2000, law, 64, nonempty)
        assert _same_bits(got, _reference(inputs, 2000, 3, 0))


def test_dense_gaps_near_a_threshold_are_decided_by_the_formula():
    # wider (still valid) bands around the thresholds: many uniforms fall inside one
    # and take the logarithm's way; the samples must not change
    inputs = fs.SparseInputs(5, p=0.4)
    law = input_law(inputs, gaps=True)
    t = (law.tlo + law.thi) / 2
    wide = law._replace(tlo=t * 0.8, thi=t * 1.25)
    ref = _reference(inputs, 3000, 5, 0)
    for nonempty in (False, True):
        assert _same_bits(sample_dense(5, 0, 3000, wide, 64, nonempty), ref)


def test_dense_sampling_covers_independent_features_with_one_p_only():
    n_max = config.DENSE_N_MAX
    assert dense_sampling(input_law(fs.SparseInputs(5, p=0.1), gaps=True))
    assert dense_sampling(input_law(fs.SparseInputs(n_max, p=0.1), gaps=True))
    assert not dense_sampling(input_law(fs.SparseInputs(n_max + 1, p=0.1), gaps=True))
    assert not dense_sampling(input_law(fs.SparseInputs(5, p=0.1)))  # no gap tables
    assert not dense_sampling(input_law(fs.SparseInputs(5, p=[0.1, 0.2, 0.1, 0.1, 0.1]), gaps=True))
    assert not dense_sampling(input_law(fs.SparseInputs(5, k=2), gaps=True))
    grouped = fs.SparseInputs(6, p=0.1, groups=[[0, 1], [2, 3, 4]], q=0.2)
    assert not dense_sampling(input_law(grouped, gaps=True))


@njit
def _words_agree(key, counters):
    for c in counters:
        if hashed_uniform(key, counter_hash(c)) != uniform(key, c):
            return False
    return True


def test_counter_hashs_give_the_same_uniforms():
    counters = np.array([0, 1, 7, 2**40, 2**40 + 9, 2**62], dtype=np.int64)
    for seed in (0, 1, 12345):
        assert _words_agree(seed_key(seed), counters)
