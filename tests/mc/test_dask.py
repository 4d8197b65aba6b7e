"""The Dask backend on a real ``dask.distributed`` LocalCluster (2 worker processes).

Every result is compared with the CPU backend bit for bit: the chunks are
whole sample blocks and the blocks are merged in sample order, so nothing may
differ, not even the last bit of a standard error.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import fastsuper as fs
from fastsuper import testing as T

distributed = pytest.importorskip("distributed")


def _cpu(client, model, inputs, n_samples, **kw) -> fs.LossEstimate:
    """The CPU backend's estimate, run in a worker process (the reference of bit-identity).

    Bit-identity is a property of one compiled kernel: its per-block sums do
    not depend on threads or chunks.  But a fastmath kernel compiled afresh in
    a process can differ in the last bit from the same kernel loaded from
    Numba's cache (seen for float32 with per-feature output in a fresh clone:
    the test process compiles, the workers load the cache it wrote).  So the
    kernel is compiled here first (writing the cache) and the reference runs
    in a worker, with the code the chunks run with.
    """
    warm = dict(kw)  # the path the real call takes (the cost model depends on n_samples)
    warm.setdefault("path", T.choose_path(model, inputs, n_samples))
    fs.estimate_loss(model, inputs, 2 * kw.get("block_size", 2048), **warm)
    return client.submit(fs.estimate_loss, model, inputs, n_samples, pure=False, **kw).result()


def _same(cpu: fs.LossEstimate, dk: fs.LossEstimate) -> None:
    assert dk.backend == "dask"
    for name in ("mean", "stderr", "gain_mean", "gain_stderr", "n_samples", "path", "n"):
        assert getattr(dk, name) == getattr(cpu, name), name
    if cpu.per_feature is None:
        assert dk.per_feature is None
    else:
        np.testing.assert_array_equal(dk.per_feature, cpu.per_feature)
        np.testing.assert_array_equal(dk.per_feature_stderr, cpu.per_feature_stderr)


def _problem(dtype=np.float64, n=120, d=6, p=0.03, bias=True, **law):
    rng = np.random.default_rng(11)
    W = (rng.normal(size=(d, n)) / np.sqrt(d)).astype(dtype)
    b = rng.normal(size=n) * 0.05 if bias else None
    model = fs.Model(W, b, activation="signed_power", exponent=3)
    imp = rng.uniform(0.5, 1.5, size=n)
    inputs = fs.SparseInputs(n, p=p, importance=imp, **law)
    return model, inputs


@pytest.mark.parametrize(
    "dtype, path, per_feature, chunk_size, start",
    [
        (np.float64, "columns", True, None, 0),
        (np.float32, "columns", False, 2 * 1000, 17),  # unaligned W on the workers
        (np.float32, "dense", True, 3 * 1000, 0),
        (np.float64, "dense", False, 1000, 5),  # one block per chunk, last chunk partial
        (np.float64, "blocked", True, 2 * 1000, 0),  # the CPU-only paths
        (np.float32, "columns_blocked", False, None, 3),
    ],
)
def test_bit_identical_to_cpu(dask_client, dtype, path, per_feature, chunk_size, start):
    model, inputs = _problem(dtype)
    kw = dict(seed=3, path=path, per_feature=per_feature, block_size=1000, start=start)
    cpu = _cpu(dask_client, model, inputs, 45_123, **kw)
    dk = fs.estimate_loss(
        model, inputs, 45_123, backend="dask", client=dask_client, chunk_size=chunk_size, **kw
    )
    _same(cpu, dk)


def test_bit_identical_other_laws(dask_client):
    """Exactly-k pattern, a discrete law, per-feature p, no bias, relu: still bit for bit."""
    model, inputs = _problem(bias=False, n=60, p=None, k=3, support=[-1.0, 0.5, 2.0],
                             probs=[0.2, 0.5, 0.3])  # fmt: skip
    model = fs.Model(model.W, activation="relu_power", exponent=1.5)
    _same(
        _cpu(dask_client, model, inputs, 20_000, seed=9, per_feature=True),
        fs.estimate_loss(model, inputs, 20_000, seed=9, per_feature=True, backend="dask",
                         client=dask_client),
    )  # fmt: skip
    p = np.linspace(0.0, 0.2, 60)
    inputs = fs.SparseInputs(60, p=p, values="uniform")
    _same(
        _cpu(dask_client, model, inputs, 20_000, seed=2, block_size=512),
        fs.estimate_loss(model, inputs, 20_000, seed=2, block_size=512, backend="dask",
                         client=dask_client, chunk_size=2048),
    )  # fmt: skip


def test_estimate_is_close_to_exact(dask_client):
    """An independent reference: the closed form of a power model."""
    rng = np.random.default_rng(0)
    model = fs.Model(rng.normal(size=(4, 30)) / 2, exponent=3)
    inputs = fs.SparseInputs(30, p=0.05, values="rademacher")
    est = fs.estimate_loss(model, inputs, 200_000, seed=1, backend="dask", client=dask_client)
    assert abs(est.mean - fs.exact_loss(model, inputs)) < 5 * est.stderr
    assert est.n_samples == 200_000


def test_overflow_reported_as_on_cpu(dask_client):
    rng = np.random.default_rng(1)
    model = fs.Model((rng.normal(size=(3, 40)) * 60).astype(np.float32), exponent=9)
    inputs = fs.SparseInputs(40, p=0.05)
    with pytest.raises(FloatingPointError) as cpu:
        fs.estimate_loss(model, inputs, 30_000, seed=4, block_size=1024)
    with pytest.raises(FloatingPointError) as dk:
        fs.estimate_loss(model, inputs, 30_000, seed=4, block_size=1024, backend="dask",
                         client=dask_client, chunk_size=4096)  # fmt: skip
    assert str(dk.value) == str(cpu.value)
    assert "first at sample index" in str(dk.value)


def test_worker_killed_mid_run_loses_no_chunk(dask_client):
    """SIGKILL a worker holding our chunks; the nanny restarts it, the chunks are recomputed."""
    model, inputs = _problem(n=400, d=20, p=0.01)
    n_samples, block, chunk = 40 * 4 * 2048, 2048, 4 * 2048  # 40 chunks of ~40 ms
    cpu = _cpu(dask_client, model, inputs, n_samples, seed=5, path="dense", per_feature=True)
    pids_before = set(dask_client.run(os.getpid).values())
    run = T.dask_plan(model, inputs, n_samples, 5, "dense", block, 0, True, chunk, 2)
    t0 = time.perf_counter()
    futures = run.submit(dask_client)
    assert len(futures) == 40
    distributed.wait(futures, return_when="FIRST_COMPLETED")
    keys = {f.key for f in futures}
    # a worker that runs, queues or holds (not yet gathered) some of our chunks
    on_worker: dict[str, set] = {}
    for w, ks in dask_client.processing().items():
        on_worker.setdefault(w, set()).update(keys & set(ks))
    for k, ws in dask_client.who_has(futures).items():
        for w in ws:
            on_worker.setdefault(w, set()).add(k)
    victim = max(on_worker, key=lambda w: len(on_worker[w]))
    lost = on_worker[victim]
    pending = sum(not f.done() for f in futures)
    assert lost and pending > 0, (lost, pending)
    pid = dask_client.run(os.getpid, workers=[victim])[victim]
    os.kill(pid, signal.SIGKILL)
    est = run.collect(dask_client, t0)
    _same(cpu, est)
    dask_client.wait_for_workers(2, timeout=60)
    pids_after = set(dask_client.run(os.getpid).values())
    assert pid in pids_before and pid not in pids_after  # the worker really died and was replaced


def test_bad_arguments_fail_before_any_work(dask_client):
    model, inputs = _problem()
    with pytest.raises(ValueError, match="chunk_size must be a multiple of block_size = 1000"):
        fs.estimate_loss(model, inputs, 10_000, block_size=1000, backend="dask", client=dask_client,
                         chunk_size=1500)  # fmt: skip
    with pytest.raises(TypeError, match="client must be a dask.distributed.Client"):
        fs.estimate_loss(model, inputs, 10_000, backend="dask", client="tcp://x:1")
    with pytest.raises(ValueError, match="for backend='dask' only"):
        fs.estimate_loss(model, inputs, 10_000, client=dask_client)
    with pytest.raises(NotImplementedError, match="method='naive' with backend='dask'"):
        fs.estimate_loss(model, inputs, 10_000, backend="dask", client=dask_client,
                         method="stratified")  # fmt: skip
    with pytest.raises(ValueError, match="n_samples must be an integer >= 2"):
        fs.estimate_loss(model, inputs, 1, backend="dask", client=dask_client)
    with pytest.raises(TypeError, match="per_feature must be True or False"):
        fs.estimate_loss(model, inputs, 100, backend="dask", client=dask_client, per_feature="yes")


def test_default_chunk_is_whole_blocks_and_spreads_small_runs():
    model, inputs = _problem()
    for n_samples in (10, 50_000, 10**9):
        c = T.default_chunk_size(model, inputs, n_samples, 1000, 8, "columns")
        assert c % 1000 == 0 and c >= 1000
    # a small run is cut into about TASKS_PER_THREAD chunks per thread
    c = T.default_chunk_size(model, inputs, 64_000, 1000, 8, "columns")
    assert -(-64_000 // c) == 32


def test_without_client_starts_and_closes_a_local_cluster(monkeypatch):
    T.patch_cpu_count(monkeypatch, lambda: 1)
    model, inputs = _problem()
    cpu = fs.estimate_loss(model, inputs, 12_345, seed=8)  # compiled here, or loaded
    dk = fs.estimate_loss(model, inputs, 12_345, seed=8, backend="dask")
    # the new cluster's workers load the kernel from the cache: equal to round-off here
    # (bit for bit against a reference run with the same code: the tests above)
    assert dk.backend == "dask" and dk.n_samples == cpu.n_samples
    assert dk.mean == pytest.approx(cpu.mean, rel=1e-14)
    assert dk.stderr == pytest.approx(cpu.stderr, rel=1e-12)


def test_missing_distributed_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    model, inputs = _problem()
    with pytest.raises(ImportError, match=r"pip install 'fastsuper\[distributed\]'"):
        fs.estimate_loss(model, inputs, 1000, backend="dask")


def test_import_fastsuper_does_not_import_dask():
    code = "import sys, fastsuper; print('dask' in sys.modules, 'distributed' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_main_guard_detection():
    src = (
        "import fastsuper as fs\n"
        "est = fs.estimate_loss(m, i, backend='dask')\n"
        "def main():\n"
        "    fs.estimate_loss(m, i, backend='dask')\n"
        'if "__main__" == __name__:\n'
        "    main()\n"
        "else:\n"
        "    main()\n"
    )
    assert [T.guarded_by_main(src, line) for line in (2, 4, 6, 8)] == [False, False, True, False]


def test_script_without_main_guard_gets_a_clear_error(tmp_path):
    """backend="dask" from a script's top level, without ``if __name__ == "__main__":``:
    every spawned worker would re-run the script, and the cluster failed with "Nanny failed
    to start" and the workers' tracebacks.  Now: one clear error, before any worker starts."""
    script = tmp_path / "unguarded.py"
    script.write_text(
        "import numpy as np\n"
        "import fastsuper as fs\n"
        "model = fs.Model(np.eye(2, 8), exponent=3)\n"
        "fs.estimate_loss(model, fs.SparseInputs(8, p=0.1), 10_000, backend='dask')\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         env=env, cwd=tmp_path, timeout=300)  # fmt: skip
    assert run.returncode == 1
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("RuntimeError: backend='dask' starts a local Dask cluster")
    assert f"the script {script}, and line 4 of it runs at import time" in last
    assert 'if __name__ == "__main__":' in last
    assert "Nanny" not in run.stderr


@pytest.mark.parametrize("act,param", [("gelu", None), ("softplus", 2.0), ("leaky_relu", 0.1)])
def test_bit_identical_smooth_activations(dask_client, act, param):
    """The activation's parameter travels to the workers: the CPU's numbers bit for bit."""
    model, inputs = _problem(np.float64)
    model = fs.Model(model.W, model.b, activation=act, param=param)
    kw = dict(seed=4, per_feature=True, block_size=1000)
    cpu = _cpu(dask_client, model, inputs, 12_000, **kw)
    dk = fs.estimate_loss(model, inputs, 12_000, backend="dask", client=dask_client, **kw)
    _same(cpu, dk)
    other = fs.Model(model.W, model.b, activation=act, param=0.5 if param else None)
    if param is not None:  # another parameter is another computation, not a cached one
        dk2 = fs.estimate_loss(other, inputs, 12_000, backend="dask", client=dask_client, **kw)
        assert dk2.mean != dk.mean
