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
