"""Run the notebook-exercise examples with fast settings and check what each claims.

matplotlib and scikit-learn come with the ``test`` extra, so nothing here skips
in CI. Without matplotlib the examples still train and these tests still check
the numbers (the figure is then None); only the digits test needs scikit-learn.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None

pytestmark = pytest.mark.slow


def check_figure(path: Path | None, out_dir: Path, name: str) -> None:
    """The example saved ``name`` into ``out_dir`` as a non-empty PNG (with matplotlib)."""
    if not HAS_MATPLOTLIB:
        assert path is None
        return
    assert path == out_dir / name
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 10_000


def test_fit_and_learns_the_gate(tmp_path: Path, load_example: Callable[[str], ModuleType]) -> None:
    result = load_example("fit_and").main(epochs=500, out_dir=tmp_path)
    assert result["accuracy"] == 1.0
    assert result["history"].epochs == 500
    losses = result["losses"]
    assert losses.shape == (501,)
    assert losses[0] == pytest.approx(np.log(2), abs=1e-3)
    assert np.all(np.diff(losses) < 0)  # full-batch descent on a convex loss
    assert losses[-1] < 0.05
    np.testing.assert_array_equal(result["prediction"] > 0.5, [[True], [False], [False], [False]])
    check_figure(result["figure"], tmp_path, "fit_and.png")


def test_fit_and_runs_without_matplotlib(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, load_example: Callable[[str], ModuleType]
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now fails
    result = load_example("fit_and").main(epochs=200, out_dir=tmp_path)
    assert result["figure"] is None and result["accuracy"] == 1.0
    assert not list(tmp_path.iterdir())


@pytest.fixture(scope="module")
def learning_rates(
    tmp_path_factory: pytest.TempPathFactory, load_example: Callable[[str], ModuleType]
) -> tuple[dict, Path]:
    out_dir = tmp_path_factory.mktemp("learning_rates")
    return load_example("learning_rates").main(steps=300, out_dir=out_dir), out_dir


def test_learning_rates_grid(learning_rates: tuple[dict, Path]) -> None:
    result, out_dir = learning_rates
    assert result["learning_rates"] == [0.01, 0.1, 1.0, 10.0, 100.0]
    assert result["checkpoints"] == [1, 10, 100, 300]
    assert result["losses"].shape == (5, 4)
    assert result["curves"].shape == (5, 301)
    np.testing.assert_array_equal(result["losses"], result["curves"][:, [1, 10, 100, 300]])
    np.testing.assert_allclose(result["curves"][:, 0], np.log(2), atol=1e-3)  # one initial net
    check_figure(result["figure"], out_dir, "learning_rates.png")


def test_larger_rates_learn_faster_until_they_diverge(learning_rates: tuple[dict, Path]) -> None:
    result, _ = learning_rates
    final = result["losses"][:, -1]
    stable = np.flatnonzero(final < np.log(2))
    assert stable.tolist() == [0, 1, 2, 3]  # 100 is the divergence point
    assert np.all(np.diff(final[stable]) < 0)  # up to it: larger rate, lower loss
    reach = result["steps_to_target"]
    assert reach[:2] == [None, None] and reach[4] is None
    assert reach[3] < reach[2] <= 300  # and in fewer steps
    # Small steps follow the gradient flow: 10x the rate is 10x fewer steps.
    curves = result["curves"]
    assert curves[2, 10] == pytest.approx(curves[1, 100], rel=1e-2)
    assert curves[1, 10] == pytest.approx(curves[0, 100], rel=1e-2)


def test_learning_rate_10_overshoots_and_100_is_stuck(learning_rates: tuple[dict, Path]) -> None:
    result, _ = learning_rates
    curves = result["curves"]
    assert curves[3, 1:4].max() > np.log(2)  # lr 10 first climbs above the start...
    assert curves[3, -1] < 0.01  # ...then trains fastest
    stuck = -np.log(np.finfo(np.float64).eps) / 4  # (1, 1) saturated at p = eps
    np.testing.assert_allclose(curves[4, 3:], stuck, rtol=1e-6)
    assert list(result["rescued"]) == [100.0]
    assert result["rescued"][100.0] < 1e-3  # the logits loss recovers


def test_decision_border_is_the_line_from_the_weights(
    tmp_path: Path, load_example: Callable[[str], ModuleType]
) -> None:
    result = load_example("decision_border").main(resolution=101, out_dir=tmp_path)
    assert result["accuracy"] == 1.0
    assert result["unexplained"] == 0
    assert result["agreement"] == 1.0
    w = result["w"]
    assert w[0] == pytest.approx(w[1], rel=1e-6)  # symmetric inputs, symmetric weights
    assert result["intercept"] == pytest.approx(1.5, abs=0.05)  # x1 + x2 = 1.5
    check_figure(result["figure"], tmp_path, "decision_border.png")


def test_and_float_linear_against_mlp(
    tmp_path: Path, load_example: Callable[[str], ModuleType]
) -> None:
    result = load_example("and_float").main(epochs=50, out_dir=tmp_path)
    linear, mlp = result["linear"]["accuracy"], result["mlp"]["accuracy"]
    assert 0.85 <= linear <= 0.96  # a line: about 11/12 at best
    assert mlp >= 0.96
    assert mlp >= linear + 0.03
    check_figure(result["figure"], tmp_path, "and_float.png")


def test_digits_reaches_97_percent(
    tmp_path: Path, load_example: Callable[[str], ModuleType]
) -> None:
    pytest.importorskip("sklearn")
    result = load_example("digits").main(verbose=False, out_dir=tmp_path)
    assert result["accuracy"] >= 0.97
    history = result["history"]
    assert history.epochs == 20
    assert len(history.val_loss) == len(history.val_metrics["accuracy"]) == 20
    assert history.val_metrics["accuracy"][-1] == result["accuracy"]
    check_figure(result["figure"], tmp_path, "digits.png")


def test_digits_explains_a_missing_scikit_learn(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    load_example: Callable[[str], ModuleType],
) -> None:
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    assert load_example("digits").main(out_dir=tmp_path) == {}
    assert 'pip install -e ".[examples]"' in capsys.readouterr().out
