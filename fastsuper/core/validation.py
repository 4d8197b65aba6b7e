"""Argument checks at the API boundary, one function per kind of check.

Every error names the argument, the bad value and what is allowed, and is
raised before any kernel runs.  Each checker returns the normalised value
(an ``int``, a ``float``, a contiguous array, a :class:`ValueLaw`...).

``func`` (keyword, every checker) names the public function being checked;
the message then starts with ``"func: "``, as the messages of the closed
forms and the theory functions do.

Examples
--------
>>> from fastsuper.core import validation as v
>>> v.check_int("n", 3.0, minimum=1)
3
>>> v.check_int("m", 0, minimum=1, func="kappa")
Traceback (most recent call last):
    ...
ValueError: kappa: m must be an integer >= 1, got 0
"""

from __future__ import annotations

import functools
import math
import numbers
import os
from pathlib import Path

import numpy as np

from fastsuper.core import config

__all__ = [
    "FLOAT_DTYPES",
    "LAW_NAMES",
    "SEED_MAX",
    "SEED_MIN",
    "TooLargeError",
    "as_float_array",
    "check_betas",
    "check_bool",
    "check_choice",
    "check_finite_array",
    "check_float_dtype",
    "check_int",
    "check_memory",
    "check_path",
    "check_per_instance",
    "check_positive_entries",
    "check_probabilities",
    "check_probability",
    "check_real",
    "check_sampled_p",
    "check_seed",
    "check_start",
    "check_weights",
    "gib",
    "machine_memory",
    "show",
]

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

#: seeds: the 64-bit words, and negative int64 values (taken modulo 2**64)
SEED_MIN, SEED_MAX = -(1 << 63), (1 << 64) - 1

#: value laws that are named by a string alone ("discrete" needs a support and probabilities)
LAW_NAMES = ("gaussian", "rademacher", "uniform_sym", "uniform", "constant")


def show(value) -> str:
    """``repr(value)``, cut to 80 characters (for error messages)."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def prefix(func: str | None) -> str:
    return f"{func}: " if func else ""


def _at(name: str, index) -> str:
    """``name[i]`` or ``name[i, j]`` for an index tuple."""
    return f"{name}[{', '.join(str(int(i)) for i in index)}]"


# --------------------------------------------------------------------------
# scalars


def check_int(
    name: str, value, *, minimum: int | None = None, func: str | None = None, what: str = ""
) -> int:
    """An integer (not bool; an integral float is accepted) at least ``minimum``.

    ``what`` describes the argument after the bound, e.g. ``" (number of features)"``.
    """
    bound = "" if minimum is None else f" >= {minimum}"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if not (isinstance(value, float) and value.is_integer()):
            raise TypeError(
                f"{prefix(func)}{name} must be an integer{bound}{what}, got {show(value)}"
            )
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{prefix(func)}{name} must be an integer{bound}{what}, got {value}")
    return value


def check_seed(name: str, value, *, minimum: int = SEED_MIN, func: str | None = None) -> int:
    """A seed: an integer in ``[minimum, 2**64)`` (default ``[-2**63, 2**64)``).

    The samplers key their streams by the seed modulo ``2**64``: a 64-bit
    word, or a negative int64 (``-1`` is the word ``2**64 - 1``).  A larger
    integer would silently alias a smaller one, so it is refused.
    """
    value = check_int(name, value, func=func)
    if not minimum <= value <= SEED_MAX:
        low = "0" if minimum == 0 else "-2**63"
        raise ValueError(f"{prefix(func)}{name} must be an integer in [{low}, 2**64), got {value}")
    return value


def check_sampled_p(name: str, pmax: float, *, func: str | None = None) -> None:
    """Raise ValueError if the largest feature probability ``pmax`` is in ``(0, P_MIN_SAMPLED)``.

    The samplers skip to the next active feature by a geometric gap of up to
    ``-log(2**-54) / p`` positions, which must fit an int64: ``p > 4.1e-18``
    (``config.P_MIN_SAMPLED`` leaves a margin).  The closed forms take any ``p``.
    """
    if 0.0 < pmax < config.P_MIN_SAMPLED:
        raise ValueError(
            f"{prefix(func)}{name} = {pmax:g} is too small to sample (the largest {name} must be "
            f"0 or at least {config.P_MIN_SAMPLED:g}: the sampler's gaps between active "
            "features would overflow int64); use 0, or the exact values (exact_loss)"
        )


def check_real(
    name: str, value, *, positive: bool = False, func: str | None = None, allow_none: bool = False
) -> float | None:
    """A finite real number (``> 0`` with ``positive``; ``None`` passes with ``allow_none``)."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        kind = "a positive real number" if positive else "a real number"
        raise TypeError(f"{prefix(func)}{name} must be {kind}, got {show(value)}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{prefix(func)}{name} must be finite, got {value}")
    if positive and value <= 0:
        raise ValueError(f"{prefix(func)}{name} must be > 0, got {value}")
    return value


