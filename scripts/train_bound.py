"""Where a training step's time goes: each instance's cost, and what a split of them allows.

For one configuration ``N,D,INSTANCES`` of ``compare_torch_train.py`` (Elhage
et al.'s toy models: ReLU with bias, U[0, 1] values, ``p = 50 **
-linspace(0, 1, INSTANCES)``, importance ``0.9 ** arange(N)``, Adam, batch
1024), this script measures on one thread the seconds per step of every
instance alone (``fit`` with that instance's ``p``), then:

* the bound: the instances split over ``--threads`` work items by the greedy
  rule of ``fit`` (largest first, to the least loaded) using these measured
  costs; the largest item's sum is the shortest a step can take with the
  instances' current costs; beside it, the largest item of the split that
  ``fit`` makes from its estimated costs, with the measured ones;
* the measured rate of the whole configuration on ``--threads`` threads and
  its fraction of the bound (each round times every instance alone, then
  the whole configuration, so that a change in the machine's speed reaches
  both; each is the best of ``--repeats`` rounds);
* on the BLAS path, the rate of one sub-batch's product ``H W`` repeated in a
  compiled loop on one thread, beside a 2048-square matmul on one thread: how
  close the products themselves come to the machine;
* the products as run at that rate (five a sub-batch where the inputs are
  dense, three where they are sparse, none in the Gram space, whose
  ``2 n E[K]`` multiply-adds a sample are loops, not products): their share of
  the instances' costs, and
  the steps/s a step of nothing but them would allow on the same split, the
  ceiling of every change that leaves the products as they are.

Nothing runs in parallel with the one-thread measurements but the machine's
own load (printed before and after: compare only quiet runs).

usage: python scripts/train_bound.py [--config 100,20,10] [--steps 200] [--threads 2]
       [--repeats 5] [--dtype float64]
"""

from __future__ import annotations

import argparse
import os
import time

import numba
import numpy as np
from threadpoolctl import threadpool_limits

from fastsuper.core import config
from fastsuper.core.arguments import check_law
from fastsuper.train.adam import _blas_rows, _gram_instances, _groups, _plan, fit
from fastsuper.train.kernels_cpu import blas_width


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="100,20,10", metavar="N,D,INSTANCES")
    ap.add_argument("--steps", type=int, default=200, help="steps per timed run")
    ap.add_argument("--threads", type=int, default=2, help="threads of the whole run")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs per measurement")
    ap.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    args = ap.parse_args(argv)
    try:
        args.n, args.d, args.instances = (int(x) for x in args.config.split(","))
    except ValueError:
        ap.error(f"--config must be N,D,INSTANCES (integers), got {args.config!r}")
    if min(args.n, args.d, args.instances, args.steps, args.threads, args.repeats) < 1:
        ap.error("--config values, --steps, --threads and --repeats must be >= 1")
    return args


def fit_kwargs(n, p, dtype):
    """``fit``'s arguments for the instances of feature probabilities ``p``."""
    return dict(
        n_instances=np.size(p), p=p, importance=0.9 ** np.arange(n), batch_size=1024,
        lr=1e-3, dtype=dtype, progress=False,
    )  # fmt: skip


def step_seconds(n, d, p, steps, dtype, threads):
    """Seconds per step of one ``fit`` run on ``threads`` threads (compiled before)."""
    numba.set_num_threads(threads)
    t0 = time.perf_counter()
    fit(n, d, steps=steps, log_every=steps, **fit_kwargs(n, p, dtype))
    return (time.perf_counter() - t0) / steps


def greedy_split(costs, items):
    """Largest load of ``fit``'s split (:func:`fastsuper.train.adam._groups`) of ``costs``."""
    groups = _groups(costs, items)
    return max(float(costs[g[g >= 0]].sum()) for g in groups)


@numba.njit
def _dot_loop(A, B, C, reps):
    for _ in range(reps):
        np.dot(A, B, C)
    return C[0, 0]


def hot_rate(m, k, n, dtype, reps=2000):
    """FLOP/s of ``(m, k) @ (k, n)`` repeated in a compiled loop, best of 5 (one thread)."""
    rng = np.random.default_rng(0)
    A = rng.random((m, k)).astype(dtype)
    B = rng.random((k, n)).astype(dtype)
    C = np.empty((m, n), dtype)
    _dot_loop(A, B, C, 1)
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        _dot_loop(A, B, C, reps)
        best = min(best, (time.perf_counter() - t0) / reps)
    return 2.0 * m * k * n / best


