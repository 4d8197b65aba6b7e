"""fastsuper reproduce: the quick figure3 and capacity runs, resuming, the CLI."""

import csv
import json
import math

import numpy as np
import pytest

import fastsuper as fs
from fastsuper import testing as T
from fastsuper import theory as th
from fastsuper.apps.cli import main


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("fig3")
    rc = main(["reproduce", "figure3", "--quick", "--out", str(out), "--quiet"])
    assert rc == 0
    with open(out / "figure3.json") as fh:
        return out, json.load(fh)


def _rows(out):
    with open(out / "figure3.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_quick_figure3_writes_its_files(quick_run, capsys):
    out, res = quick_run
    s = T.figure3_settings(quick=True)
    assert (out / "figure3.png").stat().st_size > 10_000
    assert sorted(res["curves"]) == sorted(str(d) for d in s["dims"])
    rows = _rows(out)
    n_points = len(s["exponents"])
    # one forward row per point and one backward row per point but the last, per d
    assert len(rows) == len(s["dims"]) * (2 * n_points - 1)


def test_quick_figure3_gains_are_exact_and_beat_the_constructions(quick_run):
    out, res = quick_run
    s = T.figure3_settings(quick=True)
    m, n = s["m"], s["n"]
    kap = th.kappa("gaussian", m)
    for ds, c in res["curves"].items():
        d = int(ds)
        D = th.sphere_dimension(d, m)
        gains = np.array(c["gain"])
        ps = np.array(c["p"])
        assert np.all(np.diff(gains) >= 0) and res["monotone"][ds]  # non-decreasing in p
        # never below the unsuperposed optimum (exact at every p)
        assert np.all(gains >= ps * kap * min(n, d) * (1 - 1e-12))
        # very sparse points: within 6% below the first-order cap, never above it
        small = ps <= d**-4.0 * (1 + 1e-12)
        ratio = gains[small] / (ps[small] * kap * D)
        assert np.all(ratio <= 1.0) and np.all(ratio >= 0.94)
        # the stored weights give the stored gain (independent recomputation)
        for idx, (p, g) in enumerate(zip(ps, gains)):
            back = out / "weights" / f"W_d{d}_i{idx:02d}_backward.npy"
            fwd = out / "weights" / f"W_d{d}_i{idx:02d}_forward.npy"
            W = np.load(back if back.exists() else fwd)
            inputs = fs.SparseInputs(W.shape[1], p=float(p), values="gaussian")
            assert fs.exact_gain(fs.Model(W), inputs) == pytest.approx(g, rel=1e-10)
    for row in _rows(out):
        assert float(row["gain"]) >= float(row["construction_gain"]) * (1 - 1e-12)


def test_figure3_resumes_after_an_interruption(quick_run, tmp_path):
    out, res = quick_run
    # copy the run, then cut the CSV after the first 4 rows (an interrupted run)
    (tmp_path / "weights").mkdir()
    for f in (out / "weights").iterdir():
        (tmp_path / "weights" / f.name).write_bytes(f.read_bytes())
    rows = _rows(out)
    with open(tmp_path / "figure3.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, list(rows[0]))
        w.writeheader()
        w.writerows(rows[:4])
    res2 = T.figure3(tmp_path, quick=True, progress=False)
    rows2 = _rows(tmp_path)
    assert rows2[:4] == rows[:4]  # kept, not recomputed
    assert len(rows2) == len(rows)
    for ds in res["curves"]:
        np.testing.assert_allclose(res2["curves"][ds]["gain"], res["curves"][ds]["gain"], rtol=1e-9)


def test_figure3_progress_and_check_with_custom_settings(tmp_path, capsys):
    settings = {"dims": (4,), "n": 30, "exponents": (-4.0, -1.0, "half"), "maxiter": 10}
    res = T.figure3(tmp_path, settings=settings, progress=True)
    err = capsys.readouterr().err
    assert "[1/3" in err and "d=4" in err  # progress lines
    assert set(res["check"]) == {"4"}
    (pt,) = res["check"]["4"]["points"]
    assert pt["log_d_p"] == pytest.approx(-4.0)
    assert pt["gain_over_cap"] <= 1.0


def test_capacity_quick_between_the_lines(tmp_path):
    res = T.capacity(tmp_path, quick=True, progress=False)
    assert (tmp_path / "capacity.png").exists() and (tmp_path / "capacity.csv").exists()
    kap = res["kappa"]
    for r in res["rows"]:
        d, n = r["d"], r["n"]
        D = th.sphere_dimension(d, 3)
        assert r["cap"] == pytest.approx(kap * min(n, D))
        assert r["random_frame"] == pytest.approx(kap * n * D / (n + D - 1))
        assert kap * min(n, d) * (1 - 1e-9) <= r["gain_over_p"] <= r["cap"] * (1 + 1e-6)
        if n >= 2 * D:  # enough features: the optimum reaches the cap (THEORY §5.3)
            assert r["gain_over_p"] >= 0.995 * r["cap"]


def test_reproduce_bad_experiment_is_an_error(capsys):
    with pytest.raises(SystemExit):
        main(["reproduce", "figure4"])
    assert "invalid choice" in capsys.readouterr().err
    assert math.isfinite(th.first_order_cap(4, 3, "gaussian"))


# --------------------------------------------------------------------------
# verdicts and plots


def test_quick_figure3_prints_a_pass_verdict_and_exits_0(quick_run, capsys):
    out, res = quick_run
    assert res["passed"] and res["verdict"].startswith("figure3: PASS (at every p <= d^-5 ")
    rc = main(["reproduce", "figure3", "--quick", "--out", str(out), "--quiet"])  # resumes
    lines = capsys.readouterr().out.strip().splitlines()
    assert rc == 0 and lines[-1] == res["verdict"]
    assert all("within 5% below: yes" in line for line in lines if line.startswith("d = "))


def test_figure3_failed_check_says_fail_and_exits_1(tmp_path, monkeypatch, capsys):
    """d = 4 at p = d^-4 lies more than 5% below the cap (a real shortfall): FAIL, exit 1."""
    from fastsuper.apps import reproduce

    settings = T.figure3_settings()
    settings.update(dims=(4,), n=30, exponents=(-4.0, "half"), maxiter=10)
    monkeypatch.setattr(reproduce, "figure3_settings", lambda quick=False: dict(settings))
    rc = main(["reproduce", "figure3", "--out", str(tmp_path), "--quiet"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert rc == 1
    assert lines[-1].startswith("figure3: FAIL (d = 4: gain / (p kappa D) = 0.9")
    assert "outside [0.95, 1]" in lines[-1] and "within 5% below: NO" in lines[0]
    res = json.loads((tmp_path / "figure3.json").read_text())
    assert res["passed"] is False and res["verdict"] == lines[-1]


def test_capacity_verdict_and_exit_status(tmp_path, monkeypatch, capsys):
    from fastsuper.apps import reproduce

    res = T.capacity(tmp_path / "a", dims=(3,), ns=(3, 14), progress=False)
    assert res["passed"] and res["verdict"].startswith("capacity: PASS")
    real = reproduce.capacity

    def small(out, **kw):
        return real(out, dims=(3,), ns=(3,), progress=False)

    monkeypatch.setattr(reproduce, "capacity", small)
    assert main(["reproduce", "capacity", "--out", str(tmp_path / "b")]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("capacity: PASS")
    # a random-frame line above the optimum cannot hold: FAIL and exit status 1
    monkeypatch.setattr(reproduce, "random_frame_value", lambda n, d, m, law: 1e9)
    assert main(["reproduce", "capacity", "--out", str(tmp_path / "c")]) == 1
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("capacity: FAIL (d = 3, n = 3: gain / p = ")


def test_plot_figure3_draws_the_result(quick_run):
    pytest.importorskip("matplotlib")
    from fastsuper.apps.reproduce import plot_figure3

    out, res = quick_run
    ax = plot_figure3(res)
    kap, m = res["kappa"], res["settings"]["m"]
    assert len(ax.lines) == 4 * len(res["curves"])
    for k, (ds, c) in enumerate(res["curves"].items()):
        d = int(ds)
        data, cap = ax.lines[4 * k], ax.lines[4 * k + 1]
        np.testing.assert_allclose(data.get_xdata(), np.log(c["p"]) / math.log(d), rtol=1e-15)
        np.testing.assert_allclose(data.get_ydata(), np.log(c["gain"]) / math.log(d), rtol=1e-15)
        x = cap.get_xdata()
        D = th.sphere_dimension(d, m)
        np.testing.assert_allclose(d ** cap.get_ydata(), kap * D * d**x, rtol=1e-12)
    import matplotlib.pyplot as plt

    fig, given = plt.subplots()
    assert plot_figure3(res, out / "again.png", ax=given) is given
    assert (out / "again.png").read_bytes()[:4] == b"\x89PNG"
    plt.close("all")


def test_plot_capacity_draws_the_result(tmp_path):
    pytest.importorskip("matplotlib")
    from fastsuper.apps.reproduce import plot_capacity

    res = T.capacity(tmp_path, dims=(3,), ns=(3, 14), progress=False)
    ax = plot_capacity(res)
    points, frames, cap = ax.lines
    np.testing.assert_array_equal(points.get_xdata(), [3, 14])
    np.testing.assert_array_equal(points.get_ydata(), [r["gain_over_p"] for r in res["rows"]])
    D = th.sphere_dimension(3, 3)
    np.testing.assert_allclose(cap.get_ydata(), res["kappa"] * np.minimum(cap.get_xdata(), D))
    assert "sum over features" in ax.get_ylabel()
