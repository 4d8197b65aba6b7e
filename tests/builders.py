"""Random models and activation cases shared by the test modules."""

from __future__ import annotations

import numpy as np

import fastsuper as fs

#: (activation, exponent): every family, integer and real exponents
ACTIVATION_CASES = [
    ("power", 1),
    ("power", 2),
    ("power", 3),
    ("power", 5),
    ("signed_power", 1.5),
    ("signed_power", 2),
    ("signed_power", 0.7),
    ("relu_power", 1),
    ("relu_power", 2),
    ("relu_power", 3),
    ("relu_power", 2.5),
    ("relu_power", 4),
]


def random_model(
    n, d, act="power", a=3, bias=True, dtype=np.float64, seed=0, scale=0.5, param=None
):
    """A model with N(0, scale**2) weights and N(0, 0.2**2) biases, drawn in float64.

    Parameters
    ----------
    n, d : int
        Features and hidden dimension: ``W`` has shape ``(d, n)``.
    act, a
        Activation family and exponent (``param``: its parameter, softplus beta or
        leaky_relu slope).
    bias : bool
        Draw a bias (after ``W``) or leave the model without one.
    dtype : numpy dtype
        The model's dtype; the draws are rounded to it.
    seed : int
        Seed of ``numpy.random.default_rng``.
    scale : float
        Standard deviation of the weights.
    """
    rng = np.random.default_rng(seed)
    W = (rng.normal(size=(d, n)) * scale).astype(dtype)
    b = (rng.normal(size=n) * 0.2).astype(dtype) if bias else None
    return fs.Model(W, b, activation=act, exponent=a, param=param)


#: value laws of the exact closed forms' kernel tests
EXACT_LAWS = {
    "gaussian": fs.ValueLaw("gaussian"),
    "rademacher": fs.ValueLaw("rademacher"),
    "uniform": fs.ValueLaw("uniform"),
    "discrete": fs.ValueLaw("discrete", support=[-1.3, 0.4, 2.1], probs=[0.2, 0.5, 0.3]),
}

#: the smooth activations and their parameters, for the vector forms' tests
SMOOTH_CASES = [
    ("gelu", None),
    ("sigmoid", None),
    ("silu", None),
    ("tanh", None),
    ("gelu_tanh", None),
    ("softplus", 1.0),
    ("softplus", 0.3),
    ("softplus", 7.0),
]


def exact_case(law, m, bias, n, d, seed=0):
    """``(W, b, inputs)``: a random model of ``n`` features in ``d`` dimensions (bias or
    ``None``) and Bernoulli inputs with per-feature ``p`` and importances, values from
    :data:`EXACT_LAWS` ``[law]``."""
    rng = np.random.default_rng([seed, m, bias, n, d, len(law)])
    W = 0.8 * rng.normal(size=(d, n)) / np.sqrt(d)
    b = rng.normal(scale=0.3, size=n) if bias else None
    p = rng.uniform(0.05, 0.9, n)
    imp = rng.uniform(0.5, 2.0, n)
    return W, b, fs.SparseInputs(n, p=p, values=EXACT_LAWS[law], importance=imp)
