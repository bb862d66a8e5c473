"""Records: param fields are read-only views, static fields are hyperparameters."""

import attrs
import numpy as np
import pytest

import fnbp as fb


@attrs.frozen
class Scale(fb.Layer):
    a: np.ndarray = fb.param()
    bias: np.ndarray | None = fb.param(default=None)
    name: str = fb.static(default="scale")


def test_param_is_readonly_and_callers_array_stays_writeable():
    a = np.array([1.0, 2.0, 3.0])
    rec = Scale(a)
    assert not rec.a.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        rec.a[0] = 10.0
    assert a.flags.writeable
    a[1] = 5.0  # the caller's own array is untouched by the record
    assert np.shares_memory(rec.a, a)


def test_param_converts_lists_and_keeps_readonly_arrays():
    rec = Scale([1, 2, 3])
    assert isinstance(rec.a, np.ndarray)
    assert rec.a.dtype.kind == "i"
    assert not rec.a.flags.writeable
    frozen = np.ones(2)
    frozen.flags.writeable = False
    assert Scale(frozen).a is frozen


def test_param_none_passes_through():
    assert Scale(np.ones(1)).bias is None
    assert fb.readonly(None) is None


@pytest.mark.parametrize("bad", [np.array(["a", "b"]), np.array([object(), 1], dtype=object)])
def test_param_rejects_non_numeric(bad):
    with pytest.raises(TypeError, match="numeric"):
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
