"""Pinned results of fastsuper: the numbers of the public API, stored bit for bit.

``tests/data/pins.json`` holds, for each *group* below, the results of a few
calls of the public API (``import fastsuper as fs`` and the names in
``fs.__all__`` only, so the pins do not depend on where the code lives inside
the package) with fixed seeds and small sizes.  ``tests/test_pins.py``
recomputes every group and compares it with the file **bit for bit**: a
change that moves code around, renames internals or bundles kernel arguments
must leave every number exactly as it is.

What is pinned (group names start with these prefixes):

``sample/``
    ``fs.sample``: ``indptr``, ``indices``, ``values`` and ``counts()`` for
    every value law, scalar and per-feature ``p``, "exactly k", ``start``,
    float32 values.
``forward/``
    ``fs.forward`` on a sparse batch (float64 and float32 models) and on
    dense inputs.
``estimate_loss/naive/``
    Every Monte-Carlo path (``dense``, ``columns``, ``blocked``,
    ``columns_blocked``) in float32 and float64, for four problems (ReLU /
    Gaussian with per-feature output, ``power`` 2 / Rademacher with
    per-feature ``p`` and ``start``, ``relu_power`` 2 / uniform "exactly k"
    over two tiles, ``signed_power`` 1.5 / discrete), all with a nonzero
    bias and non-uniform importances: every field of the ``LossEstimate``
    except ``elapsed``.
``estimate_loss/auto/``
    The path chosen by the cost model, with its estimate.
``estimate_loss/stratified/``
    ``method="stratified"`` on its paths, float32 and float64.
``estimate_loss/dask/``
    ``backend="dask"`` on a local cluster of two single-threaded worker
    processes (skipped without ``distributed``).
``cuda/``
    ``backend="cuda"`` of ``estimate_loss``, ``loss_grad``, ``fit`` and the
    exact functions, on numba-cuda's simulator (``NUMBA_ENABLE_CUDASIM=1``;
    pytest marker ``cudasim``).  These are the simulator's numbers, which may
    differ from the CPU's in the last bits; on a real GPU they are not
    compared.
``check/``
    ``fs.check`` (its estimate, reference, bounds and z-score).
``loss_grad/``
    ``fs.loss_grad``: the loss, ``dW`` and ``db``.
``fit/``
    ``fs.fit`` with Adam: 2-3 instances, float32 and float64, small ``d``
    (per-sample code) and ``d = 8`` (matrix products), a few steps;
    ``fit(method="exact")``.
``fit_exact/``
    ``fs.fit_exact`` at ``n = 6``, ``d = 2``, ``m = 3`` with few restarts.
``exact/``
    ``exact_loss``, ``exact_gain``, ``exact_loss_and_gain`` (sums and
    per-feature terms), ``exact_loss_grad`` and ``exact_gain_grad``.
``low_order_terms/``, ``loss_bounds/``
    Every field (and the derived properties) of ``LowOrderTerms`` and
    ``LossBounds``.
``kernels/``
    ``fs.kernels``: ``sample_one``, ``forward_one``, ``loss_one`` and
    ``grad_one`` called from a small ``@numba.njit`` function.
``theory/``, ``sweep/``
    A few functions of ``fs.theory``; ``fs.sweep`` of the three built-in kinds.

Storage: floats as ``float.hex()`` (float32 scalars tagged as such), integers,
booleans and strings as they are; arrays as dtype, shape and the sha256 of
their bytes, with some elements (``float.hex``; all of them for arrays of at
most 16 elements, else 4) and the exact sum (``math.fsum``) so that a failure
message is readable.  Timings (``elapsed``) are never pinned.

The pins belong to one machine type and one set of library versions
(NumPy, SciPy, Numba, llvmlite, the BLAS); the file records them, and the
test names those that differ when a value does.  They are the numbers of
kernels loaded from Numba's cache: see ``tests/test_pins.py`` for the last
bit of the CPU Monte-Carlo statistics, which a freshly compiled kernel can
change.

Regenerating
------------
Only when a change of numbers is intended, and the change (which groups,
why) is stated in the changelog::

    OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=2 python tests/pins_make.py

This first runs itself once in a subprocess, so that every kernel is
compiled and cached, then computes the CPU and Dask groups in this process
and the CUDA-simulator groups in a subprocess with ``NUMBA_ENABLE_CUDASIM=1``
(after a warm-up run of its own), writes ``tests/data/pins.json`` and lists
the groups whose numbers changed.  ``--kinds cpu,dask`` (say) recomputes
only the groups of those kinds and keeps the others from the file;
``--groups fit/adam/,sweep/fit`` only the groups whose names start so.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import math
import os
import platform
import subprocess
import sys
from pathlib import Path

import numba
import numpy as np

import fastsuper as fs

PINS_PATH = Path(__file__).resolve().parent / "data" / "pins.json"
FORMAT = 1

#: group name -> (kind, function returning {field: value}); kind is "cpu", "dask" or "cudasim"
GROUPS: dict = {}

#: array elements stored beside the hash: all of a small array, else a few spread over it
ALL_ELEMENTS, N_ELEMENTS = 16, 4


def _register(name: str, kind: str, func, *args, **kwargs) -> None:
    if name in GROUPS:
        raise ValueError(f"duplicate pinned group {name!r}")
    GROUPS[name] = (kind, functools.partial(func, *args, **kwargs))


# --------------------------------------------------------------------------
# encoding: every value as a small JSON object that is equal iff the bits are


def _scalar(x):
    """A float as its hex form, an integer or bool as itself (JSON-able)."""
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    return float(x).hex()


def encode(x) -> dict:
    """The tagged, exact JSON form of a pinned value."""
    if x is None:
        return {"none": None}
    if isinstance(x, (bool, np.bool_)):
        return {"bool": bool(x)}
    if isinstance(x, (int, np.integer)):
        return {"int": int(x)}
    if isinstance(x, np.float32):
        return {"float": float(x).hex(), "dtype": "float32"}
    if isinstance(x, (float, np.floating)):
        return {"float": float(x).hex()}
    if isinstance(x, str):
        return {"str": x}
    if isinstance(x, (tuple, list)) and all(isinstance(s, str) for s in x):
        return {"strs": list(x)}
    if isinstance(x, np.ndarray):
        a = np.ascontiguousarray(x)
        if a.dtype.kind not in "biuf":
            raise TypeError(f"cannot pin an array of dtype {a.dtype}")
        flat = a.reshape(-1)
        count = flat.size if flat.size <= ALL_ELEMENTS else N_ELEMENTS
        at = np.unique(np.linspace(0, flat.size - 1, count).astype(np.int64))
        out = {
            "dtype": a.dtype.str,
            "shape": list(a.shape),
            "sha256": hashlib.sha256(a.tobytes()).hexdigest(),
            "at": [[int(i), _scalar(flat[i])] for i in at],
        }
        if a.dtype.kind == "f":
            out["fsum"] = math.fsum(flat.astype(np.float64).tolist()).hex()
        return {"array": out}
    raise TypeError(f"cannot pin a value of type {type(x).__name__}: {x!r}")


def encode_fields(fields: dict) -> dict:
    return {k: encode(v) for k, v in fields.items()}


# --------------------------------------------------------------------------
# problems (fixed seeds, small sizes)


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng([20_240_601, seed])


def _model(n, d, activation, exponent, dtype=np.float64, *, seed=0, scale=0.5, bias=True):
    """Gaussian weights of column norm about ``scale``, a bias of size 0.1."""
    rng = _rng(seed)
    W = (rng.normal(size=(d, n)) * (scale / math.sqrt(d))).astype(dtype)
    b = (rng.normal(size=n) * 0.1).astype(dtype) if bias else None
    return fs.Model(W, b, activation=activation, exponent=exponent)


def _importance(n, seed=1):
    return _rng(seed).uniform(0.5, 1.5, size=n)


#: Monte-Carlo problems: (model arguments, input-law arguments, call arguments)
MC_CASES = {
    "relu1_gaussian": (
        dict(n=40, d=5, activation="relu_power", exponent=1, scale=1.0),
        dict(p=0.08, values="gaussian"),
        dict(n_samples=3000, seed=7, block_size=512, per_feature=True),
    ),
    "power2_rademacher_pvec": (
        dict(n=40, d=5, activation="power", exponent=2, scale=0.6),
        dict(p=np.linspace(0.02, 0.2, 40), values="rademacher"),
        dict(n_samples=2500, seed=11, block_size=700, start=1000),
    ),
    "relu2_uniform_k3": (
        dict(n=72, d=6, activation="relu_power", exponent=2, scale=0.8),
        dict(k=3, values="uniform"),
        dict(n_samples=2000, seed=3, block_size=512, per_feature=True),
    ),
    "signed1.5_discrete": (
        dict(n=30, d=4, activation="signed_power", exponent=1.5, scale=0.7),
        dict(p=0.1, values="discrete", support=[-1.0, 0.5, 2.0], probs=[0.2, 0.5, 0.3]),
        dict(n_samples=2000, seed=5, block_size=256),
    ),
}


def _mc_problem(case, dtype):
    margs, largs, cargs = MC_CASES[case]
    margs = dict(margs)
    n = margs.pop("n")
    d = margs.pop("d")
    model = _model(n, d, dtype=dtype, seed=hash_case(case), **margs)
    inputs = fs.SparseInputs(n, importance=_importance(n, hash_case(case)), **largs)
    return model, inputs, dict(cargs)


def hash_case(case: str) -> int:
    """A small stable integer for a case name (Python's hash() is salted)."""
    return int(hashlib.sha256(case.encode()).hexdigest()[:8], 16)


DTYPES = {"float64": np.float64, "float32": np.float32}


def estimate_fields(est) -> dict:
    """Every field of a LossEstimate except the timing."""
    return {
        "mean": est.mean,
        "stderr": est.stderr,
        "gain_mean": est.gain_mean,
        "gain_stderr": est.gain_stderr,
        "n_samples": est.n_samples,
        "seed": est.seed,
        "n": est.n,
        "path": est.path,
        "method": est.method,
        "backend": est.backend,
        "mean_over_features": est.mean_over_features,
        "per_feature": est.per_feature,
        "per_feature_stderr": est.per_feature_stderr,
    }


# --------------------------------------------------------------------------
# sample and forward

SAMPLE_LAWS = {
    "gaussian": dict(n=40, p=0.1, values="gaussian"),
    "rademacher_pvec": dict(n=30, p=np.linspace(0.0, 0.5, 30), values="rademacher"),
    "uniform_sym": dict(n=25, p=0.2, values="uniform_sym"),
    "uniform_dense": dict(n=20, p=1.0, values="uniform"),
    "discrete": dict(
        n=35, p=0.15, values="discrete", support=[-1.0, 0.5, 2.0], probs=[0.2, 0.5, 0.3]
    ),
    "constant_k4": dict(n=24, k=4, values="constant"),
}


def _sample_group(law, n_samples=200, seed=3, **kw):
    largs = dict(SAMPLE_LAWS[law])
    n = largs.pop("n")
    batch = fs.sample(fs.SparseInputs(n, **largs), n_samples, seed, **kw)
    return {
        "indptr": batch.indptr,
        "indices": batch.indices,
        "values": batch.values,
        "counts": batch.counts(),
        "n": batch.n,
    }


for _law in SAMPLE_LAWS:
    _register(f"sample/{_law}", "cpu", _sample_group, _law)
_register(
    "sample/gaussian_start_chunk", "cpu", _sample_group, "gaussian", start=5000, chunk_size=37
)
_register("sample/gaussian_float32_seed_neg", "cpu", _sample_group, "gaussian",
          seed=-12345, dtype=np.float32)  # fmt: skip


def _forward_sparse(dtype):
    model, inputs, _ = _mc_problem("relu1_gaussian", DTYPES[dtype])
    batch = fs.sample(inputs, 60, seed=9)
    return {"xhat": fs.forward(model, batch)}


def _forward_dense():
    model, inputs, _ = _mc_problem("signed1.5_discrete", np.float64)
    X = fs.sample(inputs, 20, seed=2).to_dense()
    model32 = _model(30, 4, "power", 3, np.float32, seed=4)
    return {
        "xhat_batch": fs.forward(model, X),
        "xhat_one": fs.forward(model, X[3]),
        "xhat_batch_float32_power3": fs.forward(model32, X),
    }


for _dt in DTYPES:
    _register(f"forward/sparse/{_dt}", "cpu", _forward_sparse, _dt)
_register("forward/dense", "cpu", _forward_dense)


# --------------------------------------------------------------------------
# Monte Carlo


def _estimate_group(case, dtype, **kw):
    model, inputs, cargs = _mc_problem(case, DTYPES[dtype])
    cargs.update(kw)
    n_samples = cargs.pop("n_samples")
    seed = cargs.pop("seed")
    return estimate_fields(fs.estimate_loss(model, inputs, n_samples, seed, **cargs))


NAIVE_PATHS = ("dense", "columns", "blocked", "columns_blocked")
for _case in MC_CASES:
    for _dt in DTYPES:
        for _path in NAIVE_PATHS:
            _register(f"estimate_loss/naive/{_dt}/{_case}/{_path}", "cpu", _estimate_group,
                      _case, _dt, path=_path)  # fmt: skip
for _case in ("relu1_gaussian", "relu2_uniform_k3"):
    for _dt in DTYPES:
        _register(f"estimate_loss/auto/{_dt}/{_case}", "cpu", _estimate_group, _case, _dt,
                  path="auto")  # fmt: skip

STRATIFIED_PATHS = ("dense", "columns", "columns_blocked")
for _case in ("relu1_gaussian", "power2_rademacher_pvec"):
    for _dt in DTYPES:
        for _path in STRATIFIED_PATHS:
            _register(f"estimate_loss/stratified/{_dt}/{_case}/{_path}", "cpu", _estimate_group,
                      _case, _dt, path=_path, method="stratified")  # fmt: skip
_register("estimate_loss/stratified/float64/relu1_gaussian/auto_per_feature", "cpu",
          _estimate_group, "relu1_gaussian", "float64", path="auto", method="stratified",
          per_feature=True)  # fmt: skip


def _dask_group(client, case, dtype, path, per_feature):
    model, inputs, cargs = _mc_problem(case, DTYPES[dtype])
    # The caller compiles (and caches) the kernel before the workers load it, as the
    # package's Dask tests do: both then run the same compiled code.
    fs.estimate_loss(model, inputs, 2 * cargs["block_size"], path=path, per_feature=per_feature)
    est = fs.estimate_loss(
        model, inputs, cargs["n_samples"], cargs["seed"], path=path, per_feature=per_feature,
        block_size=cargs["block_size"], start=cargs.get("start", 0), backend="dask",
        client=client, chunk_size=2 * cargs["block_size"],
    )  # fmt: skip
    return estimate_fields(est)


_register("estimate_loss/dask/float64/relu1_gaussian/columns", "dask", _dask_group,
          case="relu1_gaussian", dtype="float64", path="columns", per_feature=True)  # fmt: skip
_register("estimate_loss/dask/float32/power2_rademacher_pvec/blocked", "dask", _dask_group,
          case="power2_rademacher_pvec", dtype="float32", path="blocked",
          per_feature=False)  # fmt: skip
_register("estimate_loss/dask/float32/relu2_uniform_k3/columns_blocked", "dask", _dask_group,
          case="relu2_uniform_k3", dtype="float32", path="columns_blocked",
          per_feature=True)  # fmt: skip


def _check_group(case, exponent_model):
    margs, largs, cargs = MC_CASES[case]
    n = margs["n"]
    model = _model(n, margs["d"], *exponent_model, seed=hash_case(case))
    inputs = fs.SparseInputs(n, importance=_importance(n, hash_case(case)), **largs)
    rep = fs.check(model, inputs, 3000, seed=13, block_size=512, path="columns")
    out = estimate_fields(rep.estimate)
    out.update(
        kind=rep.kind,
        reference=rep.reference,
        lower_bound=rep.lower_bound,
        upper_bound=rep.upper_bound,
        z=rep.z,
        z_max=rep.z_max,
        passed=rep.passed,
    )
    return out


_register("check/power3_rademacher_exact", "cpu", _check_group, "power2_rademacher_pvec",
          ("power", 3))  # fmt: skip
_register("check/relu1_discrete_bounds", "cpu", _check_group, "signed1.5_discrete",
          ("relu_power", 1))  # fmt: skip
_register("check/relu1_gaussian_lower", "cpu", _check_group, "relu1_gaussian",
          ("relu_power", 1))  # fmt: skip


# --------------------------------------------------------------------------
# training


def _loss_grad_group(case, dtype):
    model, inputs, cargs = _mc_problem(case, DTYPES[dtype])
    res = fs.loss_grad(model, inputs, cargs["n_samples"], cargs["seed"],
                       block_size=cargs["block_size"], start=cargs.get("start", 0))  # fmt: skip
    return {"loss": res.loss, "dW": res.dW, "db": res.db}


for _case in ("relu1_gaussian", "power2_rademacher_pvec", "signed1.5_discrete"):
    for _dt in DTYPES:
        _register(f"loss_grad/{_dt}/{_case}", "cpu", _loss_grad_group, _case, _dt)


def _fit_fields(res) -> dict:
    return {
        "W": res.W,
        "b": res.b,
        "W0": res.W0,
        "loss_history": res.loss_history,
        "log_steps": res.log_steps,
        "final_loss": res.final_loss,
        "method": res.method,
    }


FIT_CASES = {
    "relu1_uniform_d2": dict(n=8, d=2, n_instances=3, p=[1.0, 0.3, 0.05],
                             importance=0.9 ** np.arange(8), steps=20, batch_size=64, lr=1e-2,
                             log_every=5, seed=1),
    "relu1_uniform_d8": dict(n=24, d=8, n_instances=2, p=[0.3, 0.05], steps=10, batch_size=64,
                             lr=5e-3, log_every=3, seed=2),
    "power1_gaussian_d3_nobias": dict(n=10, d=3, n_instances=2, p=[0.5, 0.1],
                                      activation="power", exponent=1, values="gaussian",
                                      bias=False, steps=12, batch_size=48, lr=1e-2,
                                      log_every=4, seed=3),
}  # fmt: skip


def _fit_group(case, dtype, **kw):
    args = dict(FIT_CASES[case])
    args.update(kw)
    n, d = args.pop("n"), args.pop("d")
    return _fit_fields(fs.fit(n, d, dtype=DTYPES[dtype], **args))


for _case in FIT_CASES:
    for _dt in DTYPES:
        _register(f"fit/adam/{_dt}/{_case}", "cpu", _fit_group, _case, _dt)


def _exact_fit_fields(res) -> dict:
    return {
        "W": res.W,
        "b": res.b,
        "gain": res.gain,
        "loss": res.loss,
        "gains": res.gains,
        "nit": res.nit,
        "nfev": res.nfev,
        "converged": res.converged,
        "starts": res.starts,
        "best": res.best,
        "history": res.history,
        "scale": res.scale,
    }


def _fit_exact_group(**kw):
    return _exact_fit_fields(fs.fit_exact(6, 2, m=3, maxiter=12, **kw))


_register("fit_exact/gaussian", "cpu", _fit_exact_group, p=0.1, restarts=1, seed=1)
_register("fit_exact/rademacher_bias_importance_pvec_W0", "cpu", _fit_exact_group,
          p=np.linspace(0.05, 0.3, 6), values="rademacher", importance=_importance(6, 21),
          bias=True, restarts=0, seed=4, W0=_rng(22).normal(size=(2, 6)) * 0.5)  # fmt: skip


def _fit_method_exact_group():
    res = fs.fit(6, 2, method="exact", activation="power", exponent=3, p=0.1, steps=3)
    return _exact_fit_fields(res)


_register("fit/exact/power3", "cpu", _fit_method_exact_group)


# --------------------------------------------------------------------------
# exact values, low-order terms, bounds

EXACT_CASES = {
    "m3_gaussian_bias": (dict(n=20, d=4, exponent=3, scale=0.8), dict(p=0.1, values="gaussian")),
    "m1_rademacher_pvec": (
        dict(n=20, d=4, exponent=1, scale=1.0),
        dict(p=np.linspace(0.05, 0.5, 20), values="rademacher"),
    ),
    "m2_discrete_float32": (
        dict(n=16, d=3, exponent=2, scale=0.7, dtype=np.float32),
        dict(p=0.2, values="discrete", support=[-1.0, 0.5, 2.0], probs=[0.2, 0.5, 0.3]),
    ),
    "m5_uniform_nobias": (
        dict(n=12, d=3, exponent=5, scale=0.9, bias=False),
        dict(p=0.3, values="uniform"),
    ),
}


def _exact_problem(case):
    margs, largs = EXACT_CASES[case]
    margs = dict(margs)
    n, d = margs.pop("n"), margs.pop("d")
    model = _model(n, d, "power", seed=hash_case(case), **margs)
    inputs = fs.SparseInputs(n, importance=_importance(n, hash_case(case)), **largs)
    return model, inputs


def _exact_values_group(case, backend="cpu"):
    model, inputs = _exact_problem(case)
    loss, gain = fs.exact_loss_and_gain(model, inputs, backend=backend)
    pf_loss, pf_gain = fs.exact_loss_and_gain(model, inputs, per_feature=True, backend=backend)
    return {
        "exact_loss": fs.exact_loss(model, inputs, backend=backend),
        "exact_gain": fs.exact_gain(model, inputs, backend=backend),
        "exact_loss_per_feature": fs.exact_loss(model, inputs, per_feature=True, backend=backend),
        "exact_gain_per_feature": fs.exact_gain(model, inputs, per_feature=True, backend=backend),
        "loss_and_gain.loss": loss,
        "loss_and_gain.gain": gain,
        "loss_and_gain.per_feature_loss": pf_loss,
        "loss_and_gain.per_feature_gain": pf_gain,
    }


def _exact_grad_group(case, backend="cpu"):
    model, inputs = _exact_problem(case)
    loss, dW, db = fs.exact_loss_grad(model, inputs, backend=backend)
    gain, gW, gb = fs.exact_gain_grad(model, inputs, backend=backend)
    loss2, dW2, db2 = fs.exact_loss_grad(model, inputs, wrt_bias=False, backend=backend)
    return {
        "loss_grad.loss": loss,
        "loss_grad.dW": dW,
        "loss_grad.db": db,
        "gain_grad.gain": gain,
        "gain_grad.dW": gW,
        "gain_grad.db": gb,
        "loss_grad_no_bias.loss": loss2,
        "loss_grad_no_bias.dW": dW2,
        "loss_grad_no_bias.db": db2,
    }


for _case in EXACT_CASES:
    _register(f"exact/values/{_case}", "cpu", _exact_values_group, _case)
    _register(f"exact/grad/{_case}", "cpu", _exact_grad_group, _case)

LAW_CASES = {
    "relu1_gaussian": (dict(activation="relu_power", exponent=1), dict(p=0.1)),
    "signed1.5_gaussian_pvec": (
        dict(activation="signed_power", exponent=1.5),
        dict(p=np.linspace(0.01, 0.3, 20)),
    ),
    "relu2_uniform": (dict(activation="relu_power", exponent=2), dict(p=0.2, values="uniform")),
    "relu0.5_uniform_sym": (
        dict(activation="relu_power", exponent=0.5),
        dict(p=0.1, values="uniform_sym"),
    ),
    "power3_discrete": (
        dict(activation="power", exponent=3),
        dict(p=0.15, values="discrete", support=[-1.0, 0.5, 2.0], probs=[0.2, 0.5, 0.3]),
    ),
    "signed1.5_rademacher_k3": (
        dict(activation="signed_power", exponent=1.5),
        dict(k=3, values="rademacher"),
    ),
    "power3_gaussian_float32": (
        dict(activation="power", exponent=3, dtype=np.float32),
        dict(p=0.05),
    ),
    "relu1_constant": (dict(activation="relu_power", exponent=1), dict(p=0.2, values="constant")),
}


def _law_problem(case, n=20, d=4):
    margs, largs = LAW_CASES[case]
    model = _model(n, d, seed=hash_case(case), scale=0.8, **margs)
    inputs = fs.SparseInputs(n, importance=_importance(n, hash_case(case)), **largs)
    return model, inputs


def _low_order_group(case):
    t = fs.low_order_terms(*_law_problem(case))
    m = t.mean_over_features()
    return {
        "p0": t.p0,
        "loss0": t.loss0,
        "gain0": t.gain0,
        "p1": t.p1,
        "loss1": t.loss1,
        "gain1": t.gain1,
        "p_ge2": t.p_ge2,
        "p_le1": t.p_le1,
        "lower_bound": t.lower_bound,
        "gain_le1": t.gain_le1,
        "mean_over_features.loss1": m.loss1,
        "mean_over_features.gain0": m.gain0,
    }


def _bounds_group(case):
    b = fs.loss_bounds(*_law_problem(case))
    return {
        "lower": b.lower,
        "upper": b.upper,
        "exact_part": b.exact_part,
        "upper_ge2": b.upper_ge2,
        "p_ge2": b.p_ge2,
        "value_bound": b.value_bound,
        "k_max": b.k_max,
        "tail": b.tail,
        "second_moment": b.second_moment,
        "upper_ge2_moments": b.upper_ge2_moments,
        "upper_ge2_sup": b.upper_ge2_sup,
        "gain_lower": b.gain_lower,
        "gain_upper": b.gain_upper,
    }


for _case in LAW_CASES:
    _register(f"low_order_terms/{_case}", "cpu", _low_order_group, _case)
    _register(f"loss_bounds/{_case}", "cpu", _bounds_group, _case)


# --------------------------------------------------------------------------
# fs.kernels from user code


@numba.njit
def user_kernels(model, imp, law, seed, first, n_samples, idx_out, val_out, xhat_out, gW, gb):
    """Samples ``first ..`` through every public kernel, as a user's own loop would."""
    n = law[0]
    idx = np.empty(n, np.int64)
    val = np.empty(n)
    xhat = np.empty(n)
    ks = np.empty(n_samples, np.int64)
    losses = np.empty(n_samples)
    grad_losses = np.empty(n_samples)
    for s in range(n_samples):
        k = fs.kernels.sample_one(law, seed, first + s, idx, val)
        ks[s] = k
        for q in range(n):
            idx_out[s, q] = idx[q] if q < k else -1
            val_out[s, q] = val[q] if q < k else 0.0
        fs.kernels.forward_one(model, idx, val, k, xhat_out[s])
        losses[s] = fs.kernels.loss_one(model, imp, idx, val, k, xhat)
        grad_losses[s] = fs.kernels.grad_one(model, imp, idx, val, k, xhat, gW, gb)
    return ks, losses, grad_losses


def _kernels_group(case, dtype):
    model, inputs, _ = _mc_problem(case, DTYPES[dtype])
    n, N = model.n, 40
    idx = np.empty((N, n), np.int64)
    val = np.empty((N, n))
    xhat = np.empty((N, n))
    gW = np.zeros((model.d, n))
    gb = np.zeros(n)
    ks, losses, grad_losses = user_kernels(
        fs.kernels.model_params(model), inputs.importance, fs.kernels.law_params(inputs),
        17, 100, N, idx, val, xhat, gW, gb,
    )  # fmt: skip
    return {
        "k": ks,
        "idx": idx,
        "val": val,
        "forward_one": xhat,
        "loss_one": losses,
        "grad_one.loss": grad_losses,
        "grad_one.gW": gW,
        "grad_one.gb": gb,
    }


_register("kernels/float64/relu1_gaussian", "cpu", _kernels_group, "relu1_gaussian", "float64")
_register("kernels/float32/signed1.5_discrete", "cpu", _kernels_group, "signed1.5_discrete",
          "float32")  # fmt: skip
_register("kernels/float64/power2_rademacher_pvec", "cpu", _kernels_group,
          "power2_rademacher_pvec", "float64")  # fmt: skip


# --------------------------------------------------------------------------
# theory and sweep


def _theory_group():
    t = fs.theory
    W = _rng(31).normal(size=(3, 9)) * 0.6
    W_best, gain = t.best_scale(W, 0.05, m=3, values="rademacher")
    orders = t.paper_orders(4, 3, 0.01)
    return {
        "unsuperposed_gain": t.unsuperposed_gain(9, 3, 3, 0.05, "gaussian"),
        "linear_optimum": t.linear_optimum(9, 3, 0.05, "uniform"),
        "best_scale.W": W_best,
        "best_scale.gain": gain,
        "optimal_norm": t.optimal_norm(W, 3, "gaussian"),
        "unsuperposed": t.unsuperposed(9, 3, 3, "gaussian"),
        "random_frame": t.random_frame(9, 3, 0.7, seed=5),
        "random_frame_best": t.random_frame_best(9, 3, 3, "gaussian", seed=5),
        "random_frame_norm": t.random_frame_norm(9, 3, 3, fs.ValueLaw("gaussian")),
        "equally_spaced_lines": t.equally_spaced_lines(7, 3, "gaussian"),
        "icosahedron_lines": t.icosahedron_lines(2, "constant"),
        "kappa": t.kappa(fs.ValueLaw("uniform_sym"), 3),
        "first_order_cap": t.first_order_cap(3, 3, fs.ValueLaw("gaussian"), 9),
        "first_order_objective": t.first_order_objective(W, fs.ValueLaw("gaussian"), 3),
        "sphere_dimension": t.sphere_dimension(3, 3),
        "paper_orders": np.array([float(orders[k]) for k in sorted(orders)]),
        "paper_orders.keys": sorted(orders),
    }


_register("theory/functions", "cpu", _theory_group)


def _sweep_group(kind, grid, fixed, seeds):
    res = fs.sweep(kind, grid, seeds=seeds, fixed=fixed, progress=False, executor="local")
    out = {"len": len(res)}
    for col in res.columns:
        if col in ("elapsed", "weights", "error"):
            continue
        vals = res[col]
        if vals.dtype.kind in "biuf":
            out[col] = np.ascontiguousarray(vals)
        else:
            out[col] = [str(x) for x in vals.tolist()]
    return out


_register("sweep/estimate", "cpu", _sweep_group, "estimate", {"p": [0.05, 0.2], "d": [2, 4]},
          {"n": 16, "n_samples": 3000, "exact": True, "block_size": 512}, (0, 1))  # fmt: skip
_register("sweep/exact", "cpu", _sweep_group, "exact", {"exponent": [1, 3], "values": ["gaussian",
          "uniform"]}, {"n": 12, "d": 3, "p": 0.1}, (0, 4))  # fmt: skip
_register("sweep/fit", "cpu", _sweep_group, "fit", {"p": [0.1, 0.5]},
          {"n": 6, "d": 2, "steps": 15, "batch_size": 32, "lr": 1e-2, "log_every": 5,
           "eval_samples": 1000}, (0,))  # fmt: skip


# --------------------------------------------------------------------------
# CUDA (simulator)

#: small runs: the simulator runs every CUDA thread as a Python thread
CUDA_SAMPLES, CUDA_BLOCK = 200, 64


def _cuda_estimate_group(case, dtype, path, per_feature=False):
    model, inputs, cargs = _mc_problem(case, DTYPES[dtype])
    est = fs.estimate_loss(model, inputs, CUDA_SAMPLES, cargs["seed"], path=path,
                           block_size=CUDA_BLOCK, per_feature=per_feature, backend="cuda",
                           start=cargs.get("start", 0))  # fmt: skip
    return estimate_fields(est)


def _cuda_loss_grad_group(case, dtype):
    model, inputs, cargs = _mc_problem(case, DTYPES[dtype])
    res = fs.loss_grad(model, inputs, CUDA_SAMPLES, cargs["seed"], block_size=CUDA_BLOCK,
                       start=cargs.get("start", 0), backend="cuda")  # fmt: skip
    return {"loss": res.loss, "dW": res.dW, "db": res.db}


def _cuda_fit_group():
    res = fs.fit(8, 2, n_instances=2, p=[0.5, 0.1], importance=0.9 ** np.arange(8), steps=3,
                 batch_size=32, lr=1e-2, log_every=1, seed=6, backend="cuda")  # fmt: skip
    return _fit_fields(res)


_register("cuda/estimate_loss/float64/relu1_gaussian/dense", "cudasim", _cuda_estimate_group,
          "relu1_gaussian", "float64", "dense")  # fmt: skip
_register("cuda/estimate_loss/float64/power2_rademacher_pvec/columns", "cudasim",
          _cuda_estimate_group, "power2_rademacher_pvec", "float64", "columns")  # fmt: skip
_register("cuda/estimate_loss/float32/relu1_gaussian/columns_per_feature", "cudasim",
          _cuda_estimate_group, "relu1_gaussian", "float32", "columns",
          per_feature=True)  # fmt: skip
_register("cuda/loss_grad/float64/relu1_gaussian", "cudasim", _cuda_loss_grad_group,
          "relu1_gaussian", "float64")  # fmt: skip
_register("cuda/exact/values/m3_gaussian_bias", "cudasim", _exact_values_group,
          "m3_gaussian_bias", backend="cuda")  # fmt: skip
_register("cuda/exact/grad/m2_discrete_float32", "cudasim", _exact_grad_group,
          "m2_discrete_float32", backend="cuda")  # fmt: skip
_register("cuda/fit/adam/float64/relu1_uniform_d2", "cudasim", _cuda_fit_group)


# --------------------------------------------------------------------------
# running and writing


def _target_cpu() -> str:
    """The CPU Numba compiles for: the host's, or ``NUMBA_CPU_NAME`` and ``NUMBA_CPU_FEATURES``."""
    import llvmlite.binding

    name = numba.config.CPU_NAME or llvmlite.binding.get_host_cpu_name()
    features = numba.config.CPU_FEATURES
    return name if features is None else f"{name} {features}"


def environment() -> dict:
    """The versions and machine the pins belong to.

    Where the code generation differs (:data:`test_pins.CODEGEN_KEYS`), the
    tests compare floats within a tolerance instead of bit for bit.
    """
    import llvmlite
    import llvmlite.binding
    import scipy
    import threadpoolctl

    blas = sorted(
        f"{i['internal_api']} {i['version']} {i.get('architecture')}"
        for i in threadpoolctl.threadpool_info()
        if i["user_api"] == "blas"
    )
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "numba": numba.__version__,
        "llvmlite": llvmlite.__version__,
        "machine": platform.machine(),
        "cpu": _target_cpu(),
        "blas": ", ".join(blas),
        "fastsuper": fs.__version__,
    }


