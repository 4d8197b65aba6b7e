"""Command line: ``fastsuper estimate``, ``train``, ``sweep`` and ``reproduce``."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import textwrap
import time
import warnings

import numpy as np

from fastsuper.analysis import random_frame, random_frame_norm
from fastsuper.core.activations import ACTIVATIONS
from fastsuper.core.laws import SparseInputs, ValueLaw
from fastsuper.core.model import check_activation, check_param
from fastsuper.core.validation import LAW_NAMES


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line: ``prog: error: message (see prog --help)``."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default unless it is None or False or the help text gives it."""

    def _get_help_string(self, action) -> str:
        text = action.help or ""
        default = action.default
        if default is None or default is False or default == [] or "default" in text:
            return text
        if default is argparse.SUPPRESS:
            return text
        return f"{text} (default: %(default)s)" if text else "default: %(default)s"


class _RawFormatter(argparse.RawDescriptionHelpFormatter, _Formatter):
    """:class:`_Formatter` that keeps the description's lines (a table of the sweep kinds)."""


def _positive_int(text: str) -> int:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value.is_integer() or value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(value)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def _numbers(text: str) -> float | list[float]:
    """``X`` or ``X1,X2,...``: one number, or a list of them (the API checks their range)."""
    try:
        values = [float(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number or a comma-separated list of numbers, got {text!r}"
        ) from None
    return values[0] if len(values) == 1 else values


def default_norm(law: ValueLaw, exponent: float, n: int, d: int) -> float:
    """Best common column norm of a random frame (THEORY §5.3); 1 for real exponents."""
    if float(exponent).is_integer():
        return random_frame_norm(n, d, int(exponent), law)
    return 1.0


_ACTIVATIONS = list(ACTIVATIONS)
_EXPONENT_HELP = (
    "activation exponent (default: the activation's own: 3 for power and signed_power, 1 for "
    "relu_power and relu; fixed at 1 for gelu ... identity)"
)
_PARAM_HELP = (
    "the activation's parameter: beta of softplus, slope of leaky_relu (by default 1 and 0.01)"
)


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="fastsuper",
        description="Fast, exact-where-possible loss of toy superposition autoencoders. "
        "Progress bars show on stderr when it is a terminal (--quiet: none).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_estimate(sub)
    _add_train(sub)
    _add_reproduce(sub)
    _add_sweep(sub)
    return parser


def _add_estimate(sub) -> None:
    est = sub.add_parser(
        "estimate",
        help="Monte-Carlo loss of x_hat = phi(W^T W x + b), beside the exact value",
        description="Estimate the loss by Monte Carlo and compare it with the exact value "
        "(power activation) or the exact k<=1 lower bound (other activations). Defaults: the "
        "paper's setting at a quick size. The last line is the verdict of fastsuper.check's "
        "test (PASS or FAIL, with its criterion); the exit status is 1 when it fails.",
        formatter_class=_Formatter,
    )
    est.add_argument("--n", type=_positive_int, default=1000, help="number of features")
    est.add_argument("--d", type=_positive_int, default=10, help="hidden dimension")
    est.add_argument("--p", type=float, default=1e-3, help="feature probability")
    est.add_argument("--exponent", "-m", type=_positive_float, default=None, help=_EXPONENT_HELP)
    est.add_argument("--activation", default="power", choices=_ACTIVATIONS)
    est.add_argument("--param", type=float, default=None, help=_PARAM_HELP)
    est.add_argument("--values", default="gaussian", choices=list(LAW_NAMES))
    est.add_argument(
        "--samples",
        type=_positive_int,
        default=2_000_000,
        help="Monte-Carlo samples (1e6 notation accepted)",
    )
    est.add_argument("--seed", type=int, default=0, help="sampling seed")
    est.add_argument(
        "--dtype", default="float64", choices=["float64", "float32"], help="compute dtype"
    )
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
        type=_positive_float,
        default=None,
        help="column norm of the random init (default: the best common norm of a random "
        "frame, THEORY §5.3)",
    )
    est.add_argument("--threads", type=_positive_int, default=None, help="Numba threads")
    est.add_argument("--path", default="auto", choices=["auto", "dense", "columns"])
    est.add_argument(
        "--backend",
        default="cpu",
        choices=["cpu", "cuda"],
        help="where the Monte-Carlo kernel runs (cuda: numba-cuda and a GPU, or the simulator)",
    )
    est.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    est.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_train(sub) -> None:
    tr = sub.add_parser(
        "train",
        help="train toy models (Adam over many instances, or exact-gradient L-BFGS)",
        description="Train tied-weight toy autoencoders and write the weights (.npz) and plots "
        "(PNG). Defaults: Elhage et al.'s n=5, d=2 ReLU models, importance 0.9^i, 8 instances "
        "with feature probabilities 50^-linspace(0, 1, 8).",
        formatter_class=_Formatter,
    )
    tr.add_argument(
        "--method",
        default="adam",
        choices=["adam", "exact"],
        help="adam: stochastic, many instances; exact: L-BFGS on the exact loss of a power model",
    )
    tr.add_argument("--n", type=_positive_int, default=5, help="number of features")
    tr.add_argument("--d", type=_positive_int, default=2, help="hidden dimension")
    tr.add_argument(
        "--instances",
        type=_positive_int,
        default=None,
        help="models trained side by side (adam; default: one per value of --p, else 8)",
    )
    tr.add_argument(
        "--p",
        type=_numbers,
        default=None,
        metavar="P[,P2,...]",
        help="feature probability, or a list: one per instance (adam) or per feature (exact) "
        "(default: adam, 50^-linspace(0,1,instances); exact, 1e-3)",
    )
    tr.add_argument(
        "--importance-decay",
        type=_positive_float,
        default=None,
        help="importance I_i = decay^i (default: 0.9 for adam, as Elhage et al.; 1 for exact, "
        "as the paper)",
    )
    tr.add_argument(
        "--activation",
        default=None,
        choices=_ACTIVATIONS,
        help="default: relu_power (adam; with exponent 1, ReLU), power (exact)",
    )
    tr.add_argument("--exponent", "-m", type=_positive_float, default=None, help=_EXPONENT_HELP)
    tr.add_argument("--param", type=float, default=None, help=_PARAM_HELP)
    tr.add_argument(
        "--values",
        default=None,
        choices=list(LAW_NAMES),
        help="default: uniform (adam), gaussian (exact)",
    )
    tr.add_argument(
        "--bias",
        default=None,
        choices=["yes", "no"],
        help="train a bias (default: yes for adam, as Elhage et al.; no for exact, as the paper)",
    )
    _add_train_run(tr)


