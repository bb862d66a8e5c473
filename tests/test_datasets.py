"""Toy datasets: shapes, dtypes, reproducibility from keys, geometry, splitting, one-hot."""

from __future__ import annotations

import numpy as np
import pytest

import fnbp as fb
from fnbp import datasets as ds

KEY = fb.random.key(0)
OTHER = fb.random.key(1)

# name -> (make(key, dtype), expected shapes for n=101, integer labels?)
GENERATORS = {
    "and_float": (lambda k, dt: ds.and_float(k, 101, noise=0.1, dtype=dt), (2, (1,)), False),
    "two_moons": (lambda k, dt: ds.two_moons(k, 101, dtype=dt), (2, ()), True),
    "spirals": (lambda k, dt: ds.spirals(k, 101, n_classes=3, dtype=dt), (2, ()), True),
    "blobs": (lambda k, dt: ds.blobs(k, 101, centers=4, n_features=3, dtype=dt), (3, ()), True),
    "regression_1d": (lambda k, dt: ds.regression_1d(k, 101, dtype=dt), (1, (1,)), False),
}


def wrapped(angle: np.ndarray) -> np.ndarray:
    """``angle`` mapped into [-pi, pi)."""
    return (angle + np.pi) % (2 * np.pi) - np.pi


# --------------------------------------------------------------------------- all generators


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", GENERATORS)
def test_shapes_and_dtypes(name, dtype):
    make, (d, y_tail), integer = GENERATORS[name]
    x, y = make(KEY, dtype)
    assert x.shape == (101, d)
    assert x.dtype == dtype
    assert y.shape == (101, *y_tail)
    assert y.dtype == (np.int64 if integer else dtype)
    assert np.isfinite(x).all()


@pytest.mark.parametrize("name", GENERATORS)
def test_same_key_same_bits_other_key_other_data(name):
    make = GENERATORS[name][0]
    x1, y1 = make(KEY, np.float64)
    x2, y2 = make(fb.random.key(0), np.float64)
    assert x1.tobytes() == x2.tobytes()
    assert y1.tobytes() == y2.tobytes()
    x3, _ = make(OTHER, np.float64)
    assert x3.tobytes() != x1.tobytes()


@pytest.mark.parametrize("name", ["and_float", "two_moons", "spirals", "blobs"])
def test_float32_is_float64_rounded(name):
    make = GENERATORS[name][0]
    x64, y64 = make(KEY, np.float64)
    x32, y32 = make(KEY, np.float32)
    np.testing.assert_array_equal(x32, x64.astype(np.float32))
    np.testing.assert_array_equal(y32, y64.astype(y32.dtype))


def test_global_numpy_rng_untouched():
    before = np.random.get_state()  # noqa: NPY002 (inspected, never drawn from)
    for make, _, _ in GENERATORS.values():
        make(KEY, np.float32)
    ds.train_test_split(KEY, np.arange(10))
    after = np.random.get_state()  # noqa: NPY002
    assert before[0] == after[0]
    np.testing.assert_array_equal(before[1], after[1])
    assert before[2:] == after[2:]


@pytest.mark.parametrize(
    "call",
    [
        lambda: ds.two_moons(KEY, 0),
        lambda: ds.spirals(KEY, -3),
        lambda: ds.blobs(KEY, 0),
        lambda: ds.and_float(KEY, 0),
        lambda: ds.regression_1d(KEY, 0),
    ],
)
def test_n_must_be_positive(call):
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        call()


@pytest.mark.parametrize("n", [2.5, True, "10", None])
def test_n_must_be_an_integer(n):
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        ds.two_moons(KEY, n)


def test_numpy_integer_n_is_fine():
    x, _ = ds.two_moons(KEY, np.int64(10))
    assert x.shape == (10, 2)


