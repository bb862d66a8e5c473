"""XOR: why a network needs a hidden layer.

The single layer that learns AND in ``and_gate.py``, ``Dense(2, 1)`` then
``Sigmoid()``, is a linear classifier: it predicts 1 exactly where
``x @ W + b > 0``, on one side of a straight line. XOR's two 1s sit on one
diagonal of the unit square and its two 0s on the other, and no straight
line separates them, so at best it gets 3 of the 4 rows right (75%). Worse,
the loss is convex in ``(W, b)`` and by symmetry its minimum is at ``W = 0,
b = 0``: gradient descent drives the model to predict 0.5 everywhere, with
loss ``log 2 = 0.693``, and which side of 0.5 each row lands on is rounding
noise (with the default seed it scores 25%).

A hidden layer of 8 ``Tanh`` units in between (``fb.mlp(key, [2, 8, 1],
hidden=fb.Tanh(), output=fb.Sigmoid())``) bends the decision boundary and
learns XOR to 100% in a few hundred steps. (With ``hidden=fb.ReLU()`` a few
seeds in twenty get stuck at 75%: units that are switched off for every row
get no gradient and never recover. Tanh has no such dead zone.)

Both models are trained the functional way: ``fb.value_and_grad`` returns
the loss and a gradient record, and ``fb.update`` returns a new network.

Run it with::

    python examples/xor.py
"""

from __future__ import annotations

from typing import Any

import numpy as np

import fnbp as fb

# The XOR truth table: inputs and targets.
X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
Y = np.array([[0.0], [1.0], [1.0], [0.0]])


def linear_model(key: fb.random.Key) -> fb.Serial:
    """The AND gate's model: one ``Dense(2, 1)`` and a ``Sigmoid``."""
    dense = fb.Dense.init(key, 2, 1, init="small_normal", dtype=np.float64)
    return fb.Serial((dense, fb.Sigmoid()))


def hidden_model(key: fb.random.Key, width: int) -> fb.Serial:
    """``Dense(2, width), Tanh(), Dense(width, 1), Sigmoid()``, Glorot-uniform weights."""
    return fb.mlp(key, [2, width, 1], hidden=fb.Tanh(), output=fb.Sigmoid(), dtype=np.float64)


def accuracy(net: fb.Serial) -> float:
    """Fraction of rows where the prediction, thresholded at 0.5, equals the target."""
    return float(((fb.forward(net, X) > 0.5) == (Y > 0.5)).mean())


def train(
    net: fb.Serial, learning_rate: float, steps: int, log_every: int
) -> tuple[fb.Serial, list[tuple[int, float]]]:
    """Gradient descent; returns the trained net and ``(step, loss)`` every ``log_every``."""
    history = []
    for step in range(steps + 1):
        loss, grads = fb.value_and_grad(net, fb.binary_cross_entropy, X, Y)
        if step % log_every == 0 or step == steps:
            history.append((step, float(loss)))
        if step < steps:
            net = fb.update(net, grads, learning_rate=learning_rate)  # a new record
    return net, history


def _summary(net: fb.Serial, history: list[tuple[int, float]]) -> dict[str, Any]:
    return {
        "losses": [loss for _, loss in history],
        "steps": [step for step, _ in history],
        "prediction": fb.forward(net, X),
        "accuracy": accuracy(net),
        "net": net,
    }


def _report(linear: dict[str, Any], hidden: dict[str, Any], width: int) -> None:
    print(f"\n{'step':>6}  {'linear loss':>12}  {'hidden loss':>12}")
    for step, a, b in zip(linear["steps"], linear["losses"], hidden["losses"], strict=True):
        print(f"{step:>6}  {a:>12.6f}  {b:>12.6f}")
    print(f"\n{'target':>28}  {Y.ravel()}")
    for name, run in (("Dense(2, 1)", linear), (f"Dense(2, {width}) Tanh Dense", hidden)):
        pred = np.array2string(run["prediction"].ravel(), precision=3, suppress_small=True)
        print(f"{name:>28}  {pred}   accuracy {run['accuracy']:.0%}")


def main(
    *, seed: int = 0, width: int = 8, learning_rate: float = 0.5, steps: int = 1000
) -> dict[str, Any]:
    """Train a linear model and a one-hidden-layer network on XOR; return both.

    Returns ``{"linear": ..., "hidden": ...}``, each a dict with ``losses`` (at
    ``steps``), ``prediction``, ``accuracy`` and the trained ``net``.
    """
    k_linear, k_hidden = fb.random.split(fb.random.key(seed))
    log_every = max(steps // 5, 1)
    print(f"XOR, {steps} steps of gradient descent at learning rate {learning_rate}")
    linear = _summary(*train(linear_model(k_linear), learning_rate, steps, log_every))
    hidden = _summary(*train(hidden_model(k_hidden, width), learning_rate, steps, log_every))
    _report(linear, hidden, width)
    print(f"\nlog 2 = {np.log(2):.6f}: the linear model is stuck at 'always 0.5'.")
    return {"linear": linear, "hidden": hidden}


if __name__ == "__main__":
    main()
