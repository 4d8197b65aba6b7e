"""Sampler: statistics against the input law, and bitwise determinism."""

import math

import numba
import numpy as np
import pytest
from checks import chi2_pvalue
from scipy import stats

import fastsuper as fs

LAWS = ["gaussian", "rademacher", "uniform_sym", "uniform", "constant"]


@pytest.mark.parametrize("n,p", [(50, 0.1), (1000, 1e-3), (20, 0.9), (7, 0.5)])
def test_active_counts_are_binomial(n, p):
    N = 40_000
    batch = fs.sample(fs.SparseInputs(n, p=p, values="rademacher"), N, seed=11)
    counts = batch.counts()
    expected = stats.binom.pmf(np.arange(n + 1), n, p) * N
    observed = np.bincount(counts, minlength=n + 1)
    assert chi2_pvalue(observed, expected) > 1e-4


@pytest.mark.parametrize("n,p", [(50, 0.1), (1000, 1e-2)])
def test_indices_uniform_sorted_unique(n, p):
    batch = fs.sample(fs.SparseInputs(n, p=p), 30_000, seed=3)
    occ = np.bincount(batch.indices, minlength=n)
    assert chi2_pvalue(occ, np.full(n, occ.mean())) > 1e-4
    for s in range(0, 30_000, 997):
        idx = batch.indices[batch.indptr[s] : batch.indptr[s + 1]]
        assert np.all(np.diff(idx) > 0)
        assert idx.size == 0 or (idx[0] >= 0 and idx[-1] < n)


def test_per_feature_p_marginals():
    n, N = 40, 50_000
    p = np.linspace(0.0, 1.0, n) ** 2
    dense = fs.sample(fs.SparseInputs(n, p=p, values="uniform"), N, seed=5).to_dense()
    freq = (dense != 0).mean(axis=0)
    se = np.sqrt(np.maximum(p * (1 - p), 1e-12) / N)
    assert np.all(np.abs(freq - p) < 5 * se + 1e-12)
    assert freq[0] == 0.0 and freq[-1] == 1.0
    # independence of two features: joint activity = product
    both = ((dense[:, 20] != 0) & (dense[:, 30] != 0)).mean()
    pj = p[20] * p[30]
    assert abs(both - pj) < 5 * math.sqrt(pj * (1 - pj) / N)


def test_exactly_k_pattern():
    n, k, N = 30, 4, 30_000
    batch = fs.sample(fs.SparseInputs(n, k=k, values="rademacher"), N, seed=2)
    assert np.all(batch.counts() == k)
    occ = np.bincount(batch.indices, minlength=n)
    assert chi2_pvalue(occ, np.full(n, N * k / n)) > 1e-4
    # a uniform k-subset: P(0 and 1 both active) = k(k-1)/(n(n-1))
    dense = batch.to_dense() != 0
    pj = k * (k - 1) / (n * (n - 1))
    assert abs((dense[:, 0] & dense[:, 1]).mean() - pj) < 5 * math.sqrt(pj * (1 - pj) / N)
    assert np.all(fs.sample(fs.SparseInputs(5, k=5), 10).counts() == 5)
    assert fs.sample(fs.SparseInputs(5, k=0), 10).indices.size == 0


@pytest.mark.parametrize("law", LAWS)
def test_value_moments(law):
    inputs = fs.SparseInputs(20, p=0.5, values=law)
    vals = fs.sample(inputs, 40_000, seed=9).values
    N = vals.size
    for r in (1, 2, 3, 4):
        mu_r, mu_2r = inputs.moment(r), inputs.moment(2 * r)
        se = math.sqrt(max(mu_2r - mu_r**2, 0.0) / N)
        assert abs(np.mean(vals**r) - mu_r) <= 5 * se + 1e-12, (law, r)


