"""Serial and mlp: composition, gradients, error paths and layer sequences."""

import numpy as np
import pytest
from _spy import Spy

import fnbp as fb


def dense(key, in_size, out_size, dtype=np.float64):
    layer = fb.Dense.init(key, in_size, out_size, dtype=dtype)
    b = fb.random.normal(fb.random.fold_in(key, 99), (out_size,), dtype=dtype)
    return fb.replace(layer, b=b)


def small_net(seed=0, dtype=np.float64):
    k1, k2, k3 = fb.random.split(fb.random.key(seed), 3)
    return fb.Serial(
        (
            dense(k1, 3, 4, dtype),
            fb.Tanh(),
            dense(k2, 4, 5, dtype),
            fb.LeakyReLU(0.2),
            dense(k3, 5, 2, dtype),
            fb.Softmax(),
        )
    )


def nested_net(seed=0):
    k1, k2, k3 = fb.random.split(fb.random.key(seed), 3)
    return fb.Serial(
        (
            fb.Serial((dense(k1, 3, 4), fb.Sigmoid())),
            fb.Serial((fb.Serial((dense(k2, 4, 4), fb.Softplus())), dense(k3, 4, 3))),
            fb.LogSoftmax(),
        )
    )


def test_forward_is_composition(make):
    net = small_net()
    x = make(6, 3)
    h = x
    for layer in net.layers:
        h = fb.forward(layer, h)
    np.testing.assert_array_equal(fb.forward(net, x), h)


def test_backward_is_chain_rule(make):
    net = small_net()
    x, g_y = make(6, 3), make(6, 2)
    g_x, grads = fb.backward(net, x, g_y)
    hs = [x]
    for layer in net.layers:
        hs.append(fb.forward(layer, hs[-1]))
    g = g_y
    expected = []
    for layer, h in zip(reversed(net.layers), reversed(hs[:-1]), strict=True):
        g, layer_grads = fb.backward(layer, h, g)
        expected.append(layer_grads)
    np.testing.assert_allclose(g_x, g, rtol=1e-14)
    assert fb.tree.allclose(grads, fb.Serial(expected[::-1]), rtol=1e-14, atol=0)


def test_grads_have_the_structure_of_the_net(make):
    net = nested_net()
    _, grads = fb.backward(net, make(2, 3), make(2, 3))
    assert type(grads) is fb.Serial
    fb.tree.assert_same_structure(net, grads)
    assert [p for p, _ in fb.tree.leaves_with_paths(grads)] == [
        "layers[0].layers[0].W",
        "layers[0].layers[0].b",
        "layers[1].layers[0].layers[0].W",
        "layers[1].layers[0].layers[0].b",
        "layers[1].layers[1].W",
        "layers[1].layers[1].b",
    ]


def test_check_grads_serial(make):
    report = fb.testing.check_grads(small_net(), make(5, 3), rtol=1e-6)
    assert set(report.errors) == {"x"} | {f"layers[{i}].{n}" for i in (0, 2, 4) for n in "Wb"}


def test_check_grads_nested_serial(make):
    report = fb.testing.check_grads(nested_net(), make(4, 3), rtol=1e-6)
    assert "layers[1].layers[0].layers[0].W" in report.errors
    assert len(report.errors) == 7


def test_check_grads_serial_projection(make):
    k1, k2 = fb.random.split(fb.random.key(5))
    net = fb.Serial((dense(k1, 64, 32), fb.Tanh(), dense(k2, 32, 10), fb.LogSoftmax()))
    assert fb.testing.check_grads(net, make(16, 64), mode="projection", rtol=1e-6).ok


@pytest.mark.parametrize(
    ("hidden", "output"),
    [
        (fb.ReLU(), fb.Identity()),
        (fb.Tanh(), fb.Sigmoid()),
        (fb.LeakyReLU(0.1), fb.Softmax()),
        (fb.Softplus(), fb.LogSoftmax()),
    ],
)
def test_check_grads_mlp(make, hidden, output):
    net = fb.mlp(fb.random.key(3), [3, 6, 5, 4], hidden=hidden, output=output, dtype=np.float64)
    report = fb.testing.check_grads(net, make(5, 3, low=-2.0, high=2.0), rtol=1e-6)
    assert len(report.errors) == 7


