"""``fit``: a loop over :func:`~fnbp.train_step`, and ``predict`` and ``evaluate``.

``fit`` is the loop you could write yourself, kept pure: each step advances
one :class:`~fnbp.TrainState` by one minibatch, and nothing is mutated. The
data is visited in *rounds* -- an epoch each, or ``eval_every`` steps -- and
after every round the validation loss and metrics are measured, a row of
logs is recorded in the :class:`History`, callbacks see the state and a copy
of the logs, and early stopping decides. The epoch's shuffle comes from
``fold_in(key, epoch)`` and each step's key from ``fold_in(epoch_key, step)``,
so a run is a function of its key: resuming from a saved ``TrainState`` (and
its History) gives the same bits, and the same History, as never stopping.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import attrs
import numpy as np

from . import random, tree, workspace
from .core import Context, as_input, check_layer, dtype_of, verified, vjp_ctx
from .errors import DivergenceError, LocatedError, ShapeError, StructureError
from .layers import Serial
from .losses import Loss, SigmoidBinaryCrossEntropy, SoftmaxCrossEntropy
from .metrics import accuracy
from .optim import Optimizer
from .record import counter
from .train import Metric, TrainState, batches, fused_loss, train_step
from .validation import (
    all_finite,
    check_bool,
    check_callable,
    check_choice,
    check_finite,
    check_int,
    check_loss,
    check_optimizer,
    check_real,
    check_sequence,
    fail,
    numeric,
)

__all__ = ["History", "fit", "predict", "evaluate"]

Callback = Callable[[TrainState, dict], Any]


# --------------------------------------------------------------------------- using a model


def _model(net: Any, state: Any, owner: str) -> tuple[Any, Any]:
    """``(params, model_state)`` from a network and a state, or from a TrainState."""
    if isinstance(net, TrainState):
        if state is not None:
            raise fail(owner, "state", "None when a TrainState is given", state)
        return net.params, net.model_state
    return net, state


def predict(net: Any, x: Any, *, batch_size: int | None = None, state: Any = None) -> Any:
    """The network's output in inference mode, in batches of ``batch_size`` to bound memory.

    ``net`` is a network, with its model ``state`` (BatchNorm's running
    statistics) when it keeps one, or a :class:`~fnbp.TrainState`, which
    carries both. A network that needs its state and gets none raises
    :class:`~fnbp.ModeError`.
    """
    params, state = _model(net, state, "predict")
    x = as_input(x, "predict")
    ctx = Context(False, None, state)
    run = lambda xb: vjp_ctx(params, xb, False, ctx)[0]  # noqa: E731
    if batch_size is None:
        return run(x)
    batch_size = check_int("predict", "batch_size", batch_size, low=1)
    n = _length(x, "predict")
    if n <= batch_size:
        return run(x)
    parts = [run(_take(x, slice(i, i + batch_size))) for i in range(0, n, batch_size)]
    return tree.map(lambda *ys: np.concatenate(ys), *parts)


def _take(x: Any, index: Any) -> Any:
    if type(x) is np.ndarray:
        return x[index]
    return tree.map(lambda a: a[index], x)


def _length(x: Any, owner: str) -> int:
    if type(x) is np.ndarray and x.ndim:
        return len(x)
    lengths = {np.shape(a)[0] if np.ndim(a) else -1 for a in tree.leaves(x)}
    if len(lengths) != 1 or -1 in lengths:
        raise ShapeError(f"{owner}: every input array needs one batch axis of one length")
    return lengths.pop()


def _metric_fns(metrics: Any, loss: Loss, owner: str) -> dict[str, Metric]:
    """Resolve metric names; ``"accuracy"`` thresholds logits at 0, probabilities at 0.5."""
    if isinstance(metrics, Mapping):
        for name, fn in metrics.items():
            check_callable(owner, f"metrics[{name!r}]", fn, "a function (pred, target)", n_args=2)
        return dict(metrics)
    metrics = check_sequence(owner, "metrics", metrics, "metric names")
    threshold = 0.0 if isinstance(loss, SigmoidBinaryCrossEntropy | SoftmaxCrossEntropy) else 0.5
    known = {"accuracy": lambda pred, target: accuracy(pred, target, threshold)}
    for m in metrics:
        if m not in known:
            raise fail(owner, "metrics", f"names from {sorted(known)} or a dict name -> fn", m)
    return {m: known[m] for m in metrics}


def _x_name(path: str) -> str:
    """``x``, ``x[0]`` or ``x['ids']``: how an input leaf is named in a message."""
    return "x" + (path if not path or path.startswith("[") else "." + path)


def _as_data(net: Any, x: Any, y: Any, owner: str) -> tuple[Any, np.ndarray]:
    """Cast float inputs once to the network's dtype (integer ids and truth tables are
    left to the first layer); check x and y have one length."""
    x = as_input(x, owner)
    dtype = dtype_of(net)
    x = tree.map(lambda a: a.astype(dtype, copy=False) if a.dtype.kind == "f" else a, x)
    for path, a in tree.leaves_with_paths(x):
        check_finite(owner, _x_name(path), a)
    y = check_finite(owner, "the targets", numeric(y, owner, "targets"))
    n = _length(x, owner)
    if y.ndim == 0 or len(y) != n:
        raise ShapeError(f"{owner}: {n} inputs but targets of shape {y.shape}")
    if n == 0:
        raise ValueError(f"{owner}: the data is empty (a mean over no samples is undefined)")
    return x, y


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
    """``{"loss": ..., metric: ...}`` of ``net`` (or a TrainState) on ``(x, y)``, in inference."""
    params, state = _model(net, state, "evaluate")
    loss = check_loss("evaluate", loss)
    x, y = _as_data(params, x, y, "evaluate")
    pred = predict(params, x, batch_size=batch_size, state=state)
    out = {"loss": float(loss(pred, y))}
    out.update({k: float(fn(pred, y)) for k, fn in _metric_fns(metrics, loss, "evaluate").items()})
    return out


# --------------------------------------------------------------------------- History


@attrs.frozen
class History:
    """What ``fit`` saw: one row of logs per round (an epoch, or ``eval_every`` steps).

    Each row holds ``epoch`` and ``step`` (completed when the round ended),
    ``time`` (seconds the round took), ``loss`` (the mean training loss over
    the round's steps, each taken on its minibatch *before* that step's update
    and in training mode), the training metrics, and with validation data
    ``val_loss`` and ``val_<metric>`` measured after the round, and whatever the
    callbacks recorded (``fb.diagnostics``: ``grad_norm/<layer path>`` ...). Columns:
    :meth:`column`, ``train_loss``, ``val_loss``, ``train_metrics``, ``val_metrics``.

    ``train_state`` is the :class:`~fnbp.TrainState` that goes with the params
    ``fit`` returned: the best round's when early stopping restored it, else
    the last. ``final_state`` is where training stopped (resume from it).
    """

    rows: tuple[dict, ...]
    best_epoch: int | None = None
    stopped_early: bool = False
    train_state: TrainState | None = None
    final_state: TrainState | None = None

    def column(self, name: str) -> tuple[float, ...]:
        """The value of ``name`` in every row that has it."""
        return tuple(r[name] for r in self.rows if name in r)

    @property
    def train_loss(self) -> tuple[float, ...]:
        """The training loss of every round."""
        return self.column("loss")

    @property
    def val_loss(self) -> tuple[float, ...]:
        """The validation loss of every round (empty without validation data)."""
        return self.column("val_loss")

    def _metrics(self, prefix: str) -> dict[str, tuple[float, ...]]:
        fixed = {"epoch", "step", "time", "loss", "val_loss"}
        names = [k for r in self.rows for k in r if k not in fixed and "/" not in k]
        names = [k[len(prefix) :] for k in dict.fromkeys(names) if k.startswith(prefix)]
        if not prefix:
            names = [k for k in names if not k.startswith("val_")]
        return {k: self.column(prefix + k) for k in names}

    @property
    def train_metrics(self) -> dict[str, tuple[float, ...]]:
        """Each training metric's values, by name."""
        return self._metrics("")

    @property
    def val_metrics(self) -> dict[str, tuple[float, ...]]:
        """Each validation metric's values, by name."""
        return self._metrics("val_")

    @property
    def epochs(self) -> int:
        """The number of epochs completed in total."""
        return int(self.rows[-1]["epoch"]) if self.rows else 0

    def to_dict(self) -> dict[str, Any]:
        """The rows and the stopping facts as plain JSON data (no arrays)."""
        return {
            "rows": [dict(r) for r in self.rows],
            "best_epoch": self.best_epoch,
            "stopped_early": self.stopped_early,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> History:
        """The History of :meth:`to_dict`'s data (without the train states)."""
        return cls(
            tuple(dict(r) for r in data["rows"]),
            data.get("best_epoch"),
            bool(data.get("stopped_early", False)),
        )


# --------------------------------------------------------------------------- fit


@attrs.frozen
class _Run:
    """What stays fixed over a run of ``fit``."""

    loss: Loss
    optimizer: Optimizer
    metrics: dict[str, Metric]
    key: random.Key | None
    batch_size: int | None
    drop_last: bool
    data: Any


def _check_key(key: Any) -> random.Key | None:
    if key is not None and not isinstance(key, random.Key):
        raise fail("fit", "key", "an fnbp key (fb.random.key(seed)) or None", key)
    return key


def _epoch_batches(
    run: _Run, x: Any, y: Any, epoch: int, gather: Callable[[np.ndarray], Any], outside: Mapping
) -> Iterator[tuple[Any, Any]]:
    """The minibatches of one epoch: ``gather(index)`` of ``x`` shuffled from the key (in
    order when it is None), or as the user's ``data`` gives them -- their code run in
    numpy's error state from ``outside`` fit (``np.geterr()``), not in the steps'."""
    if run.data is not None:
        with np.errstate(**outside):
            source = run.data(epoch) if callable(run.data) else run.data
        if not isinstance(source, Iterable) or isinstance(source, str | bytes):
            raise fail("fit", "data", "an iterable of (x, y) pairs (data(epoch) gave none)", source)
        count = 0
        for item in _in_errstate(source, outside):
            if type(item) is not tuple or len(item) != 2:
                raise fail("fit", "data", "an iterable of (x, y) pairs", item)
            count += 1
            yield item
        if not count:
            raise ValueError(
                f"fit: data gave no batches in epoch {epoch} (a generator can be iterated "
                "once: pass a list, or a function epoch -> iterable)"
            )
        return
    key = None if run.key is None else random.fold_in(run.key, epoch)
    batch_size = run.batch_size if run.batch_size is not None else 1  # set whenever x is given
    for idx in batches(key, _length(x, "fit"), batch_size, drop_last=run.drop_last):
        yield gather(idx), y[idx]


def _in_errstate(source: Iterable, errors: Mapping) -> Iterator[Any]:
    """The items of ``source``, each taken in numpy's error state ``errors``."""
    items = iter(source)
    while True:
        with np.errstate(**errors):
            item = next(items, _END)
        if item is _END:
            return
        yield item


_END = object()


def _diverged(epoch: int, step: int, what: str, good: TrainState) -> DivergenceError:
    """The error for a non-finite ``what`` at ``step`` of ``epoch``; ``good`` is the last
    state whose loss was finite."""
    return DivergenceError(
        f"training diverged at epoch {epoch}, step {step}: {what} is not finite. Try a "
        "smaller learning rate (10x), gradient clipping (fb.optim.clip_by_global_norm), or "
        "check the data for NaN/inf. The last good params are in this error's .params (and "
        "its whole TrainState in .train_state).",
        good.params,
        good,
        epoch=epoch,
        step=step,
    )


def _check_batch(xb: Any, yb: Any, epoch: int, step: int) -> None:
    """A ValueError if the minibatch itself holds a NaN or inf (from ``data=``, which is
    not checked ahead): then the data is to blame, not the learning rate."""
    where = f"fit: the batch of epoch {epoch}, step {step}"
    for path, a in tree.leaves_with_paths(xb):
        check_finite(where, _x_name(path), a)
    check_finite(where, "the targets", numeric(yb, where, "targets"))


class _Loop:
    """The updates of a run, and the running sums of the current round."""

    def __init__(self, run: _Run, x: Any, y: Any) -> None:
        self.run, self.x, self.y = run, x, y
        self.sums: dict[str, float] = {}
        self.seen = 0
        self.good: TrainState | None = None  # the last state whose loss was finite
        self.kept: np.ndarray | None = None  # the minibatch array gathered into, if any
        self.keep = False
        self.outside = np.geterr()  # the caller's numpy error state, for the caller's code

    def gather(self, index: np.ndarray) -> Any:
        """``x[index]``: into the array the last minibatch was gathered into when nothing
        can still hold it (``self.keep``: every layer is fnbp's own, and the prediction
        was not a view of it), else a new array. The indices come from ``batches``, a
        permutation of ``range(n)``, so the fast ``mode="clip"`` takes them as they are."""
        x, kept = self.x, self.kept
        if type(x) is not np.ndarray:
            return _take(x, index)
        if kept is not None and len(kept) == len(index):
            return x.take(index, axis=0, out=kept, mode="clip")
        out = x[index]
        self.kept = out if self.keep else None
        return out

    def rounds(self, ts: TrainState, budget: _Budget) -> Iterator[tuple[TrainState, bool]]:
        """``(state, False)`` where a round ends within an epoch or the budget is spent,
        and ``(state, True)`` at the end of each epoch, epoch after epoch, from where
        ``ts`` is. The steps between run in one ``np.errstate(all="ignore")`` (a NaN
        or inf is caught after each step, with advice), entered once per run of steps:
        nothing else runs there, no callback or evaluation."""
        self.keep = _keeps_no_input(ts.params)
        while True:
            epoch, skip = int(ts.epoch), int(ts.epoch_step)
            epoch_key = None if self.run.key is None else random.fold_in(self.run.key, epoch)
            batches = enumerate(
                _epoch_batches(self.run, self.x, self.y, epoch, self.gather, self.outside)
            )
            while True:
                with np.errstate(all="ignore"):
                    ts, stopped = self._steps(ts, batches, skip, epoch_key, budget)
                if not stopped:
                    break
                yield ts, False
            ts = attrs.evolve(ts, epoch=counter(epoch + 1), epoch_step=counter(0))
            yield ts, True

    def _steps(
        self,
        ts: TrainState,
        batches: Iterator[tuple[int, tuple[Any, Any]]],
        skip: int,
        epoch_key: random.Key | None,
        budget: _Budget,
    ) -> tuple[TrainState, bool]:
        """Steps on ``batches`` until a round ends or the budget is spent, ``(state,
        True)``, or the epoch's batches run out, ``(state, False)``."""
        for i, (xb, yb) in batches:
            if i >= skip:
                key = None if epoch_key is None else random.fold_in(epoch_key, i)
                ts = self.step(ts, xb, yb, key)
                if budget.round_ends(ts, False) or budget.done(ts):
                    return ts, True
        return ts, False

    def step(self, ts: TrainState, xb: Any, yb: Any, key: random.Key | None) -> TrainState:
        epoch, i = int(ts.epoch), int(ts.epoch_step)
        try:
            new, value, pred = train_step(ts, self.run.loss, self.run.optimizer, xb, yb, key=key)
        except DivergenceError as e:  # an optimizer's moments overflowed
            raise _diverged(epoch, i, f"an update ({e})", self.good or ts) from None
        if not math.isfinite(value):
            _check_batch(xb, yb, epoch, i)
            raise _diverged(epoch, i, "the loss", self.good or ts)
        self.good = ts
        kept = self.kept
        if kept is not None and (type(pred) is not np.ndarray or np.may_share_memory(pred, kept)):
            self.kept = None  # the prediction may be a view of the batch: a metric may keep it
        n = _length(xb, "fit")
        self.sums["loss"] = self.sums.get("loss", 0.0) + float(value) * n
        if self.run.metrics and fused_loss(ts.params, self.run.loss) is not None:
            pred = ts.params.layers[-1].forward(pred)  # train_step gave the fused loss's input
        if self.run.metrics:
            with np.errstate(**self.outside):  # a metric of yours: in your error state
                for name, fn in self.run.metrics.items():
                    self.sums[name] = self.sums.get(name, 0.0) + float(fn(pred, yb)) * n
        self.seen += n
        return new

    def round_logs(self) -> dict[str, float]:
        """The mean loss and metrics over the round's samples; the sums start again."""
        logs = {k: v / self.seen for k, v in self.sums.items()}
        self.sums, self.seen = {}, 0
        return logs


def _keeps_no_input(net: Any) -> bool:
    """Whether no layer of ``net`` can hold its input after a step: a ``Serial`` (or one
    layer) of fnbp's own layers (:func:`~fnbp.core.verified`), whose inputs live only
    in their pullbacks. Then ``fit`` gathers every minibatch into one array."""
    if type(net) is Serial:
        return all(_keeps_no_input(layer) for layer in net.layers)
    return verified(net)


def _finite_params(ts: TrainState) -> bool:
    return all(all_finite(leaf) for leaf in tree.leaves(ts.params))


def _progress(enabled: bool | str, total: int | None) -> Any:
    """A tqdm bar over rounds when wanted and installed (the ``examples`` extra)."""
    if not (enabled == "auto" or isinstance(enabled, bool)):
        raise fail("fit", "progress", "True, False or 'auto'", enabled)
    if enabled == "auto":
        enabled = (total or 0) >= 20 and sys.stderr.isatty()
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="round")


