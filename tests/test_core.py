"""forward / backward / vjp / value_and_grad / update: numbers, purity, dtypes, errors."""

import attrs
import numpy as np
import pytest

import fnbp as fb

# ------------------------------------------------------- a training step by hand


def test_hand_worked_training_step():
    # Dense(W=[[0.5], [-0.5]], b=[0]) + Sigmoid, BCE, two samples, learning rate 0.1.
    # Numbers computed once with plain Python math (see the comments), not with fnbp.
    net = fb.Serial((fb.Dense(np.array([[0.5], [-0.5]]), np.array([0.0])), fb.Sigmoid()))
    x = np.array([[1.0, 2.0], [0.5, -1.0]])
    y = np.array([[1.0], [0.0]])
    z = [[-0.5], [0.75]]  # x @ W + b
    p = [[0.3775406687981454], [0.679178699175393]]  # 1 / (1 + exp(-z))
    loss = 1.0554739951475034  # (-log(p0) - log(1 - p1)) / 2
    g_z = [[-0.3112296656009273], [0.3395893495876965]]  # (p - y) / N
    g_W = [[-0.14143499080707905], [-0.9620486807895511]]  # x.T @ g_z
    g_b = [0.02835968398676919]  # sum of g_z
    new_W = [[0.5141434990807079], [-0.4037951319210449]]  # W - 0.1 * g_W
    new_b = [-0.002835968398676919]  # b - 0.1 * g_b

    np.testing.assert_allclose(fb.forward(net.layers[0], x), z, rtol=1e-12)
    np.testing.assert_allclose(fb.forward(net, x), p, rtol=1e-12)
    g_p = fb.binary_cross_entropy.value_and_grad(p, y)[1]
    np.testing.assert_allclose(fb.backward(net.layers[1], z, g_p)[0], g_z, rtol=1e-12)
    value, grads = fb.value_and_grad(net, fb.binary_cross_entropy, x, y)
    np.testing.assert_allclose(value, loss, rtol=1e-12)
    np.testing.assert_allclose(fb.backward(net.layers[0], x, g_z)[1].W, g_W, rtol=1e-12)
    np.testing.assert_allclose(grads.layers[0].W, g_W, rtol=1e-12)
    np.testing.assert_allclose(grads.layers[0].b, g_b, rtol=1e-12)
    new = fb.update(net, grads, learning_rate=0.1)
    np.testing.assert_allclose(new.layers[0].W, new_W, rtol=1e-12)
    np.testing.assert_allclose(new.layers[0].b, new_b, rtol=1e-12)
    assert type(new.layers[1]) is fb.Sigmoid
    np.testing.assert_array_equal(net.layers[0].W, [[0.5], [-0.5]])  # old params unchanged


def test_hand_worked_step_sigmoid_bce_on_logits_agrees():
    net = fb.Dense(np.array([[0.5], [-0.5]]), np.array([0.0]))
    x = np.array([[1.0, 2.0], [0.5, -1.0]])
    value, grads = fb.value_and_grad(net, fb.sigmoid_binary_cross_entropy, x, [[1.0], [0.0]])
    np.testing.assert_allclose(value, 1.0554739951475034, rtol=1e-12)
    np.testing.assert_allclose(grads.W, [[-0.14143499080707905], [-0.9620486807895511]], rtol=1e-12)
    np.testing.assert_allclose(grads.b, [0.02835968398676919], rtol=1e-12)


# ------------------------------------------------------------------ the contract


def net_for(seed=0, dtype=np.float64, output=None):
    output = fb.Identity() if output is None else output
    return fb.mlp(fb.random.key(seed), [3, 5, 4, 2], hidden=fb.Tanh(), output=output, dtype=dtype)


def test_backward_is_vjp_pullback(make):
    net = net_for()
    x, g_y = make(4, 3), make(4, 2)
    y, pullback = fb.vjp(net, x)
    np.testing.assert_array_equal(y, fb.forward(net, x))
    g_x, grads = pullback(g_y)
    g_x2, grads2 = fb.backward(net, x, g_y)
    np.testing.assert_array_equal(g_x, g_x2)
    assert fb.tree.allclose(grads, grads2, rtol=0, atol=0)


