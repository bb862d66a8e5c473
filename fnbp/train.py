"""Training: seeded minibatches, ``fit``, ``predict`` and ``evaluate``.

``fit`` is a loop you could write yourself, kept pure: each step computes
``grads`` in one forward and one backward pass, the optimizer turns them into
a new params record, and nothing is mutated. The epoch's shuffle comes from
``fold_in(key, epoch)``, so a run is a function of its key: resuming at epoch
``k`` with the saved optimizer state gives the same bits as never stopping.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
import numpy as np

from . import random, tree
from .core import dtype_of, forward, init_state, vjp
from .errors import DivergenceError, DTypeError, ShapeError
from .losses import Loss, SigmoidBinaryCrossEntropy, SoftmaxCrossEntropy
from .metrics import accuracy

__all__ = ["History", "batches", "fit", "predict", "evaluate"]

Metric = Callable[[np.ndarray, np.ndarray], float]
Callback = Callable[[int, Any, dict], Any]


def batches(key: random.Key | None, n: int, batch_size: int, *, drop_last: bool = False) -> list:
    """Index arrays splitting ``range(n)`` into minibatches for one epoch.

    Shuffled by a permutation drawn from ``key`` (in order when ``key`` is
    None). The last partial batch is kept unless ``drop_last``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = np.arange(n) if key is None else random.permutation(key, n)
    stop = n - n % batch_size if drop_last else n
    return [order[i : i + batch_size] for i in range(0, stop, batch_size)]


@attrs.frozen
class History:
    """What ``fit`` saw, per epoch: losses, metrics, and where it stopped.

    ``train_loss`` and ``train_metrics`` are means over the epoch's steps,
    each taken on its minibatch *before* that step's update (they come free
    with the gradient); ``val_loss`` and ``val_metrics`` are measured after
    the epoch. For the training loss of the final params, use :func:`evaluate`.

    ``state`` is the model state (BatchNorm statistics) and ``opt_state``
    the optimizer state after the last epoch, and ``epochs`` the number of
    epochs completed in total: with the params they are what a checkpoint
    needs to resume.
    """

    train_loss: tuple[float, ...]
    val_loss: tuple[float, ...]
    train_metrics: dict[str, tuple[float, ...]]
    val_metrics: dict[str, tuple[float, ...]]
    epochs: int
    best_epoch: int | None
    stopped_early: bool
    opt_state: Any = None
    state: Any = None


def _metric_fns(metrics: Sequence[str] | Mapping[str, Metric], loss: Loss) -> dict[str, Metric]:
    """Resolve metric names; ``"accuracy"`` thresholds logits at 0, probabilities at 0.5."""
    if isinstance(metrics, Mapping):
        return dict(metrics)
    threshold = 0.0 if isinstance(loss, SigmoidBinaryCrossEntropy | SoftmaxCrossEntropy) else 0.5
    known = {"accuracy": lambda pred, target: accuracy(pred, target, threshold)}
    unknown = [m for m in metrics if m not in known]
    if unknown:
        raise ValueError(f"unknown metric {unknown[0]!r}; pass a dict name -> fn(pred, target)")
    return {m: known[m] for m in metrics}


