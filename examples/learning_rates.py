"""Exercise 2: experiment with the learning rate and the number of iterations.

The notebook trains its AND network at one learning rate for a fixed number of
steps and asks what happens with others. This script trains the same network
(``Dense(2, 1)`` then ``Sigmoid()``, the notebook's binary cross-entropy,
plain gradient descent on the full batch of four rows) from the *same* initial
record at learning rates 0.01, 0.1, 1, 10 and 100, for up to 3,000 steps, and
prints the loss after 1, 10, 100, 1,000 and 3,000 steps. What it shows:

* **Too slow (0.01, 0.1).** While the step is small, gradient descent follows
  the gradient flow, and only the product ``learning_rate * steps`` matters:
  0.01 for 1,000 steps, 0.1 for 100 and 1 for 10 all end at a loss of 0.46.
  On the log-scaled step axis the curves are the same curve, shifted. At 0.01
  the loss is still 0.3 after 3,000 steps.
* **Fast (1, 10).** Ten times the rate is ten times fewer steps. At 10 the
  first steps *overshoot*: the loss rises above its starting value log 2 for a
  few steps (near the start the loss curves so that steps above ``2 / 0.398 =
  5`` overshoot: 0.398 is the largest eigenvalue of its Hessian there), then
  falls faster than at any smaller rate, because the loss of logistic
  regression flattens as the weights grow, so a step that is too big at the
  start is not too big later.
* **Diverges (100).** The first two steps overshoot so far that the bias ends
  at -62.5: the network predicts ``p = 7e-28`` for every row, right for three
  of them and wrong for ``(1, 1)``. The probability-space cross-entropy clips
  ``p`` at the machine epsilon, so that row costs ``-log(eps) = 36`` and the
  loss sits at ``36 / 4 = 9.01`` for good: what comes back through the
  sigmoid's slope ``p (1 - p) = 7e-28`` is a gradient of ``-8e-13``, a step of
  ``1e-10`` at this rate. Nothing is NaN, so ``fb.fit`` does not raise; the
  run is silently stuck.

The cure for the last one is the loss on logits: ``Dense(2, 1)`` alone with
``fb.sigmoid_binary_cross_entropy``, whose gradient ``sigmoid(z) - y`` never
vanishes on a wrong answer. The script re-runs every stuck rate that way; at
100 it trains to a loss of about 3e-6.

Run it with::

    python examples/learning_rates.py

It takes a few seconds and saves ``examples/out/learning_rates.png``: the loss
curves, and the loss after a given number of steps against the learning rate.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from _plotting import pyplot, save  # examples/_plotting.py, beside this script

import fnbp as fb

OUT_DIR = Path(__file__).resolve().parent / "out"
LEARNING_RATES = (0.01, 0.1, 1.0, 10.0, 100.0)
TARGET_LOSS = 0.1  # "steps to reach" in the table: the first step with a loss below this


def make_dense(key: fb.random.Key) -> fb.Dense:
    """The notebook's ``Dense(2, 1)``, weights ``0.01 * N(0, 1)``."""
    return fb.Dense.init(key, 2, 1, init="small_normal", dtype=np.float64)


def run(net: Any, loss: fb.Loss, learning_rate: float, steps: int) -> tuple[np.ndarray, fb.History]:
    """The loss after 0, 1, ..., ``steps`` full-batch gradient steps from ``net``; the History."""
    x, y = fb.datasets.and_gate()
    params, history = fb.fit(
        net, loss, x, y, optimizer=fb.optim.sgd(learning_rate), epochs=steps,
        batch_size=len(x), key=fb.random.key(0), progress=False,
    )  # fmt: skip
    # train_loss[k] is measured during epoch k, before its step: after k steps.
    return np.array([*history.train_loss, fb.evaluate(params, loss, x, y)["loss"]]), history


def loss_curve(net: Any, loss: fb.Loss, learning_rate: float, steps: int) -> np.ndarray:
    """The loss after 0, 1, ..., ``steps`` full-batch gradient steps from ``net``."""
    return run(net, loss, learning_rate, steps)[0]


def checkpoints(steps: int) -> list[int]:
    """1, 10, 100, ... up to ``steps``, and ``steps`` itself."""
    marks = [10**k for k in range(len(str(steps))) if 10**k < steps]
    return [*marks, steps]


def steps_to(curve: np.ndarray, target: float) -> int | None:
    """The first step count after which the loss is below ``target``, or None."""
    below = np.flatnonzero(curve < target)
    return int(below[0]) if below.size else None


