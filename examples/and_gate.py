"""Learn the AND gate: the teaching notebook, done functionally.

The notebook ``backprop_with_numpy_notebook`` trains ``Dense(2, 1)`` followed by
``Sigmoid()`` on the AND truth table with binary cross-entropy, learning rate 0.1,
ten rounds of 10,000 gradient steps. This script does the same with fnbp, where

* the network is an immutable record (``Serial`` of ``Dense`` and ``Sigmoid``),
* ``fb.value_and_grad`` *returns* the loss and the gradients (nothing is stored
  in the layers), and
* ``fb.update(net, grads, learning_rate=...)`` returns a *new* network; the old
  one is untouched, so both runs below start from the very same ``net0``.

Why two runs? The notebook's gradients are four times too small. Its loss
gradient ``log_loss_prime`` already divides by the batch size N (the loss is a
mean), and then ``Dense.backward`` divides the weight and bias gradients by N a
second time (``input.T @ grad / N`` and ``grad.mean(axis=0)``). On this batch of
N = 4 its weights therefore move by ``0.1 / 4`` times the true gradient. fnbp's
gradients are exact, so

(a) at learning rate ``0.1 / 4 = 0.025`` fnbp retraces the notebook's run: the
    losses agree with the notebook's printout to three or four significant
    digits (the two runs start from different random weights of size 0.01,
    and the notebook takes one extra step per round, which does not matter at
    that precision), ending near 0.00693;
(b) at the notebook's nominal learning rate 0.1 the exact gradient trains four
    times faster: after 10,000 steps it has the loss the notebook reaches after
    40,000, and it ends near 0.0017.

Run it with::

    python examples/and_gate.py

It takes about 30 seconds on a 2-core machine (200,000 small gradient steps, about
150 us each: on a network this small a step is all Python); ``main(rounds=2)`` is
quicker.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import fnbp as fb

# The AND truth table, in the notebook's row order: inputs and targets.
X = np.array([[1.0, 1.0], [1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
Y = np.array([[1.0], [0.0], [0.0], [0.0]])

# What the notebook's own code prints after each round (np.random.seed(0),
# learning rate 0.1; its rounds end after 10,001, 20,002, ... steps).
NOTEBOOK_LOSSES = (
    0.06687091, 0.03468915, 0.02325193, 0.01744270, 0.01393988,
    0.01160144, 0.009931147, 0.008679195, 0.007706292, 0.006928712,
)  # fmt: skip
NOTEBOOK_STEPS_PER_ROUND = 10_000
NOTEBOOK_LEARNING_RATE = 0.1
BATCH_SIZE = len(X)


def make_network(key: fb.random.Key) -> fb.Serial:
    """The notebook's network: ``Dense(2, 1)`` with weights ``0.01 * N(0, 1)``, then Sigmoid."""
    dense = fb.Dense.init(key, 2, 1, init="small_normal", dtype=np.float64)
    return fb.Serial((dense, fb.Sigmoid()))


def loss_of(net: fb.Serial) -> float:
    """The notebook's loss: binary cross-entropy on probabilities, mean over the batch."""
    return float(fb.binary_cross_entropy(fb.forward(net, X), Y))


def accuracy(net: fb.Serial) -> float:
    """Fraction of rows where the prediction, thresholded at 0.5, equals the target."""
    return float(((fb.forward(net, X) > 0.5) == (Y > 0.5)).mean())


def train(net: fb.Serial, learning_rate: float, steps: int) -> fb.Serial:
    """``steps`` steps of plain gradient descent; returns the new network."""
    for _ in range(steps):
        # One forward and one backward pass. The gradient with respect to
        # the input X is never computed: training does not need it.
        _, grads = fb.value_and_grad(net, fb.binary_cross_entropy, X, Y)
        # A new record; the old `net` is not modified (its arrays are read-only).
        net = fb.update(net, grads, learning_rate=learning_rate)
    return net


