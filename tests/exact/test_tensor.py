"""The moment-tensor exact kernel: its monomial tables, and its values against the row kernels."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from builders import exact_case
from checks import assert_exact_close, assert_same_on_any_thread_count

import fastsuper as fs
from fastsuper import ExactEvaluator, Model, SparseInputs
from fastsuper.core import config
from fastsuper.exact.kernels_tensor import monomial_count, monomial_tables
from fastsuper.exact.prepared import default_kernel

PRIMES = np.array([2.0, 3.0, 5.0, 7.0, 11.0, 13.0])


def _monomial_values(start, v):
    """The monomials of ``v`` through the tables' recurrence (plain NumPy)."""
    d, degree = v.shape[0], start.shape[0] - 1
    out = np.empty(start[degree, d])
    out[0] = 1.0
    for r in range(1, degree + 1):
        pe = start[r - 1, d]
        for k in range(d):
            ps, cs = start[r - 1, k], start[r, k]
            out[cs : cs + pe - ps] = v[k] * out[ps:pe]
    return out


@pytest.mark.parametrize("d", [1, 2, 3, 6])
@pytest.mark.parametrize("degree", [0, 1, 2, 5])
def test_monomial_tables_list_every_monomial_once_with_its_multinomial(d, degree):
    start, coef = monomial_tables(d, degree)
    # at distinct primes every monomial has its own value: compare with an enumeration
    values = _monomial_values(start, PRIMES[:d])
    for r in range(degree + 1):
        lo, hi = (0, 1) if r == 0 else (start[r, 0], start[r, d])
        combos = list(itertools.combinations_with_replacement(range(d), r))
        assert hi - lo == len(combos) == math.comb(d + r - 1, r)
        want = {}
        for c in combos:
            counts = np.bincount(np.array(c, dtype=int), minlength=d)
            multinomial = math.factorial(r) / np.prod([math.factorial(x) for x in counts])
            want[float(np.prod(PRIMES[:d] ** counts))] = multinomial
        got = dict(zip(values[lo:hi].tolist(), coef[lo:hi].tolist(), strict=True))
        assert got == want
    if degree % 2 == 0:
        assert monomial_count(d, degree // 2) == start[degree, d]


def test_monomial_tables_expand_powers_of_dot_products():
    """``(u . v)**r = sum_a coef[a] u**a v**a`` over the monomials of degree ``r``."""
    rng = np.random.default_rng(3)
    start, coef = monomial_tables(5, 6)
    for _ in range(5):
        u, v = rng.normal(size=5), rng.normal(size=5)
        mu, mv = _monomial_values(start, u), _monomial_values(start, v)
        for r in range(1, 7):
            lo, hi = start[r, 0], start[r, 5]
            got = np.sum(coef[lo:hi] * mu[lo:hi] * mv[lo:hi])
            assert got == pytest.approx(float(u @ v) ** r, rel=1e-12, abs=1e-12)


def test_monomial_count_is_the_binomial_and_saturates():
    for d, m in [(1, 1), (4, 3), (10, 3), (30, 5)]:
        assert monomial_count(d, m) == math.comb(d + 2 * m, 2 * m)
    assert monomial_count(1000, 10**6) == math.inf
    assert monomial_count(3, 65_596_326) == math.inf


_case = exact_case


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks far smaller than n, so blocks and groups have edges."""
    monkeypatch.setattr(config, "EXACT_TENSOR_COLS", 5)
    monkeypatch.setattr(config, "EXACT_TENSOR_GROUPS", 3)


@pytest.mark.parametrize("d", [1, 2, 9])
def test_tensor_kernel_any_hidden_dimension(small_blocks, d):
    """d = 1 (one monomial per degree), and d above 2m."""
    W, b, inputs = _case("uniform", 2, True, n=29, d=d)
    ref = ExactEvaluator(inputs, d, 2, bias=True, kernel="rows").loss_grad(W, b)
    got = ExactEvaluator(inputs, d, 2, bias=True, kernel="tensor").loss_grad(W, b)
    assert_exact_close(got, ref, True)


def test_tensor_kernel_on_a_structured_model():
    """Nearly orthogonal columns and antipodal pairs (the geometry of trained models, where the
    power sums are small beside each column's own term) at a larger n."""
    n, d = 700, 6
    rng = np.random.default_rng(11)
    Q = np.linalg.qr(rng.normal(size=(d, d)))[0]
    W = np.concatenate([Q, -Q, rng.normal(size=(d, n - 2 * d)) * 0.05], axis=1)
    inputs = SparseInputs(n, p=rng.uniform(1e-3, 0.02, n), values="gaussian")
    ref = ExactEvaluator(inputs, d, 3, kernel="rows").loss_grad(W)
    got = ExactEvaluator(inputs, d, 3, kernel="tensor").loss_grad(W)
    assert_exact_close(got, ref, False)


def test_tensor_kernel_does_not_depend_on_the_thread_count(small_blocks):
    W, b, inputs = _case("discrete", 3, True, n=41, d=3)
    ev = ExactEvaluator(inputs, 3, 3, bias=True, kernel="tensor")
    assert_same_on_any_thread_count(lambda: ev.loss_grad(W, b))


def test_auto_kernel_by_cost(monkeypatch):
    monkeypatch.setattr(config, "EXACT_FUSED_FROM", 512)
    assert default_kernel(511, 2, 3) == "rows"
    assert default_kernel(6000, 10, 3) == "tensor"  # 8008 monomials against 6000 (4d + 4m)
    assert default_kernel(2000, 10, 3) == "fused"
    assert default_kernel(6000, 20, 3) == "fused"  # 230 230 monomials
    assert ExactEvaluator(SparseInputs(2000, p=0.01), 3, 3).kernel == "tensor"
    monkeypatch.setattr(config, "EXACT_FUSED_FROM", None)
    assert default_kernel(10**6, 2, 3) == "rows"


@pytest.mark.parametrize("bias", [False, True])
def test_public_functions_use_the_tensor_kernel_where_cheaper(monkeypatch, bias):
    W, b, inputs = _case("uniform", 2, bias, n=2000, d=2)
    model = Model(W, b, exponent=2)
    with monkeypatch.context() as mp:  # the general path: the row kernels
        mp.setattr(config, "EXACT_CACHE_BYTES", 0)
        mp.setattr(config, "EXACT_FUSED_FROM", None)
        ref = fs.exact_loss_grad(model, inputs)
        ref_gain = fs.exact_gain(model, inputs)
    monkeypatch.setattr(config, "EXACT_FUSED_FROM", 2000)
    assert default_kernel(2000, 2, 2) == "tensor"
    assert_exact_close(fs.exact_loss_grad(model, inputs), ref, bias)
    assert fs.exact_gain(model, inputs) == pytest.approx(ref_gain, rel=1e-12)


def test_tensor_kernel_overflow_and_memory(monkeypatch):
    inputs = SparseInputs(6, p=0.5)
    ev = ExactEvaluator(inputs, 2, kernel="tensor")
    with pytest.raises(FloatingPointError, match="overflow"):
        ev.gain_grad(np.full((2, 6), 1e60))
    with pytest.raises(MemoryError, match=r"moment-tensor kernel: 1\.536e\+13 monomials"):
        ExactEvaluator(SparseInputs(10, p=0.1), 60, 6, kernel="tensor")
