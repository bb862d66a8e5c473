"""GELU (exact and tanh), ELU and SiLU: values, gradients, dtypes, extreme inputs."""

import math

import numpy as np
import pytest

import fnbp as fb
from fnbp.layers.activations import _normal

SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def gelu_exact_ref(x: np.ndarray) -> np.ndarray:
    """``x * Phi(x)`` with Phi from the standard library's erfc, element by element."""
    return np.vectorize(lambda v: v * 0.5 * math.erfc(-v / math.sqrt(2.0)))(x)


def gelu_tanh_ref(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + np.tanh(SQRT_2_OVER_PI * (x + 0.044715 * x**3)))


def elu_ref(alpha: float):
    return lambda x: np.where(x > 0, x, alpha * (np.exp(np.minimum(x, 0.0)) - 1.0))


REFERENCE = {
    "GELU": (fb.GELU(), gelu_exact_ref),
    "GELU(tanh)": (fb.GELU(approximate="tanh"), gelu_tanh_ref),
    "ELU(1)": (fb.ELU(), elu_ref(1.0)),
    "ELU(0.3)": (fb.ELU(0.3), elu_ref(0.3)),
    "ELU(2)": (fb.ELU(2), elu_ref(2.0)),
    "SiLU": (fb.SiLU(), lambda x: x / (1.0 + np.exp(-x))),
}
NAMES = list(REFERENCE)
LAYERS = [REFERENCE[name][0] for name in NAMES]


def inputs(make, layer, *shape, dtype=np.float64, scale=4.0):
    """Random inputs; ELU with alpha != 1 has a kink at 0, so keep 0.05 away from it."""
    away = 0.05 if isinstance(layer, fb.ELU) and layer.alpha != 1.0 else 0.0
    return make(*shape, dtype=dtype, low=-scale, high=scale, away=away)


@pytest.mark.parametrize("name", NAMES)
def test_forward_matches_reference(make, name):
    layer, ref = REFERENCE[name]
    x = inputs(make, layer, 6, 5)
    np.testing.assert_allclose(fb.forward(layer, x), ref(x), rtol=1e-14, atol=1e-16)


@pytest.mark.parametrize("layer", LAYERS, ids=NAMES)
@pytest.mark.parametrize("shape", [(1, 1), (4, 5), (3, 2, 4)])
def test_check_grads(make, layer, shape):
    report = fb.testing.check_grads(layer, inputs(make, layer, *shape), rtol=1e-6)
    assert list(report.errors) == ["x"]


@pytest.mark.parametrize("layer", LAYERS, ids=NAMES)
def test_check_grads_projection_wide_range(make, layer):
    x = inputs(make, layer, 16, 64, scale=8.0)
    assert fb.testing.check_grads(layer, x, mode="projection", rtol=1e-6).ok


@pytest.mark.parametrize("layer", LAYERS, ids=NAMES)
def test_check_grads_inside_an_mlp(make, layer):
    net = fb.mlp(fb.random.key(2), [3, 5, 2], hidden=layer, dtype=np.float64)
    report = fb.testing.check_grads(net, make(4, 3, low=-2.0, high=2.0), rtol=1e-6)
    assert len(report.errors) == 5


def test_known_values():
    x = np.array([[0.0, 1.0, -1.0]])
    np.testing.assert_array_equal(fb.forward(fb.GELU(), x)[0, 0], 0.0)
    np.testing.assert_array_equal(fb.forward(fb.GELU("tanh"), x)[0, 0], 0.0)
    np.testing.assert_allclose(
        fb.forward(fb.GELU(), x), [[0.0, 0.8413447460685429, -0.15865525393145705]], rtol=2e-16
    )
    tanh_at_1 = 0.5 * (1.0 + math.tanh(SQRT_2_OVER_PI * 1.044715))
    np.testing.assert_allclose(fb.forward(fb.GELU("tanh"), x)[0, 1], tanh_at_1, rtol=1e-15)
    np.testing.assert_array_equal(fb.forward(fb.SiLU(), x)[0, 0], 0.0)
    np.testing.assert_allclose(fb.forward(fb.SiLU(), x)[0, 1], 1 / (1 + math.exp(-1)), rtol=1e-15)
    np.testing.assert_allclose(fb.forward(fb.ELU(0.5), x), [[0.0, 1.0, 0.5 * math.expm1(-1)]])


