"""Small networks laid flat (fnbp/optim/_flat.py): the same bits as leaf by leaf, the
vectors found again without a copy, nothing anyone holds ever written."""

from __future__ import annotations

import gc
import threading

import attrs
import numpy as np
import pytest

import fnbp as fb
from fnbp import optim
from fnbp.optim import _built, _flat

from ._helpers import OPTIMIZERS

STATEFUL = [name for name in OPTIMIZERS if name != "sgd"]


def _net(dtype=np.float32):
    net = fb.mlp(fb.random.key(0), [3, 5, 4, 2], output=fb.LayerNorm.init(2, dtype=np.float64))
    return fb.tree.map(lambda a: a.astype(dtype), net)


def _grads(net, seed):
    keys = fb.random.split(fb.random.key(seed), len(fb.tree.leaves(net)))
    leaves = [
        fb.random.normal(k, p.shape, dtype=p.dtype)
        for k, p in zip(keys, fb.tree.leaves(net), strict=True)
    ]
    return fb.tree.unflatten(net, leaves)


def _run(opt, net, steps, *, flat, monkeypatch, handed=False):
    monkeypatch.setattr(_flat, "MEAN_SIZE", 4096 if flat else 0)
    params, state = net, opt.init(net)
    with np.errstate(all="raise"):
        for t in range(steps):
            params, state = optim.step(opt, params, _grads(net, t), state, grads_handed=handed)
    return params, state


def _same(a, b):
    fb.tree.assert_same_structure(a, b)  # the same classes, static fields and keys
    la, lb = fb.tree.leaves(a), fb.tree.leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb, strict=True):
        assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_flat_gives_the_bits_of_leaf_by_leaf(name, dtype, monkeypatch):
    opt = OPTIMIZERS[name]()
    flat = _run(opt, _net(dtype), 4, flat=True, monkeypatch=monkeypatch)
    leafwise = _run(opt, _net(dtype), 4, flat=False, monkeypatch=monkeypatch)
    _same(flat, leafwise)
    _same(flat, _run(opt, _net(dtype), 4, flat=True, monkeypatch=monkeypatch, handed=True))


@pytest.mark.parametrize("mask", [None, lambda p: fb.tree.map(lambda a: a.ndim == 1, p)])
def test_flat_weight_decay_and_clipping_give_the_bits_of_leaf_by_leaf(mask, monkeypatch):
    opt = optim.chain(optim.clip_by_global_norm(0.5), optim.adamw(0.1, weight_decay=0.3, mask=mask))
    flat = _run(opt, _net(), 3, flat=True, monkeypatch=monkeypatch)
    _same(flat, _run(opt, _net(), 3, flat=False, monkeypatch=monkeypatch))


@pytest.mark.parametrize("name", STATEFUL)
def test_a_flat_step_returns_read_only_views_of_one_vector_per_tree(name):
    net, opt = _net(), OPTIMIZERS[name]()
    params, state = optim.step(opt, net, _grads(net, 0), opt.init(net))
    leaves = fb.tree.leaves(params)
    vector = leaves[0].base
    assert vector is not None and vector.ndim == 1 and not vector.flags.writeable
    assert all(a.base is vector and not a.flags.writeable for a in leaves)
    assert vector.size == sum(a.size for a in leaves)
    for moments in fb.tree.leaves(state):
        assert not moments.flags.writeable
    # the next step finds the params' own vector from the tree itself: no copy
    p, g = optim.base._pairs(params, _grads(net, 1), "grads")
    laid = _flat.layout(p, g, _grads(net, 1), state)
    assert laid is not None and laid.vector_of(params) is vector
    # its leaves alone, in another tree, are copied
    assert np.array_equal(laid.vector(p), vector) and laid.vector(p) is not vector


@pytest.mark.parametrize("name", STATEFUL)
def test_nothing_a_flat_step_was_given_or_gave_back_ever_changes(name):
    net, opt = _net(), OPTIMIZERS[name]()
    params, state = net, opt.init(net)
    held = []
    for t in range(4):
        grads = _grads(net, t)
        held.append([(a, a.copy(), a.flags.writeable) for a in fb.tree.leaves((params, state))])
        held.append([(a, a.copy(), a.flags.writeable) for a in fb.tree.leaves(grads)])
        params, state = optim.step(opt, params, grads, state)
    for arrays in held:
        for a, value, writeable in arrays:
            assert np.array_equal(a, value) and a.flags.writeable == writeable


