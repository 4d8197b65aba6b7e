"""The stratified estimator (THEORY §4): its K >= 2 sampler, its estimates, its variance."""

import math
from fractions import Fraction

import numba
import numpy as np
import pytest
from builders import random_model
from checks import assert_same_estimate
from naive import enumerate_inputs, gain_numpy, loss_numpy
from scipy import stats

import fastsuper as fs
from fastsuper import testing as T

# --------------------------------------------------------------------------
# (a) the sampler given K >= 2 against brute-force enumeration


def _exact_pattern_law(p):
    """P(active set = S | K >= 2) for every bit mask S (0 where |S| < 2), exactly."""
    n = len(p)
    fp = [Fraction(float(x)) for x in p]
    probs = []
    for mask in range(1 << n):
        w = Fraction(1)
        for i in range(n):
            w *= fp[i] if mask >> i & 1 else 1 - fp[i]
        probs.append(w if bin(mask).count("1") >= 2 else Fraction(0))
    total = sum(probs)
    return np.array([float(w / total) for w in probs]), float(total)


def _masks(batch):
    bits = np.left_shift(1, batch.indices)
    return np.add.reduceat(bits, batch.indptr[:-1]) if bits.size else np.zeros(0, int)


def _chi2_pvalue(counts, expected):
    """Pearson chi-square, cells with expected count < 5 pooled into one."""
    small = expected < 5
    obs = np.append(counts[~small], counts[small].sum())
    exp = np.append(expected[~small], expected[small].sum())
    keep = exp > 0
    obs, exp = obs[keep], exp[keep]
    stat = ((obs - exp) ** 2 / exp).sum()
    return stats.chi2.sf(stat, obs.size - 1), obs.size


PATTERN_CASES = [
    ("scalar p=0.3", 0.3, T.MODE_BINOM),
    ("scalar p=1e-6", 1e-6, T.MODE_BINOM),
    ("scalar p=0.9", 0.9, T.MODE_BINOM),
    ("per-feature", [0.3, 0.05, 0.6, 1e-3, 0.2, 0.45, 0.1], T.MODE_SEQ),
    ("per-feature with 0 and 1", [0.2, 0.0, 1.0, 0.3, 0.0, 0.1, 0.7], T.MODE_SEQ),
    ("per-feature tiny", [3e-7, 1e-7, 2e-7, 5e-8, 1e-7, 4e-7, 1e-7], T.MODE_SEQ),
    ("per-feature dense", [0.9, 0.99, 0.5, 0.97, 0.8, 0.95, 0.6], T.MODE_SEQ),
]


@pytest.mark.parametrize("name,p,mode", PATTERN_CASES, ids=[c[0] for c in PATTERN_CASES])
def test_conditional_sampler_law_matches_enumeration(name, p, mode):
    """Frequencies of the active sets against P(S | K >= 2): chi-square, fixed seed."""
    n, N = 7, 200_000
    inputs = fs.SparseInputs(n, p=p, values="constant")
    smp = T.StratifiedSampler(inputs)
    assert smp.mode == mode
    law, p_ge2 = _exact_pattern_law(inputs.p)
    assert smp.p_ge2 == pytest.approx(p_ge2, rel=1e-13)
    assert fs.low_order_terms(fs.Model(np.eye(2, n)), inputs).p_ge2 == pytest.approx(
        p_ge2, rel=1e-13
    )
    batch = T.sample_ge2(inputs, N, seed=11)
    counts = np.bincount(_masks(batch), minlength=1 << n)
    assert counts[law == 0].sum() == 0  # impossible sets (|S| < 2, p = 0 or 1) never drawn
    inner = np.ones(batch.indices.size - 1, dtype=bool)  # sorted, distinct within a sample
    inner[batch.indptr[1:-1] - 1] = False
    assert np.all(np.diff(batch.indices)[inner] > 0)
    pval, cells = _chi2_pvalue(counts, N * law)
    assert cells >= 5
    assert pval > 1e-4, f"{name}: chi-square p-value {pval:.2e} over {cells} cells"


