"""BLAS threads around the compiled kernels.

OpenBLAS threads woken for a matrix product go on spinning for a while
(about 2**28 cycles) waiting for more work; when a Numba parallel kernel
starts meanwhile, its threads share the cores with them (measured: the
Monte-Carlo kernel 17% slower after ``W.T @ W`` on two BLAS threads).
Products small enough to take a few milliseconds are therefore run on one
BLAS thread (through threadpoolctl), which leaves no spinning thread behind.
"""

from __future__ import annotations

import contextlib
import functools

from fastsuper.core import config


@functools.cache
def _controller():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def single_thread_if_small(fma: float):
    """Context: BLAS on one thread when the product has at most :data:`config.SINGLE_THREAD_FMA`
    multiply-adds, else unchanged."""
    if fma > config.SINGLE_THREAD_FMA:
        return contextlib.nullcontext()
    return _controller().limit(limits=1, user_api="blas")
