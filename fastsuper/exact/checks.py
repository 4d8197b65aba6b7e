"""Argument checks shared by the exact closed forms and the prepared evaluator (THEORY §3).

:func:`closed_form_exponent` checks that a model and an input law have the
closed form of :mod:`fastsuper.exact.api` and that its scratch fits in
memory; :class:`fastsuper.exact.prepared.ExactEvaluator` runs the same check
once per law and shape.
"""

from __future__ import annotations

from fastsuper.core import arguments, config
from fastsuper.core import validation as v
from fastsuper.exact.kernels_tensor import monomial_count

__all__ = ["BACKENDS", "closed_form_exponent", "fused_bytes", "tensor_bytes"]

BACKENDS = ("cpu", "cuda")


def fused_bytes(n: int, d: int, m: int = 3) -> float:
    """Scratch of the fused kernel: per group, a few tiles of ``A`` (rows x 512), and the
    columns' power sums and gradient."""
    groups, rows = config.EXACT_FUSED_GROUPS, config.EXACT_FUSED_ROWS
    return 8.0 * groups * (n * (d + 2 * m + 1) + (3 * rows + d + 3) * 512)


def tensor_bytes(n: int, d: int, m: int = 3) -> float:
    """Scratch of the moment-tensor kernel: per group and per thread a few vectors of the
    ``binom(d + 2m, 2m)`` monomials of degree at most ``2m``, and the features' power
    sums."""
    monomials = monomial_count(d, m)
    return 8.0 * ((config.EXACT_TENSOR_GROUPS + 8) * monomials + 2.0 * n * (2 * m + 1))


def closed_form_exponent(
    func: str, model, inputs, backend: str = "cpu", kernel: str = "rows"
) -> int:
    """Check that ``(model, inputs)`` has the closed form; return the integer exponent ``m``.

    The memory check counts ``A = W^T W`` (n x n) for ``kernel="rows"``, and
    the scratch of the kernels that never form it for ``"fused"`` (tiles of
    ``A``) and ``"tensor"`` (moment tensors).
    """
    arguments.check_model_inputs(model, inputs, func=func)
    if model.activation != "power":
        raise ValueError(
            f"{func}: model.activation = {model.activation!r} has no closed form; the exact "
            "loss exists only for activation='power' (integer exponent). Use "
            "fastsuper.estimate_loss (Monte Carlo) or the k <= 1 lower bound instead"
        )
    if inputs.pattern == "grouped" and backend != "cpu":
        raise ValueError(
            f"{func}: backend={backend!r} does not compute grouped input laws; use backend='cpu'"
        )
    if inputs.pattern not in ("bernoulli", "grouped"):
        raise ValueError(
            f"{func}: inputs.pattern = {inputs.pattern!r} (exactly k = {inputs.k} active) has no "
            "closed form; only the independent Bernoulli pattern (SparseInputs(n, p=...)) does"
        )
    m = model.int_exponent
    if m < 1:  # pragma: no cover - Model already guarantees this for "power"
        raise ValueError(f"{func}: model exponent must be an integer >= 1, got {model.exponent!r}")
    arguments.check_moments(inputs.law, m, func=func)
    n, d = model.n, model.d
    if inputs.pattern == "grouped":  # A, a row block of Gamma and its scratch (THEORY §8)
        v.check_memory(
            f"the grouped closed form at n = {n} features in {inputs.groups.n_groups} groups",
            8.0 * (3.0 * n * n + 16.0 * config.GROUPED_BLOCK_ELEMS + 4.0 * n * (2 * m + 2)),
            func=func,
            hint="estimate the loss by Monte Carlo instead (fastsuper.estimate_loss)",
        )
    # A = W.T @ W (n x n), a few dozen float64 vectors of length n per moment order and
    # Pascal's triangle to 2m
    if kernel == "tensor":
        what = f" (moment-tensor kernel: {monomial_count(d, m):.4g} monomials of degree <= 2m)"
        scratch = tensor_bytes(n, d, m)
    elif kernel == "fused":
        what, scratch = " (fused kernel)", fused_bytes(n, d, m)
    else:
        what, scratch = " (A = W.T @ W is n x n)", 8.0 * n * n
    hint = "estimate the loss by Monte Carlo instead (fastsuper.estimate_loss)"
    if kernel == "tensor":
        hint = "use kernel='fused', whose scratch grows as n d, or " + hint
    v.check_memory(
        f"the closed form at n = {n} features" + what,
        scratch + 8.0 * n * (d + 12 * (2 * m + 2)) + 8.0 * (2 * m + 1) ** 2,
        func=func,
        hint=hint,
    )
    return m