@pytest.mark.parametrize("maker", [ds.two_moons, ds.spirals, ds.and_float, ds.regression_1d])
def test_noise_validated(maker):
    with pytest.raises(ValueError, match="noise must be a finite real number >= 0"):
        maker(KEY, 10, noise=-0.1)
    with pytest.raises(ValueError, match="noise must be a finite real number"):
        maker(KEY, 10, noise=float("nan"))
    with pytest.raises(ValueError, match="noise must be a finite real number"):
        maker(KEY, 10, noise="0.1")


@pytest.mark.parametrize("dtype", [np.int64, np.bool_, np.complex128, "not a dtype"])
def test_dtype_must_be_float(dtype):
    with pytest.raises(fb.DTypeError, match="dtype must be float32 or float64"):
        ds.two_moons(KEY, 10, dtype=dtype)
    with pytest.raises(fb.DTypeError, match="dtype must be float32 or float64"):
        ds.and_gate(dtype)
    with pytest.raises(fb.DTypeError, match="dtype must be float32 or float64"):
        ds.one_hot([0, 1], dtype=dtype)


def test_key_must_be_a_key():
    with pytest.raises(ValueError, match="fnbp key"):
        ds.two_moons(0, 10)


# --------------------------------------------------------------------------- truth tables


def test_and_gate_exact_values_in_notebook_order():
    x, y = ds.and_gate()
    assert x.dtype == y.dtype == np.float64
    np.testing.assert_array_equal(x, [[1, 1], [1, 0], [0, 1], [0, 0]])
    np.testing.assert_array_equal(y, [[1], [0], [0], [0]])
    assert y.shape == (4, 1)


def test_xor_exact_values():
    x, y = ds.xor(np.float32)
    assert x.dtype == y.dtype == np.float32
    np.testing.assert_array_equal(x, [[1, 1], [1, 0], [0, 1], [0, 0]])
    np.testing.assert_array_equal(y, [[0], [1], [1], [0]])


def test_truth_tables_are_fresh_arrays():
    x, y = ds.and_gate()
    x[:] = 7.0
    y[:] = 7.0
    x2, y2 = ds.and_gate()
    assert x2[0, 0] == 1.0
    assert y2[0, 0] == 1.0


def test_and_float_labels_follow_the_rule():
    x, y = ds.and_float(KEY, 4000)
    assert ((x >= 0) & (x < 1)).all()
    expected = (x[:, 0] > 0.5) & (x[:, 1] > 0.5)
    np.testing.assert_array_equal(y[:, 0], expected.astype(np.float64))
    assert set(np.unique(y).tolist()) == {0.0, 1.0}
    assert abs(y.mean() - 0.25) < 0.03


def test_and_float_noise_jitters_inputs_not_labels():
    x0, y0 = ds.and_float(KEY, 500)
    x1, y1 = ds.and_float(KEY, 500, noise=0.05)
    np.testing.assert_array_equal(y0, y1)
    diff = x1 - x0
    assert 0.04 < diff.std() < 0.06
    assert abs(diff.mean()) < 0.01


# --------------------------------------------------------------------------- two moons


@pytest.mark.parametrize("n", [1, 2, 101, 1000])
def test_two_moons_balance(n):
    _, labels = ds.two_moons(KEY, n)
    assert (labels == 0).sum() == n // 2
    assert (labels == 1).sum() == n - n // 2


def test_two_moons_noiseless_points_lie_on_the_half_circles():
    x, labels = ds.two_moons(KEY, 500, noise=0.0)
    outer, inner = x[labels == 0], x[labels == 1]
    np.testing.assert_allclose(np.hypot(*outer.T), 1.0, rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.hypot(inner[:, 0] - 1, inner[:, 1] - 0.5), 1.0, atol=1e-12)
    assert (outer[:, 1] >= -1e-12).all()
    assert (inner[:, 1] <= 0.5 + 1e-12).all()
    assert x[:, 0].min() == pytest.approx(-1.0)
    assert x[:, 0].max() == pytest.approx(2.0)


