"""Losses: a value and its gradient with respect to the prediction.

Every loss is mean-reduced, and its gradient already carries the ``1/N``.
Binary cross-entropy and mean squared error average over all elements;
softmax cross-entropy sums over the class axis and averages over the rest
(the positions that are not ignored). The target is cast to the prediction's
dtype; a boolean or integer target (the notebook's truth table) is fine.

Predictions are float32 or float64 (booleans and integers are taken as
float64); an empty batch, or a prediction or target outside the loss's
domain, is a ``ValueError`` that says what to use instead. A target with a
NaN or inf is refused (a ``ValueError`` saying where); a NaN or inf in the
*prediction* goes through into the value, so that ``fit`` sees the run
diverge (probability-space cross-entropy clips an infinite logit's
probability to ``[eps, 1 - eps]``, as it clips every probability).

>>> import numpy as np, fnbp as fb
>>> value, g = fb.mse.value_and_grad(np.array([[1.0], [3.0]]), np.array([[0.0], [1.0]]))
>>> float(value), g.ravel().tolist()
(2.5, [1.0, 2.0])
"""

from __future__ import annotations

import math
from typing import Any

import attrs
import numpy as np

from . import validation
from ._numeric import exp_cut, row_sums, shifted, sigmoid, sigmoid_grad, softplus
from .errors import DTypeError, ShapeError
from .record import static

__all__ = [
    "Loss",
    "BinaryCrossEntropy",
    "BinaryCrossEntropyOfSigmoid",
    "SigmoidBinaryCrossEntropy",
    "SoftmaxCrossEntropy",
    "MeanSquaredError",
    "binary_cross_entropy",
    "binary_cross_entropy_of_sigmoid",
    "sigmoid_binary_cross_entropy",
    "softmax_cross_entropy",
    "mse",
]

_EPS = {dtype: float(np.finfo(dtype).eps) for dtype in validation.FLOATS}


class Loss:
    """A loss: ``loss(pred, target)`` is its value; ``value_and_grad`` adds ``dL/dpred``."""

    __slots__ = ()
    name = "loss"

    def __call__(self, pred: object, target: object) -> np.floating:
        return self.value_and_grad(pred, target)[0]

    def value_and_grad(self, pred: object, target: object) -> tuple[np.floating, np.ndarray]:
        """``(value, g_pred)``: the mean loss and its gradient, shaped like ``pred``."""
        raise NotImplementedError

    def _prediction(self, pred: object) -> np.ndarray:
        p = validation.floating(pred, self.name, "prediction")
        if p.size == 0 or p.ndim == 0:
            raise ValueError(
                f"{self.name}: the prediction must be a non-empty batch, got shape {p.shape} "
                "(a mean over no samples is undefined)"
            )
        return p

    def _same_shape(self, pred: object, target: object) -> tuple[np.ndarray, np.ndarray]:
        p = self._prediction(pred)
        y = validation.numeric(target, self.name, "target")
        if y.shape != p.shape:
            raise ShapeError(
                f"{self.name}: prediction shape {p.shape} differs from target shape {y.shape}"
            )
        return p, y.astype(p.dtype, copy=False)

    def _result(self, value: np.floating, g: np.ndarray, y: np.ndarray) -> tuple:
        """``(value, g)``; a value that is not finite because the *target* is not is a
        ValueError saying where (checked only then: the happy path pays nothing)."""
        if not math.isfinite(value):
            validation.check_finite(self.name, "the target", y)
        return value, g

    def _unit_targets(self, y: np.ndarray) -> None:
        """A ValueError unless the targets are in [0, 1] (NaN and inf included)."""
        if y.size and not (_lowest(y) >= 0.0 and _highest(y) <= 1.0):
            validation.check_finite(self.name, "the target", y)
            self._unit_interval(y, "targets", "")

    def _unit_interval(self, a: np.ndarray, what: str, instead: str) -> None:
        """A ValueError unless ``a`` is in [0, 1] (a NaN is let through: it propagates)."""
        if a.size and (_lowest(a) < 0.0 or _highest(a) > 1.0):
            raise ValueError(
                f"{self.name}: {what} must be in [0, 1], got values from {a.min():g} to "
                f"{a.max():g}{instead}"
            )


@attrs.frozen
class BinaryCrossEntropy(Loss):
    """The notebook's loss on probabilities ``p`` in [0, 1]::

        L = mean(-y log p - (1 - y) log(1 - p))
        dL/dp = (p - y) / (p (1 - p)) / n

    ``p`` is clipped to ``[eps, 1 - eps]`` with the machine epsilon of its own
    dtype, so probabilities of exactly 0 or 1 give a finite loss. Predictions
    outside [0, 1] (logits, say) are refused: use
    :class:`SigmoidBinaryCrossEntropy` on logits, which is exact everywhere.
    """

    name = "binary_cross_entropy"

    def value_and_grad(self, pred: object, target: object) -> tuple[np.floating, np.ndarray]:
        """``(L, dL/dpred)`` as written in the class docstring."""
        p, y = self._same_shape(pred, target)
        self._unit_interval(p, "probabilities", " (logits? use fb.sigmoid_binary_cross_entropy)")
        self._unit_targets(y)
        return _bce(p, y)


