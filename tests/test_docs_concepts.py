"""The code on the documentation's Concepts pages runs as written, page by page."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

CONCEPTS = Path(__file__).resolve().parent.parent / "docs" / "concepts"
PAGES = sorted(p for p in CONCEPTS.glob("*.md") if p.name != "index.md")


def blocks(page: Path) -> list[str]:
    text = page.read_text(encoding="utf-8")
    return [textwrap.dedent(b) for b in re.findall(r"```python\n(.*?)```", text, re.S)]


def test_every_concept_page_has_code() -> None:
    assert {p.stem for p in PAGES} == {"records", "keys", "layers", "training", "trees", "seeing"}
    assert all(blocks(p) for p in PAGES)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.stem)
def test_the_code_of_a_concept_page_runs(page: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if "matplotlib" in page.read_text(encoding="utf-8"):
        pytest.importorskip("matplotlib")
    namespace: dict = {}
    for i, code in enumerate(blocks(page)):
        exec(compile(code, f"{page.name}, block {i + 1}", "exec"), namespace)  # the page's code
    if "matplotlib" in namespace:
        namespace["matplotlib"].pyplot.close("all")
    out = capsys.readouterr().out
    assert "False" not in out, out  # every check the page prints holds