@attrs.frozen
class _Stopper:
    """Early stopping on ``monitor``: ``patience`` rounds without an improvement of
    more than ``min_delta`` in the direction of ``mode``."""

    monitor: str
    mode: str
    min_delta: float
    patience: int | None
    restore: bool

    def better(self, value: float, best: float | None) -> bool:
        if best is None:
            return True
        if self.mode == "min":
            return value < best - self.min_delta
        return value > best + self.min_delta


def _stopper(
    monitor: Any, mode: Any, min_delta: Any, patience: Any, restore: Any, val: bool
) -> _Stopper:
    if patience is not None:
        patience = check_int("fit", "patience", patience, low=0)
    name = monitor if monitor is not None else ("val_loss" if val else "loss")
    if not isinstance(name, str):
        raise fail("fit", "monitor", "the name of a logged quantity", monitor)
    mode = check_choice("fit", "mode", mode, ("auto", "min", "max"))
    if mode == "auto":
        mode = "max" if "accuracy" in name else "min"
    delta = check_real("fit", "min_delta", min_delta, low=0.0)
    restore = check_bool(
        "fit", "restore_best", patience is not None if restore is None else restore
    )
    return _Stopper(name, mode, delta, patience, restore)


def fit(
    init: Any,
    loss: Loss,
    x: Any = None,
    y: Any = None,
    *,
    optimizer: Optimizer,
    epochs: int | None = None,
    steps: int | None = None,
    batch_size: int | None = None,
    key: random.Key | None,
    data: Iterable | Callable[[int], Iterable] | None = None,
    eval_every: int | None = None,
    validation: tuple[Any, Any] | None = None,
    metrics: Sequence[str] | Mapping[str, Metric] = (),
    patience: int | None = None,
    monitor: str | None = None,
    mode: str = "auto",
    min_delta: float = 0.0,
    restore_best: bool | None = None,
    callbacks: Sequence[Callback] = (),
    drop_last: bool = False,
    history: History | None = None,
    progress: bool | str = "auto",
) -> tuple[Any, History]:
    """Train on ``(x, y)`` in minibatches; return ``(params, history)``.

    ``init`` is the network to train, or a :class:`~fnbp.TrainState` to resume
    (its params, optimizer and model state, and how far it got). Training runs
    until ``epochs`` passes over the data or ``steps`` updates *in total* have
    been made (at least one of the two; resuming with the same arguments
    finishes the same run). Each step is a :func:`~fnbp.train_step` in
    training mode with the key ``fold_in(fold_in(key, epoch), i)``; each epoch
    is shuffled with ``fold_in(key, epoch)``. ``key=None`` keeps the data in
    its order and gives layers no key (Dropout then refuses to train).

    Data: arrays ``x`` (or a tree of arrays) and ``y`` with ``batch_size``
    (and ``drop_last``), or ``data``: an iterable of ``(x_batch, y_batch)``
    pairs -- or a function ``epoch -> iterable`` -- gone through once per
    epoch, in its own order.

    Rounds: after every epoch, or every ``eval_every`` steps (and when the
    budget is reached), the round's mean training loss and ``metrics`` (e.g.
    ``("accuracy",)``) and, with ``validation=(x_val, y_val)``, the validation
    loss and metrics go into a row of the :class:`History`; each callback is
    then called as ``callback(train_state, logs)`` with a copy of the row:
    returning True stops training, returning a dict of numbers adds them to the
    row (``fb.diagnostics`` records per-layer gradient norms this way). With
    ``patience``, training stops after that many rounds without an improvement
    of ``monitor`` (default ``"val_loss"``, or ``"loss"`` without validation
    data) by more than ``min_delta``; ``mode``
    is ``"min"``, ``"max"`` or ``"auto"`` (max for accuracies). Then (or with
    ``restore_best=True``) the best round's params are returned, with its
    whole TrainState in ``history.train_state``. ``history`` is the History of
    the run being resumed; its rows come first.

    Training or validation data holding a NaN or inf is a ``ValueError`` before
    the first step (a batch from ``data=`` when its loss turns NaN), and so is
    empty data: that is the data's fault, not the learning rate's. A NaN or inf
    loss or parameter, an optimizer's moments overflowing, or a NaN monitored
    value raises :class:`~fnbp.DivergenceError`, which carries the last good state.
    ``progress`` shows a tqdm bar (if installed); ``"auto"``: on a terminal.
    """
    optimizer = check_optimizer("fit", optimizer)
    loss = check_loss("fit", loss)
    ts = _resumed(init, optimizer)
    budget = _Budget(
        None if epochs is None else check_int("fit", "epochs", epochs, low=0),
        None if steps is None else check_int("fit", "steps", steps, low=0),
        None if eval_every is None else check_int("fit", "eval_every", eval_every, low=1),
    )
    if budget.epochs is None and budget.steps is None:
        raise ValueError("fit: give epochs= or steps= (the total to train for)")
    run, x, y = _setup(ts, loss, optimizer, x, y, key, batch_size, drop_last, data, metrics)
    val = None
    if validation is not None:
        if type(validation) not in (tuple, list) or len(validation) != 2:
            raise fail("fit", "validation", "a pair (x_val, y_val)", validation)
        val = _as_data(ts.params, *validation, "fit validation")
    stopper = _stopper(monitor, mode, min_delta, patience, restore_best, val is not None)
    if history is not None and not isinstance(history, History):
        raise fail("fit", "history", "the History of the run being resumed", history)
    rows = list(history.rows) if history is not None else []
    callbacks = _check_callbacks(callbacks)
    bar = _progress(progress, budget.epochs if budget.every is None else None)
    try:
        return _loop(run, ts, x, y, val, stopper, budget, callbacks, rows, bar)
    finally:
        workspace.clear()  # the kept arrays of its steps go with the run
        if bar is not None:
            bar.close()


