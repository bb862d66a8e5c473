"""Residual and Parallel: values, gradients, training mode, optimizers and error paths."""

from __future__ import annotations

import re
from typing import Any

import attrs
import numpy as np
import pytest
from _spy import Spy

import fnbp as fb


def dense(key, in_size, out_size, dtype=np.float64):
    layer = fb.Dense.init(key, in_size, out_size, dtype=dtype)
    b = fb.random.normal(fb.random.fold_in(key, 99), (out_size,), dtype=dtype)
    return fb.replace(layer, b=b)


def keys(seed, n):
    return fb.random.split(fb.random.key(seed), n)


def residual_mlp(seed=0, width=4, dtype=np.float64):
    k1, k2 = keys(seed, 2)
    return fb.Residual(
        fb.Serial((dense(k1, width, 6, dtype), fb.ReLU(), dense(k2, 6, width, dtype)))
    )


def resnet_block(dtype=np.float64):
    """The ResNet-style block of the issue, as one expression."""
    k1, k2, k3 = keys(7, 3)
    return fb.Serial(
        (
            fb.Dense.init(k1, 4, 8, dtype=dtype),
            fb.Residual(
                fb.Serial(
                    (
                        fb.Dense.init(k2, 8, 8, dtype=dtype),
                        fb.ReLU(),
                        fb.Dense.init(k3, 8, 8, dtype=dtype),
                    )
                )
            ),
            fb.ReLU(),
        )
    )


def branches(seed=0):
    """Three branches of widths 2, 5 and 1 on a 3-wide input."""
    k1, k2, k3 = keys(seed, 3)
    return (
        fb.Serial((dense(k1, 3, 2), fb.Tanh())),
        dense(k2, 3, 5),
        fb.Serial((dense(k3, 3, 4), fb.Sigmoid(), dense(fb.random.fold_in(k3, 1), 4, 1))),
    )


def sum_branches(seed=0):
    k1, k2 = keys(seed, 2)
    return (fb.Serial((dense(k1, 3, 3), fb.Tanh())), dense(k2, 3, 3), fb.Identity())


@attrs.frozen
class Counter(fb.Layer):
    """A layer that uses the training context: ``y = x + count``, its state ``count + 1``.

    It records every key it is given in ``seen`` (a static field, shared by its copies).
    """

    seen: list = fb.static(factory=list, eq=False)

    def vjp(self, x: np.ndarray, need_g_x: bool = True) -> tuple:
        return x, lambda g: (g if need_g_x else None, self)

    def vjp_ctx(self, x: np.ndarray, need_g_x: bool, ctx: fb.Context) -> tuple:
        self.seen.append(ctx.key)
        if not isinstance(ctx.state, int):
            raise fb.StructureError(f"Counter needs an int state, got {ctx.state!r}")
        y = x + float(ctx.state)
        return y, lambda g: (g if need_g_x else None, self), ctx.state + 1

    def init_state(self) -> Any:
        return 0


# --- Residual: values and gradients ------------------------------------------------------------


def test_residual_is_x_plus_f_of_x(make):
    net = residual_mlp()
    x = make(5, 4)
    np.testing.assert_array_equal(fb.forward(net, x), x + fb.forward(net.f, x))
    y, _ = fb.vjp(net, x)
    np.testing.assert_array_equal(y, x + fb.forward(net.f, x))


def test_residual_backward_adds_the_skip_gradient(make):
    net = residual_mlp()
    x, g_y = make(5, 4), make(5, 4)
    g_x, grads = fb.backward(net, x, g_y)
    g_x_f, grads_f = fb.backward(net.f, x, g_y)
    np.testing.assert_allclose(g_x, g_y + g_x_f, rtol=1e-15)
    assert type(grads) is fb.Residual
    assert fb.tree.allclose(grads.f, grads_f, rtol=0, atol=0)


def test_residual_of_identity_by_hand():
    x, g_y = np.array([[1.0, -2.0]]), np.array([[3.0, 4.0]])
    np.testing.assert_array_equal(fb.forward(fb.Residual(fb.Identity()), x), [[2.0, -4.0]])
    g_x, grads = fb.backward(fb.Residual(fb.Identity()), x, g_y)
    np.testing.assert_array_equal(g_x, [[6.0, 8.0]])
    assert grads == fb.Residual(fb.Identity())


