"""Run examples/sklearn_pipeline.py with small settings."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import pytest

pytestmark = pytest.mark.slow

SMALL = {"learning_rates": (1e-2, 3e-2), "widths": (16,), "max_iter": 8, "cv": 2}


def test_grid_search_on_the_digits(
    load_example: Callable[[str], ModuleType], capsys: pytest.CaptureFixture
) -> None:
    pytest.importorskip("sklearn")
    result = load_example("sklearn_pipeline").main(**SMALL, n_jobs=2)
    out = capsys.readouterr().out
    assert result["table"][0].split() == ["learning", "rate", "width", "cv", "accuracy"]
    assert len(result["table"]) == 3 and all(line in out for line in result["table"])
    assert result["best_params"]["net__learning_rate"] in SMALL["learning_rates"]
    assert result["test_accuracy"] > 0.85 and "test accuracy of the best pipeline" in out
    assert 1 <= result["epochs"] <= SMALL["max_iter"]
    means = result["search"].cv_results_["mean_test_score"]
    assert min(means) > 0.8
