"""MLP training throughput: fnbp against a notebook-style numpy baseline.

The model is 784-256-256-10 (ReLU, softmax cross-entropy on integer labels,
plain SGD) on synthetic data, in float32 and float64, at batch 32, 128 and
1024. One *step* is forward + loss + backward + SGD update on one minibatch;
one *repetition* is a pass over the whole synthetic set (``--samples`` rows)
in minibatches, so every contender processes the same samples per repetition.

Contenders, measured in the same process and interleaved round by round:

* ``fnbp``: ``fb.value_and_grad`` + ``fb.update`` on an immutable ``fb.mlp``.
* ``notebook``: the teaching notebook's classes (Dense, ReLU, a Network that
  stores every layer input) with a softmax cross-entropy and correct gradients,
  updating weights in place. Like the notebook, every Dense computes its input
  gradient, the first one included.
* ``matmul bound``: only the step's 8 matrix multiplies (3 forward; 3 weight
  gradients and the input gradients of layers 2 and 3), bare ``np.matmul``
  calls into preallocated arrays with ``out=``. Every row's ``% of bound`` is
  ``t_bound / t_row`` from the same round.
* ``sklearn``: ``MLPClassifier(solver="sgd", momentum=0, alpha=0)`` whose
  ``partial_fit`` over the whole set is one epoch in minibatches of B.
* ``torch``: ``nn.Sequential`` + ``CrossEntropyLoss`` + ``optim.SGD``.

The optional peers are skipped, with a note, when not installed. Before timing,
one step from the same initial weights is checked to give the same updated
weights in every contender (fnbp's initial parameters seed all of them).

Run: ``python benchmarks/mlp_throughput.py`` (``--quick`` for a smoke test).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from _harness import (
    Summary,
    facts_markdown,
    fmt_pct,
    fmt_rate,
    fmt_ratio,
    interleave,
    load_average,
    machine_facts,
    markdown_table,
    optional_import,
    pair_ratios,
    parse_args,
    write_json,
)

import fnbp as fb

SIZES = (784, 256, 256, 10)
LR = 0.01
BATCHES = (32, 128, 1024)
DTYPES = (np.float32, np.float64)
Params = list[tuple[np.ndarray, np.ndarray]]


# ----------------------------------------------------------------------------- notebook baseline


class Layer:
    """The notebook's identity layer, the base of inheritance."""

    def forward(self, input: np.ndarray) -> np.ndarray:
        return input

    def backward(self, input: np.ndarray, grad_output: np.ndarray) -> np.ndarray:
        return grad_output


class ReLU(Layer):
    """The notebook's ReLU: ``max(0, x)``; backward masks with ``input > 0``."""

    def forward(self, input: np.ndarray) -> np.ndarray:
        return np.maximum(0, input)

    def backward(self, input: np.ndarray, grad_output: np.ndarray) -> np.ndarray:
        relu_grad = input > 0
        return grad_output * relu_grad


class Dense(Layer):
    """The notebook's Dense, updating its weights in place during ``backward``.

    The notebook divides the weight gradient by the batch size a second time
    (its loss gradient already carries the ``1/N``); here the loss gradient
    carries it once, as in fnbp, so the gradients are correct.
    """

    def __init__(self, weights: np.ndarray, biases: np.ndarray, learning_rate: float) -> None:
        self.weights = np.array(weights)  # writeable copies
        self.biases = np.array(biases)
        self.learning_rate = learning_rate

    def forward(self, input: np.ndarray) -> np.ndarray:
        return input.dot(self.weights) + self.biases

    def backward(self, input: np.ndarray, grad_output: np.ndarray) -> np.ndarray:
        grad_input = np.dot(grad_output, self.weights.T)
        grad_weights = np.dot(input.T, grad_output)
        grad_biases = grad_output.sum(axis=0)
        self.weights -= self.learning_rate * grad_weights
        self.biases -= self.learning_rate * grad_biases
        return grad_input


