"""ExactEvaluator: the public closed forms' numbers bit for bit, prepared once for many weights."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from builders import EXACT_LAWS, exact_case
from checks import assert_exact_close, assert_same_on_any_thread_count
from naive import enumerate_inputs

import fastsuper as fs
from fastsuper import ExactEvaluator, Model, SparseInputs
from fastsuper.core import config
from fastsuper.core.blas import blas_threads
from fastsuper.exact import kernels_prepared as kp
from fastsuper.exact.kernels_cpu import exact_grad_w, exact_power_sums

LAWS = EXACT_LAWS


_case = exact_case


def _same(a, b):
    return a is None and b is None or np.array_equal(a, b)


@pytest.mark.parametrize("law", sorted(LAWS))
@pytest.mark.parametrize("m", [1, 2, 3, 4])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("parallel", [False, True])
def test_bit_identical_to_public_functions(law, m, bias, parallel):
    W, b, inputs = _case(law, m, bias, n=23, d=4)
    model = Model(W, b, exponent=m)
    ev = ExactEvaluator(inputs, 4, m, bias=bias, parallel=parallel)
    ref_loss = fs.exact_loss_grad(model, inputs, wrt_bias=bias)
    ref_gain = fs.exact_gain_grad(model, inputs, wrt_bias=bias)
    loss = ev.loss_grad(W, b)
    gain = ev.gain_grad(W, b)
    assert loss[0] == ref_loss[0] and gain[0] == ref_gain[0]
    for got, ref in zip(loss[1:] + gain[1:], ref_loss[1:] + ref_gain[1:], strict=True):
        assert _same(got, ref)
    assert ev.loss_and_gain(W, b) == fs.exact_loss_and_gain(model, inputs)


def test_enumeration_and_repeated_calls():
    """Against enumeration of every input (discrete law, n = 5), and the same on every call."""
    W, b, inputs = _case("discrete", 2, True, n=5, d=2)
    X, prob = enumerate_inputs(inputs.p, [-1.3, 0.4, 2.1], [0.2, 0.5, 0.3])
    Z = (X @ W.T @ W + b) ** 2
    loss = float(np.sum(prob[:, None] * inputs.importance * (X - Z) ** 2))
    ev = ExactEvaluator(inputs, 2, 2, bias=True)
    first = ev.loss_grad(W, b)
    assert first[0] == pytest.approx(loss, rel=1e-12)
    other = ev.loss_grad(2 * W, b)  # the buffers do not leak between calls
    assert other[0] != first[0]
    again = ev.loss_grad(W, b)
    assert again[0] == first[0] and np.array_equal(again[1], first[1])


def test_objective_is_the_fit_exact_objective():
    W, b, inputs = _case("uniform", 3, True, n=12, d=3)
    ev = ExactEvaluator(inputs, 3, 3, bias=True)
    x = np.concatenate([W.ravel(), b])
    f, g = ev.objective(x, ev.scale)
    gain, dW, db = fs.exact_gain_grad(Model(W, b, exponent=3), inputs)
    assert f == -gain / ev.scale and ev.last_gain == gain
    assert np.array_equal(g, -np.concatenate([dW.ravel(), db]) / ev.scale)
    assert ev.scale == pytest.approx(
        float(np.sum(inputs.importance * inputs.p)) * LAWS["uniform"].moment(2), rel=1e-15
    )
    # finite differences of the objective
    rng = np.random.default_rng(1)
    u = rng.normal(size=x.size)
    h = 1e-6
    fd = (ev.objective(x + h * u)[0] - ev.objective(x - h * u)[0]) / (2 * h)
    assert fd == pytest.approx(float(ev.objective(x)[1] @ u), rel=1e-6)


def test_serial_twins_are_bit_identical():
    rng = np.random.default_rng(3)
    n, d = 70, 5
    W = rng.normal(size=(d, n))
    A = W.T @ W
    kx = rng.normal(size=(7, n))
    coef = rng.normal(size=(7, n))
    orders = np.array([6, 5, 3, 1], dtype=np.int64)
    g_diag = rng.normal(size=n)
    assert np.array_equal(kp.power_sums_serial(A, kx), exact_power_sums(A, kx))
    assert np.array_equal(
        kp.grad_w_serial(A, W, coef, kx, orders, g_diag),
        exact_grad_w(A, W, coef, kx, orders, g_diag),
    )


def test_parallel_decision_follows_the_cost_model(monkeypatch):
    inputs = SparseInputs(30, p=0.1)
    monkeypatch.setattr(config, "EXACT_PARALLEL_FLOPS", 1e300)
    assert not ExactEvaluator(inputs, 3).parallel
    assert kp.pick_kernels(30, 3, 3)[0] is kp.power_sums_serial
    assert kp.exact_flops(30, 3, 3) == 30 * 30 * (4 * 3 + 4 * 3)


def test_overflow_and_bad_arguments():
    inputs = SparseInputs(4, p=0.5)
    ev = ExactEvaluator(inputs, 2, 3)
    with pytest.raises(FloatingPointError, match="overflow"):
        ev.gain_grad(np.full((2, 4), 1e60))
    with pytest.raises(ValueError, match="W"):
        ev.gain_grad(np.ones((3, 4)))
    with pytest.raises(ValueError, match="b"):
        ExactEvaluator(inputs, 2, 3, bias=True).gain_grad(np.ones((2, 4)), np.ones(3))
    with pytest.raises(ValueError, match="bias=False"):
        ev.gain_grad(np.ones((2, 4)), np.ones(4))
    with pytest.raises(ValueError, match="NaN"):
        ev.gain_grad(np.full((2, 4), np.nan))
    with pytest.raises(TypeError):
        ev.gain_grad(np.ones((2, 4), dtype=complex))
    # lists and float32 are converted
    assert ev.gain_grad([[0.5] * 4] * 2)[0] == ev.gain_grad(np.full((2, 4), 0.5))[0]
    with pytest.raises(ValueError, match="exactly k"):
        ExactEvaluator(SparseInputs(4, k=1), 2)
    with pytest.raises(ValueError, match="d"):
        ExactEvaluator(inputs, 0)
    with pytest.raises(TypeError):
        ExactEvaluator(inputs, 2, bias="yes")
    with pytest.raises(TypeError):
        ExactEvaluator("inputs", 2)
    assert "ExactEvaluator(n=4, d=2, m=3" in repr(ev)


def test_blas_threads_restores_the_counts():
    from threadpoolctl import threadpool_info

    before = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
    limit = blas_threads(1)
    for _ in range(2):  # the context object can be entered again
        with limit:
            inside = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
            assert all(t == 1 for t in inside)
    after = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
    assert after == before


def test_blas_threads_reach_the_blas_of_numba():
    """The limit covers every BLAS loaded, SciPy's included: Numba's ``np.dot`` calls it."""
    import scipy.linalg.cython_blas  # noqa: F401
    from threadpoolctl import threadpool_info

    from fastsuper.core.blas import _blas_libraries

    loaded = {os.path.realpath(i["filepath"]) for i in threadpool_info() if i["user_api"] == "blas"}
    assert loaded
    assert loaded <= {os.path.realpath(lib.filepath) for lib in _blas_libraries()}


# --------------------------------------------------------------------------
# the fused kernel


@pytest.fixture
def small_tiles(monkeypatch):
    """Tiles and blocks far smaller than n, so blocks, tiles and groups all have edges (the
    fused and the moment-tensor kernels)."""
    monkeypatch.setattr(config, "EXACT_FUSED_ROWS", 5)
    monkeypatch.setattr(config, "EXACT_FUSED_COLS", 8)
    monkeypatch.setattr(config, "EXACT_FUSED_GROUPS", 3)
    monkeypatch.setattr(config, "EXACT_TENSOR_COLS", 5)
    monkeypatch.setattr(config, "EXACT_TENSOR_GROUPS", 3)


@pytest.mark.parametrize("kernel", ["fused", "tensor"])
@pytest.mark.parametrize("law", sorted(LAWS))
@pytest.mark.parametrize("m", [1, 2, 3, 4])
@pytest.mark.parametrize("bias", [False, True])
def test_kernels_agree_with_the_rows(small_tiles, kernel, law, m, bias):
    W, b, inputs = _case(law, m, bias, n=37, d=4)
    rows = ExactEvaluator(inputs, 4, m, bias=bias, kernel="rows")
    ev = ExactEvaluator(inputs, 4, m, bias=bias, kernel=kernel)
    assert ev.kernel == kernel and rows.kernel == "rows"
    assert_exact_close(ev.loss_grad(W, b), rows.loss_grad(W, b), bias)
    assert_exact_close(ev.gain_grad(W, b), rows.gain_grad(W, b), bias)
    assert ev.loss_and_gain(W, b) == pytest.approx(rows.loss_and_gain(W, b), rel=1e-12)


def test_fused_kernel_does_not_depend_on_the_thread_count(small_tiles):
    W, b, inputs = _case("uniform", 3, True, n=41, d=3)
    ev = ExactEvaluator(inputs, 3, 3, bias=True, kernel="fused")
    assert_same_on_any_thread_count(lambda: ev.loss_grad(W, b))


def test_fused_kernel_default_size_and_overflow(monkeypatch):
    inputs = SparseInputs(6, p=0.5)
    monkeypatch.setattr(config, "EXACT_FUSED_FROM", 6)
    assert ExactEvaluator(inputs, 2).kernel == "fused"
    monkeypatch.setattr(config, "EXACT_FUSED_FROM", None)
    assert ExactEvaluator(inputs, 2).kernel == "rows"
    ev = ExactEvaluator(inputs, 2, kernel="fused")
    with pytest.raises(FloatingPointError, match="overflow"):
        ev.gain_grad(np.full((2, 6), 1e60))
    with pytest.raises(ValueError, match="kernel"):
        ExactEvaluator(inputs, 2, kernel="tiles")


@pytest.mark.parametrize("m", [1, 2, 3])
def test_grouped_law_matches_public_functions(m):
    """A grouped law goes through the grouped closed form: the public functions' numbers."""
    inputs = SparseInputs(
        7, p=0.3, values="gaussian", groups=[[0, 1], [2, 3, 4]], kind=["correlated", "exclusive"],
        importance=np.linspace(0.5, 1.5, 7),
    )  # fmt: skip
    rng = np.random.default_rng(m)
    W, b = 0.7 * rng.normal(size=(3, 7)), 0.2 * rng.normal(size=7)
    ev = ExactEvaluator(inputs, 3, m, bias=True)
    assert ev.kernel == "grouped"
    model = Model(W, b, exponent=m)
    loss, dW, db = ev.loss_grad(W, b)
    ref = fs.exact_loss_grad(model, inputs)
    assert loss == ref[0]
    np.testing.assert_array_equal(dW, ref[1])
    np.testing.assert_array_equal(db, ref[2])
    gain, gW, gb = ev.gain_grad(W, b)
    assert gain == fs.exact_gain_grad(model, inputs)[0]
    np.testing.assert_array_equal(gW, -ref[1])
    assert ev.loss_and_gain(W, b) == fs.exact_loss_and_gain(model, inputs)


