"""Weight initializers: ``init(key, shape, dtype) -> array``, pure and seeded.

For a weight of shape ``(fan_in, fan_out)``:

* ``glorot_uniform``: U(-a, a), ``a = sqrt(6 / (fan_in + fan_out))`` (Glorot & Bengio 2010)
* ``glorot_normal``: N(0, 2 / (fan_in + fan_out))
* ``he_uniform``: U(-a, a), ``a = sqrt(6 / fan_in)`` (He et al. 2015, for ReLU)
* ``he_normal``: N(0, 2 / fan_in)
* ``small_normal``: 0.01 * N(0, 1), the teaching notebook's choice
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from numpy.typing import DTypeLike

from . import random

__all__ = ["glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "small_normal", "get"]

Initializer = Callable[[random.Key, tuple[int, ...], DTypeLike], np.ndarray]


def _fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out); leading axes beyond the last two count as receptive field."""
    receptive = math.prod(shape[:-2]) if len(shape) > 2 else 1
    fan_in = shape[-2] if len(shape) >= 2 else shape[0]
    return fan_in * receptive, shape[-1] * receptive


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
    fan_in, fan_out = _fans(shape)
    return _uniform(key, shape, dtype, math.sqrt(6.0 / (fan_in + fan_out)))


def glorot_normal(
    key: random.Key, shape: tuple[int, ...], dtype: DTypeLike = np.float32
) -> np.ndarray:
    """Glorot/Xavier normal: N(0, 2 / (fan_in + fan_out))."""
    fan_in, fan_out = _fans(shape)
    return _normal(key, shape, dtype, math.sqrt(2.0 / (fan_in + fan_out)))


def he_uniform(
    key: random.Key, shape: tuple[int, ...], dtype: DTypeLike = np.float32
) -> np.ndarray:
    """He/Kaiming uniform: U(-a, a) with ``a = sqrt(6 / fan_in)``."""
    return _uniform(key, shape, dtype, math.sqrt(6.0 / _fans(shape)[0]))


def he_normal(key: random.Key, shape: tuple[int, ...], dtype: DTypeLike = np.float32) -> np.ndarray:
    """He/Kaiming normal: N(0, 2 / fan_in)."""
    return _normal(key, shape, dtype, math.sqrt(2.0 / _fans(shape)[0]))


def small_normal(
    key: random.Key, shape: tuple[int, ...], dtype: DTypeLike = np.float32
) -> np.ndarray:
    """The notebook's initializer: ``0.01 * N(0, 1)``."""
    return _normal(key, shape, dtype, 0.01)


_BY_NAME = {
    f.__name__: f for f in (glorot_uniform, glorot_normal, he_uniform, he_normal, small_normal)
}


def get(init: str | Initializer) -> Initializer:
    """An initializer by name, or ``init`` itself when it is callable."""
    if callable(init):
        return init
    try:
        return _BY_NAME[init]
    except KeyError:
        raise ValueError(
            f"unknown initializer {init!r}; expected one of {sorted(_BY_NAME)}"
        ) from None