def _bce(p: np.ndarray, y: np.ndarray) -> tuple[np.floating, np.ndarray]:
    """Probability-space cross-entropy, ``p`` clipped to ``[eps, 1 - eps]``."""
    eps = _EPS[p.dtype]
    p = np.clip(p, eps, 1.0 - eps)
    q = np.subtract(1.0, p, dtype=p.dtype)
    n = p.size
    log_likelihood = np.vdot(y, np.log(p)) + np.vdot(np.subtract(1.0, y), np.log(q))
    g = np.subtract(p, y)
    q *= p
    q *= n
    g /= q
    return p.dtype.type(-log_likelihood / n), g


@attrs.frozen
class BinaryCrossEntropyOfSigmoid(Loss):
    """:class:`BinaryCrossEntropy` of ``sigmoid(z)``, as a loss on ``z``::

        p = sigmoid(z)      L = mean(-y log p - (1 - y) log(1 - p))      dL/dz = (p - y) / n

    The chain rule through the Sigmoid collapses: ``dL/dp * p (1 - p) = (p - y) / n``.
    ``fb.value_and_grad`` uses it for a network that ends in a ``Sigmoid``
    trained with ``binary_cross_entropy``, skipping the Sigmoid's backward pass.
    Where ``p`` or ``1 - p`` falls below the machine epsilon the two-step result
    (clipped ``p``, saturated gradient) is returned exactly; elsewhere the two
    agree up to rounding. :class:`SigmoidBinaryCrossEntropy` avoids the clipping.
    """

    name = "binary_cross_entropy"

    def value_and_grad(self, pred: object, target: object) -> tuple[np.floating, np.ndarray]:
        """``(L, dL/dz)`` as written in the class docstring."""
        z, y = self._same_shape(pred, target)
        self._unit_targets(y)
        p = sigmoid(z)
        q = np.subtract(1.0, p, dtype=p.dtype)
        eps = _EPS[z.dtype]
        if np.minimum.reduce(p, axis=None) < eps or np.minimum.reduce(q, axis=None) < eps:
            value, g_p = _bce(p, y)
            return value, sigmoid_grad(p, g_p)
        n = z.size
        log_likelihood = np.vdot(y, np.log(p)) + np.vdot(np.subtract(1.0, y), np.log(q))
        g = np.subtract(p, y)
        g *= 1.0 / n
        return z.dtype.type(-log_likelihood / n), g


@attrs.frozen
class SigmoidBinaryCrossEntropy(Loss):
    """Binary cross-entropy on logits ``z`` (the sigmoid is folded in)::

        L = mean(softplus(z) - y z)        dL/dz = (sigmoid(z) - y) / n

    with ``softplus(z) = max(z, 0) + log1p(exp(-|z|))``: exact for any ``z``.
    Targets are in [0, 1].
    """

    name = "sigmoid_binary_cross_entropy"

    def value_and_grad(self, pred: object, target: object) -> tuple[np.floating, np.ndarray]:
        """``(L, dL/dpred)`` as written in the class docstring."""
        z, y = self._same_shape(pred, target)
        self._unit_targets(y)
        value = np.add.reduce(softplus(z) - y * z, axis=None) / z.size
        g = sigmoid(z)
        g -= y
        g *= 1.0 / z.size
        return z.dtype.type(value), g


def _ignore(value: Any) -> int | None:
    return (
        None
        if value is None
        else validation.check_int("SoftmaxCrossEntropy", "ignore_label", value)
    )


