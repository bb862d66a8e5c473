"""See inside a network: ``trace`` one step layer by layer, ``summary`` its shapes and sizes.

:func:`trace` is the teaching notebook's ``verbose=True``, done functionally: it
runs one forward and backward pass and hands back, for every layer by its path
(``layers[2]``, ``layers[1].f.layers[0]``), what went in and out in both
directions -- the input ``x``, the output ``y``, the incoming gradient ``g_y``,
the outgoing ``g_x`` and the parameter gradients -- as data and as a table.

:func:`summary` propagates an input *shape* through the network (a batch of
zero samples: no data is needed, nothing is computed) and lists every layer's
output shape and parameters, with the totals::

    >>> import fnbp as fb
    >>> print(fb.summary(fb.mlp(fb.random.key(0), [784, 256, 10]), (784,)))  # doctest: +SKIP
    layer              output       params  shapes                 bytes
    layers[0] Dense(784 -> 256)  (N, 256)   200,960  W (784, 256), b (256,)  803,840
    ...

Both watch the network through :data:`fnbp.core.OBSERVER`, the one hook in the
call every combinator makes for its children: nothing else is traced or slowed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import attrs
import numpy as np

from . import random, tree
from .core import OBSERVER, Context, Pullback, as_input, init_state, vjp_ctx
from .validation import check_int, fail

__all__ = ["LayerTrace", "Trace", "trace", "Summary", "summary", "diagnostics"]


@attrs.frozen
class LayerTrace:
    """One layer's part in a step: ``x`` in, ``y`` out; ``g_y`` in, ``g_x`` and ``grads`` out.

    ``path`` is the layer's place (``""`` for the whole network), ``depth`` how deep it
    sits, ``calls`` how often it ran (a cell in a time loop runs once per step; the
    arrays are those of its last call).
    """

    path: str
    layer: Any
    depth: int
    x: Any
    y: Any
    g_y: Any = None
    g_x: Any = None
    grads: Any = None
    calls: int = 1


class _Recorder:
    """The observer: builds paths from the nested ``where``s and records each call."""

    def __init__(self) -> None:
        self.stack: list[str] = []
        self.rows: dict[str, dict[str, Any]] = {}

    def path(self) -> str:
        out = ""
        for part in self.stack:
            out = part if not out else (out + part if part.startswith("[") else f"{out}.{part}")
        return out

    def enter(self, where: str) -> None:
        self.stack.append(where)
        self.rows.setdefault(self.path(), {"calls": 0})  # a slot in the order layers start

    def abandon(self) -> None:
        path = self.path()
        self.stack.pop()
        if not self.rows[path]["calls"]:
            del self.rows[path]

    def leave(self, layer: Any, x: Any, y: Any, pullback: Pullback) -> Pullback:
        path = self.path()
        self.stack.pop()
        row = self.rows[path]
        row.update(layer=layer, depth=len(self.stack) + 1, x=x, y=y, calls=row["calls"] + 1)

        def recorded(g_y: Any) -> tuple[Any, Any]:
            g_x, grads = pullback(g_y)
            row.update(g_y=g_y, g_x=g_x, grads=grads)
            return g_x, grads

        return recorded

    def traces(self, root: dict[str, Any]) -> tuple[LayerTrace, ...]:
        rows = [LayerTrace("", depth=0, **root)]
        rows += [LayerTrace(path, **row) for path, row in self.rows.items()]
        return tuple(rows)


def _watch(net: Any, x: Any, ctx: Context, backward: Any) -> tuple[_Recorder, dict, Any]:
    """Run ``net`` on ``x`` under a recorder; ``backward(y) -> g_y`` or None for no backward."""
    recorder = _Recorder()
    token = OBSERVER.set(recorder)
    try:
        y, pullback, _ = vjp_ctx(net, x, True, ctx)
        root: dict[str, Any] = {"layer": net, "x": x, "y": y}
        out = None
        if backward is not None:
            out, g_y = backward(y)
            g_x, grads = pullback(g_y)
            root.update(g_y=g_y, g_x=g_x, grads=grads)
    finally:
        OBSERVER.reset(token)
    return recorder, root, out


def _norm(t: Any) -> float | None:
    leaves = [a for a in tree.leaves(t) if np.asarray(a).dtype.kind == "f"]
    return tree.global_norm(leaves) if leaves else None


def _shape(t: Any, batch: str | None = None) -> str:
    def one(a: Any) -> str:
        shape = [str(n) for n in np.shape(a)]
        if batch is not None and shape:
            shape[0] = batch
        return "(" + ", ".join(shape) + ("," if len(shape) == 1 else "") + ")"

    leaves = tree.leaves(t)
    if not tree.is_leaf(t) and leaves:
        return "(" + ", ".join(one(a) for a in leaves) + ")"
    return one(t) if leaves else "-"


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.3g}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in [header, *rows]]  # fmt: skip
    return "\n".join(lines)


def _name(t: LayerTrace) -> str:
    label = t.path or "(network)"
    return "  " * max(t.depth - 1, 0) + label


def _brief(layer: Any, inner: bool, width: int = 36) -> str:
    """A layer's repr on one line; a combinator's class name only (its layers have rows)."""
    if inner:
        return type(layer).__name__
    text = " ".join(repr(layer).split())
    return text if len(text) <= width else text[: width - 3] + "..."


def _inner(traces: tuple[LayerTrace, ...]) -> list[bool]:
    paths = [t.path for t in traces]
    return [any(_inside(p, t.path) for p in paths) for t in traces]


@attrs.frozen
class Trace:
    """Every layer's :class:`LayerTrace` in the order they ran, and the ``loss`` value.

    ``trace[path]`` is one layer's; ``str(trace)`` a table of shapes, norms and the
    first values of each output.
    """

    layers: tuple[LayerTrace, ...]
    loss: float | None = None

    def __getitem__(self, path: str) -> LayerTrace:
        for t in self.layers:
            if t.path == path:
                return t
        raise fail("Trace", "path", f"one of {[t.path for t in self.layers]}", path)

    def __iter__(self) -> Iterator[LayerTrace]:
        return iter(self.layers)

    def __str__(self) -> str:
        header = ["layer", "type", "x", "y", "|y|", "first y", "|g_y|", "|g_x|", "|grads|"]
        rows = []
        for t, inner in zip(self.layers, _inner(self.layers), strict=True):
            first: Any = np.ravel(tree.leaves(t.y)[0])[:3] if tree.leaves(t.y) else []
            grads = _norm(t.grads) if t.grads is not None and t.grads is not t.layer else None
            rows.append([
                _name(t), _brief(t.layer, inner), _shape(t.x), _shape(t.y), _num(_norm(t.y)),
                " ".join(f"{v:.3g}" for v in first), _num(_norm(t.g_y)), _num(_norm(t.g_x)),
                _num(grads),
            ])  # fmt: skip
        loss = "" if self.loss is None else f"loss {self.loss:.6g}\n"
        return loss + _table(header, rows)


def trace(
    net: Any,
    x: Any,
    target: Any = None,
    loss: Any = None,
    *,
    train: bool = False,
    key: random.Key | None = None,
    state: Any = None,
) -> Trace:
    """One step of ``net`` on the batch ``x``, recorded layer by layer.

    With a ``loss`` and its ``target``, the backward pass runs too, from the
    loss's gradient, and every layer's ``g_y``, ``g_x`` and ``grads`` are kept
    (no layer is fused into the loss here: each one shows). Without them only
    the forward pass runs. ``train``, ``key`` and ``state`` are as for
    :func:`fnbp.forward`. Nothing is modified; the arrays in the trace are the
    ones the step computed.
    """
    if (loss is None) != (target is None):
        raise fail("trace", "loss", "given together with target (or neither)", loss)
    backward = None if loss is None else (lambda y: loss.value_and_grad(y, target))
    recorder, root, value = _watch(net, as_input(x, "trace"), Context(train, key, state), backward)
    return Trace(recorder.traces(root), None if value is None else float(value))


@attrs.frozen
class Summary:
    """Per layer: its path, output shape, parameter shapes, count and bytes; and totals."""

    rows: tuple[tuple[str, str, str, str, int, int], ...]
    total_params: int
    total_bytes: int

    def __str__(self) -> str:
        header = ["layer", "type", "output", "params", "shapes", "bytes"]
        body = [[p, t, o, f"{n:,}" if n else "-", s, f"{b:,}" if b else "-"]
                for p, t, o, s, n, b in self.rows]  # fmt: skip
        table = _table(header, body)
        return f"{table}\ntotal: {self.total_params:,} parameters, {self.total_bytes:,} bytes"


def _inside(path: str, outer: str) -> bool:
    """Whether the layer at ``path`` sits inside the one at ``outer``."""
    if not outer:
        return bool(path)
    return path.startswith(outer + ".") or path.startswith(outer + "[")


def _own_params(layer: Any) -> tuple[str, int, int]:
    """The shapes, count and bytes of the arrays a layer itself holds."""
    leaves = tree.leaves_with_paths(layer)
    shapes = ", ".join(f"{p} {np.shape(a)}" for p, a in leaves)
    count = sum(int(np.size(a)) for _, a in leaves)
    nbytes = sum(int(np.asarray(a).nbytes) for _, a in leaves)
    return shapes, count, nbytes


def summary(net: Any, input_shape: tuple[int, ...], *, dtype: Any = None) -> Summary:
    """The shapes and sizes of ``net`` for inputs of per-sample shape ``input_shape``.

    The shape is propagated without data, through a batch of zero samples (so
    ``N`` stands for the batch size), in inference with the network's initial
    state. Use it to ask what width a ``Dense`` after a ``Flatten`` needs::

        fb.summary(fb.Serial(conv_layers), (28, 28, 1))   # the output shape of the last one

    Parameters are counted where they live (the innermost layers), so the
    total counts each array once. ``dtype`` is the input's (default: the first
    parameter's float dtype; integer ids for a first ``Embedding``).
    """
    shape = tuple(check_int("summary", "input_shape", n, low=0) for n in input_shape)
    if dtype is None:
        leaves = [a for a in tree.leaves(net) if np.asarray(a).dtype.kind == "f"]
        dtype = leaves[0].dtype if leaves else np.float64
    x = np.zeros((0, *shape), dtype)
    recorder, root, _ = _watch(net, x, Context(False, None, init_state(net)), None)
    traces = recorder.traces(root)
    rows, total, total_bytes = [], 0, 0
    for t, inner in zip(traces, _inner(traces), strict=True):
        shapes, count, nbytes = ("", 0, 0) if inner else _own_params(t.layer)
        total, total_bytes = total + count, total_bytes + nbytes
        rows.append((_name(t), _brief(t.layer, inner), _shape(t.y, "N"), shapes, count, nbytes))
    return Summary(tuple(rows), total, total_bytes)


_DEAD = ("ReLU", "LeakyReLU", "ELU", "GELU", "SiLU")  # units that can stop passing gradient
_SATURATING = {"Sigmoid": (0.0, 1.0), "Tanh": (-1.0, 1.0)}


def _leaf_rows(t: Trace) -> list[LayerTrace]:
    """The innermost layers: those that hold their own arrays or compute themselves."""
    return [lt for lt, inner in zip(t.layers, _inner(t.layers), strict=True) if not inner]


def _activity(lt: LayerTrace) -> dict[str, float]:
    """Dead-unit and saturation fractions of one activation layer's output."""
    name, y = type(lt.layer).__name__, lt.y
    if type(y) is not np.ndarray or y.ndim < 2:
        return {}
    if name in _DEAD:
        units = (y > 0).reshape(-1, y.shape[-1]).any(axis=0)
        return {f"dead/{lt.path}": float(1.0 - units.mean())}
    if name in _SATURATING:
        low, high = _SATURATING[name]
        near = (y - low < 0.01 * (high - low)) | (high - y < 0.01 * (high - low))
        return {f"saturated/{lt.path}": float(near.mean())}
    return {}


