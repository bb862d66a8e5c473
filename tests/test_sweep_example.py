"""Run examples/sweep.py with small settings: on a local Dask cluster, and without Dask."""

from __future__ import annotations

import concurrent.futures
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

pytestmark = pytest.mark.slow

SMALL = {"learning_rates": (0.003, 0.03), "widths": (8,), "seeds": 2, "epochs": 2}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def example(load_example: Callable[[str], ModuleType]) -> ModuleType:
    pytest.importorskip("sklearn")
    return load_example("sweep")


class ByValue:
    """A function that pickles as its code (cloudpickle), not as a module and a name."""

    def __init__(self, fn: Callable) -> None:
        self.fn = fn

    def __call__(self, *args: Any) -> Any:
        return self.fn(*args)

    def __reduce__(self) -> tuple:
        import cloudpickle

        return cloudpickle.loads, (cloudpickle.dumps(self.fn),)


@pytest.fixture(scope="module")
def on_dask(example: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    pytest.importorskip("distributed")
    pytest.importorskip("matplotlib")
    import cloudpickle

    # Dask workers import a function by its module's name. Run as a script, the example
    # is __main__, whose functions Dask sends as code; the test imports it under a name
    # the workers cannot import, so send its train as code too.
    cloudpickle.register_pickle_by_value(example)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(example, "train", ByValue(example.train))
        try:
            return example.main(**SMALL, out_dir=tmp_path_factory.mktemp("sweep"), progress=False)
        finally:
            cloudpickle.unregister_pickle_by_value(example)


# Dask may warn about its own cluster while it starts or stops (a busy port): nothing
# fnbp did. The cluster starts and stops in the first test, the one that uses it.
@pytest.mark.filterwarnings("ignore::UserWarning:distributed")
def test_the_sweep_trains_every_setting_and_seed(on_dask: dict[str, Any]) -> None:
    results = on_dask["results"]
    assert [(r.config["learning_rate"], r.seed) for r in results] == [
        (0.003, 0), (0.003, 1), (0.03, 0), (0.03, 1),
    ]  # fmt: skip
    assert all(len(r.metrics["test_accuracy"]) == 2 for r in results)
    rows = on_dask["summary"]
    assert [row["runs"] for row in rows] == [2, 2]
    slow, fast = (row["metrics"]["test_accuracy"]["mean"] for row in rows)
    assert 0.3 < slow < fast and fast > 0.85  # two epochs: the larger rate gets further
    lines = on_dask["table"].splitlines()
    assert lines[0].split() == [
        "learning_rate", "width", "epochs", "batch_size", "runs", "test_accuracy", "test_loss",
    ]  # fmt: skip
    assert len(lines) == 3 and len({len(line) for line in lines}) == 1
    path = on_dask["figure"]
    assert path == path.parent / "sweep.png" and path.read_bytes().startswith(PNG_SIGNATURE)


def test_a_worker_gives_the_bits_of_a_call_here(
    example: ModuleType, on_dask: dict[str, Any]
) -> None:
    data = example.digits()
    for r in on_dask["results"].records[::3]:
        assert example.train(r.config, r.key, data) == {k: list(v) for k, v in r.metrics.items()}


def test_a_second_start_reads_every_run_from_the_file(
    example: ModuleType, on_dask: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    def must_not_train(config: dict, key: Any, data: Any) -> dict:
        raise AssertionError("a recorded run was trained again")

    monkeypatch.setattr(example, "train", must_not_train)
    monkeypatch.setitem(sys.modules, "distributed", None)  # no cluster needed to read
    out_dir = on_dask["figure"].parent
    again = example.main(**SMALL, out_dir=out_dir, progress=False)
    assert again["results"] == on_dask["results"]


def test_without_dask_it_says_so_and_uses_a_pool(
    example: ModuleType,
    on_dask: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # importing it raises ImportError
    # A thread pool stands in for the process pool: this test is about the fallback;
    # test_experiments.py runs real process pools.
    monkeypatch.setattr(
        concurrent.futures, "ProcessPoolExecutor", concurrent.futures.ThreadPoolExecutor
    )
    out = example.main(**SMALL, out_dir=tmp_path, progress=False)
    assert "distributed is not installed" in capsys.readouterr().out
    assert out["results"] == on_dask["results"]
