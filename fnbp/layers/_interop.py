"""Weights from another framework's layout: the checks shared by the ``from_torch`` helpers.

PyTorch stores a Linear weight ``(out, in)`` and a convolution kernel
``(C_out, C_in, *kernel)``; fnbp stores ``(in, out)`` and ``(*kernel, C_in, C_out)``
(Keras's layouts, which load unchanged). The helpers take arrays
(``tensor.detach().cpu().numpy()``), keep their dtype (float32 or float64) and
copy them into fresh C-ordered buffers, so nothing the caller holds is shared.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import validation
from ..errors import DTypeError, ShapeError


def weight(
    owner: str, name: str, a: Any, ndim: int, layout: str, dtype: np.dtype | None = None
) -> np.ndarray:
    """``a`` as a float32 or float64 array (of ``dtype`` when given) of ``ndim`` axes,
    ``layout`` naming them."""
    a = validation.numeric(a, owner, name)
    if a.dtype not in validation.FLOATS or (dtype is not None and a.dtype != dtype):
        want = "float32 or float64" if dtype is None else f"{dtype}, as the other weights"
        raise DTypeError(f"{owner}: {name} must be {want}, got dtype {a.dtype}")
    if a.ndim != ndim:
        raise ShapeError(f"{owner}: {name} must have shape {layout}, got {a.shape}")
    return a


def bias(owner: str, name: str, b: Any, n: int, dtype: np.dtype) -> np.ndarray:
    """A bias ``(n,)`` of the weight's ``dtype``, or zeros for None (``bias=False``)."""
    if b is None:
        return np.zeros(n, dtype)
    b = weight(owner, name, b, 1, f"({n},)", dtype)
    validation.check_shape(owner, name, b.shape, (n,))
    return np.array(b)


def transposed(a: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """``a.transpose(axes)`` copied into a new C-ordered array."""
    return np.ascontiguousarray(a.transpose(axes))
