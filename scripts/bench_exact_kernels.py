"""The exact loss and gradient by the fused and the moment-tensor kernels, side by side.

    python scripts/bench_exact_kernels.py [--n 6000] [--d 2 4 6 8 10 12] [--m 3]
                                          [--rounds 5] [--large 50000]

For each hidden dimension ``d``: ``ExactEvaluator(kernel=...).loss_grad`` of
one random model (Gaussian values, p = 1e-3) by both kernels, interleaved
(fused, tensor, fused, ...) for ``--rounds`` rounds in one process, with the
matmul rate F (a 2048 x 2048 float64 product, best of 3, then a pause of
half a second for OpenBLAS's threads to stop spinning) measured between
rounds.  Prints each kernel's median wall time, its rate as a percentage of
F counting the pairwise work ``n**2 (4d + 4m)`` (the fused kernel's), the
ratio fused / tensor, the kernel that ``kernel="auto"`` picks and the cost
model's ratio (``config.EXACT_TENSOR_COST``).  ``--large N`` adds the
moment-tensor kernel alone at ``n = N`` for the smallest ``d``.  The load
average is printed first; docs/benchmarks.md ("Moment-tensor exact kernel")
has the numbers.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

import fastsuper as fs
from fastsuper.exact.kernels_prepared import exact_flops
from fastsuper.exact.kernels_tensor import tensor_cost
from fastsuper.exact.prepared import default_kernel


def _matmul_rate() -> float:
    """F; then a pause, so that BLAS threads still spinning after the product do not take
    the cores from the kernels timed next."""
    A = np.random.default_rng(1).normal(size=(2048, 2048))
    best = min(_timed(lambda: A @ A) for _ in range(3))
    time.sleep(0.5)
    return 2 * 2048**3 / best


def _timed(f) -> float:
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def _row(n: int, d: int, m: int, rounds: int, kernels) -> None:
    rng = np.random.default_rng(0)
    W = rng.normal(size=(d, n)) / np.sqrt(d)
    inputs = fs.SparseInputs(n, p=1e-3, values="gaussian")
    evs = {k: fs.ExactEvaluator(inputs, d, m, kernel=k) for k in kernels}
    for ev in evs.values():
        ev.loss_grad(W)  # compile and warm
    times = {k: [] for k in kernels}
    rates = []
    for _ in range(rounds):
        rates.append(_matmul_rate())
        for k, ev in evs.items():
            times[k].append(_timed(lambda ev=ev: ev.loss_grad(W)))
    F = statistics.median(rates)
    flops = exact_flops(n, d, m)
    cells = []
    for k in kernels:
        t = statistics.median(times[k])
        cells.append(f"{k} {t * 1e3:8.1f} ms {100 * flops / t / F:6.1f} % of F")
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = f"fused/tensor {med['fused'] / med['tensor']:5.2f}" if len(kernels) == 2 else ""
    model = exact_flops(n, d, m) / tensor_cost(n, d, m)
    auto = default_kernel(n, d, m)
    print(f"n={n:6d} d={d:3d} m={m}  " + "  ".join(cells) + f"  {ratio}  auto={auto}"
          f"  model fused/tensor {model:5.2f}  F={F / 1e9:.0f} GFLOP/s", flush=True)  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=6000)
    ap.add_argument("--d", type=int, nargs="+", default=[2, 4, 6, 8, 10, 12])
    ap.add_argument("--m", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--large", type=int, default=None)
    args = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}", flush=True)
    for d in args.d:
        _row(args.n, d, args.m, args.rounds, ("fused", "tensor"))
    if args.large:
        _row(args.large, min(args.d), args.m, args.rounds, ("tensor",))


if __name__ == "__main__":
    main()