def check_bool(name: str, value, *, func: str | None = None) -> bool:
    """``True`` or ``False`` (a NumPy bool too; not 0 or 1)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{prefix(func)}{name} must be True or False, got {show(value)}")
    return bool(value)


def check_choice(name: str, value, choices, *, func: str | None = None):
    """One of ``choices`` (compared by type and value); the message lists them as given."""
    if not any(isinstance(value, type(c)) and value == c for c in choices):
        raise ValueError(f"{prefix(func)}{name} must be one of {choices!r}, got {show(value)}")
    return value


def check_float_dtype(name: str, value, *, func: str | None = None) -> np.dtype:
    """``numpy.float32`` or ``numpy.float64`` (anything :class:`numpy.dtype` reads)."""
    try:
        dt = np.dtype(value)
    except TypeError as exc:
        raise TypeError(
            f"{prefix(func)}{name} must be numpy.float32 or numpy.float64, got {show(value)}"
        ) from exc
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"{prefix(func)}{name} must be numpy.float32 or numpy.float64, got {dt}")
    return dt


def check_path(name: str, value, *, func: str | None = None) -> Path:
    """A file path given as ``str`` or :class:`pathlib.Path`."""
    if not isinstance(value, (str, Path)):
        raise TypeError(f"{prefix(func)}{name} must be a str or pathlib.Path, got {show(value)}")
    return Path(value)


def check_probability(
    name: str, value, *, positive: bool = False, func: str | None = None
) -> float:
    """A scalar probability in ``[0, 1]`` (``(0, 1]`` with ``positive``)."""
    interval = "(0, 1]" if positive else "[0, 1]"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{prefix(func)}{name} must be a probability in {interval}, got {show(value)}"
        )
    value = float(value)
    if not ((0.0 < value if positive else 0.0 <= value) and value <= 1.0):
        raise ValueError(f"{prefix(func)}{name} must be a probability in {interval}, got {value}")
    return value


def check_betas(name: str, value, *, func: str | None = None) -> tuple[float, float]:
    """Two numbers in ``[0, 1)`` (Adam's decay rates)."""
    if (
        not isinstance(value, (tuple, list))
        or len(value) != 2
        or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in value)
        or not all(0.0 <= float(x) < 1.0 for x in value)
    ):
        raise ValueError(f"{prefix(func)}{name} must be two numbers in [0, 1), got {value!r}")
    return float(value[0]), float(value[1])


# --------------------------------------------------------------------------
# arrays


def check_finite_array(name: str, arr: np.ndarray, *, func: str | None = None) -> None:
    """Raise ValueError naming the first entry of ``arr`` that is not finite."""
    if arr.size and not np.all(np.isfinite(arr)):
        where = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
        raise ValueError(f"{prefix(func)}{name} must be finite; {_at(name, where)} = {arr[where]}")


