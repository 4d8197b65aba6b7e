"""Prepared exact evaluations: one law and one model shape, many weights (THEORY §3).

An optimiser evaluates the exact loss and its gradient hundreds or thousands
of times for one input law and one shape of ``W``.  :class:`ExactEvaluator`
does once what every call of :func:`fastsuper.exact_loss_grad` does again:
checking the arguments and the memory, the moments and cumulants of the
law, Pascal's triangle, the orders of the gradient's Horner rule, the
choice between the serial and the parallel row kernels
(:func:`fastsuper.exact.kernels_prepared.use_parallel`) and the buffers.  An
evaluation is then one matrix product ``W^T W`` into a held buffer and one
compiled pass (:func:`fastsuper.exact.kernels_prepared.prepared_pass`; for
small problems the pass forms ``W^T W`` itself), with the numbers of the
public functions bit for bit.
"""

from __future__ import annotations

import math
import threading

import numpy as np

from fastsuper.core import arguments, config
from fastsuper.core import validation as v
from fastsuper.core.blas import single_thread_if_small
from fastsuper.core.laws import SparseInputs
from fastsuper.core.model import Model
from fastsuper.exact.checks import closed_form_exponent
from fastsuper.exact.grouped import grouped_loss_grad, grouped_terms
from fastsuper.exact.kernels_fused import fused_loss_grad
from fastsuper.exact.kernels_prepared import (
    MODE_SMALL,
    OVERFLOW_FORWARD,
    OVERFLOW_GRADIENT,
    exact_flops,
    feature_sums,
    kernel_mode,
    prepared_pass,
    use_parallel,
)
from fastsuper.exact.kernels_tensor import monomial_tables, tensor_cost, tensor_loss_grad
from fastsuper.exact.moments import binomials, cumulants_from_moments

__all__ = ["KERNELS", "ExactEvaluator", "default_kernel", "prepared_call"]

_FUNC = "ExactEvaluator"
#: the ``kernel`` choices of :class:`ExactEvaluator`
KERNELS = ("auto", "rows", "fused", "tensor")


def default_kernel(n: int, d: int, m: int) -> str:
    """The kernel of ``kernel="auto"``: ``"rows"`` below
    :data:`fastsuper.core.config.EXACT_FUSED_FROM` features (the public functions' numbers
    bit for bit), from there on the cheaper of ``"fused"`` (cost ``n**2 (4d + 4m)``,
    :func:`~fastsuper.exact.kernels_prepared.exact_flops`) and ``"tensor"``
    (:func:`~fastsuper.exact.kernels_tensor.tensor_cost`, linear in ``n``)."""
    fused_from = config.EXACT_FUSED_FROM
    if fused_from is None or n < fused_from:
        return "rows"
    return "tensor" if tensor_cost(n, d, m) < exact_flops(n, d, m) else "fused"


def _status(terms, dW, db, want_grad: bool) -> int:
    """The :func:`~fastsuper.exact.kernels_prepared.prepared_pass` status of filled buffers."""
    if not (np.all(np.isfinite(terms[1])) and np.all(np.isfinite(terms[2]))):
        return OVERFLOW_FORWARD
    if want_grad and not (np.all(np.isfinite(dW)) and np.all(np.isfinite(db))):
        return OVERFLOW_GRADIENT
    return 0


