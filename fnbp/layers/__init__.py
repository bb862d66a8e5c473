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
from .attention import Attention, MultiHeadAttention, attention, attention_vjp
from .cells import GRUCell, LSTMCell, RNNCell
from .combinators import Parallel, Residual
from .conv import Conv1D, Conv2D
from .dense import Dense
from .dropout import Dropout
from .embedding import Embedding
from .norm import BatchNorm, BatchNormState, LayerNorm
from .pool import AvgPool1D, AvgPool2D, GlobalAvgPool, MaxPool1D, MaxPool2D
from .positional import PositionalEmbedding, SinusoidalPositions
from .recurrent import Bidirectional, Recurrent
from .reshape import Flatten, Reshape
from .serial import Serial, mlp
from .transformer import transformer_block, transformer_lm

__all__ = [
    "Attention",
    "MultiHeadAttention",
    "attention",
    "attention_vjp",
    "PositionalEmbedding",
    "SinusoidalPositions",
    "Reshape",
    "transformer_block",
    "transformer_lm",
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