def test_known_derivatives():
    x = np.array([[0.0, 1.0, -2.0]])
    g_x, _ = fb.backward(fb.GELU(), x, np.ones_like(x))
    # Phi(1) + phi(1) = 1.0833154705876863; at 0: Phi(0) = 1/2; at -2: Phi(-2) - 2 phi(-2)
    phi2 = math.exp(-2.0) / math.sqrt(2 * math.pi)
    expected = [[0.5, 1.0833154705876863, 0.5 * math.erfc(math.sqrt(2.0)) - 2 * phi2]]
    np.testing.assert_allclose(g_x, expected, rtol=1e-15)
    g_x, _ = fb.backward(fb.SiLU(), x, np.ones_like(x))
    s = 1 / (1 + math.exp(2.0))
    np.testing.assert_allclose(g_x[0, [0, 2]], [0.5, s * (1 - 2 * (1 - s))], rtol=1e-15)
    g_x, _ = fb.backward(fb.ELU(0.7), x, np.ones_like(x))
    np.testing.assert_allclose(g_x, [[0.7, 1.0, 0.7 * math.exp(-2.0)]], rtol=1e-15)
    g_x, _ = fb.backward(fb.GELU("tanh"), np.zeros((1, 1)), np.ones((1, 1)))
    np.testing.assert_array_equal(g_x, [[0.5]])


