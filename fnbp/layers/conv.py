"""Convolutions as patch extraction plus one matrix multiply: ``Conv1D``, ``Conv2D``.

**Layout: channels-last, everywhere in fnbp.** A batch of 1-D signals has shape
``(N, L, C)``, a batch of images ``(N, H, W, C)``. Kernels are stored
``(kw, C_in, C_out)`` and ``(kh, kw, C_in, C_out)``, biases ``(C_out,)``, so that
the kernel flattened to ``(kh * kw * C_in, C_out)`` is a Dense weight ``(in, out)``
and :mod:`fnbp.initializers` sees ``fan_in = kh * kw * C_in`` and
``fan_out = kh * kw * C_out``. The pooling layers use the same layout.

Padding is ``"valid"`` (none), ``"same"`` (TensorFlow's rule: the output has
``ceil(size / stride)`` positions per axis, the padding is split evenly and the
odd one goes at the end) or explicit: an int for every side, one int per
spatial axis, or one ``(before, after)`` pair per spatial axis. Padding is zeros.

How the layer computes, for a 2-D kernel of size ``(kh, kw)`` and stride
``(sh, sw)``::

    xp        = zero-padded x                            (N, Hp, Wp, C_in)
    P[m, :]   = the window of xp that output m reads     (M, K)   M = N*Ho*Wo, K = kh*kw*C_in
    Y         = P @ W_flat + b = [P 1] @ [W_flat; b]     (M, C_out), reshaped (N, Ho, Wo, C_out)

where ``W_flat`` is ``W`` reshaped to ``(K, C_out)``. ``P`` is a read-only strided
view of ``xp`` (no copy) turned into a matrix by one copy (with a single input
channel, by one strided copy per kernel offset, which moves whole rows); a
column of ones appended to it carries the bias through the same product. The
backward pass, for ``g_Y = dL/dY`` reshaped to ``(M, C_out)``::

    g_W = P^T g_Y                 (K, C_out), reshaped to W's shape
    g_b = sum_m g_Y[m] = 1^T g_Y  (C_out,); both at once: [g_W; g_b] = [P 1]^T g_Y
    g_P = g_Y W_flat^T            (M, K), computed one kernel offset at a time:
                                  g_P[:, block (i, j)] = g_Y W[i, j]^T
    g_x = crop(col2im(g_P))       each of the kh*kw kernel offsets adds its block
                                  of g_P to the strided slice of xp it was read
                                  from; then the padding is cut off

``g_P`` and ``col2im`` are skipped when the input gradient is not needed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, cast

import attrs
import numpy as np
from numpy.lib.stride_tricks import as_strided
from numpy.typing import DTypeLike

from .. import initializers, random, validation
from ..core import Layer
from ..errors import ShapeError, StructureError
from ..record import array_repr, frozen, param, static
from ..workspace import dot, scratch
from . import _interop

__all__ = ["Conv1D", "Conv2D"]

Pads = tuple[tuple[int, int], ...]
Padding = str | Pads
_AXES = {1: "L", 2: "H, W"}
_KERNEL_AXES = {1: "kw", 2: "kh, kw"}

# ----------------------------------------------------------------------------- geometry


def resolve_pads(
    spatial: Sequence[int], kernel: Sequence[int], stride: Sequence[int], padding: Padding
) -> Pads:
    """The ``(before, after)`` zero padding of each spatial axis."""
    if padding == "valid":
        return ((0, 0),) * len(spatial)
    if padding == "same":
        pads = []
        for n, k, s in zip(spatial, kernel, stride, strict=True):
            total = max((-(-n // s) - 1) * s + k - n, 0)
            pads.append((total // 2, total - total // 2))
        return tuple(pads)
    return cast(Pads, padding)  # the converter allows no other string


def geometry(
    name: str,
    x_shape: tuple[int, ...],
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    padding: Padding,
) -> tuple[Pads, tuple[int, ...]]:
    """``(pads, out)``: the padding and the output's spatial size; a ShapeError if none fits."""
    spatial = x_shape[1:-1]
    pads = resolve_pads(spatial, kernel, stride, padding)
    padded = [n + a + b for n, (a, b) in zip(spatial, pads, strict=True)]
    if any(p < k for p, k in zip(padded, kernel, strict=True)):
        least = tuple(max(k - a - b, 1) for k, (a, b) in zip(kernel, pads, strict=True))
        raise ShapeError(
            f"{name} with window {kernel} and padding {padding!r} needs a spatial size of at "
            f"least {least}, got input of shape {x_shape} (use padding='same' or a smaller window)"
        )
    out = tuple((p - k) // s + 1 for p, k, s in zip(padded, kernel, stride, strict=True))
    validation.check_size(name, "the padded input", x_shape[0] * math.prod(padded) * x_shape[-1])
    return pads, out


def pad(x: np.ndarray, pads: Pads, value: float = 0.0) -> np.ndarray:
    """``x`` with its spatial axes padded by ``value``: a new buffer, or ``x`` itself if no pad."""
    if not any(a or b for a, b in pads):
        return x
    spatial = (n + a + b for n, (a, b) in zip(x.shape[1:-1], pads, strict=True))
    xp = scratch((x.shape[0], *spatial, x.shape[-1]), x.dtype)
    xp.fill(value)
    xp[interior(x.shape, pads)] = x
    return xp


def interior(shape: tuple[int, ...], pads: Pads) -> tuple[slice, ...]:
    """The index of the unpadded input inside its padded buffer."""
    inner = (slice(a, a + n) for n, (a, _) in zip(shape[1:-1], pads, strict=True))
    return (slice(None), *inner, slice(None))


def windows(
    xp: np.ndarray, kernel: tuple[int, ...], stride: tuple[int, ...], out: tuple[int, ...]
) -> np.ndarray:
    """The read-only view ``w[n, *o, *i, c] = xp[n, *(o * stride + i), c]``: (N, *out, *kernel, C).

    No data is copied; reshaping it to ``(N * prod(out), prod(kernel) * C)`` makes
    the patch matrix in one copy.
    """
    s_n, *s_sp, s_c = xp.strides
    shape = (xp.shape[0], *out, *kernel, xp.shape[-1])
    strides = (s_n, *(a * s for a, s in zip(s_sp, stride, strict=True)), *s_sp, s_c)
    return as_strided(xp, shape, strides, writeable=False)


def patches(
    xp: np.ndarray, kernel: tuple[int, ...], stride: tuple[int, ...], out: tuple[int, ...]
) -> np.ndarray:
    """``[P 1]``: the patch matrix of :func:`windows` and a column of ones, ``(M, K + 1)``.

    ``M = N * prod(out)`` rows run over ``(n, *o)``; ``K = prod(kernel) * C``
    columns over ``(*i, c)``, matching ``W`` flattened; the ones carry the bias.
    With several channels the strided view is copied in once. With one channel
    that copy would move only ``kw`` numbers at a time, so instead each kernel
    offset copies its strided slice of ``xp`` (whole rows) into its column.
    """
    view = windows(xp, kernel, stride, out)
    k = math.prod(kernel) * xp.shape[-1]
    P = scratch((xp.shape[0], *out, k + 1), xp.dtype)
    P[..., k] = 1.0
    if xp.shape[-1] > 1:
        P[..., :k].reshape(view.shape)[...] = view  # splitting the last axis: a view of P
    else:
        for column, offset in enumerate(np.ndindex(*kernel)):
            P[..., column] = view[(..., *offset, 0)]
    return P.reshape(-1, k + 1)


def col2im(
    g_windows: np.ndarray, padded_shape: tuple[int, ...], stride: tuple[int, ...]
) -> np.ndarray:
    """The adjoint of :func:`windows`: every window's gradient summed into the padded input.

    ``g_windows`` is offset-major, of shape ``(*kernel, N, *out, C)``: ``g_windows[i]``
    is the gradient of what kernel offset ``i`` read. One strided add per kernel
    offset (``prod(kernel)`` of them), none per output position; overlapping
    windows accumulate.
    """
    d = len(stride)
    kernel, out = g_windows.shape[:d], g_windows.shape[d + 1 : 2 * d + 1]
    g = scratch(padded_shape, g_windows.dtype)
    g.fill(0.0)
    for offset in np.ndindex(*kernel):
        steps = zip(offset, stride, out, strict=True)
        dst = g[(slice(None), *(slice(i, i + s * (o - 1) + 1, s) for i, s, o in steps))]
        np.add(dst, g_windows[offset], out=dst)
    return g


def crop(g: np.ndarray, x_shape: tuple[int, ...], pads: Pads) -> np.ndarray:
    """The gradient of the unpadded input: ``g`` without its padding (a view)."""
    return g if g.shape == x_shape else g[interior(x_shape, pads)]


# ----------------------------------------------------------------------------- layers


class _Conv(Layer):
    """The shared body of Conv1D and Conv2D; subclasses declare W, b, stride, padding."""

    __slots__ = ()
    _NDIM = 0
    fresh_y = fresh_g_x = fresh_grads = True  # new arrays, kept by no one (see fnbp.core)
    verified = True  # checked by the contract suite, not at run time (see fnbp.core)
    W: np.ndarray
    b: np.ndarray
    stride: tuple[int, ...]
    padding: Padding

    @classmethod
    def _init(
        cls,
        key: random.Key,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int],
        init: str | Callable,
        bias_init: str | Callable | None,
        dtype: DTypeLike,
        **statics: Any,
    ) -> Any:
        owner = f"{cls.__name__}.init"
        dtype = validation.float_dtype(owner, dtype)
        kernel = validation.check_ints(owner, "kernel_size", kernel_size, cls._NDIM)
        in_channels = validation.check_int(owner, "in_channels", in_channels, low=1)
        out_channels = validation.check_int(owner, "out_channels", out_channels, low=1)
        validation.check_size(owner, "W", math.prod(kernel) * in_channels * out_channels)
        draw_W, draw_b = initializers.resolve(init, bias_init)
        W = draw_W(key, (*kernel, in_channels, out_channels), dtype)
        fan_in = math.prod(kernel) * in_channels
        make: Any = cls  # an attrs subclass (Conv1D, Conv2D) with W, b and the statics
        return make(W, draw_b(random.fold_in(key, 1), (out_channels,), dtype, fan_in), **statics)

    @classmethod
    def from_torch(cls, weight: Any, bias: Any = None, **statics: Any) -> Any:
        """The layer of a PyTorch ``nn.Conv1d`` / ``nn.Conv2d`` (``groups=1, dilation=1``).

        PyTorch's kernel ``(C_out, C_in, *kernel)`` becomes fnbp's
        ``(*kernel, C_in, C_out)``: ``W = weight.transpose(2, 1, 0)`` for Conv1D,
        ``weight.transpose(2, 3, 1, 0)`` for Conv2D; ``bias`` ``(C_out,)`` is kept
        (None is zeros). ``stride`` and ``padding`` are given as keywords and mean
        what PyTorch's do (an int pads every side; ``"same"`` at stride 1 puts the odd
        pixel at the end, as PyTorch does). PyTorch's inputs are channels-first:
        ``x_fnbp = x_torch.transpose(0, 2, 1)`` (1-D) or ``(0, 2, 3, 1)`` (2-D).
        (A Keras kernel is already ``(*kernel, C_in, C_out)``: ``Conv2D(kernel, bias)``.)
        """
        owner, d = f"{cls.__name__}.from_torch", cls._NDIM
        layout = f"(C_out, C_in, {_KERNEL_AXES[d]})"
        weight = _interop.weight(owner, "weight", weight, d + 2, layout)
        b = _interop.bias(owner, "bias", bias, weight.shape[0], weight.dtype)
        make: Any = cls
        return make(_interop.transposed(weight, (*range(2, d + 2), 1, 0)), b, **statics)

    def _describe(self) -> str:
        name = type(self).__name__
        if self.W.ndim != self._NDIM + 2:
            return f"{name}(W={array_repr(self.W)}, b={array_repr(self.b)})"
        c_in, c_out = self.W.shape[-2:]
        extra = (
            ""
            if all(s == 1 for s in self.stride)
            else ", stride " + "x".join(map(str, self.stride))
        )
        pad = self.padding if isinstance(self.padding, str) else f"padding {self.padding}"
        size = "x".join(map(str, self.kernel_size))
        return f"{name}({c_in} -> {c_out}, {size}{extra}, {pad})"

    @property
    def kernel_size(self) -> tuple[int, ...]:
        """The kernel's spatial size, from ``W``'s shape."""
        return self.W.shape[:-2]

    def _check(self, x: np.ndarray) -> np.ndarray:
        name, d, W, b = type(self).__name__, self._NDIM, self.W, self.b
        validation.check_params(name, W=W, b=b)
        if W.ndim != d + 2 or b.shape != W.shape[-1:]:
            raise ShapeError(
                f"{name} needs W of shape ({_KERNEL_AXES[d]}, C_in, C_out) and b of shape "
                f"(C_out,), got W {W.shape} and b {b.shape}"
            )
        c_in = W.shape[-2]
        if type(x) is not np.ndarray:
            raise StructureError(f"{name} expects one array, got a {type(x).__name__}")
        if x.ndim != d + 2 or x.shape[-1] != c_in:
            raise ShapeError(
                f"{name} expects input of shape (N, {_AXES[d]}, {c_in}), got {x.shape}"
                + _hint(x.shape, d, c_in)
            )
        if x.dtype != W.dtype:
            x = validation.numeric(x, name).astype(W.dtype)
        return x

    def vjp(self, x: np.ndarray, need_g_x: bool = True) -> tuple[np.ndarray, Callable]:
        """``(conv(x, W) + b, pullback)``; the pullback skips ``g_x`` unless needed."""
        x = self._check(x)
        kernel, (c_in, c_out) = self.kernel_size, self.W.shape[-2:]
        pads, out = geometry(type(self).__name__, x.shape, kernel, self.stride, self.padding)
        rows, width = x.shape[0] * math.prod(out), math.prod(kernel) * c_in + 1
        validation.check_size(type(self).__name__, "the patch matrix", rows * width)
        xp = pad(x, pads)
        P1 = patches(xp, kernel, self.stride, out)  # [P 1]
        Wb = np.concatenate((self.W.reshape(-1, c_out), self.b[None]))
        y = dot(P1, Wb).reshape(x.shape[0], *out, c_out)

        def pullback(g_y: np.ndarray) -> tuple[np.ndarray | None, Any]:
            g_flat = g_y.reshape(-1, c_out)
            g_Wb = frozen(dot(P1.T, g_flat))  # [g_W; g_b] = [P 1]^T g_Y
            grads = attrs.evolve(self, W=g_Wb[:-1].reshape(self.W.shape), b=g_Wb[-1])  # type: ignore[misc]
            if not need_g_x:
                return None, grads
            g_P = _patch_grads(g_flat, self.W).reshape(*kernel, x.shape[0], *out, c_in)
            return crop(col2im(g_P, xp.shape, self.stride), x.shape, pads), grads

        return y, pullback


