"""Gradient transforms: the building blocks that :func:`~fnbp.optim.chain` composes.

Each is an :class:`~fnbp.optim.Optimizer` whose ``update`` maps grads to
updates (the per-array math lives in ``_leaf``). Their states are frozen
records: moment trees mirror the params, step counters are read-only 0-d int64
arrays, so a checkpoint saves a state like any other tree.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import numpy as np

from .. import tree, validation
from ..errors import DivergenceError, DTypeError
from ..record import counter, frozen, param
from . import _flat, _leaf
from .base import (
    EmptyState,
    Leaves,
    Optimizer,
    expect_state,
    handed,
    segments,
    state_leaves,
    state_tree,
    transform,
)
from .schedules import Schedule

__all__ = [
    "ScheduleState",
    "TraceState",
    "AdamState",
    "RmsState",
    "RssState",
    "scale",
    "scale_by_schedule",
    "scale_by_learning_rate",
    "trace",
    "scale_by_adam",
    "scale_by_rms",
    "scale_by_rss",
    "add_decayed_weights",
    "clip_by_global_norm",
]


def _zeros(params: Any) -> Any:
    """Read-only zeros shaped like ``params``, whose leaves must be float32 or float64."""

    def zeros(p: Any) -> np.ndarray:
        dtype = np.asarray(p).dtype
        if dtype not in validation.FLOAT_SET:
            raise DTypeError(f"optimizer.init: params must be float32 or float64, got {dtype}")
        return frozen(np.zeros(np.shape(p), dtype))

    return tree.map(zeros, params)


class _finite:
    """Turn an overflow or a 0/0 in a moment update into a DivergenceError with advice:
    float32 grads above ~1.8e19 have squares float32 cannot hold, and a second moment
    of inf would silently make that parameter's updates 0 forever. (A class, not a
    generator: it runs in every step.)"""

    __slots__ = ("errstate", "owner")

    def __init__(self, owner: str):
        self.owner = owner
        self.errstate = np.errstate(over="raise", invalid="raise", divide="raise")

    def __enter__(self) -> None:
        self.errstate.__enter__()

    def __exit__(self, kind: type | None, error: BaseException | None, trace: Any) -> None:
        self.errstate.__exit__(kind, error, trace)
        if kind is not None and issubclass(kind, FloatingPointError):
            raise DivergenceError(
                f"{self.owner}: the moments overflowed or divided 0 by 0 ({error}); the grads "
                "are too large for their dtype: clip them (fb.optim.clip_by_global_norm) or "
                "use a smaller learning rate (and eps > 0 if grads can be exactly 0)"
            ) from None


@attrs.frozen
class ScheduleState:
    """``count``: how many updates were made (0 before the first)."""

    count: np.ndarray = param(kind="int")


@attrs.frozen
class TraceState:
    """``momentum``: the velocity ``v``, a tree like the params."""

    momentum: Any


@attrs.frozen
class AdamState:
    """First moment ``mu`` and second moment ``nu`` (trees), and the ``count`` of updates."""

    mu: Any
    nu: Any
    count: np.ndarray = param(kind="int")


@attrs.frozen
class RmsState:
    """``nu``: the moving average of squared grads, a tree like the params."""

    nu: Any


@attrs.frozen
class RssState:
    """``sum_of_squares``: the sum of all squared grads so far (Adagrad)."""

    sum_of_squares: Any


def _stateless(fn: Callable[[Leaves, Leaves | None, Any], Leaves]) -> Optimizer:
    """A transform with no state: ``u = fn(g, p, like)`` on the leaf lists."""

    def rule(g: Leaves, state: Any, p: Leaves | None, like: Any) -> tuple[Leaves, Any]:
        expect_state(state, EmptyState, "a stateless transform")
        return fn(g, p, like), state

    return transform(lambda params: EmptyState(), rule, flat=True)


def _scaled(g: Leaves, factor: float) -> Leaves:
    return _leaf.scale_all(g, factor)


def scale(factor: float) -> Optimizer:
    """``updates = factor * grads`` (each leaf keeps its dtype). ``scale(-lr)`` is SGD."""
    factor = validation.check_real("scale", "factor", factor)
    return _stateless(lambda g, p, like: _scaled(g, factor))


def scale_by_schedule(schedule: Schedule) -> Optimizer:
    """``updates = schedule(count) * grads``, ``count = 0, 1, 2, ...`` on successive updates.

    The state is a :class:`ScheduleState`; the factor is taken as a Python float.
    """
    validation.check_callable("scale_by_schedule", "schedule", schedule, "a function of the step")

    def rule(g: Leaves, state: ScheduleState, p: Any, like: Any) -> tuple[Leaves, ScheduleState]:
        expect_state(state, ScheduleState, "scale_by_schedule")
        n = int(state.count)
        return _scaled(g, float(schedule(n))), ScheduleState(counter(n + 1))

    return transform(lambda params: ScheduleState(counter(0)), rule, flat=True)


def _checked_rate(schedule: Schedule) -> Schedule:
    def negated(n: int) -> float:
        value = schedule(n)
        return -validation.check_real(
            "learning-rate schedule", f"its value at step {n}", value, low=0.0
        )

    return negated


def scale_by_learning_rate(learning_rate: float | Schedule) -> Optimizer:
    """``updates = -learning_rate * grads``: the descent step closing every optimizer.

    ``learning_rate`` is a float ``>= 0`` (then this is ``scale(-lr)``, stateless)
    or a schedule ``step -> float`` (then ``scale_by_schedule``; step 0 is the
    first update). ``update`` leaves are ``np.multiply(g, -lr, dtype=g.dtype)``,
    so ``sgd(lr)`` reproduces :func:`fnbp.update` bit for bit.
    """
    if callable(learning_rate):
        return scale_by_schedule(_checked_rate(learning_rate))
    lr = validation.check_real("optimizer", "learning_rate", learning_rate, low=0.0)
    return scale(-lr)


def trace(momentum: float = 0.9, nesterov: bool = False) -> Optimizer:
    """Heavy-ball momentum: ``v = momentum * v + g``; ``updates = v``.

    With ``nesterov=True``, ``updates = g + momentum * v`` (the new ``v``).
    ``v`` starts at 0, so the first update is ``g``. This is PyTorch's SGD
    buffer (dampening 0) and optax's ``trace``; scikit-learn and Keras fold the
    learning rate into the velocity (``v = momentum * v - lr * g``), which
    differs when the learning rate changes over time.
    """
    momentum = validation.check_real(
        "trace", "momentum", momentum, low=0.0, high=1.0, high_open=True
    )
    nesterov = validation.check_bool("trace", "nesterov", nesterov)

    def rule(g: Leaves, state: TraceState, p: Any, like: Any) -> tuple[Leaves, TraceState]:
        expect_state(state, TraceState, "trace")
        v = state_leaves(state.momentum, g, "trace", like)
        out = [_leaf.trace(gi, vi, momentum, nesterov) for gi, vi in zip(g, v, strict=True)]
        return [u for u, _ in out], TraceState(
            state_tree(state.momentum, [v for _, v in out], like)
        )

    return transform(lambda params: TraceState(_zeros(params)), rule, flat=True)


def scale_by_adam(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> Optimizer:
    """Adam's direction, with bias correction (Kingma & Ba, 2015)::

        m = b1 m + (1 - b1) g           v = b2 v + (1 - b2) g^2       (from m = v = 0)
        m_hat = m / (1 - b1^t)          v_hat = v / (1 - b2^t)         (t = 1, 2, ...)
        updates = m_hat / (sqrt(v_hat) + eps)

    so the first update is ``g / (|g| + eps)`` ~ ``sign(g)``. ``eps`` outside the
    square root, as in PyTorch and optax; Keras and scikit-learn use the
    "epsilon hat" form ``m / (sqrt(v) + eps)`` with the corrections moved into
    the step size, which differs when ``v`` is tiny.
    """
    b1 = validation.check_real("scale_by_adam", "b1", b1, low=0.0, high=1.0, high_open=True)
    b2 = validation.check_real("scale_by_adam", "b2", b2, low=0.0, high=1.0, high_open=True)
    eps = validation.check_real("scale_by_adam", "eps", eps, low=0.0)

    def init(params: Any) -> AdamState:
        return AdamState(_zeros(params), _zeros(params), counter(0))

    def rule(g: Leaves, state: AdamState, p: Any, like: Any) -> tuple[Leaves, AdamState]:
        expect_state(state, AdamState, "scale_by_adam")
        t = int(state.count) + 1
        m = state_leaves(state.mu, g, "scale_by_adam", like)
        v = state_leaves(state.nu, g, "scale_by_adam", like)
        with _finite("scale_by_adam"):
            out = [_leaf.adam(*leaves, b1, b2, eps, t) for leaves in zip(g, m, v, strict=True)]
        mu = state_tree(state.mu, [o[1] for o in out], like)
        nu = state_tree(state.nu, [o[2] for o in out], like)
        return [o[0] for o in out], AdamState(mu, nu, counter(t))

    return transform(init, rule, flat=True)


def scale_by_rms(decay: float = 0.9, eps: float = 1e-8) -> Optimizer:
    """RMSprop's direction (Tieleman & Hinton, 2012)::

        v = decay * v + (1 - decay) * g^2      (from v = 0)
        updates = g / (sqrt(v) + eps)

    ``eps`` outside the square root, as in PyTorch; TensorFlow/Keras and optax
    put it inside (``g / sqrt(v + eps)``). PyTorch's default decay (``alpha``)
    is 0.99, Keras' (``rho``) 0.9.
    """
    decay = validation.check_real("scale_by_rms", "decay", decay, low=0.0, high=1.0, high_open=True)
    eps = validation.check_real("scale_by_rms", "eps", eps, low=0.0)

    def rule(g: Leaves, state: RmsState, p: Any, like: Any) -> tuple[Leaves, RmsState]:
        expect_state(state, RmsState, "scale_by_rms")
        v = state_leaves(state.nu, g, "scale_by_rms", like)
        with _finite("scale_by_rms"):
            out = [_leaf.rms(gi, vi, decay, eps) for gi, vi in zip(g, v, strict=True)]
        return [u for u, _ in out], RmsState(state_tree(state.nu, [v for _, v in out], like))

    return transform(lambda params: RmsState(_zeros(params)), rule, flat=True)


def scale_by_rss(eps: float = 1e-8) -> Optimizer:
    """Adagrad's direction (Duchi et al., 2011), root of the sum of squares::

        s = s + g^2      (from s = 0)
        updates = g / (sqrt(s) + eps)

    As PyTorch (``initial_accumulator_value=0``, eps outside the root); optax
    and TensorFlow start ``s`` at 0.1 and put eps inside.
    """
    eps = validation.check_real("scale_by_rss", "eps", eps, low=0.0)

    def rule(g: Leaves, state: RssState, p: Any, like: Any) -> tuple[Leaves, RssState]:
        expect_state(state, RssState, "scale_by_rss")
        s = state_leaves(state.sum_of_squares, g, "scale_by_rss", like)
        with _finite("scale_by_rss"):
            out = [_leaf.adagrad(gi, si, eps) for gi, si in zip(g, s, strict=True)]
        return [u for u, _ in out], RssState(
            state_tree(state.sum_of_squares, [s for _, s in out], like)
        )

    return transform(lambda params: RssState(_zeros(params)), rule, flat=True)


def _decay_flags(mask: Any, like: Any, params: Leaves) -> list[bool]:
    """One bool per leaf, in tree order: ``ndim >= 2`` by default, else from ``mask``."""
    if mask is None:
        return [np.ndim(p) >= 2 for p in params]
    chosen = mask(tree.unflatten(like, params)) if callable(mask) else mask
    flags: list[bool] = []
    tree.walk(lambda g, m: flags.append(_flag(m)), like, chosen)
    return flags


def _flag(m: Any) -> bool:
    return validation.check_bool("add_decayed_weights", "mask leaf", m)


def add_decayed_weights(weight_decay: float = 1e-2, mask: Any = None) -> Optimizer:
    """``updates = grads + weight_decay * params`` on the leaves ``mask`` selects.

    Followed by ``scale_by_learning_rate(lr)`` this is decoupled weight decay,
    ``p <- p - lr * (direction + weight_decay * p)``. ``mask`` is ``None``
    (decay leaves with ``ndim >= 2``: weight matrices, not biases), a tree of
    bools like the params, or a function ``params -> tree of bools``. To decay
    everything: ``mask=lambda params: fb.tree.map(lambda p: True, params)``.
    ``update`` needs ``params``.
    """
    weight_decay = validation.check_real(
        "add_decayed_weights", "weight_decay", weight_decay, low=0.0
    )

    def decay(g: Leaves, p: Leaves | None, like: Any) -> Leaves:
        if p is None:
            raise validation.fail(
                "add_decayed_weights", "params", "the params: update(grads, state, params)", None
            )
        if type(like) is _flat.Layout:  # the default mask needs only the leaves' shapes
            if mask is None:
                flags = [len(shape) >= 2 for shape in like.shapes]
            else:
                flags = _decay_flags(mask, like.tree, like.segments(p[0]))
            return [_decayed_flat(g[0], p[0], weight_decay, flags, like)]
        flags = _decay_flags(mask, like, p)
        triples = zip(g, p, flags, strict=True)
        return [_leaf.decayed(gi, pi, weight_decay, on)[0] for gi, pi, on in triples]

    return _stateless(decay)


def _decayed_flat(
    g: np.ndarray, p: np.ndarray, weight_decay: float, flags: list[bool], like: _flat.Layout
) -> np.ndarray:
    """:func:`_leaf.decayed` on the leaves ``flags`` selects, on one vector: ``g +
    weight_decay * p`` there, ``g`` elsewhere, computed into ``g`` when it is handed
    over (see :func:`~fnbp.optim.handed`), else into a copy. The same arithmetic
    element by element, so the same bits, one run of chosen leaves at a time."""
    u = g if handed(g) else g.copy()
    for start, stop in _runs(tuple(flags), like):
        u[start:stop] += np.multiply(p[start:stop], weight_decay)
    return u


_RUNS: dict[tuple, tuple[tuple[int, int], ...]] = {}


def _runs(flags: tuple[bool, ...], like: _flat.Layout) -> tuple[tuple[int, int], ...]:
    """The ``(start, stop)`` of each run of consecutive leaves ``flags`` selects, in the
    vector (cached: a network decays the same leaves at every step)."""
    key = (flags, like.bounds)
    runs = _RUNS.get(key)
    if runs is None:
        merged: list[list[int]] = []
        for (start, stop), on in zip(like.bounds, flags, strict=True):
            if on and merged and merged[-1][1] == start:
                merged[-1][1] = stop
            elif on:
                merged.append([start, stop])
        if len(_RUNS) >= 256:  # a cache, not a record of every network ever seen
            _RUNS.clear()
        runs = _RUNS[key] = tuple((a, b) for a, b in merged)
    return runs


def clip_by_global_norm(max_norm: float) -> Optimizer:
    """Rescale all grads together so their global norm is at most ``max_norm``::

        n = sqrt(sum over leaves of ||g||^2)
        updates = grads * (max_norm / n)   if n > max_norm,   else grads (unchanged)

    The same rule as optax and ``torch.nn.utils.clip_grad_norm_`` (which adds
    1e-6 to ``n`` and works in place).
    """
    max_norm = validation.check_real(
        "clip_by_global_norm", "max_norm", max_norm, low=0.0, low_open=True
    )

    def clip(g: Leaves, p: Any, like: Any) -> Leaves:
        if type(like) is _flat.Layout:  # leaf by leaf on one vector's squares: the same sums
            norm = tree.norm_of(segments(g, like), g[0])
        else:
            norm = tree.norm_of(g)
        return g if not norm > max_norm else _scaled(g, max_norm / norm)

    return _stateless(clip)