def test_binomial_table_against_scipy():
    """The table of K | K >= 2 (scalar p): exact law, and truncated only past 1e-17."""
    for n, p in [(5, 0.3), (1000, 1e-4), (1000, 0.5), (10**6, 1e-6), (1000, 1e-7), (2, 0.5)]:
        cdf = T.binom_ge2_cdf(n, p, T.K_TAIL)
        k = np.arange(2, 2 + cdf.size)
        ref = stats.binom.pmf(k, n, p) / stats.binom.sf(1, n, p)
        np.testing.assert_allclose(np.diff(cdf, prepend=0.0), ref, rtol=0, atol=1e-13)
        assert cdf[-1] == 1.0 and np.all(np.diff(cdf) >= 0)
        assert stats.binom.sf(k[-1], n, p) / stats.binom.sf(1, n, p) < T.K_TAIL
    assert T.binom_ge2_cdf(5, 0.3, T.K_TAIL).size == 4  # small n: the whole law


def test_scalar_sampler_large_n():
    """n = 300, p = 0.01: K | K >= 2 against the binomial law; features uniform."""
    n, p, N = 300, 0.01, 100_000
    batch = T.sample_ge2(fs.SparseInputs(n, p=p, values="constant"), N, seed=3)
    K = batch.counts()
    kk = np.arange(2, K.max() + 1)
    exp = N * stats.binom.pmf(kk, n, p) / stats.binom.sf(1, n, p)
    obs = np.bincount(K, minlength=K.max() + 1)[2:]
    pval, _ = _chi2_pvalue(obs, exp)
    assert pval > 1e-4
    pos = np.bincount(batch.indices, minlength=n)
    assert stats.chisquare(pos).pvalue > 1e-4


def test_sequential_sampler_large_n_per_feature():
    """n = 500, per-feature p: each feature's frequency given K >= 2 is exact.

    P(i active | K >= 2) = p_i P(K_{-i} >= 1) / P(K >= 2), in closed form.
    """
    rng = np.random.default_rng(5)
    n, N = 500, 200_000
    p = rng.uniform(0, 2e-3, n)
    inputs = fs.SparseInputs(n, p=p, values="constant")
    batch = T.sample_ge2(inputs, N, seed=8)
    assert batch.counts().min() >= 2
    lg = np.log1p(-p)
    p_other_ge1 = -np.expm1(lg.sum() - lg)
    p_ge2 = T.StratifiedSampler(inputs).p_ge2
    marg = p * p_other_ge1 / p_ge2
    obs = np.bincount(batch.indices, minlength=n)
    z = (obs - N * marg) / np.sqrt(N * marg * (1 - marg))
    assert np.abs(z).max() < 5
    assert abs(z.sum()) / math.sqrt(n) < 5


def test_p_ge2_accurate_for_tiny_p():
    """P(K >= 2) where 1 - P0 - P1 would lose every digit (exact rationals as reference)."""
    for p in (1e-7, 1e-12, [1e-9, 3e-10, 2e-9, 0.0, 5e-9]):
        inputs = fs.SparseInputs(5, p=p)
        _, exact = _exact_pattern_law(inputs.p)
        assert T.StratifiedSampler(inputs).p_ge2 == pytest.approx(exact, rel=1e-13)


# --------------------------------------------------------------------------
# (b) agreement with exact values and with the plain estimator


