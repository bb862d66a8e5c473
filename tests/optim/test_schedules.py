"""Every schedule at several steps against its closed form, and its argument checks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fnbp.optim import schedules as S


def values(schedule, steps):
    out = [schedule(n) for n in steps]
    assert all(type(v) is float for v in out)
    return out


def test_constant():
    assert values(S.constant(0.3), [0, 1, 1000]) == [0.3, 0.3, 0.3]


def test_step_decay():
    sched = S.step_decay(1.0, 0.5, 3)
    assert values(sched, [0, 2, 3, 5, 6, 9]) == [1.0, 1.0, 0.5, 0.5, 0.25, 0.125]


def test_exponential_decay_smooth_and_staircase():
    sched = S.exponential_decay(2.0, 0.1, 10)
    assert values(sched, [0, 5, 10, 20]) == pytest.approx([2.0, 2.0 * 0.1**0.5, 0.2, 0.02])
    stairs = S.exponential_decay(2.0, 0.1, 10, staircase=True)
    assert values(stairs, [0, 9, 10, 19, 20]) == pytest.approx([2.0, 2.0, 0.2, 0.2, 0.02])


def test_cosine_decay():
    sched = S.cosine_decay(1.0, 100)
    assert values(sched, [0, 25, 50, 75, 100, 500]) == pytest.approx(
        [
            1.0,
            0.5 * (1 + math.cos(math.pi / 4)),
            0.5,
            0.5 * (1 + math.cos(0.75 * math.pi)),
            0.0,
            0.0,
        ],
        abs=1e-15,
    )
    floor = S.cosine_decay(2.0, 10, alpha=0.1)
    assert values(floor, [0, 5, 10, 11]) == pytest.approx([2.0, 2.0 * (0.9 * 0.5 + 0.1), 0.2, 0.2])


def test_linear_warmup():
    sched = S.linear_warmup(1.0, 4)
    assert values(sched, [0, 1, 2, 4, 100]) == [0.0, 0.25, 0.5, 1.0, 1.0]
    then = S.linear_warmup(1.0, 4, after=S.step_decay(1.0, 0.5, 2))
    assert values(then, [3, 4, 5, 6, 8]) == [0.75, 1.0, 1.0, 0.5, 0.25]
    assert S.linear_warmup(0.5, 0)(0) == 0.5


def test_piecewise_constant():
    sched = S.piecewise_constant([10, 20], [1.0, 0.5, 0.1])
    assert values(sched, [0, 9, 10, 19, 20, 10**6]) == [1.0, 1.0, 0.5, 0.5, 0.1, 0.1]
    assert S.piecewise_constant([], [0.3])(7) == 0.3


def test_numpy_integer_steps_are_fine():
    assert S.step_decay(1.0, 0.5, 1)(np.int64(2)) == 0.25
    assert S.piecewise_constant([1], [1.0, 2.0])(np.array(1)) == 2.0


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: S.piecewise_constant([10, 20], [1.0, 0.5]), "one more value"),
        (lambda: S.piecewise_constant([20, 10], [1.0, 0.5, 0.1]), "increase"),
        (lambda: S.piecewise_constant([10, 10], [1.0, 0.5, 0.1]), "increase"),
        (lambda: S.step_decay(1.0, 0.5, 0), "step_size"),
        (lambda: S.step_decay(1.0, -0.5, 2), "decay_rate"),
        (lambda: S.exponential_decay(1.0, 0.5, 0), "decay_steps"),
        (lambda: S.cosine_decay(1.0, 10, alpha=1.5), "alpha"),
        (lambda: S.cosine_decay(1.0, 0), "decay_steps"),
        (lambda: S.linear_warmup(1.0, -1), "warmup_steps"),
        (lambda: S.constant(float("inf")), "finite"),
    ],
)
def test_bad_arguments_raise_value_error(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_argument_types():
    with pytest.raises(ValueError, match="step_size must be an integer"):
        S.step_decay(1.0, 0.5, 2.5)
    with pytest.raises(ValueError, match="after must be a schedule"):
        S.linear_warmup(1.0, 5, after=0.1)


@pytest.mark.parametrize(
    "sched",
    [S.constant(1.0), S.step_decay(1.0, 0.5, 2), S.cosine_decay(1.0, 5), S.linear_warmup(1.0, 3)],
)
def test_bad_steps(sched):
    with pytest.raises(ValueError, match="step"):
        sched(-1)
    with pytest.raises(ValueError, match="step must be an integer"):
        sched(1.5)


@pytest.mark.parametrize(("boundaries", "values"), [(5, [0.1, 0.2]), ([5], 0.1), ("ab", [1, 2, 3])])
def test_piecewise_constant_needs_sequences(boundaries, values):
    with pytest.raises(ValueError, match=r"piecewise_constant: .* must be a list or tuple"):
        S.piecewise_constant(boundaries, values)


def test_exponential_growth_is_refused_where_it_overflows():
    with pytest.raises(ValueError, match="overflows at step 1000000"):
        S.exponential_decay(0.1, 1.5, 1)(10**6)
    assert S.exponential_decay(0.1, 0.5, 1)(10**6) == 0.0
