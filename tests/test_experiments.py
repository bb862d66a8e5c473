"""Sweeps: keys from config content, bit-identical results on any executor, restartable files."""

from __future__ import annotations

import concurrent.futures
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _sweep_runs import CONFIGS, moons

import fnbp as fb
from fnbp import experiments
from fnbp.experiments import Record, Results, grid, run_key, sweep

KEY = fb.random.key(7)
SEEDS = 2
ROOT = Path(__file__).resolve().parent.parent


def facts(results: Results) -> list[tuple[str, int, Any, Any]]:
    """What must be bit-identical: configuration, seed, key, metrics (not wall time)."""
    return [(json.dumps(r.config), r.seed, r.key, r.metrics) for r in results]


@pytest.fixture(scope="module")
def reference() -> Results:
    """The sweep run in this process, one run after the other."""
    return sweep(moons, CONFIGS, seeds=SEEDS, key=KEY, progress=False)


# ----------------------------------------------------------------------------- grid and keys


def test_grid_is_the_cartesian_product_last_axis_fastest() -> None:
    assert grid(a=[1, 2], b=("x", "y", "z")) == [
        {"a": a, "b": b} for a in (1, 2) for b in ("x", "y", "z")
    ]
    assert grid(lr=np.array([0.1, 0.2]))[1] == {"lr": 0.2}
    assert grid() == [{}]


