"""Training: the sampled gradient of the loss and ``fit`` (many instances at once).

:func:`loss_grad`
    Monte-Carlo loss and its gradient in ``W`` and ``b`` on numbered samples
    (the samples of :func:`fastsuper.estimate_loss` for the same seed).  One
    fused kernel per block of samples: ``h = W x`` over the active entries
    only, ``z = W^T h + b``, ``g_j = 2 I_j (phi(z_j) - x_j) phi'(z_j)``, then
    ``db += g``, ``dW += h g^T`` (decoder) and ``dW[:, i] += (W g) x_i`` for
    the active ``i`` only (encoder).
:func:`fit`
    Train ``n_instances`` independent models, Elhage et al.'s way by default
    (THEORY §6): ``x_hat = ReLU(W^T W x + b)``, features active independently
    with probability ``p`` (one value per instance, or per instance and
    feature) with U[0, 1] values, Elhage et al.'s objective ``mean over batch
    and features of I_j (x_j - x_hat_j)^2`` (``1/n`` times the loss that
    fastsuper reports, see below), Adam (lr 1e-3, betas (0.9, 0.999), eps 1e-8,
    PyTorch's update) on batches of 1024 fresh samples.  Row ``s`` of the
    batch of step ``t`` of instance ``k`` is sample number ``t * batch_size +
    s`` of the counter-based sampler with seed :func:`instance_seed(seed, k)
    <instance_seed>`; the initial weights are :func:`initial_weights`.  One
    compiled kernel runs every step of every instance, parallel over
    instances, each by one thread: the result does not depend on the number
    of threads.

Loss convention.  Everywhere in fastsuper (:func:`fastsuper.estimate_loss`,
:func:`fastsuper.exact_loss`, :class:`FitResult`, the command line and the
sweeps) *the loss* is the paper's ``sum over features j of I_j (x_j -
x_hat_j)^2`` (averaged over samples); Elhage et al.'s mean over features is
``loss / n`` and is available by name only (``*_mean_over_features``).
Adam minimises the mean over features, as Elhage et al. do; the two
objectives differ by the constant factor ``n``, and :attr:`FitResult.loss_history`
reports the sum.

``fit`` dispatches on ``method`` through :data:`FITTERS`: a function of one
:class:`FitOptions` (every argument of ``fit`` but ``method``, as given); another
optimiser registers itself there.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numba
import numpy as np

from fastsuper.core import arguments, config
from fastsuper.core import validation as v
from fastsuper.core.activations import DEFAULT_EXPONENTS, PARAM_NAMES
from fastsuper.core.blas import blas_threads
from fastsuper.core.bundles import activation as activation_bundle
from fastsuper.core.bundles import input_law
from fastsuper.core.groups import check_group_kwargs
from fastsuper.core.laws import SparseInputs
from fastsuper.core.model import Model, check_activation, check_param
from fastsuper.core.progress import progress_bar, progress_enabled
from fastsuper.core.rng import seed_key
from fastsuper.core.sparse_rows import padded_columns
from fastsuper.train.common import (
    MASK64,
    SampledLossGrad,
    check_block_losses,
    check_gradient,
    instance_keys,
    instance_seed,
    law_from_spec,
    law_spec,
    show_progress,
    stacked_law,
)
from fastsuper.train.kernels_cpu import (
    OK,
    adam_kernel,
    grad_block,
    merge_blocks,
    padded_width,
    prepare,
)

__all__ = [
    "FITTERS",
    "FitOptions",
    "FitResult",
    "SampledLossGrad",
    "fit",
    "initial_weights",
    "instance_seed",
    "loss_grad",
]


# --------------------------------------------------------------------------
# sampled loss and gradient


def loss_grad(
    model: Model, inputs: SparseInputs, n_samples: int = 100_000, seed: int = 0, *,
    start: int = 0, block_size: int = config.GRAD_BLOCK, backend: str = "cpu",
) -> SampledLossGrad:  # fmt: skip
    """Monte-Carlo loss and its gradient in ``W`` and ``b``, on numbered samples.

    Samples ``start .. start + n_samples - 1`` of ``seed`` (those of
    :func:`fastsuper.estimate_loss` and :func:`fastsuper.sample` for the same
    seed) go through one fused kernel (see :mod:`fastsuper.train.adam`), in
    the model's dtype with sums over samples in float64.  Blocks of
    ``block_size`` samples run in parallel, each into its own buffers, merged
    in block order: the same numbers for any thread count.

    Parameters
    ----------
    model : Model
        The autoencoder (any activation; float32 or float64).  Without a bias,
        ``db`` is the gradient at ``b = 0``.
    inputs : SparseInputs
        Input law (sparsity, values, importance).
    n_samples, seed, start : int, default 100000, 0, 0
        Number of samples (>= 1), seed of the sampler, index of the first sample.
    block_size : int, default 2048
        Samples per parallel work item and per partial sum; changes only the
        order of float64 additions, never the samples.
    backend : {"cpu", "cuda"}, default "cpu"
        ``"cuda"``: the sampler and the gradient on the GPU
        (:func:`fastsuper.train.cuda.loss_grad_cuda`): the same samples and, to
        float round-off, the same numbers (numba-cuda and a GPU, or
        ``NUMBA_ENABLE_CUDASIM=1``).

    Returns
    -------
    SampledLossGrad
        ``(loss, dW, db)``: the mean over samples of ``sum_j I_j (x_j -
        x_hat_j)^2`` and its gradient (float64, shapes (d, n) and (n,)).

    Raises
    ------
    FloatingPointError
        If the loss of a sample is not finite.

    Examples
    --------
    >>> import numpy as np, fastsuper as fs
    >>> model = fs.Model(np.array([[1.0, 0.0, 0.5]]), b=np.zeros(3), activation="power", exponent=1)
    >>> inputs = fs.SparseInputs(3, p=0.3, values="uniform")
    >>> loss, dW, db = fs.loss_grad(model, inputs, 20_000, seed=1)
    >>> est = fs.estimate_loss(model, inputs, 20_000, seed=1)
    >>> dW.shape, db.shape, bool(abs(loss - est.mean) < 1e-12)
    ((1, 3), (3,), True)
    """
    if v.check_choice("backend", backend, ("cpu", "cuda")) == "cuda":
        from fastsuper.train.cuda import loss_grad_cuda

        return loss_grad_cuda(model, inputs, n_samples, seed, start=start, block_size=block_size)
    n_samples, seed, start, block_size = _check_sampling(
        model, inputs, n_samples, seed, start, block_size
    )
    act, law = activation_bundle(model), input_law(inputs, gaps=True)
    W, b = model.W, model.bias
    Wt, imp2 = prepare(W, inputs.importance)
    skey = np.uint64(seed_key(np.uint64(seed & MASK64)))  # seed_key returns a Python int
    n_blocks = (n_samples + block_size - 1) // block_size

    def run(c, gW, gb):
        """Block ``c`` into its own buffers."""
        lo = c * block_size
        count = min(block_size, n_samples - lo)
        return grad_block(
            W, Wt, b, inputs.importance, imp2, act, skey, start + lo, count, law, gW, gb
        )

    loss_sum, tot_gW, tot_gb = _run_waves(run, n_blocks, model, seed)
    check_gradient(model, loss_sum / n_samples, tot_gW, tot_gb)
    inv = 1.0 / n_samples
    return SampledLossGrad(loss_sum * inv, tot_gW * inv, tot_gb * inv)


def _check_sampling(model, inputs, n_samples, seed, start, block_size) -> tuple:
    """``(n_samples, seed, start, block_size)`` of :func:`loss_grad`, checked."""
    arguments.check_model_inputs(model, inputs)
    inputs.check_sampleable(func="loss_grad")
    n_samples = v.check_int("n_samples", n_samples, minimum=1)
    seed = v.check_seed("seed", seed)
    start = v.check_int("start", start, minimum=0)
    block_size = v.check_int("block_size", block_size, minimum=1)
    return n_samples, seed, start, block_size


def _run_waves(run, n_blocks: int, model: Model, seed: int) -> tuple:
    """``run(c, gW, gb)`` for every block ``c``, a wave of blocks at a time on a thread pool.

    Returns the sums ``(loss, dW, db)`` over the blocks, merged in block order.
    """
    d, n = model.d, model.n
    tot_gW = np.zeros((d, n))
    tot_gb = np.zeros(n)
    loss_sum = 0.0
    threads = min(numba.get_num_threads(), n_blocks)
    pool = ThreadPoolExecutor(threads) if threads > 1 else None
    try:
        for first in range(0, n_blocks, config.GRAD_BLOCKS_PER_WAVE):
            nb = min(config.GRAD_BLOCKS_PER_WAVE, n_blocks - first)
            gW = np.zeros((nb, d, n))
            gb = np.zeros((nb, n))
            jobs = [(first + i, gW[i], gb[i]) for i in range(nb)]
            if pool is None:
                out = [run(*job) for job in jobs]
            else:
                out = list(pool.map(run, *zip(*jobs)))
            check_block_losses([(o[1], o[2]) for o in out], model, seed)
            loss_sum += merge_blocks(np.array([o[0] for o in out]), gW, gb, tot_gW, tot_gb)
    finally:
        if pool is not None:
            pool.shutdown()
    return loss_sum, tot_gW, tot_gb


# --------------------------------------------------------------------------
# fit: result


def initial_weights(n: int, d: int, n_instances: int = 1, seed: int = 0, dtype=np.float64):
    """The initial weights of :func:`fit`: Xavier-normal, one seeded stream per instance.

    ``W0[k]`` has iid ``N(0, 2 / (n + d))`` entries drawn by
    ``numpy.random.default_rng([seed mod 2**64, k])``, so an instance's start
    does not depend on how many instances are trained.  (The PyTorch peer
    applies ``xavier_normal_`` to the whole (n_instances, d, n) tensor, whose
    variance ``2 / (n (d + n_instances))`` depends on the instance count.)

    Examples
    --------
    >>> from fastsuper.train.adam import initial_weights
    >>> initial_weights(5, 2, n_instances=3).shape
    (3, 2, 5)
    """
    n = v.check_int("n", n, minimum=1)
    d = v.check_int("d", d, minimum=1)
    n_instances = v.check_int("n_instances", n_instances, minimum=1)
    seed = v.check_seed("seed", seed)
    std = math.sqrt(2.0 / (n + d))
    W0 = np.empty((n_instances, d, n), dtype=dtype)
    for k in range(n_instances):
        W0[k] = np.random.default_rng([seed & MASK64, k]).normal(0.0, std, size=(d, n))
    return W0


#: how :attr:`FitResult.loss_history` is normalised (stored in the files of :meth:`FitResult.save`)
LOSS_CONVENTION = "sum over features"


@dataclass
class FitResult:
    """Outcome of :func:`fit`.

    Attributes
    ----------
    W : ndarray of shape (n_instances, d, n)
        Trained weights (compute dtype).
    b : ndarray of shape (n_instances, n)
        Trained biases (zeros when ``bias=False``).
    loss_history : ndarray of shape (n_log, n_instances)
        Batch loss of each instance at steps ``log_steps`` (before that step's
        update): the mean over the batch of the **sum over features** ``sum_j
        I_j (x_j - x_hat_j)^2``, the loss of :func:`fastsuper.estimate_loss`.
        Elhage et al.'s mean over features is :attr:`loss_history_mean_over_features`.
    settings : dict
        Every argument of :func:`fit` (JSON-serialisable), with ``p`` and
        ``importance`` per instance.
    method : str
        The optimiser (``"adam"``).
    W0 : ndarray of shape (n_instances, d, n)
        Initial weights.
    elapsed : float
        Seconds spent training (compilation excluded when cached).
    """

    W: np.ndarray
    b: np.ndarray
    loss_history: np.ndarray
    settings: dict = field(repr=False)
    method: str = "adam"
    W0: np.ndarray | None = field(default=None, repr=False)
    elapsed: float = 0.0

    @property
    def n_instances(self) -> int:
        return self.W.shape[0]

    @property
    def d(self) -> int:
        return self.W.shape[1]

    @property
    def n(self) -> int:
        return self.W.shape[2]

    @property
    def log_steps(self) -> np.ndarray:
        """Steps at which :attr:`loss_history` was recorded."""
        every = int(self.settings.get("log_every", 1))
        return np.arange(self.loss_history.shape[0]) * every

    @property
    def final_loss(self) -> np.ndarray:
        """Last recorded batch loss of each instance, a sum over features (NaN if none)."""
        if self.loss_history.shape[0] == 0:
            return np.full(self.n_instances, np.nan)
        return self.loss_history[-1].copy()

    @property
    def loss_history_mean_over_features(self) -> np.ndarray:
        """:attr:`loss_history` divided by ``n``: Elhage et al.'s mean over features."""
        return self.loss_history / self.n

    @property
    def final_loss_mean_over_features(self) -> np.ndarray:
        """:attr:`final_loss` divided by ``n``: Elhage et al.'s mean over features."""
        return self.final_loss / self.n

    def _check_k(self, k) -> int:
        k = v.check_int("k", k)
        if not 0 <= k < self.n_instances:
            raise IndexError(f"k must be in [0, {self.n_instances}), got {k}")
        return k

    def select(self, instances) -> FitResult:
        """The result restricted to the given instances, in the order given.

        ``instances`` is a sequence of instance indices (repeats allowed).
        Weights, biases, initial weights, loss history and the per-instance
        settings (``p``, ``importance``) are taken from those instances;
        ``settings["instances"]`` records which they were (indices into
        the original result, composed when selecting again).
        """
        idx = np.asarray(instances)
        if idx.ndim != 1 or idx.size == 0 or idx.dtype.kind not in "iu":
            raise ValueError(
                f"instances must be a non-empty 1-d sequence of integers, got {instances!r}"
            )
        bad = idx[(idx < 0) | (idx >= self.n_instances)]
        if bad.size:
            raise IndexError(f"instances must lie in [0, {self.n_instances}), got {int(bad[0])}")
        s = dict(self.settings)
        for key in ("p", "importance"):
            if key in s:
                s[key] = [s[key][int(k)] for k in idx]
        origin = s.get("instances", list(range(self.n_instances)))
        s["instances"] = [int(origin[int(k)]) for k in idx]
        s["n_instances"] = int(idx.size)
        return FitResult(
            W=self.W[idx].copy(), b=self.b[idx].copy(),
            loss_history=self.loss_history[:, idx].copy(), settings=s, method=self.method,
            W0=None if self.W0 is None else self.W0[idx].copy(), elapsed=self.elapsed,
        )  # fmt: skip

    def best(self, restarts: int, losses=None, *, window: int | None = None) -> FitResult:
        """The lowest-loss instance of each configuration, over its ``restarts`` restarts.

        Instances ``c * restarts .. (c + 1) * restarts - 1`` are restarts of
        configuration ``c`` (as :func:`numpy.repeat` of the per-configuration
        ``p`` and ``importance`` lays them out; each instance starts from its
        own random weights); they must share their ``p`` and ``importance``.
        Ranked by ``losses`` (one per instance, e.g. exact or Monte-Carlo
        losses of the trained models) when given, else by the mean of the
        last ``window`` recorded batch losses (default: the last tenth of the
        record, at least one), which is less noisy than the final batch
        loss.  Non-finite losses (a diverged restart) rank last.

        Parameters
        ----------
        restarts : int
            Restarts per configuration; must divide ``n_instances``.
        losses : array_like of shape (n_instances,), optional
            The losses to rank by.
        window : int, optional
            Recorded batch losses averaged when ``losses`` is not given.

        Returns
        -------
        FitResult
            One instance per configuration (:meth:`select` of the winners;
            ``settings["instances"]`` holds their indices here).

        Raises
        ------
        ValueError
            If ``restarts`` does not divide ``n_instances``, the restarts of
            one configuration differ in ``p`` or ``importance``, or every
            restart of a configuration has a non-finite loss.

        Examples
        --------
        >>> import numpy as np
        >>> import fastsuper as fs
        >>> p = np.repeat([0.5, 0.05], 3)  # two configurations, three restarts each
        >>> res = fs.fit(5, 2, n_instances=6, p=p, steps=200, batch_size=64, progress=False)
        >>> best = res.best(3)
        >>> best.n_instances, [round(q, 2) for q in best.settings["p"][1][:1]]
        (2, [0.05])
        """
        restarts = v.check_int("restarts", restarts, minimum=1)
        if self.n_instances % restarts:
            raise ValueError(
                f"restarts must divide n_instances = {self.n_instances}, got {restarts}"
            )
        score = self._ranking_losses(losses, window)
        groups = self.n_instances // restarts
        winners = []
        for c in range(groups):
            block = range(c * restarts, (c + 1) * restarts)
            self._check_same_configuration(c, block)
            sc = score[c * restarts : (c + 1) * restarts]
            if not np.isfinite(sc).any():
                raise ValueError(
                    f"every restart of configuration {c} (instances {block.start} .. "
                    f"{block.stop - 1}) has a non-finite loss; nothing to choose"
                )
            winners.append(c * restarts + int(np.argmin(np.where(np.isfinite(sc), sc, np.inf))))
        return self.select(winners)

    def _ranking_losses(self, losses, window) -> np.ndarray:
        """The per-instance losses :meth:`best` ranks by."""
        if losses is not None:
            arr = np.asarray(losses, dtype=np.float64)
            if arr.shape != (self.n_instances,):
                raise ValueError(
                    f"losses must have shape ({self.n_instances},), one per instance, "
                    f"got shape {arr.shape}"
                )
            return arr
        n_log = self.loss_history.shape[0]
        if n_log == 0:
            raise ValueError("no batch loss was recorded; pass losses= to rank the restarts")
        if window is None:
            window = max(1, n_log // 10)
        window = v.check_int("window", window, minimum=1)
        return self.loss_history[-min(window, n_log) :].mean(axis=0)

    def _check_same_configuration(self, c: int, block: range) -> None:
        """Raise unless the instances of ``block`` share ``p`` and ``importance``."""
        for key in ("p", "importance"):
            rows = self.settings.get(key)
            if rows is None:
                continue
            first = np.asarray(rows[block.start])
            for k in block:
                if not np.array_equal(np.asarray(rows[k]), first):
                    raise ValueError(
                        f"the restarts of configuration {c} (instances {block.start} .. "
                        f"{block.stop - 1}) must share {key}, but instance {k} differs from "
                        f"instance {block.start}; lay configurations out with numpy.repeat"
                    )

    def model(self, k: int = 0) -> Model:
        """Instance ``k`` as a :class:`fastsuper.Model` (no bias when trained without)."""
        k = self._check_k(k)
        s = self.settings
        b = self.b[k] if s.get("bias", True) else None
        return Model(
            self.W[k], b, activation=s["activation"], exponent=s["exponent"], param=s.get("param")
        )

    def inputs(self, k: int = 0) -> SparseInputs:
        """The input law instance ``k`` was trained on, as a :class:`fastsuper.SparseInputs`."""
        k = self._check_k(k)
        s = self.settings
        return SparseInputs(self.n, p=np.asarray(s["p"][k]), values=law_from_spec(s["values"]),
                            importance=np.asarray(s["importance"][k]),
                            **s.get("groups", {}))  # fmt: skip

    def save(self, path) -> None:
        """Write to ``path`` (NumPy ``.npz``; read back with :meth:`load`)."""
        np.savez(
            path,
            W=self.W,
            b=self.b,
            loss_history=self.loss_history,
            loss_convention=LOSS_CONVENTION,
            W0=self.W if self.W0 is None else self.W0,
            has_W0=self.W0 is not None,
            settings=json.dumps(self.settings),
            method=self.method,
            elapsed=self.elapsed,
        )

    @classmethod
    def load(cls, path) -> FitResult:
        """Read a result written by :meth:`save`.

        Files written before the loss was reported as a sum over features (they
        have no ``loss_convention``) held the mean over features: their loss
        history is multiplied by ``n`` on reading.
        """
        with np.load(path, allow_pickle=False) as f:
            history = f["loss_history"]
            if "loss_convention" not in f.files:
                history = history * f["W"].shape[2]
            return cls(
                W=f["W"],
                b=f["b"],
                loss_history=history,
                settings=json.loads(str(f["settings"])),
                method=str(f["method"]),
                W0=f["W0"] if bool(f["has_W0"]) else None,
                elapsed=float(f["elapsed"]),
            )

    def __repr__(self) -> str:
        return (
            f"FitResult(method={self.method!r}, n_instances={self.n_instances}, d={self.d}, "
            f"n={self.n}, steps={self.settings.get('steps')}, final_loss="
            f"{np.array2string(self.final_loss, precision=4)} (batch loss, sum over the "
            f"{self.n} features))"
        )


# --------------------------------------------------------------------------
# fit: options


@dataclass(frozen=True)
class FitOptions:
    """Every argument of :func:`fit` but ``method``, as given (unchecked).

    What an optimiser of :data:`FITTERS` receives; it checks what it uses.
    """

    n: Any
    d: Any
    n_instances: Any = 1
    p: Any = None
    importance: Any = None
    activation: Any = "relu_power"
    exponent: Any = None
    values: Any = "uniform"
    bias: Any = True
    steps: Any = 10_000
    batch_size: Any = 1024
    lr: Any = 1e-3
    betas: Any = (0.9, 0.999)
    eps: Any = 1e-8
    seed: Any = 0
    dtype: Any = np.float64
    log_every: Any = 100
    W0: Any = None
    b0: Any = None
    progress: Any = None
    backend: Any = "cpu"
    param: Any = None
    groups: Any = None


# --------------------------------------------------------------------------
# fit


def fit(
    n: int, d: int, *, n_instances: int = 1, p=None, importance=None,
    activation: str = "relu_power", exponent: float | None = None, values="uniform",
    bias: bool = True,
    method: str = "adam", steps: int = 10_000, batch_size: int = 1024, lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, seed: int = 0,
    dtype=np.float64, log_every: int = 100, W0=None, b0=None, progress: bool | None = None,
    backend: str = "cpu", param: float | None = None, groups: dict | None = None,
    restarts: int = 1,
) -> FitResult:  # fmt: skip
    """Train ``n_instances`` independent tied-weight autoencoders at once.

    The defaults are Elhage et al.'s toy models (THEORY §6): see
    :mod:`fastsuper.train.adam` for them, the samples and the initial weights.

    Parameters
    ----------
    n, d, n_instances : int
        Number of features, hidden dimension, models trained side by side (default 1).
    p : float or array_like, optional
        Feature probability: a scalar, one per instance ``(n_instances,)`` or
        per instance and feature ``(n_instances, n)``.  Default ``50 **
        -linspace(0, 1, n_instances)`` (from dense to p = 0.02).
    importance : array_like, optional
        ``I_j > 0``, shape ``(n,)`` or ``(n_instances, n)``; default 1.
    activation : str, default "relu_power"
        Output activation (THEORY §1; with its default exponent 1, ``max(t, 0)``:
        Elhage et al.'s ReLU, as ``"relu"``), or any other of :class:`fastsuper.Model`'s
        (``"gelu"``, ``"tanh"``, ``"softplus"``, ...).
    exponent : float, optional
        Its exponent; default the activation's own, as in :class:`fastsuper.Model`
        (1 for ``"relu"`` and ``"relu_power"``, 3 for ``"power"`` and ``"signed_power"``).
    values : str or ValueLaw, default "uniform"
        Law of an active feature's value.
    bias : bool, default True
        Train a bias ``b`` (else ``b = 0``).
    param : float, optional
        The activation's parameter (``"softplus"``: ``beta``, ``"leaky_relu"``: ``slope``),
        as in :class:`fastsuper.Model`.
    method : {"adam", "exact"}
        ``"adam"``: stochastic, many instances.  ``"exact"``: L-BFGS on the exact
        loss of one ``power`` model (integer ``exponent``, ``p`` given; ``steps``
        is the iteration limit; returns a :class:`~fastsuper.train.lbfgs.ExactFit`).
    steps, batch_size : int, default 10000, 1024
        Optimiser steps (>= 1), and samples per step and instance.
    lr, betas, eps : float, (float, float), float
        Adam's learning rate (1e-3), decay rates ((0.9, 0.999)) and epsilon (1e-8).
    seed : int, default 0
        Seed of the initial weights and of the samples.
    dtype : {numpy.float64, numpy.float32}
        Compute dtype of the passes (Adam's moments and sums over samples: float64).
    log_every : int, default 100
        Record the batch loss every ``log_every`` steps (from step 0).
    W0, b0 : array_like, optional
        Initial weights ``(d, n)`` or ``(n_instances, d, n)`` (default
        :func:`initial_weights`) and bias ``(n,)`` or ``(n_instances, n)`` (default 0).
    progress : bool, optional
        A progress bar with the mean batch loss on stderr (``method="exact"``:
        one step per start).  Default: shown when stderr is a terminal.
    backend : {"cpu", "cuda"}, default "cpu"
        ``"cuda"`` (``method="adam"``): sampling, gradients and Adam's updates
        on the GPU, many steps of every instance per launch
        (:func:`fastsuper.train.cuda.fit_adam_cuda`): the same samples and, to
        float round-off, the same trajectory.
    groups : dict, optional
        A grouped input law (THEORY §8) shared by every instance: the group
        keywords of :class:`fastsuper.SparseInputs` (``groups`` and any of
        ``kind``, ``q``, ``weights``, ``r``); ``p`` (one law for all
        instances) then applies to the ungrouped features and is the default
        ``q``.
    restarts : int, default 1
        Train each of the ``n_instances`` configurations (its ``p`` and
        ``importance``) this many times, from different random weights and
        samples, all at once, and keep the best of each
        (:meth:`FitResult.best`: the lowest mean of the last tenth of the
        recorded batch losses), as Elhage et al. did for their small models.
        ``method="adam"`` only; not with ``W0``/``b0``.

    Returns
    -------
    FitResult
        ``W``, ``b``, ``loss_history``, ``settings``; ``.model(k)`` gives
        instance ``k`` as a :class:`fastsuper.Model`.  With ``restarts > 1``,
        one instance per configuration, and ``settings["instances"]`` holds
        the winners' indices among the ``n_instances * restarts`` trained.

    Raises
    ------
    FloatingPointError
        If an instance's loss stops being finite (lower ``lr``).

    Warns
    -----
    RuntimeWarning
        If an instance's batch loss blew up (grew to more than 100 times
        the loss of ``x_hat = 0``): ``lr`` is too large.

    Examples
    --------
    Dense features: the two most important of 5 are kept, orthogonal, in d = 2.

    >>> import numpy as np, fastsuper as fs
    >>> res = fs.fit(5, 2, p=1.0, importance=0.9 ** np.arange(5), steps=3000, lr=1e-2)
    >>> np.linalg.norm(res.W[0], axis=0).round(1), res.loss_history.shape
    (array([1., 1., 0., 0., 0.]), (30, 1))
    """
    v.check_choice("method", method, sorted(FITTERS))
    v.check_choice("backend", backend, ("cpu", "cuda"))
    restarts = v.check_int("restarts", restarts, minimum=1)
    options = FitOptions(n, d, n_instances, p, importance, activation, exponent, values, bias,
                         steps, batch_size, lr, betas, eps, seed, dtype, log_every, W0, b0,
                         progress, backend, param, groups)  # fmt: skip
    if restarts == 1:
        return FITTERS[method](options)
    if method != "adam":
        raise ValueError(
            f"restarts applies to method='adam' (fit_exact has its own starts), got method="
            f"{method!r} with restarts = {restarts}"
        )
    return FITTERS[method](_repeated(options, restarts)).best(restarts)


def _repeated(o: FitOptions, restarts: int) -> FitOptions:
    """``o`` with every configuration (instance) repeated ``restarts`` times, as
    :meth:`FitResult.best` expects them (each restart draws its own initial weights
    and samples)."""
    if o.W0 is not None or o.b0 is not None:
        raise ValueError(
            "W0 and b0 cannot be given with restarts > 1: each restart starts from its own "
            "random weights (train copies of W0 as instances, then FitResult.best, instead)"
        )
    n = v.check_int("n", o.n, minimum=1)
    n_instances = v.check_int("n_instances", o.n_instances, minimum=1)
    imp = 1.0 if o.importance is None else o.importance
    imp = v.check_per_instance("importance", imp, n_instances, n, kind="positive")
    p = o.p  # a grouped law's p is one law for all instances
    if o.groups is None:
        p = 50.0 ** -np.linspace(0.0, 1.0, n_instances) if p is None else p
        p = np.repeat(v.check_per_instance("p", p, n_instances, n, kind="probability"), restarts, 0)
    return dataclasses.replace(
        o, n_instances=n_instances * restarts, p=p, importance=np.repeat(imp, restarts, axis=0)
    )


def _check_fit_args(o: FitOptions):
    """Check the options every method shares; returns the normalised settings and arrays."""
    n = v.check_int("n", o.n, minimum=1)
    d = v.check_int("d", o.d, minimum=1)
    n_instances = v.check_int("n_instances", o.n_instances, minimum=1)
    p = 50.0 ** -np.linspace(0.0, 1.0, n_instances) if o.p is None else o.p
    P = v.check_per_instance("p", p, n_instances, n, kind="probability")
    for pmax in P.max(axis=1):
        v.check_sampled_p("p", float(pmax))
    importance = 1.0 if o.importance is None else o.importance
    imp = v.check_per_instance("importance", importance, n_instances, n, kind="positive")
    activation, exponent = check_activation(o.activation, o.exponent)
    param = check_param(activation, o.param)
    law = arguments.check_law("values", o.values)
    bias = v.check_bool("bias", o.bias)
    steps = v.check_int("steps", o.steps, minimum=1)
    batch_size = v.check_int("batch_size", o.batch_size, minimum=1)
    lr = v.check_real("lr", o.lr, positive=True)
    seed = v.check_seed("seed", o.seed)
    dt = v.check_float_dtype("dtype", o.dtype)
    log_every = v.check_int("log_every", o.log_every, minimum=1)
    progress = progress_enabled(o.progress)
    # weights, biases and Adam's moments of every instance, and the loss history
    v.check_memory(
        f"fit of {n_instances} instances with n = {n}, d = {d} and {steps} steps",
        8.0 * n_instances * (7.0 * (d + 1) * n + -(-steps // log_every)),
        func="fit",
    )
    P, group_law = _grouped(o, P, imp, law)
    W, B = _starts(o, (n_instances, d, n), bias, seed, dt)
    Model(W[0], B[0], activation=activation, exponent=exponent, param=o.param)  # checks W
    settings = dict(
        n=n,
        d=d,
        n_instances=n_instances,
        p=P.tolist(),
        importance=imp.tolist(),
        activation=activation,
        exponent=exponent,
        values=law_spec(law),
        bias=bias,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        dtype=dt.name,
        log_every=log_every,
    )
    if activation in PARAM_NAMES:
        settings["param"] = param
    if group_law is not None:
        settings["groups"] = group_law.groups.to_kwargs()
    return settings, P, imp, law, W, B, progress


def _grouped(o: FitOptions, P: np.ndarray, imp: np.ndarray, law) -> tuple:
    """``(P, law)``: the marginals of every instance and the grouped law (``None`` without)."""
    groups = check_group_kwargs(o.groups, func="fit")
    if groups is None:
        return P, None
    if np.any(P != P[0]) or np.any(imp != imp[0]):
        raise ValueError(
            "fit: with groups every instance has the same input law: give p and importance "
            "as a scalar or one value per feature, not one per instance"
        )
    p0 = float(P[0, 0]) if np.all(P[0] == P[0, 0]) else P[0]
    try:
        inputs = SparseInputs(P.shape[1], p=p0, values=law, importance=imp[0], **groups)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"fit: {exc}") from None
    inputs.check_sampleable(func="fit")
    return np.tile(inputs.p, (P.shape[0], 1)), inputs


def _starts(o: FitOptions, shape: tuple, bias: bool, seed: int, dt: np.dtype) -> tuple:
    """Initial weights and biases ``(W, B)`` of every instance (fresh arrays, trained in place)."""
    n_instances, d, n = shape
    if o.W0 is None:
        W = initial_weights(n, d, n_instances, seed, dt)
    else:
        W = v.check_start("W0", o.W0, shape, dt)
    if o.b0 is None:
        B = np.zeros((n_instances, n), dtype=dt)
    elif not bias:
        raise ValueError("b0 was given but bias=False; leave b0 out or set bias=True")
    else:
        B = v.check_start("b0", o.b0, (n_instances, n), dt)
    return W, B


def _groups(costs: np.ndarray, n_groups: int) -> np.ndarray:
    """Instances split into ``n_groups`` lists of about equal cost (largest first)."""
    loads = np.zeros(n_groups)
    members: list[list[int]] = [[] for _ in range(n_groups)]
    for k in np.argsort(-costs, kind="stable"):
        g = int(np.argmin(loads))
        members[g].append(int(k))
        loads[g] += costs[k]
    width = max(len(m) for m in members)
    out = np.full((n_groups, width), -1, dtype=np.int64)
    for g, m in enumerate(members):
        out[g, : len(m)] = m
    return out


def _blas_rows(n: int, d: int, batch: int) -> int:
    """Sub-batch rows for the BLAS path (0: per-sample code).

    The kernel runs with BLAS on one thread (:func:`~fastsuper.core.blas.blas_threads`),
    so the rows need not keep a product below OpenBLAS's threading threshold; they
    are at least :data:`~fastsuper.core.config.TRAIN_BLAS_MIN_ROWS`.
    """
    if padded_width(d) <= 4:
        return 0
    rows = (config.BLAS_SINGLE_THREAD_MNK // (n * d)) // 8 * 8
    if rows < 16:
        return 0
    return min(max(rows, config.TRAIN_BLAS_MIN_ROWS), batch)


def _gram_instances(n, d, rows, active, dense_x, dtype) -> np.ndarray:
    """Which instances train in the Gram space (:func:`~fastsuper.train.kernels_cpu.run_grad_blas`).

    Those on the BLAS path whose inputs stay sparse, with at most
    :data:`~fastsuper.core.config.TRAIN_GRAM_ACTIVE` ``d`` expected active
    features, where ``M = W^T W`` and ``S`` fit in
    :data:`~fastsuper.core.config.TRAIN_GRAM_BYTES`.
    """
    size = 2 * n * padded_columns(n, np.dtype(dtype).itemsize) * np.dtype(dtype).itemsize
    if rows <= 0 or size > config.TRAIN_GRAM_BYTES:
        return np.zeros(len(active), dtype=np.bool_)
    return np.asarray(~dense_x & (active <= config.TRAIN_GRAM_ACTIVE * d), dtype=np.bool_)


def _instance_costs(n, d, pmax, active, thin, grouped) -> np.ndarray:
    """Estimated cost of a step of each instance (for :func:`_groups`), per-sample code.

    Per sample, in units of one value draw; a gap costs about four.  On the dense
    path of small models (:func:`~fastsuper.train.kernels_cpu.run_grad_dense`)
    every sample costs its key and first gap, and only the samples with an
    active feature (a fraction ``1 - (1 - p)^n``) their passes, gaps and values
    (measured at n=5, d=2).  The BLAS path has its own model
    (:func:`_blas_costs`); only the costs of one call are compared.
    """
    draws = np.where(pmax >= 1.0, 0.0, active + 1.0)  # geometric gaps drawn per sample
    costs = 10.0 + n * padded_width(d) + active + 4.0 * draws
    if padded_width(d) <= 4 and n <= config.DENSE_N_MAX and not grouped:
        nonempty = 1.0 - (1.0 - np.minimum(pmax, 1.0)) ** n
        dense = np.where(pmax >= 1.0, 4.5 + 2.4 * n, 4.5 + 4.0 * n * nonempty + 3.5 * active)
        costs = np.where(thin, costs, dense)
    return costs


#: per-sample costs of the BLAS path in ns (one thread, AMD Zen 4, measured at n = 100,
#: d = 20 and n = 400, d = 30): the five products per ``n d``; the sampling per active
#: feature (chunked gaps and U[0, 1] values); the values per feature where every feature
#: is active; the three products of sparse inputs as a fraction of the five, and their
#: sparse-row loops per ``d`` and active feature; the Gram space per feature, and per
#: feature and active feature.  Keyed by the itemsize (float64, float32).
_BLAS_COSTS = {
    8: (0.211, 2.9, 0.39, 0.74, 0.19, 1.24, 0.22),
    4: (0.147, 1.3, 0.0, 0.59, 0.15, 1.10, 0.138),
}


def _blas_costs(n, d, active, chunked, direct, dense_x, gram, itemsize) -> np.ndarray:
    """Estimated cost of a step of each instance on the BLAS path (for :func:`_groups`).

    A sub-batch row costs its products (five of ``n d`` multiply-adds with
    dense inputs; three and the sparse-row loops, ``d`` per active feature,
    with sparse ones) and its sampling (per active feature, three times as
    much where the gaps are not drawn in chunks); in the Gram space (no
    products) ``n (c0 + c1 E[K])``, the sampling included.  The constants
    (:data:`_BLAS_COSTS`) were measured per instance: they set how the
    instances are split over threads, never the numbers.
    """
    prod, per_active, every, sparse, loops, g0, g1 = _BLAS_COSTS[itemsize]
    sampling = per_active * np.where(chunked, 1.0, 3.0) * active
    costs = prod * n * d + np.where(direct, every * n, sampling)
    sparse_costs = sparse * prod * n * d + loops * d * active + sampling
    gram_costs = n * (g0 + g1 * active) + sampling - per_active * active
    return np.where(gram, gram_costs, np.where(dense_x, costs, sparse_costs))


def _plan(n, d, batch, P, law, dtype, grouped, n_groups) -> tuple:
    """How ``fit`` runs its instances: ``(rows, dense_x, gram, chunked, groups)``.

    The sub-batch rows of the BLAS path (:func:`_blas_rows`, 0: per-sample
    code); per instance, whether its inputs are dense products (``dense_x``),
    whether it trains in the Gram space (:func:`_gram_instances`) and whether
    its gaps are drawn in chunks; and the instances split into ``n_groups``
    work items by estimated cost (:func:`_groups`).  ``P`` (n_instances, n)
    holds the feature probabilities, ``law`` is the value law, ``grouped``
    whether the inputs have groups.
    """
    rows = _blas_rows(n, d, batch)
    active = P.sum(axis=1)
    pmax = P.max(axis=1)
    thin = np.array([not np.all(row == row[0]) for row in P], dtype=np.bool_)
    ratio = config.DENSE_X_RATIO if dtype == np.float64 else config.DENSE_X_RATIO_SINGLE
    dense_x = np.asarray(ratio * active >= n, dtype=np.bool_)
    gram = _gram_instances(n, d, rows, active, dense_x, dtype)
    # active sets drawn a chunk of gaps at a time where a sample has enough of them
    chunked = (pmax < 1.0) & (pmax > 0.0) & ~thin & (pmax * n >= config.CHUNKED_GAPS_FROM)
    if grouped:
        chunked[:] = False
    if rows > 0:
        direct = (pmax >= 1.0) & (law.name == "uniform") & (not grouped)
        costs = _blas_costs(n, d, active, chunked, direct, dense_x, gram, np.dtype(dtype).itemsize)
    else:
        costs = _instance_costs(n, d, pmax, active, thin, grouped)
    return rows, dense_x, gram, chunked, _groups(costs, n_groups)


def _fit_adam(o: FitOptions) -> FitResult:
    """``fit(method="adam")``: the compiled multi-instance Adam loop (or its GPU version)."""
    settings, P, imp, law, W, B, progress = _check_fit_args(o)
    beta1, beta2 = v.check_betas("betas", o.betas)
    eps = v.check_real("eps", o.eps, positive=True)
    settings.update(method="adam", betas=[beta1, beta2], eps=eps)
    n, d, n_inst = settings["n"], settings["d"], settings["n_instances"]
    steps, batch, log_every = settings["steps"], settings["batch_size"], settings["log_every"]
    lr, bias, backend = o.lr, o.bias, o.backend
    activation, exponent = settings["activation"], settings["exponent"]
    W0_copy = W.copy()
    if backend == "cuda":
        from fastsuper.train.cuda import fit_adam_cuda

        hist, status, elapsed = fit_adam_cuda(W, B, P, imp, law, settings, progress)
        _raise_diverged(status, lr, W.dtype, exponent)
        _warn_blown_up(hist, P, imp, law, lr)
        return FitResult(W, B, hist * n, settings, "adam", W0_copy, elapsed)
    model = Model(W[0], B[0], activation=activation, exponent=exponent, param=settings.get("param"))
    act = activation_bundle(model)
    # the group fields of a grouped law (shared by the instances), else placeholders
    fit_inputs = SparseInputs(n, p=P[0], values=law, **settings.get("groups", {}))
    laws = stacked_law(P, law, fit_inputs)  # sampler parameters per instance
    skeys = instance_keys(settings["seed"], n_inst)
    # work split: instances grouped by estimated cost, one group per thread
    rows, dense_x, gram, chunked, groups = _plan(
        n, d, batch, P, law, W.dtype, "groups" in settings, min(numba.get_num_threads(), n_inst)
    )
    n_log = (steps + log_every - 1) // log_every
    hist = np.full((n_log, n_inst), np.nan)
    status = np.full(n_inst, OK, dtype=np.int64)
    mW = np.zeros((n_inst, d, n))
    vW = np.zeros((n_inst, d, n))
    mb = np.zeros((n_inst, n))
    vb = np.zeros((n_inst, n))
    chunks = min(20, steps) if progress else 1
    bounds = [round(i * steps / max(chunks, 1)) for i in range(chunks + 1)]
    bar = progress_bar(steps, "fit", unit="steps", enabled=progress)
    t0 = time.perf_counter()
    with blas_threads(1):  # the sub-batch products, one BLAS thread per kernel thread
        for c in range(chunks):
            lo, hi = bounds[c], bounds[c + 1]
            adam_kernel(
                W, B, mW, vW, mb, vb, imp, bias, act, skeys, laws, lo, hi - lo, batch,
                (lr, beta1, beta2, eps), log_every, hist, status, groups, rows, dense_x, gram,
                chunked,
            )  # fmt: skip
            show_progress(bar, hi, hist, log_every)
    bar.close()
    elapsed = time.perf_counter() - t0
    _raise_diverged(status, lr, W.dtype, exponent)
    _warn_blown_up(hist, P, imp, law, lr)
    # the kernel records Elhage et al.'s mean over features; the result holds the sum
    return FitResult(W, B, hist * n, settings, "adam", W0_copy, elapsed)


def _raise_diverged(status: np.ndarray, lr: float, dtype, exponent: float) -> None:
    """Raise FloatingPointError naming the first diverged instance (``status[k] != OK``)."""
    if np.any(status != OK):
        bad = np.flatnonzero(status != OK)
        k = int(bad[0])
        raise FloatingPointError(
            f"training diverged: the batch loss or gradient of instance {k} became inf or NaN "
            f"at step {int(status[k])} ({len(bad)} of {len(status)} instances diverged); lower "
            f"lr (now {lr:g})"
            + (" or use dtype=np.float64" if np.dtype(dtype) == np.float32 else "")
            + (
                f"; with exponent {exponent:g} < 1, phi' is infinite at z = 0"
                if float(exponent) < 1
                else ""
            )
        )


#: a batch loss this many times the loss of ``x_hat = 0`` means that training blew up
BLOWUP_FACTOR = 100.0


def _warn_blown_up(hist: np.ndarray, P: np.ndarray, imp: np.ndarray, law, lr: float) -> None:
    """RuntimeWarning naming ``lr`` if an instance's batch loss blew up.

    The yardstick is the loss of the model ``x_hat = 0``, ``mu_2 sum_j I_j p_j``
    (summed over features, so that it is an upper bound whichever convention
    ``hist`` records), or the first recorded batch loss when that is larger.
    """
    if hist.shape[0] == 0:
        return
    zero_loss = law.moment(2) * np.sum(imp * P, axis=1)
    scale = np.maximum(zero_loss, np.nan_to_num(hist[0], nan=0.0))
    peak = np.max(np.nan_to_num(hist, nan=0.0), axis=0)
    bad = np.flatnonzero(peak > BLOWUP_FACTOR * scale)
    if bad.size:
        k = int(bad[0])
        warnings.warn(
            f"fit: the batch loss of instance {k} blew up to {peak[k]:.3g} (the loss of x_hat = 0 "
            f"is {zero_loss[k]:.3g}; {bad.size} of {hist.shape[1]} instances blew up): lr = "
            f"{lr:g} is too large for these models, lower it",
            RuntimeWarning,
            stacklevel=4,
        )


def _fit_exact(o: FitOptions):
    """``fit(method="exact")``: L-BFGS on the exact population loss (``fit_exact``).

    Needs ``activation="power"`` with an integer exponent and one instance;
    ``steps`` is L-BFGS's ``maxiter``.  Adam's settings (``batch_size``,
    ``lr``, ...) do not apply and are ignored.
    """
    from fastsuper.train.lbfgs import fit_exact

    exponent = o.exponent
    if exponent is None and o.activation in DEFAULT_EXPONENTS:
        exponent = DEFAULT_EXPONENTS[o.activation]
    if o.activation != "power" or not float(exponent).is_integer():
        raise ValueError(
            "method='exact' needs activation='power' with an integer exponent (the closed form "
            f"of THEORY §3), got activation={o.activation!r}, exponent={exponent!r}"
        )
    if o.backend != "cpu":
        raise ValueError(
            "method='exact' runs on the CPU (backend='cpu'); for the GPU use method='adam', or "
            "exact_loss_grad(..., backend='cuda') for the exact gradient's power sums"
        )
    if o.n_instances != 1:
        raise ValueError(f"method='exact' fits one instance, got n_instances={o.n_instances!r}")
    if o.b0 is not None:
        raise ValueError("method='exact' takes no b0 (it starts from b = 0)")
    if o.p is None:
        raise ValueError("method='exact' needs p (the feature probability)")
    return fit_exact(o.n, o.d, m=int(exponent), p=o.p, values=o.values,
                     importance=o.importance, bias=o.bias, seed=o.seed, maxiter=o.steps,
                     W0=o.W0, progress=o.progress, groups=o.groups)  # fmt: skip


#: optimisers of :func:`fit`: ``method`` name -> function ``(options: FitOptions) -> result``.
FITTERS: dict[str, Any] = {"adam": _fit_adam, "exact": _fit_exact}
