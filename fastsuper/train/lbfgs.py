"""Deterministic optimisation of the exact population gain (THEORY §3, §5).

:func:`fit_exact` maximises the exact gain ``L~`` (equivalently minimises
the exact loss ``L = E sum_j I_j x_j**2 - L~``) of the ``power`` model
``x_hat = (W.T @ W @ x + b)**m`` over ``W`` (and ``b``) with L-BFGS-B and
the exact gradient of :func:`fastsuper.exact.api.exact_gain_grad` -- no
sampling, so the result and its gain are reproducible to round-off.

Starts: the unsuperposed optimum of THEORY §5.1 (``min(n, d)`` orthogonal
columns with ``A_ii**m = mu_{m+1} / mu_{2m}``, the rest zero; for symmetric
value laws a stationary point, so it ends where it starts and guarantees the
unsuperposed gain ``p kappa min(n, d)``), ``restarts`` seeded random frames
with the best common norm of THEORY §5.3, and ``W0`` when given.  The best
end point is returned as an :class:`ExactFit`.

Scaling.  The gain is of order ``p``, so L-BFGS-B, whose stopping test on
the objective is ``(f_k - f_{k+1}) / max(|f_k|, |f_{k+1}|, 1) <= ftol``, would
stop at once on the raw values at small ``p``.  The objective handed to it
is therefore ``f = -L~ / L0`` with ``L0 = E sum_j I_j x_j**2 = mu_2 sum_j I_j
p_j`` (the loss of ``W = 0``): ``f = L / L0 - 1`` lies in ``[-1, 0]`` for
every ``p`` and ``n``, and ``ftol = gtol = tol`` apply to it.
"""

from __future__ import annotations

import json
import math
import numbers
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fastsuper.analysis import random_frame, random_frame_norm
from fastsuper.core import validation as v
from fastsuper.core.laws import SparseInputs, ValueLaw
from fastsuper.core.model import Model
from fastsuper.exact.api import exact_gain, exact_gain_grad, exact_loss_and_gain

__all__ = ["ExactFit", "fit_exact"]

_FUNC = "fit_exact"
_LAW_NAMES = ("gaussian", "rademacher", "uniform_sym", "uniform", "constant")


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

    # ------------------------------------------------------------ views
    def model(self) -> Model:
        """The fitted :class:`fastsuper.Model` (``activation="power"``, exponent ``m``)."""
        return Model(self.W, self.b, activation="power", exponent=self.m)

    def inputs(self) -> SparseInputs:
        """The :class:`fastsuper.SparseInputs` the fit was made for."""
        return SparseInputs(self.n, p=self.p, values=self.law, importance=self.importance)

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
            "values": _law_spec(self.law),
            "importance": imp,
            "bias": self.bias,
            "restarts": self.restarts,
            "seed": self.seed,
            "maxiter": self.maxiter,
            "tol": self.tol,
            "init_norm": self.init_norm,
        }

    def __repr__(self) -> str:
        p = f"{self.p:g}" if isinstance(self.p, float) else "<per feature>"
        return (
            f"ExactFit(n={self.n}, d={self.d}, m={self.m}, p={p}, values={self.law!r}, "
            f"bias={self.bias}, gain={self.gain:.10g}, loss={self.loss:.10g}, "
            f"best={self.starts[self.best]!r} of {len(self.starts)} starts)"
        )

    # ------------------------------------------------------------ files
    def save(self, path) -> Path:
        """Write the result to an ``.npz`` file (no pickles); returns the path written.

        The suffix ``.npz`` is added when ``path`` lacks it (as ``numpy.savez``
        does).  Read it back with :meth:`ExactFit.load`.
        """
        if not isinstance(path, (str, Path)):
            raise TypeError(f"ExactFit.save: path must be a str or pathlib.Path, got {path!r}")
        path = Path(path)
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
        if not isinstance(path, (str, Path)):
            raise TypeError(f"ExactFit.load: path must be a str or pathlib.Path, got {path!r}")
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
                law=_law_from_spec(s["values"]),
                importance=importance,
                bias=bool(s["bias"]),
                restarts=int(s["restarts"]),
                seed=int(s["seed"]),
                maxiter=int(s["maxiter"]),
                tol=float(s["tol"]),
                init_norm=None if s["init_norm"] is None else float(s["init_norm"]),
                scale=float(meta["scale"]),
            )


def _law_spec(law: ValueLaw):
    if law.name == "discrete":
        return {"name": "discrete", "support": law.support.tolist(), "probs": law.probs.tolist()}
    return law.name


