"""Recurrent layers: the RNN, LSTM and GRU cells, the time loop ``Recurrent``, ``Bidirectional``.

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
have the small interface the time loop needs to take the input projection
out of the loop; their own one-step ``vjp`` is made of the same pieces, so
each cell's math is written once:

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

**The time loop** :class:`Recurrent` runs any cell over the time axis. A
cell without the interface above (one of your own with just ``vjp``) works
too, step by step through its ``vjp``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import attrs
import numpy as np
from numpy.typing import DTypeLike

from .. import random, tree, validation
from .._numeric import ones, sigmoid, sigmoid_grad
from ..core import (
    Context,
    ContextLayer,
    Layer,
    call,
    check_layer,
    dtype_of,
    init_state,
    split_context,
)
from ..errors import LocatedError, ShapeError, StructureError
from ..record import array_repr, frozen, nested_repr, param, readonly, static

__all__ = ["RNNCell", "LSTMCell", "GRUCell", "Recurrent", "Bidirectional"]

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


def _underflow_to_zero() -> np.errstate:
    """The cells' arithmetic context: underflow is not an error (overflow still is).

    An LSTM's cell state is multiplied by its forget gate at every step and
    may decay below the smallest float; IEEE arithmetic rounds it to 0, which
    is the right value, so the cells and the time loop compute under
    ``np.errstate(under="ignore")`` (a user's cell in the loop too).
    """
    return np.errstate(under="ignore")


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


def _h(carry: Tree) -> np.ndarray:
    """The hidden state of a built-in cell's carry: ``h``, or the first leaf of ``(h, c)``."""
    return carry if type(carry) is np.ndarray else carry[0]


def _add_h(g_carry: Tree, g_h: np.ndarray) -> Tree:
    """``g_carry`` with ``g_h`` added to the gradient of ``h`` (a new array)."""
    if type(g_carry) is np.ndarray:
        return g_carry + g_h
    return (g_carry[0] + g_h, *g_carry[1:])


def _map(f: Callable, t: Tree, *rest: Tree) -> Tree:
    """``tree.map`` with a fast path for one array (the carry of an RNN or a GRU)."""
    return f(t, *rest) if type(t) is np.ndarray else tree.map(f, t, *rest)


def _keep(m: np.ndarray, new: Tree, old: Tree) -> Tree:
    """``m * new + (1 - m) * old`` for a boolean column ``m`` (N, 1): the masked step."""
    return _map(lambda a, b: np.where(m, a, b), new, old)


def _describe(t: Tree) -> str:
    """``(N, 4)`` or ``((N, 4), (N, 4))``: the shapes a carry must have, N for the batch."""
    if type(t) is tuple:
        return "(" + ", ".join(_describe(c) for c in t) + ")"
    return "(N, " + ", ".join(map(str, np.shape(t))) + ")"


def _shapes(t: Tree) -> str:
    """The shapes of a given tree, for an error message."""
    if type(t) is tuple:
        return "(" + ", ".join(_shapes(c) for c in t) + ")"
    if type(t) is np.ndarray:
        return f"an array of shape {t.shape}"
    return f"a {type(t).__name__}"


def _check_carry(template: Tree, carry: Tree, n: int, dtype: np.dtype, owner: str) -> Tree:
    """``carry`` checked against ``template`` (one sample's carry, ``(H,)`` per leaf):
    the same structure, each leaf of shape ``(n, H)``, cast to ``dtype``."""
    expected = f"{owner}: the carry must be {_describe(template)} with N = {n}"
    if tree.mismatch(template, carry) is not None or (
        type(template) is tuple and len(tree.leaves(carry)) != len(tree.leaves(template))
    ):
        raise StructureError(f"{expected}, got {_shapes(carry)}")

    def leaf(t: np.ndarray, a: Any) -> np.ndarray:
        a = validation.numeric(a, owner, "carry")
        if a.shape != (n, *t.shape):
            raise ShapeError(f"{expected}, got {_shapes(carry)}")
        return a if a.dtype == dtype else a.astype(dtype)

    return tree.map(leaf, template, carry)


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
                f"{_describe(self.initial_carry())} and x_t (N, {self.W_i.shape[0]}); "
                f"got {_shapes(x)} (for a sequence use fb.Recurrent(cell))"
            )
        carry, x_t = x
        if x_t.ndim != 2 or x_t.shape[1] != self.W_i.shape[0]:
            raise ShapeError(
                f"{name} expects x_t of shape (N, {self.W_i.shape[0]}), got {x_t.shape}"
            )
        carry = _check_carry(self.initial_carry(), carry, len(x_t), dtype, name)
        return carry, validation.numeric(x_t, name).astype(dtype, copy=False)

    def vjp(self, x: tuple, need_g_x: bool = True) -> tuple[tuple, Callable]:
        """One time step: ``((carry_t, h_t), pullback)`` for ``x = (carry, x_t)``.

        The same pieces as in :class:`Recurrent`: ``project``, ``step``, and in
        the pullback ``step_back`` and ``projection_grads``.
        """
        carry, x_t = self._check_input(x)
        with _underflow_to_zero():
            new, saved = self.step(self.project(x_t), carry)

        def pullback(g_y: tuple) -> tuple[tuple | None, _Cell]:
            g_new, g_out = g_y
            with _underflow_to_zero():
                g_xp, g_hp, g_prev = self.step_back(_add_h(g_new, g_out), saved)
                g_x_t, grads = self.projection_grads(x_t, _h(carry), g_xp, g_hp, need_g_x)
            return ((g_prev, g_x_t) if need_g_x else None), grads

        return (new, _h(new)), pullback

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


