"""The pinned numbers of the public API, compared bit for bit with ``tests/data/pins.json``.

Each group of :mod:`pins_make` (``tests/pins_make.py``, whose docstring
lists what is pinned) is one test: it is recomputed through the public API
and every field must have the same bits as the stored one, or the test fails
with the old and the new value.  A change of internals (modules moved,
kernels given other arguments) must pass this test unchanged.  The file is
regenerated with ``python tests/pins_make.py`` only when numbers are meant
to change, and the change is stated in the changelog.

One exception, measured: the Welford statistics of the CPU Monte-Carlo
kernels.  These are fastmath kernels (``reassoc``, ``contract``, ``arcp``),
and the same kernel compiled afresh in a process and loaded from Numba's
cache in a later process gives per-block Welford means and sums of squares
that differ in the last bit (the compiler's choices about fused
multiply-adds and reassociation are not the same in the two cases; see the
Dask backend's notes).  So ``mean``, ``stderr``, ``gain_mean``,
``gain_stderr`` and ``mean_over_features`` of the CPU estimates -- naive and
stratified, hence also those of ``fs.check`` (and its ``z``) and of
``fs.sweep("estimate")`` -- can differ between a first run with an empty
Numba cache and every later run.  Measured on these pins: 14 of the 295
values concerned differ, each by 1 ulp, the same with 1 and 2 Numba threads;
nothing else differs.  For those fields alone the comparison allows
:data:`ULPS` units in the last place (the cause is in the kernels, not in
the inputs, so the whole class of fields gets it, not only the 14 seen).
Everything else -- samples, forward passes, per-feature estimates,
gradients, fits, exact values, bounds, the Dask and simulator results -- is
compared exactly.  The pins are the numbers of the cached kernels (what
every run but the first after a change of the package computes).

Bit for bit holds in the environment the pins were made in
(``environment`` in the file: the CPU model that LLVM compiles for, the
versions of Python, NumPy, SciPy, Numba, llvmlite and the BLAS).  In another
one the compiler vectorises and fuses the fastmath reductions differently,
and sums come out with other round-off: measured with pins made on an Intel
``emeraldrapids`` and run on an AMD ``znver4``, 19 of the 119 groups
differ, by at most 1.3e-15 relative in float64 and 9e-8 in float32 (within a
few units in the last place of the compute dtype); the samples, and every
integer, do not change.  Compiled for Haswell (``NUMBA_CPU_NAME`` and
``NUMBA_CPU_FEATURES``: AVX2, so the scalar forms of the smooth activations
instead of the AVX-512 loops) on that AMD host, every float stays within
3.5e-16 (float64) and 2.5e-8 (float32) of its array's largest stored element.
So in another environment every float is compared within
:data:`CROSS_RTOL` of its size (of the largest stored element, for an
element of an array), and integers, booleans, strings and shapes exactly:
a change of the maths still fails, the compiler's round-off passes.  The
failure message names the environment that differs.
"""

from __future__ import annotations

import functools
import json
import math
import sys

import numba
import numpy as np
import pins_make as pm
import pytest

PINS = json.loads(pm.PINS_PATH.read_text())

#: units in the last place allowed for the fields of :data:`UNSTABLE_FIELDS` (measured: 1)
ULPS = 4

#: group prefixes whose scalar Monte-Carlo statistics come out of the CPU fastmath Welford
#: update (cold and cached compiles differ in their last bits: see the module docstring),
#: with the fields concerned
_WELFORD = ("mean", "stderr", "gain_mean", "gain_stderr", "mean_over_features")
UNSTABLE_FIELDS = {
    "estimate_loss/naive/": _WELFORD,
    "estimate_loss/auto/": _WELFORD,
    "estimate_loss/stratified/": _WELFORD,
    "check/": (*_WELFORD, "z"),
    "sweep/estimate": ("loss", "stderr", "gain", "gain_stderr"),
}


#: relative tolerance of a float pinned in another environment (see the module docstring),
#: for groups computed in float64 and in float32 (their names say ``float32``)
CROSS_RTOL = {"float64": 1e-12, "float32": 1e-5}

#: keys of the pins' ``environment`` that decide what the compiler emits (not the package's version)
CODEGEN_KEYS = ("python", "numpy", "scipy", "numba", "llvmlite", "machine", "cpu", "blas")


