"""Dense: y = x @ W + b, its gradients, its initializers and its input checks."""

import math

import numpy as np
import pytest

import fnbp as fb


def dense(in_size, out_size, seed=0, dtype=np.float64, **kwargs):
    return fb.Dense.init(fb.random.key(seed), in_size, out_size, dtype=dtype, **kwargs)


def with_bias(layer, seed=1):
    """The layer with a non-zero bias, so its gradient check is not trivially at b=0."""
    b = fb.random.normal(fb.random.key(seed), layer.b.shape, dtype=layer.b.dtype)
    return fb.replace(layer, b=b)


def test_forward_by_hand():
    layer = fb.Dense(np.array([[1.0, -1.0, 0.5], [2.0, 0.0, -3.0]]), np.array([0.1, 0.2, 0.3]))
    x = np.array([[1.0, 2.0], [-1.0, 0.5]])
    expected = np.array([[5.1, -0.8, -5.2], [0.1, 1.2, -1.7]])
    np.testing.assert_allclose(fb.forward(layer, x), expected, rtol=1e-14)
    np.testing.assert_allclose(layer.forward(x), expected, rtol=1e-14)


def test_backward_formulas(make):
    layer = with_bias(dense(3, 4))
    x, g_y = make(5, 3), make(5, 4)
    g_x, grads = fb.backward(layer, x, g_y)
    assert type(grads) is fb.Dense
    np.testing.assert_allclose(g_x, g_y @ layer.W.T, rtol=1e-14)
    np.testing.assert_allclose(grads.W, x.T @ g_y, rtol=1e-14)
    np.testing.assert_allclose(grads.b, g_y.sum(axis=0), rtol=1e-14)


def test_vjp_agrees_with_backward_and_forward(make):
    layer = with_bias(dense(3, 2))
    x, g_y = make(4, 3), make(4, 2)
    y, pullback = fb.vjp(layer, x)
    np.testing.assert_array_equal(y, fb.forward(layer, x))
    g_x, grads = pullback(g_y)
    g_x2, grads2 = fb.backward(layer, x, g_y)
    np.testing.assert_array_equal(g_x, g_x2)
    assert fb.tree.allclose(grads, grads2, rtol=0, atol=0)


def test_need_g_x_false_skips_input_gradient(make):
    layer = dense(3, 2)
    x, g_y = make(4, 3), make(4, 2)
    g_x, grads = fb.backward(layer, x, g_y, need_g_x=False)
    assert g_x is None
    assert fb.tree.allclose(grads, fb.backward(layer, x, g_y)[1], rtol=0, atol=0)
    _, pullback = fb.vjp(layer, x, need_g_x=False)
    assert pullback(g_y)[0] is None


@pytest.mark.parametrize(("n", "in_size", "out_size"), [(1, 1, 1), (4, 3, 2), (7, 2, 5)])
def test_check_grads(make, n, in_size, out_size):
    layer = with_bias(dense(in_size, out_size, seed=n))
    report = fb.testing.check_grads(layer, make(n, in_size), rtol=1e-6)
    assert set(report.errors) == {"x", "W", "b"}


def test_check_grads_projection_on_larger_shape(make):
    layer = with_bias(dense(64, 32, seed=3))
    report = fb.testing.check_grads(layer, make(16, 64), mode="projection", rtol=1e-6)
    assert set(report.errors) == {"x", "W", "b"}
    assert report.ok


