"""Standard errors of the naive and stratified estimators at equal wall time (THEORY §4).

n = 1000 features in d = 64, relu_power 2, U[0, 1] values, float64, 2 threads,
p = 1e-4 (E K = 0.1) and p = 1e-5 (E K = 0.01).  For each p the two estimators
run side by side in alternating rounds (so that load from other jobs hits both
alike), each round on fresh samples (``start`` offsets).  From all rounds:

* throughput (samples / second of the sampling kernel, the whole
  ``estimate_loss`` call for the naive estimator);
* per-sample variance ``stderr**2 * n_samples`` (pooled over rounds);
* the fixed cost of the stratified estimator, ``low_order_terms`` (the exact
  k <= 1 strata, O(n**2) quadrature), timed on its own;
* the standard error each would reach in the same wall time ``T``::

      se_naive(T) = sqrt(var_naive / (rate_naive T))
      se_strat(T) = sqrt(var_strat / (rate_strat (T - t_fixed)))

  and their ratio, the gain, for ``T`` = the budget (and T -> infinity).

Usage::

    NUMBA_NUM_THREADS=2 python scripts/stratified_gain.py [--budget 20] [--rounds 4]
"""

from __future__ import annotations

import argparse
import math
import time

import numba
import numpy as np

import fastsuper as fs
from fastsuper.mc.stratified import stratified_estimate


def _frame(n, d, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((d, n)) / np.sqrt(d)


def _timed(func):
    t0 = time.perf_counter()
    out = func()
    return out, time.perf_counter() - t0


def run(n, d, p, budget, rounds, seed=0):
    model = fs.Model(_frame(n, d, seed), activation="relu_power", exponent=2)
    inputs = fs.SparseInputs(n, p=p, values="uniform")
    # warm-up: compile (or load) every kernel, measure rough rates
    terms = fs.low_order_terms(model, inputs)
    _, t_n = _timed(lambda: fs.estimate_loss(model, inputs, 200_000, seed=seed + 1))
    _, t_s = _timed(lambda: stratified_estimate(model, inputs, 20_000, seed=seed + 2, terms=terms))
    t_fixed = min(_timed(lambda: fs.low_order_terms(model, inputs))[1] for _ in range(3))
    share = budget / rounds  # wall time per round and estimator
    n_naive = max(2, int(200_000 * share / t_n))
    n_strat = max(2, int(20_000 * share / t_s))
    acc = {"naive": [0, 0.0, 0.0], "stratified": [0, 0.0, 0.0]}  # samples, time, sum var*N
    per_round = []  # (naive s/sample, stratified s/sample) of each round
    for r in range(rounds):
        est, t = _timed(
            lambda r=r: fs.estimate_loss(model, inputs, n_naive, seed=seed + 1, start=r * n_naive)
        )
        t_naive = t
        a = acc["naive"]
        a[0] += est.n_samples
        a[1] += t
        a[2] += est.stderr**2 * est.n_samples**2
        est, t = _timed(
            lambda r=r: stratified_estimate(
                model, inputs, n_strat, seed=seed + 2, start=r * n_strat, terms=terms
            )
        )
        a = acc["stratified"]
        a[0] += est.n_samples
        a[1] += t
        a[2] += est.stderr**2 * est.n_samples**2
        per_round.append(t / est.n_samples / (t_naive / n_naive))
    out = {"p": p, "EK": n * p, "t_fixed": t_fixed, "P_ge2": terms.p_ge2}
    for name, (N, t, vn) in acc.items():
        out[name] = {"samples": N, "seconds": t, "rate": N / t, "var": vn / N}
    nv, st = out["naive"], out["stratified"]
    out["var_ratio"] = nv["var"] / st["var"]
    out["cost_ratio"] = nv["rate"] / st["rate"]  # stratified sample cost / naive sample cost
    out["cost_ratio_rounds"] = (min(per_round), float(np.median(per_round)), max(per_round))

    def gain(T):
        se_n = math.sqrt(nv["var"] / (nv["rate"] * T))
        se_s = math.sqrt(st["var"] / (st["rate"] * (T - t_fixed)))
        return se_n / se_s

    out["gain_at_budget"] = gain(budget)
    out["gain_asymptotic"] = math.sqrt(out["var_ratio"] / out["cost_ratio"])
    out["budget"] = budget
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--d", type=int, default=64)
    ap.add_argument("--p", type=float, nargs="+", default=[1e-4, 1e-5])
    ap.add_argument("--budget", type=float, default=20.0, help="seconds per estimator and p")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    print(
        f"n = {args.n}, d = {args.d}, relu_power 2, uniform values, float64, "
        f"{numba.get_num_threads()} threads, budget {args.budget:g} s per estimator"
    )
    for p in args.p:
        r = run(args.n, args.d, p, args.budget, args.rounds)
        nv, st = r["naive"], r["stratified"]
        print(f"\np = {p:g} (E K = {r['EK']:g}), P(K >= 2) = {r['P_ge2']:.4g}")
        print(f"  low_order_terms (fixed cost of stratified): {r['t_fixed']:.3f} s")
        for name, s in (("naive", nv), ("stratified", st)):
            print(
                f"  {name:<10} {s['samples']:>11,d} samples in {s['seconds']:6.2f} s "
                f"({s['rate']:.3g}/s), per-sample variance {s['var']:.4g}"
            )
        print(f"  per-sample variance ratio naive/stratified: {r['var_ratio']:.4g}")
        lo, med, hi = r["cost_ratio_rounds"]
        print(
            f"  per-sample cost ratio stratified/naive:     {r['cost_ratio']:.3g} "
            f"(rounds: min {lo:.3g}, median {med:.3g}, max {hi:.3g})"
        )
        print(
            f"  stderr ratio naive/stratified at equal wall time: "
            f"{r['gain_at_budget']:.1f}x at T = {r['budget']:g} s "
            f"(fixed cost included), {r['gain_asymptotic']:.1f}x as T -> inf"
        )


if __name__ == "__main__":
    main()
