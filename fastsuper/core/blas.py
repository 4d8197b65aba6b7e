"""BLAS threads around the compiled kernels.

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
"""

from __future__ import annotations

import contextlib
import functools

from fastsuper.core import config

__all__ = ["blas_threads", "single_thread_if_small"]


@functools.cache
def _controller():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


@functools.cache
def _blas_libraries() -> tuple:
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
