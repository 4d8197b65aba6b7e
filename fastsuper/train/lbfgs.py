"""Deterministic optimisation of the exact population gain (THEORY §3, §5).

:func:`fit_exact` maximises the exact gain ``L~`` (equivalently minimises
the exact loss ``L = E sum_j I_j x_j**2 - L~``) of the ``power`` model
``x_hat = (W.T @ W @ x + b)**m`` over ``W`` (and ``b``) with L-BFGS-B and
the exact gradient of :func:`fastsuper.exact_gain_grad` -- no
sampling, so the result and its gain are reproducible to round-off.

Starts, each run to convergence by :func:`maximise_gain`: ``W0`` when given;
the unsuperposed optimum of THEORY §5.1 (the ``min(n, d)`` features with the
largest ``I_i p_i`` on orthogonal axes with ``A_ii**m = mu_{m+1} / mu_{2m}``,
the others zero; for symmetric value laws and no bias a stationary point, so
it ends where it starts and guarantees the unsuperposed gain
``p kappa min(n, d)``); then ``restarts`` random frames (uniform random
directions, stream ``numpy.random.default_rng([seed, k])``) with the best
common norm of THEORY §5.3, ``c**m = mu_{m+1} / (mu_{2m} (1 + (n-1)/D(d,
m)))`` and column norm ``sqrt(c)``, or ``init_norm``.  The bias starts at 0.
The best end point is returned as an :class:`ExactFit`.

Scaling.  The gain is of order ``p``, so L-BFGS-B, whose stopping test on
the objective is ``(f_k - f_{k+1}) / max(|f_k|, |f_{k+1}|, 1) <= ftol``, would
stop at once on the raw values at small ``p``.  The objective handed to it
is therefore ``f = -L~ / L0`` with ``L0 = E sum_j I_j x_j**2 = mu_2 sum_j I_j
p_j`` (the loss of ``W = 0``): ``f = L / L0 - 1`` lies in ``[-1, 0]`` for
every ``p`` and ``n``, and ``ftol = gtol = tol`` apply to it.
"""

from __future__ import annotations

import contextlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from fastsuper.core import arguments, config
from fastsuper.core import validation as v
from fastsuper.core.blas import single_thread_if_small
from fastsuper.core.groups import check_group_kwargs
from fastsuper.core.laws import SparseInputs, ValueLaw
from fastsuper.core.model import Model
from fastsuper.core.progress import Throttle, progress_bar, progress_enabled
from fastsuper.exact.api import exact_loss_and_gain
from fastsuper.exact.first_order import random_frame, random_frame_norm
from fastsuper.exact.prepared import ExactEvaluator
from fastsuper.train.common import law_from_spec, law_spec

__all__ = ["ExactFit", "GainRun", "fit_exact", "maximise_gain"]

_FUNC = "fit_exact"


