"""What the training modules share: the result type, instance seeds and laws, value laws as JSON."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from fastsuper.core import validation as v
from fastsuper.core.arguments import check_model_inputs
from fastsuper.core.bundles import InputLaw, gap_tables, group_fields
from fastsuper.core.laws import SparseInputs, ValueLaw
from fastsuper.core.rng import mix64, seed_key

__all__ = [
    "SampledLossGrad",
    "check_block_losses",
    "check_gradient",
    "check_model_inputs",
    "instance_keys",
    "instance_seed",
    "law_from_spec",
    "law_spec",
    "show_progress",
    "stacked_law",
]

MASK64 = (1 << 64) - 1
_INSTANCE_SALT = 0x452821E638D01377  # digits of pi, after those of fastsuper.core.rng


class SampledLossGrad(NamedTuple):
    """Result of :func:`loss_grad`; unpacks as ``loss, dW, db``.

    ``loss`` is the mean over samples of ``sum_j I_j (x_j - x_hat_j)^2`` (a
    sum over features, like :attr:`fastsuper.LossEstimate.mean`); ``dW``
    (d, n) and ``db`` (n) are its gradient, float64.
    """

    loss: float
    dW: np.ndarray
    db: np.ndarray


def check_block_losses(blocks, model, seed: int) -> None:
    """Raise FloatingPointError if a block of samples overflowed.

    ``blocks`` holds ``(number of non-finite sample losses, first such sample
    index)`` per block, in block order (the CPU and CUDA gradient kernels'
    outputs).
    """
    bad = [(int(first), int(count)) for count, first in blocks if count > 0]
    if bad:
        raise FloatingPointError(
            f"the loss overflowed (inf or NaN) in {sum(x[1] for x in bad)} samples, first "
            f"at sample index {bad[0][0]} (seed {seed}); the model's pre-activations are "
            f"too large for {model.dtype} with exponent {model.exponent:g}: scale W down"
            + (" or use float64" if model.dtype == np.float32 else "")
        )


def check_gradient(model, loss: float, gW: np.ndarray, gb: np.ndarray) -> None:
    """Raise FloatingPointError if the summed gradient is not finite."""
    if not (np.all(np.isfinite(gW)) and np.all(np.isfinite(gb))):
        raise FloatingPointError(
            f"the gradient is not finite (the loss is {loss:g}): phi' is "
            f"unbounded where the loss is not differentiable ({model.activation} with exponent "
            f"{model.exponent:g}" + (" < 1 at z = 0" if model.exponent < 1 else "") + ") or the "
            "products overflowed; scale W down or use another exponent"
        )


def law_spec(law: ValueLaw):
    """The JSON form of a value law: its name, or a dict for a discrete law."""
    if law.name == "discrete":
        return {"name": "discrete", "support": law.support.tolist(), "probs": law.probs.tolist()}
    return law.name


def law_from_spec(spec) -> ValueLaw:
    """The value law of a :func:`law_spec`."""
    if isinstance(spec, str):
        return ValueLaw(spec)
    return ValueLaw("discrete", support=spec["support"], probs=spec["probs"])


def instance_seed(seed: int, k: int) -> int:
    """Seed of the sampler of instance ``k`` in :func:`fit` with ``seed``.

    Row ``s`` of the batch of step ``t`` of instance ``k`` is sample number
    ``t * batch_size + s`` of this seed, so ``fastsuper.sample(inputs,
    batch_size, instance_seed(seed, k), start=t * batch_size)`` is that batch.

    Examples
    --------
    >>> from fastsuper.train.common import instance_seed
    >>> instance_seed(0, 1) == instance_seed(0, 1) != instance_seed(0, 2)
    True
    """
    seed = v.check_seed("seed", seed)
    k = v.check_int("k", k, minimum=0)
    return int(
        mix64(np.uint64(int(seed_key(np.uint64(seed & MASK64))) ^ _INSTANCE_SALT))
        ^ int(mix64(np.uint64(k)))
    )


def show_progress(bar, done: int, hist: np.ndarray, log_every: int) -> None:
    """Move a progress bar (:func:`fastsuper.core.progress.progress_bar`) to ``done`` steps,
    with the mean over instances of the last batch loss recorded in ``hist``."""
    row = min((done - 1) // log_every, hist.shape[0] - 1) if done else -1
    finite = hist[row][np.isfinite(hist[row])] if row >= 0 else hist[:0, 0]
    bar.set_postfix_str(
        f"mean batch loss {finite.mean():.5g} (mean over features)" if finite.size else "", False
    )
    bar.update(done - bar.n)


def stacked_law(P: np.ndarray, law, fit_inputs: SparseInputs) -> InputLaw:
    """Every instance's :class:`InputLaw` in one (see :func:`~fastsuper.core.bundles.instance_law`).

    ``P`` (n_instances, n) holds the feature probabilities, ``law`` is the
    :class:`~fastsuper.core.laws.ValueLaw` and ``fit_inputs`` supplies the
    group fields (shared by the instances).  The sampler parameters of row
    ``k`` are :meth:`SparseInputs._kernel_params`'s for ``P[k]``, with gap
    thresholds.
    """
    n = P.shape[1]
    pmax = P.max(axis=1)
    log1mp = np.array([math.log1p(-x) if x < 1.0 else -math.inf for x in pmax])
    thin = np.array([not np.all(row == row[0]) for row in P], dtype=np.bool_)
    tables = [gap_tables(n, x) for x in log1mp]
    tlo = np.array([t[0] for t in tables])
    thi = np.array([t[1] for t in tables])
    return InputLaw(n, -1, pmax, log1mp, thin, P, law.code, law.support, law.cumprobs, tlo, thi,
                    *group_fields(fit_inputs))  # fmt: skip


def instance_keys(seed: int, n_instances: int) -> np.ndarray:
    """Sampler keys (uint64) of the instances of ``fit``: ``seed_key(instance_seed(seed, k))``."""
    return np.array(
        [seed_key(np.uint64(instance_seed(seed, k))) for k in range(n_instances)],
        dtype=np.uint64,
    )