def local_client():
    """A Dask client on two single-threaded worker processes (as in tests/test_dask.py)."""
    import distributed

    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        scheduler_kwargs={"dashboard_address": ":0"},
        env={"NUMBA_NUM_THREADS": "1"},
    )
    return cluster, distributed.Client(cluster)


def compute(kinds, prefixes=None) -> dict:
    """``{group: {"kind": kind, "fields": encoded fields}}`` for the groups of ``kinds``.

    ``prefixes``: only the groups whose names start with one of them (default all).
    """
    out = {}
    cluster = client = None
    try:
        for name, (kind, func) in GROUPS.items():
            if kind not in kinds or (prefixes and not name.startswith(tuple(prefixes))):
                continue
            if kind == "dask":
                if client is None:
                    cluster, client = local_client()
                fields = func(client)
            else:
                fields = func()
            out[name] = {"kind": kind, "fields": encode_fields(fields)}
            print(f"  {name}", file=sys.stderr)
    finally:
        if client is not None:
            client.close()
            cluster.close()
    return out


def _in_subprocess(kinds, cudasim: bool, prefixes=None) -> dict:
    """The groups of ``kinds`` (and ``prefixes``) computed by this script in a fresh process."""
    env = dict(os.environ)
    if cudasim:
        env["NUMBA_ENABLE_CUDASIM"] = "1"
    only = ["--groups", ",".join(prefixes)] if prefixes else []
    proc = subprocess.run(
        [sys.executable, __file__, "--kinds", ",".join(sorted(kinds)), "--output", "-",
         "--no-warm-up", *only],
        env=env,
        check=True,
        stdout=subprocess.PIPE,
    )  # fmt: skip
    return json.loads(proc.stdout)["groups"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--kinds",
        default="cpu,dask,cudasim",
        help="comma-separated kinds of groups to compute (default: all)",
    )
    parser.add_argument(
        "--output",
        default=str(PINS_PATH),
        help="file to write, '-' for stdout (default: tests/data/pins.json)",
    )
    parser.add_argument(
        "--no-warm-up",
        action="store_true",
        help="compute at once, without first filling Numba's cache",
    )
    parser.add_argument(
        "--groups",
        default="",
        metavar="PREFIX,...",
        help="recompute only the groups whose names start with one of these prefixes and keep "
        "the others from the file (default: every group of --kinds)",
    )
    args = parser.parse_args(argv)
    kinds = set(args.kinds.split(","))
    prefixes = [x for x in args.groups.split(",") if x]
    here = kinds if numba.config.ENABLE_CUDASIM else kinds - {"cudasim"}
    if here and not args.no_warm_up:
        # The pins are the numbers of kernels loaded from Numba's cache (what every run but
        # the first one after a change computes; see tests/test_pins.py): a first pass in
        # another process compiles and caches every kernel.
        print("filling Numba's cache (a first pass in a subprocess)", file=sys.stderr)
        _in_subprocess(here, bool(numba.config.ENABLE_CUDASIM), prefixes)
    groups = compute(here, prefixes)
    if "cudasim" in kinds and not numba.config.ENABLE_CUDASIM:
        if not args.no_warm_up:
            _in_subprocess({"cudasim"}, True, prefixes)
        groups.update(_in_subprocess({"cudasim"}, True, prefixes))
    path = None if args.output == "-" else Path(args.output)
    old = json.loads(path.read_text())["groups"] if path is not None and path.exists() else {}
    merged = {**old, **groups}
    groups = {name: merged[name] for name in GROUPS if name in merged}
    doc = {"format": FORMAT, "environment": environment(), "groups": groups}
    text = json.dumps(doc, indent=1) + "\n"
    if path is None:
        sys.stdout.write(text)
        return 0
    changed = sorted(g for g in groups if g in old and old[g] != groups[g])
    new = sorted(set(groups) - set(old))
    gone = sorted(set(old) - set(groups))
    for label, names in (("changed", changed), ("new", new), ("removed", gone)):
        for g in names:
            print(f"{label}: {g}", file=sys.stderr)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(f"wrote {len(groups)} groups to {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
