"""The one table of fused (layer, loss) pairs: cross-entropy after a Sigmoid.

``fb.FUSIONS[(Sigmoid, BinaryCrossEntropy)]`` hands ``fb.value_and_grad`` (and so
``train_step`` and ``fit``) a loss on the Sigmoid's *input*
(``BinaryCrossEntropyOfSigmoid``), so the Sigmoid's forward and backward passes
are skipped. These tests check that the fused
loss equals the two-step composition (Sigmoid, then binary cross-entropy,
then the Sigmoid's backward pass), bit for bit where probabilities are
clipped; that ``value_and_grad`` through a ``Serial`` equals the unfused
``vjp``/pullback computation in inference and in training; that other cases
keep the normal path; and that errors and the caller's arrays are unaffected.
All inputs are read-only, and computations run under ``np.errstate(all="raise")``.
"""

import numpy as np
import pytest

import fnbp as fb

FUSED = fb.losses.binary_cross_entropy_of_sigmoid
BCE = fb.binary_cross_entropy
SHAPES = [(5, 1), (7, 3), (4,)]


class MySigmoid(fb.Sigmoid):
    """A subclass: computes the same, but is not *the* Sigmoid, so it is not absorbed."""


# ---------------------------------------------------------------- helpers


def ro(a) -> np.ndarray:
    """``a`` as an array that raises on any write."""
    a = np.array(a)
    a.setflags(write=False)
    return a


def logits(shape, dtype=np.float64, seed=0, scale=3.0) -> np.ndarray:
    return ro((np.random.default_rng(seed).normal(size=shape) * scale).astype(dtype))


def targets(shape, kind, dtype=np.float64, seed=1) -> np.ndarray:
    """Hard 0/1 targets (as floats or as bools) or soft targets in [0, 1]."""
    rng = np.random.default_rng(seed)
    if kind == "soft":
        return ro(rng.uniform(0.0, 1.0, shape).astype(dtype))
    hard = rng.integers(0, 2, shape)
    return ro(hard.astype(bool if kind == "bool" else dtype))


def two_step(z, y):
    """The unfused loss on ``z``: Sigmoid forward, BCE value_and_grad, Sigmoid backward."""
    p, pullback = fb.vjp(fb.Sigmoid(), z)
    value, g_p = BCE.value_and_grad(p, y)
    return value, pullback(g_p)[0]


def fused_and_two_step(z, y):
    with np.errstate(all="raise"):
        return FUSED.value_and_grad(z, y), two_step(z, y)


def unfused_value_and_grad(net, loss, x, target, **ctx):
    """``fb.value_and_grad`` by hand: full vjp, then ``loss``, then the pullback."""
    y, pullback, *new_state = fb.vjp(net, x, need_g_x=False, **ctx)
    value, g_y = loss.value_and_grad(y, target)
    return (value, pullback(g_y)[1], *new_state)


def dense(seed, n_in, n_out):
    return fb.Dense.init(fb.random.key(seed), n_in, n_out, dtype=np.float64)


def bce_net():
    return fb.Serial((dense(0, 3, 4), fb.Tanh(), dense(1, 4, 1), fb.Sigmoid()))


def batch(n=6, n_in=3, n_out=1, seed=2):
    """A read-only input ``x`` and hard 0/1 targets ``t``."""
    return logits((n, n_in), seed=seed, scale=1.0), targets((n, n_out), "hard", seed=seed + 1)


def snapshot(*trees) -> list[np.ndarray]:
    """Copies of every array leaf, asserting that each one is read-only."""
    arrays = [leaf for t in trees for leaf in fb.tree.leaves(t)]
    assert all(not a.flags.writeable for a in arrays)
    return [a.copy() for a in arrays]


def assert_unchanged(before, *trees):
    after = [leaf for t in trees for leaf in fb.tree.leaves(t)]
    assert len(after) == len(before)
    for old, new in zip(before, after, strict=True):
        np.testing.assert_array_equal(new, old, strict=True)