def _add_train_run(tr) -> None:
    """The options of ``fastsuper train`` that say how it trains and what it writes."""
    tr.add_argument("--steps", type=_positive_int, default=10_000, help="Adam steps")
    tr.add_argument("--batch", type=_positive_int, default=1024, help="batch size (adam)")
    tr.add_argument("--lr", type=_positive_float, default=1e-3, help="learning rate (adam)")
    tr.add_argument(
        "--restarts",
        type=int,
        default=4,
        help="random-frame starts (exact), tried after the unsuperposed start",
    )
    tr.add_argument("--maxiter", type=_positive_int, default=2000, help="L-BFGS iterations")
    tr.add_argument("--seed", type=int, default=0, help="seed of the starts and the samples")
    tr.add_argument(
        "--dtype", default="float64", choices=["float64", "float32"], help="compute dtype (adam)"
    )
    tr.add_argument(
        "--out",
        default="fastsuper-train",
        metavar="PREFIX",
        help="writes PREFIX.npz and PREFIX-*.png",
    )
    tr.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    tr.add_argument("--quiet", action="store_true", help="no progress bar")
    tr.add_argument(
        "--backend",
        default="cpu",
        choices=["cpu", "cuda"],
        help="where Adam's sampled gradients are computed (adam only)",
    )


