"""Optimizer step time: ``fb.optim.step`` against the same math written by hand in numpy.

The params are the MNIST-1D MLP ``fb.mlp(key, [40, 100, 100, 10])`` in float32
(15,210 parameters in six arrays, from 10 to 10,000 elements), the grads a
fixed random tree of the same structure (normal, scale 0.1, so the global norm
is about 12 and ``clip_by_global_norm(1.0)`` clips). One *step* is one
optimizer update of the params; a *repetition* is ``--steps`` steps.

Contenders per optimizer, all interleaved round by round:

* ``fnbp``: ``params, state = fb.optim.step(opt, params, grads, state)``.
* ``hand``: the same math as fnbp (``fnbp/optim/_leaf.py``, ``transforms.py``:
  PyTorch's momentum convention ``v = m v + g``, Adam's bias correction with
  ``eps`` outside the square root, AdamW decaying only the ``ndim >= 2``
  leaves, RMSprop and Adagrad with ``eps`` outside the root) written by hand
  for the same six arrays: the state preallocated, every update in place on its
  own copy of the params, scratch buffers kept. ``fnbp / hand`` is
  ``t_fnbp / t_hand`` from the same round.
* ``hand, flat``: the same hand-written code on one flat vector holding every
  parameter (the grads copied into one flat buffer first, counted): what the
  per-array call overhead costs at this size.

* ``floor``: what any step pays that keeps fnbp's contract and does no
  arithmetic at all -- pairing params with grads (one structure, checked) and
  building new records around arrays, done the cheapest way fnbp knows, the way
  its steps do it: the reader written for the tree's structure, then its builder
  (pair + rebuild), and the builder alone (rebuild), timed as contenders of their
  own. An optimizer whose state holds ``k - 1`` moment trees returns ``k`` new
  trees shaped like the params, so its *contract bound* is ``(pair + rebuild *
  (k - 1) + hand, flat) / hand``, paired per round: the ratio a step would reach
  if everything but the record building were as cheap as the flat hand-written
  math. A bound above the goal means the goal cannot be met on this network
  without giving up immutable records (or building them faster than fnbp can).

Before timing, a few steps with varying grads must give the same params in all
three (to float32 rounding), or the script stops.

Run: ``python benchmarks/optimizers.py --blas-threads 1`` (``--quick`` for a smoke test).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import _harness as harness
import numpy as np

import fnbp as fb
from fnbp.optim import _built  # the floor: fnbp's own readers and builders

SIZES = (40, 100, 100, 10)
GOAL = 1.5  # fnbp / hand, per step
Leaves = list[np.ndarray]


# ----------------------------------------------------------------------------- by hand


class HandSGD:
    """``p -= lr * g``; with momentum ``v = m v + g`` and ``p -= lr * v`` (Nesterov:
    ``p -= lr * (g + m v)``), as PyTorch's SGD with dampening 0."""

    def __init__(self, params: Leaves, lr: float, momentum: float = 0.0, nesterov: bool = False):
        self.p = [np.array(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.t = [np.empty_like(p) for p in params]
        self.lr, self.m, self.nesterov = lr, momentum, nesterov

    def step(self, grads: Leaves) -> None:
        a, m = -self.lr, self.m
        if not m:
            for p, g, t in zip(self.p, grads, self.t, strict=True):
                np.multiply(g, a, out=t)
                p += t
        elif not self.nesterov:
            for p, g, v, t in zip(self.p, grads, self.v, self.t, strict=True):
                v *= m
                v += g
                np.multiply(v, a, out=t)
                p += t
        else:
            for p, g, v, t in zip(self.p, grads, self.v, self.t, strict=True):
                v *= m
                v += g
                np.multiply(v, m, out=t)
                t += g
                t *= a
                p += t


class HandAdam:
    """Adam (``decay`` set: AdamW) with bias correction, ``eps`` outside the root::

        m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2
        p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)
        (AdamW first: p *= 1 - lr * wd on the leaves that decay)

    With ``clip``, the grads are first scaled into a kept buffer by
    ``clip / norm`` when their global norm exceeds ``clip``.
    """

    def __init__(
        self,
        params: Leaves,
        lr: float,
        b1: float = 0.9,
        b2: float = 0.999,
        eps: float = 1e-8,
        decay: Sequence[Any] | None = None,
        clip: float | None = None,
    ):
        self.p = [np.array(p) for p in params]
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.s = [np.empty_like(p) for p in params]
        self.gs = [np.empty_like(p) for p in params] if clip else None
        self.lr, self.b1, self.b2, self.eps = lr, b1, b2, eps
        self.keep = decay  # per leaf: None (no decay) or 1 - lr * wd (a float or an array)
        self.clip = clip
        self.count = 0

    def step(self, grads: Leaves) -> None:
        if self.clip is not None:
            norm = math.sqrt(sum(float(np.vdot(g, g)) for g in grads))
            if norm > self.clip:
                factor = self.clip / norm
                for g, gs in zip(grads, self.gs, strict=True):
                    np.multiply(g, factor, out=gs)
                grads = self.gs
        self.count += 1
        b1, b2, eps = self.b1, self.b2, self.eps
        a = -self.lr / (1.0 - b1**self.count)
        c = 1.0 / math.sqrt(1.0 - b2**self.count)
        keep = self.keep or [None] * len(self.p)
        for p, g, m, v, s, k in zip(self.p, grads, self.m, self.v, self.s, keep, strict=True):
            m *= b1
            np.multiply(g, 1.0 - b1, out=s)
            m += s
            v *= b2
            np.multiply(g, g, out=s)
            s *= 1.0 - b2
            v += s
            np.sqrt(v, out=s)
            s *= c
            s += eps
            np.divide(m, s, out=s)
            s *= a
            if k is not None:
                p *= k
            p += s


class HandRMSprop:
    """``v = d v + (1-d) g^2``; ``p -= lr * g / (sqrt(v) + eps)``; with ``decay=None``
    Adagrad's ``v = v + g^2`` (one branch per array: the same code serves both)."""

    def __init__(self, params: Leaves, lr: float, decay: float | None = 0.9, eps: float = 1e-8):
        self.p = [np.array(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.s = [np.empty_like(p) for p in params]
        self.lr, self.d, self.eps = lr, decay, eps

    def step(self, grads: Leaves) -> None:
        a, d, eps = -self.lr, self.d, self.eps
        for p, g, v, s in zip(self.p, grads, self.v, self.s, strict=True):
            np.multiply(g, g, out=s)
            if d is not None:
                v *= d
                s *= 1.0 - d
            v += s
            np.sqrt(v, out=s)
            s += eps
            np.divide(g, s, out=s)
            s *= a
            p += s


def HandAdagrad(params: Leaves, lr: float, eps: float = 1e-8) -> HandRMSprop:
    """``s = s + g^2``; ``p -= lr * g / (sqrt(s) + eps)``."""
    return HandRMSprop(params, lr, decay=None, eps=eps)


class Flat:
    """A hand-written optimizer on one flat vector: the params are views of it, the
    grads are copied into one flat buffer at every step (``np.concatenate(out=)``)."""

    def __init__(self, make: Callable[[Leaves], Any], params: Leaves):
        flat = np.concatenate([p.ravel() for p in params])
        self.inner = make([flat])
        self.g = np.empty_like(flat)
        out, start = [], 0
        for p in params:  # views of the optimizer's own flat copy
            out.append(self.inner.p[0][start : start + p.size].reshape(p.shape))
            start += p.size
        self.p = out

    def step(self, grads: Leaves) -> None:
        np.concatenate([g.ravel() for g in grads], out=self.g)
        self.inner.step([self.g])


# ----------------------------------------------------------------------------- the rows


def adamw_keep(params: Leaves, lr: float, wd: float, arrays: Leaves | None) -> list[Any]:
    """AdamW's per-leaf factor ``1 - lr * wd`` on ``ndim >= 2`` leaves (as fnbp's default
    mask), ``None`` elsewhere; for a flat vector of ``arrays``, one array of factors."""
    k = 1.0 - lr * wd
    if arrays is None:
        return [k if p.ndim >= 2 else None for p in params]
    return [np.concatenate([np.full(p.size, k if p.ndim >= 2 else 1.0, p.dtype) for p in arrays])]


Make = Callable[[Leaves, Leaves | None], Any]


def optimizers() -> dict[str, tuple[fb.optim.Optimizer, Make]]:
    """Row name -> (fnbp optimizer, ``make(leaves, arrays)``): the hand-written optimizer
    of ``leaves``, which are either the param arrays (``arrays`` None) or one flat
    vector holding ``arrays``."""
    lr, wd = 1e-3, 1e-2
    return {
        "sgd(0.01)": (fb.optim.sgd(0.01), lambda ps, arrays: HandSGD(ps, 0.01)),
        "sgd(0.01, momentum=0.9)": (
            fb.optim.sgd(0.01, momentum=0.9),
            lambda ps, arrays: HandSGD(ps, 0.01, 0.9),
        ),
        "sgd(0.01, momentum=0.9, nesterov)": (
            fb.optim.sgd(0.01, momentum=0.9, nesterov=True),
            lambda ps, arrays: HandSGD(ps, 0.01, 0.9, nesterov=True),
        ),
        "adam(1e-3)": (fb.optim.adam(lr), lambda ps, arrays: HandAdam(ps, lr)),
        "adamw(1e-3, weight_decay=1e-2)": (
            fb.optim.adamw(lr, weight_decay=wd),
            lambda ps, arrays: HandAdam(ps, lr, decay=adamw_keep(ps, lr, wd, arrays)),
        ),
        "rmsprop(1e-3)": (fb.optim.rmsprop(lr), lambda ps, arrays: HandRMSprop(ps, lr)),
        "adagrad(1e-2)": (fb.optim.adagrad(0.01), lambda ps, arrays: HandAdagrad(ps, 0.01)),
        "chain(clip_by_global_norm(1.0), adam(1e-3))": (
            fb.optim.chain(fb.optim.clip_by_global_norm(1.0), fb.optim.adam(lr)),
            lambda ps, arrays: HandAdam(ps, lr, clip=1.0),
        ),
    }


def hand(make: Make, params: Leaves, flat: bool) -> Any:
    """The hand-written optimizer of ``params``, per array or on one flat vector."""
    if flat:
        return Flat(lambda ps: make(ps, params), params)
    return make(params, None)


# ----------------------------------------------------------------------------- checks and timing


def fnbp_opt_step(opt: fb.optim.Optimizer, params: Any, grads: Any, state: Any) -> tuple:
    """The one fnbp call of an optimizer step."""
    return fb.optim.step(opt, params, grads, state)


def check(
    opt: fb.optim.Optimizer,
    make: Make,
    net0: Any,
    grad_trees: Sequence[Any],
    steps: int = 5,
) -> tuple[float, float, float]:
    """``steps`` steps with varying grads: (max |p_hand - p_fnbp|, the same for the flat
    version, max |p|); stops when either differs beyond float32 rounding."""
    params, state = net0, opt.init(net0)
    p0 = fb.tree.leaves(net0)
    by_hand, flat = hand(make, p0, False), hand(make, p0, True)
    for i in range(steps):
        grads = grad_trees[i % len(grad_trees)]
        params, state = fnbp_opt_step(opt, params, grads, state)
        leaves = fb.tree.leaves(grads)
        by_hand.step(leaves)
        flat.step(leaves)
    ref = fb.tree.leaves(params)
    scale = max(float(np.abs(p).max()) for p in ref)
    diffs = []
    for other in (by_hand, flat):
        diffs.append(max(float(np.abs(a - b).max()) for a, b in zip(other.p, ref, strict=True)))
    return diffs[0], diffs[1], scale


def main(argv: Sequence[str] | None = None) -> int:
    counts = {"steps": (200, 20, "steps per repetition")}
    args = harness.parse_args(__doc__.splitlines()[0], argv, repeats=25, warmup=2, counts=counts)
    steps = args.steps
    net0 = fb.mlp(fb.random.key(0), SIZES, dtype=np.float32)
    rng = np.random.default_rng(0)

    def random_grads() -> Any:
        return fb.tree.map(lambda p: (0.1 * rng.standard_normal(p.shape)).astype(p.dtype), net0)

    grads = random_grads()
    others = [random_grads(), random_grads()]
    leaves = fb.tree.leaves(net0)
    n_params = sum(p.size for p in leaves)

    harness.start_report("Optimizer step time")
    print(
        f"Params: fb.mlp(key, {list(SIZES)}), float32, {n_params:,} parameters in "
        f"{len(leaves)} arrays ({', '.join(str(p.shape) for p in leaves)}); grads: fixed "
        f"normal(0, 0.1) of the same structure, global norm {fb.tree.global_norm(grads):.1f}. "
        f"{steps} steps per repetition, {args.repeats} interleaved repetitions after "
        f"{args.warmup} warm-up; median (min-max).\n"
    )

    rows_check = []
    contenders: dict[str, Callable[[], None]] = {}
    for name, (opt, make) in optimizers().items():
        d_hand, d_flat, scale = check(opt, make, net0, [grads, *others])
        tol = 1e-5 * scale
        if not (d_hand <= tol and d_flat <= tol):
            raise SystemExit(
                f"check failed: {name}: hand-written differs from fnbp by {d_hand:.2e} "
                f"(flat {d_flat:.2e}) > {tol:.1e}"
            )
        rows_check.append([name, f"{d_hand:.1e}", f"{d_flat:.1e}", f"{scale:.3f}"])
        contenders[f"{name} | fnbp"] = make_fnbp(opt, net0, grads, steps)
        contenders[f"{name} | hand"] = make_hand(hand(make, leaves, False), grads, steps)
        contenders[f"{name} | flat"] = make_hand(hand(make, leaves, True), grads, steps)
    print("Correctness: max |params| difference from fnbp after 5 steps with varying grads:\n")
    print(harness.markdown_table(["optimizer", "hand", "hand, flat", "max |p|"], rows_check), "\n")

    contenders["floor | pair"] = make_floor(net0, grads, steps, pair=True)
    contenders["floor | rebuild"] = make_floor(net0, grads, steps, pair=False)
    times = harness.interleave(contenders, repeats=args.repeats, warmup=args.warmup)
    us = {k: harness.Summary.of([1e6 * t / steps for t in v]) for k, v in times.items()}
    opt_of = {name: opt for name, (opt, _) in optimizers().items()}
    rows, verdicts = [], []
    summary: dict[str, Any] = {}
    for name in optimizers():
        t_f, t_h, t_fl = (times[f"{name} | {c}"] for c in ("fnbp", "hand", "flat"))
        ratio = harness.Summary.of(harness.pair_ratios(t_f, t_h))
        flat_ratio = harness.Summary.of(harness.pair_ratios(t_f, t_fl))
        u = {c: us[f"{name} | {c}"] for c in ("fnbp", "hand", "flat")}
        rows.append(
            [
                name,
                harness.fmt_us(u["fnbp"]),
                harness.fmt_us(u["hand"]),
                harness.fmt_us(u["flat"]),
                harness.fmt_ratio(ratio),
                harness.fmt_ratio(flat_ratio),
                f"{u['fnbp'].median - u['hand'].median:.1f}",
            ]
        )
        k = returned_trees(opt_of[name], net0)
        bound = harness.Summary.of(
            [
                (pair + k_1 * rebuild + flat) / by_hand
                for pair, rebuild, flat, by_hand, k_1 in zip(
                    times["floor | pair"],
                    times["floor | rebuild"],
                    t_fl,
                    t_h,
                    [k - 1] * len(t_h),
                    strict=True,
                )
            ]
        )
        best = u["fnbp"].lo / u["hand"].lo
        verdicts.append(
            [
                name,
                f"<= {GOAL:.1f}x",
                harness.fmt_ratio(ratio),
                f"{best:.2f}x",
                f"{k}: {harness.fmt_ratio(bound)}",
                "met" if ratio.median <= GOAL else "NOT met",
            ]
        )
        summary[name] = {
            "us": u,
            "fnbp_vs_hand": ratio,
            "fnbp_vs_flat": flat_ratio,
            "contract_bound": bound,
        }
    headers = [
        "optimizer",
        "fnbp us/step",
        "hand us/step",
        "hand, flat us/step",
        "fnbp / hand (pairwise)",
        "fnbp / hand, flat (pairwise)",
        "fnbp - hand us",
    ]
    print(harness.markdown_table(headers, rows))
    print()
    headers = [
        "target: fnbp / hand",
        "goal",
        "median pairwise (min-max)",
        "best vs best",
        "trees k: contract bound",
        "verdict",
    ]
    print(harness.markdown_table(headers, verdicts))
    floor = {c: us[f"floor | {c}"] for c in ("pair", "rebuild")}
    print(
        f"\nFloor per step: pair + rebuild {harness.fmt_us(floor['pair'])} us, "
        f"rebuild alone {harness.fmt_us(floor['rebuild'])} us (fnbp's readers and builders)."
    )
    harness.end_report(args.json, {"steps_per_repeat": steps, "times": times, "summary": summary})
    return 0


def make_fnbp(opt: fb.optim.Optimizer, net0: Any, grads: Any, steps: int) -> Callable[[], None]:
    state = [net0, opt.init(net0)]

    def run() -> None:
        params, opt_state = state
        for _ in range(steps):
            params, opt_state = fnbp_opt_step(opt, params, grads, opt_state)
        state[:] = params, opt_state

    return run


def returned_trees(opt: fb.optim.Optimizer, params: Any) -> int:
    """``k``: the new params plus the moment trees of ``opt``'s state (its leaves that
    are not 0-d counters, per param leaf)."""
    moments = [a for a in fb.tree.leaves(opt.init(params)) if np.ndim(a) > 0]
    return 1 + len(moments) // len(fb.tree.leaves(params))


def make_floor(net0: Any, grads: Any, steps: int, *, pair: bool) -> Callable[[], None]:
    """``steps`` times the record work of a step without its arithmetic, done the way
    fnbp's steps do it (``fnbp.optim._built``: the reader written for the tree's
    structure pairs, the builder rebuilds, and the new tree is remembered): with
    ``pair``, the leaves of params and grads paired (structure, shapes and dtypes
    checked) and the params rebuilt around theirs, else only the rebuild."""
    leaves = fb.tree.leaves(net0)
    first = _built.rebuilt(net0, leaves)  # a tree a step built: it has its reader

    def run() -> None:
        params = first
        for _ in range(steps):
            if pair:
                paired = _built.paired(params, grads)
                assert paired is not None, "the floor must take fnbp's own path"
                params = _built.rebuilt(params, paired[0])
            else:
                params = _built.rebuilt(params, leaves)

    return run


def make_hand(opt: Any, grads: Any, steps: int) -> Callable[[], None]:
    leaves = fb.tree.leaves(grads)
    step = opt.step

    def run() -> None:
        for _ in range(steps):
            step(leaves)

    return run


if __name__ == "__main__":
    raise SystemExit(main())
