"""Shared test data: a tiny params record and plain-Python views of trees."""

from __future__ import annotations

import math
from typing import Any

import attrs
import numpy as np

import fnbp as fb


@attrs.frozen
class Pair:
    """A tiny params record: a 2-D weight ``w`` (1, 2) and a 1-D bias ``b`` (1,)."""

    w: np.ndarray = fb.param()
    b: np.ndarray = fb.param()


OPTIMIZERS = {
    "sgd": lambda: fb.optim.sgd(0.1),
    "momentum": lambda: fb.optim.sgd(0.1, momentum=0.9),
    "nesterov": lambda: fb.optim.sgd(0.1, momentum=0.9, nesterov=True),
    "adam": lambda: fb.optim.adam(0.1),
    "adamw": lambda: fb.optim.adamw(0.1, weight_decay=0.1),
    "rmsprop": lambda: fb.optim.rmsprop(0.1, momentum=0.5),
    "adagrad": lambda: fb.optim.adagrad(0.1),
    "clip+adam": lambda: fb.optim.chain(fb.optim.clip_by_global_norm(1.0), fb.optim.adam(0.1)),
    "scheduled": lambda: fb.optim.sgd(fb.optim.schedules.cosine_decay(0.1, 10), momentum=0.5),
}


P = ([[1.0, -2.0]], [0.5])
G1 = ([[0.5, -1.0]], [2.0])
G2 = ([[-1.0, 0.25]], [1.0])


def pair(wb: tuple, dtype: Any = np.float64) -> Pair:
    return Pair(np.array(wb[0], dtype), np.array(wb[1], dtype))


def flat(tree: Any) -> list[float]:
    """All elements of all leaves as Python floats, in tree order: ``[w00, w01, b0]``."""
    return [float(x) for leaf in fb.tree.leaves(tree) for x in np.ravel(leaf)]


def sign(x: float) -> float:
    return math.copysign(1.0, x)


def run(opt: fb.optim.Optimizer, params: Any, grads_seq: list) -> tuple[list, Any]:
    """Apply ``opt`` to each grads in turn; return the list of params after each step."""
    state = opt.init(params)
    out = []
    for grads in grads_seq:
        params, state = fb.optim.step(opt, params, grads, state)
        out.append(params)
    return out, state
