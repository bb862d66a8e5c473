"""The notebooks in ``notebooks/``: committed without outputs, and each runs top to bottom.

A notebook is run in a fresh Jupyter kernel (nbclient, ipykernel: the ``test`` extra)
started in ``notebooks/`` with this checkout's fnbp first on the path; a cell that
raises fails the test and names the cell. The notebooks run at the same time, a kernel
(a process, one BLAS thread) each: on two cores that takes the time of the longest.
"""

from __future__ import annotations

import asyncio
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


@pytest.fixture(scope="module")
def executed() -> dict:
    """Every notebook run once, all at the same time (a kernel each, one BLAS thread each,
    as the suite), as ``{name: (notebook, the error it raised or None)}``."""
    nbclient = pytest.importorskip("nbclient")
    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("ipykernel")
    pytest.importorskip("matplotlib")

    async def run(path: Path) -> tuple:
        nb = nbformat.read(path, as_version=4)
        where = {"metadata": {"path": str(path.parent)}}
        client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3", resources=where)
        try:
            await client.async_execute()
        except Exception as e:  # CellExecutionError: the cell and its traceback
            return nb, e
        return nb, None

    async def run_all() -> list:
        return await asyncio.gather(*(run(path) for path in NOTEBOOKS))

    with pytest.MonkeyPatch.context() as mp:  # a kernel is a new process: this checkout's fnbp
        mp.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.getenv("PYTHONPATH")])))
        for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            mp.setenv(name, "1")
        results = asyncio.run(run_all())
    return {path.name: result for path, result in zip(NOTEBOOKS, results, strict=True)}


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path: Path, executed: dict) -> None:
    nb, error = executed[path.name]
    if error is not None:
        raise error
    assert any(cell.get("outputs") for cell in nb.cells if cell.cell_type == "code")
