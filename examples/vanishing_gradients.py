"""Why gates exist: how far back a gradient reaches in an RNN, an LSTM and a GRU.

**The task** is the adding problem (Hochreiter & Schmidhuber, 1997): each
sequence has ``T`` steps of two features, a number ``u_t`` drawn from
``U(0, 1)`` and a marker ``m_t`` that is 1 at exactly two steps, one in the
first half and one in the second. The target is the sum of the two marked
numbers, ``sum_t u_t m_t``. Predicting its mean, 1, everywhere gives a mean
squared error of ``Var(u_1 + u_2) = 2/12 = 0.167``: to do better, a network
must carry the first marked number across at least ``T/2`` steps.

**The networks**: ``Recurrent(cell, return_sequences=False)`` reads the
sequence and a ``Dense(H, 1)`` maps its last state to the prediction, for a
tanh ``RNNCell``, an ``LSTMCell`` and a ``GRUCell`` of the same size, trained
with Adam (learning rate 0.01, gradients clipped to norm 1) on the MSE.

**The picture** is the gradient of that late loss with respect to each input,
``|dL/dx_t|`` (averaged over 256 test sequences), divided by its value at the
last step, against the number of steps back from the end. Backpropagation
through time multiplies the gradient by one Jacobian per step: for the RNN
``diag(1 - h_t^2) W_h^T``, a contraction, so the gradient shrinks
geometrically (``docs/derivations/recurrent.md``); at initialisation all
three cells are like this. What differs is what training can do about it.
The LSTM's cell state is updated *additively*, ``c_t = f * c_{t-1} + i * g``,
so its gradient is carried back by the forget gates alone, ``g_c_{t-1} = g_c_t
* f_t``; the GRU's ``h_t = (1 - z) n + z h_{t-1}`` has the same direct path,
scaled by ``z``. Gradient descent learns to hold ``f`` (or ``z``) near 1,
the path opens, and the first half of the sequence starts to matter. The
RNN has no such path: the signal from step 1 arrives 1e-14 times weaker than
the one from step ``T``, so nothing teaches it to remember, and its error
stays at the baseline.

Results of the default run (``T = 50``, ``H = 32``, 2,000 steps of 64 sequences,
seed 0), test MSE on 1,000 fresh sequences::

    cell       params  |dL/dx_1| / |dL/dx_T|      test MSE   (baseline 0.167)
                       at init    trained
    RNNCell     1,185   1e-14      3e-27         0.173
    LSTMCell    4,641   1e-09      6e-01         0.0002
    GRUCell     3,489   1e-10      5e-01         0.0001

The RNN's gradient from the first step is 1e-14 of the last step's at
initialisation and smaller still after training; the LSTM's and the GRU's
rise from 1e-9 and 1e-10 to about one half, and their errors fall a
thousandfold below the baseline.

Run it with::

    python examples/vanishing_gradients.py

It takes a minute or two (17, 45 and 63 s for the three cells on a busy
2-core machine; set ``OPENBLAS_NUM_THREADS=1`` there) and saves
``examples/out/vanishing_gradients.png``: the gradient profiles before and
after training, and the learning curves.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from _plotting import pyplot, save  # examples/_plotting.py, beside this script

import fnbp as fb

OUT_DIR = Path(__file__).resolve().parent / "out"
CELLS = (fb.RNNCell, fb.LSTMCell, fb.GRUCell)
BASELINE = 2.0 / 12.0  # the MSE of always predicting the mean sum, 1


def adding_problem(key: fb.random.Key, n: int, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` sequences ``(n, steps, 2)`` of ``(u_t, m_t)`` and their targets ``(n, 1)``."""
    rng = fb.random.generator(key)
    u = rng.random((n, steps), dtype=np.float32)
    marks = np.zeros((n, steps), np.float32)
    rows = np.arange(n)
    marks[rows, rng.integers(0, steps // 2, n)] = 1.0  # one in the first half
    marks[rows, rng.integers(steps // 2, steps, n)] = 1.0  # one in the second
    return np.stack((u, marks), axis=-1), (u * marks).sum(axis=1, keepdims=True)


def model(key: fb.random.Key, cell: type, hidden: int) -> fb.Serial:
    """``Recurrent(cell)`` to its last state, then ``Dense(hidden, 1)``."""
    k_cell, k_out = fb.random.split(key)
    recurrent = fb.Recurrent(cell.init(k_cell, 2, hidden), return_sequences=False)
    return fb.Serial((recurrent, fb.Dense.init(k_out, hidden, 1)))


def gradient_profile(net: fb.Serial, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``|dL/dx_t|`` for every step ``t`` (mean over the batch), divided by its value at
    the last step: how much each input is heard by the loss at the end."""
    pred, pullback = fb.vjp(net, x)
    _, g_pred = fb.mse.value_and_grad(pred, y)
    g_x, _ = pullback(g_pred)
    norms = np.sqrt(np.square(g_x.astype(np.float64)).sum(axis=-1)).mean(axis=0)
    return norms / norms[-1]


def train(
    net: fb.Serial, data: tuple, steps: int, batch_size: int, key: fb.random.Key
) -> tuple[fb.Serial, fb.History]:
    """Adam 0.01 with gradients clipped to norm 1, ``steps`` minibatches; 10 rounds of logs."""
    optimizer = fb.optim.chain(fb.optim.clip_by_global_norm(1.0), fb.optim.adam(1e-2))
    return fb.fit(
        net, fb.mse, *data, optimizer=optimizer, steps=steps, batch_size=batch_size, key=key,
        eval_every=max(1, steps // 10), progress=False,
    )  # fmt: skip


def run_cell(cell: type, train_data: tuple, test_data: tuple, options: dict) -> dict[str, Any]:
    """Train one network; its gradient profiles before and after, and its test MSE."""
    k_init, k_fit = fb.random.split(fb.random.key(options["seed"]))
    net = model(k_init, cell, options["hidden"])
    probe = (test_data[0][:256], test_data[1][:256])
    before = gradient_profile(net, *probe)
    start = time.perf_counter()
    net, history = train(net, train_data, options["steps"], options["batch_size"], k_fit)
    seconds = time.perf_counter() - start
    return {
        "params": sum(leaf.size for leaf in fb.tree.leaves(net)),
        "before": before,
        "after": gradient_profile(net, *probe),
        "mse": fb.evaluate(net, fb.mse, *test_data)["loss"],
        "history": history,
        "seconds": seconds,
    }


def print_table(results: dict[str, dict]) -> None:
    """One row per cell: size, gradient ratio first/last step before and after, test MSE."""
    print(
        f"\n{'cell':<10} {'params':>6}  |dL/dx_1| / |dL/dx_T|   test MSE  (baseline {BASELINE:.3f})"
    )
    print(f"{'':<10} {'':>6}  {'at init':>9} {'trained':>9}")
    for name, r in results.items():
        print(f"{name:<10} {r['params']:>6,}  {r['before'][0]:>9.0e} {r['after'][0]:>9.0e}"
              f"   {r['mse']:.4f}   ({r['seconds']:.0f} s)")  # fmt: skip


def plot(results: dict[str, dict], seq_len: int, out_dir: str | Path) -> Path | None:
    """The gradient profiles (init dashed, trained solid) and the learning curves."""
    plt = pyplot()
    if plt is None:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    back = np.arange(seq_len)[::-1]  # steps before the end, for t = 1..T
    for (name, r), color in zip(results.items(), ("C3", "C0", "C2"), strict=False):
        left.plot(back, r["before"], "--", color=color, alpha=0.6, label=f"{name}, at init")
        left.plot(back, r["after"], "-", color=color, label=f"{name}, trained")
        steps = r["history"].column("step")
        right.plot(steps, r["history"].train_loss, "o-", color=color, label=name)
    left.set(yscale="log", xlabel="steps before the end (t = T - k)",
             ylabel="|dL/dx_t| / |dL/dx_T|", title="How far back the gradient reaches")  # fmt: skip
    left.axvline(seq_len // 2, color="gray", linestyle=":", label="first marker is before this")
    right.axhline(BASELINE, color="gray", linestyle=":", label="predict the mean (0.167)")
    right.set(yscale="log", xlabel="training step", ylabel="training MSE",
              title="Learning the adding problem")  # fmt: skip
    for ax in (left, right):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle(f"Adding problem, T = {seq_len}: gates let the gradient through")
    return save(plt, fig, out_dir, "vanishing_gradients.png")


def main(
    *,
    seed: int = 0,
    seq_len: int = 50,
    hidden: int = 32,
    steps: int = 2000,
    batch_size: int = 64,
    train_size: int = 10_000,
    cells: Sequence[type] = CELLS,
    out_dir: str | Path = OUT_DIR,
) -> dict[str, Any]:
    """Train each cell on the adding problem; tabulate and plot the gradient profiles.

    Returns ``{"results": {cell name: {"params", "before", "after", "mse",
    "history", "seconds"}}, "figure": path or None}``; ``before`` and
    ``after`` are the gradient profiles (length ``seq_len``) at initialisation
    and after training.
    """
    k_train, k_test = fb.random.split(fb.random.key(seed + 100))
    train_data = adding_problem(k_train, train_size, seq_len)
    test_data = adding_problem(k_test, 1000, seq_len)
    options = {"seed": seed, "hidden": hidden, "steps": steps, "batch_size": batch_size}
    print(f"adding problem: T = {seq_len}, H = {hidden}, {steps} steps of {batch_size}")
    results = {cell.__name__: run_cell(cell, train_data, test_data, options) for cell in cells}
    print_table(results)
    return {"results": results, "figure": plot(results, seq_len, out_dir)}


if __name__ == "__main__":
    main()