def test_fused_evaluator_needs_no_n_squared_memory(monkeypatch):
    """The fused kernel never forms A: its memory check counts O(n d) scratch, not n^2."""
    n, d = 3000, 4
    inputs = SparseInputs(n, p=0.01, values="gaussian")
    limit = 40 * 2**20  # below A's 72 MB, above the fused kernel's few MB
    monkeypatch.setattr(config, "MEMORY_LIMIT_BYTES", limit)
    with pytest.raises(MemoryError, match=r"A = W\.T @ W is n x n"):
        ExactEvaluator(inputs, d, 3, kernel="rows")
    ev = ExactEvaluator(inputs, d, 3, kernel="fused")
    W = np.random.default_rng(0).normal(size=(d, n)) / math.sqrt(n)
    monkeypatch.setattr(config, "MEMORY_LIMIT_BYTES", None)
    ref = ExactEvaluator(inputs, d, 3, kernel="rows").loss_and_gain(W)
    got = ev.loss_and_gain(W)
    np.testing.assert_allclose(got, ref, rtol=1e-12)


# ---------------------------------------------------------------- the public functions' cache


def _general(monkeypatch, f, *args, **kwargs):
    """``f(*args, **kwargs)`` on the general path (no cached evaluator)."""
    with monkeypatch.context() as mp:
        mp.setattr(config, "EXACT_CACHE_BYTES", 0)
        mp.setattr(config, "EXACT_FUSED_FROM", None)
        return f(*args, **kwargs)


