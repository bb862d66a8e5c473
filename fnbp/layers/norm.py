"""Normalisation layers: LayerNorm (per sample) and BatchNorm (per feature, over the batch).

Both normalise and then apply a learned per-feature affine map::

    xhat = (x - mean) / sigma,    sigma = sqrt(var + eps),    y = gamma * xhat + beta

with the biased variance ``var = mean((x - mean)**2)``. They differ in the
axes the statistics are taken over: the last axis of each sample for
LayerNorm, every axis *but* the last (the batch, and the spatial axes of an
``(N, H, W, C)`` input) for BatchNorm. When the statistics come from ``x``
itself, the gradient flows through them; with ``m`` values per statistic and
``mean_m`` their average::

    g_x = (1 / sigma) * (g_xhat - mean_m(g_xhat) - xhat * mean_m(g_xhat * xhat)),
    g_xhat = gamma * g_y

A float input of another precision (or an integer one) is cast to the
parameters' dtype on the way in, as :class:`~fnbp.Dense` does; ``eps`` keeps a
constant input (``var = 0``) finite: it gives ``xhat = 0``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import numpy as np
from numpy.typing import DTypeLike

from .. import validation
from ..core import Context, ContextLayer, Layer
from ..errors import ModeError, ShapeError, StructureError
from ..record import array_repr, frozen, param, static

__all__ = ["LayerNorm", "BatchNorm", "BatchNormState"]


def _affine_init(features: int, dtype: DTypeLike, who: str) -> tuple[np.ndarray, np.ndarray]:
    """``(gamma, beta) = (ones, zeros)`` of shape ``(features,)``."""
    dtype = validation.float_dtype(f"{who}.init", dtype)
    n = validation.check_int(f"{who}.init", "features", features, low=1)
    validation.check_size(f"{who}.init", "gamma and beta", n)
    return np.ones(n, dtype), np.zeros(n, dtype)


def _norm_repr(layer: Any, **defaults: float) -> str:
    """``BatchNorm(16)``, with the hyperparameters that differ from their defaults."""
    size = str(layer.gamma.shape[0]) if np.ndim(layer.gamma) == 1 else array_repr(layer.gamma)
    extra = [f"{k}={getattr(layer, k)!r}" for k, v in defaults.items() if getattr(layer, k) != v]
    return f"{type(layer).__name__}({', '.join([size, *extra])})"


def _check(layer: Any, x: np.ndarray) -> np.ndarray:
    """``x`` of shape ``(N, ..., C)`` in the parameters' dtype, or a clear error."""
    name, gamma, beta = type(layer).__name__, layer.gamma, layer.beta
    validation.check_params(name, gamma=gamma, beta=beta)
    if gamma.ndim != 1 or gamma.size == 0 or beta.shape != gamma.shape:
        raise ShapeError(
            f"{name} needs gamma and beta of one shape (C,), "
            f"got gamma {gamma.shape} and beta {beta.shape}"
        )
    c = gamma.shape[0]
    if type(x) is not np.ndarray:
        raise StructureError(f"{name}({c}) expects one array, got a {type(x).__name__}")
    if x.ndim < 2 or x.shape[-1] != c:
        hint = " (a single sample? use x[None])" if x.ndim == 1 else ""
        raise ShapeError(f"{name}({c}) expects input of shape (N, ..., {c}), got {x.shape}{hint}")
    if x.dtype != gamma.dtype:
        x = validation.numeric(x, name).astype(gamma.dtype)
    return x


def _standardize(x: np.ndarray, axis: int | tuple[int, ...], eps: float, keepdims: bool) -> tuple:
    """``(xhat, 1/sigma, mean, var)`` with statistics over ``axis`` (biased variance)."""
    mean = np.mean(x, axis=axis, keepdims=keepdims)
    xhat = x - mean
    var = np.mean(np.square(xhat), axis=axis, keepdims=keepdims)
    inv = np.sqrt(var + eps)
    np.divide(1.0, inv, out=inv)
    xhat *= inv
    return xhat, inv, mean, var


def _affine(xhat: np.ndarray, gamma: np.ndarray, beta: np.ndarray) -> np.ndarray:
    y = xhat * gamma
    y += beta
    return y