def same_environment(then: dict, now: dict) -> bool:
    """Whether the pins were made where the kernels compile to the same code as here."""
    return all(then.get(k) == now.get(k) for k in CODEGEN_KEYS)


def cross_rtol(group: str) -> float:
    """:data:`CROSS_RTOL` of ``group`` (float32 where its name says so)."""
    return CROSS_RTOL["float32" if "float32" in group else "float64"]


def _unstable(group: str, field: str) -> bool:
    return any(group.startswith(p) and field in f for p, f in UNSTABLE_FIELDS.items())


# --------------------------------------------------------------------------
# comparison


def _ulp(x: float) -> float:
    return math.ulp(abs(x)) if math.isfinite(x) else math.inf


def _ulps_apart(a: float, b: float) -> str:
    if not (math.isfinite(a) and math.isfinite(b)) or a == b:
        return ""
    return f", {abs(a - b) / _ulp(max(abs(a), abs(b))):.3g} ulp apart"


def _show(tagged: dict) -> str:
    """A tagged value (see pins_make.encode) for a message."""
    if "float" in tagged:
        x = float.fromhex(tagged["float"])
        return f"{x!r} ({tagged['float']}{', float32' if 'dtype' in tagged else ''})"
    if "array" in tagged:
        a = tagged["array"]
        return f"array {a['dtype']} {tuple(a['shape'])} sha256 {a['sha256'][:16]}"
    (key, value), *_ = tagged.items()
    return f"{key} {value!r}"


def _array_lines(old: dict, new: dict) -> list[str]:
    """The stored elements and sums of two arrays, side by side."""
    lines = []
    new_at = dict((i, v) for i, v in new["at"])
    for i, v in old["at"]:
        w = new_at.get(i)
        mark = "" if v == w else "   <- differs"
        if i not in new_at:
            lines.append(f"      [{i}] old {v!r}  new (not stored){mark}")
        elif isinstance(v, str) and isinstance(w, str):
            x, y = float.fromhex(v), float.fromhex(w)
            lines.append(f"      [{i}] old {x!r} ({v})  new {y!r} ({w}){_ulps_apart(x, y)}{mark}")
        else:
            lines.append(f"      [{i}] old {v!r}  new {w!r}{mark}")
    if "fsum" in old and "fsum" in new:
        x, y = float.fromhex(old["fsum"]), float.fromhex(new["fsum"])
        lines.append(f"      sum old {x!r}  new {y!r}{_ulps_apart(x, y)}")
    return lines


def _within_ulps(old: dict, new: dict, field: str, old_fields: dict) -> bool:
    """``new`` within :data:`ULPS` ulps of ``old`` (for :func:`_unstable` fields only)."""
    if "float" in old and "float" in new:
        x, y = float.fromhex(old["float"]), float.fromhex(new["float"])
        tol = ULPS * _ulp(x)
        if field == "z":  # (mean - reference) / stderr: the ulps of mean, magnified
            mean = float.fromhex(old_fields["mean"]["float"])
            stderr = float.fromhex(old_fields["stderr"]["float"])
            tol += ULPS * _ulp(mean) / stderr + ULPS * abs(x) * _ulp(stderr) / stderr
        return abs(x - y) <= tol
    if "array" in old and "array" in new:
        a, b = old["array"], new["array"]
        if (a["dtype"], a["shape"]) != (b["dtype"], b["shape"]) or a["dtype"][1] != "f":
            return False
        if len(a["at"]) != math.prod(a["shape"]):  # not every element stored: no tolerance
            return False
        for (i, v), (j, w) in zip(a["at"], b["at"]):
            x, y = float.fromhex(v), float.fromhex(w)
            if i != j or not (x == y or abs(x - y) <= ULPS * _ulp(x)):
                return False
        return True
    return False


