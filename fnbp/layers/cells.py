"""Recurrent cells: one time step of an RNN, an LSTM and a GRU.

The conventions are those of ``docs/derivations/recurrent.md``. Sequences are
batch first, ``x`` of shape ``(N, T, F)``; the state ``h`` has shape ``(N, H)``
(the LSTM also carries ``c``). A cell with ``G`` gates (RNN 1, LSTM 4, GRU 3)
holds four parameters in PyTorch's layout, transposed::

    W_i (F, G*H) = weight_ih.T     b_i (G*H,) = bias_ih
    W_h (H, G*H) = weight_hh.T     b_h (G*H,) = bias_hh

Gate ``k`` owns the columns ``k*H:(k+1)*H``, in PyTorch's order (LSTM
``i, f, g, o``; GRU ``r, z, n``), so a PyTorch layer loads with a transpose.
Every step uses two projections, ``xp_t = x_t W_i + b_i`` and
``hp_t = h_{t-1} W_h + b_h``; both biases are kept, as in PyTorch.

**A cell** is a plain layer for one time step: input ``(carry, x_t)``, output
``(new_carry, y_t)`` with ``y_t = h_t``. Besides ``vjp`` the built-in cells
have the small interface the time loop (:mod:`fnbp.layers.recurrent`) needs
to take the input projection out of the loop; their own one-step ``vjp`` is
made of the same pieces, so each cell's math is written once:

* ``initial_carry()``: the zero carry of one sample (``(H,)`` per leaf);
* ``project(x)``: ``xp = x W_i + b_i`` for ``x`` of shape ``(..., F)``: all
  ``T`` steps in one matrix multiply;
* ``step(xp_t, carry) -> (carry_t, saved)``: the forward steps, numbered;
* ``step_back(g_carry, saved) -> (g_xp_t, g_hp_t, g_carry_prev)``: the same
  steps undone in reverse, one line each, derivatives from saved outputs;
* ``projection_grads(x, h_prev, g_xp, g_hp, need_g_x) -> (g_x, grads)``:
  ``g_W_i = x^T g_xp``, ``g_W_h = h_prev^T g_hp``, the bias sums and
  ``g_x = g_xp W_i^T``, each one product over all the rows given.

The carry of such a cell is ``h`` or a tuple whose first leaf is ``h``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import attrs
import numpy as np
from numpy.typing import DTypeLike

from .. import random, validation
from .._numeric import ones, sigmoid, sigmoid_grad
from ..core import Layer
from ..errors import ShapeError, StructureError
from ..record import array_repr, frozen, param
from .carry import (
    add_to_hidden,
    carry_shapes,
    check_carry,
    hidden,
    shapes_of,
    underflow_to_zero,
)

__all__ = ["RNNCell", "LSTMCell", "GRUCell"]

Tree = Any
C = TypeVar("C", bound="_Cell")


# --------------------------------------------------------------------------- small helpers


def _tanh_back(t: np.ndarray, g: np.ndarray) -> np.ndarray:
    """``g * (1 - t**2)``: the backward pass of ``t = tanh(a)`` from its output, a new array.

    Written ``(1 - t)(1 + t)``: no square of a tiny ``t`` to underflow (a cell
    state of 1e-300 is possible), and no cancellation near ``|t| = 1``."""
    out = np.subtract(1.0, t)
    out *= 1.0 + t
    out *= g
    return out


def _blocks(a: np.ndarray, n: int) -> list[np.ndarray]:
    """The ``n`` gate blocks of the last axis (views)."""
    h = a.shape[-1] // n
    return [a[..., k * h : (k + 1) * h] for k in range(n)]


def _gates_back(s: np.ndarray, g_s: tuple, tanh_block: int | None = None) -> np.ndarray:
    """The gradient of the gates' pre-activations from their outputs ``s`` and their
    gradients ``g_s`` (one per block): ``g s (1 - s)`` for a sigmoid block,
    ``g (1 - s**2)`` for the ``tanh_block``; a new array of ``s``'s shape."""
    g_a = sigmoid_grad(s, np.concatenate(g_s, axis=-1))
    if tanh_block is not None:
        k = tanh_block
        _blocks(g_a, len(g_s))[k][...] = _tanh_back(_blocks(s, len(g_s))[k], g_s[k])
    return g_a


# --------------------------------------------------------------------------- the cells


