"""Classification helpers: probabilities, labels and accuracy from network outputs."""

from __future__ import annotations

import numpy as np
import pytest

import fnbp as fb


def _ro(a, dtype=None) -> np.ndarray:
    a = np.array(a, dtype=dtype)
    a.flags.writeable = False
    return a


# ---------------------------------------------------------------- probabilities


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_probabilities_softmax_rows(dtype):
    logits = _ro([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [-5.0, 10.0, 0.5]], dtype)
    p = fb.probabilities(logits)
    e = np.exp(logits.astype(np.float64) - logits.max(axis=1, keepdims=True))
    assert p.shape == logits.shape
    assert p.dtype == dtype
    np.testing.assert_allclose(p, e / e.sum(axis=1, keepdims=True), rtol=1e-6)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(p[1], 1 / 3, rtol=1e-6)


@pytest.mark.parametrize("shape", [(4, 1), (4,)])
def test_probabilities_sigmoid_for_one_column(shape):
    z = _ro(np.array([-2.0, 0.0, 1.0, 3.0]).reshape(shape))
    p = fb.probabilities(z)
    assert p.shape == shape
    np.testing.assert_allclose(p, 1 / (1 + np.exp(-z)), rtol=1e-12)
    assert p.ravel()[1] == 0.5


def test_probabilities_extreme_logits_are_finite_and_silent():
    with np.errstate(all="raise"):
        p = fb.probabilities(np.array([[1000.0, -1000.0, 0.0]]))
        s = fb.probabilities(np.array([[1000.0], [-1000.0]]))
    np.testing.assert_allclose(p, [[1.0, 0.0, 0.0]])
    np.testing.assert_allclose(s, [[1.0], [0.0]])


# ---------------------------------------------------------------- labels


def test_labels_argmax_for_classes():
    pred = _ro([[0.1, 0.7, 0.2], [3.0, -1.0, 2.0], [0.0, 0.0, 5.0]])
    out = fb.labels(pred)
    assert out.tolist() == [1, 0, 2]
    assert out.dtype.kind == "i"


def test_labels_threshold_for_one_column():
    pred = _ro([[0.2], [0.5], [0.6], [-0.1]])
    assert fb.labels(pred).tolist() == [0, 0, 1, 0]  # strictly greater than 0.5
    assert fb.labels(pred, threshold=0.0).tolist() == [1, 1, 1, 0]
    assert fb.labels(pred.ravel(), threshold=0.0).tolist() == [1, 1, 1, 0]
    assert fb.labels(pred).shape == (4,)


# ---------------------------------------------------------------- accuracy


def test_accuracy_integer_labels():
    pred = _ro([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    acc = fb.accuracy(pred, _ro([1, 0, 0, 0]))
    assert type(acc) is float
    assert acc == 0.75


def test_accuracy_one_hot_targets():
    pred = _ro([[0.1, 0.5, 0.4], [0.8, 0.1, 0.1], [0.2, 0.2, 0.6]])
    target = _ro(fb.datasets.one_hot(np.array([1, 2, 2]), 3))
    assert fb.accuracy(pred, target) == pytest.approx(2 / 3)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, bool])
def test_accuracy_binary_column_targets(dtype):
    pred = _ro([[0.9], [0.2], [0.7], [0.4], [0.6]])
    target = _ro([[1], [0], [0], [0], [1]], dtype)
    assert fb.accuracy(pred, target) == 0.8
    assert fb.accuracy(pred.ravel(), target.ravel()) == 0.8


def test_accuracy_threshold_for_logits():
    logits = _ro([[0.3], [-0.2], [-2.0]])
    target = _ro([[1.0], [1.0], [0.0]])
    assert fb.accuracy(logits, target) == pytest.approx(1 / 3)  # 0.5 on probabilities
    assert fb.accuracy(logits, target, threshold=0.0) == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    ("pred", "target"),
    [
        (np.zeros((4, 1)), np.zeros(5)),
        (np.zeros((4, 1)), np.zeros((3, 1))),
        (np.zeros((4, 3)), np.zeros(5, np.int64)),
        (np.zeros((4, 3)), np.eye(3)[[0, 1, 2, 0, 1]]),  # one-hot, 5 rows for 4 predictions
        (np.zeros((1, 3)), np.eye(3)[[0, 1, 2, 0, 1]]),  # ... must not broadcast
        (np.zeros((4, 3)), np.eye(5)[[0, 1, 2, 3]]),  # one-hot over 5 classes, 3 outputs
    ],
    ids=["col-vs-5", "col-vs-3col", "classes-vs-5labels", "onehot-rows", "onehot-1row", "onehot-C"],
)
def test_accuracy_shape_mismatch_is_shape_error(pred, target):
    with pytest.raises(fb.ShapeError):
        fb.accuracy(pred, target)


