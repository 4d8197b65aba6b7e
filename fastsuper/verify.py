"""``check``: the Monte-Carlo estimate compared with exact values."""

from __future__ import annotations

import math
from dataclasses import dataclass

from fastsuper.core.laws import SparseInputs
from fastsuper.core.model import Model
from fastsuper.exact.api import exact_loss
from fastsuper.exact.bounds import loss_bounds
from fastsuper.mc.api import LossEstimate, estimate_loss


@dataclass(frozen=True)
class CheckReport:
    """Outcome of :func:`check`.

    ``kind`` is ``"exact"`` when the closed form exists (``power`` activation,
    independent features or a grouped law): the test is two-sided, ``|z| < z_max`` with
    ``z = (MC - exact) / stderr``.  Otherwise ``kind`` is ``"lower_bound"``:
    the exact k <= 1 part of the loss (0 for a grouped law) bounds it from below, and the test is
    one-sided, ``z > -z_max`` with ``z = (MC - bound) / stderr`` -- unless
    the value law is bounded, when ``kind`` is ``"bounds"``: the rigorous
    upper bound of :func:`fastsuper.loss_bounds` is also finite and the
    estimate may lie significantly neither below ``lower_bound`` nor above
    ``upper_bound`` (``z`` is then the more extreme of the two z-scores:
    ``(MC - lower) / stderr`` if the estimate is nearer the lower bound in
    standard errors, else ``(MC - upper) / stderr``).
    """

    estimate: LossEstimate
    kind: str
    reference: float
    lower_bound: float
    z: float
    z_max: float
    passed: bool
    upper_bound: float = math.inf

    @property
    def z_lower(self) -> float:
        """``(MC - lower_bound) / stderr``."""
        return _z(self.estimate, self.lower_bound)

    @property
    def z_upper(self) -> float:
        """``(MC - upper_bound) / stderr`` (``-inf`` without a finite upper bound)."""
        return _z(self.estimate, self.upper_bound)

    @property
    def verdict(self) -> str:
        """One line: the z-score(s), PASS or FAIL, what it means and the criterion."""
        t = f"{self.z_max:g}"
        zs = f"z = {self.z:+.3g}"
        if self.kind == "exact":
            good, bad = "agrees with the exact loss", "and the exact loss disagree"
            rule = f"|z| < {t}"
        elif self.kind == "bounds":
            zs = f"z_lower = {self.z_lower:+.3g}, z_upper = {self.z_upper:+.3g}"
            where = "below the lower" if self.z_lower <= -self.z_max else "above the upper"
            good, bad = "lies within the rigorous bounds", f"lies significantly {where} bound"
            rule = f"z_lower > -{t} and z_upper < {t}"
        else:
            good = "is not significantly below the k<=1 lower bound"
            bad = "lies significantly below the k<=1 lower bound"
            rule = f"z > -{t}"
        if self.passed:
            return f"{zs}: PASS — Monte Carlo {good} ({rule})"
        return f"{zs}: FAIL — Monte Carlo {bad} (needs {rule})"

    def __str__(self) -> str:
        e = self.estimate
        ref = {"exact": "exact loss", "bounds": "nearest bound"}.get(self.kind, "k<=1 lower bound")
        lines = [
            f"Monte Carlo   {e.mean:.10g} ± {e.stderr:.3g}  ({e.n_samples} samples; the loss, "
            f"a sum over the {e.n} features)",
            f"{ref:<13} {self.reference:.10g}",
            f"k<=1 part     {self.lower_bound:.10g}",
        ]
        if math.isfinite(self.upper_bound):
            lines.append(f"upper bound   {self.upper_bound:.10g}")
        lines.append(self.verdict)
        return "\n".join(lines)


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
    lower bound: the estimate may not lie significantly below it; for
    bounded value laws also the rigorous upper bound of
    :func:`fastsuper.loss_bounds` (``kind="bounds"``): the estimate may not
    lie significantly above it either.

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
    report = compare(est, model, inputs, z_max=z_max)
    if strict and not report.passed:
        raise AssertionError(f"fastsuper.check failed:\n{report}")
    return report


def compare(est: LossEstimate, model: Model, inputs: SparseInputs, *, z_max: float = 5.0):
    """The :class:`CheckReport` of an estimate already made (what :func:`check` reports).

    Parameters
    ----------
    est : LossEstimate
        An estimate of the loss of ``model`` under ``inputs``.
    model, inputs
        The model and the input law of ``est``.
    z_max : float, default 5
        Threshold on the z-score, in standard errors.

    Returns
    -------
    CheckReport
    """
    if inputs.pattern == "grouped":  # no k <= 1 bounds (THEORY §8): exact, or loss >= 0
        lower, upper = 0.0, math.inf
    else:
        bounds = loss_bounds(model, inputs)
        lower, upper = bounds.lower, bounds.upper
    if model.activation == "power" and inputs.pattern in ("bernoulli", "grouped"):
        kind, ref = "exact", exact_loss(model, inputs)
    elif math.isfinite(upper):
        kind = "bounds"
        z_lo, z_up = _z(est, lower), _z(est, upper)
        if z_lo < 0 or (z_up <= 0 and z_lo <= -z_up):
            ref = lower  # below the lower bound, or nearer it in standard errors
        else:
            ref = upper
    else:
        kind, ref = "lower_bound", lower
    z = _z(est, ref)
    if kind == "exact":
        passed = abs(z) < z_max
    elif kind == "bounds":
        passed = _z(est, lower) > -z_max and _z(est, upper) < z_max
    else:
        passed = z > -z_max
    return CheckReport(
        est, kind, float(ref), float(lower), float(z), float(z_max), passed, float(upper)
    )


def _z(est: LossEstimate, ref: float) -> float:
    """``(MC - ref) / stderr`` (0 or ±inf for a deterministic loss)."""
    diff = est.mean - ref
    if est.stderr > 0:
        return diff / est.stderr
    # deterministic loss (e.g. p in {0, 1} with constant values)
    return 0.0 if abs(diff) <= 1e-9 * max(1.0, abs(ref)) else math.copysign(math.inf, diff)
