"""Functions over trees of arrays.

A *tree* is an array (a leaf), ``None`` (an empty tree), or a tuple, list, dict
or attrs record of trees. Static record fields (see :func:`fnbp.static`) are
not part of the tree: they are carried over untouched, and two trees only have
the same structure if their static fields are equal. Anything else that is
not a container is a leaf.

Errors name the first path where two trees differ, e.g. ``layers[2].W``.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import numpy as np

from .errors import StructureError

__all__ = [
    "map",
    "leaves",
    "leaves_with_paths",
    "flatten",
    "unflatten",
    "zeros_like",
    "add",
    "sub",
    "scale",
    "vdot",
    "global_norm",
    "allclose",
    "ravel",
    "assert_same_structure",
]

_LEAF, _SEQ, _DICT, _RECORD, _NONE = range(5)
_KINDS: dict[type, int] = {
    np.ndarray: _LEAF,
    tuple: _SEQ,
    list: _SEQ,
    dict: _DICT,
    type(None): _NONE,
}
_FIELDS: dict[type, tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]] = {}


def _kind(cls: type) -> int:
    """What a value of class ``cls`` is to a tree: leaf, sequence, dict, record, None."""
    kind = _KINDS.get(cls)
    if kind is None:
        kind = _KINDS[cls] = _RECORD if attrs.has(cls) else _LEAF
    return kind


def _fields(cls: type) -> tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]:
    """(dynamic, static) init fields of an attrs class as (name, init alias), cached."""
    spec = _FIELDS.get(cls)
    if spec is None:
        dynamic, static = [], []
        for f in attrs.fields(cls):
            if f.init:
                (static if f.metadata.get("static") else dynamic).append((f.name, f.alias))
        spec = _FIELDS[cls] = (tuple(dynamic), tuple(static))
    return spec


def _is_node(t: Any) -> bool:
    return _kind(type(t)) != _LEAF


def _check_same_node(t: Any, others: tuple, kind: int) -> None:
    """Raise StructureError if any of ``others`` is not the same kind of node as ``t``."""
    cls = type(t)
    for o in others:
        if type(o) is not cls:
            raise StructureError(
                f"{cls.__name__} here in one tree, {type(o).__name__} in the other"
            )
        if kind == _SEQ:
            if len(o) != len(t):
                raise StructureError(f"{cls.__name__} of length {len(t)} vs {len(o)}")
        elif kind == _DICT:
            if o.keys() != t.keys():
                raise StructureError(f"dict keys {sorted(t)} vs {sorted(o)}")
        elif kind == _RECORD:
            for name, _ in _fields(cls)[1]:
                if getattr(t, name) != getattr(o, name):
                    raise StructureError(
                        f"static field {name!r} is {getattr(t, name)!r} vs {getattr(o, name)!r}"
                    )


def _map(f: Callable, t: Any, others: tuple) -> Any:
    """The engine of :func:`map`. It runs on every training step, so it is
    written for speed: no comprehensions, array children handled inline, and
    the path of a mismatch assembled only when one is raised."""
    cls = type(t)
    kind = _KINDS.get(cls)
    if kind is None:
        kind = _kind(cls)
    if kind == _LEAF:
        for o in others:
            if _kind(type(o)) != _LEAF:
                raise StructureError(f"a leaf here in one tree, a {type(o).__name__} in the other")
        return f(t, *others)
    if others and (
        len(others) > 1 or type(others[0]) is not cls or kind != _RECORD or _fields(cls)[1]
    ):
        _check_same_node(t, others, kind)
    if kind == _RECORD:
        return _map_record(f, t, others, cls)
    if kind == _SEQ:
        out = []
        for i, x in enumerate(t):
            try:
                out.append(_map(f, x, _getitems(others, i)))
            except StructureError as e:
                raise e.within(f"[{i}]") from None
        return out if cls is list else tuple(out)
    if kind == _DICT:
        out = {}
        for k, x in t.items():
            try:
                out[k] = _map(f, x, _getitems(others, k))
            except StructureError as e:
                raise e.within(f"[{k!r}]") from None
        return out
    return None


def _map_record(f: Callable, t: Any, others: tuple, cls: type) -> Any:
    dynamic, static = _FIELDS.get(cls) or _fields(cls)
    if not dynamic:
        return t
    kwargs = {}
    for name, alias in static:
        kwargs[alias] = getattr(t, name)
    n = len(others)
    for name, alias in dynamic:
        x = getattr(t, name)
        if n == 0:
            if type(x) is np.ndarray:
                kwargs[alias] = f(x)
                continue
            sub = ()
        elif n == 1:
            o = getattr(others[0], name)
            if type(x) is np.ndarray and type(o) is np.ndarray:
                kwargs[alias] = _leaf_call(f, x, o, name)
                continue
            sub = (o,)
        else:
            sub = tuple([getattr(o, name) for o in others])
        try:
            kwargs[alias] = _map(f, x, sub)
        except StructureError as e:
            raise e.within(name) from None
    return cls(**kwargs)


def _leaf_call(f: Callable, x: np.ndarray, o: np.ndarray, name: str) -> Any:
    try:
        return f(x, o)
    except StructureError as e:
        raise e.within(name) from None


def _getitems(others: tuple, index: Any) -> tuple:
    if not others:
        return ()
    if len(others) == 1:
        return (others[0][index],)
    return tuple([o[index] for o in others])


def map(f: Callable[..., Any], tree: Any, *rest: Any) -> Any:
    """Apply ``f`` leaf by leaf: ``f(leaf, *leaves_of_rest)``, same structure out.

    ``rest`` must be trees of the same structure as ``tree``; otherwise a
    :class:`StructureError` names the first path where they differ.
    """
    return _map(f, tree, rest)


def _walk(t: Any, path: str) -> Iterator[tuple[str, Any]]:
    kind = _kind(type(t))
    if kind == _LEAF:
        yield path, t
    elif kind == _SEQ:
        for i, x in enumerate(t):
            yield from _walk(x, f"{path}[{i}]")
    elif kind == _DICT:
        for k, x in t.items():
            yield from _walk(x, f"{path}[{k!r}]")
    elif kind == _RECORD:
        for name, _ in _fields(type(t))[0]:
            yield from _walk(getattr(t, name), f"{path}.{name}" if path else name)


def leaves_with_paths(tree: Any) -> list[tuple[str, Any]]:
    """``[(path, leaf), ...]`` in tree order, paths like ``layers[2].W``."""
    return list(_walk(tree, ""))


def leaves(tree: Any) -> list[Any]:
    """The leaves of ``tree`` in tree order."""
    return [leaf for _, leaf in _walk(tree, "")]


def flatten(tree: Any) -> tuple[list[Any], Any]:
    """``(leaves, structure)``; :func:`unflatten` inverts it."""
    return leaves(tree), tree


def unflatten(structure: Any, new_leaves: list[Any]) -> Any:
    """A tree shaped like ``structure`` whose leaves are ``new_leaves``, in order."""
    new_leaves = list(new_leaves)
    expected = len(leaves(structure))
    if len(new_leaves) != expected:
        relation = "more" if len(new_leaves) > expected else "fewer"
        raise StructureError(
            f"{len(new_leaves)} leaves given: {relation} leaves than the {expected} the tree has"
        )
    it = iter(new_leaves)
    return _map(lambda _: next(it), structure, ())


def _pairs(a: Any, b: Any) -> Iterator[tuple[Any, Any]]:
    """Yield matching leaf pairs of ``a`` and ``b``, checking structure on the way."""
    if not _is_node(a):
        if _is_node(b):
            raise StructureError(f"a leaf here in one tree, a {type(b).__name__} in the other")
        yield a, b
        return
    kind = _kind(type(a))
    _check_same_node(a, (b,), kind)
    if kind == _NONE:
        return
    if kind == _DICT:
        items = [(f"[{k!r}]", a[k], b[k]) for k in a]
    elif kind == _SEQ:
        items = [(f"[{i}]", x, y) for i, (x, y) in enumerate(zip(a, b, strict=False))]
    else:
        items = [(name, getattr(a, name), getattr(b, name)) for name, _ in _fields(type(a))[0]]
    for where, x, y in items:
        try:
            yield from _pairs(x, y)
        except StructureError as e:
            raise e.within(where) from None


def assert_same_structure(a: Any, b: Any) -> None:
    """Raise :class:`StructureError` naming the first path where ``a`` and ``b`` differ.

    Leaves must also have equal shapes.
    """
    pairs = list(_pairs(a, b))
    for path, (x, y) in zip(_walk_paths(a), pairs, strict=True):
        if np.shape(x) != np.shape(y):
            raise StructureError(f"leaf shapes {np.shape(x)} vs {np.shape(y)}", path)


def _walk_paths(tree: Any) -> Iterator[str]:
    return (path for path, _ in _walk(tree, ""))


def zeros_like(tree: Any) -> Any:
    """A tree of zeros with the shapes and dtypes of ``tree``'s leaves."""
    return _map(np.zeros_like, tree, ())