# --------------------------------------------------------------------------- the time loop

_KEYS = ("x", "mask", "lengths", "carry")


def _has_interface(cell: Any) -> bool:
    """Whether ``cell`` has the methods that let the loop hoist the input projection."""
    names = ("initial_carry", "project", "step", "step_back", "projection_grads")
    return all(callable(getattr(cell, name, None)) for name in names)


def _total(*parts: np.ndarray) -> np.ndarray:
    """The sum of one parameter's gradients over all time steps, in a new array."""
    if len(parts) == 1:
        return parts[0]
    total = np.add(parts[0], parts[1])
    for part in parts[2:]:
        total += part
    return frozen(total)


def _carry0(value: Any) -> Any:
    """The learned initial carry: a tree of read-only arrays (or None)."""
    if value is None:
        return None
    return tree.map(lambda a: readonly(validation.numeric(a, "Recurrent", "carry0")), value)


def _default_carry0(rec: Recurrent) -> Any:
    """Zeros shaped like one sample's carry for ``initial="learned"``, else None."""
    if rec.initial == "zeros":
        return None
    template = getattr(rec.cell, "initial_carry", None)
    if not callable(template):
        raise StructureError(
            f"Recurrent(initial='learned'): the cell {type(rec.cell).__name__} has no "
            "initial_carry() to take the carry's shape from; pass carry0= (one sample's carry)"
        )
    return template()


def _check_carry0(rec: Recurrent, _attribute: Any, value: Any) -> None:
    if value is not None and rec.initial == "zeros":
        raise validation.fail(
            "Recurrent", "carry0", "None for initial='zeros' (use initial='learned')", value
        )


@attrs.frozen
class _Sequence:
    """A parsed input: ``x`` (N, T, F) with padded steps zeroed, the mask (or None),
    the initial carry, whether it was given, and the input dict's keys (None: an array)."""

    x: np.ndarray
    mask: np.ndarray | None
    carry: Any
    given: bool
    keys: tuple | None


_RECURRENT_DEFAULTS = (
    ("return_sequences", True),
    ("reverse", False),
    ("initial", "zeros"),
    ("return_carry", False),
)


