"""The command line: `fastsuper estimate` and `fastsuper train`."""

import json

import numpy as np
import pytest

import fastsuper as fs
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
