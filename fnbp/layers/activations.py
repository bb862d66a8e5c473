"""Elementwise activations and the softmax family.

Each layer writes its derivative from its *output* where it can, so the
backward pass reuses what the forward pass computed. All of them keep the
input's dtype and neither warn nor overflow at inputs of +-1000.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import numpy as np

from .. import validation
from .._numeric import (
    exp_cut,
    exp_cutoff,
    relu,
    row_sums,
    shifted,
    sigmoid,
    sigmoid_grad,
    softmax,
    softmax_grad,
    softplus,
)
from ..core import Layer
from ..errors import ShapeError
from ..record import static

__all__ = [
    "Identity",
    "Sigmoid",
    "Tanh",
    "ReLU",
    "LeakyReLU",
    "Softplus",
    "Softmax",
    "LogSoftmax",
    "GELU",
    "ELU",
    "SiLU",
]


class _Activation(Layer):
    """A layer without parameters: ``y = _forward(x)``, ``g_x = _g_x(x, y, g_y)``.

    Inputs of any shape, a 0-d one included (the softmax family needs a class
    axis); float32 and float64 keep their dtype, booleans and integers are
    taken as float64, other dtypes are refused (see :mod:`fnbp.validation`).
    """

    __slots__ = ()
    fresh_g_x = True  # g_x is a new array (see "Handing arrays over" in fnbp.core)
    verified = True  # checked by the contract suite, not at run time (see fnbp.core)

    def _forward(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _g_x(self, x: np.ndarray, y: np.ndarray, g_y: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _forward_into(self, x: np.ndarray) -> np.ndarray:
        """``f(x)`` written into ``x`` (a class with ``in_place = True``)."""
        raise NotImplementedError

    def _g_x_into(self, y: np.ndarray, g_y: np.ndarray) -> np.ndarray:
        """``g_x`` written into ``g_y``, from the output alone (``in_place`` classes)."""
        raise NotImplementedError

    def _input(self, x: Any) -> tuple[np.ndarray, bool]:
        """``(x as a float array, whether it was 0-d)``; a 0-d input is computed as one
        element (numpy's ufuncs give scalars, not arrays, for 0-d arrays)."""
        x = validation.floating(x, type(self).__name__)
        return (x.reshape(1), True) if x.ndim == 0 else (x, False)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """``f(x)``, a new array (``Identity`` returns ``x`` itself)."""
        a, scalar = self._input(x)
        y = self._forward(a)
        return y.reshape(()) if scalar else y

    def vjp(
        self, x: np.ndarray, need_g_x: bool = True, *, own: bool = False
    ) -> tuple[np.ndarray, Callable]:
        """``(f(x), pullback)``; the layer has no parameters, so its grads are itself.

        ``own=True`` (a :class:`~fnbp.Serial` handing over a fresh array, only to a
        class with ``in_place = True``) lets ``f(x)`` be written into ``x``, and
        ``pullback(g_y, own=True)`` lets ``g_x`` be written into ``g_y``.
        """
        a, scalar = self._input(x)
        y = self._forward_into(a) if own and not scalar and a.flags.writeable else self._forward(a)

        def pullback(
            g_y: np.ndarray, *, own: bool = False
        ) -> tuple[np.ndarray | None, _Activation]:
            if not need_g_x:
                return None, self
            if own and not scalar and g_y.flags.writeable and g_y.shape == y.shape:
                return self._g_x_into(y, g_y), self
            g_x = self._g_x(a, y, g_y.reshape(a.shape))
            return (g_x.reshape(()) if scalar else g_x), self

        return (y.reshape(()) if scalar else y), pullback


class _OverClasses(_Activation):
    """An activation over the last axis (the classes): it needs one, of length >= 1."""

    __slots__ = ()

    def _input(self, x: Any) -> tuple[np.ndarray, bool]:
        x = validation.floating(x, type(self).__name__)
        if x.ndim == 0 or x.shape[-1] == 0:
            raise ShapeError(
                f"{type(self).__name__} works along the last axis (the classes) and needs "
                f"at least one there, got shape {x.shape}"
            )
        return x, False


@attrs.frozen
class Identity(_Activation):
    """``y = x``; ``g_x = g_y``."""

    fresh_g_x = False  # g_x is g_y itself

    def _forward(self, x: np.ndarray) -> np.ndarray:
        """``x`` itself."""
        return x

    def _g_x(self, x: np.ndarray, y: np.ndarray, g_y: np.ndarray) -> np.ndarray:
        return g_y


@attrs.frozen
class Sigmoid(_Activation):
    """``y = 1 / (1 + exp(-x))``, accurate in both tails.

    Computed with ``e = exp(-|x|)`` as ``1 / (1 + e)`` for ``x >= 0`` and
    ``e / (1 + e)`` for ``x < 0`` (so ``sigmoid(-40) = 4.2e-18``, not 0).
    Derivative from the output: ``dy/dx = y * (1 - y)``.
    """

    def _forward(self, x: np.ndarray) -> np.ndarray:
        """``sigmoid(x)``, a new array."""
        return sigmoid(x)

    def _g_x(self, x: np.ndarray, y: np.ndarray, g_y: np.ndarray) -> np.ndarray:
        return sigmoid_grad(y, g_y)


@attrs.frozen
class Tanh(_Activation):
    """``y = tanh(x)``; derivative from the output: ``dy/dx = 1 - y**2``."""

    def _forward(self, x: np.ndarray) -> np.ndarray:
        """``tanh(x)``, a new array."""
        return np.tanh(x)

    in_place = True

    def _forward_into(self, x: np.ndarray) -> np.ndarray:
        return np.tanh(x, out=x)

    def _g_x_into(self, y: np.ndarray, g_y: np.ndarray) -> np.ndarray:
        g_y *= 1.0 - y * y
        return g_y

    def _g_x(self, x: np.ndarray, y: np.ndarray, g_y: np.ndarray) -> np.ndarray:
        g_x = np.multiply(y, y)
        np.subtract(1.0, g_x, out=g_x)
        g_x *= g_y
        return g_x


@attrs.frozen
class ReLU(_Activation):
    """``y = max(x, 0)``; ``dy/dx = 1 where y > 0, else 0``."""

    def _forward(self, x: np.ndarray) -> np.ndarray:
        """``max(x, 0)``, a new array."""
        return relu(x)

    def _g_x(self, x: np.ndarray, y: np.ndarray, g_y: np.ndarray) -> np.ndarray:
        return np.multiply(g_y, y > 0, dtype=g_y.dtype)

    in_place = True

    def _forward_into(self, x: np.ndarray) -> np.ndarray:
        return relu(x, out=x)

    def _g_x_into(self, y: np.ndarray, g_y: np.ndarray) -> np.ndarray:
        return np.multiply(g_y, y > 0, out=g_y)


@attrs.frozen
class LeakyReLU(_Activation):
    """``y = x where x > 0, else slope * x``; ``dy/dx = 1 or slope`` likewise."""

    slope: float = static(default=0.01, converter=validation.real())

    def _forward(self, x: np.ndarray) -> np.ndarray:
        """``x`` where positive, ``slope * x`` elsewhere."""
        return np.where(x > 0, x, x * self.slope)

    def _g_x(self, x: np.ndarray, y: np.ndarray, g_y: np.ndarray) -> np.ndarray:
        return np.where(x > 0, g_y, g_y * self.slope)


@attrs.frozen
class Softplus(_Activation):
    """``y = log(1 + exp(x))``, computed as ``max(x, 0) + log1p(exp(-|x|))``.

    ``dy/dx = sigmoid(x) = 1 - exp(-y)``, written from the output as ``-expm1(-y)``.
    """

    def _forward(self, x: np.ndarray) -> np.ndarray:
        """``max(x, 0) + log1p(exp(-|x|))``, a new array."""
        return softplus(x)

    def _g_x(self, x: np.ndarray, y: np.ndarray, g_y: np.ndarray) -> np.ndarray:
        g_x = np.negative(y)
        np.expm1(g_x, out=g_x)
        np.negative(g_x, out=g_x)
        g_x *= g_y
        return g_x


@attrs.frozen
class Softmax(_OverClasses):
    """``y_i = exp(x_i) / sum_j exp(x_j)`` along the last axis (max subtracted first).

    Backward without the Jacobian: ``g_x = y * (g_y - sum_j g_y_j * y_j)``.
    """

    def _forward(self, x: np.ndarray) -> np.ndarray:
        """Softmax over the last axis, the row maximum subtracted first."""
        return softmax(x)

    def _g_x(self, x: np.ndarray, y: np.ndarray, g_y: np.ndarray) -> np.ndarray:
        return softmax_grad(y, g_y)


@attrs.frozen
class LogSoftmax(_OverClasses):
    """``y_i = x_i - log sum_j exp(x_j)`` along the last axis (max subtracted first).

    Backward: ``g_x = g_y - exp(y) * sum_j g_y_j``.
    """

    def _forward(self, x: np.ndarray) -> np.ndarray:
        """``x - logsumexp(x)`` over the last axis, the row maximum subtracted first."""
        y = shifted(x)
        y -= np.log(row_sums(exp_cut(y)))
        return y

    def _g_x(self, x: np.ndarray, y: np.ndarray, g_y: np.ndarray) -> np.ndarray:
        g_x = exp_cut(y)
        g_x *= -row_sums(g_y)
        g_x += g_y
        return g_x


# --- GELU, ELU, SiLU -----------------------------------------------------------------------------


class _KeepsAux(_Activation):
    """An activation whose derivative reuses an intermediate of its forward pass.

    ``_parts(x) -> (y, aux)``; ``_slope(x, aux)`` is ``dy/dx`` in a new array.
    """

    __slots__ = ()

    def _parts(self, x: np.ndarray) -> tuple[np.ndarray, Any]:
        raise NotImplementedError

    def _slope(self, x: np.ndarray, aux: Any) -> np.ndarray:
        raise NotImplementedError

    def _forward(self, x: np.ndarray) -> np.ndarray:
        return self._parts(x)[0]

    def vjp(
        self, x: np.ndarray, need_g_x: bool = True, *, own: bool = False
    ) -> tuple[np.ndarray, Callable]:
        """``(f(x), pullback)``, keeping what the derivative needs from the forward pass
        (never in place: ``own`` is accepted and ignored)."""
        a, scalar = self._input(x)
        y, aux = self._parts(a)

        def pullback(g_y: np.ndarray) -> tuple[np.ndarray | None, _KeepsAux]:
            if not need_g_x:
                return None, self
            g_x = self._slope(a, aux)
            g_x *= g_y.reshape(a.shape)
            return (g_x.reshape(()) if scalar else g_x), self

        return (y.reshape(()) if scalar else y), pullback


def _as_float(x: np.ndarray) -> np.ndarray:
    """``x`` itself if floating point, else as float64 (as ``np.tanh`` would)."""
    return x if x.dtype.kind == "f" else x.astype(np.float64)


# W. J. Cody's rational Chebyshev approximations of erf and erfc (Math. Comp. 23, 1969;
# the coefficients of his SPECFUN routine CALERF), good to about 1e-16 relative error.
# Polynomials are listed from the highest power down, for Horner's rule.
# fmt: off
_ERF_NUM = (1.85777706184603153e-1, 3.16112374387056560e00, 1.13864154151050156e02,
            3.77485237685302021e02, 3.20937758913846947e03)
_ERF_DEN = (1.0, 2.36012909523441209e01, 2.44024637934444173e02, 1.28261652607737228e03,
            2.84423683343917062e03)
_ERFC_NUM = (2.15311535474403846e-8, 5.64188496988670089e-1, 8.88314979438837594e00,
             6.61191906371416295e01, 2.98635138197400131e02, 8.81952221241769090e02,
             1.71204761263407058e03, 2.05107837782607147e03, 1.23033935479799725e03)
_ERFC_DEN = (1.0, 1.57449261107098347e01, 1.17693950891312499e02, 5.37181101862009858e02,
             1.62138957456669019e03, 3.29079923573345963e03, 4.36261909014324716e03,
             3.43936767414372164e03, 1.23033935480374942e03)
_TAIL_NUM = (1.63153871373020978e-2, 3.05326634961232344e-1, 3.60344899949804439e-1,
             1.25781726111229246e-1, 1.60837851487422766e-2, 6.58749161529837803e-4)
_TAIL_DEN = (1.0, 2.56852019228982242e00, 1.87295284992346047e00, 5.27905102951428412e-1,
             6.05183413124413191e-2, 2.33520497626869185e-3)
# fmt: on
_SQRT_HALF = 0.7071067811865476  # 1 / sqrt(2)
_INV_SQRT_PI = 0.5641895835477563  # 1 / sqrt(pi)
_INV_SQRT_2PI = 0.3989422804014327  # 1 / sqrt(2 pi)
_TINY = 1e-15  # squares of magnitudes below this are taken as 1e-30: no underflow


def _square(v: np.ndarray) -> np.ndarray:
    """``v**2`` in a new array, with ``|v|`` raised to at least 1e-15 so it cannot underflow.

    Used only where ``v**2`` is added to 1 or is the argument of a smooth function,
    so the floor changes nothing a float can hold.
    """
    out = np.abs(v)
    np.maximum(out, _TINY, out=out)
    out *= out
    return out


def _ratio(num: tuple[float, ...], den: tuple[float, ...], t: np.ndarray) -> np.ndarray:
    """``num(t) / den(t)`` by Horner's rule, in a new array of ``t``'s dtype."""
    p = np.full_like(t, num[0])
    for c in num[1:]:
        p *= t
        p += c
    q = np.full_like(t, den[0])
    for c in den[1:]:
        q *= t
        q += c
    p /= q
    return p


def _exp_neg_half_square(x: np.ndarray) -> np.ndarray:
    """``exp(-x**2 / 2)`` in a new array, 0 where ``-x**2 / 2 < exp_cutoff``: nothing underflows.

    ``x**2`` is split as ``k**2 + (|x| - k)(|x| + k)`` with ``k = floor(16 |x|) / 16``,
    whose square is exact, so the rounding of ``x**2`` does not grow into the result.
    """
    a = np.abs(x)
    np.clip(a, _TINY, np.sqrt(-2.0 * exp_cutoff(a.dtype)) + 1.0, out=a)  # a**2 stays finite
    k = np.multiply(a, 16.0)
    np.floor(k, out=k)
    k /= 16.0
    rest = np.subtract(a, k)
    rest *= a + k
    rest *= -0.5
    np.exp(rest, out=rest)  # exp of at most |x| / 16: a factor in (0.09, 1]
    k *= k
    k *= -0.5
    out = exp_cut(k)
    out *= rest
    return out


def _erfc_factor(z: np.ndarray) -> np.ndarray:
    """``r(z) = erfc(z) * exp(z**2)`` for ``z >= 0.46875`` (values below are clipped up)."""
    r = _ratio(_ERFC_NUM, _ERFC_DEN, np.clip(z, 0.46875, 4.0))
    if not z.max(initial=0.0) > 4.0:
        return r
    zt = np.clip(z, 4.0, 1e4)  # erfc is 0 long before 1e4; zt**2 stays finite
    w = np.multiply(zt, zt)
    np.divide(1.0, w, out=w)
    tail = _ratio(_TAIL_NUM, _TAIL_DEN, w)
    tail *= w
    np.subtract(_INV_SQRT_PI, tail, out=tail)
    tail /= zt
    return np.where(z <= 4.0, r, tail)


def _normal(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(Phi(x), phi(x))``: the standard normal CDF and density, in new arrays.

    ``Phi(x) = (1 + erf(x / sqrt(2))) / 2`` by Cody's rational approximations:
    ``erf`` near 0, ``erfc(|x| / sqrt(2)) = exp(-x**2 / 2) r(|x| / sqrt(2))`` beyond,
    so the lower tail keeps its relative accuracy (``Phi(-30)`` is about 5e-198,
    not 0); ``phi(x) = exp(-x**2 / 2) / sqrt(2 pi)`` shares the exponential.
    Where ``exp(-x**2 / 2)`` would come near the dtype's smallest normal number,
    it is taken as 0, so nothing underflows.
    """
    x = _as_float(x)
    s = x * _SQRT_HALF
    z = np.abs(s)
    gauss = _exp_neg_half_square(x)
    half = _erfc_factor(z)
    half *= gauss
    half *= 0.5  # Phi(-|x|)
    cdf = np.where(s < 0, half, 1.0 - half)
    near = z <= 0.46875
    if near.any():
        sn = np.clip(s, -0.46875, 0.46875)
        erf = _ratio(_ERF_NUM, _ERF_DEN, _square(sn))
        erf *= sn
        erf *= 0.5
        erf += 0.5
        cdf = np.where(near, erf, cdf)
    gauss *= _INV_SQRT_2PI
    return cdf, gauss


_GELU_C = 0.7978845608028654  # sqrt(2 / pi)
_GELU_A = 0.044715
_GELU_CLIP = 20.0  # beyond it tanh(sqrt(2/pi) (x + 0.044715 x**3)) is exactly +-1


@attrs.frozen
class GELU(_KeepsAux):
    """Gaussian error linear unit ``y = x * Phi(x)``, ``Phi`` the standard normal CDF.

    ``approximate="none"`` (the default) is the exact form, ``Phi`` computed from
    ``erf``; its derivative is ``dy/dx = Phi(x) + x * phi(x)`` with
    ``phi(x) = exp(-x**2 / 2) / sqrt(2 pi)``.

    ``approximate="tanh"`` is the tanh form ``y = x * (1 + t) / 2`` with
    ``t = tanh(u)``, ``u = sqrt(2/pi) * (x + 0.044715 x**3)``; its exact derivative
    is ``dy/dx = (1 + t) / 2 + x * (1 - t**2) * sqrt(2/pi) * (1 + 3 * 0.044715 x**2) / 2``.

    The backward pass reuses ``Phi(x)`` and ``phi(x)`` (or ``t``) from the forward pass.
    """

    approximate: str = static(default="none", converter=validation.choice("none", "tanh"))

    def _parts(self, x: np.ndarray) -> tuple[np.ndarray, Any]:
        if self.approximate == "tanh":
            t = _gelu_tanh_t(x)
            y = np.add(t, 1.0)
            y *= 0.5
            y *= x
            return y, t
        cdf, pdf = _normal(x)
        return np.multiply(x, cdf, dtype=cdf.dtype), (cdf, pdf)

    def _slope(self, x: np.ndarray, aux: Any) -> np.ndarray:
        if self.approximate == "tanh":
            return _gelu_tanh_slope(x, aux)
        cdf, pdf = aux
        d = np.multiply(x, pdf, dtype=pdf.dtype)
        d += cdf
        return d


def _gelu_tanh_t(x: np.ndarray) -> np.ndarray:
    """``tanh(sqrt(2/pi) (x + 0.044715 x**3))``; ``x`` clipped first so ``x**3`` stays finite."""
    xc = np.clip(_as_float(x), -_GELU_CLIP, _GELU_CLIP)
    u = _square(xc)
    u *= _GELU_A
    u += 1.0
    u *= xc
    u *= _GELU_C
    np.tanh(u, out=u)
    return u


def _gelu_tanh_slope(x: np.ndarray, t: np.ndarray) -> np.ndarray:
    """``(1 + t)/2 + x (1 - t**2) sqrt(2/pi) (1 + 3 a x**2) / 2``; ``1 - t**2`` is 0 beyond
    the clip, so clipping ``x`` changes nothing there."""
    xc = np.clip(_as_float(x), -_GELU_CLIP, _GELU_CLIP)
    d = _square(xc)
    d *= 3.0 * _GELU_A
    d += 1.0
    d *= xc
    d *= _GELU_C
    d *= 1.0 - t
    d *= 1.0 + t  # 1 - t**2, without underflow at tiny t
    d += 1.0 + t
    d *= 0.5
    return d


@attrs.frozen
class ELU(_KeepsAux):
    """Exponential linear unit: ``y = x`` where ``x > 0``, else ``alpha * (exp(x) - 1)``.

    Derivative from the output: ``dy/dx = 1`` where ``x > 0``, else ``y + alpha``
    (``= alpha * exp(x)``). ``exp`` is only taken of ``min(x, 0)``, as ``expm1``.
    """

    alpha: float = static(default=1.0, converter=validation.real())

    def _parts(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        neg = np.minimum(_as_float(x), 0.0)
        np.expm1(neg, out=neg)
        neg *= self.alpha
        y = np.where(x > 0, x, neg)
        return y, y

    def _slope(self, x: np.ndarray, aux: np.ndarray) -> np.ndarray:
        d = np.add(aux, self.alpha)
        d[x > 0] = 1.0
        return d


@attrs.frozen
class SiLU(_KeepsAux):
    """Sigmoid linear unit (swish): ``y = x * s`` with ``s = sigmoid(x)`` (exact in both tails).

    Derivative: ``dy/dx = s + x s (1 - s) = s (1 + x (1 - s))``, reusing ``s``.
    """

    def _parts(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s = sigmoid(x)
        return s * x, s

    def _slope(self, x: np.ndarray, aux: np.ndarray) -> np.ndarray:
        d = np.subtract(1.0, aux)
        d *= x
        d += 1.0
        d *= aux
        return d
