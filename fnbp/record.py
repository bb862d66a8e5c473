"""Helpers for declaring immutable parameter records with attrs.

A record is an ``attrs.frozen`` class. Its fields are of two kinds:

* **leaves**, declared with :func:`param`: numpy arrays, made read-only at
  construction (a read-only *view*, so the caller's array is not touched);
* **static** fields, declared with :func:`static`: hyperparameters such as a
  slope or a rate, which tree functions carry over unchanged.

>>> import attrs, numpy as np, fnbp as fb
>>> @attrs.frozen
... class Scale(fb.Layer):
...     a: np.ndarray = fb.param()
...     name: str = fb.static(default="scale")
>>> Scale(np.ones(3)).a.flags.writeable
False
"""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np

__all__ = ["param", "static", "readonly", "replace"]


def readonly(value: Any) -> np.ndarray | None:
    """Return ``value`` as a read-only numeric array (``None`` passes through).

    A writeable array is wrapped in a new read-only view; its owner's flags are
    not changed. An array that is already read-only is kept as it is.
    """
    if value is None:
        return None
    a = value if type(value) is np.ndarray else np.asarray(value)
    if a.dtype.kind not in "biufc":
        raise TypeError(f"parameter arrays must be numeric, got dtype {a.dtype}")
    if a.flags.writeable:
        a = a.view()
        a.setflags(write=False)
    return a


def param(**kwargs: Any) -> Any:
    """An array field of a record (a tree leaf), stored read-only."""
    return attrs.field(converter=readonly, **kwargs)


def static(**kwargs: Any) -> Any:
    """A static field of a record: a hyperparameter, not a tree leaf."""
    metadata = {**kwargs.pop("metadata", {}), "static": True}
    return attrs.field(metadata=metadata, **kwargs)


def replace(record: Any, **changes: Any) -> Any:
    """A copy of ``record`` with some fields changed (``attrs.evolve``)."""
    return attrs.evolve(record, **changes)
