"""Run every fnbp benchmark, one fresh process each, and print their markdown.

``python benchmarks/run_all.py`` runs mlp_throughput.py, mlp_breakdown.py, optimizers.py,
tiny_step.py, memory.py, conv.py, recurrent.py and attention.py in turn with the given options
passed through (``--quick``, ``--repeats N``, ``--warmup N``, ``--blas-threads N``,
``--clock wall|cpu``); ``--only SCRIPT ...`` runs some of them; ``--output FILE`` also saves
the combined report. A failing script is reported and the others still run; the exit
status is then 1. (_harness.py and numpy_limit.py are not benchmarks: the scripts import them.)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = (
    "mlp_throughput.py",
    "mlp_breakdown.py",
    "optimizers.py",
    "tiny_step.py",
    "memory.py",
    "conv.py",
    "recurrent.py",
    "attention.py",
)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smoke test: few repeats in every script")
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--blas-threads", type=int, default=None)
    p.add_argument("--clock", choices=("wall", "cpu"), default=None)
    p.add_argument("--only", nargs="+", choices=SCRIPTS, default=list(SCRIPTS))
    p.add_argument("--output", type=Path, default=None, help="also write the report here")
    args = p.parse_args(argv)

    passthrough: list[str] = ["--quick"] if args.quick else []
    for flag in ("repeats", "warmup", "blas_threads", "clock"):
        value = getattr(args, flag)
        if value is not None:
            passthrough += [f"--{flag.replace('_', '-')}", str(value)]

    report: list[str] = []
    status = 0
    for script in args.only:
        cmd = [sys.executable, str(HERE / script), *passthrough]
        shown = " ".join(["python", f"benchmarks/{script}", *passthrough])
        print(f"$ {shown}", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False)
        elapsed = time.perf_counter() - t0
        print(proc.stdout, flush=True)
        report += [f"<!-- $ {shown}  ({elapsed:.0f} s) -->", proc.stdout]
        if proc.returncode != 0:
            status = 1
            print(f"{script} failed with exit status {proc.returncode}", file=sys.stderr)
    if args.output is not None:
        args.output.write_text("\n".join(report))
    return status


if __name__ == "__main__":
    raise SystemExit(main())
