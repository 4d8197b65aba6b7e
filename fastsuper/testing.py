"""Handles on fastsuper's internals, for fastsuper's own tests and for extension authors.

Everything here is an internal of some subpackage (a tunable, a kernel, the
path cost model, a backend entry point, a table of the stratified sampler),
re-exported under one stable import so that tests need neither the
package's module layout nor any private (underscore) name.  Nothing here is
covered by API stability: names come and go with the internals they point
at.  The public API is :mod:`fastsuper` (its ``__all__``) and the modules
documented in the API reference.

``import fastsuper.testing`` does not import :mod:`numba.cuda` or Dask: the
CUDA backends (``sample_cuda``, ``estimate_loss_cuda``,
``exact_power_sums_cuda``) are imported on first access, and are left out
of ``__all__`` so that a star import does not import them.

Tunables
--------
config
    :mod:`fastsuper.core.config`, the module of every tunable (tile sizes,
    thread counts per CUDA block, chunk sizes); tests patch its attributes,
    e.g. ``monkeypatch.setattr(T.config, "MC_THREADS", 4)``.

Core
----
ACTIVATIONS, phi, dphi
    Activation codes and the per-element ``@njit`` activation and derivative.
Activation, activation, input_law
    The parameter bundles of the kernels and their builders.
simulator, require_cuda, to_device_array
    CUDA support: whether the CUDA simulator runs the kernels, the checked
    import of :mod:`numba.cuda`, device copies.
TooLargeError, machine_memory, progress_bar, progress_enabled
    The refusal of a request beyond the machine's memory, that memory, and
    the progress bars of long calls.
patch_cuda_import
    Replace the import of :mod:`numba.cuda` made by ``require_cuda``.

Monte Carlo
-----------
choose_path, path_shape, path_operand, gram
    The path cost model and the operands of the kernels.
run_blocks
    The CPU backend's block statistics.
column_panels, aligned, ST_LOSS_MEAN, ST_LOSS_M2
    Kernel helpers and the columns of the per-block statistics.
mc_blocks, PATH_COLUMNS
    The Monte-Carlo block kernel (naive and stratified samples) and a path code.
K_TAIL, MODE_BINOM, MODE_PLAIN, MODE_SEQ, binom_ge2_cdf
    The stratified sampler's tables and modes.
StratifiedSampler, sample_ge2, stratified_estimate
    The stratified estimator.
default_chunk_size, dask_plan, patch_cpu_count, guarded_by_main
    The Dask backend: its chunking, a planned run (``submit``, ``collect``),
    the CPU count it sizes a local cluster by, and the ``__main__``-guard test
    of the scripts that start one.
run_memory
    The memory a Monte-Carlo run allocates (estimated before it runs).
sample_cuda, estimate_loss_cuda
    The CUDA backend (imported on first access).

Exact values
------------
binomials, cumulants_from_moments, moments_from_cumulants, exact_forward
    The moment and cumulant algebra of the closed forms (THEORY §3).
exact_power_sums, exact_grad_w
    The CPU kernels of the closed forms.
exact_power_sums_cuda
    Their CUDA counterpart (imported on first access).
k1_conditional_loss
    The loss given exactly one active feature (THEORY §4).
grouped_reference
    The grouped closed form (THEORY §8) in NumPy: the compiled kernel's reference.

Training
--------
instance_seed, initial_weights
    The seeds and starting weights of ``fit``'s instances.

Applications
------------
figure3, figure3_settings, capacity
    The paper's experiments (``fastsuper reproduce``).
cli_default_norm
    The command line's default column norm of random starting weights.
"""

from __future__ import annotations

from fastsuper.apps.cli import default_norm as cli_default_norm
from fastsuper.apps.reproduce import capacity, figure3, figure3_settings
from fastsuper.core import config
from fastsuper.core import cuda as core_cuda
from fastsuper.core.activations import ACTIVATIONS, dphi, phi
from fastsuper.core.bundles import Activation, activation, input_law
from fastsuper.core.cuda import require_cuda, simulator, to_device_array
from fastsuper.core.progress import progress_bar, progress_enabled
from fastsuper.core.validation import TooLargeError, machine_memory

