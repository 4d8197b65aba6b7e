"""Geometry of learned weights and the first-order theory (THEORY §5.3, §6).

Quantities of a weight matrix ``W`` (d, n) with ``A = W.T @ W``:

* :func:`feature_dimensionality` -- Elhage et al.'s ``D_i`` (THEORY §6), defined in
  :mod:`fastsuper.geometry` with the rest of the feature geometry;
* :func:`first_order_objective` -- ``F(A)``, the coefficient of ``p`` in the
  exact gain of the ``power`` model as ``p -> 0`` (THEORY §5.3);

the constants of THEORY §5.3 (:func:`kappa`, :func:`sphere_dimension`,
:func:`first_order_cap`, :func:`random_frame_value`,
:func:`random_frame_norm`), random frames (:func:`random_frame`) -- defined in
:mod:`fastsuper.exact.first_order`, below the training code that uses them -- and
plotting helpers (:func:`plot_gram`, :func:`plot_features`,
:func:`plot_loss_history`): each takes the arrays or the result object, draws
on a given matplotlib ``Axes`` or a new figure, returns the Axes, and writes a
PNG file only when given a path.  They need matplotlib, imported only when
called.
"""

from __future__ import annotations

import numpy as np

from fastsuper.core import validation as v
from fastsuper.exact.first_order import (
    first_order_cap,
    first_order_objective,
    kappa,
    random_frame,
    random_frame_norm,
    random_frame_value,
    sphere_dimension,
)
from fastsuper.geometry import feature_dimensionality

__all__ = [
    "LEGEND_MAX",
    "axes_for",
    "feature_dimensionality",
    "first_order_cap",
    "first_order_objective",
    "kappa",
    "plot_features",
    "plot_gram",
    "plot_loss_history",
    "pyplot",
    "random_frame",
    "random_frame_norm",
    "random_frame_value",
    "save_png",
    "sphere_dimension",
]


# --------------------------------------------------------------------------
# helpers


# --------------------------------------------------------------------------
# plots

#: :func:`plot_loss_history` draws a legend only up to this many curves
LEGEND_MAX = 10


def pyplot():
    """:mod:`matplotlib.pyplot`, imported when called (a clear error if matplotlib is missing).

    The backend is matplotlib's choice (inline in a notebook, Agg without a
    display); the plotting helpers use pyplot only for the figures they show,
    not for those they only write to a file.
    """
    _matplotlib()
    import matplotlib.pyplot as plt

    return plt


def _matplotlib():
    try:
        import matplotlib
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the plotting helpers need matplotlib: pip install matplotlib "
            "(or the 'plot' extra: pip install fastsuper[plot])"
        ) from exc
    return matplotlib


def axes_for(ax, path, figsize: tuple, ncols: int = 1, *, func: str):
    """``(axes, path)``: ``ax`` itself, or the Axes of a new figure, and the checked ``path``.

    A new figure is a pyplot figure when ``path`` is ``None`` (a notebook shows
    it), else a bare :class:`matplotlib.figure.Figure` that is only written to
    ``path`` (no backend, nothing left open).  ``ncols > 1`` gives an array of Axes.
    """
    path = None if path is None else v.check_path("path", path, func=func)
    if ax is not None:
        return ax, path
    if path is None:
        fig = pyplot().figure(figsize=figsize, layout="constrained")
    else:
        from matplotlib.figure import Figure

        fig = Figure(figsize=figsize, layout="constrained")
    axes = fig.subplots(1, ncols, squeeze=True)
    return axes, path


def save_png(fig, path, dpi: int = 100) -> None:
    """Write ``fig`` to ``path`` as PNG when ``path`` is given."""
    if path is not None:
        fig.savefig(path, format="png", dpi=dpi)


def _weights(func: str, W, instance) -> np.ndarray:
    """The weight matrix of ``W``: an array, a Model, an ExactFit, or instance of a FitResult."""
    if not isinstance(W, np.ndarray) and hasattr(W, "W"):
        W = W.W
        if np.ndim(W) == 3:
            instance = v.check_int("instance", instance, minimum=0, func=func)
            if instance >= W.shape[0]:
                raise ValueError(
                    f"{func}: instance must be < {W.shape[0]} (the number of instances), "
                    f"got {instance}"
                )
            W = W[instance]
    return v.check_weights("W", W, func=func)


