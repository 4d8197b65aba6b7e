"""fastsuper.theory: constants, exact values and the equality cases of THEORY §5."""

import itertools
import math

import numpy as np
import pytest

import fastsuper as fs
from fastsuper import theory as th


def test_theory_is_a_package_attribute():
    assert fs.theory is th
    assert fs.theory.sphere_dimension(10, 3) == 112.0


@pytest.mark.parametrize("d, m", [(1, 3), (2, 1), (2, 3), (3, 2), (10, 3), (15, 3), (7, 5)])
def test_sphere_dimension_is_the_inverse_sphere_moment(d, m):
    # E u_1^(2m) over the unit sphere of R^d via Beta functions (independent formula)
    mean = math.exp(
        math.lgamma(m + 0.5) + math.lgamma(d / 2) - math.lgamma(0.5) - math.lgamma(d / 2 + m)
    )
    assert th.sphere_dimension(d, m) == pytest.approx(1 / mean, rel=1e-13)


def test_rank_counts_against_counting_monomials():
    for d, m in [(2, 3), (4, 2), (10, 3)]:
        got = th.rank_counts(d, m)
        monomials = sum(1 for _ in itertools.combinations_with_replacement(range(d), m))
        assert got == {"d^m": d**m, "symmetric": monomials, "D": th.sphere_dimension(d, m)}
        assert got["D"] <= got["symmetric"] <= got["d^m"]


def test_kappa_from_gaussian_moments():
    # mu_4^2 / mu_6 = 9 / 15; uniform U[0,1], m = 2: (1/4)^2 / (1/5)
    assert th.kappa("gaussian", 3) == pytest.approx(0.6, rel=1e-15)
    assert th.kappa("uniform", 2) == pytest.approx(5 / 16, rel=1e-15)
    assert th.kappa("rademacher", 2) == 0.0  # even m, symmetric law: nothing reconstructed


def test_paper_orders_values():
    o = th.paper_orders(10, 3, np.array([1e-6, 1e-3, 0.5]))
    np.testing.assert_allclose(o["sparse"], [1e-3, 1.0, 500.0], rtol=1e-14)
    np.testing.assert_allclose(o["dense"], [0.1, 1.0, 10 * 0.5 ** (1 / 3)], rtol=1e-14)
    np.testing.assert_allclose(o["lower"], [1e-3, 1.0, 10 * 0.5 ** (1 / 3)], rtol=1e-14)
    assert o["saturation"] == 10.0


@pytest.mark.parametrize("law", ["gaussian", "uniform", "rademacher"])
@pytest.mark.parametrize("p", [1e-3, 0.3, 0.9])
def test_unsuperposed_construction_exact_gain_at_every_p(law, p):
    n, d, m = 9, 4, 3
    W = th.unsuperposed(n, d, m, law)
    gain = fs.exact_gain(fs.Model(W, exponent=m), fs.SparseInputs(n, p=p, values=law))
    assert gain == pytest.approx(th.unsuperposed_gain(n, d, m, p, law), rel=1e-12)
    # and the §5.1 formula term by term
    mu = fs.ValueLaw(law).moment
    a = W[0, 0] ** 2
    assert gain == pytest.approx(d * p * (2 * mu(m + 1) * a**m - mu(2 * m) * a ** (2 * m)))


@pytest.mark.parametrize("law", ["gaussian", "constant", "uniform"])
def test_linear_optimum_is_attained_and_not_beaten(law):
    n, d, p = 6, 2, 0.3
    inputs = fs.SparseInputs(n, p=p, values=law)
    mu1, mu2 = inputs.moment(1), inputs.moment(2)
    M = (p * mu2 - p * p * mu1 * mu1) * np.eye(n) + p * p * mu1 * mu1 * np.ones((n, n))
    evals, evecs = np.linalg.eigh(M)
    W = evecs[:, -d:].T  # projection on the top-d eigenvectors
    best = th.linear_optimum(n, d, p, law)
    assert fs.exact_gain(fs.Model(W, exponent=1), inputs) == pytest.approx(best, rel=1e-12)
    assert best == pytest.approx(evals[-d:].sum(), rel=1e-12)
    fit = fs.fit_exact(n, d, m=1, p=p, values=law, restarts=3)
    assert fit.gain <= best * (1 + 1e-9)
    assert fit.gain == pytest.approx(best, rel=1e-7)


def test_best_scale_is_the_maximum_along_the_ray():
    rng = np.random.default_rng(3)
    W = rng.normal(size=(3, 12))
    p = 0.05
    inputs = fs.SparseInputs(12, p=p, values="gaussian")
    Wb, g = th.best_scale(W, p, m=3)
    assert fs.exact_gain(fs.Model(Wb), inputs) == pytest.approx(g, rel=1e-12)
    for f in (0.97, 0.995, 1.005, 1.03):
        assert fs.exact_gain(fs.Model(f * Wb), inputs) < g
    # the 1-D maximum found by a fine grid agrees
    ts = np.linspace(0.5, 1.5, 2001)
    grid = [fs.exact_gain(fs.Model(t * Wb), inputs) for t in ts[::50]]
    assert max(grid) <= g * (1 + 1e-12)


