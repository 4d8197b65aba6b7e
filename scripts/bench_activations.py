"""Monte-Carlo throughput of every activation against relu_power 1, side by side.

n = 1000, d = 64, p = 0.01, uniform values, the auto path.  Each round times,
for every activation in turn, relu_power 1, the activation, and relu_power 1
again (``--samples`` each, by this process's CPU time, ``time.process_time``:
run it with ``NUMBA_NUM_THREADS=1``); the ratio of that round is the
activation's time over the mean of the two relu times around it, so that a
change in the machine's speed within a round (this VM's drifts by tens of
percent within seconds) hits both sides alike.  The table shows the median
ratio and the median samples/s over the rounds, with the load average before
and after.  Usage::

    python scripts/bench_activations.py [--dtype float32] [--rounds 15] [--samples 20000]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

import fastsuper as fs

NAMES = ["relu_power", "leaky_relu", "identity", "gelu", "gelu_tanh", "silu", "sigmoid",
         "tanh", "softplus"]  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--samples", type=int, default=20_000)
    args = ap.parse_args()
    n, d, p = 1000, 64, 0.01
    rng = np.random.default_rng(0)
    W = (rng.standard_normal((d, n)) / np.sqrt(d)).astype(args.dtype)
    inputs = fs.SparseInputs(n, p=p, values="uniform")
    models = {a: fs.Model(W, activation=a, exponent=1 if a == "relu_power" else None)
              for a in NAMES}  # fmt: skip
    paths = {a: fs.estimate_loss(m, inputs, args.samples, seed=0).path for a, m in models.items()}

    def seconds(model) -> float:
        t0 = time.process_time()
        fs.estimate_loss(model, inputs, args.samples, seed=1)
        return time.process_time() - t0

    load0 = os.getloadavg()
    rates: dict[str, list[float]] = {a: [] for a in NAMES}
    ratios: dict[str, list[float]] = {a: [] for a in NAMES}
    relu = models["relu_power"]
    for _ in range(args.rounds):
        for a, m in models.items():
            before, t, after = seconds(relu), seconds(m), seconds(relu)
            rates[a].append(args.samples / t)
            ratios[a].append(2.0 * t / (before + after))
    load1 = os.getloadavg()
    print(f"dtype {args.dtype}, {args.rounds} rounds of {args.samples} samples; load average "
          f"{load0[0]:.2f} before, {load1[0]:.2f} after")  # fmt: skip
    print(f"{'activation':<12} {'path':<16} {'samples/s':>12} {'this / relu_power 1':>20}")
    for a in NAMES:
        r, q = float(np.median(rates[a])), float(np.median(ratios[a]))
        print(f"{a:<12} {paths[a]:<16} {r:>12,.0f} {q:>20.2f}")


if __name__ == "__main__":
    main()
