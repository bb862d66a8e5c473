"""The numpy limit: the fastest MLP training step written by hand in numpy.

The model is ``mlp_throughput.py``'s 784-256-256-10 MLP (ReLU, softmax
cross-entropy on integer labels, mean over the batch, plain SGD). One
:meth:`NumpyLimit.step` is what a person who knows numpy well would write for
exactly this network, with no library around it:

* one workspace of buffers per batch shape, allocated on first use and kept:
  every matrix product writes into one with ``out=``;
* the bias add and the ReLU run in place on the fresh product;
* the loss value and its gradient are fused: ``(softmax - onehot) / N``
  overwrites the logits buffer;
* no gradient with respect to the first layer's input (the data);
* the ReLU backward masks the incoming gradient in place, and the gradient
  entering layer 1 reuses the (then dead) buffer of layer 2's activations;
* bias gradients as a vector of ones times the gradient (or ``sum(0)``);
* in-place SGD on its own copies of the parameters: ``g *= -lr; W += g``.

Where numpy offers more than one way to do an operation, :func:`choose`
times the candidates on buffers of the real shapes and the step uses the
fastest (``CHOICES``); the benchmark prints those timings.

``NumpyLimit(params, lr, fold_lr=True)`` is one step further: it folds the
learning rate into the loss gradient (``-lr * (softmax - onehot) / N``), so
every gradient comes out already scaled and the update is a single ``W += g``
pass. That trick is only open to a step that knows it runs plain SGD; it is
reported as a separate row.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence

import numpy as np

Params = list[tuple[np.ndarray, np.ndarray]]

__all__ = ["CHOICES", "Choice", "NumpyLimit", "choose", "default_choice"]


class Choice:
    """How the step does the operations numpy offers several ways to do."""

    def __init__(self, gemm: str, relu_zero: str, mask: str, bias: str) -> None:
        self.gemm, self.relu_zero, self.mask, self.bias = gemm, relu_zero, mask, bias

    def __repr__(self) -> str:
        return (
            f"Choice(gemm={self.gemm!r}, relu_zero={self.relu_zero!r}, "
            f"mask={self.mask!r}, bias={self.bias!r})"
        )


#: the candidates per decision, as (label, what the step does)
CHOICES: dict[str, dict[str, str]] = {
    "gemm": {
        "matmul": "np.matmul(a, b, out=c)",
        "dot": "np.dot(a, b, out=c)",
    },
    "relu_zero": {
        "scalar": "np.maximum(h, 0.0, out=h)",
        "row": "np.maximum(h, zeros_row, out=h)  (a (256,) row of zeros)",
        "matrix": "np.maximum(h, zeros, out=h)  (a kept (N, 256) zero matrix)",
    },
    "mask": {
        "bool": "np.greater(h, 0.0, out=mask_bool); np.multiply(g, mask_bool, out=g)",
        "float": "np.greater(h, 0.0, out=mask_f32); np.multiply(g, mask_f32, out=g)",
    },
    "bias": {
        "ones": "gemm(ones_N, g, out=g_b)",
        "sum": "g.sum(axis=0, out=g_b)",
    },
}


def default_choice() -> Choice:
    """What :func:`choose` picks on the benchmark machine (numpy 2.4, OpenBLAS)."""
    return Choice(gemm="matmul", relu_zero="matrix", mask="bool", bias="ones")


class _Workspace:
    """Every buffer one step at batch ``n`` needs, allocated once."""

    def __init__(self, n: int, sizes: Sequence[int], dtype: np.dtype, choice: Choice) -> None:
        _, d1, d2, d3 = sizes
        if d1 != d2:
            raise ValueError("the workspace shares one buffer between the two hidden layers")
        self.h1 = np.zeros((n, d1), dtype)
        self.h2 = np.zeros((n, d2), dtype)  # later the gradient entering layer 1
        self.g2 = np.zeros((n, d2), dtype)
        self.z = np.zeros((n, d3), dtype)  # logits, then dL/dz
        self.z_flat = self.z.reshape(-1)
        self.mask = np.zeros((n, d1), bool if choice.mask == "bool" else dtype)
        self.zero = {
            "scalar": 0.0,
            "row": np.zeros(d1, dtype),
            "matrix": np.zeros((n, d1), dtype),
        }[choice.relu_zero]
        self.ones_n = np.ones(n, dtype)
        self.ones_c = np.ones(d3, dtype)
        self.row_max = np.zeros((n, 1), dtype)
        self.total = np.zeros(n, dtype)
        self.total_col = self.total.reshape(n, 1)
        self.log_total = np.zeros(n, dtype)
        self.picked = np.zeros(n, dtype)
        self.row_start = np.arange(n, dtype=np.intp) * d3
        self.idx = np.zeros(n, np.intp)
        self.gemm: Callable = np.matmul if choice.gemm == "matmul" else np.dot
        self.bias_by_ones = choice.bias == "ones"


class NumpyLimit:
    """A hand-written numpy training step for a 3-layer ReLU MLP (see the module doc).

    ``params`` is ``[(W1, b1), (W2, b2), (W3, b3)]``, ``W`` of shape (in, out);
    they are copied, and the copies are updated in place by every :meth:`step`.
    """

    def __init__(
        self,
        params: Params,
        learning_rate: float,
        *,
        fold_lr: bool = False,
        choices: dict[int, Choice] | None = None,
    ) -> None:
        if len(params) != 3:
            raise ValueError("NumpyLimit is written for exactly three Dense layers")
        self.W = [np.array(W) for W, _ in params]
        self.b = [np.array(b) for _, b in params]
        self.sizes = (self.W[0].shape[0], *(W.shape[1] for W in self.W))
        self.dtype = self.W[0].dtype
        self.lr = float(learning_rate)
        self.fold_lr = fold_lr
        self.choices = choices or {}
        self.gW = [np.zeros_like(W) for W in self.W]
        self.gb = [np.zeros_like(b) for b in self.b]
        self._ws: dict[int, _Workspace] = {}

    def _workspace(self, n: int) -> _Workspace:
        choice = self.choices.get(n, default_choice())
        ws = self._ws[n] = _Workspace(n, self.sizes, self.dtype, choice)
        return ws

    def params(self) -> Params:
        """The current parameters (the live arrays, not copies)."""
        return list(zip(self.W, self.b, strict=True))

    def step(self, x: np.ndarray, y: np.ndarray) -> float:
        """One SGD step on the minibatch ``(x, y)``; returns the loss before the update.

        The four phases are methods so ``mlp_breakdown.py`` can time them one by one;
        the three extra calls cost well under a microsecond.
        """
        n = x.shape[0]
        ws = self._ws.get(n) or self._workspace(n)
        self.forward(ws, x)
        loss = self.loss_and_grad(ws, y)
        self.backward(ws, x)
        self.sgd()
        return loss

    def workspace(self, n: int) -> _Workspace:
        """The kept buffers for batch ``n`` (made on first use)."""
        return self._ws.get(n) or self._workspace(n)

    def forward(self, ws: _Workspace, x: np.ndarray) -> None:
        """Product, bias and ReLU in place, layer by layer; the logits end up in ``ws.z``."""
        mm, zero = ws.gemm, ws.zero
        (W1, W2, W3), (b1, b2, b3) = self.W, self.b
        h1, h2, z = ws.h1, ws.h2, ws.z
        mm(x, W1, out=h1)
        h1 += b1
        np.maximum(h1, zero, out=h1)
        mm(h1, W2, out=h2)
        h2 += b2
        np.maximum(h2, zero, out=h2)
        mm(h2, W3, out=z)
        z += b3

    def loss_and_grad(self, ws: _Workspace, y: np.ndarray) -> float:
        """Softmax cross-entropy on integer labels: the mean loss, and dL/dz in ``ws.z``."""
        z, n = ws.z, ws.z.shape[0]
        np.max(z, axis=1, keepdims=True, out=ws.row_max)
        z -= ws.row_max
        np.add(ws.row_start, y, out=ws.idx)
        np.take(ws.z_flat, ws.idx, out=ws.picked)
        np.exp(z, out=z)
        ws.gemm(z, ws.ones_c, out=ws.total)
        np.log(ws.total, out=ws.log_total)
        loss = (ws.log_total.sum() - ws.picked.sum()) / n
        z /= ws.total_col
        ws.z_flat[ws.idx] -= 1.0
        z *= (-self.lr / n) if self.fold_lr else (1.0 / n)
        return float(loss)

    def backward(self, ws: _Workspace, x: np.ndarray) -> None:
        """Weight and bias gradients (none for the data); each ReLU masks in place."""
        mm, mask = ws.gemm, ws.mask
        _, W2, W3 = self.W
        (gW1, gW2, gW3), (gb1, gb2, gb3) = self.gW, self.gb
        h1, h2, g2, z = ws.h1, ws.h2, ws.g2, ws.z
        mm(h2.T, z, out=gW3)
        mm(z, W3.T, out=g2)
        np.greater(h2, 0.0, out=mask)
        np.multiply(g2, mask, out=g2)
        mm(h1.T, g2, out=gW2)
        g1 = h2  # h2 is no longer needed
        mm(g2, W2.T, out=g1)
        np.greater(h1, 0.0, out=mask)
        np.multiply(g1, mask, out=g1)
        mm(x.T, g1, out=gW1)
        if ws.bias_by_ones:
            mm(ws.ones_n, z, out=gb3)
            mm(ws.ones_n, g2, out=gb2)
            mm(ws.ones_n, g1, out=gb1)
        else:
            z.sum(axis=0, out=gb3)
            g2.sum(axis=0, out=gb2)
            g1.sum(axis=0, out=gb1)

    def sgd(self) -> None:
        """SGD in place on our own copies: ``g *= -lr; p += g`` (``p += g`` if folded)."""
        if not self.fold_lr:
            for g in (*self.gW, *self.gb):
                g *= -self.lr
        for p, g in zip(self.W, self.gW, strict=True):
            p += g
        for p, g in zip(self.b, self.gb, strict=True):
            p += g


# ----------------------------------------------------------------------------- choosing


def _median_us(fns: dict[str, Callable[[], object]], inner: int, rounds: int) -> dict[str, float]:
    """Median microseconds per call of each candidate, interleaved over ``rounds``."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    names = list(fns)
    for r in range(rounds + 1):
        for j in range(len(names)):
            name = names[(r + j) % len(names)]
            fn = fns[name]
            t0 = time.perf_counter()
            for _ in range(inner):
                fn()
            if r:  # round 0 warms up
                times[name].append(1e6 * (time.perf_counter() - t0) / inner)
    return {k: statistics.median(v) for k, v in times.items()}


