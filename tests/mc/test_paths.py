"""Every Monte-Carlo path against the NumPy reference and against each other.

The paths ("dense", "columns", "blocked", "columns_blocked") draw the same
samples and differ only in the order of float additions; small tiles, small
matrix products and small sub-blocks are forced (monkeypatched shapes) so that
every branch of the blocked kernels runs on tiny sizes.
"""

import numba
import numpy as np
import pytest
from builders import random_model
from checks import assert_same_estimate
from naive import gain_numpy, loss_numpy

import fastsuper as fs
from fastsuper import testing as T

PATHS = ("dense", "columns", "blocked", "columns_blocked")


@pytest.fixture
def small_shapes(monkeypatch):
    """Narrow tiles (16/32 outputs), products of 8 x 16, sub-blocks of ~8 samples."""
    monkeypatch.setattr(T.config, "COLUMN_TILE_BYTES", 1)  # -> narrow tiles: 128-byte panel rows
    monkeypatch.setattr(T.config, "COLUMN_SUB_ENTRIES", 16)
    monkeypatch.setattr(T.config, "GEMM_ROWS", 8)
    monkeypatch.setattr(T.config, "BLAS_SINGLE_THREAD_MNK", 8 * 16 * 4)


CASES = [
    # activation, exponent, bias, pattern
    ("power", 3, True, "per_feature_p"),
    ("relu_power", 2, False, "per_feature_p"),
    ("relu_power", 1, True, "k"),
    ("signed_power", 1.5, True, "p"),
    ("signed_power", 2, False, "k"),
    ("relu_power", 2.5, True, "p"),
]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_every_path_matches_numpy_reference(case, dtype, small_shapes):
    act, a, bias, pattern = case
    n, d, N = 70, 5, 3000
    model = random_model(n, d, act, a, bias, dtype)
    imp = 0.95 ** np.arange(n)
    if pattern == "k":
        inputs = fs.SparseInputs(n, k=4, values="gaussian", importance=imp)
    elif pattern == "p":
        inputs = fs.SparseInputs(n, p=0.05, values="uniform", importance=imp)
    else:
        inputs = fs.SparseInputs(
            n, p=np.linspace(0.01, 0.2, n), values="uniform_sym", importance=imp
        )
    X = fs.sample(inputs, N, seed=3, dtype=dtype).to_dense()
    loss = loss_numpy(model.W, model.b, act, a, X, imp)
    gain = gain_numpy(model.W, model.b, act, a, X, imp)
    rtol = 1e-10 if dtype == np.float64 else 2e-4
    ests = {}
    for path in PATHS:
        est = fs.estimate_loss(
            model, inputs, N, seed=3, path=path, per_feature=True, block_size=700
        )
        assert est.path == path and est.n_samples == N
        assert est.mean == pytest.approx(loss.mean(), rel=rtol)
        assert est.gain_mean == pytest.approx(gain.mean(), rel=rtol, abs=rtol * loss.mean())
        assert est.stderr == pytest.approx(loss.std(ddof=1) / np.sqrt(N), rel=10 * rtol)
        assert est.per_feature.sum() == pytest.approx(est.mean, rel=1e-9)
        ests[path] = est
    ref = ests["columns"]
    for est in ests.values():  # the paths agree with each other to round-off
        assert est.mean == pytest.approx(ref.mean, rel=1e-12 if dtype == np.float64 else 1e-5)
        np.testing.assert_allclose(
            est.per_feature, ref.per_feature, rtol=1e-5, atol=1e-7 * ref.mean
        )


@pytest.mark.parametrize("path", PATHS)
def test_thread_count_invariance_bitwise(path, small_shapes, set_numba_threads):
    model = random_model(90, 6, "relu_power", 2, True, np.float64)
    inputs = fs.SparseInputs(90, p=0.05, values="uniform")
    res = []
    for t in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
        set_numba_threads(t)
        res.append(
            fs.estimate_loss(
                model, inputs, 9000, seed=5, path=path, per_feature=True, block_size=1000
            )
        )
    a, b = res
    assert_same_estimate(a, b)


@pytest.mark.parametrize("path", PATHS)
def test_block_size_changes_only_roundoff(path):
    model = random_model(120, 8, "signed_power", 3, False, np.float64)
    inputs = fs.SparseInputs(120, p=0.04, values="gaussian")
    ests = [
        fs.estimate_loss(model, inputs, 6000, seed=2, path=path, block_size=bs)
        for bs in (37, 1000, 6000)
    ]
    for e in ests[1:]:
        assert e.mean == pytest.approx(ests[0].mean, rel=1e-12)
        assert e.stderr == pytest.approx(ests[0].stderr, rel=1e-9)
    # a continuation (start) reproduces the second half exactly
    first = fs.estimate_loss(model, inputs, 3000, seed=2, path=path, block_size=1000)
    second = fs.estimate_loss(model, inputs, 3000, seed=2, path=path, block_size=1000, start=3000)
    assert ests[1].mean == pytest.approx((first.mean + second.mean) / 2, rel=1e-13)


