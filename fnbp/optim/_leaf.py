"""Per-array optimizer math, kept apart from the tree plumbing in ``transforms``.

Each function takes one gradient leaf ``g`` and the matching state leaves and
returns new arrays, written the way the papers write them. New state arrays
keep the dtype of the old ones (fixed by ``init`` from the params; a float64
gradient is cast into a float32 moment) and are returned read-only;
hyperparameters arrive as Python floats, so float32 stays float32.
"""

from __future__ import annotations

from contextvars import ContextVar

import numpy as np

from ..record import frozen


def _like(a: np.ndarray) -> np.ndarray:
    """A new uninitialised array of ``a``'s shape and dtype (a 0-d one stays an array)."""
    return np.empty(a.shape, a.dtype)


HANDED: ContextVar[frozenset[int]] = ContextVar("fnbp_handed_grads", default=frozenset())
"""The ids of the grad arrays that ``fnbp.optim.step(..., grads_handed=True)`` has handed
to the rule it is running (empty otherwise): a transform may compute into them."""


def scale(g: np.ndarray, factor: float) -> np.ndarray:
    """``factor * g`` in ``g``'s dtype."""
    return np.multiply(g, factor, out=_like(g))


def scale_all(g: list, factor: float) -> list:
    """:func:`scale` on every leaf, computed into the leaves in :data:`HANDED` (while
    still writeable)."""
    handed = HANDED.get()
    return [
        np.multiply(x, factor, out=x if id(x) in handed and x.flags.writeable else _like(x))
        for x in g
    ]


def add(p: np.ndarray, u: np.ndarray) -> np.ndarray:
    """``p + u`` in ``p``'s dtype (``u`` cast first), read-only: the new parameter."""
    return frozen(np.add(p, u, out=_like(p), dtype=p.dtype))


def add_into(p: np.ndarray, u: np.ndarray, out: np.ndarray | None) -> np.ndarray:
    """``p + u`` like :func:`add`, written into ``out`` (``u`` itself, or a handed-over
    grad array of ``p``'s shape) when nobody else holds it -- the caller says so by
    passing it -- and it is an array of its own memory, writeable, of ``p``'s dtype."""
    if out is not None and out.base is None and out.flags.writeable and out.dtype == p.dtype:
        np.add(p, u, out=out, dtype=p.dtype)
        out.flags.writeable = False
        return out
    return add(p, u)


def moment(m: np.ndarray, g: np.ndarray, decay: float) -> np.ndarray:
    """An exponential moving average: ``decay * m + (1 - decay) * g``."""
    new = np.multiply(m, decay, out=_like(m))
    new += np.multiply(g, 1.0 - decay, dtype=m.dtype)
    return frozen(new)


def moment_of_square(v: np.ndarray, g: np.ndarray, decay: float) -> np.ndarray:
    """The moving average of ``g**2``: ``decay * v + (1 - decay) * g * g``."""
    new = np.multiply(v, decay, out=_like(v))
    g2 = np.multiply(g, g, dtype=v.dtype)
    g2 *= 1.0 - decay
    new += g2
    return frozen(new)


def trace(
    g: np.ndarray, v: np.ndarray, momentum: float, nesterov: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Heavy ball: ``v' = momentum * v + g``; the update is ``v'``, or
    ``g + momentum * v'`` with Nesterov."""
    v_new = np.multiply(v, momentum, out=_like(v))
    v_new += g
    frozen(v_new)
    if not nesterov:
        return v_new, v_new
    u = np.multiply(v_new, momentum, out=_like(v))
    u += g
    return u, v_new


def adam(
    g: np.ndarray, m: np.ndarray, v: np.ndarray, b1: float, b2: float, eps: float, t: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Adam at step ``t`` (1 for the first update): ``(direction, m', v')``::

    m' = b1 m + (1 - b1) g        v' = b2 v + (1 - b2) g^2
    direction = m_hat / (sqrt(v_hat) + eps),   m_hat = m' / (1 - b1^t),  v_hat = v' / (1 - b2^t)
    """
    m = moment(m, g, b1)
    v = moment_of_square(v, g, b2)
    denominator = np.divide(v, 1.0 - b2**t, out=_like(v))
    np.sqrt(denominator, out=denominator)
    denominator += eps
    direction = np.divide(m, 1.0 - b1**t, out=_like(m))
    direction /= denominator
    return direction, m, v


def rms(g: np.ndarray, v: np.ndarray, decay: float, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """RMSprop: ``v' = decay v + (1 - decay) g^2``, direction ``g / (sqrt(v') + eps)``."""
    v = moment_of_square(v, g, decay)
    denominator = np.sqrt(v, out=_like(v))
    denominator += eps
    return np.divide(g, denominator, out=denominator), v


def adagrad(g: np.ndarray, s: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Adagrad: ``s' = s + g^2``, direction ``g / (sqrt(s') + eps)``."""
    s_new = np.multiply(g, g, out=_like(s))
    s_new += s
    frozen(s_new)
    denominator = np.sqrt(s_new, out=_like(s))
    denominator += eps
    return np.divide(g, denominator, out=denominator), s_new


def decayed(g: np.ndarray, p: np.ndarray, weight_decay: float, on: bool) -> tuple[np.ndarray]:
    """``g + weight_decay * p`` where ``on``; ``g`` itself otherwise."""
    if not on:
        return (g,)
    u = np.multiply(p, weight_decay, out=_like(g))
    u += g
    return (u,)
