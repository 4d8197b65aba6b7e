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

from fastsuper.core.jit import borrow, njit

__all__ = [
    "GAP_SCAN",
    "MODE_BINOM",
    "MODE_PLAIN",
    "MODE_SEQ",
    "Activation",
    "InputLaw",
    "SampleRule",
    "activation",
    "gap_tables",
    "group_fields",
    "input_law",
    "plain_rule",
]

#: thresholds the sampler compares a uniform with before it takes a logarithm
#: (gaps ``0 .. GAP_SCAN - 1``; see :func:`gap_tables`)
GAP_SCAN = 8
#: relative half-width of the band around each threshold where the logarithm decides
GAP_BAND = 1e-9


#: placeholders of the group fields of a law without groups (a device array may not be empty)
_NO_GROUP_F = np.zeros(1)
_NO_GROUP_I = np.zeros(1, dtype=np.int64)


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
    #: thresholds of the geometric skip (:func:`gap_tables`), or a length-1
    #: placeholder: every gap by its logarithm (the same gaps, bit for bit)
    tlo: np.ndarray
    #: upper thresholds, the companion of ``tlo``
    thi: np.ndarray
    # grouped laws (THEORY §8, :mod:`fastsuper.core.groups`): every group and every
    # ungrouped feature is a unit; ``ngrp = 0`` (and length-1 placeholders) for
    # independent features
    #: number of units, or 0 for a law without groups
    ngrp: int = 0
    #: largest gate probability of a unit
    gqmax: float = 0.0
    #: ``log(1 - gqmax)`` (``-inf`` when ``gqmax == 1``)
    glog1mq: float = -math.inf
    #: True when the gate probabilities differ across units (thinning after the skip)
    gthin: bool = False
    #: gate probability of each unit, float64
    gq: np.ndarray = _NO_GROUP_F
    #: unit ``u`` has members ``gmem[gptr[u]:gptr[u + 1]]``, int64
    gptr: np.ndarray = _NO_GROUP_I
    #: members of the units, sorted within each unit, int64
    gmem: np.ndarray = _NO_GROUP_I
    #: sampler code of each unit (:data:`fastsuper.core.groups.ALL`, ``PARTIAL``,
    #: ``EXCLUSIVE``), int64
    gkind: np.ndarray = _NO_GROUP_I
    #: per member: in-group probability (partial) or cumulative weight (exclusive), float64
    gval: np.ndarray = _NO_GROUP_F
    #: True when the members of different units interleave (sort each sample's features)
    gsort: bool = False


#: rules of :class:`SampleRule`: the law given ``K >= 2`` with one ``p``
#: (``MODE_BINOM``) or one ``p_i`` per feature (``MODE_SEQ``), or the plain sampler
MODE_BINOM, MODE_SEQ, MODE_PLAIN = range(3)


class SampleRule(NamedTuple):
    """Which law the kernels draw samples from (see :func:`fastsuper.core.laws.draw_active_by`).

    The plain input law (``MODE_PLAIN``, :func:`plain_rule`), or the input
    law conditioned on ``K >= 2`` active features, with the tables of
    :mod:`fastsuper.mc.kernels_stratified` (unused tables are length-1
    placeholders).
    """

    #: ``MODE_BINOM``, ``MODE_SEQ`` or ``MODE_PLAIN``
    mode: int
    #: CDF of ``K`` given ``K >= 2`` (``MODE_BINOM``), float64
    kcdf: np.ndarray
    #: log-survival tables of the first and second active feature (``MODE_SEQ``), float64
    h1: np.ndarray
    h2: np.ndarray
    #: count of features with ``p = 1`` before each position (``MODE_SEQ``), int64
    ones: np.ndarray


def plain_rule() -> SampleRule:
    """The :class:`SampleRule` of the plain input law."""
    empty = np.zeros(1)
    return SampleRule(MODE_PLAIN, empty, empty, empty, np.zeros(1, dtype=np.int64))


class Activation(NamedTuple):
    """The output activation phi of a model (see :mod:`fastsuper.core.activations`)."""

    #: activation code (``POWER``, ``SIGNED_POWER``, ``RELU_POWER``)
    code: int
    #: exponent, in the model's compute dtype
    a: float
    #: the exponent as an integer when it is one, else -1
    ia: int
    #: the activation's parameter in float64 (softplus ``beta``, leaky_relu ``slope``; else 0)
    c: float = 0.0