@attrs.frozen
class _Cell(Layer):
    """The parameters, checks, projections and one-step ``vjp`` shared by the cells.

    Subclasses set ``GATES`` and write ``step`` and ``step_back``.
    """

    W_i: np.ndarray = param()
    W_h: np.ndarray = param()
    b_i: np.ndarray = param()
    b_h: np.ndarray = param()

    GATES: ClassVar[int] = 1

    def _describe(self) -> str:
        name = type(self).__name__
        if np.ndim(self.W_i) == 2 and np.ndim(self.W_h) == 2:
            return f"{name}({self.W_i.shape[0]} -> {self.W_h.shape[0]})"
        return f"{name}(W_i={array_repr(self.W_i)}, W_h={array_repr(self.W_h)})"

    @classmethod
    def init(
        cls: type[C],
        key: random.Key,
        input_size: int,
        hidden_size: int,
        *,
        dtype: DTypeLike = np.float32,
    ) -> C:
        """A new cell: every weight and bias drawn from ``U(-1/sqrt(H), 1/sqrt(H))``.

        That is PyTorch's initialisation of ``nn.RNN``, ``nn.LSTM`` and ``nn.GRU``
        (the LSTM's forget-gate bias too), with ``H = hidden_size``. Each of the
        four arrays has its own key split from ``key``.
        """
        owner = f"{cls.__name__}.init"
        dtype = validation.float_dtype(owner, dtype)
        f = validation.check_int(owner, "input_size", input_size, low=1)
        h = validation.check_int(owner, "hidden_size", hidden_size, low=1)
        validation.check_size(owner, "W_i", f * cls.GATES * h)
        validation.check_size(owner, "W_h", h * cls.GATES * h)
        bound = 1.0 / math.sqrt(h)
        shapes = ((f, cls.GATES * h), (h, cls.GATES * h), (cls.GATES * h,), (cls.GATES * h,))
        keys = random.split(key, 4)
        return cls(
            *(random.uniform(k, s, -bound, bound, dtype) for k, s in zip(keys, shapes, strict=True))
        )

    @property
    def input_size(self) -> int:
        """``F``, the number of input features."""
        return self.W_i.shape[0]

    @property
    def hidden_size(self) -> int:
        """``H``, the size of the state."""
        return self.W_h.shape[0]

    def _name(self) -> str:
        return f"{type(self).__name__}({self.W_i.shape[0]} -> {self.W_h.shape[0]})"

    def _check_params(self) -> np.dtype:
        W_i, W_h, b_i, b_h, g = self.W_i, self.W_h, self.b_i, self.b_h, self.GATES
        ok = W_h.ndim == 2 and W_i.ndim == 2 and W_h.shape[1] == g * W_h.shape[0]
        if not (ok and W_i.shape[1] == W_h.shape[1] and b_i.shape == b_h.shape == W_h.shape[1:]):
            raise ShapeError(
                f"{type(self).__name__} needs W_i (F, {g}H), W_h (H, {g}H), b_i and b_h "
                f"({g}H,) for its {g} gate(s), got W_i {W_i.shape}, W_h {W_h.shape}, "
                f"b_i {b_i.shape}, b_h {b_h.shape}"
            )
        return validation.check_params(self._name(), W_i=W_i, W_h=W_h, b_i=b_i, b_h=b_h)

    def initial_carry(self) -> Tree:
        """The zero carry of one sample: ``h = 0`` of shape ``(H,)``."""
        return np.zeros(self.W_h.shape[0], self.W_h.dtype)

    def project(self, x: np.ndarray) -> np.ndarray:
        """``xp = x W_i + b_i`` for ``x`` of shape ``(..., F)``: one matrix multiply for
        every row (all time steps at once), a new array of shape ``(..., G*H)``."""
        dtype = self._check_params()
        f = self.W_i.shape[0]
        if type(x) is not np.ndarray or x.ndim < 2 or x.shape[-1] != f:
            got = x.shape if type(x) is np.ndarray else type(x).__name__
            raise ShapeError(f"{self._name()} expects inputs with {f} features, got {got}")
        rows = x.reshape(-1, f).astype(dtype, copy=False)
        xp = rows.dot(self.W_i)
        xp += self.b_i
        return xp.reshape(*x.shape[:-1], xp.shape[-1])  # not -1: a batch may be empty

    def projection_grads(
        self,
        x: np.ndarray,
        h_prev: np.ndarray,
        g_xp: np.ndarray,
        g_hp: np.ndarray,
        need_g_x: bool,
    ) -> tuple[np.ndarray | None, Any]:
        """``(g_x, grads)`` from the stacked inputs ``x`` (..., F), states ``h_prev``
        (..., H) and projection gradients ``g_xp``, ``g_hp`` (..., G*H)::

            g_W_i = x^T g_xp      g_b_i = 1^T g_xp      g_x = g_xp W_i^T
            g_W_h = h_prev^T g_hp g_b_h = 1^T g_hp

        one product each over all rows (all time steps). For the RNN and the
        LSTM ``g_hp is g_xp`` and ``g_b_h`` is ``g_b_i``.
        """
        f, h = self.W_i.shape[0], self.W_h.shape[0]
        xs, hs = x.reshape(-1, f), h_prev.reshape(-1, h)
        gx, gh = g_xp.reshape(-1, g_xp.shape[-1]), g_hp.reshape(-1, g_hp.shape[-1])
        one = ones(len(gx), gx.dtype)
        g_b_i = frozen(one.dot(gx))
        grads = attrs.evolve(
            self,
            W_i=frozen(xs.T.dot(gx)),
            W_h=frozen(hs.T.dot(gh)),
            b_i=g_b_i,
            b_h=g_b_i if g_hp is g_xp else frozen(one.dot(gh)),
        )
        g_x = gx.dot(self.W_i.T).reshape(x.shape) if need_g_x else None
        return g_x, grads

    def _check_input(self, x: Any) -> tuple[Tree, np.ndarray]:
        dtype = self._check_params()
        name = self._name()
        if type(x) is not tuple or len(x) != 2 or type(x[1]) is not np.ndarray:
            raise StructureError(
                f"{name} expects one time step (carry, x_t), carry "
                f"{carry_shapes(self.initial_carry())} and x_t (N, {self.W_i.shape[0]}); "
                f"got {shapes_of(x)} (for a sequence use fb.Recurrent(cell))"
            )
        carry, x_t = x
        if x_t.ndim != 2 or x_t.shape[1] != self.W_i.shape[0]:
            raise ShapeError(
                f"{name} expects x_t of shape (N, {self.W_i.shape[0]}), got {x_t.shape}"
            )
        carry = check_carry(self.initial_carry(), carry, len(x_t), dtype, name)
        return carry, validation.numeric(x_t, name).astype(dtype, copy=False)

    def vjp(self, x: tuple, need_g_x: bool = True) -> tuple[tuple, Callable]:
        """One time step: ``((carry_t, h_t), pullback)`` for ``x = (carry, x_t)``.

        The same pieces as in :class:`Recurrent`: ``project``, ``step``, and in
        the pullback ``step_back`` and ``projection_grads``.
        """
        carry, x_t = self._check_input(x)
        with underflow_to_zero():
            new, saved = self.step(self.project(x_t), carry)

        def pullback(g_y: tuple) -> tuple[tuple | None, _Cell]:
            g_new, g_out = g_y
            with underflow_to_zero():
                g_xp, g_hp, g_prev = self.step_back(add_to_hidden(g_new, g_out), saved)
                g_x_t, grads = self.projection_grads(x_t, hidden(carry), g_xp, g_hp, need_g_x)
            return ((g_prev, g_x_t) if need_g_x else None), grads

        return (new, hidden(new)), pullback

    def step(self, xp_t: np.ndarray, carry: Tree) -> tuple[Tree, Any]:
        """``(carry_t, saved)`` from ``xp_t = x_t W_i + b_i`` and the previous carry."""
        raise NotImplementedError

    def step_back(self, g_carry: Tree, saved: Any) -> tuple[np.ndarray, np.ndarray, Tree]:
        """``(g_xp_t, g_hp_t, g_carry_prev)`` from the whole gradient of ``carry_t``."""
        raise NotImplementedError


