"""Figure helpers shared by the examples: get pyplot if it is there, save a figure.

The drawing itself is ``fnbp.plot``'s (learning curves, decision borders,
weights, layer norms); this module only finds pyplot and writes the files.
The examples draw with matplotlib when it is installed
(``pip install -e ".[examples]"``) and still train and print their results
when it is not. Running ``python examples/NAME.py`` puts ``examples/`` on
``sys.path``, so an example imports these with::

    from _plotting import pyplot, save
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def pyplot() -> Any:
    """matplotlib's pyplot on the file-only Agg backend, or None if it is not installed.

    matplotlib is imported on each call, not when this module is, so an
    example without it (or a test that hides it) still trains and only skips
    its figure, with a hint on how to install it.
    """
    try:
        import matplotlib
    except ImportError:
        print('\nmatplotlib is not installed, no figure (pip install -e ".[examples]").')
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(plt: Any, fig: Any, out_dir: str | Path, name: str) -> Path:
    """Write ``fig`` as ``out_dir/name`` (creating ``out_dir``), close it; return the path."""
    path = Path(out_dir) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"saved {path}")
    return path