def _law_from_spec(spec) -> ValueLaw:
    if isinstance(spec, str):
        return ValueLaw(spec)
    return ValueLaw("discrete", support=spec["support"], probs=spec["probs"])


# --------------------------------------------------------------------------
# argument checks (every message names the argument and what is allowed)


def _int(name: str, value, minimum: int, what: str = "") -> int:
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if not ok and isinstance(value, float) and value.is_integer():
        value, ok = int(value), True
    if not ok:
        raise TypeError(f"{_FUNC}: {name} must be an integer >= {minimum}{what}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{_FUNC}: {name} must be an integer >= {minimum}{what}, got {value}")
    return int(value)


def _positive(name: str, value, allow_none: bool = False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{_FUNC}: {name} must be a positive real number, got {value!r}")
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{_FUNC}: {name} must be a finite number > 0, got {value}")
    return value


def _probability(p, n: int):
    if isinstance(p, bool) or p is None or isinstance(p, str):
        raise TypeError(
            f"{_FUNC}: p must be a probability in (0, 1] or an array of n = {n} of them, got {p!r}"
        )
    try:
        arr = v.check_probabilities("p", p, n)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{_FUNC}: {exc}; p must lie in (0, 1]") from None
    if np.any(arr <= 0):
        i = int(np.argmax(arr <= 0))
        raise ValueError(
            f"{_FUNC}: p must lie in (0, 1] (the gain vanishes at p = 0); p[{i}] = {arr[i]}"
        )
    scalar = np.ndim(p) == 0
    return (float(arr[0]) if scalar else arr), arr


def _values(values) -> ValueLaw:
    if isinstance(values, ValueLaw):
        law = values
    elif isinstance(values, str) and values in _LAW_NAMES:
        law = ValueLaw(values)
    else:
        raise ValueError(
            f"{_FUNC}: values must be one of {list(_LAW_NAMES)} or a fastsuper.ValueLaw "
            f"(e.g. ValueLaw('discrete', support=..., probs=...)), got {values!r}"
        )
    if law.moment(2) <= 0:
        raise ValueError(f"{_FUNC}: values {law!r} is almost surely 0; nothing to reconstruct")
    return law


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


# --------------------------------------------------------------------------
# the optimisation


def _minimise(W_start, b_start, inputs, m, scale, maxiter, tol):
    """One L-BFGS-B run from ``(W_start, b_start)``; returns (W, b, gain, nit, nfev, ok, hist)."""
    from scipy.optimize import minimize

    d, n = W_start.shape
    fit_bias = b_start is not None
    nw = d * n
    last = {}  # the last point evaluated (L-BFGS-B's callback reports it)
    best = {"x": None, "gain": -math.inf}  # the best point evaluated

    def unpack(x):
        W = x[:nw].reshape(d, n)
        b = x[nw:] if fit_bias else None
        return W, b

    def objective(x):
        W, b = unpack(x)
        if not np.all(np.isfinite(x)):  # a trial step beyond the float64 range
            last.update(x=x.copy(), gain=-math.inf)
            return math.inf, np.zeros_like(x)
        try:
            gain, dW, db = exact_gain_grad(
                Model(W, b, activation="power", exponent=m), inputs, wrt_bias=fit_bias
            )
        except FloatingPointError:  # a trial step so long that moments overflow float64
            last.update(x=x.copy(), gain=-math.inf)
            return math.inf, np.zeros_like(x)
        grad = -dW.ravel() if not fit_bias else -np.concatenate([dW.ravel(), db])
        last.update(x=x.copy(), gain=gain)
        if gain > best["gain"]:
            best.update(x=last["x"], gain=gain)
        return -gain / scale, grad / scale

    history = []

    def callback(xk):
        if "x" in last and np.array_equal(last["x"], xk):
            history.append(last["gain"])
        else:  # pragma: no cover - L-BFGS-B reports its last evaluated point
            history.append(-objective(xk)[0] * scale)

    x0 = W_start.ravel() if not fit_bias else np.concatenate([W_start.ravel(), b_start])
    x0 = np.array(x0, dtype=np.float64)
    f0 = objective(x0)[0]
    if not math.isfinite(f0):
        return W_start.copy(), b_start, -math.inf, 0, 1, False, np.array([-math.inf])
    history.append(-f0 * scale)
    res = minimize(
        objective,
        x0,
        jac=True,
        method="L-BFGS-B",
        callback=callback,
        options={
            "maxiter": maxiter,
            "maxfun": 10 * maxiter + 100,
            "ftol": tol,
            "gtol": tol,
            "maxcor": 20,
        },
    )
    x = np.array(res.x, dtype=np.float64)
    ok = bool(res.success) and int(res.nit) < maxiter and math.isfinite(res.fun)
    gain = -math.inf
    if math.isfinite(res.fun):  # the exact gain at the end point, not -f * scale
        W, b = unpack(x)
        gain = exact_gain(Model(W, b, activation="power", exponent=m), inputs)
    if best["gain"] > gain:  # a trial point beat the last iterate (e.g. an abnormal stop)
        x, gain = best["x"], best["gain"]
        history.append(gain)
    W, b = unpack(x)
    W, b = W.copy(), (None if b is None else b.copy())
    return W, b, gain, int(res.nit), int(res.nfev), ok, np.array(history, dtype=np.float64)


def fit_exact(
    n,
    d,
    *,
    m=3,
    p,
    values="gaussian",
    importance=None,
    bias=False,
    restarts=4,
    seed=0,
    maxiter=2000,
    W0=None,
    tol=1e-12,
    init_norm=None,
) -> ExactFit:
    """Maximise the exact gain of the ``power`` model with L-BFGS-B (THEORY §3, §5).

    Deterministic optimisation of the population gain
    ``L~ = E sum_j I_j x_j**2 - L`` (equivalently of the loss ``L``) of
    ``x_hat = (W.T @ W @ x + b)**m`` under independent Bernoulli(``p``)
    features, with :func:`scipy.optimize.minimize` (``method="L-BFGS-B"``,
    ``jac=True``) on the exact value and gradient of
    :func:`fastsuper.exact.api.exact_gain_grad`.  Each evaluation costs
    ``O(n**2 (d + m))``.

    Starts, each run to convergence: ``W0`` (if given); the unsuperposed
    optimum of THEORY §5.1 (the ``min(n, d)`` features with the largest
    ``I_i p_i`` on orthogonal axes with ``A_ii**m = mu_{m+1} / mu_{2m}``, the
    others zero -- for symmetric value laws and no bias this is a stationary
    point, kept as it is, so the result is never below ``p kappa min(n, d)``);
    then ``restarts`` random frames (uniform random directions, stream
    ``numpy.random.default_rng([seed, k])``) with the best common norm of
    THEORY §5.3, ``c**m = mu_{m+1} / (mu_{2m} (1 + (n-1)/D(d, m)))`` and
    column norm ``sqrt(c)``, or ``init_norm``.  The bias starts at 0.  The
    start with the largest final gain is returned.

    L-BFGS-B minimises the rescaled objective ``-L~ / L0`` with
    ``L0 = E sum_j I_j x_j**2 = mu_2 sum_j I_j p_j`` (the loss of ``W = 0``),
    so that its tolerances mean the same at every ``p`` (the raw gain is of
    order ``p``); ``ftol = gtol = tol`` refer to this scaled objective.

    Parameters
    ----------
    n, d : int
        Number of features and hidden dimension (integers ``>= 1``).
    m : int, default 3
        Exponent of ``phi(t) = t**m`` (integer ``>= 1``; the paper takes it
        odd, ``m = 1`` is the linear model).
    p : float or array_like of shape (n,)
        Feature probability in ``(0, 1]``, one for all or one per feature.
    values : str or ValueLaw, default "gaussian"
        Law of an active feature's value: ``"gaussian"``, ``"rademacher"``,
        ``"uniform_sym"``, ``"uniform"``, ``"constant"`` or a ValueLaw.
    importance : array_like of shape (n,), optional
        Positive loss weights ``I_j`` (default 1).
    bias : bool, default False
        Also fit the output bias ``b`` (the paper has none).
    restarts : int, default 4
        Number of random-frame starts (``>= 0``).
    seed : int, default 0
        Seed of the random starts (``>= 0``).
    maxiter : int, default 2000
        Most L-BFGS-B iterations per start.
    W0 : array_like of shape (d, n), optional
        An extra start, tried first.
    tol : float, default 1e-12
        ``ftol`` and ``gtol`` of L-BFGS-B on the scaled objective.
    init_norm : float, optional
        Common column norm of the random starts instead of THEORY §5.3's.

    Returns
    -------
    ExactFit
        Best ``W`` (and ``b``), its exact gain and loss, every start's final
        gain, iterations and evaluations, the best start's gain history and
        the settings; ``.model()`` gives the fitted Model, ``.save(path)``
        and ``ExactFit.load(path)`` an ``.npz`` round trip.

    Raises
    ------
    TypeError, ValueError
        On a bad argument (the message names it and the allowed values).
    FloatingPointError
        If ``W0`` is so large that the moments of its gain overflow float64.

    See Also
    --------
    fastsuper.exact.api.exact_gain_grad : the value and gradient optimised.
    fastsuper.analysis.first_order_cap : the first-order cap ``kappa min(n, D)``.

    Examples
    --------
    Without superposition room (``n <= d``) the optimum is the unsuperposed
    one, ``p kappa n`` with ``kappa = mu_4**2 / mu_6 = 0.6`` (THEORY §5.1):

    >>> from fastsuper.train.lbfgs import fit_exact
    >>> fit = fit_exact(3, 3, m=3, p=0.01, restarts=1)
    >>> round(fit.gain / (0.01 * 0.6 * 3), 9)
    1.0
    >>> fit.model()
    Model(d=3, n=3, activation='power', exponent=3, bias=no, dtype=float64)
    """
    n = _int("n", n, 1, " (number of features)")
    d = _int("d", d, 1, " (hidden dimension)")
    m = _int("m", m, 1, " (the power activation's exponent)")
    p_given, p_arr = _probability(p, n)
    law = _values(values)
    if importance is not None:
        try:
            importance = v.as_float_array(
                "importance", importance, ndim=1, dtype=np.float64, shape=(n,)
            )
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{_FUNC}: {exc}") from None
        if np.any(importance <= 0):
            i = int(np.argmax(importance <= 0))
            raise ValueError(f"{_FUNC}: importance must be > 0; importance[{i}] = {importance[i]}")
        importance = importance.copy()
    if not isinstance(bias, (bool, np.bool_)):
        raise TypeError(f"{_FUNC}: bias must be True or False, got {bias!r}")
    bias = bool(bias)
    restarts = _int("restarts", restarts, 0, " (number of random starts)")
    seed = _int("seed", seed, 0)
    maxiter = _int("maxiter", maxiter, 1)
    tol = _positive("tol", tol)
    init_norm = _positive("init_norm", init_norm, allow_none=True)
    if W0 is not None:
        try:
            W0 = v.as_float_array("W0", W0, ndim=2, dtype=np.float64, shape=(d, n))
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{_FUNC}: {exc} (W0 must have shape (d, n) = ({d}, {n}))") from None

    inputs = SparseInputs(n, p=p_arr, values=law, importance=importance)
    imp = inputs.importance
    scale = law.moment(2) * math.fsum((imp * p_arr).tolist())  # L0 = E sum_j I_j x_j**2

    starts = []
    if W0 is not None:
        starts.append(("W0", W0.copy()))
    starts.append(("unsuperposed", _unsuperposed(n, d, m, law, imp * p_arr)))
    norm = init_norm if init_norm is not None else random_frame_norm(n, d, m, law)
    for k in range(restarts):
        starts.append((f"random {k}", random_frame(n, d, norm, [seed, k])))

    if W0 is not None:  # a clear error now rather than a silently failed start
        try:
            exact_loss_and_gain(Model(W0, activation="power", exponent=m), inputs)
        except FloatingPointError as exc:
            raise FloatingPointError(f"{_FUNC}: W0 cannot be a start: {exc}") from None
    runs = []
    for _, W_start in starts:
        runs.append(
            _minimise(W_start, np.zeros(n) if bias else None, inputs, m, scale, maxiter, tol)
        )
    gains = np.array([r[2] for r in runs])
    best = int(np.argmax(gains))
    W, b, _, _, _, _, history = runs[best]
    loss, gain = exact_loss_and_gain(Model(W, b, activation="power", exponent=m), inputs)
    return ExactFit(
        W=W,
        b=b,
        gain=float(gain),
        loss=float(loss),
        gains=gains,
        nit=np.array([r[3] for r in runs], dtype=np.int64),
        nfev=np.array([r[4] for r in runs], dtype=np.int64),
        converged=np.array([r[5] for r in runs], dtype=bool),
        starts=tuple(s[0] for s in starts),
        best=best,
        history=history,
        n=n,
        d=d,
        m=m,
        p=p_given,
        law=law,
        importance=importance,
        bias=bias,
        restarts=restarts,
        seed=seed,
        maxiter=maxiter,
        tol=tol,
        init_norm=init_norm,
        scale=scale,
    )
