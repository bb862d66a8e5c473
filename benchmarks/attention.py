"""MultiHeadAttention speed: forward + backward against its matrix products alone.

One call is ``y, pullback = layer.vjp(x)`` then ``pullback(g_y)`` for
self-attention on ``x`` of shape ``(N, T, D)`` (default N=32, T=128, D=64, 4 heads,
float32, random biases), without and with the causal mask. The pass holds 18
products (``M = N*T`` rows, ``h`` heads of size ``dh = D/h``):

* 12 projection matmuls, ``M x D x D`` multiply-adds each: ``x W_q``, ``x W_k``,
  ``x W_v``, ``O W_o`` forward; for each of the four a weight gradient
  ``x^T g`` and an input gradient ``g W^T``;
* 6 attention einsums, ``N h T T dh`` each: ``S = q k^T`` and ``O = A v`` forward,
  ``g_A = g_O v^T``, ``g_v = A^T g_O``, ``g_q = g_S k``, ``g_k = g_S^T q`` backward,
  called exactly as fnbp calls them (``np.einsum(..., optimize=True)``).

Contenders, interleaved round by round (one repetition is ``inner`` calls,
chosen so that a repetition takes about ``--target-ms``):

* ``fnbp``: the layer, input gradient included; ``fnbp, no g_x`` without it
  (three of the 12 matmuls fewer);
* ``products``: the 18 products alone on precomputed operands (``products, no g_x``
  the 15); ``einsums`` the 6 attention einsums alone, ``matmuls`` the 12 matmuls;
* ``softmax``: the elementwise work on the scores ``(N, h, T, T)`` alone, as fnbp
  does it: the mask, the softmax, its backward pass and the mask again.

``products / fnbp`` is ``t_products / t_fnbp`` from the same round: the fraction
of the layer's time that is its matrix products. Before timing, fnbp's float32
output and gradients are checked against the same layer in float64.

Run: ``python benchmarks/attention.py`` (``--quick`` for a smoke test,
``--blas-threads 1`` for steadier numbers on a busy machine).
"""

from __future__ import annotations

import argparse
import math
import time
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
from fnbp._numeric import softmax, softmax_grad
from fnbp.layers.attention import _hidden

EINSUMS = (  # (spec, left operand, right operand): the six products of attend, in order
    ("nqhd,nkhd->nhqk", "q", "k"),
    ("nhqk,nkhd->nqhd", "A", "v"),
    ("nqhd,nkhd->nhqk", "g_O", "v"),
    ("nhqk,nqhd->nkhd", "A", "g_O"),
    ("nhqk,nkhd->nqhd", "g_S", "k"),
    ("nhqk,nqhd->nkhd", "g_S", "q"),
)
SHARES = {  # fraction name: (part, whole), taken pairwise within each round
    "products": ("products", "fnbp"),
    "products, no g_x": ("products, no g_x", "fnbp, no g_x"),
    "einsums": ("einsums", "fnbp"),
    "matmuls": ("matmuls", "fnbp"),
    "softmax": ("softmax", "fnbp"),
}


