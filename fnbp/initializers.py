"""Weight and bias initializers, pure and seeded, and the defaults of PyTorch and Keras.

A **weight initializer** is ``init(key, shape, dtype) -> array``. For a weight of
shape ``(fan_in, fan_out)``, or a kernel ``(kh, kw, C_in, C_out)`` (then
``fan_in = kh * kw * C_in`` and ``fan_out = kh * kw * C_out``, see :func:`fans`):

* ``glorot_uniform``: U(-a, a), ``a = sqrt(6 / (fan_in + fan_out))`` (Glorot & Bengio
  2010). The default kernel of Keras ``Dense`` and ``Conv*D`` (``GlorotUniform``);
  torch ``xavier_uniform_``.
* ``glorot_normal``: N(0, 2 / (fan_in + fan_out)); torch ``xavier_normal_``.
* ``he_uniform``: U(-a, a), ``a = sqrt(6 / fan_in)`` (He et al. 2015, for ReLU); Keras
  ``HeUniform``, torch ``kaiming_uniform_(w, nonlinearity="relu")``.
* ``he_normal``: N(0, 2 / fan_in); torch ``kaiming_normal_(w, nonlinearity="relu")``.
* ``torch_uniform``: U(-a, a), ``a = 1 / sqrt(fan_in)``. The default weight of PyTorch
  ``nn.Linear``, ``nn.Conv1d`` and ``nn.Conv2d``: ``kaiming_uniform_(w, a=sqrt(5))``.
* ``small_normal``: 0.01 * N(0, 1), the teaching notebook's choice.

(Keras's ``GlorotNormal`` and ``HeNormal`` draw a *truncated* normal; fnbp's
normals are not truncated.) ``torch_uniform``'s bound: ``kaiming_uniform_`` draws
U(-b, b) with ``b = sqrt(3) * gain / sqrt(fan_in)`` and, for ``a = sqrt(5)``,
``gain = sqrt(2 / (1 + a**2)) = sqrt(1 / 3)``, so ``b = 1 / sqrt(fan_in)``.

A **bias initializer** is ``init(key, shape, dtype, fan_in) -> array``, given
the ``fan_in`` of the layer's weight:

* ``zeros``: 0, the default of Keras (``bias_initializer="zeros"``) and of fnbp;
* ``torch_bias``: U(-a, a), ``a = 1 / sqrt(fan_in)``, PyTorch's ``nn.Linear`` /
  ``nn.Conv*d`` bias (``bound = 1 / math.sqrt(fan_in)`` in ``reset_parameters``).

A **scheme** names both: ``"torch"`` is ``torch_uniform`` + ``torch_bias``,
``"keras"`` is ``glorot_uniform`` + ``zeros``; ``Dense.init(key, 3, 4, init="torch")``
draws a layer as ``torch.nn.Linear(3, 4)`` would -- the same distributions, not the
same numbers (fnbp's random streams are its own). See :func:`resolve`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from . import random, validation
from .errors import DTypeError, ShapeError

__all__ = [
    "glorot_uniform",
    "glorot_normal",
    "he_uniform",
    "he_normal",
    "torch_uniform",
    "small_normal",
    "zeros",
    "torch_bias",
    "SCHEMES",
    "fans",
    "get",
    "get_bias",
    "resolve",
]

Initializer = Callable[[random.Key, tuple[int, ...], DTypeLike], np.ndarray]
BiasInitializer = Callable[[random.Key, tuple[int, ...], DTypeLike, int], np.ndarray]


def fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a weight ``(in, out)`` or kernel ``(*kernel, C_in, C_out)``:
    the axes before the last two are the receptive field, multiplying both (as in
    PyTorch's ``_calculate_fan_in_and_fan_out`` and Keras's ``compute_fans``)."""
    receptive = math.prod(shape[:-2]) if len(shape) > 2 else 1
    fan_in = shape[-2] if len(shape) >= 2 else shape[0]
    return fan_in * receptive, shape[-1] * receptive


