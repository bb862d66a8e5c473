"""The README's code runs as written (its training snippets with fewer epochs)."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def _blocks() -> list[str]:
    text = README.read_text()
    return [textwrap.dedent(b) for b in re.findall(r"```python\n(.*?)```", text, re.S)]


def _run(code: str, namespace: dict | None = None) -> dict:
    namespace = {} if namespace is None else namespace
    exec(compile(code, str(README), "exec"), namespace)  # the README's own code
    return namespace


def _block(start: str) -> str:
    found = [b for b in _blocks() if b.lstrip().startswith(start)]
    assert len(found) == 1, f"no single README block starting with {start!r}"
    return found[0]


def test_the_first_example_learns_and(capsys: pytest.CaptureFixture[str]) -> None:
    ns = _run(_block("import numpy as np\nimport fnbp as fb\n\nx = np.array"))
    assert ns["fb"].forward(ns["net"], ns["x"]).round().ravel().tolist() == [1, 0, 0, 0]


def test_the_training_snippets_run() -> None:
    training = _block("x, labels = fb.datasets.two_moons").replace("epochs=30", "epochs=3")
    ns = _run("import numpy as np\nimport fnbp as fb\n" + training)
    assert ns["history"].epochs <= 3
    ns = _run(_block("opt = fb.optim.adam(1e-2)"), ns)
    assert int(ns["ts"].step) == -(-len(ns["x_tr"]) // 100)


def test_the_cnn_snippet_runs() -> None:
    images = np.zeros((4, 8, 8, 1), np.float32)
    ns = _run(
        "import numpy as np\nimport fnbp as fb\n"
        + _block("k = fb.random.split(fb.random.key(0), 4)"),
        {"images": images},
    )
    assert ns["y"].shape == (4, 10)


def test_your_own_layer_snippet_runs() -> None:
    ns = _run("import numpy as np\nimport fnbp as fb\n" + _block("import attrs"))
    assert ns["report"].ok


def test_the_sequence_snippet_runs() -> None:
    ns = _run(
        "import numpy as np\nimport fnbp as fb\n"
        + _block("k = fb.random.split(fb.random.key(0), 3)")
    )
    assert ns["logits"].shape == (16, 10) and np.isfinite(float(ns["loss"]))


def test_the_seeing_inside_snippet_runs(capsys: pytest.CaptureFixture[str]) -> None:
    ns = _run(
        "import numpy as np\nimport fnbp as fb\n"
        + _block("net = fb.mlp(fb.random.key(0), [2, 8, 1]")
    )
    out = capsys.readouterr().out
    assert out.startswith("Serial(Dense(2 -> 8), ReLU(), Dense(8 -> 1), Sigmoid())")
    assert len(ns["history"].column("grad_norm/layers[0]")) == 20


def test_the_sklearn_snippet_runs() -> None:
    pytest.importorskip("sklearn")
    ns = _run(_block("from sklearn.datasets import load_digits"))
    assert ns["search"].best_score_ > 0.5


def test_the_sweep_snippet_runs() -> None:
    ns = _run("import numpy as np\nimport fnbp as fb\n" + _block("from fnbp import experiments"))
    assert len(ns["results"].records) == 4 * 3
