"""Conv1D and Conv2D: hand-worked numbers, a naive reference, gradients, errors, dtypes."""

import math

import numpy as np
import pytest

import fnbp as fb
import fnbp.layers.conv as conv_module


def conv2d(c_in, c_out, kernel, seed=0, dtype=np.float64, **kwargs):
    """A Conv2D with random weights and a random (non-zero) bias."""
    key = fb.random.key(seed)
    layer = fb.Conv2D.init(key, c_in, c_out, kernel, dtype=dtype, **kwargs)
    b = fb.random.normal(fb.random.fold_in(key, 1), (c_out,), dtype=dtype)
    return fb.replace(layer, b=b)


def conv1d(c_in, c_out, kernel, seed=0, dtype=np.float64, **kwargs):
    key = fb.random.key(seed)
    layer = fb.Conv1D.init(key, c_in, c_out, kernel, dtype=dtype, **kwargs)
    b = fb.random.normal(fb.random.fold_in(key, 1), (c_out,), dtype=dtype)
    return fb.replace(layer, b=b)


def image(values, dtype=np.float64):
    """A 1 x H x W x 1 image from a 2-D list."""
    return np.array(values, dtype)[None, :, :, None]


X44 = image([[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12], [13, 14, 15, 16]])
ONES22 = fb.Conv2D(np.ones((2, 2, 1, 1)), np.zeros(1))


# ----------------------------------------------------------------------------- by hand


def test_conv2d_ones_kernel_stride_1_by_hand():
    y, pullback = fb.vjp(ONES22, X44)
    np.testing.assert_array_equal(y[0, :, :, 0], [[14, 18, 22], [30, 34, 38], [46, 50, 54]])
    g_x, grads = pullback(np.ones((1, 3, 3, 1)))
    # each pixel receives one 1 per window that reads it
    np.testing.assert_array_equal(
        g_x[0, :, :, 0], [[1, 2, 2, 1], [2, 4, 4, 2], [2, 4, 4, 2], [1, 2, 2, 1]]
    )
    # g_W[i, j] = sum of the pixels that kernel offset (i, j) touches
    np.testing.assert_array_equal(grads.W[:, :, 0, 0], [[54, 63], [90, 99]])
    np.testing.assert_array_equal(grads.b, [9])


def test_conv2d_ones_kernel_stride_2_with_bias_by_hand():
    layer = fb.replace(ONES22, b=np.array([0.5]))
    layer = fb.Conv2D(layer.W, layer.b, stride=2)
    y, pullback = fb.vjp(layer, X44)
    np.testing.assert_array_equal(y[0, :, :, 0], [[14.5, 22.5], [46.5, 54.5]])
    g_x, grads = pullback(np.array([[1.0, 2.0], [3.0, 4.0]])[None, :, :, None])
    # non-overlapping windows: each pixel gets its own window's g_y
    np.testing.assert_array_equal(
        g_x[0, :, :, 0], [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]]
    )
    # g_W[0, 0] = 1*1 + 2*3 + 3*9 + 4*11, ...
    np.testing.assert_array_equal(grads.W[:, :, 0, 0], [[78, 88], [118, 128]])
    np.testing.assert_array_equal(grads.b, [10])


def test_conv2d_same_padding_by_hand():
    # 3x3 image, 2x2 kernel, "same": one row and one column of zeros at the end (TF rule)
    layer = fb.Conv2D(np.array([[1.0, 2.0], [3.0, 4.0]])[:, :, None, None], [0.0], padding="same")
    y = fb.forward(layer, image([[1, 2, 3], [4, 5, 6], [7, 8, 9]]))
    expected = [
        [1 + 4 + 12 + 20, 2 + 6 + 15 + 24, 3 + 18],
        [4 + 10 + 21 + 32, 5 + 12 + 24 + 36, 6 + 27],
        [7 + 16, 8 + 18, 9],
    ]
    np.testing.assert_array_equal(y[0, :, :, 0], expected)


