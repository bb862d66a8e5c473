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
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from . import tree
from .errors import DTypeError, ShapeError, StructureError

if TYPE_CHECKING:
    from collections.abc import Callable

    from .losses import Loss

__all__ = ["Layer", "forward", "backward", "vjp", "update", "value_and_grad", "dtype_of"]


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


def dtype_of(params: Any) -> np.dtype:
    """The dtype of the first floating-point leaf of ``params`` (float64 if none)."""
    for leaf in tree.leaves(params):
        dtype = getattr(leaf, "dtype", None)
        if dtype is not None and dtype.kind == "f":
            return dtype
    return np.dtype(np.float64)


def _as_input(net: Any, x: Any) -> np.ndarray:
    """Accept a numeric array; cast booleans and integers to the net's float dtype."""
    x = np.asarray(x)
    kind = x.dtype.kind
    if kind == "f":
        return x
    if kind in "biu":
        return x.astype(dtype_of(net))
    raise DTypeError(f"expected a real numeric input array, got dtype {x.dtype}")


def forward(net: LayerLike, x: Any) -> np.ndarray:
    """The output of ``net`` for the batch ``x``; pure: nothing is modified.

    Boolean and integer inputs (a truth table, say) are cast once to the
    network's float dtype; float inputs are cast by the first parametrised
    layer to its own dtype.
    """
    return net.forward(_as_input(net, x))


def vjp(net: LayerLike, x: Any, *, need_g_x: bool = True) -> tuple[np.ndarray, Callable]:
    """One forward pass: ``(y, pullback)`` with ``pullback(g_y) -> (g_x, grads)``.

    ``grads`` has the same class and structure as ``net``. With
    ``need_g_x=False`` the gradient with respect to ``x`` is not computed and
    ``g_x`` is ``None`` (in training it is never used).
    """
    return net.vjp(_as_input(net, x), need_g_x)


def backward(
    net: LayerLike, x: Any, g_y: Any, *, need_g_x: bool = True
) -> tuple[np.ndarray | None, Any]:
    """``(g_x, grads)``: the gradients of ``sum(forward(net, x) * g_y)``.

    By the chain rule ``g_x = J_x^T g_y`` and ``grads = J_params^T g_y``.
    ``g_y`` must have the output's shape; it is cast to the output's dtype.
    """
    y, pullback = vjp(net, x, need_g_x=need_g_x)
    g_y = np.asarray(g_y)
    if g_y.shape != y.shape:
        raise ShapeError(f"backward: g_y has shape {g_y.shape}, the output has shape {y.shape}")
    return pullback(g_y.astype(y.dtype, copy=False))


def value_and_grad(net: LayerLike, loss: Loss, x: Any, target: Any) -> tuple[np.floating, Any]:
    """``(loss_value, grads)`` for a batch in one forward and one backward pass.

    The input gradient is skipped: only the parameter gradients are computed.
    """
    y, pullback = vjp(net, x, need_g_x=False)
    value, g_y = loss.value_and_grad(y, target)
    return value, pullback(g_y)[1]


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
