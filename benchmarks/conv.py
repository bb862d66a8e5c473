"""Conv2D speed: forward + backward against its matrix multiplies alone.

fnbp's Conv2D is patch extraction plus one matrix multiply (see
``fnbp/layers/conv.py``). This script measures how much of a forward +
backward pass is that arithmetic, and how much goes to moving data around:
building the patch matrix and scattering the patch gradients back (col2im).

Cases (channels-last, 3x3 kernel, stride 1, ``"same"`` padding, batch 128):

* ``digits``: ``(128, 8, 8, 1) -> 16`` channels, scikit-learn's digits scale;
* ``mnist``: ``(128, 28, 28, 1) -> 32`` channels, a first layer on MNIST;
* ``mnist-2``: ``(128, 14, 14, 32) -> 32`` channels, a second layer after 2x2 pooling.

Contenders per case, interleaved round by round (one repetition is
``inner`` calls, chosen so a repetition takes about ``--target-ms``):

* ``fnbp``: ``y, pullback = layer.vjp(x); pullback(g_y)``, input gradient included;
* ``fnbp, no g_x``: the same with ``need_g_x=False`` (what ``value_and_grad``
  asks of a first layer);
* ``matmuls``: only the pass's three products ``P @ W_flat``, ``P^T g_Y`` and
  ``g_Y W_flat^T`` (``M x K x C_out`` multiply-adds each, ``M = N*H*W``,
  ``K = 9*C_in``), bare ``np.matmul`` into preallocated arrays with ``out=``;
  ``matmuls, no g_x`` the first two;
* ``patch extraction``: fnbp's padding + patch matrix (``conv.pad``, ``conv.patches``);
* ``col2im``: fnbp's scatter-add of the patch gradients ``g_P`` (given) back
  into the input (``conv.col2im`` and ``conv.crop``).

``matmuls / fnbp`` is ``t_matmuls / t_fnbp`` from the same round: the fraction
of the layer's time that is the matrix multiply alone. The extraction and
col2im columns are the same kind of fraction. Before timing, fnbp's output and
gradients are checked against the bare products and ``<x, g_x>`` against
``<y - b, g_y>`` (the adjoint identity).

Run: ``python benchmarks/conv.py`` (``--quick`` for a smoke test,
``--blas-threads 1`` for steadier numbers on a busy machine).
"""

from __future__ import annotations

import argparse
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
from fnbp.layers import conv

CASES = {
    "digits": (128, 8, 1, 16),
    "mnist": (128, 28, 1, 32),
    "mnist-2": (128, 14, 32, 32),
}
KERNEL = (3, 3)
SHARES = {  # fraction name: (part, whole), taken pairwise within each round
    "matmuls": ("matmuls", "fnbp"),
    "matmuls, no g_x": ("matmuls, no g_x", "fnbp, no g_x"),
    "patch extraction": ("patch extraction", "fnbp"),
    "patch extraction, no g_x": ("patch extraction", "fnbp, no g_x"),
    "col2im": ("col2im", "fnbp"),
}


