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
"""

from __future__ import annotations

import json
import math
import sys

import numba
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
        w = new_at.get(i, "(not stored)")
        mark = "" if v == w else "   <- differs"
        if isinstance(v, str) and isinstance(w, str):
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


def compare(group: str, old_fields: dict, new_fields: dict) -> list[str]:
    """Messages for every field of ``group`` whose value changed (empty: all the same)."""
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
        if _unstable(group, field):
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


def check_group(name: str, fields: dict) -> None:
    if name not in PINS["groups"]:
        pytest.fail(f"{name} is not pinned: regenerate tests/data/pins.json (see pins_make.py)")
    stored = PINS["groups"][name]
    problems = compare(name, stored["fields"], pm.encode_fields(fields))
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
