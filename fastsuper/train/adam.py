"""Training: the sampled gradient of the loss and ``fit`` (many instances at once).

:func:`loss_grad`
    Monte-Carlo loss and its gradient in ``W`` and ``b`` on numbered samples
    (the samples of :func:`fastsuper.estimate_loss` for the same seed).
:func:`fit`
    Train ``n_instances`` independent models, Elhage et al.'s way by default
    (THEORY §6): ReLU output with bias, U[0, 1] values, a feature probability
    per instance, importance-weighted mean squared error, Adam with batch 1024.
    One compiled kernel runs every step of every instance, parallel over
    instances; the result does not depend on the number of threads.

``fit`` dispatches on ``method`` through :data:`FITTERS`; another optimiser
registers itself there with the same keyword arguments.
"""

from __future__ import annotations

import json
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numba
import numpy as np

from fastsuper.core import config
from fastsuper.core import validation as v
from fastsuper.core.activations import ACTIVATIONS
from fastsuper.core.bundles import InputLaw, gap_tables, input_law
from fastsuper.core.bundles import activation as activation_bundle
from fastsuper.core.laws import SparseInputs, ValueLaw
from fastsuper.core.model import Model
from fastsuper.core.rng import seed_key
from fastsuper.train.common import (
    MASK64,
    SampledLossGrad,
    check_model_inputs,
    instance_seed,
    progress_bar,
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
    model: Model,
    inputs: SparseInputs,
    n_samples: int = 100_000,
    seed: int = 0,
    *,
    start: int = 0,
    block_size: int = config.GRAD_BLOCK,
    backend: str = "cpu",
) -> SampledLossGrad:
    """Monte-Carlo loss and its gradient in ``W`` and ``b``, on numbered samples.

    Samples ``start .. start + n_samples - 1`` of ``seed`` (the samples of
    :func:`fastsuper.estimate_loss` and :func:`fastsuper.sample` for the same
    seed) go through one fused kernel: ``h = W x`` over the active entries
    only, ``z = W^T h + b``, ``g_j = 2 I_j (phi(z_j) - x_j) phi'(z_j)``, then
    ``db += g``, ``dW += h g^T`` (decoder) and ``dW[:, i] += (W g) x_i`` for
    the active ``i`` only (encoder).  Computation is in the model's dtype,
    sums over samples in float64.  Blocks of ``block_size`` samples run in
    parallel (``numba.get_num_threads()`` threads), each into its own
    buffers, merged in block order: the same numbers for any thread count.

    Parameters
    ----------
    model : Model
        The autoencoder (any activation; float32 or float64).  Without a bias,
        ``db`` is the gradient at ``b = 0``.
    inputs : SparseInputs
        Input law (sparsity, values, importance).
    n_samples : int, default 100000
        Number of samples (>= 1).
    seed : int, default 0
        Seed of the sampler.
    start : int, default 0
        Index of the first sample.
    block_size : int, default 2048
        Samples per parallel work item and per partial sum; changes only the
        order of float64 additions, never the samples.
    backend : {"cpu", "cuda"}, default "cpu"
        ``"cuda"`` runs the sampler and the gradient on the GPU
        (:func:`fastsuper.mc.cuda.loss_grad_cuda`: a CUDA thread block
        per block of samples, merged in block order); the same samples and, to
        float round-off, the same numbers.  Needs numba-cuda and a GPU, or
        ``NUMBA_ENABLE_CUDASIM=1``.

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
    >>> from fastsuper.train.adam import loss_grad
    >>> model = fs.Model(np.array([[1.0, 0.0, 0.5]]), b=np.zeros(3), activation="power", exponent=1)
    >>> inputs = fs.SparseInputs(3, p=0.3, values="uniform")
    >>> loss, dW, db = loss_grad(model, inputs, 20_000, seed=1)
    >>> dW.shape, db.shape
    ((1, 3), (3,))
    >>> bool(abs(loss - fs.estimate_loss(model, inputs, 20_000, seed=1).mean) < 1e-12)
    True
    """
    if not isinstance(backend, str) or backend not in ("cpu", "cuda"):
        raise ValueError(f"backend must be 'cpu' or 'cuda', got {backend!r}")
    if backend == "cuda":
        from fastsuper.train.cuda import loss_grad_cuda

        return loss_grad_cuda(model, inputs, n_samples, seed, start=start, block_size=block_size)
    check_model_inputs(model, inputs)
    n_samples = v.check_int("n_samples", n_samples, minimum=1)
    seed = v.check_int("seed", seed)
    start = v.check_int("start", start, minimum=0)
    block_size = v.check_int("block_size", block_size, minimum=1)
    act, law = activation_bundle(model), input_law(inputs, gaps=True)
    n = inputs.n
    W, b = model.W, model.bias
    Wt, imp2 = prepare(W, inputs.importance)
    skey = np.uint64(seed_key(np.uint64(seed & MASK64)))  # seed_key returns a Python int
    d = model.d
    n_blocks = (n_samples + block_size - 1) // block_size
    tot_gW = np.zeros((d, n))
    tot_gb = np.zeros(n)
    loss_sum = 0.0

    def run(c, gW, gb):
        """Block ``c`` into its own buffers."""
        lo = c * block_size
        count = min(block_size, n_samples - lo)
        return grad_block(
            W, Wt, b, inputs.importance, imp2, act, skey, start + lo, count, law, gW, gb
        )

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
            bad = [(o[2], o[1]) for o in out if o[1] > 0]
            if bad:
                raise FloatingPointError(
                    f"the loss overflowed (inf or NaN) in {sum(x[1] for x in bad)} samples, first "
                    f"at sample index {bad[0][0]} (seed {seed}); the model's pre-activations are "
                    f"too large for {model.dtype} with exponent {model.exponent:g}: scale W down"
                    + (" or use float64" if model.dtype == np.float32 else "")
                )
            loss_sum += merge_blocks(np.array([o[0] for o in out]), gW, gb, tot_gW, tot_gb)
    finally:
        if pool is not None:
            pool.shutdown()
    if not (np.all(np.isfinite(tot_gW)) and np.all(np.isfinite(tot_gb))):
        raise FloatingPointError(
            f"the gradient is not finite (the loss is {loss_sum / n_samples:g}): phi' is "
            f"unbounded where the loss is not differentiable ({model.activation} with exponent "
            f"{model.exponent:g}" + (" < 1 at z = 0" if model.exponent < 1 else "") + ") or the "
            "products overflowed; scale W down or use another exponent"
        )
    inv = 1.0 / n_samples
    return SampledLossGrad(loss_sum * inv, tot_gW * inv, tot_gb * inv)


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
    seed = v.check_int("seed", seed)
    std = math.sqrt(2.0 / (n + d))
    W0 = np.empty((n_instances, d, n), dtype=dtype)
    for k in range(n_instances):
        W0[k] = np.random.default_rng([seed & MASK64, k]).normal(0.0, std, size=(d, n))
    return W0


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
        Batch loss of each instance (importance-weighted mean over batch and
        features, before that step's update) at steps ``log_steps``.
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
        """Last recorded batch loss of each instance (NaN when nothing was recorded)."""
        if self.loss_history.shape[0] == 0:
            return np.full(self.n_instances, np.nan)
        return self.loss_history[-1].copy()

    def _check_k(self, k) -> int:
        k = v.check_int("k", k)
        if not 0 <= k < self.n_instances:
            raise IndexError(f"k must be in [0, {self.n_instances}), got {k}")
        return k

    def model(self, k: int = 0) -> Model:
        """Instance ``k`` as a :class:`fastsuper.Model` (no bias when trained without)."""
        k = self._check_k(k)
        s = self.settings
        b = self.b[k] if s.get("bias", True) else None
        return Model(self.W[k], b, activation=s["activation"], exponent=s["exponent"])

    def inputs(self, k: int = 0) -> SparseInputs:
        """The input law instance ``k`` was trained on, as a :class:`fastsuper.SparseInputs`."""
        k = self._check_k(k)
        s = self.settings
        values = s["values"]
        law = ValueLaw(**values) if isinstance(values, dict) else values
        return SparseInputs(self.n, p=np.asarray(s["p"][k]), values=law,
                            importance=np.asarray(s["importance"][k]))  # fmt: skip

    def save(self, path) -> None:
        """Write to ``path`` (NumPy ``.npz``; read back with :meth:`load`)."""
        np.savez(
            path,
            W=self.W,
            b=self.b,
            loss_history=self.loss_history,
            W0=self.W if self.W0 is None else self.W0,
            has_W0=self.W0 is not None,
            settings=json.dumps(self.settings),
            method=self.method,
            elapsed=self.elapsed,
        )

    @classmethod
    def load(cls, path) -> FitResult:
        """Read a result written by :meth:`save`."""
        with np.load(path, allow_pickle=False) as f:
            return cls(
                W=f["W"],
                b=f["b"],
                loss_history=f["loss_history"],
                settings=json.loads(str(f["settings"])),
                method=str(f["method"]),
                W0=f["W0"] if bool(f["has_W0"]) else None,
                elapsed=float(f["elapsed"]),
            )

    def __repr__(self) -> str:
        return (
            f"FitResult(method={self.method!r}, n_instances={self.n_instances}, d={self.d}, "
            f"n={self.n}, steps={self.settings.get('steps')}, final_loss="
            f"{np.array2string(self.final_loss, precision=4)})"
        )


# --------------------------------------------------------------------------
# fit: argument checks


def _per_instance(name, value, n_instances, n, *, default, kind):
    """An (n_instances, n) float64 array from a scalar, (n_instances,), (n,) or full input."""
    if value is None:
        value = default
    if isinstance(value, bool) or isinstance(value, str):
        raise TypeError(f"{name} must be a number or an array of numbers, got {value!r}")
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a number or an array of numbers, got {value!r}") from exc
    if arr.ndim == 0:
        arr = np.full((n_instances, n), float(arr))
    elif arr.ndim == 1 and kind == "p" and arr.shape[0] == n_instances:
        arr = np.repeat(arr[:, None], n, axis=1)
    elif arr.ndim == 1 and kind == "importance" and arr.shape[0] == n:
        arr = np.repeat(arr[None, :], n_instances, axis=0)
    elif arr.ndim == 2 and arr.shape == (n_instances, n):
        arr = arr.copy()
    else:
        one = f"({n_instances},) (one per instance)" if kind == "p" else f"({n},) (one per feature)"
        raise ValueError(
            f"{name} must be a scalar or have shape {one} or ({n_instances}, {n}) (per instance "
            f"and feature), got shape {arr.shape}"
        )
    finite = np.isfinite(arr)
    bad = ~finite | ((arr < 0) | (arr > 1) if kind == "p" else arr <= 0)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        allowed = "lie in [0, 1]" if kind == "p" else "be finite and > 0"
        raise ValueError(f"{name} must {allowed}; {name}[{where[0]}, {where[1]}] = {arr[where]}")
    return np.ascontiguousarray(arr)


def _check_bool(name, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def _check_dtype(dtype) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"dtype must be numpy.float32 or numpy.float64, got {dtype!r}") from exc
    if dt not in v.FLOAT_DTYPES:
        raise TypeError(f"dtype must be numpy.float32 or numpy.float64, got {dt}")
    return dt


def _check_values(values) -> tuple[ValueLaw, Any]:
    """The value law and its JSON form."""
    if isinstance(values, ValueLaw):
        law = values
    elif isinstance(values, str):
        law = ValueLaw(values)
    else:
        raise TypeError(f"values must be a value-law name or a fastsuper.ValueLaw, got {values!r}")
    if law.name == "discrete":
        return law, {
            "name": "discrete",
            "support": law.support.tolist(),
            "probs": law.probs.tolist(),
        }
    return law, law.name


def _check_start(name, value, shape, dtype):
    """W0/b0: one array for all instances or one per instance."""
    arr = v.as_float_array(name, value, ndim=np.ndim(value), dtype=np.float64)
    if arr.shape == shape[1:]:
        arr = np.broadcast_to(arr, shape)
    elif arr.shape != shape:
        raise ValueError(
            f"{name} must have shape {shape[1:]} (all instances) or {shape} (one per instance), "
            f"got {arr.shape}"
        )
    return np.array(arr, dtype=dtype, order="C", copy=True)  # trained in place: never the caller's


# --------------------------------------------------------------------------
# fit


def fit(
    n: int,
    d: int,
    *,
    n_instances: int = 1,
    p=None,
    importance=None,
    activation: str = "relu_power",
    exponent: float = 1,
    values="uniform",
    bias: bool = True,
    method: str = "adam",
    steps: int = 10_000,
    batch_size: int = 1024,
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    seed: int = 0,
    dtype=np.float64,
    log_every: int = 100,
    W0=None,
    b0=None,
    progress: bool = False,
    backend: str = "cpu",
) -> FitResult:
    """Train ``n_instances`` independent tied-weight autoencoders at once.

    The defaults are Elhage et al.'s toy models (THEORY §6): ``x_hat =
    ReLU(W^T W x + b)``, features active independently with probability
    ``p`` (one value per instance, or per instance and feature) with U[0, 1]
    values, loss ``mean over batch and features of I_j (x_j - x_hat_j)^2``,
    Adam (lr 1e-3, betas (0.9, 0.999), eps 1e-8, PyTorch's update) on batches
    of 1024 fresh samples.

    Row ``s`` of the batch of step ``t`` of instance ``k`` is sample number
    ``t * batch_size + s`` of the counter-based sampler with seed
    :func:`instance_seed(seed, k) <instance_seed>`; the initial weights are
    :func:`initial_weights`.  Instances are trained in parallel (one compiled
    kernel runs all steps), each by one thread, so the result is the same for
    any thread count.

    Parameters
    ----------
    n, d : int
        Number of features and hidden dimension.
    n_instances : int, default 1
        Number of models trained side by side.
    p : float or array_like, optional
        Feature probability: a scalar, one per instance (shape
        ``(n_instances,)``) or per instance and feature (``(n_instances,
        n)``).  Default ``50 ** -linspace(0, 1, n_instances)`` (the peers'
        sweep from dense to p = 0.02; ``1.0`` for one instance).
    importance : array_like, optional
        Importance ``I_j > 0``: shape ``(n,)`` or ``(n_instances, n)``;
        default 1 (Elhage et al. use ``0.9 ** np.arange(n)``).
    activation : {"relu_power", "power", "signed_power"}, default "relu_power"
        Output activation (THEORY §1).
    exponent : float, default 1
        Its exponent (``relu_power`` 1 is ReLU, ``power`` 1 the linear model).
    values : str or ValueLaw, default "uniform"
        Law of an active feature's value.
    bias : bool, default True
        Train a bias ``b`` (else ``b = 0``).
    method : {"adam", "exact"}
        ``"adam"``: stochastic training of many instances.  ``"exact"``:
        L-BFGS on the exact population loss of a ``power`` model (one
        instance; pass ``activation="power"``, an integer ``exponent`` and
        ``p``; ``steps`` is L-BFGS's iteration limit; returns an
        :class:`~fastsuper.train.lbfgs.ExactFit`); see :data:`FITTERS`.
    steps : int, default 10000
        Number of optimiser steps.
    batch_size : int, default 1024
        Samples per step and instance.
    lr : float, default 1e-3
        Learning rate.
    betas : (float, float), default (0.9, 0.999)
        Adam's decay rates.
    eps : float, default 1e-8
        Adam's epsilon.
    seed : int, default 0
        Seed of the initial weights and of the samples.
    dtype : {numpy.float64, numpy.float32}
        Compute dtype of the forward and backward pass (Adam's moments and
        every sum over samples are float64).
    log_every : int, default 100
        Record the batch loss every ``log_every`` steps (from step 0).
    W0 : array_like, optional
        Initial weights, shape ``(d, n)`` (all instances) or
        ``(n_instances, d, n)``; default :func:`initial_weights`.
    b0 : array_like, optional
        Initial bias, shape ``(n,)`` or ``(n_instances, n)``; default 0.
    progress : bool, default False
        Print a progress bar with the mean batch loss to stderr.
    backend : {"cpu", "cuda"}, default "cpu"
        Where the sampled loss and gradient of each step are computed.
        ``"cuda"`` (``method="adam"`` only) draws each batch and computes its
        gradient on the GPU (:func:`fastsuper.mc.cuda.fit_adam_cuda`,
        one :func:`~fastsuper.mc.cuda.loss_grad_cuda` call per step and
        instance) and applies the same Adam update on the host: the same
        samples and, to float round-off, the same trajectory as the CPU.
        Needs numba-cuda and a GPU, or ``NUMBA_ENABLE_CUDASIM=1``.

    Returns
    -------
    FitResult
        ``W``, ``b``, ``loss_history``, ``settings``; ``.model(k)`` gives
        instance ``k`` as a :class:`fastsuper.Model`.

    Raises
    ------
    FloatingPointError
        If an instance's loss stops being finite (lower ``lr``).

    Examples
    --------
    Elhage et al.'s n = 5, d = 2 model with dense features keeps the two most
    important features, orthogonal, and drops the rest:

    >>> import numpy as np
    >>> from fastsuper.train.adam import fit
    >>> res = fit(5, 2, p=1.0, importance=0.9 ** np.arange(5), steps=3000, lr=1e-2)
    >>> np.linalg.norm(res.W[0], axis=0).round(1)
    array([1., 1., 0., 0., 0.])
    >>> res.loss_history.shape
    (30, 1)
    """
    if method not in FITTERS:
        raise ValueError(f"method must be one of {sorted(FITTERS)}, got {method!r}")
    if not isinstance(backend, str) or backend not in ("cpu", "cuda"):
        raise ValueError(f"backend must be 'cpu' or 'cuda', got {backend!r}")
    return FITTERS[method](
        n,
        d,
        n_instances=n_instances,
        p=p,
        importance=importance,
        activation=activation,
        exponent=exponent,
        values=values,
        bias=bias,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        betas=betas,
        eps=eps,
        seed=seed,
        dtype=dtype,
        log_every=log_every,
        W0=W0,
        b0=b0,
        progress=progress,
        backend=backend,
    )


def _check_fit_args(
    n, d, n_instances, p, importance, activation, exponent, values, bias, steps, batch_size,
    lr, seed, dtype, log_every, W0, b0, progress,
):  # fmt: skip
    """Validate the arguments shared by every method; returns the normalised settings."""
    n = v.check_int("n", n, minimum=1)
    d = v.check_int("d", d, minimum=1)
    n_instances = v.check_int("n_instances", n_instances, minimum=1)
    if p is None:
        p = 50.0 ** -np.linspace(0.0, 1.0, n_instances)
    P = _per_instance("p", p, n_instances, n, default=None, kind="p")
    imp = _per_instance("importance", importance, n_instances, n, default=1.0, kind="importance")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    exponent = v.check_real("exponent", exponent, positive=True)
    law, values_json = _check_values(values)
    bias = _check_bool("bias", bias)
    steps = v.check_int("steps", steps, minimum=0)
    batch_size = v.check_int("batch_size", batch_size, minimum=1)
    lr = v.check_real("lr", lr, positive=True)
    seed = v.check_int("seed", seed)
    dt = _check_dtype(dtype)
    log_every = v.check_int("log_every", log_every, minimum=1)
    progress = _check_bool("progress", progress)
    if W0 is None:
        W = initial_weights(n, d, n_instances, seed, dt)
    else:
        W = _check_start("W0", W0, (n_instances, d, n), dt)
    if b0 is None:
        B = np.zeros((n_instances, n), dtype=dt)
    elif not bias:
        raise ValueError("b0 was given but bias=False; leave b0 out or set bias=True")
    else:
        B = _check_start("b0", b0, (n_instances, n), dt)
    Model(W[0], B[0], activation=activation, exponent=exponent)  # checks the exponent
    settings = dict(
        n=n,
        d=d,
        n_instances=n_instances,
        p=P.tolist(),
        importance=imp.tolist(),
        activation=activation,
        exponent=exponent,
        values=values_json,
        bias=bias,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        dtype=dt.name,
        log_every=log_every,
    )
    return settings, P, imp, law, W, B, progress


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
    """Sub-batch rows for the BLAS path (0: per-sample code)."""
    if padded_width(d) <= 4:
        return 0
    rows = (config.BLAS_SINGLE_THREAD_MNK // (n * d)) // 8 * 8
    if rows < 16:
        return 0
    return min(rows, batch)


def _fit_adam(
    n, d, *, n_instances, p, importance, activation, exponent, values, bias, steps,
    batch_size, lr, betas, eps, seed, dtype, log_every, W0, b0, progress, backend="cpu",
) -> FitResult:  # fmt: skip
    """``fit(method="adam")``: the compiled multi-instance Adam loop (or its GPU version)."""
    settings, P, imp, law, W, B, progress = _check_fit_args(
        n, d, n_instances, p, importance, activation, exponent, values, bias, steps,
        batch_size, lr, seed, dtype, log_every, W0, b0, progress,
    )  # fmt: skip
    if (
        not isinstance(betas, (tuple, list))
        or len(betas) != 2
        or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in betas)
        or not all(0.0 <= float(x) < 1.0 for x in betas)
    ):
        raise ValueError(f"betas must be two numbers in [0, 1), got {betas!r}")
    beta1, beta2 = float(betas[0]), float(betas[1])
    eps = v.check_real("eps", eps, positive=True)
    settings.update(method="adam", betas=[beta1, beta2], eps=eps)
    n, d, n_inst = settings["n"], settings["d"], settings["n_instances"]
    steps, batch, log_every = settings["steps"], settings["batch_size"], settings["log_every"]
    W0_copy = W.copy()
    if backend == "cuda":
        from fastsuper.train.cuda import fit_adam_cuda

        hist, status, elapsed = fit_adam_cuda(
            W, B, P, imp, law, activation=activation, exponent=exponent, bias=bias,
            seed=settings["seed"], steps=steps, batch_size=batch, lr=lr, betas=(beta1, beta2),
            eps=eps, log_every=log_every, progress=progress,
        )  # fmt: skip
        _raise_diverged(status, lr, W.dtype, exponent)
        return FitResult(W, B, hist, settings, "adam", W0_copy, elapsed)
    model = Model(W[0], B[0], activation=activation, exponent=exponent)
    act = activation_bundle(model)
    # sampler parameters per instance (SparseInputs._kernel_params for each row of P)
    pmax = P.max(axis=1)
    log1mp = np.array([math.log1p(-x) if x < 1.0 else -math.inf for x in pmax])
    thin = np.array([not np.all(row == row[0]) for row in P], dtype=np.bool_)
    tables = [gap_tables(n, x) for x in log1mp]
    tlo = np.array([t[0] for t in tables])
    thi = np.array([t[1] for t in tables])
    skeys = np.array(
        [seed_key(np.uint64(instance_seed(settings["seed"], k))) for k in range(n_inst)],
        dtype=np.uint64,
    )
    # work split: instances grouped by estimated cost, one group per thread
    rows = _blas_rows(n, d, batch)
    active = P.sum(axis=1)
    dense_x = np.asarray(5.0 * active >= n, dtype=np.bool_)
    # per-sample cost, in units of one value draw (measured at n=5, d=2 and n=100, d=20)
    draws = np.where(pmax >= 1.0, 0.0, active + 1.0)  # geometric gaps drawn per sample
    costs = 10.0 + n * padded_width(d) * (0.05 if rows else 1.0) + active + 4.0 * draws
    groups = _groups(costs, min(numba.get_num_threads(), n_inst))
    n_log = (steps + log_every - 1) // log_every
    hist = np.full((n_log, n_inst), np.nan)
    status = np.full(n_inst, OK, dtype=np.int64)
    mW = np.zeros((n_inst, d, n))
    vW = np.zeros((n_inst, d, n))
    mb = np.zeros((n_inst, n))
    vb = np.zeros((n_inst, n))
    chunks = min(20, steps) if progress else 1
    bounds = [round(i * steps / max(chunks, 1)) for i in range(chunks + 1)]
    t0 = time.perf_counter()
    for c in range(chunks):
        lo, hi = bounds[c], bounds[c + 1]
        laws = InputLaw(n, -1, pmax, log1mp, thin, P, law.code, law.support, law.cumprobs, tlo, thi)
        adam_kernel(
            W, B, mW, vW, mb, vb, imp, bias, act, skeys, laws, lo, hi - lo, batch,
            (lr, beta1, beta2, eps), log_every, hist, status, groups, rows, dense_x,
        )  # fmt: skip
        if progress:
            progress_bar(hi, steps, hist, log_every, time.perf_counter() - t0)
    elapsed = time.perf_counter() - t0
    _raise_diverged(status, lr, W.dtype, exponent)
    return FitResult(W, B, hist, settings, "adam", W0_copy, elapsed)


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


#: optimisers of :func:`fit`: ``method`` name -> function ``(n, d, **kwargs) -> FitResult``
#: taking every keyword argument of :func:`fit` except ``method``.
def _fit_exact(
    n,
    d,
    *,
    n_instances=1,
    p=None,
    importance=None,
    activation="power",
    exponent=3,
    values="gaussian",
    bias=False,
    steps=2000,
    seed=0,
    W0=None,
    b0=None,
    backend="cpu",
    **ignored,
):
    """``fit(method="exact")``: L-BFGS on the exact population loss (``fit_exact``).

    Needs ``activation="power"`` with an integer exponent and one instance;
    ``steps`` is L-BFGS's ``maxiter``.  Adam's settings (``batch_size``,
    ``lr``, ...) do not apply and are ignored.
    """
    from fastsuper.train.lbfgs import fit_exact

    if activation != "power" or not float(exponent).is_integer():
        raise ValueError(
            "method='exact' needs activation='power' with an integer exponent (the closed form "
            f"of THEORY §3), got activation={activation!r}, exponent={exponent!r}"
        )
    if backend != "cpu":
        raise ValueError(
            "method='exact' runs on the CPU (backend='cpu'); for the GPU use method='adam', or "
            "exact_loss_grad(..., backend='cuda') for the exact gradient's power sums"
        )
    if n_instances != 1:
        raise ValueError(f"method='exact' fits one instance, got n_instances={n_instances!r}")
    if b0 is not None:
        raise ValueError("method='exact' takes no b0 (it starts from b = 0)")
    if p is None:
        raise ValueError("method='exact' needs p (the feature probability)")
    return fit_exact(
        n,
        d,
        m=int(exponent),
        p=p,
        values=values,
        importance=importance,
        bias=bias,
        seed=seed,
        maxiter=steps,
        W0=W0,
    )


FITTERS: dict[str, Any] = {"adam": _fit_adam, "exact": _fit_exact}
