"""Optimizers as pure ``(init, update)`` pairs, composed with :func:`chain`.

>>> import numpy as np, fnbp as fb
>>> net = fb.mlp(fb.random.key(0), [2, 8, 1], output=fb.Sigmoid())
>>> opt = fb.optim.chain(fb.optim.clip_by_global_norm(1.0), fb.optim.adam(1e-2))
>>> state = opt.init(net)
>>> x, y = np.array([[0, 0], [0, 1], [1, 0], [1, 1]]), np.array([[0], [0], [0], [1]])
>>> for _ in range(3):
...     loss, grads = fb.value_and_grad(net, fb.binary_cross_entropy, x, y)
...     net, state = fb.optim.step(opt, net, grads, state)

``updates, state = opt.update(grads, state, params)`` gives the raw updates;
``apply_updates(params, updates)`` adds them. States are frozen records whose
moments mirror the params; nothing is modified in place.
"""

from . import schedules
from .alias import adagrad, adam, adamw, rmsprop, sgd
from .base import (
    EmptyState,
    Optimizer,
    apply_updates,
    chain,
    handed,
    identity,
    step,
    transform,
    update,
)
from .transforms import (
    AdamState,
    RmsState,
    RssState,
    Schedule,
    ScheduleState,
    TraceState,
    add_decayed_weights,
    clip_by_global_norm,
    scale,
    scale_by_adam,
    scale_by_learning_rate,
    scale_by_rms,
    scale_by_rss,
    scale_by_schedule,
    trace,
)

__all__ = [
    "AdamState",
    "EmptyState",
    "Optimizer",
    "RmsState",
    "RssState",
    "Schedule",
    "ScheduleState",
    "TraceState",
    "adagrad",
    "adam",
    "adamw",
    "add_decayed_weights",
    "apply_updates",
    "chain",
    "clip_by_global_norm",
    "identity",
    "rmsprop",
    "scale",
    "scale_by_adam",
    "scale_by_learning_rate",
    "scale_by_rms",
    "scale_by_rss",
    "scale_by_schedule",
    "schedules",
    "sgd",
    "step",
    "handed",
    "trace",
    "transform",
    "update",
]
