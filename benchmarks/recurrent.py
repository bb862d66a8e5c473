"""LSTM and GRU speed: forward + backward through time against their matrix multiplies alone.

``fb.Recurrent`` hoists the input projection out of the time loop (one
product for all ``T`` steps before it, the weight gradients and ``g_x`` one
product each after it); what stays in the loop is the recurrent product
``h_{t-1} W_h`` forward, the carry ``g_hp_t W_h^T`` backward, and each
cell's elementwise gate arithmetic. This script measures how much of a
forward + backward pass is those matrix multiplies, and how much is the
Python loop over time itself.

Case (the issue's): ``N = 32`` sequences of ``T = 100`` steps, ``F = 64``
inputs, ``H = 128`` units, float32, all outputs returned. Contenders per
cell, interleaved round by round (medians of ``--repeats`` rounds):

* ``fnbp``: ``y, pullback = layer.vjp(x); pullback(g_y)``, the input gradient
  included; ``fnbp, no g_x`` with ``need_g_x=False`` (a first layer in training);
* ``matmuls``: only the pass's products, bare ``np.matmul`` into preallocated
  arrays with ``out=``: ``X W_i`` (``N*T`` rows), ``T`` times ``h_{t-1} W_h``
  and ``T`` times ``g_hp_t W_h^T`` (``N`` rows each), ``X^T g_xp``,
  ``H_prev^T g_hp`` and ``g_xp W_i^T``; ``matmuls, no g_x`` without the last;
* ``loop (H = 1)``: the same layer with one unit: the arithmetic all but
  vanishes and what is left is the cost of the loop over time -- per step a
  few dozen numpy calls on tiny arrays, and Python around them.

``matmuls / fnbp`` and ``loop / fnbp`` are ratios within one round; the rest
is the elementwise work (sigmoid, tanh, products), the copies into the
stacked arrays, and the transposes in and out. Before timing, each cell's
gradients are checked against finite differences on a small float64 copy.

Run: ``python benchmarks/recurrent.py`` (``--quick`` for a smoke test,
``--blas-threads 1`` for steadier numbers on a busy machine).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

import numpy as np
from _harness import (
    Summary,
    facts_markdown,
    fmt_pct,
    interleave,
    load_average,
    machine_facts,
    markdown_table,
    pair_ratios,
    parse_args,
    write_json,
)

import fnbp as fb

CELLS = {"LSTM": fb.LSTMCell, "GRU": fb.GRUCell, "RNN": fb.RNNCell}
SHAPE = {"N": 32, "T": 100, "F": 64, "H": 128}
SHARES = {  # fraction name: (part, whole), taken pairwise within each round
    "matmuls": ("matmuls", "fnbp"),
    "matmuls, no g_x": ("matmuls, no g_x", "fnbp, no g_x"),
    "loop": ("loop (H = 1)", "fnbp"),
    "loop, no g_x": ("loop (H = 1), no g_x", "fnbp, no g_x"),
}


class Case:
    """One cell's layer, its input and cotangent, and the bare-matmul buffers."""

    def __init__(self, name: str, dtype: np.dtype, n: int, steps: int, f: int, h: int) -> None:
        cls, rng = CELLS[name], np.random.default_rng(0)
        self.name, self.dtype = name, dtype
        self.label = f"{name}: N={n}, T={steps}, F={f}, H={h}"
        self.layer = fb.Recurrent(cls.init(fb.random.key(0), f, h, dtype=dtype))
        self.tiny = fb.Recurrent(cls.init(fb.random.key(0), f, 1, dtype=dtype))
        self.x = rng.standard_normal((n, steps, f)).astype(dtype)
        self.g_y = rng.standard_normal((n, steps, h)).astype(dtype)
        self.g_tiny = rng.standard_normal((n, steps, 1)).astype(dtype)
        gh = cls.GATES * h
        cell = self.layer.cell
        self.W_i, self.W_h = np.array(cell.W_i), np.array(cell.W_h)
        self.X = self.x.reshape(-1, f)
        self.XP, self.HP = np.empty((n * steps, gh), dtype), np.empty((steps, n, gh), dtype)
        self.Hs = rng.standard_normal((steps, n, h)).astype(dtype)
        self.G = rng.standard_normal((steps, n, gh)).astype(dtype)
        self.G_flat, self.H_flat = self.G.reshape(-1, gh), self.Hs.reshape(-1, h)
        self.g_carry = np.empty((steps, n, h), dtype)
        self.gW_i, self.gW_h = np.empty_like(self.W_i), np.empty_like(self.W_h)
        self.gX = np.empty_like(self.X)
        # multiply-adds: 3 products of N*T x F x GH, 2 T of N x H x GH, 1 of N*T x H x GH
        self.flops = 2.0 * n * steps * gh * (3 * f + 3 * h)

    def fnbp(self, need_g_x: bool) -> tuple:
        _, pullback = self.layer.vjp(self.x, need_g_x)
        return pullback(self.g_y)

    def loop(self, need_g_x: bool) -> tuple:
        _, pullback = self.tiny.vjp(self.x, need_g_x)
        return pullback(self.g_tiny)

    def matmuls(self, need_g_x: bool) -> None:
        np.matmul(self.X, self.W_i, out=self.XP)  # the input projection, all steps
        for t in range(len(self.Hs)):
            np.matmul(self.Hs[t], self.W_h, out=self.HP[t])  # h_{t-1} W_h
        for t in range(len(self.G)):
            np.matmul(self.G[t], self.W_h.T, out=self.g_carry[t])  # g_hp_t W_h^T
        np.matmul(self.X.T, self.G_flat, out=self.gW_i)
        np.matmul(self.H_flat.T, self.G_flat, out=self.gW_h)
        if need_g_x:
            np.matmul(self.G_flat, self.W_i.T, out=self.gX)

    def check(self) -> str:
        """Finite differences on a small float64 copy of the layer; raises on a mismatch."""
        cell = CELLS[self.name].init(fb.random.key(1), 5, 4, dtype=np.float64)
        x = np.random.default_rng(1).standard_normal((3, 6, 5))
        report = fb.testing.check_grads(fb.Recurrent(cell), x, mode="projection")
        worst = max(report.errors.values())
        return f"worst relative error {worst:.1e} over {len(report.errors)} leaves"