def test_conv1d_difference_kernel_by_hand():
    layer = fb.Conv1D(np.array([1.0, 0.0, -1.0])[:, None, None], [0.0])
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0])[None, :, None]
    y, pullback = fb.vjp(layer, x)
    np.testing.assert_array_equal(y[0, :, 0], [-2, -2, -2])
    g_x, grads = pullback(np.array([1.0, 2.0, 3.0])[None, :, None])
    # g_x[m] = sum_l g_y[l] W[m - l]
    np.testing.assert_array_equal(g_x[0, :, 0], [1, 2, 2, -2, -3])
    # g_W[i] = sum_l g_y[l] x[l + i]
    np.testing.assert_array_equal(grads.W[:, 0, 0], [14, 20, 26])
    np.testing.assert_array_equal(grads.b, [6])


def test_conv1d_same_and_strided_by_hand():
    W = np.array([1.0, 0.0, -1.0])[:, None, None]
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0])[None, :, None]
    # padded [0, 1, 2, 3, 4, 5, 0]
    same = fb.forward(fb.Conv1D(W, [0.0], padding="same"), x)
    np.testing.assert_array_equal(same[0, :, 0], [-2, -2, -2, -2, 4])
    strided = fb.forward(fb.Conv1D(W, [0.0], stride=2, padding="same"), x)
    np.testing.assert_array_equal(strided[0, :, 0], [-2, -2, 4])
    explicit = fb.forward(fb.Conv1D(W, [1.0], padding=((2, 0),)), x)
    # padded [0, 0, 1, 2, 3, 4, 5]
    np.testing.assert_array_equal(explicit[0, :, 0], [0, -1, -1, -1, -1])


def test_conv1d_two_channels_by_hand():
    # W[i, c, o]: output 0 sums both channels at offset 0; output 1 is channel 1 at offset 1
    W = np.zeros((2, 2, 2))
    W[0, 0, 0] = W[0, 1, 0] = 1.0
    W[1, 1, 1] = 10.0
    x = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])[None]
    y = fb.forward(fb.Conv1D(W, [0.0, 0.5]), x)
    np.testing.assert_array_equal(y[0], [[3.0, 40.5], [7.0, 60.5]])


# ----------------------------------------------------------------------------- naive reference


def tf_same_pads(size, k, s):
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


def naive_conv2d(x, W, b, stride, pads):
    """The definition, one output position at a time."""
    xp = np.pad(x, ((0, 0), *pads, (0, 0)))
    kh, kw = W.shape[:2]
    sh, sw = stride
    h_out = (xp.shape[1] - kh) // sh + 1
    w_out = (xp.shape[2] - kw) // sw + 1
    y = np.empty((x.shape[0], h_out, w_out, W.shape[3]))
    for n in range(x.shape[0]):
        for h in range(h_out):
            for w in range(w_out):
                patch = xp[n, h * sh : h * sh + kh, w * sw : w * sw + kw, :]
                y[n, h, w] = np.tensordot(patch, W, axes=3) + b
    return y


@pytest.mark.parametrize("seed", range(12))
def test_conv2d_matches_naive_loops(seed):
    rng = np.random.default_rng(seed)
    n, c_in, c_out = rng.integers(1, 4), rng.integers(1, 4), rng.integers(1, 4)
    kh, kw = rng.integers(1, 5, size=2)
    sh, sw = rng.integers(1, 4, size=2)
    h, w = kh + rng.integers(0, 6), kw + rng.integers(0, 6)
    padding = ["valid", "same", ((1, 0), (2, 1)), int(rng.integers(0, 3))][seed % 4]
    if padding == "valid":
        pads = ((0, 0), (0, 0))
    elif padding == "same":
        pads = (tf_same_pads(h, kh, sh), tf_same_pads(w, kw, sw))
    elif isinstance(padding, int):
        pads = ((padding, padding),) * 2
    else:
        pads = padding
    x = rng.normal(size=(n, h, w, c_in))
    W, b = rng.normal(size=(kh, kw, c_in, c_out)), rng.normal(size=c_out)
    layer = fb.Conv2D(W, b, stride=(sh, sw), padding=padding)
    expected = naive_conv2d(x, W, b, (sh, sw), pads)
    np.testing.assert_allclose(fb.forward(layer, x), expected, rtol=1e-12, atol=1e-12)
    if padding == "same":
        assert expected.shape[1:3] == (math.ceil(h / sh), math.ceil(w / sw))


