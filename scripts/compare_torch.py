"""fastsuper against the PyTorch peer, side by side in one run.

Measures, at one configuration (Elhage et al.'s U[0, 1] values, output
``relu(W^T W x)^EXPONENT``, no bias, unit importances):

(a) fastsuper's ``estimate_loss`` in samples/s (a warm-up call first, then the
    best of ``--repeats`` timed calls, with ``numba.set_num_threads``);
(b) the PyTorch peer ``torch_mc.py`` (shared/peers) at the same configuration
    and thread count (``OMP_NUM_THREADS``), best rate of ``--repeats`` runs;
(c) F, this machine's matmul FLOP/s (a 2048 x 2048 NumPy matmul of the same
    dtype, best of 3), and fastsuper's rate as a fraction of ``F / (2 n d)``,
    the rate of one dense ``n x d`` matrix-vector product per sample;
(d) both estimates of the loss ``E sum_j (x_j - x_hat_j)^2``.

By default fastsuper evaluates the peer's own weights (``torch.randn`` with
the peer's seed, obtained through ``--torch-python``), so the two estimates
are of the same number and must agree within their standard errors; with
``--own-weights`` (or when that fails) fastsuper draws its own
``W ~ N(0, 1/d)`` and the estimates agree only in distribution.

usage: python scripts/compare_torch.py [--dtype float32] [--samples 400000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PEER = ROOT.parent / "shared" / "peers" / "torch_mc.py"
TORCH_DTYPES = {"float64": "f64", "float32": "f32"}
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")

# Same draw as the peer: torch.Generator().manual_seed(0), then torch.randn(d, n) / sqrt(d).
PEER_WEIGHTS = """
import sys, numpy, torch
n, d, dt, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
g = torch.Generator().manual_seed(0)
W = torch.randn(d, n, generator=g, dtype=getattr(torch, dt)) / d ** 0.5
numpy.save(out, W.numpy())
print(torch.__version__)
"""


def parse_args(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    ap.add_argument("--n", type=int, default=1000, help="number of features")
    ap.add_argument("--d", type=int, default=64, help="hidden dimension")
    ap.add_argument("--p", type=float, default=0.01, help="feature probability")
    ap.add_argument("--exponent", type=float, default=2.0, help="relu_power exponent")
    ap.add_argument("--dtype", choices=sorted(TORCH_DTYPES), default="float64")
    ap.add_argument("--threads", type=int, default=2, help="threads for both")
    ap.add_argument("--samples", type=int, default=400_000, help="samples per timed run")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs (best is kept)")
    ap.add_argument(
        "--path",
        choices=("auto", "columns", "columns_blocked", "blocked", "dense"),
        default="auto",
        help="fastsuper's estimate_loss path",
    )
    ap.add_argument("--seed", type=int, default=1, help="fastsuper's sampling seed")
    ap.add_argument("--batch", type=int, default=8192, help="the peer's batch size")
    ap.add_argument("--peer", type=Path, default=DEFAULT_PEER, help="path of torch_mc.py")
    ap.add_argument(
        "--torch-python",
        default=sys.executable,
        help="Python interpreter with torch installed, for the peer",
    )
    ap.add_argument(
        "--own-weights",
        action="store_true",
        help="draw fastsuper's W with NumPy instead of using the peer's",
    )
    ap.add_argument("--json", type=Path, metavar="PATH", help="also write the results here")
    args = ap.parse_args(argv)
    for name in ("n", "d", "threads", "samples", "repeats", "batch"):
        if getattr(args, name) < 1:
            ap.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if not 0 < args.p <= 1:
        ap.error(f"--p must be in (0, 1], got {args.p}")
    if not args.peer.is_file():
        ap.error(
            f"the peer {args.peer} does not exist; pass --peer PATH/TO/torch_mc.py "
            "(it lies in shared/peers/ beside the repository)"
        )
    return args


def machine_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or platform.machine()


def matmul_flops(np, dtype, size=2048, repeats=3) -> float:
    """Best-of-``repeats`` FLOP/s of a ``size``-square NumPy matmul."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size)).astype(dtype)
    b = rng.standard_normal((size, size)).astype(dtype)
    a @ b
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2.0 * size**3 / best


def peer_weights(args, np):
    """The peer's W as a NumPy array, or ``(None, reason)`` when it cannot be had."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "W.npy"
        try:
            proc = subprocess.run(
                [
                    args.torch_python,
                    "-c",
                    PEER_WEIGHTS,
                    str(args.n),
                    str(args.d),
                    args.dtype,
                    str(out),
                ],
                capture_output=True,
                text=True,
                timeout=300,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, str(exc)
        if proc.returncode != 0:
            lines = proc.stderr.strip().splitlines()
            return None, lines[-1] if lines else f"exit code {proc.returncode}"
        return np.load(out), proc.stdout.strip()


def run_peer(args) -> dict:
    """Run torch_mc.py ``args.repeats`` times; keep the fastest run's fields."""
    cmd = [
        args.torch_python,
        str(args.peer),
        str(args.n),
        str(args.d),
        repr(args.p),
        repr(args.exponent),
        str(args.samples),
        str(args.batch),
        TORCH_DTYPES[args.dtype],
    ]
    env = dict(os.environ, **{k: str(args.threads) for k in THREAD_VARS})
    best = None
    for _ in range(args.repeats):
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            raise RuntimeError(f"the peer failed ({' '.join(cmd)}):\n{proc.stderr}")
        fields = dict(re.findall(r"(\w+)=(\S+)", proc.stdout))
        if "rate" not in fields:
            raise RuntimeError(f"no rate= field in the peer's output: {proc.stdout!r}")
        run = {
            "rate": float(fields["rate"].removesuffix("/s")),
            "mean": float(fields["mean"]),
            "stderr": float(fields["se"]),
            "threads": int(fields.get("threads", -1)),
            "output": proc.stdout.strip(),
        }
        if best is None or run["rate"] > best["rate"]:
            best = run
    best["command"] = " ".join(cmd)
    return best


