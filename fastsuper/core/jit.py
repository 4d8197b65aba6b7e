"""The one place that sets Numba jit options for fastsuper.

Every compiled function in the package is decorated with one of the
decorators below, so that caching, the fastmath policy and the error model
are chosen here and nowhere else.

Policy
------
* ``cache=True`` everywhere: compiled code is written next to the sources
  and reused by later processes (the test-suite relies on this).
* ``error_model="numpy"``: division by zero gives inf/NaN like NumPy rather
  than raising inside a kernel; kernels count non-finite results and the
  Python layer reports them (overflow is never returned silently).
* fastmath: *off* for per-element maths that must be reproducible bit for
  bit across backends (random numbers, sampling).  Reduction kernels may
  reassociate sums and contract multiply-adds (``KERNEL_FASTMATH``), which
  lets LLVM vectorise them; ``nnan``/``ninf`` are never set, so overflow is
  still detectable.
"""

from __future__ import annotations

import types

import numba
from numba.core import cgutils
from numba.extending import intrinsic

#: fastmath flags for reduction kernels (no ``nnan``/``ninf``: we detect overflow).
KERNEL_FASTMATH = {"reassoc", "contract", "nsz", "arcp"}

_BASE = {"cache": True, "error_model": "numpy", "nogil": True}


def njit(*args, **kwargs):
    """Serial, exactly-rounded ``numba.njit`` (per-element maths, RNG)."""
    opts = dict(_BASE, fastmath=False)
    opts.update(kwargs)
    return numba.njit(*args, **opts)


def kernel_njit(*args, **kwargs):
    """Serial kernel whose reductions may be reassociated and vectorised."""
    opts = dict(_BASE, fastmath=KERNEL_FASTMATH)
    opts.update(kwargs)
    return numba.njit(*args, **opts)


def parallel_njit(*args, **kwargs):
    """``parallel=True`` kernel (``prange`` over blocks of work)."""
    opts = dict(_BASE, fastmath=KERNEL_FASTMATH, parallel=True)
    opts.update(kwargs)
    return numba.njit(*args, **opts)


def _renamed(func, suffix):
    """A copy of ``func`` whose qualified name ends in ``suffix``.

    Numba's on-disk cache is keyed by the function's file, line and
    qualified name, not by the jit options: two builds of one function need
    two names, or each would load the other's machine code.
    """
    copy = types.FunctionType(
        func.__code__, func.__globals__, func.__name__ + suffix, func.__defaults__, func.__closure__
    )
    copy.__qualname__ = func.__qualname__ + suffix
    copy.__module__ = func.__module__
    copy.__doc__ = func.__doc__
    copy.__kwdefaults__ = func.__kwdefaults__
    return copy


class SerialParallel:
    """One function compiled twice: a serial :func:`kernel_njit` and a :func:`parallel_njit` build.

    The function's ``numba.prange`` loops are plain loops in the serial build,
    which skips the thread pool's start-up and synchronisation on small work;
    both builds compute the same numbers (a ``prange`` kernel's work items
    never share an accumulator).  Call :meth:`pick` with the amount of work
    to get the build for it.

    Parameters
    ----------
    func : callable
        The Python function (the source of both builds).
    """

    def __init__(self, func):
        self.serial = kernel_njit(_renamed(func, "_serial"))
        self.parallel = parallel_njit(_renamed(func, "_parallel"))
        self.__doc__ = func.__doc__
        self.__name__ = func.__name__

    def pick(self, work, parallel_from):
        """The serial build when ``work < parallel_from``, else the parallel one."""
        return self.serial if work < parallel_from else self.parallel


def serial_and_parallel(func):
    """Decorator: ``func`` as a :class:`SerialParallel` (both builds, picked by size)."""
    return SerialParallel(func)


@intrinsic
def borrow(typingctx, arr):
    """A view of the array ``arr`` that owns no reference (CPU kernels only).

    The same data, shape and strides, without the memory-info pointer, so
    Numba's reference counting of the view (on every assignment, and on
    every argument of an inlined function) does nothing.  Meant for the
    arrays of a bundle passed to inlined per-sample functions in a loop,
    where that counting would cost more than the arithmetic.  The view must
    not outlive ``arr``: never return it or store it.
    """

    def codegen(context, builder, signature, args):
        src = context.make_array(arr)(context, builder, args[0])
        out = context.make_array(arr)(context, builder)
        for name in ("nitems", "itemsize", "data", "shape", "strides"):
            setattr(out, name, getattr(src, name))
        out.meminfo = cgutils.get_null_value(out.meminfo.type)
        out.parent = cgutils.get_null_value(out.parent.type)
        return out._getvalue()

    return arr(arr), codegen
