"""Assertions shared by several test modules."""

import numba
import numpy as np
import pytest
from scipy import stats

import fastsuper as fs
from fastsuper import testing as T


def assert_same_estimate(a, b) -> None:
    """Two LossEstimates with the same numbers, bit for bit (per-feature terms included)."""
    assert (a.mean, a.stderr, a.gain_mean, a.gain_stderr) == (
        b.mean,
        b.stderr,
        b.gain_mean,
        b.gain_stderr,
    )
    if a.per_feature is None or b.per_feature is None:
        assert a.per_feature is None and b.per_feature is None
    else:
        assert np.array_equal(a.per_feature, b.per_feature)
        assert np.array_equal(a.per_feature_stderr, b.per_feature_stderr)


def central_differences(f, W, b, h):
    """Central differences ``(dF/dW, dF/db)`` of the scalar ``f(W, b)``, entry by entry."""
    fd_W = np.zeros_like(W, dtype=np.float64)
    for idx in np.ndindex(W.shape):
        Wp, Wm = W.copy(), W.copy()
        Wp[idx] += h
        Wm[idx] -= h
        fd_W[idx] = (f(Wp, b) - f(Wm, b)) / (2 * h)
    fd_b = np.zeros_like(b, dtype=np.float64)
    for j in range(b.shape[0]):
        bp, bm = b.copy(), b.copy()
        bp[j] += h
        bm[j] -= h
        fd_b[j] = (f(W, bp) - f(W, bm)) / (2 * h)
    return fd_W, fd_b


def chi2_pvalue(observed, expected, min_expected=5.0):
    """Chi-square goodness-of-fit p-value, pooling the cells of small expectation.

    A pooled cell of expectation 0 must be empty (a pattern of probability 0
    was never drawn) and is then left out.
    """
    observed = np.asarray(observed, float)
    expected = np.asarray(expected, float)
    keep = expected >= min_expected
    obs = np.append(observed[keep], observed[~keep].sum())
    exp = np.append(expected[keep], expected[~keep].sum())
    if exp[-1] == 0:
        assert obs[-1] == 0, "a pattern of probability 0 was drawn"
        obs, exp = obs[:-1], exp[:-1]
    return stats.chisquare(obs, exp * obs.sum() / exp.sum()).pvalue


@numba.njit
def phi_dphi(t, act):
    """``phi`` and ``phi'`` of the Activation bundle ``act`` at every entry of ``t`` (compiled)."""
    f = np.empty_like(t)
    g = np.empty_like(t)
    for i in range(t.size):
        f[i] = T.phi(t[i], act)
        g[i] = T.dphi(t[i], act)
    return f, g


def extreme_arguments(dtype):
    """Arguments over the whole float range of ``dtype``: subnormal, moderate (densely up to
    60), around the overflow thresholds of exp (590-760), huge, the largest and infinite."""
    fi = np.finfo(dtype)
    mags = np.concatenate(
        [
            np.geomspace(float(fi.smallest_subnormal), 1e-3, 40),
            np.linspace(1e-3, 60.0, 3000),
            np.linspace(590.0, 760.0, 200),
            np.geomspace(60.0, float(fi.max) / 4, 40),
            [float(fi.max), np.inf],
        ]
    )
    return np.concatenate([-mags[::-1], [0.0], mags]).astype(dtype)


def assert_within_ulps(got, ref, ulps, spacing_of=None, where=None):
    """``|got - ref|`` at most ``ulps`` units in the last place of ``spacing_of`` (default
    ``ref``) in ``got``'s dtype, elementwise; the message names the worst element."""
    scale = ref if spacing_of is None else spacing_of
    with np.errstate(over="ignore"):  # the spacing of the largest float is inf
        ulp = np.spacing(np.abs(np.asarray(scale).astype(got.dtype)))
    err = np.abs(got.astype(np.float64) - ref.astype(np.float64)) / ulp
    if err.size:
        worst = int(np.argmax(err))
        at = "" if where is None else f" at {where[worst]!r}"
        assert err.max() <= ulps, (
            f"{err.max():.3g} ulp{at}: got {got[worst]!r}, want {ref[worst]!r}"
        )


def assert_sampled_gradient(model, inputs, n_samples, block_size, h=1e-6):
    """``fs.loss_grad`` against central differences of the sampled mean loss (the same
    samples) in every ``W`` and ``b`` entry, to 1e-6 relative (1e-7 of the largest entry
    absolute); returns the gradient."""
    got = fs.loss_grad(model, inputs, n_samples, seed=1, block_size=block_size)

    def f(W, b):
        return fs.loss_grad(
            model.with_params(W, b), inputs, n_samples, seed=1, block_size=block_size
        ).loss

    fd_W, fd_b = central_differences(f, model.W, model.b, h)
    scale = max(np.abs(got.dW).max(), np.abs(got.db).max())
    np.testing.assert_allclose(got.dW, fd_W, rtol=1e-6, atol=1e-7 * scale)
    np.testing.assert_allclose(got.db, fd_b, rtol=1e-6, atol=1e-7 * scale)
    return got


def assert_same_on_any_thread_count(call) -> None:
    """``call()`` gives ``(loss, dW, db)``: the same bit for bit on one Numba thread and on all."""
    saved = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = call()
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        many = call()
    finally:
        numba.set_num_threads(saved)
    assert one[0] == many[0]
    assert np.array_equal(one[1], many[1]) and np.array_equal(one[2], many[2])


def assert_fit_same_on_any_thread_count(set_threads, n: int, d: int, **kw) -> None:
    """``fs.fit(n, d, **kw)``: the same W, b and loss history on one Numba thread and on two."""
    set_threads(1)
    one = fs.fit(n, d, **kw)
    set_threads(min(2, numba.config.NUMBA_NUM_THREADS))
    two = fs.fit(n, d, **kw)
    for x, y in [(one.W, two.W), (one.b, two.b), (one.loss_history, two.loss_history)]:
        assert np.array_equal(x, y)


def assert_exact_close(got, ref, bias) -> None:
    """Exact ``(loss, dW, db)`` to 1e-12: the loss relative, the gradients relative to their
    largest entry (``db`` only with ``bias``)."""
    assert got[0] == pytest.approx(ref[0], rel=1e-12)
    np.testing.assert_allclose(got[1], ref[1], rtol=0, atol=1e-12 * np.abs(ref[1]).max())
    if bias:
        np.testing.assert_allclose(got[2], ref[2], rtol=0, atol=1e-12 * np.abs(ref[2]).max())
