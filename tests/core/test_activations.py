"""The smooth and piecewise-linear activations against long-double references.

phi and phi' of gelu, gelu_tanh, tanh, softplus, sigmoid, silu, leaky_relu and
identity, per element, in float32 and float64: within a few ulps of the
references of ``tests/naive.py`` over random and extreme arguments (the
whole float range, infinities), never NaN for a number.  phi' is measured in
ulps of the sum of the absolute values of its terms (it has zeros: gelu,
silu, gelu_tanh).
"""

from __future__ import annotations

import numpy as np
import pytest
from checks import assert_within_ulps, extreme_arguments, phi_dphi
from naive import SMOOTH_PARAMS, smooth_ref

import fastsuper as fs
from fastsuper import testing as T

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

#: the tolerance in ulps of the result: float64 (a few roundings) and float32 (rounded once)
ULPS = {np.float64: 4.0, np.float32: 1.0}
CASES = [(name, None) for name in SMOOTH_PARAMS] + [
    ("softplus", 0.3),
    ("softplus", 7.0),
    ("leaky_relu", 0.2),
    ("leaky_relu", 0.0),
]


def _bundle(name, param, dtype):
    model = fs.Model(np.eye(1, dtype=dtype), activation=name, param=param)
    return T.activation(model)


def _check(name, param, t):
    dtype = t.dtype.type
    f, g = phi_dphi(t, _bundle(name, param, dtype))
    assert f.dtype == t.dtype and g.dtype == t.dtype
    assert not np.isnan(f).any(), "NaN for a number"
    if name == "identity":  # power with exponent 1: t - t + 1, NaN at +-inf like every power
        t, f, g = t[np.isfinite(t)], f[np.isfinite(t)], g[np.isfinite(t)]
    assert not np.isnan(g).any(), "NaN for a number"
    rf, rg, scale = smooth_ref(t.astype(np.float64), name, param)
    ref_f = rf.astype(dtype)
    ref_g = rg.astype(dtype)
    finite = np.isfinite(ref_f)
    assert np.array_equal(f[~finite], ref_f[~finite])  # +-inf exactly
    assert_within_ulps(f[finite], ref_f[finite], ULPS[dtype], where=t[finite])
    assert_within_ulps(g, ref_g, ULPS[dtype], spacing_of=scale, where=t)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name,param", CASES)
def test_extreme_arguments(name, param, dtype):
    _check(name, param, extreme_arguments(dtype))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name,param", CASES)
@settings(max_examples=30, deadline=None, derandomize=True, database=None)
@given(data=st.data())
def test_random_arguments(name, param, dtype, data):
    t = data.draw(
        hnp.arrays(
            dtype,
            st.integers(1, 64),
            elements=st.floats(allow_nan=False, width=32 if dtype is np.float32 else 64),
        )
    )
    _check(name, param, t)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", sorted(SMOOTH_PARAMS))
def test_nan_propagates(name, dtype):
    f, g = phi_dphi(np.array([np.nan], dtype), _bundle(name, None, dtype))
    assert np.isnan(f[0]) and np.isnan(g[0])


@pytest.mark.parametrize("name,param", CASES)
def test_derivative_by_finite_differences(name, param):
    t = np.linspace(-6.0, 6.0, 121) + 0.01  # away from the kink of leaky_relu
    f, g = phi_dphi(t, _bundle(name, param, np.float64))
    h = 1e-6
    fp, _ = phi_dphi(t + h, _bundle(name, param, np.float64))
    fm, _ = phi_dphi(t - h, _bundle(name, param, np.float64))
    np.testing.assert_allclose(g, (fp - fm) / (2 * h), rtol=1e-7, atol=1e-8)


def test_gelu_tanh_is_close_to_gelu():
    t = np.linspace(-8, 8, 801)
    f, _ = phi_dphi(t, _bundle("gelu", None, np.float64))
    h, _ = phi_dphi(t, _bundle("gelu_tanh", None, np.float64))
    assert np.abs(f - h).max() < 1e-3  # the approximation's known accuracy


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(activation="softplus", param=0.0), ValueError, r"0 < beta <= 1e6, got 0\.0"),
        (dict(activation="softplus", param=-1), ValueError, "0 < beta <= 1e6"),
        (dict(activation="softplus", param=np.inf), ValueError, "must be finite"),
        (dict(activation="softplus", param="2"), TypeError, "must be a real number"),
        (dict(activation="leaky_relu", param=1.5), ValueError, "0 <= slope <= 1"),
        (dict(activation="leaky_relu", param=-0.1), ValueError, "0 <= slope <= 1"),
        (dict(activation="gelu", param=1.0), ValueError, "takes no parameter"),
        (dict(activation="relu", param=1.0), ValueError, "takes no parameter"),
        (dict(activation="tanh", exponent=2), ValueError, "has exponent 1"),
        (dict(activation="identity", exponent=3), ValueError, "has exponent 1"),
    ],
)
def test_bad_parameters_are_refused(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        fs.Model(np.eye(2), **kwargs)


def test_parameters_reach_the_bundle():
    model = fs.Model(np.eye(2, dtype=np.float32), activation="softplus", param=2.5)
    act = T.activation(model)
    assert act.c == 2.5 and act.code == T.ACTIVATIONS["softplus"]
    assert fs.Model(np.eye(2), activation="leaky_relu").param == 0.01
    assert fs.Model(np.eye(2), activation="identity").act_code == T.ACTIVATIONS["power"]
    assert model.with_params(W=np.eye(2, dtype=np.float32) * 2).param == 2.5