def test_check_grads_residual(make):
    report = fb.testing.check_grads(residual_mlp(), make(5, 4), rtol=1e-6)
    assert set(report.errors) == {"x"} | {f"f.layers[{i}].{n}" for i in (0, 2) for n in "Wb"}


def test_check_grads_nested_residual_inside_serial(make):
    k1, k2 = keys(3, 2)
    inner = fb.Residual(fb.Serial((dense(k1, 4, 4), fb.Tanh(), fb.Residual(fb.Softplus()))))
    net = fb.Serial(
        (inner, dense(k2, 4, 3), fb.Residual(residual_mlp(1, width=3)), fb.LogSoftmax())
    )
    report = fb.testing.check_grads(net, make(4, 4), rtol=1e-6)
    assert "layers[2].f.f.layers[2].W" in report.errors
    assert len(report.errors) == 1 + 2 + 2 + 4


def test_check_grads_resnet_block(make):
    report = fb.testing.check_grads(resnet_block(), make(3, 4), rtol=1e-6)
    assert "layers[1].f.layers[2].b" in report.errors and len(report.errors) == 7


def test_resnet_block_in_float32_is_one_expression(make):
    k1, k2, k3 = keys(0, 3)
    net = fb.Serial(
        (
            fb.Dense.init(k1, 4, 8),
            fb.Residual(fb.Serial((fb.Dense.init(k2, 8, 8), fb.ReLU(), fb.Dense.init(k3, 8, 8)))),
            fb.ReLU(),
        )
    )
    x = make(6, 4)  # float64 data: cast once by the first Dense
    y = fb.forward(net, x)
    assert y.shape == (6, 8) and y.dtype == np.float32
    g_x, grads = fb.backward(net, x, np.ones((6, 8)))
    assert g_x.dtype == np.float32
    assert all(leaf.dtype == np.float32 for leaf in fb.tree.leaves(grads))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_residual_output_takes_the_dtype_of_f(make, dtype):
    net = residual_mlp(dtype=np.float32)
    y = fb.forward(net, make(3, 4, dtype=dtype))
    g_x, _ = fb.backward(net, make(3, 4, dtype=dtype), make(3, 4))
    assert y.dtype == g_x.dtype == np.float32


def test_residual_need_g_x_false(make):
    net = residual_mlp()
    x, g_y = make(3, 4), make(3, 4)
    g_x, grads = fb.backward(net, x, g_y, need_g_x=False)
    assert g_x is None
    assert fb.tree.allclose(grads, fb.backward(net, x, g_y)[1], rtol=0, atol=0)
    spy = Spy()
    fb.value_and_grad(fb.Residual(spy), fb.mse, x, np.zeros((3, 4)))
    assert spy.asked == [False]
    fb.backward(fb.Residual(spy), x, g_y)
    assert spy.asked == [False, True]


def test_residual_never_writes_into_its_inputs(make):
    x, g_y = make(3, 4), make(3, 4)  # read-only: a write would raise
    for f in (fb.Identity(), residual_mlp().f):
        y = fb.forward(fb.Residual(f), x)
        g_x, _ = fb.backward(fb.Residual(f), x, g_y)
        assert y is not x and g_x is not g_y


# --- Parallel: values and gradients ------------------------------------------------------------


def test_parallel_concat_is_concatenation(make):
    net = fb.Parallel(branches())
    x = make(5, 3)
    y = fb.forward(net, x)
    assert y.shape == (5, 8)
    np.testing.assert_array_equal(y, np.concatenate([fb.forward(b, x) for b in net.branches], -1))
    np.testing.assert_array_equal(fb.vjp(net, x)[0], y)


def test_parallel_sum_is_a_sum(make):
    net = fb.Parallel(sum_branches(), combine="sum")
    x = make(5, 3)
    f = fb.forward
    expected = f(net.branches[0], x) + f(net.branches[1], x) + x
    np.testing.assert_allclose(f(net, x), expected, rtol=1e-15)


