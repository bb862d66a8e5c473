"""Dense: the affine layer ``y = x @ W + b``."""

from __future__ import annotations

from collections.abc import Callable

import attrs
import numpy as np
from numpy.typing import DTypeLike

from .. import initializers, random
from .._numeric import ones
from ..core import Layer
from ..errors import DTypeError, ShapeError
from ..record import param


@attrs.frozen
class Dense(Layer):
    """Affine map ``y = x @ W + b`` for a batch ``x`` of shape ``(N, in)``.

    ``W`` has shape ``(in, out)`` and ``b`` shape ``(out,)``. Gradients::

        g_x = g_y @ W.T      g_W = x.T @ g_y      g_b = sum_n g_y[n]

    A float input of another precision is cast to ``W``'s dtype here, once;
    so ``g_x`` comes back in the parameters' dtype.
    """

    W: np.ndarray = param()
    b: np.ndarray = param()

    @classmethod
    def init(
        cls,
        key: random.Key,
        in_size: int,
        out_size: int,
        *,
        init: str | Callable = "glorot_uniform",
        dtype: DTypeLike = np.float32,
    ) -> Dense:
        """A new layer: ``W`` drawn by ``init`` from ``key`` and ``b = 0``.

        ``init`` is a name from :mod:`fnbp.initializers` (``"glorot_uniform"``,
        ``"he_normal"``, ``"small_normal"`` for the notebook's ``0.01 * N(0, 1)``,
        ...) or a function ``(key, shape, dtype) -> array``.
        """
        dtype = np.dtype(dtype)
        if dtype.kind != "f":
            raise TypeError(f"Dense.init: dtype must be a float type, got {dtype}")
        W = initializers.get(init)(key, (in_size, out_size), dtype)
        return cls(W, np.zeros(out_size, dtype))

    def _check(self, x: np.ndarray) -> np.ndarray:
        W, b = self.W, self.b
        if W.ndim != 2 or b.shape != W.shape[1:] or W.dtype != b.dtype:
            raise ShapeError(
                f"Dense needs W of shape (in, out) and b of shape (out,) of one dtype, "
                f"got W {W.shape} {W.dtype} and b {b.shape} {b.dtype}"
            )
        if x.ndim != 2 or x.shape[1] != W.shape[0]:
            hint = " (a single sample? use x[None])" if x.ndim == 1 else ""
            raise ShapeError(
                f"Dense({W.shape[0]} -> {W.shape[1]}) expects input of shape "
                f"(N, {W.shape[0]}), got {x.shape}{hint}"
            )
        if x.dtype != W.dtype:
            if x.dtype.kind not in "biuf":
                raise DTypeError(f"Dense expects a real numeric input, got dtype {x.dtype}")
            x = x.astype(W.dtype)
        return x

    def forward(self, x: np.ndarray) -> np.ndarray:
        """``x @ W + b``."""
        y = self._check(x).dot(self.W)
        y += self.b
        return y

    def vjp(self, x: np.ndarray, need_g_x: bool = True) -> tuple[np.ndarray, Callable]:
        """``(x @ W + b, pullback)``; the pullback skips ``g_x`` unless needed."""
        x = self._check(x)
        y = x.dot(self.W)
        y += self.b

        def pullback(g_y: np.ndarray) -> tuple[np.ndarray | None, Dense]:
            g_x = g_y.dot(self.W.T) if need_g_x else None
            return g_x, Dense(x.T.dot(g_y), ones(len(g_y), g_y.dtype).dot(g_y))

        return y, pullback
