"""Small problems and busy machines: fastsuper's fixed costs, side by side with another checkout.

    python scripts/bench_small.py OTHER_CHECKOUT [THIS_CHECKOUT] [--pairs 3] [--busy 2]
                                  [--rows ROW ...] [--conditions quiet contended]
                                  [--json out.json]

Every row of the table is measured in fresh processes, one per checkout
(``PYTHONPATH=<checkout>``), interleaved OTHER, THIS, OTHER, THIS, ... for
``--pairs`` pairs; the table gives each side's median and the median of the
per-pair ratios THIS / OTHER (below 1: THIS is faster).  Then the same beside
``--busy`` CPU-bound background processes (started and stopped here).  The
load average is printed with each table.  The children use the environment
as given (set ``NUMBA_NUM_THREADS`` / ``OPENBLAS_NUM_THREADS`` to measure
other thread counts).  Rows (``--rows``):

gain_grad    ``exact_gain_grad`` at n = 100, d = 5, m = 3, per call (wall time ``us`` and
             CPU time ``cpu_us``, the fairer measure beside other processes)
prepared     the same through ``ExactEvaluator.gain_grad`` (the public call where a
             checkout has no ExactEvaluator)
fit_exact    ``fit_exact(100, 5, m=3, p=1e-2)`` (its gain must agree to 1e-10)
prange       an empty ``prange`` region
mc_empty     ``estimate_loss`` of 2 000 samples at n = 20 (and, in ``x1``, on one thread)
mc_small     ``estimate_loss`` of 20 000 samples at n = 50
exact_6000   ``exact_loss_grad`` at n = 6000, d = 10, m = 3 (the kernel the checkout
             picks from ``config.EXACT_FUSED_FROM`` on: fused or moment-tensor), with the
             percentage of the matmul rate F measured in the same process
             (n**2 (4d + 4m) flops); where the checkout has it,
             ``ExactEvaluator(kernel="fused")`` in ``fused``

docs/benchmarks.md ("Small problems") has the numbers measured with it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROWS = ["gain_grad", "prepared", "fit_exact", "prange", "mc_empty", "mc_small", "exact_6000"]

CHILD = r"""
import json, statistics, sys, time
import numba, numpy as np
import fastsuper as fs

row = sys.argv[1]

def med(f, reps=5, inner=1, clock=time.perf_counter):
    f()
    out = []
    for _ in range(reps):
        t = clock()
        for _ in range(inner):
            f()
        out.append((clock() - t) / inner)
    return statistics.median(out)

res = {}
rng = np.random.default_rng(0)
if row in ("gain_grad", "prepared"):
    W = rng.normal(size=(5, 100)) * 0.3
    model, inputs = fs.Model(W, exponent=3), fs.SparseInputs(100, p=0.01)
    if row == "prepared" and hasattr(fs, "ExactEvaluator"):
        ev = fs.ExactEvaluator(inputs, 5, 3)
        f = lambda: ev.gain_grad(W)
    else:
        f = lambda: fs.exact_gain_grad(model, inputs)
    res["us"] = 1e6 * med(f, 5, 200)
    res["cpu_us"] = 1e6 * med(f, 5, 200, time.process_time)  # CPU time of this process
elif row == "fit_exact":
    fs.fit_exact(4, 2, m=3, p=0.1, restarts=0, progress=False)  # load the kernels
    t = time.perf_counter()
    fit = fs.fit_exact(100, 5, m=3, p=1e-2, progress=False)
    res["s"] = time.perf_counter() - t
    res["gain"] = fit.gain
elif row == "prange":
    @numba.njit(parallel=True)
    def empty(a):
        for i in numba.prange(a.size):
            a[i] += 1.0
    a = np.zeros(numba.get_num_threads())
    res["us"] = 1e6 * med(lambda: empty(a), 5, 200)
elif row == "mc_empty":
    model = fs.Model(rng.normal(size=(5, 20)) / 2, exponent=3)
    inputs = fs.SparseInputs(20, p=0.05)
    f = lambda: fs.estimate_loss(model, inputs, 2000, progress=False)
    res["us"] = 1e6 * med(f, 5, 20)
    numba.set_num_threads(1)
    res["x1"] = 1e6 * med(f, 5, 20)
