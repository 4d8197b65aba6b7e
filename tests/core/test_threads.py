"""Thread counts: BLAS limits, OpenMP's wait policy, workers sharing the CPUs."""

from __future__ import annotations

import os

import numba
import pytest

from fastsuper.core import blas, config


def test_openmp_wait_policy_is_set_unless_given():
    assert config.OMP_WAIT_POLICY is None or "OMP_WAIT_POLICY" in os.environ


@pytest.mark.parametrize(("workers", "cpus"), [(1, 1), (1, 8), (2, 8), (3, 8), (16, 8)])
def test_threads_per_worker_add_up_to_the_cpus(workers, cpus):
    t = blas.threads_per_worker(workers, cpus=cpus)
    assert 1 <= t <= numba.config.NUMBA_NUM_THREADS
    assert workers * t <= max(cpus, workers)
    if workers <= cpus and cpus // workers <= numba.config.NUMBA_NUM_THREADS:
        assert t == cpus // workers


def test_set_worker_threads_limits_numba_and_blas():
    from threadpoolctl import ThreadpoolController, threadpool_info

    saved = numba.get_num_threads()
    before = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
    try:
        blas.set_worker_threads(1)
        assert numba.get_num_threads() == 1
        assert all(i["num_threads"] == 1 for i in threadpool_info() if i["user_api"] == "blas")
    finally:
        numba.set_num_threads(saved)
        if before:
            ThreadpoolController().limit(limits=max(before), user_api="blas")


def test_dask_workers_share_the_cpus(dask_client):
    from fastsuper.mc.dask import host_threads

    sharing = host_threads(dask_client)
    assert sum(sharing.values()) == sum(dask_client.nthreads().values())

    def numba_threads_in_task():
        import numba as nb

        from fastsuper.mc import dask as fd

        fd.worker_numba_threads(sharing)
        return nb.get_num_threads(), nb.config.NUMBA_NUM_THREADS, len(os.sched_getaffinity(0))

    got, pool, cpus = dask_client.submit(numba_threads_in_task, pure=False).result()
    assert got == max(1, min(pool, cpus // sum(sharing.values())))
