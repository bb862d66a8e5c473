"""Resuming is exact for a network with Dropout and BatchNorm: the per-step keys
come from (key, epoch, step) and the BatchNorm statistics travel in the checkpoint."""

from __future__ import annotations

import attrs
import numpy as np

import fnbp as fb


def _net() -> fb.Serial:
    k1, k2 = fb.random.split(fb.random.key(0))
    return fb.Serial((
        fb.Dense.init(k1, 4, 16), fb.BatchNorm.init(16), fb.ReLU(), fb.Dropout(0.3),
        fb.Dense.init(k2, 16, 3),
    ))  # fmt: skip


def _data() -> tuple[np.ndarray, np.ndarray]:
    x, labels = fb.datasets.blobs(fb.random.key(1), 90, centers=3, n_features=4)
    return x, labels


def _fit(net, epochs, **kw):
    x, y = _data()
    return fb.fit(
        net, fb.softmax_cross_entropy, x, y, optimizer=fb.optim.adam(1e-2), epochs=epochs,
        batch_size=16, key=fb.random.key(2), progress=False, **kw,
    )  # fmt: skip


def _same_bits(a, b) -> bool:
    fb.tree.assert_same_structure(a, b)
    return all(
        np.array_equal(x, y) for x, y in zip(fb.tree.leaves(a), fb.tree.leaves(b), strict=True)
    )


def test_resume_with_dropout_and_batchnorm_is_bit_identical(tmp_path):
    whole, whole_history = _fit(_net(), 4)
    _part, history = _fit(_net(), 2)
    path = tmp_path / "run.npz"
    fb.checkpoint.save(path, history.final_state, meta={"history": history.to_dict()})
    like = fb.TrainState.create(_net(), fb.optim.adam(1e-2))
    ckpt = fb.checkpoint.load(path, like=like)
    resumed, resumed_history = _fit(
        ckpt.tree, 4, history=fb.History.from_dict(ckpt.meta["history"])
    )
    assert _same_bits(resumed, whole)
    assert _same_bits(resumed_history.train_state, whole_history.train_state)
    assert resumed_history.train_loss == whole_history.train_loss


def test_losing_the_batchnorm_state_loses_only_the_running_averages():
    # In training BatchNorm normalises with batch statistics, so the params do not
    # depend on the running averages; what a fresh state loses is inference.
    whole, whole_history = _fit(_net(), 3)
    part, history = _fit(_net(), 2)
    forgot = attrs.evolve(history.final_state, model_state=fb.init_state(part))
    resumed, resumed_history = _fit(forgot, 3)
    assert _same_bits(resumed, whole)
    assert not _same_bits(
        resumed_history.train_state.model_state, whole_history.train_state.model_state
    )