@pytest.mark.parametrize("path", PATHS)
def test_overflow_reported_on_every_path(path, small_shapes):
    W = np.full((2, 40), 1e30)
    model = fs.Model(W, activation="power", exponent=5)
    inputs = fs.SparseInputs(40, p=0.2, values="gaussian")
    with pytest.raises(FloatingPointError, match=r"overflowed .* first at sample index \d+"):
        fs.estimate_loss(model, inputs, 500, path=path)
    model32 = fs.Model(np.full((2, 40), 1e6, dtype=np.float32), activation="power", exponent=3)
    with pytest.raises(FloatingPointError, match="float32"):
        fs.estimate_loss(model32, inputs, 500, path=path)


@pytest.mark.parametrize("act,a", [("relu_power", 2), ("power", 3), ("relu_power", 1)])
def test_overflow_reported_in_fused_wide_tiles(act, a):
    """float32 overflow inside the SIMD tile (A = 2e38 is finite, z is not) is reported."""
    model = fs.Model(np.full((2, 150), 1e19, dtype=np.float32), activation=act, exponent=a)
    inputs = fs.SparseInputs(150, p=0.05, values="uniform")
    with pytest.raises(FloatingPointError, match="float32"):
        fs.estimate_loss(model, inputs, 500, path="columns_blocked")


@pytest.mark.parametrize("path", ("blocked", "columns_blocked"))
def test_first_bad_sample_index_is_the_first(path):
    """The reported index is the first non-finite sample, as on the per-sample path."""
    rng = np.random.default_rng(1)
    W = rng.normal(size=(3, 30))
    W[:, 7] = 1e60  # only samples with feature 7 active overflow
    model = fs.Model(W, activation="power", exponent=3)
    inputs = fs.SparseInputs(30, p=0.02, values="uniform")
    msgs = []
    for p in ("columns", path):
        with pytest.raises(FloatingPointError) as err:
            fs.estimate_loss(model, inputs, 5000, seed=4, path=p, block_size=512)
        msgs.append(str(err.value))
    assert msgs[0] == msgs[1]


def test_float32_accumulates_in_float64():
    """A float32 model's loss sums over n = 3000 outputs are float64 (no float32 drift)."""
    n = 3000
    W = np.random.default_rng(2).normal(size=(8, n)) / 4
    inputs = fs.SparseInputs(n, p=0.002, values="uniform")
    m64 = fs.Model(W, activation="relu_power", exponent=2)
    m32 = fs.Model(W.astype(np.float32), activation="relu_power", exponent=2)
    ref = fs.estimate_loss(
        m64.with_params(m32.W.astype(np.float64), None), inputs, 4000, seed=1, path="columns"
    )
    for path in PATHS:
        est = fs.estimate_loss(m32, inputs, 4000, seed=1, path=path)
        assert est.mean == pytest.approx(ref.mean, rel=1e-5)


@pytest.mark.parametrize(
    "n,d,p,dtype,n_samples,expected",
    [
        # each choice is the fastest path measured at that shape (scripts/cost_model.py)
        (1000, 64, 0.01, np.float64, 10**6, "columns_blocked"),  # sparse: tiles of rows of A
        (100, 20, 0.05, np.float64, 10**6, "columns_blocked"),  # one wide tile, padded
        (1000, 64, 0.2, np.float64, 10**6, "blocked"),  # E K = 200 > d: matrix products
        (1000, 8, 0.04, np.float64, 10**6, "blocked"),  # small d: W^T h is cheap
        (1000, 256, 0.003, np.float32, 10**6, "columns_blocked"),
        (20000, 16, 0.0005, np.float64, 10**6, "blocked"),  # A would be 3.2 GB
        (2000, 32, 0.00025, np.float64, 20_000, "columns"),  # few samples: no panel copy
        (6000, 16, 0.0005, np.float64, 20_000, "blocked"),  # few samples: A (288 MB) too dear
        (4000, 64, 0.0025, np.float64, 20_000, "blocked"),
    ],
)
def test_cost_model_choices(n, d, p, dtype, n_samples, expected):
    model = fs.Model(np.zeros((d, n), dtype=dtype))
    inputs = fs.SparseInputs(n, p=p)
    assert T.choose_path(model, inputs, n_samples) == expected


def test_path_shapes_do_not_depend_on_threads():
    assert T.path_shape("blocked", 1000, 64, 8, 10.0) == (128, 32)
    tile, sub = T.path_shape("columns_blocked", 1000, 64, 8, 10.0)
    assert tile == 64 and sub == 3276  # 512-byte panel rows
    assert T.path_shape("columns_blocked", 1000, 64, 4, 10.0)[0] == 128
    assert T.path_shape("columns_blocked", 100000, 64, 8, 10.0)[0] == 16  # narrow tiles
    assert T.path_shape("columns", 100, 64, 8, 10.0) == (0, 0)


