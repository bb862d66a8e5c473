"""Exercise 3: the AND network is still a linear model; plot its decision border.

The network is ``Dense(2, 1)`` then ``Sigmoid()``::

    p(x) = sigmoid(z),   z = w1 * x1 + w2 * x2 + b

The sigmoid is strictly increasing and ``sigmoid(0) = 0.5``, so ``p > 0.5``
exactly where ``z > 0``: the decision border ``p = 0.5`` is the straight line
``w1 * x1 + w2 * x2 + b = 0``, whatever the training did. More than that, every
level set ``p = c`` is the line ``z = log(c / (1 - c))``, and all of them are
parallel: the sigmoid only relabels the lines, it cannot bend them. That is
what "linear model" means here, and why this network can learn AND but not
XOR (see ``xor.py``).

The script trains the network with ``fb.fit`` (as ``fit_and.py``), evaluates
it on a grid over the square ``[-0.5, 1.5]^2``, and checks that its labels
(``p > 0.5``) agree at every grid point with the sign of ``z`` computed from the
learned weights. The figure (``fb.plot.decision_border``) shows ``p`` as a colour map with its
contours, fnbp's ``p = 0.5`` contour, the line computed from the weights on top
of it, and the four training points.

Training also finds *which* line. The two inputs play symmetric roles, so
``w1 = w2 = w`` and the border is ``x1 + x2 = -b / w``. Between the point
``(1, 1)`` (sum 2) and ``(1, 0)``, ``(0, 1)`` (sum 1) the line that keeps the
widest margin is ``x1 + x2 = 1.5``; gradient descent on the logistic loss of
separable data drifts towards that maximum-margin line as it trains (Soudry et
al., 2018), and ``-b / w`` is about 1.5 after a thousand steps.

Run it with::

    python examples/decision_border.py

It takes about a second and saves ``examples/out/decision_border.png``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from _plotting import pyplot, save  # examples/_plotting.py, beside this script

import fnbp as fb

OUT_DIR = Path(__file__).resolve().parent / "out"
LOW, HIGH = -0.5, 1.5  # the plotted square, [LOW, HIGH]^2


def train(seed: int, learning_rate: float, epochs: int) -> fb.Serial:
    """The notebook's AND network, trained with full-batch gradient descent."""
    k_init, k_fit = fb.random.split(fb.random.key(seed))
    dense = fb.Dense.init(k_init, 2, 1, init="small_normal", dtype=np.float64)
    x, y = fb.datasets.and_gate()
    net, _ = fb.fit(
        fb.Serial((dense, fb.Sigmoid())), fb.binary_cross_entropy, x, y,
        optimizer=fb.optim.sgd(learning_rate), epochs=epochs, batch_size=len(x),
        key=k_fit, progress=False,
    )  # fmt: skip
    return net