class Case:
    """One layer, its input, a cotangent and the bare-matmul buffers."""

    def __init__(self, name: str, dtype: np.dtype) -> None:
        n, size, c_in, c_out = CASES[name]
        rng = np.random.default_rng(0)
        self.name = name
        self.label = f"{name}: ({n}, {size}, {size}, {c_in}) -> {c_out}"
        self.layer = fb.replace(
            fb.Conv2D.init(fb.random.key(0), c_in, c_out, KERNEL, padding="same", dtype=dtype),
            b=rng.standard_normal(c_out).astype(dtype),
        )
        self.x = rng.standard_normal((n, size, size, c_in)).astype(dtype)
        self.g_y = rng.standard_normal((n, size, size, c_out)).astype(dtype)
        self.pads, self.out = conv.geometry("Conv2D", self.x.shape, KERNEL, (1, 1), "same")
        self.xp = conv.pad(self.x, self.pads)
        m, k = n * size * size, KERNEL[0] * KERNEL[1] * c_in
        self.P = np.ascontiguousarray(conv.patches(self.xp, KERNEL, (1, 1), self.out)[:, :k])
        self.W = np.array(self.layer.W.reshape(k, c_out))
        self.G = np.ascontiguousarray(self.g_y.reshape(m, c_out))
        self.Y, self.gW, self.gP = np.empty((m, c_out), dtype), np.empty_like(self.W), self.P * 0
        self.flops = 2.0 * m * k * c_out  # one product
        g_P = conv._patch_grads(self.G, self.layer.W)  # offset-major, as fnbp's pullback has it
        self.g_P = g_P.reshape(*KERNEL, n, *self.out, c_in)

    def fnbp(self, need_g_x: bool) -> tuple:
        _, pullback = self.layer.vjp(self.x, need_g_x)
        return pullback(self.g_y)

    def matmuls(self, need_g_x: bool) -> None:
        np.matmul(self.P, self.W, out=self.Y)
        np.matmul(self.P.T, self.G, out=self.gW)
        if need_g_x:
            np.matmul(self.G, self.W.T, out=self.gP)

    def extract(self) -> np.ndarray:
        return conv.patches(conv.pad(self.x, self.pads), KERNEL, (1, 1), self.out)

    def col2im(self) -> np.ndarray:
        return conv.crop(conv.col2im(self.g_P, self.xp.shape, (1, 1)), self.x.shape, self.pads)

    def check(self) -> str:
        """fnbp against the bare products and the adjoint identity; raises on a mismatch."""
        tol = 1e-4 if self.x.dtype == np.float32 else 1e-10
        y = fb.forward(self.layer, self.x)
        g_x, grads = self.fnbp(True)
        self.matmuls(True)
        errs = {
            "y": _rel(y.reshape(self.Y.shape) - self.layer.b, self.Y),
            "g_W": _rel(grads.W.reshape(self.gW.shape), self.gW),
            "g_b": _rel(grads.b, self.G.sum(axis=0)),
            "<x, g_x> vs <y - b, g_y>": _rel(
                np.vdot(self.x.astype(np.float64), g_x),
                np.vdot((y - self.layer.b).astype(np.float64), self.g_y),
            ),
        }
        bad = {k: v for k, v in errs.items() if not v <= tol}
        if bad:
            raise SystemExit(f"check failed for {self.label}: {bad}")
        return ", ".join(f"{k} {v:.1e}" for k, v in errs.items())


def _rel(a: np.ndarray | float, b: np.ndarray | float) -> float:
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
        "matmuls": lambda: case.matmuls(True),
        "matmuls, no g_x": lambda: case.matmuls(False),
        "patch extraction": case.extract,
        "col2im": case.col2im,
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
    return f"{s.median:.2f} ({s.lo:.2f}-{s.hi:.2f})"


def rows(case: Case, r: dict) -> list[list[str]]:
    ms, share = r["ms"], r["share"]
    gflops = 3 * case.flops / (1e-3 * ms["matmuls"].median) / 1e9
    return [
        [
            case.label,
            "with g_x",
            fmt_ms(ms["fnbp"]),
            fmt_ms(ms["matmuls"]),
            fmt_pct(share["matmuls"]),
            fmt_pct(share["patch extraction"]),
            fmt_pct(share["col2im"]),
            f"{gflops:.1f}",
        ],
        [
            "",
            "no g_x",
            fmt_ms(ms["fnbp, no g_x"]),
            fmt_ms(ms["matmuls, no g_x"]),
            fmt_pct(share["matmuls, no g_x"]),
            fmt_pct(share["patch extraction, no g_x"]),
            "-",
            "",
        ],
    ]


def main(argv: Sequence[str] | None = None) -> int:
    def extra(p: argparse.ArgumentParser) -> None:
        p.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
        p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
        p.add_argument(
            "--target-ms",
            type=float,
            default=None,
            help="time per repetition (default 60, quick 10)",
        )

    args = parse_args(__doc__.splitlines()[0], argv, repeats=21, warmup=2, extra=extra)
    target_s = (args.target_ms or (10.0 if args.quick else 60.0)) / 1e3
    dtype = np.dtype(args.dtype)

    print("# Conv2D forward + backward vs its matrix multiplies\n")
    print(facts_markdown(machine_facts()), "\n")
    print(
        f"Conv2D 3x3, stride 1, padding 'same', {dtype}, channels-last; one call is "
        f"`layer.vjp(x)` + `pullback(g_y)`. {args.repeats} interleaved repetitions after "
        f"{args.warmup} warm-up, each about {1e3 * target_s:.0f} ms of calls; "
        "ms per call, median (min-max); fractions are pairwise within a round.\n"
    )
    cases = [Case(name, dtype) for name in args.cases]
    for case in cases:
        print(f"Correctness, {case.label}: {case.check()} (relative, max)")
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
        "patch extraction / fnbp",
        "col2im / fnbp",
        "matmul GFLOP/s",
    ]
    print(markdown_table(headers, table))
    print(f"\nLoad average at the end: {load_average()}")
    write_json(args.json, {"facts": machine_facts(), "dtype": str(dtype), "results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
