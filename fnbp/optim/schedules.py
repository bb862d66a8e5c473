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
from collections.abc import Callable, Sequence

from ..validation import check_callable, check_int, check_real, check_sequence

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


def _step(step: int) -> int:
    return check_int("schedule", "step", step, low=0)


def _power(owner: str, init_value: float, rate: float, exponent: float, step: int) -> float:
    """``init_value * rate ** exponent``, or a ValueError when it overflows."""
    try:
        value = init_value * rate**exponent
    except OverflowError:
        value = math.inf
    if not math.isfinite(value):
        raise ValueError(
            f"{owner}: the value overflows at step {step} (decay_rate > 1 grows without bound)"
        )
    return value


def constant(value: float) -> Schedule:
    """``value`` at every step."""
    value = check_real("constant", "value", value)

    def schedule(step: int) -> float:
        _step(step)
        return value

    return schedule


def step_decay(init_value: float, decay_rate: float, step_size: int) -> Schedule:
    """``init_value * decay_rate ** (step // step_size)``: a drop every ``step_size`` steps."""
    init_value = check_real("step_decay", "init_value", init_value)
    decay_rate = check_real("step_decay", "decay_rate", decay_rate, low=0.0)
    step_size = check_int("step_decay", "step_size", step_size, low=1)

    def schedule(step: int) -> float:
        step = _step(step)
        return _power("step_decay", init_value, decay_rate, step // step_size, step)

    return schedule


def exponential_decay(
    init_value: float, decay_rate: float, decay_steps: int, staircase: bool = False
) -> Schedule:
    """``init_value * decay_rate ** (step / decay_steps)``.

    With ``staircase=True`` the exponent is ``step // decay_steps`` (then this is
    :func:`step_decay`). The same formula as optax and Keras' ``ExponentialDecay``.
    """
    init_value = check_real("exponential_decay", "init_value", init_value)
    decay_rate = check_real("exponential_decay", "decay_rate", decay_rate, low=0.0)
    decay_steps = check_int("exponential_decay", "decay_steps", decay_steps, low=1)

    def schedule(step: int) -> float:
        step = _step(step)
        exponent = step // decay_steps if staircase else step / decay_steps
        return _power("exponential_decay", init_value, decay_rate, exponent, step)

    return schedule


def cosine_decay(init_value: float, decay_steps: int, alpha: float = 0.0) -> Schedule:
    """Cosine from ``init_value`` down to ``alpha * init_value`` at ``decay_steps``, then flat::

        c = 0.5 * (1 + cos(pi * min(step, decay_steps) / decay_steps))
        value = init_value * ((1 - alpha) * c + alpha)

    optax's ``cosine_decay_schedule`` convention (Loshchilov & Hutter's SGDR
    without restarts; PyTorch's ``CosineAnnealingLR`` takes an absolute ``eta_min``).
    """
    init_value = check_real("cosine_decay", "init_value", init_value)
    decay_steps = check_int("cosine_decay", "decay_steps", decay_steps, low=1)
    alpha = check_real("cosine_decay", "alpha", alpha, low=0.0, high=1.0)

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
    peak_value = check_real("linear_warmup", "peak_value", peak_value)
    warmup_steps = check_int("linear_warmup", "warmup_steps", warmup_steps, low=0)
    if after is not None:
        check_callable("linear_warmup", "after", after, "a schedule (a function of the step)")

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
    boundaries = check_sequence("piecewise_constant", "boundaries", boundaries, "steps")
    values = check_sequence("piecewise_constant", "values", values, "learning rates")
    bounds = [
        check_int("piecewise_constant", f"boundaries[{i}]", b, low=0)
        for i, b in enumerate(boundaries)
    ]
    vals = [check_real("piecewise_constant", f"values[{i}]", v) for i, v in enumerate(values)]
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
