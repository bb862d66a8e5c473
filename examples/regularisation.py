"""Regularisation: one wide MLP trained with no regulariser, with Dropout, with weight decay.

A network with far more parameters than training points can learn the
training set by heart, noise included. Its training loss then keeps falling
while the loss on data it has not seen rises: it *overfits*. This script
makes that happen on purpose and then shows two ways to push back.

**Data.** ``fb.datasets.two_moons`` with 300 points and noise 0.3: the two
half-moons overlap, so some points lie deep in the other class's region and
no sensible boundary classifies them all. Half the points are held out for
validation (``train_test_split(..., test_fraction=0.5)``): 150 to train on,
150 to watch.

**Model.** ``fb.mlp(key, [2, 256, 256, 2])``: two ReLU layers of 256 units
and 2 logits, 67,074 parameters for 150 points. Trained with
``fb.optim.adamw`` at learning rate 0.003 (with ``weight_decay=0``, that is
Adam), minibatches of 32, for 200 epochs (1,000 steps). Three runs start
from the *same* initial weights and see the same minibatches:

* **none**: as above. The training loss falls towards 0; the validation
  loss is lowest within the first 50 epochs and then climbs, to 2 to 6
  times its minimum: the boundary bends around individual noisy points, and the
  network grows ever more confident, so every held-out point it gets wrong
  costs more and more.
* **Dropout(0.5)** after each hidden ReLU (``fb.Dropout`` has no
  parameters, so inserting it leaves the weights as they were). In training
  each hidden unit is zeroed with probability 0.5 at every step, so no unit
  can rely on particular others, and the network cannot memorise as easily.
  In inference (``fb.predict``, ``fb.evaluate``, validation) Dropout is the
  identity. It slows the overfitting down; it does not stop it.
* **Weight decay**: ``fb.optim.adamw(0.003, weight_decay=3.0)``. AdamW's decay
  is *decoupled*: every step, apart from Adam's move, each weight matrix is
  multiplied by ``1 - learning_rate * weight_decay = 0.991`` (biases are not
  decayed). Large weights, which a network needs to draw a sharp, wiggly
  boundary and to be very confident, cost a steady pull back to 0. The
  validation loss stays close to its minimum.

**Which training loss.** ``fit``'s ``history.train_loss`` is the mean loss
of the epoch's minibatches, computed in training mode while the weights
change. With Dropout that is the loss of randomly thinned networks, not of
the network you end up with, and it overstates the training loss. So a
callback (``callbacks=(track,)``) evaluates the whole training set in
inference mode after every epoch, exactly as the validation set is, and
returns the numbers, which join the History row as ``inference/loss``; the
figure (``fb.plot.learning_curves``) draws fit's number too, dotted, for the
Dropout run.

Over seeds 0 to 9 (seed = data, split, weights, masks, shuffling), at the
end of training, the gap ``validation loss - training loss`` is 0.28 to 1.98
without regularisation (0.67 on average), 0.09 to 0.78 with Dropout (0.25)
and 0.00 to 0.15 with weight decay (0.06): on every seed it is smaller with
Dropout than without, and smaller still with weight decay. Unregularised,
the final validation loss is 1.9 to 6.3 times its minimum; with weight
decay, 1.03 to 1.13 times. Held-out *accuracy* moves much less, 85% to 93%
in all three cases (88.5%, 89.3% and 89.9% on average): overfitting shows
first as overconfidence.

Early stopping is a third regulariser: with ``fb.fit(..., patience=20)``
the first run stops 20 epochs after its validation minimum (at epoch 36 for
seed 0) and returns the weights from there. The figure marks that minimum.

Run it with::

    python examples/regularisation.py

It takes about 5 seconds on a quiet machine (on a busy one, OpenBLAS's
threads can make it many times slower; ``OPENBLAS_NUM_THREADS=1`` helps) and
saves ``examples/out/regularisation.png``: the three runs' training and
validation losses, side by side.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from _plotting import pyplot, save  # examples/_plotting.py, beside this script

import fnbp as fb

OUT_DIR = Path(__file__).resolve().parent / "out"
LOSS = fb.softmax_cross_entropy


def data(key: fb.random.Key, n: int, noise: float) -> tuple[np.ndarray, ...]:
    """Noisy two moons, half held out: ``x_train, x_val, y_train, y_val``."""
    k_data, k_split = fb.random.split(key)
    x, y = fb.datasets.two_moons(k_data, n, noise=noise)
    return fb.datasets.train_test_split(k_split, x, y, test_fraction=0.5)


def model(key: fb.random.Key, sizes: list[int], dropout: float) -> fb.Serial:
    """``fb.mlp(key, sizes)`` with ``Dropout(dropout)`` after every hidden ReLU (if > 0)."""
    net = fb.mlp(key, sizes)
    if not dropout:
        return net
    layers: list[Any] = []
    for layer in net.layers:
        layers.append(layer)
        if isinstance(layer, fb.ReLU):
            layers.append(fb.Dropout(dropout))
    return fb.Serial(tuple(layers))  # the same weights, two Dropout layers more


def tracker(x: np.ndarray, y: np.ndarray) -> Callable:
    """A ``fit`` callback evaluating ``(x, y)`` in inference mode after each epoch; its numbers
    join the History row as ``inference/loss`` and ``inference/accuracy``."""

    def track(ts: fb.TrainState, logs: dict) -> dict[str, float]:
        scores = fb.evaluate(ts, LOSS, x, y, metrics=("accuracy",))
        return {f"inference/{name}": value for name, value in scores.items()}

    return track


def train(
    splits: tuple[np.ndarray, ...], key: fb.random.Key, *, sizes: list[int], dropout: float,
    weight_decay: float, learning_rate: float, epochs: int, batch_size: int,
) -> dict[str, Any]:  # fmt: skip
    """One run; returns its per-epoch losses (training set in inference mode) and final numbers."""
    x_tr, x_val, y_tr, y_val = splits
    k_init, k_fit = fb.random.split(key)
    net, history = fb.fit(
        model(k_init, sizes, dropout), LOSS, x_tr, y_tr,
        optimizer=fb.optim.adamw(learning_rate, weight_decay=weight_decay), epochs=epochs,
        batch_size=batch_size, key=k_fit, validation=(x_val, y_val), metrics=("accuracy",),
        callbacks=(tracker(x_tr, y_tr),), progress=False,
    )  # fmt: skip
    train_loss = np.array(history.column("inference/loss"))
    val_loss = np.array(history.val_loss)
    return {
        "net": net, "history": history, "train_loss": train_loss, "val_loss": val_loss,
        "fit_train_loss": np.array(history.train_loss),
        "train_accuracy": history.column("inference/accuracy")[-1],
        "val_accuracy": history.val_metrics["accuracy"][-1],
        "gap": float(val_loss[-1] - train_loss[-1]), "best_epoch": int(val_loss.argmin()) + 1,
    }  # fmt: skip


def report(runs: dict[str, dict[str, Any]]) -> None:
    """One line per run: final losses, their gap, accuracies, and the validation minimum."""
    print(f"\n{'':>13}  {'train loss':>10} {'val loss':>9} {'gap':>6}  {'train acc':>9} "
          f"{'val acc':>8}  lowest val loss (epoch)")  # fmt: skip
    for name, run in runs.items():
        best = run["best_epoch"]
        print(f"{name:>13}  {run['train_loss'][-1]:>10.4f} {run['val_loss'][-1]:>9.4f} "
              f"{run['gap']:>6.3f}  {run['train_accuracy']:>9.1%} {run['val_accuracy']:>8.1%}  "
              f"{run['val_loss'][best - 1]:.4f} ({best})")  # fmt: skip


def _panel(ax: Any, title: str, run: dict[str, Any]) -> None:
    names = {"inference/loss": "training set", "val_loss": "validation set"}
    if "Dropout" in title:
        names["loss"] = "training, dropout on\n(fit's history.train_loss)"
    fb.plot.learning_curves(run["history"], names, log=True, ax=ax)
    if "Dropout" in title:
        ax.get_lines()[-1].set(linestyle=":", color="tab:blue", linewidth=1)
    best = run["best_epoch"]
    ax.axvline(best, color="gray", ls="--", lw=1, label=f"lowest validation loss ({best})")
    ax.set_title(f"{title}\nfinal gap val - train = {run['gap']:.2f}")
    ax.legend(fontsize="small", loc="lower left")


def plot(runs: dict[str, dict[str, Any]], titles: dict[str, str],
         out_dir: str | Path) -> Path | None:  # fmt: skip
    """Save the runs' loss curves side by side as ``regularisation.png``; return its path."""
    plt = pyplot()
    if plt is None:
        return None
    fig, axes = plt.subplots(1, len(runs), figsize=(4.2 * len(runs), 4.4), sharey=True,
                             layout="constrained")  # fmt: skip
    for ax, (name, run) in zip(np.atleast_1d(axes), runs.items(), strict=True):
        _panel(ax, titles[name], run)
    np.atleast_1d(axes)[0].set_ylabel("softmax cross-entropy (log scale)")
    fig.suptitle("MLP 2-256-256-2 on 150 noisy two-moons points: losses after each epoch, "
                 "in inference mode")  # fmt: skip
    print()
    return save(plt, fig, out_dir, "regularisation.png")