@pytest.mark.parametrize("name", ["glorot_uniform", "glorot_normal", "he_uniform", "he_normal"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_init_shapes_and_dtype(name, dtype):
    layer = fb.Dense.init(fb.random.key(0), 5, 3, init=name, dtype=dtype)
    assert layer.W.shape == (5, 3) and layer.b.shape == (3,)
    assert layer.W.dtype == layer.b.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(layer.b, 0.0)
    assert np.isfinite(layer.W).all() and np.abs(layer.W).sum() > 0


def test_init_default_is_float32():
    assert fb.Dense.init(fb.random.key(0), 2, 2).W.dtype == np.float32


def test_init_small_normal_scale():
    W = dense(400, 300, init="small_normal").W
    assert abs(W.std() - 0.01) < 0.0003
    assert abs(W.mean()) < 0.0003


@pytest.mark.parametrize(("fan_in", "fan_out"), [(400, 300), (50, 700)])
def test_init_glorot_uniform_bounds_and_scale(fan_in, fan_out):
    W = dense(fan_in, fan_out, init="glorot_uniform").W
    a = math.sqrt(6.0 / (fan_in + fan_out))
    assert np.abs(W).max() <= a
    assert np.abs(W).max() > 0.99 * a
    assert W.std() == pytest.approx(a / math.sqrt(3.0), rel=0.02)


def test_init_he_uniform_bounds():
    W = dense(200, 300, init="he_uniform").W
    a = math.sqrt(6.0 / 200)
    assert np.abs(W).max() <= a
    assert np.abs(W).max() > 0.99 * a


@pytest.mark.parametrize(
    ("name", "std"),
    [
        ("glorot_normal", math.sqrt(2.0 / (400 + 300))),
        ("he_normal", math.sqrt(2.0 / 400)),
    ],
)
def test_init_normal_scales(name, std):
    W = dense(400, 300, init=name).W
    assert W.std() == pytest.approx(std, rel=0.02)
    assert abs(W.mean()) < 0.03 * std


def test_init_callable():
    calls = []

    def const(key, shape, dtype):
        calls.append((key, shape, np.dtype(dtype)))
        return np.full(shape, 0.25, dtype)

    k = fb.random.key(7)
    layer = fb.Dense.init(k, 3, 2, init=const, dtype=np.float64)
    assert calls == [(k, (3, 2), np.dtype(np.float64))]
    np.testing.assert_array_equal(layer.W, np.full((3, 2), 0.25))
    assert layer.W.dtype == np.float64


def test_init_unknown_name():
    with pytest.raises(ValueError, match="unknown initializer 'glorot'"):
        fb.Dense.init(fb.random.key(0), 2, 2, init="glorot")


@pytest.mark.parametrize("dtype", [np.int32, np.int64, bool])
def test_init_integer_dtype_raises(dtype):
    with pytest.raises(TypeError, match="float"):
        fb.Dense.init(fb.random.key(0), 2, 2, dtype=dtype)


def test_wrong_number_of_features(make):
    layer = dense(3, 2)
    with pytest.raises(fb.ShapeError, match=r"Dense\(3 -> 2\).*\(N, 3\).*\(4, 5\)"):
        fb.forward(layer, make(4, 5))
    with pytest.raises(fb.ShapeError, match=r"\(N, 3\).*\(4, 5\)"):
        fb.vjp(layer, make(4, 5))


def test_one_dimensional_input_gets_a_hint(make):
    with pytest.raises(fb.ShapeError, match=r"got \(3,\).*x\[None\]"):
        fb.forward(dense(3, 2), make(3))


def test_leading_axes_are_carried_along(make):
    layer, x = dense(3, 2), make(2, 4, 3)
    y = fb.forward(layer, x)
    assert y.shape == (2, 4, 2)
    np.testing.assert_allclose(y, x @ layer.W + layer.b)
    rows = fb.backward(layer, x.reshape(8, 3), np.ones((8, 2)))
    g_x, grads = fb.backward(layer, x, np.ones((2, 4, 2)))
    assert g_x.shape == x.shape
    np.testing.assert_allclose(grads.W, rows[1].W)
    np.testing.assert_allclose(grads.b, rows[1].b)
    assert fb.testing.check_grads(layer, x).ok


def test_wrong_last_axis_of_a_sequence_is_rejected(make):
    with pytest.raises(fb.ShapeError, match=r"\(N, \.\.\., 3\).*\(2, 4, 5\)"):
        fb.forward(dense(3, 2), make(2, 4, 5))


def test_inconsistent_params_are_reported(make):
    bad = fb.Dense(np.ones((3, 2)), np.ones(4))
    with pytest.raises(fb.ShapeError, match=r"W \(3, 2\).*b \(4,\)"):
        fb.forward(bad, make(1, 3))
    mixed = fb.Dense(np.ones((3, 2)), np.ones(2, np.float32))
    with pytest.raises(fb.DTypeError, match=r"one dtype.*W float64, b float32"):
        fb.forward(mixed, make(1, 3))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_is_preserved(make, dtype):
    layer = with_bias(dense(3, 2, dtype=dtype))
    x, g_y = make(4, 3, dtype=dtype), make(4, 2, dtype=dtype)
    assert fb.forward(layer, x).dtype == dtype
    g_x, grads = fb.backward(layer, x, g_y)
    assert g_x.dtype == grads.W.dtype == grads.b.dtype == dtype


def test_float64_input_into_float32_layer(make):
    layer = dense(3, 2, dtype=np.float32)
    x = make(4, 3)
    y = fb.forward(layer, x)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, x.astype(np.float32) @ layer.W, rtol=1e-6)
    g_x, grads = fb.backward(layer, x, make(4, 2))
    assert g_x.dtype == grads.W.dtype == grads.b.dtype == np.float32


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_dtype", [bool, np.int64, np.uint8])
def test_integer_and_boolean_inputs_are_cast(dtype, x_dtype):
    layer = dense(2, 1, dtype=dtype)
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=x_dtype)
    y = fb.forward(layer, x)
    assert y.dtype == dtype
    np.testing.assert_allclose(y, x.astype(dtype) @ layer.W + layer.b, rtol=1e-6)
    g_x, grads = fb.backward(layer, x, np.ones((4, 1)))
    assert g_x.dtype == grads.W.dtype == dtype