def test_empty_serial_is_identity(make):
    x = make(2, 3)
    np.testing.assert_array_equal(fb.forward(fb.Serial(()), x), x)


def test_serial_accepts_a_list():
    net = fb.Serial([fb.ReLU(), fb.Tanh()])
    assert net.layers == (fb.ReLU(), fb.Tanh())


def test_need_g_x_false_skips_input_gradient(make):
    net = small_net()
    x, g_y = make(3, 3), make(3, 2)
    g_x, grads = fb.backward(net, x, g_y, need_g_x=False)
    assert g_x is None
    assert fb.tree.allclose(grads, fb.backward(net, x, g_y)[1], rtol=0, atol=0)


def test_layers_before_the_first_parameter_are_not_asked_for_g_x(make):
    first, last = Spy(), Spy()
    net = fb.Serial((first, dense(fb.random.key(0), 3, 2), last))
    x = make(4, 3)
    fb.value_and_grad(net, fb.mse, x, np.zeros((4, 2)))
    assert first.asked == [False]
    assert last.asked == [True]
    fb.backward(net, x, np.ones((4, 2)))
    assert first.asked == [False, True]


def test_dense_fed_wrong_width_inside_serial_names_its_place(make):
    k1, k2 = fb.random.split(fb.random.key(0))
    net = fb.Serial((dense(k1, 3, 4), fb.ReLU(), dense(k2, 5, 1)))
    x = make(6, 3)
    pattern = r"^layers\[2\]: Dense\(5 -> 1\) expects input of shape \(N, 5\), got \(6, 4\)"
    with pytest.raises(fb.ShapeError, match=pattern):
        fb.forward(net, x)
    with pytest.raises(fb.ShapeError, match=pattern):
        fb.vjp(net, x)
    with pytest.raises(fb.ShapeError, match=pattern):
        fb.backward(net, x, np.ones((6, 1)))
    with pytest.raises(fb.ShapeError, match=pattern):
        fb.value_and_grad(net, fb.mse, x, np.zeros((6, 1)))


def test_first_layer_wrong_width_names_layers_0(make):
    net = small_net()
    with pytest.raises(fb.ShapeError, match=r"^layers\[0\]: .*\(N, 3\), got \(2, 4\)"):
        fb.forward(net, make(2, 4))


def test_nested_serial_error_gives_nested_path(make):
    net = nested_net()
    bad = fb.Serial((net.layers[0], fb.Serial((fb.Serial((dense(fb.random.key(1), 5, 4),)),))))
    with pytest.raises(fb.ShapeError, match=r"^layers\[1\]\.layers\[0\]\.layers\[0\]: .*\(N, 5\)"):
        fb.forward(bad, make(2, 3))
    with pytest.raises(fb.ShapeError, match=r"^layers\[1\]\.layers\[0\]\.layers\[0\]: "):
        fb.vjp(bad, make(2, 3))


def test_one_dimensional_input_to_serial(make):
    with pytest.raises(fb.ShapeError, match=r"^layers\[0\]: .*got \(3,\)"):
        fb.forward(small_net(), make(3))


@pytest.mark.parametrize("cls", [fb.ReLU, fb.Sigmoid, fb.Dense])
def test_class_instead_of_instance_gets_a_hint(cls):
    with pytest.raises(fb.StructureError, match=rf"layers\[1\].*did you mean {cls.__name__}\(\)\?"):
        fb.Serial((fb.Tanh(), cls))


@pytest.mark.parametrize("bad", [np.ones(3), np.tanh, "relu", None])
def test_non_layers_are_rejected(bad):
    with pytest.raises(fb.StructureError, match=r"layers\[0\] must be a layer"):
        fb.Serial((bad,))


def test_mlp_layer_sequence():
    net = fb.mlp(fb.random.key(0), [2, 8, 4, 1])
    assert [type(layer) for layer in net.layers] == [
        fb.Dense,
        fb.ReLU,
        fb.Dense,
        fb.ReLU,
        fb.Dense,
        fb.Identity,
    ]
    shapes = [(layer.W.shape, layer.b.shape) for layer in net.layers[::2]]
    assert shapes == [((2, 8), (8,)), ((8, 4), (4,)), ((4, 1), (1,))]
    assert all(layer.W.dtype == np.float32 for layer in net.layers[::2])


