"""Small trees laid end to end: one vector per tree, so that a rule runs once per step.

A network of many small arrays (the MNIST-1D MLP: six arrays, 15,210 numbers)
spends most of an optimizer step calling numpy a dozen times per array. When
every transform of an optimizer is *flat* (its rule means the same on one
vector holding all the leaves, in tree order, as on the leaves one by one),
:func:`fnbp.optim.step` hands it one vector per tree instead: the grads are
copied into a new vector, the params and the moments are read from theirs.
The new params and moments it returns are read-only *views* of their new
vectors, registered here, so that the next step finds the vector behind a tree
without a copy. The arithmetic is the same, element by element, so the bits
are the same; what differs is how many numpy calls it takes.

A tree built here on a vector is also remembered itself (``_built``), with the
function that built it, when it is immutable all the way down (tuples and
frozen records): the next step then finds its vector from the tree alone, and
builds the next tree with the same function (``_builders``), without walking
the structure again.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np

from ..tree import leaves as tree_leaves
from ..tree import unflatten
from . import _built
from ._builders import builder

MEAN_SIZE = 4096
"""The largest mean number of elements per leaf laid flat: above it, copying the grads
into one vector costs more than the numpy calls it saves (benchmarks/optimizers.py)."""

_BOUNDS: dict[tuple, tuple[tuple[int, int], ...]] = {}
_LAID: dict[int, tuple[weakref.ref, list[weakref.ref]]] = {}


class Unfit(Exception):
    """Raised inside a flat rule when these trees cannot be laid flat after all (a moment
    of another dtype): :func:`fnbp.optim.step` then runs the rule leaf by leaf."""


class Layout:
    """Where each leaf of a tree sits in one vector: ``bounds[i] = (start, stop)``.

    ``tree`` is the grads tree the step was given (its structure names the
    leaves in errors), ``shapes`` and ``dtype`` those of the params.
    """

    __slots__ = ("bounds", "dtype", "shapes", "size", "tree")

    def __init__(self, tree: Any, shapes: tuple, dtype: np.dtype):
        bounds = _BOUNDS.get(shapes)
        if bounds is None:
            bounds = _bounds(shapes)
        self.tree, self.shapes, self.bounds, self.dtype = tree, shapes, bounds, dtype
        self.size = bounds[-1][1]

    def vector(self, leaves: list[np.ndarray]) -> np.ndarray:
        """The read-only vector behind ``leaves``: theirs when they are the views this
        module laid over one (no copy), else a new copy (raises :class:`Unfit` for
        leaves of another dtype)."""
        base = leaves[0].base
        entry = None if base is None else _LAID.get(id(base))
        if entry is not None and entry[0]() is base and len(entry[1]) == len(leaves):
            for r, a in zip(entry[1], leaves, strict=True):
                if r() is not a:
                    break
            else:
                return base  # type: ignore[return-value]
        dtype = self.dtype
        for a in leaves:
            if a.dtype != dtype:
                raise Unfit
        vector = self.copy(leaves)
        vector.flags.writeable = False
        return vector

    def copy(self, leaves: list[np.ndarray]) -> np.ndarray:
        """A new vector holding ``leaves`` (in their dtype, which must be one): the
        caller's to write into."""
        return np.concatenate(leaves, axis=None)  # each raveled in C order

    def segments(self, vector: np.ndarray) -> list[np.ndarray]:
        """The leaves of ``vector``: views of it, one per leaf, in tree order."""
        return [
            vector[a:b] if len(shape) == 1 else vector[a:b].reshape(shape)
            for (a, b), shape in zip(self.bounds, self.shapes, strict=True)
        ]

    def vector_of(self, tree: Any) -> np.ndarray | None:
        """The vector ``tree`` was built on by :meth:`rebuild`, when it is that very tree
        and was laid out as this layout is; else None."""
        mine = _built.entry(tree)
        if mine is None or mine.vector is None or mine.shapes != self.shapes:
            return None
        return mine.vector if mine.vector.dtype == self.dtype else None

    def rebuild(self, like: Any, vector: np.ndarray) -> Any:
        """A tree shaped like ``like`` whose leaves are read-only :meth:`segments` of
        ``vector``. When it is immutable all the way down, the tree itself is
        remembered with its vector (``_built``: :meth:`vector_of` finds it, the next
        rebuild its builder); otherwise its leaves are, as :meth:`views` does."""
        mine = _built.entry(like)
        build = mine.flat if mine is not None and mine.shapes == self.shapes else None
        if build is None:
            build = builder(like, self.shapes, self.bounds)
            if build is None:  # a list, a dict or a record that allows assignment in it
                return unflatten(like, self.views(vector))
            mine = _built.known(like, self.shapes)
            if mine is not None:
                mine.flat = build
        vector.flags.writeable = False
        out = build(vector)
        if _built.remember(out, vector, self.shapes, mine) is None:
            _register(vector, tree_leaves(out))  # a tuple at the top: found by its leaves
        return out

    def views(self, vector: np.ndarray) -> list[np.ndarray]:
        """:meth:`segments` of ``vector``, made read-only, registered so that
        :meth:`vector` finds it again from them."""
        vector.flags.writeable = False
        views = self.segments(vector)
        _register(vector, views)
        return views