def test_parallel_backward_splits_g_y_and_sums_g_x(make):
    net = fb.Parallel(branches())
    x, g_y = make(4, 3), make(4, 8)
    g_x, grads = fb.backward(net, x, g_y)
    parts = [
        fb.backward(b, x, g) for b, g in zip(net.branches, np.split(g_y, [2, 7], -1), strict=True)
    ]
    np.testing.assert_allclose(g_x, sum(p[0] for p in parts), rtol=1e-14)
    assert type(grads) is fb.Parallel and grads.combine == "concat"
    for got, (_, want) in zip(grads.branches, parts, strict=True):
        assert fb.tree.allclose(got, want, rtol=0, atol=0)


def test_parallel_of_identities_by_hand():
    x, g_y = np.array([[1.0, 2.0]]), np.array([[1.0, 2.0, 30.0, 40.0]])
    net = fb.Parallel((fb.Identity(), fb.Identity()))
    np.testing.assert_array_equal(fb.forward(net, x), [[1.0, 2.0, 1.0, 2.0]])
    np.testing.assert_array_equal(fb.backward(net, x, g_y)[0], [[31.0, 42.0]])
    summed = fb.Parallel((fb.Identity(), fb.Identity(), fb.Identity()), combine="sum")
    np.testing.assert_array_equal(fb.forward(summed, x), [[3.0, 6.0]])
    np.testing.assert_array_equal(fb.backward(summed, x, np.ones((1, 2)))[0], [[3.0, 3.0]])


def test_check_grads_parallel_concat_of_different_widths(make):
    report = fb.testing.check_grads(fb.Parallel(branches()), make(4, 3), rtol=1e-6)
    assert "branches[2].layers[2].W" in report.errors and len(report.errors) == 1 + 8


def test_check_grads_parallel_sum(make):
    net = fb.Parallel(sum_branches(), combine="sum")
    report = fb.testing.check_grads(net, make(4, 3), rtol=1e-6)
    expected = ["branches[0].layers[0].W", "branches[0].layers[0].b", "branches[1].W"]
    assert set(report.errors) == {"x", *expected, "branches[1].b"}


def test_check_grads_single_branch_and_nesting(make):
    k1, k2 = keys(4, 2)
    inception = fb.Parallel(
        (fb.Parallel((dense(k1, 3, 2),)), fb.Residual(fb.Parallel(sum_branches(), combine="sum")))
    )
    net = fb.Serial((inception, fb.Tanh(), dense(k2, 5, 2)))
    report = fb.testing.check_grads(net, make(3, 3), rtol=1e-6)
    assert "layers[0].branches[1].f.branches[1].W" in report.errors
    assert fb.testing.check_grads(net, make(16, 3), mode="projection", rtol=1e-6).ok


def test_parallel_need_g_x(make):
    spies = (Spy(), Spy())
    net = fb.Parallel(spies, combine="sum")
    x = make(2, 3)
    fb.value_and_grad(net, fb.mse, x, np.zeros((2, 3)))
    fb.backward(net, x, np.ones((2, 3)))
    assert [s.asked for s in spies] == [[False, True], [False, True]]
    assert fb.backward(fb.Parallel(branches()), x, np.ones((2, 8)), need_g_x=False)[0] is None


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_parallel_dtype_is_preserved(make, dtype):
    k1, k2 = keys(0, 2)
    net = fb.Parallel((dense(k1, 3, 2, dtype), dense(k2, 3, 4, dtype)))
    x = make(4, 3, dtype=dtype)
    g_x, grads = fb.backward(net, x, make(4, 6))
    assert fb.forward(net, x).dtype == g_x.dtype == dtype
    assert all(leaf.dtype == dtype for leaf in fb.tree.leaves(grads))


def test_parallel_concat_on_the_last_axis_of_3d_input(make):
    net = fb.Parallel((fb.Tanh(), fb.Softmax(), fb.Identity()))
    x = make(2, 3, 4)
    assert fb.forward(net, x).shape == (2, 3, 12)
    assert fb.testing.check_grads(net, x, rtol=1e-6).ok


