"""The time loop ``Recurrent`` and ``Bidirectional``: any cell over a sequence.

The conventions are those of ``docs/derivations/recurrent.md``. Sequences are
batch first, ``x`` of shape ``(N, T, F)``; the cells are in
:mod:`fnbp.layers.cells`.

**The time loop** :class:`Recurrent` runs any cell over the time axis. A
cell without the interface above (one of your own with just ``vjp``) works
too, step by step through its ``vjp``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import numpy as np

from .. import random, tree, validation
from .._numeric import ones
from ..core import (
    Context,
    ContextLayer,
    call,
    check_layer,
    dtype_of,
    init_state,
    split_context,
)
from ..errors import LocatedError, ShapeError, StructureError
from ..record import frozen, nested_repr, readonly, static
from .carry import (
    add_to_hidden,
    check_carry,
    hidden,
    keep_where,
    map_carry,
    shapes_of,
    underflow_to_zero,
)

__all__ = ["Recurrent", "Bidirectional"]

Tree = Any


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
        with underflow_to_zero():
            y_seq, y_last, carry, back, state = run(seq, ctx)
        out = y_seq if self.return_sequences else y_last
        y = (out, carry) if self.return_carry else out

        def pullback(g_y: Any) -> tuple[Any, Recurrent]:
            g_out, g_carry = g_y if self.return_carry else (g_y, None)
            with underflow_to_zero():
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
        hs = np.empty((steps + 1, n, hidden(carry).shape[-1]), xp.dtype)
        hs[order[0] + before] = hidden(carry)
        saved: list[Any] = [None] * steps
        for t in order:
            m = None if masks is None else masks[t]
            if m is None or m.all():
                carry, saved[t] = cell.step(xp[t], carry)
            elif m.any():
                new, saved[t] = cell.step(xp[t], carry)
                carry = keep_where(m, new, carry)
            hs[t + after] = hidden(carry)  # (a step padded for every sequence changes nothing)
        h_out, h_prev = hs[after : after + steps], hs[before : before + steps]
        y_seq = _batch_major(h_out if masks is None else h_out * masks)  # padded outputs: 0

        def back(g_out: np.ndarray, g_carry: Any, need_g_x: bool) -> tuple:
            g_carry = map_carry(np.zeros_like, carry) if g_carry is None else g_carry
            if self.return_sequences:
                g_seq = np.array(g_out.transpose(1, 0, 2), order="C")  # a copy: ours to write
                g_seq = g_seq if masks is None else np.multiply(g_seq, masks, out=g_seq)
            else:
                g_carry = add_to_hidden(g_carry, g_out)
            g_xp, g_hp = np.empty_like(xp), None
            for t in reversed(order):
                m = None if masks is None else masks[t]
                if self.return_sequences:
                    g_carry = add_to_hidden(g_carry, g_seq[t])
                if m is None or m.all():
                    g_xp_t, g_hp_t, g_carry = cell.step_back(g_carry, saved[t])
                elif m.any():
                    g_cell = map_carry(lambda g, m=m: np.where(m, g, 0.0), g_carry)
                    g_xp_t, g_hp_t, g_prev = cell.step_back(g_cell, saved[t])
                    g_carry = map_carry(lambda p, g, m=m: np.where(m, p, g), g_prev, g_carry)
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

        return y_seq, hidden(carry), carry, back, ctx.state

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
                new, y_t = keep_where(m, new, carry), np.where(m, y_t, 0.0)
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
            return check_carry(template, given, n, dtype, f"{self._name()}: input['carry']")
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
            f"y_t one array, got {shapes_of(out)}"
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
