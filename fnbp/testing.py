"""Gradient checking: compare hand-written backward passes with finite differences.

Use it on your own layers too::

    report = fb.testing.check_grads(layer, x)   # raises GradientCheckError if wrong
    print(report)                                # worst relative error per leaf

The scalar checked is ``phi = sum over output leaves of <y, g_y>`` for a random
cotangent ``g_y``; its exact gradients are what ``backward(layer, x, g_y)``
returns, for every floating-point leaf of the input ``x`` (a tree: ``(h, x_t)``
or a dict work as well as an array) and every parameter leaf. Each derivative
is estimated by central differences ``(phi(t + eps) - phi(t - eps)) / (2 eps)``,
one element at a time (``mode="full"``), or along random directions ``v`` and
compared with ``<grad, v>`` (``mode="projection"``, for large shapes).

The check runs in float64 by default, on float64 copies of the params, the
input and the state: in float32 the differences' rounding error (~1e-7 / eps)
swamps the comparison, and correct code would fail. On failure the report
shows, for the worst element of each bad leaf, the analytic and the numeric
value and their ratio: -1 is a wrong sign, N or 1/N a missing or extra 1/N.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import numpy as np

from . import random, tree, validation
from .core import Context, as_input, check_cotangent, checked_pullback, vjp_ctx
from .errors import StructureError

__all__ = ["GradCheck", "GradientCheckError", "check_grads", "check_loss_grads"]


class GradientCheckError(AssertionError):
    """A gradient disagrees with its finite-difference estimate; ``report`` says where."""

    def __init__(self, report: GradCheck) -> None:
        super().__init__(f"gradient check failed:\n{report}")
        self.report = report


@attrs.frozen
class GradCheck:
    """Worst relative error per leaf (``"x"`` for the input), the tolerance, and for
    each leaf the worst element: ``(index, analytic, numeric)``."""

    errors: dict[str, float]
    rtol: float
    worst: dict[str, tuple[Any, float, float]] = attrs.field(factory=dict)

    @property
    def ok(self) -> bool:
        """True when every leaf is within ``rtol``."""
        return all(e <= self.rtol for e in self.errors.values())

    def __str__(self) -> str:
        width = max([4, *map(len, self.errors)])
        rows = [f"{'leaf':<{width}}  rel.err   (rtol {self.rtol:.0e})"]
        for path, err in self.errors.items():
            line = f"{path:<{width}}  {err:.2e}  {'ok' if err <= self.rtol else 'FAIL'}"
            if err > self.rtol and path in self.worst:
                index, exact, numeric = self.worst[path]
                ratio = exact / numeric if numeric else float("inf")
                line += (
                    f"   worst at {index}: analytic {exact:.6g}, numeric {numeric:.6g}, "
                    f"ratio {ratio:.4g}{_hint(ratio)}"
                )
            rows.append(line)
        return "\n".join(rows)


def _hint(ratio: float) -> str:
    if abs(ratio + 1.0) < 1e-3:
        return " (a wrong sign?)"
    if abs(ratio) < 1e-12:
        return " (a gradient that is missing?)"
    return ""


def _relative_error(exact: np.ndarray, numeric: np.ndarray) -> tuple[float, Any]:
    """``max|exact - numeric|`` relative to the larger of the two's max magnitude, and where."""
    exact, numeric = np.asarray(exact, np.float64), np.asarray(numeric, np.float64)
    scale = max(np.abs(exact).max(initial=0.0), np.abs(numeric).max(initial=0.0))
    diff = np.abs(exact - numeric)
    if not diff.size or diff.max() == 0.0:
        return 0.0, None
    index = np.unravel_index(int(diff.argmax()), diff.shape)
    return float(diff.max() / max(scale, 1e-300)), tuple(int(i) for i in index)


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


def _compare(
    exact: dict[str, np.ndarray],
    probes: dict[str, tuple[Callable[..., float], np.ndarray]],
    mode: str,
    key: random.Key,
    eps: float,
    rtol: float,
    n_directions: int,
) -> GradCheck:
    errors, worst = {}, {}
    for (path, (phi, t)), k in zip(probes.items(), random.split(key, len(probes)), strict=True):
        if mode == "full":
            analytic, numeric = np.asarray(exact[path], np.float64), _numeric_grad(phi, t, eps)
        else:
            vs = random.normal(k, (n_directions, *t.shape))
            numeric = np.array([(phi(t + eps * v) - phi(t - eps * v)) / (2 * eps) for v in vs])
            analytic = np.array([float(np.vdot(exact[path], v)) for v in vs])
        errors[path], index = _relative_error(analytic, numeric)
        if index is not None:
            worst[path] = (index, float(analytic[index]), float(numeric[index]))
    report = GradCheck(errors, rtol, worst)
    if not report.ok:
        raise GradientCheckError(report)
    return report


def _cast(t: Any, dtype: np.dtype | None) -> Any:
    if dtype is None:
        return t
    return tree.map(lambda a: a.astype(dtype) if np.asarray(a).dtype.kind == "f" else a, t)


def _float_leaves(t: Any) -> list[tuple[str, np.ndarray]]:
    return [(p, a) for p, a in tree.leaves_with_paths(t) if np.asarray(a).dtype.kind == "f"]


