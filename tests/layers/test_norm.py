"""LayerNorm and BatchNorm: statistics, gradients, running state, and training with fit."""

import math

import numpy as np
import pytest

import fnbp as fb
from fnbp import checkpoint

KEY = fb.random.key(3)


def affine(cls, c, seed=0, **kw):
    """A float64 layer with non-trivial gamma and beta."""
    g = fb.random.normal(fb.random.key(seed), (2, c))
    return cls(1.0 + 0.5 * g[0], g[1], **kw)


def random_state(c, seed=1):
    u = fb.random.uniform(fb.random.key(seed), (2, c), 0.5, 2.0)
    return fb.BatchNormState(u[0] - 1.0, u[1])


# --------------------------------------------------------------------------- LayerNorm


def test_layernorm_init():
    layer = fb.LayerNorm.init(4)
    assert layer.gamma.dtype == layer.beta.dtype == np.float32
    np.testing.assert_array_equal(layer.gamma, 1.0)
    np.testing.assert_array_equal(layer.beta, 0.0)
    assert layer.eps == 1e-5 and not layer.gamma.flags.writeable
    with pytest.raises(TypeError, match="float"):
        fb.LayerNorm.init(4, dtype=np.int32)
    with pytest.raises(ValueError, match="eps"):
        fb.LayerNorm.init(4, eps=0.0)


def test_layernorm_normalises_each_row(make):
    x = make(5, 8, low=-3.0, high=7.0)
    y = fb.forward(fb.LayerNorm.init(8, dtype=np.float64), x)
    np.testing.assert_allclose(y.mean(axis=-1), 0.0, atol=1e-12)
    var = x.var(axis=-1)
    np.testing.assert_allclose(y.var(axis=-1), var / (var + 1e-5), rtol=1e-12)


def test_layernorm_forward_by_formula(make):
    layer, x = affine(fb.LayerNorm, 6), make(2, 3, 6)
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    expected = (x - mu) / np.sqrt(var + layer.eps) * layer.gamma + layer.beta
    np.testing.assert_allclose(fb.forward(layer, x), expected, rtol=1e-12)
    np.testing.assert_array_equal(fb.forward(layer, x, train=True, key=KEY), fb.forward(layer, x))


@pytest.mark.parametrize("shape", [(1, 5), (4, 5), (2, 3, 4), (3, 1)])
def test_layernorm_check_grads(make, shape):
    report = fb.testing.check_grads(affine(fb.LayerNorm, shape[-1]), make(*shape))
    assert set(report.errors) == {"x", "gamma", "beta"}


def test_layernorm_check_grads_projection(make):
    report = fb.testing.check_grads(affine(fb.LayerNorm, 32), make(16, 32), mode="projection")
    assert report.ok


def test_layernorm_input_gradient_is_orthogonal_to_shifts(make):
    """y does not change when a row is shifted, so each row of g_x sums to 0."""
    g_x, _ = fb.backward(affine(fb.LayerNorm, 5), make(4, 5), make(4, 5))
    np.testing.assert_allclose(g_x.sum(axis=-1), 0.0, atol=1e-12)


def test_layernorm_constant_row_is_finite_without_warnings():
    layer = affine(fb.LayerNorm, 4)
    x = np.array([[2.0, 2.0, 2.0, 2.0], [1e3, -1e3, 1e3, -1e3]])
    with np.errstate(all="raise"):
        y, pullback = fb.vjp(layer, x)
        g_x, grads = pullback(np.ones_like(y))
    np.testing.assert_array_equal(y[0], layer.beta)
    assert np.isfinite(g_x).all() and all(np.isfinite(a).all() for a in fb.tree.leaves(grads))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_layernorm_dtype_preserved(make, dtype):
    layer, x = fb.LayerNorm.init(3, dtype=dtype), make(4, 3, dtype=dtype)
    y, pullback = fb.vjp(layer, x)
    g_x, grads = pullback(np.ones_like(y))
    assert y.dtype == g_x.dtype == grads.gamma.dtype == grads.beta.dtype == dtype


