"""CUDA backend against the CPU backend (on a GPU, or on the simulator: NUMBA_ENABLE_CUDASIM=1).

The simulator runs every CUDA thread as a Python thread, so sizes are tiny
and the thread counts are patched down (module constants of
fastsuper.mc.cuda).  Run with::

    NUMBA_ENABLE_CUDASIM=1 pytest -m cudasim tests/test_cuda.py
"""

import os
import subprocess
import sys

import numpy as np
import pytest

try:
    from numba import cuda

    _CUDA = bool(cuda.is_available())
except Exception:  # numba-cuda missing or broken
    _CUDA = False

if not _CUDA:
    pytest.skip(
        "CUDA unavailable: needs a GPU with numba-cuda, or NUMBA_ENABLE_CUDASIM=1",
        allow_module_level=True,
    )

import fastsuper as fs  # noqa: E402
from fastsuper.core import config  # noqa: E402
from fastsuper.core import cuda as cc  # noqa: E402
from fastsuper.exact import cuda as exc  # noqa: E402
from fastsuper.mc import cuda as bc  # noqa: E402
from fastsuper.mc.paths import choose_path  # noqa: E402

pytestmark = pytest.mark.cudasim

#: threads per block on the simulator (each CUDA thread is a Python thread)
SMALL_THREADS = 8


@pytest.fixture(autouse=True)
def _small_launches(monkeypatch):
    """Few threads per block, small chunks (several per run), fast thread switches."""
    for name in ("SAMPLE_THREADS", "POWER_THREADS", "GRAM_THREADS"):
        monkeypatch.setattr(config, name, SMALL_THREADS)
    monkeypatch.setattr(config, "MC_THREADS", 4)
    monkeypatch.setattr(config, "CHUNK_SAMPLES", 128)
    if cc.simulator():  # the simulator's scheduler polls: switch threads often
        old = sys.getswitchinterval()
        sys.setswitchinterval(1e-5)
        yield
        sys.setswitchinterval(old)
    else:
        yield


def _model(n, d, act="power", a=3, bias=True, dtype=np.float64, seed=0, scale=0.5):
    rng = np.random.default_rng(seed)
    W = (rng.normal(size=(d, n)) * scale).astype(dtype)
    b = (rng.normal(size=n) * 0.2).astype(dtype) if bias else None
    return fs.Model(W, b, activation=act, exponent=a)


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
    got = bc.sample_cuda(inputs, 300, seed=11, start=7, dtype=dtype)
    ref = fs.sample(inputs, 300, seed=11, start=7, dtype=dtype)
    np.testing.assert_array_equal(got.indptr, ref.indptr)
    np.testing.assert_array_equal(got.indices, ref.indices)
    assert got.values.dtype == ref.values.dtype and got.n == ref.n
    if cc.simulator() or law["values"] != "gaussian":
        np.testing.assert_array_equal(got.values, ref.values)
    else:  # the GPU's log/cos (libdevice) may differ from libm in the last bit
        np.testing.assert_allclose(got.values, ref.values, rtol=1e-14, atol=1e-300)