elif row == "mc_small":
    model = fs.Model(rng.normal(size=(10, 50)) / 3, exponent=3)
    inputs = fs.SparseInputs(50, p=0.05)
    res["ms"] = 1e3 * med(lambda: fs.estimate_loss(model, inputs, 20_000, progress=False), 5, 5)
elif row == "exact_6000":
    n, d, m = 6000, 10, 3
    W = rng.normal(size=(d, n)) / np.sqrt(n)
    model, inputs = fs.Model(W, exponent=m), fs.SparseInputs(n, p=0.01)
    A = rng.normal(size=(2048, 2048))
    F = 2 * 2048**3 / med(lambda: A @ A, 3)
    t = med(lambda: fs.exact_loss_grad(model, inputs), 3)
    flops = n * n * (4 * d + 4 * m)
    res.update(ms=1e3 * t, pct_F=100 * flops / t / F, F_gflops=F / 1e9)
    if hasattr(fs, "ExactEvaluator"):
        ev = fs.ExactEvaluator(inputs, d, m, kernel="fused")
        tf = med(lambda: ev.loss_grad(W), 3)
        res.update(fused=1e3 * tf, fused_pct_F=100 * flops / tf / F)
print(json.dumps(res))
"""

BUSY = "import time\nend = time.time() + 3600\nwhile time.time() < end:\n    pass\n"
#: the headline number of each row (the one the ratio is taken of)
KEY = {"gain_grad": "us", "prepared": "us", "fit_exact": "s", "prange": "us",
       "mc_empty": "us", "mc_small": "ms", "exact_6000": "ms"}  # fmt: skip


def _child(checkout: Path, row: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(checkout))
    out = subprocess.run([sys.executable, "-c", CHILD, row], env=env, capture_output=True,
                         text=True, cwd=checkout)  # fmt: skip
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def _fmt(runs: list[dict], key: str) -> str:
    ok = [r[key] for r in runs if key in r]
    return f"{statistics.median(ok):.4g}" if ok else "-"


def _measure(other: Path, this: Path, rows: list[str], pairs: int) -> dict:
    table = {}
    for row in rows:
        old, new, ratios = [], [], []
        for _ in range(pairs):
            o, n = _child(other, row), _child(this, row)
            old.append(o)
            new.append(n)
            k = KEY[row]
            if k in o and k in n:
                ratios.append(n[k] / o[k])
        table[row] = {"other": old, "this": new, "ratios": ratios}
        extra = [k for k in new[0] if k not in (KEY[row], "gain")]
        line = (f"{row:11s} {KEY[row]:>3s}  other {_fmt(old, KEY[row]):>9s}  this "
                f"{_fmt(new, KEY[row]):>9s}  ratio this/other "
                f"{statistics.median(ratios) if ratios else float('nan'):7.3f}")  # fmt: skip
        for k in extra:
            line += f"   {k}: {_fmt(old, k)} / {_fmt(new, k)}"
        if row == "fit_exact":
            gains = [r.get("gain") for r in old + new if "gain" in r]
            if gains:
                line += f"   gains agree to {max(gains) - min(gains):.2e}"
        errors = [r["error"] for r in old + new if "error" in r]
        if errors:
            line += f"   errors: {errors[0]}"
        print(line, flush=True)
    return table


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("other", type=Path, help="the checkout to compare with (e.g. main)")
    ap.add_argument("this", type=Path, nargs="?", default=Path(__file__).resolve().parents[1])
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--busy", type=int, default=2, help="CPU-bound background processes")
    ap.add_argument("--rows", nargs="+", default=ROWS, choices=ROWS)
    ap.add_argument("--conditions", nargs="+", default=["quiet", "contended"],
                    choices=["quiet", "contended"])  # fmt: skip
    ap.add_argument("--json", help="write every measurement to this file")
    args = ap.parse_args(argv)
    other, this = args.other.resolve(), args.this.resolve()
    results = {}
    # a terminated run still stops its background processes (the finally below)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    for condition in args.conditions:
        busy = []
        if condition == "contended":
            busy = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(args.busy)]
            time.sleep(1.0)
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        print(f"\n{condition}: {len(busy)} busy processes, load average {load}; "
              f"other = {other}, this = {this}")  # fmt: skip
        try:
            results[condition] = _measure(other, this, args.rows, args.pairs)
        finally:
            for proc in busy:
                proc.kill()
                proc.wait()
        results[condition + "_loadavg_end"] = os.getloadavg()
        print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