def _patch_grads(g_flat: np.ndarray, W: np.ndarray) -> np.ndarray:
    """``g_P = g_Y W_flat^T`` laid out offset-major, ``(prod(kernel), M, C_in)``, for col2im.

    One ``(M, C_out) @ (C_out, C_in)`` product per kernel offset, so that each
    offset's block is contiguous; with one input channel that is the single
    product ``W_flat g_Y^T`` of shape ``(prod(kernel), M)``.
    """
    c_in, c_out = W.shape[-2:]
    if c_in == 1:
        return dot(W.reshape(-1, c_out), g_flat.T)
    dtype, k = np.result_type(g_flat.dtype, W.dtype), math.prod(W.shape[:-2])
    out = scratch((k, len(g_flat), c_in), dtype)
    return np.matmul(g_flat, W.reshape(-1, c_in, c_out).transpose(0, 2, 1), out=out)


def _hint(shape: tuple[int, ...], d: int, c_in: int) -> str:
    """Why an input of ``shape`` may have been passed: a missing channel axis, channels-first."""
    if len(shape) == d + 1 and c_in == 1:
        return " (add the channel axis: x[..., None])"
    if len(shape) == d + 1 and shape[-1] == c_in:
        return " (a single sample? use x[None])"
    if len(shape) == d + 2 and shape[1] == c_in:
        order = (0, *range(2, d + 2), 1)
        return f" (channels-first? fnbp is channels-last: use x.transpose{order})"
    return ""


