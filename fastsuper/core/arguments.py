"""Checks of the package's own objects: value laws, input laws and models.

The checkers of plain arguments (integers, reals, arrays, choices) are in
:mod:`fastsuper.core.validation`; these sit above the classes they check.
"""

from __future__ import annotations

from fastsuper.core.laws import SparseInputs, ValueLaw
from fastsuper.core.model import Model
from fastsuper.core.validation import LAW_NAMES, prefix, show

__all__ = ["check_inputs", "check_law", "check_model_inputs"]


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
