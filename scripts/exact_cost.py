"""``exact_loss_grad`` against the two matrix products it cannot avoid.

At n = 6000, d = 10, m = 3 (``power`` activation, Gaussian values, p = 1e-3,
float64), times side by side in alternating rounds (so that load from other
jobs hits both alike), best of ``--repeats``:

* ``exact_loss_grad(model, inputs)`` (loss and gradient in W and b);
* the products ``W.T @ W`` (n x n) and ``W @ G`` with a dense n x n ``G``
  (the shape of ``W Gamma``), NumPy/BLAS on the same threads;

and prints their ratio (the target is at most 3).

Usage::

    NUMBA_NUM_THREADS=2 python scripts/exact_cost.py [--n 6000] [--d 10] [--m 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numba
import numpy as np

import fastsuper as fs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=6000)
    ap.add_argument("--d", type=int, default=10)
    ap.add_argument("--m", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    n, d = args.n, args.d
    rng = np.random.default_rng(0)
    W = rng.standard_normal((d, n)) / np.sqrt(d)
    model = fs.Model(W, rng.normal(scale=0.1, size=n), activation="power", exponent=args.m)
    inputs = fs.SparseInputs(n, p=1e-3, values="gaussian")
    G = rng.standard_normal((n, n))
    fs.exact_loss_grad(model, inputs)  # compile / load the cache
    t_exact = t_mm = float("inf")
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        fs.exact_loss_grad(model, inputs)
        t_exact = min(t_exact, time.perf_counter() - t0)
        t0 = time.perf_counter()
        A = W.T @ W
        B = W @ G
        t_mm = min(t_mm, time.perf_counter() - t0)
        del A, B
    print(
        f"machine                {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, {numba.get_num_threads()} Numba threads"
    )
    print(f"sizes                  n={n} d={d} m={args.m} float64, best of {args.repeats}")
    print(f"exact_loss_grad        {t_exact * 1e3:.1f} ms")
    print(f"W.T @ W + W @ G        {t_mm * 1e3:.1f} ms")
    print(f"ratio                  {t_exact / t_mm:.2f}  (target <= 3)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
