"""Exact population loss and gain for ``power`` activations (THEORY §3).

For ``phi(t) = t**m`` with an integer ``m >= 1`` and independent Bernoulli
features, the loss ``L = E sum_j I_j (x_j - x_hat_j)**2`` of the model
``x_hat = phi(A x + b)``, ``A = W.T @ W``, is a polynomial moment of
independent variables and is computed here exactly, without sampling.

Per output coordinate ``j`` write ``z_j = A_jj x_j + y_j`` with
``y_j = sum_{i != j} A_ji x_i + b_j`` independent of ``x_j``.  The cumulants of
``y_j`` add over its independent terms::

    kappa_r(y_j) = sum_{i != j} A_ji**r kappa_r(x_i) + [r = 1] b_j

so all of them, for ``r = 1 .. 2m``, cost ``2m`` matrix-vector products of
entrywise powers of the off-diagonal part of ``A`` with the vectors
``kappa_r(x)``.  Moments of ``y_j`` follow from the recursion
``M_r = sum_{k=1}^{r} C(r-1, k-1) kappa_k M_{r-k}``, and the cumulants of
``x_i`` from its raw moments ``E x_i**r = p_i mu_r`` by the inverse recursion.
Then, by the binomial theorem,

    E z_j**(2m)    = sum_r C(2m, r) A_jj**r E[x_j**r]     E[y_j**(2m-r)]
    E[x_j z_j**m]  = sum_r C(m, r)  A_jj**r E[x_j**(r+1)] E[y_j**(m-r)]

and ``L_j = I_j (E x_j**2 - 2 E[x_j z_j**m] + E z_j**(2m))``.  Everything is
computed in float64 whatever the model's dtype; the cost is ``O(n**2 d)`` to
form ``A`` plus ``O(n**2 m)``.

:func:`exact_loss_grad` (and :func:`exact_gain_grad`) reuse the same forward
pass and add the exact gradient in ``W`` and ``b`` at the same cost (THEORY §3
"Gradient"; the chain rule is written out in :func:`_backward`).

Grouped input laws (correlated and anticorrelated features, THEORY §8) have
closed forms too: every function here hands them to
:mod:`fastsuper.exact.grouped` (CPU only).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from fastsuper.core import validation as v
from fastsuper.core.blas import single_thread_if_small
from fastsuper.core.laws import SparseInputs
from fastsuper.core.model import Model
from fastsuper.exact.checks import BACKENDS
from fastsuper.exact.checks import closed_form_exponent as _closed_form_exponent
from fastsuper.exact.grouped import check_gradient_finite, grouped_loss_grad, grouped_terms
from fastsuper.exact.kernels_prepared import exact_flops, pick_kernels
from fastsuper.exact.kernels_small import small_grad_w, small_gram_sums, use_small
from fastsuper.exact.moments import binomials, cumulants_from_moments, moments_from_cumulants
from fastsuper.exact.prepared import prepared_call, prepared_values

__all__ = [
    "MomentTerms",
    "exact_gain",
    "exact_gain_grad",
    "exact_loss",
    "exact_loss_and_gain",
    "exact_loss_grad",
    "moment_terms",
]


# --------------------------------------------------------------------------
# validation


def _check(func: str, model, inputs, backend, flag_name: str, flag) -> tuple[int, bool, str]:
    """``(m, flag, backend)`` checked for the public function ``func``."""
    backend = v.check_choice("backend", backend, BACKENDS, func=func)
    m = _closed_form_exponent(func, model, inputs, backend)
    flag = v.check_bool(flag_name, flag, func=func)
    return m, flag, backend


# --------------------------------------------------------------------------
# the computation


class ForwardTerms(NamedTuple):
    """Everything the forward pass computes (all float64; ``n`` features, ``R = 2m``)."""

    binom: np.ndarray  # (R + 1, R + 1) Pascal's triangle
    W: np.ndarray  # (d, n) weights in float64
    b: np.ndarray | None  # (n,) bias or None
    ex: np.ndarray  # (R + 2, n): ex[r, i] = E x_i**r
    kx: np.ndarray  # (R + 1, n): kx[r, i] = kappa_r(x_i)
    A: np.ndarray  # (n, n): off-diagonal part of W.T @ W (diagonal set to 0)
    ad: np.ndarray  # (R + 1, n): ad[r, j] = A_jj**r
    my: np.ndarray  # (R + 1, n): my[s, j] = E y_j**s
    ex2: np.ndarray  # (n,) E x_j**2
    exzm: np.ndarray  # (n,) E[x_j z_j**m]
    ez2m: np.ndarray  # (n,) E z_j**(2m)
    imp: np.ndarray  # (n,) importances I_j


def _gram_power_sums(W: np.ndarray, kx: np.ndarray, m: int, backend: str):
    """``(A, diag, ky)``: the off-diagonal part of ``A = W.T @ W``, its diagonal, and the
    power sums ``ky[r, j] = sum_{i != j} A_ji**r kappa_r(x_i)`` (THEORY §3).

    Small problems (:func:`fastsuper.exact.kernels_small.use_small`, CPU) form
    ``A`` and the sums in one serial pass over its lower triangle; else ``A``
    is one matrix product and the sums one pass over its rows (on the GPU
    with ``backend="cuda"``; the serial twin of the kernel when the work is
    small, the same numbers).
    """
    d, n = W.shape
    if backend != "cuda" and use_small(exact_flops(n, d, m)):
        A = np.zeros((n, n))
        diag = np.empty(n)
        ky = small_gram_sums(W, A, kx, diag)
        A = np.tril(A, -1)
        A += A.T
        return A, diag, ky
    with single_thread_if_small(float(n) * n * d):  # no BLAS thread spinning
        A = W.T @ W  # beside the kernels
    diag = np.diagonal(A).copy()
    np.fill_diagonal(A, 0.0)  # A is now the off-diagonal part
    if backend == "cuda":
        from fastsuper.exact.cuda import exact_power_sums_cuda

        return A, diag, exact_power_sums_cuda(A, kx, symmetric=True)
    return A, diag, pick_kernels(n, d, m)[0](A, kx)


def forward_terms(model: Model, inputs: SparseInputs, m: int, backend: str = "cpu") -> ForwardTerms:
    """The forward moments of THEORY §3 (unchecked; see :func:`_check_terms`).

    With ``backend="cuda"`` the row-wise power sums ``ky`` are computed by
    :func:`fastsuper.exact.cuda.exact_power_sums_cuda`; the rest is the same.
    """
    n = model.n
    R = 2 * m
    binom = binomials(R)
    W = np.ascontiguousarray(model.W, dtype=np.float64)
    b = None if model.b is None else np.asarray(model.b, dtype=np.float64)
    p = np.asarray(inputs.p, dtype=np.float64)
    mu = np.array([inputs.law.moment(r) for r in range(R + 2)], dtype=np.float64)

    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        # raw moments of every x_i: ex[r, i] = E x_i**r (1 for r = 0)
        ex = p[None, :] * mu[:, None]
        ex[0] = 1.0
        kx = cumulants_from_moments(ex[: R + 1], binom)  # kx[r, i] = kappa_r(x_i)

        A, diag, ky = _gram_power_sums(W, kx, m, backend)
        if b is not None:
            ky[1] += b
        my = moments_from_cumulants(ky, binom)  # my[s, j] = E y_j**s

        # powers of the diagonal: ad[r, j] = A_jj**r
        ad = np.empty((R + 1, n))
        ad[0] = 1.0
        for r in range(1, R + 1):
            ad[r] = ad[r - 1] * diag

        ez2m = np.zeros(n)
        for r in range(R + 1):
            ez2m += binom[R, r] * ad[r] * ex[r] * my[R - r]
        exzm = np.zeros(n)
        for r in range(m + 1):
            exzm += binom[m, r] * ad[r] * ex[r + 1] * my[m - r]
        ex2 = ex[2].copy()

    imp = np.asarray(inputs.importance, dtype=np.float64)
    return ForwardTerms(binom, W, b, ex, kx, A, ad, my, ex2, exzm, ez2m, imp)


def _check_terms(func: str, fw: ForwardTerms, m: int) -> None:
    """Raise FloatingPointError if a forward moment overflowed float64."""
    for name, arr in (("E z_j^(2m)", fw.ez2m), ("E[x_j z_j^m]", fw.exzm)):
        bad = ~np.isfinite(arr)
        if bad.any():
            j = int(np.argmax(bad))
            W, b = fw.W, fw.b
            raise FloatingPointError(
                f"{func}: float64 overflow: {name} is {arr[j]} for feature j = {j} with "
                f"m = {m} (max |A_ij| = {np.max(np.abs(W.T @ W)):.3g}, "
                f"max |b_j| = {0.0 if b is None else float(np.max(np.abs(b))):.3g}); "
                f"the 2m-th moments of A x + b exceed the float64 range, rescale W or b"
            )


class MomentTerms(NamedTuple):
    """Per-feature moments of the exact loss (float64 arrays of shape (n,); THEORY §3).

    Feature ``j`` contributes ``importance_j (ex2_j - 2 exzm_j + ez2m_j)`` to
    the loss and ``importance_j (2 exzm_j - ez2m_j)`` to the gain.
    """

    ex2: np.ndarray  # E x_j**2
    exzm: np.ndarray  # E[x_j z_j**m]
    ez2m: np.ndarray  # E z_j**(2m)
    importance: np.ndarray  # I_j


def _terms(model: Model, inputs: SparseInputs, m: int, func: str, backend: str = "cpu"):
    """The :class:`MomentTerms` of checked arguments (``func`` names the caller in errors)."""
    if inputs.pattern == "grouped":  # THEORY §8
        fw, terms = grouped_terms(model, inputs, m)
        _check_terms(func, fw, m)
        return MomentTerms(*terms)
    fw = forward_terms(model, inputs, m, backend)
    _check_terms(func, fw, m)
    return MomentTerms(fw.ex2, fw.exzm, fw.ez2m, fw.imp)


def moment_terms(model: Model, inputs: SparseInputs, *, backend: str = "cpu") -> MomentTerms:
    """The per-feature moments behind :func:`exact_loss` and :func:`exact_gain` (THEORY §3).

    ``E x_j**2``, ``E[x_j z_j**m]`` and ``E z_j**(2m)`` with ``z = W.T @ W @ x
    + b``, and the importances; the loss and the gain are fixed combinations
    of them, and other quantities (the best scale of ``W`` in
    :func:`fastsuper.theory.best_scale`) other combinations.  Same
    conditions, cost and ``backend`` as :func:`exact_loss`.

    Returns
    -------
    MomentTerms
        ``(ex2, exzm, ez2m, importance)``, float64 arrays of shape (n,).

    Examples
    --------
    >>> import numpy as np, fastsuper as fs
    >>> from fastsuper.exact.api import moment_terms
    >>> t = moment_terms(fs.Model(np.eye(2), exponent=3), fs.SparseInputs(2, p=0.5))
    >>> t.ex2, t.exzm, t.ez2m  # p mu_2, p mu_4, p mu_6 for Gaussian values
    (array([0.5, 0.5]), array([1.5, 1.5]), array([7.5, 7.5]))
    """
    func = "moment_terms"
    backend = v.check_choice("backend", backend, BACKENDS, func=func)
    m = _closed_form_exponent(func, model, inputs, backend)
    return _terms(model, inputs, m, func, backend)


def _backward(func: str, fw: ForwardTerms, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact gradient ``(dL/dW, dL/db)`` of the loss from the forward state (THEORY §3).

    With ``L = sum_j I_j (E x_j**2 - 2 E[x_j z_j**m] + E z_j**(2m))`` and the
    binomial sums of the module docstring, writing ``a_j = A_jj``:

    * ``dL/dM_s(y_j) = I_j (C(2m, s) a_j**(2m-s) E x_j**(2m-s)
      - 2 [s <= m] C(m, s) a_j**(m-s) E x_j**(m-s+1))``;
    * ``dL/dkappa_r(y_j) = sum_{s >= r} dL/dM_s(y_j) C(s, r) M_{s-r}(y_j)``
      (``M = exp(K)`` for the generating functions, so ``dM_s/dkappa_r`` is
      ``C(s, r) M_{s-r}``, the total derivative through the recursion);
    * ``Gamma_ji = dL/dA_ji = sum_r dL/dkappa_r(y_j) r A_ji**(r-1) kappa_r(x_i)``
      for ``i != j``, and ``Gamma_jj = dL/da_j`` (only the binomial sums
      depend on ``a_j``: ``y_j`` does not contain ``x_j``);
    * ``dL/db_j = dL/dkappa_1(y_j)`` and ``dL/dW = W (Gamma + Gamma.T)``.

    ``Gamma`` is never stored: :func:`fastsuper.exact.kernels_cpu.exact_grad_w`
    (for small problems :func:`fastsuper.exact.kernels_small.small_grad_w`)
    forms its rows and columns on the fly, by Horner's rule over the orders
    ``r`` with ``kappa_r(x) != 0``.
    """
    binom, W, ex, kx, A, ad, my, imp = fw.binom, fw.W, fw.ex, fw.kx, fw.A, fw.ad, fw.my, fw.imp
    d, n = W.shape
    R = 2 * m
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        # dL/dM_s(y_j) (row 0 unused: M_0 = 1) and dL/da_j (a_j = A_jj)
        g_mom = np.zeros((R + 1, n))
        g_diag = np.zeros(n)
        for r in range(R + 1):
            g_mom[R - r] += binom[R, r] * ad[r] * ex[r]
            if r >= 1:
                g_diag += (binom[R, r] * r) * ad[r - 1] * ex[r] * my[R - r]
        for r in range(m + 1):
            g_mom[m - r] -= 2.0 * binom[m, r] * ad[r] * ex[r + 1]
            if r >= 1:
                g_diag -= (2.0 * binom[m, r] * r) * ad[r - 1] * ex[r + 1] * my[m - r]
        g_mom *= imp
        g_diag *= imp

        # dL/dkappa_r(y_j) = sum_{s=r}^{R} dL/dM_s C(s, r) M_{s-r}
        g_kap = np.zeros((R + 1, n))
        for r in range(1, R + 1):
            for s in range(r, R + 1):
                g_kap[r] += binom[s, r] * g_mom[s] * my[s - r]

        # Gamma_ji = sum_r c_r[j] kx[r, i] A_ji**(r-1) with c_r = r dL/dkappa_r(y_j),
        # over the orders whose cumulant of x does not vanish (odd ones do for
        # symmetric laws), evaluated by Horner's rule row by row.
        orders = [r for r in range(R, 0, -1) if np.any(kx[r] != 0.0)]
        coef = np.arange(R + 1)[:, None] * g_kap
        orders = np.array(orders, dtype=np.int64)
        if use_small(exact_flops(n, d, m)):  # the serial symmetric kernel (any backend)
            dW = np.empty((d, n))
            small_grad_w(A, W, coef, kx, orders, g_diag, dW)
        else:  # the serial twin when the work is small
            dW = pick_kernels(n, d, m)[1](A, W, coef, kx, orders, g_diag)
        db = g_kap[1].copy()

    for name, arr in (("dL/dW", dW), ("dL/db", db)):
        if not np.all(np.isfinite(arr)):
            raise FloatingPointError(
                f"{func}: float64 overflow in the gradient {name} with m = {m} (max |A_ij| "
                f"= {np.max(np.abs(A)):.3g} off the diagonal, {np.max(np.abs(ad[1])):.3g} on "
                "it); rescale W or b"
            )
    return dW, db


