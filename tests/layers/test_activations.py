"""Activations and the softmax family: values, gradients, dtypes, extreme inputs."""

import numpy as np
import pytest

import fnbp as fb

# Each activation with a plain-numpy reference of its forward pass (float64).
REFERENCE = {
    "Identity": (fb.Identity(), lambda x: x),
    "Sigmoid": (fb.Sigmoid(), lambda x: 1.0 / (1.0 + np.exp(-x))),
    "Tanh": (fb.Tanh(), np.tanh),
    "ReLU": (fb.ReLU(), lambda x: np.where(x > 0, x, 0.0)),
    "LeakyReLU(0.01)": (fb.LeakyReLU(), lambda x: np.where(x > 0, x, 0.01 * x)),
    "LeakyReLU(0.2)": (fb.LeakyReLU(0.2), lambda x: np.where(x > 0, x, 0.2 * x)),
    "LeakyReLU(1.5)": (fb.LeakyReLU(1.5), lambda x: np.where(x > 0, x, 1.5 * x)),
    "Softplus": (fb.Softplus(), lambda x: np.log1p(np.exp(x))),
    "Softmax": (
        fb.Softmax(),
        lambda x: np.exp(x) / np.exp(x).sum(axis=-1, keepdims=True),
    ),
    "LogSoftmax": (
        fb.LogSoftmax(),
        lambda x: x - np.log(np.exp(x).sum(axis=-1, keepdims=True)),
    ),
}
NAMES = list(REFERENCE)
LAYERS = [REFERENCE[name][0] for name in NAMES]
KINKED = (fb.ReLU, fb.LeakyReLU)


def inputs(make, layer, *shape, dtype=np.float64, scale=3.0):
    """Random inputs; kept at least 0.05 away from 0 for layers with a kink there."""
    away = 0.05 if isinstance(layer, KINKED) else 0.0
    return make(*shape, dtype=dtype, low=-scale, high=scale, away=away)


