"""The contract: Optimizer, chain, apply_updates, step; purity, dtypes, a real network."""

from __future__ import annotations

import doctest
import importlib

import attrs
import numpy as np
import pytest

import fnbp as fb
from fnbp import optim

from ._helpers import G1, G2, OPTIMIZERS, P, Pair, flat, pair


def test_optimizer_is_a_frozen_record_of_two_functions_and_a_rule():
    opt = optim.sgd(0.1)
    assert [f.name for f in attrs.fields(optim.Optimizer)] == ["init", "update", "rule", "flat"]
    assert optim.Optimizer(opt.init, opt.update).rule is None  # a rule is optional
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        opt.init = None
    assert fb.tree.leaves(opt) == []  # static fields: not a tree of arrays


def test_apply_updates_keeps_param_dtype():
    params = {"w": np.ones(3, np.float32)}
    new = optim.apply_updates(params, {"w": np.full(3, 0.1, np.float64)})
    assert new["w"].dtype == np.float32
    assert new["w"].tolist() == [np.float32(1.1)] * 3
    assert not new["w"].flags.writeable  # fresh and read-only, like fb.update's


def test_apply_updates_checks_structure_and_shapes():
    with pytest.raises(fb.ShapeError, match=r"b: params have shape \(1,\)"):
        optim.apply_updates(pair(P), Pair(np.ones((1, 2)), np.ones((2, 1))))
    with pytest.raises(fb.StructureError, match=r"\['v'\]"):
        optim.apply_updates({"v": np.ones(2)}, {"v": (np.ones(2),)})


def test_step_is_update_then_apply():
    opt = optim.adam(0.1)
    state = opt.init(pair(P))
    updates, s1 = opt.update(pair(G1), state, pair(P))
    new, s2 = optim.step(opt, pair(P), pair(G1), state)
    assert flat(new) == flat(optim.apply_updates(pair(P), updates))
    assert flat(s1) == flat(s2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sgd_is_bit_identical_to_core_update(dtype):
    rng = np.random.default_rng(1)
    params = {
        "W": rng.normal(size=(3, 4)).astype(dtype),
        "b": rng.normal(size=4).astype(dtype),
        "s": np.array(0.5, dtype),
    }
    core, ours, opt = params, params, optim.sgd(0.0123)
    state = opt.init(params)
    for _ in range(4):
        grads = fb.tree.map(lambda p: rng.normal(size=p.shape).astype(dtype), params)
        core = fb.update(core, grads, learning_rate=0.0123)
        ours, state = optim.step(opt, ours, grads, state)
        for a, b in zip(fb.tree.leaves(core), fb.tree.leaves(ours), strict=True):
            assert a.dtype == b.dtype == dtype
            assert np.array_equal(a, b)


def _copy(tree):
    return [np.array(leaf, copy=True) for leaf in fb.tree.leaves(tree)]


def _same(tree, copies):
    return all(
        np.array_equal(a, b) and a.dtype == b.dtype
        for a, b in zip(fb.tree.leaves(tree), copies, strict=True)
    )


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_inputs_and_old_state_are_never_written(name):
    opt = OPTIMIZERS[name]()
    params = {"w": np.array(P[0]), "b": np.array(P[1])}  # writeable: a write would go unseen
    grads = {"w": np.array(G1[0]), "b": np.array(G1[1])}
    grads["b"].flags.writeable = False  # read-only: a write would raise
    params_copy, grads_copy = _copy(params), _copy(grads)
    state = opt.init(params)
    for _ in range(3):
        state_copy = _copy(state)
        updates, new_state = opt.update(grads, state, params)
        inputs = fb.tree.leaves(params) + fb.tree.leaves(grads) + fb.tree.leaves(state)
        assert not any(np.shares_memory(u, x) for u in fb.tree.leaves(updates) for x in inputs)
        assert _same(state, state_copy)
        assert _same(params, params_copy) and _same(grads, grads_copy)
        assert new_state is not state
        state = new_state


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_float32_stays_float32(name):
    opt = OPTIMIZERS[name]()
    params = pair(P, np.float32)
    state = opt.init(params)
    for grads in (pair(G1, np.float32), pair(G2, np.float32), pair(G1, np.float64)):
        updates, state = opt.update(grads, state, params)
        params = optim.apply_updates(params, updates)
        assert {leaf.dtype for leaf in fb.tree.leaves(params)} == {np.dtype(np.float32)}
        if grads.w.dtype == np.float32:
            assert {leaf.dtype for leaf in fb.tree.leaves(updates)} == {np.dtype(np.float32)}
        for leaf in fb.tree.leaves(state):
            assert leaf.dtype in (np.float32, np.int64), leaf.dtype


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_same_inputs_give_identical_bits(name):
    def trajectory():
        opt = OPTIMIZERS[name]()
        params, state = pair(P, np.float32), None
        state = opt.init(params)
        for grads in (pair(G1, np.float32), pair(G2, np.float32)) * 3:
            params, state = optim.step(opt, params, grads, state)
        return fb.tree.leaves(params) + fb.tree.leaves(state)

    first, second = trajectory(), trajectory()
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))


