"""The exact k = 0 and k = 1 strata of THEORY §4 (low_order_terms)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from naive import enumerate_inputs, gain_numpy, loss_numpy
from scipy import integrate

from fastsuper import LowOrderTerms, Model, SparseInputs, ValueLaw, low_order_terms
from fastsuper import testing as T

RTOL = 1e-12

DISCRETE_LAWS = {
    "rademacher": ValueLaw("rademacher"),
    "constant": ValueLaw("constant"),
    "discrete3": ValueLaw("discrete", support=[-1.3, 0.4, 2.1], probs=[0.2, 0.5, 0.3]),
}

# (activation, exponent): integer and non-integer exponents of every family
ACTIVATIONS = [
    ("power", 1),
    ("power", 2),
    ("power", 3),
    ("signed_power", 0.7),
    ("signed_power", 1),
    ("signed_power", 1.5),
    ("signed_power", 2),
    ("signed_power", 3),
    ("relu_power", 0.7),
    ("relu_power", 1),
    ("relu_power", 1.5),
    ("relu_power", 2),
    ("relu_power", 3),
]


def _random_model(rng, n, d, act, a, bias=True, dtype=np.float64):
    W = (rng.normal(size=(d, n)) / math.sqrt(d)).astype(dtype)
    b = rng.normal(scale=0.4, size=n).astype(dtype) if bias else None
    return Model(W, b, activation=act, exponent=a)


def _close(got, want, rtol=RTOL, atol=0.0):
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


# ------------------------------------------------------ (a) discrete: enumeration


@pytest.mark.parametrize("law_name", sorted(DISCRETE_LAWS))
@pytest.mark.parametrize("act,a", ACTIVATIONS)
def test_discrete_matches_enumeration(law_name, act, a):
    law = DISCRETE_LAWS[law_name]
    n, d = 5, 3
    rng = np.random.default_rng([len(law_name), len(act), int(10 * a)])
    model = _random_model(rng, n, d, act, a)
    imp = rng.uniform(0.3, 2.0, n)
    W, b = model.W, model.b
    # per-feature p with a p_j = 1 and a p_j = 0, then a generic one
    for p in (np.array([0.3, 1.0, 0.0, 0.6, 0.15]), rng.uniform(0.05, 0.9, n)):
        inputs = SparseInputs(n, p=p, values=law, importance=imp)
        terms = low_order_terms(model, inputs)
        assert isinstance(terms, LowOrderTerms)
        X, w = enumerate_inputs(p, law.support, law.probs, max_active=1)
        loss = loss_numpy(W, b, act, a, X, imp)
        gain = gain_numpy(W, b, act, a, X, imp)
        _close(terms.lower_bound, np.dot(w, loss))
        _close(terms.gain_le1, np.dot(w, gain))
        _close(terms.p_le1, w.sum())
        _close(terms.p_ge2, 1.0 - w.sum(), rtol=1e-12, atol=1e-15)
        # no support holds 0, so X != 0 marks the active set
        counts = (X != 0).sum(axis=1)
        zero = counts == 0
        _close(terms.p0, w[zero].sum())
        for i in range(n):
            only_i = (counts == 1) & (X[:, i] != 0)
            _close(terms.p1[i], w[only_i].sum(), atol=1e-300)
        _close(terms.loss0, loss[zero][0])
        _close(terms.gain0, gain[zero][0])
    # conditional k = 1 terms against the direct conditional expectation
    for i in range(n):
        X1 = np.zeros((law.support.size, n))
        X1[:, i] = law.support
        _close(terms.loss1[i], np.dot(law.probs, loss_numpy(W, b, act, a, X1, imp)))
        _close(
            terms.gain1[i],
            np.dot(law.probs, gain_numpy(W, b, act, a, X1, imp)),
            atol=1e-14 * terms.loss1[i],
        )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_discrete_float32_weights_no_bias(dtype):
    law = DISCRETE_LAWS["discrete3"]
    rng = np.random.default_rng(5)
    n = 4
    model = _random_model(rng, n, 2, "relu_power", 1.5, bias=False, dtype=dtype)
    p = rng.uniform(0.1, 0.5, n)
    terms = low_order_terms(model, SparseInputs(n, p=p, values=law))
    X, w = enumerate_inputs(p, law.support, law.probs, max_active=1)
    _close(terms.lower_bound, np.dot(w, loss_numpy(model.W, None, "relu_power", 1.5, X)))
    assert terms.loss0 == 0.0 and terms.gain0 == 0.0


def test_exactly_k_pattern():
    law = DISCRETE_LAWS["rademacher"]
    rng = np.random.default_rng(3)
    n = 4
    model = _random_model(rng, n, 3, "signed_power", 1.5)
    imp = rng.uniform(0.5, 1.5, n)
    t0 = low_order_terms(model, SparseInputs(n, k=0, values=law, importance=imp))
    assert t0.p0 == 1.0 and np.all(t0.p1 == 0) and t0.p_ge2 == 0.0
    _close(t0.lower_bound, t0.loss0)
    t1 = low_order_terms(model, SparseInputs(n, k=1, values=law, importance=imp))
    assert t1.p0 == 0.0 and t1.p_ge2 == 0.0
    _close(t1.p1, np.full(n, 1 / n))
    # E loss with exactly one active feature = mean over i of the conditional loss
    X = np.concatenate([np.outer(law.support, np.eye(n)[i]) for i in range(n)])
    wts = np.tile(law.probs, n) / n
    _close(t1.lower_bound, np.dot(wts, loss_numpy(model.W, model.b, "signed_power", 1.5, X, imp)))
    t2 = low_order_terms(model, SparseInputs(n, k=2, values=law, importance=imp))
    assert t2.p0 == 0.0 and np.all(t2.p1 == 0) and t2.p_ge2 == 1.0 and t2.lower_bound == 0.0
    _close(t2.loss1, t1.loss1)  # the conditional terms do not depend on the pattern


def test_strata_probabilities_stable():
    n = 6
    law = "gaussian"
    model = Model(np.eye(n), activation="power", exponent=1)
    p = np.array([0.2, 1.0, 0.5, 0.0, 0.3, 0.1])
    t = low_order_terms(model, SparseInputs(n, p=p, values=law))
    others = np.prod(1 - np.delete(p, 1))
    assert t.p0 == 0.0
    _close(t.p1, np.where(np.arange(n) == 1, others, 0.0), atol=0)
    _close(t.p_ge2, 1 - others)
    p2 = p.copy()
    p2[4] = 1.0  # two certain features: K >= 2 surely
    t2 = low_order_terms(model, SparseInputs(n, p=p2, values=law))
    assert t2.p0 == 0.0 and np.all(t2.p1 == 0.0) and t2.p_ge2 == 1.0
    # tiny p, many features: no cancellation in P(K >= 2) ~ (sum p)**2 / 2
    n = 2000
    q = np.full(n, 1e-9)
    t3 = low_order_terms(
        Model(np.eye(1, n), activation="power", exponent=1), SparseInputs(n, p=q, values=law)
    )
    _close(t3.p0, math.exp(n * math.log1p(-1e-9)), rtol=1e-14)
    _close(t3.p1, 1e-9 * math.exp((n - 1) * math.log1p(-1e-9)), rtol=1e-14)
    binom_tail = math.fsum(math.comb(n, k) * 1e-9**k * (1 - 1e-9) ** (n - k) for k in range(2, 12))
    _close(t3.p_ge2, binom_tail, rtol=1e-12)
    _close(t3.p_le1 + t3.p_ge2, 1.0, rtol=1e-15)


def test_single_feature_and_mean_over_features():
    law = DISCRETE_LAWS["discrete3"]
    model = Model(np.array([[0.8]]), b=[0.1], activation="relu_power", exponent=1.5)
    t = low_order_terms(model, SparseInputs(1, p=0.4, values=law, importance=[2.0]))
    X1 = law.support[:, None]
    _close(
        t.loss1[0], np.dot(law.probs, loss_numpy(model.W, model.b, "relu_power", 1.5, X1, [2.0]))
    )
    rng = np.random.default_rng(8)
    model = _random_model(rng, 4, 2, "relu_power", 1)
    t = low_order_terms(model, SparseInputs(4, p=0.2, values="uniform"))
    m = t.mean_over_features()
    _close(m.lower_bound, t.lower_bound / 4)
    _close(m.gain_le1, t.gain_le1 / 4)
    assert m.p0 == t.p0 and m.loss_le1 == m.lower_bound


# ----------------------------------------- (b) continuous laws: adaptive quadrature


def _phi(t, act, a):
    if act == "power":
        return t ** int(a)
    if act == "signed_power":
        return math.copysign(abs(t) ** a, t) if t != 0 else 0.0
    return t**a if t > 0 else 0.0


_LAWS = {  # name: (density at x, or None for the Gaussian; lo; hi; fixed break points)
    "gaussian": (None, -40.0, 40.0, (-8.0, 0.0, 8.0)),
    "uniform": (1.0, 0.0, 1.0, ()),
    "uniform_sym": (0.5, -1.0, 1.0, ()),
}
_NORM = 1.0 / math.sqrt(2.0 * math.pi)


def _pair_quad(law, act, a, c, b, diag):
    """``E(xi - phi(c xi + b))**2`` (diag) or ``E phi(c xi + b)**2`` by adaptive quadrature.

    One flat integrand (a single Python call per point) and ``quad(points=)``
    with the kink among the break points.
    """
    dens, lo, hi, fixed = _LAWS[law]
    c, b, a, m = float(c), float(b), float(a), int(a)  # Python floats: numpy scalars are slow

    def f(x):
        t = c * x + b
        if act == "power":
            v = t**m
        elif act == "signed_power":
            v = abs(t) ** a if t >= 0 else -(abs(t) ** a)
        else:
            v = t**a if t > 0 else 0.0
        r = (x - v) * (x - v) if diag else v * v
        return r * (math.exp(-0.5 * x * x) * _NORM if dens is None else dens)

    pts = set(fixed)
    if c != 0 and lo < -b / c < hi:
        pts.add(-b / c)
    val, _ = integrate.quad(
        f, lo, hi, points=sorted(pts) or None, epsabs=0.0, epsrel=1e-12, limit=500
    )
    return val


def _psd(A):
    W = np.linalg.cholesky(np.asarray(A, dtype=np.float64)).T
    np.testing.assert_allclose(W.T @ W, A, atol=1e-15)
    return W


# (A, b): an exact zero A_ji; kinks inside / just outside / far outside each
# support; b = 0 (kinks at 0); Gaussian kinks beyond |t0| = 9 (far path), some
# at |t0| = 10, between the switch to Gauss-Hermite and its outermost node
_CONFIGS = [
    ([[1.0, 0.0, 0.3], [0.0, 0.8, -0.2], [0.3, -0.2, 0.6]], [0.1, -0.25, 0.4]),
    ([[1.0, 0.1, -0.1], [0.1, 1.2, 0.05], [-0.1, 0.05, 0.7]], [2.0, -1.5, 3.0]),
    ([[0.9, -0.4, 0.2], [-0.4, 1.1, 0.5], [0.2, 0.5, 1.3]], [0.0, 0.0, 0.0]),
    ([[1.0, 0.9, 0.5], [0.9, 1.0, 0.6], [0.5, 0.6, 1.0]], [-0.5, 0.3, -0.1]),
    ([[1.0, 0.2, -0.15], [0.2, 0.9, 0.1], [-0.15, 0.1, 1.1]], [2.0, -1.0, 1.5]),
]


@pytest.mark.parametrize("law", sorted(_LAWS))
@pytest.mark.parametrize("act,a", ACTIVATIONS)
def test_continuous_pairs_match_quad(law, act, a):
    imp = np.array([1.0, 0.7, 1.9])
    mu2 = {"gaussian": 1.0, "uniform": 1 / 3, "uniform_sym": 1 / 3}[law]
    for A, b in _CONFIGS:
        A = np.array(A)
        model = Model(_psd(A), b, activation=act, exponent=a)
        inputs = SparseInputs(3, p=0.1, values=law, importance=imp)
        M = T.k1_conditional_loss(model, inputs, per_output=True)
        ref = np.array(
            [
                [imp[j] * _pair_quad(law, act, a, A[j, i], b[j], i == j) for i in range(3)]
                for j in range(3)
            ]
        )
        _close(M, ref, rtol=1e-10, atol=1e-15)
        terms = low_order_terms(model, inputs)
        _close(terms.loss1, M.sum(axis=0), rtol=1e-14)
        _close(terms.loss1, T.k1_conditional_loss(model, inputs), rtol=0)
        _close(terms.gain1, imp * mu2 - terms.loss1, rtol=1e-12, atol=1e-14)
        _close(terms.loss0, sum(imp[j] * _phi(b[j], act, a) ** 2 for j in range(3)))


# -------------------------------------------- (c) Gaussian values, A diagonal


def _gauss_moment(r):
    return 0.0 if r % 2 else float(math.prod(range(r - 1, 0, -2)))


@pytest.mark.parametrize("m", [1, 2, 3, 5])
def test_power_gaussian_diagonal_closed_form(m):
    n, d = 4, 6
    rng = np.random.default_rng(m)
    Q, _ = np.linalg.qr(rng.normal(size=(d, n)))
    r = np.array([0.6, 0.9, 1.0, 1.2])
    W = Q * np.sqrt(r)  # orthogonal columns: A = diag(r) up to round-off
    imp = np.array([1.0, 0.9, 0.81, 0.729])
    p = np.array([1e-3, 2e-3, 5e-4, 1e-4])
    inputs = SparseInputs(n, p=p, values="gaussian", importance=imp)
    mu = _gauss_moment
    A_diag = np.diag(W.T @ W)
    # unsuperposed gain per feature (THEORY §5.1): 2 mu_{m+1} A_ii^m - mu_{2m} A_ii^(2m)
    g = 2 * mu(m + 1) * A_diag**m - mu(2 * m) * A_diag ** (2 * m)
    terms = low_order_terms(Model(W, activation="power", exponent=m), inputs)
    _close(terms.gain1, imp * g, rtol=1e-12, atol=1e-15)
    _close(terms.loss1, imp * (1.0 - g), rtol=1e-12, atol=1e-15)
    assert terms.loss0 == 0.0
    # b = 0 and A diagonal: the loss is additive over features, L = sum_i p_i I_i loss_i,
    # so the k <= 1 part falls short of it by sum_i I_i loss_i (p_i - p1_i) exactly
    L_exact = float(np.dot(p, imp * (1.0 - g)))
    assert terms.lower_bound <= L_exact
    _close(L_exact - terms.lower_bound, float(np.dot(p - terms.p1, imp * (1.0 - g))), rtol=1e-9)
    # with a bias, the off-diagonal outputs see phi(b_j)**2 = b_j**(2m)
    b = np.array([0.3, -0.2, 0.1, 0.5])
    tb = low_order_terms(Model(W, b, activation="power", exponent=m), inputs)
    diag = [
        sum(
            math.comb(2 * m, k) * A_diag[i] ** k * b[i] ** (2 * m - k) * mu(k)
            for k in range(2 * m + 1)
        )
        - 2
        * sum(math.comb(m, k) * A_diag[i] ** k * b[i] ** (m - k) * mu(k + 1) for k in range(m + 1))
        + 1.0
        for i in range(n)
    ]
    want = [
        imp[i] * diag[i] + sum(imp[j] * b[j] ** (2 * m) for j in range(n) if j != i)
        for i in range(n)
    ]
    _close(tb.loss1, want, rtol=1e-12)
    _close(tb.loss0, float(np.dot(imp, b ** (2 * m))))


@pytest.mark.parametrize("act", ["relu_power", "signed_power"])
@pytest.mark.parametrize("a", [0.7, 1.0, 1.5, 2.0, 2.5])
def test_gaussian_diagonal_real_exponent_closed_form(act, a):
    # b = 0, A = diag(r): E|xi|^s = 2^(s/2) Gamma((s+1)/2) / sqrt(pi)
    def abs_moment(s):
        return 2 ** (s / 2) * math.gamma((s + 1) / 2) / math.sqrt(math.pi)

    r = np.array([0.5, 1.0, 1.7])
    W = np.diag(np.sqrt(r))
    half = 0.5 if act == "relu_power" else 1.0  # relu keeps the positive half-line
    e2 = half * r ** (2 * a) * abs_moment(2 * a)
    e1 = half * r**a * abs_moment(a + 1)
    terms = low_order_terms(
        Model(W, activation=act, exponent=a), SparseInputs(3, p=0.01, values="gaussian")
    )
    _close(terms.loss1, 1 - 2 * e1 + e2, rtol=1e-13, atol=1e-15)
    _close(terms.gain1, 2 * e1 - e2, rtol=1e-13)


# --------------------------------------------------------------- (d) bad inputs


def test_bad_inputs_raise():
    model = Model(np.eye(3), activation="relu_power", exponent=1)
    with pytest.raises(ValueError, match=r"model\.n = 3.*inputs\.n = 4"):
        low_order_terms(model, SparseInputs(4, p=0.1))
    with pytest.raises(ValueError, match=r"model\.n = 3.*inputs\.n = 2"):
        T.k1_conditional_loss(model, SparseInputs(2, p=0.1))
    with pytest.raises(TypeError, match="model must be"):
        low_order_terms(np.eye(3), SparseInputs(3, p=0.1))
    with pytest.raises(TypeError, match="inputs must be"):
        low_order_terms(model, 0.1)
    big = Model(np.full((1, 2), 1e100), activation="power", exponent=5)
    with pytest.raises(FloatingPointError, match="overflow"):
        low_order_terms(big, SparseInputs(2, p=0.1, values="uniform"))