def main(
    *,
    seed: int = 0,
    n: int = 300,
    noise: float = 0.3,
    width: int = 256,
    dropout: float = 0.5,
    weight_decay: float = 3.0,
    learning_rate: float = 3e-3,
    epochs: int = 200,
    batch_size: int = 32,
    out_dir: str | Path = OUT_DIR,
) -> dict[str, Any]:
    """Train the same MLP three ways (none, Dropout, weight decay); report and plot the losses.

    Returns ``{"none": ..., "dropout": ..., "weight_decay": ..., "figure": path}``;
    each run is a dict with the trained ``net``, the ``history``, per-epoch
    ``train_loss`` (the training set in inference mode) and ``val_loss``,
    ``fit_train_loss`` (fit's own, in training mode), the final
    ``train_accuracy``, ``val_accuracy`` and ``gap`` (final validation minus
    training loss), and ``best_epoch`` (1-based, lowest validation loss).
    """
    k_data, k_run = fb.random.split(fb.random.key(seed))
    splits = data(k_data, n, noise)
    settings = {"none": (0.0, 0.0), "dropout": (dropout, 0.0), "weight_decay": (0.0, weight_decay)}
    titles = {"none": "No regularisation", "dropout": f"Dropout({dropout}) after each ReLU",
              "weight_decay": f"AdamW, weight_decay={weight_decay}"}  # fmt: skip
    print(f"two moons, noise {noise}: {len(splits[0])} training and {len(splits[1])} validation "
          f"points; MLP 2-{width}-{width}-2, {epochs} epochs")  # fmt: skip
    runs = {
        name: train(splits, k_run, sizes=[2, width, width, 2], dropout=p, weight_decay=wd,
                    learning_rate=learning_rate, epochs=epochs, batch_size=batch_size)
        for name, (p, wd) in settings.items()
    }  # fmt: skip
    report(runs)
    return {**runs, "figure": plot(runs, titles, out_dir)}


if __name__ == "__main__":
    main()
