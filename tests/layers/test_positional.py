"""Positional embeddings: the learned table and the Transformer paper's sinusoids."""

from __future__ import annotations

import math

import numpy as np
import pytest

import fnbp as fb
from fnbp.layers.positional import sinusoidal_table


def test_learned_table_by_hand():
    table = np.arange(8.0).reshape(4, 2)  # max_len 4, D 2
    layer = fb.PositionalEmbedding(table)
    x = np.ones((2, 3, 2))
    y, pullback = fb.vjp(layer, x)
    np.testing.assert_array_equal(y[1], [[1, 2], [3, 4], [5, 6]])
    g_y = np.arange(12.0).reshape(2, 3, 2)
    g_x, grads = pullback(g_y)
    np.testing.assert_array_equal(g_x, g_y)
    np.testing.assert_array_equal(grads.table, [[6, 8], [10, 12], [14, 16], [0, 0]])


def test_too_long_a_sequence_names_max_len():
    layer = fb.PositionalEmbedding.init(fb.random.key(0), 4, 3)
    with pytest.raises(fb.ShapeError, match=r"T = 5 positions .* more than max_len = 4"):
        fb.forward(layer, np.zeros((2, 5, 3)))
    with pytest.raises(fb.ShapeError, match=r"expects input of shape \(N, T, 3\), got \(2, 4, 2\)"):
        fb.forward(layer, np.zeros((2, 4, 2)))


def test_learned_init_scale_dtype_and_casting():
    layer = fb.PositionalEmbedding.init(fb.random.key(0), 200, 100)
    assert layer.table.shape == (200, 100) and layer.table.dtype == np.float32
    assert layer.table.std() == pytest.approx(0.02, rel=0.03)
    y = fb.forward(layer, np.ones((1, 3, 100)))  # float64 input: cast to the table's dtype
    assert y.dtype == np.float32


def test_sinusoids_by_the_formula():
    pe = sinusoidal_table(6, 4)
    t = np.arange(6.0)
    np.testing.assert_allclose(pe[:, 0], np.sin(t))
    np.testing.assert_allclose(pe[:, 1], np.cos(t))
    np.testing.assert_allclose(pe[:, 2], np.sin(t / 10000 ** (2 / 4)))
    np.testing.assert_allclose(pe[:, 3], np.cos(t / 10000 ** (2 / 4)))
    assert pe[5, 2] == pytest.approx(math.sin(0.05))
    assert not pe.flags.writeable


def test_sinusoids_match_the_derivation_listing_and_odd_widths():
    def listing(T, D):  # docs/derivations/attention.md, for even D
        freq = 10000.0 ** (-np.arange(0, D, 2) / D)
        angle = np.arange(T)[:, None] * freq
        pe = np.empty((T, D))
        pe[:, 0::2], pe[:, 1::2] = np.sin(angle), np.cos(angle)
        return pe

    np.testing.assert_array_equal(sinusoidal_table(7, 8), listing(7, 8))
    odd, t = sinusoidal_table(7, 5), np.arange(7)
    for i in range(3):  # columns 2i and 2i + 1; the last, 4, a sine alone
        np.testing.assert_allclose(odd[:, 2 * i], np.sin(t / 10000 ** (2 * i / 5)))
    np.testing.assert_allclose(odd[:, 3], np.cos(t / 10000 ** (2 / 5)))


def test_a_shift_is_one_rotation_at_every_position():
    pe, shift = sinusoidal_table(20, 6), 3
    freq = 10000.0 ** (-np.arange(0, 6, 2) / 6)
    for i, w in enumerate(freq):
        c, s = math.cos(shift * w), math.sin(shift * w)
        rotation = np.array([[c, -s], [s, c]])  # (sin, cos)(t + k) = (sin, cos)(t) @ R(k)
        pair = pe[:, 2 * i : 2 * i + 2]
        np.testing.assert_allclose(pair[shift:], pair[:-shift] @ rotation, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sinusoidal_layer_adds_the_table_and_passes_gradients(make, dtype):
    x = make(2, 5, 4, dtype=dtype)
    y, pullback = fb.vjp(fb.SinusoidalPositions(), x)
    assert y.dtype == dtype
    np.testing.assert_array_equal(y, x + sinusoidal_table(5, 4, dtype=dtype))
    g_y = make(2, 5, 4, dtype=dtype)
    g_x, grads = pullback(g_y)
    assert g_x is g_y and grads == fb.SinusoidalPositions()
    # float32 tables are rounded from float64 angles: position 1000 keeps its digits
    far = sinusoidal_table(1001, 4, dtype=np.float32)[1000]
    np.testing.assert_allclose(far, sinusoidal_table(1001, 4)[1000].astype(np.float32))


def test_sinusoidal_errors():
    with pytest.raises(fb.ShapeError, match=r"use x\[None\]"):
        fb.forward(fb.SinusoidalPositions(), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="base must be"):
        fb.SinusoidalPositions(base=1.0)
