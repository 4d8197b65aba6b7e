"""fastsuper: compiled kernels for the loss of toy superposition autoencoders.

The model is ``x_hat = phi(W.T @ W @ x + b)`` on sparse random inputs; see
``THEORY.md`` (the docs' theory page) for every formula.

Main entry points
-----------------
SparseInputs, ValueLaw, sample
    The input law and its counter-based sampler.
Model, forward
    The autoencoder and its forward pass.
estimate_loss
    Monte-Carlo loss and gain (fused, parallel, deterministic).
exact_loss, exact_gain, exact_loss_grad
    Closed forms (and exact gradients) for ``power`` activations.
ExactEvaluator
    The exact loss, gain and gradients prepared once for many weights (optimisers).
low_order_terms
    Exact k = 0 and k = 1 terms (any activation): a rigorous lower bound.
loss_bounds
    Rigorous lower (any law) and upper (bounded laws) bounds of the loss.
check
    Monte Carlo against the exact value (or the bounds).
theory
    Bounds and extremal constructions of THEORY §5 (``fastsuper.theory``).
geometry
    Feature dimensionalities, tegum factors and polytopes (``fastsuper.geometry``).
fit, fit_exact, loss_grad
    Training: Adam over many instances (sampled gradients), L-BFGS on the
    exact loss of power models.
sweep, SweepResult
    Many estimates or fits over a parameter grid, resumable, on local cores
    or a Dask cluster (``estimate_loss(..., backend="dask")`` for one big run).
kernels
    ``@njit`` functions to call from your own Numba code (sample one input,
    forward one sample, loss and gradient of one sample).
"""

from __future__ import annotations

from fastsuper import geometry, theory
from fastsuper import njit_api as kernels
from fastsuper.apps.sweep import SweepResult, sweep
from fastsuper.core.laws import SparseBatch, SparseInputs, ValueLaw, sample
from fastsuper.core.model import Model
from fastsuper.exact.api import (
    exact_gain,
    exact_gain_grad,
    exact_loss,
    exact_loss_and_gain,
    exact_loss_grad,
)
from fastsuper.exact.bounds import LossBounds, loss_bounds
from fastsuper.exact.low_order import LowOrderTerms, low_order_terms
from fastsuper.exact.prepared import ExactEvaluator
from fastsuper.mc.api import LossEstimate, estimate_loss
from fastsuper.mc.forward import forward
from fastsuper.train.adam import FitResult, fit, loss_grad
from fastsuper.train.lbfgs import ExactFit, fit_exact
from fastsuper.verify import CheckReport, check

__version__ = "0.1.0"

__all__ = [
    "CheckReport",
    "ExactEvaluator",
    "ExactFit",
    "FitResult",
    "LossBounds",
    "LossEstimate",
    "LowOrderTerms",
    "Model",
    "SparseBatch",
    "SparseInputs",
    "SweepResult",
    "ValueLaw",
    "check",
    "estimate_loss",
    "exact_gain",
    "exact_gain_grad",
    "exact_loss",
    "exact_loss_and_gain",
    "exact_loss_grad",
    "fit",
    "kernels",
    "fit_exact",
    "forward",
    "geometry",
    "loss_bounds",
    "loss_grad",
    "low_order_terms",
    "sample",
    "sweep",
    "theory",
    "__version__",
]
