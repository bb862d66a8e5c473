"""fnbp.sklearn: scikit-learn's own estimator checks, and what a scikit-learn user does with it."""

from __future__ import annotations

import doctest
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import fnbp as fb
import fnbp.sklearn
from fnbp.sklearn import OPTIMIZERS, FnbpClassifier, FnbpRegressor, _Weighted

ROOT = Path(__file__).resolve().parent.parent

# Small enough for ~120 checks in a few seconds, big enough to pass the checks that
# ask for a good fit (accuracy > 0.83 on blobs, every class predicted, R^2 > 0.5):
# one full batch per epoch, ten epochs.
CHECKED = {"hidden_layer_sizes": (8,), "learning_rate": 0.1, "max_iter": 10, "batch_size": 500}

# In float64 (the default for float64 data) every check passes. In float32, three
# compare against float64 at float64's tolerance or insist on float64 output:
FLOAT32_FAILURES = {
    "check_sample_weight_equivalence_on_dense_data": (
        "in float32 the weighted and the repeated fits agree to float32 rounding, not to "
        "the rtol=1e-7 the check asks for"
    ),
}
FLOAT32_REGRESSOR_FAILURES = {
    **FLOAT32_FAILURES,
    "check_regressor_multioutput": (
        "the check asks for float64 predictions; dtype='float32' keeps them float32 on purpose"
    ),
}


def _expected_failures(estimator: Any) -> dict[str, str]:
    if estimator.dtype is None:
        return {}
    if isinstance(estimator, FnbpRegressor):
        return FLOAT32_REGRESSOR_FAILURES
    return FLOAT32_FAILURES


@parametrize_with_checks(
    [
        FnbpClassifier(**CHECKED),
        FnbpRegressor(**CHECKED),
        FnbpClassifier(**CHECKED, dtype="float32"),
        FnbpRegressor(**CHECKED, dtype="float32"),
    ],
    expected_failed_checks=_expected_failures,
    xfail_strict=True,
)
def test_scikit_learn_estimator_checks(estimator: Any, check: Any) -> None:
    check(estimator)


# --------------------------------------------------------------------------- data


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    data = load_digits()
    return data.data, data.target


@pytest.fixture(scope="module")
def small(digits: tuple) -> tuple[np.ndarray, np.ndarray]:
    x, y = digits
    return x[:300] / 16.0, y[:300]


def _leaves_equal(a: Any, b: Any) -> bool:
    la, lb = fb.tree.leaves(a), fb.tree.leaves(b)
    return len(la) == len(lb) and all(np.array_equal(u, v) for u, v in zip(la, lb, strict=True))


# --------------------------------------------------------------------------- imports


