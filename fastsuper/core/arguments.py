"""Checks of the package's own objects: value laws, input laws and models.

The checkers of plain arguments (integers, reals, arrays, choices) are in
:mod:`fastsuper.core.validation`; these sit above the classes they check.
"""

from __future__ import annotations

import math
import sys

from fastsuper.core.laws import SparseInputs, ValueLaw
from fastsuper.core.model import Model
from fastsuper.core.validation import LAW_NAMES, prefix, show

__all__ = [
    "check_inputs",
    "check_law",
    "check_model_inputs",
    "check_moments",
    "finite_moment_order",
]


def check_law(name: str, value, *, func: str | None = None):
    """A :class:`~fastsuper.core.laws.ValueLaw`, or the name of one (:data:`LAW_NAMES`)."""
    if isinstance(value, ValueLaw):
        return value
    if isinstance(value, str) and value in LAW_NAMES:
        return ValueLaw(value)
    if isinstance(value, str):
        raise ValueError(
            f"{prefix(func)}{name} = {value!r} is not a value law; the values must be one of "
            f"{list(LAW_NAMES)} or a fastsuper.ValueLaw (e.g. ValueLaw('discrete', "
            "support=..., probs=...))"
        )
    raise TypeError(
        f"{prefix(func)}{name} must be a value-law name or a fastsuper.ValueLaw, got "
        f"{show(value)}; the names are {list(LAW_NAMES)}"
    )


def check_inputs(inputs, *, func: str | None = None) -> None:
    """A :class:`~fastsuper.core.laws.SparseInputs`."""
    if not isinstance(inputs, SparseInputs):
        raise TypeError(
            f"{prefix(func)}inputs must be a fastsuper.SparseInputs, got {type(inputs).__name__}"
        )


def refuse_groups(inputs, what: str, *, func: str | None = None, hint: str = "") -> None:
    """Raise ValueError if ``inputs`` is a grouped law, which ``what`` does not handle."""
    if getattr(inputs, "groups", None) is not None:
        raise ValueError(
            f"{prefix(func)}{what} assumes independent features and does not handle grouped "
            f"input laws (inputs has groups={inputs.groups.describe()})"
            + (f"; {hint}" if hint else "")
        )


def check_model_inputs(model, inputs, *, func: str | None = None) -> None:
    """A :class:`~fastsuper.core.model.Model` and a :class:`~fastsuper.core.laws.SparseInputs`
    with the same number of features."""
    pre = prefix(func)
    if not isinstance(model, Model):
        raise TypeError(f"{pre}model must be a fastsuper.Model, got {type(model).__name__}")
    check_inputs(inputs, func=func)
    if inputs.n != model.n:
        raise ValueError(
            f"{pre}inputs.n = {inputs.n} does not match the model's n = {model.n} (W has shape "
            f"{model.W.shape})"
        )


def finite_moment_order(law: ValueLaw, order: int) -> int:
    """The largest ``r <= order`` such that the moments ``E xi**0 .. E xi**r`` are finite floats.

    ``order`` when they all are; the Gaussian's ``(r - 1)!!`` overflows
    float64 from ``r = 302`` on.

    Examples
    --------
    >>> from fastsuper.core.arguments import finite_moment_order
    >>> from fastsuper.core.laws import ValueLaw
    >>> finite_moment_order(ValueLaw("gaussian"), 401), finite_moment_order(ValueLaw("uniform"), 9)
    (301, 9)
    """
    lo, hi = law.bounds
    if max(-lo, hi) <= 1.0:  # |xi| <= 1: every moment is finite
        return order
    if math.isinf(hi):  # the Gaussian: the loop ends by r = 302
        for r in range(order + 1):
            if not _finite_moment(law, r):
                return r - 1
        return order
    # |xi| <= a with a > 1: finite up to a**r <= max float, then (|terms| grow) finite up to
    # the first overflow: bisection, so that a huge order costs a few dozen moments
    good = min(order, int(_LOG_MAX / math.log(max(-lo, hi))))
    if _finite_moment(law, order):
        return order
    bad = order
    while bad - good > 1:
        mid = (good + bad) // 2
        good, bad = (mid, bad) if _finite_moment(law, mid) else (good, mid)
    return good


#: log of the largest float64
_LOG_MAX = math.log(sys.float_info.max)


def _finite_moment(law: ValueLaw, r: int) -> bool:
    try:
        law.moment(r)
    except ValueError:
        return False
    return True


def check_moments(law: ValueLaw, m: int, *, func: str | None = None, odd: bool = True) -> None:
    """Raise ValueError if the moments ``E xi**r``, ``r <= 2m + 1``, of ``law`` overflow float64.

    The closed forms for the exponent ``m`` (THEORY §3, §4) need them all
    (``odd=False``: up to ``r = 2m``, as the first-order constants of THEORY
    §5 do); the message gives the largest exponent whose moments are finite.
    """
    extra = 1 if odd else 0
    order = 2 * m + extra
    top = finite_moment_order(law, order)
    if top < order:
        raise ValueError(
            f"{prefix(func)}exponent m = {m} needs the moments E xi**r of {law!r} up to r = "
            f"2m{' + 1' if odd else ''} = {order}, but they overflow float64 beyond r = {top}; "
            f"the largest usable exponent for these values is m = {(top - extra) // 2}"
        )