def test_a_vector_is_found_only_behind_its_own_views_in_their_order(monkeypatch):
    """A leaf replaced, or two layers swapped, and the step copies instead."""
    opt = optim.adam(0.1)
    net = fb.mlp(fb.random.key(0), [4, 4, 4, 4])
    params, state = optim.step(opt, net, _grads(net, 0), opt.init(net))
    layers = list(params.layers)
    swapped = fb.Serial((layers[2], layers[1], layers[0], *layers[3:]))
    edited = fb.Serial((attrs.evolve(layers[0], b=np.ones(4, np.float32)), *layers[1:]))
    for changed in (swapped, edited):
        p = fb.tree.leaves(changed)
        laid = _flat.Layout(changed, tuple(a.shape for a in p), p[0].dtype)
        vector = laid.vector(p)
        assert vector is not p[0].base
        assert np.array_equal(vector, np.concatenate([a.ravel() for a in p]))
        flat = optim.step(opt, changed, _grads(net, 1), state)
        monkeypatch.setattr(_flat, "MEAN_SIZE", 0)
        _same(flat, optim.step(opt, changed, _grads(net, 1), state))
        monkeypatch.setattr(_flat, "MEAN_SIZE", 4096)


def test_a_moment_of_another_dtype_is_stepped_leaf_by_leaf(monkeypatch):
    net = _net(np.float32)
    opt = optim.adam(0.1)
    state = opt.init(_net(np.float64))  # float64 moments for float32 params
    flat = optim.step(opt, net, _grads(net, 0), state)
    assert fb.tree.leaves(flat[1])[0].dtype == np.float64
    monkeypatch.setattr(_flat, "MEAN_SIZE", 0)
    _same(flat, optim.step(opt, net, _grads(net, 0), state))


def test_when_a_network_is_laid_flat():
    net, opt = _net(), optim.adam(0.1)
    p, g = fb.tree.leaves(net), fb.tree.leaves(_grads(net, 0))
    state = opt.init(net)
    assert _flat.layout(p, g, net, state) is not None
    assert _flat.layout(p, g, net, optim.sgd(0.1).init(net)) is None  # no moments
    assert _flat.layout(p[:1], g[:1], net, state) is None  # one leaf
    g64 = [a.astype(np.float64) for a in g]
    assert _flat.layout(p, g64, net, state) is None  # two dtypes
    big = fb.mlp(fb.random.key(0), [100, 100])  # 10,100 numbers in two leaves
    leaves = fb.tree.leaves(big)
    assert _flat.layout(leaves, leaves, big, opt.init(big)) is None


def test_a_state_from_another_network_is_refused_as_leaf_by_leaf():
    net, opt = _net(), optim.adam(0.1)
    other = fb.mlp(fb.random.key(0), [3, 5, 2])
    with pytest.raises((fb.StructureError, fb.ShapeError)):
        optim.step(opt, net, _grads(net, 0), opt.init(other))


def test_a_transform_of_your_own_is_laid_flat_only_when_it_says_so():
    shapes = []

    def rule(g, state, p, like):
        shapes.append([x.shape for x in g])
        return [-x for x in g], state

    params = {"a": np.ones(2), "b": np.ones(3)}
    grads = {"a": np.ones(2), "b": np.ones(3)}
    for flat in (False, True):
        mine = optim.base.transform(lambda params: params, rule, flat=flat)
        new, _ = optim.step(mine, params, grads, mine.init(params))
        assert new["a"].tolist() == [0.0, 0.0] and new["b"].tolist() == [0.0] * 3
    assert shapes == [[(2,), (3,)], [(5,)]]
    assert not optim.Optimizer(lambda p: None, lambda g, s, p=None: (g, s)).flat
    with pytest.raises(ValueError, match="transform: flat must be True or False"):
        optim.base.transform(lambda params: params, rule, flat="yes")


def test_the_registry_forgets_vectors_nobody_holds():
    net, opt = _net(), optim.adam(0.1)
    params, state = net, opt.init(net)
    gc.collect()
    before = len(_flat._LAID), len(_built._TREES)  # other tests' that pytest still holds
    for t in range(20):
        params, state = optim.step(opt, params, _grads(net, t), state)
    assert len(_flat._LAID) <= before[0]  # trees immutable all the way down: no leaves
    # the last step's params and two moments, and the network the run started from
    assert len(_built._TREES) <= before[1] + 4
    del params, state, net
    assert len(_built._TREES) <= before[1]


def test_a_checkpointed_flat_state_resumes_with_the_same_bits(tmp_path):
    net, opt = _net(), optim.rmsprop(0.1, momentum=0.5)
    params, state = optim.step(opt, net, _grads(net, 0), opt.init(net))
    path = tmp_path / "ckpt.npz"
    fb.checkpoint.save(path, (params, state))
    loaded_params, loaded_state = fb.checkpoint.load(path, (params, state)).tree
    _same((loaded_params, loaded_state), (params, state))
    assert loaded_params.layers[0].W.base is not params.layers[0].W.base  # not laid flat
    _same(
        optim.step(opt, loaded_params, _grads(net, 1), loaded_state),
        optim.step(opt, params, _grads(net, 1), state),
    )


