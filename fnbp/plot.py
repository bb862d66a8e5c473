"""Figures of fnbp results, drawn with matplotlib.

matplotlib is not a dependency of fnbp: each function imports it when called
(``pip install "fnbp[examples]"``), so importing this module costs nothing.
Every function draws on the ``ax`` it is given (a new figure's when None) and
returns it, leaving titles, saving and showing to the caller.

* :func:`learning_curves`: a :class:`~fnbp.History`'s training and validation
  loss or metrics over training, for one run or several;
* :func:`decision_border`: what a classifier of 2-D points predicts everywhere
  in the plane, its border, and the data;
* :func:`weights`: a Dense layer's columns as images, a convolution's kernels,
  or any stack of images, as one tiled picture;
* :func:`layer_norms`: the per-layer gradient and update norms that
  :func:`fnbp.diagnostics` recorded;
* :func:`sweep_curves`: the mean and spread of a sweep's curves over seeds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import pairwise
from math import isqrt
from typing import TYPE_CHECKING, Any

import numpy as np

from .fit import History, predict
from .layers import Conv1D, Conv2D, Dense, Identity, LogSoftmax, Serial, Sigmoid, Softmax
from .metrics import probabilities
from .train import TrainState
from .validation import check_choice, check_int, fail

if TYPE_CHECKING:
    from .experiments import Results

__all__ = ["learning_curves", "decision_border", "weights", "layer_norms", "sweep_curves"]


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


# --------------------------------------------------------------------------- curves

_DASHES = ("-", "--", ":", "-.")  # line styles: training, validation, then more columns


def _x_name(history: History, x: str) -> str:
    """``"epoch"`` when every round is one epoch more (``x="auto"``), else ``"step"``."""
    x = check_choice("plot", "x", x, ("auto", "epoch", "step"))
    if x != "auto":
        return x
    epochs = [r.get("epoch", 0) for r in history.rows]
    return "epoch" if all(b > a for a, b in pairwise(epochs)) else "step"


def _curve(history: History, column: str, x: str) -> tuple[np.ndarray, np.ndarray]:
    """The rounds that recorded ``column``, and its values there."""
    rows = [r for r in history.rows if column in r]
    return np.array([r[x] for r in rows]), np.array([r[column] for r in rows], dtype=float)


def _scales(ax: Any, log: bool | str) -> None:
    """Log scales on the axes ``log`` names (True: y), with plain numbers on them."""
    axes = ("y" if log else "") if isinstance(log, bool) else log
    if not isinstance(axes, str) or set(axes) - {"x", "y"}:
        raise fail("plot", "log", 'True, False, "x", "y" or "xy"', log)
    for name in axes:
        getattr(ax, f"set_{name}scale")("log")
        _plain_log(getattr(ax, f"{name}axis"))
    if "x" not in axes:
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 2.5, 5, 10]))


def _plain_log(axis: Any) -> None:
    """Tick labels ``0.2``, not ``2 x 10^-1``; minor ones (2s and 5s) within two decades."""

    def minor(v: float, _: Any) -> str:
        low, high = axis.get_view_interval()
        short = low > 0 and high / low < 100
        return f"{v:g}" if short and f"{v:.0e}"[0] in "25" else ""

    axis.set_major_formatter(lambda v, _: f"{v:g}")
    axis.set_minor_formatter(minor)


def _columns(history: History, metric: Any, validation: bool) -> dict[str, str]:
    """Column -> label: ``metric`` and its ``val_`` twin, several of them, or as given."""
    have = {k for r in history.rows for k in r}
    if isinstance(metric, Mapping):
        out = {str(k): str(v) for k, v in metric.items()}
    else:
        out = _labels([metric] if isinstance(metric, str) else list(metric), have, validation)
    missing = [c for c in out if c not in have]
    if missing:
        raise fail("learning_curves", "metric", f"columns of the History {sorted(have)}", missing)
    return out


def _labels(names: list[str], have: set[str], validation: bool) -> dict[str, str]:
    """``training``/``validation`` labels, with the metric's name when there are several."""
    out: dict[str, str] = {}
    for m in names:
        kind, name = ("validation", m[4:]) if m.startswith("val_") else ("training", m)
        out[m] = f"{kind} {name}" if len(names) > 1 else kind
        if validation and kind == "training" and f"val_{m}" in have:
            out[f"val_{m}"] = f"validation {m}" if len(names) > 1 else "validation"
    return out


