"""Trees an optimizer step built, remembered while they live (fnbp/optim/_built.py): the
next step pairs and rebuilds them without a walk, with the same bits and records."""

from __future__ import annotations

import gc

import attrs
import numpy as np
import pytest

import fnbp as fb
from fnbp.optim import _built

from ._helpers import OPTIMIZERS


def _fresh(tree):
    """New read-only arrays of their own memory, as a step makes them."""
    return [fb.record.frozen(a + 1.0) for a in fb.tree.leaves(tree)]


def test_rebuilt_builds_what_unflatten_builds_and_remembers_it():
    net = fb.mlp(fb.random.key(0), [3, 4, 2])
    leaves = _fresh(net)
    out = _built.rebuilt(net, leaves)
    fb.tree.assert_same_structure(out, fb.tree.unflatten(net, leaves))
    assert all(a is b for a, b in zip(fb.tree.leaves(out), leaves, strict=True))
    first, second = _built.entry(net), _built.entry(out)
    assert first is not None and first.vector is None and second is not None
    assert second.listed is first.listed  # written once, passed on
    again = _built.rebuilt(net, _fresh(net))  # from the same tree again: no new function
    assert _built.entry(again).listed is first.listed


def test_trees_that_could_change_are_rebuilt_as_unflatten_does_and_not_remembered():
    for tree in ({"W": np.ones((2, 2)), "b": np.ones(2)}, [np.ones(2), np.ones(3)]):
        out = _built.rebuilt(tree, _fresh(tree))
        assert type(out) is type(tree) and _built.entry(out) is None
        assert _built.entry(tree) is None


def test_paired_pairs_only_trees_of_the_very_structure():
    net = fb.mlp(fb.random.key(0), [3, 4, 2])
    params = _built.rebuilt(net, _fresh(net))
    grads = fb.tree.map(lambda a: a * 2.0, net)
    p, g = _built.paired(params, grads)
    ref_p, ref_g = fb.tree.paired_leaves(params, grads)
    assert all(a is b for a, b in zip(p + g, ref_p + ref_g, strict=True))
    assert _built.paired({"W": np.ones(2)}, {"W": np.ones(2)}) is None  # no entry
    layers = grads.layers
    wider = fb.Serial((attrs.evolve(layers[0], W=np.ones((3, 5))), *layers[1:]))
    assert _built.paired(params, wider) is None  # another shape: the usual error


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_steps_and_updates_give_the_bits_of_trees_walked_every_time(name, monkeypatch):
    net = fb.mlp(fb.random.key(0), [3, 8, 8, 2], output=fb.LayerNorm.init(2))
    grads = [fb.tree.map(lambda a, k=k: np.sin(a * k), net) for k in range(1, 5)]
    opt = OPTIMIZERS[name]()

    def run():
        params, state, plain = net, opt.init(net), net
        for g in grads:
            params, state = fb.optim.step(opt, params, g, state)
            plain = fb.update(plain, g, 0.1)
        return params, plain

    remembered = run()
    monkeypatch.setattr(_built, "entry", lambda tree: None)  # nothing remembered
    monkeypatch.setattr(_built, "remember", lambda *args: None)
    walked = run()
    for a, b in zip(remembered, walked, strict=True):
        fb.tree.assert_same_structure(a, b)
        for x, y in zip(fb.tree.leaves(a), fb.tree.leaves(b), strict=True):
            assert x.dtype == y.dtype and np.array_equal(x, y)


def test_entries_go_with_their_trees():
    gc.collect()
    before = len(_built._TREES)
    net = fb.mlp(fb.random.key(0), [3, 4, 2])
    for _ in range(10):
        net = fb.update(net, fb.tree.map(np.ones_like, net), 0.1)
    assert len(_built._TREES) <= before + 2  # the last result, and the one it came from
    del net
    gc.collect()
    assert len(_built._TREES) <= before