AND_X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
AND_Y = np.array([[0], [0], [0], [1]])


def test_adam_on_a_real_network():
    net = fb.mlp(fb.random.key(0), [2, 8, 1], output=fb.Sigmoid())
    opt = optim.adam(1e-2)
    state = opt.init(net)
    assert isinstance(state[0].mu, fb.Serial)
    fb.tree.assert_same_structure(state[0].mu, net)
    fb.tree.assert_same_structure(state[0].nu, net)
    loss0, grads = fb.value_and_grad(net, fb.binary_cross_entropy, AND_X, AND_Y)
    new, state = optim.step(opt, net, grads, state)
    assert isinstance(new, fb.Serial)
    fb.tree.assert_same_structure(new, net)
    fb.tree.assert_same_structure(state[0].mu, net)
    assert not fb.tree.allclose(new, net)
    assert all(leaf.dtype == np.float32 for leaf in fb.tree.leaves(new))
    for _ in range(150):
        loss, grads = fb.value_and_grad(new, fb.binary_cross_entropy, AND_X, AND_Y)
        new, state = optim.step(opt, new, grads, state)
    assert loss < 0.5 * loss0
    assert np.array_equal(fb.forward(new, AND_X) > 0.5, AND_Y.astype(bool))


def test_sgd_matches_core_update_on_a_real_network():
    net = fb.mlp(fb.random.key(3), [2, 8, 1], output=fb.Sigmoid())
    core, ours, opt = net, net, optim.sgd(0.5)
    state = opt.init(net)
    for _ in range(5):
        _, grads = fb.value_and_grad(core, fb.binary_cross_entropy, AND_X, AND_Y)
        core = fb.update(core, grads, learning_rate=0.5)
        ours, state = optim.step(opt, ours, grads, state)
    assert all(
        np.array_equal(a, b)
        for a, b in zip(fb.tree.leaves(core), fb.tree.leaves(ours), strict=True)
    )


def test_adamw_on_a_network_decays_weights_not_biases():
    net = fb.mlp(fb.random.key(0), [2, 8, 1])
    zero = fb.tree.zeros_like(net)
    new, _ = optim.step(optim.adamw(0.1, weight_decay=0.5), net, zero, optim.adamw(0.1).init(net))
    dense = new.layers[0]
    assert np.allclose(dense.W, net.layers[0].W * (1 - 0.1 * 0.5))
    assert np.array_equal(dense.b, net.layers[0].b)