@pytest.mark.parametrize("name", NAMES)
def test_forward_matches_reference(make, name):
    layer, ref = REFERENCE[name]
    x = inputs(make, layer, 6, 5)
    np.testing.assert_allclose(fb.forward(layer, x), ref(x), rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("layer", LAYERS, ids=NAMES)
@pytest.mark.parametrize("shape", [(1, 1), (4, 5), (3, 2, 4)])
def test_check_grads(make, layer, shape):
    report = fb.testing.check_grads(layer, inputs(make, layer, *shape), rtol=1e-6)
    assert list(report.errors) == ["x"]


@pytest.mark.parametrize("layer", LAYERS, ids=NAMES)
def test_check_grads_projection(make, layer):
    x = inputs(make, layer, 16, 64)
    assert fb.testing.check_grads(layer, x, mode="projection", rtol=1e-6).ok


@pytest.mark.parametrize("layer", LAYERS, ids=NAMES)
def test_backward_and_vjp_agree_and_need_g_x(make, layer):
    x = inputs(make, layer, 4, 3)
    g_y = make(4, 3)
    g_x, grads = fb.backward(layer, x, g_y)
    y, pullback = fb.vjp(layer, x)
    np.testing.assert_array_equal(y, fb.forward(layer, x))
    np.testing.assert_array_equal(pullback(g_y)[0], g_x)
    fb.tree.assert_same_structure(grads, layer)
    assert fb.tree.leaves(grads) == []
    assert fb.backward(layer, x, g_y, need_g_x=False)[0] is None


@pytest.mark.parametrize("slope", [0.01, 0.2, 3.0])
def test_leaky_relu_gradient_by_hand(slope):
    x = np.array([[-2.0, -0.5, 0.5, 2.0]])
    g_y = np.array([[1.0, 2.0, 3.0, 4.0]])
    g_x, _ = fb.backward(fb.LeakyReLU(slope), x, g_y)
    np.testing.assert_allclose(g_x, [[slope, 2 * slope, 3.0, 4.0]], rtol=1e-15)


def test_relu_gradient_by_hand():
    g_x, _ = fb.backward(fb.ReLU(), np.array([[-1.0, 2.0, -3.0]]), np.array([[5.0, 6.0, 7.0]]))
    np.testing.assert_array_equal(g_x, [[0.0, 6.0, 0.0]])


def test_leaky_relu_slope_is_static():
    assert fb.LeakyReLU(1).slope == 1.0 and isinstance(fb.LeakyReLU(1).slope, float)
    assert fb.LeakyReLU().slope == 0.01
    assert fb.LeakyReLU(0.1) == fb.LeakyReLU(0.1)
    assert fb.LeakyReLU(0.1) != fb.LeakyReLU(0.2)
    with pytest.raises(fb.StructureError, match="slope"):
        fb.tree.assert_same_structure(
            fb.Serial((fb.LeakyReLU(0.1), fb.Dense(np.ones((1, 1)), np.ones(1)))),
            fb.Serial((fb.LeakyReLU(0.2), fb.Dense(np.ones((1, 1)), np.ones(1)))),
        )


@pytest.mark.parametrize("layer", LAYERS, ids=NAMES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_is_preserved(make, layer, dtype):
    x = inputs(make, layer, 4, 3, dtype=dtype)
    y = fb.forward(layer, x)
    g_x, _ = fb.backward(layer, x, make(4, 3, dtype=dtype))
    y2, pullback = fb.vjp(layer, x)
    assert y.dtype == y2.dtype == g_x.dtype == pullback(make(4, 3, dtype=dtype))[0].dtype == dtype


@pytest.mark.parametrize("layer", LAYERS, ids=NAMES)
def test_float32_backward_with_float64_cotangent_stays_float32(make, layer):
    x = inputs(make, layer, 4, 3, dtype=np.float32)
    g_x, _ = fb.backward(layer, x, make(4, 3))
    assert g_x.dtype == np.float32


EXTREME = np.array([[-1000.0, 0.0, 1000.0], [1000.0, 1000.0, -1000.0], [0.0, 0.0, 0.0]])


@pytest.mark.parametrize("layer", LAYERS, ids=NAMES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extreme_inputs_raise_nothing_and_stay_finite(layer, dtype):
    x = EXTREME.astype(dtype)
    with np.errstate(all="raise"):
        y = fb.forward(layer, x)
        g_x, _ = fb.backward(layer, x, np.ones_like(x))
        g_x2, _ = fb.vjp(layer, x)[1](np.ones_like(x))
    assert np.isfinite(y).all() and np.isfinite(g_x).all() and np.isfinite(g_x2).all()
    assert y.dtype == g_x.dtype == dtype


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extreme_values_are_right(dtype):
    x = np.array([[-1000.0, 0.0, 1000.0]], dtype)
    np.testing.assert_array_equal(fb.forward(fb.Sigmoid(), x), [[0.0, 0.5, 1.0]])
    np.testing.assert_array_equal(fb.forward(fb.Tanh(), x), [[-1.0, 0.0, 1.0]])
    # softplus(-1000) = exp(-1000) is below every float's range: ~0 up to a tiny absolute error
    np.testing.assert_allclose(
        fb.forward(fb.Softplus(), x), [[0.0, np.log(2.0), 1000.0]], rtol=1e-6, atol=1e-30
    )
    np.testing.assert_allclose(fb.forward(fb.Softmax(), x), [[0.0, 0.0, 1.0]], atol=1e-30)
    np.testing.assert_allclose(fb.forward(fb.LogSoftmax(), x), [[-2000.0, -1000.0, 0.0]], rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_rows_sum_to_one(make, dtype):
    x = make(6, 7, dtype=dtype, low=-20.0, high=20.0)
    y = fb.forward(fb.Softmax(), x)
    assert (y >= 0).all()
    np.testing.assert_allclose(y.sum(axis=-1), 1.0, rtol=1e-6 if dtype == np.float32 else 1e-14)


def test_softmax_acts_on_last_axis_and_is_shift_invariant(make):
    x = make(2, 3, 4)
    y = fb.forward(fb.Softmax(), x)
    np.testing.assert_allclose(y.sum(axis=-1), np.ones((2, 3)), rtol=1e-14)
    np.testing.assert_allclose(fb.forward(fb.Softmax(), x + 100.0), y, rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_log_softmax_is_log_of_softmax(make, dtype):
    x = make(5, 4, dtype=dtype, low=-10.0, high=10.0)
    np.testing.assert_allclose(
        fb.forward(fb.LogSoftmax(), x),
        np.log(fb.forward(fb.Softmax(), x)),
        rtol=1e-5 if dtype == np.float32 else 1e-12,
        atol=1e-6 if dtype == np.float32 else 1e-14,
    )


def test_softmax_backward_matches_jacobian(make):
    x, g_y = make(3, 4), make(3, 4)
    y = fb.forward(fb.Softmax(), x)
    g_x, _ = fb.backward(fb.Softmax(), x, g_y)
    for n in range(3):
        jac = np.diag(y[n]) - np.outer(y[n], y[n])
        np.testing.assert_allclose(g_x[n], jac.T @ g_y[n], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("layer", LAYERS, ids=NAMES)
def test_inputs_are_not_modified(make, layer):
    x, g_y = inputs(make, layer, 4, 3), make(4, 3)
    writeable_x = x.copy()
    fb.forward(layer, x)
    fb.backward(layer, x, g_y)
    fb.backward(layer, writeable_x, g_y.copy())
    np.testing.assert_array_equal(writeable_x, x)


@pytest.mark.parametrize("shape", [(4, 256), (3, 4, 64), (1024,), (5, 7)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_forward_equals_numpy_maximum_bit_for_bit(shape, dtype):
    """float32 arrays of a multiple of 256 elements take a row-wise path: same bits."""
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(shape) * 10).astype(dtype)
    flat = x.reshape(-1)
    flat[:6] = [np.nan, np.inf, -np.inf, -0.0, 0.0, -1e-40]
    x.setflags(write=False)
    y = fb.ReLU().forward(x)
    expected = np.maximum(x, dtype(0))
    assert y.shape == x.shape and y.dtype == x.dtype
    assert np.array_equal(y, expected, equal_nan=True)
    assert np.array_equal(np.signbit(y), np.signbit(expected))
    assert not np.shares_memory(y, x)


def test_relu_forward_on_a_non_contiguous_float32_view():
    x = np.arange(-512, 512, dtype=np.float32).reshape(32, 32)[:, ::2]
    x.setflags(write=False)
    assert np.array_equal(fb.ReLU().forward(x), np.maximum(x, 0))
    assert np.array_equal(fb.ReLU().forward(x.T), np.maximum(x.T, 0))


# ---------------------------------------------------------------- 0-d and non-array inputs

ELEMENTWISE = [
    fb.Identity(),
    fb.Sigmoid(),
    fb.Tanh(),
    fb.ReLU(),
    fb.LeakyReLU(0.1),
    fb.Softplus(),
    fb.GELU(),
    fb.GELU(approximate="tanh"),
    fb.ELU(),
    fb.SiLU(),
]


@pytest.mark.parametrize("layer", ELEMENTWISE, ids=lambda layer: repr(layer))
@pytest.mark.parametrize("x", [0.5, np.float64(-0.5), np.array(2.0), 3], ids=str)
def test_elementwise_activations_take_a_0d_input(layer, x):
    """A 0-d input (a number) gives a 0-d output and gradient, as for any other shape."""
    y, pullback = fb.vjp(layer, x)
    g_x, _ = pullback(np.float64(1.0))
    y1, pullback1 = fb.vjp(layer, np.array([x], dtype=np.float64))
    assert type(y) is np.ndarray and y.shape == () and g_x.shape == ()
    assert y == y1[0] and g_x == pullback1(np.ones(1))[0][0]


@pytest.mark.parametrize("layer", [fb.Softmax(), fb.LogSoftmax()], ids=repr)
@pytest.mark.parametrize("x", [np.float64(1.0), np.ones((3, 0))], ids=["0-d", "no classes"])
def test_the_softmax_family_needs_a_class_axis(layer, x):
    with pytest.raises(fb.ShapeError, match=r"works along the last axis .* needs at least one"):
        fb.forward(layer, x)


@pytest.mark.parametrize("layer", [fb.Sigmoid(), fb.Softmax(), fb.ReLU()], ids=repr)
def test_several_inputs_are_not_stacked(layer):
    with pytest.raises(fb.StructureError, match="input must be one array, got a tuple"):
        fb.forward(layer, (np.ones((2, 3)), np.ones((2, 3))))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layer", [fb.Softmax(), fb.LogSoftmax()], ids=repr)
def test_rows_spanning_the_whole_float_range_stay_finite_and_silent(layer, dtype):
    big = np.finfo(dtype).max
    x = np.array([[big, -big, 0.0], [-big, -big, -big]], dtype)
    with np.errstate(all="raise"):
        y, pullback = fb.vjp(layer, x)
        g_x, _ = pullback(np.ones_like(x))
    assert np.isfinite(y).all() and np.isfinite(g_x).all()
    np.testing.assert_allclose(fb.Softmax().forward(x), [[1, 0, 0], [1 / 3, 1 / 3, 1 / 3]])


# ---------------------------------------------------------------- tails and the float edges


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_and_silu_are_exact_in_the_far_tail(dtype):
    sigmoid_minus_40 = 4.248354255291589e-18  # 1 / (1 + e^40), to 16 digits
    rtol = 4 * np.finfo(dtype).eps
    x = np.array([-40.0, 40.0], dtype)
    np.testing.assert_allclose(fb.forward(fb.Sigmoid(), x), [sigmoid_minus_40, 1.0], rtol=rtol)
    np.testing.assert_allclose(fb.forward(fb.SiLU(), x), [-40 * sigmoid_minus_40, 40.0], rtol=rtol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layer", ELEMENTWISE, ids=lambda layer: repr(layer))
def test_the_float_edges_give_finite_values_and_gradients_silently(layer, dtype):
    big = np.finfo(dtype).max
    x = np.array([-big, -1e30, -1000.0, -88.0, 0.0, 88.0, 1000.0, 1e30, big], dtype)
    with np.errstate(all="raise", under="ignore"):
        y, pullback = fb.vjp(layer, x)
        g_x, _ = pullback(np.ones_like(x))
    assert y.dtype == dtype and np.isfinite(y).all() and np.isfinite(g_x).all()
