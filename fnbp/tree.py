"""Functions over trees of arrays.

A *tree* is a leaf, ``None`` (an empty tree), or a *node*: a tuple, list, dict
or attrs record whose children are trees. A record's children are its
non-static fields; its static fields (see :func:`fnbp.static`) are carried
over untouched, and two records only have the same structure if their static
fields are equal. Anything else is a leaf (an array, a number).

Everything here is built on a small one-level API, which is also how other
modules (the checkpoint encoder, the gradient checker) walk a tree:

* :func:`children` -- a node's ``(key, child)`` pairs, in order;
* :func:`rebuild` -- a node like a given one with new children;
* :func:`mismatch` -- why two nodes are not the same kind of node, or None;
* :func:`path` -- how a key is written in a path (``[0]``, ``['a']``, ``.W``).

Errors name the first path where two trees differ, e.g. ``layers[2].W``.

>>> import numpy as np, fnbp as fb
>>> t = {"w": np.ones(2), "pair": (np.zeros(1), None)}
>>> [p for p, _ in fb.tree.leaves_with_paths(t)]
["['w']", "['pair'][0]"]
>>> fb.tree.map(lambda a: a + 1, t)["w"].tolist()
[2.0, 2.0]
"""

from __future__ import annotations

import builtins
import contextlib
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import attrs
import numpy as np

from .errors import LocatedError, ShapeError, StructureError
from .validation import check_callable, check_real, fail, floating, numeric

__all__ = [
    "is_leaf",
    "children",
    "rebuild",
    "mismatch",
    "path",
    "record_fields",
    "map",
    "walk",
    "leaves",
    "leaves_with_paths",
    "flatten",
    "unflatten",
    "paired_leaves",
    "zeros_like",
    "add",
    "sub",
    "scale",
    "vdot",
    "global_norm",
    "norm_of",
    "allclose",
    "ravel",
    "assert_same_structure",
]

_CONTAINERS = (tuple, list, dict, type(None))


_FIELDS: dict[type, tuple[tuple[str, ...], tuple[str, ...]]] = {}
_RECORDS: dict[type, bool] = {}


