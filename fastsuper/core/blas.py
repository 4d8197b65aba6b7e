"""BLAS threads around the compiled kernels, and the thread counts of worker processes.

OpenBLAS threads woken for a matrix product go on spinning for a while
(about 2**28 cycles) waiting for more work; when a Numba parallel kernel
starts meanwhile, its threads share the cores with them (measured: the
Monte-Carlo kernel 17% slower after ``W.T @ W`` on two BLAS threads).
Products small enough to take a few milliseconds are therefore run on one
BLAS thread (through threadpoolctl), which leaves no spinning thread behind.

Setting the thread count goes straight to the BLAS libraries found when the
first limit was asked for (a few microseconds, against tens for a
``threadpoolctl`` limit, which looks the libraries up again every time), so
a limit may be set around every small call.

Numba's OpenMP threads sleep as soon as a parallel region ends
(:data:`fastsuper.core.config.OMP_WAIT_POLICY`, set in the environment when
this module is imported unless the user set it): spinning threads would
compete with the caller's own thread and with other processes between the
many short kernels of small calls (docs/benchmarks.md, "Threading layers").
Processes and Dask threads that fastsuper starts get Numba thread counts that
add up to the cores they share (:func:`threads_per_worker`).
"""

from __future__ import annotations

import contextlib
import functools
import os

from fastsuper.core import config

__all__ = [
    "blas_threads",
    "set_worker_threads",
    "single_thread_if_small",
    "threads_per_worker",
    "usable_cpus",
]

if config.OMP_WAIT_POLICY is not None:  # read by OpenMP when Numba first loads it
    os.environ.setdefault("OMP_WAIT_POLICY", config.OMP_WAIT_POLICY)


@functools.cache
def _controller():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


@functools.cache
def _blas_libraries() -> tuple:
    # load the BLAS that Numba's ``np.dot`` calls (SciPy's) before the look-up, or a
    # limit set before anything loaded it would never reach it
    from numba.np.linalg import ensure_blas

    ensure_blas()

    return tuple(_controller().select(user_api="blas").lib_controllers)


def blas_threads(limit: int = 1):
    """Context: every BLAS library on at most ``limit`` threads; the previous counts restored.

    The context object may be entered again and again (not nested), so a
    caller may make it once and use it around every call.

    Parameters
    ----------
    limit : int
        Most BLAS threads inside the context (``>= 1``).
    """
    return _BlasLimit(limit)


class _BlasLimit(contextlib.AbstractContextManager):
    """The context of :func:`blas_threads`."""

    def __init__(self, limit: int = 1):
        self.limit = limit
        self.saved: list = []

    def __enter__(self):
        self.saved = []
        for lib in _blas_libraries():
            before = lib.get_num_threads()
            if before is not None and before > self.limit:
                lib.set_num_threads(self.limit)
                self.saved.append((lib, before))
        return self

    def __exit__(self, *exc) -> None:
        for lib, before in reversed(self.saved):
            lib.set_num_threads(before)
        self.saved = []


def single_thread_if_small(fma: float):
    """Context: BLAS on one thread when the product has at most :data:`config.SINGLE_THREAD_FMA`
    multiply-adds, else unchanged."""
    if fma > config.SINGLE_THREAD_FMA:
        return contextlib.nullcontext()
    return blas_threads(1)


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask; ``os.cpu_count()`` elsewhere)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def threads_per_worker(workers: int, cpus: int | None = None) -> int:
    """Numba threads for each of ``workers`` concurrent workers sharing ``cpus`` CPUs.

    ``max(1, cpus // workers)``, and never more than Numba's thread pool
    (``NUMBA_NUM_THREADS``): the workers' threads add up to at most the CPUs
    (to one thread each when there are more workers than CPUs).

    Examples
    --------
    >>> from fastsuper.core.blas import threads_per_worker
    >>> threads_per_worker(2, cpus=8) <= 4, threads_per_worker(16, cpus=8)
    (True, 1)
    """
    import numba

    cpus = usable_cpus() if cpus is None else cpus
    return max(1, min(cpus // max(1, workers), numba.config.NUMBA_NUM_THREADS))


def set_worker_threads(threads: int) -> None:
    """Numba threads of the calling thread, and BLAS threads of the process, at most ``threads``.

    For the processes of a pool (call it in the initializer): Numba's count
    is per thread, the BLAS libraries' per process.
    """
    import numba

    threads = max(1, min(int(threads), numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(threads)
    for lib in _blas_libraries():
        before = lib.get_num_threads()
        if before is not None and before > threads:
            lib.set_num_threads(threads)
