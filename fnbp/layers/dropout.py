"""Dropout: in training, zero each unit with probability ``rate``; in inference, the identity."""

from __future__ import annotations

import attrs
import numpy as np

from .. import random, validation
from ..core import Context, ContextLayer
from ..errors import ModeError
from ..record import static

__all__ = ["Dropout"]


def _masked(a: np.ndarray, keep: np.ndarray, scale: float) -> np.ndarray:
    """``a * scale`` where ``keep``, exactly 0 elsewhere (no ``inf * 0 = nan``), a new array."""
    out = np.zeros_like(a)
    np.multiply(a, scale, out=out, where=keep)
    return out


@attrs.frozen
class Dropout(ContextLayer):
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

    rate: float = static(default=0.5, converter=validation.real(low=0.0, high=1.0))

    def vjp_ctx(self, x: np.ndarray, need_g_x: bool, ctx: Context) -> tuple:
        """``(y, pullback, state)``: a random mask from ``ctx.key`` in training, the
        identity in inference."""
        x = validation.floating(x, "Dropout")
        keep = self.mask(self._key(ctx.key), x.shape) if ctx.train else None
        if keep is None:
            return x, lambda g_y: (g_y if need_g_x else None, self), ctx.state
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
