"""Flatten: forward, backward, gradients, errors, dtypes, purity."""

import numpy as np
import pytest

import fnbp as fb


def test_forward_and_backward_by_hand():
    x = np.arange(12.0).reshape(2, 3, 2)
    y, pullback = fb.vjp(fb.Flatten(), x)
    np.testing.assert_array_equal(y, [[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11]])
    g_x, grads = pullback(np.arange(12.0).reshape(2, 6) * 10)
    assert g_x.shape == (2, 3, 2)
    np.testing.assert_array_equal(g_x[1, 2], [100, 110])
    assert grads == fb.Flatten()


@pytest.mark.parametrize("shape", [(1, 3), (3, 2, 2), (2, 2, 3, 2)])
def test_check_grads(make, shape):
    report = fb.testing.check_grads(fb.Flatten(), make(*shape))
    assert set(report.errors) == {"x"}


def test_channels_last_order_is_kept():
    x = np.zeros((1, 2, 2, 3))
    x[0, 0, 1] = [1, 2, 3]  # pixel (0, 1), channels 0..2
    np.testing.assert_array_equal(fb.forward(fb.Flatten(), x)[0, 3:6], [1, 2, 3])


def test_need_g_x_false(make):
    g_x, grads = fb.backward(fb.Flatten(), make(2, 3, 2), make(2, 6), need_g_x=False)
    assert g_x is None and grads == fb.Flatten()


def test_empty_batch_and_zero_size_axes():
    assert fb.forward(fb.Flatten(), np.zeros((0, 3, 2))).shape == (0, 6)
    assert fb.forward(fb.Flatten(), np.zeros((2, 0, 2))).shape == (2, 0)


@pytest.mark.parametrize("shape", [(), (5,)])
def test_needs_a_batch_axis_and_one_more(shape):
    with pytest.raises(fb.ShapeError, match=r"Flatten expects input of shape \(N, \.\.\.\), got"):
        fb.forward(fb.Flatten(), np.zeros(shape))


def test_error_inside_serial_names_the_layer():
    with pytest.raises(fb.ShapeError, match=r"^layers\[1\]: Flatten"):
        fb.forward(fb.Serial((fb.ReLU(), fb.Flatten())), np.zeros(5))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_is_preserved(make, dtype):
    x = make(2, 3, 2, dtype=dtype)
    y, pullback = fb.vjp(fb.Flatten(), x)
    assert y.dtype == pullback(np.ones_like(y))[0].dtype == dtype


def test_inputs_are_not_modified(make):
    x, g_y = make(2, 3, 2), make(2, 6)
    y, pullback = fb.vjp(fb.Flatten(), x)
    assert not y.flags.writeable  # a view of the read-only input, never written
    pullback(g_y)
    np.testing.assert_array_equal(fb.forward(fb.Flatten(), x.copy()), y)


# ----------------------------------------------------------------------------- Reshape


def test_reshape_by_hand_and_back():
    x = np.arange(12.0).reshape(2, 6)
    y, pullback = fb.vjp(fb.Reshape((3, 2)), x)
    np.testing.assert_array_equal(y[1], [[6, 7], [8, 9], [10, 11]])
    g_x, grads = pullback(y * 10)
    np.testing.assert_array_equal(g_x, x * 10)
    assert grads == fb.Reshape((3, 2))


def test_reshape_infers_one_axis_and_adds_a_channel_axis():
    assert fb.forward(fb.Reshape((-1, 2)), np.zeros((4, 3, 4))).shape == (4, 6, 2)
    assert fb.forward(fb.Reshape(-1), np.zeros((4, 3, 4))).shape == (4, 12)
    signals = np.zeros((5, 16))
    net = fb.Serial((fb.Reshape((16, 1)), fb.Conv1D.init(fb.random.key(0), 1, 2, 3)))
    assert fb.forward(net, signals).shape == (5, 14, 2)


def test_reshape_errors():
    with pytest.raises(fb.ShapeError, match=r"Reshape\(4, 2\) cannot reshape .* 6 values"):
        fb.forward(fb.Reshape((4, 2)), np.zeros((3, 6)))
    with pytest.raises(fb.ShapeError, match="7 values per sample do not fill"):
        fb.forward(fb.Reshape((-1, 2)), np.zeros((3, 7)))
    for bad in [(2, -1, -1), (0, 3), (2.5,), "ab", (True, 2)]:
        with pytest.raises(ValueError, match="at most one -1"):
            fb.Reshape(bad)


@pytest.mark.parametrize("x", [(np.ones((2, 3)),), {"a": np.ones((2, 3))}, None])
def test_flatten_of_a_tree_is_a_structure_error(x):
    with pytest.raises(fb.StructureError, match="Flatten expects one array"):
        fb.forward(fb.Flatten(), x)


def test_flatten_of_an_empty_batch():
    y, pullback = fb.vjp(fb.Flatten(), np.ones((0, 2, 3)))
    assert y.shape == (0, 6) and pullback(np.ones((0, 6)))[0].shape == (0, 2, 3)
