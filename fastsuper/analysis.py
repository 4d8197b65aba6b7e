"""Geometry of learned weights and the first-order theory (THEORY §5.3, §6).

Quantities of a weight matrix ``W`` (d, n) with ``A = W.T @ W``:

* :func:`feature_dimensionality` -- Elhage et al.'s ``D_i`` (THEORY §6);
* :func:`first_order_objective` -- ``F(A)``, the coefficient of ``p`` in the
  exact gain of the ``power`` model as ``p -> 0`` (THEORY §5.3);

the constants of THEORY §5.3 (:func:`kappa`, :func:`sphere_dimension`,
:func:`first_order_cap`, :func:`random_frame_value`,
:func:`random_frame_norm`), random frames (:func:`random_frame`) -- defined in
:mod:`fastsuper.exact.first_order`, below the training code that uses them -- and
plotting helpers that write PNG files (:func:`plot_gram`,
:func:`plot_features`, :func:`plot_loss_history`; they need matplotlib,
imported only when called, with the Agg backend: :func:`pyplot`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fastsuper.core import validation as v
from fastsuper.exact.first_order import (
    first_order_cap,
    first_order_objective,
    gram_blocks,
    kappa,
    random_frame,
    random_frame_norm,
    random_frame_value,
    sphere_dimension,
)

__all__ = [
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
    "sphere_dimension",
]


# --------------------------------------------------------------------------
# helpers


# --------------------------------------------------------------------------
# geometry


def feature_dimensionality(W) -> np.ndarray:
    """Feature dimensionality ``D_i = |w_i|**2 / sum_j (w_i_hat @ w_j)**2`` (THEORY §6).

    Elhage et al.'s measure of the share of a dimension that feature ``i``
    gets: 1 for a feature orthogonal to all others, ``d/n`` for every
    feature of a tight frame of ``n`` unit vectors in ``R^d`` (pentagon 2/5,
    antipodal pair 1/2), and 0 for a zero column (a dropped feature).

    Parameters
    ----------
    W : array_like of shape (d, n)
        Weights; column ``i`` is feature ``i``'s direction ``w_i``.

    Returns
    -------
    ndarray of shape (n,), float64
        ``D_i = |w_i|**4 / sum_j (w_i . w_j)**2`` (the sum includes
        ``j = i``), 0 where ``w_i = 0``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastsuper.analysis import feature_dimensionality
    >>> feature_dimensionality([[1.0, -1.0, 0.0], [0.0, 0.0, 0.0]])  # antipodal pair, zero
    array([0.5, 0.5, 0. ])
    >>> t = 2 * np.pi * np.arange(5) / 5  # pentagon
    >>> np.round(feature_dimensionality(np.stack([np.cos(t), np.sin(t)])), 12)
    array([0.4, 0.4, 0.4, 0.4, 0.4])
    """
    W = v.check_weights("W", W, func="feature_dimensionality")
    n = W.shape[1]
    sq = np.einsum("ij,ij->j", W, W)  # |w_i|**2
    out = np.zeros(n)
    for lo, hi, G in gram_blocks(W):
        denom = np.einsum("ij,ij->i", G, G)  # sum_j (w_i . w_j)**2 >= |w_i|**4
        nz = sq[lo:hi] > 0
        out[lo:hi][nz] = sq[lo:hi][nz] ** 2 / denom[nz]
    return out


# --------------------------------------------------------------------------
# plots


def pyplot():
    """:mod:`matplotlib.pyplot` with the Agg backend (a clear error if matplotlib is missing).

    The plotting helpers of fastsuper draw with it; it is imported only when called.
    """
    try:
        import matplotlib
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the plotting helpers need matplotlib: pip install matplotlib "
            "(or the 'plot' extra: pip install fastsuper[plot])"
        ) from exc
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_gram(W, path, *, title: str | None = None) -> Path:
    """Heatmap of ``A = W.T @ W`` written to a PNG file.

    Diverging colour map centred at 0 (red positive, blue negative); the
    diagonal holds the squared column norms.

    Parameters
    ----------
    W : array_like of shape (d, n)
        Weights.
    path : str or pathlib.Path
        Output file (PNG).
    title : str, optional
        Figure title (default ``"W^T W (d = .., n = ..)"``).

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    func = "plot_gram"
    W = v.check_weights("W", W, func=func)
    path = v.check_path("path", path, func=func)
    plt = pyplot()
    d, n = W.shape
    A = W.T @ W
    vmax = float(np.max(np.abs(A))) or 1.0
    size = min(8.0, 3.0 + 0.1 * n)
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    try:
        im = ax.imshow(A, cmap="RdBu_r", vmin=-vmax, vmax=vmax, interpolation="nearest")
        fig.colorbar(im, ax=ax, shrink=0.85)
        ax.set_xlabel("feature j")
        ax.set_ylabel("feature i")
        ax.set_title(title if title is not None else f"$W^T W$ (d = {d}, n = {n})")
        fig.tight_layout()
        fig.savefig(path, format="png", dpi=100)
    finally:
        plt.close(fig)
    return path


