"""Dense: the affine layer ``y = x @ W + b``."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import numpy as np
from numpy.typing import DTypeLike

from .. import initializers, random, validation
from .._numeric import ones
from ..core import Layer
from ..errors import ShapeError, StructureError
from ..record import array_repr, frozen, param
from ..workspace import dot
from . import _interop


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
    fresh_y = fresh_g_x = fresh_grads = True  # new arrays, kept by no one (see fnbp.core)
    verified = True  # checked by the contract suite, not at run time (see fnbp.core)

    @classmethod
    def init(
        cls,
        key: random.Key,
        in_size: int,
        out_size: int,
        *,
        init: str | Callable = "glorot_uniform",
        bias_init: str | Callable | None = None,
        dtype: DTypeLike = np.float32,
    ) -> Dense:
        """A new layer: ``W`` drawn by ``init`` from ``key``, ``b`` by ``bias_init``.

        ``init`` is a name from :mod:`fnbp.initializers` (``"glorot_uniform"``,
        ``"he_normal"``, ``"small_normal"`` for the notebook's ``0.01 * N(0, 1)``,
        ...), a function ``(key, shape, dtype) -> array``, or a framework's
        scheme choosing both: ``"torch"`` (``torch.nn.Linear``'s U(+-1/sqrt(in))
        for ``W`` and ``b``) or ``"keras"`` (glorot_uniform, zero bias).
        ``bias_init`` (``"zeros"``, ``"torch_bias"`` or a function ``(key, shape,
        dtype, fan_in) -> array``) overrides the scheme's bias; by default ``b = 0``
        after a plain weight initializer. ``W`` comes from ``key`` whatever the
        bias, a random bias from ``fb.random.fold_in(key, 1)``.
        """
        dtype = validation.float_dtype("Dense.init", dtype)
        n_in = validation.check_int("Dense.init", "in_size", in_size, low=1)
        n_out = validation.check_int("Dense.init", "out_size", out_size, low=1)
        validation.check_size("Dense.init", "W", n_in * n_out)
        draw_W, draw_b = initializers.resolve(init, bias_init)
        W = draw_W(key, (n_in, n_out), dtype)
        return cls(W, draw_b(random.fold_in(key, 1), (n_out,), dtype, n_in))

    @classmethod
    def from_torch(
        cls, weight: Any, bias: Any = None, *, flatten_shape: Sequence[int] | None = None
    ) -> Dense:
        """The layer of a PyTorch ``nn.Linear``: ``W = weight.T``, ``b = bias``.

        ``weight`` has PyTorch's ``(out, in)`` layout, ``bias`` ``(out,)`` (None,
        for ``bias=False``, is zeros); pass arrays (``tensor.detach().numpy()``),
        whose dtype is kept. A Linear that read ``torch.flatten`` of a
        channels-first feature map ``(C, *spatial)`` numbers its inputs in
        ``(C, *spatial)`` order, fnbp's ``Flatten`` in ``(*spatial, C)`` order: pass
        ``flatten_shape=(C, *spatial)`` and the rows of ``W`` are permuted to match.
        (A Keras ``Dense`` kernel is already ``(in, out)``: ``Dense(kernel, bias)``.)
        """
        owner = "Dense.from_torch"
        weight = _interop.weight(owner, "weight", weight, 2, "(out, in)")
        b = _interop.bias(owner, "bias", bias, weight.shape[0], weight.dtype)
        W = _interop.transposed(weight, (1, 0))
        if flatten_shape is not None:
            W = _channels_last_rows(owner, W, flatten_shape)
        return cls(W, b)

    def __repr__(self) -> str:
        if np.ndim(self.W) == 2:
            return f"Dense({self.W.shape[0]} -> {self.W.shape[1]})"
        return f"Dense(W={array_repr(self.W)}, b={array_repr(self.b)})"

    def _check(self, x: np.ndarray) -> np.ndarray:
        W, b = self.W, self.b
        validation.check_params("Dense", W=W, b=b)
        if W.ndim != 2 or b.shape != W.shape[1:]:
            raise ShapeError(
                f"Dense needs W of shape (in, out) and b of shape (out,), "
                f"got W {W.shape} and b {b.shape}"
            )
        if type(x) is not np.ndarray:
            raise StructureError(f"{self._name()} expects one array, got a {type(x).__name__}")
        if x.ndim < 2 or x.shape[-1] != W.shape[0]:
            hint = " (a single sample? use x[None])" if x.ndim == 1 else ""
            lead = "N" if x.ndim <= 2 else "N, ..."
            raise ShapeError(
                f"{self._name()} expects input of shape ({lead}, {W.shape[0]}), got {x.shape}{hint}"
            )
        if x.dtype != W.dtype:
            x = validation.numeric(x, self._name()).astype(W.dtype)
        return x

    def _name(self) -> str:
        return f"Dense({self.W.shape[0]} -> {self.W.shape[1]})"

    def forward(self, x: np.ndarray) -> np.ndarray:
        """``x @ W + b``."""
        y = self._check(x) @ self.W
        y += self.b
        return y

    def vjp(self, x: np.ndarray, need_g_x: bool = True) -> tuple[np.ndarray, Callable]:
        """``(x @ W + b, pullback)``; the pullback skips ``g_x`` unless needed."""
        x = self._check(x)
        W = self.W
        rows = x if x.ndim == 2 else x.reshape(-1, x.shape[-1])
        y = dot(rows, W)  # (in a training step, into a kept array: fnbp.workspace)
        y += self.b

        def pullback(g_y: np.ndarray) -> tuple[np.ndarray | None, Dense]:
            g = g_y if g_y.ndim == 2 else g_y.reshape(-1, g_y.shape[-1])
            g_x = dot(g, W.T).reshape(x.shape) if need_g_x else None
            g_W = frozen(dot(rows.T, g))
            g_b = frozen(ones(len(g), g.dtype).dot(g))
            return g_x, Dense(g_W, g_b)

        return (y if x.ndim == 2 else y.reshape(*x.shape[:-1], y.shape[-1])), pullback


def _channels_last_rows(owner: str, W: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """``W`` with its rows, numbered in ``(C, *spatial)`` order, renumbered ``(*spatial, C)``."""
    shape = validation.check_sequence(owner, "flatten_shape", shape, "ints (C, *spatial)")
    shape = tuple(validation.check_int(owner, "flatten_shape", n, low=1) for n in shape)
    if math.prod(shape) != W.shape[0]:
        raise ShapeError(
            f"{owner}: flatten_shape {shape} holds {math.prod(shape)} values, but the "
            f"weight has {W.shape[0]} inputs"
        )
    order = (*range(1, len(shape)), 0, len(shape))
    return np.ascontiguousarray(W.reshape(*shape, -1).transpose(order).reshape(W.shape))