def _ylabel(metric: Any) -> str:
    """The y axis: the metric's name; several names; none for a mapping of labels."""
    if isinstance(metric, str):
        return metric.removeprefix("val_")
    return "" if isinstance(metric, Mapping) else ", ".join(metric)


def learning_curves(
    history: History | Mapping[str, History],
    metric: str | Sequence[str] | Mapping[str, str] = "loss",
    *,
    validation: bool = True,
    log: bool | str = False,
    x: str = "auto",
    ax: Any = None,
) -> Any:
    """Curves of a :class:`~fnbp.History` (or several) over training: loss, metrics, any column.

    ``metric`` names a column (``"loss"``, ``"accuracy"``, a callback's
    ``"grad_norm/layers[0]"`` ...); with ``validation`` its ``val_`` twin is
    drawn too when the History has one. Several names draw several columns; a
    mapping ``{column: label}`` draws exactly those, with those labels.
    ``history`` may be a mapping ``{name: History}`` to compare runs: one
    colour per run, training solid, validation dashed. ``log`` puts the y axis
    (True or ``"y"``), the x axis (``"x"``) or both (``"xy"``) on a log scale.
    ``x`` is ``"epoch"``, ``"step"`` or ``"auto"`` (epochs when every round is
    an epoch). Rounds count from 1: the loss at epoch 1 is the mean over the
    first epoch's minibatches. Returns the axes.

    >>> import fnbp as fb
    >>> x, y = fb.datasets.and_gate()
    >>> net = fb.Serial((fb.Dense.init(fb.random.key(0), 2, 1), fb.Sigmoid()))
    >>> _, history = fb.fit(net, fb.binary_cross_entropy, x, y, optimizer=fb.optim.sgd(1.0),
    ...                     epochs=20, batch_size=4, key=None, validation=(x, y))
    >>> ax = fb.plot.learning_curves(history, log=True)
    >>> [line.get_label() for line in ax.get_lines()], ax.get_xlabel()
    (['training', 'validation'], 'epoch')
    """
    ax = _axes(ax, "learning_curves")
    runs = dict(history) if isinstance(history, Mapping) else {"": history}
    if not runs:
        raise fail("learning_curves", "history", "a History or a dict of them", history)
    xname = "epoch"
    for i, (name, h) in enumerate(runs.items()):
        if not isinstance(h, History):
            raise fail("learning_curves", "history", "a History or a dict of them", h)
        xname = _x_name(h, x)
        for j, (column, label) in enumerate(_columns(h, metric, validation).items()):
            xs, ys = _curve(h, column, xname)
            style = {"marker": "o", "markersize": 3} if len(xs) <= 30 else {}
            if len(runs) > 1:
                style.update(color=f"C{i}", linestyle=_DASHES[j % 4])
                label = name if j == 0 and label == "training" else f"{name} ({label})"
            ax.plot(xs, ys, label=label, **style)
    ax.set(xlabel=xname, ylabel=_ylabel(metric))
    _scales(ax, log)
    ax.grid(True, which="major", alpha=0.3)
    if len(ax.get_lines()) > 1:
        ax.legend(fontsize="small")
    return ax


_NICE = {"grad_norm": "gradient", "update_norm": "update", "dead": "dead", "saturated": "saturated"}


