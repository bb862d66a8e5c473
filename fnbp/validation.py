"""Checks of arguments and arrays: the one place fnbp's errors are raised from.

Every message names the function or class, the parameter, what was expected
and what was got: ``Dropout: rate must be a real number in [0, 1], got 'a'``.
The exception types follow one rule (see :mod:`fnbp.errors`): values ->
``ValueError``, shapes -> :class:`~fnbp.ShapeError`, dtypes ->
:class:`~fnbp.DTypeError`, trees and states -> :class:`~fnbp.StructureError`.

**The dtype policy.** fnbp computes in float32 and float64, and keeps each:
nothing is promoted behind your back.

* Parameters are float32 or float64 arrays; a record refuses anything else.
* A layer with parameters casts its input, once, to its parameters' dtype:
  booleans and integers (a truth table) and floats of another precision.
* Everywhere else (activations, losses, optimizers, tree arithmetic) arrays
  must be float32 or float64; booleans and integers are taken as float64.
* float16, long double, complex, strings, objects and datetimes are refused
  with a :class:`~fnbp.DTypeError` that names them: float16 overflows ``exp``
  at 11 and loses the digits the gradients need; cast to float32 first.

**Empty batches.** A batch of ``N = 0`` samples is data like any other for
the layers: every layer returns an empty output of the right shape, and its
pullback empty input gradients and zero parameter gradients (BatchNorm in
training is the exception: it needs at least 2 values per feature, and says
so with a :class:`~fnbp.ShapeError`). Losses and metrics refuse it with a
``ValueError`` (a mean over no samples is undefined), and so do ``fit`` and
``evaluate``; ``predict`` returns the empty output.

**NaN and inf.** Layers compute what IEEE arithmetic says: a NaN or inf in
the input propagates to the output (nothing is checked on that hot path).
Losses let a NaN or inf *prediction* through into their value -- that is how
``fit`` notices a diverging run and raises :class:`~fnbp.DivergenceError` --
but refuse a non-finite *target* with a ``ValueError``: a target is data, and
a NaN there would only ever give a silent NaN loss. Metrics refuse NaN
predictions and non-finite targets; ``fit`` and ``evaluate`` refuse training
and validation data with a NaN or inf before the first step.

Hyperparameters of records are checked by the converters made here
(:func:`real`, :func:`integer`, :func:`choice`): a record class declares a
field ``rate: float = static(converter=real(low=0.0, high=1.0))``, and the
converter knows the class and the field it serves.
"""

from __future__ import annotations

import inspect
import math
import numbers
import operator
import reprlib
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import attrs
import numpy as np

from .errors import DTypeError, ShapeError, StructureError

__all__ = [
    "FLOATS",
    "fail",
    "check_real",
    "all_finite",
    "FINITE_BLOCK",
    "check_int",
    "check_bool",
    "check_choice",
    "check_callable",
    "check_sequence",
    "check_loss",
    "check_optimizer",
    "float_dtype",
    "real",
    "integer",
    "check_ints",
    "sizes",
    "padding",
    "choice",
    "boolean",
    "floating",
    "numeric",
    "check_shape",
    "check_kind",
    "check_params",
    "check_structure",
    "check_size",
    "check_dims",
    "check_finite",
    "MAX_ELEMENTS",
]

FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
"""The dtypes fnbp computes in."""

FLOAT_SET = frozenset(FLOATS)
"""The same, for fast membership tests."""

MAX_ELEMENTS = 2**31
"""Arrays fnbp is asked to allocate from a hyperparameter (a padding, a number of
classes) larger than this many elements are refused before allocating."""


def _show(value: Any) -> str:
    return reprlib.repr(value)


def fail(owner: str, name: str, expected: str, value: Any) -> ValueError:
    """The ValueError for ``owner``'s parameter ``name``: ``expected``, got ``value``."""
    return ValueError(f"{owner}: {name} must be {expected}, got {_show(value)}")


# --------------------------------------------------------------------------- plain values


