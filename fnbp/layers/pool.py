"""Pooling: ``MaxPool1D``, ``MaxPool2D``, ``AvgPool1D``, ``AvgPool2D``, ``GlobalAvgPool``.

Channels-last, like :mod:`fnbp.layers.conv`: inputs ``(N, L, C)`` or ``(N, H, W, C)``;
each channel is pooled on its own. A pool has a window ``pool_size`` and a
``stride`` (by default the window: non-overlapping windows); a stride smaller
than the window makes windows overlap, and their gradients add up. Padding is
``"valid"`` (windows inside the input only) or ``"same"`` (TensorFlow's rule:
``ceil(size / stride)`` outputs per axis; padded positions never win a max and
are not counted in an average).

The windows are read-only strided views of the input (no copy); the backward
pass adds each window's gradient back with one strided add per window offset
(``col2im``, shared with the convolutions), never a loop over positions.

Pools have no parameters, so their gradient record is the layer itself. Float
inputs keep their dtype; integer and boolean inputs are cast to float64.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import attrs
import numpy as np

from .. import validation
from ..core import Layer
from ..errors import ShapeError, StructureError
from ..record import static
from .conv import col2im, crop, geometry, pad, windows

__all__ = ["MaxPool1D", "MaxPool2D", "AvgPool1D", "AvgPool2D", "GlobalAvgPool"]

_AXES = {1: "L", 2: "H, W"}


def _floating(x: np.ndarray, owner: str) -> np.ndarray:
    if type(x) is not np.ndarray:
        raise StructureError(f"{owner} expects one array, got a {type(x).__name__}")
    return validation.floating(x, owner)


class _Pool(Layer):
    """The shared body of the windowed pools; subclasses declare the static fields."""

    __slots__ = ()
    _NDIM = 0
    pool_size: tuple[int, ...]
    stride: tuple[int, ...]
    padding: str

    def __attrs_post_init__(self) -> None:
        if self.stride is None:  # default: the window itself, no overlap
            object.__setattr__(self, "stride", self.pool_size)

    def _describe(self) -> str:
        window = "x".join(map(str, self.pool_size))
        stride = (
            "" if self.stride == self.pool_size else ", stride " + "x".join(map(str, self.stride))
        )
        padding = "" if self.padding == "valid" else f", {self.padding}"
        return f"{type(self).__name__}({window}{stride}{padding})"

    def _check(self, x: np.ndarray) -> tuple[np.ndarray, tuple, tuple[int, ...]]:
        """``(x as float, pads, out)`` after checking the rank and the window's fit."""
        name, d = type(self).__name__, self._NDIM
        x = _floating(x, name)
        if x.ndim != d + 2:
            hint = " (add the channel axis: x[..., None])" if x.ndim == d + 1 else ""
            raise ShapeError(
                f"{name} expects input of shape (N, {_AXES[d]}, C), got {x.shape}{hint}"
            )
        pads, out = geometry(name, x.shape, self.pool_size, self.stride, self.padding)
        return x, pads, out


class _MaxPool(_Pool):
    """``y = max over each window``; the gradient goes to the window's (first) maximum."""

    __slots__ = ()

    def vjp(self, x: np.ndarray, need_g_x: bool = True) -> tuple[np.ndarray, Callable]:
        """``(max over windows, pullback)``; the pullback routes ``g_y`` to each argmax."""
        x, pads, out = self._check(x)
        xp = pad(x, pads, -np.inf)
        n, c, size = x.shape[0], x.shape[-1], math.prod(self.pool_size)
        win = windows(xp, self.pool_size, self.stride, out).reshape(n, *out, size, c)
        where = win.argmax(axis=-2)[..., None, :]  # (N, *out, 1, C): the first maximum
        y = np.take_along_axis(win, where, axis=-2)[..., 0, :]

        def pullback(g_y: np.ndarray) -> tuple[np.ndarray | None, _MaxPool]:
            if not need_g_x:
                return None, self
            g_win = np.zeros((n, *out, size, c), g_y.dtype)
            np.put_along_axis(g_win, where, g_y[..., None, :], axis=-2)
            g_win = g_win.reshape(n, *out, *self.pool_size, c)
            d = self._NDIM  # col2im wants the window axes first
            g_win = np.moveaxis(g_win, range(1 + d, 1 + 2 * d), range(d))
            return crop(col2im(g_win, xp.shape, self.stride), x.shape, pads), self

        return y, pullback


def _counts(x_shape: tuple[int, ...], pads: tuple, out: tuple[int, ...], pool: Any) -> np.ndarray:
    """How many input (not padding) positions each window holds: shape ``(*out, 1)``."""
    per_axis = []
    for n, (before, _), o, k, s in zip(
        x_shape[1:-1], pads, out, pool.pool_size, pool.stride, strict=True
    ):
        start = np.arange(o) * s - before
        per_axis.append(np.minimum(start + k, n) - np.maximum(start, 0))
    counts = per_axis[0]
    for axis in per_axis[1:]:
        counts = np.multiply.outer(counts, axis)
    return counts[..., None]


