"""The core contract: ``forward``, ``backward``, ``vjp``, ``update``.

Every layer is an immutable record that provides

* ``forward(x) -> y``, and
* ``vjp(x, need_g_x=True) -> (y, pullback)`` where ``pullback(g_y)`` returns
  ``(g_x, grads)``: the gradient with respect to the input (``None`` when
  ``need_g_x`` is false, so nobody pays for it) and a record of the layer's
  own class holding the gradient of every parameter.

``backward`` is ``vjp`` followed by its pullback, so the two cannot drift.
Subclassing :class:`Layer` gives ``forward`` for free from ``vjp``; any other
object with these two methods plugs in just the same.

Training mode is explicit. A layer that behaves differently in training
(Dropout, BatchNorm) or combines other layers also implements

* ``vjp_ctx(x, need_g_x, ctx) -> (y, pullback, new_state)``, where ``ctx`` is a
  :class:`Context` holding ``train``, a ``key`` for randomness and the
  layer's own ``state`` (running statistics), and
* ``init_state() -> state`` when it keeps state.

The public functions take ``train=``, ``key=`` and ``state=`` keywords; when
none is given the plain ``forward``/``vjp`` run (inference). Whoever passes
``state=`` gets the new state back as one more return value.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import attrs
import numpy as np

from . import random, tree
from .errors import DTypeError, ShapeError, StructureError

if TYPE_CHECKING:
    from collections.abc import Callable

    from .losses import Loss

__all__ = [
    "Context",
    "Layer",
    "forward",
    "backward",
    "vjp",
    "update",
    "value_and_grad",
    "dtype_of",
    "init_state",
    "vjp_ctx",
    "check_layer",
]


class LayerLike(Protocol):
    """What fnbp needs from a layer: ``forward`` and ``vjp``."""

    def forward(self, x: np.ndarray) -> np.ndarray: ...
    def vjp(self, x: np.ndarray, need_g_x: bool = True) -> tuple[np.ndarray, Callable]: ...


class Layer:
    """Optional base class of layers: supplies ``forward`` from ``vjp``.

    Subclasses are ``attrs.frozen`` records and implement
    ``vjp(self, x, need_g_x=True) -> (y, pullback)``; they override
    ``forward`` when it can be cheaper than a full ``vjp``.
    """

    __slots__ = ()

    def forward(self, x: np.ndarray) -> np.ndarray:
        """The layer's output for a batch ``x``."""
        return self.vjp(x, need_g_x=False)[0]

    def vjp(self, x: np.ndarray, need_g_x: bool = True) -> tuple[np.ndarray, Callable]:
        """``(y, pullback)``; ``pullback(g_y) -> (g_x, grads)``."""
        raise NotImplementedError(f"{type(self).__name__} must implement vjp")


@attrs.frozen
class Context:
    """What a layer may need besides its input: the mode, a random key, its state."""

    train: bool = False
    key: random.Key | None = None
    state: Any = None


def vjp_ctx(layer: Any, x: np.ndarray, need_g_x: bool, ctx: Context) -> tuple:
    """``(y, pullback, new_state)`` of any layer; plain layers keep their state."""
    method = getattr(layer, "vjp_ctx", None)
    if method is None:
        y, pullback = layer.vjp(x, need_g_x)
        return y, pullback, ctx.state
    return method(x, need_g_x, ctx)


def split_context(ctx: Context, n: int, owner: str) -> tuple[tuple, tuple]:
    """For a combinator of ``n`` children: one key each (split from ``ctx.key``) and
    the tuple of their ``n`` states (``None`` each when ``ctx.state`` is None)."""
    keys = random.split(ctx.key, n) if ctx.key is not None else (None,) * n
    states = (None,) * n if ctx.state is None else ctx.state
    if type(states) is not tuple or len(states) != n:
        raise StructureError(f"{owner} needs a tuple of {n} states, got {states!r}")
    return keys, states


def init_state(net: Any) -> Any:
    """The initial state of ``net`` (``None`` for layers that keep none).

    Pass it as ``state=`` in training; fnbp hands back the updated state.
    """
    method = getattr(net, "init_state", None)
    return None if method is None else method()


def _plain(train: bool, key: Any, state: Any) -> bool:
    return not train and key is None and state is None


_LAYER_CLASSES: set[type] = set()  # classes already seen to have forward and vjp


def check_layer(layer: Any, owner: str, where: str) -> Any:
    """``layer`` itself if it has ``forward`` and ``vjp``; a TypeError naming ``where`` if not.

    Combinators call it on their children (``owner`` is their name), so a class
    passed instead of an instance gets a hint.
    """
    cls = type(layer)
    if cls in _LAYER_CLASSES:
        return layer
    if isinstance(layer, type) or not (hasattr(cls, "vjp") and hasattr(cls, "forward")):
        hint = f" (did you mean {layer.__name__}()?)" if isinstance(layer, type) else ""
        raise TypeError(
            f"{owner}: {where} must be a layer with forward and vjp, got {layer!r}{hint}"
        )
    _LAYER_CLASSES.add(cls)
    return layer