def test_conv1d_is_conv2d_with_height_one(make):
    layer2 = conv2d(2, 3, (1, 3), stride=(1, 2), padding=((0, 0), (1, 2)))
    layer1 = fb.Conv1D(layer2.W[0], layer2.b, stride=2, padding=((1, 2),))
    x = make(3, 7, 2)
    np.testing.assert_allclose(
        fb.forward(layer1, x), fb.forward(layer2, x[:, None])[:, 0], rtol=1e-14
    )
    g_y = make(3, 4, 3)
    g_x1, g1 = fb.backward(layer1, x, g_y)
    g_x2, g2 = fb.backward(layer2, x[:, None], g_y[:, None])
    np.testing.assert_allclose(g_x1, g_x2[:, 0], rtol=1e-14)
    np.testing.assert_allclose(g1.W, g2.W[0], rtol=1e-14)


# ----------------------------------------------------------------------------- gradients

PADDINGS_2D = ["valid", "same", 1, ((1, 0), (2, 1))]


@pytest.mark.parametrize("n", [1, 3])
@pytest.mark.parametrize("stride", [1, 2, (2, 1)])
@pytest.mark.parametrize("padding", PADDINGS_2D, ids=str)
def test_conv2d_check_grads(make, n, stride, padding):
    layer = conv2d(2, 3, (2, 3), seed=n, stride=stride, padding=padding)
    report = fb.testing.check_grads(layer, make(n, 5, 6, 2))
    assert set(report.errors) == {"x", "W", "b"}


@pytest.mark.parametrize("n", [1, 3])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("padding", ["valid", "same", 2, ((0, 1),)], ids=str)
def test_conv1d_check_grads(make, n, stride, padding):
    layer = conv1d(2, 3, 3, seed=n, stride=stride, padding=padding)
    report = fb.testing.check_grads(layer, make(n, 7, 2))
    assert set(report.errors) == {"x", "W", "b"}


def test_conv2d_check_grads_projection_on_larger_shape(make):
    layer = conv2d(4, 8, 3, stride=2, padding="same")
    fb.testing.check_grads(layer, make(4, 11, 9, 4), mode="projection")


def test_stride_larger_than_kernel_leaves_gaps(make):
    layer = conv2d(1, 2, 2, stride=3)
    x = make(2, 7, 7, 1)
    fb.testing.check_grads(layer, x)
    g_x, _ = fb.backward(layer, x, np.ones((2, 2, 2, 2)))
    assert (g_x[:, 2] == 0).all() and (g_x[:, :, 5] == 0).all() and (g_x[:, 6] == 0).all()


def test_backward_and_vjp_agree(make):
    layer = conv2d(2, 3, 3, padding="same", stride=2)
    x, g_y = make(2, 5, 5, 2), make(2, 3, 3, 3)
    y, pullback = fb.vjp(layer, x)
    np.testing.assert_array_equal(y, fb.forward(layer, x))
    g_x, grads = pullback(g_y)
    g_x2, grads2 = fb.backward(layer, x, g_y)
    np.testing.assert_array_equal(g_x, g_x2)
    assert fb.tree.allclose(grads, grads2, rtol=0, atol=0)
    assert type(grads) is fb.Conv2D
    assert grads.stride == layer.stride and grads.padding == layer.padding


def test_need_g_x_false_skips_col2im(make, monkeypatch):
    layer = conv2d(2, 3, 3, padding="same")
    x, g_y = make(2, 4, 4, 2), make(2, 4, 4, 3)
    _, full = fb.backward(layer, x, g_y)

    def boom(*args, **kwargs):
        raise AssertionError("col2im ran although g_x was not needed")

    monkeypatch.setattr(conv_module, "col2im", boom)
    g_x, grads = fb.backward(layer, x, g_y, need_g_x=False)
    assert g_x is None
    assert fb.tree.allclose(grads, full, rtol=0, atol=0)
    net = fb.Serial((layer, fb.ReLU(), fb.Flatten(), fb.Dense.init(fb.random.key(1), 48, 2)))
    fb.value_and_grad(net, fb.mse, x, np.zeros((2, 2)))  # the first conv never needs g_x


