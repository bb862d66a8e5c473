"""Shared fixtures: seeded data (never numpy's global RNG) as read-only arrays."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest


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