@attrs.frozen
class Recurrent(ContextLayer):
    """A cell run over the time axis of a batch-first sequence: ``(N, T, F) -> (N, T, H)``.

    From the initial carry (zeros, the learned ``carry0`` broadcast over the
    batch, or one given in the input) the cell is applied at ``t = 1..T``
    (``t = T..1`` with ``reverse=True``; the outputs stay aligned with the
    inputs): ``(carry_t, h_t) = cell(carry_{t-1}, x_t)``.

    * **Input**: an array ``x`` of shape ``(N, T, F)``, or a dict
      ``{"x": x, "mask": (N, T) bool, "carry": initial carry}`` whose keys
      other than ``"x"`` are optional; ``"lengths": (N,) ints`` may replace
      the mask (``mask[n, t] = t < lengths[n]``). ``g_x`` comes back with the
      input's structure: ``None`` for the mask or lengths, the gradient of the
      given carry under ``"carry"`` (to chain chunks of truncated BPTT). Float
      inputs and carries are cast to the cell's dtype.
    * **Output**: every step's ``h_t``, ``(N, T, H)``, or with
      ``return_sequences=False`` the last valid step's, ``(N, H)``; with
      ``return_carry=True`` the pair ``(output, final carry)``.
    * **Masks**: at a padded step (``m_t = 0``) the carry is kept,
      ``carry_t = m_t * carry'_t + (1 - m_t) * carry_{t-1}``, the output is 0,
      and whatever the input holds there (junk, NaN) is replaced by 0 before
      the loop: padding changes no output at a valid step and no gradient.
      (The derivation page repeats the last real state at padded outputs;
      zeros keep a loss that forgets the mask from reaching that state.)
      Backward: ``g_carry'_t = m_t g_carry_t`` goes through the cell and
      ``(1 - m_t) g_carry_t`` passes straight to ``carry_{t-1}``.
    * **Backpropagation through time**: the pullback runs the steps in
      reverse, carrying ``g_h`` (and ``g_c``) from each step to the one before.
      For the built-in cells the loop is hoisted as in the derivation: the
      input projection ``xp = x W_i + b_i`` of all ``T`` steps is one matrix
      multiply before the loop; each step stores ``g_xp_t`` and ``g_hp_t``
      into stacked ``(T, N, G*H)`` arrays, and after the loop
      ``g_W_i = x^T g_xp``, ``g_W_h = h_prev^T g_hp``, the bias sums and
      ``g_x = g_xp W_i^T`` are one product each over all ``N*T`` rows. A cell
      without that interface runs step by step through its own ``vjp``; its
      per-step gradients are summed once, after the loop, in one tree map.
    * ``initial="learned"``: ``carry0`` (one sample's carry, ``(H,)`` per leaf,
      zeros at first) is a parameter; its gradient is ``g_carry_0`` summed over
      the batch (zero when the input gives the carry).

    The state, key and mode of the context are passed to the cell (the same
    key at every step); the state of a Recurrent is the cell's.

    >>> import numpy as np, fnbp as fb
    >>> rnn = fb.Recurrent(fb.GRUCell.init(fb.random.key(0), 3, 5), return_sequences=False)
    >>> fb.forward(rnn, np.ones((2, 7, 3), np.float32)).shape
    (2, 5)
    """

    cell: Any = attrs.field(validator=lambda _r, _a, c: check_layer(c, "Recurrent", "cell"))
    return_sequences: bool = static(default=True, kw_only=True, converter=validation.boolean())
    reverse: bool = static(default=False, kw_only=True, converter=validation.boolean())
    initial: str = static(
        default="zeros", kw_only=True, converter=validation.choice("zeros", "learned")
    )
    return_carry: bool = static(default=False, kw_only=True, converter=validation.boolean())
    carry0: Any = attrs.field(
        default=attrs.Factory(_default_carry0, takes_self=True),
        kw_only=True,
        converter=_carry0,
        validator=_check_carry0,
    )

    def __repr__(self) -> str:
        options = [f"{name}={getattr(self, name)!r}" for name, default in _RECURRENT_DEFAULTS
                   if getattr(self, name) != default]  # fmt: skip
        return nested_repr("Recurrent", [repr(self.cell), *options])

    def vjp_ctx(self, x: Any, need_g_x: bool, ctx: Context) -> tuple[Any, Callable, Any]:
        """``(y, pullback, state)``: one pass over the sequence, BPTT in the pullback."""
        seq = self._parse(x)
        run = self._hoisted if _has_interface(self.cell) else self._stepwise
        with _underflow_to_zero():
            y_seq, y_last, carry, back, state = run(seq, ctx)
        out = y_seq if self.return_sequences else y_last
        y = (out, carry) if self.return_carry else out

        def pullback(g_y: Any) -> tuple[Any, Recurrent]:
            g_out, g_carry = g_y if self.return_carry else (g_y, None)
            with _underflow_to_zero():
                g_x, g_carry0, g_cell = back(g_out, g_carry, need_g_x)
            grads = attrs.evolve(self, cell=g_cell, carry0=self._carry0_grad(g_carry0, seq))
            return (_input_grad(seq, g_x, g_carry0) if need_g_x else None), grads

        return y, pullback, state

    def init_state(self) -> Any:
        """The cell's initial state (``None`` for the built-in cells)."""
        return init_state(self.cell)

    # ----------------------------------------------------------------- the hoisted loop

    def _hoisted(self, seq: _Sequence, ctx: Context) -> tuple:
        """The loop of a built-in cell: ``xp`` before it, the four products after it.

        Inside, arrays are time-major, ``(T, N, ...)``, so that each step reads and
        writes contiguous rows; they are transposed once on the way in and out.
        """
        cell, mask = self.cell, seq.mask
        n, steps, _ = seq.x.shape
        x = np.ascontiguousarray(seq.x.transpose(1, 0, 2))  # (T, N, F)
        try:
            xp = cell.project(x)  # x_t W_i + b_i for every t: one product
        except LocatedError as e:
            raise e.within("cell") from None
        masks = None if mask is None else np.ascontiguousarray(mask.T)[..., None]  # (T, N, 1)
        order = range(steps - 1, -1, -1) if self.reverse else range(steps)
        before, after = (1, 0) if self.reverse else (0, 1)  # where h_{t-1} and h_t go in hs
        carry = seq.carry
        hs = np.empty((steps + 1, n, _h(carry).shape[-1]), xp.dtype)
        hs[order[0] + before] = _h(carry)
        saved: list[Any] = [None] * steps
        for t in order:
            m = None if masks is None else masks[t]
            if m is None or m.all():
                carry, saved[t] = cell.step(xp[t], carry)
            elif m.any():
                new, saved[t] = cell.step(xp[t], carry)
                carry = _keep(m, new, carry)
            hs[t + after] = _h(carry)  # (a step padded for every sequence changes nothing)
        h_out, h_prev = hs[after : after + steps], hs[before : before + steps]
        y_seq = _batch_major(h_out if masks is None else h_out * masks)  # padded outputs: 0

        def back(g_out: np.ndarray, g_carry: Any, need_g_x: bool) -> tuple:
            g_carry = _map(np.zeros_like, carry) if g_carry is None else g_carry
            if self.return_sequences:
                g_seq = np.array(g_out.transpose(1, 0, 2), order="C")  # a copy: ours to write
                g_seq = g_seq if masks is None else np.multiply(g_seq, masks, out=g_seq)
            else:
                g_carry = _add_h(g_carry, g_out)
            g_xp, g_hp = np.empty_like(xp), None
            for t in reversed(order):
                m = None if masks is None else masks[t]
                if self.return_sequences:
                    g_carry = _add_h(g_carry, g_seq[t])
                if m is None or m.all():
                    g_xp_t, g_hp_t, g_carry = cell.step_back(g_carry, saved[t])
                elif m.any():
                    g_cell = _map(lambda g, m=m: np.where(m, g, 0.0), g_carry)
                    g_xp_t, g_hp_t, g_prev = cell.step_back(g_cell, saved[t])
                    g_carry = _map(lambda p, g, m=m: np.where(m, p, g), g_prev, g_carry)
                else:
                    g_xp_t = g_hp_t = 0.0
                g_xp[t] = g_xp_t
                if g_hp_t is not g_xp_t or g_hp is not None:
                    g_hp = np.zeros_like(xp) if g_hp is None else g_hp
                    g_hp[t] = g_hp_t
            g_x, g_cell = cell.projection_grads(
                x, h_prev, g_xp, g_xp if g_hp is None else g_hp, need_g_x
            )
            return (None if g_x is None else _batch_major(g_x)), g_carry, g_cell

        return y_seq, _h(carry), carry, back, ctx.state

    # ----------------------------------------------------------------- the step-by-step loop

    def _stepwise(self, seq: _Sequence, ctx: Context) -> tuple:
        """The loop of any other cell: its ``vjp`` at every step, grads summed at the end."""
        cell, x, mask = self.cell, seq.x, seq.mask
        steps = x.shape[1]
        order = range(steps - 1, -1, -1) if self.reverse else range(steps)
        carry, state, y_last = seq.carry, ctx.state, None
        ys: list[Any] = [None] * steps
        pullbacks: list[Any] = [None] * steps
        for t in order:
            m = None if mask is None else mask[:, t, None]
            c = ctx if state is ctx.state else Context(ctx.train, ctx.key, state)
            out, pullbacks[t], state = call(cell, (carry, x[:, t]), True, c, "cell")
            new, y_t = _step_output(out, cell)
            if m is not None:
                new, y_t = _keep(m, new, carry), np.where(m, y_t, 0.0)
            y_last = y_t if m is None or y_last is None else np.where(m, y_t, y_last)
            carry, ys[t] = new, y_t
        y_seq = np.stack(ys, axis=1)

        def back(g_out: np.ndarray, g_carry: Any, need_g_x: bool) -> tuple:
            g_carry = tree.map(np.zeros_like, carry) if g_carry is None else g_carry
            g_last = None if self.return_sequences else g_out
            g_xs: list[Any] = [None] * steps
            grads = []
            for t in reversed(order):
                m = None if mask is None else mask[:, t, None]
                keep = (lambda g: g) if m is None else (lambda g, m=m: np.where(m, g, 0.0))
                if g_last is None:
                    g_y_t = keep(g_out[:, t])
                else:
                    g_y_t = keep(g_last)
                    g_last = np.zeros_like(g_last) if m is None else np.where(m, 0.0, g_last)
                (g_prev, g_xs[t]), g_step = pullbacks[t]((tree.map(keep, g_carry), g_y_t))
                g_carry = (
                    g_prev
                    if m is None
                    else tree.map(lambda p, g, m=m: np.where(m, p, g), g_prev, g_carry)
                )
                grads.append(g_step)
            g_cell = tree.map(_total, grads[0], *grads[1:])  # once, over all T steps
            return (np.stack(g_xs, axis=1) if need_g_x else None), g_carry, g_cell

        return y_seq, y_last, carry, back, state

    # ----------------------------------------------------------------- inputs

    def _name(self) -> str:
        return f"Recurrent({type(self.cell).__name__})"

    def _parse(self, x: Any) -> _Sequence:
        """The input checked: x, the mask from ``mask`` or ``lengths``, the initial carry."""
        name = self._name()
        keys = None
        if type(x) is dict:
            keys = tuple(x)
            if "x" not in x or set(x) - set(_KEYS) or {"mask", "lengths"} <= set(x):
                raise StructureError(
                    f"{name}: a dict input has 'x' and optionally 'mask' or 'lengths' (not "
                    f"both) and 'carry', got the keys {sorted(map(str, x))}"
                )
            xs = x["x"]
        elif type(x) is np.ndarray:
            xs = x
        else:
            raise StructureError(
                f"{name} expects x of shape (N, T, F) or a dict {{'x': x, 'mask': mask, "
                f"'carry': carry}}, got a {type(x).__name__}"
            )
        if type(xs) is not np.ndarray or xs.ndim != 3 or xs.shape[1] == 0:
            got = xs.shape if type(xs) is np.ndarray else type(xs).__name__
            hint = " (one feature per step? use x[..., None])" if np.ndim(xs) == 2 else ""
            raise ShapeError(f"{name} expects x of shape (N, T, F) with T >= 1, got {got}{hint}")
        dtype = dtype_of(self.cell)  # the cell's parameters' (float64 if it has none)
        xs = validation.numeric(xs, name).astype(dtype, copy=False)
        n, steps = xs.shape[:2]
        mask = None
        if keys is not None and "mask" in x:
            mask = x["mask"]
            validation.check_kind(name, "mask", mask, "b", "a boolean array (True at real steps)")
            validation.check_shape(name, "mask", np.shape(mask), (n, steps))
        elif keys is not None and "lengths" in x:
            mask = _lengths_mask(x["lengths"], n, steps, name)
        if mask is not None and mask.all():
            mask = None
        if mask is not None:
            xs = np.where(mask[..., None], xs, 0.0)
        given = keys is not None and "carry" in x
        carry = self._carry(x["carry"] if given else None, n, dtype)
        return _Sequence(xs, mask, carry, given, keys)

    def _carry(self, given: Any, n: int, dtype: np.dtype) -> Any:
        """The initial carry: the given one (checked), the learned one, or zeros."""
        template = getattr(self.cell, "initial_carry", None)
        template = template() if callable(template) else None
        if given is not None:
            if template is None:
                return given
            return _check_carry(template, given, n, dtype, f"{self._name()}: input['carry']")
        if self.initial == "learned":
            if self.carry0 is None:
                raise StructureError(f"{self._name()}(initial='learned') has no carry0")
            return tree.map(
                lambda a: np.broadcast_to(a.astype(dtype, copy=False), (n, *a.shape)), self.carry0
            )
        if template is None:
            raise StructureError(
                f"{self._name()}: the cell has no initial_carry() to start from; give the "
                "initial carry in the input: {'x': x, 'carry': carry}"
            )
        return tree.map(lambda a: np.zeros((n, *a.shape), dtype), template)

    def _carry0_grad(self, g_carry0: Any, seq: _Sequence) -> Any:
        """The gradient of the learned initial carry: ``g_carry_0`` summed over the batch."""
        if self.carry0 is None:
            return None
        if seq.given:
            return tree.map(lambda a: frozen(np.zeros_like(a)), self.carry0)
        return tree.map(lambda g: frozen(ones(len(g), g.dtype).dot(g)), g_carry0)


