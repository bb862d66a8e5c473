"""A griffe extension: fnbp's reST-flavoured docstrings as Markdown, for mkdocstrings.

fnbp's docstrings are prose with ``double backticks``, ``::`` literal blocks,
``>>>`` examples and Sphinx roles such as :class:`Layer`. Markdown reads the
backticks as code already; this extension rewrites the rest before the
docstring is parsed, so the source stays as it is:

* a paragraph ending in ``::`` loses one colon and its indented block becomes
  a fenced ``text`` block;
* a run of ``>>>`` lines and their output becomes a fenced ``pycon`` block;
* ``:role:`~a.b.C``` becomes ```C```, ``:role:`a.b.C``` becomes ```a.b.C```.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj):`(~?)([^`]+)`")


def _role(match: re.Match[str]) -> str:
    tilde, target = match.groups()
    return f"``{target.rsplit('.', 1)[-1] if tilde else target}``"


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def to_markdown(text: str) -> str:
    """``text`` with literal blocks and doctests fenced and roles as inline code."""
    lines, out, i = text.splitlines(), [], 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if stripped.startswith(">>>"):
            pad = line[: _indent(line)]
            out.append(pad + "```pycon")
            while i < len(lines) and lines[i].strip():
                out.append(lines[i])
                i += 1
            out.append(pad + "```")
            continue
        if stripped.endswith("::") and not stripped.startswith(".."):
            head = line.rstrip()[:-1]
            out.append(head[:-1].rstrip() if head.endswith(" :") else head)
            base, j = _indent(line), i + 1
            while j < len(lines) and not lines[j].strip():
                j += 1
            block = []
            while j < len(lines) and (not lines[j].strip() or _indent(lines[j]) > base):
                block.append(lines[j])
                j += 1
            while block and not block[-1].strip():
                block.pop()
            if block:
                cut = min(_indent(b) for b in block if b.strip())
                pad = " " * base
                out += ["", pad + "```text", *(pad + b[cut:] for b in block), pad + "```", ""]
                i = j
                continue
            i += 1
            continue
        out.append(_ROLE.sub(_role, line))
        i += 1
    return "\n".join(out)


class RstDocstrings(griffe.Extension):
    """Rewrite every docstring of the loaded objects with :func:`to_markdown`."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = to_markdown(obj.docstring.value)
