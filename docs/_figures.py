"""Regenerate the figures of the Examples pages: ``python docs/_figures.py [NAME ...]``.

Runs every example that saves a figure (or only those named), with its own
settings (a few minutes in all; the sweep starts a local Dask cluster when Dask
is installed), into a temporary folder, then writes each PNG to
``docs/examples/img/`` at most 1400 pixels wide with a 128-colour palette, so
each stays well under 150 KB.
"""

from __future__ import annotations

import importlib
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMG = ROOT / "docs" / "examples" / "img"
EXAMPLES = ("fit_and", "learning_rates", "decision_border", "and_float", "digits",
            "cnn_digits", "regularisation", "sweep", "char_lm")  # fmt: skip


def shrink(src: Path, dst: Path, width: int = 1400) -> None:
    """``src`` as a palette PNG at most ``width`` pixels wide."""
    from PIL import Image

    image = Image.open(src).convert("RGB")
    if image.width > width:
        image = image.resize((width, round(image.height * width / image.width)), Image.LANCZOS)
    palette = image.quantize(colors=128, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    palette.save(dst, optimize=True)


def main(names: tuple[str, ...] = EXAMPLES) -> None:
    unknown = sorted(set(names) - set(EXAMPLES))
    if unknown:
        raise SystemExit(f"no figures for {unknown}; the examples are {', '.join(EXAMPLES)}")
    sys.path[:0] = [str(ROOT), str(ROOT / "examples")]
    with tempfile.TemporaryDirectory() as out:
        for name in names:
            print(f"--- {name}")
            importlib.import_module(name).main(out_dir=out)
        for png in sorted(Path(out).glob("*.png")):
            shrink(png, IMG / png.name)
            print(f"{IMG / png.name}: {(IMG / png.name).stat().st_size // 1024} KB")


if __name__ == "__main__":
    main(tuple(sys.argv[1:]) or EXAMPLES)