def _as_data(net: Any, x: Any, y: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Cast float inputs once to the network's dtype (integer ids and truth tables
    are left to the first layer); check x and y have one length."""
    x, y = np.asarray(x), np.asarray(y)
    if x.dtype.kind not in "biuf":
        raise DTypeError(f"{what}: inputs must be real numbers, got dtype {x.dtype}")
    if x.dtype.kind == "f":
        x = x.astype(dtype_of(net), copy=False)
    if len(x) != len(y):
        raise ShapeError(f"{what}: {len(x)} inputs but {len(y)} targets")
    return x, y


def predict(net: Any, x: Any, *, batch_size: int | None = None, state: Any = None) -> np.ndarray:
    """``forward(net, x)`` in inference mode, in batches of ``batch_size`` to bound memory.

    ``state`` is the model state from training (BatchNorm's running statistics).
    """
    x = np.asarray(x)
    if state is not None:
        return _batched(lambda xb: forward(net, xb, state=state)[0], x, batch_size)
    return _batched(lambda xb: forward(net, xb), x, batch_size)


def _batched(f: Callable, x: np.ndarray, batch_size: int | None) -> np.ndarray:
    if batch_size is None or len(x) <= batch_size:
        return f(x)
    return np.concatenate([f(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])


def evaluate(
    net: Any,
    loss: Loss,
    x: Any,
    y: Any,
    *,
    metrics: Sequence[str] | Mapping[str, Metric] = (),
    batch_size: int | None = None,
    state: Any = None,
) -> dict[str, float]:
    """``{"loss": ..., metric: ...}`` of ``net`` on ``(x, y)``, in inference mode."""
    x, y = _as_data(net, x, y, "evaluate")
    pred = predict(net, x, batch_size=batch_size, state=state)
    out = {"loss": float(loss(pred, y))}
    out.update({name: float(fn(pred, y)) for name, fn in _metric_fns(metrics, loss).items()})
    return out


def _diverged(epoch: int, step: int, what: str, params: Any) -> DivergenceError:
    return DivergenceError(
        f"training diverged at epoch {epoch}, step {step}: {what} is not finite. "
        "Try a smaller learning rate (10x), gradient clipping "
        "(fb.optim.clip_by_global_norm), or check the data for NaN/inf. "
        "The last good params are in this error's .params.",
        params,
        epoch=epoch,
        step=step,
    )


@attrs.frozen
class _Run:
    """What stays fixed over a run of ``fit``."""

    loss: Loss
    optimizer: Any
    metrics: dict[str, Metric]
    key: random.Key
    batch_size: int
    drop_last: bool


def _epoch(run: _Run, state: tuple, x: np.ndarray, y: np.ndarray, epoch: int) -> tuple:
    """One pass over the shuffled data: ``(state, logs)``.

    ``state`` is ``(params, opt_state, model_state, last_good)``,
    ``last_good`` being the last params whose loss was finite. Each step
    runs in training mode with its own key, ``fold_in(epoch_key, step)``.
    Floating-point warnings are silenced here: a NaN or inf is caught by the
    finiteness checks instead, and reported with a message that says what to try.
    """
    with np.errstate(all="ignore"):
        return _steps(run, state, x, y, epoch)


def _steps(run: _Run, state: tuple, x: np.ndarray, y: np.ndarray, epoch: int) -> tuple:
    from .optim import apply_updates

    params, opt_state, model_state, last_good = state
    epoch_key = random.fold_in(run.key, epoch)
    order = batches(epoch_key, len(x), run.batch_size, drop_last=run.drop_last)
    sums = dict.fromkeys(["loss", *run.metrics], 0.0)
    for step, idx in enumerate(order):
        xb, yb = x[idx], y[idx]
        pred, pullback, model_state = vjp(
            params,
            xb,
            need_g_x=False,
            train=True,
            key=random.fold_in(epoch_key, step),
            state=model_state,
        )
        value, g_pred = run.loss.value_and_grad(pred, yb)
        if not math.isfinite(value):
            raise _diverged(epoch, step, "the loss", last_good)
        last_good = params
        updates, opt_state = run.optimizer.update(pullback(g_pred)[1], opt_state, params)
        params = apply_updates(params, updates)
        sums["loss"] += float(value) * len(idx)
        for name, fn in run.metrics.items():
            sums[name] += fn(pred, yb) * len(idx)
    if not all(np.isfinite(leaf).all() for leaf in tree.leaves(params)):
        raise _diverged(epoch, len(order) - 1, "a parameter", last_good)
    seen = sum(len(idx) for idx in order)
    return (params, opt_state, model_state, last_good), {k: v / seen for k, v in sums.items()}


def _progress(enabled: bool | str, total: int) -> Any:
    """A tqdm bar over epochs when wanted and installed (the ``examples`` extra)."""
    if enabled == "auto":
        enabled = total >= 20 and sys.stderr.isatty()
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="epoch")


def _history(rows: list[dict], metrics: dict, epochs: int, best: int | None, **kw: Any) -> History:
    def column(name: str) -> tuple[float, ...]:
        return tuple(r[name] for r in rows if name in r)

    return History(
        column("loss"),
        column("val_loss"),
        {m: column(m) for m in metrics},
        {m: column(f"val_{m}") for m in metrics if any(f"val_{m}" in r for r in rows)},
        epochs=epochs,
        best_epoch=best,
        **kw,
    )


def fit(
    params: Any,
    loss: Loss,
    x: Any,
    y: Any,
    *,
    optimizer: Any,
    epochs: int,
    batch_size: int,
    key: random.Key,
    validation: tuple[Any, Any] | None = None,
    metrics: Sequence[str] | Mapping[str, Metric] = (),
    patience: int | None = None,
    callbacks: Sequence[Callback] = (),
    drop_last: bool = False,
    opt_state: Any = None,
    state: Any = None,
    initial_epoch: int = 0,
    progress: bool | str = "auto",
) -> tuple[Any, History]:
    """Train ``params`` on ``(x, y)`` with minibatches; return ``(params, history)``.

    Each epoch shuffles with ``fold_in(key, epoch)``. ``optimizer`` is an
    ``fb.optim`` optimizer. Steps run in training mode (Dropout active,
    BatchNorm on batch statistics), each with a key ``fold_in(fold_in(key,
    epoch), step)``; the model ``state`` (default ``init_state(params)``) is
    threaded through. ``opt_state``, ``state`` and ``initial_epoch`` resume
    a run exactly (save ``history.opt_state``, ``history.state`` and
    ``history.epochs``).
    With ``validation=(x_val, y_val)`` the validation loss and ``metrics``
    (e.g. ``("accuracy",)``) are recorded each epoch. With ``patience``,
    training stops after that many epochs without a better validation loss
    (training loss when there is no validation data), and the best params are
    returned (also when training runs to the end). Each callback is called
    as ``callback(epoch, params, logs)`` after every epoch; returning True
    stops training. A NaN or inf loss or
    parameter raises :class:`fnbp.DivergenceError` carrying the last good params.
    ``progress`` shows a tqdm bar (if installed); ``"auto"``: on a terminal,
    for 20 epochs or more.
    """
    x, y = _as_data(params, x, y, "fit")
    if drop_last and batch_size > len(x):
        raise ValueError(
            f"fit: batch_size {batch_size} > {len(x)} samples with drop_last: no batch"
        )
    val = _as_data(params, *validation, "fit validation") if validation is not None else None
    run = _Run(loss, optimizer, _metric_fns(metrics, loss), key, batch_size, drop_last)
    opt_state = optimizer.init(params) if opt_state is None else opt_state
    state = (params, opt_state, init_state(params) if state is None else state, params)
    rows: list[dict] = []
    best = (math.inf, None, params, state[2])  # (monitored loss, epoch, params, model state)
    stopped, epoch = False, initial_epoch - 1
    bar = _progress(progress, epochs - initial_epoch)
    for epoch in range(initial_epoch, epochs):
        state, logs = _epoch(run, state, x, y, epoch)
        params = state[0]
        if val is not None:
            v_logs = evaluate(params, loss, *val, metrics=run.metrics, state=state[2])
            logs.update({f"val_{k}": v for k, v in v_logs.items()})
        rows.append(logs)
        monitored = logs.get("val_loss", logs["loss"])
        if monitored < best[0]:
            best = (monitored, epoch, params, state[2])
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{logs['loss']:.4g}")
        stop = any([cb(epoch, params, logs) is True for cb in callbacks])
        stopped = patience is not None and best[1] is not None and epoch - best[1] >= patience
        if stop or stopped:
            break
    if bar is not None:
        bar.close()
    history = _history(
        rows,
        run.metrics,
        epoch + 1,
        best[1],
        stopped_early=stopped,
        opt_state=state[1],
        state=best[3] if patience is not None else state[2],
    )
    return (best[2] if patience is not None else params), history
