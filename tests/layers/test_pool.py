"""Pooling layers: hand-worked numbers and routing, gradients, padding, errors, dtypes."""

import numpy as np
import pytest

import fnbp as fb

X44 = np.array([[1.0, 5, 2, 0], [3, 4, 8, 6], [7, 0, 1, 2], [9, 3, 4, 5]])[None, :, :, None]


def grid(a):
    """The single-channel image of a 1 x H x W x 1 array, as a 2-D array."""
    return np.asarray(a)[0, :, :, 0]


def distinct(rng, *shape):
    """Read-only values without ties, at least 1/size apart: MaxPool is differentiable there."""
    size = int(np.prod(shape))
    x = (rng.permutation(size) / size - 0.5).reshape(shape)
    x.flags.writeable = False
    return x


# ----------------------------------------------------------------------------- by hand


def test_max_pool_2x2_by_hand():
    y, pullback = fb.vjp(fb.MaxPool2D(2), X44)
    np.testing.assert_array_equal(grid(y), [[5, 8], [9, 5]])
    g_x, grads = pullback(np.array([[1.0, 2.0], [3.0, 4.0]])[None, :, :, None])
    # each window's gradient goes to its maximum: 5 at (0, 1), 8 at (1, 2), 9 at (3, 0), 5 at (3, 3)
    np.testing.assert_array_equal(
        grid(g_x), [[0, 1, 0, 0], [0, 0, 2, 0], [0, 0, 0, 0], [3, 0, 0, 4]]
    )
    assert grads == fb.MaxPool2D(2)


def test_max_pool_overlapping_windows_accumulate_by_hand():
    y, pullback = fb.vjp(fb.MaxPool2D(2, stride=1), X44)
    np.testing.assert_array_equal(grid(y), [[5, 8, 8], [7, 8, 8], [9, 4, 5]])
    g_x, _ = pullback(np.ones((1, 3, 3, 1)))
    # the 8 at (1, 2) is the maximum of four windows and collects all four
    np.testing.assert_array_equal(
        grid(g_x), [[0, 1, 0, 0], [0, 0, 4, 0], [1, 0, 0, 0], [1, 0, 1, 1]]
    )


def test_max_pool_ties_go_to_the_first_maximum():
    x = np.array([[2.0, 2.0, 1.0, 3.0], [2.0, 2.0, 3.0, 3.0]])[None, :, :, None]
    g_x, _ = fb.backward(fb.MaxPool2D(2), x, np.array([[[[1.0], [1.0]]]]))
    np.testing.assert_array_equal(grid(g_x), [[1, 0, 0, 1], [0, 0, 0, 0]])


def test_avg_pool_2x2_by_hand():
    y, pullback = fb.vjp(fb.AvgPool2D(2), X44)
    np.testing.assert_array_equal(grid(y), [[3.25, 4.0], [4.75, 3.0]])
    g_x, _ = pullback(np.array([[1.0, 2.0], [3.0, 4.0]])[None, :, :, None])
    quarter = [
        [0.25, 0.25, 0.5, 0.5],
        [0.25, 0.25, 0.5, 0.5],
        [0.75, 0.75, 1, 1],
        [0.75, 0.75, 1, 1],
    ]
    np.testing.assert_array_equal(grid(g_x), quarter)


def test_avg_pool_overlapping_by_hand():
    y, pullback = fb.vjp(fb.AvgPool2D(2, stride=1), X44)
    np.testing.assert_array_equal(grid(y)[0], [3.25, 4.75, 4.0])
    g_x, _ = pullback(np.ones((1, 3, 3, 1)))
    np.testing.assert_array_equal(
        grid(g_x), np.array([[1, 2, 2, 1], [2, 4, 4, 2], [2, 4, 4, 2], [1, 2, 2, 1]]) / 4
    )


def test_pool_1d_by_hand():
    x = np.array([1.0, 3.0, 2.0, 5.0, 4.0])[None, :, None]
    np.testing.assert_array_equal(fb.forward(fb.MaxPool1D(2), x)[0, :, 0], [3, 5])
    # "same": ceil(5 / 2) = 3 outputs, the last window is [4, padding]
    y, pullback = fb.vjp(fb.MaxPool1D(2, padding="same"), x)
    np.testing.assert_array_equal(y[0, :, 0], [3, 5, 4])
    np.testing.assert_array_equal(pullback(np.ones((1, 3, 1)))[0][0, :, 0], [0, 1, 0, 1, 1])
    # the average does not count the padding
    y, pullback = fb.vjp(fb.AvgPool1D(2, padding="same"), x)
    np.testing.assert_array_equal(y[0, :, 0], [2, 3.5, 4])
    np.testing.assert_array_equal(pullback(np.ones((1, 3, 1)))[0][0, :, 0], [0.5] * 4 + [1])
    np.testing.assert_array_equal(
        fb.forward(fb.AvgPool1D(3, stride=1), x)[0, :, 0], [2, 10 / 3, 11 / 3]
    )


