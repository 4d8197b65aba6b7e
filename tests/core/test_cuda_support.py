"""CUDA support: availability, import isolation, device arrays, the simulator fix."""

import os
import subprocess
import sys

import numpy as np
import pytest
from builders import random_model
from cudatools import ForeignDeviceArray, cuda_or_skip

import fastsuper as fs
from fastsuper import testing as T

cuda = cuda_or_skip()

pytestmark = [pytest.mark.cudasim, pytest.mark.usefixtures("small_cuda_launches")]


# --------------------------------------------------------------------------
# availability, errors, import isolation


def test_require_cuda_without_numba_cuda(monkeypatch):
    def missing():
        raise ImportError("No module named 'numba.cuda'")

    T.patch_cuda_import(monkeypatch, missing)
    with pytest.raises(RuntimeError, match="needs a CUDA GPU") as err:
        T.require_cuda()
    msg = str(err.value)
    assert "pip install 'fastsuper[cuda]'" in msg and "NUMBA_ENABLE_CUDASIM=1" in msg
    assert "No module named" in msg
    with pytest.raises(RuntimeError, match="needs a CUDA GPU"):
        T.estimate_loss_cuda(random_model(4, 2), fs.SparseInputs(4, p=0.5), 10)


def test_require_cuda_without_gpu(monkeypatch):
    monkeypatch.setattr(cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="NUMBA_ENABLE_CUDASIM=1.*is_available"):
        T.sample_cuda(fs.SparseInputs(4, p=0.5), 10)
    with pytest.raises(RuntimeError, match="needs a CUDA GPU"):
        T.to_device_array(np.zeros(3))


def test_import_fastsuper_does_not_import_numba_cuda():
    code = (
        "import sys, fastsuper, fastsuper.core.cuda, fastsuper.testing\n"
        "assert 'numba.cuda' not in sys.modules, sorted(m for m in sys.modules if 'cuda' in m)\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(fs.__file__)))
    path = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": path})


@pytest.mark.skipif(not T.simulator(), reason="a fix of the CUDA simulator")
def test_simulator_shared_array_is_one_array_per_line(monkeypatch):
    """Threads of a block calling ``cuda.shared.array`` on one line share one array.

    numba-cuda's simulator creates the array for a line without a lock; a
    thread switch between its look-up and its store gave two threads
    different arrays (and the Monte-Carlo reduction lost terms).
    ``fastsuper.core.cuda_jit`` makes the allocation atomic; ``np.empty`` is
    slowed here (it yields the GIL) to widen the race window.
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


def test_model_accepts_gpu_arrays():
    """``Model(W, b)`` with device arrays (numba, or ``__cuda_array_interface__``) copies them."""
    rng = np.random.default_rng(9)
    W = rng.normal(size=(3, 7))
    b = rng.normal(size=7) * 0.1
    for wrap in (cuda.to_device, lambda x: ForeignDeviceArray(cuda.to_device(x))):
        model = fs.Model(wrap(W), wrap(b), activation="relu_power", exponent=2)
        np.testing.assert_array_equal(model.W, W)
        np.testing.assert_array_equal(model.b, b)
    with pytest.raises(ValueError, match="W must be 2-dimensional"):
        fs.Model(cuda.to_device(b))
    with pytest.raises(ValueError, match=r"W must be finite; W\[0, 0\] = nan"):
        fs.Model(cuda.to_device(np.full((2, 3), np.nan)))
