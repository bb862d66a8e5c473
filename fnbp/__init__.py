"""fnbp: backpropagation by hand in numpy, done functionally.

A network is an immutable record of parameters; ``forward`` and ``backward``
are pure functions that *return* gradients; ``update`` folds them into a new
record. Randomness flows from explicit keys.

>>> import numpy as np, fnbp as fb
>>> net = fb.Serial((fb.Dense.init(fb.random.key(0), 2, 1), fb.Sigmoid()))
>>> x = np.array([[1.0, 1.0], [0.0, 1.0]])
>>> loss, grads = fb.value_and_grad(net, fb.binary_cross_entropy, x, [[1.0], [0.0]])
>>> net = fb.update(net, grads, learning_rate=0.1)
"""

__version__ = "0.1.0"

from . import checkpoint, datasets, initializers, losses, optim, random, testing, tree
from .checkpoint import Checkpoint, CheckpointError
from .core import (
    Context,
    Layer,
    backward,
    dtype_of,
    forward,
    init_state,
    update,
    value_and_grad,
    vjp,
    vjp_ctx,
)
from .errors import DivergenceError, DTypeError, ShapeError, StructureError
from .layers import (
    Dense,
    Identity,
    LeakyReLU,
    LogSoftmax,
    ReLU,
    Serial,
    Sigmoid,
    Softmax,
    Softplus,
    Tanh,
    mlp,
)
from .losses import (
    BinaryCrossEntropy,
    Loss,
    MeanSquaredError,
    SigmoidBinaryCrossEntropy,
    SoftmaxCrossEntropy,
    binary_cross_entropy,
    mse,
    sigmoid_binary_cross_entropy,
    softmax_cross_entropy,
)
from .metrics import accuracy, labels, probabilities
from .record import param, readonly, replace, static
from .train import History, batches, evaluate, fit, predict

__all__ = [
    "Context",
    "init_state",
    "vjp_ctx",
    "History",
    "accuracy",
    "batches",
    "evaluate",
    "fit",
    "labels",
    "predict",
    "probabilities",
    "BinaryCrossEntropy",
    "DTypeError",
    "Dense",
    "DivergenceError",
    "Identity",
    "Layer",
    "LeakyReLU",
    "LogSoftmax",
    "Loss",
    "MeanSquaredError",
    "ReLU",
    "Serial",
    "ShapeError",
    "Sigmoid",
    "SigmoidBinaryCrossEntropy",
    "Softmax",
    "SoftmaxCrossEntropy",
    "Softplus",
    "StructureError",
    "Tanh",
    "backward",
    "binary_cross_entropy",
    "dtype_of",
    "forward",
    "Checkpoint",
    "CheckpointError",
    "checkpoint",
    "optim",
    "datasets",
    "initializers",
    "losses",
    "mlp",
    "mse",
    "param",
    "random",
    "readonly",
    "replace",
    "sigmoid_binary_cross_entropy",
    "softmax_cross_entropy",
    "static",
    "testing",
    "tree",
    "update",
    "value_and_grad",
    "vjp",
]
