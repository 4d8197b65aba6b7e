"""Assertions shared by several test modules."""

import numpy as np


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