def layer_norms(
    history: History,
    what: str | Sequence[str] = ("grad_norm", "update_norm"),
    *,
    log: bool | str = True,
    x: str = "auto",
    ax: Any = None,
) -> Any:
    """Per layer, the gradient and update norms :func:`fnbp.diagnostics` recorded, over training.

    One colour per layer path (``layers[0]``, ``layers[2]`` ...); the
    gradient norm solid, the update norm (how far the layer's params moved in
    the round; from the second round on) dashed. ``what`` picks the column
    families: also ``"dead"`` (ReLU units that never fire on the probe batch)
    or ``"saturated"`` (Sigmoid/Tanh outputs at their limits), with
    ``log=False``. Returns the axes.

    >>> import fnbp as fb
    >>> x, y = fb.datasets.xor()
    >>> net = fb.mlp(fb.random.key(0), [2, 4, 1], output=fb.Sigmoid())
    >>> probe = fb.diagnostics(fb.binary_cross_entropy, x, y)
    >>> _, history = fb.fit(net, fb.binary_cross_entropy, x, y, optimizer=fb.optim.sgd(0.5),
    ...                     epochs=5, batch_size=4, key=None, callbacks=(probe,))
    >>> ax = fb.plot.layer_norms(history)
    >>> [line.get_label() for line in ax.get_lines()]
    ['layers[0] gradient', 'layers[0] update', 'layers[2] gradient', 'layers[2] update']
    """
    ax = _axes(ax, "layer_norms")
    kinds = [what] if isinstance(what, str) else list(what)
    columns = [k for r in history.rows for k in r if k.split("/", 1)[0] in kinds]
    paths = list(dict.fromkeys(c.split("/", 1)[1] for c in columns))
    if not paths:
        have = sorted({k for r in history.rows for k in r})
        expected = f"a History with {kinds} columns (fit with fb.diagnostics as a callback)"
        raise fail("layer_norms", "history", expected, have)
    xname = _x_name(history, x)
    for i, path in enumerate(paths):
        for j, kind in enumerate(kinds):
            xs, ys = _curve(history, f"{kind}/{path}", xname)
            if len(xs):
                label = f"{path} {_NICE.get(kind, kind)}"
                ax.plot(xs, ys, _DASHES[j % 4], color=f"C{i}", label=label,
                        marker="." if len(xs) <= 30 else None)  # fmt: skip
    norms = all(k.endswith("norm") for k in kinds)
    ax.set(xlabel=xname, ylabel="norm" if norms else "fraction of units")
    _scales(ax, log)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize="small")
    return ax


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


# --------------------------------------------------------------------------- decision border


def _last_layer(net: Any) -> Any:
    """The layer that makes the output, looking into Serials and past Identity."""
    while isinstance(net, Serial):
        inner = [layer for layer in net.layers if not isinstance(layer, Identity)]
        if not inner:
            return Identity()
        net = inner[-1]
    return net


def _class_probabilities(net: Any, out: Any, output: str) -> np.ndarray:
    """``(M, C)`` probabilities (``C = 1``: of class 1) from the network's outputs."""
    out = np.asarray(out, dtype=np.float64)
    out = out.reshape(len(out), -1)
    last = _last_layer(net.params if isinstance(net, TrainState) else net)
    output = check_choice("decision_border", "output", output, ("auto", "probabilities", "logits"))
    if output == "auto":
        output = "probabilities" if isinstance(last, Sigmoid | Softmax | LogSoftmax) else "logits"
    if output == "logits":
        return probabilities(out)
    return np.exp(out) if isinstance(last, LogSoftmax) else out


def _limits(x: Any, limits: Any) -> tuple[tuple[float, float], tuple[float, float]]:
    """``((x1_low, x1_high), (x2_low, x2_high))``: as given, or the data's box plus 10%."""
    if limits is not None:
        lim = np.asarray(limits, dtype=float)
        if lim.shape == (2,):
            lim = np.stack([lim, lim])
        if lim.shape != (2, 2) or not np.all(lim[:, 1] > lim[:, 0]):
            raise fail("decision_border", "limits", "(low, high) or ((low, high), (low, high))",
                       limits)  # fmt: skip
        return (lim[0, 0], lim[0, 1]), (lim[1, 0], lim[1, 1])
    if x is None:
        raise fail("decision_border", "limits", "given when there is no data x", None)
    low, high = x.min(axis=0), x.max(axis=0)
    pad = 0.1 * np.maximum(high - low, 1e-3)
    return (low[0] - pad[0], high[0] + pad[0]), (low[1] - pad[1], high[1] + pad[1])


