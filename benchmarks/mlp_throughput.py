"""MLP training throughput: fnbp against the numpy limit, in samples per second.

The model is 784-256-256-10 (ReLU, softmax cross-entropy on integer labels,
mean over the batch, plain SGD, lr 0.01) on synthetic data, float32 by
default, at batch 32, 128 and 1024. One *step* is forward + loss + backward +
SGD update on one minibatch; one *repetition* is a pass over the whole
synthetic set (``--samples`` rows) in minibatches, so every contender
processes the same samples per repetition.

Contenders, measured in the same process and interleaved round by round:

* ``numpy limit``: the fastest step written by hand in numpy for this network
  (``numpy_limit.NumpyLimit``: kept buffers, ``out=`` products, in-place bias,
  ReLU and SGD, fused softmax cross-entropy gradient, no input gradient for
  the data). Every other row's ``x limit`` is ``t_limit / t_row`` from the
  same round: the fraction of the limit's throughput it reaches.
* ``numpy limit, lr folded``: the same with ``-lr`` folded into the loss
  gradient, so the update is one ``W += g`` pass (only plain SGD allows it).
* ``fnbp fit``: ``fb.fit`` for one epoch (its own shuffled minibatches, key
  given, ``progress=False``).
* ``fnbp step``: ``fb.train_step`` with ``sgd(lr)``: ``fb.value_and_grad`` +
  ``fb.optim.step`` with the grads handed over, and its ``TrainState`` (what
  ``fit`` loops over).
* ``fnbp vag + update``: ``fb.value_and_grad`` + ``fb.update``.
* ``fnbp layers, bare``: the network's own Dense and ReLU records, their ``vjp``
  and pullbacks called one after another by hand in the thread's workspace, as
  ``train_step`` runs them (handing arrays over), then SGD written into the
  grads' arrays: no ``Serial``, ``train_step`` or optimizer around them. What a
  step compiled once around today's layer code could reach at most (a
  measurement, not a way to train).
* ``notebook``: the teaching notebook's classes (Dense, ReLU, a Network that
  stores every layer input) with a softmax cross-entropy and correct
  gradients, updating weights in place. Like the notebook, every Dense
  computes its input gradient, the first one included.
* ``matmul bound``: only the step's 8 matrix multiplies (3 forward; 3 weight
  gradients and the input gradients of layers 2 and 3), bare ``np.matmul``
  calls into preallocated arrays; ``% of bound`` is ``t_bound / t_row``.
* ``sklearn``: ``MLPClassifier(solver="sgd", momentum=0, alpha=0)`` whose
  ``partial_fit`` over the whole set is one epoch in minibatches of B.
* ``torch``: ``nn.Sequential`` + ``CrossEntropyLoss`` + ``optim.SGD``.

The optional peers are skipped, with a note, when not installed. Before
timing: one step from the same initial weights must give the same weights in
fnbp, the notebook and the peers; a few steps of the numpy limit must follow
fnbp's loss and parameter trajectory (and one short ``fit`` epoch, on fit's
own shuffled order) to float32 rounding. After timing: minor page faults per
step in steady state (``ru_minflt`` over many steps after warm-up), each
contender alone in a fresh process (as a user's script runs it), the same with
glibc's mmap and trim thresholds raised through ``GLIBC_TUNABLES`` (largest
batch only), and in the timing process itself. fnbp's fresh buffers fault or
not depending on glibc's dynamic mmap threshold, that is on what the process
allocated and freed before, which is why the timing process (where other
contenders freed large arrays) can show none.

Run: ``python benchmarks/mlp_throughput.py --blas-threads 1`` (and ``2``);
``--quick`` for a smoke test.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import _harness as harness
import numpy as np
from numpy_limit import CHOICES, Choice, NumpyLimit, choose

import fnbp as fb
from fnbp import workspace

try:
    import resource
except ImportError:  # Windows: no page-fault counts
    resource = None  # type: ignore[assignment]

SIZES = (784, 256, 256, 10)
LR = 0.01
BATCHES = (32, 128, 1024)
DTYPES = ("float32", "float64")
Params = list[tuple[np.ndarray, np.ndarray]]
FIT_KEY = fb.random.key(1)
SGD = fb.optim.sgd(LR)


# ----------------------------------------------------------------------------- notebook baseline


class ReLU(harness.NotebookLayer):
    """The notebook's ReLU: ``max(0, x)``; backward masks with ``input > 0``."""

    def forward(self, input: np.ndarray) -> np.ndarray:
        return np.maximum(0, input)

    def backward(self, input: np.ndarray, grad_output: np.ndarray) -> np.ndarray:
        relu_grad = input > 0
        return grad_output * relu_grad


