"""The carry of a recurrent cell: what the cells and the time loop both need of it.

A built-in cell's carry is ``h`` (an array ``(N, H)``) or a tuple whose first
leaf is ``h`` (the LSTM's ``(h, c)``); a user's cell may carry any tree.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .. import tree, validation
from ..errors import ShapeError, StructureError

__all__ = [
    "underflow_to_zero",
    "hidden",
    "add_to_hidden",
    "map_carry",
    "keep_where",
    "carry_shapes",
    "shapes_of",
    "check_carry",
]

Tree = Any


def underflow_to_zero() -> np.errstate:
    """The cells' arithmetic context: underflow is not an error (overflow still is).

    An LSTM's cell state is multiplied by its forget gate at every step and
    may decay below the smallest float; IEEE arithmetic rounds it to 0, which
    is the right value, so the cells and the time loop compute under
    ``np.errstate(under="ignore")`` (a user's cell in the loop too).
    """
    return np.errstate(under="ignore")


def hidden(carry: Tree) -> np.ndarray:
    """The hidden state of a built-in cell's carry: ``h``, or the first leaf of ``(h, c)``."""
    return carry if type(carry) is np.ndarray else carry[0]


def add_to_hidden(g_carry: Tree, g_h: np.ndarray) -> Tree:
    """``g_carry`` with ``g_h`` added to the gradient of ``h`` (a new array)."""
    if type(g_carry) is np.ndarray:
        return g_carry + g_h
    return (g_carry[0] + g_h, *g_carry[1:])


def map_carry(f: Callable, t: Tree, *rest: Tree) -> Tree:
    """``tree.map`` with a fast path for one array (the carry of an RNN or a GRU)."""
    return f(t, *rest) if type(t) is np.ndarray else tree.map(f, t, *rest)


def keep_where(m: np.ndarray, new: Tree, old: Tree) -> Tree:
    """``m * new + (1 - m) * old`` for a boolean column ``m`` (N, 1): the masked step."""
    return map_carry(lambda a, b: np.where(m, a, b), new, old)


def carry_shapes(t: Tree) -> str:
    """``(N, 4)`` or ``((N, 4), (N, 4))``: the shapes a carry must have, N for the batch."""
    if type(t) is tuple:
        return "(" + ", ".join(carry_shapes(c) for c in t) + ")"
    return "(N, " + ", ".join(map(str, np.shape(t))) + ")"


def shapes_of(t: Tree) -> str:
    """The shapes of a given tree, for an error message."""
    if type(t) is tuple:
        return "(" + ", ".join(shapes_of(c) for c in t) + ")"
    if type(t) is np.ndarray:
        return f"an array of shape {t.shape}"
    return f"a {type(t).__name__}"


def check_carry(template: Tree, carry: Tree, n: int, dtype: np.dtype, owner: str) -> Tree:
    """``carry`` checked against ``template`` (one sample's carry, ``(H,)`` per leaf):
    the same structure, each leaf of shape ``(n, H)``, cast to ``dtype``."""
    expected = f"{owner}: the carry must be {carry_shapes(template)} with N = {n}"
    if tree.mismatch(template, carry) is not None or (
        type(template) is tuple and len(tree.leaves(carry)) != len(tree.leaves(template))
    ):
        raise StructureError(f"{expected}, got {shapes_of(carry)}")

    def leaf(t: np.ndarray, a: Any) -> np.ndarray:
        a = validation.numeric(a, owner, "carry")
        if a.shape != (n, *t.shape):
            raise ShapeError(f"{expected}, got {shapes_of(carry)}")
        return a if a.dtype == dtype else a.astype(dtype)

    return tree.map(leaf, template, carry)