def test_normal_cdf_is_accurate_to_double_precision():
    """Against the standard library's erfc; the far tail keeps its relative accuracy."""
    x = np.linspace(-37.0, 9.0, 4601)
    cdf, pdf = _normal(x)
    ref = np.array([0.5 * math.erfc(-v / math.sqrt(2.0)) for v in x])
    moderate = np.abs(x) <= 5.0
    # math.erfc is also evaluated at the rounded x / sqrt(2): allow for that in the tail
    np.testing.assert_allclose(cdf[moderate], ref[moderate], rtol=1e-14, atol=0)
    np.testing.assert_allclose(cdf[~moderate], ref[~moderate], rtol=1e-12, atol=0)
    np.testing.assert_allclose(pdf, np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi), rtol=1e-13)
    # Phi(-30) from 30-digit arithmetic
    np.testing.assert_allclose(_normal(np.array([-30.0]))[0], 4.906713927148187e-198, rtol=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_normal_cdf_float32_and_far_tails(dtype):
    x = np.array([-1000.0, -50.0, -10.0, 0.0, 10.0, 1000.0], dtype)
    with np.errstate(all="raise"):
        cdf, pdf = _normal(x)
    assert cdf.dtype == pdf.dtype == dtype
    rtol = 1e-6 if dtype == np.float32 else 1e-15
    expected = [0.0, 0.0, 7.61985302416052606e-24, 0.5, 1.0, 1.0]  # Phi(-10) ~ 7.6e-24
    np.testing.assert_allclose(cdf, expected, rtol=rtol, atol=0)
    np.testing.assert_array_equal(pdf[[0, 1, 5]], 0.0)


@pytest.mark.parametrize("layer", LAYERS, ids=NAMES)
def test_backward_and_vjp_agree_and_need_g_x(make, layer):
    x = inputs(make, layer, 4, 3)
    g_y = make(4, 3)
    g_x, grads = fb.backward(layer, x, g_y)
    y, pullback = fb.vjp(layer, x)
    np.testing.assert_array_equal(y, fb.forward(layer, x))
    np.testing.assert_array_equal(pullback(g_y)[0], g_x)
    assert grads == layer and fb.tree.leaves(grads) == []
    assert fb.backward(layer, x, g_y, need_g_x=False)[0] is None


@pytest.mark.parametrize("layer", LAYERS, ids=NAMES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_is_preserved(make, layer, dtype):
    x = inputs(make, layer, 4, 3, dtype=dtype)
    y, pullback = fb.vjp(layer, x)
    g_x, _ = fb.backward(layer, x, make(4, 3, dtype=dtype))
    g_x64, _ = pullback(make(4, 3))  # a float64 cotangent does not promote
    assert y.dtype == fb.forward(layer, x).dtype == g_x.dtype == g_x64.dtype == dtype


@pytest.mark.parametrize("layer", LAYERS, ids=NAMES)
def test_float32_is_close_to_float64(make, layer):
    x = inputs(make, layer, 8, 8)
    y32 = fb.forward(layer, x.astype(np.float32))
    g32, _ = fb.backward(layer, x.astype(np.float32), np.ones((8, 8), np.float32))
    np.testing.assert_allclose(y32, fb.forward(layer, x), rtol=2e-6, atol=1e-6)
    np.testing.assert_allclose(g32, fb.backward(layer, x, np.ones((8, 8)))[0], rtol=2e-6, atol=1e-6)


EXTREME = [-1000.0, -40.0, -12.0, -1e-30, 0.0, 1e-30, 12.0, 1000.0]


@pytest.mark.parametrize("layer", LAYERS, ids=NAMES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extreme_inputs_raise_nothing_and_stay_finite(layer, dtype):
    x = np.array([EXTREME], dtype)
    with np.errstate(all="raise"):
        y = fb.forward(layer, x)
        g_x, _ = fb.backward(layer, x, np.full_like(x, 1e-3))
        g_x2, _ = fb.vjp(layer, x)[1](np.ones_like(x))
    assert np.isfinite(y).all() and np.isfinite(g_x).all() and np.isfinite(g_x2).all()
    assert y.dtype == g_x.dtype == dtype


@pytest.mark.parametrize("layer", LAYERS, ids=NAMES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_huge_inputs_raise_nothing(layer, dtype):
    big = 1e30 if dtype == np.float32 else 1e300  # x**3 would overflow
    x = np.array([[-big, big]], dtype)
    with np.errstate(all="raise"):
        y = fb.forward(layer, x)
        g_x, _ = fb.backward(layer, x, np.ones_like(x))
    np.testing.assert_array_equal(y[0, 1], x[0, 1])
    np.testing.assert_array_equal(g_x[0, 1], 1.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layer", [fb.GELU(), fb.GELU("tanh"), fb.SiLU()], ids=str)
def test_gelu_and_silu_limits(layer, dtype):
    x = np.array([[-1000.0, 1000.0]], dtype)
    y = fb.forward(layer, x)
    g_x, _ = fb.backward(layer, x, np.ones_like(x))
    np.testing.assert_array_equal(y, [[0.0, 1000.0]])
    np.testing.assert_array_equal(g_x, [[0.0, 1.0]])


@pytest.mark.parametrize("alpha", [1.0, 0.3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_elu_limits(alpha, dtype):
    x = np.array([[-1000.0, -60.0, 1000.0]], dtype)
    y = fb.forward(fb.ELU(alpha), x)
    g_x, _ = fb.backward(fb.ELU(alpha), x, np.ones_like(x))
    np.testing.assert_array_equal(y, np.array([[-alpha, -alpha, 1000.0]], dtype))
    np.testing.assert_allclose(g_x, [[0.0, 0.0, 1.0]], atol=1e-7)


def test_gelu_exact_keeps_the_lower_tail():
    y = fb.forward(fb.GELU(), np.array([[-30.0, -40.0]]))
    np.testing.assert_allclose(y[0, 0], -30 * 4.906713927148187e-198, rtol=1e-14)
    assert y[0, 1] == 0.0  # below exp(20) times the smallest normal float: taken as 0


def test_integer_input_becomes_float64():
    y = fb.forward(fb.GELU(), np.array([[0, 1]]))
    assert y.dtype == np.float64
    np.testing.assert_allclose(y, [[0.0, 0.8413447460685429]], rtol=2e-16)


def test_static_fields():
    assert fb.GELU() == fb.GELU("none") and fb.GELU() != fb.GELU("tanh")
    assert fb.ELU(2).alpha == 2.0 and isinstance(fb.ELU(2).alpha, float)
    with pytest.raises(ValueError, match="approximate"):
        fb.GELU("erf")
    with pytest.raises(fb.StructureError, match="approximate"):
        fb.tree.assert_same_structure(fb.Serial((fb.GELU(),)), fb.Serial((fb.GELU("tanh"),)))
    with pytest.raises(fb.StructureError, match="alpha"):
        fb.tree.assert_same_structure(fb.ELU(1.0), fb.ELU(0.5))


@pytest.mark.parametrize("layer", LAYERS, ids=NAMES)
def test_inputs_are_not_modified(make, layer):
    x, g_y = inputs(make, layer, 4, 3), make(4, 3)  # read-only: a write would raise
    writeable_x, writeable_g = x.copy(), g_y.copy()
    fb.backward(layer, x, g_y)
    fb.backward(layer, writeable_x, writeable_g)
    np.testing.assert_array_equal(writeable_x, x)
    np.testing.assert_array_equal(writeable_g, g_y)
