"""Losses: values by hand, gradients by finite differences, dtypes, stability, errors."""

import math

import numpy as np
import pytest

import fnbp as fb

LOSSES = [
    fb.binary_cross_entropy,
    fb.sigmoid_binary_cross_entropy,
    fb.softmax_cross_entropy,
    fb.mse,
]
LOSS_IDS = [loss.name for loss in LOSSES]


def case(loss, make, labels, probs, dtype=np.float64, n=5, c=3):
    """A (prediction, target) pair that is valid for ``loss``."""
    if loss is fb.binary_cross_entropy:
        target = make(n, c, low=0.0, high=1.0) > 0.5
        target.flags.writeable = False
        return make(n, c, dtype=dtype, low=0.05, high=0.95), target
    if loss is fb.softmax_cross_entropy:
        return make(n, c, dtype=dtype, low=-3.0, high=3.0), labels(n, c)
    if loss is fb.sigmoid_binary_cross_entropy:
        return make(n, c, dtype=dtype, low=-3.0, high=3.0), make(n, c, dtype=dtype, low=0.0)
    return make(n, c, dtype=dtype, low=-3.0, high=3.0), make(n, c, dtype=dtype)


# ---------------------------------------------------------------- values by hand


def test_values_by_hand():
    assert float(fb.binary_cross_entropy([[0.5]], [[1.0]])) == pytest.approx(math.log(2), rel=1e-15)
    assert float(fb.sigmoid_binary_cross_entropy([[0.0]], [[1.0]])) == pytest.approx(
        math.log(2), rel=1e-15
    )
    assert float(fb.softmax_cross_entropy([[0.0, 0.0]], [1])) == pytest.approx(
        math.log(2), rel=1e-15
    )
    assert float(fb.mse([[1.0], [3.0]], [[0.0], [1.0]])) == 2.5


def test_binary_cross_entropy_value_and_grad_by_hand():
    p = np.array([[0.8], [0.4]])
    y = np.array([[1.0], [0.0]])
    value, g = fb.binary_cross_entropy.value_and_grad(p, y)
    assert float(value) == pytest.approx((-math.log(0.8) - math.log(0.6)) / 2, rel=1e-14)
    np.testing.assert_allclose(g, [[-1 / 0.8 / 2], [1 / 0.6 / 2]], rtol=1e-14)


def test_sigmoid_binary_cross_entropy_value_and_grad_by_hand():
    z = np.array([[2.0, -1.0]])
    y = np.array([[1.0, 1.0]])
    s = [1 / (1 + math.exp(-2.0)), 1 / (1 + math.exp(1.0))]
    value, g = fb.sigmoid_binary_cross_entropy.value_and_grad(z, y)
    assert float(value) == pytest.approx(-(math.log(s[0]) + math.log(s[1])) / 2, rel=1e-14)
    np.testing.assert_allclose(g, [[(s[0] - 1) / 2, (s[1] - 1) / 2]], rtol=1e-14)


def test_softmax_cross_entropy_value_and_grad_by_hand():
    z = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    e = [math.exp(1.0), math.exp(2.0), math.exp(3.0)]
    p0 = [v / sum(e) for v in e]
    value, g = fb.softmax_cross_entropy.value_and_grad(z, np.array([2, 0]))
    assert float(value) == pytest.approx((-math.log(p0[2]) + math.log(3.0)) / 2, rel=1e-14)
    expected = [[p0[0] / 2, p0[1] / 2, (p0[2] - 1) / 2], [(1 / 3 - 1) / 2, 1 / 6, 1 / 6]]
    np.testing.assert_allclose(g, expected, rtol=1e-14)


def test_mse_grad_by_hand():
    value, g = fb.mse.value_and_grad(np.array([[1.0, 2.0]]), np.array([[0.0, 4.0]]))
    assert float(value) == pytest.approx((1.0 + 4.0) / 2)
    np.testing.assert_allclose(g, [[1.0, -2.0]])