def _finish(func: str, per: np.ndarray, per_feature: bool):
    if not np.all(np.isfinite(per)):  # pragma: no cover - the terms are checked first
        raise FloatingPointError(f"{func}: float64 overflow combining the moment terms")
    if per_feature:
        return per
    total = math.fsum(per.tolist())
    if not math.isfinite(total):  # pragma: no cover - sum of finite terms overflowed
        raise FloatingPointError(f"{func}: float64 overflow summing over features")
    return total


def exact_loss_and_gain(
    model: Model, inputs: SparseInputs, *, per_feature: bool = False, backend: str = "cpu"
) -> tuple[float, float] | tuple[np.ndarray, np.ndarray]:
    """Exact population loss and gain together (one pass; THEORY §3).

    Parameters
    ----------
    model : fastsuper.Model
        A model with ``activation="power"`` (integer exponent ``m >= 1``),
        with or without bias, float32 or float64 (computed in float64).
    inputs : fastsuper.SparseInputs
        Independent Bernoulli inputs (``p`` scalar or per feature) with
        ``inputs.n == model.n``; any value law and importances.
    per_feature : bool, default False
        Return the per-feature terms instead of their sums.
    backend : {"cpu", "cuda"}, default "cpu"
        Where the ``O(n**2 m)`` row-wise power sums run: ``"cuda"`` computes
        them on the GPU (:func:`fastsuper.exact.cuda.exact_power_sums_cuda`;
        needs numba-cuda and a GPU, or ``NUMBA_ENABLE_CUDASIM=1``), the rest
        on the CPU.  Same value to float round-off.

    Returns
    -------
    loss, gain : float, or ndarray of shape (n,) each
        ``L = E sum_j I_j (x_j - x_hat_j)**2`` and
        ``L~ = E sum_j I_j x_j**2 - L`` (sums over features, not means; with
        ``per_feature=True`` the ``j``-th terms, which sum to the totals).

    Raises
    ------
    TypeError
        If ``model`` or ``inputs`` has the wrong type.
    ValueError
        If ``inputs.n != model.n``, the activation is not ``"power"`` or the
        sparsity pattern is "exactly k active".
    FloatingPointError
        If a moment overflows float64.
    RuntimeError
        With ``backend="cuda"``, if CUDA is unavailable (ValueError for an
        unknown backend).

    See Also
    --------
    exact_loss, exact_gain

    Examples
    --------
    >>> import numpy as np, fastsuper as fs
    >>> model = fs.Model(0.5 * np.eye(2), exponent=1)  # x_hat = x / 4
    >>> inputs = fs.SparseInputs(2, p=0.5, values="rademacher")
    >>> fs.exact_loss_and_gain(model, inputs)  # 2 * 0.5 * (3/4)**2, 2 * 0.5 - loss
    (0.5625, 0.4375)
    """
    fast = prepared_values(model, inputs, backend, per_feature, "both")
    if fast is not None:
        return fast
    func = "exact_loss_and_gain"
    m, per_feature, backend = _check(func, model, inputs, backend, "per_feature", per_feature)
    ex2, exzm, ez2m, imp = _terms(model, inputs, m, func, backend)
    with np.errstate(over="ignore", invalid="ignore"):
        loss = imp * (ex2 - 2.0 * exzm + ez2m)
        gain = imp * (2.0 * exzm - ez2m)
    return _finish(func, loss, per_feature), _finish(func, gain, per_feature)


