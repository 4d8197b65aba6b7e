"""finite_moment_order: the largest order with finite moments, also for huge orders."""

from __future__ import annotations

import pytest

import fastsuper as fs
from fastsuper.core.arguments import finite_moment_order
from fastsuper.core.laws import ValueLaw
from fastsuper.core.validation import TooLargeError

LAWS = [
    ValueLaw("gaussian"),
    ValueLaw("uniform"),
    ValueLaw("uniform_sym"),
    ValueLaw("rademacher"),
    ValueLaw("discrete", support=[-3.0, 0.5, 7.0], probs=[0.2, 0.5, 0.3]),
    ValueLaw("discrete", support=[-1.5, 1.5], probs=[0.5, 0.5]),
    ValueLaw("discrete", support=[1e100, 2.0], probs=[1e-200, 1 - 1e-200]),
]


def _by_scan(law, order):
    """The definition: moments r = 0, 1, ... until the first that overflows."""
    for r in range(order + 1):
        try:
            law.moment(r)
        except ValueError:
            return r - 1
    return order


@pytest.mark.parametrize("law", LAWS, ids=repr)
@pytest.mark.parametrize("order", [0, 1, 5, 301, 302, 400, 1500, 3000])
def test_finite_moment_order_is_the_scan(law, order):
    assert finite_moment_order(law, order) == _by_scan(law, order)


@pytest.mark.parametrize(
    "law,expected",
    [(LAWS[0], 301), (LAWS[3], 2**62), (LAWS[4], _by_scan(LAWS[4], 2000)), (LAWS[6], 3)],
    ids=repr,
)
def test_huge_orders_answer_at_once(law, expected):
    """2**62: no scan over the orders (bounded laws need none, the others bisect)."""
    assert finite_moment_order(law, 2**62) == expected


@pytest.mark.parametrize("m", [30_000, 10**6, 2**62])
def test_huge_exponent_refused_before_allocation(m):
    """The exact evaluator counts Pascal's triangle to 2m in its memory check."""
    inputs = fs.SparseInputs(4, p=0.3, values="rademacher")
    with pytest.raises(TooLargeError, match="memory"):
        fs.ExactEvaluator(inputs, 1, m)
