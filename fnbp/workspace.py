"""The training step's workspace: kept arrays for the new arrays of every step.

A step at batch 1024 makes a few megabytes of new arrays (activations, their
gradients, the weight gradients) and lets them go. The C library returns some
of that memory to the operating system and faults it back in at the next step
(tens to hundreds of page faults per step). Inside :func:`fnbp.train_step`,
:func:`scratch` instead hands a layer an array of the right shape and dtype
that an earlier step made and that nothing references any more -- CPython's
reference count says so, the test numpy itself makes before it reuses a
temporary in ``a + b + c``. Outside a step it is ``np.empty``.

No one can see the difference: an array is reused only when no record, view,
caller or closure holds it, not even through a weak reference, and it is
overwritten before it is read. The arithmetic is the same, so the bits are the
same. Dense and the convolutions take their large new arrays from here. Each
thread keeps its own workspace, of at most :data:`PER_SHAPE` arrays per shape
and dtype and :data:`SHAPES` shapes and :data:`MAX_BYTES` bytes (about two
steps' worth of memory for a fixed batch size); arrays under :data:`MIN_BYTES`
are always new. The kept arrays stay after the last step, for the next one,
until :func:`clear` (``fit`` clears its own when it ends) or the thread ends.
"""

from __future__ import annotations

import math
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import Any
from weakref import getweakrefcount

import numpy as np

from . import validation
from .errors import DTypeError, ShapeError

__all__ = [
    "scratch",
    "dot",
    "kept",
    "activate",
    "deactivate",
    "clear",
    "PER_SHAPE",
    "SHAPES",
    "MAX_BYTES",
    "MIN_BYTES",
]

PER_SHAPE = 8
"""Arrays kept per (shape, dtype): one step of the 784-256-256-10 MLP holds at most
four (1024, 256) arrays at once."""

SHAPES = 64
"""Shapes kept per thread; the least recently used one goes first."""

MAX_BYTES = 1 << 28
"""Bytes kept per thread (256 MiB); beyond them the least recently used shapes go."""

MIN_BYTES = 1 << 16
"""Smaller arrays are always new: the C library reuses their memory without faults,
and looking one up would cost more than making it."""

Pool = dict[tuple[tuple[int, ...], np.dtype], list[np.ndarray]]

_ACTIVE: ContextVar[Pool | None] = ContextVar("fnbp_workspace", default=None)
_THREADS = threading.local()


def _free_count() -> int:
    """The reference count :func:`scratch` sees for an array only its pool's list holds
    (the list, the loop variable, getrefcount's argument: 3 on CPython 3.11),
    measured the way scratch measures it."""
    probe = [np.empty(0)]
    for a in probe:
        return sys.getrefcount(a)
    raise AssertionError("unreachable")


_FREE = _free_count()


