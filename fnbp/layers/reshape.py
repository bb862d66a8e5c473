"""Flatten: every axis after the batch axis folded into one."""

from __future__ import annotations

import math
from collections.abc import Callable

import attrs
import numpy as np

from ..core import Layer
from ..errors import ShapeError

__all__ = ["Flatten"]


@attrs.frozen
class Flatten(Layer):
    """``(N, d1, d2, ...) -> (N, d1 * d2 * ...)`` in C order (channels-last stays innermost).

    Backward reshapes back: ``g_x = g_y.reshape(x.shape)``. No parameters, so the
    gradient record is the layer itself. The output is a view of the input when
    numpy can make one (as for ``Identity``); nothing is ever written into it.
    """

    def vjp(self, x: np.ndarray, need_g_x: bool = True) -> tuple[np.ndarray, Callable]:
        """``(x reshaped to (N, -1), pullback)``."""
        if x.ndim < 2:
            raise ShapeError(f"Flatten expects input of shape (N, ...), got {x.shape}")
        shape = x.shape
        y = x.reshape(shape[0], math.prod(shape[1:]))

        def pullback(g_y: np.ndarray) -> tuple[np.ndarray | None, Flatten]:
            return (g_y.reshape(shape) if need_g_x else None), self

        return y, pullback
