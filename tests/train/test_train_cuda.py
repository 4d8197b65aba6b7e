"""The sampled loss gradient and Adam on CUDA against the CPU."""

import numpy as np
import pytest
from builders import random_model
from cudatools import assert_close, cuda_or_skip

import fastsuper as fs
from fastsuper import testing as T

cuda = cuda_or_skip()

pytestmark = [pytest.mark.cudasim, pytest.mark.usefixtures("small_cuda_launches")]


# --------------------------------------------------------------------------
# sampled loss gradient against the CPU backend

GRAD_SETTINGS = [
    # per-feature p, importances, bias; 3 chunks, a partial last block
    dict(n=12, d=3, act="power", a=3, N=300, block=64, dtype=np.float64,
         inputs=dict(p=np.linspace(0.05, 0.4, 12), values="gaussian",
                     importance=0.9 ** np.arange(12))),
    # exactly k active, relu, no bias
    dict(n=10, d=2, act="relu_power", a=1, N=200, block=50, bias=False, dtype=np.float64,
         inputs=dict(k=3, values="uniform")),
    # non-integer exponent, one row
    dict(n=6, d=1, act="signed_power", a=1.5, N=150, block=32, dtype=np.float64,
         inputs=dict(p=0.5, values="rademacher")),
    # float32 compute, float64 sums
    dict(n=8, d=3, act="relu_power", a=2, N=200, block=40, dtype=np.float32,
         inputs=dict(p=0.3, values="uniform")),
]  # fmt: skip


@pytest.mark.parametrize("threads", [128, 4, 1])
@pytest.mark.parametrize("cfg", GRAD_SETTINGS, ids=lambda c: f"n{c['n']}-{c['act']}")
def test_loss_grad_matches_cpu(cfg, threads, monkeypatch):
    """Threads over features: one feature each (128 > n), several (4), or all (1)."""
    monkeypatch.setattr(T.config, "GRAD_THREADS", threads)

    model = random_model(
        cfg["n"], cfg["d"], cfg["act"], cfg["a"], bias=cfg.get("bias", True), dtype=cfg["dtype"]
    )
    inputs = fs.SparseInputs(cfg["n"], **cfg["inputs"])
    kw = dict(seed=5, start=3, block_size=cfg["block"])
    ref = fs.loss_grad(model, inputs, cfg["N"], **kw)
    got = fs.loss_grad(model, inputs, cfg["N"], backend="cuda", **kw)
    assert got.dW.shape == ref.dW.shape and got.db.shape == ref.db.shape
    if cfg["dtype"] == np.float64:
        assert_close(got.loss, ref.loss)
        assert_close(got.dW, ref.dW)
        assert_close(got.db, ref.db)
    else:
        assert_close(got.loss, ref.loss, 1e-6)
        assert_close(got.dW, ref.dW, 1e-5)
        assert_close(got.db, ref.db, 1e-5)


def test_loss_grad_cuda_errors():
    inputs = fs.SparseInputs(4, p=0.5)
    with pytest.raises(ValueError, match="backend must be"):
        fs.loss_grad(random_model(4, 2), inputs, 10, backend="gpu")
    big = fs.Model(np.full((2, 4), 1e30), activation="power", exponent=9)
    with pytest.raises(FloatingPointError, match="first at sample index"):
        fs.loss_grad(big, fs.SparseInputs(4, p=1.0), 10, backend="cuda", block_size=4)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fit_adam_matches_cpu(dtype, monkeypatch):
    """``fit(backend="cuda")``: same samples, same Adam steps as the CPU, to round-off."""
    monkeypatch.setattr(T.config, "GRAD_THREADS", 4)
    kw = dict(
        n_instances=2, p=[0.5, 0.2], importance=0.9 ** np.arange(6), steps=4, batch_size=24,
        lr=1e-2, seed=5, log_every=2, dtype=dtype,
    )  # fmt: skip
    cpu = fs.fit(6, 2, **kw)
    gpu = fs.fit(6, 2, backend="cuda", **kw)
    tol = 1e-10 if dtype == np.float64 else 1e-4
    assert gpu.W.dtype == cpu.W.dtype
    np.testing.assert_allclose(gpu.W, cpu.W, rtol=tol, atol=tol)
    np.testing.assert_allclose(gpu.b, cpu.b, rtol=tol, atol=tol)
    np.testing.assert_allclose(gpu.loss_history, cpu.loss_history, rtol=tol)
    assert np.any(gpu.W != gpu.W0)  # it trained