class ExactEvaluator:
    """Exact loss, gain and gradients of ``power`` models of one shape on one input law.

    Everything that does not depend on the weights is checked and computed
    when the evaluator is made; each call then costs one product ``W^T W``
    and one compiled pass (for small problems one pass that forms ``W^T W``
    itself, :mod:`fastsuper.exact.kernels_small`).  The values are those of
    :func:`fastsuper.exact_loss_grad`, :func:`fastsuper.exact_gain_grad` and
    :func:`fastsuper.exact_loss_and_gain` bit for bit.  For optimisers,
    :meth:`objective` takes a flat parameter vector.  The weights passed to
    a call are trusted: float64 arrays of the shapes below (other dtypes are
    converted, other shapes refused).

    Parameters
    ----------
    inputs : fastsuper.SparseInputs
        Independent Bernoulli inputs (``p`` scalar or per feature); any value
        law with finite moments up to ``2m + 1``, any importances.  A grouped
        law (THEORY §8) is evaluated by :mod:`fastsuper.exact.grouped` on
        every call, with the same numbers as the functions above.
    d : int
        Hidden dimension: ``W`` has shape ``(d, inputs.n)``.
    m : int, default 3
        Exponent of the activation ``phi(t) = t**m`` (integer ``>= 1``).
    bias : bool, default False
        Whether calls take a bias ``b`` (shape ``(n,)``) and return ``dL/db``.
    parallel : bool, optional
        Run the ``O(n**2)`` row kernels on Numba's threads (``True``) or on
        one (``False``).  Default: from the amount of work
        (:func:`fastsuper.exact.kernels_prepared.use_parallel`).  The numbers
        are the same either way.  Problems below
        :data:`fastsuper.core.config.EXACT_SMALL_FLOPS` run the serial
        symmetric kernels of :mod:`fastsuper.exact.kernels_small` whatever
        ``parallel`` says (as the public functions do).
    kernel : {"auto", "rows", "fused", "tensor"}, default "auto"
        ``"rows"``: ``A = W^T W`` formed by one matrix product, then the row
        kernels (the public functions' numbers bit for bit).  ``"fused"``:
        the tiled kernel of :mod:`fastsuper.exact.kernels_fused`, which never
        forms ``A`` (memory ``O(n d)``; faster for large ``n``; the same
        values to round-off, independent of the thread count; always
        parallel).  ``"tensor"``: the moment-tensor kernel of
        :mod:`fastsuper.exact.kernels_tensor`, whose work grows as ``n``
        times the ``binom(d + 2m, 2m)`` monomials of degree ``2m`` instead of
        ``n**2 d`` (far faster for large ``n`` and small ``d``; the same
        values to round-off, independent of the thread count; always
        parallel).  ``"auto"``: ``"rows"`` below ``n =``
        :data:`fastsuper.core.config.EXACT_FUSED_FROM`, from there on the
        cheaper of ``"fused"`` and ``"tensor"`` (:func:`default_kernel`).

    Attributes
    ----------
    n, d, m : int
        Features, hidden dimension, exponent.
    bias : bool
        Whether a bias is taken.
    parallel : bool
        Whether the row kernels run in parallel.
    kernel : str
        ``"rows"``, ``"fused"``, ``"tensor"``, or ``"grouped"`` for a grouped law.
    scale : float
        ``L0 = E sum_j I_j x_j**2``, the loss of ``W = 0`` without bias.
    last_gain : float
        The exact gain at the point of the last :meth:`objective` call
        (``nan`` before the first).

    Raises
    ------
    TypeError, ValueError
        On a bad argument; a :class:`~fastsuper.core.validation.TooLargeError`
        when the kernel's scratch (``A = W^T W`` for ``"rows"``, the moment
        tensors for ``"tensor"``) does not fit in memory.

    See Also
    --------
    fastsuper.exact_loss_grad, fastsuper.exact_gain_grad, fastsuper.fit_exact

    Examples
    --------
    >>> import numpy as np, fastsuper as fs
    >>> inputs = fs.SparseInputs(2, p=0.1, values="gaussian")
    >>> ev = fs.ExactEvaluator(inputs, d=2, m=3)
    >>> W = (1 / 5) ** (1 / 6) * np.eye(2)  # the unsuperposed optimum (THEORY §5.1)
    >>> gain, dW, db = ev.gain_grad(W)
    >>> round(gain, 12), bool(np.abs(dW).max() < 1e-14), db
    (0.12, True, None)
    >>> gain == fs.exact_gain_grad(fs.Model(W, exponent=3), inputs)[0]
    True
    """

    def __init__(self, inputs: SparseInputs, d: int, m: int = 3, *, bias: bool = False,
                 parallel: bool | None = None, kernel: str = "auto"):  # fmt: skip
        arguments.check_inputs(inputs, func=_FUNC)
        self.n = n = inputs.n
        self.d = d = v.check_int("d", d, minimum=1, func=_FUNC, what=" (hidden dimension)")
        self.m = m = v.check_int("m", m, minimum=1, func=_FUNC, what=" (the exponent)")
        self.bias = v.check_bool("bias", bias, func=_FUNC)
        kernel = v.check_choice("kernel", kernel, KERNELS, func=_FUNC)
        if kernel == "auto":
            kernel = default_kernel(n, d, m)
        self._grouped = inputs.pattern == "grouped"
        if self._grouped:  # the grouped closed form (THEORY §8) on every call
            kernel = "grouped"
        zeros = Model(np.zeros((d, n)), exponent=m)  # only the rows kernels form the n x n A
        closed_form_exponent(_FUNC, zeros, inputs, kernel=kernel)
        if parallel is None:
            parallel = use_parallel(n, d, m)
        self.parallel = v.check_bool("parallel", parallel, func=_FUNC)
        self._mode = kernel_mode(n, d, m, self.parallel)
        self.kernel = kernel
        self.inputs = inputs
        self._tables(inputs, m)
        self._A = np.empty((n, n) if kernel == "rows" else (0, 0))
        self._terms = np.empty((3, n))
        self._dW = np.empty((d, n))
        self._db = np.empty(n)
        self._per = np.empty(n)
        self._zero_b = np.zeros(n)
        # fused: small products only; tensor: none
        fma = 0.0 if kernel in ("fused", "tensor") else float(n) * n * d
        self._monomials = monomial_tables(d, 2 * m) if kernel == "tensor" else None
        self._blas = single_thread_if_small(fma)
        # products this small run on one BLAS thread anyway (no thread to stop from spinning)
        self._limit_blas = not 0.0 < fma <= config.BLAS_SINGLE_THREAD_MNK
        self.last_gain = math.nan
        self.scale = inputs.law.moment(2) * math.fsum((self._imp * self._p).tolist())

    def _tables(self, inputs: SparseInputs, m: int) -> None:
        """The law's moments and cumulants, Pascal's triangle and the gradient's orders."""
        R = 2 * m
        self._binom = binomials(R)
        self._p = np.asarray(inputs.p, dtype=np.float64)
        mu = np.array([inputs.law.moment(r) for r in range(R + 2)], dtype=np.float64)
        with np.errstate(over="ignore", invalid="ignore", under="ignore"):
            ex = self._p[None, :] * mu[:, None]
            ex[0] = 1.0
            self._kx = cumulants_from_moments(ex[: R + 1], self._binom)
        self._ex = ex
        self._imp = np.ascontiguousarray(inputs.importance, dtype=np.float64)
        orders = [r for r in range(R, 0, -1) if np.any(self._kx[r] != 0.0)]
        self._orders = np.array(orders, dtype=np.int64)
        self._tables_args = (self._binom, self._ex, self._kx, self._imp, self._orders, m)

    # ------------------------------------------------------------ evaluation
    def _weights(self, W, b):
        """``(W, b, has_b)`` as float64 C-contiguous arrays of the evaluator's shapes.

        A float64 ndarray of the right shape is taken as it is (a NaN or an
        infinity in it is found when the pass reports a non-finite result);
        anything else goes through the package's array checks.
        """
        W = self._array("W", W, (self.d, self.n))
        if b is None:
            return W, self._zero_b, False
        if not self.bias:
            raise ValueError(f"{_FUNC}: made with bias=False, but a bias b was given")
        return W, self._array("b", b, (self.n,)), True

    def _array(self, name: str, x, shape: tuple) -> np.ndarray:
        if not (isinstance(x, np.ndarray) and x.dtype == np.float64 and x.shape == shape):
            x = v.as_float_array(name, x, ndim=len(shape), shape=shape, func=_FUNC)
            x = x.astype(np.float64, copy=False)
        return np.ascontiguousarray(x)

    def _fill(self, W, b, has_b: bool, want_grad: bool) -> int:
        """Fill the buffers for checked ``(W, b)``; return the pass's status (0: finite)."""
        if self._grouped:
            return self._run_grouped(W, b if has_b else None, want_grad)
        if self.kernel == "fused":
            with self._blas:  # the tiles' products on one BLAS thread
                fused_loss_grad(W, b, has_b, *self._tables_args, want_grad, self._terms,
                                self._dW, self._db, config.EXACT_FUSED_ROWS,
                                config.EXACT_FUSED_COLS, config.EXACT_FUSED_GROUPS)  # fmt: skip
            return _status(self._terms, self._dW, self._db, want_grad)
        if self.kernel == "tensor":
            tensor_loss_grad(W, b, has_b, *self._tables_args, want_grad, self._terms, self._dW,
                             self._db, self._monomials, config.EXACT_TENSOR_COLS,
                             config.EXACT_TENSOR_GROUPS)  # fmt: skip
            return _status(self._terms, self._dW, self._db, want_grad)
        if self._mode != MODE_SMALL:  # the small kernels form A themselves
            if self._limit_blas:
                with self._blas:
                    np.matmul(W.T, W, out=self._A)
            else:
                np.matmul(W.T, W, out=self._A)
        return prepared_pass(self._A, W, b, has_b, *self._tables_args, self._mode, want_grad,
                             self._terms, self._dW, self._db)  # fmt: skip

    def _run(self, W, b, want_grad: bool, func: str) -> int:
        """Fill the buffers for ``(W, b)``; raise FloatingPointError on overflow."""
        W, b, has_b = self._weights(W, b)
        status = self._fill(W, b, has_b, want_grad)
        if status:
            for name, x in (("W", W), ("b", b)):
                if not np.isfinite(x).all():
                    raise ValueError(f"{func}: {name} has a NaN or an infinite entry")
            part = "a forward moment" if status == OVERFLOW_FORWARD else "the gradient"
            raise FloatingPointError(
                f"{func}: float64 overflow in {part} with m = {self.m} (max |W| = "
                f"{np.max(np.abs(W)):.3g}); the 2m-th moments of A x + b exceed the float64 "
                "range, rescale W or b"
            )
        return status

    def _run_grouped(self, W, b, want_grad: bool) -> int:
        """:meth:`_run` for a grouped law: the buffers from :mod:`fastsuper.exact.grouped`."""
        model = Model(W, b, exponent=self.m)
        if want_grad:
            fw, dW, db = grouped_loss_grad(model, self.inputs, self.m)
            self._dW[...] = dW
            self._db[...] = db
        else:
            fw = grouped_terms(model, self.inputs, self.m)[0]
        self._terms[0], self._terms[1], self._terms[2] = fw.ex2, fw.exzm, fw.ez2m
        return _status(self._terms, self._dW, self._db, want_grad)

    def _sums(self, func: str) -> tuple[float, float]:
        """``(loss, gain)`` of the filled buffers, each ``math.fsum`` of its per-feature values."""
        loss, gain = feature_sums(self._terms, self._imp, self._per)
        if not (math.isfinite(loss) and math.isfinite(gain)):
            raise FloatingPointError(f"{func}: float64 overflow summing over features")
        return loss, gain

    def loss_and_gain(self, W, b=None) -> tuple[float, float]:
        """Exact loss and gain of ``(W, b)`` (as :func:`fastsuper.exact_loss_and_gain`)."""
        func = f"{_FUNC}.loss_and_gain"
        self._run(W, b, False, func)
        return self._sums(func)

    def loss_grad(self, W, b=None):
        """Exact loss and gradient, as :func:`fastsuper.exact_loss_grad` (``wrt_bias=bias``).

        Returns
        -------
        loss : float
        dW : ndarray of shape (d, n)
        db : ndarray of shape (n,), or None without bias
        """
        func = f"{_FUNC}.loss_grad"
        self._run(W, b, True, func)
        loss = self._sums(func)[0]
        return loss, self._dW.copy(), (self._db.copy() if self.bias else None)

    def gain_grad(self, W, b=None):
        """Exact gain and its gradient, as :func:`fastsuper.exact_gain_grad` (``wrt_bias=bias``).

        Returns
        -------
        gain : float
        dW : ndarray of shape (d, n)
        db : ndarray of shape (n,), or None without bias
        """
        func = f"{_FUNC}.gain_grad"
        self._run(W, b, True, func)
        gain = self._sums(func)[1]
        return gain, -self._dW, (-self._db if self.bias else None)

    def objective(self, x, scale: float = 1.0):
        """``(-L~ / scale, gradient)`` at the flat point ``x = (W.ravel(), b)``, for minimisers.

        ``x`` has ``d * n`` entries (``W`` in C order), plus ``n`` for ``b``
        with ``bias=True``; the gradient is a new array of the same length.
        ``scale=ev.scale`` gives the objective :func:`fastsuper.fit_exact`
        minimises, ``L / L0 - 1``.  Raises FloatingPointError when a moment
        overflows (a step too long: return ``inf`` to the optimiser).
        """
        func = f"{_FUNC}.objective"
        self.last_gain = math.nan
        x = self._array("x", x, (self.d * self.n + (self.n if self.bias else 0),))
        nw = self.d * self.n
        W = x[:nw].reshape(self.d, self.n)
        b = x[nw:] if self.bias else None
        self._run(W, b, True, func)
        gain = self._sums(func)[1]
        self.last_gain = gain
        grad = np.empty(nw + (self.n if self.bias else 0))
        np.divide(self._dW.reshape(-1), scale, out=grad[:nw])
        if self.bias:
            np.divide(self._db, scale, out=grad[nw:])
        return -gain / scale, grad

    def __repr__(self) -> str:
        return (
            f"ExactEvaluator(n={self.n}, d={self.d}, m={self.m}, bias={self.bias}, "
            f"parallel={self.parallel}, kernel={self.kernel!r}, "
            f"flops per call={exact_flops(self.n, self.d, self.m):.3g})"
        )


