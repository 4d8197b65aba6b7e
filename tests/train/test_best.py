"""FitResult.select and FitResult.best: the lowest-loss restart of each configuration."""

from __future__ import annotations

import numpy as np
import pytest

import fastsuper as fs
from fastsuper import FitResult


def _result(n_inst=6, n=4, d=2, n_log=20, seed=0, p_rows=None):
    """A FitResult with random weights and loss history (no training)."""
    rng = np.random.default_rng(seed)
    p_rows = p_rows if p_rows is not None else [[0.1] * n] * n_inst
    settings = dict(
        n=n, d=d, n_instances=n_inst, p=[list(r) for r in p_rows],
        importance=[[1.0] * n] * n_inst, activation="relu_power", exponent=1.0,
        values="uniform", bias=True, steps=n_log, log_every=1,
    )  # fmt: skip
    return FitResult(
        W=rng.normal(size=(n_inst, d, n)),
        b=rng.normal(size=(n_inst, n)),
        loss_history=rng.uniform(1.0, 2.0, size=(n_log, n_inst)),
        settings=settings,
        W0=rng.normal(size=(n_inst, d, n)),
    )


def _argmin_blocks(score, restarts):
    """Plain reference: the index of the smallest finite score in each block."""
    out = []
    for c in range(len(score) // restarts):
        block = np.array(score[c * restarts : (c + 1) * restarts], dtype=float)
        block[~np.isfinite(block)] = np.inf
        out.append(c * restarts + int(np.argmin(block)))
    return out


def test_best_by_given_losses_matches_reference():
    res = _result(n_inst=6)
    losses = np.array([3.0, 1.0, 2.0, 0.5, 0.7, 0.6])
    best = res.best(3, losses)
    want = _argmin_blocks(losses, 3)
    assert want == [1, 3]
    assert best.settings["instances"] == want
    np.testing.assert_array_equal(best.W, res.W[want])
    np.testing.assert_array_equal(best.b, res.b[want])
    np.testing.assert_array_equal(best.W0, res.W0[want])
    np.testing.assert_array_equal(best.loss_history, res.loss_history[:, want])
    assert best.n_instances == 2 and best.settings["n_instances"] == 2


def test_best_default_ranks_by_mean_of_last_tenth():
    res = _result(n_inst=4, n_log=30)
    score = res.loss_history[-3:].mean(axis=0)  # 30 // 10 records
    assert res.best(2).settings["instances"] == _argmin_blocks(score, 2)
    score5 = res.loss_history[-5:].mean(axis=0)
    assert res.best(2, window=5).settings["instances"] == _argmin_blocks(score5, 2)
    # a window longer than the record averages all of it
    assert res.best(4, window=1000).settings["instances"] == _argmin_blocks(
        res.loss_history.mean(axis=0), 4
    )


def test_best_ranks_non_finite_last_and_refuses_all_non_finite():
    res = _result(n_inst=4)
    losses = np.array([np.nan, 5.0, np.inf, np.nan])
    with pytest.raises(ValueError, match=r"configuration 1 \(instances 2 \.\. 3\).*non-finite"):
        res.best(2, losses)
    assert res.best(2, [np.nan, 5.0, np.inf, 7.0]).settings["instances"] == [1, 3]


def test_best_bad_arguments():
    res = _result(n_inst=6)
    with pytest.raises(ValueError, match="restarts must divide n_instances = 6, got 4"):
        res.best(4)
    with pytest.raises(ValueError, match="restarts"):
        res.best(0)
    with pytest.raises(ValueError, match=r"losses must have shape \(6,\)"):
        res.best(3, np.ones(5))
    rows = [[0.1] * 4] * 3 + [[0.2] * 4, [0.2] * 4, [0.3] * 4]
    with pytest.raises(ValueError, match="configuration 1 .* share p, but instance 5"):
        _result(n_inst=6, p_rows=rows).best(3)
    empty = _result(n_inst=2, n_log=0)
    with pytest.raises(ValueError, match="no batch loss was recorded"):
        empty.best(1)


def test_select_composes_and_round_trips(tmp_path):
    res = _result(n_inst=5)
    a = res.select([4, 1, 3])
    b = a.select([2, 0])
    assert b.settings["instances"] == [3, 4]
    np.testing.assert_array_equal(b.W, res.W[[3, 4]])
    path = tmp_path / "sel.npz"
    b.save(path)
    back = FitResult.load(path)
    assert back.settings["instances"] == [3, 4]
    np.testing.assert_array_equal(back.W, b.W)
    with pytest.raises(IndexError, match=r"instances must lie in \[0, 5\), got 7"):
        res.select([0, 7])
    with pytest.raises(ValueError, match="instances must be a non-empty 1-d sequence"):
        res.select([])


def test_best_of_trained_restarts():
    """Restarts of two configurations trained in one call; the winner's model is the instance's."""
    p = np.repeat([0.5, 0.05], 3)
    res = fs.fit(5, 2, n_instances=6, p=p, steps=60, batch_size=64, log_every=10,
                 progress=False)  # fmt: skip
    best = res.best(3)
    want = _argmin_blocks(res.loss_history[-1:].mean(axis=0), 3)
    assert best.settings["instances"] == want
    for c, k in enumerate(want):
        m_best, m_k = best.model(c), res.model(k)
        np.testing.assert_array_equal(m_best.W, m_k.W)
        np.testing.assert_array_equal(m_best.bias, m_k.bias)
        np.testing.assert_array_equal(best.inputs(c).p, res.inputs(k).p)


def test_fit_restarts_is_best_of_the_repeated_instances():
    """fit(restarts=k) trains each configuration k times (numpy.repeat layout) and keeps
    the restart with the lowest mean of the last tenth of its batch losses."""
    p = [0.6, 0.05]
    imp = [0.9 ** np.arange(5), np.ones(5)]
    kw = dict(importance=imp, steps=60, batch_size=32, lr=1e-2, log_every=5, seed=3)
    got = fs.fit(5, 2, n_instances=2, p=p, restarts=3, **kw)
    full = fs.fit(
        5, 2, n_instances=6, p=np.repeat(p, 3), **dict(kw, importance=np.repeat(imp, 3, 0))
    )
    n_log = full.loss_history.shape[0]  # 12 records: the last tenth is max(1, 12 // 10) = 1
    tail = full.loss_history[-max(1, n_log // 10) :].mean(axis=0)
    want = _argmin_blocks(tail, 3)
    assert got.settings["instances"] == want
    assert got.n_instances == 2
    np.testing.assert_array_equal(got.W, full.W[want])
    np.testing.assert_array_equal(got.b, full.b[want])
    assert got.settings["p"][1][0] == 0.05


def test_fit_restarts_with_groups_and_errors():
    groups = dict(groups=[[0, 1]], kind="exclusive")
    got = fs.fit(4, 2, n_instances=1, p=0.3, groups=groups, restarts=2, steps=20, batch_size=16)
    assert got.n_instances == 1 and got.settings["instances"][0] in (0, 1)
    with pytest.raises(ValueError, match="restarts must be an integer >= 1, got 0"):
        fs.fit(4, 2, restarts=0)
    with pytest.raises(ValueError, match="W0 and b0 cannot be given with restarts > 1"):
        fs.fit(4, 2, restarts=2, W0=np.ones((2, 4)))
    with pytest.raises(ValueError, match="restarts applies to method='adam'"):
        fs.fit(4, 2, method="exact", activation="power", exponent=3, p=0.1, restarts=2)