def exact_loss(
    model: Model, inputs: SparseInputs, *, per_feature: bool = False, backend: str = "cpu"
):
    """Exact population loss ``L = E sum_j I_j (x_j - x_hat_j)**2`` (THEORY §3).

    Closed form for ``x_hat = (W.T @ W @ x + b)**m`` (activation ``"power"``,
    integer ``m >= 1``) under independent Bernoulli features, by cumulants of
    ``sum_{i != j} A_ji x_i + b_j``.  Computed in float64 whatever
    ``model.dtype`` is, in ``O(n**2 (d + m))`` time.  Repeated calls for one
    input law and shape reuse a prepared :class:`fastsuper.ExactEvaluator`
    (kept per thread), the same numbers bit for bit, as do :func:`exact_gain`
    and :func:`exact_loss_and_gain`; from ``n >=``
    :data:`fastsuper.core.config.EXACT_FUSED_FROM` features it runs the fused
    kernel (memory ``O(n d)``; the same values to round-off).

    Parameters
    ----------
    model : fastsuper.Model
        A model with ``activation="power"``, with or without bias.
    inputs : fastsuper.SparseInputs
        Independent Bernoulli inputs (``p`` scalar or per feature) with
        ``inputs.n == model.n``; any value law and importances.
    per_feature : bool, default False
        Return the ``n`` per-feature terms ``I_j E (x_j - x_hat_j)**2``
        instead of their sum (the mean over features is ``.mean()`` of them).
    backend : {"cpu", "cuda"}, default "cpu"
        Where the ``O(n**2 m)`` row-wise power sums run: ``"cuda"`` computes
        them on the GPU (:func:`fastsuper.exact.cuda.exact_power_sums_cuda`;
        needs numba-cuda and a GPU, or ``NUMBA_ENABLE_CUDASIM=1``), the rest
        on the CPU.  Same value to float round-off.

    Returns
    -------
    float or ndarray of shape (n,)
        The loss summed over features (a Python float), or its per-feature
        terms (float64).

    Raises
    ------
    TypeError
        If ``model`` or ``inputs`` has the wrong type.
    ValueError
        If ``inputs.n != model.n``; if ``model.activation`` is not
        ``"power"`` (no closed form: use ``fastsuper.estimate_loss`` or the
        k <= 1 lower bound); if ``inputs`` has the "exactly k" pattern.
    FloatingPointError
        If a moment overflows float64.
    RuntimeError
        With ``backend="cuda"``, if CUDA is unavailable (ValueError for an
        unknown backend).

    See Also
    --------
    exact_gain, exact_loss_and_gain

    Examples
    --------
    >>> import numpy as np, fastsuper as fs
    >>> inputs = fs.SparseInputs(3, p=0.25, values="gaussian")
    >>> fs.exact_loss(fs.Model(np.eye(3), exponent=1), inputs)  # x_hat = x
    0.0
    >>> fs.exact_loss(fs.Model(np.zeros((1, 3)), exponent=3), inputs)  # x_hat = 0: 3 p E xi^2
    0.75
    >>> fs.exact_loss(fs.Model(np.eye(3), exponent=3), inputs, per_feature=True)  # p(1 - 2*3 + 15)
    array([2.5, 2.5, 2.5])
    """
    fast = prepared_values(model, inputs, backend, per_feature, "loss")
    if fast is not None:
        return fast
    func = "exact_loss"
    m, per_feature, backend = _check(func, model, inputs, backend, "per_feature", per_feature)
    ex2, exzm, ez2m, imp = _terms(model, inputs, m, func, backend)
    with np.errstate(over="ignore", invalid="ignore"):
        loss = imp * (ex2 - 2.0 * exzm + ez2m)
    return _finish(func, loss, per_feature)