@pytest.mark.parametrize(
    "act,a",
    [
        ("relu_power", 1),
        ("relu_power", 2),
        ("relu_power", 3),
        ("power", 2),
        ("power", 3),
        ("signed_power", 3),  # odd: the power kernel
        ("signed_power", 2),  # even: z stored, activation applied after
        ("relu_power", 2.5),
    ],
)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_wide_tiles_every_fused_activation(act, a, dtype):
    """Wide SIMD tiles (64 float64 / 128 float32 outputs), several of them and a
    padded last one (n = 150), each fused activation and the stored-z fallback,
    against the NumPy reference; with ``per_feature`` (stored z) as well."""
    n, d, N = 150, 6, 2000
    model = random_model(n, d, act, a, True, dtype, scale=0.4)
    imp = 0.97 ** np.arange(n)
    inputs = fs.SparseInputs(n, p=0.04, values="uniform_sym", importance=imp)
    assert T.path_shape("columns_blocked", n, d, np.dtype(dtype).itemsize, 6.0)[0] in (64, 128)
    X = fs.sample(inputs, N, seed=5, dtype=dtype).to_dense()
    loss = loss_numpy(model.W, model.b, act, a, X, imp)
    rtol = 1e-10 if dtype == np.float64 else 2e-4
    for pf in (False, True):
        est = fs.estimate_loss(model, inputs, N, seed=5, path="columns_blocked", per_feature=pf)
        assert est.mean == pytest.approx(loss.mean(), rel=rtol)
        assert est.stderr == pytest.approx(loss.std(ddof=1) / np.sqrt(N), rel=10 * rtol)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_panels_are_aligned_and_exact(dtype):
    """The panels start on a 64-byte boundary (each 512- or 128-byte row on a cache
    line) and hold A's values bit for bit, zero-padded past column n."""
    rng = np.random.default_rng(3)
    n = 37
    A = rng.normal(size=(n, n)).astype(dtype)
    for width in (16, 32, 64, 128):
        P = T.column_panels(A, width)
        assert P.ctypes.data % T.config.VECTOR_ALIGN == 0
        nt = -(-n // width)
        assert P.shape == (nt * n, width)
        dense = P.reshape(nt, n, width).transpose(1, 0, 2).reshape(n, nt * width)
        np.testing.assert_array_equal(dense[:, :n], A)
        assert not dense[:, n:].any()


def test_aligned_copies_only_misaligned_arrays():
    buf = np.arange(1000, dtype=np.float64)
    off = next(o for o in range(8) if buf[o:].ctypes.data % 64 != 0)
    view = buf[off : off + 512].reshape(64, 8)
    out = T.aligned(view)
    assert out.ctypes.data % 64 == 0 and out is not view
    np.testing.assert_array_equal(out, view)
    assert T.aligned(out) is out


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_misaligned_panels_give_the_same_numbers(dtype):
    """Panels that lost their alignment (as after a trip through Dask) are realigned
    by run_blocks: statistics identical, bit for bit."""
    n, d = 70, 5
    model = random_model(n, d, "relu_power", 2, True, dtype)
    inputs = fs.SparseInputs(n, p=0.05, values="uniform")
    P = T.path_operand(model, "columns_blocked")
    buf = np.empty(P.size + 64, dtype=dtype)
    off = next(o for o in range(1, 64) if buf[o:].ctypes.data % 64 != 0)
    Pm = buf[off : off + P.size].reshape(P.shape)
    Pm[...] = P
    assert Pm.ctypes.data % 64 != 0
    args = (inputs, "columns_blocked", False, 7, 0, 3000, 512)
    ref = T.run_blocks(model, inputs, P, *args[1:])
    got = T.run_blocks(model, inputs, Pm, *args[1:])
    for r, g in zip(ref, got):
        np.testing.assert_array_equal(r, g)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_gram_is_w_transpose_w(dtype):
    """gram (one BLAS thread for small products) computes W^T W; the kernels' A."""
    model = random_model(300, 20, "power", 3, False, dtype)
    A = T.gram(model)
    ref = model.W.astype(np.float64).T @ model.W.astype(np.float64)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(A, ref, rtol=0, atol=tol * np.abs(ref).max())
    assert A.dtype == dtype and A.shape == (300, 300)


def test_gram_does_not_depend_on_the_alignment_of_w():
    """A W that is not even aligned to its itemsize (as after unpickling on a Dask
    worker) gives the same A bit for bit: NumPy would multiply it with its own loops."""
    model = random_model(60, 6, "relu_power", 1.5, False, np.float64)
    buf = np.zeros(model.W.nbytes + 1, dtype=np.uint8)
    W = np.frombuffer(buf.data, dtype=np.float64, count=model.W.size, offset=1)
    W = W.reshape(model.W.shape)
    W[...] = model.W
    assert not W.flags.aligned
    odd = fs.Model(model.W, activation="relu_power", exponent=1.5)
    odd.W = W  # what unpickling leaves
    np.testing.assert_array_equal(T.gram(odd), T.gram(model))