def dtype_of(params: Any) -> np.dtype:
    """The dtype of the first floating-point leaf of ``params`` (float64 if none)."""
    for leaf in tree.leaves(params):
        dtype = getattr(leaf, "dtype", None)
        if dtype is not None and dtype.kind == "f":
            return dtype
    return np.dtype(np.float64)


def _as_input(x: Any) -> np.ndarray:
    """Accept a real numeric array (lists too); layers cast it as they need."""
    x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise DTypeError(f"expected a real numeric input array, got dtype {x.dtype}")
    return x


def forward(
    net: LayerLike, x: Any, *, train: bool = False, key: random.Key | None = None, state: Any = None
) -> Any:
    """The output of ``net`` for the batch ``x``; pure: nothing is modified.

    Boolean and integer inputs (a truth table, say) are cast to the
    parameters' float dtype by the first ``Dense`` layer, as are float
    inputs of another precision. With ``train=True`` layers such as Dropout
    use ``key``; with ``state=`` it returns ``(y, new_state)``.
    """
    x = _as_input(x)
    if _plain(train, key, state):
        return net.forward(x)
    y, _, new_state = vjp_ctx(net, x, False, Context(train, key, state))
    return y if state is None else (y, new_state)


def vjp(
    net: LayerLike,
    x: Any,
    *,
    need_g_x: bool = True,
    train: bool = False,
    key: random.Key | None = None,
    state: Any = None,
) -> tuple:
    """One forward pass: ``(y, pullback)`` with ``pullback(g_y) -> (g_x, grads)``.

    ``grads`` has the same class and structure as ``net``. With
    ``need_g_x=False`` the gradient with respect to ``x`` is not computed and
    ``g_x`` is ``None`` (in training it is never used). With ``state=`` it
    returns ``(y, pullback, new_state)``.
    """
    x = _as_input(x)
    if _plain(train, key, state):
        return net.vjp(x, need_g_x)
    y, pullback, new_state = vjp_ctx(net, x, need_g_x, Context(train, key, state))
    return (y, pullback) if state is None else (y, pullback, new_state)


def backward(net: LayerLike, x: Any, g_y: Any, *, need_g_x: bool = True, **ctx: Any) -> tuple:
    """``(g_x, grads)``: the gradients of ``sum(forward(net, x) * g_y)``.

    By the chain rule ``g_x = J_x^T g_y`` and ``grads = J_params^T g_y``.
    ``g_y`` must have the output's shape; it is cast to the output's dtype.
    ``train``, ``key`` and ``state`` are as for :func:`vjp`; with ``state=``
    it returns ``(g_x, grads, new_state)``.
    """
    y, pullback, *new_state = vjp(net, x, need_g_x=need_g_x, **ctx)
    g_y = np.asarray(g_y)
    if g_y.shape != y.shape:
        raise ShapeError(f"backward: g_y has shape {g_y.shape}, the output has shape {y.shape}")
    return (*pullback(g_y.astype(y.dtype, copy=False)), *new_state)


def value_and_grad(
    net: LayerLike,
    loss: Loss,
    x: Any,
    target: Any,
    *,
    train: bool = False,
    key: random.Key | None = None,
    state: Any = None,
) -> tuple:
    """``(loss_value, grads)`` for a batch in one forward and one backward pass.

    The input gradient is skipped: only the parameter gradients are computed.
    When the loss absorbs a :class:`Serial`'s output layer (cross-entropy
    after a Sigmoid: ``dL/dz = (p - y) / n``), that layer's two passes are
    folded into the loss; the results equal the two-step ones up to rounding.
    ``train``, ``key`` and ``state`` are as for :func:`vjp`; with ``state=``
    it returns ``(loss_value, grads, new_state)``.
    """
    through = getattr(net, "vjp_for_loss", None)
    if through is None:
        y, pullback, *new_state = vjp(net, x, need_g_x=False, train=train, key=key, state=state)
    else:  # a Serial: the loss may take over its output layer (see Loss.absorbs)
        ctx = None if _plain(train, key, state) else Context(train, key, state)
        y, pullback, s, loss = through(loss, _as_input(x), False, ctx)
        new_state = () if state is None else (s,)
    value, g_y = loss.value_and_grad(y, target)
    return (value, pullback(g_y)[1], *new_state)


def sgd_leaf(p: np.ndarray, g: np.ndarray, learning_rate: float) -> np.ndarray:
    """``p - learning_rate * g`` in ``p``'s dtype, in one new read-only buffer."""
    if p.shape != g.shape:
        raise StructureError(f"params have shape {p.shape}, grads have shape {g.shape}")
    if g.dtype == p.dtype:
        out = g * -learning_rate
    else:
        out = np.multiply(g, -learning_rate, dtype=p.dtype)
    if type(out) is not np.ndarray:  # a 0-d leaf gives a numpy scalar
        out = np.asarray(out)
    out += p
    out.setflags(write=False)  # ours alone: a record can keep it without a view
    return out


def update(params: Any, grads: Any, learning_rate: float) -> Any:
    """One step of plain gradient descent: a new record ``params - learning_rate * grads``.

    ``grads`` must have the structure of ``params`` (a :class:`StructureError`
    names the first path where they differ). The step keeps each leaf's dtype.
    """
    lr = float(learning_rate)
    return tree.map(lambda p, g: sgd_leaf(p, g, lr), params, grads)
