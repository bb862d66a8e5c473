"""Sigmoid + cross-entropy: where the chain rule collapses to ``p - y``.

The notebook's AND network ends in a Sigmoid, ``p = sigmoid(z)``, and its
loss is binary cross-entropy on ``p``. Backpropagation by the book takes two
steps back from the loss:

    dL/dp = (p - y) / (p (1 - p)) / N        the loss's own gradient
    dL/dz = dL/dp * p (1 - p)                the Sigmoid's backward pass

and the ``p (1 - p)`` cancels: ``dL/dz = (p - y) / N``. ``fb.value_and_grad``
knows it: the pair (``Sigmoid``, ``BinaryCrossEntropy``) is in its one table of
fused pairs, ``fb.FUSIONS``, so the backward pass starts from ``(p - y) / N``.
This script does both by hand and shows that they agree.

They part only where ``p`` saturates. The loss clips ``p`` to ``[eps, 1 - eps]``
so that ``log p`` stays finite; at ``z = -60`` the Sigmoid gives
``p = 8.8e-27``, far below ``eps = 2.2e-16``: the clipped loss no longer sees
``p`` move, and the two-step product is about ``1e-11`` while ``p - y`` would
say ``-1``. fnbp keeps the two-step answer there, so a saturated unit is stuck
either way -- which is why ``fb.sigmoid_binary_cross_entropy`` on logits
(exact everywhere) is the better loss for new code.

Run it with::

    python examples/chain_rule_collapse.py
"""

from __future__ import annotations

from typing import Any

import numpy as np

import fnbp as fb

X = np.array([[1.0, 1.0], [1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
Y = np.array([[1.0], [0.0], [0.0], [0.0]])


def two_step(net: fb.Serial, x: np.ndarray, y: np.ndarray) -> tuple[float, fb.Serial]:
    """The chain rule by the book: the loss's gradient, then every layer's backward pass."""
    p, pullback = fb.vjp(net, x, need_g_x=False)
    value, g_p = fb.binary_cross_entropy.value_and_grad(p, y)
    return float(value), pullback(g_p)[1]


def collapsed(net: fb.Serial, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """``dL/dz = (p - y) / N`` written out, with ``z`` the Sigmoid's input."""
    z = fb.forward(fb.Serial(net.layers[:-1]), x)
    p = fb.forward(fb.Sigmoid(), z)
    return float(fb.binary_cross_entropy(p, y)), (p - y) / y.size


def main(seed: int = 0) -> dict[str, Any]:
    dense = fb.Dense.init(fb.random.key(seed), 2, 1, dtype=np.float64)
    net = fb.Serial((dense, fb.Sigmoid()))
    print(f"AND network, p = sigmoid(x @ W + b), binary cross-entropy, seed {seed}\n")

    value_2, grads_2 = two_step(net, X, Y)
    value_1, g_z = collapsed(net, X, Y)
    value, grads = fb.value_and_grad(net, fb.binary_cross_entropy, X, Y)
    print("dL/dz = (p - y) / N:", np.round(g_z.ravel(), 6))
    print(
        f"loss: two-step {value_2:.12f}, by hand {value_1:.12f}, value_and_grad {float(value):.12f}"
    )
    rows = [("two-step", grads_2), ("value_and_grad", grads)]
    for name, g in rows:
        print(f"  {name:15s} g_W = {np.round(g.layers[0].W.ravel(), 8)}  g_b = {g.layers[0].b}")
    W_from_g_z = X.T @ g_z
    print(f"  {'X.T @ (p - y)/N':15s} g_W = {np.round(W_from_g_z.ravel(), 8)}")
    agree = fb.tree.allclose(grads, grads_2, rtol=1e-12, atol=1e-15)
    print(f"same gradients to 1e-12: {agree}\n")

    saturated = fb.Serial((fb.Dense(dense.W, np.array([-60.0])), fb.Sigmoid()))
    _, grads_sat = fb.value_and_grad(saturated, fb.binary_cross_entropy, X, Y)
    p_sat = fb.forward(saturated, X)
    _, grads_logits = fb.value_and_grad(
        fb.Serial(saturated.layers[:1]), fb.sigmoid_binary_cross_entropy, X, Y
    )
    print("bias -60: p =", p_sat.ravel(), " (clipped to eps inside the loss)")
    print("  value_and_grad g_b =", grads_sat.layers[0].b, " -- the two-step answer: stuck")
    print("  (p - y) / N would give", ((p_sat - Y) / Y.size).sum())
    print("  the loss on logits gives", grads_logits.layers[0].b, " -- it can still learn")
    return {
        "value": float(value),
        "value_two_step": value_2,
        "agree": agree,
        "g_z": g_z,
        "grads": grads,
        "saturated_g_b": float(grads_sat.layers[0].b[0]),
        "logits_g_b": float(grads_logits.layers[0].b[0]),
    }


if __name__ == "__main__":
    main()