def test_two_moons_class_means():
    x, labels = ds.two_moons(KEY, 4000, noise=0.1)
    np.testing.assert_allclose(x[labels == 0].mean(0), [0.0, 2 / np.pi], atol=0.02)
    np.testing.assert_allclose(x[labels == 1].mean(0), [1.0, 0.5 - 2 / np.pi], atol=0.02)


def test_two_moons_rows_are_shuffled():
    _, labels = ds.two_moons(KEY, 200)
    assert (labels[:100] == 0).mean() < 0.8


def test_two_moons_noise_only_rescales_the_same_perturbation():
    x0, l0 = ds.two_moons(KEY, 300, noise=0.0)
    x1, l1 = ds.two_moons(KEY, 300, noise=0.1)
    x2, l2 = ds.two_moons(KEY, 300, noise=0.2)
    np.testing.assert_array_equal(l0, l1)
    np.testing.assert_array_equal(l0, l2)
    np.testing.assert_allclose(x2 - x0, 2 * (x1 - x0), atol=1e-12)
    assert 0.08 < (x1 - x0).std() < 0.12


def test_two_moons_matches_scikit_learn_geometry():
    datasets = pytest.importorskip("sklearn.datasets")
    n = 101
    x, labels = ds.two_moons(KEY, n, noise=0.0)
    ref_x, ref_labels = datasets.make_moons(n, shuffle=False, noise=0.0)
    order = np.lexsort((x[:, 1], x[:, 0], labels))
    ref_order = np.lexsort((ref_x[:, 1], ref_x[:, 0], ref_labels))
    np.testing.assert_array_equal(labels[order], ref_labels[ref_order])
    np.testing.assert_allclose(x[order], ref_x[ref_order], atol=1e-12)


# --------------------------------------------------------------------------- spirals


def test_spirals_balance():
    _, labels = ds.spirals(KEY, 301, n_classes=3)
    np.testing.assert_array_equal(np.bincount(labels), [101, 100, 100])


@pytest.mark.parametrize("n_classes, turns", [(2, 1.0), (3, 1.5), (5, 0.5)])
def test_spirals_noiseless_points_lie_on_their_arm(n_classes, turns):
    x, labels = ds.spirals(KEY, 600, n_classes=n_classes, noise=0.0, turns=turns)
    r = np.hypot(*x.T)
    assert ((r >= 0) & (r < 1)).all()
    arm = 2 * np.pi * (turns * r + labels / n_classes)
    np.testing.assert_allclose(wrapped(np.arctan2(x[:, 1], x[:, 0]) - arm), 0.0, atol=1e-9)


def test_spirals_angle_noise_level_and_separability():
    noise, n_classes, turns = 0.2, 3, 1.0
    x, labels = ds.spirals(KEY, 6000, n_classes=n_classes, noise=noise, turns=turns)
    r, angle = np.hypot(*x.T), np.arctan2(x[:, 1], x[:, 0])
    deviation = wrapped(angle - 2 * np.pi * (turns * r + labels / n_classes))
    assert abs(deviation.mean()) < 0.02
    assert abs(deviation.std() - noise) < 0.02
    # nearest arm at each point's radius recovers the class almost always
    arms = 2 * np.pi * (turns * r[:, None] + np.arange(n_classes) / n_classes)
    nearest = np.abs(wrapped(angle[:, None] - arms)).argmin(axis=1)
    assert (nearest == labels).mean() > 0.98


def test_spirals_single_class_and_bad_arguments():
    _, labels = ds.spirals(KEY, 5, n_classes=1)
    np.testing.assert_array_equal(labels, 0)
    with pytest.raises(ValueError, match="turns must be > 0"):
        ds.spirals(KEY, 10, turns=0)
    with pytest.raises(ValueError, match=r"n_classes must be an integer in \[1, 10\]"):
        ds.spirals(KEY, 10, n_classes=0)


# --------------------------------------------------------------------------- blobs


