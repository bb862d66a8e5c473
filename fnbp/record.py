"""Helpers for declaring immutable parameter records with attrs.

A record is an ``attrs.frozen`` class. Its fields are of two kinds:

* **leaves**, declared with :func:`param`: float32 or float64 arrays (booleans
  in a mask tree; with ``kind="int"``, integer counters), stored read-only;
* **static** fields, declared with :func:`static`: hyperparameters such as a
  slope or a rate, which tree functions carry over unchanged.

**Who owns an array.** A record must never change, so it never keeps an array
that someone else can still write to: an array it is given is copied, unless
it is already read-only all the way down (no writeable array or foreign
buffer behind it). An array a function has just allocated and will not touch
again can be handed over without a copy by marking it first with
:func:`frozen` -- that is how fnbp's own layers build their gradient records.

>>> import attrs, numpy as np, fnbp as fb
>>> @attrs.frozen
... class Scale(fb.Layer):
...     a: np.ndarray = fb.param()
...     name: str = fb.static(default="scale")
>>> w = np.ones(3)
>>> s = Scale(w)
>>> w[0] = 5.0                       # the caller's array: the record kept a copy
>>> s.a.tolist(), s.a.flags.writeable
([1.0, 1.0, 1.0], False)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import numpy as np

from .errors import DTypeError
from .validation import FLOAT_SET

__all__ = [
    "param",
    "static",
    "readonly",
    "frozen",
    "counter",
    "replace",
    "direct",
    "immutable",
    "keeps_rebuilt",
    "array_repr",
    "nested_repr",
]


def frozen(a: np.ndarray) -> np.ndarray:
    """Mark an array you just allocated read-only and return it.

    A record then keeps it without a copy. Only for arrays nobody else holds:
    a fresh result of your own computation, not an argument.
    """
    a.setflags(write=False)
    return a


def counter(n: int) -> np.ndarray:
    """A step counter: a read-only 0-d int64 array (a checkpoint template matches any value)."""
    return frozen(np.array(n, dtype=np.int64))


def _shared(a: np.ndarray) -> bool:
    """True when ``a`` can still be changed through something else: it, or an array
    or buffer behind it, is writeable or not a numpy array at all."""
    while True:
        if a.flags.writeable:
            return True
        base = a.base
        if base is None:  # the common case: an array fnbp froze itself
            return False
        if base is None or type(base) is bytes:  # bytes never change
            return False
        if type(base) is not np.ndarray:
            return True
        a = base


def readonly(value: Any) -> np.ndarray | None:
    """``value`` as a read-only array that nothing else can write to (None passes).

    An array that is read-only all the way down is kept as it is; anything
    else (a writeable array, a view of one, a list, a foreign buffer) is copied.
    """
    if value is None:
        return None
    a = value if type(value) is np.ndarray else np.asarray(value)
    if _shared(a):
        a = np.array(a, copy=True)
        a.flags.writeable = False
    return a


def _kind_ok(dtype: np.dtype, kind: str) -> bool:
    if kind == "float":
        return dtype in FLOAT_SET or dtype.kind == "b"
    if kind == "int":
        return dtype.kind in "iu"
    return dtype.kind in "biuf"


_EXPECTED = {
    "float": "a float32 or float64 array (or bool, in a mask tree)",
    "int": "an integer array",
    "any": "an array",
}


_ALLOWED = {
    "float": FLOAT_SET,
    "int": frozenset(np.dtype(t) for t in (np.int8, np.int16, np.int32, np.int64)),
    "any": FLOAT_SET,
}


_KINDS: dict[Callable[..., Any], str] = {}
"""The converter functions :func:`param` made, and their kinds (see :func:`direct`)."""


def _param_converter(kind: str) -> attrs.Converter:
    allowed = _ALLOWED[kind]

    def convert(value: Any, record: Any, field: attrs.Attribute) -> np.ndarray | None:
        if type(value) is np.ndarray and not value.flags.writeable and value.dtype in allowed:
            base = value.base  # an array fnbp froze itself, or a view of one: kept as it is
            if base is None or (
                type(base) is np.ndarray and base.base is None and not base.flags.writeable
            ):
                return value
        if value is None:
            return None
        a = value if type(value) is np.ndarray else np.asarray(value)
        if not _kind_ok(a.dtype, kind):
            raise DTypeError(
                f"{type(record).__name__}: {field.name} must be {_EXPECTED[kind]}, "
                f"got dtype {a.dtype}"
            )
        return readonly(a)

    _KINDS[convert] = kind
    return attrs.Converter(convert, takes_self=True, takes_field=True)


def keeps_rebuilt(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Mark ``convert``, the converter of a tree field, as one that returns unchanged a
    value whose nodes are of the same classes as a value it has converted before (the
    layers of a ``Serial``: a tuple of layers already checked). :func:`direct` then
    lets records of its class be built without it, from such values."""
    _KINDS[convert] = "rebuilt"
    return convert