@pytest.mark.parametrize(
    "module", ["fnbp.optim", "fnbp.optim.base", "fnbp.optim.alias", "fnbp.optim.schedules"]
)
def test_docstring_examples_run(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_zero_dimensional_leaves_stay_arrays(name):
    opt = OPTIMIZERS[name]()
    params = {"x": np.array(1.5, np.float32), "M": np.ones((2, 2), np.float32)}
    grads = {"x": np.array(-2.0, np.float32), "M": np.ones((2, 2), np.float32)}
    state = opt.init(params)
    for _ in range(2):
        updates, state = opt.update(grads, state, params)
        params = optim.apply_updates(params, updates)
    for leaf in fb.tree.leaves(params) + fb.tree.leaves(updates) + fb.tree.leaves(state):
        assert isinstance(leaf, np.ndarray), type(leaf)
    assert params["x"].shape == () and params["x"].dtype == np.float32
    assert float(params["x"]) > 1.5  # moved against the negative gradient


def test_state_survives_a_checkpoint_and_training_resumes_bit_for_bit(tmp_path):
    from fnbp import checkpoint

    net = fb.mlp(fb.random.key(1), [2, 8, 1], output=fb.Sigmoid())
    opt = optim.chain(optim.clip_by_global_norm(1.0), optim.adam(optim.schedules.constant(0.01)))

    def train(params, state, n):
        for _ in range(n):
            _, grads = fb.value_and_grad(params, fb.binary_cross_entropy, AND_X, AND_Y)
            params, state = optim.step(opt, params, grads, state)
        return params, state

    params, state = train(net, opt.init(net), 3)
    checkpoint.save(tmp_path / "run", (params, state))
    loaded_params, loaded_state = checkpoint.load(
        tmp_path / "run.npz", like=(net, opt.init(net))
    ).tree
    assert loaded_state[1][0].count.dtype == np.int64 and int(loaded_state[1][0].count) == 3
    straight, _ = train(params, state, 3)
    resumed, _ = train(loaded_params, loaded_state, 3)
    assert all(
        np.array_equal(a, b)
        for a, b in zip(fb.tree.leaves(straight), fb.tree.leaves(resumed), strict=True)
    )


def test_a_plain_optimizer_without_a_rule_works_in_a_chain_and_in_step():
    halve = optim.Optimizer(
        lambda params: optim.EmptyState(),
        lambda grads, state, params=None: (fb.tree.map(lambda g: 0.5 * g, grads), state),
    )
    opt = optim.chain(halve, optim.sgd(1.0))
    params, grads = pair(P), pair(G1)
    new, _ = optim.step(opt, params, grads, opt.init(params))
    expected = fb.tree.map(lambda p, g: p - 0.5 * g, params, grads)
    assert fb.tree.allclose(new, expected, rtol=0, atol=0)


def test_step_never_writes_into_grads_state_or_params():
    net = fb.mlp(fb.random.key(0), [3, 4, 2])
    grads = fb.tree.map(lambda p: np.ones(p.shape, p.dtype), net)  # writeable: the caller's
    for opt in (
        optim.chain(optim.identity(), optim.identity()),
        optim.sgd(0.1, momentum=0.9),
        optim.adam(0.1),
    ):
        state = opt.init(net)
        before = [np.array(a) for a in fb.tree.leaves((net, grads, state))]
        new, new_state = optim.step(opt, net, grads, state)
        after = fb.tree.leaves((net, grads, state))
        assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))
        held = {id(a) for a in fb.tree.leaves((grads, new_state))}
        assert not held & {id(a) for a in fb.tree.leaves(new)}
        assert all(not a.flags.writeable for a in fb.tree.leaves((new, new_state)))


# ---------------------------------------------------------------- bad grads, params and states


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_integer_grads_are_taken_as_float64(name):
    opt = OPTIMIZERS[name]()
    params = {"w": np.ones(3)}
    new, _ = optim.step(opt, params, {"w": np.ones(3, int)}, opt.init(params))
    assert new["w"].dtype == np.float64 and np.isfinite(new["w"]).all()


@pytest.mark.parametrize("name", list(OPTIMIZERS))
@pytest.mark.parametrize("dtype", [np.float16, complex, object, "U3"], ids=str)
def test_grads_of_other_dtypes_are_a_dtype_error(name, dtype):
    opt = OPTIMIZERS[name]()
    params = {"w": np.ones(3)}
    with pytest.raises(fb.DTypeError, match=r"\['w'\].* must be numeric"):
        optim.step(opt, params, {"w": np.ones(3).astype(dtype)}, opt.init(params))


