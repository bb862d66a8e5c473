"""fit: seeded minibatches, rounds, early stopping, callbacks, divergence, resuming."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from typing import Any

import attrs
import numpy as np
import pytest

import fnbp as fb

BCE_LOGITS = fb.sigmoid_binary_cross_entropy


def _ro(a: Any, dtype: Any = None) -> np.ndarray:
    a = np.array(a, dtype=dtype)
    a.flags.writeable = False
    return a


def _moons(n: int = 120, seed: int = 0, dtype: Any = np.float32) -> tuple[np.ndarray, np.ndarray]:
    """Two moons as read-only ``x`` (n, 2) and 0/1 targets ``y`` (n, 1), both ``dtype``."""
    x, lab = fb.datasets.two_moons(fb.random.key(seed), n, noise=0.1, dtype=dtype)
    return _ro(x), _ro(lab[:, None], dtype)


def _net(sizes: tuple[int, ...] = (2, 16, 1), seed: int = 1, dtype: Any = np.float32) -> Any:
    return fb.mlp(fb.random.key(seed), sizes, dtype=dtype)


def _fit(net: Any, x: Any, y: Any, **kw: Any) -> tuple[Any, fb.History]:
    args: dict[str, Any] = {
        "optimizer": fb.optim.adam(0.02),
        "epochs": 3,
        "batch_size": 16,
        "key": fb.random.key(5),
        "progress": False,
    }
    args.update(kw)
    loss = args.pop("loss", BCE_LOGITS)
    return fb.fit(net, loss, x, y, **args)


def _assert_trees_equal(a: Any, b: Any) -> None:
    """Same structure, and every leaf has the same dtype, shape and bits."""
    fb.tree.assert_same_structure(a, b)
    for (path, u), v in zip(fb.tree.leaves_with_paths(a), fb.tree.leaves(b), strict=True):
        u, v = np.asarray(u), np.asarray(v)
        assert u.dtype == v.dtype, path
        assert np.array_equal(u, v), path


def _copy(t: Any) -> Any:
    return fb.tree.map(lambda leaf: np.array(leaf, copy=True), t)


# ---------------------------------------------------------------- batches


@pytest.mark.parametrize(
    ("n", "batch_size", "drop_last", "sizes"),
    [
        (10, 3, False, [3, 3, 3, 1]),
        (10, 3, True, [3, 3, 3]),
        (9, 3, False, [3, 3, 3]),
        (9, 3, True, [3, 3, 3]),
        (4, 10, False, [4]),
        (4, 10, True, []),
        (5, 1, False, [1] * 5),
        (0, 4, False, []),
    ],
)
def test_batches_sizes(n, batch_size, drop_last, sizes):
    out = fb.batches(fb.random.key(0), n, batch_size, drop_last=drop_last)
    assert [len(b) for b in out] == sizes


def test_batches_cover_every_index_once():
    kept = np.concatenate(fb.batches(fb.random.key(0), 23, 5))
    assert np.array_equal(np.sort(kept), np.arange(23))
    assert kept.dtype.kind in "iu"
    dropped = np.concatenate(fb.batches(fb.random.key(0), 23, 5, drop_last=True))
    assert len(dropped) == 20
    assert len(np.unique(dropped)) == 20
    assert set(dropped.tolist()) <= set(range(23))


def test_batches_order_comes_from_the_key():
    def order(key):
        return np.concatenate(fb.batches(key, 50, 8))

    assert np.array_equal(order(fb.random.key(3)), order(fb.random.key(3)))
    assert not np.array_equal(order(fb.random.key(3)), order(fb.random.key(4)))
    assert not np.array_equal(order(fb.random.key(3)), np.arange(50))  # shuffled
    assert np.array_equal(order(None), np.arange(50))


@pytest.mark.parametrize("batch_size", [0, -1])
def test_batches_bad_batch_size(batch_size):
    with pytest.raises(ValueError, match="batch_size"):
        fb.batches(fb.random.key(0), 10, batch_size)


# ---------------------------------------------------------------- fit: learning and history


def test_fit_learns_two_moons():
    x, y = _moons(200, seed=0)
    xv, yv = _moons(200, seed=1)
    epochs = 40
    params, h = _fit(
        _net((2, 16, 16, 1)), x, y, epochs=epochs, validation=(xv, yv), metrics=("accuracy",)
    )
    assert h.epochs == epochs
    assert len(h.train_loss) == len(h.val_loss) == epochs
    assert len(h.train_metrics["accuracy"]) == len(h.val_metrics["accuracy"]) == epochs
    assert h.train_loss[-1] < 0.25 * h.train_loss[0]
    assert h.val_metrics["accuracy"][-1] >= 0.97
    assert fb.accuracy(fb.predict(params, xv), yv, threshold=0.0) >= 0.97
    assert h.stopped_early is False
    assert all(isinstance(v, float) for v in h.train_loss + h.val_loss)


def test_fit_learns_blobs_with_softmax_and_integer_labels():
    centers = [[-3.0, 0.0], [3.0, 0.0], [0.0, 4.0]]
    x, lab = fb.datasets.blobs(fb.random.key(2), 150, centers=centers, std=0.8, dtype=np.float32)
    xv, labv = fb.datasets.blobs(fb.random.key(3), 150, centers=centers, std=0.8, dtype=np.float32)
    params, h = _fit(
        _net((2, 16, 3)),
        x,
        lab,
        loss=fb.softmax_cross_entropy,
        epochs=15,
        validation=(xv, labv),
        metrics=("accuracy",),
    )
    assert h.train_loss[-1] < h.train_loss[0]
    assert h.val_metrics["accuracy"][-1] >= 0.95
    assert fb.accuracy(fb.predict(params, xv), labv) == h.val_metrics["accuracy"][-1]


def test_fit_without_validation_records_no_validation():
    x, y = _moons(40)
    _, h = _fit(_net(), x, y, epochs=4, metrics=("accuracy",))
    assert len(h.train_loss) == len(h.train_metrics["accuracy"]) == 4
    assert h.val_loss == ()
    assert h.val_metrics == {}
    assert h.epochs == 4


def test_fit_without_metrics_records_only_losses():
    x, y = _moons(40)
    xv, yv = _moons(20, seed=1)
    _, h = _fit(_net(), x, y, epochs=2, validation=(xv, yv))
    assert h.train_metrics == {}
    assert h.val_metrics == {}
    assert len(h.val_loss) == 2


def _constant_net(value: float) -> fb.Serial:
    """A net whose single output is ``value`` for every input."""
    return fb.Serial((fb.Dense(np.zeros((2, 1), np.float32), np.full(1, value, np.float32)),))


@pytest.mark.parametrize(
    ("loss", "expected"),
    [
        (fb.sigmoid_binary_cross_entropy, 1.0),  # logits: 0.25 > 0 -> class 1
        (fb.binary_cross_entropy, 0.0),  # probabilities: 0.25 < 0.5 -> class 0
        (fb.mse, 0.0),
    ],
    ids=lambda v: getattr(v, "name", str(v)),
)
def test_accuracy_metric_threshold_follows_the_loss(loss, expected):
    x = _ro(np.linspace(-1, 1, 12).reshape(6, 2), np.float32)
    y = _ro(np.ones((6, 1)), np.float32)
    net = _constant_net(0.25)
    params, h = _fit(
        net,
        x,
        y,
        loss=loss,
        optimizer=fb.optim.sgd(0.0),
        epochs=1,
        batch_size=4,
        validation=(x, y),
        metrics=("accuracy",),
    )
    _assert_trees_equal(params, net)
    assert h.train_metrics["accuracy"] == (expected,)
    assert h.val_metrics["accuracy"] == (expected,)
    assert fb.evaluate(net, loss, x, y, metrics=("accuracy",))["accuracy"] == expected


def test_custom_metric_dict():
    x, y = _moons(40)
    xv, yv = _moons(30, seed=1)

    def mae(pred, target):
        return float(np.mean(np.abs(pred - target)))

    params, h = _fit(_net(), x, y, epochs=3, validation=(xv, yv), metrics={"mae": mae})
    assert set(h.train_metrics) == set(h.val_metrics) == {"mae"}
    assert len(h.train_metrics["mae"]) == len(h.val_metrics["mae"]) == 3
    assert h.val_metrics["mae"][-1] == pytest.approx(mae(fb.forward(params, xv), yv), rel=1e-6)
    assert fb.evaluate(params, BCE_LOGITS, xv, yv, metrics={"mae": mae})["mae"] == pytest.approx(
        h.val_metrics["mae"][-1], rel=1e-6
    )


def test_unknown_metric_raises():
    x, y = _moons(20)
    with pytest.raises(ValueError, match="f1"):
        _fit(_net(), x, y, metrics=("accuracy", "f1"))
    with pytest.raises(ValueError, match="f1"):
        fb.evaluate(_net(), BCE_LOGITS, x, y, metrics=("f1",))


def test_epoch_loss_is_the_mean_over_samples():
    """Batch losses are weighted by batch size: a partial last batch counts less."""
    x, y = _moons(23)
    net = _net()
    opt = fb.optim.sgd(0.0)  # params never move, so every batch sees the same net
    _, h = _fit(net, x, y, optimizer=opt, batch_size=5, metrics=("accuracy",), epochs=1)
    pred = fb.forward(net, x)
    assert h.train_loss[0] == pytest.approx(float(BCE_LOGITS(pred, y)), rel=1e-5)
    assert h.train_metrics["accuracy"][0] == pytest.approx(fb.accuracy(pred, y, 0.0), rel=1e-12)

    key = fb.random.key(9)
    _, h = _fit(net, x, y, optimizer=opt, batch_size=5, drop_last=True, key=key, epochs=1)
    seen = np.concatenate(fb.batches(fb.random.fold_in(key, 0), 23, 5, drop_last=True))
    assert len(seen) == 20
    assert h.train_loss[0] == pytest.approx(float(BCE_LOGITS(pred[seen], y[seen])), rel=1e-5)


def test_fit_is_the_loop_you_could_write():
    """Documented: epoch ``e`` is shuffled by ``fold_in(key, e)``; one optimizer step a batch."""
    x, y = _moons(30)
    net, key, opt = _net(), fb.random.key(11), fb.optim.adam(0.05)
    params, h = _fit(net, x, y, optimizer=opt, batch_size=8, key=key, epochs=2)

    p, state, losses = net, opt.init(net), []
    for epoch in range(2):
        total = 0.0
        for idx in fb.batches(fb.random.fold_in(key, epoch), len(x), 8):
            value, grads = fb.value_and_grad(p, BCE_LOGITS, x[idx], y[idx])
            p, state = fb.optim.step(opt, p, grads, state)
            total += float(value) * len(idx)
        losses.append(total / len(x))
    _assert_trees_equal(params, p)
    _assert_trees_equal(h.train_state.opt_state, state)
    assert h.train_loss == pytest.approx(losses, rel=1e-12)


# ---------------------------------------------------------------- fit: bad input


def test_mismatched_lengths_raise_shape_error():
    x, y = _moons(20)
    with pytest.raises(fb.ShapeError, match="20"):
        _fit(_net(), x, y[:19])
    with pytest.raises(fb.ShapeError):
        _fit(_net(), x, y, validation=(x[:10], y[:9]))


@pytest.mark.parametrize(
    "x",
    [
        np.array([["a", "b"], ["c", "d"]]),
        np.array([[1 + 1j, 2.0], [0.0, 1.0]]),
        np.array([[1.0, 2.0], [3.0, 4.0]], dtype=object),
    ],
    ids=["str", "complex", "object"],
)
def test_non_numeric_x_raises_dtype_error(x):
    with pytest.raises(fb.DTypeError, match="must be numeric"):
        _fit(_net(), x, np.zeros((2, 1), np.float32))


@pytest.mark.parametrize("batch_size", [0, -3])
def test_fit_bad_batch_size(batch_size):
    x, y = _moons(20)
    with pytest.raises(ValueError, match="batch_size"):
        _fit(_net(), x, y, batch_size=batch_size)


def test_fit_drop_last_with_no_full_batch_is_a_clear_error():
    """Dropping the only (partial) batch leaves nothing to train on: say so."""
    x, y = _moons(10)
    with pytest.raises(ValueError, match="batch_size"):
        _fit(_net(), x, y, batch_size=16, drop_last=True)


def test_int_and_bool_inputs_are_accepted():
    x, y = fb.datasets.xor(np.float32)
    net = _net((2, 4, 1))
    ref, h_ref = _fit(net, x, y, batch_size=2)
    for xi in (x.astype(bool), x.astype(np.int64), x.astype(np.uint8)):
        params, h = _fit(net, _ro(xi), y, batch_size=2)
        _assert_trees_equal(params, ref)
        assert h.train_loss == h_ref.train_loss


# ---------------------------------------------------------------- purity and reproducibility


def test_fit_modifies_nothing_and_takes_read_only_inputs():
    x, y = _moons(40)
    xv, yv = _moons(20, seed=1)
    assert not x.flags.writeable and not yv.flags.writeable
    net = _net()
    before = _copy(net), x.copy(), y.copy(), xv.copy(), yv.copy()
    key = fb.random.key(5)
    _fit(net, x, y, key=key, validation=(xv, yv), metrics=("accuracy",))
    _assert_trees_equal(net, before[0])
    for a, b in zip((x, y, xv, yv), before[1:], strict=True):
        assert np.array_equal(a, b)
    assert key == fb.random.key(5)


def test_same_key_gives_identical_bits():
    x, y = _moons(40)
    xv, yv = _moons(20, seed=1)
    runs = [
        _fit(_net(), x, y, key=fb.random.key(7), validation=(xv, yv), metrics=("accuracy",))
        for _ in range(2)
    ]
    (p1, h1), (p2, h2) = runs
    _assert_trees_equal(p1, p2)
    _assert_trees_equal(h1.train_state, h2.train_state)
    assert h1.train_loss == h2.train_loss
    assert h1.val_loss == h2.val_loss
    assert h1.train_metrics == h2.train_metrics
    assert h1.val_metrics == h2.val_metrics


def test_different_key_gives_different_params():
    x, y = _moons(40)
    p1, _ = _fit(_net(), x, y, key=fb.random.key(7))
    p2, _ = _fit(_net(), x, y, key=fb.random.key(8))
    assert not all(
        np.array_equal(a, b) for a, b in zip(fb.tree.leaves(p1), fb.tree.leaves(p2), strict=True)
    )


def test_global_numpy_rng_is_untouched():
    x, y = _moons(40)
    state = np.random.get_state()  # noqa: NPY002 (inspected, never drawn from)
    params, _ = _fit(_net(), x, y, validation=(x, y), metrics=("accuracy",))
    fb.batches(fb.random.key(0), 10, 3)
    fb.predict(params, x, batch_size=7)
    fb.evaluate(params, BCE_LOGITS, x, y, metrics=("accuracy",))
    after = np.random.get_state()  # noqa: NPY002
    assert after[0] == state[0]
    assert np.array_equal(after[1], state[1])
    assert after[2:] == state[2:]


# ---------------------------------------------------------------- early stopping


def _overfitting_setup() -> tuple:
    """24 points with random labels, a big net: the validation loss soon rises."""
    k = fb.random.split(fb.random.key(7), 4)
    x = _ro(fb.random.normal(k[0], (24, 2)), np.float32)
    y = _ro(fb.random.uniform(k[1], (24, 1)) < 0.5, np.float32)
    xv = _ro(fb.random.normal(k[2], (64, 2)), np.float32)
    yv = _ro(fb.random.uniform(k[3], (64, 1)) < 0.5, np.float32)
    return x, y, xv, yv


def test_early_stopping_returns_the_best_params():
    x, y, xv, yv = _overfitting_setup()
    patience, epochs = 5, 300
    params, h = _fit(
        _net((2, 64, 64, 1), seed=2),
        x,
        y,
        optimizer=fb.optim.adam(0.03),
        epochs=epochs,
        batch_size=8,
        key=fb.random.key(3),
        validation=(xv, yv),
        patience=patience,
    )
    assert h.stopped_early is True
    assert h.epochs < epochs
    assert len(h.val_loss) == h.epochs == h.best_epoch + patience + 1
    assert h.best_epoch == int(np.argmin(h.val_loss))
    assert h.val_loss[-1] > min(h.val_loss)  # the last epoch is not the best one
    assert fb.evaluate(params, BCE_LOGITS, xv, yv)["loss"] == min(h.val_loss)


def test_no_early_stop_without_patience():
    x, y, xv, yv = _overfitting_setup()
    _, h = _fit(
        _net((2, 64, 64, 1), seed=2),
        x,
        y,
        optimizer=fb.optim.adam(0.03),
        epochs=15,
        batch_size=8,
        key=fb.random.key(3),
        validation=(xv, yv),
    )
    assert h.stopped_early is False
    assert h.epochs == len(h.val_loss) == 15


# ---------------------------------------------------------------- callbacks


def test_callback_called_once_per_epoch():
    x, y = _moons(40)
    xv, yv = _moons(20, seed=1)
    calls = []

    def record(ts, logs):
        calls.append((int(ts.epoch) - 1, ts.params, dict(logs)))

    params, h = _fit(
        _net(), x, y, epochs=4, validation=(xv, yv), metrics=("accuracy",), callbacks=[record]
    )
    assert [c[0] for c in calls] == [0, 1, 2, 3]
    _assert_trees_equal(calls[-1][1], params)
    for i, (_, p, logs) in enumerate(calls):
        assert logs["loss"] == h.train_loss[i]
        assert logs["val_loss"] == h.val_loss[i]
        assert logs["val_accuracy"] == h.val_metrics["accuracy"][i]
        assert fb.evaluate(p, BCE_LOGITS, xv, yv)["loss"] == h.val_loss[i]


def test_callback_returning_true_stops_after_that_epoch():
    x, y = _moons(40)
    seen = []

    def stop_at_two(ts, logs):
        seen.append(logs["epoch"] - 1)
        return logs["epoch"] == 3

    params, h = _fit(_net(), x, y, epochs=10, callbacks=[stop_at_two])
    assert seen == [0, 1, 2]
    assert h.epochs == 3
    assert len(h.train_loss) == 3
    ref, _ = _fit(_net(), x, y, epochs=3)
    _assert_trees_equal(params, ref)


# ---------------------------------------------------------------- divergence


def _diverging_case(kind: str) -> tuple[Any, np.ndarray, np.ndarray, dict]:
    """``(net, x, y, fit kwargs)`` that must diverge: a huge learning rate."""
    x, y = _moons(40, dtype=np.float64)
    net = _net(dtype=np.float64)
    return net, x, y, {"loss": fb.mse, "optimizer": fb.optim.sgd(1e6), "batch_size": 40}


def test_divergence_raises_divergence_error_not_a_float_warning():
    """Under warnings-as-errors, overflow inside a step must not escape as a RuntimeWarning."""
    net, x, y, kw = _diverging_case("huge-lr")
    with pytest.raises(fb.DivergenceError):
        _fit(net, x, y, epochs=20, **kw)


@pytest.mark.parametrize("value", [np.inf, np.nan])
@pytest.mark.parametrize("where", ["x", "y", "validation x"])
def test_non_finite_data_is_a_value_error_not_a_divergence(where, value):
    """Data with a NaN or inf is refused before the first step, naming where it is, rather
    than surfacing as a divergence blamed on the learning rate."""
    x, y = _moons(40, dtype=np.float64)
    bad_x, bad_y = x.copy(), y.astype(np.float64)
    if where == "y":
        bad_y[7] = value
    else:
        bad_x[13, 0] = value
    kw = {"validation": (_ro(bad_x), y)} if where == "validation x" else {}
    data = (x, _ro(bad_y)) if where == "y" else ((x, y) if kw else (_ro(bad_x), y))
    match = (
        r"x must be finite, got .* at index \(13, 0\)" if "x" in where else "targets must be finite"
    )
    with pytest.raises(ValueError, match=match):
        _fit(_net(dtype=np.float64), *data, epochs=1, loss=fb.sigmoid_binary_cross_entropy, **kw)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_divergence_error_names_epoch_and_step_and_keeps_good_params():
    net, x, y, kw = _diverging_case("huge-lr")
    with pytest.raises(fb.DivergenceError) as info:
        _fit(net, x, y, epochs=20, **kw)
    err = info.value
    epoch, step = err.info["epoch"], err.info["step"]
    assert isinstance(epoch, int) and isinstance(step, int)
    assert 0 <= epoch < 20 and step == 0  # one full batch per epoch
    message = str(err)
    assert f"epoch {epoch}" in message and f"step {step}" in message
    assert "smaller learning rate" in message
    fb.tree.assert_same_structure(err.params, net)
    for leaf, ref in zip(fb.tree.leaves(err.params), fb.tree.leaves(net), strict=True):
        assert leaf.dtype == ref.dtype and leaf.shape == ref.shape
        assert np.isfinite(leaf).all()
    # "good": these params still give a finite loss on the (full-batch) data
    assert math.isfinite(float(fb.mse(fb.forward(err.params, x), y)))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_a_bad_batch_from_data_is_named_with_its_step():
    """Batches from ``data=`` are not checked ahead; a loss that turns NaN on a batch that
    holds an inf is blamed on that batch, with its epoch, step and index."""
    x, y = _moons(40, dtype=np.float64)
    bad = x[8:16].copy()
    bad[5, 0] = np.inf
    batches = [(x[:8], y[:8]), (_ro(bad), y[8:16]), (x[16:], y[16:])]
    with pytest.raises(ValueError, match=r"epoch 0, step 1: x must be finite, got inf .*\(5, 0\)"):
        fb.fit(
            _net(dtype=np.float64),
            BCE_LOGITS,
            data=batches,
            optimizer=fb.optim.sgd(0.1),
            epochs=1,
            key=None,
            progress=False,
        )


# ---------------------------------------------------------------- resuming


_CHILD = """
import sys
import warnings