@dataclass(frozen=True, eq=False)
class ExactFit:
    """Result of :func:`fit_exact`: the best weights and how they were found.

    Attributes
    ----------
    W : ndarray of shape (d, n), float64
        Best weights found.
    b : ndarray of shape (n,) or None
        Best bias (``None`` when fitted without bias).
    gain : float
        Exact gain ``L~`` of ``(W, b)`` (sum over features).
    loss : float
        Exact loss ``L = E sum_j I_j x_j**2 - L~`` (sum over features).
    gains : ndarray of shape (starts,)
        Exact gain at the end of each start (in the order of ``starts``).
    nit, nfev : ndarray of shape (starts,), int
        L-BFGS-B iterations and objective evaluations of each start.
    converged : ndarray of shape (starts,), bool
        Whether L-BFGS-B met its tolerance (rather than ``maxiter``).
    starts : tuple of str
        What each start was: ``"W0"``, ``"unsuperposed"``, ``"random k"``.
    best : int
        Index of the best start.
    history : ndarray of shape (nit[best] + 1,)
        Exact gain of the best start before its first and after each
        L-BFGS-B iteration (one more entry, the returned gain, in the rare
        case that a line-search trial point beat the last iterate and is
        returned instead).
    n, d, m : int
        Features, hidden dimension, exponent.
    p : float or ndarray of shape (n,)
        Feature probability (as given).
    law : ValueLaw
        Value law.
    importance : ndarray of shape (n,) or None
        Importances (``None`` for all ones).
    bias : bool
        Whether ``b`` was fitted.
    restarts, seed, maxiter : int
        Settings of the run.
    tol : float
        ``ftol = gtol`` of L-BFGS-B on the scaled objective.
    init_norm : float or None
        Common column norm of the random starts (``None``: THEORY §5.3's).
    scale : float
        ``L0 = E sum_j I_j x_j**2``; L-BFGS-B minimised ``-L~ / L0``.
    """

    W: np.ndarray
    b: np.ndarray | None
    gain: float
    loss: float
    gains: np.ndarray
    nit: np.ndarray
    nfev: np.ndarray
    converged: np.ndarray
    starts: tuple
    best: int
    history: np.ndarray
    n: int
    d: int
    m: int
    p: float | np.ndarray
    law: ValueLaw
    importance: np.ndarray | None
    bias: bool
    restarts: int
    seed: int
    maxiter: int
    tol: float
    init_norm: float | None
    scale: float
    groups: dict | None = None

    # ------------------------------------------------------------ views
    def model(self) -> Model:
        """The fitted :class:`fastsuper.Model` (``activation="power"``, exponent ``m``)."""
        return Model(self.W, self.b, activation="power", exponent=self.m)

    def inputs(self) -> SparseInputs:
        """The :class:`fastsuper.SparseInputs` the fit was made for."""
        return SparseInputs(
            self.n, p=self.p, values=self.law, importance=self.importance, **(self.groups or {})
        )

    @property
    def gain_history(self) -> np.ndarray:
        """:attr:`history`: the exact gain of the best start, before and after each iteration."""
        return self.history

    @property
    def loss_mean_over_features(self) -> float:
        """:attr:`loss` divided by ``n``: Elhage et al.'s mean over features."""
        return self.loss / self.n

    @property
    def gain_mean_over_features(self) -> float:
        """:attr:`gain` divided by ``n``."""
        return self.gain / self.n

    @property
    def settings(self) -> dict:
        """The arguments of the run as a plain dict (``p``, ``importance`` as lists)."""
        p = self.p if isinstance(self.p, float) else np.asarray(self.p).tolist()
        imp = None if self.importance is None else np.asarray(self.importance).tolist()
        return {
            "n": self.n,
            "d": self.d,
            "m": self.m,
            "p": p,
            "values": law_spec(self.law),
            "importance": imp,
            "bias": self.bias,
            "restarts": self.restarts,
            "seed": self.seed,
            "maxiter": self.maxiter,
            "tol": self.tol,
            "init_norm": self.init_norm,
            "groups": self.groups,
        }

    def __repr__(self) -> str:
        p = f"{self.p:g}" if isinstance(self.p, float) else "<per feature>"
        return (
            f"ExactFit(n={self.n}, d={self.d}, m={self.m}, p={p}, values={self.law!r}, "
            + ("" if self.groups is None else f"groups={self.inputs().groups.describe()}, ")
            + f"bias={self.bias}, gain={self.gain:.10g}, loss={self.loss:.10g} (exact, sums over "
            f"the {self.n} features), best={self.starts[self.best]!r} of {len(self.starts)} "
            "starts)"
        )

    # ------------------------------------------------------------ files
    def save(self, path) -> Path:
        """Write the result to an ``.npz`` file (no pickles); returns the path written.

        The suffix ``.npz`` is added when ``path`` lacks it (as ``numpy.savez``
        does).  Read it back with :meth:`ExactFit.load`.
        """
        path = v.check_path("path", path, func="ExactFit.save")
        if path.suffix != ".npz":
            path = path.with_name(path.name + ".npz")
        meta = {
            "format": "fastsuper.ExactFit",
            "version": 1,
            "gain": self.gain,
            "loss": self.loss,
            "starts": list(self.starts),
            "best": self.best,
            "scale": self.scale,
            "p_scalar": isinstance(self.p, float),
            "settings": {k: val for k, val in self.settings.items() if k != "p"},
        }
        meta["settings"]["importance"] = None  # stored as an array below
        arrays = {
            "W": self.W,
            "b": np.zeros(0) if self.b is None else self.b,
            "gains": self.gains,
            "nit": self.nit,
            "nfev": self.nfev,
            "converged": self.converged,
            "history": self.history,
            "p": np.atleast_1d(np.asarray(self.p, dtype=np.float64)),
            "importance": np.zeros(0) if self.importance is None else self.importance,
            "meta": np.array(json.dumps(meta)),
        }
        with open(path, "wb") as fh:
            np.savez(fh, **arrays)
        return path

    @classmethod
    def load(cls, path) -> ExactFit:
        """Read a result written by :meth:`save`."""
        path = v.check_path("path", path, func="ExactFit.load")
        with np.load(path, allow_pickle=False) as z:
            if "meta" not in z.files:
                raise ValueError(f"ExactFit.load: {path} was not written by ExactFit.save")
            meta = json.loads(str(z["meta"]))
            if meta.get("format") != "fastsuper.ExactFit":
                raise ValueError(f"ExactFit.load: {path} was not written by ExactFit.save")
            s = meta["settings"]
            p = float(z["p"][0]) if meta["p_scalar"] else z["p"].copy()
            importance = z["importance"].copy() if z["importance"].size else None
            return cls(
                W=z["W"].copy(),
                b=z["b"].copy() if s["bias"] else None,
                gain=float(meta["gain"]),
                loss=float(meta["loss"]),
                gains=z["gains"].copy(),
                nit=z["nit"].copy(),
                nfev=z["nfev"].copy(),
                converged=z["converged"].copy(),
                starts=tuple(meta["starts"]),
                best=int(meta["best"]),
                history=z["history"].copy(),
                n=int(s["n"]),
                d=int(s["d"]),
                m=int(s["m"]),
                p=p,
                law=law_from_spec(s["values"]),
                importance=importance,
                bias=bool(s["bias"]),
                restarts=int(s["restarts"]),
                seed=int(s["seed"]),
                maxiter=int(s["maxiter"]),
                tol=float(s["tol"]),
                init_norm=None if s["init_norm"] is None else float(s["init_norm"]),
                scale=float(meta["scale"]),
                groups=s.get("groups"),
            )


