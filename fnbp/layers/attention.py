"""Scaled dot-product attention and multi-head attention.

**The math core**, :func:`attend`, in the head layout ``(N, T, h, d)``: queries
``q`` ``(N, Tq, h, d)``, keys ``k`` ``(N, Tk, h, d)``, values ``v`` ``(N, Tk, h, dv)``
and ``hidden``, true where query ``q`` may *not* look at key ``k``::

    1.  S  = q k^T / sqrt(d)            einsum("nqhd,nkhd->nhqk", q / sqrt(d), k)
    2.  S' = S, the dtype's minimum where hidden
    3.  A  = softmax(S') over the keys
    4.  O  = A v                        einsum("nhqk,nkhd->nqhd", A, v)

Each backward product is *the same einsum string with the operands swapped*
(for ``c = einsum("A,B->C", a, b)``: ``g_a = einsum("C,B->A", g_c, b)`` and
``g_b = einsum("A,C->B", a, g_c)``), and the softmax's is fnbp's
``y * (g - <g, y>)``::

    4.  g_A = g_O v^T                   einsum("nqhd,nkhd->nhqk", g_O, v)
        g_v = A^T g_O                   einsum("nhqk,nqhd->nkhd", A, g_O)
    3.  g_S' = A * (g_A - sum_k g_A * A)
    2.  g_S = g_S', 0 where hidden      (a masked score is a constant)
    1.  g_q = g_S k / sqrt(d)           einsum("nhqk,nkhd->nqhd", g_S, k) / sqrt(d)
        g_k = g_S^T q / sqrt(d)         einsum("nhqk,nqhd->nkhd", g_S, q / sqrt(d))

The ``1 / sqrt(d)`` scales ``q`` and ``g_q`` (``N T h d`` numbers) rather than ``S``
and ``g_S`` (``N h Tq Tk``, eight times more at ``T = 128, d = 16``): the same
products, two passes over the largest arrays fewer.

**Masks.** ``True`` means *may look* (a real key, an earlier position), as in the
derivation page ``docs/derivations/attention.md``. A causal mask lets query ``i``
see keys ``j <= i`` (``np.tri(Tq, Tk)``, top-left aligned as PyTorch's
``is_causal``). Masked scores are set to ``np.finfo(dtype).min``, not ``-inf``:
in a partly masked row they get exactly zero weight (``exp`` of them is taken as
0 without an underflow signal). **A fully masked row** (a padding query, or a
sample whose keys are all padding) has every score equal, so its attention is
*uniform* and its output is the mean of the values: finite, with no
floating-point warning, and ignored downstream (leave such queries out of the
loss). Its scores get gradient 0 (step 2), its values the honest ``A^T g_O``.

**Layer inputs.** :class:`Attention` and :class:`MultiHeadAttention` take their
sources as one tree, whose keys name them:

* an array ``x`` ``(N, T, d)``: self-attention, ``q = k = v = x``;
* a tuple ``(q, k, v)``;
* a dict with ``"x"`` (self), or ``"q"`` and ``"kv"`` (cross-attention: keys and
  values from one source), or ``"q"``, ``"k"`` and ``"v"``; plus an optional
  ``"mask"``, a bool key-padding mask ``(N, Tk)``, True for real keys.

``g_x`` comes back in the input's structure, ``None`` for the mask; a source
used several times (``x``, ``kv``) gets the sum of its gradients.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import attrs
import numpy as np
from numpy.typing import DTypeLike

from .. import initializers, random, validation
from .._numeric import ones, softmax, softmax_grad
from ..core import Layer
from ..errors import DTypeError, ShapeError, StructureError
from ..record import array_repr, frozen, param, static
from . import _interop

__all__ = ["attend", "attention", "attention_vjp", "Attention", "MultiHeadAttention"]

Pullback3 = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]


def _einsum(spec: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``np.einsum(spec, a, b)`` through BLAS (``optimize=True``; 30x faster here)."""
    return np.einsum(spec, a, b, optimize=True)


