"""fastsuper.sweep: grid order, resuming after an interruption, executors, errors."""

from __future__ import annotations

import csv
import importlib.util
import math

import numpy as np
import pytest

import fastsuper as fs
from fastsuper.analysis import random_frame, random_frame_norm

GRID = {"p": [0.02, 0.2], "d": [2, 3]}
FIXED = {"n": 16, "n_samples": 4000, "exact": True}
SEEDS = [0, 1, 2]
NDP = {"n": 4, "d": 2, "p": 0.1}


def _est(**kw):
    return fs.sweep("estimate", GRID, seeds=SEEDS, fixed=FIXED, progress=False, **kw)


def _assert_same_table(a: fs.SweepResult, b: fs.SweepResult) -> None:
    """Equal tables: every column bit for bit, except the wall-clock times."""
    assert a.columns == b.columns
    assert len(a) == len(b)
    for c in a.columns:
        if c == "elapsed":
            continue
        x, y = a[c], b[c]
        if x.dtype.kind == "f":
            np.testing.assert_array_equal(x, y)  # NaN == NaN here
        else:
            assert x.tolist() == y.tolist(), c


def _csv_rows(path):
    with open(path, newline="") as fh:
        return list(csv.reader(fh))


@pytest.fixture(scope="module")
def reference():
    return _est()


def test_rows_are_the_direct_computations_in_grid_order(reference):
    res = reference
    assert res.complete and len(res) == 2 * 2 * 3
    assert res.columns[:6] == ["p", "d", "n", "n_samples", "exact", "seed"]
    expected_keys = [(p, d, s) for p in GRID["p"] for d in GRID["d"] for s in SEEDS]
    assert list(zip(res["p"].tolist(), res["d"].tolist(), res["seed"].tolist())) == expected_keys
    for row in res.rows:  # an independent construction of each row
        law = fs.ValueLaw("gaussian")
        W = random_frame(16, row["d"], random_frame_norm(16, row["d"], 3, law), row["seed"])
        model, inputs = fs.Model(W, exponent=3), fs.SparseInputs(16, p=row["p"])
        est = fs.estimate_loss(model, inputs, 4000, row["seed"])
        assert (row["loss"], row["stderr"], row["gain"]) == (est.mean, est.stderr, est.gain_mean)
        assert row["loss_exact"] == fs.exact_loss(model, inputs)
        assert row["error"] == "" and row["elapsed"] > 0


def test_resume_after_max_points_gives_the_uninterrupted_table(tmp_path, reference):
    out = tmp_path / "s.csv"
    first = _est(output=out, max_points=5)
    assert not first.complete and len(first) == 5 and first.n_new == 5
    assert len(_csv_rows(out)) == 1 + 5
    second = _est(output=out)
    assert second.complete and second.n_new == 12 - 5
    _assert_same_table(second, reference)
    rows = _csv_rows(out)
    assert rows[0] == second.columns and len(rows) == 1 + 12  # no duplicated or lost rows
    third = _est(output=out)  # nothing left to do
    assert third.n_new == 0
    _assert_same_table(third, reference)


CRASH = {"at": None}


def _flaky(params, seed):
    """A user row function; raises at one (point, seed) while CRASH["at"] is set."""
    if CRASH["at"] == (params["a"], seed):
        raise RuntimeError("simulated crash")
    return {"y": params["a"] * 10 + seed + params["b"] / 4, "label": f"a{params['a']}"}


def test_resume_after_a_crash_and_a_torn_line(tmp_path):
    grid = {"a": [1, 2, 3], "b": [0.5, 1.5]}
    full = fs.sweep(_flaky, grid, seeds=[0, 1], progress=False)
    assert full["y"].tolist() == [a * 10 + s + b / 4 for a in (1, 2, 3) for b in (0.5, 1.5)
                                  for s in (0, 1)]  # fmt: skip
    out = tmp_path / "f.csv"
    CRASH["at"] = (2, 1)
    try:
        with pytest.raises(RuntimeError, match="simulated crash"):
            fs.sweep(_flaky, grid, seeds=[0, 1], output=out, progress=False)
    finally:
        CRASH["at"] = None
    rows = _csv_rows(out)
    assert len(rows) == 1 + 5  # the rows before the crash were flushed
    with open(out, "a") as fh:  # a write cut short by the crash, and a duplicated row
        fh.write(",".join(rows[2]) + "\r\n" + "3,0.5,0,30.1")
    res = fs.sweep(_flaky, grid, seeds=[0, 1], output=out, progress=False)
    assert res.complete and res.n_new == 12 - 5
    _assert_same_table(res, full)
    assert _csv_rows(out) == [full.columns] + [
        [str(r["a"]), repr(r["b"]), str(r["seed"]), repr(r["y"]), r["label"], ""] for r in full.rows
    ]


