"""fastsuper's ``fit`` against the PyTorch training peer, side by side in one run.

For each configuration ``N,D,INSTANCES,STEPS`` both train Elhage et al.'s toy
models the same way: ReLU output with bias, U[0, 1] values, feature
probability ``50 ** -linspace(0, 1, INSTANCES)`` across instances,
importance ``0.9 ** arange(N)``, importance-weighted mean squared error,
Adam (lr 1e-3), batch 1024, STEPS steps.

The runs are interleaved: each of ``--rounds`` rounds (default 3) times
fastsuper ``fit`` (compiled before timing) in float64 and float32 with
``numba.set_num_threads(--threads)``, then the peer ``torch_train.py``
(shared/peers) as a subprocess at each thread count of ``--peer-threads``
(``OMP_NUM_THREADS`` etc.; default ``--threads`` and 1).  Reported per
configuration: the median steps/s of each side over the rounds, the peer at
its best thread count, the median of the per-round ratios fastsuper / peer,
and the fraction of the machine's matmul rate F (a 2048-square NumPy matmul
on ``--threads`` BLAS threads, float64 and float32, measured in the same run:
before the first configuration and again in every round, the best of these
kept, so that one measurement slowed by other work does not lower the
limit; their range is printed) that fastsuper reaches on the step's necessary flops
``batch * instances * (6 n d + 4 E[K] d)`` (forward ``W x`` over the active
features and ``W^T h``; backward ``h g^T``, ``W g`` and the encoder term).
The load average is printed before and after: compare only quiet runs.
The peer runs its default dtype (float32).

usage: python scripts/compare_torch_train.py [--threads 2] [--rounds 3]
       [--config 5,2,8,2000 ...] [--torch-python PYTHON_WITH_TORCH]
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
DEFAULT_CONFIGS = ("5,2,8,2000", "100,20,10,300", "400,30,100,20")


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
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median kept)")
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
    if args.threads < 1 or args.rounds < 1 or args.batch < 1:
        ap.error("--threads, --rounds and --batch must be >= 1")
    if not args.peer.is_file():
        ap.error(f"the peer {args.peer} does not exist; pass --peer PATH/TO/torch_train.py")
    return args


def fit_kwargs(n, inst, batch, dtype):
    """The keyword arguments of ``fit`` that match the peer's training."""
    import numpy as np

    return dict(
        n_instances=inst,
        importance=0.9 ** np.arange(n),
        batch_size=batch,
        lr=1e-3,
        dtype=dtype,
        progress=False,
    )


def run_fastsuper(n, d, inst, steps, batch, dtype):
    """Steps/s of one ``fit`` run and its final batch losses.

    The losses are means over features, as the peer reports them (fastsuper's
    ``final_loss`` is the sum over features).  Call :func:`compile_fastsuper` first.
    """
    from fastsuper.train.adam import fit

    t0 = time.perf_counter()
    res = fit(n, d, steps=steps, log_every=max(1, steps - 1), **fit_kwargs(n, inst, batch, dtype))
    return steps / (time.perf_counter() - t0), res.final_loss_mean_over_features.tolist()


def compile_fastsuper(n, d, inst, batch, dtype):
    """Compile (or load from the cache) the kernels of one configuration."""
    from fastsuper.train.adam import fit

    fit(n, d, steps=2, log_every=1, **fit_kwargs(n, inst, batch, dtype))


def matmul_flops(np, dtype, size=2048, repeats=3) -> float:
    """Best-of-``repeats`` FLOP/s of a ``size``-square NumPy matmul."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size)).astype(dtype)
    b = rng.standard_normal((size, size)).astype(dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2.0 * size**3 / best


def step_flops(n, d, inst, batch) -> float:
    """Necessary flops of one training step: ``batch * inst * (6 n d + 4 E[K] d)``."""
    import numpy as np

    expected_k = n * float(np.mean(50.0 ** -np.linspace(0, 1, inst)))
    return float(batch) * inst * (6.0 * n * d + 4.0 * expected_k * d)


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


def median(xs):
    xs = sorted(xs)
    k = len(xs)
    return xs[k // 2] if k % 2 else 0.5 * (xs[k // 2 - 1] + xs[k // 2])


def measure_f(args, np, samples):
    """Append a matmul rate per dtype (on ``--threads`` BLAS threads) to ``samples``."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(args.threads, user_api="blas"):
        for dt in ("float64", "float32"):
            samples[dt].append(matmul_flops(np, getattr(np, dt)))