def print_table(rates: Sequence[float], grid: np.ndarray, marks: list[int], reach: list) -> None:
    """Loss after each checkpoint, one row per learning rate."""
    print(f"{'lr':>7}" + "".join(f"{f'after {m}':>12}" for m in marks), end="")
    print(f"  steps to loss < {TARGET_LOSS}")
    for lr, row, r in zip(rates, grid, reach, strict=True):
        cells = "".join(f"{v:>12.4g}" for v in row)
        print(f"{lr:>7g}{cells}  {'never' if r is None else r:>19}")


def rescue(net: Any, rates: Sequence[float], curves: np.ndarray, steps: int) -> dict[float, float]:
    """Re-run the rates that ended above log 2 on logits; their final losses."""
    stuck = [lr for lr, c in zip(rates, curves, strict=True) if c[-1] > np.log(2)]
    logits = fb.Serial((net.layers[0],))  # the same Dense, without the Sigmoid
    out = {lr: float(loss_curve(logits, fb.sigmoid_binary_cross_entropy, lr, steps)[-1])
           for lr in stuck}  # fmt: skip
    for lr, value in out.items():
        print(f"lr {lr:g} is stuck at {curves[rates.index(lr)][-1]:.4g}; on logits with "
              f"sigmoid_binary_cross_entropy it ends at {value:.3g}")  # fmt: skip
    return out


def _shades(n: int) -> list:
    """``n`` colours from dark to light (viridis), unlike the per-rate colours."""
    from matplotlib import colormaps

    return [colormaps["viridis"](t) for t in np.linspace(0.0, 0.85, n)]


def _draw_curves(ax: Any, rates: Sequence[float], histories: Sequence[fb.History]) -> None:
    runs = {f"lr = {lr:g}": h for lr, h in zip(rates, histories, strict=True)}
    fb.plot.learning_curves(runs, log="xy", ax=ax)
    ax.axhline(np.log(2), color="gray", linestyle=":", label="log 2 (start)")
    ax.set(xlabel="epoch = gradient step (log scale)", ylabel="binary cross-entropy (log scale)")
    ax.set_title("Loss curves")
    ax.legend(fontsize="small")


def _draw_grid(ax: Any, rates: Sequence[float], grid: np.ndarray, marks: list[int]) -> None:
    for j, (m, color) in enumerate(zip(marks, _shades(len(marks)), strict=True)):
        label = f"after {m} step{'s' * (m > 1)}"
        ax.plot(rates, grid[:, j], marker="o", color=color, label=label)
    ax.set(xscale="log", yscale="log", xlabel="learning rate (log scale)")
    ax.set(ylabel="binary cross-entropy (log scale)", title="Loss against learning rate")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize="small")


def plot(rates: Sequence[float], histories: Sequence[fb.History], grid: np.ndarray,
         marks: list[int], out_dir: str | Path) -> Path | None:  # fmt: skip
    """Save both panels as ``learning_rates.png``; return its path (None without matplotlib)."""
    plt = pyplot()
    if plt is None:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.4), layout="constrained")
    _draw_curves(left, rates, histories)
    _draw_grid(right, rates, grid, marks)
    fig.suptitle("AND gate, Dense(2, 1) + Sigmoid, full-batch gradient descent")
    print()
    return save(plt, fig, out_dir, "learning_rates.png")


def main(
    *,
    seed: int = 0,
    learning_rates: Sequence[float] = LEARNING_RATES,
    steps: int = 3000,
    out_dir: str | Path = OUT_DIR,
) -> dict[str, Any]:
    """Train the AND gate at each learning rate from one initial net; tabulate and plot.

    Returns a dict with ``learning_rates``, ``checkpoints`` (step counts),
    ``losses`` (an array of shape ``(len(learning_rates), len(checkpoints))``:
    the loss after that many steps), ``curves`` (shape ``(len(learning_rates),
    steps + 1)``), ``steps_to_target`` (first step with a loss below
    ``TARGET_LOSS``, or None, per rate), ``rescued`` (final logits-loss per
    stuck rate) and ``figure``.
    """
    rates = list(learning_rates)
    net = fb.Serial((make_dense(fb.random.key(seed)), fb.Sigmoid()))
    print(f"AND gate, full-batch gradient descent, {steps} steps from one initial net\n")
    runs = [run(net, fb.binary_cross_entropy, lr, steps) for lr in rates]
    curves = np.array([curve for curve, _ in runs])
    marks = checkpoints(steps)
    grid = curves[:, marks]
    reach = [steps_to(c, TARGET_LOSS) for c in curves]
    print_table(rates, grid, marks, reach)
    print()
    rescued = rescue(net, rates, curves, steps)
    return {
        "learning_rates": rates,
        "checkpoints": marks,
        "losses": grid,
        "curves": curves,
        "steps_to_target": reach,
        "rescued": rescued,
        "figure": plot(rates, [h for _, h in runs], grid, marks, out_dir),
    }


if __name__ == "__main__":
    main()