def test_fnbp_does_not_import_sklearn_and_the_missing_extra_is_named() -> None:
    code = (
        "import sys, fnbp\n"
        "assert 'sklearn' not in sys.modules, 'import fnbp imported scikit-learn'\n"
        "sys.modules['sklearn'] = None  # as if it were not installed\n"
        "try:\n"
        "    import fnbp.sklearn\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert "scikit-learn" in out.stdout and "fnbp[sklearn]" in out.stdout


def test_docstring_examples_run() -> None:
    result = doctest.testmod(fnbp.sklearn, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


# --------------------------------------------------------------------------- resuming


def test_partial_fit_three_times_is_fit_for_three_epochs_bit_for_bit(small: tuple) -> None:
    x, y = small
    settings = {"hidden_layer_sizes": (16,), "batch_size": 64, "random_state": 3}
    fitted = FnbpClassifier(**settings, max_iter=3).fit(x, y)
    partial = FnbpClassifier(**settings)
    for _ in range(3):
        partial.partial_fit(x, y, classes=np.arange(10))
    assert _leaves_equal(fitted.train_state_, partial.train_state_)
    assert int(partial.train_state_.epoch) == 3 and int(partial.train_state_.step) == 15
    assert fitted.loss_curve_ == partial.loss_curve_ and len(partial.loss_curve_) == 3
    assert fitted.history_.column("step") == partial.history_.column("step")
    assert (fitted.n_iter_, partial.n_iter_) == (3, 1)
    np.testing.assert_array_equal(fitted.predict_proba(x), partial.predict_proba(x))


def test_partial_fit_with_weights_and_regression_resumes_exactly(small: tuple) -> None:
    x, y = small
    w = 1.0 + (y % 3)
    settings = {"hidden_layer_sizes": (8,), "batch_size": 50, "random_state": 0}
    fitted = FnbpRegressor(**settings, max_iter=2).fit(x, y / 9.0, sample_weight=w)
    partial = FnbpRegressor(**settings)
    for _ in range(2):
        partial.partial_fit(x, y / 9.0, sample_weight=w)
    assert _leaves_equal(fitted.train_state_, partial.train_state_)


def test_warm_start_continues_the_train_state(small: tuple) -> None:
    x, y = small
    settings = {"hidden_layer_sizes": (8,), "batch_size": 64, "random_state": 1, "patience": None}
    six = FnbpClassifier(**settings, max_iter=6).fit(x, y)
    warm = FnbpClassifier(**settings, max_iter=3, warm_start=True).fit(x, y).fit(x, y)
    assert _leaves_equal(six.train_state_, warm.train_state_)
    assert warm.n_iter_ == 3 and len(warm.loss_curve_) == 6
    cold = FnbpClassifier(**settings, max_iter=3).fit(x, y).fit(x, y)
    assert int(cold.train_state_.epoch) == 3  # without warm_start, fit starts afresh


def test_a_changed_optimizer_restarts_its_state_only(small: tuple) -> None:
    x, y = small
    est = FnbpClassifier((8,), max_iter=2, warm_start=True, random_state=0).fit(x, y)
    est.set_params(optimizer="sgd").fit(x, y)
    assert int(est.train_state_.epoch) == 4  # the network and the counts carry over
    assert (
        fb.tree.mismatch(est.train_state_.opt_state, fb.optim.sgd(0.1, 0.9).init(est.params_))
        is None
    )


def test_partial_fit_needs_classes_and_keeps_them(small: tuple) -> None:
    x, y = small
    with pytest.raises(ValueError, match="classes must be passed"):
        FnbpClassifier((4,)).partial_fit(x, y)
    est = FnbpClassifier((4,), random_state=0).partial_fit(x[y < 5], y[y < 5], classes=range(10))
    assert est.classes_.tolist() == list(range(10)) and est.n_outputs_ == 10
    est.partial_fit(x[y >= 5], y[y >= 5])
    with pytest.raises(ValueError, match="differ"):
        est.partial_fit(x, y, classes=[0, 1])
    with pytest.raises(ValueError, match="early_stopping"):
        FnbpClassifier(early_stopping=True).partial_fit(x, y, classes=range(10))


# --------------------------------------------------------------------------- scikit-learn tools


def _pipeline(**net: Any) -> Pipeline:
    settings = {"hidden_layer_sizes": (16,), "max_iter": 10, "random_state": 0, **net}
    return Pipeline([("scale", StandardScaler()), ("net", FnbpClassifier(**settings))])


def test_pipeline_grid_search_and_cross_validation_repeat_exactly(digits: tuple) -> None:
    x, y = digits[0][:900], digits[1][:900]
    grid = {"net__learning_rate": [1e-2, 3e-2], "net__hidden_layer_sizes": [(16,)]}

    def search() -> GridSearchCV:
        return GridSearchCV(_pipeline(), grid, cv=3, n_jobs=2).fit(x, y)

    first, second = search(), search()
    assert first.best_params_ == second.best_params_
    np.testing.assert_array_equal(
        first.cv_results_["mean_test_score"], second.cv_results_["mean_test_score"]
    )
    assert first.best_score_ > 0.8
    scores = [cross_val_score(_pipeline(learning_rate=1e-2), x, y, cv=3) for _ in range(2)]
    np.testing.assert_array_equal(scores[0], scores[1])
    assert scores[0].min() > 0.75


def test_clone_round_trip() -> None:
    est = FnbpClassifier((3, 2), activation="tanh", optimizer="sgd", random_state=fb.random.key(4))
    copy = clone(est)
    assert copy is not est and copy.get_params() == est.get_params()
    assert repr(copy) == repr(est)
    fitted = FnbpRegressor((2,), max_iter=1, random_state=0).fit([[0.0], [1.0]], [0.0, 1.0])
    assert not hasattr(clone(fitted), "params_")


def test_pickle_keeps_the_fitted_model(small: tuple) -> None:
    x, y = small
    est = FnbpClassifier((8,), max_iter=2, random_state=0).fit(x, y)
    back = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(back.predict_proba(x), est.predict_proba(x))


# --------------------------------------------------------------------------- targets


def test_string_labels_binary_and_multi_class(small: tuple) -> None:
    x, y = small
    names = np.array(["zero", "one", "two"])[y % 3]
    est = FnbpClassifier((16,), learning_rate=0.01, max_iter=20, random_state=0).fit(x, names)
    assert est.classes_.tolist() == ["one", "two", "zero"] and est.n_outputs_ == 3
    assert set(est.predict(x)) <= set(names)
    binary = np.where(y < 5, "low", "high")
    est = FnbpClassifier((16,), learning_rate=0.01, max_iter=20, random_state=0).fit(x, binary)
    z, p = est.decision_function(x), est.predict_proba(x)
    assert est.n_outputs_ == 1 and z.shape == (len(x),) and p.shape == (len(x), 2)
    np.testing.assert_allclose(p[:, 1], fb.Sigmoid().forward(z))
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    np.testing.assert_array_equal(est.predict(x), est.classes_[(z > 0).astype(int)])
    np.testing.assert_allclose(est.predict_log_proba(x), np.log(p))
    assert est.score(x, binary) > 0.9


def test_multi_label_targets_get_one_sigmoid_per_label(small: tuple) -> None:
    x, y = small
    labels = np.column_stack([y % 2 == 0, y >= 5, y == 3]).astype(int)
    est = FnbpClassifier((32,), learning_rate=0.01, max_iter=30, random_state=0).fit(x, labels)
    assert est.n_outputs_ == 3 and est.classes_.tolist() == [0, 1, 2]
    assert est.predict(x).shape == labels.shape and est.predict_proba(x).shape == labels.shape
    assert est.score(x, labels) > 0.8  # subset accuracy: all three labels right
    assert isinstance(est.train_state_, fb.TrainState)


def test_regression_keeps_the_shape_of_y() -> None:
    x = np.linspace(-1, 1, 40)[:, None]
    two = np.column_stack([x[:, 0], -x[:, 0]])
    est = FnbpRegressor((), max_iter=3, random_state=0)
    assert est.fit(x, x[:, 0]).predict(x).shape == (40,)
    assert est.fit(x, x).predict(x).shape == (40, 1)
    assert est.fit(x, two).predict(x).shape == (40, 2) and est.n_outputs_ == 2
    with pytest.raises(ValueError, match="output"):
        est.set_params(warm_start=True).fit(x, x[:, 0])


# --------------------------------------------------------------------------- sample weights


@pytest.mark.parametrize(
    ("loss", "target"),
    [
        (fb.softmax_cross_entropy, np.array([0, 2, 1, 2])),
        (fb.sigmoid_binary_cross_entropy, np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0, 0]])),
        (fb.mse, np.array([[0.5, -1.0], [2.0, 0.0], [1.0, 1.0], [0.0, 3.0]])),
    ],
)
def test_weighted_loss_is_the_loss_of_repeated_rows(loss: fb.Loss, target: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    pred = rng.normal(size=(4, 3 if target.ndim == 1 else 2))
    w = np.array([2.0, 0.0, 1.0, 3.0])
    packed = np.column_stack([target.reshape(4, -1).astype(float), w])
    value, g = _Weighted(loss, labels=target.ndim == 1).value_and_grad(pred, packed)
    repeat = np.repeat(np.arange(4), w.astype(int))
    value_r, g_r = loss.value_and_grad(pred[repeat], target[repeat])
    assert value == pytest.approx(float(value_r), rel=1e-12)
    summed = np.zeros_like(pred)
    np.add.at(summed, repeat, g_r)
    np.testing.assert_allclose(g, summed, rtol=1e-12, atol=1e-15)
    unweighted = np.column_stack([packed[:, :-1], 0.0 * w])
    zero, g0 = _Weighted(loss, labels=target.ndim == 1).value_and_grad(pred, unweighted)
    assert zero == 0.0 and not g0.any()  # a batch of zero weights teaches nothing


def test_weights_of_ones_change_nothing_and_zero_weight_classes_are_refused(small: tuple) -> None:
    x, y = small
    est = FnbpClassifier((8,), max_iter=2, batch_size=300, random_state=0)
    plain = est.fit(x, y).predict_proba(x)
    np.testing.assert_allclose(est.fit(x, y, sample_weight=np.ones(len(y))).predict_proba(x), plain)
    with pytest.raises(ValueError, match="1 class"):
        est.fit(x, y % 2, sample_weight=(y % 2).astype(float))


# --------------------------------------------------------------------------- dtypes, keys


def test_float32_stays_float32_and_dtype_decides(small: tuple) -> None:
    x, y = small
    est = FnbpClassifier((4,), max_iter=1, random_state=0)
    assert est.fit(x.astype(np.float32), y).predict_proba(x).dtype == np.float32
    assert fb.dtype_of(est.params_) == np.float32
    assert est.fit(x, y).predict_proba(x).dtype == np.float64  # the default follows X
    assert est.fit(x.astype(int), y).predict_proba(x).dtype == np.float64
    est.set_params(dtype="float32")
    assert est.fit(x, y).decision_function(x).dtype == np.float32
    assert (
        FnbpRegressor((4,), max_iter=1, dtype=np.float32).fit(x, y).predict(x).dtype == np.float32
    )


def test_random_state_none_is_fresh_and_leaves_numpy_alone(small: tuple) -> None:
    x, y = small
    state = np.random.get_state()  # noqa: NPY002
    a = FnbpClassifier((4,), max_iter=1).fit(x, y)
    b = FnbpClassifier((4,), max_iter=1).fit(x, y)
    after = np.random.get_state()  # noqa: NPY002
    assert np.array_equal(state[1], after[1]), "numpy's global generator was used"
    assert a.key_ != b.key_ and not _leaves_equal(a.params_, b.params_)
    keyed = FnbpClassifier((4,), max_iter=1, random_state=fb.random.key(7)).fit(x, y)
    seeded = FnbpClassifier((4,), max_iter=1, random_state=7).fit(x, y)
    assert keyed.key_ == fb.random.key(7) and _leaves_equal(keyed.params_, seeded.params_)
    drawn = FnbpClassifier((4,), max_iter=1, random_state=np.random.RandomState(0)).fit(x, y)
    assert drawn.key_.seed == np.random.RandomState(0).randint(2**31 - 1)


# --------------------------------------------------------------------------- hyperparameters


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"activation": "swish"}, "activation must be one of"),
        ({"optimizer": "lbfgs"}, "optimizer must be one of"),
        ({"learning_rate": 0.0}, "learning_rate must be a finite real number > 0"),
        ({"hidden_layer_sizes": (4, 0)}, r"hidden_layer_sizes\[1\] must be an integer >= 1"),
        ({"batch_size": "all"}, "batch_size must be 'auto'"),
        ({"validation_fraction": 1.0}, "validation_fraction"),
        ({"random_state": -1}, "random_state"),
        ({"callbacks": print}, "callbacks must be a list or tuple"),
        ({"dtype": "float16"}, "dtype must be float32 or float64"),
    ],
)
def test_bad_hyperparameters_fail_in_fit_naming_them(params: dict, match: str) -> None:
    est = FnbpClassifier(**params)  # __init__ only stores
    with pytest.raises(ValueError, match=match):
        est.fit([[0.0], [1.0]], [0, 1])


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_every_optimizer_name_trains(name: str, small: tuple) -> None:
    x, y = small
    est = FnbpClassifier((8,), optimizer=name, learning_rate=0.01, weight_decay=1e-3, max_iter=3)
    assert est.set_params(random_state=0).fit(x, y).loss_curve_[-1] < est.loss_curve_[0]