@attrs.frozen
class _Budget:
    epochs: int | None
    steps: int | None
    every: int | None

    def done(self, ts: TrainState) -> bool:
        return (self.epochs is not None and int(ts.epoch) >= self.epochs) or (
            self.steps is not None and int(ts.step) >= self.steps
        )

    def round_ends(self, ts: TrainState, epoch_end: bool) -> bool:
        if self.every is None:
            return epoch_end
        return not epoch_end and int(ts.step) % self.every == 0


def _check_callbacks(callbacks: Any) -> tuple:
    callbacks = check_sequence("fit", "callbacks", callbacks, "functions (train_state, logs)")
    for i, cb in enumerate(callbacks):
        check_callable("fit", f"callbacks[{i}]", cb, "a function (train_state, logs)", n_args=2)
    return callbacks


def _resumed(init: Any, optimizer: Optimizer) -> TrainState:
    """The TrainState to start from: ``init`` itself, whose optimizer state must have the
    structure ``optimizer.init`` gives (the same optimizer), or a new one for a network."""
    if not isinstance(init, TrainState):
        check_layer(init, "fit", "init")
        return TrainState.create(init, optimizer)
    check_layer(init.params, "fit", "init.params")
    try:
        tree.assert_same_structure(optimizer.init(init.params), init.opt_state)
    except LocatedError as e:
        raise StructureError(
            f"fit: init is a TrainState whose opt_state was not made by optimizer= "
            f"(resume with the optimizer it was made with): {e}"
        ) from None
    return init