class Network(harness.NotebookNetwork):
    """The notebook's Network with a softmax cross-entropy on integer labels."""

    def __init__(self, params: Params, learning_rate: float) -> None:
        self.layers = []
        for W, b in params:
            self.layers += [harness.NotebookDense(W, b, learning_rate), ReLU()]
        self.layers.pop()  # logits out

    def loss(self, labels: np.ndarray, logits: np.ndarray) -> np.ndarray:
        shifted = logits - logits.max(axis=-1, keepdims=True)
        picked = shifted[np.arange(len(shifted)), labels]
        return np.mean(np.log(np.exp(shifted).sum(axis=-1)) - picked)

    def loss_prime(self, labels: np.ndarray, logits: np.ndarray) -> np.ndarray:
        ones_for_answers = np.zeros_like(logits)
        ones_for_answers[np.arange(len(logits)), labels] = 1
        exps = np.exp(logits - logits.max(axis=-1, keepdims=True))
        softmax = exps / exps.sum(axis=-1, keepdims=True)
        return (softmax - ones_for_answers) / logits.shape[0]

    def params(self) -> Params:
        return [(d.weights, d.biases) for d in self.layers if isinstance(d, harness.NotebookDense)]


# ----------------------------------------------------------------------------- fnbp steps
# Every fnbp call of one training step lives in one small function per contender,
# so a future ``fb.train_step`` can replace it in one place.


def fnbp_train_step(ts: fb.TrainState, x: np.ndarray, y: np.ndarray) -> tuple[fb.TrainState, float]:
    """fnbp's training step: ``fb.train_step`` with ``sgd(lr)`` (what ``fit`` loops over)."""
    ts, loss, _ = fb.train_step(ts, fb.softmax_cross_entropy, SGD, x, y)
    return ts, loss


def fnbp_bare_step(layers: tuple, x: np.ndarray, y: np.ndarray) -> tuple[tuple, float]:
    """The layers of an ``fb.mlp`` (Dense, ReLU, Dense, ReLU, Dense, Identity) called bare:
    each ``vjp`` and pullback as ``Serial`` would inside ``train_step``, in the workspace,
    then ``W - lr * g_W`` into the grads' own arrays. The same bits as fnbp's step."""
    d0, r1, d2, r3, d4, last = layers
    token = workspace.activate()
    try:
        h, pb0 = d0.vjp(x, False)
        h, pb1 = r1.vjp(h, True, own=True)
        h, pb2 = d2.vjp(h, True)
        h, pb3 = r3.vjp(h, True, own=True)
        z, pb4 = d4.vjp(h, True)
        loss, g = fb.softmax_cross_entropy.value_and_grad(z, y)
        g, g4 = pb4(g)
        g, _ = pb3(g, own=True)
        g, g2 = pb2(g)
        g, _ = pb1(g, own=True)
        _, g0 = pb0(g)
    finally:
        workspace.deactivate(token)
    new = []
    for layer, grads in ((d0, g0), (d2, g2), (d4, g4)):
        for p, u in ((layer.W, grads.W), (layer.b, grads.b)):
            u.flags.writeable = True  # the pullback's own new array, seen by no one else
            np.multiply(u, -LR, out=u)
            np.add(p, u, out=u)
        new.append(fb.Dense(fb.frozen(grads.W), fb.frozen(grads.b)))
    return (new[0], r1, new[1], r3, new[2], last), float(loss)


def fnbp_update_step(net: fb.Serial, x: np.ndarray, y: np.ndarray) -> tuple[fb.Serial, float]:
    """The same with plain ``fb.update``: ``value_and_grad`` + ``update``."""
    loss, grads = fb.value_and_grad(net, fb.softmax_cross_entropy, x, y)
    return fb.update(net, grads, learning_rate=LR), loss


def fnbp_fit_epoch(
    net: fb.Serial, X: np.ndarray, y: np.ndarray, batch: int
) -> tuple[fb.Serial, fb.History]:
    """One epoch of ``fb.fit`` with ``sgd(lr)`` in shuffled minibatches of ``batch``."""
    return fb.fit(
        net,
        fb.softmax_cross_entropy,
        X,
        y,
        optimizer=SGD,
        epochs=1,
        batch_size=batch,
        key=FIT_KEY,
        progress=False,
    )


# ----------------------------------------------------------------------------- contenders

Batches = list[tuple[np.ndarray, np.ndarray]]
Epoch = Callable[[], None]


def fnbp_params(net: fb.Serial) -> Params:
    """``[(W, b), ...]`` of the Dense layers of an ``fb.mlp``."""
    return [(layer.W, layer.b) for layer in net.layers if isinstance(layer, fb.Dense)]