@attrs.frozen
class Conv1D(_Conv):
    """1-D convolution (cross-correlation, as in every deep-learning library), channels-last.

    Input ``x`` of shape ``(N, L, C_in)``; kernel ``W`` of shape ``(kw, C_in, C_out)``;
    bias ``b`` of shape ``(C_out,)``; output of shape ``(N, L_out, C_out)`` with::

        y[n, l, o] = b[o] + sum_{i, c} xp[n, l * stride + i, c] * W[i, c, o]

    where ``xp`` is ``x`` zero-padded as ``padding`` says and
    ``L_out = (L_padded - kw) // stride + 1``. Gradients (``P`` the patch matrix
    of shape ``(N * L_out, kw * C_in)``, see :mod:`fnbp.layers.conv`)::

        g_W = P^T g_y      g_b = sum over n, l of g_y[n, l]
        g_x = col2im(g_y W_flat^T), the padding cropped

    A float input of another precision is cast to ``W``'s dtype here, once.
    """

    _NDIM = 1
    __repr__ = _Conv._describe
    W: np.ndarray = param()
    b: np.ndarray = param()
    stride: tuple[int] = static(default=1, converter=validation.sizes(1))
    padding: Padding = static(default="valid", converter=validation.padding(1))

    @classmethod
    def init(
        cls,
        key: random.Key,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int],
        *,
        stride: int | Sequence[int] = 1,
        padding: Any = "valid",
        init: str | Callable = "glorot_uniform",
        bias_init: str | Callable | None = None,
        dtype: DTypeLike = np.float32,
    ) -> Conv1D:
        """A new layer: ``W`` of shape ``(kw, C_in, C_out)`` drawn by ``init``, ``b`` by
        ``bias_init`` (zeros by default).

        ``init`` is a name from :mod:`fnbp.initializers` (``"glorot_uniform"``,
        ``"he_normal"``, ...), a function ``(key, shape, dtype) -> array``, or a
        scheme choosing both: ``"torch"`` (``nn.Conv1d``'s U(+-1/sqrt(fan_in)) for
        ``W`` and ``b``) or ``"keras"``. It sees ``fan_in = kw * C_in`` and
        ``fan_out = kw * C_out``. ``bias_init`` as for :meth:`Dense.init`.
        """
        return cls._init(
            key,
            in_channels,
            out_channels,
            kernel_size,
            init,
            bias_init,
            dtype,
            stride=stride,
            padding=padding,
        )


