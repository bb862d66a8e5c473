"""Serial: layers applied one after another, and the ``mlp`` helper."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import attrs
import numpy as np
from numpy.typing import DTypeLike

from .. import random, validation
from ..core import (
    Context,
    ContextLayer,
    LayerLike,
    Pullback,
    call,
    check_layer,
    hands_over,
    init_state,
    known_layers,
    split_context,
    takes_over,
    verified,
    watched,
)
from ..errors import LocatedError
from ..record import keeps_rebuilt, nested_repr
from ..tree import record_fields
from .activations import Identity, ReLU
from .dense import Dense

__all__ = ["Serial", "mlp"]


def _as_layers(layers: Sequence[LayerLike]) -> tuple[LayerLike, ...]:
    if type(layers) is tuple and known_layers(layers):
        return layers  # the common case, and every rebuild of a Serial in a step
    layers = validation.check_sequence("Serial", "layers", layers, "layers")
    for i, layer in enumerate(layers):
        check_layer(layer, "Serial", f"layers[{i}]")
    return layers


keeps_rebuilt(_as_layers)  # a tuple of layers of classes checked before comes back as it is


def _has_params(layer: LayerLike) -> bool:
    """Whether ``layer`` may hold parameters (any non-static field)."""
    cls = type(layer)
    return not attrs.has(cls) or bool(record_fields(cls)[0])


@attrs.frozen
class _Plan:
    """What a Serial's step needs to know of its layers' classes, found once per tuple of
    classes: the children's places, which layers have parameters, which fresh outputs go
    on to the next layer to work in, which layers take over the ``g`` they are given and
    which give back a fresh ``g_x``, and whether every gradient record is made of fresh
    arrays (see "Handing arrays over" in :mod:`fnbp.core`)."""

    wheres: tuple[str, ...]
    params: tuple[bool, ...]
    hand_y: tuple[bool, ...]
    takes: tuple[bool, ...]
    fresh_g_x: tuple[bool, ...]
    fresh_grads: bool
    verified: tuple[bool, ...]


_PLANS: dict[tuple[type, ...], _Plan] = {}


def _plan(layers: tuple[LayerLike, ...]) -> _Plan:
    classes = tuple(map(type, layers))
    plan = _PLANS.get(classes)
    if plan is None:
        n = len(layers)
        takes = tuple(takes_over(layer) for layer in layers)
        params = tuple(_has_params(layer) for layer in layers)
        plan = _Plan(
            tuple(f"layers[{i}]" for i in range(n)),
            params,
            tuple(i + 1 < n and hands_over(layers[i], "y") and takes[i + 1] for i in range(n)),
            takes,
            tuple(hands_over(layer, "g_x") for layer in layers),
            all(hands_over(layer, "grads") for layer, p in zip(layers, params, strict=True) if p),
            tuple(verified(layer) for layer in layers),
        )
        if len(_PLANS) < 4096:  # a program has few kinds of Serial; never grow without bound
            _PLANS[classes] = plan
    return plan


@attrs.frozen
class Serial(ContextLayer):
    """Layers composed in order: ``y = f_n(... f_2(f_1(x)))``.

    Its gradient record is a ``Serial`` of the layers' gradient records. The
    backward pass runs the layers' pullbacks in reverse (the chain rule),
    and asks a layer for its input gradient only when an earlier layer has
    parameters that need it (or the caller asked for ``g_x``). In training
    each layer gets its own key, split from the one given; the state of a
    Serial is the tuple of its layers' states.
    """

    layers: tuple[LayerLike, ...] = attrs.field(converter=_as_layers)
    verified = True  # its chain rule builds (g_x, grads) itself (see fnbp.core)

    @classmethod
    def of_checked(cls, layers: tuple[LayerLike, ...]) -> Serial:
        """A ``Serial`` of ``layers`` without the checks: for a tuple of layers taken
        from Serials (or their gradient records) already checked. A combinator's step
        builds several; anything else, call ``Serial(layers)``."""
        new = object.__new__(cls)
        object.__setattr__(new, "layers", layers)
        return new

    @property
    def fresh_grads(self) -> bool:
        """Whether the arrays of this Serial's gradient records are new and kept by no
        one: every layer with parameters sets ``fresh_grads`` (see :mod:`fnbp.core`)."""
        return _plan(self.layers).fresh_grads

    def __repr__(self) -> str:
        return nested_repr("Serial", [repr(layer) for layer in self.layers])

    def vjp_ctx(self, x: Any, need_g_x: bool, ctx: Context) -> tuple[Any, Pullback, tuple]:
        """One forward pass keeping each layer's pullback; the chain rule runs them backwards.

        A fresh output is handed to the next layer when it works in place, and a
        fresh ``g_x`` to the layer before (see "Handing arrays over" in :mod:`fnbp.core`).
        ``pullback(g_y, own=True)`` says that ``g_y`` may be written into.
        """
        layers, n = self.layers, len(self.layers)
        plan, watching = _plan(layers), watched()
        handing = not watching
        pullbacks, states, own = [], [], False
        contexts = split_context(ctx, layers, f"Serial of {n} layers")
        for i in range(n):
            x, pullback, state = call(
                layers[i], x, need_g_x, contexts[i], plan.wheres[i], own, plan.verified[i]
            )
            pullbacks.append(pullback)
            states.append(state)
            need_g_x = need_g_x or plan.params[i]
            own = handing and plan.hand_y[i]

        def chain_rule(g: Any, own: bool = False) -> tuple[Any, Serial]:
            grads: list[Any] = [None] * n
            i = n - 1
            try:
                while i >= 0:
                    if handing and own and plan.takes[i]:
                        g, grads[i] = pullbacks[i](g, own=True)
                    else:
                        g, grads[i] = pullbacks[i](g)
                    own = plan.fresh_g_x[i]
                    i -= 1
            except LocatedError as e:  # a verified child's: checked ones name their place
                if plan.verified[i] and not watching:
                    raise e.within(plan.wheres[i]) from None
                raise
            return g, Serial.of_checked(tuple(grads))

        return x, chain_rule, tuple(states)

    def init_state(self) -> tuple:
        """One state per layer (``None`` for those that keep none)."""
        return tuple(init_state(layer) for layer in self.layers)


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
    sizes = list(validation.check_sequence("mlp", "sizes", sizes, "layer sizes"))
    if len(sizes) < 2:
        raise validation.fail("mlp", "sizes", "at least an input and an output size", sizes)
    keys = random.split(key, len(sizes) - 1)
    layers: list[LayerLike] = []
    for k, n_in, n_out in zip(keys, sizes[:-1], sizes[1:], strict=True):
        layers += [Dense.init(k, n_in, n_out, init=init, dtype=dtype), hidden]
    layers[-1] = output
    return Serial(tuple(layers))
