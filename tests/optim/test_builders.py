"""Builders (fnbp/optim/_builders.py): one function per structure that builds a tree of it
on a vector, the same tree ``fb.tree.unflatten`` builds from the vector's segments."""

from __future__ import annotations

import attrs
import numpy as np
import pytest

import fnbp as fb
from fnbp.optim import _flat
from fnbp.optim._builders import builder, reader


def _laid(like):
    leaves = fb.tree.leaves(like)
    layout = _flat.Layout(like, tuple(a.shape for a in leaves), leaves[0].dtype)
    vector = np.arange(layout.size, dtype=layout.dtype)
    vector.flags.writeable = False
    return layout, vector


def _built(like):
    layout, vector = _laid(like)
    build = builder(like, layout.shapes, layout.bounds)
    assert build is not None
    return build(vector), fb.tree.unflatten(like, layout.segments(vector)), vector


NETS = {
    "mlp": lambda: fb.mlp(fb.random.key(0), [3, 4, 2]),
    "norms and convolutions": lambda: fb.Serial(
        (
            fb.Conv1D.init(fb.random.key(1), 3, 4, 2, padding="same"),
            fb.LayerNorm.init(4),
            fb.ReLU(),
            fb.Flatten(),
            fb.Dense.init(fb.random.key(2), 20, 2),
        )
    ),
    "a residual (built through its class)": lambda: fb.Serial(
        (fb.Residual(fb.Dense.init(fb.random.key(3), 3, 3)), fb.Tanh())
    ),
    "nested tuples": lambda: (
        (fb.Dense.init(fb.random.key(4), 2, 2), None),
        fb.Dense.init(fb.random.key(5), 2, 1),
    ),
}


@pytest.mark.parametrize("make", NETS.values(), ids=NETS.keys())
def test_a_builder_builds_what_unflatten_builds(make):
    built, unflattened, vector = _built(make())
    fb.tree.assert_same_structure(built, unflattened)  # classes, static fields, lengths
    for a, b in zip(fb.tree.leaves(built), fb.tree.leaves(unflattened), strict=True):
        assert a.base is vector and not a.flags.writeable
        assert a.shape == b.shape and np.array_equal(a, b)
    assert repr(built) == repr(unflattened)


def test_subtrees_without_leaves_and_static_fields_are_kept_as_they_are():
    net = fb.Serial((fb.Dense.init(fb.random.key(0), 2, 3), fb.LeakyReLU(0.3), fb.Dropout(0.5)))
    built, _, _ = _built(net)
    assert built.layers[1] is net.layers[1] and built.layers[2] is net.layers[2]
    conv = fb.Conv2D.init(fb.random.key(1), 1, 2, 3, stride=2, padding="same")
    built, _, _ = _built(fb.Serial((conv, fb.ReLU())))
    assert built.layers[0].stride is conv.stride and built.layers[0].padding is conv.padding


def test_a_record_with_checks_of_its_own_is_built_through_its_class():
    calls = []

    @attrs.frozen
    class Checked(fb.Layer):
        W: np.ndarray = fb.param()

        def __attrs_post_init__(self):
            calls.append(self.W.shape)

        def forward(self, x):
            return x @ self.W

    net = fb.Serial((Checked(np.ones((2, 2))), fb.Dense.init(fb.random.key(0), 2, 1)))
    calls.clear()
    built, _, _ = _built(net)
    assert calls == [(2, 2)] * 2  # the builder's record, then unflatten's
    assert isinstance(built.layers[0], Checked)


@attrs.define
class _Mutable:
    W: np.ndarray = fb.param()


@pytest.mark.parametrize(
    "like",
    [
        {"W": np.ones((2, 2)), "b": np.ones(2)},
        [np.ones((2, 2)), np.ones(2)],
        (_Mutable(np.ones((2, 2))), np.ones(2)),
        ({"W": np.ones(2)}, np.ones(2)),
    ],
    ids=["dict", "list", "mutable record", "dict inside"],
)
def test_a_tree_that_could_change_has_no_builder(like):
    layout, _ = _laid(like)
    assert builder(like, layout.shapes, layout.bounds) is None


