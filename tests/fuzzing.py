"""The one rule every fuzzed call to fnbp must keep, as helpers shared by
``tests/test_fuzz.py`` and the scripted sweep ``tools/sweep.py``.

fnbp promises three things about bad input:

The rule is one helper, :func:`obey`, which the fuzz suite wraps around every
call it makes:

1. **No foreign errors.** Every exception is one of fnbp's own classes
   (:data:`FNBP_ERRORS`), or a ``TypeError`` / ``ValueError`` that fnbp's own
   code raised: the innermost frame of its traceback is a ``raise`` statement
   in a file of the ``fnbp`` package. An error numpy raised from inside an fnbp
   function (a broadcasting ``ValueError``, an ``IndexError``) breaks the rule,
   even though its innermost *Python* frame is fnbp's.
2. **No silent NaN.** A call that is accepted with finite inputs returns
   finite results (:func:`assert_finite`).
3. **No floating-point warning** from finite inputs (the test suite turns
   warnings into errors, and such an error comes from numpy, not from fnbp);
   non-finite inputs propagate quietly and are not checked for it.
4. **No absurd allocation.** (Checked by the sweep, which measures memory.)
"""

from __future__ import annotations

import dis
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

import fnbp as fb

FNBP_ERRORS: tuple[type[BaseException], ...] = (
    fb.ShapeError,
    fb.DTypeError,
    fb.StructureError,
    fb.ModeError,
    fb.DivergenceError,
    fb.CheckpointError,
)
"""The exception classes fnbp defines for bad input."""

PACKAGE = Path(fb.__file__).resolve().parent
_RAISES = {"RAISE_VARARGS", "RERAISE"}


class ForeignError(AssertionError):
    """A call raised an exception that breaks the rule (see the module docstring)."""


def _innermost(tb: TracebackType) -> TracebackType:
    while tb.tb_next is not None:
        tb = tb.tb_next
    return tb


def raised_by_fnbp(exc: BaseException) -> bool:
    """True when the innermost frame of ``exc``'s traceback is a ``raise`` in fnbp's code."""
    if exc.__traceback__ is None:
        return False
    tb = _innermost(exc.__traceback__)
    code = tb.tb_frame.f_code
    inside = Path(code.co_filename).resolve().is_relative_to(PACKAGE)
    return inside and dis.opname[code.co_code[tb.tb_lasti]] in _RAISES


def is_fnbp_error(exc: BaseException) -> bool:
    """The rule: an fnbp error class, or a TypeError / ValueError raised by fnbp itself."""
    if isinstance(exc, FNBP_ERRORS):
        return True
    return isinstance(exc, TypeError | ValueError) and raised_by_fnbp(exc)


def where(exc: BaseException) -> str:
    """``file:line`` of the innermost frame of ``exc``'s traceback."""
    if exc.__traceback__ is None:
        return "?"
    tb = _innermost(exc.__traceback__)
    return f"{Path(tb.tb_frame.f_code.co_filename).name}:{tb.tb_lineno}"


def attempt(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[bool, Any]:
    """``(True, result)`` if ``fn`` accepts the call, ``(False, error)`` if fnbp refuses it
    by the rule; any other exception becomes a :class:`ForeignError` that says where."""
    try:
        return True, fn(*args, **kwargs)
    except Exception as exc:
        if is_fnbp_error(exc):
            return False, exc
        raise ForeignError(
            f"{type(exc).__name__} from {where(exc)} (not an fnbp error): {exc}"
        ) from exc


def float_leaves(result: Any) -> list[np.ndarray]:
    """The floating-point arrays and numbers of a result tree (records, tuples, dicts)."""
    out = []
    for leaf in fb.tree.leaves(result):
        a = np.asarray(leaf) if isinstance(leaf, np.ndarray | np.generic | float) else None
        if a is not None and a.dtype.kind == "f":
            out.append(a)
    return out


def assert_finite(result: Any, what: str = "result") -> None:
    """Every floating-point leaf of ``result`` is finite."""
    for a in float_leaves(result):
        if not np.isfinite(a).all():
            raise AssertionError(f"{what} is not finite for finite inputs: {a!r}")


def obey(
    fn: Callable[..., Any], *args: Any, finite: bool = True, **kwargs: Any
) -> tuple[bool, Any]:
    """The rule for one call of ``fn``: ``(True, result)`` if accepted, with every float
    in ``result`` finite when ``finite`` (the inputs were finite), or ``(False, error)``
    if refused with an fnbp error. Anything else fails the test: a foreign error, a
    floating-point warning from finite inputs, a NaN or inf out of finite inputs."""
    with np.errstate(under="ignore") if finite else np.errstate(all="ignore"):
        accepted, out = attempt(fn, *args, **kwargs)
    if accepted and finite:
        assert_finite(out)
    return accepted, out