def _batch_major(a: np.ndarray) -> np.ndarray:
    """A time-major ``(T, N, K)`` array as a C-contiguous ``(N, T, K)`` one."""
    return np.ascontiguousarray(a.transpose(1, 0, 2))


def _lengths_mask(lengths: Any, n: int, steps: int, owner: str) -> np.ndarray:
    """``mask[i, t] = t < lengths[i]``, after checking ``lengths`` (N,) in ``[0, T]``."""
    validation.check_kind(owner, "lengths", lengths, "iu", "an integer array")
    validation.check_shape(owner, "lengths", np.shape(lengths), (n,))
    if lengths.size and not (lengths.min() >= 0 and lengths.max() <= steps):
        raise validation.fail(owner, "lengths", f"integers in [0, {steps}] (T = {steps})", lengths)
    return np.arange(steps) < lengths[:, None]


def _step_output(out: Any, cell: Any) -> tuple[Any, np.ndarray]:
    """The cell's ``(new_carry, y_t)``, or a StructureError naming the cell."""
    if type(out) is not tuple or len(out) != 2 or type(out[1]) is not np.ndarray:
        raise StructureError(
            f"Recurrent: the cell {type(cell).__name__} must return (new_carry, y_t) with "
            f"y_t one array, got {_shapes(out)}"
        ).within("cell")
    return out


