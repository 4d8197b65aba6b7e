"""The Makefile's install steps, read with ``make -n`` (nothing is installed or run).

``make demo`` installs the package alone (no test extras, no numba-cuda); ``make test``
installs the test extras and the ``cuda`` extra (numba-cuda, for the CUDA simulator
tests); pip runs with ``-qq`` (errors only) everywhere.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def _dry_run(target: str, tmp_path: Path) -> list[str]:
    """The commands ``make -n target`` would run in a fresh clone (no .venv yet)."""
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    # a clean environment: under `make test` the inherited MAKEFLAGS/MAKELEVEL would make
    # the inner make print "Entering/Leaving directory" lines
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    out = subprocess.run(
        ["make", "--no-print-directory", "-n", target],
        cwd=tmp_path, capture_output=True, text=True, check=True, timeout=60, env=env,
    )  # fmt: skip
    return out.stdout.splitlines()


def _pip_installs(lines: list[str]) -> list[str]:
    return [line for line in lines if "pip install" in line]


def test_demo_installs_the_package_alone_quietly(tmp_path):
    lines = _dry_run("demo", tmp_path)
    installs = _pip_installs(lines)
    assert installs and all(" -qq " in line for line in installs)
    assert not [line for line in installs if "[" in line]  # no extra: no cuda, no test tools
    assert any(line.endswith("-e .") for line in installs)
    assert lines[-1].endswith("fastsuper estimate")


def test_test_target_installs_the_test_and_cuda_extras_quietly(tmp_path):
    installs = _pip_installs(_dry_run("test", tmp_path))
    assert installs and all(" -qq " in line for line in installs)
    assert any('".[test]"' in line for line in installs)
    assert any('".[cuda]"' in line for line in installs)
