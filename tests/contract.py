"""The layer contract, as one table: every layer fnbp has is a row of ``CASES``.

A row says how to build the layer in a given dtype and how to draw an input
for it; ``tests/test_contract.py`` runs every check on every row:

* the backward pass against central finite differences, in float64, for every
  floating-point leaf of the input and every parameter leaf;
* ``vjp`` and ``backward`` give the same bits; ``need_g_x=False`` gives ``None``
  and the same parameter gradients;
* float32 stays float32 and float64 stays float64 (output, ``g_x``, grads);
* read-only inputs, params and states are never written;
* no floating-point signal at inputs of +-1000 under ``np.errstate(all="raise")``;
* training mode: layers that do not depend on it compute the same in training;
  those that do (Dropout, BatchNorm) are checked in both modes;
* a checkpoint round trip gives the same layer, bit for bit.

Adding a layer to fnbp means adding a row here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import numpy as np

import fnbp as fb

Tree = Any


@attrs.frozen
class Case:
    """One row: ``layer(dtype)`` builds the layer, ``x(rng, dtype)`` draws an input.

    * ``mode``: ``"plain"`` (the same in training), ``"key"`` (training needs a
      key: Dropout), ``"state"`` (keeps a state: BatchNorm);
    * ``smooth``: whether finite differences apply everywhere (ReLU's kink,
      max pooling's ties: the input generator keeps away from them);
    * ``extreme``: whether inputs of +-1000 are meaningful (not for integer ids).
    """

    name: str
    layer: Callable[[np.dtype], Any]
    x: Callable[[np.random.Generator, np.dtype], Tree]
    mode: str = "plain"
    extreme: bool = True


def uniform(*shape: int, away: float = 0.0) -> Callable[[np.random.Generator, np.dtype], Tree]:
    """Inputs uniform on [-1, 1), with ``|x| >= away`` to keep off kinks at 0."""

    def draw(rng: np.random.Generator, dtype: np.dtype) -> np.ndarray:
        a = rng.uniform(-1.0, 1.0, shape)
        if away:
            a = np.sign(a) * (away + np.abs(a))
        return a.astype(dtype)

    return draw


def distinct(*shape: int) -> Callable[[np.random.Generator, np.dtype], Tree]:
    """Inputs whose values are all different by at least 1e-2: no ties in a max."""

    def draw(rng: np.random.Generator, dtype: np.dtype) -> np.ndarray:
        n = int(np.prod(shape))
        return (rng.permutation(n).reshape(shape) / n * 2.0 - 1.0).astype(dtype)

    return draw


def ids(n: int, *shape: int) -> Callable[[np.random.Generator, np.dtype], Tree]:
    return lambda rng, dtype: rng.integers(0, n, shape)


def tupled(*parts: Callable) -> Callable[[np.random.Generator, np.dtype], Tree]:
    """A tuple input, each part drawn by its own generator: a cell's ``(carry, x_t)``."""
    return lambda rng, dtype: tuple(part(rng, dtype) for part in parts)


def keyed(**parts: Callable) -> Callable[[np.random.Generator, np.dtype], Tree]:
    """A dict input, each entry drawn by its own generator: ``{"x": ..., "mask": ...}``."""
    return lambda rng, dtype: {name: part(rng, dtype) for name, part in parts.items()}


def fixed(value: Any) -> Callable[[np.random.Generator, np.dtype], Tree]:
    """The same array whatever the dtype: a mask or lengths."""
    return lambda rng, dtype: np.array(value)


def _key(seed: int) -> fb.random.Key:
    return fb.random.key(seed)


def dense(n_in: int, n_out: int, seed: int = 0) -> Callable[[np.dtype], Any]:
    return lambda dtype: fb.Dense.init(_key(seed), n_in, n_out, dtype=dtype)


def dense_init(init: str, seed: int = 0) -> Callable[[np.dtype], Any]:
    """A Dense drawn by a framework's scheme (its bias is random already under "torch")."""
    return lambda dtype: fb.Dense.init(_key(seed), 3, 4, init=init, dtype=dtype)


def _bias(layer: Any, seed: int) -> Any:
    """``layer`` with a random bias (fresh layers have b = 0, which hides bias mistakes)."""
    b = fb.random.normal(_key(seed + 100), layer.b.shape, dtype=layer.b.dtype)
    return attrs.evolve(layer, b=b * 0.1)


def _affine(cls: type, n: int) -> Callable[[np.dtype], Any]:
    def build(dtype: np.dtype) -> Any:
        layer = cls.init(n, dtype=dtype)
        gamma = 1.0 + 0.5 * fb.random.normal(_key(3), (n,), dtype=dtype)
        beta = 0.5 * fb.random.normal(_key(4), (n,), dtype=dtype)
        return attrs.evolve(layer, gamma=gamma, beta=beta)

    return build


def _mlp(dtype: np.dtype) -> Any:
    return fb.mlp(_key(5), [3, 6, 2], hidden=fb.Tanh(), dtype=dtype)


def _residual(dtype: np.dtype) -> Any:
    return fb.Residual(fb.Serial((dense(4, 5, 1)(dtype), fb.Tanh(), dense(5, 4, 2)(dtype))))


def _parallel(combine: str) -> Callable[[np.dtype], Any]:
    def build(dtype: np.dtype) -> Any:
        branches = (dense(3, 2, 1)(dtype), fb.Serial((dense(3, 2, 2)(dtype), fb.Tanh())))
        return fb.Parallel(branches, combine=combine)

    return build


def _conv(cls: type, *args: Any, seed: int = 6, **kw: Any) -> Callable[[np.dtype], Any]:
    return lambda dtype: _bias(cls.init(_key(seed), *args, dtype=dtype, **kw), seed)


def _embedding(dtype: np.dtype) -> Any:
    return fb.Embedding.init(_key(7), 5, 3, dtype=dtype)


def sources(
    mask: list[list[bool]] | None = None, **shapes: tuple[int, ...]
) -> Callable[[np.random.Generator, np.dtype], Tree]:
    """An attention input: a dict of uniform arrays of the given shapes (and a bool mask)."""
    parts: dict[str, Callable] = {name: uniform(*shape) for name, shape in shapes.items()}
    if mask is not None:
        parts["mask"] = fixed(np.array(mask, bool))
    return keyed(**parts)


def _mha(d: int, heads: int, causal: bool = False) -> Callable[[np.dtype], Any]:
    def build(dtype: np.dtype) -> Any:
        layer = fb.MultiHeadAttention.init(_key(8), d, heads, causal=causal, dtype=dtype)
        biases = {
            f"b_{r}": 0.1 * fb.random.normal(_key(9 + i), (d,), dtype) for i, r in enumerate("qkvo")
        }
        return attrs.evolve(layer, **biases)

    return build


@attrs.frozen
class ElmanCell(fb.Layer):
    """A recurrent cell written the plain way, as a user would: only ``vjp``.

    ``(h, x_t) -> (h_t, h_t)`` with ``h_t = tanh(x_t W_x + h W_h + b)``;
    backward ``g_a = (g_carry + g_y) (1 - h_t^2)``. It has none of the
    built-in cells' loop interface (nor ``initial_carry``), so ``Recurrent``
    runs it step by step through this ``vjp`` and needs the carry in the input.
    """

    W_x: np.ndarray = fb.param()
    W_h: np.ndarray = fb.param()
    b: np.ndarray = fb.param()

    @classmethod
    def init(cls, key: fb.random.Key, n_in: int, n_hidden: int, dtype: Any) -> ElmanCell:
        shapes = ((n_in, n_hidden), (n_hidden, n_hidden), (n_hidden,))
        keys = fb.random.split(key, 3)
        return cls(
            *(0.5 * fb.random.normal(k, s, dtype) for k, s in zip(keys, shapes, strict=True))
        )

    def vjp(self, x: tuple, need_g_x: bool = True) -> tuple:
        h, x_t = x
        h_t = np.tanh(x_t @ self.W_x + h @ self.W_h + self.b)

        def pullback(g: tuple) -> tuple:
            g_carry, g_y = g
            g_a = (g_carry + g_y) * (1.0 - h_t * h_t)
            grads = ElmanCell(x_t.T @ g_a, h.T @ g_a, g_a.sum(axis=0))
            return ((g_a @ self.W_h.T, g_a @ self.W_x.T) if need_g_x else None), grads

        return (h_t, h_t), pullback


def _cell(cls: type, n_in: int = 2, n_hidden: int = 3, seed: int = 8) -> Callable[[np.dtype], Any]:
    return lambda dtype: cls.init(_key(seed), n_in, n_hidden, dtype=dtype)


def _recurrent(cls: type, seed: int = 8, **options: Any) -> Callable[[np.dtype], Any]:
    def build(dtype: np.dtype) -> Any:
        layer = fb.Recurrent(_cell(cls, seed=seed)(dtype), **options)
        if layer.carry0 is not None:  # a learned carry away from its zero start
            draw = lambda a: 0.5 * fb.random.normal(_key(seed + 1), a.shape, dtype=dtype)  # noqa: E731
            layer = fb.replace(layer, carry0=fb.tree.map(draw, layer.carry0))
        return layer

    return build


def _block(dtype: np.dtype) -> Any:
    return fb.transformer_block(_key(10), 3, 3, 4, dtype=dtype)


def _positions(dtype: np.dtype) -> Any:
    return fb.PositionalEmbedding.init(_key(12), 5, 3, std=0.5, dtype=dtype)


def _bidirectional(cls: type, combine: str) -> Callable[[np.dtype], Any]:
    def build(dtype: np.dtype) -> Any:
        make = lambda k: cls.init(k, 2, 2, dtype=dtype)  # noqa: E731
        return fb.Bidirectional.init(_key(9), make, combine=combine)

    return build


def _user_cell(dtype: np.dtype) -> Any:
    return fb.Recurrent(ElmanCell.init(_key(10), 2, 3, dtype), return_sequences=False)


_MASK = [[True, True, True, False], [True, False, True, True]]  # padding, and a gap
_H = uniform(2, 3)  # a state (N, H) = (2, 3)

CASES: list[Case] = [
    Case("Dense", lambda dt: _bias(dense(3, 4)(dt), 0), uniform(5, 3)),
    Case("Dense(N,T,F)", lambda dt: _bias(dense(3, 2)(dt), 0), uniform(2, 4, 3)),
    Case("Identity", lambda dt: fb.Identity(), uniform(4, 3)),
    Case("Sigmoid", lambda dt: fb.Sigmoid(), uniform(4, 3)),
    Case("Tanh", lambda dt: fb.Tanh(), uniform(4, 3)),
    Case("ReLU", lambda dt: fb.ReLU(), uniform(4, 3, away=0.05)),
    Case("LeakyReLU", lambda dt: fb.LeakyReLU(0.2), uniform(4, 3, away=0.05)),
    Case("Softplus", lambda dt: fb.Softplus(), uniform(4, 3)),
    Case("Softmax", lambda dt: fb.Softmax(), uniform(4, 3)),
    Case("LogSoftmax", lambda dt: fb.LogSoftmax(), uniform(4, 3)),
    Case("GELU", lambda dt: fb.GELU(), uniform(4, 3)),
    Case("GELU(tanh)", lambda dt: fb.GELU(approximate="tanh"), uniform(4, 3)),
    Case("ELU", lambda dt: fb.ELU(0.7), uniform(4, 3, away=0.05)),
    Case("SiLU", lambda dt: fb.SiLU(), uniform(4, 3)),
    Case("Flatten", lambda dt: fb.Flatten(), uniform(2, 3, 4)),
    Case("Conv1D", _conv(fb.Conv1D, 2, 3, 3), uniform(2, 6, 2)),
    Case(
        "Conv1D(same,stride)", _conv(fb.Conv1D, 1, 2, 3, stride=2, padding="same"), uniform(2, 7, 1)
    ),
    Case("Conv2D", _conv(fb.Conv2D, 2, 3, 2), uniform(2, 4, 5, 2)),
    Case("Conv2D(same)", _conv(fb.Conv2D, 1, 2, 3, padding="same"), uniform(1, 4, 4, 1)),
    Case("MaxPool1D", lambda dt: fb.MaxPool1D(2), distinct(2, 6, 2)),
    Case("MaxPool2D(same)", lambda dt: fb.MaxPool2D(2, padding="same"), distinct(1, 5, 5, 2)),
    Case("AvgPool1D", lambda dt: fb.AvgPool1D(3, stride=1), uniform(2, 6, 2)),
    Case("AvgPool2D", lambda dt: fb.AvgPool2D(2), uniform(2, 4, 4, 2)),
    Case("GlobalAvgPool", lambda dt: fb.GlobalAvgPool(), uniform(2, 3, 3, 2)),
    Case("LayerNorm", _affine(fb.LayerNorm, 4), uniform(3, 4)),
    Case("LayerNorm(N,T,C)", _affine(fb.LayerNorm, 3), uniform(2, 2, 3)),
    Case("BatchNorm", _affine(fb.BatchNorm, 3), uniform(6, 3), mode="state"),
    Case("BatchNorm(NHWC)", _affine(fb.BatchNorm, 2), uniform(2, 2, 3, 2), mode="state"),
    Case("Dropout", lambda dt: fb.Dropout(0.4), uniform(5, 4), mode="key"),
    Case("Embedding", _embedding, ids(5, 4, 2), extreme=False),
    Case("Serial(mlp)", _mlp, uniform(4, 3)),
    Case("Residual", _residual, uniform(3, 4)),
    Case("Parallel(concat)", _parallel("concat"), uniform(3, 3)),
    Case("Parallel(sum)", _parallel("sum"), uniform(3, 3)),
    Case("Reshape", lambda dt: fb.Reshape((2, -1)), uniform(2, 3, 4)),
    Case("Dense(init=torch)", dense_init("torch"), uniform(5, 3)),
    Case("Conv1D(init=torch)", _conv(fb.Conv1D, 2, 3, 3, init="torch"), uniform(2, 5, 2)),
    Case("Conv2D(init=keras)", _conv(fb.Conv2D, 2, 2, 2, init="keras"), uniform(2, 3, 3, 2)),
    Case(
        "Attention(q,k,v)",
        lambda dt: fb.Attention(),
        tupled(uniform(2, 3, 4), uniform(2, 5, 4), uniform(2, 5, 3)),
    ),
    Case("Attention(causal)", lambda dt: fb.Attention(causal=True), uniform(2, 4, 3)),
    Case(
        "Attention(mask)",
        lambda dt: fb.Attention(),
        sources([[1, 0, 1, 1, 0], [0, 1, 1, 1, 1]], q=(2, 3, 4), k=(2, 5, 4), v=(2, 5, 2)),
    ),
    Case(  # sample 0: query 0 sees nothing (causal, key 0 padded); sample 1: no key at all
        "Attention(fully-masked-rows)",
        lambda dt: fb.Attention(causal=True),
        sources([[0, 1, 1, 1], [0, 0, 0, 0]], x=(2, 4, 3)),
    ),
    Case("Attention(N=1,T=1)", lambda dt: fb.Attention(), uniform(1, 1, 3)),
    Case("MHA(self)", _mha(4, 2), uniform(2, 3, 4)),
    Case("MHA(causal,mask)", _mha(4, 2, causal=True), sources([[1, 1, 0], [0, 1, 1]], x=(2, 3, 4))),
    Case("MHA(cross)", _mha(4, 2), sources([[1, 0, 1], [1, 1, 1]], q=(2, 2, 4), kv=(2, 3, 4))),
    Case("MHA(q,k,v)", _mha(6, 3), sources(q=(2, 2, 6), k=(2, 3, 6), v=(2, 3, 6))),
    Case("MHA(N=1,T=1,causal)", _mha(4, 1, causal=True), uniform(1, 1, 4)),
    Case("PositionalEmbedding", _positions, uniform(2, 4, 3)),
    Case("SinusoidalPositions", lambda dt: fb.SinusoidalPositions(), uniform(2, 4, 5)),
    Case("transformer_block", _block, uniform(2, 3, 3)),
    Case("Sigmoid(N,T,F)", lambda dt: fb.Sigmoid(), uniform(2, 3, 4)),
    Case("Dropout(N,T,F)", lambda dt: fb.Dropout(0.3), uniform(2, 3, 4), mode="key"),
    Case("RNNCell", _cell(fb.RNNCell), tupled(_H, uniform(2, 2))),
    Case("LSTMCell", _cell(fb.LSTMCell), tupled(tupled(_H, _H), uniform(2, 2))),
    Case("GRUCell", _cell(fb.GRUCell), tupled(_H, uniform(2, 2))),
    Case("Recurrent(LSTM)", _recurrent(fb.LSTMCell), uniform(2, 4, 2)),
    Case("Recurrent(GRU,last)", _recurrent(fb.GRUCell, return_sequences=False), uniform(2, 4, 2)),
    Case("Recurrent(RNN,learned)", _recurrent(fb.RNNCell, initial="learned"), uniform(2, 4, 2)),
    Case(
        "Recurrent(LSTM,learned,last)",
        _recurrent(fb.LSTMCell, initial="learned", return_sequences=False),
        uniform(2, 3, 2),
    ),
    Case(
        "Recurrent(LSTM,mask)",
        _recurrent(fb.LSTMCell),
        keyed(x=uniform(2, 4, 2), mask=fixed(_MASK)),
    ),
    Case(
        "Recurrent(GRU,lengths,last)",
        _recurrent(fb.GRUCell, return_sequences=False),
        keyed(x=uniform(2, 4, 2), lengths=fixed([3, 1])),
    ),
    Case(
        "Recurrent(LSTM,carry in,out)",
        _recurrent(fb.LSTMCell, return_carry=True),
        keyed(x=uniform(2, 3, 2), carry=tupled(_H, _H)),
    ),
    Case(
        "Recurrent(GRU,reverse,mask)",
        _recurrent(fb.GRUCell, reverse=True),
        keyed(x=uniform(2, 4, 2), mask=fixed(_MASK)),
    ),
    Case("Recurrent(RNN,T=1,N=1)", _recurrent(fb.RNNCell), uniform(1, 1, 2)),
    Case("Bidirectional(GRU,concat)", _bidirectional(fb.GRUCell, "concat"), uniform(2, 3, 2)),
    Case(
        "Bidirectional(LSTM,sum,mask)",
        _bidirectional(fb.LSTMCell, "sum"),
        keyed(x=uniform(2, 4, 2), mask=fixed(_MASK)),
    ),
    Case(
        "Recurrent(user cell,mask,last)",
        _user_cell,
        keyed(x=uniform(2, 4, 2), mask=fixed(_MASK), carry=_H),
    ),
]