def test_random_frame_value_is_the_mean_of_F():
    # E F over random frames at the common norm of THEORY §5.3 equals kappa n D / (n + D - 1)
    n, d, m = 12, 3, 3
    norm = th.random_frame_norm(n, d, m, "gaussian")
    vals = np.array(
        [
            th.first_order_objective(th.random_frame(n, d, norm, [7, k]), "gaussian", m)
            for k in range(3000)
        ]
    )
    target = th.random_frame_value(n, d, m, "gaussian")
    se = vals.std(ddof=1) / math.sqrt(vals.size)
    assert abs(vals.mean() - target) < 4 * se
    assert np.all(vals <= th.first_order_cap(d, m, "gaussian", n=n) * (1 + 1e-12))


@pytest.mark.parametrize("n", [4, 5, 7, 12])
@pytest.mark.parametrize("m, law", [(3, "gaussian"), (3, "uniform"), (1, "rademacher")])
def test_equally_spaced_lines_attain_the_cap(n, m, law):
    if n < m + 1:
        pytest.skip("needs n >= m + 1")
    W = th.equally_spaced_lines(n, m, law)
    cap = th.kappa(law, m) * th.sphere_dimension(2, m)
    assert th.first_order_objective(W, law, m) == pytest.approx(cap, rel=1e-13)
    # the exact gain of §3 at tiny p: gain / p -> F(A) (to O(p))
    p = 1e-9
    g = fs.exact_gain(fs.Model(W, exponent=m), fs.SparseInputs(n, p=p, values=law))
    assert g / p == pytest.approx(cap, rel=1e-6)


def test_too_few_equally_spaced_lines_miss_the_cap():
    # n = m lines: cos^(2m) is no longer averaged exactly, the sum exceeds n^2 / D
    W = th.equally_spaced_lines(3, 3)
    assert th.first_order_objective(W, "gaussian", 3) < 0.6 * 3 * (1 - 1e-3)


def test_icosahedron_lines_attain_the_cap_for_m2():
    W = th.icosahedron_lines(2, "constant")
    U = W / np.linalg.norm(W, axis=0)
    G = U.T @ U
    off = np.abs(G[~np.eye(6, dtype=bool)])
    np.testing.assert_allclose(off, 1 / math.sqrt(5), rtol=1e-14)  # equiangular
    for law in ("constant", "uniform"):
        W = th.icosahedron_lines(2, law)
        cap = th.kappa(law, 2) * th.sphere_dimension(3, 2)
        assert th.first_order_objective(W, law, 2) == pytest.approx(cap, rel=1e-13)


def test_F_never_exceeds_the_cap():
    rng = np.random.default_rng(0)
    for _ in range(200):
        d, n = int(rng.integers(2, 5)), int(rng.integers(1, 40))
        W = rng.normal(size=(d, n)) * rng.uniform(0.3, 1.2)
        W[:, rng.random(n) < 0.3] *= 0.2
        Wb = W * th.optimal_norm(W, 3) / np.linalg.norm(W, axis=0)
        for V in (W, Wb):
            F = th.first_order_objective(V, "gaussian", 3)
            assert F <= th.first_order_cap(d, 3, "gaussian", n=n) * (1 + 1e-12)


def test_optimised_gain_near_cap_at_small_p():
    # THEORY §5.3: L-BFGS at d = 4, m = 3, n = 60, p = 1e-4 reaches gain/p within 1% of kappa D
    fit = fs.fit_exact(60, 4, m=3, p=1e-4, restarts=2, maxiter=400)
    cap = th.first_order_cap(4, 3, "gaussian")
    assert 0.99 * cap <= fit.gain / 1e-4 <= cap


@pytest.mark.parametrize(
    "call, exc, words",
    [
        (lambda: th.unsuperposed_gain(10, 3, 3, 0.0), ValueError, "p must be a probability"),
        (lambda: th.unsuperposed_gain(10, 3, 3, "a"), TypeError, "p must be"),
        (lambda: th.linear_optimum(0, 3, 0.1), ValueError, "n must be an integer >= 1"),
        (lambda: th.paper_orders(10, 3, [0.1, 2.0]), ValueError, "p must lie in (0, 1]"),
        (lambda: th.best_scale(np.ones(3), 0.1), ValueError, "W"),
        (lambda: th.equally_spaced_lines(2.5), TypeError, "n must be an integer"),
        (lambda: th.optimal_norm(np.eye(2), 2, "gaussian"), ValueError, "no positive optimum"),
        (lambda: th.rank_counts(3, 0), ValueError, "m must be an integer >= 1"),
    ],
)
def test_bad_input_is_a_clear_error(call, exc, words):
    with pytest.raises(exc, match=None) as info:
        call()
    assert words in str(info.value)
