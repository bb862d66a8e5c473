"""Figures of fnbp results, drawn with matplotlib.

matplotlib is not a dependency of fnbp: each function imports it when called
(``pip install "fnbp[examples]"``), so importing this module costs nothing.
Every function draws on the ``ax`` it is given (a new figure's when None) and
returns it, leaving titles, saving and showing to the caller.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .experiments import Results

__all__ = ["sweep_curves"]


def _axes(ax: Any, fn: str) -> Any:
    """``ax``, or the axes of a new figure; ImportError with a hint without matplotlib."""
    if ax is not None:
        return ax
    try:
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise ImportError(
            f'fnbp.plot.{fn} needs matplotlib: pip install matplotlib (or "fnbp[examples]")'
        ) from e
    return plt.subplots(layout="constrained")[1]


def sweep_curves(results: Results, metric: str, *, ax: Any = None, alpha: float = 0.2) -> Any:
    """Learning curves of ``metric`` from a sweep: per configuration, the mean over
    seeds as a line in a band of plus or minus one standard deviation.

    ``results`` comes from :func:`fnbp.experiments.sweep` or
    :func:`~fnbp.experiments.load`; ``metric`` names a curve the runs
    recorded (a list per epoch; a scalar is one point). Lines are labelled by
    the configuration keys that vary (``lr=0.1, width=32``); ``alpha`` is the
    opacity of the bands. Epochs count from 1. Returns the matplotlib axes.

    >>> import fnbp as fb
    >>> from fnbp import experiments, plot
    >>> def run(config, key):
    ...     return {"loss": [config["lr"] / (t + 1) for t in range(5)]}
    >>> results = experiments.sweep(run, experiments.grid(lr=[0.1, 1.0]), seeds=2,
    ...                             key=fb.random.key(0))
    >>> ax = plot.sweep_curves(results, "loss")
    >>> [line.get_label() for line in ax.get_lines()]
    ['lr=0.1', 'lr=1']
    """
    ax = _axes(ax, "sweep_curves")
    for curve in results.curves(metric):
        mean, std = curve["mean"], curve["std"]
        epochs = np.arange(1, len(mean) + 1)
        (line,) = ax.plot(epochs, mean, label=results.label(curve["config"]))
        band = np.isfinite(std)
        ax.fill_between(
            epochs, mean - std, mean + std, where=band, color=line.get_color(),
            alpha=alpha, linewidth=0,
        )  # fmt: skip
    ax.set(xlabel="epoch", ylabel=metric)
    ax.grid(True, alpha=0.3)
    if len(ax.get_lines()) > 1:
        ax.legend(fontsize="small")
    return ax