class Case:
    """One layer, its input and cotangent, and the operands of its products."""

    def __init__(self, n: int, t: int, d: int, heads: int, causal: bool, dtype: np.dtype) -> None:
        rng = np.random.default_rng(0)
        layer = fb.MultiHeadAttention.init(fb.random.key(0), d, heads, causal=causal, dtype=dtype)
        self.layer = fb.replace(
            layer, **{f"b_{r}": rng.standard_normal(d).astype(dtype) for r in "qkvo"}
        )
        self.label = f"({n}, {t}, {d}), {heads} heads" + (", causal" if causal else "")
        self.x = rng.standard_normal((n, t, d)).astype(dtype)
        self.g_y = rng.standard_normal((n, t, d)).astype(dtype)
        self.X = self.x.reshape(-1, d)
        self.W = np.array(self.layer.W_q)
        self.G = self.g_y.reshape(-1, d)
        self.out = np.empty_like(self.X)
        self.gW = np.empty_like(self.W)
        split = (n, t, heads, d // heads)
        self.ops = {
            "q": (self.X @ self.layer.W_q).reshape(split),
            "k": (self.X @ self.layer.W_k).reshape(split),
            "v": (self.X @ self.layer.W_v).reshape(split),
            "g_O": self.G.dot(self.layer.W_o.T).reshape(split),
        }
        self.hidden = _hidden(t, t, causal, None)
        self.ops["q"] *= 1.0 / math.sqrt(d // heads)  # a Python float: q stays float32
        self.S = np.einsum("nqhd,nkhd->nhqk", self.ops["q"], self.ops["k"], optimize=True)
        self.ops["A"] = self.ops["g_S"] = softmax(self.S)
        self.g_A = np.einsum("nqhd,nkhd->nhqk", self.ops["g_O"], self.ops["v"], optimize=True)
        self.flops = {"matmul": 2.0 * n * t * d * d, "einsum": 2.0 * n * heads * t * t * d / heads}

    def fnbp(self, need_g_x: bool) -> tuple:
        _, pullback = self.layer.vjp(self.x, need_g_x)
        return pullback(self.g_y)

    def matmuls(self, need_g_x: bool) -> None:
        """The 12 (or 9) projection products, bare, into preallocated buffers."""
        for _ in range(4):
            np.matmul(self.X, self.W, out=self.out)  # forward
            np.matmul(self.X.T, self.G, out=self.gW)  # weight gradient
        for _ in range(4 if need_g_x else 1):  # g_O = g_y W_o^T is needed either way
            np.matmul(self.G, self.W.T, out=self.out)

    def einsums(self) -> None:
        """The 6 attention products, called as fnbp calls them."""
        ops = self.ops
        for spec, a, b in EINSUMS:
            np.einsum(spec, ops[a], ops[b], optimize=True)

    def products(self, need_g_x: bool) -> None:
        self.matmuls(need_g_x)
        self.einsums()

    def softmax(self) -> None:
        """The elementwise work on the ``(N, h, T, T)`` scores, as in fnbp's attend: mask,
        softmax; softmax backward, mask. (Masking in place on a kept buffer costs what
        fnbp's pass costs and leaves it unchanged.)"""
        S = self.S
        if self.hidden is not None:
            np.copyto(S, np.finfo(S.dtype).min, where=self.hidden)
        A = softmax(S)
        g_S = softmax_grad(A, self.g_A)
        if self.hidden is not None:
            np.copyto(g_S, 0.0, where=self.hidden)

    def check(self) -> str:
        """fnbp in float32 against the same layer in float64; raises on a mismatch."""
        y, pullback = self.layer.vjp(self.x)
        g_x, grads = pullback(self.g_y)
        wide = fb.tree.map(lambda a: a.astype(np.float64), self.layer)
        y64, pullback64 = wide.vjp(self.x.astype(np.float64))
        g_x64, grads64 = pullback64(self.g_y.astype(np.float64))
        errs = {"y": _rel(y, y64), "g_x": _rel(g_x, g_x64)}
        for name in ("W_q", "W_k", "W_v", "W_o", "b_q", "b_v", "b_o"):
            errs[f"g_{name}"] = _rel(getattr(grads, name), getattr(grads64, name))
        bad = {k: v for k, v in errs.items() if not v <= 1e-4}
        if bad or grads.b_k.any():
            raise SystemExit(f"check failed for {self.label}: {bad}, g_b_k {grads.b_k.max()}")
        return f"worst {max(errs, key=errs.get)} {max(errs.values()):.1e}"


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def repeated(fn: Callable[[], object], inner: int) -> Callable[[], None]:
    def run() -> None:
        for _ in range(inner):
            fn()

    return run


def calibrate(fn: Callable[[], object], target_s: float) -> int:
    """Calls per repetition so that one repetition takes about ``target_s``."""
    fn()
    t0 = time.perf_counter()
    fn()
    return max(1, round(target_s / max(time.perf_counter() - t0, 1e-9)))


def measure(case: Case, repeats: int, warmup: int, target_s: float) -> dict:
    inner = calibrate(lambda: case.fnbp(True), target_s)
    contenders = {
        "fnbp": lambda: case.fnbp(True),
        "fnbp, no g_x": lambda: case.fnbp(False),
        "products": lambda: case.products(True),
        "products, no g_x": lambda: case.products(False),
        "einsums": case.einsums,
        "matmuls": lambda: case.matmuls(True),
        "softmax": case.softmax,
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
    gflops = (12 * case.flops["matmul"] + 6 * case.flops["einsum"]) / ms["products"].median / 1e6
    return [
        [
            case.label,
            "with g_x",
            fmt_ms(ms["fnbp"]),
            fmt_ms(ms["products"]),
            fmt_pct(share["products"]),
            fmt_pct(share["einsums"]),
            fmt_pct(share["matmuls"]),
            fmt_pct(share["softmax"]),
            f"{gflops:.1f}",
        ],
        [
            "",
            "no g_x",
            fmt_ms(ms["fnbp, no g_x"]),
            fmt_ms(ms["products, no g_x"]),
            fmt_pct(share["products, no g_x"]),
            "",
            "",
            "",
            "",
        ],
    ]


def main(argv: Sequence[str] | None = None) -> int:
    def extra(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--shape", type=int, nargs=4, default=(32, 128, 64, 4), metavar=("N", "T", "D", "H")
        )
        p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
        p.add_argument(
            "--target-ms",
            type=float,
            default=None,
            help="time per repetition (default 300, quick 50)",
        )

    args = parse_args(__doc__.splitlines()[0], argv, repeats=15, warmup=2, extra=extra)
    target_s = (args.target_ms or (50.0 if args.quick else 300.0)) / 1e3
    dtype = np.dtype(args.dtype)
    n, t, d, heads = args.shape

    print("# MultiHeadAttention forward + backward vs its matrix products\n")
    print(facts_markdown(machine_facts()), "\n")
    print(
        f"Self-attention, {dtype}; one call is `layer.vjp(x)` + `pullback(g_y)`. "
        f"{args.repeats} interleaved repetitions after {args.warmup} warm-up, each about "
        f"{1e3 * target_s:.0f} ms of calls; ms per call, median (min-max); fractions are "
        "pairwise within a round.\n"
    )
    cases = [Case(n, t, d, heads, causal, dtype) for causal in (False, True)]
    for case in cases:
        print(f"Correctness, {case.label}: {case.check()} (relative, vs float64)")
    print(flush=True)

    results, table = {}, []
    for case in cases:
        results[case.label] = r = measure(case, args.repeats, args.warmup, target_s)
        table += rows(case, r)
    headers = [
        "case",
        "pass",
        "fnbp ms",
        "products alone ms",
        "products / fnbp",
        "einsums / fnbp",
        "matmuls / fnbp",
        "softmax / fnbp",
        "products GFLOP/s",
    ]
    print(markdown_table(headers, table))
    print(f"\nLoad average at the end: {load_average()}")
    write_json(args.json, {"facts": machine_facts(), "dtype": str(dtype), "results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
