"""Seeing inside: readable reprs, fb.summary from shapes alone, fb.trace of one step."""

from __future__ import annotations

import numpy as np
import pytest
from contract import CASES

import fnbp as fb


def _cnn() -> fb.Serial:
    k = fb.random.split(fb.random.key(0), 4)
    return fb.Serial((
        fb.Conv2D.init(k[0], 1, 16, 3, padding="same"), fb.BatchNorm.init(16), fb.ReLU(),
        fb.MaxPool2D(2), fb.Flatten(), fb.Dense.init(k[1], 4 * 4 * 16, 64), fb.ReLU(),
        fb.Residual(fb.Serial((fb.Dense.init(k[2], 64, 64), fb.ReLU()))),
        fb.Dense.init(k[3], 64, 10),
    ))  # fmt: skip


def test_an_mlp_reads_like_its_definition():
    net = fb.mlp(fb.random.key(0), [784, 256, 10])
    assert repr(net) == "Serial(Dense(784 -> 256), ReLU(), Dense(256 -> 10), Identity())"


def test_nested_combinators_are_indented_and_hyperparameters_shown():
    text = repr(_cnn())
    assert text.splitlines()[0] == "Serial("
    assert "  Conv2D(1 -> 16, 3x3, same)," in text
    assert "  Residual(Serial(Dense(64 -> 64), ReLU()))," in text
    assert "MaxPool2D(2x2)" in text and "BatchNorm(16)" in text
    assert repr(fb.BatchNorm.init(8, momentum=0.99)) == "BatchNorm(8, momentum=0.99)"
    assert repr(fb.LeakyReLU(0.2)) == "LeakyReLU(slope=0.2)"


def test_a_train_state_reads_as_its_parts_with_counters_as_numbers():
    ts = fb.TrainState.create(fb.mlp(fb.random.key(0), [2, 3, 1]), fb.optim.adam(0.1))
    text = repr(fb.replace(ts, step=np.int64(12), epoch=np.int64(3)))
    lines = text.splitlines()
    assert lines[0] == "TrainState(" and lines[-1] == ")"
    assert "  params=Serial(Dense(2 -> 3), ReLU(), Dense(3 -> 1), Identity())," in lines
    assert "  step=12," in lines and "  epoch=3," in lines and "  epoch_step=0," in lines
    assert "count=0" in text and "array(" not in text


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_no_repr_dumps_an_array(case):
    text = repr(case.layer(np.dtype(np.float64)))
    assert len(text) < 400 and "array(" not in text and "e-0" not in text


def test_summary_propagates_shapes_without_data_and_counts_params():
    s = fb.summary(_cnn(), (8, 8, 1))
    rows = {r[0].strip(): r for r in s.rows}
    assert rows["layers[0]"][2] == "(N, 8, 8, 16)"
    assert rows["layers[4]"][2] == "(N, 256)"  # the width a Dense after the Flatten needs
    assert rows["layers[7].f.layers[0]"][4] == 64 * 64 + 64
    assert s.total_params == sum(np.size(a) for a in fb.tree.leaves(_cnn()))
    assert s.total_bytes == 4 * s.total_params
    text = str(s)
    assert "total: 21,450 parameters, 85,800 bytes" in text and "(N, 10)" in text


def test_summary_answers_the_width_after_a_flatten():
    convs = fb.Serial((fb.Conv2D.init(fb.random.key(0), 1, 8, 3), fb.MaxPool2D(2), fb.Flatten()))
    assert fb.summary(convs, (12, 12, 1)).rows[-1][2] == "(N, 200)"  # 5 * 5 * 8


def test_summary_of_an_embedding_takes_integer_ids():
    net = fb.Serial((fb.Embedding.init(fb.random.key(0), 10, 4), fb.Flatten()))
    assert fb.summary(net, (3,), dtype=np.int64).rows[-1][2] == "(N, 12)"


@pytest.mark.parametrize("cell", [fb.RNNCell, fb.LSTMCell, fb.GRUCell])
def test_summary_of_sequence_models(cell):
    # The empty batch once met reshape(..., -1) in the cells' input projection, in Dense
    # on (N, T, D) and in attention's head merge: "cannot reshape array of size 0".
    k = fb.random.split(fb.random.key(0), 4)
    lm = fb.Serial((fb.Embedding.init(k[0], 10, 4), fb.Recurrent(cell.init(k[1], 4, 6)),
                    fb.Dense.init(k[2], 6, 10)))  # fmt: skip
    assert fb.summary(lm, (7,), dtype=np.int64).rows[-1][2] == "(N, 7, 10)"
    both = fb.Bidirectional.init(k[3], lambda key: cell.init(key, 3, 5))
    assert fb.summary(both, (7, 3)).rows[0][2] == "(N, 7, 10)"


def test_summary_of_a_transformer_lm():
    net = fb.transformer_lm(fb.random.key(0), 11, 8, 16, 4, 2)
    s = fb.summary(net, (8,), dtype=np.int64)
    assert s.rows[-1][2] == "(N, 8, 11)"
    assert s.total_params == sum(a.size for a in fb.tree.leaves(net))