def _checked(owner: str, key: Any, shape: Any, dtype: Any) -> tuple[tuple[int, ...], np.dtype]:
    """``(shape, dtype)`` checked: a key, at least one axis of sizes >= 1, float32 or float64."""
    if not isinstance(key, random.Key):
        raise validation.fail(owner, "key", "an fnbp key (fb.random.key(seed))", key)
    shape = validation.check_dims(owner, "shape", shape, low=1, min_ndim=1)
    return shape, validation.float_dtype(owner, dtype)


def _checking(fn: Callable[..., Any], what: str) -> Callable[..., Any]:
    """``fn``, a function of the caller's own, with what it returns checked: an array of
    the shape and dtype it was asked for (a ShapeError or DTypeError naming it)."""

    @functools.wraps(fn)
    def checked(key: random.Key, shape: tuple[int, ...], dtype: Any, *rest: Any) -> Any:
        w = fn(key, shape, dtype, *rest)
        got = np.asarray(w)
        if got.shape != tuple(shape):
            raise ShapeError(f"{what} {fn!r:.60} returned shape {got.shape} for {tuple(shape)}")
        if got.dtype != np.dtype(dtype):
            raise DTypeError(f"{what} {fn!r:.60} returned dtype {got.dtype} for {np.dtype(dtype)}")
        return w

    return checked


def _uniform(key: random.Key, shape: tuple[int, ...], dtype: DTypeLike, limit: float) -> np.ndarray:
    return random.uniform(key, shape, -limit, limit, dtype=dtype)


def _normal(key: random.Key, shape: tuple[int, ...], dtype: DTypeLike, std: float) -> np.ndarray:
    w = random.normal(key, shape, dtype=dtype)
    w *= std
    return w


def glorot_uniform(
    key: random.Key, shape: tuple[int, ...], dtype: DTypeLike = np.float32
) -> np.ndarray:
    """Glorot/Xavier uniform: U(-a, a) with ``a = sqrt(6 / (fan_in + fan_out))``."""
    shape, dtype = _checked("glorot_uniform", key, shape, dtype)
    fan_in, fan_out = fans(shape)
    return _uniform(key, shape, dtype, math.sqrt(6.0 / (fan_in + fan_out)))


def glorot_normal(
    key: random.Key, shape: tuple[int, ...], dtype: DTypeLike = np.float32
) -> np.ndarray:
    """Glorot/Xavier normal: N(0, 2 / (fan_in + fan_out))."""
    shape, dtype = _checked("glorot_normal", key, shape, dtype)
    fan_in, fan_out = fans(shape)
    return _normal(key, shape, dtype, math.sqrt(2.0 / (fan_in + fan_out)))


def he_uniform(
    key: random.Key, shape: tuple[int, ...], dtype: DTypeLike = np.float32
) -> np.ndarray:
    """He/Kaiming uniform: U(-a, a) with ``a = sqrt(6 / fan_in)``."""
    shape, dtype = _checked("he_uniform", key, shape, dtype)
    return _uniform(key, shape, dtype, math.sqrt(6.0 / fans(shape)[0]))


def he_normal(key: random.Key, shape: tuple[int, ...], dtype: DTypeLike = np.float32) -> np.ndarray:
    """He/Kaiming normal: N(0, 2 / fan_in)."""
    shape, dtype = _checked("he_normal", key, shape, dtype)
    return _normal(key, shape, dtype, math.sqrt(2.0 / fans(shape)[0]))


def torch_uniform(
    key: random.Key, shape: tuple[int, ...], dtype: DTypeLike = np.float32
) -> np.ndarray:
    """PyTorch's default weight: U(-a, a) with ``a = 1 / sqrt(fan_in)``
    (``kaiming_uniform_(w, a=sqrt(5))`` of ``nn.Linear`` and ``nn.Conv*d``)."""
    shape, dtype = _checked("torch_uniform", key, shape, dtype)
    return _uniform(key, shape, dtype, 1.0 / math.sqrt(fans(shape)[0]))