def test_an_fnbp_optimizer_and_a_schedule_are_taken_as_given(small: tuple) -> None:
    x, y = small
    opt = fb.optim.chain(fb.optim.clip_by_global_norm(1.0), fb.optim.adam(1e-2))
    est = FnbpClassifier((8,), optimizer=opt, max_iter=2, random_state=0).fit(x, y)
    assert fb.tree.mismatch(est.train_state_.opt_state, opt.init(est.params_)) is None
    decay = fb.optim.schedules.cosine_decay(1e-2, 10)
    FnbpClassifier((8,), learning_rate=decay, max_iter=2, random_state=0).fit(x, y)


def test_early_stopping_keeps_the_best_epoch(small: tuple) -> None:
    x, y = small
    est = FnbpClassifier(
        (32,), learning_rate=0.05, max_iter=60, early_stopping=True, patience=2,
        validation_fraction=0.2, random_state=0,
    ).fit(x, y)  # fmt: skip
    history = est.history_
    assert history.stopped_early and est.n_iter_ < 60
    assert len(history.val_loss) == est.n_iter_ == len(est.loss_curve_)
    assert int(est.train_state_.epoch) == history.best_epoch + 1 < est.n_iter_
    best = min(history.val_loss)
    assert history.val_loss[history.best_epoch] == best


