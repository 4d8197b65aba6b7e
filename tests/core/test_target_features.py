"""The explicit AVX-512 loops follow the CPU Numba compiles for, not only the host's."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from llvmlite import binding as llvm_binding

from fastsuper.core import vecmath

#: Haswell's features (AVX2 and FMA, no AVX-512), as NUMBA_CPU_FEATURES spells them
HASWELL = (
    "+64bit,+avx,+avx2,+bmi,+bmi2,+cmov,+cx16,+f16c,+fma,+fsgsbase,+fxsr,+lzcnt,+mmx,+movbe,"
    "+pclmul,+popcnt,+rdrnd,+sahf,+sse,+sse2,+sse3,+sse4.1,+sse4.2,+ssse3,+xsave,+xsaveopt"
)


@pytest.mark.parametrize(
    "features,expected",
    [
        (HASWELL, False),
        (HASWELL + ",+avx512f", True),
        ("+avx512f,+avx512dq,-avx512f", False),  # the last mention counts
        ("-avx512f,+avx512f", True),
        ("+avx512fp16", False),  # another feature of the same prefix
        ("", False),
    ],
)
def test_target_has_reads_numba_cpu_features(monkeypatch, features, expected):
    monkeypatch.setattr(vecmath.numba_config, "CPU_FEATURES", features)
    assert vecmath.target_has("avx512f") is expected


def test_target_has_defaults_to_the_host(monkeypatch):
    monkeypatch.setattr(vecmath.numba_config, "CPU_FEATURES", None)
    host = bool(llvm_binding.get_host_cpu_features().get("avx512f", False))
    assert vecmath.target_has("avx512f") is host


_SCRIPT = """
import numpy as np
import fastsuper as fs
from fastsuper.core import sparse_rows, vecmath
m = fs.Model(np.random.default_rng(0).normal(size=(5, 40)) * 0.3, np.zeros(40), activation="gelu")
r = fs.estimate_loss(m, fs.SparseInputs(40, p=0.1), n_samples=3000, seed=1)
f = fs.fit(60, 6, p=[0.35, 0.9], n_instances=2, steps=5, batch_size=256, seed=2, progress=False)
print(vecmath.AVAILABLE, sparse_rows.COMPRESS, r.mean.hex(), f.loss_history[-1, 0].hex())
"""


@pytest.mark.parametrize(
    "target",
    [
        {"NUMBA_CPU_NAME": "haswell", "NUMBA_CPU_FEATURES": HASWELL},
        {"NUMBA_CPU_NAME": "generic"},  # Numba's portable caches: no features at all
    ],
    ids=["haswell", "generic"],
)
def test_a_target_without_avx512_compiles_and_agrees(tmp_path, target):
    """Compiled for an older CPU on any host (a fresh cache): no abort, the same numbers.

    The vector forms (AVX-512) and the scalar forms of gelu agree within a
    few ulp per element, so the two estimates agree far within 1e-12.  A short
    ``fit`` whose first instance takes the sparse-row path with wide rows (the
    places of its inputs listed one at a time there, eight at a time with
    AVX-512) agrees to round-off in its sums.
    """
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path), NUMBA_NUM_THREADS="1")
    env.pop("NUMBA_CPU_FEATURES", None)
    env.update(target)
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT], env=env, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-2000:]
    available, compress, mean, loss = out.stdout.split()
    assert available == "False" and compress == "False"
    here = subprocess.run(
        [sys.executable, "-c", _SCRIPT],
        env=dict(os.environ, NUMBA_NUM_THREADS="1"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert here.returncode == 0, here.stderr[-2000:]
    ref, ref_loss = (float.fromhex(x) for x in here.stdout.split()[2:])
    assert float.fromhex(mean) == pytest.approx(ref, rel=1e-12)
    assert float.fromhex(loss) == pytest.approx(ref_loss, rel=1e-9)
