"""Classification helpers: probabilities, labels and accuracy from network outputs.

A network's output is either one column per class (``(N, C)`` or ``(N, ..., C)``
with ``C > 1``: the label is the argmax over the last axis) or a single column
or vector for a binary problem (the label is ``output > threshold``; use
``threshold=0.5`` on probabilities, ``0.0`` on logits).

Predictions follow fnbp's dtype policy (float32 or float64; booleans and
integers as float64; float16, complex, strings... a DTypeError). A NaN
prediction has no label and a non-finite target no class: both are a
``ValueError``, as is the accuracy of an empty batch.
"""

from __future__ import annotations

import numpy as np

from . import validation
from .errors import DTypeError, ShapeError
from .layers.activations import Sigmoid, Softmax

__all__ = ["probabilities", "labels", "accuracy"]


def _prediction(pred: object, owner: str) -> np.ndarray:
    p = validation.floating(pred, owner, "prediction")
    if p.ndim == 0 or (p.ndim >= 2 and p.shape[-1] == 0):
        raise ShapeError(
            f"{owner}: the prediction needs a batch axis and, if it has more, at least one "
            f"column, got shape {p.shape}"
        )
    return p


def _is_multiclass(pred: np.ndarray) -> bool:
    return pred.ndim >= 2 and pred.shape[-1] > 1


def probabilities(logits: np.ndarray) -> np.ndarray:
    """Class probabilities from logits: softmax over ``C > 1`` columns, else sigmoid."""
    z = _prediction(logits, "probabilities")
    return (Softmax() if _is_multiclass(z) else Sigmoid()).forward(z)


def _labels(p: np.ndarray, threshold: float) -> np.ndarray:
    if np.isnan(p).any():
        raise ValueError("labels: the prediction has NaN, which has no label (a diverged network?)")
    if _is_multiclass(p):
        return p.argmax(axis=-1)
    binary = p[..., 0] if p.ndim >= 2 else p
    return (binary > threshold).astype(np.int64)


def labels(pred: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Integer labels: the argmax over the last axis of ``(N, ..., C)`` outputs, of shape
    ``(N, ...)``; for one column or a vector, ``pred > threshold``, of shape ``(N,)``
    (``(N, ...)`` for ``(N, ..., 1)``)."""
    threshold = validation.check_real("labels", "threshold", threshold)
    return _labels(_prediction(pred, "labels"), threshold)


def _target_labels(target: object, pred: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The target's labels, of the predicted labels' ``shape``."""
    t = validation.check_finite("accuracy", "the target", validation.numeric(target, "accuracy"))
    if _is_multiclass(pred):
        c = pred.shape[-1]
        if t.shape == pred.shape:  # one-hot rows, or probabilities
            return t.argmax(axis=-1)
        if t.ndim == pred.ndim and t.shape[-1] > 1:
            raise ShapeError(f"accuracy: predictions {pred.shape} vs one-hot target {t.shape}")
        if t.size != int(np.prod(shape)):
            raise ShapeError(f"accuracy: labels of shape {shape} but target has shape {t.shape}")
        if t.dtype.kind not in "iu":
            raise DTypeError(
                f"accuracy: class labels must be integers, got dtype {t.dtype} "
                "(one-hot targets must have the predictions' shape)"
            )
        if t.size and (t.min() < 0 or t.max() >= c):
            raise ValueError(f"accuracy: labels must be in [0, {c}), got {t.min()} to {t.max()}")
        return t.reshape(shape)
    if t.size != int(np.prod(shape)):
        raise ShapeError(f"accuracy: {shape[0]} predictions but target has shape {t.shape}")
    if t.size and (t.min() < 0 or t.max() > 1):
        raise ValueError(
            f"accuracy: binary targets must be 0 or 1 (or in [0, 1]), got {t.min()} to {t.max()}"
        )
    flat = t.reshape(shape)
    return flat if flat.dtype.kind in "iu" else (flat > 0.5).astype(np.int64)


def accuracy(pred: np.ndarray, target: np.ndarray, threshold: float = 0.5) -> float:
    """Fraction of samples whose predicted label equals the target label.

    ``target`` may be integer labels, one-hot rows, or 0/1 values for a
    binary problem.
    """
    threshold = validation.check_real("accuracy", "threshold", threshold)
    p = _prediction(pred, "accuracy")
    predicted = _labels(p, threshold)
    if predicted.size == 0:
        raise ValueError("accuracy: the batch is empty (a mean over no samples is undefined)")
    return float(np.mean(predicted == _target_labels(target, p, predicted.shape)))