def repeated(fn: Callable[[], object], inner: int) -> Callable[[], None]:
    def run() -> None:
        for _ in range(inner):
            fn()

    return run


def calibrate(fn: Callable[[], object], target_s: float) -> int:
    """Calls per repetition so that one repetition takes about ``target_s``."""
    import time

    fn()
    t0 = time.perf_counter()
    fn()
    return max(1, round(target_s / max(time.perf_counter() - t0, 1e-9)))


def measure(case: Case, repeats: int, warmup: int, target_s: float) -> dict:
    inner = calibrate(lambda: case.fnbp(True), target_s)
    contenders = {
        "fnbp": lambda: case.fnbp(True),
        "fnbp, no g_x": lambda: case.fnbp(False),
        "matmuls": lambda: case.matmuls(True),
        "matmuls, no g_x": lambda: case.matmuls(False),
        "loop (H = 1)": lambda: case.loop(True),
        "loop (H = 1), no g_x": lambda: case.loop(False),
    }
    times = interleave(
        {k: repeated(f, inner) for k, f in contenders.items()}, repeats=repeats, warmup=warmup
    )
    ms = {k: Summary.of([1e3 * t / inner for t in v]) for k, v in times.items()}
    share = {
        name: Summary.of(pair_ratios(times[part], times[whole]))
        for name, (part, whole) in SHARES.items()
    }
    return {"inner": inner, "times": times, "ms": ms, "share": share}


def fmt_ms(s: Summary) -> str:
    return f"{s.median:.1f} ({s.lo:.1f}-{s.hi:.1f})"


def rows(case: Case, r: dict) -> list[list[str]]:
    ms, share = r["ms"], r["share"]
    gflops = case.flops / (1e-3 * ms["matmuls"].median) / 1e9
    out = []
    for suffix, label in (("", "with g_x"), (", no g_x", "no g_x")):
        rest = 1.0 - share["matmuls" + suffix].median - share["loop" + suffix].median
        out.append([
            case.label if not suffix else "",
            label,
            fmt_ms(ms["fnbp" + suffix]),
            fmt_ms(ms["matmuls" + suffix]),
            fmt_pct(share["matmuls" + suffix]),
            fmt_ms(ms["loop (H = 1)" + suffix]),
            fmt_pct(share["loop" + suffix]),
            f"{100 * rest:.0f}%",
            f"{gflops:.1f}" if not suffix else "",
        ])  # fmt: skip
    return out


def main(argv: Sequence[str] | None = None) -> int:
    def extra(p: argparse.ArgumentParser) -> None:
        p.add_argument("--cells", nargs="+", choices=list(CELLS), default=["LSTM", "GRU"])
        p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
        for name, value in SHAPE.items():
            p.add_argument(f"-{name}", type=int, default=value, help=f"default {value}")
        p.add_argument(
            "--target-ms",
            type=float,
            default=None,
            help="time per repetition (default 200, quick 50)",
        )

    args = parse_args(__doc__.splitlines()[0], argv, repeats=15, warmup=2, extra=extra)
    target_s = (args.target_ms or (50.0 if args.quick else 200.0)) / 1e3
    dtype = np.dtype(args.dtype)

    print("# Recurrent (LSTM, GRU) forward + backward vs its matrix multiplies\n")
    print(facts_markdown(machine_facts()), "\n")
    print(
        f"`fb.Recurrent(cell)` on `(N, T, F)`, all outputs, {dtype}; one call is "
        f"`layer.vjp(x)` + `pullback(g_y)`. {args.repeats} interleaved repetitions after "
        f"{args.warmup} warm-up, each about {1e3 * target_s:.0f} ms of calls; ms per call, "
        "median (min-max); fractions are pairwise within a round; rest = 1 - matmuls - loop.\n"
    )
    cases = [Case(name, dtype, args.N, args.T, args.F, args.H) for name in args.cells]
    for case in cases:
        print(f"Correctness, {case.name}: {case.check()}")
    print(flush=True)

    results, table = {}, []
    for case in cases:
        results[case.name] = r = measure(case, args.repeats, args.warmup, target_s)
        table += rows(case, r)
    headers = [
        "case",
        "pass",
        "fnbp ms",
        "matmuls alone ms",
        "matmuls / fnbp",
        "loop (H = 1) ms",
        "loop / fnbp",
        "rest",
        "matmul GFLOP/s",
    ]
    print(markdown_table(headers, table))
    print(f"\nLoad average at the end: {load_average()}")
    write_json(args.json, {"facts": machine_facts(), "dtype": str(dtype), "results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