@pytest.mark.parametrize("law", sorted(LAWS))
@pytest.mark.parametrize("m", [1, 3])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("wrt_bias", [False, True])
def test_cached_public_calls_are_the_general_path_bit_for_bit(monkeypatch, law, m, bias, wrt_bias):
    W, b, inputs = _case(law, m, bias, n=19, d=3)
    for dtype in (np.float64, np.float32):
        model = Model(W.astype(dtype), None if b is None else b.astype(dtype), exponent=m)
        for f in (fs.exact_loss_grad, fs.exact_gain_grad):
            ref = _general(monkeypatch, f, model, inputs, wrt_bias=wrt_bias)
            for _ in range(2):  # a miss, then a hit
                got = f(model, inputs, wrt_bias=wrt_bias)
                assert got[0] == ref[0] and _same(got[1], ref[1]) and _same(got[2], ref[2])


def test_cache_follows_changes_in_place_and_keeps_results(monkeypatch):
    """A law changed in place gets its own evaluator; returned arrays are never overwritten."""
    W, b, inputs = _case("gaussian", 3, True, n=12, d=3)
    model = Model(W, b, exponent=3)
    first = fs.exact_loss_grad(model, inputs)
    kept = first[1].copy()
    inputs.p[:] = inputs.p[::-1].copy()
    inputs.importance[0] = 3.0
    second = fs.exact_loss_grad(model, inputs)
    ref = _general(monkeypatch, fs.exact_loss_grad, model, inputs)
    assert second[0] == ref[0] and _same(second[1], ref[1]) and _same(second[2], ref[2])
    assert second[0] != first[0] and np.array_equal(first[1], kept)
    with pytest.raises(TypeError, match="exact_loss_grad: wrt_bias"):
        fs.exact_loss_grad(model, inputs, wrt_bias=1)
    with pytest.raises(ValueError, match="exact_gain_grad: inputs.n = 13"):
        fs.exact_gain_grad(model, SparseInputs(13, p=0.1))
    bad = Model(W.copy(), b, exponent=3)
    bad.W[0, 0] = np.nan  # changed after the checks of Model: the general path's error
    with pytest.raises(FloatingPointError, match="exact_gain_grad: float64 overflow"):
        fs.exact_gain_grad(bad, inputs)


