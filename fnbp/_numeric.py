"""Elementwise helpers that stay silent under ``np.errstate(all="raise")``.

``exp`` of a very negative number underflows; numpy ignores that by default,
but fnbp promises no floating-point signal at any finite input. So
:func:`exp_cut` takes ``exp(a)`` as exactly 0 when ``a`` is within 20 of
``log(tiny)`` of its dtype or below (``exp(a)`` under about 1e-29 in float32,
1e-299 in float64): what IEEE arithmetic would soon flush to zero anyway,
leaving headroom for the ``1/N`` scaling that follows in a loss gradient.
"""

from __future__ import annotations

import numpy as np

_CUT: dict[np.dtype, float] = {}


def exp_cutoff(dtype: np.dtype) -> float:
    """The exponent below which :func:`exp_cut` returns 0: ``log(tiny) + 20``."""
    value = _CUT.get(dtype)
    if value is None:
        value = _CUT[dtype] = float(np.log(np.finfo(dtype).tiny)) + 20.0
    return value


def exp_cut(a: np.ndarray) -> np.ndarray:
    """``exp(a)`` in a new array, with 0 where ``a < exp_cutoff(a.dtype)``."""
    out = np.zeros_like(a)
    return np.exp(a, out=out, where=a >= exp_cutoff(a.dtype))


def softplus(x: np.ndarray) -> np.ndarray:
    """``log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|))``, a new array, no signals."""
    t = np.abs(x)
    np.negative(t, out=t)
    t = exp_cut(t)
    np.log1p(t, out=t)
    t += np.maximum(x, 0.0, dtype=x.dtype)
    return t
