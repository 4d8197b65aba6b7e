"""``fastsuper reproduce activations``: the best loss of each output activation against ``p``.

At fixed ``n`` and ``d`` (default ``n = 100``, ``d = 10``, Elhage et al.'s
``U[0, 1]`` values, importance 1, a trained bias) and a log grid of ``p``,
each activation of :data:`ACTIVATIONS` is trained with Adam
(:func:`fastsuper.fit`): ``restarts`` instances per ``p``, all grid points
and restarts as the instances of one call.  Every trained model's loss is
then estimated by the stratified estimator (exact ``k <= 1`` terms plus
sampled ``k >= 2``, THEORY §4) and the best restart kept.  For reference:

* the optimum of the ``power`` family with exponent ``m`` (default 3, with a
  bias) found by L-BFGS on the closed-form loss (:func:`fastsuper.fit` with
  ``method="exact"``, THEORY §3; one start, a local optimum);
* the unsuperposed baseline: ``d`` features reconstructed exactly and the
  rest dropped, gain ``d p mu_2`` (loss ``(n - d) p mu_2``).

The gain ``n p mu_2 - loss`` (a sum over features) is plotted against ``p``
on log axes.  Each finished activation (or reference) is appended to
``activations.csv`` at once, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np

from fastsuper.analysis import axes_for, save_png
from fastsuper.core.activations import DEFAULT_PARAMS
from fastsuper.core.laws import ValueLaw
from fastsuper.core.progress import progress_bar, progress_enabled

__all__ = ["ACTIVATIONS", "activations", "activations_settings", "plot_activations"]

#: the activations compared (with their default parameters)
ACTIVATIONS = (
    "relu",
    "gelu",
    "gelu_tanh",
    "silu",
    "softplus",
    "leaky_relu",
    "tanh",
    "sigmoid",
    "identity",
)
_FIELDS = ("name", "p", "loss", "stderr", "gain", "restart", "seconds")


def activations_settings(quick: bool = False) -> dict:
    """The settings of :func:`activations`: the full comparison or a small, quick one.

    Parameters
    ----------
    quick : bool, default False
        ``n = 40``, ``d = 5``, 4 values of ``p``, 2 restarts, 300 Adam steps.

    Returns
    -------
    dict
        ``n, d, ps, restarts, steps, batch_size, lr, eval_samples, m, values, seed``.
    """
    if quick:
        return dict(n=40, d=5, ps=[0.003, 0.02, 0.1, 0.4], restarts=2, steps=300,
                    batch_size=256, lr=1e-2, eval_samples=5_000, m=3, values="uniform",
                    seed=0)  # fmt: skip
    return dict(n=100, d=10, ps=[0.001, 0.003, 0.01, 0.03, 0.1, 0.3], restarts=2, steps=1000,
                batch_size=256, lr=1e-2, eval_samples=20_000, m=3, values="uniform",
                seed=0)  # fmt: skip


def _read(path: Path) -> dict:
    """Finished rows of ``activations.csv`` by name (an activation or a reference)."""
    done: dict = {}
    if path.exists():
        with open(path, newline="") as fh:
            for row in csv.DictReader(fh):
                done.setdefault(row["name"], []).append(row)
    return done


def _write(path: Path, rows: list) -> None:
    new = not path.exists()
    with open(path, "a", newline="") as fh:
        w = csv.DictWriter(fh, _FIELDS)
        if new:
            w.writeheader()
        w.writerows(rows)


def _trained(name: str, s: dict) -> list:
    """Rows of one activation: Adam on every ``p`` and restart at once, best restart kept."""
    from fastsuper.mc.stratified import stratified_estimate
    from fastsuper.train.adam import fit

    t0 = time.perf_counter()
    ps = np.repeat(np.asarray(s["ps"], dtype=np.float64), s["restarts"])
    res = fit(s["n"], s["d"], n_instances=ps.size, p=ps, activation=name,
              param=DEFAULT_PARAMS.get(name), values=s["values"], steps=s["steps"],
              batch_size=s["batch_size"], lr=s["lr"], seed=s["seed"], log_every=s["steps"],
              progress=False)  # fmt: skip
    mu2 = ValueLaw(s["values"]).moment(2)
    rows = []
    for q, p in enumerate(s["ps"]):
        best = None
        for r in range(s["restarts"]):
            k = q * s["restarts"] + r
            est = stratified_estimate(res.model(k), res.inputs(k), s["eval_samples"], seed=1)
            if best is None or est.mean < best[0].mean:
                best = (est, r)
        est, r = best
        rows.append(dict(name=name, p=p, loss=est.mean, stderr=est.stderr,
                         gain=s["n"] * p * mu2 - est.mean, restart=r, seconds=0.0))  # fmt: skip
    for row in rows:
        row["seconds"] = (time.perf_counter() - t0) / len(rows)
    return rows


def _power_optimum(s: dict) -> list:
    """Rows of the exact optimum of ``power`` with exponent ``m`` (L-BFGS, closed form)."""
    from fastsuper.train.lbfgs import fit_exact

    rows = []
    mu2 = ValueLaw(s["values"]).moment(2)
    for p in s["ps"]:
        t0 = time.perf_counter()
        res = fit_exact(s["n"], s["d"], m=s["m"], p=p, values=s["values"], bias=True,
                        restarts=1, seed=s["seed"], maxiter=s.get("maxiter", 200))  # fmt: skip
        rows.append(dict(name=f"power{s['m']}_exact", p=p, loss=res.loss, stderr=0.0,
                         gain=s["n"] * p * mu2 - res.loss, restart=-1,
                         seconds=time.perf_counter() - t0))  # fmt: skip
    return rows


def _baseline(s: dict) -> list:
    """Rows of the unsuperposed baseline: gain ``d p mu_2``."""
    mu2 = ValueLaw(s["values"]).moment(2)
    n, d = s["n"], s["d"]
    return [dict(name="unsuperposed", p=p, loss=(n - d) * p * mu2, stderr=0.0,
                 gain=d * p * mu2, restart=-1, seconds=0.0) for p in s["ps"]]  # fmt: skip


def activations(
    out,
    *,
    quick: bool = False,
    resume: bool = True,
    progress: bool | None = None,
    settings: dict | None = None,
) -> dict:
    """Compare the best trained loss of every activation over a grid of ``p``.

    Parameters
    ----------
    out : str or pathlib.Path
        Output folder (created): ``activations.csv`` (one row per name and
        ``p``, appended as each activation finishes), ``activations.json``
        (the settings, the curves, the verdict and the run time) and
        ``activations.png``.
    quick : bool, default False
        The small version of :func:`activations_settings`.
    resume : bool, default True
        Reuse the activations already in ``out`` (an interrupted run goes on).
    progress : bool, optional
        A progress bar on stderr (default: when stderr is a terminal).
    settings : dict, optional
        Override :func:`activations_settings` (``names`` picks the activations).

    Returns
    -------
    dict
        ``settings``, ``curves`` (per name: ``p``, ``loss``, ``stderr``,
        ``gain``), ``passed`` and ``verdict`` (every loss finite, and ReLU's
        trained loss more than 5 standard errors below the unsuperposed
        baseline's at the smallest ``p``: superposition pays; the line names
        every activation for which it does) and ``seconds``.

    Examples
    --------
    >>> import tempfile
    >>> from fastsuper.apps.reproduce_activations import activations
    >>> tiny = dict(n=8, d=2, ps=[0.05, 0.3], restarts=1, steps=20, eval_samples=500,
    ...             names=["relu", "gelu"])
    >>> res = activations(tempfile.mkdtemp(), quick=True, settings=tiny, progress=False)
    >>> sorted(res["curves"])
    ['gelu', 'power3_exact', 'relu', 'unsuperposed']
    """
    s = dict(activations_settings(quick))
    s.update(settings or {})
    names = list(s.pop("names", ACTIVATIONS))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "activations.csv"
    if not resume and path.exists():
        path.unlink()
    done = _read(path)
    t0 = time.perf_counter()
    jobs = [(n, lambda n=n: _trained(n, s)) for n in names]
    jobs += [(f"power{s['m']}_exact", lambda: _power_optimum(s)), ("unsuperposed",
             lambda: _baseline(s))]  # fmt: skip
    with progress_bar(len(jobs), "activations", unit="curves",
                      enabled=progress_enabled(progress)) as bar:  # fmt: skip
        for name, job in jobs:
            if name not in done:
                rows = job()
                _write(path, rows)
                done[name] = rows
            bar.update(1)
    curves = {
        name: {k: [float(r[k]) for r in rows] for k in ("p", "loss", "stderr", "gain")}
        for name, rows in done.items()
    }
    result = dict(settings=s, names=names, curves=curves, seconds=time.perf_counter() - t0)
    result["passed"], result["verdict"] = _verdict(result)
    with open(out / "activations.json", "w") as fh:
        json.dump(result, fh, indent=1)
    plot_activations(result, out / "activations.png")
    return result


def _verdict(result: dict) -> tuple[bool, str]:
    """PASS when every loss is finite and ReLU beats the unsuperposed loss at the smallest ``p``.

    The line also names the activations whose trained loss is below the unsuperposed
    baseline's at the smallest ``p`` (by more than 5 standard errors).
    """
    curves = result["curves"]
    base = curves["unsuperposed"]["loss"][0]
    finite = all(np.isfinite(c["loss"]).all() for c in curves.values())
    below = [
        n for n in result["names"] if curves[n]["loss"][0] < base - 5 * curves[n]["stderr"][0]
    ]  # fmt: skip
    relu_ok = "relu" not in curves or "relu" in below
    ok = finite and relu_ok
    return ok, (
        ("PASS" if ok else "FAIL")
        + ": every loss finite and ReLU below the unsuperposed baseline at the smallest p "
        + f"(criterion); below it there: {', '.join(below) or 'none'}"
    )


def plot_activations(result: dict, path=None, *, ax=None):
    """Plot an :func:`activations` result: gain against ``p`` on log axes, one line per name.

    Points where the gain is not positive (the model does worse than
    ``x_hat = 0``) are left out; their curve's label says so.

    Parameters
    ----------
    result : dict
        What :func:`activations` returns (or ``activations.json`` holds).
    path : str or pathlib.Path, optional
        Write the figure to this PNG file.
    ax : matplotlib.axes.Axes, optional
        Draw here (default: a new figure).

    Returns
    -------
    matplotlib.axes.Axes
        The Axes drawn on.
    """
    ax, path = axes_for(ax, path, (7.5, 5.5), func="plot_activations")
    for name, c in result["curves"].items():
        gain = np.array(c["gain"], dtype=np.float64)
        label = name if (gain > 0).all() else f"{name} (gain <= 0 not drawn)"
        gain[gain <= 0] = np.nan  # no logarithm
        style = "--" if name == "unsuperposed" else (":" if name.endswith("_exact") else "o-")
        ax.plot(c["p"], gain, style, ms=4, label=label)
    s = result["settings"]
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("p")
    ax.set_ylabel("gain $n p \\mu_2 - L$ (best trained, sum over features)")
    ax.set_title(f"n = {s['n']}, d = {s['d']}, {s['values']} values, bias trained")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    save_png(ax.figure, path, dpi=90)
    return ax
