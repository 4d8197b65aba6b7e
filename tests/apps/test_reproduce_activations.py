"""fastsuper reproduce activations: a tiny run, its rows against direct computations, resuming."""

import csv
import json

import numpy as np
import pytest

import fastsuper as fs
from fastsuper.apps.cli import main
from fastsuper.apps.reproduce_activations import activations, plot_activations

TINY = dict(n=8, d=2, ps=[0.05, 0.3], restarts=2, steps=30, batch_size=64, eval_samples=2000,
            names=["relu", "softplus"], maxiter=20)  # fmt: skip


def _rows(out):
    with open(out / "activations.csv", newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("act")
    return out, activations(out, quick=True, settings=TINY, progress=False)


def test_rows_are_the_best_restart_of_one_fit(tiny_run):
    out, res = tiny_run
    assert sorted(res["curves"]) == ["power3_exact", "relu", "softplus", "unsuperposed"]
    ps = np.repeat(TINY["ps"], 2)
    kw = dict(values="uniform", steps=30, batch_size=64, lr=1e-2, seed=0, log_every=30)
    fit = fs.fit(8, 2, n_instances=4, p=ps, activation="softplus", param=1.0, progress=False, **kw)
    for q, p in enumerate(TINY["ps"]):
        ests = [
            fs.estimate_loss(fit.model(k), fit.inputs(k), 2000, seed=1, method="stratified")
            for k in (2 * q, 2 * q + 1)
        ]
        best = min(e.mean for e in ests)
        assert res["curves"]["softplus"]["loss"][q] == best
        assert res["curves"]["softplus"]["gain"][q] == pytest.approx(8 * p / 3 - best)
    base = res["curves"]["unsuperposed"]
    np.testing.assert_allclose(base["gain"], 2 * np.array(TINY["ps"]) / 3)
    assert json.loads((out / "activations.json").read_text())["verdict"] == res["verdict"]
    assert (out / "activations.png").stat().st_size > 5_000
    assert len(_rows(out)) == 4 * 2


def test_resumes_without_recomputing(tiny_run, tmp_path):
    out, res = tiny_run
    rows = _rows(out)
    (tmp_path / "activations.csv").write_text((out / "activations.csv").read_text())
    with open(tmp_path / "activations.csv", "w", newline="") as fh:  # the last curve lost
        w = csv.DictWriter(fh, list(rows[0]))
        w.writeheader()
        w.writerows([r for r in rows if r["name"] != "unsuperposed"])
    again = activations(tmp_path, quick=True, settings=TINY, progress=False)
    assert again["curves"]["relu"] == res["curves"]["relu"]  # read back, not refitted
    assert again["curves"]["unsuperposed"] == res["curves"]["unsuperposed"]
    fresh = activations(tmp_path, quick=True, settings=dict(TINY, names=["relu"]),
                        resume=False, progress=False)  # fmt: skip
    assert fresh["curves"]["relu"]["loss"] == res["curves"]["relu"]["loss"]  # deterministic


def test_plot_and_command_line(tiny_run, tmp_path, capsys, monkeypatch):
    _, res = tiny_run
    ax = plot_activations(res)
    assert len(ax.get_lines()) == 4
    import fastsuper.apps.reproduce_activations as ra

    tiny = dict(ra.activations_settings(True), **TINY)
    monkeypatch.setattr(ra, "activations_settings", lambda quick=False: dict(tiny))
    rc = main(["reproduce", "activations", "--quick", "--out", str(tmp_path / "cli"), "--quiet"])
    text = capsys.readouterr().out
    assert "activations.png" in text and ("PASS" in text or "FAIL" in text)
    assert rc == (0 if "PASS" in text.splitlines()[-1] else 1)