# ----------------------------------------------------------------------------- hyperparameters


def test_hyperparameters_are_normalised():
    W, b = np.ones((3, 2, 1, 4)), np.zeros(4)
    assert fb.Conv2D(W, b).stride == (1, 1)
    assert fb.Conv2D(W, b, stride=2).stride == (2, 2)
    assert fb.Conv2D(W, b, stride=[2, 1]).stride == (2, 1)
    assert fb.Conv2D(W, b, padding="SAME").padding == "same"
    assert fb.Conv2D(W, b, padding=1).padding == ((1, 1), (1, 1))
    assert fb.Conv2D(W, b, padding=(1, 2)).padding == ((1, 1), (2, 2))
    assert fb.Conv2D(W, b, padding=((1, 0), 2)).padding == ((1, 0), (2, 2))
    assert fb.Conv1D(W[0], b, padding=((2, 1),)).padding == ((2, 1),)
    assert fb.Conv2D(W, b).kernel_size == (3, 2)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("stride", 0),
        ("stride", (1, 2, 3)),
        ("stride", 1.5),
        ("padding", "full"),
        ("padding", -1),
        ("padding", (1,)),
        ("padding", ((1, 2, 3), 0)),
    ],
)
def test_bad_hyperparameters(field, value):
    with pytest.raises(ValueError, match=field):
        fb.Conv2D(np.ones((2, 2, 1, 1)), np.zeros(1), **{field: value})


def test_conv1d_padding_needs_one_entry_per_axis():
    with pytest.raises(ValueError, match="padding"):
        fb.Conv1D(np.ones((2, 1, 1)), np.zeros(1), padding=(1, 2))


def test_statics_survive_update_and_optimizers(make):
    layer = conv2d(1, 2, 3, stride=2, padding="same")
    x = make(2, 5, 5, 1)
    net = fb.Serial((layer, fb.Flatten()))
    _, grads = fb.backward(net, x, make(2, 18))
    new = fb.update(net, grads, learning_rate=0.1)
    assert new.layers[0].stride == (2, 2) and new.layers[0].padding == "same"
    np.testing.assert_allclose(new.layers[0].W, layer.W - 0.1 * grads.layers[0].W)
    opt = fb.optim.adam(1e-2)
    stepped, _ = fb.optim.step(opt, net, grads, opt.init(net))
    assert stepped.layers[0].padding == "same"


# ----------------------------------------------------------------------------- init


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_init_shapes_and_dtype(dtype):
    layer = fb.Conv2D.init(fb.random.key(0), 3, 8, (3, 5), stride=2, padding="same", dtype=dtype)
    assert layer.W.shape == (3, 5, 3, 8) and layer.b.shape == (8,)
    assert layer.W.dtype == layer.b.dtype == np.dtype(dtype)
    assert (layer.stride, layer.padding) == ((2, 2), "same")
    np.testing.assert_array_equal(layer.b, 0)
    assert fb.Conv1D.init(fb.random.key(0), 3, 8, 5).W.shape == (5, 3, 8)
    assert fb.Conv1D.init(fb.random.key(0), 3, 8, 5).W.dtype == np.float32


def test_init_fans_count_the_receptive_field():
    # fan_in = 3 * 3 * 16 = 144, fan_out = 3 * 3 * 32 = 288
    W = fb.Conv2D.init(fb.random.key(0), 16, 32, 3, init="he_normal", dtype=np.float64).W
    assert W.std() == pytest.approx(math.sqrt(2 / 144), rel=0.03)
    W = fb.Conv2D.init(fb.random.key(0), 16, 32, 3, init="glorot_uniform").W
    limit = math.sqrt(6 / (144 + 288))
    assert limit * 0.99 < np.abs(W).max() <= limit
    W = fb.Conv1D.init(fb.random.key(0), 16, 32, 5, init="he_uniform").W  # fan_in = 80
    assert math.sqrt(6 / 80) * 0.99 < np.abs(W).max() <= math.sqrt(6 / 80)