class Network:
    """The notebook's Network with a softmax cross-entropy on integer labels."""

    def __init__(self, params: Params, learning_rate: float) -> None:
        self.layers: list[Layer] = []
        for W, b in params:
            self.layers += [Dense(W, b, learning_rate), ReLU()]
        self.layers.pop()  # logits out

    def forward(self, X: np.ndarray) -> list[np.ndarray]:
        activations = [X]
        for layer in self.layers:
            X = layer.forward(X)
            activations.append(X)
        return activations

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

    def trainBatch(self, X: np.ndarray, labels: np.ndarray) -> np.ndarray:
        layer_inputs = self.forward(X)
        logits = layer_inputs[-1]
        loss_grad = self.loss_prime(labels, logits)
        index = -2
        for layer in reversed(self.layers):
            loss_grad = layer.backward(layer_inputs[index], loss_grad)
            index -= 1
        return self.loss(labels, logits)

    def params(self) -> Params:
        return [(d.weights, d.biases) for d in self.layers if isinstance(d, Dense)]


# ----------------------------------------------------------------------------- contenders

Batches = list[tuple[np.ndarray, np.ndarray]]


def fnbp_params(net: fb.Serial) -> Params:
    """``[(W, b), ...]`` of the Dense layers of an ``fb.mlp``."""
    return [(layer.W, layer.b) for layer in net.layers if isinstance(layer, fb.Dense)]


def fnbp_step(net: fb.Serial, x: np.ndarray, y: np.ndarray) -> fb.Serial:
    """One training step in fnbp: loss and parameter gradients, then plain SGD."""
    _, grads = fb.value_and_grad(net, fb.softmax_cross_entropy, x, y)
    return fb.update(net, grads, learning_rate=LR)


def make_fnbp(net0: fb.Serial, batches: Batches) -> Callable[[], None]:
    state = [net0]

    def epoch() -> None:
        net = state[0]
        for x, y in batches:
            net = fnbp_step(net, x, y)
        state[0] = net

    return epoch


def make_notebook(net0: fb.Serial, batches: Batches) -> Callable[[], None]:
    net = Network(fnbp_params(net0), LR)

    def epoch() -> None:
        for x, y in batches:
            net.trainBatch(x, y)

    return epoch


def make_bound(net0: fb.Serial, batches: Batches) -> Callable[[], None]:
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
    ref = fnbp_params(fnbp_step(net0, x, t))
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
    if optional_import("sklearn") is not None:
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


# ----------------------------------------------------------------------------- main


