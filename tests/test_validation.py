"""fnbp.validation: the checks every public function goes through, and the dtype policy."""

from __future__ import annotations

import re

import numpy as np
import pytest

import fnbp as fb
from fnbp import validation as v

REFUSED = [
    (np.float16, "float16 (too narrow"),
    (np.longdouble, "float128 (use float32 or float64)"),
    (np.complex64, "complex64 (complex numbers are not supported)"),
    (object, "dtype object"),
    ("U3", "dtype <U3"),
    ("S3", "dtype |S3"),
    ("datetime64[s]", "dtype datetime64[s]"),
]


@pytest.mark.parametrize(("dtype", "name"), REFUSED, ids=str)
def test_numeric_refuses_other_dtypes_naming_them(dtype, name):
    with pytest.raises(fb.DTypeError, match=r"f: x must be numeric .* got " + re.escape(name)):
        v.numeric(np.zeros(2, dtype), "f", "x")


@pytest.mark.parametrize("dtype", [bool, np.int8, np.uint64, np.int64])
def test_floating_takes_bools_and_ints_as_float64(dtype):
    assert v.floating(np.ones(2, dtype), "f").dtype == np.float64
    assert v.floating(np.ones(2, np.float32), "f").dtype == np.float32


@pytest.mark.parametrize("tree", [(np.ones(2), np.ones(2)), {"a": np.ones(2)}, None, fb.ReLU()])
def test_a_tree_is_not_one_array(tree):
    """A tuple of arrays is several inputs: never stacked into one behind the caller's back."""
    with pytest.raises(fb.StructureError, match="f: x must be one array, got a"):
        v.numeric(tree, "f", "x")


def test_lists_are_data_and_ragged_ones_a_shape_error():
    assert v.numeric([[1, 2], [3, 4]], "f").shape == (2, 2)
    with pytest.raises(fb.ShapeError, match="not one array"):
        v.numeric([[1.0, 2.0], [3.0]], "f")


@pytest.mark.parametrize("dtype", [None, np.float64(0.5), 3, "float16", np.float16, "nope"])
def test_float_dtype_refuses_none_numbers_and_float16(dtype):
    with pytest.raises(fb.DTypeError, match="f: dtype must be float32 or float64"):
        v.float_dtype("f", dtype)


def test_float_dtype_takes_names_types_and_dtypes():
    assert v.float_dtype("f", "float32") == np.float32
    assert v.float_dtype("f", np.float64) == np.float64
    assert v.float_dtype("f", np.dtype(np.float32)) == np.float32


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ((-1, 2), r"shape must be a shape \(a tuple of ints >= 0\)"),
        ((2.5,), "a shape"),
        ("ab", "a shape"),
        ((True, 2), "a shape"),
        ((10**6, 10**6), "would need 1,000,000,000,000 elements"),
    ],
)
def test_check_dims(value, match):
    with pytest.raises(ValueError, match=match):
        v.check_dims("f", "shape", value)


def test_check_dims_takes_an_int_or_a_sequence():
    assert v.check_dims("f", "shape", 3) == (3,)
    assert v.check_dims("f", "shape", [np.int64(2), 0]) == (2, 0)
    with pytest.raises(ValueError, match="at least 1"):
        v.check_dims("f", "shape", (), min_ndim=1)


def test_check_finite_names_the_first_bad_index():
    a = np.zeros((2, 3))
    a[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"f: y must be finite, got nan at index \(1, 2\)"):
        v.check_finite("f", "y", a)
    assert v.check_finite("f", "y", np.arange(3)) is not None  # integers are finite


def test_check_callable_refuses_classes_and_checks_arity():
    with pytest.raises(ValueError, match="f: cb must be a function"):
        v.check_callable("f", "cb", fb.ReLU)
    with pytest.raises(ValueError, match="taking 2 argument"):
        v.check_callable("f", "cb", lambda a: a, n_args=2)
    assert v.check_callable("f", "cb", print, n_args=2) is print  # *args
    assert v.check_callable("f", "cb", np.add, n_args=2) is np.add  # no signature: trusted


@pytest.mark.parametrize("value", [0, -1, 1.5, 2**64, "2", True, None])
def test_sizes_are_bounded_ints(value):
    with pytest.raises(ValueError, match="stride must be an int"):
        v.check_ints("Conv1D", "stride", value, 1)


def test_a_huge_size_names_the_bound():
    with pytest.raises(ValueError, match=r"in \[1, 2,147,483,648\]"):
        v.check_ints("Conv1D", "stride", 2**64, 1)


def test_check_params_needs_arrays_of_one_float_dtype():
    with pytest.raises(fb.StructureError, match="Dense needs W to be an array, got None"):
        v.check_params("Dense", W=None, b=np.zeros(2))
    with pytest.raises(fb.DTypeError, match=r"one dtype.*W float32, b float64"):
        v.check_params("Dense", W=np.zeros(2, np.float32), b=np.zeros(2))


def test_a_deprecated_numpy_alias_is_an_unknown_dtype_not_a_warning():
    with pytest.raises(fb.DTypeError, match="got 'a'"):
        v.float_dtype("f", "a")


@pytest.mark.parametrize("value", [1e300, -1e39, 1e-300, 1e-40])
def test_a_real_number_must_be_one_float32_can_hold(value):
    """A hyperparameter meets float32 data: 1e300 would overflow to inf, 1e-300 become 0."""
    with pytest.raises(ValueError, match=r"eps must be .* that float32 can hold \(0 or a magn"):
        v.check_real("LayerNorm", "eps", value)
    assert v.check_real("LayerNorm", "eps", 3e38) == 3e38
    assert v.check_real("LayerNorm", "eps", 0) == 0.0


@pytest.mark.parametrize(
    "make",
    [
        lambda: np.zeros(v.FINITE_BLOCK * 3 + 7, np.float32),
        lambda: np.zeros((1000, 700)),
        lambda: np.zeros((700, 1000)).T,  # not contiguous
        lambda: np.zeros((3, v.FINITE_BLOCK + 1), np.float32),  # rows above a block
        lambda: np.zeros((5, 3)),
        lambda: np.array(0.0),
    ],
)
def test_all_finite_checks_every_element_block_by_block(make):
    a = make()
    a.flags.writeable = False
    assert v.all_finite(a)
    for where in (0, a.size // 2, a.size - 1):
        for bad in (np.nan, np.inf, -np.inf):
            b = np.array(a)  # keeps a's memory order: the transposed case stays strided
            b.flat[where] = bad
            assert not v.all_finite(b)
            with pytest.raises(ValueError, match=r"x must be finite"):
                v.check_finite("fit", "x", b)
