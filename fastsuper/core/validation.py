"""Argument checks at the API boundary: every error names the argument,
the bad value and what is allowed, and is raised before any kernel runs."""

from __future__ import annotations

import numbers

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_int(name: str, value, *, minimum: int | None = None) -> int:
    """An integer (not bool) at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise TypeError(f"{name} must be an integer, got {_show(value)}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return value


def check_real(name: str, value, *, positive: bool = False) -> float:
    """A finite real number (positive when asked)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {_show(value)}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    return value


def check_finite_array(name: str, arr: np.ndarray) -> None:
    if arr.size and not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0]
        where = tuple(int(i) for i in bad)
        raise ValueError(
            f"{name} must be finite; {name}[{', '.join(map(str, where))}] = {arr[where]}"
        )


def as_float_array(name: str, value, *, ndim: int, dtype=None, shape=None) -> np.ndarray:
    """A finite float32/float64 array with ``ndim`` dimensions.

    Integer and boolean inputs are rejected (say ``W.astype(float)``); lists of
    Python floats are accepted as float64.  GPU arrays (numba device arrays and
    objects with ``__cuda_array_interface__``: CuPy arrays, PyTorch CUDA
    tensors) are copied to host memory (this imports numba-cuda).
    """
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
            raise TypeError(f"{name} must be an array of floats: {exc}") from exc
        if arr.dtype.kind in "iu" and not isinstance(value, np.ndarray) and arr.size:
            arr = arr.astype(np.float64)
    if arr.dtype.kind == "c":
        raise TypeError(f"{name} must be real (float32 or float64), got dtype {arr.dtype}")
    if arr.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"{name} must have dtype float32 or float64, got {arr.dtype}"
            + (f"; convert with {name}.astype(np.float64)" if arr.dtype.kind in "biu" else "")
        )
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-dimensional, got shape {arr.shape}")
    if shape is not None:
        for axis, (got, want) in enumerate(zip(arr.shape, shape)):
            if want is not None and got != want:
                raise ValueError(
                    f"{name} has shape {arr.shape}; axis {axis} must have length {want}"
                )
    check_finite_array(name, arr)
    if dtype is not None:
        arr = arr.astype(dtype, copy=False)
    return np.ascontiguousarray(arr)


def check_probabilities(name: str, value, n: int) -> np.ndarray:
    """``p``: a scalar or one probability per feature, each in [0, 1]."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a probability in [0, 1], got {value!r}")
    arr = np.asarray(value, dtype=np.float64) if not isinstance(value, str) else None
    if arr is None or arr.dtype.kind not in "fiu":
        raise TypeError(
            f"{name} must be a probability in [0, 1] or an array of them, got {_show(value)}"
        )
    if arr.ndim == 0:
        arr = np.full(n, float(arr))
    elif arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(
            f"{name} must be a scalar or have shape ({n},) (one per feature), got shape {arr.shape}"
        )
    bad = ~(np.isfinite(arr) & (arr >= 0.0) & (arr <= 1.0))
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"{name} must lie in [0, 1]; {name}[{i}] = {arr[i]}")
    return np.ascontiguousarray(arr)
