"""Helpers shared by the tests of the recurrent cells and of the time loop."""

from __future__ import annotations

from typing import Any

import numpy as np

import fnbp as fb

CELLS = (fb.RNNCell, fb.LSTMCell, fb.GRUCell)
KEY = fb.random.key(3)


def sigmoid(a: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-a))


def random_cell(cls: type, f: int = 3, h: int = 4, dtype: Any = np.float64, seed: int = 0) -> Any:
    return cls.init(fb.random.key(seed), f, h, dtype=dtype)


def random_carry(cell: Any, n: int, rng: np.random.Generator) -> Any:
    return fb.tree.map(lambda a: rng.uniform(-1, 1, (n, *a.shape)), cell.initial_carry())


def cotangent(y: Any, seed: int = 1) -> Any:
    rng = np.random.default_rng(seed)
    return fb.tree.map(lambda a: rng.normal(size=a.shape).astype(a.dtype), y)


def run(layer: Any, x: Any, seed: int = 1, need_g_x: bool = True) -> tuple:
    """``(y, g_x, grads)`` for a random cotangent."""
    y, pullback = fb.vjp(layer, x, need_g_x=need_g_x)
    g_x, grads = pullback(cotangent(y, seed))
    return y, g_x, grads


def assert_same_bits(a: Any, b: Any) -> None:
    fb.tree.assert_same_structure(a, b)
    for (path, u), v in zip(fb.tree.leaves_with_paths(a), fb.tree.leaves(b), strict=True):
        assert np.array_equal(u, v, equal_nan=True), path


def assert_close(a: Any, b: Any, rtol: float = 1e-12) -> None:
    fb.tree.assert_same_structure(a, b)
    for (path, u), v in zip(fb.tree.leaves_with_paths(a), fb.tree.leaves(b), strict=True):
        np.testing.assert_allclose(u, v, rtol=rtol, atol=1e-14, err_msg=path)
