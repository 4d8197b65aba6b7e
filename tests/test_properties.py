"""Property-based tests of the public API (hypothesis): odd inputs are answered clearly.

Every input -- shapes, dtypes, ranges, NaN and inf, huge sizes, odd types -- either
works, and then agrees with a reference (an enumeration of the inputs, the NumPy
forward pass on the same samples, a split run), or raises a ValueError or TypeError
with a message, raised by fastsuper before any kernel runs.  Never a crash, a hang, a
raw NumPy or Numba error, or a silent NaN.

The examples are bounded and derandomised (the same ones on every run, no example
database), so the suite is deterministic and short.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from naive import enumerate_grouped_inputs, enumerate_inputs, gain_numpy, loss_numpy

import fastsuper as fs
from fastsuper.apps.cli import main

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, event, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

LAWS = ["gaussian", "rademacher", "uniform_sym", "uniform", "constant"]
PATHS = ["auto", "dense", "columns", "blocked", "columns_blocked"]

#: odd values for any argument: None, bools, short strings, NaN and inf, containers
ODD = st.one_of(
    st.none(),
    st.booleans(),
    st.text(max_size=3),
    st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -0.0, 2.5, 1j, b"1", (1,), [[1.0]]]),
    st.just(object()),
)
#: integers around the edges: negative, zero, small, beyond int64 and uint64
EDGE_INTS = st.one_of(
    st.integers(-3, 5),
    st.sampled_from([2**31, 2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63) - 1, 10**15]),
)


def mostly(valid, odd=ODD, one_in: int = 8):
    """``valid``, but one example in ``one_in`` from ``odd``: most examples then run through,
    and each odd value still meets every argument."""
    return st.integers(1, one_in).flatmap(lambda k: odd if k == one_in else valid)


def outcome(func, *args, **kwargs):
    """``func(*args, **kwargs)``, or None when it raised a clear error.

    A clear error is a ValueError or TypeError raised by fastsuper with a message:
    not one of NumPy's or Numba's own, which pass through and fail the test.
    """
    try:
        result = func(*args, **kwargs)
    except (ValueError, TypeError) as exc:
        event(f"refused: {type(exc).__name__}: {str(exc)[:70]}")
        assert str(exc).strip(), f"{type(exc).__name__} without a message"
        assert type(exc).__module__.split(".")[0] not in ("numpy", "numba"), repr(exc)
        tb = exc.__traceback__
        while tb.tb_next is not None:
            tb = tb.tb_next
        origin = tb.tb_frame.f_globals.get("__name__", "")
        assert origin.startswith("fastsuper"), f"raised by {origin}, not fastsuper: {exc!r}"
        return None
    event("ran")
    return result


# --------------------------------------------------------------------------
# the input law and the model


def _assert_enumerated(model, inputs, X, weight):
    """The exact loss and gain equal their means over the enumerated inputs ``X``."""
    W, b, m = model.W, model.b, model.int_exponent
    loss = float(weight @ loss_numpy(W, b, "power", m, X))
    gain = float(weight @ gain_numpy(W, b, "power", m, X))
    got_loss, got_gain = fs.exact_loss_and_gain(model, inputs)
    scale = 1.0 + float(weight @ np.abs(loss_numpy(W, b, "power", m, X)))
    assert abs(got_loss - loss) <= 1e-10 * scale
    assert abs(got_gain - gain) <= 1e-10 * scale


@SETTINGS
@given(
    n=mostly(st.integers(1, 6), st.one_of(EDGE_INTS, st.sampled_from([10**13, 3.0, 2.5]), ODD)),
    p=mostly(
        st.one_of(st.floats(0.0, 1.0), st.lists(st.floats(0.0, 1.0), min_size=1, max_size=6)),
        st.one_of(st.floats(-0.5, 1.5), st.floats(allow_nan=True, allow_infinity=True), ODD),
    ),
    values=mostly(st.sampled_from(LAWS), st.one_of(st.sampled_from(["cauchy", "Gaussian"]), ODD)),
)
@example(n=10**13, p=0.1, values="gaussian")  # huge: refused before allocating
@example(n=2, p=1e-111, values="gaussian")  # fine here; the samplers refuse it
def test_sparse_inputs(n, p, values):
    inputs = outcome(fs.SparseInputs, n, p=p, values=values)
    if inputs is not None:
        assert inputs.p.shape == (inputs.n,) and inputs.p.dtype == np.float64
        assert np.all((inputs.p >= 0) & (inputs.p <= 1))
        assert math.isfinite(inputs.expected_active)


KINDS = ["correlated", "partial", "exclusive", "anticorrelated"]


@SETTINGS
@given(
    groups=mostly(
        st.one_of(
            st.lists(st.integers(-1, 3), min_size=5, max_size=5),
            st.lists(st.lists(st.integers(0, 4), min_size=1, max_size=3), min_size=1, max_size=3),
        ),
        st.one_of(st.lists(st.integers(-9, 9), max_size=7), st.lists(st.lists(ODD)), ODD),
    ),
    kind=mostly(st.one_of(st.sampled_from(KINDS), st.lists(st.sampled_from(KINDS), max_size=4))),
    q=mostly(st.one_of(st.none(), st.floats(0.0, 1.0), st.lists(st.floats(0.0, 1.0), max_size=4))),
    weights=mostly(st.one_of(st.none(), st.lists(st.floats(0.0, 3.0), min_size=5, max_size=5))),
    r=mostly(st.one_of(st.none(), st.floats(0.0, 1.0), st.lists(st.floats(0.0, 1.0), max_size=5))),
)
def test_grouped_inputs(groups, kind, q, weights, r):
    inputs = outcome(fs.SparseInputs, 5, p=0.2, groups=groups, kind=kind, q=q, weights=weights,
                     r=r)  # fmt: skip
    if inputs is not None:
        assert inputs.pattern == "grouped" and inputs.p.shape == (5,)
        assert np.all((inputs.p >= 0) & (inputs.p <= 1))
        batch = outcome(fs.sample, inputs, 200, seed=1)
        if batch is not None:
            on = batch.to_dense() != 0
            spec = inputs.groups
            for g, mem in enumerate(spec.members):
                if spec.kinds[g] == "exclusive":
                    assert np.all(on[:, mem].sum(axis=1) <= 1)
                elif spec.kinds[g] == "correlated":
                    assert np.all(on[:, mem] == on[:, mem[:1]])


@SETTINGS
@given(
    data=st.data(),
    n=st.integers(1, 5),
    m=st.integers(1, 3),
    bias=st.booleans(),
)
def test_grouped_exact_loss_is_the_enumerated_mean(data, n, m, bias):
    entries = st.floats(-1.5, 1.5, allow_subnormal=False)
    W = data.draw(hnp.arrays(np.float64, (2, n), elements=entries))
    b = data.draw(hnp.arrays(np.float64, n, elements=entries)) if bias else None
    labels = data.draw(st.lists(st.integers(-1, 2), min_size=n, max_size=n))
    n_groups = len(set(labels) - {-1})
    if n_groups == 0:
        labels[0] = 0
        n_groups = 1
    kinds = data.draw(st.lists(st.sampled_from(KINDS), min_size=n_groups, max_size=n_groups))
    probs = st.floats(0.0, 1.0)
    q = data.draw(st.lists(probs, min_size=n_groups, max_size=n_groups))
    r = data.draw(st.lists(st.floats(0.01, 1.0), min_size=n, max_size=n))
    r = [1.0 if labels[i] < 0 or kinds[sorted(set(labels) - {-1}).index(labels[i])] != "partial"
         else r[i] for i in range(n)]  # fmt: skip
    w = data.draw(st.lists(st.floats(0.1, 3.0), min_size=n, max_size=n))
    has_exclusive = any(k in ("exclusive", "anticorrelated") for k in kinds)
    inputs = fs.SparseInputs(
        n, p=data.draw(probs), values=fs.ValueLaw("discrete", [-0.5, 2.0], [0.3, 0.7]),
        groups=labels, kind=kinds, q=q, r=r, weights=w if has_exclusive else None,
    )  # fmt: skip
    model = fs.Model(W, b, exponent=m)
    X, weight = enumerate_grouped_inputs(inputs)
    _assert_enumerated(model, inputs, X, weight)


@SETTINGS
@given(
    W=mostly(
        hnp.arrays(
            st.sampled_from([np.float64, np.float32]),
            hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=5),
            elements=st.floats(-10, 10, width=32),
        ),
        st.one_of(
            hnp.arrays(
                st.sampled_from([np.float64, np.int64, np.bool_, np.complex128]),
                hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4),
            ),
            ODD,
        ),
        one_in=3,
    ),
    b=mostly(st.one_of(st.none(), hnp.arrays(np.float64, st.integers(0, 5)))),
    activation=mostly(st.sampled_from(["power", "signed_power", "relu_power"])),
    exponent=mostly(
        st.one_of(st.integers(1, 5), st.floats(0.1, 5)),
        st.one_of(st.floats(-1, 0), st.floats(allow_nan=True), ODD),
    ),
)
def test_model(W, b, activation, exponent):
    model = outcome(fs.Model, W, b, activation=activation, exponent=exponent)
    if model is not None:
        assert model.W.ndim == 2 and model.dtype in (np.float32, np.float64)
        assert np.all(np.isfinite(model.W)) and model.d >= 1 and model.n >= 1
        assert math.isfinite(model.exponent) and model.exponent > 0
        assert model.b is None or (model.b.shape == (model.n,) and np.all(np.isfinite(model.b)))


NEW_ACTIVATIONS = ["gelu", "gelu_tanh", "tanh", "softplus", "sigmoid", "silu", "leaky_relu",
                   "identity", "relu"]  # fmt: skip


@SETTINGS
@given(
    activation=mostly(st.sampled_from(NEW_ACTIVATIONS)),
    exponent=mostly(st.one_of(st.none(), st.just(1), st.floats(0.1, 5))),
    param=mostly(
        st.one_of(st.none(), st.floats(0, 1), st.floats(1e-3, 1e3)),
        st.one_of(st.floats(-1e9, 1e9), st.floats(allow_nan=True), ODD),
    ),
)
def test_model_activation_parameter(activation, exponent, param):
    """Any activation name and parameter: a model whose phi is finite, or a clear error."""
    model = outcome(fs.Model, np.eye(2, 3), activation=activation, exponent=exponent, param=param)
    if model is not None:
        assert model.exponent == 1 and math.isfinite(model.param)
        est = fs.estimate_loss(model, fs.SparseInputs(3, p=0.5), 200, seed=0)
        assert math.isfinite(est.mean) and est.mean >= 0


@SETTINGS
@given(r=mostly(st.integers(-2, 2000)), law=st.sampled_from([*LAWS, "discrete"]))
def test_value_law_moments(r, law):
    law = fs.ValueLaw(law, [-3.0, 0.5], [0.25, 0.75]) if law == "discrete" else fs.ValueLaw(law)
    mu = outcome(law.moment, r)
    if mu is not None:
        assert isinstance(mu, float) and math.isfinite(mu)


# --------------------------------------------------------------------------
# sampling


@SETTINGS
@given(
    n=st.integers(1, 12),
    p=st.floats(0.0, 1.0),
    n_samples=st.integers(0, 300),
    cut=st.integers(0, 300),
    seed=mostly(st.integers(0, 10), st.one_of(EDGE_INTS, st.integers(-(2**70), 2**70), ODD), 3),
)
@example(n=2, p=1.4419346291879379e-111, n_samples=1, cut=0, seed=0)  # gaps beyond int64
@example(n=3, p=0.5, n_samples=10, cut=3, seed=2**64)  # aliased seed 0
@example(n=3, p=0.5, n_samples=10, cut=3, seed=-1)  # the word 2**64 - 1
def test_sample_is_a_function_of_the_sample_index(n, p, n_samples, cut, seed):
    """Any split of the range gives the same samples; a seed out of range is refused."""
    inputs = fs.SparseInputs(n, p=p, values="uniform_sym")
    whole = outcome(fs.sample, inputs, n_samples, seed)
    if whole is None:
        return
    cut = min(cut, n_samples)
    head = fs.sample(inputs, cut, seed)
    tail = fs.sample(inputs, n_samples - cut, seed, start=cut, chunk_size=7)
    np.testing.assert_array_equal(whole.indices, np.concatenate([head.indices, tail.indices]))
    np.testing.assert_array_equal(whole.values, np.concatenate([head.values, tail.values]))
    counts = whole.counts()
    assert np.all((counts >= 0) & (counts <= n)) and np.all(np.isfinite(whole.values))


# --------------------------------------------------------------------------
# exact values against the enumeration of every input


@SETTINGS
@given(
    data=st.data(),
    n=st.integers(1, 4),
    d=st.integers(1, 3),
    m=st.integers(1, 3),
    law=st.sampled_from(["rademacher", "constant", "discrete"]),
    bias=st.booleans(),
)
def test_exact_loss_is_the_enumerated_mean(data, n, d, m, law, bias):
    entries = st.floats(-1.5, 1.5, allow_subnormal=False)
    W = data.draw(hnp.arrays(np.float64, (d, n), elements=entries))
    b = data.draw(hnp.arrays(np.float64, n, elements=entries)) if bias else None
    p = data.draw(hnp.arrays(np.float64, n, elements=st.floats(0.0, 1.0)))
    support, probs = {"rademacher": ([-1.0, 1.0], [0.5, 0.5]), "constant": ([1.0], [1.0]),
                      "discrete": ([-0.5, 2.0], [0.3, 0.7])}[law]  # fmt: skip
    values = fs.ValueLaw(law, support, probs) if law == "discrete" else fs.ValueLaw(law)
    model = fs.Model(W, b, exponent=m)
    inputs = fs.SparseInputs(n, p=p, values=values)
    X, weight = enumerate_inputs(p, support, probs)
    _assert_enumerated(model, inputs, X, weight)


@SETTINGS
@given(m=st.integers(1, 400), law=st.sampled_from(LAWS))
@example(m=200, law="gaussian")  # E xi**401 = 400!! overflows float64
def test_exact_loss_at_any_exponent(m, law):
    """Large exponents: a finite value, a ValueError naming the exponent (moments of the
    value law beyond float64), or FloatingPointError (moments of W x beyond float64)."""
    model = fs.Model(0.5 * np.eye(2, 3), exponent=m)
    try:
        loss = outcome(fs.exact_loss, model, fs.SparseInputs(3, p=0.2, values=law))
    except FloatingPointError as exc:
        assert "float64 overflow" in str(exc)
        return
    if loss is not None:
        assert math.isfinite(loss) and loss >= 0


# --------------------------------------------------------------------------
# Monte Carlo against the NumPy forward pass on the same samples


@SETTINGS
@given(
    n_samples=mostly(
        st.integers(2, 3000),
        st.one_of(st.integers(-1, 1), st.sampled_from([10**15, 2**63, 1e3, 1e3 + 0.5]), ODD),
    ),
    seed=mostly(st.integers(0, 100), st.one_of(EDGE_INTS, ODD)),
    block_size=mostly(st.integers(1, 700), st.one_of(st.integers(-1, 0), ODD)),
    path=mostly(st.sampled_from(PATHS), st.one_of(st.just("fast"), ODD)),
    start=mostly(st.integers(0, 10**6), st.one_of(st.sampled_from([-1, 2**63 - 4000, 2**63]), ODD)),
    per_feature=mostly(st.booleans()),
)
@example(n_samples=10**15, seed=0, block_size=2048, path="auto", start=0, per_feature=False)
@example(n_samples=1000, seed=2**64, block_size=2048, path="auto", start=0, per_feature=False)
@example(n_samples=1000, seed=-1, block_size=64, path="dense", start=2**63 - 1001, per_feature=True)
def test_estimate_loss(n_samples, seed, block_size, path, start, per_feature):
    W = np.array([[0.8, -0.3, 0.5, 0.1, 0.0, 0.4], [0.2, 0.9, -0.4, 0.3, 0.6, -0.1]])
    model = fs.Model(W, b=np.full(6, -0.05), activation="relu_power", exponent=1.5)
    inputs = fs.SparseInputs(6, p=0.3, values="uniform")
    est = outcome(fs.estimate_loss, model, inputs, n_samples, seed, block_size=block_size,
                  path=path, start=start, per_feature=per_feature)  # fmt: skip
    if est is None:
        return
    assert math.isfinite(est.mean) and math.isfinite(est.stderr) and est.stderr >= 0
    X = fs.sample(inputs, int(n_samples), seed, start=start).to_dense()
    ref = loss_numpy(W, model.b, "relu_power", 1.5, X)
    assert est.mean == pytest.approx(ref.mean(), rel=1e-10, abs=1e-14)
    if per_feature:
        assert est.per_feature.shape == (6,) and np.all(np.isfinite(est.per_feature))


# --------------------------------------------------------------------------
# training


@SETTINGS
@given(
    steps=mostly(st.integers(1, 4), st.one_of(st.integers(-1, 0), ODD)),
    lr=mostly(
        st.one_of(st.floats(1e-4, 1e7), st.sampled_from([1e6, 1e-3])),
        st.one_of(st.floats(allow_nan=True, allow_infinity=True), ODD),
    ),
    batch_size=mostly(st.integers(1, 64), st.one_of(st.integers(-1, 0), ODD)),
    n_instances=mostly(st.integers(1, 3), st.one_of(st.integers(-1, 0), ODD)),
    p=mostly(
        st.one_of(st.floats(0.0, 1.0), st.lists(st.floats(0.0, 1.0), min_size=1, max_size=4)),
        st.one_of(st.floats(-0.5, 1.5), ODD),
    ),
    seed=mostly(st.integers(0, 100), st.one_of(EDGE_INTS, ODD)),
)
@example(steps=0, lr=1e-3, batch_size=8, n_instances=1, p=0.5, seed=0)  # a final loss of NaN
@example(steps=4, lr=1e6, batch_size=64, n_instances=2, p=1.0, seed=0)  # blows up
def test_fit(steps, lr, batch_size, n_instances, p, seed):
    """A fit works (a finite loss, or a RuntimeWarning naming lr when it blew up) or is
    refused; a loss that overflows is a FloatingPointError naming lr."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            res = outcome(fs.fit, 4, 2, n_instances=n_instances, p=p, steps=steps, lr=lr,
                          batch_size=batch_size, seed=seed, log_every=1)  # fmt: skip
        except FloatingPointError as exc:
            assert "lower lr" in str(exc)
            return
    if res is not None:
        blew_up = any("lr =" in str(w.message) for w in caught)
        assert np.all(np.isfinite(res.final_loss)) or blew_up
        assert np.all(np.isfinite(res.W))