def test_parallel_accepts_a_list_and_validates():
    assert fb.Parallel([fb.ReLU(), fb.Tanh()]).branches == (fb.ReLU(), fb.Tanh())
    assert fb.Parallel([fb.ReLU()]).combine == "concat"
    with pytest.raises(ValueError, match="Parallel: branches must be at least one layer"):
        fb.Parallel(())
    with pytest.raises(ValueError, match="Parallel: combine must be one of 'concat', 'sum'"):
        fb.Parallel((fb.ReLU(),), combine="max")
    with pytest.raises(
        fb.StructureError, match=r"branches\[1\] must be a layer.*did you mean Tanh\(\)"
    ):
        fb.Parallel((fb.ReLU(), fb.Tanh))
    with pytest.raises(ValueError, match="Parallel: branches must be a list or tuple of layers"):
        fb.Parallel(fb.ReLU())
    with pytest.raises(
        fb.StructureError, match=r"Residual: f must be a layer.*did you mean ReLU\(\)"
    ):
        fb.Residual(fb.ReLU)
    with pytest.raises(fb.StructureError, match="Residual: f must be a layer"):
        fb.Residual(np.ones(3))


# --- shape errors name the path ----------------------------------------------------------------


def test_residual_shape_mismatch_is_named(make):
    net = fb.Residual(dense(fb.random.key(0), 3, 4))
    msg = r"^Residual: f maps input of shape \(2, 3\) to shape \(2, 4\)"
    with pytest.raises(fb.ShapeError, match=msg):
        fb.forward(net, make(2, 3))
    with pytest.raises(fb.ShapeError, match=msg):
        fb.vjp(net, make(2, 3))
    with pytest.raises(fb.ShapeError, match=r"^layers\[1\]: Residual: f maps"):
        fb.forward(fb.Serial((fb.Tanh(), net)), make(2, 3))


def test_error_inside_a_branch_names_its_path(make):
    k1, k2 = keys(0, 2)
    bad = fb.Parallel((dense(k1, 3, 4), dense(k2, 5, 2)))
    pattern = r"^branches\[1\]: Dense\(5 -> 2\) expects input of shape \(N, 5\).*, got \(6, 3\)"
    x = make(6, 3)
    for run in (fb.forward, fb.vjp, lambda n, x: fb.forward(n, x, train=True, key=k1)):
        with pytest.raises(fb.ShapeError, match=pattern):
            run(bad, x)
    net = fb.Serial((fb.Residual(fb.Serial((bad,))),))
    for run in (fb.forward, fb.vjp, lambda n, x: fb.vjp(n, x, state=fb.init_state(n))):
        with pytest.raises(fb.ShapeError, match=r"^layers\[0\]\.f\.layers\[0\]\.branches\[1\]: "):
            run(net, x)


def test_parallel_output_shape_mismatch_is_named(make):
    k1, k2 = keys(0, 2)
    summed = fb.Parallel((dense(k1, 3, 4), dense(k2, 3, 2)), combine="sum")
    msg = r"Parallel\(sum\): branches\[1\] gives shape \(5, 2\), branches\[0\] gives \(5, 4\)"
    with pytest.raises(fb.ShapeError, match=msg):
        fb.forward(summed, make(5, 3))
    with pytest.raises(fb.ShapeError, match=r"^layers\[0\]: " + msg):
        fb.vjp(fb.Serial((summed,)), make(5, 3))
    concat = fb.Parallel((fb.Identity(), fb.Serial((fb.Identity(),)), FirstRow()))
    msg = r"Parallel\(concat\): branches\[2\] gives shape \(1, 3\), branches\[0\] gives \(5, 3\)"
    with pytest.raises(fb.ShapeError, match=msg):
        fb.forward(concat, make(5, 3))


class FirstRow(Spy):
    def forward(self, x):
        return x[:1]

    def vjp(self, x, need_g_x=True):
        return x[:1], None


# --- training mode: keys and states ------------------------------------------------------------


def test_init_state_structure():
    c = Counter
    assert fb.init_state(fb.Residual(c())) == 0
    assert fb.init_state(fb.Residual(fb.Identity())) is None
    assert fb.init_state(fb.Parallel((c(), fb.Tanh(), c()))) == (0, None, 0)
    net = fb.Serial((fb.Residual(fb.Parallel((c(), fb.Serial((c(), c()))))), c()))
    assert fb.init_state(net) == ((0, (0, 0)), 0)


