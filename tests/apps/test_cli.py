"""The command line: `fastsuper estimate` and `fastsuper train`."""

import io
import json
import re
import sys

import numpy as np
import pytest

import fastsuper as fs
from fastsuper import testing as T
from fastsuper.apps.cli import main


def test_estimate_power_reports_exact_and_json(tmp_path, capsys):
    out = tmp_path / "r.json"
    rc = main(
        [
            "estimate",
            "--n",
            "40",
            "--d",
            "4",
            "--p",
            "0.05",
            "--samples",
            "20000",
            "--json",
            str(out),
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "exact" in text and "z-score" in text and "samples/s" in text
    res = json.loads(out.read_text())
    # the table's numbers are the library's numbers for the same model and seed
    from fastsuper.analysis import random_frame, random_frame_norm

    W = random_frame(40, 4, random_frame_norm(40, 4, 3, "gaussian"), 0)
    model = fs.Model(W, exponent=3)
    inputs = fs.SparseInputs(40, p=0.05, values="gaussian")
    assert res["loss_exact"] == pytest.approx(fs.exact_loss(model, inputs), rel=1e-12)
    est = fs.estimate_loss(model, inputs, 20000, seed=0)
    assert res["loss_mc"] == pytest.approx(est.mean, rel=1e-12)
    assert abs(res["z"]) < 5


def test_estimate_other_activation_and_weights_file(tmp_path, capsys):
    W = np.random.default_rng(0).normal(size=(3, 12)) / 2
    np.save(tmp_path / "W.npy", W)
    rc = main(
        [
            "estimate",
            "--weights",
            str(tmp_path / "W.npy"),
            "--activation",
            "relu_power",
            "--exponent",
            "2",
            "--values",
            "uniform",
            "--p",
            "0.1",
            "--samples",
            "1e4",
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "k<=1 bound" in text and "n=12 d=3" in text


def test_estimate_bad_input_is_a_clear_error(capsys):
    assert main(["estimate", "--n", "10", "--p", "1.5", "--samples", "100"]) == 2
    assert "p must lie in [0, 1]" in capsys.readouterr().err


def test_train_adam_and_exact_write_results(tmp_path, capsys):
    prefix = str(tmp_path / "adam")
    assert (
        main(
            [
                "train",
                "--n",
                "5",
                "--d",
                "2",
                "--instances",
                "2",
                "--steps",
                "50",
                "--out",
                prefix,
                "--quiet",
            ]
        )
        == 0
    )
    res = fs.FitResult.load(prefix + ".npz")
    assert res.W.shape == (2, 2, 5)
    for name in ("-loss.png", "-gram-0.png", "-features-1.png"):
        assert (tmp_path / ("adam" + name)).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    prefix = str(tmp_path / "exact")
    assert (
        main(
            [
                "train",
                "--method",
                "exact",
                "--n",
                "4",
                "--d",
                "4",
                "--p",
                "0.01",
                "--restarts",
                "1",
                "--maxiter",
                "50",
                "--out",
                prefix,
                "--no-plots",
            ]
        )
        == 0
    )
    fit = fs.ExactFit.load(prefix + ".npz")
    # n <= d: no superposition needed, the optimum is p kappa n (THEORY §5.1)
    assert fit.gain == pytest.approx(0.01 * 0.6 * 4, rel=1e-6)
    assert "exact fit" in capsys.readouterr().out


def test_estimate_prints_a_verdict_and_exits_1_when_the_check_fails(monkeypatch, capsys):
    import dataclasses

    from fastsuper.mc import api

    args = ["estimate", "--n", "40", "--d", "4", "--p", "0.05", "--samples", "20000"]
    assert main(args) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("check: z = ")
    assert "PASS — Monte Carlo agrees with the exact loss" in last
    real = api.estimate_loss

    def biased(*a, **kw):  # an estimator 20% off
        est = real(*a, **kw)
        return dataclasses.replace(est, mean=1.2 * est.mean)

    monkeypatch.setattr(api, "estimate_loss", biased)
    assert main(args) == 1
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert "FAIL — Monte Carlo and the exact loss disagree (needs |z| < 5)" in last


def test_estimate_relu_power_defaults_to_exponent_1(capsys):
    args = ["estimate", "--n", "20", "--d", "3", "--p", "0.1", "--samples", "1e4"]
    assert main([*args, "--activation", "relu_power"]) == 0
    assert "activation=relu_power exponent=1 " in capsys.readouterr().out
    assert main([*args, "--activation", "relu"]) == 0
    assert "activation=relu exponent=1 " in capsys.readouterr().out
    assert main(args) == 0
    assert "activation=power exponent=3 " in capsys.readouterr().out
    assert main([*args, "--activation", "relu", "--exponent", "2"]) == 2
    assert "activation='relu' has exponent 1" in capsys.readouterr().err


def test_train_reports_sums_over_features_and_plots_without_warnings(tmp_path, capsys):
    """The adam fit's loss is a sum over features (as `estimate`); the loss plot of a long
    run draws one curve per instance with no legend or layout warning; the exact fit's
    history is plotted as a gain."""
    import warnings

    prefix = str(tmp_path / "adam")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rc = main(["train", "--instances", "2", "--steps", "3000", "--out", prefix, "--quiet"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "a sum over the 5 features" in out
    res = fs.FitResult.load(prefix + ".npz")
    line = next(x for x in out.splitlines() if x.strip().startswith("instance 1:"))
    assert f"final loss {res.final_loss[1]:.6g}" in line
    prefix = str(tmp_path / "exact")
    rc = main(["train", "--method", "exact", "--n", "4", "--d", "2", "--p", "0.05",
               "--restarts", "1", "--maxiter", "20", "--out", prefix])  # fmt: skip
    assert rc == 0
    assert (tmp_path / "exact-gain.png").read_bytes()[:4] == b"\x89PNG"
    assert "(exact, sums over the 4 features)" in capsys.readouterr().out


# --------------------------------------------------------------------------
# help, errors, list-valued options


def _run(argv, capsys) -> tuple[int, str, str]:
    """``main(argv)``'s exit status (argparse's SystemExit too), stdout and stderr."""
    try:
        rc = main(argv)
    except SystemExit as exc:
        rc = exc.code
    out, err = capsys.readouterr()
    return rc, out, err


def test_sweep_help_lists_the_kinds_and_their_parameters(capsys):
    rc, out, _ = _run(["sweep", "--help"], capsys)
    assert rc == 0
    assert "<object object" not in out and "fastsuper.sweep.KINDS" not in out
    flat = " ".join(out.split())
    assert "estimate n, d, p (required); exponent=None, activation=power" in flat
    assert "n_samples=100000" in flat and "exact n, d, p (required)" in flat
    assert "fit n, d, p (required); activation=relu_power" in flat and "eval_samples=" in flat


@pytest.mark.parametrize("command", ["estimate", "train", "sweep", "reproduce"])
def test_help_gives_each_default_once(command, capsys):
    rc, out, _ = _run([command, "--help"], capsys)
    assert rc == 0 and "(default: None)" not in out and "(default: [])" not in out
    options = " ".join(out.split()).split(" options: ")[1]
    for text in re.split(r" (?=-{1,2}[a-z])", options):
        assert text.count("default") <= 1, text


@pytest.mark.parametrize(
    "argv, message",
    [
        (["estimate", "--exponent", "0"], "argument --exponent/-m: expected a finite number > 0"),
        (["estimate", "--n", "0"], "argument --n: expected a positive integer, got '0'"),
        (["estimate", "--samples", "many"], "argument --samples: expected a positive integer"),
        (["estimate", "--norm", "-1"], "argument --norm: expected a finite number > 0"),
        (["estimate", "--activation", "swish"], "argument --activation: invalid choice: 'swish'"),
        (["estimate", "--p", "1.5", "--samples", "100"], "p must lie in [0, 1]"),
        (["estimate", "--seed", str(2**64), "--samples", "100"], "seed must be an integer in"),
        (["estimate", "--samples", "1e15", "--n", "10"], "TiB of memory, more than this machine"),
        (["estimate", "--weights", "missing.npy"], "No such file or directory: 'missing.npy'"),
        (["train", "--steps", "0"], "argument --steps: expected a positive integer, got '0'"),
        (["train", "--lr", "-1"], "argument --lr: expected a finite number > 0, got '-1'"),
        (["train", "--p", "0.1,x"], "argument --p: expected a number or a comma-separated list"),
        (["train", "--p", "0.1,0.2", "--instances", "3"], "--p gives 2 probabilities (one per"),
        (["train", "--method", "exact", "--restarts", "-1"], "restarts must be an integer >= 0"),
        (["sweep", "estimate", "--grid", "p"], "--grid expects NAME=VALUE, got 'p'"),
        (["sweep", "bogus"], "argument kind: invalid choice: 'bogus'"),
        (["sweep", "exact", "--set", "n=4", "--set", "d=2", "--set", "p=0.1", "--set",
          "exponent=200"], "the largest usable exponent for these values is m = 150"),
        (["reproduce", "figure4"], "argument experiment: invalid choice: 'figure4'"),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ],
)  # fmt: skip
def test_bad_options_are_one_line_errors(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, _, err = _run(argv, capsys)
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastsuper"), err
    assert ": error: " in lines[0] and message in lines[0]
    assert "sphere_dimension" not in err and "Traceback" not in err


def test_backend_cuda_without_a_gpu_is_a_one_line_error(capsys):
    if T.simulator():
        pytest.skip("the CUDA simulator is on: backend='cuda' works")
    try:
        T.require_cuda()
    except RuntimeError:
        pass
    else:  # pragma: no cover - a machine with a GPU
        pytest.skip("a GPU is there: backend='cuda' works")
    rc, _, err = _run(["estimate", "--backend", "cuda", "--samples", "100"], capsys)
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith("fastsuper estimate: error: backend='cuda' needs a CUDA GPU")


def test_train_takes_one_p_per_instance(tmp_path, capsys):
    prefix = str(tmp_path / "ps")
    argv = ["train", "--p", "0.1,0.2,0.3", "--steps", "20", "--out", prefix, "--no-plots"]
    rc, out, _ = _run(argv, capsys)
    assert rc == 0 and "instances=3" in out
    res = fs.FitResult.load(prefix + ".npz")
    assert res.n_instances == 3
    np.testing.assert_array_equal(np.asarray(res.settings["p"])[:, 0], [0.1, 0.2, 0.3])


def test_train_exact_names_its_starts(tmp_path, capsys):
    argv = ["train", "--method", "exact", "--n", "5", "--d", "2", "--restarts", "4",
            "--maxiter", "5", "--out", str(tmp_path / "e"), "--no-plots"]  # fmt: skip
    rc, out, _ = _run(argv, capsys)
    assert rc == 0
    assert "best of 5 starts: the unsuperposed optimum and 4 random frames (--restarts 4)" in out


@pytest.mark.filterwarnings("default::RuntimeWarning")
def test_train_warns_in_one_line_when_the_loss_blows_up(tmp_path, capsys):
    argv = ["train", "--lr", "1e6", "--steps", "200", "--instances", "1", "--no-plots",
            "--out", str(tmp_path / "big")]  # fmt: skip
    rc, _, err = _run(argv, capsys)
    assert rc == 0
    assert err.startswith("fastsuper train: warning: fit: the batch loss of instance 0 blew up")
    assert "lr = 1e+06 is too large" in err and len(err.strip().splitlines()) == 1


def test_subcommands_show_progress_on_a_terminal_only(tmp_path, capsys, monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    out = str(tmp_path / "q")
    argv = ["train", "--steps", "20", "--instances", "1", "--no-plots", "--out", out]
    _run(argv, capsys)
    assert capsys.readouterr().err == ""  # not a terminal
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    _run(argv, capsys)
    assert "fit 20/20 steps 100%" in terminal.getvalue()
    terminal.truncate(0)
    _run([*argv, "--quiet"], capsys)
    assert "steps" not in terminal.getvalue()


def test_estimate_and_train_take_the_activation_parameter(tmp_path, capsys):
    W = np.random.default_rng(0).normal(size=(3, 12)) / 2
    np.save(tmp_path / "W.npy", W)
    json_path = tmp_path / "est.json"
    args = ["estimate", "--weights", str(tmp_path / "W.npy"), "--activation", "softplus",
            "--param", "2", "--values", "uniform", "--p", "0.1", "--samples", "1e4",
            "--json", str(json_path)]  # fmt: skip
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "activation=softplus exponent=1 param=2" in text
    rec = json.loads(json_path.read_text())
    model = fs.Model(W, activation="softplus", param=2.0)
    est = fs.estimate_loss(model, fs.SparseInputs(12, p=0.1, values="uniform"), 10_000, seed=0)
    assert rec["param"] == 2.0 and rec["loss_mc"] == pytest.approx(est.mean, rel=1e-12)
    assert main(args[:7] + ["--activation", "gelu", "--samples", "100"]) == 2
    assert "activation='gelu' takes no parameter" in capsys.readouterr().err
    prefix = str(tmp_path / "leaky")
    args = ["train", "--n", "5", "--d", "2", "--instances", "1", "--steps", "20",
            "--activation", "leaky_relu", "--param", "0.2", "--out", prefix, "--quiet"]  # fmt: skip
    assert main(args) == 0
    assert fs.FitResult.load(prefix + ".npz").model(0).param == 0.2
