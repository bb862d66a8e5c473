"""Records: param fields are read-only arrays nobody else can write to; static fields."""

import attrs
import numpy as np
import pytest

import fnbp as fb


@attrs.frozen
class Scale(fb.Layer):
    a: np.ndarray = fb.param()
    bias: np.ndarray | None = fb.param(default=None)
    name: str = fb.static(default="scale")


def test_param_is_readonly_and_a_copy_of_the_callers_array():
    a = np.array([1.0, 2.0, 3.0])
    rec = Scale(a)
    assert not rec.a.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        rec.a[0] = 10.0
    assert a.flags.writeable
    a[1] = 5.0  # the caller writes into its own array: the record does not change
    assert rec.a.tolist() == [1.0, 2.0, 3.0]
    assert not np.shares_memory(rec.a, a)


def test_a_readonly_view_of_a_writeable_array_is_copied_too():
    a = np.array([1.0, 2.0])
    view = a.view()
    view.flags.writeable = False
    rec = Scale(view)
    a[0] = 9.0
    assert rec.a.tolist() == [1.0, 2.0]


def test_param_converts_float_lists_and_keeps_frozen_arrays():
    rec = Scale([1.0, 2.0, 3.0])
    assert isinstance(rec.a, np.ndarray) and rec.a.dtype == np.float64
    assert not rec.a.flags.writeable
    owned = fb.frozen(np.ones(2))
    assert Scale(owned).a is owned  # fnbp's own fresh arrays are handed over without a copy
    assert Scale(owned[:1]).a.base is owned
    view = owned[1:].reshape(1, 1)  # a read-only view of a frozen owner: kept as it is
    assert Scale(view).a is view
    loose = np.ones(2)[1:]  # a view of a writeable array: copied
    loose.flags.writeable = False
    assert Scale(loose).a is not loose and Scale(loose).a.base is None


@pytest.mark.parametrize("dtype", [np.int64, np.uint8, np.float16, np.complex128])
def test_param_must_be_float32_or_float64(dtype):
    with pytest.raises(fb.DTypeError, match=r"^Scale: a must be a float32 or float64 array"):
        Scale(np.zeros(2, dtype))


def test_a_mask_tree_of_bools_mirrors_a_record():
    mask = fb.tree.map(lambda p: p.ndim >= 1, Scale(np.ones(2), np.ones(1)))
    assert mask.a.dtype == np.bool_ and bool(mask.a) is True


def test_param_none_passes_through():
    assert Scale(np.ones(1)).bias is None
    assert fb.readonly(None) is None


@pytest.mark.parametrize("bad", [np.array(["a", "b"]), np.array([object(), 1], dtype=object)])
def test_param_rejects_non_numeric(bad):
    with pytest.raises(fb.DTypeError, match="Scale: a must be a float32 or float64"):
        Scale(bad)


def test_readonly_function():
    a = np.zeros((2, 2), np.float32)
    r = fb.readonly(a)
    assert r.dtype == np.float32 and r.shape == (2, 2)
    assert not r.flags.writeable and a.flags.writeable
    with pytest.raises(ValueError):
        r[0, 0] = 1.0


def test_static_field_metadata_and_not_a_leaf():
    field = attrs.fields(Scale).name
    assert field.metadata["static"] is True
    assert "static" not in attrs.fields(Scale).a.metadata
    assert [p for p, _ in fb.tree.leaves_with_paths(Scale(np.ones(2)))] == ["a"]


def test_records_are_frozen():
    rec = Scale(np.ones(2))
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        rec.a = np.zeros(2)


def test_replace_returns_new_record_and_leaves_old_unchanged():
    rec = Scale(np.ones(2), name="s")
    new = fb.replace(rec, a=np.zeros(2))
    assert new is not rec
    np.testing.assert_array_equal(rec.a, [1.0, 1.0])
    np.testing.assert_array_equal(new.a, [0.0, 0.0])
    assert new.name == "s"
    assert not new.a.flags.writeable


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_layer_records_store_readonly_arrays(dtype):
    W, b = np.ones((2, 3), dtype), np.zeros(3, dtype)
    d = fb.Dense(W, b)
    for leaf in (d.W, d.b):
        assert leaf.dtype == np.dtype(dtype)
        with pytest.raises(ValueError):
            leaf[...] = 2.0
    assert W.flags.writeable and b.flags.writeable
    init = fb.Dense.init(fb.random.key(0), 2, 3, dtype=dtype)
    assert not init.W.flags.writeable and not init.b.flags.writeable