def _check_options(mode: str, eps: float, rtol: float, n_directions: int) -> None:
    validation.check_choice("check_grads", "mode", mode, ("full", "projection"))
    validation.check_real("check_grads", "eps", eps, low=0.0, low_open=True)
    validation.check_real("check_grads", "rtol", rtol, low=0.0)
    validation.check_int("check_grads", "n_directions", n_directions, low=1)


def check_grads(
    layer: Any,
    x: Any,
    *,
    key: random.Key | None = None,
    mode: str = "full",
    eps: float = 1e-6,
    rtol: float = 1e-6,
    n_directions: int = 4,
    dtype: Any = np.float64,
    train: bool = False,
    layer_key: random.Key | None = None,
    state: Any = None,
) -> GradCheck:
    """Check ``backward(layer, x, g_y)`` against finite differences.

    Checks every floating-point leaf of the input ``x`` (an array or a tree)
    and every parameter leaf; returns a :class:`GradCheck` (worst relative
    error per leaf) and raises :class:`GradientCheckError` (an AssertionError)
    with that table when any leaf exceeds ``rtol``. Integer and boolean leaves
    of ``x`` (ids, masks) are not differentiable and are not checked.

    The check runs on copies of the params, ``x`` and ``state`` cast to
    ``dtype`` (float64; ``dtype=None`` keeps yours -- then expect to need
    ``eps=1e-3, rtol=1e-2`` in float32). ``key`` drives the checker (the
    cotangent, the directions). ``train``, ``layer_key`` and ``state`` are
    passed to every evaluation: the one ``layer_key`` each time, so a Dropout
    mask stays fixed while the differences are taken, and BatchNorm can be
    checked in training mode (through its batch statistics) or in inference
    with a given state.
    """
    _check_options(mode, eps, rtol, n_directions)
    dtype = None if dtype is None else validation.float_dtype("check_grads", dtype)
    key = random.key(0) if key is None else key
    k_cot, k_dir = random.split(key)
    layer, x, state = (
        _cast(layer, dtype),
        _cast(as_input(x, "check_grads"), dtype),
        _cast(state, dtype),
    )
    ctx = Context(train, layer_key, state)

    def output(net: Any, x_: Any) -> Any:
        return vjp_ctx(net, x_, False, ctx)[0]

    y, pullback, _ = vjp_ctx(layer, x, True, ctx)
    g_y = _cotangent(y, k_cot)
    g_x, grads = checked_pullback(pullback, layer, x, True, "check_grads")(
        check_cotangent(g_y, y, "check_grads")
    )

    def phi_of(y_: Any) -> float:
        return float(
            sum(np.vdot(a, g) for a, g in zip(tree.leaves(y_), tree.leaves(g_y), strict=True))
        )

    exact: dict[str, np.ndarray] = {}
    probes: dict[str, tuple[Callable[..., float], np.ndarray]] = {}
    x_leaves, x_paths = tree.leaves(x), [p for p, _ in tree.leaves_with_paths(x)]
    g_x_by_path = dict(tree.leaves_with_paths(g_x)) if g_x is not None else {}
    for j, (p, leaf) in enumerate(zip(x_paths, x_leaves, strict=True)):
        if np.asarray(leaf).dtype.kind != "f":
            continue
        name = "x" if not p else ("x" + p if p.startswith("[") else f"x.{p}")
        exact[name] = _lookup(g_x_by_path, p, name, "g_x")

        def phi_x(t: np.ndarray, j: int = j) -> float:
            new = list(x_leaves)
            new[j] = t
            return phi_of(output(layer, tree.unflatten(x, new)))

        probes[name] = (phi_x, np.asarray(leaf))
    p_leaves = tree.leaves(layer)
    g_by_path = dict(tree.leaves_with_paths(grads))
    for j, (p, leaf) in enumerate(tree.leaves_with_paths(layer)):
        exact[p] = _lookup(g_by_path, p, p, "grads")
        if np.shape(exact[p]) != np.shape(leaf):
            raise StructureError(
                f"check_grads: grads {p} has shape {np.shape(exact[p])}, "
                f"the parameter has {np.shape(leaf)}"
            )

        def phi_p(t: np.ndarray, j: int = j) -> float:
            new = list(p_leaves)
            new[j] = t
            return phi_of(output(tree.unflatten(layer, new), x))

        probes[p] = (phi_p, np.asarray(leaf))
    return _compare(exact, probes, mode, k_dir, eps, rtol, n_directions)


def _cotangent(y: Any, key: random.Key) -> Any:
    leaves = tree.leaves(y)
    keys = random.split(key, len(leaves))
    cot = [
        random.normal(k, np.shape(a)).astype(a.dtype if a.dtype.kind == "f" else np.float64)
        for k, a in zip(keys, leaves, strict=True)
    ]
    return tree.unflatten(y, cot)


def _lookup(by_path: dict[str, Any], path: str, name: str, what: str) -> np.ndarray:
    if path not in by_path:
        raise StructureError(
            f"check_grads: {what} has no gradient for {name} (it has {sorted(by_path) or 'none'})"
        )
    return np.asarray(by_path[path])


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
    _check_options(mode, eps, rtol, n_directions)
    pred = validation.floating(pred, "check_loss_grads", "pred")
    _, g_pred = loss.value_and_grad(pred, target)
    probes = {"pred": (lambda p: float(loss(p, target)), pred)}
    return _compare({"pred": g_pred}, probes, mode, key or random.key(0), eps, rtol, n_directions)