def plot_gram(W, path=None, *, ax=None, title: str | None = None, instance: int = 0):
    """Heatmap of ``A = W.T @ W``, on ``ax`` or a new figure; written to ``path`` if given.

    Diverging colour map centred at 0 (red positive, blue negative); the
    diagonal holds the squared column norms.

    Parameters
    ----------
    W : array_like of shape (d, n), Model, FitResult or ExactFit
        Weights, or a result holding them (a :class:`~fastsuper.train.adam.FitResult`:
        its instance ``instance``).
    path : str or pathlib.Path, optional
        Write the figure to this PNG file.
    ax : matplotlib.axes.Axes, optional
        Draw here (default: a new figure).
    title : str, optional
        Axes title (default ``"W^T W (d = .., n = ..)"``).
    instance : int, default 0
        Which instance of a ``FitResult``.

    Returns
    -------
    matplotlib.axes.Axes
        The Axes drawn on (the image is ``ax.images[0]``).
    """
    func = "plot_gram"
    W = _weights(func, W, instance)
    d, n = W.shape
    size = min(8.0, 3.0 + 0.1 * n)
    ax, path = axes_for(ax, path, (size + 1.2, size), func=func)
    A = W.T @ W
    vmax = float(np.max(np.abs(A))) or 1.0
    im = ax.imshow(A, cmap="RdBu_r", vmin=-vmax, vmax=vmax, interpolation="nearest")
    ax.figure.colorbar(im, ax=ax, shrink=0.85)
    ax.set_xlabel("feature j")
    ax.set_ylabel("feature i")
    ax.set_title(title if title is not None else f"$W^T W$ (d = {d}, n = {n})")
    save_png(ax.figure, path)
    return ax


def plot_features(W, path=None, *, ax=None, title: str | None = None, instance: int = 0):
    """Picture of the feature directions, on ``ax`` or a new figure; written to ``path`` if given.

    For ``d = 2`` the columns ``w_i`` are drawn as arrows from the origin.
    Otherwise two panels: a bar chart of the column norms ``|w_i|`` and the
    columns projected on the top two left singular vectors of ``W`` (the
    best 2-D view in the least-squares sense), drawn as arrows.

    Parameters
    ----------
    W : array_like of shape (d, n), Model, FitResult or ExactFit
        Weights, or a result holding them (as for :func:`plot_gram`).
    path : str or pathlib.Path, optional
        Write the figure to this PNG file.
    ax : matplotlib.axes.Axes or a pair of them, optional
        Draw here (default: a new figure).  For ``d != 2`` a pair of Axes gets
        both panels, a single Axes the projection only.
    title : str, optional
        Title (of the figure when this function made it, else of the Axes).
    instance : int, default 0
        Which instance of a ``FitResult``.

    Returns
    -------
    matplotlib.axes.Axes or ndarray of two Axes
        The Axes drawn on: one for ``d = 2`` (or a single ``ax``), else
        ``(norms, projection)``.  Each arrow is an annotation (``ax.texts``)
        from the origin to its column (``.xy``).
    """
    func = "plot_features"
    W = _weights(func, W, instance)
    d, n = W.shape
    made = ax is None
    if d == 2 and np.iterable(ax):
        raise TypeError(f"{func}: for d = 2 the picture is one panel: give one Axes as ax")
    single = d == 2 or (ax is not None and not np.iterable(ax))
    figsize = (5.5, 5.5) if single else (11.0, 5.0)
    axes, path = axes_for(ax, path, figsize, 1 if single else 2, func=func)
    colours = _colours(n)
    if d == 2:
        _arrows(axes, W, "columns of W", colours)
    else:
        U, s, _ = np.linalg.svd(W, full_matrices=False)
        P = np.zeros((2, n))
        k = min(2, d)
        P[:k] = U[:, :k].T @ W
        share = float(np.sum(s[:k] ** 2) / np.sum(s**2)) if np.any(s > 0) else 0.0
        label = f"projection on the top {k} singular vectors ({share:.0%} of |W|²)"
        if not single:
            norms_ax, proj_ax = axes
            norms_ax.bar(np.arange(n), np.linalg.norm(W, axis=0), color=colours)
            norms_ax.set_xlabel("feature i")
            norms_ax.set_ylabel("$|w_i|$")
            norms_ax.set_title("column norms")
        _arrows(axes if single else proj_ax, P, label, colours)
    first = axes if single else axes[0]
    if title is not None:
        (first.figure.suptitle if made else first.set_title)(title)
    save_png(first.figure, path)
    return axes


def _colours(n: int) -> np.ndarray:
    from matplotlib import colormaps

    return colormaps["viridis"](np.linspace(0.0, 0.9, n))


def _arrows(ax, P: np.ndarray, label: str, colours) -> None:
    """The columns of ``P`` (2, n) as arrows from the origin on ``ax``."""
    n = P.shape[1]
    lim = float(np.max(np.abs(P))) * 1.15 or 1.0
    for i in range(n):
        ax.annotate(
            "",
            xy=(P[0, i], P[1, i]),
            xytext=(0.0, 0.0),
            arrowprops={"arrowstyle": "->", "color": colours[i], "lw": 1.5},
        )
    if n <= 20:  # label the features (not the zero columns, all at the origin)
        for i in np.flatnonzero(np.hypot(P[0], P[1]) > 1e-3 * lim):
            ax.text(1.06 * P[0, i], 1.06 * P[1, i], str(i), fontsize=8, ha="center")
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.axhline(0.0, color="0.85", lw=0.8, zorder=0)
    ax.axvline(0.0, color="0.85", lw=0.8, zorder=0)
    ax.set_title(label)


