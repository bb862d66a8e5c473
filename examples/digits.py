"""A real dataset: handwritten digits with an MLP, ``fb.fit`` and Adam.

scikit-learn ships a small dataset of handwritten digits with its code, so no
download is needed: 1,797 images of 8 x 8 pixels with grey levels 0 to 16, ten
classes. Each image is a row of 64 numbers, scaled to [0, 1] by dividing by 16.
A quarter of the rows is held out with ``fb.datasets.train_test_split``; the
network never trains on them. It is an MLP, 64 inputs, 128 ReLU units, 10
logits, trained with ``fb.softmax_cross_entropy`` and ``fb.optim.adam``, its
learning rate decaying from 0.01 to 0 along a cosine
(``fb.optim.schedules.cosine_decay``), for 20 epochs of minibatches of 32.

``fb.fit(..., validation=(x_test, y_test), metrics=("accuracy",))`` records
the held-out loss and accuracy after every epoch; a *callback* prints them as
training goes. The held-out quarter only watches: nothing is chosen by it (no
early stopping), so its accuracy at the end is a fair test accuracy.

Two small steps, both using the training rows only, make the result robust
across random splits:

* **Centring.** Subtract the training mean of each pixel. Inputs that are all
  positive make the weights into a hidden unit all move in the same direction
  at each step; centred inputs do not (LeCun et al., "Efficient BackProp", 1998).
* **Label smoothing.** Train on targets ``0.9 * one_hot + 0.1 / 10`` instead of
  the bare labels (Szegedy et al., 2016). A hard label rewards ever larger
  logits on the training images long after they are all right; a smoothed one
  is met with finite logits, which acts as a regulariser.
  ``fb.softmax_cross_entropy`` takes either: integer labels, or per-class
  probabilities. (The training loss then cannot go below the entropy of the
  smoothed targets, 0.50; the held-out loss is measured against hard labels.)

Test accuracy over seeds 0 to 19 (the split, the initial weights and the
shuffling all come from the seed), mean and worst split:

    centring and label smoothing     98.9%   98.0%
    label smoothing only             98.6%   98.2%
    centring only                    98.0%   97.1%
    neither                          97.7%   95.8%

Run it with::

    python examples/digits.py

**Inside the network.** ``fb.diagnostics`` (a second callback) traces one
step on 256 training rows after every epoch and adds each layer's gradient
norm and how far its parameters moved to the History row;
``fb.plot.layer_norms`` draws them. The updates shrink a hundredfold as the
learning rate decays along its cosine; the gradients level off near 0.01 (the
smoothed targets are never met exactly).

It takes a few seconds and saves ``examples/out/digits.png``: the learning
curves and the per-layer norms. It needs scikit-learn for the data
(``pip install -e ".[examples]"``).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from _plotting import pyplot, save  # examples/_plotting.py, beside this script

import fnbp as fb

OUT_DIR = Path(__file__).resolve().parent / "out"
LOSS = fb.softmax_cross_entropy


def load(key: fb.random.Key) -> tuple[np.ndarray, ...]:
    """``x_train, x_test, y_train, y_test``: float32 pixels in [0, 1], int64 labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    return fb.datasets.train_test_split(key, x, digits.target.astype(np.int64), test_fraction=0.25)