def record_fields(cls: type) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(dynamic, static)``: the init field names of an attrs record class (cached)."""
    if cls not in _FIELDS:
        dynamic: list[str] = []
        static: list[str] = []
        for f in attrs.fields(cls):
            if f.init:
                (static if f.metadata.get("static") else dynamic).append(f.name)
        _FIELDS[cls] = (tuple(dynamic), tuple(static))
    return _FIELDS[cls]


def _is_record(cls: type) -> bool:
    if cls not in _RECORDS:
        _RECORDS[cls] = attrs.has(cls)
    return _RECORDS[cls]


_SPECS: dict[type, tuple[tuple[str, ...], tuple[str, ...]] | None] = {}


def _spec(cls: type) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """``record_fields(cls)`` for a record class, None for any other (cached): the one
    lookup the walks below make per node."""
    if cls not in _SPECS:
        _SPECS[cls] = record_fields(cls) if _is_record(cls) else None
    return _SPECS[cls]


_LEAVES: dict[type, bool] = {np.ndarray: True}


def is_leaf(t: Any) -> bool:
    """True unless ``t`` is None, a tuple, list, dict or attrs record."""
    cls = type(t)
    leaf = _LEAVES.get(cls)
    if leaf is None:
        leaf = _LEAVES[cls] = cls not in _CONTAINERS and not _is_record(cls)
    return leaf


def children(t: Any) -> tuple[tuple[Any, Any], ...]:
    """A node's ``(key, child)`` pairs in order: indices of a tuple or list, keys of a
    dict (in its order), dynamic field names of a record; ``()`` for None and leaves."""
    cls = type(t)
    if cls is tuple or cls is list:
        return tuple(enumerate(t))
    if cls is dict:
        return tuple(t.items())
    if t is None or not _is_record(cls):
        return ()
    return tuple((name, getattr(t, name)) for name in record_fields(cls)[0])


def rebuild(t: Any, values: Sequence[Any]) -> Any:
    """A node like ``t`` whose children are ``values``, in :func:`children` order.

    Static fields of a record are kept; a record is built through its class,
    so its converters run (parameter arrays become read-only).
    """
    cls = type(t)
    if cls is tuple:
        return tuple(values)
    if cls is list:
        return list(values)
    if cls is dict:
        return dict(zip(t, values, strict=True))
    if t is None:
        return None
    dynamic, static = record_fields(cls)
    if not dynamic:
        return t
    kwargs = {name: getattr(t, name) for name in static}
    kwargs.update(zip(dynamic, values, strict=True))
    return cls(**kwargs)


def mismatch(a: Any, b: Any) -> str | None:
    """Why ``a`` and ``b`` are not the same kind of node (or both leaves), else None.

    Children are not compared, only the node itself: its class, length, dict
    keys or static fields.
    """
    cls = type(a)
    if is_leaf(a) or is_leaf(b):
        if is_leaf(a) and is_leaf(b):
            return None
        what = lambda t: "a leaf" if is_leaf(t) else f"a {type(t).__name__}"  # noqa: E731
        return f"{what(a)} here in one tree, {what(b)} in the other"
    if type(b) is not cls:
        return f"{cls.__name__} here in one tree, {type(b).__name__} in the other"
    if cls is tuple or cls is list:
        return None if len(a) == len(b) else f"{cls.__name__} of length {len(a)} vs {len(b)}"
    if cls is dict:
        return None if a.keys() == b.keys() else f"dict keys {list(a)} vs {list(b)}"
    if a is None:
        return None
    for name in record_fields(cls)[1]:
        if not _equal(getattr(a, name), getattr(b, name)):
            return f"static field {name!r} is {getattr(a, name)!r} vs {getattr(b, name)!r}"
    return None


def _equal(x: Any, y: Any) -> bool:
    try:
        return bool(x == y)
    except (TypeError, ValueError):  # e.g. arrays in a static field
        return x is y


def path(node: Any, key: Any) -> str:
    """How child ``key`` of ``node`` is written in a path: ``[0]`` for an index,
    ``['a']`` for a dict key, the bare field name for a record (a dot joins it
    to what comes before: ``layers[2].W``)."""
    return key if type(key) is str and type(node) is not dict else f"[{key!r}]"


def _append(prefix: str, part: str) -> str:
    if not prefix:
        return part
    return prefix + part if part.startswith("[") else f"{prefix}.{part}"


# --------------------------------------------------------------------------- map


def map(f: Callable[..., Any], tree: Any, *rest: Any) -> Any:
    """Apply ``f`` leaf by leaf: ``f(leaf, *leaves_of_rest)``, same structure out.

    ``rest`` must be trees of the same structure as ``tree``; otherwise a
    :class:`~fnbp.StructureError` names the first path where they differ.
    """
    check_callable("tree.map", "f", f)
    return _map(f, tree, rest)


def _too_deep() -> StructureError:
    return StructureError("the tree is nested too deeply for Python's stack, or contains itself")


def _map(f: Callable[..., Any], t: Any, rest: tuple) -> Any:
    try:
        return _map_node(f, t, rest)
    except RecursionError:
        raise _too_deep() from None


def _map_node(f: Callable[..., Any], t: Any, rest: tuple) -> Any:
    """The engine of :func:`map`. It runs on every training step (``update``, the
    optimizers), so the common cases -- array leaves, records and tuples of one
    class -- take the short way; any difference goes to :func:`mismatch`."""
    cls = type(t)
    if cls is np.ndarray or is_leaf(t):
        for o in rest:
            if not is_leaf(o):
                raise StructureError(mismatch(t, o) or "")
        return f(t, *rest)
    for o in rest:
        if type(o) is not cls or cls is not tuple or len(o) != len(t):
            why = mismatch(t, o)
            if why:
                raise StructureError(why)
    if cls is tuple or cls is list:
        out = [_at(f, t, i, x, rest) for i, x in enumerate(t)]
        return out if cls is list else tuple(out)
    if cls is dict:
        return {k: _at(f, t, k, x, rest) for k, x in t.items()}
    if t is None:
        return None
    dynamic, static = record_fields(cls)
    if not dynamic:
        return t
    kwargs = {name: getattr(t, name) for name in static} if static else {}
    for name in dynamic:
        kwargs[name] = _at(f, t, name, getattr(t, name), rest)
    return cls(**kwargs)


def _at(f: Callable[..., Any], node: Any, key: Any, child: Any, rest: tuple) -> Any:
    """``_map`` of one child, the others' children alongside; errors get the key's path."""
    sub = tuple([_child(o, key) for o in rest]) if rest else rest
    try:
        return _map_node(f, child, sub)
    except LocatedError as e:
        raise e.within(path(node, key)) from None


def walk(f: Callable[..., Any], tree: Any, *rest: Any) -> None:
    """Call ``f(leaf, *leaves_of_rest)`` on every leaf, in order, for its effect.

    The trees must have one structure, as for :func:`map`; nothing is rebuilt.
    """
    _walk_all(f, tree, rest)


def _walk_all(f: Callable[..., Any], t: Any, rest: tuple) -> None:
    """The engine of :func:`walk`, with :func:`_map`'s short ways."""
    cls = type(t)
    if cls is np.ndarray or is_leaf(t):
        for o in rest:
            if not is_leaf(o):
                raise StructureError(mismatch(t, o) or "")
        f(t, *rest)
        return
    for o in rest:
        if type(o) is not cls or cls is not tuple or len(o) != len(t):
            why = mismatch(t, o)
            if why:
                raise StructureError(why)
    if cls is dict:
        items: Iterable[tuple[Any, Any]] = t.items()
    elif cls is tuple or cls is list:
        items = enumerate(t)
    elif t is None:
        return
    else:
        items = [(name, getattr(t, name)) for name in record_fields(cls)[0]]
    for key, child in items:
        sub = tuple([_child(o, key) for o in rest])
        try:
            if type(child) is np.ndarray and all(type(o) is np.ndarray for o in sub):
                f(child, *sub)
            else:
                _walk_all(f, child, sub)
        except LocatedError as e:
            raise e.within(path(t, key)) from None


