"""The tied-weight autoencoder ``x_hat = phi(W^T W x + b)`` (THEORY §1)."""

from __future__ import annotations

import numpy as np

from fastsuper.core import validation as v
from fastsuper.core.activations import (
    ACTIVATIONS,
    DEFAULT_EXPONENTS,
    DEFAULT_PARAMS,
    FIXED_EXPONENTS,
    PARAM_NAMES,
    POWER,
)

__all__ = ["Model", "check_activation", "check_param"]


def check_activation(activation, exponent=None, *, func: str | None = None) -> tuple[str, float]:
    """``(activation, exponent)`` checked; a missing exponent is the activation's default.

    Parameters
    ----------
    activation : str
        Activation (:data:`~fastsuper.core.activations.ACTIVATIONS`): ``"power"``,
        ``"signed_power"``, ``"relu_power"``, ``"relu"``, ``"gelu"``, ``"gelu_tanh"``,
        ``"tanh"``, ``"softplus"``, ``"sigmoid"``, ``"silu"``, ``"leaky_relu"`` or
        ``"identity"``.
    exponent : float, optional
        Exponent ``a > 0``; an integer for ``"power"``, 1 for ``"relu"`` and the
        activations without an exponent (``"gelu"`` ... ``"identity"``).  Default
        :data:`~fastsuper.core.activations.DEFAULT_EXPONENTS` ``[activation]``: 3 for
        ``"power"`` and ``"signed_power"``, 1 for ``"relu_power"`` and ``"relu"``.

    Returns
    -------
    (str, float)
        The activation and its exponent.
    """
    v.check_choice("activation", activation, sorted(ACTIVATIONS), func=func)
    given = exponent
    if exponent is None:
        exponent = DEFAULT_EXPONENTS[activation]
    exponent = v.check_real("exponent", exponent, positive=True, func=func)
    fixed = FIXED_EXPONENTS.get(activation)
    if fixed is not None and exponent != fixed:
        raise ValueError(
            f"{v.prefix(func)}activation={activation!r} has exponent {fixed}, got "
            f"exponent={given!r}; use activation='relu_power' for max(t, 0)**a"
        )
    if ACTIVATIONS[activation] == POWER and not exponent.is_integer():
        raise ValueError(
            f"{v.prefix(func)}exponent must be an integer >= 1 for activation='power', got "
            f"{given!r}; use activation='signed_power' or 'relu_power' for real exponents"
        )
    return activation, exponent


def check_param(activation: str, param=None, *, func: str | None = None) -> float:
    """The parameter of ``activation`` checked: softplus's ``beta``, leaky_relu's ``slope``.

    Parameters
    ----------
    activation : str
        A checked activation name (:func:`check_activation`).
    param : float, optional
        ``beta > 0`` (at most 1e6) for ``"softplus"``, ``0 <= slope <= 1`` for
        ``"leaky_relu"``; default :data:`~fastsuper.core.activations.DEFAULT_PARAMS`
        (1 and 0.01).  Other activations take none (``None``).

    Returns
    -------
    float
        The parameter (0.0 for activations without one).

    Examples
    --------
    >>> check_param("softplus", 2)
    2.0
    >>> check_param("relu")
    0.0
    """
    name = PARAM_NAMES.get(activation)
    if name is None:
        if param is not None:
            raise ValueError(
                f"{v.prefix(func)}activation={activation!r} takes no parameter, got "
                f"param={param!r}; only {sorted(PARAM_NAMES)} have one"
            )
        return 0.0
    if param is None:
        return float(DEFAULT_PARAMS[activation])
    value = v.check_real(f"param ({name} of {activation})", param, func=func)
    lo, hi = (0.0, 1.0) if activation == "leaky_relu" else (0.0, 1e6)
    if not (lo < value <= hi if activation == "softplus" else lo <= value <= hi):
        allowed = "0 < beta <= 1e6" if activation == "softplus" else "0 <= slope <= 1"
        raise ValueError(
            f"{v.prefix(func)}param ({name} of {activation}) must satisfy {allowed}, got {param!r}"
        )
    return value


