"""fastsuper.check: Monte Carlo against the exact value."""

import pytest
from builders import random_model

import fastsuper as fs


def test_check_strict_raises_on_a_wrong_reference():
    model = random_model(10, 3)
    inputs = fs.SparseInputs(10, p=0.1, values="rademacher")
    good = fs.check(model, inputs, 50_000, seed=1)
    assert good.passed and abs(good.z) < 5
    # too few samples cannot be significant, but a biased model comparison can:
    # compare the estimate of one model against another model's exact value
    other = model.with_params(W=model.W * 1.5)
    est = fs.estimate_loss(other, inputs, 50_000, seed=1)
    z = (est.mean - fs.exact_loss(model, inputs)) / est.stderr
    assert abs(z) > 5
    with pytest.raises(AssertionError, match="fastsuper.check failed"):
        fs.check(other, inputs, 50_000, seed=1, z_max=1e-9, strict=True)
