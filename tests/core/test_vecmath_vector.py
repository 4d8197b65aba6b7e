"""The explicit 512-bit vector loops of ``phi_fast`` (AVX-512) against long-double references.

Dense sweeps of the float32 range (every few thousandth float32 up to 100, the
float32 forms' domain ``|t| <= 64`` and the accurate forms beyond) within 0.7
ulp of the exact value (so within 1 ulp of the rounded reference), float64
sweeps within 4 ulps of the rounded reference, lengths that are no multiple
of the vector width and unaligned views, and elements outside the domain
(NaN, infinities, huge) anywhere in a vector.
"""

from __future__ import annotations

import numpy as np
import pytest
from builders import SMOOTH_CASES
from checks import assert_within_ulps
from naive import smooth_ref

from fastsuper.core.activations import ACTIVATIONS
from fastsuper.core.vecmath import AVAILABLE, phi_fast

pytestmark = pytest.mark.skipif(not AVAILABLE, reason="the CPU has no AVX-512")

CASES = SMOOTH_CASES
#: the activations computed in float32 lanes for float32 arrays, and their worst error
#: against the exact value
FLOAT32_LANES = [
    ("sigmoid", None),
    ("silu", None),
    ("tanh", None),
    ("softplus", 1.0),
    ("gelu_tanh", None),
]
EXACT_ULPS_F32 = 0.7


def _fast(t, name, param):
    out = np.full_like(t, np.nan)
    phi_fast(t, ACTIVATIONS[name], 0.0 if param is None else float(param), out)
    return out


def _ref(t, name, param):
    return smooth_ref(t.astype(np.float64), name, param)[0]


def _float32_sweep(stride):
    """Every ``stride``-th positive float32 up to 100, and their negatives."""
    bits = np.arange(0, 0x7F800000, stride, dtype=np.int64).astype(np.uint32)
    pos = bits.view(np.float32)
    pos = pos[pos <= 100.0]
    return np.concatenate([pos, -pos])


@pytest.mark.parametrize("name,param", CASES)
def test_float32_sweep_within_an_ulp_of_exact(name, param):
    t = _float32_sweep(4099)
    f = _fast(t, name, param)
    ref = _ref(t, name, param)
    ulp = np.spacing(np.abs(ref.astype(np.float32))).astype(np.longdouble)
    err = np.abs(f.astype(np.longdouble) - ref) / ulp
    if (name, param) in FLOAT32_LANES:
        worst = int(np.argmax(err))
        assert err[worst] <= EXACT_ULPS_F32, f"{float(err[worst]):.3f} ulp at {t[worst]!r}"
    assert_within_ulps(f, ref.astype(np.float32), 1.0, where=t)


@pytest.mark.parametrize("name,param", CASES)
def test_float64_sweep(name, param):
    rng = np.random.default_rng(11)
    t = np.concatenate(
        [
            np.linspace(-45.0, 45.0, 90_001),
            rng.standard_normal(20_000) * 0.5,
            np.geomspace(1e-300, 1.0, 2000),
            -np.geomspace(1e-300, 1.0, 2000),
            np.linspace(600.0, 720.0, 2000),
            -np.linspace(600.0, 720.0, 2000),
        ]
    )
    f = _fast(t, name, param)
    ref = _ref(t, name, param).astype(np.float64)
    assert_within_ulps(f, ref, 4.0, where=t)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,param", CASES)
def test_any_length_and_offset(name, param, dtype):
    """Lengths 0 .. 40 at offsets 0 .. 3 of one array: the vectors and the remainder."""
    rng = np.random.default_rng(3)
    base = (rng.standard_normal(64) * 2.0).astype(dtype)
    ref = _ref(base, name, param).astype(dtype)
    ulps = 1.0 if dtype is np.float32 else 4.0
    for off in range(4):
        for n in range(41):
            t = base[off : off + n]
            assert_within_ulps(_fast(t, name, param), ref[off : off + n], ulps, where=t)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,param", CASES)
def test_elements_outside_the_domain_anywhere(name, param, dtype):
    """One NaN, infinity or huge element at each position of 48 moderate ones."""
    fi = np.finfo(dtype)
    rng = np.random.default_rng(4)
    base = (rng.standard_normal(48) * 0.7).astype(dtype)
    for special in (np.nan, np.inf, -np.inf, fi.max, -fi.max, 100.0, -100.0, 3.0, -3.0):
        for j in range(48):
            t = base.copy()
            t[j] = special
            f = _fast(t, name, param)
            ref = _ref(t, name, param).astype(dtype)
            if np.isnan(special):
                assert np.isnan(f[j])
                keep = np.arange(48) != j
                assert_within_ulps(f[keep], ref[keep], 4.0, where=t[keep])
                continue
            finite = np.isfinite(ref)
            assert np.array_equal(f[~finite], ref[~finite])
            ulps = 1.0 if dtype is np.float32 else 4.0
            assert_within_ulps(f[finite], ref[finite], ulps, where=t[finite])


#: worst error of the float64 polynomial forms for vectors with every ``|t| <= 1``, in ulps
#: of the float64-rounded reference (measured worst against the exact value plus 0.5)
NEAR_ULPS = {
    "sigmoid": 1.8, "silu": 2.6, "tanh": 1.9, "gelu_tanh": 1.95, "softplus": 1.7, "gelu": 1.8,
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(NEAR_ULPS))
def test_float64_near_forms(name):
    """Vectors whose every lane has ``|t| <= 1`` take the short polynomial forms; ±1 and
    their neighbours included, and vectors with one lane just outside (the other form)."""
    rng = np.random.default_rng(12)
    edge = np.array([1.0, -1.0, np.nextafter(1.0, 0.0), -np.nextafter(1.0, 0.0), 0.0, -0.0,
                     1e-300, -1e-300])  # fmt: skip
    near = np.concatenate([edge, rng.uniform(-1.0, 1.0, 80_000)])
    mixed = rng.uniform(-1.0, 1.0, 8000)
    mixed[::8] = np.nextafter(1.0, 2.0) * np.sign(rng.standard_normal(1000))
    t = np.concatenate([near, mixed])  # near.size is a whole number of vectors
    param = 1.0 if name == "softplus" else None
    f, ref = _fast(t, name, param), _ref(t, name, param).astype(np.float64)
    k = near.size
    assert_within_ulps(f[:k], ref[:k], NEAR_ULPS[name], where=t[:k])
    assert_within_ulps(f[k:], ref[k:], 4.0, where=t[k:])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_gelu_between_one_and_two(dtype):
    """gelu's vector form covers ``-1 <= t <= 2``: vectors with a lane in ``(1, 2]`` take the
    longer polynomial (every lane of it, ``t`` near -1 included), within 2.4 ulps of the
    rounded reference in float64 (1.9 measured against the exact value), and within an
    ulp in float32; lanes beyond 2 or below -1 are recomputed, also within those."""
    rng = np.random.default_rng(21)
    t = rng.uniform(-1.0, 2.0, 80_000)
    t[::8] = rng.uniform(1.0, 2.0, 10_000)  # a lane beyond 1 in every vector
    t[5::64] = np.array([-1.0, 2.0, np.nextafter(2.0, 3.0), np.nextafter(-1.0, -2.0)] * 313)[
        : t[5::64].size
    ]
    t = t.astype(dtype)
    f, ref = _fast(t, "gelu", None), _ref(t, "gelu", None).astype(dtype)
    assert_within_ulps(f, ref, 2.4 if dtype is np.float64 else 1.0, where=t)
