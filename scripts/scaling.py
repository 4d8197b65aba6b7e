"""Scaling study of the naive Monte-Carlo estimator: time per sample against n, d, p, threads.

Times ``fastsuper.estimate_loss`` on every path ("columns", "columns_blocked",
"blocked", "dense") and records the cost model's choice ("auto"), at
Elhage et al.'s U[0, 1] values and output ``relu(W^T W x)^2``,
``W ~ N(0, 1/d)``, in sweeps around the comparison configuration
(n = 1000, d = 64, p = 0.01):

* ``n`` in 100 .. 3000 at d = 64 and ``p = 10 / n`` (E K = 10 active);
* ``d`` in 8 .. 256 at n = 1000, p = 0.01;
* ``p`` in 0.001 .. 0.1 at n = 1000, d = 64;
* threads 1 and 2 at n = 1000, d = 64, p = 0.01 (float64 and float32).

Each point: a short pilot run sizes the timed runs (about ``--seconds`` each),
then the paths are timed in turn, ``--repeats`` rounds, alternating, and the
median rate is kept (the machine is shared: side by side, never one path
after another).  Writes a CSV and a PNG (matplotlib) with one panel per sweep.

usage: python scripts/scaling.py [--out docs/_static/scaling] [--quick]
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import sys
import time
from pathlib import Path

PATHS = ("columns", "columns_blocked", "blocked", "dense")


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("docs/_static/scaling"), help="prefix")
    ap.add_argument("--seconds", type=float, default=0.25, help="seconds per timed run")
    ap.add_argument("--repeats", type=int, default=3, help="rounds over the paths")
    ap.add_argument("--threads", type=int, default=2, help="threads of the n, d, p sweeps")
    ap.add_argument("--quick", action="store_true", help="fewer points (a smoke test)")
    return ap.parse_args(argv)


def points(quick: bool):
    ns = (100, 1000) if quick else (100, 300, 1000, 3000)
    ds = (16, 64) if quick else (8, 16, 32, 64, 128, 256)
    ps = (0.003, 0.03) if quick else (0.001, 0.003, 0.01, 0.03, 0.1)
    for n in ns:
        yield "n", n, 64, 10.0 / n, "float64", None
    for d in ds:
        yield "d", 1000, d, 0.01, "float64", None
    for p in ps:
        yield "p", 1000, 64, p, "float64", None
    for dtype in ("float64", "float32"):
        for t in (1, 2):
            yield "threads", 1000, 64, 0.01, dtype, t


def measure(fs, numba, np, n, d, p, dtype, threads, seconds, repeats):
    numba.set_num_threads(threads)
    rng = np.random.default_rng(0)
    W = (rng.standard_normal((d, n)) / np.sqrt(d)).astype(dtype)
    model = fs.Model(W, activation="relu_power", exponent=2)
    inputs = fs.SparseInputs(n, p=p, values="uniform")
    sizes = {}
    for path in PATHS:
        fs.estimate_loss(model, inputs, 2048, seed=0, path=path)  # compile / load the cache
        t0 = time.perf_counter()
        fs.estimate_loss(model, inputs, 8192, seed=0, path=path)
        rate = 8192 / max(time.perf_counter() - t0, 1e-9)
        sizes[path] = int(min(2_000_000, max(8192, rate * seconds)))
    rates = {path: [] for path in PATHS}
    for _ in range(repeats):
        for path in PATHS:
            t0 = time.perf_counter()
            fs.estimate_loss(model, inputs, sizes[path], seed=1, path=path)
            rates[path].append(sizes[path] / (time.perf_counter() - t0))
    auto = fs.estimators.choose_path(model, inputs, 1_000_000)
    return {path: float(np.median(r)) for path, r in rates.items()}, auto


def plot(rows, prefix: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sweeps = [("n", "n (d = 64, E K = 10)"), ("d", "d (n = 1000, p = 0.01)")]
    sweeps += [("p", "p (n = 1000, d = 64)"), ("threads", "threads (n=1000, d=64, p=0.01)")]
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.6))
    for ax, (sweep, label) in zip(axes, sweeps):
        sel = [r for r in rows if r["sweep"] == sweep]
        for path in PATHS:
            if sweep == "threads":
                for dtype, style in (("float64", "-o"), ("float32", "--s")):
                    s = [r for r in sel if r["dtype"] == dtype]
                    xs = [r["threads"] for r in s]
                    ys = [1e6 / r[path] for r in s]
                    ax.plot(xs, ys, style, label=f"{path} {dtype[-2:]}", ms=3)
            else:
                xs = [r[sweep] for r in sel]
                ys = [1e6 / r[path] for r in sel]
                ax.plot(xs, ys, "-o", label=path, ms=3)
        if sweep != "threads":
            xa = [r[sweep] for r in sel]
            ya = [1e6 / r[r["auto"]] for r in sel]
            ax.plot(xa, ya, "k+", ms=10, label="auto's choice")
            ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("µs per sample (wall / samples)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7)
    axes[3].legend(fontsize=6)
    fig.suptitle("fastsuper estimate_loss, relu_power 2, U[0,1] values (float64 unless marked)")
    fig.tight_layout()
    out = prefix.with_suffix(".png")
    fig.savefig(out, dpi=80)
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("NUMBA_NUM_THREADS", str(max(2, args.threads)))
    import numba
    import numpy as np

    import fastsuper as fs
    import fastsuper.mc.api  # noqa: F401  (choose_path)

    rows = []
    for sweep, n, d, p, dtype, threads in points(args.quick):
        t = args.threads if threads is None else threads
        rates, auto = measure(fs, numba, np, n, d, p, dtype, t, args.seconds, args.repeats)
        row = {"sweep": sweep, "n": n, "d": d, "p": p, "dtype": dtype, "threads": t}
        row.update(rates)
        row["auto"] = auto
        rows.append(row)
        print(
            f"{sweep:8s} n={n:5d} d={d:4d} p={p:<7.4g} {dtype} t={t}  "
            + "  ".join(f"{k}={1e6 / v:7.2f}us" for k, v in rates.items())
            + f"  auto={auto}",
            flush=True,
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    csv_path = args.out.with_suffix(".csv")
    with csv_path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {csv_path} and {plot(rows, args.out)} ({platform.processor() or 'cpu'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
