"""Closed forms for the first steps of every optimizer, on the tiny ``Pair`` record."""

from __future__ import annotations

import math

import numpy as np
import pytest

import fnbp as fb
from fnbp import optim

from ._helpers import G1, G2, P, Pair, flat, pair, run, sign

p0, g1, g2 = flat(pair(P)), flat(pair(G1)), flat(pair(G2))
LR = 0.1


def test_sgd_one_step_closed_form():
    (p1,), _ = run(optim.sgd(LR), pair(P), [pair(G1)])
    assert isinstance(p1, Pair)
    assert flat(p1) == pytest.approx([1.0 - 0.05, -2.0 + 0.1, 0.5 - 0.2], rel=1e-15)


def test_sgd_momentum_two_steps():
    (p1, p2), state = run(optim.sgd(LR, momentum=0.9), pair(P), [pair(G1), pair(G2)])
    v1 = g1  # first step: v = g
    v2 = [0.9 * a + b for a, b in zip(v1, g2, strict=True)]
    assert flat(p1) == pytest.approx([p - LR * v for p, v in zip(p0, v1, strict=True)])
    assert flat(p2) == pytest.approx([p - LR * v for p, v in zip(flat(p1), v2, strict=True)])
    assert flat(state[0].momentum) == pytest.approx(v2)
    # b leaf by hand: v2 = 0.9 * 2 + 1 = 2.8, p2 = 0.5 - 0.2 - 0.28
    assert float(p2.b[0]) == pytest.approx(0.02)


def test_nesterov_two_steps():
    (p1, p2), _ = run(optim.sgd(LR, 0.9, nesterov=True), pair(P), [pair(G1), pair(G2)])
    v2 = [0.9 * a + b for a, b in zip(g1, g2, strict=True)]
    u1 = [g + 0.9 * g for g in g1]
    u2 = [g + 0.9 * v for g, v in zip(g2, v2, strict=True)]
    assert flat(p1) == pytest.approx([p - LR * u for p, u in zip(p0, u1, strict=True)])
    assert flat(p2) == pytest.approx([p - LR * u for p, u in zip(flat(p1), u2, strict=True)])
    assert float(p2.b[0]) == pytest.approx(0.5 - 0.1 * 3.8 - 0.1 * (1.0 + 0.9 * 2.8))


def test_nesterov_needs_momentum():
    with pytest.raises(ValueError, match="nesterov"):
        optim.sgd(LR, nesterov=True)


def _adam_two_steps(lr: float, b1=0.9, b2=0.999, eps=1e-8) -> tuple[list, list]:
    """Adam's first two directions, by the textbook formula, in plain floats."""
    d1 = [g / (abs(g) + eps) for g in g1]
    d2 = []
    for a, b in zip(g1, g2, strict=True):
        m = b1 * (1 - b1) * a + (1 - b1) * b
        v = b2 * (1 - b2) * a * a + (1 - b2) * b * b
        d2.append((m / (1 - b1**2)) / (math.sqrt(v / (1 - b2**2)) + eps))
    return d1, d2


def test_adam_two_steps():
    (p1, p2), state = run(optim.adam(LR), pair(P), [pair(G1), pair(G2)])
    # first step ~ -lr * sign(g)
    assert flat(p1) == pytest.approx([p - LR * sign(g) for p, g in zip(p0, g1, strict=True)])
    d1, d2 = _adam_two_steps(LR)
    assert flat(p1) == pytest.approx([p - LR * d for p, d in zip(p0, d1, strict=True)], rel=1e-14)
    assert flat(p2) == pytest.approx([p - LR * d for p, d in zip(flat(p1), d2, strict=True)])
    # the b leaf worked out: m = 0.28, v = 0.004996; m_hat / sqrt(v_hat) = 0.932179...
    assert float(p2.b[0]) == pytest.approx(
        0.4 - 0.1 * (0.28 / 0.19) / math.sqrt(0.004996 / 0.001999)
    )
    adam_state = state[0]
    assert int(adam_state.count) == 2
    assert flat(adam_state.mu) == pytest.approx(
        [0.09 * a + 0.1 * b for a, b in zip(g1, g2, strict=True)]
    )


