"""Per-array optimizer math, kept apart from the tree plumbing in ``transforms``.

Each function takes one gradient leaf ``g`` and the matching state leaves and
returns fresh arrays: it writes only into buffers it allocates itself. New
state buffers keep the dtype of the old ones (fixed by ``init`` from the
params; a float64 gradient is cast into a float32 moment), and updates come
out in the state's dtype. Hyperparameters arrive as Python floats, so
float32 stays float32. New state arrays are returned read-only. Every result
is written into an explicit ``out=`` buffer so a 0-d leaf stays a 0-d array
(a bare ufunc call would return a numpy scalar).
"""

from __future__ import annotations

import numpy as np

from .base import frozen


def _buffer(like: np.ndarray) -> np.ndarray:
    """A new uninitialised array with ``like``'s shape and dtype."""
    return np.empty(np.shape(like), like.dtype)


def scale(g: np.ndarray, factor: float) -> np.ndarray:
    """``factor * g`` in ``g``'s dtype (for SGD, bitwise ``fb.update``'s step)."""
    return np.multiply(g, factor, out=_buffer(g), dtype=g.dtype)


def trace(
    g: np.ndarray, v: np.ndarray, momentum: float, nesterov: bool
) -> tuple[np.ndarray, np.ndarray]:
    """``v' = momentum * v + g``; update ``v'``, or ``g + momentum * v'`` (Nesterov)."""
    v_new = np.multiply(v, momentum, out=_buffer(v))
    v_new += g
    frozen(v_new)
    if not nesterov:
        return v_new, v_new
    u = np.multiply(v_new, momentum, out=_buffer(v))
    u += g
    return u, v_new


def _ema_square(g: np.ndarray, v: np.ndarray, decay: float, tmp: np.ndarray) -> np.ndarray:
    """``decay * v + (1 - decay) * g**2``, using ``tmp`` (ours) as scratch."""
    np.multiply(g, g, out=tmp)
    tmp *= 1.0 - decay
    v_new = np.multiply(v, decay, out=_buffer(v))
    v_new += tmp
    return frozen(v_new)


def adam(
    g: np.ndarray,
    m: np.ndarray,
    v: np.ndarray,
    b1: float,
    b2: float,
    eps: float,
    count: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Adam at step ``count`` (1 on the first update): ``(direction, m', v')``.

    ``m' = b1 m + (1-b1) g``, ``v' = b2 v + (1-b2) g^2``,
    direction ``= m_hat / (sqrt(v_hat) + eps)`` with ``m_hat = m' / (1 - b1^count)``,
    ``v_hat = v' / (1 - b2^count)``.
    """
    tmp = np.multiply(g, 1.0 - b1, out=_buffer(m))
    m_new = np.multiply(m, b1, out=_buffer(m))
    m_new += tmp
    frozen(m_new)
    v_new = _ema_square(g, v, b2, tmp)
    np.divide(v_new, 1.0 - b2**count, out=tmp)
    np.sqrt(tmp, out=tmp)
    tmp += eps
    u = np.divide(m_new, 1.0 - b1**count, out=_buffer(m))
    u /= tmp
    return u, m_new, v_new


def rms(g: np.ndarray, v: np.ndarray, decay: float, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """RMSprop: ``v' = decay v + (1-decay) g^2``, direction ``g / (sqrt(v') + eps)``."""
    tmp = _buffer(v)
    v_new = _ema_square(g, v, decay, tmp)
    np.sqrt(v_new, out=tmp)
    tmp += eps
    np.divide(g, tmp, out=tmp)
    return tmp, v_new


def adagrad(g: np.ndarray, s: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Adagrad: ``s' = s + g^2``, direction ``g / (sqrt(s') + eps)``."""
    s_new = np.multiply(g, g, out=_buffer(s))
    s_new += s
    frozen(s_new)
    u = np.sqrt(s_new, out=_buffer(s))
    u += eps
    np.divide(g, u, out=u)
    return u, s_new


def decayed(g: np.ndarray, p: np.ndarray, weight_decay: float, on: bool) -> tuple[np.ndarray]:
    """``g + weight_decay * p`` where ``on``; ``g`` itself otherwise."""
    if not on:
        return (g,)
    u = np.multiply(p, weight_decay, out=_buffer(g))
    u += g
    return (u,)