def make_loop(start: Any, step: Callable[[Any, np.ndarray, np.ndarray], tuple[Any, float]],
              batches: Batches) -> Epoch:  # fmt: skip
    """An epoch of ``step(state, x, y) -> (state, loss)`` over ``batches``, each epoch
    going on from the state the last one ended in (``start`` first)."""
    state = [start]

    def epoch() -> None:
        s = state[0]
        for x, y in batches:
            s, _ = step(s, x, y)
        state[0] = s

    return epoch


def make_fnbp_fit(net0: fb.Serial, X: np.ndarray, y: np.ndarray, batch: int) -> Epoch:
    state = [net0]

    def epoch() -> None:
        state[0], _ = fnbp_fit_epoch(state[0], X, y, batch)

    return epoch


def make_limit(net0: fb.Serial, batches: Batches, choice: Choice, fold_lr: bool) -> Epoch:
    limit = NumpyLimit(fnbp_params(net0), LR, fold_lr=fold_lr, choices={len(batches[0][0]): choice})
    step = limit.step

    def epoch() -> None:
        for x, y in batches:
            step(x, y)

    return epoch


def make_notebook(net0: fb.Serial, batches: Batches) -> Epoch:
    net = Network(fnbp_params(net0), LR)

    def epoch() -> None:
        for x, y in batches:
            net.trainBatch(x, y)

    return epoch


def make_bound(net0: fb.Serial, batches: Batches) -> Epoch:
    """The 8 matrix multiplies of fnbp's step, into preallocated arrays."""
    x0 = batches[0][0]
    n, dtype = x0.shape[0], x0.dtype
    rng = np.random.default_rng(1)
    (W1, _), (W2, _), (W3, _) = fnbp_params(net0)

    def buf(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(dtype)

    h1, h2, z = buf(n, SIZES[1]), buf(n, SIZES[2]), buf(n, SIZES[3])
    g1, g2, g3 = buf(n, SIZES[1]), buf(n, SIZES[2]), buf(n, SIZES[3])
    gW1, gW2, gW3 = np.empty_like(W1), np.empty_like(W2), np.empty_like(W3)
    W1, W2, W3 = np.array(W1), np.array(W2), np.array(W3)
    mm = np.matmul

    def epoch() -> None:
        for x, _ in batches:
            mm(x, W1, out=h1)  # forward
            mm(h1, W2, out=h2)
            mm(h2, W3, out=z)
            mm(h2.T, g3, out=gW3)  # backward, layer 3
            mm(g3, W3.T, out=g2)
            mm(h1.T, g2, out=gW2)  # layer 2
            mm(g2, W2.T, out=g1)
            mm(x.T, g1, out=gW1)  # layer 1: no input gradient

    return epoch


def sklearn_classifier(batch: int) -> Any:
    from sklearn.neural_network import MLPClassifier

    return MLPClassifier(
        hidden_layer_sizes=SIZES[1:-1],
        activation="relu",
        solver="sgd",
        batch_size=batch,
        learning_rate="constant",
        learning_rate_init=LR,
        momentum=0.0,
        nesterovs_momentum=False,
        alpha=0.0,
        shuffle=False,
        max_iter=1,
        n_iter_no_change=10**9,
        random_state=0,
    )


def sklearn_set_params(clf: Any, params: Params) -> None:
    """Overwrite the classifier's weights in place (its optimizer holds these arrays)."""
    for i, (W, b) in enumerate(params):
        clf.coefs_[i][...] = W
        clf.intercepts_[i][...] = b


def make_sklearn(net0: fb.Serial, X: np.ndarray, y: np.ndarray, batch: int) -> Callable[[], None]:
    clf = sklearn_classifier(batch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.partial_fit(X[:batch], y[:batch], classes=np.arange(SIZES[-1]))
    sklearn_set_params(clf, fnbp_params(net0))

    def epoch() -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clf.partial_fit(X, y)

    return epoch


def torch_model(torch: Any, params: Params, dtype: np.dtype) -> tuple[Any, Any, Any]:
    """(model, optimizer, loss) with fnbp's initial weights (torch stores W as (out, in))."""
    nn = torch.nn
    tdtype = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}[dtype]
    layers: list[Any] = []
    for W, b in params:
        lin = nn.Linear(W.shape[0], W.shape[1], dtype=tdtype)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(W.T)))
            lin.bias.copy_(torch.from_numpy(np.array(b)))
        layers += [lin, nn.ReLU()]
    model = nn.Sequential(*layers[:-1])
    return model, torch.optim.SGD(model.parameters(), lr=LR), nn.CrossEntropyLoss()