def _register(vector: np.ndarray, views: list[np.ndarray]) -> None:
    """Remember ``vector`` behind ``views`` (see :meth:`Layout.vector`), while it lives."""
    key = id(vector)
    _LAID[key] = (weakref.ref(vector, _forget(key)), [weakref.ref(v) for v in views])


def _forget(key: int) -> Callable[[weakref.ref], None]:
    """The callback that drops a vector's entry when the vector itself goes."""

    def forget(_: weakref.ref) -> None:
        _LAID.pop(key, None)

    return forget


def _bounds(shapes: tuple) -> tuple[tuple[int, int], ...]:
    bounds, start = [], 0
    for shape in shapes:
        stop = start + math.prod(shape)
        bounds.append((start, stop))
        start = stop
    if len(_BOUNDS) >= 256:  # a cache, not a record of every network ever seen
        _BOUNDS.clear()
    _BOUNDS[shapes] = result = tuple(bounds)
    return result


def found(params: Any, grads: Any, state: Any) -> tuple[Layout, np.ndarray, list] | None:
    """``(layout, vector, grad leaves)`` when ``params`` is a tree a flat step built here
    and ``grads`` has its very structure, with leaves of its shapes and dtype: the
    pairing and the layout of the last step hold, found without a walk. None
    otherwise (then :func:`layout` decides, after the trees are paired)."""
    mine = _built.entry(params)
    if mine is None or mine.vector is None or not _has_moments(state):
        return None
    vector, shapes = mine.vector, mine.shapes
    if vector.size > MEAN_SIZE * len(shapes):  # as layout() decides
        return None
    read = _built.reader_of(params)
    g = None if read is None else read(grads)
    if g is None:
        return None
    dtype = vector.dtype
    for a, shape in zip(g, shapes, strict=True):
        if type(a) is not np.ndarray or a.shape != shape or a.dtype != dtype:
            return None
    return Layout(grads, shapes, dtype), vector, g


def layout(p: list[np.ndarray], g: list[np.ndarray], like: Any, state: Any) -> Layout | None:
    """A :class:`Layout` of the param leaves ``p`` when laying them flat pays: two leaves
    or more, of :data:`MEAN_SIZE` elements or fewer on average, the params and the
    grads all of one dtype, and a ``state`` holding moments (plain SGD makes too few
    numpy calls per array to win back the copy of its grads). None otherwise."""
    n = len(p)
    if n < 2 or not _has_moments(state):
        return None
    dtype = p[0].dtype
    size = 0
    for a, b in zip(p, g, strict=True):
        if a.dtype != dtype or b.dtype != dtype:
            return None
        size += a.size
    if size > MEAN_SIZE * n:
        return None
    return Layout(like, tuple(a.shape for a in p), dtype)


def _has_moments(state: Any) -> bool:
    """Whether ``state`` holds more than counters: a record (or a tuple of them, as a
    chain's) with a field that is a tree, not an array. Anything else is taken to."""
    if type(state) is tuple:
        return any(_has_moments(s) for s in state)
    fields = getattr(type(state), "__attrs_attrs__", None)
    if fields is None:
        return type(state) is not np.ndarray and state is not None
    for field in fields:
        value = getattr(state, field.name)
        if value is not None and type(value) is not np.ndarray:
            return True
    return False
