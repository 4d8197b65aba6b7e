"""The forward pass against the NumPy reference, every activation and dtype."""

import numpy as np
import pytest
from builders import ACTIVATION_CASES as CASES
from naive import forward_numpy

import fastsuper as fs

TOL = {np.float64: 1e-12, np.float32: 2e-5}


@pytest.mark.parametrize("act,a", CASES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_forward_dense_and_sparse(act, a, dtype):
    rng = np.random.default_rng(1)
    n, d = 23, 6
    W = (rng.normal(size=(d, n)) / 2).astype(dtype)
    b = (rng.normal(size=n) / 4).astype(dtype)
    model = fs.Model(W, b, activation=act, exponent=a)
    batch = fs.sample(fs.SparseInputs(n, p=0.2, values="gaussian"), 300, seed=7, dtype=dtype)
    X = batch.to_dense()
    ref = forward_numpy(W, b, act, a, X)
    scale = np.abs(ref).max()
    for got in (fs.forward(model, X), fs.forward(model, batch)):
        assert got.dtype == dtype and got.shape == X.shape
        np.testing.assert_allclose(got, ref, rtol=TOL[dtype], atol=TOL[dtype] * scale)
    one = fs.forward(model, X[3])
    np.testing.assert_allclose(one, ref[3], rtol=TOL[dtype], atol=TOL[dtype] * scale)