def as_float_array(
    name: str, value, *, ndim: int, dtype=None, shape=None, func: str | None = None
) -> np.ndarray:
    """A finite float32/float64 array with ``ndim`` dimensions.

    Integer and boolean inputs are rejected (say ``W.astype(float)``); lists of
    Python floats are accepted as float64.  GPU arrays (numba device arrays and
    objects with ``__cuda_array_interface__``: CuPy arrays, PyTorch CUDA
    tensors) are copied to host memory (this imports numba-cuda).  ``shape``
    gives the required length of each axis (``None`` for any).
    """
    pre = prefix(func)
    if isinstance(value, np.ndarray):
        arr = value
    elif hasattr(value, "__cuda_array_interface__") or (
        hasattr(value, "copy_to_host") and hasattr(value, "dtype")
    ):
        from fastsuper.core.cuda import to_host_array

        arr = to_host_array(value, name=name)
    else:
        try:
            arr = np.asarray(value)
        except Exception as exc:  # pragma: no cover - numpy's own message is kept
            raise TypeError(f"{pre}{name} must be an array of floats: {exc}") from exc
        if arr.dtype.kind in "iu" and not isinstance(value, np.ndarray) and arr.size:
            arr = arr.astype(np.float64)
    if arr.dtype.kind == "c":
        raise TypeError(f"{pre}{name} must be real (float32 or float64), got dtype {arr.dtype}")
    if arr.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"{pre}{name} must have dtype float32 or float64, got {arr.dtype}"
            + (f"; convert with {name}.astype(np.float64)" if arr.dtype.kind in "biu" else "")
        )
    if arr.ndim != ndim:
        raise ValueError(f"{pre}{name} must be {ndim}-dimensional, got shape {arr.shape}")
    if shape is not None:
        for axis, (got, want) in enumerate(zip(arr.shape, shape)):
            if want is not None and got != want:
                raise ValueError(
                    f"{pre}{name} has shape {arr.shape}; axis {axis} must have length {want}"
                )
    check_finite_array(name, arr, func=func)
    if dtype is not None:
        arr = arr.astype(dtype, copy=False)
    return np.ascontiguousarray(arr)


def check_weights(
    name: str, value, *, dtype=np.float64, shape=None, func: str | None = None
) -> np.ndarray:
    """A weight matrix of shape ``(d, n)`` with ``d, n >= 1`` (``shape``: the required one).

    ``dtype=None`` keeps float32 or float64 as given.
    """
    wanted = f"{name} must have shape (d, n) = {shape}" if shape else f"{name} has shape (d, n)"
    try:
        W = as_float_array(name, value, ndim=2, dtype=dtype, shape=shape)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{prefix(func)}{exc} ({wanted})") from None
    if W.shape[0] < 1 or W.shape[1] < 1:
        raise ValueError(
            f"{prefix(func)}{name} must have shape (d, n) with d, n >= 1, got {W.shape}"
        )
    return W


def check_positive_entries(name: str, arr: np.ndarray, *, func: str | None = None) -> np.ndarray:
    """Raise ValueError naming the first entry of ``arr`` that is not finite and ``> 0``."""
    bad = ~(np.isfinite(arr) & (arr > 0))
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"{prefix(func)}{name} must be finite and > 0; {_at(name, where)} = {arr[where]}"
        )
    return arr


def check_probabilities(
    name: str, value, n: int | None = None, *, positive: bool = False, func: str | None = None
) -> np.ndarray:
    """Probabilities in ``[0, 1]`` (``(0, 1]`` with ``positive``) as a float64 array.

    With ``n``: a scalar (broadcast) or one probability per feature, shape
    ``(n,)``.  Without: any shape, kept.
    """
    pre, interval = prefix(func), "(0, 1]" if positive else "[0, 1]"
    if isinstance(value, bool) or value is None:
        raise TypeError(f"{pre}{name} must be a probability in {interval}, got {value!r}")
    arr = np.asarray(value, dtype=np.float64) if not isinstance(value, str) else None
    if arr is None or arr.dtype.kind not in "fiu":
        raise TypeError(
            f"{pre}{name} must be a probability in {interval} or an array of them, "
            f"got {show(value)}"
        )
    if n is not None and arr.ndim == 0:
        arr = np.full(n, float(arr))
    elif n is not None and (arr.ndim != 1 or arr.shape[0] != n):
        raise ValueError(
            f"{pre}{name} must be a scalar or have shape ({n},) (one per feature), "
            f"got shape {arr.shape}"
        )
    low = arr > 0.0 if positive else arr >= 0.0
    bad = ~(np.isfinite(arr) & low & (arr <= 1.0))
    if bad.any():
        if arr.ndim == 0:
            raise ValueError(f"{pre}{name} must lie in {interval}, got {show(value)}")
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{pre}{name} must lie in {interval}; {_at(name, where)} = {arr[where]}")
    return np.ascontiguousarray(arr) if arr.ndim else arr