@attrs.frozen
class Conv2D(_Conv):
    """2-D convolution (cross-correlation, as in every deep-learning library), channels-last.

    Input ``x`` of shape ``(N, H, W, C_in)``; kernel ``W`` of shape
    ``(kh, kw, C_in, C_out)``; bias ``b`` of shape ``(C_out,)``; output of shape
    ``(N, H_out, W_out, C_out)`` with::

        y[n, h, w, o] = b[o] + sum_{i, j, c} xp[n, h * sh + i, w * sw + j, c] * W[i, j, c, o]

    where ``xp`` is ``x`` zero-padded as ``padding`` says, ``(sh, sw) = stride`` and
    ``H_out = (H_padded - kh) // sh + 1`` (likewise ``W_out``). Gradients (``P`` the
    patch matrix of shape ``(N * H_out * W_out, kh * kw * C_in)``, see
    :mod:`fnbp.layers.conv`)::

        g_W = P^T g_y      g_b = sum over n, h, w of g_y[n, h, w]
        g_x = col2im(g_y W_flat^T), the padding cropped

    A float input of another precision is cast to ``W``'s dtype here, once.
    """

    _NDIM = 2
    __repr__ = _Conv._describe
    W: np.ndarray = param()
    b: np.ndarray = param()
    stride: tuple[int, int] = static(default=1, converter=validation.sizes(2))
    padding: Padding = static(default="valid", converter=validation.padding(2))

    @classmethod
    def init(
        cls,
        key: random.Key,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int],
        *,
        stride: int | Sequence[int] = 1,
        padding: Any = "valid",
        init: str | Callable = "glorot_uniform",
        bias_init: str | Callable | None = None,
        dtype: DTypeLike = np.float32,
    ) -> Conv2D:
        """A new layer: ``W`` of shape ``(kh, kw, C_in, C_out)`` drawn by ``init``, ``b`` by
        ``bias_init`` (zeros by default).

        ``kernel_size`` is an int (square) or ``(kh, kw)``. ``init`` is a name from
        :mod:`fnbp.initializers` (``"glorot_uniform"``, ``"he_normal"``, ...), a
        function ``(key, shape, dtype) -> array``, or a scheme choosing both:
        ``"torch"`` (``nn.Conv2d``'s U(+-1/sqrt(fan_in)) for ``W`` and ``b``) or
        ``"keras"``. It sees ``fan_in = kh * kw * C_in`` and
        ``fan_out = kh * kw * C_out``. ``bias_init`` as for :meth:`Dense.init`.
        """
        return cls._init(
            key,
            in_channels,
            out_channels,
            kernel_size,
            init,
            bias_init,
            dtype,
            stride=stride,
            padding=padding,
        )