def _add_reproduce(sub) -> None:
    rep = sub.add_parser(
        "reproduce",
        help="regenerate the experiments (figure3, capacity, activations, phase-diagram, "
        "geometry) beside their theory lines",
        description="figure3: the paper's Figure 3 (d = 10 and 15, m = 3, n = 6000, Gaussian "
        "values), the exact gain optimised at each p, beside the first-order cap p kappa D(d, m) "
        "and the unsuperposed line p kappa d; resumes an interrupted run from its output folder "
        "(long at the paper's size; --quick: a small version). capacity: gain/p at small p "
        "against n, beside kappa n D/(n + D - 1) and kappa min(n, D). activations: the best "
        "trained loss of each output activation (gelu, tanh, softplus, ...) against p at "
        "n = 100, d = 10, beside the power family's optimum and the unsuperposed baseline "
        "(resumable). phase-diagram, geometry: Elhage et al.'s phase diagrams (trained and "
        "exact optima) and feature geometry. The last line is the "
        "verdict (PASS or FAIL, with its criterion); the exit status is 1 when it fails.",
        formatter_class=_Formatter,
    )
    rep.add_argument(
        "experiment",
        choices=["figure3", "capacity", "activations", "phase-diagram", "geometry"],
        help="which experiment (phase-diagram, geometry: Elhage et al.'s toy models, "
        "see fastsuper.apps.phase and fastsuper.apps.geometry_sweep)",
    )
    rep.add_argument("--out", default=None, help="output folder (default: ./EXPERIMENT)")
    rep.add_argument("--quick", action="store_true", help="a small, quick version")
    rep.add_argument(
        "--no-resume",
        action="store_true",
        help="figure3, activations, phase-diagram, geometry: start afresh instead of reusing "
        "the points already in --out",
    )
    rep.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def _add_sweep(sub) -> None:
    intro = (
        "Run fastsuper.sweep: one row per grid point and seed, appended to a CSV file as rows "
        "finish; run the same command again to resume after an interruption."
    )
    sw = sub.add_parser(
        "sweep",
        help="many estimates, exact values or fits over a parameter grid (resumable, Dask)",
        description=textwrap.fill(intro, 79) + "\n\n" + _kinds_text(),
        formatter_class=_RawFormatter,
    )
    sw.add_argument("kind", choices=["estimate", "exact", "fit"], help="row function")
    sw.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="NAME=V1,V2,...",
        help="a grid parameter and its values (repeat for more parameters)",
    )
    sw.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a fixed parameter (repeat for more)",
    )
    sw.add_argument("--seeds", default="0", help="seeds: a list '0,3,7' or a range 'START:STOP'")
    sw.add_argument("--output", "-o", metavar="FILE.csv", help="CSV file (resumable)")
    sw.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="run rows on a Dask scheduler at ADDRESS, or 'local' for a local cluster",
    )
    sw.add_argument("--jobs", type=_positive_int, help="run rows in this many processes")
    sw.add_argument("--max-points", type=int, default=None, help="stop after this many rows")
    sw.add_argument(
        "--on-error",
        default="raise",
        choices=["raise", "record"],
        help="record: keep a failed row's error in its 'error' column and go on",
    )
    sw.add_argument("--weights-dir", metavar="DIR", help="fit: save the trained weights here")
    sw.add_argument("--quiet", action="store_true", help="no progress bar")


def _kinds_text() -> str:
    """The sweep kinds and their parameters (required first, then the defaults), wrapped."""
    from fastsuper.apps.sweep import KINDS, REQUIRED

    lines = ["kinds and their parameters (set them with --grid or --set):"]
    for kind, spec in KINDS.items():
        required = [k for k, d in spec.items() if d is REQUIRED]
        optional = [f"{k}={d}" for k, d in spec.items() if d is not REQUIRED]
        body = f"{', '.join(required)} (required); " + ", ".join(optional)
        lines += textwrap.wrap(
            body, 79, initial_indent=f"  {kind:<9} ", subsequent_indent=" " * 12,
            break_on_hyphens=False,
        )  # fmt: skip
    return "\n".join(lines)