def center(x_train: np.ndarray, x_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Subtract the training mean of each pixel from both parts."""
    mean = x_train.mean(axis=0)
    return x_train - mean, x_test - mean


def smooth_labels(labels: np.ndarray, smoothing: float, n_classes: int = 10) -> np.ndarray:
    """One-hot rows with ``smoothing`` spread evenly over all classes (hard labels at 0)."""
    if not smoothing:
        return labels
    one_hot = fb.datasets.one_hot(labels, n_classes, dtype=np.float32)
    return one_hot * np.float32(1.0 - smoothing) + np.float32(smoothing / n_classes)


def target_entropy(smoothing: float, n_classes: int = 10) -> float:
    """The entropy of a smoothed target: the least its cross-entropy can be."""
    p = np.full(n_classes, smoothing / n_classes)
    p[0] += 1.0 - smoothing
    return float(-(p * np.log(p)).sum())


def print_epoch(ts: fb.TrainState, logs: dict) -> None:
    """A ``fit`` callback: one line of losses and accuracies per epoch."""
    epoch = logs["epoch"] - 1
    if epoch == 0:
        print(f"{'epoch':>5}  {'loss':>7} {'acc':>6}  {'val loss':>8} {'val acc':>7}")
    print(f"{epoch + 1:>5}  {logs['loss']:>7.4f} {logs['accuracy']:>6.1%}  "
          f"{logs['val_loss']:>8.4f} {logs['val_accuracy']:>7.1%}")  # fmt: skip


def confusions(net: fb.Serial, x: np.ndarray, y: np.ndarray, top: int = 5) -> list:
    """The most frequent mistakes, as ``((true, predicted), count)`` pairs."""
    predicted = fb.labels(fb.predict(net, x))
    wrong = predicted != y
    return Counter(zip(y[wrong].tolist(), predicted[wrong].tolist(), strict=True)).most_common(top)


def _draw_loss(ax: Any, history: fb.History, smoothing: float) -> None:
    names = {"loss": "training (smoothed targets, during epoch)",
             "val_loss": "held-out quarter (hard labels)"}  # fmt: skip
    fb.plot.learning_curves(history, names, log=True, ax=ax)
    if smoothing:
        floor = target_entropy(smoothing)
        ax.axhline(floor, color="gray", ls=":", label=f"floor: targets' entropy {floor:.2f}")
    ax.set(ylabel="softmax cross-entropy (log scale)", title="Loss")
    ax.legend(fontsize="small")


def _draw_accuracy(ax: Any, history: fb.History) -> None:
    names = {"accuracy": "training (during epoch)", "val_accuracy": "held-out quarter"}
    fb.plot.learning_curves(history, names, ax=ax)
    ax.axhline(0.97, color="gray", linestyle=":", label="97%")
    ax.set(ylabel="accuracy", title="Accuracy")
    ax.yaxis.set_major_formatter(lambda v, _: f"{v:.1%}")
    ax.legend(fontsize="small")


def plot(history: fb.History, hidden: int, smoothing: float, out_dir: str | Path) -> Path | None:
    """Save the loss and accuracy curves and the layer norms as ``digits.png``."""
    plt = pyplot()
    if plt is None:
        return None
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(15, 4.4), layout="constrained")
    _draw_loss(left, history, smoothing)
    _draw_accuracy(middle, history)
    fb.plot.layer_norms(history, ax=right)
    right.set_title("Per layer: gradient and update norms")
    fig.suptitle(f"Digits (8 x 8): MLP 64-{hidden}-10, ReLU, Adam with cosine decay")
    print()
    return save(plt, fig, out_dir, "digits.png")


def prepare(key: fb.random.Key, centred: bool, smoothing: float) -> tuple:
    """Load, split, centre and smooth: ``x_train, x_test, targets_train, y_test``."""
    x_tr, x_te, y_tr, y_te = load(key)
    if centred:
        x_tr, x_te = center(x_tr, x_te)
    return x_tr, x_te, smooth_labels(y_tr, smoothing), y_te


def main(
    *,
    seed: int = 0,
    hidden: int = 128,
    learning_rate: float = 0.01,
    epochs: int = 20,
    batch_size: int = 32,
    centred: bool = True,
    smoothing: float = 0.1,
    verbose: bool = True,
    out_dir: str | Path = OUT_DIR,
) -> dict[str, Any]:
    """Train an MLP on scikit-learn's digits; report held-out accuracy; plot learning curves.

    Returns a dict with the trained ``net``, the ``history``, the test
    ``accuracy`` and ``loss``, the most frequent ``confusions`` and ``figure``;
    an empty dict when scikit-learn is not installed.
    """
    k_data, k_init, k_fit = fb.random.split(fb.random.key(seed), 3)
    try:
        x_tr, x_te, t_tr, y_te = prepare(k_data, centred, smoothing)
    except ImportError:
        print('This example needs scikit-learn for its data: pip install -e ".[examples]"')
        return {}
    net = fb.mlp(k_init, [64, hidden, 10], hidden=fb.ReLU())
    steps = epochs * -(-len(x_tr) // batch_size)  # ceil: fit keeps the last, smaller batch
    optimizer = fb.optim.adam(fb.optim.schedules.cosine_decay(learning_rate, steps))
    print(f"digits: MLP 64-{hidden}-10, train on {len(x_tr)} images, test on {len(x_te)}\n")
    probe = fb.diagnostics(LOSS, x_tr[:256], t_tr[:256])  # per-layer norms into the History
    net, history = fb.fit(
        net, LOSS, x_tr, t_tr, optimizer=optimizer, epochs=epochs, batch_size=batch_size,
        key=k_fit, validation=(x_te, y_te), metrics=("accuracy",),
        callbacks=(print_epoch, probe) if verbose else (probe,), progress=False,
    )  # fmt: skip
    test = fb.evaluate(net, LOSS, x_te, y_te, metrics=("accuracy",))
    mistakes = confusions(net, x_te, y_te)
    wrong = round((1 - test["accuracy"]) * len(y_te))
    print(f"\ntest accuracy {test['accuracy']:.2%} ({wrong} of {len(y_te)} wrong)")
    print("most frequent mistakes:", ", ".join(f"{t} read as {p} ({n}x)" for (t, p), n in mistakes))
    figure = plot(history, hidden, smoothing, out_dir)
    return {"net": net, "history": history, "accuracy": test["accuracy"], "loss": test["loss"],
            "confusions": mistakes, "figure": figure}  # fmt: skip


if __name__ == "__main__":
    main()