def grid(resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """The square as two ``(resolution, resolution)`` coordinate arrays."""
    ticks = np.linspace(LOW, HIGH, resolution)
    return np.meshgrid(ticks, ticks)


def line_x2(w: np.ndarray, b: float, x1: np.ndarray) -> np.ndarray:
    """Solve ``w1 * x1 + w2 * x2 + b = 0`` for ``x2``."""
    return -(w[0] * x1 + b) / w[1]


def check_linear(net: fb.Serial, x1: np.ndarray, x2: np.ndarray) -> dict[str, Any]:
    """Compare the network's labels on the grid with the sign of ``z = x @ w + b``."""
    points = np.column_stack([x1.ravel(), x2.ravel()])
    p = fb.predict(net, points)
    dense = net.layers[0]
    z = points @ dense.W[:, 0] + dense.b[0]
    agree = fb.labels(p) == (z > 0)
    # Only a point within rounding of the line could tell sigmoid(z) > 0.5 from z > 0.
    unexplained = ~agree & (np.abs(z) > 1e-12)
    return {"p": p.reshape(x1.shape), "agree": agree, "unexplained": int(unexplained.sum())}


def report(net: fb.Serial, check: dict[str, Any]) -> None:
    """Print the weights, the border they define and the grid comparison."""
    w, b = net.layers[0].W[:, 0], float(net.layers[0].b[0])
    print(f"learned weights w = {np.array2string(w, precision=4)}, bias b = {b:.4f}")
    sign = "-" if b < 0 else "+"
    print(f"decision border: {w[0]:.4f} * x1 + {w[1]:.4f} * x2 {sign} {abs(b):.4f} = 0")
    print(f"  i.e. x2 = {-w[0] / w[1]:.4f} * x1 + {-b / w[1]:.4f}")
    print(f"  symmetric inputs, w1 = w2 = w: x1 + x2 = -b / w = {-b / w.mean():.4f}")
    agree = check["agree"]
    print(f"\ngrid of {agree.size} points over [{LOW}, {HIGH}]^2:")
    print(f"  labels p > 0.5 agree with sign(w . x + b) at {agree.sum()} of {agree.size}")
    print(f"  disagreements not explained by rounding on the line: {check['unexplained']}")
    levels = (0.1, 0.5, 0.9)
    lines = ", ".join(f"p = {c} on z = {np.log(c / (1 - c)):+.3f}" for c in levels)
    print("  every contour p = c is the line z = log(c / (1 - c)), parallel to the border:")
    print(f"  {lines}")


def plot(net: fb.Serial, resolution: int, out_dir: str | Path) -> Path | None:
    """Save the decision-border figure as ``decision_border.png``; return its path."""
    plt = pyplot()
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 6.0), layout="constrained")
    x, y = fb.datasets.and_gate()
    fb.plot.decision_border(
        net, x, y, limits=(LOW, HIGH), resolution=resolution, levels=(0.1, 0.3, 0.7, 0.9),
        classes=("AND = 0", "AND = 1"), colorbar=True, legend=False, ax=ax,
    )  # fmt: skip
    w, b = net.layers[0].W[:, 0], float(net.layers[0].b[0])
    ends = np.array([LOW, HIGH])
    ax.plot(ends, line_x2(w, b, ends), "--", color="gold", lw=2, label="w1 x1 + w2 x2 + b = 0")
    ax.plot([], [], color="white", lw=0.8, label="p = 0.1, 0.3, 0.7, 0.9")
    fig.legend(loc="outside lower center", ncol=3, fontsize="small", facecolor="silver")
    ax.set_title("AND network: its decision border is a straight line")
    print()
    return save(plt, fig, out_dir, "decision_border.png")


def main(
    *,
    seed: int = 0,
    learning_rate: float = 1.0,
    epochs: int = 1000,
    resolution: int = 201,
    out_dir: str | Path = OUT_DIR,
) -> dict[str, Any]:
    """Train the AND network, check its border is the line from its weights, and plot it.

    Returns a dict with the trained ``net``, its weights ``w`` (shape (2,)) and
    bias ``b``, ``agreement`` (the fraction of the ``resolution**2`` grid
    points where ``p > 0.5`` equals ``w . x + b > 0``), ``unexplained`` (the
    number of disagreements farther than rounding from the line), the border's
    ``intercept`` ``-b / mean(w)`` (``x1 + x2 = intercept``), the ``accuracy``
    on the four rows and ``figure``.
    """
    net = train(seed, learning_rate, epochs)
    x1, x2 = grid(resolution)
    check = check_linear(net, x1, x2)
    report(net, check)
    w, b = net.layers[0].W[:, 0].copy(), float(net.layers[0].b[0])
    x, y = fb.datasets.and_gate()
    return {
        "net": net,
        "w": w,
        "b": b,
        "agreement": float(check["agree"].mean()),
        "unexplained": check["unexplained"],
        "intercept": -b / float(w.mean()),
        "accuracy": fb.accuracy(fb.predict(net, x), y),
        "figure": plot(net, resolution, out_dir),
    }


if __name__ == "__main__":
    main()