def test_mlp_hidden_and_output():
    net = fb.mlp(fb.random.key(0), [3, 5, 2], hidden=fb.LeakyReLU(0.3), output=fb.Sigmoid())
    assert net.layers[1] == fb.LeakyReLU(0.3)
    assert type(net.layers[3]) is fb.Sigmoid
    assert len(net.layers) == 4


def test_mlp_single_layer():
    net = fb.mlp(fb.random.key(0), [4, 3], output=fb.Softmax())
    assert [type(layer) for layer in net.layers] == [fb.Dense, fb.Softmax]


def test_mlp_dtype_and_init():
    net = fb.mlp(fb.random.key(0), [3, 4, 2], init="small_normal", dtype=np.float64)
    assert all(leaf.dtype == np.float64 for leaf in fb.tree.leaves(net))
    assert np.abs(net.layers[0].W).max() < 0.1


def test_mlp_layers_get_different_keys():
    net = fb.mlp(fb.random.key(0), [4, 4, 4])
    assert not np.array_equal(net.layers[0].W, net.layers[2].W)


def test_mlp_matches_dense_init_with_split_keys():
    key = fb.random.key(8)
    net = fb.mlp(key, [3, 4, 2])
    k1, k2 = fb.random.split(key, 2)
    np.testing.assert_array_equal(net.layers[0].W, fb.Dense.init(k1, 3, 4).W)
    np.testing.assert_array_equal(net.layers[2].W, fb.Dense.init(k2, 4, 2).W)


@pytest.mark.parametrize("sizes", [[], [3]])
def test_mlp_needs_two_sizes(sizes):
    with pytest.raises(ValueError, match="at least"):
        fb.mlp(fb.random.key(0), sizes)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_serial_dtype_is_preserved(make, dtype):
    net = small_net(dtype=dtype)
    x, g_y = make(4, 3, dtype=dtype), make(4, 2, dtype=dtype)
    assert fb.forward(net, x).dtype == dtype
    g_x, grads = fb.backward(net, x, g_y)
    assert g_x.dtype == dtype
    assert all(leaf.dtype == dtype for leaf in fb.tree.leaves(grads))


# -- handing fresh arrays over (fnbp.core, "Handing arrays over") --------------


def handover_net(seed=0, dtype=np.float32):
    k1, k2, k3 = fb.random.split(fb.random.key(seed), 3)
    return fb.Serial(
        (
            dense(k1, 3, 8, dtype),
            fb.ReLU(),
            dense(k2, 8, 8, dtype),
            fb.Tanh(),
            fb.LayerNorm.init(8, dtype=dtype),
            fb.ReLU(),
            dense(k3, 8, 2, dtype),
        )
    )


def arrays_of(tree):
    return [np.array(leaf, copy=True) for leaf in fb.tree.leaves(tree)]


def test_handover_gives_the_same_bits_and_touches_no_input(monkeypatch):
    net = handover_net()
    x = fb.random.normal(fb.random.key(1), (5, 3), dtype=np.float32)
    g_y = fb.random.normal(fb.random.key(2), (5, 2), dtype=np.float32)
    x.flags.writeable = g_y.flags.writeable = False
    params_before, x_before, g_before = arrays_of(net), x.copy(), g_y.copy()

    y, pullback = fb.vjp(net, x)
    g_x, grads = pullback(g_y)
    monkeypatch.setattr("fnbp.layers.serial.watched", lambda: True)  # no handover
    y_ref, pullback_ref = fb.vjp(net, x)
    g_x_ref, grads_ref = pullback_ref(g_y)

    assert np.array_equal(y, y_ref) and np.array_equal(g_x, g_x_ref)
    for a, b in zip(fb.tree.leaves(grads), fb.tree.leaves(grads_ref), strict=True):
        assert np.array_equal(a, b)
    for a, b in zip(arrays_of(net), params_before, strict=True):
        assert np.array_equal(a, b)
    assert np.array_equal(x, x_before) and np.array_equal(g_y, g_before)


class Fresh:
    """A plain layer whose output is a new array it hands over (and remembers, to look)."""

    fresh_y = True

    def __init__(self):
        self.made = []

    def vjp(self, x, need_g_x=True):
        y = np.array(x, copy=True)
        self.made.append(y)
        return y, lambda g: (g, self)


