"""What the training modules share: the result type, instance seeds, value laws as JSON."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from fastsuper.core import validation as v
from fastsuper.core.arguments import check_model_inputs
from fastsuper.core.laws import ValueLaw
from fastsuper.core.rng import mix64, seed_key

__all__ = [
    "AdamRun",
    "SampledLossGrad",
    "check_model_inputs",
    "instance_seed",
    "law_from_spec",
    "law_spec",
    "show_progress",
]

MASK64 = (1 << 64) - 1
_INSTANCE_SALT = 0x452821E638D01377  # digits of pi, after those of fastsuper.core.rng


class AdamRun(NamedTuple):
    """The activation and the checked Adam settings of one :func:`fastsuper.fit` run."""

    activation: str
    exponent: float
    bias: bool
    seed: int
    steps: int
    batch_size: int
    lr: float
    betas: tuple
    eps: float
    log_every: int
    progress: bool


class SampledLossGrad(NamedTuple):
    """Result of :func:`loss_grad`; unpacks as ``loss, dW, db``.

    ``loss`` is the mean over samples of ``sum_j I_j (x_j - x_hat_j)^2`` (a
    sum over features, like :attr:`fastsuper.LossEstimate.mean`); ``dW``
    (d, n) and ``db`` (n) are its gradient, float64.
    """

    loss: float
    dW: np.ndarray
    db: np.ndarray


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