def _adamw_expected(decay_w: bool, decay_b: bool, wd: float = 0.5) -> list:
    d1, _ = _adam_two_steps(LR)
    on = [decay_w, decay_w, decay_b]
    return [p - LR * (d + (wd * p if o else 0.0)) for p, d, o in zip(p0, d1, on, strict=True)]


def test_adamw_decays_matrices_only_by_default():
    (p1,), _ = run(optim.adamw(LR, weight_decay=0.5), pair(P), [pair(G1)])
    assert flat(p1) == pytest.approx(_adamw_expected(True, False))
    # w[0, 0] by hand: 1 - 0.1 * (1 + 0.5 * 1) = 0.85; the bias is plain Adam: 0.5 - 0.1
    assert float(p1.w[0, 0]) == pytest.approx(0.85)
    assert float(p1.b[0]) == pytest.approx(0.4)


@pytest.mark.parametrize(
    ("mask", "on"),
    [
        (Pair(np.False_, np.True_), (False, True)),
        (lambda params: fb.tree.map(lambda p: True, params), (True, True)),
        (lambda params: Pair(False, False), (False, False)),
    ],
)
def test_adamw_mask(mask, on):
    (p1,), _ = run(optim.adamw(LR, weight_decay=0.5, mask=mask), pair(P), [pair(G1)])
    assert flat(p1) == pytest.approx(_adamw_expected(*on))


def test_adamw_mask_on_a_dict():
    params = {"w": np.array([[2.0]]), "b": np.array([2.0])}
    grads = {"w": np.array([[1.0]]), "b": np.array([1.0])}
    opt = optim.adamw(LR, weight_decay=0.5, mask={"w": False, "b": True})
    (p1,), _ = run(opt, params, [grads])
    assert float(p1["w"][0, 0]) == pytest.approx(1.9)
    assert float(p1["b"][0]) == pytest.approx(2.0 - 0.1 * (1.0 + 1.0))


def test_adamw_needs_params():
    opt = optim.adamw(LR)
    with pytest.raises(ValueError, match="params"):
        opt.update(pair(G1), opt.init(pair(P)))


def test_rmsprop_two_steps():
    lr, eps = 0.01, 1e-8
    (p1, p2), state = run(optim.rmsprop(lr), pair(P), [pair(G1), pair(G2)])
    v1 = [0.1 * g * g for g in g1]
    v2 = [0.9 * v + 0.1 * g * g for v, g in zip(v1, g2, strict=True)]
    u1 = [-lr * g / (math.sqrt(v) + eps) for g, v in zip(g1, v1, strict=True)]
    u2 = [-lr * g / (math.sqrt(v) + eps) for g, v in zip(g2, v2, strict=True)]
    assert flat(p1) == pytest.approx([p + u for p, u in zip(p0, u1, strict=True)])
    assert flat(p2) == pytest.approx([p + u for p, u in zip(flat(p1), u2, strict=True)])
    assert flat(state[0].nu) == pytest.approx(v2)
    # first step moves by lr / sqrt(0.1) against the gradient's sign
    assert float(p1.b[0]) == pytest.approx(0.5 - 0.01 / math.sqrt(0.1))


def test_rmsprop_momentum_two_steps():
    lr, mom = 0.01, 0.5
    (p1, p2), _ = run(optim.rmsprop(lr, momentum=mom), pair(P), [pair(G1), pair(G2)])
    v1 = [0.1 * g * g for g in g1]
    v2 = [0.9 * v + 0.1 * g * g for v, g in zip(v1, g2, strict=True)]
    d1 = [g / (math.sqrt(v) + 1e-8) for g, v in zip(g1, v1, strict=True)]
    d2 = [g / (math.sqrt(v) + 1e-8) for g, v in zip(g2, v2, strict=True)]
    buf2 = [mom * a + b for a, b in zip(d1, d2, strict=True)]
    assert flat(p2) == pytest.approx(
        [p - lr * (a + b) for p, a, b in zip(p0, d1, buf2, strict=True)]
    )
    assert flat(p1) == pytest.approx([p - lr * d for p, d in zip(p0, d1, strict=True)])