def test_cache_is_per_thread_and_bounded(monkeypatch):
    import threading

    monkeypatch.setattr(config, "EXACT_CACHE_SIZE", 2)
    cases = [_case("uniform", 2, False, n=10 + k, d=2, seed=k) for k in range(4)]
    refs = [_general(monkeypatch, fs.exact_gain_grad, Model(W, exponent=2), i) for W, _, i in cases]
    out = {}

    def work(t):
        out[t] = [fs.exact_gain_grad(Model(W, exponent=2), i) for W, _, i in cases * 3]

    threads = [threading.Thread(target=work, args=(t,)) for t in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for res in out.values():
        for got, ref in zip(res, refs * 3, strict=True):
            assert got[0] == ref[0] and _same(got[1], ref[1]) and _same(got[2], ref[2])


@pytest.mark.parametrize("bias", [False, True])
def test_public_functions_use_the_fused_kernel_for_large_n(monkeypatch, bias):
    W, b, inputs = _case("discrete", 3, bias, n=40, d=3)
    model = Model(W, b, exponent=3)
    monkeypatch.setattr(config, "EXACT_FUSED_ROWS", 8)
    monkeypatch.setattr(config, "EXACT_FUSED_COLS", 16)
    monkeypatch.setattr(config, "EXACT_FUSED_FROM", 40)
    for f in (fs.exact_loss_grad, fs.exact_gain_grad):
        ref = _general(monkeypatch, f, model, inputs)
        got = f(model, inputs)
        assert got[0] == pytest.approx(ref[0], rel=1e-12, abs=0)
        for x, y in zip(got[1:], ref[1:], strict=True):
            np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-12 * np.abs(y).max())
    monkeypatch.setattr(config, "EXACT_FUSED_FROM", 41)  # below: the rows, bit for bit
    ref = _general(monkeypatch, fs.exact_loss_grad, model, inputs)
    got = fs.exact_loss_grad(model, inputs)
    assert got[0] == ref[0] and _same(got[1], ref[1]) and _same(got[2], ref[2])