def test_value_distributions():
    for law, cdf in [
        ("gaussian", stats.norm.cdf),
        ("uniform", stats.uniform(0, 1).cdf),
        ("uniform_sym", stats.uniform(-1, 2).cdf),
    ]:
        vals = fs.sample(fs.SparseInputs(10, p=0.5, values=law), 20_000, seed=4).values
        assert stats.kstest(vals, cdf).pvalue > 1e-4, law
    support, probs = np.array([-1.5, 0.25, 3.0]), np.array([0.2, 0.5, 0.3])
    inputs = fs.SparseInputs(10, p=0.5, support=support, probs=probs)
    vals = fs.sample(inputs, 20_000, seed=4).values
    observed = [(vals == s).sum() for s in support]
    assert sum(observed) == vals.size
    assert chi2_pvalue(observed, probs * vals.size) > 1e-4
    assert inputs.moment(3) == pytest.approx(float(np.dot(probs, support**3)), rel=1e-15)


def test_moments_table():
    assert fs.ValueLaw("gaussian").moment(6) == 15.0
    assert fs.ValueLaw("gaussian").moment(5) == 0.0
    assert fs.ValueLaw("uniform_sym").moment(4) == pytest.approx(0.2)
    assert fs.ValueLaw("uniform").moment(3) == pytest.approx(0.25)
    assert fs.ValueLaw("rademacher").moment(7) == 0.0
    assert fs.ValueLaw("constant").moment(7) == 1.0


@pytest.mark.parametrize("kw", [dict(p=0.05), dict(p=np.linspace(0, 0.3, 64)), dict(k=5)])
def test_bitwise_determinism_threads_chunks_start(kw, set_numba_threads):
    inputs = fs.SparseInputs(64, values="gaussian", **kw)
    set_numba_threads(1)
    one = fs.sample(inputs, 5000, seed=123)
    set_numba_threads(min(2, numba.config.NUMBA_NUM_THREADS))
    two = fs.sample(inputs, 5000, seed=123, chunk_size=7)
    for name in ("indptr", "indices", "values"):
        assert np.array_equal(getattr(one, name), getattr(two, name)), name
    tail = fs.sample(inputs, 2000, seed=123, start=3000, chunk_size=333)
    off = one.indptr[3000]
    assert np.array_equal(tail.indices, one.indices[off:])
    assert np.array_equal(tail.values, one.values[off:])
    other = fs.sample(inputs, 5000, seed=124)
    assert not np.array_equal(other.values[:50], one.values[:50])


def test_float32_values_and_dense():
    inputs = fs.SparseInputs(16, p=0.3, values="gaussian")
    b64 = fs.sample(inputs, 100, seed=1)
    b32 = fs.sample(inputs, 100, seed=1, dtype=np.float32)
    assert b32.values.dtype == np.float32
    assert np.array_equal(b32.values, b64.values.astype(np.float32))
    dense = b64.to_dense()
    assert dense.shape == (100, 16) and np.count_nonzero(dense) == b64.indices.size


@pytest.mark.parametrize(
    "bad,match",
    [
        (dict(n=0, p=0.1), "n must be an integer >= 1"),
        (dict(n=5, p=1.5), r"p must lie in \[0, 1\]; p\[0\] = 1.5"),
        (dict(n=5, p=-0.1), r"p must lie in \[0, 1\]"),
        (dict(n=5, p=float("nan")), r"p must lie in \[0, 1\]"),
        (dict(n=3, p=[0.1, 0.2]), r"p must be a scalar or have shape \(3,\)"),
        (dict(n=5, p=0.1, values="cauchy"), "values must be one of"),
        (
            dict(n=5, p=0.1, importance=[1, 1, 1, 1, 0.0]),
            r"importance must be > 0; importance\[4\]",
        ),
        (dict(n=5, p=0.1, importance=[1.0, 2.0]), "importance has shape"),
        (dict(n=5, p=0.1, importance=[1, 1, 1, 1, np.inf]), "importance must be finite"),
        (dict(n=5), "give p"),
        (dict(n=5, p=0.1, k=2), "either p or k"),
        (dict(n=5, k=6), r"k must be in \[0, n=5\]"),
        (dict(n=5, p=0.1, support=[1.0, 2.0], probs=[0.5, 0.6]), "sum to 1"),
        (dict(n=5, p=0.1, support=[1.0, 2.0], probs=[1.0]), "equal length"),
    ],
)
def test_bad_inputs(bad, match):
    with pytest.raises((ValueError, TypeError), match=match):
        fs.SparseInputs(**bad)


