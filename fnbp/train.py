"""One training step as a pure function: ``value_and_grad``, ``TrainState``, ``train_step``.

A run carries one immutable record, a :class:`TrainState`: the params, the
optimizer state, the model state (BatchNorm's running statistics) and how
far it got. :func:`train_step` advances it by one minibatch, through
:func:`value_and_grad`; ``fb.fit`` is a loop over it, and anything a loop of
your own needs -- evaluation, checkpoints, resumption -- works on that record.

>>> import numpy as np, fnbp as fb
>>> x, y = fb.datasets.and_gate()
>>> net = fb.Serial((fb.Dense.init(fb.random.key(0), 2, 1), fb.Sigmoid()))
>>> opt = fb.optim.sgd(0.5)
>>> ts = fb.TrainState.create(net, opt)
>>> for _ in range(3):
...     ts, loss, _ = fb.train_step(ts, fb.binary_cross_entropy, opt, x, y)
>>> int(ts.step)
3
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import numpy as np

from . import random, validation, workspace
from .core import Context, as_input, context, init_state, vjp_ctx, watched
from .errors import StructureError
from .layers import Serial, Sigmoid
from .losses import BinaryCrossEntropy, Loss, binary_cross_entropy_of_sigmoid
from .optim import Optimizer, step
from .record import counter, nested_repr, param

__all__ = ["FUSIONS", "TrainState", "fused_loss", "value_and_grad", "train_step", "batches"]

FUSIONS: dict[tuple[type, type], Loss] = {
    (Sigmoid, BinaryCrossEntropy): binary_cross_entropy_of_sigmoid,
}
"""(output layer, loss) pairs whose chain rule collapses, and the loss that does it.

A ``Serial`` whose last layer is of the first class, trained with a loss of
the second, is trained with the fused loss on that layer's *input*: with
``p = sigmoid(z)``, ``dL/dz = dL/dp * p (1 - p) = (p - y) / N``, one
subtraction instead of two backward passes. The grads record is unchanged
(the parameterless layer stands for its own gradient). Used by
:func:`value_and_grad`, hence by :func:`train_step` and ``fit``.
"""


def fused_loss(net: Any, loss: Loss) -> Loss | None:
    """The loss that takes the input of ``net``'s last layer in place of ``loss`` on its
    output (the :data:`FUSIONS` entry for that pair), or None when no fusion applies;
    :func:`train_step`'s ``pred`` is then that input."""
    if type(net) is Serial and net.layers:
        return FUSIONS.get((type(net.layers[-1]), type(loss)))
    return None


def _run(net: Any, loss: Loss, x: Any, target: Any, ctx: Context) -> tuple:
    """``(value, grads, new_state, pred)``: one forward and one backward pass, no ``g_x``."""
    fused = fused_loss(net, loss)
    if fused is None:
        pred, pullback, new_state = vjp_ctx(net, as_input(x), False, ctx)
        value, g_pred = loss.value_and_grad(pred, target)
        return value, pullback(g_pred)[1], new_state, pred
    head, last = net.layers[:-1], net.layers[-1]
    states = ctx.state
    if states is not None and (type(states) is not tuple or len(states) != len(net.layers)):
        raise StructureError(f"Serial of {len(net.layers)} layers needs a tuple of states")
    head_ctx = Context(ctx.train, ctx.key, None if states is None else states[:-1])
    z, pullback, new_state = vjp_ctx(Serial.of_checked(head), as_input(x), False, head_ctx)
    value, g_z = fused.value_and_grad(z, target)
    grads = Serial.of_checked((*pullback(g_z)[1].layers, last))
    new_states = (*new_state, None if states is None else states[-1])
    return value, grads, new_states, z


def value_and_grad(
    net: Any,
    loss: Loss,
    x: Any,
    target: Any,
    *,
    train: bool = False,
    key: random.Key | None = None,
    state: Any = None,
) -> tuple:
    """``(loss_value, grads)`` for a batch in one forward and one backward pass.

    The input gradient is skipped: only the parameter gradients are computed.
    Where the network's output layer and the loss are a pair in
    :data:`FUSIONS` (a Sigmoid and cross-entropy), the loss takes that layer
    over. ``train``, ``key`` and ``state`` are as for :func:`fnbp.vjp`; with
    ``state=`` it returns ``(loss_value, grads, new_state)``.
    """
    loss = validation.check_loss("value_and_grad", loss)
    ctx = context("value_and_grad", train, key, state)
    value, grads, new_state, _ = _run(net, loss, x, target, ctx)
    return (value, grads) if state is None else (value, grads, new_state)


