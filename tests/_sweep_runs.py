"""Runs for the sweep tests: a small real fnbp training run, importable by worker processes.

Process pools and Dask workers import a run function by module name; this module
is on their path because pytest puts ``tests/`` on ``sys.path`` and spawned
workers inherit it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import fnbp as fb

CONFIGS = [{"lr": 0.05, "width": 4}, {"lr": 0.2, "width": 4}, {"lr": 0.2, "width": 8}]


def _data() -> tuple[np.ndarray, ...]:
    """Two moons, fixed for every run (the run's key draws the net and the shuffling)."""
    x, labels = fb.datasets.two_moons(fb.random.key(0), 80, noise=0.2)
    return fb.datasets.train_test_split(fb.random.key(1), x, labels)


def moons(config: dict[str, Any], key: fb.random.Key) -> dict[str, Any]:
    """An MLP 2-width-2 trained with Adam for 3 epochs: curves and a final value."""
    x_tr, x_te, y_tr, y_te = _data()
    k_init, k_fit = fb.random.split(key)
    net = fb.mlp(k_init, [2, config["width"], 2], dtype=np.float64)
    net, history = fb.fit(
        net, fb.softmax_cross_entropy, x_tr, y_tr, optimizer=fb.optim.adam(config["lr"]),
        epochs=3, batch_size=16, key=k_fit, validation=(x_te, y_te), metrics=("accuracy",),
        progress=False,
    )  # fmt: skip
    return {
        "loss": list(history.train_loss),
        "val_loss": history.val_loss,
        "val_accuracy": np.array(history.val_metrics["accuracy"]),
        "final_loss": fb.evaluate(net, fb.softmax_cross_entropy, x_tr, y_tr)["loss"],
    }
