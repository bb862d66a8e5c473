"""Tree utilities over arrays, None, tuples, lists, dicts and attrs records."""

import math

import attrs
import numpy as np
import pytest

import fnbp as fb
from fnbp import tree


@attrs.frozen
class Pair:
    a: np.ndarray = fb.param()
    b: object = attrs.field(default=None)
    tag: str = fb.static(default="pair")


def dense(W, b):
    return fb.Dense(np.asarray(W, np.float64), np.asarray(b, np.float64))


@pytest.fixture
def net():
    return fb.Serial(
        (
            dense([[1.0, 2.0], [3.0, 4.0]], [0.5, -0.5]),
            fb.LeakyReLU(0.1),
            dense([[1.0], [-1.0]], [2.0]),
            fb.Sigmoid(),
        )
    )


def test_leaves_with_paths_of_serial(net):
    paths = [p for p, _ in tree.leaves_with_paths(net)]
    assert paths == ["layers[0].W", "layers[0].b", "layers[2].W", "layers[2].b"]
    leaves = tree.leaves(net)
    assert leaves[2] is net.layers[2].W


def test_leaves_with_paths_of_containers():
    t = {"a": [np.zeros(1), (None, np.ones(2))], "b": Pair(np.ones(3), b={"c": np.ones(1)})}
    paths = [p for p, _ in tree.leaves_with_paths(t)]
    assert paths == ["['a'][0]", "['a'][1][1]", "['b'].a", "['b'].b['c']"]


def test_static_fields_are_not_leaves():
    assert tree.leaves(fb.LeakyReLU(0.3)) == []
    assert [p for p, _ in tree.leaves_with_paths(Pair(np.ones(2)))] == ["a"]


def test_none_is_an_empty_tree():
    assert tree.leaves(None) == []
    assert tree.map(lambda x: x + 1, None) is None
    assert tree.map(np.add, (None, np.ones(1)), (None, np.ones(1)))[0] is None


def test_map_single_tree_of_every_container():
    t = (np.ones(2), [np.full(3, 2.0)], {"k": np.zeros(1)}, None)
    out = tree.map(lambda x: x * 10, t)
    assert type(out) is tuple and type(out[1]) is list and type(out[2]) is dict
    np.testing.assert_array_equal(out[0], [10.0, 10.0])
    np.testing.assert_array_equal(out[1][0], [20.0, 20.0, 20.0])
    np.testing.assert_array_equal(out[2]["k"], [0.0])
    assert out[3] is None


def test_map_several_trees():
    a = {"x": (np.array([1.0, 2.0]), [np.array(3.0)])}
    b = {"x": (np.array([10.0, 20.0]), [np.array(30.0)])}
    c = {"x": (np.array([100.0, 200.0]), [np.array(300.0)])}
    out = tree.map(lambda p, q, r: p + q + r, a, b, c)
    np.testing.assert_array_equal(out["x"][0], [111.0, 222.0])
    np.testing.assert_array_equal(out["x"][1][0], 333.0)


def test_map_over_records_keeps_class_and_static_fields(net):
    out = tree.map(lambda x: 2 * x, net)
    assert type(out) is fb.Serial
    assert [type(layer) for layer in out.layers] == [type(layer) for layer in net.layers]
    assert out.layers[1].slope == 0.1
    np.testing.assert_array_equal(out.layers[0].W, [[2.0, 4.0], [6.0, 8.0]])
    np.testing.assert_array_equal(out.layers[2].b, [4.0])
    p = tree.map(lambda x: x + 1, Pair(np.zeros(2), b=[np.ones(1)], tag="kept"))
    assert p.tag == "kept"
    np.testing.assert_array_equal(p.b[0], [2.0])


def test_map_result_leaves_of_records_are_readonly(net):
    out = tree.map(lambda x: x + 0.0, net)
    with pytest.raises(ValueError):
        out.layers[0].W[0, 0] = 1.0


def test_map_rejects_different_static_fields():
    with pytest.raises(fb.StructureError, match="slope"):
        tree.map(lambda a, b: a, fb.LeakyReLU(0.1), fb.LeakyReLU(0.2))
    with pytest.raises(fb.StructureError, match=r"layers\[1\].*slope"):
        tree.map(
            lambda a, b: a,
            fb.Serial((fb.Identity(), fb.LeakyReLU(0.1))),
            fb.Serial((fb.Identity(), fb.LeakyReLU(0.2))),
        )