def test_adagrad_two_steps():
    lr = 0.5
    (p1, p2), state = run(optim.adagrad(lr), pair(P), [pair(G1), pair(G2)])
    s2 = [a * a + b * b for a, b in zip(g1, g2, strict=True)]
    expected = [p - lr * sign(g) for p, g in zip(p0, g1, strict=True)]
    assert flat(p1) == pytest.approx(expected, abs=1e-8)
    assert flat(p2) == pytest.approx(
        [p - lr * g / (math.sqrt(s) + 1e-8) for p, g, s in zip(flat(p1), g2, s2, strict=True)]
    )
    assert flat(state[0].sum_of_squares) == pytest.approx(s2)
    assert float(p2.b[0]) == pytest.approx(0.5 - 0.5 - 0.5 / math.sqrt(5.0), abs=1e-8)


def test_schedule_as_learning_rate_is_used_step_by_step():
    lrs = [0.5, 0.25, 0.125, 0.0]
    opt = optim.sgd(lambda n: lrs[n])
    params, state = pair(P), None
    state = opt.init(params)
    for n, lr in enumerate(lrs):
        updates, state = opt.update(pair(G1), state, params)
        assert flat(updates) == pytest.approx([-lr * g for g in g1], abs=0.0)
        assert int(state[1].count) == n + 1


def test_schedule_in_adam_and_step_decay():
    sched = optim.schedules.step_decay(0.1, 0.5, 2)
    opt = optim.adam(sched)
    state = opt.init(pair(P))
    for n in range(5):
        updates, state = opt.update(pair(G1), state)
        # a constant gradient keeps Adam's direction at g / (|g| + eps) ~ sign(g)
        expected = [-0.1 * 0.5 ** (n // 2) * sign(g) for g in g1]
        assert flat(updates) == pytest.approx(expected, rel=1e-7)


def test_negative_scheduled_learning_rate_is_refused_when_used():
    opt = optim.sgd(lambda n: 0.1 if n == 0 else -0.1)
    state = opt.init(pair(P))
    _, state = opt.update(pair(G1), state)
    with pytest.raises(ValueError, match="step 1"):
        opt.update(pair(G1), state)


@pytest.mark.parametrize(
    "make",
    [
        lambda: optim.sgd(-0.1),
        lambda: optim.sgd(float("nan")),
        lambda: optim.sgd(0.1, momentum=1.0),
        lambda: optim.sgd(0.1, momentum=-0.5),
        lambda: optim.adam(0.1, b1=1.0),
        lambda: optim.adam(0.1, b1=-0.1),
        lambda: optim.adam(0.1, b2=1.5),
        lambda: optim.adam(0.1, eps=-1e-8),
        lambda: optim.adamw(0.1, weight_decay=-1.0),
        lambda: optim.rmsprop(0.1, decay=1.0),
        lambda: optim.rmsprop(0.1, momentum=1.2),
        lambda: optim.adagrad(-1.0),
        lambda: optim.clip_by_global_norm(0.0),
        lambda: optim.clip_by_global_norm(-1.0),
    ],
)
def test_bad_hyperparameters_raise_value_error(make):
    with pytest.raises(ValueError):
        make()


def test_learning_rate_of_wrong_type():
    with pytest.raises(ValueError, match="learning_rate must be a finite real number"):
        optim.sgd("0.1")
    with pytest.raises(ValueError, match="learning_rate"):
        optim.adam(np.array([0.1, 0.2]))


@pytest.mark.parametrize(
    ("make", "denominator"),
    [
        (lambda: optim.adam(LR, eps=0.5), lambda g: abs(g) + 0.5),
        (lambda: optim.rmsprop(LR, eps=0.5), lambda g: math.sqrt(0.1 * g * g) + 0.5),
        (lambda: optim.adagrad(LR, eps=0.5), lambda g: abs(g) + 0.5),
    ],
    ids=["adam", "rmsprop", "adagrad"],
)
def test_eps_is_added_outside_the_square_root(make, denominator):
    (p1,), _ = run(make(), pair(P), [pair(G1)])
    expected = [p - LR * g / denominator(g) for p, g in zip(p0, g1, strict=True)]
    assert flat(p1) == pytest.approx(expected)


@pytest.mark.parametrize("momentum", [None, [], np.ones(2), 1.0, -0.1, "a"], ids=repr)
@pytest.mark.parametrize("make", [optim.sgd, optim.rmsprop])
def test_momentum_is_checked_before_it_is_used(make, momentum):
    with pytest.raises(ValueError, match=r"momentum must be a finite real number in \[0, 1\)"):
        make(0.1, momentum=momentum)