def exact_gain(
    model: Model, inputs: SparseInputs, *, per_feature: bool = False, backend: str = "cpu"
):
    """Exact population gain ``L~ = E sum_j I_j x_j**2 - L`` (the paper's quantity).

    Computed directly as ``sum_j I_j (2 E[x_j z_j**m] - E z_j**(2m))`` with
    ``z = W.T @ W @ x + b``, which avoids the cancellation of subtracting the
    loss from ``E sum_j I_j x_j**2``.  Same method, cost and conditions as
    :func:`exact_loss`.

    Parameters
    ----------
    model : fastsuper.Model
        A model with ``activation="power"``, with or without bias.
    inputs : fastsuper.SparseInputs
        Independent Bernoulli inputs with ``inputs.n == model.n``.
    per_feature : bool, default False
        Return the ``n`` per-feature terms instead of their sum.
    backend : {"cpu", "cuda"}, default "cpu"
        Where the ``O(n**2 m)`` row-wise power sums run: ``"cuda"`` computes
        them on the GPU (:func:`fastsuper.exact.cuda.exact_power_sums_cuda`;
        needs numba-cuda and a GPU, or ``NUMBA_ENABLE_CUDASIM=1``), the rest
        on the CPU.  Same value to float round-off.

    Returns
    -------
    float or ndarray of shape (n,)
        The gain summed over features (a Python float), or its per-feature
        terms (float64).

    Raises
    ------
    TypeError
        If ``model`` or ``inputs`` has the wrong type.
    ValueError
        If ``inputs.n != model.n``, the activation is not ``"power"`` or the
        sparsity pattern is "exactly k active".
    FloatingPointError
        If a moment overflows float64.
    RuntimeError
        With ``backend="cuda"``, if CUDA is unavailable (ValueError for an
        unknown backend).

    See Also
    --------
    exact_loss, exact_loss_and_gain

    Examples
    --------
    Without superposition (``A`` diagonal) the gain is
    ``p sum_i (2 mu_{m+1} A_ii**m - mu_{2m} A_ii**(2m))`` (THEORY §5.1):

    >>> import numpy as np, fastsuper as fs
    >>> inputs = fs.SparseInputs(2, p=0.5, values="rademacher")
    >>> fs.exact_gain(fs.Model(np.eye(2), exponent=3), inputs)  # perfect reconstruction
    1.0
    >>> fs.exact_gain(fs.Model(np.eye(1, 2), exponent=3), inputs, per_feature=True)
    array([0.5, 0. ])
    """
    fast = prepared_values(model, inputs, backend, per_feature, "gain")
    if fast is not None:
        return fast
    func = "exact_gain"
    m, per_feature, backend = _check(func, model, inputs, backend, "per_feature", per_feature)
    _, exzm, ez2m, imp = _terms(model, inputs, m, func, backend)
    with np.errstate(over="ignore", invalid="ignore"):
        gain = imp * (2.0 * exzm - ez2m)
    return _finish(func, gain, per_feature)