def torch_params(model: Any) -> Params:
    lins = [m for m in model if hasattr(m, "weight")]
    return [(m.weight.detach().numpy().T, m.bias.detach().numpy()) for m in lins]


def torch_step(torch: Any, model: Any, opt: Any, lossf: Any, x: Any, y: Any) -> None:
    opt.zero_grad(set_to_none=True)
    loss = lossf(model(x), y)
    loss.backward()
    opt.step()


def make_torch(torch: Any, net0: fb.Serial, batches: Batches) -> Callable[[], None]:
    model, opt, lossf = torch_model(torch, fnbp_params(net0), batches[0][0].dtype)
    tbatches = [(torch.from_numpy(x), torch.from_numpy(y)) for x, y in batches]

    def epoch() -> None:
        for x, y in tbatches:
            torch_step(torch, model, opt, lossf, x, y)

    return epoch


# ----------------------------------------------------------------------------- checks


def _close(a: Params, b: Params, dtype: np.dtype) -> float:
    """Largest relative difference of the two parameter lists (w.r.t. each leaf's max)."""
    worst = 0.0
    for (Wa, ba), (Wb, bb) in zip(a, b, strict=True):
        for p, q in ((Wa, Wb), (ba, bb)):
            if p.shape != q.shape or p.dtype != q.dtype:
                raise SystemExit(f"check failed: {p.shape} {p.dtype} vs {q.shape} {q.dtype}")
            scale = max(float(np.abs(p).max()), 1e-30)
            worst = max(worst, float(np.abs(p.astype(np.float64) - q).max()) / scale)
    return worst


def check_one_step(net0: fb.Serial, X: np.ndarray, y: np.ndarray, batch: int, torch: Any) -> str:
    """One step from the same weights in every contender; the updated weights must agree."""
    dtype = X.dtype
    tol = 1e-5 if dtype == np.float32 else 1e-12
    x, t = X[:batch], y[:batch]
    ref = fnbp_params(fnbp_update_step(net0, x, t)[0])
    # the step must actually move the weights, or the check proves nothing
    moved = max(
        float(np.abs(W1 - W0).max() / np.abs(W0).max())
        for (W1, _), (W0, _) in zip(ref, fnbp_params(net0), strict=True)
    )
    notebook = Network(fnbp_params(net0), LR)
    notebook.trainBatch(x, t)
    out = [f"the step moves W by up to {moved:.1e} of max|W|"]
    err = _close(ref, notebook.params(), dtype)
    if not err <= tol:
        raise SystemExit(f"check failed: notebook differs from fnbp by {err:.2e} > {tol:.0e}")
    out.append(f"notebook {err:.1e}")
    if harness.optional_import("sklearn") is not None:
        clf = sklearn_classifier(batch)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clf.partial_fit(x, t, classes=np.arange(SIZES[-1]))
            sklearn_set_params(clf, fnbp_params(net0))
            clf.partial_fit(x, t)
        err = _close(ref, list(zip(clf.coefs_, clf.intercepts_, strict=True)), dtype)
        if not err <= tol:
            raise SystemExit(f"check failed: sklearn differs from fnbp by {err:.2e} > {tol:.0e}")
        out.append(f"sklearn {err:.1e}")
    if torch is not None:
        model, opt, lossf = torch_model(torch, fnbp_params(net0), dtype)
        torch_step(torch, model, opt, lossf, torch.from_numpy(x), torch.from_numpy(t))
        err = _close(ref, torch_params(model), dtype)
        if not err <= 10 * tol:
            raise SystemExit(f"check failed: torch differs from fnbp by {err:.2e} > {tol:.0e}")
        out.append(f"torch {err:.1e}")
    return ", ".join(out) + f" (tolerance {tol:.0e})"


def _param_diff(a: Params, b: Params) -> float:
    """Largest absolute difference between two parameter lists."""
    return max(
        float(np.abs(p.astype(np.float64) - q).max())
        for pa, pb in zip(a, b, strict=True)
        for p, q in zip(pa, pb, strict=True)
    )


