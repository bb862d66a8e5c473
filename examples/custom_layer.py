"""Write your own layer: a PReLU with a learnable slope, outside the fnbp package.

fnbp has no registry and no base class you must inherit from. A layer is any
object with ``forward`` and ``vjp``; this is the whole contract:

1. **A frozen record.** Decorate the class with ``@attrs.frozen``. Arrays that
   training should change are declared with ``fb.param()``: they are the tree's
   leaves, stored read-only. Hyperparameters that must not be trained would be
   declared with ``fb.static(...)``; tree functions carry them over unchanged.
2. **``vjp(self, x, need_g_x=True) -> (y, pullback)``.** Compute the output
   ``y`` for the batch ``x`` (shape ``(N, features)``) and return it with a
   closure ``pullback(g_y) -> (g_x, grads)``, where ``g_y = dL/dy``:

   * ``g_x = dL/dx`` (the chain rule, for the layers before this one), or
     ``None`` when ``need_g_x`` is false: a first layer never needs it;
   * ``grads``: a record of *the same class* whose fields hold ``dL/dparam``,
     built with ``fb.replace(self, a=g_a)`` (``attrs.evolve``), so that
     ``fb.update(net, grads, learning_rate=...)`` is one map over two
     records of the same shape.

   The closure keeps whatever the backward pass reuses from the forward pass
   (here the negative part of ``x``), so a training step costs one forward pass.
3. **``forward(self, x) -> y``.** Subclassing ``fb.Layer`` supplies it from
   ``vjp``; override it when the output alone is cheaper to compute.
4. **Purity.** Never write into ``x``, ``g_y`` or a parameter; writing into a
   buffer the layer itself just allocated is fine.

That is all ``fb.forward``, ``fb.backward``, ``fb.vjp``, ``fb.Serial``,
``fb.update`` and ``fb.testing.check_grads`` rely on. This script

* checks the new layer's gradients against finite differences, alone and
  inside a network (``check_grads`` prints the worst relative error per leaf),
* trains ``Dense(1, 4) -> PReLU(4) -> Dense(4, 1)`` to fit ``y = |x|`` with the
  mean squared error (one PReLU unit with slope ``a = -1`` *is* ``|x|``), and
* shows that the slopes ``a`` moved away from their initial 0.25.

Run it with::

    python examples/custom_layer.py
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import numpy as np
from numpy.typing import DTypeLike

import fnbp as fb


@attrs.frozen
class PReLU(fb.Layer):
    """Parametric ReLU with one learnable slope per feature (He et al. 2015)::

        y = x          where x > 0
        y = a * x      where x <= 0

    Derivatives, written as ``y = max(x, 0) + a * min(x, 0)``::

        dy/dx = 1 where x > 0, else a
        dy/da = min(x, 0)

    so for a batch with upstream gradient ``g_y``::

        g_x = g_y * (1 where x > 0, else a)
        g_a = sum over the batch of g_y * min(x, 0)
    """

    a: np.ndarray = fb.param()  # shape (features,): a leaf, trained by fb.update

    @classmethod
    def init(cls, features: int, slope: float = 0.25, dtype: DTypeLike = np.float64) -> PReLU:
        """A layer for ``features`` inputs, every slope starting at ``slope``.

        Give it the dtype of the layers around it: a float64 slope times a
        float32 input would silently promote the output to float64.
        """
        return cls(np.full(features, slope, dtype=dtype))

    def vjp(self, x: np.ndarray, need_g_x: bool = True) -> tuple[np.ndarray, Callable]:
        """``(y, pullback)``: the output and a closure computing the gradients."""
        n = self.a.shape[0]
        if x.ndim != 2 or x.shape[1] != n:
            raise fb.ShapeError(f"PReLU({n}) expects input of shape (N, {n}), got {x.shape}")
        negative = np.minimum(x, 0.0)  # a new buffer; x itself is never written to
        y = np.maximum(x, 0.0)
        y += self.a * negative  # in place, but into the buffer we just made

        def pullback(g_y: np.ndarray) -> tuple[np.ndarray | None, PReLU]:
            g_a = (g_y * negative).sum(axis=0)
            g_x = np.where(x > 0, g_y, g_y * self.a) if need_g_x else None
            return g_x, fb.replace(self, a=g_a)  # grads: a PReLU record too

        return y, pullback


def make_data(key: fb.random.Key, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points ``x`` uniform on [-2, 2), shape ``(n, 1)``, and targets ``|x|``."""
    x = fb.random.uniform(key, (n, 1), -2.0, 2.0)
    return x, np.abs(x)


