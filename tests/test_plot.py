"""fnbp.plot on matplotlib's Agg backend: what is drawn (lines, labels, images), not pixels."""

from __future__ import annotations

import doctest
import sys
from typing import Any

import numpy as np
import pytest

import fnbp as fb
from fnbp import plot

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

X, Y = fb.datasets.and_gate()
LOSS = fb.binary_cross_entropy


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def and_net() -> fb.Serial:
    return fb.Serial((fb.Dense.init(fb.random.key(0), 2, 1, dtype=np.float64), fb.Sigmoid()))


@pytest.fixture(scope="module")
def history(and_net: fb.Serial) -> fb.History:
    return fit(and_net, epochs=12, validation=(X, Y), metrics=("accuracy",))[1]


def fit(net: Any, **kw: Any) -> tuple[Any, fb.History]:
    kw = {"optimizer": fb.optim.sgd(1.0), "batch_size": 4, "key": None, "progress": False, **kw}
    return fb.fit(net, LOSS, X, Y, **kw)


def labels(ax: Any) -> list[str]:
    return [line.get_label() for line in ax.get_lines()]


def test_the_docstring_examples_run() -> None:
    result = doctest.testmod(plot, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 5 and result.failed == 0


# ----------------------------------------------------------------------------- learning_curves


def test_learning_curves_draw_training_and_validation(history: fb.History) -> None:
    _, ax = plt.subplots()
    assert plot.learning_curves(history, log=True, ax=ax) is ax
    assert labels(ax) == ["training", "validation"]
    train, val = ax.get_lines()
    np.testing.assert_array_equal(train.get_xdata(), np.arange(1, 13))
    np.testing.assert_array_equal(train.get_ydata(), history.train_loss)
    np.testing.assert_array_equal(val.get_ydata(), history.val_loss)
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_yscale(), ax.get_xscale()) == (
        "epoch", "loss", "log", "linear",
    )  # fmt: skip
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["training", "validation"]


def test_learning_curves_of_a_metric_and_without_validation(history: fb.History) -> None:
    ax = plot.learning_curves(history, "accuracy", validation=False)
    assert labels(ax) == ["training"] and ax.get_ylabel() == "accuracy"
    np.testing.assert_array_equal(ax.get_lines()[0].get_ydata(), history.train_metrics["accuracy"])
    assert ax.get_legend() is None  # one line needs no legend
    ax = plot.learning_curves(history, ("loss", "accuracy"), log="xy")
    assert labels(ax) == [
        "training loss", "validation loss", "training accuracy", "validation accuracy",
    ]  # fmt: skip
    assert ax.get_xscale() == ax.get_yscale() == "log"


def test_learning_curves_with_labels_of_ones_own(history: fb.History) -> None:
    ax = plot.learning_curves(history, {"val_accuracy": "held out", "loss": "train"})
    assert labels(ax) == ["held out", "train"] and ax.get_ylabel() == ""


def test_learning_curves_compare_runs(and_net: fb.Serial) -> None:
    runs = {f"lr={lr}": fit(and_net, epochs=5, optimizer=fb.optim.sgd(lr))[1] for lr in (0.1, 1)}
    ax = plot.learning_curves(runs)
    assert labels(ax) == ["lr=0.1", "lr=1"]
    assert [line.get_color() for line in ax.get_lines()] == ["C0", "C1"]
    runs = {"a": fit(and_net, epochs=3, validation=(X, Y))[1]}
    ax = plot.learning_curves({**runs, "b": runs["a"]})
    assert labels(ax) == ["a", "a (validation)", "b", "b (validation)"]
    assert [line.get_linestyle() for line in ax.get_lines()] == ["-", "--", "-", "--"]


def test_learning_curves_count_steps_when_rounds_are_not_epochs(and_net: fb.Serial) -> None:
    _, h = fit(and_net, steps=12, batch_size=1, eval_every=3)
    ax = plot.learning_curves(h)
    assert ax.get_xlabel() == "step"
    np.testing.assert_array_equal(ax.get_lines()[0].get_xdata(), [3, 6, 9, 12])


def test_learning_curves_refuse_unknown_columns_and_scales(history: fb.History) -> None:
    with pytest.raises(ValueError, match=r"learning_curves: metric must be columns .*'f1'"):
        plot.learning_curves(history, "f1")
    with pytest.raises(ValueError, match=r"metric must be columns .*\['val_f1'\]"):
        plot.learning_curves(history, {"loss": "training", "val_f1": "validation"})
    with pytest.raises(ValueError, match="plot: log must be"):
        plot.learning_curves(history, log="z")
    with pytest.raises(ValueError, match="a History or a dict"):
        plot.learning_curves({"a": history.rows})  # type: ignore[dict-item]