def attend(
    q: np.ndarray, k: np.ndarray, v: np.ndarray, hidden: np.ndarray | None
) -> tuple[np.ndarray, Pullback3]:
    """Attention in every head at once: ``(O, pullback)``, ``pullback(g_O) -> (g_q, g_k, g_v)``.

    ``q`` ``(N, Tq, h, d)``, ``k`` ``(N, Tk, h, d)``, ``v`` ``(N, Tk, h, dv)`` of one
    float dtype; ``hidden`` a bool array broadcastable to ``(N, h, Tq, Tk)``, true
    where a query may not look at a key (or None). ``O`` is ``(N, Tq, h, dv)``.
    The steps are numbered as in the module docstring; nothing given is written.
    """
    scale = 1.0 / math.sqrt(q.shape[-1])
    q_scaled = q * scale
    S = _einsum("nqhd,nkhd->nhqk", q_scaled, k)  # 1. S = q k^T / sqrt(d)
    if hidden is not None:  # 2. masked scores: the dtype's minimum
        np.copyto(S, np.finfo(S.dtype).min, where=hidden)
    A = softmax(S)  # 3. A = softmax(S) over the keys
    O = _einsum("nhqk,nkhd->nqhd", A, v)  # 4. O = A v

    def pullback(g_O: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        g_A = _einsum("nqhd,nkhd->nhqk", g_O, v)  # 4. g_A = g_O v^T
        g_v = _einsum("nhqk,nqhd->nkhd", A, g_O)  #    g_v = A^T g_O
        g_S = softmax_grad(A, g_A)  # 3. g_S = A (g_A - <g_A, A>)
        if hidden is not None:  # 2. a masked score is a constant
            np.copyto(g_S, 0.0, where=hidden)
        g_q = _einsum("nhqk,nkhd->nqhd", g_S, k)  # 1. g_q = g_S k / sqrt(d)
        g_q *= scale
        g_k = _einsum("nhqk,nqhd->nkhd", g_S, q_scaled)  #    g_k = g_S^T q / sqrt(d)
        return g_q, g_k, g_v

    return O, pullback


def _hidden(t_q: int, t_k: int, causal: bool, keep: np.ndarray | None) -> np.ndarray | None:
    """Where a query may not look, broadcastable to ``(N, h, Tq, Tk)``: later keys when
    ``causal``, and where ``keep`` (broadcastable to ``(N, 1, Tq, Tk)``) is false."""
    hidden = ~np.tri(t_q, t_k, dtype=bool) if causal else None
    if keep is not None:
        hidden = ~keep if hidden is None else hidden | ~keep
    return hidden


# --- the function ------------------------------------------------------------------------------


def _check_mask(owner: str, mask: Any, shape: tuple[int, ...], expected: str) -> np.ndarray:
    """``mask`` as a bool array broadcastable to ``shape`` with ``len(shape)`` axes."""
    mask = validation.numeric(mask, owner, "mask")
    if mask.dtype != np.bool_:
        raise DTypeError(f"{owner}: mask must be bool (True = may look), got dtype {mask.dtype}")
    fits = mask.ndim == len(shape) and all(
        m in (1, s) for m, s in zip(mask.shape, shape, strict=True)
    )
    if not fits:
        raise ShapeError(f"{owner}: mask must have shape {expected}, got {mask.shape}")
    return mask


def _check_qkv(owner: str, q: Any, k: Any, v: Any) -> tuple[np.ndarray, ...]:
    """``q, k, v`` as float arrays ``(N, Tq, d)``, ``(N, Tk, d)``, ``(N, Tk, dv)`` of one dtype."""
    q, k, v = (
        validation.floating(a, owner, name) for a, name in zip((q, k, v), "qkv", strict=True)
    )
    if q.dtype != k.dtype or k.dtype != v.dtype:
        raise DTypeError(
            f"{owner}: q, k and v must have one dtype, got {q.dtype}, {k.dtype} and {v.dtype}"
        )
    ok = q.ndim == k.ndim == v.ndim == 3 and q.shape[0] == k.shape[0] == v.shape[0]
    if not (ok and q.shape[2] == k.shape[2] >= 1 and k.shape[1] == v.shape[1] >= 1):
        raise ShapeError(
            f"{owner} expects q (N, Tq, d), k (N, Tk, d) and v (N, Tk, dv) with Tk, d >= 1, "
            f"got q {q.shape}, k {k.shape} and v {v.shape}"
        )
    return q, k, v


def attention_vjp(
    q: np.ndarray,
    k: np.ndarray,
    v: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    causal: bool = False,
) -> tuple[np.ndarray, Pullback3]:
    """Scaled dot-product attention and its pullback: ``(O, pullback)``.

    ``O = softmax(q k^T / sqrt(d)) v`` for ``q`` ``(N, Tq, d)``, ``k`` ``(N, Tk, d)``,
    ``v`` ``(N, Tk, dv)``; ``pullback(g_O) -> (g_q, g_k, g_v)``. ``mask`` is a bool
    array broadcastable to ``(N, Tq, Tk)`` with three axes (a key-padding mask
    ``(N, Tk)`` is ``mask[:, None, :]``), True where query ``q`` may look at key
    ``k``; ``causal=True`` also hides every key after the query. A fully masked
    row attends uniformly (see :mod:`fnbp.layers.attention`).
    """
    q, k, v = _check_qkv("attention", q, k, v)
    causal = validation.check_bool("attention", "causal", causal)
    keep = None
    if mask is not None:
        mask = _check_mask("attention", mask, (q.shape[0], q.shape[1], k.shape[1]), "(N, Tq, Tk)")
        keep = mask[:, None]  # the head axis
    hidden = _hidden(q.shape[1], k.shape[1], causal, keep)
    O, pullback_heads = attend(q[:, :, None], k[:, :, None], v[:, :, None], hidden)

    def pullback(g_O: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        g_O = validation.floating(g_O, "attention", "g_O")
        validation.check_shape("attention", "g_O", g_O.shape, O.shape[:2] + O.shape[3:])
        g_q, g_k, g_v = pullback_heads(g_O.astype(O.dtype, copy=False)[:, :, None])
        return g_q[:, :, 0], g_k[:, :, 0], g_v[:, :, 0]

    return O[:, :, 0], pullback


def attention(
    q: np.ndarray,
    k: np.ndarray,
    v: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    causal: bool = False,
) -> np.ndarray:
    """Scaled dot-product attention ``softmax(q k^T / sqrt(d)) v``; see :func:`attention_vjp`.

    >>> import numpy as np, fnbp as fb
    >>> q = k = v = np.eye(3)[None]                      # (1, 3, 3)
    >>> fb.attention(q, k, v, causal=True)[0, 0].tolist()   # the first query sees key 0 only
    [1.0, 0.0, 0.0]
    """
    return attention_vjp(q, k, v, mask, causal=causal)[0]


# --- tree inputs ---------------------------------------------------------------------------------

_FORMS = "an array x (N, T, d), a tuple (q, k, v), or a dict of 'x', 'q' + 'kv' or 'q' + 'k' + 'v'"
_FEEDS = {  # the dict keys (without "mask") -> the source feeding q, k and v
    frozenset({"x"}): ("x", "x", "x"),
    frozenset({"q", "kv"}): ("q", "kv", "kv"),
    frozenset({"q", "k", "v"}): ("q", "k", "v"),
}


@attrs.frozen
class _Sources:
    """A layer input taken apart: the arrays by name, which of them feeds ``q``, ``k``
    and ``v`` (``feeds``), the key-padding ``mask`` or None, and ``x`` itself (its
    structure, for the gradient)."""

    arrays: dict[str, np.ndarray]
    feeds: tuple[str, str, str]
    mask: np.ndarray | None
    x: Any

    @property
    def q(self) -> np.ndarray:
        """The source of the queries."""
        return self.arrays[self.feeds[0]]

    @property
    def k(self) -> np.ndarray:
        """The source of the keys."""
        return self.arrays[self.feeds[1]]

    @property
    def v(self) -> np.ndarray:
        """The source of the values."""
        return self.arrays[self.feeds[2]]

    def g_x(self, g_q: np.ndarray, g_k: np.ndarray, g_v: np.ndarray) -> Any:
        """The gradients of q, k and v sent back to their sources: ``x``'s structure,
        a source that feeds several of them getting the sum, the mask ``None``."""
        g: dict[str, np.ndarray] = {}
        for name, grad in zip(self.feeds, (g_q, g_k, g_v), strict=True):
            g[name] = grad if name not in g else np.add(g[name], grad)
        if type(self.x) is np.ndarray:
            return g["x"]
        if type(self.x) is tuple:
            return g["q"], g["k"], g["v"]
        return {name: g.get(name) for name in self.x}


def _sources(owner: str, x: Any, dtype: np.dtype | None) -> _Sources:
    """``x`` (see :mod:`fnbp.layers.attention`) as :class:`_Sources`, checked: every source
    ``(N, T, d)``, one ``N``, one dtype (cast to ``dtype`` when given), ``Tk >= 1``, and
    the mask ``(N, Tk)`` bool. Errors name ``owner`` and the source."""
    if type(x) is np.ndarray:
        arrays, feeds, mask = {"x": x}, _FEEDS[frozenset({"x"})], None
    elif type(x) is tuple and len(x) == 3:
        arrays, feeds, mask = dict(zip("qkv", x, strict=True)), ("q", "k", "v"), None
    elif type(x) is dict and frozenset(x) - {"mask"} in _FEEDS:
        arrays = {name: a for name, a in x.items() if name != "mask"}
        feeds, mask = _FEEDS[frozenset(arrays)], x.get("mask")
    else:
        got = f"a dict with keys {sorted(x)}" if type(x) is dict else f"a {type(x).__name__}"
        raise StructureError(f"{owner} expects {_FORMS} (and an optional 'mask'), got {got}")
    arrays = {name: _source(owner, name, a, dtype) for name, a in arrays.items()}
    dtypes = {a.dtype for a in arrays.values()}
    if len(dtypes) > 1:
        got = ", ".join(f"{name} {a.dtype}" for name, a in arrays.items())
        raise DTypeError(f"{owner}: the sources must have one dtype, got {got}")
    out = _Sources(arrays, feeds, None, x)
    n, t_k = out.q.shape[0], out.k.shape[1]
    if any(a.shape[0] != n for a in arrays.values()) or out.v.shape[1] != t_k or t_k < 1:
        got = ", ".join(f"{name} {a.shape}" for name, a in arrays.items())
        raise ShapeError(
            f"{owner}: the sources must share the batch size N, and keys and values the "
            f"length Tk >= 1; got {got}"
        )
    if mask is not None:
        mask = _check_mask(owner, mask, (n, t_k), f"(N, Tk) = ({n}, {t_k})")
    return attrs.evolve(out, mask=mask)


def _source(owner: str, name: str, a: Any, dtype: np.dtype | None) -> np.ndarray:
    a = validation.numeric(a, owner, name) if dtype else validation.floating(a, owner, name)
    if a.ndim != 3:
        hint = " (a single sequence? use x[None])" if a.ndim == 2 else ""
        raise ShapeError(f"{owner}: {name} must have shape (N, T, d), got {a.shape}{hint}")
    return a if dtype is None or a.dtype == dtype else a.astype(dtype)


def _key_mask(src: _Sources) -> np.ndarray | None:
    """The key-padding mask as ``(N, 1, 1, Tk)``: broadcast over heads and queries."""
    return None if src.mask is None else src.mask[:, None, None, :]


# --- layers --------------------------------------------------------------------------------------


@attrs.frozen
class Attention(Layer):
    """Scaled dot-product attention as a layer without parameters.

    ``y = softmax(q k^T / sqrt(d)) v`` with ``q`` ``(N, Tq, d)``, ``k`` ``(N, Tk, d)``,
    ``v`` ``(N, Tk, dv)``; the input is a tree naming them (an array for
    self-attention, ``(q, k, v)``, or a dict with an optional key-padding
    ``"mask"``: see :mod:`fnbp.layers.attention`). ``causal`` (static) hides
    every key after the query. Gradients: the five backward lines of
    :func:`attend`, sent back in the input's structure.

    >>> import numpy as np, fnbp as fb
    >>> q, k, v = np.ones((2, 3, 4)), np.ones((2, 5, 4)), np.ones((2, 5, 6))
    >>> fb.forward(fb.Attention(), (q, k, v)).shape
    (2, 3, 6)
    """

    causal: bool = static(default=False, converter=validation.boolean())

    def vjp(self, x: Any, need_g_x: bool = True) -> tuple[np.ndarray, Callable]:
        """``(attention output, pullback)``; the layer has no parameters."""
        src = _sources("Attention", x, None)
        if not src.q.shape[-1] == src.k.shape[-1] >= 1:
            raise ShapeError(
                f"Attention: queries and keys must have one size d >= 1, got q {src.q.shape} "
                f"and k {src.k.shape}"
            )
        hidden = _hidden(src.q.shape[1], src.k.shape[1], self.causal, _key_mask(src))
        O, pullback_heads = attend(src.q[:, :, None], src.k[:, :, None], src.v[:, :, None], hidden)

        def pullback(g_y: np.ndarray) -> tuple[Any, Attention]:
            if not need_g_x:
                return None, self
            g_q, g_k, g_v = pullback_heads(g_y[:, :, None])
            return src.g_x(g_q[:, :, 0], g_k[:, :, 0], g_v[:, :, 0]), self

        return O[:, :, 0], pullback


def _rows(a: np.ndarray) -> np.ndarray:
    """``a`` as a matrix of rows ``(M, last axis)``."""
    return a.reshape(-1, a.shape[-1])


def _split(a: np.ndarray, h: int) -> np.ndarray:
    """Split the heads: ``(N, T, D) -> (N, T, h, D / h)``, a view."""
    return a.reshape(*a.shape[:2], h, a.shape[2] // h)


def _merge(a: np.ndarray) -> np.ndarray:
    """Merge the heads: ``(N, T, h, d) -> (N, T, h * d)``."""
    return a.reshape(*a.shape[:2], a.shape[2] * a.shape[3])  # not -1: N may be 0


def _affine(x: np.ndarray, W: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    """``x @ W (+ b)`` on the last axis of ``x`` ``(N, T, D)``: one product over ``N*T`` rows."""
    y = _rows(x).dot(W)
    if b is not None:
        y += b
    return y.reshape(*x.shape[:-1], W.shape[1])


@attrs.frozen
class MultiHeadAttention(Layer):
    """Multi-head attention (Vaswani et al. 2017) with ``num_heads`` heads of size ``D / h``.

    Four projections, each a Dense on the last axis with weight ``(D, D)`` in
    fnbp's ``(in, out)`` layout and bias ``(D,)``. For sources ``x_q``, ``x_k``,
    ``x_v`` (``x`` for all three in self-attention; see the input forms in
    :mod:`fnbp.layers.attention`)::

        1. q = x_q W_q + b_q,   k = x_k W_k (+ b_k),   v = x_v W_v + b_v      (N, T, D)
        2. split the heads: (N, T, h, D/h)
        3. O = attention in every head at once (see attend), masked
        4. merge the heads: (N, Tq, D)
        5. y = O W_o + b_o

    Backward, with sums over all ``N*T`` rows::

        5. g_W_o = O^T g_y,  g_b_o = 1^T g_y,  g_O = g_y W_o^T
        4. split g_O;  3. (g_q, g_k, g_v) = attend's pullback of g_O;  2. merge them
        1. g_W_r = x_r^T g_r,  g_b_r = 1^T g_r,  g_x_r = g_r W_r^T  for r in q, k, v;
           a source feeding several of them (x, kv) gets the sum

    **b_k is never added**: it shifts query ``i``'s whole row of scores by the
    constant ``q_i . b_k / sqrt(d)``, which the softmax removes, so it cannot
    change the output, and ``g_b_k = 0`` exactly (not rounding noise, which Adam
    would blow up into steps of size ``lr``). It is kept so that PyTorch's
    ``in_proj_bias`` loads unchanged (:meth:`from_torch`).

    ``causal`` (static) hides every key after the query; the input's optional
    ``"mask"`` ``(N, Tk)`` bool hides padded keys. A float input of another
    precision, or an integer one, is cast to the parameters' dtype, as Dense does.
    """

    W_q: np.ndarray = param()
    b_q: np.ndarray = param()
    W_k: np.ndarray = param()
    b_k: np.ndarray = param()
    W_v: np.ndarray = param()
    b_v: np.ndarray = param()
    W_o: np.ndarray = param()
    b_o: np.ndarray = param()
    num_heads: int = static(converter=validation.integer(low=1))
    causal: bool = static(default=False, converter=validation.boolean())

    def __repr__(self) -> str:
        width = self.W_q.shape[0] if np.ndim(self.W_q) == 2 else array_repr(self.W_q)
        causal = ", causal" if self.causal else ""
        return f"MultiHeadAttention({width}, heads={self.num_heads}{causal})"

    @classmethod
    def init(
        cls,
        key: random.Key,
        d_model: int,
        num_heads: int,
        *,
        causal: bool = False,
        init: str | Callable = "glorot_uniform",
        dtype: DTypeLike = np.float32,
    ) -> MultiHeadAttention:
        """A new layer: the four ``(d_model, d_model)`` weights drawn by ``init`` (a name
        from :mod:`fnbp.initializers` or a function), each from its own key split from
        ``key``, and zero biases. ``d_model`` must be a multiple of ``num_heads``."""
        owner = "MultiHeadAttention.init"
        dtype = validation.float_dtype(owner, dtype)
        d = validation.check_int(owner, "d_model", d_model, low=1)
        h = validation.check_int(owner, "num_heads", num_heads, low=1)
        if d % h:
            raise validation.fail(owner, "d_model", f"a multiple of num_heads = {h}", d)
        validation.check_size(owner, "W_q", d * d)
        draw = initializers.get(init)
        W_q, W_k, W_v, W_o = (draw(k, (d, d), dtype) for k in random.split(key, 4))
        zeros = np.zeros(d, dtype)
        return cls(W_q, zeros, W_k, zeros, W_v, zeros, W_o, zeros, h, causal=causal)

    @classmethod
    def from_torch(
        cls,
        in_proj_weight: Any,
        in_proj_bias: Any,
        out_proj_weight: Any,
        out_proj_bias: Any,
        num_heads: int,
        *,
        causal: bool = False,
    ) -> MultiHeadAttention:
        """The layer holding the weights of a PyTorch ``nn.MultiheadAttention``.

        PyTorch stacks the three input projections as ``in_proj_weight`` of
        shape ``(3D, D)`` in its ``(out, in)`` layout, rows ``[q; k; v]``, and
        ``in_proj_bias`` ``(3D,)``; ``out_proj.weight`` is ``(D, D)``. So
        ``W_q = in_proj_weight[:D].T`` (and ``[D:2D]``, ``[2D:]`` for k and v),
        ``W_o = out_proj_weight.T``; a bias of None (``bias=False``) is zeros.
        PyTorch's heads are the same contiguous column blocks as fnbp's. Pass
        arrays (``tensor.detach().numpy()``); their dtype is kept. Note
        PyTorch's ``key_padding_mask`` is True where a key is *ignored*: fnbp's
        ``"mask"`` is its negation.
        """
        owner = "MultiHeadAttention.from_torch"
        W_in = _interop.weight(owner, "in_proj_weight", in_proj_weight, 2, "(3D, D)")
        d = W_in.shape[1]
        validation.check_shape(owner, "in_proj_weight", W_in.shape, (3 * d, d))
        W_out = _interop.weight(owner, "out_proj_weight", out_proj_weight, 2, "(D, D)", W_in.dtype)
        validation.check_shape(owner, "out_proj_weight", W_out.shape, (d, d))
        b_in = _interop.bias(owner, "in_proj_bias", in_proj_bias, 3 * d, W_in.dtype)
        b_out = _interop.bias(owner, "out_proj_bias", out_proj_bias, d, W_in.dtype)
        h = validation.check_int(owner, "num_heads", num_heads, low=1)
        if d % h:
            raise validation.fail(owner, "num_heads", f"a divisor of D = {d}", h)
        W_q, W_k, W_v = (_interop.transposed(W_in[i * d : (i + 1) * d], (1, 0)) for i in range(3))
        b_q, b_k, b_v = (b_in[i * d : (i + 1) * d] for i in range(3))
        W_o = _interop.transposed(W_out, (1, 0))
        return cls(W_q, b_q, W_k, b_k, W_v, b_v, W_o, b_out, h, causal=causal)

    def _check(self) -> tuple[int, np.dtype]:
        """``(D, dtype)`` of the parameters, after checking their shapes."""
        d = self.W_q.shape[-1] if self.W_q.ndim == 2 else -1
        name = f"MultiHeadAttention(D={d}, heads={self.num_heads})"
        weights = (self.W_q, self.W_k, self.W_v, self.W_o)
        biases = (self.b_q, self.b_k, self.b_v, self.b_o)
        if any(W.shape != (d, d) for W in weights) or any(b.shape != (d,) for b in biases):
            got = ", ".join(
                f"{n} {a.shape}" for n, a in zip(("W_q", "W_k", "W_v", "W_o"), weights, strict=True)
            )
            raise ShapeError(f"{name} needs four (D, D) weights and (D,) biases, got {got}")
        if d % self.num_heads:
            raise ShapeError(f"{name}: D must be a multiple of num_heads")
        params = dict(
            zip(
                ("W_q", "b_q", "W_k", "b_k", "W_v", "b_v", "W_o", "b_o"),
                self._leaves(),
                strict=True,
            )
        )
        return d, validation.check_params(name, **params)

    def _leaves(self) -> tuple[np.ndarray, ...]:
        return self.W_q, self.b_q, self.W_k, self.b_k, self.W_v, self.b_v, self.W_o, self.b_o

    def vjp(self, x: Any, need_g_x: bool = True) -> tuple[np.ndarray, Callable]:
        """``(y, pullback)``: the five steps above; the pullback skips ``g_x`` unless needed."""
        d, dtype = self._check()
        src = _sources(f"MultiHeadAttention(D={d}, heads={self.num_heads})", x, dtype)
        if any(a.shape[-1] != d for a in src.arrays.values()):
            got = ", ".join(f"{name} {a.shape}" for name, a in src.arrays.items())
            raise ShapeError(
                f"MultiHeadAttention(D={d}, heads={self.num_heads}) expects sources of "
                f"shape (N, T, {d}), got {got}"
            )
        h = self.num_heads
        q = _affine(src.q, self.W_q, self.b_q)  # 1. the projections (b_k: see above)
        k = _affine(src.k, self.W_k, None)
        v = _affine(src.v, self.W_v, self.b_v)
        hidden = _hidden(q.shape[1], k.shape[1], self.causal, _key_mask(src))
        O, pullback_heads = attend(_split(q, h), _split(k, h), _split(v, h), hidden)  # 2, 3
        O = _merge(O)  # 4.
        y = _affine(O, self.W_o, self.b_o)  # 5.

        def pullback(g_y: np.ndarray) -> tuple[Any, MultiHeadAttention]:
            g = _rows(g_y)
            g_W_o, g_b_o = _rows(O).T.dot(g), ones(len(g), g.dtype).dot(g)  # 5.
            g_O = g.dot(self.W_o.T).reshape(O.shape)
            g_q, g_k, g_v = (_merge(a) for a in pullback_heads(_split(g_O, h)))  # 4, 3, 2
            grads = MultiHeadAttention(
                *_dense_grads(src.q, g_q),
                frozen(_rows(src.k).T.dot(_rows(g_k))),
                frozen(np.zeros(d, dtype)),
                *_dense_grads(src.v, g_v),
                frozen(g_W_o),
                frozen(g_b_o),
                h,
                causal=self.causal,
            )
            if not need_g_x:
                return None, grads
            g_x_q, g_x_k, g_x_v = _back(g_q, self.W_q), _back(g_k, self.W_k), _back(g_v, self.W_v)
            return src.g_x(g_x_q, g_x_k, g_x_v), grads  # 1.

        return y, pullback


def _dense_grads(x: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(x^T g, 1^T g)`` over all rows: a projection's weight and bias gradients."""
    g = _rows(g)
    return frozen(_rows(x).T.dot(g)), frozen(ones(len(g), g.dtype).dot(g))


def _back(g: np.ndarray, W: np.ndarray) -> np.ndarray:
    """``g W^T``: a projection's input gradient, ``(N, T, D)``."""
    return _rows(g).dot(W.T).reshape(g.shape)