def _target_labels(y: Any) -> np.ndarray:
    """Integer class labels from integer labels, one-hot rows, or 0/1 targets."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1:
        return y.argmax(axis=1)
    flat = y.reshape(len(y))
    return flat.astype(np.int64) if flat.dtype.kind in "iub" else (flat > 0.5).astype(np.int64)


_MARKERS = "os^Dv<>PX"


def _class_style(c: int, n_classes: int) -> str:
    """Class colours: blue and red for two (as the RdBu map), else matplotlib's cycle."""
    return ("tab:blue", "tab:red")[c] if n_classes <= 2 else f"C{c}"


def _draw_binary(ax: Any, g1: Any, g2: Any, p: np.ndarray, levels: Sequence[float]) -> Any:
    """The probability of class 1 as colours, the ``p = 0.5`` border, thin ``levels``."""
    filled = ax.contourf(g1, g2, p, levels=np.linspace(0, 1, 11), cmap="RdBu_r", alpha=0.8,
                         vmin=0.0, vmax=1.0)  # fmt: skip
    inside = [c for c in levels if p.min() < c < p.max()]
    if inside:
        ax.contour(g1, g2, p, levels=inside, colors="white", linewidths=0.8)
    if p.min() < 0.5 < p.max():  # no border inside the box: nothing to draw (and no warning)
        ax.contour(g1, g2, p, levels=[0.5], colors="black", linewidths=2.5)
    ax.plot([], [], color="black", lw=2.5, label="border p = 0.5")
    return filled


def _draw_regions(ax: Any, g1: Any, g2: Any, p: np.ndarray) -> Any:
    """Each class's region in its colour, and the borders where the top class changes."""
    n = p.shape[-1]
    top = p.argmax(axis=-1)
    colors = [_class_style(c, n) for c in range(n)]
    filled = ax.contourf(g1, g2, top, levels=np.arange(n + 1) - 0.5, colors=colors, alpha=0.35)
    for c in range(n):
        margin = p[..., c] - np.delete(p, c, axis=-1).max(axis=-1)
        if margin.min() < 0 < margin.max():
            ax.contour(g1, g2, margin, levels=[0.0], colors="black", linewidths=1.5)
    ax.plot([], [], color="black", lw=1.5, label="border")
    return filled


def decision_border(
    net: Any,
    x: Any = None,
    y: Any = None,
    *,
    state: Any = None,
    ax: Any = None,
    limits: Any = None,
    resolution: int = 200,
    levels: Sequence[float] = (),
    classes: Sequence[str] | None = None,
    output: str = "auto",
    colorbar: bool = False,
    legend: bool = True,
) -> Any:
    """What a classifier of 2-D points predicts over the plane, its border, and the data.

    ``net`` is a network (with its model ``state`` if it keeps one) or a
    :class:`~fnbp.TrainState`; it is evaluated in inference on a
    ``resolution`` x ``resolution`` grid over ``limits`` (``(low, high)`` for
    both axes, or one pair per axis; default: the box of ``x`` plus 10%). Its
    outputs are probabilities when it ends in Sigmoid, Softmax or LogSoftmax,
    else logits (``output`` overrides). A binary classifier -- one output, or
    two softmax classes -- is drawn as the probability of class 1 (blue 0 to
    red 1) with the border ``p = 0.5`` in black and thin white contours at
    ``levels``; more classes as coloured regions with black borders. The
    points ``x`` (N, 2) are drawn with their labels ``y`` (integer labels,
    0/1 targets or one-hot rows), one marker per class, named by ``classes``.
    ``colorbar`` adds the probability scale. Axes are equal when the spans are
    alike. Returns the axes; the filled contours are ``ax.collections[0]``.

    >>> import fnbp as fb
    >>> x, y = fb.datasets.and_gate()
    >>> net = fb.Serial((fb.Dense.init(fb.random.key(0), 2, 1), fb.Sigmoid()))
    >>> net, _ = fb.fit(net, fb.binary_cross_entropy, x, y, optimizer=fb.optim.sgd(1.0),
    ...                 epochs=200, batch_size=4, key=None)
    >>> ax = fb.plot.decision_border(net, x, y, classes=("AND = 0", "AND = 1"))
    >>> [t.get_text() for t in ax.get_legend().get_texts()]
    ['border p = 0.5', 'AND = 0', 'AND = 1']
    """
    ax = _axes(ax, "decision_border")
    resolution = check_int("decision_border", "resolution", resolution, low=2)
    if x is not None:
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != 2:
            raise fail("decision_border", "x", "points of shape (N, 2)", x.shape)
    (a, b), (c, d) = _limits(x, limits)
    g1, g2 = np.meshgrid(np.linspace(a, b, resolution), np.linspace(c, d, resolution))
    grid = np.column_stack([g1.ravel(), g2.ravel()])
    p = _class_probabilities(net, predict(net, grid, batch_size=8192, state=state), output)
    binary = p.shape[1] <= 2
    p = p[:, -1].reshape(g1.shape) if binary else p.reshape(*g1.shape, -1)
    filled = _draw_binary(ax, g1, g2, p, levels) if binary else _draw_regions(ax, g1, g2, p)
    n_classes = 2 if binary else p.shape[-1]
    names = list(classes) if classes is not None else [f"class {k}" for k in range(n_classes)]
    if x is not None and y is not None:
        _scatter(ax, x, _target_labels(y), names, n_classes)
    if colorbar and binary:
        ax.figure.colorbar(filled, ax=ax, label=f"p({names[1]})")
    ax.set(xlabel="x1", ylabel="x2", xlim=(a, b), ylim=(c, d))
    if max(b - a, d - c) < 3 * min(b - a, d - c):
        ax.set_aspect("equal", adjustable="box")
    if legend:
        ax.legend(fontsize="small")
    return ax