# ----------------------------------------------------------------------------- layer_norms


@pytest.fixture(scope="module")
def diagnosed() -> fb.History:
    x, y = fb.datasets.xor()
    net = fb.mlp(fb.random.key(0), [2, 4, 1], output=fb.Sigmoid(), dtype=np.float64)
    probe = fb.diagnostics(LOSS, x, y)
    return fb.fit(net, LOSS, x, y, optimizer=fb.optim.sgd(0.5), epochs=6, batch_size=4,
                  key=None, callbacks=(probe,), progress=False)[1]  # fmt: skip


def test_layer_norms_draw_gradient_and_update_per_layer(diagnosed: fb.History) -> None:
    ax = plot.layer_norms(diagnosed)
    assert labels(ax) == [
        "layers[0] gradient", "layers[0] update", "layers[2] gradient", "layers[2] update",
    ]  # fmt: skip
    lines = ax.get_lines()
    assert [line.get_linestyle() for line in lines] == ["-", "--", "-", "--"]
    assert lines[0].get_color() == lines[1].get_color() != lines[2].get_color()
    np.testing.assert_array_equal(lines[0].get_xdata(), np.arange(1, 7))
    np.testing.assert_array_equal(lines[1].get_xdata(), np.arange(2, 7))  # moved since round 1
    np.testing.assert_array_equal(lines[2].get_ydata(), diagnosed.column("grad_norm/layers[2]"))
    assert ax.get_yscale() == "log" and ax.get_ylabel() == "norm"


def test_layer_norms_of_other_columns(diagnosed: fb.History) -> None:
    ax = plot.layer_norms(diagnosed, ("dead", "saturated"), log=False)
    assert labels(ax) == ["layers[1] dead", "layers[3] saturated"]
    assert ax.get_ylabel() == "fraction of units" and ax.get_yscale() == "linear"


def test_layer_norms_without_diagnostics_say_what_to_do(history: fb.History) -> None:
    with pytest.raises(ValueError, match=r"layer_norms: history must be .*fb\.diagnostics"):
        plot.layer_norms(history)


# ----------------------------------------------------------------------------- decision_border


@pytest.fixture(scope="module")
def trained(and_net: fb.Serial) -> fb.Serial:
    return fit(and_net, epochs=300)[0]


def test_decision_border_of_the_and_network(trained: fb.Serial) -> None:
    fig, ax = plt.subplots()
    out = plot.decision_border(
        trained, X, Y, limits=(-0.5, 1.5), resolution=50, levels=(0.1, 0.9, 2.0),
        classes=("AND = 0", "AND = 1"), colorbar=True, ax=ax,
    )  # fmt: skip
    assert out is ax
    filled, thin, border, *points = ax.collections
    np.testing.assert_allclose(filled.levels, np.linspace(0, 1, 11))
    np.testing.assert_array_equal(thin.levels, [0.1, 0.9])  # 2.0 is never reached
    np.testing.assert_array_equal(border.levels, [0.5])
    assert [len(p.get_offsets()) for p in points] == [3, 1]
    np.testing.assert_array_equal(points[1].get_offsets(), [[1.0, 1.0]])
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["border p = 0.5", "AND = 0", "AND = 1"]
    assert ax.get_xlim() == ax.get_ylim() == (-0.5, 1.5)
    assert len(fig.axes) == 2 and fig.axes[1].get_ylabel() == "p(AND = 1)"


def test_decision_border_reads_logits_probabilities_and_log_probabilities(
    trained: fb.Serial,
) -> None:
    grid = np.random.default_rng(0).uniform(-1, 2, (20, 2))
    want = fb.predict(trained, grid)
    logits = fb.Serial(trained.layers[:1])
    got = plot._class_probabilities(logits, fb.predict(logits, grid), "auto")
    np.testing.assert_allclose(got, want, rtol=1e-12)
    np.testing.assert_array_equal(plot._class_probabilities(trained, want, "auto"), want)
    two = fb.Serial((fb.Dense.init(fb.random.key(1), 2, 2, dtype=np.float64), fb.LogSoftmax()))
    p = plot._class_probabilities(two, fb.predict(two, grid), "auto")
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    with pytest.raises(ValueError, match="output must be one of"):
        plot._class_probabilities(two, want, "odds")


