"""Builders: a function per tree structure that builds a new tree of it on one vector.

A flat optimizer step (see ``_flat``) returns three trees a step, all shaped like
the params, whose leaves are views of one new vector each. Walking the structure
for every one of them costs more than the arithmetic on a small network. So the
structure is walked once, and written down as a function of the vector ``v``::

    def build(v):
        n0 = new(c1)                                  # Dense: built directly
        put(n0, 'W', v[0:4000].reshape((40, 100)))
        put(n0, 'b', v[4000:4100])
        ...
        n9 = new(c8)                                  # the Serial
        put(n9, 'layers', (n0, k5, n2, k7, n4))       # k5, k7: the ReLUs, as they are
        return n9

``new`` and ``put`` are ``object.__new__`` and ``object.__setattr__``, used for the
records that :func:`fnbp.record.direct` allows (the others are built through their
class, so their checks run). The leaves are slices of ``v``: read-only views when
``v`` is. Only names bound here appear in the code: the classes, the subtrees
without leaves and the static field values are passed in, never written out. A
builder's source is its ``__doc__``.

Only trees that cannot change are written down: tuples, None and frozen records
around array leaves. A list, a dict or a record that allows assignment makes
:func:`builder` return None, and the caller walks the tree as any tree function does.

A :func:`reader` is the converse, for the grads a step is given: it returns the leaves
of a tree of the same structure (the same classes and lengths, equal static
fields, and each leafless subtree the very object: a parameterless layer is its
own gradient), or None at the first difference, and the caller pairs the trees as
any tree function does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..record import direct, immutable
from ..tree import is_leaf, mismatch, record_fields

Build = Callable[[Any], Any]
Read = Callable[[Any], "list[Any] | None"]


class _Source:
    """The statements of a builder as they are written, and the objects they name."""

    def __init__(self, shapes: tuple, bounds: tuple[tuple[int, int], ...] | None):
        self.shapes, self.bounds, self.leaves = shapes, bounds, 0
        self.lines: list[str] = []
        self.names: dict[str, Any] = {"new": object.__new__, "put": object.__setattr__}

    def name(self, value: Any, prefix: str) -> str:
        """A new name for ``value`` in the builder's namespace."""
        key = f"{prefix}{len(self.names)}"
        self.names[key] = value
        return key

    def define(self, head: str, result: str) -> Any:
        """The function ``def {head}:`` of the statements, returning ``result``; its
        source is its ``__doc__``."""
        code = f"def {head}:\n" + "".join(f"    {line}\n" for line in self.lines)
        code += f"    return {result}\n"
        exec(code, self.names)  # the code names only what self.names holds
        function = self.names[head.split("(")[0]]
        function.__doc__ = code
        return function


def builder(
    like: Any, shapes: tuple, bounds: tuple[tuple[int, int], ...] | None = None
) -> Build | None:
    """A function of one vector ``v`` that builds a new tree shaped like ``like``, its
    leaves ``v[start:stop]`` (reshaped) for ``bounds`` and ``shapes`` in tree order
    (without ``bounds``, ``v`` is a list of the leaves, and they are ``v[i]``); None
    unless ``like`` is immutable all the way down and its leaves have ``shapes``."""
    source = _Source(shapes, bounds)
    root = _emit(like, source)
    if root is None or root[0] is not None or source.leaves != len(shapes):
        return None
    build: Build = source.define("build(v)", root[1])
    return build


def _emit(t: Any, source: _Source) -> tuple[Any, str] | None:
    """``(None, expression)`` building ``t`` (statements go to ``source``), ``(t, "")`` for
    a subtree without leaves (kept as it is), or None when ``t`` could change."""
    cls = type(t)
    if cls is np.ndarray:
        return _leaf(t, source)
    if t is None:
        return t, ""
    if cls is tuple:
        parts = []
        for x in t:
            part = _emit(x, source)
            if part is None:
                return None
            parts.append(part)
        if all(not code for _, code in parts):
            return t, ""  # no leaves below: the tuple itself
        items = [_expression(part, source) for part in parts]
        return None, "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
    if is_leaf(t) or not immutable(cls):
        return None
    return _record(t, cls, source)


