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

A tree built here on a vector is also registered itself, with the function that
built it, when it is immutable all the way down (tuples and frozen records):
the next step then finds its vector from the tree alone, and builds the next
tree with the same function, without walking the structure again. Records
whose ``__init__`` only converts float params (:func:`fnbp.record.direct`) are
built without it, from views their converters would keep unchanged.
"""

from __future__ import annotations

import math
import operator
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np

from ..record import direct, immutable
from ..tree import is_leaf, record_fields, unflatten

MEAN_SIZE = 4096
"""The largest mean number of elements per leaf laid flat: above it, copying the grads
into one vector costs more than the numpy calls it saves (benchmarks/optimizers.py)."""

_BOUNDS: dict[tuple, tuple[tuple[int, int], ...]] = {}
_LAID: dict[int, tuple[weakref.ref, list[weakref.ref]]] = {}
Build = Callable[[list[np.ndarray]], Any]
_TREES: dict[int, tuple[weakref.ref, np.ndarray, Build, tuple]] = {}
"""id(tree) -> (weak reference to the tree, its vector, the function that built it, the
shapes of its leaves): the immutable trees built here, while they live."""


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
        entry = _TREES.get(id(tree))
        if entry is None or entry[0]() is not tree or entry[3] != self.shapes:
            return None
        vector = entry[1]
        return vector if vector.dtype == self.dtype else None

    def rebuild(self, like: Any, vector: np.ndarray) -> Any:
        """A tree shaped like ``like`` whose leaves are read-only :meth:`segments` of
        ``vector``. When it is immutable all the way down, the tree itself is
        registered (:meth:`vector_of` finds its vector, the next rebuild its builder);
        otherwise its leaves are, as :meth:`views` does."""
        entry = _TREES.get(id(like))
        if entry is not None and entry[0]() is like and entry[3] == self.shapes:
            build: Build | None = entry[2]
        else:
            build = _builder(like, self.shapes)
        if build is None:  # a list, a dict or a record that allows assignment in it
            return unflatten(like, self.views(vector))
        vector.flags.writeable = False
        views = self.segments(vector)
        out = build(views)
        key = id(out)
        try:
            ref = weakref.ref(out, _forget_tree(key))
        except TypeError:  # a tuple at the top: found again through its leaves
            _register(vector, views)
            return out
        _TREES[key] = (ref, vector, build, self.shapes)
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


def _forget_tree(key: int) -> Callable[[weakref.ref], None]:
    """The callback that drops a tree's entry when the tree itself goes."""

    def forget(_: weakref.ref) -> None:
        _TREES.pop(key, None)

    return forget


def _builder(like: Any, shapes: tuple) -> Build | None:
    """A function from the list of leaf views to a new tree shaped like ``like`` (its
    leaves of ``shapes``, in order), or None unless ``like`` is immutable all the way
    down: tuples, None and frozen records around its array leaves."""
    count = [0]
    found = _compile(like, shapes, count)
    if found is None or count[0] != len(shapes) or not found[0]:
        return None
    return found[1]


def _compile(t: Any, shapes: tuple, count: list[int]) -> tuple[bool, Any] | None:
    """``(True, build)`` for a node with leaves below it, ``(False, t)`` for one without
    (kept as it is), None for a node that could change (see :func:`_builder`)."""
    cls = type(t)
    if cls is np.ndarray:
        i = count[0]
        if i >= len(shapes) or t.shape != shapes[i]:
            return None
        count[0] += 1
        return True, operator.itemgetter(i)
    if t is None:
        return False, t
    if cls is tuple:
        return _compile_tuple(t, shapes, count)
    if is_leaf(t) or not immutable(cls):
        return None
    dynamic, static = record_fields(cls)
    parts: list[tuple[str, Build]] = []
    fixed: list[tuple[str, Any]] = [(name, getattr(t, name)) for name in static]
    for name in dynamic:
        found = _compile(getattr(t, name), shapes, count)
        if found is None:
            return None
        (parts if found[0] else fixed).append((name, found[1]))
    if not parts:
        return False, t
    return True, _record_builder(cls, parts, fixed)


def _compile_tuple(t: tuple, shapes: tuple, count: list[int]) -> tuple[bool, Any] | None:
    parts = []
    for pos, x in enumerate(t):
        found = _compile(x, shapes, count)
        if found is None:
            return None
        if found[0]:
            parts.append((pos, found[1]))
    if not parts:
        return False, t
    template = list(t)

    def build_tuple(views: list[np.ndarray]) -> tuple:
        out = template.copy()
        for pos, build in parts:
            out[pos] = build(views)
        return tuple(out)

    return True, build_tuple


def _record_builder(
    cls: type, parts: list[tuple[str, Build]], fixed: list[tuple[str, Any]]
) -> Build:
    """Build a ``cls`` from its ``fixed`` fields and the ``parts`` built from the views:
    directly when :func:`fnbp.record.direct` allows, else through the class."""
    if not direct(cls):
        kept = dict(fixed)

        def build_through(views: list[np.ndarray]) -> Any:
            kwargs = kept.copy()
            for name, build in parts:
                kwargs[name] = build(views)
            return cls(**kwargs)

        return build_through
    new, put = object.__new__, object.__setattr__

    def build_direct(views: list[np.ndarray]) -> Any:
        record: Any = new(cls)
        for name, build in parts:
            put(record, name, build(views))
        for name, value in fixed:
            put(record, name, value)
        return record

    return build_direct


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
