"""The notebooks in ``notebooks/``: committed without outputs, and each runs top to bottom.

A notebook is run in a fresh Jupyter kernel (nbclient, ipykernel: the ``test`` extra)
started in ``notebooks/`` with this checkout's fnbp first on the path; a cell that
raises fails the test and names the cell.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks() -> None:
    assert [p.name for p in NOTEBOOKS][:1] == ["01_the_notebook_in_fnbp.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_without_outputs(path: Path) -> None:
    nb = json.loads(path.read_text(encoding="utf-8"))
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            stale = cell.get("outputs") or cell.get("execution_count") is not None
            assert not stale, (
                f"{path.name}, cell {i}: outputs or an execution count are committed; clear "
                "them (Jupyter: Edit > Clear Outputs of All Cells, then save)"
            )
    assert "widgets" not in nb.get("metadata", {}), f"{path.name}: widget state is committed"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nbclient = pytest.importorskip("nbclient")
    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("ipykernel")
    pytest.importorskip("matplotlib")
    # The kernel is a new process: this checkout's fnbp first, one BLAS thread as the suite.
    path_env = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    monkeypatch.setenv("PYTHONPATH", path_env)
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.setenv(name, "1")
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute()  # raises CellExecutionError (with the cell and traceback) on an error
    assert any(cell.get("outputs") for cell in nb.cells if cell.cell_type == "code")