class Model:
    """Tied-weight autoencoder ``x_hat = phi(W.T @ W @ x + b)``.

    Parameters
    ----------
    W : array_like of shape (d, n), float32 or float64
        Weights; column ``i`` is feature ``i``'s direction.  The dtype of
        ``W`` is the compute dtype of every kernel.
    b : array_like of shape (n,), optional
        Output bias (default none, as in the paper).
    activation : str, default "power"
        The power families (THEORY §1) ``"power"``, ``"signed_power"``,
        ``"relu_power"`` and ``"relu"`` (``"relu_power"`` with exponent 1), or
        ``"gelu"`` (exact erf form), ``"gelu_tanh"`` (its tanh approximation),
        ``"tanh"``, ``"softplus"``, ``"sigmoid"``, ``"silu"``, ``"leaky_relu"``,
        ``"identity"`` (``fastsuper.core.activations.ACTIVATIONS``).
    exponent : float, optional
        Exponent ``a > 0`` of the power families; an integer ``m >= 1`` for
        ``"power"``; 1 (the only value allowed) for ``"relu"`` and the others.
        Default: the activation's own, 3 for ``"power"`` and ``"signed_power"``, 1 for
        the others (:func:`check_activation`).
    param : float, optional
        The activation's parameter: ``beta`` of ``"softplus"``
        (``log(1 + exp(beta t)) / beta``, default 1) or the negative ``slope`` of
        ``"leaky_relu"`` (default 0.01) (:func:`check_param`).

    Examples
    --------
    >>> import numpy as np, fastsuper as fs
    >>> model = fs.Model(np.eye(2, 3), activation="relu_power", exponent=1)
    >>> model.d, model.n, model.dtype
    (2, 3, dtype('float64'))
    >>> fs.Model(np.eye(2, 3), activation="relu")
    Model(d=2, n=3, activation='relu', exponent=1, bias=no, dtype=float64)
    >>> fs.Model(np.eye(2, 3), activation="softplus", param=2.0)
    Model(d=2, n=3, activation='softplus', exponent=1, param=2, bias=no, dtype=float64)
    """

    def __init__(
        self,
        W,
        b=None,
        activation: str = "power",
        exponent: float | None = None,
        *,
        param: float | None = None,
    ):
        self.W = v.check_weights("W", W, dtype=None)
        self.d, self.n = self.W.shape
        self.dtype = self.W.dtype
        if b is None:
            self.b = None
        else:
            self.b = v.as_float_array("b", b, ndim=1, shape=(self.n,)).astype(self.dtype)
        self.activation, self.exponent = check_activation(activation, exponent)
        self.param = check_param(activation, param)
        self.act_code = ACTIVATIONS[activation]
        is_int = float(self.exponent).is_integer()
        self.int_exponent = int(self.exponent) if is_int else -1

    @property
    def bias(self) -> np.ndarray:
        """The bias as an array (zeros when the model has none)."""
        return np.zeros(self.n, self.dtype) if self.b is None else self.b

    @property
    def A(self) -> np.ndarray:
        """``W.T @ W`` (n x n), in the compute dtype."""
        return self.W.T @ self.W

    def _act_args(self):
        """(code, exponent in the compute dtype, integer exponent or -1, parameter)."""
        return self.act_code, self.dtype.type(self.exponent), self.int_exponent, self.param

    def with_params(self, W=None, b=None) -> Model:
        """A copy with other weights or bias (same activation)."""
        return Model(
            self.W if W is None else W,
            self.b if b is None else b,
            self.activation,
            self.exponent,
            param=self.param_or_none,
        )

    @property
    def param_or_none(self) -> float | None:
        """The activation's parameter, or None when it has none (the ``param=`` argument)."""
        return self.param if self.activation in PARAM_NAMES else None

    def __repr__(self) -> str:
        return (
            f"Model(d={self.d}, n={self.n}, activation={self.activation!r}, "
            f"exponent={self.exponent:g}, "
            + (f"param={self.param:g}, " if self.activation in PARAM_NAMES else "")
            + f"bias={'yes' if self.b is not None else 'no'}, "
            f"dtype={self.dtype})"
        )