# ---------------------------------------------------------------- 1. the table


def test_the_table_holds_the_sigmoid_and_cross_entropy_pair():
    assert fb.FUSIONS == {(fb.Sigmoid, fb.BinaryCrossEntropy): FUSED}
    assert isinstance(FUSED, fb.losses.BinaryCrossEntropyOfSigmoid)


@pytest.fixture
def fused_calls(monkeypatch):
    """Records every call of the fused loss made by value_and_grad."""
    calls = []
    original = fb.losses.BinaryCrossEntropyOfSigmoid.value_and_grad

    def spy(self, pred, target):
        calls.append(np.shape(pred))
        return original(self, pred, target)

    monkeypatch.setattr(fb.losses.BinaryCrossEntropyOfSigmoid, "value_and_grad", spy)
    return calls


@pytest.mark.parametrize(
    "last",
    [fb.Tanh(), fb.Identity(), MySigmoid(), fb.Serial((fb.Sigmoid(),))],
    ids=["tanh", "identity", "sigmoid_subclass", "serial_of_sigmoid"],
)
def test_no_other_output_layer_is_fused(fused_calls, last):
    net = fb.Serial((dense(0, 3, 1), fb.Sigmoid(), last))
    x, t = batch()
    fb.value_and_grad(net, BCE, x, t)
    assert fused_calls == []


@pytest.mark.parametrize(
    "loss", [fb.mse, fb.sigmoid_binary_cross_entropy], ids=lambda loss: type(loss).__name__
)
def test_no_other_loss_is_fused(fused_calls, loss):
    x, t = batch()
    fb.value_and_grad(bce_net(), loss, x, t)
    assert fused_calls == []


def test_value_and_grad_train_step_and_fit_all_use_the_table(fused_calls):
    net, (x, t) = bce_net(), batch()
    fb.value_and_grad(net, BCE, x, t)
    opt = fb.optim.sgd(0.1)
    fb.train_step(fb.TrainState.create(net, opt), BCE, opt, x, t)
    fb.fit(net, BCE, x, t, optimizer=opt, epochs=1, batch_size=3, key=None, progress=False)
    assert fused_calls == [(6, 1), (6, 1), (3, 1), (3, 1)]


# ---------------------------------------------------------------- 2. fused == two-step