def test_layernorm_casts_other_inputs_to_its_dtype(make):
    layer = fb.LayerNorm.init(3)
    assert fb.forward(layer, make(2, 3)).dtype == np.float32
    assert fb.forward(layer, np.arange(6).reshape(2, 3)).dtype == np.float32


def test_layernorm_shape_errors(make):
    with pytest.raises(
        fb.ShapeError, match=r"LayerNorm\(3\) expects input of shape \(N, \.\.\., 3\)"
    ):
        fb.forward(fb.LayerNorm.init(3), make(2, 4))
    with pytest.raises(fb.ShapeError, match=r"x\[None\]"):
        fb.forward(fb.LayerNorm.init(3), make(3))
    net = fb.Serial((fb.Identity(), fb.LayerNorm.init(3)))
    with pytest.raises(fb.ShapeError, match=r"layers\[1\]"):
        fb.forward(net, make(2, 4))


def test_layernorm_read_only_input_untouched(make):
    x = make(3, 4)
    before = x.copy()
    fb.backward(affine(fb.LayerNorm, 4), x, make(3, 4))
    np.testing.assert_array_equal(x, before)


# --------------------------------------------------------------------------- BatchNorm


def test_batchnorm_init_and_fresh_state():
    layer = fb.BatchNorm.init(3)
    assert (layer.momentum, layer.eps) == (0.9, 1e-5)
    assert layer.gamma.dtype == np.float32
    state = layer.init_state()
    assert type(state) is fb.BatchNormState
    assert fb.tree.allclose(fb.init_state(layer), state, rtol=0, atol=0)
    np.testing.assert_array_equal(state.mean, [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(state.var, [1.0, 1.0, 1.0])
    assert state.mean.dtype == state.var.dtype == np.float32
    assert not state.mean.flags.writeable and not state.var.flags.writeable


@pytest.mark.parametrize("momentum", [-0.1, 1.1, math.nan])
def test_batchnorm_momentum_validated(momentum):
    with pytest.raises(ValueError, match="momentum"):
        fb.BatchNorm.init(3, momentum=momentum)


def test_batchnorm_train_output_has_zero_mean_unit_variance(make):
    x = make(64, 3, low=-5.0, high=9.0)
    y = fb.forward(fb.BatchNorm.init(3, dtype=np.float64), x, train=True)
    var = x.var(axis=0)
    np.testing.assert_allclose(y.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=0), var / (var + 1e-5), rtol=1e-12)


def test_batchnorm_normalises_nhwc_per_channel(make):
    x = make(4, 5, 6, 3, low=-2.0, high=6.0)
    layer = fb.BatchNorm.init(3, dtype=np.float64)
    y, new = fb.forward(layer, x, train=True, state=layer.init_state())
    np.testing.assert_allclose(y.mean(axis=(0, 1, 2)), 0.0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=(0, 1, 2)), 1.0, rtol=1e-4)
    m = 4 * 5 * 6
    np.testing.assert_allclose(new.mean, 0.1 * x.mean(axis=(0, 1, 2)), rtol=1e-12)
    np.testing.assert_allclose(new.var, 0.9 + 0.1 * x.reshape(m, 3).var(axis=0, ddof=1), rtol=1e-12)


def test_batchnorm_momentum_convention_and_unbiased_running_variance(make):
    layer, x = affine(fb.BatchNorm, 4, momentum=0.8), make(10, 4)
    s0 = random_state(4)
    _, s1 = fb.forward(layer, x, train=True, state=s0)
    np.testing.assert_allclose(s1.mean, 0.8 * s0.mean + 0.2 * x.mean(axis=0), rtol=1e-13)
    np.testing.assert_allclose(s1.var, 0.8 * s0.var + 0.2 * x.var(axis=0, ddof=1), rtol=1e-13)


