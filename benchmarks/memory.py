"""Peak memory of one MLP training step at batch 1024: fnbp against the notebook baseline.

The model and both training steps are those of ``mlp_throughput.py``
(784-256-256-10, ReLU, softmax cross-entropy, SGD). Three measurements:

* **tracemalloc peak** (in this process): tracing starts before the model is
  built; after two warm-up steps, the peak of traced memory during one step
  minus the traced memory just before it. numpy reports its array buffers to
  tracemalloc, so this is the step's transient working set -- activations,
  gradients, temporaries, and for fnbp the new parameter record that briefly
  coexists with the old one. Measured on several consecutive steps.
* **resident-set peak** (a fresh subprocess per variant and repetition): the
  growth of the RSS high-water mark from "data and model built" to "after the
  first step" and to "after all steps", and the peak of one later step above
  the RSS just before it (the mark reset through ``/proc/self/clear_refs``).
  It includes what the allocator keeps and what the BLAS allocates, which
  tracemalloc cannot see. On Linux the mark is ``VmHWM`` from
  ``/proc/self/status``: ``ru_maxrss`` would do, except that Linux carries the
  parent's high-water mark over fork and exec, so a child of a big parent
  reports the parent's peak; ``ru_maxrss`` is the fallback elsewhere.
* **minor page faults per step** (same subprocess, after warm-up):
  ``ru_minflt`` over the steps divided by their number. Large buffers that
  glibc maps and unmaps afresh at each step fault their pages in each time.

``resource`` is Unix-only; elsewhere the subprocess columns are skipped.

Run: ``python benchmarks/memory.py`` (``--quick`` for a smoke test).
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import _harness as harness
import numpy as np
from mlp_throughput import SGD, SIZES, Network, fnbp_params, fnbp_train_step

import fnbp as fb

try:
    import resource
except ImportError:  # Windows
    resource = None  # type: ignore[assignment]

BATCH = 1024
LR = 0.01
VARIANTS = ("fnbp", "notebook")
DTYPES = ("float32", "float64")


def make_step(variant: str, dtype: str) -> tuple[Callable[[], None], int]:
    """A zero-argument training step on one fixed batch, and the parameter bytes."""
    rng = np.random.default_rng(0)
    x = rng.random((BATCH, SIZES[0]), dtype=dtype)  # no float64 temporary to raise maxrss
    y = rng.integers(0, SIZES[-1], BATCH)
    net0 = fb.mlp(fb.random.key(0), SIZES, dtype=dtype)
    nbytes = sum(W.nbytes + b.nbytes for W, b in fnbp_params(net0))
    if variant == "fnbp":
        state = [fb.TrainState.create(net0, SGD)]
        del net0

        def step() -> None:
            state[0] = fnbp_train_step(state[0], x, y)[0]

        return step, nbytes
    if variant == "notebook":
        net = Network(fnbp_params(net0), LR)
        del net0

        def step() -> None:
            net.trainBatch(x, y)

        return step, nbytes
    raise ValueError(f"unknown variant {variant!r}")


def traced_peaks(variant: str, dtype: str, measures: int) -> dict[str, Any]:
    """tracemalloc: peak above the steady state during each of ``measures`` steps."""
    gc.collect()
    tracemalloc.start()
    try:
        step, nbytes = make_step(variant, dtype)
        step()
        step()
        peaks, residue = [], []
        for _ in range(measures):
            gc.collect()
            before = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            step()
            after, peak = tracemalloc.get_traced_memory()
            peaks.append(peak - before)
            residue.append(after - before)
    finally:
        tracemalloc.stop()
    return {
        "peak": harness.Summary.of(peaks),
        "residue": harness.Summary.of(residue),
        "param_bytes": nbytes,
    }


def _status_bytes(field: str) -> int | None:
    """A ``Vm*`` line of ``/proc/self/status`` in bytes (Linux), else ``None``."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _reset_hwm() -> bool:
    """Reset the resident-set high-water mark (Linux >= 4.0: ``clear_refs`` value 5)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _hwm() -> int:
    """The resident-set high-water mark in bytes: ``VmHWM``, or ``ru_maxrss`` elsewhere.

    ``ru_maxrss`` is not used on Linux because it carries over the parent's
    high-water mark through fork and exec: a child of a big parent reports
    the parent's peak, and every delta would read 0.
    """
    hwm = _status_bytes("VmHWM")
    if hwm is not None:
        return hwm
    assert resource is not None
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB elsewhere
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def child(variant: str, dtype: str, steps: int) -> None:
    """Run in a fresh process: print high-water-mark deltas (bytes) and faults per step."""
    assert resource is not None
    step, _ = make_step(variant, dtype)
    gc.collect()
    r0 = _hwm()
    step()
    r1 = _hwm()
    step()  # warm-up
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(steps):
        step()
    f1 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    r2 = _hwm()
    out: dict[str, float] = {
        "rss_hwm_setup": r0,
        "rss_hwm_first_step": r1 - r0,
        "rss_hwm_all_steps": r2 - r0,
        "minflt_per_step": (f1 - f0) / steps,
    }
    # one more step, its peak measured from the resident set just before it
    rss = _status_bytes("VmRSS")
    if rss is not None and _reset_hwm():
        step()
        out["rss_peak_one_step"] = _hwm() - rss
    print(json.dumps(out))


def run_child(variant: str, dtype: str, steps: int, blas_threads: int | None) -> dict[str, float]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", variant, dtype]
    cmd += ["--steps", str(steps)]
    if blas_threads is not None:
        cmd += ["--blas-threads", str(blas_threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: Sequence[str] | None = None) -> int:
    def extra(p: argparse.ArgumentParser) -> None:
        p.add_argument("--dtypes", nargs="+", default=list(DTYPES), choices=DTYPES)
        p.add_argument("--child", nargs=2, metavar=("VARIANT", "DTYPE"), help=argparse.SUPPRESS)

    counts = {"steps": (20, 5, "steps per subprocess")}
    args = harness.parse_args(
        __doc__.splitlines()[0],
        argv,
        repeats=5,
        warmup=0,
        quick_repeats=2,
        extra=extra,
        counts=counts,
    )
    steps = args.steps
    if args.child:
        child(*args.child, steps)
        return 0

    harness.start_report("Peak memory of a training step")
    print(
        f"Model {'-'.join(map(str, SIZES))}, batch {BATCH}; tracemalloc over {args.repeats} "
        f"consecutive steps after 2 warm-up steps; {args.repeats} fresh subprocesses per "
        f"variant (interleaved), each running {steps} steps; sizes in MiB, median (min-max) "
        f"where the runs differ.\n"
    )
    if resource is None:
        print("Note: the resource module is unavailable: ru_maxrss and page faults skipped.\n")
    if harness.optional_import("psutil") is None:
        print("Note: psutil is not used; ru_maxrss and ru_minflt come from `resource`.\n")

    results: dict[str, dict[str, Any]] = {}
    rows = []
    for dtype in args.dtypes:
        for variant in VARIANTS:
            results[f"{variant} {dtype}"] = traced_peaks(variant, dtype, args.repeats)
        sub: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
        if resource is not None:
            for r in range(args.repeats):
                order = VARIANTS if r % 2 == 0 else VARIANTS[::-1]
                for variant in order:
                    sub[variant].append(run_child(variant, dtype, steps, args.blas_threads))
        for variant in VARIANTS:
            res = results[f"{variant} {dtype}"]
            runs = sub[variant]
            keys = ("rss_hwm_setup", "rss_hwm_first_step", "rss_hwm_all_steps", "minflt_per_step")
            for key in (*keys, "rss_peak_one_step"):
                if runs and all(key in run for run in runs):
                    res[key] = harness.Summary.of([run[key] for run in runs])

            def mem(s: harness.Summary | None) -> str:
                if s is None:
                    return "n/a"
                m = 1 << 20
                if s.hi - s.lo < 0.005 * m:
                    return f"{s.median / m:.2f}"
                return f"{s.median / m:.2f} ({s.lo / m:.2f}-{s.hi / m:.2f})"

            faults = res.get("minflt_per_step")
            rows.append(
                [
                    f"{variant} {dtype}",
                    f"{res['param_bytes'] / (1 << 20):.2f}",
                    mem(res["peak"]),
                    f"{res['residue'].median / 1024:.1f} KiB",
                    mem(res.get("rss_hwm_first_step")),
                    mem(res.get("rss_hwm_all_steps")),
                    mem(res.get("rss_peak_one_step")),
                    "n/a"
                    if faults is None
                    else f"{faults.median:.0f} ({faults.lo:.0f}-{faults.hi:.0f})",
                ]
            )
    headers = [
        "variant",
        "params",
        "tracemalloc peak of a step",
        "left after step",
        "RSS peak growth, first step",
        f"RSS peak growth, {steps + 2} steps",
        "RSS peak of a later step",
        "minor faults per step",
    ]
    print(harness.markdown_table(headers, rows))

    verdicts = []
    mib = harness.fmt_bytes
    for dtype in args.dtypes:
        f, n = results[f"fnbp {dtype}"]["peak"], results[f"notebook {dtype}"]["peak"]
        verdicts.append(
            [
                f"tracemalloc peak, fnbp vs notebook, {dtype}",
                "fnbp <= notebook",
                f"{mib(f.median)} vs {mib(n.median)} ({f.median / n.median:.2f}x)",
                "met" if f.median <= n.median else "NOT met",
            ]
        )
        fr = results[f"fnbp {dtype}"].get("rss_peak_one_step")
        nr = results[f"notebook {dtype}"].get("rss_peak_one_step")
        if fr is not None and nr is not None:
            verdicts.append(
                [
                    f"RSS peak of one step, fnbp vs notebook, {dtype}",
                    "fnbp <= notebook",
                    f"{mib(fr.median)} vs {mib(nr.median)}",
                    "met" if fr.median <= nr.median else "NOT met",
                ]
            )
    print()
    print(harness.markdown_table(["target", "goal", "measured (medians)", "verdict"], verdicts))
    harness.end_report(args.json, {"batch": BATCH, "results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
