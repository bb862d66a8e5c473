"""Classification helpers: probabilities, labels and accuracy from network outputs.

A network's output is either one column per class (``(N, C)``, ``C > 1``:
the label is the argmax) or a single column or vector for a binary problem
(the label is ``output > threshold``; use ``threshold=0.5`` on probabilities,
``0.0`` on logits).
"""

from __future__ import annotations

import numpy as np

from .errors import ShapeError
from .layers.activations import Sigmoid, Softmax

__all__ = ["probabilities", "labels", "accuracy"]


def _is_multiclass(pred: np.ndarray) -> bool:
    return pred.ndim == 2 and pred.shape[1] > 1


def probabilities(logits: np.ndarray) -> np.ndarray:
    """Class probabilities from logits: softmax over ``C > 1`` columns, else sigmoid."""
    logits = np.asarray(logits)
    return (Softmax() if _is_multiclass(logits) else Sigmoid()).forward(logits)


def labels(pred: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Integer labels ``(N,)``: argmax of ``(N, C)`` outputs, else ``pred > threshold``."""
    pred = np.asarray(pred)
    if _is_multiclass(pred):
        return pred.argmax(axis=1)
    return (pred.reshape(len(pred)) > threshold).astype(np.int64)


def _target_labels(target: np.ndarray, pred: np.ndarray) -> np.ndarray:
    target, n = np.asarray(target), len(pred)
    if target.ndim == 2 and target.shape[1] > 1:
        if target.shape != pred.shape:
            raise ShapeError(f"accuracy: predictions {pred.shape} vs one-hot target {target.shape}")
        return target.argmax(axis=1)
    if target.size != n:
        raise ShapeError(f"accuracy: {n} predictions but target has shape {target.shape}")
    flat = target.reshape(n)
    return flat if flat.dtype.kind in "iu" else (flat > 0.5).astype(np.int64)


def accuracy(pred: np.ndarray, target: np.ndarray, threshold: float = 0.5) -> float:
    """Fraction of samples whose predicted label equals the target label.

    ``target`` may be integer labels, one-hot rows, or 0/1 values for a
    binary problem.
    """
    pred = np.asarray(pred)
    return float(np.mean(labels(pred, threshold) == _target_labels(target, pred)))