def run_fastsuper(args, np, numba, fs, W) -> dict:
    numba.set_num_threads(args.threads)
    model = fs.Model(W, activation="relu_power", exponent=args.exponent)
    inputs = fs.SparseInputs(args.n, p=args.p, values="uniform")
    fs.estimate_loss(model, inputs, 1000, seed=args.seed, path=args.path)  # compile / load cache
    best, est = math.inf, None
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        est = fs.estimate_loss(model, inputs, args.samples, seed=args.seed, path=args.path)
        best = min(best, time.perf_counter() - t0)
    return {
        "rate": args.samples / best,
        "mean": est.mean,
        "stderr": est.stderr,
        "path": est.path,
        "threads": numba.get_num_threads(),
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    # thread counts of BLAS (the FLOP/s reference) and Numba are read at import time
    for var in THREAD_VARS:
        os.environ[var] = str(args.threads)
    os.environ.setdefault("NUMBA_NUM_THREADS", str(max(args.threads, os.cpu_count() or 1)))
    import numba
    import numpy as np

    import fastsuper as fs

    W, torch_version = None, None
    if not args.own_weights:
        W, torch_version = peer_weights(args, np)
        if W is None:
            print(
                f"note: could not get the peer's weights ({torch_version}); "
                "fastsuper uses its own W ~ N(0, 1/d)",
                file=sys.stderr,
            )
            torch_version = None
    same_w = W is not None
    if W is None:
        W = np.random.default_rng(0).standard_normal((args.d, args.n)) / math.sqrt(args.d)
    W = np.ascontiguousarray(W, dtype=args.dtype)

    ours = run_fastsuper(args, np, numba, fs, W)
    peer = run_peer(args)
    flops = matmul_flops(np, W.dtype)
    dense_rate = flops / (2.0 * args.n * args.d)
    diff_se = math.hypot(ours["stderr"], peer["stderr"])
    result = {
        "machine": machine_name(),
        "cpus": os.cpu_count(),
        "versions": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "numba": numba.__version__,
            "fastsuper": fs.__version__,
            "torch": torch_version,
        },
        "config": {
            "n": args.n,
            "d": args.d,
            "p": args.p,
            "activation": "relu_power",
            "exponent": args.exponent,
            "values": "uniform",
            "dtype": args.dtype,
            "threads": args.threads,
            "samples": args.samples,
            "repeats": args.repeats,
            "peer_batch": args.batch,
            "same_weights": same_w,
        },
        "fastsuper": ours,
        "peer": peer,
        "ratio": ours["rate"] / peer["rate"],
        "matmul_flops": flops,
        "dense_rate": dense_rate,
        "fraction_of_dense_rate": ours["rate"] / dense_rate,
        "estimate_z": (ours["mean"] - peer["mean"]) / diff_se if diff_se > 0 else 0.0,
    }
    print_table(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def print_table(r: dict) -> None:
    c, f, t = r["config"], r["fastsuper"], r["peer"]
    rows = [
        ("machine", f"{r['machine']} ({r['cpus']} CPUs)"),
        ("threads", f"{c['threads']} (fastsuper {f['threads']}, torch {t['threads']})"),
        ("dtype", c["dtype"]),
        (
            "sizes",
            f"n={c['n']} d={c['d']} p={c['p']:g} relu_power^{c['exponent']:g} "
            f"uniform, {c['samples']} samples, best of {c['repeats']}",
        ),
        ("fastsuper rate", f"{f['rate']:.4g} samples/s ({f['path']} path)"),
        ("torch peer rate", f"{t['rate']:.4g} samples/s (batch {c['peer_batch']})"),
        ("ratio fastsuper/peer", f"{r['ratio']:.3g}x"),
        ("matmul F", f"{r['matmul_flops'] / 1e9:.4g} GFLOP/s (2048^2 {c['dtype']})"),
        ("F/(2nd)", f"{r['dense_rate']:.4g} samples/s"),
        ("fastsuper / (F/(2nd))", f"{r['fraction_of_dense_rate']:.3g}"),
        ("fastsuper estimate", f"{f['mean']:.6g} ± {f['stderr']:.3g}"),
        ("torch peer estimate", f"{t['mean']:.6g} ± {t['stderr']:.3g}"),
        (
            "difference / stderr",
            f"{r['estimate_z']:+.2f} ("
            + ("same W" if c["same_weights"] else "different W: agreement in law only")
            + ")",
        ),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    sys.exit(main())