@pytest.mark.parametrize("p", [0.05, 1e-3, 1e-4, 1e-5])
@pytest.mark.parametrize("per_feature_p", [False, True])
def test_agrees_with_exact_loss(p, per_feature_p):
    """power activation: |stratified - exact_loss| < 5 SE, loss and gain."""
    n = 60
    model = random_model(n, 5, "power", 3, bias=True, seed=1)
    pv = np.random.default_rng(2).uniform(0, 2 * p, n) if per_feature_p else p
    inputs = fs.SparseInputs(n, p=pv, values="gaussian", importance=1.0 + np.arange(n) % 3)
    exact_l, exact_g = fs.exact_loss_and_gain(model, inputs)
    est = fs.estimate_loss(model, inputs, 40_000, seed=3, method="stratified")
    assert est.method == "stratified" and est.n_samples == 40_000
    assert 0 < est.stderr and abs(est.mean - exact_l) < 5 * est.stderr
    assert abs(est.gain_mean - exact_g) < 5 * est.gain_stderr


def test_float32_model():
    """float32 weights: computed in float32, against the exact loss of those weights."""
    n = 60
    model = random_model(n, 5, "power", 3, bias=True, seed=1)
    model32 = model.with_params(model.W.astype(np.float32), model.b.astype(np.float32))
    ref = model32.with_params(model32.W.astype(np.float64), model32.b.astype(np.float64))
    inputs = fs.SparseInputs(n, p=1e-3, values="gaussian")
    est = fs.estimate_loss(model32, inputs, 20_000, seed=3, method="stratified")
    assert abs(est.mean - fs.exact_loss(ref, inputs)) < 5 * est.stderr


@pytest.mark.parametrize("p", [0.05, 0.01])
def test_agrees_with_naive(p):
    """relu_power with bias (no closed form): stratified vs naive within 5 joint SE."""
    n = 80
    model = random_model(n, 8, "relu_power", 2, bias=True, seed=4)
    inputs = fs.SparseInputs(n, p=p, values="uniform")
    naive = fs.estimate_loss(model, inputs, 400_000, seed=5)
    strat = fs.estimate_loss(model, inputs, 100_000, seed=6, method="stratified")
    se = math.hypot(naive.stderr, strat.stderr)
    assert abs(naive.mean - strat.mean) < 5 * se
    gse = math.hypot(naive.gain_stderr, strat.gain_stderr)
    assert abs(naive.gain_mean - strat.gain_mean) < 5 * gse
    per_sample = strat.stderr**2 * strat.n_samples, naive.stderr**2 * naive.n_samples
    assert per_sample[0] < per_sample[1]  # Var_naive >= P(K>=2) sigma_2**2 >= P(K>=2)**2 sigma_2**2


def _enumerated(model, inputs, imp=None):
    """Exact loss, gain and per-feature loss of a discrete law by enumeration."""
    X, w = enumerate_inputs(inputs.p, inputs.law.support, inputs.law.probs)
    if inputs.pattern == "exactly_k":  # keep the inputs with exactly k active, reweight
        keep = (X != 0).sum(axis=1) == inputs.k
        X, w = X[keep], w[keep] / w[keep].sum()
    act, a, b = model.activation, model.exponent, model.b
    loss = loss_numpy(model.W, b, act, a, X, imp)
    gain = gain_numpy(model.W, b, act, a, X, imp)
    from naive import forward_numpy

    R = forward_numpy(model.W, b, act, a, X)
    I = np.ones(X.shape[1]) if imp is None else imp
    per = (w[:, None] * (X - R) ** 2 * I).sum(axis=0)
    return w @ loss, w @ gain, per


ENUM_CASES = [
    dict(act="relu_power", a=2, values="rademacher", p=0.2),
    dict(act="relu_power", a=1, values="discrete", p=[0.3, 0.05, 0.2, 0.1, 0.4, 0.02]),
    dict(act="signed_power", a=1.5, values="discrete", p=0.1),
    dict(act="power", a=3, values="constant", p=[0.5, 0.01, 0.1, 0.3, 0.05, 0.2]),
    dict(act="relu_power", a=2, values="discrete", k=3),
]