# private at their home module (they are to be made public there)
from fastsuper.exact.api import binomials, cumulants_from_moments, moments_from_cumulants
from fastsuper.exact.api import forward_terms as exact_forward
from fastsuper.exact.grouped import grouped_reference
from fastsuper.exact.kernels_cpu import exact_grad_w, exact_power_sums
from fastsuper.exact.low_order import k1_conditional_loss
from fastsuper.mc import dask as mc_dask
from fastsuper.mc.common import run_memory
from fastsuper.mc.cpu import run_blocks
from fastsuper.mc.dask import default_chunk_size, guarded_by_main
from fastsuper.mc.dask import plan_run as dask_plan
from fastsuper.mc.kernels_cpu import (
    PATH_COLUMNS,
    ST_LOSS_M2,
    ST_LOSS_MEAN,
    aligned,
    column_panels,
    mc_blocks,
)
from fastsuper.mc.kernels_stratified import (
    K_TAIL,
    MODE_BINOM,
    MODE_PLAIN,
    MODE_SEQ,
    binom_ge2_cdf,
)
from fastsuper.mc.paths import choose_path, gram, path_operand, path_shape
from fastsuper.mc.stratified import StratifiedSampler, sample_ge2, stratified_estimate
from fastsuper.train.adam import initial_weights, instance_seed

__all__ = [
    "ACTIVATIONS",
    "Activation",
    "PATH_COLUMNS",
    "K_TAIL",
    "MODE_BINOM",
    "MODE_PLAIN",
    "MODE_SEQ",
    "ST_LOSS_M2",
    "ST_LOSS_MEAN",
    "StratifiedSampler",
    "TooLargeError",
    "aligned",
    "binom_ge2_cdf",
    "binomials",
    "grouped_reference",
    "capacity",
    "choose_path",
    "cli_default_norm",
    "column_panels",
    "config",
    "cumulants_from_moments",
    "dask_plan",
    "default_chunk_size",
    "activation",
    "dphi",
    "input_law",
    "mc_blocks",
    "exact_forward",
    "exact_grad_w",
    "exact_power_sums",
    "figure3",
    "figure3_settings",
    "gram",
    "guarded_by_main",
    "initial_weights",
    "instance_seed",
    "k1_conditional_loss",
    "machine_memory",
    "moments_from_cumulants",
    "patch_cpu_count",
    "patch_cuda_import",
    "path_operand",
    "path_shape",
    "phi",
    "progress_bar",
    "progress_enabled",
    "require_cuda",
    "run_blocks",
    "run_memory",
    "sample_ge2",
    "simulator",
    "stratified_estimate",
    "to_device_array",
]


def patch_cuda_import(monkeypatch, importer) -> None:
    """Make ``require_cuda`` (and so every CUDA entry point) import numba.cuda with ``importer``.

    Parameters
    ----------
    monkeypatch : pytest.MonkeyPatch
        Undoes the change at the end of the test.
    importer : callable
        Called with no argument; returns the :mod:`numba.cuda` module or
        raises, as a missing or broken numba-cuda would.
    """
    monkeypatch.setattr(core_cuda, "_import_cuda", importer)  # private at its home module


def patch_cpu_count(monkeypatch, counter) -> None:
    """Make the Dask backend size a local cluster by ``counter()`` CPUs.

    Parameters
    ----------
    monkeypatch : pytest.MonkeyPatch
        Undoes the change at the end of the test.
    counter : callable
        Called with no argument; returns the number of usable CPUs.
    """
    monkeypatch.setattr(mc_dask, "_cpu_count", counter)  # private at its home module


def __getattr__(name: str):
    """The CUDA backends, imported on first access (they import numba.cuda)."""
    if name in ("sample_cuda", "estimate_loss_cuda"):
        from fastsuper.mc import cuda as mc_cuda

        return getattr(mc_cuda, name)
    if name == "exact_power_sums_cuda":
        from fastsuper.exact.cuda import exact_power_sums_cuda

        return exact_power_sums_cuda
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
