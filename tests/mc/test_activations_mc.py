"""Monte Carlo with the smooth and piecewise-linear activations.

Against the plain NumPy reference on the same samples (round-off), the
stratified estimator (exact k <= 1 terms plus sampled k >= 2) within 5
standard errors, enumeration of a discrete law, and the rigorous bounds.
"""

import numpy as np
import pytest
from builders import random_model
from naive import enumerate_inputs, gain_numpy, loss_numpy

import fastsuper as fs
from fastsuper.core import config
from fastsuper.core.bundles import activation
from fastsuper.core.jit import kernel_njit
from fastsuper.core.vecmath import AVAILABLE, fast_domain, vector_domain
from fastsuper.mc import kernels_cpu as K
from fastsuper.mc.simd import tile_zx

CASES = [
    ("gelu", None),
    ("gelu_tanh", None),
    ("tanh", None),
    ("softplus", 2.0),
    ("sigmoid", None),
    ("silu", None),
    ("leaky_relu", 0.1),
    ("identity", None),
]


@pytest.mark.parametrize("act,param", CASES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("path", ["dense", "columns", "blocked", "columns_blocked"])
def test_matches_numpy_reference_on_same_samples(act, param, dtype, path):
    n, N = 25, 3000
    model = random_model(n, 5, act, None, dtype=dtype, param=param)
    imp = 0.9 ** np.arange(n)
    inputs = fs.SparseInputs(n, p=np.linspace(0.02, 0.3, n), values="gaussian", importance=imp)
    est = fs.estimate_loss(model, inputs, N, seed=4, path=path, per_feature=True, block_size=500)
    X = fs.sample(inputs, N, seed=4, dtype=dtype).to_dense()
    loss = loss_numpy(model.W, model.b, act, 1, X, imp, param=param)
    gain = gain_numpy(model.W, model.b, act, 1, X, imp, param=param)
    rtol = 1e-10 if dtype == np.float64 else 1e-4
    assert est.mean == pytest.approx(loss.mean(), rel=rtol)
    assert est.gain_mean == pytest.approx(gain.mean(), rel=rtol, abs=rtol * abs(loss.mean()))
    assert est.stderr == pytest.approx(
        loss.std(ddof=1) / np.sqrt(N), rel=1e-3 if dtype == np.float32 else 1e-9
    )
    assert est.per_feature.sum() == pytest.approx(est.mean, rel=1e-9)


@pytest.mark.parametrize("act,param", [*CASES, ("softplus", 1.0)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("scale", [0.5, 40.0])
def test_vectorised_tiles_match_numpy_reference(act, param, dtype, scale):
    """Path "columns_blocked" without per-feature sums: the vectorised activations.

    Several tiles with a padded last one, and blocks whose samples do not
    fill a whole group of tiles (the activation is applied to the tiles of a
    few samples at once); ``scale`` 40 puts pre-activations in the far
    tails, where the accurate per-element forms take over.  softplus with
    ``c = 1`` has a loop of its own.
    """
    n, N = 150, 1500
    model = random_model(n, 4, act, None, dtype=dtype, param=param, scale=scale)
    imp = 0.98 ** np.arange(n)
    inputs = fs.SparseInputs(n, p=0.03, values="gaussian", importance=imp)
    est = fs.estimate_loss(model, inputs, N, seed=5, path="columns_blocked", block_size=499)
    X = fs.sample(inputs, N, seed=5, dtype=dtype).to_dense()
    loss = loss_numpy(model.W, model.b, act, 1, X, imp, param=param)
    gain = gain_numpy(model.W, model.b, act, 1, X, imp, param=param)
    rtol = 1e-10 if dtype == np.float64 else 1e-4
    assert est.mean == pytest.approx(loss.mean(), rel=rtol)
    assert est.gain_mean == pytest.approx(gain.mean(), rel=rtol, abs=rtol * abs(loss.mean()))


@pytest.mark.parametrize("act,param", CASES)
@pytest.mark.parametrize("values", ["gaussian", "uniform", "uniform_sym"])
def test_naive_agrees_with_stratified(act, param, values):
    """Naive MC against exact k <= 1 plus sampled k >= 2: within 5 standard errors."""
    n = 30
    model = random_model(n, 6, act, None, param=param, scale=0.8, seed=2)
    inputs = fs.SparseInputs(n, p=0.03, values=values, importance=1.0 + np.arange(n) % 3)
    naive = fs.estimate_loss(model, inputs, 100_000, seed=11)
    strat = fs.estimate_loss(model, inputs, 20_000, seed=12, method="stratified")
    se = np.hypot(naive.stderr, strat.stderr)
    assert abs(naive.mean - strat.mean) < 5 * se
    assert strat.stderr < naive.stderr  # the k <= 1 strata carry no sampling error
    gse = np.hypot(naive.gain_stderr, strat.gain_stderr)
    assert abs(naive.gain_mean - strat.gain_mean) < 5 * gse


@pytest.mark.parametrize("act,param", CASES)
def test_enumeration_and_bounds(act, param):
    """Discrete law, n = 6: MC and stratified against enumeration; the bounds hold."""
    n = 6
    model = random_model(n, 3, act, None, bias=True, seed=3, param=param)
    support, probs = [-1.0, 0.5, 2.0], [0.3, 0.3, 0.4]
    p = np.array([0.1, 0.3, 0.5, 0.2, 0.05, 0.6])
    imp = np.linspace(0.5, 2, n)
    inputs = fs.SparseInputs(n, p=p, support=support, probs=probs, importance=imp)
    X, w = enumerate_inputs(p, support, probs)
    exact = float(w @ loss_numpy(model.W, model.b, act, 1, X, imp, param=param))
    est = fs.estimate_loss(model, inputs, 50_000, seed=8)
    assert abs(est.mean - exact) < 5 * est.stderr
    strat = fs.estimate_loss(model, inputs, 20_000, seed=8, method="stratified")
    assert abs(strat.mean - exact) < 5 * strat.stderr
    bounds = fs.loss_bounds(model, inputs)
    assert bounds.lower <= exact <= bounds.upper
    report = fs.check(model, inputs, 50_000, seed=8)
    assert report.kind == "bounds" and report.passed


@pytest.mark.parametrize("act,param", [("sigmoid", None), ("softplus", 0.5), ("gelu", None)])
def test_bounds_hold_for_uniform_values(act, param):
    n = 8
    model = random_model(n, 3, act, None, bias=True, seed=5, param=param)
    inputs = fs.SparseInputs(n, p=0.2, values="uniform_sym")
    est = fs.estimate_loss(model, inputs, 200_000, seed=1)
    bounds = fs.loss_bounds(model, inputs)
    assert bounds.lower - 5 * est.stderr <= est.mean <= bounds.upper + 5 * est.stderr
    assert np.isfinite(bounds.upper)


_SMOOTH = [("gelu", None), ("gelu_tanh", None), ("tanh", None), ("sigmoid", None),
           ("silu", None), ("softplus", 1.0), ("softplus", 2.5)]  # fmt: skip


@kernel_njit
def _fused_and_stored(P, b, imp, cidx, cval, act):
    """Each tile's loss by the fused smooth kernel (negative: handed back) and by the
    stored tile finished by the vector loop, for one sample: shape ``(tiles, 2)``."""
    n, width = b.shape[0], P.shape[1]
    bp, ip, zb, _, _, _, _, _, _, grp = K.tile_workspace(P, b, imp, n, 1)
    lo, hi = vector_domain(zb, act.code, act.c)
    e1 = cidx.shape[0]
    out = np.empty((P.shape[0] // n, 2))
    for t in range(out.shape[0]):
        j0, poff = t * width, t * n * width
        a = K._tile_smooth(act.code, act.c, lo, hi, P, poff, bp, j0, cidx, cval, 0, e1, zb, ip)
        if not a >= 0.0:
            K._zx_loss(zb, width, ip, j0, act, grp[2])  # leaves the tile buffer clean
        tile_zx(P, poff, bp, j0, cidx, cval, 0, e1, zb, ip)
        out[t, 0], out[t, 1] = a, K._zx_loss(zb, width, ip, j0, act, grp[2])
    return out


@pytest.mark.parametrize("act,param", _SMOOTH)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("tile_bytes", [config.TILE_BYTES, config.NARROW_TILE_BYTES])
def test_fused_smooth_tiles_equal_the_stored_tiles(act, param, dtype, tile_bytes):
    """The smooth activations applied in registers (``MODE_SMOOTH``) give each tile's loss
    bit for bit as the tile stored and finished by the vector loop (``MODE_ZX``), inside a
    fast-math kernel as the path compiles them; a tile with a pre-activation outside the
    vector form's domain is handed back (a negative return), and there are such tiles;
    without AVX-512 every tile is."""
    n = 300
    rng = np.random.default_rng(11)
    model = random_model(n, 6, act, None, dtype=dtype, param=param, scale=0.3)
    W = model.W.copy()
    W[:, 7] *= 1e3  # feature 7 pushes its tile past every finite domain
    model = fs.Model(W, rng.standard_normal(n).astype(dtype) * 0.05, activation=act, param=param)
    bundle = activation(model)
    P = K.column_panels(model.A.astype(dtype), tile_bytes // np.dtype(dtype).itemsize)
    imp = (0.99 ** np.arange(n)).astype(dtype)
    fused, handed_back = 0, 0
    for _ in range(60):
        k = int(rng.integers(1, 6))
        cidx = np.sort(rng.choice(n, k, replace=False)).astype(np.int64)
        cidx[0] = 7 if rng.random() < 0.2 else cidx[0]
        cidx = np.unique(cidx)
        cval = rng.standard_normal(cidx.size).astype(dtype)
        out = _fused_and_stored(P, model.b, imp, cidx, cval, bundle)
        ok = out[:, 0] >= 0.0
        np.testing.assert_array_equal(out[ok, 0], out[ok, 1])
        fused += int(ok.sum())
        handed_back += int((~ok).sum())
    if not AVAILABLE:  # no vector forms: every tile is handed back
        assert fused == 0
        return
    assert fused > 0
    lo, hi = fast_domain(bundle.code, bundle.c)
    if hi < 1e6:  # feature 7's tiles are outside the domain
        assert handed_back > 0