@attrs.frozen
class SoftmaxCrossEntropy(Loss):
    """Cross-entropy of ``softmax(z)`` along the last axis, on logits ``z``::

        L = mean_n( logsumexp(z_n) - sum_c y_nc z_nc )
        dL/dz_n = (softmax(z_n) * sum_c y_nc - y_n) / N

    ``z`` has shape ``(N, C)`` or ``(N, ..., C)`` (per time step, say) with
    ``C >= 2``. ``target`` is either integer class labels of shape
    ``z.shape[:-1]`` (each in ``[0, C)``) or per-class probabilities (one-hot)
    of ``z``'s shape. With ``ignore_label`` set (``SoftmaxCrossEntropy(ignore_label=-1)``),
    positions whose label equals it -- padding -- contribute neither to the
    value nor to the gradient, and ``N`` counts the other positions only.
    """

    ignore_label: int | None = static(default=None, converter=_ignore)
    name = "softmax_cross_entropy"

    def value_and_grad(self, pred: object, target: object) -> tuple[np.floating, np.ndarray]:
        """``(L, dL/dpred)`` as written in the class docstring."""
        z = self._prediction(pred)
        if z.ndim < 2 or z.shape[-1] < 2:
            raise ValueError(
                f"{self.name}: logits need a class axis of at least 2 classes, got shape "
                f"{z.shape} (for one output per sample use fb.sigmoid_binary_cross_entropy)"
            )
        target = validation.numeric(target, self.name, "target")
        s = shifted(z)
        e = exp_cut(s)
        total = row_sums(e)
        if target.shape == z.shape[:-1]:
            return self._from_labels(z, s, e, total, target)
        y = self._same_shape(z, target)[1]
        if y.size and not (_lowest(y) >= 0.0 and _highest(y) < math.inf):
            validation.check_finite(self.name, "the target", y)
            raise ValueError(f"{self.name}: target probabilities must be >= 0, got {y.min():g}")
        n = z.size // z.shape[-1]
        mass = y.sum(axis=-1, keepdims=True)
        value = (np.vdot(np.log(total), mass) - np.vdot(y, s)) / n
        e *= mass / total
        e -= y
        e *= 1.0 / n
        return self._result(z.dtype.type(value), e, y)

    def _from_labels(
        self, z: np.ndarray, s: np.ndarray, e: np.ndarray, total: np.ndarray, labels: np.ndarray
    ) -> tuple[np.floating, np.ndarray]:
        c = z.shape[-1]
        flat = self._labels(labels, c).ravel()
        rows = np.arange(flat.size)
        e /= total
        if self.ignore_label is None:
            n = flat.size
            picked = s.reshape(-1, c)[rows, flat]
            value = (np.add.reduce(np.log(total), axis=None) - np.add.reduce(picked)) / n
            e.reshape(-1, c)[rows, flat] -= 1.0
            e *= 1.0 / n
            return z.dtype.type(value), e
        keep = flat != self.ignore_label
        n = int(keep.sum())
        if n == 0:
            raise ValueError(f"{self.name}: every position is ignored; there is nothing to average")
        rows, kept = rows[keep], flat[keep]
        value = (np.log(total).ravel()[keep].sum() - s.reshape(-1, c)[rows, kept].sum()) / n
        g = e.reshape(-1, c)
        g[rows, kept] -= 1.0
        g[~keep] = 0.0
        e *= 1.0 / n
        return z.dtype.type(value), e

    def _labels(self, target: np.ndarray, n_classes: int) -> np.ndarray:
        if target.dtype.kind not in "iu":
            raise DTypeError(
                f"{self.name}: labels of shape {target.shape} must be integers, got dtype "
                f"{target.dtype} (one-hot targets must have the logits' shape)"
            )
        if self.ignore_label is None and target.size:  # two reductions, no masks
            if _lowest(target) >= 0 and _highest(target) < n_classes:
                return target
        valid = (target >= 0) & (target < n_classes)
        if self.ignore_label is not None:
            valid |= target == self.ignore_label
        if not valid.all():
            bad = target[~valid].ravel()[0]
            raise ValueError(
                f"{self.name}: label {bad} is out of range for {n_classes} classes "
                f"(expected 0 <= label < {n_classes})"
            )
        return target


@attrs.frozen
class MeanSquaredError(Loss):
    """``L = mean((p - y)**2)`` over all elements; ``dL/dp = 2 (p - y) / n``."""

    name = "mse"

    def value_and_grad(self, pred: object, target: object) -> tuple[np.floating, np.ndarray]:
        """``(L, dL/dpred)`` as written in the class docstring."""
        p, y = self._same_shape(pred, target)
        g = np.subtract(p, y)
        value = np.vdot(g, g) / g.size
        g *= 2.0 / g.size
        return self._result(p.dtype.type(value), g, y)


binary_cross_entropy = BinaryCrossEntropy()
binary_cross_entropy_of_sigmoid = BinaryCrossEntropyOfSigmoid()
sigmoid_binary_cross_entropy = SigmoidBinaryCrossEntropy()
softmax_cross_entropy = SoftmaxCrossEntropy()
mse = MeanSquaredError()


def _lowest(a: np.ndarray) -> Any:
    """``a.min()`` as one ufunc call (NaN if ``a`` holds one); ``a`` is not empty."""
    return np.minimum.reduce(a, axis=None)


def _highest(a: np.ndarray) -> Any:
    """``a.max()`` as one ufunc call (NaN if ``a`` holds one); ``a`` is not empty."""
    return np.maximum.reduce(a, axis=None)