def test_blobs_given_centers():
    centers = np.array([[0.0, 0.0], [10.0, -5.0], [-3.0, 7.0]])
    x, labels = ds.blobs(KEY, 3001, centers=centers, std=0.5)
    np.testing.assert_array_equal(np.bincount(labels), [1001, 1000, 1000])
    for c, center in enumerate(centers):
        pts = x[labels == c]
        np.testing.assert_allclose(pts.mean(0), center, atol=0.06)
        np.testing.assert_allclose(pts.std(0), 0.5, atol=0.04)


def test_blobs_std_per_center():
    x, labels = ds.blobs(KEY, 4000, centers=[[0, 0, 0], [5, 5, 5]], std=[0.1, 2.0])
    assert x.shape == (4000, 3)
    np.testing.assert_allclose(x[labels == 0].std(0), 0.1, rtol=0.1)
    np.testing.assert_allclose(x[labels == 1].std(0), 2.0, rtol=0.1)


def test_blobs_random_centers_lie_in_the_box():
    x, labels = ds.blobs(KEY, 3000, centers=5, std=0.1, n_features=3, box=(2.0, 4.0))
    assert x.shape == (3000, 3)
    assert sorted(np.unique(labels).tolist()) == [0, 1, 2, 3, 4]
    for c in range(5):
        mean = x[labels == c].mean(0)
        assert ((mean > 2.0 - 0.05) & (mean < 4.0 + 0.05)).all()


def test_blobs_zero_std_gives_the_centers_exactly():
    centers = np.array([[1.0, 2.0], [3.0, 4.0]])
    x, labels = ds.blobs(KEY, 10, centers=centers, std=0.0)
    np.testing.assert_array_equal(x, centers[labels])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"centers": [[0, 0]], "n_features": 3}, "n_features=3"),
        ({"centers": [0.0, 1.0]}, "centers must be"),
        ({"centers": np.zeros((0, 2))}, "centers must be"),
        ({"centers": [[0, np.inf]]}, "finite"),
        ({"centers": 0}, r"centers must be an integer in \[1, 10\]"),
        ({"centers": 11}, r"centers must be an integer in \[1, 10\]"),
        ({"centers": 2, "std": [1.0, 1.0, 1.0]}, "one per centre"),
        ({"std": -1.0}, "std must be a finite real number >= 0"),
        ({"centers": 2, "std": [1.0, -1.0]}, "std must be finite and >= 0"),
        ({"box": (1.0, 1.0)}, "low < high"),
    ],
)
def test_blobs_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ds.blobs(KEY, 10, **kwargs)


# --------------------------------------------------------------------------- regression


def test_regression_noiseless_is_the_curve():
    for dtype in (np.float32, np.float64):
        x, y = ds.regression_1d(KEY, 200, noise=0.0, dtype=dtype)
        np.testing.assert_array_equal(y, np.sin(x))
        assert ((x >= -3) & (x < 3)).all()


def test_regression_noise_level_matches():
    x, y = ds.regression_1d(KEY, 5000, noise=0.3, x_range=(0.0, 2.0), fn=np.square)
    assert ((x >= 0) & (x < 2)).all()
    residual = y - x**2
    assert abs(residual.mean()) < 0.02
    assert abs(residual.std() - 0.3) < 0.02


def test_regression_does_not_alias_x_through_fn():
    x, y = ds.regression_1d(KEY, 50, noise=0.5, fn=lambda t: t)
    assert not np.shares_memory(x, y)
    assert not np.array_equal(x, y)


def test_regression_bad_arguments():
    with pytest.raises(ValueError, match="same shape"):
        ds.regression_1d(KEY, 10, fn=lambda t: t.ravel())
    with pytest.raises(ValueError, match="fn must be a function of x"):
        ds.regression_1d(KEY, 10, fn=3.0)
    with pytest.raises(ValueError, match="taking 1 argument"):
        ds.regression_1d(KEY, 10, fn=lambda a, b: a)
    with pytest.raises(ValueError, match="low < high"):
        ds.regression_1d(KEY, 10, x_range=(3, -3))
    with pytest.raises(ValueError, match="pair"):
        ds.regression_1d(KEY, 10, x_range=3)