def test_init_callable_sees_the_kernel_shape():
    shapes = []

    def record(key, shape, dtype):
        shapes.append(shape)
        return np.zeros(shape, dtype)

    fb.Conv2D.init(fb.random.key(0), 3, 4, (2, 5), init=record)
    assert shapes == [(2, 5, 3, 4)]


def test_init_integer_dtype_raises():
    with pytest.raises(TypeError, match="float"):
        fb.Conv2D.init(fb.random.key(0), 1, 1, 3, dtype=np.int32)


# ----------------------------------------------------------------------------- errors


def test_missing_channel_axis():
    layer = fb.Conv2D.init(fb.random.key(0), 3, 4, 3)
    with pytest.raises(
        fb.ShapeError,
        match=r"Conv2D expects input of shape \(N, H, W, 3\), got"
        r" \(8, 28, 28\)",
    ):
        fb.forward(layer, np.zeros((8, 28, 28)))
    gray = fb.Conv2D.init(fb.random.key(0), 1, 4, 3)
    with pytest.raises(fb.ShapeError, match=r"\(8, 28, 28\).*x\[\.\.\., None\]"):
        fb.forward(gray, np.zeros((8, 28, 28)))


def test_wrong_channel_count_and_channels_first_hint():
    layer = fb.Conv2D.init(fb.random.key(0), 3, 4, 3)
    with pytest.raises(fb.ShapeError, match=r"\(N, H, W, 3\), got \(2, 8, 8, 4\)$"):
        fb.forward(layer, np.zeros((2, 8, 8, 4)))
    with pytest.raises(fb.ShapeError, match=r"got \(2, 3, 8, 8\).*channels-last.*\(0, 2, 3, 1\)"):
        fb.vjp(layer, np.zeros((2, 3, 8, 8)))
    with pytest.raises(fb.ShapeError, match=r"Conv1D expects input of shape \(N, L, 3\)"):
        fb.forward(fb.Conv1D.init(fb.random.key(0), 3, 4, 3), np.zeros((2, 8, 8, 3)))


def test_input_smaller_than_kernel():
    layer = fb.Conv2D.init(fb.random.key(0), 1, 1, (3, 2))
    with pytest.raises(fb.ShapeError, match=r"Conv2D.*\(3, 2\).*at least \(3, 2\).*\(1, 2, 5, 1\)"):
        fb.forward(layer, np.zeros((1, 2, 5, 1)))
    assert fb.forward(fb.replace(layer, padding=1), np.zeros((1, 2, 5, 1))).shape == (1, 2, 6, 1)
    same = fb.Conv2D(layer.W, layer.b, padding="same")
    assert fb.forward(same, np.zeros((1, 1, 1, 1))).shape == (1, 1, 1, 1)


def test_errors_inside_serial_name_the_layer():
    net = fb.Serial((fb.ReLU(), fb.Conv2D.init(fb.random.key(0), 3, 4, 3)))
    with pytest.raises(fb.ShapeError, match=r"^layers\[1\]: Conv2D expects.*\(2, 5, 5, 1\)"):
        fb.forward(net, np.zeros((2, 5, 5, 1)))


def test_inconsistent_params_are_reported():
    with pytest.raises(fb.ShapeError, match=r"W \(2, 2, 1\).*b \(1,\)"):
        fb.forward(fb.Conv2D(np.ones((2, 2, 1)), np.ones(1)), np.zeros((1, 3, 3, 1)))
    with pytest.raises(fb.DTypeError, match=r"one dtype.*W float64, b float32"):
        fb.forward(fb.Conv1D(np.ones((2, 1, 1)), np.ones(1, np.float32)), np.zeros((1, 3, 1)))


# ----------------------------------------------------------------------------- dtypes, purity


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layer_fn", [conv1d, conv2d])
def test_dtype_is_preserved(make, dtype, layer_fn):
    layer = layer_fn(2, 3, 2, dtype=dtype, padding="same", stride=2)
    x = make(2, *(5,) * (2 if layer_fn is conv2d else 1), 2, dtype=dtype)
    y, pullback = fb.vjp(layer, x)
    g_x, grads = pullback(np.ones_like(y))
    assert y.dtype == g_x.dtype == grads.W.dtype == grads.b.dtype == dtype


