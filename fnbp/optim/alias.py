"""The usual optimizers, each a short :func:`~fnbp.optim.chain` of transforms.

Every ``learning_rate`` is a float ``>= 0`` or a schedule ``step -> float``
(see :mod:`fnbp.optim.schedules`; the first update uses ``schedule(0)``).
"""

from __future__ import annotations

from typing import Any

from ..validation import check_bool, check_real
from .base import Optimizer, chain, identity
from .transforms import (
    Schedule,
    add_decayed_weights,
    scale_by_adam,
    scale_by_learning_rate,
    scale_by_rms,
    scale_by_rss,
    trace,
)

__all__ = ["sgd", "adam", "adamw", "rmsprop", "adagrad"]


def sgd(
    learning_rate: float | Schedule, momentum: float = 0.0, nesterov: bool = False
) -> Optimizer:
    """Stochastic gradient descent, with optional (Nesterov) momentum::

        v = momentum * v + g                         (v = g on the first step)
        updates = -lr * v                            (Nesterov: -lr * (g + momentum * v))

    as PyTorch and optax (see :func:`~fnbp.optim.trace`). Without momentum,
    ``updates = -lr * g`` and the new params equal ``fb.update(params, grads, lr)``
    bit for bit. State: ``(EmptyState() or TraceState, EmptyState() or ScheduleState)``.

    >>> import numpy as np, fnbp as fb
    >>> opt = fb.optim.sgd(0.5, momentum=0.9)
    >>> p, s = fb.optim.step(opt, np.array([1.0]), np.array([1.0]), opt.init(np.array([1.0])))
    >>> p, s = fb.optim.step(opt, p, np.array([1.0]), s)   # v = 0.9 * 1 + 1 = 1.9
    >>> p.round(12).tolist()
    [-0.45]
    """
    momentum = check_real("sgd", "momentum", momentum, low=0.0, high=1.0, high_open=True)
    if check_bool("sgd", "nesterov", nesterov) and not momentum:
        raise ValueError("sgd: nesterov=True needs a momentum > 0")
    return chain(
        trace(momentum, nesterov) if momentum else identity(), scale_by_learning_rate(learning_rate)
    )


def adam(
    learning_rate: float | Schedule, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8
) -> Optimizer:
    """Adam: ``updates = -lr * m_hat / (sqrt(v_hat) + eps)`` (see :func:`scale_by_adam`).

    Bias-corrected moments, ``eps`` outside the root, count 1 on the first
    update (so its update is ``-lr * g / (|g| + eps)``), as PyTorch and optax.
    State: ``(AdamState(mu, nu, count), EmptyState() or ScheduleState)``.
    """
    return chain(scale_by_adam(b1, b2, eps), scale_by_learning_rate(learning_rate))


def adamw(
    learning_rate: float | Schedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 1e-2,
    mask: Any = None,
) -> Optimizer:
    """Adam with decoupled weight decay (Loshchilov & Hutter, 2019)::

        p <- p - lr * (m_hat / (sqrt(v_hat) + eps) + weight_decay * p)

    The decay is outside Adam's moments and scales with the (scheduled) learning
    rate, as PyTorch's ``AdamW`` and optax's ``adamw``. By default only leaves
    with ``ndim >= 2`` (weight matrices) decay, never biases; ``mask`` (a tree of
    bools, or a function ``params -> tree of bools``) chooses otherwise. PyTorch
    decays every parameter unless told by parameter groups; optax takes the same
    ``mask`` but decays everything by default, with ``weight_decay=1e-4``.
    ``update`` needs ``params``.
    """
    return chain(
        scale_by_adam(b1, b2, eps),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )


def rmsprop(
    learning_rate: float | Schedule, decay: float = 0.9, eps: float = 1e-8, momentum: float = 0.0
) -> Optimizer:
    """RMSprop: ``v = decay v + (1-decay) g^2``; ``updates = -lr * g / (sqrt(v) + eps)``.

    With ``momentum``, ``b = momentum * b + g / (sqrt(v) + eps)`` and
    ``updates = -lr * b``, as PyTorch. ``eps`` is outside the root as in PyTorch
    (TensorFlow and optax: inside). See :func:`scale_by_rms`.
    """
    momentum = check_real("rmsprop", "momentum", momentum, low=0.0, high=1.0, high_open=True)
    return chain(
        scale_by_rms(decay, eps),
        trace(momentum) if momentum else identity(),
        scale_by_learning_rate(learning_rate),
    )


def adagrad(learning_rate: float | Schedule, eps: float = 1e-8) -> Optimizer:
    """Adagrad: ``s = s + g^2`` (from 0); ``updates = -lr * g / (sqrt(s) + eps)``.

    As PyTorch's defaults with ``eps`` outside the root; optax and TensorFlow
    start ``s`` at 0.1. See :func:`scale_by_rss`.
    """
    return chain(scale_by_rss(eps), scale_by_learning_rate(learning_rate))