def check_per_instance(
    name: str, value, n_instances: int, n: int, *, kind: str, func: str | None = None
) -> np.ndarray:
    """An ``(n_instances, n)`` float64 array of probabilities or of positive numbers.

    ``kind="probability"``: a scalar, one value per instance ``(n_instances,)``
    or the full array, each in ``[0, 1]``.  ``kind="positive"``: a scalar,
    one value per feature ``(n,)`` or the full array, each finite and ``> 0``.
    """
    pre = prefix(func)
    if isinstance(value, (bool, str)):
        raise TypeError(f"{pre}{name} must be a number or an array of numbers, got {value!r}")
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"{pre}{name} must be a number or an array of numbers, got {value!r}"
        ) from exc
    per_instance = kind == "probability"
    if arr.ndim == 0:
        arr = np.full((n_instances, n), float(arr))
    elif arr.ndim == 1 and per_instance and arr.shape[0] == n_instances:
        arr = np.repeat(arr[:, None], n, axis=1)
    elif arr.ndim == 1 and not per_instance and arr.shape[0] == n:
        arr = np.repeat(arr[None, :], n_instances, axis=0)
    elif arr.ndim == 2 and arr.shape == (n_instances, n):
        arr = arr.copy()
    else:
        one = (
            f"({n_instances},) (one per instance)" if per_instance else f"({n},) (one per feature)"
        )
        raise ValueError(
            f"{pre}{name} must be a scalar or have shape {one} or ({n_instances}, {n}) (per "
            f"instance and feature), got shape {arr.shape}"
        )
    if per_instance:
        return check_probabilities(name, arr, func=func)
    return np.ascontiguousarray(check_positive_entries(name, arr, func=func))


def check_start(name: str, value, shape: tuple, dtype, *, func: str | None = None) -> np.ndarray:
    """A start for every instance: an array of ``shape[1:]`` (all alike) or of ``shape``.

    Returns a fresh C-contiguous array of ``dtype`` (it is trained in place:
    never the caller's).
    """
    arr = as_float_array(name, value, ndim=np.ndim(value), dtype=np.float64, func=func)
    if arr.shape == shape[1:]:
        arr = np.broadcast_to(arr, shape)
    elif arr.shape != shape:
        raise ValueError(
            f"{prefix(func)}{name} must have shape {shape[1:]} (all instances) or {shape} (one "
            f"per instance), got {arr.shape}"
        )
    return np.array(arr, dtype=dtype, order="C", copy=True)


# --------------------------------------------------------------------------
# memory


class TooLargeError(ValueError, MemoryError):
    """A request whose memory, estimated before anything is allocated, exceeds the machine's.

    A :class:`ValueError` (an argument out of the usable range) and a
    :class:`MemoryError`, so that either ``except`` clause catches it.
    """


def gib(nbytes: float) -> str:
    """``nbytes`` in GiB (or TiB beyond 1024 GiB), for messages."""
    g = nbytes / 2**30
    return f"{g / 1024:.3g} TiB" if g >= 1024 else f"{g:.3g} GiB"


@functools.cache
def machine_memory() -> int | None:
    """Bytes of memory this process may use: the physical memory, or a smaller cgroup limit.

    ``None`` when the operating system does not say (then nothing is refused).
    Read once per process (every checked call asks).
    """
    total = None
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # pragma: no cover - not POSIX
        pass
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as fh:
                text = fh.read().strip()
        except OSError:
            continue
        if text.isdigit():
            total = int(text) if total is None else min(total, int(text))
        break
    return total if total and total > 0 else None


def within_memory(nbytes: float) -> bool:
    """Whether :func:`check_memory` accepts ``nbytes`` (the same limit, no error)."""
    limit = config.MEMORY_LIMIT_BYTES
    if limit is None:
        limit = machine_memory()
    return limit is None or (math.isfinite(nbytes) and nbytes <= limit)


def check_memory(what: str, nbytes: float, *, func: str | None = None, hint: str = "") -> None:
    """Raise :class:`TooLargeError` if ``nbytes`` exceed the memory a call may use.

    The limit is ``fastsuper.core.config.MEMORY_LIMIT_BYTES``, or when that is
    ``None`` the machine's (:func:`machine_memory`).  ``what`` says what
    needs the memory (``"estimate_loss with n_samples = 10**15"``); ``hint``
    how to ask for less.
    """
    if within_memory(nbytes):
        return
    limit = config.MEMORY_LIMIT_BYTES
    source = "the limit fastsuper.core.config.MEMORY_LIMIT_BYTES"
    if limit is None:
        limit, source = machine_memory(), "this machine's memory"
    raise TooLargeError(
        f"{prefix(func)}{what} needs about {gib(nbytes)} of memory, more than {source} "
        f"({gib(limit)}); nothing was allocated" + (f"; {hint}" if hint else "")
    )