def _within_rtol(old: dict, new: dict, field: str, old_fields: dict, rtol: float) -> bool:
    """``new`` within ``rtol`` of ``old``: floats relative to their size, the rest exactly.

    A scalar within ``rtol`` of the larger magnitude (``z``, a ratio of
    Monte-Carlo statistics, within ``rtol`` of the terms it is made of); an
    array of the same dtype and shape with every stored element within
    ``rtol`` of the largest stored magnitude, and its sum within ``rtol``
    times that magnitude times its size.  Only floats get a tolerance.
    """
    if "float" in old and "float" in new:
        x, y = float.fromhex(old["float"]), float.fromhex(new["float"])
        if math.isnan(x) or math.isnan(y) or math.isinf(x) or math.isinf(y):
            return x == y or (math.isnan(x) and math.isnan(y))
        scale = max(abs(x), abs(y))
        if field == "z":
            mean = float.fromhex(old_fields["mean"]["float"])
            stderr = float.fromhex(old_fields["stderr"]["float"])
            scale += abs(mean) / stderr
        return abs(x - y) <= rtol * scale
    if "array" in old and "array" in new:
        a, b = old["array"], new["array"]
        if (a["dtype"], a["shape"]) != (b["dtype"], b["shape"]) or a["dtype"][1] != "f":
            return False
        if [i for i, _ in a["at"]] != [j for j, _ in b["at"]]:
            return False
        xs = [float.fromhex(v) for _, v in a["at"]]
        ys = [float.fromhex(w) for _, w in b["at"]]
        finite = [abs(x) for x in xs if math.isfinite(x)]
        scale = max(finite, default=0.0)
        for x, y in zip(xs, ys):
            if not (math.isfinite(x) and math.isfinite(y)):
                if not (x == y or (math.isnan(x) and math.isnan(y))):
                    return False
            elif abs(x - y) > rtol * max(abs(x), abs(y), scale):
                return False
        sx, sy = float.fromhex(a["fsum"]), float.fromhex(b["fsum"])
        if not (math.isfinite(sx) and math.isfinite(sy)):
            return sx == sy or (math.isnan(sx) and math.isnan(sy))
        return abs(sx - sy) <= rtol * max(abs(sx), scale * math.prod(a["shape"]))
    return False


def compare(group: str, old_fields: dict, new_fields: dict, rtol: float | None = None) -> list[str]:
    """Messages for every field of ``group`` whose value changed (empty: all the same).

    ``rtol``: pins of another environment, compared by :func:`_within_rtol`
    (``None``: bit for bit, but for :func:`_unstable` fields).
    """
    problems = []
    for field in sorted(set(old_fields) | set(new_fields)):
        if field not in new_fields:
            problems.append(f"  {field}: pinned but no longer computed")
            continue
        if field not in old_fields:
            problems.append(f"  {field}: computed but not pinned (regenerate the pins)")
            continue
        old, new = old_fields[field], new_fields[field]
        if old == new:
            continue
        if _unstable(group, field) and _within_ulps(old, new, field, old_fields):
            continue
        if rtol is not None and _within_rtol(old, new, field, old_fields, rtol):
            continue
        lines = [f"  {field}:", f"    old {_show(old)}", f"    new {_show(new)}"]
        if "float" in old and "float" in new:
            x, y = float.fromhex(old["float"]), float.fromhex(new["float"])
            d = _ulps_apart(x, y)
            lines.append(f"    difference {y - x!r}{d}" if d else "    (bits differ)")
        elif "array" in old and "array" in new:
            a, b = old["array"], new["array"]
            if (a["dtype"], a["shape"]) != (b["dtype"], b["shape"]):
                lines.append("    dtype or shape differs")
            lines.extend(_array_lines(a, b))
        if rtol is not None:
            lines.append(f"    (allowed: {rtol:g} relative, pins of another environment)")
        elif _unstable(group, field):
            lines.append(f"    (allowed: {ULPS} ulp, a fastmath Welford statistic)")
        problems.extend(lines)
    return problems


def _environment_note() -> str:
    then, now = PINS["environment"], pm.environment()
    diff = [
        f"{k}: pinned with {then.get(k)!r}, now {now.get(k)!r}"
        for k in now
        if then.get(k) != now.get(k)
    ]
    if not diff:
        return ""
    return "\nThe pins were made in another environment:\n  " + "\n  ".join(diff)


@functools.cache
def _pinned_here() -> bool:
    return same_environment(PINS["environment"], pm.environment())


