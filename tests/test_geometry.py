"""Feature geometry against plain references: exact polytopes (rotated, permuted, scaled),
tegum products of them, perturbed versions, random weights, and the pentagon ``fit`` trains."""

from __future__ import annotations

import numpy as np
import pytest

from fastsuper import fit
from fastsuper.geometry import (
    POLYTOPES,
    STICKY_FRACTIONS,
    dimensions_per_feature,
    feature_dimensionality,
    feature_geometry,
    nearest_sticky,
    polytope,
    recognise_polytope,
    tegum_factors,
)
from tests.naive_geometry import components, dimensionality, same_shape

NAMES = sorted(POLYTOPES)


def _rotation(d, rng):
    Q, R = np.linalg.qr(rng.normal(size=(d, d)))
    return Q * np.sign(np.diag(R))


def _tegum(names, d, rng, scale=1.0, n_zero=0):
    """A tegum product of the named polytopes in R^d: orthogonal blocks, then a random
    rotation, the columns shuffled; ``n_zero`` zero columns.  Returns W and the factors."""
    dims = [POLYTOPES[s][1] for s in names]
    assert sum(dims) <= d
    cols, at = [], 0
    for s, k in zip(names, dims):
        block = np.zeros((d, POLYTOPES[s][0]))
        block[at : at + k] = polytope(s)
        cols.append(block)
        at += k
    cols.append(np.zeros((d, n_zero)))
    W = scale * _rotation(d, rng) @ np.hstack(cols)
    perm = rng.permutation(W.shape[1])
    W = W[:, perm]
    inv = np.argsort(perm)
    factors, start = [], 0
    for s in names:
        k = POLYTOPES[s][0]
        factors.append((sorted(inv[start : start + k].tolist()), s))
        start += k
    factors.sort()
    return W, [f for f, _ in factors], [s for _, s in factors]


@pytest.mark.parametrize("name", NAMES)
def test_polytopes_are_tight_frames(name):
    """Each polytope: unit columns, frame operator (k/dim) I, so every D_i = dim/k
    (2/5, 2/3, 1/2, 3/4, 3/8), equal to the naive loop and to a sticky fraction."""
    P = polytope(name)
    k, dim = POLYTOPES[name]
    assert P.shape == (dim, k)
    np.testing.assert_allclose(np.linalg.norm(P, axis=0), 1.0, rtol=1e-14)
    np.testing.assert_allclose(P @ P.T, k / dim * np.eye(dim), atol=1e-14)
    D = feature_dimensionality(P)
    np.testing.assert_allclose(D, dim / k, rtol=1e-13)
    np.testing.assert_allclose(D, dimensionality(P), rtol=1e-13)
    assert any(abs(dim / k - f) < 1e-15 for f in STICKY_FRACTIONS)


def test_dimensionality_matches_naive_on_random_weights():
    rng = np.random.default_rng(1)
    for d, n in [(1, 3), (3, 7), (5, 20)]:
        W = rng.normal(size=(d, n))
        W[:, 0] = 0.0
        np.testing.assert_allclose(feature_dimensionality(W), dimensionality(W), rtol=1e-12)
        assert dimensions_per_feature(W) == pytest.approx(d / np.sum(W**2), rel=1e-14)
    assert dimensions_per_feature(np.zeros((2, 3))) == np.inf


def test_nearest_sticky():
    vals, labels = nearest_sticky([1.0, 0.76, 0.66, 0.49, 0.41, 0.37, 0.02, 0.9])
    np.testing.assert_array_equal(vals, [1, 0.75, 2 / 3, 0.5, 0.4, 0.375, 0, 1])
    assert labels == ["1", "3/4", "2/3", "1/2", "2/5", "3/8", "0", "1"]
    # against the plain minimum over the list
    rng = np.random.default_rng(2)
    D = rng.uniform(0, 1, 200)
    ref = [min(STICKY_FRACTIONS, key=lambda f: (abs(x - f), -f)) for x in D]
    np.testing.assert_array_equal(nearest_sticky(D)[0], ref)
    with pytest.raises(ValueError, match="finite"):
        nearest_sticky([np.nan])


@pytest.mark.parametrize("name", NAMES)
def test_each_polytope_recognised_rotated_permuted_scaled(name):
    rng = np.random.default_rng(3)
    k, dim = POLYTOPES[name]
    W, factors, _ = _tegum([name], dim + 2, rng, scale=0.8)
    assert [f.tolist() for f in tegum_factors(W)] == factors
    assert recognise_polytope(W.T @ W) == name
    assert same_shape(W, polytope(name), 1e-12)  # the naive check over all permutations


