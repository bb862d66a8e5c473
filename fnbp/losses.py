"""Losses: a value and its gradient with respect to the prediction.

Every loss is mean-reduced, and its gradient already carries the ``1/N``.
Binary cross-entropy and mean squared error average over all elements;
softmax cross-entropy sums over the class axis and averages over the rest.
The target is cast to the prediction's dtype; a boolean or integer target
(the notebook's truth table) is fine.

>>> import numpy as np, fnbp as fb
>>> value, g = fb.mse.value_and_grad(np.array([[1.0], [3.0]]), np.array([[0.0], [1.0]]))
>>> float(value), g.ravel().tolist()
(2.5, [1.0, 2.0])
"""

from __future__ import annotations

import attrs
import numpy as np

from ._numeric import exp_cut, row_sums, softplus
from .errors import DTypeError, ShapeError
from .layers.activations import Sigmoid

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


def _prediction(pred: object) -> np.ndarray:
    pred = np.asarray(pred)
    if pred.dtype.kind != "f":
        if pred.dtype.kind not in "biu":
            raise DTypeError(f"prediction must be a real numeric array, got dtype {pred.dtype}")
        pred = pred.astype(np.float64)
    return pred


_EPS: dict[np.dtype, float] = {}


def _eps(dtype: np.dtype) -> float:
    """Machine epsilon of a float dtype as a Python float (cached: finfo is slow)."""
    eps = _EPS.get(dtype)
    if eps is None:
        eps = _EPS[dtype] = float(np.finfo(dtype).eps)
    return eps


def _mean(a: np.ndarray) -> np.floating:
    """Mean of all elements in ``a``'s dtype, without ``ndarray.mean``'s overhead."""
    return np.add.reduce(a, axis=None) / a.size


class Loss:
    """A loss: ``loss(pred, target)`` is its value; ``value_and_grad`` adds ``dL/dpred``."""

    __slots__ = ()
    name = "loss"

    def __call__(self, pred: object, target: object) -> np.floating:
        return self.value_and_grad(pred, target)[0]

    def value_and_grad(self, pred: object, target: object) -> tuple[np.floating, np.ndarray]:
        """``(value, g_pred)``: the mean loss and its gradient, shaped like ``pred``."""
        raise NotImplementedError

    def absorbs(self, layer: object) -> Loss | None:
        """A loss on the *input* ``z`` of ``layer`` equal to this loss on ``layer(z)``,
        when this loss knows a shorter way to its gradient; otherwise ``None``.

        :func:`fnbp.value_and_grad` asks it about a network's output layer and,
        given one, skips that layer's forward and backward pass (see
        :meth:`BinaryCrossEntropy.absorbs`).
        """
        return None

    def _same_shape(self, pred: object, target: object) -> tuple[np.ndarray, np.ndarray]:
        pred = _prediction(pred)
        target = np.asarray(target)
        if target.shape != pred.shape:
            raise ShapeError(
                f"{self.name}: prediction shape {pred.shape} differs from "
                f"target shape {target.shape}"
            )
        if target.dtype.kind not in "biuf":
            raise DTypeError(f"{self.name}: target must be numeric, got dtype {target.dtype}")
        return pred, target.astype(pred.dtype, copy=False)


@attrs.frozen
class BinaryCrossEntropy(Loss):
    """The notebook's loss on probabilities ``p`` in [0, 1]::

        L = mean(-y log p - (1 - y) log(1 - p))
        dL/dp = (p - y) / (p (1 - p)) / n

    ``p`` is clipped to ``[eps, 1 - eps]`` with the machine epsilon of its own
    dtype, so probabilities of exactly 0 or 1 give a finite loss. Prefer
    :class:`SigmoidBinaryCrossEntropy` on logits: it is exact everywhere.
    """

    name = "binary_cross_entropy"

    def value_and_grad(self, pred: object, target: object) -> tuple[np.floating, np.ndarray]:
        """``(L, dL/dpred)`` as written in the class docstring."""
        p, y = self._same_shape(pred, target)
        eps = _eps(p.dtype)
        p = np.maximum(p, eps)
        np.minimum(p, 1.0 - eps, out=p)
        q = np.subtract(1.0, p, dtype=p.dtype)
        n = p.size
        log_likelihood = np.vdot(y, np.log(p)) + np.vdot(np.subtract(1.0, y), np.log(q))
        g = np.subtract(p, y)
        q *= p
        q *= n
        g /= q
        return p.dtype.type(-log_likelihood / n), g

    def absorbs(self, layer: object) -> Loss | None:
        """After a :class:`~fnbp.Sigmoid`, the chain rule collapses: with
        ``p = sigmoid(z)``, ``dL/dz = dL/dp * p (1 - p) = (p - y) / n``, one
        subtraction instead of two backward passes. The value and, where ``p``
        is clipped, the gradient are the two-step ones (equal up to rounding)."""
        return binary_cross_entropy_of_sigmoid if type(layer) is Sigmoid else None


_SIGNS: dict[tuple[np.dtype, int], np.ndarray] = {}


def _signs(dtype: np.dtype, ndim: int) -> np.ndarray:
    """``[0.5, -0.5]`` shaped ``(2, 1, ..., 1)`` to broadcast against an ``ndim`` array."""
    signs = _SIGNS.get((dtype, ndim))
    if signs is None:
        signs = np.array([0.5, -0.5], dtype).reshape((2,) + (1,) * ndim)
        signs.setflags(write=False)
        _SIGNS[dtype, ndim] = signs
    return signs