@pytest.mark.parametrize("cfg", ENUM_CASES, ids=lambda c: f"{c['act']}-{c['values']}")
def test_agrees_with_enumeration(cfg):
    """Discrete laws, any activation: loss, gain and per-feature loss within 5 SE."""
    cfg = dict(cfg)
    n = 6
    model = random_model(n, 3, cfg.pop("act"), cfg.pop("a"), bias=True, seed=7, scale=0.8)
    law = cfg.pop("values")
    extra = dict(support=[-1.0, 0.5, 2.0], probs=[0.3, 0.5, 0.2]) if law == "discrete" else {}
    imp = 0.9 ** np.arange(n)
    inputs = fs.SparseInputs(n, values=law, importance=imp, **extra, **cfg)
    ref_l, ref_g, ref_pf = _enumerated(model, inputs, imp)
    est = fs.estimate_loss(model, inputs, 100_000, seed=9, method="stratified", per_feature=True)
    assert abs(est.mean - ref_l) < 5 * est.stderr
    assert abs(est.gain_mean - ref_g) < 5 * est.gain_stderr
    z = (est.per_feature - ref_pf) / np.maximum(est.per_feature_stderr, 1e-300)
    assert np.abs(z).max() < 5
    assert est.per_feature.sum() == pytest.approx(est.mean, rel=1e-10)