def test_batchnorm_running_averages_converge_to_the_data_statistics():
    layer = fb.BatchNorm.init(3, momentum=0.98, dtype=np.float64)
    mu, sd = np.array([2.0, -1.0, 0.5]), np.array([3.0, 0.5, 1.0])
    state = layer.init_state()
    for k in fb.random.split(KEY, 400):
        x = mu + sd * fb.random.normal(k, (16, 3))
        _, state = fb.forward(layer, x, train=True, state=state)
    assert np.all(np.abs(state.mean - mu) < 0.1 * sd)
    np.testing.assert_allclose(state.var, sd**2, rtol=0.1)


def test_batchnorm_state_passed_in_is_never_changed(make):
    layer, x, s0 = affine(fb.BatchNorm, 3), make(8, 3), random_state(3)
    mean, var = s0.mean.copy(), s0.var.copy()
    _, pullback, s1 = fb.vjp(layer, x, train=True, state=s0)
    pullback(make(8, 3))
    np.testing.assert_array_equal(s0.mean, mean)
    np.testing.assert_array_equal(s0.var, var)
    assert s1 is not s0 and not np.array_equal(s1.mean, s0.mean)
    for a in (s1.mean, s1.var):
        with pytest.raises(ValueError, match="read-only"):
            a[0] = 1.0


def test_batchnorm_inference_on_a_fresh_state(make):
    layer, x = affine(fb.BatchNorm, 3), make(5, 3)
    expected = x * layer.gamma / np.sqrt(1.0 + 1e-5) + layer.beta
    y, _ = fb.forward(layer, x, state=layer.init_state())
    np.testing.assert_allclose(y, expected, rtol=1e-13)


@pytest.mark.parametrize(
    "run",
    [
        lambda net, x: fb.forward(net, x),
        lambda net, x: fb.vjp(net, x),
        lambda net, x: fb.backward(net, x, np.ones((len(x), 3))),
        lambda net, x: net.forward(x),
        lambda net, x: fb.predict(net, x),
        lambda net, x: fb.evaluate(net, fb.mse, x, np.zeros((len(x), 3))),
    ],
)
def test_batchnorm_inference_without_its_state_is_an_error_not_fresh_statistics(make, run):
    net = fb.Serial((fb.Identity(), affine(fb.BatchNorm, 3)))
    with pytest.raises(fb.ModeError, match=r"^layers\[1\]: BatchNorm\(3\) in inference needs its"):
        run(net, make(5, 3))


def test_batchnorm_inference_uses_the_given_state_and_returns_it(make):
    layer, x, s = affine(fb.BatchNorm, 3), make(5, 3), random_state(3)
    y, same = fb.forward(layer, x, state=s)
    assert same is s
    expected = (x - s.mean) / np.sqrt(s.var + layer.eps) * layer.gamma + layer.beta
    np.testing.assert_allclose(y, expected, rtol=1e-13)
    g_x, grads, _ = fb.backward(layer, x, np.ones_like(x), state=s)
    np.testing.assert_allclose(g_x, np.broadcast_to(layer.gamma / np.sqrt(s.var + 1e-5), x.shape))
    np.testing.assert_allclose(grads.beta, [5.0, 5.0, 5.0])


@pytest.mark.parametrize("shape", [(2, 3), (6, 3), (2, 2, 3, 3), (1, 4, 1, 3)])
def test_batchnorm_check_grads_in_training(make, shape):
    """The gradient flows through the batch mean and variance."""
    report = fb.testing.check_grads(affine(fb.BatchNorm, 3), make(*shape), train=True)
    assert set(report.errors) == {"x", "gamma", "beta"}


@pytest.mark.parametrize("shape", [(1, 3), (6, 3), (2, 2, 3, 3)])
def test_batchnorm_check_grads_in_inference(make, shape):
    layer = affine(fb.BatchNorm, 3)
    assert fb.testing.check_grads(layer, make(*shape), state=layer.init_state()).ok
    assert fb.testing.check_grads(layer, make(*shape), state=random_state(3)).ok


