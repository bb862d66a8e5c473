"""The pre-LayerNorm transformer block and the small causal language model built from it."""

from __future__ import annotations

import numpy as np
import pytest

import fnbp as fb


def test_block_is_the_expression_it_documents(make):
    block = fb.transformer_block(fb.random.key(0), 8, 2, 16)
    attn, ff = block.layers
    assert [type(layer) for layer in attn.f.layers] == [fb.LayerNorm, fb.MultiHeadAttention]
    assert [type(layer) for layer in ff.f.layers] == [fb.LayerNorm, fb.Dense, fb.GELU, fb.Dense]
    assert attn.f.layers[1].causal and attn.f.layers[1].num_heads == 2
    assert ff.f.layers[1].W.shape == (8, 16) and ff.f.layers[3].W.shape == (16, 8)
    x = make(2, 5, 8, dtype=np.float32)
    x1 = x + fb.forward(attn.f, x)  # steps 1-3 of the derivation page
    y = x1 + fb.forward(ff.f, x1)  # steps 4-6
    np.testing.assert_array_equal(fb.forward(block, x), y)


def test_block_options():
    encoder = fb.transformer_block(fb.random.key(0), 4, 1, 8, causal=False, dtype=np.float64)
    assert not encoder.layers[0].f.layers[1].causal
    assert encoder.layers[1].f.layers[1].W.dtype == np.float64
    dropped = fb.transformer_block(fb.random.key(0), 4, 1, 8, dropout=0.1)
    assert [type(r.f.layers[-1]) for r in dropped.layers] == [fb.Dropout, fb.Dropout]
    x = np.ones((2, 3, 4), np.float32)
    with pytest.raises(fb.ModeError, match="needs a random key"):
        fb.forward(dropped, x, train=True)
    plain = fb.transformer_block(fb.random.key(0), 4, 1, 8)  # the same weights
    np.testing.assert_array_equal(fb.forward(dropped, x), fb.forward(plain, x))  # inference
    with pytest.raises(ValueError, match=r"dropout must be a finite real number in \[0, 1\)"):
        fb.transformer_block(fb.random.key(0), 4, 1, 8, dropout=1.0)


def test_language_model_is_causal_and_checks_its_length():
    lm = fb.transformer_lm(fb.random.key(1), 7, 6, 8, 2, 2)
    ids = np.random.default_rng(0).integers(0, 7, (3, 6))
    logits = fb.forward(lm, ids)
    assert logits.shape == (3, 6, 7) and logits.dtype == np.float32
    changed = ids.copy()
    changed[:, 4] = (changed[:, 4] + 1) % 7
    np.testing.assert_array_equal(fb.forward(lm, changed)[:, :4], logits[:, :4])
    with pytest.raises(fb.ShapeError, match=r"layers\[1\]: .*T = 7 positions.*max_len = 6"):
        fb.forward(lm, np.zeros((1, 7), int))


def test_language_model_gradients_and_checkpoint(tmp_path):
    lm = fb.transformer_lm(fb.random.key(2), 5, 4, 4, 2, 1, d_ff=6, dtype=np.float64)
    ids = np.random.default_rng(0).integers(0, 5, (2, 4))
    report = fb.testing.check_grads(lm, ids, mode="projection")
    assert len(report.errors) == len(fb.tree.leaves(lm))  # ids are not differentiable
    fb.checkpoint.save(tmp_path / "lm", lm)
    loaded = fb.checkpoint.load(tmp_path / "lm.npz", like=lm).tree
    assert fb.tree.allclose(loaded, lm, rtol=0.0, atol=0.0)


def test_language_model_learns_to_copy_from_two_positions_back():
    vocab, length, n = 6, 9, 32
    rng = np.random.default_rng(0)

    def batch() -> tuple[np.ndarray, np.ndarray]:
        seq = np.tile(rng.integers(0, vocab, (n, 2)), (1, 5))[:, :length]  # a b a b ...
        target = seq[:, 1:].copy()
        target[:, 0] = -1  # the second token cannot be predicted from the first
        return seq[:, :-1], target

    lm = fb.transformer_lm(fb.random.key(0), vocab, length, 16, 2, 1)
    opt, loss_fn = fb.optim.adam(1e-2), fb.SoftmaxCrossEntropy(ignore_label=-1)
    state = opt.init(lm)
    for _ in range(30):
        loss, grads = fb.value_and_grad(lm, loss_fn, *batch())
        lm, state = fb.optim.step(opt, lm, grads, state)
    assert loss < 0.2
    x, target = batch()
    assert (fb.forward(lm, x).argmax(-1)[:, 1:] == target[:, 1:]).all()
