"""Sweeps: configurations times seeds, each run a pure function of its config and key.

A *run* is a function ``run(config, key) -> metrics``: ``config`` a dict of JSON
data (the hyperparameters), ``key`` an fnbp key, ``metrics`` a dict of floats
(final values) and lists of floats (per-epoch curves). :func:`sweep` calls it
for every configuration and seed, in-process or on any
:class:`concurrent.futures.Executor` (a process pool, a Dask cluster's
``Client.get_executor()``), and gives each run the key :func:`run_key`
derives from the sweep's key, the configuration's *content* and the seed. So a
run gives the same bits wherever and whenever it executes, and a sweep's
results depend neither on the executor nor on the order the runs finish.

With ``path``, each finished run is appended to a JSON-lines file at once; a
sweep restarted on that file skips the runs it holds, so a killed sweep loses
at most the runs that were in flight. :class:`Results` summarises runs per
configuration (mean, standard deviation, min and max over seeds) as plain data
or as a text table; :func:`fnbp.plot.sweep_curves` draws their learning curves.

>>> import fnbp as fb
>>> from fnbp import experiments
>>> def run(config, key):
...     noise = fb.random.normal(key, (100,))
...     return {"spread": float(config["scale"] * noise.std())}
>>> configs = experiments.grid(scale=[1.0, 2.0])
>>> results = experiments.sweep(run, configs, seeds=3, key=fb.random.key(0))
>>> len(results), results.records[1].config, results.records[1].seed
(6, {'scale': 1.0}, 1)
>>> print(results.table())
scale  runs                          spread
    1     3  0.9899 ± 0.061 [0.9351, 1.055]
    2     3   1.960 ±  0.13  [1.843, 2.107]

Nothing here needs more than numpy and attrs: tqdm (the progress bar) and Dask
are used only when installed and asked for.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import json
import math
import operator
import os
import reprlib
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import attrs
import numpy as np

from . import random

__all__ = ["FORMAT", "Record", "Results", "grid", "run_key", "sweep", "load"]

FORMAT = "fnbp.sweep/1"
"""The mark on every line of a results file; :func:`load` reads this format."""

Metrics = dict[str, float | tuple[float, ...]]
Run = Callable[[dict[str, Any], random.Key], Mapping[str, Any]]

_JSON_HINT = "JSON data (None, bool, int, float, str, lists, tuples and str-keyed dicts of these)"


# ---------------------------------------------------------------------------- configurations


def grid(**axes: Sequence[Any]) -> list[dict[str, Any]]:
    """Every combination of the values of ``axes``, as a list of configuration dicts.

    The order is fixed: the first axis varies slowest, the last fastest, as in
    :func:`itertools.product`. Join grids with ``+`` for a sweep that is not one
    product, and add fixed settings with ``[{**c, "epochs": 20} for c in grid(...)]``.

    >>> from fnbp.experiments import grid
    >>> grid(lr=[0.1, 0.01], width=[8, 32])[:3]
    [{'lr': 0.1, 'width': 8}, {'lr': 0.1, 'width': 32}, {'lr': 0.01, 'width': 8}]
    """
    names, values = list(axes), []
    for name in names:
        axis = axes[name]
        if isinstance(axis, str | bytes | Mapping) or not isinstance(axis, Sequence | np.ndarray):
            raise ValueError(
                f"grid: axis {name!r} must be a list or tuple of values, "
                f"got {type(axis).__name__} {axis!r}"
            )
        if len(axis) == 0:
            raise ValueError(f"grid: axis {name!r} must have at least one value, got none")
        values.append(list(axis))
    combos: list[tuple[Any, ...]] = [()]
    for axis in values:
        combos = [(*c, v) for c in combos for v in axis]
    return [dict(zip(names, c, strict=True)) for c in combos]


def _plain(v: Any, where: str) -> Any:
    """``v`` as plain JSON data (numpy scalars unwrapped, tuples as lists)."""
    if isinstance(v, np.generic):
        v = v.item()
    if v is None or isinstance(v, bool | int | str):
        return v
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ValueError(f"{where} must be {_JSON_HINT} with finite numbers, got {v!r}")
        return v
    if isinstance(v, list | tuple):
        return [_plain(x, f"{where}[{i}]") for i, x in enumerate(v)]
    if isinstance(v, Mapping):
        for k in v:
            if not isinstance(k, str):
                raise ValueError(f"{where} must be {_JSON_HINT}, got a dict key {k!r}")
        return {k: _plain(x, f"{where}[{k!r}]") for k, x in v.items()}
    raise ValueError(f"{where} must be {_JSON_HINT}, got {type(v).__name__} {v!r}")


def _canonical(config: Mapping[str, Any], where: str = "config") -> str:
    """The identity of a configuration: its JSON with sorted keys, no spaces.

    Key order and tuple-versus-list do not matter; ``1`` and ``1.0`` differ.
    """
    return json.dumps(_plain(config, where), sort_keys=True, separators=(",", ":"))


def _config_words(canonical: str) -> tuple[int, int]:
    """Two 32-bit words of the 64-bit BLAKE2b digest of a canonical config."""
    digest = hashlib.blake2b(canonical.encode(), digest_size=8).digest()
    return int.from_bytes(digest[:4], "big"), int.from_bytes(digest[4:], "big")


def _derive(key: random.Key, canonical: str, seed: int) -> random.Key:
    hi, lo = _config_words(canonical)
    return random.fold_in(random.fold_in(random.fold_in(key, hi), lo), seed)


def run_key(key: random.Key, config: Mapping[str, Any], seed: int) -> random.Key:
    """The key that a sweep with ``key`` gives the run of ``config`` with ``seed``.

    It is ``fold_in(fold_in(fold_in(key, hi), lo), seed)``, where ``hi`` and
    ``lo`` are the two 32-bit halves of a 64-bit BLAKE2b digest of the config's
    canonical JSON (sorted keys; tuples as lists; ``1`` and ``1.0`` differ). It
    depends on what the configuration *says*, not on its place in a list: adding,
    removing or reordering configurations changes no other run's key, and a
    results file stays valid for any list that contains its configurations.
    Call it to re-run one run of a sweep by hand.

    >>> import fnbp as fb
    >>> from fnbp.experiments import run_key
    >>> a = run_key(fb.random.key(0), {"lr": 0.1, "width": 8}, seed=3)
    >>> a == run_key(fb.random.key(0), {"width": 8, "lr": 0.1}, seed=3)
    True
    >>> a == run_key(fb.random.key(0), {"lr": 0.1, "width": 8}, seed=4)
    False
    """
    return _derive(_check_key(key, "run_key"), _canonical(config), _seed(seed, "run_key", "seed"))


# ---------------------------------------------------------------------------- records


@attrs.frozen
class Record:
    """One finished run: its configuration, seed, key and metrics.

    ``metrics`` maps names to floats and to tuples of floats (curves).
    ``seconds`` (the run's wall time, measured where it ran) and
    ``fnbp_version`` (the fnbp that ran it) are not compared by ``==``: two
    records are equal when the same configuration and seed gave the same key
    and the same metrics, bit for bit. Configurations compare by content.
    """

    config: dict[str, Any] = attrs.field(eq=_canonical)
    seed: int
    metrics: Metrics
    key: random.Key
    seconds: float = attrs.field(default=math.nan, eq=False)
    fnbp_version: str | None = attrs.field(default=None, eq=False)


def _encode(r: Record) -> str:
    """The record as one line of JSON (NaN and inf as Python's json writes them)."""
    return json.dumps(
        {
            "format": FORMAT,
            "config": _plain(r.config, "config"),
            "seed": r.seed,
            "metrics": {k: list(v) if isinstance(v, tuple) else v for k, v in r.metrics.items()},
            "key": {"seed": r.key.seed, "path": list(r.key.path)},
            "seconds": r.seconds,
            "fnbp_version": r.fnbp_version,
        }
    )


def _decode(line: bytes, where: str) -> Record:
    """A record from one line of a results file; ValueError saying what is wrong."""
    try:
        obj = json.loads(line)
    except ValueError as e:
        raise ValueError(f"{where} is not a sweep record (not JSON: {e})") from None
    if type(obj) is not dict or obj.get("format") != FORMAT:
        raise ValueError(f"{where} is not a sweep record (no {FORMAT!r} format mark)")
    try:
        config, seed, metrics, k = obj["config"], obj["seed"], obj["metrics"], obj["key"]
        if type(config) is not dict or type(seed) is not int or type(metrics) is not dict:
            raise TypeError
        key = random.Key(k["seed"], tuple(operator.index(i) for i in k["path"]))
        seconds = float(obj.get("seconds", math.nan))
        version = obj.get("fnbp_version")
        return Record(config, seed, _metrics(metrics, f"{where}: metrics"), key, seconds, version)
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{where} is not a sweep record (malformed: {e!r})") from None


def _scalar(v: Any) -> float | None:
    if isinstance(v, bool | np.bool_) or not isinstance(v, int | float | np.integer | np.floating):
        return None
    return float(v)


def _metrics(raw: Any, where: str) -> Metrics:
    """Check and normalise what a run returned: floats, and tuples of floats for curves."""
    hint = "a dict of str -> float or list of floats"
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where} must be {hint}, got {type(raw).__name__}")
    out: Metrics = {}
    for name, v in raw.items():
        if not isinstance(name, str):
            raise ValueError(f"{where} must be {hint}, got the key {name!r}")
        if isinstance(v, np.ndarray) and v.ndim <= 1:
            v = v.tolist()
        x = _scalar(v)
        if x is None and isinstance(v, list | tuple):
            curve = tuple(_scalar(e) for e in v)
            if None not in curve:
                out[name] = curve  # type: ignore[assignment]
                continue
        if x is None:
            raise ValueError(f"{where} must be {hint}, got {name!r}: {type(v).__name__} {v!r}")
        out[name] = x
    return out


# ---------------------------------------------------------------------------- results


def _final(v: float | tuple[float, ...]) -> float:
    """A metric's final value: the scalar, or a curve's last point (NaN when empty)."""
    if isinstance(v, tuple):
        return v[-1] if v else math.nan
    return v


def _stats(values: list[float]) -> dict[str, float]:
    """Mean, sample standard deviation (NaN for one value), min and max.

    Computed exactly (:mod:`statistics`) and rounded once, so equal values have
    a std of exactly 0; a NaN or inf among the values makes the std NaN.
    """
    if not values:
        return dict.fromkeys(("mean", "std", "min", "max"), math.nan)
    a = np.array(values, dtype=np.float64)
    if np.isfinite(a).all():
        mean = float(statistics.mean(values))
        std = statistics.stdev(values) if len(values) > 1 else math.nan
    else:
        with np.errstate(invalid="ignore"):
            mean, std = float(a.mean()), math.nan
    return {"mean": mean, "std": std, "min": float(a.min()), "max": float(a.max())}


def _fmt(v: Any) -> str:
    """A configuration value for a table or a label: floats as ``%g``."""
    return f"{v:g}" if isinstance(v, float) else str(v)


def _records(records: Iterable[Record]) -> tuple[Record, ...]:
    return tuple(records)


@attrs.frozen
class Results:
    """The runs of a sweep, one :class:`Record` each, in a fixed order.

    From :func:`sweep`, the order is configuration by configuration (in the order
    given), seed by seed, whatever the order the runs finished in; from
    :func:`load`, the order of the file. ``str(results)`` is :meth:`table`.
    """

    records: tuple[Record, ...] = attrs.field(converter=_records)

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[Record]:
        return iter(self.records)

    def __repr__(self) -> str:
        return f"Results({len(self.records)} runs of {len(self.groups())} configurations)"

    def __str__(self) -> str:
        return self.table()

    def groups(self) -> list[tuple[dict[str, Any], tuple[Record, ...]]]:
        """``(config, records)`` per configuration, in order of first appearance."""
        out: dict[str, tuple[dict[str, Any], list[Record]]] = {}
        for r in self.records:
            out.setdefault(_canonical(r.config), (r.config, []))[1].append(r)
        return [(config, tuple(rs)) for config, rs in out.values()]

    def metric_names(self) -> list[str]:
        """The names of the metrics the runs recorded, in order of first appearance."""
        return list(dict.fromkeys(name for r in self.records for name in r.metrics))

    def _names(self, metrics: str | Sequence[str] | None, where: str) -> list[str]:
        known = self.metric_names()
        if metrics is None:
            return known
        names = [metrics] if isinstance(metrics, str) else list(metrics)
        unknown = [m for m in names if m not in known]
        if unknown or not all(isinstance(m, str) for m in names):
            raise ValueError(
                f"Results.{where}: metrics must name recorded metrics {known}, got {metrics!r}"
            )
        return names

    def summary(self, metrics: str | Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Per configuration, statistics over seeds of the final value of each metric.

        Returns one dict per configuration: ``{"config": ..., "runs": n,
        "metrics": {name: {"mean", "std", "min", "max"}}}``. A curve counts by
        its last point; ``std`` is the sample standard deviation (``ddof=1``),
        NaN for a single seed. ``metrics`` (default: all) picks names.

        >>> import fnbp as fb
        >>> from fnbp.experiments import Record, Results
        >>> k = fb.random.key(0)
        >>> rs = Results(tuple(Record({"lr": 0.1}, s, {"acc": (0.5, a)}, k)
        ...                    for s, a in enumerate([0.8, 0.9, 1.0])))
        >>> row = rs.summary()[0]
        >>> row["runs"], round(row["metrics"]["acc"]["mean"], 6), row["metrics"]["acc"]["max"]
        (3, 0.9, 1.0)
        """
        names = self._names(metrics, "summary")
        rows = []
        for config, records in self.groups():
            stats = {
                m: _stats([_final(r.metrics[m]) for r in records if m in r.metrics]) for m in names
            }
            rows.append({"config": dict(config), "runs": len(records), "metrics": stats})
        return rows

    def table(self, metrics: str | Sequence[str] | None = None, *, digits: int = 4) -> str:
        """:meth:`summary` as an aligned text table, one row per configuration.

        One column per configuration key, the number of runs, and per metric
        ``mean ± std [min, max]`` of its final values, with ``digits``
        significant digits (the mean alone for a single seed).
        """
        summary = self.summary(metrics)
        keys = list(dict.fromkeys(k for row in summary for k in row["config"]))
        columns = [[_fmt(row["config"].get(k, "")) for row in summary] for k in keys]
        columns.append([str(row["runs"]) for row in summary])
        for m in self._names(metrics, "table"):
            columns.append(
                _metric_column([(row["metrics"][m], row["runs"]) for row in summary], digits)
            )
        header = [*keys, "runs", *self._names(metrics, "table")]
        widths = [max(len(h), *map(len, c)) for h, c in zip(header, columns, strict=True)]
        rows = [header, *zip(*columns, strict=True)] if columns else [header]
        return "\n".join(
            "  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows
        )

    def curves(self, metric: str) -> list[dict[str, Any]]:
        """Per configuration, the curves of ``metric`` over seeds and their mean and std.

        One dict per configuration: ``"config"``; ``"values"``, an array of shape
        ``(runs, epochs)`` (shorter curves, e.g. stopped early, padded with NaN; a
        scalar metric is a curve of one point); ``"mean"`` and ``"std"`` per epoch
        over the runs that reached it (std with ``ddof=1``, NaN where fewer than 2).
        """
        (name,) = self._names([metric], "curves")
        out = []
        for config, records in self.groups():
            rows: list[tuple[float, ...]] = [
                v if isinstance(v, tuple) else (v,)
                for v in (r.metrics[name] for r in records if name in r.metrics)
            ]
            values = np.full((len(rows), max(map(len, rows), default=0)), np.nan)
            for i, v in enumerate(rows):
                values[i, : len(v)] = v
            mean, std = _column_stats(values)
            out.append({"config": dict(config), "values": values, "mean": mean, "std": std})
        return out

    def label(self, config: Mapping[str, Any]) -> str:
        """``config`` as ``"lr=0.1, width=32"``, naming only the keys that vary across runs."""
        configs = [c for c, _ in self.groups()]
        keys = list(dict.fromkeys(k for c in configs for k in c))
        varying = [k for k in keys if len({json.dumps(_plain(c.get(k), k)) for c in configs}) > 1]
        return ", ".join(f"{k}={_fmt(config[k])}" for k in varying or keys if k in config)


def _metric_column(cells: list[tuple[dict[str, float], int]], digits: int) -> list[str]:
    """``mean ± std [min, max]`` per row, each part aligned down the column."""
    parts = []
    for s, runs in cells:
        mean = f"{s['mean']:#.{digits}g}"
        if runs < 2:
            parts.append([mean, "", "", "", ""])
            continue
        lo, hi = f"{s['min']:#.{digits}g}", f"{s['max']:#.{digits}g}"
        parts.append([mean, "±", f"{s['std']:.2g}", f"[{lo},", f"{hi}]"])
    widths = [max(len(p[i]) for p in parts) for i in range(5)]
    return [" ".join(x.rjust(w) for x, w in zip(p, widths, strict=True)).rstrip() for p in parts]


def _column_stats(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sample std of each column over its non-NaN entries, without warnings."""
    seen = ~np.isnan(values)
    n = seen.sum(axis=0)
    filled = np.where(seen, values, 0.0)
    mean = np.divide(filled.sum(axis=0), n, out=np.full(n.shape, np.nan), where=n > 0)
    dev = np.where(seen, values - mean, 0.0)
    var = np.divide((dev * dev).sum(axis=0), n - 1, out=np.full(n.shape, np.nan), where=n > 1)
    return mean, np.sqrt(var)


# ---------------------------------------------------------------------------- the file


def _read(data: bytes, name: str) -> tuple[list[tuple[int, Record]], int]:
    """``([(line number, record)], length of the complete lines)`` of a results file.

    Every line ends in a newline (:class:`_Log` writes each in one ``write``), so
    bytes after the last newline are a line torn by a crash: left out here.
    """
    end = data.rfind(b"\n") + 1
    records = []
    for number, line in enumerate(data[:end].split(b"\n")[:-1], start=1):
        if line.strip():
            records.append((number, _decode(line, f"{name} line {number}")))
    return records, end


class _Log:
    """A results file opened for appending: locked, read, its torn last line cut off."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.name = os.fspath(path)
        created = not os.path.exists(self.name)
        self.fd = os.open(self.name, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o666)
        try:
            self._lock()
            with open(self.fd, "rb", closefd=False) as f:
                data = f.read()
            self.records, end = _read(data, f"sweep: path {self.name!r}")
            if end < len(data):
                warnings.warn(
                    f"sweep: {self.name} ended in a torn line ({len(data) - end} bytes after "
                    "the last newline, a write cut short by a crash); dropped it, its run "
                    "will be redone",
                    stacklevel=3,
                )
                os.ftruncate(self.fd, end)
                os.fsync(self.fd)
            if created:
                _fsync_directory(os.path.dirname(os.path.abspath(self.name)))
        except BaseException:
            os.close(self.fd)
            raise

    def _lock(self) -> None:
        """One sweep per file at a time (where the OS has ``flock``)."""
        try:
            import fcntl
        except ImportError:  # Windows: no lock
            return
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ValueError(
                f"sweep: path {self.name!r} is in use by another running sweep; "
                "wait for it to finish or give another path"
            ) from None

    def append(self, record: Record) -> None:
        """One line, in one ``write`` to the end of the file, then ``fsync``."""
        line = memoryview((_encode(record) + "\n").encode())
        while line:  # a regular file takes it in one write; loop in case of a partial one
            line = line[os.write(self.fd, line) :]
        os.fsync(self.fd)

    def close(self) -> None:
        os.close(self.fd)  # closing releases the lock


def _fsync_directory(directory: str) -> None:
    """Make a new file's name durable where the OS allows it (not on Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load(path: str | os.PathLike[str]) -> Results:
    """The runs recorded in the results file at ``path``, in the file's order.

    A torn last line (a write cut short by a crash) is left out, and the file is
    not changed; a run recorded twice counts once (the first line). Raises
    ``FileNotFoundError`` for a missing file and ``ValueError`` naming the line of
    anything else that is not a sweep record.
    """
    name = os.fspath(path)
    with open(name, "rb") as f:
        lines, _ = _read(f.read(), f"load: path {name!r}")
    seen: dict[tuple[str, int], Record] = {}
    for _, r in lines:
        seen.setdefault((_canonical(r.config), r.seed), r)
    return Results(tuple(seen.values()))


# ---------------------------------------------------------------------------- the sweep


def _check_key(key: Any, fn: str) -> random.Key:
    if not isinstance(key, random.Key):
        raise ValueError(
            f"{fn}: key must be an fnbp key (fb.random.key(seed)), got {type(key).__name__}"
        )
    return key


def _seed(s: Any, fn: str, what: str) -> int:
    if isinstance(s, bool | np.bool_):
        raise ValueError(f"{fn}: {what} must be a non-negative integer, got bool {s!r}")
    try:
        i = operator.index(s)
    except TypeError:
        raise ValueError(
            f"{fn}: {what} must be a non-negative integer, got {type(s).__name__} {s!r}"
        ) from None
    if i < 0:
        raise ValueError(f"{fn}: {what} must be a non-negative integer, got {i}")
    return i


def _check_seeds(seeds: Any) -> list[int]:
    hint = "a number of seeds >= 1 or a non-empty sequence of distinct integers >= 0"
    if isinstance(seeds, Sequence | np.ndarray) and not isinstance(seeds, str | bytes):
        out = [_seed(s, "sweep", f"seeds[{i}]") for i, s in enumerate(seeds)]
        if not out or len(set(out)) < len(out):
            raise ValueError(f"sweep: seeds must be {hint}, got {list(seeds)!r}")
        return out
    n = _seed(seeds, "sweep", "seeds")
    if n < 1:
        raise ValueError(f"sweep: seeds must be {hint}, got {n}")
    return list(range(n))


def _check_configs(configs: Any) -> list[tuple[dict[str, Any], str]]:
    """``[(config copy, canonical form)]``; every config a distinct dict of JSON data."""
    if isinstance(configs, Mapping) or not isinstance(configs, Sequence) or not configs:
        raise ValueError(
            "sweep: configs must be a non-empty list of dicts (see experiments.grid), "
            f"got {type(configs).__name__} {reprlib.repr(configs)}"
        )
    out: list[tuple[dict[str, Any], str]] = []
    first: dict[str, int] = {}
    for i, config in enumerate(configs):
        if not isinstance(config, Mapping):
            raise ValueError(f"sweep: configs[{i}] must be a dict, got {type(config).__name__}")
        canonical = _canonical(config, f"sweep: configs[{i}]")
        if canonical in first:
            raise ValueError(
                f"sweep: configs[{i}] repeats configs[{first[canonical]}] ({canonical}); "
                "give each configuration once and more seeds instead"
            )
        first[canonical] = i
        out.append((dict(config), canonical))
    return out


def _call(run: Run, config: dict[str, Any], key: random.Key) -> tuple[Any, float, str | None]:
    """Run one configuration where the executor puts it: ``(metrics, seconds, fnbp version)``."""
    start = time.perf_counter()
    metrics = run(config, key)
    version = getattr(sys.modules.get(__package__ or "fnbp"), "__version__", None)
    return metrics, time.perf_counter() - start, version


_Job = tuple[int, int]  # (index of the config, seed)


def _execute(
    run: Run, jobs: Iterable[tuple[_Job, dict[str, Any], random.Key]], executor: Any
) -> Iterator[tuple[_Job, tuple[Any, float, str | None]]]:
    """``(job, outcome)`` as runs finish; in order, in this process, without an executor.

    With an executor every run is submitted at once; on an error (or when the
    caller stops early) the runs not yet started are cancelled.
    """
    if executor is None:
        for job, config, key in jobs:
            yield job, _call(run, dict(config), key)
        return
    futures = {executor.submit(_call, run, dict(config), key): job for job, config, key in jobs}
    try:
        for future in concurrent.futures.as_completed(futures):
            yield futures[future], future.result()
    finally:
        for future in futures:
            future.cancel()


def _bar(progress: bool | str, total: int, initial: int) -> Any:
    """A tqdm bar over runs when wanted and installed; ``"auto"``: on a terminal."""
    if progress == "auto":
        progress = sys.stderr.isatty()
    if not progress:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, initial=initial, unit="run", desc="sweep")


def sweep(
    run: Run,
    configs: Sequence[Mapping[str, Any]],
    *,
    key: random.Key,
    seeds: int | Sequence[int] = 5,
    executor: concurrent.futures.Executor | None = None,
    path: str | os.PathLike[str] | None = None,
    progress: bool | str = "auto",
) -> Results:
    """Run ``run(config, key)`` for every configuration and seed; return the :class:`Results`.

    Args:
        run: a function of a configuration (a copy of the dict) and a key, returning
            a dict of floats and lists of floats (per-epoch curves). Everything a
            run depends on must be in its configuration or its key: that is what
            makes it reproducible, and what a restart matches on. Catch the
            failures you expect (``fb.DivergenceError``) and return what to record
            (say NaN); any other exception stops the sweep and is raised here.
        configs: distinct dicts of JSON data, e.g. from :func:`grid`.
        key: the sweep's key. Each run gets ``run_key(key, config, seed)``,
            which depends only on ``key``, the configuration's content and the
            seed (see :func:`run_key`): not on the executor, the order of the
            list or of completion, nor on which runs were done before.
        seeds: how many seeds (``0 .. seeds - 1``), or which.
        executor: None to run in this process, one run after the other; or any
            :class:`concurrent.futures.Executor`: a ``ProcessPoolExecutor``
            (``run`` must then be importable: defined in a module, not a lambda), or
            a Dask cluster's ``distributed.Client(address).get_executor()``. The
            workers need fnbp and the module that defines ``run``.
        path: a JSON-lines file that each run is appended to as it finishes (one
            line, one ``write``, then ``fsync``: a killed sweep loses at most the
            runs in flight). Runs it already records, matched by configuration
            content and seed, are not run again but taken from it; a torn last line
            is cut off with a warning. The recorded keys must be this sweep's (a
            ``ValueError`` otherwise). Only one sweep at a time may write a file.
        progress: a tqdm bar over runs (if tqdm is installed); ``"auto"``: when
            standard error is a terminal.

    Results come configuration by configuration, seed by seed.

    >>> import fnbp as fb
    >>> from fnbp.experiments import grid, sweep
    >>> def run(config, key):
    ...     return {"draw": float(fb.random.uniform(key, ()) * config["scale"])}
    >>> a = sweep(run, grid(scale=[1.0, 10.0]), seeds=2, key=fb.random.key(0))
    >>> b = sweep(run, grid(scale=[10.0, 1.0]), seeds=[1, 0], key=fb.random.key(0))
    >>> sorted(r.metrics["draw"] for r in a) == sorted(r.metrics["draw"] for r in b)
    True
    """
    if not callable(run):
        raise ValueError(f"sweep: run must be a function run(config, key), got {run!r}")
    items = _check_configs(configs)
    key = _check_key(key, "sweep")
    seed_list = _check_seeds(seeds)
    if executor is not None and not callable(getattr(executor, "submit", None)):
        raise ValueError(
            "sweep: executor must be None or a concurrent.futures.Executor (with a submit "
            f"method), got {type(executor).__name__}"
        )
    if progress not in (True, False, "auto"):
        raise ValueError(f"sweep: progress must be True, False or 'auto', got {progress!r}")
    jobs = {
        (i, s): _derive(key, canonical, s)
        for i, (_, canonical) in enumerate(items)
        for s in seed_list
    }
    done: dict[_Job, Record] = {}
    with contextlib.ExitStack() as stack:
        log = None
        if path is not None:
            log = _Log(path)
            stack.callback(log.close)
            done = _recorded(log, items, jobs)
        bar = _bar(progress, len(jobs), len(done))
        if bar is not None:
            stack.callback(bar.close)
        pending = [(job, items[job[0]][0], k) for job, k in jobs.items() if job not in done]
        outcomes: Any = stack.enter_context(contextlib.closing(_execute(run, pending, executor)))  # type: ignore[type-var]
        for (i, s), (raw, seconds, version) in outcomes:
            metrics = _metrics(raw, f"sweep: the result of run(configs[{i}], key) for seed {s}")
            done[i, s] = Record(dict(items[i][0]), s, metrics, jobs[i, s], seconds, version)
            if log is not None:
                log.append(done[i, s])
            if bar is not None:
                bar.update()
    return Results(tuple(done[job] for job in jobs))


def _recorded(
    log: _Log, items: list[tuple[dict[str, Any], str]], jobs: dict[_Job, random.Key]
) -> dict[_Job, Record]:
    """The runs of this sweep that the file already holds (first line wins)."""
    index = {canonical: i for i, (_, canonical) in enumerate(items)}
    done: dict[_Job, Record] = {}
    for number, r in log.records:
        i = index.get(_canonical(r.config))
        job = (i, r.seed)
        if i is None or job not in jobs or job in done:
            continue
        if r.key != jobs[job]:
            raise ValueError(
                f"sweep: path {log.name!r} line {number} records configs[{i}] with seed "
                f"{r.seed} run with {r.key}, but this sweep's key gives {jobs[job]}: the file "
                "belongs to a sweep with another key; give that key or another path"
            )
        done[job] = attrs.evolve(r, config=dict(items[i][0]))
    return done