def test_integer_params_are_a_dtype_error():
    with pytest.raises(fb.DTypeError, match="params must be float32 or float64"):
        optim.apply_updates({"w": np.ones(2, int)}, {"w": np.ones(2)})
    with pytest.raises(fb.DTypeError, match=r"optimizer.init: params must be float32 or float64"):
        optim.adam(0.1).init({"w": np.ones(2, int)})


@pytest.mark.parametrize(
    ("made_by", "used_with"), [("adam", "sgd"), ("sgd", "adam"), ("momentum", "rmsprop")]
)
def test_a_state_from_another_optimizer_is_a_structure_error(made_by, used_with):
    params = {"w": np.ones(3)}
    state = OPTIMIZERS[made_by]().init(params)
    with pytest.raises(fb.StructureError, match=r"states? .*from its own init"):
        optim.step(OPTIMIZERS[used_with](), params, {"w": np.ones(3)}, state)


# ---------------------------------------------------------------- handed grads (train_step's)


def _frozen_grads(net, seed):
    """Grads as a layer makes them: new arrays of their own memory, frozen."""
    keys = fb.random.split(fb.random.key(seed), len(fb.tree.leaves(net)))
    leaves = [
        fb.frozen(fb.random.normal(k, p.shape, dtype=p.dtype))
        for k, p in zip(keys, fb.tree.leaves(net), strict=True)
    ]
    return fb.tree.unflatten(net, leaves)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_handed_grads_give_the_same_bits(name):
    net = fb.mlp(fb.random.key(0), [3, 4, 2])
    opt = OPTIMIZERS[name]()
    plain = handed = net
    s_plain = s_handed = opt.init(net)
    for t in range(3):
        plain, s_plain = optim.step(opt, plain, _frozen_grads(net, t), s_plain)
        handed, s_handed = optim.step(
            opt, handed, _frozen_grads(net, t), s_handed, grads_handed=True
        )
        for a, b in zip(
            fb.tree.leaves((plain, s_plain)), fb.tree.leaves((handed, s_handed)), strict=True
        ):
            assert a.dtype == b.dtype and np.array_equal(a, b)
            assert not b.flags.writeable


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_handed_grads_leave_params_and_state_alone(name):
    net = fb.mlp(fb.random.key(0), [3, 4, 2])
    opt = OPTIMIZERS[name]()
    state = opt.init(net)
    state = optim.step(opt, net, _frozen_grads(net, 9), state)[1]  # moments not zero
    before = [np.array(a) for a in fb.tree.leaves((net, state))]
    new, new_state = optim.step(opt, net, _frozen_grads(net, 1), state, grads_handed=True)
    assert all(
        np.array_equal(a, b) for a, b in zip(before, fb.tree.leaves((net, state)), strict=True)
    )
    olds = fb.tree.leaves((net, state, new_state))
    assert not any(np.shares_memory(p, o) for p in fb.tree.leaves(new) for o in olds)


@pytest.fixture
def leaf_by_leaf(monkeypatch):
    """Steps leaf by leaf: no network is laid flat (see tests/optim/test_flat.py)."""
    monkeypatch.setattr(fb.optim._flat, "MEAN_SIZE", 0)


@pytest.mark.parametrize("make", [lambda: optim.sgd(0.1), lambda: optim.trace(0.9)])
def test_handed_grads_are_where_the_new_params_go(make, leaf_by_leaf):
    """The mechanism happens: SGD scales in place, and an update the state holds (a bare
    momentum's velocity) is added to the params in the grads' arrays."""
    net = fb.mlp(fb.random.key(0), [3, 4, 2])
    opt = make()
    grads = _frozen_grads(net, 1)
    new, _ = optim.step(opt, net, grads, opt.init(net), grads_handed=True)
    for p, g in zip(fb.tree.leaves(new), fb.tree.leaves(grads), strict=True):
        assert p is g and not p.flags.writeable


