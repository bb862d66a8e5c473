"""The optimizer contract: ``Optimizer(init, update)``, ``chain``, ``apply_updates``.

An optimizer is a pair of pure functions::

    state = opt.init(params)
    updates, state = opt.update(grads, state, params)   # params only if needed
    params = apply_updates(params, updates)             # leafwise params + updates

``updates`` is a tree shaped like ``params``. A *gradient transform* is the same
thing: ``scale(-0.1)`` turns grads into SGD updates, ``clip_by_global_norm(1.0)``
rescales them, and :func:`chain` runs transforms one after another, each
receiving the previous one's output as its ``grads``. States are frozen records
whose moment trees mirror ``params``; nothing is written in place, ever.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import numpy as np

from .. import tree, validation
from ..errors import ShapeError, StructureError
from ..record import frozen, static
from . import _leaf

__all__ = ["Optimizer", "EmptyState", "identity", "chain", "apply_updates", "step", "update"]

Params = Any
Updates = Any
State = Any


@attrs.frozen
class Optimizer:
    """A pair of pure functions ``(init, update)``.

    * ``init(params) -> state``
    * ``update(grads, state, params=None) -> (updates, new_state)``

    Both are static fields: an optimizer is not a tree of arrays.

    >>> import numpy as np, fnbp as fb
    >>> opt = fb.optim.sgd(0.1)
    >>> params = {"w": np.array([1.0, 2.0])}
    >>> state = opt.init(params)
    >>> updates, state = opt.update({"w": np.array([1.0, -1.0])}, state)
    >>> fb.optim.apply_updates(params, updates)["w"].tolist()
    [0.9, 2.1]
    """

    init: Callable[[Params], State] = static()
    update: Callable[..., tuple[Updates, State]] = static()


@attrs.frozen
class EmptyState:
    """The state of a stateless transform (``scale``, ``clip_by_global_norm``...)."""


def identity() -> Optimizer:
    """The transform that returns ``grads`` unchanged: ``updates = grads``."""
    return Optimizer(lambda params: EmptyState(), lambda grads, state, params=None: (grads, state))


def chain(*optimizers: Optimizer) -> Optimizer:
    """Run transforms in order: ``updates = t_n(... t_2(t_1(grads)))``.

    The state is the tuple of the inner states, in the same order.

    >>> import fnbp as fb
    >>> opt = fb.optim.chain(fb.optim.clip_by_global_norm(1.0), fb.optim.adam(1e-3))
    """
    for i, opt in enumerate(optimizers):
        if not isinstance(opt, Optimizer):
            hint = " (did you forget to call it?)" if callable(opt) else ""
            raise validation.fail("chain", f"argument {i}", f"an Optimizer{hint}", opt)

    def init(params: Params) -> tuple:
        return tuple(opt.init(params) for opt in optimizers)

    def update(grads: Any, state: tuple, params: Params = None) -> tuple[Updates, tuple]:
        if not isinstance(state, tuple) or len(state) != len(optimizers):
            raise StructureError(
                f"chain of {len(optimizers)} transforms expects a tuple of {len(optimizers)} "
                f"states (from its own init), got {type(state).__name__}"
            )
        new_state = []
        for opt, s in zip(optimizers, state, strict=True):
            grads, s = opt.update(grads, s, params)
            new_state.append(s)
        return grads, tuple(new_state)

    return Optimizer(init, update)


def _check_pair(p: Any, u: Any, what: str) -> None:
    if type(p) is not np.ndarray or type(u) is not np.ndarray:
        raise StructureError(
            f"params and {what} leaves must be arrays, got {type(p).__name__} "
            f"and {type(u).__name__}"
        )
    if p.shape != u.shape:
        raise ShapeError(f"params have shape {p.shape}, {what} have {u.shape}")
    if u.dtype not in validation.FLOAT_SET:
        validation.floating(u, "apply_updates", what)


def _add_leaf(p: np.ndarray, u: np.ndarray) -> np.ndarray:
    _check_pair(p, u, "updates")
    return _leaf.add(p, u)


def apply_updates(params: Params, updates: Updates) -> Params:
    """New params ``params + updates``, leaf by leaf, in each param leaf's dtype.

    The new leaves are fresh read-only arrays, as :func:`fnbp.update` returns.
    A float64 update is cast to a float32 param's dtype, never the reverse.
    A :class:`~fnbp.StructureError` names the first path where the trees differ.
    """
    return tree.map(_add_leaf, params, updates)


def step(opt: Optimizer, params: Params, grads: Any, state: State) -> tuple[Params, State]:
    """One optimizer step: ``(apply_updates(params, updates), new_state)``.

    >>> import numpy as np, fnbp as fb
    >>> opt = fb.optim.adam(0.1)
    >>> params = np.array([1.0, -1.0])
    >>> params, state = fb.optim.step(opt, params, np.array([2.0, -3.0]), opt.init(params))
    >>> params.round(6).tolist()
    [0.9, -0.9]
    """
    updates, state = opt.update(grads, state, params)
    return apply_updates(params, updates), state


def update(params: Params, grads: Any, learning_rate: float) -> Params:
    """One step of plain gradient descent: a new record ``params - learning_rate * grads``.

    ``grads`` must have the structure of ``params`` (a :class:`~fnbp.StructureError`
    names the first path where they differ). Each leaf keeps its dtype. The
    same per-array step as ``fb.optim.sgd(learning_rate)``, so the two give the
    same bits.

    >>> import numpy as np, fnbp as fb
    >>> fb.update({"w": np.array([1.0, 2.0])}, {"w": np.array([1.0, -1.0])}, 0.5)["w"].tolist()
    [0.5, 2.5]
    """
    lr = validation.check_real("update", "learning_rate", learning_rate, low=0.0)

    def descend(p: np.ndarray, g: np.ndarray) -> np.ndarray:
        _check_pair(p, g, "grads")
        return _leaf.add(p, _leaf.scale(g, -lr))

    return tree.map(descend, params, grads)


# ---- plumbing shared by the transforms ------------------------------------------------


def leafwise(fn: Callable[..., tuple], n: int, grads: Any, *others: Any) -> tuple:
    """Apply ``fn(g, *xs) -> (out_1, ..., out_n)`` leafwise; return ``n`` trees like grads.

    ``others`` must have the structure and leaf shapes of ``grads``, else a
    :class:`~fnbp.StructureError` names the path.
    """
    outs: list[tuple] = []

    def visit(g: np.ndarray, *xs: np.ndarray) -> None:
        for x in xs:
            if np.shape(x) != np.shape(g):
                raise StructureError(f"grads have shape {np.shape(g)}, state has {np.shape(x)}")
        outs.append(fn(g, *xs))

    tree.map(visit, grads, *others)
    return tuple(tree.unflatten(grads, [o[i] for o in outs]) for i in range(n))


def counter(n: int) -> np.ndarray:
    """A step counter: a read-only 0-d int64 array."""
    return frozen(np.array(n, dtype=np.int64))


def expect_state(state: Any, cls: type, where: str) -> None:
    """A StructureError unless ``state`` is a ``cls`` (not a state of another optimizer)."""
    validation.check_structure(where, state, cls, "the state from its own init")