@attrs.frozen
class RNNCell(_Cell):
    """The Elman RNN with tanh, one time step: ``(h, x_t) -> (h_t, h_t)``.

    PyTorch's ``nn.RNNCell(F, H)`` (``nonlinearity="tanh"``): ``W_i`` (F, H) is
    ``weight_ih.T``, ``W_h`` (H, H) ``weight_hh.T``, ``b_i``, ``b_h`` (H,) are
    ``bias_ih``, ``bias_hh``. Forward, with ``xp_t = x_t W_i + b_i``::

        1. a   = xp_t + h_{t-1} W_h + b_h
        2. h_t = tanh(a)

    Backward, with ``g_h`` the whole gradient of ``h_t``::

        2. g_a = g_h * (1 - h_t**2)
        1. g_xp_t = g_hp_t = g_a,   g_h_{t-1} = g_a W_h^T

    Saved: ``h_t``. ``init`` draws from ``U(-1/sqrt(H), 1/sqrt(H))`` as PyTorch does.
    """

    __repr__ = _Cell._describe

    GATES: ClassVar[int] = 1

    def step(self, xp_t: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(h_t, h_t)``: the new state, which is also all the backward pass needs."""
        a = h.dot(self.W_h)  # 1. a = xp_t + h W_h + b_h
        a += xp_t
        a += self.b_h
        np.tanh(a, out=a)  # 2. h_t = tanh(a)
        return a, a

    def step_back(
        self, g_h: np.ndarray, h_t: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(g_a, g_a, g_a W_h^T)``: steps 2 and 1 undone."""
        g_a = _tanh_back(h_t, g_h)  # 2. g_a = g_h (1 - h_t^2)
        return g_a, g_a, g_a.dot(self.W_h.T)  # 1. g_xp = g_hp = g_a; carry g_a W_h^T


@attrs.frozen
class LSTMCell(_Cell):
    """The LSTM, one time step: ``((h, c), x_t) -> ((h_t, c_t), h_t)``.

    PyTorch's ``nn.LSTMCell(F, H)``: gate order ``i, f, g, o`` in the columns of
    ``W_i`` (F, 4H) = ``weight_ih.T``, ``W_h`` (H, 4H) = ``weight_hh.T``, and of
    ``b_i``, ``b_h`` (4H,) = ``bias_ih``, ``bias_hh``. Forward, with
    ``xp_t = x_t W_i + b_i`` and ``a`` split into its blocks ``a_i, a_f, a_g, a_o``::

        1. a   = xp_t + h_{t-1} W_h + b_h
        2. i = sigmoid(a_i),  f = sigmoid(a_f),  g = tanh(a_g),  o = sigmoid(a_o)
        3. c_t = f * c_{t-1} + i * g
        4. q_t = tanh(c_t)
        5. h_t = o * q_t

    Backward, with ``g_h`` and ``g_c`` the whole gradients of ``h_t`` and ``c_t``::

        5. g_o = g_h * q_t,   g_q = g_h * o
        4. g_c += g_q * (1 - q_t**2)
        3. g_f = g_c * c_{t-1},  g_i = g_c * g,  g_g = g_c * i,  g_c_{t-1} = g_c * f
        2. g_a = [g_i i(1-i), g_f f(1-f), g_g (1-g**2), g_o o(1-o)]
        1. g_xp_t = g_hp_t = g_a,   g_h_{t-1} = g_a W_h^T

    Saved: ``c_{t-1}``, the gates ``[i, f, g, o]`` and ``q_t``. ``init`` draws
    every weight and bias, the forget gate's too, from ``U(-1/sqrt(H), 1/sqrt(H))``
    as PyTorch does (add 1 to ``b_i[H:2H]`` for the common forget-bias-1 start).
    """

    __repr__ = _Cell._describe

    GATES: ClassVar[int] = 4

    def initial_carry(self) -> tuple[np.ndarray, np.ndarray]:
        """The zero carry of one sample: ``(h, c) = (0, 0)``, each of shape ``(H,)``."""
        h = self.W_h.shape[0]
        return np.zeros(h, self.W_h.dtype), np.zeros(h, self.W_h.dtype)

    def step(self, xp_t: np.ndarray, carry: tuple) -> tuple[tuple, tuple]:
        """``((h_t, c_t), (c_{t-1}, gates, q_t))``."""
        h, c = carry
        a = h.dot(self.W_h)  # 1. a = xp_t + h W_h + b_h
        a += xp_t
        a += self.b_h
        s = sigmoid(a)  # 2. the gates i, f, o; g's block is replaced by tanh(a_g)
        i, f, g, o = _blocks(s, 4)
        np.tanh(_blocks(a, 4)[2], out=g)
        c_t = f * c  # 3. c_t = f c + i g
        c_t += i * g
        q = np.tanh(c_t)  # 4. q_t = tanh(c_t)
        return (o * q, c_t), (c, s, q)  # 5. h_t = o q_t

    def step_back(self, g_carry: tuple, saved: tuple) -> tuple[np.ndarray, np.ndarray, tuple]:
        """``(g_a, g_a, (g_h_{t-1}, g_c_{t-1}))``: steps 5 to 1 undone."""
        (g_h, g_c), (c, s, q) = g_carry, saved
        i, f, g, o = _blocks(s, 4)
        g_o, g_q = g_h * q, g_h * o  # 5.
        g_c = g_c + _tanh_back(q, g_q)  # 4.
        g_f, g_i, g_g = g_c * c, g_c * g, g_c * i  # 3.
        g_a = _gates_back(s, (g_i, g_f, g_g, g_o), tanh_block=2)  # 2.
        return g_a, g_a, (g_a.dot(self.W_h.T), g_c * f)  # 1., and 3.'s carry g_c f


@attrs.frozen
class GRUCell(_Cell):
    """The GRU, one time step: ``(h, x_t) -> (h_t, h_t)``.

    PyTorch's ``nn.GRUCell(F, H)``: gate order ``r, z, n`` in the columns of
    ``W_i`` (F, 3H) = ``weight_ih.T``, ``W_h`` (H, 3H) = ``weight_hh.T``, and of
    ``b_i``, ``b_h`` (3H,) = ``bias_ih``, ``bias_hh``; the ``n`` block of ``b_h``
    sits inside ``r * hp_n``, as in PyTorch. Forward, with ``xp_t = x_t W_i + b_i``
    split into ``xp_r, xp_z, xp_n`` (and ``hp`` likewise)::

        1. hp  = h_{t-1} W_h + b_h
        2. r = sigmoid(xp_r + hp_r),   z = sigmoid(xp_z + hp_z)
        3. n = tanh(xp_n + r * hp_n)
        4. h_t = (1 - z) * n + z * h_{t-1}     (computed as n + z (h_{t-1} - n))

    Backward, with ``g_h`` the whole gradient of ``h_t``::

        4. g_n = g_h * (1 - z),   g_z = g_h * (h_{t-1} - n)
        3. g_an = g_n * (1 - n**2),   g_r = g_an * hp_n,   g_hp_n = g_an * r
        2. g_ar = g_r r(1-r),   g_az = g_z z(1-z)
        1. g_xp_t = [g_ar, g_az, g_an],   g_hp_t = [g_ar, g_az, g_hp_n],
           g_h_{t-1} = g_h * z + g_hp_t W_h^T

    Saved: ``h_{t-1}``, ``[r, z]``, ``n`` and ``hp_n``. ``init`` draws from
    ``U(-1/sqrt(H), 1/sqrt(H))`` as PyTorch does.
    """

    __repr__ = _Cell._describe

    GATES: ClassVar[int] = 3

    def step(self, xp_t: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, tuple]:
        """``(h_t, (h_{t-1}, [r, z], n, hp_n))``."""
        k = 2 * h.shape[-1]  # the r and z blocks come first
        hp = h.dot(self.W_h)  # 1. hp = h W_h + b_h
        hp += self.b_h
        xp_rz, xp_n, hp_rz, hp_n = xp_t[:, :k], xp_t[:, k:], hp[:, :k], hp[:, k:]
        rz = sigmoid(xp_rz + hp_rz)  # 2. r, z = sigmoid(xp_rz + hp_rz)
        r, z = _blocks(rz, 2)
        n = r * hp_n  # 3. n = tanh(xp_n + r hp_n)
        n += xp_n
        np.tanh(n, out=n)
        h_t = h - n  # 4. h_t = (1 - z) n + z h = n + z (h - n)
        h_t *= z
        h_t += n
        return h_t, (h, rz, n, hp_n)

    def step_back(self, g_h: np.ndarray, saved: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(g_xp_t, g_hp_t, g_h_{t-1})``: steps 4 to 1 undone."""
        h, rz, n, hp_n = saved
        r, z = _blocks(rz, 2)
        g_n, g_z = g_h * (1.0 - z), g_h * (h - n)  # 4.
        g_an = _tanh_back(n, g_n)  # 3.
        g_r, g_hp_n = g_an * hp_n, g_an * r  # 3.
        g_arz = _gates_back(rz, (g_r, g_z))  # 2.
        g_xp, g_hp = np.concatenate((g_arz, g_an), -1), np.concatenate((g_arz, g_hp_n), -1)  # 1.
        return g_xp, g_hp, g_h * z + g_hp.dot(self.W_h.T)  # 1. and 4.'s direct carry g_h z
