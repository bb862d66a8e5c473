"""fnbp: backpropagation by hand in numpy, done functionally.

A network is an immutable record of parameters; ``forward`` and ``backward``
are pure functions that *return* gradients; ``update`` folds them into a new
record. Randomness flows from explicit keys.

>>> import numpy as np, fnbp as fb
>>> net = fb.Serial((fb.Dense.init(fb.random.key(0), 2, 1), fb.Sigmoid()))
>>> x = np.array([[1.0, 1.0], [0.0, 1.0]])
>>> loss, grads = fb.value_and_grad(net, fb.binary_cross_entropy, x, [[1.0], [0.0]])
>>> net = fb.update(net, grads, learning_rate=0.1)

The map of the house. A module imports only from the lines above it::

    errors                      the exception classes (one rule for their types)
    validation                  every check of arguments and arrays; the dtype policy
    record, random, _numeric    parameter records and ownership; keys; exact elementwise math
    tree                        trees: a one-level API (children, rebuild), then map, leaves, ravel
    core                        the layer protocol, Context, forward / vjp / backward over trees
    initializers                seeded weight initializers
    layers/                     one file per family: dense, activations, conv (and its window
                                geometry, shared with pool), norm, dropout, embedding, reshape,
                                attention, positional; the combinators serial, combinators
                                (Residual, Parallel) and recurrent (the cells and the time
                                loop); transformer (blocks built from the others)
    losses, metrics             numeric losses (no layer imports); accuracy and labels
    optim/                      optimizers as (init, update) pairs: _leaf (the math), base
                                (chain, apply_updates, fb.update), transforms, alias, schedules
    train                       value_and_grad (with the one table of fused pairs), TrainState,
                                train_step, batches
    fit                         fit as a loop over train_step; History; predict, evaluate
    checkpoint                  save and load(path, like): arrays plus a JSON description
    testing                     check_grads: finite differences on every input and param leaf
    traces                      trace (one step, layer by layer) and summary (shapes and sizes)
    datasets                    seeded toy datasets
    experiments, plot           sweeps over configurations and seeds on any executor (Dask
                                too); plots -- their dependencies imported only when used
    sklearn                     FnbpClassifier, FnbpRegressor: scikit-learn estimators (the
                                sklearn extra; import fnbp.sklearn, fnbp does not)
"""

__version__ = "0.1.0"

from . import (
    checkpoint,
    datasets,
    experiments,
    initializers,
    losses,
    optim,
    plot,
    random,
    testing,
    tree,
    validation,
    workspace,
)
from .checkpoint import Checkpoint, CheckpointError
from .core import (
    Context,
    ContextLayer,
    Layer,
    PlainLayer,
    StatefulLayer,
    backward,
    dtype_of,
    forward,
    init_state,
    vjp,
    vjp_ctx,
)
from .errors import (
    DivergenceError,
    DTypeError,
    LocatedError,
    ModeError,
    ShapeError,
    StructureError,
)
from .fit import History, evaluate, fit, predict
from .layers import (
    ELU,
    GELU,
    Attention,
    AvgPool1D,
    AvgPool2D,
    BatchNorm,
    BatchNormState,
    Conv1D,
    Conv2D,
    Dense,
    Dropout,
    Embedding,
    Flatten,
    GlobalAvgPool,
    Identity,
    LayerNorm,
    LeakyReLU,
    LogSoftmax,
    MaxPool1D,
    MaxPool2D,
    MultiHeadAttention,
    Parallel,
    PositionalEmbedding,
    ReLU,
    Reshape,
    Residual,
    Serial,
    Sigmoid,
    SiLU,
    SinusoidalPositions,
    Softmax,
    Softplus,
    Tanh,
    attention,
    attention_vjp,
    mlp,
    transformer_block,
    transformer_lm,
)
from .layers.cells import GRUCell, LSTMCell, RNNCell
from .layers.recurrent import Bidirectional, Recurrent
from .losses import (
    BinaryCrossEntropy,
    BinaryCrossEntropyOfSigmoid,
    Loss,
    MeanSquaredError,
    SigmoidBinaryCrossEntropy,
    SoftmaxCrossEntropy,
    binary_cross_entropy,
    binary_cross_entropy_of_sigmoid,
    mse,
    sigmoid_binary_cross_entropy,
    softmax_cross_entropy,
)
from .metrics import accuracy, labels, probabilities
from .optim import update
from .record import frozen, param, readonly, replace, static
from .testing import GradientCheckError
from .traces import LayerTrace, Summary, Trace, diagnostics, summary, trace
from .train import FUSIONS, TrainState, batches, fused_loss, train_step, value_and_grad
from .workspace import scratch

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
    "ContextLayer",
    "LayerTrace",
    "Summary",
    "diagnostics",
    "Trace",
    "summary",
    "trace",
    "FUSIONS",
    "fused_loss",
    "GradientCheckError",
    "PlainLayer",
    "StatefulLayer",
    "TrainState",
    "frozen",
    "scratch",
    "train_step",
    "validation",
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
    "BinaryCrossEntropyOfSigmoid",
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
    "LocatedError",
    "ModeError",
    "Sigmoid",
    "SigmoidBinaryCrossEntropy",
    "Softmax",
    "SoftmaxCrossEntropy",
    "Softplus",
    "StructureError",
    "Tanh",
    "backward",
    "binary_cross_entropy",
    "binary_cross_entropy_of_sigmoid",
    "dtype_of",
    "forward",
    "Checkpoint",
    "CheckpointError",
    "checkpoint",
    "optim",
    "plot",
    "datasets",
    "experiments",
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
    "workspace",
    "update",
    "value_and_grad",
    "vjp",
    "RNNCell",
    "LSTMCell",
    "GRUCell",
    "Recurrent",
    "Bidirectional",
]