# --------------------------------------------------------------------------
# arguments


@dataclass(frozen=True)
class _Problem:
    """The model family and the input law of a fit (checked arguments)."""

    n: int
    d: int
    m: int
    p: float | np.ndarray  # as given: a float, or one probability per feature
    p_arr: np.ndarray  # one probability per feature
    law: ValueLaw
    importance: np.ndarray | None
    bias: bool
    groups: dict | None = None  # SparseInputs keywords of a grouped law (JSON values)

    def inputs(self) -> SparseInputs:
        return SparseInputs(
            self.n, p=self.p if self.groups else self.p_arr, values=self.law,
            importance=self.importance, **(self.groups or {}),
        )  # fmt: skip


@dataclass(frozen=True)
class _Search:
    """The starts and the L-BFGS-B settings of a fit (checked arguments)."""

    restarts: int
    seed: int
    maxiter: int
    tol: float
    init_norm: float | None
    W0: np.ndarray | None


def _problem(n, d, m, p, values, importance, bias, groups=None) -> _Problem:
    n = v.check_int("n", n, minimum=1, func=_FUNC, what=" (number of features)")
    d = v.check_int("d", d, minimum=1, func=_FUNC, what=" (hidden dimension)")
    m = v.check_int("m", m, minimum=1, func=_FUNC, what=" (the power activation's exponent)")
    p_arr = v.check_probabilities("p", p, n, positive=True, func=_FUNC)
    law = arguments.check_law("values", values, func=_FUNC)
    if law.moment(2) <= 0:
        raise ValueError(f"{_FUNC}: values {law!r} is almost surely 0; nothing to reconstruct")
    if importance is not None:
        importance = v.as_float_array(
            "importance", importance, ndim=1, dtype=np.float64, shape=(n,), func=_FUNC
        )
        importance = v.check_positive_entries("importance", importance, func=_FUNC).copy()
    bias = v.check_bool("bias", bias, func=_FUNC)
    p_given = float(p_arr[0]) if np.ndim(p) == 0 else p_arr
    groups = check_group_kwargs(groups, func=_FUNC)
    if groups is not None:  # checked by the law, kept in JSON form
        try:
            law_in = SparseInputs(n, p=p_given, values=law, **groups)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{_FUNC}: {exc}") from None
        groups = law_in.groups.to_kwargs()
    return _Problem(n, d, m, p_given, p_arr, law, importance, bias, groups)