def test_exact_fsum_is_math_fsum():
    rng = np.random.default_rng(7)
    for k in range(400):
        x = rng.normal(size=k % 40) * 10.0 ** rng.integers(-200, 200, size=k % 40)
        x = np.concatenate([x, -x[: k % 5], [1e16, 1.0, 1e-16][: k % 4]])
        got = kp.exact_fsum(x)
        assert got == math.fsum(x.tolist()) and math.copysign(1, got) == math.copysign(
            1, math.fsum(x.tolist())
        )
    assert math.isnan(kp.exact_fsum(np.array([1e308, 1e308])))
    assert math.isnan(kp.exact_fsum(np.array([1.0, np.inf])))


@pytest.mark.parametrize("law", sorted(LAWS))
@pytest.mark.parametrize("m", [1, 3])
@pytest.mark.parametrize("bias", [False, True])
def test_cached_value_calls_are_the_general_path_bit_for_bit(monkeypatch, law, m, bias):
    """exact_loss, exact_gain and exact_loss_and_gain (sums and per feature) answered from
    the cache (a miss, then a hit, also after a gradient call) equal the general path's."""
    W, b, inputs = _case(law, m, bias, n=19, d=3)
    for dtype in (np.float64, np.float32):
        model = Model(W.astype(dtype), None if b is None else b.astype(dtype), exponent=m)
        for pf in (False, True):
            for f in (fs.exact_loss, fs.exact_gain, fs.exact_loss_and_gain):
                ref = _general(monkeypatch, f, model, inputs, per_feature=pf)
                for _ in range(2):
                    got = f(model, inputs, per_feature=pf)
                    pairs = zip(got, ref, strict=True) if isinstance(ref, tuple) else [(got, ref)]
                    for g, r in pairs:
                        assert _same(np.asarray(g), np.asarray(r))
                fs.exact_loss_grad(model, inputs)  # the cached evaluator's other pass


def test_cached_value_calls_keep_their_errors(monkeypatch):
    W, b, inputs = _case("gaussian", 3, True, n=12, d=3)
    model = Model(W, b, exponent=3)
    with pytest.raises(TypeError, match="exact_loss: per_feature"):
        fs.exact_loss(model, inputs, per_feature=1)
    with pytest.raises(ValueError, match="exact_gain: inputs.n = 13"):
        fs.exact_gain(model, SparseInputs(13, p=0.1))
    bad = Model(W.copy(), b, exponent=3)
    bad.W[0, 0] = np.nan
    with pytest.raises(FloatingPointError, match="exact_loss_and_gain: float64 overflow"):
        fs.exact_loss_and_gain(bad, inputs)
    per = fs.exact_loss(model, inputs, per_feature=True)
    kept = per.copy()
    fs.exact_loss(Model(2.0 * W, b, exponent=3), inputs, per_feature=True)
    assert np.array_equal(per, kept)  # a returned array is never a cache buffer
