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

import _harness as harness
import numpy as np

import fnbp as fb

CELLS = {"LSTM": fb.LSTMCell, "GRU": fb.GRUCell, "RNN": fb.RNNCell}
SHAPE = {"N": 32, "T": 100, "F": 64, "H": 128}
SHARES = {  # fraction name: (part, whole), taken pairwise within each round
    **harness.g_x_shares("matmuls"),
    **harness.g_x_shares("loop (H = 1)", "loop"),
}


class Case(harness.LayerCase):
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

    def parts(self) -> dict[str, Callable[[], object]]:
        return {
            **harness.g_x_pair("matmuls", self.matmuls),
            **harness.g_x_pair("loop (H = 1)", self.loop),
        }

    def check(self) -> str:
        """Finite differences on a small float64 copy of the layer; raises on a mismatch."""
        cell = CELLS[self.name].init(fb.random.key(1), 5, 4, dtype=np.float64)
        x = np.random.default_rng(1).standard_normal((3, 6, 5))
        report = fb.testing.check_grads(fb.Recurrent(cell), x, mode="projection")
        worst = max(report.errors.values())
        return f"{self.name}: worst relative error {worst:.1e} over {len(report.errors)} leaves"


HEADERS = harness.pass_headers(
    "matmuls", "loop (H = 1) ms", "loop / fnbp", "rest", "matmul GFLOP/s"
)


def rows(case: Case, r: dict) -> list[list[str]]:
    ms, share = r["ms"], r["share"]
    gflops = case.flops / (1e-3 * ms["matmuls"].median) / 1e9
    cells = []
    for suffix in ("", ", no g_x"):
        rest = 1.0 - share["matmuls" + suffix].median - share["loop" + suffix].median
        loop = harness.fmt_ms(ms["loop (H = 1)" + suffix])
        cells.append([loop, harness.fmt_pct(share["loop" + suffix]), f"{100 * rest:.0f}%"])
    cells[0].append(f"{gflops:.1f}")
    cells[1].append("")
    return harness.pass_rows(case.label, r, "matmuls", *cells)


TITLE = "Recurrent (LSTM, GRU) forward + backward vs its matrix multiplies"


def main(argv: Sequence[str] | None = None) -> int:
    def extra(p: argparse.ArgumentParser) -> None:
        p.add_argument("--cells", nargs="+", choices=list(CELLS), default=["LSTM", "GRU"])
        for name, value in SHAPE.items():
            p.add_argument(f"-{name}", type=int, default=value, help=f"default {value}")

    args = harness.parse_args(
        __doc__.splitlines()[0], argv, repeats=15, warmup=2, extra=extra, target_ms=(200, 50)
    )
    dtype = np.dtype(args.dtype)

    cases = {name: Case(name, dtype, args.N, args.T, args.F, args.H) for name in args.cells}
    intro = (
        f"`fb.Recurrent(cell)` on `(N, T, F)`, all outputs, {dtype}; "
        f"{harness.layer_note(args)}; rest = 1 - matmuls - loop."
    )
    return harness.report_cases(TITLE, intro, cases, SHARES, rows, HEADERS, args)


if __name__ == "__main__":
    raise SystemExit(main())