@pytest.mark.parametrize(
    ("a", "b", "match"),
    [
        ((np.ones(1), np.ones(1)), (np.ones(1),), "tuple of length 2 vs 1"),
        ((np.ones(1),), [np.ones(1)], "tuple here in one tree, list"),
        ({"a": np.ones(1)}, {"b": np.ones(1)}, "dict keys"),
        ([np.ones(1), None], [np.ones(1), np.ones(1)], r"\[1\]"),
        ([np.ones(1), np.ones(1)], [np.ones(1), (np.ones(1),)], r"\[1\]: a leaf here"),
        (fb.Sigmoid(), fb.Tanh(), "Sigmoid here in one tree, Tanh"),
    ],
)
def test_map_structure_errors_name_the_place(a, b, match):
    with pytest.raises(fb.StructureError, match=match):
        tree.map(lambda x, y: x, a, b)


def test_map_error_path_inside_records(net):
    other = fb.Serial((*net.layers[:2], fb.Serial((net.layers[2],)), net.layers[3]))
    with pytest.raises(fb.StructureError, match=r"^layers\[2\]: Dense here in one tree, Serial"):
        tree.map(lambda x, y: x, net, other)


def test_flatten_unflatten_round_trip(net):
    leaves, structure = tree.flatten(net)
    assert len(leaves) == 4
    new = tree.unflatten(structure, [leaf * 3 for leaf in leaves])
    assert type(new) is fb.Serial and new.layers[1].slope == 0.1
    np.testing.assert_array_equal(new.layers[2].W, 3 * net.layers[2].W)
    back = tree.unflatten(structure, leaves)
    assert tree.allclose(back, net, rtol=0, atol=0)


def test_unflatten_with_too_many_leaves_raises(net):
    leaves, structure = tree.flatten(net)
    with pytest.raises(fb.StructureError, match="more leaves"):
        tree.unflatten(structure, [*leaves, np.ones(1)])


def test_unflatten_with_too_few_leaves_raises_structure_error(net):
    leaves, structure = tree.flatten(net)
    with pytest.raises(fb.StructureError):
        tree.unflatten(structure, leaves[:-1])


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32])
def test_zeros_like_keeps_shapes_and_dtypes(dtype):
    t = {"a": np.ones((2, 3), dtype), "b": [np.full(4, 7, dtype)]}
    z = tree.zeros_like(t)
    assert z["a"].shape == (2, 3) and z["b"][0].shape == (4,)
    assert z["a"].dtype == z["b"][0].dtype == np.dtype(dtype)
    assert not z["a"].any() and not z["b"][0].any()
    assert t["b"][0][0] == 7


def test_zeros_like_record(net):
    z = tree.zeros_like(net)
    assert type(z) is fb.Serial
    assert all(not leaf.any() for leaf in tree.leaves(z))
    assert tree.global_norm(net) > 0


