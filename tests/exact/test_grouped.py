"""Exact loss, gain and gradient under grouped input laws (THEORY §8) against enumeration."""

import numpy as np
import pytest
from naive import enumerate_grouped_inputs, gain_numpy, loss_numpy

import fastsuper as fs
from fastsuper import testing as T

LAWS = [
    dict(support=[-1.0, 0.5, 2.0], probs=[0.3, 0.3, 0.4]),
    dict(values="rademacher"),
    dict(values="constant"),
]
SPECS = [
    # mixed kinds, interleaved, two ungrouped features
    dict(groups=[0, 1, 2, 0, 1, -1, 2, -1], kind=["correlated", "exclusive", "partial"],
         q=[0.4, 0.5, 0.6], weights=[1, 1, 1, 1, 3, 1, 1, 1], r=[1, 1, 0.5, 1, 1, 1, 0.25, 1]),
    # every feature grouped: a correlated triple, an anticorrelated pair, a partial triple
    dict(groups=[[0, 1, 2], [3, 4], [5, 6, 7]], kind=["correlated", "anticorrelated", "partial"],
         q=[0.3, 0.7, 1.0], r=0.6),
    # singletons and a group of one of each kind
    dict(groups=[[0], [1], [2, 3]], kind=["exclusive", "partial", "correlated"], q=0.45, r=0.5),
]  # fmt: skip


def _inputs(spec, law, n=8, importance=None):
    return fs.SparseInputs(n, p=np.linspace(0.1, 0.5, n), importance=importance, **law, **spec)


def _model(n, d, m, bias, seed):
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(d, n)) * 0.6
    b = rng.normal(size=n) * 0.3 if bias else None
    return fs.Model(W, b=b, exponent=m)


@pytest.mark.parametrize("spec", range(len(SPECS)))
@pytest.mark.parametrize("law", range(len(LAWS)))
@pytest.mark.parametrize("m,bias", [(1, True), (2, False), (3, True)])
def test_exact_matches_enumeration(spec, law, m, bias):
    n, d = (8, 3) if LAWS[law].get("values") else (7, 3)
    imp = np.linspace(0.5, 2.0, n)
    spec_n = SPECS[spec] if n == 8 else _shrink(SPECS[spec])
    inputs = _inputs(spec_n, LAWS[law], n, imp)
    model = _model(n, d, m, bias, seed=10 * spec + law)
    X, w = enumerate_grouped_inputs(inputs)
    assert w.sum() == pytest.approx(1.0, abs=1e-13)
    b = model.b
    ref_loss = float(w @ loss_numpy(model.W, b, "power", m, X, imp))
    ref_gain = float(w @ gain_numpy(model.W, b, "power", m, X, imp))
    loss, gain = fs.exact_loss_and_gain(model, inputs)
    assert loss == pytest.approx(ref_loss, rel=1e-12, abs=1e-14)
    assert gain == pytest.approx(ref_gain, rel=1e-12, abs=1e-12 * abs(ref_loss))
    per = fs.exact_loss(model, inputs, per_feature=True)
    ref_per = w @ (imp * (X - (X @ (model.W.T @ model.W) + (0 if b is None else b)) ** m) ** 2)
    np.testing.assert_allclose(per, ref_per, rtol=1e-12, atol=1e-14)


def _shrink(spec):
    """The 8-feature spec on 7 features (drop the last feature)."""
    out = dict(spec)
    g = spec["groups"]
    if isinstance(g[0], list):
        out["groups"] = [[i for i in grp if i < 7] for grp in g]
    else:
        out["groups"] = g[:7]
    for key in ("weights", "r"):
        if key in spec and np.ndim(spec[key]):
            out[key] = spec[key][:7]
    return out


@pytest.mark.parametrize("spec", range(len(SPECS)))
@pytest.mark.parametrize("block_elems", [1 << 22, 1])
def test_gradient_matches_finite_differences(spec, block_elems, monkeypatch):
    """Also with one output row per block (``config.GROUPED_BLOCK_ELEMS``)."""
    monkeypatch.setattr(T.config, "GROUPED_BLOCK_ELEMS", block_elems)
    n, d, m = 8, 3, 3
    inputs = _inputs(SPECS[spec], LAWS[0], n, np.linspace(0.5, 2.0, n))
    model = _model(n, d, m, True, seed=spec)
    W, b = np.asarray(model.W, float), np.asarray(model.b, float)
    loss, dW, db = fs.exact_loss_grad(model, inputs)
    gain, gW, gb = fs.exact_gain_grad(model, inputs)
    np.testing.assert_array_equal(gW, -dW)
    np.testing.assert_array_equal(gb, -db)

    def f(Wx, bx):
        return fs.exact_loss(fs.Model(Wx, b=bx, exponent=m), inputs)

    h = 1e-6
    num_W = np.zeros_like(W)
    for a in range(d):
        for c in range(n):
            E = np.zeros_like(W)
            E[a, c] = h
            num_W[a, c] = (f(W + E, b) - f(W - E, b)) / (2 * h)
    num_b = np.array([(f(W, b + h * e) - f(W, b - h * e)) / (2 * h) for e in np.eye(n)])
    scale = max(np.abs(num_W).max(), 1.0)
    np.testing.assert_allclose(dW, num_W, rtol=0, atol=1e-7 * scale)
    np.testing.assert_allclose(db, num_b, rtol=0, atol=1e-7 * scale)
    assert fs.exact_loss_grad(model, inputs, wrt_bias=False)[2] is None