def test_avg_pool_2d_same_by_hand():
    # 3x3 window, stride 2 on 4x4: padding (0, 1) per axis; counts [[9, 6], [6, 4]]
    y = fb.forward(fb.AvgPool2D(3, stride=2, padding="same"), X44)
    expected = [
        [(1 + 5 + 2 + 3 + 4 + 8 + 7 + 0 + 1) / 9, (2 + 0 + 8 + 6 + 1 + 2) / 6],
        [(7 + 0 + 1 + 9 + 3 + 4) / 6, (1 + 2 + 4 + 5) / 4],
    ]
    np.testing.assert_allclose(grid(y), expected, rtol=1e-15)


def test_global_avg_pool_by_hand():
    x = np.array([[[1.0, 10.0], [2.0, 20.0]], [[3.0, 30.0], [6.0, 60.0]]])[None]  # 1x2x2x2
    y, pullback = fb.vjp(fb.GlobalAvgPool(), x)
    np.testing.assert_array_equal(y, [[3.0, 30.0]])
    g_x, _ = pullback(np.array([[4.0, 8.0]]))
    np.testing.assert_array_equal(g_x[0, :, :, 0], [[1, 1], [1, 1]])
    np.testing.assert_array_equal(g_x[0, :, :, 1], [[2, 2], [2, 2]])
    np.testing.assert_array_equal(fb.forward(fb.GlobalAvgPool(), x[:, 0]), [[1.5, 15.0]])


# ----------------------------------------------------------------------------- gradients

POOLS_2D = [
    fb.MaxPool2D(2),
    fb.MaxPool2D(3, stride=1),
    fb.MaxPool2D((2, 3), stride=(1, 2)),
    fb.MaxPool2D(3, stride=2, padding="same"),
    fb.AvgPool2D(2),
    fb.AvgPool2D(3, stride=1),
    fb.AvgPool2D((3, 2), stride=(2, 1)),
    fb.AvgPool2D(3, stride=2, padding="same"),
]
POOLS_1D = [
    fb.MaxPool1D(2),
    fb.MaxPool1D(3, stride=1),
    fb.MaxPool1D(3, stride=2, padding="same"),
    fb.AvgPool1D(2),
    fb.AvgPool1D(3, stride=1),
    fb.AvgPool1D(2, stride=2, padding="same"),
]


@pytest.mark.parametrize("n", [1, 3])
@pytest.mark.parametrize("layer", POOLS_2D, ids=repr)
def test_pool_2d_check_grads(rng, layer, n):
    report = fb.testing.check_grads(layer, distinct(rng, n, 5, 7, 2))
    assert set(report.errors) == {"x"}


@pytest.mark.parametrize("n", [1, 3])
@pytest.mark.parametrize("layer", POOLS_1D, ids=repr)
def test_pool_1d_check_grads(rng, layer, n):
    fb.testing.check_grads(layer, distinct(rng, n, 7, 3))


@pytest.mark.parametrize("shape", [(1, 4, 3), (3, 4, 5, 2), (2, 2, 3, 2, 2)])
def test_global_avg_pool_check_grads(make, shape):
    fb.testing.check_grads(fb.GlobalAvgPool(), make(*shape))


def test_need_g_x_false(rng):
    x = distinct(rng, 2, 4, 4, 1)
    for layer in (fb.MaxPool2D(2), fb.AvgPool2D(2), fb.GlobalAvgPool()):
        g_x, grads = fb.backward(layer, x, np.ones(fb.forward(layer, x).shape), need_g_x=False)
        assert g_x is None and grads == layer


def test_max_pool_same_never_picks_padding():
    x = -np.ones((1, 3, 3, 1)) * 5  # all negative, padding is -inf not 0
    y = fb.forward(fb.MaxPool2D(2, padding="same"), x)
    np.testing.assert_array_equal(grid(y), [[-5, -5], [-5, -5]])


# ----------------------------------------------------------------------------- hyperparameters


