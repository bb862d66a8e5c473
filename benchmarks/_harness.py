"""Shared helpers of the fnbp benchmark scripts.

Timing: each contender is a zero-argument callable doing one *repetition*
(several training steps). :func:`interleave` warms every contender up, then
runs them round-robin -- one call of each per round, the order rotating from
round to round -- so slow drifts of a shared machine hit all of them alike.
Ratios are taken pair by pair within a round (:func:`pair_ratios`) and
summarised by their median and min-max (:class:`Summary`).

Layer benchmarks (conv, recurrent, attention) share :func:`report_cases`: each
case's correctness line, then its contenders timed in repetitions of about
``--target-ms`` (:func:`calibrate`, :func:`repeated`) and its fractions
``t_part / t_whole`` within each round. The notebook baselines share the
teaching notebook's classes (:class:`NotebookLayer`, :class:`NotebookDense`,
:class:`NotebookNetwork`).

Everything here needs only the standard library and numpy; threadpoolctl,
scikit-learn and torch are looked up when present and reported as absent
otherwise.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import hashlib
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
# Measure the fnbp of this checkout (whose commit the facts record), not whichever
# copy happens to be installed: a script run as ``python benchmarks/x.py`` has
# benchmarks/ on sys.path, not the repository root.
if (ROOT / "fnbp" / "__init__.py").is_file() and str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

__all__ = [
    "Summary",
    "interleave",
    "pair_ratios",
    "markdown_table",
    "machine_facts",
    "facts_markdown",
    "parse_args",
    "fmt_rate",
    "fmt_us",
    "fmt_bytes",
    "fmt_ratio",
    "fmt_pct",
    "write_json",
    "optional_import",
    "limit_blas_threads",
    "blas_threads",
    "load_average",
    "clock_name",
    "start_report",
    "end_report",
    "repeated",
    "calibrate",
    "time_shares",
    "g_x_shares",
    "fnbp_shares",
    "g_x_pair",
    "LayerCase",
    "layer_note",
    "pass_rows",
    "pass_headers",
    "report_cases",
    "fmt_ms",
    "rel_error",
    "NotebookLayer",
    "NotebookDense",
    "NotebookNetwork",
]


@dataclass(frozen=True)
class Summary:
    """Median and spread of repeated measurements."""

    median: float
    lo: float
    hi: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        """The median, minimum and maximum of ``values`` (which must be non-empty)."""
        if not values:
            raise ValueError("Summary.of needs at least one value")
        return cls(statistics.median(values), min(values), max(values), len(values))

    def map(self, f: Callable[[float], float]) -> Summary:
        """Apply a monotone ``f`` to every statistic (a decreasing ``f`` swaps lo and hi)."""
        a, b = f(self.lo), f(self.hi)
        return Summary(f(self.median), min(a, b), max(a, b), self.n)


_CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}
_clock = ["wall"]  # set by parse_args(--clock)


def clock_name() -> str:
    """``"wall"`` (``time.perf_counter``) or ``"cpu"`` (``time.process_time``)."""
    return _clock[0]


def interleave(
    contenders: Mapping[str, Callable[[], object]],
    *,
    repeats: int,
    warmup: int = 2,
    collect: bool = True,
) -> dict[str, list[float]]:
    """Seconds per call of each contender, ``repeats`` rounds after ``warmup`` rounds.

    Round ``r`` calls every contender once, starting at contender ``r mod k``,
    so no contender always runs first (right after a garbage collection) or
    last. With ``collect`` a full ``gc.collect()`` runs before each call, so
    the garbage one contender leaves does not bill the next; the collector
    stays enabled while a contender runs, as it is for a user.

    Times are wall-clock seconds (``time.perf_counter``), or with ``--clock cpu``
    this process's CPU seconds (``time.process_time``): on a shared machine and with
    one BLAS thread, CPU time leaves out the slices other processes took, though
    not their effect on the caches. With several BLAS threads it also counts
    their spinning, so use it with ``--blas-threads 1`` only.
    """
    names = list(contenders)
    now = _CLOCKS[_clock[0]]
    k = len(names)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(warmup + repeats):
        for j in range(k):
            name = names[(r + j) % k]
            fn = contenders[name]
            if collect:
                gc.collect()
            t0 = now()
            fn()
            dt = now() - t0
            if r >= warmup:
                times[name].append(dt)
    return times


def repeated(fn: Callable[[], object], inner: int) -> Callable[[], None]:
    """A callable running ``fn`` ``inner`` times: one repetition."""

    def run() -> None:
        for _ in range(inner):
            fn()

    return run


def calibrate(fn: Callable[[], object], target_s: float) -> int:
    """Calls per repetition so that one repetition takes about ``target_s`` (wall clock)."""
    fn()
    t0 = time.perf_counter()
    fn()
    return max(1, round(target_s / max(time.perf_counter() - t0, 1e-9)))


def pair_ratios(num: Sequence[float], den: Sequence[float]) -> list[float]:
    """``num[i] / den[i]`` for each round ``i`` (measurements from the same round)."""
    if len(num) != len(den):
        raise ValueError(f"pair_ratios: {len(num)} vs {len(den)} measurements")
    return [a / b for a, b in zip(num, den, strict=True)]


def time_shares(
    contenders: Mapping[str, Callable[[], object]],
    shares: Mapping[str, tuple[str, str]],
    *,
    repeats: int,
    warmup: int,
    target_s: float,
) -> dict[str, Any]:
    """Interleaved repetitions of ``inner`` calls each, ``inner`` calibrated on the first
    contender to take about ``target_s``: ms per call of every contender, and each
    fraction ``name: (part, whole)`` of ``shares`` as ``t_part / t_whole`` pairwise."""
    inner = calibrate(next(iter(contenders.values())), target_s)
    times = interleave(
        {k: repeated(f, inner) for k, f in contenders.items()}, repeats=repeats, warmup=warmup
    )
    ms = {k: Summary.of([1e3 * t / inner for t in v]) for k, v in times.items()}
    share = {
        name: Summary.of(pair_ratios(times[part], times[whole]))
        for name, (part, whole) in shares.items()
    }
    return {"inner": inner, "times": times, "ms": ms, "share": share}


def g_x_pair(name: str, fn: Callable[[bool], object]) -> dict[str, Callable[[], object]]:
    """Contenders ``name`` (``fn(True)``, input gradient included) and ``"{name}, no g_x"``
    (``fn(False)``)."""
    return {name: lambda: fn(True), f"{name}, no g_x": lambda: fn(False)}


class LayerCase:
    """A layer benchmark's case: ``layer``, its input ``x`` and cotangent ``g_y``.

    Subclasses set those and ``label``, and define ``parts()`` (the contenders beside
    fnbp's pass) and ``check()`` (the text of a correctness line, raising on a mismatch).
    """

    layer: Any
    x: np.ndarray
    g_y: np.ndarray
    label: str

    def fnbp(self, need_g_x: bool) -> tuple:
        """One forward + backward pass: ``layer.vjp(x)``, then ``pullback(g_y)``."""
        _, pullback = self.layer.vjp(self.x, need_g_x)
        return pullback(self.g_y)

    def parts(self) -> dict[str, Callable[[], object]]:
        raise NotImplementedError

    def check(self) -> str:
        raise NotImplementedError

    def contenders(self) -> dict[str, Callable[[], object]]:
        """fnbp's pass with and without ``g_x`` (the first calibrates), then ``parts()``."""
        return {**g_x_pair("fnbp", self.fnbp), **self.parts()}


def g_x_shares(part: str, key: str | None = None) -> dict[str, tuple[str, str]]:
    """The fractions of fnbp's pass, with and without the input gradient, that contender
    ``part`` (and ``"{part}, no g_x"``) takes, for :func:`time_shares`: ``key`` (default
    ``part``) is ``part / fnbp``, ``"{key}, no g_x"`` is the same without ``g_x``."""
    key = key or part
    return {key: (part, "fnbp"), f"{key}, no g_x": (f"{part}, no g_x", "fnbp, no g_x")}


def fnbp_shares(*parts: str) -> dict[str, tuple[str, str]]:
    """The fraction of fnbp's pass (with ``g_x``) that each contender of ``parts`` takes."""
    return {part: (part, "fnbp") for part in parts}


def report_cases(
    title: str,
    intro: str,
    cases: Mapping[str, Any],
    shares: Mapping[str, tuple[str, str]],
    rows: Callable[[Any, dict[str, Any]], list[list[str]]],
    headers: Sequence[str],
    args: argparse.Namespace,
) -> int:
    """A layer benchmark's report: :func:`start_report` with ``title`` and ``intro``,
    ``Correctness, {case.check()}`` for every case, then
    :func:`time_shares` of ``case.contenders()`` (the whole, ``"fnbp"``, first), the
    table of ``rows(case, result)`` and :func:`end_report` with the results by the keys
    of ``cases``. Returns the exit status, 0."""
    start_report(title, intro)
    for case in cases.values():
        print(f"Correctness, {case.check()}")
    print(flush=True)
    results, table = {}, []
    for key, case in cases.items():
        results[key] = r = time_shares(
            case.contenders(),
            shares,
            repeats=args.repeats,
            warmup=args.warmup,
            target_s=args.target_s,
        )
        table += rows(case, r)
    print(markdown_table(headers, table))
    end_report(args.json, {"dtype": args.dtype, "results": results})
    return 0


def pass_headers(part: str, *rest: str) -> list[str]:
    """The columns of :func:`pass_rows`' table: those it fills, then ``rest``."""
    return ["case", "pass", "fnbp ms", f"{part} alone ms", f"{part} / fnbp", *rest]


def pass_rows(
    label: str,
    r: Mapping[str, Any],
    part: str,
    with_g_x: Sequence[str],
    no_g_x: Sequence[str],
    digits: int = 1,
) -> list[list[str]]:
    """A layer case's two table rows, with and without ``g_x``: label, pass, fnbp's ms,
    contender ``part``'s ms and its fraction ``part / fnbp`` (from :func:`time_shares`'s
    result ``r``; the fractions keyed as by :func:`g_x_shares`), then the cells given."""
    ms, share = r["ms"], r["share"]
    out = []
    for first, name, suffix, rest in (
        (label, "with g_x", "", with_g_x),
        ("", "no g_x", ", no g_x", no_g_x),
    ):
        out.append([
            first,
            name,
            fmt_ms(ms["fnbp" + suffix], digits),
            fmt_ms(ms[part + suffix], digits),
            fmt_pct(share[part + suffix]),
            *rest,
        ])  # fmt: skip
    return out


def layer_note(args: argparse.Namespace) -> str:
    """What a layer benchmark's call is and how its repetitions were timed."""
    return (
        "one call is `layer.vjp(x)` + `pullback(g_y)`. "
        f"{args.repeats} interleaved repetitions after {args.warmup} warm-up, each about "
        f"{1e3 * args.target_s:.0f} ms of calls; ms per call, median (min-max); fractions "
        "are pairwise within a round"
    )


def rel_error(a: np.ndarray | float, b: np.ndarray | float) -> float:
    """``max |a - b| / max |b|``, in float64."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


# ----------------------------------------------------------------------------- formatting


def _spread(s: Summary, fmt: Callable[[float], str]) -> str:
    return f"{fmt(s.median)} ({fmt(s.lo)}-{fmt(s.hi)})"


def fmt_rate(s: Summary) -> str:
    """Samples per second with thousands separators: ``118,200 (112,000-121,300)``."""
    return _spread(s, lambda v: f"{v:,.0f}")


def fmt_us(s: Summary) -> str:
    """Microseconds with one decimal."""
    return _spread(s, lambda v: f"{v:.1f}")


def fmt_ms(s: Summary, digits: int = 1) -> str:
    """Milliseconds with ``digits`` decimals: ``12.3 (12.0-13.1)``."""
    return _spread(s, lambda v: f"{v:.{digits}f}")


def fmt_ratio(s: Summary) -> str:
    """A dimensionless ratio with two decimals: ``1.52x (1.41-1.60)``."""
    return f"{s.median:.2f}x ({s.lo:.2f}-{s.hi:.2f})"


def fmt_pct(s: Summary) -> str:
    """A fraction as a percentage: ``87% (84-90)``."""
    return f"{100 * s.median:.0f}% ({100 * s.lo:.0f}-{100 * s.hi:.0f})"


def fmt_bytes(n: float) -> str:
    """A byte count in MiB (or KiB below one MiB)."""
    if abs(n) >= 1 << 20:
        return f"{n / (1 << 20):.2f} MiB"
    return f"{n / 1024:.1f} KiB"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub markdown table; the first column is left-aligned, the others right."""
    cols = [list(map(str, c)) for c in zip(headers, *rows, strict=True)]
    widths = [max(len(x) for x in c) for c in cols]

    def line(cells: Sequence[str]) -> str:
        out = [
            str(c).ljust(w) if i == 0 else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "| " + " | ".join(out) + " |"

    rule = (
        "|"
        + "|".join(
            (":" + "-" * (w + 1)) if i == 0 else ("-" * (w + 1) + ":") for i, w in enumerate(widths)
        )
        + "|"
    )
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


# ----------------------------------------------------------------------------- machine facts


def optional_import(name: str) -> Any | None:
    """``import name`` or ``None`` when it is not installed (or fails to import)."""
    try:
        return __import__(name, fromlist=["_"])
    except Exception:  # an optional peer may fail in any way
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git(*args: str) -> str:
    try:
        out = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True, timeout=10
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _tree_state() -> str:
    """``clean`` or ``dirty`` for fnbp/ in the git checkout; ``unknown`` outside one."""
    status = _git("status", "--porcelain", "fnbp")
    if status == "unknown":
        return "unknown (not a git checkout)"
    return "dirty" if status else "clean"


def _source_digest() -> str:
    """A short sha256 of fnbp's Python sources, to identify uncommitted code that was measured."""
    h = hashlib.sha256()
    for path in sorted((ROOT / "fnbp").rglob("*.py")):
        h.update(str(path.relative_to(ROOT)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


def _blas_from_threadpoolctl() -> list[str]:
    tpc = optional_import("threadpoolctl")
    if tpc is None:
        return ["threadpoolctl not installed: BLAS threads unknown"]
    rows = []
    for info in tpc.threadpool_info():
        lib = Path(info.get("filepath", "?")).name
        owner = Path(info.get("filepath", "?")).parent.name
        rows.append(
            f"{info.get('user_api')}: {info.get('internal_api')} {info.get('version')} "
            f"({info.get('architecture', '-')}, {info.get('threading_layer', '-')}), "
            f"num_threads={info.get('num_threads')} [{owner}/{lib}]"
        )
    return rows or ["threadpoolctl found no thread pools"]


def _numpy_blas_build() -> str:
    try:
        cfg = np.show_config(mode="dicts")  # numpy >= 1.25
        blas = cfg["Build Dependencies"]["blas"]
        return f"{blas.get('name')} {blas.get('version')}"
    except Exception:  # older numpy or an unusual build
        return "unknown"


_ENV = re.compile(r"^(OPENBLAS|OMP_|MKL|BLIS|NVPL|VECLIB|GOTO|NUMEXPR|PYTHONHASHSEED)")


def machine_facts() -> dict[str, Any]:
    """Facts that decide what a timing means, as a JSON-able dict."""
    facts: dict[str, Any] = {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "git HEAD": _git("rev-parse", "HEAD"),
        "fnbp tree": _tree_state(),
        "fnbp sources sha256[:12]": _source_digest(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "os.cpu_count": os.cpu_count(),
        "load average (1, 5, 15 min) at start": load_average(),
        "clock": f"{clock_name()} ({_CLOCKS[clock_name()].__name__})",
        "numpy": np.__version__,
        "numpy BLAS (build)": _numpy_blas_build(),
        "thread pools (threadpoolctl)": _blas_from_threadpoolctl(),
    }
    if hasattr(os, "sched_getaffinity"):
        facts["usable cpus (affinity)"] = len(os.sched_getaffinity(0))
    fnbp = optional_import("fnbp")
    facts["fnbp"] = getattr(fnbp, "__version__", "not importable")
    facts["fnbp imported from"] = str(Path(getattr(fnbp, "__file__", "?")).parent)
    for peer in ("sklearn", "torch", "threadpoolctl", "psutil"):
        mod = sys.modules.get(peer) or optional_import(peer)
        facts[peer] = getattr(mod, "__version__", "installed") if mod else "not installed"
    env = {k: v for k, v in sorted(os.environ.items()) if _ENV.match(k)}
    facts["environment"] = env or "no BLAS/OpenMP variables set"
    return facts


def facts_markdown(facts: Mapping[str, Any]) -> str:
    """The machine facts as a markdown bullet list."""
    lines = []
    for k, v in facts.items():
        if isinstance(v, list):
            lines.append(f"- {k}:")
            lines += [f"  - {x}" for x in v]
        elif isinstance(v, dict):
            lines.append(f"- {k}: " + ", ".join(f"`{a}={b}`" for a, b in v.items()))
        else:
            lines.append(f"- {k}: {v}")
    return "\n".join(lines)


def start_report(title: str, intro: str | None = None) -> None:
    """The report's heading, the machine facts and the ``intro`` paragraph, in markdown."""
    print(f"# {title}\n")
    print(facts_markdown(machine_facts()), "\n")
    if intro is not None:
        print(intro + "\n")


def end_report(path: Path | None, payload: Mapping[str, Any]) -> None:
    """The load average at the end; the machine facts and ``payload`` to ``path`` (if given)."""
    print(f"\nLoad average at the end: {load_average()}")
    write_json(path, {"facts": machine_facts(), **payload})


# ----------------------------------------------------------------------------- notebook baseline


class NotebookLayer:
    """The teaching notebook's identity layer, the base of inheritance."""

    def forward(self, input: np.ndarray) -> np.ndarray:
        return input

    def backward(self, input: np.ndarray, grad_output: np.ndarray) -> np.ndarray:
        return grad_output


class NotebookDense(NotebookLayer):
    """The notebook's Dense, updating its weights in place during ``backward``.

    The notebook divides the weight gradient by the batch size a second time
    (its loss gradient already carries the ``1/N``); here the loss gradient
    carries it once, as in fnbp, so the gradients are correct. With ``asserts``
    it checks the gradients' shapes as the notebook's code does.
    """

    def __init__(
        self, weights: np.ndarray, biases: np.ndarray, learning_rate: float, asserts: bool = False
    ) -> None:
        self.weights = np.array(weights)  # writeable copies
        self.biases = np.array(biases)
        self.learning_rate = learning_rate
        self.asserts = asserts

    def forward(self, input: np.ndarray) -> np.ndarray:
        return input.dot(self.weights) + self.biases

    def backward(self, input: np.ndarray, grad_output: np.ndarray) -> np.ndarray:
        grad_input = np.dot(grad_output, self.weights.T)
        grad_weights = np.dot(input.T, grad_output)
        grad_biases = grad_output.sum(axis=0)
        if self.asserts:
            assert grad_weights.shape == self.weights.shape
            assert grad_biases.shape == self.biases.shape
        self.weights -= self.learning_rate * grad_weights
        self.biases -= self.learning_rate * grad_biases
        return grad_input


class NotebookNetwork:
    """The notebook's Network: stores every layer input, backward in reverse order.

    Subclasses set ``self.layers`` and define ``loss(y, out)`` and its gradient
    ``loss_prime(y, out)``; with ``asserts`` the forward pass checks its count of
    activations as the notebook's code does.
    """

    layers: list[NotebookLayer]
    asserts: bool = False

    def loss(self, y: np.ndarray, out: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def loss_prime(self, y: np.ndarray, out: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def forward(self, X: np.ndarray) -> list[np.ndarray]:
        activations = [X]
        for layer in self.layers:
            X = layer.forward(X)
            activations.append(X)
        if self.asserts:
            assert len(activations) == len(self.layers) + 1
        return activations

    def trainBatch(self, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        layer_inputs = self.forward(X)
        out = layer_inputs[-1]
        loss_grad = self.loss_prime(y, out)
        index = -2
        for layer in reversed(self.layers):
            loss_grad = layer.backward(layer_inputs[index], loss_grad)
            index -= 1
        return self.loss(y, out)


# ----------------------------------------------------------------------------- CLI


def parse_args(
    description: str,
    argv: Sequence[str] | None,
    *,
    repeats: int,
    warmup: int,
    quick_repeats: int = 3,
    extra: Callable[[argparse.ArgumentParser], None] | None = None,
    target_ms: tuple[float, float] | None = None,
    counts: Mapping[str, tuple[int, int, str]] | None = None,
) -> argparse.Namespace:
    """The common command line: ``--quick``, ``--repeats``, ``--warmup``, ``--json``,
    ``--blas-threads``, ``--clock``; with ``target_ms = (default, quick)`` also a layer
    benchmark's ``--dtype`` and ``--target-ms`` (time per repetition), the latter as
    ``args.target_s`` in seconds; for each ``name: (default, quick, help)`` of
    ``counts`` an integer option ``--name`` whose value, unless given, is ``default``
    (``quick`` with ``--quick``)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument(
        "--quick", action="store_true", help="a few repeats only: a smoke test, not a measurement"
    )
    p.add_argument("--repeats", type=int, default=None, help=f"timed rounds (default {repeats})")
    p.add_argument("--warmup", type=int, default=None, help=f"untimed rounds (default {warmup})")
    p.add_argument("--json", type=Path, default=None, help="also write raw results to this file")
    p.add_argument(
        "--blas-threads",
        type=int,
        default=None,
        help="limit BLAS threads with threadpoolctl (default: leave numpy's BLAS as it is)",
    )
    p.add_argument(
        "--clock",
        choices=tuple(_CLOCKS),
        default="wall",
        help="wall-clock time (default) or this process's CPU time (with --blas-threads 1)",
    )
    if target_ms is not None:
        p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
        p.add_argument(
            "--target-ms",
            type=float,
            default=None,
            help=f"time per repetition (default {target_ms[0]:g}, quick {target_ms[1]:g})",
        )
    for name, (default, quick, text) in (counts or {}).items():
        flag = "--" + name.replace("_", "-")
        help_ = f"{text} (default {default}, quick {quick})"
        p.add_argument(flag, type=int, default=None, help=help_)
    if extra is not None:
        extra(p)
    args = p.parse_args(argv)
    for name, (default, quick, _) in (counts or {}).items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else default)
    if target_ms is not None:
        args.target_s = (args.target_ms or target_ms[1 if args.quick else 0]) / 1e3
    _clock[0] = args.clock
    if args.blas_threads is not None:
        limit_blas_threads(args.blas_threads)
    if args.repeats is None:
        args.repeats = quick_repeats if args.quick else repeats
    if args.warmup is None:
        args.warmup = 1 if args.quick else warmup
    if args.repeats < 1 or args.warmup < 0:
        p.error("--repeats must be >= 1 and --warmup >= 0")
    return args


_LIMITS: list[Any] = []


def limit_blas_threads(n: int) -> None:
    """Limit every BLAS thread pool to ``n`` threads for the rest of the process."""
    tpc = optional_import("threadpoolctl")
    if tpc is None:
        raise SystemExit("--blas-threads needs threadpoolctl (pip install threadpoolctl)")
    _LIMITS.append(tpc.threadpool_limits(limits=n, user_api="blas"))


def blas_threads() -> int | None:
    """The largest thread count of the BLAS pools now (``None`` without threadpoolctl)."""
    tpc = optional_import("threadpoolctl")
    if tpc is None:
        return None
    counts = [info["num_threads"] for info in tpc.threadpool_info() if info["user_api"] == "blas"]
    return max(counts) if counts else None


def load_average() -> str:
    """The 1, 5 and 15 minute load averages (other processes compete for the cores)."""
    if not hasattr(os, "getloadavg"):
        return "n/a"
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _jsonable(x: Any) -> Any:
    if isinstance(x, Summary):
        return asdict(x)
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    return x


def write_json(path: Path | None, payload: Mapping[str, Any]) -> None:
    """Write ``payload`` (with :class:`Summary` values) to ``path`` atomically, if given."""
    if path is None:
        return
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(_jsonable(dict(payload)), indent=1) + "\n")
    os.replace(tmp, path)
