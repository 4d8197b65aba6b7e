"""Numba's threading layers (OpenMP, workqueue, TBB) on fastsuper's calls, quiet and contended.

    python scripts/threading_layers.py [--layers omp workqueue tbb] [--busy 2] [--json out.json]

For each layer a fresh process (``NUMBA_THREADING_LAYER=<layer>``, all of
Numba's threads) times, median of a few repeats:

* an empty ``prange`` region (the launch and join of the thread pool);
* ``estimate_loss`` of 2 000 samples at n = 20 (one sample block: nothing to share);
* ``estimate_loss`` of 200 000 samples at n = 200, d = 20 (enough to share);
* ``exact_loss_grad`` at n = 1000, d = 10, m = 3 (parallel row kernels);
* ``estimate_loss`` of 2 000 samples at n = 20 on one thread (its compute time);

once on the machine as it is and once beside ``--busy`` CPU-bound background
processes (started and stopped by this script).  ``omp:passive`` and
``omp:active`` are OpenMP with ``OMP_WAIT_POLICY`` set (idle threads sleep
at once, or spin; unset, GNU OpenMP spins a while then sleeps).  The TBB layer needs the
``tbb`` wheel; its library directory (``<venv>/lib``) is put on
``LD_LIBRARY_PATH`` for the child.  The load average is printed with every
table; docs/benchmarks.md has the numbers and the default chosen from them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

CHILD = r"""
import json, os, statistics, time
import numba, numpy as np
import fastsuper as fs

@numba.njit(parallel=True, cache=False)
def empty(a):
    for i in numba.prange(a.size):
        a[i] += 1.0

def med(f, reps, inner):
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        for _ in range(inner):
            f()
        out.append((time.perf_counter() - t) / inner)
    return statistics.median(out)

a = np.zeros(numba.get_num_threads())
empty(a)
rng = np.random.default_rng(0)
m20 = fs.Model(rng.normal(size=(5, 20)) / 2, exponent=3)
i20 = fs.SparseInputs(20, p=0.05)
m200 = fs.Model(rng.normal(size=(20, 200)) / 5, activation="relu")
i200 = fs.SparseInputs(200, p=0.02)
m1k = fs.Model(rng.normal(size=(10, 1000)) / 10, exponent=3)
i1k = fs.SparseInputs(1000, p=0.01)
small = lambda: fs.estimate_loss(m20, i20, 2000, progress=False)
big = lambda: fs.estimate_loss(m200, i200, 200_000, progress=False)
exact = lambda: fs.exact_loss_grad(m1k, i1k)
for f in (small, big, exact):
    f()
res = {
    "layer": numba.threading_layer(),
    "threads": numba.get_num_threads(),
    "empty_prange_us": 1e6 * med(lambda: empty(a), 5, 200),
    "mc_2000_n20_us": 1e6 * med(small, 5, 20),
    "mc_200k_n200_ms": 1e3 * med(big, 3, 1),
    "exact_grad_n1000_ms": 1e3 * med(exact, 3, 2),
}
numba.set_num_threads(1)
res["mc_2000_n20_1thread_us"] = 1e6 * med(small, 5, 20)
print(json.dumps(res))
"""

BUSY = "import time\nend = time.time() + 600\nwhile time.time() < end:\n    pass\n"


def _child(layer: str) -> dict:
    """One child process; ``layer`` is a layer name, ``omp:passive`` being OpenMP with
    ``OMP_WAIT_POLICY=PASSIVE`` (idle threads sleep at once instead of spinning)."""
    env = dict(os.environ)
    if layer.endswith(":passive"):
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    elif layer.endswith(":active"):
        env["OMP_WAIT_POLICY"] = "ACTIVE"
    env["NUMBA_THREADING_LAYER"] = layer.split(":")[0]
    if layer == "tbb":
        lib = os.path.join(sys.prefix, "lib")
        env["LD_LIBRARY_PATH"] = lib + os.pathsep + env.get("LD_LIBRARY_PATH", "")
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        return {"layer": layer, "error": out.stderr.strip().splitlines()[-1:]}
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["layer"] = layer
    return res


def _table(rows: list[dict], title: str) -> None:
    print(f"\n{title} (load average {os.getloadavg()[0]:.2f})")
    keys = ["empty_prange_us", "mc_2000_n20_us", "mc_2000_n20_1thread_us", "mc_200k_n200_ms",
            "exact_grad_n1000_ms"]  # fmt: skip
    print(f"{'layer':10s}" + "".join(f"{k:>24s}" for k in keys))
    for r in rows:
        if "error" in r:
            print(f"{r['layer']:10s}  failed: {r['error']}")
            continue
        print(f"{r['layer']:10s}" + "".join(f"{r[k]:24.1f}" for k in keys))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", nargs="+",
                    default=["omp:active", "omp:passive", "workqueue", "tbb"])  # fmt: skip
    ap.add_argument("--busy", type=int, default=2, help="CPU-bound background processes")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds per condition")
    ap.add_argument("--json", help="write every measurement to this file")
    args = ap.parse_args(argv)
    results = {}
    for condition in ("quiet", "contended"):
        busy = []
        if condition == "contended":
            busy = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(args.busy)]
            time.sleep(1.0)
        try:
            rows = {layer: [] for layer in args.layers}
            for _ in range(args.rounds):  # interleaved: layer A, B, C, A, B, C
                for layer in args.layers:
                    rows[layer].append(_child(layer))
        finally:
            for proc in busy:
                proc.kill()
                proc.wait()
        best = [_median_row(rows[layer]) for layer in args.layers]
        results[condition] = {"rows": best, "loadavg": os.getloadavg()}
        _table(best, f"{condition} ({args.busy if busy else 0} busy processes)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)


def _median_row(runs: list[dict]) -> dict:
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return runs[0]
    out = dict(ok[0])
    for k, val in ok[0].items():
        if isinstance(val, float):
            vals = sorted(r[k] for r in ok)
            out[k] = vals[len(vals) // 2]
    return out


if __name__ == "__main__":
    main()
