"""Dropout: in training, zero each unit with probability ``rate``; in inference, the identity."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import numpy as np

from .. import random
from ..core import Context, Layer
from ..errors import ModeError
from ..record import static

__all__ = ["Dropout"]


def _rate(value: Any) -> float:
    rate = float(value)
    if not 0.0 <= rate <= 1.0:  # also rejects NaN
        raise ValueError(f"Dropout: rate is the probability of dropping, in [0, 1]; got {rate}")
    return rate


def _masked(a: np.ndarray, keep: np.ndarray, scale: float) -> np.ndarray:
    """``a * scale`` where ``keep``, exactly 0 elsewhere (no ``inf * 0 = nan``), a new array."""
    out = np.zeros_like(a)
    np.multiply(a, scale, out=out, where=keep)
    return out


@attrs.frozen
class Dropout(Layer):
    """Inverted dropout: ``y = x * keep / (1 - rate)`` in training, ``y = x`` in inference.

    ``rate`` is the probability of *dropping* a unit (not of keeping it). In
    training each unit is kept independently with probability ``1 - rate``,
    the mask ``keep`` being drawn from the layer's key; kept units are scaled
    by ``1 / (1 - rate)`` so that ``E[y] = x`` and inference needs no
    rescaling. ``rate == 1`` drops everything and gives exact zeros (never
    NaN, even for an infinite input); ``rate == 0`` is the identity.

    The derivative applies exactly the forward pass's mask::

        g_x = g_y * keep / (1 - rate)        (g_x = g_y in inference)

    Training needs a key: ``fb.forward(net, x, train=True, key=k)`` (``fb.fit``
    passes one per step; a ``Serial`` gives each layer its own key split from
    it, so two Dropout layers draw different masks). A non-float input is
    cast to float64 in training. Dropout has no parameters: its gradient
    record is the layer itself.
    """

    rate: float = static(default=0.5, converter=_rate)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Inference: ``x`` itself."""
        return x

    def vjp(self, x: np.ndarray, need_g_x: bool = True) -> tuple[np.ndarray, Callable]:
        """Inference: ``(x, pullback)`` with ``pullback(g_y) = (g_y, self)``."""
        return x, lambda g_y: (g_y if need_g_x else None, self)

    def vjp_ctx(self, x: np.ndarray, need_g_x: bool, ctx: Context) -> tuple:
        """``(y, pullback, state)``: a random mask from ``ctx.key`` in training."""
        if not ctx.train:
            return (*self.vjp(x, need_g_x), ctx.state)
        keep = self.mask(self._key(ctx.key), x.shape)
        if keep is None:
            return (*self.vjp(x, need_g_x), ctx.state)
        if x.dtype.kind != "f":
            x = x.astype(np.float64)
        scale = 0.0 if self.rate == 1.0 else 1.0 / (1.0 - self.rate)

        def pullback(g_y: np.ndarray) -> tuple[np.ndarray | None, Dropout]:
            return (_masked(g_y, keep, scale) if need_g_x else None), self

        return _masked(x, keep, scale), pullback, ctx.state

    def mask(self, key: random.Key, shape: tuple[int, ...]) -> np.ndarray | None:
        """The boolean mask of kept units drawn from ``key`` (``None`` when ``rate == 0``).

        Unit ``i`` is kept when ``u_i >= rate`` for ``u_i ~ U[0, 1)``: with
        probability ``1 - rate``. The mask depends on ``key`` and ``shape`` only.
        """
        if self.rate == 0.0:
            return None
        return random.generator(key).random(shape) >= self.rate

    def _key(self, key: random.Key | None) -> random.Key:
        if key is None:
            raise ModeError(
                f"Dropout(rate={self.rate}) in training needs a random key and got none: "
                "pass key=, as in fb.forward(net, x, train=True, key=fb.random.key(0)) "
                "(fb.fit passes one for every step)"
            )
        return key