# --------------------------------------------------------------------------
# the command line


TOKENS = {
    "--n": ["8", "0", "-1", "x", "1e12", "2.5"],
    "--d": ["2", "0", "1e12", "nan"],
    "--p": ["0.1", "1.5", "-0.1", "nan", "inf", "0.1,0.2"],
    "--exponent": ["3", "2", "0", "-1", "inf", "2.5", "400"],
    "--activation": ["power", "relu_power", "tanh", "softplus", "swish"],
    "--param": ["2", "0", "-1", "nan", "x"],
    "--values": ["gaussian", "uniform", "cauchy"],
    "--samples": ["100", "0", "1", "abc", "1e15"],
    "--seed": ["0", "-1", str(2**64), "x"],
    "--norm": ["1", "0", "-1", "nan"],
}


@SETTINGS
@given(data=st.data())
def test_cli_estimate_options(data, capsys):
    """``fastsuper estimate`` with any mix of good and bad options: it runs (exit status 0,
    or 1 when its check of 100 samples against the exact loss says FAIL), or exits 2 with
    one line on stderr; never a traceback."""
    argv = ["estimate", "--samples", "100"]
    for option in data.draw(st.lists(st.sampled_from(sorted(TOKENS)), max_size=4, unique=True)):
        argv += [option, data.draw(st.sampled_from(TOKENS[option]))]
    try:
        rc = main(argv)
    except SystemExit as exc:
        rc = exc.code
    out, err = capsys.readouterr()
    assert rc in (0, 1, 2), (argv, err)
    if rc == 2:
        assert len(err.strip().splitlines()) == 1 and ": error: " in err, (argv, err)
    else:
        assert "Monte Carlo" in out and "nan" not in out.lower(), (argv, out)
        verdict = out.strip().splitlines()[-1]
        assert ("FAIL" in verdict) == (rc == 1) and ("PASS" in verdict) == (rc == 0), out