def test_bad_sample_arguments():
    inputs = fs.SparseInputs(5, p=0.1)
    with pytest.raises(ValueError, match="n_samples must be an integer >= 0"):
        fs.sample(inputs, -1)
    with pytest.raises(TypeError, match="seed must be an integer"):
        fs.sample(inputs, 10, seed=1.5)
    with pytest.raises(TypeError, match="inputs must be a SparseInputs"):
        fs.sample("x", 10)
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        fs.sample(inputs, 10, dtype=np.int32)


def test_seed_range():
    """Seeds are 64-bit words or negative int64 values (taken modulo 2**64); a larger or a
    smaller integer would alias another seed and is refused."""
    inputs = fs.SparseInputs(20, p=0.2)
    neg = fs.sample(inputs, 50, seed=-1)
    top = fs.sample(inputs, 50, seed=2**64 - 1)
    np.testing.assert_array_equal(neg.indices, top.indices)
    np.testing.assert_array_equal(neg.values, top.values)
    for bad in (2**64, 2**70, -(2**63) - 1):
        with pytest.raises(ValueError, match=r"seed must be an integer in \[-2\*\*63, 2\*\*64\)"):
            fs.sample(inputs, 10, seed=bad)


def test_huge_batch_is_refused_before_allocating():
    inputs = fs.SparseInputs(50, p=0.1)
    message = r"n_samples = 1000000000000000 .* TiB of memory, more than this machine's memory"
    with pytest.raises(MemoryError, match=message) as info:
        fs.sample(inputs, 10**15)
    assert isinstance(info.value, ValueError)  # a TooLargeError is both


def test_moment_overflow_is_a_clear_error():
    law = fs.ValueLaw("gaussian")
    assert law.moment(300) == float(math.prod(range(299, 0, -2)))
    assert law.moment(401) == 0.0  # odd moments of a symmetric law
    message = r"E xi\*\*302 of ValueLaw\('gaussian'\) overflows float64"
    with pytest.raises(ValueError, match=message):
        law.moment(302)
    big = fs.ValueLaw("discrete", support=[-3.0, 3.0], probs=[0.5, 0.5])
    with pytest.raises(ValueError, match=r"E xi\*\*800 .* overflows float64"):
        big.moment(800)


def test_too_small_p_is_refused_by_the_samplers():
    """Below p = 1e-17 the geometric gaps overflowed int64 and the sampler returned index
    -2**63 (three 'active' features out of two); the samplers refuse it, the closed forms
    take it."""
    tiny = fs.SparseInputs(2, p=1.4419346291879379e-111, values="uniform_sym")
    model = fs.Model(np.eye(2), exponent=3)
    with pytest.raises(ValueError, match="sample: p = 1.44193e-111 is too small to sample"):
        fs.sample(tiny, 5)
    with pytest.raises(ValueError, match="p = 1.44193e-111 is too small to sample"):
        fs.estimate_loss(model, tiny, 1000)
    with pytest.raises(ValueError, match="p = 1e-30 is too small to sample"):
        fs.fit(2, 1, p=1e-30, steps=1)
    assert fs.exact_loss(model, tiny) >= 0
    edge = fs.sample(fs.SparseInputs(3, p=1e-17), 1000, seed=1)
    assert np.all((edge.indices >= 0) & (edge.indices < 3))


def test_huge_feature_count_is_refused_before_allocating():
    with pytest.raises(MemoryError, match=r"SparseInputs: n = 10000000000000 features needs"):
        fs.SparseInputs(10**13, p=0.1)
