"""Positional embeddings: a learned table, or the Transformer paper's sinusoids, added to x.

Attention treats its input as a set (permute the positions and its output is
permuted alike); order enters through a position-dependent term added to ``x``
of shape ``(N, T, D)``::

    y[n, t] = x[n, t] + P[t]          g_x = g_y

:class:`PositionalEmbedding` learns ``P`` (its first ``T`` rows are used, and
``g_P[t] = sum_n g_y[n, t]`` for ``t < T``, 0 for the rows not used);
:class:`SinusoidalPositions` fixes it (Vaswani et al. 2017)::

    P[t, 2i] = sin(t / base**(2i / D)),    P[t, 2i + 1] = cos(t / base**(2i / D))
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import attrs
import numpy as np
from numpy.typing import DTypeLike

from .. import random, validation
from ..core import Layer
from ..errors import ShapeError, StructureError
from ..record import array_repr, frozen, param, static

__all__ = ["PositionalEmbedding", "SinusoidalPositions", "sinusoidal_table"]


def _check_sequence(name: str, x: np.ndarray, d: int | None) -> None:
    """A ShapeError unless ``x`` is one array ``(N, T, D)`` (``D = d`` when given)."""
    if type(x) is not np.ndarray:
        raise StructureError(f"{name} expects one array (N, T, D), got a {type(x).__name__}")
    if x.ndim != 3 or (d is not None and x.shape[-1] != d):
        hint = " (a single sequence? use x[None])" if x.ndim == 2 else ""
        want = "D" if d is None else d
        raise ShapeError(f"{name} expects input of shape (N, T, {want}), got {x.shape}{hint}")


@attrs.frozen
class PositionalEmbedding(Layer):
    """A learned position table: ``y[n, t] = x[n, t] + table[t]`` for ``x`` ``(N, T, D)``.

    ``table`` has shape ``(max_len, D)``; a sequence longer than ``max_len`` is
    a :class:`~fnbp.ShapeError` naming it. Gradients: ``g_x = g_y``, and
    ``g_table[t] = sum_n g_y[n, t]`` for ``t < T``, 0 for the rows not used
    (it is an Embedding looked up at the positions ``0 .. T-1``). A float input
    of another precision, or an integer one, is cast to the table's dtype.
    """

    table: np.ndarray = param()

    def __repr__(self) -> str:
        if np.ndim(self.table) == 2:
            return f"PositionalEmbedding({self.table.shape[0]}, {self.table.shape[1]})"
        return f"PositionalEmbedding(table={array_repr(self.table)})"

    @classmethod
    def init(
        cls,
        key: random.Key,
        max_len: int,
        d_model: int,
        *,
        std: float = 0.02,
        dtype: DTypeLike = np.float32,
    ) -> PositionalEmbedding:
        """A new ``(max_len, d_model)`` table drawn from ``N(0, std**2)``; ``std = 0.02``
        as GPT-2 and BERT initialise theirs."""
        owner = "PositionalEmbedding.init"
        dtype = validation.float_dtype(owner, dtype)
        max_len = validation.check_int(owner, "max_len", max_len, low=1)
        d_model = validation.check_int(owner, "d_model", d_model, low=1)
        std = validation.check_real(owner, "std", std, low=0.0)
        validation.check_size(owner, "table", max_len * d_model)
        table = random.normal(key, (max_len, d_model), dtype=dtype)
        table *= std
        return cls(table)

    def _check(self, x: np.ndarray) -> np.ndarray:
        table = self.table
        if table.ndim != 2:
            raise ShapeError(
                f"PositionalEmbedding needs a table of shape (max_len, D), got {table.shape}"
            )
        max_len, d = table.shape
        name = f"PositionalEmbedding(max_len={max_len}, D={d})"
        validation.check_params(name, table=table)
        _check_sequence(name, x, d)
        if x.shape[1] > max_len:
            raise ShapeError(
                f"{name}: the input has T = {x.shape[1]} positions (shape {x.shape}), more "
                f"than max_len = {max_len}; build the layer with a larger max_len"
            )
        if x.dtype != table.dtype:
            x = validation.numeric(x, name).astype(table.dtype)
        return x

    def vjp(self, x: np.ndarray, need_g_x: bool = True) -> tuple[np.ndarray, Callable]:
        """``(x + table[:T], pullback)``."""
        x = self._check(x)
        t = x.shape[1]

        def pullback(g_y: np.ndarray) -> tuple[np.ndarray | None, PositionalEmbedding]:
            g_table = np.zeros_like(self.table)
            np.add.reduce(g_y, axis=0, out=g_table[:t])
            return (g_y if need_g_x else None), PositionalEmbedding(frozen(g_table))

        return x + self.table[:t], pullback


@functools.lru_cache(maxsize=32)
def _table(t: int, d: int, base: float, dtype: np.dtype) -> np.ndarray:
    angle = np.arange(t, dtype=np.float64)[:, None] * base ** (-np.arange(0, d, 2) / d)
    pe = np.empty((t, d))
    pe[:, 0::2] = np.sin(angle)
    pe[:, 1::2] = np.cos(angle[:, : d // 2])
    return frozen(pe.astype(dtype))


def sinusoidal_table(
    length: int, d_model: int, *, base: float = 10000.0, dtype: DTypeLike = np.float64
) -> np.ndarray:
    """The ``(length, d_model)`` sinusoidal table of Vaswani et al. (2017), read-only::

        P[t, 2i] = sin(t / base**(2i / D)),    P[t, 2i + 1] = cos(t / base**(2i / D))

    Computed in float64 (angles up to ``length`` radians keep their digits) and
    cast to ``dtype``; an odd ``D`` ends with a sine column. Cached.
    """
    owner = "sinusoidal_table"
    return _table(
        validation.check_int(owner, "length", length, low=0),
        validation.check_int(owner, "d_model", d_model, low=1),
        validation.check_real(owner, "base", base, low=1.0, low_open=True),
        validation.float_dtype(owner, dtype),
    )


@attrs.frozen
class SinusoidalPositions(Layer):
    """Fixed sinusoidal positions: ``y[n, t] = x[n, t] + P[t]`` for ``x`` ``(N, T, D)``.

    ``P`` is :func:`sinusoidal_table` of ``T`` rows and ``D`` columns (Vaswani
    et al. 2017): each pair of columns turns at its own frequency, so a shift
    of the position is the same rotation everywhere, and any length works. No
    parameters; ``g_x = g_y``. ``base`` (static, 10000 in the paper) sets the
    slowest frequency. The input keeps its dtype (integers are taken as float64).
    """

    base: float = static(default=10000.0, converter=validation.real(low=1.0, low_open=True))

    def vjp(self, x: np.ndarray, need_g_x: bool = True) -> tuple[np.ndarray, Callable]:
        """``(x + P[:T], pullback)``; the layer has no parameters."""
        if type(x) is np.ndarray:
            x = validation.floating(x, "SinusoidalPositions")
        _check_sequence("SinusoidalPositions", x, None)
        y = x + _table(x.shape[1], x.shape[2], self.base, x.dtype)

        def pullback(g_y: np.ndarray) -> tuple[np.ndarray | None, SinusoidalPositions]:
            return (g_y if need_g_x else None), self

        return y, pullback
