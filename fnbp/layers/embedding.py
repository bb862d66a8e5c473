"""Embedding: integer ids in, rows of a learned table out."""

from __future__ import annotations

from collections.abc import Callable

import attrs
import numpy as np
from numpy.typing import DTypeLike

from .. import random, validation
from ..core import Layer
from ..errors import DTypeError, LocatedError, ShapeError, StructureError
from ..record import array_repr, frozen, param

__all__ = ["Embedding"]


@attrs.frozen
class Embedding(Layer):
    """A lookup table: ``y[..., :] = table[ids[...]]``.

    ``table`` has shape ``(num_embeddings, dim)``; ``ids`` is an integer array
    of any shape, and ``y`` has shape ``ids.shape + (dim,)``. Every id must lie
    in ``[0, num_embeddings)``: a negative or too large id is a ``ValueError``
    (no wrap-around), a float or bool array a :class:`~fnbp.DTypeError`.

    The table's gradient adds up the output gradients of every position that
    looked up a row, so repeated ids accumulate (``np.add.at``)::

        g_table[k] = sum over positions p with ids[p] == k of g_y[p]

    Ids are not differentiable: ``g_x`` is always ``None``, even when asked
    for. So an Embedding must be the first layer of a ``Serial`` (whatever
    comes before it would receive no gradient; in practice a float output
    reaching it is already rejected as ids).
    """

    table: np.ndarray = param()
    fresh_grads = True  # a new array, kept by no one (see fnbp.core)
    verified = True  # checked by the contract suite, not at run time (see fnbp.core)

    def __repr__(self) -> str:
        if np.ndim(self.table) == 2:
            return f"Embedding({self.table.shape[0]}, {self.table.shape[1]})"
        return f"Embedding(table={array_repr(self.table)})"

    @classmethod
    def init(
        cls,
        key: random.Key,
        num_embeddings: int,
        dim: int,
        *,
        std: float = 1.0,
        dtype: DTypeLike = np.float32,
    ) -> Embedding:
        """A new table of ``num_embeddings`` rows of size ``dim``, drawn from ``N(0, std**2)``.

        The default ``std = 1`` is PyTorch's: each output component has unit
        variance, as a normalised activation would.
        """
        dtype = validation.float_dtype("Embedding.init", dtype)
        num_embeddings = validation.check_int(
            "Embedding.init", "num_embeddings", num_embeddings, low=1
        )
        dim = validation.check_int("Embedding.init", "dim", dim, low=1)
        std = validation.check_real("Embedding.init", "std", std, low=0.0)
        validation.check_size("Embedding.init", "table", num_embeddings * dim)
        table = random.normal(key, (num_embeddings, dim), dtype=dtype)
        table *= std
        return cls(table)

    def _check(self, ids: np.ndarray) -> np.ndarray:
        table = self.table
        validation.check_params("Embedding", table=table)
        if table.ndim != 2:
            raise ShapeError(f"Embedding needs a table of shape (num, dim), got {table.shape}")
        n, dim = table.shape
        if type(ids) is not np.ndarray:
            raise StructureError(
                f"Embedding({n}, {dim}) expects one array of ids, got a {type(ids).__name__}"
            )
        if ids.dtype.kind not in "iu":
            raise DTypeError(
                f"Embedding({n}, {dim}) expects integer ids, got dtype {ids.dtype} "
                "(ids cast to float on the way? pass them as an integer array)"
            )
        if ids.size and (ids.min() < 0 or ids.max() >= n):
            bad = np.flatnonzero((ids < 0) | (ids >= n))[0]
            where = np.unravel_index(bad, ids.shape)
            raise LocatedError(
                f"Embedding({n}, {dim}): id {ids.flat[bad]} at index "
                f"{tuple(int(i) for i in where)} is out of range; ids must be in [0, {n})"
            )
        return ids

    def forward(self, x: np.ndarray) -> np.ndarray:
        """``table[x]``, of shape ``x.shape + (dim,)``."""
        return self.table[self._check(x)]

    def vjp(self, x: np.ndarray, need_g_x: bool = True) -> tuple[np.ndarray, Callable]:
        """``(table[x], pullback)``; the pullback's ``g_x`` is always ``None``."""
        ids = self._check(x)

        def pullback(g_y: np.ndarray) -> tuple[None, Embedding]:
            g_table = np.zeros_like(self.table)
            np.add.at(g_table, ids.ravel(), g_y.reshape(-1, self.table.shape[1]))
            return None, Embedding(frozen(g_table))

        return self.table[ids], pullback