def test_verbose_and_callbacks_see_every_epoch(small: tuple, capsys: pytest.CaptureFixture) -> None:
    x, y = small
    seen = []
    est = FnbpClassifier((4,), max_iter=2, verbose=True, random_state=0)
    est.set_params(callbacks=(lambda ts, logs: seen.append(int(ts.epoch)),)).fit(x, y)
    assert seen == [1, 2]
    assert capsys.readouterr().out.count("Iteration") == 2


# --------------------------------------------------------------------------- networks


@attrs.frozen
class Reshape(fb.Layer):
    """``(N, d) -> (N, *shape)``; backward reshapes back. No parameters."""

    shape: tuple[int, ...] = fb.static()

    def vjp(self, x: np.ndarray, need_g_x: bool = True) -> tuple[np.ndarray, Any]:
        def pullback(g_y: np.ndarray) -> tuple[np.ndarray | None, Reshape]:
            return (g_y.reshape(x.shape) if need_g_x else None), self

        return x.reshape(len(x), *self.shape), pullback


def small_cnn(key: fb.random.Key, n_features: int, n_outputs: int) -> fb.Serial:
    """Digits as 8 x 8 images: Reshape, Conv2D, ReLU, MaxPool, Flatten, Dense (float64)."""
    k1, k2 = fb.random.split(key)
    side = round(n_features**0.5)
    return fb.Serial(
        (
            Reshape((side, side, 1)),
            fb.Conv2D.init(k1, 1, 4, 3, padding="same", dtype=np.float64),
            fb.ReLU(),
            fb.MaxPool2D(2),
            fb.Flatten(),
            fb.Dense.init(k2, (side // 2) ** 2 * 4, n_outputs, dtype=np.float64),
        )
    )


def test_a_network_builder_makes_a_cnn_an_estimator(small: tuple) -> None:
    x, y = small
    est = FnbpClassifier(network=small_cnn, learning_rate=0.01, max_iter=8, random_state=0)
    assert est.fit(x, y).score(x, y) > 0.8
    assert isinstance(est.params_.layers[1], fb.Conv2D) and est.n_outputs_ == 10
    assert clone(est).get_params()["network"] is small_cnn


def test_a_builder_of_the_wrong_width_or_dtype_is_named(small: tuple) -> None:
    x, y = small

    def too_wide(key: fb.random.Key, n_features: int, n_outputs: int) -> fb.Serial:
        return fb.mlp(key, [n_features, n_outputs + 1], dtype=np.float64)

    with pytest.raises(fb.ShapeError, match=r"network\(key, 64, 10\) gives outputs of shape"):
        FnbpClassifier(network=too_wide).fit(x, y)
    with pytest.raises(fb.DTypeError, match="float32 but dtype is float64"):
        FnbpClassifier(network=lambda k, i, o: fb.mlp(k, [i, o]), dtype="float64").fit(x, y)


def test_feature_names_from_a_data_frame(small: tuple) -> None:
    pd = pytest.importorskip("pandas")
    x, y = small
    frame = pd.DataFrame(x[:, :4], columns=["a", "b", "c", "d"])
    est = FnbpClassifier((4,), max_iter=1, random_state=0).fit(frame, y)
    assert est.feature_names_in_.tolist() == ["a", "b", "c", "d"] and est.n_features_in_ == 4