def test_tegum_products_split_into_their_factors():
    """Tegum products of several polytopes, with dropped features: the factors are the
    blocks (and agree with the naive components), each factor's shape is recognised, the
    dimensionalities are the per-factor dim/k."""
    rng = np.random.default_rng(4)
    cases = [
        (["digon", "digon", "triangle"], 5, 2),
        (["pentagon", "tetrahedron", "digon"], 7, 1),
        (["square antiprism", "pentagon", "triangle", "digon"], 9, 3),
    ]
    for names, d, n_zero in cases:
        W, factors, shapes = _tegum(names, d, rng, n_zero=n_zero)
        got = tegum_factors(W)
        assert [f.tolist() for f in got] == factors == components(W, 0.1, 0.3)
        g = feature_geometry(W)
        assert g.shapes == shapes
        assert g.feature_shape.count("not represented") == n_zero
        for f, s in zip(g.factors, g.shapes):
            k, dim = POLYTOPES[s]
            np.testing.assert_allclose(g.D[f], dim / k, rtol=1e-12)
        assert g.dimensions_per_feature == pytest.approx(d / (W.shape[1] - n_zero))


def test_perturbed_polytopes_still_recognised_and_naive_agrees():
    """Noise of 0.02 per entry: the factors and shapes survive (the naive permutation check
    agrees within the same tolerance); D_i stays within 0.05 of dim/k (2/5 and 3/8 are
    only 0.025 apart, so the nearest sticky label of a perturbed pentagon may flip)."""
    rng = np.random.default_rng(5)
    names = ["pentagon", "tetrahedron", "digon"]
    for _ in range(5):
        W, factors, _ = _tegum(names, 7, rng)
        W = W + 0.02 * rng.normal(size=W.shape)
        g = feature_geometry(W)
        assert [f.tolist() for f in g.factors] == factors == components(W, 0.1, 0.3)
        assert sorted(g.shapes) == sorted(names)
        for f, s in zip(g.factors, g.shapes):
            k, dim = POLYTOPES[s]
            assert same_shape(W[:, f], polytope(s), 0.15)
            np.testing.assert_allclose(g.D[f], dim / k, atol=0.05)


def test_random_and_wrong_shapes_are_other():
    rng = np.random.default_rng(6)
    for k, dim in [(5, 2), (3, 2), (4, 3), (8, 3)]:
        U = rng.normal(size=(dim, k))
        U /= np.linalg.norm(U, axis=0)
        shape = recognise_polytope(U.T @ U)
        name = [s for s, (kk, dd) in POLYTOPES.items() if kk == k][0]
        assert (shape == name) == same_shape(U, polytope(name), 0.15) or shape == "other"
        assert shape in ("other", name)
    # the right cosines but very different norms; an orthonormal triple; a square
    assert recognise_polytope(np.diag([1.0, 0.2]) @ [[1, -1], [-1, 1]] @ np.diag([1, 0.2])) == (
        "other"
    )
    assert recognise_polytope(np.eye(3)) == "other"
    square = np.array([[1.0, 0.0, -1.0, 0.0], [0.0, 1.0, 0.0, -1.0]])
    assert recognise_polytope(square.T @ square) == "other"
    assert recognise_polytope([[2.0]]) == "dedicated"
    with pytest.raises(ValueError, match="diagonal"):
        recognise_polytope([[0.0, 0.0], [0.0, 1.0]])


def test_threshold_edges_and_errors():
    """An edge needs |w_i_hat . w_j| > eps from one side; features below norm_min are out."""
    W = np.array([[1.0, 0.0, 0.05], [0.0, 1.0, 1.0]])  # w_2 . w_0_hat = 0.05
    assert [f.tolist() for f in tegum_factors(W, eps=0.04)] == [[0, 1, 2]]
    assert [f.tolist() for f in tegum_factors(W, eps=0.06)] == [[0], [1, 2]]
    assert tegum_factors(np.zeros((2, 3))) == []
    with pytest.raises(ValueError, match="eps"):
        tegum_factors(W, eps=-1.0)
    with pytest.raises(ValueError, match="name"):
        polytope("cube")


def test_trained_pentagon_is_recognised():
    """fit's sparse n = 5, d = 2 model (p = 0.02, importance 0.9**i) is a pentagon."""
    res = fit(5, 2, n_instances=2, p=0.02, importance=0.9 ** np.arange(5), steps=3000,
              lr=1e-2, seed=0)  # fmt: skip
    for k in range(2):
        g = feature_geometry(res.W[k])
        assert g.shapes == ["pentagon"] and g.sticky == ["2/5"] * 5


hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

WEIGHTS = hnp.arrays(
    np.float64,
    hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=6),
    elements=st.floats(-3, 3, allow_nan=False).map(lambda x: 0.0 if abs(x) < 1e-3 else x),
)


@settings(max_examples=80, derandomize=True, deadline=None)
@given(WEIGHTS)
def test_geometry_of_any_weights(W):
    """Any finite W: D in [0, 1] as the naive loop, the factors partition the represented
    features (the naive components), every label is a known one."""
    g = feature_geometry(W)
    assert np.all((g.D >= 0) & (g.D <= 1 + 1e-12))
    np.testing.assert_allclose(g.D, dimensionality(W), rtol=1e-9, atol=1e-15)
    assert [f.tolist() for f in g.factors] == components(W, 0.1, 0.3)
    rep = np.flatnonzero(np.linalg.norm(W, axis=0) >= 0.3)
    assert sorted(np.concatenate(g.factors).tolist() if g.factors else []) == rep.tolist()
    assert set(g.shapes) <= set(POLYTOPES) | {"dedicated", "other"}
