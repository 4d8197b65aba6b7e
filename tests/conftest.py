"""Fixtures shared by every test folder.

Plain helpers live in modules beside this file, importable from every folder
(``pythonpath = ["tests"]``): :mod:`naive` and :mod:`naive_train` (the NumPy
references), :mod:`checks` (shared assertions), :mod:`builders` (random
models) and :mod:`cudatools` (for the CUDA tests).
"""

from __future__ import annotations

import sys

import numba
import pytest

from fastsuper import testing as T

#: threads per block on the CUDA simulator (each CUDA thread is a Python thread)
CUDA_SMALL_THREADS = 8


@pytest.fixture
def set_numba_threads():
    """``set_numba_threads(t)`` sets Numba's thread count; the count is restored afterwards."""
    old = numba.get_num_threads()
    yield numba.set_num_threads
    numba.set_num_threads(old)


@pytest.fixture(scope="session")
def dask_client():
    """One Dask cluster for the whole test run: 2 single-threaded worker processes with nannies."""
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            scheduler_kwargs={"dashboard_address": ":0"},  # never port 8787 (may be taken)
            env={"NUMBA_NUM_THREADS": "1"},
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


@pytest.fixture
def small_cuda_launches(monkeypatch):
    """Few threads per block, small chunks (several per run), fast thread switches."""
    for name in ("SAMPLE_THREADS", "POWER_THREADS", "GRAM_THREADS"):
        monkeypatch.setattr(T.config, name, CUDA_SMALL_THREADS)
    monkeypatch.setattr(T.config, "MC_THREADS", 4)
    monkeypatch.setattr(T.config, "CHUNK_SAMPLES", 128)
    if T.simulator():  # the simulator's scheduler polls: switch threads often
        old = sys.getswitchinterval()
        sys.setswitchinterval(1e-5)
        yield
        sys.setswitchinterval(old)
    else:
        yield
