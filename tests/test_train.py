"""train_step hands its grads over to the optimizer (fnbp.core, "Handing gradients over")."""

from __future__ import annotations

import attrs
import numpy as np
import pytest

import fnbp as fb
from fnbp import optim

OPTIMIZERS = {
    "sgd": lambda: optim.sgd(0.1),
    "momentum": lambda: optim.sgd(0.1, momentum=0.9),
    "nesterov": lambda: optim.sgd(0.1, momentum=0.9, nesterov=True),
    "adam": lambda: optim.adam(0.01),
    "adamw": lambda: optim.adamw(0.01, weight_decay=0.1),
    "rmsprop": lambda: optim.rmsprop(0.01, momentum=0.5),
    "adagrad": lambda: optim.adagrad(0.1),
    "clip+sgd": lambda: optim.chain(optim.clip_by_global_norm(1.0), optim.sgd(0.1)),
}


def _net(key):
    k1, k2, k3, k4 = fb.random.split(key, 4)
    return fb.Serial(
        (
            fb.Embedding.init(k1, 7, 4),
            fb.Reshape((12,)),
            fb.Dense.init(k2, 12, 8),
            fb.LayerNorm.init(8),
            fb.ReLU(),
            fb.BatchNorm.init(8),
            fb.Dense.init(k3, 8, 6),
            fb.Tanh(),
            fb.Dense.init(k4, 6, 3),
        )
    )


def _data():
    ids = fb.random.generator(fb.random.key(5)).integers(0, 7, (10, 3))
    labels = fb.random.generator(fb.random.key(6)).integers(0, 3, 10)
    ids.flags.writeable = labels.flags.writeable = False
    return ids, labels


def _leaves(ts):
    return fb.tree.leaves((ts.params, ts.opt_state, ts.model_state))


def _run(opt, steps=3, handed=True):
    net = _net(fb.random.key(0))
    assert net.fresh_grads is handed
    ts = fb.TrainState.create(net, opt)
    x, y = _data()
    out = []
    for _ in range(steps):
        ts, value, pred = fb.train_step(ts, fb.softmax_cross_entropy, opt, x, y)
        out.append((ts, value, pred))
    return out


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_handing_grads_over_gives_the_same_bits(name, monkeypatch):
    handed = _run(OPTIMIZERS[name]())
    monkeypatch.setattr(fb.Serial, "fresh_grads", property(lambda self: False))
    plain = _run(OPTIMIZERS[name](), handed=False)
    for (ts_a, v_a, p_a), (ts_b, v_b, p_b) in zip(handed, plain, strict=True):
        assert v_a == v_b and np.array_equal(p_a, p_b)
        for a, b in zip(_leaves(ts_a), _leaves(ts_b), strict=True):
            assert a.dtype == b.dtype and np.array_equal(a, b) and not a.flags.writeable


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_nothing_a_caller_holds_ever_changes(name):
    """Every array train_step was given or gave back keeps its values through later steps."""
    opt = OPTIMIZERS[name]()
    ts = fb.TrainState.create(_net(fb.random.key(0)), opt)
    x, y = _data()
    seen = [(a, np.array(a)) for a in (x, y, *_leaves(ts))]
    for _ in range(3):
        ts, value, pred = fb.train_step(ts, fb.softmax_cross_entropy, opt, x, y)
        seen += [(a, np.array(a)) for a in (value, pred, *_leaves(ts))]
    assert all(np.array_equal(a, copy) for a, copy in seen)


GIVEN: list = []


@attrs.frozen
class Scale(fb.Layer):
    """A layer of your own that does not promise fresh grads, and remembers what it gave."""

    s: np.ndarray = fb.param()

    def vjp(self, x, need_g_x=True):
        def pullback(g_y):
            g_s = fb.frozen(np.sum(g_y * x, axis=0))
            GIVEN.append((g_s, g_s.copy()))
            return g_y * self.s, Scale(g_s)

        return x * self.s, pullback


def test_a_layer_that_does_not_promise_fresh_grads_keeps_them():
    GIVEN.clear()
    scale = Scale(np.ones(3))
    net = fb.Serial((fb.Dense.init(fb.random.key(0), 3, 3), scale))
    assert not net.fresh_grads
    opt = optim.sgd(0.1)
    ts = fb.TrainState.create(net, opt)
    x = np.ones((4, 3))
    for _ in range(2):
        ts, _, _ = fb.train_step(ts, fb.mse, opt, x, np.zeros((4, 3)))
    assert len(GIVEN) == 2
    assert all(np.array_equal(g, copy) for g, copy in GIVEN)
