"""Exercise 1: train the notebook's AND network with ``fb.fit`` instead of a hand-written loop.

The notebook ends by asking for a ``fit`` method on its ``Network`` class. In
fnbp the network is an immutable record, so ``fit`` is a *function*: it takes
the parameters, a loss, the data and an optimizer, and returns new parameters
and a ``History`` of what happened::

    params, history = fb.fit(net, fb.binary_cross_entropy, x, y,
                             optimizer=fb.optim.sgd(1.0), epochs=1000,
                             batch_size=4, key=key, metrics=("accuracy",))

Inside it is the loop that ``and_gate.py`` writes by hand: for each minibatch
one forward and one backward pass (``fb.vjp``), then the optimizer turns the
gradients into a new record. With ``batch_size=4`` the minibatch is the whole
truth table, so one epoch is exactly one step of plain gradient descent, as in
the notebook. The ``key`` only shuffles the rows, which cannot change a
full-batch gradient (up to the order of a four-term sum).

``history.train_loss[e]`` is the mean loss seen *during* epoch ``e``, that is
before that epoch's step; the loss after the last step comes from
``fb.evaluate``. The network is the notebook's ``Dense(2, 1)`` then
``Sigmoid()`` with weights ``0.01 * N(0, 1)``, and the loss the notebook's
binary cross-entropy on probabilities. The learning rate is 1.0: fnbp's
gradients are exact (see ``and_gate.py`` for why the notebook's are four times
too small), and on this problem 1.0 is a fast, stable step (``learning_rates.py``
explores the others).

Run it with::

    python examples/fit_and.py

It takes about a second and saves ``examples/out/fit_and.png``, the loss curve
(if matplotlib is installed: ``pip install -e ".[examples]"``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from _plotting import pyplot, save  # examples/_plotting.py, beside this script

import fnbp as fb

OUT_DIR = Path(__file__).resolve().parent / "out"


def make_network(key: fb.random.Key) -> fb.Serial:
    """The notebook's network: ``Dense(2, 1)`` with weights ``0.01 * N(0, 1)``, then Sigmoid."""
    dense = fb.Dense.init(key, 2, 1, init="small_normal", dtype=np.float64)
    return fb.Serial((dense, fb.Sigmoid()))


def print_history(history: fb.History, every: int) -> None:
    """The loss and accuracy of every ``every``-th epoch (each one full-batch step)."""
    print(f"{'epoch':>6}  {'loss':>10}  {'accuracy':>8}")
    accuracy = history.train_metrics["accuracy"]
    for epoch, loss in enumerate(history.train_loss):
        if epoch % every == 0:
            print(f"{epoch:>6}  {loss:>10.6f}  {accuracy[epoch]:>8.0%}")


def print_predictions(x: np.ndarray, y: np.ndarray, p: np.ndarray) -> None:
    """One row per input: the two inputs, the target and the predicted probability."""
    print(f"{'x1':>4} {'x2':>4}  {'target':>6}  {'p(1)':>9}  label")
    for (x1, x2), target, prob, label in zip(x, y.ravel(), p.ravel(), fb.labels(p), strict=True):
        print(f"{x1:>4.0f} {x2:>4.0f}  {target:>6.0f}  {prob:>9.4g}  {label:>5}")


def plot_loss(history: fb.History, learning_rate: float, out_dir: str | Path) -> Path | None:
    """Save the training loss of every epoch, on a log scale, as ``fit_and.png``."""
    plt = pyplot()
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.2), layout="constrained")
    fb.plot.learning_curves(history, log=True, ax=ax)
    ax.axhline(np.log(2), color="gray", linestyle=":", label="log 2: always p = 0.5")
    ax.set(xlabel="epoch = one gradient step on all 4 rows", ylabel="binary cross-entropy")
    ax.set_title(f"AND gate, Dense(2, 1) + Sigmoid, fb.fit with sgd({learning_rate})")
    ax.legend()
    print()
    return save(plt, fig, out_dir, "fit_and.png")


def main(
    *,
    seed: int = 0,
    learning_rate: float = 1.0,
    epochs: int = 1000,
    out_dir: str | Path = OUT_DIR,
) -> dict[str, Any]:
    """Fit the AND gate with ``fb.fit``; print the history and predictions; plot the loss.

    Returns a dict with the trained ``params``, the ``history``, ``losses``
    (after 0, 1, ..., ``epochs`` steps), the final ``prediction``, ``loss`` and
    ``accuracy`` on the four rows, and ``figure`` (a path, or None without
    matplotlib).
    """
    k_init, k_fit = fb.random.split(fb.random.key(seed))
    x, y = fb.datasets.and_gate()
    net, loss = make_network(k_init), fb.binary_cross_entropy
    print(f"AND gate: fb.fit, sgd({learning_rate}), {epochs} epochs of one full batch\n")
    params, history = fb.fit(
        net, loss, x, y, optimizer=fb.optim.sgd(learning_rate), epochs=epochs,
        batch_size=len(x), key=k_fit, metrics=("accuracy",), progress=False,
    )  # fmt: skip
    print_history(history, every=max(epochs // 10, 1))
    final = fb.evaluate(params, loss, x, y, metrics=("accuracy",))
    last = f"{epochs:>6}  {final['loss']:>10.6f}  {final['accuracy']:>8.0%}"
    print(f"{last}   (after the last step)\n")
    prediction = fb.predict(params, x)
    print_predictions(x, y, prediction)
    losses = np.array([*history.train_loss, final["loss"]])
    return {
        "params": params,
        "history": history,
        "losses": losses,
        "prediction": prediction,
        "loss": final["loss"],
        "accuracy": final["accuracy"],
        "figure": plot_loss(history, learning_rate, out_dir),
    }


if __name__ == "__main__":
    main()
