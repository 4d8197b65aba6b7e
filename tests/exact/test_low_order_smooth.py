"""Exact k <= 1 terms of the smooth and piecewise-linear activations.

Every pair's one-dimensional integral against ``scipy.integrate.quad`` (split
at the kink or centre), the quadrature's error estimate, and the k = 1
conditional loss against a direct average over a fine grid of the value law.
"""

import numpy as np
import pytest
from builders import random_model
from naive import phi_numpy
from scipy import integrate

import fastsuper as fs
from fastsuper.exact.low_order import k1_conditional_loss

CASES = [
    ("gelu", None),
    ("gelu_tanh", None),
    ("tanh", None),
    ("softplus", 3.0),
    ("sigmoid", None),
    ("silu", None),
    ("leaky_relu", 0.1),
    ("identity", None),
]


def _pair_reference(act, param, c, b, diag, values):
    """``E phi(c xi + b)**2`` (or ``E (xi - phi)**2``) by scipy's adaptive quadrature."""

    def f(x):
        y = float(phi_numpy(np.array([c * x + b]), act, 1, param)[0])
        return (x - y) ** 2 if diag else y * y

    if values == "gaussian":
        lo, hi = -40.0, 40.0

        def g(x):
            return f(x) * np.exp(-x * x / 2) / np.sqrt(2 * np.pi)

    else:
        lo, hi = (0.0, 1.0) if values == "uniform" else (-1.0, 1.0)

        def g(x):
            return f(x) / (hi - lo)

    pts = sorted({p for p in (-b / c if c else 0.0, 0.0) if lo < p < hi})
    val, err = integrate.quad(g, lo, hi, points=pts or None, epsabs=0, epsrel=1e-13, limit=400)
    return val


@pytest.mark.parametrize("act,param", CASES)
@pytest.mark.parametrize("values", ["gaussian", "uniform", "uniform_sym"])
def test_pairs_against_scipy_quad(act, param, values):
    n = 5
    model = random_model(n, 3, act, None, bias=True, seed=7, scale=1.5, param=param)
    inputs = fs.SparseInputs(n, p=0.1, values=values)
    M = k1_conditional_loss(model, inputs, per_output=True)
    A = model.W.T @ model.W
    for i in range(n):
        for j in range(n):
            ref = _pair_reference(act, param, A[j, i], model.bias[j], i == j, values)
            assert M[j, i] == pytest.approx(ref, rel=1e-12, abs=1e-15), (i, j)


@pytest.mark.parametrize("act,param", CASES)
def test_error_estimate_is_stated_and_small(act, param):
    model = random_model(40, 4, act, None, bias=True, seed=1, scale=2.0, param=param)
    terms = fs.low_order_terms(model, fs.SparseInputs(40, p=0.01, values="gaussian"))
    smooth = act not in ("leaky_relu", "identity")
    assert (terms.quad_error > 0) == smooth  # exact rules for the piecewise-linear ones
    assert terms.quad_error <= 1e-9 * terms.lower_bound


def test_zero_weight_and_extreme_bias():
    """``A_ji = 0`` (a constant integrand) and biases far out on either side."""
    W = np.array([[1.0, 0.0, 0.5]])
    for b in ([0.0, 30.0, -30.0], [2.0, -50.0, 50.0]):
        model = fs.Model(W, b=b, activation="gelu")
        inputs = fs.SparseInputs(3, p=0.1, values="gaussian")
        M = k1_conditional_loss(model, inputs, per_output=True)
        A = W.T @ W
        for i in range(3):
            for j in range(3):
                ref = _pair_reference("gelu", None, A[j, i], b[j], i == j, "gaussian")
                assert M[j, i] == pytest.approx(ref, rel=1e-12, abs=1e-300)
