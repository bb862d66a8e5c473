"""A pre-LayerNorm transformer block and a small causal language model, from existing layers.

A block on ``x`` of shape ``(N, T, D)`` (Xiong et al. 2020, GPT-2's layout)::

    x1 = x  + MHA(LN_1(x))                       Residual(Serial((LayerNorm, MultiHeadAttention)))
    y  = x1 + Dense_2(GELU(Dense_1(LN_2(x1))))   Residual(Serial((LayerNorm, Dense, GELU, Dense)))

Its backward pass is the layers' own, composed by ``Serial`` and ``Residual``:
``g_x = g_y + (the branch terms)``, so through a stack of blocks the gradient
reaches the bottom along the residual path with no Jacobian multiplied in; the
normalisation sits on the branches only, which is why pre-LN trains without the
learning-rate warm-up the post-LN block needs.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import DTypeLike

from .. import random, validation
from .activations import GELU
from .attention import MultiHeadAttention
from .combinators import Residual
from .dense import Dense
from .dropout import Dropout
from .embedding import Embedding
from .norm import LayerNorm
from .positional import PositionalEmbedding
from .serial import Serial

__all__ = ["transformer_block", "transformer_lm"]


def transformer_block(
    key: random.Key,
    d_model: int,
    num_heads: int,
    d_ff: int,
    *,
    causal: bool = True,
    dropout: float = 0.0,
    dtype: DTypeLike = np.float32,
) -> Serial:
    """A pre-LayerNorm transformer block, as one expression::

        Serial((
            Residual(Serial((LayerNorm(D), MultiHeadAttention(D, heads, causal)))),
            Residual(Serial((LayerNorm(D), Dense(D, d_ff), GELU(), Dense(d_ff, D)))),
        ))

    on ``x`` of shape ``(N, T, D)``. ``causal`` (True: a decoder block, as in a
    language model; False for an encoder) hides later positions. With
    ``dropout > 0`` a ``Dropout(dropout)`` ends each branch, before its residual
    sum (GPT-2's placement; training then needs a key). Keys are split from
    ``key``, one per layer with weights.
    """
    owner = "transformer_block"
    d_ff = validation.check_int(owner, "d_ff", d_ff, low=1)
    dropout = validation.check_real(owner, "dropout", dropout, low=0.0, high=1.0, high_open=True)
    k_attn, k_up, k_down = random.split(key, 3)
    drop = (Dropout(dropout),) if dropout else ()
    return Serial(
        (
            Residual(
                Serial(
                    (
                        LayerNorm.init(d_model, dtype=dtype),
                        MultiHeadAttention.init(
                            k_attn, d_model, num_heads, causal=causal, dtype=dtype
                        ),
                        *drop,
                    )
                )
            ),
            Residual(
                Serial(
                    (
                        LayerNorm.init(d_model, dtype=dtype),
                        Dense.init(k_up, d_model, d_ff, dtype=dtype),
                        GELU(),
                        Dense.init(k_down, d_ff, d_model, dtype=dtype),
                        *drop,
                    )
                )
            ),
        )
    )


def transformer_lm(
    key: random.Key,
    vocab_size: int,
    max_len: int,
    d_model: int,
    num_heads: int,
    num_layers: int,
    *,
    d_ff: int | None = None,
    dropout: float = 0.0,
    dtype: DTypeLike = np.float32,
) -> Serial:
    """A small causal transformer language model: token ids ``(N, T)`` -> logits ``(N, T, V)``::

        Serial((Embedding(V, D), PositionalEmbedding(max_len, D),
                *num_layers causal transformer_blocks, LayerNorm(D), Dense(D, V)))

    ``d_ff`` defaults to ``4 * d_model``. Token and position tables start as
    ``N(0, 0.02**2)``, as GPT-2's. Train it on next-token prediction with
    ``fb.softmax_cross_entropy(logits, ids_shifted)``: the logits at position
    ``t`` see the tokens ``0 .. t`` only. ``T`` may not exceed ``max_len``.
    """
    owner = "transformer_lm"
    num_layers = validation.check_int(owner, "num_layers", num_layers, low=1)
    d_model = validation.check_int(owner, "d_model", d_model, low=1)
    d_ff = 4 * d_model if d_ff is None else d_ff
    k_tok, k_pos, k_out, *k_blocks = random.split(key, 3 + num_layers)
    blocks = (
        transformer_block(k, d_model, num_heads, d_ff, causal=True, dropout=dropout, dtype=dtype)
        for k in k_blocks
    )
    return Serial(
        (
            Embedding.init(k_tok, vocab_size, d_model, std=0.02, dtype=dtype),
            PositionalEmbedding.init(k_pos, max_len, d_model, dtype=dtype),
            *blocks,
            LayerNorm.init(d_model, dtype=dtype),
            Dense.init(k_out, d_model, vocab_size, dtype=dtype),
        )
    )