@attrs.frozen
class LayerNorm(Layer):
    """Layer normalisation over the last axis of each sample (Ba et al. 2016).

    For ``x`` of shape ``(N, ..., C)``, with the mean and the biased variance
    of each row ``x[n, ..., :]`` (``C`` values)::

        xhat = (x - mean) / sqrt(var + eps),    y = gamma * xhat + beta

    ``gamma`` and ``beta`` have shape ``(C,)``. Gradients, with sums over every
    axis but the last and ``mean_C`` the average over the last axis::

        g_beta = sum(g_y)      g_gamma = sum(g_y * xhat)      g_xhat = gamma * g_y
        g_x = (g_xhat - mean_C(g_xhat) - xhat * mean_C(g_xhat * xhat)) / sqrt(var + eps)

    No state and the same computation in training and inference; batch size 1
    is fine. A constant row gives ``xhat = 0`` (so ``y = beta``), not NaN.
    """

    gamma: np.ndarray = param()
    beta: np.ndarray = param()
    eps: float = static(default=1e-5, converter=validation.real(low=0.0, low_open=True))
    fresh_y = fresh_g_x = fresh_grads = True  # new arrays, kept by no one (see fnbp.core)
    verified = True  # checked by the contract suite, not at run time (see fnbp.core)

    def __repr__(self) -> str:
        return _norm_repr(self, eps=1e-5)

    @classmethod
    def init(cls, features: int, *, eps: float = 1e-5, dtype: DTypeLike = np.float32) -> LayerNorm:
        """A new layer for ``features`` channels: ``gamma = 1``, ``beta = 0``."""
        return cls(*_affine_init(features, dtype, "LayerNorm"), eps=eps)

    def vjp(self, x: np.ndarray, need_g_x: bool = True) -> tuple[np.ndarray, Callable]:
        """``(y, pullback)``; the input gradient flows through each row's mean and variance."""
        x = _check(self, x)
        xhat, inv, _, _ = _standardize(x, -1, self.eps, keepdims=True)
        lead = tuple(range(x.ndim - 1))

        def pullback(g_y: np.ndarray) -> tuple[np.ndarray | None, LayerNorm]:
            grads = LayerNorm(
                frozen(np.sum(g_y * xhat, axis=lead)), frozen(np.sum(g_y, axis=lead)), self.eps
            )
            return (self._g_x(g_y, xhat, inv) if need_g_x else None), grads

        return _affine(xhat, self.gamma, self.beta), pullback

    def _g_x(self, g_y: np.ndarray, xhat: np.ndarray, inv: np.ndarray) -> np.ndarray:
        g_xhat = g_y * self.gamma
        proj = np.mean(g_xhat * xhat, axis=-1, keepdims=True)
        g_x = g_xhat - np.mean(g_xhat, axis=-1, keepdims=True)
        g_x -= xhat * proj
        g_x *= inv
        return g_x


@attrs.frozen
class BatchNormState:
    """The running statistics of a :class:`BatchNorm`, per feature: ``mean`` and ``var``.

    An immutable record (its arrays are read-only): training never changes
    it but returns a new one. ``var`` estimates the data's variance without
    bias (see :class:`BatchNorm`). A fresh state, from
    ``BatchNorm.init_state()``, has ``mean = 0`` and ``var = 1``.
    """

    mean: np.ndarray = param()
    var: np.ndarray = param()


