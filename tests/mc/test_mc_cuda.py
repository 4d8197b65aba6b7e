"""The CUDA Monte-Carlo backend (sampler, estimates) against the CPU backend."""

import numpy as np
import pytest
from builders import random_model
from cudatools import cuda_or_skip

import fastsuper as fs
from fastsuper import testing as T

cuda = cuda_or_skip()

pytestmark = [pytest.mark.cudasim, pytest.mark.usefixtures("small_cuda_launches")]


def _rel(x, y):
    return abs(x - y) / max(abs(y), 1e-300)


# --------------------------------------------------------------------------
# sampler

SAMPLE_LAWS = [
    dict(p=0.2, values="gaussian"),
    dict(p=np.linspace(0.0, 0.6, 17), values="rademacher"),
    dict(p=0.3, values="uniform_sym"),
    dict(p=1.0, values="uniform"),
    dict(p=0.25, values="discrete", support=[-1.0, 0.5, 2.0], probs=[0.2, 0.5, 0.3]),
    dict(k=4, values="constant"),
    dict(p=0.0, values="gaussian"),
]


@pytest.mark.parametrize("law", SAMPLE_LAWS, ids=lambda c: f"{c.get('values')}")
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_samples_identical_to_cpu(law, dtype):
    inputs = fs.SparseInputs(17, **law)
    got = T.sample_cuda(inputs, 300, seed=11, start=7, dtype=dtype)
    ref = fs.sample(inputs, 300, seed=11, start=7, dtype=dtype)
    np.testing.assert_array_equal(got.indptr, ref.indptr)
    np.testing.assert_array_equal(got.indices, ref.indices)
    assert got.values.dtype == ref.values.dtype and got.n == ref.n
    if T.simulator() or law["values"] != "gaussian":
        np.testing.assert_array_equal(got.values, ref.values)
    else:  # the GPU's log/cos (libdevice) may differ from libm in the last bit
        np.testing.assert_allclose(got.values, ref.values, rtol=1e-14, atol=1e-300)


def test_samples_split_anywhere():
    inputs = fs.SparseInputs(20, p=0.15, values="gaussian")
    whole = T.sample_cuda(inputs, 200, seed=3)
    tail = T.sample_cuda(inputs, 50, seed=3, start=150)
    np.testing.assert_array_equal(whole.to_dense()[150:], tail.to_dense())
    assert T.sample_cuda(inputs, 0, seed=3).n_samples == 0


# --------------------------------------------------------------------------
# Monte-Carlo loss against the CPU backend

_IMP20 = 0.9 ** np.arange(20)
MC_SETTINGS = [
    # per-feature p, importances, bias; 3 chunks of 2 blocks with a partial last block
    dict(n=20, d=4, act="power", a=3, N=300, block=64,
         inputs=dict(p=np.linspace(0.05, 0.3, 20), values="gaussian", importance=_IMP20)),
    # exactly k active, relu, no bias
    dict(n=12, d=3, act="relu_power", a=2, N=120, block=50, bias=False,
         inputs=dict(k=3, values="uniform")),
    # n < threads: several samples per thread block (slots), non-integer exponent
    dict(n=3, d=2, act="signed_power", a=1.5, N=100, block=32, threads=8,
         inputs=dict(p=0.5, values="rademacher")),
    # one feature: one thread per sample, no reduction tree
    dict(n=1, d=1, act="power", a=1, N=40, block=16, threads=4,
         inputs=dict(p=0.7, values="discrete", support=[-1.0, 3.0], probs=[0.5, 0.5])),
]  # fmt: skip


@pytest.mark.parametrize("path", ["columns", "dense"])
@pytest.mark.parametrize("cfg", MC_SETTINGS, ids=lambda c: f"n{c['n']}-{c['act']}")
def test_estimate_matches_cpu_float64(cfg, path, monkeypatch):
    if "threads" in cfg:
        monkeypatch.setattr(T.config, "MC_THREADS", cfg["threads"])
    model = random_model(cfg["n"], cfg["d"], cfg["act"], cfg["a"], bias=cfg.get("bias", True))
    inputs = fs.SparseInputs(cfg["n"], **cfg["inputs"])
    pf = cfg["n"] == 20
    kw = dict(path=path, block_size=cfg["block"], start=5, per_feature=pf)
    ref = fs.estimate_loss(model, inputs, cfg["N"], seed=2, **kw)
    got = T.estimate_loss_cuda(model, inputs, cfg["N"], 2, **kw)
    assert got.backend == "cuda" and got.path == path and got.n_samples == cfg["N"]
    assert _rel(got.mean, ref.mean) < 1e-12
    assert _rel(got.gain_mean, ref.gain_mean) < 1e-12
    assert _rel(got.stderr, ref.stderr) < 1e-12
    assert _rel(got.gain_stderr, ref.gain_stderr) < 1e-12
    if pf:
        np.testing.assert_allclose(got.per_feature, ref.per_feature, rtol=1e-12, atol=0)
        np.testing.assert_allclose(got.per_feature_stderr, ref.per_feature_stderr, rtol=1e-10)


