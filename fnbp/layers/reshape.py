"""Flatten and Reshape: the per-sample axes folded into one, or into a given shape."""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any

import attrs
import numpy as np

from ..core import Layer
from ..errors import ShapeError, StructureError
from ..record import static

__all__ = ["Flatten", "Reshape"]


@attrs.frozen
class Flatten(Layer):
    """``(N, d1, d2, ...) -> (N, d1 * d2 * ...)`` in C order (channels-last stays innermost).

    Backward reshapes back: ``g_x = g_y.reshape(x.shape)``. No parameters, so the
    gradient record is the layer itself. The output is a view of the input when
    numpy can make one (as for ``Identity``); nothing is ever written into it.
    """

    def vjp(self, x: np.ndarray, need_g_x: bool = True) -> tuple[np.ndarray, Callable]:
        """``(x reshaped to (N, -1), pullback)``."""
        if type(x) is not np.ndarray:
            raise StructureError(f"Flatten expects one array, got a {type(x).__name__}")
        if x.ndim < 2:
            raise ShapeError(f"Flatten expects input of shape (N, ...), got {x.shape}")
        shape = x.shape
        y = x.reshape(shape[0], math.prod(shape[1:]))

        def pullback(g_y: np.ndarray) -> tuple[np.ndarray | None, Flatten]:
            return (g_y.reshape(shape) if need_g_x else None), self

        return y, pullback


def _target(shape: Any) -> tuple[int, ...]:
    """A converter: an int or a sequence of ints, each ``>= 1`` or one ``-1``."""
    items = (shape,) if isinstance(shape, int | np.integer) else shape
    try:
        out = tuple(operator.index(s) for s in items if not isinstance(s, bool | np.bool_))
        ok = len(out) == len(items) and all(s >= 1 or s == -1 for s in out)
    except TypeError:
        ok = False
    if not ok or out.count(-1) > 1:
        raise ValueError(
            f"Reshape: shape must be an int or a tuple of ints >= 1 with at most one -1, "
            f"got {shape!r}"
        )
    return out


@attrs.frozen
class Reshape(Layer):
    """``(N, *rest) -> (N, *shape)``: the per-sample axes reshaped, in C order.

    ``shape`` (static) gives the new per-sample axes; one of them may be ``-1``,
    inferred from the others. ``Reshape((L, 1))`` adds a channel axis to signals
    ``(N, L)`` for a ``Conv1D``; ``Reshape(-1)`` is ``Flatten()``. When the
    sample's size does not fit ``shape`` it is a :class:`~fnbp.ShapeError`.
    Backward reshapes back: ``g_x = g_y.reshape(x.shape)``. No parameters; the
    output is a view of the input when numpy can make one.
    """

    shape: tuple[int, ...] = static(converter=_target)

    def _resolve(self, x_shape: tuple[int, ...]) -> tuple[int, ...]:
        size, known = math.prod(x_shape[1:]), math.prod(s for s in self.shape if s != -1)
        fits = size % known == 0 if -1 in self.shape else size == known
        if not fits:
            raise ShapeError(
                f"Reshape{self.shape} cannot reshape input of shape {x_shape}: its "
                f"{size} values per sample do not fill {self.shape}"
            )
        return tuple(size // known if s == -1 else s for s in self.shape)

    def vjp(self, x: np.ndarray, need_g_x: bool = True) -> tuple[np.ndarray, Callable]:
        """``(x reshaped to (N, *shape), pullback)``."""
        if type(x) is not np.ndarray:
            raise StructureError(f"Reshape{self.shape} expects one array, got {type(x).__name__}")
        if x.ndim < 1:
            raise ShapeError(f"Reshape{self.shape} expects input of shape (N, ...), got {x.shape}")
        shape = x.shape
        y = x.reshape(shape[0], *self._resolve(shape))

        def pullback(g_y: np.ndarray) -> tuple[np.ndarray | None, Reshape]:
            return (g_y.reshape(shape) if need_g_x else None), self

        return y, pullback