def small_normal(
    key: random.Key, shape: tuple[int, ...], dtype: DTypeLike = np.float32
) -> np.ndarray:
    """The notebook's initializer: ``0.01 * N(0, 1)``."""
    shape, dtype = _checked("small_normal", key, shape, dtype)
    return _normal(key, shape, dtype, 0.01)


_BY_NAME = {
    f.__name__: f
    for f in (glorot_uniform, glorot_normal, he_uniform, he_normal, torch_uniform, small_normal)
}


def get(init: str | Initializer) -> Initializer:
    """A weight initializer by name, or ``init`` itself when it is a function (what it
    returns is then checked)."""
    if isinstance(init, str) and init in _BY_NAME:
        return _BY_NAME[init]
    if callable(init) and not isinstance(init, type):
        return init if init in _BY_NAME.values() else _checking(init, "initializer")
    raise ValueError(
        f"unknown initializer {init!r}; expected one of {sorted(_BY_NAME)}, "
        f"a scheme {sorted(SCHEMES)}, or a function (key, shape, dtype) -> array"
    )


# --- biases -------------------------------------------------------------------------------------


def zeros(
    key: random.Key, shape: tuple[int, ...], dtype: DTypeLike = np.float32, fan_in: int = 1
) -> np.ndarray:
    """A zero bias: Keras's default (and fnbp's); ``key`` and ``fan_in`` are not used."""
    shape = validation.check_dims("zeros", "shape", shape, min_ndim=1)
    return np.zeros(shape, validation.float_dtype("zeros", dtype))


def torch_bias(
    key: random.Key, shape: tuple[int, ...], dtype: DTypeLike = np.float32, fan_in: int = 1
) -> np.ndarray:
    """PyTorch's default bias: U(-a, a) with ``a = 1 / sqrt(fan_in)``, ``fan_in`` the
    weight's (``nn.Linear`` and ``nn.Conv*d``'s ``reset_parameters``)."""
    shape, dtype = _checked("torch_bias", key, shape, dtype)
    fan_in = validation.check_int("torch_bias", "fan_in", fan_in, low=1)
    return _uniform(key, shape, dtype, 1.0 / math.sqrt(fan_in))


_BIAS_BY_NAME = {f.__name__: f for f in (zeros, torch_bias)}

SCHEMES: dict[str, tuple[str, str]] = {
    "torch": ("torch_uniform", "torch_bias"),
    "keras": ("glorot_uniform", "zeros"),
}
"""A framework's defaults: ``name -> (weight initializer, bias initializer)``."""


def get_bias(init: str | BiasInitializer) -> BiasInitializer:
    """A bias initializer by name (``"zeros"``, ``"torch_bias"``), or ``init`` if a function
    (what it returns is then checked)."""
    if isinstance(init, str) and init in _BIAS_BY_NAME:
        return _BIAS_BY_NAME[init]
    if callable(init) and not isinstance(init, type):
        return init if init in _BIAS_BY_NAME.values() else _checking(init, "bias initializer")
    raise ValueError(
        f"unknown bias initializer {init!r}; expected one of {sorted(_BIAS_BY_NAME)} "
        "or a function (key, shape, dtype, fan_in) -> array"
    )


def resolve(
    init: str | Initializer, bias_init: str | BiasInitializer | None = None
) -> tuple[Initializer, BiasInitializer]:
    """``(weight initializer, bias initializer)`` for a layer's ``init`` and ``bias_init``.

    ``init`` is a weight initializer (a name or a function) or a scheme
    (``"torch"``, ``"keras"``); ``bias_init`` is a bias initializer, or None
    for the scheme's bias (``zeros`` after a plain weight initializer).

    >>> w, b = resolve("torch")
    >>> w.__name__, b.__name__
    ('torch_uniform', 'torch_bias')
    """
    if isinstance(init, str) and init in SCHEMES:
        weight, bias = SCHEMES[init]
        return get(weight), get_bias(bias if bias_init is None else bias_init)
    return get(init), get_bias("zeros" if bias_init is None else bias_init)