def _estimate(args) -> int:
    import numba

    from fastsuper.exact.api import exact_loss_and_gain
    from fastsuper.exact.low_order import low_order_terms
    from fastsuper.mc.api import estimate_loss
    from fastsuper.verify import compare

    if args.threads:
        numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    model, inputs = _estimate_problem(args)
    kw = dict(path=args.path, backend=args.backend)
    est = estimate_loss(model, inputs, min(20_000, args.samples), args.seed, progress=False, **kw)
    t0 = time.perf_counter()  # after the warm-up (compilation)
    est = estimate_loss(model, inputs, args.samples, args.seed, progress=_progress(args), **kw)
    wall = time.perf_counter() - t0
    low = low_order_terms(model, inputs)
    exact = exact_loss_and_gain(model, inputs) if model.activation == "power" else None
    print(
        f"fastsuper estimate: n={model.n} d={model.d} activation={model.activation} "
        f"exponent={model.exponent:g} "
        + ("" if model.param_or_none is None else f"param={model.param:g} ")
        + f"values={inputs.law.name} p={args.p:g} dtype={model.dtype} "
        f"bias={'yes' if model.b is not None else 'no'}"
    )
    run = dict(seconds=wall, samples_per_second=est.n_samples / wall,
               threads=numba.get_num_threads(), path=est.path)  # fmt: skip
    rows, result = _estimate_table(args, model, inputs, est, low, exact, run)
    print(f"{'':<12} {'loss':>24} {'gain':>24}")
    for name, a, g in rows:
        print(f"{name:<12} {a:>24} {g:>24}")
    print(
        f"loss = E sum_j (x_j - x_hat_j)^2 and gain = E sum_j x_j^2 - loss, sums over the "
        f"{model.n} features (Elhage et al.'s mean over features: divide by {model.n})"
    )
    print(
        f"{est.n_samples:,} samples in {wall:.3f} s: {est.n_samples / wall:,.0f} samples/s "
        f"({numba.get_num_threads()} threads, {est.path} path)"
    )
    report = compare(est, model, inputs)
    result.update(passed=report.passed, verdict=report.verdict)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)
    print(f"check: {report.verdict}")
    return 0 if report.passed else 1


def _progress(args) -> bool | None:
    """``progress=`` of a subcommand: off with --quiet, else shown when stderr is a terminal."""
    return False if args.quiet else None


def _estimate_problem(args):
    """The model (weights from ``--weights`` or a seeded random frame) and the input law."""
    from fastsuper.core.model import Model

    law = ValueLaw(args.values)
    activation, exponent = check_activation(args.activation, args.exponent)
    if args.weights:
        W = np.load(args.weights)
        if W.ndim != 2:
            raise ValueError(f"--weights must hold a 2-D array (d, n), got shape {W.shape}")
        W = W.astype(args.dtype)
    else:
        norm = args.norm
        if norm is None:
            norm = default_norm(law, exponent, args.n, args.d)
        W = random_frame(args.n, args.d, norm, args.weight_seed, args.dtype)
    b = np.load(args.bias) if args.bias else None
    model = Model(W, b, activation=activation, exponent=exponent, param=args.param)
    return model, SparseInputs(model.n, p=args.p, values=law)


def _estimate_table(args, model, inputs, est, low, exact, run: dict) -> tuple[list, dict]:
    """The printed rows ``(name, loss, gain)`` and the JSON record of an estimate."""
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
        "param": model.param_or_none,
        "values": inputs.law.name,
        "p": args.p,
        "dtype": str(model.dtype),
        "samples": est.n_samples,
        "seed": args.seed,
        "loss_mc": est.mean,
        "loss_stderr": est.stderr,
        "gain_mc": est.gain_mean,
        "gain_stderr": est.gain_stderr,
        **run,
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
    return rows, result


def _train(args) -> int:
    exact = args.method == "exact"
    if exact and args.backend != "cpu":
        raise ValueError("--backend cuda applies to --method adam; the exact fit runs on the CPU")
    parent = os.path.dirname(args.out)
    if parent:
        os.makedirs(parent, exist_ok=True)
    t0 = time.perf_counter()
    res = (_train_exact if exact else _train_adam)(args, _train_model(args, exact))
    wall = time.perf_counter() - t0
    path = args.out + ".npz"
    res.save(path)
    print(f"wrote {path} ({wall:.2f} s)")
    if not args.no_plots:
        _train_plots(args.out, res)
    return 0


def _train_model(args, exact: bool) -> dict:
    """The model settings of ``fastsuper train``, with the method's defaults."""
    decay = args.importance_decay
    if decay is None:
        decay = 1.0 if exact else 0.9
    activation, exponent = check_activation(
        args.activation or ("power" if exact else "relu_power"), args.exponent
    )
    return {
        "activation": activation,
        "exponent": exponent,
        "param": check_param(activation, args.param),
        "values": args.values or ("gaussian" if exact else "uniform"),
        "importance": decay ** np.arange(args.n),
        "bias": (not exact) if args.bias is None else args.bias == "yes",
    }


