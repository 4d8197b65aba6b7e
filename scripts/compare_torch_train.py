"""fastsuper's ``fit`` against the PyTorch training peer, side by side in one run.

For each configuration ``N,D,INSTANCES,STEPS`` both train Elhage et al.'s toy
models the same way: ReLU output with bias, U[0, 1] values, feature
probability ``50 ** -linspace(0, 1, INSTANCES)`` across instances,
importance ``0.9 ** arange(N)``, importance-weighted mean squared error,
Adam (lr 1e-3), batch 1024, STEPS steps.  Reported: steps per second of

* fastsuper ``fit`` (compiled before timing; best of ``--repeats``) with
  ``numba.set_num_threads(--threads)``, in float64 and float32;
* the peer ``torch_train.py`` (shared/peers) run as a subprocess with
  ``OMP_NUM_THREADS`` etc. set to each count in ``--peer-threads``
  (default: ``--threads`` and 1, since on a busy machine PyTorch may be
  faster on one thread than on two);

and the ratios fastsuper / peer.  The peer runs its default dtype (float32).

usage: python scripts/compare_torch_train.py [--threads 2] [--config 5,2,8,2000 ...]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PEER = ROOT.parent / "shared" / "peers" / "torch_train.py"
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
DEFAULT_CONFIGS = ("5,2,8,2000", "100,20,10,300")


def parse_args(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    ap.add_argument(
        "--config",
        action="append",
        metavar="N,D,INSTANCES,STEPS",
        help=f"a configuration (repeatable; default {' and '.join(DEFAULT_CONFIGS)})",
    )
    ap.add_argument("--threads", type=int, default=2, help="fastsuper's threads")
    ap.add_argument(
        "--peer-threads", default=None, help="comma-separated thread counts for the peer"
    )
    ap.add_argument("--repeats", type=int, default=3, help="timed fastsuper runs (best kept)")
    ap.add_argument("--batch", type=int, default=1024, help="batch size")
    ap.add_argument("--peer", type=Path, default=DEFAULT_PEER, help="path of torch_train.py")
    ap.add_argument(
        "--torch-python",
        default=sys.executable,
        help="Python interpreter with torch installed, for the peer",
    )
    ap.add_argument("--json", type=Path, metavar="PATH", help="also write the results here")
    args = ap.parse_args(argv)
    args.config = args.config or list(DEFAULT_CONFIGS)
    configs = []
    for text in args.config:
        try:
            n, d, inst, steps = (int(x) for x in text.split(","))
        except ValueError:
            ap.error(f"--config must be N,D,INSTANCES,STEPS (integers), got {text!r}")
        if min(n, d, inst, steps) < 1:
            ap.error(f"--config values must be >= 1, got {text!r}")
        configs.append((n, d, inst, steps))
    args.configs = configs
    peer_threads = args.peer_threads or f"{args.threads},1"
    try:
        args.peer_thread_counts = sorted({int(x) for x in peer_threads.split(",")}, reverse=True)
    except ValueError:
        ap.error(f"--peer-threads must be comma-separated integers, got {peer_threads!r}")
    if args.threads < 1 or args.repeats < 1 or args.batch < 1:
        ap.error("--threads, --repeats and --batch must be >= 1")
    if not args.peer.is_file():
        ap.error(f"the peer {args.peer} does not exist; pass --peer PATH/TO/torch_train.py")
    return args


def run_fastsuper(n, d, inst, steps, batch, dtype, repeats):
    """Best steps/s of ``fit`` (after a compiling call) and the final batch losses.

    The losses are means over features, as the peer reports them (fastsuper's
    ``final_loss`` is the sum over features).
    """
    import numpy as np

    from fastsuper.train.adam import fit

    kw = dict(
        n_instances=inst,
        importance=0.9 ** np.arange(n),
        batch_size=batch,
        lr=1e-3,
        dtype=dtype,
        log_every=max(1, steps - 1),
    )
    fit(n, d, steps=2, **kw)  # compile (or load from the cache)
    best, res = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        res = fit(n, d, steps=steps, **kw)
        best = min(best, time.perf_counter() - t0)
    return steps / best, res.final_loss_mean_over_features.tolist()


def run_peer(args, n, d, inst, steps, threads):
    env = dict(os.environ)
    for var in THREAD_VARS:
        env[var] = str(threads)
    cmd = [args.torch_python, str(args.peer), str(n), str(d), str(inst), str(steps)]
    cmd.append(str(args.batch))
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        return None, f"peer failed: {exc}"
    m = re.search(r"steps/s=([0-9.]+) final=(\[.*\])", out)
    if not m:
        return None, f"could not parse the peer's output: {out!r}"
    return float(m.group(1)), json.loads(m.group(2))


def main(argv=None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(ROOT))
    import numba
    import numpy as np

    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    print(
        f"fastsuper fit vs PyTorch peer; fastsuper threads={numba.get_num_threads()}, "
        f"peer threads={args.peer_thread_counts}, batch={args.batch}, cpus={os.cpu_count()}, "
        f"load average={os.getloadavg()[0]:.2f}"
    )
    results = []
    for n, d, inst, steps in args.configs:
        row = dict(n=n, d=d, instances=inst, steps=steps, batch=args.batch)
        for dt in ("float64", "float32"):
            rate, final = run_fastsuper(
                n, d, inst, steps, args.batch, getattr(np, dt), args.repeats
            )
            row[f"fastsuper_{dt}_steps_per_s"] = rate
            row[f"fastsuper_{dt}_final"] = final
            print(f"  n={n} d={d} inst={inst} steps={steps}: fastsuper {dt}: {rate:9.1f} steps/s")
        for th in args.peer_thread_counts:
            rate, final = run_peer(args, n, d, inst, steps, th)
            if rate is None:
                print(f"  peer ({th} threads): {final}")
                continue
            row[f"peer_{th}t_steps_per_s"] = rate
            row[f"peer_{th}t_final"] = final
            r64 = row["fastsuper_float64_steps_per_s"] / rate
            r32 = row["fastsuper_float32_steps_per_s"] / rate
            print(
                f"  n={n} d={d} inst={inst} steps={steps}: peer {th} thread(s): {rate:9.1f} "
                f"steps/s -> fastsuper/peer = {r64:.1f}x (float64), {r32:.1f}x (float32)"
            )
        f64 = np.round(row["fastsuper_float64_final"], 5).tolist()
        print(f"    final batch losses: fastsuper float64 {f64}")
        for th in args.peer_thread_counts:
            if f"peer_{th}t_final" in row:
                print(f"                        peer {th} thread(s) {row[f'peer_{th}t_final']}")
        results.append(row)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
