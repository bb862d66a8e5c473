"""Attention: against naive loops, causal and padding masks, heads, fully masked rows, inputs."""

from __future__ import annotations

import doctest
import importlib
import math

import attrs
import numpy as np
import pytest

import fnbp as fb
from fnbp.layers.attention import _merge, _split

# ----------------------------------------------------------------------------- naive references


def naive_attention(q, k, v, may_look):
    """One query at a time, one key at a time: the definition, with the page's rule for a
    fully masked row (every score the same finite number: uniform weights)."""
    n, t_q, d = q.shape
    out = np.zeros((n, t_q, v.shape[-1]))
    for i in range(n):
        for a in range(t_q):
            keys = [j for j in range(k.shape[1]) if may_look[i, a, j]]
            if not keys:  # fully masked: the mean of all values
                out[i, a] = v[i].mean(axis=0)
                continue
            scores = np.array([q[i, a] @ k[i, j] / math.sqrt(d) for j in keys])
            w = np.exp(scores - scores.max())
            w /= w.sum()
            out[i, a] = sum(wj * v[i, j] for wj, j in zip(w, keys, strict=True))
    return out


def may_look(n, t_q, t_k, causal=False, key_mask=None):
    look = np.ones((n, t_q, t_k), bool)
    if causal:
        look &= np.tri(t_q, t_k, dtype=bool)
    if key_mask is not None:
        look &= key_mask[:, None, :]
    return look


def naive_mha(layer, x_q, x_k, x_v, look):
    """Each head on its own: project, attend with naive_attention, concatenate, project out."""
    h = layer.num_heads
    q = x_q @ layer.W_q + layer.b_q
    k = x_k @ layer.W_k + layer.b_k  # b_k added here: it must make no difference
    v = x_v @ layer.W_v + layer.b_v
    dh = q.shape[-1] // h
    heads = [
        naive_attention(*(a[..., j * dh : (j + 1) * dh] for a in (q, k, v)), look) for j in range(h)
    ]
    return np.concatenate(heads, axis=-1) @ layer.W_o + layer.b_o


def mha(d=8, heads=2, causal=False, dtype=np.float64, seed=0):
    layer = fb.MultiHeadAttention.init(fb.random.key(seed), d, heads, causal=causal, dtype=dtype)
    rng = np.random.default_rng(seed + 1)
    return attrs.evolve(layer, **{f"b_{r}": rng.normal(size=d).astype(dtype) for r in "qkvo"})


# ----------------------------------------------------------------------------- the function


@pytest.mark.parametrize("causal", [False, True])
def test_attention_function_matches_the_loop(make, causal):
    q, k, v = make(2, 4, 3), make(2, 5, 3), make(2, 5, 2)
    mask = np.array([[1, 1, 0, 1, 1], [0, 1, 1, 1, 0]], bool)
    out = fb.attention(q, k, v, mask[:, None, :], causal=causal)
    expected = naive_attention(q, k, v, may_look(2, 4, 5, causal, mask))
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-14)


def test_attention_vjp_agrees_with_the_layer_and_finite_differences(make):
    q, k, v = make(2, 3, 4), make(2, 4, 4), make(2, 4, 5)
    g = make(2, 3, 5)
    out, pullback = fb.attention_vjp(q, k, v, causal=True)
    y, layer_pullback = fb.vjp(fb.Attention(causal=True), (q, k, v))
    np.testing.assert_array_equal(out, y)
    for a, b in zip(pullback(g), layer_pullback(g)[0], strict=True):
        np.testing.assert_array_equal(a, b)
    fb.testing.check_grads(fb.Attention(causal=True), (q, k, v))


def test_attention_function_takes_a_full_3d_mask(make):
    q, k, v = make(2, 3, 2), make(2, 4, 2), make(2, 4, 2)
    look = np.random.default_rng(0).random((2, 3, 4)) > 0.4
    np.testing.assert_allclose(fb.attention(q, k, v, look), naive_attention(q, k, v, look))
    shared = look[:1]  # (1, Tq, Tk): one mask for every sample
    expected = naive_attention(q, k, v, np.broadcast_to(shared, look.shape))
    np.testing.assert_allclose(fb.attention(q, k, v, shared), expected)