_DIRECT: dict[type, bool] = {}


def direct(cls: type) -> bool:
    """Whether a record of ``cls`` may be built without running its ``__init__``, from
    values that ``__init__`` would store unchanged: read-only float arrays fnbp froze
    itself (or views of one) for its :func:`param` fields, and an existing record's
    own values for its :func:`static` fields (carried over as stored, as tree
    functions promise). True when ``__init__`` is attrs' own and does nothing else:
    every field taken by it, no validator, no converter on a tree field but a float
    :func:`param`'s or one marked :func:`keeps_rebuilt`, no ``__attrs_pre_init__`` /
    ``__attrs_post_init__`` and no cached hash. Small networks laid flat
    (``fnbp.optim``) build their records so."""
    if cls not in _DIRECT:
        _DIRECT[cls] = _direct(cls)
    return _DIRECT[cls]


_REBUILT = ("float", "any", "rebuilt")


def _direct(cls: type) -> bool:
    if not attrs.has(cls) or hasattr(cls, "__attrs_pre_init__"):
        return False
    if hasattr(cls, "__attrs_post_init__") or "_attrs_cached_hash" in getattr(cls, "__slots__", ()):
        return False
    code = getattr(cls.__init__, "__code__", None)
    if code is None or not code.co_filename.startswith("<attrs generated"):
        return False
    for field in attrs.fields(cls):
        if not field.init or field.validator is not None:
            return False
        convert = field.converter
        if convert is None or field.metadata.get("static"):
            continue
        if _KINDS.get(getattr(convert, "converter", convert), "") not in _REBUILT:
            return False
    return True


def immutable(cls: type) -> bool:
    """Whether the records of ``cls`` refuse assignment: an ``attrs.frozen`` class."""
    return getattr(cls.__setattr__, "__name__", None) == "_frozen_setattrs"


def array_repr(a: Any) -> str:
    """A short description of an array field: ``float32(784, 256)`` -- never the numbers,
    except for a 0-d array (a step counter), which shows its value."""
    if a is None:
        return "None"
    if np.ndim(a) == 0:
        return repr(np.asarray(a).item())
    return f"{np.asarray(a).dtype}{tuple(np.shape(a))}"


def nested_repr(name: str, parts: list[str], width: int = 88) -> str:
    """``name(part, part, ...)`` on one line when it fits in ``width``, else one part a
    line, indented, so nested combinators read as a tree."""
    line = f"{name}({', '.join(parts)})"
    if len(line) <= width and "\n" not in line:
        return line
    inner = ",\n".join("  " + part.replace("\n", "\n  ") for part in parts)
    return f"{name}(\n{inner},\n)"


def param(*, kind: str = "float", **kwargs: Any) -> Any:
    """An array field of a record (a tree leaf), stored read-only.

    ``kind`` is ``"float"`` (float32 or float64, the default; booleans are
    let through so that a tree of flags can mirror a network, as a weight-decay
    mask does), ``"int"`` (step counters) or ``"any"`` (any real numeric dtype).
    """
    if kind not in _EXPECTED:
        raise ValueError(f"param: kind must be one of {sorted(_EXPECTED)}, got {kind!r}")
    kwargs.setdefault("repr", array_repr)
    return attrs.field(converter=_param_converter(kind), **kwargs)


def static(**kwargs: Any) -> Any:
    """A static field of a record: a hyperparameter, not a tree leaf."""
    metadata = {**kwargs.pop("metadata", {}), "static": True}
    return attrs.field(metadata=metadata, **kwargs)


def replace(record: Any, **changes: Any) -> Any:
    """A copy of ``record`` with some fields changed (``attrs.evolve``)."""
    return attrs.evolve(record, **changes)
