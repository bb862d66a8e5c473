"""Serial: layers applied one after another, and the ``mlp`` helper."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import attrs
import numpy as np
from numpy.typing import DTypeLike

from .. import random
from ..core import Context, Layer, LayerLike, check_layer, init_state, split_context, vjp_ctx
from ..errors import LocatedError
from ..tree import _fields
from .activations import Identity, ReLU
from .dense import Dense

if TYPE_CHECKING:
    from ..losses import Loss


def _as_layers(layers: Sequence[LayerLike]) -> tuple[LayerLike, ...]:
    layers = tuple(layers)
    for i, layer in enumerate(layers):
        check_layer(layer, "Serial", f"layers[{i}]")
    return layers


def _has_params(layer: LayerLike) -> bool:
    """Whether ``layer`` may hold parameters (any non-static field); cheap, cached per class."""
    cls = type(layer)
    return not attrs.has(cls) or bool(_fields(cls)[0])


@attrs.frozen
class Serial(Layer):
    """Layers composed in order: ``y = f_n(... f_2(f_1(x)))``.

    Its gradient record is a ``Serial`` of the layers' gradient records. The
    backward pass runs the layers' pullbacks in reverse (the chain rule),
    and asks a layer for its input gradient only when an earlier layer has
    parameters that need it (or the caller asked for ``g_x``).
    """

    layers: tuple[LayerLike, ...] = attrs.field(converter=_as_layers)

    @classmethod
    def _of(cls, layers: tuple[LayerLike, ...]) -> Serial:
        """A Serial of already-checked layers (gradient records), skipping validation."""
        record = object.__new__(cls)
        object.__setattr__(record, "layers", layers)
        return record

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Each layer's ``forward`` in turn."""
        for i, layer in enumerate(self.layers):
            try:
                x = layer.forward(x)
            except LocatedError as e:
                raise e.within(f"layers[{i}]") from None
        return x

    def vjp(self, x: np.ndarray, need_g_x: bool = True) -> tuple[np.ndarray, Callable]:
        """One forward pass keeping each layer's pullback, then the chain rule backwards."""
        return self._vjp(x, need_g_x, len(self.layers))

    def vjp_ctx(self, x: np.ndarray, need_g_x: bool, ctx: Context) -> tuple:
        """:meth:`vjp` in training mode: one key and one state per layer."""
        return self._vjp_ctx(x, need_g_x, ctx, len(self.layers))

    def vjp_for_loss(self, loss: Loss, x: np.ndarray, need_g_x: bool, ctx: Context | None) -> tuple:
        """``(y, pullback, new_state, loss)`` to feed ``loss``, for :func:`fnbp.value_and_grad`.

        When ``loss.absorbs`` the last layer (cross-entropy after a Sigmoid), the
        pass stops before that layer: ``y`` is its input and the returned loss
        is the one on that input. The absorbed layer has no parameters, so it
        stands for its own gradient record. ``ctx`` is ``None`` for inference.
        """
        fused = loss.absorbs(self.layers[-1]) if self.layers else None
        stop = len(self.layers) - (fused is not None)
        if ctx is None:
            y, pullback = self._vjp(x, need_g_x, stop)
            return y, pullback, None, fused or loss
        return (*self._vjp_ctx(x, need_g_x, ctx, stop), fused or loss)

    def _vjp(self, x: np.ndarray, need_g_x: bool, stop: int) -> tuple[np.ndarray, Callable]:
        """The vjp of ``layers[:stop]``; the rest stand for their own grads."""
        pullbacks = []
        for i in range(stop):
            layer = self.layers[i]
            try:
                x, pullback = layer.vjp(x, need_g_x)
            except LocatedError as e:
                raise e.within(f"layers[{i}]") from None
            pullbacks.append(pullback)
            need_g_x = need_g_x or _has_params(layer)
        return x, _chain(pullbacks, self.layers[stop:])

    def _vjp_ctx(self, x: np.ndarray, need_g_x: bool, ctx: Context, stop: int) -> tuple:
        n = len(self.layers)
        keys, states = split_context(ctx, n, f"Serial of {n} layers")
        pullbacks, new_states = [], []
        for i in range(stop):
            try:
                x, pullback, s = vjp_ctx(
                    self.layers[i], x, need_g_x, Context(ctx.train, keys[i], states[i])
                )
            except LocatedError as e:
                raise e.within(f"layers[{i}]") from None
            pullbacks.append(pullback)
            new_states.append(s)
            need_g_x = need_g_x or _has_params(self.layers[i])
        return x, _chain(pullbacks, self.layers[stop:]), (*new_states, *states[stop:])

    def init_state(self) -> tuple:
        """One state per layer (``None`` for those that keep none)."""
        return tuple(init_state(layer) for layer in self.layers)


def _chain(pullbacks: list[Callable], rest: tuple[LayerLike, ...] = ()) -> Callable:
    """The chain rule: run the layers' pullbacks in reverse, collect their grads.
    ``rest`` are parameterless layers whose gradient was taken by a loss."""

    def pullback(g: np.ndarray) -> tuple[np.ndarray | None, Serial]:
        grads = []
        for pb in reversed(pullbacks):
            g, g_layer = pb(g)
            grads.append(g_layer)
        grads.reverse()
        return g, Serial._of((*grads, *rest))

    return pullback


def mlp(
    key: random.Key,
    sizes: Sequence[int],
    *,
    hidden: LayerLike = ReLU(),
    output: LayerLike = Identity(),
    init: str | Callable = "glorot_uniform",
    dtype: DTypeLike = np.float32,
) -> Serial:
    """A multilayer perceptron: ``Dense`` layers of the given ``sizes``.

    ``mlp(key, [2, 8, 1], output=Sigmoid())`` is
    ``Serial((Dense(2, 8), ReLU(), Dense(8, 1), Sigmoid()))``: ``hidden`` follows
    every Dense but the last, ``output`` follows the last (``Identity()`` for
    logits). Each Dense gets its own key split from ``key``.
    """
    sizes = list(sizes)
    if len(sizes) < 2:
        raise ValueError(f"mlp needs at least an input and an output size, got {sizes}")
    keys = random.split(key, len(sizes) - 1)
    layers: list[LayerLike] = []
    for k, n_in, n_out in zip(keys, sizes[:-1], sizes[1:], strict=True):
        layers += [Dense.init(k, n_in, n_out, init=init, dtype=dtype), hidden]
    layers[-1] = output
    return Serial(layers)