def test_a_leaf_given_twice_or_a_view_is_never_written():
    g = fb.frozen(np.array([1.0, -2.0]))
    base = fb.frozen(np.array([[3.0, 4.0], [5.0, 6.0]]))
    params = {"a": np.zeros(2), "b": np.zeros(2), "c": np.zeros(2)}
    grads = {"a": g, "b": g, "c": base[1]}
    new, _ = optim.step(
        optim.sgd(0.5), params, grads, optim.sgd(0.5).init(params), grads_handed=True
    )
    assert g.tolist() == [1.0, -2.0] and base.tolist() == [[3.0, 4.0], [5.0, 6.0]]
    assert new["a"].tolist() == new["b"].tolist() == [-0.5, 1.0]
    assert new["c"].tolist() == [-2.5, -3.0]


def test_a_rule_of_your_own_is_told_which_grads_are_handed_and_may_ignore_it():
    seen = []

    def rule(g, state, p, like):
        seen.append([optim.handed(x) for x in g])
        return [-x for x in g], state

    opt = optim.base.transform(lambda params: optim.EmptyState(), rule)
    params = {"w": np.ones(2)}
    new, _ = optim.step(
        opt, params, {"w": fb.frozen(np.ones(2))}, opt.init(params), grads_handed=True
    )
    assert seen == [[True]] and not optim.handed(new["w"]) and new["w"].tolist() == [0.0, 0.0]


def test_a_chain_never_writes_into_what_an_earlier_transform_keeps():
    """A transform of your own that keeps its grads in its state, then fnbp's scale."""

    def keep(g, state, p, like):
        return g, tuple(g)

    keeper = optim.base.transform(lambda params: (), keep)
    opt = optim.chain(keeper, optim.sgd(0.5))
    params = {"w": np.ones(2)}
    grads = {"w": fb.frozen(np.array([2.0, 4.0]))}
    new, state = optim.step(opt, params, grads, opt.init(params), grads_handed=True)
    assert new["w"].tolist() == [0.0, -1.0] and state[0][0].tolist() == [2.0, 4.0]


@pytest.mark.parametrize("name", ["adam", "adamw", "adagrad", "nesterov", "clip+adam"])
def test_a_chain_hands_each_new_update_array_to_the_next_transform(name, monkeypatch, leaf_by_leaf):
    """The learning rate closing a chain scales the arrays the transform before it made,
    in place, with the bits of scaling into new arrays."""
    net = fb.mlp(fb.random.key(0), [3, 4, 2])
    grads = _frozen_grads(net, 1)
    opt = OPTIMIZERS[name]()
    new, state = optim.step(opt, net, grads, opt.init(net))
    seen = []
    original = fb.optim._leaf.scale_all

    def scale_all(g, factor):  # sees what is handed over, then scales into new arrays
        seen.extend(optim.handed(x) for x in g)
        token = fb.optim._leaf.HANDED.set(frozenset())
        try:
            return original(g, factor)
        finally:
            fb.optim._leaf.HANDED.reset(token)

    monkeypatch.setattr(fb.optim._leaf, "scale_all", scale_all)
    new_ref, state_ref = optim.step(opt, net, grads, opt.init(net))
    n = len(fb.tree.leaves(net))
    assert len(seen) >= n and all(seen[-n:])  # the last scale: the learning rate, every leaf
    for a, b in zip(
        fb.tree.leaves((new, state)), fb.tree.leaves((new_ref, state_ref)), strict=True
    ):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("bad", ["yes", 1, None, np.array([True])])
def test_grads_handed_must_be_true_or_false(bad):
    params = {"w": np.ones(2)}
    opt = optim.sgd(0.1)
    with pytest.raises(ValueError, match=r"optim.step: grads_handed must be True or False"):
        optim.step(opt, params, {"w": np.ones(2)}, opt.init(params), grads_handed=bad)
