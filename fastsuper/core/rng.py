"""Counter-based random numbers shared by the CPU and CUDA kernels.

Every random number is a pure function of ``(seed, sample index, counter)``:

* ``key = sample_key(seed, index)`` — a 64-bit key per sample;
* the ``c``-th number of that sample is ``mix64(key ^ mix64(c + K))``.

``mix64`` is the SplitMix64 finaliser (a bijection of 64-bit words with
full avalanche).  Because nothing is carried from one sample to the next,
results do not depend on how samples are split over threads, chunks, GPU
blocks or Dask workers.  These functions use only integer arithmetic and are
plain ``@njit`` code, callable from ``@cuda.jit`` kernels.
"""

from __future__ import annotations

import numpy as np

from fastsuper.core.jit import njit

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_KSEED = np.uint64(0x243F6A8885A308D3)  # digits of pi
_KCTR = np.uint64(0x13198A2E03707344)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_INV53 = 1.0 / 9007199254740992.0  # 2**-53


@njit
def mix64(z):
    """SplitMix64 finaliser: a bijective 64-bit mixing function."""
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@njit
def seed_key(seed):
    """Key of a seed (any integer, reduced modulo 2**64)."""
    return mix64(np.uint64(seed) ^ _KSEED)


@njit
def sample_key(skey, index):
    """Key of sample ``index`` (``skey`` from :func:`seed_key`)."""
    return mix64(skey ^ (np.uint64(index) * _GOLDEN))


@njit
def random_u64(key, counter):
    """The ``counter``-th 64-bit random word of the stream ``key``."""
    return mix64(key ^ mix64(np.uint64(counter) + _KCTR))


@njit
def u64_to_open01(x):
    """Map a 64-bit word to a double in the open interval (0, 1)."""
    return (np.float64(x >> _S11) + 0.5) * _INV53


@njit
def uniform(key, counter):
    """The ``counter``-th uniform (0, 1) double of the stream ``key``."""
    return u64_to_open01(random_u64(key, counter))


@njit
def counter_hash(counter):
    """The key-free half of :func:`random_u64`: ``mix64(counter + K)``.

    Kernels that draw the same counters for many keys may tabulate it:
    ``hashed_uniform(key, counter_hash(c)) == uniform(key, c)`` bit for bit.
    """
    return mix64(np.uint64(counter) + _KCTR)


@njit
def hashed_uniform(key, h):
    """:func:`uniform` of counter ``c`` given ``h = counter_hash(c)``."""
    return u64_to_open01(mix64(key ^ h))