def test_parallel_gives_each_branch_its_own_key_and_state(make):
    a, b = Counter(), Counter()
    net = fb.Parallel((a, fb.Tanh(), b), combine="sum")
    key, x = fb.random.key(5), make(2, 3)
    y, pullback, state = fb.vjp(net, x, train=True, key=key, state=(3, None, 10))
    k0, _, k2 = fb.random.split(key, 3)
    assert a.seen == [k0] and b.seen == [k2] and k0 != k2
    assert state == (4, None, 11)
    np.testing.assert_allclose(y, (x + 3) + np.tanh(x) + (x + 10), rtol=1e-15)
    g_x, grads = pullback(np.ones((2, 3)))
    assert type(grads) is fb.Parallel and grads.branches[0] is a
    np.testing.assert_allclose(g_x, 2 + (1 - np.tanh(x) ** 2), rtol=1e-15)


def test_residual_passes_key_and_state_to_f(make):
    c = Counter()
    key, x = fb.random.key(1), make(2, 3)
    y, state = fb.forward(fb.Residual(c), x, train=True, key=key, state=fb.init_state(c))
    assert c.seen == [key] and state == 1
    np.testing.assert_array_equal(y, x + x)
    g_x, grads, state = fb.backward(fb.Residual(c), x, np.ones((2, 3)), key=key, state=state)
    assert state == 2 and grads == fb.Residual(c)
    np.testing.assert_array_equal(g_x, np.full((2, 3), 2.0))


def test_states_thread_through_nested_combinators(make):
    counters = [Counter() for _ in range(4)]
    c0, c1, c2, c3 = counters
    net = fb.Serial((fb.Residual(fb.Parallel((c0, fb.Serial((c1, c2))), combine="sum")), c3))
    key, x = fb.random.key(9), make(2, 3)
    state = fb.init_state(net)
    for step in range(1, 4):
        y, state = fb.forward(net, x, train=True, key=fb.random.fold_in(key, step), state=state)
        assert state == ((step, (step, step)), step)
    # last step: counts 2 in, so y = x + (x + 2) + (x + 2 + 2) + 2
    np.testing.assert_allclose(y, 3 * x + 8, rtol=1e-15)
    seen = [k for c in counters for k in c.seen[-1:]]
    assert len(set(seen)) == 4  # every counter got its own key on the last step
    k_res, k_c3 = fb.random.split(fb.random.fold_in(key, 3), 2)
    assert c3.seen[-1] == k_c3 and c0.seen[-1] == fb.random.split(k_res, 2)[0]


def test_one_path_a_stateful_layer_needs_its_state_also_in_inference(make):
    c = Counter()
    net = fb.Serial((fb.Residual(c), fb.Parallel((c, fb.Identity()))))
    x = make(2, 3)
    with pytest.raises(fb.StructureError, match=r"^layers\[0\]\.f: Counter needs an int state"):
        fb.forward(net, x)  # the plain call runs the same vjp_ctx, without a state
    state = fb.init_state(net)
    y, new_state = fb.forward(net, x, state=state)
    np.testing.assert_array_equal(y, np.concatenate([2 * x, 2 * x], -1))
    assert new_state == (1, (1, None))
    g_x, _, _ = fb.backward(net, x, np.ones((2, 6)), state=state)
    np.testing.assert_array_equal(g_x, np.full((2, 3), 4.0))
    assert c.seen == [None, None, None, None, None]  # inference: no key


def test_wrong_state_structure_names_the_place(make):
    par = fb.Parallel((Counter(), Counter()))
    x = make(2, 3)
    with pytest.raises(fb.StructureError, match=r"^Parallel of 2 branches needs a tuple of 2"):
        fb.forward(par, x, state=(0,))
    net = fb.Serial((fb.Residual(par),))
    with pytest.raises(fb.StructureError, match=r"^layers\[0\]\.f: Parallel of 2 branches"):
        fb.forward(net, x, state=([0, 0],))
    with pytest.raises(fb.StructureError, match=r"^layers\[0\]\.f\.branches\[1\]: Counter needs"):
        fb.forward(net, x, state=((0, "zero"),))