class _AvgPool(_Pool):
    """``y = mean over each window``; each input in a window gets ``g_y / window count``."""

    __slots__ = ()

    def vjp(self, x: np.ndarray, need_g_x: bool = True) -> tuple[np.ndarray, Callable]:
        """``(mean over windows, pullback)``; the pullback spreads ``g_y`` evenly."""
        x, pads, out = self._check(x)
        d = self._NDIM
        xp = pad(x, pads)
        y = windows(xp, self.pool_size, self.stride, out).sum(axis=tuple(range(1 + d, 1 + 2 * d)))
        if xp is x:  # "valid", or "same" that needed no padding: every window is full
            count: float | np.ndarray = float(math.prod(self.pool_size))
        else:
            count = _counts(x.shape, pads, out, self).astype(x.dtype)
        y /= count

        def pullback(g_y: np.ndarray) -> tuple[np.ndarray | None, _AvgPool]:
            if not need_g_x:
                return None, self
            g_mean = g_y / count
            g_win = np.broadcast_to(g_mean, (*self.pool_size, *g_mean.shape))  # no copy
            return crop(col2im(g_win, xp.shape, self.stride), x.shape, pads), self

        return y, pullback


@attrs.frozen
class MaxPool1D(_MaxPool):
    """Max over windows of ``pool_size`` steps, every ``stride`` steps: ``(N, L, C)`` in.

    ``y[n, l, c] = max_i xp[n, l * stride + i, c]``. Backward: ``g_x`` is zero except
    at each window's maximum, which receives that window's ``g_y`` (summed over the
    windows it wins when they overlap). Ties go to the first maximum in the window.
    """

    _NDIM = 1
    __repr__ = _Pool._describe
    pool_size: tuple[int] = static(default=2, converter=validation.sizes(1))
    stride: tuple[int] = static(default=None, converter=validation.sizes(1, optional=True))
    padding: str = static(default="valid", converter=validation.padding(0, numbers=False))


@attrs.frozen
class MaxPool2D(_MaxPool):
    """Max over ``pool_size`` windows, every ``stride``: ``(N, H, W, C)`` in.

    ``y[n, h, w, c] = max_{i, j} xp[n, h * sh + i, w * sw + j, c]``. Backward: ``g_x``
    is zero except at each window's maximum, which receives that window's ``g_y``
    (summed over the windows it wins when they overlap). Ties go to the first
    maximum in the window's row-major order.
    """

    _NDIM = 2
    __repr__ = _Pool._describe
    pool_size: tuple[int, int] = static(default=2, converter=validation.sizes(2))
    stride: tuple[int, int] = static(default=None, converter=validation.sizes(2, optional=True))
    padding: str = static(default="valid", converter=validation.padding(0, numbers=False))


@attrs.frozen
class AvgPool1D(_AvgPool):
    """Mean over windows of ``pool_size`` steps, every ``stride`` steps: ``(N, L, C)`` in.

    ``y[n, l, c] = sum_i xp[n, l * stride + i, c] / count``, ``count = pool_size``
    (with ``"same"``, the number of non-padding positions in the window). Backward:
    every input position of a window gets ``g_y / count``; overlaps add up.
    """

    _NDIM = 1
    __repr__ = _Pool._describe
    pool_size: tuple[int] = static(default=2, converter=validation.sizes(1))
    stride: tuple[int] = static(default=None, converter=validation.sizes(1, optional=True))
    padding: str = static(default="valid", converter=validation.padding(0, numbers=False))


@attrs.frozen
class AvgPool2D(_AvgPool):
    """Mean over ``pool_size`` windows, every ``stride``: ``(N, H, W, C)`` in.

    ``y[n, h, w, c] = sum_{i, j} xp[n, h * sh + i, w * sw + j, c] / count``,
    ``count = kh * kw`` (with ``"same"``, the number of non-padding positions in
    the window). Backward: every input position of a window gets ``g_y / count``;
    overlaps add up.
    """

    _NDIM = 2
    __repr__ = _Pool._describe
    pool_size: tuple[int, int] = static(default=2, converter=validation.sizes(2))
    stride: tuple[int, int] = static(default=None, converter=validation.sizes(2, optional=True))
    padding: str = static(default="valid", converter=validation.padding(0, numbers=False))


@attrs.frozen
class GlobalAvgPool(Layer):
    """Mean over every spatial axis: ``(N, ..., C) -> (N, C)``.

    ``y[n, c] = sum_s x[n, s, c] / S`` with ``S`` the number of spatial positions;
    backward: ``g_x[n, s, c] = g_y[n, c] / S``.
    """

    def vjp(self, x: np.ndarray, need_g_x: bool = True) -> tuple[np.ndarray, Callable]:
        """``(spatial mean, pullback)``; the pullback spreads ``g_y / S`` over the positions."""
        x = _floating(x, "GlobalAvgPool")
        if x.ndim < 3 or 0 in x.shape[1:-1]:
            raise ShapeError(
                f"GlobalAvgPool expects input of shape (N, spatial..., C) with at least one "
                f"spatial position, got {x.shape}"
            )
        axes = tuple(range(1, x.ndim - 1))
        scale = 1.0 / math.prod(x.shape[1:-1])
        y = np.add.reduce(x, axis=axes)
        y *= scale

        def pullback(g_y: np.ndarray) -> tuple[np.ndarray | None, GlobalAvgPool]:
            if not need_g_x:
                return None, self
            g_x = np.empty(x.shape, g_y.dtype)
            g_x[...] = (g_y * scale).reshape(x.shape[0], *(1,) * len(axes), x.shape[-1])
            return g_x, self

        return y, pullback