def diagnostics(loss: Any, x: Any, y: Any) -> Any:
    """A ``fit`` callback that records, after every round, how each layer is doing.

    On the probe batch ``(x, y)`` (in inference, with the run's model state) it
    traces one step and adds to the History row, for each layer by its path:

    * ``grad_norm/<path>``: the norm of the layer's parameter gradient;
    * ``update_norm/<path>``: the norm of how far its params moved since the
      previous round (from the second round on);
    * ``dead/<path>``, for ReLU-like activations: the fraction of units that are
      never positive on the probe batch (they pass no gradient);
    * ``saturated/<path>``, for Sigmoid and Tanh: the fraction of outputs within
      1% of their limits (where the derivative vanishes).

    ``history.column("grad_norm/layers[0]")`` is then a curve over training;
    ``fnbp.plot.layer_norms(history)`` draws them. One callback may serve
    several runs in turn: when the step count goes back (a new run), the first
    round has no update norm, as in any run.
    """
    before: dict[str, Any] = {}
    last_step = [-1]

    def callback(ts: Any, logs: dict) -> dict[str, float]:
        if int(ts.step) <= last_step[0]:  # another run: its params are not a move from these
            before.clear()
        last_step[0] = int(ts.step)
        t = trace(ts.params, x, y, loss, state=ts.model_state)
        out: dict[str, float] = {}
        for lt in _leaf_rows(t):
            params = tree.leaves(lt.layer)
            if params:
                out[f"grad_norm/{lt.path}"] = tree.global_norm(tree.leaves(lt.grads))
                old = before.get(lt.path)
                if old is not None and [np.shape(a) for a in old] == [np.shape(a) for a in params]:
                    moved = [
                        np.subtract(a, b, dtype=np.float64)
                        for a, b in zip(params, old, strict=True)
                    ]
                    out[f"update_norm/{lt.path}"] = tree.global_norm(moved)
                before[lt.path] = params
            out.update(_activity(lt))
        return out

    return callback
