"""Dropout: identity in inference, a keyed inverted mask in training, the same mask backwards."""

import math

import numpy as np
import pytest

import fnbp as fb

KEY = fb.random.key(7)


def train_fwd(layer, x, key=KEY):
    return fb.forward(layer, x, train=True, key=key)


@pytest.mark.parametrize("rate", [-0.1, 1.5, math.nan, math.inf])
def test_rate_must_be_a_probability(rate):
    with pytest.raises(ValueError, match=r"rate .*\[0, 1\]"):
        fb.Dropout(rate)


def test_rate_is_a_static_python_float():
    layer = fb.Dropout(np.float32(0.25))
    assert type(layer.rate) is float and layer.rate == 0.25
    assert fb.tree.leaves(layer) == []
    assert fb.Dropout().rate == 0.5


def test_inference_is_identity(make):
    layer, x, g = fb.Dropout(0.5), make(4, 3), make(4, 3)
    np.testing.assert_array_equal(fb.forward(layer, x), x)
    np.testing.assert_array_equal(fb.forward(layer, x, key=KEY), x)  # a key alone: inference
    g_x, grads = fb.backward(layer, x, g)
    np.testing.assert_array_equal(g_x, g)
    assert grads == layer
    assert fb.backward(layer, x, g, need_g_x=False)[0] is None