def test_record_errors_keeps_going(tmp_path):
    CRASH["at"] = (1, 0)  # the very first row fails: output names are not known yet
    try:
        res = fs.sweep(_flaky, {"a": [1, 2], "b": [0.0]}, seeds=[0, 1], on_error="record",
                       output=tmp_path / "e.csv", progress=False)  # fmt: skip
    finally:
        CRASH["at"] = None
    assert res.columns == ["a", "b", "seed", "y", "label", "error"]
    assert res["error"].tolist() == ["RuntimeError: simulated crash", "", "", ""]
    y = res["y"]
    assert math.isnan(y[0]) and y[1:].tolist() == [11.0, 20.0, 21.0]
    again = fs.sweep(_flaky, {"a": [1, 2], "b": [0.0]}, seeds=[0, 1], on_error="record",
                     output=tmp_path / "e.csv", progress=False)  # fmt: skip
    assert again.n_new == 0 and again["error"][0] == "RuntimeError: simulated crash"


def test_processes_executor_gives_the_same_table(reference):
    res = _est(executor="processes", n_jobs=2)
    _assert_same_table(res, reference)


def test_fit_rows_save_loadable_weights(tmp_path):
    fixed = {"n": 5, "d": 2, "steps": 60, "eval_samples": 2000, "importance_decay": 0.9}
    res = fs.sweep("fit", {"p": [0.1, 1.0]}, seeds=[3], fixed=fixed, weights_dir=tmp_path / "w",
                   progress=False)  # fmt: skip
    for row in res.rows:
        direct = fs.fit(5, 2, p=row["p"], importance=0.9 ** np.arange(5), steps=60, seed=3)
        saved = fs.FitResult.load(row["weights"])
        np.testing.assert_array_equal(saved.W, direct.W)
        assert row["final_batch_loss"] == direct.final_loss[0]
        est = fs.estimate_loss(direct.model(0), direct.inputs(0), 2000, 3)
        assert (row["loss"], row["gain"]) == (est.mean, est.gain_mean)


def test_progress_bar_on_stderr(capsys):
    fs.sweep("exact", {"p": [0.01, 0.1]}, fixed={"n": 8, "d": 2}, progress=True)
    err = capsys.readouterr().err
    assert "sweep 2/2" in err and "100%" in err
    fs.sweep("exact", {"p": [0.01, 0.1]}, fixed={"n": 8, "d": 2}, progress=False)
    assert capsys.readouterr().err == ""
    fs.sweep("exact", {"p": [0.01, 0.1]}, fixed={"n": 8, "d": 2})  # stderr is not a terminal
    assert capsys.readouterr().err == ""


def test_integer_parameters_stay_integers(tmp_path):
    """1e5 from a CSV cell or the command line is the integer 100000 in the table and the CSV."""
    out = tmp_path / "ints.csv"
    res = fs.sweep("estimate", {"p": [0.1]}, fixed={"n": 8.0, "d": 2, "n_samples": 1e4},
                   output=out, progress=False)  # fmt: skip
    assert res["n_samples"].dtype == np.int64 and res["n"].dtype == np.int64
    header, row = out.read_text().splitlines()[:2]
    cells = dict(zip(header.split(","), row.split(",")))
    assert (cells["n"], cells["n_samples"]) == ("8", "10000")
    with pytest.raises(TypeError, match="n_samples must be an integer >= 2, got 1000.5"):
        fs.sweep("estimate", {"p": [0.1]}, fixed={"n": 8, "d": 2, "n_samples": 1000.5})


def test_required_parameters_print_readably():
    from fastsuper.apps.sweep import KINDS

    assert repr(KINDS["estimate"]["n"]) == "REQUIRED"
    assert "<object object" not in repr(KINDS)


def test_to_csv_round_trips_through_resume(tmp_path, reference):
    path = reference.to_csv(tmp_path / "r.csv")
    res = _est(output=path)  # everything is already there
    assert res.n_new == 0
    _assert_same_table(res, reference)