def test_attention_function_refuses_an_ambiguous_2d_mask(make):
    q = make(3, 3, 2)
    with pytest.raises(fb.ShapeError, match=r"mask must have shape \(N, Tq, Tk\), got \(3, 3\)"):
        fb.attention(q, q, q, np.ones((3, 3), bool))
    with pytest.raises(fb.DTypeError, match="mask must be bool"):
        fb.attention(q, q, q, np.ones((3, 3, 3)))


def test_attention_function_checks_shapes_and_dtypes(make):
    q = make(2, 3, 4)
    with pytest.raises(fb.ShapeError, match=r"q \(N, Tq, d\), k \(N, Tk, d\)"):
        fb.attention(q, make(2, 3, 5), make(2, 3, 5))
    with pytest.raises(fb.DTypeError, match="one dtype, got float64, float32 and float64"):
        fb.attention(q, q.astype(np.float32), q)
    with pytest.raises(fb.ShapeError, match="Tk, d >= 1"):
        fb.attention(q, make(2, 0, 4), make(2, 0, 4))
    with pytest.raises(fb.ShapeError, match="one size d >= 1"):
        fb.forward(fb.Attention(), (make(2, 3, 0), make(2, 3, 0), make(2, 3, 1)))


# ----------------------------------------------------------------------------- masks


@pytest.mark.parametrize("layer", [fb.Attention(causal=True), mha(causal=True)], ids=["att", "mha"])
def test_causal_a_later_position_changes_no_earlier_output(make, layer):
    x = np.array(make(2, 6, 8))
    y = fb.forward(layer, x)
    for t in range(6):
        changed = x.copy()
        changed[:, t] += 1.0
        y2 = fb.forward(layer, changed)
        np.testing.assert_array_equal(y2[:, :t], y[:, :t])
        assert not np.allclose(y2[:, t:], y[:, t:])


def test_causal_gradients_do_not_flow_backwards_in_time(make):
    layer, x = mha(causal=True), make(1, 5, 8)
    g_y = np.zeros((1, 5, 8))
    g_y[0, 2] = 1.0  # the loss sees output position 2 only
    g_x, _ = fb.backward(layer, x, g_y)
    np.testing.assert_array_equal(g_x[0, 3:], 0.0)
    assert np.abs(g_x[0, :3]).min() > 0


def test_masked_keys_change_nothing(make):
    layer = mha()
    q, kv = make(2, 3, 8), np.array(make(2, 5, 8))
    mask = np.array([[1, 1, 0, 1, 0], [1, 0, 0, 0, 1]], bool)
    y = fb.forward(layer, {"q": q, "kv": kv, "mask": mask})
    kv[~mask] = 1000.0 * np.random.default_rng(0).normal(size=(int((~mask).sum()), 8))
    x = {"q": q, "kv": kv, "mask": mask}
    np.testing.assert_allclose(fb.forward(layer, x), y, rtol=1e-12)
    g_x, _ = fb.backward(layer, x, make(2, 3, 8))
    assert g_x["mask"] is None
    np.testing.assert_array_equal(g_x["kv"][~mask], 0.0)
    assert np.abs(g_x["kv"][mask]).min() > 0


def test_mha_matches_per_head_loops_with_causal_and_padding(make):
    layer = mha(d=6, heads=3, causal=True)
    x = make(2, 4, 6)
    mask = np.array([[1, 1, 1, 0], [0, 1, 1, 1]], bool)
    y = fb.forward(layer, {"x": x, "mask": mask})
    expected = naive_mha(layer, x, x, x, may_look(2, 4, 4, True, mask))
    np.testing.assert_allclose(y, expected, rtol=1e-10, atol=1e-12)


