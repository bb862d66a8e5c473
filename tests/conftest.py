"""Shared fixtures: seeded data (never numpy's global RNG) as read-only arrays; examples."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

try:
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover - threadpoolctl comes with the test extra
    threadpool_limits = None


@pytest.fixture(autouse=True, scope="session")
def _one_blas_thread():
    """Run the suite with one BLAS thread: the networks here are small, and two threads
    fighting other processes for two cores made the examples 3x slower under load."""
    if threadpool_limits is None:
        yield
        return
    with threadpool_limits(limits=1):
        yield


EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _readonly(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


@pytest.fixture
def rng() -> np.random.Generator:
    """A fresh seeded Generator for each test."""
    return np.random.default_rng(1234)


@pytest.fixture
def make(rng: np.random.Generator) -> Callable[..., np.ndarray]:
    """``make(*shape, dtype=np.float64, low=-1.0, high=1.0, away=0.0)``: read-only data.

    Uniform on ``[low, high)``; with ``away > 0`` every entry has magnitude at
    least ``away`` (to keep ReLU-type inputs off their kink at 0).
    """

    def make(
        *shape: int,
        dtype: np.dtype | type = np.float64,
        low: float = -1.0,
        high: float = 1.0,
        away: float = 0.0,
    ) -> np.ndarray:
        a = rng.uniform(low, high, shape)
        if away:
            a = np.where(a >= 0, 1.0, -1.0) * (away + np.abs(a))
        return _readonly(a.astype(dtype))

    return make


@pytest.fixture
def labels(rng: np.random.Generator) -> Callable[..., np.ndarray]:
    """``labels(n, n_classes)``: read-only int64 class labels covering every class."""

    def labels(n: int, n_classes: int) -> np.ndarray:
        out = np.arange(n) % n_classes
        return _readonly(rng.permutation(out))

    return labels


@pytest.fixture
def probs(rng: np.random.Generator) -> Callable[..., np.ndarray]:
    """``probs(n, n_classes)``: read-only rows of positive probabilities summing to 1."""

    def probs(n: int, n_classes: int, dtype: np.dtype | type = np.float64) -> np.ndarray:
        p = rng.uniform(0.1, 1.0, (n, n_classes))
        p /= p.sum(axis=1, keepdims=True)
        return _readonly(p.astype(dtype))

    return probs


def import_example(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` as a module (examples is not a package).

    Each call runs the script's module code afresh. ``examples/`` goes on ``sys.path``
    first (once), as it does for ``python examples/<name>.py``, so that an example's
    ``from _plotting import ...`` finds ``examples/_plotting.py``.
    """
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    spec = importlib.util.spec_from_file_location(f"fnbp_example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def load_example() -> Callable[[str], ModuleType]:
    """``load_example(name)``: import ``examples/<name>.py`` afresh (see ``import_example``)."""
    return import_example
