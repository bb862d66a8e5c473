"""The gradient checker must pass correct layers and catch wrong backward passes."""

import attrs
import numpy as np
import pytest

import fnbp as fb


@attrs.frozen
class Scale(fb.Layer):
    """y = x * a, with a correct or a deliberately broken backward pass."""

    a: np.ndarray = fb.param()
    broken: str = fb.static(default="")

    def vjp(self, x, need_g_x=True):
        def pullback(g):
            g_x = g * self.a if need_g_x else None
            g_a = (g * x).sum(axis=0)
            if self.broken == "g_x":
                g_x = 2 * g_x
            elif self.broken == "g_a":
                g_a = g_a + 1e-3
            return g_x, Scale(g_a, self.broken)

        return x * self.a, pullback


@attrs.frozen
class TwiceGrad(fb.Layer):
    """The task's broken layer: a parameter-free layer whose pullback returns 2 * g."""

    def vjp(self, x, need_g_x=True):
        return x, lambda g: (2 * g, self)


def scale(broken="", n=3):
    return Scale(np.linspace(0.5, 1.5, n), broken)


def test_passing_check_returns_report(make):
    report = fb.testing.check_grads(scale(), make(4, 3))
    assert isinstance(report, fb.testing.GradCheck)
    assert report.ok
    assert list(report.errors) == ["x", "a"]
    assert all(0.0 <= e <= 1e-6 for e in report.errors.values())
    assert report.rtol == 1e-6


def test_report_lists_paths_of_a_serial(make):
    net = fb.Serial((fb.Dense.init(fb.random.key(0), 3, 3, dtype=np.float64), fb.Tanh(), scale()))
    report = fb.testing.check_grads(net, make(2, 3))
    assert list(report.errors) == ["x", "layers[0].W", "layers[0].b", "layers[2].a"]
    text = str(report)
    for path in report.errors:
        assert path in text
    assert "FAIL" not in text


def test_catches_a_doubled_input_gradient(make):
    with pytest.raises(AssertionError, match=r"gradient check failed(.|\n)*x\s+\S+\s+FAIL"):
        fb.testing.check_grads(TwiceGrad(), make(3, 2))


def test_catches_a_wrong_input_gradient_of_a_layer_with_params(make):
    with pytest.raises(AssertionError) as info:
        fb.testing.check_grads(scale("g_x"), make(4, 3))
    message = str(info.value)
    assert "x " in message and "FAIL" in message
    assert [line.split()[2] for line in message.splitlines()[2:]] == ["FAIL", "ok"]


def test_catches_a_wrong_parameter_gradient_and_names_its_path(make):
    net = fb.Serial((fb.Tanh(), scale("g_a")))
    with pytest.raises(AssertionError, match=r"layers\[1\]\.a\s+\S+\s+FAIL"):
        fb.testing.check_grads(net, make(4, 3))


def test_catches_wrong_gradient_in_projection_mode(make):
    with pytest.raises(AssertionError, match="FAIL"):
        fb.testing.check_grads(scale("g_x", n=40), make(8, 40), mode="projection")
    with pytest.raises(AssertionError, match=r"a\s+\S+\s+FAIL"):
        fb.testing.check_grads(scale("g_a", n=40), make(8, 40), mode="projection")
    assert fb.testing.check_grads(scale(n=40), make(8, 40), mode="projection").ok


def test_small_error_passes_only_with_a_loose_tolerance(make):
    x = make(4, 3)
    with pytest.raises(AssertionError):
        fb.testing.check_grads(scale("g_a"), x)
    report = fb.testing.check_grads(scale("g_a"), x, rtol=0.5)
    assert report.errors["a"] > 1e-6


def test_unknown_mode(make):
    with pytest.raises(ValueError, match="mode"):
        fb.testing.check_grads(scale(), make(2, 3), mode="fast")


def test_check_does_not_modify_layer_or_input(make):
    layer = scale()
    x = make(4, 3)  # read-only
    before = layer.a.copy()
    fb.testing.check_grads(layer, x)
    np.testing.assert_array_equal(layer.a, before)


def test_gradcheck_ok_and_str():
    good = fb.testing.GradCheck({"x": 1e-9, "W": 2e-7}, rtol=1e-6)
    bad = fb.testing.GradCheck({"x": 1e-9, "W": 2e-3}, rtol=1e-6)
    assert good.ok and not bad.ok
    assert "W" in str(bad) and "FAIL" in str(bad) and "FAIL" not in str(good)


@attrs.frozen
class BrokenMSE(fb.Loss):
    name = "broken_mse"

    def value_and_grad(self, pred, target):
        value, g = fb.mse.value_and_grad(pred, target)
        return value, 1.5 * g


def test_check_loss_grads_passes_and_catches(make):
    pred, target = make(4, 2), make(4, 2)
    report = fb.testing.check_loss_grads(fb.mse, pred, target)
    assert list(report.errors) == ["pred"] and report.ok
    with pytest.raises(AssertionError, match=r"pred\s+\S+\s+FAIL"):
        fb.testing.check_loss_grads(BrokenMSE(), pred, target)
    with pytest.raises(AssertionError, match="FAIL"):
        fb.testing.check_loss_grads(BrokenMSE(), pred, target, mode="projection")


