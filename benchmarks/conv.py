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
* ``fnbp, kept workspace``: fnbp's pass (with ``g_x``) inside ``fnbp.workspace.kept()``,
  as ``fb.train_step`` runs it: its large new arrays are kept ones of earlier calls;
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
from collections.abc import Callable, Sequence

import _harness as harness
import numpy as np

import fnbp as fb
from fnbp import workspace
from fnbp.layers import conv

CASES = {
    "digits": (128, 8, 1, 16),
    "mnist": (128, 28, 1, 32),
    "mnist-2": (128, 14, 32, 32),
}
KERNEL = (3, 3)
SHARES = {  # fraction name: (part, whole), taken pairwise within each round
    **harness.g_x_shares("matmuls"),
    **harness.fnbp_shares("patch extraction", "col2im"),
    "patch extraction, no g_x": ("patch extraction", "fnbp, no g_x"),
    "kept / fnbp": ("fnbp, kept workspace", "fnbp"),
    "matmuls / kept": ("matmuls", "fnbp, kept workspace"),
}


class Case(harness.LayerCase):
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

    def matmuls(self, need_g_x: bool) -> None:
        np.matmul(self.P, self.W, out=self.Y)
        np.matmul(self.P.T, self.G, out=self.gW)
        if need_g_x:
            np.matmul(self.G, self.W.T, out=self.gP)

    def extract(self) -> np.ndarray:
        return conv.patches(conv.pad(self.x, self.pads), KERNEL, (1, 1), self.out)

    def col2im(self) -> np.ndarray:
        return conv.crop(conv.col2im(self.g_P, self.xp.shape, (1, 1)), self.x.shape, self.pads)

    def kept(self) -> tuple:
        """fnbp's pass in a kept workspace, as inside ``fb.train_step``."""
        with workspace.kept():
            return self.fnbp(True)

    def parts(self) -> dict[str, Callable[[], object]]:
        return {
            **harness.g_x_pair("matmuls", self.matmuls),
            "patch extraction": self.extract,
            "col2im": self.col2im,
            "fnbp, kept workspace": self.kept,
        }

    def check(self) -> str:
        """fnbp against the bare products and the adjoint identity; raises on a mismatch."""
        tol = 1e-4 if self.x.dtype == np.float32 else 1e-10
        y = fb.forward(self.layer, self.x)
        g_x, grads = self.fnbp(True)
        self.matmuls(True)
        errs = {
            "y": harness.rel_error(y.reshape(self.Y.shape) - self.layer.b, self.Y),
            "g_W": harness.rel_error(grads.W.reshape(self.gW.shape), self.gW),
            "g_b": harness.rel_error(grads.b, self.G.sum(axis=0)),
            "<x, g_x> vs <y - b, g_y>": harness.rel_error(
                np.vdot(self.x.astype(np.float64), g_x),
                np.vdot((y - self.layer.b).astype(np.float64), self.g_y),
            ),
        }
        bad = {k: v for k, v in errs.items() if not v <= tol}
        if bad:
            raise SystemExit(f"check failed for {self.label}: {bad}")
        report = ", ".join(f"{k} {v:.1e}" for k, v in errs.items())
        return f"{self.label}: {report} (relative, max)"


HEADERS = harness.pass_headers(
    "matmuls",
    "patch extraction / fnbp",
    "col2im / fnbp",
    "matmul GFLOP/s",
    "kept workspace / fnbp",
    "matmuls / kept workspace",
)


def rows(case: Case, r: dict) -> list[list[str]]:
    ms, share = r["ms"], r["share"]
    gflops = 3 * case.flops / (1e-3 * ms["matmuls"].median) / 1e9
    with_g_x = [share["patch extraction"], share["col2im"]]
    kept = [harness.fmt_pct(share["kept / fnbp"]), harness.fmt_pct(share["matmuls / kept"])]
    cells = [*map(harness.fmt_pct, with_g_x), f"{gflops:.1f}", *kept]
    no_g_x = [harness.fmt_pct(share["patch extraction, no g_x"]), "-", "", "", ""]
    return harness.pass_rows(case.label, r, "matmuls", cells, no_g_x, digits=2)


TITLE = "Conv2D forward + backward vs its matrix multiplies"


def main(argv: Sequence[str] | None = None) -> int:
    def extra(p: argparse.ArgumentParser) -> None:
        p.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))

    args = harness.parse_args(
        __doc__.splitlines()[0], argv, repeats=21, warmup=2, extra=extra, target_ms=(60, 10)
    )
    dtype = np.dtype(args.dtype)

    cases = {name: Case(name, dtype) for name in args.cases}
    intro = (
        f"Conv2D 3x3, stride 1, padding 'same', {dtype}, channels-last; {harness.layer_note(args)}."
    )
    return harness.report_cases(TITLE, intro, cases, SHARES, rows, HEADERS, args)


if __name__ == "__main__":
    raise SystemExit(main())