def test_call_equals_value_and_grad(make, labels, probs):
    for loss in LOSSES:
        pred, target = case(loss, make, labels, probs)
        assert loss(pred, target) == loss.value_and_grad(pred, target)[0]


def test_sigmoid_bce_equals_bce_of_sigmoid(make):
    z, y = make(4, 3, low=-4.0, high=4.0), make(4, 3, low=0.0, high=1.0)
    p = fb.forward(fb.Sigmoid(), z)
    assert float(fb.sigmoid_binary_cross_entropy(z, y)) == pytest.approx(
        float(fb.binary_cross_entropy(p, y)), rel=1e-12
    )


def test_softmax_ce_labels_equal_one_hot(make, labels):
    z, t = make(6, 4, low=-3.0, high=3.0), labels(6, 4)
    one_hot = np.eye(4)[t]
    v1, g1 = fb.softmax_cross_entropy.value_and_grad(z, t)
    v2, g2 = fb.softmax_cross_entropy.value_and_grad(z, one_hot)
    assert float(v1) == pytest.approx(float(v2), rel=1e-14)
    np.testing.assert_allclose(g1, g2, rtol=1e-13, atol=1e-16)


def test_softmax_ce_equals_minus_mean_log_softmax(make, labels):
    z, t = make(6, 4, low=-3.0, high=3.0), labels(6, 4)
    log_p = fb.forward(fb.LogSoftmax(), z)
    expected = -log_p[np.arange(6), t].mean()
    assert float(fb.softmax_cross_entropy(z, t)) == pytest.approx(expected, rel=1e-13)


def test_softmax_ce_higher_rank_labels(make, labels):
    z = make(2, 3, 4, low=-3.0, high=3.0)
    t = labels(6, 4).reshape(2, 3)
    v, g = fb.softmax_cross_entropy.value_and_grad(z, t)
    v2, g2 = fb.softmax_cross_entropy.value_and_grad(z, np.eye(4)[t])
    assert float(v) == pytest.approx(float(v2), rel=1e-14)
    np.testing.assert_allclose(g, g2, rtol=1e-13, atol=1e-16)
    assert fb.testing.check_loss_grads(fb.softmax_cross_entropy, z, t).ok


@pytest.mark.parametrize("label_dtype", [np.int8, np.int32, np.uint8, np.uint64])
def test_softmax_ce_accepts_any_integer_labels(make, label_dtype):
    z = make(3, 4)
    t = np.array([3, 0, 1])
    assert float(fb.softmax_cross_entropy(z, t.astype(label_dtype))) == float(
        fb.softmax_cross_entropy(z, t)
    )


# ---------------------------------------------------------------- gradients


@pytest.mark.parametrize("loss", LOSSES, ids=LOSS_IDS)
def test_check_loss_grads(make, labels, probs, loss):
    pred, target = case(loss, make, labels, probs)
    assert fb.testing.check_loss_grads(loss, pred, target, rtol=1e-6).ok


def test_check_loss_grads_softmax_ce_one_hot(make, labels):
    z, t = make(5, 4, low=-3.0, high=3.0), labels(5, 4)
    assert fb.testing.check_loss_grads(fb.softmax_cross_entropy, z, np.eye(4)[t]).ok


def test_check_loss_grads_softmax_ce_soft_targets(make, probs):
    z = make(5, 4, low=-3.0, high=3.0)
    assert fb.testing.check_loss_grads(fb.softmax_cross_entropy, z, probs(5, 4)).ok


def test_check_loss_grads_bce_soft_targets(make):
    p, y = make(4, 3, low=0.02, high=0.98), make(4, 3, low=0.0, high=1.0)
    assert fb.testing.check_loss_grads(fb.binary_cross_entropy, p, y).ok


def test_check_loss_grads_sigmoid_bce_soft_targets(make):
    z, y = make(4, 3, low=-5.0, high=5.0), make(4, 3, low=0.0, high=1.0)
    assert fb.testing.check_loss_grads(fb.sigmoid_binary_cross_entropy, z, y).ok