def _histories(func: str, history) -> tuple[dict, str, str]:
    """``({label: (x, y)}, xlabel, ylabel)`` of ``history`` (see :func:`plot_loss_history`)."""
    if hasattr(history, "loss_history") and hasattr(history, "log_steps"):  # a FitResult
        return _fit_curves(history), "step", "batch loss (sum over features)"
    xlabel, ylabel = "iteration", "loss"
    if hasattr(history, "gain_history"):  # an ExactFit: the exact gain of its best start
        history = {"": history.gain_history}
        xlabel, ylabel = "L-BFGS iteration", "exact gain (sum over features)"
    elif hasattr(history, "history") and not isinstance(history, (dict, np.ndarray)):
        history = history.history
    curves = {}
    for label, h in _history_items(func, history):
        h = np.asarray(h, dtype=np.float64)
        if h.ndim != 1 or h.size == 0:
            raise ValueError(
                f"{func}: every history must be a non-empty 1-D sequence; {label or 'history'} "
                f"has shape {h.shape}"
            )
        curves[str(label)] = (np.arange(h.size), h)
    if not curves:
        raise ValueError(f"{func}: history is empty")
    return curves, xlabel, ylabel


def _fit_curves(res) -> dict:
    """One curve per instance of a FitResult: its batch loss over the logged steps."""
    hist = np.asarray(res.loss_history, dtype=np.float64)
    if hist.ndim != 2 or hist.shape[0] == 0:
        raise ValueError(f"plot_loss_history: the fit recorded no loss (shape {hist.shape})")
    p = res.settings.get("p") if isinstance(res.settings, dict) else None
    steps = np.asarray(res.log_steps)
    curves = {}
    for k in range(hist.shape[1]):
        pk = f" (p = {float(np.mean(p[k])):.3g})" if p is not None else ""
        curves[f"instance {k}{pk}"] = (steps, hist[:, k])
    return curves


def _history_items(func: str, history) -> list:
    """``[(label, sequence)]`` of a dict, a 1-D or 2-D array or a list of sequences."""
    if isinstance(history, dict):
        return list(history.items())
    arr = np.asarray(history, dtype=object if _ragged(history) else np.float64)
    if arr.dtype == object:
        return [(f"run {k}", h) for k, h in enumerate(history)]
    if arr.ndim == 1:
        return [("", arr)]
    if arr.ndim == 2:
        return [(f"run {k}", h) for k, h in enumerate(arr)]
    raise ValueError(
        f"{func}: history must be 1-D, 2-D (one row per run) or a dict of 1-D "
        f"sequences, got shape {arr.shape}"
    )


def _ragged(history) -> bool:
    try:
        lengths = {len(h) for h in history}
    except TypeError:
        return False
    return len(lengths) > 1


def plot_loss_history(history, path=None, *, ax=None, ylabel: str | None = None,
                      title: str | None = None):  # fmt: skip
    """Curve(s) of a loss (or gain) against the step, on ``ax`` or a new figure.

    The vertical axis is logarithmic when every value is positive and they
    span more than a factor of 10.  A legend is drawn for 2 to
    :data:`LEGEND_MAX` labelled curves; more curves are coloured dark to light
    in their order (said in the default title) without a legend.

    Parameters
    ----------
    history : FitResult, ExactFit, array_like or dict
        A :class:`~fastsuper.train.adam.FitResult` (one curve per instance:
        its batch loss, a sum over features, against the step), an
        :class:`~fastsuper.train.lbfgs.ExactFit` (its exact *gain* against the
        L-BFGS iteration), one 1-D sequence, a 2-D array (one row per run), a
        list of sequences (one per run, lengths may differ), a dict
        ``{label: sequence}``, or an object with a ``history`` attribute.
    path : str or pathlib.Path, optional
        Write the figure to this PNG file.
    ax : matplotlib.axes.Axes, optional
        Draw here (default: a new figure).
    ylabel : str, optional
        Label of the vertical axis (default: what ``history`` holds, e.g.
        ``"batch loss (sum over features)"`` or ``"exact gain (sum over features)"``).
    title : str, optional
        Axes title.

    Returns
    -------
    matplotlib.axes.Axes
        The Axes drawn on: ``ax.lines[k]`` is curve ``k`` (for a FitResult,
        instance ``k``).
    """
    func = "plot_loss_history"
    curves, xlabel, default_ylabel = _histories(func, history)
    ax, path = axes_for(ax, path, (7.0, 4.5), func=func)
    allv = np.concatenate([y for _, y in curves.values()])
    finite = allv[np.isfinite(allv)]
    many = len(curves) > LEGEND_MAX
    colours = _colours(len(curves)) if many else [None] * len(curves)
    for (label, (x, y)), colour in zip(curves.items(), colours):
        ax.plot(x, y, label=label or None, lw=1.5, color=colour)
    if many and title is None:
        first, last = list(curves)[0], list(curves)[-1]
        title = f"{len(curves)} curves, dark to light: {first} to {last}"
    if finite.size and finite.min() > 0 and finite.max() > 10 * finite.min():
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(default_ylabel if ylabel is None else ylabel)
    if 2 <= sum(1 for label in curves if label) <= LEGEND_MAX:
        ax.legend(fontsize=8)
    if title is not None:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    save_png(ax.figure, path)
    return ax
