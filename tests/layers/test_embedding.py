"""Embedding: integer ids in, table rows out; clear errors; gradients accumulate over repeats."""

import re

import numpy as np
import pytest

import fnbp as fb

KEY = fb.random.key(5)


def ro(a, dtype=np.int64):
    a = np.array(a, dtype=dtype)
    a.flags.writeable = False
    return a


def emb(n=4, dim=3, dtype=np.float64, **kw):
    return fb.Embedding.init(KEY, n, dim, dtype=dtype, **kw)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_init_shape_dtype_and_scale(dtype):
    layer = fb.Embedding.init(KEY, 1000, 50, dtype=dtype)
    assert layer.table.shape == (1000, 50) and layer.table.dtype == dtype
    assert not layer.table.flags.writeable
    assert abs(layer.table.std() - 1.0) < 0.02
    small = fb.Embedding.init(KEY, 1000, 50, std=0.01, dtype=dtype)
    np.testing.assert_allclose(small.table, 0.01 * layer.table, rtol=1e-6)
    np.testing.assert_array_equal(fb.Embedding.init(KEY, 1000, 50, dtype=dtype).table, layer.table)


def test_init_validates():
    with pytest.raises(TypeError, match="float"):
        fb.Embedding.init(KEY, 4, 3, dtype=np.int32)
    with pytest.raises(ValueError, match=">= 1"):
        fb.Embedding.init(KEY, 0, 3)


def test_lookup_values():
    table = np.arange(12.0).reshape(4, 3)
    y = fb.forward(fb.Embedding(table), ro([2, 0, 2]))
    np.testing.assert_array_equal(y, [[6.0, 7.0, 8.0], [0.0, 1.0, 2.0], [6.0, 7.0, 8.0]])
    y[0, 0] = -1.0  # the output is a fresh array, not a view of the table
    assert table[2, 0] == 6.0


@pytest.mark.parametrize("shape", [(5,), (2, 7), (2, 3, 4), (0,)])
def test_output_shape_is_ids_shape_plus_dim(shape):
    layer = emb(10, 6)
    ids = ro(np.arange(np.prod(shape, dtype=int)).reshape(shape) % 10)
    y = fb.forward(layer, ids)
    assert y.shape == (*shape, 6)
    np.testing.assert_array_equal(y, layer.table[ids])


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int32, np.uint64])
def test_any_integer_dtype(dtype):
    layer = emb()
    np.testing.assert_array_equal(fb.forward(layer, ro([3, 1], dtype)), layer.table[[3, 1]])


@pytest.mark.parametrize("ids", [[0.0, 1.0], [True, False]])
def test_float_or_bool_ids_are_a_dtype_error(ids):
    with pytest.raises(fb.DTypeError, match=r"Embedding\(4, 3\) expects integer ids"):
        fb.forward(emb(), np.array(ids))


@pytest.mark.parametrize(
    ("ids", "where"),
    [([0, 4, 1], "id 4 at index (1,)"), ([[1, 2], [-1, 0]], "id -1 at index (1, 0)")],
)
def test_out_of_range_ids_are_a_value_error(ids, where):
    msg = re.escape(f"{where} is out of range; ids must be in [0, 4)")
    with pytest.raises(ValueError, match=msg):
        fb.forward(emb(), ro(ids))
    with pytest.raises(ValueError, match="out of range"):
        fb.vjp(emb(), ro(ids))


def test_gradient_accumulates_over_repeated_ids():
    layer = emb(4, 2)
    ids = ro([[1, 3], [1, 1]])
    g_y = np.array([[[1.0, 2.0], [3.0, 4.0]], [[10.0, 20.0], [100.0, 200.0]]])
    g_x, grads = fb.backward(layer, ids, g_y)
    assert g_x is None and type(grads) is fb.Embedding
    np.testing.assert_array_equal(grads.table, [[0, 0], [111, 222], [0, 0], [3, 4]])


def test_check_grads_on_the_table_with_repeated_ids():
    report = fb.testing.check_grads(emb(5, 3), ro([[0, 2, 2], [4, 2, 0]]))
    assert set(report.errors) == {"table"}


def test_check_grads_catches_a_gradient_that_ignores_repeats():
    class LastWins(fb.Embedding):
        def vjp(self, x, need_g_x=True):
            def pullback(g_y):
                g = np.zeros_like(self.table)
                g[x.ravel()] = g_y.reshape(-1, self.table.shape[1])  # overwrites repeats
                return None, LastWins(g)

            return self.table[x], pullback

    with pytest.raises(AssertionError, match="gradient check failed"):
        fb.testing.check_grads(LastWins(emb(5, 3).table), ro([1, 1, 2]))


def test_ids_are_not_differentiable_even_when_asked():
    _, pullback = fb.vjp(emb(), ro([1, 2]), need_g_x=True)
    assert pullback(np.ones((2, 3)))[0] is None


def test_first_layer_of_a_serial():
    k1, k2 = fb.random.split(KEY)
    net = fb.Serial(
        (
            fb.Embedding.init(k1, 6, 4, dtype=np.float64),
            fb.Tanh(),
            fb.Dense.init(k2, 4, 2, dtype=np.float64),
        )
    )
    ids = ro([0, 5, 5, 2])
    g_x, grads = fb.backward(net, ids, np.ones((4, 2)))
    assert g_x is None and grads.layers[0].table.shape == (6, 4)
    report = fb.testing.check_grads(net, ids)
    assert set(report.errors) == {"layers[0].table", "layers[2].W", "layers[2].b"}
    with pytest.raises(ValueError, match=r"layers\[0\].*id 6"):
        fb.forward(net, ro([6]))
    loss, grads = fb.value_and_grad(net, fb.mse, ids, np.zeros((4, 2)))
    assert np.isfinite(loss) and fb.tree.global_norm(grads) > 0


def test_after_another_layer_float_input_is_rejected():
    net = fb.Serial((fb.Dense.init(KEY, 2, 2), fb.Embedding.init(KEY, 4, 3)))
    with pytest.raises(fb.DTypeError, match=r"layers\[1\].*integer ids"):
        fb.forward(net, np.ones((1, 2)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_preserved(dtype):
    layer = emb(dtype=dtype)
    y, pullback = fb.vjp(layer, ro([0, 1, 1]))
    assert y.dtype == dtype and pullback(np.ones_like(y))[1].table.dtype == dtype


def test_training_mode_is_the_same(make):
    layer, ids = emb(), ro([3, 0])
    np.testing.assert_array_equal(
        fb.forward(layer, ids, train=True, key=KEY), fb.forward(layer, ids)
    )