# --------------------------------------------------------------------------
# the prepared exact evaluator


@SETTINGS
@given(
    data=st.data(),
    d=mostly(st.integers(1, 3), st.one_of(EDGE_INTS, ODD)),
    m=mostly(st.integers(1, 3), st.one_of(EDGE_INTS, ODD)),
    bias=mostly(st.booleans()),
    kernel=mostly(
        st.sampled_from(["auto", "rows", "fused", "tensor"]), st.one_of(st.text(max_size=3), ODD)
    ),
)
def test_exact_evaluator(data, d, m, bias, kernel):
    """Odd arguments are refused when the evaluator is made; odd weights when it is called;
    otherwise the values of exact_loss_grad (to round-off for the fused and tensor kernels)."""
    inputs = fs.SparseInputs(4, p=0.3, values="rademacher")
    ev = outcome(fs.ExactEvaluator, inputs, d, m, bias=bias, kernel=kernel)
    if ev is None:
        return
    entries = st.floats(-1.5, 1.5, allow_subnormal=False)
    W = data.draw(mostly(hnp.arrays(np.float64, (ev.d, 4), elements=entries), ODD))
    b = data.draw(hnp.arrays(np.float64, 4, elements=entries)) if ev.bias else None
    got = outcome(ev.loss_grad, W, b)
    if got is None:
        return
    ref = fs.exact_loss_grad(fs.Model(W, b, exponent=ev.m), inputs, wrt_bias=ev.bias)
    assert got[0] == pytest.approx(ref[0], rel=1e-12, abs=1e-300)
    np.testing.assert_allclose(got[1], ref[1], rtol=1e-10, atol=1e-12)
