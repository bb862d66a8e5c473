"""Every optimizer minimises an ill-conditioned quadratic; Adam and SGD-momentum, Rosenbrock."""

from __future__ import annotations

import numpy as np
import pytest

from fnbp import optim
from fnbp.optim import schedules as S

A = np.array([[1.0, 100.0]])  # the diagonal of A: condition number 100


def quadratic_grad(params):
    return {"x": A * params["x"]}  # grad of 0.5 * x^T diag(A) x


QUADRATIC = {
    "sgd": lambda: optim.sgd(0.015),
    "momentum": lambda: optim.sgd(0.01, momentum=0.9),
    "nesterov": lambda: optim.sgd(0.01, momentum=0.9, nesterov=True),
    "adam": lambda: optim.adam(0.05),
    "adamw": lambda: optim.adamw(0.05, weight_decay=0.1),
    "rmsprop": lambda: optim.rmsprop(S.cosine_decay(0.05, 1000)),
    "rmsprop-momentum": lambda: optim.rmsprop(S.cosine_decay(0.02, 1000), momentum=0.5),
    "adagrad": lambda: optim.adagrad(0.5),
    "clip+sgd": lambda: optim.chain(optim.clip_by_global_norm(1.0), optim.sgd(0.015)),
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", QUADRATIC)
def test_quadratic_goes_to_zero(name, dtype):
    opt = QUADRATIC[name]()
    params = {"x": np.ones((1, 2), dtype)}
    state = opt.init(params)
    for _ in range(1000):
        params, state = optim.step(opt, params, quadratic_grad(params), state)
    assert params["x"].dtype == dtype
    assert np.abs(params["x"]).max() < 1e-4


def rosenbrock_grad(xy, a=1.0, b=100.0):
    x, y = xy
    return np.array([-2.0 * (a - x) - 4.0 * b * x * (y - x * x), 2.0 * b * (y - x * x)])


@pytest.mark.parametrize(
    "make",
    [
        lambda: optim.adam(0.02),
        lambda: optim.sgd(1e-3, momentum=0.9),
        lambda: optim.sgd(1e-3, momentum=0.9, nesterov=True),
        lambda: optim.chain(optim.clip_by_global_norm(10.0), optim.sgd(2e-3, momentum=0.9)),
    ],
    ids=["adam", "momentum", "nesterov", "clip+momentum"],
)
def test_rosenbrock_reaches_the_minimum(make):
    opt = make()
    xy = np.array([-1.2, 1.0])  # a bare array is a tree too
    state = opt.init(xy)
    for _ in range(3000):
        xy, state = optim.step(opt, xy, rosenbrock_grad(xy), state)
    assert np.abs(xy - 1.0).max() < 1e-2