def check_trajectory(
    net0: fb.Serial, X: np.ndarray, y: np.ndarray, batch: int, choice: Choice, steps: int = 5
) -> str:
    """``steps`` steps (fewer if the set is smaller) from the same weights on the
    same minibatches: every contender follows fnbp's step (losses and params) to
    rounding; so does one ``fit`` epoch of as many minibatches, replayed by the
    numpy limit in fit's documented order (``fb.batches`` with ``fold_in(key, 0)``).
    Stops with an error if not."""
    dtype = X.dtype
    rel = 1e-5 if dtype == np.float32 else 1e-12
    steps = min(steps, len(X) // batch)
    n = steps * batch
    mb = [(X[i : i + batch], y[i : i + batch]) for i in range(0, n, batch)]
    ts, ref_losses = fb.TrainState.create(net0, SGD), []
    for x, t in mb:
        ts, loss = fnbp_train_step(ts, x, t)
        ref_losses.append(float(loss))
    ref = fnbp_params(ts.params)
    scale = max(float(np.abs(p).max()) for layer in ref for p in layer)
    moved = _param_diff(ref, fnbp_params(net0))
    runs: dict[str, tuple[Params, list[float]]] = {}
    net, losses = net0, []
    for x, t in mb:
        net, loss = fnbp_update_step(net, x, t)
        losses.append(float(loss))
    runs["fnbp vag + update"] = fnbp_params(net), losses
    layers, losses = net0.layers, []
    for x, t in mb:
        layers, loss = fnbp_bare_step(layers, x, t)
        losses.append(loss)
    runs["fnbp layers, bare"] = fnbp_params(fb.Serial(layers)), losses
    for name, fold in (("numpy limit", False), ("numpy limit, lr folded", True)):
        limit = NumpyLimit(fnbp_params(net0), LR, fold_lr=fold, choices={batch: choice})
        runs[name] = limit.params(), [limit.step(x, t) for x, t in mb]
    out = [f"{steps} steps move the params by up to {moved:.1e} (max |p| {scale:.2f})"]
    for name, (params, losses) in runs.items():
        dp = _param_diff(params, ref)
        dl = max(abs(a - b) for a, b in zip(losses, ref_losses, strict=True))
        if not (dp <= rel * scale and dl <= rel * max(map(abs, ref_losses))):
            raise SystemExit(
                f"check failed at B={batch}: {name} differs from fnbp step by {dp:.2e} "
                f"(params) and {dl:.2e} (losses); tolerance {rel:.0e} relative"
            )
        out.append(f"{name}: params {dp:.1e}, losses {dl:.1e}")
    # fit: its own shuffled order, replayed by the numpy limit
    fitted, history = fnbp_fit_epoch(net0, X[:n], y[:n], batch)
    order = fb.batches(fb.random.fold_in(FIT_KEY, 0), n, batch)
    limit = NumpyLimit(fnbp_params(net0), LR, choices={batch: choice})
    losses = [limit.step(X[idx], y[idx]) for idx in order]
    dp = _param_diff(fnbp_params(fitted), limit.params())
    dl = abs(history.train_loss[0] - sum(losses) / len(losses))
    if not (dp <= rel * scale and dl <= rel * max(map(abs, losses))):
        raise SystemExit(
            f"check failed at B={batch}: fit differs from the numpy limit replaying its "
            f"order by {dp:.2e} (params) and {dl:.2e} (mean loss); if fit's shuffling "
            "changed, update check_trajectory"
        )
    out.append(f"fnbp fit vs numpy limit on fit's order: params {dp:.1e}, mean loss {dl:.1e}")
    return "; ".join(out) + f" (max abs differences; tolerance {rel:.0e} x scale)"


# ----------------------------------------------------------------------------- measuring

LIMIT = "numpy limit"
ROW_ORDER = (
    LIMIT,
    "numpy limit, lr folded",
    "fnbp fit",
    "fnbp step",
    "fnbp vag + update",
    "fnbp layers, bare",
    "notebook",
    "matmul bound",
    "sklearn MLPClassifier",
    "torch",
)
FAULT_ROWS = tuple(r for r in ROW_ORDER[:7] if r != "fnbp layers, bare")


def build(
    dtype: str,
    batch: int,
    X: np.ndarray,
    y: np.ndarray,
    choice: Choice,
    torch: Any,
    only: Sequence[str] | None = None,
) -> tuple[dict[str, Epoch], int]:
    """The one-epoch callable of every contender (or of those in ``only``) for one
    (dtype, batch), and the number of samples an epoch uses."""
    net0 = fb.mlp(fb.random.key(0), SIZES, dtype=dtype)
    n = (len(X) // batch) * batch
    batches = [(X[i : i + batch], y[i : i + batch]) for i in range(0, n, batch)]
    factories: dict[str, Callable[[], Epoch]] = {
        LIMIT: lambda: make_limit(net0, batches, choice, fold_lr=False),
        "numpy limit, lr folded": lambda: make_limit(net0, batches, choice, fold_lr=True),
        "fnbp fit": lambda: make_fnbp_fit(net0, X[:n], y[:n], batch),
        "fnbp step": lambda: make_loop(fb.TrainState.create(net0, SGD), fnbp_train_step, batches),
        "fnbp vag + update": lambda: make_loop(net0, fnbp_update_step, batches),
        "fnbp layers, bare": lambda: make_loop(net0.layers, fnbp_bare_step, batches),
        "notebook": lambda: make_notebook(net0, batches),
        "matmul bound": lambda: make_bound(net0, batches),
    }
    if harness.optional_import("sklearn") is not None:
        factories["sklearn MLPClassifier"] = lambda: make_sklearn(net0, X[:n], y[:n], batch)
    if torch is not None:
        factories["torch"] = lambda: make_torch(torch, net0, batches)
    names = list(factories) if only is None else list(only)
    return {name: factories[name]() for name in names}, n


TUNABLES = "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=134217728"


WARMUP_STEPS = (32, 1024)
"""Least and most warm-up steps before faults are counted (see :func:`faults_per_step`)."""


def faults_per_step(epoch: Epoch, steps_per_epoch: int, min_steps: int) -> tuple[float, float]:
    """Minor page faults per step in steady state, and the median seconds per step:
    ``ru_minflt`` over at least ``min_steps`` steps (whole epochs, at least two) after
    a warm-up of whole epochs: at least 32 steps, then until ``min_steps`` steps in a
    row fault no page, at most 1,024 steps. (A fresh CPython takes some hundreds of steps to
    fill its object pools and free lists: fnbp's step faulted 9 pages per 128 steps
    for its first ~600 steps at batch 1024, then none, with a constant number of
    live objects. A contender that faults at every step warms up for the most.)"""
    assert resource is not None
    least, most = WARMUP_STEPS
    first = max(2, math.ceil(least / steps_per_epoch))
    for _ in range(first):
        epoch()
    warmed = first * steps_per_epoch
    window = max(1, math.ceil(min_steps / steps_per_epoch))  # epochs per counted window
    while warmed < most:
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(window):
            epoch()
        warmed += window * steps_per_epoch
        if resource.getrusage(resource.RUSAGE_SELF).ru_minflt == f0:
            break
    epochs = max(2, math.ceil(min_steps / steps_per_epoch))
    gc.collect()
    times = []
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(epochs):
        t0 = time.perf_counter()
        epoch()
        times.append((time.perf_counter() - t0) / steps_per_epoch)
    f1 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    return (f1 - f0) / (epochs * steps_per_epoch), statistics.median(times)


def fault_child(
    name: str, dtype: str, batch: int, choice: Choice, args: argparse.Namespace, tunables: bool
) -> dict[str, float]:
    """Page faults and median seconds per step of contender ``name`` alone in a fresh
    process; with ``tunables``, glibc's mmap and trim thresholds raised (``TUNABLES``)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--fault-child", name]
    cmd += ["--dtypes", dtype, "--batches", str(batch), "--samples", str(args.samples)]
    cmd += ["--fault-steps", str(args.fault_steps)]
    cmd += ["--choice", ",".join((choice.gemm, choice.relu_zero, choice.mask, choice.bias))]
    if args.blas_threads is not None:
        cmd += ["--blas-threads", str(args.blas_threads)]
    env = dict(os.environ)
    if tunables:
        env["GLIBC_TUNABLES"] = TUNABLES
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_fault_child(args: argparse.Namespace, X: np.ndarray, y: np.ndarray) -> int:
    """The ``--fault-child`` mode: build one contender, print its faults and time per step."""
    (dtype,), (batch,) = args.dtypes, args.batches
    choice = Choice(*args.choice.split(","))
    epochs, n = build(dtype, batch, X, y, choice, None, only=[args.fault_child])
    f, t = faults_per_step(epochs[args.fault_child], n // batch, args.fault_steps)
    print(json.dumps({"faults_per_step": f, "s_per_step": t}))
    return 0


def run_config(
    dtype: str,
    batch: int,
    X: np.ndarray,
    y: np.ndarray,
    choice: Choice,
    args: argparse.Namespace,
    torch: Any,
) -> dict[str, Any]:
    """Time every contender for one (dtype, batch), then count its page faults."""
    contenders, n = build(dtype, batch, X, y, choice, torch)
    times = harness.interleave(contenders, repeats=args.repeats, warmup=args.warmup)

    def paired(ref: str) -> dict[str, harness.Summary]:
        return {k: harness.Summary.of(harness.pair_ratios(times[ref], v)) for k, v in times.items()}

    faults: dict[str, Any] = {}
    if resource is not None:
        # each contender alone in a fresh process, as a user's script would run it ...
        for name in FAULT_ROWS:
            faults[name] = fault_child(name, dtype, batch, choice, args, tunables=False)
        # ... with glibc's thresholds raised so freed buffers stay mapped ...
        for name in FAULT_ROWS if batch == max(args.batches) else ():
            faults[f"{name}, tunables"] = fault_child(name, dtype, batch, choice, args, True)
        # ... and new contender objects in this process, after everything above
        again, _ = build(dtype, batch, X, y, choice, torch, only=FAULT_ROWS)
        for name in FAULT_ROWS:
            f, t = faults_per_step(again[name], n // batch, args.fault_steps)
            faults[f"{name}, in process"] = {"faults_per_step": f, "s_per_step": t}
    return {
        "dtype": dtype,
        "batch": batch,
        "samples_per_repeat": n,
        "times": times,
        "samples_per_s": {k: harness.Summary.of([n / t for t in v]) for k, v in times.items()},
        "x_limit": paired(LIMIT),
        "x_notebook": paired("notebook"),
        "x_bound": paired("matmul bound"),
        "fit_vs_step": harness.Summary.of(
            harness.pair_ratios(times["fnbp step"], times["fnbp fit"])
        ),
        "faults": faults,
    }


# ----------------------------------------------------------------------------- reporting


def _best(r: dict[str, Any], num: str, den: str) -> float:
    """The ratio of the two fastest repetitions (throughput of ``num`` over ``den``)."""
    rate = r["samples_per_s"]
    return rate[num].hi / rate[den].hi


def targets(results: Sequence[dict[str, Any]], threads: int | None) -> list[list[str]]:
    """The targets, each with the median pairwise ratio, best vs best and a verdict."""
    goal = 0.92 if threads == 1 else 0.95
    rows = []
    for r in results:
        b, d = r["batch"], r["dtype"]
        for name in ("fnbp step", "fnbp fit"):
            s = r["x_limit"][name]
            rows.append(
                [
                    f"{name} / numpy limit, {d}, B={b}",
                    f">= {goal:.2f}x",
                    harness.fmt_ratio(s),
                    f"{_best(r, name, LIMIT):.2f}x",
                    "met" if s.median >= goal else "NOT met",
                ]
            )
        s = r["fit_vs_step"]
        rows.append(
            [
                f"fnbp fit / fnbp step, {d}, B={b}",
                ">= 0.95x",
                harness.fmt_ratio(s),
                f"{_best(r, 'fnbp fit', 'fnbp step'):.2f}x",
                "met" if s.median >= 0.95 else "NOT met",
            ]
        )
    for r in results:
        if r["batch"] != 1024 or not r["faults"]:
            continue
        for name in ("fnbp step", "fnbp fit", "fnbp vag + update"):
            f = r["faults"][name]["faults_per_step"]
            rows.append(
                [
                    f"page faults per step, {name}, {r['dtype']}, B=1024",
                    "0",
                    f"{f:.1f}",
                    "",
                    "met" if f == 0 else "NOT met",
                ]
            )
    return rows


def choice_rows(picked: dict[int, tuple[Choice, dict]]) -> list[list[str]]:
    rows = []
    for decision, candidates in CHOICES.items():
        for label, code in candidates.items():
            cells = []
            for _batch, (choice, timing) in picked.items():
                us = timing[decision][label]
                mark = " *" if getattr(choice, decision) == label else ""
                cells.append(f"{us:,.1f}{mark}")
            rows.append([decision, f"`{code}`", *cells])
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    def extra(p: argparse.ArgumentParser) -> None:
        p.add_argument("--batches", type=int, nargs="+", default=list(BATCHES))
        p.add_argument("--dtypes", nargs="+", default=["float32"], choices=DTYPES)
        p.add_argument("--fault-child", default=None, help=argparse.SUPPRESS)
        p.add_argument("--choice", default=None, help=argparse.SUPPRESS)

    counts = {
        "samples": (4096, 2048, "synthetic samples per repetition"),
        "fault_steps": (128, 16, "steps over which page faults are counted"),
    }
    args = harness.parse_args(
        __doc__.splitlines()[0], argv, repeats=25, warmup=2, extra=extra, counts=counts
    )
    samples = args.samples
    if samples < 2 * max(args.batches):
        raise SystemExit(f"--samples must be at least twice the largest batch {max(args.batches)}")
    torch = harness.optional_import("torch")
    sklearn = harness.optional_import("sklearn")
    threads = args.blas_threads or harness.blas_threads()

    rng = np.random.default_rng(0)
    X64 = rng.random((samples, SIZES[0]))
    labels = rng.integers(0, SIZES[-1], samples)
    data = {"float64": X64, "float32": X64.astype(np.float32)}
    if args.fault_child:
        return run_fault_child(args, data[args.dtypes[0]], labels)

    harness.start_report("MLP training throughput")
    print(
        f"Model {'-'.join(map(str, SIZES))}, ReLU, softmax cross-entropy, SGD lr={LR}; "
        f"{samples} synthetic samples per repetition; {args.repeats} interleaved "
        f"repetitions after {args.warmup} warm-up; median (min-max); BLAS threads: {threads}."
    )
    notes = []
    if sklearn is None:
        notes.append("scikit-learn not installed: its rows are skipped.")
    if torch is None:
        notes.append("PyTorch not installed: its rows are skipped.")
    else:
        notes.append(f"PyTorch {torch.__version__}, {torch.get_num_threads()} threads.")
    if resource is None:
        notes.append("the resource module is unavailable: page faults are not counted.")
    for note in notes:
        print(f"Note: {note}")
    print()

    print("Correctness (one step from fnbp's initial weights, max relative weight difference):")
    for dtype in args.dtypes:
        net0 = fb.mlp(fb.random.key(0), SIZES, dtype=dtype)
        msg = check_one_step(net0, data[dtype], labels, 128, torch)
        print(f"- {dtype}: {msg}")
    print(flush=True)

    picked = {
        (dtype, b): choose(b, SIZES, np.dtype(dtype)) for dtype in args.dtypes for b in args.batches
    }
    for dtype in args.dtypes:
        print(f"Numpy-limit choices, {dtype} (median us per call; * = used):\n")
        per_batch = {b: picked[dtype, b] for b in args.batches}
        headers = ["decision", "candidate", *(f"B={b}" for b in args.batches)]
        print(harness.markdown_table(headers, choice_rows(per_batch)), "\n")

    print("Trajectory check (numpy limit and fnbp's other steps against fnbp step):")
    for dtype in args.dtypes:
        net0 = fb.mlp(fb.random.key(0), SIZES, dtype=dtype)
        for b in args.batches:
            msg = check_trajectory(net0, data[dtype], labels, b, picked[dtype, b][0])
            print(f"- {dtype}, B={b}: {msg}")
    print(flush=True)

    results = []
    rows, fault_rows = [], []
    for dtype in args.dtypes:
        for batch in args.batches:
            r = run_config(dtype, batch, data[dtype], labels, picked[dtype, batch][0], args, torch)
            results.append(r)
            for name in (k for k in ROW_ORDER if k in r["times"]):
                rows.append(
                    [
                        dtype,
                        str(batch),
                        name,
                        harness.fmt_rate(r["samples_per_s"][name]),
                        harness.fmt_ratio(r["x_limit"][name]),
                        harness.fmt_pct(r["x_bound"][name]),
                        harness.fmt_ratio(r["x_notebook"][name]),
                    ]
                )
            for where, suffix in (
                ("fresh process", ""),
                ("fresh, GLIBC_TUNABLES", ", tunables"),
                ("after the timing", ", in process"),
            ):
                got = [r["faults"].get(k + suffix) for k in FAULT_ROWS]
                if any(g is None for g in got):
                    continue
                cells = (f"{g['faults_per_step']:.0f} / {1e3 * g['s_per_step']:.2f}" for g in got)
                fault_rows.append([dtype, str(batch), where, *cells])
            print(f"  done {dtype} B={batch}", file=sys.stderr, flush=True)

    headers = [
        "dtype",
        "batch",
        "contender",
        "samples/s",
        "x numpy limit (pairwise)",
        "% of matmul bound (pairwise)",
        "x notebook (pairwise)",
    ]
    print(harness.markdown_table(headers, rows))
    if fault_rows:
        print(
            f"\nMinor page faults per step in steady state / median ms per step (ru_minflt "
            f"over >= {args.fault_steps} steps after a warm-up of 32 steps or more, until as "
            f"many steps in a row fault no page, at most 1,024): each contender "
            f"alone in a fresh process; the same with GLIBC_TUNABLES={TUNABLES} (largest "
            "batch only); and new contender objects in this process after the timing:\n"
        )
        print(harness.markdown_table(["dtype", "batch", "where", *FAULT_ROWS], fault_rows))
    print()
    goal = "0.92x (1 BLAS thread)" if threads == 1 else "0.95x (2+ BLAS threads)"
    print(f"Targets (goal for fnbp / numpy limit: {goal}):\n")
    headers = ["target", "goal", "median pairwise (min-max)", "best vs best", "verdict"]
    print(harness.markdown_table(headers, targets(results, threads)))
    harness.end_report(
        args.json,
        {
            "choices": {f"{d} B={b}": [repr(c), t] for (d, b), (c, t) in picked.items()},
            "results": results,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
