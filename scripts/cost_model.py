"""Measure the Monte-Carlo paths and fit the cost model of ``choose_path``.

For 54 shapes (n from 100 to 6000, d from 8 to 256, E K from 0.5 to 40,
float64 and float32; relu_power 2, U[0, 1] values), times ``estimate_loss``
on the paths "columns", "columns_blocked" and "blocked" in alternating
rounds (best of 3, ``--threads`` threads, sample counts sized to about
0.15 s), then:

* fits the ``COST_*`` constants of :mod:`fastsuper.mc.api` by
  non-negative least squares on relative errors (every term of
  :func:`fastsuper.mc.api.path_costs` is linear in one constant);
* reports, for the fitted constants and for the ones in the package, how
  often the modelled choice is not the fastest measured path and what that
  costs.

Usage::

    OPENBLAS_NUM_THREADS=1 python scripts/cost_model.py [--json out.json]
    python scripts/cost_model.py --load out.json     # fit only
"""

from __future__ import annotations

import argparse
import json
import time

import numba
import numpy as np
from scipy.optimize import nnls

import fastsuper as fs
from fastsuper.mc import paths as E

PATHS = ("columns", "columns_blocked", "blocked")
NAMES = (
    "COST_SAMPLE COST_ACTIVE COST_OUTPUT COST_COLUMN_FMA COST_COLUMN_FMA_L3 "
    "COST_COLUMN_FMA_MEM COST_PANEL_BYTE COST_PANEL_BYTE_L3 COST_TILE COST_GEMM_FMA "
    "COST_A_BYTE"
).split()
SHAPES = [(100, 20), (300, 32), (1000, 8), (1000, 64), (1000, 256), (2000, 32)]
SHAPES += [(3000, 64), (4000, 64), (6000, 16)]


def configurations():
    for n, d in SHAPES:
        for k in (0.5, 3, 10, 40):
            for dt in ("float64", "float32"):
                if dt == "float32" and k in (0.5, 40):
                    continue
                yield n, d, min(0.5, k / n), dt


def measure(threads: int) -> list[dict]:
    numba.set_num_threads(threads)
    out = []
    for n, d, p, dt in configurations():
        rng = np.random.default_rng(0)
        W = (rng.standard_normal((d, n)) / np.sqrt(d)).astype(dt)
        model = fs.Model(W, activation="relu_power", exponent=2)
        inputs = fs.SparseInputs(n, p=p, values="uniform")
        for path in PATHS:
            fs.estimate_loss(model, inputs, 2000, seed=1, path=path)
        t0 = time.perf_counter()
        fs.estimate_loss(model, inputs, 4000, seed=1, path="columns")
        per = (time.perf_counter() - t0) / 4000
        N = int(max(20_000, min(1_000_000, 0.15 / max(per, 1e-9))))
        best = dict.fromkeys(PATHS, np.inf)
        for _ in range(3):
            for path in PATHS:
                t0 = time.perf_counter()
                fs.estimate_loss(model, inputs, N, seed=1, path=path)
                # ns per sample and thread
                best[path] = min(best[path], (time.perf_counter() - t0) / N * threads * 1e9)
        row = dict(n=n, d=d, p=p, dt=dt, N=N, k=inputs.expected_active, **best)
        print(row, flush=True)
        out.append(row)
    return out


def design(c: dict) -> dict:
    """The row of each path: coefficients of the constants in NAMES."""
    n, d, k, N = c["n"], c["d"], c["k"], c["N"]
    isz = 4 if c["dt"] == "float32" else 8
    base = [1.0, k, n]
    a_bytes = n * n * isz
    col = [0.0, 0.0, 0.0]
    col[0 if a_bytes <= E.L2_BYTES else 1 if a_bytes <= E.L3_BYTES else 2] = n * k
    tile = E.path_shape("columns_blocked", n, d, isz, k)[0]
    panel = [0.0, 0.0]
    panel[0 if n * tile * isz <= E.L2_BYTES // 2 else 1] = isz * n * k
    form = [n * n * d / N]
    return {
        "columns": base + col + [0.0, 0.0, 0.0] + form + [a_bytes / N],
        "columns_blocked": base + [0.0] * 3 + panel + [-(-n // tile)] + form + [2 * a_bytes / N],
        "blocked": base + [d * k, 0.0, 0.0] + [0.0] * 3 + [n * d, 0.0],
    }


def report(data: list[dict], choose) -> None:
    misses, worst = 0, 1.0
    for c in data:
        best = min(PATHS, key=lambda p: c[p])
        got = choose(c)
        if got != best:
            misses += 1
            worst = max(worst, c[got] / c[best])
            print(
                f"  n={c['n']} d={c['d']} p={c['p']:.3g} {c['dt']}: fastest {best}, "
                f"chosen {got} ({c[got] / c[best]:.2f}x slower)"
            )
    print(f"  {misses} of {len(data)} choices not the fastest; worst {worst:.2f}x")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="write the timings here")
    ap.add_argument("--load", help="read timings from here instead of measuring")
    args = ap.parse_args(argv)
    if args.load:
        with open(args.load) as f:
            data = json.load(f)
    else:
        data = measure(args.threads)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(data, f)
    X = np.array([np.array(design(c)[p]) / c[p] for c in data for p in PATHS])
    coef, _ = nnls(X, np.ones(len(X)))
    print("fitted constants (ns):")
    for name, v in zip(NAMES, coef):
        print(f"  {name:20s} {v:.4g}  (package: {getattr(E, name, float('nan')):.4g})")

    def fitted(c):
        rows = design(c)
        return min(PATHS, key=lambda p: float(np.dot(rows[p], coef)))

    def package(c):
        isz = 4 if c["dt"] == "float32" else 8
        costs = E.path_costs(c["n"], c["d"], c["k"], isz, c["N"])
        del costs["dense"]
        return min(costs, key=costs.get)

    print("fitted model:")
    report(data, fitted)
    print("package model:")
    report(data, package)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