def check_group(name: str, fields: dict) -> None:
    if name not in PINS["groups"]:
        pytest.fail(f"{name} is not pinned: regenerate tests/data/pins.json (see pins_make.py)")
    stored = PINS["groups"][name]
    rtol = None if _pinned_here() else cross_rtol(name)
    problems = compare(name, stored["fields"], pm.encode_fields(fields), rtol)
    if problems:
        pytest.fail(
            f"pinned results of {name} changed:\n" + "\n".join(problems) + _environment_note(),
            pytrace=False,
        )


def _names(kind: str) -> list[str]:
    return [name for name, (k, _) in pm.GROUPS.items() if k == kind]


# --------------------------------------------------------------------------
# the tests


def test_every_pinned_group_is_computed():
    """The file and pins_make.GROUPS name the same groups, of the same kinds."""
    stored = {name: g["kind"] for name, g in PINS["groups"].items()}
    made = {name: kind for name, (kind, _) in pm.GROUPS.items()}
    assert stored == made


def _perturbed(fields: dict, rel: float) -> dict:
    """``fields`` with every float scaled by ``1 + rel``, encoded."""
    out = {}
    for k, v in fields.items():
        if isinstance(v, np.ndarray) and v.dtype.kind == "f":
            v = v * (1.0 + rel)
        elif isinstance(v, float):
            v = v * (1.0 + rel)
        out[k] = v
    return pm.encode_fields(out)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_pins_of_another_environment_allow_round_off_only(dtype):
    """The cross-environment comparison: round-off passes, a change of the maths fails."""
    group = f"loss_grad/{dtype}/example"
    rtol = cross_rtol(group)
    rng = np.random.default_rng(0)
    fields = {"dW": rng.normal(size=(4, 300)), "loss": 0.37, "count": 5,
              "small": np.array([1.0, 1e-20, -2.0])}  # fmt: skip
    old = pm.encode_fields(fields)
    assert compare(group, old, old, None) == []
    # a few units in the last place of the compute dtype: allowed across environments only
    ulps = 3 * float(np.finfo(dtype).eps)
    assert compare(group, old, _perturbed(fields, ulps), rtol) == []
    assert compare(group, old, _perturbed(fields, ulps), None) != []
    # an element near zero moves by round-off of the array's scale: allowed
    near = dict(fields, small=np.array([1.0, 1e-20 + ulps, -2.0]))
    assert compare(group, old, pm.encode_fields(near), rtol) == []
    # beyond the tolerance, an integer, or a shape: a failure naming the field
    for new in (
        _perturbed(fields, 10 * rtol),
        pm.encode_fields(dict(fields, count=6)),
        pm.encode_fields(dict(fields, dW=fields["dW"][:, :299])),
        pm.encode_fields(dict(fields, loss=float("nan"))),
    ):
        problems = compare(group, old, new, rtol)
        assert problems and "relative, pins of another environment" in "\n".join(problems)


def test_same_environment_ignores_the_package_version_only():
    env = pm.environment()
    assert same_environment(env, dict(env, fastsuper="9.9"))
    for key in CODEGEN_KEYS:
        assert not same_environment(env, dict(env, **{key: "other"}))


@pytest.mark.parametrize("name", _names("cpu"))
def test_pinned(name):
    check_group(name, pm.GROUPS[name][1]())


@pytest.fixture(scope="module")
def dask_client():
    pytest.importorskip("distributed")
    cluster, client = pm.local_client()
    with cluster, client:
        yield client


@pytest.mark.parametrize("name", _names("dask"))
def test_pinned_dask(name, dask_client):
    check_group(name, pm.GROUPS[name][1](dask_client))


def _simulator() -> bool:
    if not numba.config.ENABLE_CUDASIM:
        return False
    try:
        from numba import cuda

        return bool(cuda.is_available())
    except Exception:  # numba-cuda missing or broken
        return False


@pytest.fixture
def _fast_switches():
    """The simulator runs CUDA threads as Python threads and polls: switch often."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(old)


@pytest.mark.cudasim
@pytest.mark.skipif(
    not _simulator(),
    reason="pinned on the CUDA simulator: needs NUMBA_ENABLE_CUDASIM=1 and numba-cuda "
    "(a real GPU's numbers are not pinned)",
)
@pytest.mark.parametrize("name", _names("cudasim"))
def test_pinned_cudasim(name, _fast_switches):
    check_group(name, pm.GROUPS[name][1]())
