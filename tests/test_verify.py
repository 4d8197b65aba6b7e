"""fastsuper.check: Monte Carlo against the exact value."""

import dataclasses

import pytest
from builders import random_model

import fastsuper as fs
from fastsuper.verify import compare


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


def test_check_verdict_reads_as_pass_or_fail():
    """The report's last line says PASS or FAIL in words, with the criterion."""
    model = random_model(10, 3)
    inputs = fs.SparseInputs(10, p=0.1, values="rademacher")
    good = fs.check(model, inputs, 50_000, seed=1)
    assert good.verdict == (
        f"z = {good.z:+.3g}: PASS — Monte Carlo agrees with the exact loss (|z| < 5)"
    )
    assert str(good).splitlines()[-1] == good.verdict
    assert "the loss, a sum over the 10 features" in str(good)
    # another model's estimate against this model's exact loss: far apart
    other = fs.estimate_loss(model.with_params(W=model.W * 1.5), inputs, 50_000, seed=1)
    bad = compare(other, model, inputs)
    assert not bad.passed and abs(bad.z) > 5
    assert bad.verdict == (
        f"z = {bad.z:+.3g}: FAIL — Monte Carlo and the exact loss disagree (needs |z| < 5)"
    )


def test_check_verdict_for_the_bounds():
    model = random_model(8, 3, "relu_power", 1)
    inputs = fs.SparseInputs(8, p=0.2, values="uniform")
    good = fs.check(model, inputs, 20_000, seed=2)
    assert good.kind == "bounds" and good.passed
    assert good.verdict == (
        f"z_lower = {good.z_lower:+.3g}, z_upper = {good.z_upper:+.3g}: PASS — Monte Carlo "
        "lies within the rigorous bounds (z_lower > -5 and z_upper < 5)"
    )
    est = good.estimate
    above = dataclasses.replace(est, mean=good.upper_bound + 6 * est.stderr)
    bad = compare(above, model, inputs)
    assert not bad.passed and bad.verdict.endswith(
        "FAIL — Monte Carlo lies significantly above the upper bound (needs z_lower > -5 and "
        "z_upper < 5)"
    )
    below = compare(dataclasses.replace(est, mean=good.lower_bound - 6 * est.stderr), model,
                    inputs)  # fmt: skip
    assert "FAIL — Monte Carlo lies significantly below the lower bound" in below.verdict
