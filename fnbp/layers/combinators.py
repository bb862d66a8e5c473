"""Residual and Parallel: ResNet-style blocks and branches as one expression.

``Residual(f)`` computes ``x + f(x)``; ``Parallel(branches)`` feeds one input
to every branch and concatenates their outputs along the last axis (or sums
them). Both are records like ``Serial``: their gradient record is one of their
own class holding the children's gradient records, so ``update`` and the
optimizers work on them unchanged, and in training mode they hand each child
its own key and state.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import attrs
import numpy as np

from .. import tree, validation
from ..core import Context, ContextLayer, LayerLike, call, check_layer, init_state, split_context
from ..errors import ShapeError
from ..record import nested_repr, static

__all__ = ["Residual", "Parallel"]


def _as_branches(branches: Sequence[LayerLike]) -> tuple[LayerLike, ...]:
    branches = validation.check_sequence("Parallel", "branches", branches, "layers")
    if not branches:
        raise validation.fail("Parallel", "branches", "at least one layer", branches)
    for i, layer in enumerate(branches):
        check_layer(layer, "Parallel", f"branches[{i}]")
    return branches


# --- Residual ------------------------------------------------------------------------------------


@attrs.frozen
class Residual(ContextLayer):
    """A skip connection: ``y = x + f(x)``, ``f`` any layer (often a ``Serial``).

    ``f`` must keep its input's shape (for a tree input, every leaf's). The
    gradients are ``g_x = g_y + J_f^T g_y`` and ``grads = Residual(grads of f)``.
    The output takes ``f(x)``'s dtype (as a first ``Dense`` casts its input to
    its parameters' dtype). In training mode ``f`` gets the key and the state
    unchanged: a Residual's state is ``f``'s.
    """

    f: LayerLike = attrs.field(validator=lambda _r, _a, f: check_layer(f, "Residual", "f"))

    def __repr__(self) -> str:
        return nested_repr("Residual", [repr(self.f)])

    def vjp_ctx(self, x: Any, need_g_x: bool, ctx: Context) -> tuple:
        """``(x + f(x), pullback, state)``; ``g_x`` is skipped, in ``f`` too, unless asked for."""
        y_f, pullback_f, state = call(self.f, x, need_g_x, ctx, "f")

        def pullback(g_y: Any) -> tuple[Any, Residual]:
            g_x_f, grads_f = pullback_f(g_y)
            g_x = tree.map(np.add, g_y, g_x_f) if need_g_x else None
            return g_x, Residual(grads_f)

        return tree.map(_skip, x, y_f), pullback, state

    def init_state(self) -> Any:
        """``f``'s initial state."""
        return init_state(self.f)


def _skip(x: np.ndarray, y_f: np.ndarray) -> np.ndarray:
    """``x + y_f`` in a new array of ``y_f``'s dtype, after checking the shapes agree."""
    if y_f.shape != x.shape:
        raise ShapeError(
            f"Residual: f maps input of shape {x.shape} to shape {y_f.shape}; "
            f"x + f(x) needs f to keep the shape"
        )
    return np.add(x, y_f, dtype=y_f.dtype)


# --- Parallel ------------------------------------------------------------------------------------


@attrs.frozen
class Parallel(ContextLayer):
    """Branches side by side: every branch gets the same ``x``.

    ``combine="concat"`` (the default) concatenates the branch outputs along
    the last axis (channels last), so they must agree on every other axis;
    ``combine="sum"`` adds them, so they must have one shape. The gradients
    are ``g_x = sum_i J_i^T g_i`` (``g_i`` the branch's slice of ``g_y``, or
    all of it for a sum) and ``grads = Parallel(branch grads)``. Outputs of
    different dtypes are combined in numpy's common dtype. In training
    mode each branch gets its own key, split from the one given, and its own
    state: a Parallel's state is the tuple of its branches' states.

    >>> import numpy as np, fnbp as fb
    >>> k1, k2 = fb.random.split(fb.random.key(0))
    >>> block = fb.Parallel((fb.Dense.init(k1, 3, 4), fb.Dense.init(k2, 3, 2)))
    >>> fb.forward(block, np.ones((5, 3), np.float32)).shape
    (5, 6)
    """

    branches: tuple[LayerLike, ...] = attrs.field(converter=_as_branches)
    combine: str = static(default="concat", converter=validation.choice("concat", "sum"))

    def __repr__(self) -> str:
        parts = [repr(branch) for branch in self.branches]
        return nested_repr("Parallel", [*parts, f"combine={self.combine!r}"])

    def vjp_ctx(self, x: Any, need_g_x: bool, ctx: Context) -> tuple:
        """One forward pass per branch, each with its own key and state; the pullback
        splits ``g_y`` and sums the branches' ``g_x``."""
        n = len(self.branches)
        ys, pullbacks, states = [], [], []
        for i, (branch, c) in enumerate(
            zip(
                self.branches,
                split_context(ctx, self.branches, f"Parallel of {n} branches"),
                strict=True,
            )
        ):
            y, pullback, s = call(branch, x, need_g_x, c, f"branches[{i}]")
            ys.append(y)
            pullbacks.append(pullback)
            states.append(s)
        return self._combine(ys), self._pullback(pullbacks, ys, need_g_x), tuple(states)

    def init_state(self) -> tuple:
        """One state per branch (``None`` for those that keep none)."""
        return tuple(init_state(branch) for branch in self.branches)

    def _combine(self, ys: list[np.ndarray]) -> np.ndarray:
        """The branch outputs concatenated or summed, after checking their shapes."""
        concat = self.combine == "concat"
        first = ys[0].shape
        for i, y in enumerate(ys):
            if concat and (y.ndim == 0 or y.shape[:-1] != first[:-1]):
                raise ShapeError(
                    f"Parallel(concat): branches[{i}] gives shape {y.shape}, branches[0] gives "
                    f"{first}; outputs must agree on every axis but the last"
                )
            if not concat and y.shape != first:
                raise ShapeError(
                    f"Parallel(sum): branches[{i}] gives shape {y.shape}, branches[0] gives "
                    f"{first}; summed outputs must have one shape"
                )
        if concat:
            return np.concatenate(ys, axis=-1)
        return ys[0] if len(ys) == 1 else _sum(ys)

    def _pullback(
        self, pullbacks: list[Callable], ys: list[np.ndarray], need_g_x: bool
    ) -> Callable:
        """Each branch's pullback of its part of ``g_y``; the input gradients summed."""
        combine = self.combine
        parts = _slices([y.shape[-1] for y in ys]) if combine == "concat" else None

        def pullback(g_y: np.ndarray) -> tuple[np.ndarray | None, Parallel]:
            g_xs, grads = [], []
            for i, pb in enumerate(pullbacks):
                g_x, g_branch = pb(g_y if parts is None else g_y[..., parts[i]])
                g_xs.append(g_x)
                grads.append(g_branch)
            g_x = (g_xs[0] if len(g_xs) == 1 else _sum(g_xs)) if need_g_x else None
            return g_x, Parallel(tuple(grads), combine)

        return pullback


def _slices(widths: list[int]) -> list[slice]:
    """The slices of the last axis that the branches' outputs occupy, in order."""
    ends = np.cumsum(widths).tolist()
    return [slice(start, end) for start, end in zip([0, *ends[:-1]], ends, strict=True)]


def _sum(arrays: list[np.ndarray]) -> np.ndarray:
    """The sum of two or more arrays in a new buffer of their common dtype (none is written to)."""
    total = np.add(arrays[0], arrays[1], dtype=np.result_type(*arrays))
    for a in arrays[2:]:
        total += a
    return total