def test_fit_backend_errors():
    with pytest.raises(ValueError, match=r"backend must be one of \('cpu', 'cuda'\), got 'gpu'"):
        fs.fit(4, 2, steps=1, backend="gpu")
    with pytest.raises(ValueError, match="method='exact' runs on the CPU"):
        fs.fit(4, 2, method="exact", activation="power", exponent=3, p=0.1, backend="cuda")


@pytest.mark.parametrize("act,param", [("gelu", None), ("softplus", 2.0), ("silu", None)])
def test_loss_grad_smooth_activations_match_cpu(act, param, monkeypatch):
    monkeypatch.setattr(T.config, "GRAD_THREADS", 4)
    model = random_model(6, 2, act, None, param=param)
    inputs = fs.SparseInputs(6, p=0.4, values="gaussian")
    kw = dict(seed=5, block_size=32)
    ref = fs.loss_grad(model, inputs, 64, **kw)
    got = fs.loss_grad(model, inputs, 64, backend="cuda", **kw)
    assert_close(got.loss, ref.loss)
    assert_close(got.dW, ref.dW)
    assert_close(got.db, ref.db)


def test_fit_adam_with_groups_matches_cpu(monkeypatch):
    monkeypatch.setattr(T.config, "GRAD_THREADS", 4)
    kw = dict(
        n_instances=2, p=0.3, steps=3, batch_size=16, lr=1e-2, seed=2, log_every=1,
        groups=dict(groups=[[0, 1], [2, 3, 4]], kind=["correlated", "exclusive"]),
    )  # fmt: skip
    cpu = fs.fit(6, 2, **kw)
    gpu = fs.fit(6, 2, backend="cuda", **kw)
    np.testing.assert_allclose(gpu.W, cpu.W, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(gpu.loss_history, cpu.loss_history, rtol=1e-10)


def test_fit_steps_per_launch_change_nothing(monkeypatch):
    """Adam steps run on the device, many per launch: splitting them into launches of
    2 steps (one instance diverging at the start, one training) gives the same
    numbers bit for bit, and the CPU's to round-off."""
    monkeypatch.setattr(T.config, "GRAD_THREADS", 4)
    kw = dict(
        n_instances=3, p=[0.6, 0.3, 0.1], importance=0.9 ** np.arange(5), steps=5,
        batch_size=12, lr=1e-2, seed=9, log_every=2,
    )  # fmt: skip
    one = fs.fit(5, 3, backend="cuda", **kw)
    monkeypatch.setattr(T.config, "CUDA_TRAIN_STEPS", 2)
    split = fs.fit(5, 3, backend="cuda", **kw)
    assert np.array_equal(one.W, split.W) and np.array_equal(one.b, split.b)
    assert np.array_equal(one.loss_history, split.loss_history)
    cpu = fs.fit(5, 3, **kw)
    np.testing.assert_allclose(split.W, cpu.W, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(split.loss_history, cpu.loss_history, rtol=1e-10)


def test_fit_cuda_reports_divergence_like_the_cpu(monkeypatch):
    """An instance whose batch loss overflows stops on the device at the CPU's step."""
    monkeypatch.setattr(T.config, "GRAD_THREADS", 4)
    W0 = np.full((2, 3), 1e30)  # (w w x)^9 overflows float64 inside phi
    kw = dict(p=1.0, activation="power", exponent=9, W0=W0, steps=3, batch_size=4)
    for backend in ("cpu", "cuda"):
        with pytest.raises(FloatingPointError, match="of instance 0 became inf or NaN at step 0"):
            fs.fit(3, 2, backend=backend, **kw)
    assert np.all(W0 == 1e30)
