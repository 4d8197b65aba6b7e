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


def test_phase_diagram_outputs_and_resume(tmp_path, monkeypatch):
    s = dict(TINY, diagrams=("2-1", "3-2"))
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
    assert sum(res["sticky_share"].values()) == pytest.approx(1.0)
    assert (tmp_path / "geometry.png").stat().st_size > 1000
    monkeypatch.setattr(gs, "fit", lambda *a, **k: (_ for _ in ()).throw(AssertionError))
    assert (
        gs.geometry_sweep(tmp_path, quick=True, settings=tiny, progress=False)["instances"]
        == res["instances"]
    )
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
    assert (tmp_path / "g" / "geometry_features.csv").exists()