def make_network(key: fb.random.Key, width: int) -> fb.Serial:
    """``Dense(1, width), PReLU(width), Dense(width, 1)``, in float64."""
    k1, k2 = fb.random.split(key)
    return fb.Serial(
        (
            fb.Dense.init(k1, 1, width, dtype=np.float64),
            PReLU.init(width),  # our own layer, used like any built-in one
            fb.Dense.init(k2, width, 1, dtype=np.float64),
        )
    )


def check_gradients(key: fb.random.Key, net: fb.Serial) -> dict[str, fb.testing.GradCheck]:
    """Finite-difference checks of the layer alone and of the whole network."""
    k_check, k_x, k_data = fb.random.split(key, 3)
    layer = PReLU(np.array([0.25, -0.5, 1.5]))  # slopes of both signs and above 1
    x = fb.random.normal(k_x, (5, 3))
    # check_grads raises AssertionError with this same table if any leaf is off.
    return {
        "PReLU(3)": fb.testing.check_grads(layer, x, key=k_check),
        "network": fb.testing.check_grads(net, make_data(k_data, 8)[0], key=k_check),
    }


def train(
    net: fb.Serial, x: np.ndarray, y: np.ndarray, learning_rate: float, steps: int
) -> tuple[fb.Serial, list[tuple[int, float]]]:
    """Gradient descent on the mean squared error; ``(net, [(step, loss), ...])``."""
    log_every = max(steps // 6, 1)
    history = []
    for step in range(steps + 1):
        loss, grads = fb.value_and_grad(net, fb.mse, x, y)
        if step % log_every == 0 or step == steps:
            history.append((step, float(loss)))
        if step < steps:
            # grads.layers[1] is the PReLU record built by our pullback.
            net = fb.update(net, grads, learning_rate=learning_rate)
    return net, history


def _print_fit(net: fb.Serial) -> None:
    probe = np.array([[-2.0], [-1.0], [-0.5], [0.0], [0.5], [1.0], [2.0]])
    print(f"\n{'x':>6}  {'|x|':>6}  {'net(x)':>8}")
    for x, p in zip(probe.ravel(), fb.forward(net, probe).ravel(), strict=True):
        print(f"{x:>6.2f}  {abs(x):>6.2f}  {p:>8.4f}")


def main(
    *, seed: int = 0, width: int = 4, n: int = 64, learning_rate: float = 0.05, steps: int = 300
) -> dict[str, Any]:
    """Check PReLU's gradients, train a small network with it, return the results.

    Returns a dict with ``grad_checks`` (name -> ``GradCheck`` report),
    ``losses`` and ``steps`` (the training curve), ``slope_before`` and
    ``slope_after`` (the PReLU's ``a``) and the trained ``net``.
    """
    k_data, k_net, k_check = fb.random.split(fb.random.key(seed), 3)
    net0 = make_network(k_net, width)
    checks = check_gradients(k_check, net0)
    for name, report in checks.items():
        print(f"gradient check, {name}:\n{report}\n")

    x, y = make_data(k_data, n)
    net, history = train(net0, x, y, learning_rate, steps)
    print(f"{'step':>6}  {'mse':>10}")
    for step, loss in history:
        print(f"{step:>6}  {loss:>10.6f}")
    before, after = net0.layers[1].a, net.layers[1].a  # net0 is unchanged by training
    print(f"\nPReLU slopes a: {before} -> {np.round(after, 3)}")
    _print_fit(net)
    return {
        "grad_checks": checks,
        "losses": [loss for _, loss in history],
        "steps": [step for step, _ in history],
        "slope_before": before,
        "slope_after": after,
        "net": net,
    }


if __name__ == "__main__":
    main()
