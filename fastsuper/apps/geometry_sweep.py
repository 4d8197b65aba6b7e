"""Elhage et al.'s uniform-importance geometry sweep: ``fastsuper reproduce geometry``.

:func:`geometry_sweep` trains ``n = 400`` features into ``d = 30`` dimensions
(ReLU with bias, U[0,1] values, importance 1, THEORY §6) at many feature
probabilities ``p = 1 - S`` with :func:`fastsuper.fit` (several instances per
call), and records the geometry of each trained ``W``
(:func:`fastsuper.geometry.feature_geometry`):

* ``d / |W|_F**2`` ("dimensions per feature") against ``1 / (1 - S)``, whose
  plateau at 1/2 is the regime of antipodal pairs;
* every feature's dimensionality ``D_i`` against ``1 / (1 - S)``, with the
  sticky fractions (1, 3/4, 2/3, 1/2, 2/5, 3/8, 0) drawn as lines, the share
  of features nearest to each, and the share of represented features within
  0.02 of each non-zero one (``at_*``);
* the tegum factors and their shapes (digon, triangle, tetrahedron, pentagon,
  square antiprism, other).

Outputs: ``geometry.csv`` (one row per instance), ``geometry_features.csv``
(one row per feature: ``D_i``, its nearest sticky fraction, its factor's
shape), ``geometry.json`` and ``geometry.png``.  The trained weights of each
chunk of instances are kept in ``fits/``, so an interrupted run resumes.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np

from fastsuper.analysis import axes_for, save_png
from fastsuper.core.progress import progress_bar, progress_enabled
from fastsuper.geometry import STICKY_FRACTIONS, STICKY_LABELS, feature_geometry
from fastsuper.train.adam import FitResult, fit

__all__ = ["geometry_settings", "geometry_sweep", "inv_densities", "plot_geometry"]

#: d / |W|_F**2 counts as on the antipodal plateau within this range
PLATEAU = (0.45, 0.55)
#: a represented feature sits *at* a sticky fraction when its D_i is this close to it
STICKY_TOL = 0.02


def geometry_settings(quick: bool = False) -> dict:
    """The settings of :func:`geometry_sweep` (``quick``: ``n = 80``, ``d = 6``, short).

    Examples
    --------
    >>> from fastsuper.apps.geometry_sweep import geometry_settings
    >>> s = geometry_settings()
    >>> s["n"], s["d"], s["n_sparsities"], s["n_fine"], s["steps"]
    (400, 30, 10, 10, 10000)
    >>> inv_densities(s).round(2).tolist()[:5]
    [1.0, 1.5, 1.71, 1.96, 2.24]
    """
    s = {
        "n": 400,
        "d": 30,
        "n_sparsities": 10,
        "inv_density_range": (1.0, 1000.0),
        "n_fine": 10,
        "fine_range": (1.5, 5.0),
        "steps": 10_000,
        "batch_size": 1024,
        "lr": 1e-3,
        "chunk": 6,
        "seed": 0,
    }
    if quick:
        s.update(n=80, d=6, n_sparsities=6, inv_density_range=(1.0, 100.0), n_fine=0,
                 steps=1500, batch_size=256, lr=1e-2, chunk=6)  # fmt: skip
    return s


def inv_densities(s: dict) -> np.ndarray:
    """The values of ``1 / (1 - S) = 1 / p`` of a sweep, increasing.

    ``n_sparsities`` points log-spaced over ``inv_density_range``, of which those
    inside ``fine_range`` are replaced by ``n_fine`` points log-spaced over it (the
    antipodal plateau lies there); ``n_fine = 0``: the coarse grid alone.

    Examples
    --------
    >>> from fastsuper.apps.geometry_sweep import inv_densities
    >>> s = {"n_sparsities": 4, "inv_density_range": (1.0, 1000.0), "n_fine": 3,
    ...      "fine_range": (2.0, 20.0)}
    >>> inv_densities(s).round(3).tolist()
    [1.0, 2.0, 6.325, 20.0, 100.0, 1000.0]
    """
    coarse = np.geomspace(*s["inv_density_range"], s["n_sparsities"])
    n_fine = s.get("n_fine", 0)
    if not n_fine:
        return coarse
    lo, hi = s["fine_range"]
    outside = coarse[(coarse < lo) | (coarse > hi)]
    return np.sort(np.concatenate([outside, np.geomspace(lo, hi, n_fine)]))


def _same_run(res: FitResult, s: dict, pc: np.ndarray) -> bool:
    """Whether a saved chunk was trained with these settings (else it is trained again)."""
    got = res.settings
    same = all(got.get(k) == s[k] for k in ("n", "d", "steps", "batch_size", "lr"))
    return same and res.W.shape[0] == pc.size and np.allclose(np.asarray(got["p"])[:, 0], pc)


def _train(s: dict, out: Path, resume: bool, bar) -> list[np.ndarray]:
    """The trained ``W`` of every instance, chunk by chunk (each chunk saved in ``fits/``)."""
    ps = 1.0 / inv_densities(s)
    fits = out / "fits"
    fits.mkdir(parents=True, exist_ok=True)
    Ws = []
    for c, lo in enumerate(range(0, ps.size, s["chunk"])):
        pc = ps[lo : lo + s["chunk"]]
        path = fits / f"chunk_{c:03d}.npz"
        res = FitResult.load(path) if resume and path.exists() else None
        if res is None or not _same_run(res, s, pc):
            res = fit(s["n"], s["d"], n_instances=pc.size, p=pc, steps=s["steps"],
                      batch_size=s["batch_size"], lr=s["lr"], seed=s["seed"] + c,
                      progress=False)  # fmt: skip
            res.save(path)
        Ws.extend(res.W)
        bar.update(pc.size)
    return Ws


def _rows(s: dict, Ws: list) -> tuple[list, list]:
    ps = 1.0 / inv_densities(s)
    inst, feats = [], []
    for k, (p, W) in enumerate(zip(ps, Ws)):
        g = feature_geometry(W)
        share = {lab: g.sticky.count(lab) / s["n"] for lab in STICKY_LABELS}
        rep = np.array([f != "not represented" for f in g.feature_shape])
        at = {lab: float(np.mean(rep & (np.abs(g.D - f) <= STICKY_TOL)))
              for f, lab in zip(STICKY_FRACTIONS, STICKY_LABELS) if f > 0}  # fmt: skip
        counts = g.shape_counts()
        inst.append({"instance": k, "p": float(p), "inv_density": float(1 / p),
                     "dims_per_feature": g.dimensions_per_feature,
                     "represented": int(rep.sum()),
                     **{f"share_{lab}": share[lab] for lab in STICKY_LABELS},
                     **{f"at_{lab}": at[lab] for lab in at},
                     "shapes": json.dumps(counts, sort_keys=True)})  # fmt: skip
        for i in range(s["n"]):
            feats.append({"instance": k, "p": float(p), "feature": i, "D": float(g.D[i]),
                          "sticky": g.sticky[i], "shape": g.feature_shape[i]})  # fmt: skip
    return inst, feats


def _write(path: Path, rows: list) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def _plateau(inst: list) -> dict:
    """The longest run of consecutive sparsities with ``d / |W|_F**2`` in :data:`PLATEAU`."""
    best, cur = (0, -1), None
    for k, row in enumerate(inst):
        on = PLATEAU[0] <= row["dims_per_feature"] <= PLATEAU[1]
        cur = (cur if cur is not None else k) if on else None
        if cur is not None and k - cur + 1 > best[0]:
            best = (k - cur + 1, cur)
    if best[0] == 0:
        return {"length": 0}
    a, b = inst[best[1]], inst[best[1] + best[0] - 1]
    return {"length": best[0], "inv_density_from": a["inv_density"],
            "inv_density_to": b["inv_density"]}  # fmt: skip


def geometry_sweep(
    out, *, quick: bool = False, resume: bool = True, progress: bool | None = None,
    settings: dict | None = None,
) -> dict:  # fmt: skip
    """Train the uniform-importance sweep and measure its feature geometry.

    Parameters
    ----------
    out : str or pathlib.Path
        Output folder (created); see the module docstring for its files.
    quick : bool, default False
        The small version of :func:`geometry_settings`.
    resume : bool, default True
        Reuse the chunks of trained weights already in ``out/fits``.
    progress : bool, optional
        A progress bar over the instances (default: when stderr is a terminal).
    settings : dict, optional
        Override :func:`geometry_settings`.

    Returns
    -------
    dict
        ``settings``, ``seconds``, ``instances`` (per instance: ``p``,
        ``inv_density = 1 / p``, ``dims_per_feature``, the share of features at
        each sticky fraction, the shape counts), ``plateau`` (the longest run of
        consecutive sparsities with ``d / |W|_F**2`` in [0.45, 0.55]),
        ``sticky_share`` (the share of all features nearest to each fraction,
        ``"0"`` including the dropped ones and every ``D_i < 3/16``) and
        ``sticky_at`` (the share of all features that are represented and
        within :data:`STICKY_TOL` of each non-zero fraction).

    Examples
    --------
    >>> import tempfile
    >>> from fastsuper.apps.geometry_sweep import geometry_sweep
    >>> tiny = {"n": 6, "d": 2, "n_sparsities": 2, "steps": 50, "batch_size": 64}
    >>> res = geometry_sweep(tempfile.mkdtemp(), quick=True, settings=tiny, progress=False)
    >>> len(res["instances"]), sorted(res["sticky_share"]) == sorted(["1", "3/4", "2/3",
    ...     "1/2", "2/5", "3/8", "0"])
    (2, True)
    """
    s = dict(geometry_settings(quick))
    if settings:
        s.update(settings)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with progress_bar(inv_densities(s).size, "geometry", unit="instances",
                      enabled=progress_enabled(progress)) as bar:  # fmt: skip
        Ws = _train(s, out, resume, bar)
    inst, feats = _rows(s, Ws)
    _write(out / "geometry.csv", inst)
    _write(out / "geometry_features.csv", feats)
    labels = [f["sticky"] for f in feats]
    result = {
        "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in s.items()},
        "seconds": time.perf_counter() - t0,
        "instances": inst,
        "plateau": _plateau(inst),
        "sticky_share": {lab: labels.count(lab) / len(labels) for lab in STICKY_LABELS},
        "sticky_at": {
            k[3:]: float(np.mean([r[k] for r in inst])) for k in inst[0] if k.startswith("at_")
        },  # fmt: skip
        "features": {"p": [f["p"] for f in feats], "D": [f["D"] for f in feats]},
    }
    with open(out / "geometry.json", "w") as fh:
        json.dump(result, fh, indent=1)
    plot_geometry(result, out / "geometry.png")
    return result


def plot_geometry(result: dict, path=None, *, ax=None):
    """Plot a :func:`geometry_sweep` result: ``d / |W|_F**2`` and the ``D_i`` against ``1/(1-S)``.

    Parameters
    ----------
    result : dict
        What :func:`geometry_sweep` returns (or ``geometry.json`` holds).
    path : str or pathlib.Path, optional
        Write a PNG there.
    ax : array of two matplotlib Axes, optional

    Returns
    -------
    array of two matplotlib.axes.Axes
    """
    axes, path = axes_for(ax, path, (11.0, 4.5), 2, func="plot_geometry")
    inst = result["instances"]
    x = [r["inv_density"] for r in inst]
    a, b = axes
    a.plot(x, [r["dims_per_feature"] for r in inst], "o-", ms=4)
    a.axhline(0.5, color="k", ls="--", lw=1, label="1/2: antipodal pairs")
    a.axhspan(*PLATEAU, color="0.9")
    a.set_xscale("log")
    a.set_xlabel("1 / (1 - S)  (= 1 / p)")
    a.set_ylabel("d / |W|_F^2  (dimensions per feature)")
    a.legend(fontsize=8)
    f = result["features"]
    b.scatter(1.0 / np.asarray(f["p"]), f["D"], s=3, alpha=0.3)
    for frac, lab in zip(STICKY_FRACTIONS, STICKY_LABELS):
        b.axhline(frac, color="k", lw=0.6, ls=":")
        b.text(x[-1], frac, f" {lab}", va="center", fontsize=7)
    b.set_xscale("log")
    b.set_xlabel("1 / (1 - S)  (= 1 / p)")
    b.set_ylabel("feature dimensionality D_i")
    s = result["settings"]
    b.set_title(f"n = {s['n']}, d = {s['d']}", fontsize=9)
    save_png(a.figure, path, dpi=90)
    return axes
