"""Sparse random inputs (THEORY §2): the input law and its sampler.

``x_i = beta_i xi_i`` with ``beta_i ~ Bernoulli(p_i)`` (or exactly ``k`` active
features, a uniform random subset) and ``xi_i`` iid from a value law.

The sampler is a pure function of ``(seed, sample index)`` (see
:mod:`fastsuper.core.rng`): the active set is drawn by geometric skipping with
counters ``0, 1, 2, ...`` of the sample's stream, and the value of the
``a``-th active feature from counters ``VALUE_BASE + 2a`` and
``VALUE_BASE + 2a + 1``, so a sample costs ``O(active + 1)`` random numbers
and never depends on threads, chunks or backend.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

from fastsuper.core import config
from fastsuper.core import validation as v
from fastsuper.core.bundles import (
    GAP_SCAN,
    MODE_BINOM,
    MODE_PLAIN,
    borrowed_law,
    borrowed_rule,
    plain_rule,
)
from fastsuper.core.groups import ALL as G_ALL
from fastsuper.core.groups import EXCLUSIVE_EQUAL as G_EQUAL
from fastsuper.core.groups import PARTIAL as G_PARTIAL
from fastsuper.core.groups import parse_groups, units
from fastsuper.core.jit import borrow, njit, parallel_njit
from fastsuper.core.rng import counter_hash, hashed_uniform, sample_key, seed_key, uniform
from fastsuper.core.vecmath import wide_vectors

# value-law codes used by the kernels
GAUSSIAN, RADEMACHER, UNIFORM_SYM, UNIFORM, CONSTANT, DISCRETE = range(6)
_LAW_CODES = {
    "gaussian": GAUSSIAN,
    "rademacher": RADEMACHER,
    "uniform_sym": UNIFORM_SYM,
    "uniform": UNIFORM,
    "constant": CONSTANT,
    "discrete": DISCRETE,
}
VALUE_BASE = 1 << 40  # counters of the value draws
#: counter of the uniform that draws K given K >= 2 (one p); below every value counter
K_COUNTER = VALUE_BASE - 1
_TWO_PI = 2.0 * math.pi


class ValueLaw:
    """Law of the value ``xi`` of an active feature (THEORY §2).

    Parameters
    ----------
    name : {"gaussian", "rademacher", "uniform_sym", "uniform", "constant", "discrete"}
        ``gaussian`` is N(0, 1), ``rademacher`` is ±1, ``uniform_sym`` is
        U[-1, 1], ``uniform`` is U[0, 1] (Elhage et al.), ``constant`` is 1.
    support, probs : array_like, optional
        Support points and their probabilities, for ``"discrete"`` only.

    Examples
    --------
    >>> from fastsuper import ValueLaw
    >>> ValueLaw("uniform").moment(2)
    0.3333333333333333
    >>> ValueLaw("discrete", support=[-1.0, 2.0], probs=[0.5, 0.5]).moment(3)
    3.5
    """

    def __init__(self, name: str = "gaussian", support=None, probs=None):
        if not isinstance(name, str) or name not in _LAW_CODES:
            raise ValueError(
                f"values must be one of {sorted(_LAW_CODES)} or a ValueLaw, got {name!r}"
            )
        self.name = name
        self.code = _LAW_CODES[name]
        if name == "discrete":
            if support is None or probs is None:
                raise ValueError("a discrete value law needs both support= and probs=")
            s = v.as_float_array("support", support, ndim=1, dtype=np.float64)
            q = v.as_float_array("probs", probs, ndim=1, dtype=np.float64)
            if s.size == 0 or s.shape != q.shape:
                raise ValueError(
                    f"support and probs must be non-empty and of equal length, got "
                    f"{s.shape} and {q.shape}"
                )
            if np.any(q < 0) or abs(q.sum() - 1.0) > 1e-12:
                raise ValueError(
                    f"probs must be >= 0 and sum to 1, got {q.tolist()} (sum {q.sum()!r})"
                )
            self.support, self.probs = s, q
        else:
            if support is not None or probs is not None:
                raise ValueError(f"support/probs are only for values='discrete', not {name!r}")
            self.support, self.probs = {
                RADEMACHER: (np.array([-1.0, 1.0]), np.array([0.5, 0.5])),
                CONSTANT: (np.array([1.0]), np.array([1.0])),
            }.get(self.code, (np.zeros(1), np.ones(1)))
        self.cumprobs = np.cumsum(self.probs)
        self.cumprobs[-1] = 1.0

    @property
    def is_discrete(self) -> bool:
        """True for laws with finite support (rademacher, constant, discrete)."""
        return self.code in (RADEMACHER, CONSTANT, DISCRETE)

    @property
    def bounds(self) -> tuple[float, float]:
        """Smallest interval holding the support (±inf for the Gaussian)."""
        if self.code == GAUSSIAN:
            return (-math.inf, math.inf)
        if self.code == UNIFORM_SYM:
            return (-1.0, 1.0)
        if self.code == UNIFORM:
            return (0.0, 1.0)
        return (float(self.support.min()), float(self.support.max()))

    def moment(self, r: int) -> float:
        """Raw moment ``mu_r = E xi**r`` (exact).

        Raises
        ------
        ValueError
            If ``mu_r`` overflows float64 (the Gaussian's beyond ``r = 301``,
            ``(r - 1)!!``; a discrete law's when ``|xi| > 1`` and ``r`` is large).
        """
        r = v.check_int("r", r, minimum=0)
        if r == 0:
            return 1.0
        if self.code == GAUSSIAN:
            if r % 2:
                return 0.0
            try:
                return float(math.prod(range(r - 1, 0, -2)))
            except OverflowError:
                raise self._overflow(r) from None
        if self.code in (UNIFORM_SYM,):
            return 0.0 if r % 2 else 1.0 / (r + 1)
        if self.code == UNIFORM:
            return 1.0 / (r + 1)
        with np.errstate(over="ignore", invalid="ignore"):
            mu = float(np.dot(self.probs, self.support**r))
        if not math.isfinite(mu):
            raise self._overflow(r)
        return mu

    def _overflow(self, r: int) -> ValueError:
        return ValueError(f"the moment E xi**{r} of {self!r} overflows float64")

    def __repr__(self) -> str:
        if self.code == DISCRETE:
            s, q = self.support.tolist(), self.probs.tolist()
            return f"ValueLaw('discrete', support={s}, probs={q})"
        return f"ValueLaw({self.name!r})"


class SparseInputs:
    """The input law: which features are active and what values they take.

    Parameters
    ----------
    n : int
        Number of features.
    p : float or array_like of shape (n,), optional
        Probability that each feature is active (independently), one value
        for all features or one per feature.  Leave out when ``k`` is given.
    values : str or ValueLaw, default "gaussian"
        Law of the value of an active feature (see :class:`ValueLaw`).
    importance : array_like of shape (n,), optional
        Positive loss weights ``I_j`` (default 1).
    k : int, optional
        Sparsity pattern "exactly k active": a uniform random k-subset.
        Only the independent (``p``) pattern has the closed forms of
        :func:`fastsuper.exact_loss`.
    support, probs : array_like, optional
        Shortcut for ``values=ValueLaw("discrete", support, probs)``.
    groups : array_like of int of shape (n,), or list of array_like of int, optional
        Grouped law (THEORY §8): one label per feature (features with the
        same label ``>= 0`` form a group, groups ordered by label; a negative
        label leaves the feature independent), or a list of disjoint arrays
        of feature indices, one per group.  Groups are independent of each
        other and of the ungrouped features, which keep their ``p``.
    kind : str or sequence of str, default "correlated"
        What happens when a group's gate opens (probability ``q``), one name
        for all groups or one per group: ``"correlated"`` (every member
        active), ``"partial"`` (member ``i`` active with probability
        ``r[i]``, independently) or ``"exclusive"`` (alias
        ``"anticorrelated"``: exactly one member, chosen with ``weights``).
    q : float or array_like of shape (n_groups,), optional
        Gate probability of each group; default ``p`` (when it is one number).
    weights : array_like of shape (n,), optional
        Positive weights of the members of exclusive groups, normalised
        within each group (default equal).
    r : float or array_like of shape (n,), optional
        In-group probability of the members of partial groups, in ``(0, 1]``
        (default 1).

    Attributes
    ----------
    p : ndarray of shape (n,)
        Marginal activation probability of each feature (for a grouped law
        ``q r_i`` or ``q w_i`` on group members).
    groups : GroupSpec or None
        The checked groups (:class:`fastsuper.core.groups.GroupSpec`), or
        ``None`` for independent features.

    Examples
    --------
    >>> import fastsuper as fs
    >>> inputs = fs.SparseInputs(1000, p=1e-3, values="gaussian")
    >>> inputs.expected_active
    1.0
    >>> inputs.moment(4)
    3.0

    Two correlated pairs and an anticorrelated pair among 8 features:

    >>> g = fs.SparseInputs(8, p=0.01, groups=[[0, 1], [2, 3], [4, 5]],
    ...                     kind=["correlated", "correlated", "exclusive"], q=0.1)
    >>> g
    SparseInputs(n=8, p=0.01, values=ValueLaw('gaussian'), groups=[correlated [0, 1] q=0.1, \
correlated [2, 3] q=0.1, exclusive [4, 5] q=0.1])
    >>> g.p.tolist()
    [0.1, 0.1, 0.1, 0.1, 0.05, 0.05, 0.01, 0.01]
    """

    def __init__(
        self,
        n: int,
        p=None,
        values="gaussian",
        importance=None,
        *,
        k=None,
        support=None,
        probs=None,
        groups=None,
        kind="correlated",
        q=None,
        weights=None,
        r=None,
    ):
        self.n = v.check_int("n", n, minimum=1)
        self._p_given = p
        # p and the importances (float64) and the kernels' per-feature tables
        v.check_memory(f"n = {self.n} features", 24.0 * self.n, func="SparseInputs")
        if isinstance(values, ValueLaw):
            if support is not None or probs is not None:
                raise ValueError("give support/probs inside the ValueLaw, not beside it")
            self.law = values
        elif support is not None or probs is not None:
            self.law = ValueLaw(
                "discrete" if values in ("gaussian", "discrete") else values, support, probs
            )
        else:
            self.law = ValueLaw(values)
        if k is None:
            if p is None and groups is not None:
                p = 0.0  # every feature grouped (else _set_groups asks for p)
            if p is None:
                raise ValueError(
                    "give p (probability of each feature being active) or k (exactly k active)"
                )
            self.p = v.check_probabilities("p", p, self.n)
            self.k = None
        else:
            if p is not None:
                raise ValueError(f"give either p or k, not both (got p={p!r}, k={k!r})")
            self.k = v.check_int("k", k, minimum=0)
            if self.k > self.n:
                raise ValueError(f"k must be in [0, n={self.n}], got {self.k}")
            self.p = np.full(self.n, self.k / self.n)
        self.groups = None
        if groups is not None:
            self._set_groups(groups, kind, q, weights, r)
        elif any(x is not None for x in (q, weights, r)) or not (
            isinstance(kind, str) and kind == "correlated"
        ):
            raise ValueError("q, weights, r and kind describe groups: give groups= as well")
        if importance is None:
            self.importance = np.ones(self.n)
        else:
            imp = v.as_float_array(
                "importance", importance, ndim=1, dtype=np.float64, shape=(self.n,)
            )
            if np.any(imp <= 0):
                i = int(np.argmax(imp <= 0))
                raise ValueError(f"importance must be > 0; importance[{i}] = {imp[i]}")
            self.importance = imp

    def _set_groups(self, groups, kind, q, weights, r) -> None:
        """Check the group specification and turn ``p`` into the marginals."""
        if self.k is not None:
            raise ValueError(f"give either k or groups, not both (got k={self.k})")
        spec = parse_groups(self.n, groups, kind, q, weights, r, self._p_given)
        free = spec.label < 0
        if self._p_given is None and free.any():
            i = int(np.argmax(free))
            raise ValueError(
                f"feature {i} is in no group: give p (the probability of the ungrouped features)"
            )
        self.groups = spec
        self.ungrouped_p = np.where(free, self.p, 0.0)
        self.p = spec.marginals(self.ungrouped_p)
        #: the law laid out for the sampler (:class:`fastsuper.core.groups.Units`)
        self.group_units = units(spec, self.ungrouped_p)

    # ------------------------------------------------------------------ info
    @property
    def pattern(self) -> str:
        """``"bernoulli"`` (independent features), ``"exactly_k"`` or ``"grouped"``."""
        if self.groups is not None:
            return "grouped"
        return "bernoulli" if self.k is None else "exactly_k"

    @property
    def gates(self) -> np.ndarray:
        """Gate probability of each group (empty without groups)."""
        return np.zeros(0) if self.groups is None else self.groups.q.copy()

    @property
    def p_is_scalar(self) -> bool:
        return bool(np.all(self.p == self.p[0]))

    @property
    def expected_active(self) -> float:
        """E K, the mean number of active features."""
        if self.k is not None:
            return float(self.k)
        return float(self.n * self.p[0]) if self.p_is_scalar else float(self.p.sum())

    def independent(self) -> SparseInputs:
        """The independent law with the same marginals ``p``, values and importances.

        For comparing a grouped law with independent features that are active
        as often (``self`` itself when there are no groups).

        Examples
        --------
        >>> import fastsuper as fs
        >>> g = fs.SparseInputs(4, groups=[[0, 1, 2, 3]], q=0.2, kind="exclusive")
        >>> g.independent()
        SparseInputs(n=4, p=0.05, values=ValueLaw('gaussian'))
        """
        if self.groups is None:
            return self
        return SparseInputs(self.n, p=self.p.copy(), values=self.law, importance=self.importance)

    def moment(self, r: int) -> float:
        """Raw moment ``mu_r = E xi**r`` of the value law."""
        return self.law.moment(r)

    def feature_moment(self, r: int) -> np.ndarray:
        """``E x_i**r`` for every feature (``p_i mu_r``; 1 for r = 0)."""
        r = v.check_int("r", r, minimum=0)
        if r == 0:
            return np.ones(self.n)
        return self.p * self.law.moment(r)

    def __repr__(self) -> str:
        pat = (
            f"k={self.k}"
            if self.k is not None
            else (f"p={self.p[0]:g}" if self.p_is_scalar else "p=<per feature>")
        )
        if self.groups is not None:
            p = self._p_given
            pat = f"p={float(p):g}" if p is not None and np.ndim(p) == 0 else "p=<per feature>"
            grp = f", groups={self.groups.describe()}"
            return f"SparseInputs(n={self.n}, {pat}, values={self.law!r}{grp})"
        return f"SparseInputs(n={self.n}, {pat}, values={self.law!r})"

    def check_sampleable(self, *, func: str | None = None) -> None:
        """Raise ValueError if the samplers cannot draw these inputs.

        A largest feature probability in ``(0, config.P_MIN_SAMPLED)`` would make
        the gaps between active features overflow int64 (the exact values take
        any ``p``): see :func:`fastsuper.core.validation.check_sampled_p`.
        """
        v.check_sampled_p("p", float(self.p.max()), func=func)
        if self.groups is not None:
            v.check_sampled_p("q", float(self.groups.q.max()), func=func)

    # ------------------------------------------------------- kernel params
    def _kernel_params(self):
        """Everything the compiled sampler needs (the :class:`~fastsuper.core.bundles.InputLaw`)."""
        from fastsuper.core.bundles import input_law

        self.check_sampleable()
        return input_law(self)


# --------------------------------------------------------------------------
# per-sample sampling maths (shared by the CPU and CUDA kernels)
#
# One implementation of each step, ``inline="always"``: Numba splices it into
# the kernels (no call per sample) and numba-cuda into the device code.  Every
# function takes the law as one InputLaw bundle ``law``.  Kernels that draw many
# samples pass borrowed views of their bundles and buffers
# (:func:`fastsuper.core.bundles.borrowed_law`, :func:`fastsuper.core.jit.borrow`):
# Numba counts a reference for every array an inlined function receives, with
# atomic operations, which costs more than drawing a sample at small n.


@njit(inline="always")
def draw_subset(key, n, k, out_idx, at):
    """A uniform ``k``-subset of ``0 .. n-1``, sorted, into ``out_idx[at:at+k]``; returns ``k``.

    Robert Floyd's algorithm (counters ``0 .. k-1``), then an insertion sort.
    """
    count = 0
    for j in range(n - k, n):
        t = int(uniform(key, count) * (j + 1))
        if t > j:
            t = j
        dup = False
        for q in range(count):
            if out_idx[at + q] == t:
                dup = True
                break
        out_idx[at + count] = j if dup else t
        count += 1
    for q in range(1, count):  # insertion sort
        x = out_idx[at + q]
        r = q - 1
        while r >= 0 and out_idx[at + r] > x:
            out_idx[at + r + 1] = out_idx[at + r]
            r -= 1
        out_idx[at + r + 1] = x
    return count


@njit(inline="always")
def draw_bernoulli_tail(key, c, pos, law, out_idx, count):
    """Independent features after position ``pos``: geometric skipping, then thinning.

    Gaps between active features are ``floor(log(u) / log(1 - pmax))`` with
    ``u`` from counter ``c`` on; when the law carries gap thresholds
    (:func:`~fastsuper.core.bundles.gap_tables`) most gaps are read off them
    instead, with the same result.  With per-feature ``p`` (``law.thin``) a
    candidate at ``pos`` is kept with probability ``p[pos] / pmax`` (one more
    counter).  Appends to ``out_idx[count:]`` and returns the new count.  The
    Bernoulli pattern of :func:`draw_active` is ``(c, pos, count) = (0, -1,
    0)``; the stratified sampler continues from its first two active features.
    """
    n = law.n
    pmax = law.pmax
    log1mp = law.log1mp
    tlo = law.tlo
    thi = law.thi
    tables = tlo.shape[0] > GAP_SCAN  # else a placeholder
    if pmax <= 0.0:
        return count
    while True:
        if pmax >= 1.0:
            pos += 1
        else:
            u = uniform(key, c)
            c += 1
            m = n - pos - 1  # a gap of m or more ends the sample
            gap = -1
            if tables:
                if u < tlo[m]:  # (1 - p)^m > u for sure: gap >= m
                    break
                clo = 0  # thresholds (1 - p)^g, g = 1 .. GAP_SCAN, that u is below for sure
                chi = 0  # ... or may be below
                for g in range(1, GAP_SCAN + 1):
                    clo += u < tlo[g]
                    chi += u <= thi[g]
                if clo == chi and clo < GAP_SCAN:
                    gap = clo
            if gap < 0:  # no tables, u near a threshold, or a long gap: the formula decides
                ratio = math.log(u) / log1mp  # floor(ratio) >= m iff ratio >= m
                if ratio >= m:
                    break
                gap = int(math.floor(ratio))
            pos += gap + 1
        if pos >= n:
            break
        if law.thin:
            u = uniform(key, c)
            c += 1
            if u * pmax >= law.p[pos]:
                continue
        out_idx[count] = pos
        count += 1
    return count


@njit(inline="always")
def _open_unit(key, c, law, u, out_idx, count):
    """The active members of unit ``u`` whose gate opened; returns ``(c, count)``.

    Every member (``ALL``); each member ``t`` with probability ``gval[t]``, one
    counter each (``PARTIAL``); or one member from one counter ``x``: member
    ``floor(x * size)`` (``EXCLUSIVE_EQUAL``), or the first whose cumulative
    weight exceeds ``x`` (``EXCLUSIVE``).
    """
    lo = law.gptr[u]
    hi = law.gptr[u + 1]
    kind = law.gkind[u]
    if kind == G_ALL:
        for t in range(lo, hi):
            out_idx[count] = law.gmem[t]
            count += 1
    elif kind == G_PARTIAL:
        for t in range(lo, hi):
            x = uniform(key, c)
            c += 1
            if x < law.gval[t]:
                out_idx[count] = law.gmem[t]
                count += 1
    else:
        x = uniform(key, c)
        c += 1
        if kind == G_EQUAL:  # equal weights
            a = lo + int(x * (hi - lo))
            if a >= hi:
                a = hi - 1
        else:
            a = lo
            while a < hi - 1 and x >= law.gval[a]:  # the last cumulative weight is 1 > x
                a += 1
        out_idx[count] = law.gmem[a]
        count += 1
    return c, count


@njit(inline="always")
def draw_grouped(key, law, out_idx, at):
    """The sorted active set of one sample of a grouped law into ``out_idx[at:]``; its size.

    The units (groups and ungrouped features, :mod:`fastsuper.core.groups`)
    are skipped geometrically as :func:`draw_bernoulli_tail` skips features:
    gaps ``floor(log(u) / log(1 - gqmax))`` from counters ``0, 1, ...``, and
    with unequal gates a candidate unit kept with probability ``gq / gqmax``
    (one more counter); an open unit adds its members (:func:`_open_unit`).
    A law of singleton units draws the same samples as the independent law
    with ``p = gq``.  When units interleave, the active features are sorted.
    """
    nu = law.ngrp
    qmax = law.gqmax
    log1mq = law.glog1mq
    count = at
    if qmax <= 0.0:
        return 0
    c = 0
    pos = -1
    while True:
        if qmax >= 1.0:
            pos += 1
        else:
            u = uniform(key, c)
            c += 1
            ratio = math.log(u) / log1mq  # floor(ratio) >= nu - pos - 1 ends the sample
            if ratio >= nu - pos - 1:
                break
            pos += int(math.floor(ratio)) + 1
        if pos >= nu:
            break
        if law.gthin:
            u = uniform(key, c)
            c += 1
            if u * qmax >= law.gq[pos]:
                continue
        c, count = _open_unit(key, c, law, pos, out_idx, count)
    if law.gsort:  # insertion sort
        for t in range(at + 1, count):
            x = out_idx[t]
            s = t - 1
            while s >= at and out_idx[s] > x:
                out_idx[s + 1] = out_idx[s]
                s -= 1
            out_idx[s + 1] = x
    return count - at


@njit(inline="always")
def draw_active(key, law, out_idx, at):
    """The sorted active set of one sample into ``out_idx[at:]``; returns its size."""
    if law.ngrp > 0:
        return draw_grouped(key, law, out_idx, at)
    if law.kfix >= 0:
        return draw_subset(key, law.n, law.kfix, out_idx, at)
    return draw_bernoulli_tail(key, 0, -1, law, out_idx, at) - at


#: uniforms that :func:`draw_bernoulli_chunked` draws and converts to gaps at once
GAP_CHUNK = 16
#: ``log2(1 + f)`` on ``[0, 1)`` as a polynomial in ``f`` (least squares, degree 6) and a
#: bound on its error (tests/core checks it); the sampler takes it for an estimate only
LOG2_POLY = (
    4.645790736504444e-06, 1.4424044207857916, -0.7170452317449608, 0.45402159406315357,
    -0.2725776897289712, 0.11804611149830388, -0.024857244169306302,
)  # fmt: skip
LOG2_POLY_ERROR = 1e-5
_MANT = (1 << 52) - 1
_TWO_M52 = 2.0**-52


@njit(inline="always")
def chunked_bernoulli(law):
    """Whether :func:`draw_bernoulli_chunked` draws the active set of ``law``.

    Independent features with one ``p`` (no thinning, no groups, no fixed
    ``k``) and ``0 < p < 1``.
    """
    return law.ngrp == 0 and law.kfix < 0 and not law.thin and 0.0 < law.pmax < 1.0


@njit(inline="always")
def gap_bounds(law):
    """``(scale, margin, last)`` of the gap estimate of :func:`estimate_gaps` for ``law``."""
    scale = math.log(2.0) / law.log1mp
    return scale, LOG2_POLY_ERROR * abs(scale) + 1e-9, np.float64(law.n) + 0.5


@njit(inline="always")
def estimate_gaps(ubits, gbuf, width, scale, margin, last):
    """``gbuf[j]``: the gap of the uniform with bits ``ubits[j]``, estimated from
    :data:`LOG2_POLY` of its mantissa, or -1 where the ratio lies within ``margin``
    of an integer (:func:`settled_gap` then decides by the formula)."""
    c0, c1, c2, c3, c4, c5, c6 = LOG2_POLY
    for j in range(width):
        b = ubits[j]
        f = np.float64(b & _MANT) * _TWO_M52
        l2 = np.float64((b >> 52) - 1023) + (
            c0 + f * (c1 + f * (c2 + f * (c3 + f * (c4 + f * (c5 + f * c6)))))
        )
        r = min(l2 * scale, last)
        g = int(r)
        fr = r - g
        gbuf[j] = g if (fr > margin) & (fr < 1.0 - margin) else -1


@njit(inline="always")
def settled_gap(g, u, log1mp, n):
    """The gap ``g`` of :func:`estimate_gaps`, or, where it is -1, the formula's gap of ``u``."""
    if g >= 0:
        return g
    ratio = math.log(u) / log1mp
    return n if ratio >= n else int(math.floor(ratio))


@njit(inline="always")
def draw_bernoulli_chunked(key, law, out_idx, at, ubuf, ubits, gbuf):
    """:func:`draw_active` for a law of :func:`chunked_bernoulli`, the same set bit for bit.

    The gap after counter ``c``'s uniform ``u`` is ``floor(log(u) / log(1 -
    p))`` (the sample ends when it reaches the features left) whatever came
    before, so the gaps are computed ``len(ubuf)`` at a time in loops the
    compiler vectorises: ``log2(u)`` is the exponent of ``u`` plus
    :data:`LOG2_POLY` of its mantissa, within :data:`LOG2_POLY_ERROR`; where
    the ratio so estimated lies farther than that error from every integer,
    its floor is the formula's gap, else the formula decides (serially).
    ``ubuf`` (float64), ``ubits`` (its int64 view) and ``gbuf`` (int64) are
    scratch of equal length.  Returns the size of the set written to
    ``out_idx[at:]``.
    """
    n = law.n
    log1mp = law.log1mp
    scale, margin, last = gap_bounds(law)
    width = ubuf.shape[0]
    count = at
    pos = -1
    c = 0
    while True:
        for j in range(width):
            ubuf[j] = uniform(key, c + j)
        estimate_gaps(ubits, gbuf, width, scale, margin, last)
        for j in range(width):
            gap = settled_gap(gbuf[j], ubuf[j], log1mp, n)
            pos += gap + 1
            if pos >= n:
                return count - at
            out_idx[count] = pos
            count += 1
        c += width


@njit(inline="always")
def _search_cdf(cdf, u):
    """Smallest ``t`` with ``u < cdf[t]`` (``cdf`` non-decreasing, last entry 1)."""
    lo = 0
    hi = cdf.shape[0] - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if u < cdf[mid]:
            hi = mid
        else:
            lo = mid + 1
    return lo


@njit(inline="always")
def _next_active(h, ones, i, n, u):
    """Position of the next active feature at or after ``i`` (inverse survival).

    The largest ``j`` in ``[i, n)`` with ``P(next >= j) > u``, where
    ``P(next >= j) = [ones[j] == ones[i]] exp(h[j] - h[i])``; that survival is
    1 at ``j = i`` and non-increasing, so a binary search finds ``j``.
    """
    thr = h[i] + math.log(u)
    oi = ones[i]
    lo = i  # predicate true
    hi = n  # predicate false (survival 0 past the last feature)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ones[mid] == oi and h[mid] > thr:
            lo = mid
        else:
            hi = mid
    return lo


@njit(inline="always")
def draw_active_by(key, law, rule, out_idx, at):
    """The sorted active set of one sample drawn by ``rule`` into ``out_idx[at:]``; its size.

    ``rule`` is a :class:`~fastsuper.core.bundles.SampleRule`: ``MODE_PLAIN``
    is :func:`draw_active`; the law given ``K >= 2`` (rules of
    :mod:`fastsuper.mc.kernels_stratified`) is ``MODE_BINOM`` (one ``p``:
    ``K`` from the table ``rule.kcdf`` by counter :data:`K_COUNTER`, then a
    uniform ``K``-subset) or ``MODE_SEQ`` (one ``p_i`` per feature: the first
    two active features from the survival tables ``rule.h2``, ``rule.h1``,
    ``rule.ones`` by counters 0 and 1, the rest independent from counter 2 on).
    """
    mode = rule.mode
    if mode == MODE_PLAIN:
        return draw_active(key, law, out_idx, at)
    n = law.n
    if mode == MODE_BINOM:
        k = 2 + _search_cdf(rule.kcdf, uniform(key, K_COUNTER))
        return draw_subset(key, n, k, out_idx, at)
    j = _next_active(rule.h2, rule.ones, 0, n, uniform(key, 0))
    out_idx[at] = j
    j = _next_active(rule.h1, rule.ones, j + 1, n, uniform(key, 1))
    out_idx[at + 1] = j
    return draw_bernoulli_tail(key, 2, j, law, out_idx, at + 2) - at


@njit(inline="always")
def draw_value(key, a, law):
    """Value of the ``a``-th active feature of the sample with key ``key`` (float64).

    From counter ``VALUE_BASE + 2a`` (and ``+ 1``, the Gaussian's Box-Muller
    pair); discrete laws by the inverse of the cumulative distribution.
    """
    c = VALUE_BASE + 2 * a
    code = law.code
    if code == CONSTANT:
        return 1.0
    u = uniform(key, c)
    if code == GAUSSIAN:
        return math.sqrt(-2.0 * math.log(u)) * math.cos(_TWO_PI * uniform(key, c + 1))
    if code == RADEMACHER:
        return -1.0 if u < 0.5 else 1.0
    if code == UNIFORM_SYM:
        return 2.0 * u - 1.0
    if code == UNIFORM:
        return u
    cum = law.cum  # discrete
    last = cum.shape[0] - 1
    j = 0
    while j < last and u >= cum[j]:
        j += 1
    return law.support[j]


@njit(inline="always")
def draw_values(key, k, law, out_val, at):
    """Values of the active features ``0 .. k-1`` into ``out_val[at:at+k]`` (:func:`draw_value`).

    Stored in the dtype of ``out_val`` (each float64 draw rounded once).  U(0, 1) values
    (one counter each, no branch) in a loop of their own, which the compiler vectorises.
    """
    if law.code == UNIFORM:
        for a in range(k):
            out_val[at + a] = uniform(key, VALUE_BASE + 2 * a)
        return
    for a in range(k):
        out_val[at + a] = draw_value(key, a, law)


@njit(inline="always")
def draw_sample(key, law, out_idx, out_val):
    """Active indices (sorted) and values of one sample; returns how many."""
    count = draw_active(key, law, out_idx, 0)
    draw_values(key, count, law, out_val, 0)
    return count


# --------------------------------------------------------------------------
# many samples at once, as dense columns
#
# The counters of a sample's stream are the same for every sample, so a batch
# of samples can be drawn counter by counter: each loop over the samples is
# straight integer and float code that the compiler vectorises.  The gaps of
# the geometric skipping come from the thresholds of
# :func:`~fastsuper.core.bundles.gap_tables` (the formula decides the rare
# uniform inside a band), so the samples are those of :func:`draw_sample`.


@njit(inline="always")
def dense_sampling(law):
    """Whether :func:`draw_dense` draws samples of ``law``.

    Independent features with one ``p`` (no thinning, no groups, no fixed
    ``k``), at most :data:`~fastsuper.core.config.DENSE_N_MAX` of them, and a
    law that carries gap thresholds.
    """
    return (
        law.ngrp == 0
        and law.kfix < 0
        and not law.thin
        and law.n <= config.DENSE_N_MAX
        and law.tlo.shape[0] > law.n
    )


@njit
def dense_words(n):
    """The counter words (:func:`~fastsuper.core.rng.counter_hash`) :func:`draw_dense` uses.

    Gap counters ``0 .. n-1``, then value counters ``VALUE_BASE + 2a``, ``a = 0 .. n-1``.
    """
    words = np.empty(2 * n, dtype=np.uint64)
    for c in range(n):
        words[c] = counter_hash(c)
        words[n + c] = counter_hash(VALUE_BASE + 2 * c)
    return words


@njit(inline="always")
def dense_width(m):
    """``m`` rounded up to whole blocks of :data:`~fastsuper.core.config.DENSE_PAD` columns.

    The dense loops run over that many columns (no scalar remainder loops):
    the scratch arrays need that many, and the extra columns hold garbage.
    """
    pad = config.DENSE_PAD
    return (m + pad - 1) // pad * pad


@njit(inline="always")
def _gap_scan(n):
    """How many thresholds the dense sampler counts (at least ``n``; 4, 6 or 8)."""
    return 4 if n <= 4 else (6 if n <= 6 else 8)


@njit(inline="always")
def _gap_count(u, tlo, thi, G):
    """How many of ``tlo[1:G+1]`` exceed ``u``, how many of ``thi[1:G+1]`` reach it."""
    a = 0
    b = 0
    for g in range(1, G + 1):
        a += u < tlo[g]
        b += u <= thi[g]
    return a, b


@njit(inline="always")
def _gap_loop(keys, m, w, tlo, thi, prev, nxt, G):
    """``nxt[r] = prev[r] + (thresholds above u) + 1``, ``r < m``; returns the u in a band."""
    amb = 0
    for r in range(m):
        a, b = _gap_count(hashed_uniform(keys[r], w), tlo, thi, G)
        nxt[r] = prev[r] + a + 1
        amb += a != b
    return amb


@njit
def _gap_rows(keys, m, w, tlo, thi, prev, nxt, n):
    """:func:`_gap_loop` for ``n`` features, compiled for wide vectors (not inlined)."""
    wide_vectors()
    if n <= 4:
        return _gap_loop(keys, m, w, tlo, thi, prev, nxt, 4)
    if n <= 6:
        return _gap_loop(keys, m, w, tlo, thi, prev, nxt, 6)
    return _gap_loop(keys, m, w, tlo, thi, prev, nxt, 8)


@njit
def _nonempty_rows(skey, s0, m, w, tlo, thi, keys, q):
    """``keys[r] = sample_key(skey, s0 + r)``; ``q[r]``: 1 where ``u > thi``, 0 where ``u < tlo``.

    ``u`` from the word ``w`` of the key, ``r < m``; ``q[r] = -1`` where ``u``
    is inside the band.  Returns how many are.  Compiled for wide vectors, not
    inlined.
    """
    wide_vectors()
    amb = 0
    for r in range(m):
        key = sample_key(skey, s0 + r)
        keys[r] = key
        u = hashed_uniform(key, w)
        sure = u > thi
        none = u < tlo
        q[r] = 1 if sure else (0 if none else -1)
        amb += not (sure or none)
    return amb


@njit(inline="always")
def _gap_finish(keys, m, law, w, prev, nxt, amb, first):
    """The gaps of the ``u`` inside a band (``amb > 0`` of them) by the formula; returns the alive.

    ``first``: the first gap (from -1; ``prev`` unused).  Returns how many of samples
    ``0 .. m-1`` have an active feature at ``nxt`` (``< n``).
    """
    n = law.n
    if amb > 0:
        G = _gap_scan(n)
        for r in range(dense_width(m)):
            u = hashed_uniform(keys[r], w)
            a, b = _gap_count(u, law.tlo, law.thi, G)
            if a != b:
                ratio = math.log(u) / law.log1mp
                gap = n if ratio >= n else int(math.floor(ratio))
                nxt[r] = (-1 if first else prev[r]) + gap + 1
    alive = 0
    for r in range(m):
        alive += nxt[r] < n
    return alive


@njit(inline="always")
def _gap_row(keys, m, law, w, prev, nxt):
    """``nxt[r] = prev[r] + gap + 1``, ``r < dense_width(m)``, the gaps from word ``w``'s counter.

    The gap (or the part of it that matters: at least ``n``) is the number of
    thresholds above ``u``, a fixed number of them, so that the loop over the
    samples vectorises; a ``u`` inside a band is decided by the formula.
    Returns how many of samples ``0 .. m-1`` have an active feature at
    ``nxt`` (``< n``).
    """
    amb = _gap_rows(keys, dense_width(m), w, law.tlo, law.thi, prev, nxt, law.n)
    return _gap_finish(keys, m, law, w, prev, nxt, amb, False)


@njit(inline="always")
def _dense_active(keys, m, law, words, P, c0):
    """Positions of the active features of samples ``keys[:m]``; returns the rows of ``P`` used.

    ``P[a + 1, r]`` is the position of the ``a``-th active feature of sample
    ``r`` (``>= n`` past its last one): the gap from counter ``c`` moves
    ``P[c]`` to ``P[c + 1]``, for every sample at once, until every sample has
    ended.  Rows ``0 .. c0`` must be filled already (``P[0] = -1``; a law of
    ``0 < p < 1``).
    """
    n = law.n
    for c in range(c0, n):
        if _gap_row(keys, m, law, words[c], P[c], P[c + 1]) == 0:
            return c + 1
    return n


@njit
def _uniform_rows(keys, m, rows, n, words, P, U, X, every):
    """U(0, 1) values of rows ``0 .. rows-1`` into ``X[:n+1, :m]`` (wide vectors, not inlined).

    ``every``: row ``a`` holds feature ``a`` (``p = 1``), else the positions ``P[a + 1]``.
    """
    wide_vectors()
    for j in range(n + 1):
        xj = X[j]
        for r in range(m):
            xj[r] = 0
    for a in range(rows):
        w = words[n + a]
        if every:
            xa = X[a]
            for r in range(m):
                xa[r] = hashed_uniform(keys[r], w)
        else:  # no branch per sample: all the values, then a scatter
            for r in range(m):
                U[r] = hashed_uniform(keys[r], w)
            pa = P[a + 1]
            for r in range(m):
                X[min(pa[r], n), r] = U[r]


@njit(inline="always")
def _dense_values(keys, m, rows, law, words, P, U, X):
    """``X[:n, :m]`` from the positions ``P[1:rows+1, :m]`` (see :func:`draw_dense`)."""
    n = law.n
    if law.code == UNIFORM:
        _uniform_rows(keys, dense_width(m), rows, n, words, P, U, X, law.pmax >= 1.0)
        return
    for j in range(n + 1):
        for r in range(m):
            X[j, r] = 0
    for a in range(rows):
        for r in range(m):
            i = P[a + 1, r]
            if i < n:
                X[i, r] = draw_value(keys[r], a, law)


@njit
def _live_values(keys, m, live, w, pos, col, U, X):
    """``X[pos[i], col[i]]``: the U(0, 1) value of word ``w`` of ``keys[i]``, ``i < live``.

    The values for ``m >= live`` keys (wide vectors, not inlined), then the scatter.
    """
    wide_vectors()
    for i in range(m):
        U[i] = hashed_uniform(keys[i], w)
    for i in range(live):
        X[pos[i], col[i]] = U[i]


@njit
def _zero_columns(X, m):
    """``X[:, :m] = 0`` (wide vectors, not inlined)."""
    wide_vectors()
    for j in range(X.shape[0]):
        xj = X[j]
        for r in range(m):
            xj[r] = 0


@njit(inline="always")
def _keep_live(live, n, keys, pos, nxt, col):
    """The samples ``i < live`` with ``nxt[i] < n``, in order: keys, ``pos = nxt`` and ``col``.

    Returns how many.
    """
    k = 0
    for i in range(live):  # no branch: every sample is written, the kept ones advance
        q = nxt[i]
        keys[k] = keys[i]
        pos[k] = q
        col[k] = col[i]
        k += q < n
    return k


@njit(inline="always")
def _draw_uniform(keys, m, law, words, P, U, X):
    """:func:`draw_dense` for U(0, 1) values and ``0 < p < 1``: only the samples still alive.

    Gap ``a`` (counter ``a``) of the samples whose ``a``-th active feature
    exists, then the ``a``-th values of those whose feature ``a`` is active
    (the others have ended), the alive samples kept in ``keys`` (overwritten),
    their positions and columns in ``P[0]`` and ``P[2]``.  Returns the gap rows.
    """
    n = law.n
    mp = dense_width(m)
    _zero_columns(X, mp)
    pos = P[0]
    nxt = P[1]
    col = P[2]
    for r in range(mp):
        pos[r] = -1
        col[r] = r
    live = m
    rows = 0
    while live > 0 and rows < n:
        w = words[rows]
        amb = _gap_rows(keys, dense_width(live), w, law.tlo, law.thi, pos, nxt, n)
        _gap_finish(keys, live, law, w, pos, nxt, amb, False)
        live = _keep_live(live, n, keys, pos, nxt, col)
        if live > 0:
            _live_values(keys, dense_width(live), live, words[n + rows], pos, col, U, X)
        rows += 1
    return rows


@njit(inline="always")
def _all_active(m, n, P):
    """``P`` of samples whose every feature is active (``p = 1``)."""
    for c in range(n + 1):
        for r in range(m):
            P[c, r] = c - 1


@njit(inline="always")
def dense_keys(skey, s0, m, keys):
    """``keys[r] = sample_key(skey, s0 + r)``, ``r < dense_width(m)``."""
    for r in range(dense_width(m)):
        keys[r] = sample_key(skey, s0 + r)


@njit(inline="always")
def draw_dense(keys, m, law, words, P, U, X):
    """Samples of the keys ``keys[:m]`` as the dense columns ``X[:n, :m]``.

    ``X`` (n + 1, ``w``, any float dtype) receives ``x_j`` of sample ``r`` in
    ``X[j, r]`` (each float64 value rounded once, zero where feature ``j`` is
    inactive; row ``n`` is scratch), the samples of :func:`draw_sample` bit for
    bit.  ``P`` (``max(n + 1, 3)``, ``w``, int64) and ``U`` (float64, ``w``)
    are scratch, and so are the keys (overwritten for U(0, 1) values and ``0
    < p < 1``, where only the samples that have not ended are drawn further).
    ``law`` is a law of :func:`dense_sampling`, ``words`` from
    :func:`dense_words`.  The arrays have ``w >= dense_width(m)`` columns;
    ``keys`` beyond ``m`` may hold anything.  Returns the rows of gaps or
    values drawn.
    """
    n = law.n
    if law.code == UNIFORM and law.pmax > 0.0 and law.pmax < 1.0:
        return _draw_uniform(keys, m, law, words, P, U, X)
    if law.pmax >= 1.0:
        _all_active(m, n, P)
        rows = n
    elif law.pmax <= 0.0:
        rows = 0
    else:
        for r in range(dense_width(m)):
            P[0, r] = -1
        rows = _dense_active(keys, m, law, words, P, 0)
    _dense_values(keys, m, rows, law, words, P, U, X)
    return rows


@njit(inline="always")
def first_active(skey, s0, m, law, words, keys, q):
    """Keys of samples ``s0 .. s0+m-1`` of ``skey``, and which of them have an active feature.

    ``keys[r] = sample_key(skey, s0 + r)`` and ``q[r]`` 1 if that sample has
    an active feature, else 0 (its first gap, from counter 0, reaches ``n``),
    for a law of :func:`dense_sampling` with ``0 < p < 1``; both arrays
    (uint64, int64) have at least ``dense_width(m)`` entries.  Returns how
    many of the ``m`` samples have an active feature.  The test is ``u`` of
    counter 0 against ``(1 - p)^n`` (the thresholds of index ``n``; the
    formula inside the band), so :func:`draw_dense` of the kept keys draws
    the same samples.
    """
    n = law.n
    w = words[0]
    if _nonempty_rows(skey, s0, dense_width(m), w, law.tlo[n], law.thi[n], keys, q) > 0:
        for r in range(m):  # inside the band: the formula decides
            if q[r] < 0:
                ratio = math.log(hashed_uniform(keys[r], w)) / law.log1mp
                q[r] = ratio < n
    kept = 0
    for r in range(m):
        kept += q[r]
    return kept


@njit
def sample_dense(seed, start, n_samples, law, width, nonempty):
    """Samples ``start .. start+n_samples-1`` of ``seed`` as a dense float64 array (rows).

    Drawn ``width`` samples at a time by :func:`draw_dense`, or with
    ``nonempty`` by :func:`draw_dense` for the samples with an active feature
    (:func:`first_active`) (for tests: the rows of
    :meth:`SparseBatch.to_dense` of :func:`fastsuper.sample`).
    """
    n = law.n
    out = np.zeros((n_samples, n))
    skey = seed_key(seed)
    cols = dense_width(width)
    keys = np.zeros(cols, dtype=np.uint64)
    words = dense_words(n)
    P = np.zeros((max(n + 1, 3), cols), dtype=np.int64)
    U = np.empty(cols)
    X = np.empty((n + 1, cols))
    idx = np.empty(cols, dtype=np.int64)
    for s0 in range(0, n_samples, width):
        m = min(width, n_samples - s0)
        if nonempty and law.pmax <= 0.0:
            count = 0
        elif nonempty:  # the way of the training kernels: the samples with active features
            count = m
            if law.pmax < 1.0:
                first_active(skey, start + s0, m, law, words, keys, idx)
                count = 0
                for r in range(m):
                    keys[count] = keys[r]
                    q = idx[r]
                    idx[count] = r
                    count += q
            else:
                dense_keys(skey, start + s0, m, keys)
                for r in range(m):
                    idx[r] = r
            draw_dense(keys, count, law, words, P, U, X)
        else:
            dense_keys(skey, start + s0, m, keys)
            draw_dense(keys, m, law, words, P, U, X)
            count = m
            for r in range(m):
                idx[r] = r
        for r in range(count):
            for j in range(n):
                out[s0 + idx[r], j] = X[j, r]
    return out


# --------------------------------------------------------------------------
# CPU kernels of the public sampler


@parallel_njit
def _sample_counts(seed, start, n_samples, chunk, law, rule):
    """Number of active features of samples ``start .. start+n_samples-1`` drawn by ``rule``.

    Chunks of ``chunk`` samples are the parallel work items.
    """
    counts = np.zeros(n_samples, dtype=np.int64)
    skey = seed_key(seed)
    n_chunks = (n_samples + chunk - 1) // chunk
    for ci in numba.prange(n_chunks):
        idx = np.empty(law.n, dtype=np.int64)
        blaw, brule, bidx = borrowed_law(law), borrowed_rule(rule), borrow(idx)
        lo = ci * chunk
        hi = min(lo + chunk, n_samples)
        for s in range(lo, hi):
            counts[s] = draw_active_by(sample_key(skey, start + s), blaw, brule, bidx, 0)
    return counts


@parallel_njit
def _sample_fill(seed, start, n_samples, chunk, law, rule, indptr, indices, values):
    """The samples of :func:`_sample_counts` into CSR arrays whose ``indptr`` it gave."""
    skey = seed_key(seed)
    blaw, brule = borrowed_law(law), borrowed_rule(rule)
    bidx, bval = borrow(indices), borrow(values)
    n_chunks = (n_samples + chunk - 1) // chunk
    for ci in numba.prange(n_chunks):
        lo = ci * chunk
        hi = min(lo + chunk, n_samples)
        for s in range(lo, hi):
            key = sample_key(skey, start + s)
            o = indptr[s]
            k = draw_active_by(key, blaw, brule, bidx, o)
            draw_values(key, k, blaw, bval, o)


@dataclass(frozen=True)
class SparseBatch:
    """A batch of sparse inputs in CSR form.

    Sample ``s`` has active features ``indices[indptr[s]:indptr[s+1]]``
    (sorted) with values ``values[indptr[s]:indptr[s+1]]``.
    """

    indptr: np.ndarray
    indices: np.ndarray
    values: np.ndarray
    n: int

    @property
    def n_samples(self) -> int:
        return self.indptr.shape[0] - 1

    def __len__(self) -> int:
        return self.n_samples

    def counts(self) -> np.ndarray:
        """Number of active features of each sample."""
        return np.diff(self.indptr)

    def to_dense(self) -> np.ndarray:
        """The batch as a dense ``(n_samples, n)`` array."""
        out = np.zeros((self.n_samples, self.n), dtype=self.values.dtype)
        rows = np.repeat(np.arange(self.n_samples), self.counts())
        out[rows, self.indices] = self.values
        return out


def sample(
    inputs: SparseInputs, n_samples: int, seed: int = 0, *, start: int = 0,
    chunk_size: int = 4096, dtype=np.float64,
) -> SparseBatch:  # fmt: skip
    """Draw ``n_samples`` inputs, the samples numbered from ``start`` on.

    Sample ``s`` is a function of ``(seed, s)`` alone, so any split of the
    range (threads, ``chunk_size``, ``start``) gives the same numbers bit for bit.

    Parameters
    ----------
    inputs : SparseInputs
        The input law.
    n_samples : int
        How many samples to draw.
    seed : int, default 0
        Seed, an integer in ``[-2**63, 2**64)`` (a negative one is taken modulo ``2**64``).
    start : int, default 0
        Index of the first sample.
    chunk_size : int, default 4096
        Samples per parallel work item (does not change the numbers).
    dtype : {numpy.float64, numpy.float32}
        dtype of ``values``.

    Returns
    -------
    SparseBatch
        CSR batch with ``indptr``, ``indices``, ``values`` and ``to_dense()``.

    Examples
    --------
    >>> import fastsuper as fs
    >>> batch = fs.sample(fs.SparseInputs(50, p=0.1, values="rademacher"), 1000, seed=1)
    >>> batch.to_dense().shape
    (1000, 50)
    >>> bool(abs(batch.counts().mean() - 5.0) < 0.5)
    True
    """
    if not isinstance(inputs, SparseInputs):
        raise TypeError(f"inputs must be a SparseInputs, got {type(inputs).__name__}")
    inputs.check_sampleable(func="sample")
    dtype = np.dtype(dtype)
    if dtype not in v.FLOAT_DTYPES:
        raise TypeError(f"dtype must be float32 or float64, got {dtype}")
    n_samples, seed, start, chunk_size = _check_range(n_samples, seed, start, chunk_size)
    # counts and indptr (int64), then an index (int64) and a value (float64) per active entry
    v.check_memory(
        f"a batch of n_samples = {n_samples} samples with {inputs.expected_active:g} active "
        "features each on average",
        16.0 * n_samples * (1.0 + inputs.expected_active),
        func="sample",
        hint="draw the samples in pieces (start=)",
    )
    batch = draw_batch(inputs._kernel_params(), plain_rule(), n_samples, seed, start, chunk_size)
    return SparseBatch(batch.indptr, batch.indices, batch.values.astype(dtype, copy=False), batch.n)


def _check_range(n_samples, seed, start, chunk_size) -> tuple:
    """``(n_samples, seed, start, chunk_size)`` of a draw, checked."""
    n_samples = v.check_int("n_samples", n_samples, minimum=0)
    seed = v.check_seed("seed", seed)
    start = v.check_int("start", start, minimum=0)
    if start + n_samples > (1 << 63) - 1:
        raise ValueError(
            f"start + n_samples must be at most 2**63 - 1 (sample indices are int64), got "
            f"start = {start} and n_samples = {n_samples}"
        )
    chunk_size = v.check_int("chunk_size", chunk_size, minimum=1)
    return n_samples, seed, start, chunk_size


def draw_batch(law, rule, n_samples: int, seed: int, start: int, chunk_size: int) -> SparseBatch:
    """Samples ``start .. start + n_samples - 1`` drawn by ``rule``, as a float64 SparseBatch.

    ``law`` and ``rule`` are the bundles of the input law and of the sampling
    rule (:func:`sample`, :func:`fastsuper.mc.stratified.sample_ge2`); the
    other arguments are checked here.
    """
    n_samples, seed, start, chunk_size = _check_range(n_samples, seed, start, chunk_size)
    seed_arg = np.uint64(seed & ((1 << 64) - 1))
    counts = _sample_counts(seed_arg, start, n_samples, chunk_size, law, rule)
    indptr = np.zeros(n_samples + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    total = int(indptr[-1])
    indices = np.empty(total, dtype=np.int64)
    values = np.empty(total, dtype=np.float64)
    _sample_fill(seed_arg, start, n_samples, chunk_size, law, rule, indptr, indices, values)
    return SparseBatch(indptr, indices, values, law.n)