def _child(t: Any, key: Any) -> Any:
    return t[key] if type(t) in (tuple, list, dict) else getattr(t, key)


# --------------------------------------------------------------------------- leaves


def _walk(t: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    if is_leaf(t):
        yield prefix, t
        return
    for key, child in children(t):
        yield from _walk(child, _append(prefix, path(t, key)))


def leaves_with_paths(tree: Any) -> list[tuple[str, Any]]:
    """``[(path, leaf), ...]`` in tree order, paths like ``layers[2].W``."""
    try:
        return list(_walk(tree, ""))
    except RecursionError:
        raise _too_deep() from None


def leaves(tree: Any) -> list[Any]:
    """The leaves of ``tree`` in tree order."""
    out: list[Any] = []
    try:
        _collect(tree, out)
    except RecursionError:
        raise _too_deep() from None
    return out


def _collect(t: Any, out: list[Any]) -> None:
    """Append the leaves of ``t`` to ``out``: :func:`leaves` without building paths."""
    cls = type(t)
    if cls is tuple or cls is list:
        for x in t:
            if type(x) is np.ndarray:
                out.append(x)
            else:
                _collect(x, out)
    elif cls is dict:
        for x in t.values():
            _collect(x, out)
    elif t is None:
        return
    else:
        spec = _SPECS[cls] if cls in _SPECS else _spec(cls)
        if spec is None:
            out.append(t)
            return
        for name in spec[0]:
            x = getattr(t, name)
            if type(x) is np.ndarray:
                out.append(x)
            else:
                _collect(x, out)


def flatten(tree: Any) -> tuple[list[Any], Any]:
    """``(leaves, structure)``; :func:`unflatten` inverts it."""
    return leaves(tree), tree


def unflatten(structure: Any, new_leaves: Sequence[Any]) -> Any:
    """A tree shaped like ``structure`` whose leaves are ``new_leaves``, in order."""
    if not isinstance(new_leaves, list | tuple):
        raise fail("tree.unflatten", "new_leaves", "a list or tuple of leaves", new_leaves)
    it = iter(new_leaves)
    try:
        out = _refill(structure, it)
        fits = next(it, _END) is _END
    except StopIteration:
        fits = False
    if not fits:
        given, expected = len(list(new_leaves)), len(leaves(structure))
        relation = "more" if given > expected else "fewer"
        raise StructureError(
            f"{given} leaves given: {relation} leaves than the {expected} the tree has"
        )
    return out


_END = object()


def _refill(t: Any, it: Iterator[Any]) -> Any:
    """``t`` rebuilt with the next leaves of ``it`` in place of its own."""
    cls = type(t)
    if cls is tuple or cls is list:
        out = [next(it) if type(x) is np.ndarray else _refill(x, it) for x in t]
        return out if cls is list else tuple(out)
    if cls is dict:
        return {k: _refill(x, it) for k, x in t.items()}
    if t is None:
        return None
    spec = _SPECS[cls] if cls in _SPECS else _spec(cls)
    if spec is None:
        return next(it)
    dynamic, static = spec
    if not dynamic:
        return t
    kwargs = {name: getattr(t, name) for name in static} if static else {}
    for name in dynamic:
        x = getattr(t, name)
        kwargs[name] = next(it) if type(x) is np.ndarray else _refill(x, it)
    return cls(**kwargs)


def paired_leaves(a: Any, b: Any) -> tuple[list[Any], list[Any]]:
    """The leaves of ``a`` and of ``b``, in order, after checking the two trees have one
    structure (a :class:`~fnbp.StructureError` names the first path where they differ)."""
    out_a: list[Any] = []
    out_b: list[Any] = []
    try:
        _pair(a, b, out_a, out_b)
    except RecursionError:
        raise _too_deep() from None
    return out_a, out_b


def _pair(a: Any, b: Any, out_a: list[Any], out_b: list[Any]) -> None:
    cls = type(a)
    if cls is np.ndarray and type(b) is np.ndarray:
        out_a.append(a)
        out_b.append(b)
        return
    if a is b:
        _pair_same(a, out_a, out_b)
        return
    if cls is tuple and type(b) is tuple and len(a) == len(b):  # the layers of a Serial
        for i, x in enumerate(a):
            _pair_child(x, b[i], out_a, out_b, i)
        return
    spec = _SPECS[cls] if cls in _SPECS else _spec(cls)
    if spec is not None and type(b) is cls and not spec[1]:
        for name in spec[0]:  # a record without static fields: its class says all
            _pair_child(getattr(a, name), getattr(b, name), out_a, out_b, name)
        return
    if (
        type(b) is not cls
        or cls is dict
        or (cls is not tuple and cls is not list and cls is not np.ndarray and _is_record(cls))
    ):
        why = mismatch(a, b)  # records: their static fields; dicts: their keys
        if why:
            raise StructureError(why)
    elif cls is tuple or cls is list:
        if len(a) != len(b):
            raise StructureError(mismatch(a, b) or "")
    if cls is tuple or cls is list:
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _pair_child(x, y, out_a, out_b, i)
    elif cls is dict:
        for k, x in a.items():
            _pair_child(x, b[k], out_a, out_b, f"[{k!r}]")
    elif a is None:
        return
    elif cls is np.ndarray or not _is_record(cls):
        if not is_leaf(b):
            raise StructureError(mismatch(a, b) or "")
        out_a.append(a)
        out_b.append(b)
    else:
        for name in record_fields(cls)[0]:
            _pair_child(getattr(a, name), getattr(b, name), out_a, out_b, name)


def _pair_same(a: Any, out_a: list[Any], out_b: list[Any]) -> None:
    """One object on both sides (a parameter-free layer is its own gradient): one
    structure, the same leaves."""
    n = len(out_a)
    _collect(a, out_a)
    out_b.extend(out_a[n:])


def _pair_child(x: Any, y: Any, out_a: list[Any], out_b: list[Any], where: str | int) -> None:
    """:func:`_pair` of the children at ``where`` (a field name, or an index ``[i]``)."""
    if type(x) is np.ndarray and type(y) is np.ndarray:
        out_a.append(x)
        out_b.append(y)
        return
    if x is y:
        _pair_same(x, out_a, out_b)
        return
    try:
        _pair(x, y, out_a, out_b)
    except LocatedError as e:
        raise e.within(f"[{where}]" if isinstance(where, int) else where) from None


def assert_same_structure(a: Any, b: Any, *, shapes: bool = True) -> None:
    """Raise :class:`~fnbp.StructureError` naming the first path where ``a`` and ``b``
    differ; with ``shapes``, leaves must also have equal shapes (else a
    :class:`~fnbp.ShapeError` naming the path)."""

    def check(x: Any, y: Any) -> None:
        if shapes and np.shape(x) != np.shape(y):
            raise ShapeError(f"leaf shapes {np.shape(x)} vs {np.shape(y)}")

    _map(check, a, (b,))


# --------------------------------------------------------------------------- arithmetic
#
# Leaves follow fnbp's dtype policy (see fnbp.validation): float32 and float64
# keep their dtype, booleans, integers, numbers and lists are taken as float64
# (the real numeric dtypes are kept where no arithmetic is done: zeros_like,
# ravel, allclose), and anything else -- float16, complex, strings, objects --
# is a DTypeError naming the leaf's path.


def _floats(name: str) -> Callable[..., tuple[np.ndarray, ...]]:
    """The leaves of a leafwise operation as float arrays of one shape."""

    def check(*xs: Any) -> tuple[np.ndarray, ...]:
        arrays = tuple(floating(x, f"tree.{name}", "a leaf") for x in xs)
        if len({a.shape for a in arrays}) > 1:
            shapes = " vs ".join(str(a.shape) for a in arrays)
            raise ShapeError(f"tree.{name}: leaf shapes {shapes}")
        return arrays

    return check


def zeros_like(tree: Any) -> Any:
    """A tree of zeros with the shapes and dtypes of ``tree``'s leaves."""
    return _map(lambda x: np.zeros_like(numeric(x, "tree.zeros_like", "a leaf")), tree, ())


def add(a: Any, b: Any) -> Any:
    """Leafwise ``a + b``; the trees must have one structure and leaf shapes (no broadcasting)."""
    check = _floats("add")
    return _map(lambda x, y: np.add(*check(x, y)), a, (b,))


def sub(a: Any, b: Any) -> Any:
    """Leafwise ``a - b``; the trees must have one structure and leaf shapes (no broadcasting)."""
    check = _floats("sub")
    return _map(lambda x, y: np.subtract(*check(x, y)), a, (b,))


def scale(factor: float, tree: Any) -> Any:
    """Leafwise ``factor * leaf``; a Python float keeps each leaf's dtype."""
    factor = check_real("tree.scale", "factor", factor)
    check = _floats("scale")
    return _map(lambda x: check(x)[0] * factor, tree, ())


def vdot(a: Any, b: Any) -> float:
    """Sum over leaves of the elementwise products: the dot product of two trees.

    The trees must have one structure and leaf shapes.
    """
    check = _floats("vdot")
    total: list[float] = []

    def dot(x: Any, y: Any) -> None:
        total.append(float(np.vdot(*check(x, y))))

    _map(dot, a, (b,))
    return float(builtins.sum(total))


def global_norm(tree: Any) -> float:
    """The Euclidean norm of all leaves taken together, ``sqrt(sum ||leaf||^2)``.

    Each leaf's squares are summed in float64 (numpy's pairwise sum), where those
    of a float32 leaf can neither overflow nor underflow. Only when that total is
    not a normal float64 (a float64 leaf above 1e154 or below 1e-154, an inf, a
    NaN, all zeros) is each leaf scaled by the largest magnitude first, so that
    large but finite leaves do not overflow to inf.
    """
    try:
        parts = [numeric(x, "tree.global_norm", "a leaf") for x in leaves(tree)]
    except (TypeError, ValueError):  # again, with paths, for the error to name the leaf
        parts = [
            numeric(x, "tree.global_norm", f"the leaf {p}") for p, x in leaves_with_paths(tree)
        ]
    return norm_of(parts)


_NORMAL_SUM = (1e-250, 1e300)
"""Totals of squares in this range are exact to rounding: no square that mattered
underflowed, none overflowed."""


def norm_of(parts: list[np.ndarray], whole: np.ndarray | None = None) -> float:
    """:func:`global_norm` of the numeric arrays ``parts``. ``whole``, when given, is one
    vector that ``parts`` are consecutive views of, end to end: it is squared in one
    call and the sums are taken over its segments -- the same sums in the same
    order as part by part, so the same bits."""
    quiet = all(p.dtype == np.float32 for p in parts)  # squares that cannot overflow
    with contextlib.nullcontext() if quiet else np.errstate(all="ignore"):
        total = _sum_of_squares(parts, whole)
    low, high = _NORMAL_SUM
    if low < total < high:
        return math.sqrt(total)
    return _scaled_norm([p.astype(np.float64).ravel() for p in parts])


def _sum_of_squares(parts: list[np.ndarray], whole: np.ndarray | None) -> float:
    total = 0.0
    if whole is None:
        for p in parts:
            total += float(np.add.reduce(np.square(p, dtype=np.float64), axis=None))
        return total
    squares, start = np.square(whole, dtype=np.float64), 0
    for p in parts:
        stop = start + p.size
        total += float(np.add.reduce(squares[start:stop]))
        start = stop
    return total


def _scaled_norm(parts: list[np.ndarray]) -> float:
    """The norm of float64 vectors, each scaled by the largest magnitude of all first
    (NaN if any element is NaN, else inf if one is inf)."""
    maxima = [float(np.abs(p).max(initial=0.0)) for p in parts]
    if any(map(math.isnan, maxima)):
        return math.nan
    biggest = builtins.max(maxima, default=0.0)
    if biggest == 0.0 or biggest == math.inf:
        return biggest
    total = 0.0
    for p in parts:
        q = p / biggest
        total += float(np.vdot(q, q))
    return biggest * float(np.sqrt(total))


def allclose(a: Any, b: Any, rtol: float = 1e-5, atol: float = 1e-8) -> bool:
    """True when ``a`` and ``b`` have the same structure and all leaves are close."""
    verdicts: list[bool] = []

    def close(x: Any, y: Any) -> None:
        x, y = numeric(x, "tree.allclose", "a leaf"), numeric(y, "tree.allclose", "a leaf")
        verdicts.append(x.shape == y.shape and bool(np.allclose(x, y, rtol, atol)))

    try:
        _map(close, a, (b,))
    except StructureError:
        return False
    return builtins.all(verdicts)


def ravel(tree: Any) -> tuple[np.ndarray, Callable[[np.ndarray], Any]]:
    """Concatenate all leaves into one flat vector; return it and its inverse.

    The vector has the common dtype of the leaves; ``unravel(vector)`` gives a
    tree of ``tree``'s structure with each leaf cast back to its own dtype.
    """
    parts = [numeric(x, "tree.ravel", f"the leaf {p}") for p, x in leaves_with_paths(tree)]
    dtype = np.result_type(*parts) if parts else np.float64
    flat = np.concatenate([p.ravel() for p in parts]).astype(dtype) if parts else np.zeros(0)
    sizes = [p.size for p in parts]
    offsets = np.cumsum([0, *sizes]).tolist()

    def unravel(vector: np.ndarray) -> Any:
        vector = numeric(vector, "unravel", "the vector")
        if vector.shape != (offsets[-1],):
            raise ShapeError(f"expected a vector of shape ({offsets[-1]},), got {vector.shape}")
        chunks = [
            vector[o : o + s].reshape(p.shape).astype(p.dtype)
            for o, s, p in zip(offsets[:-1], sizes, parts, strict=True)
        ]
        return unflatten(tree, chunks)

    return flat, unravel