def test_samples_split_anywhere():
    inputs = fs.SparseInputs(20, p=0.15, values="gaussian")
    whole = bc.sample_cuda(inputs, 200, seed=3)
    tail = bc.sample_cuda(inputs, 50, seed=3, start=150)
    np.testing.assert_array_equal(whole.to_dense()[150:], tail.to_dense())
    assert bc.sample_cuda(inputs, 0, seed=3).n_samples == 0


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
        monkeypatch.setattr(config, "MC_THREADS", cfg["threads"])
    model = _model(cfg["n"], cfg["d"], cfg["act"], cfg["a"], bias=cfg.get("bias", True))
    inputs = fs.SparseInputs(cfg["n"], **cfg["inputs"])
    pf = cfg["n"] == 20
    kw = dict(path=path, block_size=cfg["block"], start=5, per_feature=pf)
    ref = fs.estimate_loss(model, inputs, cfg["N"], seed=2, **kw)
    got = bc.estimate_loss_cuda(model, inputs, cfg["N"], 2, **kw)
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
    model = _model(n, 4, "relu_power", 2, dtype=np.float32)
    inputs = fs.SparseInputs(n, p=0.2, values="uniform_sym")
    kw = dict(path=path, block_size=40, per_feature=True)
    ref = fs.estimate_loss(model, inputs, 150, seed=9, **kw)
    got = bc.estimate_loss_cuda(model, inputs, 150, 9, **kw)
    assert _rel(got.mean, ref.mean) < 1e-5
    assert _rel(got.gain_mean, ref.gain_mean) < 1e-5
    np.testing.assert_allclose(got.per_feature, ref.per_feature, rtol=1e-5, atol=1e-6)


def test_estimate_overflow_reports_first_bad_sample():
    model = fs.Model(np.full((2, 6), 300.0, dtype=np.float32), exponent=7)
    inputs = fs.SparseInputs(6, p=0.3, values="gaussian")
    with pytest.raises(FloatingPointError) as cpu_err:
        fs.estimate_loss(model, inputs, 60, seed=1, block_size=16, path="dense")
    with pytest.raises(FloatingPointError) as gpu_err:
        bc.estimate_loss_cuda(model, inputs, 60, 1, "dense", 16)
    assert str(gpu_err.value) == str(cpu_err.value)


def test_estimate_accepts_device_A_and_auto_path():
    n = 10
    model = _model(n, 3)
    inputs = fs.SparseInputs(n, p=0.2, values="gaussian")
    ref = fs.estimate_loss(model, inputs, 64, seed=4, path="columns", block_size=32)
    got = bc.estimate_loss_cuda(model, inputs, 64, 4, "columns", 32, A=cuda.to_device(model.A))
    assert _rel(got.mean, ref.mean) < 1e-12
    auto = bc.estimate_loss_cuda(model, inputs, 64, 4, "auto", 32)
    cpu_auto = choose_path(model, inputs, 64)
    assert auto.path == ("columns" if cpu_auto in ("columns", "columns_blocked") else "dense")
    with pytest.raises(ValueError, match="a CPU-only path"):
        bc.estimate_loss_cuda(model, inputs, 64, 4, "blocked", 32)
    with pytest.raises(TypeError, match="dtype float32, expected float64"):
        A32 = cuda.to_device(model.A.astype(np.float32))
        bc.estimate_loss_cuda(model, inputs, 64, 4, "columns", 32, A=A32)
    with pytest.raises(ValueError, match="path must be one of"):
        bc.estimate_loss_cuda(model, inputs, 64, 4, "rows", 32)


# --------------------------------------------------------------------------
# exact loss: row-wise power sums


def _power_sums_numpy(A, c):
    n = A.shape[0]
    off = A * (1.0 - np.eye(n))
    out = np.zeros_like(c)
    for r in range(1, c.shape[0]):
        out[r] = (off**r) @ c[r]
    return out


class _CAI:
    """A foreign object exposing ``__cuda_array_interface__`` (e.g. CuPy or PyTorch)."""

    def __init__(self, dev):
        self._dev = dev  # keep the memory alive
        if cc.simulator():  # simulated device memory is host memory
            host = dev.copy_to_host()
            self._host = host
            iface = host.__array_interface__
            self.__cuda_array_interface__ = {
                "shape": host.shape,
                "typestr": host.dtype.str,
                "data": iface["data"],
                "strides": None,
                "version": 3,
            }
        else:
            self.__cuda_array_interface__ = dev.__cuda_array_interface__


