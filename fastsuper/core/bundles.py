"""Parameter bundles: the input law and the activation as one typed argument each.

The compiled kernels (CPU ``@njit`` and CUDA) take an :class:`InputLaw` and an
:class:`Activation` instead of nine and three loose arguments.  Both are
``NamedTuple`` s of scalars and contiguous arrays, which Numba types as
heterogeneous tuples: passing one costs nothing, and a kernel may unpack it
at its boundary.  Build them with :func:`input_law` and :func:`activation`
from the validated :class:`~fastsuper.SparseInputs` and
:class:`~fastsuper.Model`; everything below trusts them.

Adding an input law (or an activation) means adding its fields here, its
per-element maths in :mod:`fastsuper.core.laws` (or
:mod:`fastsuper.core.activations`), and nothing in the signatures between.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

__all__ = ["Activation", "InputLaw", "activation", "input_law"]


class InputLaw(NamedTuple):
    """What the compiled sampler needs to draw a sample (see :mod:`fastsuper.core.laws`)."""

    #: number of features
    n: int
    #: fixed number of active features, or -1 for independent Bernoulli features
    kfix: int
    #: largest activation probability
    pmax: float
    #: ``log(1 - pmax)`` (``-inf`` when ``pmax == 1``), the geometric skip's rate
    log1mp: float
    #: True when the probabilities differ across features (thinning after the skip)
    thin: bool
    #: activation probability of each feature, float64 (n,)
    p: np.ndarray
    #: value-law code (:data:`fastsuper.core.laws` ``*_CODE`` constants)
    code: int
    #: support of a discrete value law, float64
    support: np.ndarray
    #: cumulative probabilities of a discrete value law, float64
    cum: np.ndarray


class Activation(NamedTuple):
    """The output activation phi of a model (see :mod:`fastsuper.core.activations`)."""

    #: activation code (``POWER``, ``SIGNED_POWER``, ``RELU_POWER``)
    code: int
    #: exponent, in the model's compute dtype
    a: float
    #: the exponent as an integer when it is one, else -1
    ia: int


def input_law(inputs) -> InputLaw:
    """The :class:`InputLaw` bundle of a :class:`~fastsuper.SparseInputs`."""
    pmax = float(inputs.p.max()) if inputs.n else 0.0
    return InputLaw(
        int(inputs.n),
        -1 if inputs.k is None else int(inputs.k),
        pmax,
        math.log1p(-pmax) if pmax < 1.0 else -math.inf,
        not inputs.p_is_scalar,
        inputs.p,
        int(inputs.law.code),
        inputs.law.support,
        inputs.law.cumprobs,
    )


def activation(model) -> Activation:
    """The :class:`Activation` bundle of a :class:`~fastsuper.Model`."""
    return Activation(
        int(model.act_code), model.dtype.type(model.exponent), int(model.int_exponent)
    )