def test_threads_laying_networks_flat_do_not_disturb_each_other():
    opt = optim.adam(0.1)
    nets = [_net(), fb.tree.map(lambda a: a * 2.0, _net())]

    def run(net):
        params, state = net, opt.init(net)
        for t in range(30):
            params, state = optim.step(opt, params, _grads(net, t), state)
        return params, state

    alone = [run(net) for net in nets]
    together: list = [None, None]
    threads = [
        threading.Thread(target=lambda i=i: together.__setitem__(i, run(nets[i]))) for i in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for a, b in zip(alone, together, strict=True):
        _same(a, b)


# ------------------------------------------------------------------ trees built on a vector


@attrs.frozen
class _Checked(fb.Layer):
    """A record whose class checks its own arrays: never built around its __init__."""

    W: np.ndarray = fb.param()
    built = []  # noqa: RUF012 - the test's own log of __attrs_post_init__ calls

    def __attrs_post_init__(self):
        type(self).built.append(self.W.shape)

    def forward(self, x):
        return x @ self.W


@attrs.frozen
class _Converted:
    W: np.ndarray = attrs.field(converter=np.asarray)


@attrs.define
class _Mutable:
    W: np.ndarray = fb.param()
    b: np.ndarray = fb.param()


def _layouts(params, grads, state):
    p, g = optim.base._pairs(params, grads, "grads")
    return p, _flat.layout(p, g, grads, state)


def test_records_whose_init_only_converts_are_built_directly_the_rest_through_their_class():
    assert fb.record.direct(fb.Dense) and fb.record.direct(fb.Conv2D)
    assert fb.record.direct(fb.LayerNorm) and fb.record.direct(fb.Embedding)
    assert fb.record.direct(fb.Serial)  # its converter keeps layers of classes it checked
    assert not fb.record.direct(fb.Residual)  # a validator of its own
    assert not fb.record.direct(_Checked)  # a post-init of its own
    assert not fb.record.direct(_Converted)  # a converter of its own on a tree field
    net = fb.Serial((fb.Dense.init(fb.random.key(0), 3, 4), _Checked(np.ones((4, 2), np.float32))))
    opt = optim.adam(0.1)
    params, state, grads = net, opt.init(net), [_grads(net, t) for t in range(3)]
    _Checked.built.clear()
    for g in grads:
        params, state = optim.step(opt, params, g, state)
    assert _Checked.built == [(4, 2)] * 9  # params, mu and nu, at every step


@pytest.mark.parametrize(
    "make",
    [
        lambda net: {"first": net.layers[0], "last": net.layers[2]},  # a dict
        lambda net: [net.layers[0], net.layers[2]],  # a list
        lambda net: (net.layers[0], net.layers[2]),  # a tuple at the top
        lambda net: (_Mutable(net.layers[0].W, net.layers[0].b), net.layers[2]),
    ],
    ids=["dict", "list", "tuple", "mutable record"],
)
def test_trees_that_could_change_are_found_through_their_leaves(make, monkeypatch):
    params0 = make(fb.mlp(fb.random.key(0), [3, 5, 2]))
    opt = optim.adam(0.1)
    params, state = params0, opt.init(params0)
    for t in range(3):
        params, state = optim.step(opt, params, _grads(params0, t), state)
    p, laid = _layouts(params, _grads(params0, 3), state)
    assert laid is not None and laid.vector_of(params) is None  # not registered itself
    assert laid.vector(p) is p[0].base  # but behind its leaves: no copy
    _same(params, _run(opt, params0, 3, flat=False, monkeypatch=monkeypatch)[0])


def test_a_tree_found_again_is_that_very_tree_laid_out_alike():
    net, opt = _net(), optim.adam(0.1)
    params, state = optim.step(opt, net, _grads(net, 0), opt.init(net))
    vector = fb.tree.leaves(params)[0].base
    _, laid = _layouts(params, _grads(net, 1), state)
    assert laid.vector_of(params) is vector
    assert laid.vector_of(fb.tree.map(lambda a: a, params)) is None  # an equal tree: copied
    other = _flat.Layout(params, tuple(reversed(laid.shapes)), laid.dtype)
    assert other.vector_of(params) is None  # laid out otherwise
    wider = _flat.Layout(params, laid.shapes, np.dtype(np.float64))
    assert wider.vector_of(params) is None  # another dtype