def describe(net: fb.Serial) -> str:
    """A one-line summary such as ``Dense(2 -> 1), Sigmoid()``."""
    parts = [
        f"Dense({layer.W.shape[0]} -> {layer.W.shape[1]})"
        if isinstance(layer, fb.Dense)
        else f"{type(layer).__name__}()"
        for layer in net.layers
    ]
    return ", ".join(parts)


def _fmt(a: np.ndarray) -> str:
    return np.array2string(a.ravel(), precision=4, suppress_small=True)


def _print_header(show_notebook: bool) -> None:
    print(f"\n{'round':>5} {'steps':>8}  {'lr 0.025':>12}  {'lr 0.1':>12}", end="")
    print(f"  {'notebook (lr 0.1)':>18}" if show_notebook else "")
    print(f"{'':>14}  {'(= notebook)':>12}  {'(exact)':>12}")


def _print_row(i: int, steps: int, losses: list[float], show_notebook: bool) -> None:
    line = f"{i + 1:>5} {steps:>8}" + "".join(f"  {v:>12.6f}" for v in losses)
    if show_notebook and i < len(NOTEBOOK_LOSSES):
        line += f"  {NOTEBOOK_LOSSES[i]:>18.6f}"
    print(line)


def _result(net: fb.Serial, learning_rate: float, losses: list[float]) -> dict[str, Any]:
    prediction = fb.forward(net, X)
    print(f"  lr {learning_rate:<5}  prediction {_fmt(prediction)}")
    print(f"            loss {losses[-1]:.6f}   accuracy {accuracy(net):.0%}")
    return {
        "learning_rate": learning_rate,
        "losses": losses,
        "prediction": prediction,
        "accuracy": accuracy(net),
        "net": net,
    }


def main(*, seed: int = 0, rounds: int = 10, steps_per_round: int = 10_000) -> dict[str, Any]:
    """Train the AND gate twice from one initial net; return both runs.

    Returns a dict with ``initial_prediction``, ``initial_loss`` and two runs,
    ``"notebook"`` (learning rate 0.025: the notebook's effective step) and
    ``"exact"`` (learning rate 0.1 with exact gradients), each a dict with
    ``learning_rate``, ``losses`` (one per round), ``prediction``, ``accuracy``
    and the trained ``net``.
    """
    net0 = make_network(fb.random.key(seed))
    print(f"AND gate: {describe(net0)}, float64, weights 0.01 * N(0, 1)")
    print("\nbefore training")
    print(f"  prediction {_fmt(fb.forward(net0, X))}")
    print(f"  loss       {loss_of(net0):.6f}   (log 2 = {np.log(2):.6f})")

    # The notebook's Dense divides by the batch size twice, so its step is
    # learning_rate / N times the true gradient: lr 0.1 on N = 4 rows is 0.025.
    rates = {"notebook": NOTEBOOK_LEARNING_RATE / BATCH_SIZE, "exact": NOTEBOOK_LEARNING_RATE}
    # Both runs start from net0: nothing ever modifies it, so no copy is needed.
    nets = dict.fromkeys(rates, net0)
    losses: dict[str, list[float]] = {name: [] for name in rates}
    show_notebook = steps_per_round == NOTEBOOK_STEPS_PER_ROUND
    _print_header(show_notebook)
    for i in range(rounds):
        for name, rate in rates.items():
            nets[name] = train(nets[name], rate, steps_per_round)
            losses[name].append(loss_of(nets[name]))
        row = [losses[name][-1] for name in rates]
        _print_row(i, (i + 1) * steps_per_round, row, show_notebook)

    print("\nafter training")
    runs = {name: _result(nets[name], rates[name], losses[name]) for name in rates}
    print("\nAt lr 0.025 fnbp retraces the notebook, whose Dense divides by N = 4 twice;")
    print("at lr 0.1 the exact gradient takes steps four times as large, and trains faster.")
    return {"initial_prediction": fb.forward(net0, X), "initial_loss": loss_of(net0), **runs}


if __name__ == "__main__":
    main()
