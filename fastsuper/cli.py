"""Command line: ``fastsuper estimate`` (more subcommands follow)."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import numpy as np

from .analysis import random_frame, random_frame_norm
from .sampling import SparseInputs, ValueLaw


def _positive_int(text: str) -> int:
    value = float(text)
    if not value.is_integer() or value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(value)


def default_norm(law: ValueLaw, exponent: float, n: int, d: int) -> float:
    """Best common column norm of a random frame (THEORY §5.3); 1 for real exponents."""
    if float(exponent).is_integer():
        return random_frame_norm(n, d, int(exponent), law)
    return 1.0


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fastsuper",
        description="Fast, exact-where-possible loss of toy superposition autoencoders.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    est = sub.add_parser(
        "estimate",
        help="Monte-Carlo loss of x_hat = phi(W^T W x + b), beside the exact value",
        description="Estimate the loss by Monte Carlo and compare it with the exact value "
        "(power activation) or the exact k<=1 lower bound (other activations). Defaults: the "
        "paper's setting at a quick size.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    est.add_argument("--n", type=_positive_int, default=1000, help="number of features")
    est.add_argument("--d", type=_positive_int, default=10, help="hidden dimension")
    est.add_argument("--p", type=float, default=1e-3, help="feature probability")
    est.add_argument("--exponent", "-m", type=float, default=3.0, help="activation exponent")
    est.add_argument(
        "--activation", default="power", choices=["power", "signed_power", "relu_power"]
    )
    est.add_argument(
        "--values",
        default="gaussian",
        choices=["gaussian", "rademacher", "uniform_sym", "uniform", "constant"],
    )
    est.add_argument(
        "--samples",
        type=_positive_int,
        default=2_000_000,
        help="Monte-Carlo samples (1e6 notation accepted)",
    )
    est.add_argument("--seed", type=int, default=0, help="sampling seed")
    est.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    est.add_argument(
        "--weights",
        metavar="W.npy",
        help="weights of shape (d, n) from a .npy file "
        "(overrides --n/--d); default: a seeded random frame",
    )
    est.add_argument("--bias", metavar="b.npy", help="bias of shape (n,) from a .npy file")
    est.add_argument("--weight-seed", type=int, default=0, help="seed of the random init")
    est.add_argument(
        "--norm",
        type=float,
        default=None,
        help="column norm of the random init (default: the best common norm of a random "
        "frame, THEORY §5.3)",
    )
    est.add_argument("--threads", type=_positive_int, default=None, help="Numba threads")
    est.add_argument("--path", default="auto", choices=["auto", "dense", "columns"])
    est.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    return parser


def _estimate(args) -> int:
    import numba

    from .decomposition import low_order_terms
    from .estimators import estimate_loss
    from .exact import exact_loss_and_gain
    from .model import Model

    if args.threads:
        numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    law = ValueLaw(args.values)
    if args.weights:
        W = np.load(args.weights)
        if W.ndim != 2:
            raise ValueError(f"--weights must hold a 2-D array (d, n), got shape {W.shape}")
        W = W.astype(args.dtype)
    else:
        norm = args.norm
        if norm is None:
            norm = default_norm(law, args.exponent, args.n, args.d)
        W = random_frame(args.n, args.d, norm, args.weight_seed, args.dtype)
    b = np.load(args.bias) if args.bias else None
    model = Model(W, b, activation=args.activation, exponent=args.exponent)
    inputs = SparseInputs(model.n, p=args.p, values=law)

    est = estimate_loss(model, inputs, 20_000, args.seed, path=args.path)  # compile / warm up
    t0 = time.perf_counter()
    est = estimate_loss(model, inputs, args.samples, args.seed, path=args.path)
    wall = time.perf_counter() - t0
    low = low_order_terms(model, inputs)
    exact = None
    if model.activation == "power":
        exact = exact_loss_and_gain(model, inputs)

    print(
        f"fastsuper estimate: n={model.n} d={model.d} activation={model.activation} "
        f"exponent={model.exponent:g} values={law.name} p={args.p:g} dtype={model.dtype} "
        f"bias={'yes' if b is not None else 'no'}"
    )
    rows = [
        (
            "Monte Carlo",
            f"{est.mean:.8g} ± {est.stderr:.2g}",
            f"{est.gain_mean:.8g} ± {est.gain_stderr:.2g}",
        )
    ]
    result = {
        "n": model.n,
        "d": model.d,
        "activation": model.activation,
        "exponent": model.exponent,
        "values": law.name,
        "p": args.p,
        "dtype": str(model.dtype),
        "samples": est.n_samples,
        "seed": args.seed,
        "loss_mc": est.mean,
        "loss_stderr": est.stderr,
        "gain_mc": est.gain_mean,
        "gain_stderr": est.gain_stderr,
        "seconds": wall,
        "samples_per_second": est.n_samples / wall,
        "threads": numba.get_num_threads(),
        "path": est.path,
        "loss_k_le_1": low.lower_bound,
    }
    if exact is not None:
        z = (est.mean - exact[0]) / est.stderr if est.stderr > 0 else math.nan
        zg = (est.gain_mean - exact[1]) / est.gain_stderr if est.gain_stderr > 0 else math.nan
        rows.append(("exact", f"{exact[0]:.8g}", f"{exact[1]:.8g}"))
        rows.append(("z-score", f"{z:+.2f}", f"{zg:+.2f}"))
        result.update(loss_exact=exact[0], gain_exact=exact[1], z=z, z_gain=zg)
    else:
        z = (est.mean - low.lower_bound) / est.stderr if est.stderr > 0 else math.nan
        rows.append(("k<=1 bound", f">= {low.lower_bound:.8g}", ""))
        rows.append(("z vs bound", f"{z:+.2f}", ""))
        result.update(z_vs_lower_bound=z)
    rows.append(("k<=1 part", f"{low.lower_bound:.8g}", ""))
    print(f"{'':<12} {'loss':>24} {'gain':>24}")
    for name, a, g in rows:
        print(f"{name:<12} {a:>24} {g:>24}")
    print(
        f"{est.n_samples:,} samples in {wall:.3f} s: {est.n_samples / wall:,.0f} samples/s "
        f"({numba.get_num_threads()} threads, {est.path} path)"
    )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``fastsuper`` command."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        if args.command == "estimate":
            return _estimate(args)
    except (ValueError, TypeError, FloatingPointError, OSError) as exc:
        print(f"fastsuper {args.command}: error: {exc}", file=sys.stderr)
        return 2
    parser.error(f"unknown command {args.command!r}")  # pragma: no cover
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
