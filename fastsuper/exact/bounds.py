"""Rigorous two-sided bounds on the population loss, for every activation (THEORY §4).

``L = sum_k P(K = k) L_k`` with ``K`` the number of active features.  The
``k = 0`` and ``k = 1`` strata are exact (:func:`fastsuper.low_order_terms`);
the rest, ``L_{>=2} = E[loss 1{K >= 2}]``, is bounded below by 0 (the loss
is non-negative) and above by the smaller of two rigorous bounds.

Common step.  For every output ``j``,
``z_j = sum_{i active} A_ji xi_i + b_j`` has ``|z_j| <= V_j = |b_j| +
sum_i |A_ji| |xi_i| beta_i``, and every activation has ``|phi(t)| <= |t|**a``
(``power``, ``signed_power``: equality; ``relu_power``: ``max(t, 0)**a <=
|t|**a``; with ``a = 1``: ``identity``, ``leaky_relu`` (slope <= 1), ``tanh``,
``gelu``, ``gelu_tanh`` and ``silu``, whose ``|phi(t)| <= |t|``), so
``(x_j - phi(z_j))**2 <= x_j**2 + 2 |x_j| V_j**a + V_j**(2a)``.  ``sigmoid``
and ``softplus`` have ``phi(0) > 0`` but ``|phi(t)| <= phi(0) + |t|`` (their
slopes are at most 1), so they take the same bounds with ``|b_j| + phi(0)``
in place of ``|b_j|`` (:func:`bound_model`).

1. Moment bound (independent features, any value law with finite
   moments, Gaussian included).  With the weighted AM-GM inequality
   ``t**a <= lam t**k + (1 - lam) t**(k+1)`` (``k = floor(a)``,
   ``lam = k + 1 - a``; equality for integer ``a``) the right-hand side is
   at most a polynomial in ``(|x_j|, V_j)``, so

       L_{>=2} <= sum_j I_j E[1{K >= 2} (x_j**2 + 2 |x_j| h_a(V_j) + h_2a(V_j))],

   and these expectations are exact: a pass over the features carries the
   moments ``E[V_j**s 1{class}]``, ``E[|x_j| V_j**s 1{class}]`` and
   ``E[x_j**2 1{class}]`` for the classes "no / one / at least two
   features active so far" (binomial convolution with the absolute
   moments ``E|xi|**r``; no subtraction, so no cancellation at small
   ``p``).  Cost ``O(n**2 a**2)``.  Measured: within a factor 2.5-4 of the
   true ``L_{>=2}`` on random frames (the factor 2 of the cross term and
   the triangle inequality ``|z| <= V``).

2. Worst-sample bound (bounded laws ``|xi| <= B``, any sparsity pattern).
   A sample with active set ``S``, ``|S| = k``, has ``V_j <= |b_j| + B
   T_j(k)``, ``T_j(k)`` the sum of the ``k`` largest ``|A_ji|`` over ``i``
   (``i = j`` included), so ``|phi(z_j)| <= F_j(k) = (|b_j| + B
   T_j(k))**a``; output ``j`` costs at most ``I_j F_j(k)**2`` if ``j`` is
   inactive and ``I_j (B + F_j(k))**2`` if active, and at most ``k`` are
   active, hence

       loss <= U_k = sum_j I_j F_j(k)**2 + (sum of the k largest of I_j (2 B F_j(k) + B**2)),

   for every ``S`` and every value, and ``U_k`` is non-decreasing in
   ``k``; ``L_{>=2} <= sum_{k=2}^{k_max} P(K = k) U_k + P(K > k_max) U_n``
   with the exact Poisson-binomial law of ``K`` (or ``[k = k0]`` for
   "exactly ``k0`` active"), rigorous for every ``k`` thanks to the tail
   term.  It is much looser (a sup over active sets, not a mean: measured
   700-15000 times the true ``L_{>=2}``) but is the only one for the
   "exactly ``k``" pattern.

The bound is tight when ``P(K >= 2)`` is small (very sparse inputs).
Without a finite bound (Gaussian values and the "exactly k" pattern) the
upper bound is ``inf``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

from fastsuper.core import config
from fastsuper.core.jit import parallel_njit
from fastsuper.core.laws import GAUSSIAN, SparseInputs, ValueLaw
from fastsuper.core.model import Model
from fastsuper.exact.low_order import _check, low_order_terms

__all__ = ["LossBounds", "loss_bounds"]


@dataclass(frozen=True)
class LossBounds:
    """Rigorous bounds ``lower <= L <= upper`` on the population loss (THEORY §4).

    Losses are sums over features weighted by the importances.

    Attributes
    ----------
    lower : float
        The exact ``k <= 1`` part of the loss (the ``k >= 2`` part counted as 0).
    upper : float
        ``lower`` plus the bound on the ``k >= 2`` part (``inf`` for unbounded laws).
    exact_part : float
        The exact ``k <= 1`` part (equal to ``lower``).
    upper_ge2 : float
        The bound on ``sum_{k >= 2} P(K = k) L_k`` (``inf`` for unbounded laws).
    p_ge2 : float
        ``P(K >= 2)``.
    value_bound : float
        ``B = max |xi|`` over the value law (``inf`` for the Gaussian).
    k_max : int
        Largest ``k`` with its own ``U_k``; the tail ``P(K > k_max)`` is bounded by ``U_n``.
    tail : float
        ``P(K > k_max)``.
    second_moment : float
        ``E sum_j I_j x_j**2`` (the loss of a zero output), for the gain bounds.
    upper_ge2_moments : float
        The moment bound on the ``k >= 2`` part (independent features; ``inf`` otherwise).
    upper_ge2_sup : float
        The worst-sample bound on the ``k >= 2`` part (bounded laws; ``inf`` otherwise).
    """

    lower: float
    upper: float
    exact_part: float
    upper_ge2: float
    p_ge2: float
    value_bound: float
    k_max: int
    tail: float
    second_moment: float
    upper_ge2_moments: float = math.inf
    upper_ge2_sup: float = math.inf

    @property
    def gain_lower(self) -> float:
        """``E sum_j I_j x_j**2 - upper``: a lower bound of the gain."""
        return self.second_moment - self.upper

    @property
    def gain_upper(self) -> float:
        """``E sum_j I_j x_j**2 - lower``: an upper bound of the gain."""
        return self.second_moment - self.lower

    @property
    def width(self) -> float:
        """``upper - lower``."""
        return self.upper - self.lower

    def contains(self, value: float, rtol: float = 1e-12) -> bool:
        """Whether ``lower <= value <= upper`` up to ``rtol`` relative round-off."""
        slack = rtol * max(1.0, abs(value))
        return self.lower - slack <= value <= self.upper + slack

    def __str__(self) -> str:
        return (
            f"{self.lower:.10g} <= L <= {self.upper:.10g}  "
            f"(k<=1 exact part {self.exact_part:.10g}, P(K>=2) = {self.p_ge2:.3g}, "
            f"B = {self.value_bound:g})"
        )


def _count_law(p: np.ndarray, k_max: int) -> tuple[np.ndarray, float]:
    """``P(K = k)`` for ``k = 0..k_max`` and ``P(K > k_max)``, ``K`` = sum of Bernoulli(p_i)."""
    pmf = np.zeros(k_max + 1)
    pmf[0] = 1.0
    over = 0.0
    for q in p:
        over = over + q * pmf[k_max]  # mass leaving the table stays out of it
        pmf[1:] = pmf[1:] * (1.0 - q) + pmf[:-1] * q
        pmf[0] *= 1.0 - q
    return pmf, float(over)


def _choose_k_max(p: np.ndarray) -> int:
    mean = float(p.sum())
    var = float(np.sum(p * (1.0 - p)))
    return int(min(p.size, max(2, math.ceil(mean + 12.0 * math.sqrt(var) + 40))))


def _row_tops(A: np.ndarray, k_max: int) -> tuple[np.ndarray, np.ndarray]:
    """``T[j, k-1]`` = sum of the ``k`` largest ``|A_ji|`` (k = 1..k_max) and the full row sums."""
    n = A.shape[0]
    T = np.empty((n, k_max))
    full = np.empty(n)
    block = max(1, config.BOUNDS_BLOCK_ELEMS // n)
    for lo in range(0, n, block):
        rows = np.abs(A[lo : lo + block])
        full[lo : lo + block] = rows.sum(axis=1)
        if k_max < n:
            top = -np.partition(-rows, k_max - 1, axis=1)[:, :k_max]
        else:
            top = rows
        top = -np.sort(-top, axis=1)
        T[lo : lo + block] = np.cumsum(top, axis=1)
    return T, full


def _u(F: np.ndarray, imp: np.ndarray, B: float, k: int) -> float:
    """``U_k = sum_j I_j F_j**2 + sum of the k largest I_j (2 B F_j + B**2)``."""
    extra = imp * (2.0 * B * F + B * B)
    if k < extra.size:
        extra = np.partition(extra, extra.size - k)[extra.size - k :]
    return float(np.sum(imp * F * F) + np.sum(extra))


def _abs_moments(law: ValueLaw, r_max: int) -> np.ndarray:
    """``E |xi|**r`` for ``r = 0..r_max`` (exact)."""
    out = np.empty(r_max + 1)
    for r in range(r_max + 1):
        if law.code == GAUSSIAN:
            out[r] = 2.0 ** (r / 2) * math.gamma((r + 1) / 2) / math.sqrt(math.pi)
        elif law.name in ("uniform", "uniform_sym"):
            out[r] = 1.0 / (r + 1)
        else:
            out[r] = float(np.dot(law.probs, np.abs(law.support) ** r))
    return out


def _mix(a: float, size: int) -> np.ndarray:
    """Weights ``w`` with ``t**a <= sum_s w[s] t**s`` for all ``t >= 0`` (weighted AM-GM).

    ``t**a = (t**k)**lam (t**(k+1))**(1-lam) <= lam t**k + (1-lam) t**(k+1)``
    with ``k = floor(a)``, ``lam = k + 1 - a`` (equality for integer ``a``).
    """
    w = np.zeros(size)
    k = math.floor(a)
    lam = k + 1 - a
    w[k] += lam
    if lam < 1.0:
        w[k + 1] += 1.0 - lam
    return w


@parallel_njit
def _moment_kernel(A, bias, p, nu, binom, w1, w2, out):  # pragma: no cover - compiled
    """``out[j] = E[1{K >= 2} (x_j**2 + 2 |x_j| h1(V_j) + h2(V_j))]`` (see :func:`loss_bounds`).

    ``V_j = |b_j| + sum_i |A_ji| |xi_i| beta_i``; per output ``j`` a pass over
    the features carries ``M[c, s] = E[V**s 1{class c}]``, ``N[c, s] =
    E[|x_j| V**s 1{class c}]`` and ``X[c] = E[x_j**2 1{class c}]`` for the
    classes ``c`` = no, one, at least two active features so far.
    """
    n = A.shape[0]
    S = w2.shape[0] - 1
    S1 = w1.shape[0] - 1
    for j in numba.prange(n):
        M = np.zeros((3, S + 1))
        N = np.zeros((3, S1 + 1))
        X = np.zeros(3)
        Mn = np.zeros((3, S + 1))
        Nn = np.zeros((3, S1 + 1))
        Xn = np.zeros(3)
        pw = np.empty(S + 2)
        c0 = abs(bias[j])
        M[0, 0] = 1.0
        for s in range(1, S + 1):
            M[0, s] = M[0, s - 1] * c0
        for i in range(n):
            q = p[i]
            if q == 0.0:
                continue
            al = abs(A[j, i])
            pw[0] = 1.0
            for r in range(1, S + 2):
                pw[r] = pw[r - 1] * al
            for c in range(3):
                for s in range(S + 1):
                    Mn[c, s] = (1.0 - q) * M[c, s]
                for s in range(S1 + 1):
                    Nn[c, s] = (1.0 - q) * N[c, s]
                Xn[c] = (1.0 - q) * X[c]
            for c in range(3):
                cn = c + 1 if c < 2 else 2
                for s in range(S + 1):
                    acc = 0.0
                    for r in range(s + 1):
                        acc += binom[s, r] * pw[r] * nu[r] * M[c, s - r]
                    Mn[cn, s] += q * acc
                if i != j:
                    for s in range(S1 + 1):
                        acc = 0.0
                        for r in range(s + 1):
                            acc += binom[s, r] * pw[r] * nu[r] * N[c, s - r]
                        Nn[cn, s] += q * acc
                    Xn[cn] += q * X[c]
                else:
                    for s in range(S1 + 1):
                        acc = 0.0
                        for r in range(s + 1):
                            acc += binom[s, r] * pw[r] * nu[r + 1] * M[c, s - r]
                        Nn[cn, s] += q * acc
                    Xn[cn] += q * nu[2] * M[c, 0]
            M, Mn = Mn, M
            N, Nn = Nn, N
            X, Xn = Xn, X
        tot = X[2]
        for s in range(S1 + 1):
            tot += 2.0 * w1[s] * N[2, s]
        for s in range(S + 1):
            tot += w2[s] * M[2, s]
        out[j] = tot


def bound_model(model: Model) -> Model:
    """The model whose ``|t|**a`` bounds hold for ``model``: itself, or for ``sigmoid`` and
    ``softplus`` a ``relu_power`` 1 model with the bias ``|b_j| + phi(0)``."""
    if model.activation not in ("sigmoid", "softplus"):
        return model
    phi0 = 0.5 if model.activation == "sigmoid" else math.log(2.0) / model.param
    bias = np.abs(np.asarray(model.bias, dtype=np.float64)) + phi0 * (1.0 + 1e-15)
    W = np.asarray(model.W, dtype=np.float64)
    return Model(W, bias, activation="relu_power", exponent=1)


def _moment_bound(model: Model, inputs: SparseInputs) -> float:
    """``sum_j I_j E[1{K >= 2} (x_j**2 + 2 |x_j| h1(V_j) + h2(V_j))]`` (independent features)."""
    a = float(model.exponent)
    S = math.floor(2 * a) + 1
    S1 = math.floor(a) + 1
    W = np.asarray(model.W, dtype=np.float64)
    A = np.ascontiguousarray(W.T @ W)
    bias = np.ascontiguousarray(model.bias, dtype=np.float64)
    p = np.ascontiguousarray(inputs.p, dtype=np.float64)
    nu = _abs_moments(inputs.law, S + 2)
    binom = np.array([[math.comb(s, r) for r in range(S + 1)] for s in range(S + 1)], float)
    out = np.empty(model.n)
    _moment_kernel(A, bias, p, nu, binom, _mix(a, S1 + 1), _mix(2 * a, S + 1), out)
    imp = np.asarray(inputs.importance, dtype=np.float64)
    return float(np.dot(imp, out))


def loss_bounds(model: Model, inputs: SparseInputs) -> LossBounds:
    """Rigorous lower and upper bounds of the population loss, for every activation.

    The lower bound is the exact ``k <= 1`` part of the loss
    (:func:`fastsuper.low_order_terms`; the loss is non-negative).  The upper
    bound adds a rigorous bound on the ``k >= 2`` part, the smaller of
    (derivations in the module docstring)

    * the moment bound ``sum_j I_j E[1{K >= 2} (x_j**2 + 2 |x_j| h_a(V_j) +
      h_2a(V_j))]`` with ``V_j = |b_j| + sum_i |A_ji| |x_i| >= |z_j|`` and
      polynomials ``h_a(t) >= t**a`` (independent features, any value law);
    * the worst-sample bound ``sum_{k >= 2} P(K = k) U_k`` (bounded value
      laws ``|xi| <= B``, any sparsity pattern), ``U_k`` the largest loss
      of a sample with ``k`` active features given ``|xi| <= B``.

    Parameters
    ----------
    model : Model
        Any activation (``power``, ``signed_power``, ``relu_power`` with any
        exponent; ``gelu``, ``gelu_tanh``, ``tanh``, ``softplus``, ``sigmoid``,
        ``silu``, ``leaky_relu``, ``identity``), with or without bias.  For the
        smooth activations the lower bound is the k <= 1 part less the
        quadrature's error estimate (:attr:`LowOrderTerms.quad_error`).
    inputs : SparseInputs
        Independent features (``p`` scalar or per feature) or "exactly k
        active"; any value law and importances.

    Returns
    -------
    LossBounds
        ``lower``, ``upper`` (``inf`` only for Gaussian values with the
        "exactly k" pattern), ``exact_part``, ``upper_ge2`` (and both
        candidates ``upper_ge2_moments``, ``upper_ge2_sup``), ``p_ge2``,
        ``value_bound`` and the gain bounds ``gain_lower``, ``gain_upper``.

    Raises
    ------
    TypeError
        If ``model`` or ``inputs`` has the wrong type.
    ValueError
        If they disagree on ``n``.
    FloatingPointError
        If a term overflows float64.

    Notes
    -----
    Cost: :func:`fastsuper.low_order_terms`, the moment pass
    (``O(n**2 a**2)``, compiled, parallel over outputs) and, for bounded
    laws, sorting the rows of ``|A|`` (``O(n**2 log n)``).

    Examples
    --------
    >>> import numpy as np, fastsuper as fs
    >>> model = fs.Model(np.eye(2), activation="relu_power", exponent=1)
    >>> b = fs.loss_bounds(model, fs.SparseInputs(2, p=0.5, values="rademacher"))
    >>> b.lower, b.upper  # x_hat = relu(x): the loss is 0.5 (1 per negative active value)
    (0.25, 2.25)
    >>> b.upper_ge2_moments, b.upper_ge2_sup  # both bound the k >= 2 part, 0.25
    (2.0, 2.0)
    """
    _check(model, inputs)
    terms = low_order_terms(model, inputs)
    model = bound_model(model)  # the k >= 2 bounds below see phi only through |phi| <= |t|**a
    lower = terms.lower_bound
    if terms.quad_error > 0.0:  # smooth activations: less the quadrature's error estimate
        lower = max(lower - terms.quad_error, 0.0)
    imp = np.asarray(inputs.importance, dtype=np.float64)
    law = inputs.law
    lo_v, hi_v = law.bounds
    B = max(abs(lo_v), abs(hi_v))
    second = float(law.moment(2) * np.dot(imp, np.asarray(inputs.p, dtype=np.float64)))
    n = model.n
    a = float(model.exponent)
    if terms.p_ge2 == 0.0:
        return LossBounds(lower, lower, lower, 0.0, 0.0, B, 0, 0.0, second, 0.0, 0.0)
    with np.errstate(over="ignore", invalid="ignore"):
        mom = _moment_bound(model, inputs) if inputs.pattern == "bernoulli" else math.inf
    sup, k_max, tail = math.inf, 0, 0.0
    if math.isfinite(B):
        if inputs.pattern == "exactly_k":
            k0 = inputs.k
            k_max = max(k0, 2)
            pmf = np.zeros(k_max + 1)
            pmf[k0] = 1.0
        else:
            p = np.asarray(inputs.p, dtype=np.float64)
            k_max = _choose_k_max(p)
            pmf, tail = _count_law(p, k_max)
        k_max = min(k_max, n)
        W = np.asarray(model.W, dtype=np.float64)
        bias = np.abs(np.asarray(model.bias, dtype=np.float64))
        T, full = _row_tops(W.T @ W, k_max)
        with np.errstate(over="ignore", invalid="ignore"):
            sup = 0.0
            for k in range(2, k_max + 1):
                if pmf[k] > 0.0:
                    sup += pmf[k] * _u((bias + B * T[:, k - 1]) ** a, imp, B, k)
            if tail > 0.0:
                sup += tail * _u((bias + B * full) ** a, imp, B, n)
    for name, val in (("moment", mom), ("sup", sup)):
        if math.isnan(val) or (val == math.inf and (name == "sup") == math.isfinite(B)):
            if name == "moment" and inputs.pattern != "bernoulli":
                continue
            raise FloatingPointError(
                f"loss_bounds: the k >= 2 {name} bound overflowed float64 ({val}); the "
                f"weights, bias or exponent (a = {a:g}) are too large"
            )
    ge2 = min(mom, sup)
    return LossBounds(
        lower=lower,
        upper=lower + ge2,
        exact_part=lower,
        upper_ge2=float(ge2),
        p_ge2=terms.p_ge2,
        value_bound=B,
        k_max=int(k_max),
        tail=float(tail),
        second_moment=second,
        upper_ge2_moments=float(mom),
        upper_ge2_sup=float(sup),
    )
