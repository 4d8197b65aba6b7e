"""``check``: the Monte-Carlo estimate compared with exact values."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .decomposition import low_order_terms
from .estimators import LossEstimate, estimate_loss
from .exact import exact_loss
from .model import Model
from .sampling import SparseInputs


@dataclass(frozen=True)
class CheckReport:
    """Outcome of :func:`check`.

    ``kind`` is ``"exact"`` when the closed form exists (``power`` activation,
    independent features): the test is two-sided, ``|z| < z_max`` with
    ``z = (MC - exact) / stderr``.  Otherwise ``kind`` is ``"lower_bound"``:
    the exact k <= 1 part of the loss bounds it from below, and the test is
    one-sided, ``z > -z_max`` with ``z = (MC - bound) / stderr``.
    """

    estimate: LossEstimate
    kind: str
    reference: float
    lower_bound: float
    z: float
    z_max: float
    passed: bool

    def __str__(self) -> str:
        e = self.estimate
        ref = "exact loss" if self.kind == "exact" else "k<=1 lower bound"
        verdict = "PASS" if self.passed else "FAIL"
        cond = f"|z| < {self.z_max:g}" if self.kind == "exact" else f"z > -{self.z_max:g}"
        return "\n".join(
            [
                f"Monte Carlo   {e.mean:.10g} ± {e.stderr:.3g}  ({e.n_samples} samples)",
                f"{ref:<13} {self.reference:.10g}",
                f"k<=1 part     {self.lower_bound:.10g}",
                f"z-score       {self.z:+.3f}   {verdict} ({cond})",
            ]
        )


def check(
    model: Model,
    inputs: SparseInputs,
    n_samples: int = 200_000,
    seed: int = 0,
    *,
    z_max: float = 5.0,
    strict: bool = False,
    **estimate_kwargs,
) -> CheckReport:
    """Compare a Monte-Carlo estimate of the loss with its exact value.

    For ``power`` activations with independent features the reference is
    :func:`fastsuper.exact_loss` and the check is two-sided.  For other
    activations (or the exactly-k pattern) the reference is the exact
    k <= 1 part of the loss (:func:`fastsuper.low_order_terms`), a rigorous
    lower bound: the estimate may not lie significantly below it.

    Parameters
    ----------
    model, inputs, n_samples, seed
        As for :func:`fastsuper.estimate_loss`.
    z_max : float, default 5
        Threshold on the z-score, in standard errors.
    strict : bool, default False
        Raise ``AssertionError`` with the report when the check fails.
    **estimate_kwargs
        Passed to :func:`fastsuper.estimate_loss` (``path``, ``block_size``...).

    Returns
    -------
    CheckReport

    Examples
    --------
    >>> import numpy as np, fastsuper as fs
    >>> W = np.random.default_rng(0).normal(size=(3, 12)) / 2
    >>> report = fs.check(fs.Model(W), fs.SparseInputs(12, p=0.1, values="rademacher"),
    ...                   100_000, seed=2)
    >>> report.kind, report.passed
    ('exact', True)
    """
    est = estimate_loss(model, inputs, n_samples, seed, **estimate_kwargs)
    lower = low_order_terms(model, inputs).lower_bound
    if model.activation == "power" and inputs.pattern == "bernoulli":
        kind, ref = "exact", exact_loss(model, inputs)
    else:
        kind, ref = "lower_bound", lower
    diff = est.mean - ref
    if est.stderr > 0:
        z = diff / est.stderr
    else:  # deterministic loss (e.g. p in {0, 1} with constant values)
        z = 0.0 if abs(diff) <= 1e-9 * max(1.0, abs(ref)) else math.copysign(math.inf, diff)
    passed = abs(z) < z_max if kind == "exact" else z > -z_max
    report = CheckReport(est, kind, float(ref), float(lower), float(z), float(z_max), passed)
    if strict and not passed:
        raise AssertionError(f"fastsuper.check failed:\n{report}")
    return report