@pytest.mark.parametrize("x_dtype", [np.float64, np.int64, np.uint8, bool])
def test_other_inputs_are_cast_to_the_params_dtype(make, x_dtype):
    layer = conv2d(1, 2, 2, dtype=np.float32)
    x = (make(2, 4, 4, 1) * 3).astype(x_dtype)
    y = fb.forward(layer, x)
    assert y.dtype == np.float32
    g_x, grads = fb.backward(layer, x, np.ones(y.shape))
    assert g_x.dtype == grads.W.dtype == np.float32
    expected = fb.forward(layer, x.astype(np.float32))
    np.testing.assert_array_equal(y, expected)


def test_inputs_are_not_modified(make):
    layer = conv2d(2, 3, 3, padding=((2, 1), (0, 1)), stride=(1, 2))
    x, g_y = make(2, 5, 6, 2), make(2, 6, 3, 3)
    assert not x.flags.writeable and not g_y.flags.writeable
    copies = x.copy(), g_y.copy(), layer.W.copy()
    fb.backward(layer, x, g_y)
    writeable = x.copy()
    fb.backward(layer, writeable, g_y.copy())
    for before, after in zip(copies, (x, g_y, layer.W), strict=True):
        np.testing.assert_array_equal(before, after)
    np.testing.assert_array_equal(writeable, x)


def test_non_contiguous_input(make):
    layer = conv2d(2, 3, 3, stride=2)
    x = make(2, 9, 9, 4)[:, ::-1, 1:8, ::2]
    np.testing.assert_allclose(
        fb.forward(layer, x), fb.forward(layer, np.ascontiguousarray(x)), rtol=1e-14
    )


def test_same_key_same_bits():
    a = fb.Conv2D.init(fb.random.key(5), 2, 3, 3)
    b = fb.Conv2D.init(fb.random.key(5), 2, 3, 3)
    assert a.W.tobytes() == b.W.tobytes()


# ----------------------------------------------------------------------------- in a network


def small_cnn(dtype=np.float64, seed=0):
    _, k2 = fb.random.split(fb.random.key(seed))
    conv = conv2d(1, 2, 3, seed=seed, dtype=dtype, padding="same")
    return fb.Serial(
        (conv, fb.ReLU(), fb.MaxPool2D(2), fb.Flatten(), fb.Dense.init(k2, 18, 3, dtype=dtype))
    )


def test_cnn_end_to_end_check_grads(make):
    report = fb.testing.check_grads(small_cnn(), make(2, 6, 6, 1))
    assert set(report.errors) == {"x", "layers[0].W", "layers[0].b", "layers[4].W", "layers[4].b"}


def test_cnn_trains_and_errors_name_the_layer(make, labels):
    x, y = make(16, 6, 6, 1), labels(16, 3)
    for dtype in (np.float32, np.float64):
        net = small_cnn(dtype)
        opt = fb.optim.adam(1e-2)
        state = opt.init(net)
        first, _ = fb.value_and_grad(net, fb.softmax_cross_entropy, x, y)
        for _ in range(30):
            loss, grads = fb.value_and_grad(net, fb.softmax_cross_entropy, x, y)
            net, state = fb.optim.step(opt, net, grads, state)
        assert loss < 0.8 * first
        assert fb.forward(net, x).dtype == dtype and net.layers[0].W.dtype == dtype
    with pytest.raises(fb.ShapeError, match=r"^layers\[0\]: Conv2D expects .*\(N, H, W, 1\)"):
        fb.forward(net, make(16, 6, 6))


@pytest.mark.parametrize("cls", [fb.Conv1D, fb.Conv2D])
def test_a_stride_or_kernel_beyond_max_elements_is_refused(cls):
    with pytest.raises(ValueError, match=r"stride must be an int in \[1, 2,147,483,648\]"):
        cls.init(fb.random.key(0), 1, 1, 2, stride=2**64)
    with pytest.raises(ValueError, match="kernel_size must be an int >= 1"):
        cls.init(fb.random.key(0), 1, 1, 0)