# --- what a student meets: float32 layers, tree inputs, wrong pullbacks, readable failures ---


def test_float32_layers_are_checked_in_float64_and_pass():
    net = fb.mlp(fb.random.key(0), [3, 4, 2])  # float32 by default, as Dense.init
    x = np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)
    assert fb.testing.check_grads(net, x).ok
    assert net.layers[0].W.dtype == np.float32  # the check used copies


@attrs.frozen
class Bilinear(fb.Layer):
    """A two-input layer defined outside fnbp: ``y = (h @ A) * x``, input ``(h, x)``."""

    A: np.ndarray = fb.param()

    def vjp(self, inputs, need_g_x=True):
        h, x = inputs
        u = h @ self.A

        def pullback(g):
            g_h, g_x = (g * x) @ self.A.T, g * u
            return ((g_h, g_x) if need_g_x else None), Bilinear(h.T @ (g * x))

        return u * x, pullback


def test_a_two_input_layer_is_checked_on_both_inputs(make):
    layer = Bilinear(np.arange(6.0).reshape(3, 2) / 6)
    report = fb.testing.check_grads(layer, (make(4, 3), make(4, 2)))
    assert list(report.errors) == ["x[0]", "x[1]", "A"] and report.ok
    g_x, _grads = fb.backward(layer, (make(4, 3), make(4, 2)), np.ones((4, 2)))
    assert type(g_x) is tuple and g_x[0].shape == (4, 3) and g_x[1].shape == (4, 2)


def test_a_dict_input_is_checked_leaf_by_leaf(make):
    @attrs.frozen
    class Mix(fb.Layer):
        def vjp(self, x, need_g_x=True):
            return x["a"] * x["b"], lambda g: ({"a": g * x["b"], "b": g * x["a"]}, self)

    report = fb.testing.check_grads(Mix(), {"a": make(2, 3), "b": make(2, 3)})
    assert list(report.errors) == ["x['a']", "x['b']"]


def test_a_wrong_sign_shows_analytic_numeric_and_ratio(make):
    @attrs.frozen
    class Negated(fb.Layer):
        def vjp(self, x, need_g_x=True):
            return np.sin(x), lambda g: (-g * np.cos(x), self)

    with pytest.raises(fb.GradientCheckError) as info:
        fb.testing.check_grads(Negated(), make(3, 2, away=0.1))
    text = str(info.value)
    assert "analytic" in text and "numeric" in text and "ratio -1" in text and "wrong sign" in text
    assert info.value.report.worst["x"][1] == pytest.approx(-info.value.report.worst["x"][2])


def test_a_missing_one_over_n_shows_as_a_ratio_of_n(make):
    @attrs.frozen
    class MeanOfRows(fb.Layer):
        def vjp(self, x, need_g_x=True):
            n = len(x)
            return x.mean(axis=0, keepdims=True), lambda g: (np.repeat(g, n, axis=0), self)

    with pytest.raises(fb.GradientCheckError, match=r"ratio 4\b"):
        fb.testing.check_grads(MeanOfRows(), make(4, 3))


def test_a_pullback_returning_a_bare_array_is_named(make):
    @attrs.frozen
    class Bare(fb.Layer):
        w: np.ndarray = fb.param()

        def vjp(self, x, need_g_x=True):
            return x * self.w, lambda g: (g * self.w, (g * x).sum(0))

    with pytest.raises(fb.StructureError, match=r"grads as a Bare record, got ndarray"):
        fb.testing.check_grads(Bare(np.ones(3)), make(2, 3))


def test_a_pullback_with_swapped_outputs_gets_a_hint(make):
    @attrs.frozen
    class Swapped(fb.Layer):
        w: np.ndarray = fb.param()

        def vjp(self, x, need_g_x=True):
            return x * self.w, lambda g: (Swapped((g * x).sum(0)), g * self.w)

    with pytest.raises(fb.StructureError, match=r"swapped"):
        fb.testing.check_grads(Swapped(np.ones(3)), make(2, 3))


def test_a_pullback_returning_one_value_is_named(make):
    @attrs.frozen
    class One(fb.Layer):
        def vjp(self, x, need_g_x=True):
            return x, lambda g: g

    with pytest.raises(fb.StructureError, match=r"must return a pair \(g_x, grads\)"):
        fb.testing.check_grads(One(), make(2, 3))


def test_a_wrongly_shaped_input_gradient_is_named(make):
    @attrs.frozen
    class Transposed(fb.Layer):
        def vjp(self, x, need_g_x=True):
            return x, lambda g: (g.T, self)

    with pytest.raises(fb.ShapeError, match=r"g_x of shape \(3, 2\) for input \(2, 3\)"):
        fb.testing.check_grads(Transposed(), make(2, 3))


def test_a_wrongly_shaped_parameter_gradient_is_named(make):
    @attrs.frozen
    class Wide(fb.Layer):
        w: np.ndarray = fb.param()

        def vjp(self, x, need_g_x=True):
            return x * self.w, lambda g: (g * self.w, Wide(g * x))

    with pytest.raises(
        fb.StructureError, match=r"grads w has shape \(2, 3\), the parameter has \(3,\)"
    ):
        fb.testing.check_grads(Wide(np.ones(3)), make(2, 3))
