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
from collections.abc import Callable, Sequence

import _harness as harness
import numpy as np

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
    **harness.g_x_shares("products"),
    **harness.fnbp_shares("einsums", "matmuls", "softmax"),
}


class Case(harness.LayerCase):
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

    def parts(self) -> dict[str, Callable[[], object]]:
        return {
            **harness.g_x_pair("products", self.products),
            "einsums": self.einsums,
            "matmuls": lambda: self.matmuls(True),
            "softmax": self.softmax,
        }

    def check(self) -> str:
        """fnbp in float32 against the same layer in float64; raises on a mismatch."""
        y, pullback = self.layer.vjp(self.x)
        g_x, grads = pullback(self.g_y)
        wide = fb.tree.map(lambda a: a.astype(np.float64), self.layer)
        y64, pullback64 = wide.vjp(self.x.astype(np.float64))
        g_x64, grads64 = pullback64(self.g_y.astype(np.float64))
        errs = {"y": harness.rel_error(y, y64), "g_x": harness.rel_error(g_x, g_x64)}
        for name in ("W_q", "W_k", "W_v", "W_o", "b_q", "b_v", "b_o"):
            errs[f"g_{name}"] = harness.rel_error(getattr(grads, name), getattr(grads64, name))
        bad = {k: v for k, v in errs.items() if not v <= 1e-4}
        if bad or grads.b_k.any():
            raise SystemExit(f"check failed for {self.label}: {bad}, g_b_k {grads.b_k.max()}")
        worst = f"worst {max(errs, key=errs.get)} {max(errs.values()):.1e}"
        return f"{self.label}: {worst} (relative, vs float64)"


HEADERS = harness.pass_headers(
    "products", "einsums / fnbp", "matmuls / fnbp", "softmax / fnbp", "products GFLOP/s"
)


def rows(case: Case, r: dict) -> list[list[str]]:
    ms, share = r["ms"], r["share"]
    gflops = (12 * case.flops["matmul"] + 6 * case.flops["einsum"]) / ms["products"].median / 1e6
    pcts = [harness.fmt_pct(share[k]) for k in ("einsums", "matmuls", "softmax")]
    return harness.pass_rows(case.label, r, "products", [*pcts, f"{gflops:.1f}"], [""] * 4)


TITLE = "MultiHeadAttention forward + backward vs its matrix products"


def main(argv: Sequence[str] | None = None) -> int:
    def extra(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--shape", type=int, nargs=4, default=(32, 128, 64, 4), metavar=("N", "T", "D", "H")
        )

    args = harness.parse_args(
        __doc__.splitlines()[0], argv, repeats=15, warmup=2, extra=extra, target_ms=(300, 50)
    )
    dtype = np.dtype(args.dtype)
    n, t, d, heads = args.shape

    cases = {c.label: c for c in (Case(n, t, d, heads, causal, dtype) for causal in (False, True))}
    intro = f"Self-attention, {dtype}; {harness.layer_note(args)}."
    return harness.report_cases(TITLE, intro, cases, SHARES, rows, HEADERS, args)


if __name__ == "__main__":
    raise SystemExit(main())