def test_defaults_and_normalisation():
    assert fb.MaxPool2D() == fb.MaxPool2D(pool_size=(2, 2), stride=(2, 2), padding="valid")
    assert fb.AvgPool1D(3).stride == (3,)
    assert fb.MaxPool2D((2, 3), stride=1).stride == (1, 1)
    assert fb.AvgPool2D(padding="SAME").padding == "same"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"pool_size": 0},
        {"pool_size": (2, 2, 2)},
        {"stride": 0},
        {"padding": 1},
        {"padding": "full"},
    ],
)
def test_bad_hyperparameters(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        fb.MaxPool2D(**kwargs)


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("layer", [fb.MaxPool2D(2), fb.AvgPool2D(2)], ids=repr)
def test_wrong_rank(layer):
    name = type(layer).__name__
    with pytest.raises(
        fb.ShapeError,
        match=rf"{name} expects input of shape \(N, H, W, C\), got"
        r" \(8, 28, 28\).*x\[\.\.\., None\]",
    ):
        fb.forward(layer, np.zeros((8, 28, 28)))


def test_1d_pool_wrong_rank():
    with pytest.raises(fb.ShapeError, match=r"MaxPool1D expects input of shape \(N, L, C\)"):
        fb.forward(fb.MaxPool1D(2), np.zeros((2, 4, 4, 1)))


def test_window_larger_than_input():
    with pytest.raises(
        fb.ShapeError, match=r"MaxPool2D.*\(3, 3\).*at least \(3, 3\).*\(1, 2, 5, 1\)"
    ):
        fb.forward(fb.MaxPool2D(3), np.zeros((1, 2, 5, 1)))
    assert fb.forward(fb.MaxPool2D(3, padding="same"), np.zeros((1, 2, 5, 1))).shape == (1, 1, 2, 1)


def test_global_avg_pool_needs_a_spatial_axis():
    with pytest.raises(fb.ShapeError, match=r"GlobalAvgPool expects.*got \(4, 3\)"):
        fb.forward(fb.GlobalAvgPool(), np.zeros((4, 3)))


def test_errors_inside_serial_name_the_layer():
    net = fb.Serial((fb.ReLU(), fb.AvgPool2D(2)))
    with pytest.raises(fb.ShapeError, match=r"^layers\[1\]: AvgPool2D expects"):
        fb.forward(net, np.zeros((2, 4, 4)))


# ----------------------------------------------------------------------------- dtypes, purity

LAYERS = [fb.MaxPool2D(2, stride=1), fb.AvgPool2D(3, padding="same"), fb.GlobalAvgPool()]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layer", LAYERS, ids=repr)
def test_dtype_is_preserved(make, layer, dtype):
    x = make(2, 5, 5, 3, dtype=dtype)
    y, pullback = fb.vjp(layer, x)
    g_x, _ = pullback(np.ones_like(y))
    assert y.dtype == g_x.dtype == dtype


@pytest.mark.parametrize("layer", LAYERS, ids=repr)
def test_integer_inputs_become_float64(layer):
    x = np.arange(50).reshape(2, 5, 5, 1)
    y = fb.forward(layer, x)
    assert y.dtype == np.float64
    np.testing.assert_array_equal(y, fb.forward(layer, x.astype(np.float64)))


@pytest.mark.parametrize("layer", LAYERS, ids=repr)
def test_inputs_are_not_modified(make, layer):
    x = make(2, 5, 5, 3)
    y = fb.forward(layer, x)
    g_y = make(*y.shape)
    copies = x.copy(), g_y.copy()
    fb.backward(layer, x, g_y)
    writeable = x.copy()
    fb.backward(layer, writeable, g_y.copy())
    np.testing.assert_array_equal(copies[0], x)
    np.testing.assert_array_equal(copies[1], g_y)
    np.testing.assert_array_equal(writeable, x)


def test_global_avg_pool_gradient_is_writeable(make):
    g_x, _ = fb.backward(fb.GlobalAvgPool(), make(2, 3, 3, 2), make(2, 2))
    assert g_x.flags.writeable and g_x.flags.c_contiguous


def test_no_floating_point_signals(rng):
    x = distinct(rng, 2, 5, 5, 2) * 1e300
    with np.errstate(all="raise"):
        for layer in (fb.MaxPool2D(2, padding="same"), fb.AvgPool2D(2, padding="same")):
            y = fb.forward(layer, x)
            fb.backward(layer, x, np.ones(y.shape))


def test_global_pooling_over_no_positions_is_a_shape_error():
    with pytest.raises(fb.ShapeError, match="at least one spatial position, got"):
        fb.forward(fb.GlobalAvgPool(), np.ones((2, 0, 3, 4)))
    y, pullback = fb.vjp(fb.GlobalAvgPool(), np.ones((0, 2, 3, 4)))  # an empty batch is fine
    assert y.shape == (0, 4) and pullback(np.ones((0, 4)))[0].shape == (0, 2, 3, 4)


@pytest.mark.parametrize(
    "layer", [fb.MaxPool2D(10**6, padding="same"), fb.AvgPool1D(10**9, padding="same")], ids=repr
)
def test_a_huge_window_with_same_padding_is_refused_before_allocating(layer):
    x = np.ones((1, 4, 4, 1)) if isinstance(layer, fb.MaxPool2D) else np.ones((2, 4, 3))
    with pytest.raises(ValueError, match=r"the padded input would need .* refusing to allocate"):
        fb.forward(layer, x)