def _scatter(ax: Any, x: np.ndarray, labels: np.ndarray, names: list[str], n: int) -> None:
    size = float(np.clip(2000 / max(len(x), 1), 12, 90))
    for k in range(n):
        rows = labels == k
        if rows.any():
            ax.scatter(*x[rows].T, marker=_MARKERS[k % len(_MARKERS)], s=size,
                       c=_class_style(k, n), edgecolors="black", linewidths=0.6, zorder=3,
                       label=names[k] if k < len(names) else f"class {k}")  # fmt: skip


# --------------------------------------------------------------------------- weights


def _tiles(w: Any, image_shape: tuple[int, int] | None) -> tuple[np.ndarray, bool, str]:
    """``(rows, cols, h, w)`` tiles (rows 1 to wrap), whether they form a grid, their name."""
    if isinstance(w, Dense):
        w, kind = w.W, "unit"
    elif isinstance(w, Conv1D | Conv2D):
        w, kind = w.W, "filter"
    else:
        kind = {2: "unit", 3: "channel"}.get(np.ndim(w), "filter")
    w = np.asarray(w, dtype=np.float64)
    if kind == "filter" and w.ndim == 3:  # a Conv1D kernel (kw, in, out): rows of 1 x kw
        w = w[None]
    if w.ndim == 2:  # Dense W (in, out): column j is unit j's weights over the inputs
        shape = image_shape or _square(w.shape[0])
        if int(np.prod(shape)) != w.shape[0]:
            raise fail("weights", "image_shape", f"a shape of {w.shape[0]} inputs", shape)
        return w.T.reshape(1, w.shape[1], *shape), False, kind
    if w.ndim == 3:  # images (h, w, k)
        return np.moveaxis(w, -1, 0)[None], False, kind
    if w.ndim == 4:  # kernels (kh, kw, in, out): in x out, or a row to wrap for one input
        return np.transpose(w, (2, 3, 0, 1)), w.shape[2] > 1, kind
    raise fail("weights", "w", "a Dense, a Conv layer or an array of 2 to 4 axes", w.shape)


def _square(n: int) -> tuple[int, int]:
    side = isqrt(n)
    if side * side != n:
        raise fail("weights", "image_shape", f"given: {n} inputs are not a square image", None)
    return side, side


