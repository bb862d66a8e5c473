"""Dense: the affine layer ``y = x @ W + b``."""

from __future__ import annotations

from collections.abc import Callable

import attrs
import numpy as np
from numpy.typing import DTypeLike

from .. import initializers, random, validation
from .._numeric import ones
from ..core import Layer
from ..errors import ShapeError, StructureError
from ..record import array_repr, frozen, param


@attrs.frozen
class Dense(Layer):
    """Affine map ``y = x @ W + b`` for a batch ``x`` of shape ``(N, in)`` or ``(N, ..., in)``.

    ``W`` has shape ``(in, out)`` and ``b`` shape ``(out,)``; leading axes (time
    steps, positions) are carried along, so one Dense applies at every step.
    With ``x`` and ``g_y`` flattened to rows ``(M, in)`` and ``(M, out)``::

        g_x = g_y @ W.T      g_W = x.T @ g_y      g_b = sum_m g_y[m] = 1^T g_y

    A float input of another precision, or a boolean or integer one, is cast
    to ``W``'s dtype here, once; so ``g_x`` comes back in the parameters' dtype.
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
        dtype = validation.float_dtype("Dense.init", dtype)
        n_in = validation.check_int("Dense.init", "in_size", in_size, low=1)
        n_out = validation.check_int("Dense.init", "out_size", out_size, low=1)
        validation.check_size("Dense.init", "W", n_in * n_out)
        W = initializers.get(init)(key, (n_in, n_out), dtype)
        return cls(W, np.zeros(n_out, dtype))

    def __repr__(self) -> str:
        if np.ndim(self.W) == 2:
            return f"Dense({self.W.shape[0]} -> {self.W.shape[1]})"
        return f"Dense(W={array_repr(self.W)}, b={array_repr(self.b)})"

    def _check(self, x: np.ndarray) -> np.ndarray:
        W, b = self.W, self.b
        if W.ndim != 2 or b.shape != W.shape[1:] or W.dtype != b.dtype:
            raise ShapeError(
                f"Dense needs W of shape (in, out) and b of shape (out,) of one dtype, "
                f"got W {W.shape} {W.dtype} and b {b.shape} {b.dtype}"
            )
        name = f"Dense({W.shape[0]} -> {W.shape[1]})"
        validation.check_params(name, W=W, b=b)
        if type(x) is not np.ndarray:
            raise StructureError(f"{name} expects one array, got a {type(x).__name__}")
        if x.ndim < 2 or x.shape[-1] != W.shape[0]:
            hint = " (a single sample? use x[None])" if x.ndim == 1 else ""
            lead = "N" if x.ndim <= 2 else "N, ..."
            raise ShapeError(
                f"{name} expects input of shape ({lead}, {W.shape[0]}), got {x.shape}{hint}"
            )
        if x.dtype != W.dtype:
            x = validation.numeric(x, name).astype(W.dtype)
        return x

    def forward(self, x: np.ndarray) -> np.ndarray:
        """``x @ W + b``."""
        y = self._check(x) @ self.W
        y += self.b
        return y

    def vjp(self, x: np.ndarray, need_g_x: bool = True) -> tuple[np.ndarray, Callable]:
        """``(x @ W + b, pullback)``; the pullback skips ``g_x`` unless needed."""
        x = self._check(x)
        rows = x if x.ndim == 2 else x.reshape(-1, x.shape[-1])
        y = rows.dot(self.W)
        y += self.b

        def pullback(g_y: np.ndarray) -> tuple[np.ndarray | None, Dense]:
            g = g_y if g_y.ndim == 2 else g_y.reshape(-1, g_y.shape[-1])
            g_x = g.dot(self.W.T).reshape(x.shape) if need_g_x else None
            g_W = frozen(rows.T.dot(g))
            g_b = frozen(ones(len(g), g.dtype).dot(g))
            return g_x, Dense(g_W, g_b)

        return (y if x.ndim == 2 else y.reshape(*x.shape[:-1], -1)), pullback