@pytest.mark.parametrize("path", ["columns", "dense"])
def test_estimate_matches_cpu_float32(path):
    n = 16
    model = random_model(n, 4, "relu_power", 2, dtype=np.float32)
    inputs = fs.SparseInputs(n, p=0.2, values="uniform_sym")
    kw = dict(path=path, block_size=40, per_feature=True)
    ref = fs.estimate_loss(model, inputs, 150, seed=9, **kw)
    got = T.estimate_loss_cuda(model, inputs, 150, 9, **kw)
    assert _rel(got.mean, ref.mean) < 1e-5
    assert _rel(got.gain_mean, ref.gain_mean) < 1e-5
    np.testing.assert_allclose(got.per_feature, ref.per_feature, rtol=1e-5, atol=1e-6)


def test_estimate_overflow_reports_first_bad_sample():
    model = fs.Model(np.full((2, 6), 300.0, dtype=np.float32), exponent=7)
    inputs = fs.SparseInputs(6, p=0.3, values="gaussian")
    with pytest.raises(FloatingPointError) as cpu_err:
        fs.estimate_loss(model, inputs, 60, seed=1, block_size=16, path="dense")
    with pytest.raises(FloatingPointError) as gpu_err:
        T.estimate_loss_cuda(model, inputs, 60, 1, "dense", 16)
    assert str(gpu_err.value) == str(cpu_err.value)


def test_estimate_accepts_device_A_and_auto_path():
    n = 10
    model = random_model(n, 3)
    inputs = fs.SparseInputs(n, p=0.2, values="gaussian")
    ref = fs.estimate_loss(model, inputs, 64, seed=4, path="columns", block_size=32)
    got = T.estimate_loss_cuda(model, inputs, 64, 4, "columns", 32, A=cuda.to_device(model.A))
    assert _rel(got.mean, ref.mean) < 1e-12
    auto = T.estimate_loss_cuda(model, inputs, 64, 4, "auto", 32)
    cpu_auto = T.choose_path(model, inputs, 64)
    assert auto.path == ("columns" if cpu_auto in ("columns", "columns_blocked") else "dense")
    with pytest.raises(ValueError, match="a CPU-only path"):
        T.estimate_loss_cuda(model, inputs, 64, 4, "blocked", 32)
    with pytest.raises(TypeError, match="dtype float32, expected float64"):
        A32 = cuda.to_device(model.A.astype(np.float32))
        T.estimate_loss_cuda(model, inputs, 64, 4, "columns", 32, A=A32)
    with pytest.raises(ValueError, match="path must be one of"):
        T.estimate_loss_cuda(model, inputs, 64, 4, "rows", 32)


def test_bad_threads_per_block(monkeypatch):
    monkeypatch.setattr(T.config, "MC_THREADS", 12)
    with pytest.raises(ValueError, match="power of two"):
        T.estimate_loss_cuda(random_model(4, 2), fs.SparseInputs(4, p=0.5), 10, path="dense")


def test_estimate_loss_dispatches_to_cuda():
    """``fastsuper.estimate_loss(backend="cuda")`` is the CUDA backend."""
    rng = np.random.default_rng(3)
    model = fs.Model(rng.normal(size=(3, 9)) / 2, activation="relu_power", exponent=2)
    inputs = fs.SparseInputs(9, p=0.2, values="uniform")
    cpu = fs.estimate_loss(model, inputs, 300, seed=4, block_size=100)
    gpu = fs.estimate_loss(model, inputs, 300, seed=4, block_size=100, backend="cuda")
    assert gpu.backend == "cuda"
    assert gpu.mean == pytest.approx(cpu.mean, rel=1e-12)
    assert gpu.gain_mean == pytest.approx(cpu.gain_mean, rel=1e-12)
    with pytest.raises(NotImplementedError, match="CPU only"):
        fs.estimate_loss(model, inputs, 300, backend="cuda", method="stratified")


@pytest.mark.parametrize(
    "act,param,dtype",
    [("gelu", None, np.float64), ("softplus", 2.0, np.float32), ("leaky_relu", 0.1, np.float64),
     ("gelu_tanh", None, np.float32), ("silu", None, np.float64), ("tanh", None, np.float64),
     ("sigmoid", None, np.float64)],
)  # fmt: skip
def test_estimate_smooth_activations_match_cpu(act, param, dtype):
    n = 10
    model = random_model(n, 3, act, None, dtype=dtype, param=param)
    inputs = fs.SparseInputs(n, p=0.3, values="gaussian")
    kw = dict(path="columns", block_size=40, per_feature=True)
    ref = fs.estimate_loss(model, inputs, 80, seed=9, **kw)
    got = T.estimate_loss_cuda(model, inputs, 80, 9, **kw)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    assert _rel(got.mean, ref.mean) < tol
    assert _rel(got.gain_mean, ref.gain_mean) < tol
    np.testing.assert_allclose(got.per_feature, ref.per_feature, rtol=tol * 10, atol=tol)
