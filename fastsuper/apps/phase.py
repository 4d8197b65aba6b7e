"""Elhage et al.'s phase diagrams, trained and exact: ``fastsuper reproduce phase-diagram``.

:func:`phase_diagram` draws the ``n = 2 -> d = 1`` and ``n = 3 -> d = 2``
diagrams over the feature probability ``p`` (every feature) and the relative
importance ``r`` of the last feature (the others have importance 1): ReLU
with bias, U[0,1] values (THEORY §6, §9).  For each cell

* **trained**: ``restarts`` instances trained with :func:`fastsuper.fit`
  (Adam; every cell of a row of ``p`` and every restart in one call, many
  instances at once); every restart is first trained ``screen_steps`` steps,
  then per cell only ``keep`` of them -- the best of each regime found, then
  the next best, by exact loss -- go on to ``steps`` (most restarts fall into
  the same basin early, so this costs about half of training all of them to
  the end); the winner is the restart of lowest *exact* loss
  (:func:`fastsuper.exact.patterns.pattern_loss`);
* **exact**: the optimum of the exact loss by L-BFGS with restarts
  (:func:`fastsuper.train.patterns.fit_pattern_exact`), started also from the
  exact optimum of the cell to its left (a continuation along ``r``);
* the **regime** of each, from its ``W`` alone (:func:`regime`): the last
  feature is *not represented* (``|w_n| < norm_min``), has a *dedicated*
  dimension (it forms a tegum factor on its own: ``|w_n_hat . w_j|`` and
  ``|w_j_hat . w_n|`` at most ``eps`` for every represented ``j``) or is
  *superposed* (it shares a factor); thresholds ``norm_min = 0.3`` and
  ``eps = 0.1`` (:func:`fastsuper.geometry.tegum_factors`);
* where the two regimes differ, the **loss gap** ``L(trained) - L(exact)``
  (both exact population losses, sums over features): positive where the
  exact optimum is the better one (training stuck or not converged), negative
  where training found a better optimum than the L-BFGS starts.

The figure shows the trained regimes as coloured cells, the exact optimum's
regime boundary as black cell edges, disagreeing cells crossed, and on the
``2 -> 1`` diagram the closed-form boundary of THEORY §9 (dedicated against
antipodal: ``p = 4r / (2 + 5r)`` for ``r <= 1``, ``4 / (2r + 5)`` above).

Every finished row of cells is appended to ``phase_diagram.csv`` at once, so
an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np

from fastsuper.analysis import axes_for, save_png
from fastsuper.core.laws import SparseInputs
from fastsuper.core.model import Model
from fastsuper.core.progress import progress_bar, progress_enabled
from fastsuper.exact.patterns import pattern_loss
from fastsuper.geometry import tegum_factors
from fastsuper.train.adam import fit
from fastsuper.train.patterns import fit_pattern_exact

__all__ = [
    "REGIMES",
    "phase_diagram",
    "phase_diagram_settings",
    "plot_phase_diagram",
    "regime",
    "theory_boundary",
]

#: the regimes of the last feature, in the order of their colour codes
REGIMES = ("not represented", "dedicated", "superposed")

#: the diagrams: name -> (n, d)
DIAGRAMS = {"2-1": (2, 1), "3-2": (3, 2)}

_CSV_FIELDS = (
    "diagram", "n", "d", "ip", "ir", "p", "r", "regime_trained", "regime_exact",
    "loss_trained", "loss_exact", "gap", "disagree", "W_trained", "b_trained", "W_exact",
    "b_exact", "restart_losses", "seconds",
)  # fmt: skip


def phase_diagram_settings(quick: bool = False) -> dict:
    """The settings of :func:`phase_diagram` (``quick``: a coarse grid, short training).

    Examples
    --------
    >>> from fastsuper.apps.phase import phase_diagram_settings
    >>> s = phase_diagram_settings()
    >>> s["n_p"], s["n_r"], s["restarts"], s["steps"]
    (16, 16, 8, 4000)
    """
    s = {
        "diagrams": ("2-1", "3-2"),
        "n_p": 16,
        "n_r": 16,
        "p_range": (0.01, 1.0),
        "r_range": (0.1, 10.0),
        "restarts": 8,
        "steps": 4000,
        "screen_steps": 1000,
        "keep": 3,
        "batch_size": 1024,
        "lr": 1e-2,
        "exact_restarts": 6,
        "seed": 0,
        "norm_min": 0.3,
        "eps": 0.1,
    }
    if quick:
        s.update(n_p=6, n_r=6, restarts=3, steps=800, batch_size=256, exact_restarts=3)
    return s


def regime(W, *, norm_min: float = 0.3, eps: float = 0.1) -> str:
    """The regime of the last feature of ``W`` (d, n): one of :data:`REGIMES`.

    Parameters
    ----------
    W : array_like of shape (d, n)
    norm_min, eps : float
        A feature is represented when ``|w_i| >= norm_min``; two represented
        features interfere when ``max(|w_i_hat . w_j|, |w_j_hat . w_i|) > eps``.

    Returns
    -------
    str
        ``"not represented"``, ``"dedicated"`` (a tegum factor of its own) or
        ``"superposed"``.

    Examples
    --------
    >>> from fastsuper.apps.phase import regime
    >>> regime([[1.0, 0.01]]), regime([[0.0, 1.0]]), regime([[0.9, -1.0]])
    ('not represented', 'dedicated', 'superposed')
    """
    W = np.asarray(W, dtype=np.float64)
    last = W.shape[1] - 1
    for f in tegum_factors(W, eps=eps, norm_min=norm_min):
        if last in f:
            return "dedicated" if f.size == 1 else "superposed"
    return "not represented"


def theory_boundary(r):
    """THEORY §9's closed-form boundary of the ``2 -> 1`` diagram: the ``p`` below which the
    antipodal pair ``(1 + r) p**2 / 6`` beats the dedicated solution.

    Examples
    --------
    >>> from fastsuper.apps.phase import theory_boundary
    >>> theory_boundary([0.5, 1.0, 2.0]).round(4).tolist()
    [0.4444, 0.5714, 0.4444]
    """
    r = np.asarray(r, dtype=np.float64)
    return np.where(r <= 1.0, 4 * r / (2 + 5 * r), 4 / (2 * r + 5))


# --------------------------------------------------------------------------
# the run


def _grid(s: dict) -> tuple[np.ndarray, np.ndarray]:
    return np.geomspace(*s["p_range"], s["n_p"]), np.geomspace(*s["r_range"], s["n_r"])


def _fmt(a) -> str:
    return " ".join(repr(float(x)) for x in np.ravel(a))


class _Store:
    """``phase_diagram.csv``: rows appended as they finish, read back to resume."""

    def __init__(self, out: Path, resume: bool, settings: dict):
        self.csv = out / "phase_diagram.csv"
        self.rows: dict = {}
        saved = out / "phase_settings.json"
        mine = json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()},
                          sort_keys=True)  # fmt: skip
        if not saved.exists() or saved.read_text() != mine:
            resume = False  # rows of other settings are not reused
        saved.write_text(mine)
        if resume and self.csv.exists():
            with open(self.csv, newline="") as fh:
                for row in csv.DictReader(fh):
                    self.rows[(row["diagram"], int(row["ip"]), int(row["ir"]))] = row
        elif self.csv.exists():
            self.csv.unlink()
        if not self.csv.exists():
            with open(self.csv, "w", newline="") as fh:
                csv.DictWriter(fh, _CSV_FIELDS).writeheader()

    def put(self, rows: list) -> None:
        with open(self.csv, "a", newline="") as fh:
            w = csv.DictWriter(fh, _CSV_FIELDS)
            for row in rows:
                w.writerow(row)
                self.rows[(row["diagram"], row["ip"], row["ir"])] = row


def _importances(n: int, rs: np.ndarray) -> np.ndarray:
    imp = np.ones((rs.size, n))
    imp[:, -1] = rs
    return imp


def _exact_losses(n: int, p: float, imp: np.ndarray, W: np.ndarray, b: np.ndarray) -> list:
    """The exact loss of every instance ``W[k], b[k]`` (importances ``imp[k]``)."""
    return [
        pattern_loss(Model(W[k], b[k], activation="relu"),
                     SparseInputs(n, p=p, values="uniform", importance=imp[k]))
        for k in range(W.shape[0])
    ]  # fmt: skip


def _keep(losses: list, regimes: list, keep: int) -> list:
    """The restarts to train on: the best of each regime found, then the next best, ``keep``
    in all (indices, in order of loss)."""
    order = sorted(range(len(losses)), key=losses.__getitem__)
    first = [k for i, k in enumerate(order) if regimes[k] not in [regimes[j] for j in order[:i]]]
    rest = [k for k in order if k not in first]
    return sorted((first + rest)[:keep], key=losses.__getitem__)


def _train_row(s: dict, n: int, d: int, p: float, rs: np.ndarray, seed: int):
    """Every cell of one row of ``p`` and every restart in one :func:`fit` call; per cell the
    restart of lowest exact loss: ``(W, b, exact losses of every restart)``.

    With ``screen_steps`` (``< steps``), every restart is trained that many steps, and
    per cell only ``keep`` of them (the best of each regime, then the next best, by exact
    loss) go on to ``steps`` in a second call (with fresh samples: seed ``seed + 10**6``).
    """
    k, screen = s["restarts"], s.get("screen_steps") or s["steps"]
    imp = np.repeat(_importances(n, rs), k, axis=0)
    fargs = {"p": p, "batch_size": s["batch_size"], "lr": s["lr"], "progress": False}
    res = fit(n, d, n_instances=imp.shape[0], importance=imp, seed=seed,
              steps=min(screen, s["steps"]), **fargs)  # fmt: skip
    W, b = res.W.copy(), res.b.copy()
    losses = _exact_losses(n, p, imp, W, b)
    if screen < s["steps"]:
        th = {"norm_min": s["norm_min"], "eps": s["eps"]}
        regimes = [regime(w, **th) for w in W]
        go = [c * k + j for c in range(rs.size) for j in
              _keep(losses[c * k : c * k + k], regimes[c * k : c * k + k], s["keep"])]  # fmt: skip
        more = fit(n, d, n_instances=len(go), importance=imp[go], seed=seed + 10**6,
                   steps=s["steps"] - screen, W0=W[go], b0=b[go], **fargs)  # fmt: skip
        W[go], b[go] = more.W, more.b
        for i, loss in zip(go, _exact_losses(n, p, imp[go], more.W, more.b)):
            losses[i] = loss
    out = []
    for c in range(rs.size):
        j = c * k + int(np.argmin(losses[c * k : c * k + k]))
        out.append((W[j], b[j], losses[c * k : c * k + k]))
    return out


def _row_cells(s: dict, name: str, ip: int, p: float, rs: np.ndarray) -> list:
    n, d = DIAGRAMS[name]
    t0 = time.perf_counter()
    seed = s["seed"] + 1000 * list(DIAGRAMS).index(name) + ip
    trained = _train_row(s, n, d, p, rs, seed)
    rows, warm = [], None
    th = {"norm_min": s["norm_min"], "eps": s["eps"]}
    for ir, r in enumerate(rs):
        imp = _importances(n, rs[ir : ir + 1])[0]
        ex = fit_pattern_exact(n, d, p=p, importance=imp, restarts=s["exact_restarts"],
                               seed=s["seed"], starts=warm)  # fmt: skip
        warm = [(ex.W, ex.b)]
        W, b, losses = trained[ir]
        lt, rt, re_ = min(losses), regime(W, **th), regime(ex.W, **th)
        rows.append({
            "diagram": name, "n": n, "d": d, "ip": ip, "ir": ir, "p": float(p), "r": float(r),
            "regime_trained": rt, "regime_exact": re_, "loss_trained": lt,
            "loss_exact": ex.loss, "gap": lt - ex.loss, "disagree": int(rt != re_),
            "W_trained": _fmt(W), "b_trained": _fmt(b), "W_exact": _fmt(ex.W),
            "b_exact": _fmt(ex.b), "restart_losses": _fmt(losses), "seconds": 0.0,
        })  # fmt: skip
    per_cell = (time.perf_counter() - t0) / len(rows)
    for row in rows:
        row["seconds"] = per_cell
    return rows


def _near(cells: dict, ip: int, ir: int, want: str) -> bool:
    """Whether a cell within one step (8-neighbourhood) has the exact regime ``want``."""
    for a in (-1, 0, 1):
        for c in (-1, 0, 1):
            row = cells.get((ip + a, ir + c))
            if row is not None and row["regime_exact"] == want:
                return True
    return False


def _summary(s: dict, store: _Store, seconds: float) -> dict:
    out = {"settings": {k: list(v) if isinstance(v, tuple) else v for k, v in s.items()},
           "seconds": seconds, "diagrams": {}}  # fmt: skip
    for name in s["diagrams"]:
        cells = {(int(r["ip"]), int(r["ir"])): r for (nm, _, _), r in store.rows.items()
                 if nm == name}  # fmt: skip
        dis = []
        for (ip, ir), r in sorted(cells.items()):
            rt = r["regime_trained"]
            if rt != r["regime_exact"]:
                dis.append({"ip": ip, "ir": ir, "p": float(r["p"]), "r": float(r["r"]),
                            "trained": rt, "exact": r["regime_exact"], "gap": float(r["gap"]),
                            "within_one_cell": _near(cells, ip, ir, rt)})  # fmt: skip
        grid = np.full((s["n_p"], s["n_r"], 2), -1, dtype=int)
        for (ip, ir), r in cells.items():
            grid[ip, ir] = REGIMES.index(r["regime_trained"]), REGIMES.index(r["regime_exact"])
        far = [x for x in dis if not x["within_one_cell"]]
        out["diagrams"][name] = {
            "n": DIAGRAMS[name][0], "d": DIAGRAMS[name][1],
            "trained": grid[..., 0].tolist(), "exact": grid[..., 1].tolist(),
            "disagreements": dis, "n_disagree": len(dis), "n_far": len(far),
            "n_exact_better": sum(x["gap"] > 0 for x in dis),
        }  # fmt: skip
    return out


def phase_diagram(
    out, *, quick: bool = False, resume: bool = True, progress: bool | None = None,
    settings: dict | None = None,
) -> dict:  # fmt: skip
    """Elhage et al.'s ``2 -> 1`` and ``3 -> 2`` phase diagrams, trained beside the exact optima.

    Parameters
    ----------
    out : str or pathlib.Path
        Output folder (created): ``phase_diagram.csv`` (one row per cell:
        regimes, exact losses of the trained winner and of the exact optimum,
        their gap, both ``W`` and ``b``, the exact loss of every restart),
        ``phase_diagram.json`` (:func:`phase_diagram`'s result) and
        ``phase_diagram.png``.
    quick : bool, default False
        The coarse version of :func:`phase_diagram_settings`.
    resume : bool, default True
        Reuse the cells already in ``out`` (when they were computed with the same
        settings, recorded in ``phase_settings.json``).
    progress : bool, optional
        A progress bar over the cells (default: when stderr is a terminal).
    settings : dict, optional
        Override :func:`phase_diagram_settings`.

    Returns
    -------
    dict
        ``settings``, ``seconds`` and per diagram (``"2-1"``, ``"3-2"``): the
        regime codes (:data:`REGIMES`) of the trained and exact solutions per
        cell (``[ip][ir]``), the ``disagreements`` (cell, both regimes, the loss
        gap ``L(trained) - L(exact)``, whether the trained regime is the exact
        one within one cell), ``n_disagree``, ``n_far`` (disagreements farther
        than one cell from the exact boundary) and ``n_exact_better``.

    Examples
    --------
    >>> import tempfile
    >>> from fastsuper.apps.phase import phase_diagram
    >>> tiny = {"diagrams": ("2-1",), "n_p": 2, "n_r": 2, "restarts": 2, "steps": 200,
    ...         "batch_size": 128, "exact_restarts": 2}
    >>> res = phase_diagram(tempfile.mkdtemp(), settings=tiny, progress=False)
    >>> res["diagrams"]["2-1"]["exact"]  # rows: p = 0.01, 1; columns: r = 0.1, 10
    [[2, 2], [0, 1]]
    """
    s = dict(phase_diagram_settings(quick))
    if settings:
        s.update(settings)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    store = _Store(out, resume, s)
    ps, rs = _grid(s)
    t0 = time.perf_counter()
    total = len(s["diagrams"]) * ps.size * rs.size
    with progress_bar(total, "phase diagram", unit="cells",
                      enabled=progress_enabled(progress)) as bar:  # fmt: skip
        for name in s["diagrams"]:
            for ip, p in enumerate(ps):
                if all((name, ip, ir) in store.rows for ir in range(rs.size)):
                    bar.update(rs.size)
                    continue
                store.put(_row_cells(s, name, ip, p, rs))
                bar.update(rs.size)
                bar.set_postfix_str(f"{name}, p = {p:.3g}")
    result = _summary(s, store, time.perf_counter() - t0)
    with open(out / "phase_diagram.json", "w") as fh:
        json.dump(result, fh, indent=1)
    plot_phase_diagram(result, out / "phase_diagram.png")
    return result


# --------------------------------------------------------------------------
# the figure

_REGIME_COLOURS = ("#d9d9d9", "#6baed6", "#fd8d3c")


def _edges(ax, ex: np.ndarray, pe: np.ndarray, re_: np.ndarray) -> None:
    """Black cell edges between neighbouring cells of different exact regimes."""
    n_p, n_r = ex.shape
    for i in range(n_p):
        for j in range(n_r):
            if j + 1 < n_r and ex[i, j] != ex[i, j + 1] and min(ex[i, j], ex[i, j + 1]) >= 0:
                ax.plot([re_[j + 1]] * 2, [pe[i], pe[i + 1]], "k-", lw=2)
            if i + 1 < n_p and ex[i, j] != ex[i + 1, j] and min(ex[i, j], ex[i + 1, j]) >= 0:
                ax.plot([re_[j], re_[j + 1]], [pe[i + 1]] * 2, "k-", lw=2)


def _panel(ax, name: str, dg: dict, s: dict) -> None:
    from matplotlib.colors import ListedColormap
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    ps, rs = _grid(s)
    pe = np.r_[ps[0] ** 2 / ps[1], np.sqrt(ps[:-1] * ps[1:]), ps[-1] ** 2 / ps[-2]]
    re_ = np.r_[rs[0] ** 2 / rs[1], np.sqrt(rs[:-1] * rs[1:]), rs[-1] ** 2 / rs[-2]]
    tr = np.ma.masked_less(np.asarray(dg["trained"], dtype=float), 0)
    ax.pcolormesh(re_, pe, tr, cmap=ListedColormap(_REGIME_COLOURS), vmin=-0.5, vmax=2.5)
    _edges(ax, np.asarray(dg["exact"]), pe, re_)
    for x in dg["disagreements"]:
        ax.plot(x["r"], x["p"], "kx", ms=7)
    handles = [Patch(color=c, label=f"trained: {g}") for c, g in zip(_REGIME_COLOURS, REGIMES)]
    handles.append(Line2D([], [], color="k", lw=2, label="exact optimum: regime boundary"))
    if name == "2-1":
        rr = np.geomspace(*s["r_range"], 200)
        (line,) = ax.plot(rr, theory_boundary(rr), "r--", lw=1.5, label="THEORY §9 closed form")
        handles.append(line)
    ax.legend(handles=handles, loc="lower left", fontsize=7)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("relative importance r of the last feature")
    ax.set_ylabel("feature probability p")
    n, d = DIAGRAMS[name]
    ax.set_title(f"n = {n} -> d = {d}: {dg['n_disagree']} cells disagree", fontsize=9)


def plot_phase_diagram(result: dict, path=None, *, ax=None):
    """Plot a :func:`phase_diagram` result: one panel per diagram.

    Trained regimes as coloured cells (grey not represented, blue dedicated,
    orange superposed), the exact optimum's regime boundary as black cell
    edges, disagreeing cells crossed, THEORY §9's closed form dashed (2 -> 1).

    Parameters
    ----------
    result : dict
        What :func:`phase_diagram` returns (or ``phase_diagram.json`` holds).
    path : str or pathlib.Path, optional
        Write a PNG there.
    ax : matplotlib Axes or array of them, optional
        One per diagram.

    Returns
    -------
    array of matplotlib.axes.Axes
    """
    names = list(result["diagrams"])
    axes, path = axes_for(ax, path, (5.5 * len(names), 4.8), len(names),
                          func="plot_phase_diagram")  # fmt: skip
    axes = np.atleast_1d(axes)
    for a, name in zip(axes, names):
        _panel(a, name, result["diagrams"][name], result["settings"])
    save_png(axes[0].figure, path, dpi=90)
    return axes


# --------------------------------------------------------------------------
# the command line


def _print_phase(res: dict) -> None:
    for name, dg in res["diagrams"].items():
        n_cells = res["settings"]["n_p"] * res["settings"]["n_r"]
        print(f"{name}: {dg['n_disagree']} of {n_cells} cells disagree with the exact optimum "
              f"({dg['n_far']} farther than one cell from its boundary, "
              f"{dg['n_exact_better']} where the exact optimum has the lower loss)")  # fmt: skip
        for x in dg["disagreements"]:
            print(f"  p = {x['p']:.4g}, r = {x['r']:.4g}: trained {x['trained']}, exact "
                  f"{x['exact']}, L(trained) - L(exact) = {x['gap']:+.3e}")  # fmt: skip


def _print_geometry(res: dict) -> None:
    for r in res["instances"]:
        print(f"1/(1-S) = {r['inv_density']:9.3f}: d/|W|_F^2 = {r['dims_per_feature']:.4f}")
    pl = res["plateau"]
    if pl["length"]:
        print(f"plateau (d/|W|_F^2 in [0.45, 0.55]): {pl['length']} sparsities, 1/(1-S) from "
              f"{pl['inv_density_from']:.3g} to {pl['inv_density_to']:.3g}")  # fmt: skip
    else:
        print("plateau (d/|W|_F^2 in [0.45, 0.55]): none")
    share = ", ".join(f"{k}: {v:.3f}" for k, v in res["sticky_share"].items())
    print(f"share of features nearest to each sticky fraction: {share}")
    at = ", ".join(f"{k}: {v:.3f}" for k, v in res["sticky_at"].items())
    print(f"share of features represented and within 0.02 of it: {at}")


def reproduce_cli(args) -> int:
    """``fastsuper reproduce phase-diagram | geometry``: run, print the summary, name the files."""
    from fastsuper.apps.geometry_sweep import geometry_sweep

    out = args.out if args.out is not None else args.experiment
    progress = False if args.quiet else None
    t0 = time.perf_counter()
    if args.experiment == "phase-diagram":
        res = phase_diagram(out, quick=args.quick, resume=not args.no_resume, progress=progress)
        _print_phase(res)
        names = ["phase_diagram.csv", "phase_diagram.json", "phase_diagram.png"]
    else:
        res = geometry_sweep(out, quick=args.quick, resume=not args.no_resume, progress=progress)
        _print_geometry(res)
        names = ["geometry.csv", "geometry_features.csv", "geometry.json", "geometry.png"]
    print(f"{args.experiment}: {time.perf_counter() - t0:.1f} s")
    print("wrote " + ", ".join(str(Path(out) / n) for n in names))
    return 0