@attrs.frozen
class TrainState:
    """What a training run carries from one step to the next, as one immutable record.

    * ``params``: the network (a record of parameters);
    * ``opt_state``: the optimizer's state;
    * ``model_state``: the layers' state, such as BatchNorm's running statistics
      (``None`` or a tuple of ``None`` for networks that keep none);
    * ``step``: the number of updates made; ``epoch``: the number of passes over
      the data completed; ``epoch_step``: the updates made in the current pass
      (0-d int64 arrays, so a checkpoint template matches any value).

    Everything that evaluates a trained network takes the model state from
    here: ``fb.predict(ts, x)``, ``fb.evaluate(ts, ...)``.
    """

    params: Any
    opt_state: Any
    model_state: Any = None
    step: np.ndarray = param(kind="int", default=0)
    epoch: np.ndarray = param(kind="int", default=0)
    epoch_step: np.ndarray = param(kind="int", default=0)

    @classmethod
    def create(cls, params: Any, optimizer: Optimizer) -> TrainState:
        """The state before any step: ``optimizer.init(params)``, ``init_state(params)``."""
        validation.check_optimizer("TrainState.create", optimizer)
        return cls(params, optimizer.init(params), init_state(params))

    def __repr__(self) -> str:
        parts = [f"params={self.params!r}", f"opt_state={self.opt_state!r}"]
        parts.append(f"model_state={self.model_state!r}")
        parts += [f"{name}={int(getattr(self, name))}" for name in ("step", "epoch", "epoch_step")]
        return nested_repr("TrainState", parts)


def train_step(
    ts: TrainState,
    loss: Loss,
    optimizer: Optimizer,
    x: Any,
    y: Any,
    *,
    key: random.Key | None = None,
) -> tuple[TrainState, np.floating, Any]:
    """One update on the minibatch ``(x, y)``: ``(new_state, loss_value, pred)``.

    Runs the network in training mode (Dropout draws its mask from ``key``,
    BatchNorm uses the batch's statistics and updates ``ts.model_state``),
    takes the gradients with :func:`value_and_grad`, and applies the
    ``optimizer`` (for a ``Serial`` whose layers promise fresh gradients,
    ``Serial.fresh_grads``, with ``grads_handed=True``: nobody else sees these
    grads; the same bits, fewer new arrays). The layers' new arrays come from the
    thread's workspace (:func:`fnbp.scratch`: arrays of earlier steps that nothing
    references any more, so a fixed batch size causes no page faults).
    ``loss_value`` and ``pred`` (the network's output, or the fused loss's
    input) come from before the update.
    Pure: ``ts`` is unchanged.
    """
    if not isinstance(ts, TrainState):
        raise validation.fail("train_step", "ts", "a TrainState (fb.TrainState.create)", ts)
    loss = validation.check_loss("train_step", loss)
    optimizer = validation.check_optimizer("train_step", optimizer)
    ctx = context("train_step", True, key, ts.model_state)
    if watched():  # fb.trace keeps every array: nothing is handed over or reused
        value, grads, model_state, pred = _run(ts.params, loss, x, y, ctx)
        handed = False
    else:
        token = workspace.activate()  # the layers' large new arrays: kept ones
        try:
            value, grads, model_state, pred = _run(ts.params, loss, x, y, ctx)
        finally:
            workspace.deactivate(token)
        handed = type(ts.params) is Serial and ts.params.fresh_grads
    try:
        params, opt_state = step(optimizer, ts.params, grads, ts.opt_state, grads_handed=handed)
    except StructureError as e:
        raise StructureError(
            f"train_step: ts.opt_state does not fit this optimizer (a TrainState made with "
            f"another one?): {e}"
        ) from None
    new = TrainState(
        params,
        opt_state,
        model_state,
        counter(int(ts.step) + 1),
        ts.epoch,
        counter(int(ts.epoch_step) + 1),
    )
    return new, value, pred


def batches(key: random.Key | None, n: int, batch_size: int, *, drop_last: bool = False) -> list:
    """Index arrays splitting ``range(n)`` into minibatches for one epoch.

    Shuffled by a permutation drawn from ``key`` (in order when ``key`` is
    None). The last partial batch is kept unless ``drop_last``.
    """
    n = validation.check_size(
        "batches", "the index", validation.check_int("batches", "n", n, low=0)
    )
    batch_size = validation.check_int("batches", "batch_size", batch_size, low=1)
    order = np.arange(n) if key is None else random.permutation(key, n)
    stop = n - n % batch_size if drop_last else n
    return [order[i : i + batch_size] for i in range(0, stop, batch_size)]


Metric = Callable[[np.ndarray, np.ndarray], float]