def test_pullback_can_be_called_twice(make):
    net = net_for()
    x, g_y = make(4, 3), make(4, 2)
    _, pullback = fb.vjp(net, x)
    first = pullback(g_y)
    second = pullback(2 * g_y)
    np.testing.assert_allclose(second[0], 2 * first[0], rtol=1e-14)
    assert fb.tree.allclose(second[1], fb.tree.scale(2.0, first[1]), rtol=1e-14, atol=0)


def test_backward_is_linear_in_g_y(make):
    net = net_for()
    x, a, b = make(4, 3), make(4, 2), make(4, 2)
    ga, gb, gab = (fb.backward(net, x, g)[1] for g in (a, b, a + b))
    assert fb.tree.allclose(gab, fb.tree.add(ga, gb), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize(
    ("loss", "output", "target"),
    [
        (fb.binary_cross_entropy, fb.Sigmoid(), np.array([[0, 1], [1, 1], [0, 0], [1, 0]])),
        (fb.sigmoid_binary_cross_entropy, None, np.array([[0, 1], [1, 1], [0, 0], [1, 0]])),
        (fb.softmax_cross_entropy, None, np.array([0, 1, 1, 0])),
        (fb.softmax_cross_entropy, None, np.eye(2)[[0, 1, 1, 0]]),
        (fb.mse, None, np.array([[0.5, -1.0], [2.0, 0.0], [1.0, 1.0], [0.0, 0.0]])),
    ],
    ids=["bce", "sigmoid_bce", "softmax_ce_labels", "softmax_ce_one_hot", "mse"],
)
def test_value_and_grad_is_loss_then_backward(make, loss, output, target):
    net = net_for(output=output)
    x = make(4, 3)
    value, grads = fb.value_and_grad(net, loss, x, target)
    y = fb.forward(net, x)
    expected_value, g_y = loss.value_and_grad(y, target)
    assert value == expected_value
    assert fb.tree.allclose(grads, fb.backward(net, x, g_y)[1], rtol=1e-14, atol=0)
    fb.tree.assert_same_structure(net, grads)


def test_update_is_sgd(make):
    net = net_for()
    grads = fb.tree.map(lambda p: np.full_like(p, 2.0), net)
    new = fb.update(net, grads, learning_rate=0.25)
    for (path, p), q in zip(fb.tree.leaves_with_paths(net), fb.tree.leaves(new), strict=True):
        np.testing.assert_allclose(q, p - 0.5, rtol=1e-15, err_msg=path)


def test_update_returns_new_readonly_record_and_keeps_old(make):
    net = net_for()
    before = [leaf.copy() for leaf in fb.tree.leaves(net)]
    _, grads = fb.value_and_grad(net, fb.mse, make(4, 3), make(4, 2))
    new = fb.update(net, grads, learning_rate=0.1)
    assert new is not net and type(new) is fb.Serial
    for old, saved, fresh in zip(fb.tree.leaves(net), before, fb.tree.leaves(new), strict=True):
        np.testing.assert_array_equal(old, saved)
        assert not np.array_equal(fresh, saved)
        assert not fresh.flags.writeable
        with pytest.raises(ValueError):
            fresh[...] = 0.0


def test_update_with_zero_learning_rate_is_identity(make):
    net = net_for()
    _, grads = fb.value_and_grad(net, fb.mse, make(4, 3), make(4, 2))
    assert fb.tree.allclose(fb.update(net, grads, learning_rate=0.0), net, rtol=0, atol=0)


def test_update_on_plain_containers():
    params = {"w": (np.array([1.0, 2.0]), [np.array([[3.0]])])}
    grads = {"w": (np.array([10.0, 20.0]), [np.array([[30.0]])])}
    new = fb.update(params, grads, learning_rate=0.1)
    assert type(new["w"]) is tuple and type(new["w"][1]) is list
    np.testing.assert_allclose(new["w"][0], [0.0, 0.0], atol=1e-15)
    np.testing.assert_allclose(new["w"][1][0], [[0.0]], atol=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_update_scalar_parameter(dtype):
    # A 0-d parameter (a learned temperature, say) is a leaf like any other.
    params = (np.array(3.0, dtype), np.array([1.0], dtype))
    grads = (np.array(30.0, dtype), np.array([10.0], dtype))
    new = fb.update(params, grads, learning_rate=0.1)
    assert new[0].shape == () and new[0].dtype == dtype
    np.testing.assert_allclose(new[0], 0.0, atol=1e-6)
    np.testing.assert_allclose(new[1], [0.0], atol=1e-6)


def test_training_reduces_the_loss(make):
    net = net_for()
    x, y = make(8, 3), make(8, 2)
    first, _ = fb.value_and_grad(net, fb.mse, x, y)
    for _ in range(20):
        value, grads = fb.value_and_grad(net, fb.mse, x, y)
        net = fb.update(net, grads, learning_rate=0.1)
    assert value < first


def test_dtype_of():
    assert fb.dtype_of(net_for(dtype=np.float32)) == np.float32
    assert fb.dtype_of(net_for(dtype=np.float64)) == np.float64
    assert fb.dtype_of(fb.Serial((fb.ReLU(),))) == np.float64
    assert fb.dtype_of((np.arange(3), np.ones(2, np.float32))) == np.float32


# ------------------------------------------------------------------------ errors


def test_backward_with_wrong_g_y_shape(make):
    net = net_for()
    with pytest.raises(fb.ShapeError, match=r"g_y has shape \(4, 3\).*output has shape \(4, 2\)"):
        fb.backward(net, make(4, 3), make(4, 3))
    with pytest.raises(fb.ShapeError, match=r"g_y has shape \(2,\)"):
        fb.backward(net, make(4, 3), make(2))


@pytest.mark.parametrize(
    "x", [np.array([["a", "b", "c"]]), np.array([[1 + 1j, 2, 3]]), np.array([[None, 1, 2]])]
)
def test_non_numeric_input(x):
    net = net_for()
    for call in (
        lambda: fb.forward(net, x),
        lambda: fb.vjp(net, x),
        lambda: fb.backward(net, x, np.ones((1, 2))),
        lambda: fb.value_and_grad(net, fb.mse, x, np.ones((1, 2))),
    ):
        with pytest.raises(fb.DTypeError, match="must be numeric"):
            call()
        with pytest.raises(TypeError):
            call()


def test_update_with_grads_of_fewer_layers():
    net = net_for()
    with pytest.raises(fb.StructureError, match=r"^layers: tuple of length 6 vs 5"):
        fb.update(net, fb.Serial(net.layers[:5]), learning_rate=0.1)


def test_update_with_grads_of_wrong_shape_names_the_leaf():
    net = net_for()
    other = net_for(seed=1)
    bad_b = fb.replace(other.layers[2], b=np.zeros(5))
    grads = fb.Serial((*other.layers[:2], bad_b, *other.layers[3:]))
    with pytest.raises(fb.ShapeError, match=r"^layers\[2\]\.b: .*\(4,\).*\(5,\)"):
        fb.update(net, grads, learning_rate=0.1)


def test_update_with_plain_tuple_of_wrong_length():
    with pytest.raises(fb.StructureError, match="tuple of length 2 vs 1"):
        fb.update((np.ones(2), np.ones(3)), (np.ones(2),), learning_rate=0.1)


def test_update_with_a_different_layer_type():
    net = fb.Serial((fb.Dense(np.ones((2, 2)), np.ones(2)), fb.ReLU()))
    grads = fb.Serial((fb.Dense(np.ones((2, 2)), np.ones(2)), fb.Tanh()))
    with pytest.raises(fb.StructureError, match=r"^layers\[1\]: ReLU.*Tanh"):
        fb.update(net, grads, learning_rate=0.1)


# ------------------------------------------------------------------------ purity

PURITY_NETS = {
    "dense": lambda: fb.Dense.init(fb.random.key(0), 3, 2, dtype=np.float64),
    "mlp_relu": lambda: fb.mlp(fb.random.key(1), [3, 4, 2], dtype=np.float64),
    "serial_all": lambda: fb.Serial(
        (
            fb.Identity(),
            fb.Dense.init(fb.random.key(2), 3, 4, dtype=np.float64),
            fb.Sigmoid(),
            fb.Tanh(),
            fb.LeakyReLU(0.1),
            fb.Softplus(),
            fb.Dense.init(fb.random.key(3), 4, 2, dtype=np.float64),
            fb.Softmax(),
            fb.LogSoftmax(),
        )
    ),
    "identity": lambda: fb.Serial((fb.Identity(),)),
}


@pytest.mark.parametrize("name", PURITY_NETS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_readonly_inputs_are_accepted_and_unchanged(make, name, dtype):
    net = PURITY_NETS[name]()
    n_out = 3 if name == "identity" else 2
    x, g_y = make(4, 3, dtype=dtype), make(4, n_out, dtype=dtype)
    target = make(4, n_out, dtype=dtype)
    copies = [a.copy() for a in (x, g_y, target)]
    params = [leaf.copy() for leaf in fb.tree.leaves(net)]

    fb.forward(net, x)
    fb.backward(net, x, g_y)
    fb.backward(net, x, g_y, need_g_x=False)
    _, pullback = fb.vjp(net, x)
    pullback(g_y)
    _, grads = fb.value_and_grad(net, fb.mse, x, target)
    fb.update(net, grads, learning_rate=0.1)

    for a, saved in zip((x, g_y, target), copies, strict=True):
        np.testing.assert_array_equal(a, saved)
    for leaf, saved in zip(fb.tree.leaves(net), params, strict=True):
        np.testing.assert_array_equal(leaf, saved)


@pytest.mark.parametrize("name", PURITY_NETS)
def test_writeable_inputs_are_not_modified(make, name):
    net = PURITY_NETS[name]()
    n_out = 3 if name == "identity" else 2
    x, g_y, target = make(4, 3).copy(), make(4, n_out).copy(), make(4, n_out).copy()
    saved = [a.copy() for a in (x, g_y, target)]
    fb.forward(net, x)
    _, grads = fb.backward(net, x, g_y)
    fb.value_and_grad(net, fb.mse, x, target)
    fb.update(net, grads, learning_rate=0.1)
    for a, b in zip((x, g_y, target), saved, strict=True):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------------ dtypes


def net_and_target(loss, dtype, make, labels):
    if loss is fb.binary_cross_entropy:
        return net_for(dtype=dtype, output=fb.Sigmoid()), make(4, 2, low=0.0, high=1.0) > 0.5
    if loss is fb.sigmoid_binary_cross_entropy:
        return net_for(dtype=dtype), make(4, 2, low=0.0, high=1.0)
    if loss is fb.softmax_cross_entropy:
        return net_for(dtype=dtype), labels(4, 2)
    return net_for(dtype=dtype), make(4, 2)


LOSSES = [
    fb.binary_cross_entropy,
    fb.sigmoid_binary_cross_entropy,
    fb.softmax_cross_entropy,
    fb.mse,
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("loss", LOSSES, ids=[loss.name for loss in LOSSES])
def test_dtype_is_preserved_end_to_end(make, labels, dtype, loss):
    net, target = net_and_target(loss, dtype, make, labels)
    x, g_y = make(4, 3, dtype=dtype), make(4, 2, dtype=dtype)
    assert fb.forward(net, x).dtype == dtype
    g_x, grads = fb.backward(net, x, g_y)
    assert g_x.dtype == dtype
    assert all(leaf.dtype == dtype for leaf in fb.tree.leaves(grads))
    y, pullback = fb.vjp(net, x)
    assert y.dtype == pullback(g_y)[0].dtype == dtype
    value, grads = fb.value_and_grad(net, loss, x, target)
    assert np.asarray(value).dtype == dtype
    assert all(leaf.dtype == dtype for leaf in fb.tree.leaves(grads))
    for lr in (0.1, np.float64(0.1), np.float32(0.1), 1):
        new = fb.update(net, grads, learning_rate=lr)
        assert all(leaf.dtype == dtype for leaf in fb.tree.leaves(new))


def test_float64_grads_do_not_promote_float32_params(make):
    net = net_for(dtype=np.float32)
    grads = fb.tree.map(lambda p: np.ones(p.shape, np.float64), net)
    new = fb.update(net, grads, learning_rate=np.float64(0.5))
    assert all(leaf.dtype == np.float32 for leaf in fb.tree.leaves(new))
    np.testing.assert_allclose(new.layers[0].W, net.layers[0].W - np.float32(0.5), rtol=1e-6)


def test_float64_input_into_float32_net(make):
    net = net_for(dtype=np.float32)
    x = make(4, 3)
    assert fb.forward(net, x).dtype == np.float32
    g_x, grads = fb.backward(net, x, make(4, 2))
    assert g_x.dtype == np.float32
    value, grads = fb.value_and_grad(net, fb.mse, x, make(4, 2))
    assert np.asarray(value).dtype == np.float32
    assert all(leaf.dtype == np.float32 for leaf in fb.tree.leaves(grads))


TRUTH_TABLE = [[0, 0], [0, 1], [1, 0], [1, 1]]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_dtype", [bool, np.int64, np.int8, np.uint8])
def test_truth_table_inputs_are_cast_to_the_params_dtype(dtype, x_dtype):
    net = fb.mlp(fb.random.key(0), [2, 4, 1], output=fb.Sigmoid(), dtype=dtype)
    x = np.array(TRUTH_TABLE, dtype=x_dtype)
    y_and = np.array([[0], [0], [0], [1]], dtype=x_dtype)
    expected = fb.forward(net, np.array(TRUTH_TABLE, dtype=dtype))
    y = fb.forward(net, x)
    assert y.dtype == dtype
    np.testing.assert_array_equal(y, expected)
    g_x, _ = fb.backward(net, x, np.ones((4, 1)))
    assert g_x.dtype == dtype
    value, grads = fb.value_and_grad(net, fb.binary_cross_entropy, x, y_and)
    assert np.asarray(value).dtype == dtype
    new = fb.update(net, grads, learning_rate=0.5)
    assert all(leaf.dtype == dtype for leaf in fb.tree.leaves(new))


def test_truth_table_as_nested_lists():
    net = fb.mlp(fb.random.key(0), [2, 3, 1], dtype=np.float32)
    assert fb.forward(net, TRUTH_TABLE).dtype == np.float32
    value, _ = fb.value_and_grad(net, fb.mse, TRUTH_TABLE, [[0], [1], [1], [0]])
    assert np.asarray(value).dtype == np.float32


# ---------------------------------------------------------- a user-defined layer


@attrs.frozen
class Scale(fb.Layer):
    """y = x * a + c: a user layer with two params and a static field."""

    a: np.ndarray = fb.param()
    c: np.ndarray = fb.param()
    label: str = fb.static(default="scale")

    def vjp(self, x, need_g_x=True):
        y = x * self.a + self.c

        def pullback(g):
            g_x = g * self.a if need_g_x else None
            return g_x, attrs.evolve(self, a=(g * x).sum(axis=0), c=g.sum(axis=0))

        return y, pullback


def user_layer(n=3):
    return Scale(np.linspace(-1.0, 2.0, n), np.linspace(0.5, -0.5, n), label="mine")


def test_user_layer_forward_backward_vjp(make):
    layer = user_layer()
    x, g_y = make(4, 3), make(4, 3)
    np.testing.assert_allclose(fb.forward(layer, x), x * layer.a + layer.c, rtol=1e-15)
    g_x, grads = fb.backward(layer, x, g_y)
    assert type(grads) is Scale and grads.label == "mine"
    np.testing.assert_allclose(g_x, g_y * layer.a, rtol=1e-15)
    np.testing.assert_allclose(grads.a, (g_y * x).sum(axis=0), rtol=1e-15)
    _, pullback = fb.vjp(layer, x, need_g_x=False)
    assert pullback(g_y)[0] is None


def test_user_layer_update(make):
    layer = user_layer()
    _, grads = fb.value_and_grad(layer, fb.mse, make(4, 3), make(4, 3))
    new = fb.update(layer, grads, learning_rate=0.1)
    assert type(new) is Scale and new.label == "mine"
    np.testing.assert_allclose(new.a, layer.a - 0.1 * grads.a, rtol=1e-15)
    np.testing.assert_allclose(new.c, layer.c - 0.1 * grads.c, rtol=1e-15)


def test_user_layer_passes_check_grads(make):
    report = fb.testing.check_grads(user_layer(), make(5, 3))
    assert list(report.errors) == ["x", "a", "c"]


def test_user_layer_inside_serial(make):
    net = fb.Serial(
        (fb.Dense.init(fb.random.key(0), 2, 3, dtype=np.float64), user_layer(), fb.Tanh())
    )
    report = fb.testing.check_grads(net, make(4, 2))
    assert "layers[1].a" in report.errors and "layers[1].c" in report.errors
    _, grads = fb.value_and_grad(net, fb.mse, make(4, 2), make(4, 3))
    assert type(grads.layers[1]) is Scale
    new = fb.update(net, grads, learning_rate=0.1)
    assert new.layers[1].label == "mine"
    assert not np.array_equal(new.layers[1].a, net.layers[1].a)


def test_layer_without_vjp_raises_not_implemented(make):
    @attrs.frozen
    class Nothing(fb.Layer):
        pass

    with pytest.raises(NotImplementedError, match="Nothing must implement vjp"):
        fb.forward(Nothing(), make(1, 1))


# ---------------------------------------------------------------- arguments of the public calls


@pytest.mark.parametrize(
    "net", [np.tanh, fb.ReLU, None, 3], ids=["function", "class", "None", "int"]
)
@pytest.mark.parametrize("call", ["forward", "vjp", "backward"])
def test_a_non_layer_as_the_network_is_a_structure_error(net, call):
    x = np.ones((2, 3))
    args = (net, x, np.ones((2, 3))) if call == "backward" else (net, x)
    with pytest.raises(fb.StructureError, match="must be a layer"):
        getattr(fb, call)(*args)


@pytest.mark.parametrize("call", ["forward", "vjp", "backward"])
def test_train_and_key_are_checked_and_named(call):
    x = np.ones((2, 3))
    args = (fb.Dropout(0.5), x, np.ones((2, 3))) if call == "backward" else (fb.Dropout(0.5), x)
    with pytest.raises(ValueError, match=f"{call}: train must be True or False, got 'yes'"):
        getattr(fb, call)(*args, train="yes")
    with pytest.raises(ValueError, match=f"{call}: key must be an fnbp key"):
        getattr(fb, call)(*args, train=True, key=3)


def test_a_dtype_error_names_the_call():
    with pytest.raises(fb.DTypeError, match=r"forward: input must be numeric .* got float16"):
        fb.forward(fb.Tanh(), np.ones(3, np.float16))


@pytest.mark.parametrize(
    ("g_y", "error", "match"),
    [
        (np.ones((2, 4)), fb.ShapeError, r"g_y has shape \(2, 4\), the output has shape \(2, 3\)"),
        ((np.ones((2, 3)),), fb.StructureError, "g_y does not have the output's structure"),
        (None, fb.StructureError, "g_y does not have the output's structure"),
        (np.ones((2, 3), np.float16), fb.DTypeError, "g_y must be numeric .* float16"),
        (np.ones((2, 3), complex), fb.DTypeError, "g_y must be numeric .* complex"),
    ],
    ids=["shape", "tuple", "None", "float16", "complex"],
)
def test_the_pullback_checks_g_y(g_y, error, match):
    net = fb.Serial((fb.Dense.init(fb.random.key(0), 3, 3), fb.Tanh()))
    _, pullback = fb.vjp(net, np.ones((2, 3), np.float32))
    with pytest.raises(error, match="pullback: " + match):
        pullback(g_y)
    with pytest.raises(error, match="backward: " + match):
        fb.backward(net, np.ones((2, 3), np.float32), g_y)