warnings.simplefilter("error")
import numpy as np
import fnbp as fb

d, epochs = sys.argv[1], int(sys.argv[2])
x, y = np.load(d + "/x.npy"), np.load(d + "/y.npy")
opt = fb.optim.adam(0.02)
like = fb.TrainState.create(fb.mlp(fb.random.key(0), (2, 16, 1)), opt)
ckpt = fb.checkpoint.load(d + "/part.npz", like=like)
params, history = fb.fit(
    ckpt.tree, fb.sigmoid_binary_cross_entropy, x, y,
    optimizer=opt, epochs=epochs, batch_size=16, key=ckpt.key, progress=False,
    history=fb.History.from_dict(ckpt.meta["history"]),
)
fb.checkpoint.save(d + "/final", history.final_state, meta={"history": history.to_dict()})
"""


def test_resume_in_a_new_process_is_bit_identical(tmp_path):
    x, y = _moons(70)  # 70 = 4 * 16 + 6: a partial last batch every epoch
    total, first = 5, 2
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    key = fb.random.key(21)
    _whole, h_whole = _fit(_net(), x, y, epochs=total, key=key)

    _part, h_part = _fit(_net(), x, y, epochs=first, key=key)
    assert h_part.epochs == first
    fb.checkpoint.save(
        tmp_path / "part", h_part.final_state, key=key, meta={"history": h_part.to_dict()}
    )
    script = tmp_path / "resume.py"
    script.write_text(textwrap.dedent(_CHILD))
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path), str(total)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr

    like = fb.TrainState.create(_net(), fb.optim.adam(0.02))
    final = fb.checkpoint.load(tmp_path / "final.npz", like=like)
    _assert_trees_equal(final.tree, h_whole.final_state)
    assert int(final.tree.epoch) == total and int(final.tree.step) == total * 5
    resumed = fb.History.from_dict(final.meta["history"])
    # the resumed run's History is the uninterrupted one's, every epoch of it (times aside)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "time"} for r in rows]  # noqa: E731
    assert strip(resumed.rows) == strip(h_whole.rows)
    assert resumed.train_loss == h_whole.train_loss


def test_resume_needs_the_optimizer_state():
    """Control for the test above: a fresh Adam state at epoch k changes the result."""
    x, y = _moons(70)
    key = fb.random.key(21)
    whole, _ = _fit(_net(), x, y, epochs=5, key=key)
    part, h = _fit(_net(), x, y, epochs=2, key=key)
    same, _ = _fit(h.final_state, x, y, epochs=5, key=key)
    opt = fb.optim.adam(0.02)
    fresh, _ = _fit(attrs.evolve(h.final_state, opt_state=opt.init(part)), x, y, epochs=5, key=key)
    _assert_trees_equal(same, whole)
    assert not np.array_equal(fb.tree.leaves(fresh)[0], fb.tree.leaves(whole)[0])


# ---------------------------------------------------------------- predict and evaluate


@pytest.mark.parametrize("batch_size", [None, 1, 7, 50, 500])
def test_predict_in_batches_equals_forward(batch_size):
    x, _ = _moons(50)
    net = _net((2, 8, 3))
    out = fb.predict(net, x, batch_size=batch_size)
    ref = fb.forward(net, x)
    assert out.shape == ref.shape == (50, 3)
    assert out.dtype == ref.dtype
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-7)


def test_predict_accepts_int_inputs():
    x = _ro([[0, 1], [1, 0], [1, 1]], np.int64)
    net = _net()
    ref = fb.forward(net, x.astype(np.float32))
    np.testing.assert_array_equal(fb.predict(net, x), ref)
    np.testing.assert_allclose(fb.predict(net, x, batch_size=2), ref, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("batch_size", [None, 6])
def test_evaluate_matches_loss_and_metrics(batch_size):
    x, y = _moons(40)
    net = _net()
    out = fb.evaluate(net, BCE_LOGITS, x, y, metrics=("accuracy",), batch_size=batch_size)
    pred = fb.forward(net, x)
    assert set(out) == {"loss", "accuracy"}
    assert all(type(v) is float for v in out.values())
    assert out["loss"] == pytest.approx(float(BCE_LOGITS(pred, y)), rel=1e-6)
    assert out["accuracy"] == fb.accuracy(pred, y, threshold=0.0)


def test_evaluate_softmax_uses_argmax():
    x, _ = _moons(30)
    lab = _ro(np.arange(30) % 3)
    net = _net((2, 8, 3))
    out = fb.evaluate(net, fb.softmax_cross_entropy, x, lab, metrics=("accuracy",))
    pred = fb.forward(net, x)
    assert out["loss"] == pytest.approx(float(fb.softmax_cross_entropy(pred, lab)), rel=1e-6)
    assert out["accuracy"] == float(np.mean(pred.argmax(axis=1) == lab))


# ---------------------------------------------------------------- progress display


def test_progress_false_is_silent(capsys):
    x, y = _moons(20)
    _fit(_net(), x, y, epochs=25, progress=False)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == ""


def test_progress_auto_is_silent_off_a_terminal(capsys):
    x, y = _moons(20)
    _fit(_net(), x, y, epochs=25, progress="auto")
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == ""


def test_progress_true_shows_a_bar(capsys):
    import tqdm  # the test extra installs it: a missing tqdm is a failure, not a skip

    assert tqdm.__version__
    x, y = _moons(20)
    _fit(_net(), x, y, epochs=3, progress=True)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "3/3" in captured.err


# ---------------------------------------------------------------- arguments, each named


def _bad_fit(**changes: Any) -> None:
    x, y = _moons(16, dtype=np.float64)
    kw: dict[str, Any] = {"x": x, "y": y, "init": _net(dtype=np.float64), "loss": BCE_LOGITS}
    kw.update(changes)
    _fit(kw.pop("init"), kw.pop("x"), kw.pop("y"), **kw)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"optimizer": 0.1}, r"fit: optimizer must be an fb.optim optimizer \(a learning rate\?"),
        ({"loss": lambda p, t: 0.0}, "fit: loss must be a loss with value_and_grad"),
        ({"loss": fb.MeanSquaredError}, r"did you mean MeanSquaredError\(\)\?"),
        ({"callbacks": print}, "fit: callbacks must be a list or tuple"),
        ({"callbacks": [lambda: None]}, r"callbacks\[0\] must be a function .* taking 2"),
        ({"validation": (np.ones((2, 2)),)}, r"fit: validation must be a pair \(x_val, y_val\)"),
        ({"metrics": "accuracy"}, "fit: metrics must be a list or tuple of metric names"),
        ({"metrics": {"m": lambda p: 0.0}}, r"metrics\['m'\] must be a function .* taking 2"),
        ({"epochs": 1.5}, "fit: epochs must be an integer >= 0"),
        ({"epochs": -1}, "fit: epochs must be an integer >= 0"),
        ({"steps": "2"}, "fit: steps must be an integer"),
        ({"patience": -1}, "fit: patience must be an integer >= 0"),
        ({"batch_size": 0}, "fit: batch_size must be an integer >= 1"),
        ({"key": 3}, "fit: key must be an fnbp key"),
        ({"key": fb.random.key(0).seed}, "fit: key must be an fnbp key"),
        ({"progress": "yes"}, "fit: progress must be True, False or 'auto'"),
        ({"init": None}, "fit: init must be a layer"),
        ({"init": fb.ReLU}, r"did you mean ReLU\(\)\?"),
        ({"min_delta": np.nan}, "fit: min_delta must be a finite real number"),
        ({"mode": "bigger"}, "fit: mode must be one of"),
        ({"monitor": 3}, "fit: monitor must be the name of a logged quantity"),
        ({"drop_last": "yes"}, "fit: drop_last must be True or False"),
        ({"eval_every": 0}, "fit: eval_every must be an integer >= 1"),
        ({"history": 3}, "fit: history must be the History"),
        ({"x": None, "y": None, "batch_size": None, "data": lambda e: 3}, "fit: data must be"),
        ({"x": np.ones((16, 2), np.float16)}, "fit: input must be numeric .* float16"),
        ({"x": np.ones((0, 2)), "y": np.ones((0, 1))}, "fit: the data is empty"),
    ],
    ids=lambda c: ",".join(c) if isinstance(c, dict) else None,
)
def test_a_bad_argument_gets_an_error_naming_it(changes, match):
    with pytest.raises((ValueError, TypeError), match=match):
        _bad_fit(**changes)


def test_a_train_state_from_another_optimizer_is_named():
    x, y = _moons(16, dtype=np.float64)
    ts = fb.TrainState.create(_net(dtype=np.float64), fb.optim.adam(0.1))
    with pytest.raises(
        fb.StructureError, match="fit: init is a TrainState whose opt_state was not"
    ):
        _fit(ts, x, y, optimizer=fb.optim.sgd(0.1))
    with pytest.raises(fb.StructureError, match=r"train_step: ts.opt_state does not fit this"):
        fb.train_step(ts, BCE_LOGITS, fb.optim.sgd(0.1), x, y)
    with pytest.raises(ValueError, match="train_step: optimizer must be"):
        fb.train_step(ts, BCE_LOGITS, 0.1, x, y)
    with pytest.raises(ValueError, match="train_step: key must be an fnbp key"):
        fb.train_step(ts, BCE_LOGITS, fb.optim.adam(0.1), x, y, key=3)


@pytest.mark.parametrize("batch_size", [0, -1, 1.5, "2", True])
def test_predict_and_evaluate_name_a_bad_batch_size(batch_size):
    x, y = _moons(8, dtype=np.float64)
    net = _net(dtype=np.float64)
    with pytest.raises(ValueError, match="predict: batch_size must be an integer >= 1"):
        fb.predict(net, x, batch_size=batch_size)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        fb.evaluate(net, BCE_LOGITS, x, y, batch_size=batch_size)


def test_evaluate_an_empty_batch_says_so_and_predict_returns_it():
    net = _net(dtype=np.float64)
    with pytest.raises(ValueError, match=r"evaluate: the data is empty .*no samples"):
        fb.evaluate(net, BCE_LOGITS, np.ones((0, 2)), np.ones((0, 1)))
    assert fb.predict(net, np.ones((0, 2))).shape == (0, 1)


@attrs.frozen
class _NanInInference(fb.ContextLayer):
    """The identity in training, NaN in inference: a validation loss that turns NaN."""

    def vjp_ctx(self, x: Any, need_g_x: bool, ctx: fb.Context) -> tuple:
        y = x if ctx.train else np.full_like(x, np.nan)
        return y, (lambda g: (g, self)), ctx.state


def test_a_nan_validation_loss_does_not_silently_disable_early_stopping():
    x, y = _moons(16, dtype=np.float64)
    net = fb.Serial((*_net(dtype=np.float64).layers, _NanInInference()))
    with pytest.raises(fb.DivergenceError, match="the monitored val_loss is not finite"):
        _fit(net, x, y, epochs=3, validation=(x, y), patience=1)


def test_training_accuracy_of_a_fused_sigmoid_is_taken_on_probabilities():
    """Sigmoid + BCE trains through the fused loss, whose input is the logits: the metric
    must still see probabilities (thresholded at 0.5), as evaluate does."""
    x, y = fb.datasets.and_gate()
    net = fb.Serial((fb.Dense(np.array([[1.0], [1.0]]), np.array([-1.5])), fb.Sigmoid()))
    _, h = _fit(
        net, x, y, loss=fb.binary_cross_entropy, optimizer=fb.optim.sgd(0.0), epochs=1,
        batch_size=4, key=None, metrics=("accuracy",),
    )  # fmt: skip
    evaluated = fb.evaluate(net, fb.binary_cross_entropy, x, y, metrics=("accuracy",))
    assert h.train_metrics["accuracy"] == (evaluated["accuracy"],) == (1.0,)


def test_an_optimizer_overflow_is_a_divergence_with_the_last_good_state():
    x, y = _moons(16, dtype=np.float32)
    opt = fb.optim.adam(0.1)
    with pytest.raises(fb.DivergenceError, match=r"step 0: an update .*moments overflowed") as info:
        _fit(_net(), x * np.float32(1e25), y, loss=fb.mse, optimizer=opt, epochs=1, batch_size=16)
    assert info.value.train_state is not None and info.value.info == {"epoch": 0, "step": 0}


# ---------------------------------------------------------------- the kept minibatch array


def _gathered(monkeypatch, net, **kwargs):
    """The arrays fit handed to train_step as x, each with a copy of what it held then."""
    seen = []
    original = fb.train_step

    def spy(ts, loss, opt, x, y, **kw):
        seen.append((x, np.array(x)))
        return original(ts, loss, opt, x, y, **kw)

    monkeypatch.setitem(fb.fit.__globals__, "train_step", spy)
    x, y = _moons(40)
    fitted, _ = fb.fit(net, fb.mse, x, y, optimizer=fb.optim.sgd(0.1), epochs=2,
                       batch_size=8, key=fb.random.key(3), progress=False, **kwargs)  # fmt: skip
    return seen, fitted


def test_fnbp_layers_get_their_minibatches_in_one_kept_array(monkeypatch):
    net = fb.mlp(fb.random.key(0), [2, 4, 1])
    seen, fitted = _gathered(monkeypatch, net)
    assert len({id(x) for x, _ in seen}) == 1  # the mechanism: one array, gathered into
    monkeypatch.setitem(fb.fit.__globals__, "_keeps_no_input", lambda net: False)
    fresh, reference = _gathered(monkeypatch, net)
    assert len({id(x) for x, _ in fresh}) == len(fresh)
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(seen, fresh, strict=True))
    for a, b in zip(fb.tree.leaves(fitted), fb.tree.leaves(reference), strict=True):
        assert np.array_equal(a, b)


@attrs.frozen
class _Keeper(fb.Layer):
    """A parameter-free layer of your own that keeps every input it is given."""

    def vjp(self, x, need_g_x=True):
        KEPT.append((x, np.array(x)))
        return x, lambda g_y: (g_y, self)


KEPT: list = []


def test_a_layer_of_your_own_gets_a_new_array_every_minibatch(monkeypatch):
    KEPT.clear()
    net = fb.Serial((_Keeper(), fb.Dense.init(fb.random.key(0), 2, 1)))
    _gathered(monkeypatch, net)
    assert len(KEPT) == 10 and all(np.array_equal(x, copy) for x, copy in KEPT)


def test_a_prediction_that_is_a_view_of_the_batch_is_never_written():
    kept = []

    def keep(pred, target):
        kept.append((pred, np.array(pred)))
        return 0.0

    x, _ = _moons(40)
    net = fb.Serial((fb.Dense.init(fb.random.key(0), 2, 2), fb.Identity()))
    monkeyed = fb.Serial((fb.Identity(), fb.Identity()))  # pred is the batch itself
    for model in (net, monkeyed):
        kept.clear()
        fb.fit(model, fb.mse, x, np.zeros((40, 2)) if model is net else x,
               optimizer=fb.optim.sgd(0.1), epochs=1, batch_size=8, key=fb.random.key(3),
               metrics={"keep": keep}, progress=False)  # fmt: skip
        assert len(kept) == 5 and all(np.array_equal(p, copy) for p, copy in kept)


def _overflows(*args: Any) -> float:
    return float(np.float32(3e38) * np.float32(10.0))  # inf, and an overflow signal


@pytest.mark.parametrize("where", ["metric", "data"])
def test_your_metric_and_your_data_run_in_your_numpy_error_state(where):
    """fit runs its steps with numpy's errors ignored (a NaN is caught after the step);
    a metric or a data function of yours still sees the error state you set."""
    x, y = _moons(32)

    def data(epoch: int) -> list:
        _overflows()
        return [(x, y)]

    kwargs = {"metrics": {"m": _overflows}} if where == "metric" else {"data": data}
    xy = (x, y) if where == "metric" else (None, None)
    with np.errstate(over="raise"), pytest.raises(FloatingPointError, match="overflow"):
        _fit(_net(), *xy, epochs=1, key=None, **kwargs)
    with np.errstate(over="ignore"):
        _fit(_net(), *xy, epochs=1, key=None, **kwargs)


def test_rounds_of_eval_every_steps_across_epochs_are_the_loop_you_could_write():
    """``steps=12, eval_every=3`` on 5 batches an epoch: rows at steps 3, 6, 9, 12, each
    the mean over its own 3 steps (rounds cross the epoch ends), and the same params
    as the documented loop, keys per step included."""
    x, y = _moons(40)
    net, key, opt = _net(), fb.random.key(4), fb.optim.sgd(0.1)
    params, h = _fit(net, x, y, optimizer=opt, batch_size=8, key=key, epochs=None, steps=12,
                     eval_every=3)  # fmt: skip
    assert [row["step"] for row in h.rows] == [3, 6, 9, 12]
    ts = h.train_state
    assert (int(ts.step), int(ts.epoch), int(ts.epoch_step)) == (12, 2, 2)

    hand, values = fb.TrainState.create(net, opt), []
    for epoch in range(3):
        epoch_key = fb.random.fold_in(key, epoch)
        for i, idx in enumerate(fb.batches(epoch_key, len(x), 8)):
            if len(values) < 12:
                hand, value, _ = fb.train_step(
                    hand, BCE_LOGITS, opt, x[idx], y[idx], key=fb.random.fold_in(epoch_key, i)
                )
                values.append(float(value))
    _assert_trees_equal(params, hand.params)
    means = [sum(values[k : k + 3]) / 3 for k in range(0, 12, 3)]
    assert h.train_loss == pytest.approx(means, rel=1e-12)