def _interval(low: float, high: float, low_open: bool, high_open: bool) -> str:
    if low == -math.inf and high == math.inf:
        return ""
    if high == math.inf:
        return f" {'>' if low_open else '>='} {low:g}"
    if low == -math.inf:
        return f" {'<' if high_open else '<='} {high:g}"
    left, right = "(" if low_open else "[", ")" if high_open else "]"
    return f" in {left}{low:g}, {high:g}{right}"


_FLOAT32_TINY = float(np.finfo(np.float32).tiny)
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def check_real(
    owner: str,
    name: str,
    value: Any,
    *,
    low: float = -math.inf,
    high: float = math.inf,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """``value`` as a finite Python float within the bounds, else a ValueError.

    Booleans, strings and arrays of more than one element are refused; NaN and
    inf always are, and so is a magnitude float32 cannot hold (above 3.4e38, or
    nonzero below 1.2e-38): a hyperparameter meets float32 data, where it would
    overflow to inf or be taken as 0.
    """
    ok = not isinstance(value, bool | np.bool_) and isinstance(value, numbers.Real | np.ndarray)
    if ok and isinstance(value, np.ndarray):
        ok = value.shape == () and value.dtype.kind in "iuf"
    v = float(value) if ok else math.nan
    above = v > low if low_open else v >= low
    below = v < high if high_open else v <= high
    if not (math.isfinite(v) and above and below):
        expected = "a finite real number" + _interval(low, high, low_open, high_open)
        raise fail(owner, name, expected, value)
    if v and not _FLOAT32_TINY <= abs(v) <= _FLOAT32_MAX:
        expected = "a finite real number" + _interval(low, high, low_open, high_open)
        held = f"0 or a magnitude in [{_FLOAT32_TINY:.3g}, {_FLOAT32_MAX:.3g}]"
        raise fail(owner, name, f"{expected} that float32 can hold ({held})", value)
    return v


def check_int(
    owner: str, name: str, value: Any, *, low: int | None = None, high: int | None = None
) -> int:
    """``value`` as a Python int within ``[low, high]``, else a ValueError (bools refused)."""
    bounds = (
        f" >= {low}"
        if high is None and low is not None
        else (f" in [{low}, {high}]" if low is not None else "")
    )
    expected = "an integer" + bounds
    if isinstance(value, bool | np.bool_):
        raise fail(owner, name, expected, value)
    try:
        i = operator.index(value)
    except TypeError:
        raise fail(owner, name, expected, value) from None
    if (low is not None and i < low) or (high is not None and i > high):
        raise fail(owner, name, expected, value)
    return int(i)


def check_bool(owner: str, name: str, value: Any) -> bool:
    """``value`` as a bool if it is one (a numpy bool, a 0-d bool array), else a ValueError."""
    if isinstance(value, np.ndarray) and value.shape == () and value.dtype == np.bool_:
        return bool(value)
    if not isinstance(value, bool | np.bool_):
        raise fail(owner, name, "True or False", value)
    return bool(value)


def check_choice(owner: str, name: str, value: Any, options: Iterable[str]) -> str:
    """``value`` if it is one of the strings ``options``, else a ValueError listing them."""
    options = tuple(options)
    if not isinstance(value, str) or value not in options:
        raise fail(owner, name, "one of " + ", ".join(map(repr, options)), value)
    return value


def check_callable(
    owner: str, name: str, value: Any, what: str = "a function", n_args: int | None = None
) -> Any:
    """``value`` if callable (with ``n_args`` positional arguments, when given and its
    signature is known), else a ValueError. A class is refused: it would be
    called to build an instance, not to compute."""
    if not callable(value) or isinstance(value, type):
        raise fail(owner, name, what, value)
    if n_args is not None:
        try:
            inspect.signature(value).bind(*(None,) * n_args)
        except TypeError:
            raise fail(owner, name, f"{what}, taking {n_args} argument(s)", value) from None
        except ValueError:  # no signature to read (some builtins): take it on trust
            pass
    return value


def check_sequence(owner: str, name: str, value: Any, what: str) -> tuple:
    """``value`` as a tuple if it is a list or tuple, else a ValueError (a string or a
    lone function are refused: they would be iterated letter by letter, or not at all)."""
    if not isinstance(value, list | tuple):
        raise fail(owner, name, f"a list or tuple of {what}", value)
    return tuple(value)


def check_loss(owner: str, loss: Any) -> Any:
    """``loss`` if it has a ``value_and_grad`` (an fnbp loss), else a ValueError."""
    if isinstance(loss, type) or not callable(getattr(loss, "value_and_grad", None)):
        hint = f" (did you mean {loss.__name__}()?)" if isinstance(loss, type) else ""
        raise fail(
            owner,
            "loss",
            f"a loss with value_and_grad (fb.softmax_cross_entropy, fb.mse, a fb.Loss "
            f"subclass){hint}",
            loss,
        )
    return loss


def check_optimizer(owner: str, optimizer: Any) -> Any:
    """``optimizer`` if it is an ``fb.optim`` optimizer (``init`` and ``update``), else a
    ValueError -- with a hint when a learning rate was given instead."""
    if not (
        callable(getattr(optimizer, "init", None)) and callable(getattr(optimizer, "update", None))
    ):
        number = isinstance(optimizer, numbers.Real)
        hint = " (a learning rate? use fb.optim.sgd(lr))" if number else ""
        raise fail(owner, "optimizer", f"an fb.optim optimizer{hint}", optimizer)
    return optimizer


def float_dtype(owner: str, value: Any, name: str = "dtype") -> np.dtype:
    """``value`` as float32 or float64, else a DTypeError."""
    dtype = None
    if isinstance(value, str | type | np.dtype):  # not None (numpy's float64), not a number
        with warnings.catch_warnings():  # numpy's deprecated aliases ('a') count as unknown
            warnings.simplefilter("error", DeprecationWarning)
            try:
                dtype = np.dtype(value)
            except (TypeError, ValueError, DeprecationWarning):
                pass
    if dtype is None or dtype not in FLOAT_SET:
        got = dtype.name if dtype is not None else _show(value)
        raise DTypeError(f"{owner}: {name} must be float32 or float64, got {got}")
    return dtype


def check_dims(owner: str, name: str, value: Any, *, low: int = 0, min_ndim: int = 0) -> tuple:
    """``value`` as a shape: an int or a tuple or list of ints ``>= low``, with at least
    ``min_ndim`` axes and at most :data:`MAX_ELEMENTS` elements; else a ValueError."""
    dims = (value,) if _is_int(value) else value
    ok = isinstance(dims, tuple | list) and len(dims) >= min_ndim and all(map(_is_int, dims))
    if not ok or any(int(d) < low for d in dims):
        axes = f", at least {min_ndim} of them" if min_ndim else ""
        raise fail(owner, name, f"a shape (a tuple of ints >= {low}{axes})", value)
    shape = tuple(int(d) for d in dims)
    check_size(owner, f"an array of shape {shape}", math.prod(shape))
    return shape


def check_finite(owner: str, name: str, a: np.ndarray) -> np.ndarray:
    """``a`` itself if it holds no NaN or inf, else a ValueError saying where the first is."""
    if a.dtype.kind == "f" and not all_finite(a):
        first = np.unravel_index(int(np.flatnonzero(~np.isfinite(a))[0]), a.shape)
        raise ValueError(
            f"{owner}: {name} must be finite, got {a[first]} at index "
            f"{tuple(int(i) for i in first)} (clean or drop those samples first)"
        )
    return a


FINITE_BLOCK = 1 << 18
"""Elements :func:`all_finite` checks at a time (a 256 KiB mask, kept in cache)."""


def all_finite(a: np.ndarray) -> bool:
    """Whether every element of the float array ``a`` is finite, read in blocks of rows
    of about :data:`FINITE_BLOCK` elements: no mask as large as ``a`` (a quarter of
    its size in float32) is made, and the check stops at the first block with a NaN
    or inf."""
    if a.ndim == 0 or a.size <= FINITE_BLOCK:
        return bool(np.logical_and.reduce(np.isfinite(a), axis=None))
    rows = max(1, FINITE_BLOCK // (a.size // len(a)))
    mask = np.empty((min(rows, len(a)), *a.shape[1:]), dtype=bool)
    for start in range(0, len(a), rows):
        block = a[start : start + rows]
        part = mask[: len(block)]
        if not np.logical_and.reduce(np.isfinite(block, out=part), axis=None):
            return False
    return True


def check_size(owner: str, what: str, n: int) -> int:
    """Refuse to allocate ``n`` elements when ``n`` exceeds :data:`MAX_ELEMENTS`."""
    if n > MAX_ELEMENTS:
        raise ValueError(
            f"{owner}: {what} would need {n:,} elements (over {MAX_ELEMENTS:,}); "
            "refusing to allocate it"
        )
    return n


# --------------------------------------------------------------------------- field converters


def _converter(check: Callable[[str, str, Any], Any]) -> attrs.Converter:
    def convert(value: Any, record: Any, field: attrs.Attribute) -> Any:
        return check(type(record).__name__, field.name, value)

    return attrs.Converter(convert, takes_self=True, takes_field=True)


def real(
    *,
    low: float = -math.inf,
    high: float = math.inf,
    low_open: bool = False,
    high_open: bool = False,
) -> attrs.Converter:
    """A field converter: a finite float within the bounds (see :func:`check_real`)."""
    return _converter(
        lambda owner, name, v: check_real(
            owner, name, v, low=low, high=high, low_open=low_open, high_open=high_open
        )
    )


def integer(*, low: int | None = None, high: int | None = None) -> attrs.Converter:
    """A field converter: an int within ``[low, high]`` (see :func:`check_int`)."""
    return _converter(lambda owner, name, v: check_int(owner, name, v, low=low, high=high))


def choice(*options: str) -> attrs.Converter:
    """A field converter: one of the strings ``options``."""
    return _converter(lambda owner, name, v: check_choice(owner, name, v, options))


def boolean() -> attrs.Converter:
    """A field converter: a bool."""
    return _converter(check_bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def check_ints(owner: str, name: str, value: Any, n: int, low: int = 1) -> tuple[int, ...]:
    """An int or ``n`` ints, each ``>= low``, as a tuple of ``n`` ints (one per axis)."""
    items = (value,) * n if _is_int(value) else value
    ok = isinstance(items, tuple | list) and len(items) == n and all(map(_is_int, items))
    if not ok or not all(low <= int(v) <= MAX_ELEMENTS for v in items):
        huge = ok and max(int(v) for v in items) > MAX_ELEMENTS
        bound = f"in [{low}, {MAX_ELEMENTS:,}]" if huge else f">= {low}"
        raise fail(owner, name, f"an int {bound} or {n} of them (one per axis)", value)
    return tuple(int(v) for v in items)


def sizes(n: int, *, low: int = 1, optional: bool = False) -> attrs.Converter:
    """A field converter: an int or ``n`` ints ``>= low`` (or None when ``optional``)."""

    def check(owner: str, name: str, value: Any) -> tuple[int, ...] | None:
        if optional and value is None:
            return None
        return check_ints(owner, name, value, n, low)

    return _converter(check)


def _pair(item: Any) -> tuple[int, int] | None:
    if _is_int(item):
        return int(item), int(item)
    if isinstance(item, tuple | list) and len(item) == 2 and all(map(_is_int, item)):
        return int(item[0]), int(item[1])
    return None


def padding(n: int, *, numbers: bool = True) -> attrs.Converter:
    """A field converter for a padding: ``"valid"`` or ``"same"`` (any case) and, with
    ``numbers``, an int, ``n`` ints or ``n`` ``(before, after)`` pairs, each ``>= 0``."""

    def check(owner: str, name: str, value: Any) -> str | tuple[tuple[int, int], ...]:
        if isinstance(value, str) and value.lower() in ("valid", "same"):
            return value.lower()
        if not numbers:
            raise fail(owner, name, "'valid' or 'same'", value)
        items = [value] * n if _is_int(value) else value
        pads = [_pair(v) for v in items] if isinstance(items, tuple | list) else []
        if len(pads) != n or any(p is None or min(p) < 0 for p in pads):
            raise fail(
                owner,
                name,
                f"'valid', 'same', an int >= 0, {n} ints or {n} (before, after) pairs",
                value,
            )
        return tuple(p for p in pads if p is not None)

    return _converter(check)


# --------------------------------------------------------------------------- arrays


def _refused(dtype: np.dtype) -> str:
    if dtype == np.float16:
        return "float16 (too narrow: exp overflows at 11; cast to float32)"
    if dtype.kind == "f":
        return f"{dtype} (use float32 or float64)"
    if dtype.kind == "c":
        return f"{dtype} (complex numbers are not supported)"
    return f"dtype {dtype}"


def numeric(x: Any, owner: str, name: str = "input") -> np.ndarray:
    """``x`` as a real numeric array (bool, integer, float32, float64), else a DTypeError.

    Lists are data here: ``np.asarray`` turns them into one array. Tuples, dicts,
    records and None are trees, not arrays: a StructureError (several inputs
    are never stacked into one behind your back).
    """
    if type(x) is np.ndarray:
        a = x
    elif x is None or type(x) in (tuple, dict) or attrs.has(type(x)):
        raise StructureError(
            f"{owner}: {name} must be one array, got a {type(x).__name__}"
            + (" (a tuple or dict is a tree of several arrays)" if x is not None else "")
        )
    else:
        try:
            a = np.asarray(x)
        except ValueError:
            raise ShapeError(
                f"{owner}: {name} is not one array (rows of different lengths?); "
                "several inputs go in a tuple or dict of arrays"
            ) from None
    kind = a.dtype.kind
    if kind in "biu" or a.dtype in FLOAT_SET:
        return a
    raise DTypeError(
        f"{owner}: {name} must be numeric (bool, integer, float32 or float64), "
        f"got {_refused(a.dtype)}"
    )


def floating(x: Any, owner: str, name: str = "input") -> np.ndarray:
    """``x`` as float32 or float64: itself if it is one, booleans and integers as
    float64, anything else a DTypeError naming ``owner``."""
    a = numeric(x, owner, name)
    return a if a.dtype.kind == "f" else a.astype(np.float64)


def check_kind(owner: str, name: str, a: Any, kinds: str, expected: str) -> np.ndarray:
    """``a`` if it is an array whose dtype kind is in ``kinds`` (``"b"`` booleans,
    ``"iu"`` integers), else a DTypeError: ``{owner}: {name} must be {expected}, got ...``."""
    if type(a) is not np.ndarray or a.dtype.kind not in kinds:
        got = f"dtype {a.dtype}" if isinstance(a, np.ndarray) else f"a {type(a).__name__}"
        raise DTypeError(f"{owner}: {name} must be {expected}, got {got}")
    return a


def check_params(owner: str, **arrays: np.ndarray) -> np.dtype:
    """The one float dtype (float32 or float64) of a layer's parameter arrays, else a
    DTypeError naming them: a record may hold booleans (as a mask tree), a
    computing layer may not."""
    values = list(arrays.values())
    if values and all(type(a) is np.ndarray for a in values):  # the common case, quickly
        first = values[0].dtype
        if first in FLOAT_SET and all(a.dtype == first for a in values):
            return first
    for name, a in arrays.items():
        if not isinstance(a, np.ndarray):
            raise StructureError(f"{owner} needs {name} to be an array, got {_show(a)}")
    dtypes = {a.dtype for a in arrays.values()}
    if len(dtypes) != 1 or not dtypes <= set(FLOATS):
        got = ", ".join(f"{name} {a.dtype}" for name, a in arrays.items())
        raise DTypeError(f"{owner} needs parameters of one dtype, float32 or float64; got {got}")
    return dtypes.pop()


def check_shape(owner: str, name: str, got: tuple[int, ...], expected: tuple[int, ...]) -> None:
    """A ShapeError unless ``got == expected``."""
    if tuple(got) != tuple(expected):
        raise ShapeError(f"{owner}: {name} must have shape {tuple(expected)}, got {tuple(got)}")


def check_structure(owner: str, state: Any, cls: type, what: str) -> Any:
    """``state`` if it is a ``cls``, else a StructureError saying where to get one."""
    if not isinstance(state, cls):
        raise StructureError(
            f"{owner}: expected {what} (a {cls.__name__}), got {type(state).__name__}"
        )
    return state