@pytest.mark.parametrize("k", [0, 1])
def test_exactly_k_at_most_one_is_exact(k):
    """Exactly k <= 1 active: no sampling, exact to round-off, zero stderr."""
    n = 6
    model = random_model(n, 3, "relu_power", 2, bias=True, seed=7)
    inputs = fs.SparseInputs(n, k=k, values="rademacher")
    ref_l, ref_g, ref_pf = _enumerated(model, inputs)
    est = fs.estimate_loss(model, inputs, 1000, seed=1, method="stratified", per_feature=True)
    assert est.n_samples == 0 and est.stderr == 0.0 and est.gain_stderr == 0.0
    assert est.mean == pytest.approx(ref_l, rel=1e-12)
    assert est.gain_mean == pytest.approx(ref_g, rel=1e-12, abs=1e-12)
    np.testing.assert_allclose(est.per_feature, ref_pf, rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(est.per_feature_stderr, 0.0)


def test_no_second_active_is_exact():
    """P(K >= 2) = 0 (one feature can be active): exact; P(K >= 2) = 1 (p = 1): sampled."""
    n = 5
    model = random_model(n, 2, "power", 3, seed=2)
    inputs = fs.SparseInputs(n, p=[0.0, 0.3, 0.0, 0.0, 0.0], values="gaussian")
    est = fs.estimate_loss(model, inputs, 100, method="stratified")
    assert est.n_samples == 0 and est.stderr == 0
    assert est.mean == pytest.approx(fs.exact_loss(model, inputs), rel=1e-12)
    inputs = fs.SparseInputs(n, p=1.0, values="rademacher")
    assert T.StratifiedSampler(inputs).mode == T.MODE_PLAIN
    est = fs.estimate_loss(model, inputs, 20_000, seed=1, method="stratified")
    assert abs(est.mean - fs.exact_loss(model, inputs)) < 5 * est.stderr


@pytest.mark.parametrize("k", [2, 4])
def test_exactly_k_at_least_two_equals_naive(k):
    """Exactly k >= 2 active: every sample is in the stratum; the numbers are the naive ones."""
    n = 30
    model = random_model(n, 4, "relu_power", 2, seed=3)
    inputs = fs.SparseInputs(n, k=k, values="uniform")
    kw = dict(per_feature=True, block_size=700, path="columns")
    naive = fs.estimate_loss(model, inputs, 5000, seed=2, **kw)
    strat = fs.estimate_loss(model, inputs, 5000, seed=2, method="stratified", **kw)
    assert (strat.mean, strat.stderr) == (naive.mean, naive.stderr)
    assert (strat.gain_mean, strat.gain_stderr) == (naive.gain_mean, naive.gain_stderr)
    np.testing.assert_array_equal(strat.per_feature, naive.per_feature)


def test_paths_agree_and_precomputed_terms():
    """dense and columns paths: same numbers to round-off; terms= reuses the exact part."""
    n = 50
    model = random_model(n, 6, "relu_power", 2, seed=5)
    inputs = fs.SparseInputs(n, p=np.linspace(1e-3, 0.05, n), values="uniform")
    a = fs.estimate_loss(model, inputs, 3000, seed=1, method="stratified", path="dense")
    b = fs.estimate_loss(model, inputs, 3000, seed=1, method="stratified", path="columns")
    assert a.mean == pytest.approx(b.mean, rel=1e-12)
    assert a.stderr == pytest.approx(b.stderr, rel=1e-9)
    terms = fs.low_order_terms(model, inputs)
    c = T.stratified_estimate(model, inputs, 3000, seed=1, path="columns", terms=terms)
    assert (c.mean, c.stderr) == (b.mean, b.stderr)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(
    "act,a,law",
    [
        ("relu_power", 2, dict(p=np.linspace(1e-3, 0.05, 150))),  # fused tile, MODE_SEQ
        ("power", 3, dict(p=0.01)),  # fused tile, MODE_BINOM
        ("signed_power", 1.5, dict(k=3)),  # stored z, MODE_PLAIN
    ],
)
def test_columns_blocked_agrees_with_columns(dtype, act, a, law, set_numba_threads):
    """The tiled path of the K >= 2 sampler (n = 150: several tiles, a padded one):
    the same samples as "columns", the same numbers to round-off, per feature too;
    bit for bit whatever the thread count."""
    n = 150
    rng = np.random.default_rng(3)
    W = (rng.normal(size=(6, n)) * 0.4).astype(dtype)
    model = fs.Model(W, (rng.normal(size=n) * 0.1).astype(dtype), activation=act, exponent=a)
    inputs = fs.SparseInputs(n, values="uniform_sym", importance=0.98 ** np.arange(n), **law)
    terms = fs.low_order_terms(model, inputs)
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    for pf in (False, True):
        kw = dict(seed=2, terms=terms, per_feature=pf, block_size=700)
        ref = T.stratified_estimate(model, inputs, 3000, path="columns", **kw)
        got = T.stratified_estimate(model, inputs, 3000, path="columns_blocked", **kw)
        assert got.path == "columns_blocked"
        assert got.mean == pytest.approx(ref.mean, rel=rtol)
        assert got.stderr == pytest.approx(ref.stderr, rel=50 * rtol)
        assert got.gain_mean == pytest.approx(ref.gain_mean, rel=rtol, abs=rtol * ref.mean)
        if pf:
            np.testing.assert_allclose(got.per_feature, ref.per_feature, rtol=rtol, atol=rtol)
    runs = []
    for t in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
        set_numba_threads(t)
        runs.append(T.stratified_estimate(model, inputs, 3000, path="columns_blocked", **kw))
    assert (runs[0].mean, runs[0].stderr) == (runs[1].mean, runs[1].stderr)
    np.testing.assert_array_equal(runs[0].per_feature, runs[1].per_feature)


# --------------------------------------------------------------------------
# (c) unbiasedness where the naive estimator is noisy


def test_unbiased_with_small_batches():
    """2000 independent stratified estimates of 20 samples each (E K = 0.03, heavy loss).

    The estimates are the kernel's blocks (block r = the public estimate with
    ``start = 20 r``, checked for two of them).  Their average matches
    exact_loss within 5 SE; the average reported stderr**2 matches their
    variance (both unbiased for Var(estimate); 5 SE from their sampling
    variances); naive estimates with 40x more samples each scatter far more.
    """
    n, R, N = 30, 2000, 20
    model = random_model(n, 3, "power", 3, bias=False, seed=6, scale=0.9)
    inputs = fs.SparseInputs(n, p=1e-3, values="gaussian")
    exact = fs.exact_loss(model, inputs)
    terms = fs.low_order_terms(model, inputs)
    smp = T.StratifiedSampler(inputs)
    st, _, _ = T.mc_blocks(
        model.W, model.A, model.bias, inputs.importance, T.activation(model), T.PATH_COLUMNS,
        False, np.uint64(4), 0, R * N, N, T.input_law(inputs), smp.kernel_args(),
    )  # fmt: skip
    P2 = terms.p_ge2
    means = terms.lower_bound + P2 * st[:, T.ST_LOSS_MEAN]
    se2 = P2**2 * st[:, T.ST_LOSS_M2] / (N - 1) / N
    for r in (0, R - 1):
        e = T.stratified_estimate(
            model, inputs, N, seed=4, start=r * N, path="columns", terms=terms
        )
        assert e.mean == pytest.approx(means[r], rel=1e-14)
        assert e.stderr**2 == pytest.approx(se2[r], rel=1e-12)
    se_avg = means.std(ddof=1) / math.sqrt(R)
    assert abs(means.mean() - exact) < 5 * se_avg
    var_means = means.var(ddof=1)
    c = means - means.mean()
    var_means_se = math.sqrt(max(np.mean(c**4) - var_means**2, 0.0) / R)
    se2_se = se2.std(ddof=1) / math.sqrt(R)
    assert abs(se2.mean() - var_means) < 5 * math.hypot(var_means_se, se2_se)
    naive = fs.estimate_loss(model, inputs, 400_000, seed=4)
    naive_sd = naive.stderr * math.sqrt(naive.n_samples / (40 * N))  # one 800-sample estimate
    assert naive_sd > 5 * math.sqrt(var_means)


# --------------------------------------------------------------------------
# (d) the variance ratio against its prediction from the strata


def _batch_variances(model, inputs, method, n_batches, N, seed):
    """Per-sample variance (stderr**2 * N) of ``n_batches`` independent runs: mean, SE."""
    vs = []
    for r in range(n_batches):
        e = fs.estimate_loss(model, inputs, N, seed=seed, start=r * N, method=method)
        vs.append(e.stderr**2 * e.n_samples)
    vs = np.array(vs)
    return vs.mean(), vs.std(ddof=1) / math.sqrt(n_batches)


def _enumerate_fast(p, n, support, probs):
    """Every input of n iid features (scalar p, finite law without 0) and its probability."""
    c = np.indices((len(support) + 1,) * n).reshape(n, -1).T  # choice 0: inactive
    X = np.concatenate([[0.0], support])[c]
    w = np.prod(np.concatenate([[1.0 - p], p * np.asarray(probs)])[c], axis=1)
    return X, w


@pytest.mark.parametrize("p", [0.1, 0.02, 0.004])
def test_variance_ratio_matches_strata_exact(p):
    """n = 8, discrete values: strata moments by enumeration predict the ratio.

    Var_naive = sum_s P_s (sigma_s**2 + (mu_s - mu)**2) over s in {K=0, K=1, K>=2},
    Var_strat = P(K>=2)**2 sigma_{>=2}**2 per sample.  The measured ratio (20
    batches of each) agrees within 5 standard errors of the batch means.
    """
    n = 8
    model = random_model(n, 3, "relu_power", 1, bias=True, seed=8, scale=0.5)
    inputs = fs.SparseInputs(n, p=p, support=[-1.0, 0.5, 1.0], probs=[0.3, 0.5, 0.2])
    X, w = _enumerate_fast(p, n, inputs.law.support, inputs.law.probs)
    loss = loss_numpy(model.W, model.b, "relu_power", 1, X)
    K = (X != 0).sum(axis=1)
    mu = w @ loss
    var_naive = 0.0
    moments = {}
    for name, sel in (("0", K == 0), ("1", K == 1), ("2+", K >= 2)):
        P = w[sel].sum()
        m = w[sel] @ loss[sel] / P
        s2 = w[sel] @ (loss[sel] - m) ** 2 / P
        moments[name] = (P, m, s2)
        var_naive += P * (s2 + (m - mu) ** 2)
    P2, _, s2_2 = moments["2+"]
    assert var_naive == pytest.approx(w @ (loss - mu) ** 2, rel=1e-10)  # total variance
    predicted = var_naive / (P2**2 * s2_2)
    vn, vn_se = _batch_variances(model, inputs, "naive", 20, 100_000, seed=1)
    vs, vs_se = _batch_variances(model, inputs, "stratified", 20, 50_000, seed=2)
    measured = vn / vs
    rel_se = math.hypot(vn_se / vn, vs_se / vs)
    assert vn == pytest.approx(var_naive, rel=5 * vn_se / vn)
    assert vs == pytest.approx(P2**2 * s2_2, rel=5 * vs_se / vs)
    assert abs(measured / predicted - 1) < 5 * rel_se, (measured, predicted, rel_se)
    assert rel_se < 0.02  # the check has teeth


def _k1_moments_uniform(model, a):
    """E[loss | only i] and E[loss**2 | only i] for U[0, 1] values, relu_power a (integer).

    The loss is a piecewise polynomial of the value (degree 2a per output, 4a
    squared), with kinks at -b_j / A_ji: Gauss-Legendre with 2a + 1 nodes per
    piece is exact.
    """
    A, b = model.A, model.b
    n = A.shape[0]
    gx, gw = np.polynomial.legendre.leggauss(2 * a + 1)
    m1, m2 = np.zeros(n), np.zeros(n)
    for i in range(n):
        with np.errstate(divide="ignore", invalid="ignore"):
            kinks = -b / A[:, i]
        cuts = np.unique(np.concatenate([[0.0, 1.0], kinks[(kinks > 0) & (kinks < 1)]]))
        lo, hi = cuts[:-1, None], cuts[1:, None]
        x = ((hi - lo) * (gx + 1) / 2 + lo).ravel()
        w = ((hi - lo) * gw / 2).ravel()
        Z = np.maximum(np.outer(x, A[:, i]) + b, 0.0) ** a
        X = np.zeros_like(Z)
        X[:, i] = x
        loss = ((X - Z) ** 2).sum(axis=1)
        m1[i], m2[i] = w @ loss, w @ loss**2
    return m1, m2


@pytest.mark.parametrize("p", [0.01, 2e-3])
def test_variance_ratio_matches_strata_estimated(p):
    """n = 100, uniform values, relu_power 2: the strata moments computed separately.

    K = 0: exact (variance 0); K = 1: mean and variance exact (piecewise
    Gauss-Legendre; the mean checked against low_order_terms); K >= 2: mean
    and variance from separate stratified runs.  The measured ratio (20
    batches of each estimator) agrees with the prediction within 5 standard
    errors (batch means, and the prediction's own error through sigma_{>=2}).
    """
    n, a = 100, 2
    model = random_model(n, 10, "relu_power", a, bias=True, seed=9, scale=0.25)
    inputs = fs.SparseInputs(n, p=p, values="uniform")
    terms = fs.low_order_terms(model, inputs)
    m1, m2 = _k1_moments_uniform(model, a)
    np.testing.assert_allclose(m1, terms.loss1, rtol=1e-12)
    P0, mu0, P1, P2 = terms.p0, terms.loss0, terms.p1.sum(), terms.p_ge2
    mu1 = terms.p1 @ m1 / P1
    s2_1 = terms.p1 @ m2 / P1 - mu1**2
    # K >= 2 stratum: separate runs (seed 77)
    v2, v2_se = _batch_variances(model, inputs, "stratified", 10, 50_000, seed=77)
    s2_2, s2_2_rel = v2 / P2**2, v2_se / v2
    mu2 = (fs.estimate_loss(model, inputs, 200_000, seed=78, method="stratified").mean
           - terms.lower_bound) / P2  # fmt: skip
    mu = P0 * mu0 + P1 * mu1 + P2 * mu2
    var_pred = P0 * (mu0 - mu) ** 2 + P1 * (s2_1 + (mu1 - mu) ** 2)
    var_pred += P2 * (s2_2 + (mu2 - mu) ** 2)
    predicted = var_pred / (P2**2 * s2_2)
    rel_pred = abs(P2 * s2_2 / var_pred - 1) * s2_2_rel  # d log(predicted) / d log(s2_2)
    vn, vn_se = _batch_variances(model, inputs, "naive", 20, 50_000, seed=1)
    vs, vs_se = _batch_variances(model, inputs, "stratified", 20, 50_000, seed=2)
    measured = vn / vs
    rel_se = math.sqrt((vn_se / vn) ** 2 + (vs_se / vs) ** 2 + rel_pred**2)
    assert predicted > 2
    assert abs(measured / predicted - 1) < 5 * rel_se, (measured, predicted, rel_se)
    assert rel_se < 0.05  # the check has teeth


# --------------------------------------------------------------------------
# (e) determinism


@pytest.mark.parametrize("p", [1e-3, "per-feature"])
def test_bit_identical_for_any_thread_count(p, set_numba_threads):
    n = 40
    model = random_model(n, 4, "relu_power", 2, seed=10)
    pv = np.linspace(1e-4, 0.02, n) if p == "per-feature" else p
    inputs = fs.SparseInputs(n, p=pv, values="gaussian")
    out = []
    for threads in (1, 2):
        set_numba_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        kw = dict(method="stratified", per_feature=True, block_size=1000)
        out.append(fs.estimate_loss(model, inputs, 20_000, seed=5, **kw))
    a, b = out
    assert_same_estimate(a, b)
    batch1 = T.sample_ge2(inputs, 3000, seed=5, start=100)
    batch2 = T.sample_ge2(inputs, 3000, seed=5, start=100, chunk_size=7)
    np.testing.assert_array_equal(batch1.indices, batch2.indices)
    np.testing.assert_array_equal(batch1.values, batch2.values)


# --------------------------------------------------------------------------
# (f) bad inputs


def test_bad_inputs_raise_clear_errors():
    n = 10
    model = random_model(n, 3, seed=1)
    inputs = fs.SparseInputs(n, p=0.1)
    with pytest.raises(ValueError, match=r"method must be one of \('naive', 'stratified'\)"):
        fs.estimate_loss(model, inputs, 100, method="strat")
    with pytest.raises(ValueError, match="method must be one of"):
        fs.estimate_loss(model, inputs, 100, method=None)
    with pytest.raises(ValueError, match="path must be one of"):
        fs.estimate_loss(model, inputs, 100, method="stratified", path="rows")
    with pytest.raises(ValueError, match="path='blocked' is not available with method="):
        fs.estimate_loss(model, inputs, 100, method="stratified", path="blocked")
    with pytest.raises(ValueError, match="n_samples must be an integer >= 2"):
        fs.estimate_loss(model, inputs, 1, method="stratified")
    with pytest.raises(ValueError, match="does not match the model's n"):
        fs.estimate_loss(model, fs.SparseInputs(n + 1, p=0.1), 100, method="stratified")
    other = fs.low_order_terms(model, fs.SparseInputs(n, p=0.2))
    with pytest.raises(ValueError, match="computed for another input law"):
        T.stratified_estimate(model, inputs, 100, terms=other)
    with pytest.raises(TypeError, match="terms must be the LowOrderTerms"):
        T.stratified_estimate(model, inputs, 100, terms=0.5)
    with pytest.raises(ValueError, match="nothing to sample"):
        T.sample_ge2(fs.SparseInputs(n, k=1), 10)
    assert fs.estimate_loss(model, inputs, 100).method == "naive"  # the default is unchanged