def test_trace_records_every_layer_both_ways():
    net, x = _cnn(), np.linspace(-1, 1, 4 * 64, dtype=np.float32).reshape(4, 8, 8, 1)
    labels = np.array([1, 2, 3, 4])
    t = fb.trace(net, x, labels, fb.softmax_cross_entropy, state=fb.init_state(net))
    paths = [layer.path for layer in t]
    assert paths[:3] == ["", "layers[0]", "layers[1]"]
    assert (
        paths.index("layers[7]") < paths.index("layers[7].f") < paths.index("layers[7].f.layers[0]")
    )
    loss, grads = fb.value_and_grad(
        net, fb.softmax_cross_entropy, x, labels, state=fb.init_state(net)
    )[:2]
    assert t.loss == pytest.approx(float(loss), rel=1e-6)
    np.testing.assert_allclose(t["layers[0]"].grads.W, grads.layers[0].W, rtol=1e-5, atol=1e-7)
    relu = t["layers[2]"]
    np.testing.assert_array_equal(relu.y, np.maximum(relu.x, 0))
    np.testing.assert_array_equal(relu.g_x, relu.g_y * (relu.y > 0))
    assert t["layers[5]"].x.shape == (4, 256) and t[""].y.shape == (4, 10)
    text = str(t)
    assert text.startswith("loss ") and "layers[7].f.layers[0]" in text and "|g_x|" in text


def test_trace_of_the_forward_pass_only_and_bad_arguments():
    net = fb.mlp(fb.random.key(0), [2, 3, 1])
    t = fb.trace(net, np.ones((5, 2)))
    assert t.loss is None and t["layers[1]"].g_y is None
    with pytest.raises(ValueError, match="trace: loss must be given together with target"):
        fb.trace(net, np.ones((5, 2)), loss=fb.mse)
    with pytest.raises(ValueError, match="Trace: path must be one of"):
        t["nowhere"]


def test_tracing_leaves_nothing_behind():
    net, x = fb.mlp(fb.random.key(0), [2, 3, 1]), np.ones((5, 2))
    fb.trace(net, x, np.zeros((5, 1)), fb.mse)
    assert fb.core.OBSERVER.get() is None
    with pytest.raises(fb.ShapeError):
        fb.trace(net, np.ones((5, 3)))
    assert fb.core.OBSERVER.get() is None


def _fit_with(callbacks, epochs=3):
    x, lab = fb.datasets.two_moons(fb.random.key(1), 120, noise=0.1, dtype=np.float32)
    net = fb.Serial(
        (
            fb.Dense.init(fb.random.key(0), 2, 8),
            fb.ReLU(),
            fb.Dense.init(fb.random.key(3), 8, 1),
            fb.Sigmoid(),
        )
    )
    y = lab[:, None].astype(np.float32)
    return fb.fit(
        net,
        fb.binary_cross_entropy,
        x,
        y,
        optimizer=fb.optim.adam(1e-2),
        epochs=epochs,
        batch_size=32,
        key=fb.random.key(2),
        callbacks=callbacks,
        progress=False,
    ), (x, y)


def test_diagnostics_record_per_layer_norms_and_activity_in_the_history():
    x, lab = fb.datasets.two_moons(fb.random.key(1), 120, noise=0.1, dtype=np.float32)
    probe = (x[:40], lab[:40, None].astype(np.float32))
    (params, h), _ = _fit_with([fb.diagnostics(fb.binary_cross_entropy, *probe)])
    assert len(h.column("grad_norm/layers[0]")) == 3 and len(h.column("update_norm/layers[2]")) == 2
    assert all(0.0 <= v <= 1.0 for v in h.column("dead/layers[1]"))
    assert all(0.0 <= v <= 1.0 for v in h.column("saturated/layers[3]"))
    t = fb.trace(params, *probe[:1], probe[1], fb.binary_cross_entropy)
    assert h.column("grad_norm/layers[0]")[-1] == pytest.approx(
        fb.tree.global_norm(t["layers[0]"].grads)
    )
    assert "grad_norm/layers[0]" not in h.train_metrics  # diagnostics are not metrics


def test_one_diagnostics_callback_for_two_runs_starts_afresh_in_the_second():
    x, lab = fb.datasets.two_moons(fb.random.key(1), 40, noise=0.1, dtype=np.float32)
    y = lab[:, None].astype(np.float32)
    probe = fb.diagnostics(fb.binary_cross_entropy, x, y)
    runs = [
        fb.fit(fb.mlp(fb.random.key(0), [2, width, 1], output=fb.Sigmoid()),
               fb.binary_cross_entropy, x, y, optimizer=fb.optim.sgd(0.1), epochs=2,
               batch_size=40, key=None, callbacks=(probe,), progress=False)[1]
        for width in (3, 8)
    ]  # fmt: skip
    for h in runs:  # the second run's first round is no move from the first run's weights
        assert "update_norm/layers[0]" not in h.rows[0] and "update_norm/layers[0]" in h.rows[1]


def test_a_callback_may_add_numbers_to_the_row_but_not_rewrite_it():
    def extra(ts, logs):
        logs["loss"] = -1.0  # a copy: the History keeps its own
        return {"twice_the_step": 2 * int(ts.step)}

    (_, h), _ = _fit_with([extra], epochs=2)
    assert h.column("twice_the_step") == (8.0, 16.0) and all(v > 0 for v in h.train_loss)
    with pytest.raises(ValueError, match="str keys"):
        _fit_with([lambda ts, logs: {1: 2.0}], epochs=1)