def choose(
    n: int, sizes: Sequence[int], dtype: np.dtype, rounds: int = 15
) -> tuple[Choice, dict[str, dict[str, float]]]:
    """Time the candidates of every decision at batch ``n``; the fastest of each.

    Returns the :class:`Choice` and ``{decision: {candidate: median us}}``.
    The GEMM candidates run the step's eight products; the others run one
    operation on an ``(n, 256)`` (or ``(n, 10)``) buffer of the real shape.
    """
    rng = np.random.default_rng(0)
    d0, d1, d2, d3 = sizes

    def arr(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(dtype)

    x, W1, W2, W3 = arr(n, d0), arr(d0, d1), arr(d1, d2), arr(d2, d3)
    h1, h2, g1, g2, z = arr(n, d1), arr(n, d2), arr(n, d1), arr(n, d2), arr(n, d3)
    gW1, gW2, gW3 = np.empty_like(W1), np.empty_like(W2), np.empty_like(W3)
    hp = np.maximum(h1, 0.0)  # a ReLU output: the mask's input
    buf = np.empty_like(h1)
    inner = max(2, 4096 // n)

    def eight(mm: Callable) -> Callable[[], None]:
        def run() -> None:
            mm(x, W1, out=h1)
            mm(h1, W2, out=h2)
            mm(h2, W3, out=z)
            mm(h2.T, z, out=gW3)
            mm(z, W3.T, out=g2)
            mm(h1.T, g2, out=gW2)
            mm(g2, W2.T, out=g1)
            mm(x.T, g1, out=gW1)

        return run

    zeros = {"scalar": 0.0, "row": np.zeros(d1, dtype), "matrix": np.zeros((n, d1), dtype)}
    masks = {"bool": np.empty((n, d1), bool), "float": np.empty((n, d1), dtype)}

    def relu(zero: object) -> Callable[[], None]:
        return lambda: np.maximum(h1, zero, out=buf)

    def masked(mask: np.ndarray) -> Callable[[], None]:
        def run() -> None:
            np.greater(hp, 0.0, out=mask)
            np.multiply(g1, mask, out=buf)

        return run

    ones_n = np.ones(n, dtype)
    gb1, gb3 = np.empty(d1, dtype), np.empty(d3, dtype)

    def bias_ones() -> None:
        np.matmul(ones_n, g1, out=gb1)
        np.matmul(ones_n, z, out=gb3)

    def bias_sum() -> None:
        g1.sum(axis=0, out=gb1)
        z.sum(axis=0, out=gb3)

    timings = {
        "gemm": _median_us(
            {"matmul": eight(np.matmul), "dot": eight(np.dot)}, max(1, inner // 8), rounds
        ),
        "relu_zero": _median_us({k: relu(v) for k, v in zeros.items()}, inner, rounds),
        "mask": _median_us({k: masked(v) for k, v in masks.items()}, inner, rounds),
        "bias": _median_us({"ones": bias_ones, "sum": bias_sum}, inner, rounds),
    }
    picked = {k: min(v, key=v.__getitem__) for k, v in timings.items()}
    return Choice(**picked), timings
