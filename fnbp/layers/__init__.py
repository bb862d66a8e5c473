"""fnbp's layers: immutable records with ``forward`` and ``vjp``."""

from .activations import Identity, LeakyReLU, LogSoftmax, ReLU, Sigmoid, Softmax, Softplus, Tanh
from .dense import Dense
from .serial import Serial, mlp

__all__ = [
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
]
