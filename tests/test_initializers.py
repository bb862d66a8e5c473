"""PyTorch's and Keras's default initializers, bias initializers, and loading PyTorch weights."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest

import fnbp as fb
from fnbp import initializers

KEY = fb.random.key(3)


def _near_bound(a: np.ndarray, bound: float) -> None:
    assert np.abs(a).max() <= bound
    assert np.abs(a).max() > 0.98 * bound


def test_kaiming_uniform_with_a_sqrt5_is_one_over_sqrt_fan_in():
    # torch.nn.init.kaiming_uniform_: bound = sqrt(3) * gain / sqrt(fan_in), gain for leaky_relu
    fan_in, a = 37, math.sqrt(5.0)
    gain = math.sqrt(2.0 / (1.0 + a * a))
    assert math.sqrt(3.0) * gain / math.sqrt(fan_in) == pytest.approx(1.0 / math.sqrt(fan_in))


def test_torch_scheme_draws_weights_and_biases_from_u_one_over_sqrt_fan_in():
    layer = fb.Dense.init(KEY, 400, 300, init="torch")
    _near_bound(layer.W, 1.0 / math.sqrt(400))
    _near_bound(layer.b, 1.0 / math.sqrt(400))
    assert layer.W.std() == pytest.approx(1.0 / math.sqrt(3 * 400), rel=0.02)
    conv = fb.Conv2D.init(KEY, 8, 300, (3, 5), init="torch")  # fan_in = 3 * 5 * 8
    _near_bound(conv.W, 1.0 / math.sqrt(120))
    _near_bound(conv.b, 1.0 / math.sqrt(120))
    conv1 = fb.Conv1D.init(KEY, 4, 500, 3, init="torch")  # fan_in = 3 * 4
    _near_bound(conv1.b, 1.0 / math.sqrt(12))


def test_keras_scheme_is_glorot_uniform_with_zero_bias():
    keras = fb.Conv2D.init(KEY, 8, 16, 3, init="keras")
    plain = fb.Conv2D.init(KEY, 8, 16, 3, init="glorot_uniform")
    np.testing.assert_array_equal(keras.W, plain.W)
    np.testing.assert_array_equal(keras.b, 0.0)
    _near_bound(fb.Dense.init(KEY, 300, 500, init="keras").W, math.sqrt(6.0 / 800))


def test_the_weight_does_not_depend_on_the_bias_initializer():
    torch = fb.Dense.init(KEY, 5, 4, init="torch")
    np.testing.assert_array_equal(torch.W, fb.Dense.init(KEY, 5, 4, init="torch_uniform").W)
    expected = initializers.torch_bias(fb.random.fold_in(KEY, 1), (4,), np.float32, 5)
    np.testing.assert_array_equal(torch.b, expected)
    zero_bias = fb.Dense.init(KEY, 5, 4, init="torch", bias_init="zeros")
    np.testing.assert_array_equal(zero_bias.W, torch.W)
    np.testing.assert_array_equal(zero_bias.b, 0.0)


def test_bias_init_by_name_or_function_gets_the_weight_fan_in():
    seen = []

    def half(key, shape, dtype, fan_in):
        seen.append((shape, np.dtype(dtype), fan_in))
        return np.full(shape, 0.5, dtype)

    layer = fb.Conv1D.init(KEY, 3, 2, 4, bias_init=half, dtype=np.float64)
    assert seen == [((2,), np.dtype(np.float64), 12)]
    np.testing.assert_array_equal(layer.b, 0.5)
    he = fb.Dense.init(KEY, 300, 400, init="he_uniform", bias_init="torch_bias")
    _near_bound(he.b, 1.0 / math.sqrt(300))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("scheme", ["torch", "keras"])
def test_schemes_keep_the_dtype(scheme, dtype):
    layer = fb.Dense.init(KEY, 3, 2, init=scheme, dtype=dtype)
    assert layer.W.dtype == layer.b.dtype == dtype


def test_unknown_names_list_the_choices():
    with pytest.raises(ValueError, match=r"unknown initializer 'pytorch'.*\['keras', 'torch'\]"):
        fb.Dense.init(KEY, 2, 2, init="pytorch")
    with pytest.raises(
        ValueError, match=r"unknown bias initializer 'one'.*\['torch_bias', 'zeros'\]"
    ):
        fb.Dense.init(KEY, 2, 2, bias_init="one")


# ----------------------------------------------------------------------------- from_torch


def test_dense_from_torch_by_hand():
    weight = np.array([[1.0, 2.0, 3.0], [0.0, -1.0, 0.5]])  # nn.Linear(3, 2): (out, in)
    bias = np.array([0.5, -1.0])
    layer = fb.Dense.from_torch(weight, bias)
    np.testing.assert_array_equal(layer.W, weight.T)
    x = np.array([[1.0, 1.0, 2.0]])
    # y = x W^T + b: [1 + 2 + 6 + 0.5, 0 - 1 + 1 - 1]
    np.testing.assert_array_equal(fb.forward(layer, x), [[9.5, -1.0]])
    assert layer.W.flags.c_contiguous and not np.shares_memory(layer.W, weight)
    np.testing.assert_array_equal(fb.Dense.from_torch(weight).b, [0.0, 0.0])


def test_dense_from_torch_after_a_channels_first_flatten(make):
    c, h, w, out = 3, 2, 4, 5
    weight = make(out, c * h * w)
    feature_map = make(6, c, h, w)  # PyTorch's NCHW
    torch_y = feature_map.reshape(6, -1) @ weight.T  # torch.flatten then Linear
    layer = fb.Dense.from_torch(weight, flatten_shape=(c, h, w))
    fnbp_x = fb.forward(fb.Flatten(), feature_map.transpose(0, 2, 3, 1))  # NHWC, then Flatten
    np.testing.assert_allclose(fb.forward(layer, fnbp_x), torch_y, rtol=1e-12)
    with pytest.raises(fb.ShapeError, match="holds 12 values, but the weight has 24 inputs"):
        fb.Dense.from_torch(weight, flatten_shape=(3, 4))


def torch_conv2d(x, weight, bias, stride=1, padding=0):
    """torch.nn.functional.conv2d by its definition, channels-first:
    y[n, o, i, j] = b[o] + sum_{c, u, v} xp[n, c, i*s + u, j*s + v] w[o, c, u, v]."""
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    c_out, _, kh, kw = weight.shape
    ho = (xp.shape[2] - kh) // stride + 1
    wo = (xp.shape[3] - kw) // stride + 1
    y = np.zeros((x.shape[0], c_out, ho, wo))
    for i in range(ho):
        for j in range(wo):
            patch = xp[:, :, i * stride : i * stride + kh, j * stride : j * stride + kw]
            y[:, :, i, j] = np.einsum("ncuv,ocuv->no", patch, weight) + bias
    return y


def test_conv2d_from_torch_matches_pytorchs_definition(make):
    weight, bias = make(4, 3, 2, 3), make(4)  # (C_out, C_in, kh, kw)
    x = make(2, 3, 5, 6)  # NCHW
    layer = fb.Conv2D.from_torch(weight, bias, stride=2, padding=1)
    assert layer.W.shape == (2, 3, 3, 4)
    np.testing.assert_array_equal(layer.W[1, 2, 0], weight[:, 0, 1, 2])
    y = fb.forward(layer, x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(y, torch_conv2d(x, weight, bias, stride=2, padding=1), rtol=1e-12)


def test_conv1d_from_torch_by_hand():
    weight = np.array([[[1.0, 0.0, -1.0]], [[0.5, 0.5, 0.5]]])  # (C_out=2, C_in=1, kw=3)
    layer = fb.Conv1D.from_torch(weight, np.array([0.0, 1.0]))
    x = np.array([[[1.0], [2.0], [4.0], [8.0]]])  # (N, L, C_in): channels-last
    # output 0: x[l] - x[l+2] -> 1 - 4, 2 - 8; output 1: 0.5 * (sum of 3) + 1 -> 4.5, 8
    np.testing.assert_array_equal(fb.forward(layer, x)[0], [[-3.0, 4.5], [-6.0, 8.0]])


def test_from_torch_checks_layouts_and_dtypes():
    with pytest.raises(fb.ShapeError, match=r"weight must have shape \(out, in\), got \(3,\)"):
        fb.Dense.from_torch(np.ones(3))
    with pytest.raises(fb.ShapeError, match=r"bias must have shape \(2,\), got \(3,\)"):
        fb.Dense.from_torch(np.ones((2, 3)), np.ones(3))
    with pytest.raises(fb.DTypeError, match="bias must be float32, as the other weights"):
        fb.Dense.from_torch(np.ones((2, 3), np.float32), np.ones(2))
    with pytest.raises(fb.DTypeError, match="weight must be float32 or float64, got dtype int64"):
        fb.Dense.from_torch(np.ones((2, 3), np.int64))
    with pytest.raises(fb.ShapeError, match=r"\(C_out, C_in, kh, kw\), got \(2, 3, 3\)"):
        fb.Conv2D.from_torch(np.ones((2, 3, 3)))


def test_docstring_examples_run():
    result = doctest.testmod(initializers)
    assert result.attempted > 0 and result.failed == 0


# ---------------------------------------------------------------- arguments checked before drawing

NAMES = [
    "glorot_uniform",
    "glorot_normal",
    "he_uniform",
    "he_normal",
    "torch_uniform",
    "small_normal",
]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    ("shape", "match"),
    [
        ((), r"shape must be a shape \(a tuple of ints >= 1, at least 1 of them\)"),
        ((0, 3), "ints >= 1"),
        ((-1, 2), "ints >= 1"),
        ((2.5, 3), "a shape"),
        ("ab", "a shape"),
        (None, "a shape"),
        ((10**6, 10**6), "refusing to allocate"),
    ],
    ids=["0-d", "zero", "negative", "float", "str", "None", "huge"],
)
def test_shapes_are_checked(name, shape, match):
    with pytest.raises(ValueError, match=f"{name}: .*" + match):
        getattr(initializers, name)(KEY, shape)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [np.float16, "float16", None, np.int32, complex])
def test_dtypes_are_checked(name, dtype):
    with pytest.raises(fb.DTypeError, match=f"{name}: dtype must be float32 or float64"):
        getattr(initializers, name)(KEY, (3, 2), dtype)


@pytest.mark.parametrize("name", NAMES)
def test_the_key_is_checked(name):
    with pytest.raises(ValueError, match=f"{name}: key must be an fnbp key"):
        getattr(initializers, name)(None, (3, 2))


@pytest.mark.parametrize("name", NAMES)
def test_a_shape_of_one_axis_and_int_like_sizes(name):
    w = getattr(initializers, name)(KEY, [np.int64(4)], np.float64)
    assert w.shape == (4,) and w.dtype == np.float64 and np.isfinite(w).all()


@pytest.mark.parametrize("init", [3, None, [1], fb.ReLU, "nope"], ids=repr)
def test_get_refuses_what_is_not_a_name_or_a_function(init):
    with pytest.raises(ValueError, match="unknown initializer"):
        initializers.get(init)


def test_what_a_custom_initializer_returns_is_checked():
    with pytest.raises(fb.ShapeError, match=r"initializer .* returned shape \(2, 2\) for \(3, 4\)"):
        fb.Dense.init(KEY, 3, 4, init=lambda k, s, d: np.ones((2, 2), d))
    with pytest.raises(fb.DTypeError, match="returned dtype float64 for float32"):
        fb.Dense.init(KEY, 3, 4, init=lambda k, s, d: np.ones(s))
    with pytest.raises(fb.ShapeError, match=r"bias initializer .* returned shape"):
        fb.Dense.init(KEY, 3, 4, bias_init=lambda k, s, d, fan_in: np.ones(2, d))


@pytest.mark.parametrize("call", [initializers.zeros, initializers.torch_bias])
def test_bias_initializers_check_their_arguments(call):
    with pytest.raises((ValueError, TypeError), match=r"shape must be a shape|dtype must be"):
        call(KEY, (), np.float32)
    with pytest.raises(fb.DTypeError, match="dtype must be float32 or float64"):
        call(KEY, (3,), np.float16)
