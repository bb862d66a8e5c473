"""Gradient checking: compare hand-written backward passes with finite differences.

Use it on your own layers too::

    report = fb.testing.check_grads(layer, x)      # raises AssertionError if wrong
    print(report)                                   # worst relative error per leaf

The scalar checked is ``phi = sum(forward(layer, x) * g_y)`` for a random
cotangent ``g_y``; its exact gradients are what ``backward(layer, x, g_y)``
returns. Each derivative is estimated by central differences
``(phi(t + eps) - phi(t - eps)) / (2 eps)``, one element at a time
(``mode="full"``), or along random directions ``v`` and compared with
``<grad, v>`` (``mode="projection"``, for large shapes). Work in float64.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import numpy as np

from . import random, tree
from .core import backward, forward

__all__ = ["GradCheck", "check_grads", "check_loss_grads"]


@attrs.frozen
class GradCheck:
    """Worst relative error per leaf (``"x"`` for the input), and the tolerance."""

    errors: dict[str, float]
    rtol: float

    @property
    def ok(self) -> bool:
        """True when every leaf is within ``rtol``."""
        return all(e <= self.rtol for e in self.errors.values())

    def __str__(self) -> str:
        width = max([4, *map(len, self.errors)])
        rows = [
            f"{path:<{width}}  {err:.2e}  {'ok' if err <= self.rtol else 'FAIL'}"
            for path, err in self.errors.items()
        ]
        return "\n".join([f"{'leaf':<{width}}  rel.err   (rtol {self.rtol:.0e})", *rows])


def _relative_error(exact: np.ndarray, numeric: np.ndarray) -> float:
    """``max|exact - numeric|`` relative to the larger of the two's max magnitude."""
    exact, numeric = np.asarray(exact, np.float64), np.asarray(numeric, np.float64)
    scale = max(np.abs(exact).max(initial=0.0), np.abs(numeric).max(initial=0.0))
    diff = np.abs(exact - numeric).max(initial=0.0)
    return 0.0 if diff == 0.0 else diff / max(scale, 1e-300)


def _numeric_grad(phi: Callable[[np.ndarray], float], t: np.ndarray, eps: float) -> np.ndarray:
    """Central differences of ``phi`` at ``t``, element by element (``t`` is not modified)."""
    grad = np.zeros(t.shape)
    flat = t.astype(np.float64).ravel()
    for i in range(flat.size):
        orig = flat[i]
        flat[i] = orig + eps
        plus = phi(flat.reshape(t.shape).astype(t.dtype))
        flat[i] = orig - eps
        minus = phi(flat.reshape(t.shape).astype(t.dtype))
        flat[i] = orig
        grad.flat[i] = (plus - minus) / (2 * eps)
    return grad


def _directional(
    phi: Callable[[np.ndarray], float], t: np.ndarray, v: np.ndarray, eps: float
) -> float:
    return (phi((t + eps * v).astype(t.dtype)) - phi((t - eps * v).astype(t.dtype))) / (2 * eps)


def _compare(
    exact: dict[str, np.ndarray],
    probes: dict[str, tuple[Callable[[np.ndarray], float], np.ndarray]],
    mode: str,
    key: random.Key,
    eps: float,
    rtol: float,
    n_directions: int,
) -> GradCheck:
    errors = {}
    for (path, (phi, t)), k in zip(probes.items(), random.split(key, len(probes)), strict=True):
        if mode == "full":
            errors[path] = _relative_error(exact[path], _numeric_grad(phi, t, eps))
        elif mode == "projection":
            vs = random.normal(k, (n_directions, *t.shape))
            numeric = [_directional(phi, t, v, eps) for v in vs]
            analytic = [float(np.vdot(exact[path], v)) for v in vs]
            errors[path] = _relative_error(np.array(analytic), np.array(numeric))
        else:
            raise ValueError(f"mode must be 'full' or 'projection', got {mode!r}")
    report = GradCheck(errors, rtol)
    if not report.ok:
        raise AssertionError(f"gradient check failed:\n{report}")
    return report


def check_grads(
    layer: Any,
    x: Any,
    *,
    key: random.Key | None = None,
    mode: str = "full",
    eps: float = 1e-6,
    rtol: float = 1e-6,
    n_directions: int = 4,
    train: bool = False,
    layer_key: random.Key | None = None,
    state: Any = None,
) -> GradCheck:
    """Check ``backward(layer, x, g_y)`` against finite differences.

    Checks the input gradient and every parameter leaf; returns a
    :class:`GradCheck` (worst relative error per leaf) and raises
    ``AssertionError`` with that table when any leaf exceeds ``rtol``.
    Use float64 parameters and inputs. An integer or boolean ``x`` (the ids
    of an Embedding) is not differentiable: only the parameters are checked.

    ``key`` drives the checker (the cotangent, the directions). ``train``,
    ``layer_key`` and ``state`` are passed to every ``forward`` and
    ``backward`` as ``train=``, ``key=`` and ``state=``: the one
    ``layer_key`` each time, so a Dropout mask stays fixed while the
    differences are taken, and BatchNorm can be checked in training mode
    (through its batch statistics) or in inference with a given state.
    """
    key = random.key(0) if key is None else key
    k_cot, k_dir = random.split(key)
    x = np.asarray(x)
    ctx = {"train": train, "key": layer_key, "state": state}

    def run(net: Any, x_: np.ndarray) -> np.ndarray:
        y = forward(net, x_, **ctx)
        return y if state is None else y[0]

    y = run(layer, x)
    g_y = random.normal(k_cot, y.shape).astype(y.dtype)
    g_x, grads = backward(layer, x, g_y, **ctx)[:2]
    flat, unravel = tree.ravel(layer)

    def phi_x(x_: np.ndarray) -> float:
        return float(np.vdot(run(layer, x_), g_y))

    exact, probes = {}, {}
    if x.dtype.kind == "f":
        exact["x"], probes["x"] = g_x, (phi_x, x)
    offset = 0
    for path, leaf in tree.leaves_with_paths(layer):
        size = np.size(leaf)
        exact[path] = leaf_grad = np.asarray(_leaf(grads, path))
        assert leaf_grad.shape == np.shape(leaf), f"grad of {path} has shape {leaf_grad.shape}"

        def phi(t: np.ndarray, start: int = offset, size: int = size) -> float:
            theta = flat.copy()
            theta[start : start + size] = t.ravel()
            return float(np.vdot(run(unravel(theta), x), g_y))

        probes[path] = (phi, np.asarray(leaf))
        offset += size
    return _compare(exact, probes, mode, k_dir, eps, rtol, n_directions)


def _leaf(grads: Any, path: str) -> Any:
    return dict(tree.leaves_with_paths(grads))[path]


def check_loss_grads(
    loss: Any,
    pred: Any,
    target: Any,
    *,
    key: random.Key | None = None,
    mode: str = "full",
    eps: float = 1e-6,
    rtol: float = 1e-6,
    n_directions: int = 4,
) -> GradCheck:
    """Check ``loss.value_and_grad(pred, target)[1]`` against finite differences of the value."""
    pred = np.asarray(pred)
    _, g_pred = loss.value_and_grad(pred, target)
    probes = {"pred": (lambda p: float(loss(p, target)), pred)}
    return _compare({"pred": g_pred}, probes, mode, key or random.key(0), eps, rtol, n_directions)
