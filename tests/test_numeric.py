"""The elementwise helpers in fnbp._numeric: same results as the plain numpy they replace."""

import numpy as np
import pytest

from fnbp._numeric import exp_cut, exp_cutoff, ones, row_sums


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
