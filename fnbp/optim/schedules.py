"""Learning-rate schedules: plain functions ``schedule(step) -> float``.

``step`` counts the updates made so far: the first update uses ``schedule(0)``.
Values are Python floats, so float32 params stay float32. Pass a schedule
anywhere a ``learning_rate`` is taken:

>>> import fnbp as fb
>>> lr = fb.optim.schedules.linear_warmup(0.1, 10, after=fb.optim.schedules.cosine_decay(0.1, 90))
>>> [round(lr(n), 4) for n in (0, 5, 10, 55, 100, 200)]
[0.0, 0.05, 0.1, 0.05, 0.0, 0.0]
>>> opt = fb.optim.adam(lr)
"""

from __future__ import annotations

import bisect
import math
import operator
from collections.abc import Callable, Sequence

__all__ = [
    "constant",
    "step_decay",
    "exponential_decay",
    "cosine_decay",
    "linear_warmup",
    "piecewise_constant",
]

Schedule = Callable[[int], float]
"""A learning-rate schedule: the value to use at update ``step`` (0 for the first)."""


def _finite(name: str, value: float) -> float:
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return v


def _count(name: str, value: int, minimum: int) -> int:
    try:
        n = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {value!r}") from None
    if n < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {n}")
    return n


def _step(step: int) -> int:
    return _count("schedule step", step, 0)


def constant(value: float) -> Schedule:
    """``value`` at every step."""
    value = _finite("value", value)

    def schedule(step: int) -> float:
        _step(step)
        return value

    return schedule


def step_decay(init_value: float, decay_rate: float, step_size: int) -> Schedule:
    """``init_value * decay_rate ** (step // step_size)``: a drop every ``step_size`` steps."""
    init_value = _finite("init_value", init_value)
    decay_rate = _finite("decay_rate", decay_rate)
    if decay_rate < 0:
        raise ValueError(f"decay_rate must be >= 0, got {decay_rate}")
    step_size = _count("step_size", step_size, 1)

    def schedule(step: int) -> float:
        return init_value * decay_rate ** (_step(step) // step_size)

    return schedule


def exponential_decay(
    init_value: float, decay_rate: float, decay_steps: int, staircase: bool = False
) -> Schedule:
    """``init_value * decay_rate ** (step / decay_steps)``.

    With ``staircase=True`` the exponent is ``step // decay_steps`` (then this is
    :func:`step_decay`). The same formula as optax and Keras' ``ExponentialDecay``.
    """
    init_value = _finite("init_value", init_value)
    decay_rate = _finite("decay_rate", decay_rate)
    if decay_rate < 0:
        raise ValueError(f"decay_rate must be >= 0, got {decay_rate}")
    decay_steps = _count("decay_steps", decay_steps, 1)

    def schedule(step: int) -> float:
        step = _step(step)
        exponent = step // decay_steps if staircase else step / decay_steps
        return init_value * decay_rate**exponent

    return schedule


def cosine_decay(init_value: float, decay_steps: int, alpha: float = 0.0) -> Schedule:
    """Cosine from ``init_value`` down to ``alpha * init_value`` at ``decay_steps``, then flat::

        c = 0.5 * (1 + cos(pi * min(step, decay_steps) / decay_steps))
        value = init_value * ((1 - alpha) * c + alpha)

    optax's ``cosine_decay_schedule`` convention (Loshchilov & Hutter's SGDR
    without restarts; PyTorch's ``CosineAnnealingLR`` takes an absolute ``eta_min``).
    """
    init_value = _finite("init_value", init_value)
    decay_steps = _count("decay_steps", decay_steps, 1)
    alpha = _finite("alpha", alpha)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")

    def schedule(step: int) -> float:
        t = min(_step(step), decay_steps) / decay_steps
        return init_value * ((1.0 - alpha) * 0.5 * (1.0 + math.cos(math.pi * t)) + alpha)

    return schedule


def linear_warmup(peak_value: float, warmup_steps: int, after: Schedule | None = None) -> Schedule:
    """From 0 up to ``peak_value`` linearly, then ``after`` (or ``peak_value`` forever)::

        value = peak_value * step / warmup_steps      for step < warmup_steps
              = after(step - warmup_steps)            afterwards (peak_value if after is None)

    So the very first update (step 0) has learning rate 0.
    """
    peak_value = _finite("peak_value", peak_value)
    warmup_steps = _count("warmup_steps", warmup_steps, 0)
    if after is not None and not callable(after):
        raise TypeError(f"after must be a schedule (a function of the step), got {after!r}")

    def schedule(step: int) -> float:
        step = _step(step)
        if step < warmup_steps:
            return peak_value * step / warmup_steps
        return peak_value if after is None else float(after(step - warmup_steps))

    return schedule


def piecewise_constant(boundaries: Sequence[int], values: Sequence[float]) -> Schedule:
    """``values[i]`` for ``boundaries[i-1] <= step < boundaries[i]``.

    ``values[0]`` applies before ``boundaries[0]``, ``values[-1]`` from
    ``boundaries[-1]`` on; ``len(values) == len(boundaries) + 1`` and the
    boundaries increase strictly. (optax's ``piecewise_constant_schedule`` takes
    multiplicative scales instead of values.)
    """
    bounds = [_count(f"boundaries[{i}]", b, 0) for i, b in enumerate(boundaries)]
    vals = [_finite(f"values[{i}]", v) for i, v in enumerate(values)]
    if len(vals) != len(bounds) + 1:
        raise ValueError(
            f"piecewise_constant needs one more value than boundaries, "
            f"got {len(vals)} values and {len(bounds)} boundaries"
        )
    for i in range(1, len(bounds)):
        if bounds[i] <= bounds[i - 1]:
            raise ValueError(f"boundaries must increase strictly, got {bounds}")

    def schedule(step: int) -> float:
        return vals[bisect.bisect_right(bounds, _step(step))]

    return schedule