def test_batchnorm_training_gradient_is_not_the_affine_one(make):
    layer, x, g = affine(fb.BatchNorm, 3), make(6, 3), make(6, 3)
    g_train, _, _ = fb.backward(layer, x, g, train=True, state=layer.init_state())
    # y does not change when a feature is shifted, so each column of g_x sums to 0.
    np.testing.assert_allclose(g_train.sum(axis=0), 0.0, atol=1e-12)
    g_infer, _, _ = fb.backward(layer, x, g, state=layer.init_state())
    assert not np.allclose(g_train.sum(axis=0), g_infer.sum(axis=0))


def test_batchnorm_need_g_x_false(make):
    layer, x, g = affine(fb.BatchNorm, 3), make(6, 3), make(6, 3)
    g_x, grads = fb.backward(layer, x, g, need_g_x=False, train=True)
    assert g_x is None
    assert fb.tree.allclose(grads, fb.backward(layer, x, g, train=True)[1], rtol=0, atol=0)


def test_batchnorm_training_on_one_sample_raises(make):
    layer = fb.BatchNorm.init(3)
    with pytest.raises(fb.ShapeError, match=r"at least 2 values per feature.*drop_last"):
        fb.forward(layer, make(1, 3), train=True, state=layer.init_state())
    fb.forward(layer, make(1, 3), state=layer.init_state())  # inference on one sample is fine
    fb.forward(layer, make(1, 2, 2, 3), train=True)  # 4 values per channel


def test_batchnorm_constant_feature_is_finite_without_warnings():
    layer = affine(fb.BatchNorm, 2)
    x = np.array([[5.0, 1e3], [5.0, -1e3], [5.0, 1e3]])
    with np.errstate(all="raise"):
        y, pullback, state = fb.vjp(layer, x, train=True, state=layer.init_state())
        g_x, _ = pullback(np.ones_like(y))
    np.testing.assert_array_equal(y[:, 0], layer.beta[0])
    assert np.isfinite(g_x).all() and state.var[0] == 0.9