def test_relu_works_in_the_array_handed_over():
    fresh = Fresh()
    y = fb.forward(fb.Serial((fresh, fb.ReLU())), np.array([[-1.0, 2.0]]))
    assert fresh.made[0] is y or np.shares_memory(fresh.made[0], y)
    assert np.array_equal(fresh.made[0], [[0.0, 2.0]])


def test_nothing_is_handed_over_while_traced():
    fresh = Fresh()
    fb.trace(fb.Serial((fresh, fb.ReLU())), np.array([[-1.0, 2.0]]))
    assert np.array_equal(fresh.made[0], [[-1.0, 2.0]])


class Kept(Fresh):
    fresh_y = False


def test_a_layer_that_does_not_hand_over_keeps_its_output():
    fresh = Kept()
    fb.forward(fb.Serial((fresh, fb.ReLU())), np.array([[-1.0, 2.0]]))
    assert np.array_equal(fresh.made[0], [[-1.0, 2.0]])


@pytest.mark.parametrize("sizes", [[2, 10**12, 1], [2, 2**40]])
def test_mlp_of_huge_sizes_is_refused_before_allocating(sizes):
    with pytest.raises(ValueError, match=r"Dense.init: W would need .* refusing to allocate"):
        fb.mlp(fb.random.key(0), sizes)


@pytest.mark.parametrize("sizes", [[2, 0, 1], [2, 1.5], "23", [2]])
def test_mlp_sizes_are_checked(sizes):
    with pytest.raises(ValueError, match=r"mlp: sizes|Dense.init: (in|out)_size"):
        fb.mlp(fb.random.key(0), sizes)


def test_of_checked_is_the_same_record_as_the_checked_constructor():
    layers = (fb.Dense.init(fb.random.key(0), 2, 3), fb.ReLU())
    quick, checked = fb.Serial.of_checked(layers), fb.Serial(layers)
    assert quick == checked and repr(quick) == repr(checked)
    assert fb.tree.leaves(quick) == fb.tree.leaves(checked)
    with pytest.raises(AttributeError):
        quick.layers = ()  # frozen all the same


# -- verified pullbacks (fnbp.core, "Checked pullbacks") ------------------------


class Raises(fb.Layer):
    """A plain layer whose pullback raises a located error (as a ShapeError would)."""

    def vjp(self, x, need_g_x=True):
        def pullback(g_y):
            raise fb.ShapeError("g_y is not what I expected")

        return x, pullback


class WrongGrads(fb.Layer):
    def vjp(self, x, need_g_x=True):
        return x, lambda g_y: (g_y, "not a record")


@pytest.mark.parametrize("verified", [False, True])
def test_an_error_in_a_pullback_names_its_place_whether_checked_or_not(verified, monkeypatch):
    layer_class = Raises
    if verified:  # as if fnbp's own: Serial calls its pullback as it is
        layer_class = type("RaisesVerified", (Raises,), {"verified": True})
        monkeypatch.setattr(layer_class, "__module__", "fnbp.layers.fake")
    assert fb.core.verified(layer_class()) is verified
    net = fb.Serial((fb.Dense.init(fb.random.key(0), 2, 2), layer_class(), fb.ReLU()))
    _, pullback = fb.vjp(net, np.ones((3, 2)))
    with pytest.raises(fb.ShapeError, match=r"^layers\[1\]: g_y is not what I expected"):
        pullback(np.ones((3, 2)))


def test_your_own_layers_and_subclasses_are_checked():
    class MyDense(fb.Dense):
        def vjp(self, x, need_g_x=True):
            y, _ = super().vjp(x, need_g_x)
            return y, lambda g_y: (g_y, "not a record")

    layer = MyDense.init(fb.random.key(0), 2, 2)
    assert fb.core.verified(fb.Dense.init(fb.random.key(0), 2, 2))
    assert not fb.core.verified(layer) and not fb.core.verified(WrongGrads())
    for bad in (layer, WrongGrads()):
        _, pullback = fb.vjp(fb.Serial((fb.ReLU(), bad)), np.ones((3, 2)))
        with pytest.raises(fb.StructureError, match=r"layers\[1\]: the pullback of .* grads"):
            pullback(np.ones((3, 2)))