# ------------------------------------------------------------------ the public functions' cache

#: the evaluators of :func:`prepared_call`, one cache per thread (their buffers are not shared)
_LOCAL = threading.local()


def _cached_evaluator(model, inputs, d: int, m: int, kernel: str) -> ExactEvaluator | None:
    """The evaluator of ``(inputs, d, m)`` from this thread's cache, made on a miss.

    Keyed on everything the preparation reads: ``d``, ``m``, the value law,
    ``p`` and the importances (their bytes, so a law changed in place gets a
    new evaluator).  At most :data:`fastsuper.core.config.EXACT_CACHE_SIZE`
    evaluators holding :data:`fastsuper.core.config.EXACT_CACHE_BYTES` of
    ``A`` buffers are kept, the least recently used dropped first.  ``None``
    where the evaluator cannot be made (the general path reports why).
    """
    law, p, imp = inputs.law, inputs.p, inputs.importance
    if type(p) is not np.ndarray or type(imp) is not np.ndarray:
        return None
    law_key = (law.code, law.support.tobytes(), law.probs.tobytes())
    key = (d, m, kernel, law_key, p.tobytes(), imp.tobytes())
    cache = getattr(_LOCAL, "cache", None)
    if cache is None:
        cache = _LOCAL.cache = {}
    ev = cache.pop(key, None)
    if ev is None:
        try:
            ev = ExactEvaluator(inputs, d, m, bias=True, kernel=kernel)
        except (TypeError, ValueError, MemoryError):
            return None
        held = ev._A.nbytes
        for old in list(cache):
            if (
                len(cache) < config.EXACT_CACHE_SIZE
                and held + sum(e._A.nbytes for e in cache.values()) <= config.EXACT_CACHE_BYTES
            ):
                break
            del cache[old]
    cache[key] = ev  # the most recently used last
    return ev