def _input_grad(seq: _Sequence, g_x: np.ndarray | None, g_carry0: Any) -> Any:
    """``g_x`` in the input's structure: the dict's keys, None for the mask or lengths."""
    if seq.keys is None:
        return g_x
    parts = {"x": g_x, "carry": g_carry0}
    return {k: parts.get(k) for k in seq.keys}


# --------------------------------------------------------------------------- Bidirectional


def _check_directions(bidi: Bidirectional, _attribute: Any, backward: Any) -> None:
    forward = bidi.forward_layer
    for name, layer, reverse in (
        ("forward_layer", forward, False),
        ("backward_layer", backward, True),
    ):
        if type(layer) is not Recurrent or layer.reverse is not reverse:
            raise validation.fail(
                "Bidirectional", name, f"a Recurrent with reverse={reverse}", layer
            )
    if (forward.return_sequences, forward.return_carry) != (
        backward.return_sequences,
        backward.return_carry,
    ):
        raise validation.fail(
            "Bidirectional",
            "backward_layer",
            "a Recurrent with the forward layer's return_sequences and return_carry",
            backward,
        )


@attrs.frozen
class Bidirectional(ContextLayer):
    """Two :class:`Recurrent` layers over one sequence, one each way; outputs combined.

    ``forward_layer`` runs ``t = 1..T`` and ``backward_layer`` (built with
    ``reverse=True``) runs ``t = T..1``; both get the same input (an array or
    a dict with a mask, as for Recurrent) and their outputs, aligned in time,
    are concatenated along the last axis (``combine="concat"``: ``[h_fwd, h_bwd]``,
    PyTorch's ``bidirectional=True`` layout) or summed (``"sum"``). With
    ``return_carry=True`` the output is ``(combined, (carry_fwd, carry_bwd))``.
    The gradients: each layer's pullback of its part of ``g_y`` (its slice, or
    all of it for a sum), ``g_x = g_x_fwd + g_x_bwd``. In training each layer
    gets its own key; the state is the pair of their states.

    >>> import numpy as np, fnbp as fb
    >>> bi = fb.Bidirectional.init(fb.random.key(0), lambda k: fb.GRUCell.init(k, 1, 6))
    >>> fb.forward(bi, np.ones((2, 40, 1), np.float32)).shape
    (2, 40, 12)
    """

    forward_layer: Recurrent
    backward_layer: Recurrent = attrs.field(validator=_check_directions)
    combine: str = static(default="concat", converter=validation.choice("concat", "sum"))

    def __repr__(self) -> str:
        parts = [repr(self.forward_layer), repr(self.backward_layer), f"combine={self.combine!r}"]
        return nested_repr("Bidirectional", parts)

    @classmethod
    def init(
        cls,
        key: random.Key,
        make_cell: Callable[[random.Key], Any],
        *,
        combine: str = "concat",
        return_sequences: bool = True,
        initial: str = "zeros",
        return_carry: bool = False,
    ) -> Bidirectional:
        """Two Recurrent layers of cells ``make_cell(key)``, each with its own key:
        ``Bidirectional.init(key, lambda k: fb.LSTMCell.init(k, F, H))``."""
        validation.check_callable(
            "Bidirectional.init", "make_cell", make_cell, "a function key -> cell"
        )
        k_f, k_b = random.split(key)
        options: dict[str, Any] = {"return_sequences": return_sequences, "initial": initial}
        options["return_carry"] = return_carry
        return cls(
            Recurrent(make_cell(k_f), **options),
            Recurrent(make_cell(k_b), reverse=True, **options),
            combine=combine,
        )

    def vjp_ctx(self, x: Any, need_g_x: bool, ctx: Context) -> tuple[Any, Callable, tuple]:
        """Both directions, each with its own key and state; the outputs combined."""
        c_f, c_b = split_context(ctx, (self.forward_layer, self.backward_layer), "Bidirectional")
        y_f, pb_f, s_f = call(self.forward_layer, x, need_g_x, c_f, "forward_layer")
        y_b, pb_b, s_b = call(self.backward_layer, x, need_g_x, c_b, "backward_layer")
        carries = self.forward_layer.return_carry
        out_f, out_b = (y_f[0], y_b[0]) if carries else (y_f, y_b)
        width = out_f.shape[-1]
        if self.combine == "concat":
            out = np.concatenate((out_f, out_b), axis=-1)
        elif out_f.shape != out_b.shape:
            raise ShapeError(
                f"Bidirectional(sum): the directions give shapes {out_f.shape} and "
                f"{out_b.shape}; a sum needs one hidden size"
            )
        else:
            out = out_f + out_b

        def pullback(g_y: Any) -> tuple[Any, Bidirectional]:
            g_carries: Any
            g_out, g_carries = g_y if carries else (g_y, None)
            split = self.combine == "concat"
            g_f, g_b = (g_out[..., :width], g_out[..., width:]) if split else (g_out, g_out)
            if carries:
                g_f, g_b = (g_f, g_carries[0]), (g_b, g_carries[1])
            (g_x_f, grads_f), (g_x_b, grads_b) = pb_f(g_f), pb_b(g_b)
            g_x = tree.map(np.add, g_x_f, g_x_b) if need_g_x else None
            return g_x, Bidirectional(grads_f, grads_b, self.combine)

        y = (out, (y_f[1], y_b[1])) if carries else out
        return y, pullback, (s_f, s_b)

    def init_state(self) -> tuple:
        """The pair of the two layers' states."""
        return init_state(self.forward_layer), init_state(self.backward_layer)