def test_add_and_sub(net):
    doubled = tree.add(net, net)
    np.testing.assert_array_equal(doubled.layers[0].W, [[2.0, 4.0], [6.0, 8.0]])
    zero = tree.sub(net, net)
    assert tree.global_norm(zero) == 0.0
    back = tree.sub(doubled, net)
    assert tree.allclose(back, net, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_scale_values_and_keeps_dtype(dtype):
    t = (np.array([2.0, -4.0], dtype), {"k": np.array([[6.0]], dtype)})
    s = tree.scale(0.5, t)
    np.testing.assert_array_equal(s[0], [1.0, -2.0])
    np.testing.assert_array_equal(s[1]["k"], [[3.0]])
    assert s[0].dtype == s[1]["k"].dtype == np.dtype(dtype)


def test_scale_with_python_float_keeps_float32():
    s = tree.scale(0.1, [np.ones(3, np.float32)])
    assert s[0].dtype == np.float32


def test_vdot():
    a = (np.array([1.0, 2.0]), {"k": np.array([[3.0]])})
    b = (np.array([4.0, -5.0]), {"k": np.array([[6.0]])})
    assert tree.vdot(a, b) == pytest.approx(1 * 4 - 2 * 5 + 3 * 6)
    assert isinstance(tree.vdot(a, b), float)


def test_global_norm_hand_value(net):
    # ||W0||^2 = 1+4+9+16 = 30, ||b0||^2 = 0.5, ||W2||^2 = 2, ||b2||^2 = 4
    assert tree.global_norm(net) == pytest.approx(math.sqrt(36.5), rel=1e-15)
    assert tree.global_norm((np.array([3.0]), [np.array([4.0])])) == pytest.approx(5.0)
    assert tree.global_norm(()) == 0.0


@pytest.mark.parametrize(
    ("leaf", "expected"),
    [
        (np.array([1e200, 1e200]), math.sqrt(2) * 1e200),  # squares overflow: rescaled
        (np.array([1e-200, -1e-200]), math.sqrt(2) * 1e-200),  # squares underflow: rescaled
        (np.array([3e38, -3e38], np.float32), math.sqrt(2) * float(np.float32(3e38))),
        (np.array([1e-45, 0.0], np.float32), float(np.float32(1e-45))),
        (np.array([np.inf, 1.0]), math.inf),
        (np.zeros(3, np.float32), 0.0),
    ],
)
def test_global_norm_at_the_ends_of_the_range(leaf, expected):
    leaf.flags.writeable = False
    with np.errstate(all="raise"):
        assert tree.global_norm([leaf, np.zeros(2)]) == pytest.approx(expected, rel=1e-15)
        assert math.isnan(tree.global_norm([leaf, np.array([np.nan])]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_norm_of_one_vector_gives_the_bits_of_part_by_part(dtype):
    rng = np.random.default_rng(3)
    shapes = [(40, 100), (100,), (100, 100), (100,), (100, 10), (10,)]
    parts = [rng.normal(size=s).astype(dtype) for s in shapes]
    whole = np.concatenate(parts, axis=None)
    views, start = [], 0
    for p in parts:
        views.append(whole[start : start + p.size].reshape(p.shape))
        start += p.size
    with np.errstate(all="raise"):
        alone = tree.norm_of(parts)
        assert tree.norm_of(views, whole) == alone == tree.global_norm(parts)
    exact = math.sqrt(math.fsum(float(x) ** 2 for p in parts for x in p.ravel()))
    assert alone == pytest.approx(exact, rel=1e-14)


def test_allclose(net):
    assert tree.allclose(net, tree.map(lambda x: x + 1e-12, net))
    assert not tree.allclose(net, tree.map(lambda x: x + 1e-3, net))
    assert tree.allclose(net, tree.map(lambda x: x + 1e-3, net), atol=1e-2)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ((np.ones(2),), [np.ones(2)]),
        ((np.ones(2),), (np.ones(2), np.ones(2))),
        ({"a": np.ones(1)}, {"b": np.ones(1)}),
        ((np.ones(2),), (np.ones(3),)),
        ((np.ones(1),), (np.ones((1, 1)),)),
        (fb.LeakyReLU(0.1), fb.LeakyReLU(0.2)),
        ((np.ones(1), None), (np.ones(1), np.ones(1))),
    ],
)
def test_allclose_false_for_different_structures(a, b):
    assert tree.allclose(a, b) is False


def test_allclose_different_static_fields_inside_serial(net):
    other = fb.Serial((net.layers[0], fb.LeakyReLU(0.2), *net.layers[2:]))
    assert not tree.allclose(net, other)


@pytest.mark.parametrize("dtypes", [(np.float64,), (np.float32, np.float64), (np.float32,)])
def test_ravel_unravel_round_trip_preserves_dtypes(dtypes):
    t = {
        "a": [np.arange(6, dtype=dtypes[0]).reshape(2, 3)],
        "b": Pair(np.array([1.5, -2.5], dtypes[-1]), b=np.array(7.0, dtypes[0])),
    }
    flat, unravel = tree.ravel(t)
    assert flat.shape == (6 + 2 + 1,)
    assert flat.dtype == np.result_type(*dtypes)
    np.testing.assert_array_equal(flat, [0, 1, 2, 3, 4, 5, 1.5, -2.5, 7.0])
    back = unravel(flat)
    assert back["a"][0].dtype == np.dtype(dtypes[0])
    assert back["b"].a.dtype == np.dtype(dtypes[-1])
    assert back["b"].b.shape == ()
    assert tree.allclose(back, t, rtol=0, atol=0)
    moved = unravel(flat + 1)
    np.testing.assert_array_equal(moved["b"].a, [2.5, -1.5])


def test_unravel_rejects_wrong_length(net):
    flat, unravel = tree.ravel(net)
    assert flat.shape == (9,)
    with pytest.raises(fb.ShapeError, match=r"\(9,\)"):
        unravel(np.zeros(8))


def test_assert_same_structure_passes_for_equal_structures(net):
    tree.assert_same_structure(net, tree.zeros_like(net))
    tree.assert_same_structure({"a": (np.ones(2), None)}, {"a": (np.zeros(2), None)})


def test_assert_same_structure_names_first_differing_shape(net):
    other = fb.Serial(
        (net.layers[0], net.layers[1], dense([[1.0, 1.0]] * 2, [0.0, 0.0]), net.layers[3])
    )
    with pytest.raises(fb.ShapeError, match=r"^layers\[2\]\.W: leaf shapes \(2, 1\) vs \(2, 2\)"):
        tree.assert_same_structure(net, other)


def test_assert_same_structure_names_first_differing_container(net):
    shorter = fb.Serial(net.layers[:3])
    with pytest.raises(fb.StructureError, match=r"^layers: tuple of length 4 vs 3"):
        tree.assert_same_structure(net, shorter)
    with pytest.raises(fb.StructureError, match=r"\['b'\]"):
        tree.assert_same_structure(
            {"a": np.ones(1), "b": [np.ones(1)]}, {"a": np.ones(1), "b": (np.ones(1),)}
        )


def test_assert_same_structure_checks_static_fields(net):
    other = fb.Serial((net.layers[0], fb.LeakyReLU(0.2), *net.layers[2:]))
    with pytest.raises(fb.StructureError, match=r"^layers\[1\]: static field 'slope'"):
        tree.assert_same_structure(net, other)


def test_assert_same_structure_checks_nodes_after_the_last_leaf():
    with pytest.raises(fb.StructureError, match=r"^\[1\]: static field 'slope'"):
        tree.assert_same_structure((np.ones(1), fb.LeakyReLU(0.1)), (np.ones(1), fb.LeakyReLU(0.2)))
    with pytest.raises(fb.StructureError, match="tuple of length 0 vs 1"):
        tree.assert_same_structure((), (np.ones(1),))


# ---------------------------------------------------------------- the dtype policy and bad trees


@pytest.mark.parametrize(
    "leaf", [np.ones(2, np.float16), np.ones(2, complex), np.array(["a", "b"])]
)
@pytest.mark.parametrize("fn", ["add", "sub", "vdot"])
def test_arithmetic_refuses_other_dtypes_naming_the_path(fn, leaf):
    a = {"w": np.ones(2), "b": (np.ones(2),)}
    b = {"w": np.ones(2), "b": (leaf,)}
    with pytest.raises(fb.DTypeError, match=rf"\['b'\]\[0\]: tree.{fn}: a leaf must be numeric"):
        getattr(tree, fn)(a, b)


def test_dtypes_are_checked_before_shapes():
    with pytest.raises(fb.DTypeError, match=r"tree.add"):
        tree.add({"w": np.ones(3)}, {"w": "abc"})


def test_integer_leaves_are_taken_as_float64():
    out = tree.add({"w": np.ones(2, int)}, {"w": np.ones(2, bool)})
    assert out["w"].dtype == np.float64 and out["w"].tolist() == [2.0, 2.0]
    assert tree.global_norm([np.array([3, 4])]) == 5.0


@pytest.mark.parametrize("fn", ["global_norm", "ravel", "zeros_like"])
def test_one_tree_functions_refuse_other_dtypes(fn):
    with pytest.raises(fb.DTypeError, match=r"\['w'\]|the leaf \['w'\]"):
        getattr(tree, fn)({"w": np.ones(2, np.float16)})


@pytest.mark.parametrize("factor", [np.nan, "a", None, True, np.ones(2)])
def test_scale_checks_its_factor(factor):
    with pytest.raises(ValueError, match=r"tree.scale: factor must be a finite real number"):
        tree.scale(factor, {"w": np.ones(2)})


def test_unflatten_map_and_unravel_check_their_arguments():
    with pytest.raises(ValueError, match=r"tree.unflatten: new_leaves must be a list or tuple"):
        tree.unflatten((np.ones(1),), None)
    with pytest.raises(ValueError, match=r"tree.map: f must be a function"):
        tree.map(3, (np.ones(1),))
    _, unravel = tree.ravel({"w": np.ones(2)})
    with pytest.raises(fb.DTypeError, match="unravel: the vector must be numeric"):
        unravel(np.ones(2, complex))


def test_a_tree_too_deep_or_containing_itself_is_a_structure_error():
    cyclic: list = []
    cyclic.append(cyclic)
    with pytest.raises(fb.StructureError, match=r"nested too deeply .* or contains itself"):
        tree.leaves(cyclic)
    deep: object = np.ones(1)
    for _ in range(5000):
        deep = (deep,)
    with pytest.raises(fb.StructureError, match="nested too deeply"):
        tree.map(lambda a: a, deep)


def test_global_norm_names_the_leaf_it_refuses():
    with pytest.raises(fb.DTypeError, match=r"tree.global_norm: the leaf \['b'\]\[1\] must be"):
        tree.global_norm({"a": np.ones(2), "b": (np.ones(1), np.array(["x"]))})