def test_singleton_groups_give_the_independent_closed_form():
    n, d, m = 12, 4, 3
    p = np.linspace(0.05, 0.6, n)
    model = _model(n, d, m, True, seed=3)
    plain = fs.SparseInputs(n, p=p, values="gaussian")
    ref, rW, rb = fs.exact_loss_grad(model, plain)
    for kind in ("correlated", "exclusive", "partial"):
        grouped = fs.SparseInputs(n, p=0.5, values="gaussian", groups=np.arange(n), q=p, kind=kind)
        loss, dW, db = fs.exact_loss_grad(model, grouped)
        assert loss == pytest.approx(ref, rel=1e-12)
        np.testing.assert_allclose(dW, rW, rtol=1e-10, atol=1e-12 * np.abs(rW).max())
        np.testing.assert_allclose(db, rb, rtol=1e-10, atol=1e-12 * np.abs(rb).max())
    half = fs.SparseInputs(n, p=p, values="gaussian", groups=[[0], [5]], q=p[[0, 5]])
    assert fs.exact_loss(model, half) == pytest.approx(ref, rel=1e-12)


def test_correlation_changes_the_loss_but_not_the_marginals():
    """Same marginals, different joint law: the linear model's loss depends on the correlation."""
    W = np.array([[1.0, 1.0]]) / np.sqrt(2)
    model = fs.Model(W, exponent=1)
    ind = fs.SparseInputs(2, p=0.2, values="constant")
    cor = fs.SparseInputs(2, groups=[[0, 1]], q=0.2, values="constant")
    exc = fs.SparseInputs(2, groups=[[0, 1]], q=0.4, kind="exclusive", values="constant")
    assert np.allclose(cor.p, ind.p) and np.allclose(exc.p, ind.p)
    assert np.array_equal(cor.independent().p, cor.p) and cor.independent().groups is None
    assert ind.independent() is ind
    losses = [fs.exact_loss(model, x) for x in (ind, cor, exc)]
    # x_hat = (x0 + x1) / 2 on both outputs: loss = E[(x0 - x1)**2] / 2
    assert losses[0] == pytest.approx((0.4 - 2 * 0.2**2) / 2, rel=1e-14)
    assert losses[1] == pytest.approx(0.0, abs=1e-16)  # x0 = x1 always
    assert losses[2] == pytest.approx(0.4 / 2, rel=1e-14)  # never both


def test_grouped_refusals():
    model = _model(4, 2, 3, False, seed=0)
    inputs = fs.SparseInputs(4, p=0.1, groups=[[0, 1]])
    with pytest.raises(ValueError, match="backend='cuda' does not compute grouped"):
        fs.exact_loss(model, inputs, backend="cuda")
    with pytest.raises(ValueError, match="k <= 1 terms .* grouped input laws"):
        fs.loss_bounds(model, inputs)
    relu = fs.Model(model.W, activation="relu_power", exponent=1)
    with pytest.raises(ValueError, match="no closed form"):
        fs.exact_loss(relu, inputs)


def test_huge_grouped_closed_form_is_refused_before_allocating(monkeypatch):
    monkeypatch.setattr(T.config, "MEMORY_LIMIT_BYTES", 1 << 24)
    n = 2000
    inputs = fs.SparseInputs(n, p=1e-3, groups=np.arange(n) // 2, kind="exclusive")
    model = fs.Model(np.ones((1, n)) * 1e-3, exponent=3)
    with pytest.raises(ValueError, match="grouped closed form at n = 2000 features in 1000"):
        fs.exact_loss(model, inputs)


@pytest.mark.parametrize("bias", [True, False])
def test_kernel_matches_the_numpy_reference(bias, monkeypatch):
    """The compiled per-row kernel against the NumPy row blocks, at n = 40 (beyond enumeration)."""
    monkeypatch.setattr(T.config, "GROUPED_BLOCK_ELEMS", 1 << 12)  # several row blocks
    n, d, m = 40, 5, 3
    labels = np.arange(n) % 9 - 1
    r = np.where(np.isin(labels, [2, 5, 6]), np.linspace(0.2, 1.0, n), 1.0)  # partial groups
    inputs = fs.SparseInputs(
        n, p=0.1, support=[-1.0, 0.5, 2.0], probs=[0.3, 0.3, 0.4],
        importance=np.linspace(0.5, 2.0, n), groups=labels,
        kind=["correlated", "exclusive", "partial", "correlated", "exclusive", "partial",
              "partial", "exclusive"],
        q=np.linspace(0.05, 0.4, 8), r=r, weights=np.arange(1.0, n + 1),
    )  # fmt: skip
    model = _model(n, d, m, bias, seed=4)
    terms, rW, rb = T.grouped_reference(model, inputs, m)
    per = fs.exact_loss(model, inputs, per_feature=True)
    ref = terms.imp * (terms.ex2 - 2.0 * terms.exzm + terms.ez2m)
    np.testing.assert_allclose(per, ref, rtol=1e-12, atol=1e-14 * np.abs(ref).max())
    _, dW, db = fs.exact_loss_grad(model, inputs)
    np.testing.assert_allclose(dW, rW, rtol=1e-11, atol=1e-13 * np.abs(rW).max())
    np.testing.assert_allclose(db, rb, rtol=1e-11, atol=1e-13 * np.abs(rb).max())