@attrs.frozen
class BatchNorm(ContextLayer):
    """Batch normalisation over every axis but the last (Ioffe & Szegedy 2015).

    Channels last: for ``x`` of shape ``(N, C)`` or ``(N, H, W, C)`` each of the
    ``C`` features is normalised with statistics over the other axes (``m =
    x.size / C`` values each), then scaled and shifted::

        xhat = (x - mu) / sqrt(v + eps),    y = gamma * xhat + beta

    **Training** (``train=True``) uses the batch's own mean and biased
    variance for ``mu`` and ``v``, so the gradient flows through them (sums
    and ``mean_m`` over every axis but the last)::

        g_beta = sum(g_y)      g_gamma = sum(g_y * xhat)
        g_x = (gamma / sqrt(v + eps)) * (g_y - mean_m(g_y) - xhat * mean_m(g_y * xhat))

    and returns a new :class:`BatchNormState` of running averages. **Momentum
    convention**: ``momentum`` is the fraction of the old average that is
    *kept*, as for the decay rates of fnbp's optimizers (and Keras, Flax)::

        running = momentum * running + (1 - momentum) * batch_statistic

    The default 0.9 is PyTorch's ``momentum=0.1`` (which names the other
    fraction): a memory of about 10 batches, converging fast on small data.
    The running variance stores the **unbiased** batch variance ``v * m / (m
    - 1)`` (as PyTorch does): it converges to the data's variance. Hence
    training needs ``m >= 2`` values per feature: a batch of one ``(1, C)``
    sample raises :class:`~fnbp.ShapeError` (use ``drop_last=True`` in ``fit``).

    **Inference** (the default) uses the running ``mean`` and ``var`` of the
    given state, and the gradient is the affine one only::

        g_x = g_y * gamma / sqrt(var + eps)

    Inference needs that state: without one (a plain ``fb.forward(net, x)``)
    BatchNorm raises :class:`~fnbp.ModeError` rather than silently use
    untrained statistics. Pass ``state=history.train_state.model_state`` after
    ``fb.fit`` (or a :class:`~fnbp.TrainState` to ``fb.predict``), or
    ``fb.init_state(net)`` for a fresh network.
    """

    gamma: np.ndarray = param()
    beta: np.ndarray = param()
    momentum: float = static(default=0.9, converter=validation.real(low=0.0, high=1.0))
    eps: float = static(default=1e-5, converter=validation.real(low=0.0, low_open=True))
    fresh_grads = True  # new arrays, kept by no one (see fnbp.core)
    verified = True  # checked by the contract suite, not at run time (see fnbp.core)

    @classmethod
    def init(
        cls,
        num_features: int,
        *,
        momentum: float = 0.9,
        eps: float = 1e-5,
        dtype: DTypeLike = np.float32,
    ) -> BatchNorm:
        """A new layer for ``num_features`` channels: ``gamma = 1``, ``beta = 0``."""
        gamma, beta = _affine_init(num_features, dtype, "BatchNorm")
        return cls(gamma, beta, momentum=momentum, eps=eps)

    def __repr__(self) -> str:
        return _norm_repr(self, momentum=0.9, eps=1e-5)

    def init_state(self) -> BatchNormState:
        """A fresh state: running ``mean = 0`` and ``var = 1`` in the parameters' dtype."""
        return BatchNormState(np.zeros_like(self.gamma), np.ones_like(self.gamma))

    def vjp_ctx(self, x: np.ndarray, need_g_x: bool, ctx: Context) -> tuple:
        """``(y, pullback, new_state)``: batch statistics in training, ``ctx.state`` otherwise.

        ``ctx.state`` is never modified; in inference it is handed back as it
        is. In training without a state the running averages start fresh.
        """
        x = _check(self, x)
        if ctx.train:
            state = self.init_state() if ctx.state is None else self._check_state(ctx.state)
            return self._train(x, state, need_g_x)
        if ctx.state is None:
            c = self.gamma.shape[0]
            raise ModeError(
                f"BatchNorm({c}) in inference needs its running statistics and got no state: "
                "pass state= (history.train_state.model_state after fb.fit, or "
                "fb.init_state(net) for an untrained network), or give fb.predict the TrainState"
            )
        return (*self._infer(x, self._check_state(ctx.state), need_g_x), ctx.state)

    def _check_state(self, state: Any) -> BatchNormState:
        c, dtype = self.gamma.shape[0], self.gamma.dtype
        ok = type(state) is BatchNormState and all(
            a.shape == (c,) and a.dtype == dtype for a in (state.mean, state.var)
        )
        if not ok:
            raise StructureError(
                f"BatchNorm({c}) needs a BatchNormState with mean and var of shape ({c},) "
                f"and dtype {dtype} (from init_state()), got {state!r}"
            )
        return state

    def _infer(self, x: np.ndarray, state: BatchNormState, need_g_x: bool) -> tuple:
        inv = np.sqrt(state.var + self.eps)
        np.divide(1.0, inv, out=inv)
        xhat = x - state.mean
        xhat *= inv
        axes = tuple(range(x.ndim - 1))

        def pullback(g_y: np.ndarray) -> tuple[np.ndarray | None, BatchNorm]:
            g_x = g_y * (self.gamma * inv) if need_g_x else None
            return g_x, self._grads(g_y, xhat, axes)

        return _affine(xhat, self.gamma, self.beta), pullback

    def _train(self, x: np.ndarray, state: BatchNormState, need_g_x: bool) -> tuple:
        m = x.size // x.shape[-1]
        if m < 2:
            raise ShapeError(
                f"BatchNorm({x.shape[-1]}) in training needs at least 2 values per feature "
                f"to estimate a variance, got input of shape {x.shape}: use batches of 2 or "
                "more (fit(..., drop_last=True) drops a last batch of one)"
            )
        axes = tuple(range(x.ndim - 1))
        xhat, inv, mean, var = _standardize(x, axes, self.eps, keepdims=False)

        def pullback(g_y: np.ndarray) -> tuple[np.ndarray | None, BatchNorm]:
            grads = self._grads(g_y, xhat, axes)
            if not need_g_x:
                return None, grads
            g_x = xhat * (grads.gamma / m)
            np.subtract(g_y, g_x, out=g_x)
            g_x -= grads.beta / m
            g_x *= self.gamma * inv
            return g_x, grads

        new_state = BatchNormState(
            self._running(state.mean, mean), self._running(state.var, var * (m / (m - 1)))
        )
        return _affine(xhat, self.gamma, self.beta), pullback, new_state

    def _running(self, old: np.ndarray, batch: np.ndarray) -> np.ndarray:
        """``momentum * old + (1 - momentum) * batch`` in a new array."""
        new = old * self.momentum
        new += batch * (1.0 - self.momentum)
        return frozen(new)

    def _grads(self, g_y: np.ndarray, xhat: np.ndarray, axes: tuple[int, ...]) -> BatchNorm:
        """The gradient record: ``g_gamma = sum(g_y * xhat)``, ``g_beta = sum(g_y)``."""
        g_gamma = np.sum(g_y * xhat, axis=axes)
        return BatchNorm(frozen(g_gamma), frozen(np.sum(g_y, axis=axes)), self.momentum, self.eps)