def _train_exact(args, m: dict):
    from fastsuper.train.lbfgs import fit_exact

    activation, exponent, values = m["activation"], m["exponent"], m["values"]
    if activation != "power" or not float(exponent).is_integer():
        raise ValueError(
            f"--method exact needs --activation power with an integer exponent, got "
            f"{activation} {exponent:g}"
        )
    res = fit_exact(args.n, args.d, m=int(exponent), p=1e-3 if args.p is None else args.p,
                    values=values, importance=m["importance"], bias=m["bias"],
                    restarts=args.restarts, seed=args.seed, maxiter=args.maxiter,
                    progress=_progress(args))  # fmt: skip
    p = f"{res.p:g}" if isinstance(res.p, float) else "<per feature>"
    print(
        f"exact fit: n={args.n} d={args.d} m={int(exponent)} p={p} values={values}: "
        f"gain {res.gain:.8g}, loss {res.loss:.8g} (exact, sums over the {args.n} features), "
        f"from start {res.starts[res.best]!r} "
        f"(best of {_starts_text(res.starts)}; their gains {np.round(res.gains, 8).tolist()})"
    )
    return res


def _starts_text(starts) -> str:
    """``"5 starts: the unsuperposed optimum and 4 random frames (--restarts 4)"``."""
    n_random = sum(1 for s in starts if s.startswith("random"))
    parts = [{"W0": "W0", "unsuperposed": "the unsuperposed optimum"}[s]
             for s in starts if not s.startswith("random")]  # fmt: skip
    parts.append(f"{n_random} random frame{'s' if n_random != 1 else ''} (--restarts {n_random})")
    return f"{len(starts)} starts: " + " and ".join([", ".join(parts[:-1]), parts[-1]])


def _train_instances(args) -> int:
    """The number of Adam instances: --instances, or one per value of --p, or 8."""
    n_p = len(args.p) if isinstance(args.p, list) else None
    if args.instances is None:
        return n_p or 8
    if n_p is not None and n_p != args.instances:
        raise ValueError(
            f"--p gives {n_p} probabilities (one per instance) but --instances is "
            f"{args.instances}; give as many values as instances, or leave --instances out"
        )
    return args.instances


def _train_adam(args, m: dict):
    from fastsuper.analysis import feature_dimensionality
    from fastsuper.train.adam import fit

    instances = _train_instances(args)
    res = fit(args.n, args.d, n_instances=instances, p=args.p, importance=m["importance"],
              activation=m["activation"], exponent=m["exponent"], values=m["values"],
              param=args.param, bias=m["bias"], steps=args.steps, batch_size=args.batch, lr=args.lr,
              seed=args.seed, dtype=np.dtype(args.dtype), progress=_progress(args),
              backend=args.backend)  # fmt: skip
    print(
        f"adam fit: n={args.n} d={args.d} instances={instances} steps={args.steps} "
        f"batch={args.batch} activation={m['activation']} exponent={m['exponent']:g}; final "
        f"loss = last batch loss, a sum over the {args.n} features (/ {args.n}: Elhage et al.'s "
        "mean over features)"
    )
    p = np.asarray(res.settings["p"])
    for k in range(instances):
        pk = p[k] if p.ndim else p
        pk = float(np.mean(pk))
        print(
            f"  instance {k}: p={pk:.4g} final loss {res.final_loss[k]:.6g}  "
            f"dimensionality {np.round(feature_dimensionality(res.W[k]), 3).tolist()}"
        )
    return res


def _train_plots(out: str, res) -> None:
    """The loss (or gain) history, and W^T W and the features of every instance, as PNG files."""
    from fastsuper.analysis import plot_features, plot_gram, plot_loss_history

    written = [out + ("-gain.png" if hasattr(res, "gain_history") else "-loss.png")]
    plot_loss_history(res, written[0])  # an ExactFit's history is its exact gain
    count = res.W.shape[0] if res.W.ndim == 3 else 1
    for k in range(count):
        tag = f"-{k}" if count > 1 else ""
        written += [f"{out}-gram{tag}.png", f"{out}-features{tag}.png"]
        plot_gram(res, written[-2], instance=k)
        plot_features(res, written[-1], instance=k)
    print("wrote " + ", ".join(written))