@pytest.mark.parametrize("loss", LOSSES, ids=LOSS_IDS)
def test_check_loss_grads_projection(make, labels, probs, loss):
    pred, target = case(loss, make, labels, probs, n=32, c=10)
    assert fb.testing.check_loss_grads(loss, pred, target, mode="projection").ok


@pytest.mark.parametrize("loss", LOSSES, ids=LOSS_IDS)
def test_gradient_is_mean_reduced(make, labels, probs, loss):
    """Repeating the batch leaves the value unchanged and halves each gradient row."""
    pred, target = case(loss, make, labels, probs)
    v1, g1 = loss.value_and_grad(pred, target)
    v2, g2 = loss.value_and_grad(np.concatenate([pred, pred]), np.concatenate([target, target]))
    assert float(v2) == pytest.approx(float(v1), rel=1e-13)
    np.testing.assert_allclose(g2[: len(pred)], g1 / 2, rtol=1e-13)


# ---------------------------------------------------------------- dtypes


@pytest.mark.parametrize("loss", LOSSES, ids=LOSS_IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_is_preserved(make, labels, probs, loss, dtype):
    pred, target = case(loss, make, labels, probs, dtype=dtype)
    value, g = loss.value_and_grad(pred, target)
    assert np.asarray(value).dtype == dtype
    assert loss(pred, target).dtype == dtype
    assert g.dtype == dtype
    assert g.shape == pred.shape


@pytest.mark.parametrize("loss", [fb.binary_cross_entropy, fb.mse, fb.sigmoid_binary_cross_entropy])
@pytest.mark.parametrize("target_dtype", [np.float64, np.int64, bool])
def test_float32_prediction_with_other_target_dtypes(make, loss, target_dtype):
    pred = make(4, 2, dtype=np.float32, low=0.1, high=0.9)
    target = (make(4, 2, low=0.0, high=1.0) > 0.5).astype(target_dtype)
    value, g = loss.value_and_grad(pred, target)
    assert np.asarray(value).dtype == g.dtype == np.float32


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_ce_dtypes_for_every_target_form(make, labels, probs, dtype):
    z = make(5, 3, dtype=dtype)
    for target in (labels(5, 3), np.eye(3)[labels(5, 3)], probs(5, 3)):
        value, g = fb.softmax_cross_entropy.value_and_grad(z, target)
        assert np.asarray(value).dtype == g.dtype == dtype


# ---------------------------------------------------------------- numerical safety

EXTREME = np.array([[-1000.0, 0.0, 1000.0], [1000.0, 1000.0, -1000.0], [0.0, 0.0, 0.0]])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    ("loss", "target"),
    [
        (fb.sigmoid_binary_cross_entropy, np.array([[0, 1, 1], [1, 0, 0], [1, 0, 1]])),
        (fb.softmax_cross_entropy, np.array([0, 2, 1])),
        (fb.softmax_cross_entropy, np.eye(3)[[0, 2, 1]]),
        (fb.mse, np.zeros((3, 3))),
    ],
    ids=["sigmoid_bce", "softmax_ce_labels", "softmax_ce_one_hot", "mse"],
)
def test_extreme_logits_raise_nothing_and_stay_finite(dtype, loss, target):
    with np.errstate(all="raise"):
        value, g = loss.value_and_grad(EXTREME.astype(dtype), target)
    assert np.isfinite(value) and np.isfinite(g).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_bce_exact_at_extremes(dtype):
    z = np.array([[1000.0, -1000.0]], dtype)
    value = fb.sigmoid_binary_cross_entropy(z, [[0.0, 1.0]])
    assert float(value) == pytest.approx(1000.0, rel=1e-6)
    right = float(fb.sigmoid_binary_cross_entropy(z, [[1.0, 0.0]]))  # exp(-1000): ~0
    assert 0.0 <= right < 1e-30


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bce_on_probabilities_zero_and_one_is_finite(dtype):
    p = np.array([[0.0, 1.0, 0.0, 1.0]], dtype)
    y = np.array([[0.0, 1.0, 1.0, 0.0]])
    with np.errstate(all="raise"):
        value, g = fb.binary_cross_entropy.value_and_grad(p, y)
    assert np.isfinite(value) and np.isfinite(g).all()
    assert g.dtype == dtype


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bce_clips_with_the_dtype_epsilon(dtype):
    eps = float(np.finfo(dtype).eps)
    wrong = np.array([[0.0], [1.0]], dtype)
    value = fb.binary_cross_entropy(wrong, [[1.0], [0.0]])
    assert float(value) == pytest.approx(-math.log(eps), rel=1e-5)
    right = np.array([[1.0], [0.0]], dtype)
    assert 0.0 <= float(fb.binary_cross_entropy(right, [[1.0], [0.0]])) <= 2 * eps


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bce_on_saturated_sigmoid_outputs(dtype):
    net = fb.Sigmoid()
    p = fb.forward(net, np.array([[-1000.0, 1000.0]], dtype))
    with np.errstate(all="raise"):
        value, g = fb.binary_cross_entropy.value_and_grad(p, [[1.0, 0.0]])
    assert np.isfinite(value) and np.isfinite(g).all()