def add(a: Any, b: Any) -> Any:
    """Leafwise ``a + b``."""
    return _map(np.add, a, (b,))


def sub(a: Any, b: Any) -> Any:
    """Leafwise ``a - b``."""
    return _map(np.subtract, a, (b,))


def scale(factor: float, tree: Any) -> Any:
    """Leafwise ``factor * leaf``; a Python float keeps each leaf's dtype."""
    return _map(lambda x: x * factor, tree, ())


def vdot(a: Any, b: Any) -> float:
    """Sum over leaves of the elementwise products: the dot product of two trees."""
    return float(builtins.sum(np.vdot(x, y) for x, y in zip(leaves(a), leaves(b), strict=True)))


def global_norm(tree: Any) -> float:
    """The Euclidean norm of all leaves taken together, ``sqrt(sum ||leaf||^2)``."""
    return float(np.sqrt(builtins.sum(float(np.vdot(x, x).real) for x in leaves(tree))))


def allclose(a: Any, b: Any, rtol: float = 1e-5, atol: float = 1e-8) -> bool:
    """True when ``a`` and ``b`` have the same structure and all leaves are close."""
    try:
        pairs = list(_pairs(a, b))
    except StructureError:
        return False
    return builtins.all(
        np.shape(x) == np.shape(y) and np.allclose(x, y, rtol, atol) for x, y in pairs
    )


def ravel(tree: Any) -> tuple[np.ndarray, Callable[[np.ndarray], Any]]:
    """Concatenate all leaves into one flat vector; return it and its inverse.

    The vector has the common dtype of the leaves; ``unravel(vector)`` gives a
    tree of ``tree``'s structure with each leaf cast back to its own dtype.
    """
    parts = [np.asarray(x) for x in leaves(tree)]
    dtype = np.result_type(*parts) if parts else np.float64
    flat = (
        np.concatenate([p.ravel() for p in parts]).astype(dtype, copy=False)
        if parts
        else np.zeros(0)
    )
    sizes = [p.size for p in parts]
    offsets = np.cumsum([0, *sizes])

    def unravel(vector: np.ndarray) -> Any:
        vector = np.asarray(vector)
        if vector.shape != (offsets[-1],):
            raise StructureError(f"expected a vector of shape ({offsets[-1]},), got {vector.shape}")
        chunks = [
            vector[o : o + s].reshape(p.shape).astype(p.dtype)
            for o, s, p in zip(offsets[:-1], sizes, parts, strict=True)
        ]
        return unflatten(tree, chunks)

    return flat, unravel
