"""fnbp's layers: immutable records with ``forward`` and ``vjp``."""

from .activations import (
    ELU,
    GELU,
    Identity,
    LeakyReLU,
    LogSoftmax,
    ReLU,
    Sigmoid,
    SiLU,
    Softmax,
    Softplus,
    Tanh,
)
from .combinators import Parallel, Residual
from .conv import Conv1D, Conv2D
from .dense import Dense
from .dropout import Dropout
from .embedding import Embedding
from .norm import BatchNorm, BatchNormState, LayerNorm
from .pool import AvgPool1D, AvgPool2D, GlobalAvgPool, MaxPool1D, MaxPool2D
from .recurrent import Bidirectional, GRUCell, LSTMCell, Recurrent, RNNCell
from .reshape import Flatten
from .serial import Serial, mlp

__all__ = [
    "ELU",
    "GELU",
    "Parallel",
    "Residual",
    "SiLU",
    "AvgPool1D",
    "AvgPool2D",
    "Conv1D",
    "Conv2D",
    "Flatten",
    "GlobalAvgPool",
    "MaxPool1D",
    "MaxPool2D",
    "BatchNorm",
    "BatchNormState",
    "Dropout",
    "Embedding",
    "LayerNorm",
    "Dense",
    "Identity",
    "LeakyReLU",
    "LogSoftmax",
    "ReLU",
    "Serial",
    "Sigmoid",
    "Softmax",
    "Softplus",
    "Tanh",
    "mlp",
    "RNNCell",
    "LSTMCell",
    "GRUCell",
    "Recurrent",
    "Bidirectional",
]