# --- optimizers --------------------------------------------------------------------------------


def _net_and_data(make):
    k1, k2 = keys(11, 2)
    net = fb.Serial(
        (
            fb.Parallel((dense(k1, 3, 4), fb.Identity()), combine="concat"),
            fb.Tanh(),
            fb.Residual(fb.Parallel((residual_mlp(2, width=7), fb.Tanh()), combine="sum")),
            dense(k2, 7, 1),
        )
    )
    x = make(16, 3)
    return net, x, np.sin(x.sum(axis=1, keepdims=True))


def test_update_on_combinator_grads(make):
    net, x, y = _net_and_data(make)
    loss, grads = fb.value_and_grad(net, fb.mse, x, y)
    new = fb.update(net, grads, learning_rate=0.01)
    fb.tree.assert_same_structure(net, new)
    assert type(new.layers[2]) is fb.Residual and new.layers[2].f.combine == "sum"
    triples = zip(fb.tree.leaves_with_paths(net), *map(fb.tree.leaves, (grads, new)), strict=True)
    for (path, p), g, q in triples:
        np.testing.assert_allclose(q, p - 0.01 * g, rtol=1e-15, err_msg=path)
    assert fb.value_and_grad(new, fb.mse, x, y)[0] < loss


def test_adam_trains_through_combinators(make):
    net, x, y = _net_and_data(make)
    opt = fb.optim.adam(1e-2)
    state = opt.init(net)
    first = fb.value_and_grad(net, fb.mse, x, y)[0]
    for _ in range(30):
        loss, grads = fb.value_and_grad(net, fb.mse, x, y)
        net, state = fb.optim.step(opt, net, grads, state)
    assert type(net.layers[0]) is fb.Parallel and net.layers[0].combine == "concat"
    assert loss < 0.5 * first


def test_combine_is_static_and_part_of_the_structure():
    a = fb.Parallel((fb.Identity(),), combine="sum")
    with pytest.raises(fb.StructureError, match="combine"):
        fb.tree.assert_same_structure(a, fb.Parallel((fb.Identity(),)))
    paths = [p for p, _ in fb.tree.leaves_with_paths(fb.Residual(residual_mlp()))]
    assert paths == [f"f.f.layers[{i}].{n}" for i in (0, 2) for n in "Wb"]


# ---------------------------------------------------------------- a custom layer's bad pullback


@attrs.frozen
class _BadPullback(fb.Layer):
    """The identity, whose pullback returns something wrong (``kind`` says what)."""

    kind: str = fb.static()

    def vjp(self, x, need_g_x=True):
        def pullback(g):
            return {
                "shape": (g[:1], self),
                "tuple": ((g, g), self),
                "none": (None, self),
                "single": g,
                "swapped": (self, g),
            }[self.kind]

        return x, pullback


@pytest.mark.parametrize(
    ("kind", "error", "match"),
    [
        ("shape", fb.ShapeError, r"returned g_x of shape \(1, 3\) for input \(4, 3\)"),
        ("tuple", fb.StructureError, "g_x does not match the input"),
        ("none", fb.StructureError, "returned no g_x for a floating-point input"),
        ("single", fb.StructureError, r"must return a pair \(g_x, grads\)"),
        ("swapped", fb.StructureError, r"are g_x and grads swapped\?"),
    ],
)
@pytest.mark.parametrize(
    ("wrap", "where"),
    [
        (lambda bad: fb.Serial((fb.Tanh(), bad, fb.Tanh())), "layers[1]"),
        (lambda bad: fb.Serial((fb.Tanh(), fb.Residual(bad))), "layers[1].f"),
        (lambda bad: fb.Parallel((fb.Tanh(), bad), combine="sum"), "branches[1]"),
    ],
    ids=["Serial", "Residual", "Parallel"],
)
def test_a_bad_custom_pullback_is_caught_where_it_happens(kind, error, match, wrap, where):
    net = wrap(_BadPullback(kind))
    with pytest.raises(error, match=re.escape(where) + ": the pullback of _BadPullback.*" + match):
        fb.backward(net, np.ones((4, 3)), np.ones((4, 3)))