def plot_features(W, path, *, title: str | None = None) -> Path:
    """Picture of the feature directions written to a PNG file.

    For ``d = 2`` the columns ``w_i`` are drawn as arrows from the origin.
    Otherwise two panels: a bar chart of the column norms ``|w_i|`` and the
    columns projected on the top two left singular vectors of ``W`` (the
    best 2-D view in the least-squares sense), drawn as arrows.

    Parameters
    ----------
    W : array_like of shape (d, n)
        Weights.
    path : str or pathlib.Path
        Output file (PNG).
    title : str, optional
        Figure title.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    func = "plot_features"
    W = v.check_weights("W", W, func=func)
    path = v.check_path("path", path, func=func)
    plt = pyplot()
    d, n = W.shape
    colours = plt.get_cmap("viridis")(np.linspace(0.0, 0.9, n))

    def arrows(ax, P, label):
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

    if d == 2:
        fig, ax = plt.subplots(figsize=(5.5, 5.5))
        axes = [ax]
        arrows(ax, W, "columns of W")
    else:
        fig, axes = plt.subplots(1, 2, figsize=(11.0, 5.0))
        norms = np.linalg.norm(W, axis=0)
        axes[0].bar(np.arange(n), norms, color=colours)
        axes[0].set_xlabel("feature i")
        axes[0].set_ylabel("$|w_i|$")
        axes[0].set_title("column norms")
        U, s, _ = np.linalg.svd(W, full_matrices=False)
        P = np.zeros((2, n))
        k = min(2, d)
        P[:k] = U[:, :k].T @ W
        share = float(np.sum(s[:k] ** 2) / np.sum(s**2)) if np.any(s > 0) else 0.0
        arrows(axes[1], P, f"projection on the top {k} singular vectors ({share:.0%} of |W|²)")
    if title is not None:
        fig.suptitle(title)
    try:
        fig.tight_layout()
        fig.savefig(path, format="png", dpi=100)
    finally:
        plt.close(fig)
    return path


def _histories(func: str, history) -> dict:
    """Normalise ``history`` to ``{label: 1-D float array}``."""
    if hasattr(history, "history") and not isinstance(history, (dict, np.ndarray)):
        history = history.history
    if isinstance(history, dict):
        items = list(history.items())
    else:
        arr = np.asarray(history, dtype=object if _ragged(history) else np.float64)
        if arr.dtype == object:
            items = [(f"run {k}", h) for k, h in enumerate(history)]
        elif arr.ndim == 1:
            items = [("", arr)]
        elif arr.ndim == 2:
            items = [(f"run {k}", h) for k, h in enumerate(arr)]
        else:
            raise ValueError(
                f"{func}: history must be 1-D, 2-D (one row per run) or a dict of 1-D "
                f"sequences, got shape {arr.shape}"
            )
    out = {}
    for label, h in items:
        h = np.asarray(h, dtype=np.float64)
        if h.ndim != 1 or h.size == 0:
            raise ValueError(
                f"{func}: every history must be a non-empty 1-D sequence; {label or 'history'} "
                f"has shape {h.shape}"
            )
        out[str(label)] = h
    if not out:
        raise ValueError(f"{func}: history is empty")
    return out


def _ragged(history) -> bool:
    try:
        lengths = {len(h) for h in history}
    except TypeError:
        return False
    return len(lengths) > 1


def plot_loss_history(history, path, *, ylabel: str = "loss", title: str | None = None) -> Path:
    """Curve(s) of a loss (or gain) against the iteration, written to a PNG file.

    The vertical axis is logarithmic when every value is positive and they
    span more than a factor of 10.

    Parameters
    ----------
    history : array_like, dict or object with a ``history`` attribute
        One 1-D sequence of values, a 2-D array (one row per run), a list of
        sequences (one per run, lengths may differ), a dict
        ``{label: sequence}``, or a fit result carrying ``.history``.
    path : str or pathlib.Path
        Output file (PNG).
    ylabel : str, default "loss"
        Label of the vertical axis (say "gain" for a gain history).
    title : str, optional
        Figure title.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    func = "plot_loss_history"
    curves = _histories(func, history)
    path = v.check_path("path", path, func=func)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.0, 4.5))
    try:
        allv = np.concatenate(list(curves.values()))
        finite = allv[np.isfinite(allv)]
        for label, h in curves.items():
            ax.plot(np.arange(h.size), h, label=label or None, lw=1.5)
        if finite.size and finite.min() > 0 and finite.max() > 10 * finite.min():
            ax.set_yscale("log")
        ax.set_xlabel("iteration")
        ax.set_ylabel(ylabel)
        if any(curves):  # some curve has a label
            ax.legend(fontsize=8)
        if title is not None:
            ax.set_title(title)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(path, format="png", dpi=100)
    finally:
        plt.close(fig)
    return path