def test_optional_table_libraries(tmp_path, reference):
    if importlib.util.find_spec("pandas") is None:
        with pytest.raises(ImportError, match="pip install pandas"):
            reference.to_pandas()
    else:
        df = reference.to_pandas()
        assert list(df.columns) == reference.columns and len(df) == len(reference)
    if importlib.util.find_spec("pyarrow") is None:
        with pytest.raises(ImportError, match="pip install pyarrow"):
            reference.to_parquet(tmp_path / "r.parquet")
        with pytest.raises(ImportError, match="pip install pyarrow"):
            _est(output=tmp_path / "r.csv", parquet=True)
        assert not (tmp_path / "r.csv").exists()  # checked before anything ran


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(grid={"q": [1]}), ValueError, "unknown parameter 'q'"),
        (dict(grid={"n": [4]}, fixed={}), ValueError, "needs parameter 'd'"),
        (dict(kind="walk", grid={}), ValueError, "kind must be one of"),
        (dict(grid={"p": 0.1}), TypeError, r"grid\['p'\] must be a list of values"),
        (dict(grid={"p": []}), ValueError, "at least one value"),
        (dict(grid={"p": [0.1, 0.1]}), ValueError, "holds a value twice"),
        (dict(grid={"p": [np.ones(2)]}), TypeError, "must be a scalar"),
        (dict(grid={"p": [1.5]}), ValueError, "p must lie in"),
        (dict(grid={"activation": ["swish"]}, fixed=NDP), ValueError, "activation must be one of"),
        (
            dict(grid={"activation": ["relu_power"]}, fixed={**NDP, "exact": True}),
            ValueError,
            "exact loss needs activation='power'",
        ),  # fmt: skip
        (dict(seeds=3), TypeError, "seeds must be a list of integers"),
        (dict(seeds=[1, 1]), ValueError, "seeds holds a seed twice"),
        (dict(output="x.txt"), ValueError, "output must be a .csv file"),
        (dict(executor="threads"), ValueError, "executor must be one of"),
        (dict(n_jobs=2), ValueError, "n_jobs is for executor='processes' only"),
        (dict(on_error="ignore"), ValueError, r"on_error must be one of \('raise', 'record'\)"),
        (dict(max_points=-1), ValueError, "max_points must be an integer >= 0"),
        (dict(weights_dir="w"), ValueError, "weights_dir is for kind='fit' only"),
        (dict(client="tcp://x", executor="local"), ValueError, "client is for executor='dask'"),
        (dict(client="tcp://x"), TypeError, "client must be a dask.distributed.Client"),
        (dict(fixed={"n": 4, "d": 2, "seed": 1}), ValueError, "'seed' is a reserved column"),
        (dict(fixed={"n": 4, "d": 2, "p": 0.1}), ValueError, "'p' is both in grid and in fixed"),
    ],
)
def test_bad_arguments(tmp_path, monkeypatch, kwargs, error, match):
    monkeypatch.chdir(tmp_path)
    args = dict(kind="estimate", grid={"p": [0.1]}, fixed={"n": 4, "d": 2}, progress=False)
    args.update(kwargs)
    kind = args.pop("kind")
    with pytest.raises(error, match=match):
        fs.sweep(kind, **args)
    assert list(tmp_path.iterdir()) == []  # raised before anything ran or was written


def test_output_of_another_sweep_is_refused(tmp_path, reference):
    path = reference.to_csv(tmp_path / "other.csv")
    with pytest.raises(ValueError, match="holds another sweep"):
        fs.sweep("exact", GRID, fixed={"n": 16}, output=path, progress=False)


def test_dask_executor_resumes_to_the_local_table(tmp_path, reference, dask_client):
    out = tmp_path / "d.csv"
    first = _est(output=out, client=dask_client, max_points=7)
    assert not first.complete and len(first) == 7
    second = _est(output=out, client=dask_client)
    assert second.complete and second.n_new == 5
    _assert_same_table(second, reference)
    assert len(_csv_rows(out)) == 1 + 12


def test_command_line_sweep_resumes(tmp_path, capsys):
    from fastsuper.apps.cli import main

    out = tmp_path / "cli.csv"
    argv = ["sweep", "exact", "--grid", "p=0.01,0.1", "--grid", "d=2,3", "--set", "n=8",
            "--seeds", "0:2", "-o", str(out), "--quiet"]  # fmt: skip
    assert main([*argv, "--max-points", "3"]) == 0
    assert "3 rows (3 new), incomplete" in capsys.readouterr().out
    assert main(argv) == 0
    assert "8 rows (5 new), complete" in capsys.readouterr().out
    ref = fs.sweep("exact", {"p": [0.01, 0.1], "d": [2, 3]}, fixed={"n": 8}, seeds=[0, 1],
                   progress=False)  # fmt: skip
    _assert_same_table(fs.sweep("exact", {"p": [0.01, 0.1], "d": [2, 3]}, fixed={"n": 8},
                                seeds=[0, 1], output=out, progress=False), ref)  # fmt: skip
    assert main(["sweep", "exact", "--grid", "p=0.01", "--set", "n=8", "--set", "d=2"]) == 0
    text = capsys.readouterr().out.splitlines()
    assert text[0] == "p,n,d,seed,loss,gain,elapsed,error" and len(text) == 2
    assert main(["sweep", "exact", "--grid", "p"]) == 2
    assert "--grid expects NAME=VALUE, got 'p'" in capsys.readouterr().err


def test_sweep_over_activations_and_their_parameter():
    """A grid over activations and their parameter: each row is the direct computation."""
    grid = {"activation": ["softplus", "leaky_relu"], "param": [None, 0.5]}
    fixed = {"n": 12, "d": 3, "p": 0.1, "n_samples": 2000, "norm": 1.0}
    res = fs.sweep("estimate", grid, seeds=[0], fixed=fixed, progress=False)
    assert len(res) == 4
    for row in res.rows:
        param = None if row["param"] is None or row["param"] != row["param"] else row["param"]
        W = random_frame(12, 3, 1.0, 0)
        model = fs.Model(W, activation=row["activation"], param=param)
        est = fs.estimate_loss(model, fs.SparseInputs(12, p=0.1), 2000, 0)
        assert row["loss"] == est.mean and row["error"] == ""
    with pytest.raises(ValueError, match="takes no parameter"):
        fs.sweep("estimate", {"activation": ["gelu"], "param": [3.0]}, fixed=fixed)