def scratch(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A new uninitialised array of ``shape`` and ``dtype``, writeable, that nobody else
    references: ``np.empty(shape, dtype)``, or inside :func:`fnbp.train_step` a kept
    one that an earlier step made and nothing holds any more. The caller must write
    every element before reading it (the ``out=`` of a product, say). ``shape`` may
    be an int, ``dtype`` anything ``np.dtype`` takes.

    >>> import numpy as np, fnbp as fb
    >>> fb.scratch((2, 3), np.dtype(np.float32)).shape
    (2, 3)
    """
    if type(shape) is not tuple or not isinstance(dtype, np.dtype):
        shape, dtype = _checked(shape, dtype)
    try:
        return _take(shape, dtype)
    except (TypeError, ValueError, OverflowError, MemoryError):  # numpy's words: ours
        _checked(shape, dtype)
        raise


def _take(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    pool = _ACTIVE.get()
    if pool is None or math.prod(shape) * dtype.itemsize < MIN_BYTES:
        return np.empty(shape, dtype)
    key = (shape, dtype)
    kept = pool.pop(key, None)
    if kept is None:
        kept = []
        if len(pool) >= SHAPES:
            _drop_oldest(pool)
    pool[key] = kept  # now the most recently used
    for a in kept:
        if sys.getrefcount(a) == _FREE and not getweakrefcount(a):  # nobody, not weakly
            a.flags.writeable = True
            return a
    a = np.empty(shape, dtype)
    if len(kept) < PER_SHAPE and a.nbytes <= MAX_BYTES:
        kept.append(a)
        total = _THREADS.bytes = _THREADS.bytes + a.nbytes
        while total > MAX_BYTES and pool:
            total = _drop_oldest(pool)
    return a


def _checked(shape: Any, dtype: Any) -> tuple[tuple[int, ...], np.dtype]:
    """``shape`` as a tuple of ints >= 0 (an int is one axis) and ``dtype`` as a numpy
    dtype, else a ValueError or DTypeError naming :func:`scratch`'s parameter."""
    axes = (shape,) if isinstance(shape, int | np.integer) else shape
    axes = validation.check_sequence("scratch", "shape", axes, "ints >= 0")
    sizes = tuple(validation.check_int("scratch", "shape", n, low=0) for n in axes)
    validation.check_size("scratch", "the array", math.prod(sizes))
    try:
        return sizes, np.dtype(dtype)
    except TypeError:
        raise DTypeError(f"scratch: dtype must be a numpy dtype, got {dtype!r}") from None


def _drop_oldest(pool: Pool) -> int:
    """Forget the least recently used shape's arrays; the bytes still kept."""
    kept = pool.pop(next(iter(pool)))
    _THREADS.bytes -= sum(a.nbytes for a in kept)
    return int(_THREADS.bytes)


def dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` of two matrices, into a :func:`scratch` array inside a training step
    (the same product, the same bits).

    The product goes through ``np.matmul`` when both operands are contiguous in one
    order or the other (a transposed matrix is): it hands them to BLAS as they are,
    2-12% faster here than ``np.dot`` for the products of a training step (a
    transposed left operand, ``x.T @ g``, gains most). Any other layout goes through
    ``np.dot``, which makes it contiguous first (``np.matmul`` would loop in Python's
    stead, many times slower). Both make the same BLAS call: the same bits.

    >>> import numpy as np, fnbp as fb
    >>> fb.workspace.dot(np.eye(2), np.array([[1.0, 2.0], [3.0, 4.0]])).tolist()
    [[1.0, 2.0], [3.0, 4.0]]
    """
    if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)):
        _check_pair(a, b)  # raises: two arrays only (a subclass, such as a memmap, is one)
    try:
        product = np.matmul if _blas_ready(a) and _blas_ready(b) else np.dot
        if _ACTIVE.get() is None:
            y = product(a, b)
        else:
            dtype = a.dtype if a.dtype == b.dtype else np.result_type(a.dtype, b.dtype)
            shape = (a.shape[0], b.shape[1])
            small = shape[0] * shape[1] * dtype.itemsize < MIN_BYTES
            y = product(a, b) if small else product(a, b, out=scratch(shape, dtype))
    except (IndexError, TypeError, ValueError):  # numpy's words: ours
        _check_pair(a, b)
        raise
    if y.ndim != 2:  # a vector went in: this is the product of two matrices only
        _check_pair(a, b)
    return y


def _blas_ready(a: np.ndarray) -> bool:
    """Whether ``a`` is contiguous in C or Fortran order (a matrix or its transpose),
    which BLAS takes as it is."""
    flags = a.flags
    return flags.c_contiguous or flags.f_contiguous


def _check_pair(a: Any, b: Any) -> None:
    """The error for :func:`dot` given what are not two matrices that chain."""
    arrays = isinstance(a, np.ndarray) and isinstance(b, np.ndarray)
    if not arrays or a.ndim != 2 or b.ndim != 2:
        raise validation.fail("workspace.dot", "a and b", "two 2-D arrays", (a, b))
    if a.shape[1] != b.shape[0]:
        raise ShapeError(f"workspace.dot: a {a.shape} and b {b.shape} do not chain")


def activate() -> Token:
    """Make :func:`scratch` reuse the calling thread's kept arrays, until
    ``deactivate(token)`` (what :func:`fnbp.train_step` does around its step while
    fnbp.trace does not watch; :func:`kept` is the same as a ``with`` block)."""
    pool = getattr(_THREADS, "pool", None)
    if pool is None:
        clear()
        pool = _THREADS.pool
    return _ACTIVE.set(pool)


def deactivate(token: Token) -> None:
    """Undo the :func:`activate` that gave ``token``."""
    _ACTIVE.reset(token)


@contextmanager
def kept() -> Iterator[None]:
    """Within this block, :func:`scratch` reuses the calling thread's kept arrays."""
    token = activate()
    try:
        yield
    finally:
        deactivate(token)


def clear() -> None:
    """Let go of the calling thread's kept arrays (those nothing else holds are freed)."""
    _THREADS.pool, _THREADS.bytes = {}, 0