def test_batchnorm_rejects_a_wrong_state(make):
    layer = fb.BatchNorm.init(3)
    with pytest.raises(fb.StructureError, match=r"BatchNorm\(3\) needs a BatchNormState"):
        fb.forward(layer, make(2, 3), train=True, state=(1, 2))
    bad = fb.BatchNormState(np.zeros(4, np.float32), np.ones(4, np.float32))
    with pytest.raises(fb.StructureError, match=r"shape \(3,\)"):
        fb.forward(layer, make(2, 3), state=bad)
    wrong_dtype = fb.BatchNormState(np.zeros(3), np.ones(3))
    with pytest.raises(fb.StructureError, match="float32"):
        fb.forward(layer, make(2, 3), state=wrong_dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batchnorm_dtype_preserved(make, dtype):
    layer, x = fb.BatchNorm.init(3, dtype=dtype), make(4, 3, dtype=dtype)
    y, pullback, state = fb.vjp(layer, x, train=True, state=layer.init_state())
    g_x, grads = pullback(np.ones_like(y))
    leaves = [y, g_x, grads.gamma, grads.beta, state.mean, state.var]
    assert {a.dtype for a in leaves} == {np.dtype(dtype)}


def test_batchnorm_read_only_input_untouched(make):
    x = make(4, 3)
    before = x.copy()
    fb.backward(affine(fb.BatchNorm, 3), x, make(4, 3), train=True, state=random_state(3))
    np.testing.assert_array_equal(x, before)


# --------------------------------------------------------------------------- with fit


def _data(n=96):
    x = fb.random.normal(fb.random.key(11), (n, 4), dtype=np.float32) * 2.0 + 1.0
    y = (x[:, :1] - x[:, 1:2] > 0).astype(np.float32)
    x.flags.writeable = False
    return x, y


def _net():
    k1, k2 = fb.random.split(fb.random.key(12))
    return fb.Serial(
        (
            fb.Dense.init(k1, 4, 16),
            fb.BatchNorm.init(16),
            fb.ReLU(),
            fb.Dropout(0.2),
            fb.Dense.init(k2, 16, 1),
        )
    )


def _fit(key=KEY, **kw):
    x, y = _data()
    args = {"optimizer": fb.optim.adam(0.02), "epochs": 8, "batch_size": 16, "progress": False}
    return fb.fit(_net(), fb.sigmoid_binary_cross_entropy, x, y, key=key, **{**args, **kw})


def test_fit_threads_batchnorm_state_and_learns():
    params, history = _fit(metrics=("accuracy",))
    state = history.train_state.model_state
    assert type(state) is tuple and len(state) == 5
    assert state[0] is None and state[2:] == (None, None, None)
    assert type(state[1]) is fb.BatchNormState
    assert not np.allclose(state[1].mean, 0.0)
    assert history.train_metrics["accuracy"][-1] > 0.85
    x, y = _data()
    with_state = fb.evaluate(params, fb.sigmoid_binary_cross_entropy, x, y, state=state)
    logits = fb.forward(params, x, state=state)[0]
    assert with_state["loss"] == pytest.approx(float(fb.sigmoid_binary_cross_entropy(logits, y)))
    assert with_state == fb.evaluate(history.train_state, fb.sigmoid_binary_cross_entropy, x, y)
    fresh = fb.evaluate(params, fb.sigmoid_binary_cross_entropy, x, y, state=fb.init_state(params))
    assert with_state["loss"] != pytest.approx(fresh["loss"])
    with pytest.raises(fb.ModeError, match=r"^layers\[1\]: BatchNorm\(16\)"):
        fb.evaluate(params, fb.sigmoid_binary_cross_entropy, x, y)  # the state is not forgotten


def test_fit_same_key_same_bits_other_key_other_run():
    p1, h1 = _fit(epochs=2)
    _p2, h2 = _fit(epochs=2)
    both = fb.tree.leaves(h1.train_state), fb.tree.leaves(h2.train_state)
    assert all(a.tobytes() == b.tobytes() for a, b in zip(*both, strict=True))
    p3, _ = _fit(key=fb.random.key(4), epochs=2)
    assert not fb.tree.allclose(p1, p3)


def test_checkpoint_round_trips_the_batchnorm_state(tmp_path):
    params, history = _fit(epochs=2)
    ts = history.train_state
    checkpoint.save(tmp_path / "run", ts)
    like = fb.TrainState.create(_net(), fb.optim.adam(0.02))
    loaded = checkpoint.load(tmp_path / "run", like=like).tree
    bn = loaded.model_state[1]
    assert type(bn) is fb.BatchNormState and loaded.model_state[0] is None
    np.testing.assert_array_equal(bn.mean, ts.model_state[1].mean)
    np.testing.assert_array_equal(bn.var, ts.model_state[1].var)
    assert bn.mean.dtype == np.float32 and not bn.var.flags.writeable
    assert fb.tree.allclose(loaded.params, params, rtol=0, atol=0)
    assert int(loaded.epoch) == 2
    x, _ = _data()
    np.testing.assert_array_equal(fb.predict(loaded, x), fb.predict(ts, x))


@pytest.mark.parametrize("cls", [fb.LayerNorm, fb.BatchNorm])
def test_a_huge_number_of_features_is_refused_before_allocating(cls):
    with pytest.raises(ValueError, match="gamma and beta would need"):
        cls.init(2**40)


def test_params_of_two_dtypes_are_a_dtype_error():
    layer = fb.LayerNorm(np.ones(3, np.float32), np.zeros(3))
    with pytest.raises(fb.DTypeError, match="LayerNorm needs parameters of one dtype"):
        fb.forward(layer, np.ones((2, 3)))