def _setup(
    ts: TrainState,
    loss: Loss,
    optimizer: Optimizer,
    x: Any,
    y: Any,
    key: Any,
    batch_size: Any,
    drop_last: Any,
    data: Any,
    metrics: Any,
) -> tuple[_Run, Any, Any]:
    key = _check_key(key)
    drop_last = check_bool("fit", "drop_last", drop_last)
    if data is None:
        if x is None or y is None:
            raise ValueError("fit: give the data as x and y (with batch_size), or as data=")
        if batch_size is None:
            raise ValueError("fit: batch_size is needed with x and y")
        batch_size = check_int("fit", "batch_size", batch_size, low=1)
        x, y = _as_data(ts.params, x, y, "fit")
        n = _length(x, "fit")
        if drop_last and batch_size > n:
            raise ValueError(f"fit: batch_size {batch_size} > {n} samples with drop_last: no batch")
    elif x is not None or y is not None:
        raise ValueError("fit: give either x and y, or data=, not both")
    elif not (callable(data) or isinstance(data, Iterable)):
        raise fail(
            "fit", "data", "an iterable of (x, y) batches or a function epoch -> iterable", data
        )
    run = _Run(loss, optimizer, _metric_fns(metrics, loss, "fit"), key, batch_size, drop_last, data)
    return run, x, y


