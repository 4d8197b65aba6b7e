"""The exact values on CUDA (row-wise power sums on the GPU) against the CPU."""

import numpy as np
import pytest
from builders import random_model
from cudatools import ForeignDeviceArray, assert_close, cuda_or_skip

import fastsuper as fs
from fastsuper import testing as T

cuda = cuda_or_skip()

pytestmark = [pytest.mark.cudasim, pytest.mark.usefixtures("small_cuda_launches")]


# --------------------------------------------------------------------------
# exact loss: row-wise power sums


def _power_sums_numpy(A, c):
    n = A.shape[0]
    off = A * (1.0 - np.eye(n))
    out = np.zeros_like(c)
    for r in range(1, c.shape[0]):
        out[r] = (off**r) @ c[r]
    return out


@pytest.mark.parametrize("symmetric", [True, False])
def test_power_sums_match_numpy(symmetric):
    rng = np.random.default_rng(5)
    n, R = 13, 6
    W = rng.normal(size=(4, n)) * 0.6
    A = W.T @ W if symmetric else rng.normal(size=(n, n))
    c = rng.normal(size=(R + 1, n))
    got = T.exact_power_sums_cuda(A, c, symmetric=symmetric)
    np.testing.assert_allclose(got, _power_sums_numpy(A, c), rtol=1e-12, atol=1e-14)
    assert np.all(got[0] == 0.0)


def test_power_sums_accept_device_and_foreign_arrays():
    rng = np.random.default_rng(6)
    n = 9
    W = rng.normal(size=(3, n))
    A = W.T @ W
    c = rng.normal(size=(5, n))
    ref = _power_sums_numpy(A, c)
    A_d, c_d = cuda.to_device(A), cuda.to_device(c)
    out_d = T.exact_power_sums_cuda(A_d, c_d, to_host=False)
    np.testing.assert_allclose(out_d.copy_to_host(), ref, rtol=1e-12, atol=1e-14)
    got = T.exact_power_sums_cuda(ForeignDeviceArray(A_d), ForeignDeviceArray(c_d))
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match="square"):
        T.exact_power_sums_cuda(A[:, :4], c)
    with pytest.raises(ValueError, match="1 <= R"):
        T.exact_power_sums_cuda(A, c[:1])
    with pytest.raises(TypeError, match="c is a device array of dtype float32"):
        T.exact_power_sums_cuda(A_d, cuda.to_device(c.astype(np.float32)))


def test_power_sums_are_the_exact_loss_cumulants():
    """What the exact loss's row-block loop computes: kappa_r(y_j) - [r = 1] b_j."""
    n, m = 11, 3
    model = random_model(n, 4, bias=False)
    inputs = fs.SparseInputs(n, p=np.linspace(0.05, 0.4, n), values="gaussian")
    fw = T.exact_forward(model, inputs, m)
    ky = T.cumulants_from_moments(fw.my, fw.binom)
    got = T.exact_power_sums_cuda(fw.A, fw.kx)
    np.testing.assert_allclose(got[1:], ky[1:], rtol=1e-9, atol=1e-12)


# --------------------------------------------------------------------------
# exact loss, gain and gradient with the power sums on the GPU

EXACT_SETTINGS = [
    dict(n=7, d=3, m=3, bias=True, inputs=dict(p=np.linspace(0.05, 0.4, 7), values="gaussian")),
    dict(n=5, d=2, m=2, bias=False,
         inputs=dict(p=0.3, values="uniform", importance=0.8 ** np.arange(5))),
    dict(n=4, d=4, m=1, bias=True, inputs=dict(p=0.5, values="rademacher")),
]  # fmt: skip


@pytest.mark.parametrize("cfg", EXACT_SETTINGS, ids=lambda c: f"n{c['n']}-m{c['m']}")
def test_exact_backend_cuda_matches_cpu(cfg):
    model = random_model(cfg["n"], cfg["d"], "power", cfg["m"], bias=cfg["bias"])
    inputs = fs.SparseInputs(cfg["n"], **cfg["inputs"])
    for func in (fs.exact_loss, fs.exact_gain):
        for pf in (False, True):
            got = func(model, inputs, per_feature=pf, backend="cuda")
            ref = func(model, inputs, per_feature=pf)
            assert_close(got, ref)
    got = fs.exact_loss_and_gain(model, inputs, backend="cuda")
    ref = fs.exact_loss_and_gain(model, inputs, backend="cpu")
    assert_close(got, ref)
    (lg, dWg, dbg), (lc, dWc, dbc) = (
        fs.exact_loss_grad(model, inputs, backend=bk) for bk in ("cuda", "cpu")
    )
    assert_close(lg, lc)
    assert_close(dWg, dWc)
    assert_close(dbg, dbc)
    (gg, dWg, dbg), (gc, dWc, dbc) = (
        fs.exact_gain_grad(model, inputs, backend=bk) for bk in ("cuda", "cpu")
    )
    assert_close(gg, gc)
    assert_close(dWg, dWc)
    assert_close(dbg, dbc)


def test_exact_backend_is_validated():
    model = random_model(3, 2, "power", 2)
    inputs = fs.SparseInputs(3, p=0.5)
    for func in (fs.exact_loss, fs.exact_gain, fs.exact_loss_and_gain):
        with pytest.raises(ValueError, match="backend must be one of"):
            func(model, inputs, backend="gpu")
    with pytest.raises(ValueError, match="backend must be one of"):
        fs.exact_loss_grad(model, inputs, backend=None)
