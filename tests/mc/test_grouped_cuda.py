"""Grouped input laws on the CUDA backends (simulator): the CPU's samples and numbers."""

import numpy as np
import pytest
from cudatools import cuda_or_skip

import fastsuper as fs
from fastsuper import testing as T

cuda = cuda_or_skip()

pytestmark = [pytest.mark.cudasim, pytest.mark.usefixtures("small_cuda_launches")]


def _law(values="gaussian"):
    return fs.SparseInputs(
        13, p=0.1, values=values, groups=[0, 1, 2, 0, 1, -1, 2, 2, 0, -1, 1, 1, -1],
        kind=["correlated", "exclusive", "partial"], q=[0.3, 0.5, 0.4], r=0.5,
    )  # fmt: skip


@pytest.mark.parametrize("values", ["gaussian", "rademacher"])
def test_grouped_samples_identical_to_cpu(values):
    inputs = _law(values)
    got = T.sample_cuda(inputs, 200, seed=11, start=7)
    ref = fs.sample(inputs, 200, seed=11, start=7)
    np.testing.assert_array_equal(got.indptr, ref.indptr)
    np.testing.assert_array_equal(got.indices, ref.indices)
    if T.simulator() or values != "gaussian":
        np.testing.assert_array_equal(got.values, ref.values)
    else:  # the GPU's log/cos may differ from libm in the last bit
        np.testing.assert_allclose(got.values, ref.values, rtol=1e-14, atol=1e-300)


def test_grouped_estimate_and_gradient_match_cpu():
    rng = np.random.default_rng(2)
    inputs = _law("rademacher")
    model = fs.Model(rng.normal(size=(3, 13)) * 0.5, b=rng.normal(size=13) * 0.1, exponent=3)
    got = T.estimate_loss_cuda(model, inputs, 96, 4, "dense", 32)
    ref = fs.estimate_loss(model, inputs, 96, seed=4, path="dense", block_size=32)
    assert got.mean == pytest.approx(ref.mean, rel=1e-12)
    loss, dW, db = fs.loss_grad(model, inputs, 96, seed=4, backend="cuda", block_size=32)
    rl, rW, rb = fs.loss_grad(model, inputs, 96, seed=4, block_size=32)
    assert loss == pytest.approx(rl, rel=1e-12)
    np.testing.assert_allclose(dW, rW, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(db, rb, rtol=1e-10, atol=1e-13)