def _as_f64(x, shape: tuple):
    """``x`` as a C-contiguous float64 array of ``shape``, or None (the general path's case)."""
    if type(x) is not np.ndarray or x.shape != shape or x.dtype.kind != "f":
        return None
    if x.dtype == np.float64 and x.flags.c_contiguous:
        return x
    return np.ascontiguousarray(x, dtype=np.float64)


def _cached_fill(model, inputs, backend, want_grad: bool):
    """The cached evaluator of a plain call, filled for ``model``'s weights, or ``None``
    (see :func:`prepared_call`)."""
    if not (type(backend) is str and backend == "cpu"):
        return None
    if type(model) is not Model or type(inputs) is not SparseInputs:
        return None
    n, d, m = model.n, model.d, model.int_exponent
    if model.activation != "power" or inputs.pattern != "bernoulli" or inputs.n != n or m < 1:
        return None
    kernel = default_kernel(n, d, m)
    if kernel == "rows" and 8.0 * n * n > config.EXACT_CACHE_BYTES:
        return None
    W = _as_f64(model.W, (d, n))
    b = None if model.b is None else _as_f64(model.b, (n,))
    if W is None or (b is None and model.b is not None):
        return None
    ev = _cached_evaluator(model, inputs, d, m, kernel)
    if ev is None or ev._fill(W, ev._zero_b if b is None else b, b is not None, want_grad):
        return None
    return ev