def run_config(
    dtype: type, batch: int, X: np.ndarray, y: np.ndarray, args: argparse.Namespace, torch: Any
) -> dict[str, Any]:
    """Time every contender for one (dtype, batch) and return the summaries."""
    net0 = fb.mlp(fb.random.key(0), SIZES, dtype=dtype)
    n = (len(X) // batch) * batch
    batches = [(X[i : i + batch], y[i : i + batch]) for i in range(0, n, batch)]
    contenders: dict[str, Callable[[], None]] = {
        "fnbp": make_fnbp(net0, batches),
        "notebook": make_notebook(net0, batches),
        "matmul bound": make_bound(net0, batches),
    }
    if optional_import("sklearn") is not None:
        contenders["sklearn MLPClassifier"] = make_sklearn(net0, X[:n], y[:n], batch)
    if torch is not None:
        contenders["torch"] = make_torch(torch, net0, batches)
    times = interleave(contenders, repeats=args.repeats, warmup=args.warmup)
    rate = {k: Summary.of([n / t for t in v]) for k, v in times.items()}
    vs_notebook = {k: Summary.of(pair_ratios(times["notebook"], v)) for k, v in times.items()}
    of_bound = {k: Summary.of(pair_ratios(times["matmul bound"], v)) for k, v in times.items()}
    return {
        "dtype": np.dtype(dtype).name,
        "batch": batch,
        "samples_per_repeat": n,
        "times": times,
        "samples_per_s": rate,
        "throughput_vs_notebook": vs_notebook,
        "fraction_of_matmul_bound": of_bound,
    }


def targets(results: Sequence[dict[str, Any]]) -> list[list[str]]:
    """The issue's float32 targets: the median pairwise ratio, best-vs-best, a verdict.

    The verdict goes by the median of the pairwise ratios; the ratio of the
    best repetitions is shown beside it as the estimate least affected by
    other processes on a busy machine.
    """
    rows = []
    for r in results:
        if r["dtype"] != "float32":
            continue
        rate = r["samples_per_s"]
        ratio = r["throughput_vs_notebook"]["fnbp"]
        goal = 1.5 if r["batch"] in (128, 1024) else 1.0
        best = rate["fnbp"].hi / rate["notebook"].hi
        rows.append(
            [
                f"fnbp / notebook, float32, B={r['batch']}",
                f">= {goal:.1f}x",
                fmt_ratio(ratio),
                f"{best:.2f}x",
                "met" if ratio.median >= goal else "NOT met",
            ]
        )
        if r["batch"] == 1024:
            frac = r["fraction_of_matmul_bound"]["fnbp"]
            best = rate["fnbp"].hi / rate["matmul bound"].hi
            rows.append(
                [
                    "fnbp / matmul bound, float32, B=1024",
                    ">= 85%",
                    fmt_pct(frac),
                    f"{100 * best:.0f}%",
                    "met" if frac.median >= 0.85 else "NOT met",
                ]
            )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    def extra(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--samples",
            type=int,
            default=None,
            help="synthetic samples per repetition (default 4096, quick 2048)",
        )
        p.add_argument("--batches", type=int, nargs="+", default=list(BATCHES))

    args = parse_args(__doc__.splitlines()[0], argv, repeats=25, warmup=2, extra=extra)
    samples = args.samples or (2048 if args.quick else 4096)
    if samples < max(args.batches):
        raise SystemExit(f"--samples must be at least the largest batch {max(args.batches)}")
    torch = optional_import("torch")
    sklearn = optional_import("sklearn")

    rng = np.random.default_rng(0)
    X64 = rng.random((samples, SIZES[0]))
    labels = rng.integers(0, SIZES[-1], samples)
    data = {np.float64: X64, np.float32: X64.astype(np.float32)}

    print("# MLP training throughput\n")
    print(facts_markdown(machine_facts()), "\n")
    print(
        f"Model {'-'.join(map(str, SIZES))}, ReLU, softmax cross-entropy, SGD lr={LR}; "
        f"{samples} synthetic samples per repetition; {args.repeats} interleaved "
        f"repetitions after {args.warmup} warm-up; median (min-max)."
    )
    notes = []
    if sklearn is None:
        notes.append("scikit-learn not installed: its rows are skipped.")
    if torch is None:
        notes.append("PyTorch not installed: its rows are skipped.")
    else:
        notes.append(f"PyTorch {torch.__version__}, {torch.get_num_threads()} threads.")
    for note in notes:
        print(f"Note: {note}")
    print()

    print("Correctness (one step from fnbp's initial weights, max relative weight difference):")
    for dtype in DTYPES:
        net0 = fb.mlp(fb.random.key(0), SIZES, dtype=dtype)
        msg = check_one_step(net0, data[dtype], labels, 128, torch)
        print(f"- {np.dtype(dtype).name}: {msg}")
    print(flush=True)

    results = []
    rows = []
    for dtype in DTYPES:
        for batch in args.batches:
            r = run_config(dtype, batch, data[dtype], labels, args, torch)
            results.append(r)
            for name in r["samples_per_s"]:
                rows.append(
                    [
                        f"{r['dtype']}",
                        str(batch),
                        name,
                        fmt_rate(r["samples_per_s"][name]),
                        fmt_ratio(r["throughput_vs_notebook"][name]),
                        fmt_pct(r["fraction_of_matmul_bound"][name]),
                    ]
                )
            print(f"  done {r['dtype']} B={batch}", file=sys.stderr, flush=True)

    headers = [
        "dtype",
        "batch",
        "contender",
        "samples/s",
        "vs notebook (pairwise)",
        "% of matmul bound (pairwise)",
    ]
    print(markdown_table(headers, rows))
    print()
    headers = ["target (float32)", "goal", "median pairwise (min-max)", "best vs best", "verdict"]
    print(markdown_table(headers, targets(results)))
    print(f"\nLoad average at the end: {load_average()}")
    write_json(args.json, {"facts": machine_facts(), "results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
