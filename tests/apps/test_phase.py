"""reproduce phase-diagram and reproduce geometry: regimes, the closed-form boundary, the
CSV and JSON outputs against the exact loss, resuming, and the command line."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

import fastsuper as fs
from fastsuper.apps import geometry_sweep as gs
from fastsuper.apps import phase
from fastsuper.apps.cli import main
from fastsuper.exact.patterns import pattern_loss


def _csv(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


TINY = {"n_p": 3, "n_r": 3, "restarts": 2, "steps": 300, "batch_size": 128,
        "exact_restarts": 2}  # fmt: skip


def test_regimes_from_weights():
    assert phase.regime([[1.0, 0.0]]) == "not represented"
    assert phase.regime([[0.0, 1.0]]) == "dedicated"
    assert phase.regime([[1.0, -0.8]]) == "superposed"
    assert phase.regime([[1.0, 0.0, 0.0], [0.0, 1.0, 0.2]]) == "not represented"
    assert phase.regime([[1.0, 0.0, 0.0], [0.0, 1.0, -1.0]]) == "superposed"
    assert phase.regime([[1.0, -1.0, 0.0], [0.0, 0.0, 1.0]]) == "dedicated"
    # thresholds: |w| = 0.31 is represented; interference 0.05 is not an edge
    assert phase.regime([[1.0, 0.0], [0.05, 0.31]]) == "dedicated"
    assert phase.regime([[1.0, 0.0], [0.0, 0.29]]) == "not represented"


def test_theory_boundary_is_where_the_closed_forms_cross():
    for r in [0.1, 0.3, 1.0, 2.0, 10.0]:
        p = float(phase.theory_boundary(r))
        dedicated = min(1.0, r) * (p / 3 - p**2 / 4)
        antipodal = (1 + r) * p**2 / 6
        assert antipodal == pytest.approx(dedicated, rel=1e-12)
    assert phase.theory_boundary(1.0) == pytest.approx(4 / 7)
    np.testing.assert_allclose(phase.theory_boundary([0.25, 4.0]), [1 / 3.25, 4 / 13])


def test_keep_takes_the_best_of_each_regime_first():
    losses = [0.3, 0.1, 0.2, 0.5, 0.4]
    regimes = ["superposed", "superposed", "superposed", "dedicated", "not represented"]
    assert phase._keep(losses, regimes, 2) == [1, 4]
    assert phase._keep(losses, regimes, 3) == [1, 4, 3]
    assert phase._keep(losses, regimes, 4) == [1, 2, 4, 3]
    assert phase._keep(losses, ["dedicated"] * 5, 2) == [1, 2]


def test_screened_restarts_go_on_from_where_they_stopped(monkeypatch):
    calls = []
    orig = phase.fit

    def spy(*a, **k):
        calls.append((k, orig(*a, **k)))
        return calls[-1][1]

    monkeypatch.setattr(phase, "fit", spy)
    s = dict(phase.phase_diagram_settings(), **dict(TINY, screen_steps=100, restarts=3, keep=2))
    rs = np.array([0.5, 2.0])
    out = phase._train_row(s, 2, 1, 0.2, rs, 7)
    (k1, first), (k2, second) = calls
    assert (k1["n_instances"], k1["steps"]) == (6, 100)
    assert (k2["n_instances"], k2["steps"], k2["seed"]) == (4, 200, 7 + 10**6)
    for c, (W, b, losses) in enumerate(out):
        inputs = fs.SparseInputs(2, p=0.2, values="uniform", importance=[1.0, rs[c]])
        model = [fs.Model(first.W[3 * c + j], first.b[3 * c + j], activation="relu")
                 for j in range(3)]  # fmt: skip
        screened = [pattern_loss(m, inputs) for m in model]
        regimes = [phase.regime(first.W[3 * c + j]) for j in range(3)]
        go = [3 * c + j for j in phase._keep(screened, regimes, 2)]
        np.testing.assert_array_equal(k2["W0"][2 * c : 2 * c + 2], first.W[go])
        finals = {i: second.W[2 * c + q] for q, i in enumerate(go)}
        for j in range(3):
            Wj = finals.get(3 * c + j, first.W[3 * c + j])
            bj = second.b[2 * c + go.index(3 * c + j)] if 3 * c + j in go else first.b[3 * c + j]
            assert losses[j] == pattern_loss(fs.Model(Wj, bj, activation="relu"), inputs)
        j = int(np.argmin(losses))
        np.testing.assert_array_equal(W, finals.get(3 * c + j, first.W[3 * c + j]))
        assert pattern_loss(fs.Model(W, b, activation="relu"), inputs) == losses[j]


def test_phase_diagram_outputs_and_resume(tmp_path, monkeypatch):
    s = dict(TINY, diagrams=("2-1", "3-2"), screen_steps=100, keep=1)
    res = phase.phase_diagram(tmp_path, settings=s, progress=False)
    rows = _csv(tmp_path / "phase_diagram.csv")
    assert len(rows) == 2 * 9
    assert (tmp_path / "phase_diagram.png").stat().st_size > 1000
    assert json.loads((tmp_path / "phase_diagram.json").read_text())["diagrams"].keys() == {
        "2-1",
        "3-2",
    }
    for row in rows:
        n, d, p, r = int(row["n"]), int(row["d"]), float(row["p"]), float(row["r"])
        imp = [1.0] * (n - 1) + [r]
        inputs = fs.SparseInputs(n, p=p, values="uniform", importance=imp)
        for which in ("trained", "exact"):
            W = np.array(row[f"W_{which}"].split(), float).reshape(d, n)
            b = np.array(row[f"b_{which}"].split(), float)
            loss = pattern_loss(fs.Model(W, b, activation="relu"), inputs)
            assert loss == pytest.approx(float(row[f"loss_{which}"]), rel=1e-12)
            assert row[f"regime_{which}"] == phase.regime(W)
        assert float(row["gap"]) == float(row["loss_trained"]) - float(row["loss_exact"])
        assert min(float(x) for x in row["restart_losses"].split()) == float(row["loss_trained"])
        if n == 2:  # the exact optimum is at least as good as both closed forms
            best = min(min(1.0, r) * (p / 3 - p**2 / 4), (1 + r) * p**2 / 6)
            assert float(row["loss_exact"]) <= best * (1 + 1e-9)
    ex = np.array(res["diagrams"]["2-1"]["exact"])
    names = [phase.REGIMES[c] for c in ex[[0, 2, 2], [1, 0, 2]]]
    # p = 0.01 (r = 1): superposed; p = 1: r = 0.1 drops the feature, r = 10 dedicates it
    assert names == ["superposed", "not represented", "dedicated"]
    for dg in res["diagrams"].values():
        assert dg["n_disagree"] == len(dg["disagreements"])
        assert dg["n_disagree"] == int(np.sum(np.array(dg["trained"]) != np.array(dg["exact"])))

    # resuming: nothing is trained again, the same result comes back
    def boom(*a, **k):
        raise AssertionError("trained again")

    monkeypatch.setattr(phase, "fit", boom)
    again = phase.phase_diagram(tmp_path, settings=s, progress=False)
    assert again["diagrams"] == res["diagrams"]
    # other settings: nothing is reused
    with pytest.raises(AssertionError, match="trained again"):
        phase.phase_diagram(tmp_path, settings=dict(s, steps=301), progress=False)


def test_geometry_sweep_outputs_and_plateau(tmp_path, monkeypatch):
    tiny = {"n": 6, "d": 2, "n_sparsities": 3, "steps": 100, "batch_size": 64, "chunk": 2}
    res = gs.geometry_sweep(tmp_path, quick=True, settings=tiny, progress=False)
    inst = _csv(tmp_path / "geometry.csv")
    feats = _csv(tmp_path / "geometry_features.csv")
    assert len(inst) == 3 and len(feats) == 18
    assert sorted((tmp_path / "fits").iterdir())[-1].name == "chunk_001.npz"
    for k, row in enumerate(inst):
        W = fs.FitResult.load(tmp_path / "fits" / f"chunk_{k // 2:03d}.npz").W[k % 2]
        assert float(row["dims_per_feature"]) == pytest.approx(2 / np.sum(W**2), rel=1e-12)
        shares = [float(row[f"share_{lab}"]) for lab in ("1", "3/4", "2/3", "1/2", "2/5",
                                                          "3/8", "0")]  # fmt: skip
        assert sum(shares) == pytest.approx(1.0)
        g = fs.geometry.feature_geometry(W)
        rep = np.linalg.norm(W, axis=0) >= 0.3
        for f, lab in [(0.5, "1/2"), (1.0, "1"), (2 / 3, "2/3")]:
            want = np.mean(rep & (np.abs(g.D - f) <= 0.02))
            assert float(row[f"at_{lab}"]) == pytest.approx(want)
    assert sum(res["sticky_share"].values()) == pytest.approx(1.0)
    assert (tmp_path / "geometry.png").stat().st_size > 1000
    monkeypatch.setattr(gs, "fit", lambda *a, **k: (_ for _ in ()).throw(AssertionError))
    assert (
        gs.geometry_sweep(tmp_path, quick=True, settings=tiny, progress=False)["instances"]
        == res["instances"]
    )
    # other settings: the saved chunks are not reused
    monkeypatch.undo()
    other = gs.geometry_sweep(tmp_path, quick=True, settings=dict(tiny, steps=101), progress=False)
    assert other["settings"]["steps"] == 101
    assert fs.FitResult.load(tmp_path / "fits" / "chunk_000.npz").settings["steps"] == 101
    rows = [{"dims_per_feature": v, "inv_density": float(i)}
            for i, v in enumerate([1.0, 0.52, 0.49, 0.7, 0.5])]  # fmt: skip
    assert gs._plateau(rows) == {"length": 2, "inv_density_from": 1.0, "inv_density_to": 2.0}


def test_command_line(tmp_path, monkeypatch, capsys):
    orig = phase.phase_diagram_settings
    monkeypatch.setattr(
        phase,
        "phase_diagram_settings",
        lambda quick=False: dict(orig(quick), **TINY, diagrams=("2-1",)),
    )
    assert main(["reproduce", "phase-diagram", "--quick", "--quiet", "--out",
                 str(tmp_path / "pd")]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "2-1: " in out and "cells disagree with the exact optimum" in out
    assert (tmp_path / "pd" / "phase_diagram.csv").exists()
    tiny = {"n": 6, "d": 2, "n_sparsities": 2, "steps": 50, "batch_size": 64}
    orig_g = gs.geometry_settings
    monkeypatch.setattr(gs, "geometry_settings", lambda quick=False: dict(orig_g(quick), **tiny))
    assert main(["reproduce", "geometry", "--quick", "--quiet", "--out",
                 str(tmp_path / "g")]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "share of features nearest to each sticky fraction" in out
    assert "share of features represented and within 0.02 of it" in out
    assert (tmp_path / "g" / "geometry_features.csv").exists()
