"""The vectorised activations of ``fastsuper.core.vecmath`` against long-double references.

``phi_fast`` (what the "columns_blocked" Monte-Carlo path applies) within the
tolerance of the accurate per-element forms (4 ulps in float64, 1 in float32)
over random and extreme arguments (the accurate forms take over outside the
fast forms' domains), NaN propagated, and the same numbers as a loop over
``smooth_phi`` to within those ulps on moderate arguments.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest
from builders import SMOOTH_CASES
from checks import assert_within_ulps, extreme_arguments
from naive import smooth_ref

from fastsuper.core.activations import ACTIVATIONS
from fastsuper.core.vecmath import exp_fast, expm1_fast, has_fast_form, log1p_unit, phi_fast

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

ULPS = {np.float64: 4.0, np.float32: 1.0}
CASES = SMOOTH_CASES


def _fast(t, name, param):
    out = np.empty_like(t)
    phi_fast(t, ACTIVATIONS[name], 0.0 if param is None else float(param), out)
    return out


def _check(name, param, t):
    dtype = t.dtype.type
    f = _fast(t, name, param)
    assert f.dtype == t.dtype
    assert not np.isnan(f).any(), "NaN for a number"
    ref = smooth_ref(t.astype(np.float64), name, param)[0].astype(dtype)
    finite = np.isfinite(ref)
    assert np.array_equal(f[~finite], ref[~finite])
    assert_within_ulps(f[finite], ref[finite], ULPS[dtype], where=t[finite])


def test_fast_forms_cover_the_smooth_activations():
    fast = {name for name, code in ACTIVATIONS.items() if has_fast_form(code)}
    assert fast == {"gelu", "sigmoid", "silu", "tanh", "gelu_tanh", "softplus"}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name,param", CASES)
def test_extreme_arguments(name, param, dtype):
    _check(name, param, extreme_arguments(dtype))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name,param", CASES)
@settings(max_examples=30, deadline=None, derandomize=True, database=None)
@given(data=st.data())
def test_random_arguments(name, param, dtype, data):
    width = 32 if dtype is np.float32 else 64
    t = data.draw(
        hnp.arrays(dtype, st.integers(1, 64), elements=st.floats(allow_nan=False, width=width))
    )
    _check(name, param, t)
    moderate = data.draw(
        hnp.arrays(
            dtype, st.integers(1, 64), elements=st.floats(-40, 40, allow_nan=False, width=width)
        )
    )
    _check(name, param, moderate)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name,param", CASES)
def test_nan_propagates(name, param, dtype):
    t = np.array([1.0, np.nan, -2.0], dtype)
    f = _fast(t, name, param)
    assert np.isnan(f[1]) and not np.isnan(f[[0, 2]]).any()


def test_building_blocks():
    """exp, expm1 and log1p on their ranges, against NumPy's libm (a few ulps)."""
    x = np.concatenate([np.linspace(-708.0, 709.0, 20001), np.geomspace(1e-300, 1.0, 500)])
    x = np.concatenate([x, -x])
    x = x[(x >= -708.0) & (x <= 709.0)]
    e = np.array([exp_fast(v) for v in x])
    assert np.max(np.abs(e - np.exp(x)) / np.spacing(np.exp(x))) <= 2.0
    m = np.array([expm1_fast(v) for v in x])
    ref = np.expm1(x)
    assert np.max(np.abs(m - ref) / np.spacing(np.abs(ref))) <= 3.0
    u = np.concatenate([np.linspace(0.0, 1.0, 20001), np.geomspace(1e-300, 1.0, 500)])
    lg = np.array([log1p_unit(v) for v in u])
    ref = np.log1p(u)
    assert np.max(np.abs(lg - ref) / np.spacing(np.maximum(ref, 1e-300))) <= 3.0


def test_fma_reciprocal_and_exact_products():
    """The FMA, the division-free reciprocal and the exact products, against exact arithmetic."""
    from fractions import Fraction

    from fastsuper.core.vecmath import fma, recip_unit, two_prod

    fused = numba.njit(lambda x, y, z: fma(x, y, z))
    rng = np.random.default_rng(5)
    a, b, c = rng.standard_normal((3, 200)) * np.array([[1.0], [1e3], [1e-3]])
    for x, y, z in zip(a, b, c):
        exact = Fraction(x) * Fraction(y) + Fraction(z)
        assert fused(x, y, z) == float(exact)  # rounded once
        p, e = two_prod(x, y)
        assert Fraction(p) + Fraction(e) == Fraction(x) * Fraction(y)
    d = np.concatenate([np.linspace(1.0, 2.0, 20001), 1.0 + rng.random(2000)])
    ref = 1.0 / d  # correctly rounded
    for short, tol in ((False, 1.0), (True, 1e4)):
        got = np.array([recip_unit(v, short) for v in d])
        assert np.max(np.abs(got - ref) / np.spacing(ref)) <= tol


@pytest.mark.parametrize("bits", [53, 24])
def test_exp2_tables_correctly_rounded_with_exact_tails(bits):
    """The vector loops' ``2**(j/16)`` tables, checked in exact rational arithmetic.

    ``q = table[j]`` is the nearest ``bits``-bit number to ``x = 2**(j/16)`` iff
    ``(q - u/2)**16 <= 2**j <= (q + u/2)**16`` (``u`` its ulp, ``q`` in [1, 2));
    ``q (1 + tail[j])`` is ``x`` to float64 precision: its 16th power is ``2**j``
    within ``16 (2**-53 |tail| + 2**-100)`` relative.
    """
    from fractions import Fraction

    from fastsuper.core.vecmath import _exp2_table

    table, tail = _exp2_table(bits)
    u = Fraction(1, 2 ** (bits - 1))
    for j in range(16):
        q = Fraction(table[j])
        assert 1 <= q < 2 and (q / u).denominator == 1, (j, table[j])
        assert (q - u / 2) ** 16 <= 2**j <= (q + u / 2) ** 16, (j, table[j])
        t = Fraction(tail[j])
        assert abs(t) <= u / 2
        rel = abs((q * (1 + t)) ** 16 / 2**j - 1)
        assert rel <= 16 * (abs(t) / 2**53 + Fraction(1, 2**100)), (j, float(rel))