def _loss_grad(func: str, model, inputs, wrt_bias, backend: str = "cpu"):
    m, wrt_bias, backend = _check(func, model, inputs, backend, "wrt_bias", wrt_bias)
    if inputs.pattern == "grouped":  # THEORY §8
        fw, dW, db = grouped_loss_grad(model, inputs, m)
        _check_terms(func, fw, m)
        check_gradient_finite(func, dW, db)
        return fw, dW, (db if wrt_bias else None)
    fw = forward_terms(model, inputs, m, backend)
    _check_terms(func, fw, m)
    dW, db = _backward(func, fw, m)
    return fw, dW, (db if wrt_bias else None)


def exact_loss_grad(
    model: Model, inputs: SparseInputs, *, wrt_bias: bool = True, backend: str = "cpu"
):
    """Exact population loss and its exact gradient in ``W`` and ``b`` (THEORY §3).

    The loss is the value of :func:`exact_loss` (the same computation); the
    gradient is its exact derivative, obtained by pushing ``dL/dM_s(y_j)``
    to the cumulants of ``y_j = sum_{i != j} A_ji x_i + b_j`` with
    ``dM_s/dkappa_r = C(s, r) M_{s-r}``, then to ``Gamma_ji = dL/dA_ji`` and
    ``dL/dW = W (Gamma + Gamma.T)``.  Cost ``O(n**2 (d + m))`` time, like the
    loss, with scratch memory of a few rows per thread beside ``W.T @ W``.
    Repeated calls for one input law and shape reuse a prepared
    :class:`fastsuper.ExactEvaluator` (kept per thread), the same numbers bit
    for bit; from ``n >=`` :data:`fastsuper.core.config.EXACT_FUSED_FROM`
    features the fused kernel runs instead of ``W.T @ W`` and the row kernels
    (memory ``O(n d)``; the same values to round-off, about ``1e-15`` relative).

    Parameters
    ----------
    model : fastsuper.Model
        A model with ``activation="power"`` (integer exponent ``m >= 1``),
        with or without bias, float32 or float64 (computed in float64).
    inputs : fastsuper.SparseInputs
        Independent Bernoulli inputs (``p`` scalar or per feature) with
        ``inputs.n == model.n``; any value law and importances.
    wrt_bias : bool, default True
        Also return ``dL/db``.  For a model without bias this is the
        gradient at ``b = 0``.  With ``False`` the third element is ``None``.
    backend : {"cpu", "cuda"}, default "cpu"
        Where the ``O(n**2 m)`` row-wise power sums run: ``"cuda"`` computes
        them on the GPU (:func:`fastsuper.exact.cuda.exact_power_sums_cuda`;
        needs numba-cuda and a GPU, or ``NUMBA_ENABLE_CUDASIM=1``), the rest
        on the CPU (the backward pass too).  Same values to float round-off.

    Returns
    -------
    loss : float
        ``L = E sum_j I_j (x_j - x_hat_j)**2`` (sum over features), equal to
        ``exact_loss(model, inputs)``.
    dW : ndarray of shape (d, n), float64
        ``dL/dW``.
    db : ndarray of shape (n,), float64, or None
        ``dL/db`` (``None`` when ``wrt_bias=False``).

    Raises
    ------
    TypeError
        If ``model`` or ``inputs`` has the wrong type, or ``wrt_bias`` is
        not a bool.
    ValueError
        If ``inputs.n != model.n``, the activation is not ``"power"`` or the
        sparsity pattern is "exactly k active".
    FloatingPointError
        If a moment or a gradient entry overflows float64.
    RuntimeError
        With ``backend="cuda"``, if CUDA is unavailable (ValueError for an
        unknown backend).

    See Also
    --------
    exact_loss, exact_gain_grad

    Examples
    --------
    Linear model ``x_hat = w**2 x + b`` with one feature, ``p = 1`` and
    Rademacher values: ``L = (1 - w**2)**2 + b**2``.

    >>> import numpy as np, fastsuper as fs
    >>> inputs = fs.SparseInputs(1, p=1.0, values="rademacher")
    >>> loss, dW, db = fs.exact_loss_grad(fs.Model([[0.5]], b=[0.25], exponent=1), inputs)
    >>> loss  # (3/4)**2 + (1/4)**2
    0.625
    >>> dW  # -4 w (1 - w**2)
    array([[-1.5]])
    >>> db  # 2 b
    array([0.5])
    """
    func = "exact_loss_grad"
    fast = prepared_call(model, inputs, backend, wrt_bias, gain=False)
    if fast is not None:  # a cached prepared evaluator: the same numbers, no fixed costs
        return fast
    fw, dW, db = _loss_grad(func, model, inputs, wrt_bias, backend)
    with np.errstate(over="ignore", invalid="ignore"):
        loss = fw.imp * (fw.ex2 - 2.0 * fw.exzm + fw.ez2m)
    return _finish(func, loss, False), dW, db


