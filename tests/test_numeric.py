"""The elementwise helpers in fnbp._numeric: same results as the plain numpy they replace."""

import numpy as np
import pytest

from fnbp._numeric import BLOCK, exp_cut, exp_cutoff, ones, relu, row_sums


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exp_cut_is_exp_when_nothing_is_cut(dtype):
    a = np.linspace(-30, 30, 61, dtype=dtype).reshape(61, 1)
    a.setflags(write=False)
    with np.errstate(all="raise"):
        assert np.array_equal(exp_cut(a), np.exp(a))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exp_cut_is_zero_below_the_cutoff_and_silent(dtype):
    cut = exp_cutoff(np.dtype(dtype))
    a = np.array([[cut - 1000.0, cut - 1.0, cut, 0.0, 1.0]], dtype)
    a.setflags(write=False)
    with np.errstate(all="raise"):
        out = exp_cut(a)
    assert out.dtype == dtype
    assert out[0, 0] == 0.0 and out[0, 1] == 0.0
    assert np.array_equal(out[0, 2:], np.exp(a[0, 2:]))


def test_exp_cut_keeps_nan_and_handles_empty():
    with np.errstate(all="raise"):
        out = exp_cut(np.array([np.nan, 0.0, -1e6]))
    assert np.isnan(out[0]) and out[1] == 1.0 and out[2] == 0.0
    assert exp_cut(np.zeros((0, 3))).shape == (0, 3)


@pytest.mark.parametrize("shape", [(5, 3), (2, 3, 4), (4,), (3, 0), (0, 3)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_row_sums_equals_sum_over_the_last_axis(shape, dtype):
    a = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    a.setflags(write=False)
    sums = row_sums(a)
    expected = a.sum(axis=-1, keepdims=True)
    assert sums.shape == expected.shape and sums.dtype == dtype
    np.testing.assert_allclose(sums, expected, rtol=1e-6 if dtype == np.float32 else 1e-13)


def test_ones_is_cached_and_read_only():
    v = ones(7, np.dtype(np.float32))
    assert v is ones(7, np.dtype(np.float32))
    assert v.dtype == np.float32 and not v.flags.writeable and (v == 1).all()


@pytest.mark.parametrize("size", [0, 1, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 5])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_is_maximum_with_zero_bit_for_bit(size, dtype):
    """Across the float32 blocks and their tail: NaN, infinities and signed zeros too."""
    a = np.random.default_rng(size).standard_normal(size).astype(dtype) * 1e3
    a[::7] = -0.0
    a[1::11], a[2::13], a[3::17] = np.nan, np.inf, -np.inf
    a = a.reshape(1, size) if size % 2 else a.reshape(-1, 2) if size else a.reshape(0, 3)
    a.setflags(write=False)
    want = np.maximum(a, 0.0)
    with np.errstate(all="raise"):
        new = relu(a)
        into = np.array(a)
        same = relu(into, out=into)
    for got in (new, same):
        assert got.dtype == dtype and got.shape == a.shape
        assert np.array_equal(got.view(np.uint8), want.view(np.uint8))  # the same bits
    assert same is into and new is not a


@pytest.mark.parametrize("layout", ["strided", "fortran", "0-d"])
def test_relu_of_other_layouts_is_maximum_with_zero(layout):
    base = np.random.default_rng(0).standard_normal((6, 8)).astype(np.float32)
    a = {"strided": base[:, ::2], "fortran": np.asfortranarray(base), "0-d": base[0, 0]}[layout]
    a = np.asarray(a)
    want = np.maximum(a, 0.0)
    assert np.array_equal(relu(a), want)
    out = np.empty_like(a)
    assert relu(a, out=out) is out and np.array_equal(out, want)
