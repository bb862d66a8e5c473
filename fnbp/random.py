"""Explicit, immutable random keys.

A key names a stream of random bits. It never changes: ``split`` derives new
keys from it, and ``generator`` builds a fresh :class:`numpy.random.Generator`
from it, so the same key always gives the same bits. fnbp never touches
numpy's global random state.

Keys are thin wrappers around :class:`numpy.random.SeedSequence`: a key is the
pair ``(seed, path)``, and ``split(key, n)[i]`` has path ``key.path + (i,)``,
exactly the spawn key SeedSequence would give its i-th child, computed without
mutating anything.

>>> import fnbp as fb
>>> k1, k2 = fb.random.split(fb.random.key(0))
>>> bool((fb.random.normal(k1, (3,)) == fb.random.normal(k1, (3,))).all())
True
"""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np
from numpy.typing import DTypeLike

from .validation import check_dims, check_int, check_real, check_size, fail, float_dtype

__all__ = ["Key", "key", "split", "fold_in", "generator", "normal", "uniform", "permutation"]


@attrs.frozen
class Key:
    """An immutable random key: a seed and the path of splits that led here."""

    seed: int = attrs.field(metadata={"static": True})
    path: tuple[int, ...] = attrs.field(default=(), metadata={"static": True})

    def __repr__(self) -> str:
        return f"Key(seed={self.seed}, path={self.path})"


def _check_key(k: Any, owner: str) -> Key:
    if not isinstance(k, Key):
        raise fail(owner, "key", "an fnbp key (made by fb.random.key(seed))", k)
    return k


def key(seed: int) -> Key:
    """Make the root key for a non-negative integer ``seed``."""
    return Key(check_int("random.key", "seed", seed, low=0))


MAX_SPLIT = 2**20
"""The most keys one ``split`` makes (each is a Python object); for more, derive
them one at a time with :func:`fold_in`."""


def split(key: Key, n: int = 2) -> tuple[Key, ...]:
    """Derive ``n`` new independent keys from ``key``; ``key`` itself is unchanged."""
    k = _check_key(key, "random.split")
    n = check_int("random.split", "n", n, low=0, high=MAX_SPLIT)
    return tuple(Key(k.seed, (*k.path, i)) for i in range(n))


def fold_in(key: Key, data: int) -> Key:
    """Derive one key from ``key`` and an integer, e.g. an epoch number.

    ``fold_in(key, i)`` equals ``split(key, n)[i]`` for any ``n > i``.
    """
    k = _check_key(key, "random.fold_in")
    return Key(k.seed, (*k.path, check_int("random.fold_in", "data", data, low=0)))


def generator(key: Key) -> np.random.Generator:
    """A fresh numpy Generator seeded from ``key``, for local use.

    Each call returns a new Generator in the same initial state, so drawing
    from two generators of one key gives the same numbers.
    """
    k = _check_key(key, "random.generator")
    seq = np.random.SeedSequence(k.seed, spawn_key=k.path)
    return np.random.Generator(np.random.PCG64(seq))


def normal(key: Key, shape: tuple[int, ...], dtype: DTypeLike = np.float64) -> np.ndarray:
    """Standard normal samples of ``shape`` and ``dtype`` drawn from ``key``."""
    dt: Any = float_dtype("random.normal", dtype)
    shape = check_dims("random.normal", "shape", shape)
    return generator(key).standard_normal(shape, dtype=dt)


def uniform(
    key: Key,
    shape: tuple[int, ...],
    low: float = 0.0,
    high: float = 1.0,
    dtype: DTypeLike = np.float64,
) -> np.ndarray:
    """Uniform samples on ``[low, high)`` of ``shape`` and ``dtype`` from ``key``."""
    dt: Any = float_dtype("random.uniform", dtype)
    shape = check_dims("random.uniform", "shape", shape)
    low = check_real("random.uniform", "low", low)
    high = check_real("random.uniform", "high", high, low=low, low_open=True)
    u = generator(key).random(shape, dtype=dt)
    u *= high - low
    u += low
    return u


def permutation(key: Key, n: int) -> np.ndarray:
    """A random permutation of ``range(n)`` drawn from ``key``."""
    n = check_int("random.permutation", "n", n, low=0)
    check_size("random.permutation", "the permutation", n)
    return generator(key).permutation(n)