# ---------------------------------------------------------------- purity


@pytest.mark.parametrize("loss", LOSSES, ids=LOSS_IDS)
def test_inputs_are_not_modified(make, labels, probs, loss):
    pred, target = case(loss, make, labels, probs)  # both read-only
    pred_w, target_w = pred.copy(), np.array(target, copy=True)
    loss.value_and_grad(pred, target)
    loss(pred, target)
    loss.value_and_grad(pred_w, target_w)
    np.testing.assert_array_equal(pred_w, pred)
    np.testing.assert_array_equal(target_w, target)


def test_bce_on_clipped_inputs_does_not_modify_them():
    p = np.array([[0.0, 1.0]])
    fb.binary_cross_entropy.value_and_grad(p, [[0.0, 1.0]])
    np.testing.assert_array_equal(p, [[0.0, 1.0]])


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "loss",
    [fb.binary_cross_entropy, fb.sigmoid_binary_cross_entropy, fb.mse],
    ids=lambda loss: loss.name,
)
def test_shape_mismatch(loss):
    with pytest.raises(fb.ShapeError, match=r"prediction shape \(4, 1\).*target shape \(4,\)"):
        loss(np.full((4, 1), 0.5), np.zeros(4))


def test_softmax_ce_target_of_neither_shape(make):
    with pytest.raises(fb.ShapeError, match=r"\(4, 3\).*\(4, 2\)"):
        fb.softmax_cross_entropy(make(4, 3), np.zeros((4, 2)))


@pytest.mark.parametrize("bad", [3, 7, -1])
def test_softmax_ce_label_out_of_range(make, bad):
    with pytest.raises(ValueError, match=rf"label {bad} .*3 classes"):
        fb.softmax_cross_entropy(make(4, 3), np.array([0, 1, bad, 2]))


@pytest.mark.parametrize("dtype", [np.float64, np.float32, bool])
def test_softmax_ce_float_labels_of_label_shape(make, dtype):
    with pytest.raises(fb.DTypeError, match="integers"):
        fb.softmax_cross_entropy(make(4, 3), np.array([0, 1, 2, 0], dtype=dtype))


def test_softmax_ce_scalar_logits():
    with pytest.raises(ValueError, match="non-empty batch"):
        fb.softmax_cross_entropy(np.array(1.0), np.array(0))


@pytest.mark.parametrize("loss", LOSSES, ids=LOSS_IDS)
def test_string_prediction_is_a_dtype_error(loss):
    with pytest.raises(fb.DTypeError, match="dtype"):
        loss(np.array([["a", "b"]]), np.array([[0.0, 1.0]]))
    with pytest.raises(TypeError):
        loss(np.array([["a", "b"]]), np.array([[0.0, 1.0]]))


