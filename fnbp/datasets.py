"""Small toy datasets, drawn from explicit keys, and the helpers to use them.

Every generator takes a key first and the same key gives bit-identical data;
numpy's global random state is never touched. Points are computed in float64
and cast once to the requested float ``dtype`` (float64 by default), so a
float32 dataset is the float64 one rounded. Class labels are ``int64`` of
shape ``(n,)``; binary targets for the notebook's sigmoid networks are floats
of shape ``(n, 1)``. Rows come shuffled; within a dataset, changing ``noise``
only rescales the same perturbation.

>>> import fnbp as fb
>>> from fnbp.datasets import one_hot, train_test_split, two_moons
>>> k_data, k_split = fb.random.split(fb.random.key(0))
>>> x, labels = two_moons(k_data, 200, noise=0.1)
>>> x_tr, x_te, y_tr, y_te = train_test_split(k_split, x, one_hot(labels))
>>> x_tr.shape, y_te.shape
((150, 2), (50, 2))
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from . import random
from .errors import DTypeError
from .validation import (
    check_callable,
    check_finite,
    check_int,
    check_real,
    check_size,
    fail,
    float_dtype,
    numeric,
)

__all__ = [
    "and_gate",
    "xor",
    "and_float",
    "two_moons",
    "spirals",
    "blobs",
    "regression_1d",
    "train_test_split",
    "one_hot",
]

# The notebook's truth-table inputs, in its row order.
_GATE_INPUTS = ((1.0, 1.0), (1.0, 0.0), (0.0, 1.0), (0.0, 0.0))


# --------------------------------------------------------------------------- validation


def _interval(owner: str, pair: object, what: str) -> tuple[float, float]:
    """A ``(low, high)`` pair of finite floats with ``low < high``."""
    if not isinstance(pair, tuple | list) or len(pair) != 2:
        raise fail(owner, what, "a pair (low, high)", pair)
    first, second = pair
    low, high = check_real(owner, f"{what}[0]", first), check_real(owner, f"{what}[1]", second)
    if not low < high:
        raise fail(owner, what, "a pair with low < high", pair)
    return low, high


def _count(owner: str, n: object, width: int = 2) -> int:
    """A number of samples ``>= 1`` whose ``(n, width)`` points fit :data:`MAX_ELEMENTS`."""
    n = check_int(owner, "n", n, low=1)
    check_size(owner, f"{n:,} samples", n * width)
    return n


def _classes(owner: str, name: str, k: object, n: int) -> int:
    """A number of classes in ``[1, n]``: every class gets at least one point."""
    return check_int(owner, name, k, low=1, high=n)


def _floats(owner: str, name: str, value: object) -> np.ndarray:
    """``value`` (a number, a list, nested tuples) as a finite float64 array."""
    try:
        a = np.asarray(value)
    except ValueError:
        raise fail(owner, name, "a rectangular array of numbers", value) from None
    return check_finite(owner, name, numeric(a, owner, name).astype(np.float64))


# --------------------------------------------------------------------------- helpers


def _class_sizes(n: int, n_classes: int) -> np.ndarray:
    """Balanced sizes: ``n // n_classes`` each, the first ``n % n_classes`` get one more."""
    sizes = np.full(n_classes, n // n_classes, dtype=np.int64)
    sizes[: n % n_classes] += 1
    return sizes


def _grouped_labels(sizes: np.ndarray) -> np.ndarray:
    return np.repeat(np.arange(len(sizes), dtype=np.int64), sizes)


def _shuffled(
    key: random.Key, x: np.ndarray, labels: np.ndarray, dtype: np.dtype
) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``(x, labels)`` in an order drawn from ``key``; ``x`` cast to ``dtype``."""
    perm = random.permutation(key, len(labels))
    return x[perm].astype(dtype, copy=False), labels[perm]


# --------------------------------------------------------------------------- truth tables


def _gate(outputs: tuple[float, ...], dtype: DTypeLike) -> tuple[np.ndarray, np.ndarray]:
    dt = float_dtype("datasets", dtype)
    return np.array(_GATE_INPUTS, dtype=dt), np.array(outputs, dtype=dt).reshape(4, 1)


def and_gate(dtype: DTypeLike = np.float64) -> tuple[np.ndarray, np.ndarray]:
    """The notebook's AND truth table: ``x`` of shape (4, 2), ``y`` of shape (4, 1).

    Rows are ``[1, 1], [1, 0], [0, 1], [0, 0]``, targets ``1, 0, 0, 0``, both in
    ``dtype``. Each call returns fresh arrays.

    >>> from fnbp.datasets import and_gate
    >>> x, y = and_gate()
    >>> x.tolist(), y.ravel().tolist()
    ([[1.0, 1.0], [1.0, 0.0], [0.0, 1.0], [0.0, 0.0]], [1.0, 0.0, 0.0, 0.0])
    """
    return _gate((1.0, 0.0, 0.0, 0.0), dtype)


def xor(dtype: DTypeLike = np.float64) -> tuple[np.ndarray, np.ndarray]:
    """The XOR truth table: ``x`` of shape (4, 2), ``y`` of shape (4, 1), in ``dtype``.

    Same row order as :func:`and_gate`; targets ``0, 1, 1, 0``. Not linearly
    separable, so it needs a hidden layer.

    >>> from fnbp.datasets import xor
    >>> x, y = xor()
    >>> y.ravel().tolist()
    [0.0, 1.0, 1.0, 0.0]
    """
    return _gate((0.0, 1.0, 1.0, 0.0), dtype)


def and_float(
    key: random.Key, n: int, noise: float = 0.0, dtype: DTypeLike = np.float64
) -> tuple[np.ndarray, np.ndarray]:
    """AND on continuous inputs: ``x`` (n, 2) uniform in [0, 1)^2, ``y`` (n, 1).

    The target is 1.0 when *both* coordinates exceed 0.5 and 0.0 otherwise
    (so about a quarter of the points are positive). ``noise`` is the standard
    deviation of Gaussian jitter added to ``x`` *after* labelling, which blurs
    the border and can push points outside the unit square. Both arrays are in
    ``dtype``. This is the notebook's exercise "train a model that does the
    AND function on float values".

    >>> import fnbp as fb
    >>> from fnbp.datasets import and_float
    >>> x, y = and_float(fb.random.key(0), 100)
    >>> x.shape, y.shape, bool((y == ((x > 0.5).all(axis=1, keepdims=True))).all())
    ((100, 2), (100, 1), True)
    """
    n, noise, dt = (
        _count("and_float", n),
        check_real("and_float", "noise", noise, low=0.0),
        float_dtype("and_float", dtype),
    )
    k_x, k_noise = random.split(key)
    x = random.uniform(k_x, (n, 2))
    y = (x > 0.5).all(axis=1, keepdims=True).astype(dt)
    x += noise * random.normal(k_noise, (n, 2))
    return x.astype(dt, copy=False), y


# --------------------------------------------------------------------------- classification


def two_moons(
    key: random.Key, n: int, noise: float = 0.1, dtype: DTypeLike = np.float64
) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaving half-circles: ``x`` (n, 2) in ``dtype``, ``labels`` (n,) int64.

    scikit-learn's ``make_moons`` geometry: class 0 (``n // 2`` points) is the
    upper unit half-circle centred at (0, 0); class 1 (``n - n // 2`` points) is
    the lower unit half-circle centred at (1, 0.5). Points are evenly spaced
    along each arc, then Gaussian noise of standard deviation ``noise`` is
    added to both coordinates and the rows are shuffled.

    >>> import fnbp as fb
    >>> from fnbp.datasets import two_moons
    >>> x, labels = two_moons(fb.random.key(0), 101)
    >>> x.shape, x.dtype, labels.dtype, int((labels == 0).sum()), int((labels == 1).sum())
    ((101, 2), dtype('float64'), dtype('int64'), 50, 51)
    """
    n, noise, dt = (
        _count("two_moons", n),
        check_real("two_moons", "noise", noise, low=0.0),
        float_dtype("two_moons", dtype),
    )
    k_noise, k_perm = random.split(key)
    sizes = np.array([n // 2, n - n // 2])
    t_out, t_in = np.linspace(0, np.pi, sizes[0]), np.linspace(0, np.pi, sizes[1])
    outer = np.stack([np.cos(t_out), np.sin(t_out)], axis=1)
    inner = np.stack([1.0 - np.cos(t_in), 0.5 - np.sin(t_in)], axis=1)
    x = np.concatenate([outer, inner])
    x += noise * random.normal(k_noise, (n, 2))
    return _shuffled(k_perm, x, _grouped_labels(sizes), dt)


def spirals(
    key: random.Key,
    n: int,
    n_classes: int = 2,
    noise: float = 0.2,
    turns: float = 1.0,
    dtype: DTypeLike = np.float64,
) -> tuple[np.ndarray, np.ndarray]:
    """Interleaved spiral arms: ``x`` (n, 2) in ``dtype``, ``labels`` (n,) int64.

    A point of class ``c`` has radius ``r`` uniform in [0, 1) and angle
    ``2 pi (turns * r + c / n_classes)`` plus Gaussian noise of standard
    deviation ``noise`` *radians*; so each arm winds ``turns`` times around the
    origin and the arms are ``2 pi / n_classes`` apart. Classes are balanced
    (sizes differ by at most one, earlier classes get the extra points) and the
    rows are shuffled.

    >>> import fnbp as fb
    >>> from fnbp.datasets import spirals
    >>> x, labels = spirals(fb.random.key(0), 300, n_classes=3)
    >>> x.shape, labels.dtype, sorted(set(labels.tolist()))
    ((300, 2), dtype('int64'), [0, 1, 2])
    """
    n, n_classes = (
        _count("spirals", n),
        _classes("spirals", "n_classes", n_classes, n),
    )
    noise, dt = check_real("spirals", "noise", noise, low=0.0), float_dtype("spirals", dtype)
    turns = check_real("spirals", "turns", turns)
    if turns <= 0:
        raise ValueError(f"turns must be > 0, got {turns}")
    k_r, k_noise, k_perm = random.split(key, 3)
    labels = _grouped_labels(_class_sizes(n, n_classes))
    r = random.uniform(k_r, (n,))
    theta = 2 * np.pi * (turns * r + labels / n_classes)
    theta += noise * random.normal(k_noise, (n,))
    x = r[:, None] * np.stack([np.cos(theta), np.sin(theta)], axis=1)
    return _shuffled(k_perm, x, labels, dt)


def _centers(
    key: random.Key,
    centers: int | ArrayLike,
    n_features: int | None,
    box: tuple[float, float],
    n: int,
) -> np.ndarray:
    """The (k, d) centre array: given, or ``k`` drawn uniformly in ``box``^d."""
    if isinstance(centers, numbers.Integral) and not isinstance(centers, (bool, np.bool_)):
        d = 2 if n_features is None else check_int("blobs", "n_features", n_features, low=1)
        low, high = _interval("blobs", box, "box")
        return random.uniform(key, (_classes("blobs", "centers", centers, n), d), low, high)
    c = _floats("blobs", "centers", centers)
    if c.ndim != 2 or c.size == 0:
        raise ValueError(
            f"centers must be a count or a non-empty (k, d) array, got shape {c.shape}"
        )
    if n_features is not None and check_int("blobs", "n_features", n_features, low=1) != c.shape[1]:
        raise ValueError(f"n_features={n_features} but centers has shape {c.shape}")
    _classes("blobs", "the number of centres", len(c), n)
    return c


def _stds(std: float | ArrayLike, k: int) -> np.ndarray:
    """One standard deviation per centre, all finite and >= 0."""
    if np.ndim(std) == 0:
        return np.full(k, check_real("blobs", "std", std, low=0.0))
    s = _floats("blobs", "std", std)
    if s.shape != (k,):
        raise ValueError(f"std must be a number or one per centre, shape ({k},); got {s.shape}")
    if not (s >= 0).all():
        raise ValueError(f"std must be finite and >= 0, got {s}")
    return s


def blobs(
    key: random.Key,
    n: int,
    centers: int | ArrayLike = 3,
    std: float | ArrayLike = 1.0,
    n_features: int | None = None,
    box: tuple[float, float] = (-10.0, 10.0),
    dtype: DTypeLike = np.float64,
) -> tuple[np.ndarray, np.ndarray]:
    """Isotropic Gaussian blobs: ``x`` (n, d) in ``dtype``, ``labels`` (n,) int64.

    ``centers`` is either a count ``k`` (the centres are then drawn from
    ``key`` uniformly in ``box`` along each of ``n_features`` axes, default 2)
    or a ``(k, d)`` array of centres (``n_features``, if given, must equal
    ``d``). Class ``c`` is ``centers[c]`` plus Gaussian noise of standard
    deviation ``std`` (a number, or one per centre). Classes are balanced
    (sizes differ by at most one) and the rows are shuffled.

    >>> import fnbp as fb
    >>> from fnbp.datasets import blobs
    >>> x, labels = blobs(fb.random.key(0), 90, centers=[[0, 0], [5, 5]], std=0.5)
    >>> x.shape, [int((labels == c).sum()) for c in (0, 1)]
    ((90, 2), [45, 45])
    """
    n, dt = _count("blobs", n), float_dtype("blobs", dtype)
    k_centers, k_noise, k_perm = random.split(key, 3)
    c = _centers(k_centers, centers, n_features, box, n)
    s = _stds(std, len(c))
    labels = _grouped_labels(_class_sizes(n, len(c)))
    x = c[labels] + s[labels, None] * random.normal(k_noise, (n, c.shape[1]))
    return _shuffled(k_perm, x, labels, dt)


# --------------------------------------------------------------------------- regression


def regression_1d(
    key: random.Key,
    n: int,
    noise: float = 0.1,
    x_range: tuple[float, float] = (-3.0, 3.0),
    fn: Callable[[np.ndarray], ArrayLike] = np.sin,
    dtype: DTypeLike = np.float64,
) -> tuple[np.ndarray, np.ndarray]:
    """Noisy samples of a curve: ``x`` (n, 1) uniform in ``x_range``, ``y`` (n, 1).

    ``y = fn(x) + noise * N(0, 1)``, with ``fn`` applied elementwise to the
    ``(n, 1)`` array ``x`` already cast to ``dtype`` (so with ``noise=0``,
    ``y == fn(x)`` exactly); both arrays are in ``dtype``. ``x`` is not sorted:
    sort it yourself for a line plot.

    >>> import fnbp as fb, numpy as np
    >>> from fnbp.datasets import regression_1d
    >>> x, y = regression_1d(fb.random.key(0), 50, noise=0.0)
    >>> x.shape, y.shape, bool((y == np.sin(x)).all())
    ((50, 1), (50, 1), True)
    """
    n, noise, dt = (
        _count("regression_1d", n),
        check_real("regression_1d", "noise", noise, low=0.0),
        float_dtype("regression_1d", dtype),
    )
    low, high = _interval("regression_1d", x_range, "x_range")
    check_callable("regression_1d", "fn", fn, "a function of x", n_args=1)
    k_x, k_noise = random.split(key)
    x = random.uniform(k_x, (n, 1), low, high).astype(dt, copy=False)
    f = np.asarray(fn(x))
    if f.shape != (n, 1):
        raise ValueError(f"fn must map x of shape {(n, 1)} to the same shape, got {f.shape}")
    eps = (noise * random.normal(k_noise, (n, 1))).astype(dt, copy=False)
    return x, f.astype(dt) + eps


# --------------------------------------------------------------------------- utilities


def _split_sizes(n: int, test_fraction: float) -> tuple[int, int]:
    """``(n_train, n_test)``; ``n_test = ceil(test_fraction * n)`` as scikit-learn."""
    n_test = math.ceil(round(test_fraction * n, 6))
    if n_test >= n:
        raise ValueError(
            f"test_fraction={test_fraction} of {n} rows leaves no training rows "
            f"(test would get {n_test})"
        )
    return n - n_test, n_test


def train_test_split(
    key: random.Key, *arrays: ArrayLike, test_fraction: float = 0.25
) -> tuple[np.ndarray, ...]:
    """Shuffle rows with a permutation from ``key`` and split them into train and test.

    All ``arrays`` must have the same first dimension ``n``; the same rows go to
    the same side in each, so pairs stay paired. The test part has
    ``ceil(test_fraction * n)`` rows, the train part the rest. Returns, in
    scikit-learn's order, each array's train part followed by its test part;
    every output is a new array (never a view of an input), dtypes kept.

    >>> import fnbp as fb, numpy as np
    >>> from fnbp.datasets import train_test_split
    >>> x, y = np.arange(20.0).reshape(10, 2), np.arange(10)
    >>> x_tr, x_te, y_tr, y_te = train_test_split(fb.random.key(0), x, y, test_fraction=0.3)
    >>> x_tr.shape, x_te.shape, bool((x_te[:, 0] == 2 * y_te).all())
    ((7, 2), (3, 2), True)
    """
    if not arrays:
        raise TypeError("train_test_split needs at least one array")
    test_fraction = check_real("train_test_split", "test_fraction", test_fraction)
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction}")
    arrs = [np.asarray(a) for a in arrays]
    if any(a.ndim == 0 for a in arrs):
        raise ValueError("train_test_split needs arrays with at least one dimension, got a scalar")
    lengths = [len(a) for a in arrs]
    if len(set(lengths)) > 1:
        raise ValueError(f"all arrays must have the same first dimension, got lengths {lengths}")
    n_train, _ = _split_sizes(lengths[0], test_fraction)
    perm = random.permutation(key, lengths[0])
    train, test = perm[:n_train], perm[n_train:]
    return tuple(part for a in arrs for part in (a[train], a[test]))


def one_hot(
    labels: ArrayLike, n_classes: int | None = None, dtype: DTypeLike = np.float64
) -> np.ndarray:
    """Integer labels of shape ``(n,)`` to a one-hot array ``(n, n_classes)`` in ``dtype``.

    ``labels`` must have an integer dtype and lie in ``[0, n_classes)``;
    ``n_classes`` defaults to ``max(labels) + 1``. Any label shape works: a
    last axis of length ``n_classes`` is appended. ``argmax(axis=-1)`` inverts it.

    >>> from fnbp.datasets import one_hot
    >>> one_hot([0, 2, 1]).tolist()
    [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]]
    """
    lab, dt = np.asarray(labels), float_dtype("one_hot", dtype)
    if lab.dtype.kind not in "iu":
        raise DTypeError(
            f"one_hot needs integer labels, got dtype {lab.dtype}; "
            "convert whole-number labels with labels.astype(np.int64)"
        )
    if n_classes is None:
        if lab.size == 0:
            raise ValueError("cannot infer n_classes from empty labels; pass n_classes")
        k = max(int(lab.max()) + 1, 1)
    else:
        k = check_int("one_hot", "n_classes", n_classes, low=1)
    bad = lab[(lab < 0) | (lab >= k)]
    if bad.size:
        raise ValueError(
            f"label {bad.flat[0]} is out of range for n_classes={k}: labels must lie in [0, {k})"
        )
    check_size("one_hot", f"a one-hot array of {lab.size} labels x {k} classes", lab.size * k)
    out = np.zeros((*lab.shape, k), dt)
    np.put_along_axis(out, lab[..., None].astype(np.intp), 1.0, axis=-1)
    return out