def test_decision_border_of_three_classes_with_a_train_state() -> None:
    x, y = fb.datasets.blobs(fb.random.key(0), 60, centers=3, std=0.5)
    net = fb.Serial((fb.Dense.init(fb.random.key(1), 2, 8), fb.BatchNorm.init(8), fb.ReLU(),
                     fb.Dense.init(fb.random.key(2), 8, 3)))  # fmt: skip
    opt = fb.optim.adam(0.05)
    _, h = fb.fit(net, fb.softmax_cross_entropy, x, y, optimizer=opt, epochs=10, batch_size=20,
                  key=fb.random.key(3), progress=False)  # fmt: skip
    with pytest.raises(fb.ModeError):
        plot.decision_border(h.train_state.params, x, y, resolution=20)  # state forgotten
    ax = plot.decision_border(h.train_state, x, y, resolution=20)
    regions = ax.collections[0]
    np.testing.assert_allclose(regions.levels, [-0.5, 0.5, 1.5, 2.5])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "border", "class 0", "class 1", "class 2",
    ]  # fmt: skip
    x_low, x_high = ax.get_xlim()
    assert x_low < x[:, 0].min() and x_high > x[:, 0].max()  # the data's box, padded


def test_decision_border_without_a_border_in_the_box(and_net: fb.Serial) -> None:
    dense = fb.Dense(np.array([[1.0], [1.0]]), np.array([-3.0]))
    net = fb.Serial((dense, fb.Sigmoid()))
    ax = plot.decision_border(net, limits=((0, 1), (0, 1)), resolution=10, legend=False)
    assert len(ax.collections) == 1  # p < 0.5 all over the box: nothing to contour, no warning
    with pytest.raises(ValueError, match="limits must be given when there is no data"):
        plot.decision_border(and_net)
    with pytest.raises(ValueError, match=r"x must be points of shape \(N, 2\)"):
        plot.decision_border(and_net, np.ones((3, 3)))


# ----------------------------------------------------------------------------- weights


def image(ax: Any) -> np.ndarray:
    (shown,) = ax.get_images()
    return np.asarray(shown.get_array())


def test_weights_of_a_dense_layer_are_its_columns_as_images() -> None:
    dense = fb.Dense.init(fb.random.key(0), 64, 10, dtype=np.float64)
    ax = plot.weights(dense, columns=5)
    picture = image(ax)
    assert picture.shape == (2 * 9 - 1, 5 * 9 - 1)  # 2 rows of 5 tiles of 8 x 8, 1 apart
    np.testing.assert_array_equal(picture[:8, 9:17], dense.W[:, 1].reshape(8, 8))
    assert np.isnan(picture[8]).all()  # the gap
    low, high = ax.get_images()[0].get_clim()
    assert low == -high == -np.abs(dense.W).max()  # symmetric around 0
    assert [t.get_text() for t in ax.get_yticklabels()] == ["0", "5"]
    wide = plot.weights(fb.Dense.init(fb.random.key(0), 6, 4).W, image_shape=(2, 3))
    assert image(wide).shape == (5, 7)
    with pytest.raises(ValueError, match="image_shape must be given: 6 inputs"):
        plot.weights(fb.Dense.init(fb.random.key(0), 6, 4))


def test_weights_of_convolutions() -> None:
    conv = fb.Conv2D.init(fb.random.key(0), 1, 10, 3)
    picture = image(plot.weights(conv, columns=4, gap=0))
    assert picture.shape == (9, 12)  # 3 rows of 4 kernels of 3 x 3; two empty tiles
    np.testing.assert_array_equal(picture[3:6, 3:6], conv.W[:, :, 0, 5])  # row 1, column 1
    assert np.isnan(picture[6:, 6:]).all()
    ax = plot.weights(fb.Conv2D.init(fb.random.key(0), 3, 4, (2, 3)))
    assert image(ax).shape == (3 * 3 - 1, 4 * 4 - 1)  # input x output channels
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("output channel", "input channel")
    assert image(plot.weights(fb.Conv1D.init(fb.random.key(0), 1, 4, 5))).shape == (3, 11)


def test_weights_of_feature_maps_and_bad_shapes() -> None:
    maps = np.abs(np.random.default_rng(0).normal(size=(6, 6, 3)))
    ax = plot.weights(maps, colorbar=True)
    assert image(ax).shape == (13, 13) and ax.get_ylabel() == "channel"
    shown = ax.get_images()[0]
    assert shown.get_cmap().name.startswith("magma") and shown.get_clim()[0] == maps.min()
    assert len(ax.figure.axes) == 2
    with pytest.raises(ValueError, match="weights: w must be a Dense, a Conv layer or an array"):
        plot.weights(np.ones(3))


def test_plots_need_matplotlib_only_when_drawing(
    monkeypatch: pytest.MonkeyPatch, history: fb.History
) -> None:
    for name in ("matplotlib", "matplotlib.pyplot"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=r"fnbp\.plot\.learning_curves needs matplotlib"):
        plot.learning_curves(history)