@pytest.mark.parametrize("kind", ["hard", "bool", "soft"])
@pytest.mark.parametrize("shape", SHAPES)
def test_fused_equals_two_step_float64(shape, kind):
    z, y = logits(shape), targets(shape, kind)
    (value, g), (value2, g2) = fused_and_two_step(z, y)
    np.testing.assert_allclose(value, value2, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(g, g2, rtol=1e-12, atol=1e-15)
    assert value.dtype == g.dtype == np.float64
    assert g.shape == shape


@pytest.mark.parametrize("kind", ["hard", "soft"])
@pytest.mark.parametrize("shape", SHAPES)
def test_fused_equals_two_step_float32(shape, kind):
    # |z| <= 6: beyond, the float32 rounding of tanh(z/2) (about 3e-8 absolute in
    # p and 1 - p) is amplified by log near 0, and the two paths, which round
    # differently, drift apart by more than 1e-5 (about 4e-5 at |z| = 10).
    z = ro(np.clip(logits(shape), -6.0, 6.0).astype(np.float32))
    y = targets(shape, kind, dtype=np.float32)
    (value, g), (value2, g2) = fused_and_two_step(z, y)
    np.testing.assert_allclose(value, value2, rtol=1e-5)
    np.testing.assert_allclose(g, g2, rtol=1e-5, atol=1e-7)
    assert type(value) is np.float32
    assert g.dtype == np.float32


def test_fused_gradient_equals_two_step_up_to_saturation():
    # Every z in [-36, 36] is below the clipping threshold (e^-36 > eps).
    z = ro(np.linspace(-36.0, 36.0, 721))
    for y in (np.zeros_like(z), np.ones_like(z), np.full_like(z, 0.3)):
        (_, g), (_, g2) = fused_and_two_step(z, ro(y))
        np.testing.assert_allclose(g, g2, rtol=1e-14, atol=0)


@pytest.mark.parametrize("z0", [-35.9, -30.0, -20.0, 20.0, 30.0, 35.9])
def test_fused_value_near_saturation_differs_by_rounding_only(z0):
    # Near saturation, p and 1 - p are tiny and carry the absolute rounding error
    # of tanh(z/2); log amplifies it. The paths round differently, so the values
    # may differ by up to about eps / min(p, 1 - p), not by more.
    z, y = ro([z0]), ro([0.0 if z0 > 0 else 1.0])
    (value, _), (value2, _) = fused_and_two_step(z, y)
    bound = 2 * np.finfo(np.float64).eps * np.exp(abs(z0))
    assert abs(float(value) - float(value2)) <= bound


def test_fused_value_by_hand():
    z, y = ro([[0.0], [2.0]]), ro([[1.0], [0.0]])
    value, g = FUSED.value_and_grad(z, y)
    p = 1 / (1 + np.exp(-2.0))
    assert float(value) == pytest.approx((np.log(2) - np.log(1 - p)) / 2, rel=1e-14)
    np.testing.assert_allclose(g, [[(0.5 - 1) / 2], [p / 2]], rtol=1e-14)


# ---------------------------------------------------------------- 3. finite differences


@pytest.mark.parametrize("kind", ["hard", "soft"])
@pytest.mark.parametrize("shape", SHAPES)
def test_fused_gradient_by_finite_differences(shape, kind):
    z, y = logits(shape, seed=5), targets(shape, kind, seed=6)
    with np.errstate(all="raise"):
        report = fb.testing.check_loss_grads(FUSED, z, y)
    assert report.ok


# ---------------------------------------------------------------- 4. saturation and clipping

SATURATED = [[40.0], [-40.0], [1000.0], [-1000.0], [0.3], [-2.0]]


@pytest.mark.parametrize(
    "y",
    [[1.0] * 6, [0.0] * 6, [1.0, 0.0, 0.0, 1.0, 1.0, 0.0], [0.2, 0.9, 0.5, 0.5, 0.7, 0.1]],
    ids=["ones", "zeros", "mixed", "soft"],
)
def test_saturated_fused_equals_two_step_bit_for_bit(y):
    z, y = ro(SATURATED), ro(np.reshape(y, (6, 1)))
    (value, g), (value2, g2) = fused_and_two_step(z, y)
    assert value == value2
    assert np.array_equal(g, g2)
    assert np.isfinite(value) and np.isfinite(g).all()
    assert value.dtype == g.dtype == np.float64


def test_saturated_float32_equals_two_step_bit_for_bit():
    z = ro(np.array([[20.0], [-20.0], [100.0], [1.5]], np.float32))
    y = ro(np.array([[0.0], [1.0], [1.0], [0.0]], np.float32))
    (value, g), (value2, g2) = fused_and_two_step(z, y)
    assert value == value2
    assert np.array_equal(g, g2)
    assert type(value) is np.float32 and g.dtype == np.float32


def test_stuck_saturation_has_exactly_zero_gradient():
    # y = 1 at z = -1000: p is exactly 0, so the Sigmoid's p (1 - p) kills the
    # (clipped, finite) gradient of the loss: the documented "stuck" unit.
    z, y = ro([[-1000.0], [0.5]]), ro([[1.0], [0.0]])
    (value, g), (value2, g2) = fused_and_two_step(z, y)
    assert g[0, 0] == 0.0
    assert g[1, 0] != 0.0
    assert value == value2 and np.array_equal(g, g2)
    assert float(value) > 15  # -log(eps) / 2: the clipped loss, not infinity


# ---------------------------------------------------------------- 5. value_and_grad on a network


def test_value_and_grad_equals_the_unfused_path():
    net, (x, t) = bce_net(), batch()
    with np.errstate(all="raise"):
        value, grads = fb.value_and_grad(net, BCE, x, t)
        value2, grads2 = unfused_value_and_grad(net, BCE, x, t)
    np.testing.assert_allclose(value, value2, rtol=1e-12)
    assert fb.tree.allclose(grads, grads2, rtol=1e-10, atol=1e-15)
    assert type(grads) is fb.Serial and len(grads.layers) == 4
    assert type(grads.layers[-1]) is fb.Sigmoid
    assert type(grads.layers[1]) is fb.Tanh


def test_value_and_grad_by_finite_differences():
    net, (x, t) = bce_net(), batch()
    with np.errstate(all="raise"):
        _, grads = fb.value_and_grad(net, BCE, x, t)
    flat, unravel = fb.tree.ravel(net)
    exact, _ = fb.tree.ravel(grads)
    assert exact.shape == flat.shape

    def loss_at(theta):
        with np.errstate(all="raise"):
            return float(BCE(fb.forward(unravel(theta), x), t))

    h = 1e-6
    numeric = np.array([loss_at(flat + h * e) - loss_at(flat - h * e) for e in np.eye(flat.size)])
    numeric /= 2 * h
    np.testing.assert_allclose(exact, numeric, rtol=1e-6, atol=1e-9)


def saturated_case():
    """A net whose output logits are 405, -295 and 3: the first two are clipped."""
    net = fb.Serial((fb.Dense(ro([[400.0], [-300.0]]), ro([5.0])), fb.Sigmoid()))
    return net, ro([[1.0, 0.0], [0.0, 1.0], [0.01, 0.02]]), ro([[0.0], [1.0], [1.0]])


def test_value_and_grad_skips_the_sigmoid(monkeypatch):
    def unreachable(*args, **kwargs):
        raise AssertionError("the absorbed Sigmoid ran")

    net, (x, t) = bce_net(), batch()
    expected = unfused_value_and_grad(net, BCE, x, t)
    for method in ("forward", "vjp"):
        monkeypatch.setattr(fb.Sigmoid, method, unreachable)
    with np.errstate(all="raise"):
        value, grads = fb.value_and_grad(net, BCE, x, t)
        value_train, _ = fb.value_and_grad(net, BCE, x, t, train=True, key=fb.random.key(0))
    np.testing.assert_allclose([value, value_train], expected[0], rtol=1e-12)
    assert fb.tree.allclose(grads, expected[1], rtol=1e-10, atol=1e-15)
    with pytest.raises(AssertionError, match="absorbed Sigmoid ran"):
        fb.value_and_grad(net, fb.mse, x, t)  # not absorbed: the Sigmoid runs


def test_value_and_grad_in_the_clipped_region_equals_the_unfused_path():
    # Large weights saturate the output: the fused loss takes its two-step branch.
    net, x, t = saturated_case()
    with np.errstate(all="raise"):
        value, grads = fb.value_and_grad(net, BCE, x, t)
        value2, grads2 = unfused_value_and_grad(net, BCE, x, t)
    assert value == value2
    assert np.array_equal(grads.layers[0].W, grads2.layers[0].W)
    assert np.array_equal(grads.layers[0].b, grads2.layers[0].b)


# ---------------------------------------------------------------- 6. training mode


def dropout_net():
    return fb.Serial((dense(0, 3, 8), fb.Tanh(), fb.Dropout(0.5), dense(1, 8, 1), fb.Sigmoid()))


def batchnorm_net():
    bn = fb.BatchNorm.init(4, dtype=np.float64)
    return fb.Serial((dense(0, 3, 4), bn, fb.Tanh(), dense(1, 4, 1), fb.Sigmoid()))


def test_training_with_dropout_equals_the_unfused_path():
    net, (x, t) = dropout_net(), batch(n=8)
    ctx = {"train": True, "key": fb.random.key(3)}
    with np.errstate(all="raise"):
        value, grads = fb.value_and_grad(net, BCE, x, t, **ctx)
        value2, grads2 = unfused_value_and_grad(net, BCE, x, t, **ctx)
        value_eval, _ = fb.value_and_grad(net, BCE, x, t)
    np.testing.assert_allclose(value, value2, rtol=1e-12)
    assert fb.tree.allclose(grads, grads2, rtol=1e-12, atol=1e-15)
    assert type(grads.layers[-1]) is fb.Sigmoid
    assert value != value_eval  # the mask was applied: training mode is really on


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_batchnorm_state_equals_the_unfused_path(train):
    net, (x, t) = batchnorm_net(), batch(n=8)
    state = fb.init_state(net)
    before = snapshot(x, t, net, state)
    ctx = {"train": train, "key": fb.random.key(3), "state": state}
    with np.errstate(all="raise"):
        out = fb.value_and_grad(net, BCE, x, t, **ctx)
        value2, grads2, state2 = unfused_value_and_grad(net, BCE, x, t, **ctx)
    assert len(out) == 3
    value, grads, new_state = out
    np.testing.assert_allclose(value, value2, rtol=1e-12)
    assert fb.tree.allclose(grads, grads2, rtol=1e-10, atol=1e-15)
    assert fb.tree.allclose(new_state, state2, rtol=1e-12, atol=0)
    assert type(new_state) is tuple and len(new_state) == 5 and new_state[-1] is None
    assert fb.tree.allclose(new_state, state) is (not train)
    assert_unchanged(before, x, t, net, state)


# ---------------------------------------------------------------- 7. small networks


def test_serial_of_only_a_sigmoid():
    net = fb.Serial((fb.Sigmoid(),))
    z, y = logits((5, 2)), targets((5, 2), "soft")
    with np.errstate(all="raise"):
        value, grads = fb.value_and_grad(net, BCE, z, y)
        value2, _ = two_step(z, y)
    np.testing.assert_allclose(value, value2, rtol=1e-12)
    assert type(grads) is fb.Serial
    assert len(grads.layers) == 1 and type(grads.layers[0]) is fb.Sigmoid


def test_serial_of_only_a_sigmoid_in_training_with_state():
    net = fb.Serial((fb.Sigmoid(),))
    z, y = logits((4, 1)), targets((4, 1), "hard")
    with np.errstate(all="raise"):
        value, grads, state = fb.value_and_grad(
            net, BCE, z, y, train=True, key=fb.random.key(0), state=fb.init_state(net)
        )
    np.testing.assert_allclose(value, two_step(z, y)[0], rtol=1e-12)
    assert type(grads.layers[0]) is fb.Sigmoid
    assert state == (None,)


def test_empty_serial_uses_the_loss_itself():
    p, y = ro([[0.2], [0.9]]), ro([[0.0], [1.0]])
    with np.errstate(all="raise"):
        value, grads = fb.value_and_grad(fb.Serial(()), BCE, p, y)
    assert value == BCE(p, y)
    assert type(grads) is fb.Serial and grads.layers == ()


# ---------------------------------------------------------------- 8. the normal path


def assert_exactly_unfused(net, loss, x, t):
    """``fb.value_and_grad`` equals the by-hand vjp/loss/pullback bit for bit; returns grads."""
    with np.errstate(all="raise"):
        value, grads = fb.value_and_grad(net, loss, x, t)
        value2, grads2 = unfused_value_and_grad(net, loss, x, t)
    assert value == value2
    assert fb.tree.allclose(grads, grads2, rtol=0, atol=0)
    return grads


def test_serial_ending_in_relu_with_mse_takes_the_normal_path():
    net = fb.Serial((dense(0, 3, 4), fb.Tanh(), dense(1, 4, 2), fb.ReLU()))
    assert_exactly_unfused(net, fb.mse, *batch(n_out=2))


def test_sigmoid_with_mse_is_not_fused():
    assert_exactly_unfused(bce_net(), fb.mse, *batch())


def test_bare_dense_with_mse():
    grads = assert_exactly_unfused(dense(0, 3, 2), fb.mse, *batch(n_out=2))
    assert type(grads) is fb.Dense


@pytest.mark.parametrize(
    "net",
    [fb.Sigmoid(), fb.Serial((dense(0, 3, 1), fb.Serial((fb.Sigmoid(),))))],
    ids=["bare_sigmoid", "nested_serial"],
)
def test_sigmoid_not_last_in_a_serial_is_not_fused(net):
    # Only a Serial's own last layer is offered to the loss: these run unfused,
    # so they equal the by-hand computation bit for bit.
    x = logits((6, 3), scale=1.0) if isinstance(net, fb.Serial) else logits((6, 1))
    t = targets((6, 1), "hard")
    with np.errstate(all="raise"):
        value, grads = fb.value_and_grad(net, BCE, x, t)
        value2, grads2 = unfused_value_and_grad(net, BCE, x, t)
    assert value == value2
    assert fb.tree.allclose(grads, grads2, rtol=0, atol=0)


# ---------------------------------------------------------------- 9. errors


def test_target_shape_mismatch_keeps_its_message():
    net, (x, _) = bce_net(), batch()
    t = ro(np.zeros(6))
    with pytest.raises(fb.ShapeError, match="binary_cross_entropy") as fused:
        fb.value_and_grad(net, BCE, x, t)
    with pytest.raises(fb.ShapeError) as unfused:
        unfused_value_and_grad(net, BCE, x, t)
    assert str(fused.value) == str(unfused.value)
    assert "(6, 1)" in str(fused.value) and "(6,)" in str(fused.value)


def test_string_target_is_a_dtype_error():
    net, (x, _) = bce_net(), batch()
    with pytest.raises(fb.DTypeError, match="binary_cross_entropy: target must be numeric"):
        fb.value_and_grad(net, BCE, x, ro([["a"]] * 6))


def test_string_input_is_a_dtype_error():
    with pytest.raises(fb.DTypeError, match="must be numeric"):
        fb.value_and_grad(bce_net(), BCE, ro([["a", "b", "c"]]), ro([[1.0]]))


def test_layer_errors_are_still_located():
    x, t = batch(n_in=5)
    with pytest.raises(fb.ShapeError, match=r"layers\[0\]: Dense\(3 -> 4\)"):
        fb.value_and_grad(bce_net(), BCE, x, t)


# ---------------------------------------------------------------- 10. nothing is written


def ordinary_case():
    x, t = batch()
    return dropout_net(), x, t


@pytest.mark.parametrize("case", [ordinary_case, saturated_case], ids=["ordinary", "saturated"])
def test_callers_arrays_are_not_written(case):
    net, x, t = case()
    before = snapshot(x, t, net)
    with np.errstate(all="raise"):
        fb.value_and_grad(net, BCE, x, t)
        fb.value_and_grad(net, BCE, x, t, train=True, key=fb.random.key(0))
    assert_unchanged(before, x, t, net)


def test_fused_loss_does_not_write_its_inputs():
    for z in (logits((7, 3)), ro(np.array(SATURATED * 3).reshape(6, 3))):
        y = targets(z.shape, "soft")
        before = snapshot(z, y)
        fused_and_two_step(z, y)
        assert_unchanged(before, z, y)


def test_empty_batch_is_refused_by_both_paths():
    """No rows: a mean over nothing; both losses say so instead of returning NaN."""
    z, y = ro(np.zeros((0, 1))), ro(np.zeros((0, 1)))
    with np.errstate(all="raise"):
        with pytest.raises(ValueError, match="non-empty batch"):
            two_step(z, y)
        with pytest.raises(ValueError, match="non-empty batch"):
            fb.losses.binary_cross_entropy_of_sigmoid.value_and_grad(z, y)