def exact_gain_grad(
    model: Model, inputs: SparseInputs, *, wrt_bias: bool = True, backend: str = "cpu"
):
    """Exact population gain ``L~ = E sum_j I_j x_j**2 - L`` and its gradient.

    The gain is :func:`exact_gain`'s value; since ``E sum_j I_j x_j**2``
    does not depend on the parameters, its gradient is minus that of
    :func:`exact_loss_grad`.  Same method, cost and conditions.

    Parameters
    ----------
    model : fastsuper.Model
        A model with ``activation="power"``, with or without bias.
    inputs : fastsuper.SparseInputs
        Independent Bernoulli inputs with ``inputs.n == model.n``.
    wrt_bias : bool, default True
        Also return ``dL~/db`` (at ``b = 0`` for a model without bias);
        ``None`` in its place with ``False``.
    backend : {"cpu", "cuda"}, default "cpu"
        Where the row-wise power sums run, as in :func:`exact_loss_grad`.

    Returns
    -------
    gain : float
        The gain summed over features.
    dW : ndarray of shape (d, n), float64
        ``dL~/dW``.
    db : ndarray of shape (n,), float64, or None
        ``dL~/db``.

    Raises
    ------
    TypeError
        If ``model`` or ``inputs`` has the wrong type, or ``wrt_bias`` is
        not a bool.
    ValueError
        If ``inputs.n != model.n``, the activation is not ``"power"`` or the
        sparsity pattern is "exactly k active".
    FloatingPointError
        If a moment or a gradient entry overflows float64.

    See Also
    --------
    exact_gain, exact_loss_grad

    Examples
    --------
    Unsuperposed optimum of THEORY §5.1 (``A_jj**m = mu_{m+1} / mu_{2m}``,
    here 1/5 for Gaussian values and ``m = 3``): a stationary point.

    >>> import numpy as np, fastsuper as fs
    >>> inputs = fs.SparseInputs(2, p=0.1, values="gaussian")
    >>> W = (1 / 5) ** (1 / 6) * np.eye(2)
    >>> gain, dW, db = fs.exact_gain_grad(fs.Model(W, exponent=3), inputs)
    >>> round(gain, 12)  # p kappa min(n, d) with kappa = mu_4**2 / mu_6 = 0.6
    0.12
    >>> bool(np.abs(dW).max() < 1e-14), bool(np.abs(db).max() < 1e-14)
    (True, True)
    """
    func = "exact_gain_grad"
    fast = prepared_call(model, inputs, backend, wrt_bias, gain=True)
    if fast is not None:  # a cached prepared evaluator: the same numbers, no fixed costs
        return fast
    fw, dW, db = _loss_grad(func, model, inputs, wrt_bias, backend)
    with np.errstate(over="ignore", invalid="ignore"):
        gain = fw.imp * (2.0 * fw.exzm - fw.ez2m)
    return _finish(func, gain, False), -dW, (None if db is None else -db)
