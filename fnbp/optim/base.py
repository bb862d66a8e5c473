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

from .. import tree
from ..errors import StructureError
from ..record import static

__all__ = ["Optimizer", "EmptyState", "identity", "chain", "apply_updates", "step"]

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
            raise TypeError(f"chain: argument {i} must be an Optimizer, got {opt!r}{hint}")

    def init(params: Params) -> tuple:
        return tuple(opt.init(params) for opt in optimizers)

    def update(grads: Any, state: tuple, params: Params = None) -> tuple[Updates, tuple]:
        if not isinstance(state, tuple) or len(state) != len(optimizers):
            raise TypeError(
                f"chain of {len(optimizers)} transforms expects a tuple of {len(optimizers)} "
                f"states (from its own init), got {type(state).__name__}"
            )
        new_state = []
        for opt, s in zip(optimizers, state, strict=True):
            grads, s = opt.update(grads, s, params)
            new_state.append(s)
        return grads, tuple(new_state)

    return Optimizer(init, update)


def _add_leaf(p: np.ndarray, u: np.ndarray) -> np.ndarray:
    if np.shape(p) != np.shape(u):
        raise StructureError(f"params have shape {np.shape(p)}, updates have {np.shape(u)}")
    # out= keeps a 0-d param a 0-d array; dtype= casts the update first, as fb.update does
    return frozen(np.add(p, u, out=np.empty(np.shape(p), p.dtype), dtype=p.dtype))


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


def frozen(a: np.ndarray) -> np.ndarray:
    """Mark a buffer the caller just allocated read-only, and return it."""
    a.flags.writeable = False
    return a


def counter(n: int) -> np.ndarray:
    """A step counter: a read-only 0-d int64 array."""
    return frozen(np.array(n, dtype=np.int64))


def expect_state(state: Any, cls: type, where: str) -> None:
    """Raise TypeError unless ``state`` is a ``cls`` (a state from another optimizer)."""
    if not isinstance(state, cls):
        raise TypeError(
            f"{where}: expected a {cls.__name__} (from its own init), got {type(state).__name__}"
        )


def check_range(name: str, value: float, lo: float, hi: float, hi_open: bool = True) -> float:
    """``float(value)``, or ValueError unless ``lo <= value < hi`` (``<= hi`` if closed)."""
    v = float(value)
    if not (lo <= v and (v < hi if hi_open else v <= hi)):
        bracket = ")" if hi_open else "]"
        raise ValueError(f"{name} must be in [{lo}, {hi}{bracket}, got {value!r}")
    return v
