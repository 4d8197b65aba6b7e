"""Grouped input laws: the group spec, and the sampler against the law (THEORY §8)."""

import numba
import numpy as np
import pytest
from checks import chi2_pvalue
from naive import grouped_patterns as pattern_probs
from scipy import stats

import fastsuper as fs


def mixed_law(values="rademacher"):
    """Interleaved groups of every kind, and two ungrouped features."""
    return fs.SparseInputs(
        9, p=[0.3] * 9, values=values,
        groups=[0, 1, 2, 0, 1, -1, 2, 2, -1],
        kind=["correlated", "exclusive", "partial"], q=[0.4, 0.5, 0.6],
        weights=[1, 1, 1, 1, 3, 1, 1, 1, 1], r=[1, 1, 0.5, 1, 1, 1, 0.25, 1.0, 1],
    )  # fmt: skip


# ---------------------------------------------------------------- the spec


def test_labels_and_lists_give_the_same_law():
    a = fs.SparseInputs(6, p=0.1, groups=[0, 0, -1, 1, 1, 1], kind=["correlated", "exclusive"])
    b = fs.SparseInputs(6, p=0.1, groups=[[0, 1], [3, 4, 5]], kind=["correlated", "exclusive"])
    for x in (a, b):
        assert x.pattern == "grouped"
        assert np.allclose(x.p, [0.1, 0.1, 0.1, 0.1 / 3, 0.1 / 3, 0.1 / 3])
        assert x.groups.n_groups == 2
        assert np.array_equal(x.gates, [0.1, 0.1])
    assert repr(a) == repr(b)
    assert "correlated [0, 1] q=0.1" in repr(a) and "exclusive [3, 4, 5] q=0.1" in repr(a)
    assert a.expected_active == pytest.approx(0.1 * 2 + 0.1 + 0.1)
    big = fs.SparseInputs(40, p=0.1, groups=np.arange(40) // 2)
    assert "... (20 groups)" in repr(big)


def test_marginals_of_every_kind():
    inputs = mixed_law()
    q = [0.4, 0.5, 0.6]
    expect = [q[0], q[1] / 4, q[2] * 0.5, q[0], q[1] * 3 / 4, 0.3, q[2] * 0.25, q[2], 0.3]
    assert np.allclose(inputs.p, expect, rtol=0, atol=1e-15)
    assert np.allclose(inputs.feature_moment(2), expect)
    probs = pattern_probs(inputs)
    assert sum(probs.values()) == pytest.approx(1.0, abs=1e-14)
    marg = np.zeros(9)
    for pat, pr in probs.items():
        marg += pr * np.array(pat)
    assert np.allclose(marg, expect, atol=1e-14)


BAD = [
    (dict(groups=[[0, 1], [1, 2]]), ValueError,
     r"feature 1 appears twice \(groups\[0\] and groups\[1\]\)"),
    (dict(groups=[[0, 7]]), ValueError, r"groups\[0\] holds feature index 7, outside \[0, n=4\)"),
    (dict(groups=[[]]), ValueError, r"groups\[0\] must be a non-empty"),
    (dict(groups=[0, 0, 1]), ValueError, r"groups as labels must have shape \(4,\)"),
    (dict(groups=[-1, -1, -1, -1]), ValueError, "groups holds no group"),
    (dict(groups="ab"), TypeError, "groups must be one integer label per feature"),
    (dict(groups=[0.5, 0, 1, 1]), TypeError, "groups must hold integers"),
    (dict(groups=[[0, 1]], kind="bogus"), ValueError, "kind of group 0 must be one of"),
    (dict(groups=[[0, 1], [2]], kind=["exclusive"]), ValueError,
     "kind must be one name or one per group"),
    (dict(groups=[[0, 1]], q=1.5), ValueError, r"q must lie in \[0, 1\]"),
    (dict(groups=[[0, 1]], q=[0.1, 0.2]), ValueError, r"q must be a scalar or have shape \(1,\)"),
    (dict(groups=[[0, 1]], kind="exclusive", weights=[1, -2, 1, 1]), ValueError,
     r"weights\[1\] = -2.0"),
    (dict(groups=[[0, 1]], weights=[1, 1, 1, 1]), ValueError,
     "weights apply to exclusive groups only"),
    (dict(groups=[[0, 1]], r=[0.5, 1, 1, 1]), ValueError,
     r"r\[0\] = 0.5 but feature 0 is in correlated group 0"),
    (dict(groups=[[0, 1]], kind="partial", r=[0, 1, 1, 1]), ValueError, r"r must lie in \(0, 1\]"),
    (dict(q=0.3), ValueError, "give groups= as well"),
    (dict(kind="exclusive"), ValueError, "give groups= as well"),
    (dict(kind=np.array(["correlated", "exclusive"])), ValueError, "give groups= as well"),
]  # fmt: skip


@pytest.mark.parametrize("kw,exc,match", BAD)
def test_bad_group_specs_name_the_argument(kw, exc, match):
    with pytest.raises(exc, match=match):
        fs.SparseInputs(4, p=0.1, **kw)


def test_p_and_q_requirements():
    with pytest.raises(ValueError, match="give q"):
        fs.SparseInputs(4, p=[0.1, 0.2, 0.3, 0.4], groups=[[0, 1]])
    with pytest.raises(ValueError, match="feature 2 is in no group: give p"):
        fs.SparseInputs(4, groups=[[0, 1]], q=0.2)
    with pytest.raises(ValueError, match="either k or groups"):
        fs.SparseInputs(4, k=2, groups=[[0, 1]])
    every = fs.SparseInputs(4, groups=[[0, 1], [2, 3]], q=[0.2, 0.4], kind="exclusive")
    assert np.allclose(every.p, [0.1, 0.1, 0.2, 0.2])
    with pytest.raises(ValueError, match="too small to sample"):
        fs.sample(fs.SparseInputs(4, p=0.0, groups=[[0, 1]], q=1e-300), 10)


# ---------------------------------------------------------------- the sampler


def test_sampled_patterns_match_the_law():
    """Chi-square of the joint activity patterns (every group's joint law at once)."""
    inputs = mixed_law()
    N = 200_000
    batch = fs.sample(inputs, N, seed=7)
    dense = batch.to_dense()
    for s in range(2000):
        assert np.all(np.diff(batch.indices[batch.indptr[s] : batch.indptr[s + 1]]) > 0)
    probs = pattern_probs(inputs)
    keys = list(probs)
    code = {k: t for t, k in enumerate(keys)}
    pats = (dense != 0).astype(np.int64)
    observed = np.zeros(len(keys) + 1)
    weights = 1 << np.arange(9)
    lookup = {int(np.dot(k, weights)): code[k] for k in keys}
    for val, cnt in zip(*np.unique(pats @ weights, return_counts=True), strict=True):
        observed[lookup.get(int(val), len(keys))] += cnt
    expected = np.append([probs[k] * N for k in keys], 0.0)
    assert chi2_pvalue(observed, expected) > 1e-4
    # marginals and values
    assert chi2_pvalue(pats.sum(0), inputs.p * N) > 1e-4
    vals = batch.values
    assert set(np.unique(vals)) == {-1.0, 1.0}
    assert abs(vals.mean()) < 5 / np.sqrt(vals.size)


@pytest.mark.parametrize("values", ["gaussian", "uniform"])
def test_values_of_grouped_features_follow_the_value_law(values):
    batch = fs.sample(mixed_law(values), 50_000, seed=3)
    law = fs.ValueLaw(values)
    cdf = stats.norm.cdf if values == "gaussian" else stats.uniform.cdf
    assert stats.kstest(batch.values, cdf).pvalue > 1e-4
    assert batch.values.mean() == pytest.approx(law.moment(1), abs=5 / np.sqrt(batch.values.size))


def test_groups_are_independent_and_exclusive_never_doubles():
    inputs = fs.SparseInputs(6, p=0.0, groups=[[0, 1, 2], [3, 4, 5]],
                             kind=["correlated", "exclusive"], q=[0.3, 0.6])  # fmt: skip
    N = 100_000
    on = fs.sample(inputs, N, seed=9).to_dense() != 0
    a, b = on[:, 0], on[:, 3:].any(axis=1)
    assert np.all(on[:, :3] == a[:, None])
    assert np.all(on[:, 3:].sum(axis=1) <= 1)
    table = np.array([[np.sum(~a & ~b), np.sum(~a & b)], [np.sum(a & ~b), np.sum(a & b)]])
    assert stats.chi2_contingency(table).pvalue > 1e-4
    assert chi2_pvalue(on[:, 3:].sum(0), np.full(3, 0.2 * N)) > 1e-4


@pytest.mark.parametrize(
    "p", [0.07, np.linspace(0.0, 0.4, 30), np.r_[np.full(10, 1.0), np.full(20, 0.1)]]
)
def test_singleton_groups_draw_the_independent_samples_bit_for_bit(p):
    plain = fs.SparseInputs(30, p=p, values="gaussian")
    grouped = fs.SparseInputs(30, p=0.5, values="gaussian", groups=np.arange(30), q=plain.p)
    assert grouped.pattern == "grouped" and np.array_equal(grouped.p, plain.p)
    a, b = fs.sample(plain, 5000, seed=21), fs.sample(grouped, 5000, seed=21)
    for name in ("indptr", "indices", "values"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    exclusive = fs.SparseInputs(30, p=0.5, groups=np.arange(30), q=plain.p, kind="exclusive")
    c = fs.sample(exclusive, 5000, seed=21)
    assert np.array_equal(a.indices, c.indices) and np.array_equal(a.values, c.values)


def test_grouped_samples_do_not_depend_on_threads_chunks_start(set_numba_threads):
    inputs = fs.SparseInputs(
        64, p=0.02, values="gaussian", groups=np.arange(64) % 9 - 1,
        kind=["correlated", "exclusive", "partial"] * 2 + ["exclusive", "partial"],
        q=np.linspace(0.05, 0.4, 8), r=0.5,
    )  # fmt: skip
    set_numba_threads(1)
    one = fs.sample(inputs, 4000, seed=5)
    set_numba_threads(min(2, numba.config.NUMBA_NUM_THREADS))
    two = fs.sample(inputs, 4000, seed=5, chunk_size=13)
    for name in ("indptr", "indices", "values"):
        assert np.array_equal(getattr(one, name), getattr(two, name)), name
    tail = fs.sample(inputs, 1000, seed=5, start=3000, chunk_size=77)
    assert np.array_equal(tail.indices, one.indices[one.indptr[3000] :])
    assert np.array_equal(tail.values, one.values[one.indptr[3000] :])


def test_gate_one_and_every_feature_grouped():
    inputs = fs.SparseInputs(5, groups=[[0, 1], [2, 3, 4]], kind=["correlated", "exclusive"],
                             q=1.0, weights=[1, 1, 0.5, 0.25, 0.25])  # fmt: skip
    N = 40_000
    on = fs.sample(inputs, N, seed=2).to_dense() != 0
    assert on[:, :2].all() and np.all(on[:, 2:].sum(axis=1) == 1)
    assert chi2_pvalue(on[:, 2:].sum(0), [0.5 * N, 0.25 * N, 0.25 * N]) > 1e-4