def test_mha_cross_attention_matches_the_loop(make):
    layer = mha()
    q, k, v = make(2, 3, 8), make(2, 5, 8), make(2, 5, 8)
    expected = naive_mha(layer, q, k, v, may_look(2, 3, 5))
    np.testing.assert_allclose(fb.forward(layer, (q, k, v)), expected, rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------- fully masked rows


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_fully_masked_row_attends_uniformly_without_warnings(make, dtype):
    q, k, v = (1000.0 * make(2, 3, 4, dtype=dtype) for _ in range(3))
    mask = np.array([[0, 0, 0], [1, 0, 1]], bool)  # sample 0 has no real key
    with np.errstate(all="raise"):
        y, pullback = fb.vjp(fb.Attention(causal=True), {"q": q, "k": k, "v": v, "mask": mask})
        g_x, _ = pullback(np.ones_like(y))
    assert y.dtype == dtype
    np.testing.assert_allclose(y[0], np.broadcast_to(v[0].mean(axis=0), (3, 4)), rtol=1e-6)
    np.testing.assert_array_equal(y[1, 1], y[1, 0])  # query 1 sees key 0 only
    np.testing.assert_array_equal(y[1, 0], v[1, 0])
    np.testing.assert_array_equal(g_x["q"][0], 0.0)  # masked scores are constants
    np.testing.assert_array_equal(g_x["k"][0], 0.0)
    np.testing.assert_allclose(g_x["v"][0], np.full((3, 4), 1.0), rtol=1e-6)  # 3 rows x 1/3
    assert all(np.isfinite(a).all() for a in (g_x["q"], g_x["k"], g_x["v"]))


def test_a_fully_masked_sample_in_mha_is_finite_and_checked(make):
    layer = mha(d=4, heads=2)
    x = {"x": make(2, 3, 4), "mask": np.array([[0, 0, 0], [1, 1, 0]], bool)}
    with np.errstate(all="raise"):
        g_x, grads = fb.backward(layer, x, make(2, 3, 4))
    assert np.isfinite(g_x["x"]).all() and np.isfinite(grads.W_q).all()
    fb.testing.check_grads(layer, x)


# ----------------------------------------------------------------------------- heads, projections


def test_split_and_merge_heads_round_trip(make):
    a = make(2, 5, 12)
    heads = _split(a, 3)
    assert heads.shape == (2, 5, 3, 4)
    np.testing.assert_array_equal(heads[:, :, 1], a[..., 4:8])  # head j: columns j*dh..
    np.testing.assert_array_equal(_merge(heads), a)
    assert np.shares_memory(heads, a)  # a view, no copy


def test_one_head_is_attention_of_the_projections(make):
    layer, x = mha(d=4, heads=1), make(3, 5, 4)
    q, k, v = (
        x @ W + b for W, b in ((layer.W_q, layer.b_q), (layer.W_k, 0), (layer.W_v, layer.b_v))
    )
    expected = fb.attention(q, k, v) @ layer.W_o + layer.b_o
    np.testing.assert_allclose(fb.forward(layer, x), expected, rtol=1e-12)


def test_b_k_has_no_effect_and_an_exactly_zero_gradient(make):
    layer, x = mha(), make(2, 4, 8)
    _, grads = fb.backward(layer, x, make(2, 4, 8))
    np.testing.assert_array_equal(grads.b_k, 0.0)
    moved = fb.replace(layer, b_k=layer.b_k + 100.0)
    np.testing.assert_array_equal(fb.forward(moved, x), fb.forward(layer, x))
    # adding b_k, as the naive loop does, changes the scores by a constant per row only
    expected = naive_mha(moved, x, x, x, may_look(2, 4, 4))
    np.testing.assert_allclose(fb.forward(layer, x), expected, rtol=1e-10, atol=1e-12)


def test_every_input_form_computes_the_same(make):
    layer, x = mha(), make(2, 3, 8)
    y = fb.forward(layer, x)
    forms = [(x, x, x), {"x": x}, {"q": x, "kv": x}, {"q": x, "k": x, "v": x}]
    for form in forms:
        np.testing.assert_allclose(fb.forward(layer, form), y, rtol=1e-13)
    g_y = make(2, 3, 8)
    g_x, _ = fb.backward(layer, x, g_y)
    g_kv, _ = fb.backward(layer, {"q": x, "kv": x}, g_y)
    g_qkv, _ = fb.backward(layer, (x, x, x), g_y)
    assert list(g_kv) == ["q", "kv"] and type(g_qkv) is tuple
    np.testing.assert_allclose(g_kv["q"] + g_kv["kv"], g_x, rtol=1e-12)
    np.testing.assert_allclose(sum(g_qkv), g_x, rtol=1e-12)


def test_gradient_keeps_the_dict_order_and_gives_none_for_the_mask(make):
    x = {"mask": np.ones((2, 3), bool), "kv": make(2, 3, 8), "q": make(2, 2, 8)}
    g_x, _ = fb.backward(mha(), x, make(2, 2, 8))
    assert list(g_x) == ["mask", "kv", "q"] and g_x["mask"] is None


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_is_kept_and_inputs_are_cast_once(make, dtype):
    layer = mha(dtype=dtype)
    y, pullback = fb.vjp(layer, {"q": make(2, 3, 8), "kv": make(2, 4, 8, dtype=np.float32)})
    g_x, grads = pullback(np.ones_like(y))
    assert y.dtype == g_x["q"].dtype == g_x["kv"].dtype == grads.W_q.dtype == dtype


# ----------------------------------------------------------------------------- errors


def test_bad_inputs_get_clear_errors(make):
    layer, x = mha(), make(2, 3, 8)
    with pytest.raises(fb.StructureError, match=r"expects an array x \(N, T, d\), a tuple"):
        fb.forward(layer, {"q": x, "key": x})
    with pytest.raises(fb.StructureError, match="got a list"):
        layer.forward([x, x])
    with pytest.raises(
        fb.ShapeError,
        match=r"expects sources of shape \(N, T, 8\), got q \(2, 3, 8\), kv \(2, 3, 6\)",
    ):
        fb.forward(layer, {"q": x, "kv": make(2, 3, 6)})
    with pytest.raises(fb.ShapeError, match="share the batch size N"):
        fb.forward(layer, {"q": x, "kv": make(3, 3, 8)})
    with pytest.raises(fb.ShapeError, match=r"x must have shape \(N, T, d\), got \(3, 8\)"):
        fb.forward(layer, x[0])
    with pytest.raises(fb.ShapeError, match=r"mask must have shape \(N, Tk\) = \(2, 3\)"):
        fb.forward(layer, {"x": x, "mask": np.ones((2, 4), bool)})
    with pytest.raises(fb.DTypeError, match="mask must be bool"):
        fb.forward(layer, {"x": x, "mask": np.ones((2, 3))})
    with pytest.raises(fb.DTypeError, match="sources must have one dtype"):
        fb.forward(fb.Attention(), {"q": x, "kv": x.astype(np.float32)})


def test_bad_hyperparameters_and_params():
    with pytest.raises(ValueError, match="d_model must be a multiple of num_heads = 3"):
        fb.MultiHeadAttention.init(fb.random.key(0), 8, 3)
    with pytest.raises(ValueError, match="num_heads must be an integer >= 1"):
        fb.MultiHeadAttention.init(fb.random.key(0), 8, 0)
    with pytest.raises(ValueError, match="causal must be True or False"):
        fb.Attention(causal="yes")
    broken = fb.replace(mha(), W_k=np.ones((8, 4)))
    with pytest.raises(fb.ShapeError, match=r"four \(D, D\) weights"):
        fb.forward(broken, np.ones((1, 2, 8)))


def test_errors_inside_a_serial_name_the_layer():
    net = fb.Serial((mha(), fb.LayerNorm.init(8)))
    with pytest.raises(fb.ShapeError, match=r"layers\[0\]: .*mask must have shape"):
        fb.forward(net, {"x": np.ones((1, 2, 8)), "mask": np.ones((1, 3), bool)})


# ----------------------------------------------------------------------------- PyTorch's layout


def torch_mha_reference(x_q, x_kv, in_w, in_b, out_w, out_b, heads, key_padding_mask):
    """nn.MultiheadAttention(batch_first=True) as F.multi_head_attention_forward computes it,
    in PyTorch's layouts: in_proj (3E, E) rows [q; k; v], y = x W^T + b, q scaled by
    1/sqrt(head_dim), key_padding_mask True = ignore."""
    e = x_q.shape[-1]
    q = x_q @ in_w[:e].T + in_b[:e]
    k = x_kv @ in_w[e : 2 * e].T + in_b[e : 2 * e]
    v = x_kv @ in_w[2 * e :].T + in_b[2 * e :]
    n, t, s, dh = x_q.shape[0], x_q.shape[1], x_kv.shape[1], e // heads
    q = q.reshape(n, t, heads, dh).transpose(0, 2, 1, 3) / math.sqrt(dh)
    k = k.reshape(n, s, heads, dh).transpose(0, 2, 1, 3)
    v = v.reshape(n, s, heads, dh).transpose(0, 2, 1, 3)
    scores = q @ k.transpose(0, 1, 3, 2)
    scores = np.where(key_padding_mask[:, None, None, :], -np.inf, scores)
    w = np.exp(scores - scores.max(axis=-1, keepdims=True))
    w /= w.sum(axis=-1, keepdims=True)
    o = (w @ v).transpose(0, 2, 1, 3).reshape(n, t, e)
    return o @ out_w.T + out_b


def test_from_torch_reproduces_pytorch_multihead_attention(make):
    rng = np.random.default_rng(5)
    e, heads = 6, 3
    in_w, in_b = rng.normal(size=(3 * e, e)), rng.normal(size=3 * e)
    out_w, out_b = rng.normal(size=(e, e)), rng.normal(size=e)
    layer = fb.MultiHeadAttention.from_torch(in_w, in_b, out_w, out_b, heads)
    np.testing.assert_array_equal(layer.W_k, in_w[e : 2 * e].T)
    np.testing.assert_array_equal(layer.b_v, in_b[2 * e :])
    q, kv = make(2, 3, e), make(2, 4, e)
    ignore = np.array([[False, False, True, False], [True, False, False, False]])
    expected = torch_mha_reference(q, kv, in_w, in_b, out_w, out_b, heads, ignore)
    y = fb.forward(layer, {"q": q, "kv": kv, "mask": ~ignore})
    np.testing.assert_allclose(y, expected, rtol=1e-10, atol=1e-12)
    no_bias = fb.MultiHeadAttention.from_torch(in_w, None, out_w, None, heads)
    np.testing.assert_array_equal(no_bias.b_q, 0.0)


def test_from_torch_checks_its_arrays():
    w = np.ones((9, 3))
    with pytest.raises(fb.ShapeError, match=r"in_proj_weight must have shape \(9, 3\), got"):
        fb.MultiHeadAttention.from_torch(np.ones((8, 3)), None, np.ones((3, 3)), None, 1)
    with pytest.raises(fb.DTypeError, match="out_proj_weight must be float64"):
        fb.MultiHeadAttention.from_torch(w, None, np.ones((3, 3), np.float32), None, 1)
    with pytest.raises(ValueError, match="num_heads must be a divisor of D = 3"):
        fb.MultiHeadAttention.from_torch(w, None, np.ones((3, 3)), None, 2)


def test_docstring_examples_run():
    result = doctest.testmod(importlib.import_module("fnbp.layers.attention"))
    assert result.attempted > 0 and result.failed == 0