# ---------------------------------------------------------------- bad records and arguments


def test_a_dense_without_arrays_is_a_structure_error():
    with pytest.raises(fb.StructureError, match="Dense needs W to be an array, got None"):
        fb.forward(fb.Dense(None, None), np.ones((2, 3)))


@pytest.mark.parametrize("W", [np.ones((3, 2), int), [[1, 2]] * 3], ids=["int array", "int lists"])
def test_a_dense_from_integers_is_a_dtype_error(W):
    with pytest.raises(fb.DTypeError, match="Dense: W must be a float32 or float64 array"):
        fb.Dense(W, np.zeros(2))


def test_a_dense_from_float_lists_and_read_only_views_is_copied():
    layer = fb.Dense([[1.0, 2.0]] * 3, [0.0, 0.0])
    assert layer.W.dtype == np.float64 and not layer.W.flags.writeable
    base = np.ones((3, 2))
    view = base.view()
    view.flags.writeable = False
    layer = fb.Dense(view, np.zeros(2))
    base[0, 0] = 7.0  # the caller can still write through base: the record kept a copy
    assert layer.W[0, 0] == 1.0


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"dtype": None}, fb.DTypeError, "Dense.init: dtype must be float32 or float64, got None"),
        ({"dtype": np.float16}, fb.DTypeError, "got float16"),
        ({"init": np.float16}, ValueError, "unknown initializer"),
        ({"init": [2, 3]}, ValueError, "unknown initializer"),
        ({"init": lambda k, s, d: np.ones((2, 2), d)}, fb.ShapeError, r"returned shape \(2, 2\)"),
        ({"init": lambda k, s, d: np.ones(s)}, fb.DTypeError, "returned dtype float64 for float32"),
    ],
    ids=["dtype None", "float16", "init a class", "init a list", "init shape", "init dtype"],
)
def test_dense_init_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        fb.Dense.init(fb.random.key(0), 3, 4, **kwargs)


def test_an_empty_batch_with_leading_axes():
    layer = fb.Dense.init(fb.random.key(0), 3, 2)
    y, pullback = fb.vjp(layer, np.ones((0, 4, 3), np.float32))
    g_x, grads = pullback(np.ones((0, 4, 2), np.float32))
    assert y.shape == (0, 4, 2) and g_x.shape == (0, 4, 3)
    assert not grads.W.any() and not grads.b.any()