def test_training_without_a_key_is_a_clear_error(make):
    msg = r"Dropout\(rate=0.3\) in training needs a random key.*key="
    with pytest.raises(ValueError, match=msg):
        fb.forward(fb.Dropout(0.3), make(2, 3), train=True)
    net = fb.Serial((fb.Dense.init(KEY, 3, 3), fb.Dropout(0.3)))
    with pytest.raises(ValueError, match=msg):
        fb.vjp(net, make(2, 3), train=True, state=fb.init_state(net))


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.9])
def test_empirical_drop_fraction_matches_rate(rate):
    n = 100_000
    y = train_fwd(fb.Dropout(rate), np.ones((100, n // 100)))
    dropped = float(np.mean(y == 0))
    assert abs(dropped - rate) < 5 * math.sqrt(rate * (1 - rate) / n)


@pytest.mark.parametrize("rate", [0.2, 0.75])
def test_kept_units_scaled_so_the_mean_is_preserved(rate):
    x = np.full((200, 500), 3.0)
    y = train_fwd(fb.Dropout(rate), x)
    np.testing.assert_allclose(np.unique(y), [0.0, 3.0 / (1 - rate)], rtol=1e-15)
    assert abs(y.mean() - 3.0) < 5 * 3.0 * math.sqrt(rate / (1 - rate) / x.size)


def test_same_key_same_mask_other_key_other_mask(make):
    layer, x = fb.Dropout(0.5), make(8, 16)
    a, b = train_fwd(layer, x), train_fwd(layer, x)
    assert a.tobytes() == b.tobytes()
    c = train_fwd(layer, x, fb.random.key(8))
    assert not np.array_equal(a == 0, c == 0)


def test_mask_depends_on_key_and_shape_only(make):
    layer = fb.Dropout(0.4)
    keep = layer.mask(KEY, (5, 6))
    assert keep.dtype == bool and keep.shape == (5, 6)
    x32 = make(5, 6, dtype=np.float32, low=1.0, high=2.0)
    for x in (x32, x32.astype(np.float64)):
        np.testing.assert_array_equal(train_fwd(layer, x) != 0, keep)


def test_backward_applies_exactly_the_forward_mask(make):
    layer, x, g = fb.Dropout(0.5), make(6, 7, away=0.1), make(6, 7)
    y, pullback = fb.vjp(layer, x, train=True, key=KEY)
    g_x, grads = pullback(g)
    keep = layer.mask(KEY, x.shape)
    np.testing.assert_array_equal(y, np.where(keep, x * 2.0, 0.0))
    np.testing.assert_array_equal(g_x, np.where(keep, g * 2.0, 0.0))
    assert grads == layer
    g_x2, _ = fb.backward(layer, x, g, train=True, key=KEY)
    np.testing.assert_array_equal(g_x, g_x2)


def test_rate_zero_is_identity_in_training(make):
    x, g = make(4, 5), make(4, 5)
    np.testing.assert_array_equal(train_fwd(fb.Dropout(0.0), x), x)
    g_x, _ = fb.backward(fb.Dropout(0.0), x, g, train=True, key=KEY)
    np.testing.assert_array_equal(g_x, g)


def test_rate_one_gives_zeros_not_nan():
    x = np.array([[1.0, -np.inf, np.inf, 1e308]])
    with np.errstate(all="raise"):
        y = train_fwd(fb.Dropout(1.0), x)
        g_x, _ = fb.backward(fb.Dropout(1.0), x, np.ones_like(x), train=True, key=KEY)
    np.testing.assert_array_equal(y, 0.0)
    np.testing.assert_array_equal(g_x, 0.0)
    assert not np.signbit(y).any()


def test_dropped_infinite_units_are_zero_not_nan():
    x = np.full((50, 50), np.inf)
    with np.errstate(all="raise"):
        y = train_fwd(fb.Dropout(0.5), x)
    assert not np.isnan(y).any()
    assert (y == 0).any() and np.isinf(y).any()


@pytest.mark.parametrize("shape", [(1, 1), (3, 4), (2, 3, 4)])
def test_check_grads_in_training_with_a_fixed_key(make, shape):
    report = fb.testing.check_grads(fb.Dropout(0.5), make(*shape), train=True, layer_key=KEY)
    assert set(report.errors) == {"x"}


def test_check_grads_in_inference(make):
    assert fb.testing.check_grads(fb.Dropout(0.5), make(3, 4)).ok


def test_check_grads_would_catch_a_mask_redrawn_backwards(make):
    class Redrawn(fb.Dropout):
        def vjp_ctx(self, x, need_g_x, ctx):
            y, _, state = super().vjp_ctx(x, need_g_x, ctx)
            other = fb.Context(ctx.train, fb.random.fold_in(ctx.key, 1), ctx.state)
            return y, super().vjp_ctx(x, need_g_x, other)[1], state

    with pytest.raises(AssertionError, match="gradient check failed"):
        fb.testing.check_grads(Redrawn(0.5), make(4, 6), train=True, layer_key=KEY)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_preserved(make, dtype):
    x = make(4, 5, dtype=dtype)
    y, pullback = fb.vjp(fb.Dropout(0.3), x, train=True, key=KEY)
    assert y.dtype == dtype and pullback(np.ones_like(y))[0].dtype == dtype


def test_integer_input_in_training_becomes_float64():
    y = train_fwd(fb.Dropout(0.5), np.ones((4, 4), dtype=np.int32))
    assert y.dtype == np.float64
    assert set(np.unique(y)) <= {0.0, 2.0}


def test_read_only_input_is_never_written(make):
    x = make(6, 6)
    before = x.copy()
    fb.backward(fb.Dropout(0.5), x, make(6, 6), train=True, key=KEY)
    np.testing.assert_array_equal(x, before)


def test_layers_of_a_serial_draw_different_masks():
    net = fb.Serial((fb.Dropout(0.5), fb.Dropout(0.5)))
    y = fb.forward(net, np.ones((200, 500)), train=True, key=KEY)
    # Independent masks keep a quarter of the units; one shared mask would keep half.
    assert abs(np.mean(y != 0) - 0.25) < 0.01
    np.testing.assert_array_equal(np.unique(y), [0.0, 4.0])
    k0, k1 = fb.random.split(KEY)
    expected = train_fwd(fb.Dropout(0.5), train_fwd(fb.Dropout(0.5), np.ones((200, 500)), k0), k1)
    np.testing.assert_array_equal(y, expected)


def test_serial_same_key_same_bits(make):
    net = fb.Serial((fb.Dense.init(KEY, 5, 8, dtype=np.float64), fb.Dropout(0.5), fb.Tanh()))
    x = make(4, 5)
    a = fb.forward(net, x, train=True, key=KEY)
    assert a.tobytes() == fb.forward(net, x, train=True, key=KEY).tobytes()
    assert a.tobytes() != fb.forward(net, x, train=True, key=fb.random.key(8)).tobytes()
    np.testing.assert_array_equal(fb.forward(net, x), np.tanh(fb.forward(net.layers[0], x)))
