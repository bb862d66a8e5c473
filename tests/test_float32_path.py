"""No silent float64 anywhere on a float32 training path.

A spy layer between every pair of layers records the dtype of each
activation going forward and of each gradient coming back; the loss value,
every grad leaf, the updated params and the optimizer state are checked too.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
import numpy as np
import pytest

import fnbp as fb

SEEN: list[tuple[str, np.dtype]] = []


@attrs.frozen
class Spy(fb.Layer):
    """Identity that records the dtypes flowing through it."""

    def vjp(self, x: np.ndarray, need_g_x: bool = True) -> tuple[np.ndarray, Callable]:
        SEEN.append(("forward", x.dtype))

        def pullback(g_y: np.ndarray) -> tuple[np.ndarray | None, Spy]:
            SEEN.append(("backward", g_y.dtype))
            return g_y, self

        return x, pullback


def _spied(layers: list) -> fb.Serial:
    out = []
    for layer in layers:
        out += [layer, Spy()]
    return fb.Serial(out)


def _mlp_layers(key: fb.random.Key) -> list:
    k1, k2, k3 = fb.random.split(key, 3)
    return [
        fb.Dense.init(k1, 6, 8),
        fb.Tanh(),
        fb.Dense.init(k2, 8, 8),
        fb.LeakyReLU(0.1),
        fb.Softplus(),
        fb.Dense.init(k3, 8, 3),
        fb.Sigmoid(),
    ]


@pytest.mark.parametrize("x_dtype", [np.float64, np.float32, np.int64, np.bool_])
@pytest.mark.parametrize("optimizer", [fb.optim.sgd(0.1), fb.optim.adam(1e-3)], ids=["sgd", "adam"])
def test_every_intermediate_of_a_float32_step_is_float32(x_dtype, optimizer):
    SEEN.clear()
    net = _spied(_mlp_layers(fb.random.key(0)))
    x = np.random.default_rng(0).normal(size=(5, 6)).astype(x_dtype)
    y = np.random.default_rng(1).random((5, 3))  # float64 target on purpose
    value, grads = fb.value_and_grad(net, fb.binary_cross_entropy, x, y)
    state = optimizer.init(net)
    new, state = fb.optim.step(optimizer, net, grads, state)
    assert SEEN and {dtype for _, dtype in SEEN} == {np.dtype(np.float32)}, SEEN
    assert np.asarray(value).dtype == np.float32
    for tree in (grads, new, state):  # sgd's state has no float leaves, adam's has moments
        floats = [leaf for leaf in fb.tree.leaves(tree) if leaf.dtype.kind == "f"]
        assert all(leaf.dtype == np.float32 for leaf in floats)
    assert fb.tree.leaves(grads) and fb.tree.leaves(new)


@pytest.mark.parametrize(
    "loss, target",
    [
        (fb.softmax_cross_entropy, np.array([0, 2, 1, 1, 0])),
        (fb.sigmoid_binary_cross_entropy, np.eye(3)[[0, 2, 1, 1, 0]]),
        (fb.mse, np.zeros((5, 3))),
    ],
)
def test_fit_keeps_a_float32_network_float32(loss, target):
    SEEN.clear()
    k1, k2 = fb.random.split(fb.random.key(2))
    net = _spied([fb.Dense.init(k1, 6, 8), fb.ReLU(), fb.Dense.init(k2, 8, 3)])
    x = np.random.default_rng(0).normal(size=(5, 6))  # float64 data, cast once
    net, history = fb.fit(
        net,
        loss,
        x,
        target,
        optimizer=fb.optim.adamw(1e-3),
        epochs=2,
        batch_size=2,
        key=fb.random.key(3),
        progress=False,
    )
    assert {dtype for _, dtype in SEEN} == {np.dtype(np.float32)}
    assert all(leaf.dtype == np.float32 for leaf in fb.tree.leaves(net))
    assert all(
        leaf.dtype.kind != "f" or leaf.dtype == np.float32
        for leaf in fb.tree.leaves(history.train_state.opt_state)
    )