def test_metrics_do_not_modify_inputs():
    pred = _ro([[0.1, 0.9], [0.8, 0.2]])
    target = _ro([1, 0])
    before = pred.copy(), target.copy()
    fb.probabilities(pred)
    fb.labels(pred)
    fb.accuracy(pred, target)
    assert np.array_equal(pred, before[0])
    assert np.array_equal(target, before[1])


# ---------------------------------------------------------------- the dtype policy, NaN, domains

REFUSED = [np.float16, np.longdouble, np.complex64, object, "U3", "datetime64[s]"]


@pytest.mark.parametrize("dtype", REFUSED, ids=str)
@pytest.mark.parametrize("fn", ["probabilities", "labels", "accuracy"])
def test_metrics_follow_the_dtype_policy(fn, dtype):
    pred = np.zeros((4, 3)).astype(dtype)
    args = (pred, np.array([0, 1, 2, 0])) if fn == "accuracy" else (pred,)
    with pytest.raises(fb.DTypeError, match=f"{fn}: prediction must be numeric"):
        getattr(fb, fn)(*args)


@pytest.mark.parametrize("dtype", [bool, np.int64, np.uint8])
def test_bool_and_integer_outputs_are_taken_as_float64(dtype):
    pred = np.array([[0, 1], [1, 0]], dtype)
    assert fb.probabilities(pred).dtype == np.float64
    assert fb.labels(pred).tolist() == [1, 0]


def test_a_nan_prediction_has_no_label():
    pred = np.array([[0.1, 0.9], [np.nan, 0.2]])
    with pytest.raises(ValueError, match="labels: the prediction has NaN"):
        fb.labels(pred)
    with pytest.raises(ValueError, match="has NaN"):
        fb.accuracy(pred, np.array([1, 0]))
    assert np.isnan(fb.probabilities(pred)[1]).all()  # probabilities propagate, as layers do


@pytest.mark.parametrize(
    ("pred", "target", "match"),
    [
        (np.zeros((2, 3)), np.array([0, 3]), r"labels must be in \[0, 3\)"),
        (np.zeros((2, 3)), np.array([0.0, 1.0]), "class labels must be integers"),
        (np.zeros((2, 1)), np.array([[0.0], [2.0]]), "binary targets must be 0 or 1"),
        (np.zeros((2, 1)), np.array([[0.0], [np.nan]]), "the target must be finite"),
        (np.zeros((0, 3)), np.zeros(0, int), "the batch is empty"),
    ],
    ids=["label-range", "float-labels", "binary-range", "nan-target", "empty"],
)
def test_accuracy_domain_errors(pred, target, match):
    with pytest.raises(ValueError, match=match):
        fb.accuracy(pred, target)


@pytest.mark.parametrize("threshold", [np.nan, "a", None, True])
def test_thresholds_are_checked(threshold):
    with pytest.raises(ValueError, match="threshold must be a finite real number"):
        fb.labels(np.zeros((2, 1)), threshold)


def test_labels_and_accuracy_of_outputs_per_time_step():
    pred = np.zeros((2, 3, 4))
    pred[..., 2] = 1.0
    assert fb.labels(pred).shape == (2, 3)
    assert fb.accuracy(pred, np.full((2, 3), 2)) == 1.0


@pytest.mark.parametrize("pred", [np.float64(0.3), np.zeros((2, 0)), np.zeros((0, 0))])
def test_a_prediction_needs_a_batch_axis_and_a_column(pred):
    with pytest.raises(fb.ShapeError, match="needs a batch axis and, if it has more, at least one"):
        fb.labels(pred)
