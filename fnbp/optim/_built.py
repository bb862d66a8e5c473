"""The trees fnbp's optimizer steps build, remembered while they live.

A training loop hands every step the tree the step before returned. So a step
remembers, for each immutable tree it builds (tuples and frozen records, see
``_builders``), the functions written for its structure -- a builder of new
trees from leaves, one from a vector (a flat step's), and a reader of trees of
the same structure -- and, for a tree laid on one vector, that vector. The next
step finds all of it from the tree alone, by identity, without a walk.

A tree a step was *given* (the first one, a user's) gets an entry too once a
function has been written for it, without a vector, so that steps from the same
tree again reuse it. Entries go when their trees go (weak references).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import numpy as np

from ..tree import unflatten
from ..validation import FLOAT_SET
from ._builders import Build, Read, builder, reader


class Entry:
    """What is remembered of one tree: ``vector`` (the one its leaves are views of, or
    None), the ``shapes`` of its leaves, and the functions written for its structure
    so far (``listed``: a builder from a list of leaves, ``flat``: from a vector,
    ``read``: a reader; each None until needed)."""

    __slots__ = ("flat", "listed", "read", "ref", "shapes", "vector")

    def __init__(self, ref: weakref.ref, vector: np.ndarray | None, shapes: tuple):
        self.ref, self.vector, self.shapes = ref, vector, shapes
        self.flat: Build | None = None
        self.listed: Build | None = None
        self.read: Read | None = None


_TREES: dict[int, Entry] = {}


def entry(tree: Any) -> Entry | None:
    """The entry of this very ``tree``, if it has one."""
    found = _TREES.get(id(tree))
    return found if found is not None and found.ref() is tree else None


def remember(
    tree: Any, vector: np.ndarray | None, shapes: tuple, like: Entry | None
) -> Entry | None:
    """A new entry for ``tree`` (built on ``vector``, if any), with the functions of
    ``like``, the entry of the tree it was built like; None for a tree that takes no
    weak reference (a tuple at the top)."""
    key = id(tree)
    try:
        ref = weakref.ref(tree, _forget(key))
    except TypeError:
        return None
    new = _TREES[key] = Entry(ref, vector, shapes)
    if like is not None and like.shapes == shapes:
        new.flat, new.listed, new.read = like.flat, like.listed, like.read
    return new


def _forget(key: int) -> Callable[[weakref.ref], None]:
    """The callback that drops a tree's entry when the tree itself goes."""

    def forget(_: weakref.ref) -> None:
        _TREES.pop(key, None)

    return forget


def known(like: Any, shapes: tuple) -> Entry | None:
    """``like``'s entry, made now if it has none (without a vector): the place to keep
    the functions written for its structure."""
    found = entry(like)
    if found is not None and found.shapes == shapes:
        return found
    return remember(like, None, shapes, None)


def rebuilt(like: Any, leaves: list[np.ndarray]) -> Any:
    """``fb.tree.unflatten(like, leaves)`` for the new leaves an optimizer step just made
    (read-only arrays of their own memory, which a record's converter keeps as they
    are): through a builder written once per structure when ``like`` is immutable
    all the way down, and remembered for the next step."""
    shapes = tuple(a.shape for a in leaves)
    mine = entry(like)
    build = mine.listed if mine is not None and mine.shapes == shapes else None
    if build is None:
        build = builder(like, shapes)
        if build is None:  # a list, a dict or a record that allows assignment in it
            return unflatten(like, leaves)
        mine = known(like, shapes)
        if mine is not None:
            mine.listed = build
    out = build(leaves)
    remember(out, None, shapes, mine)
    return out


def reader_of(params: Any) -> Read | None:
    """The reader of trees shaped like ``params``, a tree with an entry (written on first
    need, then passed on to the trees built after it); None for any other tree."""
    mine = entry(params)
    if mine is None:
        return None
    if mine.read is None:
        mine.read = reader(params)
    return mine.read


def paired(params: Any, grads: Any) -> tuple[list, list] | None:
    """The leaves of ``params`` and ``grads`` when ``params`` has an entry and ``grads``
    its very structure, leaves of the same shapes, float32 or float64 (its reader
    pairs them); None otherwise, and the caller pairs them as any tree function
    does (and names any difference)."""
    read = reader_of(params)
    if read is None:
        return None
    p, g = read(params), read(grads)
    if p is None or g is None:
        return None
    for a, b in zip(p, g, strict=True):
        if type(b) is not np.ndarray or b.shape != a.shape or b.dtype not in FLOAT_SET:
            return None
    return p, g