def _leaf(a: np.ndarray, source: _Source) -> tuple[Any, str] | None:
    i = source.leaves
    if i >= len(source.shapes) or a.shape != source.shapes[i]:
        return None
    source.leaves += 1
    if source.bounds is None:
        return None, f"v[{i}]"
    (start, stop), shape = source.bounds[i], source.shapes[i]
    view = f"v[{start}:{stop}]"
    return None, view if len(shape) == 1 else f"{view}.reshape({shape!r})"


def _expression(part: tuple[Any, str], source: _Source) -> str:
    """The expression of an emitted part: its code, or the name of a kept subtree."""
    kept, code = part
    if code:
        return code
    return "None" if kept is None else source.name(kept, "k")


def _record(t: Any, cls: type, source: _Source) -> tuple[Any, str] | None:
    dynamic, static = record_fields(cls)
    parts = []
    for name in dynamic:
        part = _emit(getattr(t, name), source)
        if part is None:
            return None
        parts.append((name, part))
    if all(not code for _, (_, code) in parts):
        return t, ""  # no leaves below: the record itself
    values = [(name, _expression(part, source)) for name, part in parts]
    values += [(name, source.name(getattr(t, name), "s")) for name in static]
    node, c = f"n{len(source.lines)}", source.name(cls, "c")
    if direct(cls):
        source.lines.append(f"{node} = new({c})")
        source.lines += [f"put({node}, {name!r}, {value})" for name, value in values]
    else:  # through the class: its converters and checks run
        kwargs = ", ".join(f"{name!r}: {value}" for name, value in values)
        source.lines.append(f"{node} = {c}(**{{{kwargs}}})")
    return None, node


def reader(like: Any) -> Read | None:
    """A function returning the leaves of a tree shaped exactly like ``like`` (in tree
    order, unchecked), or None for any other tree; None unless ``like`` is immutable
    all the way down."""
    source = _Source((), ())
    leaves: list[str] = []
    if not _read(like, "t", source, leaves):
        return None
    read: Read = source.define("read(t)", f"[{', '.join(leaves)}]")
    return read


def _read(t: Any, at: str, source: _Source, leaves: list[str]) -> bool:
    """Write the checks that the node at expression ``at`` is shaped like ``t``, its leaf
    expressions into ``leaves``; False when ``t`` could change."""
    cls = type(t)
    if cls is np.ndarray:
        leaves.append(at)
        return True
    if t is not None and cls is not tuple and (is_leaf(t) or not immutable(cls)):
        return False  # a dict, a list, a record that allows assignment, another leaf
    if t is None or not _has_leaves(t):
        kept = "None" if t is None else source.name(t, "k")
        source.lines.append(f"if {at} is not {kept}: return None")
        return True
    node = f"x{len(source.lines)}"
    source.lines.append(f"{node} = {at}")
    if cls is tuple:
        source.lines.append(f"if type({node}) is not tuple or len({node}) != {len(t)}: return None")
        return all(_read(x, f"{node}[{i}]", source, leaves) for i, x in enumerate(t))
    dynamic, static = record_fields(cls)
    source.lines.append(f"if type({node}) is not {source.name(cls, 'c')}: return None")
    if static:  # their values, compared as every tree function compares them
        source.names["mismatch"] = mismatch
        kept = source.name(t, "k")
        source.lines.append(f"if mismatch({node}, {kept}) is not None: return None")
    return all(_read(getattr(t, name), f"{node}.{name}", source, leaves) for name in dynamic)


def _has_leaves(t: Any) -> bool:
    """Whether an array sits anywhere below ``t`` (in tuples and records)."""
    cls = type(t)
    if cls is np.ndarray:
        return True
    if cls is tuple:
        return any(_has_leaves(x) for x in t)
    if t is None or is_leaf(t):
        return False
    if cls is dict or cls is list:
        return True  # (taken apart, and refused, by the caller)
    return any(_has_leaves(getattr(t, name)) for name in record_fields(cls)[0])