def one_config(args, np, n, d, inst, steps, f_samples):
    """Interleaved rounds of one configuration (a matmul rate measured in each, added to
    ``f_samples``); returns its row of results."""
    row = dict(n=n, d=d, instances=inst, steps=steps, batch=args.batch, rounds=[])
    for dt in ("float64", "float32"):
        compile_fastsuper(n, d, inst, args.batch, getattr(np, dt))
    for r in range(args.rounds):
        measure_f(args, np, f_samples)
        rnd = {}
        for dt in ("float64", "float32"):
            rnd[dt], row[f"fastsuper_{dt}_final"] = run_fastsuper(
                n, d, inst, steps, args.batch, getattr(np, dt)
            )
        for th in args.peer_thread_counts:
            rate, final = run_peer(args, n, d, inst, steps, th)
            if rate is None:
                print(f"  peer ({th} threads): {final}")
                continue
            rnd[f"peer_{th}t"] = rate
            row[f"peer_{th}t_final"] = final
        row["rounds"].append(rnd)
        print(f"  round {r + 1}: " + ", ".join(f"{k} {v:.1f}" for k, v in rnd.items()))
    rounds = row["rounds"]
    peers = [f"peer_{th}t" for th in args.peer_thread_counts if f"peer_{th}t" in rounds[0]]
    for key in ("float64", "float32", *peers):
        row[f"{key}_median"] = median([rnd[key] for rnd in rounds])
    if peers:
        best = max(peers, key=lambda k: row[f"{k}_median"])
        row["peer_best"] = best
        for dt in ("float64", "float32"):
            row[f"ratio_{dt}"] = median([rnd[dt] / rnd[best] for rnd in rounds])
    return row


def report(row, F, flops):
    n, d, inst = row["n"], row["d"], row["instances"]
    print(f"n={n} d={d} instances={inst} steps={row['steps']}:")
    for dt in ("float64", "float32"):
        rate = row[f"{dt}_median"]
        frac = rate * flops / F[dt]
        ratio = f", {row[f'ratio_{dt}']:.1f}x the peer" if "peer_best" in row else ""
        print(
            f"  fastsuper {dt}: {rate:9.1f} steps/s{ratio}; {rate * flops / 1e9:.3g} GFLOP/s "
            f"= {frac:.2f} of F"
        )
        row[f"fraction_of_F_{dt}"] = frac
    if "peer_best" in row:
        best = row["peer_best"]
        print(f"  peer ({best}, its best):   {row[f'{best}_median']:9.1f} steps/s")


def main(argv=None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(ROOT))
    import numba
    import numpy as np

    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    load0 = os.getloadavg()
    f_samples = {"float64": [], "float32": []}
    measure_f(args, np, f_samples)
    print(
        f"fastsuper fit vs PyTorch peer; fastsuper threads={numba.get_num_threads()}, "
        f"peer threads={args.peer_thread_counts}, batch={args.batch}, cpus={os.cpu_count()}, "
        f"rounds={args.rounds}, load average={load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}"
    )
    results = []
    for n, d, inst, steps in args.configs:
        row = one_config(args, np, n, d, inst, steps, f_samples)
        row["step_flops"] = step_flops(n, d, inst, args.batch)
        results.append(row)
    F = {dt: max(xs) for dt, xs in f_samples.items()}
    print(
        f"F (best of {len(f_samples['float64'])} matmuls, one before the configurations and "
        "one in every round) = "
        + ", ".join(
            f"{F[dt] / 1e9:.1f} GFLOP/s {dt} (range {min(xs) / 1e9:.1f}-{max(xs) / 1e9:.1f})"
            for dt, xs in f_samples.items()
        )
    )
    for row in results:
        report(row, F, row["step_flops"])
    load1 = os.getloadavg()
    print(f"load average after: {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}")
    if args.json:
        meta = dict(
            F=F, F_samples=f_samples, load_before=load0, load_after=load1, threads=args.threads
        )
        args.json.write_text(json.dumps(dict(meta=meta, results=results), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