def _assignment(text: str, option: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise ValueError(f"{option} expects NAME=VALUE, got {text!r}")
    return name.strip(), value


def _seeds(text: str) -> list[int]:
    try:
        if ":" in text:
            lo, hi = text.split(":")
            return list(range(int(lo), int(hi)))
        return [int(x) for x in text.split(",")]
    except ValueError:
        raise ValueError(f"--seeds expects '0,3,7' or 'START:STOP', got {text!r}") from None


def _sweep(args) -> int:
    import contextlib

    from fastsuper.apps.sweep import _parse, sweep

    grid = {}
    for item in args.grid:
        name, values = _assignment(item, "--grid")
        grid[name] = [_parse(x.strip()) for x in values.split(",")]
    fixed = dict((n, _parse(x.strip())) for n, x in (_assignment(i, "--set") for i in args.set))
    if args.scheduler and args.jobs:
        raise ValueError("give --scheduler or --jobs, not both")
    kw = dict(seeds=_seeds(args.seeds), fixed=fixed, output=args.output,
              progress=_progress(args), on_error=args.on_error, max_points=args.max_points,
              weights_dir=args.weights_dir)  # fmt: skip
    with contextlib.ExitStack() as stack:
        if args.scheduler == "local":
            from fastsuper.mc.dask import local_client

            kw["client"] = stack.enter_context(local_client())
        elif args.scheduler:
            from fastsuper.mc.dask import require_distributed

            kw["client"] = stack.enter_context(require_distributed().Client(args.scheduler))
        elif args.jobs:
            kw.update(executor="processes", n_jobs=args.jobs)
        res = sweep(args.kind, grid, **kw)
    state = "complete" if res.complete else "incomplete (run again to resume)"
    if args.output:
        print(f"{len(res)} rows ({res.n_new} new), {state}: {args.output}")
    else:
        import csv

        from fastsuper.apps.sweep import _fmt

        w = csv.writer(sys.stdout)
        w.writerow(res.columns)
        for r in res.rows:
            w.writerow([_fmt(r[c]) for c in res.columns])
    return 0


def _reproduce(args) -> int:
    if args.experiment in ("phase-diagram", "geometry"):
        from fastsuper.apps.phase import reproduce_cli

        return reproduce_cli(args)
    from fastsuper.apps.reproduce import capacity, figure3

    out = args.out if args.out is not None else args.experiment
    t0 = time.perf_counter()
    if args.experiment == "figure3":
        res = figure3(out, quick=args.quick, resume=not args.no_resume, progress=_progress(args))
        e = res["settings"]["check_log_d_p"]
        for d, c in res["check"].items():
            pts = ", ".join(
                f"p = d^{r['log_d_p']:.2f}: {r['gain_over_cap']:.4f}" for r in c["points"]
            )
            ok = "yes" if c["within_5pct_below_cap"] else "NO"
            print(f"d = {d}: gain / (p kappa D) at p <= d^{e:g}: {pts} (within 5% below: {ok})")
        names = ["figure3.csv", "figure3.json", "figure3.png"]
    elif args.experiment == "activations":
        from fastsuper.apps.reproduce_activations import activations

        res = activations(
            out, quick=args.quick, resume=not args.no_resume, progress=_progress(args)
        )
        for name, c in res["curves"].items():
            gains = ", ".join(f"{g:.4g}" for g in c["gain"])
            print(f"{name:>14}: gain at p = {c['p']}: {gains}")
        names = ["activations.csv", "activations.json", "activations.png"]
    else:
        res = capacity(out, quick=args.quick, progress=_progress(args))
        names = ["capacity.csv", "capacity.json", "capacity.png"]
    print(f"{args.experiment}: {time.perf_counter() - t0:.1f} s")
    print("wrote " + ", ".join(os.path.join(out, n) for n in names))
    print(res["verdict"])
    return 0 if res["passed"] else 1


_COMMANDS = {"estimate": _estimate, "train": _train, "sweep": _sweep, "reproduce": _reproduce}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``fastsuper`` command."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    prog = f"fastsuper {args.command}"

    def show(message, category, filename, lineno, file=None, line=None):
        print(f"{prog}: warning: {message}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = show  # one line per warning, like the errors
        try:
            return _COMMANDS[args.command](args)
        except (ValueError, TypeError, ArithmeticError, OSError, ImportError, RuntimeError) as exc:
            print(f"{prog}: error: {exc}", file=sys.stderr)  # a refused MemoryError is a ValueError
            return 2
        except MemoryError as exc:  # an allocation that failed all the same
            print(f"{prog}: error: out of memory: {exc}", file=sys.stderr)
            return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