@attrs.frozen
class BinaryCrossEntropyOfSigmoid(Loss):
    """:class:`BinaryCrossEntropy` of ``Sigmoid()(z)``, as a loss on ``z``::

        p = 0.5 + 0.5 tanh(z / 2)        1 - p = 0.5 - 0.5 tanh(z / 2)
        L = mean(-y log p - (1 - y) log(1 - p))        dL/dz = (p - y) / n

    ``p`` and ``1 - p`` come from one tanh and one broadcast multiply. Where
    either falls below the machine epsilon, probability-space cross-entropy
    clips ``p``; there (and for an empty batch) this loss returns exactly the
    two-step result (``BinaryCrossEntropy`` on the Sigmoid's output, then the
    Sigmoid's backward pass), saturation included. Elsewhere the two agree
    up to rounding; for large ``|z|`` both lose the digits that the rounding
    of ``p`` loses, which :class:`SigmoidBinaryCrossEntropy` on logits avoids.
    """

    name = "binary_cross_entropy"

    def value_and_grad(self, pred: object, target: object) -> tuple[np.floating, np.ndarray]:
        """``(L, dL/dz)`` as written in the class docstring."""
        z, y = self._same_shape(pred, target)
        t = np.multiply(z, 0.5)
        np.tanh(t, out=t)
        pq = np.multiply(t, _signs(z.dtype, z.ndim))  # [p; 1 - p], minus the 0.5
        pq += 0.5
        p = pq[0]
        if not z.size or np.minimum.reduce(pq, axis=None) < _eps(z.dtype):
            value, g_p = binary_cross_entropy.value_and_grad(p, y)
            return value, Sigmoid()._g_x(z, p, g_p)
        n = z.size
        g = np.subtract(p, y)
        g *= 1.0 / n
        np.log(pq, out=pq)
        log_likelihood = np.vdot(y, pq[0]) + np.vdot(np.subtract(1.0, y), pq[1])
        return z.dtype.type(-log_likelihood / n), g


@attrs.frozen
class SigmoidBinaryCrossEntropy(Loss):
    """Binary cross-entropy on logits ``z`` (the sigmoid is folded in)::

        L = mean(softplus(z) - y z)        dL/dz = (sigmoid(z) - y) / n

    with ``softplus(z) = max(z, 0) + log1p(exp(-|z|))``: stable for any ``z``.
    """

    name = "sigmoid_binary_cross_entropy"

    def value_and_grad(self, pred: object, target: object) -> tuple[np.floating, np.ndarray]:
        """``(L, dL/dpred)`` as written in the class docstring."""
        z, y = self._same_shape(pred, target)
        value = _mean(softplus(z) - y * z)
        g = np.multiply(z, 0.5)
        np.tanh(g, out=g)
        g += 1.0
        g *= 0.5
        g -= y
        g *= 1.0 / z.size
        return value, g


@attrs.frozen
class SoftmaxCrossEntropy(Loss):
    """Cross-entropy of ``softmax(z)`` along the last axis, on logits ``z``::

        L = mean_n( logsumexp(z_n) - sum_c y_nc z_nc )
        dL/dz_n = (softmax(z_n) * sum_c y_nc - y_n) / N

    ``target`` is either integer class labels of shape ``z.shape[:-1]`` (each
    in ``[0, C)``) or per-class probabilities (one-hot) of ``z``'s shape.
    """

    name = "softmax_cross_entropy"

    def value_and_grad(self, pred: object, target: object) -> tuple[np.floating, np.ndarray]:
        """``(L, dL/dpred)`` as written in the class docstring."""
        z = _prediction(pred)
        if z.ndim < 1:
            raise ShapeError(f"{self.name}: logits need a class axis, got shape {z.shape}")
        target = np.asarray(target)
        s = np.subtract(z, z.max(axis=-1, keepdims=True))
        e = exp_cut(s)
        total = row_sums(e)
        log_total = np.log(total)
        n = z.size // z.shape[-1] if z.shape[-1] else 0
        if target.shape == z.shape[:-1]:
            rows, labels = np.arange(n), self._labels(target, z.shape[-1]).ravel()
            value = (np.add.reduce(log_total, axis=None) - s.reshape(n, -1)[rows, labels].sum()) / n
            e /= total
            e.reshape(n, -1)[rows, labels] -= 1.0
            e *= 1.0 / n
            return value.astype(z.dtype), e
        y = self._same_shape(z, target)[1]
        mass = y.sum(axis=-1, keepdims=True)
        value = (np.vdot(log_total, mass) - np.vdot(y, s)) / n
        e *= mass / total
        e -= y
        e *= 1.0 / n
        return value.astype(z.dtype), e

    def _labels(self, target: np.ndarray, n_classes: int) -> np.ndarray:
        if target.dtype.kind not in "iu":
            raise DTypeError(
                f"{self.name}: labels of shape {target.shape} must be integers, got dtype "
                f"{target.dtype} (one-hot targets must have the logits' shape)"
            )
        if target.size and (target.min() < 0 or target.max() >= n_classes):
            bad = target[(target < 0) | (target >= n_classes)].ravel()[0]
            raise ShapeError(
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
        return value, g


binary_cross_entropy = BinaryCrossEntropy()
binary_cross_entropy_of_sigmoid = BinaryCrossEntropyOfSigmoid()
sigmoid_binary_cross_entropy = SigmoidBinaryCrossEntropy()
softmax_cross_entropy = SoftmaxCrossEntropy()
mse = MeanSquaredError()