def prepared_call(model, inputs, backend, wrt_bias, gain: bool):
    """:func:`fastsuper.exact_loss_grad` (or ``exact_gain_grad`` with ``gain``) of a cached
    evaluator, or ``None`` where the call takes the general path.

    Plain calls (a float ``power`` model on the CPU, independent Bernoulli
    inputs, ``A = W^T W`` within the cache's memory) are answered by a
    prepared :class:`ExactEvaluator` from a small per-thread cache: a few
    cheap checks of the arguments and one compiled pass, the same numbers
    bit for bit.  From ``n >=``
    :data:`fastsuper.core.config.EXACT_FUSED_FROM` features on, the
    evaluator runs the fused kernel (:mod:`fastsuper.exact.kernels_fused`:
    no ``n x n`` matrix, the row kernels' values to round-off).  Anything
    else -- other types, a bad argument, a NaN, an overflow -- returns
    ``None``, and the general path of the public function checks the
    arguments and raises its errors.
    """
    if not (wrt_bias is True or wrt_bias is False):
        return None
    ev = _cached_fill(model, inputs, backend, True)
    if ev is None:
        return None
    total = feature_sums(ev._terms, ev._imp, ev._per)[1 if gain else 0]
    if not math.isfinite(total):
        return None
    if gain:
        return total, -ev._dW, (-ev._db if wrt_bias else None)
    return total, ev._dW.copy(), (ev._db.copy() if wrt_bias else None)