@pytest.mark.parametrize("loss", [fb.binary_cross_entropy, fb.mse], ids=lambda loss: loss.name)
def test_string_target_is_a_dtype_error(loss):
    with pytest.raises(fb.DTypeError, match="target must be numeric"):
        loss(np.array([[0.5, 0.5]]), np.array([["a", "b"]]))


# ---------------------------------------------------------------- NaN, inf and domains

FLOAT_TARGETS = [
    fb.binary_cross_entropy,
    fb.binary_cross_entropy_of_sigmoid,
    fb.sigmoid_binary_cross_entropy,
    fb.mse,
]


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("loss", FLOAT_TARGETS, ids=lambda loss: type(loss).__name__)
def test_a_non_finite_target_is_a_value_error_saying_where(loss, value):
    pred, target = np.full((3, 2), 0.5), np.ones((3, 2))
    target[2, 1] = value
    with pytest.raises(ValueError, match=rf"{loss.name}: the target must be finite, .* \(2, 1\)"):
        loss.value_and_grad(pred, target)


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_a_non_finite_one_hot_target_is_a_value_error(value):
    target = np.eye(3)[[0, 1]]
    target[1, 1] = value
    with pytest.raises(ValueError, match=r"the target must be finite, got .* \(1, 1\)"):
        fb.softmax_cross_entropy(np.zeros((2, 3)), target)


@pytest.mark.parametrize("loss", [*FLOAT_TARGETS, fb.softmax_cross_entropy], ids=lambda x: x.name)
def test_a_nan_prediction_propagates_into_the_value(loss):
    """So that fit sees the run diverge (and blames the run, not the data)."""
    pred = np.full((3, 2), 0.5)
    pred[0, 0] = np.nan
    target = np.array([0, 1, 1]) if loss is fb.softmax_cross_entropy else np.ones((3, 2))
    value, g = loss.value_and_grad(pred, target)
    assert np.isnan(value) and g.shape == pred.shape


@pytest.mark.parametrize("bad", [2.0, -1.0])
@pytest.mark.parametrize(
    "loss", [fb.binary_cross_entropy, fb.sigmoid_binary_cross_entropy], ids=lambda x: x.name
)
def test_targets_outside_0_1_are_a_value_error(loss, bad):
    with pytest.raises(ValueError, match=r"targets must be in \[0, 1\]"):
        loss(np.full((2, 1), 0.5), np.array([[1.0], [bad]]))


def test_probability_bce_on_logits_says_what_to_use():
    with pytest.raises(ValueError, match=r"logits. use fb.sigmoid_binary_cross_entropy"):
        fb.binary_cross_entropy(np.array([[2.0], [-1.0]]), np.array([[1.0], [0.0]]))


def test_softmax_ce_on_one_column_says_what_to_use():
    with pytest.raises(ValueError, match=r"for one output per sample use fb.sigmoid_binary"):
        fb.softmax_cross_entropy(np.zeros((4, 1)), np.zeros(4, int))


@pytest.mark.parametrize("loss", LOSSES, ids=LOSS_IDS)
def test_a_tuple_prediction_is_a_structure_error(loss):
    with pytest.raises(fb.StructureError, match="prediction must be one array, got a tuple"):
        loss((np.zeros((2, 2)), np.zeros((2, 2))), np.zeros((2, 2)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_ce_of_logits_spanning_the_float_range(dtype):
    big = np.finfo(dtype).max
    z = np.array([[big, -big, 0.0], [1.0, 2.0, 3.0]], dtype)
    with np.errstate(all="raise"):
        value, g = fb.softmax_cross_entropy.value_and_grad(z, np.eye(3, dtype=dtype)[[0, 1]])
    assert np.isfinite(value) and np.isfinite(g).all()


@pytest.mark.parametrize("loss", LOSSES, ids=LOSS_IDS)
@pytest.mark.parametrize("shape", [(0, 3), (3, 0), (2, 0, 3)])
def test_a_prediction_with_no_elements_is_a_mean_over_nothing(loss, shape):
    with pytest.raises(ValueError, match=r"non-empty batch.*a mean over no samples"):
        loss(np.zeros(shape), np.zeros(shape))