def _loop(
    run: _Run,
    ts: TrainState,
    x: Any,
    y: Any,
    val: Any,
    stopper: _Stopper,
    budget: _Budget,
    callbacks: tuple,
    rows: list,
    bar: Any,
) -> tuple[Any, History]:
    best: tuple[float | None, TrainState, int | None] = (None, ts, None)
    since_best, stopped = 0, False
    loop = _Loop(run, x, y)
    start = time.perf_counter()
    updates = iter(()) if budget.done(ts) else loop.rounds(ts, budget)
    for ts, epoch_end in updates:
        finished = budget.done(ts)
        if not (budget.round_ends(ts, epoch_end) or finished) or (not loop.seen and rows):
            if finished:
                break
            continue
        if not _finite_params(ts):
            raise _diverged(int(ts.epoch), int(ts.epoch_step), "a parameter", loop.good or ts)
        logs = {"epoch": int(ts.epoch), "step": int(ts.step), **loop.round_logs()}
        if val is not None:
            logs.update(
                {
                    f"val_{k}": v
                    for k, v in evaluate(ts, run.loss, *val, metrics=run.metrics).items()
                }
            )
        logs["time"] = time.perf_counter() - start
        start = time.perf_counter()
        rows.append(logs)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{logs.get('loss', math.nan):.4g}")
        stop = False
        for cb in callbacks:  # each sees a copy; a dict it returns joins the row
            out = cb(ts, dict(logs))
            if isinstance(out, Mapping):
                logs.update(_recorded(out))
            stop = stop or out is True
        in_epoch = int(ts.epoch) - 1 if epoch_end else int(ts.epoch)
        best, since_best = _track(stopper, logs, ts, in_epoch, best, since_best)
        stopped = stopper.patience is not None and 0 < since_best and since_best >= stopper.patience
        if stop or stopped or finished:
            break
    chosen = best[1] if stopper.restore and best[0] is not None else ts
    return chosen.params, History(tuple(rows), best[2], stopped, chosen, ts)


def _recorded(values: Mapping) -> dict[str, float]:
    """A callback's values for the History row: names to numbers."""
    out = {}
    for name, value in values.items():
        if not isinstance(name, str):
            raise fail("fit", "a callback's returned dict", "str keys", name)
        out[name] = float(value)
    return out


def _track(
    stopper: _Stopper, logs: dict, ts: TrainState, epoch: int, best: tuple, since: int
) -> tuple:
    """The best (value, state, epoch) so far and the rounds since it, after this round."""
    if stopper.monitor not in logs:
        if stopper.patience is None and not stopper.restore:
            return best, since
        raise fail(
            "fit", "monitor", f"one of the logged quantities {sorted(logs)}", stopper.monitor
        )
    value = float(logs[stopper.monitor])
    if math.isnan(value):
        raise _diverged(int(ts.epoch), int(ts.epoch_step), f"the monitored {stopper.monitor}", ts)
    if stopper.better(value, best[0]):
        return (value, ts, epoch), 0
    return best, since + 1