def _search(problem: _Problem, restarts, seed, maxiter, tol, init_norm, W0) -> _Search:
    restarts = v.check_int(
        "restarts", restarts, minimum=0, func=_FUNC, what=" (number of random starts)"
    )
    seed = v.check_seed("seed", seed, minimum=0, func=_FUNC)
    maxiter = v.check_int("maxiter", maxiter, minimum=1, func=_FUNC)
    tol = v.check_real("tol", tol, positive=True, func=_FUNC)
    init_norm = v.check_real("init_norm", init_norm, positive=True, func=_FUNC, allow_none=True)
    if W0 is not None:
        W0 = v.check_weights("W0", W0, shape=(problem.d, problem.n), func=_FUNC)
    return _Search(restarts, seed, maxiter, tol, init_norm, W0)


# --------------------------------------------------------------------------
# starts


def _unsuperposed(n: int, d: int, m: int, law: ValueLaw, weight: np.ndarray) -> np.ndarray:
    """THEORY §5.1's optimum: the ``min(n, d)`` features of largest ``I_i p_i`` kept."""
    ratio = law.moment(m + 1) / law.moment(2 * m)
    a = max(ratio, 0.0) ** (1.0 / m)  # A_ii, with A_ii**m = mu_{m+1} / mu_{2m}
    W = np.zeros((d, n))
    keep = np.argsort(-weight, kind="stable")[: min(n, d)]
    W[np.arange(keep.size), keep] = math.sqrt(a)
    return W


def _starts(
    problem: _Problem, search: _Search, inputs: SparseInputs
) -> list[tuple[str, np.ndarray]]:
    """``(label, W)`` of every start, in the order they are run."""
    n, d, m, law = problem.n, problem.d, problem.m, problem.law
    starts = []
    if search.W0 is not None:
        starts.append(("W0", search.W0.copy()))
    starts.append(("unsuperposed", _unsuperposed(n, d, m, law, inputs.importance * inputs.p)))
    norm = search.init_norm if search.init_norm is not None else random_frame_norm(n, d, m, law)
    for k in range(search.restarts):
        starts.append((f"random {k}", random_frame(n, d, norm, [search.seed, k])))
    if search.W0 is not None:  # a clear error now rather than a silently failed start
        try:
            exact_loss_and_gain(Model(search.W0, activation="power", exponent=m), inputs)
        except FloatingPointError as exc:
            raise FloatingPointError(f"{_FUNC}: W0 cannot be a start: {exc}") from None
    return starts


# --------------------------------------------------------------------------
# the optimisation


class GainRun(NamedTuple):
    """One L-BFGS-B run of :func:`maximise_gain`."""

    W: np.ndarray  # end point (d, n)
    b: np.ndarray | None  # end bias (None without)
    gain: float  # exact gain at the end point (-inf if the start overflowed)
    nit: int  # L-BFGS-B iterations
    nfev: int  # objective evaluations
    converged: bool  # tolerance met (not maxiter, not an abnormal stop)
    history: np.ndarray  # exact gain before the first and after each iteration


