"""Where fnbp's MLP training step loses time against the numpy limit, phase by phase.

The model and steps are ``mlp_throughput.py``'s (784-256-256-10, float32,
softmax cross-entropy, SGD). Each phase of one step is timed on its own, on a
fixed minibatch, for fnbp and for the numpy limit (``numpy_limit.NumpyLimit``,
whose step is these four methods in a row):

| phase | fnbp | numpy limit |
|:--|:--|:--|
| forward | ``fb.vjp(net, x, need_g_x=False)`` | ``forward``: products, bias, ReLU in place |
| loss | ``fb.softmax_cross_entropy.value_and_grad(z, y)`` | ``loss_and_grad`` into the logits |
| backward | ``pullback(g)`` | ``backward`` into kept gradient buffers |
| update | ``fb.optim.step(fb.optim.sgd(lr), net, grads, state)`` | ``sgd``: ``g *= -lr; W += g`` |
| whole step | ``fb.train_step`` (grads handed over) | ``step`` |

plus ``fb.update(net, grads, lr)`` as the other fnbp update. The last table
runs the same phases on a 16-16-16-4 MLP at batch 4, where the arithmetic is
negligible: what is left are the fixed costs per step, Python and numpy call
overhead (the numpy limit makes about 40 numpy calls per step). ``glue`` is the
whole step minus its phases: for fnbp, what ``value_and_grad``, ``Serial`` and
the ``TrainState`` add around the layers, less what handing the grads over saves
(the update phase alone cannot hand over grads it reuses). All contenders are
interleaved round by round; differences are taken within each round.

(The limit's update phase is timed with ``lr = -1``, a multiply by one that does
the same work, so that repeating it on the same gradients does not drive them
into subnormal numbers.)

Run: ``python benchmarks/mlp_breakdown.py --blas-threads 1`` (``--quick`` for a smoke test).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

import _harness as harness
import numpy as np
from mlp_throughput import BATCHES, LR, SGD, SIZES, fnbp_params, fnbp_train_step
from numpy_limit import NumpyLimit, choose

import fnbp as fb

PHASES = ("forward", "loss", "backward", "update")
TINY = (16, 16, 16, 4)  # the same step with next to no arithmetic: its fixed costs


def contenders(
    sizes: Sequence[int], batch: int, X: np.ndarray, y: np.ndarray, reps: int
) -> dict[str, Callable]:
    """``"fnbp <phase>"`` and ``"limit <phase>"`` callables, each ``reps`` calls."""
    net = fb.mlp(fb.random.key(0), sizes, dtype=X.dtype)
    x, t = X[:batch, : sizes[0]], y[:batch] % sizes[-1]
    state = SGD.init(net)
    ts = fb.TrainState.create(net, SGD)
    z, pullback = fb.vjp(net, x, need_g_x=False)
    _, g = fb.softmax_cross_entropy.value_and_grad(z, t)
    _, grads = pullback(g)
    choice = choose(batch, sizes, X.dtype, rounds=5)[0]
    limit = NumpyLimit(fnbp_params(net), LR, choices={batch: choice})
    ws = limit.workspace(batch)
    updater = NumpyLimit(fnbp_params(net), -1.0, choices={batch: choice})
    carried = NumpyLimit(fnbp_params(net), LR, choices={batch: choice})

    def rep(f: Callable[[], Any]) -> Callable[[], None]:
        def run() -> None:
            for _ in range(reps):
                f()

        return run

    return {
        "fnbp forward": rep(lambda: fb.vjp(net, x, need_g_x=False)),
        "fnbp loss": rep(lambda: fb.softmax_cross_entropy.value_and_grad(z, t)),
        "fnbp backward": rep(lambda: pullback(g)),
        "fnbp update": rep(lambda: fb.optim.step(SGD, net, grads, state)),
        "fnbp fb.update": rep(lambda: fb.update(net, grads, learning_rate=LR)),
        "fnbp whole step": rep(lambda: fnbp_train_step(ts, x, t)),
        "limit forward": rep(lambda: limit.forward(ws, x)),
        "limit loss": rep(lambda: limit.loss_and_grad(ws, t)),
        "limit backward": rep(lambda: limit.backward(ws, x)),
        "limit update": rep(updater.sgd),
        "limit whole step": rep(lambda: carried.step(x, t)),
    }


def breakdown(times: dict[str, list[float]], reps: int) -> dict[str, dict[str, harness.Summary]]:
    """Per phase: fnbp us, limit us and their difference (pairwise per round)."""

    def us(name: str) -> list[float]:
        return [1e6 * s / reps for s in times[name]]

    out: dict[str, dict[str, harness.Summary]] = {}
    rounds = len(times["fnbp whole step"])
    glue: dict[str, list[float]] = {}
    for who in ("fnbp", "limit"):
        whole = us(f"{who} whole step")
        parts = [us(f"{who} {p}") for p in PHASES]
        glue[who] = [whole[i] - sum(p[i] for p in parts) for i in range(rounds)]
    for phase in (*PHASES, "glue", "whole step"):
        if phase == "glue":
            f, n = glue["fnbp"], glue["limit"]
        else:
            f, n = us(f"fnbp {phase}"), us(f"limit {phase}")
        out[phase] = {
            "fnbp": harness.Summary.of(f),
            "limit": harness.Summary.of(n),
            "diff": harness.Summary.of([a - b for a, b in zip(f, n, strict=True)]),
        }
    u = us("fnbp fb.update")
    out["update (fb.update)"] = {
        "fnbp": harness.Summary.of(u),
        "limit": out["update"]["limit"],
        "diff": harness.Summary.of([a - b for a, b in zip(u, us("limit update"), strict=True)]),
    }
    return out


def _fmt(s: harness.Summary) -> str:
    return f"{s.median:,.1f} ({s.lo:,.1f} to {s.hi:,.1f})"


def main(argv: Sequence[str] | None = None) -> int:
    def extra(p: argparse.ArgumentParser) -> None:
        p.add_argument("--batches", type=int, nargs="+", default=list(BATCHES))

    args = harness.parse_args(__doc__.splitlines()[0], argv, repeats=25, warmup=2, extra=extra)
    rng = np.random.default_rng(0)
    X = rng.random((max(args.batches), SIZES[0])).astype(np.float32)
    y = rng.integers(0, SIZES[-1], len(X))

    harness.start_report("Where the MLP step's time goes")
    print(
        f"Model {'-'.join(map(str, SIZES))}, float32; {args.repeats} interleaved rounds after "
        f"{args.warmup} warm-up; us per call, median (min to max); `fnbp - limit` pairwise.\n"
    )
    results = {}
    cases = [(SIZES, b) for b in args.batches] + [(TINY, 4)]
    for sizes, batch in cases:
        reps = max(4, 2048 // batch) if not args.quick else 2
        if sizes == TINY:
            reps = 400 if not args.quick else 20
        runs = contenders(sizes, batch, X, y, reps)
        times = harness.interleave(runs, repeats=args.repeats, warmup=args.warmup)
        rows = breakdown(times, reps)
        label = f"{'-'.join(map(str, sizes))}, batch {batch}"
        results[label] = {"reps": reps, "times": times, "breakdown": rows}
        gap = rows["whole step"]["diff"].median
        table = []
        for phase, r in rows.items():
            share = f"{100 * r['diff'].median / gap:.0f}%" if gap > 0 else "-"
            if phase == "update (fb.update)":
                share = ""
            table.append([phase, _fmt(r["fnbp"]), _fmt(r["limit"]), _fmt(r["diff"]), share])
        if sizes == TINY:
            print(f"## Overhead: the same step on a {label} (arithmetic negligible)\n")
        else:
            print(f"## {label}\n")
        headers = ["phase", "fnbp us", "numpy limit us", "fnbp - limit us", "share of the gap"]
        print(harness.markdown_table(headers, table), flush=True)
        if (sizes, batch) != cases[-1]:
            print()
    harness.end_report(args.json, {"results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
