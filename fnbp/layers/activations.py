"""Elementwise activations and the softmax family.

Each layer writes its derivative from its *output* where it can, so the
backward pass reuses what the forward pass computed. All of them keep the
input's dtype and neither warn nor overflow at inputs of +-1000.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
import numpy as np

from .._numeric import exp_cut, softplus
from ..core import Layer
from ..record import static

__all__ = ["Identity", "Sigmoid", "Tanh", "ReLU", "LeakyReLU", "Softplus", "Softmax", "LogSoftmax"]


class _Activation(Layer):
    """A layer without parameters: ``y = f(x)``, ``g_x = _g_x(x, y, g_y)``."""

    __slots__ = ()

    def _g_x(self, x: np.ndarray, y: np.ndarray, g_y: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def vjp(self, x: np.ndarray, need_g_x: bool = True) -> tuple[np.ndarray, Callable]:
        """``(f(x), pullback)``; the layer has no parameters, so its grads are itself."""
        y = self.forward(x)

        def pullback(g_y: np.ndarray) -> tuple[np.ndarray | None, _Activation]:
            return (self._g_x(x, y, g_y) if need_g_x else None), self

        return y, pullback


@attrs.frozen
class Identity(_Activation):
    """``y = x``; ``g_x = g_y``."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        return x

    def _g_x(self, x: np.ndarray, y: np.ndarray, g_y: np.ndarray) -> np.ndarray:
        return g_y


@attrs.frozen
class Sigmoid(_Activation):
    """``y = 1 / (1 + exp(-x))``, computed as ``0.5 * (1 + tanh(x / 2))``.

    Derivative from the output: ``dy/dx = y * (1 - y)``.
    """

    def forward(self, x: np.ndarray) -> np.ndarray:
        y = np.multiply(x, 0.5)
        np.tanh(y, out=y)
        y += 1.0
        y *= 0.5
        return y

    def _g_x(self, x: np.ndarray, y: np.ndarray, g_y: np.ndarray) -> np.ndarray:
        g_x = np.subtract(1.0, y, dtype=y.dtype)
        g_x *= y
        g_x *= g_y
        return g_x


@attrs.frozen
class Tanh(_Activation):
    """``y = tanh(x)``; derivative from the output: ``dy/dx = 1 - y**2``."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        return np.tanh(x)

    def _g_x(self, x: np.ndarray, y: np.ndarray, g_y: np.ndarray) -> np.ndarray:
        g_x = np.multiply(y, y)
        np.subtract(1.0, g_x, out=g_x)
        g_x *= g_y
        return g_x


@attrs.frozen
class ReLU(_Activation):
    """``y = max(x, 0)``; ``dy/dx = 1 where y > 0, else 0``."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        return np.maximum(x, 0.0, dtype=x.dtype)

    def _g_x(self, x: np.ndarray, y: np.ndarray, g_y: np.ndarray) -> np.ndarray:
        return np.multiply(g_y, y > 0, dtype=g_y.dtype)


@attrs.frozen
class LeakyReLU(_Activation):
    """``y = x where x > 0, else slope * x``; ``dy/dx = 1 or slope`` likewise."""

    slope: float = static(default=0.01, converter=float)

    def forward(self, x: np.ndarray) -> np.ndarray:
        return np.where(x > 0, x, x * self.slope)

    def _g_x(self, x: np.ndarray, y: np.ndarray, g_y: np.ndarray) -> np.ndarray:
        return np.where(x > 0, g_y, g_y * self.slope)


@attrs.frozen
class Softplus(_Activation):
    """``y = log(1 + exp(x))``, computed as ``max(x, 0) + log1p(exp(-|x|))``.

    ``dy/dx = sigmoid(x) = 1 - exp(-y)``, written from the output as ``-expm1(-y)``.
    """

    def forward(self, x: np.ndarray) -> np.ndarray:
        return softplus(x)

    def _g_x(self, x: np.ndarray, y: np.ndarray, g_y: np.ndarray) -> np.ndarray:
        g_x = np.negative(y)
        np.expm1(g_x, out=g_x)
        np.negative(g_x, out=g_x)
        g_x *= g_y
        return g_x


def _shifted(x: np.ndarray) -> np.ndarray:
    """``x - max(x)`` along the last axis, a new buffer."""
    return np.subtract(x, x.max(axis=-1, keepdims=True))


@attrs.frozen
class Softmax(_Activation):
    """``y_i = exp(x_i) / sum_j exp(x_j)`` along the last axis (max subtracted first).

    Backward without the Jacobian: ``g_x = y * (g_y - sum_j g_y_j * y_j)``.
    """

    def forward(self, x: np.ndarray) -> np.ndarray:
        y = exp_cut(_shifted(x))
        y /= y.sum(axis=-1, keepdims=True)
        return y

    def _g_x(self, x: np.ndarray, y: np.ndarray, g_y: np.ndarray) -> np.ndarray:
        g_x = np.multiply(g_y, y)
        dot = g_x.sum(axis=-1, keepdims=True)
        np.subtract(g_y, dot, out=g_x)
        g_x *= y
        return g_x


@attrs.frozen
class LogSoftmax(_Activation):
    """``y_i = x_i - log sum_j exp(x_j)`` along the last axis (max subtracted first).

    Backward: ``g_x = g_y - exp(y) * sum_j g_y_j``.
    """

    def forward(self, x: np.ndarray) -> np.ndarray:
        y = _shifted(x)
        y -= np.log(exp_cut(y).sum(axis=-1, keepdims=True))
        return y

    def _g_x(self, x: np.ndarray, y: np.ndarray, g_y: np.ndarray) -> np.ndarray:
        g_x = exp_cut(y)
        g_x *= -g_y.sum(axis=-1, keepdims=True)
        g_x += g_y
        return g_x