class _Objective:
    """``-L~ / scale`` and its gradient at a flat point ``x = (W, b)``, for L-BFGS-B.

    Evaluated by a prepared :class:`fastsuper.ExactEvaluator` (the numbers
    of :func:`fastsuper.exact_gain_grad`, without its per-call checks).
    Remembers the last point evaluated (L-BFGS-B's callback reports it) and
    the best one (returned when a trial point beat the last iterate).
    """

    def __init__(self, evaluator: ExactEvaluator, scale: float):
        self.evaluator, self.scale = evaluator, scale
        self.on_iteration = None  # called with (iteration, gain) after each iteration
        self.nw = evaluator.d * evaluator.n
        self.shape = (evaluator.d, evaluator.n)
        self.fit_bias = evaluator.bias
        self.last: dict = {}
        self.best: dict = {"x": None, "gain": -math.inf}
        self.history: list[float] = []

    def unpack(self, x):
        W = x[: self.nw].reshape(self.shape)
        b = x[self.nw :] if self.fit_bias else None
        return W, b

    def __call__(self, x):
        if not np.all(np.isfinite(x)):  # a trial step beyond the float64 range
            self.last.update(x=x.copy(), gain=-math.inf)
            return math.inf, np.zeros_like(x)
        try:
            f, grad = self.evaluator.objective(x, self.scale)
        except FloatingPointError:  # a trial step so long that moments overflow float64
            self.last.update(x=x.copy(), gain=-math.inf)
            return math.inf, np.zeros_like(x)
        gain = self.evaluator.last_gain
        self.last.update(x=x.copy(), gain=gain)
        if gain > self.best["gain"]:
            self.best.update(x=self.last["x"], gain=gain)
        return f, grad

    def callback(self, xk):
        if "x" in self.last and np.array_equal(self.last["x"], xk):
            self.history.append(self.last["gain"])
        else:  # pragma: no cover - L-BFGS-B reports its last evaluated point
            self.history.append(-self(xk)[0] * self.scale)
        if self.on_iteration is not None:
            self.on_iteration(len(self.history) - 1, self.history[-1])

    def gain_at(self, x) -> float:
        W, b = self.unpack(x)
        return self.evaluator.loss_and_gain(W, b)[1]


def _lbfgs_blas(size: int):
    """Context of one L-BFGS-B run on ``size`` parameters: every loaded BLAS library (SciPy's
    too) on one thread when ``size <=`` :data:`fastsuper.core.config.LBFGS_SINGLE_THREAD_PARAMS`.

    L-BFGS-B's vector and small-matrix operations gain nothing from threads at these
    sizes, and OpenBLAS's waking and spinning threads cost far more than the operations
    on a busy machine (docs/benchmarks.md); the iterates are the same.
    """
    if size > config.LBFGS_SINGLE_THREAD_PARAMS:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def maximise_gain(
    W_start, b_start, inputs, m, scale, maxiter, tol, *, on_iteration=None, evaluator=None
) -> GainRun:
    """One L-BFGS-B run on the exact gain of the ``power`` model from ``(W_start, b_start)``.

    The run of each start of :func:`fit_exact`, unchecked: ``W_start`` (d, n)
    float64, ``b_start`` (n,) or ``None`` (no bias fitted), ``inputs`` a
    :class:`fastsuper.SparseInputs` with Bernoulli features, ``m`` the
    integer exponent; L-BFGS-B minimises ``-L~ / scale`` with ``ftol = gtol =
    tol`` and at most ``maxiter`` iterations (see the module docstring);
    ``on_iteration(iteration, gain)``, when given, is called after each.
    ``evaluator``: a :class:`fastsuper.ExactEvaluator` for ``inputs``, the
    shape of ``W_start``, ``m`` and the bias (default: one made here), so
    that several runs share its preparation.

    Returns
    -------
    GainRun
        ``(W, b, gain, nit, nfev, converged, history)``.
    """
    from scipy.optimize import minimize

    fit_bias = b_start is not None
    if evaluator is None:
        evaluator = ExactEvaluator(inputs, W_start.shape[0], m, bias=fit_bias, kernel="rows")
    obj = _Objective(evaluator, scale)
    obj.on_iteration = on_iteration
    x0 = W_start.ravel() if not fit_bias else np.concatenate([W_start.ravel(), b_start])
    x0 = np.array(x0, dtype=np.float64)
    f0 = obj(x0)[0]
    if not math.isfinite(f0):
        return GainRun(W_start.copy(), b_start, -math.inf, 0, 1, False, np.array([-math.inf]))
    obj.history.append(-f0 * scale)
    options = {"maxiter": maxiter, "maxfun": 10 * maxiter + 100, "ftol": tol, "gtol": tol,
               "maxcor": 20}  # fmt: skip
    with _lbfgs_blas(x0.size):
        res = minimize(obj, x0, jac=True, method="L-BFGS-B", callback=obj.callback,
                       options=options)  # fmt: skip
    x = np.array(res.x, dtype=np.float64)
    ok = bool(res.success) and int(res.nit) < maxiter and math.isfinite(res.fun)
    gain = obj.gain_at(x) if math.isfinite(res.fun) else -math.inf  # not -f * scale
    if obj.best["gain"] > gain:  # a trial point beat the last iterate (e.g. an abnormal stop)
        x, gain = obj.best["x"], obj.best["gain"]
        obj.history.append(gain)
    W, b = obj.unpack(x)
    W, b = W.copy(), (None if b is None else b.copy())
    history = np.array(obj.history, dtype=np.float64)
    return GainRun(W, b, gain, int(res.nit), int(res.nfev), ok, history)