def matmul_rate(dtype, size=2048):
    """FLOP/s of a ``size``-square matmul, best of 3."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size)).astype(dtype)
    a @ a
    best = min(_timed(lambda: a @ a) for _ in range(3))
    return 2.0 * size**3 / best


def _timed(f):
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


def main(argv=None) -> int:
    args = parse_args(argv)
    n, d, inst, dtype = args.n, args.d, args.instances, np.dtype(args.dtype)
    ps = 50.0 ** -np.linspace(0, 1, inst)
    threads = min(args.threads, numba.config.NUMBA_NUM_THREADS)
    for p in [*ps, ps]:  # compile
        fit(n, d, steps=2, log_every=1, **fit_kwargs(n, p, dtype))
    load0 = os.getloadavg()
    # interleaved: every round times each instance alone, then all of them, so
    # that a change in the machine's speed reaches both; the best round of each
    costs = np.full(inst, np.inf)
    whole = np.inf
    with threadpool_limits(1):
        for _ in range(args.repeats):
            for k, p in enumerate(ps):
                costs[k] = min(costs[k], step_seconds(n, d, p, args.steps, dtype, 1))
            whole = min(whole, step_seconds(n, d, ps, args.steps, dtype, threads))
        numba.set_num_threads(1)
        rows = _blas_rows(n, d, 1024)
        if rows:
            D = blas_width(d, n, dtype.itemsize)
            prod = hot_rate(rows, D, n, dtype)
            peak1 = matmul_rate(dtype)
    load1 = os.getloadavg()
    bound = greedy_split(costs, min(args.threads, inst))
    P = np.repeat(ps[:, None], n, axis=1)
    groups = _plan(n, d, 1024, P, check_law("values", "uniform"), dtype, False,
                   min(args.threads, inst))[-1]  # fmt: skip
    fit_split = max(float(costs[g[g >= 0]].sum()) for g in groups)
    print(f"n={n} d={d} instances={inst} {dtype.name}; load average {load0[0]:.2f} before, "
          f"{load1[0]:.2f} after")  # fmt: skip
    ratio = config.DENSE_X_RATIO if dtype == np.float64 else config.DENSE_X_RATIO_SINGLE
    dense_x = ratio * ps * n >= n
    gram = _gram_instances(n, d, rows, ps * n, dense_x, dtype)
    print(f"{'p':>8} {'E[K]':>7} {'path':>10} {'us/step (1 thread)':>20}")
    for p, c, dx, gr in zip(ps, costs, dense_x, gram):
        path = ("dense x" if dx else "Gram" if gr else "sparse x") if rows else "per sample"
        print(f"{p:8.4f} {p * n:7.2f} {path:>10} {c * 1e6:20.1f}")
    print(
        f"sum of the instances' costs: {costs.sum() * 1e6:.0f} us; split over "
        f"{min(args.threads, inst)} threads: {bound * 1e6:.0f} us = {1 / bound:.1f} steps/s "
        f"(fit's own split, from its estimated costs: {fit_split * 1e6:.0f} us)"
    )
    print(f"measured on {args.threads} threads: {whole * 1e6:.0f} us = {1 / whole:.1f} steps/s, "
          f"{bound / whole:.2f} of the bound")  # fmt: skip
    if rows:
        print(f"sub-batch product H W ({rows} x {D}) @ ({D} x {n}) in a compiled loop: "
              f"{prod / 1e9:.1f} GFLOP/s = {prod / peak1:.2f} of a 2048-square matmul on one "
              f"thread ({peak1 / 1e9:.1f} GFLOP/s)")  # fmt: skip
        # the products as run: five a sub-batch with dense inputs (X W^T, H W, H^T G, G W^T,
        # U^T X), three without (H W, H^T G, G W^T), none in the Gram space; at the rate
        # above, and what a step of nothing but them would allow on the same split
        flops = 1024 * 2.0 * n * D * np.where(dense_x, 5, np.where(gram, 0, 3))
        t_prod = flops / prod
        floor = greedy_split(t_prod, min(args.threads, inst))
        print(f"products as run: {flops.sum() / 1e6:.1f} MFLOP a step, {t_prod.sum() * 1e6:.0f} us "
              f"at that rate = {t_prod.sum() / costs.sum():.0%} of the instances' costs; the "
              f"products alone: {floor * 1e6:.0f} us = {1 / floor:.1f} steps/s, "
              f"{bound / floor:.2f}x the split above")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