def _mosaic(tiles: np.ndarray, gap: int) -> np.ndarray:
    """One image of ``(rows, cols, h, w)`` tiles with ``gap`` pixels of NaN between them."""
    rows, cols, h, w = tiles.shape
    out = np.full((rows * (h + gap) - gap, cols * (w + gap) - gap), np.nan)
    for r in range(rows):
        for c in range(cols):
            out[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = tiles[r, c]
    return out


def weights(
    w: Any,
    *,
    image_shape: tuple[int, int] | None = None,
    columns: int | None = None,
    ax: Any = None,
    cmap: str | None = None,
    symmetric: bool | None = None,
    gap: int = 1,
    colorbar: bool = False,
) -> Any:
    """A layer's weights as one tiled image: what each unit or filter looks for.

    * a :class:`~fnbp.Dense` (or its ``W``, ``(in, out)``): column ``j``, unit
      ``j``'s weights over the inputs, as an image of ``image_shape`` (default
      square: 64 inputs are 8 x 8);
    * a :class:`~fnbp.Conv2D` (or its ``W``, ``(kh, kw, in, out)``): one
      ``kh x kw`` kernel per output channel; with several input channels, a
      grid of input (rows) by output channel (columns). A ``Conv1D``'s kernels
      are rows of ``kw``;
    * an array ``(h, w, k)``: ``k`` images, such as one sample's feature maps.

    Single-row tiles wrap into ``columns`` columns (about square by
    default); tile ``i`` sits at the row labelled with the first index of
    its row, ``+ column``. Colours are symmetric around 0 (``RdBu_r``: red
    positive, blue negative) unless ``symmetric=False`` (``magma``; the default
    for arrays without negative values). Returns the axes; the picture is
    ``ax.get_images()[0]``.

    >>> import fnbp as fb
    >>> conv = fb.Conv2D.init(fb.random.key(0), 1, 16, 3)
    >>> ax = fb.plot.weights(conv, columns=8)
    >>> ax.get_images()[0].get_array().shape  # 2 rows and 8 columns of 3 x 3, 1 pixel apart
    (7, 31)
    """
    ax = _axes(ax, "weights")
    tiles, grid, kind = _tiles(w, image_shape)
    gap = check_int("weights", "gap", gap, low=0)
    if not grid:
        n = tiles.shape[1]
        cols = check_int("weights", "columns", columns or int(np.ceil(np.sqrt(n))), low=1)
        padded = np.full((-(-n // cols) * cols, *tiles.shape[2:]), np.nan)
        padded[:n] = tiles[0]
        tiles = padded.reshape(-1, cols, *tiles.shape[2:])
    image = _mosaic(tiles, gap)
    _show_mosaic(ax, image, cmap, symmetric, colorbar)
    _tile_ticks(ax, tiles.shape, gap, grid, kind)
    return ax


def _show_mosaic(ax: Any, image: np.ndarray, cmap: str | None, symmetric: bool | None,
                 colorbar: bool) -> None:  # fmt: skip
    from matplotlib import colormaps

    if symmetric is None:
        symmetric = bool(np.nanmin(image) < 0)
    lim = float(np.nanmax(np.abs(image))) or 1.0
    low, high = (-lim, lim) if symmetric else (float(np.nanmin(image)), float(np.nanmax(image)))
    colours = colormaps[cmap or ("RdBu_r" if symmetric else "magma")].with_extremes(bad="white")
    shown = ax.imshow(image, cmap=colours, vmin=low, vmax=high, interpolation="nearest")
    if colorbar:
        ax.figure.colorbar(shown, ax=ax, shrink=0.8)


def _tile_ticks(ax: Any, shape: tuple[int, ...], gap: int, grid: bool, kind: str) -> None:
    rows, cols, h, w = shape
    ax.set_xticks([c * (w + gap) + (w - 1) / 2 for c in range(cols)])
    ax.set_yticks([r * (h + gap) + (h - 1) / 2 for r in range(rows)])
    if grid:
        ax.set_xticklabels([str(c) for c in range(cols)])
        ax.set_yticklabels([str(r) for r in range(rows)])
        ax.set(xlabel="output channel", ylabel="input channel")
    else:
        ax.set_xticklabels([f"+{c}" for c in range(cols)])
        ax.set_yticklabels([str(r * cols) for r in range(rows)])
        ax.set(ylabel=kind)
    ax.tick_params(length=0, labelsize="x-small")
    ax.spines[:].set_visible(False)