def _result(problem: _Problem, search: _Search, inputs, scale, starts, runs) -> ExactFit:
    """The :class:`ExactFit` of the best run."""
    gains = np.array([r.gain for r in runs])
    best = int(np.argmax(gains))
    W, b, history = runs[best].W, runs[best].b, runs[best].history
    model = Model(W, b, activation="power", exponent=problem.m)
    loss, gain = exact_loss_and_gain(model, inputs)
    return ExactFit(
        W=W, b=b, gain=float(gain), loss=float(loss), gains=gains,
        nit=np.array([r.nit for r in runs], dtype=np.int64),
        nfev=np.array([r.nfev for r in runs], dtype=np.int64),
        converged=np.array([r.converged for r in runs], dtype=bool),
        starts=tuple(s[0] for s in starts), best=best, history=history,
        n=problem.n, d=problem.d, m=problem.m, p=problem.p, law=problem.law,
        importance=problem.importance, bias=problem.bias, restarts=search.restarts,
        seed=search.seed, maxiter=search.maxiter, tol=search.tol, init_norm=search.init_norm,
        scale=scale, groups=problem.groups,
    )  # fmt: skip


def fit_exact(
    n, d, *, m=3, p, values="gaussian", importance=None, bias=False, restarts=4, seed=0,
    maxiter=2000, W0=None, tol=1e-12, init_norm=None, progress=None, groups=None,
) -> ExactFit:  # fmt: skip
    """Maximise the exact gain of the ``power`` model with L-BFGS-B (THEORY §3, §5).

    Deterministic optimisation of the population gain ``L~ = E sum_j I_j
    x_j**2 - L`` of ``x_hat = (W.T @ W @ x + b)**m`` under independent
    Bernoulli(``p``) features: :func:`scipy.optimize.minimize` (L-BFGS-B) on
    the exact value and gradient of :func:`fastsuper.exact_gain_grad`, each
    evaluation ``O(n**2 (d + m))``.  Every start runs to convergence and the
    best end point is returned; the starts (``W0``, the unsuperposed optimum
    of THEORY §5.1, ``restarts`` random frames with THEORY §5.3's norm) and the
    scaling of the objective are described in :mod:`fastsuper.train.lbfgs`.

    Parameters
    ----------
    n, d : int
        Number of features and hidden dimension (integers ``>= 1``).
    m : int, default 3
        Exponent of ``phi(t) = t**m`` (integer ``>= 1``; ``m = 1``: linear).
    p : float or array_like of shape (n,)
        Feature probability in ``(0, 1]``, one for all or one per feature.
    values : str or ValueLaw, default "gaussian"
        Law of an active feature's value (a name or a ValueLaw).
    importance : array_like of shape (n,), optional
        Positive loss weights ``I_j`` (default 1).
    bias : bool, default False
        Also fit the output bias ``b`` (the paper has none).
    restarts, seed : int, default 4, 0
        Random-frame starts (``>= 0``) and their seed (``>= 0``; start ``k``
        uses ``numpy.random.default_rng([seed, k])``).
    maxiter : int, default 2000
        Most L-BFGS-B iterations per start.
    W0 : array_like of shape (d, n), optional
        An extra start, tried first.
    tol : float, default 1e-12
        ``ftol`` and ``gtol`` of L-BFGS-B on the scaled objective.
    init_norm : float, optional
        Common column norm of the random starts instead of THEORY §5.3's.
    progress : bool, optional
        A progress bar on stderr: one step per start, with the iteration and
        the gains reached.  Default: shown when stderr is a terminal.
    groups : dict, optional
        A grouped input law (THEORY §8): the group keywords of
        :class:`fastsuper.SparseInputs` (``groups`` and any of ``kind``,
        ``q``, ``weights``, ``r``); ``p`` then applies to the ungrouped
        features (and is the default ``q``).

    Returns
    -------
    ExactFit
        Best ``W`` (and ``b``), its exact gain and loss, every start's
        outcome and the settings (``.model()``, ``.save(path)``).

    Raises
    ------
    TypeError, ValueError
        On a bad argument (the message names it and the allowed values).
    FloatingPointError
        If ``W0`` is so large that the moments of its gain overflow float64.

    Examples
    --------
    Without superposition room (``n <= d``) the optimum is the unsuperposed
    one, ``p kappa n`` with ``kappa = mu_4**2 / mu_6 = 0.6`` (THEORY §5.1):

    >>> import fastsuper as fs
    >>> fit = fs.fit_exact(3, 3, m=3, p=0.01, restarts=1)
    >>> round(fit.gain / (0.01 * 0.6 * 3), 9)
    1.0
    """
    problem = _problem(n, d, m, p, values, importance, bias, groups)
    search = _search(problem, restarts, seed, maxiter, tol, init_norm, W0)
    progress = progress_enabled(progress, func=_FUNC)
    inputs = problem.inputs()
    imp = inputs.importance
    scale = problem.law.moment(2) * math.fsum((imp * inputs.p).tolist())  # L0
    starts = _starts(problem, search, inputs)
    evaluator = ExactEvaluator(inputs, problem.d, problem.m, bias=problem.bias, kernel="rows")
    runs = []
    # BLAS stays on one thread for the whole fit when A = W^T W is small: no BLAS thread
    # spins beside Numba's kernels and the optimiser between evaluations
    blas = single_thread_if_small(float(problem.n) * problem.n * problem.d)
    with blas, progress_bar(len(starts), _FUNC, unit="starts", enabled=progress) as bar:
        for label, W_start in starts:
            b_start = np.zeros(problem.n) if problem.bias else None
            show = _StartProgress(bar, label, max((r.gain for r in runs), default=-math.inf))
            runs.append(
                maximise_gain(
                    W_start,
                    b_start,
                    inputs,
                    problem.m,
                    scale,
                    search.maxiter,
                    search.tol,
                    on_iteration=show if progress else None,
                    evaluator=evaluator,
                )  # fmt: skip
            )
            bar.update()
    return _result(problem, search, inputs, scale, starts, runs)


class _StartProgress:
    """The postfix of :func:`fit_exact`'s bar during one start: its iteration and gains."""

    def __init__(self, bar, label: str, best: float):
        self.bar, self.label, self.best = bar, label, best
        self.throttle = Throttle()

    def __call__(self, iteration: int, gain: float) -> None:
        if self.throttle():
            best = max(self.best, gain)
            self.bar.set_postfix_str(
                f"start {self.label!r}: iteration {iteration}, gain {gain:.8g} (best {best:.8g})"
            )