def test_leaves_of_other_shapes_or_number_have_no_builder():
    net = fb.mlp(fb.random.key(0), [3, 4, 2])
    layout, _ = _laid(net)
    assert builder(net, layout.shapes[::-1], layout.bounds) is None  # shapes swapped
    assert builder(net, layout.shapes[:-1], layout.bounds[:-1]) is None  # one leaf short
    extra = (*layout.shapes, (1,))
    assert builder(net, extra, (*layout.bounds, (layout.size, layout.size + 1))) is None


def test_the_source_names_only_what_the_builder_was_given():
    net = fb.mlp(fb.random.key(0), [3, 4, 2])
    layout, _ = _laid(net)
    source = builder(net, layout.shapes, layout.bounds).__doc__
    assert source.startswith("def build(v):\n") and "return n" in source
    assert "put(n0, 'W', v[0:12].reshape((3, 4)))" in source
    for word in ("import", "eval", "exec", "__"):
        assert word not in source


# ----------------------------------------------------------------------------- readers


def test_a_reader_reads_the_leaves_of_trees_of_the_very_structure():
    net = fb.Serial(
        (
            fb.Conv1D.init(fb.random.key(1), 3, 4, 2, padding="same"),
            fb.ReLU(),
            fb.Flatten(),
            fb.Dense.init(fb.random.key(2), 20, 2),
        )
    )
    read = reader(net)
    grads = fb.tree.map(lambda a: a * 2.0, net)
    assert [a is b for a, b in zip(read(grads), fb.tree.leaves(grads), strict=True)] == [True] * 4
    assert "return [" in read.__doc__


def test_a_reader_refuses_any_other_structure():
    net = fb.mlp(fb.random.key(0), [3, 4, 2])
    read = reader(net)
    layers = net.layers
    others = {
        "another depth": fb.mlp(fb.random.key(0), [3, 4, 4, 2]),
        "another class": fb.Serial((layers[0], fb.Tanh(), *layers[2:])),
        "an equal, other leafless layer": fb.Serial((layers[0], fb.ReLU(), *layers[2:])),
        "a tuple": tuple(layers),
        "a dict": {"layers": layers},
        "a leaf": np.ones(3),
    }
    for name, other in others.items():
        assert read(other) is None, name
    conv = fb.Conv1D.init(fb.random.key(1), 3, 4, 2, stride=1)
    read = reader(fb.Serial((conv,)))
    wider = fb.Serial((attrs.evolve(conv, stride=2),))  # a static field of another value
    assert read(wider) is None
    assert reader({"W": np.ones(2)}) is None and reader([np.ones(2)]) is None


def test_after_a_flat_step_the_next_one_pairs_the_grads_without_a_walk():
    net, opt = fb.mlp(fb.random.key(0), [3, 4, 2]), fb.optim.adam(0.1)
    grads = fb.tree.map(lambda a: a * 0.5, net)
    params, state = fb.optim.step(opt, net, grads, opt.init(net))
    laid, vector, g = _flat.found(params, grads, state)
    assert vector is fb.tree.leaves(params)[0].base and laid.tree is grads
    assert all(a is b for a, b in zip(g, fb.tree.leaves(grads), strict=True))
    assert _flat.found(net, grads, state) is None  # not built here
    as64 = fb.tree.map(lambda a: a.astype(np.float64), grads)
    assert _flat.found(params, as64, state) is None  # another dtype: paired as any tree
    assert _flat.found(params, grads, fb.optim.sgd(0.1).init(net)) is None  # no moments


def test_grads_of_another_structure_after_a_flat_step_get_the_usual_error():
    net, opt = fb.mlp(fb.random.key(0), [3, 4, 2]), fb.optim.adam(0.1)
    grads = fb.tree.map(lambda a: a * 0.5, net)
    params, state = fb.optim.step(opt, net, grads, opt.init(net))
    wrong = fb.Serial((grads.layers[0], fb.Tanh(), *grads.layers[2:]))
    with pytest.raises(fb.StructureError, match=r"layers\[1\]"):
        fb.optim.step(opt, params, wrong, state)
    bad = fb.Serial((attrs.evolve(grads.layers[0], W=np.ones((3, 5))), *grads.layers[1:]))
    with pytest.raises(fb.ShapeError, match=r"layers\[0\]\.W"):
        fb.optim.step(opt, params, bad, state)