def gap_tables(n: int, log1mp: float) -> tuple[np.ndarray, np.ndarray]:
    """Thresholds that replace most logarithms of the geometric skipping.

    The sampler's gap is ``floor(log(u) / log(1 - p))``, which is ``>= g``
    exactly when ``u <= (1 - p)^g``.  With ``tlo[g] = (1 - p)^g (1 - GAP_BAND)``
    and ``thi[g] = (1 - p)^g (1 + GAP_BAND)`` (g = 0 .. n + GAP_SCAN),
    ``u < tlo[g]`` and ``u > thi[g]`` decide the comparison for sure: the
    formula's rounding error is about 1e-16 relative, far inside the band.
    The sampler counts the thresholds below ``u`` (no branches to
    mispredict); a ``u`` inside a band (probability about 2e-9 per threshold)
    or a gap of ``GAP_SCAN`` or more is decided by the formula itself, so the
    gaps are the formula's bit for bit.  Worth it where gaps are short (large
    ``p``) or samples end after a few features (small ``n``).
    """
    size = n + GAP_SCAN + 1
    t = np.exp(np.arange(size) * log1mp) if math.isfinite(log1mp) else np.zeros(size)
    return t * (1.0 - GAP_BAND), t * (1.0 + GAP_BAND)


#: the placeholder of a law without gap thresholds (a device array may not be empty)
_NO_GAPS = np.zeros(1)


def input_law(inputs, gaps: bool = False) -> InputLaw:
    """The :class:`InputLaw` bundle of a :class:`~fastsuper.SparseInputs`.

    With ``gaps``, the bundle carries the thresholds of :func:`gap_tables`.
    """
    pmax = float(inputs.p.max()) if inputs.n else 0.0
    log1mp = math.log1p(-pmax) if pmax < 1.0 else -math.inf
    tlo, thi = gap_tables(inputs.n, log1mp) if gaps else (_NO_GAPS, _NO_GAPS)
    return InputLaw(
        int(inputs.n),
        -1 if inputs.k is None else int(inputs.k),
        pmax,
        log1mp,
        not inputs.p_is_scalar,
        inputs.p,
        int(inputs.law.code),
        inputs.law.support,
        inputs.law.cumprobs,
        tlo,
        thi,
        *group_fields(inputs),
    )


def group_fields(inputs) -> tuple:
    """The group fields of the :class:`InputLaw` of ``inputs`` (placeholders without groups)."""
    if inputs.groups is None:
        return (0, 0.0, -math.inf, False, _NO_GROUP_F, _NO_GROUP_I, _NO_GROUP_I, _NO_GROUP_I,
                _NO_GROUP_F, False)  # fmt: skip
    u = inputs.group_units  # fastsuper.core.groups.Units
    qmax = float(u.q.max())
    log1mq = math.log1p(-qmax) if qmax < 1.0 else -math.inf
    thin = bool(np.any(u.q != u.q[0]))
    return (int(u.q.shape[0]), qmax, log1mq, thin, u.q, u.ptr, u.mem, u.kind, u.val,
            u.interleaved)  # fmt: skip


def activation(model, dtype=None) -> Activation:
    """The :class:`Activation` bundle of a :class:`~fastsuper.Model`.

    The exponent is in ``dtype``, by default the model's compute dtype.
    """
    dt = model.dtype if dtype is None else np.dtype(dtype)
    return Activation(
        int(model.act_code),
        dt.type(model.exponent),
        int(model.int_exponent),
        float(model.param),
    )


@njit(inline="always")
def borrowed_law(law):
    """``law`` with :func:`~fastsuper.core.jit.borrow` views of its arrays (CPU kernels).

    For hot loops that pass the law to inlined per-sample functions: copies
    of the borrowed bundle cost no reference counting.  Use it only within
    the call that received ``law``.
    """
    return InputLaw(
        law.n, law.kfix, law.pmax, law.log1mp, law.thin, borrow(law.p), law.code,
        borrow(law.support), borrow(law.cum), borrow(law.tlo), borrow(law.thi),
        law.ngrp, law.gqmax, law.glog1mq, law.gthin, borrow(law.gq), borrow(law.gptr),
        borrow(law.gmem), borrow(law.gkind), borrow(law.gval), law.gsort,
    )  # fmt: skip


@njit(inline="always")
def instance_law(laws, k):
    """The :class:`~fastsuper.core.bundles.InputLaw` of instance ``k`` of a stack of laws.

    ``laws`` is an ``InputLaw`` whose fields ``pmax``, ``log1mp``, ``thin``
    (one entry per instance), ``p``, ``tlo`` and ``thi`` (one row per
    instance) hold every instance's values.
    """
    return InputLaw(
        laws.n, laws.kfix, laws.pmax[k], laws.log1mp[k], laws.thin[k], laws.p[k], laws.code,
        laws.support, laws.cum, laws.tlo[k], laws.thi[k], laws.ngrp, laws.gqmax, laws.glog1mq,
        laws.gthin, laws.gq, laws.gptr, laws.gmem, laws.gkind, laws.gval, laws.gsort,
    )  # fmt: skip


@njit(inline="always")
def borrowed_rule(rule):
    """``rule`` with borrowed views of its arrays (see :func:`borrowed_law`)."""
    return SampleRule(
        rule.mode, borrow(rule.kcdf), borrow(rule.h1), borrow(rule.h2), borrow(rule.ones)
    )