# --------------------------------------------------------------------------- train_test_split


def readonly(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


def test_split_sizes_disjoint_covering_and_paired():
    x = readonly(np.arange(40.0).reshape(20, 2))
    y = readonly(np.arange(20))
    x_tr, x_te, y_tr, y_te = ds.train_test_split(KEY, x, y)
    assert (len(x_tr), len(x_te), len(y_tr), len(y_te)) == (15, 5, 15, 5)
    assert x_tr.dtype == x.dtype and y_te.dtype == y.dtype
    np.testing.assert_array_equal(np.sort(np.concatenate([y_tr, y_te])), y)
    assert not set(y_tr.tolist()) & set(y_te.tolist())
    np.testing.assert_array_equal(x_tr[:, 0], 2 * y_tr)
    np.testing.assert_array_equal(x_te[:, 1], 2 * y_te + 1)


def test_split_is_shuffled_and_keyed():
    y = np.arange(100)
    a_tr, a_te = ds.train_test_split(KEY, y)
    b_tr, b_te = ds.train_test_split(fb.random.key(0), y)
    c_tr, _ = ds.train_test_split(OTHER, y)
    np.testing.assert_array_equal(a_tr, b_tr)
    np.testing.assert_array_equal(a_te, b_te)
    assert not np.array_equal(a_tr, c_tr)
    assert not np.array_equal(np.sort(a_te), np.arange(75, 100))


@pytest.mark.parametrize(
    "n, fraction, n_test", [(10, 0.25, 3), (10, 0.3, 3), (10, 0.7, 7), (4, 0.5, 2), (3, 0.1, 1)]
)
def test_split_test_size_is_ceil(n, fraction, n_test):
    tr, te = ds.train_test_split(KEY, np.arange(n), test_fraction=fraction)
    assert (len(tr), len(te)) == (n - n_test, n_test)


def test_split_returns_new_writable_arrays():
    x = readonly(np.arange(12.0).reshape(6, 2))
    for part in ds.train_test_split(KEY, x, test_fraction=0.5):
        assert not np.shares_memory(part, x)
        part[...] = -1.0
    assert x.min() == 0.0


def test_split_three_arrays_and_lists():
    a, b, c = list(range(8)), np.arange(8) * 10, np.arange(8.0)[:, None]
    a_tr, a_te, b_tr, b_te, c_tr, c_te = ds.train_test_split(KEY, a, b, c)
    np.testing.assert_array_equal(b_tr, 10 * a_tr)
    np.testing.assert_array_equal(b_te, 10 * a_te)
    np.testing.assert_array_equal(c_te[:, 0], a_te)
    assert c_tr.shape == (6, 1)


def test_split_errors():
    with pytest.raises(ValueError, match=r"lengths \[10, 9\]"):
        ds.train_test_split(KEY, np.zeros((10, 2)), np.zeros(9))
    for bad in (0.0, 1.0, -0.5, 1.5):
        with pytest.raises(ValueError, match="strictly between 0 and 1"):
            ds.train_test_split(KEY, np.arange(10), test_fraction=bad)
    with pytest.raises(ValueError, match="test_fraction must be a finite real number"):
        ds.train_test_split(KEY, np.arange(10), test_fraction="0.2")
    with pytest.raises(ValueError, match="leaves no training rows"):
        ds.train_test_split(KEY, np.arange(3), test_fraction=0.9)
    with pytest.raises(TypeError, match="at least one array"):
        ds.train_test_split(KEY)
    with pytest.raises(ValueError, match="at least one dimension"):
        ds.train_test_split(KEY, np.float64(3.0))


# --------------------------------------------------------------------------- one_hot


def test_one_hot_round_trip():
    labels = np.array([2, 0, 1, 2, 4])
    y = ds.one_hot(labels)
    assert y.shape == (5, 5) and y.dtype == np.float64
    np.testing.assert_array_equal(y.argmax(axis=1), labels)
    np.testing.assert_array_equal(y.sum(axis=1), 1.0)
    assert set(np.unique(y).tolist()) == {0.0, 1.0}


def test_one_hot_n_classes_dtype_and_shapes():
    y = ds.one_hot(np.array([0, 1], dtype=np.uint8), n_classes=4, dtype=np.float32)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, [[1, 0, 0, 0], [0, 1, 0, 0]])
    assert ds.one_hot(np.zeros((2, 3), dtype=np.int32), n_classes=2).shape == (2, 3, 2)
    assert ds.one_hot(np.array([], dtype=np.int64), n_classes=3).shape == (0, 3)