@pytest.mark.parametrize("symmetric", [True, False])
def test_power_sums_match_numpy(symmetric):
    rng = np.random.default_rng(5)
    n, R = 13, 6
    W = rng.normal(size=(4, n)) * 0.6
    A = W.T @ W if symmetric else rng.normal(size=(n, n))
    c = rng.normal(size=(R + 1, n))
    got = exc.exact_power_sums_cuda(A, c, symmetric=symmetric)
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
    out_d = exc.exact_power_sums_cuda(A_d, c_d, to_host=False)
    np.testing.assert_allclose(out_d.copy_to_host(), ref, rtol=1e-12, atol=1e-14)
    got = exc.exact_power_sums_cuda(_CAI(A_d), _CAI(c_d))
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match="square"):
        exc.exact_power_sums_cuda(A[:, :4], c)
    with pytest.raises(ValueError, match="1 <= R"):
        exc.exact_power_sums_cuda(A, c[:1])
    with pytest.raises(TypeError, match="c is a device array of dtype float32"):
        exc.exact_power_sums_cuda(A_d, cuda.to_device(c.astype(np.float32)))


def test_power_sums_are_the_exact_loss_cumulants():
    """What exact.py's row-block loop computes: kappa_r(y_j) - [r = 1] b_j."""
    from fastsuper.exact import api as exact

    n, m = 11, 3
    model = _model(n, 4, bias=False)
    inputs = fs.SparseInputs(n, p=np.linspace(0.05, 0.4, n), values="gaussian")
    fw = exact._forward(model, inputs, m)
    ky = exact._cumulants_from_moments(fw.my, fw.binom)
    got = exc.exact_power_sums_cuda(fw.A, fw.kx)
    np.testing.assert_allclose(got[1:], ky[1:], rtol=1e-9, atol=1e-12)


# --------------------------------------------------------------------------
# availability, errors, import isolation


def test_require_cuda_without_numba_cuda(monkeypatch):
    def missing():
        raise ImportError("No module named 'numba.cuda'")

    monkeypatch.setattr(cc, "_import_cuda", missing)
    with pytest.raises(RuntimeError, match="needs a CUDA GPU") as err:
        cc.require_cuda()
    msg = str(err.value)
    assert "pip install 'fastsuper[cuda]'" in msg and "NUMBA_ENABLE_CUDASIM=1" in msg
    assert "No module named" in msg
    with pytest.raises(RuntimeError, match="needs a CUDA GPU"):
        bc.estimate_loss_cuda(_model(4, 2), fs.SparseInputs(4, p=0.5), 10)


def test_require_cuda_without_gpu(monkeypatch):
    monkeypatch.setattr(cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="NUMBA_ENABLE_CUDASIM=1.*is_available"):
        bc.sample_cuda(fs.SparseInputs(4, p=0.5), 10)
    with pytest.raises(RuntimeError, match="needs a CUDA GPU"):
        cc.to_device_array(np.zeros(3))