@pytest.mark.parametrize(
    ("axes", "match"),
    [
        ({"lr": 0.1}, r"grid: axis 'lr' must be a list or tuple of values, got float 0.1"),
        ({"act": "relu"}, r"grid: axis 'act' must be a list or tuple of values, got str"),
        ({"lr": []}, r"grid: axis 'lr' must have at least one value, got none"),
    ],
)
def test_grid_rejects_bad_axes(axes: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        grid(**axes)


def test_run_key_depends_on_content_not_form() -> None:
    k = run_key(KEY, {"lr": 0.1, "sizes": (8, 8)}, 3)
    assert k == run_key(KEY, {"sizes": [8, 8], "lr": np.float64(0.1)}, 3)
    assert k.seed == KEY.seed and len(k.path) == len(KEY.path) + 3 and k.path[-1] == 3
    others = [
        run_key(KEY, {"lr": 0.1, "sizes": (8, 8)}, 4),
        run_key(fb.random.key(8), {"lr": 0.1, "sizes": (8, 8)}, 3),
        run_key(KEY, {"lr": 0.1, "sizes": (8, 9)}, 3),
        run_key(KEY, {"lr": 0.1, "sizes": (8, 8), "epochs": 1}, 3),
    ]
    assert len({k, *others}) == 5
    assert run_key(KEY, {"n": 1}, 0) != run_key(KEY, {"n": 1.0}, 0)  # int and float differ


def test_each_run_gets_its_run_key_and_gives_the_bits_of_a_direct_call(
    reference: Results,
) -> None:
    assert [(r.config, r.seed) for r in reference] == [(c, s) for c in CONFIGS for s in (0, 1)]
    for r in reference:
        assert r.key == run_key(KEY, r.config, r.seed)
        direct = moons(dict(r.config), r.key)
        assert r.metrics["final_loss"] == direct["final_loss"]
        assert r.metrics["loss"] == tuple(direct["loss"])
        assert r.metrics["val_accuracy"] == tuple(direct["val_accuracy"].tolist())
    metrics = reference.records[0].metrics
    assert type(metrics["final_loss"]) is float and type(metrics["val_loss"]) is tuple
    assert reference.records[0].fnbp_version == fb.__version__
    assert reference.records[0].seconds > 0


def test_keys_do_not_depend_on_the_list_order_or_the_other_configs(reference: Results) -> None:
    alone = sweep(moons, CONFIGS[2:0:-1], seeds=[1, 0], key=KEY, progress=False)
    assert [(r.config, r.seed) for r in alone][:2] == [(CONFIGS[2], 1), (CONFIGS[2], 0)]
    assert sorted(facts(alone)) == sorted(facts(reference)[2:])


# ----------------------------------------------------------------------------- executors


def test_a_process_pool_gives_the_same_bits(
    reference: Results, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")  # for the workers: no oversubscription
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    spawn = multiprocessing.get_context("spawn")  # fork in a threaded process is unsafe
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=spawn) as pool:
        results = sweep(moons, CONFIGS, seeds=SEEDS, key=KEY, executor=pool, progress=False)
    assert results == reference
    assert facts(results) == facts(reference)


@pytest.fixture
def dask_executor() -> Any:
    """A local Dask cluster of two single-threaded worker processes, closed after the test.

    Dask's nanny already starts workers with OMP/MKL/OPENBLAS_NUM_THREADS=1.
    """
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, dashboard_address=None, silence_logs=40
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client.get_executor()


# Dask may warn about its own cluster while it starts or stops (a busy port, a slow
# scratch directory, a worker closing mid-heartbeat): nothing fnbp did. The fixture is
# per test so that this filter also covers its setup and teardown.
@pytest.mark.filterwarnings("ignore::UserWarning:distributed")
def test_a_dask_cluster_gives_the_same_bits_and_file(
    reference: Results, dask_executor: Any, tmp_path: Path
) -> None:
    path = tmp_path / "dask.jsonl"
    results = sweep(
        moons, CONFIGS, seeds=SEEDS, key=KEY, executor=dask_executor, path=path, progress=False
    )
    assert results == reference
    assert facts(results) == facts(reference)
    assert sorted(facts(experiments.load(path))) == sorted(facts(reference))


# ----------------------------------------------------------------------------- the file


def test_the_file_has_one_json_line_per_run(reference: Results, tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    results = sweep(moons, CONFIGS, seeds=SEEDS, key=KEY, path=path, progress=False)
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b"" and len(lines) == len(results) + 1
    first = json.loads(lines[0])
    assert first["format"] == experiments.FORMAT
    assert first["config"] == CONFIGS[0] and first["seed"] == 0
    assert first["key"] == {"seed": KEY.seed, "path": list(results.records[0].key.path)}
    assert first["metrics"]["loss"] == list(results.records[0].metrics["loss"])
    assert first["fnbp_version"] == fb.__version__ and first["seconds"] > 0
    assert experiments.load(path) == results == reference


class Counting:
    """A run that counts its calls (in this process)."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict, fb.random.Key]] = []

    def __call__(self, config: dict, key: fb.random.Key) -> dict:
        self.calls.append((config, key))
        return moons(config, key)


def test_a_restart_runs_only_what_the_file_lacks(reference: Results, tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    sweep(moons, CONFIGS[:2], seeds=[1], key=KEY, path=path, progress=False)
    run = Counting()
    results = sweep(run, CONFIGS, seeds=SEEDS, key=KEY, path=path, progress=False)
    assert results == reference
    assert [(c, k.path[-1]) for c, k in run.calls] == [
        (CONFIGS[0], 0), (CONFIGS[1], 0), (CONFIGS[2], 0), (CONFIGS[2], 1),
    ]  # fmt: skip
    again = Counting()
    assert sweep(again, CONFIGS, seeds=SEEDS, key=KEY, path=path, progress=False) == reference
    assert again.calls == []
    assert len(path.read_bytes().splitlines()) == len(reference)


def test_a_restart_matches_configs_by_content(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    first = sweep(moons, [{"lr": 0.1, "width": 4}], seeds=1, key=KEY, path=path, progress=False)
    run = Counting()
    again = sweep(run, [{"width": 4, "lr": np.float64(0.1)}], seeds=1, key=KEY, path=path)
    assert run.calls == [] and again == first


def test_a_file_of_another_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    sweep(moons, CONFIGS[:1], seeds=1, key=KEY, path=path, progress=False)
    with pytest.raises(ValueError, match=r"line 1 records configs\[0\] with seed 0 .* another key"):
        sweep(moons, CONFIGS, seeds=1, key=fb.random.key(8), path=path, progress=False)


def test_a_torn_last_line_is_cut_off_and_redone(reference: Results, tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    sweep(moons, CONFIGS, seeds=[0], key=KEY, path=path, progress=False)
    whole = path.read_bytes()
    torn = whole + whole.splitlines(keepends=True)[0][:40]  # a write cut short
    path.write_bytes(torn)
    assert experiments.load(path) == experiments.load(path)  # reading leaves it alone
    assert path.read_bytes() == torn and len(experiments.load(path)) == 3
    with pytest.warns(UserWarning, match=r"torn line \(40 bytes after the last newline"):
        results = sweep(moons, CONFIGS, seeds=SEEDS, key=KEY, path=path, progress=False)
    assert results == reference
    lines = path.read_bytes().splitlines()
    assert len(lines) == len(reference) and all(json.loads(line) for line in lines)


def test_a_damaged_line_in_the_middle_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    sweep(moons, CONFIGS, seeds=[0], key=KEY, path=path, progress=False)
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(lines[0] + b'{"config": }\n' + lines[1])
    with pytest.raises(ValueError, match=r"sweep: path '.*runs.jsonl' line 2 is not a sweep"):
        sweep(moons, CONFIGS, seeds=[0], key=KEY, path=path, progress=False)
    path.write_bytes(lines[0] + b'{"a": 1}\n')
    with pytest.raises(ValueError, match=r"load: path .* line 2 is not a sweep record \(no"):
        experiments.load(path)


def test_one_sweep_at_a_time_per_file(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"

    def nested(config: dict, key: fb.random.Key) -> dict:
        with pytest.raises(ValueError, match=r"is in use by another running sweep"):
            sweep(moons, CONFIGS, seeds=1, key=KEY, path=path, progress=False)
        return {"ok": 1.0}

    sweep(nested, CONFIGS[:1], seeds=1, key=KEY, path=path, progress=False)
    assert len(experiments.load(path)) == 1


_KILLABLE = """
import itertools, sys, time
import fnbp as fb
from _sweep_runs import CONFIGS, moons
calls = itertools.count()
def run(config, key):  # the first two runs are quick, the others wait to be killed
    time.sleep(0.05 if next(calls) < 2 else 10)
    return moons(config, key)
fb.experiments.sweep(run, CONFIGS, seeds=2, key=fb.random.key(7), path=sys.argv[1],
                     progress=False)
"""


def test_a_killed_sweep_restarts_to_the_uninterrupted_results(
    reference: Results, tmp_path: Path
) -> None:
    path = tmp_path / "killed.jsonl"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    child = subprocess.Popen([sys.executable, "-c", _KILLABLE, str(path)], env=env)
    try:
        deadline = time.monotonic() + 60
        while not (path.exists() and path.read_bytes().count(b"\n") >= 2):
            assert child.poll() is None, "the sweep ended before it was killed"
            assert time.monotonic() < deadline, "the sweep wrote nothing"
            time.sleep(0.01)
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL
    written = len(experiments.load(path))
    assert written == 2  # the third run was in flight: lost, and only it
    run = Counting()
    results = sweep(run, CONFIGS, seeds=SEEDS, key=KEY, path=path, progress=False)
    assert results == reference and facts(results) == facts(reference)
    assert len(run.calls) == len(reference) - written
    assert len(path.read_bytes().splitlines()) == len(reference)


# ----------------------------------------------------------------------------- errors


def fails_on_second(config: dict, key: fb.random.Key) -> dict:
    if config["n"] == 2:
        raise fb.DivergenceError("diverged")
    return {"n": float(config["n"])}


def test_nan_and_numpy_metrics_round_trip_through_the_file(tmp_path: Path) -> None:
    def odd(config: dict, key: fb.random.Key) -> dict:
        return {"nan": float("nan"), "inf": np.float32(-np.inf), "zero_d": np.array(0.5),
                "curve": np.array([np.nan, 1.0]), "count": 3}  # fmt: skip

    path = tmp_path / "runs.jsonl"
    (r,) = sweep(odd, [{}], seeds=1, key=KEY, path=path, progress=False)
    assert (r.metrics["inf"], r.metrics["zero_d"], r.metrics["count"]) == (-np.inf, 0.5, 3.0)
    assert type(r.metrics["count"]) is float
    (back,) = experiments.load(path)
    assert np.isnan(back.metrics["nan"]) and np.isnan(back.metrics["curve"][0])
    assert back.metrics["inf"] == -np.inf and back.metrics["curve"][1] == 1.0
    stats = Results([r]).summary()[0]["metrics"]
    assert np.isnan(stats["nan"]["mean"]) and stats["curve"]["mean"] == 1.0


def test_a_failing_run_stops_the_sweep_and_keeps_what_finished(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    with pytest.raises(fb.DivergenceError, match="diverged"):
        sweep(fails_on_second, grid(n=[1, 2, 3]), seeds=1, key=KEY, path=path, progress=False)
    assert [r.config for r in experiments.load(path)] == [{"n": 1}]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"run": 3}, r"sweep: run must be a function run\(config, key\), got 3"),
        ({"configs": {"lr": 0.1}}, r"sweep: configs must be a non-empty list of dicts"),
        ({"configs": []}, r"sweep: configs must be a non-empty list of dicts .*got list \[\]"),
        ({"configs": [{"a": 1}, 2]}, r"sweep: configs\[1\] must be a dict, got int"),
        ({"configs": [{"f": len}]}, r"sweep: configs\[0\]\['f'\] must be JSON data .* got"),
        ({"configs": [{"x": float("nan")}]}, r"configs\[0\]\['x'\] must be .*finite numbers"),
        ({"configs": [{1: 2}]}, r"sweep: configs\[0\] must be JSON data .*got a dict key 1"),
        (
            {"configs": [{"a": 1, "b": 2}, {"b": 2, "a": 1}]},
            r"sweep: configs\[1\] repeats configs\[0\]",
        ),
        ({"key": 7}, r"sweep: key must be an fnbp key \(fb.random.key\(seed\)\), got int"),
        ({"seeds": 0}, r"sweep: seeds must be a number of seeds >= 1 .*, got 0"),
        ({"seeds": -1}, r"sweep: seeds must be a non-negative integer, got -1"),
        ({"seeds": True}, r"sweep: seeds must be a non-negative integer, got bool"),
        ({"seeds": 2.0}, r"sweep: seeds must be a non-negative integer, got float 2.0"),
        ({"seeds": [0, 1, 0]}, r"sweep: seeds must be .* distinct .*, got \[0, 1, 0\]"),
        ({"seeds": [0, -2]}, r"sweep: seeds\[1\] must be a non-negative integer, got -2"),
        ({"seeds": []}, r"sweep: seeds must be a number of seeds >= 1 .*, got \[\]"),
        ({"executor": "dask"}, r"sweep: executor must be None or a concurrent.futures.Exec"),
        ({"progress": "yes"}, r"sweep: progress must be True, False or 'auto', got 'yes'"),
    ],
)
def test_bad_arguments_name_the_parameter(kwargs: dict, match: str) -> None:
    args = {"run": moons, "configs": CONFIGS[:1], "key": KEY, "seeds": 1, **kwargs}
    with pytest.raises(ValueError, match=match):
        sweep(args.pop("run"), args.pop("configs"), **args)


@pytest.mark.parametrize(
    ("result", "match"),
    [
        ([0.5], r"got list"),
        ({"acc": "high"}, r"got 'acc': str 'high'"),
        ({"acc": True}, r"got 'acc': bool True"),
        ({"curve": [0.1, None]}, r"got 'curve': list \[0.1, None\]"),
        ({"grid": np.zeros((2, 2))}, r"got 'grid': ndarray"),
        ({3: 0.5}, r"got the key 3"),
    ],
)
def test_bad_metrics_name_the_run(result: Any, match: str) -> None:
    prefix = r"sweep: the result of run\(configs\[0\], key\) for seed 4 must be a dict of str "
    with pytest.raises(ValueError, match=prefix + r"-> float or list of floats, " + match):
        sweep(lambda c, k: result, [{}], seeds=[4], key=KEY, progress=False)


# ----------------------------------------------------------------------------- progress


def test_progress_bar_over_runs(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("tqdm")
    sweep(fails_on_second, grid(n=[1, 3]), seeds=2, key=KEY, progress=True)
    assert "4/4" in capsys.readouterr().err
    for progress in ("auto", False):  # "auto": stderr is not a terminal under pytest
        sweep(fails_on_second, grid(n=[1, 3]), seeds=2, key=KEY, progress=progress)
        assert capsys.readouterr().err == ""


# ----------------------------------------------------------------------------- summary


def synthetic() -> Results:
    """Hand-made records: acc = 0.1 * seed + width / 100; curves of 2 or 3 points."""
    records = []
    for width in (8, 16):
        for seed in range(3):
            acc = 0.1 * seed + width / 100
            curve = (1.0, 0.5, 0.25 * (seed + 1))[: 2 + (seed > 0)]
            metrics = {"acc": acc, "loss": curve}
            records.append(Record({"lr": 0.1, "width": width}, seed, metrics, KEY))
    return Results(tuple(records))


def test_summary_is_plain_data_of_final_values() -> None:
    rows = synthetic().summary()
    assert [r["config"] for r in rows] == [{"lr": 0.1, "width": 8}, {"lr": 0.1, "width": 16}]
    assert [r["runs"] for r in rows] == [3, 3]
    acc = rows[0]["metrics"]["acc"]
    assert acc["mean"] == pytest.approx(0.18) and acc["std"] == pytest.approx(0.1)
    assert acc["min"] == 0.08 and acc["max"] == pytest.approx(0.28)
    loss = rows[1]["metrics"]["loss"]  # last points 0.5, 0.5, 0.75
    assert (loss["min"], loss["max"]) == (0.5, 0.75) and loss["mean"] == pytest.approx(7 / 12)
    assert list(synthetic().summary("loss")[0]["metrics"]) == ["loss"]
    with pytest.raises(ValueError, match=r"Results.summary: metrics must name recorded metrics"):
        synthetic().summary(["accuracy"])


def test_summary_of_a_single_seed_has_no_spread() -> None:
    one = Results(synthetic().records[:1])
    assert np.isnan(one.summary()[0]["metrics"]["acc"]["std"])
    assert str(one).splitlines()[1].split() == ["0.1", "8", "1", "0.08000", "0.5000"]


def test_table_is_aligned() -> None:
    text = str(synthetic())
    lines = text.splitlines()
    assert lines[0].split() == ["lr", "width", "runs", "acc", "loss"]
    assert len({len(line) for line in lines}) == 1  # every column right-aligned
    acc = ["0.1800", "±", "0.1", "[0.08000,", "0.2800]"]
    loss = ["0.5833", "±", "0.14", "[0.5000,", "0.7500]"]
    assert lines[1].split() == ["0.1", "8", "3", *acc, *loss]
    assert synthetic().table("acc", digits=2).splitlines()[2].split()[3] == "0.26"
    assert repr(synthetic()) == "Results(6 runs of 2 configurations)"


def test_curves_pad_short_runs_and_band_over_the_runs_that_reached_an_epoch() -> None:
    first = synthetic().curves("loss")[0]
    values = first["values"]
    np.testing.assert_array_equal(values, [[1.0, 0.5, np.nan], [1.0, 0.5, 0.5], [1, 0.5, 0.75]])
    np.testing.assert_allclose(first["mean"], [1.0, 0.5, 0.625])
    np.testing.assert_allclose(first["std"], [0.0, 0.0, np.std([0.5, 0.75], ddof=1)])
    single = synthetic().curves("acc")[1]
    assert single["values"].shape == (3, 1)
    assert synthetic().label({"lr": 0.1, "width": 16}) == "width=16"


def test_sweep_curves_draws_a_band_per_configuration(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fnbp import plot

    fig, ax = plt.subplots()
    assert plot.sweep_curves(synthetic(), "loss", ax=ax) is ax
    assert [line.get_label() for line in ax.get_lines()] == ["width=8", "width=16"]
    assert len(ax.collections) == 2 and ax.get_ylabel() == "loss"
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), [1.0, 0.5, 0.625])
    fig.savefig(tmp_path / "curves.png")
    plt.close(fig)
    assert (tmp_path / "curves.png").stat().st_size > 1000


_WITHOUT_EXTRAS = """
import sys
for name in ("dask", "distributed", "tqdm", "matplotlib"):
    sys.modules[name] = None  # importing any of them now raises ImportError
import fnbp as fb
from fnbp import experiments, plot
results = experiments.sweep(lambda c, k: {"x": 1.0}, [{}], seeds=2, key=fb.random.key(0),
                            progress=True)
print(results.table())
try:
    plot.sweep_curves(results, "x")
except ImportError as e:
    print(e)
"""


def test_works_without_dask_tqdm_or_matplotlib() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", _WITHOUT_EXTRAS], env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""  # no bar without tqdm
    assert "fnbp.plot.sweep_curves needs matplotlib" in out.stdout
    assert out.stdout.splitlines()[1].split() == ["2", "1.000", "±", "0", "[1.000,", "1.000]"]