def prepared_values(model, inputs, backend, per_feature, which: str):
    """``exact_loss`` (``which="loss"``), ``exact_gain`` (``"gain"``) or
    ``exact_loss_and_gain`` (``"both"``) of a cached evaluator (its forward pass
    only), or ``None`` where the call takes the general path (as
    :func:`prepared_call`: the same numbers bit for bit below
    ``config.EXACT_FUSED_FROM`` features, to round-off from there on)."""
    if not (per_feature is True or per_feature is False):
        return None
    if type(model) is Model and not v.within_memory(8.0 * model.n * model.n):
        return None  # the general path forms A (n x n) and refuses with the sizes
    ev = _cached_fill(model, inputs, backend, False)
    if ev is None:
        return None
    if per_feature:
        ex2, exzm, ez2m = ev._terms[0], ev._terms[1], ev._terms[2]
        with np.errstate(over="ignore", invalid="ignore"):
            loss = ev._imp * (ex2 - 2.0 * exzm + ez2m) if which != "gain" else None
            gain = ev._imp * (2.0 * exzm - ez2m) if which != "loss" else None
        if any(x is not None and not np.isfinite(x).all() for x in (loss, gain)):
            return None
    else:
        loss, gain = feature_sums(ev._terms, ev._imp, ev._per)
        if not (math.isfinite(loss) and math.isfinite(gain)):
            return None
    return loss if which == "loss" else gain if which == "gain" else (loss, gain)