def test_import_fastsuper_does_not_import_numba_cuda():
    code = (
        "import sys, fastsuper, fastsuper.core.cuda\n"
        "assert 'numba.cuda' not in sys.modules, sorted(m for m in sys.modules if 'cuda' in m)\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(fs.__file__)))
    path = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": path})


def test_bad_threads_per_block(monkeypatch):
    monkeypatch.setattr(config, "MC_THREADS", 12)
    with pytest.raises(ValueError, match="power of two"):
        bc.estimate_loss_cuda(_model(4, 2), fs.SparseInputs(4, p=0.5), 10, path="dense")


@pytest.mark.cudasim
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


# --------------------------------------------------------------------------
# exact loss, gain and gradient with the power sums on the GPU

EXACT_SETTINGS = [
    dict(n=7, d=3, m=3, bias=True, inputs=dict(p=np.linspace(0.05, 0.4, 7), values="gaussian")),
    dict(n=5, d=2, m=2, bias=False,
         inputs=dict(p=0.3, values="uniform", importance=0.8 ** np.arange(5))),
    dict(n=4, d=4, m=1, bias=True, inputs=dict(p=0.5, values="rademacher")),
]  # fmt: skip


def _close(got, ref, rtol=1e-12):
    got, ref = np.asarray(got, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    scale = max(float(np.max(np.abs(ref))), 1e-300)
    assert float(np.max(np.abs(got - ref))) <= rtol * scale, (got, ref)


@pytest.mark.parametrize("cfg", EXACT_SETTINGS, ids=lambda c: f"n{c['n']}-m{c['m']}")
def test_exact_backend_cuda_matches_cpu(cfg):
    from fastsuper.exact import api as exact

    model = _model(cfg["n"], cfg["d"], "power", cfg["m"], bias=cfg["bias"])
    inputs = fs.SparseInputs(cfg["n"], **cfg["inputs"])
    for func in (exact.exact_loss, exact.exact_gain):
        for pf in (False, True):
            got = func(model, inputs, per_feature=pf, backend="cuda")
            ref = func(model, inputs, per_feature=pf)
            _close(got, ref)
    got = exact.exact_loss_and_gain(model, inputs, backend="cuda")
    ref = exact.exact_loss_and_gain(model, inputs, backend="cpu")
    _close(got, ref)
    (lg, dWg, dbg), (lc, dWc, dbc) = (
        exact.exact_loss_grad(model, inputs, backend=bk) for bk in ("cuda", "cpu")
    )
    _close(lg, lc)
    _close(dWg, dWc)
    _close(dbg, dbc)
    (gg, dWg, dbg), (gc, dWc, dbc) = (
        exact.exact_gain_grad(model, inputs, backend=bk) for bk in ("cuda", "cpu")
    )
    _close(gg, gc)
    _close(dWg, dWc)
    _close(dbg, dbc)


def test_exact_backend_is_validated():
    from fastsuper.exact import api as exact

    model = _model(3, 2, "power", 2)
    inputs = fs.SparseInputs(3, p=0.5)
    for func in (exact.exact_loss, exact.exact_gain, exact.exact_loss_and_gain):
        with pytest.raises(ValueError, match="backend must be one of"):
            func(model, inputs, backend="gpu")
    with pytest.raises(ValueError, match="backend must be one of"):
        exact.exact_loss_grad(model, inputs, backend=None)


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
    from fastsuper.train.adam import loss_grad

    monkeypatch.setattr(config, "GRAD_THREADS", threads)

    model = _model(
        cfg["n"], cfg["d"], cfg["act"], cfg["a"], bias=cfg.get("bias", True), dtype=cfg["dtype"]
    )
    inputs = fs.SparseInputs(cfg["n"], **cfg["inputs"])
    kw = dict(seed=5, start=3, block_size=cfg["block"])
    ref = loss_grad(model, inputs, cfg["N"], **kw)
    got = loss_grad(model, inputs, cfg["N"], backend="cuda", **kw)
    assert got.dW.shape == ref.dW.shape and got.db.shape == ref.db.shape
    if cfg["dtype"] == np.float64:
        _close(got.loss, ref.loss)
        _close(got.dW, ref.dW)
        _close(got.db, ref.db)
    else:
        _close(got.loss, ref.loss, 1e-6)
        _close(got.dW, ref.dW, 1e-5)
        _close(got.db, ref.db, 1e-5)


def test_loss_grad_cuda_errors():
    from fastsuper.train.adam import loss_grad

    inputs = fs.SparseInputs(4, p=0.5)
    with pytest.raises(ValueError, match="backend must be"):
        loss_grad(_model(4, 2), inputs, 10, backend="gpu")
    big = fs.Model(np.full((2, 4), 1e30), activation="power", exponent=9)
    with pytest.raises(FloatingPointError, match="first at sample index"):
        loss_grad(big, fs.SparseInputs(4, p=1.0), 10, backend="cuda", block_size=4)


@pytest.mark.skipif(not cc.simulator(), reason="a fix of the CUDA simulator")
def test_simulator_shared_array_is_one_array_per_line(monkeypatch):
    """Threads of a block calling ``cuda.shared.array`` on one line share one array.

    numba-cuda's simulator creates the array for a line without a lock; a
    thread switch between its look-up and its store gave two threads
    different arrays (and the Monte-Carlo reduction lost terms).
    ``fastsuper.mc.kernels_cuda`` makes the allocation atomic; ``np.empty`` is
    slowed here (it yields the GIL) to widen the old race window.
    """
    import threading
    import time

    from numba.cuda.simulator import kernelapi

    empty = np.empty

    def slow_empty(*args, **kwargs):
        time.sleep(1e-4)
        return empty(*args, **kwargs)

    monkeypatch.setattr(np, "empty", slow_empty)
    for _ in range(10):  # fresh "blocks"
        shared = kernelapi.FakeCUDAShared(0)
        got_a, got_b = [], []
        start = threading.Barrier(16)

        def thread(shared=shared, got_a=got_a, got_b=got_b, start=start):
            start.wait()
            got_a.append(shared.array(8, np.float64))
            got_b.append(shared.array(8, np.float64))

        threads = [threading.Thread(target=thread) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(got_a) == len(got_b) == 16
        assert len({id(a) for a in got_a}) == 1
        assert len({id(b) for b in got_b}) == 1
        assert got_a[0] is not got_b[0]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fit_adam_matches_cpu(dtype, monkeypatch):
    """``fit(backend="cuda")``: same samples, same Adam steps as the CPU, to round-off."""
    monkeypatch.setattr(config, "GRAD_THREADS", 4)
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


def test_cli_backend_cuda(tmp_path, capsys):
    """``fastsuper estimate --backend cuda`` and ``train --backend cuda`` give the CPU's numbers."""
    import json

    from fastsuper.apps.cli import main

    res = {}
    for bk in ("cpu", "cuda"):
        out = tmp_path / f"{bk}.json"
        argv = ["estimate", "--n", "12", "--d", "3", "--p", "0.2", "--samples", "300"]
        assert main([*argv, "--backend", bk, "--json", str(out)]) == 0
        res[bk] = json.loads(out.read_text())
    assert res["cuda"]["loss_mc"] == pytest.approx(res["cpu"]["loss_mc"], rel=1e-12)
    fits = {}
    for bk in ("cpu", "cuda"):
        argv = ["train", "--n", "5", "--d", "2", "--instances", "1", "--steps", "3", "--batch"]
        argv += ["16", "--no-plots", "--quiet", "--out", str(tmp_path / bk), "--backend", bk]
        assert main(argv) == 0
        fits[bk] = fs.FitResult.load(tmp_path / f"{bk}.npz")
    np.testing.assert_allclose(fits["cuda"].W, fits["cpu"].W, rtol=1e-10, atol=1e-12)
    assert main(["train", "--method", "exact", "--backend", "cuda", "--out", "x"]) == 2
    assert "applies to --method adam" in capsys.readouterr().err


def test_model_accepts_gpu_arrays():
    """``Model(W, b)`` with device arrays (numba, or ``__cuda_array_interface__``) copies them."""
    rng = np.random.default_rng(9)
    W = rng.normal(size=(3, 7))
    b = rng.normal(size=7) * 0.1
    for wrap in (cuda.to_device, lambda x: _CAI(cuda.to_device(x))):
        model = fs.Model(wrap(W), wrap(b), activation="relu_power", exponent=2)
        np.testing.assert_array_equal(model.W, W)
        np.testing.assert_array_equal(model.b, b)
    with pytest.raises(ValueError, match="W must be 2-dimensional"):
        fs.Model(cuda.to_device(b))
    with pytest.raises(ValueError, match=r"W must be finite; W\[0, 0\] = nan"):
        fs.Model(cuda.to_device(np.full((2, 3), np.nan)))