def test_one_hot_of_generated_labels():
    _, labels = ds.spirals(KEY, 30, n_classes=3)
    np.testing.assert_array_equal(ds.one_hot(labels).argmax(-1), labels)


@pytest.mark.parametrize("labels", [np.array([0.0, 1.0]), [0.5], np.array([True, False])])
def test_one_hot_rejects_non_integer_labels(labels):
    with pytest.raises(fb.DTypeError, match="integer labels"):
        ds.one_hot(labels)


@pytest.mark.parametrize(
    "labels, n_classes, match",
    [
        ([0, 3], 3, "label 3 is out of range for n_classes=3"),
        ([0, -1, 2], None, "label -1 is out of range for n_classes=3"),
        ([-2], 4, "label -2 is out of range for n_classes=4"),
    ],
)
def test_one_hot_rejects_bad_labels(labels, n_classes, match):
    with pytest.raises(ValueError, match=match):
        ds.one_hot(labels, n_classes)


def test_one_hot_bad_n_classes_and_empty():
    with pytest.raises(ValueError, match="n_classes must be an integer >= 1"):
        ds.one_hot([0], n_classes=0)
    with pytest.raises(ValueError, match="n_classes must be an integer"):
        ds.one_hot([0], n_classes=2.0)
    with pytest.raises(ValueError, match="empty labels"):
        ds.one_hot(np.array([], dtype=np.int64))


# ---------------------------------------------------------------- sizes and values checked first


@pytest.mark.parametrize(
    "make",
    [
        lambda n: ds.and_float(KEY, n),
        lambda n: ds.two_moons(KEY, n),
        lambda n: ds.spirals(KEY, n),
        lambda n: ds.blobs(KEY, n),
        lambda n: ds.regression_1d(KEY, n),
    ],
    ids=["and_float", "two_moons", "spirals", "blobs", "regression_1d"],
)
@pytest.mark.parametrize("n", [10**10, 2**64])
def test_a_huge_n_is_refused_before_allocating(make, n):
    with pytest.raises(ValueError, match=r"samples would need .* refusing to allocate"):
        make(n)


def test_more_classes_or_centres_than_points_are_refused():
    with pytest.raises(ValueError, match=r"spirals: n_classes must be an integer in \[1, 10\]"):
        ds.spirals(KEY, 10, n_classes=10**10)
    with pytest.raises(ValueError, match=r"blobs: the number of centres must be an integer in"):
        ds.blobs(KEY, 2, centers=[[0, 0], [1, 1], [2, 2]])


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"centers": "ab"}, fb.DTypeError, "blobs: centers must be numeric"),
        ({"centers": [[0, 0], [1]]}, ValueError, "centers must be a rectangular array"),
        ({"centers": [[0, np.nan]]}, ValueError, "centers must be finite"),
        ({"centers": 2, "std": np.float16}, ValueError, "std must be"),
        ({"centers": 2, "std": ["a", "b"]}, fb.DTypeError, "std must be numeric"),
    ],
)
def test_blobs_centres_and_stds_follow_the_policy(kwargs, error, match):
    with pytest.raises(error, match=match):
        ds.blobs(KEY, 10, **kwargs)


def test_one_hot_of_a_huge_label_is_refused_before_allocating():
    with pytest.raises(ValueError, match="refusing to allocate"):
        ds.one_hot([0, 10**12])
