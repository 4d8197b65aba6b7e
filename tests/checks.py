"""Assertions shared by several test modules."""

import numba
import numpy as np
from scipy import stats

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
